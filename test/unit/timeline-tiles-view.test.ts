/**
 * The view's side of tiled traces (webview/src/tiles.ts), driven by the real tile server
 * (src/profiler/span-tiles.ts) in-process in place of the host: what is asked for and when,
 * how a tile becomes the spans the renderer draws, and what a tile from the host must be.
 *
 *   node --import tsx --test test/unit/timeline-tiles-view.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { SpanTiles, TILE_KEYS, tileKeyOf, type Tile } from '../../src/profiler/span-tiles';
import { allocSpans, type Trace } from '../../src/profiler/trace-format';
import { C_COMPUTE, C_OP, C_OP_ALT, CLASS_MASK, prepare, rowKindOf } from '../../webview/src/model';
import type { FromWebview } from '../../webview/src/protocol';
import { readToWebview } from '../../webview/src/protocol';
import { MERGED_NAME, TileFeed, tileError, tileServes, tileSpans, tileWindowFor, type Run } from '../../webview/src/tiles';

function trace(): Trace {
  return syntheticPipelineTrace({ stageUs: [300, 420, 380], microBatches: 4, steps: 120, commUs: 12, opsPerCompute: 16, jitter: 0.2, seed: 3 });
}

/** A run as the view holds it after a tiled `load`: the trace's header, no spans. */
function tiledRun(t: Trace, server: SpanTiles): Run {
  const strings = [...t.strings, MERGED_NAME];
  const header = { ...t, strings, spans: allocSpans(0) };
  const prepared = prepare({ ...header.spans, nLanes: t.lanes.length });
  const info = server.summary();
  prepared.extent = [info.startUs, info.endUs];
  return {
    trace: header,
    offsetUs: 0,
    prepared,
    tiled: { info, mergedName: strings.length - 1, index: new Int32Array(0), merged: new Float64Array(0), window: null, pending: null },
  };
}

describe('tiles in the view', () => {
  const t = trace();
  const server = new SpanTiles(t);
  const [x0, x1] = server.extent;

  test('a tile becomes spans: its own with their trace indices, and one per bucket standing for the spans merged there', () => {
    const run = tiledRun(t, server);
    const tile = server.tile({ laneStart: 0, laneEnd: t.lanes.length, startUs: x0, endUs: x1, pixels: 400 });
    assert.ok(tile.buckets.count > 0 && tile.spans.count > 0, 'the whole trace at 400 px has both');
    const { spans, index, merged } = tileSpans(tile, run.tiled!.mergedName);
    assert.equal(spans.count, tile.spans.count + tile.buckets.count);
    let mergedTotal = 0;
    for (let i = 0; i < spans.count; i++) {
      if (i < tile.spans.count) {
        assert.equal(index[i], tile.spans.index[i]);
        assert.equal(merged[i], 0);
        assert.equal(spans.start[i], t.spans.start[index[i]!]);
        continue;
      }
      const q = i - tile.spans.count;
      assert.equal(index[i], -1);
      assert.equal(merged[i], tile.buckets.spans[q]);
      mergedTotal += merged[i]!;
      assert.equal(spans.name[i], run.tiled!.mergedName);
      // Drawn in its row, coloured by its key, inside its bucket.
      assert.equal(rowKindOf(spans.kind[i]!, spans.parent[i]!, spans.flags[i]!), tile.buckets.row[q]);
      assert.equal(TILE_KEYS[tileKeyOf(spans.kind[i]!, spans.parent[i]!, spans.flags[i]!, spans.cause[i]!)], TILE_KEYS[tile.buckets.key[q]!]);
      assert.ok(spans.start[i]! >= tile.buckets.start[q]! && spans.start[i]! + spans.dur[i]! <= tile.buckets.start[q]! + tile.buckets.width[q]! + 1e-9);
    }
    assert.ok(mergedTotal > 0);
    // The renderer's draw classes: operators (either shade) and top-level compute both present.
    const p = prepare({ ...spans, nLanes: t.lanes.length });
    const classes = new Set(Array.from(p.cls, (c) => c & CLASS_MASK));
    assert.ok(classes.has(C_OP) || classes.has(C_OP_ALT));
    assert.ok(classes.has(C_COMPUTE));
  });

  test('a tile serves a view inside its window at a resolution no coarser than 1.5 view pixels; span-only tiles serve any zoom inside', () => {
    const w = tileWindowFor(1000, 2000, 1600);
    assert.deepEqual(w, { startUs: 0, endUs: 3000, pixels: 4800 });
    const have = { ...w, bucketed: true };
    assert.ok(tileServes(have, 1000, 2000, 1600));
    assert.ok(tileServes(have, 500, 1500, 1600), 'panned half a window');
    assert.ok(!tileServes(have, 2500, 3500, 1600), 'panned out of it');
    assert.ok(!tileServes(have, 1200, 1400, 1600), 'zoomed in 5x: its buckets are too coarse');
    assert.ok(tileServes({ ...have, bucketed: false }, 1200, 1400, 1600), 'zoomed in 5x on spans');
    assert.ok(!tileServes(null, 0, 1, 100));
  });

  test('the feed asks once per run, coalesces views that change while a tile is in flight, and applies only the answer asked for', () => {
    const run = tiledRun(t, server);
    const runs = [run];
    const sent: Extract<FromWebview, { type: 'tile' }>[] = [];
    const applied: number[] = [];
    const errors: string[] = [];
    const feed = new TileFeed((m) => sent.push(m), (r) => applied.push(r), (e) => errors.push(e));
    const answer = (m: Extract<FromWebview, { type: 'tile' }>): void => {
      const msg = readToWebview({ type: 'tileResult', id: m.id, run: m.run, tile: server.tile(m.request) });
      assert.ok(msg.ok);
      if (msg.ok && msg.message.type === 'tileResult') feed.receive(runs, msg.message);
    };
    // A narrow view, so that the whole trace comes in buckets (the span budget follows the pixels).
    const WIDTH = 100;
    const mid = (x0 + x1) / 2;
    feed.update(runs, x0, x1, WIDTH);
    feed.update(runs, x0, x1, WIDTH);
    assert.equal(sent.length, 1, 'one request in flight');
    feed.update(runs, mid - 1000, mid + 1000, WIDTH);
    assert.equal(sent.length, 1, 'views meanwhile wait');
    answer(sent[0]!);
    assert.deepEqual(applied, [0]);
    assert.equal(run.tiled!.window!.bucketed, true, 'the whole trace at 300 px is merged');
    // The pipeline has point-to-point transfers only: merged comm buckets make no collectives.
    assert.equal(run.prepared.collectives.offsets.length - 1, 0, 'no collective groups');
    assert.ok(run.trace.spans.count > 0, 'the tile is in place');
    assert.deepEqual(run.prepared.extent, [x0, x1], 'the extent stays the whole trace');
    assert.equal(sent.length, 2, 'the latest view is asked for when the answer arrives');
    assert.ok(sent[1]!.request.startUs <= mid - 1000 && sent[1]!.request.endUs >= mid + 1000);
    // A stale answer (an id not in flight) is dropped.
    feed.receive(runs, { type: 'tileResult', id: 999, run: 0, tile: server.tile(sent[0]!.request) });
    assert.deepEqual(applied, [0]);
    answer(sent[1]!);
    assert.deepEqual(applied, [0, 0]);
    // Zoomed in to a few steps: every row comes span by span, with trace indices.
    assert.equal(run.tiled!.window!.bucketed, false);
    for (let k = 0; k < run.trace.spans.count; k++) assert.equal(run.trace.spans.start[k], t.spans.start[run.tiled!.index[k]!]);
    // Panning inside the tile asks nothing.
    feed.update(runs, mid - 500, mid + 1500, WIDTH);
    assert.equal(sent.length, 2);
    assert.deepEqual(errors, []);
    assert.equal(feed.stats.received, 2);
    assert.equal(feed.stats.dropped, 1);
  });

  test('a tile that refers outside the trace or has wrong columns is refused with a reason', () => {
    const good = server.tile({ laneStart: 0, laneEnd: t.lanes.length, startUs: x0, endUs: x1, pixels: 300 });
    const n = t.lanes.length;
    const s = t.strings.length + 1;
    assert.equal(tileError(good, n, s), null);
    const lane: Tile = { ...good, spans: { ...good.spans, lane: good.spans.lane.map((l, i) => (i === 0 ? n : l)) } };
    assert.match(tileError(lane, n, s)!, /outside the trace/);
    const short: Tile = { ...good, spans: { ...good.spans, start: good.spans.start.subarray(1) } };
    assert.match(tileError(short, n, s)!, /spans\.start/);
    const wrongType = { ...good, buckets: { ...good.buckets, key: Array.from(good.buckets.key) } };
    assert.match(tileError(wrongType, n, s)!, /buckets\.key/);
    assert.match(tileError({ ...good, pixels: 0 }, n, s)!, /pixel/);
    assert.match(tileError(null, n, s)!, /not an object/);
    assert.equal(readToWebview({ type: 'tileResult', id: 1, run: 3, tile: good }).ok, false);
    assert.equal(readToWebview({ type: 'tileResult', id: 1, run: 0, error: 'no such run' }).ok, true);
    const info = server.summary();
    assert.equal(readToWebview({ type: 'load', trace: {}, tiled: [info, null] }).ok, true);
    assert.equal(readToWebview({ type: 'load', trace: {}, tiled: [{ ...info, spans: -1 }] }).ok, false);
    assert.equal(readToWebview({ type: 'load', trace: {}, tiled: [{ spans: 10, startUs: 0, endUs: 1 }] }).ok, false, 'the row summary is needed');
    assert.equal(readToWebview({ type: 'load', trace: {}, tiled: [{ ...info, rowSpans: [1.5] }] }).ok, false);
  });
});
