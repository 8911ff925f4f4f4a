/**
 * The pipeline compiler: one stage model per device, micro-batches flowing through the
 * stages. The schedule is the order of each stage's instructions: GPipe (fill–drain) runs
 * every micro-batch's forward in order, so a stage starts micro-batch m as soon as its
 * inputs for m have arrived.
 */
import type { PipelinePlan } from '../../profiler/plan';
import type { Instruction, Program, RowRange, Segment } from '../../profiler/program';
import type { Partition, PipelineStage } from '../pipeline/partition';
import { inputBytes, rowRanges, type CompileContext } from './common';
import { assertNever } from '../../profiler/plan';
import { UserError } from '../../common/errors';

/** Tensors a stage exchanges with each peer stage, both ends ordered by name so they match. */
export function groupsOf(pairs: [number, string][]): { stage: number; tensors: string[] }[] {
  const by = new Map<number, string[]>();
  for (const [stage, name] of pairs) by.set(stage, [...(by.get(stage) ?? []), name]);
  return [...by.entries()].sort((a, b) => a[0] - b[0]).map(([stage, tensors]) => ({ stage, tensors: tensors.sort() }));
}

/** Bytes of the named stage outputs for `rows` rows (cut sizes are per row when the batch is symbolic). */
export function cutBytes(st: PipelineStage, names: readonly string[], rows: number, perRow: boolean): number {
  let b = 0;
  for (const o of st.outputs) if (names.includes(o.name)) b += o.bytes ?? 0;
  return perRow ? b * rows : b;
}

/** One micro-batch through one stage, in order: inputs in, receive, run, send, outputs out. */
function stageMicro(st: PipelineStage, part: Partition, ctx: CompileContext, micro: number, rows: RowRange, producer: (name: string) => PipelineStage): Instruction[] {
  const graphInputs = st.inputs.filter((i) => i.from === 'graph').map((i) => i.name);
  const recv = groupsOf(st.inputs.flatMap((i): [number, string][] => (i.from === 'graph' ? [] : [[i.from, i.name]])));
  const send = groupsOf(st.outputs.flatMap((o) => o.to.flatMap((t): [number, string][] => (t === 'graph' ? [] : [[t, o.name]]))));
  const graphOut = new Set(ctx.outputs.map((o) => o.name));
  const gathered = st.outputs.filter((o) => o.to.includes('graph') && graphOut.has(o.name)).map((o) => o.name);
  const perRow = part.batchDim !== null;
  const out: Instruction[] = [];
  if (graphInputs.length > 0) out.push({ op: 'scatter', micro, rows, tensors: graphInputs, bytes: inputBytes(ctx.inputs, graphInputs, rows.count) });
  for (const g of recv) {
    out.push({ op: 'recv', micro, from: g.stage, tensors: g.tensors, bytes: cutBytes(producer(g.tensors[0]), g.tensors, rows.count, perRow) });
  }
  out.push({ op: 'run', micro, segment: st.index, rows: rows.count, phase: 'forward' });
  for (const g of send) out.push({ op: 'send', micro, to: g.stage, tensors: g.tensors, bytes: cutBytes(st, g.tensors, rows.count, perRow) });
  if (gathered.length > 0) out.push({ op: 'gather', micro, rows, tensors: gathered, bytes: 0 });
  return out;
}

/**
 * Compiles a pipeline plan over a partition (one stage per device). The partition comes
 * from calibration or from the plan's cuts; the compiler only orders the work.
 */
export function compilePipeline(plan: PipelinePlan, part: Partition, ctx: CompileContext): Program {
  const micro = rowRanges(Array.from({ length: plan.microBatches }, () => plan.batch / plan.microBatches));
  const producerOf = new Map<string, PipelineStage>();
  for (const st of part.stages) for (const o of st.outputs) producerOf.set(o.name, st);
  const producer = (name: string): PipelineStage => producerOf.get(name)!;
  const segments: Segment[] = part.stages.map((st) => ({
    id: st.index,
    kind: 'stage',
    label: `stage ${st.index}`,
    stage: st.index,
    nodes: st.nodeIndices.map((i) => ctx.nodeNames[i] ?? String(i)),
  }));
  const devices = part.stages.map((st) => {
    const instructions: Instruction[] = [];
    switch (plan.schedule) {
      case 'gpipe':
        micro.forEach((rows, m) => instructions.push(...stageMicro(st, part, ctx, m, rows, producer)));
        break;
      case '1f1b':
        // The plan refuses it without training (makePlan); a hand-made plan gets the same line.
        throw new UserError('--schedule 1f1b interleaves forward and backward micro-batches, so it needs --train (inference has no backward); use --schedule gpipe');
      default:
        assertNever(plan.schedule, 'schedule');
    }
    return { rank: st.index, stage: st.index, segments: [st.index], instructions };
  });
  return { mode: 'pipeline', schedule: plan.schedule, batch: plan.batch, segments, outputs: ctx.outputs, buffers: [], devices };
}
