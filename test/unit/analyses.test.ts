import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { summarize } from '../../src/profiler/summary';
import { findings } from '../../src/profiler/findings';
import { formatSummary } from '../../src/cli/format';
import { quantile, unionLength } from '../../src/profiler/stats';
import { spanRow, type SpanRow } from '../../src/profiler/trace-format';
import { dataPlan, meta, pipelinePlan, traceOf } from '../helpers/trace-builders';

/** Two data-parallel devices, one step of 100 µs: lane 1 computes 40 µs longer. */
function twoLaneStep(): ReturnType<typeof traceOf> {
  return traceOf(rowsOfTwoLaneStep(), [[0, 100]], unlikeDevices());
}

function rowsOfTwoLaneStep(): SpanRow[] {
  return [
    { lane: 0, kind: 'comm', name: 'scatter', comm: 'scatter', start: 5, dur: 5, step: 0, bytes: 100 },
    { lane: 0, kind: 'compute', name: 'session.run', start: 10, dur: 40, step: 0 },
    { lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: 50, dur: 10, step: 0, bytes: 100 },
    { lane: 1, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 5, step: 0, bytes: 100 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 5, dur: 85, step: 0 },
    { lane: 1, kind: 'comm', name: 'gather', comm: 'gather', start: 90, dur: 10, step: 0, bytes: 100 },
  ];
}

/** Data-plan metadata whose second device is of another class (a WebGPU adapter), so the two are different hardware. */
function unlikeDevices(): ReturnType<typeof meta> {
  const m = meta();
  m.devices[1] = { ...m.devices[1]!, id: 'webgpu:0', kind: 'webgpu', provider: 'webgpu', label: 'webgpu:0' };
  return m;
}

test('quantiles interpolate between order statistics like numpy', () => {
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.ok(Math.abs(quantile([10, 20, 30, 40, 50], 0.1) - 14) < 1e-9);
  assert.equal(quantile([7], 0.9), 7);
});

test('union length merges overlapping intervals and clips to the window', () => {
  assert.equal(unionLength([0, 5, 20], [10, 10, 5], [0, 1, 2]), 20);
  assert.equal(unionLength([0, 5, 20], [10, 10, 5], [0, 1, 2], 8, 22), 9);
});

test('idle is derived from the gaps in each step window, with the cause from what follows', () => {
  const t = deriveIdle(twoLaneStep());
  const idle = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i)).filter((r) => r.kind === 'idle');
  assert.deepEqual(
    idle.map((r) => [r.lane, r.start, r.dur, r.cause]),
    [
      [0, 0, 5, 'host'], // released late into the step
      [0, 60, 40, 'collective'], // waiting at the step barrier for lane 1
    ],
  );
  // Idempotent: deriving again gives the same spans.
  assert.equal(deriveIdle(t).spans.count, t.spans.count);
});

test('in a pipeline, a sender waiting for its peer to free the channel is idle with cause backpressure', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 30, step: 0, micro: 0, stage: 0 },
    // The channel was full from 30 to 50: the send starts when it had room.
    { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: 50, dur: 5, step: 0, micro: 0, stage: 0, peer: 1, bytes: 64 },
    { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: 50, dur: 5, step: 0, micro: 0, stage: 1, peer: 0, bytes: 64 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 55, dur: 45, step: 0, micro: 0, stage: 1 },
  ];
  const t = deriveIdle(traceOf(rows, [[0, 100]], meta({ plan: pipelinePlan() })));
  const idle = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i)).filter((r) => r.kind === 'idle');
  assert.deepEqual(
    idle.map((r) => [r.lane, r.start, r.dur, r.cause]),
    [
      [0, 30, 20, 'backpressure'],
      [0, 55, 45, 'bubble'],
      [1, 0, 50, 'bubble'],
    ],
  );
  assert.equal(summarize(t).devices[0]!.idleByCauseUs.backpressure, 20);
});

test('the summary splits each device into compute, communication and idle that add up to the step', () => {
  const t = deriveIdle(twoLaneStep());
  const s = summarize(t);
  assert.equal(s.stepTimeUs.median, 100);
  assert.deepEqual(
    s.devices.map((d) => [d.computeUs, d.commUs, d.idleUs]),
    [
      [40, 15, 45],
      [85, 15, 0],
    ],
  );
  assert.equal(s.devices[0].idleByCauseUs.collective, 40);
  assert.equal(s.devices[0].idleByCauseUs.host, 5);
  assert.ok(Math.abs(s.devices[0].utilization - 0.4) < 1e-12);
  assert.equal(s.throughputPerS, 8 * 1e6 / 100);
  assert.equal(s.speedupVsOneDevice, null);
});

test('speedup is the baseline median step over the run median step', () => {
  const t = twoLaneStep();
  t.meta.baseline = { description: 'one device', stepTimeUs: { median: 170, p10: 160, p90: 180 } };
  assert.equal(summarize(deriveIdle(t)).speedupVsOneDevice, 1.7);
});

test('a device computing 2x longer than its peer is a straggler, and rebalancing predicts the gain', () => {
  const t = deriveIdle(twoLaneStep());
  const s = summarize(t);
  const f = findings(t, s);
  assert.equal(f.length, 1);
  assert.equal(f[0].id, 'straggler');
  assert.match(f[0].message, /webgpu:0 is a straggler/);
  // Per-row cost: lane 0 = 10 µs/row, lane 1 = 21.25 µs/row. The whole-row split with the least
  // largest compute: 6/2 (max(60, 42.5) = 60), not 5/3 (max(50, 63.75)).
  assert.deepEqual(f[0].change.params['shards'], [6, 2]);
  // Predicted: 100 − 85 + 60 = 75 µs.
  assert.ok(Math.abs(f[0].predictedStepUs! - 75) < 1e-9);
});

test('devices of one class that ran different row counts share a fitted cost line: fixed part and per-row part', () => {
  // Two cpu devices (same class) given 6 and 2 rows compute 70 and 30 µs: 10 µs per row on a
  // 10 µs fixed part. Proportional costs would say 11.7 vs 15 µs per row and predict 4/4 at
  // max(46.7, 60) = 60 µs; the line says 4/4 computes 50 µs on each.
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 70, step: 0 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 0, dur: 30, step: 0 },
  ];
  const t = deriveIdle(traceOf(rows, [[0, 70]], meta({ plan: dataPlan({ batch: 8, shards: [6, 2] }) })));
  const f = findings(t, summarize(t)).filter((x) => x.id === 'straggler');
  assert.equal(f.length, 1);
  assert.deepEqual(f[0].change.params['shards'], [4, 4]);
  assert.ok(Math.abs(f[0].predictedStepUs! - 50) < 1e-9, `predicted ${f[0].predictedStepUs}`);
});

test('two CPU workers given the same rows are interchangeable: a difference in their compute is no straggler', () => {
  // The same spans as the straggler above, on two CPU workers of one class: threads the
  // operating system places on any free core, so 40 vs 85 µs is the cores' state during the
  // run, and a 6/2 split would not be needed by the next run.
  const t = deriveIdle(traceOf(rowsOfTwoLaneStep(), [[0, 100]]));
  assert.deepEqual(findings(t, summarize(t)).filter((f) => f.id === 'straggler'), []);
});

test('balanced devices raise no straggler finding', () => {
  const rows: SpanRow[] = [0, 1].map((lane) => ({ lane, kind: 'compute', name: 'session.run', start: 0, dur: 50 + lane * 5, step: 0 }));
  const t = deriveIdle(traceOf(rows, [[0, 55]], meta()));
  assert.deepEqual(findings(t, summarize(t)), []);
});

test('a straggler already given the fewest rows throughput allows gets no rebalancing suggestion', () => {
  // Lane 1 computes 85 µs for 1 row, lane 0 40 µs for 7 rows: rows ∝ throughput is 7/1 again.
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 40, step: 0 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 0, dur: 85, step: 0 },
  ];
  const t = deriveIdle(traceOf(rows, [[0, 85]], meta({ plan: dataPlan({ batch: 8, shards: [7, 1] }) })));
  assert.deepEqual(findings(t, summarize(t)).filter((f) => f.id === 'straggler'), []);
});

test('with the baseline interleaved in blocks, the speedup is the median of the paired blocks\' ratios, and the summary says so', () => {
  // Four pairs of blocks of two steps. The machine ran fast or slow block by block, the same
  // for both runs except in the third pair: the ratio of the two medians (100 / 150) reads
  // the run a third slower, the blocks say it is as fast.
  const run = [100, 100, 200, 200, 200, 200, 100, 100];
  const base = [100, 100, 200, 200, 100, 100, 100, 100];
  const windows: [number, number][] = [];
  let t0 = 0;
  for (const d of run) {
    windows.push([t0, t0 + d]);
    t0 += d;
  }
  const t = traceOf(rowsOfTwoLaneStep(), windows, unlikeDevices());
  t.meta.baseline = { description: 'one device', stepTimeUs: { median: 100, p10: 100, p90: 200 }, stepTimesUs: base, schedule: 'interleaved' };
  t.meta.timedBlocks = [2, 2, 2, 2];
  const s = summarize(deriveIdle(t));
  assert.equal(s.speedupVsOneDevice, 1);
  assert.equal(s.baseline?.blockPairs, 4);
  assert.ok(s.speedupInterval && s.speedupInterval.lo <= 1 && s.speedupInterval.hi >= 1, JSON.stringify(s.speedupInterval));
  assert.match(formatSummary(s, []), /speedup {5}1\.00× .* in 4 pairs of blocks, compared pair by pair\)/);
  // Without the blocks: the ratio of the medians, and no pairs claimed.
  delete t.meta.timedBlocks;
  const pooled = summarize(deriveIdle(t));
  assert.ok(Math.abs(pooled.speedupVsOneDevice! - 100 / 150) < 1e-9);
  assert.equal(pooled.baseline?.blockPairs, undefined);
});
