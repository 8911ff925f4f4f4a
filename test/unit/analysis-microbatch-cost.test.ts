import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stageFixedShares, predictPipelineStepUs, twoPointStepUs, type PipelineModel } from '../../src/profiler/analysis/pipeline';
import { readPlan } from '../../src/profiler/analysis/plan';
import { meta, pipelinePlan } from '../helpers/trace-builders';

test('two calibration sizes split a micro-batch into fixed and per-row work per stage', () => {
  const plan = readPlan({
    meta: meta({
      plan: pipelinePlan({
        batch: 32,
        microBatches: 4,
        partition: { stageNodes: [['a'], ['b']], stageCostUs: [10, 10], balance: 1 },
        calibration: { device: 'cpu:0', rows: 8, runs: 1, note: '', nodeCostUs: { a: 10, b: 10 }, alt: { rows: 4, nodeCostUs: { a: 6, b: 10 } } },
      }),
    }),
  });
  // Stage 0: t(r) = 2 + r → fixed share 2/10. Stage 1 does not scale with rows: clamped to 0.95.
  const shares = stageFixedShares(plan, 2);
  assert.ok(Math.abs(shares[0] - 0.2) < 1e-12);
  assert.equal(shares[1], 0.95);
});

test('without a second calibration size, work per micro-batch is taken as per-row', () => {
  const plan = readPlan({
    meta: meta({
      plan: pipelinePlan({
        partition: { stageNodes: [['a'], ['b']], stageCostUs: [10, 10], balance: 1 },
        calibration: { device: 'cpu:0', rows: 8, runs: 1, note: '', nodeCostUs: { a: 10, b: 10 } },
      }),
    }),
  });
  assert.deepEqual(stageFixedShares(plan, 2), [0, 0]);
});

test('predictions for more micro-batches keep each stage’s fixed work', () => {
  const model: PipelineModel = {
    stages: 2,
    microBatches: 4,
    stagePerMicroUs: [10, 10],
    stageCommPerMicroUs: [0, 0],
    measuredStepUs: 50,
    formulaUs: 50,
    scale: 1,
    microBatchRows: 8,
    stageFixedShare: [0.2, 0.95],
    probe: null,
  };
  // M′ = 8: stage 0 → 10·(0.2 + 0.8/2) = 6, stage 1 → 10·(0.95 + 0.05/2) = 9.75;
  // step = 6 + 9.75 + 7 · 9.75 = 84.
  assert.ok(Math.abs(predictPipelineStepUs(model, { microBatches: 8 }) - 84) < 1e-9);
  // Purely per-row work: stages of 5 µs → 5 + 5 + 7 · 5 = 45.
  assert.ok(Math.abs(predictPipelineStepUs({ ...model, stageFixedShare: [0, 0] }, { microBatches: 8 }) - 45) < 1e-9);
});

/**
 * A synthetic pipeline with known costs: stage s costs a_s + b_s·rows per micro-batch, each
 * step pays E µs once and g µs per micro-batch on its critical path (M + K − 1 of them).
 */
function truth(m: number, a: number[], b: number[], e: number, g: number): { t: number[]; step: number } {
  const rows = 32 / m;
  const t = a.map((ai, s) => ai + b[s]! * rows);
  const sum = t.reduce((x, y) => x + y, 0);
  return { t, step: sum + (m - 1) * Math.max(...t) + e + g * (m + a.length - 1) };
}

test('two measured operating points predict other micro-batch counts of a pipeline with fixed and per-row costs exactly', () => {
  const a = [120, 40];
  const b = [10, 14];
  const at = (m: number) => truth(m, a, b, 300, 55);
  const base = at(2);
  const probe = at(4);
  const model: PipelineModel = {
    stages: 2,
    microBatches: 2,
    stagePerMicroUs: base.t,
    stageCommPerMicroUs: [0, 0],
    measuredStepUs: base.step,
    formulaUs: 0,
    scale: 1,
    microBatchRows: 16,
    stageFixedShare: [0, 0],
    probe: { microBatches: 4, stepUs: probe.step, stagePerMicroUs: probe.t, stageCommPerMicroUs: [0, 0] },
  };
  for (const m of [1, 4, 8, 16, 32]) {
    assert.ok(Math.abs(predictPipelineStepUs(model, { microBatches: m }) - at(m).step) < 1e-6, `M′ = ${m}`);
  }
  assert.ok(Math.abs(twoPointStepUs(model, model.probe!, 2)! - base.step) < 1e-6, 'the measured point comes back');
  // Without the probe the one-point model misses what the fixed costs add at 16 micro-batches.
  const one = predictPipelineStepUs({ ...model, probe: null }, { microBatches: 16 });
  assert.ok(Math.abs(one - at(16).step) / at(16).step > 0.2);
});

test('the two-point model stays physical when noise makes the larger micro-batch look cheaper', () => {
  const model: PipelineModel = {
    stages: 2,
    microBatches: 4,
    stagePerMicroUs: [100, 100],
    stageCommPerMicroUs: [5, 5],
    measuredStepUs: 600,
    formulaUs: 0,
    scale: 1,
    microBatchRows: 2,
    stageFixedShare: [0, 0],
    // The probe's micro-batches carry half the rows yet measured dearer, and its step shorter.
    probe: { microBatches: 8, stepUs: 500, stagePerMicroUs: [110, 110], stageCommPerMicroUs: [6, 6] },
  };
  for (const m of [1, 2, 16]) {
    const p = twoPointStepUs(model, model.probe!, m)!;
    assert.ok(Number.isFinite(p) && p > 0, `M′ = ${m}: ${p}`);
  }
  // The per-micro-batch cost solved from these points is negative: it counts as none, and the
  // run's own point still comes back.
  assert.ok(Math.abs(twoPointStepUs(model, model.probe!, 4)! - 600) < 1e-9);
  // And so does the probe's, as measured, though the clamped lines would not give it.
  assert.equal(twoPointStepUs(model, model.probe!, 8), 500);
  assert.equal(twoPointStepUs(model, { ...model.probe!, stagePerMicroUs: [1] }, 8), null, 'a probe of other stages is not used');
});
