/**
 * The timeline view in real headless Chromium: the standalone HTML report of real runs
 * (profiled here with the built CLI), a hand-built pipeline trace, a predicted comparison,
 * the VS Code message protocol, and the level-of-detail bound on a large trace. What is
 * drawn is read through the view's test hook (`window.__parallax`, webview/src/hook-api.ts).
 *
 *   node --import tsx --test test/e2e/timeline.test.ts
 *
 * Needs a built CLI (`npm run build`) and /usr/bin/chromium. PARALLAX_SKIP_WEBGPU=1 skips the
 * heterogeneous cpu + webgpu run. Screenshots go to test-artifacts/ (git-ignored).
 */
import { after, before, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Browser, Page } from 'playwright-core';
import { REPO, runCli } from '../helpers/cli';
import { closeBrowserSuite, artifactPath, ensureWebviewBuilt, launch, locate, nextFrame, reportHtml, setView, stats, waitFor, waitLoaded, watchProblems, type PageProblems } from '../helpers/browser';
import { meta, pipelinePlan } from '../helpers/trace-builders';
import { axisUnit } from '../../webview/src/format';
import { TraceBuilder, type Trace, type TraceJson } from '../../src/profiler/trace-format';
import { serializeTrace } from '../../src/profiler/trace-io';
import { writeHtmlReport } from '../../src/cli/html';
import { prepare, visibleSpan, ROW_OPS, ROWS_PER_LANE } from '../../webview/src/model';
import { chromiumMissing, gated, needs, vulkanMissing } from '../helpers/prerequisites';

const noWebgpu = needs(vulkanMissing()).skip;
const VIEWPORT = { width: 1600, height: 900 };

/** Spans per kind as the view counts them: operators apart from top-level compute. */
function kindCounts(t: TraceJson): { compute: number; comm: number; idle: number; op: number } {
  const s = t.spans;
  const c = { compute: 0, comm: 0, idle: 0, op: 0 };
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] === 0) {
      if (s.parent[i] >= 0 || (s.flags[i] & 8) !== 0) c.op++;
      else c.compute++;
    } else if (s.kind[i] === 1) c.comm++;
    else c.idle++;
  }
  return c;
}

function firstSpan(t: TraceJson, pred: (i: number) => boolean): number {
  for (let i = 0; i < t.spans.count; i++) if (pred(i)) return i;
  throw new Error('no such span');
}

/** A GPipe-style two-stage pipeline, four micro-batches, forward only, with known flows. */
function pipelineTrace(opts: { predicted?: boolean; shiftUs?: number; scale?: number } = {}): Trace {
  const shift = opts.shiftUs ?? 0;
  const k = opts.scale ?? 1;
  const flags = opts.predicted ? 2 : 0;
  const m = meta({ source: opts.predicted ? 'predicted' : 'measured', plan: pipelinePlan({ batch: 8, microBatches: 4, stages: 2 }) }, 2);
  m.devices[1] = { ...m.devices[1], id: 'webgpu:0', kind: 'webgpu', provider: 'webgpu', physicalUnit: 'gpu:0 (llvmpipe)', software: true, label: 'webgpu:0 (llvmpipe, software)' };
  const b = new TraceBuilder();
  const t = (us: number): number => shift + us * k;
  for (let mb = 0; mb < 4; mb++) {
    const c0 = b.push({ lane: 0, kind: 'compute', name: `forward stage 0 mb ${mb}`, start: t(mb * 110), dur: 100 * k, step: 0, micro: mb, stage: 0, flags });
    b.push({ lane: 0, kind: 'compute', name: `/stage0/MatMul_${mb}`, opType: 'MatMul', start: t(mb * 110 + 10), dur: 80 * k, step: 0, micro: mb, stage: 0, parent: c0, flags: flags | 8 });
    b.push({ lane: 0, kind: 'comm', name: 'send activations', comm: 'send', start: t(mb * 110 + 100), dur: 10 * k, step: 0, micro: mb, stage: 0, bytes: 4096, peer: 1, flags: flags | 1 });
    b.push({ lane: 1, kind: 'comm', name: 'recv activations', comm: 'recv', start: t(mb * 110 + 100), dur: 10 * k, step: 0, micro: mb, stage: 1, bytes: 4096, peer: 0, flags: flags | 1 });
    b.push({ lane: 1, kind: 'compute', name: `forward stage 1 mb ${mb}`, start: t(mb * 110 + 110), dur: 100 * k, step: 0, micro: mb, stage: 1, flags });
  }
  b.push({ lane: 1, kind: 'idle', name: 'idle', start: t(0), dur: 100 * k, step: 0, cause: 'bubble', stage: 1, flags });
  b.push({ lane: 0, kind: 'idle', name: 'idle', start: t(440), dur: 110 * k, step: 0, cause: 'bubble', stage: 0, flags });
  return {
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: [{ index: 0, startUs: t(0), endUs: t(550) }],
    spans: b.finish(),
    findings: [
      {
        id: 'bubble',
        severity: 'warning',
        message: 'Stage 1 waits 100 µs for its first micro-batch (pipeline fill).',
        evidence: { lanes: [1], startUs: t(0), endUs: t(110), numbers: { bubbleUs: 100 } },
        change: { description: 'Use more micro-batches.', params: { microBatches: 8 } },
        currentStepUs: 550,
        predictedStepUs: 500,
      },
    ],
  };
}

describe('timeline view in Chromium', () => {
  // Each test skips (and is counted) when Chromium is missing.
  const noBrowser = needs(chromiumMissing()).skip;
  const it = gated(test, chromiumMissing());
  let browser: Browser;
  let dir: string;
  let dpText: string;
  let dp: TraceJson;
  let hetText: string | null = null;
  const problems: PageProblems[] = [];

  before(async () => {
    if (noBrowser) return;
    dir = mkdtempSync(join(tmpdir(), 'parallax-timeline-'));
    if (!existsSync(join(REPO, 'dist', 'cli.js'))) {
      const r = spawnSync(process.execPath, [join(REPO, 'scripts', 'build.mjs')], { cwd: REPO, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    }
    ensureWebviewBuilt();
    const dpPath = join(dir, 'dp.parallax.json');
    const r1 = await runCli(['profile', 'demo', '--devices', 'cpu:2', '--batch', '16', '--steps', '3', '--out', dpPath]);
    assert.equal(r1.code, 0, r1.stderr);
    dpText = readFileSync(dpPath, 'utf8');
    dp = JSON.parse(dpText) as TraceJson;
    if (!noWebgpu) {
      const hetPath = join(dir, 'het.parallax.json');
      const r2 = await runCli(['profile', 'demo', '--devices', 'cpu:1,webgpu:1', '--batch', '16', '--steps', '3', '--out', hetPath]);
      assert.equal(r2.code, 0, r2.stderr);
      hetText = readFileSync(hetPath, 'utf8');
    }
    browser = await launch();
  });

  after(() => closeBrowserSuite(browser, dir, problems));

  async function open(html: string, opts: { colorScheme?: 'light' | 'dark' } = {}): Promise<Page> {
    const file = join(dir, `page-${problems.length}.html`);
    writeFileSync(file, html);
    const page = await browser.newPage({ viewport: VIEWPORT, colorScheme: opts.colorScheme ?? 'light' });
    problems.push(await watchProblems(page));
    await page.goto(`file://${file}`);
    await waitLoaded(page);
    return page;
  }

  it('draws one lane per device with compute, operator and comm rows, and every span of the run', async () => {
    const page = await open(reportHtml(dpText, { title: 'cpu:2 data parallel' }));
    const s = await stats(page);
    assert.deepEqual(
      s.lanes.map((l) => l.label),
      dp.lanes.map((l) => l.label),
    );
    assert.deepEqual(
      s.lanes.map((l) => l.rows),
      dp.lanes.map(() => ['compute', 'ops', 'comm']),
    );
    const labels = await page.$$eval('.px-lane .px-lane-label', (els) => els.map((e) => e.textContent));
    assert.deepEqual(labels, dp.lanes.map((l) => l.label));
    assert.equal(await page.locator('.px-group-header').count(), new Set(dp.lanes.map((l) => l.group)).size);
    // The whole run is in view, so every span is drawn, either on its own or merged into a pixel column.
    const want = kindCounts(dp);
    assert.deepEqual(s.runs[0].counts, want);
    for (const k of ['compute', 'comm', 'idle', 'op'] as const) {
      assert.equal(s.drawn.rects[k] + s.drawn.merged[k], want[k], `${k} spans drawn`);
    }
    assert.equal(s.drawn.rects.compute, want.compute, 'session.run spans are wide enough to draw one by one');
    assert.ok(s.drawn.collectives >= 3, 'scatter/gather collectives are marked');
    assert.ok(s.drawn.steps >= 3, 'step boundaries are drawn');
    // The axis covers the run.
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < dp.spans.count; i++) {
      lo = Math.min(lo, dp.spans.start[i]);
      hi = Math.max(hi, dp.spans.start[i] + dp.spans.dur[i]);
    }
    assert.ok(s.visible.startUs <= lo && s.visible.endUs >= hi, `view ${JSON.stringify(s.visible)} covers [${lo}, ${hi}]`);
    // The unit follows the visible range (the run's timed steps alternate with the baseline's, so it may pass a second).
    assert.equal(s.axis.unit, axisUnit(s.visible.endUs - s.visible.startUs).unit);
    assert.ok(s.axis.ticks.length >= 4, `axis ticks ${s.axis.ticks.join(', ')}`);
    assert.deepEqual(await page.$$eval('.px-axis .tick text', (els) => els.map((e) => e.textContent)), s.axis.ticks);
    // Summary strip: step time, speedup and numerics from the run.
    const summary = await page.locator('.px-summary').innerText();
    assert.match(summary, /step time: \d/);
    assert.match(summary, /speedup: \d+\.\d+× \(90% \d+\.\d+–\d+\.\d+×\) vs one device/);
    assert.match(summary, /numerics: ok/);
    assert.equal(await page.locator('.px-device .px-bar').count(), dp.lanes.length);
    await page.screenshot({ path: artifactPath('timeline-light.png') });
    await page.close();
  });

  it('shows a tooltip with name, op type, device, start, duration and step on hover', async () => {
    const page = await open(reportHtml(dpText));
    const run = firstSpan(dp, (i) => dp.spans.kind[i] === 0 && dp.spans.parent[i] < 0);
    const at = await locate(page, 0, run);
    assert.ok(at, 'the compute span is on screen');
    await page.mouse.move(at.x, at.y);
    await waitFor(page, 'window.__parallax.stats().tooltip.visible');
    let s = await stats(page);
    assert.deepEqual(s.hover, { run: 0, span: run });
    const tip = s.tooltip.text;
    assert.ok(tip.startsWith(dp.strings[dp.spans.name[run]]), tip);
    assert.ok(tip.includes(`device${dp.lanes[dp.spans.lane[run]].label}`), tip);
    assert.match(tip, /start[\d.]+ [mµ]?s/);
    assert.match(tip, /duration[\d.]+ ms/);
    assert.match(tip, /step0/);
    // Zoom onto one operator, then hover it: its op type is shown.
    const op = firstSpan(dp, (i) => dp.spans.parent[i] >= 0 && dp.spans.dur[i] > 50);
    const os = dp.spans.start[op];
    await setView(page, os - dp.spans.dur[op], os + 2 * dp.spans.dur[op]);
    const at2 = await locate(page, 0, op);
    assert.ok(at2);
    await page.mouse.move(at2.x, at2.y);
    await waitFor(page, `window.__parallax.stats().hover && window.__parallax.stats().hover.span === ${op}`);
    s = await stats(page);
    assert.ok(s.tooltip.text.includes(`op type${dp.strings[dp.spans.opType[op]]}`), s.tooltip.text);
    assert.ok(s.drawn.labels > 0, 'wide spans carry their names');
    await page.close();
  });

  it('zooms with the wheel around the pointer, pans by drag and with W/A/S/D', async () => {
    const page = await open(reportHtml(dpText));
    const s0 = await stats(page);
    const box = (await page.locator('.px-canvas-wrap').boundingBox())!;
    const cx = box.x + box.width / 2;
    const cy = box.y + 40;
    await page.mouse.move(cx, cy);
    await page.mouse.wheel(0, -400);
    await waitFor(page, `window.__parallax.stats().visible.endUs - window.__parallax.stats().visible.startUs < ${(s0.visible.endUs - s0.visible.startUs) * 0.8}`);
    const s1 = await nextFrame(page);
    const w1 = s1.visible.endUs - s1.visible.startUs;
    const mid0 = (s0.visible.startUs + s0.visible.endUs) / 2;
    const mid1 = (s1.visible.startUs + s1.visible.endUs) / 2;
    assert.ok(Math.abs(mid1 - mid0) < (s0.visible.endUs - s0.visible.startUs) * 0.05, 'zoomed around the pointer at the centre');
    // Drag right by 200 px: the view moves left in time by 200 px worth.
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    await page.mouse.move(cx + 100, cy, { steps: 4 });
    await page.mouse.move(cx + 200, cy, { steps: 4 });
    await page.mouse.up();
    const s2 = await nextFrame(page);
    const perPx = w1 / s1.canvas.width;
    assert.ok(Math.abs(s1.visible.startUs - s2.visible.startUs - 200 * perPx) < 5 * perPx, `drag panned: ${s1.visible.startUs} → ${s2.visible.startUs}`);
    // Keyboard, as in Perfetto.
    await page.locator('.px-canvas-wrap').focus();
    await page.keyboard.press('d');
    const s3 = await nextFrame(page);
    assert.ok(s3.visible.startUs > s2.visible.startUs, 'D pans right');
    await page.keyboard.press('a');
    await page.keyboard.press('a');
    const s4 = await nextFrame(page);
    assert.ok(s4.visible.startUs < s3.visible.startUs, 'A pans left');
    await page.keyboard.press('w');
    const s5 = await nextFrame(page);
    assert.ok(s5.visible.endUs - s5.visible.startUs < s4.visible.endUs - s4.visible.startUs, 'W zooms in');
    await page.keyboard.press('s');
    await page.keyboard.press('s');
    const s6 = await nextFrame(page);
    assert.ok(s6.visible.endUs - s6.visible.startUs > s5.visible.endUs - s5.visible.startUs, 'S zooms out');
    await page.keyboard.press('0');
    const s7 = await nextFrame(page);
    assert.deepEqual(s7.visible, s0.visible, '0 resets the view');
    await page.close();
  });

  it('brushing the time axis selects a range and breaks it down per lane', async () => {
    const page = await open(reportHtml(dpText));
    const axis = (await page.locator('svg.px-axis').boundingBox())!;
    await page.mouse.move(axis.x + 100, axis.y + 14);
    await page.mouse.down();
    await page.mouse.move(axis.x + 300, axis.y + 14, { steps: 5 });
    await page.mouse.move(axis.x + 500, axis.y + 14, { steps: 5 });
    await page.mouse.up();
    const s = await nextFrame(page);
    assert.ok(s.selection, 'a range is selected');
    const rows = await page.locator('.px-range-table tbody tr').count();
    assert.equal(rows, dp.lanes.length);
    const text = await page.locator('.px-range-box').innerText();
    assert.match(text, /compute/);
    const sent = (await page.evaluate('window.__parallax.sent')) as { type: string; startUs?: number }[];
    const sel = sent.filter((m) => m.type === 'selectRange').at(-1);
    assert.ok(sel && typeof sel.startUs === 'number', 'the host is told about the range');
    // Zooming keeps the selection in time.
    await page.keyboard.press('w');
    const s2 = await nextFrame(page);
    assert.deepEqual(s2.selection, s.selection);
    await page.keyboard.press('Escape');
    assert.equal((await nextFrame(page)).selection, null);
    await page.close();
  });

  it('keyboard: lanes are focusable, arrows move between lanes and spans with a visible focus', async () => {
    const page = await open(reportHtml(dpText));
    await page.locator('.px-lane').first().focus();
    await page.keyboard.press('ArrowDown');
    assert.equal(await page.evaluate('document.activeElement.getAttribute("aria-label")'), await page.locator('.px-lane').nth(1).getAttribute('aria-label'));
    const outline = await page.evaluate('getComputedStyle(document.activeElement).outlineStyle');
    assert.notEqual(outline, 'none', 'focused lane shows a focus outline');
    await page.keyboard.press('ArrowRight');
    await waitFor(page, 'window.__parallax.stats().selected !== null && window.__parallax.stats().tooltip.visible');
    const s = await stats(page);
    assert.equal(dp.spans.lane[s.selected!.span], dp.lanes.length > 1 ? 1 : 0);
    await page.keyboard.press('Enter');
    await page.waitForTimeout(400);
    const s2 = await stats(page);
    assert.ok(s2.visible.endUs - s2.visible.startUs < s.visible.endUs - s.visible.startUs, 'Enter zooms to the selected span');
    // Findings and lanes are reachable with Tab.
    assert.ok(await page.locator('.px-lane[tabindex="0"]').count() === 1, 'one lane in the tab order (roving focus)');
    await page.close();
  });

  it('heterogeneous run: lanes say shared/software, the straggler finding moves the view', needs(vulkanMissing()), async () => {
    const het = JSON.parse(hetText!) as TraceJson;
    const page = await open(reportHtml(hetText!, { title: 'cpu + webgpu' }));
    const s0 = await stats(page);
    const gpuLane = s0.lanes.find((l) => l.device.startsWith('webgpu'));
    assert.ok(gpuLane?.software && gpuLane.shared, 'webgpu lane is software and shared');
    const laneText = await page.locator('.px-lane').nth(s0.lanes.indexOf(gpuLane)).innerText();
    assert.match(laneText, /software/);
    assert.match(laneText, /shared unit/);
    assert.ok(laneText.includes(gpuLane.label), 'lane label text as given');
    const f = (het.findings as { id: string; evidence: { startUs: number; endUs: number; lanes: number[] } }[]).find((x) => x.id === 'straggler');
    assert.ok(f, 'the run has a straggler finding');
    // Zoom far in elsewhere first, so the click has to move the view.
    await setView(page, 100, 200);
    await page.locator('.px-finding').first().click();
    await waitFor(page, 'window.__parallax.stats().highlight !== null');
    await page.waitForTimeout(400);
    const s = await stats(page);
    const w = f.evidence.endUs - f.evidence.startUs;
    assert.ok(Math.abs(s.visible.startUs - Math.max(s.extent.startUs, f.evidence.startUs - 0.04 * w)) < 0.02 * w, JSON.stringify(s.visible));
    assert.ok(Math.abs(s.visible.endUs - Math.min(s.extent.endUs, f.evidence.endUs + 0.04 * w)) < 0.02 * w, JSON.stringify(s.visible));
    assert.deepEqual(s.highlight!.lanes.map((l) => l.lane).sort(), [...f.evidence.lanes].sort());
    assert.equal(await page.locator('.px-finding[aria-pressed="true"]').count(), 1);
    assert.equal(await page.locator('.px-lane.px-highlighted').count(), f.evidence.lanes.length);
    const sent = (await page.evaluate('window.__parallax.sent')) as { type: string; id?: string }[];
    assert.ok(sent.some((m) => m.type === 'selectFinding' && m.id === 'straggler'));
    await page.screenshot({ path: artifactPath('timeline-heterogeneous-finding.png') });
    await page.close();
  });

  it('follows light and dark themes (explicit data-theme and prefers-color-scheme)', async () => {
    const light = await open(reportHtml(dpText, { theme: 'light' }), { colorScheme: 'dark' });
    const dark = await open(reportHtml(dpText, { theme: 'dark' }), { colorScheme: 'light' });
    const auto = await open(reportHtml(dpText), { colorScheme: 'dark' });
    const [sl, sd, sa] = await Promise.all([stats(light), stats(dark), stats(auto)]);
    assert.equal(sl.theme.dark, false);
    assert.equal(sd.theme.dark, true);
    assert.equal(sa.theme.dark, true, 'follows prefers-color-scheme when no theme is forced');
    await light.screenshot({ path: artifactPath('timeline-theme-light.png') });
    await dark.screenshot({ path: artifactPath('timeline-theme-dark.png') });
    // A theme change (as VS Code makes) repaints with the new colours.
    await dark.evaluate(`document.documentElement.setAttribute('data-theme', 'light')`);
    await waitFor(dark, 'window.__parallax.stats().theme.dark === false');
    // The legend lists the kinds the run holds: a data-parallel run has no pipeline bubble and nothing predicted.
    assert.ok(sl.legend.includes('compute') && sl.legend.includes('operator'), sl.legend.join(', '));
    assert.ok(!sl.legend.includes('idle: pipeline bubble') && !sl.legend.includes('predicted (striped)'), sl.legend.join(', '));
    assert.equal(await light.locator('.px-legend-item').count(), sl.legend.length);
    await Promise.all([light.close(), dark.close(), auto.close()]);
  });

  it('pipeline: draws send→recv flows, bubbles and stages; compares with a predicted run', async () => {
    const measured = pipelineTrace();
    const predicted = pipelineTrace({ predicted: true, shiftUs: 1000, scale: 0.9 });
    const page = await open(reportHtml(serializeTrace(measured), { title: 'pipeline' }));
    let s = await stats(page);
    assert.equal(s.drawn.flows, 4, 'one arrow per micro-batch transfer');
    assert.deepEqual(
      s.lanes.map((l) => l.rows[0]),
      ['stage 0', 'stage 1'],
    );
    assert.ok(s.drawn.rects.idle + s.drawn.merged.idle === 2, 'both bubbles drawn');
    const recv = firstSpan(JSON.parse(serializeTrace(measured)) as TraceJson, (i) => measured.strings[measured.spans.name[i]] === 'recv activations');
    const at = await locate(page, 0, recv);
    assert.ok(at);
    await page.mouse.move(at.x, at.y);
    await waitFor(page, 'window.__parallax.stats().tooltip.visible');
    s = await stats(page);
    for (const want of ['micro-batch0', 'stage1', 'bytes4 KiB (4,096 B)', 'peercpu:0 (1 thread)', 'emulated']) assert.ok(s.tooltip.text.includes(want), `${want} in ${s.tooltip.text}`);
    await page.screenshot({ path: artifactPath('timeline-pipeline.png') });
    await page.close();

    // Measured above predicted, both relative to their first step.
    const cmp = await open(reportHtml(serializeTrace(measured), { title: 'measured', compare: serializeTrace(predicted) }));
    s = await stats(cmp);
    assert.equal(s.runs.length, 2);
    assert.equal(s.runs[1].predicted, true);
    assert.equal(s.runs[0].predicted, false);
    assert.equal(s.runs[1].offsetUs, 1000);
    assert.equal(s.lanes.length, 4);
    assert.equal(s.drawn.flows, 8);
    const header = await cmp.locator('.px-run-header').nth(1).innerText();
    assert.match(header, /predicted/);
    assert.equal(await cmp.locator('.px-lane .px-badge-predicted').count(), 2, 'each predicted lane says so');
    const diff = await cmp.locator('.px-compare-diff').innerText();
    assert.match(diff, /Step time B − A: −55(\.0)? µs \(−10\.0%\), B is faster/);
    // Aligned: the first compute span of each run starts at the same x.
    const a = await locate(cmp, 0, 0);
    const b = await locate(cmp, 1, 0);
    assert.ok(a && b);
    assert.ok(Math.abs(a.x - b.x) < 40, `aligned at the step start: ${a.x} vs ${b.x}`);
    await cmp.screenshot({ path: artifactPath('timeline-compare-predicted.png') });
    await cmp.close();
  });

  it('speaks the VS Code webview protocol: ready, validated load, reveal, errors', async () => {
    const page = await browser.newPage({ viewport: VIEWPORT });
    const p = await watchProblems(page);
    problems.push(p);
    await page.addInitScript(
      `window.__vscodeSent = []; window.acquireVsCodeApi = function () { return { postMessage: function (m) { window.__vscodeSent.push(m); }, getState: function () { return undefined; }, setState: function () {} }; };`,
    );
    const file = join(dir, 'vscode.html');
    writeFileSync(file, reportHtml(dpText));
    await page.goto(`file://${file}`);
    await waitFor(page, 'window.__vscodeSent.some(function (m) { return m.type === "ready"; })');
    // In a webview the embedded data is not used: the host sends the trace.
    assert.equal((await stats(page)).loaded, false);
    await page.evaluate(`window.postMessage({ type: 'load', trace: ${dpText.replace(/</g, '\\u003c')}, title: 'from host' }, '*')`);
    await waitLoaded(page);
    const sent = (await page.evaluate('window.__vscodeSent')) as { type: string }[];
    assert.ok(sent.some((m) => m.type === 'loaded'));
    // reveal: trace-clock range and lanes.
    await page.evaluate(`window.postMessage({ type: 'reveal', startUs: 1000, endUs: 3000, lanes: [1] }, '*')`);
    await waitFor(page, 'window.__parallax.stats().highlight !== null');
    await page.waitForTimeout(350);
    const s = await stats(page);
    assert.ok(Math.abs(s.visible.startUs - 920) < 1 && Math.abs(s.visible.endUs - 3080) < 1, JSON.stringify(s.visible));
    assert.deepEqual(s.highlight!.lanes, [{ run: 0, lane: 1 }]);
    // Bad messages are refused with a reason, and the view keeps working.
    await page.evaluate(`window.postMessage({ type: 'reveal', startUs: 'x' }, '*')`);
    await page.evaluate(`window.postMessage({ type: 'load', trace: { format: 'parallax-trace', version: 1 } }, '*')`);
    await waitFor(page, 'window.__vscodeSent.filter(function (m) { return m.type === "error"; }).length >= 2');
    const errors = ((await page.evaluate('window.__vscodeSent')) as { type: string; message?: string }[]).filter((m) => m.type === 'error');
    assert.match(errors[0].message!, /reveal/);
    assert.match(errors[1].message!, /invalid trace/);
    assert.equal(await page.locator('.px-error').isVisible(), true);
    // Theme message re-reads the colours.
    await page.evaluate(`document.documentElement.setAttribute('data-theme', 'dark'); window.postMessage({ type: 'theme' }, '*')`);
    await waitFor(page, 'window.__parallax.stats().theme.dark === true');
    await page.close();
  });

  it('accepts typed-array columns and bounds a large trace to what the screen can show', async () => {
    const page = await open(reportHtml(dpText));
    // 400k spans, 4 lanes, built in the page as typed columns (the binary path hosts can use).
    const n = 400_000;
    const s = (await page.evaluate(`(() => {
      const lanes = 4, n = ${n};
      const cols = { count: n, lane: new Int32Array(n), kind: new Uint8Array(n), name: new Int32Array(n), opType: new Int32Array(n).fill(-1),
        start: new Float64Array(n), dur: new Float64Array(n), step: new Int32Array(n), micro: new Int32Array(n).fill(-1), stage: new Int32Array(n).fill(-1),
        bytes: new Float64Array(n), peer: new Int32Array(n).fill(-1), parent: new Int32Array(n).fill(-1), flags: new Uint8Array(n), cause: new Uint8Array(n) };
      const per = n / lanes;
      for (let l = 0; l < lanes; l++) for (let j = 0; j < per; j++) {
        const i = l * per + j; cols.lane[i] = l; cols.start[i] = j * 10; cols.dur[i] = 6 + (j % 3);
        cols.kind[i] = j % 10 === 9 ? 2 : j % 10 === 5 ? 1 : 0; cols.cause[i] = cols.kind[i] === 2 ? 3 : 0; cols.name[i] = cols.kind[i];
      }
      const doc = { format: 'parallax-trace', version: 1, meta: ${JSON.stringify({ ...dp.meta, devices: [0, 1, 2, 3].map((i) => ({ ...dp.meta.devices[0], id: `cpu:${i}`, label: `cpu:${i}` })) })},
        strings: ['compute', 'comm', 'idle'], lanes: [0, 1, 2, 3].map(i => ({ device: i, label: 'cpu:' + i, group: 'host-cpu' })), steps: [], spans: cols };
      return window.__parallax.load(doc);
    })()`)) as Awaited<ReturnType<typeof stats>>;
    assert.equal(s.loaded, true, s.error ?? '');
    assert.equal(s.runs[0].spans, n);
    const rows = s.lanes.reduce((a, l) => a + l.rows.length, 0);
    assert.ok(s.drawn.pyramidRows > 0, 'zoomed out, dense rows come from the pyramid');
    assert.ok(s.drawn.columns <= rows * s.canvas.width * s.canvas.dpr, `${s.drawn.columns} columns for ${rows} rows`);
    assert.ok(s.drawn.buckets <= rows * 4 * s.canvas.width * s.canvas.dpr, `${s.drawn.buckets} buckets`);
    // Zoomed in, spans are drawn one by one again.
    const z = await setView(page, 1000, 3000);
    assert.ok(z.drawn.rects.compute > 0 && z.drawn.pyramidRows === 0);
    // A column that does not match its declared type is converted; one out of range is refused.
    const bad = (await page.evaluate(`(() => {
      const doc = JSON.parse(document.getElementById('parallax-trace').textContent);
      const n = doc.spans.count; const cols = { count: n };
      for (const k of Object.keys(doc.spans)) if (k !== 'count') cols[k] = Float64Array.from(doc.spans[k]);
      cols.lane[0] = 99; doc.spans = cols;
      return window.__parallax.load(doc);
    })()`)) as Awaited<ReturnType<typeof stats>>;
    assert.match(bad.error ?? '', /spans\.lane\[0\] is out of range/);
    await page.close();
  });

  it('writeHtmlReport writes a self-contained report from a trace file', async () => {
    const out = join(dir, 'report.html');
    const tracePath = join(dir, 'dp.parallax.json');
    await writeHtmlReport(tracePath, out, tracePath);
    const html = readFileSync(out, 'utf8');
    assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;; script-src &#39;sha256-/);
    assert.doesNotMatch(html, /<script src=|<link /, 'nothing is loaded from outside the file');
    const page = await open(html);
    const s = await stats(page);
    assert.equal(s.runs.length, 2, 'compare run embedded');
    await page.close();
    await assert.rejects(writeHtmlReport(join(dir, 'missing.json'), out), /no such file/);
  });
});

describe('timeline model (in Node)', () => {
  it('indexes rows, finds visible spans and pairs flows by lane, peer, micro-batch and order', () => {
    const t = pipelineTrace();
    const s = t.spans;
    const p = prepare({ ...s, nLanes: 2 });
    assert.equal(p.flows.send.length, 4);
    for (let q = 0; q < 4; q++) {
      assert.equal(s.lane[p.flows.send[q]], 0);
      assert.equal(s.lane[p.flows.recv[q]], 1);
      assert.equal(s.micro[p.flows.send[q]], s.micro[p.flows.recv[q]]);
    }
    const r = 0 * ROWS_PER_LANE + ROW_OPS;
    const [a, b] = visibleSpan(p.rowOffsets[r], p.rowOffsets[r + 1], (q) => s.start[p.order[q]], p.maxEnd, 190, 300);
    assert.deepEqual(
      Array.from(p.order.subarray(a, b), (i) => t.strings[s.name[i]]),
      ['/stage0/MatMul_1', '/stage0/MatMul_2'],
    );
  });

  it('builds a bucket pyramid for dense rows whose coarsest level stays small', () => {
    const n = 50_000;
    const b = new TraceBuilder();
    for (let i = 0; i < n; i++) b.push({ lane: 0, kind: i % 7 === 0 ? 'idle' : 'compute', name: 'x', start: i * 3, dur: 2, cause: i % 7 === 0 ? 'host' : undefined });
    const spans = b.finish();
    const p = prepare({ ...spans, nLanes: 1 });
    const py = p.pyramids[0]!;
    assert.ok(py.levels.length > 5);
    assert.ok(py.levels[py.levels.length - 1].cls.length <= 64);
    assert.ok(py.levels[0].cls.length <= n);
  });
});
