/**
 * Shard models: the ONNX models of one device's tensor-parallel chain. Each is a segment of
 * the graph cut at the all-reduces ({@link compileTensor}'s chain), built by the pipeline's
 * stage-model code ({@link buildStageModel}) from a copy of the model in which
 *
 * - every split initializer holds only this device's slice (so a device holds ~1/N of the
 *   split weights, and nothing else of them);
 * - a row-parallel Gemm's or Conv's bias is real on device 0 and zeros elsewhere, so it is
 *   added once when the partial sums are all-reduced;
 * - a Reshape that carries a split (attention's heads) reads a shape whose split dimension is
 *   divided by N, since each device holds N times fewer heads: a constant shape is replaced,
 *   and a shape built at run time by a Concat (`view(batch, seq, heads, d)` as exporters
 *   write it) gets the constant piece at the split position divided;
 * - a grouped or depthwise Conv that carries a channel split has its `group` divided by N,
 *   since each device convolves N times fewer (whole) groups;
 * - declared types (value_info) of split tensors are dropped: their shapes are the whole
 *   tensor's, not the shard's.
 */
import { basename, extname, join, resolve } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import { byteSize, dtypeName } from '../onnx/dtypes';
import { constantValues, decodeModelProto, estimateCosts, parseModel, saveModel, type ModelIR } from '../onnx/model';
import { nominalDims } from '../pipeline/partition';
import { buildStageModel } from '../pipeline/stage-model';
import type { Program } from '../../profiler/program';
import type { TensorPrepared } from '../compile/tensor';

/** Elements [start, start + length) along `axis` of a row-major tensor of `dims`, as bytes of `elemBytes` per element. */
export function sliceAlong(data: Uint8Array, dims: readonly number[], elemBytes: number, axis: number, start: number, length: number): Uint8Array {
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * elemBytes;
  const size = dims[axis]!;
  const out = new Uint8Array(outer * length * inner);
  for (let o = 0; o < outer; o++) {
    const from = (o * size + start) * inner;
    out.set(data.subarray(from, from + length * inner), o * length * inner);
  }
  return out;
}

/** The raw little-endian bytes of an initializer held in the model file, or a reason it has none here. */
function tensorBytes(t: onnx.ITensorProto): Uint8Array | string {
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) return 'it is stored as external data';
  if (t.rawData && t.rawData.length > 0) return t.rawData;
  if (t.dataType === onnx.TensorProto.DataType.FLOAT && t.floatData && t.floatData.length > 0) {
    const f = Float32Array.from(t.floatData);
    return new Uint8Array(f.buffer);
  }
  return `its ${dtypeName(t.dataType ?? 0)} values are not stored as raw data`;
}

/** A 1-D int64 initializer. */
function int64s(name: string, values: readonly number[]): onnx.ITensorProto {
  return { name, dataType: onnx.TensorProto.DataType.INT64, dims: [values.length], rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer) };
}

/**
 * The constant input of the Concat producing `shape` that holds element `axis`, when that
 * element is a positive constant (a head count, a width); else why not.
 */
function concatPiece(ir: ModelIR, shape: string, axis: number): { concat: number; input: number; name: string; values: number[]; offset: number } | string {
  const p = ir.producers.get(shape);
  const node = p === undefined ? null : ir.nodes[p]!;
  if (!node || node.opType !== 'Concat' || node.domain !== '') return `its shape "${shape}" is computed at run time, not a constant or a Concat of constants`;
  const shapes = estimateCosts(ir, nominalDims(ir)).shapes;
  let at = 0;
  for (let i = 0; i < node.inputs.length; i++) {
    const t = node.inputs[i]!;
    const len = shapes.get(t)?.dims[0];
    if (len === undefined) return `the length of "${t}" in its shape is unknown`;
    if (axis < at + len) {
      const values = constantValues(ir, t);
      const v = values?.[axis - at];
      if (!values || v === undefined || v <= 0) return `dimension ${axis} of its shape comes from "${t}", which is not a positive constant`;
      return { concat: node.index, input: i, name: t, values, offset: axis - at };
    }
    at += len;
  }
  return `its shape "${shape}" has no dimension ${axis}`;
}

/** The model as device `rank` holds it (see the module comment). */
function deviceModel(model: onnx.ModelProto, ir: ModelIR, prep: TensorPrepared, rank: number): { model: onnx.ModelProto; extra: Map<number, string[]>; nodes: onnx.INodeProto[]; replaced: Set<string> } {
  const { shard } = prep;
  const n = shard.devices;
  const graph = model.graph!;
  const placement = new Map(shard.initializers.map((p) => [p.name, p]));
  const initializer: onnx.ITensorProto[] = [];
  for (const t of graph.initializer ?? []) {
    const p = placement.get(t.name ?? '');
    if (!p || p.kind === 'replicated') {
      initializer.push(t);
      continue;
    }
    const data = tensorBytes(t);
    if (typeof data === 'string') throw new UserError(`${ir.path}: cannot slice initializer "${p.name}" for tensor parallelism: ${data}; save the model with its weights inside the file`);
    const slice = p.slices[rank]!;
    const dims = p.dims.slice();
    dims[p.axis] = slice.length;
    const elemBytes = byteSize(p.dtype, 1) ?? 0;
    initializer.push({ name: p.name, dataType: t.dataType, dims, rawData: sliceAlong(data, p.dims, elemBytes, p.axis, slice.start, slice.length) });
  }

  // Node inputs to rename, and the initializers each renamed input needs (by node index).
  const nodes = (graph.node ?? []).slice();
  const extra = new Map<number, string[]>();
  const added = new Set<string>();
  const replaced = new Set<string>();
  const rewire = (index: number, input: number, name: string, make: () => onnx.ITensorProto): void => {
    const proto = nodes[index]!;
    const inputs = (proto.input ?? []).slice();
    replaced.add(inputs[input] ?? '');
    inputs[input] = name;
    nodes[index] = onnx.NodeProto.create({ ...proto, input: inputs });
    if (!added.has(name)) {
      initializer.push(make());
      added.add(name);
    }
    extra.set(index, [...(extra.get(index) ?? []), name]);
  };
  const byName = new Map(ir.nodes.map((x) => [x.name, x]));
  for (const g of shard.groups) {
    for (const name of g.rowNodes) {
      const node = byName.get(name)!;
      const c = node.opType === 'Gemm' || node.opType === 'Conv' ? node.inputs[2] : undefined;
      if (!c) continue;
      const t = (graph.initializer ?? []).find((x) => x.name === c);
      const data = t ? tensorBytes(t) : 'it is not an initializer';
      if (!t || typeof data === 'string') throw new UserError(`${ir.path}: cannot place the bias "${c}" of row-parallel ${name}: ${data}`);
      // Added on device 0 only: the all-reduce sums it in once.
      const bias = rowBiasName(c);
      rewire(node.index, 2, bias, () => ({ name: bias, dataType: t.dataType, dims: t.dims, rawData: rank === 0 ? data : new Uint8Array(data.length) }));
    }
    for (const name of g.nodes) {
      const node = byName.get(name)!;
      const group = node.attributes['group'];
      if (node.opType === 'Conv' && node.domain === '' && typeof group === 'number' && group > 1 && shard.splitTensors[node.outputs[0]!] !== undefined) {
        const proto = nodes[node.index]!;
        const attribute = (proto.attribute ?? []).map((a) => (a.name === 'group' ? onnx.AttributeProto.create({ ...a, i: group / n }) : a));
        nodes[node.index] = onnx.NodeProto.create({ ...proto, attribute });
        continue;
      }
      if (node.opType !== 'Reshape' || node.domain !== '') continue;
      const axis = shard.splitTensors[node.outputs[0]!];
      if (axis === undefined) continue;
      const shapeName = node.inputs[1]!;
      const why = (r: string): UserError => new UserError(`${ir.path}: cannot split Reshape "${name}" for tensor parallelism: ${r}; profile this model with --mode data or --mode pipeline`);
      const inAxis = shard.splitTensors[node.inputs[0]!];
      const shape = constantValues(ir, shapeName);
      if (shape) {
        const v = shape.slice();
        if (v[axis]! > 0) v[axis] = v[axis]! / n;
        else if (v[axis] === 0 && inAxis !== axis) throw why(`its shape copies dimension ${axis} from an input that is not split there`);
        const newName = `${shapeName}.tensor-parallel.axis${axis}of${n}`;
        rewire(node.index, 1, newName, () => int64s(newName, v));
        continue;
      }
      // A shape built at run time by a Concat of 1-D pieces (as exporters write
      // `view(batch, seq, heads, d)`): the constant piece at the split position is divided.
      const piece = concatPiece(ir, shapeName, axis);
      if (typeof piece === 'string') throw why(piece);
      if ((ir.consumers.get(shapeName) ?? []).some((c) => c !== node.index && shard.splitTensors[ir.nodes[c]!.outputs[0]!] !== axis)) {
        throw why(`its shape "${shapeName}" also shapes a tensor that is not split the same way`);
      }
      const v = piece.values.slice();
      v[piece.offset] = v[piece.offset]! / n;
      const newName = `${piece.name}.tensor-parallel.${piece.offset}of${n}`;
      rewire(piece.concat, piece.input, newName, () => int64s(newName, v));
    }
  }
  const split = new Set(Object.keys(shard.splitTensors));
  const valueInfo = (graph.valueInfo ?? []).filter((v) => !split.has(v.name ?? ''));
  const copy = onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: nodes, initializer, valueInfo }) });
  return { model: copy, extra, nodes, replaced };
}

/**
 * Writes the shard models of every `shard` segment of `program` into `outDir` as
 * `<model>.tensor<rank>-of-<N>.part<k>.onnx`; returns their paths by segment id.
 * @throws UserError when a split tensor would cross a cut, or a weight cannot be sliced.
 */
export function writeShardModels(modelPath: string, program: Program, prep: TensorPrepared, outDir: string): Record<number, string> {
  const abs = resolve(modelPath);
  const bytes = readFileSync(abs);
  const ir = parseModel(bytes, abs);
  const model = decodeModelProto(bytes, abs);
  const { chain, shard } = prep;
  checkChainCuts(ir, prep);
  mkdirSync(outDir, { recursive: true });
  const stem = basename(abs, extname(abs));
  const byRank = new Map<number, ReturnType<typeof deviceModel>>();
  const paths: Record<number, string> = {};
  for (const seg of program.segments) {
    if (seg.kind !== 'shard') continue;
    let dm = byRank.get(seg.rank);
    if (!dm) byRank.set(seg.rank, (dm = deviceModel(model, ir, prep, seg.rank)));
    const path = join(outDir, `${stem}.tensor${seg.rank}-of-${shard.devices}.part${seg.part}.onnx`);
    saveModel(path, partModel(dm, ir, chain.stages[seg.part]!));
    paths[seg.id] = path;
  }
  return paths;
}

/** @throws UserError when a split tensor would cross a cut of the chain. */
function checkChainCuts(ir: ModelIR, prep: TensorPrepared): void {
  for (const st of prep.chain.stages) {
    for (const i of st.inputs) {
      if (i.from !== 'graph' && prep.shard.splitTensors[i.name] !== undefined) {
        throw new UserError(`${ir.path}: split tensor "${i.name}" would cross an all-reduce of the tensor-parallel chain; profile this model with --mode data or --mode pipeline`);
      }
    }
  }
}

/** Part `stage` of a device's chain as a model of its own. */
function partModel(dm: ReturnType<typeof deviceModel>, ir: ModelIR, stage: TensorPrepared['chain']['stages'][number]): Uint8Array {
  const members = [...stage.nodeIndices, ...stage.constantCopies];
  // The stage's initializers as its rewired nodes read them (a replaced bias or shape is left out).
  const read = new Set(members.flatMap((i) => dm.nodes[i]!.input ?? []));
  const initializers = [...new Set([...stage.initializers, ...members.flatMap((i) => dm.extra.get(i) ?? [])])].filter((t) => read.has(t) || !dm.replaced.has(t));
  return buildStageModel(dm.model, ir, { ...stage, initializers });
}

/** The models of device `rank`'s chain, part by part, as {@link writeShardModels} writes them (`bytes`: the model file's). */
export function shardChainModels(bytes: Uint8Array, ir: ModelIR, prep: TensorPrepared, rank: number): Uint8Array[] {
  checkChainCuts(ir, prep);
  const dm = deviceModel(decodeModelProto(bytes, ir.path), ir, prep, rank);
  return prep.chain.stages.map((st) => partModel(dm, ir, st));
}

/** Name of the copy of row-parallel Gemm bias `bias` that device 0 holds and the others hold as zeros. */
export function rowBiasName(bias: string): string {
  return `${bias}.tensor-parallel`;
}
