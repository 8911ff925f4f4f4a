import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import { Value } from '@sinclair/typebox/value';
import { PlanSchema, type Plan } from '../../src/profiler/plan';
import type { Program } from '../../src/profiler/program';
import type { Trace } from '../../src/profiler/trace-format';
import { amdahlSpeedup } from '../../src/profiler/analysis/scaling';
import { simulate, setComputeCost, type CostModel } from '../../src/profiler/simulate';
import { enumerateSweep, type SweepSpec } from '../../src/profiler/sweep/enumerate';
import { computeOverlap, fitReferences, leaveOneOut, predictedMeta, predictFrom, shardWorkFraction, type MeasuredRuns, type SplitShares } from '../../src/profiler/sweep/predict';
import { assembleSweep, orderRows, type PlanOutcome, type SweepInput } from '../../src/profiler/sweep/table';
import { SWEEP_SCHEMA_PATH, SweepResultSchema, sweepSchemaText } from '../../src/profiler/sweep/schema';
import { renderSweepHtml } from '../../src/profiler/sweep/html';
import { WHOLE, dataProgram, gpipeProgram, metaFor, tensorProgram } from '../helpers/programs';

const REPO = join(import.meta.dirname, '..', '..');

const SPEC: SweepSpec = { deviceKind: 'cpu', count: 2, modes: ['data', 'pipeline'], batches: [32], microBatches: [1, 2, 4, 8], predictDevices: [4, 8], steps: 5, warmup: 1, seed: 0 };

// ---- enumeration ----------------------------------------------------------------------------

test('a sweep of cpu:2 measures data on 1 and 2 devices and pipelines with every M and two cuts, and predicts 4 and 8 devices', () => {
  const e = enumerateSweep(SPEC);
  const measured = e.candidates.filter((c) => c.kind === 'measured');
  const predicted = e.candidates.filter((c) => c.kind === 'predicted');
  assert.deepEqual(measured.filter((c) => c.plan.mode === 'data').map((c) => c.devices), [1, 2]);
  const pipes = measured.filter((c) => c.plan.mode === 'pipeline');
  assert.equal(pipes.length, 2 * 4, 'two cuts × four micro-batch counts');
  assert.deepEqual([...new Set(pipes.map((c) => c.cut))].sort(), ['balanced', 'shifted']);
  assert.deepEqual([...new Set(pipes.map((c) => (c.plan.mode === 'pipeline' ? c.plan.microBatches : 0)))].sort((a, b) => a - b), [1, 2, 4, 8]);
  for (const c of e.candidates) assert.ok(Value.Check(PlanSchema, c.plan), `${c.label} is a valid plan`);
  assert.equal(new Set(e.candidates.map((c) => c.label)).size, e.candidates.length, 'labels are unique');
  assert.deepEqual(predicted.map((c) => `${c.plan.mode} ${c.devices}`).sort(), ['data 4', 'data 8', 'pipeline 4', 'pipeline 8']);
  for (const c of predicted) if (c.plan.mode === 'pipeline') assert.equal(c.plan.microBatches, 8, 'the largest M that divides the batch');
  assert.deepEqual(e.notRunnable, []);
});

test('micro-batch counts that do not divide the batch are skipped with the reason, and hybrid on cpu:2 is named as needing 4 devices', () => {
  const e = enumerateSweep({ ...SPEC, modes: ['pipeline', 'hybrid'], batches: [6], microBatches: [2, 4], predictDevices: [] });
  assert.deepEqual(e.notRunnable.map((n) => n.mode), ['hybrid']);
  assert.match(e.notRunnable[0]!.reason, /needs 4 devices.*this machine has 2 cpu/);
  assert.ok(e.candidates.every((c) => c.plan.mode === 'pipeline' && c.plan.microBatches === 2));
  assert.ok(e.skipped.some((s) => /micro-batches 4 does not divide --batch 6/.test(s.reason)));
  assert.ok(e.candidates.every((c) => c.plan.mode !== 'data'), 'data was not asked for');
});

test('a model the shard planner splits gets a measured tensor plan on all devices per batch and predicted ones beyond them', () => {
  const e = enumerateSweep({ ...SPEC, modes: ['data', 'tensor'], batches: [16, 32], tensor: { splits: true } });
  const tensor = e.candidates.filter((c) => c.plan.mode === 'tensor');
  assert.deepEqual(
    tensor.map((c) => `${c.kind} ${c.devices} b${c.plan.batch}`),
    ['measured 2 b16', 'measured 2 b32', 'predicted 4 b16', 'predicted 8 b16', 'predicted 4 b32', 'predicted 8 b32'],
  );
  for (const c of tensor) {
    assert.ok(Value.Check(PlanSchema, c.plan), `${c.label} is a valid plan`);
    assert.equal(c.plan.devices, `cpu:${c.devices}`);
  }
  assert.deepEqual(e.notRunnable, []);
});

test('a model with nothing to split lists tensor as not applicable with the planner reason, and no tensor plan', () => {
  const reason = 'nothing to split for tensor parallelism over 2 devices: looked for MatMul/Gemm pairs';
  const e = enumerateSweep({ ...SPEC, modes: ['data', 'tensor'], tensor: { splits: false, reason } });
  assert.deepEqual(e.notRunnable, [{ mode: 'tensor', reason: `not applicable: ${reason}` }]);
  assert.ok(e.candidates.every((c) => c.plan.mode === 'data'));
});

test('with 4 devices the sweep measures every data × tensor and data × pipeline hybrid (D = T = 2), and with 6 both factorings', () => {
  const four = enumerateSweep({ ...SPEC, count: 4, modes: ['hybrid'], batches: [16], microBatches: [2, 4], predictDevices: [], tensor: { splits: true } });
  assert.deepEqual(four.notRunnable, []);
  assert.deepEqual(
    four.candidates.map((c) => c.label),
    ['hybrid cpu:4 D=2×T=2 b16', 'hybrid cpu:4 D=2×P=2 M=4 b16'],
  );
  for (const c of four.candidates) assert.ok(Value.Check(PlanSchema, c.plan), `${c.label} is a valid plan`);
  const six = enumerateSweep({ ...SPEC, count: 6, modes: ['hybrid'], batches: [12], microBatches: [2], predictDevices: [], tensor: { splits: false, reason: 'nothing' } });
  assert.deepEqual(six.candidates.map((c) => c.label), ['hybrid cpu:6 D=2×P=3 M=2 b12', 'hybrid cpu:6 D=3×P=2 M=2 b12'], 'no data × tensor plan for a model that does not split');
});

test('on cpu:2 the hybrids of 4 and 8 devices are predicted only, and hybrid is not named as needing 4 devices', () => {
  const e = enumerateSweep({ ...SPEC, modes: ['hybrid'], batches: [16], microBatches: [2], tensor: { splits: true } });
  assert.deepEqual(e.notRunnable, []);
  assert.ok(e.candidates.every((c) => c.kind === 'predicted' && c.plan.mode === 'hybrid'));
  assert.deepEqual(e.candidates.map((c) => c.label), [
    'hybrid cpu:4 D=2×T=2 b16',
    'hybrid cpu:4 D=2×P=2 M=2 b16',
    'hybrid cpu:8 D=2×T=4 b16',
    'hybrid cpu:8 D=2×P=4 M=2 b16',
    'hybrid cpu:8 D=4×T=2 b16',
    'hybrid cpu:8 D=4×P=2 M=2 b16',
  ]);
  for (const c of e.candidates) assert.ok(Value.Check(PlanSchema, c.plan), `${c.label} is a valid plan`);
});

// ---- leave-one-out prediction on traces simulated from known costs -------------------------

const FIXED = 2000;
const PER_ROW = 100;
const INTERFERENCE = 1.3;

/** A "measured" trace of a data program on known costs: compute line, copy link, N devices slowed by INTERFERENCE. */
function dataTrace(n: number, batch: number, scale = 1): Trace {
  const p = dataProgram(n, batch, { rowBytes: 64, outBytes: 32 });
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 5, bytesPerUs: 1000 }, p2p: { alphaUs: 0, bytesPerUs: Infinity }, collective: { alphaUs: 0, bytesPerUs: Infinity } }, interference: {} };
  for (let r = 0; r < n; r++) {
    setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: FIXED * scale, perRowUs: PER_ROW * scale });
    costs.interference![String(r)] = n > 1 ? INTERFERENCE : 1;
  }
  return simulate(p, costs, { steps: 3, meta: metaFor(p) });
}

const stepOf = (t: Trace): number => t.steps[0]!.endUs - t.steps[0]!.startUs;

function runsOf(over: Record<string, Trace> = {}): MeasuredRuns[] {
  const plans: [string, number, number][] = [['data cpu:1 b32', 1, 32], ['data cpu:1 b64', 1, 64], ['data cpu:2 b32', 2, 32], ['data cpu:2 b64', 2, 64]];
  return plans.map(([id, n, b]) => ({ id, traces: [over[id] ?? dataTrace(n, b)] }));
}

test("leave-one-out never puts a plan's own runs in its training set", () => {
  const all = runsOf();
  for (const p of all) {
    const training = leaveOneOut(p.id, all);
    for (const t of p.traces) assert.ok(!training.includes(t), `${p.id}'s own trace is not in its fit`);
    assert.equal(training.length, all.reduce((a, q) => a + q.traces.length, 0) - p.traces.length);
  }
});

test("a prediction does not change when the plan's own measurements do (it is not a replay)", () => {
  const target = 'data cpu:2 b32';
  const predict = (all: MeasuredRuns[]): number => {
    const own = all.find((p) => p.id === target)!.traces[0]!;
    return predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, leaveOneOut(target, all)).predictedUs;
  };
  const a = predict(runsOf());
  const b = predict(runsOf({ [target]: dataTrace(2, 32, 7) }));
  assert.equal(a, b);
});

test('the interference of two devices is measured from 1-device vs 2-device per-row costs, and the prediction recovers the truth', () => {
  const all = runsOf();
  const refs = fitReferences(all.flatMap((p) => p.traces));
  const i2 = refs.interference.get(2)!;
  assert.ok(Math.abs(i2 - INTERFERENCE) < 0.01, `interference ${i2}`);
  for (const p of all) {
    const own = p.traces[0]!;
    const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, leaveOneOut(p.id, all));
    const truth = stepOf(own);
    assert.ok(Math.abs(pred.predictedUs / truth - 1) < 0.01, `${p.id}: predicted ${pred.predictedUs} vs ${truth} (${pred.basis.join('; ')})`);
    assert.ok(pred.basis.length > 0);
    assert.equal(pred.trace.meta.source, 'predicted');
  }
});

test('more devices never beat the Amdahl bound of the calibrated serial fraction', () => {
  const training = runsOf().flatMap((p) => p.traces);
  const refs = fitReferences(training);
  const template = training[0]!;
  const predictN = (n: number, batch: number) => {
    const plan: Plan = { mode: 'data', devices: `cpu:${n}`, batch, steps: 1, warmup: 0, seed: 0 };
    const program: Program = dataProgram(n, batch, { rowBytes: 64, outBytes: 32 });
    return predictFrom({ program, meta: predictedMeta(template.meta, n, plan), steps: 1 }, training, refs);
  };
  const batch = 64;
  const one = predictN(1, batch);
  const c = Object.values(one.costs.compute)[0]!;
  const host = Object.values(one.costs.hostUs ?? {})[0] ?? 0;
  // Work that does not shrink with N: the compute's fixed part, the copies' latency, the host's time per instruction.
  const serial = c.fixedUs + 2 * one.costs.transfers.copy.alphaUs + 3 * host;
  const f = serial / one.predictedUs;
  assert.ok(f > 0.05 && f < 0.9, `serial fraction ${f}`);
  let last = 0;
  for (const n of [2, 4, 8, 16, 32, 64]) {
    const s = one.predictedUs / predictN(n, batch).predictedUs;
    assert.ok(s <= amdahlSpeedup(f, n) * (1 + 1e-9), `${n} devices: speedup ${s} above Amdahl ${amdahlSpeedup(f, n)}`);
    assert.ok(s > last, 'still faster with more devices');
    last = s;
  }
});

test('a pipeline stage seen in other plans is predicted from their fitted line', () => {
  const trace = (m: number): Trace => {
    const p = gpipeProgram(2, m, 32, { actBytes: 16 });
    const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 0, bytesPerUs: Infinity }, p2p: { alphaUs: 3, bytesPerUs: 500 }, collective: { alphaUs: 0, bytesPerUs: Infinity } } };
    for (const seg of p.segments) setComputeCost(costs, seg.id, seg, 'forward', { fixedUs: 300, perRowUs: 40 + 10 * seg.id });
    return simulate(p, costs, { steps: 2, meta: metaFor(p) });
  };
  const all: MeasuredRuns[] = [1, 2, 4, 8].map((m) => ({ id: `M=${m}`, traces: [trace(m)] }));
  const own = all[2]!.traces[0]!;
  const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, leaveOneOut('M=4', all));
  assert.ok(Math.abs(pred.predictedUs / stepOf(own) - 1) < 0.01, `${pred.predictedUs} vs ${stepOf(own)}`);
  assert.deepEqual(pred.basis, ['same segment on as many devices in other plans']);
});

/** A GPipe trace of 2 stages whose compute runs (1 + (I − 1) · overlap)× slower, overlap from a run without the slowdown. */
function pipelineTrace(m: number, interference: number): Trace {
  const p = gpipeProgram(2, m, 32, { actBytes: 16 });
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 0, bytesPerUs: Infinity }, p2p: { alphaUs: 3, bytesPerUs: 500 }, collective: { alphaUs: 0, bytesPerUs: Infinity } }, interference: {} };
  for (const seg of p.segments) setComputeCost(costs, seg.id, seg, 'forward', { fixedUs: 300, perRowUs: 40 + 10 * seg.id });
  const ov = computeOverlap(simulate(p, costs, { steps: 1, meta: metaFor(p) }));
  for (const r of [0, 1]) costs.interference![String(r)] = 1 + (interference - 1) * ov;
  return simulate(p, costs, { steps: 2, meta: metaFor(p) });
}

test('compute overlap is 0 for a pipeline of one micro-batch, near 1 for data parallelism and between for several micro-batches', () => {
  assert.equal(computeOverlap(pipelineTrace(1, 1)), 0);
  assert.ok(computeOverlap(dataTrace(2, 32)) > 0.99);
  const m4 = computeOverlap(pipelineTrace(4, 1));
  assert.ok(m4 > 0.3 && m4 < 1, `M=4: ${m4}`);
  assert.ok(computeOverlap(pipelineTrace(8, 1)) > m4, 'more micro-batches overlap more');
});

test('interference is charged only while devices compute together: a one-micro-batch pipeline is predicted without it', () => {
  const runs: MeasuredRuns[] = [
    ...runsOf(),
    ...[1, 2, 4, 8].map((m) => ({ id: `pipeline M=${m}`, traces: [pipelineTrace(m, INTERFERENCE)] })),
  ];
  for (const id of ['pipeline M=1', 'pipeline M=8']) {
    const own = runs.find((p) => p.id === id)!.traces[0]!;
    const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, leaveOneOut(id, runs));
    assert.ok(Math.abs(pred.predictedUs / stepOf(own) - 1) < 0.01, `${id}: ${pred.predictedUs} vs ${stepOf(own)}`);
  }
});

/** Each stage of the pipelines below is half the model (its one-device cost). */
const STAGE = { fixedUs: FIXED / 2, perRowUs: PER_ROW / 2 };

/**
 * A GPipe trace of 2 stages on devices with fewer cores: each stage runs `tau`× slower than
 * its one-device cost alone and `contention`× more while the other device computes too; its
 * plan carries the calibration the runner records (per node, one-device costs at two
 * micro-batch sizes; each stage's two nodes share its cost). `perRowScale` bends the stage's
 * measured per-row cost away from the calibrated one (what noise does to a few sizes).
 */
function slowPipeline(m: number, batch: number, o: { tau: number; contention: number; perRowScale?: number }): Trace {
  const p = gpipeProgram(2, m, batch, { actBytes: 16 });
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 0, bytesPerUs: Infinity }, p2p: { alphaUs: 3, bytesPerUs: 500 }, collective: { alphaUs: 0, bytesPerUs: Infinity } }, interference: {} };
  for (const seg of p.segments) setComputeCost(costs, seg.id, seg, 'forward', { fixedUs: STAGE.fixedUs * o.tau, perRowUs: STAGE.perRowUs * o.tau * (o.perRowScale ?? 1) });
  const ov = computeOverlap(simulate(p, costs, { steps: 1, meta: metaFor(p) }));
  for (const r of [0, 1]) costs.interference![String(r)] = 1 + (o.contention - 1) * ov;
  const t = simulate(p, costs, { steps: 2, meta: metaFor(p) });
  const node = (rows: number): Record<string, number> =>
    Object.fromEntries(['n0a', 'n0b', 'n1a', 'n1b'].map((n) => [n, (STAGE.fixedUs + STAGE.perRowUs * rows) / 2]));
  const rows = batch / m;
  const plan = { ...(t.meta.plan as Extract<Plan, { mode: 'pipeline' }>), microBatches: m, calibration: { device: 'cpu:0', rows, runs: 1, note: 'synthetic', nodeCostUs: node(rows), alt: { rows: rows * 2, nodeCostUs: node(rows * 2) } } };
  return { ...t, meta: { ...t.meta, plan } };
}

/** The whole model on one device with every core: the reference line. */
function oneDeviceTrace(b: number): Trace {
  const p = dataProgram(1, b, { rowBytes: 64, outBytes: 32 });
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 5, bytesPerUs: 1000 }, p2p: { alphaUs: 0, bytesPerUs: Infinity }, collective: { alphaUs: 0, bytesPerUs: Infinity } } };
  setComputeCost(costs, 0, WHOLE, 'forward', { fixedUs: FIXED, perRowUs: PER_ROW });
  return simulate(p, costs, { steps: 3, meta: metaFor(p) });
}

test('devices with fewer cores than the one-device reference: the thread factor is measured on a one-micro-batch pipeline and applied whether or not devices overlap', () => {
  // Truth: on a device of the 2-device plans a stage runs TAU× slower alone (half the cores)
  // and CONTENTION× more while the other device computes too.
  const o = { tau: 1.8, contention: 1.2 };
  const runs: MeasuredRuns[] = [
    { id: 'data cpu:1 b32', traces: [oneDeviceTrace(32)] },
    { id: 'data cpu:1 b64', traces: [oneDeviceTrace(64)] },
    ...[1, 2, 4, 8].map((m) => ({ id: `pipeline M=${m}`, traces: [slowPipeline(m, 32, o)] })),
    // A second plan whose devices compute alone, so the thread factor is known without M=1.
    { id: 'pipeline M=1 b16', traces: [slowPipeline(1, 16, o)] },
  ];
  const refs = fitReferences(runs.flatMap((r) => r.traces));
  assert.ok(Math.abs(refs.threads.get(2)! - o.tau) < 0.02, `thread factor ${refs.threads.get(2)}`);
  assert.ok(Math.abs(refs.interference.get(2)! - o.contention) < 0.05, `contention ${refs.interference.get(2)}`);
  for (const id of ['pipeline M=1', 'pipeline M=2', 'pipeline M=8']) {
    const own = runs.find((r) => r.id === id)!.traces[0]!;
    const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, leaveOneOut(id, runs));
    assert.ok(Math.abs(pred.predictedUs / stepOf(own) - 1) < 0.02, `${id}: ${pred.predictedUs} vs ${stepOf(own)} (${pred.basis.join('; ')})`);
  }
});

test('without a one-micro-batch pipeline the thread factor comes from the spans that ran alone, so fewer cores do not pass for contention', () => {
  // Two one-thread workers that do not slow each other at all (contention 1), TAU× slower
  // than the one device with every core; no plan whose devices compute only alone.
  const o = { tau: 1.7, contention: 1 };
  const slowData = (b: number): Trace => {
    const p = dataProgram(2, b, { rowBytes: 64, outBytes: 32 });
    const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 5, bytesPerUs: 1000 }, p2p: { alphaUs: 0, bytesPerUs: Infinity }, collective: { alphaUs: 0, bytesPerUs: Infinity } } };
    for (const r of [0, 1]) setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: FIXED * o.tau, perRowUs: PER_ROW * o.tau });
    return simulate(p, costs, { steps: 3, meta: metaFor(p) });
  };
  const runs: MeasuredRuns[] = [
    { id: 'data cpu:1 b32', traces: [oneDeviceTrace(32)] },
    { id: 'data cpu:1 b64', traces: [oneDeviceTrace(64)] },
    { id: 'data cpu:2 b32', traces: [slowData(32)] },
    { id: 'data cpu:2 b64', traces: [slowData(64)] },
    ...[2, 4, 8].map((m) => ({ id: `pipeline M=${m}`, traces: [slowPipeline(m, 32, o)] })),
  ];
  const refs = fitReferences(runs.flatMap((r) => r.traces));
  assert.ok(Math.abs(refs.threads.get(2)! - o.tau) < 0.02, `thread factor ${refs.threads.get(2)}`);
  assert.ok(Math.abs(refs.interference.get(2)! - 1) < 0.02, `contention ${refs.interference.get(2)}`);
  for (const id of ['pipeline M=2', 'pipeline M=4', 'pipeline M=8', 'data cpu:2 b32']) {
    const own = runs.find((r) => r.id === id)!.traces[0]!;
    const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, leaveOneOut(id, runs));
    assert.ok(Math.abs(pred.predictedUs / stepOf(own) - 1) < 0.02, `${id}: ${pred.predictedUs} vs ${stepOf(own)} (${pred.basis.join('; ')})`);
  }
});

test("beyond the rows other plans ran a stage at, the stage's line continues with the reference's per-row cost", () => {
  // The stage's true cost follows the calibration (× the thread factor); the plans at 8 and
  // 4 rows per micro-batch measured a per-row cost a third of it (noise on a cost that is
  // mostly fixed). M = 2 (16 rows) lies beyond them.
  const o = { tau: 1.5, contention: 1 };
  const target = slowPipeline(2, 32, o);
  const runs: MeasuredRuns[] = [
    { id: 'data cpu:1 b32', traces: [oneDeviceTrace(32)] },
    { id: 'data cpu:1 b64', traces: [oneDeviceTrace(64)] },
    { id: 'pipeline M=4', traces: [slowPipeline(4, 32, { ...o, perRowScale: 1 / 3 })] },
    { id: 'pipeline M=8', traces: [slowPipeline(8, 32, { ...o, perRowScale: 1 / 3 })] },
    { id: 'pipeline M=2', traces: [target] },
  ];
  const training = leaveOneOut('pipeline M=2', runs);
  const pred = predictFrom({ program: target.meta.program!, meta: target.meta, steps: 1 }, training);
  assert.ok(pred.basis.some((b) => /reference per-row cost beyond their rows/.test(b)), pred.basis.join('; '));
  // The line through the two noisy sizes alone would miss by more than the continued one.
  const uncalibrated = training.map((t) => (t.meta.plan.mode === 'pipeline' ? { ...t, meta: { ...t.meta, plan: { ...t.meta.plan, calibration: undefined } } } : t));
  const flat = Math.abs(predictFrom({ program: target.meta.program!, meta: target.meta, steps: 1 }, uncalibrated).predictedUs / stepOf(target) - 1);
  const err = Math.abs(pred.predictedUs / stepOf(target) - 1);
  assert.ok(err < flat, `continued ${err} against the noisy line ${flat}`);
  // Within the measured rows nothing changes: M = 4 (8 rows) lies between M = 8 and M = 2.
  const m4 = runs.find((r) => r.id === 'pipeline M=4')!.traces[0]!;
  const inside = predictFrom({ program: m4.meta.program!, meta: m4.meta, steps: 1 }, leaveOneOut('pipeline M=4', runs));
  assert.ok(inside.basis.includes('same segment on as many devices in other plans'), inside.basis.join('; '));
});

// ---- tensor plans: shard segments predicted from the one-device line and the split ----------

/** Four nodes in two chain parts; B and C split over the devices (a Megatron pair), A and D replicated. */
const TP_PARTS = [['A', 'B'], ['C', 'D']];
const TP_FLOPS: Record<string, number> = { A: 10, B: 40, C: 40, D: 10 };
const splitOver = (n: number): SplitShares => ({ share: { A: 1, B: 1 / n, C: 1 / n, D: 1 }, flops: TP_FLOPS });
const AR_LINK = { alphaUs: 20, bytesPerUs: 500 };

/** A "measured" tensor trace on known costs: each part's share of the whole line, the all-reduce on AR_LINK, interference while both compute. */
function tensorTrace(n: number, batch: number): Trace {
  const p = tensorProgram(n, batch, TP_PARTS, { rowBytes: 64, allreduceBytesPerRow: 256 });
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 5, bytesPerUs: 1000 }, p2p: { alphaUs: 0, bytesPerUs: Infinity }, collective: AR_LINK }, interference: {} };
  const split = splitOver(n);
  const total = Object.values(TP_FLOPS).reduce((a, b) => a + b, 0);
  for (let r = 0; r < n; r++) {
    TP_PARTS.forEach((nodes, part) => {
      const f = nodes.reduce((a, x) => a + TP_FLOPS[x]! * split.share[x]!, 0) / total;
      setComputeCost(costs, r, { id: r * 2 + part, kind: 'shard', label: `shard ${r} part ${part}`, rank: r, part, nodes }, 'forward', { fixedUs: FIXED * f, perRowUs: PER_ROW * f });
    });
    costs.interference![String(r)] = INTERFERENCE;
  }
  return simulate(p, costs, { steps: 3, meta: metaFor(p) });
}

/** Data traces on two devices that all-reduce (gradient-sized buffers of two sizes) on the same link: the collective fit's samples. */
function allreduceTrace(batch: number): Trace {
  const p = dataProgram(2, batch, { rowBytes: 64, outBytes: 32, allreduceBytes: 256 * batch });
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 5, bytesPerUs: 1000 }, p2p: { alphaUs: 0, bytesPerUs: Infinity }, collective: AR_LINK }, interference: {} };
  for (let r = 0; r < 2; r++) {
    setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: FIXED, perRowUs: PER_ROW });
    costs.interference![String(r)] = INTERFERENCE;
  }
  return simulate(p, costs, { steps: 3, meta: metaFor(p) });
}

test('a shard segment does its share of the split work: replicated nodes whole, split nodes 1/T, weighted by FLOPs or by calibration', () => {
  const byFlops = shardWorkFraction(['A', 'B'], splitOver(2), new Map());
  assert.deepEqual(byFlops, { fraction: (10 + 40 / 2) / 100, weights: 'flops' });
  // Calibrated per-row costs replace the FLOP estimate when every node with FLOPs has one.
  const cal = new Map(Object.entries({ A: 30, B: 10, C: 10, D: 30 }).map(([k, v]) => [k, { fixedUs: 0, perRowUs: v }] as const));
  assert.deepEqual(shardWorkFraction(['A', 'B'], splitOver(2), cal), { fraction: (30 + 10 / 2) / 80, weights: 'calibration' });
  assert.equal(shardWorkFraction(['A'], { share: { A: 1 }, flops: {} }, new Map()), null, 'no weights, no fraction');
  // A small model's calibration can fit every node as fixed cost alone (per-row 0): the FLOPs weigh instead.
  const allFixed = new Map(['A', 'B', 'C', 'D'].map((k) => [k, { fixedUs: 5, perRowUs: 0 }] as const));
  assert.deepEqual(shardWorkFraction(['A', 'B'], splitOver(2), allFixed), byFlops);
});

test('a tensor plan is predicted leave-one-out from data plans: its shards from the one-device line × split share, its all-reduces from the collective fit, recovering the truth', () => {
  const all: MeasuredRuns[] = [
    ...runsOf(),
    { id: 'data cpu:2 b32 allreduce', traces: [allreduceTrace(32)] },
    { id: 'data cpu:2 b64 allreduce', traces: [allreduceTrace(64)] },
    { id: 'tensor cpu:2 b32', traces: [tensorTrace(2, 32)] },
  ];
  const own = all.find((p) => p.id === 'tensor cpu:2 b32')!.traces[0]!;
  const training = leaveOneOut('tensor cpu:2 b32', all);
  assert.ok(training.every((t) => t.meta.program!.mode !== 'tensor'), 'no tensor plan in the training set: the shards ran nowhere else');
  const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1, split: splitOver(2) }, training);
  const truth = stepOf(own);
  assert.ok(Math.abs(pred.predictedUs / truth - 1) < 0.01, `predicted ${pred.predictedUs} vs ${truth} (${pred.basis.join('; ')})`);
  assert.ok(pred.basis.some((b) => /one-device line × split share of the work \(estimated FLOPs\)/.test(b)), pred.basis.join('; '));
  assert.ok(pred.basis.some((b) => /collectives: α \+ β·bytes fitted on every other plan/.test(b)), pred.basis.join('; '));
  const ar = pred.costs.transfers.collective;
  assert.ok(Math.abs(ar.alphaUs - AR_LINK.alphaUs) < 0.5 && Math.abs(ar.bytesPerUs / AR_LINK.bytesPerUs - 1) < 0.01, `all-reduce link ${JSON.stringify(ar)}`);
  // Without the split, the shards have no basis; without collectives measured, they are taken as free and said so.
  assert.throws(() => predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1 }, training), /no measured plan gives a cost for shard/);
  const noCollectives = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1, split: splitOver(2) }, leaveOneOut('tensor cpu:2 b32', [...runsOf(), all.at(-1)!]));
  assert.ok(noCollectives.assumptions.some((a) => /collectives taken as free/.test(a)));
  assert.ok(noCollectives.predictedUs < pred.predictedUs);
});

test('without a measured collective, a tensor plan prices each ring step of its all-reduces as a measured point-to-point transfer', () => {
  const own = tensorTrace(2, 32);
  const training = [...runsOf().flatMap((p) => p.traces), pipelineTrace(1, INTERFERENCE), pipelineTrace(2, INTERFERENCE), pipelineTrace(4, INTERFERENCE)];
  const pred = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1, split: splitOver(2) }, training);
  assert.ok(pred.basis.some((b) => /collectives: ring of point-to-point steps/.test(b)), pred.basis.join('; '));
  assert.deepEqual(pred.costs.transfers.collective, pred.costs.transfers.p2p);
  const p2p = pred.costs.transfers.p2p;
  assert.ok(Math.abs(p2p.alphaUs - 3) < 0.5 && Math.abs(p2p.bytesPerUs / 500 - 1) < 0.05, `p2p link ${JSON.stringify(p2p)}`);
  const free = predictFrom({ program: own.meta.program!, meta: own.meta, steps: 1, split: splitOver(2) }, runsOf().flatMap((p) => p.traces));
  assert.ok(free.assumptions.some((a) => /collectives taken as free/.test(a)));
  assert.ok(pred.predictedUs > free.predictedUs, 'the ring steps cost time');
});

// ---- the table ------------------------------------------------------------------------------

function outcome(label: string, plan: Plan, devices: number, steps: number[], predictedUs: number | null): PlanOutcome {
  return {
    label,
    plan,
    kind: steps.length > 0 ? 'measured' : 'predicted',
    devices,
    stepTimesUs: steps,
    runs: steps.length > 0 ? 1 : 0,
    qualities: steps.length > 0 ? ['good'] : [],
    predictedUs,
    predictionBasis: 'test',
    assumptions: [],
    bubble: null,
    commShare: 0,
    memoryPerDeviceBytes: 1024,
    fits: true,
  };
}

const dataPlan = (n: number, batch: number): Plan => ({ mode: 'data', devices: `cpu:${n}`, batch, steps: 3, warmup: 0, seed: 0 });

function input(): SweepInput {
  return {
    model: 'm',
    devices: 'cpu:2',
    settings: { modes: ['data'], batches: [32, 64], microBatches: [1], repeats: 1, steps: 3, warmup: 0 },
    outcomes: [
      outcome('data cpu:1 b32', dataPlan(1, 32), 1, [100, 110, 120], 100),
      outcome('data cpu:2 b64', dataPlan(2, 64), 2, [90, 100, 110], 120),
      outcome('data cpu:2 b32', dataPlan(2, 32), 2, [60, 62, 64], 57),
      outcome('data cpu:8 b32', dataPlan(8, 32), 8, [], 20),
      outcome('data cpu:4 b32', dataPlan(4, 32), 4, [], null),
    ],
    qualityReasons: [],
    interference: { '2': 1.1 },
    notRunnable: [],
    skipped: [],
  };
}

test('the table is best first by time per row, measured where measured, predicted otherwise, rows without either last', () => {
  const r = assembleSweep(input());
  assert.deepEqual(r.plans.map((p) => p.label), ['data cpu:8 b32', 'data cpu:2 b64', 'data cpu:2 b32', 'data cpu:1 b32', 'data cpu:4 b32']);
  const p2 = r.plans.find((p) => p.label === 'data cpu:2 b32')!;
  assert.equal(p2.measuredUs, 62);
  assert.ok(Math.abs(p2.errorPct! - ((57 - 62) / 62) * 100) < 1e-9);
  assert.deepEqual(p2.measuredInterval, { lo: 61, hi: 63 });
  assert.ok(Math.abs(p2.efficiency! - 110 / 62 / 2) < 1e-9, 'speedup per row against one device, over the devices');
  const p8 = r.plans.find((p) => p.label === 'data cpu:8 b32')!;
  assert.equal(p8.measuredUs, null);
  assert.equal(p8.errorPct, null);
  const errs = [(100 - 110) / 110, (120 - 100) / 100, (57 - 62) / 62].map((e) => Math.abs(e * 100));
  assert.ok(Math.abs(r.mapePct! - errs.reduce((a, b) => a + b, 0) / 3) < 1e-9);
  assert.ok(Math.abs(r.maxAbsErrorPct! - Math.max(...errs)) < 1e-9);
  // Reordering is stable and idempotent.
  assert.deepEqual(orderRows(r.plans), r.plans);
});

test('extra predicted rows (other hardware, other links) join the table and its order, labelled predicted', () => {
  const base = assembleSweep(input());
  const extra = { ...base.plans.find((p) => p.label === 'data cpu:8 b32')!, label: 'data 64 × other device', devices: 64, predictedUs: 1, assumptions: ['a device preset'] };
  const r = assembleSweep({ ...input(), extraPredicted: [extra] });
  assert.equal(r.plans[0]!.label, 'data 64 × other device');
  assert.equal(r.plans[0]!.kind, 'predicted');
  assert.equal(r.mapePct, base.mapePct, 'predicted rows do not enter the error');
});

test('the committed sweep schema is the generated one, and it accepts an assembled sweep and rejects a row without a prediction field', () => {
  assert.equal(readFileSync(join(REPO, SWEEP_SCHEMA_PATH), 'utf8'), sweepSchemaText());
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(sweepSchemaText()) as object);
  const r = JSON.parse(JSON.stringify(assembleSweep(input()))) as { plans: Record<string, unknown>[] };
  assert.ok(validate(r), JSON.stringify(validate.errors));
  assert.ok(Value.Check(SweepResultSchema, r));
  const { predictedUs: _drop, ...row } = r.plans[0]!;
  assert.ok(!validate({ ...r, plans: [row] }));
});

test('the HTML page holds a row per plan with its error and a chart point per measured data plan, and no script', () => {
  const r = assembleSweep(input());
  const html = renderSweepHtml(r);
  assert.equal((html.match(/<tr class="(measured|predicted)"/g) ?? []).length, r.plans.length);
  assert.equal((html.match(/data-error="/g) ?? []).length, r.plans.filter((p) => p.errorPct !== null).length);
  assert.equal((html.match(/<circle class="measured" data-devices/g) ?? []).length, r.scaling!.measured.length);
  assert.ok(r.scaling!.measured.length >= 2);
  assert.doesNotMatch(html, /<script/);
  assert.match(html, /Content-Security-Policy/);
});
