/**
 * The run summary: measurement quality (how far the numbers can be trusted, see
 * quality.ts), per-device compute / communication / idle breakdown, step-time spread,
 * speedup against the one-device baseline, and the numerical check. Derived from the spans,
 * so it can be recomputed from any trace file.
 */
import { trainingSummary, type TrainingSummary } from './training-summary';
import { IDLE_CAUSES, SpanKind, zeroByCause, type IdleCauseOfSpan, type NumericalCheck, type Trace } from './trace-format';
import { blockRatioInterval, median, ratioInterval, spread, sum } from './stats';
import { pairedSchedule, speedupBlockPairs, speedupOf } from './speedup';
import { gpipeBubble } from './plan';
import type { PipelinePlan } from './plan';
import { measurementQuality, type MeasurementQuality } from './quality';
import { memorySummary, type MemorySummary } from './memory-summary';

export interface DeviceSummary {
  id: string;
  label: string;
  kind: string;
  provider: string;
  /** True when the device shares its physical unit with another device of the run. */
  sharesPhysicalUnit: boolean;
  software: boolean;
  /** Totals over all measured steps, µs. */
  computeUs: number;
  commUs: number;
  idleUs: number;
  idleByCauseUs: Record<IdleCauseOfSpan, number>;
  /** compute / (compute + comm + idle). */
  utilization: number;
  /** Median compute time per step, µs. */
  computePerStepUs: number;
}

export interface ProfileSummary {
  mode: string;
  /** What produced the spans: measured, predicted, imported:… */
  source: string;
  model: string | null;
  steps: number;
  batch: number | null;
  stepTimeUs: { median: number; p10: number; p90: number };
  /** Samples per second at the median step time, when the batch is known. */
  throughputPerS: number | null;
  devices: DeviceSummary[];
  /**
   * How far this run's timings can be trusted: verdict, reasons, CPU and wait shares per
   * device, other processes' load, step spread and the step-time noise findings must beat.
   */
  measurementQuality: MeasurementQuality;
  /** Baseline median step time / this run's median step time; null without a baseline. */
  speedupVsOneDevice: number | null;
  /** 90 % bootstrap interval of the speedup, when the baseline's step times are recorded; over whole blocks where the runs alternated in blocks (meta.timedBlocks). */
  speedupInterval: { lo: number; hi: number } | null;
  /** False when measurement quality is poor: a speedup then says more about the machine than the plan. */
  speedupReliable: boolean;
  /**
   * The one-device baseline: what it ran, its median step, and how many pairs of interleaved
   * blocks the speedup was read from (absent: the ratio of the two medians).
   */
  baseline: { description: string; stepTimeUs: number; blockPairs?: number } | null;
  /**
   * The capture check's result (`--capture-check`): median step time with span capture on
   * over the same steps with it off, minus 1, with a 90 % bootstrap interval; absent without it.
   */
  captureOverhead?: { ratio: number; lo: number; hi: number; capturedUs: number; uncapturedUs: number; steps: number };
  /**
   * WebGPU devices with GPU timestamps: the share of their operator-profiled runs' wall time
   * during which the GPU ran a dispatch (`meta.gpuTimestamps`).
   */
  gpuBusy?: { device: string; share: number; kernels: number; runs: number }[];
  /**
   * The second operating point measured in the same run: a pipeline's other micro-batch count
   * (`meta.microProbe`), a data plan's doubled batch (`meta.batchProbe`), or a tensor plan's
   * batch run data parallel (`meta.dataProbe`, `mode` 'data').
   */
  probe?: { microBatches?: number; batch?: number; mode?: 'data'; stepTimeUs: number; steps: number };
  numericalCheck: NumericalCheck | null;
  /** Share of all device time spent computing / communicating / idle. */
  totals: { computeShare: number; commShare: number; idleShare: number };
  /** Pipeline runs: bubble idle over all stages' step time. */
  bubbleFraction?: number;
  /** Pipeline runs: GPipe's (K−1)/(M+K−1) for this run's K stages and M micro-batches. */
  gpipeBubbleFraction?: number;
  /** Pipeline runs: max / mean stage compute. */
  stageBalance?: number;
  /** Pipeline runs: one entry per stage. */
  stages?: StageSummary[];
  /** Training runs: each part of a step per device, and the loss. */
  training?: TrainingSummary;
  /** Memory per device (computed) and the runner process's measured growth, when the trace records them. */
  memory?: MemorySummary;
}

export interface StageSummary {
  index: number;
  /** Device id the stage ran on. */
  device: string;
  /** Number of ONNX nodes in the stage. */
  nodes: number;
  /** First and last node of the stage (topological order). */
  firstNode: string | null;
  lastNode: string | null;
  /** Compute over all measured steps, µs. */
  computeUs: number;
  /** Bubble idle / total step time on this stage's lane. */
  bubbleFraction: number;
}

/** Computes the summary of a trace whose idle spans have been derived. */
export function summarize(trace: Trace): ProfileSummary {
  const s = trace.spans;
  const nLanes = trace.lanes.length;
  const compute = new Float64Array(nLanes);
  const comm = new Float64Array(nLanes);
  const idle = new Float64Array(nLanes);
  const idleBy = Array.from({ length: nLanes }, zeroByCause);
  const measured = new Set(trace.steps.map((w) => w.index));
  const computeByStep = Array.from({ length: nLanes }, () => new Map<number, number>());
  for (let i = 0; i < s.count; i++) {
    if (s.parent[i] >= 0 || !measured.has(s.step[i])) continue;
    const l = s.lane[i];
    const d = s.dur[i];
    if (s.kind[i] === SpanKind.compute) {
      compute[l] += d;
      const m = computeByStep[l];
      m.set(s.step[i], (m.get(s.step[i]) ?? 0) + d);
    } else if (s.kind[i] === SpanKind.comm) {
      comm[l] += d;
    } else if (s.kind[i] === SpanKind.idle) {
      idle[l] += d;
      const cause = IDLE_CAUSES[s.cause[i]];
      if (cause && cause !== 'none') idleBy[l][cause] += d;
    }
  }
  const stepTimes = trace.steps.map((w) => w.endUs - w.startUs);
  const st = spread(stepTimes);
  const devices: DeviceSummary[] = trace.lanes.map((lane, l) => {
    const dev = trace.meta.devices[lane.device];
    const total = compute[l] + comm[l] + idle[l];
    return {
      id: dev?.id ?? lane.label,
      label: lane.label,
      kind: dev?.kind ?? 'cpu',
      provider: dev?.provider ?? '',
      sharesPhysicalUnit: dev?.sharesPhysicalUnit ?? false,
      software: dev?.software ?? false,
      computeUs: compute[l],
      commUs: comm[l],
      idleUs: idle[l],
      idleByCauseUs: idleBy[l],
      utilization: total > 0 ? compute[l] / total : 0,
      computePerStepUs: spread([...computeByStep[l].values()]).median || 0,
    };
  });
  const all = sum(compute) + sum(comm) + sum(idle);
  const plan = trace.meta.plan;
  const pipeline = plan.mode === 'pipeline' ? pipelineFields(trace, plan, compute, idleBy, sum(stepTimes)) : {};
  const batch = plan.mode !== 'imported' && typeof plan.batch === 'number' ? plan.batch : null;
  const base = trace.meta.baseline;
  const quality = measurementQuality(trace);
  const speedup = speedupOf(trace, stepTimes);
  const blockPairs = speedupBlockPairs(trace, stepTimes);
  const training = trainingSummary(trace);
  const memory = memorySummary(trace);
  return {
    mode: trace.meta.mode,
    source: trace.meta.source,
    model: trace.meta.model?.path ?? null,
    steps: trace.steps.length,
    batch,
    stepTimeUs: st,
    throughputPerS: batch !== null && st.median > 0 ? (batch * 1e6) / st.median : null,
    devices,
    speedupInterval: base?.stepTimesUs && base.stepTimesUs.length > 0 && stepTimes.length > 0 ? (pairedSchedule(trace) ? blockRatioInterval(base.stepTimesUs, stepTimes, trace.meta.timedBlocks!) : ratioInterval(base.stepTimesUs, stepTimes)) : null,
    measurementQuality: quality,
    speedupVsOneDevice: speedup,
    speedupReliable: quality.verdict !== 'poor',
    baseline: base ? { description: base.description, stepTimeUs: base.stepTimeUs.median, ...(blockPairs > 0 ? { blockPairs } : {}) } : null,
    ...captureOverheadOf(trace, stepTimes),
    ...probeOf(trace),
    ...gpuBusyOfTrace(trace),
    numericalCheck: trace.meta.numericalCheck ?? null,
    totals: {
      computeShare: all > 0 ? sum(compute) / all : 0,
      commShare: all > 0 ? sum(comm) / all : 0,
      idleShare: all > 0 ? sum(idle) / all : 0,
    },
    ...pipeline,
    ...(training ? { training } : {}),
    ...(memory ? { memory } : {}),
  };
}

function pipelineFields(
  trace: Trace,
  plan: PipelinePlan,
  compute: Float64Array,
  idleBy: { bubble: number }[],
  totalStepUs: number,
): Pick<ProfileSummary, 'bubbleFraction' | 'gpipeBubbleFraction' | 'stageBalance' | 'stages'> {
  const k = trace.lanes.length;
  const m = typeof plan.microBatches === 'number' ? plan.microBatches : NaN;
  const stageNodes = plan.partition?.stageNodes ?? [];
  const stages: StageSummary[] = trace.lanes.map((lane, l) => {
    const nodes = stageNodes[l] ?? [];
    return {
      index: l,
      device: trace.meta.devices[lane.device]?.id ?? lane.label,
      nodes: nodes.length,
      firstNode: nodes[0] ?? null,
      lastNode: nodes[nodes.length - 1] ?? null,
      computeUs: compute[l],
      bubbleFraction: totalStepUs > 0 ? idleBy[l].bubble / totalStepUs : 0,
    };
  });
  const meanCompute = sum(compute) / Math.max(1, k);
  return {
    bubbleFraction: totalStepUs > 0 ? sum(idleBy.map((b) => b.bubble)) / (k * totalStepUs) : 0,
    gpipeBubbleFraction: gpipeBubble(k, m),
    stageBalance: meanCompute > 0 ? Math.max(...compute) / meanCompute : 1,
    stages,
  };
}

/** The capture check's overhead: captured over uncaptured median step, with its interval. */
function captureOverheadOf(trace: Trace, captured: number[]): Pick<ProfileSummary, 'captureOverhead'> {
  const off = trace.meta.captureCheck?.stepTimesUs ?? [];
  if (off.length === 0 || captured.length === 0) return {};
  const on = median(captured);
  const offMed = median(off);
  if (!(on > 0) || !(offMed > 0)) return {};
  const iv = ratioInterval(captured, off);
  return { captureOverhead: { ratio: on / offMed - 1, lo: iv.lo - 1, hi: iv.hi - 1, capturedUs: on, uncapturedUs: offMed, steps: off.length } };
}

/** The GPU's busy share per WebGPU device with timestamps, when the trace has them. */
function gpuBusyOfTrace(trace: Trace): Pick<ProfileSummary, 'gpuBusy'> {
  const g = (trace.meta.gpuTimestamps ?? []).filter((x) => x.computeUs > 0);
  if (g.length === 0) return {};
  return { gpuBusy: g.map((x) => ({ device: trace.meta.devices[x.device]?.id ?? `device ${x.device}`, share: x.busyUs / x.computeUs, kernels: x.kernels, runs: x.runs })) };
}

/** The run's probe (second operating point), when it measured one. */
function probeOf(trace: Trace): Pick<ProfileSummary, 'probe'> {
  const { microProbe: mp, batchProbe: bp, dataProbe: dp } = trace.meta;
  const times = mp?.stepTimesUs ?? bp?.stepTimesUs ?? dp?.stepTimesUs ?? [];
  if (times.length === 0) return {};
  return {
    probe: { ...(mp ? { microBatches: mp.microBatches } : {}), ...(bp ? { batch: bp.batch } : {}), ...(dp && !mp && !bp ? { mode: 'data' as const } : {}), stepTimeUs: median(times), steps: times.length },
  };
}
