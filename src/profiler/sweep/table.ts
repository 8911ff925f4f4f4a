/**
 * The sweep's table: one row per plan with measured and predicted step, error, efficiency,
 * bubble, communication share and memory, best first; the error over the measured plans; the
 * speedup chart's points. Pure: the runtime hands in what it measured and predicted.
 */
import { TOOL_VERSION } from '../../common/version';
import { median, quantile } from '../stats';
import { analyseScaling } from '../analysis/scaling';
import type { QualityVerdict } from '../quality';
import type { SweepPlanRow, SweepQuality, SweepResult, SweepScaling } from './schema';

/** What the runtime knows of one plan before the table is made. */
export interface PlanOutcome {
  label: string;
  plan: SweepPlanRow['plan'];
  kind: SweepPlanRow['kind'];
  devices: number;
  /** Every measured step time of every repetition, µs (empty when only predicted). */
  stepTimesUs: number[];
  runs: number;
  /** Verdict of each run. */
  qualities: QualityVerdict[];
  predictedUs: number | null;
  predictionBasis: string;
  assumptions: string[];
  bubble: number | null;
  commShare: number | null;
  memoryPerDeviceBytes: number | null;
  fits: boolean | null;
}

export interface SweepInput {
  model: string;
  devices: string;
  settings: SweepResult['settings'];
  outcomes: PlanOutcome[];
  /**
   * Rows predicted elsewhere (other hardware, other links, multi-node projections); they join
   * the table as they are, labelled predicted, and are ordered with the rest.
   */
  extraPredicted?: SweepPlanRow[];
  /** Measurement-quality reasons of the runs that were not good. */
  qualityReasons: string[];
  /**
   * Data plans' step predicted from every measured plan (not leave-one-out), by label: the
   * predicted curve of the chart and the one-device reference of predicted-only rows.
   */
  fullFitUs?: Record<string, number>;
  interference: Record<string, number>;
  notRunnable: SweepResult['notRunnable'];
  skipped: SweepResult['skipped'];
}

const WORST: QualityVerdict[] = ['poor', 'fair', 'good'];
const worstOf = (vs: readonly QualityVerdict[]): QualityVerdict | null => WORST.find((w) => vs.includes(w)) ?? null;

/** Time per row of a row: measured where measured, else predicted; null when neither. */
export function rowTimePerRow(r: Pick<SweepPlanRow, 'measuredUs' | 'predictedUs' | 'plan'>): number | null {
  const t = r.measuredUs ?? r.predictedUs;
  return t === null ? null : t / r.plan.batch;
}

/** Best first: least time per row (measured where measured, else predicted); rows without either last. */
export function orderRows(rows: readonly SweepPlanRow[]): SweepPlanRow[] {
  return rows
    .map((r, i) => ({ r, i, t: rowTimePerRow(r) }))
    .sort((a, b) => (a.t === null ? 1 : 0) - (b.t === null ? 1 : 0) || (a.t ?? 0) - (b.t ?? 0) || a.i - b.i)
    .map((x) => x.r);
}

/** Mean and largest |error| over measured rows with a prediction; nulls when there is none. */
export function errorStats(rows: readonly SweepPlanRow[]): { mapePct: number | null; maxAbsErrorPct: number | null } {
  const errs = rows.filter((r) => r.kind === 'measured' && r.errorPct !== null).map((r) => Math.abs(r.errorPct!));
  if (errs.length === 0) return { mapePct: null, maxAbsErrorPct: null };
  return { mapePct: errs.reduce((a, b) => a + b, 0) / errs.length, maxAbsErrorPct: Math.max(...errs) };
}

function rowOf(o: PlanOutcome): SweepPlanRow {
  const measured = o.stepTimesUs.length > 0 ? median(o.stepTimesUs) : null;
  const errorPct = measured !== null && measured > 0 && o.predictedUs !== null ? ((o.predictedUs - measured) / measured) * 100 : null;
  return {
    plan: o.plan,
    label: o.label,
    kind: o.kind,
    devices: o.devices,
    measuredUs: measured,
    measuredInterval: measured !== null ? { lo: quantile(o.stepTimesUs, 0.25), hi: quantile(o.stepTimesUs, 0.75) } : null,
    runs: o.runs,
    predictedUs: o.predictedUs,
    errorPct,
    efficiency: null,
    bubble: o.bubble,
    commShare: o.commShare,
    memoryPerDeviceBytes: o.memoryPerDeviceBytes,
    fits: o.fits,
    predictionBasis: o.predictionBasis,
    quality: worstOf(o.qualities),
    assumptions: o.assumptions,
  };
}

/** One-device time per row of the data plans, measured (else predicted), by batch. */
function oneDevicePerRow(rows: readonly SweepPlanRow[], pick: 'measuredUs' | 'predictedUs'): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of rows) {
    const t = r[pick];
    if (r.plan.mode === 'data' && r.devices === 1 && t !== null && t > 0 && !out.has(r.plan.batch)) out.set(r.plan.batch, t / r.plan.batch);
  }
  return out;
}

/** Efficiency: speedup per row against one device (same batch where measured, else any), over the devices. */
function withEfficiency(rows: SweepPlanRow[], fullFit: Record<string, number>): SweepPlanRow[] {
  const measured = oneDevicePerRow(rows, 'measuredUs');
  const predicted = oneDevicePerRow(
    rows.map((r) => ({ ...r, predictedUs: fullFit[r.label] ?? r.predictedUs })),
    'predictedUs',
  );
  const any = (m: Map<number, number>): number | null => (m.size > 0 ? median([...m.values()]) : null);
  return rows.map((r) => {
    const t = rowTimePerRow(r);
    const ref = r.measuredUs !== null ? (measured.get(r.plan.batch) ?? any(measured)) : (predicted.get(r.plan.batch) ?? any(predicted) ?? any(measured));
    return { ...r, efficiency: t !== null && t > 0 && ref !== null ? ref / t / r.devices : null };
  });
}

/**
 * The chart: data-parallel speedup against device count at the first batch with a measured
 * one-device plan; measured points against the measured one-device step, predicted points
 * against the predicted one, with Amdahl's serial fraction fitted to each.
 */
export function sweepScaling(rows: readonly SweepPlanRow[], fullFit: Record<string, number> = {}): SweepScaling | null {
  const data = rows.filter((r) => r.plan.mode === 'data');
  const one = data.find((r) => r.devices === 1 && r.measuredUs !== null);
  if (!one) return null;
  const batch = one.plan.batch;
  const same = data.filter((r) => r.plan.batch === batch).sort((a, b) => a.devices - b.devices);
  const measured = same.filter((r) => r.measuredUs !== null).map((r) => ({ devices: r.devices, speedup: one.measuredUs! / r.measuredUs! }));
  const curveUs = (r: SweepPlanRow): number | null => fullFit[r.label] ?? r.predictedUs;
  const first = same.find((r) => r.devices === 1);
  const p1 = first ? curveUs(first) : null;
  const predicted = p1 === null ? [] : same.flatMap((r) => (curveUs(r) !== null ? [{ devices: r.devices, speedup: p1 / curveUs(r)! }] : []));
  const fit = (pts: { devices: number; speedup: number }[]): number | null => {
    if (new Set(pts.map((p) => p.devices)).size < 2) return null;
    return analyseScaling(pts.map((p) => ({ devices: p.devices, stepUs: 1 / p.speedup })))?.serialFraction ?? null;
  };
  return { batch, measured, predicted, predictedSerialFraction: fit(predicted), measuredSerialFraction: fit(measured) };
}

function qualityOf(outcomes: readonly PlanOutcome[], reasons: string[]): SweepQuality {
  const all = outcomes.flatMap((o) => o.qualities);
  const count = (v: QualityVerdict): number => all.filter((q) => q === v).length;
  return { verdict: worstOf(all) ?? 'good', runs: all.length, good: count('good'), fair: count('fair'), poor: count('poor'), reasons: [...new Set(reasons)] };
}

/** The sweep's result: rows best first, errors, quality, chart. */
export function assembleSweep(input: SweepInput): SweepResult {
  const fullFit = input.fullFitUs ?? {};
  const rows = orderRows(withEfficiency([...input.outcomes.map(rowOf), ...(input.extraPredicted ?? [])], fullFit));
  return {
    tool: { name: 'parallax', version: TOOL_VERSION },
    model: input.model,
    devices: input.devices,
    settings: input.settings,
    plans: rows,
    ...errorStats(rows),
    measurementQuality: qualityOf(input.outcomes, input.qualityReasons),
    interference: input.interference,
    scaling: sweepScaling(rows, fullFit),
    notRunnable: input.notRunnable,
    skipped: input.skipped,
  };
}
