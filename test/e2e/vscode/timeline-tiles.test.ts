/**
 * A trace shown in tiles (protocol 3) by the packaged extension in a real VS Code
 * (code-server + headless Chromium, see harness.ts). The tile threshold is set low
 * (`parallax.timeline.tileThreshold`), so a trace of a few hundred thousand spans takes the
 * path a trace of tens of millions takes: the `load` carries no spans, the view asks the
 * extension host for the tiles of the window it shows, and draws them. A trace whose side
 * file stores its tile index (as `import` writes big traces) opens from that index; one whose
 * side file holds a span out of bounds is refused in one line, and nothing of it is shown.
 *
 *   node --import tsx --test test/e2e/vscode/timeline-tiles.test.ts
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import type { Frame } from 'playwright-core';
import type { ViewStats } from '../../../webview/src/hook-api';
import { syntheticPipelineTrace } from '../../../src/profiler/analysis/synthetic';
import { writeTrace } from '../../../src/profiler/trace-io';
import { TILE_ROW_OPS, tileRowOf } from '../../../src/profiler/span-tiles';
import type { Trace } from '../../../src/profiler/trace-format';
import { closeWorkbench, ensureVsix, hoverSpan, timelineFrame, viewStats, VsCodeHarness, workbenchIt, workbenchMissing } from './harness';

/** Spans from which a trace is shown in tiles, in this test. */
const THRESHOLD = 100_000;
/** The span whose lane is broken in the broken side file. */
const BROKEN_SPAN = 1001;

describe('a big trace in tiles, in VS Code (code-server)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  let ws = '';
  let trace: Trace;
  let flat: Trace;
  const it = workbenchIt(() => vs);

  before(
    async () => {
      if (workbenchMissing()) return;
      ws = mkdtempSync(join(tmpdir(), 'parallax-e2e-tiles-'));
      // 4 stages × 8 micro-batches × 240 steps, 24 operators per compute span: ~250k spans.
      trace = syntheticPipelineTrace({ stageUs: [300, 420, 380, 510], microBatches: 8, steps: 240, commUs: 12, opsPerCompute: 24, jitter: 0.2, seed: 5 });
      assert.ok(trace.spans.count > 2 * THRESHOLD, `${trace.spans.count} spans`);
      mkdirSync(join(ws, 'runs'));
      await writeTrace(join(ws, 'runs', 'big.parallax.json'), trace);
      // The same shape without stages, in a side file with its tile index, as `import` writes
      // big traces: opened from the stored index, the summary from its row table. And a copy
      // whose side file has one lane index beyond the trace's lanes.
      flat = syntheticPipelineTrace({ stageUs: [300, 420, 380, 510], microBatches: 8, steps: 240, commUs: 12, opsPerCompute: 24, jitter: 0.2, seed: 6 });
      flat.spans.stage.fill(-1);
      mkdirSync(join(ws, 'stored'));
      await writeTrace(join(ws, 'stored', 'flat.parallax.json'), flat, { spans: 'side-file' });
      await writeTrace(join(ws, 'stored', 'broken.parallax.json'), flat, { spans: 'side-file' });
      const side = join(ws, 'stored', 'broken.parallax.spans');
      const bytes = readFileSync(side);
      const header = JSON.parse(bytes.toString('utf8', 16, 16 + bytes.readUInt32LE(12))) as { columns: { name: string; offset: number }[] };
      bytes.writeInt32LE(flat.lanes.length, header.columns.find((c) => c.name === 'lane')!.offset + 4 * BROKEN_SPAN);
      writeFileSync(side, bytes);
      vs = await VsCodeHarness.start({ workspace: ws, vsix: ensureVsix(), name: 'tiles', settings: { 'parallax.timeline.tileThreshold': THRESHOLD } });
    },
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('the panel draws the trace from tiles the host answers; hovering a merged bucket names the span beneath; zooming asks for more; hovering shows a real span', async () => {
    const h = vs!;
    await h.runCommand('Parallax: Show Timeline');
    const frame = await timelineFrame(h, 60_000);
    let s = await viewStats(frame);
    await h.screenshot('tiles');
    assert.equal(s.error, null);
    assert.deepEqual(
      s.runs.map((r) => r.spans),
      [trace.spans.count],
      'the view reports the whole trace',
    );
    assert.ok(s.tiles, 'the run is shown in tiles');
    assert.ok(s.tiles.received >= 1, 'the host answered a tile');
    assert.ok(s.tiles.spans > 0 && s.tiles.spans < trace.spans.count / 2, `the view holds a tile (${s.tiles.spans} spans), not the trace`);
    assert.ok(s.drawn.rects.compute + s.drawn.merged.compute + s.drawn.merged.op + s.drawn.rects.op > 0, 'spans are drawn');

    // Zoomed out, operator rows come as merged buckets: hovering one names the real span
    // beneath it, asked of the extension host.
    const bucket = (await frame.evaluate(`window.__parallax.locateMerged(0, ${TILE_ROW_OPS})`)) as { x: number; y: number; lane: number; row: number; startUs: number; endUs: number } | null;
    assert.ok(bucket, 'an operator row is drawn merged');
    const box = await (await frame.frameElement()).boundingBox();
    await h.page.mouse.move(box!.x + bucket.x, box!.y + bucket.y);
    const named = await waitStats(frame, (x) => (x.tiles?.spansNamed ?? 0) > 0 && x.tooltip.visible);
    await h.screenshot('tiles-bucket-tooltip');
    const title = (await frame.locator('#px-tooltip .px-tt-title').textContent()) ?? '';
    assert.notEqual(title, 'merged spans', 'the tooltip names a span, not the bucket');
    // The name is that of an operator of the hovered lane near the bucket.
    const near = new Set<string>();
    const sp0 = trace.spans;
    // The host looks as far as the view's hit tolerance (3 CSS px) from the pointer.
    const usPerPx = (named.visible.endUs - named.visible.startUs) / named.canvas.width;
    const slack = bucket.endUs - bucket.startUs + 4 * usPerPx;
    for (let i = 0; i < sp0.count; i++) {
      if (sp0.lane[i] !== bucket.lane || tileRowOf(sp0.kind[i]!, sp0.parent[i]!, sp0.flags[i]!) !== TILE_ROW_OPS) continue;
      if (sp0.start[i] + sp0.dur[i] < bucket.startUs - slack || sp0.start[i] > bucket.endUs + slack) continue;
      near.add(trace.strings[sp0.name[i]!]!);
    }
    assert.ok(near.has(title), `"${title}" is an operator of lane ${bucket.lane} there (${[...near].slice(0, 5).join(", ")}…; bucket ${JSON.stringify(bucket)})`);
    assert.match(named.tooltip.text, /drawn merged with the other spans here/);
    await h.page.mouse.move(box!.x + 2, box!.y + 2);

    // Zoom to one step in the middle: the tile in hand is too coarse, the view asks again.
    const step = trace.steps[Math.floor(trace.steps.length / 2)]!;
    const before = s.tiles.received;
    await frame.evaluate(`window.__parallax.setView(${step.startUs}, ${step.endUs})`);
    s = await waitStats(frame, (x) => (x.tiles?.received ?? 0) > before && x.tiles!.requested === x.tiles!.received + x.tiles!.dropped);
    assert.ok(s.drawn.rects.compute > 0, 'zoomed in, compute spans are drawn one by one');
    assert.equal(s.tiles!.dropped, 0);

    // The longest top-level compute span of that step: hover it.
    let span = -1;
    const sp = trace.spans;
    for (let i = 0; i < sp.count; i++) {
      if (sp.kind[i] !== 0 || sp.parent[i] >= 0 || sp.start[i] < step.startUs || sp.start[i] + sp.dur[i] > step.endUs) continue;
      if (span < 0 || sp.dur[i] > sp.dur[span]) span = i;
    }
    assert.ok(span >= 0);
    await nextFrame(frame);
    const { text } = await hoverSpan(h, frame, span, 'tiles-tooltip');
    assert.ok(text.includes(trace.strings[sp.name[span]!]!), `tooltip: ${text}`);
    assert.ok(text.includes(`step${sp.step[span]}`), `tooltip names the step: ${text}`);
    assert.deepEqual((await viewStats(frame)).hover, { run: 0, span });

    // Pan far away: a new tile again.
    const last = trace.steps[trace.steps.length - 3]!;
    const had = (await viewStats(frame)).tiles!.received;
    await frame.evaluate(`window.__parallax.setView(${last.startUs}, ${last.endUs})`);
    s = await waitStats(frame, (x) => (x.tiles?.received ?? 0) > had);
    assert.ok(s.drawn.rects.compute > 0);
  });

  it('a trace whose side file stores its tile index opens from that index and is drawn from tiles', async () => {
    const h = vs!;
    await h.explorerContextMenu('stored/flat.parallax.json', 'Open Trace');
    const deadline = Date.now() + 60_000;
    let s = await viewStats(await timelineFrame(h, 60_000));
    while ((s.runs[0]?.spans !== flat.spans.count || !(s.tiles && s.tiles.received >= 1)) && Date.now() < deadline) {
      await h.page.waitForTimeout(250);
      s = await viewStats(await timelineFrame(h));
    }
    await h.screenshot('tiles-stored-index');
    assert.equal(s.error, null);
    assert.deepEqual(s.runs.map((r) => r.spans), [flat.spans.count]);
    assert.ok(s.tiles && s.tiles.received >= 1, 'the host answered a tile');
    assert.ok(s.drawn.rects.compute + s.drawn.merged.compute + s.drawn.merged.op + s.drawn.rects.op > 0, 'spans are drawn');
    await h.waitForLog(/parallax/i, new RegExp(`read the stored tile index of ${flat.spans.count} spans`));
  });

  it('a side file with a span out of bounds is refused in one line naming the column and span, and the view keeps what it showed', async () => {
    const h = vs!;
    await h.clearNotifications();
    await h.explorerContextMenu('stored/broken.parallax.json', 'Open Trace');
    const text = await h.waitForNotification(/broken\.parallax\.json/);
    await h.screenshot('tiles-broken-side-file');
    assert.match(text, new RegExp(`spans\\.lane\\[${BROKEN_SPAN}\\] is out of range`));
    assert.ok(!text.includes('\n'), 'one line');
    const s = await viewStats(await timelineFrame(h));
    assert.equal(s.error, null);
    assert.deepEqual(s.runs.map((r) => r.spans), [flat.spans.count], 'the trace shown before is still shown, nothing of the broken one');
  });
});

async function nextFrame(f: Frame): Promise<ViewStats> {
  return (await f.evaluate('window.__parallax.nextFrame()')) as ViewStats;
}

/** Stats once `ok` holds for them (after a drawn frame), or throws after 20 s. */
async function waitStats(f: Frame, ok: (s: ViewStats) => boolean): Promise<ViewStats> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = await nextFrame(f);
    if (ok(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out; last tile stats ${JSON.stringify(s.tiles)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
