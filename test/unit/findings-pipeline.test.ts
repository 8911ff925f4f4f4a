import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findings, type Finding } from '../../src/profiler/findings';
import { summarize } from '../../src/profiler/summary';
import { syntheticPipelineTrace, type SyntheticPipelineOptions } from '../../src/profiler/analysis/synthetic';
import type { PipelinePlan } from '../../src/profiler/plan';
import { analyse } from '../../src/profiler/analysis';
import { predictPipelineStepUs } from '../../src/profiler/analysis/pipeline';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);

function run(o: SyntheticPipelineOptions): Finding[] {
  const t = syntheticPipelineTrace(o);
  return findings(t, summarize(t));
}

const stepOf = (o: SyntheticPipelineOptions): number => {
  const w = syntheticPipelineTrace({ ...o, steps: 1 }).steps[0];
  return w.endUs - w.startUs;
};

/**
 * Two stages: stage 0 holds node a, stage 1 nodes b, c, d, each node 10 µs per micro-batch.
 * 4 micro-batches and 1 µs transfers make a 134 µs step run at stage 1's 30 µs pace.
 */
const lopsided: SyntheticPipelineOptions = {
  stageUs: [10, 30],
  microBatches: 4,
  steps: 3,
  commUs: 1,
  batch: 8,
  stageNodes: [['a'], ['b', 'c', 'd']],
  nodeCostUs: { a: 10, b: 10, c: 10, d: 10 },
};

test('pipeline imbalance moves the cut to balance the measured node costs and predicts the step', () => {
  const f = run(lopsided).filter((x) => x.id === 'pipeline-imbalance');
  assert.equal(f.length, 1);
  assert.equal(f[0].severity, 'critical'); // 30 / mean 20 = 1.5×
  assert.match(f[0].message, /^Stage 1 computes 30 µs per micro-batch against a mean of 20 µs/);
  assert.deepEqual(f[0].change.params, { cuts: ['b'] });
  assert.match(f[0].change.description, /from a to b/);
  assert.deepEqual(f[0].evidence.lanes, [1]);
  assert.equal(f[0].currentStepUs, 134);
  // Stages of 20 µs each: 40 + 1 + 3 · 21 = 104 µs, which is what that schedule measures.
  close(f[0].predictedStepUs!, 104);
  close(f[0].predictedStepUs!, stepOf({ ...lopsided, stageUs: [20, 20] }));
  close(f[0].evidence.numbers['imbalance'], 1.5);
});

test('pipeline imbalance on devices of one kind counts only what the node costs explain', () => {
  // Equal node costs on both stages, measured 10 and 30 µs: the difference is the machine's,
  // not the cut's, and no move of the cut is advised.
  const even = run({ ...lopsided, stageNodes: [['a', 'b'], ['c', 'd']] }).filter((x) => x.id === 'pipeline-imbalance');
  assert.deepEqual(even, []);
  // Node costs 10 and 30 units measured 10 and 40 µs: no physical line (it would need a
  // negative fixed part), so one pooled rate of 1.25 µs per unit. The cut still moves (the
  // nodes are off balance), and the gain is the model's at the new cuts against the model at
  // the current ones (stages of 12.5 and 37.5 µs), not against the measured 10 and 40.
  const o = { ...lopsided, stageUs: [10, 40] };
  const f = run(o).filter((x) => x.id === 'pipeline-imbalance');
  assert.equal(f.length, 1);
  assert.deepEqual(f[0].change.params, { cuts: ['b'] });
  assert.match(f[0].change.description, /apart by more than their nodes' costs explain/);
  const t = syntheticPipelineTrace(o);
  const model = analyse(t).pipeline!.model;
  const at = (stages: number[]): number => predictPipelineStepUs(model, { stagePerMicroUs: stages, alone: true });
  close(f[0].predictedStepUs!, (f[0].currentStepUs * at([25, 25])) / at([12.5, 37.5]));
  assert.ok(f[0].predictedStepUs! > at([25, 25]), 'less gain than reading stage 1 as a slower device');
  // Stages within their nodes' proportions (a line a hair below a zero fixed part) pool
  // without saying the stages were apart.
  const near = run({ ...lopsided, stageUs: [10, 30.6] }).filter((x) => x.id === 'pipeline-imbalance');
  assert.equal(near.length, 1);
  assert.doesNotMatch(near[0].change.description, /apart by more/);
});

test('pipeline imbalance needs the calibration run’s node costs, and stays silent without them', () => {
  const t = syntheticPipelineTrace(lopsided);
  assert.ok(t.meta.plan.mode === 'pipeline');
  delete t.meta.plan.calibration;
  assert.deepEqual(findings(t, summarize(t)).filter((x) => x.id === 'pipeline-imbalance'), []);
});

test('pipeline imbalance stays silent when no cut can help', () => {
  // Stage 1 is one node: moving cuts cannot split it.
  const f = run({ ...lopsided, stageNodes: [['a'], ['b']], nodeCostUs: { a: 10, b: 30 } });
  assert.deepEqual(f.filter((x) => x.id === 'pipeline-imbalance'), []);
});

/** Four equal stages, 4 micro-batches, batch 48: bubbles take 3/7 of every step. */
const bubbly: SyntheticPipelineOptions = { stageUs: [10, 10, 10, 10], microBatches: 4, steps: 2, batch: 48 };

test('a large bubble suggests the fewest micro-batches dividing the batch that bring GPipe’s bubble to 15%', () => {
  const f = run(bubbly).filter((x) => x.id === 'pipeline-bubble');
  assert.equal(f.length, 1);
  assert.equal(f[0].severity, 'critical'); // 43% > 40%
  // 3 / (M′ + 3) ≤ 0.15 needs M′ ≥ 17; the divisors of 48 above 4 are 6, 8, 12, 16, 24, 48.
  assert.deepEqual(f[0].change.params, { microBatches: 24 });
  assert.match(f[0].change.description, /from 4 to 24 \(2 rows each\)/);
  close(f[0].evidence.numbers['bubbleFraction'], 3 / 7);
  close(f[0].evidence.numbers['idealBubbleFraction'], 3 / 7);
  close(f[0].evidence.numbers['suggestedIdealBubbleFraction'], 3 / 27);
  assert.equal(f[0].currentStepUs, 70);
  // 24 micro-batches of 10/6 µs per stage: (24 + 3) · 10/6 = 45 µs, as the schedule measures.
  close(f[0].predictedStepUs!, 45);
  close(f[0].predictedStepUs!, stepOf({ ...bubbly, microBatches: 24, stageUs: [10 / 6, 10 / 6, 10 / 6, 10 / 6] }));
});

test('with a second measured count, the bubble advice stays within the measured range', () => {
  const t = syntheticPipelineTrace(bubbly);
  // The run also measured 8 micro-batches: 10/2 µs per stage and micro-batch, as the schedule gives.
  const probeStep = stepOf({ ...bubbly, microBatches: 8, stageUs: [5, 5, 5, 5] });
  t.meta.microProbe = { microBatches: 8, stepTimesUs: [probeStep, probeStep], stagePerMicroUs: [5, 5, 5, 5], stageCommPerMicroUs: [0, 0, 0, 0] };
  const f = findings(t, summarize(t)).filter((x) => x.id === 'pipeline-bubble');
  assert.equal(f.length, 1);
  // 24 would bring the bubble to target, but lies beyond the probe: 6 or 8 are offered, and 8 predicts faster.
  assert.deepEqual(f[0].change.params, { microBatches: 8 });
  close(f[0].predictedStepUs!, probeStep);
  assert.match(f[0].change.description, /This run measured 8 micro-batches too/);
});

test('a large bubble needs the batch to pick micro-batches that divide it', () => {
  const t = syntheticPipelineTrace(bubbly);
  // Typed plans always carry a batch; a hand-made plan without one must still read as unknown.
  delete (t.meta.plan as Partial<PipelinePlan>).batch;
  assert.deepEqual(findings(t, summarize(t)).filter((x) => x.id === 'pipeline-bubble'), []);
});

test('a balanced pipeline with enough micro-batches raises no finding', () => {
  assert.deepEqual(run({ stageUs: [10, 10], microBatches: 16, steps: 2, commUs: 1, batch: 64, opsPerCompute: 4 }), []);
});
