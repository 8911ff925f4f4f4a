/**
 * Model inputs: resolving their shapes for a run, synthesizing or loading their data, and
 * cutting a global batch into per-device shards.
 *
 * Most real models leave dimensions symbolic (`batch`, `p2o.DynamicDimension.1`), and
 * data-parallel runs need to know which axis of each input is the batch. Both are settled
 * here, once, before any device starts: a model that cannot be fed is reported up front,
 * with the flags that fix it, instead of as an ONNX Runtime shape error from inside a worker.
 */
import { MAX_TENSOR_ELEMENTS } from '../common/limits';
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { UserError } from '../common/errors';
import { allocTensorData, byteSize, float32ToFloat16Bits, type DType, type TensorData } from './onnx/dtypes';
import type { Dim, ModelIR } from './onnx/model';
import { hashString, mulberry32 } from './onnx/random';

/** How to settle the dimensions of a model's inputs. */
export interface ResolveOptions {
  /** Global batch size (rows across all devices). */
  batch: number;
  /** Name of the symbolic batch dimension (`--batch-dim`), when automatic detection is wrong. */
  batchDim?: string;
  /** Values for other symbolic dimensions (`--dim NAME=VALUE`). */
  dims?: Record<string, number>;
  /** Full shapes per input (`--input-shape x=1,3,48,320`); the batch axis is replaced by `batch`. */
  inputShapes?: Record<string, number[]>;
  /** Values of inputs shared by every row, such as a scalar sample rate (`--value sr=16000`). */
  values?: Record<string, number>;
}

/** A graph input with every dimension settled. */
export interface ResolvedInput {
  name: string;
  dtype: DType;
  /** Global dims: the batch axis holds the global batch. */
  dims: number[];
  /** The axis that holds rows of the batch, or null for inputs shared by every row. */
  batchAxis: number | null;
  /**
   * True when the model fixes the batch size (a numeric first dimension): the input can be
   * fed only whole, never split across devices.
   */
  batchFixed: boolean;
  /** Dims as the model declares them. */
  modelDims: Dim[] | null;
}

/** Input data ready for an ORT tensor. */
export interface ModelInput {
  name: string;
  dtype: DType;
  dims: number[];
  /** Row-major data; float16/bfloat16 as 16-bit patterns, bool as bytes, int64 as BigInt64Array. */
  data: TensorData;
  batchAxis: number | null;
}

/**
 * Which axis of each input holds the rows of the batch (null: the input is shared by every
 * row).
 *
 *  - With `batchDim` (`--batch-dim NAME`): the axis carrying that name, in every input.
 *  - Otherwise an input whose first dimension is symbolic or unknown has its batch on axis 0,
 *    and those first dimensions' names are the batch's names. An input whose first dimension
 *    is a number (recurrent state `[layers, batch, hidden]`) has its batch where it carries
 *    one of those names; failing a name, when the batch was found on unnamed dimensions, on
 *    its one unnamed dimension (silero VAD v5's state `[2, ?, 128]`).
 */
export function findBatchAxes(inputs: ModelIR['inputs'], batchDim?: string): Map<string, number | null> {
  const axes = new Map<string, number | null>();
  if (batchDim !== undefined) {
    for (const input of inputs) axes.set(input.name, input.dims?.includes(batchDim) ? input.dims.indexOf(batchDim) : null);
    return axes;
  }
  const names = new Set<string>();
  let unnamed = false;
  for (const input of inputs) {
    const md = input.dims;
    const first = !md || (md.length > 0 && typeof md[0] !== 'number');
    axes.set(input.name, first ? 0 : null);
    if (first && typeof md?.[0] === 'string') names.add(md[0]);
    else if (first) unnamed = true;
  }
  for (const input of inputs) {
    const md = input.dims;
    if (axes.get(input.name) !== null || !md || md.length === 0) continue;
    const byName = md.findIndex((d) => typeof d === 'string' && names.has(d));
    const nulls = md.flatMap((d, i) => (d === null ? [i] : []));
    if (byName >= 0) axes.set(input.name, byName);
    else if (unnamed && nulls.length === 1 && md.every((d) => d === null || typeof d === 'number')) axes.set(input.name, nulls[0]);
  }
  return axes;
}

/**
 * Settles every graph input's dimensions for a run with global batch `opts.batch`.
 *
 * The batch axis is the dimension named by `batchDim`, or else each input's first
 * dimension when it is symbolic or unknown. Other symbolic dimensions take their values from
 * `dims` or from another input's `inputShapes`. Anything still unset is one UserError that
 * names every such dimension and the flags that set them.
 */
export function resolveInputShapes(ir: ModelIR, opts: ResolveOptions): ResolvedInput[] {
  const file = ir.path;
  const { batch, batchDim } = opts;
  const dimValues = opts.dims ?? {};
  const shapes = opts.inputShapes ?? {};
  checkFlags(ir, opts);
  const batchAxes = findBatchAxes(ir.inputs, batchDim);
  const batchSymbols = new Set<string>();
  for (const input of ir.inputs) {
    const axis = batchAxes.get(input.name);
    const d = axis === null || axis === undefined ? undefined : input.dims?.[axis];
    if (typeof d === 'string') batchSymbols.add(d);
  }
  for (const s of batchSymbols) {
    if (dimValues[s] !== undefined && dimValues[s] !== batch) {
      throw new UserError(`--dim ${s}=${dimValues[s]} conflicts with --batch ${batch}: "${s}" is the batch dimension; set it with --batch only`);
    }
  }

  // A model without any dynamic batch axis has its batch fixed by its first input's first dim.
  let fixedBatch: number | null = null;
  if (batchDim === undefined && [...batchAxes.values()].every((a) => a === null)) {
    const first = ir.inputs.find((i) => i.dims && i.dims.length > 0);
    const d = first?.dims?.[0];
    if (typeof d === 'number' && !shapes[first!.name]) {
      fixedBatch = d;
      if (batch !== d) {
        throw new UserError(`${file}: the model's batch is fixed at ${d} (input "${first!.name}" has shape [${first!.dims!.join(', ')}]), but --batch is ${batch}; use --batch ${d}, or export the model with a dynamic batch dimension`);
      }
      for (const i of ir.inputs) if (i.dims?.[0] === d) batchAxes.set(i.name, 0);
    }
  }

  // Symbol values bound by --input-shape, so that other inputs sharing a symbol agree.
  const bound = new Map<string, number>(Object.entries(dimValues));
  for (const s of batchSymbols) bound.set(s, batch);
  for (const input of ir.inputs) {
    const given = shapes[input.name];
    if (!given || !input.dims) continue;
    const axis = batchAxes.get(input.name) ?? null;
    input.dims.forEach((d, i) => {
      if (typeof d !== 'string' || i === axis) return;
      const prev = bound.get(d);
      if (prev !== undefined && prev !== given[i]) {
        throw new UserError(`--input-shape ${input.name}=${given.join(',')}: dimension ${d} is ${given[i]} here but ${prev} elsewhere (another --input-shape or --dim); make them agree`);
      }
      bound.set(d, given[i]);
    });
  }

  const resolved: ResolvedInput[] = [];
  const problems: string[] = [];
  const dimFlags: string[] = [];
  const shapeFlags: string[] = [];
  const placeholders = new Map<string | symbol, string>();
  for (const input of ir.inputs) {
    const md = input.dims;
    const given = shapes[input.name];
    let axis = batchAxes.get(input.name) ?? null;
    let dims: number[];
    if (given) {
      if (md && given.length !== md.length) {
        throw new UserError(`--input-shape ${input.name}=${given.join(',')}: input "${input.name}" of ${file} has ${md.length} dimensions [${md.map(showDim).join(', ')}], not ${given.length}`);
      }
      if (!md && batchDim === undefined) axis = 0;
      dims = [...given];
      if (axis !== null && fixedBatch === null) dims[axis] = batch;
      md?.forEach((d, i) => {
        if (typeof d === 'number' && i !== axis && dims[i] !== d) {
          throw new UserError(`--input-shape ${input.name}=${given.join(',')}: dimension ${i} of input "${input.name}" is fixed at ${d} in ${file}, not ${dims[i]}`);
        }
      });
    } else if (!md) {
      problems.push(`input "${input.name}" has no declared shape`);
      shapeFlags.push(`--input-shape ${input.name}=D0,D1,…`);
      continue;
    } else {
      dims = [];
      const unset: string[] = [];
      md.forEach((d, i) => {
        if (i === axis) dims.push(fixedBatch ?? batch);
        else if (typeof d === 'number') dims.push(d);
        else if (typeof d === 'string' && bound.has(d)) dims.push(bound.get(d)!);
        else {
          unset.push(typeof d === 'string' ? d : `axis ${i} (unnamed)`);
          if (typeof d === 'string' && !dimFlags.includes(`--dim ${d}=VALUE`)) dimFlags.push(`--dim ${d}=VALUE`);
          dims.push(-1);
        }
      });
      if (unset.length > 0) {
        problems.push(`input "${input.name}" has unset dimension${unset.length > 1 ? 's' : ''} ${unset.join(', ')}`);
        shapeFlags.push(`--input-shape ${input.name}=${exampleShape(md, dims, axis, placeholders)}`);
        continue;
      }
    }
    resolved.push({ name: input.name, dtype: input.dtype, dims, batchAxis: axis, batchFixed: fixedBatch !== null && axis !== null, modelDims: md });
  }
  if (problems.length > 0) {
    const how = [...(dimFlags.length > 0 ? [dimFlags.join(' ')] : []), shapeFlags.join(' ')].join(' or ');
    throw new UserError(`${file}: ${problems.join('; ')}; set them with ${how}`);
  }
  checkValues(file, resolved, opts.values ?? {});
  return resolved;
}

/** The flags' own checks: well-formed, and naming inputs and dimensions the model has. */
function checkFlags(ir: ModelIR, opts: ResolveOptions): void {
  const file = ir.path;
  const { batch, batchDim } = opts;
  const dimValues = opts.dims ?? {};
  const shapes = opts.inputShapes ?? {};
  if (!Number.isInteger(batch) || batch < 1) throw new UserError(`--batch ${batch}: the batch size must be a positive integer`);
  for (const [k, v] of Object.entries(dimValues)) {
    if (!Number.isInteger(v) || v < 1) throw new UserError(`--dim ${k}=${v}: a dimension must be a positive integer`);
  }
  const names = ir.inputs.map((i) => i.name);
  const known = names.map((n) => `"${n}"`).join(', ') || '(none)';
  for (const [k, v] of Object.entries(shapes)) {
    if (!names.includes(k)) throw new UserError(`--input-shape ${k}=…: ${file} has no input "${k}"; its inputs are ${known}`);
    if (!Array.isArray(v) || v.length === 0 || v.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new UserError(`--input-shape ${k}=${String(v)}: give positive integers separated by commas, e.g. ${k}=1,3,224,224`);
    }
  }
  for (const [k, v] of Object.entries(opts.values ?? {})) {
    if (!names.includes(k)) throw new UserError(`--value ${k}=${v}: ${file} has no input "${k}"; its inputs are ${known}`);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`--value ${k}=${String(v)}: give a number, e.g. ${k}=16000`);
  }
  const symbols = new Set<string>();
  for (const input of ir.inputs) for (const d of input.dims ?? []) if (typeof d === 'string') symbols.add(d);
  if (batchDim !== undefined && !symbols.has(batchDim)) {
    throw new UserError(`--batch-dim ${batchDim}: no input of ${file} has that dimension; its symbolic dimensions are ${[...symbols].join(', ') || '(none)'}`);
  }
  for (const k of Object.keys(dimValues)) {
    if (!symbols.has(k)) throw new UserError(`--dim ${k}: ${file} has no input dimension named "${k}"; its symbolic dimensions are ${[...symbols].join(', ') || '(none)'}`);
  }
  for (const input of ir.inputs) {
    if (input.kind !== 'tensor') throw new UserError(`${file}: input "${input.name}" is a ${input.kind}, not a tensor; Parallax can feed tensor inputs only`);
  }
}

/** `--value` fits only inputs shared by every row, and only whole numbers fit integer inputs. */
function checkValues(file: string, resolved: readonly ResolvedInput[], values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) {
    const r = resolved.find((x) => x.name === k)!;
    if (r.batchAxis !== null) {
      throw new UserError(`--value ${k}=${v}: input "${k}" of ${file} has a batch axis (shape [${r.dims.join(', ')}]); --value sets inputs shared by every row, give batched data with --inputs FILE.json`);
    }
    if (isIntegerType(r.dtype) && !Number.isInteger(v)) throw new UserError(`--value ${k}=${v}: input "${k}" is ${r.dtype}; give a whole number`);
    if (r.dtype === 'bool' && v !== 0 && v !== 1) throw new UserError(`--value ${k}=${v}: input "${k}" is bool; give 0 or 1`);
  }
}

function isIntegerType(d: DType): boolean {
  return /^u?int\d+$/.test(d);
}

/**
 * True for an input that looks like a rate (a sample rate `sr`, `sample_rate`, `fs`, …): an
 * integer shared by every row and holding at most one value. Random small integers would make
 * the model take a branch it never takes in use (silero VAD checks `sr` against 16000 and
 * 8000), so such inputs need their value given.
 */
export function looksLikeRate(r: ResolvedInput): boolean {
  const count = r.dims.reduce((a, b) => a * b, 1);
  if (!isIntegerType(r.dtype) || r.batchAxis !== null || count > 1) return false;
  return /(^|[_.\-/])(sr|fs|hz|rate|sample_?rate|sampling_?rate|samplerate)$/i.test(r.name) || /rate/i.test(r.name);
}

function showDim(d: Dim): string {
  return d === null ? '?' : String(d);
}

/**
 * `1,3,H,W`-style example for --input-shape: settled dims as numbers, unset ones as
 * placeholders. `names` is shared by every input of one message, so that one placeholder
 * never stands for two different dimensions: a symbol keeps its placeholder across inputs,
 * each unnamed dimension gets a new one.
 */
function exampleShape(md: Dim[], dims: number[], batchAxis: number | null, names: Map<string | symbol, string>): string {
  const fresh = (key: string | symbol, hint?: string): string => {
    let p = names.get(key);
    if (p === undefined) {
      const taken = new Set(names.values());
      const base = hint ?? 'D';
      p = hint !== undefined && !taken.has(hint) ? hint : `${base}${names.size + 1}`;
      for (let k = names.size + 2; taken.has(p); k++) p = `${base}${k}`;
      names.set(key, p);
    }
    return p;
  };
  return md
    .map((d, i) => {
      if (i === batchAxis) return '1';
      if (dims[i] !== -1) return String(dims[i]);
      const hint = md.length === 4 && i >= 2 ? (i === 2 ? 'H' : 'W') : undefined;
      return fresh(typeof d === 'string' ? d : Symbol(String(i)), hint);
    })
    .join(',');
}

/**
 * Seeded random data for each resolved input. The same seed gives the same data; each input
 * gets its own stream (seeded from the run seed and its name). Floats are uniform in [-1, 1);
 * integers are small and non-negative (0–9) so they are valid indices into any embedding;
 * integer or bool inputs whose name contains "mask" are all ones, so attention masks attend
 * everywhere; uint8 spans 0–255 and int8 −128–127, like image data. Inputs named in `values`
 * (`--value NAME=V`) hold that value in every element; an input that looks like a rate
 * ({@link looksLikeRate}, e.g. a scalar `sr`) must be given one: it is a UserError naming the
 * input and the flag otherwise.
 */
export function synthesizeInputs(resolved: readonly ResolvedInput[], seed: number, values: Record<string, number> = {}): ModelInput[] {
  return resolved.map((r) => {
    if (r.name in values) return valueInput(r, values[r.name]);
    if (looksLikeRate(r)) {
      throw new UserError(
        `input "${r.name}" (${r.dtype}, shape [${r.dims.join(', ')}]) looks like a rate, which random data would get wrong; give its value with --value ${r.name}=VALUE (e.g. --value ${r.name}=16000) or the data with --inputs FILE.json`,
      );
    }
    const count = r.dims.reduce((a, b) => a * b, 1);
    if (!(count <= MAX_TENSOR_ELEMENTS)) {
      throw new UserError(
        `input "${r.name}" would have shape [${r.dims.join(', ')}], ${count.toExponential(2)} elements, more than the ${MAX_TENSOR_ELEMENTS} Parallax synthesizes; give smaller --batch, --dim or --input-shape values`,
      );
    }
    const data = allocTensorData(r.dtype, count);
    if (!data) {
      throw new UserError(`input "${r.name}" has type ${r.dtype}, which Parallax cannot synthesize; give the data with --inputs FILE.json`);
    }
    const rand = mulberry32((hashString(r.name) ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0);
    const mask = /mask/i.test(r.name);
    const small = (): number => (mask ? 1 : Math.floor(rand() * 10));
    switch (r.dtype) {
      case 'float32':
      case 'float64':
        for (let i = 0; i < count; i++) data[i] = rand() * 2 - 1;
        break;
      case 'float16':
        for (let i = 0; i < count; i++) data[i] = float32ToFloat16Bits(rand() * 2 - 1);
        break;
      case 'bfloat16': {
        const f = new Float32Array(1);
        const u = new Uint32Array(f.buffer);
        for (let i = 0; i < count; i++) {
          f[0] = rand() * 2 - 1;
          data[i] = u[0] >>> 16;
        }
        break;
      }
      case 'int64':
      case 'uint64': {
        const big = data as BigInt64Array | BigUint64Array;
        for (let i = 0; i < count; i++) big[i] = BigInt(small());
        break;
      }
      case 'uint8':
        for (let i = 0; i < count; i++) data[i] = mask ? 1 : Math.floor(rand() * 256);
        break;
      case 'int8':
        for (let i = 0; i < count; i++) data[i] = mask ? 1 : Math.floor(rand() * 256) - 128;
        break;
      case 'bool':
        for (let i = 0; i < count; i++) data[i] = mask || rand() < 0.5 ? 1 : 0;
        break;
      default:
        for (let i = 0; i < count; i++) data[i] = small();
    }
    return { name: r.name, dtype: r.dtype, dims: [...r.dims], data, batchAxis: r.batchAxis };
  });
}

/** An input whose every element is `v` (a `--value`). */
function valueInput(r: ResolvedInput, v: number): ModelInput {
  const count = r.dims.reduce((a, b) => a * b, 1);
  const data = allocTensorData(r.dtype, count);
  if (!data) throw new UserError(`--value ${r.name}=${v}: input "${r.name}" has type ${r.dtype}, which Parallax cannot fill; give the data with --inputs FILE.json`);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) data.fill(BigInt(v));
  else if (r.dtype === 'float16') data.fill(float32ToFloat16Bits(v));
  else if (r.dtype === 'bfloat16') data.fill(new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16);
  else data.fill(v);
  return { name: r.name, dtype: r.dtype, dims: [...r.dims], data, batchAxis: r.batchAxis };
}

/**
 * Reads input data from a `.npy` file (models with one input) or a `.json` file
 * (`{ "x": { "dims": [1, 3, 48, 320], "data": [...] } }`, data flat or nested), checked
 * against the resolved inputs: every input present, dims and element types matching. Inputs
 * named in `values` (`--value NAME=V`) take that value and need no entry in the file.
 */
export async function loadInputs(file: string, resolved: readonly ResolvedInput[], values: Record<string, number> = {}): Promise<ModelInput[]> {
  const fromFile = resolved.filter((r) => !(r.name in values));
  const loaded = await loadInputFile(file, fromFile, new Set(Object.keys(values)));
  return resolved.map((r) => (r.name in values ? valueInput(r, values[r.name]) : loaded.find((x) => x.name === r.name)!));
}

async function loadInputFile(file: string, resolved: readonly ResolvedInput[], given: ReadonlySet<string>): Promise<ModelInput[]> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `${file}: input file not found; check the --inputs path` : `${file}: cannot read the input file (${(e as Error).message})`);
  }
  const ext = extname(file).toLowerCase();
  if (ext === '.npy') {
    if (resolved.length !== 1) {
      throw new UserError(`${file}: a .npy file holds one array but the model has ${resolved.length} inputs (${resolved.map((r) => r.name).join(', ')}); give a .json file with one entry per input`);
    }
    const arr = parseNpy(bytes, file);
    const r = resolved[0];
    if (arr.dtype !== r.dtype) {
      throw new UserError(`${file}: holds ${arr.dtype} data but input "${r.name}" is ${r.dtype}; save it with arr.astype(np.${numpyName(r.dtype)})`);
    }
    checkDims(file, r, arr.dims);
    return [{ name: r.name, dtype: r.dtype, dims: arr.dims, data: arr.data, batchAxis: r.batchAxis }];
  }
  if (ext === '.json') return parseJsonInputs(bytes, file, resolved, given);
  throw new UserError(`${file}: unsupported input file type "${ext || '(none)'}"; give a .npy file (one input) or a .json file`);
}

function checkDims(file: string, r: ResolvedInput, dims: number[]): void {
  const same = dims.length === r.dims.length && dims.every((d, i) => d === r.dims[i]);
  if (same) return;
  const onlyBatch = r.batchAxis !== null && dims.length === r.dims.length && dims.every((d, i) => i === r.batchAxis || d === r.dims[i]);
  if (onlyBatch) {
    throw new UserError(`${file}: input "${r.name}" has ${dims[r.batchAxis!]} rows but the run's batch is ${r.dims[r.batchAxis!]}; use --batch ${dims[r.batchAxis!]}`);
  }
  throw new UserError(`${file}: input "${r.name}" has shape [${dims.join(', ')}] but the model expects [${r.dims.join(', ')}]; reshape the data or set the model's dimensions with --dim/--input-shape`);
}

function numpyName(d: DType): string {
  return d === 'bool' ? 'bool_' : d;
}

function parseJsonInputs(bytes: Uint8Array, file: string, resolved: readonly ResolvedInput[], given: ReadonlySet<string>): ModelInput[] {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: is not valid JSON (${(e as Error).message}); expected { "<input>": { "dims": [...], "data": [...] } }`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new UserError(`${file}: expected a JSON object { "<input>": { "dims": [...], "data": [...] } }`);
  }
  const entries = doc as Record<string, unknown>;
  const known = new Set(resolved.map((r) => r.name));
  const extra = Object.keys(entries).filter((k) => !known.has(k) && !given.has(k));
  if (extra.length > 0) throw new UserError(`${file}: has entries ${extra.map((k) => `"${k}"`).join(', ')} that are not model inputs; the inputs are ${[...known].map((k) => `"${k}"`).join(', ')}`);
  const missing = resolved.filter((r) => !(r.name in entries)).map((r) => `"${r.name}"`);
  if (missing.length > 0) throw new UserError(`${file}: lacks input${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; add an entry { "dims": [...], "data": [...] } for each`);

  return resolved.map((r) => {
    const entry = entries[r.name] as { dims?: unknown; data?: unknown } | null;
    if (typeof entry !== 'object' || entry === null || !Array.isArray(entry.dims) || !Array.isArray(entry.data)) {
      throw new UserError(`${file}: entry "${r.name}" must be an object { "dims": [...], "data": [...] }`);
    }
    const dims = entry.dims as unknown[];
    if (dims.some((d) => !Number.isInteger(d) || (d as number) < 0)) throw new UserError(`${file}: "${r.name}".dims must be non-negative integers`);
    checkDims(file, r, dims as number[]);
    const flat = (entry.data as unknown[]).flat(Infinity) as unknown[];
    const count = r.dims.reduce((a, b) => a * b, 1);
    if (flat.length !== count) throw new UserError(`${file}: "${r.name}".data has ${flat.length} values but dims [${r.dims.join(', ')}] need ${count}`);
    const data = allocTensorData(r.dtype, count);
    if (!data) throw new UserError(`${file}: input "${r.name}" has type ${r.dtype}, which Parallax cannot feed from JSON`);
    fillFromJson(data, r, flat, file);
    return { name: r.name, dtype: r.dtype, dims: [...r.dims], data, batchAxis: r.batchAxis };
  });
}

function fillFromJson(data: TensorData, r: ResolvedInput, values: unknown[], file: string): void {
  const bad = (i: number, what: string): never => {
    throw new UserError(`${file}: "${r.name}".data[${i}] is ${JSON.stringify(values[i])}, not ${what} (input "${r.name}" is ${r.dtype})`);
  };
  const isFloat = r.dtype.startsWith('float') || r.dtype === 'bfloat16';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (r.dtype === 'bool') {
      if (v === true || v === 1) data[i] = 1;
      else if (v === false || v === 0) data[i] = 0;
      else bad(i, 'a boolean');
    } else if (r.dtype === 'int64' || r.dtype === 'uint64') {
      // JSON numbers lose precision past 2^53; accept integer strings for larger ids.
      if (typeof v === 'number' && Number.isInteger(v)) data[i] = BigInt(v);
      else if (typeof v === 'string' && /^-?\d+$/.test(v)) data[i] = BigInt(v);
      else bad(i, 'an integer');
    } else if (isFloat) {
      if (typeof v !== 'number') bad(i, 'a number');
      const n = v as number;
      if (r.dtype === 'float16') data[i] = float32ToFloat16Bits(n);
      else if (r.dtype === 'bfloat16') {
        const f = new Float32Array([n]);
        data[i] = new Uint32Array(f.buffer)[0] >>> 16;
      } else data[i] = n;
    } else {
      if (typeof v !== 'number' || !Number.isInteger(v)) bad(i, 'an integer');
      data[i] = v as number;
    }
  }
}

/** A parsed `.npy` array. */
export interface NpyArray {
  dtype: DType;
  dims: number[];
  data: TensorData;
}

const NPY_DTYPES: Record<string, DType> = {
  f4: 'float32',
  f8: 'float64',
  f2: 'float16',
  i8: 'int64',
  i4: 'int32',
  i2: 'int16',
  i1: 'int8',
  u8: 'uint64',
  u4: 'uint32',
  u2: 'uint16',
  u1: 'uint8',
  b1: 'bool',
};

/**
 * Parses a NumPy `.npy` file (format versions 1–3, little-endian, C order). Written by hand
 * because no .npy reader is installed; the format is a magic string, a header length and a
 * Python-literal header dict.
 */
export function parseNpy(bytes: Uint8Array, file: string): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new UserError(`${file}: is not a NumPy .npy file (no \\x93NUMPY header); save it with np.save`);
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new UserError(`${file}: the .npy file is truncated; save it again`);
    headerLen = dv.getUint32(8, true);
    start = 12;
  } else {
    throw new UserError(`${file}: .npy format version ${major} is not supported; save it with np.save from NumPy ≥ 1.0`);
  }
  if (start + headerLen > bytes.length) throw new UserError(`${file}: the .npy file is truncated; save it again`);
  const header = Buffer.from(bytes.subarray(start, start + headerLen)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new UserError(`${file}: the .npy header is not understood (${header.trim().slice(0, 80)}); save a plain numeric array with np.save`);
  }
  if (fortran === 'True') throw new UserError(`${file}: the array is in Fortran order; save np.ascontiguousarray(arr) instead`);
  const m = /^([<>|=])([a-z]\d+)$/.exec(descr);
  const dtype = m ? NPY_DTYPES[m[2]] : undefined;
  if (!m || !dtype) throw new UserError(`${file}: .npy element type "${descr}" is not supported; use a numeric or bool array`);
  if (m[1] === '>' && !m[2].endsWith('1')) throw new UserError(`${file}: the array is big-endian ("${descr}"); save arr.astype(arr.dtype.newbyteorder('<'))`);
  const dims = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s.replace(/L$/, '')));
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw new UserError(`${file}: the .npy shape (${shapeText}) is not understood`);
  const count = dims.reduce((a, b) => a * b, 1);
  const size = byteSize(dtype, count)!;
  const offset = start + headerLen;
  if (bytes.length - offset < size) throw new UserError(`${file}: the .npy file holds ${bytes.length - offset} bytes of data but shape (${dims.join(', ')}) needs ${size}; the file is truncated`);
  const data = allocTensorData(dtype, count)!;
  // Copy into a fresh, aligned buffer: the file buffer's offset need not suit an 8-byte view.
  new Uint8Array(data.buffer, data.byteOffset, size).set(bytes.subarray(offset, offset + size));
  return { dtype, dims, data };
}

/**
 * Rows [start, start + count) of `input` along its batch axis. Axis 0 (and any axis after
 * leading 1-sized dims) returns a view sharing the input's memory; other axes copy. Inputs
 * without a batch axis are shared by every shard and come back unchanged.
 */
export function sliceBatch(input: ModelInput, start: number, count: number): ModelInput {
  const axis = input.batchAxis;
  if (axis === null) return input;
  const rows = input.dims[axis];
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
    throw new RangeError(`sliceBatch: rows [${start}, ${start + count}) are outside input "${input.name}" with ${rows} rows`);
  }
  const outer = input.dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = input.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const dims = [...input.dims];
  dims[axis] = count;
  if (outer === 1) {
    return { ...input, dims, data: input.data.subarray(start * inner, (start + count) * inner) as TensorData };
  }
  const out = allocLike(input.data, outer * count * inner);
  for (let o = 0; o < outer; o++) {
    const from = (o * rows + start) * inner;
    copy(out, input.data.subarray(from, from + count * inner) as TensorData, o * count * inner);
  }
  return { ...input, dims, data: out };
}

/**
 * Joins shards back along their batch axis: the inverse of {@link sliceBatch} over
 * consecutive row ranges (used to gather data-parallel outputs). Shards without a batch axis
 * are identical copies, so the first is returned.
 */
export function concatBatch(parts: readonly ModelInput[]): ModelInput {
  if (parts.length === 0) throw new RangeError('concatBatch: no parts');
  const first = parts[0];
  const axis = first.batchAxis;
  if (axis === null || parts.length === 1) return first;
  const outer = first.dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = first.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const rows = parts.reduce((n, p) => n + p.dims[axis], 0);
  const out = allocLike(first.data, outer * rows * inner);
  for (let o = 0; o < outer; o++) {
    let at = o * rows * inner;
    for (const p of parts) {
      const block = p.dims[axis] * inner;
      copy(out, p.data.subarray(o * block, (o + 1) * block) as TensorData, at);
      at += block;
    }
  }
  const dims = [...first.dims];
  dims[axis] = rows;
  return { ...first, dims, data: out };
}

/**
 * Rows per part when `global` rows are split over `parts` devices (or micro-batches): as
 * even as possible, the first `global % parts` parts one row larger.
 * @param unit what the parts are, for the error message (default "devices").
 */
export function splitBatch(global: number, parts: number, unit = 'devices'): number[] {
  if (!Number.isInteger(parts) || parts < 1) throw new RangeError(`splitBatch: parts must be a positive integer, got ${parts}`);
  if (!Number.isInteger(global) || global < 1) throw new UserError(`--batch ${global}: the batch size must be a positive integer`);
  if (parts > global) throw new UserError(`batch ${global} has fewer rows than the ${parts} ${unit}; use --batch ≥ ${parts}`);
  const base = Math.floor(global / parts);
  const extra = global % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

function allocLike(data: TensorData, n: number): TensorData {
  return new (data.constructor as new (n: number) => TensorData)(n);
}

function copy(out: TensorData, src: TensorData, offset: number): void {
  // Both arrays have the same element type; the cast only lets TypeScript see one `set`.
  (out as Uint8Array).set(src as unknown as Uint8Array, offset);
}
