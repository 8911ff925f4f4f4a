/**
 * The tensor-parallel sharding planner: which weight matrices of a model split across N
 * devices, how, and which collectives the split costs. Pure logic on the graph IR; nothing
 * here runs a model.
 *
 * The rule is Megatron-LM's column-then-row split, found by propagating a sharding state
 * through the graph in topological order (as InfiniTensor's `parallel_opt.py` does):
 *
 * - Every tensor is either replicated (each device holds all of it) or split: cut along one
 *   axis into N equal contiguous parts, part j on device j.
 * - A MatMul or Gemm whose weight is a 2-D initializer and whose input is replicated splits
 *   its weight by columns (a *column-parallel* seed): its output is split on the last axis.
 * - Elementwise ops (activations, the Erf form of Gelu, bias Adds, scalings), Transpose,
 *   Reshape-like ops that keep the parts contiguous (the heads split of attention),
 *   Softmax and LayerNormalization over other axes, and MatMuls of two activations split on
 *   the same batch axis (attention scores per head) carry the split on. An initializer
 *   operand that lines up with the split axis (a bias of the split width) is split with it.
 * - A MatMul or Gemm with a 2-D initializer weight whose input is split on its last
 *   (contracted) axis splits its weight by rows (*row-parallel*): each device computes a
 *   partial sum, and an all-reduce right after the node makes the output replicated again.
 *   A Gemm's bias is added once, after the all-reduce, so it stays replicated.
 * - A split tensor that is a graph output is all-gathered (a column-parallel output layer).
 * - Any other consumer of a split tensor stops the split: every seed whose split reaches it
 *   is left whole, with the reason, and the propagation runs again without them until no
 *   split is stopped anywhere. The split groups that remain are the plan.
 *
 * Convolutions split the same way on channels (NCHW, Megatron's rule with channels in the
 * place of columns):
 *
 * - A Conv with group 1 whose kernel is an initializer and whose input is replicated splits
 *   its kernel on output channels (kernel axis 0, its bias with it): the output is split on
 *   the channel axis 1, a column-parallel seed.
 * - Per-channel ops carry a channel split: the elementwise ops above, with per-channel
 *   operands shaped [C, 1, 1] or [1, C, 1, 1] split on their channel axis;
 *   BatchNormalization (scale, bias, mean and variance split); MaxPool, AveragePool and the
 *   global pools, which pool within a channel; and Flatten or Reshape where the channel
 *   parts stay contiguous (GlobalAveragePool → Flatten → Gemm makes the Gemm row-parallel).
 * - A Conv with group 1 whose input is split on channels splits its kernel on input channels
 *   (kernel axis 1): its output is a partial sum, all-reduced right after it, and its bias is
 *   added once, after the all-reduce, as a row-parallel Gemm's is.
 * - A grouped or depthwise Conv whose input is split on channels carries the split when N
 *   divides its group count: each device's channels are whole groups, so it convolves them
 *   with its rows of the kernel (axis 0, and of the bias) and a group count divided by N
 *   (MobileNet's expand → depthwise → project is one pair). It starts no split itself.
 * - A grouped Conv whose groups N does not divide, a split on a spatial axis (which a window
 *   crosses), Concat and anything else stop the split, with the reason, as above.
 *
 * The planner splits every valid pair, MatMul or Conv, whatever its share of the FLOPs; a
 * measured run shows whether the split pays (its all-reduces on the timeline, its speedup
 * against one device). Weights and kernels are initializers only: one held in a Constant
 * node (as paddle2onnx writes them) is left whole, with that reason.
 *
 * Shapes come from shape propagation ({@link estimateCosts}) with the batch dimension set to
 * one row, so collective sizes are bytes per batch row when the model has a symbolic batch
 * dimension, and bytes per step at the declared sizes when it has none.
 */
import { UserError } from '../../common/errors';
import { byteSize, isWeightType, type DType } from '../onnx/dtypes';
import { estimateCosts, type IRNode, type ModelIR, type TensorShape } from '../onnx/model';
import { batchDimName, nominalDims } from '../pipeline/partition';

/** One device's part of a split initializer: elements [start, start + length) along the split axis. */
export interface ShardSlice {
  device: number;
  start: number;
  length: number;
  bytes: number;
}

/** What a split initializer is to the layer that reads it. */
export type ShardRole = 'column-weight' | 'row-weight' | 'split-operand';

/** Where an initializer sits: on every device whole, or split along one axis. */
export type InitializerPlacement =
  | { kind: 'replicated'; name: string; dtype: DType; dims: number[]; bytes: number; parameter: boolean }
  | { kind: 'split'; name: string; dtype: DType; dims: number[]; bytes: number; parameter: boolean; axis: number; role: ShardRole; slices: ShardSlice[] };

/**
 * A collective the split needs in one forward step. `bytesPerRow` is the size of the whole
 * tensor the collective produces, per batch row when {@link TensorShardPlan.batchDim} is set
 * (per step otherwise); null where its shape is unknown.
 */
export type Collective =
  | { op: 'all-reduce'; group: number; afterNode: string; tensor: string; bytesPerRow: number | null }
  | { op: 'all-gather'; group: number; afterNode: string; tensor: string; axis: number; bytesPerRow: number | null };

/** One connected split region: the column-parallel seeds, the row-parallel nodes that close it, its collectives. */
export interface SplitGroup {
  index: number;
  /** Common scope of the region's node names (`/layers.3/mlp`), or the first seed's name (no common scope, or one another group shares). */
  label: string;
  columnNodes: string[];
  rowNodes: string[];
  /** Every node that runs on a split tensor (seeds and row-parallel nodes included), in topological order. */
  nodes: string[];
  /** Indices into {@link TensorShardPlan.collectives}. */
  collectives: number[];
}

/** A MatMul, Gemm or Conv that was considered and left whole, and why. */
export interface NotSplit {
  node: string;
  /** Its weight initializer, when it has one. */
  weight: string | null;
  reason: string;
}

/** The tensor-parallel plan of a model over N devices. */
export interface TensorShardPlan {
  devices: number;
  modelPath: string;
  /** The symbolic batch dimension collective sizes are per row of, or null (per step). */
  batchDim: string | null;
  groups: SplitGroup[];
  /** Every initializer, in the model's order. */
  initializers: InitializerPlacement[];
  collectives: Collective[];
  notSplit: NotSplit[];
  /** Tensors held split (not whole) on every device, with their split axis: for activation memory. */
  splitTensors: Record<string, number>;
  /** The model's parameter bytes (`ir.parameterBytes`). */
  parameterBytes: number;
  /** Parameter bytes each device holds: everything replicated plus its slices. */
  perDeviceParameterBytes: number[];
  /** Weights cut as the model's ONNX sharding annotations say (0: the planner chose every split). */
  annotations?: number;
}

/** Options for {@link planTensorSharding}. */
export interface TensorPlanOptions {
  /** Values of symbolic dimensions other than the batch (image sizes, sequence length). */
  dimValues?: Record<string, number>;
  /**
   * Layers to keep whole: a node name, a scope prefixing node names (`/layers.5/mlp` keeps
   * `/layers.5/mlp/fc1/MatMul`), or a glob with `*`. A MatMul/Gemm it matches is never a
   * split seed (nor, therefore, a row-parallel partner). A pattern that matches no candidate
   * is an error (a typo would otherwise split everything silently).
   */
  keepWhole?: readonly string[];
}

/** Operators whose weight the planner may split (what `keepWhole` patterns select among). */
const SPLITTABLE_OPS: ReadonlySet<string> = new Set(['MatMul', 'Gemm', 'Conv']);

/** True when node `name` is matched by a `keepWhole` pattern (see {@link TensorPlanOptions.keepWhole}). */
export function keptWhole(name: string, pattern: string): boolean {
  if (pattern.includes('*')) {
    const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return re.test(name);
  }
  return name === pattern || name.startsWith(pattern.endsWith('/') ? pattern : `${pattern}/`);
}

/** What the planner looks for, for the message of a model with nothing to split. */
export const LOOKED_FOR =
  'MatMul/Gemm nodes with a 2-D initializer weight whose output splits by columns, followed by elementwise ops (or attention heads) and a MatMul/Gemm whose weight splits by rows (Megatron pairs), ' +
  'and Conv pairs (group 1, initializer kernels) split on output channels, then per-channel ops, then on input channels';

/**
 * Plans the tensor-parallel split of `ir` over `devices` devices.
 * @throws UserError when `devices` is not a whole number of at least 2, or when nothing in
 *   the model can be split (the message names what was looked for and why candidates failed).
 */
export function planTensorSharding(ir: ModelIR, devices: number, opts: TensorPlanOptions = {}): TensorShardPlan {
  if (!Number.isInteger(devices) || devices < 2) {
    throw new UserError(`tensor parallelism needs at least 2 devices, got ${devices}; give --tensor 2 or more (or --devices cpu:2)`);
  }
  const batchDim = batchDimName(ir);
  const dims = { ...nominalDims(ir), ...opts.dimValues, ...(batchDim ? { [batchDim]: 1 } : {}) };
  const shapes = estimateCosts(ir, dims).shapes;
  const ctx: Ctx = { ir, n: devices, shapes };

  // Seeds whose split failed, with the reason; each round removes at least one, so this ends.
  const disabled = new Map<number, string>();
  for (const pattern of opts.keepWhole ?? []) {
    let matched = 0;
    ir.nodes.forEach((node, idx) => {
      if (!SPLITTABLE_OPS.has(node.opType) || !keptWhole(node.name, pattern)) return;
      disabled.set(idx, `kept whole by --keep-whole ${pattern}`);
      matched++;
    });
    if (matched === 0) throw new UserError(`--keep-whole ${pattern} matches no ${[...SPLITTABLE_OPS].join(', ')} node of ${ir.path}; give a node name, a scope such as /layers.5/mlp, or a glob (parallax plan --mode tensor lists the split layers)`);
  }
  // A model that carries ONNX sharding annotations on its weights is split as they say: only
  // the weights they cut by columns seed a split (rows follow from the propagation), and
  // every annotation is checked against the plan below.
  const annotated = annotatedWeights(ir, devices);
  if (annotated.length > 0) {
    const seeds = new Set(annotated.filter((a) => a.role === 'column').map((a) => a.node));
    ir.nodes.forEach((node, idx) => {
      if (weightOf(ir, node) && !seeds.has(idx) && !disabled.has(idx)) disabled.set(idx, 'the model\'s sharding annotations leave its weight whole');
    });
  }
  let pass = propagate(ctx, disabled);
  while (pass.failed.size > 0) {
    for (const [root, reason] of pass.failed) {
      for (const seed of pass.seeds) if (pass.uf.find(seed) === root) disabled.set(seed, reason);
    }
    pass = propagate(ctx, disabled);
  }

  const notSplit: NotSplit[] = [];
  for (const idx of ir.topoOrder) {
    const reason = disabled.get(idx) ?? pass.unsplittable.get(idx);
    if (reason === undefined || pass.rowNodes.has(idx)) continue;
    const node = ir.nodes[idx];
    notSplit.push({ node: node.name, weight: weightOf(ir, node)?.name ?? null, reason });
  }
  if (pass.seeds.length === 0 && annotated.length > 0) {
    const a = annotated[0]!;
    throw annotationError(ir, a, notSplit.find((x) => x.node === ir.nodes[a.node]!.name)?.reason ?? 'no annotated weight is cut by columns, so every layer\'s input is whole');
  }
  if (pass.seeds.length === 0) {
    const why = notSplit.length > 0 ? `; ${notSplit.length} candidate${notSplit.length === 1 ? '' : 's'} left whole, e.g. ${notSplit[0].node}: ${notSplit[0].reason}` : '; the model has none';
    throw new UserError(`${ir.path}: nothing to split for tensor parallelism over ${devices} devices: looked for ${LOOKED_FOR}${why}; use --mode data or --mode pipeline for this model`);
  }
  const plan = assemble(ctx, pass, notSplit, batchDim);
  checkAnnotations(ir, plan, annotated);
  return { ...plan, annotations: annotated.length };
}

/** A weight a node's sharding annotation cuts, and which split of the pair that is. */
interface AnnotatedWeight {
  node: number;
  tensor: string;
  axis: number;
  role: 'column' | 'row';
}

/**
 * The weights the model's ONNX sharding annotations cut (annotations of other tensors, the
 * activations, are not read: the propagation decides those).
 * @throws UserError for a cut into another number of shards than devices, or along an axis
 *   that is neither the weight's columns nor its rows.
 */
function annotatedWeights(ir: ModelIR, devices: number): AnnotatedWeight[] {
  const out: AnnotatedWeight[] = [];
  ir.nodes.forEach((node, idx) => {
    const w = weightOf(ir, node);
    if (!w) return;
    for (const spec of node.sharding ?? []) {
      if (spec.tensor !== w.name) continue;
      for (const d of spec.dims) {
        if (d.shards === 1) continue;
        const axis = d.axis < 0 ? d.axis + w.dims.length : d.axis;
        const where = `${ir.path}: node "${node.name}" carries a sharding annotation that cuts its weight "${w.name}"`;
        if (d.shards !== devices) {
          throw new UserError(`${where} into ${d.shards} shards, but the run has ${devices} devices; run with ${d.shards} devices (--devices cpu:${d.shards}, or --tensor ${d.shards} in a hybrid), or change the annotation`);
        }
        if (axis !== w.colAxis && axis !== w.rowAxis) {
          throw new UserError(`${where} along axis ${d.axis}, which is neither its columns (axis ${w.colAxis}) nor its rows (axis ${w.rowAxis}); fix the annotation`);
        }
        out.push({ node: idx, tensor: w.name, axis, role: axis === w.colAxis ? 'column' : 'row' });
      }
    }
  });
  return out;
}

/** Every annotated cut is the cut the plan makes; else one line saying which and why not. */
function checkAnnotations(ir: ModelIR, plan: TensorShardPlan, annotated: readonly AnnotatedWeight[]): void {
  for (const a of annotated) {
    const placed = plan.initializers.find((i) => i.name === a.tensor);
    if (placed?.kind === 'split' && placed.axis === a.axis) continue;
    const node = ir.nodes[a.node]!;
    const why = plan.notSplit.find((x) => x.node === node.name)?.reason ?? (placed?.kind === 'split' ? `the split that runs cuts it along axis ${placed.axis}` : 'nothing before it is split by columns, so its input is whole');
    throw annotationError(ir, a, why);
  }
}

function annotationError(ir: ModelIR, a: AnnotatedWeight, reason: string): UserError {
  // A row cut needs a column cut before it; the planner's own reason would only say the node seeds no split.
  const why = a.role === 'row' && /sharding annotations leave/.test(reason) ? 'no weight before it is cut by columns, so its input is whole' : reason;
  return new UserError(
    `${ir.path}: node "${ir.nodes[a.node]!.name}" carries a sharding annotation that cuts "${a.tensor}" by ${a.role === 'column' ? 'columns' : 'rows'} (axis ${a.axis}), which tensor parallelism cannot follow here: ${why}; change the annotation or remove it to let the planner choose`,
  );
}

// ---------------------------------------------------------------------------------------
// Internals

interface Ctx {
  ir: ModelIR;
  n: number;
  shapes: Map<string, TensorShape>;
}

/** A split tensor: its axis and the seed whose region it belongs to. */
interface Split {
  axis: number;
  seed: number;
}

interface Pass {
  uf: UnionFind;
  /** Column-parallel seeds (node indices) in topological order. */
  seeds: number[];
  /** Row-parallel node → its seed. */
  rowNodes: Map<number, number>;
  /** Node that ran on split inputs → a seed of its region. */
  regionNodes: Map<number, number>;
  split: Map<string, Split>;
  /** Initializer → how it is split (axis, role, seed, the nodes that read the slices); absent: replicated. */
  initSplits: Map<string, { axis: number; role: ShardRole; seed: number; nodes: Set<number> }>;
  /** Initializer → names of nodes that read it whole (a split one cannot also be read whole). */
  initWhole: Map<string, string[]>;
  collectives: Array<{ op: 'all-reduce' | 'all-gather'; seed: number; node: number; tensor: string; axis: number }>;
  /** Region root → why its split must stop. */
  failed: Map<number, string>;
  /** Candidates that cannot be seeds whatever the rest of the graph does. */
  unsplittable: Map<number, string>;
}

/** A MatMul/Gemm weight or a Conv kernel: the initializer and the axes a column (output) and a row (input) split cut. */
interface Weight {
  name: string;
  dims: number[];
  colAxis: number;
  rowAxis: number;
}

const UNARY = new Set([
  'Relu', 'Gelu', 'Erf', 'Sigmoid', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Identity', 'Cast', 'Dropout',
  'Softplus', 'Softsign', 'LeakyRelu', 'Elu', 'Selu', 'Celu', 'HardSigmoid', 'HardSwish', 'Mish', 'Reciprocal',
  'Clip', 'Sin', 'Cos', 'Floor', 'Ceil', 'Round', 'Sign', 'ThresholdedRelu',
]);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Where', 'PRelu', 'Sum', 'Mean']);
const RESHAPES = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten']);
/** Pools that work within each channel (and sample): a split on the batch or channel axis passes through. */
const POOLS = new Set(['MaxPool', 'AveragePool', 'LpPool', 'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool']);
/** The channel axis of the NCHW tensors a Conv reads and writes. */
const CHANNEL_AXIS = 1;

/**
 * The weight of a MatMul/Gemm when it is a 2-D initializer of a weight type (input B), or the
 * kernel of a Conv when it is an initializer of a weight type ([Cout, Cin/group, k…]), else null.
 */
function weightOf(ir: ModelIR, node: IRNode): Weight | null {
  if (!isWeighted(node)) return null;
  const w = ir.initializerByName.get(node.inputs[1] ?? '');
  if (!w || !isWeightType(w.dtype)) return null;
  if (node.opType === 'Conv') return w.dims.length >= 3 ? { name: w.name, dims: w.dims, colAxis: 0, rowAxis: 1 } : null;
  if (w.dims.length !== 2) return null;
  const transB = node.opType === 'Gemm' && node.attributes['transB'] === 1;
  return { name: w.name, dims: w.dims, colAxis: transB ? 0 : 1, rowAxis: transB ? 1 : 0 };
}

function isMatMulLike(node: IRNode): boolean {
  return node.domain === '' && (node.opType === 'MatMul' || node.opType === 'Gemm');
}

/** MatMul, Gemm or Conv: the nodes whose weight the planner may split. */
function isWeighted(node: IRNode): boolean {
  return isMatMulLike(node) || (node.domain === '' && node.opType === 'Conv');
}

/** A Conv's `group` attribute (1 when absent). */
function convGroup(node: IRNode): number {
  const g = node.attributes['group'];
  return typeof g === 'number' ? g : 1;
}

function rankOf(ctx: Ctx, t: string): number | null {
  return ctx.shapes.get(t)?.dims.length ?? null;
}

function propagate(ctx: Ctx, disabled: Map<number, string>): Pass {
  const { ir } = ctx;
  const p: Pass = {
    uf: new UnionFind(),
    seeds: [],
    rowNodes: new Map(),
    regionNodes: new Map(),
    split: new Map(),
    initSplits: new Map(),
    initWhole: new Map(),
    collectives: [],
    failed: new Map(),
    unsplittable: new Map(),
  };
  const fail = (seed: number, reason: string): void => {
    const root = p.uf.find(seed);
    if (!p.failed.has(root)) p.failed.set(root, reason);
  };
  let current = -1;
  const splitInit: SplitInit = (init, axis, role, seed) => {
    const prev = p.initSplits.get(init);
    if (prev && (prev.axis !== axis || prev.role !== role)) {
      p.uf.union(prev.seed, seed);
      fail(seed, `initializer "${init}" is read by two split layers that would cut it differently`);
      return;
    }
    if (prev) prev.nodes.add(current);
    else p.initSplits.set(init, { axis, role, seed, nodes: new Set([current]) });
  };
  // Initializers a node read whole (those it did not split for itself).
  const noteWholeReads = (node: IRNode): void => {
    for (const t of node.inputs) {
      if (!t || !ir.initializerByName.has(t) || p.initSplits.get(t)?.nodes.has(node.index)) continue;
      let list = p.initWhole.get(t);
      if (!list) p.initWhole.set(t, (list = []));
      list.push(node.name);
    }
  };

  for (const idx of ir.topoOrder) {
    const node = ir.nodes[idx];
    current = idx;
    const ins = node.inputs.map((t) => (t ? p.split.get(t) : undefined));
    const splitIns = ins.filter((s): s is Split => s !== undefined);
    if (splitIns.length === 0) {
      // Replicated inputs: a candidate seed, or a node every device runs whole.
      const w = weightOf(ir, node);
      if (w && !disabled.has(idx)) {
        const why = seedProblem(ctx, node, w);
        if (why) p.unsplittable.set(idx, why);
        else {
          p.seeds.push(idx);
          p.uf.add(idx);
          const outRank = rankOf(ctx, node.outputs[0])!;
          const conv = node.opType === 'Conv';
          p.split.set(node.outputs[0], { axis: conv ? CHANNEL_AXIS : outRank - 1, seed: idx });
          splitInit(w.name, w.colAxis, 'column-weight', idx);
          // A Gemm's bias C and a Conv's bias B line up with the output columns (channels): they
          // are split with them (seedProblem checked they can be).
          const c = node.opType === 'Gemm' || conv ? node.inputs[2] : undefined;
          if (c && conv) splitChannelParam(ctx, node, c, idx, splitInit);
          else if (c) splitOperand(ctx, node, c, outRank - 1, outRank, idx, splitInit);
        }
      } else if (isWeighted(node) && !w && (!ir.producers.has(node.inputs[1] ?? '') || ir.constants.has(node.inputs[1] ?? ''))) {
        // A weight that is a graph input, a Constant node's value or an initializer of another
        // rank or type; a MatMul of two computed tensors (attention scores) is no candidate by itself.
        const form = node.opType === 'Conv' ? 'floating-point initializer' : '2-D floating-point initializer';
        const constant = ir.constants.has(node.inputs[1] ?? '') ? ' (it is a Constant node\'s value; this planner splits initializers only)' : '';
        p.unsplittable.set(idx, `its weight "${node.inputs[1]}" is not a ${form}${constant}`);
      }
      noteWholeReads(node);
      continue;
    }
    const seed = splitIns[0].seed;
    for (const s of splitIns) p.uf.union(seed, s.seed);
    p.regionNodes.set(idx, seed);
    const r = propagateNode(ctx, node, ins, seed, splitInit);
    noteWholeReads(node);
    if (typeof r === 'string') {
      fail(seed, `${node.opType} node "${node.name}" cannot take the split: ${r}`);
      continue;
    }
    if (r.kind === 'row') {
      p.rowNodes.set(idx, seed);
      p.collectives.push({ op: 'all-reduce', seed, node: idx, tensor: node.outputs[0], axis: -1 });
      continue;
    }
    r.axes.forEach((axis, i) => {
      const t = node.outputs[i];
      if (t && axis !== null) p.split.set(t, { axis, seed });
    });
  }

  // Split tensors that leave the graph are gathered whole.
  for (const o of ir.outputs) {
    const s = p.split.get(o.name);
    if (!s) continue;
    const producer = ir.producers.get(o.name);
    if (producer !== undefined) p.collectives.push({ op: 'all-gather', seed: s.seed, node: producer, tensor: o.name, axis: s.axis });
  }
  // A device holds only its slice of a split initializer, so no node may read it whole.
  for (const [init, readers] of p.initWhole) {
    const sp = p.initSplits.get(init);
    if (sp) fail(sp.seed, `initializer "${init}" is also read whole by node "${readers[0]}"`);
  }
  // Regions merged after a failure was noted: key every failure by its region's final root.
  const failed = new Map<number, string>();
  for (const [root, reason] of p.failed) if (!failed.has(p.uf.find(root))) failed.set(p.uf.find(root), reason);
  p.failed = failed;
  return p;
}

/** Why `node` cannot start a column split, or null when it can. */
function seedProblem(ctx: Ctx, node: IRNode, w: Weight): string | null {
  if (node.opType === 'Gemm' && node.attributes['transA'] === 1) return 'Gemm with transA=1 is not split by this planner';
  if (node.opType === 'Conv' && convGroup(node) !== 1) return `a grouped or depthwise Conv (group=${convGroup(node)}) starts no split in this planner (it carries one on its input channels)`;
  const cols = w.dims[w.colAxis];
  if (cols % ctx.n !== 0) return `dimension ${cols} of weight "${w.name}" is not divisible by ${ctx.n}`;
  const outRank = rankOf(ctx, node.outputs[0]);
  if (outRank === null) return `the shape of output "${node.outputs[0]}" is unknown; give --dim values for its symbolic dimensions`;
  if (node.opType === 'Conv') {
    const b = node.inputs[2];
    if (b && !splitChannelParam(ctx, node, b, -1, null)) return `its bias "${b}" is not an initializer that can be split with the output channels`;
    return null;
  }
  const c = node.opType === 'Gemm' ? node.inputs[2] : undefined;
  if (c && !broadcastsAlong(ctx, c, outRank - 1, outRank) && !splitOperand(ctx, node, c, outRank - 1, outRank, -1, null)) {
    return `its bias "${c}" is not an initializer that can be split with the output columns`;
  }
  return null;
}

type SplitInit = (init: string, axis: number, role: ShardRole, seed: number) => void;

/** Result of carrying a split through a node: the split axis of each output (null: whole), or a row-parallel node. */
type NodeResult = { kind: 'axes'; axes: Array<number | null> } | { kind: 'row' };

/** How `node` carries split inputs, or a reason it cannot. */
function propagateNode(ctx: Ctx, node: IRNode, ins: Array<Split | undefined>, seed: number, splitInit: SplitInit): NodeResult | string {
  const { ir } = ctx;
  const op = node.domain === '' ? node.opType : `${node.domain}.${node.opType}`;
  const out0 = node.outputs[0];
  const outRank = rankOf(ctx, out0);
  if (outRank === null) return `the shape of "${out0}" is unknown`;

  if (op === 'Conv') {
    if (!ins[0] || ins.slice(1).some((s) => s !== undefined)) return 'its kernel or bias is split';
    const w = weightOf(ir, node);
    if (!w) return `its kernel "${node.inputs[1]}" is not a floating-point initializer`;
    if (ins[0].axis !== CHANNEL_AXIS) return 'its input is split along a spatial or batch dimension, which this planner does not carry through a Conv';
    const group = convGroup(node);
    if (group === 1) {
      splitInit(w.name, w.rowAxis, 'row-weight', seed);
      return { kind: 'row' };
    }
    // Whole groups per device: the kernel's and the bias's rows of those groups, group / N of them.
    if (group % ctx.n !== 0) return `its ${group} groups (group=${group}) do not divide over ${ctx.n} devices`;
    const b = node.inputs[2];
    if (b && !splitChannelParam(ctx, node, b, -1, null)) return `its bias "${b}" is not an initializer that can be split with the output channels`;
    splitInit(w.name, w.colAxis, 'split-operand', seed);
    if (b) splitChannelParam(ctx, node, b, seed, splitInit);
    return { kind: 'axes', axes: [CHANNEL_AXIS] };
  }

  if (op === 'BatchNormalization') {
    if (ins.slice(1).some((s) => s !== undefined)) return 'its scale, bias, mean or variance is split';
    if (node.outputs.slice(1).some((t) => t)) return 'it updates running statistics (training mode)';
    const a = ins[0]!.axis;
    if (a === CHANNEL_AXIS) {
      for (const t of node.inputs.slice(1, 5)) {
        if (t && !splitChannelParam(ctx, node, t, seed, splitInit)) return `its parameter "${t}" is not a 1-D initializer that can be split with the channels`;
      }
    }
    return { kind: 'axes', axes: [a] };
  }

  if (POOLS.has(op)) {
    const a = ins[0]!.axis;
    if (a > CHANNEL_AXIS) return 'it pools over the split dimension';
    if (node.outputs[1]) return 'its indices output numbers the elements of the whole tensor';
    return { kind: 'axes', axes: [a] };
  }

  if (isMatMulLike(node)) {
    const a = ins[0];
    const w = weightOf(ir, node);
    const aRank = rankOf(ctx, node.inputs[0]);
    if (aRank === null) return `the shape of "${node.inputs[0]}" is unknown`;
    if (w) {
      if (!a) return 'its weight input is split';
      if (node.opType === 'Gemm' && node.attributes['transA'] === 1) return 'Gemm with transA=1 is not split by this planner';
      if (a.axis === aRank - 1) {
        splitInit(w.name, w.rowAxis, 'row-weight', seed);
        return { kind: 'row' };
      }
      // Split on a row axis (batch, sequence, heads): each device multiplies its rows by the whole weight.
      return { kind: 'axes', axes: [a.axis + (outRank - aRank)] };
    }
    if (node.opType === 'Gemm') return 'Gemm with a weight that is not an initializer is not split by this planner';
    const b = ins[1];
    const bRank = rankOf(ctx, node.inputs[1]);
    if (bRank === null) return `the shape of "${node.inputs[1]}" is unknown`;
    if (a && a.axis === aRank - 1) return `the second MatMul's weight "${node.inputs[1]}" is not an initializer, so it cannot be split by rows`;
    if (b && b.axis === bRank - 2) return 'it contracts over the split dimension of a computed operand';
    const outA = a ? (a.axis === aRank - 2 ? outRank - 2 : a.axis + (outRank - aRank)) : null;
    const outB = b ? (b.axis === bRank - 1 ? outRank - 1 : b.axis + (outRank - bRank)) : null;
    if (outA !== null && outB !== null && outA !== outB) return 'its two operands are split along different dimensions';
    const axis = (outA ?? outB)!;
    // A whole operand must broadcast along a split batch axis (size 1 there, or no such axis).
    const whole = a ? (b ? null : 1) : 0;
    if (whole !== null && axis < outRank - 2 && !broadcastsAlong(ctx, node.inputs[whole], axis, outRank)) {
      return `operand "${node.inputs[whole]}" is whole along the split dimension`;
    }
    return { kind: 'axes', axes: [axis] };
  }

  if (UNARY.has(op)) {
    if (ins.slice(1).some((s) => s !== undefined)) return 'a parameter input of the op is split';
    if (!ins[0]) return 'a parameter input of the op is split';
    const a = ins[0].axis;
    return { kind: 'axes', axes: node.outputs.map((_, i) => (i === 0 ? a : null)) };
  }

  if (BINARY.has(op)) {
    let axis: number | null = null;
    for (let i = 0; i < node.inputs.length; i++) {
      const s = ins[i];
      const r = rankOf(ctx, node.inputs[i]);
      if (!s || r === null) continue;
      const aligned = s.axis + (outRank - r);
      if (axis !== null && axis !== aligned) return 'its operands are split along different dimensions';
      axis = aligned;
    }
    if (axis === null) return 'the shapes of its operands are unknown';
    for (let i = 0; i < node.inputs.length; i++) {
      const t = node.inputs[i];
      if (!t || ins[i]) continue;
      if (broadcastsAlong(ctx, t, axis, outRank)) continue;
      if (!splitOperand(ctx, node, t, axis, outRank, seed, splitInit)) {
        return `operand "${t}" is whole along the split dimension and is not an initializer that can be split with it`;
      }
    }
    return { kind: 'axes', axes: [axis] };
  }

  if (op === 'Transpose') {
    const a = ins[0]!.axis;
    const perm = Array.isArray(node.attributes['perm']) ? (node.attributes['perm'] as number[]) : Array.from({ length: outRank }, (_, i) => outRank - 1 - i);
    return { kind: 'axes', axes: [perm.indexOf(a)] };
  }

  if (RESHAPES.has(op)) {
    if (ins.slice(1).some((s) => s !== undefined)) return 'its shape input is split';
    const inDims = ctx.shapes.get(node.inputs[0])?.dims;
    const outDims = ctx.shapes.get(out0)?.dims;
    if (!inDims || !outDims) return 'its shapes are unknown';
    const b = reshapedAxis(inDims, ins[0]!.axis, outDims, ctx.n);
    if (b === null) return `no dimension of its output [${outDims.join(', ')}] keeps the split in ${ctx.n} equal contiguous parts`;
    return { kind: 'axes', axes: [b] };
  }

  if (op === 'Softmax' || op === 'LogSoftmax') {
    const a = ins[0]!.axis;
    const raw = typeof node.attributes['axis'] === 'number' ? (node.attributes['axis'] as number) : (ir.opsetVersion ?? 13) >= 13 ? -1 : 1;
    const ax = raw < 0 ? raw + outRank : raw;
    // Before opset 13 Softmax flattens every axis from `axis` on into one.
    const reduces = (ir.opsetVersion ?? 13) >= 13 ? a === ax : a >= ax;
    if (reduces) return 'it normalizes over the split dimension';
    return { kind: 'axes', axes: [a] };
  }

  if (op === 'LayerNormalization') {
    const a = ins[0]!.axis;
    if (ins.slice(1).some((s) => s !== undefined)) return 'its scale or bias is split';
    const raw = typeof node.attributes['axis'] === 'number' ? (node.attributes['axis'] as number) : -1;
    const ax = raw < 0 ? raw + outRank : raw;
    if (a >= ax) return 'it normalizes over the split dimension (not elementwise)';
    return { kind: 'axes', axes: node.outputs.map((_, i) => (i === 0 ? a : null)) };
  }

  return `${node.opType} is not elementwise and is not a layer this planner splits`;
}

/** True when tensor `t` broadcasts along output axis `axis` of a rank-`outRank` result: no such axis, or size 1 there. */
function broadcastsAlong(ctx: Ctx, t: string, axis: number, outRank: number): boolean {
  const dims = ctx.shapes.get(t)?.dims;
  if (!dims) return false;
  const k = axis - (outRank - dims.length);
  return k < 0 || dims[k] === 1;
}

/**
 * Splits a whole initializer operand `t` of `node` along output axis `axis` (a bias of the
 * split width). False when `t` is not a weight initializer or does not line up; with a null
 * `splitInit` it only checks.
 */
function splitOperand(ctx: Ctx, node: IRNode, t: string, axis: number, outRank: number, seed: number, splitInit: SplitInit | null): boolean {
  const init = ctx.ir.initializerByName.get(t);
  if (!init || !isWeightType(init.dtype)) return false;
  const k = axis - (outRank - init.dims.length);
  if (k < 0 || init.dims[k] === 1) return true;
  const outDims = ctx.shapes.get(node.outputs[0])?.dims;
  if (!outDims || init.dims[k] !== outDims[axis] || init.dims[k] % ctx.n !== 0) return false;
  splitInit?.(t, k, 'split-operand', seed);
  return true;
}

/**
 * Splits a 1-D per-channel initializer `t` of `node` (a Conv's bias, BatchNormalization's
 * scale, bias, mean or variance) with the channels of the node's output. False when `t` is
 * not a 1-D weight initializer as long as the channel axis, or that length does not divide by
 * N; with a null `splitInit` it only checks.
 */
function splitChannelParam(ctx: Ctx, node: IRNode, t: string, seed: number, splitInit: SplitInit | null): boolean {
  const init = ctx.ir.initializerByName.get(t);
  const channels = ctx.shapes.get(node.outputs[0])?.dims[CHANNEL_AXIS];
  if (!init || !isWeightType(init.dtype) || init.dims.length !== 1 || channels === undefined) return false;
  if (init.dims[0] !== channels || channels % ctx.n !== 0) return false;
  splitInit?.(t, 0, 'split-operand', seed);
  return true;
}

/**
 * The output axis of a reshape that keeps an input split along `axis` as N equal contiguous
 * parts, or null. Per index of the dimensions before the split axis, part j is a contiguous
 * run of the flattened remainder; an output dimension carries the same runs when the
 * dimensions before it hold the same number of elements as before the input's, its size
 * times what follows it equals the input's, and N divides it ([B, S, H] → [B, S, heads, d]
 * keeps a split of H on heads; the reverse keeps a split of heads on H).
 */
export function reshapedAxis(inDims: readonly number[], axis: number, outDims: readonly number[], n: number): number | null {
  const prod = (d: readonly number[], from: number, to: number): number => d.slice(from, to).reduce((x, y) => x * y, 1);
  const outer = prod(inDims, 0, axis);
  const span = prod(inDims, axis, inDims.length);
  for (let b = 0; b < outDims.length; b++) {
    if (prod(outDims, 0, b) !== outer) continue;
    if (prod(outDims, b, outDims.length) !== span) continue;
    if (outDims[b] > 1 && outDims[b] % n === 0) return b;
  }
  return null;
}

function assemble(ctx: Ctx, p: Pass, notSplit: NotSplit[], batchDim: string | null): TensorShardPlan {
  const { ir, n } = ctx;
  // Groups: one per region root, numbered in the order of their first seed.
  const groupOf = new Map<number, number>();
  const groups: SplitGroup[] = [];
  for (const s of p.seeds) {
    const root = p.uf.find(s);
    if (!groupOf.has(root)) {
      groupOf.set(root, groups.length);
      groups.push({ index: groups.length, label: '', columnNodes: [], rowNodes: [], nodes: [], collectives: [] });
    }
    groups[groupOf.get(root)!].columnNodes.push(ir.nodes[s].name);
  }
  const g = (seed: number): SplitGroup => groups[groupOf.get(p.uf.find(seed))!];
  const seedSet = new Set(p.seeds);
  for (const idx of ir.topoOrder) {
    const seed = seedSet.has(idx) ? idx : p.regionNodes.get(idx);
    if (seed === undefined) continue;
    g(seed).nodes.push(ir.nodes[idx].name);
    if (p.rowNodes.has(idx)) g(seed).rowNodes.push(ir.nodes[idx].name);
  }
  const rowBytes = (t: string): number | null => {
    const s = ctx.shapes.get(t);
    return s ? byteSize(s.dtype, s.dims.reduce((a, b) => a * b, 1)) : null;
  };
  const collectives: Collective[] = p.collectives.map((c, i) => {
    const group = groupOf.get(p.uf.find(c.seed))!;
    groups[group].collectives.push(i);
    const base = { group, afterNode: ir.nodes[c.node].name, tensor: c.tensor, bytesPerRow: rowBytes(c.tensor) };
    return c.op === 'all-reduce' ? { op: 'all-reduce', ...base } : { op: 'all-gather', ...base, axis: c.axis };
  });
  for (const grp of groups) grp.label = commonScope(grp.nodes) ?? grp.columnNodes[0];
  // A scope several groups share (`model` of every layer of a TensorFlow export) does not say
  // which layer an all-reduce belongs to: those groups are named by their first seed instead.
  const seen = new Map<string, number>();
  for (const grp of groups) seen.set(grp.label, (seen.get(grp.label) ?? 0) + 1);
  for (const grp of groups) if (seen.get(grp.label)! > 1) grp.label = grp.columnNodes[0];

  const perDevice = new Array<number>(n).fill(ir.parameterBytes);
  const initializers: InitializerPlacement[] = ir.initializers.map((t) => {
    const bytes = t.byteSize ?? 0;
    const parameter = isWeightType(t.dtype);
    const sp = p.initSplits.get(t.name);
    if (!sp) return { kind: 'replicated', name: t.name, dtype: t.dtype, dims: t.dims, bytes, parameter };
    const size = t.dims[sp.axis];
    const length = size / n;
    const slices = Array.from({ length: n }, (_, device) => ({ device, start: device * length, length, bytes: bytes / n }));
    if (parameter) for (let d = 0; d < n; d++) perDevice[d] -= bytes - slices[d].bytes;
    return { kind: 'split', name: t.name, dtype: t.dtype, dims: t.dims, bytes, parameter, axis: sp.axis, role: sp.role, slices };
  });
  const splitTensors: Record<string, number> = {};
  for (const [t, s] of p.split) splitTensors[t] = s.axis;
  return { devices: n, modelPath: ir.path, batchDim, groups, initializers, collectives, notSplit, splitTensors, parameterBytes: ir.parameterBytes, perDeviceParameterBytes: perDevice };
}

/** The longest `/`-separated prefix the names share (`/layers.3/mlp`), or null when they share none. */
function commonScope(names: string[]): string | null {
  if (names.length === 0) return null;
  let parts = names[0].split('/').slice(0, -1);
  for (const name of names.slice(1)) {
    const q = name.split('/');
    let i = 0;
    while (i < parts.length && i < q.length - 1 && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  const s = parts.join('/');
  return s === '' ? null : s;
}

/** Union–find over node indices (the seeds of split regions). */
class UnionFind {
  private readonly parent = new Map<number, number>();

  add(x: number): void {
    if (!this.parent.has(x)) this.parent.set(x, x);
  }

  find(x: number): number {
    this.add(x);
    let r = x;
    while (this.parent.get(r) !== r) r = this.parent.get(r)!;
    // Path compression keeps later finds flat.
    let c = x;
    while (c !== r) {
      const next = this.parent.get(c)!;
      this.parent.set(c, r);
      c = next;
    }
    return r;
  }

  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    // The smaller index stays root, so a region's root is its first seed.
    if (ra !== rb) this.parent.set(Math.max(ra, rb), Math.min(ra, rb));
  }
}
