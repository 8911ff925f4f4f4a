import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { analyse } from '../../src/profiler/analysis/index';
import { fitCommModel } from '../../src/profiler/analysis/data-parallel';
import { buildSpanIndex } from '../../src/profiler/analysis/span-index';
import type { SpanRow } from '../../src/profiler/trace-format';
import { dataPlan, meta, pipelinePlan, traceOf } from '../helpers/trace-builders';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);

/**
 * Three data-parallel lanes, 4 rows each, two steps. Every lane scatters 1000 bytes in 10 µs
 * and gathers 500 bytes in 6 µs (2 µs + 0.008 µs/byte); lanes compute 40, 40 and 60 µs, so
 * lane 2 ends the 76 µs step and lanes 0 and 1 wait 20 µs at the barrier.
 */
function threeLanes(): ReturnType<typeof traceOf> {
  const rows: SpanRow[] = [];
  const compute = [40, 40, 60];
  for (let step = 0; step < 2; step++) {
    const t0 = step * 100;
    compute.forEach((c, lane) => {
      rows.push({ lane, kind: 'comm', name: 'scatter', comm: 'scatter', start: t0, dur: 10, step, bytes: 1000 });
      rows.push({ lane, kind: 'compute', name: 'session.run', start: t0 + 10, dur: c, step });
      rows.push({ lane, kind: 'comm', name: 'gather', comm: 'gather', start: t0 + 10 + c, dur: 6, step, bytes: 500 });
    });
  }
  return deriveIdle(traceOf(rows, [[0, 76], [100, 176]], meta({ plan: dataPlan({ batch: 12, shards: [4, 4, 4] }, 3) }, 3)));
}

test('a lane computing 1.5× the others’ median is a straggler, the others are not', () => {
  const dp = analyse(threeLanes()).dataParallel!;
  assert.deepEqual(dp.lanes.map((l) => l.slowdown), [40 / 50, 40 / 50, 60 / 40]);
  assert.deepEqual(dp.stragglers, [2]);
  assert.deepEqual(dp.lanes.map((l) => l.straggler), [false, false, true]);
  assert.deepEqual(dp.lanes.map((l) => l.perRowComputeUs), [10, 10, 15]);
});

test('sync wait is the idle spent at the barrier waiting for the slowest device', () => {
  const dp = analyse(threeLanes()).dataParallel!;
  assert.deepEqual(dp.lanes.map((l) => l.syncWaitPerStepUs), [20, 20, 0]);
  close(dp.lanes[0].syncWaitShare, 20 / 76);
  close(dp.syncWaitShare, 80 / (3 * 152));
});

test('comm/compute ratio and exposed comm share come from the comm and compute spans', () => {
  const dp = analyse(threeLanes()).dataParallel!;
  close(dp.lanes[0].commComputeRatio, 16 / 40);
  close(dp.lanes[2].commComputeRatio, 16 / 60);
  close(dp.commComputeRatio, 96 / 280);
  close(dp.exposedCommShare, 96 / (280 + 96));
  assert.deepEqual(dp.lanes.map((l) => [l.transfersPerStep, l.scaledBytesPerStep, l.fixedBytesPerStep]), [
    [2, 1500, 0],
    [2, 1500, 0],
    [2, 1500, 0],
  ]);
});

test('the comm model fits a per-transfer and a per-byte cost by least squares', () => {
  const m = analyse(threeLanes()).dataParallel!.commModel;
  assert.equal(m.fit, 'linear');
  close(m.alphaUs, 2);
  close(m.betaUsPerByte, 0.008);
  assert.equal(m.spans, 12);
});

test('transfers of one size give a per-byte cost, since latency and bandwidth cannot be told apart', () => {
  const rows: SpanRow[] = [0, 1].flatMap((lane) => [
    { lane, kind: 'comm' as const, name: 'scatter', comm: 'scatter', start: 0, dur: 10, step: 0, bytes: 1000 },
    { lane, kind: 'comm' as const, name: 'allreduce.ring', comm: 'allreduce', start: 10, dur: 30, step: 0, bytes: 1000 },
  ]);
  const t = traceOf(rows, [[0, 40]]);
  const m = fitCommModel(buildSpanIndex(t));
  assert.equal(m.fit, 'per-byte');
  assert.equal(m.alphaUs, 0);
  close(m.betaUsPerByte, 0.02);
  // All-reduce carries gradients: its bytes do not grow with the batch.
  const dp = analyse(t).dataParallel!;
  assert.deepEqual([dp.lanes[0].scaledBytesPerStep, dp.lanes[0].fixedBytesPerStep], [1000, 1000]);
});

test('balanced lanes have no straggler', () => {
  const rows: SpanRow[] = [0, 1].map((lane) => ({ lane, kind: 'compute', name: 'session.run', start: 0, dur: 50 + lane * 5, step: 0 }));
  const dp = analyse(deriveIdle(traceOf(rows, [[0, 55]]))).dataParallel!;
  assert.deepEqual(dp.stragglers, []);
});

test('a pipeline trace has no data-parallel analysis', () => {
  const t = threeLanes();
  t.meta.plan = pipelinePlan({ batch: 12 }, 3);
  t.meta.mode = t.meta.plan.mode;
  assert.equal(analyse(t).dataParallel, null);
});
