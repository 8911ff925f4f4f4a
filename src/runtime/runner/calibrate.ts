/**
 * Before a pipeline compiles: measured per-node costs on the first device (ONNX Runtime's
 * profiler with graph optimisations off, so events carry the model's node names), then the
 * partition into one stage per device (balanced, or along the plan's cuts).
 */
import { UserError } from '../../common/errors';
import type { CalibrationRecord, PipelinePlan } from '../../profiler/plan';
import type { SpanColumnsLocal } from '../spans';
import type { ModelIR } from '../onnx/model';
import type { DeviceInfo } from '../device/discovery';
import { partitionFromCuts, partitionPipeline, type Partition } from '../pipeline/partition';
import { compileData } from '../compile/data';
import type { CompileContext } from '../compile/common';
import { executeProgram, type RunnerHooks } from './workers';
import type { SharedInput } from '../protocol';

/** Checks the pipeline plan against the model and devices before any work starts. */
export function checkPipelinePlan(plan: PipelinePlan, ir: ModelIR, k: number, label: string): void {
  const m = plan.microBatches;
  if (plan.stages !== undefined && plan.stages !== k) {
    throw new UserError(
      `--stages ${plan.stages} does not match the ${k} device${k === 1 ? '' : 's'} of --devices ${plan.devices}; the pipeline runs one stage per device (e.g. --devices cpu:${plan.stages})`,
    );
  }
  if (!Number.isInteger(m) || m < 1) throw new UserError(`--micro-batches must be a positive integer, got ${m}`);
  if (plan.batch % m !== 0) {
    const near = [m - 1, m + 1, m - 2, m + 2].filter((x) => x >= 1 && plan.batch % x === 0);
    throw new UserError(
      `--batch ${plan.batch} is not divisible by --micro-batches ${m}; use a micro-batch count that divides the batch${near.length ? ` (e.g. ${near[0]})` : ''}`,
    );
  }
  if (k > ir.nodes.length) throw new UserError(`${label}: ${k} stages is more than the model's ${ir.nodes.length} nodes; use fewer devices`);
}

/** Per node name, the fastest of the runs' summed operator time. */
function fastestPerNode(cols: SpanColumnsLocal): Map<string, number> {
  // Per run (the enclosing compute span) and node: summed time; then the minimum over runs.
  // On a shared machine interference only ever adds time, so the minimum is the steadiest
  // estimate (the two calibration sizes must compare cleanly).
  const perRun = new Map<string, Map<number, number>>();
  for (let i = 0; i < cols.count; i++) {
    const run = cols.parent[i];
    if (run < 0) continue;
    const name = cols.strings[cols.name[i]];
    let runs = perRun.get(name);
    if (!runs) perRun.set(name, (runs = new Map()));
    runs.set(run, (runs.get(run) ?? 0) + cols.dur[i]);
  }
  const out = new Map<string, number>();
  for (const [name, runs] of perRun) out.set(name, Math.min(...runs.values()));
  return out;
}

export interface CalibrationContext {
  modelPath: string;
  device: DeviceInfo;
  inputs: SharedInput[];
  compile: Omit<CompileContext, 'devices'>;
  profileDir: string;
}

const CAL_STEPS = 5;

/** Per-node µs at `rows` rows on the calibration device. */
async function calibrateAt(rows: number, c: CalibrationContext, hooks: RunnerHooks): Promise<Map<string, number>> {
  const program = compileData({ mode: 'data', devices: c.device.id, batch: rows, steps: CAL_STEPS, warmup: 1, seed: 0 }, { ...c.compile, devices: 1 });
  const [done] = await executeProgram(
    program,
    {
      devices: [c.device],
      segmentPaths: { 0: c.modelPath },
      inputs: c.inputs,
      // Only operator-profiled steps are needed: their operator spans are the calibration.
      steps: 0,
      warmup: 0,
      capture: { spans: true, profiledSteps: CAL_STEPS },
      profileDir: c.profileDir,
      graphOptimizationLevel: 'disabled',
      phase: 'load',
      message: 'calibrating per-node costs',
    },
    hooks,
  );
  return fastestPerNode(done.spans!);
}

/**
 * How measured node costs become a partition. Within 2 % of the best bottleneck, cuts that
 * carry fewer bytes win (e.g. at a layer boundary rather than beside a residual); transfers
 * are charged at ~5 GB/s, a same-run shared-memory copy rate on small machines.
 */
function partitionOptions(dimValues: Record<string, number>) {
  return { costSource: 'measured' as const, dimValues, slack: 0.02, commCostUsPerByte: 1 / 5000 };
}

/**
 * The partition a run without `--cuts` makes from node costs measured at another micro-batch
 * size (a calibration record's `alt`): what a run at that size would cut.
 */
export function partitionFromCosts(ir: ModelIR, costs: Record<string, number>, k: number, dimValues: Record<string, number>): Partition {
  const nodeCostUs = Float64Array.from(ir.nodes, (n) => costs[n.name] ?? 0);
  return partitionPipeline(ir, nodeCostUs, k, partitionOptions(dimValues));
}

export interface PreparedPartition {
  partition: Partition;
  calibration: CalibrationRecord;
}

const round = (c: number): number => Math.round(c * 100) / 100;

/**
 * Calibrates at the micro-batch size and at a second size (so findings can tell a
 * micro-batch's fixed work from its per-row work), then partitions.
 */
export async function preparePartition(
  plan: PipelinePlan,
  ir: ModelIR,
  c: CalibrationContext,
  dimValues: Record<string, number>,
  k: number,
  hooks: RunnerHooks,
  dryRun: boolean,
): Promise<PreparedPartition> {
  const microRows = plan.batch / plan.microBatches;
  // Explicit cuts are checked before the calibration run, so a typo fails at once.
  if (plan.cuts && plan.cuts.length > 0) partitionFromCuts(ir, plan.cuts, { dimValues });
  const byName = await calibrateAt(microRows, c, hooks);
  const altRows = microRows >= 2 ? Math.floor(microRows / 2) : plan.batch >= 2 ? 2 : null;
  const byNameAlt = altRows !== null && !dryRun ? await calibrateAt(altRows, c, hooks) : null;
  const nodeCostUs = new Float64Array(ir.nodes.length);
  const nodeCostRecord: Record<string, number> = {};
  ir.nodes.forEach((n, i) => {
    const cost = byName.get(n.name) ?? 0;
    nodeCostUs[i] = cost;
    if (cost > 0) nodeCostRecord[n.name] = round(cost);
  });
  const altRecord: Record<string, number> = {};
  if (byNameAlt) for (const [name, cost] of byNameAlt) if (cost > 0) altRecord[name] = round(cost);
  const partition =
    plan.cuts && plan.cuts.length > 0 ? partitionFromCuts(ir, plan.cuts, { ...partitionOptions(dimValues), nodeCostUs }) : partitionPipeline(ir, nodeCostUs, k, partitionOptions(dimValues));
  if (partition.stages.length !== k) {
    throw new UserError(`--cuts gives ${partition.stages.length} stages but --devices ${plan.devices} has ${k} devices; give ${k - 1} cut${k === 2 ? '' : 's'}`);
  }
  return {
    partition,
    calibration: {
      device: c.device.id,
      rows: microRows,
      runs: CAL_STEPS,
      note: 'per-node times from ONNX Runtime profiling with graph optimisations off, at the micro-batch size: the fastest of the runs',
      nodeCostUs: nodeCostRecord,
      ...(byNameAlt && altRows !== null ? { alt: { rows: altRows, nodeCostUs: altRecord } } : {}),
    },
  };
}
