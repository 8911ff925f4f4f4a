/**
 * The pipeline training compiler: one stage per device, M micro-batches per step, each
 * micro-batch's forward flowing down the stages and its backward flowing back up:
 *
 *   F(m): scatter its rows (stage 0's inputs, the last stage's labels) · recv activations
 *         ← s−1 · run stage forward · send activations → s+1
 *   B(m): recv activation gradients ← s+1 · run stage backward · send input gradients → s−1
 *   after the last backward: run the stage's optimizer on the gradients summed over the
 *   micro-batches
 *
 * The schedule is the order of a stage's F and B ({@link stageWork}):
 *  - `gpipe` (fill–drain): every forward, then every backward; a stage keeps M micro-batches
 *    of activations at its peak;
 *  - `1f1b` (PipeDream-Flush): K−1−s forwards to warm up, then one forward and one backward
 *    in turn, then the remaining backwards; a stage keeps at most K−s micro-batches.
 * Both flush at the end of the step, so both compute the same gradients as one device on
 * the whole batch.
 */
import type { PipelinePlan, TrainPlan } from '../../profiler/plan';
import type { DeviceProgram, Instruction, Program, Segment, TrainingProgram } from '../../profiler/program';
import type { Partition, PipelineStage } from '../pipeline/partition';
import { inputBytes, rowRanges, type CompileContext, type PipelineTrainingContext } from './common';
import { cutBytes, groupsOf } from './pipeline';
import { assertNever } from '../../profiler/plan';

/** One unit of a stage's work: the forward or the backward of a micro-batch. */
export interface PipelineWork {
  pass: 'F' | 'B';
  micro: number;
}

/**
 * The order of stage `stage`'s forwards and backwards over `micro` micro-batches in a
 * `stages`-stage pipeline. Backwards go in micro-batch order on every stage, as the forwards
 * do, so each stage receives what it needs in the order its peer sends it.
 */
export function stageWork(schedule: PipelinePlan['schedule'], stage: number, stages: number, micro: number): PipelineWork[] {
  const F = (m: number): PipelineWork => ({ pass: 'F', micro: m });
  const B = (m: number): PipelineWork => ({ pass: 'B', micro: m });
  const all = Array.from({ length: micro }, (_, m) => m);
  switch (schedule) {
    case 'gpipe':
      return [...all.map(F), ...all.map(B)];
    case '1f1b': {
      const warm = Math.min(stages - 1 - stage, micro);
      const out = all.slice(0, warm).map(F);
      for (let m = warm; m < micro; m++) out.push(F(m), B(m - warm));
      for (let m = micro - warm; m < micro; m++) out.push(B(m));
      return out;
    }
    default:
      return assertNever(schedule, 'schedule');
  }
}

/** The most micro-batches whose forward has run and backward has not, at any point of `work`. */
export function peakStored(work: readonly PipelineWork[]): number {
  let held = 0;
  let peak = 0;
  for (const w of work) {
    held += w.pass === 'F' ? 1 : -1;
    peak = Math.max(peak, held);
  }
  return peak;
}

/** Segment ids of stage `s`: its forward, backward and optimizer. */
export function stageSegments(s: number): { forward: number; backward: number; optimizer: number } {
  return { forward: 3 * s, backward: 3 * s + 1, optimizer: 3 * s + 2 };
}

/**
 * A stage's instructions in work order, with one exchange reordered so that neighbouring
 * stages never both send to each other before receiving.
 *
 * In 1F1B's steady state stage s sends activations of micro-batch m to s+1 and then
 * receives the gradients of m−w from it, while s+1 sends exactly those gradients and then
 * receives m's activations. A send returns once its message is in the channel; messages that
 * do not fit the channel (several tensors, or activations over its few slots) wait for the
 * receiver — and both ranks wait for each other. So a backward's gradient send waits until
 * the next forward has received its activations (what Megatron-LM's point-to-point schedule
 * does with its send-forward-recv-backward pairs): on every pair of neighbours the upstream
 * stage sends first and the downstream stage receives first, whatever the message sizes.
 */
function orderCrossingTransfers(items: readonly Instruction[][], work: readonly PipelineWork[]): Instruction[] {
  const out: Instruction[] = [];
  let deferred: Instruction | null = null;
  items.forEach((list, i) => {
    let own = list;
    if (work[i]!.pass === 'B' && work[i + 1]?.pass === 'F') {
      const last = list[list.length - 1];
      if (last?.op === 'send') {
        deferred = last;
        own = list.slice(0, -1);
      }
    }
    if (deferred && work[i]!.pass === 'F') {
      // Right after this forward's receive (a stage that sends gradients has an upstream neighbour, so it has one).
      const pos = own.findIndex((x) => x.op === 'recv') + 1;
      out.push(...own.slice(0, pos), deferred, ...own.slice(pos));
      deferred = null;
      return;
    }
    out.push(...own);
  });
  return out;
}

/** Compiles a pipeline plan with a training part over a partition and its stages' training models. */
export function compileTrainPipeline(
  plan: PipelinePlan & { train: TrainPlan },
  part: Partition,
  ctx: CompileContext,
  models: PipelineTrainingContext,
): Program {
  const k = part.stages.length;
  const M = plan.microBatches;
  const micro = rowRanges(Array.from({ length: M }, () => plan.batch / M));
  const perRow = part.batchDim !== null;
  const segments: Segment[] = part.stages.flatMap((st): Segment[] => {
    const ids = stageSegments(st.index);
    return [
      { id: ids.forward, kind: 'stage-forward', label: `stage ${st.index} forward${st.index === k - 1 ? ' + loss' : ''}`, stage: st.index },
      { id: ids.backward, kind: 'stage-backward', label: `stage ${st.index} backward`, stage: st.index },
      { id: ids.optimizer, kind: 'optimizer', label: `stage ${st.index} optimizer (${plan.train.optimizer})` },
    ];
  });
  const peaks: number[] = [];
  const devices: DeviceProgram[] = part.stages.map((st) => {
    const s = st.index;
    const c = models.stages[s]!.context;
    const ids = stageSegments(s);
    const scattered = [...st.inputs.filter((i) => i.from === 'graph').map((i) => i.name), ...(s === k - 1 ? [models.labels] : [])];
    const forwardSends = groupsOf(st.outputs.flatMap((o) => o.to.flatMap((t): [number, string][] => (t === 'graph' ? [] : [[t, o.name]]))));
    const prev = s > 0 ? part.stages[s - 1]! : null;
    // Gradients go back under the names the receiving stage reads them; sorted on both ends.
    const gradsIn = [...c.outputGrads].sort((a, b) => (a.grad < b.grad ? -1 : 1));
    const gradsOut = [...c.inputGrads].sort((a, b) => (a.grad < b.grad ? -1 : 1));
    const bytesOf = (producer: PipelineStage, tensors: readonly string[], rows: number): number => cutBytes(producer, tensors, rows, perRow);
    const work = stageWork(plan.schedule, s, k, M);
    peaks.push(peakStored(work));
    const items = work.map((w): Instruction[] => {
      const rows = micro[w.micro]!;
      const m = w.micro;
      if (w.pass === 'F') {
        const out: Instruction[] = [];
        if (scattered.length > 0) out.push({ op: 'scatter', micro: m, rows, tensors: scattered, bytes: inputBytes(ctx.inputs, scattered, rows.count) });
        const recv = st.inputs.filter((i) => i.from !== 'graph').map((i) => i.name).sort();
        if (prev && recv.length > 0) out.push({ op: 'recv', micro: m, from: s - 1, tensors: recv, bytes: bytesOf(prev, recv, rows.count) });
        out.push({ op: 'run', micro: m, segment: ids.forward, rows: rows.count, phase: 'forward' });
        for (const g of forwardSends) out.push({ op: 'send', micro: m, to: g.stage, tensors: g.tensors, bytes: bytesOf(st, g.tensors, rows.count) });
        return out;
      }
      const out: Instruction[] = [];
      if (gradsIn.length > 0) out.push({ op: 'recv', micro: m, from: s + 1, tensors: gradsIn.map((g) => g.grad), bytes: bytesOf(st, gradsIn.map((g) => g.tensor), rows.count) });
      out.push({ op: 'run', micro: m, segment: ids.backward, rows: rows.count, phase: 'backward' });
      if (prev && gradsOut.length > 0) out.push({ op: 'send', micro: m, to: s - 1, tensors: gradsOut.map((g) => g.grad), bytes: bytesOf(prev, gradsOut.map((g) => g.tensor), rows.count) });
      return out;
    });
    const instructions = orderCrossingTransfers(items, work);
    instructions.push({ op: 'run', micro: -1, segment: ids.optimizer, rows: plan.batch, phase: 'optimizer' });
    return { rank: s, stage: s, segments: [ids.forward, ids.backward, ids.optimizer], instructions };
  });
  const stageTraining: TrainingProgram[] = models.stages.map(({ context: c }) => ({
    parameters: c.parameters.map((p) => ({ name: p.name, dims: p.dims })),
    loss: c.loss,
    optimizer: plan.train.optimizer,
    lr: plan.train.lr,
    ...c.optimizer,
    pipeline: { stash: c.stash, gradients: c.parameters.map((p) => ({ param: p.name, grad: p.grad })), scale: 1 / M },
  }));
  return { mode: 'pipeline', schedule: plan.schedule, batch: plan.batch, segments, outputs: [], buffers: [], devices, stageTraining, peakStored: peaks };
}
