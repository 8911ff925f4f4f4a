/**
 * Stage models: one runnable ONNX model per pipeline stage.
 *
 * A stage model holds the stage's nodes (plus copies of the Constant nodes it reads from
 * other stages), the initializers those nodes use, and graph inputs/outputs that are exactly
 * the tensors crossing the stage's boundary ({@link PipelineStage.inputs}/`outputs`).
 *
 * Types of crossing tensors. ONNX Runtime needs at least an element type for every graph
 * input and output. In order of preference a tensor's type comes from
 * 1. the model's own declaration (graph input/output or value_info), kept whole;
 * 2. shape propagation ({@link estimateCosts}) run twice, with every symbolic input dimension
 *    at 64 and then at 96: the element type, and the rank with every dimension that came out
 *    the same both times (dimensions that differ stay unnamed, so no size is baked in);
 * 3. per-op element-type rules below (Cast's `to`, comparisons give bool, Shape gives int64,
 *    If/Loop/Scan take their bodies' output types, most other ops keep their first input's
 *    type), with the rank left unknown.
 * A crossing tensor none of these can type (a sequence from a custom op, say) is a
 * {@link UserError} naming it, so the user can cut elsewhere or add value_info.
 *
 * onnx-proto is generated from ONNX 1.10, whose NodeProto lacks `metadata_props` (field 9,
 * ONNX 1.16): decoding drops it. The IR keeps it ({@link IRNode.metadata}), so stage models
 * write it back onto each top-level node; metadata on nodes inside If/Loop/Scan bodies and
 * other post-1.10 fields are not carried over. Nodes whose name was empty or duplicated get
 * the IR's synthesized name, so ONNX Runtime's profile names match the IR.
 */
import { constants, copyFileSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, normalize, resolve } from 'node:path';
import { onnx } from 'onnx-proto';
import { Writer } from 'protobufjs/minimal';
import { UserError } from '../../common/errors';
import { dtypeCode, dtypeName, type DType } from '../onnx/dtypes';
import { decodeModelProto, encodeModel, estimateCosts, parseModel, saveModel, type IRNode, type ModelIR } from '../onnx/model';
import type { Partition, PipelineStage } from './partition';

/** Model-level metadata key each stage model carries: `{"stage": i, "modelSha256": …, "stages": K}` (`stages` where the count was given). */
export const STAGE_METADATA_KEY = 'parallax.pipeline.stage';

/**
 * Builds the ONNX model of one stage. `model` is the decoded original ({@link decodeModelProto})
 * and `ir` its IR; neither is modified. `stageCount` (K) is recorded in the model's metadata.
 * Tensors stored as external data keep their locations, so a model with external data
 * must be written beside its data ({@link writeStageModels} links the data files).
 * @throws UserError when a tensor crossing the stage boundary has no type that can be found.
 */
export function buildStageModel(model: onnx.ModelProto, ir: ModelIR, stage: PipelineStage, stageCount?: number): Uint8Array {
  const graph = model.graph!;
  const types = tensorTypes(model, ir);
  const declaredIn = new Map((graph.input ?? []).map((v) => [v.name ?? '', v]));
  const declaredOut = new Map((graph.output ?? []).map((v) => [v.name ?? '', v]));
  const typed = (name: string, role: string): onnx.IValueInfoProto => {
    const type = types.typeOf(name);
    if (!type) {
      throw new UserError(
        `${ir.path}: cannot build pipeline stage ${stage.index}: the type of ${role} tensor "${name}" is unknown; cut elsewhere (--cuts) or add value_info for it (e.g. with onnx.shape_inference)`,
      );
    }
    return { name, type };
  };

  const inputs = stage.inputs.map((i) => (i.from === 'graph' ? (declaredIn.get(i.name) ?? typed(i.name, 'input')) : typed(i.name, 'input')));
  const outputs = stage.outputs.map((o) => (o.to.includes('graph') ? (declaredOut.get(o.name) ?? typed(o.name, 'output')) : typed(o.name, 'output')));
  const used = new Set(stage.initializers);
  const initializer = (graph.initializer ?? []).filter((t) => used.has(t.name ?? ''));
  const sparseInitializer = (graph.sparseInitializer ?? []).filter((t) => used.has(t.values?.name ?? ''));
  const irVersion = Number(model.irVersion);
  if (irVersion < 4) {
    // Before IR version 4 every initializer also had to be declared as a graph input.
    for (const t of initializer) {
      const name = t.name ?? '';
      inputs.push(declaredIn.get(name) ?? { name, type: { tensorType: { elemType: t.dataType ?? 0, shape: { dim: (t.dims ?? []).map((d) => ({ dimValue: d })) } } } });
    }
  }
  const io = new Set([...inputs, ...outputs].map((v) => v.name ?? ''));
  const produced = new Set<string>();
  for (const i of [...stage.constantCopies, ...stage.nodeIndices]) for (const o of ir.nodes[i].outputs) if (o) produced.add(o);
  const valueInfo = (graph.valueInfo ?? []).filter((v) => produced.has(v.name ?? '') && !io.has(v.name ?? ''));

  const stageGraph: onnx.IGraphProto = {
    name: `${graph.name || 'graph'}_stage${stage.index}`,
    initializer,
    sparseInitializer,
    input: inputs,
    output: outputs,
    valueInfo,
  };
  const meta: Record<string, unknown> = { stage: stage.index, modelSha256: ir.sha256 };
  if (stageCount !== undefined) meta['stages'] = stageCount;
  const head: onnx.IModelProto = {
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    domain: model.domain,
    modelVersion: model.modelVersion,
    docString: `Pipeline stage ${stage.index} (nodes ${stage.nodeNames.first} … ${stage.nodeNames.last}) of ${basename(ir.path)}, cut by Parallax.`,
    metadataProps: [...(model.metadataProps ?? []).filter((e) => e.key !== STAGE_METADATA_KEY), { key: STAGE_METADATA_KEY, value: JSON.stringify(meta) }],
    functions: model.functions,
  };
  // Node bytes are written by hand (metadata_props), so the graph and the model around them are too.
  const nodes = [...stage.constantCopies, ...stage.nodeIndices].map((i) => encodeNode(graph.node![i], ir.nodes[i]));
  const graphBytes = concat([...nodes.map((b) => lengthDelimited(1, b)), onnx.GraphProto.encode(stageGraph).finish()]);
  return concat([encodeModel(head), lengthDelimited(7, graphBytes)]);
}

/**
 * Writes every stage of `partition` as `<model>.stage<i>-of-<K>.onnx` in `outDir` (each
 * written atomically) and returns their paths in stage order. Models with external data get
 * their data files hard-linked (or copied) beside the stage models, since ONNX Runtime reads
 * external data only from the model's own folder.
 * @throws UserError when the model file changed since the partition was made.
 */
export function writeStageModels(modelPath: string, partition: Partition, outDir: string): string[] {
  const abs = resolve(modelPath);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(abs);
  } catch (e) {
    throw new UserError(`${modelPath}: cannot read the model to write its pipeline stages (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path`);
  }
  const ir = parseModel(bytes, abs);
  if (ir.sha256 !== partition.modelSha256) {
    throw new UserError(`${modelPath}: the model changed since its pipeline partition was made; plan the partition again`);
  }
  const model = decodeModelProto(bytes, abs);
  const out = resolve(outDir);
  mkdirSync(out, { recursive: true });
  linkExternalData(ir, dirname(abs), out);
  const stem = basename(abs, extname(abs));
  const k = partition.stages.length;
  return partition.stages.map((stage) => {
    const path = join(out, `${stem}.stage${stage.index}-of-${k}.onnx`);
    saveModel(path, buildStageModel(model, ir, stage, k));
    return path;
  });
}

/**
 * Encodes a node with onnx-proto and appends what onnx-proto cannot write: `metadata_props`
 * (field 9) from the IR, and the IR's name where the file's was empty or taken.
 */
export function encodeNode(proto: onnx.INodeProto, node: Pick<IRNode, 'name' | 'metadata'>): Uint8Array {
  const named = proto.name === node.name ? proto : { ...proto, name: node.name };
  const w = Writer.create();
  for (const [key, value] of Object.entries(node.metadata)) {
    w.uint32((9 << 3) | 2).fork().uint32((1 << 3) | 2).string(key).uint32((2 << 3) | 2).string(value).ldelim();
  }
  return concat([onnx.NodeProto.encode(named).finish(), w.finish()]);
}

// ---------------------------------------------------------------------------------------
// Tensor types

interface TypeTable {
  typeOf(name: string): onnx.ITypeProto | null;
}

const typeCache = new WeakMap<ModelIR, TypeTable>();

function tensorTypes(model: onnx.ModelProto, ir: ModelIR): TypeTable {
  const cached = typeCache.get(ir);
  if (cached) return cached;
  const graph = model.graph!;
  const declared = new Map<string, onnx.ITypeProto>();
  for (const v of [...(graph.valueInfo ?? []), ...(graph.input ?? []), ...(graph.output ?? [])]) {
    if (v.name && v.type && hasElemType(v.type)) declared.set(v.name, v.type);
  }

  const symbolic = new Set<string>();
  for (const i of ir.inputs) for (const d of i.dims ?? []) if (typeof d === 'string') symbolic.add(d);
  const at = (v: number): Record<string, number> => Object.fromEntries([...symbolic].map((s) => [s, v]));
  // Two runs: a dimension that comes out the same in both does not depend on the inputs' sizes.
  const a = estimateCosts(ir, at(64)).shapes;
  const b = symbolic.size > 0 ? estimateCosts(ir, at(96)).shapes : a;

  const dtypes = new Map<string, DType>();
  for (const t of ir.initializers) dtypes.set(t.name, t.dtype);
  for (const [name, t] of ir.constants) dtypes.set(name, t.dtype);
  for (const [name, v] of ir.valueInfo) if (v.kind === 'tensor' && v.dtype !== 'undefined') dtypes.set(name, v.dtype);
  for (const index of ir.topoOrder) {
    const node = ir.nodes[index];
    const ins = node.inputs.map((t) => (t ? (dtypes.get(t) ?? null) : null));
    const rule = outputDtypes(node, graph.node![index], ins);
    node.outputs.forEach((t, i) => {
      if (!t || dtypes.has(t)) return;
      const d = a.get(t)?.dtype ?? rule[i] ?? null;
      if (d && d !== 'undefined' && !d.startsWith('unknown')) dtypes.set(t, d);
    });
  }

  const table: TypeTable = {
    typeOf(name) {
      const d = declared.get(name);
      if (d) return d;
      const dtype = dtypes.get(name);
      const code = dtype ? dtypeCode(dtype) : undefined;
      if (!dtype || code === undefined || code === 0) return null;
      const sa = a.get(name);
      const sb = b.get(name);
      const tensorType: onnx.TypeProto.ITensor = { elemType: code };
      if (sa && sb && sa.dims.length === sb.dims.length) {
        tensorType.shape = { dim: sa.dims.map((v, i) => (v === sb.dims[i] ? { dimValue: v } : {})) };
      }
      return { tensorType };
    },
  };
  typeCache.set(ir, table);
  return table;
}

function hasElemType(t: onnx.ITypeProto): boolean {
  if (t.tensorType) return (t.tensorType.elemType ?? 0) !== 0;
  if (t.sparseTensorType) return (t.sparseTensorType.elemType ?? 0) !== 0;
  // Sequences, maps and optionals: trust the declaration as it stands.
  return Boolean(t.sequenceType || t.mapType || t.optionalType);
}

const BOOL_OPS = new Set(['Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf']);
const INT64_OPS = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression', 'SequenceLength']);
/** Ops whose outputs are sequences or optionals, or tensors whose type lives inside one: no rule types them. */
const UNTYPED_OPS = new Set([
  'SequenceConstruct', 'SequenceEmpty', 'SequenceInsert', 'SequenceErase', 'SplitToSequence', 'SequenceAt', 'SequenceMap',
  'ConcatFromSequence', 'Optional', 'OptionalGetElement',
]);

/** Element types of a node's outputs from its inputs' types and its attributes; null where unknown. */
function outputDtypes(node: IRNode, proto: onnx.INodeProto, ins: Array<DType | null>): Array<DType | null> {
  const n = node.outputs.length;
  const all = (d: DType | null): Array<DType | null> => new Array<DType | null>(n).fill(d);
  const first = ins.find((d) => d !== null) ?? null;
  const attrDtype = (name: string): DType | null => {
    const v = node.attributes[name];
    return typeof v === 'number' ? dtypeName(v) : null;
  };
  if (node.domain !== '' && node.domain !== 'com.microsoft') return all(first);
  const op = node.opType;
  if (op === 'Cast') return all(attrDtype('to'));
  if (op === 'CastLike') return all(ins[1] ?? null);
  if (UNTYPED_OPS.has(op)) return all(null);
  if (BOOL_OPS.has(op) || op === 'OptionalHasElement') return all('bool');
  if (INT64_OPS.has(op)) return all('int64');
  if (op === 'TopK') return [ins[0] ?? null, 'int64'];
  if (op === 'Unique') return [ins[0] ?? null, 'int64', 'int64', 'int64'];
  if (op === 'MaxPool') return [ins[0] ?? null, 'int64'];
  if (op === 'Dropout') return [ins[0] ?? null, 'bool'];
  if (op === 'Where') return all(ins[1] ?? ins[2] ?? null);
  if (op === 'LayerNormalization') return [ins[0] ?? null, attrDtype('stash_type') ?? 'float32', attrDtype('stash_type') ?? 'float32'];
  if (op === 'ConstantOfShape') {
    const v = node.attributes['value'];
    return all(v && typeof v === 'object' && !Array.isArray(v) && v.kind === 'tensor' ? v.dtype : 'float32');
  }
  if (op === 'EyeLike' || op === 'RandomNormalLike' || op === 'RandomUniformLike' || op === 'Bernoulli') return all(attrDtype('dtype') ?? ins[0] ?? null);
  if (op === 'RandomNormal' || op === 'RandomUniform') return all(attrDtype('dtype') ?? 'float32');
  if (op === 'Multinomial') return all(attrDtype('dtype') ?? 'int32');
  if (op === 'QuantizeLinear') return all(attrDtype('output_dtype') ?? ins[2] ?? 'uint8');
  if (op === 'DynamicQuantizeLinear') return ['uint8', 'float32', 'uint8'];
  if (op === 'DequantizeLinear') return all(ins[1] ?? 'float32');
  if (op === 'MatMulInteger' || op === 'ConvInteger') return all('int32');
  if (op === 'QLinearMatMul' || op === 'QLinearConv') return all(ins[7] ?? null);
  if (op === 'If' || op === 'Loop' || op === 'Scan') return subgraphOutputDtypes(op, proto, ins, n);
  if (op === 'Constant') return all(null); // typed from ir.constants
  return all(first);
}

/** If: the then-branch's outputs; Loop: the body's outputs after `cond`; Scan: the body's outputs. */
function subgraphOutputDtypes(op: string, proto: onnx.INodeProto, ins: Array<DType | null>, n: number): Array<DType | null> {
  const body = (proto.attribute ?? []).find((a) => a.name === (op === 'If' ? 'then_branch' : 'body'))?.g;
  const outs = (body?.output ?? []).slice(op === 'Loop' ? 1 : 0);
  return Array.from({ length: n }, (_, i) => {
    const code = outs[i]?.type?.tensorType?.elemType ?? 0;
    if (code !== 0) return dtypeName(code);
    // A Loop's carried values keep the types of its initial values (inputs 2…).
    return op === 'Loop' ? (ins[2 + i] ?? null) : null;
  });
}

// ---------------------------------------------------------------------------------------
// Bytes and files

function lengthDelimited(field: number, bytes: Uint8Array): Uint8Array {
  return Writer.create().uint32((field << 3) | 2).bytes(bytes).finish();
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Puts each external data file the model uses into `outDir` under the same relative
 * location: a hard link where the file system allows one, else a copy (a reflink where the
 * file system can). Symbolic links do not do: ONNX Runtime resolves them and refuses data
 * outside the model's folder. A file already there that is the same file is kept; anything
 * else under that name is replaced, as the stage models themselves are.
 */
function linkExternalData(ir: ModelIR, modelDir: string, outDir: string): void {
  if (ir.externalDataFiles.length === 0 || resolve(modelDir) === resolve(outDir)) return;
  const locations = new Set<string>();
  for (const t of ir.initializers) if (t.external) locations.add(t.external.location);
  for (const location of locations) {
    if (isAbsolute(location) || normalize(location).startsWith('..')) {
      throw new UserError(`${ir.path}: external data location "${location}" is outside the model's folder; write the stage models into ${modelDir} instead`);
    }
    const source = resolve(modelDir, location);
    const dest = join(outDir, location);
    if (sameFile(source, dest)) continue;
    mkdirSync(dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.tmp`;
    try {
      try {
        linkSync(source, tmp);
      } catch {
        copyFileSync(source, tmp, constants.COPYFILE_FICLONE);
      }
      renameSync(tmp, dest);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new UserError(`${dest}: cannot place the external data file ${location} beside the stage models (${(e as Error).message}); write them into ${modelDir} instead`);
    }
  }
}

function sameFile(a: string, b: string): boolean {
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}
