/**
 * Gradient rules: one per ONNX operator type, each written in standard ONNX operators that
 * ONNX Runtime's CPU provider runs (no contrib or training ops).
 *
 * A rule receives the forward node, the gradient of each of its outputs (null where no
 * gradient flows into that output) and which inputs want a gradient, and emits the backward
 * computation through a {@link GraphBuilder}. Forward values (inputs, outputs) are read
 * directly: the gradient graph contains the forward graph, so nothing is recomputed that the
 * forward pass already holds, except the normalisation statistics of LayerNormalization and
 * BatchNormalization, which ONNX does not expose in every opset.
 *
 * Shapes: everything that depends on the batch (or any other size) is computed at run time
 * (`Shape`, `Size`), so one gradient model serves every batch size. Ranks, and the sizes of
 * weights and spatial dimensions that convolution and pooling gradients need for their
 * attributes, come from static shape propagation; a rule that needs one that is unknown
 * throws a {@link UserError} naming the node.
 */
import { UserError } from '../../common/errors';
import type { IRNode } from '../onnx/model';
import type { Attr, GraphBuilder } from './graph-builder';

/** What a rule sees of the node it differentiates. */
export interface GradContext {
  b: GraphBuilder;
  node: IRNode;
  /** Gradient of each output, or null where none flows into it. */
  dy: Array<string | null>;
  /** Which inputs want a gradient (a differentiable slot fed by a tensor that depends on a parameter). */
  wants: boolean[];
  /** Static rank of a tensor; throws where unknown. */
  rank(tensor: string): number;
  /** Static dimensions of a tensor (null for sizes known only at run time); throws where the rank is unknown. */
  dims(tensor: string): Array<number | null>;
  /** Values of a constant input (initializer or Constant output), or undefined. */
  constant(tensor: string): number[] | undefined;
  /** Reduces a gradient of broadcast shape `gDims` to the shape of `x` (see {@link unbroadcast}). */
  unbroadcast(g: string, gDims: Array<number | null>, x: string): string;
  /** Throws a {@link UserError} about this node. */
  fail(why: string): never;
}

/** How one operator type is differentiated. */
export interface GradRule {
  /** Input slots that can carry a gradient; the others are shapes, axes, indices or statistics. */
  differentiable: number[] | 'all';
  /** Output slots whose gradient the rule consumes (default: only the first). */
  outputs?: number[] | 'all';
  /** Emits the backward computation; returns the gradient of each input (null/undefined for none). */
  grad(ctx: GradContext): Array<string | null | undefined>;
}

/** Ops whose outputs never carry a gradient (shape arithmetic, comparisons, constants, indices). */
export const NON_DIFFERENTIABLE_OPS: ReadonlySet<string> = new Set([
  'Shape', 'Size', 'Constant', 'ConstantOfShape', 'Range', 'NonZero', 'ArgMax', 'ArgMin', 'OneHot',
  'Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf',
  'Floor', 'Ceil', 'Round', 'Sign', 'EyeLike', 'RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike',
]);

const dyOf = (c: GradContext): string => {
  const g = c.dy[0];
  if (!g) c.fail('internal: no output gradient');
  return g;
};

const intAttr = (n: IRNode, name: string, dflt: number): number => {
  const v = n.attributes[name];
  return typeof v === 'number' ? v : dflt;
};
const floatAttr = intAttr;
const intsAttr = (n: IRNode, name: string): number[] | undefined => {
  const v = n.attributes[name];
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
};
const stringAttr = (n: IRNode, name: string, dflt: string): string => {
  const v = n.attributes[name];
  return typeof v === 'string' ? v : dflt;
};
const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);
const range = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
const product = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

/** Axes of an op given as an attribute in older opsets and as a constant input in newer ones. */
function axesOf(c: GradContext, inputSlot: number): number[] | undefined {
  const attr = intsAttr(c.node, 'axes');
  if (attr) return attr;
  const name = c.node.inputs[inputSlot];
  if (!name) return undefined;
  const v = c.constant(name);
  if (!v) c.fail(`its axes ("${name}") are computed at run time; the gradient needs them constant`);
  return v;
}

/** Where(mask, dy, 0). */
function masked(c: GradContext, mask: string, g: string): string {
  return c.b.op('Where', [mask, g, c.b.floats([0])]);
}

/** Static spatial dims of a tensor [N, C, spatial...]; fails where unknown. */
function spatial(c: GradContext, t: string, what: string): number[] {
  const d = c.dims(t).slice(2);
  if (d.some((x) => x === null)) c.fail(`the spatial size of its ${what} is not known statically; give the model fixed spatial input sizes`);
  return d as number[];
}

/** Explicit begin/end pads of a Conv/pool node, resolving auto_pad from static sizes. */
function explicitPads(c: GradContext, inSizes: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const n = inSizes.length;
  const autoPad = stringAttr(c.node, 'auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') return intsAttr(c.node, 'pads') ?? new Array<number>(2 * n).fill(0);
  if (autoPad === 'VALID') return new Array<number>(2 * n).fill(0);
  const pads = new Array<number>(2 * n).fill(0);
  for (let i = 0; i < n; i++) {
    const out = Math.ceil(inSizes[i]! / strides[i]!);
    const total = Math.max(0, (out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - inSizes[i]!);
    const small = Math.floor(total / 2);
    pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
    pads[i + n] = total - pads[i]!;
  }
  return pads;
}

interface WindowGeometry {
  kernel: number[];
  strides: number[];
  dilations: number[];
  pads: number[];
  /** ConvTranspose output_padding that maps the output back onto the input's size. */
  outputPadding: number[];
}

/** Geometry of a sliding-window op (Conv, pools) on an input of static spatial size `inSizes`. */
function windowGeometry(c: GradContext, inSizes: number[], kernel: number[]): WindowGeometry {
  const n = inSizes.length;
  const strides = intsAttr(c.node, 'strides') ?? new Array<number>(n).fill(1);
  const dilations = intsAttr(c.node, 'dilations') ?? new Array<number>(n).fill(1);
  const pads = explicitPads(c, inSizes, kernel, strides, dilations);
  const outputPadding = inSizes.map((h, i) => {
    const span = (kernel[i]! - 1) * dilations[i]! + 1;
    const out = Math.floor((h + pads[i]! + pads[i + n]! - span) / strides[i]!) + 1;
    return h - (strides[i]! * (out - 1) + span - pads[i]! - pads[i + n]!);
  });
  return { kernel, strides, dilations, pads, outputPadding };
}

/**
 * Gradient of a grouped convolution's weight: dW[o, i, k] = Σ_n,p dOut[n, o, p] · In[n, i, p·s + k·d − pad].
 * Computed as one Conv over transposed tensors (batch and channel swapped, stride and
 * dilation swapped), then cut to the kernel size. Returns [Cout, Cin/group, kernel...].
 */
function convWeightGrad(
  c: GradContext,
  input: string,
  inChannels: number,
  inSpatial: number[],
  dOut: string,
  group: number,
  g: WindowGeometry,
): string {
  const b = c.b;
  const r = inSpatial.length + 2;
  const cig = inChannels / group;
  // In [N, C, sp] → [N, G, C/G, sp] → [C/G, G, N, sp] → [C/G, G·N, sp]: batch = input channel within the group.
  const grouped = b.op('Reshape', [input, b.ints([-1, group, cig, ...inSpatial])]);
  const swapped = b.transpose(grouped, [2, 1, 0, ...range(3, r + 1)]);
  const x2 = b.op('Reshape', [swapped, b.ints([cig, -1, ...inSpatial])]);
  // dOut [N, O, sp'] → [O, N, sp']: the "weight" of group g reads that group's N channels.
  const w2 = b.transpose(dOut, [1, 0, ...range(2, r)]);
  const full = b.op('Conv', [x2, w2], [
    { name: 'group', i: group },
    { name: 'strides', ints: g.dilations },
    { name: 'dilations', ints: g.strides },
    { name: 'pads', ints: g.pads },
  ]);
  const oriented = b.transpose(full, [1, 0, ...range(2, r)]);
  return b.op('Slice', [oriented, b.ints(g.kernel.map(() => 0)), b.ints(g.kernel), b.ints(range(2, r))]);
}

/** dX of a ConvTranspose-shaped adjoint (Conv's input gradient, pools' scatter). */
function convTranspose(c: GradContext, g: string, w: string, group: number, geo: WindowGeometry): string {
  return c.b.op('ConvTranspose', [g, w], [
    { name: 'group', i: group },
    { name: 'strides', ints: geo.strides },
    { name: 'dilations', ints: geo.dilations },
    { name: 'pads', ints: geo.pads },
    { name: 'output_padding', ints: geo.outputPadding },
  ]);
}

/** Sums a flat gradient into positions of a zero tensor shaped like `like` (indices into its flattened form). */
function scatterFlat(c: GradContext, like: string, positions: string, values: string, duplicates: boolean): string {
  const b = c.b;
  if (duplicates && b.opset < 16) c.fail('its gradient adds into repeated positions, which needs ScatterElements with reduction (opset 16 or later); re-export the model with opset ≥ 16');
  const flatShape = b.op('Reshape', [b.op('Size', [like]), b.ints([1])]);
  const zeros = b.op('ConstantOfShape', [flatShape], [{ name: 'value', t: b.floatTensor('', [0], [1]) }]);
  const attrs: Attr[] = [{ name: 'axis', i: 0 }];
  if (duplicates) attrs.push({ name: 'reduction', s: 'add' });
  const flat = b.op('ScatterElements', [zeros, b.op('Reshape', [positions, b.ints([-1])]), b.op('Reshape', [values, b.ints([-1])])], attrs);
  return b.reshapeLike(flat, like);
}

/** Flat positions of every element of `x`, shaped like `x` (int64). */
function positionsOf(c: GradContext, x: string): string {
  const b = c.b;
  return b.reshapeLike(b.op('Range', [b.int(0), b.op('Size', [x]), b.int(1)]), x);
}

/** Reshape-like ops: the gradient is the output gradient in the input's shape. */
const reshapeRule: GradRule = { differentiable: [0], grad: (c) => [c.b.reshapeLike(dyOf(c), c.node.inputs[0]!)] };

/** Elementwise unary op whose derivative is f(x, y, dy). */
const unary = (f: (c: GradContext, x: string, y: string, g: string) => string): GradRule => ({
  differentiable: [0],
  grad: (c) => [f(c, c.node.inputs[0]!, c.node.outputs[0]!, dyOf(c))],
});

/** Binary broadcast op: each gradient is unbroadcast to its operand. */
const binary = (fa: ((c: GradContext, g: string) => string) | null, fb: ((c: GradContext, g: string) => string) | null): GradRule => ({
  differentiable: 'all',
  grad: (c) => {
    const g = dyOf(c);
    const out = c.dims(c.node.outputs[0]!);
    const [a, bIn] = c.node.inputs as [string, string];
    return [
      c.wants[0] && fa ? c.unbroadcast(fa(c, g), out, a) : null,
      c.wants[1] && fb ? c.unbroadcast(fb(c, g), out, bIn) : null,
    ];
  },
});

/** Swaps the last two axes of a tensor of rank r. */
const swapLast = (c: GradContext, x: string, r: number): string => c.b.transpose(x, [...range(0, r - 2), r - 1, r - 2]);

const SQRT_2 = Math.SQRT2;
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);
const ONE_OVER_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/** Variadic broadcast ops: each input's gradient is f(input) unbroadcast to its shape. */
const variadic = (f: (c: GradContext, g: string, x: string) => string): GradRule => ({
  differentiable: 'all',
  grad: (c) => {
    const g = dyOf(c);
    const out = c.dims(c.node.outputs[0]!);
    return c.node.inputs.map((x, i) => (c.wants[i] ? c.unbroadcast(f(c, g, x), out, x) : null));
  },
});

/** Max/Min: the gradient goes to the inputs equal to the result (to each of them on ties). */
const selecting = variadic((c, g, x) => c.b.mul(g, c.b.op('Cast', [c.b.op('Equal', [x, c.node.outputs[0]!])], [{ name: 'to', i: c.b.floatCode }])));

/** Gradient rules by operator type (default ONNX domain). */
export const GRAD_RULES: Readonly<Record<string, GradRule>> = {
  Identity: { differentiable: [0], grad: (c) => [dyOf(c)] },
  Add: binary((_c, g) => g, (_c, g) => g),
  Sub: binary((_c, g) => g, (c, g) => c.b.neg(g)),
  Mul: binary((c, g) => c.b.mul(g, c.node.inputs[1]!), (c, g) => c.b.mul(g, c.node.inputs[0]!)),
  Div: binary(
    (c, g) => c.b.div(g, c.node.inputs[1]!),
    (c, g) => c.b.neg(c.b.mul(g, c.b.div(c.node.outputs[0]!, c.node.inputs[1]!))),
  ),
  Pow: binary(
    (c, g) => {
      const [x, e] = c.node.inputs as [string, string];
      const b = c.b;
      // The exponent may be of another type (an int64 constant, say): compute in the gradient's type.
      const exponent = b.op('Cast', [e], [{ name: 'to', i: b.floatCode }]);
      return b.mul(g, b.mul(exponent, b.op('Pow', [x, b.sub(exponent, b.floats([1]))])));
    },
    (c, g) => c.b.mul(g, c.b.mul(c.node.outputs[0]!, c.b.op('Log', [c.node.inputs[0]!]))),
  ),
  Neg: unary((c, _x, _y, g) => c.b.neg(g)),
  Sum: variadic((_c, g) => g),
  Mean: variadic((c, g) => c.b.mul(g, c.b.floats([1 / c.node.inputs.length]))),
  Max: selecting,
  Min: selecting,
  Softplus: unary((c, x, _y, g) => c.b.mul(g, c.b.op('Sigmoid', [x]))),
  Abs: unary((c, x, _y, g) => c.b.mul(g, c.b.op('Sign', [x]))),
  Reciprocal: unary((c, _x, y, g) => c.b.neg(c.b.mul(g, c.b.mul(y, y)))),
  LeakyRelu: unary((c, x, _y, g) => {
    const b = c.b;
    return b.op('Where', [b.op('Greater', [x, b.floats([0])]), g, b.mul(g, b.floats([floatAttr(c.node, 'alpha', 0.01)]))]);
  }),
  Cast: {
    differentiable: [0],
    grad: (c) => {
      // Only casts within the gradient's float type carry a gradient (a float32 → float32 no-op
      // left by an exporter); a float cast to an integer type has no outputs that require one.
      const to = intAttr(c.node, 'to', 0);
      if (to !== c.b.floatCode) c.fail('only a Cast to the parameters’ own float type is differentiated');
      return [dyOf(c)];
    },
  },
  Dropout: {
    differentiable: [0],
    grad: (c) => {
      // Inference-mode Dropout is the identity; training mode would need its random mask.
      const mode = c.node.inputs[2];
      if (mode && (c.constant(mode) ?? [1])[0] !== 0) c.fail('only Dropout in inference mode (no training_mode, or a constant false) is differentiated');
      return [dyOf(c)];
    },
  },
  Where: {
    differentiable: [1, 2],
    grad: (c) => {
      const b = c.b;
      const [cond, x, y] = c.node.inputs as [string, string, string];
      const g = dyOf(c);
      const out = c.dims(c.node.outputs[0]!);
      const zero = b.floats([0]);
      return [
        null,
        c.wants[1] ? c.unbroadcast(b.op('Where', [cond, g, zero]), out, x) : null,
        c.wants[2] ? c.unbroadcast(b.op('Where', [cond, zero, g]), out, y) : null,
      ];
    },
  },
  Exp: unary((c, _x, y, g) => c.b.mul(g, y)),
  Log: unary((c, x, _y, g) => c.b.div(g, x)),
  Sqrt: unary((c, _x, y, g) => c.b.div(c.b.mul(g, c.b.floats([0.5])), y)),
  Relu: unary((c, x, _y, g) => masked(c, c.b.op('Greater', [x, c.b.floats([0])]), g)),
  Tanh: unary((c, _x, y, g) => c.b.mul(g, c.b.sub(c.b.floats([1]), c.b.mul(y, y)))),
  Sigmoid: unary((c, _x, y, g) => c.b.mul(g, c.b.mul(y, c.b.sub(c.b.floats([1]), y)))),
  Erf: unary((c, x, _y, g) => {
    const b = c.b;
    return b.mul(g, b.mul(b.floats([TWO_OVER_SQRT_PI]), b.op('Exp', [b.neg(b.mul(x, x))])));
  }),
  Gelu: unary((c, x, _y, g) => {
    const b = c.b;
    const approximate = stringAttr(c.node, 'approximate', 'none');
    if (approximate === 'tanh') {
      // y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³): y' = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)
      const x2 = b.mul(x, x);
      const u = b.mul(b.floats([SQRT_2_OVER_PI]), b.add(x, b.mul(b.floats([GELU_CUBIC]), b.mul(x2, x))));
      const t = b.op('Tanh', [u]);
      const du = b.mul(b.floats([SQRT_2_OVER_PI]), b.add(b.floats([1]), b.mul(b.floats([3 * GELU_CUBIC]), x2)));
      const slope = b.add(b.mul(b.floats([0.5]), b.add(b.floats([1]), t)), b.mul(b.mul(b.floats([0.5]), x), b.mul(b.sub(b.floats([1]), b.mul(t, t)), du)));
      return b.mul(g, slope);
    }
    if (approximate !== 'none') c.fail(`Gelu approximate="${approximate}" is not an ONNX mode`);
    // d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
    const cdf = b.mul(b.floats([0.5]), b.add(b.floats([1]), b.op('Erf', [b.div(x, b.floats([SQRT_2]))])));
    const pdf = b.mul(b.floats([ONE_OVER_SQRT_2PI]), b.op('Exp', [b.mul(b.floats([-0.5]), b.mul(x, x))]));
    return b.mul(g, b.add(cdf, b.mul(x, pdf)));
  }),
  HardSigmoid: unary((c, x, _y, g) => {
    const b = c.b;
    const alpha = floatAttr(c.node, 'alpha', 0.2);
    const z = b.add(b.mul(x, b.floats([alpha])), b.floats([floatAttr(c.node, 'beta', 0.5)]));
    const inside = b.op('And', [b.op('Greater', [z, b.floats([0])]), b.op('Less', [z, b.floats([1])])]);
    return masked(c, inside, b.mul(g, b.floats([alpha])));
  }),
  HardSwish: unary((c, x, _y, g) => {
    // y = x·clip(x/6 + 1/2, 0, 1): slope 0 below −3, 1 above 3, x/3 + 1/2 between.
    const b = c.b;
    const mid = b.add(b.div(x, b.floats([3])), b.floats([0.5]));
    const upper = b.op('Where', [b.op('Greater', [x, b.floats([3])]), b.floats([1]), mid]);
    const slope = b.op('Where', [b.op('Less', [x, b.floats([-3])]), b.floats([0]), upper]);
    return b.mul(g, slope);
  }),
  Clip: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const [x, lo, hi] = c.node.inputs;
      let mask: string | null = null;
      const and = (m: string): void => {
        mask = mask ? b.op('And', [mask, m]) : m;
      };
      // Not(Less)/Not(Greater) rather than GreaterOrEqual/LessOrEqual, which need opset 12.
      if (lo) and(b.op('Not', [b.op('Less', [x!, lo])]));
      if (hi) and(b.op('Not', [b.op('Greater', [x!, hi])]));
      return [mask ? masked(c, mask, dyOf(c)) : dyOf(c)];
    },
  },
  Softmax: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const y = c.node.outputs[0]!;
      const g = dyOf(c);
      const axis = softmaxAxis(c);
      const s = b.reduce('ReduceSum', b.mul(g, y), [axis], true);
      return [b.mul(y, b.sub(g, s))];
    },
  },
  LogSoftmax: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const y = c.node.outputs[0]!;
      const g = dyOf(c);
      return [b.sub(g, b.mul(b.op('Exp', [y]), b.reduce('ReduceSum', g, [softmaxAxis(c)], true)))];
    },
  },
  Reshape: reshapeRule,
  Flatten: reshapeRule,
  Squeeze: reshapeRule,
  Unsqueeze: reshapeRule,
  Expand: { differentiable: [0], grad: (c) => [c.unbroadcast(dyOf(c), c.dims(c.node.outputs[0]!), c.node.inputs[0]!)] },
  Transpose: {
    differentiable: [0],
    grad: (c) => {
      const r = c.rank(c.node.inputs[0]!);
      const perm = intsAttr(c.node, 'perm') ?? range(0, r).reverse();
      const inverse = new Array<number>(r);
      perm.forEach((p, i) => (inverse[p] = i));
      return [c.b.transpose(dyOf(c), inverse)];
    },
  },
  Concat: {
    differentiable: 'all',
    grad: (c) => {
      const b = c.b;
      const ins = c.node.inputs as string[];
      const axis = normAxis(intAttr(c.node, 'axis', 0), c.rank(c.node.outputs[0]!));
      const known = ins.map((t) => c.dims(t)[axis] ?? null);
      const sizes = known.every((d) => d !== null)
        ? b.ints(known as number[])
        : b.op('Concat', ins.map((t) => b.op('Gather', [b.shape(t), b.ints([axis])])), [{ name: 'axis', i: 0 }]);
      if (b.opset >= 13) return b.opN('Split', [dyOf(c), sizes], ins.length, [{ name: 'axis', i: axis }]);
      if (!known.every((d) => d !== null)) c.fail('before opset 13 its inputs need static sizes along the axis');
      return b.opN('Split', [dyOf(c)], ins.length, [{ name: 'axis', i: axis }, { name: 'split', ints: known as number[] }]);
    },
  },
  Split: {
    differentiable: [0],
    outputs: 'all',
    grad: (c) => {
      const b = c.b;
      const axis = normAxis(intAttr(c.node, 'axis', 0), c.rank(c.node.inputs[0]!));
      const parts = c.node.outputs.map((y, i) => c.dy[i] ?? b.zerosLike(y));
      return [b.op('Concat', parts, [{ name: 'axis', i: axis }])];
    },
  },
  Slice: {
    differentiable: [0],
    grad: (c) => {
      // Slice the element positions the same way, then scatter the gradient back to them.
      const x = c.node.inputs[0]!;
      const picked = c.b.op('Slice', [positionsOf(c, x), ...c.node.inputs.slice(1)]);
      return [scatterFlat(c, x, picked, dyOf(c), false)];
    },
  },
  Gather: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const [data, indices] = c.node.inputs as [string, string];
      const axis = normAxis(intAttr(c.node, 'axis', 0), c.rank(data));
      if (b.opset >= 16) {
        // Gather the element positions the same way; repeated indices add up in the scatter.
        const picked = b.op('Gather', [positionsOf(c, data), indices], [{ name: 'axis', i: axis }]);
        return [scatterFlat(c, data, picked, dyOf(c), true)];
      }
      // Before opset 16 (no scatter-add): rows of an embedding table via a one-hot MatMul.
      const d = c.dims(data);
      if (axis !== 0 || d.some((x) => x === null)) c.fail('before opset 16 only Gather on axis 0 of a fixed-size table is differentiated');
      const rows = d[0] as number;
      const rowSize = product(d.slice(1) as number[]);
      const flatIdx = b.op('Reshape', [indices, b.ints([-1, 1])]);
      const wrapped = b.op('Mod', [b.add(b.op('Cast', [flatIdx], [{ name: 'to', i: 7 }]), b.int(rows)), b.int(rows)]);
      const oneHot = b.op('Cast', [b.op('Equal', [wrapped, b.op('Range', [b.int(0), b.int(rows), b.int(1)])])], [{ name: 'to', i: b.floatCode }]);
      const g2 = b.op('Reshape', [dyOf(c), b.ints([-1, rowSize])]);
      return [b.reshapeLike(b.op('MatMul', [b.transpose(oneHot, [1, 0]), g2]), data)];
    },
  },
  ReduceSum: { differentiable: [0], grad: (c) => [reduceGrad(c, false)] },
  ReduceMean: { differentiable: [0], grad: (c) => [reduceGrad(c, true)] },
  GlobalAveragePool: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const x = c.node.inputs[0]!;
      const scale = b.div(b.sizeAsFloat(c.node.outputs[0]!), b.sizeAsFloat(x));
      return [b.mul(b.op('Expand', [dyOf(c), b.shape(x)]), scale)];
    },
  },
  MatMul: {
    differentiable: 'all',
    grad: (c) => {
      const b = c.b;
      const [a, w] = c.node.inputs as [string, string];
      const ra = c.rank(a);
      const rw = c.rank(w);
      let g = dyOf(c);
      // 1-D operands are matrices with a unit axis that MatMul drops from the output.
      if (rw === 1) g = b.unsqueeze(g, [-1]);
      if (ra === 1) g = b.unsqueeze(g, [-2]);
      const a2 = ra === 1 ? b.unsqueeze(a, [0]) : a;
      const w2 = rw === 1 ? b.unsqueeze(w, [1]) : w;
      const rg = Math.max(ra, rw, 2);
      const gDims = new Array<number | null>(rg).fill(null);
      // A 1-D operand's gradient is a matrix with its unit axis: sum the batch axes, drop the unit axis.
      const toOperand = (grad: string, x: string, rx: number): string => {
        if (rx > 1) return c.unbroadcast(grad, gDims, x);
        const summed = rg > 2 ? b.reduce('ReduceSum', grad, range(0, rg - 2), true) : grad;
        return b.reshapeLike(summed, x);
      };
      return [
        c.wants[0] ? toOperand(b.op('MatMul', [g, swapLast(c, w2, Math.max(rw, 2))]), a, ra) : null,
        c.wants[1] ? toOperand(b.op('MatMul', [swapLast(c, a2, Math.max(ra, 2)), g]), w, rw) : null,
      ];
    },
  },
  Gemm: {
    differentiable: 'all',
    grad: (c) => {
      const b = c.b;
      const [a, w, bias] = c.node.inputs as [string, string, string | undefined];
      const g = dyOf(c);
      const alpha = floatAttr(c.node, 'alpha', 1);
      const beta = floatAttr(c.node, 'beta', 1);
      const ta = intAttr(c.node, 'transA', 0);
      const tb = intAttr(c.node, 'transB', 0);
      const gemm = (x: string, y: string, tx: number, ty: number): string =>
        b.op('Gemm', [x, y], [{ name: 'alpha', f: alpha }, { name: 'transA', i: tx }, { name: 'transB', i: ty }]);
      return [
        c.wants[0] ? (ta ? gemm(w, g, tb, 1) : gemm(g, w, 0, tb ? 0 : 1)) : null,
        c.wants[1] ? (tb ? gemm(g, a, 1, ta) : gemm(a, g, ta ? 0 : 1, 0)) : null,
        c.wants[2] && bias ? c.unbroadcast(beta === 1 ? g : b.mul(g, b.floats([beta])), c.dims(c.node.outputs[0]!), bias) : null,
      ];
    },
  },
  LayerNormalization: {
    differentiable: [0, 1, 2],
    grad: (c) => {
      const b = c.b;
      const [x, scale, bias] = c.node.inputs as [string, string, string | undefined];
      const r = c.rank(x);
      const axes = range(normAxis(intAttr(c.node, 'axis', -1), r), r);
      const eps = floatAttr(c.node, 'epsilon', 1e-5);
      const g = dyOf(c);
      const mean = (t: string): string => b.reduce('ReduceMean', t, axes, true);
      const centered = b.sub(x, mean(x));
      const rstd = b.div(b.floats([1]), b.op('Sqrt', [b.add(mean(b.mul(centered, centered)), b.floats([eps]))]));
      const xhat = b.mul(centered, rstd);
      const outDims = c.dims(c.node.outputs[0]!);
      let dx: string | null = null;
      if (c.wants[0]) {
        const dxhat = b.mul(g, scale);
        dx = b.mul(rstd, b.sub(b.sub(dxhat, mean(dxhat)), b.mul(xhat, mean(b.mul(dxhat, xhat)))));
      }
      return [
        dx,
        c.wants[1] ? c.unbroadcast(b.mul(g, xhat), outDims, scale) : null,
        c.wants[2] && bias ? c.unbroadcast(g, outDims, bias) : null,
      ];
    },
  },
  BatchNormalization: {
    differentiable: [0, 1, 2],
    grad: (c) => {
      // Training mode is an attribute from opset 14 and, before it, the presence of the
      // running-statistics outputs.
      if (intAttr(c.node, 'training_mode', 0) !== 0 || c.node.outputs.filter(Boolean).length > 1) {
        c.fail('only BatchNormalization with inference statistics (training_mode=0, one output) is differentiated');
      }
      const b = c.b;
      const [x, scale, , mean, variance] = c.node.inputs as [string, string, string, string, string];
      const r = c.rank(x);
      const perChannel = (t: string): string => (r > 2 ? b.unsqueeze(t, range(1, r - 1)) : t);
      const rstd = b.div(b.floats([1]), b.op('Sqrt', [b.add(variance, b.floats([floatAttr(c.node, 'epsilon', 1e-5)]))]));
      const g = dyOf(c);
      const notChannel = [0, ...range(2, r)];
      return [
        c.wants[0] ? b.mul(g, perChannel(b.mul(scale, rstd))) : null,
        c.wants[1] ? b.reduce('ReduceSum', b.mul(g, b.mul(b.sub(x, perChannel(mean)), perChannel(rstd))), notChannel, false) : null,
        c.wants[2] ? b.reduce('ReduceSum', g, notChannel, false) : null,
      ];
    },
  },
  Conv: {
    differentiable: 'all',
    grad: (c) => {
      const b = c.b;
      const [x, w, bias] = c.node.inputs as [string, string, string | undefined];
      const xs = spatial(c, x, 'input');
      const wd = c.dims(w);
      if (wd.some((d) => d === null)) c.fail('its weight shape is not known statically');
      const kernel = (wd as number[]).slice(2);
      const group = intAttr(c.node, 'group', 1);
      const geo = windowGeometry(c, xs, kernel);
      const g = dyOf(c);
      const channels = (wd[1] as number) * group;
      return [
        c.wants[0] ? convTranspose(c, g, w, group, geo) : null,
        c.wants[1] ? convWeightGrad(c, x, channels, xs, g, group, geo) : null,
        c.wants[2] && bias ? b.reduce('ReduceSum', g, [0, ...range(2, xs.length + 2)], false) : null,
      ];
    },
  },
  ConvTranspose: {
    differentiable: 'all',
    grad: (c) => {
      const b = c.b;
      const [x, w, bias] = c.node.inputs as [string, string, string | undefined];
      if (stringAttr(c.node, 'auto_pad', 'NOTSET') !== 'NOTSET' || c.node.attributes['output_shape'] !== undefined) {
        c.fail('only ConvTranspose with explicit pads (no auto_pad, no output_shape) is differentiated');
      }
      const y = c.node.outputs[0]!;
      const ys = spatial(c, y, 'output');
      const wd = c.dims(w);
      if (wd.some((d) => d === null)) c.fail('its weight shape is not known statically');
      const kernel = (wd as number[]).slice(2);
      const group = intAttr(c.node, 'group', 1);
      const n = kernel.length;
      const strides = intsAttr(c.node, 'strides') ?? new Array<number>(n).fill(1);
      const dilations = intsAttr(c.node, 'dilations') ?? new Array<number>(n).fill(1);
      const pads = intsAttr(c.node, 'pads') ?? new Array<number>(2 * n).fill(0);
      const g = dyOf(c);
      // The adjoint of ConvTranspose is Conv with the same geometry; the weight gradient is a
      // convolution weight gradient with the roles of input and output gradient exchanged.
      const geo: WindowGeometry = { kernel, strides, dilations, pads, outputPadding: [] };
      return [
        c.wants[0]
          ? b.op('Conv', [g, w], [
              { name: 'group', i: group },
              { name: 'strides', ints: strides },
              { name: 'dilations', ints: dilations },
              { name: 'pads', ints: pads },
            ])
          : null,
        c.wants[1] ? convWeightGrad(c, g, (wd[1] as number) * group, ys, x, group, geo) : null,
        c.wants[2] && bias ? b.reduce('ReduceSum', g, [0, ...range(2, n + 2)], false) : null,
      ];
    },
  },
  MaxPool: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const x = c.node.inputs[0]!;
      if (intAttr(c.node, 'storage_order', 0) !== 0) c.fail('only MaxPool with storage_order=0 is differentiated');
      const kernel = intsAttr(c.node, 'kernel_shape') ?? c.fail('it has no kernel_shape');
      const strides = intsAttr(c.node, 'strides') ?? kernel.map(() => 1);
      const overlapping = kernel.some((k, i) => k > strides[i]!);
      // A second MaxPool with the same attributes yields the flat position of every maximum.
      const attrs: Attr[] = [];
      for (const [name, v] of Object.entries(c.node.attributes)) {
        if (typeof v === 'number') attrs.push({ name, i: v });
        else if (typeof v === 'string') attrs.push({ name, s: v });
        else if (Array.isArray(v) && v.every((e) => typeof e === 'number')) attrs.push({ name, ints: v as number[] });
      }
      const [, where] = b.opN('MaxPool', [x], 2, attrs) as [string, string];
      return [scatterFlat(c, x, where, dyOf(c), overlapping)];
    },
  },
  AveragePool: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const x = c.node.inputs[0]!;
      if (intAttr(c.node, 'ceil_mode', 0) !== 0) c.fail('only AveragePool with ceil_mode=0 is differentiated');
      const xs = spatial(c, x, 'input');
      const channels = c.dims(x)[1] ?? c.fail('its channel count is not known statically');
      const kernel = intsAttr(c.node, 'kernel_shape') ?? c.fail('it has no kernel_shape');
      const geo = windowGeometry(c, xs, kernel);
      const window = product(kernel);
      const padded = geo.pads.some((p) => p !== 0);
      let g = dyOf(c);
      if (padded && intAttr(c.node, 'count_include_pad', 0) === 0) {
        // Each output divided by its own count of in-bounds elements: recover the counts by
        // pooling ones with padding counted in (fraction of the window that is in bounds).
        const ones = b.op('ConstantOfShape', [b.shape(x)], [{ name: 'value', t: b.floatTensor('', [1], [1]) }]);
        const attrs: Attr[] = [
          { name: 'kernel_shape', ints: kernel },
          { name: 'strides', ints: geo.strides },
          { name: 'pads', ints: geo.pads },
          { name: 'count_include_pad', i: 1 },
        ];
        g = b.div(g, b.mul(b.op('AveragePool', [ones], attrs), b.floats([window])));
      } else {
        g = b.div(g, b.floats([window]));
      }
      const ones = b.floats(new Array<number>(channels * window).fill(1), [channels, 1, ...kernel]);
      return [convTranspose(c, g, ones, channels, geo)];
    },
  },
  Resize: {
    differentiable: [0],
    grad: (c) => {
      const b = c.b;
      const x = c.node.inputs[0]!;
      if (stringAttr(c.node, 'mode', 'nearest') !== 'nearest') c.fail('only Resize with mode="nearest" is differentiated');
      const xd = c.dims(x);
      const yd = c.dims(c.node.outputs[0]!);
      if (xd.slice(2).some((d) => d === null) || yd.slice(2).some((d) => d === null) || xd.length < 3) c.fail('its spatial sizes are not known statically');
      const factors = xd.slice(2).map((d, i) => (yd[i + 2] as number) / (d as number));
      const ctm = stringAttr(c.node, 'coordinate_transformation_mode', 'half_pixel');
      const nm = stringAttr(c.node, 'nearest_mode', 'round_prefer_floor');
      const blocks = (ctm === 'asymmetric' && nm === 'floor') || (ctm === 'half_pixel' && (nm === 'round_prefer_floor' || nm === 'round_prefer_ceil'));
      if (!factors.every((f) => Number.isInteger(f) && f >= 1) || !blocks || xd[0] !== yd[0] || xd[1] !== yd[1]) {
        c.fail('only nearest Resize that upsamples spatial axes by integer factors (each input element copied into a block) is differentiated');
      }
      // Each input element was copied into a factor-sized block: its gradient is the block's sum.
      const pooled = b.op('AveragePool', [dyOf(c)], [
        { name: 'kernel_shape', ints: factors },
        { name: 'strides', ints: factors },
      ]);
      return [b.mul(pooled, b.floats([product(factors)]))];
    },
  },
};

/**
 * The axis of Softmax/LogSoftmax. Before opset 13 they worked on the input flattened to 2-D
 * at `axis` (default 1), which is a per-axis softmax only when the axis is the last one.
 */
function softmaxAxis(c: GradContext): number {
  const r = c.rank(c.node.outputs[0]!);
  if (c.b.opset >= 13) return normAxis(intAttr(c.node, 'axis', -1), r);
  const axis = normAxis(intAttr(c.node, 'axis', 1), r);
  if (axis !== r - 1) c.fail('before opset 13 only a softmax over the last axis is differentiated');
  return axis;
}

/** dX of ReduceSum / ReduceMean: the output gradient broadcast back over the reduced axes. */
function reduceGrad(c: GradContext, mean: boolean): string {
  const b = c.b;
  const x = c.node.inputs[0]!;
  const g = dyOf(c);
  const axes = axesOf(c, 1) ?? [];
  const keep = intAttr(c.node, 'keepdims', 1) === 1;
  if (axes.length === 0 && intAttr(c.node, 'noop_with_empty_axes', 0) === 1) return g;
  // Unsqueeze needs the axes sorted and non-negative, hence the rank unless they already are.
  const nonNegative = axes.length > 0 && axes.every((a) => a >= 0);
  const r = keep || nonNegative ? null : c.rank(x);
  const normalized = (r === null ? [...axes] : axes.length === 0 ? range(0, r) : axes.map((a) => normAxis(a, r))).sort((p, q) => p - q);
  const kept = keep ? g : b.unsqueeze(g, normalized);
  const expanded = b.op('Expand', [kept, b.shape(x)]);
  return mean ? b.mul(expanded, b.div(b.sizeAsFloat(c.node.outputs[0]!), b.sizeAsFloat(x))) : expanded;
}

/** The operator types (default ONNX domain) that can sit between a parameter and the loss. */
export const SUPPORTED_OPS: readonly string[] = Object.keys(GRAD_RULES).sort();

/** Fails a rule with the node named; used by the transformation. */
export function nodeError(modelName: string, node: IRNode, why: string): UserError {
  return new UserError(`${modelName}: cannot differentiate node "${node.name}" (${node.opType}): ${why}`);
}
