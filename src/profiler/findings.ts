/**
 * Findings: rules that read a trace and say what is slow, what to change, and what the
 * change should gain. Each prediction is computed from the measured costs in the trace
 * (span durations, bytes, the calibration run's per-node costs), never from a guessed
 * factor; a rule that lacks the measurements it needs stays silent.
 *
 * Rules and what they read (plan fields are `meta.plan`, see analysis/plan.ts):
 *  - straggler           data: per-device compute; `shards`.
 *  - pipeline-imbalance  pipeline: stage compute; `stages`, `microBatches`, `stageNodes`,
 *                        `nodeCostUs` (re-partitioned exactly for the same K).
 *  - pipeline-bubble     pipeline: bubble idle; `stages`, `microBatches`, `batch`.
 *  - comm-bound          data: comm/compute spans and bytes; `batch`, `shards`.
 *  - host-overhead       data/single: host idle and in-session gaps, operator spans; `batch`.
 *  - poor-scaling        any: `meta.baseline` or a scaling sweep passed in the options.
 *  - dominant-op         any: operator spans (informational, no prediction).
 *  - device-memory       any with `--device-memory`: `meta.memory` (findings-memory.ts).
 *
 * Measurement quality gates every rule (see quality.ts and {@link gateFindings}):
 *  - a finding fires only when its predicted effect — the step time it saves, for the same
 *    work ({@link findingEffectUs}) — exceeds the run's measured step-time noise;
 *  - when the quality is poor, findings whose evidence is timing ({@link TIMING_RULES}) are
 *    held back: kept in the list with `heldBack` (the reason and the severity they would
 *    have had) and severity `info`, so no view shows them as a warning.
 */
import type { Trace } from './trace-format';
import type { ProfileSummary } from './summary';
import { measurementQuality, medianHalfWidthUs, type MeasurementQuality } from './quality';
import { median } from './stats';
import { formatDuration, formatPercent } from './units';
import { gpipeBubble } from './plan';
import { analyse, type Analysis } from './analysis/index';
import { deviceSpecFor } from './analysis/plan';
import { aloneStagePerMicroUs, predictPipelineStepUs, type PipelineModel } from './analysis/pipeline';
import { costsAtCuts, repartitionStages, type Repartition } from './analysis/partition';
import { amdahlSpeedup, type ScalingPoint } from './analysis/scaling';
import { TINY_OP_US } from './analysis/ops';
import { STRAGGLER_THRESHOLD } from './analysis/data-parallel';
import { fitTwoTerms } from './simulate/fit';
import { scheduleMemoryRule } from './findings-schedule';
import { tensorCollectivesRule, tensorVsDataRule } from './findings-tensor';
import { deviceMemoryRule } from './findings-memory';

export type Severity = 'info' | 'warning' | 'critical';

export interface Finding {
  /** Rule id, e.g. `straggler`. */
  id: string;
  severity: Severity;
  /** One sentence: what is wrong and where. */
  message: string;
  evidence: {
    /** Lanes the finding is about. */
    lanes: number[];
    /** A representative time range, µs on the trace clock. */
    startUs: number;
    endUs: number;
    /** The numbers the rule used. */
    numbers: Record<string, number>;
  };
  /** The suggested change, as words and as plan parameters. */
  change: { description: string; params: Record<string, unknown> };
  /** Median step time now and predicted after the change, µs. */
  currentStepUs: number;
  predictedStepUs: number | null;
  /**
   * Samples per second now and predicted, for changes that alter the work per step (a larger
   * batch, fewer devices), where step time alone would not say whether the change pays.
   */
  throughput?: { currentPerS: number; predictedPerS: number };
  /**
   * Set when the run's measurement quality was poor and the finding's evidence is timing: the
   * finding is shown apart (severity `info`), with why and the severity it would have had.
   */
  heldBack?: { reason: string; severity: Severity };
  /** Advice kept on a poorly measured run (the user asked to see it): why it may not hold. */
  caveat?: string;
  /**
   * Set when the suggestion was checked against the model and plan before it was made (the
   * runner does so, as the CLI would run the change): `ok` false means it could not be applied
   * or its prediction does not describe what it would run, and the finding is then information
   * (severity `info`, no `change.params`); `note` says why, or what was adjusted.
   */
  checked?: { ok: boolean; note?: string };
}

/**
 * True when a finding's own prediction is not an improvement: a step no shorter than the
 * measured one (same work per step), or no more samples per second (changes of the work).
 */
export function predictsNoGain(f: Finding): boolean {
  if (f.throughput) return !(f.throughput.predictedPerS > f.throughput.currentPerS);
  return f.predictedStepUs !== null && !(f.predictedStepUs < f.currentStepUs);
}

/**
 * The finding as information: severity `info`, no plan parameters (so nothing offers to apply
 * it), and a note saying why, also put in front of the change's words.
 */
export function asInformation(f: Finding, note: string): Finding {
  return {
    ...f,
    severity: 'info',
    change: { description: `Not suggested: ${note} (considered: ${f.change.description})`, params: {} },
    checked: { ok: false, note },
  };
}

/** A finding whose prediction is not faster than the measured step is information, never advice. */
export function informIfNoGain(f: Finding): Finding {
  if (!predictsNoGain(f) || Object.keys(f.change.params).length === 0) return f;
  const what = f.throughput
    ? `its own prediction is ${f.throughput.predictedPerS.toFixed(0)} samples/s against ${f.throughput.currentPerS.toFixed(0)} measured`
    : `its own prediction is a step of ${dur(f.predictedStepUs!)} against ${dur(f.currentStepUs)} measured (${f.predictedStepUs! >= f.currentStepUs ? '+' : '−'}${formatPercent(Math.abs(f.predictedStepUs! / f.currentStepUs - 1), 0)})`;
  return asInformation(f, `${what}, so the change is not predicted to be faster`);
}

/**
 * Threshold: a device is a straggler when its compute per step exceeds the others' median by
 * this factor (1.2, the same threshold the data-parallel analysis flags stragglers with).
 */
export const STRAGGLER_FACTOR = 1 + STRAGGLER_THRESHOLD;

/** The step whose duration is closest to the median, as evidence. */
function medianStep(trace: Trace): { startUs: number; endUs: number } {
  const med = median(trace.steps.map((w) => w.endUs - w.startUs));
  let best = trace.steps[0];
  for (const w of trace.steps) if (Math.abs(w.endUs - w.startUs - med) < Math.abs(best.endUs - best.startUs - med)) best = w;
  return best ? { startUs: best.startUs, endUs: best.endUs } : { startUs: 0, endUs: 0 };
}

/** Compute per step of a device running `rows` rows: fixed part + rows × per-row part, µs. */
interface RowCost {
  fixedUs: number;
  perRowUs: number;
}

const rowCost = (m: RowCost, rows: number): number => m.fixedUs + m.perRowUs * rows;

/**
 * Each device's compute per step as a function of its rows. Devices of one class (kind,
 * provider, threads) run the same code at the same speed, so where the class ran two or more
 * row counts its lanes share a line fitted through their (rows, compute) points: a device
 * given 6 rows and one given 2 show what a row costs and what a run costs regardless of rows.
 * Without two row counts (or when the line is not increasing with a positive fixed part) a
 * device's compute is taken as proportional to its rows — its own, except for CPU devices:
 * they are threads the operating system places on whichever cores are free, not pieces of
 * hardware, so a difference between two of one class given the same rows is the state of the
 * cores during the run, which the next run does not keep. They share the class's median cost
 * per row. (silero VAD, data cpu:2 with 4/4 rows on a 2-core VM: one worker computed 1.2× the
 * other; the 5/3 split that difference suggested ran 30 % slower in a run of its own.)
 */
function rowCostModels(trace: Trace, compute: readonly number[], rows: readonly number[]): RowCost[] {
  const classOf = (i: number): string => {
    const d = trace.meta.devices[i];
    return d ? `${d.kind}|${d.provider}|${d.threads}` : `lane ${i}`;
  };
  const proportional = (i: number): RowCost => ({ fixedUs: 0, perRowUs: compute[i] / Math.max(1, rows[i]) });
  const lines = new Map<string, RowCost | null>();
  for (const key of new Set(compute.map((_, i) => classOf(i)))) {
    const members = compute.map((_, i) => i).filter((i) => classOf(i) === key);
    if (new Set(members.map((i) => rows[i])).size < 2) {
      const cpu = trace.meta.devices[members[0]!]?.kind === 'cpu';
      lines.set(key, cpu ? { fixedUs: 0, perRowUs: median(members.map((i) => compute[i]! / Math.max(1, rows[i]!))) } : null);
      continue;
    }
    // compute ≈ perRow · rows + fixed · 1, the simulator's fit of a compute cost.
    const f = fitTwoTerms(members.map((i) => ({ a: rows[i], b: 1, d: compute[i] })));
    lines.set(key, f.x > 0 && f.y > 0 ? { fixedUs: f.y, perRowUs: f.x } : null);
  }
  return compute.map((_, i) => lines.get(classOf(i)) ?? proportional(i));
}

/**
 * Whole rows, at least one per device, adding up to `total`, that minimise the largest
 * compute: each row goes to the device whose compute after taking it is smallest.
 */
function allocateRows(models: readonly RowCost[], total: number): number[] {
  const next = models.map(() => 1);
  for (let left = total - models.length; left > 0; left--) {
    let best = 0;
    for (let i = 1; i < models.length; i++) if (rowCost(models[i], next[i] + 1) < rowCost(models[best], next[best] + 1)) best = i;
    next[best]++;
  }
  return next;
}

/**
 * Data parallel: a device whose compute per step is well above its peers' holds every step
 * back (the others wait at the step barrier). Rebalancing the shards in proportion to each
 * device's measured throughput equalises their compute.
 */
function stragglerRule(trace: Trace, summary: ProfileSummary): Finding[] {
  const plan = trace.meta.plan;
  if (plan.mode !== 'data' || summary.devices.length < 2) return [];
  const rows = plan.shards;
  if (!Array.isArray(rows) || rows.length !== summary.devices.length) return [];
  const c = summary.devices.map((d) => d.computePerStepUs);
  const out: Finding[] = [];
  const slowest = c.indexOf(Math.max(...c));
  const others = c.filter((_, i) => i !== slowest);
  const ref = median(others);
  if (!(ref > 0) || c[slowest] <= STRAGGLER_FACTOR * ref) return out;
  // Rebalance to equal compute under each device's cost per row count (see rowCostModels).
  const models = rowCostModels(trace, c, rows);
  const total = rows.reduce((a, b) => a + b, 0);
  const next = allocateRows(models, total);
  // Already split as the cost model would (as far as whole rows allow): nothing to move, so
  // the slow device's cost is not per-row work (e.g. fixed per-run overhead).
  if (next.every((r, i) => r === rows[i])) return out;
  const current = summary.stepTimeUs.median;
  const maxNow = Math.max(...c);
  const maxNext = Math.max(...next.map((r, i) => rowCost(models[i], r)));
  const predicted = current - maxNow + maxNext;
  const ev = medianStep(trace);
  const dev = summary.devices[slowest];
  out.push({
    id: 'straggler',
    severity: c[slowest] > 2 * ref ? 'critical' : 'warning',
    message: `${dev.id} is a straggler: its compute takes ${(c[slowest] / 1000).toFixed(1)} ms per step against ${(ref / 1000).toFixed(1)} ms on the other devices, which wait for it at every step.`,
    evidence: {
      lanes: summary.devices.map((_, i) => i),
      startUs: ev.startUs,
      endUs: ev.endUs,
      numbers: { stragglerComputeUs: c[slowest], othersMedianComputeUs: ref, ratio: c[slowest] / ref },
    },
    change: {
      description: `Split the batch unevenly by measured throughput: shards ${rows.join('/')} → ${next.join('/')} (--shards ${next.join(',')}).`,
      params: { shards: next },
    },
    currentStepUs: current,
    predictedStepUs: predicted,
  });
  return out;
}

/** A stage imbalance (max / mean stage compute) above this is worth re-partitioning. */
export const IMBALANCE_MAX = 1.15;
/** A change is suggested only when it is predicted to shorten the step by at least this fraction. */
export const MIN_STEP_GAIN = 0.03;
/** A measured bubble fraction above this is a finding… */
export const BUBBLE_MAX = 0.2;
/** …and the micro-batch count suggested brings GPipe's bubble to at most this. */
export const BUBBLE_TARGET = 0.15;
/** Comm not hidden under compute, as a share of busy time, above which a run is communication-bound. */
export const COMM_BOUND_SHARE = 0.3;
/** Changes to batch or device count are suggested only for at least this throughput gain. */
export const MIN_THROUGHPUT_GAIN = 0.1;
/** Host overhead (host idle + gaps inside the session between operators) share of device time that is a finding on its own… */
export const HOST_OVERHEAD_SHARE = 0.15;
/** …or, when most operators are tiny (mean under TINY_OP_US), this smaller share. */
export const HOST_OVERHEAD_SHARE_TINY = 0.05;
/** Fraction of distinct operators with a tiny mean duration that counts as "most". */
export const TINY_OP_FRACTION = 0.5;
/** A larger batch is sized to bring the overhead share down to this. */
export const HOST_OVERHEAD_TARGET = 0.1;
/** Parallel efficiency (speedup / devices) below this is poor scaling. */
export const POOR_EFFICIENCY = 0.6;
/** Fewer devices are suggested when they keep at least this share of today's speedup. */
export const SCALING_KEEP = 0.9;
/** One operator type taking more than this share of a stage's compute dominates it. */
export const DOMINANT_OP_SHARE = 0.5;

const pct = (x: number): string => formatPercent(x, 0);
const dur = (us: number): string => formatDuration(us, { sDigits: false });
const perS = (batch: number, stepUs: number): number => (stepUs > 0 ? (batch * 1e6) / stepUs : 0);

/**
 * Pipeline: the slowest stage sets the pace of every micro-batch. Re-partitioning the
 * calibration run's per-node costs for the same K (exact optimal contiguous partition) and
 * predicting with the run's calibrated pipeline model says where the cuts should go and
 * what that gains.
 */
function pipelineImbalanceRule(trace: Trace, a: Analysis): Finding[] {
  const p = a.pipeline;
  const plan = a.plan;
  if (!p || p.stages < 2 || p.imbalance < IMBALANCE_MAX) return [];
  if (!plan.stageNodes || !plan.nodeCostUs || plan.stageNodes.length !== p.stages) return [];
  // Stages are re-cut on what they cost computing alone; the prediction then charges the
  // contention the new schedule's overlap brings (balanced stages compute together more).
  const re = repartitionStages(plan.stageNodes, plan.nodeCostUs, aloneStagePerMicroUs(p.model), { sameDevices: sameDeviceKind(trace) });
  if (!re) return [];
  const current = p.model.measuredStepUs;
  const predicted = predictAtCuts(p.model, re);
  const contention = aloneWords(p.model);
  if (!(predicted < current * (1 - MIN_STEP_GAIN))) return [];
  const slow = p.perStage[p.slowestStage];
  const meanMicro = p.model.stagePerMicroUs.reduce((x, y) => x + y, 0) / p.stages;
  const oldCuts = plan.cuts ?? plan.stageNodes.slice(0, -1).map((l) => l[l.length - 1] ?? '');
  const ev = medianStep(trace);
  return [
    {
      id: 'pipeline-imbalance',
      severity: p.imbalance >= 1.5 ? 'critical' : 'warning',
      message: `Stage ${slow.stage} computes ${dur(slow.computePerMicroUs)} per micro-batch against a mean of ${dur(meanMicro)} over the ${p.stages} stages, so every micro-batch moves at its pace (imbalance ${p.imbalance.toFixed(2)}×).`,
      evidence: {
        lanes: slow.lanes,
        startUs: ev.startUs,
        endUs: ev.endUs,
        numbers: {
          imbalance: p.imbalance,
          slowestStage: slow.stage,
          slowestStagePerMicroUs: slow.computePerMicroUs,
          meanStagePerMicroUs: meanMicro,
          predictedMaxStagePerMicroUs: Math.max(...re.stagePerMicroUs),
          nodesWithoutCost: re.missingCosts.length,
          modelScale: p.model.scale,
        },
      },
      change: {
        description: `Move the cuts from ${oldCuts.join(', ')} to ${re.cuts.join(', ')}: the measured node costs then give stages of ${re.stagePerMicroUs.map(dur).join(' / ')} per micro-batch${contention}.${pooledWords(re, p.model)}`,
        params: { cuts: re.cuts },
      },
      currentStepUs: current,
      predictedStepUs: predicted,
    },
  ];
}

/**
 * The step the calibrated pipeline model predicts with the graph cut after `cuts` (same K,
 * same micro-batches), and the stages' compute per micro-batch; null when the trace lacks what
 * the pipeline-imbalance rule reads. Lets a checker that moved a suggested cut re-predict.
 */
export function predictPipelineCuts(trace: Trace, cuts: string[], analysis?: Analysis): { stagePerMicroUs: number[]; predictedStepUs: number; note: string } | null {
  const a = analysis ?? analyse(trace);
  const p = a.pipeline;
  if (!p || !a.plan.stageNodes || !a.plan.nodeCostUs || a.plan.stageNodes.length !== p.stages) return null;
  const re = repartitionStages(a.plan.stageNodes, a.plan.nodeCostUs, aloneStagePerMicroUs(p.model), { sameDevices: sameDeviceKind(trace) });
  const stagePerMicroUs = re ? costsAtCuts(re, a.plan.stageNodes, a.plan.nodeCostUs, cuts) : null;
  if (!re || !stagePerMicroUs) return null;
  return { stagePerMicroUs, predictedStepUs: predictAtCuts(p.model, { ...re, stagePerMicroUs }), note: aloneWords(p.model) };
}

/**
 * The step at re-cut stages: the calibrated model at the new stages against the same model at
 * the current cuts, times the measured step. Where the stage model reproduces the measured
 * stages this is the model at the new stages; where it pools their rate (stages on devices of
 * one kind that differ beyond their nodes' costs), the difference it leaves out is not
 * counted as a gain.
 */
function predictAtCuts(model: PipelineModel, re: Pick<Repartition, 'stagePerMicroUs' | 'currentPerMicroUs' | 'fit'>): number {
  const next = predictPipelineStepUs(model, { stagePerMicroUs: re.stagePerMicroUs, alone: true });
  if (re.fit !== 'pooled') return next;
  const now = predictPipelineStepUs(model, { stagePerMicroUs: re.currentPerMicroUs, alone: true });
  return now > 0 ? (model.measuredStepUs * next) / now : next;
}

/** Says that the stages' difference beyond their nodes' costs was taken as noise, when it was. */
function pooledWords(re: Pick<Repartition, 'fit' | 'ratioSpread'>, model: PipelineModel): string {
  // Stages within 10 % of their nodes' proportions pool without a word (a line through them
  // merely came out a hair below a zero fixed part).
  if (re.fit !== 'pooled' || !(re.ratioSpread > 1.1)) return '';
  return ` The stages measured ${model.stagePerMicroUs.map(dur).join(' / ')} on devices of one kind, apart by more than their nodes' costs explain: the gain counts only what the nodes' costs give, not that difference (the state of the cores at the time, which another run does not keep).`;
}

/** Says that stage costs are alone costs, and what contention the prediction charges, when the run measured some. */
function aloneWords(model: PipelineModel): string {
  const I = model.contention?.factor ?? 1;
  return I > 1 ? ` computing alone (in this run a stage computed ${I.toFixed(2)}× slower while another stage computed too, which the prediction charges for the new stages' overlap)` : '';
}

/** Every device of the run of one kind and thread count (stages then differ only in their nodes). */
function sameDeviceKind(trace: Trace): boolean {
  const d = trace.meta.devices;
  return d.length > 0 && d.every((x) => x.kind === d[0]!.kind && x.threads === d[0]!.threads);
}

/** Divisors of n above `above`, ascending. */
function divisorsAbove(n: number, above: number): number[] {
  const out: number[] = [];
  for (let d = Math.floor(above) + 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

/** Where the prediction for M′ micro-batches comes from, when the run measured a second count. */
function probeNote(model: PipelineModel, m2: number): string {
  const p = model.probe;
  if (!p) return '';
  if (p.microBatches === m2) {
    const where = p.cuts ? `, cut where a run of ${m2} micro-batches cuts (after ${p.cuts.join(', ')})` : '';
    return ` This run measured ${m2} micro-batches too${where}: ${dur(p.stepUs)} per step.`;
  }
  return ` Predicted through the two counts this run measured (${model.microBatches} and ${p.microBatches}).`;
}

/**
 * Pipeline: fill and drain leave stages idle for (K−1)/(M+K−1) of a GPipe step. More
 * micro-batches (each a divisor of the batch, so every micro-batch has the same rows) shrink
 * that share; the calibrated pipeline model, with per-micro-batch work scaled by M/M′,
 * predicts the step.
 */
function pipelineBubbleRule(trace: Trace, a: Analysis): Finding[] {
  const p = a.pipeline;
  const batch = a.plan.batch;
  if (!p || p.stages < 2 || p.bubbleFraction <= BUBBLE_MAX || batch === null || !Number.isInteger(batch)) return [];
  const K = p.stages;
  const M = p.microBatches;
  const candidates = divisorsAbove(batch, M);
  if (candidates.length === 0) return [];
  // Candidates run from M+1 up to the fewest micro-batches that bring GPipe's bubble to the
  // target; the suggestion is the one the calibrated model predicts fastest, since a
  // micro-batch's fixed work (e.g. streaming a stage's weights) grows with M′ while the
  // bubble shrinks. Ties go to the smaller M′.
  const current = p.model.measuredStepUs;
  const reach = candidates.findIndex((m) => gpipeBubble(K, m) <= BUBBLE_TARGET);
  // With a second measured count, counts beyond it are not offered: a line through two
  // points interpolates between them, but past the probe a micro-batch's cost curve is
  // unknown (kernels lose efficiency as rows shrink) and the advice could make the step slower.
  const probeM = p.model.probe?.microBatches;
  const reachable = reach < 0 ? candidates : candidates.slice(0, reach + 1);
  const window = probeM !== undefined && probeM > M ? reachable.filter((m) => m <= probeM) : reachable;
  if (window.length === 0) return [];
  let m2 = window[0];
  let predicted = predictPipelineStepUs(p.model, { microBatches: m2 });
  for (const m of window.slice(1)) {
    const t = predictPipelineStepUs(p.model, { microBatches: m });
    if (t < predicted * (1 - 1e-9)) {
      m2 = m;
      predicted = t;
    }
  }
  if (!(predicted < current * (1 - MIN_STEP_GAIN))) return [];
  const ev = medianStep(trace);
  const worst = p.perStage.reduce((x, y) => (y.bubbleFraction > x.bubbleFraction ? y : x));
  return [
    {
      id: 'pipeline-bubble',
      severity: p.bubbleFraction > 0.4 ? 'critical' : 'warning',
      message: `The stages sit idle in pipeline bubbles for ${pct(p.bubbleFraction)} of the step (up to ${pct(worst.bubbleFraction)} on stage ${worst.stage}); GPipe with ${K} stages and ${M} micro-batches leaves ${pct(p.idealBubbleFraction)} at best.`,
      evidence: {
        lanes: p.perStage.flatMap((s) => s.lanes),
        startUs: ev.startUs,
        endUs: ev.endUs,
        numbers: {
          bubbleFraction: p.bubbleFraction,
          idealBubbleFraction: p.idealBubbleFraction,
          stages: K,
          microBatches: M,
          suggestedMicroBatches: m2,
          suggestedIdealBubbleFraction: gpipeBubble(K, m2),
          modelScale: p.model.scale,
        },
      },
      change: {
        description: `Raise the micro-batches from ${M} to ${m2} (${batch / m2} rows each): GPipe's bubble drops to ${pct(gpipeBubble(K, m2))}.${probeNote(p.model, m2)}`,
        params: { microBatches: m2 },
      },
      currentStepUs: current,
      predictedStepUs: predicted,
    },
  ];
}

/**
 * Data parallel, per-lane step model from measured costs: compute per row, and comm from the
 * fitted per-transfer + per-byte model (transfers of activations scale with the rows,
 * fixed-size collectives do not), anchored on each lane's measured comm. The rest of the
 * step (host, barrier) is held as measured, so the model gives the measured step today.
 */
function dataParallelStepModel(a: Analysis): ((rows: (number | null)[]) => number) | null {
  const dp = a.dataParallel;
  if (!dp || dp.lanes.some((l) => l.rows === null || !(l.rows > 0))) return null;
  const { alphaUs, betaUsPerByte } = dp.commModel;
  const laneTime = (l: (typeof dp.lanes)[number], r: number): number => {
    const rows = l.rows!;
    const now = l.transfersPerStep * alphaUs + betaUsPerByte * (l.scaledBytesPerStep + l.fixedBytesPerStep);
    const then = l.transfersPerStep * alphaUs + betaUsPerByte * ((l.scaledBytesPerStep * r) / rows + l.fixedBytesPerStep);
    const ratio = now > 0 ? then / now : r / rows;
    return (l.computePerStepUs * r) / rows + l.exposedCommPerStepUs * ratio;
  };
  const rest = a.stepTimeUs.median - Math.max(...dp.lanes.map((l) => laneTime(l, l.rows!)));
  return (rows) => {
    let worst = 0;
    dp.lanes.forEach((l, i) => {
      const r = rows[i];
      if (r !== null && r > 0) worst = Math.max(worst, laneTime(l, r));
    });
    return worst + rest;
  };
}

/**
 * Data parallel: communication nothing hides is a large share of the busy time. A larger
 * per-device batch amortises per-transfer latency and fixed-size collectives; fewer devices
 * do the same for the whole batch. Each candidate is predicted from the measured per-row
 * compute and the fitted comm costs, and the best throughput wins.
 */
function commBoundRule(trace: Trace, a: Analysis): Finding[] {
  const dp = a.dataParallel;
  const batch = a.plan.batch;
  if (!dp || dp.exposedCommShare < COMM_BOUND_SHARE || batch === null || dp.commModel.fit === 'none') return [];
  const model = dataParallelStepModel(a);
  if (!model) return [];
  const rows = dp.lanes.map((l) => l.rows!);
  const current = a.stepTimeUs.median;
  const now = perS(batch, current);
  type Option = { stepUs: number; throughput: number; description: string; params: Record<string, unknown> };
  const options: Option[] = [];
  for (const f of [2, 4]) {
    const r2 = rows.map((r) => r * f);
    const step = model(r2);
    options.push({
      stepUs: step,
      throughput: perS(batch * f, step),
      description: `Give each device ${f}× the rows per step: batch ${batch} → ${batch * f} (shards ${r2.join('/')})`,
      params: { batch: batch * f, shards: r2 },
    });
  }
  // Fewer devices: keep the fastest (least compute per row), split the batch evenly.
  const bySpeed = dp.lanes.slice().sort((x, y) => (x.perRowComputeUs ?? 0) - (y.perRowComputeUs ?? 0) || x.lane - y.lane);
  for (let n2 = dp.lanes.length - 1; n2 >= 1; n2--) {
    const keep = bySpeed.slice(0, n2).map((l) => l.lane);
    const base = Math.floor(batch / n2);
    const shards: number[] = [];
    const r2: (number | null)[] = dp.lanes.map(() => null);
    keep.sort((x, y) => x - y).forEach((l, j) => {
      const r = base + (j < batch - base * n2 ? 1 : 0);
      r2[l] = r;
      shards.push(r);
    });
    const step = model(r2);
    const spec = deviceSpecFor(trace, keep);
    options.push({
      stepUs: step,
      throughput: perS(batch, step),
      description: `Run on ${n2} device${n2 === 1 ? '' : 's'} (${spec}, shards ${shards.join('/')})`,
      params: { devices: spec, shards },
    });
  }
  const best = options.reduce((x, y) => (y.throughput > x.throughput ? y : x));
  if (!(best.throughput > now * (1 + MIN_THROUGHPUT_GAIN))) return [];
  const { alphaUs, betaUsPerByte } = dp.commModel;
  const ev = medianStep(trace);
  return [
    {
      id: 'comm-bound',
      severity: dp.exposedCommShare >= 0.5 ? 'critical' : 'warning',
      message: `Communication that no compute hides takes ${pct(dp.exposedCommShare)} of the devices' busy time (comm/compute ${dp.commComputeRatio.toFixed(2)}), so adding devices mostly adds transfers.`,
      evidence: {
        lanes: dp.lanes.map((l) => l.lane),
        startUs: ev.startUs,
        endUs: ev.endUs,
        numbers: {
          exposedCommShare: dp.exposedCommShare,
          commComputeRatio: dp.commComputeRatio,
          alphaUsPerTransfer: alphaUs,
          betaUsPerMB: betaUsPerByte * 1e6,
          throughputPerS: now,
          predictedThroughputPerS: best.throughput,
        },
      },
      change: {
        description: `${best.description}: measured costs (${alphaUs.toFixed(1)} µs per transfer + ${(betaUsPerByte * 1e6).toFixed(1)} µs/MB, compute per row as measured) predict ${best.throughput.toFixed(0)} samples/s instead of ${now.toFixed(0)}.`,
        params: best.params,
      },
      currentStepUs: current,
      predictedStepUs: best.stepUs,
      throughput: { currentPerS: now, predictedPerS: best.throughput },
    },
  ];
}

/**
 * Host overhead and tiny kernels: time per step that does not grow with the batch (the host
 * releasing a device late, the session's gaps between operators) is a large share, often
 * because the operators are tiny. A larger batch amortises it; the prediction scales the
 * measured busy time (operators and comm) with the batch and keeps the overhead fixed.
 */
function hostOverheadRule(trace: Trace, a: Analysis): Finding[] {
  const batch = a.plan.batch;
  if (a.mode !== 'data' || batch === null || a.steps === 0) return [];
  const nSteps = a.steps;
  const lanes = a.breakdown.lanes;
  const overhead = lanes.map((l, i) => {
    // Gaps between operators are known only on lanes with operator spans (a provider without
    // ORT's profiler has none, and its whole session would otherwise count as a gap). They are
    // measured in the operator-profiled steps, so their share of those steps' compute is what
    // carries over to the timed steps (which have no operator spans).
    const g = a.ops.perLane[i];
    const gapShare = g && g.opCount > 0 && g.computeUs > 0 ? Math.max(0, 1 - g.opUs / g.computeUs) : 0;
    const gap = l.computeUs * gapShare;
    return (l.idleByCauseUs.host + gap) / nSteps;
  });
  const busy = lanes.map((l, i) => (l.computeUs + l.exposedCommUs) / nSteps - (overhead[i] - l.idleByCauseUs.host / nSteps));
  // Shares are of the lanes' own time (overhead + work), leaving out waiting for other
  // devices, which is the straggler rule's business; the same definition predicts the share
  // after the change.
  const shareAt = (f: number): number => {
    const o = overhead.reduce((x, y) => x + y, 0);
    const b = busy.reduce((x, y) => x + y, 0);
    return o + f * b > 0 ? o / (o + f * b) : 0;
  };
  const share = shareAt(1);
  const groups = a.ops.perStage;
  const opCount = groups.reduce((x, g) => x + g.opCount, 0);
  const tiny = opCount > 0 ? groups.reduce((x, g) => x + g.tinyOpFraction * g.opCount, 0) / opCount : 0;
  if (!(share >= HOST_OVERHEAD_SHARE || (a.ops.available && tiny >= TINY_OP_FRACTION && share >= HOST_OVERHEAD_SHARE_TINY))) return [];
  const rest = a.stepTimeUs.median - Math.max(...lanes.map((_, i) => overhead[i] + busy[i]));
  const current = a.stepTimeUs.median;
  // With a probe at twice the batch, that batch's step is the probe's (measured, batched
  // kernels included); without one the work is taken to grow in proportion to the rows.
  // A probe that measured twice the rows faster than the run contradicts itself (noise), and
  // no gain is predicted from it: predicted at the run's own step, the least twice the rows
  // can take, the advice missed by 32 % (openWakeWord's melspectrogram: a probe of 736 µs
  // against 840 µs at batch 8, a run of its own at 16 took 1.26 ms), and the rows-proportional
  // line beyond it missed by 2–3× on sub-millisecond steps.
  const probe = trace.meta.batchProbe;
  const probeMedian = probe && probe.batch === 2 * batch && probe.stepTimesUs.length > 0 ? median(probe.stepTimesUs) : null;
  if (probeMedian !== null && probeMedian < current) return [hostOverheadUnpredicted(trace, a, lanes, share, tiny, batch, probeMedian)];
  const probeUs = probeMedian;
  const stepAt = (f: number): number =>
    Math.max(...lanes.map((_, i) => overhead[i] + f * busy[i])) + rest;
  // With a probe the advice stays within what the run measured (twice the batch): a line
  // through two points does not know how the per-row cost bends further out (batched kernels
  // get cheaper per row, caches run out), and on sub-millisecond steps the extrapolation
  // missed by 20–50 %. Larger batches are named as what they are, beyond the measurements.
  const wanted = [2, 4, 8].find((x) => shareAt(x) <= HOST_OVERHEAD_TARGET) ?? 8;
  const f = probeUs !== null ? 2 : wanted;
  const predicted = probeUs !== null ? probeUs : stepAt(f);
  const further = wanted > f ? ` A batch of ${batch * wanted} would leave it about ${pct(shareAt(wanted))} (beyond what this run measured).` : '';
  const basis = probeUs === null ? '' : ` This run measured the batch of ${batch * 2} too: ${dur(probeUs)} per step.${further}`;
  const now = perS(batch, current);
  const then = perS(batch * f, predicted);
  if (!(then > now * (1 + MIN_THROUGHPUT_GAIN))) return [];
  // With a probe, the gain must hold at the slow end of the probe's own 90 % interval too:
  // its few steps of a sub-millisecond model spread up to 2× on a shared machine (silero
  // VAD v5's probe at batch 16: 0.74–1.46 ms in one run), and its median alone then
  // promised gains a rerun did not measure.
  if (probeUs !== null && !(perS(batch * f, predicted + medianHalfWidthUs(probe!.stepTimesUs)) > now * (1 + MIN_THROUGHPUT_GAIN))) return [];
  const params: Record<string, unknown> = { batch: batch * f };
  if (a.mode === 'data' && a.plan.shards) params['shards'] = a.plan.shards.map((r) => r * f);
  const ev = medianStep(trace);
  return [
    {
      id: 'host-overhead',
      severity: share >= 0.3 ? 'critical' : 'warning',
      message: hostOverheadMessage(share, tiny),
      evidence: {
        lanes: lanes.map((l) => l.lane),
        startUs: ev.startUs,
        endUs: ev.endUs,
        numbers: {
          overheadShare: share,
          overheadPerStepUs: overhead.reduce((x, y) => x + y, 0) / Math.max(1, lanes.length),
          tinyOpFraction: tiny,
          throughputPerS: now,
          predictedThroughputPerS: then,
        },
      },
      change: {
        description: `Raise the batch from ${batch} to ${batch * f}: the overhead stays per step while the work grows, leaving it ${pct(shareAt(f))} of the time and giving ${then.toFixed(0)} samples/s instead of ${now.toFixed(0)}.${basis}`,
        params,
      },
      currentStepUs: current,
      predictedStepUs: predicted,
      throughput: { currentPerS: now, predictedPerS: then },
    },
  ];
}

function hostOverheadMessage(share: number, tiny: number): string {
  const tinyWords = tiny >= TINY_OP_FRACTION ? `; ${pct(tiny)} of the operators average under ${TINY_OP_US} µs` : '';
  return `Fixed per-step overhead (host idle and gaps between operators) takes ${pct(share)} of the devices' own time${tinyWords}, so they spend much of each step waiting on the host.`;
}

/**
 * Host overhead whose probe at twice the batch measured a shorter step than the run's: the
 * larger batch is named, as information, with no gain predicted.
 */
function hostOverheadUnpredicted(trace: Trace, a: Analysis, lanes: Analysis['breakdown']['lanes'], share: number, tiny: number, batch: number, probeUs: number): Finding {
  const ev = medianStep(trace);
  const params: Record<string, unknown> = { batch: batch * 2 };
  if (a.mode === 'data' && a.plan.shards) params['shards'] = a.plan.shards.map((r) => r * 2);
  return {
    id: 'host-overhead',
    severity: 'info',
    message: hostOverheadMessage(share, tiny),
    evidence: {
      lanes: lanes.map((l) => l.lane),
      startUs: ev.startUs,
      endUs: ev.endUs,
      numbers: { overheadShare: share, tinyOpFraction: tiny, probeStepUs: probeUs },
    },
    change: {
      description: `A larger batch spreads the overhead over more rows (--batch ${batch * 2}), but no gain is predicted: this run measured the batch of ${batch * 2} too, at ${dur(probeUs)} per step, faster than the batch of ${batch} at ${dur(a.stepTimeUs.median)}, which only noise explains. Measure --batch ${batch * 2} with more --steps to know.`,
      params,
    },
    currentStepUs: a.stepTimeUs.median,
    predictedStepUs: null,
  };
}

/**
 * Poor scaling: the speedup over one device is well below the device count. Amdahl's law
 * fitted to the measurements (the run's baseline, or a sweep) gives the serial fraction and
 * the fewest devices that keep SCALING_KEEP of today's speedup.
 *
 * The suggestion's parameters describe the configuration its prediction was measured or
 * fitted on. With the run's own baseline, one device means exactly what the baseline ran: a
 * data plan (no micro-batches, no stages) with the whole batch on one device of the first
 * device's kind, at the first device's thread count, so the prediction is the baseline's
 * measured step; more devices keep the run's threads per device. The thread count is in the
 * evidence (`threadsPerDevice`): a device spec cannot set it, so the runner checks that the
 * suggested spec gets those threads and otherwise reports the change without a prediction.
 */
function poorScalingRule(trace: Trace, a: Analysis, fromBaseline: boolean): Finding[] {
  const sc = a.scaling;
  const n = trace.lanes.length;
  if (!sc || n < 2) return [];
  const row = sc.rows.find((r) => r.devices === n);
  if (!row || row.efficiency >= POOR_EFFICIENCY) return [];
  const f = sc.serialFraction;
  let n2 = -1;
  for (let k = 1; k < n; k++) {
    if (amdahlSpeedup(f, k) >= SCALING_KEEP * row.speedup) {
      n2 = k;
      break;
    }
  }
  if (n2 < 1) return [];
  const s2 = amdahlSpeedup(f, n2);
  const batch = a.plan.batch;
  const t1 = sc.perSample ? (batch ?? NaN) * sc.oneDeviceUs : sc.oneDeviceUs;
  const predicted = Number.isFinite(t1) ? t1 / s2 : null;
  // One device from the baseline: the baseline's device (the first). Otherwise keep the devices
  // that compute fastest per row when that is known.
  const order =
    a.dataParallel && !(fromBaseline && n2 === 1)
      ? a.dataParallel.lanes.slice().sort((x, y) => (x.perRowComputeUs ?? 0) - (y.perRowComputeUs ?? 0) || x.lane - y.lane).map((l) => l.lane)
      : trace.lanes.map((_, l) => l);
  const keep = order.slice(0, n2);
  const spec = deviceSpecFor(trace, keep);
  const threads = keep.map((l) => trace.meta.devices[trace.lanes[l]?.device ?? -1]?.threads ?? 0);
  const threadsPerDevice = threads.length > 0 && threads.every((t) => t === threads[0]) && threads[0] > 0 ? threads[0] : null;
  const oneLikeBaseline = fromBaseline && n2 === 1;
  const params: Record<string, unknown> = { devices: spec };
  if (oneLikeBaseline && a.mode === 'pipeline') params['mode'] = 'data';
  else if (a.mode === 'pipeline') params['stages'] = n2;
  // A data plan's rows per device, for the devices kept (an even split, as the run would make).
  if ((a.mode === 'data' || params['mode'] === 'data') && batch !== null && Number.isInteger(batch) && batch >= n2) {
    params['shards'] = Array.from({ length: n2 }, (_, j) => Math.floor(batch / n2) + (j < batch % n2 ? 1 : 0));
  }
  const threadWords = threadsPerDevice !== null ? `${threadsPerDevice} thread${threadsPerDevice === 1 ? '' : 's'}` : null;
  const baseDevice = trace.meta.devices[trace.lanes[0]?.device ?? -1]?.id ?? 'the first device';
  const ev = medianStep(trace);
  let description: string;
  if (oneLikeBaseline) {
    const how = a.mode === 'pipeline' ? `--mode data --devices ${spec}` : `--devices ${spec}`;
    description =
      `Use 1 device as the baseline ran it (${how}: the whole batch${batch !== null ? ` of ${batch}` : ''} in one run, no micro-batches${threadWords ? `, ${threadWords} as ${baseDevice} had` : ''}): ` +
      `the baseline measured ${dur(t1)} per step there${row.speedup < 1 ? ', less than the parallel run' : ''}, and ${n - 1} device${n - 1 === 1 ? ' is' : 's are'} freed. ` +
      `The prediction is that measured configuration${threadWords ? `; with another thread count it does not hold` : ''}.`;
  } else {
    description =
      `Use ${n2} device${n2 === 1 ? '' : 's'} (${spec}${threadWords ? `, ${threadWords} each as measured` : ''}): the fit predicts ${s2.toFixed(2)}×, at least ${pct(SCALING_KEEP)} of today's speedup, and frees ${n - n2} device${n - n2 === 1 ? '' : 's'}.`;
  }
  const numbers: Record<string, number> = {
    devices: n,
    speedup: row.speedup,
    efficiency: row.efficiency,
    serialFraction: f,
    fitRms: sc.fitRms,
    suggestedDevices: n2,
    predictedSpeedup: s2,
  };
  if (threadsPerDevice !== null) numbers['threadsPerDevice'] = threadsPerDevice;
  return [
    {
      id: 'poor-scaling',
      severity: row.efficiency < 0.35 ? 'critical' : 'warning',
      message:
        row.speedup < 1
          ? `${n} devices run slower than one (${row.speedup.toFixed(2)}× its speed): the parallel run costs more in overhead and contention than it gains, beyond what Amdahl's law can describe.`
          : `${n} devices run ${row.speedup.toFixed(2)}× faster than one (efficiency ${pct(row.efficiency)}); Amdahl's law fitted to the measurements puts ${pct(f)} of the work in a part that does not parallelise.`,
      evidence: {
        lanes: trace.lanes.map((_, l) => l),
        startUs: ev.startUs,
        endUs: ev.endUs,
        numbers,
      },
      change: { description, params },
      currentStepUs: a.stepTimeUs.median,
      predictedStepUs: predicted,
    },
  ];
}

/**
 * One operator type takes most of a stage's compute (or of the run's, outside pipelines):
 * that operator, not the parallel plan, is where the time goes. Informational; no change of
 * plan predicts a gain, so there is no predicted step.
 */
function dominantOpRule(trace: Trace, a: Analysis): Finding[] {
  if (!a.ops.available) return [];
  const out: Finding[] = [];
  const ev = medianStep(trace);
  const staged = a.pipeline !== null && a.ops.perStage.length > 1;
  for (const g of a.ops.perStage) {
    const top = g.opTypes[0];
    if (!top || !(top.shareOfCompute > DOMINANT_OP_SHARE)) continue;
    const where = staged ? `stage ${g.index}'s compute` : 'the compute';
    const node = g.ops.find((o) => o.name === top.topOp)?.node ?? top.topOp;
    out.push({
      id: 'dominant-op',
      severity: 'info',
      message: `${top.opType} takes ${pct(top.shareOfCompute)} of ${where}, most of it in ${node}.`,
      evidence: {
        lanes: g.lanes,
        startUs: ev.startUs,
        endUs: ev.endUs,
        numbers: { share: top.shareOfCompute, opTypeUs: top.totalUs, computeUs: g.computeUs, executions: top.count, meanUs: top.meanUs },
      },
      change: {
        description: `Look at ${node} first: a faster ${top.opType} kernel (fused, quantised, or on another execution provider) is what would shorten ${staged ? `stage ${g.index}` : 'the step'}.`,
        params: {},
      },
      currentStepUs: a.stepTimeUs.median,
      predictedStepUs: null,
    });
  }
  return out;
}

/** Rules whose evidence is measured timing, which contention distorts. */
export const TIMING_RULES: ReadonlySet<string> = new Set(['straggler', 'pipeline-imbalance', 'pipeline-bubble', 'comm-bound', 'host-overhead', 'poor-scaling', 'tensor-collectives', 'tensor-vs-data']);

/**
 * The step time a finding's change saves, µs, for the same work: `current − predicted`, or
 * with a throughput change (a larger batch) the current step less the time the current work
 * would take at the predicted throughput. Poor scaling: the time lost against perfect scaling
 * (`current · (1 − speedup / devices)`), which is what its advice rests on. Null for findings
 * without a prediction.
 */
export function findingEffectUs(f: Finding): number | null {
  if (f.id === 'poor-scaling') {
    const sp = f.evidence.numbers['speedup'];
    const n = f.evidence.numbers['devices'];
    if (Number.isFinite(sp) && n > 0) return f.currentStepUs * (1 - sp / n);
  }
  if (f.predictedStepUs === null) return null;
  if (f.throughput && f.throughput.predictedPerS > 0) return f.currentStepUs * (1 - f.throughput.currentPerS / f.throughput.predictedPerS);
  return f.currentStepUs - f.predictedStepUs;
}

/**
 * Applies measurement quality to findings: drops those whose effect does not exceed the
 * run's noise, and holds back timing findings when the quality is poor.
 */
export function gateFindings(found: Finding[], quality: MeasurementQuality, onPoor: 'hold' | 'show' = 'hold'): Finding[] {
  const out: Finding[] = [];
  for (const f of found) {
    const effect = findingEffectUs(f);
    if (effect !== null && !(effect > quality.noiseUs)) continue;
    if (quality.verdict === 'poor' && TIMING_RULES.has(f.id)) {
      const why = quality.reasons[0] ?? 'measurement quality is poor';
      if (onPoor === 'show') out.push({ ...f, caveat: `Measured while the machine was busy: ${why}` });
      else out.push({ ...f, severity: 'info', heldBack: { reason: `Held back: measurement quality is poor. ${why}`, severity: f.severity } });
    } else {
      out.push(f);
    }
  }
  return out;
}

/** Findings shown as advice (not held back). */
export function activeFindings(found: readonly Finding[]): Finding[] {
  return found.filter((f) => !f.heldBack);
}

export interface FindingsOptions {
  /** A precomputed analysis of the same trace (saves recomputing it). */
  analysis?: Analysis;
  /** A sweep of the same model on 1..N devices, for the poor-scaling rule. */
  scaling?: ScalingPoint[];
}

/** Runs every rule on a trace whose idle spans have been derived. */
export function findings(trace: Trace, summary: ProfileSummary, options: FindingsOptions = {}): Finding[] {
  const a = options.analysis ?? analyse(trace, options.scaling ? { scaling: options.scaling } : {});
  const quality = (summary as Partial<ProfileSummary>).measurementQuality ?? measurementQuality(trace);
  const found = [
    ...stragglerRule(trace, summary),
    ...pipelineImbalanceRule(trace, a),
    ...pipelineBubbleRule(trace, a),
    ...commBoundRule(trace, a),
    ...hostOverheadRule(trace, a),
    ...poorScalingRule(trace, a, options.scaling === undefined && trace.meta.baseline !== undefined),
    ...dominantOpRule(trace, a),
    ...scheduleMemoryRule(trace, a.stepTimeUs.median),
    ...tensorCollectivesRule(trace, a),
    ...tensorVsDataRule(trace, a),
    ...deviceMemoryRule(trace, a.stepTimeUs.median),
  ];
  const trained = trace.meta.training ? found.map(trainingCaveat) : found;
  return gateFindings(trained.map(informIfNoGain), quality, trace.meta.adviceOnPoorQuality ?? 'hold');
}

/**
 * On a training run, a suggestion that changes the batch changes more than throughput: the
 * gradient of a larger batch is another optimisation step. The rules' predictions still hold
 * (the gradient all-reduce, the packing of its buckets and the optimizer are per step, so a
 * larger batch amortises them as it does host overhead); the suggestion says what else moves.
 */
function trainingCaveat(f: Finding): Finding {
  if (f.change.params['batch'] === undefined) return f;
  return { ...f, change: { ...f.change, description: `${f.change.description} This is a training run: a larger batch also changes each optimizer step; scale the learning rate with it (--lr) and compare loss curves.` } };
}
