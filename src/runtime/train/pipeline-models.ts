/**
 * The training models of a pipeline's stages, built from the user's model and its partition
 * (pure: no ONNX Runtime). Per stage:
 *  - its nodes as a model ({@link buildStageModel}); the last stage gets the loss appended,
 *    against the same labels input as the whole model's loss;
 *  - the gradient model of that ({@link buildGradientModel}) with the parameters as inputs:
 *    the last stage differentiates its loss, every other stage the outputs it sends on,
 *    whose gradients it reads as inputs (received from the next stage); every stage also
 *    differentiates its float inputs that come from the previous stage, and sends those
 *    gradients back;
 *  - cut in two ({@link cutModel}): a forward (what the next stage receives, and the loss)
 *    and a backward (parameter and input gradients);
 *  - the optimizer update of its own parameters.
 *
 * What the backward needs of the forward is kept per micro-batch by the device (the
 * "stash"): the saved intermediate tensors the cut hands over plus the stage inputs the
 * backward reads. Decided against recomputation (keeping the inputs only and running the
 * forward again before the backward): it would cost a second forward per micro-batch, and
 * the data-parallel step already hands saved activations from forward to backward, so both
 * modes measure the same backward. The stash's size is what the schedule bounds (GPipe: M
 * micro-batches, 1F1B: at most K); the runner reports its measured peak in bytes.
 *
 * The tensors sent backward take one name on both sides: the previous stage's backward reads
 * each activation gradient under the name the next stage's backward outputs it.
 */
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import type { TrainPlan } from '../../profiler/plan';
import { decodeModelProto, encodeModel, estimateCosts, parseModel, type ModelIR } from '../onnx/model';
import type { Partition } from '../pipeline/partition';
import { buildStageModel } from '../pipeline/stage-model';
import { buildGradientModel } from './autodiff';
import { appendLoss } from './loss';
import { buildStepOptimizer, cutModel, optimizerSlots } from './step-models';
import type { TrainingContext } from '../compile/common';

/** What the compiler needs to know of one stage's training models. */
export interface StageTrainingContext {
  stage: number;
  /** The stage's trainable parameters in model order, with the backward output of each gradient. */
  parameters: { name: string; dims: number[]; grad: string }[];
  /** The loss output of the last stage's forward; "" on the other stages. */
  loss: string;
  /** Tensors the backward reads of the forward and of the stage's inputs, kept per micro-batch. */
  stash: string[];
  /** Per output sent to the next stage and differentiated: the backward input its gradient is read (received) under. */
  outputGrads: { tensor: string; grad: string }[];
  /** Per input received from the previous stage and differentiated: the backward output holding its gradient (sent back). */
  inputGrads: { tensor: string; grad: string }[];
  optimizer: TrainingContext['optimizer'];
}

/** The stages' training models (segment bytes) and their contexts. */
export interface PipelineTrainingModels {
  stages: { forward: Uint8Array; backward: Uint8Array; optimizer: Uint8Array; context: StageTrainingContext }[];
  /** The labels input of the last stage (the whole model's). */
  labels: string;
}

/** The loss the stages train on: its kind, and the whole model's output and labels names. */
export interface StageLoss {
  train: TrainPlan;
  /** The model output the loss is of. */
  output: string;
  /** The labels input's name (as the whole model's loss named it). */
  labels: string;
}

const isFloat = (d: string | undefined): boolean => d === 'float32' || d === 'float64';

/**
 * Builds every stage's training models.
 * @param dims sizes of symbolic dimensions other than the batch (see buildGradientModel).
 * @throws UserError for what pipeline training cannot do: a model output produced before
 *   the last stage, a weight read by two stages, or a stage the gradient rules refuse.
 */
export function buildPipelineTrainingModels(modelBytes: Uint8Array, ir: ModelIR, partition: Partition, loss: StageLoss, modelName: string, dims: Readonly<Record<string, number>> = {}): PipelineTrainingModels {
  const k = partition.stages.length;
  const proto = onnx.ModelProto.decode(modelBytes);
  const owner = new Map<string, number>();
  for (const st of partition.stages) {
    for (const w of st.initializers) {
      const other = owner.get(w);
      if (other !== undefined && other !== st.index) {
        throw new UserError(`${modelName}: weight "${w}" is read by stages ${other} and ${st.index}; pipeline training needs every weight in one stage, so cut elsewhere (--cuts)`);
      }
      owner.set(w, st.index);
    }
    if (st.index < k - 1) {
      const early = st.outputs.find((o) => o.to.includes('graph'));
      if (early) throw new UserError(`${modelName}: model output "${early.name}" is produced in stage ${st.index}, not the last; pipeline training needs the outputs in the last stage, so cut after it (--cuts)`);
    }
  }
  const stageBytes = partition.stages.map((st) => buildStageModel(proto, ir, st, k));
  return buildStageTrainingModels(stageBytes, ir, partition, loss, modelName, dims);
}

/** Per-stage choices of {@link buildStageTrainingModels} (pipeline training takes the defaults). */
export interface StageTrainingOptions {
  /** Parameters of a stage left untrained (exact names or patterns, see buildGradientModel). */
  freeze?: (stage: number) => ReadonlyArray<string | RegExp>;
  /**
   * A tensor of a stage at whose gradient its backward is cut in two, or null: the first part
   * ends with that gradient, the second reads it, so the caller can change it in between
   * (tensor parallelism all-reduces it).
   */
  cutGradientAt?: (stage: number) => string | null;
}

/** A stage's backward cut at a gradient ({@link StageTrainingOptions.cutGradientAt}). */
export interface BackwardCut {
  /** The tensor whose gradient the cut is at, and the tensor holding that gradient. */
  of: string;
  gradient: string;
  /** Up to the gradient, and the rest (parameter and input gradients). */
  parts: [Uint8Array, Uint8Array];
}

/**
 * The training models of stages given as models of their own (`stageBytes[s]` holds the
 * nodes of `partition.stages[s]`, as {@link buildStageModel} writes them, or a copy with other
 * weights: a tensor-parallel device's shard), differentiated and cut as the module comment
 * says; `ir` is the whole model's, for the sizes of the cut tensors.
 */
export function buildStageTrainingModels(
  stageBytesIn: readonly Uint8Array[],
  ir: ModelIR,
  partition: Partition,
  loss: StageLoss,
  modelName: string,
  dims: Readonly<Record<string, number>> = {},
  opts: StageTrainingOptions = {},
): PipelineTrainingModels & { cuts: (BackwardCut | null)[] } {
  const k = partition.stages.length;
  const shapeOf = wholeShapes(ir, dims);
  const stageBytes = stageBytesIn.map((b) => withCutShapes(b, shapeOf, partition.batchDim ?? 'batch'));
  const stageIr = stageBytes.map((b, s) => parseModel(b, `${modelName} stage ${s}`, { checkExternalData: false }));
  // Inputs received from the previous stage that carry a gradient (float), per stage.
  const differentiated = partition.stages.map((st, s) =>
    st.inputs.filter((i) => i.from !== 'graph' && isFloat(stageIr[s]!.inputs.find((x) => x.name === i.name)?.dtype)).map((i) => i.name),
  );
  for (const [s, st] of partition.stages.entries()) {
    const skip = st.inputs.find((i) => i.from !== 'graph' && i.from !== s - 1);
    if (skip) throw new UserError(`${modelName}: stage ${s} reads "${skip.name}" from stage ${String(skip.from)}, not the one before it; pipeline training sends gradients to the previous stage only, so cut elsewhere (--cuts)`);
  }

  const built = partition.stages.map((st, s) => {
    const last = s === k - 1;
    const label = `${modelName} stage ${s}`;
    const withLoss = last ? appendLoss(stageBytes[s]!, { kind: loss.train.loss, output: loss.output, labels: loss.labels }, label) : null;
    if (withLoss && withLoss.labels !== loss.labels) throw new Error(`stage ${s}: labels named ${withLoss.labels}, not ${loss.labels}`);
    const sent = last ? [] : differentiated[s + 1]!;
    const at = opts.cutGradientAt?.(s) ?? null;
    const g = buildGradientModel(withLoss ? withLoss.bytes : stageBytes[s]!, {
      target: withLoss ? { kind: 'loss', tensor: withLoss.loss } : { kind: 'outputs', tensors: sent },
      inputs: differentiated[s]!,
      parametersAsInputs: true,
      modelName: label,
      dims,
      ...(opts.freeze ? { freeze: opts.freeze(s) } : {}),
      ...(at !== null ? { namedGradients: [at] } : {}),
    });
    const graphOutputs = st.outputs.filter((o) => o.to.includes('graph')).map((o) => o.name);
    const forwardOutputs = [...new Set([...st.outputs.filter((o) => o.to.some((t) => t !== 'graph')).map((o) => o.name), ...graphOutputs, ...(withLoss ? [withLoss.loss] : [])])];
    const paramDims = new Map((g.model.graph?.input ?? []).map((i) => [i.name ?? '', (i.type?.tensorType?.shape?.dim ?? []).map((d) => Number(d.dimValue ?? 0))]));
    const parameters = g.parameters.map((p) => ({ name: p.of, dims: paramDims.get(p.of) ?? [], grad: p.output }));
    const backwardOutputs = [...parameters.map((p) => p.grad), ...g.inputGradients.map((x) => x.output)];
    const { parts } = cutModel(g.model, [forwardOutputs, backwardOutputs], label);
    const named = at !== null ? g.namedGradients.get(at) : undefined;
    const split = named !== undefined ? cutModel(g.model, [forwardOutputs, [named], backwardOutputs], label).parts : null;
    const cut = named !== undefined && split ? { of: at!, gradient: named, parts: [split[1]!, split[2]!] as [Uint8Array, Uint8Array] } : null;
    return { g, parameters, forward: parts[0]!, backward: parts[1]!, loss: withLoss?.loss ?? '', cut };
  });

  const renamesOf = built.map((b, s) => {
    const renames = new Map<string, string>();
    if (s === k - 1) return renames;
    for (const og of built[s + 1]!.g.inputGradients) {
      const seed = b.g.seedInputs.get(og.of);
      if (!seed) throw new Error(`stage ${s}: no gradient input for ${og.of}`);
      if (seed !== og.output) renames.set(seed, og.output);
    }
    return renames;
  });
  return {
    labels: loss.labels,
    cuts: built.map((b, s) => {
      if (!b.cut) return null;
      const r = renamesOf[s]!;
      const parts = b.cut.parts.map((p) => (r.size > 0 ? renameInputs(p, r, `${modelName} stage ${s}`) : p)) as [Uint8Array, Uint8Array];
      return { ...b.cut, parts };
    }),
    stages: built.map((b, s) => {
      // The activation gradients this stage reads take the next stage's names for them.
      const outputGrads = s === k - 1 ? [] : built[s + 1]!.g.inputGradients.map((x) => ({ tensor: x.of, grad: x.output }));
      const renames = renamesOf[s]!;
      const backward = renames.size > 0 ? renameInputs(b.backward, renames, `${modelName} stage ${s}`) : b.backward;
      const params = new Set(b.parameters.map((p) => p.name));
      const received = new Set(outputGrads.map((o) => o.grad));
      const stash = (decodeModelProto(backward, `${modelName} stage ${s}`).graph?.input ?? []).map((i) => i.name ?? '').filter((n) => !params.has(n) && !received.has(n));
      const optimizer = buildStepOptimizer(b.parameters, loss.train);
      return {
        forward: b.forward,
        backward,
        optimizer: optimizer.bytes,
        context: {
          stage: s,
          parameters: b.parameters,
          loss: b.loss,
          stash,
          outputGrads,
          inputGrads: b.g.inputGradients.map((x) => ({ tensor: x.of, grad: x.output })),
          optimizer: optimizerSlots(optimizer),
        },
      };
    }),
  };
}

/** The model with graph inputs (and their readers) renamed; a new name must not be taken. */
function renameInputs(bytes: Uint8Array, to: ReadonlyMap<string, string>, label: string): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph!;
  const taken = new Set([...(graph.node ?? []).flatMap((n) => n.output ?? []), ...(graph.input ?? []).map((i) => i.name ?? ''), ...(graph.initializer ?? []).map((i) => i.name ?? '')]);
  for (const name of to.values()) if (taken.has(name)) throw new UserError(`${label}: the activation gradient "${name}" clashes with a tensor of the stage; rename that tensor or cut elsewhere (--cuts)`);
  for (const i of graph.input ?? []) if (i.name && to.has(i.name)) i.name = to.get(i.name)!;
  for (const n of graph.node ?? []) n.input = (n.input ?? []).map((x) => to.get(x) ?? x);
  return encodeModel(model);
}

/**
 * Sizes of the whole model's tensors by static shape propagation at two values of every
 * symbolic input size not pinned in `dims` (the batch, usually): sizes that agree are fixed,
 * the others null.
 */
function wholeShapes(ir: ModelIR, dims: Readonly<Record<string, number>>): (name: string) => Array<number | null> | undefined {
  const symbolic = new Set<string>();
  for (const i of ir.inputs) for (const d of i.dims ?? []) if (typeof d === 'string' && dims[d] === undefined) symbolic.add(d);
  const at = (v: number): Record<string, number> => ({ ...dims, ...Object.fromEntries([...symbolic].map((x) => [x, v])) });
  const a = estimateCosts(ir, at(5)).shapes;
  const b = estimateCosts(ir, at(7)).shapes;
  return (name) => {
    const da = a.get(name)?.dims;
    const db = b.get(name)?.dims;
    return da && db && da.length === db.length ? da.map((v, i) => (v === db[i] ? v : null)) : undefined;
  };
}

/**
 * The stage model with the sizes its cut tensors (inputs and outputs) left open filled in
 * from the whole model's shapes (a varying size named `symbol`, the batch), so that the
 * gradient rules' shape propagation, which needs ranks and the sizes that become
 * attributes (convolution geometry), can follow the stage on its own.
 */
function withCutShapes(bytes: Uint8Array, shapeOf: (name: string) => Array<number | null> | undefined, symbol: string): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  let changed = false;
  for (const v of [...(model.graph?.input ?? []), ...(model.graph?.output ?? [])]) {
    const tt = v.type?.tensorType;
    const known = shapeOf(v.name ?? '');
    if (!tt) continue;
    const declared = tt.shape?.dim ?? [];
    if (known && (declared.length === 0 || declared.length === known.length)) {
      const dim = known.map((d, i) => {
        const old = declared[i];
        if (old && (old.dimValue != null || old.dimParam)) return old;
        changed = true;
        return d === null ? { dimParam: symbol } : { dimValue: d };
      });
      tt.shape = { dim };
      continue;
    }
    for (const d of declared) {
      if (d.dimValue == null && !d.dimParam) {
        d.dimParam = symbol;
        changed = true;
      }
    }
  }
  return changed ? encodeModel(model) : bytes;
}
