/**
 * A trace shown in tiles (protocol 3) by the packaged extension in a real VS Code
 * (code-server + headless Chromium, see harness.ts). The tile threshold is set low
 * (`parallax.timeline.tileThreshold`), so a trace of a few hundred thousand spans takes the
 * path a trace of tens of millions takes: the `load` carries no spans, the view asks the
 * extension host for the tiles of the window it shows, and draws them.
 *
 *   node --import tsx --test test/e2e/vscode/timeline-tiles.test.ts
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import type { Frame } from 'playwright-core';
import type { ViewStats } from '../../../webview/src/hook-api';
import { syntheticPipelineTrace } from '../../../src/profiler/analysis/synthetic';
import { writeTrace } from '../../../src/profiler/trace-io';
import type { Trace } from '../../../src/profiler/trace-format';
import { closeWorkbench, ensureVsix, hoverSpan, timelineFrame, viewStats, VsCodeHarness, workbenchIt, workbenchMissing } from './harness';

/** Spans from which a trace is shown in tiles, in this test. */
const THRESHOLD = 100_000;

describe('a big trace in tiles, in VS Code (code-server)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  let ws = '';
  let trace: Trace;
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
      vs = await VsCodeHarness.start({ workspace: ws, vsix: ensureVsix(), name: 'tiles', settings: { 'parallax.timeline.tileThreshold': THRESHOLD } });
    },
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('the panel draws the trace from tiles the host answers; zooming asks for more; hovering shows a real span', async () => {
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
