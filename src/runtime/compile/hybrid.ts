/**
 * The data × tensor hybrid compiler: the batch is split over D replicas, and each replica is
 * a tensor-parallel group of T consecutive devices running the tensor compiler's program on
 * its rows. Replica r holds ranks r·T … r·T + T − 1; its activation all-reduces name that
 * group only, so the communicator sums partial results inside the replica (a sub-communicator
 * per group) and never across replicas. One step of device (r, t):
 *
 *   scatter rows of replica r → run part 0 of shard t → all-reduce over replica r → … → gather (t = 0)
 *
 * The replicas hold the same weight slices, so they share the segment models: segment
 * `t × K + part` is part `part` of tensor rank t's chain, loaded by device t of every replica.
 */
import type { HybridPlan } from '../../profiler/plan';
import type { DeviceProgram, Instruction, Program } from '../../profiler/program';
import { UserError } from '../../common/errors';
import type { CompileContext } from './common';
import { compileTensor, type TensorPrepared } from './tensor';

/** Rows each replica runs: the batch split evenly over the replicas. */
export function replicaRows(plan: Pick<HybridPlan, 'batch' | 'data'>): number {
  if (plan.batch % plan.data !== 0) {
    throw new UserError(`--batch ${plan.batch} does not split evenly over --data ${plan.data} replicas; give a batch that is a multiple of ${plan.data}`);
  }
  return plan.batch / plan.data;
}

/** The ranks of replica `r` of a hybrid with `tensor` devices per replica. */
export function replicaGroup(r: number, tensor: number): number[] {
  return Array.from({ length: tensor }, (_, t) => r * tensor + t);
}

/** Moves an instruction of a replica's tensor program to its place in the hybrid: rows shifted, groups renamed to world ranks. */
function placed(ins: Instruction, rowOffset: number, group: readonly number[]): Instruction {
  switch (ins.op) {
    case 'scatter':
    case 'gather':
      return { ...ins, rows: { start: ins.rows.start + rowOffset, count: ins.rows.count } };
    case 'collective':
    case 'collective-start':
      return { ...ins, group: ins.group.map((t) => group[t]!) };
    case 'recv':
      return { ...ins, from: group[ins.from]! };
    case 'send':
      return { ...ins, to: group[ins.to]! };
    case 'run':
    case 'collective-wait':
      return ins;
    default: {
      const never: never = ins;
      throw new Error(`unknown instruction ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Compiles a data × tensor plan over a shard plan for `plan.tensor` devices.
 * @throws UserError when the device count is not data × tensor, or the batch does not split evenly.
 */
export function compileHybrid(plan: HybridPlan, prep: TensorPrepared, ctx: CompileContext): Program {
  const { data, tensor } = plan;
  if (ctx.devices !== data * tensor) {
    throw new UserError(`--data ${data} × --tensor ${tensor} needs ${data * tensor} devices, but --devices ${plan.devices} gives ${ctx.devices}; give --devices with ${data * tensor}`);
  }
  const rows = replicaRows(plan);
  // Every replica runs the same tensor program on its own rows; only ranks and rows differ.
  const replica = compileTensor({ mode: 'tensor', devices: plan.devices, batch: rows, steps: plan.steps, warmup: plan.warmup, seed: plan.seed, tensor }, prep, { ...ctx, devices: tensor });
  const devices: DeviceProgram[] = [];
  for (let r = 0; r < data; r++) {
    const group = replicaGroup(r, tensor);
    for (const d of replica.devices) {
      devices.push({ rank: group[d.rank]!, stage: -1, segments: d.segments, instructions: d.instructions.map((ins) => placed(ins, r * rows, group)) });
    }
  }
  return { mode: 'hybrid', schedule: `data ${data} × tensor ${tensor}`, batch: plan.batch, segments: replica.segments, outputs: ctx.outputs, buffers: replica.buffers, devices };
}
