/**
 * The view's reading of a pipeline training summary's stored activations
 * (webview/src/stored-activations.ts, which the summary view reads `training` with): what the summary panel shows per stage, and nothing for a summary
 * without them or with malformed ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { storedActivationsView } from '../../webview/src/stored-activations';

const pipeline = {
  schedule: '1f1b',
  microBatches: 8,
  stages: [
    { stage: 0, parameters: 5, peakStoredMicroBatches: 2, compiledPeakMicroBatches: 2, peakStoredBytes: 3_000_000 },
    { stage: 1, parameters: 7, peakStoredMicroBatches: 1, compiledPeakMicroBatches: 1, peakStoredBytes: 1_000_000 },
  ],
};

test('a pipeline training summary gives the schedule and each stage’s peak stored micro-batches, bound and bytes', () => {
  assert.deepEqual(storedActivationsView({ loss: 'mse', pipeline }), {
    schedule: '1f1b',
    microBatches: 8,
    stages: [
      { stage: 0, peakMicroBatches: 2, bound: 2, bytes: 3_000_000 },
      { stage: 1, peakMicroBatches: 1, bound: 1, bytes: 1_000_000 },
    ],
  });
});

test('no stored activations for data-parallel training, inference, or a malformed record', () => {
  assert.equal(storedActivationsView({ loss: 'mse', buckets: 1 }), null);
  assert.equal(storedActivationsView(undefined), null);
  assert.equal(storedActivationsView({ pipeline: { schedule: 'gpipe', stages: [{ stage: 'zero' }] } }), null);
});
