import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { findings, type Finding } from '../../src/profiler/findings';
import { summarize } from '../../src/profiler/summary';
import { analyse } from '../../src/profiler/analysis/index';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { TraceBuilder, type SpanRow, type Trace } from '../../src/profiler/trace-format';
import { dataPlan, meta, traceOf } from '../helpers/trace-builders';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);
const only = (t: Trace, id: string, opts = {}): Finding[] => findings(t, summarize(t), opts).filter((f) => f.id === id);

/** n balanced data-parallel lanes, one step of `stepUs`, with a one-device baseline. */
function balanced(n: number, stepUs: number, baselineUs?: number): Trace {
  const rows: SpanRow[] = Array.from({ length: n }, (_, lane) => ({ lane, kind: 'compute', name: 'session.run', start: 0, dur: stepUs, step: 0 }));
  const m = meta({ plan: dataPlan({ batch: 8 * n, shards: Array.from({ length: n }, () => 8) }, n) }, n);
  if (baselineUs !== undefined) m.baseline = { description: 'one device', stepTimeUs: { median: baselineUs, p10: baselineUs, p90: baselineUs } };
  return deriveIdle(traceOf(rows, [[0, stepUs]], m));
}

test('two devices only 1.1× faster than one is poor scaling, and one device keeps 90% of the speedup', () => {
  const f = only(balanced(2, 100, 110), 'poor-scaling');
  assert.equal(f.length, 1);
  // Efficiency 55% (a warning), but see below.
  close(f[0].evidence.numbers['efficiency'], 0.55);
  // 1/1.1 = f + (1 − f)/2 → f = 9/11.
  close(f[0].evidence.numbers['serialFraction'], 9 / 11);
  // One device runs the whole batch in the baseline's 110 µs: slower than the 100 µs step, so
  // the finding is information, with no parameters to apply.
  close(f[0].predictedStepUs!, 110);
  assert.equal(f[0].severity, 'info');
  assert.deepEqual(f[0].change.params, {});
  assert.equal(f[0].checked?.ok, false);
  assert.match(f[0].checked!.note!, /not predicted to be faster/);
});

test('two devices slower than one: one device as the baseline ran it, params and prediction alike', () => {
  const t = balanced(2, 100, 90);
  t.meta.devices.forEach((d) => (d.threads = 1));
  const f = only(t, 'poor-scaling');
  assert.equal(f.length, 1);
  assert.notEqual(f[0].severity, 'info');
  // The baseline: a data run of the whole batch (16 rows) on one device of cpu:0's configuration.
  assert.deepEqual(f[0].change.params, { devices: 'cpu:1', shards: [16] });
  close(f[0].predictedStepUs!, 90);
  assert.equal(f[0].evidence.numbers['threadsPerDevice'], 1);
  assert.match(f[0].change.description, /as the baseline ran it.*whole batch of 16.*1 thread/);
});

test('a pipeline slower than its baseline is told to run one device in data mode, no micro-batches', () => {
  const t = balanced(2, 100, 90);
  t.meta.mode = 'pipeline';
  t.meta.plan = { mode: 'pipeline', devices: 'cpu:2', batch: 16, steps: 1, warmup: 0, seed: 0, schedule: 'gpipe', microBatches: 4 };
  const f = only(t, 'poor-scaling');
  assert.equal(f.length, 1);
  assert.deepEqual(f[0].change.params, { devices: 'cpu:1', mode: 'data', shards: [16] });
  close(f[0].predictedStepUs!, 90);
  assert.match(f[0].change.description, /--mode data --devices cpu:1/);
});

test('a scaling sweep fits Amdahl and suggests the fewest devices that keep 90% of the speedup', () => {
  // f = 0.5: T_N = 1000 (0.5 + 0.5/N) → 1000, 750, 625 µs on 1, 2, 4 devices; S(4) = 1.6.
  const sweep = [
    { devices: 1, stepUs: 1000 },
    { devices: 2, stepUs: 750 },
    { devices: 4, stepUs: 625 },
  ];
  const f = only(balanced(4, 625), 'poor-scaling', { scaling: sweep });
  assert.equal(f.length, 1);
  close(f[0].evidence.numbers['serialFraction'], 0.5);
  close(f[0].evidence.numbers['efficiency'], 0.4);
  // S(3) = 1 / (0.5 + 0.5/3) = 1.5 ≥ 0.9 · 1.6, S(2) = 1.33 is not.
  // 3 devices: 667 µs against 625 µs measured, slower, so information with no parameters.
  close(f[0].predictedStepUs!, 1000 / 1.5);
  assert.equal(f[0].severity, 'info');
  assert.deepEqual(f[0].change.params, {});
  assert.match(f[0].change.description, /Use 3 devices \(cpu:3/);
});

test('good scaling raises no poor-scaling finding', () => {
  assert.deepEqual(only(balanced(2, 100, 170), 'poor-scaling'), []);
  assert.deepEqual(only(balanced(2, 100), 'poor-scaling'), []);
});

/** One data-parallel lane: a 100 µs session.run whose FusedGemm takes 70 µs. */
function dominated(): Trace {
  const b = new TraceBuilder();
  const run = b.push({ lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 });
  b.push({ lane: 0, kind: 'compute', name: 'fused /layers.0/mlp/fc1/MatMul/MatMulAddFusion', opType: 'FusedGemm', start: 0, dur: 70, step: 0, parent: run, flags: 8 });
  b.push({ lane: 0, kind: 'compute', name: '/layers.0/ln/LayerNormalization', opType: 'LayerNormalization', start: 70, dur: 29, step: 0, parent: run, flags: 8 });
  const m = meta({ plan: dataPlan({ batch: 8, shards: [8] }, 1) }, 1);
  return deriveIdle({
    meta: m,
    strings: b.strings,
    lanes: [{ device: 0, label: 'cpu:0', group: 'host-cpu' }],
    steps: [{ index: 0, startUs: 0, endUs: 100 }],
    spans: b.finish(),
  });
}

test('one op type taking most of the compute is reported with the model node it comes from', () => {
  const f = findings(dominated(), summarize(dominated()));
  assert.deepEqual(f.map((x) => x.id), ['dominant-op']);
  assert.equal(f[0].severity, 'info');
  assert.equal(f[0].message, 'FusedGemm takes 70% of the compute, most of it in /layers.0/mlp/fc1/MatMul.');
  close(f[0].evidence.numbers['share'], 0.7);
  assert.equal(f[0].predictedStepUs, null);
  assert.deepEqual(f[0].change.params, {});
});

test('in a pipeline a dominating op type is reported per stage', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 10], microBatches: 16, steps: 1, opsPerCompute: 4, opTypes: ['MatMul', 'MatMul', 'MatMul', 'Add'], batch: 64 });
  const f = only(t, 'dominant-op');
  assert.deepEqual(f.map((x) => x.evidence.lanes), [[0], [1]]);
  assert.match(f[1].message, /^MatMul takes 75% of stage 1's compute, most of it in \/layers\.1\/block\.0\/MatMul\.$/);
});

test('a mix of op types raises no dominant-op finding', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 10], microBatches: 16, steps: 1, opsPerCompute: 4, batch: 64 });
  assert.deepEqual(only(t, 'dominant-op'), []);
});

test('every finding has an id, a severity, one sentence, evidence and a change with plan params', () => {
  const traces = [
    syntheticPipelineTrace({ stageUs: [10, 30], microBatches: 4, steps: 2, commUs: 1, batch: 8, stageNodes: [['a'], ['b', 'c', 'd']], nodeCostUs: { a: 10, b: 10, c: 10, d: 10 } }),
    balanced(2, 100, 110),
    dominated(),
  ];
  const seen = new Set<string>();
  for (const t of traces) {
    for (const f of findings(t, summarize(t))) {
      seen.add(f.id);
      assert.ok(f.message.endsWith('.') && !/\.\s+[A-Z]/.test(f.message), `one sentence: ${f.message}`);
      assert.ok(f.evidence.lanes.length > 0);
      assert.ok(f.evidence.endUs >= f.evidence.startUs);
      assert.ok(Object.values(f.evidence.numbers).every((v) => Number.isFinite(v)));
      assert.ok(f.change.description.length > 0);
      assert.equal(typeof f.change.params, 'object');
      assert.ok(f.predictedStepUs === null || f.predictedStepUs > 0);
    }
  }
  assert.deepEqual([...seen].sort(), ['dominant-op', 'pipeline-bubble', 'pipeline-imbalance', 'poor-scaling']);
});

test('findings computed from a precomputed analysis are the same', () => {
  const t = balanced(2, 100, 110);
  const s = summarize(t);
  assert.deepEqual(findings(t, s, { analysis: analyse(t) }), findings(t, s));
});

test('healthy runs raise no finding at all', () => {
  assert.deepEqual(findings(balanced(4, 100, 380), summarize(balanced(4, 100, 380))), []);
  const p = syntheticPipelineTrace({ stageUs: [10, 11, 10], microBatches: 32, steps: 2, commUs: 0.5, opsPerCompute: 4, batch: 64 });
  assert.deepEqual(findings(p, summarize(p)), []);
});

test('a change its own prediction calls slower is information with no parameters', async () => {
  const { informIfNoGain } = await import('../../src/profiler/findings');
  const base: Finding = {
    id: 'pipeline-bubble',
    severity: 'warning',
    message: 'bubbles',
    evidence: { lanes: [0], startUs: 0, endUs: 1, numbers: {} },
    change: { description: 'Raise the micro-batches.', params: { microBatches: 8 } },
    currentStepUs: 1000,
    predictedStepUs: 1090,
  };
  const slower = informIfNoGain(base);
  assert.equal(slower.severity, 'info');
  assert.deepEqual(slower.change.params, {});
  assert.match(slower.checked!.note!, /\+9%/);
  const faster = informIfNoGain({ ...base, predictedStepUs: 900 });
  assert.equal(faster.severity, 'warning');
  assert.deepEqual(faster.change.params, { microBatches: 8 });
  // Changes of the work per step are judged by throughput: a longer step with more samples/s is a gain.
  const bigger = informIfNoGain({ ...base, id: 'host-overhead', predictedStepUs: 1500, throughput: { currentPerS: 100, predictedPerS: 130 } });
  assert.equal(bigger.severity, 'warning');
  const fewer = informIfNoGain({ ...base, id: 'host-overhead', predictedStepUs: 1500, throughput: { currentPerS: 100, predictedPerS: 90 } });
  assert.equal(fewer.severity, 'info');
});
