import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { analyse } from '../../src/profiler/analysis/index';
import { amdahlSpeedup, analyseScaling, scalingPointsFromTraces } from '../../src/profiler/analysis/scaling';
import type { SpanRow } from '../../src/profiler/trace-format';
import { meta, traceOf } from '../helpers/trace-builders';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);

/** Step times of a workload with serial fraction f, one-device time t1. */
const amdahl = (f: number, t1: number, ns: number[]): { devices: number; stepUs: number }[] =>
  ns.map((n) => ({ devices: n, stepUs: t1 * (f + (1 - f) / n) }));

test("Amdahl's law gives 1 / (f + (1 − f) / N)", () => {
  close(amdahlSpeedup(0, 8), 8);
  close(amdahlSpeedup(1, 8), 1);
  close(amdahlSpeedup(0.2, 4), 2.5);
});

test('a sweep that follows Amdahl exactly gives back its serial fraction, speedups and efficiencies', () => {
  const s = analyseScaling(amdahl(0.2, 1000, [1, 2, 4, 8]))!;
  assert.equal(s.reference, 'one-device point');
  close(s.serialFraction, 0.2);
  close(s.fitRms, 0, 1e-9);
  assert.deepEqual(s.rows.map((r) => r.devices), [1, 2, 4, 8]);
  close(s.rows[2].speedup, 2.5);
  close(s.rows[2].efficiency, 0.625);
  close(s.rows[3].fittedSpeedup, amdahlSpeedup(0.2, 8));
});

test('the serial fraction is the least-squares fit of 1/S against 1/N', () => {
  // 1/S = T_N / T1 at N = 1, 2, 4: 1, 0.7, 0.5 → x = 1, 0.5, 0.25. Minimising
  // Σ ((y − x) − f (1 − x))² gives f = Σ (y − x)(1 − x) / Σ (1 − x)² = (0.1 + 0.1875) / (0.25 + 0.5625).
  const s = analyseScaling([
    { devices: 1, stepUs: 100 },
    { devices: 2, stepUs: 70 },
    { devices: 4, stepUs: 50 },
  ])!;
  close(s.serialFraction, 0.2875 / 0.8125);
});

test('without a one-device point the one-device time is fitted too', () => {
  const s = analyseScaling(amdahl(0.3, 500, [2, 4, 8]))!;
  assert.equal(s.reference, 'fit');
  close(s.oneDeviceUs, 500);
  close(s.serialFraction, 0.3);
});

test('when every point gives its batch, time per sample is compared', () => {
  // Weak scaling without loss: the batch grows with the devices, the step stays the same.
  const s = analyseScaling([
    { devices: 1, stepUs: 100, batch: 8 },
    { devices: 2, stepUs: 100, batch: 16 },
    { devices: 4, stepUs: 100, batch: 32 },
  ])!;
  assert.equal(s.perSample, true);
  close(s.serialFraction, 0);
  close(s.rows[2].efficiency, 1);
});

test('a single run with a baseline scales against its one-device baseline', () => {
  const rows: SpanRow[] = [0, 1].map((lane) => ({ lane, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 }));
  const t = deriveIdle(traceOf(rows, [[0, 100]], meta({ baseline: { description: 'one device', stepTimeUs: { median: 150, p10: 150, p90: 150 } } })));
  const s = analyse(t).scaling!;
  close(s.rows[1].speedup, 1.5);
  close(s.rows[1].efficiency, 0.75);
  // One point fixes f: 1/1.5 = f + (1 − f)/2 → f = 1/3.
  close(s.serialFraction, 1 / 3);
});

test('traces of a sweep become scaling points', () => {
  const one = traceOf([{ lane: 0, kind: 'compute', name: 'r', start: 0, dur: 100, step: 0 }], [[0, 100]], meta({}, 1));
  const two = traceOf([{ lane: 0, kind: 'compute', name: 'r', start: 0, dur: 60, step: 0 }], [[0, 60]], meta({}, 2));
  assert.deepEqual(scalingPointsFromTraces([one, two]), [
    { devices: 1, stepUs: 100, batch: 8 },
    { devices: 2, stepUs: 60, batch: 8 },
  ]);
  const a = analyse(two, { scaling: scalingPointsFromTraces([one, two]) }).scaling!;
  close(a.rows[1].speedup, 100 / 60);
});

test('no sweep and no baseline means no scaling analysis', () => {
  const rows: SpanRow[] = [{ lane: 0, kind: 'compute', name: 'r', start: 0, dur: 10, step: 0 }];
  assert.equal(analyse(traceOf(rows, [[0, 10]])).scaling, null);
  assert.equal(analyseScaling([]), null);
});
