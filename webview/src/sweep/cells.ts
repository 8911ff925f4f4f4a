/**
 * The sweep panel's DOM-free parts (the tests read them under Node): each table row's cells,
 * the line of prediction error and measurement quality above the table, and the points of
 * the chart's predicted curve.
 */
import { amdahlSpeedup } from '../../../src/profiler/analysis/scaling';
import type { SweepPlanRow, SweepResult, SweepScaling } from '../../../src/profiler/sweep/schema';
import { formatBytes } from '../format';

const us = (v: number | null): string => (v === null ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(0)} µs`);
const pct = (v: number | null): string => (v === null ? '–' : `${(v * 100).toFixed(0)} %`);
const signed = (v: number | null): string => (v === null ? '–' : `${v > 0 ? '+' : ''}${v.toFixed(1)} %`);

/** Column headings, in order. */
export const SWEEP_COLUMNS = ['plan', 'measured step [p25–p75]', 'predicted', 'error', 'efficiency', 'bubble', 'comm', 'memory / device', 'fits'] as const;

/** A row's cells as text, in {@link SWEEP_COLUMNS} order. */
export function rowCells(p: SweepPlanRow): string[] {
  return [
    p.label,
    p.measuredUs === null ? 'predicted' : `${us(p.measuredUs)} [${us(p.measuredInterval?.lo ?? null)}–${us(p.measuredInterval?.hi ?? null)}]`,
    us(p.predictedUs),
    signed(p.errorPct),
    pct(p.efficiency),
    pct(p.bubble),
    pct(p.commShare),
    p.memoryPerDeviceBytes === null ? '–' : formatBytes(p.memoryPerDeviceBytes),
    p.fits === null ? '–' : p.fits ? 'yes' : 'NO',
  ];
}

/** The line above the table: prediction error and measurement quality. */
export function errorLine(r: SweepResult): string {
  const n = r.plans.filter((p) => p.kind === 'measured' && p.errorPct !== null).length;
  const err = r.mapePct === null ? 'no measured plan has a prediction' : `MAPE ${r.mapePct.toFixed(1)} %, max |error| ${r.maxAbsErrorPct!.toFixed(1)} % over ${n} measured plans (each predicted from the others' runs)`;
  const q = r.measurementQuality;
  return `${err} · measurement quality ${q.verdict} (${q.good} good, ${q.fair} fair, ${q.poor} poor of ${q.runs} runs)`;
}

/** Points of the predicted curve: Amdahl at the fitted fraction, else the predicted points joined. */
export function curvePoints(s: SweepScaling, maxN: number, samples = 60): [number, number][] {
  const f = s.predictedSerialFraction;
  if (f === null) return s.predicted.map((p) => [p.devices, p.speedup]);
  return Array.from({ length: samples + 1 }, (_, i) => {
    const n = 1 + ((maxN - 1) * i) / samples;
    return [n, amdahlSpeedup(f, n)];
  });
}
