import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { analyse } from '../../src/profiler/analysis/index';
import { buildSpanIndex } from '../../src/profiler/analysis/span-index';
import { breakdown } from '../../src/profiler/analysis/breakdown';
import type { SpanRow } from '../../src/profiler/trace-format';
import { traceOf } from '../helpers/trace-builders';

/**
 * Two data-parallel lanes, two steps of 100 µs.
 *  step 0: lane 0 computes 0–50 and gathers 40–60 (10 µs under compute), then waits 40 µs
 *          at the barrier; lane 1 scatters 0–10 and computes 10–100.
 *  step 1: lane 0 is released 10 µs late (host), computes 110–150, gathers 150–160, waits
 *          40 µs; lane 1 computes the whole step.
 */
function twoSteps(): ReturnType<typeof traceOf> {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 50, step: 0 },
    { lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: 40, dur: 20, step: 0, bytes: 100 },
    { lane: 1, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 10, step: 0, bytes: 100 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 10, dur: 90, step: 0 },
    { lane: 0, kind: 'compute', name: 'session.run', start: 110, dur: 40, step: 1 },
    { lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: 150, dur: 10, step: 1, bytes: 100 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 100, dur: 100, step: 1 },
  ];
  return deriveIdle(traceOf(rows, [[0, 100], [100, 200]]));
}

test('the breakdown splits each lane and step into compute, comm and idle by cause', () => {
  const b = analyse(twoSteps()).breakdown;
  const l0 = b.lanes[0].perStep;
  assert.deepEqual(l0.computeUs, [50, 40]);
  assert.deepEqual(l0.commUs, [20, 10]);
  assert.deepEqual(l0.idleUs, [40, 50]);
  assert.deepEqual(l0.collectiveUs, [40, 40]);
  assert.deepEqual(l0.hostUs, [0, 10]);
  assert.deepEqual(l0.bubbleUs, [0, 0]);
  assert.deepEqual(b.lanes[1].perStep.computeUs, [90, 100]);
  assert.deepEqual(b.lanes[1].perStep.idleUs, [0, 0]);
  // Lane totals, and shares of the 200 µs of step windows.
  assert.equal(b.lanes[0].computeUs, 90);
  assert.equal(b.lanes[0].idleUs, 90);
  assert.deepEqual(b.lanes[0].idleByCauseUs, { bubble: 0, collective: 80, host: 10, other: 0, backpressure: 0 });
  assert.equal(b.lanes[0].stepUs, 200);
  assert.deepEqual(b.lanes[0].shares, { compute: 0.45, comm: 0.15, idle: 0.45 });
  assert.equal(b.lanes[1].id, 'cpu:1');
});

test('overlap is the time comm runs under compute on the same lane, and the rest of comm is exposed', () => {
  const b = analyse(twoSteps()).breakdown;
  // Lane 0 step 0: gather 40–60 under compute 0–50 for 10 µs; step 1: gather after compute.
  assert.deepEqual(b.lanes[0].perStep.overlapUs, [10, 0]);
  assert.deepEqual(b.lanes[0].perStep.exposedCommUs, [10, 10]);
  assert.equal(b.lanes[0].overlapUs, 10);
  assert.equal(b.lanes[0].exposedCommUs, 20);
  // Lane 1's scatter runs before its compute: nothing hidden.
  assert.deepEqual(b.lanes[1].perStep.exposedCommUs, [10, 0]);
});

test('step rows sum the lanes and totals sum everything, against lanes × step windows', () => {
  const b = analyse(twoSteps()).breakdown;
  assert.deepEqual(
    b.steps.map((s) => [s.index, s.durUs, s.computeUs, s.commUs, s.idleUs, s.overlapUs]),
    [
      [0, 100, 140, 30, 40, 10],
      [1, 100, 140, 10, 50, 0],
    ],
  );
  assert.equal(b.totals.deviceUs, 400);
  assert.equal(b.totals.computeUs + b.totals.commUs + b.totals.idleUs - b.totals.overlapUs, 400);
  assert.deepEqual(b.totals.idleByCauseUs, { bubble: 0, collective: 80, host: 10, other: 0, backpressure: 0 });
});

test('the breakdown agrees with the summary on every lane', async () => {
  const { summarize } = await import('../../src/profiler/summary');
  const t = twoSteps();
  const s = summarize(t);
  const b = breakdown(buildSpanIndex(t));
  b.lanes.forEach((l, i) => {
    assert.equal(l.computeUs, s.devices[i].computeUs);
    assert.equal(l.commUs, s.devices[i].commUs);
    assert.equal(l.idleUs, s.devices[i].idleUs);
    assert.deepEqual(l.idleByCauseUs, s.devices[i].idleByCauseUs);
  });
});

test('operator spans and spans outside the measured steps are not counted twice or at all', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 },
    { lane: 0, kind: 'compute', name: '/fc/MatMul', opType: 'MatMul', start: 0, dur: 60, step: 0, parent: 0, flags: 8 },
    { lane: 0, kind: 'compute', name: 'session.run', start: 200, dur: 100, step: 7 },
  ];
  const t = traceOf(rows, [[0, 100]]);
  t.lanes = t.lanes.slice(0, 1);
  const b = analyse(t).breakdown;
  assert.equal(b.lanes[0].computeUs, 100);
  assert.equal(b.steps.length, 1);
});

test('spans recorded out of order are sorted inside their lane and step before the unions', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: 80, dur: 30, step: 0 },
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 0, dur: 110, step: 0 },
  ];
  const b = analyse(deriveIdle(traceOf(rows, [[0, 110]]))).breakdown;
  assert.equal(b.lanes[0].overlapUs, 20);
  assert.equal(b.lanes[0].exposedCommUs, 10);
});

test('the analysis is plain data that survives a JSON round trip', () => {
  const a = analyse(twoSteps());
  assert.deepEqual(JSON.parse(JSON.stringify(a)), a);
});

test('a trace without steps or spans analyses to empty results without throwing', () => {
  const t = traceOf([], []);
  const a = analyse(t);
  assert.equal(a.steps, 0);
  assert.deepEqual(a.breakdown.steps, []);
  assert.equal(a.pipeline, null);
  assert.equal(a.dataParallel, null);
  assert.equal(a.criticalPath.representative, null);
  assert.equal(a.ops.available, false);
  assert.deepEqual(JSON.parse(JSON.stringify(a)), a);
});
