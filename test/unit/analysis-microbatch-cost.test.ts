import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stageFixedShares, predictPipelineStepUs, type PipelineModel } from '../../src/profiler/analysis/pipeline';
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
  };
  // M′ = 8: stage 0 → 10·(0.2 + 0.8/2) = 6, stage 1 → 10·(0.95 + 0.05/2) = 9.75;
  // step = 6 + 9.75 + 7 · 9.75 = 84.
  assert.ok(Math.abs(predictPipelineStepUs(model, { microBatches: 8 }) - 84) < 1e-9);
  // Purely per-row work: stages of 5 µs → 5 + 5 + 7 · 5 = 45.
  assert.ok(Math.abs(predictPipelineStepUs({ ...model, stageFixedShare: [0, 0] }, { microBatches: 8 }) - 45) < 1e-9);
});
