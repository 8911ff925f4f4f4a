/**
 * The sweep panel of the packaged extension in a real VS Code (code-server + headless
 * Chromium, see harness.ts): a sweep the built CLI ran on a small demo model (data and
 * pipeline plans, one repetition, its traces kept beside it) opened from the explorer with
 * "Open Sweep…"; the table lists every plan with its error, the chart has a point per
 * measured data-parallel plan and the predicted curve, and selecting a row opens the
 * timeline with that plan's measured run and its prediction compared. A file that is no
 * sweep is one message naming it. "Sweep Plans…" runs a sweep from VS Code into the panel,
 * which a window reload restores.
 *
 *   npm run build && node --import tsx --test test/e2e/vscode/sweep.test.ts
 *
 * The sweep view is read through its DOM (text and SVG marks); the timeline through its
 * test hook. Screenshots go to test-artifacts/vscode/.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import type { Frame } from 'playwright-core';
import { readSweepResult, sweepTracePath } from '../../../src/profiler/sweep/files';
import type { SweepResult } from '../../../src/profiler/sweep/schema';
import { readTrace } from '../../../src/profiler/trace-io';
import { runCli } from '../../helpers/cli';
import { closeWorkbench, ensureVsix, postFromView, timelineFrame, viewStats, VsCodeHarness, workbenchIt, workbenchMissing, workspaceWithDemoModel } from './harness';

const DEMO = { layers: 4, hidden: 64, ffn: 128 } as const;
const SWEEP = 'sweeps/sweep.json';
const BROKEN = 'bad/broken-sweep.json';
/** Options of a quick sweep: few plans, one repetition of two steps. */
const QUICK = ['--devices', 'cpu:2', '--modes', 'data,pipeline', '--micro-batches', '2', '--batch', '8', '--repeats', '1', '--steps', '2', '--warmup', '1'];

/** The sweep view's frame once its table is drawn. */
async function sweepFrame(h: VsCodeHarness, timeoutMs = 30_000): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const f of h.webviewFrames()) {
      if ((await f.locator('#px-sweep-table tbody tr').count().catch(() => 0)) > 0) return f;
    }
    if (Date.now() > deadline) throw new Error(`no sweep webview with a table within ${timeoutMs} ms (${h.webviewFrames().length} webview frames)`);
    await h.page.waitForTimeout(250);
  }
}

/** The table's rows as cell texts. */
function tableRows(f: Frame): Promise<string[][]> {
  // Runs in the page; the test's own types have no DOM, so the cells are typed by hand.
  type Cells = { querySelectorAll(s: string): ArrayLike<{ textContent: string | null }> };
  return f.locator('#px-sweep-table tbody tr').evaluateAll((rows) => rows.map((r) => Array.from((r as unknown as Cells).querySelectorAll('td'), (td) => td.textContent ?? '')));
}

/** Checks the drawn table and chart against the sweep result. */
async function checkSweepView(f: Frame, r: SweepResult): Promise<void> {
  const rows = await tableRows(f);
  assert.deepEqual(
    rows.map((c) => c[0]),
    r.plans.map((p) => p.label),
    'every plan, best first',
  );
  r.plans.forEach((p, i) => {
    const cells = rows[i]!;
    if (p.kind === 'predicted') assert.equal(cells[1], 'predicted', `${p.label} is labelled predicted`);
    else assert.match(cells[1]!, /(ms|µs) \[.+–.+\]/, `${p.label} has its measured median and interval`);
    assert.equal(cells[3], p.errorPct === null ? '–' : `${p.errorPct > 0 ? '+' : ''}${p.errorPct.toFixed(1)} %`, `${p.label}'s error`);
  });
  const header = (await f.locator('#px-sweep-errors').textContent()) ?? '';
  if (r.mapePct !== null) assert.ok(header.includes(`MAPE ${r.mapePct.toFixed(1)} %`) && header.includes(`max |error| ${r.maxAbsErrorPct!.toFixed(1)} %`), header);
  assert.ok(header.includes(`measurement quality ${r.measurementQuality.verdict}`), header);

  // The chart: a circle per measured data-parallel plan at the chart's batch, a square per
  // predicted one, and the curve. Counted from the plans, not from the chart's own data.
  assert.ok(r.scaling, 'the sweep has a chart');
  const data = r.plans.filter((p) => p.plan.mode === 'data' && p.plan.batch === r.scaling!.batch);
  const measuredDevices = data.filter((p) => p.measuredUs !== null).map((p) => p.devices).sort((a, b) => a - b);
  assert.ok(measuredDevices.length >= 2, `measured data plans: ${measuredDevices.join(', ')}`);
  const drawn = (sel: string): Promise<number[]> => f.locator(`#px-sweep-chart ${sel}[data-devices]`).evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-devices'))).sort((a, b) => a - b));
  assert.deepEqual(await drawn('circle.measured'), measuredDevices, 'one point per measured plan');
  const predictedDevices = await drawn('rect.predicted');
  assert.ok(predictedDevices.length >= measuredDevices.length + 1, `predicted points at ${predictedDevices.join(', ')}`);
  for (const p of data.filter((x) => x.kind === 'predicted')) assert.ok(predictedDevices.includes(p.devices), `a predicted point at ${p.devices} devices`);
  const curve = (await f.locator('#px-sweep-chart path.curve').getAttribute('d')) ?? '';
  assert.ok((curve.match(/L/g) ?? []).length >= 1, `the predicted curve is drawn: ${curve.slice(0, 80)}`);
}

/**
 * Runs "Sweep Plans…" through the keybinding written before the workbench started (its
 * arguments are the choices, without a model): presses it until the model pick shows, then
 * picks the model.
 */
async function startSweepPlans(h: VsCodeHarness, key = 'KeyW'): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await h.page.locator('.part.sidebar .title').first().click();
    await h.page.keyboard.press(`Control+Alt+Shift+${key}`);
    const picked = await h.page.locator('.quick-input-widget .quick-input-list .monaco-list-row').filter({ hasText: /\.onnx/ }).first().waitFor({ state: 'visible', timeout: 3000 }).then(
      () => true,
      () => false,
    );
    if (picked) break;
    if (attempt === 5) throw new Error('the keybinding of "Sweep Plans…" shows no model pick');
  }
  await h.quickPick(/\.onnx/);
}

/** Waits (up to 4 minutes) for a sweep panel whose every row is a plan of `mode`. */
async function sweepPanelOf(h: VsCodeHarness, mode: string): Promise<Frame> {
  const deadline = Date.now() + 4 * 60_000;
  for (;;) {
    for (const fr of h.webviewFrames()) {
      const rows = await tableRows(fr).catch(() => []);
      if (rows.length > 0 && rows.every((c) => c[0]!.startsWith(`${mode} `))) return fr;
    }
    if (Date.now() > deadline) throw new Error(`no sweep of ${mode} plans in the panel; notifications: ${JSON.stringify(await h.notifications())}`);
    await h.page.waitForTimeout(500);
  }
}

describe('the sweep panel in VS Code (code-server)', { timeout: 8 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  let ws = '';
  let result: SweepResult;
  const it = workbenchIt(() => vs);

  before(
    async () => {
      if (workbenchMissing()) return;
      const made = await workspaceWithDemoModel('parallax-e2e-sweep-', DEMO);
      ws = made.ws;
      const modelRel = made.modelRel;
      const r = await runCli(['sweep', modelRel, ...QUICK, '--out', SWEEP, '--traces', 'sweeps'], { cwd: ws });
      assert.equal(r.code, 0, r.stderr);
      result = await readSweepResult(join(ws, SWEEP));
      mkdirSync(join(ws, 'bad'));
      writeFileSync(join(ws, BROKEN), JSON.stringify({ format: 'parallax-trace', plans: 'none' }));
      const keybindings = [
        { key: 'ctrl+alt+shift+w', command: 'parallax.sweepPlans', args: { devices: 'cpu:2', modes: ['data'], batch: 8, repeats: 1, steps: 2, warmup: 1 } },
        // No modes or micro-batches: they are picked.
        { key: 'ctrl+alt+shift+q', command: 'parallax.sweepPlans', args: { devices: 'cpu:2', batch: 8, repeats: 1, steps: 2, warmup: 1 } },
      ];
      vs = await VsCodeHarness.start({ workspace: ws, vsix: ensureVsix(), name: 'sweep', keybindings });
    },
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('"Open Sweep…" shows the table with every plan and its error, and the chart with a point per measured plan and the predicted curve', async () => {
    const h = vs!;
    await h.explorerContextMenu(SWEEP, 'Open Sweep…');
    const f = await sweepFrame(h);
    await h.screenshot('sweep-panel');
    await checkSweepView(f, result);
    assert.equal(await f.locator('#px-sweep-traces-note').count(), 0, 'the traces are found beside the sweep');
  });

  it('hostile messages from the sweep view are refused and logged, and nothing opens', async () => {
    const h = vs!;
    const f = await sweepFrame(h);
    await h.clearNotifications();
    const tabs = await h.page.locator('.tabs-container .tab').count();
    const hostile: [unknown, RegExp][] = [
      [{ type: 'openFile', path: '/etc/passwd' }, /unknown message type "openFile"/],
      [{ type: 'showTimeline', tracePath: '/etc/passwd' }, /unknown message type "showTimeline"/],
      [{ type: 'selectPlan', index: 0, label: 'x', tracePath: '/etc/passwd' }, /selectPlan: /],
      [{ type: 'selectPlan', index: -1, label: 'x' }, /selectPlan: \/index/],
      [{ type: 'query', id: 1, run: 0, query: { type: 'opStats', groupBy: 'opType' } }, /unknown message type "query"/],
    ];
    for (const [m] of hostile) await postFromView(f, m);
    // Well-formed, but no such row: the host looks it up in its own copy and finds none.
    await postFromView(f, { type: 'selectPlan', index: 9999, label: 'x' });
    await postFromView(f, { type: 'error', message: 'probe after the hostile messages' });
    await h.waitForLog(/parallax/i, /sweep view: probe after the hostile messages/);
    const log = h.logText(/parallax/i);
    const rejected = log.split('\n').filter((l) => /sweep: rejected a message from the view/.test(l));
    for (const [m, re] of hostile) assert.ok(rejected.some((l) => re.test(l)), `logged as rejected: ${JSON.stringify(m)} (lines: ${rejected.join(' | ').slice(0, 2000)})`);
    assert.match(log, /sweep: the view selected plan 9999, which the sweep does not have/);
    assert.equal(await h.page.locator('.tabs-container .tab').count(), tabs, 'no editor opened');
    assert.deepEqual(await h.notifications(), [], 'no notification');
  });

  it('selecting a measured row opens the timeline with the measured run and its prediction compared', async () => {
    const h = vs!;
    const f = await sweepFrame(h);
    const index = result.plans.findIndex((p) => p.kind === 'measured' && p.plan.mode === 'pipeline');
    assert.ok(index >= 0, 'a measured pipeline plan');
    const plan = result.plans[index]!;
    const dir = join(ws, 'sweeps');
    const measured = await readTrace(sweepTracePath(dir, plan.label, 'measured'));
    const predicted = await readTrace(sweepTracePath(dir, plan.label, 'predicted'));
    await f.locator(`#px-sweep-table tbody tr[data-index="${index}"]`).click();
    const tl = await timelineFrame(h, 60_000);
    const s = await viewStats(tl);
    await h.screenshot('sweep-compare');
    assert.equal(s.error, null);
    assert.equal(s.runs.length, 2, 'two runs compared');
    assert.deepEqual(
      s.runs.map((r) => [r.spans, r.predicted]),
      [
        [measured.spans.count, false],
        [predicted.spans.count, true],
      ],
      'the measured run, and the prediction under it',
    );
    assert.ok(s.runs[1]!.title.includes('predicted'), `second run's title: ${s.runs[1]!.title}`);
    assert.ok(s.runs[0]!.title.includes('measured'), `first run's title: ${s.runs[0]!.title}`);
  });

  it('a file that is not a sweep is one message naming it', async () => {
    const h = vs!;
    await h.clearNotifications();
    await h.explorerContextMenu(BROKEN, 'Open Sweep…');
    const text = await h.waitForNotification(/broken-sweep\.json/, { timeoutMs: 20_000 });
    assert.match(text, /broken-sweep\.json is not a Parallax sweep result .*parallax sweep --out/);
  });

  it('"Sweep Plans…" can be cancelled from its progress notification', async () => {
    const h = vs!;
    await h.clearNotifications();
    await startSweepPlans(h);
    const toast = h.page.locator('.notifications-toasts .notification-list-item').filter({ hasText: /sweeping plans of models\// }).first();
    await toast.waitFor({ state: 'visible', timeout: 30_000 });
    await toast.hover();
    await toast.locator('.monaco-button').filter({ hasText: 'Cancel' }).first().click();
    await h.waitForNotification(/sweep of models\/.+ cancelled/, { timeoutMs: 60_000, failOn: /failed/ });
    await h.clearNotifications();
  });

  it('"Sweep Plans…" asks for the modes and micro-batch counts it was not given; dismissing the pick sweeps nothing', async () => {
    const h = vs!;
    const rows = '.quick-input-widget .quick-input-list .monaco-list-row';
    const checked = (re: RegExp): Promise<boolean> =>
      h.page
        .locator(rows)
        .filter({ hasText: re })
        .first()
        .locator('.quick-input-list-checkbox, input[type="checkbox"], .monaco-custom-toggle')
        .first()
        .evaluate((e) => (e as unknown as { checked?: boolean }).checked === true || e.classList.contains('checked') || e.getAttribute('aria-checked') === 'true');
    await h.clearNotifications();
    await startSweepPlans(h, 'KeyQ');
    await h.waitForQuickInput(/Sweep Plans — modes/);
    const texts = await h.page.locator(rows).allTextContents();
    for (const m of ['data', 'pipeline', 'tensor', 'hybrid']) assert.ok(texts.some((t) => t.startsWith(m)), `mode ${m} offered: ${JSON.stringify(texts)}`);
    assert.deepEqual([await checked(/^data/), await checked(/^pipeline/), await checked(/^tensor/), await checked(/^hybrid/)], [true, true, false, false], 'the defaults are checked');
    await h.page.keyboard.press('Escape');
    await h.page.waitForTimeout(3000);
    assert.deepEqual((await h.notifications()).filter((t) => /sweeping plans/.test(t)), [], 'nothing swept');

    // Pipelines only, at 2 micro-batches.
    await startSweepPlans(h, 'KeyQ');
    await h.waitForQuickInput(/Sweep Plans — modes/);
    await h.page.locator(rows).filter({ hasText: /^data/ }).first().click();
    assert.equal(await checked(/^data/), false, 'data unchecked');
    await h.acceptQuickInput();
    await h.waitForQuickInput(/Sweep Plans — micro-batches/);
    // Each row: the count, then its rows per micro-batch.
    const counts = await h.page.locator(rows).allTextContents();
    assert.equal(counts.length, 4, JSON.stringify(counts));
    [1, 2, 4, 8].forEach((m, i) => assert.match(counts[i]!, new RegExp(`^${m}${8 / m} rows? per micro-batch`), 'the counts that divide the batch of 8'));
    for (const re of [/^1/, /^4/, /^8/]) await h.page.locator(rows).filter({ hasText: re }).first().click();
    await h.acceptQuickInput();
    await h.waitForNotification(/sweeping plans of models\//, { timeoutMs: 30_000, failOn: /failed|cannot/ });
    const f = await sweepPanelOf(h, 'pipeline');
    const labels = (await tableRows(f)).map((c) => c[0]!);
    assert.ok(labels.every((l) => /M=2\b/.test(l)), `only 2 micro-batches: ${labels.join(' | ')}`);
    await h.screenshot('sweep-picked');
  });

  it('"Sweep Plans…" measures and predicts a model from VS Code, with progress, into the panel', async () => {
    const h = vs!;
    await startSweepPlans(h);
    await h.waitForNotification(/sweeping plans of models\//, { timeoutMs: 30_000, failOn: /failed|cannot/ });
    // The new sweep has data plans only; the ones opened before have pipeline plans.
    const f = await sweepPanelOf(h, 'data');
    await h.screenshot('sweep-plans');
    const rows = await tableRows(f);
    assert.ok(rows.some((c) => c[1] === 'predicted') && rows.some((c) => /(ms|µs) \[/.test(c[1]!)), 'measured and predicted plans');
    assert.equal(await f.locator('#px-sweep-traces-note').count(), 0, 'the traces are kept in the extension storage');
    assert.ok((await f.locator('#px-sweep-chart circle.measured[data-devices]').count()) >= 2);
  });

  it('"Developer: Reload Window" restores the panel with the same sweep', async () => {
    const h = vs!;
    const before = await tableRows(await sweepFrame(h));
    const reloaded = h.page.waitForEvent('framenavigated', { predicate: (f) => f === h.page.mainFrame(), timeout: 30_000 });
    await h.runCommand('Developer: Reload Window');
    await reloaded;
    await h.page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
    const after = await tableRows(await sweepFrame(h, 90_000));
    await h.screenshot('sweep-restored');
    assert.deepEqual(after, before);
  });
});
