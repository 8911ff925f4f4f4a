/**
 * The packaged extension in a real VS Code (code-server + headless Chromium): the VSIX built
 * by scripts/package.mjs is installed with --install-extension, and the tests drive the
 * workbench as a user would. Screenshots go to test-artifacts/vscode/.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { ensureDemoModel } from '../../../src/runtime/onnx/demo-model';
import { readTrace } from '../../../src/profiler/trace-io';
import { closeWorkbench, ensureVsix, hoverSpan, QUICK_INPUT_FIELD, timelineFrame, VsCodeHarness, workbenchIt, workbenchMissing } from './harness';
import { PhaseCode } from '../../../src/profiler/trace-format';
import { scratchDir } from '../../helpers/temp';

/** Small enough that a profile takes a second or two on two cores. */
const DEMO = { layers: 4, hidden: 64, ffn: 128 } as const;
const MODEL_DIR = 'models';

describe('the packaged extension in VS Code (code-server)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  const it = workbenchIt(() => vs);
  let ws = '';
  let modelName = '';
  /** Device kinds the first profile's device pick offered once discovery finished. */
  const offeredKinds = new Set<string>();

  before(
    async () => {
      if (workbenchMissing()) return;
      ws = scratchDir('e2e-ws');
      const scratch = scratchDir('e2e-model');
      const model = await ensureDemoModel(scratch, DEMO);
      modelName = model.split('/').pop()!;
      mkdirSync(join(ws, MODEL_DIR));
      copyFileSync(model, join(ws, MODEL_DIR, modelName));
      rmSync(scratch, { recursive: true, force: true });
      // Workspace settings keep each run short; devices and batch come from the quick picks.
      mkdirSync(join(ws, '.vscode'));
      writeSettings(ws, { 'parallax.profile.steps': 5, 'parallax.profile.warmup': 1 });
      writeFileSync(join(ws, 'NOTES.md'), '# Parallax notes\n\nA file for the harness check.\n');
      const vsix = ensureVsix();
      vs = await VsCodeHarness.start({ workspace: ws, vsix, name: 'extension' });
      await vs.screenshot('workbench');
    },
    // A machine without code-server installs it first (about a minute cold).
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('lists the Parallax commands in the command palette', async () => {
    const h = vs!;
    const rows = await h.findInPalette('Parallax: Profile Model…', 30_000, 'Parallax');
    await h.screenshot('palette');
    await h.dismissQuickInput();
    assert.ok(rows.some((r) => r.includes('Parallax: Profile Model…')), `palette rows: ${JSON.stringify(rows)}`);
    assert.ok(rows.some((r) => r.includes('Parallax: List Devices')), `palette rows: ${JSON.stringify(rows)}`);
    assert.ok(rows.some((r) => r.includes('Parallax: Profile Training Step…')), `palette rows: ${JSON.stringify(rows)}`);
    // The explorer-only entry and the stop command (no profile running) stay out of the palette.
    assert.ok(!rows.some((r) => r.includes('Profile with Parallax')), `palette rows: ${JSON.stringify(rows)}`);
    assert.ok(!rows.some((r) => r.includes('Stop Profiling')), `palette rows: ${JSON.stringify(rows)}`);
  });

  it('profiles the workspace model through Profile Model… and writes a trace in the output folder', async () => {
    const h = vs!;
    await h.clearNotifications();
    await h.runCommand('Parallax: Profile Model…');
    await h.waitForQuickInput('(1/4) — model');
    const rows = await h.quickPickRows();
    assert.ok(rows.some((r) => r.includes(modelName)), `model rows: ${JSON.stringify(rows)}`);
    assert.ok(rows.some((r) => r.includes('Browse…')), `model rows: ${JSON.stringify(rows)}`);
    await h.screenshot('pick-model');
    await h.quickPick(modelName);

    await h.waitForQuickInput('(2/4) — parallel mode');
    await h.screenshot('pick-mode');
    await h.quickPick(/^data/);
    await h.waitForQuickInput('(3/4) — devices');
    await h.screenshot('pick-devices');
    // A fresh profile (no discovery yet): the pick opens at once with the CPU workers only,
    // busy while it discovers the machine's devices, then offers what exists.
    const placeholder = (): Promise<string | null> => h.page.locator(QUICK_INPUT_FIELD).getAttribute('placeholder');
    const before = await h.quickPickRows();
    if (/discovering/.test((await placeholder()) ?? '')) {
      assert.ok(before.every((r) => !/\b(webgpu|cuda):\d/.test(r)), `device rows before discovery: ${JSON.stringify(before)}`);
    }
    const deadline = Date.now() + 90_000;
    while (/discovering/.test((await placeholder()) ?? '') && Date.now() < deadline) await h.page.waitForTimeout(200);
    assert.equal(await placeholder(), 'Devices to run on', 'discovery finished');
    const after = await h.quickPickRows();
    for (const row of after) for (const m of row.matchAll(/\b(cpu|webgpu|cuda):\d/g)) offeredKinds.add(m[1]!);
    assert.ok(offeredKinds.has('cpu'), `device rows after discovery: ${JSON.stringify(after)}`);
    await h.screenshot('pick-devices-discovered');
    await h.quickPick(/^cpu:2/);
    await h.waitForQuickInput('(4/4) — global batch size');
    await h.quickPick(/^16/);

    const text = await h.waitForNotification(/Parallax: profiled .*Trace: runs\/.*\.parallax\.json/, {
      timeoutMs: 120_000,
      failOn: /Parallax: .*(failed|error)/i,
    });
    await h.screenshot('profiled');
    // parallax.timeline.openOnFinish (default on) opens the run's timeline.
    const tab = h.page.locator('.tabs-container .tab').filter({ hasText: `Parallax: ${modelName.replace(/\.onnx$/, '-data')}` });
    await tab.first().waitFor({ state: 'visible', timeout: 30_000 });
    for (let i = 0; i < 150 && h.webviewFrames().length === 0; i++) await h.page.waitForTimeout(200);
    assert.ok(h.webviewFrames().length > 0, 'the timeline webview is there');
    await h.screenshot('timeline-opened');
    // The tests below drive the workbench from the keyboard; a webview would take its keys.
    await h.closeTabs(/^Parallax: /);
    assert.match(text, new RegExp(`profiled ${MODEL_DIR}/${modelName.replace(/\./g, '\\.')}`));
    assert.match(text, /median step/);

    const runs = join(ws, 'runs');
    const traces = existsSync(runs) ? readdirSync(runs).filter((f) => f.endsWith('.parallax.json')) : [];
    assert.deepEqual(traces, [modelName.replace(/\.onnx$/, '-data.parallax.json')]);
    const trace = await readTrace(join(runs, traces[0]!));
    assert.equal(trace.lanes.length, 2, 'one lane per cpu worker');
    assert.ok(trace.spans.lane.length > 0, 'the trace has spans');
  });

  it('trains the workspace model through Profile Training Step…: the timeline shows its backward and optimizer spans', async () => {
    const h = vs!;
    await h.clearNotifications();
    await h.runCommand('Parallax: Profile Training Step…');
    await h.waitForQuickInput('Profile Training Step (1/5) — model');
    await h.quickPick(modelName);
    await h.waitForQuickInput('(2/5) — devices');
    const placeholder = (): Promise<string | null> => h.page.locator(QUICK_INPUT_FIELD).getAttribute('placeholder');
    const deadline = Date.now() + 90_000;
    while (/discovering/.test((await placeholder()) ?? '') && Date.now() < deadline) await h.page.waitForTimeout(200);
    await h.quickPick(/^cpu:2/);
    await h.waitForQuickInput('(3/5) — global batch size');
    await h.quickPick(/^16/);
    await h.waitForQuickInput('(4/5) — loss');
    const losses = await h.quickPickRows();
    assert.ok(losses.some((r) => r.includes('cross-entropy')), `loss rows: ${JSON.stringify(losses)}`);
    await h.quickPick(/^mse/);
    await h.waitForQuickInput('(5/5) — optimizer');
    await h.screenshot('pick-optimizer');
    await h.quickPick(/^momentum/);
    const text = await h.waitForNotification(/Parallax: profiled .*Trace: runs\/.*-train\.parallax\.json/, {
      timeoutMs: 180_000,
      failOn: /Parallax: .*(failed|error)/i,
    });
    assert.match(text, /median step/);
    const trace = await readTrace(join(ws, 'runs', modelName.replace(/\.onnx$/, '-train.parallax.json')));
    assert.equal(trace.meta.training?.optimizer, 'momentum');
    assert.equal(trace.meta.training?.loss, 'mse');

    // The timeline opens on the run; its longest backward and optimizer spans show their phase.
    const frame = await timelineFrame(h, 60_000);
    await h.screenshot('training-timeline');
    const s = trace.spans;
    for (const phase of ['backward', 'optimizer'] as const) {
      let span = -1;
      for (let i = 0; i < s.count; i++) {
        if (s.kind[i] === 0 && s.parent[i]! < 0 && s.phase[i] === PhaseCode[phase] && (span < 0 || s.dur[i]! > s.dur[span]!)) span = i;
      }
      assert.ok(span >= 0, `a ${phase} span in the trace`);
      const { text: tip } = await hoverSpan(h, frame, span, `training-${phase}`);
      assert.match(tip, new RegExp(`phase\\s*${phase}`), `tooltip of the ${phase} span: ${tip}`);
    }
    await h.closeTabs(/^Parallax: /);
  });

  it('lists devices discovered in a runner process', async () => {
    const h = vs!;
    await h.runCommand('Parallax: List Devices');
    await h.waitForQuickInput(/Parallax: devices — .*onnxruntime-node \d/, 60_000);
    const rows = await h.quickPickRows();
    await h.screenshot('devices');
    await h.dismissQuickInput();
    const cpu = rows.find((r) => /\bcpu\b/.test(r));
    assert.ok(cpu && /available/.test(cpu) && !/not available/.test(cpu), `device rows: ${JSON.stringify(rows)}`);
    assert.ok(rows.some((r) => /\bwebgpu\b/.test(r)) && rows.some((r) => /\bcuda\b/.test(r)), `device rows: ${JSON.stringify(rows)}`);
    // The device pick of the first profile offered only kinds this machine has.
    for (const kind of offeredKinds) {
      const row = rows.find((r) => new RegExp(`\\b${kind}\\b`).test(r));
      assert.ok(row && !/not available/.test(row), `the pick offered ${kind}; List Devices says: ${JSON.stringify(rows)}`);
    }
  });

  it('writes reports to the Parallax output as a terminal shows them, one timestamp per report', async () => {
    const h = vs!;
    await h.runCommand('Parallax: Show Output');
    // Room for the whole table: the output view wraps long lines.
    await h.runCommand('View: Toggle Maximized Panel');
    // The newest report is List Devices' table: its heading carries the log's timestamp,
    // its rows follow as they are.
    const lines = h.page.locator('.part.panel .monaco-editor .view-lines').first();
    let text = '';
    const deadline = Date.now() + 15_000;
    while (!/\bkind\s+available\s+provider/.test(text) && Date.now() < deadline) {
      await h.page.waitForTimeout(200);
      text = ((await lines.innerText().catch(() => '')) ?? '').replace(/\u00a0/g, ' ');
    }
    await h.screenshot('output');
    // The view wraps lines wider than the panel, so the table's rows are checked by how
    // they start: at the margin, with no timestamp of their own.
    const rows = text.split('\n');
    const stamped = (r: string): boolean => /^\d{4}-\d\d-\d\d \d\d:/.test(r);
    let heading = -1;
    rows.forEach((r, i) => {
      if (stamped(r) && /\[info\] devices: /.test(r)) heading = i;
    });
    assert.ok(heading >= 0, `output lines: ${JSON.stringify(rows)}`);
    // The report runs from its heading to the next stamped line: the whole table is in it.
    const next = rows.findIndex((r, i) => i > heading && stamped(r));
    const block = rows.slice(heading + 1, next < 0 ? undefined : next);
    assert.ok(block.some((r) => /^kind\s+available/.test(r)), `the table header is in the report: ${JSON.stringify(rows)}`);
    assert.ok(block.some((r) => /^cpu\s+yes\b/.test(r)), `the cpu row is in the report, at the margin: ${JSON.stringify(block)}`);
    await h.runCommand('View: Toggle Maximized Panel');
  });

  it('profiles an .onnx file from the explorer context menu', async () => {
    const h = vs!;
    await h.clearNotifications();
    await h.explorerContextMenu(`${MODEL_DIR}/${modelName}`, 'Profile with Parallax');
    // The model is given by the menu: the flow starts at the mode.
    await h.waitForQuickInput('(2/4) — parallel mode');
    await h.quickPick(/^data/);
    await h.waitForQuickInput('(3/4) — devices');
    await h.quickPick(/^cpu:1\b/);
    await h.waitForQuickInput('(4/4) — global batch size');
    await h.quickPick(/^8/);
    const text = await h.waitForNotification(/Parallax: profiled .*Trace: runs\/.*\.parallax\.json/, {
      timeoutMs: 120_000,
      failOn: /Parallax: .*(failed|error)/i,
    });
    await h.screenshot('profiled-from-explorer');
    assert.match(text, /median step/);
    await h.closeTabs(/^Parallax: /);
  });

  it('shows a running profile in the status bar and cancels it from there, ending the runner', async () => {
    const h = vs!;
    await h.clearNotifications();
    // Long enough to be caught running; VS Code picks up the settings file change.
    writeSettings(ws, { 'parallax.profile.steps': 100_000, 'parallax.profile.warmup': 1 });
    await h.page.waitForTimeout(1000);
    await h.explorerContextMenu(`${MODEL_DIR}/${modelName}`, 'Profile with Parallax');
    await h.waitForQuickInput('(2/4) — parallel mode');
    await h.quickPick(/^data/);
    await h.waitForQuickInput('(3/4) — devices');
    await h.quickPick(/^cpu:2/);
    await h.waitForQuickInput('(4/4) — global batch size');
    await h.quickPick(/^8/);

    const status = h.page.locator('.statusbar-item').filter({ hasText: `Parallax: ${MODEL_DIR}/${modelName}` }).first();
    await status.waitFor({ state: 'visible', timeout: 60_000 });
    // Wait until the workers measure, so that the cancel reaches a busy runner.
    await h.page.locator('.statusbar-item').filter({ hasText: /measuring \d+\// }).first().waitFor({ state: 'visible', timeout: 60_000 });
    assert.ok(runnerPids().length > 0, 'a runner process runs while profiling');
    await h.screenshot('running');
    await status.click();
    await h.waitForNotification(/Parallax: profiling .* cancelled\./, { timeoutMs: 30_000 });
    await status.waitFor({ state: 'hidden', timeout: 10_000 });
    await h.screenshot('cancelled');
    // The runner and its workers are gone shortly after the cancel.
    const deadline = Date.now() + 5000;
    while (runnerPids().length > 0 && Date.now() < deadline) await h.page.waitForTimeout(100);
    assert.deepEqual(runnerPids(), [], 'no runner process is left after cancelling');
    writeSettings(ws, { 'parallax.profile.steps': 5, 'parallax.profile.warmup': 1 });
  });

  // A check of the harness itself, for the webview tests that build on it: a built-in
  // webview (the Markdown preview) is found through webviewFrames() and its DOM read.
  it('harness: opens a file and reads a webview document through page.frames()', async () => {
    const h = vs!;
    await h.openFile('NOTES.md');
    await h.runCommand('Markdown: Open Preview to the Side');
    let heading: string | null = null;
    const deadline = Date.now() + 30_000;
    while (heading === null && Date.now() < deadline) {
      for (const f of h.webviewFrames()) {
        heading = await f.locator('h1').first().textContent({ timeout: 500 }).catch(() => null);
        if (heading !== null) break;
      }
      if (heading === null) await h.page.waitForTimeout(250);
    }
    await h.screenshot('webview');
    assert.equal(heading, 'Parallax notes');
  });
});

function writeSettings(folder: string, settings: Record<string, unknown>): void {
  writeFileSync(join(folder, '.vscode', 'settings.json'), JSON.stringify(settings, null, 2));
}

/**
 * Runner processes of the installed extension (their command line names the VSIX's
 * dist/runner.js under an e2e extensions folder), found through /proc.
 */
function runnerPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(join('/proc', name, 'cmdline'), 'utf8');
    } catch {
      continue;
    }
    if (/parallax-e2e-[^\0]*parallax-tools\.parallax[^\0]*\/dist\/runner\.js/.test(cmd)) out.push(Number(name));
  }
  return out;
}
