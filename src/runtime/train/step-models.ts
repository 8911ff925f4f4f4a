/**
 * The models of one data-parallel training step, built from the user's model (pure: no ONNX
 * Runtime): the model with its loss, differentiated by {@link buildGradientModel} with the
 * parameters as inputs, then cut in two —
 *  - forward: every node the loss and the model's outputs depend on; it outputs the loss
 *    and the activations the backward reads;
 *  - backward: the rest; activations, inputs and parameters in, one gradient per parameter out;
 * — and the optimizer update of every parameter ({@link buildOptimizerModel}).
 *
 * Cutting the gradient model keeps forward and backward apart on the timeline (two runs, two
 * phases) at the cost of handing the saved activations from one session to the next, which
 * stay on the device (the interpreter feeds a run's results to later runs).
 */
import { onnx } from 'onnx-proto';
import { freezePattern, type TrainPlan } from '../../profiler/plan';
import { decodeModelProto, encodeModel, estimateCosts, parseModel } from '../onnx/model';
import { dtypeCode } from '../onnx/dtypes';
import { buildGradientModel } from './autodiff';
import { appendLoss, type ModelWithLoss } from './loss';
import { buildOptimizerModel, type OptimizerModel } from './optimizer';
import type { TrainingContext } from '../compile/common';

/** Result of {@link buildTrainingModels}. */
export interface TrainingModels {
  /**
   * The step's forward and backward models: the gradient model cut into the forward and one
   * backward part per group of gradient outputs (per gradient bucket, in the order backward
   * produces them; one group of every gradient gives one backward).
   */
  cut(gradientGroups: readonly (readonly string[])[]): StepSegments;
  optimizer: OptimizerModel;
  /** The model with its loss appended (for teacher labels and the labels' type). */
  withLoss: ModelWithLoss;
  /** What the compiler needs to know of them. */
  context: TrainingContext;
  /** Float weights that nothing differentiable connects to the loss (left as they are). */
  untrained: string[];
}

/** A training step's forward and backward segments. */
export interface StepSegments {
  forward: Uint8Array;
  /** One per gradient group. */
  backward: Uint8Array[];
  /** Activations the forward hands to the backward parts. */
  saved: string[];
}

/**
 * Builds the step models of `modelBytes` for the plan's loss and optimizer.
 * @param dims sizes of symbolic dimensions other than the batch (a CNN's spatial sizes), see {@link buildGradientModel}.
 * @throws UserError for a model with an operator outside the gradient rules (listing them), before anything runs.
 */
export function buildTrainingModels(modelBytes: Uint8Array, train: TrainPlan, modelName: string, dims: Readonly<Record<string, number>> = {}): TrainingModels {
  const withLoss = appendLoss(modelBytes, { kind: train.loss }, modelName);
  const freeze = (train.freeze ?? []).map(freezePattern);
  const g = buildGradientModel(withLoss.bytes, { target: { kind: 'loss', tensor: withLoss.loss }, parametersAsInputs: true, modelName, dims, freeze });
  const forwardOutputs = [...new Set([...(decodeModelProto(modelBytes, modelName).graph?.output ?? []).map((o) => o.name ?? ''), withLoss.loss])];
  const paramDims = new Map((g.model.graph?.input ?? []).map((i) => [i.name ?? '', (i.type?.tensorType?.shape?.dim ?? []).map((d) => Number(d.dimValue ?? 0))]));
  const parameters = g.parameters.map((p) => ({ name: p.of, dims: paramDims.get(p.of) ?? [], grad: p.output }));
  const renamed = buildStepOptimizer(parameters, train);
  return {
    cut(groups) {
      const { parts, handoffs } = cutModel(g.model, [forwardOutputs, ...groups], modelName);
      const saved = [...new Set(handoffs.flat().filter((h) => h.from === 0 && !forwardOutputs.includes(h.tensor)).map((h) => h.tensor))];
      return { forward: parts[0]!, backward: parts.slice(1), saved };
    },
    optimizer: renamed,
    withLoss,
    untrained: g.untrained,
    context: {
      parameters,
      loss: withLoss.loss,
      labels: withLoss.labels,
      optimizer: optimizerSlots(renamed),
    },
  };
}

/**
 * The optimizer update of `parameters` for the plan's optimizer, reading each gradient under
 * the backward's output name of it.
 */
export function buildStepOptimizer(parameters: readonly { name: string; dims: number[]; grad: string }[], train: TrainPlan): OptimizerModel {
  const optimizer = buildOptimizerModel(
    parameters.map((p) => ({ name: p.name, dims: p.dims })),
    train.optimizer === 'momentum' ? { kind: 'momentum' } : train.optimizer === 'adam' ? { kind: 'adam' } : { kind: 'sgd' },
  );
  // The optimizer reads each gradient under `<param>_grad`; the backward may have named one
  // otherwise (a name taken in the model), so its inputs are renamed to the backward's.
  return renameOptimizerGradients(optimizer, parameters);
}

/** The optimizer model's slots as a training program names them. */
export function optimizerSlots(opt: OptimizerModel): TrainingContext['optimizer'] {
  return {
    state: opt.slots.flatMap((s) => s.state.map((st) => ({ input: st.input, output: st.output, param: s.param }))),
    updated: opt.slots.map((s) => ({ param: s.param, output: s.updated })),
    lrInput: opt.lr,
    stepInput: opt.step,
  };
}

/** The optimizer model with each gradient input named as the backward's output of it. */
function renameOptimizerGradients(opt: OptimizerModel, params: readonly { name: string; grad: string }[]): OptimizerModel {
  const to = new Map<string, string>();
  for (const s of opt.slots) {
    const grad = params.find((p) => p.name === s.param)!.grad;
    if (grad !== s.grad) to.set(s.grad, grad);
  }
  if (to.size === 0) return opt;
  const model = onnx.ModelProto.decode(opt.bytes);
  const graph = model.graph!;
  for (const i of graph.input ?? []) if (i.name && to.has(i.name)) i.name = to.get(i.name)!;
  for (const n of graph.node ?? []) n.input = (n.input ?? []).map((x) => to.get(x) ?? x);
  return { ...opt, bytes: encodeModel(model), slots: opt.slots.map((s) => ({ ...s, grad: to.get(s.grad) ?? s.grad })) };
}

/** Result of {@link cutModel}. */
export interface CutModel {
  /** One model per group, in order. */
  parts: Uint8Array[];
  /** Per part, the tensors of earlier parts it reads (activations and gradients handed on) and the part each comes from. */
  handoffs: { tensor: string; from: number }[][];
}

/**
 * Cuts a model into consecutive parts: part k holds the nodes that `groups[k]` (tensors it
 * outputs) depend on and no earlier part holds. Each part keeps the graph inputs and
 * initializers its nodes read; a tensor one part produces and a later part reads becomes an
 * output of the one and an input of the other. Nodes no group depends on are dropped.
 * Subgraph bodies (If/Loop) are not followed: the gradient rules refuse control flow on the
 * gradient path.
 */
export function cutModel(model: onnx.IModelProto, groups: readonly (readonly string[])[], modelName: string): CutModel {
  const graph = model.graph!;
  const nodes = graph.node ?? [];
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => o && producer.set(o, i)));
  const partOf = new Int32Array(nodes.length).fill(-1);
  groups.forEach((outs, k) => {
    const stack = outs.map((o) => producer.get(o)).filter((i): i is number => i !== undefined);
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (partOf[i] !== -1) continue;
      partOf[i] = k;
      for (const t of nodes[i]!.input ?? []) {
        const p = producer.get(t);
        if (p !== undefined && partOf[p] === -1) stack.push(p);
      }
    }
  });
  const partNodes = groups.map((_, k) => nodes.filter((_, i) => partOf[i] === k));
  const producedIn = new Map<string, number>();
  partNodes.forEach((ns, k) => ns.forEach((n) => (n.output ?? []).forEach((o) => o && producedIn.set(o, k))));
  const reads = partNodes.map((ns) => new Set(ns.flatMap((n) => n.input ?? [])));
  // Tensors each part hands to later ones, and those it takes from earlier ones.
  const handOut = groups.map(() => new Set<string>());
  const handoffs = groups.map((_, k) => [...reads[k]!].filter((t) => (producedIn.get(t) ?? k) < k).map((t) => ({ tensor: t, from: producedIn.get(t)! })));
  for (const hs of handoffs) for (const h of hs) handOut[h.from]!.add(h.tensor);

  // Element types of the handed-on tensors (their sizes stay open: the batch varies).
  const ir = parseModel(encodeModel(model), modelName, { checkExternalData: false });
  const symbolic: Record<string, number> = {};
  for (const i of ir.inputs) for (const d of i.dims ?? []) if (typeof d === 'string') symbolic[d] = 2;
  const shapes = estimateCosts(ir, symbolic).shapes;
  const declared = new Map([...(graph.valueInfo ?? []), ...(graph.output ?? [])].map((v) => [v.name ?? '', v]));
  const outputsByName = new Map((graph.output ?? []).map((o) => [o.name ?? '', o]));
  const valueInfo = (t: string): onnx.IValueInfoProto => {
    const d = declared.get(t);
    if (d?.type?.tensorType?.elemType) return { name: t, type: { tensorType: { elemType: d.type.tensorType.elemType } } };
    const dt = shapes.get(t)?.dtype;
    return { name: t, type: { tensorType: { elemType: (dt ? dtypeCode(dt) : undefined) ?? onnx.TensorProto.DataType.FLOAT } } };
  };
  const parts = groups.map((outs, k) => {
    const ns = partNodes[k]!;
    const outputs = [...new Set([...outs, ...handOut[k]!])].map((t) => outputsByName.get(t) ?? valueInfo(t));
    const used = new Set(reads[k]);
    for (const o of outputs) used.add(o.name ?? '');
    return encodeModel({
      ...model,
      graph: {
        ...graph,
        name: `${graph.name ?? 'model'}_part${k}`,
        node: ns,
        input: [...(graph.input ?? []).filter((i) => used.has(i.name ?? '')), ...handoffs[k]!.map((h) => valueInfo(h.tensor))],
        initializer: (graph.initializer ?? []).filter((t) => used.has(t.name ?? '')),
        valueInfo: (graph.valueInfo ?? []).filter((v) => used.has(v.name ?? '')),
        output: outputs,
      },
    });
  });
  return { parts, handoffs };
}
