/**
 * Per-node FLOP and memory-traffic estimates from shapes.
 *
 * The partitioner needs a cost per node before anything has been measured, and the
 * projection compares measured time with arithmetic intensity. Shapes come from the graph
 * inputs with concrete values substituted for symbolic dimensions (the batch above all), then
 * flow forward through the ops below; value_info fills in where an op is not covered. Where
 * a shape cannot be known the estimate is null: a made-up number would mislead the
 * partitioner more than a gap does.
 *
 * FLOP conventions (one multiply-add counts as two FLOPs):
 * - MatMul [.., M, K] × [.., K, N]: 2·M·K·N per broadcast batch element.
 * - Gemm: 2·M·K·N, plus M·N when C is given.
 * - Conv: 2·N·Cout·∏out·(Cin/group)·∏kernel, plus N·Cout·∏out for a bias.
 * - ConvTranspose: 2·N·Cin·∏in·(Cout/group)·∏kernel, plus N·Cout·∏out for a bias.
 * - Elementwise binary ops and unary activations: 1 per output element (Sum/Mean: one per
 *   added operand).
 * - Softmax/LogSoftmax: 5 per element (max, subtract, exp, sum, divide).
 * - LayerNormalization, InstanceNormalization, GroupNormalization: 7 per element with a bias
 *   (mean, subtract, square, sum, normalize, scale, bias), 6 without.
 * - BatchNormalization (inference): 2 per element (folded scale and shift).
 * - MaxPool/AveragePool: output elements · ∏kernel; global pools and Reduce*: input elements.
 * - Memory ops (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Concat, Split, Slice,
 *   Gather, Expand, Cast, Identity, Shape, nearest Resize, Dropout): 0.
 * - Constant: 0 FLOPs and 0 bytes (ORT folds constants into initializers at load).
 * Bytes moved: every non-empty input plus every output, at full size (a lower bound for
 * ops that re-read, an upper bound for ops ORT turns into views).
 */
import { byteSize, dtypeCode, dtypeName, type DType } from './dtypes';
import type { AttributeValue, IRNode, ModelIR, TensorSummary } from './model';

/** A tensor with a fully known shape. */
export interface TensorShape {
  dtype: DType;
  dims: number[];
  /** Values of small integer/float tensors (shapes, axes, scales) where they can be known. */
  values?: number[];
}

/** Estimate for one node; null where the shapes it needs are unknown or the op is not covered. */
export interface NodeCost {
  flops: number | null;
  bytes: number | null;
}

/** Result of {@link estimateCosts}. */
export interface CostEstimate {
  /** Per node, indexed like `ir.nodes`. */
  nodes: NodeCost[];
  /** Sum of the known FLOP estimates. */
  totalFlops: number;
  /** Sum of the known byte estimates. */
  totalBytes: number;
  /** How many nodes have no FLOP estimate (the totals leave them out). */
  unknownFlopNodes: number;
  /** Every tensor whose shape became known, by name. */
  shapes: Map<string, TensorShape>;
}

const VALUE_LIMIT = 64;

const UNARY = new Set([
  'Relu', 'Sigmoid', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Erf', 'Gelu', 'FastGelu', 'QuickGelu',
  'LeakyRelu', 'Elu', 'Selu', 'Celu', 'HardSigmoid', 'HardSwish', 'Softplus', 'Softsign', 'Reciprocal',
  'Floor', 'Ceil', 'Round', 'Sin', 'Cos', 'Tan', 'Clip', 'Not', 'Sign', 'Mish', 'ThresholdedRelu',
  'IsNaN', 'IsInf', 'Swish', 'BiasGelu',
]);
const MEMORY_SAME_SHAPE = new Set(['Identity', 'Dropout', 'Cast', 'CastLike']);
const BINARY = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Mean', 'Sum', 'Equal', 'Greater', 'Less',
  'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Xor', 'Mod', 'PRelu', 'Where', 'BitShift',
]);
const COMPARISON = new Set(['Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf']);
const NORM7 = new Set(['LayerNormalization', 'InstanceNormalization', 'GroupNormalization', 'SimplifiedLayerNormalization']);
const REDUCE = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp', 'ReduceLogSum']);

/**
 * Estimates FLOPs and bytes moved for every node of `ir`.
 * @param dimValues values for symbolic dimensions, e.g. `{ batch: 8 }`.
 * @param inputShapes concrete shapes per graph input (as resolved by `resolveInputShapes`);
 *   they take precedence over the model's declared dims.
 */
export function estimateCosts(ir: ModelIR, dimValues: Record<string, number>, inputShapes: Record<string, number[]> = {}): CostEstimate {
  const shapes = new Map<string, TensorShape>();
  const constant = (t: TensorSummary): TensorShape => (t.values ? { dtype: t.dtype, dims: t.dims, values: t.values } : { dtype: t.dtype, dims: t.dims });
  for (const t of ir.initializers) shapes.set(t.name, constant(t));
  for (const [name, t] of ir.constants) shapes.set(name, constant(t));
  for (const input of ir.inputs) {
    const given = inputShapes[input.name];
    if (given) shapes.set(input.name, { dtype: input.dtype, dims: [...given] });
    else {
      const dims = concreteDims(input.dims, dimValues);
      if (dims) shapes.set(input.name, { dtype: input.dtype, dims });
    }
  }

  const nodes: NodeCost[] = ir.nodes.map(() => ({ flops: null, bytes: null }));
  for (const index of ir.topoOrder) {
    const node = ir.nodes[index];
    const ins = node.inputs.map((n) => (n ? (shapes.get(n) ?? null) : null));
    let outs: Array<TensorShape | null> = [];
    try {
      outs = inferOutputs(node, ins, ir.opsetVersion ?? 21);
    } catch {
      // A malformed attribute in one node must not stop the estimate for the rest.
      outs = [];
    }
    node.outputs.forEach((name, i) => {
      if (!name || shapes.has(name)) return;
      let s = outs[i] ?? null;
      if (!s) {
        const vi = ir.valueInfo.get(name);
        const dims = vi && vi.kind === 'tensor' ? concreteDims(vi.dims, dimValues) : null;
        if (vi && dims) s = { dtype: vi.dtype, dims };
      }
      if (s) shapes.set(name, s);
    });
    nodes[index] = nodeCost(node, node.inputs.map((n) => (n ? (shapes.get(n) ?? null) : null)), node.outputs.map((n) => (n ? (shapes.get(n) ?? null) : null)));
  }

  let totalFlops = 0;
  let totalBytes = 0;
  let unknownFlopNodes = 0;
  for (const c of nodes) {
    if (c.flops === null) unknownFlopNodes++;
    else totalFlops += c.flops;
    if (c.bytes !== null) totalBytes += c.bytes;
  }
  return { nodes, totalFlops, totalBytes, unknownFlopNodes, shapes };
}

function concreteDims(dims: ReadonlyArray<number | string | null> | null, values: Record<string, number>): number[] | null {
  if (!dims) return null;
  const out: number[] = [];
  for (const d of dims) {
    if (typeof d === 'number') out.push(d);
    else if (typeof d === 'string' && Number.isInteger(values[d]) && values[d] >= 0) out.push(values[d]);
    else return null;
  }
  return out;
}

const prod = (dims: readonly number[], from = 0, to = dims.length): number => {
  let n = 1;
  for (let i = from; i < to; i++) n *= dims[i];
  return n;
};

function tensorBytes(s: TensorShape | null): number | null {
  return s ? byteSize(s.dtype, prod(s.dims)) : null;
}

function nodeCost(node: IRNode, ins: Array<TensorShape | null>, outs: Array<TensorShape | null>): NodeCost {
  if (node.opType === 'Constant') return { flops: 0, bytes: 0 };
  let bytes: number | null = 0;
  node.inputs.forEach((name, i) => {
    if (!name || bytes === null) return;
    const b = tensorBytes(ins[i]);
    bytes = b === null ? null : bytes + b;
  });
  node.outputs.forEach((name, i) => {
    if (!name || bytes === null) return;
    const b = tensorBytes(outs[i]);
    bytes = b === null ? null : bytes + b;
  });
  if (node.implicitInputs.length > 0 || node.hasSubgraphs) bytes = null;
  return { flops: node.domain === '' || node.domain === 'com.microsoft' ? opFlops(node, ins, outs) : null, bytes };
}

function opFlops(node: IRNode, ins: Array<TensorShape | null>, outs: Array<TensorShape | null>): number | null {
  const op = node.opType;
  const out0 = outs[0];
  const x = ins[0];
  const outElems = out0 ? prod(out0.dims) : null;
  if (MEMORY_SAME_SHAPE.has(op) || MEMORY_OPS.has(op)) return 0;
  if (UNARY.has(op)) return outElems;
  if (BINARY.has(op)) {
    if (outElems === null) return null;
    const operands = node.inputs.filter((n) => n).length;
    if (op === 'Sum') return outElems * Math.max(operands - 1, 0);
    if (op === 'Mean') return outElems * operands;
    return outElems;
  }
  if (op === 'Softmax' || op === 'LogSoftmax') return outElems === null ? null : 5 * outElems;
  if (NORM7.has(op)) {
    if (outElems === null) return null;
    // Every one of these ops takes its bias (if any) as input 2.
    return (node.inputs[2] ? 7 : 6) * outElems;
  }
  if (op === 'BatchNormalization') return outElems === null ? null : 2 * outElems;
  if (op === 'MatMul' || op === 'MatMulInteger' || op === 'FusedMatMul') {
    const a = ins[0];
    const b = ins[1];
    if (!a || !b || !out0) return null;
    const k = a.dims.length === 0 ? 1 : a.dims[a.dims.length - 1];
    // out = batch… × M × N (with 1-D operands' dims dropped); each output element is a K-long dot product.
    return 2 * k * prod(out0.dims);
  }
  if (op === 'Gemm') {
    const a = ins[0];
    if (!a || !out0 || a.dims.length !== 2) return null;
    const k = intAttr(node, 'transA', 0) ? a.dims[0] : a.dims[1];
    const mn = prod(out0.dims);
    return 2 * mn * k + (node.inputs[2] ? mn : 0);
  }
  if (op === 'Conv') {
    const w = ins[1];
    if (!x || !w || !out0) return null;
    const group = intAttr(node, 'group', 1);
    const cin = x.dims[1];
    const kernel = prod(w.dims, 2);
    const outSize = prod(out0.dims);
    return 2 * outSize * (cin / group) * kernel + (node.inputs[2] ? outSize : 0);
  }
  if (op === 'ConvTranspose') {
    const w = ins[1];
    if (!x || !w || !out0) return null;
    // W is [Cin, Cout/group, k…]: every input element is scattered into Cout/group·∏k outputs.
    const coutPerGroup = w.dims[1];
    const kernel = prod(w.dims, 2);
    return 2 * prod(x.dims) * coutPerGroup * kernel + (node.inputs[2] ? prod(out0.dims) : 0);
  }
  if (op === 'MaxPool' || op === 'AveragePool' || op === 'LpPool') {
    if (!out0 || !x) return null;
    const kernel = intsAttr(node, 'kernel_shape');
    return kernel ? prod(out0.dims) * prod(kernel) : null;
  }
  if (op === 'GlobalAveragePool' || op === 'GlobalMaxPool' || op === 'GlobalLpPool' || REDUCE.has(op)) {
    return x ? prod(x.dims) : null;
  }
  if (op === 'Resize' || op === 'Upsample') {
    const mode = strAttr(node, 'mode', 'nearest');
    return mode === 'nearest' ? 0 : null;
  }
  return null;
}

const MEMORY_OPS = new Set([
  'Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Concat', 'Split', 'Slice', 'Gather',
  'Expand', 'Shape', 'Size', 'Tile', 'Pad', 'DepthToSpace', 'SpaceToDepth', 'GatherElements', 'GatherND',
  'ConstantOfShape',
]);

// ---------------------------------------------------------------------------------------
// Shape propagation

function attr(node: IRNode, name: string): AttributeValue | undefined {
  return node.attributes[name];
}

function intAttr(node: IRNode, name: string, dflt: number): number {
  const v = attr(node, name);
  return typeof v === 'number' ? v : dflt;
}

function intsAttr(node: IRNode, name: string): number[] | null {
  const v = attr(node, name);
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : null;
}

function strAttr(node: IRNode, name: string, dflt: string): string {
  const v = attr(node, name);
  return typeof v === 'string' ? v : dflt;
}

/** Numpy-style broadcast of shapes, or null where they do not broadcast. */
function broadcast(shapes: number[][]): number[] | null {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = rank - s.length + i;
      const d = s[i];
      if (d === 1) continue;
      if (out[j] === 1) out[j] = d;
      else if (out[j] !== d) return null;
    }
  }
  return out;
}

const norm = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

/** Values of an input (from constants or propagated), or null. */
function vals(s: TensorShape | null | undefined): number[] | null {
  return s?.values ?? null;
}

function withValues(dtype: DType, dims: number[], values: number[] | null): TensorShape {
  return values && values.length <= VALUE_LIMIT ? { dtype, dims, values } : { dtype, dims };
}

/** Output shapes of one node from its input shapes (and values, where known); [] where unknown. */
function inferOutputs(node: IRNode, ins: Array<TensorShape | null>, opset: number): Array<TensorShape | null> {
  const op = node.opType;
  const x = ins[0];
  if (node.domain !== '' && node.domain !== 'com.microsoft') return [];
  if (op === 'Constant') return [];
  if (UNARY.has(op) || MEMORY_SAME_SHAPE.has(op)) return inferElementwise(node, ins);
  if (BINARY.has(op)) return inferBroadcast(node, ins);
  if (op === 'Softmax' || op === 'LogSoftmax' || op === 'BatchNormalization' || NORM7.has(op) || op === 'LpNormalization') return inferSameShape(ins);
  if (op === 'MatMul' || op === 'FusedMatMul') return inferMatMul(ins);
  if (op === 'Gemm') return inferGemm(node, ins);
  if (op === 'Conv' || op === 'MaxPool' || op === 'AveragePool' || op === 'LpPool') return inferConvOrPool(node, ins);
  if (op === 'ConvTranspose') return inferConvTranspose(node, ins);
  if (op === 'GlobalAveragePool' || op === 'GlobalMaxPool' || op === 'GlobalLpPool') return inferGlobalPool(ins);
  if (REDUCE.has(op)) return inferReduce(node, ins);
  if (op === 'Reshape') return inferReshape(node, ins);
  if (op === 'Flatten') return inferFlatten(node, ins);
  if (op === 'Transpose') return inferTranspose(node, ins);
  if (op === 'Squeeze') return inferSqueeze(node, ins, opset);
  if (op === 'Unsqueeze') return inferUnsqueeze(node, ins, opset);
  if (op === 'Concat') return inferConcat(node, ins);
  if (op === 'Shape') return inferShape(node, ins);
  if (op === 'Size') return x ? [withValues('int64', [], [prod(x.dims)])] : [];
  if (op === 'Gather') return inferGather(node, ins);
  if (op === 'Slice') return inferSlice(node, ins, opset);
  if (op === 'Split') return inferSplit(node, ins);
  if (op === 'Expand') return inferExpand(ins);
  if (op === 'Tile') return inferTile(ins);
  if (op === 'Pad') return inferPad(node, ins, opset);
  if (op === 'Resize' || op === 'Upsample') return inferResize(node, ins, opset);
  if (op === 'DepthToSpace' || op === 'SpaceToDepth') return inferDepthSpace(node, ins);
  return [];
}

// Shape rules of inferOutputs, one per operator family.

function inferElementwise(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const op = node.opType;
  const x = ins[0];
  if (!x) return [];
  let dtype = x.dtype;
  if (COMPARISON.has(op)) dtype = 'bool';
  if (op === 'Cast') dtype = dtypeName(intAttr(node, 'to', dtypeCode(x.dtype) ?? 0));
  if (op === 'CastLike' && ins[1]) dtype = ins[1].dtype;
  const keepValues = op === 'Cast' || op === 'Identity' || op === 'CastLike';
  const out = withValues(dtype, [...x.dims], keepValues ? vals(x) : null);
  return op === 'Dropout' ? [out, { dtype: 'bool', dims: [...x.dims] }] : [out];
}

function inferBroadcast(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const op = node.opType;
  const present = ins.filter((_, i) => node.inputs[i]);
  if (present.some((s) => !s)) return [];
  const shapes = present as TensorShape[];
  const dims = broadcast(shapes.map((s) => s.dims));
  if (!dims) return [];
  const dtype = COMPARISON.has(op) ? 'bool' : op === 'Where' ? shapes[1].dtype : shapes[0].dtype;
  return [withValues(dtype, dims, binaryValues(op, shapes, dims))];
}

function inferSameShape(ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  return x ? [{ dtype: x.dtype, dims: [...x.dims] }] : [];
}

function inferMatMul(ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const a = ins[0];
  const b = ins[1];
  if (!a || !b) return [];
  const dims = matmulDims(a.dims, b.dims);
  return dims ? [{ dtype: a.dtype, dims }] : [];
}

function inferGemm(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const a = ins[0];
  const b = ins[1];
  if (!a || !b || a.dims.length !== 2 || b.dims.length !== 2) return [];
  const m = intAttr(node, 'transA', 0) ? a.dims[1] : a.dims[0];
  const n = intAttr(node, 'transB', 0) ? b.dims[0] : b.dims[1];
  return [{ dtype: a.dtype, dims: [m, n] }];
}

function inferConvOrPool(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const op = node.opType;
  const x = ins[0];
  if (!x || x.dims.length < 3) return [];
  const spatial = x.dims.length - 2;
  let kernel = intsAttr(node, 'kernel_shape');
  let channels = x.dims[1];
  if (op === 'Conv') {
    const w = ins[1];
    if (!w) return [];
    kernel ??= w.dims.slice(2);
    channels = w.dims[0];
  }
  if (!kernel || kernel.length !== spatial) return [];
  const outSpatial = convOutput(node, x.dims.slice(2), kernel, op !== 'Conv' && intAttr(node, 'ceil_mode', 0) === 1);
  if (!outSpatial) return [];
  const y: TensorShape = { dtype: x.dtype, dims: [x.dims[0], channels, ...outSpatial] };
  return op === 'MaxPool' ? [y, { dtype: 'int64', dims: [...y.dims] }] : [y];
}

function inferConvTranspose(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  const w = ins[1];
  if (!x || !w || x.dims.length < 3) return [];
  const spatial = x.dims.length - 2;
  const group = intAttr(node, 'group', 1);
  const kernel = intsAttr(node, 'kernel_shape') ?? w.dims.slice(2);
  const strides = intsAttr(node, 'strides') ?? new Array<number>(spatial).fill(1);
  const dil = intsAttr(node, 'dilations') ?? new Array<number>(spatial).fill(1);
  const outPad = intsAttr(node, 'output_padding') ?? new Array<number>(spatial).fill(0);
  const pads = intsAttr(node, 'pads') ?? new Array<number>(2 * spatial).fill(0);
  const given = intsAttr(node, 'output_shape');
  const autoPad = strAttr(node, 'auto_pad', 'NOTSET');
  const outSpatial = x.dims.slice(2).map((d, i) => {
    if (given) return given[given.length - spatial + i];
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return d * strides[i];
    return strides[i] * (d - 1) + outPad[i] + (kernel[i] - 1) * dil[i] + 1 - pads[i] - pads[i + spatial];
  });
  return [{ dtype: x.dtype, dims: [x.dims[0], w.dims[1] * group, ...outSpatial] }];
}

function inferGlobalPool(ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  if (!x || x.dims.length < 2) return [];
  return [{ dtype: x.dtype, dims: [x.dims[0], x.dims[1], ...x.dims.slice(2).map(() => 1)] }];
}

function inferReduce(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const keep = intAttr(node, 'keepdims', 1) === 1;
  let axes = intsAttr(node, 'axes');
  if (!axes && node.inputs[1]) {
    axes = vals(ins[1]);
    if (!axes) return [];
  }
  const r = x.dims.length;
  const noop = intAttr(node, 'noop_with_empty_axes', 0) === 1;
  if (!axes || axes.length === 0) {
    if (noop) return [{ dtype: x.dtype, dims: [...x.dims] }];
    axes = x.dims.map((_, i) => i);
  }
  const set = new Set(axes.map((a) => norm(a, r)));
  const dims: number[] = [];
  x.dims.forEach((d, i) => {
    if (!set.has(i)) dims.push(d);
    else if (keep) dims.push(1);
  });
  return [{ dtype: x.dtype, dims }];
}

function inferReshape(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  const shape = vals(ins[1]);
  if (!x || !shape) return [];
  const allowZero = intAttr(node, 'allowzero', 0) === 1;
  const dims = shape.map((d, i) => (d === 0 && !allowZero ? x.dims[i] : d));
  const known = dims.filter((d) => d !== -1);
  if (dims.length - known.length > 1 || known.some((d) => d === undefined)) return [];
  const total = prod(x.dims);
  const rest = prod(known);
  const full = dims.map((d) => (d === -1 ? (rest === 0 ? 0 : total / rest) : d));
  if (full.some((d) => !Number.isInteger(d) || d < 0)) return [];
  return [withValues(x.dtype, full, vals(x))];
}

function inferFlatten(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const axis = norm(intAttr(node, 'axis', 1), x.dims.length);
  return [withValues(x.dtype, [prod(x.dims, 0, axis), prod(x.dims, axis)], vals(x))];
}

function inferTranspose(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const perm = intsAttr(node, 'perm') ?? x.dims.map((_, i) => x.dims.length - 1 - i);
  return [{ dtype: x.dtype, dims: perm.map((p) => x.dims[p]) }];
}

function inferSqueeze(node: IRNode, ins: Array<TensorShape | null>, opset: number): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const axes = opset >= 13 ? (node.inputs[1] ? vals(ins[1]) : null) : intsAttr(node, 'axes');
  if (node.inputs[1] && !axes && opset >= 13) return [];
  const set = axes ? new Set(axes.map((a) => norm(a, x.dims.length))) : null;
  const dims = x.dims.filter((d, i) => (set ? !set.has(i) : d !== 1));
  return [withValues(x.dtype, dims, vals(x))];
}

function inferUnsqueeze(node: IRNode, ins: Array<TensorShape | null>, opset: number): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const axes = opset >= 13 ? vals(ins[1]) : intsAttr(node, 'axes');
  if (!axes) return [];
  const rank = x.dims.length + axes.length;
  const set = new Set(axes.map((a) => norm(a, rank)));
  const dims: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) dims.push(set.has(i) ? 1 : x.dims[j++]);
  return [withValues(x.dtype, dims, vals(x))];
}

function inferConcat(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const present = ins.filter((_, i) => node.inputs[i]);
  if (present.length === 0 || present.some((s) => !s)) return [];
  const shapes = present as TensorShape[];
  const rank = shapes[0].dims.length;
  const axis = norm(intAttr(node, 'axis', 0), rank);
  const dims = [...shapes[0].dims];
  dims[axis] = shapes.reduce((n, s) => n + s.dims[axis], 0);
  const allVals = rank === 1 && shapes.every((s) => s.values) ? shapes.flatMap((s) => s.values!) : null;
  return [withValues(shapes[0].dtype, dims, allVals)];
}

function inferShape(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const r = x.dims.length;
  const start = Math.min(Math.max(norm(intAttr(node, 'start', 0), r), 0), r);
  const end = Math.min(Math.max(norm(intAttr(node, 'end', r), r), 0), r);
  const v = x.dims.slice(start, Math.max(start, end));
  return [withValues('int64', [v.length], v)];
}

function inferGather(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  const idx = ins[1];
  if (!x || !idx) return [];
  const axis = norm(intAttr(node, 'axis', 0), x.dims.length);
  const dims = [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)];
  let v: number[] | null = null;
  const xv = vals(x);
  const iv = vals(idx);
  if (x.dims.length === 1 && xv && iv) v = iv.map((i) => xv[i < 0 ? i + xv.length : i]);
  return [withValues(x.dtype, dims, v)];
}

function inferSlice(node: IRNode, ins: Array<TensorShape | null>, opset: number): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const r = x.dims.length;
  let starts: number[] | null;
  let ends: number[] | null;
  let axes: number[] | null;
  let steps: number[] | null = null;
  if (opset >= 10) {
    starts = vals(ins[1]);
    ends = vals(ins[2]);
    axes = node.inputs[3] ? vals(ins[3]) : null;
    if (node.inputs[3] && !axes) return [];
    if (node.inputs[4]) {
      steps = vals(ins[4]);
      if (!steps) return [];
    }
  } else {
    starts = intsAttr(node, 'starts');
    ends = intsAttr(node, 'ends');
    axes = intsAttr(node, 'axes');
  }
  if (!starts || !ends) return [];
  const dims = [...x.dims];
  const ranges = x.dims.map((d) => [0, d, 1] as [number, number, number]);
  for (let i = 0; i < starts.length; i++) {
    const a = norm(axes ? axes[i] : i, r);
    const d = x.dims[a];
    const step = steps ? steps[i] : 1;
    if (step === 0) return [];
    const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
    let s = starts[i] < 0 ? starts[i] + d : starts[i];
    let e = ends[i] < 0 ? ends[i] + d : ends[i];
    if (step > 0) {
      s = clamp(s, 0, d);
      e = clamp(e, 0, d);
      dims[a] = Math.max(0, Math.ceil((e - s) / step));
    } else {
      s = clamp(s, -1, d - 1);
      e = clamp(e, -1, d - 1);
      dims[a] = Math.max(0, Math.ceil((s - e) / -step));
    }
    ranges[a] = [s, e, step];
  }
  const xv = vals(x);
  let v: number[] | null = null;
  if (r === 1 && xv) {
    v = [];
    const [s, , step] = ranges[0];
    for (let k = 0; k < dims[0]; k++) v.push(xv[s + k * step]);
  }
  return [withValues(x.dtype, dims, v)];
}

function inferSplit(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const axis = norm(intAttr(node, 'axis', 0), x.dims.length);
  let split = node.inputs[1] ? vals(ins[1]) : intsAttr(node, 'split');
  if (node.inputs[1] && !split) return [];
  const n = node.outputs.length;
  if (!split) {
    const d = x.dims[axis];
    const each = Math.ceil(d / n);
    split = Array.from({ length: n }, (_, i) => Math.max(0, Math.min(each, d - i * each)));
  }
  return split.map((s) => {
    const dims = [...x.dims];
    dims[axis] = s;
    return { dtype: x.dtype, dims };
  });
}

function inferExpand(ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  const shape = vals(ins[1]);
  if (!x || !shape) return [];
  const dims = broadcast([x.dims, shape]);
  return dims ? [{ dtype: x.dtype, dims }] : [];
}

function inferTile(ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const x = ins[0];
  const reps = vals(ins[1]);
  if (!x || !reps || reps.length !== x.dims.length) return [];
  return [{ dtype: x.dtype, dims: x.dims.map((d, i) => d * reps[i]) }];
}

function inferPad(node: IRNode, ins: Array<TensorShape | null>, opset: number): Array<TensorShape | null> {
  const x = ins[0];
  if (!x) return [];
  const pads = opset >= 11 ? vals(ins[1]) : intsAttr(node, 'pads');
  if (!pads) return [];
  const r = x.dims.length;
  let axes = x.dims.map((_, i) => i);
  if (node.inputs[3]) {
    const a = vals(ins[3]);
    if (!a) return [];
    axes = a.map((v) => norm(v, r));
  }
  const dims = [...x.dims];
  axes.forEach((a, i) => (dims[a] += pads[i] + pads[i + axes.length]));
  return [{ dtype: x.dtype, dims }];
}

function inferResize(node: IRNode, ins: Array<TensorShape | null>, opset: number): Array<TensorShape | null> {
  const op = node.opType;
  const x = ins[0];
  if (!x) return [];
  let scales: number[] | null = null;
  let sizes: number[] | null = null;
  if (op === 'Upsample' || opset < 11) scales = intsAttr(node, 'scales') ?? vals(ins[1]);
  else {
    if (node.inputs[3]) sizes = vals(ins[3]);
    if (!sizes && node.inputs[2]) scales = vals(ins[2]);
    if (scales && scales.length === 0) scales = null;
  }
  if (sizes && sizes.length === x.dims.length) return [{ dtype: x.dtype, dims: [...sizes] }];
  if (scales && scales.length === x.dims.length) return [{ dtype: x.dtype, dims: x.dims.map((d, i) => Math.floor(d * scales[i])) }];
  return [];
}

function inferDepthSpace(node: IRNode, ins: Array<TensorShape | null>): Array<TensorShape | null> {
  const op = node.opType;
  const x = ins[0];
  if (!x || x.dims.length !== 4) return [];
  const b = intAttr(node, 'blocksize', 1);
  const [n, c, h, w] = x.dims;
  return [{ dtype: x.dtype, dims: op === 'DepthToSpace' ? [n, c / (b * b), h * b, w * b] : [n, c * b * b, h / b, w / b] }];
}

function binaryValues(op: string, shapes: TensorShape[], dims: number[]): number[] | null {
  if (shapes.length !== 2 || prod(dims) > VALUE_LIMIT || dims.length > 1) return null;
  const a = vals(shapes[0]);
  const b = vals(shapes[1]);
  if (!a || !b) return null;
  const n = prod(dims);
  const at = (v: number[], i: number): number => (v.length === 1 ? v[0] : v[i]);
  const f: Record<string, (x: number, y: number) => number> = {
    Add: (x, y) => x + y,
    Sub: (x, y) => x - y,
    Mul: (x, y) => x * y,
    // Shape arithmetic is integer arithmetic: int64 division truncates.
    Div: (x, y) => (shapes[0].dtype.startsWith('int') ? Math.trunc(x / y) : x / y),
  };
  const fn = f[op];
  if (!fn) return null;
  return Array.from({ length: n }, (_, i) => fn(at(a, i), at(b, i)));
}

function matmulDims(a: number[], b: number[]): number[] | null {
  if (a.length === 0 || b.length === 0) return null;
  const a2 = a.length === 1 ? [1, a[0]] : a;
  const b2 = b.length === 1 ? [b[0], 1] : b;
  if (a2[a2.length - 1] !== b2[b2.length - 2]) return null;
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)]);
  if (!batch) return null;
  const dims = [...batch];
  if (a.length > 1) dims.push(a2[a2.length - 2]);
  if (b.length > 1) dims.push(b2[b2.length - 1]);
  return dims;
}

function convOutput(node: IRNode, input: number[], kernel: number[], ceil: boolean): number[] | null {
  const n = input.length;
  const strides = intsAttr(node, 'strides') ?? new Array<number>(n).fill(1);
  const dil = intsAttr(node, 'dilations') ?? new Array<number>(n).fill(1);
  const pads = intsAttr(node, 'pads') ?? new Array<number>(2 * n).fill(0);
  const autoPad = strAttr(node, 'auto_pad', 'NOTSET');
  return input.map((d, i) => {
    const k = (kernel[i] - 1) * dil[i] + 1;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return Math.ceil(d / strides[i]);
    if (autoPad === 'VALID') return Math.floor((d - k) / strides[i]) + 1;
    const v = (d + pads[i] + pads[i + n] - k) / strides[i];
    return (ceil ? Math.ceil(v) : Math.floor(v)) + 1;
  });
}
