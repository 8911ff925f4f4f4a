import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockRatioInterval, ratioInterval } from '../../src/profiler/stats';

/** Steps of `blocks` blocks, each `perBlock` long, at `level[i]` µs with ±1 % spread inside a block. */
function series(levels: number[], perBlock: number, phase = 0): number[] {
  const out: number[] = [];
  levels.forEach((lv, b) => {
    for (let i = 0; i < perBlock; i++) out.push(lv * (1 + 0.01 * Math.sin(i * 1.7 + b + phase)));
  });
  return out;
}

test('paired blocks that drift apart give an interval as wide as the drift; steps resampled alone claim a precision the blocks do not have', () => {
  // The baseline and the run agree in blocks 0 and 2 and differ ±6 % in 1 and 3, the way
  // a core's state changes between blocks: the ratio is not known better than that.
  const base = series([1000, 1000, 1000, 1000], 300);
  const run = series([1000, 1060, 1000, 940], 300, 0.5);
  const blocks = [300, 300, 300, 300];
  const iid = ratioInterval(base, run);
  const blk = blockRatioInterval(base, run, blocks);
  assert.ok(iid.hi - iid.lo < 0.02, `steps alone: [${iid.lo}, ${iid.hi}]`);
  assert.ok(blk.hi - blk.lo > 0.04, `blocks: [${blk.lo}, ${blk.hi}]`);
  assert.ok(blk.lo <= 1 && blk.hi >= 1, `1.00 inside [${blk.lo}, ${blk.hi}]`);
});

test('a bias every block shares stays outside the block interval', () => {
  // The run 5 % slower in every block, whatever the blocks' own levels.
  const base = series([1000, 1100, 950, 1050], 200);
  const run = series([1050, 1155, 997.5, 1102.5], 200, 0.3);
  const blk = blockRatioInterval(base, run, [200, 200, 200, 200]);
  assert.ok(blk.hi < 0.97 && blk.lo > 0.93, `[${blk.lo}, ${blk.hi}]`);
});

test('blocks that do not cover both series (or a single block) fall back to resampling steps', () => {
  const a = series([1000, 1000], 50);
  const b = series([1000, 1000], 50, 0.2);
  assert.deepEqual(blockRatioInterval(a, b, [50, 49]), ratioInterval(a, b));
  assert.deepEqual(blockRatioInterval(a, b, [100]), ratioInterval(a, b));
  assert.deepEqual(blockRatioInterval(a, b.slice(1), [50, 50]), ratioInterval(a, b.slice(1)));
});

test('the interval is deterministic for the same samples', () => {
  const a = series([900, 1000, 1100], 40);
  const b = series([1000, 1000, 1000], 40, 1);
  assert.deepEqual(blockRatioInterval(a, b, [40, 40, 40]), blockRatioInterval(a, b, [40, 40, 40]));
});
