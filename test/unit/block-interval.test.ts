import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockRatio, blockRatioInterval, median, ratioInterval } from '../../src/profiler/stats';

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

test('two modes: the median of block ratios reads 1.00 where the ratio of the two medians reads a mode apart', () => {
  // Both sides see the same machine block by block (6 or 10 ms steps), but the baseline got
  // one fast block more: its median is a fast step, the run's a slow one.
  const base = series([6000, 6000, 10000, 6000, 10000, 6000, 10000, 10000, 6000], 20);
  const run = series([6000, 6000, 10000, 10000, 10000, 6000, 10000, 10000, 6000], 20, 0.4);
  const blocks = Array.from({ length: 9 }, () => 20);
  // Blocks 0–2 and 4–8 paired alike, block 3 a mode apart.
  const pooled = median(base) / median(run);
  assert.ok(pooled < 0.65, `ratio of medians ${pooled}`);
  const paired = blockRatio(base, run, blocks)!;
  assert.ok(Math.abs(paired - 1) < 0.02, `median of block ratios ${paired}`);
  const iv = blockRatioInterval(base, run, blocks);
  assert.ok(iv.lo <= 1 && iv.hi >= 1 && iv.lo > 0.9, `[${iv.lo}, ${iv.hi}]`);
});

test('blockRatio: null where the blocks do not cover both series, the blocks\' median otherwise', () => {
  const a = series([1000, 1200, 1100], 10);
  const b = series([1000, 1000, 1000], 10, 0.1);
  assert.equal(blockRatio(a, b, [10, 10]), null);
  assert.equal(blockRatio(a, b, [30]), null);
  const r = blockRatio(a, b, [10, 10, 10])!;
  assert.ok(Math.abs(r - 1.1) < 0.02, `${r}`);
});
