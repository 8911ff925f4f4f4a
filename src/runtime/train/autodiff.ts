/**
 * Reverse-mode differentiation of ONNX graphs into standard ONNX operators.
 *
 * onnxruntime-node has no training API, and the gradient ops of ONNX Runtime's training
 * build (ReluGrad, SoftmaxGrad, InPlaceAccumulator, `Gradient`) are not registered in it, so
 * the backward pass is built here as an ordinary inference graph: {@link buildGradientModel}
 * returns a model whose graph holds the forward graph unchanged plus, for every trainable
 * parameter (and every input asked for), a graph output with the gradient of the loss with
 * respect to it. Any ONNX Runtime session (CPU, WebGPU, CUDA) runs it.
 *
 * Parameters: every float32/float64 initializer, and every float tensor of rank ≥ 1 held by a
 * Constant node (paddle2onnx and other exporters keep weights there; such weights become
 * initializers of the generated model), unless frozen by name or pattern. Scalar constants
 * stay constants. Candidates from which no differentiable path leads to the target
 * (BatchNormalization statistics, Resize scales, Clip bounds) are reported as `untrained`.
 *
 * Approach. Tensors that depend on a trainable parameter (or a differentiated input) are
 * found forward; nodes between them and the loss are then visited in reverse topological
 * order, and each node's rule in {@link GRAD_RULES} turns the gradients of its outputs into
 * gradients of its inputs. A tensor read by several nodes sums their contributions (`Sum`).
 * The seed is a tensor of ones shaped like the loss (so a non-scalar loss is summed), or,
 * for a pipeline stage's backward, the gradients of chosen outputs given as graph inputs
 * named `<output>_grad` ("activation gradients" from the next stage).
 *
 * Supported operators ({@link SUPPORTED_OPS}): Add, Sub, Mul, Div, Pow (with broadcasting),
 * MatMul (batched, 1-D operands), Gemm (alpha, beta, transA, transB), Where, Identity,
 * Cast (to the same float type), Dropout (inference), Neg, Abs, Reciprocal, Exp, Log, Sqrt,
 * Sum, Mean, Max, Min (variadic, broadcasting; ties in Max/Min give each tied input the
 * gradient), Relu, LeakyRelu, Softplus, Tanh, Sigmoid, Erf, Gelu (exact and tanh),
 * HardSigmoid, HardSwish, Clip, Softmax,
 * LogSoftmax (any axis), Reshape, Flatten, Squeeze, Unsqueeze, Expand, Transpose, Concat,
 * Split, Slice (any steps), Gather (any axis; repeated indices add up), ReduceSum,
 * ReduceMean, GlobalAveragePool, LayerNormalization, BatchNormalization (inference
 * statistics), Conv and ConvTranspose (groups, strides, pads, dilations), MaxPool,
 * AveragePool, Resize (nearest, integer upsampling). Ops in {@link NON_DIFFERENTIABLE_OPS}
 * (Shape, Constant, comparisons, …) may appear anywhere: their outputs carry no gradient,
 * as do integer tensors and the shape/axes/indices inputs of the ops above.
 *
 * Shapes: sizes are computed at run time (`Shape`, `Size`), so one gradient model serves
 * every batch size; ranks and the few sizes that become attributes (convolution and pooling
 * geometry, embedding table sizes before opset 16) come from the model's static shape
 * propagation, run at two values of every symbolic dimension so that no batch size is baked
 * in (where it stops, elementwise ops and reductions still give ranks). A CNN with free
 * spatial sizes needs them pinned ({@link GradientOptions.dims}); the batch stays free.
 * Broadcast gradients are reduced by {@link unbroadcast}. Decided against: a dry ONNX Runtime
 * run recording every intermediate shape, which would bake all of one input's sizes (the
 * batch included) into the gradient model and make this pure transformation need a session.
 *
 * Limits: opset 11 or later (before 13, Softmax only over the last axis and Concat only with
 * static sizes along its axis); one floating-point element type (float32 or
 * float64) for parameters and loss; no control flow (If/Loop/Scan) on the gradient path;
 * Gather and overlapping MaxPool windows need opset 16 (ScatterElements with reduction)
 * except for axis-0 embedding tables; gradients of secondary outputs (LayerNormalization's
 * Mean, MaxPool's Indices) are not propagated. A model with an operator outside the set on the
 * path from a parameter to the loss is refused with one {@link UserError} that lists every
 * such operator type and node, before anything runs.
 */
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import type { DType } from '../onnx/dtypes';
import { constantValues, decodeModelProto, encodeModel, estimateCosts, parseModel, type IRNode, type ModelIR } from '../onnx/model';
import { GRAD_RULES, NON_DIFFERENTIABLE_OPS, nodeError, type GradContext, type GradRule } from './grad-ops';
import { GraphBuilder, type FloatType } from './graph-builder';

export { GRAD_RULES, NON_DIFFERENTIABLE_OPS, SUPPORTED_OPS } from './grad-ops';

/** What the gradient is of. */
export type GradientTarget =
  /** A tensor of the model (usually a scalar loss); the gradient is that of its sum. */
  | { kind: 'loss'; tensor: string }
  /** Outputs whose gradients are fed in as graph inputs named `<output>_grad` (pipeline stage backward). */
  | { kind: 'outputs'; tensors: string[] };

/** Options of {@link buildGradientModel}. */
export interface GradientOptions {
  target: GradientTarget;
  /**
   * Parameters to leave untrained: exact initializer names or patterns. Every other
   * floating-point initializer is a trainable parameter.
   */
  freeze?: ReadonlyArray<string | RegExp>;
  /** Graph inputs to differentiate too (activation gradients of a pipeline stage). */
  inputs?: readonly string[];
  /** Name shown in error messages (default: the model's graph name). */
  modelName?: string;
  /**
   * Make the trainable parameters graph inputs instead of initializers (default false), so
   * that one session serves every step while the weights change: the caller keeps them
   * resident and feeds them in (their initial values: {@link readParameter}).
   */
  parametersAsInputs?: boolean;
  /**
   * Sizes of symbolic input dimensions that the gradient graph may depend on, e.g.
   * `{ height: 64, width: 64 }` for a CNN with free spatial sizes: convolution and pooling
   * gradients put spatial sizes into attributes, so the generated model is then valid for
   * those sizes only. Dimensions not given (the batch) stay free.
   */
  dims?: Readonly<Record<string, number>>;
  /**
   * Tensors whose gradient gets a name of its own: their summed gradient passes through an
   * Identity that every rule further back reads, so a caller can cut the backward there and
   * change the gradient between the two parts (tensor parallelism all-reduces a column-parallel
   * layer's input gradient, each device having only its columns' share). The names are in
   * {@link GradientModel.namedGradients}; a tensor whose gradient nothing reads gets none.
   */
  namedGradients?: readonly string[];
}

/** One gradient output of the generated model. */
export interface GradientOutput {
  /** The parameter or input differentiated. */
  of: string;
  /** Name of the graph output that holds its gradient. */
  output: string;
  /** False where no path leads from it to the target: the output is then all zeros. */
  reached: boolean;
}

/** Result of {@link buildGradientModel}. */
export interface GradientModel {
  /** The model: forward outputs, then the loss (where it was not an output already), then the gradients. */
  model: onnx.IModelProto;
  /** Its encoded bytes. */
  bytes: Uint8Array;
  /**
   * Trainable parameters with a path to the target, in model order, with their gradient
   * outputs (`reached` is always true here).
   */
  parameters: GradientOutput[];
  /**
   * Float weights that are not trained because nothing differentiable leads from them to the
   * target: BatchNormalization statistics, Resize scales, Clip bounds, unused weights.
   */
  untrained: string[];
  /** Gradients of the inputs asked for in {@link GradientOptions.inputs}. */
  inputGradients: GradientOutput[];
  /** Graph inputs added for the output gradients of an `outputs` target, by output name. */
  seedInputs: Map<string, string>;
  /** Element type of the gradients. */
  floatType: FloatType;
  /** The tensor holding the gradient of each of {@link GradientOptions.namedGradients} that is read, by tensor. */
  namedGradients: Map<string, string>;
}

/** Suffix of gradient outputs and seed inputs. */
export const GRAD_SUFFIX = '_grad';

/** Static shape knowledge: dims per tensor (null for sizes that vary with the inputs). */
interface StaticShapes {
  dims(name: string): Dims | undefined;
  dtype(name: string): DType | undefined;
}

/** The lowest opset the rules are written for. */
export const MIN_OPSET = 11;

/**
 * Runs shape propagation at two values of every symbolic input dimension not pinned in
 * `pinned`; dims that agree are static.
 */
function staticShapes(ir: ModelIR, pinned: Readonly<Record<string, number>>): StaticShapes {
  const symbolic = new Set<string>();
  for (const i of ir.inputs) for (const d of i.dims ?? []) if (typeof d === 'string' && pinned[d] === undefined) symbolic.add(d);
  const at = (v: number): Record<string, number> => ({ ...pinned, ...Object.fromEntries([...symbolic].map((s) => [s, v])) });
  const a = estimateCosts(ir, at(5)).shapes;
  const b = symbolic.size > 0 ? estimateCosts(ir, at(7)).shapes : a;
  const propagated = (name: string): Dims | undefined => {
    const sa = a.get(name);
    const sb = b.get(name);
    if (sa && sb && sa.dims.length === sb.dims.length) return sa.dims.map((v, i) => (v === sb.dims[i] ? v : null));
    const declared = ir.valueInfo.get(name)?.dims;
    return declared ? declared.map((d) => (typeof d === 'number' ? d : null)) : undefined;
  };
  // Where propagation stops (inputs whose symbolic sizes differ, say labels against
  // outputs), elementwise ops and reductions still have a known rank.
  const fallback = new Map<string, Dims>();
  const dims = (name: string): Dims | undefined => propagated(name) ?? fallback.get(name);
  for (const index of ir.topoOrder) {
    const n = ir.nodes[index]!;
    const out = n.outputs[0];
    if (!out || n.domain !== '' || dims(out)) continue;
    const ins = n.inputs.filter(Boolean).map((t) => dims(t));
    const first = ins[0];
    if (ELEMENTWISE_OPS.has(n.opType) && ins.every((d) => d !== undefined)) fallback.set(out, broadcastDims(ins as Dims[]));
    else if ((n.opType === 'ReduceSum' || n.opType === 'ReduceMean') && first) {
      const axesValue = n.attributes['axes'] ?? (n.inputs[1] ? constantValues(ir, n.inputs[1]) : []);
      const axes = (Array.isArray(axesValue) ? (axesValue as number[]) : []).map((x) => (x < 0 ? x + first.length : x));
      const all = axes.length === 0;
      const keep = n.attributes['keepdims'] !== 0;
      const reduced = first.map((d, i) => (all || axes.includes(i) ? (keep ? 1 : undefined) : d)).filter((d) => d !== undefined);
      fallback.set(out, reduced);
    }
  }
  return {
    dims,
    dtype(name) {
      return a.get(name)?.dtype ?? ir.valueInfo.get(name)?.dtype ?? ir.initializerByName.get(name)?.dtype;
    },
  };
}

type Dims = Array<number | null>;

/** Ops whose output has the broadcast shape of their inputs. */
const ELEMENTWISE_OPS = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Where', 'Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Not',
  'Cast', 'Identity', 'Neg', 'Exp', 'Log', 'Sqrt', 'Relu', 'Tanh', 'Sigmoid', 'Erf', 'Gelu', 'HardSigmoid', 'HardSwish', 'Clip',
  'Softmax', 'LogSoftmax', 'Sum',
]);

/** Numpy broadcasting of static dims; a size stays unknown unless some operand fixes it above 1. */
function broadcastDims(shapes: Dims[]): Dims {
  const rank = Math.max(...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, i) => {
    const at = shapes.map((s) => (i - (rank - s.length) >= 0 ? s[i - (rank - s.length)]! : 1));
    const big = at.find((d) => d !== null && d !== 1);
    if (big !== undefined) return big;
    return at.every((d) => d === 1) ? 1 : null;
  });
}

/**
 * Reduces gradient `g` (of a broadcast result whose static dims are `gDims`, rank included)
 * to the shape of operand `x`: sums over the leading axes `x` lacks and over the axes where
 * `x` has size 1 and the result may not, then reshapes to `x`'s run-time shape.
 */
export function unbroadcast(b: GraphBuilder, g: string, gDims: Array<number | null>, x: string, xDims: Array<number | null>): string {
  const lead = gDims.length - xDims.length;
  if (lead < 0) throw new Error(`unbroadcast: gradient rank ${gDims.length} below operand rank ${xDims.length}`);
  const axes: number[] = [];
  for (let i = 0; i < lead; i++) axes.push(i);
  xDims.forEach((d, i) => {
    if (d === 1 && gDims[lead + i] !== 1) axes.push(lead + i);
  });
  const reduced = axes.length > 0 ? b.reduce('ReduceSum', g, axes, true) : g;
  return lead > 0 ? b.reshapeLike(reduced, x) : reduced;
}

function matches(name: string, freeze: ReadonlyArray<string | RegExp>): boolean {
  return freeze.some((f) => (typeof f === 'string' ? f === name : f.test(name)));
}

function isFloat(d: DType | undefined): d is 'float32' | 'float64' {
  return d === 'float32' || d === 'float64';
}

/**
 * Builds the gradient model of `bytes` (an ONNX model) for `opts.target`.
 * @throws UserError for a model that cannot be differentiated: opset below 13, an unknown
 *   target or input, mixed float types, or operators outside {@link SUPPORTED_OPS} on the
 *   gradient path (all of them listed in one message).
 */
export function buildGradientModel(bytes: Uint8Array, opts: GradientOptions): GradientModel {
  const proto = decodeModelProto(bytes, opts.modelName ?? 'model');
  const ir = parseModel(bytes, opts.modelName ?? 'model', { checkExternalData: false });
  const name = opts.modelName ?? (ir.graphName || 'model');
  const opset = ir.opsetVersion ?? 0;
  if (opset < MIN_OPSET) throw new UserError(`${name}: gradients need ONNX opset ${MIN_OPSET} or later, the model imports opset ${opset}; re-export it with a newer opset`);
  for (const [dim, v] of Object.entries(opts.dims ?? {})) {
    if (!Number.isInteger(v) || v < 1) throw new UserError(`${name}: the size given for dimension "${dim}" must be a positive integer, got ${v}`);
  }
  const shapes = staticShapes(ir, opts.dims ?? {});
  const known = new Set<string>([...ir.producers.keys(), ...ir.initializerByName.keys(), ...ir.inputs.map((i) => i.name), ...ir.constants.keys()]);

  // Sources of gradients: candidate parameters (float initializers, and the float tensors of
  // Constant nodes of rank ≥ 1, where exporters such as paddle2onnx keep the weights; scalar
  // constants are taken for fixed numbers such as the 3 and 6 of a decomposed HardSwish) and
  // requested inputs.
  const freeze = opts.freeze ?? [];
  const constantWeights = new Map<string, onnx.ITensorProto>();
  for (const node of proto.graph?.node ?? []) {
    const t = node.opType === 'Constant' && !node.domain ? node.attribute?.find((a) => a.name === 'value')?.t : undefined;
    const out = node.output?.[0];
    if (t && out && (t.dims?.length ?? 0) >= 1 && (t.dataType === 1 || t.dataType === 11)) constantWeights.set(out, t);
  }
  const candidates = [
    ...ir.initializers.filter((t) => isFloat(t.dtype)).map((t) => t.name),
    ...[...constantWeights.keys()].filter((n) => !ir.initializerByName.has(n)),
  ].filter((n) => !matches(n, freeze));
  let params = candidates;
  for (const i of opts.inputs ?? []) {
    if (!ir.inputs.some((x) => x.name === i)) throw new UserError(`${name}: "${i}" is not a graph input; name one of ${ir.inputs.map((x) => x.name).join(', ')}`);
  }
  const sources = [...params, ...(opts.inputs ?? [])];
  const targets = opts.target.kind === 'loss' ? [opts.target.tensor] : opts.target.tensors;
  for (const t of targets) {
    if (!known.has(t)) throw new UserError(`${name}: "${t}" is not a tensor of the model; name the loss or an output (outputs: ${ir.outputs.map((o) => o.name).join(', ')})`);
  }

  const floatTypes = new Set([...sources, ...targets].map((t) => shapes.dtype(t)).filter(isFloat));
  if (floatTypes.size > 1) throw new UserError(`${name}: parameters and loss mix ${[...floatTypes].join(' and ')}; gradients need one floating-point type`);
  const floatType: FloatType = [...floatTypes][0] ?? 'float32';

  // Forward: which tensors depend on a source through differentiable slots.
  const requires = new Set<string>(sources);
  const ruleOf = (n: IRNode): GradRule | undefined => (n.domain === '' || n.domain === 'ai.onnx' ? GRAD_RULES[n.opType] : undefined);
  const slots = (n: IRNode, rule: GradRule | undefined): number[] =>
    !rule || rule.differentiable === 'all' ? n.inputs.map((_, i) => i) : rule.differentiable;
  for (const index of ir.topoOrder) {
    const n = ir.nodes[index]!;
    if (NON_DIFFERENTIABLE_OPS.has(n.opType) && n.domain === '') continue;
    const rule = ruleOf(n);
    const fed = slots(n, rule).some((i) => n.inputs[i] && requires.has(n.inputs[i]!)) || n.implicitInputs.some((t) => requires.has(t));
    if (!fed) continue;
    for (const o of n.outputs) if (o && isFloat(shapes.dtype(o) ?? floatType)) requires.add(o);
  }

  // Backward: which tensors the targets depend on.
  const needed = new Set<string>(targets);
  const onPath: IRNode[] = [];
  for (const index of [...ir.topoOrder].reverse()) {
    const n = ir.nodes[index]!;
    if (NON_DIFFERENTIABLE_OPS.has(n.opType) && n.domain === '') continue;
    if (!n.outputs.some((o) => o && needed.has(o) && requires.has(o))) continue;
    onPath.push(n);
    const rule = ruleOf(n);
    // Through a node with a rule only its differentiable slots lead back; an unknown node
    // (reported below) is taken to depend on all of its inputs.
    const back = rule ? slots(n, rule).map((i) => n.inputs[i]) : [...n.inputs, ...n.implicitInputs];
    for (const i of back) if (i && requires.has(i)) needed.add(i);
  }
  // Parameters from which no differentiable path leads to a target are not trained.
  params = candidates.filter((p) => needed.has(p));
  const untrained = candidates.filter((p) => !needed.has(p));
  const unsupported = onPath.filter((n) => !ruleOf(n));
  if (unsupported.length > 0) {
    const types = [...new Set(unsupported.map((n) => (n.domain ? `${n.domain}::${n.opType}` : n.opType)))].sort();
    const nodes = unsupported.slice(0, 10).map((n) => `"${n.name}"`).join(', ') + (unsupported.length > 10 ? ` and ${unsupported.length - 10} more` : '');
    throw new UserError(
      `${name}: cannot build gradients: operator${types.length > 1 ? 's' : ''} ${types.join(', ')} ${types.length > 1 ? 'have' : 'has'} no gradient rule (nodes ${nodes}); supported: see SUPPORTED_OPS, or freeze the parameters before them`,
    );
  }

  const taken = new Set<string>([...known, ...ir.nodes.map((n) => n.name)]);
  let prefix = 'grad';
  while ([...taken].some((t) => t.startsWith(`${prefix}/`))) prefix += '_';
  const b = new GraphBuilder(prefix, opset, floatType);

  // Seeds.
  const contributions = new Map<string, string[]>();
  const contribute = (t: string, g: string): void => {
    const list = contributions.get(t);
    if (list) list.push(g);
    else contributions.set(t, [g]);
  };
  const seedInputs = new Map<string, string>();
  const extraInputs: onnx.IValueInfoProto[] = [];
  const valueType = (t: string, dtype: FloatType = floatType): onnx.ITypeProto => {
    const dims = shapes.dims(t);
    const elemType = dtype === 'float64' ? onnx.TensorProto.DataType.DOUBLE : onnx.TensorProto.DataType.FLOAT;
    return { tensorType: dims ? { elemType, shape: { dim: dims.map((d) => (d === null ? {} : { dimValue: d })) } } : { elemType } };
  };
  if (opts.target.kind === 'loss') {
    b.scope = '/seed';
    const loss = opts.target.tensor;
    contribute(loss, b.op('ConstantOfShape', [b.shape(loss)], [{ name: 'value', t: b.floatTensor('', [1], [1]) }]));
  } else {
    for (const t of opts.target.tensors) {
      const input = uniqueName(`${t}${GRAD_SUFFIX}`, taken);
      seedInputs.set(t, input);
      extraInputs.push({ name: input, type: valueType(t) });
      contribute(t, input);
    }
  }

  const accumulated = new Map<string, string>();
  const toName = new Set(opts.namedGradients ?? []);
  const named = new Map<string, string>();
  const gradOf = (t: string): string | null => {
    const done = accumulated.get(t);
    if (done) return done;
    const list = contributions.get(t);
    if (!list) return null;
    let g = list.length === 1 ? list[0]! : b.op('Sum', list);
    if (toName.has(t)) {
      const out = uniqueName(`${t}${GRAD_SUFFIX}`, taken);
      b.nodes.push({ name: `${prefix}/named/${out}`, opType: 'Identity', input: [g], output: [out] });
      named.set(t, out);
      g = out;
    }
    accumulated.set(t, g);
    return g;
  };

  for (const n of onPath) {
    const rule = ruleOf(n)!;
    const outSlots = rule.outputs === 'all' ? n.outputs.map((_, i) => i) : (rule.outputs ?? [0]);
    const dy = n.outputs.map((o, i) => (o && outSlots.includes(i) ? gradOf(o) : null));
    if (dy.every((g) => g === null)) continue;
    const diff = slots(n, rule);
    const wants = n.inputs.map((t, i) => Boolean(t) && diff.includes(i) && requires.has(t) && needed.has(t));
    if (!wants.some(Boolean)) continue;
    b.scope = `/${n.name.replace(/^\/+/, '')}`;
    const fail = (why: string): never => {
      throw nodeError(name, n, why);
    };
    const dims = (t: string): Array<number | null> => shapes.dims(t) ?? fail(`the rank of "${t}" is unknown; give the model's inputs fixed ranks or add value_info`);
    const ctx: GradContext = {
      b,
      node: n,
      dy,
      wants,
      rank: (t) => dims(t).length,
      dims,
      constant: (t) => constantValues(ir, t),
      unbroadcast: (g, gDims, x) => unbroadcast(b, g, gDims, x, dims(x)),
      fail,
    };
    const grads = rule.grad(ctx);
    n.inputs.forEach((t, i) => {
      const g = grads[i];
      if (wants[i] && g) contribute(t, g);
    });
  }

  // Outputs: forward outputs, the loss, then one gradient per parameter and requested input.
  b.scope = '/out';
  const outputs: onnx.IValueInfoProto[] = [...(proto.graph?.output ?? [])];
  if (opts.target.kind === 'loss' && !outputs.some((o) => o.name === (opts.target as { tensor: string }).tensor)) {
    const loss = opts.target.tensor;
    outputs.push({ name: loss, type: valueType(loss) });
  }
  const identityNodes: onnx.INodeProto[] = [];
  const emit = (of: string): GradientOutput => {
    const output = uniqueName(`${of}${GRAD_SUFFIX}`, taken);
    const g = gradOf(of);
    const value = g ?? b.zerosLike(of);
    identityNodes.push({ name: `${prefix}/out/${output}`, opType: 'Identity', input: [value], output: [output] });
    outputs.push({ name: output, type: valueType(of) });
    return { of, output, reached: g !== null };
  };
  const parameters = params.map(emit);
  const inputGradients = (opts.inputs ?? []).map(emit);

  // Rules may emit a value that nothing reads in the end (a shape whose only reader was
  // another input's gradient, say): drop generated nodes and constants no output needs.
  const live = new Set(outputs.map((o) => o.name ?? ''));
  const generated: onnx.INodeProto[] = [];
  for (const n of [...b.nodes, ...identityNodes].reverse()) {
    if (!(n.output ?? []).some((o) => live.has(o))) continue;
    generated.push(n);
    for (const i of n.input ?? []) live.add(i);
  }
  generated.reverse();
  for (const [t, g] of named) if (!live.has(g)) named.delete(t);
  const constants = b.constants.filter((c) => live.has(c.name ?? ''));

  const graph = proto.graph!;
  // Constant-node weights that are trained become initializers (and inputs, if asked).
  const lifted = new Set(params.filter((p) => constantWeights.has(p)));
  const forwardNodes = (graph.node ?? []).filter((n) => !(n.opType === 'Constant' && lifted.has(n.output?.[0] ?? '')));
  let initializer = [...(graph.initializer ?? []), ...[...lifted].map((p) => ({ ...constantWeights.get(p)!, name: p }))];
  let input = graph.input ?? [];
  if (opts.parametersAsInputs) {
    const trainable = new Set(params);
    initializer = initializer.filter((t) => !trainable.has(t.name ?? ''));
    const declared = new Set(input.map((i) => i.name));
    input = [...input, ...params.filter((p) => !declared.has(p)).map((p) => ({ name: p, type: valueType(p) }))];
  }
  const model: onnx.IModelProto = {
    ...proto,
    graph: {
      ...graph,
      node: [...forwardNodes, ...generated],
      initializer: [...initializer, ...constants],
      input: [...input, ...extraInputs],
      output: outputs,
    },
  };
  return { model, bytes: encodeModel(model), parameters, untrained, inputGradients, seedInputs, floatType, namedGradients: named };
}

function uniqueName(want: string, taken: Set<string>): string {
  let name = want;
  for (let i = 1; taken.has(name); i++) name = `${want}_${i}`;
  taken.add(name);
  return name;
}
