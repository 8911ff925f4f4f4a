/**
 * Pipeline analyses: bubble fraction per stage against GPipe's (K−1)/(M+K−1), stage
 * imbalance, and the calibrated step-time model the pipeline findings predict with.
 *
 * Step model (GPipe fill-drain, forward only). Stage s holds its lane for o_s = t_s + c_s per
 * micro-batch (t_s compute, c_s its recv + send); the first micro-batch crosses every stage
 * (Σ t_s, plus one transfer per cut, which is C/2 with C = Σ c_s since both ends of a
 * transfer run at once), and the other M − 1 follow at the pace of the slowest stage:
 *
 *     step ≈ Σ_s t_s + C/2 + (M − 1) · max_s o_s.
 *
 * This is the flow-shop makespan of M identical jobs; for K equal stages without comm it is
 * the textbook (M + K − 1) · t, and unlike that form it stays right when stages are unequal,
 * which is exactly when an imbalance finding needs it. The model leaves out what the run
 * adds (host overhead per micro-batch, timer noise), so predictions are calibrated:
 * scale = measured median step / model at the current plan, and a change is predicted as
 * scale × model at the changed plan; at the current plan that gives the measured step.
 */
import { median } from '../stats';
import { gpipeBubble } from '../plan';
import { cell, type BreakdownCells } from './breakdown';
import type { PlanView } from './plan';
import type { SpanIndex } from './span-index';
import { intervalOverlap, spanOverlaps } from './overlap';
import type { Trace } from '../trace-format';

/** GPipe's bubble fraction for K stages and M micro-batches: {@link gpipeBubble} under its older name. */
export const gpipeBubbleFraction = gpipeBubble;

/**
 * The uncalibrated step model: Σ t_s + Σ c_s / 2 + (M − 1) · max_s (t_s + c_s), with t_s
 * each stage's compute and c_s its comm per micro-batch, µs (see the module comment).
 */
export function pipelineFormulaUs(microBatches: number, stagePerMicroUs: number[], stageCommPerMicroUs: number[] = []): number {
  let sumT = 0;
  let sumC = 0;
  let maxO = 0;
  stagePerMicroUs.forEach((t, s) => {
    const c = stageCommPerMicroUs[s] ?? 0;
    sumT += t;
    sumC += c;
    maxO = Math.max(maxO, t + c);
  });
  return sumT + sumC / 2 + Math.max(0, microBatches - 1) * maxO;
}

export interface StageStats {
  stage: number;
  lanes: number[];
  /** Median over steps of the stage's compute per step (mean over its lanes), µs. */
  computePerStepUs: number;
  /** computePerStepUs / M. */
  computePerMicroUs: number;
  /** Median over steps of the stage's comm (send + recv) per step, µs. */
  commPerStepUs: number;
  commPerMicroUs: number;
  /** Idle with cause bubble, summed over the stage's lanes and the measured steps, µs. */
  bubbleUs: number;
  /** Σ step windows × the stage's lanes, µs. */
  stepUs: number;
  /** bubbleUs / stepUs. */
  bubbleFraction: number;
}

/** The calibrated step model of a pipeline run (see the module comment). */
export interface PipelineModel {
  stages: number;
  microBatches: number;
  /** t_s: compute per micro-batch of each stage, measured, µs. */
  stagePerMicroUs: number[];
  /** c_s: comm (recv + send) per micro-batch of each stage, measured, µs. */
  stageCommPerMicroUs: number[];
  /** Median measured step, µs. */
  measuredStepUs: number;
  /** The formula at the current plan, µs. */
  formulaUs: number;
  /** measuredStepUs / formulaUs (1 when the formula is 0). */
  scale: number;
  /** Rows per micro-batch of the run, when known. */
  microBatchRows: number | null;
  /**
   * Per stage, the fixed part of a micro-batch's compute as a share of it at the run's rows:
   * compute(r) ∝ fixed + (1 − fixed)·r/rows. From two calibration sizes; 0 (purely
   * per-row work) without them. Weight-bound layers at small micro-batches have a large
   * fixed share, which is why more micro-batches do not always pay.
   */
  stageFixedShare: number[];
  /**
   * The second operating point the run measured (`meta.microProbe`), when it did: then a
   * change of micro-batch count is predicted through both points (see {@link predictPipelineStepUs}).
   */
  probe: MicroProbePoint | null;
  /**
   * Contention between the stages, measured in this run ({@link measureStageContention}):
   * a stage computing while another does runs `factor`× slower than computing alone. Null
   * (none charged) when the run cannot tell: too few spans that ran alone or overlapped.
   */
  contention?: StageContention | null;
}

/** How much slower a stage computes while another stage computes too, from one run's spans. */
export interface StageContention {
  /** Median over stages of (median overlapped span) / (median alone span); at least {@link MIN_CONTENTION}. */
  factor: number;
  /** Alone and overlapped compute spans it rests on, summed over the stages. */
  aloneSpans: number;
  overlappedSpans: number;
}

/** A second measured operating point of the same pipeline at another micro-batch count. */
export interface MicroProbePoint {
  microBatches: number;
  /** Median measured step, µs. */
  stepUs: number;
  stagePerMicroUs: number[];
  stageCommPerMicroUs: number[];
  /** Its cuts, where they are not the run's (a plan without cuts, cut again at its size). */
  cuts?: string[];
}

/**
 * Per stage, the fixed share of a micro-batch's compute at `rows`, fitted from the node costs
 * of two calibration runs (at `rows` and at `alt.rows`), clamped to [0, 0.95].
 */
export function stageFixedShares(plan: PlanView, stages: number): number[] {
  const rows = plan.microBatchRows;
  const alt = plan.nodeCostUsAlt;
  if (!rows || !alt || !plan.stageNodes || !plan.nodeCostUs || alt.rows === rows) return new Array<number>(stages).fill(0);
  return Array.from({ length: stages }, (_, s) => {
    const nodes = plan.stageNodes![s] ?? [];
    let t1 = 0;
    let t2 = 0;
    for (const n of nodes) {
      t1 += plan.nodeCostUs![n] ?? 0;
      t2 += alt.costs[n] ?? 0;
    }
    if (!(t1 > 0) || !(t2 > 0)) return 0;
    // t(r) = a + b·r through (rows, t1) and (alt.rows, t2); fixed share = a / t1.
    const b = (t1 - t2) / (rows - alt.rows);
    const a = t1 - b * rows;
    return Math.min(0.95, Math.max(0, a / t1));
  });
}

export interface PipelineAnalysis {
  /** K: `plan.stages`, else the stages seen in the spans. */
  stages: number;
  /** M: `plan.microBatches`, else the micro-batches seen in the spans. */
  microBatches: number;
  schedule: string;
  perStage: StageStats[];
  /** Σ bubble / Σ step time over every stage lane. */
  bubbleFraction: number;
  /** (K − 1) / (M + K − 1). */
  idealBubbleFraction: number;
  /** max / mean of the stages' compute per step (1 = balanced). */
  imbalance: number;
  slowestStage: number;
  model: PipelineModel;
}

/**
 * Each lane's stage: the stage its compute spans carry; in a pipeline trace whose spans carry
 * none, lane l is stage l when there is one lane per stage.
 */
export function stagesOfLanes(ix: SpanIndex, stages: number): Int32Array {
  const out = Int32Array.from(ix.laneStage);
  if (out.every((s) => s < 0) && ix.nLanes === stages) out.forEach((_, l) => (out[l] = l));
  return out;
}

/**
 * Predicts the step after a change, with the run's calibrated model. A change of micro-batch
 * count, in a run that measured a second count too, goes through {@link twoPointStepUs}.
 * New stage costs (`stagePerMicroUs`) are in the run's units, as measured, or with `alone`
 * what each stage costs computing alone ({@link aloneStagePerMicroUs}); either way the run's
 * measured contention is charged at the new schedule's overlap.
 */
export function predictPipelineStepUs(model: PipelineModel, change: { stagePerMicroUs?: number[]; microBatches?: number; alone?: boolean }): number {
  const m2 = change.microBatches ?? model.microBatches;
  if (!change.stagePerMicroUs && model.probe && m2 !== model.microBatches) {
    const two = twoPointStepUs(model, model.probe, m2);
    if (two !== null) return two;
  }
  // A micro-batch carries M/M′ of the rows it did: its per-row work and the activations it
  // sends shrink by that; its fixed work (e.g. streaming the stage's weights) does not.
  const f = model.microBatches / m2;
  const comm = model.stageCommPerMicroUs.map((c) => c * f);
  // Contention is charged to new cuts, which no second run measured. A change of micro-batch
  // count is the probe's to measure (two points carry the contention they ran under); the
  // one-point line without a probe keeps to the measured costs.
  const I = change.stagePerMicroUs ? (model.contention?.factor ?? 1) : 1;
  if (!(I > 1)) {
    const per = (change.stagePerMicroUs ?? model.stagePerMicroUs).map((t, s) => {
      const fixed = model.stageFixedShare[s] ?? 0;
      return t * (fixed + (1 - fixed) * f);
    });
    return model.scale * pipelineFormulaUs(m2, per, comm);
  }
  // With contention, the measured costs are each stage's alone cost slowed by I for the share
  // of its compute that overlapped another stage's; the changed plan overlaps by its own
  // schedule's share (more micro-batches and balanced stages overlap more), and is slowed by
  // that instead. Mean-field, as the sweep predictor charges contention.
  const alone = change.stagePerMicroUs && change.alone ? change.stagePerMicroUs : aloneStagePerMicroUs(model, change.stagePerMicroUs);
  const per = alone.map((t, s) => {
    const fixed = model.stageFixedShare[s] ?? 0;
    return t * (fixed + (1 - fixed) * f);
  });
  const ov = flowShopOverlap(m2, per, comm);
  return model.scale * pipelineFormulaUs(m2, per.map((t) => t * (1 + (I - 1) * ov)), comm);
}

/**
 * Each stage's compute per micro-batch with the run's contention taken out (what it costs
 * computing alone): the measured (or given, in the run's units) costs divided by the
 * slowdown at the run's own schedule overlap. The measured costs when no contention was
 * measured.
 */
export function aloneStagePerMicroUs(model: PipelineModel, stagePerMicroUs: readonly number[] = model.stagePerMicroUs): number[] {
  const I = model.contention?.factor ?? 1;
  if (!(I > 1)) return [...stagePerMicroUs];
  const ov = flowShopOverlap(model.microBatches, model.stagePerMicroUs, model.stageCommPerMicroUs);
  return stagePerMicroUs.map((t) => t / (1 + (I - 1) * ov));
}

/**
 * The compute overlap of a GPipe forward schedule of M micro-batches over stages with compute
 * t_s and comm c_s per micro-batch (c_s/2 on each side of a transfer): micro-batch j starts
 * on stage s once stage s has finished j − 1 and stage s − 1's j has arrived. The share of
 * the stages' compute time during which another stage computes too (see analysis/overlap).
 */
export function flowShopOverlap(microBatches: number, t: readonly number[], c: readonly number[] = []): number {
  const K = t.length;
  const lanes: [number, number][][] = Array.from({ length: K }, () => []);
  const free = new Array<number>(K).fill(0);
  for (let j = 0; j < microBatches; j++) {
    let arrive = 0;
    for (let s = 0; s < K; s++) {
      const start = Math.max(free[s]!, arrive);
      const end = start + t[s]!;
      lanes[s]!.push([start, end]);
      const send = (c[s] ?? 0) / 2;
      free[s] = end + send;
      arrive = end + send + (c[s + 1] ?? 0) / 2;
    }
  }
  return intervalOverlap(lanes);
}

/** Least slowdown from sharing the machine that is charged (smaller is within a span median's noise). */
const MIN_CONTENTION = 1.05;
/** Least alone and overlapped compute spans of a stage for its slowdown to count. */
const MIN_CONTENTION_SPANS = 3;
/** A span counts as alone below this share of overlap, as overlapped above 1 − it. */
const ALONE_SHARE = 0.1;

/**
 * Per stage, the median of its compute spans that overlapped another stage's compute (at
 * least 90 % of the span) against the median of those that ran alone (at most 10 %): each
 * stage runs the same segment on the same rows every micro-batch, so the ratio is the
 * slowdown sharing the machine costs it. The median over the stages with at least
 * {@link MIN_CONTENTION_SPANS} of each; null without one, below {@link MIN_CONTENTION}, or
 * for training runs (a stage's forward and backward spans differ in cost).
 */
export function measureStageContention(trace: Trace, laneStage: Int32Array): StageContention | null {
  if (trace.meta.training) return null;
  const ov = spanOverlaps(trace);
  const s = trace.spans;
  const byStage = new Map<number, { alone: number[]; over: number[] }>();
  for (let i = 0; i < s.count; i++) {
    const o = ov[i]!;
    if (Number.isNaN(o)) continue;
    const st = laneStage[s.lane[i]!] ?? -1;
    if (st < 0) continue;
    const e = byStage.get(st) ?? { alone: [], over: [] };
    byStage.set(st, e);
    if (o <= ALONE_SHARE) e.alone.push(s.dur[i]!);
    else if (o >= 1 - ALONE_SHARE) e.over.push(s.dur[i]!);
  }
  const ratios: number[] = [];
  let aloneSpans = 0;
  let overlappedSpans = 0;
  for (const { alone, over } of byStage.values()) {
    if (alone.length < MIN_CONTENTION_SPANS || over.length < MIN_CONTENTION_SPANS) continue;
    ratios.push(median(over) / median(alone));
    aloneSpans += alone.length;
    overlappedSpans += over.length;
  }
  if (ratios.length === 0) return null;
  const factor = median(ratios);
  // Below MIN_CONTENTION the stages did not measurably slow each other (a median of a few
  // spans moves by that much): none is charged.
  return factor >= MIN_CONTENTION ? { factor, aloneSpans, overlappedSpans } : null;
}

/**
 * Cost per micro-batch at `rows` rows on the line through two measured points (r1, y1) and
 * (r2, y2), kept physical: never decreasing with rows, never below zero at zero rows.
 */
function lineAt(r1: number, y1: number, r2: number, y2: number, rows: number): number {
  let b = r1 !== r2 ? (y1 - y2) / (r1 - r2) : 0;
  if (!(b >= 0)) b = 0;
  let a = y1 - b * r1;
  if (a < 0) {
    a = 0;
    b = r1 > 0 ? y1 / r1 : 0;
  }
  return Math.max(0, a + b * rows);
}

/**
 * The step at M′ micro-batches from two measured operating points (the run at M and the
 * probe at M₂). Each stage's compute and comm per micro-batch lie on a line in the rows a
 * micro-batch carries (fixed + per row), through what both points measured; the flow-shop
 * formula gives the step those costs explain, and what it leaves unexplained at each point
 * (host hand-offs, step start and end) is split into a part per step E and a part per
 * micro-batch on the critical path g, paid M + K − 1 times:
 *
 *     step(M′) = formula(M′) + E + g · (M′ + K − 1),
 *
 * which gives both measured steps back exactly (the probe's count returns the probe's step
 * as measured). A negative g (noise) counts as none. Null
 * when the probe does not describe the same stages. A probe cut elsewhere (`cuts`) gives
 * its stages' costs at its own cuts, so between the two counts the lines blend the two
 * partitions; the findings only ask for the probe's own count or below it.
 */
export function twoPointStepUs(model: PipelineModel, probe: MicroProbePoint, m2: number): number | null {
  const K = model.stages;
  const M = model.microBatches;
  const Mp = probe.microBatches;
  if (Mp === M || probe.stagePerMicroUs.length !== K || !(probe.stepUs > 0)) return null;
  // The probe's own count: what it measured, whatever the lines below make of the noise.
  if (m2 === Mp) return probe.stepUs;
  // Rows per micro-batch in units of the batch: 1/M.
  const r1 = 1 / M;
  const rp = 1 / Mp;
  const costsAt = (m: number): { t: number[]; c: number[] } => ({
    t: model.stagePerMicroUs.map((y, s) => lineAt(r1, y, rp, probe.stagePerMicroUs[s] ?? y, 1 / m)),
    c: model.stageCommPerMicroUs.map((y, s) => lineAt(r1, y, rp, probe.stageCommPerMicroUs[s] ?? y, 1 / m)),
  });
  const formula = (m: number): number => {
    const { t, c } = costsAt(m);
    return pipelineFormulaUs(m, t, c);
  };
  const res1 = model.measuredStepUs - formula(M);
  const resP = probe.stepUs - formula(Mp);
  let g = (resP - res1) / (Mp - M);
  let e = res1 - g * (M + K - 1);
  if (!(g >= 0)) {
    g = 0;
    e = res1;
  }
  return Math.max(0, formula(m2) + e + g * (m2 + K - 1));
}

/** The trace's micro-batch probe as a model point, when it has one for the same K stages. */
function probeOf(trace: SpanIndex['trace'], stages: number): MicroProbePoint | null {
  const p = trace.meta.microProbe;
  if (!p || p.stepTimesUs.length === 0 || p.stagePerMicroUs.length !== stages) return null;
  return { microBatches: p.microBatches, stepUs: median(p.stepTimesUs), stagePerMicroUs: p.stagePerMicroUs, stageCommPerMicroUs: p.stageCommPerMicroUs, ...(p.cuts ? { cuts: p.cuts } : {}) };
}

/** The pipeline analysis, or null when the trace is not a pipeline run. */
export function analysePipeline(ix: SpanIndex, cells: BreakdownCells, plan: PlanView): PipelineAnalysis | null {
  const { trace, nSteps, stepUs } = ix;
  if (trace.meta.plan.mode !== 'pipeline') return null;
  const K = plan.stages ?? ix.maxStage + 1;
  const M = plan.microBatches ?? ix.maxMicro + 1;
  if (K < 1 || M < 1 || nSteps === 0) return null;
  const laneStage = stagesOfLanes(ix, K);
  let windowSum = 0;
  for (let p = 0; p < nSteps; p++) windowSum += stepUs[p];
  const perStage: StageStats[] = [];
  let bubbleAll = 0;
  let timeAll = 0;
  for (let st = 0; st < K; st++) {
    const lanes: number[] = [];
    laneStage.forEach((s, l) => s === st && lanes.push(l));
    const compute = new Float64Array(nSteps);
    const comm = new Float64Array(nSteps);
    let bubbleUs = 0;
    for (const l of lanes) {
      for (let p = 0; p < nSteps; p++) {
        compute[p] += cell(cells, l, p, 'compute') / lanes.length;
        comm[p] += cell(cells, l, p, 'comm') / lanes.length;
        bubbleUs += cell(cells, l, p, 'bubble');
      }
    }
    const time = windowSum * lanes.length;
    bubbleAll += bubbleUs;
    timeAll += time;
    const computePerStepUs = lanes.length > 0 ? median(compute) : 0;
    const commPerStepUs = lanes.length > 0 ? median(comm) : 0;
    perStage.push({
      stage: st,
      lanes,
      computePerStepUs,
      computePerMicroUs: computePerStepUs / M,
      commPerStepUs,
      commPerMicroUs: commPerStepUs / M,
      bubbleUs,
      stepUs: time,
      bubbleFraction: time > 0 ? bubbleUs / time : 0,
    });
  }
  const c = perStage.map((s) => s.computePerStepUs);
  const meanC = c.reduce((a, b) => a + b, 0) / c.length;
  const maxC = Math.max(...c);
  const stagePerMicroUs = perStage.map((s) => s.computePerMicroUs);
  const stageCommPerMicroUs = perStage.map((s) => s.commPerMicroUs);
  const measuredStepUs = median(stepUs);
  const formulaUs = pipelineFormulaUs(M, stagePerMicroUs, stageCommPerMicroUs);
  return {
    stages: K,
    microBatches: M,
    schedule: plan.schedule ?? 'gpipe',
    perStage,
    bubbleFraction: timeAll > 0 ? bubbleAll / timeAll : 0,
    idealBubbleFraction: gpipeBubbleFraction(K, M),
    imbalance: meanC > 0 ? maxC / meanC : 1,
    slowestStage: c.indexOf(maxC),
    model: {
      stages: K,
      microBatches: M,
      stagePerMicroUs,
      stageCommPerMicroUs,
      measuredStepUs,
      formulaUs,
      scale: formulaUs > 0 ? measuredStepUs / formulaUs : 1,
      microBatchRows: plan.microBatchRows,
      stageFixedShare: stageFixedShares(plan, K),
      probe: probeOf(trace, K),
      contention: measureStageContention(trace, laneStage),
    },
  };
}
