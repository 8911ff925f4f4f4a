/**
 * Loading ONNX models into Parallax's graph IR.
 *
 * The IR is what the planner, the partitioner, the cost model and the inline hints need to
 * know about a model: its nodes in a topological order, the tensors between them, their
 * shapes where known, and its weights' sizes, but not the weights themselves (a model may
 * be gigabytes; the runner hands ONNX Runtime the file, not the IR). Decoding goes through
 * onnx-proto's generated protobufjs code; every way a user's file can be wrong ends in a
 * one-line {@link UserError} that names the file.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import { MAX_GRAPH_DEPTH, MAX_MODEL_NODES } from '../../common/limits';
import { checkLocationText, resolveInsideFolder } from './external-data';
import { byteSize, dtypeName, isWeightType, type DType } from './dtypes';
import { readNodeExtras, type NodeExtras, type ShardingSpec } from './node-metadata';

export { estimateCosts } from './costs';
export type { CostEstimate, NodeCost, TensorShape } from './costs';

/** A dimension: a fixed size, a symbolic name (`batch`), or null where the model says nothing. */
export type Dim = number | string | null;

/** Type and shape of a graph input, output or intermediate value. */
export interface ValueInfo {
  name: string;
  /** What kind of value: almost always a tensor; sequences/maps/optionals carry no shape here. */
  kind: 'tensor' | 'sequence' | 'map' | 'optional' | 'sparse_tensor' | 'unknown';
  /** Element type (`'undefined'` for non-tensors). */
  dtype: DType;
  /** Dimensions, or null where even the rank is unknown. */
  dims: Dim[] | null;
}

/** A constant tensor (initializer, Constant node value or tensor attribute), without its data. */
export interface TensorSummary {
  kind: 'tensor';
  name: string;
  dtype: DType;
  dims: number[];
  /** Number of elements. */
  elements: number;
  /** Bytes of data, or null for types without a fixed size (strings). */
  byteSize: number | null;
  /**
   * The values of small numeric tensors (at most {@link SMALL_TENSOR_ELEMENTS} elements):
   * shapes, axes, scales. Shape propagation needs them; weights are never copied.
   */
  values?: number[];
  /** Where the data lives when the tensor is stored outside the model file. */
  external?: ExternalDataRef;
}

/** Location of an external-data tensor. */
export interface ExternalDataRef {
  /** `location` as written in the model (relative to the model's folder). */
  location: string;
  /** Absolute path of the data file. */
  path: string;
  offset: number;
  /** Byte length, or null when the model leaves it to the tensor's shape. */
  length: number | null;
}

/** A subgraph attribute (If/Loop/Scan bodies), summarised. */
export interface GraphSummary {
  kind: 'graph';
  name: string;
  nodeCount: number;
}

/** Attribute values in plain JS form; ints are JS numbers (int64 beyond 2^53 loses precision). */
export type AttributeValue =
  | number
  | string
  | number[]
  | string[]
  | TensorSummary
  | TensorSummary[]
  | GraphSummary
  | GraphSummary[]
  | null;

/** One node of the main graph. */
export interface IRNode {
  /** Position in the file's node list. */
  index: number;
  /** Unique name: the node's own name, or a synthesized `<OpType>_<index>` where it was empty or taken. */
  name: string;
  /** The name as written in the file (may be empty). */
  originalName: string;
  opType: string;
  /** Operator domain, '' for the default ONNX domain. */
  domain: string;
  /** Input tensor names; '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attributes: Record<string, AttributeValue>;
  /** True for nodes with graph attributes (If, Loop, Scan). */
  hasSubgraphs: boolean;
  /** Outer-scope tensors read inside this node's subgraphs: inputs of this node for ordering. */
  implicitInputs: string[];
  /**
   * `metadata_props` of the node. torch.onnx.export(dynamo=True) writes
   * `pkg.torch.onnx.stack_trace` and `pkg.torch.onnx.name_scopes` here.
   */
  metadata: Record<string, string>;
  /** The node's ONNX sharding annotations (`device_configurations`), when it has any. */
  sharding?: ShardingSpec[];
}

/** The graph IR of a model. */
export interface ModelIR {
  /** Absolute path of the model file (or the name given to {@link parseModel}). */
  path: string;
  /** SHA-256 of the file's bytes, hex. */
  sha256: string;
  /** Size of the model file in bytes. */
  fileBytes: number;
  irVersion: number;
  /** Opset version of the default ONNX domain, or null where the model imports none. */
  opsetVersion: number | null;
  /** Every imported opset by domain ('' for the default domain). */
  opsets: Record<string, number>;
  producerName: string;
  producerVersion: string;
  graphName: string;
  /** Model-level metadata_props. */
  metadata: Record<string, string>;
  nodes: IRNode[];
  initializers: TensorSummary[];
  /** Graph inputs that are not initializers: what a caller has to feed. */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Every value with a declared type: graph inputs, outputs and value_info entries. */
  valueInfo: Map<string, ValueInfo>;
  /** Initializers by name. */
  initializerByName: Map<string, TensorSummary>;
  /** Outputs of Constant nodes by tensor name. */
  constants: Map<string, TensorSummary>;
  /** Tensor name → index of the node producing it. */
  producers: Map<string, number>;
  /** Tensor name → indices of the nodes reading it (explicitly or inside a subgraph). */
  consumers: Map<string, number[]>;
  /** Node indices in a topological order; file order wherever the file allows it. */
  topoOrder: number[];
  /**
   * Weight elements: initializers and Constant-node tensors of floating-point or quantized
   * types. int64/int32/bool tensors are shapes, axes and indices, not learned weights.
   */
  parameterCount: number;
  /** Bytes of those weights. */
  parameterBytes: number;
  /** Absolute paths of the external data files the model references. */
  externalDataFiles: string[];
}

/** Options for {@link parseModel} and {@link loadModel}. */
export interface ParseOptions {
  /**
   * Check that external data files exist and are long enough (default true). Turn it off
   * only where the bytes are not beside their data (e.g. a model received over IPC).
   */
  checkExternalData?: boolean;
  /** Compute `sha256` of the bytes (default true); off where only the graph is read (the IR's `sha256` is then ''). */
  hash?: boolean;
}

/** Tensors up to this many elements keep their values in the IR (shapes, axes, scales). */
export const SMALL_TENSOR_ELEMENTS = 64;

/** Reads and parses an ONNX model file. Throws {@link UserError} for any problem with the file. */
export async function loadModel(path: string, opts: ParseOptions = {}): Promise<ModelIR> {
  const abs = resolve(path);
  const bytes = await readModelFile(abs, path);
  return parseModel(bytes, abs, opts);
}

/** Reads a model file's bytes, mapping file-system errors to {@link UserError}s. */
export async function readModelFile(abs: string, shown = abs): Promise<Uint8Array> {
  try {
    return await readFile(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${shown}: model file not found; check the path (relative paths are resolved from ${process.cwd()})`);
    if (code === 'EISDIR') throw new UserError(`${shown}: is a folder, not an ONNX model file; give the path of the .onnx file inside it`);
    if (code === 'EACCES' || code === 'EPERM') throw new UserError(`${shown}: cannot read the model file (permission denied); make it readable`);
    throw new UserError(`${shown}: cannot read the model file (${(e as Error).message})`);
  }
}

/**
 * Decodes ONNX bytes into onnx-proto's ModelProto, checking that they are a model at all.
 * `pathForMessages` names the file in errors. Use this, then {@link encodeModel}, to rewrite
 * a model (pipeline stages); use {@link parseModel} for the IR.
 */
export function decodeModelProto(bytes: Uint8Array, pathForMessages: string): onnx.ModelProto {
  const p = pathForMessages;
  if (bytes.length === 0) throw new UserError(`${p}: the file is empty, not an ONNX model; export the model again`);
  // Text files get their own message, but only once the bytes have failed as a model: a
  // model's leading tags and names can be printable, so "looks like text" is never enough.
  const notAModel = (why: string): UserError => {
    const text = describeText(bytes);
    return text !== null
      ? new UserError(`${p}: is a text file (${text}), not an ONNX model; give the binary .onnx file your exporter wrote`)
      : new UserError(`${p}: is not an ONNX model (${why}); give an .onnx file`);
  };
  let model: onnx.ModelProto;
  try {
    // Decode from a plain Uint8Array view, never a Buffer: protobufjs' Buffer reader reads
    // strings without a bounds check, so a file cut inside a string would decode "fine".
    model = onnx.ModelProto.decode(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    const msg = (e as Error).message;
    // protobufjs decodes nested messages recursively; a model nesting subgraphs thousands
    // deep overflows the stack before any check of ours can run.
    if (e instanceof RangeError && /call stack/i.test(msg)) {
      throw new UserError(`${p}: the model nests subgraphs (If/Loop/Scan bodies) thousands of levels deep; Parallax reads up to ${MAX_GRAPH_DEPTH} levels`);
    }
    // protobufjs says "index out of range" when a length runs past the end of the buffer.
    // ONNX writers put ir_version (field 1, varint: tag byte 0x08) first, so a file that
    // starts like a model and then runs out is a truncated model; anything else is not one.
    if (/index out of range/i.test(msg) && bytes[0] === 0x08) {
      throw new UserError(`${p}: the ONNX file is truncated (${bytes.length} bytes, a field runs past the end); download or export it again`);
    }
    throw notAModel(`protobuf decoding failed: ${msg}`);
  }
  const ir = toNumber(model.irVersion);
  // Any byte string decodes as *some* protobuf message; a model has a sane IR version and a graph.
  if (!(ir >= 1 && ir <= 64)) throw notAModel(`no valid ir_version; found ${ir}`);
  if (!model.graph) {
    if (describeText(bytes) !== null) throw notAModel('no graph');
    throw new UserError(`${p}: the ONNX model has no graph (ir_version ${ir}); the file may be truncated or hold only metadata; export the model again`);
  }
  if (list(model.graph.node).length === 0) throw new UserError(`${p}: the model's graph has no nodes; there is nothing to run`);
  checkGraphSize(model.graph, p);
  if (model.opsetImport.length === 0 && ir >= 3) {
    throw new UserError(`${p}: the model imports no opset (opset_import is empty); the file may be truncated; export it again`);
  }
  return model;
}

/**
 * Refuses graphs deeper than {@link MAX_GRAPH_DEPTH} subgraph levels or with more than
 * {@link MAX_MODEL_NODES} nodes in all, walking them with an explicit stack (code after this
 * check may recurse per level).
 */
function checkGraphSize(graph: onnx.IGraphProto, p: string): void {
  const stack: { g: onnx.IGraphProto; depth: number }[] = [{ g: graph, depth: 1 }];
  let nodes = 0;
  while (stack.length > 0) {
    const { g, depth } = stack.pop()!;
    if (depth > MAX_GRAPH_DEPTH) {
      throw new UserError(`${p}: the model nests subgraphs (If/Loop/Scan bodies) more than ${MAX_GRAPH_DEPTH} levels deep, more than any exported model; the file is corrupt or not meant to run`);
    }
    const ns = g.node ?? [];
    nodes += ns.length;
    if (nodes > MAX_MODEL_NODES) {
      throw new UserError(`${p}: the model has more than ${MAX_MODEL_NODES} nodes (with its subgraphs), more than Parallax profiles; export a smaller part of it`);
    }
    for (const n of ns) for (const a of n.attribute ?? []) for (const sg of subgraphs(a)) stack.push({ g: sg, depth: depth + 1 });
  }
}

/** Parses ONNX bytes into the IR. `pathForMessages` names the file in errors and locates external data. */
export function parseModel(bytes: Uint8Array, pathForMessages: string, opts: ParseOptions = {}): ModelIR {
  const p = pathForMessages;
  const model = decodeModelProto(bytes, p);
  const graph = model.graph!;
  const modelDir = dirname(resolve(p));
  const checkExternal = opts.checkExternalData ?? true;
  const externalFiles = new Set<string>();
  const externalSizes = new Map<string, number>();

  const summarize: Summarize = (t, fallbackName) => {
    const s = summarizeTensor(t, fallbackName, modelDir);
    if (s.external) {
      // Refused by its text whether or not the files are checked: nothing may read it.
      checkLocationText(s.external.location, p, s.name);
      externalFiles.add(s.external.path);
      if (checkExternal) checkExternalRef(p, modelDir, s, externalSizes);
    }
    return s;
  };

  const { initializers, initializerByName } = readInitializers(graph, summarize);
  const { valueInfo, inputs, outputs } = readValueInfo(graph, initializerByName);
  const { nodes, constants } = readNodes(list(graph.node), safeNodeMetadata(bytes, list(graph.node).length), summarize);
  const { producers, consumers } = linkTensors(nodes, p);
  const topoOrder = topologicalOrder(nodes, producers, p);
  const { parameterCount, parameterBytes } = parameterTotals([...initializers, ...constants.values()]);

  const opsets: Record<string, number> = {};
  for (const o of model.opsetImport) opsets[o.domain === 'ai.onnx' ? '' : (o.domain ?? '')] = toNumber(o.version);

  return {
    path: p,
    sha256: opts.hash === false ? '' : createHash('sha256').update(bytes).digest('hex'),
    fileBytes: bytes.length,
    irVersion: toNumber(model.irVersion),
    opsetVersion: opsets[''] ?? null,
    opsets,
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    graphName: graph.name ?? '',
    metadata: Object.fromEntries(model.metadataProps.map((e) => [e.key ?? '', e.value ?? ''])),
    nodes,
    initializers,
    inputs,
    outputs,
    valueInfo,
    initializerByName,
    constants,
    producers,
    consumers,
    topoOrder,
    parameterCount,
    parameterBytes,
    externalDataFiles: [...externalFiles],
  };
}

/** Summarizes a tensor proto (recording and checking its external data, if any). */
type Summarize = (t: onnx.ITensorProto, fallbackName: string) => TensorSummary;

/** The graph's initializers, sparse ones as their dense shape without data. */
function readInitializers(graph: onnx.IGraphProto, summarize: Summarize): { initializers: TensorSummary[]; initializerByName: Map<string, TensorSummary> } {
  const initializers = list(graph.initializer).map((t, i) => summarize(t, `initializer_${i}`));
  const initializerByName = new Map(initializers.map((t) => [t.name, t]));
  for (const sp of list(graph.sparseInitializer)) {
    // Sparse initializers are rare (pruned models); record their dense shape without data.
    const values = sp.values ? summarize(sp.values, 'sparse') : null;
    const dims = list(sp.dims).map(toNumber);
    if (values) {
      const s: TensorSummary = { kind: 'tensor', name: values.name, dtype: values.dtype, dims, elements: product(dims), byteSize: values.byteSize };
      initializers.push(s);
      initializerByName.set(s.name, s);
    }
  }
  return { initializers, initializerByName };
}

/** Value infos of the graph by name, its fed inputs (initializers listed as inputs left out) and outputs. */
function readValueInfo(
  graph: onnx.IGraphProto,
  initializerByName: Map<string, TensorSummary>,
): { valueInfo: Map<string, ValueInfo>; inputs: ValueInfo[]; outputs: ValueInfo[] } {
  const valueInfo = new Map<string, ValueInfo>();
  for (const v of list(graph.valueInfo)) {
    const info = toValueInfo(v);
    valueInfo.set(info.name, info);
  }
  const inputs: ValueInfo[] = [];
  for (const v of list(graph.input)) {
    const info = toValueInfo(v);
    valueInfo.set(info.name, info);
    // Before IR version 4 initializers had to be listed as inputs too; they are not fed.
    if (!initializerByName.has(info.name)) inputs.push(info);
  }
  const outputs = list(graph.output).map(toValueInfo);
  for (const o of outputs) valueInfo.set(o.name, o);
  return { valueInfo, inputs, outputs };
}

/** The graph's nodes (each with a unique name) and the values of its Constant nodes by output name. */
function readNodes(
  graphNodes: onnx.INodeProto[],
  extras: NodeExtras[],
  summarize: Summarize,
): { nodes: IRNode[]; constants: Map<string, TensorSummary> } {
  const usedNames = new Set<string>();
  for (const n of graphNodes) if (n.name) usedNames.add(n.name);
  const seenNames = new Set<string>();
  const constants = new Map<string, TensorSummary>();
  const nodes: IRNode[] = graphNodes.map((n, index) => {
    const opType = n.opType ?? '';
    let name = n.name ?? '';
    if (!name || seenNames.has(name)) {
      // ORT and the trace need a name per node; keep it stable across loads (index-based).
      const base = n.name ? `${n.name}__${index}` : `${opType}_${index}`;
      name = base;
      for (let k = 1; usedNames.has(name) || seenNames.has(name); k++) name = `${base}_${k}`;
    }
    seenNames.add(name);
    const attributes: Record<string, AttributeValue> = {};
    let hasSubgraphs = false;
    const implicit = new Set<string>();
    for (const a of list(n.attribute)) {
      attributes[a.name ?? ''] = attributeValue(a, summarize);
      const graphs = subgraphs(a);
      if (graphs.length > 0) hasSubgraphs = true;
      for (const g of graphs) for (const t of outerScopeInputs(g)) implicit.add(t);
    }
    const node: IRNode = {
      index,
      name,
      originalName: n.name ?? '',
      opType,
      domain: n.domain === 'ai.onnx' ? '' : (n.domain ?? ''),
      inputs: list(n.input),
      outputs: list(n.output),
      attributes,
      hasSubgraphs,
      implicitInputs: [...implicit],
      metadata: extras[index]?.metadata ?? {},
      ...(extras[index]?.sharding.length ? { sharding: extras[index]!.sharding } : {}),
    };
    if (node.opType === 'Constant' && node.domain === '' && node.outputs[0]) {
      const c = constantValue(node, attributes);
      if (c) constants.set(node.outputs[0], { ...c, name: node.outputs[0] });
    }
    return node;
  });
  return { nodes, constants };
}

/** Producer and consumers of every tensor; throws when two nodes produce the same tensor. */
function linkTensors(nodes: IRNode[], p: string): { producers: Map<string, number>; consumers: Map<string, number[]> } {
  const producers = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  for (const node of nodes) {
    for (const o of node.outputs) {
      if (!o) continue;
      const prev = producers.get(o);
      if (prev !== undefined) {
        throw new UserError(`${p}: tensor "${o}" is produced by two nodes (${nodes[prev].name} and ${node.name}); the graph is not valid ONNX, export it again`);
      }
      producers.set(o, node.index);
    }
    for (const t of new Set([...node.inputs, ...node.implicitInputs])) {
      if (!t) continue;
      let list = consumers.get(t);
      if (!list) consumers.set(t, (list = []));
      list.push(node.index);
    }
  }
  return { producers, consumers };
}

/** Elements and bytes of the weight-typed tensors among `tensors`. */
function parameterTotals(tensors: TensorSummary[]): { parameterCount: number; parameterBytes: number } {
  let parameterCount = 0;
  let parameterBytes = 0;
  for (const t of tensors) {
    if (isWeightType(t.dtype)) {
      parameterCount += t.elements;
      parameterBytes += t.byteSize ?? 0;
    }
  }
  return { parameterCount, parameterBytes };
}

/** Serializes a model proto to bytes. */
export function encodeModel(model: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Writes a model (proto or bytes) to `path` atomically: a temporary file beside it, then a
 * rename, so a reader never sees half a model and a crash leaves no truncated file behind.
 */
export function saveModel(path: string, model: onnx.IModelProto | Uint8Array): void {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // The temporary file was never created; nothing to clean up.
    }
    throw e;
  }
}

/** The values of a small constant tensor (initializer or Constant output), or undefined. */
export function constantValues(ir: ModelIR, name: string): number[] | undefined {
  return (ir.initializerByName.get(name) ?? ir.constants.get(name))?.values;
}

// ---------------------------------------------------------------------------------------
// Internals

/** protobufjs gives int64 fields as Long objects (the `long` package is installed) or numbers. */
function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v === null || v === undefined) return 0;
  if (typeof v === 'object' && 'toNumber' in v && typeof (v as { toNumber: unknown }).toNumber === 'function') {
    return (v as { toNumber(): number }).toNumber();
  }
  return Number(v);
}

/** Generated typings mark every repeated field optional; decoded messages always have them. */
function list<T>(v: T[] | null | undefined): T[] {
  return v ?? [];
}

/** Graph-valued attributes (If branches, Loop/Scan bodies). */
function subgraphs(a: onnx.IAttributeProto): onnx.IGraphProto[] {
  return [...(a.g ? [a.g] : []), ...list(a.graphs)];
}

function product(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}


/** A short description of the file if it looks like text (JSON, a Git LFS pointer, HTML), else null. */
function describeText(bytes: Uint8Array): string | null {
  const head = bytes.subarray(0, 512);
  for (const b of head) {
    // Control bytes other than tab/newline/carriage return never occur in text; a binary
    // protobuf has them in its first few bytes (tags and lengths).
    if (b < 0x09 || (b > 0x0d && b < 0x20) || b === 0x7f) return null;
  }
  const s = Buffer.from(head).toString('utf8').trimStart();
  if (s.startsWith('version https://git-lfs')) return 'a Git LFS pointer; run `git lfs pull`';
  if (s.startsWith('{') || s.startsWith('[')) return 'it looks like JSON';
  if (/^<(!doctype|html)/i.test(s)) return 'it looks like an HTML page, perhaps a download error';
  const first = s.split(/\r?\n/, 1)[0].slice(0, 40);
  return `it starts with "${first}"`;
}

function safeNodeMetadata(bytes: Uint8Array, nodeCount: number): NodeExtras[] {
  try {
    const m = readNodeExtras(bytes);
    // The overlay must see the same nodes as the static decoder; if not, drop it rather
    // than attach one node's source location to another.
    return m.length === nodeCount ? m : [];
  } catch {
    return [];
  }
}

function toValueInfo(v: onnx.IValueInfoProto): ValueInfo {
  const name = v.name ?? '';
  const t = v.type;
  if (!t) return { name, kind: 'unknown', dtype: 'undefined', dims: null };
  if (t.tensorType) {
    const shape = t.tensorType.shape;
    return { name, kind: 'tensor', dtype: dtypeName(t.tensorType.elemType ?? 0), dims: shape ? (shape.dim ?? []).map(toDim) : null };
  }
  if (t.sparseTensorType) {
    const shape = t.sparseTensorType.shape;
    return { name, kind: 'sparse_tensor', dtype: dtypeName(t.sparseTensorType.elemType ?? 0), dims: shape ? (shape.dim ?? []).map(toDim) : null };
  }
  if (t.sequenceType) return { name, kind: 'sequence', dtype: 'undefined', dims: null };
  if (t.mapType) return { name, kind: 'map', dtype: 'undefined', dims: null };
  if (t.optionalType) return { name, kind: 'optional', dtype: 'undefined', dims: null };
  return { name, kind: 'unknown', dtype: 'undefined', dims: null };
}

function toDim(d: onnx.TensorShapeProto.IDimension): Dim {
  if (d.dimParam) return d.dimParam;
  if (d.dimValue !== null && d.dimValue !== undefined) {
    const n = toNumber(d.dimValue);
    // Some converters write -1 or 0 for "unknown"; treat both as unknown, not as sizes.
    return n > 0 ? n : null;
  }
  return null;
}

function summarizeTensor(t: onnx.ITensorProto, fallbackName: string, modelDir: string): TensorSummary {
  const dims = (t.dims ?? []).map(toNumber);
  const dtype = dtypeName(t.dataType ?? 0);
  const elements = product(dims);
  const s: TensorSummary = { kind: 'tensor', name: t.name || fallbackName, dtype, dims, elements, byteSize: byteSize(dtype, elements) };
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv: Record<string, string> = Object.fromEntries((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = kv['location'] ?? '';
    s.external = {
      location,
      path: isAbsolute(location) ? location : resolve(modelDir, location),
      offset: kv['offset'] ? Number(kv['offset']) : 0,
      length: kv['length'] ? Number(kv['length']) : null,
    };
    if (s.external.length !== null) s.byteSize = s.external.length;
    return s;
  }
  if (dtype === 'string') s.byteSize = (t.stringData ?? []).reduce((n, b) => n + b.length, 0);
  if (elements <= SMALL_TENSOR_ELEMENTS) {
    const values = tensorValues(t, dtype, elements);
    if (values) s.values = values;
  }
  return s;
}

/** Numeric values of a small tensor from raw_data or the typed fields. */
function tensorValues(t: onnx.ITensorProto, dtype: DType, elements: number): number[] | undefined {
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out: number[] = [];
    const get: ((i: number) => number) | null =
      dtype === 'float32' ? (i) => dv.getFloat32(i * 4, true)
      : dtype === 'float64' ? (i) => dv.getFloat64(i * 8, true)
      : dtype === 'int64' ? (i) => Number(dv.getBigInt64(i * 8, true))
      : dtype === 'uint64' ? (i) => Number(dv.getBigUint64(i * 8, true))
      : dtype === 'int32' ? (i) => dv.getInt32(i * 4, true)
      : dtype === 'uint32' ? (i) => dv.getUint32(i * 4, true)
      : dtype === 'int16' ? (i) => dv.getInt16(i * 2, true)
      : dtype === 'uint16' ? (i) => dv.getUint16(i * 2, true)
      : dtype === 'int8' ? (i) => dv.getInt8(i)
      : dtype === 'uint8' || dtype === 'bool' ? (i) => dv.getUint8(i)
      : null;
    if (!get) return undefined;
    const size = byteSize(dtype, elements) ?? 0;
    if (raw.byteLength < size) return undefined;
    for (let i = 0; i < elements; i++) out.push(get(i));
    return out;
  }
  if (t.floatData && t.floatData.length > 0) return [...t.floatData];
  if (t.doubleData && t.doubleData.length > 0) return [...t.doubleData];
  if (t.int64Data && t.int64Data.length > 0) return t.int64Data.map(toNumber);
  if (t.uint64Data && t.uint64Data.length > 0) return t.uint64Data.map(toNumber);
  // int32_data also carries int8/uint8/int16/uint16/bool values.
  if (t.int32Data && t.int32Data.length > 0) return [...t.int32Data];
  return elements === 0 ? [] : undefined;
}

function checkExternalRef(modelPath: string, modelDir: string, s: TensorSummary, sizes: Map<string, number>): void {
  const ext = s.external!;
  let size = sizes.get(ext.path);
  if (size === undefined) {
    const found = resolveInsideFolder(modelDir, ext.location, modelPath, s.name);
    if (found.kind === 'missing') {
      throw new UserError(`${modelPath}: external data file ${ext.location} (for tensor "${s.name}") is missing; put it in ${modelDir} beside the model`);
    }
    size = found.size;
    sizes.set(ext.path, size);
  }
  const need = ext.offset + (ext.length ?? s.byteSize ?? 0);
  if (size < need) {
    throw new UserError(`${modelPath}: external data file ${ext.location} is ${size} bytes but tensor "${s.name}" needs bytes up to ${need}; the data file is truncated or belongs to another model`);
  }
}

function attributeValue(a: onnx.IAttributeProto, summarize: (t: onnx.ITensorProto, name: string) => TensorSummary): AttributeValue {
  const T = onnx.AttributeProto.AttributeType;
  const utf8 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
  const graphSummary = (g: onnx.IGraphProto): GraphSummary => ({ kind: 'graph', name: g.name ?? '', nodeCount: g.node?.length ?? 0 });
  let type = a.type ?? T.UNDEFINED;
  if (type === T.UNDEFINED) {
    // Very old models leave `type` unset; infer it from the field that is filled in.
    if (a.ints?.length) type = T.INTS;
    else if (a.floats?.length) type = T.FLOATS;
    else if (a.strings?.length) type = T.STRINGS;
    else if (a.t) type = T.TENSOR;
    else if (a.g) type = T.GRAPH;
    else if (a.s?.length) type = T.STRING;
    else if (a.f) type = T.FLOAT;
    else type = T.INT;
  }
  switch (type) {
    case T.FLOAT:
      return a.f ?? 0;
    case T.INT:
      return toNumber(a.i);
    case T.STRING:
      return a.s ? utf8(a.s) : '';
    case T.TENSOR:
      return a.t ? summarize(a.t, a.name ?? 'value') : null;
    case T.GRAPH:
      return a.g ? graphSummary(a.g) : null;
    case T.FLOATS:
      return [...(a.floats ?? [])];
    case T.INTS:
      return (a.ints ?? []).map(toNumber);
    case T.STRINGS:
      return (a.strings ?? []).map(utf8);
    case T.TENSORS:
      return (a.tensors ?? []).map((t, i) => summarize(t, `${a.name}_${i}`));
    case T.GRAPHS:
      return (a.graphs ?? []).map(graphSummary);
    default:
      return null;
  }
}

/** The tensor a Constant node produces, from whichever `value*` attribute it uses. */
function constantValue(node: IRNode, attrs: Record<string, AttributeValue>): TensorSummary | null {
  const mk = (dtype: DType, dims: number[], values: number[] | undefined): TensorSummary => {
    const elements = product(dims);
    const s: TensorSummary = { kind: 'tensor', name: node.outputs[0], dtype, dims, elements, byteSize: byteSize(dtype, elements) };
    if (values && values.length <= SMALL_TENSOR_ELEMENTS) s.values = values;
    return s;
  };
  const v = attrs['value'];
  if (v && typeof v === 'object' && !Array.isArray(v) && v.kind === 'tensor') return v;
  const f = attrs['value_float'];
  if (typeof f === 'number') return mk('float32', [], [f]);
  const fs = attrs['value_floats'];
  if (Array.isArray(fs)) return mk('float32', [fs.length], fs as number[]);
  const i = attrs['value_int'];
  if (typeof i === 'number') return mk('int64', [], [i]);
  const is = attrs['value_ints'];
  if (Array.isArray(is)) return mk('int64', [is.length], is as number[]);
  const s = attrs['value_string'];
  if (typeof s === 'string') return mk('string', [], undefined);
  const ss = attrs['value_strings'];
  if (Array.isArray(ss)) return mk('string', [ss.length], undefined);
  return null;
}

/**
 * Tensors a subgraph reads from enclosing scopes: names used by its nodes (and, recursively,
 * by their own subgraphs) that the subgraph neither declares as input or initializer nor
 * produces itself.
 */
function outerScopeInputs(g: onnx.IGraphProto): Set<string> {
  const local = new Set<string>();
  for (const v of g.input ?? []) if (v.name) local.add(v.name);
  for (const t of g.initializer ?? []) if (t.name) local.add(t.name);
  for (const n of g.node ?? []) for (const o of n.output ?? []) if (o) local.add(o);
  const outer = new Set<string>();
  for (const n of g.node ?? []) {
    for (const i of n.input ?? []) if (i && !local.has(i)) outer.add(i);
    for (const a of n.attribute ?? []) {
      for (const sg of subgraphs(a)) {
        for (const t of outerScopeInputs(sg)) if (!local.has(t)) outer.add(t);
      }
    }
  }
  // Graph outputs may name outer tensors directly (an If branch returning an outer value).
  for (const o of g.output ?? []) if (o.name && !local.has(o.name)) outer.add(o.name);
  return outer;
}

/**
 * Kahn's algorithm with the smallest ready index first, so a file that is already sorted
 * (as exporters write them) keeps its order exactly and ties break the same way each load.
 */
function topologicalOrder(nodes: IRNode[], producers: Map<string, number>, path: string): number[] {
  const indegree = new Int32Array(nodes.length);
  const successors: number[][] = nodes.map(() => []);
  for (const node of nodes) {
    for (const t of new Set([...node.inputs, ...node.implicitInputs])) {
      if (!t) continue;
      const p = producers.get(t);
      if (p === undefined) continue; // a graph input, an initializer, or dangling: a source
      successors[p].push(node.index);
      indegree[node.index]++;
    }
  }
  const heap = new MinHeap();
  for (let i = 0; i < nodes.length; i++) if (indegree[i] === 0) heap.push(i);
  const order: number[] = [];
  while (heap.size > 0) {
    const i = heap.pop();
    order.push(i);
    for (const s of successors[i]) if (--indegree[s] === 0) heap.push(s);
  }
  if (order.length < nodes.length) {
    const stuck = nodes.filter((n) => indegree[n.index] > 0).map((n) => n.name);
    const shown = stuck.slice(0, 5).join(', ') + (stuck.length > 5 ? `, … (${stuck.length} nodes)` : '');
    throw new UserError(`${path}: the graph has a cycle; nodes ${shown} depend on each other's outputs, so the model is not a valid ONNX graph; export it again`);
  }
  return order;
}

class MinHeap {
  private readonly a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(v: number): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= v) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = v;
  }

  pop(): number {
    const a = this.a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && a[r] < a[l] ? r : l;
        if (a[c] >= last) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}
