/**
 * Analyses of a trace, bundled: `analyse(trace)` runs them all from one shared index of the
 * spans and returns plain data (JSON-safe: arrays and numbers, no typed arrays) for the
 * report, the CLI and the webview. The findings read this bundle.
 *
 * The trace must have its idle spans derived (`deriveIdle`), as for `summarize`.
 */
import type { Trace } from '../trace-format';
import { spread } from '../stats';
import { speedupOf } from '../speedup';
import { breakdown, breakdownCells, type Breakdown, type BreakdownCells } from './breakdown';
import { analyseCriticalPath, type CriticalPathAnalysis } from './critical-path';
import { analyseDataParallel, STRAGGLER_THRESHOLD, type DataParallelAnalysis } from './data-parallel';
import { analyseOps, type OpsAnalysis } from './ops';
import { analysePipeline, stagesOfLanes, type PipelineAnalysis } from './pipeline';
import { readPlan, type PlanView } from './plan';
import { analyseScaling, type ScalingAnalysis, type ScalingPoint } from './scaling';
import { buildSpanIndex, type SpanIndex } from './span-index';
import { analyseTensor, type TensorAnalysis } from './tensor';

export interface AnalyseOptions {
  /**
   * A sweep of the same model on 1..N devices (see `scalingPointsFromTraces`). Without it the
   * scaling analysis uses the run's one-device baseline (`meta.baseline`), when there is one.
   */
  scaling?: ScalingPoint[];
  /** How many operators to list per device and per stage (default 10). */
  topOps?: number;
  /** Straggler threshold as a fraction over the other lanes' median (default 0.2). */
  stragglerThreshold?: number;
}

export interface Analysis {
  mode: string;
  /** The plan fields the analyses read. */
  plan: PlanView;
  steps: number;
  stepTimeUs: { median: number; p10: number; p90: number };
  breakdown: Breakdown;
  /** Null unless the trace is a pipeline (or hybrid) run. */
  pipeline: PipelineAnalysis | null;
  /** Null unless the trace is a data-parallel run. */
  dataParallel: DataParallelAnalysis | null;
  criticalPath: CriticalPathAnalysis;
  ops: OpsAnalysis;
  /** Null without a sweep and without a baseline. */
  scaling: ScalingAnalysis | null;
  /** Null unless the trace is a tensor-parallel (or data × tensor) run. */
  tensor: TensorAnalysis | null;
}

/**
 * The scaling points a trace offers on its own: its one-device baseline and itself. The
 * baseline's point is the run's median step multiplied by the speedup (speedupOf), so the scaling
 * analysis reads the speedup the summary reports: where the runs alternated in blocks, the
 * paired blocks', not the ratio of the two medians.
 */
export function baselineScalingPoints(trace: Trace, medianStepUs: number, stepTimes: readonly number[] = []): ScalingPoint[] {
  const base = trace.meta.baseline;
  if (!base || !(medianStepUs > 0) || trace.lanes.length < 2) return [];
  const speedup = stepTimes.length > 0 ? speedupOf(trace, stepTimes) : null;
  return [
    { devices: 1, stepUs: speedup !== null && speedup > 0 ? medianStepUs * speedup : base.stepTimeUs.median },
    { devices: trace.lanes.length, stepUs: medianStepUs },
  ];
}

/**
 * The trace as operator analyses see it: operator detail comes from the operator-profiled
 * steps when the trace has them (timed steps never run under the operator profiler), so
 * their windows are the steps shares are taken of.
 */
export function opDetailView(trace: Trace): Trace {
  return trace.profiledSteps && trace.profiledSteps.length > 0 ? { ...trace, steps: trace.profiledSteps } : trace;
}

/** The span index operator analyses read: the operator-profiled steps' when the trace has them. */
function opIndexOf(trace: Trace, ix: SpanIndex): SpanIndex {
  const view = opDetailView(trace);
  return view === trace ? ix : buildSpanIndex(view);
}

function opsOf(ix: SpanIndex, cells: BreakdownCells, opsIx: SpanIndex, stageOfLane: ArrayLike<number>, top: number): OpsAnalysis {
  return analyseOps(opsIx, opsIx === ix ? cells : breakdownCells(opsIx), stageOfLane, top);
}

/** Runs every analysis on a trace whose idle spans have been derived. */
export function analyse(trace: Trace, options: AnalyseOptions = {}): Analysis {
  const ix = buildSpanIndex(trace);
  const plan = readPlan(trace);
  const cells = breakdownCells(ix);
  const pipeline = analysePipeline(ix, cells, plan);
  const stageOfLane = pipeline ? stagesOfLanes(ix, pipeline.stages) : ix.laneStage;
  const stepTimeUs = ix.nSteps > 0 ? spread(ix.stepUs) : { median: 0, p10: 0, p90: 0 };
  const points = options.scaling ?? baselineScalingPoints(trace, stepTimeUs.median, Array.from(ix.stepUs));
  const opsIx = opIndexOf(trace, ix);
  return {
    mode: trace.meta.mode,
    plan,
    steps: ix.nSteps,
    stepTimeUs,
    breakdown: breakdown(ix, cells),
    pipeline,
    dataParallel: analyseDataParallel(ix, cells, plan, options.stragglerThreshold ?? STRAGGLER_THRESHOLD),
    criticalPath: analyseCriticalPath(ix),
    ops: opsOf(ix, cells, opsIx, stageOfLane, options.topOps ?? 10),
    scaling: points.length > 0 ? analyseScaling(points) : null,
    tensor: analyseTensor(ix, () => opsIx),
  };
}

export type { Breakdown, LaneBreakdown, StepBreakdown, StepColumns, TimeSplit, IdleByCause } from './breakdown';
export type { CriticalPathAnalysis, CriticalPathStep } from './critical-path';
export type { DataParallelAnalysis, DataParallelLane, CommModel } from './data-parallel';
export type { OpsAnalysis, OpsGroup, OpStat, OpTypeStat } from './ops';
export type { PipelineAnalysis, PipelineModel, StageStats } from './pipeline';
export type { PlanView } from './plan';
export type { ScalingAnalysis, ScalingPoint, ScalingRow } from './scaling';
export type { TensorAnalysis, TensorLayer } from './tensor';
export type { ContiguousPartition, Repartition } from './partition';
export { STRAGGLER_THRESHOLD, fitCommModel } from './data-parallel';
export { TINY_OP_US, modelNodeName } from './ops';
export { gpipeBubbleFraction, pipelineFormulaUs, predictPipelineStepUs } from './pipeline';
export { partitionContiguous, repartitionStages } from './partition';
export { amdahlSpeedup, analyseScaling, scalingPointsFromTraces } from './scaling';
export { readPlan, deviceSpecFor } from './plan';
