/**
 * The progress ETA: no estimate until a phase has done enough to make one, never NaN or
 * infinity, close to the truth at a steady pace, and steady when the pace jitters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EtaEstimator, formatEta } from '../../src/runtime/progress-eta';

/** Feeds the reports of a phase of `total` steps, step i taking `pace(i)` ms, and returns every estimate. */
function run(total: number, pace: (i: number) => number, e = new EtaEstimator(), startMs = 0): { at: number; eta: number | null }[] {
  const out: { at: number; eta: number | null }[] = [];
  let t = startMs;
  out.push({ at: t, eta: e.update({ phase: 'steps', done: 0, total }, t) });
  for (let i = 1; i <= total; i++) {
    t += pace(i);
    out.push({ at: t, eta: e.update({ phase: 'steps', done: i, total }, t) });
  }
  return out;
}

test('no estimate before 2 units and 10 % of the phase; then one, and 0 at the end', () => {
  const r = run(100, () => 100);
  // 10 % of 100 is 10 units.
  assert.ok(r.slice(0, 10).every((x) => x.eta === null), JSON.stringify(r.slice(0, 10)));
  assert.ok(r.slice(10, 100).every((x) => x.eta !== null));
  assert.equal(r[100]!.eta, 0);
  const small = run(5, () => 100);
  assert.deepEqual(small.slice(0, 2).map((x) => x.eta), [null, null]);
  assert.notEqual(small[2]!.eta, null, 'two of five units are enough');
});

test('at a steady pace the estimate is the time really left', () => {
  const r = run(50, () => 200);
  for (const [i, x] of r.entries()) {
    if (x.eta === null || i === 50) continue;
    const truth = (50 - i) * 200;
    assert.ok(Math.abs(x.eta - truth) <= 0.05 * truth + 1, `after ${i} steps: ${x.eta} ms, truly ${truth} ms`);
  }
});

test('a slow first step does not make a wild first estimate', () => {
  // The first step of a phase carries its start-up: 10 s, then 100 ms a step.
  const r = run(100, (i) => (i === 1 ? 10_000 : 100));
  const first = r.find((x) => x.eta !== null)!;
  const truthAtFirst = (100 - r.indexOf(first)) * 100;
  // The rate is measured from the first step's end, so the start-up does not count.
  assert.ok(first.eta! < 1.5 * truthAtFirst && first.eta! > truthAtFirst / 1.5, `first estimate ${first.eta} ms, truly ${truthAtFirst} ms`);
});

test('jitter of ±50 % moves the estimate less than the raw rate would', () => {
  const r = run(200, (i) => (i % 2 === 0 ? 150 : 50));
  // Raw per-step rates swing 3×; the smoothed estimate's step-to-step ratio stays small.
  for (let i = 60; i < 190; i++) {
    const a = r[i]!.eta!;
    const b = r[i + 1]!.eta!;
    assert.ok(b / a < 1.5 && a / b < 1.5, `step ${i}: ${a} → ${b}`);
  }
});

test('reports that make no sense give no estimate, never NaN or infinity', () => {
  const e = new EtaEstimator();
  for (const [done, total] of [[0, 0], [NaN, 10], [3, NaN], [5, Infinity], [-1, 4], [2, -3]] as const) {
    const eta = e.update({ phase: 'load', done, total }, 1000);
    assert.ok(eta === null || Number.isFinite(eta), `done ${done} total ${total}: ${eta}`);
  }
  // Several reports at the same instant: no division by zero.
  const f = new EtaEstimator();
  for (let i = 0; i <= 5; i++) {
    const eta = f.update({ phase: 'steps', done: i, total: 10 }, 500);
    assert.ok(eta === null || Number.isFinite(eta), `report ${i}: ${eta}`);
  }
});

test('a new phase starts a new estimate; timed steps and baseline steps interleaved count as one phase', () => {
  const e = new EtaEstimator();
  let t = 0;
  for (let i = 1; i <= 10; i++) e.update({ phase: 'warmup', done: i, total: 10 }, (t += 1000));
  assert.equal(e.update({ phase: 'steps', done: 0, total: 20 }, t), null, 'the steps phase starts without an estimate');
  // Blocks of 5: parallel steps at 100 ms, baseline steps at 300 ms.
  let parDone = 0;
  let baseDone = 0;
  let eta: number | null = null;
  for (let block = 0; block < 3; block++) {
    for (let k = 0; k < 5; k++) eta = e.update({ phase: 'steps', done: ++parDone, total: 20 }, (t += 100));
    for (let k = 0; k < 5; k++) eta = e.update({ phase: 'baseline', done: ++baseDone, total: 20 }, (t += 300));
  }
  // 15 + 15 of 40 units done; the rest takes 5 × 100 + 5 × 300 = 2 s at this pace.
  assert.ok(eta !== null && eta > 1000 && eta < 4000, `estimate ${eta} ms, truly 2000 ms`);
});

test('formatEta says the time left in seconds, minutes or hours', () => {
  assert.equal(formatEta(400), '<1 s');
  assert.equal(formatEta(12_300), '12 s');
  assert.equal(formatEta(245_000), '4 min 05 s');
  assert.equal(formatEta(3_725_000), '1 h 02 min');
  assert.equal(formatEta(NaN), '');
  assert.equal(formatEta(Infinity), '');
});
