/**
 * The hybrid compilers. Data × tensor: the batch is split over D replicas, and each replica is
 * a tensor-parallel group of T consecutive devices running the tensor compiler's program on
 * its rows. Replica r holds ranks r·T … r·T + T − 1; its activation all-reduces name that
 * group only, so the communicator sums partial results inside the replica (a sub-communicator
 * per group) and never across replicas. One step of device (r, t):
 *
 *   scatter rows of replica r → run part 0 of shard t → all-reduce over replica r → … → gather (t = 0)
 *
 * The replicas hold the same weight slices, so they share the segment models: segment
 * `t × K + part` is part `part` of tensor rank t's chain, loaded by device t of every replica.
 *
 * Data × pipeline: each replica is a pipeline of P consecutive devices, one stage each, over
 * one partition shared by the replicas (stage s is loaded by device s of every replica); the
 * pipeline compiler orders each replica's micro-batches, and its sends and receives go to the
 * replica's own stages.
 */
import type { HybridPipelinePlan, HybridTensorPlan } from '../../profiler/plan';
import type { DeviceProgram, Instruction, Program } from '../../profiler/program';
import type { PipelinePlan } from '../../profiler/plan';
import { UserError } from '../../common/errors';
import type { CompileContext } from './common';
import { compileTensor, type TensorPrepared } from './tensor';
import { compilePipeline } from './pipeline';
import type { Partition } from '../pipeline/partition';

/** Rows each replica runs: the batch split evenly over the replicas. */
export function replicaRows(plan: { batch: number; data: number }): number {
  if (plan.batch % plan.data !== 0) {
    throw new UserError(`--batch ${plan.batch} does not split evenly over --data ${plan.data} replicas; give a batch that is a multiple of ${plan.data}`);
  }
  return plan.batch / plan.data;
}

/** The ranks of replica `r` of a hybrid with `size` devices per replica. */
export function replicaGroup(r: number, size: number): number[] {
  return Array.from({ length: size }, (_, t) => r * size + t);
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

/** Checks the device count of a hybrid: data × the degree inside each replica. */
function checkDevices(plan: { data: number; devices: string }, inner: number, flag: string, devices: number): void {
  if (devices !== plan.data * inner) {
    throw new UserError(`--data ${plan.data} × ${flag} ${inner} needs ${plan.data * inner} devices, but --devices ${plan.devices} gives ${devices}; give --devices with ${plan.data * inner}`);
  }
}

/** One replica's program placed once per replica: ranks and rows moved, segments shared. */
function replicate(replica: Program, data: number, rows: number, plan: { batch: number }, schedule: string, ctx: CompileContext): Program {
  const size = replica.devices.length;
  const devices: DeviceProgram[] = [];
  for (let r = 0; r < data; r++) {
    const group = replicaGroup(r, size);
    for (const d of replica.devices) {
      devices.push({ rank: group[d.rank]!, stage: d.stage, segments: d.segments, instructions: d.instructions.map((ins) => placed(ins, r * rows, group)) });
    }
  }
  return { mode: 'hybrid', schedule, batch: plan.batch, segments: replica.segments, outputs: ctx.outputs, buffers: replica.buffers, devices };
}

/**
 * Compiles a data × tensor plan over a shard plan for `plan.tensor` devices.
 * @throws UserError when the device count is not data × tensor, or the batch does not split evenly.
 */
export function compileHybrid(plan: HybridTensorPlan, prep: TensorPrepared, ctx: CompileContext): Program {
  const { data, tensor } = plan;
  checkDevices(plan, tensor, '--tensor', ctx.devices);
  const rows = replicaRows(plan);
  // Every replica runs the same tensor program on its own rows; only ranks and rows differ.
  const replica = compileTensor({ mode: 'tensor', devices: plan.devices, batch: rows, steps: plan.steps, warmup: plan.warmup, seed: plan.seed, tensor }, prep, { ...ctx, devices: tensor });
  return replicate(replica, data, rows, plan, `data ${data} × tensor ${tensor}`, ctx);
}

/** The pipeline plan of one replica of a data × pipeline hybrid (its rows, its stages). */
export function replicaPipelinePlan(plan: HybridPipelinePlan): PipelinePlan {
  return {
    mode: 'pipeline',
    devices: plan.devices,
    batch: replicaRows(plan),
    steps: plan.steps,
    warmup: plan.warmup,
    seed: plan.seed,
    schedule: plan.schedule,
    microBatches: plan.microBatches,
    stages: plan.pipeline,
    ...(plan.cuts ? { cuts: plan.cuts } : {}),
  };
}

/**
 * Compiles a data × pipeline plan over the partition of one replica (`plan.pipeline` stages).
 * @throws UserError when the device count is not data × pipeline, or the batch does not split evenly.
 */
export function compileHybridPipeline(plan: HybridPipelinePlan, partition: Partition, ctx: CompileContext): Program {
  checkDevices(plan, plan.pipeline, '--pipeline', ctx.devices);
  const rows = replicaRows(plan);
  const replica = compilePipeline(replicaPipelinePlan(plan), partition, { ...ctx, devices: plan.pipeline });
  return replicate(replica, plan.data, rows, plan, `data ${plan.data} × pipeline ${plan.pipeline} (${plan.schedule})`, ctx);
}
