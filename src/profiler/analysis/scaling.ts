/**
 * Scaling across a sweep of device counts: speedup, efficiency, and the Amdahl serial
 * fraction that best fits the measurements.
 *
 * Amdahl: S(N) = 1 / (f + (1 − f) / N), i.e. 1/S = f + (1 − f) · (1/N), a line in 1/N whose
 * intercept and slope are tied. With a one-device time T1 (a 1-device point or the run's
 * baseline), f is the least-squares fit of 1/S against 1/N under that tie:
 *     f = Σ (y − x)(1 − x) / Σ (1 − x)²,  x = 1/N, y = 1/S = T_N / T1.
 * Without T1 the line T_N = a + b/N is fitted freely and T1 = a + b, f = a / (a + b).
 *
 * Points are strong scaling (the same global batch). When every point gives its batch, time
 * per sample is compared instead, so sweeps whose batch changed still line up.
 */
import type { Trace } from '../trace-format';
import { median } from '../stats';

export interface ScalingPoint {
  devices: number;
  /** Median step time, µs. */
  stepUs: number;
  /** Global batch, when known. */
  batch?: number;
}

export interface ScalingRow {
  devices: number;
  stepUs: number;
  speedup: number;
  efficiency: number;
  /** Speedup the fitted Amdahl law gives for this device count. */
  fittedSpeedup: number;
}

export interface ScalingAnalysis {
  /** Where the one-device time came from. */
  reference: 'one-device point' | 'fit';
  /** One-device time (per step, or per sample when batches are known), µs. */
  oneDeviceUs: number;
  /** Whether times are per sample (every point gave its batch) rather than per step. */
  perSample: boolean;
  rows: ScalingRow[];
  /** Amdahl serial fraction f, clamped to [0, 1]. */
  serialFraction: number;
  /** Root-mean-square error of the fit in 1/S. */
  fitRms: number;
}

/** Amdahl's law: the speedup on n devices with serial fraction f. */
export function amdahlSpeedup(f: number, n: number): number {
  return 1 / (f + (1 - f) / n);
}

/**
 * A scaling point per trace: its device count (lanes) and median step. Traces of the same
 * model on 1..N devices make a sweep.
 */
export function scalingPointsFromTraces(traces: Trace[]): ScalingPoint[] {
  return traces.map((t) => {
    const batch = t.meta.plan.mode === 'imported' ? null : t.meta.plan.batch;
    const pt: ScalingPoint = { devices: t.lanes.length, stepUs: median(t.steps.map((w) => w.endUs - w.startUs)) };
    if (typeof batch === 'number' && batch > 0) pt.batch = batch;
    return pt;
  });
}

/** Fits Amdahl's law to a sweep; null with fewer than two distinct device counts and no one-device point. */
export function analyseScaling(points: ScalingPoint[]): ScalingAnalysis | null {
  const pts = points.filter((q) => q.devices >= 1 && q.stepUs > 0 && Number.isFinite(q.stepUs));
  if (pts.length === 0) return null;
  const perSample = pts.every((q) => q.batch !== undefined && q.batch > 0);
  const time = (q: ScalingPoint): number => (perSample ? q.stepUs / q.batch! : q.stepUs);
  const ones = pts.filter((q) => q.devices === 1);
  let t1: number;
  let reference: ScalingAnalysis['reference'];
  let f: number;
  if (ones.length > 0) {
    t1 = median(ones.map(time));
    reference = 'one-device point';
    let num = 0;
    let den = 0;
    for (const q of pts) {
      const x = 1 / q.devices;
      const y = time(q) / t1;
      num += (y - x) * (1 - x);
      den += (1 - x) * (1 - x);
    }
    // Only one-device points: nothing to fit, and nothing serial can be seen.
    f = den > 0 ? num / den : 0;
  } else {
    const xs = pts.map((q) => 1 / q.devices);
    const ys = pts.map(time);
    const n = xs.length;
    const mx = xs.reduce((a, b) => a + b, 0) / n;
    const my = ys.reduce((a, b) => a + b, 0) / n;
    let sxy = 0;
    let sxx = 0;
    for (let i = 0; i < n; i++) {
      sxy += (xs[i] - mx) * (ys[i] - my);
      sxx += (xs[i] - mx) * (xs[i] - mx);
    }
    if (!(sxx > 0)) return null;
    const b = Math.max(0, sxy / sxx);
    const a = Math.max(0, my - b * mx);
    t1 = a + b;
    if (!(t1 > 0)) return null;
    f = a / t1;
    reference = 'fit';
  }
  f = Math.min(1, Math.max(0, f));
  let sq = 0;
  const rows = pts
    .slice()
    .sort((a, b) => a.devices - b.devices)
    .map((q) => {
      const speedup = t1 / time(q);
      const fitted = amdahlSpeedup(f, q.devices);
      sq += (1 / speedup - 1 / fitted) ** 2;
      return { devices: q.devices, stepUs: q.stepUs, speedup, efficiency: speedup / q.devices, fittedSpeedup: fitted };
    });
  return { reference, oneDeviceUs: t1, perSample, rows, serialFraction: f, fitRms: Math.sqrt(sq / rows.length) };
}
