import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TIMED_STEPS, timedStepsFor } from '../../src/runtime/runner/runner';

test('timed steps: enough of the warm-up step time to last the minimum, never fewer than asked, at most the cap', () => {
  // 0.35 ms steps for 500 ms: 1429 steps.
  assert.equal(timedStepsFor(20, 500, 0.35), 1429);
  // Long steps already last the minimum: the asked count.
  assert.equal(timedStepsFor(20, 500, 40), 20);
  assert.equal(timedStepsFor(20, 500, 25), 20);
  assert.equal(timedStepsFor(20, 500, 24), 21);
  // Microsecond steps stop at the cap.
  assert.equal(timedStepsFor(20, 500, 0.001), MAX_TIMED_STEPS);
  // More asked than the cap: the asked count.
  assert.equal(timedStepsFor(MAX_TIMED_STEPS + 5, 500, 0.001), MAX_TIMED_STEPS + 5);
});

test('timed steps: no minimum, or no warm-up estimate (training, the capture check), keeps the asked count', () => {
  assert.equal(timedStepsFor(20, undefined, 0.3), 20);
  assert.equal(timedStepsFor(20, 0, 0.3), 20);
  assert.equal(timedStepsFor(20, 500, null), 20);
  assert.equal(timedStepsFor(20, 500, 0), 20);
  assert.equal(timedStepsFor(20, 500, Number.NaN), 20);
});
