/**
 * Brute-force checks of span tiles (src/profiler/span-tiles.ts), shared by the tile server's
 * tests and the stored index's: the spans a tile returns one by one are exactly the row's
 * spans in the window, and each merged bucket has the coverage, span count and dominant key
 * of the spans on the same grid.
 */
import assert from 'node:assert/strict';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { N_TILE_KEYS, TILE_ROWS_PER_LANE, overlaps, tileKeyOf, tileRowOf, type Tile } from '../../src/profiler/span-tiles';
import { SPAN_COLUMNS, SpanFlag, type Trace } from '../../src/profiler/trace-format';

/**
 * A pipeline of 4 stages with operators and transfers: ~86k spans, rows of up to ~20k, so
 * the windows below read pyramid levels 0 to 4 and also bin spans finer than level 0.
 */
export function bigTrace(): Trace {
  return syntheticPipelineTrace({ stageUs: [300, 420, 380, 510], microBatches: 4, steps: 200, commUs: 12, opsPerCompute: 24, jitter: 0.3, seed: 7 });
}

/** Row index of span i. */
export function rowIndex(t: Trace, i: number): number {
  const s = t.spans;
  return s.lane[i] * TILE_ROWS_PER_LANE + tileRowOf(s.kind[i], s.parent[i], s.flags[i]);
}

const rowLists = new WeakMap<Trace, number[][]>();
/** The spans of row r, in index order (brute force reads them all). */
function rowSpans(t: Trace, r: number): number[] {
  let lists = rowLists.get(t);
  if (!lists) {
    lists = Array.from({ length: t.lanes.length * TILE_ROWS_PER_LANE }, () => []);
    for (let i = 0; i < t.spans.count; i++) lists[rowIndex(t, i)]!.push(i);
    rowLists.set(t, lists);
  }
  return lists[r]!;
}

/** Checks the span part of a tile against every span of the rows it returned span by span. */
export function checkSpans(t: Trace, tile: Tile, lanes: [number, number]): Set<number> {
  const s = t.spans;
  const got = tile.spans;
  const rowsWithSpans = new Set<number>();
  const seen = new Set<number>();
  for (let k = 0; k < got.count; k++) {
    const i = got.index[k];
    assert.ok(!seen.has(i), `span ${i} returned twice`);
    seen.add(i);
    rowsWithSpans.add(rowIndex(t, i));
    assert.ok(overlaps(s.start[i], s.dur[i], tile.startUs, tile.endUs), `span ${i} is outside the window`);
    for (const c of SPAN_COLUMNS) {
      if (c === 'parent' || c === 'flags') continue;
      assert.equal(got[c][k], s[c][i], `column ${c} of span ${i}`);
    }
    const p = got.parent[k];
    if (p >= 0) assert.equal(got.index[p], s.parent[i], `parent of span ${i}`);
    else if (s.parent[i] >= 0) assert.ok(got.flags[k] & SpanFlag.op, `span ${i} lost its parent and must stay an operator`);
    assert.equal(tileRowOf(got.kind[k], got.parent[k], got.flags[k]), tileRowOf(s.kind[i], s.parent[i], s.flags[i]), `row of span ${i}`);
  }
  // Every span of those rows in the window is there.
  for (let i = 0; i < s.count; i++) {
    if (s.lane[i] < lanes[0] || s.lane[i] >= lanes[1]) continue;
    if (!rowsWithSpans.has(rowIndex(t, i))) continue;
    if (overlaps(s.start[i], s.dur[i], tile.startUs, tile.endUs)) assert.ok(seen.has(i), `span ${i} is missing from the tile`);
  }
  return rowsWithSpans;
}

/** Checks every merged bucket against a brute-force pass on the same grid. */
export function checkBuckets(t: Trace, tile: Tile): Set<number> {
  const s = t.spans;
  const b = tile.buckets;
  const rows = new Set<number>();
  for (let q = 0; q < b.count; q++) {
    const r = b.lane[q] * TILE_ROWS_PER_LANE + b.row[q];
    rows.add(r);
    const w = b.width[q];
    const lo = b.start[q];
    const hi = lo + w;
    assert.equal(Math.log2(w) % 1, 0, 'bucket widths are powers of two');
    assert.equal(lo / w, Math.floor(lo / w), 'buckets sit on multiples of their width');
    assert.ok(w <= (tile.endUs - tile.startUs) / tile.pixels || b.width[q] === b.width[0], 'buckets are no wider than a pixel (unless the coarsest level)');
    const cover = new Float64Array(N_TILE_KEYS);
    let count = 0;
    let emulated = 0;
    for (const i of rowSpans(t, r)) {
      const st = s.start[i];
      const e = st + s.dur[i];
      if (Math.floor(st / w) * w === lo) count++;
      const c = Math.min(e, hi) - Math.max(st, lo);
      if (c > 0) {
        cover[tileKeyOf(s.kind[i], s.parent[i], s.flags[i], s.cause[i])] += c;
        if (s.flags[i] & SpanFlag.emulated) emulated += c;
      }
    }
    const total = cover.reduce((a, x) => a + x, 0);
    const tol = 1e-5 * Math.max(w, total);
    assert.equal(b.spans[q], count, `spans starting in bucket ${q}`);
    assert.ok(Math.abs(b.cover[q] - total) <= tol, `coverage of bucket ${q}: ${b.cover[q]} vs ${total}`);
    assert.ok(Math.abs(b.emulated[q] - emulated) <= tol, `emulated coverage of bucket ${q}`);
    const max = Math.max(...cover);
    if (max > 0) assert.ok(Math.abs(cover[b.key[q]] - max) <= tol, `bucket ${q}: key ${b.key[q]} covers ${cover[b.key[q]]}, the most is ${max}`);
  }
  // No non-empty bucket is left out: the brute-force coverage of each bucketed row in the
  // window equals the sum over its buckets.
  for (const r of rows) {
    let sumTile = 0;
    let w = 0;
    for (let q = 0; q < b.count; q++) {
      if (b.lane[q] * TILE_ROWS_PER_LANE + b.row[q] !== r) continue;
      sumTile += b.cover[q];
      w = b.width[q];
    }
    // The grid's buckets that the window touches.
    const lo = Math.floor(tile.startUs / w) * w;
    const hi = Math.ceil(tile.endUs / w) * w;
    let brute = 0;
    for (const i of rowSpans(t, r)) {
      const c = Math.min(s.start[i] + s.dur[i], hi) - Math.max(s.start[i], lo);
      if (c > 0) brute += c;
    }
    assert.ok(Math.abs(sumTile - brute) <= 1e-5 * Math.max(1, brute), `row ${r}: buckets cover ${sumTile}, spans ${brute}`);
  }
  return rows;
}
