import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { findings, type Finding } from '../../src/profiler/findings';
import { summarize } from '../../src/profiler/summary';
import { TraceBuilder, type SpanRow, type Trace } from '../../src/profiler/trace-format';
import { dataPlan, meta, traceOf } from '../helpers/trace-builders';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);
const all = (t: Trace, opts = {}): Finding[] => findings(t, summarize(t), opts);
const only = (t: Trace, id: string, opts = {}): Finding[] => all(t, opts).filter((f) => f.id === id);

/**
 * Two lanes, 4 rows each, two 75 µs steps. Per step each lane scatters 4000 bytes (30 µs),
 * computes 20 µs (5 µs per row) and gathers 2000 bytes (25 µs): transfers cost
 * 20 µs + 0.0025 µs/byte, and comm is 55 of every 75 µs.
 */
function commBound(): Trace {
  const rows: SpanRow[] = [];
  for (let step = 0; step < 2; step++) {
    for (const lane of [0, 1]) {
      const t0 = step * 100;
      rows.push({ lane, kind: 'comm', name: 'scatter', comm: 'scatter', start: t0, dur: 30, step, bytes: 4000 });
      rows.push({ lane, kind: 'compute', name: 'session.run', start: t0 + 30, dur: 20, step });
      rows.push({ lane, kind: 'comm', name: 'gather', comm: 'gather', start: t0 + 50, dur: 25, step, bytes: 2000 });
    }
  }
  return deriveIdle(traceOf(rows, [[0, 75], [100, 175]], meta({ plan: dataPlan({ batch: 8, shards: [4, 4], devices: 'cpu:2' }) })));
}

test('a communication-bound run is told to give each device more rows, with the gain predicted from measured costs', () => {
  const f = only(commBound(), 'comm-bound');
  assert.equal(f.length, 1);
  assert.equal(f[0].severity, 'critical'); // 55 / 75 = 73% of busy time
  close(f[0].evidence.numbers['exposedCommShare'], 110 / 150);
  close(f[0].evidence.numbers['alphaUsPerTransfer'], 20);
  close(f[0].evidence.numbers['betaUsPerMB'], 2500);
  // Batch ×4: 16 rows per device → compute 80 µs, transfers 2 · 20 + 0.0025 · 24000 = 100 µs.
  assert.deepEqual(f[0].change.params, { batch: 32, shards: [16, 16] });
  close(f[0].predictedStepUs!, 180);
  assert.equal(f[0].currentStepUs, 75);
  close(f[0].throughput!.currentPerS, (8 * 1e6) / 75);
  close(f[0].throughput!.predictedPerS, (32 * 1e6) / 180);
  assert.match(f[0].change.description, /^Give each device 4× the rows per step: batch 8 → 32/);
});

test('fewer devices win when one device is so slow per row that more rows only make it slower', () => {
  // As above, but lane 1 computes 50 µs per row (200 µs per step): dropping it and giving
  // lane 0 all 8 rows takes 40 µs of compute and 2 · 20 + 0.0025 · 12000 = 70 µs of comm.
  const rows: SpanRow[] = [];
  for (const [lane, c] of [[0, 20], [1, 200]] as const) {
    rows.push({ lane, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 30, step: 0, bytes: 4000 });
    rows.push({ lane, kind: 'compute', name: 'session.run', start: 30, dur: c, step: 0 });
    rows.push({ lane, kind: 'comm', name: 'gather', comm: 'gather', start: 30 + c, dur: 25, step: 0, bytes: 2000 });
  }
  const t = deriveIdle(traceOf(rows, [[0, 255]], meta({ plan: dataPlan({ batch: 8, shards: [4, 4] }) })));
  const f = only(t, 'comm-bound');
  assert.equal(f.length, 1);
  assert.deepEqual(f[0].change.params, { devices: 'cpu:1', shards: [8] });
  close(f[0].predictedStepUs!, 110);
  close(f[0].throughput!.predictedPerS, (8 * 1e6) / 110);
  assert.match(f[0].change.description, /^Run on 1 device \(cpu:1, shards 8\)/);
});

test('little communication raises no comm-bound finding', () => {
  const rows: SpanRow[] = [0, 1].flatMap((lane) => [
    { lane, kind: 'comm' as const, name: 'scatter', comm: 'scatter', start: 0, dur: 2, step: 0, bytes: 100 },
    { lane, kind: 'compute' as const, name: 'session.run', start: 2, dur: 90, step: 0 },
    { lane, kind: 'comm' as const, name: 'gather', comm: 'gather', start: 92, dur: 3, step: 0, bytes: 200 },
  ]);
  assert.deepEqual(all(deriveIdle(traceOf(rows, [[0, 95]]))), []);
});

test('the straggler rule still rebalances shards by measured throughput (devices of two classes)', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'comm', name: 'scatter', comm: 'scatter', start: 5, dur: 5, step: 0, bytes: 100 },
    { lane: 0, kind: 'compute', name: 'session.run', start: 10, dur: 40, step: 0 },
    { lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: 50, dur: 10, step: 0, bytes: 100 },
    { lane: 1, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 5, step: 0, bytes: 100 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 5, dur: 85, step: 0 },
    { lane: 1, kind: 'comm', name: 'gather', comm: 'gather', start: 90, dur: 10, step: 0, bytes: 100 },
  ];
  // A CPU worker and a WebGPU adapter: different hardware, so the difference is the devices'.
  const m = meta();
  m.devices[1] = { ...m.devices[1]!, id: 'webgpu:0', kind: 'webgpu', provider: 'webgpu', label: 'webgpu:0' };
  const f = all(deriveIdle(traceOf(rows, [[0, 100]], m)));
  assert.deepEqual(f.map((x) => x.id), ['straggler']);
  // 10 µs/row on lane 0, 21.25 µs/row on lane 1: 6/2 gives max(60, 42.5) = 60 µs of compute,
  // better than 5/3 (max(50, 63.75)); the step shrinks by 85 − 60 to 75 µs.
  assert.deepEqual(f[0].change.params, { shards: [6, 2] });
  close(f[0].predictedStepUs!, 75);
});

/**
 * Host overhead: two lanes, 4 rows each, two 70 µs steps. Each lane is released 30 µs into
 * the step (host idle) and runs a 40 µs session.run whose ten operators take 2 µs each:
 * 20 µs of the session is gaps between tiny operators.
 */
function hostBound(): Trace {
  const b = new TraceBuilder();
  for (let step = 0; step < 2; step++) {
    for (const lane of [0, 1]) {
      const t0 = step * 100 + 30;
      const run = b.push({ lane, kind: 'compute', name: 'session.run', start: t0, dur: 40, step });
      for (let k = 0; k < 10; k++) {
        b.push({ lane, kind: 'compute', name: `/op${k}`, opType: k % 2 ? 'Add' : 'Mul', start: t0 + 4 * k, dur: 2, step, parent: run, flags: 8 });
      }
    }
  }
  const m = meta({ plan: dataPlan({ batch: 8, shards: [4, 4] }) });
  return deriveIdle({
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: [
      { index: 0, startUs: 0, endUs: 70 },
      { index: 1, startUs: 100, endUs: 170 },
    ],
    spans: b.finish(),
  });
}

test('host overhead and tiny operators suggest a larger batch, predicted with the overhead held per step', () => {
  const f = all(hostBound());
  assert.deepEqual(f.map((x) => x.id), ['host-overhead']);
  const h = f[0];
  assert.equal(h.severity, 'critical');
  // 30 µs host idle + 20 µs between operators, of 70 µs.
  close(h.evidence.numbers['overheadShare'], 50 / 70);
  close(h.evidence.numbers['tinyOpFraction'], 1);
  // 50 / (50 + 20 f) ≤ 10% needs f ≥ 22.5: the largest step offered, 8×, is taken.
  assert.deepEqual(h.change.params, { batch: 64, shards: [32, 32] });
  close(h.predictedStepUs!, 50 + 8 * 20);
  close(h.throughput!.predictedPerS, (64 * 1e6) / 210);
  assert.match(h.message, /100% of the operators average under 20 µs/);
});

test('with a probe at twice the batch, host overhead advises that batch at the step it measured', () => {
  const t = hostBound();
  // The step is 70 µs at batch 8; the probe measured 80 µs at 16.
  const probed: Trace = { ...t, meta: { ...t.meta, batchProbe: { batch: 16, stepTimesUs: [79, 80, 81] } } };
  const h = all(probed).find((x) => x.id === 'host-overhead')!;
  // The advice stays within the measured range: 16, not the 64 the overhead share would want.
  assert.deepEqual(h.change.params, { batch: 16, shards: [8, 8] });
  close(h.predictedStepUs!, 80);
  close(h.throughput!.predictedPerS, (16 * 1e6) / 80);
  assert.match(h.change.description, /This run measured the batch of 16 too: 80 µs per step\. A batch of 64 would leave it about \d+% \(beyond what this run measured\)/);
  // A probe that measured twice the rows faster contradicts itself: the larger batch is named
  // as information, with no gain predicted from noise.
  const noisy: Trace = { ...t, meta: { ...t.meta, batchProbe: { batch: 16, stepTimesUs: [60, 61, 62] } } };
  const n = all(noisy).find((x) => x.id === 'host-overhead')!;
  assert.equal(n.severity, 'info');
  assert.equal(n.predictedStepUs, null);
  assert.equal(n.throughput, undefined);
  assert.deepEqual(n.change.params, { batch: 16, shards: [8, 8] });
  close(n.evidence.numbers['probeStepUs'], 61);
  assert.match(n.change.description, /no gain is predicted: this run measured the batch of 16 too, at 61 µs per step, faster than the batch of 8 at 70 µs, which only noise explains/);
});

test('a probe whose steps spread so far that the gain does not hold at the slow end of its interval advises nothing', () => {
  const t = hostBound();
  // Batch 8 runs 70 µs a step (114 k samples/s). A probe of median 80 µs at 16 promises 200 k,
  // but its steps spread from 70 to 260 µs: at the slow end of its 90 % interval the batch of
  // 16 would not be 10 % faster per sample.
  const spread: Trace = { ...t, meta: { ...t.meta, batchProbe: { batch: 16, stepTimesUs: [70, 75, 80, 85, 260, 260] } } };
  assert.deepEqual(all(spread).filter((x) => x.id === 'host-overhead'), []);
  // The same median with steps close together: advised.
  const tight: Trace = { ...t, meta: { ...t.meta, batchProbe: { batch: 16, stepTimesUs: [78, 79, 80, 80, 81, 82] } } };
  assert.equal(all(tight).filter((x) => x.id === 'host-overhead').length, 1);
});

test('a run with little host time raises no host-overhead finding', () => {
  const rows: SpanRow[] = [0, 1].map((lane) => ({ lane, kind: 'compute', name: 'session.run', start: 1, dur: 99, step: 0 }));
  assert.deepEqual(only(deriveIdle(traceOf(rows, [[0, 100]])), 'host-overhead'), []);
});

test('a device without operator spans does not count its whole session as gaps between operators', () => {
  const b = new TraceBuilder();
  const run = b.push({ lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 });
  b.push({ lane: 0, kind: 'compute', name: '/fc/MatMul', opType: 'MatMul', start: 0, dur: 50, step: 0, parent: run, flags: 8 });
  b.push({ lane: 0, kind: 'compute', name: '/fc/Add', opType: 'Add', start: 50, dur: 50, step: 0, parent: run, flags: 8 });
  b.push({ lane: 1, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 });
  const m = meta({ plan: dataPlan({ batch: 8, shards: [4, 4] }) });
  const t = deriveIdle({
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: [{ index: 0, startUs: 0, endUs: 100 }],
    spans: b.finish(),
  });
  assert.deepEqual(all(t), []);
});
