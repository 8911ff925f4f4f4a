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
import { SpanTiles, TILE_KEYS, TILE_ROW_OPS, tileKeyOf, type Tile } from '../../src/profiler/span-tiles';
import { allocSpans, type Trace } from '../../src/profiler/trace-format';
import { C_COMPUTE, C_OP, C_OP_ALT, CLASS_MASK, prepare, rowKindOf } from '../../webview/src/model';
import type { FromWebview } from '../../webview/src/protocol';
import { readToWebview } from '../../webview/src/protocol';
import { LANE_MARGIN, MERGED_NAME, SpanAtFeed, TileFeed, spanColumnsError, tileError, tileLanesFor, tileServes, tileSpans, tileWindowFor, type Run, type SpanAtAsk } from '../../webview/src/tiles';

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
    const have = { ...w, laneStart: 2, laneEnd: 6, bucketed: true };
    assert.ok(tileServes(have, 1000, 2000, 1600, [3, 5]));
    assert.ok(tileServes(have, 500, 1500, 1600, [3, 5]), 'panned half a window');
    assert.ok(!tileServes(have, 2500, 3500, 1600, [3, 5]), 'panned out of it');
    assert.ok(!tileServes(have, 1200, 1400, 1600, [3, 5]), 'zoomed in 5x: its buckets are too coarse');
    assert.ok(tileServes({ ...have, bucketed: false }, 1200, 1400, 1600, [3, 5]), 'zoomed in 5x on spans');
    assert.ok(!tileServes(have, 1000, 2000, 1600, [5, 7]), 'scrolled to lanes it does not hold');
    assert.ok(tileServes(have, 1000, 2000, 1600, [2, 6]));
    assert.ok(!tileServes(null, 0, 1, 100, null));
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
    const all = (): [number, number] => [0, t.lanes.length];
    feed.update(runs, x0, x1, WIDTH, all);
    feed.update(runs, x0, x1, WIDTH, all);
    assert.equal(sent.length, 1, 'one request in flight');
    feed.update(runs, mid - 1000, mid + 1000, WIDTH, all);
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
    feed.update(runs, mid - 500, mid + 1500, WIDTH, all);
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

  test('tiles name only the lanes on screen and a margin; after scrolling, the next request names the lanes then in view', () => {
    // Eight stages: eight lanes, more than a screen shows here.
    const t8 = syntheticPipelineTrace({ stageUs: [300, 420, 380, 510, 300, 420, 380, 510], microBatches: 4, steps: 40, commUs: 12, opsPerCompute: 8, jitter: 0.2, seed: 9 });
    const s8 = new SpanTiles(t8);
    const run = tiledRun(t8, s8);
    const runs = [run];
    const sent: Extract<FromWebview, { type: 'tile' }>[] = [];
    const feed = new TileFeed((m) => sent.push(m), () => undefined, (e) => assert.fail(e));
    const answer = (m: Extract<FromWebview, { type: 'tile' }>): void => {
      const msg = readToWebview({ type: 'tileResult', id: m.id, run: m.run, tile: s8.tile(m.request) });
      if (msg.ok && msg.message.type === 'tileResult') feed.receive(runs, msg.message);
    };
    const [a0, a1] = s8.extent;
    let onScreen: [number, number] = [0, 2];
    feed.update(runs, a0, a1, 800, () => onScreen);
    assert.equal(sent.length, 1);
    assert.deepEqual([sent[0]!.request.laneStart, sent[0]!.request.laneEnd], [0, 2 + LANE_MARGIN], 'lanes 0–1 on screen, and the margin below');
    answer(sent[0]!);
    const lanesHeld = new Set(Array.from(run.trace.spans.lane.subarray(0, run.trace.spans.count)));
    assert.ok([...lanesHeld].every((l) => l < 2 + LANE_MARGIN), `the tile holds lanes ${[...lanesHeld].join(',')}`);
    // Scrolling a lane further stays inside the margin: nothing is asked.
    onScreen = [1, 3];
    feed.update(runs, a0, a1, 800, () => onScreen);
    assert.equal(sent.length, 1);
    // Scrolled to the bottom: the next request names lanes 5–7 and the margin above, not lane 0.
    onScreen = [6, 8];
    feed.update(runs, a0, a1, 800, () => onScreen);
    assert.equal(sent.length, 2);
    assert.deepEqual([sent[1]!.request.laneStart, sent[1]!.request.laneEnd], [6 - LANE_MARGIN, 8]);
    answer(sent[1]!);
    assert.equal(run.tiled!.window!.laneStart, 6 - LANE_MARGIN);
    for (let k = 0; k < run.trace.spans.count; k++) assert.ok(run.trace.spans.lane[k]! >= 6 - LANE_MARGIN, 'no span of a lane far off screen');
    // Many lanes on screen: the margin is half of them.
    assert.deepEqual(tileLanesFor([10, 30], 100), [0, 40]);
    assert.deepEqual(tileLanesFor(null, 100), [0, 2 * LANE_MARGIN]);
  });

  test('hovering a merged bucket asks the host for the span beneath, one request at a time, and shows only the latest answer', () => {
    const run = tiledRun(t, server);
    const runs = [run];
    const tile = server.tile({ laneStart: 0, laneEnd: t.lanes.length, startUs: x0, endUs: x1, pixels: 200 });
    run.tiled!.merged = new Float64Array(1);
    const sent: Extract<FromWebview, { type: 'spanAt' }>[] = [];
    const found: { ask: SpanAtAsk; name: string }[] = [];
    const feed = new SpanAtFeed((m) => sent.push(m), (ask, span) => found.push({ ask, name: t.strings[span.name[0]!]! }));
    // A bucket of an operator row: the point in its middle.
    let q = 0;
    while (tile.buckets.row[q] !== TILE_ROW_OPS) q++;
    const at = tile.buckets.start[q]! + tile.buckets.width[q]! / 2;
    const ask = (timeUs: number): SpanAtAsk => ({ run: 0, span: 7, request: { lane: tile.buckets.lane[q]!, row: TILE_ROW_OPS, timeUs, toleranceUs: 5 } });
    const reply = (m: Extract<FromWebview, { type: 'spanAt' }>): void => {
      const msg = readToWebview({ type: 'spanAtResult', id: m.id, run: m.run, span: server.spanAt(m.request) });
      assert.ok(msg.ok, 'the answer passes the protocol check');
      if (msg.ok && msg.message.type === 'spanAtResult') feed.receive(runs, msg.message);
    };
    const first = ask(at);
    feed.ask(first);
    const moved = ask(at + 1);
    feed.ask(moved);
    assert.equal(sent.length, 1, 'one request in flight; the pointer moved meanwhile');
    reply(sent[0]!);
    assert.equal(found.length, 0, 'the answer to a point the pointer left is not shown');
    assert.equal(sent.length, 2, 'the latest point is asked when the answer arrives');
    reply(sent[1]!);
    assert.equal(found.length, 1);
    const want = server.spanAt(moved.request);
    assert.equal(found[0]!.name, t.strings[want.name[0]!], 'the span the host names');
    assert.notEqual(found[0]!.name, MERGED_NAME);
    // Cancelled (the pointer left): the answer is dropped.
    feed.ask(ask(at + 2));
    feed.cancel();
    reply(sent[2]!);
    assert.equal(found.length, 1);
    // Span columns that refer outside the trace are refused.
    const bad = { ...want, lane: Int32Array.of(t.lanes.length) };
    assert.match(spanColumnsError(bad, t.lanes.length, t.strings.length)!, /outside the trace/);
    feed.ask(ask(at + 3));
    feed.receive(runs, { type: 'spanAtResult', id: sent[3]!.id, run: 0, span: bad });
    assert.equal(found.length, 1);
    assert.equal(readToWebview({ type: 'spanAtResult', id: 1, run: 0 }).ok, false);
  });
});
