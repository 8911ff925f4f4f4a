import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdleCauseCode, SpanFlag, SpanKind, CommOpCode, type Trace } from '../../src/profiler/trace-format';
import { WHOLE, dataProgram, gpipeProgram, metaFor, stageSegments } from '../helpers/programs';
import { gpipeBubble } from '../../src/profiler/plan';
import {
  DeadlockError,
  FREE_LINK,
  computeKey,
  fitCostModel,
  ringAllReduceUs,
  segmentKey,
  selfConsistency,
  setComputeCost,
  simulate,
  type CostModel,
  type Link,
} from '../../src/profiler/simulate';

function costsOf(links: Partial<Record<'copy' | 'p2p' | 'collective', Link>> = {}): CostModel {
  return { compute: {}, transfers: { copy: FREE_LINK, p2p: FREE_LINK, collective: FREE_LINK, ...links } };
}

/** Sum of idle by cause on a lane, over all steps. */
function idleUs(t: Trace, lane: number, cause: keyof typeof IdleCauseCode): number {
  const s = t.spans;
  let total = 0;
  for (let i = 0; i < s.count; i++) if (s.lane[i] === lane && s.kind[i] === SpanKind.idle && s.cause[i] === IdleCauseCode[cause]) total += s.dur[i]!;
  return total;
}

function spansWhere(t: Trace, pred: (i: number) => boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < t.spans.count; i++) if (pred(i)) out.push(i);
  return out;
}

const close = (actual: number, expected: number, rel: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${what}: ${actual} vs ${expected}`);
};

// ---- tests ----------------------------------------------------------------------------------

test('a GPipe program with K equal stages and free transfers has bubble (K−1)/(M+K−1) on every stage and step time (M+K−1)·t', () => {
  const t = 1000;
  for (const k of [2, 3, 4]) {
    for (const m of [1, 2, 4, 8]) {
      const p = gpipeProgram(k, m, 8 * m);
      const costs = costsOf();
      for (const seg of p.segments) setComputeCost(costs, seg.id, seg, 'forward', { fixedUs: t, perRowUs: 0 });
      const trace = simulate(p, costs, { steps: 2, meta: metaFor(p) });
      assert.equal(trace.steps.length, 2);
      for (const w of trace.steps) close(w.endUs - w.startUs, (m + k - 1) * t, 1e-12, `K=${k} M=${m} step time`);
      const total = trace.steps.reduce((a, w) => a + (w.endUs - w.startUs), 0);
      for (let s = 0; s < k; s++) {
        close(idleUs(trace, s, 'bubble') / total, gpipeBubble(k, m), 1e-6, `K=${k} M=${m} stage ${s} bubble`);
        assert.equal(idleUs(trace, s, 'host') + idleUs(trace, s, 'collective'), 0, `K=${k} M=${m} stage ${s}: only bubbles`);
      }
    }
  }
});

test('a simulated trace is labelled predicted: meta.source, meta.program and the predicted flag on every span', () => {
  const p = gpipeProgram(2, 2, 8);
  const costs = costsOf();
  for (const seg of p.segments) setComputeCost(costs, seg.id, seg, 'forward', { fixedUs: 10, perRowUs: 1 });
  const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
  assert.equal(trace.meta.source, 'predicted');
  assert.deepEqual(trace.meta.program, p);
  assert.ok(trace.spans.count > 0);
  for (let i = 0; i < trace.spans.count; i++) assert.ok((trace.spans.flags[i]! & SpanFlag.predicted) !== 0, `span ${i} not flagged predicted`);
  const recv = spansWhere(trace, (i) => trace.spans.comm[i] === CommOpCode.recv);
  assert.equal(recv.length, 2);
  assert.deepEqual(recv.map((i) => trace.spans.peer[i]), [0, 0]);
});

test('a ring all-reduce of S bytes over N ranks lasts 2(N−1)/N·S/β + 2(N−1)·α', () => {
  const link = { alphaUs: 2, bytesPerUs: 1024 };
  const S = 2 ** 20;
  for (const n of [2, 4, 8]) {
    const p = dataProgram(n, 8 * n, { allreduceBytes: S });
    const costs = costsOf({ collective: link });
    for (let r = 0; r < n; r++) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 100, perRowUs: 0 });
    const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
    const spans = spansWhere(trace, (i) => trace.spans.comm[i] === CommOpCode.allreduce);
    assert.equal(spans.length, n, 'one span per rank');
    const expected = ((2 * (n - 1)) / n) * (S / link.bytesPerUs) + 2 * (n - 1) * link.alphaUs;
    assert.equal(ringAllReduceUs(S, n, link), expected);
    for (const i of spans) {
      assert.equal(trace.spans.dur[i], expected);
      assert.equal(trace.spans.bytes[i], S);
    }
  }
  assert.equal(ringAllReduceUs(S, 4, link), 1536 + 12);
});

test('a straggler rank leaves the other ranks idle with cause collective for exactly the difference', () => {
  const n = 4;
  const slow = 2;
  const extra = 500;
  for (const allreduceBytes of [4096, undefined]) {
    const p = dataProgram(n, 16, allreduceBytes === undefined ? {} : { allreduceBytes });
    const costs = costsOf({ collective: { alphaUs: 10, bytesPerUs: 100 } });
    for (let r = 0; r < n; r++) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 1000 + (r === slow ? extra : 0), perRowUs: 0 });
    const trace = simulate(p, costs, { steps: 3, meta: metaFor(p) });
    for (let r = 0; r < n; r++) {
      close(idleUs(trace, r, 'collective'), r === slow ? 0 : 3 * extra, 1e-12, `rank ${r} (all-reduce: ${allreduceBytes !== undefined})`);
      assert.equal(idleUs(trace, r, 'host'), 0);
    }
  }
});

test('fitting costs from simulated traces at two micro-batch sizes recovers the compute and link costs within 1 %', () => {
  const truth = {
    stage: [
      { fixedUs: 50, perRowUs: 20 },
      { fixedUs: 80, perRowUs: 10 },
    ],
    copy: { alphaUs: 5, bytesPerUs: 100 },
    p2p: { alphaUs: 12, bytesPerUs: 50 },
    collective: { alphaUs: 30, bytesPerUs: 200 },
  };
  const traces: Trace[] = [];
  for (const m of [2, 4]) {
    const p = gpipeProgram(2, m, 16, { rowBytes: 64, actBytes: 128, outBytes: 16 });
    const costs = costsOf(truth);
    p.segments.forEach((seg, s) => setComputeCost(costs, s, seg, 'forward', truth.stage[s]!));
    traces.push(simulate(p, costs, { steps: 3, meta: { ...metaFor(p), source: 'measured' } }));
  }
  // Collectives: the same buffer over 2 and 4 ranks separates α from β.
  for (const n of [2, 4]) {
    const p = dataProgram(n, 16, { rowBytes: 64, outBytes: 16, allreduceBytes: 1 << 16 });
    const costs = costsOf(truth);
    for (let r = 0; r < n; r++) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 40, perRowUs: 30 });
    traces.push(simulate(p, costs, { steps: 3, meta: { ...metaFor(p), source: 'measured' } }));
  }
  const fitted = fitCostModel(traces);
  const segs = stageSegments(2);
  for (let s = 0; s < 2; s++) {
    const c = fitted.compute[computeKey(s, segmentKey(segs[s]!), 'forward')];
    assert.ok(c, `stage ${s} fitted`);
    close(c.fixedUs, truth.stage[s]!.fixedUs, 0.01, `stage ${s} fixed`);
    close(c.perRowUs, truth.stage[s]!.perRowUs, 0.01, `stage ${s} per row`);
    assert.deepEqual(c.rowSizes, [4, 8]);
  }
  // Data-parallel ranks 0 and 1 ran 8 and 4 rows; ranks 2 and 3 only 4 rows (proportional).
  const whole = fitted.compute[computeKey(0, 'whole', 'forward')]!;
  close(whole.fixedUs, 40, 0.01, 'whole fixed');
  close(whole.perRowUs, 30, 0.01, 'whole per row');
  const only4 = fitted.compute[computeKey(3, 'whole', 'forward')]!;
  close(only4.fixedUs + 4 * only4.perRowUs, 40 + 4 * 30, 1e-9, 'one row size keeps the cost at that size');
  for (const cls of ['copy', 'p2p', 'collective'] as const) {
    close(fitted.transfers[cls].alphaUs, truth[cls].alphaUs, 0.01, `${cls} α`);
    close(fitted.transfers[cls].bytesPerUs, truth[cls].bytesPerUs, 0.01, `${cls} β`);
  }
});

test("collectives are fitted on their buffer's size, not on the bytes a rank moved, so the fit predicts the measured time", () => {
  const link = { alphaUs: 30, bytesPerUs: 200 };
  const traces: Trace[] = [];
  for (const n of [2, 4]) {
    const p = dataProgram(n, 16, { rowBytes: 64, outBytes: 16, allreduceBytes: 1 << 16 });
    const costs = costsOf({ collective: link });
    for (let r = 0; r < n; r++) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 40, perRowUs: 30 });
    const t = simulate(p, costs, { steps: 3, meta: { ...metaFor(p), source: 'measured' } });
    // The runtime records on a collective span what the rank sent and received.
    for (const i of spansWhere(t, (k) => t.spans.comm[k] === CommOpCode.allreduce)) t.spans.bytes[i] = 2 * ((2 * (n - 1)) / n) * (1 << 16);
    traces.push(t);
  }
  const fitted = fitCostModel(traces);
  close(fitted.transfers.collective.alphaUs, link.alphaUs, 0.01, 'collective α');
  close(fitted.transfers.collective.bytesPerUs, link.bytesPerUs, 0.01, 'collective β');
});

test('the fit is robust to outlier runs: a 3× slower sample does not move the per-size medians', () => {
  const p = dataProgram(1, 8, { rowBytes: 64 });
  const costs = costsOf({ copy: { alphaUs: 5, bytesPerUs: 100 } });
  setComputeCost(costs, 0, WHOLE, 'forward', { fixedUs: 0, perRowUs: 10 });
  const good = simulate(p, costs, { steps: 3, meta: metaFor(p) });
  const noisy: Trace = { ...good, spans: { ...good.spans, dur: Float64Array.from(good.spans.dur) } };
  const first = spansWhere(noisy, (i) => noisy.spans.kind[i] === SpanKind.compute)[0]!;
  noisy.spans.dur[first] = noisy.spans.dur[first]! * 3;
  const fitted = fitCostModel([noisy]);
  const c = fitted.compute[computeKey(0, 'whole', 'forward')]!;
  close(c.fixedUs + 8 * c.perRowUs, 80, 1e-9, 'median cost at 8 rows');
});

test('a pipeline whose receives wait on each other throws a DeadlockError naming rank and instruction', () => {
  const p = gpipeProgram(2, 1, 4);
  // Stage 0 now receives from stage 1 before sending: both wait forever.
  p.devices[0]!.instructions.unshift({ op: 'recv', micro: 0, from: 1, tensors: ['h1'], bytes: 0 });
  p.devices[1]!.instructions.push({ op: 'send', micro: 0, to: 0, tensors: ['h1'], bytes: 0 });
  const costs = costsOf();
  p.segments.forEach((seg, s) => setComputeCost(costs, s, seg, 'forward', { fixedUs: 10, perRowUs: 0 }));
  assert.throws(
    () => simulate(p, costs, { steps: 1, meta: metaFor(p) }),
    (e: unknown) => e instanceof DeadlockError && /rank 0 at instruction 0/.test(e.message) && /rank 1 at instruction 0/.test(e.message),
  );
});

test('receives in a different micro-batch order than the sends throw a DeadlockError', () => {
  const p = gpipeProgram(2, 2, 4);
  const ins = p.devices[1]!.instructions;
  const r0 = ins.findIndex((i) => i.op === 'recv' && i.micro === 0);
  const r1 = ins.findIndex((i) => i.op === 'recv' && i.micro === 1);
  [ins[r0], ins[r1]] = [ins[r1]!, ins[r0]!];
  const costs = costsOf();
  p.segments.forEach((seg, s) => setComputeCost(costs, s, seg, 'forward', { fixedUs: 10, perRowUs: 0 }));
  assert.throws(() => simulate(p, costs, { steps: 1, meta: metaFor(p) }), (e: unknown) => e instanceof DeadlockError && /mis-ordered/.test(e.message));
});

test('a collective whose group never fully arrives throws a DeadlockError', () => {
  const p = dataProgram(3, 6, { allreduceBytes: 1024 });
  p.devices[2]!.instructions.pop();
  const costs = costsOf();
  for (let r = 0; r < 3; r++) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 10, perRowUs: 0 });
  assert.throws(() => simulate(p, costs, { steps: 1, meta: metaFor(p) }), (e: unknown) => e instanceof DeadlockError && /waits for ranks 2/.test(e.message));
});

test('a missing compute cost falls back to the device kind, and without one the error names rank and segment', () => {
  const p = dataProgram(2, 8);
  const costs = costsOf();
  assert.throws(() => simulate(p, costs, { steps: 1, meta: metaFor(p) }), /no compute cost for rank 0 \(cpu\), segment 0/);
  costs.computeByKind = { [`cpu|whole|forward`]: { fixedUs: 7, perRowUs: 1 } };
  const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
  assert.equal(trace.steps[0]!.endUs, 7 + 4);
});

test('self-consistency on a trace predicted from the same costs has zero error', () => {
  const p = gpipeProgram(3, 4, 16, { rowBytes: 32, actBytes: 64 });
  const costs = costsOf({ copy: { alphaUs: 3, bytesPerUs: 100 }, p2p: { alphaUs: 8, bytesPerUs: 40 } });
  p.segments.forEach((seg, s) => setComputeCost(costs, s, seg, 'forward', { fixedUs: 20 + s, perRowUs: 5 }));
  const measured = [2, 4].map((m) => simulate(gpipeProgram(3, m, 16, { rowBytes: 32, actBytes: 64 }), costs, { steps: 2, meta: metaFor(p) }));
  const target = simulate(p, costs, { steps: 3, meta: metaFor(p) });
  const r = selfConsistency(measured, target);
  close(r.predictedStepUs, r.measuredStepUs, 1e-9, 'step time');
  assert.ok(Math.abs(r.error) < 1e-9);
});

test('the fit matches spans by order when the runtime records no micro-batch on them', () => {
  const truth = { fixedUs: 50, perRowUs: 20 };
  const traces = [2, 4].map((m) => {
    const p = gpipeProgram(2, m, 16, { actBytes: 128 });
    const costs = costsOf({ p2p: { alphaUs: 12, bytesPerUs: 50 } });
    p.segments.forEach((seg, s) => setComputeCost(costs, s, seg, 'forward', { fixedUs: truth.fixedUs * (s + 1), perRowUs: truth.perRowUs }));
    const t = simulate(p, costs, { steps: 2, meta: metaFor(p) });
    return { ...t, spans: { ...t.spans, micro: new Int32Array(t.spans.count).fill(-1) } };
  });
  const fitted = fitCostModel(traces);
  const segs = stageSegments(2);
  const c = fitted.compute[computeKey(1, segmentKey(segs[1]!), 'forward')]!;
  close(c.fixedUs, 100, 0.01, 'stage 1 fixed');
  close(c.perRowUs, 20, 0.01, 'stage 1 per row');
  close(fitted.transfers.p2p.bytesPerUs, 50, 0.01, 'p2p β');
});

test('instructions with unknown bytes (0) move the bytes measured for them', () => {
  const p = dataProgram(2, 8);
  const costs = costsOf({ copy: { alphaUs: 1, bytesPerUs: 10 } });
  for (let r = 0; r < 2; r++) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 0, perRowUs: 1 });
  costs.bytes = { '1:0': { op: 'scatter', micro: -1, bytes: 100 }, '1:2': { op: 'scatter', micro: -1, bytes: 999 } };
  const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
  const scatter = spansWhere(trace, (i) => trace.spans.comm[i] === CommOpCode.scatter).sort((a, b) => trace.spans.lane[a]! - trace.spans.lane[b]!);
  assert.deepEqual(scatter.map((i) => trace.spans.dur[i]), [1, 1 + 100 / 10]);
  // The entry for instruction 2 names a scatter, but instruction 2 is a gather: not used.
  const gather = spansWhere(trace, (i) => trace.spans.comm[i] === CommOpCode.gather && trace.spans.lane[i] === 1);
  assert.equal(trace.spans.bytes[gather[0]!], 0);
});

test('bounded channels: a send waits until its receiver has drained room for it, and the wait is backpressure idle', () => {
  // Stage 0 computes 10 µs per micro-batch, stage 1 100 µs; each activation takes 2 of the
  // channel's 3 slots, so only one fits: from micro-batch 2 on, stage 0 waits for stage 1.
  const p = gpipeProgram(2, 4, 4, { actBytes: 1500 });
  const costs: CostModel = { ...costsOf(), channel: { slots: 3, slotBytes: 1000 } };
  setComputeCost(costs, 0, p.segments[0]!, 'forward', { fixedUs: 10, perRowUs: 0 });
  setComputeCost(costs, 1, p.segments[1]!, 'forward', { fixedUs: 100, perRowUs: 0 });
  const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
  const sends = spansWhere(trace, (i) => trace.spans.lane[i] === 0 && trace.spans.comm[i] === CommOpCode.send).map((i) => trace.spans.start[i]);
  // m0 at 10, m1 at 20 (m0 already drained at 10), m2 waits for m1's drain at 110, m3 for m2's at 210.
  assert.deepEqual(sends, [10, 20, 110, 210]);
  assert.equal(idleUs(trace, 0, 'backpressure'), 110 - 30 + (210 - 120));
  close(trace.steps[0]!.endUs - trace.steps[0]!.startUs, 410, 1e-12, 'step time (stage 1 bound either way)');
  // Unbounded, the same program never waits.
  const free = simulate(p, { ...costs, channel: undefined }, { steps: 1, meta: metaFor(p) });
  assert.equal(idleUs(free, 0, 'backpressure'), 0);
});

test('bounded channels: a message larger than the channel streams, so the sender finishes only as the receiver drains it', () => {
  const cap = 1000;
  const link = { alphaUs: 0, bytesPerUs: 10 };
  const channel = { slots: 4, slotBytes: cap / 4 };
  // Activations of 3,000 bytes through a 1,000-byte channel (a send alone takes 300 µs);
  // stage 1 is slow, so the second micro-batch finds its receiver busy.
  const p = gpipeProgram(2, 2, 2, { actBytes: 3 * cap });
  const costs: CostModel = { ...costsOf({ p2p: link }), channel };
  setComputeCost(costs, 0, p.segments[0]!, 'forward', { fixedUs: 10, perRowUs: 0 });
  setComputeCost(costs, 1, p.segments[1]!, 'forward', { fixedUs: 1000, perRowUs: 0 });
  const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
  const at = (lane: number, op: number): { start: number; end: number }[] =>
    spansWhere(trace, (i) => trace.spans.lane[i] === lane && trace.spans.comm[i] === op).map((i) => ({ start: trace.spans.start[i]!, end: trace.spans.start[i]! + trace.spans.dur[i]! }));
  const [s0, s1] = at(0, CommOpCode.send);
  const [r0, r1] = at(1, CommOpCode.recv);
  // m0: stage 1 is at its recv from the start, so m0 streams at the link's rate: 10 → 310.
  assert.deepEqual([s0!.start, s0!.end], [10, 310]);
  assert.deepEqual([r0!.start, r0!.end], [10, 310]);
  // m1: stage 0 is ready at 320 but stage 1 computes m0 until 1310; the last 2,000 bytes go in
  // from then on (200 µs), so the send ends at 1510 and the wait before it is backpressure.
  assert.equal(s1!.end, 1510);
  assert.equal(r1!.start, 1310);
  assert.equal(r1!.end, 1510);
  close(idleUs(trace, 0, 'backpressure'), 1510 - 300 - 320, 1e-9, 'stage 0 backpressure');
});

test('bounded channels: a receiver that never receives a message larger than the channel is a deadlock naming the send', () => {
  const p = gpipeProgram(2, 1, 1, { actBytes: 5000 });
  p.devices[1]!.instructions = p.devices[1]!.instructions.filter((i) => i.op !== 'recv');
  const costs: CostModel = { ...costsOf(), channel: { slots: 4, slotBytes: 250 } };
  for (const seg of p.segments) setComputeCost(costs, seg.id, seg, 'forward', { fixedUs: 10, perRowUs: 0 });
  assert.throws(() => simulate(p, costs, { steps: 1, meta: metaFor(p) }), (e: unknown) => e instanceof DeadlockError && /rank 0 .*waits for rank 1 to drain the channel/.test(e.message));
});

test('bounded channels count slots: small messages each take a whole slot', () => {
  // Four tensors of 10 bytes per micro-batch (a stage cut with four edges sends each as its
  // own message): a 4-slot channel holds one micro-batch, however large its slots.
  const p = gpipeProgram(2, 3, 3, { actBytes: 10 });
  for (const d of p.devices) for (const ins of d.instructions) if (ins.op === 'send' || ins.op === 'recv') ins.tensors = ['a', 'b', 'c', 'd'];
  const costs: CostModel = { ...costsOf(), channel: { slots: 4, slotBytes: 1 << 20 } };
  setComputeCost(costs, 0, p.segments[0]!, 'forward', { fixedUs: 10, perRowUs: 0 });
  setComputeCost(costs, 1, p.segments[1]!, 'forward', { fixedUs: 100, perRowUs: 0 });
  const trace = simulate(p, costs, { steps: 1, meta: metaFor(p) });
  // m0's messages go at 10 and are taken at once; m1's at 20 (stage 1 takes them at 110,
  // after computing m0); m2's must wait for those slots: from 30 to 110 is backpressure.
  const sends = spansWhere(trace, (i) => trace.spans.lane[i] === 0 && trace.spans.comm[i] === CommOpCode.send).map((i) => trace.spans.start[i]);
  assert.deepEqual(sends, [10, 20, 110]);
  assert.equal(idleUs(trace, 0, 'backpressure'), 80);
  const roomy = simulate(p, { ...costs, channel: { slots: 8, slotBytes: 1 << 20 } }, { steps: 1, meta: metaFor(p) });
  assert.equal(idleUs(roomy, 0, 'backpressure'), 0);
});
