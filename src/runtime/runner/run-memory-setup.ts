/**
 * The runner's part of the memory per device: the parameter bytes of the segment models the
 * devices loaded (read back from the files they loaded), the plan's stages or split, what
 * the workers recorded, the process's measured growth and, with a capacity, which plans fit.
 * The figures themselves are computed in run-memory.ts.
 */
import type { Plan } from '../../profiler/plan';
import type { Program } from '../../profiler/program';
import type { RunMemory } from '../../profiler/memory-format';
import type { Prepared } from '../compile';
import { loadModel, type ModelIR } from '../onnx/model';
import { fittingPlans, planMemoryTable, runMemory, type RunInput } from '../run-memory';
import type { DoneMessage } from './workers';

/** Micro-batches the memory table assumes for a pipeline plan when the run was not one (as `plan` does). */
const TABLE_MICRO_BATCHES = 4;

export interface RunMemorySetup {
  ir: ModelIR;
  plan: Plan;
  prepared: Prepared;
  program: Program;
  inputs: readonly RunInput[];
  dims: Record<string, number>;
  segmentPaths: Record<number, string>;
  done: readonly DoneMessage[];
  process?: RunMemory['process'];
  /** Capacity per device (`--device-memory`), bytes. */
  capacityBytes?: number;
}

/** The run's `meta.memory`. */
export async function memoryOfRun(s: RunMemorySetup): Promise<RunMemory> {
  const segmentParameterBytes = new Map<number, number>();
  for (const seg of s.program.segments) {
    if (seg.kind !== 'stage' && seg.kind !== 'shard') continue;
    const path = s.segmentPaths[seg.id];
    // Segment models Parallax wrote itself: only their weights are counted, so no digest.
    if (path !== undefined) segmentParameterBytes.set(seg.id, (await loadModel(path, { hash: false })).parameterBytes);
  }
  const p = s.prepared;
  const partition = p.mode === 'pipeline' || p.mode === 'hybrid-pipeline' ? p.partition : null;
  return runMemory({
    ir: s.ir,
    program: s.program,
    inputs: s.inputs,
    dims: s.dims,
    segmentParameterBytes,
    ...(partition ? { stageNodes: partition.stages.map((st) => st.nodeIndices.map((i) => s.ir.nodes[i]!.name)), stageParameterBytes: partition.stages.map((st) => st.parameterBytes) } : {}),
    ...(p.mode === 'tensor' || p.mode === 'hybrid' ? { split: { tensors: p.shard.splitTensors, devices: p.shard.devices } } : {}),
    segmentOutputs: s.done.map((d) => d.segmentOutputs),
    stash: s.done.map((d) => d.training?.stash),
    ...(s.process ? { process: s.process } : {}),
    ...(s.capacityBytes !== undefined ? { capacity: capacityOf(s, s.capacityBytes) } : {}),
  });
}

/** Which plans of the model over the run's devices and batch fit the capacity. */
function capacityOf(s: RunMemorySetup, capacityBytes: number): NonNullable<RunMemory['capacity']> {
  const devices = s.program.devices.length;
  const m = 'microBatches' in s.plan ? s.plan.microBatches : TABLE_MICRO_BATCHES;
  const table = planMemoryTable(s.ir, { devices, batch: s.plan.batch, microBatches: s.plan.batch % m === 0 ? m : 1, capacityBytes, dimValues: s.dims });
  return fittingPlans(table, capacityBytes, trainingFactor(s.program, s.ir.parameterBytes));
}

/**
 * Training: the bytes of gradients and optimizer state per parameter byte of the model
 * (trainable share × (1 + optimizer slots per parameter)); 0 for inference.
 */
export function trainingFactor(program: Program, parameterBytes: number): number {
  const parts = program.stageTraining ?? (program.training ? [program.training] : []);
  if (parts.length === 0 || parameterBytes <= 0) return 0;
  let trainable = 0;
  let params = 0;
  let slots = 0;
  for (const t of parts) {
    trainable += t.parameters.reduce((n, q) => n + q.dims.reduce((a, b) => a * b, 1) * 4, 0);
    params += t.parameters.length;
    slots += t.state.length;
  }
  return (trainable / parameterBytes) * (1 + (params > 0 ? slots / params : 0));
}
