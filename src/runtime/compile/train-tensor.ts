/**
 * The tensor-parallel training compiler. Every device runs the whole batch through its chain
 * of shard segments as in inference ({@link compileTensor}), the last part with the loss, then
 * the backward of each part in reverse, then its optimizer on its own parameters (its slices
 * and the replicated weights):
 *
 *   scatter every row and the labels
 *   F0 → all-reduce (layer 0) → F1 → … → F(K−1) + loss
 *   B(K−1) … B1 → [B0 up to the f gradient → all-reduce (layer 0, backward) → B0 rest]
 *   all-reduce of the partial gradients of replicated weights read in split regions, if any
 *   optimizer
 *
 * A part whose column-parallel layers read a whole input (the f operator of
 * runtime/train/tensor-models.ts) runs its backward as two segments around the all-reduce of
 * that input's gradient; a part without one runs one. The gradient of an all-reduced
 * activation needs no collective: it is replicated, and every device's previous part reads
 * it from its own backward.
 */
import type { TensorPlan, TrainPlan } from '../../profiler/plan';
import type { Instruction, Program, ProgramBuffer, Segment, TrainingProgram } from '../../profiler/program';
import { UserError } from '../../common/errors';
import { compileTensor, type TensorPrepared } from './tensor';
import { inputBytes, type CompileContext, type TensorTrainingContext } from './common';

/** Segment ids of one device: per chain part its forward and backward segment(s), and its optimizer. */
export interface TensorTrainingLayout {
  forward: number[];
  backward: number[][];
  optimizer: number;
}

/**
 * The segment ids of every device, in order (device 0's forwards, backwards, optimizer, then
 * device 1's, …); `cut[k]`: part k's backward runs as two segments.
 */
export function tensorTrainingLayout(devices: number, cut: readonly boolean[]): TensorTrainingLayout[] {
  let next = 0;
  return Array.from({ length: devices }, () => {
    const forward = cut.map(() => next++);
    const backward = cut.map((c) => (c ? [next++, next++] : [next++]));
    return { forward, backward, optimizer: next++ };
  });
}

/** Name of the buffer the gradients of replicated weights read inside split regions are all-reduced in. */
export const PARTIAL_GRADIENTS_BUFFER = 'tensor.partial-gradients';

/** Name of the buffer the backward all-reduce of chain part `k`'s f gradient works on. */
export function gradientBufferName(k: number): string {
  return `tensor.grad-allreduce${k}`;
}

/** Compiles a tensor plan with a training part over its chain and its devices' training models. */
export function compileTrainTensor(plan: TensorPlan & { train: TrainPlan }, prep: TensorPrepared, ctx: CompileContext, models: TensorTrainingContext): Program {
  const forward = compileTensor(plan, prep, ctx);
  const { shard, chain } = prep;
  const n = ctx.devices;
  const k = chain.stages.length;
  const layout = tensorTrainingLayout(n, models.reductions.map((r) => r !== null));
  const group = Array.from({ length: n }, (_, r) => r);
  const segments: Segment[] = [];
  layout.forEach((ids, rank) => {
    chain.stages.forEach((_, part) => {
      segments.push({ id: ids.forward[part]!, kind: 'stage-forward', label: `shard ${rank} part ${part} forward${part === k - 1 ? ' + loss' : ''}`, stage: part });
    });
    chain.stages.forEach((_, part) => {
      const r = models.reductions[part];
      const labels = r ? [`shard ${rank} part ${part} backward to the gradient of ${r.of}`, `shard ${rank} part ${part} backward from the all-reduced gradient of ${r.of}`] : [`shard ${rank} part ${part} backward`];
      ids.backward[part]!.forEach((id, i) => segments.push({ id, kind: 'stage-backward', label: labels[i]!, stage: part, ...(r ? { piece: i } : {}) }));
    });
    segments.push({ id: ids.optimizer, kind: 'optimizer', label: `shard ${rank} optimizer (${plan.train.optimizer})` });
  });
  segments.sort((a, b) => a.id - b.id);

  const buffers: ProgramBuffer[] = [...forward.buffers];
  models.reductions.forEach((r, part) => {
    if (!r) return;
    if (r.bytesPerRow === null) {
      throw new UserError(`${shard.modelPath}: the size of "${r.of}", whose gradient tensor-parallel training all-reduces, is unknown; give --dim values for the model's symbolic dimensions`);
    }
    const bytes = shard.batchDim !== null ? r.bytesPerRow * plan.batch : r.bytesPerRow;
    buffers.push({ name: gradientBufferName(part), dtype: 'float32', elements: bytes / 4, synthetic: false, activation: { tensor: r.gradient, layer: r.layer, phase: 'backward' } });
  });
  if (models.partialGradients.length > 0) {
    let offset = 0;
    const gradients = models.partialGradients.map((g) => {
      const packed = { ...g, offset };
      offset += g.elements;
      return packed;
    });
    buffers.push({ name: PARTIAL_GRADIENTS_BUFFER, dtype: 'float32', elements: offset, synthetic: false, gradients });
  }
  const bytesOf = (name: string): number => {
    const b = buffers.find((x) => x.name === name);
    return b ? b.elements * 4 : 0;
  };

  const devices = forward.devices.map((dp) => {
    const rank = dp.rank;
    const ids = layout[rank]!;
    const instructions: Instruction[] = [];
    for (const ins of dp.instructions) {
      switch (ins.op) {
        case 'scatter': {
          const tensors = [...ins.tensors, models.labels];
          instructions.push({ ...ins, tensors, bytes: inputBytes(ctx.inputs, tensors, plan.batch) });
          break;
        }
        case 'run': {
          const part = ins.segment - rank * k;
          instructions.push({ ...ins, segment: ids.forward[part]! });
          break;
        }
        case 'gather':
          // A training step hands over no outputs: the loss and the weights are what it reports.
          break;
        default:
          instructions.push(ins);
      }
    }
    for (let part = k - 1; part >= 0; part--) {
      const [first, second] = ids.backward[part]!;
      instructions.push({ op: 'run', micro: -1, segment: first!, rows: plan.batch, phase: 'backward' });
      if (second !== undefined) {
        const buffer = gradientBufferName(part);
        instructions.push({ op: 'collective', collective: 'allreduce', group, buffer, bytes: bytesOf(buffer) });
        instructions.push({ op: 'run', micro: -1, segment: second, rows: plan.batch, phase: 'backward' });
      }
    }
    if (models.partialGradients.length > 0) {
      instructions.push({ op: 'collective', collective: 'allreduce', group, buffer: PARTIAL_GRADIENTS_BUFFER, bytes: bytesOf(PARTIAL_GRADIENTS_BUFFER) });
    }
    instructions.push({ op: 'run', micro: -1, segment: ids.optimizer, rows: plan.batch, phase: 'optimizer' });
    const own = [...ids.forward, ...ids.backward.flat(), ids.optimizer];
    return { rank, stage: -1, segments: own, instructions };
  });
  const stageTraining: TrainingProgram[] = models.ranks.map((m) => ({
    parameters: m.parameters.map((p) => ({ name: p.name, dims: p.dims })),
    loss: m.loss,
    optimizer: plan.train.optimizer,
    lr: plan.train.lr,
    ...m.optimizer,
    ownParameters: true,
  }));
  return { mode: 'tensor', schedule: 'megatron', batch: plan.batch, segments, outputs: [], buffers, devices, stageTraining };
}
