/**
 * The training schedule finding: a GPipe training pipeline that kept more micro-batches of
 * activations than 1F1B would is told so, with the stage, the bytes and the change; 1F1B
 * runs, inference and data-parallel training are not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scheduleMemoryRule } from '../../src/profiler/findings-schedule';
import type { TrainingMeta } from '../../src/profiler/trace-format';
import { meta, pipelinePlan, traceOf } from '../helpers/trace-builders';

const training = (schedule: string, stages: [number, number][]): TrainingMeta => ({
  loss: 'mse',
  optimizer: 'sgd',
  lr: 0.01,
  bucketMb: 25,
  parameters: 4,
  parameterElements: 100,
  buckets: [],
  untrained: [],
  lossCurve: [1],
  labels: 'teacher',
  pipeline: {
    schedule,
    microBatches: 8,
    stages: stages.map(([peak, bytes], stage) => ({ stage, parameters: 2, peakStoredMicroBatches: peak, compiledPeakMicroBatches: peak, peakStoredBytes: bytes })),
  },
});
const traceWith = (t: TrainingMeta | undefined) => traceOf([], [[0, 1000]], meta({ mode: 'pipeline', plan: pipelinePlan({ microBatches: 8 }), ...(t ? { training: t } : {}) }));

test('GPipe keeping 8 micro-batches on 2 stages: 1F1B would keep 2 on stage 0, and the finding says so with the bytes', () => {
  const found = scheduleMemoryRule(traceWith(training('gpipe', [[8, 8_000_000], [8, 4_000_000]])), 1000);
  assert.equal(found.length, 1);
  const f = found[0]!;
  assert.equal(f.id, 'pipeline-schedule-memory');
  assert.deepEqual(f.change.params, { schedule: '1f1b' });
  assert.match(f.message, /^GPipe keeps 8 micro-batches of activations on stage 0 \(7\.63 MiB\).*1F1B keeps 2 \(about 1\.91 MiB\)/);
  assert.equal(f.evidence.numbers['after1f1b'], 2);
  assert.equal(f.predictedStepUs, null, 'memory, not step time');
});

test('no finding for 1F1B, for GPipe with no more micro-batches than stages, or without pipeline training', () => {
  assert.deepEqual(scheduleMemoryRule(traceWith(training('1f1b', [[2, 2_000_000], [1, 500_000]])), 1000), []);
  assert.deepEqual(scheduleMemoryRule(traceWith({ ...training('gpipe', [[1, 1000], [1, 1000]]), pipeline: { schedule: 'gpipe', microBatches: 1, stages: [{ stage: 0, parameters: 1, peakStoredMicroBatches: 1, compiledPeakMicroBatches: 1, peakStoredBytes: 1000 }, { stage: 1, parameters: 1, peakStoredMicroBatches: 1, compiledPeakMicroBatches: 1, peakStoredBytes: 1000 }] } }), 1000), []);
  assert.deepEqual(scheduleMemoryRule(traceWith(undefined), 1000), []);
});
