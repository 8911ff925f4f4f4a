/**
 * Span tiles (src/profiler/span-tiles.ts): what the host answers a view that shows a big trace
 * in tiles. Every tile is checked against a brute-force pass over all spans of the trace: the
 * spans returned one by one are exactly the row's spans in the window, and each merged bucket
 * has the coverage, span count and dominant key of the spans on the same grid.
 *
 *   node --import tsx --test test/unit/span-tiles.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanTiles, TILE_ROWS_PER_LANE, buildSpanTiles } from '../../src/profiler/span-tiles';
import { SPAN_COLUMNS, SpanFlag } from '../../src/profiler/trace-format';
import { bigTrace, checkBuckets, checkSpans, rowIndex } from '../helpers/tile-checks';

describe('span tiles', () => {
  const t = bigTrace();
  const tiles = new SpanTiles(t);
  const [x0, x1] = tiles.extent;
  const lanes = t.lanes.length;

  test('the summary has the extent, the span count and each row\'s spans and stages', () => {
    let lo = Infinity;
    let hi = -Infinity;
    const nRows = lanes * TILE_ROWS_PER_LANE;
    let flags = 0;
    const rowSpans = new Array<number>(nRows).fill(0);
    const stages = Array.from({ length: nRows }, () => new Set<number>());
    for (let i = 0; i < t.spans.count; i++) {
      lo = Math.min(lo, t.spans.start[i]);
      hi = Math.max(hi, t.spans.start[i] + t.spans.dur[i]);
      rowSpans[rowIndex(t, i)]!++;
      flags |= t.spans.flags[i];
      if (t.spans.stage[i] >= 0) stages[rowIndex(t, i)]!.add(t.spans.stage[i]);
    }
    const s = tiles.summary();
    assert.deepEqual(s, {
      spans: t.spans.count,
      startUs: lo,
      endUs: hi,
      rowSpans,
      rowStageMin: stages.map((x) => (x.size ? Math.min(...x) : -1)),
      rowStageMax: stages.map((x) => (x.size ? Math.max(...x) : -1)),
      flags,
    });
    assert.ok(flags & SpanFlag.op, 'the operator flag is among them');
    assert.ok(rowSpans.every((n) => n > 0), 'every row of the pipeline has spans');
    assert.deepEqual(s.rowStageMin.filter((_, r) => r % TILE_ROWS_PER_LANE === 0), [0, 1, 2, 3], 'lane k runs stage k');
  });

  test('zoomed out, dense rows come back as buckets that match a brute-force pass', () => {
    const tile = tiles.tile({ laneStart: 0, laneEnd: lanes, startUs: x0, endUs: x1, pixels: 400 });
    assert.ok(tile.bucketRows > 0, 'some rows are bucketed');
    const bucketRows = checkBuckets(t, tile);
    const spanRows = checkSpans(t, tile, [0, lanes]);
    assert.equal(bucketRows.size, tile.bucketRows);
    assert.equal(spanRows.size, tile.spanRows);
    for (const r of bucketRows) assert.ok(!spanRows.has(r), `row ${r} is either spans or buckets`);
    // Bounded by the pixels: buckets are the largest power of two not above a pixel, so at
    // most two per pixel (plus the two edges) per row.
    assert.ok(tile.buckets.count <= tile.bucketRows * (2 * 400 + 2), `${tile.buckets.count} buckets`);
  });

  for (const [label, frac, pixels] of [
    ['the whole trace (coarse pyramid levels)', 1, 30],
    ['an eighth of the trace', 1 / 8, 300],
    ['a sixty-fourth (finer than the pyramid: binned from spans)', 1 / 64, 40],
    ['a few steps, one by one', 1 / 40, 1600],
  ] as const) {
    test(`a window of ${label} is exact at ${pixels} px`, () => {
      const w = (x1 - x0) * frac;
      const a = frac === 1 ? x0 : x0 + (x1 - x0) * 0.37;
      const tile = tiles.tile({ laneStart: 0, laneEnd: lanes, startUs: a, endUs: a + w, pixels });
      const rows = checkBuckets(t, tile);
      const spanRows = checkSpans(t, tile, [0, lanes]);
      assert.equal(rows.size + spanRows.size, tile.bucketRows + tile.spanRows);
      const budget = Math.max(256, 2 * pixels);
      for (const r of spanRows) {
        let n = 0;
        for (let k = 0; k < tile.spans.count; k++) if (rowIndex(t, tile.spans.index[k]) === r) n++;
        assert.ok(n <= budget, `row ${r} returned ${n} spans, over the budget ${budget}`);
      }
      if (pixels === 1600) assert.equal(tile.bucketRows, 0, 'zoomed in, every row comes span by span');
    });
  }

  test('a lane range returns those lanes only', () => {
    const tile = tiles.tile({ laneStart: 1, laneEnd: 3, startUs: x0, endUs: x1, pixels: 200 });
    for (let k = 0; k < tile.spans.count; k++) assert.ok([1, 2].includes(tile.spans.lane[k]));
    for (let q = 0; q < tile.buckets.count; q++) assert.ok([1, 2].includes(tile.buckets.lane[q]));
    assert.ok(tile.spans.count + tile.buckets.count > 0);
    checkSpans(t, tile, [1, 3]);
    checkBuckets(t, tile);
  });

  test('a window outside the trace is empty, and a backwards one is refused', () => {
    const tile = tiles.tile({ laneStart: 0, laneEnd: lanes, startUs: x1 + 1000, endUs: x1 + 2000, pixels: 100 });
    assert.equal(tile.spans.count + tile.buckets.count, 0);
    assert.throws(() => tiles.tile({ laneStart: 0, laneEnd: lanes, startUs: 10, endUs: 5, pixels: 100 }), /startUs < endUs/);
  });

  test('the build in slices (pausing between them) answers as the one-go build does', async () => {
    let pauses = 0;
    const sliced = await buildSpanTiles(t, async () => {
      pauses++;
    });
    assert.ok(pauses >= t.lanes.length * TILE_ROWS_PER_LANE, `${pauses} pauses`);
    const req = { laneStart: 0, laneEnd: lanes, startUs: x0, endUs: x1, pixels: 300 };
    assert.deepEqual(sliced.tile(req), tiles.tile(req));
    assert.deepEqual(sliced.summary(), tiles.summary());
  });

  test('overlapping spans in one row (out of start order in the file) are found', () => {
    // A copy of the trace with the columns of each lane's state row written backwards.
    const u = bigTrace();
    const n = u.spans.count;
    const perm = Array.from({ length: n }, (_, i) => n - 1 - i);
    const inv = new Int32Array(n);
    perm.forEach((from, to) => (inv[from] = to));
    for (const c of SPAN_COLUMNS) {
      const src = u.spans[c].slice();
      for (let k = 0; k < n; k++) (u.spans[c] as Float64Array)[k] = src[perm[k]];
    }
    for (let k = 0; k < n; k++) if (u.spans.parent[k] >= 0) u.spans.parent[k] = inv[u.spans.parent[k]];
    const tl = new SpanTiles(u);
    const a = x0 + (x1 - x0) * 0.5;
    const tile = tl.tile({ laneStart: 0, laneEnd: lanes, startUs: a, endUs: a + (x1 - x0) / 50, pixels: 1600 });
    assert.ok(tile.spans.count > 0);
    checkSpans(u, tile, [0, lanes]);
  });
});

describe('the span under a point (spanAt)', () => {
  const t = bigTrace();
  const tiles = new SpanTiles(t);
  const [x0, x1] = tiles.extent;
  const s = t.spans;

  /** The brute-force pick over every span of the row: containing spans by duration, then nearest. */
  function bestScore(lane: number, row: number, at: number, tol: number): number {
    let best = Infinity;
    for (let i = 0; i < s.count; i++) {
      if (rowIndex(t, i) !== lane * TILE_ROWS_PER_LANE + row) continue;
      const e = s.start[i] + s.dur[i];
      const dist = at < s.start[i] ? s.start[i] - at : at > e ? at - e : 0;
      if (dist > tol) continue;
      best = Math.min(best, dist > 0 ? 1e15 + dist : s.dur[i]);
    }
    return best;
  }

  test('names the span a brute-force hit test picks, at points over every row', () => {
    let found = 0;
    let rng = 11;
    const rnd = (): number => ((rng = (rng * 1103515245 + 12345) >>> 0) / 4294967296);
    for (let k = 0; k < 120; k++) {
      const lane = k % t.lanes.length;
      const row = Math.floor(k / t.lanes.length) % TILE_ROWS_PER_LANE;
      const at = x0 + (x1 - x0) * rnd();
      const tol = k % 2 ? 0.5 : 40;
      const got = tiles.spanAt({ lane, row, timeUs: at, toleranceUs: tol });
      const want = bestScore(lane, row, at, tol);
      if (want === Infinity) {
        assert.equal(got.count, 0, `nothing within ${tol} µs of ${at} on lane ${lane} row ${row}`);
        continue;
      }
      assert.equal(got.count, 1);
      const i = got.index[0];
      found++;
      assert.equal(rowIndex(t, i), lane * TILE_ROWS_PER_LANE + row, 'the span is in the row asked');
      const e = s.start[i] + s.dur[i];
      const dist = at < s.start[i] ? s.start[i] - at : at > e ? at - e : 0;
      assert.equal(dist > 0 ? 1e15 + dist : s.dur[i], want, `span ${i} is the pick`);
      for (const c of SPAN_COLUMNS) if (c !== 'parent' && c !== 'flags') assert.equal(got[c][0], s[c][i], `column ${c}`);
      if (s.parent[i] >= 0) assert.ok(got.flags[0] & SpanFlag.op, 'an operator stays one without its parent');
    }
    assert.ok(found > 60, `${found} points had a span`);
  });

  test('a lane or row the trace lacks names nothing; a time that is not a number is refused', () => {
    assert.equal(tiles.spanAt({ lane: t.lanes.length, row: 0, timeUs: x0, toleranceUs: 10 }).count, 0);
    assert.equal(tiles.spanAt({ lane: 0, row: 7, timeUs: x0, toleranceUs: 10 }).count, 0);
    assert.equal(tiles.spanAt({ lane: 0, row: 0, timeUs: x1 + 1e6, toleranceUs: 10 }).count, 0);
    assert.throws(() => tiles.spanAt({ lane: 0, row: 0, timeUs: NaN, toleranceUs: 1 }), /numbers/);
  });
});
