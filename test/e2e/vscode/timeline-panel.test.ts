/**
 * The timeline panel of the packaged extension in a real VS Code (code-server + headless
 * Chromium, see harness.ts): "Parallax: Show Timeline" on a trace the built CLI wrote into
 * the workspace's output folder, one lane per device drawn, a tooltip on hover, the operator
 * table and search, the panel restored by "Developer: Reload Window", a corrupt trace
 * reported once, by name, and a PyTorch profiler trace opened from the explorer (imported,
 * written to the output folder, shown).
 *
 *   node --import tsx --test test/e2e/vscode/timeline-panel.test.ts
 *
 * The view is read through its test hook (`window.__parallax`, webview/src/hook-api.ts) by
 * `frame.evaluate`, which DevTools runs outside the page's CSP; the lane checks read the DOM
 * as well, so they hold whatever the hook reports. Screenshots go to test-artifacts/vscode/.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import type { Frame } from 'playwright-core';
import type { ViewStats } from '../../../webview/src/hook-api';
import { readTrace, writeTrace } from '../../../src/profiler/trace-io';
import { TraceBuilder, type Trace } from '../../../src/profiler/trace-format';
import { runCli } from '../../helpers/cli';
import { kinetoFixture } from '../../helpers/kineto';
import { importReport } from '../../../src/profiler/import/report';
import { meta } from '../../helpers/trace-builders';
import { closeWorkbench, ensureVsix, hoverSpan, timelineFrame, viewStats, VsCodeHarness, workbenchIt, workbenchMissing, workspaceWithDemoModel } from './harness';

const DEMO = { layers: 4, hidden: 64, ffn: 128 } as const;
const TRACE = 'runs/x.parallax.json';
const BROKEN = 'broken/bad.parallax.json';
/** A real PyTorch profiler trace (rank 0 of the 128-rank job fixture), as a user's workspace has one. */
const KINETO = 'profiles/rank0.pt.trace.json.gz';

describe('the timeline panel in VS Code (code-server)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  let ws = '';
  let trace: Trace;
  let compareTrace: Trace;
  /** Console messages of the workbench and its frames that report a CSP violation. */
  const cspReports: string[] = [];
  const it = workbenchIt(() => vs);

  before(
    async () => {
      if (workbenchMissing()) return;
      const made = await workspaceWithDemoModel('parallax-e2e-tl-', DEMO);
      ws = made.ws;
      const modelRel = made.modelRel;
      const r = await runCli(['profile', modelRel, '--devices', 'cpu:2', '--batch', '8', '--steps', '2', '--out', join(ws, TRACE)], { cwd: ws });
      assert.equal(r.code, 0, r.stderr);
      trace = await readTrace(join(ws, TRACE));
      // Outside the output folder, so "Show Timeline" without arguments never picks it.
      mkdirSync(join(ws, 'broken'));
      writeFileSync(join(ws, BROKEN), '{"format":"parallax-trace","version":1,"meta":{');
      mkdirSync(join(ws, '.vscode'));
      mkdirSync(join(ws, 'profiles'));
      copyFileSync(kinetoFixture('job128-rank0.json.gz'), join(ws, KINETO));
      const vsix = ensureVsix();
      vs = await VsCodeHarness.start({ workspace: ws, vsix, name: 'timeline' });
      // The palette runs commands without arguments; a user keybinding passes them, as the
      // other commands of the extension do. The harness keeps its user-data folder private,
      // and this is its only use here; "Reload Window" below makes sure VS Code has read it.
      compareTrace = largeTrace(2, 4);
      await writeTrace(join(ws, 'compare', 'other.parallax.json'), compareTrace);
      const step = trace.steps[1]!;
      const args = { tracePath: TRACE, comparePath: join(ws, 'compare', 'other.parallax.json'), startUs: step.startUs, endUs: step.endUs, lanes: [1] };
      const userDir = join((vs as unknown as { temp: string }).temp, 'user-data', 'User');
      writeFileSync(join(userDir, 'keybindings.json'), JSON.stringify([{ key: 'ctrl+alt+shift+y', command: 'parallax.showTimeline', args }]));
      vs.page.on('console', (m) => {
        if (/Content Security Policy|Refused to/i.test(m.text())) cspReports.push(m.text());
      });
    },
    // Packaging the VSIX (production build + vsce) when src/ changed, and code-server's
    // first install on a fresh machine, take a while.
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('"Show Timeline" opens the newest trace of the output folder with one lane per device', async () => {
    const h = vs!;
    await h.runCommand('Parallax: Show Timeline');
    const frame = await timelineFrame(h);
    const stats = await viewStats(frame);
    await h.screenshot('timeline');
    const devices = trace.meta.devices.map((d) => d.label);
    assert.equal(devices.length, 2, 'cpu:2 is two devices');
    assert.deepEqual(await laneTitles(frame), trace.lanes.map((l) => l.label));
    assert.equal(trace.lanes.length, devices.length, 'one lane per device');
    assert.equal(stats.error, null);
    assert.deepEqual(
      stats.runs.map((r) => ({ spans: r.spans, lanes: r.lanes })),
      [{ spans: trace.spans.count, lanes: 2 }],
    );
    assert.deepEqual(
      stats.lanes.map((l) => l.label),
      trace.lanes.map((l) => l.label),
    );
    assert.ok(stats.drawn.rects.compute + stats.drawn.merged.compute + stats.drawn.buckets > 0, 'compute spans are drawn');
    const tab = h.page.locator('.tabs-container .tab').filter({ hasText: 'Parallax: x' });
    assert.equal(await tab.count(), 1, 'one timeline tab, titled after the trace');
    // The page's policy is in force: an inline script added to the DOM does not run.
    const inline = await frame.evaluate(
      "(() => { const s = document.createElement('script'); s.textContent = 'window.__inlineRan = true'; document.head.append(s); return window.__inlineRan === true ? 'ran' : 'blocked'; })()",
    );
    assert.equal(inline, 'blocked');
    // ...and the console watch sees the webview's reports (test 5 relies on it).
    for (let i = 0; i < 40 && !cspReports.some((t) => /inline script/.test(t)); i++) await h.page.waitForTimeout(50);
    assert.ok(cspReports.some((t) => /inline script/.test(t)), `console CSP reports: ${JSON.stringify(cspReports)}`);
  });

  it('shows a tooltip when the mouse is over a span', async () => {
    const h = vs!;
    const frame = await timelineFrame(h);
    // The longest top-level compute span: easy to hit.
    let span = -1;
    for (let i = 0; i < trace.spans.count; i++) {
      if (trace.spans.kind[i] === 0 && trace.spans.parent[i] < 0 && (span < 0 || trace.spans.dur[i] > trace.spans.dur[span])) span = i;
    }
    assert.ok(span >= 0);
    const { text, x, y, box } = await hoverSpan(h, frame, span, 'tooltip');
    assert.ok(text.includes(trace.strings[trace.spans.name[span]!]!), `tooltip: ${text}`);
    const stats = await viewStats(frame);
    assert.deepEqual(stats.hover, { run: 0, span });

    // A double-click asks for the span's source: the extension names it and finds the model.
    await h.clearNotifications();
    await h.page.mouse.dblclick(x, y);
    const name = trace.strings[trace.spans.name[span]!]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const note = await h.waitForNotification(new RegExp(`Parallax: "${name}" on cpu:\\d`), { timeoutMs: 15_000 });
    assert.match(note, /Model: models\/demo-[^ ]*\.onnx\./);
    await h.clearNotifications();
    await h.page.mouse.move(box.x + 2, box.y + 2);
  });

  it('the operator table lists operators by type and by node and filters the timeline; search counts and visits matches', async () => {
    const h = vs!;
    const frame = await timelineFrame(h);
    // Operator spans of the trace by type and by node, counted here.
    const count = (by: 'opType' | 'name'): Map<string, number> => {
      const m = new Map<string, number>();
      const s = trace.spans;
      for (let i = 0; i < s.count; i++) {
        if (!((s.flags[i]! & 8) !== 0 || s.parent[i]! >= 0) || s[by][i]! < 0) continue;
        const k = trace.strings[s[by][i]!]!;
        m.set(k, (m.get(k) ?? 0) + 1);
      }
      return m;
    };
    const byType = count('opType');
    assert.ok(byType.size > 0, 'the run recorded operator spans');
    await frame.getByRole('button', { name: 'Show operators' }).click();
    await frame.locator('.px-ops-row').first().waitFor({ timeout: 10_000 });
    let stats = await viewStats(frame);
    assert.deepEqual(new Map(stats.ops.rows.map((r) => [r.key, r.count])), byType);
    assert.deepEqual(await frame.locator('.px-ops-row td:first-child').allTextContents(), stats.ops.rows.map((r) => r.key));
    await h.screenshot('operators');
    // The host answers the same query on its own copy of the trace, with the same functions
    // (the path for a trace served to the view in tiles); a query about a run not shown is refused.
    const fromHost = (await frame.evaluate("window.__parallax.askHost(0, { type: 'opStats', groupBy: 'opType' })")) as { rows: { key: string; count: number; totalUs: number }[] };
    assert.deepEqual(
      fromHost.rows.map((r) => [r.key, r.count, r.totalUs]),
      stats.ops.rows.map((r) => [r.key, r.count, r.totalUs]),
    );
    const refused = await frame.evaluate("window.__parallax.askHost(1, { type: 'search', text: 'x' }).then(() => 'answered', (e) => e.message)");
    assert.equal(refused, 'no run 1 is shown');
    // A row filters the timeline to its operator's spans.
    const top = stats.ops.rows[0]!;
    await frame.locator('.px-ops-row').first().click();
    for (let i = 0; i < 40 && !stats.filter; i++) stats = await viewStats(frame);
    assert.deepEqual(stats.filter, { spans: top.count });
    await frame.locator('.px-ops-row').first().click();
    // By node.
    await frame.getByRole('button', { name: 'by node' }).click();
    const byNode = count('name');
    for (let i = 0; i < 40 && stats.ops.groupBy !== 'node'; i++) {
      await h.page.waitForTimeout(100);
      stats = await viewStats(frame);
    }
    assert.deepEqual(new Map(stats.ops.rows.map((r) => [r.key, r.count])), byNode);
    // Search, typed as a user types.
    const text = [...byType.keys()][0]!.slice(0, 6).toLowerCase();
    let want = 0;
    for (let i = 0; i < trace.spans.count; i++) {
      const n = trace.strings[trace.spans.name[i]!]!.toLowerCase();
      const t = trace.spans.opType[i]! >= 0 ? trace.strings[trace.spans.opType[i]!]!.toLowerCase() : '';
      if (n.includes(text) || t.includes(text)) want++;
    }
    const box = frame.getByRole('searchbox', { name: 'Search spans by name or operator type' });
    await box.click();
    await box.pressSequentially(text, { delay: 20 });
    for (let i = 0; i < 60 && stats.search.count !== want; i++) {
      await h.page.waitForTimeout(100);
      stats = await viewStats(frame);
    }
    assert.equal(stats.search.count, want, `matches of "${text}"`);
    assert.deepEqual(stats.filter, { spans: want });
    await box.press('Enter');
    // The earlier test left a span selected: wait for the first match to take its place.
    for (let i = 0; i < 40 && stats.search.index !== 0; i++) {
      await h.page.waitForTimeout(100);
      stats = await viewStats(frame);
    }
    assert.ok(stats.selected, 'Enter selects the first match');
    await h.screenshot('search');
    const name = trace.strings[trace.spans.name[stats.selected.span]!]!.toLowerCase();
    const type = trace.spans.opType[stats.selected.span]! >= 0 ? trace.strings[trace.spans.opType[stats.selected.span]!]!.toLowerCase() : '';
    assert.ok(name.includes(text) || type.includes(text), `selected ${name}`);
    await box.press('Escape');
    await frame.getByRole('button', { name: 'Hide operators' }).click();
  });

  it('"Developer: Reload Window" restores the panel with the same trace', async () => {
    const h = vs!;
    const before = await viewStats(await timelineFrame(h));
    const reloaded = h.page.waitForEvent('framenavigated', { predicate: (f) => f === h.page.mainFrame(), timeout: 30_000 });
    await h.runCommand('Developer: Reload Window');
    await reloaded;
    await h.page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
    await h.page.waitForSelector('.part.statusbar', { timeout: 60_000 });
    const frame = await timelineFrame(h, 90_000);
    const after = await viewStats(frame);
    await h.screenshot('restored');
    assert.deepEqual(await laneTitles(frame), trace.lanes.map((l) => l.label));
    assert.deepEqual(after.runs, before.runs, 'the same trace is shown');
    assert.equal(await h.page.locator('.tabs-container .tab').filter({ hasText: 'Parallax: x' }).count(), 1);
  });

  it('a corrupt trace gives one error naming the file and leaves the panel as it was', async () => {
    const h = vs!;
    await h.clearNotifications();
    // The output folder setting points at the folder with the corrupt trace only.
    writeFileSync(join(ws, '.vscode', 'settings.json'), JSON.stringify({ 'parallax.output.folder': 'broken' }));
    await h.page.waitForTimeout(1000);
    await h.runCommand('Parallax: Show Timeline');
    const text = await h.waitForNotification(/bad\.parallax\.json/, { timeoutMs: 30_000 });
    await h.screenshot('corrupt-trace');
    assert.match(text, /Parallax: .*broken\/bad\.parallax\.json: not valid JSON/);
    assert.equal((await h.notifications()).filter((t) => /Parallax/.test(t)).length, 1, 'one message');
    const stats = await viewStats(await timelineFrame(h));
    assert.equal(stats.runs[0]?.spans, trace.spans.count, 'the panel still shows the earlier trace');
    writeFileSync(join(ws, '.vscode', 'settings.json'), '{}');
  });

  it('showTimeline with arguments compares two traces and reveals a range with a highlighted lane', async () => {
    const h = vs!;
    const other = compareTrace;
    const step = trace.steps[1]!;
    const deadline = Date.now() + 30_000;
    let stats: ViewStats | null = null;
    // The keybinding written before the workbench started (see `before`) runs the command
    // with arguments; press until the comparison shows.
    while (Date.now() < deadline) {
      await h.page.locator('.part.sidebar .title').first().click();
      await h.page.keyboard.press('Control+Alt+Shift+Y');
      await h.page.waitForTimeout(500);
      stats = await viewStats(await timelineFrame(h)).catch(() => null);
      if (stats?.runs.length === 2 && stats.highlight) break;
    }
    await h.screenshot('compare-reveal');
    assert.ok(stats, 'the view answered');
    assert.deepEqual(
      stats.runs.map((r) => r.spans),
      [trace.spans.count, other.spans.count],
    );
    assert.deepEqual(stats.runs.map((r) => r.title), ['runs/x.parallax.json', 'compare/other.parallax.json']);
    assert.ok(stats.highlight, 'the range is highlighted');
    assert.deepEqual(stats.highlight.lanes, [{ run: 0, lane: 1 }]);
    const off = stats.runs[0]!.offsetUs;
    assert.ok(Math.abs(stats.highlight.startUs - (step.startUs - off)) < 1e-6 && Math.abs(stats.highlight.endUs - (step.endUs - off)) < 1e-6, JSON.stringify(stats.highlight));
    // Zoomed to the step, with the view's small margin.
    const span = step.endUs - step.startUs;
    assert.ok(stats.visible.startUs <= step.startUs - off && stats.visible.endUs >= step.endUs - off && stats.visible.endUs - stats.visible.startUs < span * 1.5, JSON.stringify(stats.visible));
    assert.equal(await h.page.locator('.tabs-container .tab').filter({ hasText: 'Parallax: x vs other' }).count(), 1);

    // The same files again, unchanged: only the range is revealed, the traces are not re-sent.
    const frame = await timelineFrame(h);
    const loads = async (): Promise<number> => (await frame.evaluate("window.__parallax.sent.filter((m) => m.type === 'loaded').length")) as number;
    const loadsBefore = await loads();
    await frame.evaluate(`window.__parallax.setView(${stats.extent.startUs}, ${stats.extent.endUs})`);
    await h.page.locator('.part.sidebar .title').first().click();
    await h.page.keyboard.press('Control+Alt+Shift+Y');
    let again = await viewStats(frame);
    for (let i = 0; i < 40 && again.visible.endUs - again.visible.startUs > span * 1.5; i++) {
      await h.page.waitForTimeout(100);
      again = await viewStats(frame);
    }
    assert.ok(again.visible.endUs - again.visible.startUs < span * 1.5, `zoomed back to the step: ${JSON.stringify(again.visible)}`);
    assert.equal(await loads(), loadsBefore, 'no second load');
  });

  it('a large trace goes over as typed columns and is prepared in the view\'s blob worker', async () => {
    const h = vs!;
    cspReports.length = 0;
    const big = largeTrace(4, 1500);
    assert.ok(big.spans.count > 50_000, `${big.spans.count} spans`);
    await writeTrace(join(ws, 'runs', 'large.parallax.json'), big);
    // The page's own report of CSP violations, from now on (the worker starts with this load).
    const frame0 = await timelineFrame(h);
    await frame0.evaluate(
      "window.__cspViolations = []; document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI))",
    );
    // The newest trace of the output folder now.
    await h.runCommand('Parallax: Show Timeline');
    const deadline = Date.now() + 60_000;
    let stats = await viewStats(await timelineFrame(h));
    while (stats.runs[0]?.spans !== big.spans.count && Date.now() < deadline) {
      await h.page.waitForTimeout(250);
      stats = await viewStats(await timelineFrame(h));
    }
    await h.screenshot('large-trace');
    assert.equal(stats.runs[0]?.spans, big.spans.count);
    assert.equal(stats.lanes.length, 4);
    assert.equal(stats.error, null);
    assert.equal(stats.frame.prepWhere, 'worker', 'worker-src blob: lets the view prepare off the main thread');
    assert.equal(await h.page.locator('.tabs-container .tab').filter({ hasText: 'Parallax: ' }).count(), 1, 'still one timeline panel');
    assert.deepEqual(await frame0.evaluate('window.__cspViolations'), [], 'the view reported no CSP violation');
    assert.deepEqual(cspReports, [], 'the console reported no CSP violation');
  });

  it('"Open Trace" on a PyTorch profiler trace in the explorer imports it and shows its rank', async () => {
    const h = vs!;
    const expected = (await importReport([join(ws, KINETO)])).trace;
    await h.explorerContextMenu(KINETO, 'Open Trace');
    const deadline = Date.now() + 60_000;
    let stats = await viewStats(await timelineFrame(h));
    while (stats.runs[0]?.spans !== expected.spans.count && Date.now() < deadline) {
      await h.page.waitForTimeout(250);
      stats = await viewStats(await timelineFrame(h));
    }
    await h.screenshot('kineto-import');
    assert.equal(stats.error, null);
    assert.deepEqual(stats.runs.map((r) => ({ spans: r.spans, lanes: r.lanes })), [{ spans: expected.spans.count, lanes: 1 }]);
    assert.deepEqual(stats.lanes.map((l) => l.label), expected.lanes.map((l) => l.label));
    // The imported trace is written to the output folder, named after the file.
    const written = await readTrace(join(ws, 'runs', 'rank0.pt.trace.parallax.json'));
    assert.equal(written.spans.count, expected.spans.count);
    assert.equal(written.meta.source, 'imported:kineto');
  });
});

/** A data-parallel trace of `devices` lanes and `steps` steps: a compute span with ten operators, a comm and an idle span per lane and step. */
function largeTrace(devices: number, steps: number): Trace {
  const m = meta({ opLevel: true }, devices);
  const b = new TraceBuilder();
  const win: Trace['steps'] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = s * 1000;
    for (let lane = 0; lane < devices; lane++) {
      b.push({ lane, kind: 'idle', name: 'idle', start: t0, dur: 40 + lane * 5, step: s, cause: 'host' });
      const c = b.push({ lane, kind: 'compute', name: 'session.run', start: t0 + 60, dur: 700, step: s });
      for (let k = 0; k < 10; k++) b.push({ lane, kind: 'compute', name: `/layer${k}/MatMul`, opType: 'MatMul', start: t0 + 65 + k * 68, dur: 60, step: s, parent: c, flags: 8 });
      b.push({ lane, kind: 'comm', name: 'allreduce', comm: 'allreduce', start: t0 + 780, dur: 150, step: s, bytes: 65536 });
    }
    win.push({ index: s, startUs: t0, endUs: t0 + 950 });
  }
  return { meta: m, strings: b.strings, lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })), steps: win, spans: b.finish() };
}

/** Lane labels as the DOM has them (each lane element's title is its full label). */
async function laneTitles(f: Frame): Promise<string[]> {
  return f.locator('.px-app .px-lane').evaluateAll((els) => els.map((e) => e.getAttribute('title') ?? ''));
}
