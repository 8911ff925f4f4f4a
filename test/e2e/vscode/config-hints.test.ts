/**
 * Run configurations and inline hints in a real VS Code (code-server + headless Chromium):
 * a workspace with a parallax.json pipeline plan of 2 micro-batches on a demo-like model is
 * profiled through "Parallax: Profile with Config"; the plan's CodeLens then shows the step
 * time, a warning sits at "microBatches" with the bubble finding, its quick fix (Ctrl+.)
 * writes the suggested count, and the re-run from the CodeLens changes the step time. The
 * model's Python source gets inlay hints, and the Parallax views list the runs and findings;
 * a finding opens the timeline at its evidence, with its config key one click away.
 * Screenshots go to test-artifacts/vscode/config-hints-*.png.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { ensureDemoModel } from '../../../src/runtime/onnx/demo-model';
import { readTrace } from '../../../src/profiler/trace-io';
import { closeWorkbench, ensureVsix, VsCodeHarness, workbenchIt, workbenchMissing } from './harness';
import { scratchDir } from '../../helpers/temp';
import { runCli } from '../../helpers/cli';
import { configTraceName } from '../../../src/extension/config-model';
import type { ProfileSummary } from '../../../src/profiler/summary';

/**
 * Wide enough that a micro-batch's work dwarfs its fixed cost on two cores, so that 2
 * micro-batches on 2 stages leave a bubble the findings can predict a gain for. Batch 1024
 * (about 70 ms a step here) keeps the finding when the workbench competes for the cores;
 * at 512 it was sometimes predicted under the 3% the rule asks for.
 */
const DEMO = { layers: 8, hidden: 256, ffn: 1024 } as const;
const PLAN = 'pipe2';
/** The plan's CodeLens after a run: a quality verdict when not good, then step, efficiency and bubble. */
const LENS = /^(measurement quality \w+ · )?last step [\d.]+ (ms|µs) · (efficiency \d+%( \(unreliable\))? · )?bubble \d+%$/;

/** The classes the demo model's node names pretend to come from (see runtime/onnx/demo-model.ts). */
const MODEL_PY = `import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.fc1 = nn.Linear(hidden, ffn)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(ffn, hidden)


class Block(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.ln = nn.LayerNorm(hidden)
        self.mlp = MLP(hidden, ffn)


class DemoMLP(nn.Module):
    def __init__(self, layers=8, hidden=256, ffn=1024):
        super().__init__()
        self.layers = nn.ModuleList([Block(hidden, ffn) for _ in range(layers)])
`;

describe('parallax.json plans, CodeLens, diagnostics and quick fix in VS Code (code-server)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  const it = workbenchIt(() => vs);
  let ws = '';
  let modelName = '';
  let firstLens = '';
  let suggested = 0;
  /** The quiet run's copy among the plan's runs, while the warning tests use it. */
  let quietCopy = '';
  /** Whether a quiet run advised the bubble change (a warning with a micro-batch count), and what each try found. */
  let quietOk = false;
  let quietTries = '';

  before(
    async () => {
      if (workbenchMissing()) return;
      ws = scratchDir('e2e-config');
      const scratch = scratchDir('e2e-model');
      const model = await ensureDemoModel(scratch, DEMO);
      modelName = model.split('/').pop()!;
      mkdirSync(join(ws, 'models'));
      copyFileSync(model, join(ws, 'models', modelName));
      rmSync(scratch, { recursive: true, force: true });
      const config = {
        plans: {
          [PLAN]: { model: `models/${modelName}`, mode: 'pipeline', devices: 'cpu:2', batch: 1024, microBatches: 2, steps: 8, warmup: 1 },
        },
      };
      writeFileSync(join(ws, 'parallax.json'), `${JSON.stringify(config, null, 2)}\n`);
      writeFileSync(join(ws, 'model.py'), MODEL_PY);
      // A run of the same plan measured before the workbench starts: on two cores, code-server
      // and Chromium take enough of the machine that a run inside it is poorly measured and its
      // timing advice held back (as it should be). The warning and its fix are shown on this
      // quietly measured run; the runs made from VS Code below are real, their advice aside.
      // It runs without the micro-batch probe: its advice then comes from the one-point step
      // model, which at this batch always finds more micro-batches worth it, whereas a probe
      // measures 4 micro-batches and, on two cores shared with the workbench, may find them
      // slower (the advice is then information, with no squiggle). This test is about the
      // warning and its fix, not about which count wins on this machine; for the same reason
      // its advice is shown with a caveat if even this run was measured while the machine
      // was busy (a shared CI machine can be), rather than held back.
      // A shared machine can measure a run too noisily for the bubble's gain to beat the
      // noise, or give two stages no second core at all (a CI machine did: 1.00× over one
      // device, and no bubble advice, rightly). The warning needs a run whose advice is the
      // bubble, so up to three runs of 16 steps are measured and the first such one serves;
      // if none does, the warning test fails naming what each run measured and advised.
      const tries: string[] = [];
      for (let attempt = 1; attempt <= 3 && !quietOk; attempt++) {
        const out = join(ws, 'quiet.parallax.json');
        const r = await runCli(
          ['profile', `models/${modelName}`, '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '1024', '--micro-batches', '2', '--steps', '16', '--warmup', '1', '--no-probe', '--advice-on-poor-quality', 'show', '--out', out, '--json'],
          { cwd: ws, timeoutMs: 5 * 60_000 },
        );
        assert.equal(r.code, 0, r.stderr);
        const t = await readTrace(out);
        const found = (t.findings ?? []) as { id: string; severity: string; message: string; heldBack?: unknown; change: { params: Record<string, unknown> } }[];
        quietOk = found.some((f) => f.id === 'pipeline-bubble' && f.severity !== 'info' && !f.heldBack && typeof f.change.params['microBatches'] === 'number');
        const sum = t.summary as Partial<ProfileSummary> | undefined;
        const q = sum?.measurementQuality;
        tries.push(`run ${attempt}: quality ${q?.verdict ?? '?'} (noise ${q ? (q.noiseUs / 1000).toFixed(1) : '?'} ms), speedup ${sum?.speedupVsOneDevice?.toFixed(2) ?? '?'}×; findings: ${found.map((f) => `${f.id} [${f.severity}]: ${f.message}`).join(' | ') || 'none'}`);
      }
      quietTries = tries.join('\n');
      vs = await VsCodeHarness.start({ workspace: ws, vsix: ensureVsix(), name: 'config-hints', settings: {
          'editor.inlayHints.enabled': 'on',
          // code-server and Chromium share the runner's two cores here, so runs are often
          // poorly measured; this test is about the warning and its fix, so it asks for the
          // advice anyway (each finding then carries a caveat).
          'parallax.findings.onPoorMeasurement': 'show',
          // The CodeLens and diagnostics checked after each run are in parallax.json's editor;
          // the timeline opening over it is the extension suite's test.
          'parallax.timeline.openOnFinish': false,
        },
      });
    },
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  const lenses = (): Promise<string[]> => vs!.page.locator('.codelens-decoration').allTextContents();

  async function waitForLens(re: RegExp, timeoutMs = 30_000, not?: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const texts = (await lenses()).flatMap((t) => t.split('|').map((s) => s.trim()));
      const hit = texts.find((t) => re.test(t) && t !== not);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no CodeLens matching ${re}${not ? ` other than "${not}"` : ''}; lenses: ${JSON.stringify(texts)}`);
      await vs!.page.waitForTimeout(250);
    }
  }

  /** Waits until no warning squiggle overlaps the line of the token showing `text`. */
  async function waitNoSquiggleOn(text: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const k = await token(text).boundingBox();
      if (!k) {
        // The line is being re-rendered.
        await vs!.page.waitForTimeout(100);
        continue;
      }
      const ys = await vs!.page.locator('.monaco-editor .squiggly-warning').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().y + e.getBoundingClientRect().height / 2));
      if (!ys.some((y) => Math.abs(y - (k.y + k.height / 2)) < k.height)) return;
      if (Date.now() > deadline) throw new Error(`a warning still marks the line of ${text}`);
      await vs!.page.waitForTimeout(250);
    }
  }

  /** The editor's token that shows `text` on the visible lines. */
  const token = (text: string) => vs!.page.locator('.monaco-editor .view-line span span').filter({ hasText: text }).first();

  it('shows a ▶ Profile CodeLens over the plan', async () => {
    const h = vs!;
    await h.openFile('parallax.json');
    await waitForLens(/▶ Profile/);
    await h.screenshot('config-open');
  });

  it('profiles the plan through "Parallax: Profile with Config" and shows its step time in the CodeLens', async () => {
    const h = vs!;
    await h.clearNotifications();
    await h.runCommand('Parallax: Profile with Config');
    await h.waitForNotification(new RegExp(`Parallax: profiled plan "${PLAN}".*Trace: runs/`), { timeoutMs: 120_000, failOn: /Parallax: .*(failed|error|cannot)/i });
    firstLens = await waitForLens(LENS);
    await h.screenshot('profiled-lens');
    const traces = readdirSync(join(ws, 'runs')).filter((f) => f.startsWith(`${modelName.replace(/\.onnx$/, '')}.${PLAN}.`));
    assert.equal(traces.length, 1, `one trace of the plan: ${JSON.stringify(traces)}`);
    const trace = await readTrace(join(ws, 'runs', traces[0]!));
    assert.equal(trace.meta.plan.mode === 'pipeline' ? trace.meta.plan.microBatches : null, 2);
  });

  it('puts a warning at "microBatches" and a hover with the evidence and a timeline link', async () => {
    const h = vs!;
    assert.ok(quietOk, `no run measured before the workbench advised more micro-batches, so there is no warning to show:\n${quietTries}`);
    // The quiet run becomes the plan's latest (a name a minute later than the run above).
    quietCopy = join(ws, 'runs', configTraceName(`models/${modelName}`, PLAN, new Date(Date.now() + 60_000)));
    copyFileSync(join(ws, 'quiet.parallax.json'), quietCopy);
    const key = token('"microBatches"');
    await key.waitFor({ state: 'visible' });
    // A warning squiggle sits on the key itself (others may mark other keys, e.g. "devices").
    const k = (await key.boundingBox())!;
    const deadline = Date.now() + 30_000;
    let boxes: { x: number; y: number; width: number; height: number }[] = [];
    const onKey = (s: { x: number; y: number; width: number; height: number }): boolean =>
      Math.abs(s.y + s.height / 2 - (k.y + k.height / 2)) < k.height && s.x < k.x + k.width && s.x + s.width > k.x;
    while (!boxes.some(onKey) && Date.now() < deadline) {
      await h.page.waitForTimeout(250);
      boxes = await h.page.locator('.monaco-editor .squiggly-warning').evaluateAll((els) =>
        els.map((e) => {
          const r = e.getBoundingClientRect();
          return { x: r.x, y: r.y, width: r.width, height: r.height };
        }),
      );
    }
    if (!boxes.some(onKey)) {
      const latest = readdirSync(join(ws, 'runs')).sort().pop()!;
      const found = ((await readTrace(join(ws, 'runs', latest))).findings ?? []) as { id: string; message: string }[];
      assert.fail(`no warning squiggle on the key ${JSON.stringify(k)}: ${JSON.stringify(boxes)}; the run's findings: ${found.map((f) => `${f.id}: ${f.message}`).join(' | ')}`);
    }
    await key.hover();
    const hover = h.page.locator('.monaco-hover').filter({ hasText: 'micro-batches predicts' }).first();
    await hover.waitFor({ state: 'visible', timeout: 15_000 });
    const text = (await hover.textContent()) ?? '';
    await h.screenshot('diagnostic-hover');
    const m = /bubble (\d+)%; (\d+) micro-batches predicts (\d+)%/.exec(text);
    assert.ok(m, `hover: ${text}`);
    suggested = Number(m[2]);
    assert.ok(suggested > 2 && 1024 % suggested === 0, `suggested ${suggested}`);
    assert.match(text, /Parallax · pipeline-bubble/);
    assert.match(text, /Show the evidence in the timeline/);
    await h.page.keyboard.press('Escape');
  });

  it('applies the quick fix from Ctrl+. and the warning goes away', async () => {
    const h = vs!;
    await token('"microBatches"').click();
    await h.page.keyboard.press('Control+.');
    const fix = h.page.locator('.action-widget .monaco-list-row.action').filter({ hasText: `Set "microBatches" to ${suggested}` }).first();
    await fix.waitFor({ state: 'visible', timeout: 15_000 });
    await h.screenshot('quick-fix');
    // The widget's pointer block swallows clicks right after it opens: choose as from the keyboard.
    for (let i = 0; i < 5 && !((await fix.getAttribute('class')) ?? '').includes('focused'); i++) await h.page.keyboard.press('ArrowDown');
    await h.page.keyboard.press('Enter');
    const want = new RegExp(`"microBatches":\\s*${suggested},`);
    const line = h.page.locator('.monaco-editor .view-line').filter({ hasText: '"microBatches"' }).first();
    const deadline = Date.now() + 10_000;
    let text = '';
    while (!want.test(text) && Date.now() < deadline) {
      text = ((await line.textContent()) ?? '').replace(/\u00a0/g, ' ');
      if (!want.test(text)) await h.page.waitForTimeout(100);
    }
    assert.match(text, want);
    // The finding was about 2 micro-batches: with the value changed it is no longer shown.
    await waitNoSquiggleOn('"microBatches"');
    await waitForLens(/^(measurement quality \w+ · )?last step .* \(before the change to microBatches\)$/);
    await h.page.keyboard.press('Control+S');
    await h.screenshot('fixed');
  });

  it('re-runs from the CodeLens with the new value and the CodeLens step time changes', async () => {
    const h = vs!;
    // The quiet run has served the warning; the runs from VS Code are the plan's history.
    if (quietCopy) rmSync(quietCopy, { force: true });
    await h.clearNotifications();
    await h.page.locator('.codelens-decoration a').filter({ hasText: '▶ Profile' }).first().click();
    await h.waitForNotification(new RegExp(`Parallax: profiled plan "${PLAN}"`), { timeoutMs: 120_000, failOn: /Parallax: .*(failed|error|cannot)/i });
    // The lens said "(before the change to microBatches)" since the fix; the new run's has no such note.
    const second = await waitForLens(LENS, 30_000, firstLens);
    await h.screenshot('rerun-lens');
    const step = (lens: string): string | undefined => /last step ([\d.]+ (ms|µs))/.exec(lens)?.[1];
    assert.notEqual(step(second), step(firstLens), `${second} vs ${firstLens}`);
    const saved = JSON.parse(readFileSync(join(ws, 'parallax.json'), 'utf8')) as { plans: Record<string, { microBatches: number }> };
    assert.equal(saved.plans[PLAN]!.microBatches, suggested);
    const traces = readdirSync(join(ws, 'runs')).filter((f) => f.startsWith(`${modelName.replace(/\.onnx$/, '')}.${PLAN}.`)).sort();
    assert.equal(traces.length, 2, 'each run of the plan keeps its own trace');
    const rerun = (await readTrace(join(ws, 'runs', traces[1]!))).meta.plan;
    assert.equal(rerun.mode === 'pipeline' ? rerun.microBatches : null, suggested);
  });

  it('shows the share of step time on the model’s Python definitions', async () => {
    const h = vs!;
    await h.openFile('model.py');
    const lines = h.page.locator('.monaco-editor .view-lines');
    const deadline = Date.now() + 30_000;
    let text = '';
    while (!/self\.layers = .*◷ \d+(\.\d)?% of step/.test(text) && Date.now() < deadline) {
      await h.page.waitForTimeout(300);
      text = (await lines.first().innerText()).replace(/\u00a0/g, ' ');
    }
    await h.screenshot('python-hints');
    assert.match(text, /self\.layers = .*◷ \d+(\.\d)?% of step · (\[[\d–, ]+\] ◀ bottleneck|stages 0–1)/);
    assert.match(text, /self\.fc1 = nn\.Linear\(hidden, ffn\).*◷ \d+(\.\d)?% of step/);
  });

  it('lists the runs and the findings in the Parallax view container', async () => {
    const h = vs!;
    await h.runCommand('View: Show Parallax');
    // Tree rows carry their view's rows only: find each view's pane by its header's title.
    const pane = (title: string) => h.page.locator('.pane').filter({ has: h.page.locator('.pane-header h3.title', { hasText: new RegExp(`^${title}$`, 'i') }) });
    const runs = pane('Runs').locator('.monaco-list-row');
    await runs.nth(1).waitFor({ state: 'visible', timeout: 15_000 });
    const rows = await runs.allTextContents();
    assert.equal(rows.filter((r) => r.includes(`.${PLAN}.`)).length, 2, `runs: ${JSON.stringify(rows)}`);
    assert.ok(rows.every((r) => /pipeline · cpu:2 · step [\d.]+ ms/.test(r)), `runs: ${JSON.stringify(rows)}`);
    // The Findings view shows the run profiled last: as many rows as its trace has findings.
    const latest = readdirSync(join(ws, 'runs')).filter((f) => f.includes(`.${PLAN}.`)).sort().pop()!;
    const expected = ((await readTrace(join(ws, 'runs', latest))).findings ?? []).length;
    const findings = pane('Findings');
    if (expected > 0) await findings.locator('.monaco-list-row').nth(expected - 1).waitFor({ state: 'visible', timeout: 15_000 });
    else await findings.getByText('Findings of the current run appear here').waitFor({ state: 'visible', timeout: 15_000 });
    assert.equal(await findings.locator('.monaco-list-row').count(), expected);
    await h.screenshot('views');
    if (expected === 0) return;

    // A finding opens the timeline at its evidence: the range zoomed, its lanes highlighted.
    const row = findings.locator('.monaco-list-row').first();
    await row.click();
    const deadline = Date.now() + 60_000;
    type Highlight = { lanes: { run: number; lane: number }[]; startUs: number; endUs: number };
    let highlight: Highlight | null = null;
    let offset = 0;
    while (!highlight && Date.now() < deadline) {
      for (const f of h.webviewFrames()) {
        const st = (await f.evaluate('window.__parallax && window.__parallax.stats()').catch(() => null)) as {
          loaded: boolean;
          highlight: Highlight | null;
          runs: { offsetUs: number }[];
        } | null;
        if (st?.loaded && st.highlight) {
          highlight = st.highlight;
          offset = st.runs[0]?.offsetUs ?? 0;
        }
      }
      if (!highlight) await h.page.waitForTimeout(250);
    }
    await h.screenshot('finding-in-timeline');
    const hl = highlight as Highlight | null;
    assert.ok(hl, 'the timeline shows the finding highlighted');
    const trace = await readTrace(join(ws, 'runs', latest));
    const label = (await row.textContent()) ?? '';
    const shown = ((trace.findings ?? []) as { message: string; evidence: { startUs: number; endUs: number; lanes: number[] } }[]).filter((f) =>
      label.includes(f.message.split(/[.;:]\s/)[0]!.slice(0, 40)),
    );
    assert.ok(shown.length > 0, `the row "${label}" is one of the run's findings`);
    assert.ok(
      shown.some((f) => Math.abs(hl.startUs - (f.evidence.startUs - offset)) < 1e-3 && Math.abs(hl.endUs - (f.evidence.endUs - offset)) < 1e-3),
      `highlight ${JSON.stringify(hl)} is the evidence of ${JSON.stringify(shown.map((f) => f.evidence))}`,
    );
    assert.equal(await h.page.locator('.tabs-container .tab.active').filter({ hasText: 'parallax.json' }).count(), 0, 'the click did not jump to the config key');
    // The config key is the item's secondary action, one click away.
    await row.hover();
    await row.locator('.action-label[aria-label="Go to Config Key"]').click();
    const opened = h.page.locator('.tabs-container .tab.active').filter({ hasText: /parallax\.json|model\.py/ });
    const note = h.page.locator('.notification-list-item-message').filter({ hasText: /maps to no key of parallax\.json/ });
    await opened.or(note).first().waitFor({ state: 'visible', timeout: 15_000 });
    await h.screenshot('finding-config-key');
  });
});
