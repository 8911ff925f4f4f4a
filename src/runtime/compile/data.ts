/**
 * The data-parallel compiler: the whole model replicated on every device; each step every
 * device copies its shard of rows in, runs, copies its outputs out and, with gradient sync,
 * all-reduces a parameter-sized buffer over the group.
 */
import type { DataPlan } from '../../profiler/plan';
import type { Instruction, Program } from '../../profiler/program';
import { inputBytes, rowRanges, type CompileContext } from './common';
import { splitBatch } from '../inputs';
import { UserError } from '../../common/errors';

/** Validates explicit shards: one positive row count per device, adding up to the batch. */
export function checkShards(shards: number[], batch: number, devices: number): number[] {
  if (shards.length !== devices) {
    throw new UserError(`--shards gives ${shards.length} shard${shards.length === 1 ? '' : 's'} for ${devices} device${devices === 1 ? '' : 's'}; give one row count per device`);
  }
  if (shards.some((r) => !Number.isInteger(r) || r < 1)) throw new UserError(`--shards ${shards.join(',')}: every shard needs at least one row`);
  const total = shards.reduce((a, b) => a + b, 0);
  if (total !== batch) throw new UserError(`--shards ${shards.join(',')} adds up to ${total} rows, not the batch of ${batch}; make them add up to --batch`);
  return shards;
}

/** Rows per device of a data plan: its explicit shards, else as even a split as possible. */
export function resolveShards(plan: DataPlan, devices: number): number[] {
  return plan.shards ? checkShards(plan.shards, plan.batch, devices) : splitBatch(plan.batch, devices);
}

export function compileData(plan: DataPlan, ctx: CompileContext): Program {
  const shards = rowRanges(resolveShards(plan, ctx.devices));
  const grad = plan.gradSync === true && ctx.devices > 1 ? ctx.parameterCount : 0;
  const group = shards.map((_, r) => r);
  const allInputs = ctx.inputs.map((i) => i.name);
  const outputs = ctx.outputs.map((o) => o.name);
  return {
    mode: 'data',
    schedule: 'replicated',
    batch: plan.batch,
    segments: [{ id: 0, kind: 'whole', label: 'model' }],
    outputs: ctx.outputs,
    buffers: grad > 0 ? [{ name: 'gradients', dtype: 'float32', elements: grad, synthetic: true }] : [],
    devices: shards.map((rows, rank) => {
      const instructions: Instruction[] = [
        { op: 'scatter', micro: -1, rows, tensors: allInputs, bytes: inputBytes(ctx.inputs, allInputs, rows.count) },
        { op: 'run', micro: -1, segment: 0, rows: rows.count, phase: 'forward' },
        { op: 'gather', micro: -1, rows, tensors: outputs, bytes: 0 },
      ];
      if (grad > 0) instructions.push({ op: 'collective', collective: 'allreduce', group, buffer: 'gradients', bytes: grad * 4 });
      return { rank, stage: -1, segments: [0], instructions };
    }),
  };
}
