import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TIMED_STEPS, timedStepsFor } from '../../src/runtime/runner/runner';
import { stillSettling, WARMUP_SETTLE_TOL } from '../../src/runtime/runner/workers';

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

test('warm-up settles: it goes on while each window beats every earlier one by more than the tolerance', () => {
  // One window says nothing yet.
  assert.equal(stillSettling([]), true);
  assert.equal(stillSettling([0.9]), true);
  // silero VAD v5, pipeline cpu:2, 200 ms windows: still falling, then flat.
  const v5 = [0.9, 0.84, 0.757, 0.68, 0.69];
  const goesOn = v5.map((_, i) => stillSettling(v5.slice(0, i + 1)));
  assert.deepEqual(goesOn, [true, true, true, true, false]);
  // Flat from the start (one thread alone): two windows.
  assert.equal(stillSettling([0.385, 0.391]), false);
  // A slow window does not reset the comparison: the next must beat the best before it.
  assert.equal(stillSettling([0.8, 0.9, 0.79]), false);
  assert.equal(stillSettling([0.8, 0.9, 0.7]), true);
  // Within the tolerance counts as settled.
  assert.equal(stillSettling([1, 1 - WARMUP_SETTLE_TOL / 2]), false);
  assert.equal(stillSettling([1, 1 - 2 * WARMUP_SETTLE_TOL]), true);
});
