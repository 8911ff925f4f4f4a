/**
 * Pure parts of the timeline view: the compare view's step alignment (webview/src/steps.ts)
 * and the check of host messages carrying span-query answers (webview/src/protocol.ts).
 *
 *   node --import tsx --test test/unit/timeline-view-logic.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { alignAtStep, stepDiffs } from '../../webview/src/steps';
import { readToWebview } from '../../webview/src/protocol';

const win = (index: number, startUs: number, endUs: number) => ({ index, startUs, endUs });

describe('compare view by step', () => {
  test('steps are matched by index, not by position, and each has both lengths', () => {
    const a = [win(0, 0, 100), win(1, 100, 250), win(2, 250, 300)];
    // B lost its step 0 (say, a longer warm-up) and ran step 2 slower.
    const b = [win(1, 5000, 5120), win(2, 5120, 5220), win(3, 5220, 5300)];
    assert.deepEqual(stepDiffs(a, b), [
      { index: 1, aUs: 150, bUs: 120 },
      { index: 2, aUs: 50, bUs: 100 },
    ]);
    assert.deepEqual(stepDiffs(a, []), []);
  });

  test('aligning at a step puts its start at view time 0 in both runs', () => {
    const run = (steps: ReturnType<typeof win>[]) => ({ trace: { steps }, offsetUs: 0 });
    const runs = [run([win(0, 10, 110), win(1, 110, 260)]), run([win(1, 7000, 7100)])];
    assert.deepEqual(alignAtStep(runs, 1), { v0: 0, v1: 150 });
    assert.deepEqual(
      runs.map((r) => r.offsetUs),
      [110, 7000],
    );
    assert.equal(alignAtStep(runs, 9), null);
  });
});

describe('span-query answers from the host', () => {
  test('a result or an error with an id is accepted; anything else is refused with a reason', () => {
    const ok = readToWebview({ type: 'queryResult', id: 3, result: { type: 'search', text: 'x', count: 0, hits: [] } });
    assert.equal(ok.ok, true);
    assert.equal(readToWebview({ type: 'queryResult', id: 4, error: 'no run 1 is shown' }).ok, true);
    for (const [m, why] of [
      [{ type: 'queryResult', result: { type: 'search', count: 0, hits: [] } }, /id/],
      [{ type: 'queryResult', id: 1, result: { type: 'opStats' } }, /result/],
      [{ type: 'queryResult', id: 1, result: null }, /result/],
    ] as const) {
      const r = readToWebview(m);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, why);
    }
  });
});
