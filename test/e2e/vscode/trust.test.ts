/**
 * Trust boundaries end to end, in a real workbench (code-server + headless Chromium) with
 * workspace trust on and the workspace not trusted (Restricted Mode):
 *  - every command that runs a model refuses, from the palette and through the command
 *    service with arguments (user keybindings, which run commands as
 *    `vscode.commands.executeCommand` does, past the palette's `when` clauses): a warning
 *    that says why, no model picked, no runner process, no trace written;
 *  - the plan's CodeLens says that the workspace must be trusted first;
 *  - opening and viewing a trace works;
 *  - hostile messages from the timeline view (unknown type, wrong shape, extra fields,
 *    oversized payload, a message asking to open a path outside the workspace or to run a
 *    command) are rejected and logged to the output channel, and nothing happens.
 */
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoModel } from '../../../src/runtime/onnx/demo-model';
import { runCli } from '../../helpers/cli';
import { scratchDir } from '../../helpers/temp';
import { closeWorkbench, ensureVsix, postFromView, timelineFrame, VsCodeHarness, workbenchIt, workbenchMissing } from './harness';

const DEMO = { layers: 2, hidden: 32, ffn: 64 } as const;
const TRACE = 'runs/x.parallax.json';
const REFUSAL = /profiles models only in a trusted workspace/;
/** The extension's output channel, as VS Code keeps it on disk. */
const OUTPUT_LOG = /parallax/i;

/** Commands that run a model, each bound to a key with arguments. */
const MODEL_COMMANDS = [
  { command: 'parallax.profileModel', key: 'ctrl+alt+shift+u', press: 'Control+Alt+Shift+KeyU', args: { mode: 'data', devices: 'cpu:1', batch: 1 } },
  { command: 'parallax.profileFile', key: 'ctrl+alt+shift+i', press: 'Control+Alt+Shift+KeyI', args: 'models/demo.onnx' },
  { command: 'parallax.profileConfig', key: 'ctrl+alt+shift+o', press: 'Control+Alt+Shift+KeyO', args: 'parallax.json' },
  { command: 'parallax.rerunProfile', key: 'ctrl+alt+shift+j', press: 'Control+Alt+Shift+KeyJ' },
  { command: 'parallax.sweepPlans', key: 'ctrl+alt+shift+k', press: 'Control+Alt+Shift+KeyK', args: { devices: 'cpu:1', repeats: 1 } },
] as const;

/** Runner processes of this extension anywhere on the machine (found by their command line). */
function extensionRunners(extensionsDir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (cmd.includes('runner.js') && cmd.includes(extensionsDir)) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}


describe('an untrusted workspace in VS Code (code-server, workspace trust on)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  let ws = '';
  let extensionsDir = '';
  const it = workbenchIt(() => vs);

  before(
    async () => {
      if (workbenchMissing()) return;
      ws = scratchDir('e2e-trust');
      const scratch = scratchDir('e2e-trust-model');
      const model = await ensureDemoModel(scratch, DEMO);
      mkdirSync(join(ws, 'models'));
      copyFileSync(model, join(ws, 'models', 'demo.onnx'));
      rmSync(scratch, { recursive: true, force: true });
      writeFileSync(
        join(ws, 'parallax.json'),
        `${JSON.stringify({ plans: { two: { model: 'models/demo.onnx', mode: 'data', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1 } } }, null, 2)}\n`,
      );
      // The trace to view, written by the CLI before the workbench starts.
      const r = await runCli(['profile', 'models/demo.onnx', '--devices', 'cpu:2', '--batch', '8', '--steps', '2', '--warmup', '1', '--out', join(ws, TRACE)], { cwd: ws });
      assert.equal(r.code, 0, r.stderr);
      vs = await VsCodeHarness.start({
        workspace: ws,
        vsix: ensureVsix(),
        name: 'trust',
        trust: true,
        // No trust dialog at start: the folder simply stays untrusted (Restricted Mode).
        settings: { 'security.workspace.trust.startupPrompt': 'never', 'security.workspace.trust.banner': 'never', 'parallax.timeline.openOnFinish': false },
        keybindings: MODEL_COMMANDS.map((c) => ({ key: c.key, command: c.command, ...('args' in c ? { args: c.args } : {}) })),
      });
      extensionsDir = join((vs as unknown as { temp: string }).temp, 'extensions');
    },
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('the workspace is in Restricted Mode', async () => {
    const h = vs!;
    await h.page.locator('.statusbar-item').filter({ hasText: /Restricted Mode/ }).first().waitFor({ state: 'visible', timeout: 30_000 });
  });

  it('profiling from the palette refuses with a warning that says why, and runs nothing', async () => {
    const h = vs!;
    for (const title of ['Parallax: Profile Model…', 'Parallax: Profile with Config…', 'Parallax: Sweep Plans…']) {
      await h.clearNotifications();
      await h.runCommand(title);
      const text = await h.waitForNotification(REFUSAL, { timeoutMs: 30_000 });
      assert.match(text, /Trust this workspace to profile/);
      // No model or config was asked for.
      assert.equal(await h.page.locator('.quick-input-widget .quick-input-box input').isVisible(), false, `${title}: no quick pick`);
    }
    assert.deepEqual(extensionRunners(extensionsDir), [], 'no runner process');
    assert.deepEqual(readdirSync(join(ws, 'runs')), ['x.parallax.json'], 'no trace written');
  });

  it('every command that runs a model refuses when run with arguments through the command service', async () => {
    const h = vs!;
    for (const c of MODEL_COMMANDS) {
      await h.clearNotifications();
      await h.page.locator('.monaco-workbench').focus();
      await h.page.keyboard.press(c.press);
      const text = await h.waitForNotification(REFUSAL, { timeoutMs: 30_000 }).catch((e: Error) => {
        throw new Error(`${c.command}: ${e.message}`);
      });
      assert.match(text, /trusted workspace/, c.command);
      assert.deepEqual(extensionRunners(extensionsDir), [], `${c.command}: no runner process`);
    }
    assert.deepEqual(readdirSync(join(ws, 'runs')), ['x.parallax.json'], 'no trace written');
  });

  it("the plan's CodeLens says the workspace must be trusted first", async () => {
    const h = vs!;
    await h.openFile('parallax.json');
    const lens = h.page.locator('.codelens-decoration').filter({ hasText: /trust the workspace first/ }).first();
    await lens.waitFor({ state: 'visible', timeout: 30_000 });
    assert.equal(await h.page.locator('.codelens-decoration').filter({ hasText: /▶ Profile/ }).count(), 0, 'no Profile lens');
    await h.closeTabs('parallax.json');
  });

  it('opening and viewing a trace works', async () => {
    const h = vs!;
    await h.runCommand('Parallax: Show Timeline');
    const frame = await timelineFrame(h);
    const trace = JSON.parse(readFileSync(join(ws, TRACE), 'utf8')) as { lanes: unknown[] };
    assert.equal(await frame.locator('.px-app .px-lane').count(), trace.lanes.length, 'one lane per device');
  });

  it('hostile messages from the view are rejected and logged, and nothing happens', async () => {
    const h = vs!;
    const frame = await timelineFrame(h);
    await h.clearNotifications();
    const tabs = await h.page.locator('.tabs-container .tab').count();
    const hostile: [unknown, RegExp][] = [
      [{ type: 'openFile', path: '/etc/passwd' }, /unknown message type "openFile"/],
      [{ type: 'executeCommand', command: 'workbench.action.terminal.new', args: [] }, /unknown message type "executeCommand"/],
      [{ type: 'ready' }, /ready: /],
      [{ type: 'openSource', run: 0, span: 0, name: 'n', opType: null, lane: 0, device: 'cpu:0', path: '/etc/passwd' }, /openSource: /],
      [{ type: 'selectRange', startUs: 'a', endUs: 'b' }, /selectRange: \/startUs/],
      [{ type: 'error', message: 'Z'.repeat(200_000) }, /error: \/message/],
      [[1, 2, 3], /not a message object/],
    ];
    for (const [m] of hostile) await postFromView(frame, m);
    // A well-formed message after them shows that the channel delivers what the view posts.
    await postFromView(frame, { type: 'error', message: 'probe after the hostile messages' });
    await h.waitForLog(OUTPUT_LOG, /timeline view: probe after the hostile messages/);
    const log = h.logText(OUTPUT_LOG);
    const rejected = log.split('\n').filter((l) => /rejected a message from the view/.test(l));
    for (const [m, re] of hostile) assert.ok(rejected.some((l) => re.test(l)), `logged as rejected: ${JSON.stringify(m).slice(0, 80)} (lines: ${rejected.join(' | ').slice(0, 2000)})`);
    assert.ok(rejected.every((l) => l.length < 400), 'rejections are logged in one short line each');
    assert.doesNotMatch(log, /Z{100}/, 'the oversized payload is not copied into the log');
    // Nothing happened: no editor opened, no terminal, no notification, the view still shows its trace.
    assert.equal(await h.page.locator('.tabs-container .tab').count(), tabs, 'no editor opened');
    assert.equal(await h.page.locator('.terminal-wrapper').count(), 0, 'no terminal opened');
    assert.deepEqual(await h.notifications(), [], 'no notification');
    assert.equal(await frame.evaluate('window.__parallax.stats().loaded'), true, 'the view still shows its trace');
    assert.deepEqual(extensionRunners(extensionsDir), [], 'no runner process');
  });
});
