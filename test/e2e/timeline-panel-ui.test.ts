/**
 * The timeline panel's layout, themes and tools in real headless Chromium at 1400×900, on
 * real runs profiled here with the built CLI (data-parallel, and pipeline to compare with):
 *  - every theme VS Code ships (light, dark, high contrast dark and light; variables as the
 *    themes set them, test/helpers/vscode-themes.ts) × {single, compare}: a screenshot, and
 *    every piece of text on the page against its background at WCAG AA (4.5:1), from computed
 *    styles;
 *  - the drawing's share of the width with the findings sidebar open, and without it;
 *  - lanes that fill the view, span labels by phase and operator, a legend of what is there;
 *  - the operator table (by type, by node) filtering the timeline, and search;
 *  - the compare view aligned by step with the per-step difference;
 *  - the selected range's values on one line each, with units.
 * Screenshots go to a temporary folder that is removed afterwards.
 *
 *   node --import tsx --test test/e2e/timeline-panel-ui.test.ts
 *
 * Needs a built CLI (`npm run build`) and /usr/bin/chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Browser, Page } from 'playwright-core';
import { REPO, runCli } from '../helpers/cli';
import { closeBrowserSuite, chromiumAvailable, ensureWebviewBuilt, launch, nextFrame, reportHtml, setView, stats, waitFor, waitLoaded, watchProblems, type PageProblems } from '../helpers/browser';
import { VSCODE_THEMES, type VsCodeTheme } from '../helpers/vscode-themes';
import { AA_TEXT, blend, contrastRatio, type Rgb } from '../../webview/src/contrast';
import type { TraceJson } from '../../src/profiler/trace-format';

const VIEWPORT = { width: 1400, height: 900 };

interface TextSample {
  text: string;
  where: string;
  color: { r: number; g: number; b: number; a: number };
  bg: Rgb;
}

/**
 * Runs in the page: every visible element with text of its own, its computed colour (`fill`
 * for SVG text) and the colour behind it (its own and its ancestors' backgrounds, composited
 * from the first opaque one up).
 */
const COLLECT_TEXT = `(() => {
  const parse = (s) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(s || '');
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) {
        layers.push(c);
        if (c.a >= 1) break;
      }
    }
    let bg = { r: 255, g: 255, b: 255 };
    for (const l of layers.reverse()) bg = { r: l.r * l.a + bg.r * (1 - l.a), g: l.g * l.a + bg.g * (1 - l.a), b: l.b * l.a + bg.b * (1 - l.a) };
    return bg;
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('[hidden], .px-visually-hidden, canvas, script, style')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '');
    if (!own) continue;
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility !== 'visible' || Number(cs.opacity) === 0) continue;
    const color = parse(el instanceof SVGElement ? cs.fill : cs.color);
    if (!color) continue;
    out.push({ text: el.textContent.trim().slice(0, 40), where: el.tagName.toLowerCase() + '.' + String(el.getAttribute('class') || ''), color, bg: behind(el) });
  }
  return out;
})()`;

/** PNG width and height from the IHDR chunk. */
function pngSize(file: string): { width: number; height: number } {
  const b = readFileSync(file);
  assert.equal(b.toString('ascii', 1, 4), 'PNG', `${file} is a PNG`);
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

/** Operator spans of a trace grouped by a string column, counted independently of the view. */
function opCounts(t: TraceJson, by: 'opType' | 'name'): Map<string, { count: number; totalUs: number }> {
  const s = t.spans;
  const m = new Map<string, { count: number; totalUs: number }>();
  for (let i = 0; i < s.count; i++) {
    if (!((s.flags[i] & 8) !== 0 || s.parent[i] >= 0)) continue;
    const k = s[by][i];
    if (k < 0) continue;
    const key = t.strings[k];
    const e = m.get(key) ?? { count: 0, totalUs: 0 };
    e.count++;
    e.totalUs += s.dur[i];
    m.set(key, e);
  }
  return m;
}

describe('timeline panel: layout, themes and tools in Chromium', { skip: !chromiumAvailable() && 'no /usr/bin/chromium' }, () => {
  let browser: Browser;
  let dir: string;
  let shots: string;
  let dpText: string;
  let ppText: string;
  let dp: TraceJson;
  let pp: TraceJson;
  const problems: PageProblems[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parallax-ui-'));
    shots = join(dir, 'screenshots');
    if (!existsSync(join(REPO, 'dist', 'cli.js'))) {
      const r = spawnSync(process.execPath, [join(REPO, 'scripts', 'build.mjs')], { cwd: REPO, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    }
    ensureWebviewBuilt();
    const dpPath = join(dir, 'dp.parallax.json');
    const ppPath = join(dir, 'pp.parallax.json');
    const r1 = await runCli(['profile', 'demo', '--devices', 'cpu:2', '--batch', '16', '--steps', '3', '--out', dpPath]);
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await runCli(['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '16', '--steps', '3', '--out', ppPath]);
    assert.equal(r2.code, 0, r2.stderr);
    ppText = readFileSync(ppPath, 'utf8');
    pp = JSON.parse(ppText) as TraceJson;
    // Which findings a real run gets depends on the machine's load: one more, known finding
    // makes sure every theme shows a finding's text (message, change, prediction).
    dp = JSON.parse(readFileSync(dpPath, 'utf8')) as TraceJson;
    const w = dp.steps[0]!;
    dp.findings = [
      ...(dp.findings ?? []),
      {
        id: 'straggler',
        severity: 'warning',
        message: 'cpu:1 finishes its compute later than cpu:0 in every step; the others wait for it.',
        evidence: { lanes: [1], startUs: w.startUs, endUs: w.endUs, numbers: {} },
        change: { description: 'Give cpu:1 a smaller shard of the batch.', params: {} },
        currentStepUs: w.endUs - w.startUs,
        predictedStepUs: (w.endUs - w.startUs) * 0.9,
      },
    ];
    dpText = JSON.stringify(dp);
    browser = await launch();
  });

  after(() => closeBrowserSuite(browser, dir, problems));

  /** Opens the report; `theme` forces one on the page (null: none, as in VS Code), `colorScheme` is the OS's. */
  async function open(opts: { compare?: boolean; theme?: 'light' | 'dark' | null; colorScheme?: 'light' | 'dark' } = {}): Promise<Page> {
    const file = join(dir, `page-${problems.length}.html`);
    const theme = opts.theme === undefined ? 'light' : opts.theme;
    writeFileSync(file, reportHtml(dpText, { title: 'cpu:2 data parallel', ...(theme ? { theme } : {}), ...(opts.compare ? { compare: ppText } : {}) }));
    const page = await browser.newPage({ viewport: VIEWPORT, colorScheme: opts.colorScheme ?? theme ?? 'light' });
    problems.push(await watchProblems(page));
    await page.goto(`file://${file}`);
    await waitLoaded(page);
    return page;
  }

  /** Applies a VS Code theme's variables and body class, as VS Code does in a webview, and waits for the redraw. */
  async function applyTheme(page: Page, theme: VsCodeTheme): Promise<void> {
    await page.evaluate(
      `((vars, cls) => {
        for (const [k, v] of Object.entries(vars)) document.documentElement.style.setProperty(k, v);
        document.body.classList.add(cls);
      })(${JSON.stringify(theme.vars)}, ${JSON.stringify(theme.bodyClass)})`,
    );
    const want = theme.vars['--vscode-editor-background'];
    await waitFor(page, `(() => { const p = document.createElement('canvas').getContext('2d'); p.fillStyle = ${JSON.stringify(want)}; const b = window.__parallax.stats().theme.background; const m = /(\\d+), (\\d+), (\\d+)/.exec(b); return m && '#' + [m[1], m[2], m[3]].map((x) => Number(x).toString(16).padStart(2, '0')).join('') === p.fillStyle; })()`);
    await nextFrame(page);
  }

  for (const theme of VSCODE_THEMES) {
    for (const compare of [false, true]) {
      const view = compare ? 'compare' : 'single';
      it(`${theme.name}, ${view}: every text on the page reaches ${AA_TEXT}:1 against its background`, async () => {
        const dark = theme.bodyClass === 'vscode-dark' || theme.bodyClass === 'vscode-high-contrast';
        // As in VS Code: no theme forced on the page, and the operating system's colour
        // scheme the opposite of the theme's (the case where fallbacks taken from the OS go wrong).
        const page = await open({ compare, theme: null, colorScheme: dark ? 'light' : 'dark' });
        await applyTheme(page, theme);
        // Open the operator table and select a range, so that their text is checked too.
        await page.getByRole('button', { name: 'Show operators' }).click();
        await waitFor(page, 'window.__parallax.stats().ops.rows.length > 0');
        const s = await stats(page);
        await page.evaluate(`window.__parallax.setView(${s.visible.startUs}, ${s.visible.endUs})`);
        const file = join(shots, `${theme.name}-${view}.png`);
        await page.screenshot({ path: file });
        assert.deepEqual(pngSize(file), VIEWPORT);
        assert.ok(statSync(file).size > 20_000, 'the screenshot shows a drawn page');
        const samples = (await page.evaluate(COLLECT_TEXT)) as TextSample[];
        assert.ok(samples.length > 40, `text elements found: ${samples.length}`);
        const where = new Set(samples.map((x) => x.where.split('.')[1]?.split(' ')[0]));
        for (const part of ['px-title', 'px-metric-value', 'px-lane-label', 'px-finding-msg', 'px-legend-label', 'px-side-heading']) {
          assert.ok([...where].some((w) => w?.startsWith(part)) || samples.some((x) => x.where.includes(part)), `text of ${part} is checked`);
        }
        if (compare) assert.ok(samples.some((x) => x.where.includes('px-run-header') || x.where.includes('px-run-letter')), 'run headers are checked');
        const failing = samples
          .map((x) => ({ ...x, ratio: contrastRatio(blend(x.color, x.bg, x.color.a), x.bg) }))
          .filter((x) => x.ratio < AA_TEXT)
          .map((x) => `${x.where} "${x.text}" ${x.ratio.toFixed(2)}:1 (rgba(${x.color.r},${x.color.g},${x.color.b},${x.color.a}) on rgb(${x.bg.r.toFixed(0)},${x.bg.g.toFixed(0)},${x.bg.b.toFixed(0)}))`);
        assert.deepEqual(failing, [], `text below ${AA_TEXT}:1`);
        // The canvas follows the theme: dark or light as the theme is, and the bands of
        // alternate lanes and of run and group headers a shade of the background, not a
        // colour taken from the other kind of theme.
        const after = await stats(page);
        assert.equal(after.theme.dark, dark);
        const rgb = (css: string): Rgb => {
          const m = /(\d+(?:\.\d+)?), (\d+(?:\.\d+)?), (\d+(?:\.\d+)?)/.exec(css);
          assert.ok(m, css);
          return { r: Number(m[1]), g: Number(m[2]), b: Number(m[3]) };
        };
        const band = contrastRatio(rgb(after.theme.laneBand), rgb(after.theme.background));
        assert.ok(band < 1.6, `lane bands ${after.theme.laneBand} on ${after.theme.background}: ${band.toFixed(2)}:1`);
        await page.close();
      });
    }
  }

  it('at 1400 px with the findings sidebar open the drawing gets at least 65 % of the width; hiding the sidebar widens it', async () => {
    const page = await open();
    const sideW = await page.locator('.px-side').evaluate((e) => e.getBoundingClientRect().width);
    assert.ok(sideW > 200, `the findings sidebar is open (${sideW} px)`);
    const s = await stats(page);
    const share = s.canvas.width / VIEWPORT.width;
    assert.ok(share >= 0.65, `drawing ${s.canvas.width} px of ${VIEWPORT.width} (${(share * 100).toFixed(1)} %)`);
    // Lane labels are cut to the narrower gutter, with the whole label in their tooltip.
    const titles = await page.$$eval('.px-lane', (els) => els.map((e) => e.getAttribute('title')));
    assert.deepEqual(titles, dp.lanes.map((l) => l.label));
    const toggle = page.getByRole('button', { name: 'Hide findings' });
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    await toggle.click();
    await waitFor(page, `window.__parallax.stats().canvas.width > ${s.canvas.width + 200}`);
    assert.equal(await page.locator('.px-side').isVisible(), false);
    assert.equal(await page.getByRole('button', { name: 'Show findings' }).getAttribute('aria-expanded'), 'false');
    await page.close();
  });

  it('lanes fill the view, spans are labelled by phase and operator (never session.run), and the legend lists what the trace holds', async () => {
    const page = await open();
    const s = await stats(page);
    const last = s.lanes[s.lanes.length - 1];
    assert.ok(last.y + last.height >= 0.75 * s.canvas.height, `lanes end at ${last.y + last.height} of ${s.canvas.height} px`);
    assert.ok(s.lanes.every((l) => l.height > 60), `lanes grew: ${s.lanes.map((l) => l.height).join(', ')}`);
    // Zoom to the profiled steps, where compute spans hold operators.
    const prof = dp.profiledSteps ?? [];
    assert.ok(prof.length > 0, 'the run has operator-profiled steps');
    const z = await setView(page, prof[0].startUs, prof[0].endUs);
    assert.ok(z.labels.length > 0, 'labels are drawn');
    assert.ok(!z.labels.some((t) => t.startsWith('session.r')), `labels: ${z.labels.join(' | ')}`);
    assert.ok(z.labels.some((t) => t.startsWith('forward')), `a compute span is labelled by its phase: ${z.labels.join(' | ')}`);
    // Operators are labelled when they are wide enough for a label: zoom to the longest one
    // of the run (how long each takes varies from run to run).
    const sp = dp.spans;
    let longest = -1;
    for (let i = 0; i < sp.count; i++) if (sp.parent[i] >= 0 && sp.opType[i] >= 0 && (longest < 0 || sp.dur[i] > sp.dur[longest])) longest = i;
    assert.ok(longest >= 0, 'the run has operator spans');
    const pad = sp.dur[longest] * 0.05;
    const zo = await setView(page, sp.start[longest] - pad, sp.start[longest] + sp.dur[longest] + pad);
    const types = new Set(opCounts(dp, 'opType').keys());
    assert.ok(zo.labels.some((t) => types.has(t) || [...types].some((ty) => ty.startsWith(t.replace(/…$/, '')) && t.endsWith('…'))), `an operator span is labelled by its type: ${zo.labels.join(' | ')}`);
    // Legend: a data-parallel run has no bubbles, predictions, emulation or send → recv flows.
    const legend = s.legend;
    for (const absent of ['idle: pipeline bubble', 'predicted (striped)', 'emulated (dotted)', 'flow: send → recv']) assert.ok(!legend.includes(absent), `${absent} is not listed: ${legend.join(', ')}`);
    for (const present of ['compute', 'operator']) assert.ok(legend.includes(present), `${present} is listed: ${legend.join(', ')}`);
    assert.deepEqual(await page.$$eval('.px-legend-item > span', (els) => els.map((e) => e.textContent)), legend);
    await page.close();
  });

  it('the operator table groups by type and by node, filters the timeline to a row, and search counts and visits matches', async () => {
    const page = await open();
    await page.getByRole('button', { name: 'Show operators' }).click();
    await waitFor(page, 'window.__parallax.stats().ops.rows.length > 0');
    let s = await stats(page);
    const byType = opCounts(dp, 'opType');
    assert.equal(s.ops.groupBy, 'opType');
    assert.deepEqual(new Set(s.ops.rows.map((r) => r.key)), new Set(byType.keys()));
    for (const r of s.ops.rows) {
      assert.equal(r.count, byType.get(r.key)!.count, `${r.key} count`);
      assert.ok(Math.abs(r.totalUs - byType.get(r.key)!.totalUs) < 1e-6, `${r.key} total`);
    }
    assert.ok(s.ops.rows.every((r, i) => i === 0 || s.ops.rows[i - 1].totalUs >= r.totalUs), 'largest total first');
    // Per-device columns: one per lane.
    const heads = await page.$$eval('.px-ops-table th', (els) => els.map((e) => e.textContent));
    assert.deepEqual(heads.slice(0, 5), ['operator type', 'count', 'total', 'mean', 'share']);
    assert.deepEqual(heads.slice(5), dp.lanes.map((l) => l.label));
    // Choosing a row filters the timeline to its spans; choosing it again clears the filter.
    const top = s.ops.rows[0];
    await page.locator('.px-ops-row').first().click();
    await waitFor(page, 'window.__parallax.stats().filter !== null');
    s = await nextFrame(page);
    assert.deepEqual(s.filter, { spans: top.count });
    assert.equal(s.ops.selected, top.key);
    assert.equal(await page.locator('.px-ops-row').first().getAttribute('aria-selected'), 'true');
    await page.locator('.px-ops-row').first().click();
    await waitFor(page, 'window.__parallax.stats().filter === null');
    // By node.
    await page.getByRole('button', { name: 'by node' }).click();
    await waitFor(page, "window.__parallax.stats().ops.groupBy === 'node' && window.__parallax.stats().ops.rows.length > 0");
    s = await stats(page);
    const byNode = opCounts(dp, 'name');
    assert.deepEqual(new Set(s.ops.rows.map((r) => r.key)), new Set(byNode.keys()));
    // Search: the count is every span whose name or type contains the text; Enter visits them.
    const text = 'layernorm';
    let want = 0;
    for (let i = 0; i < dp.spans.count; i++) {
      const n = dp.strings[dp.spans.name[i]].toLowerCase();
      const ty = dp.spans.opType[i] >= 0 ? dp.strings[dp.spans.opType[i]].toLowerCase() : '';
      if (n.includes(text) || ty.includes(text)) want++;
    }
    assert.ok(want > 0, 'the demo model has LayerNormalization nodes');
    const box = page.getByRole('searchbox', { name: 'Search spans by name or operator type' });
    await box.fill(text);
    await waitFor(page, `window.__parallax.stats().search.count === ${want}`);
    await waitFor(page, `(window.__parallax.stats().filter || {}).spans === ${want}`);
    assert.match((await page.locator('.px-search-count').textContent()) ?? '', new RegExp(`^${want} matches$`));
    // The operator table narrows to the matching operators.
    await waitFor(page, `window.__parallax.stats().ops.rows.every((r) => r.key.toLowerCase().includes('${text}'))`);
    await box.press('Enter');
    await waitFor(page, 'window.__parallax.stats().selected !== null && window.__parallax.stats().search.index === 0');
    s = await nextFrame(page);
    const sel = s.selected!;
    assert.ok(dp.strings[dp.spans.name[sel.span]].toLowerCase().includes(text), 'the match shown is selected');
    const st = dp.spans.start[sel.span];
    await waitFor(page, `(() => { const v = window.__parallax.stats().visible; return v.startUs <= ${st} && v.endUs >= ${st}; })()`);
    assert.match((await page.locator('.px-search-count').textContent()) ?? '', new RegExp(`^1 of ${want}$`));
    await box.press('Escape');
    await waitFor(page, 'window.__parallax.stats().filter === null && window.__parallax.stats().search.text === ""');
    await page.close();
  });

  it('compare aligns the runs by step and lists each step with its difference; choosing a step realigns there', async () => {
    const page = await open({ compare: true });
    let s = await stats(page);
    const common = dp.steps.map((x) => x.index).filter((i) => pp.steps.some((y) => y.index === i));
    assert.ok(common.length >= 2, 'the runs share steps');
    assert.equal(s.alignedStep, common[0]);
    const startOf = (t: TraceJson, i: number): number => t.steps.find((x) => x.index === i)!.startUs;
    assert.deepEqual(s.runs.map((r) => r.offsetUs), [startOf(dp, common[0]), startOf(pp, common[0])]);
    // Titles cut to the narrow gutter and the summary keep the whole title as a tooltip.
    const titles = s.runs.map((r) => r.title);
    assert.deepEqual(await page.$$eval('.px-run-header', (els) => els.map((e) => e.getAttribute('title'))), titles);
    assert.deepEqual(await page.$$eval('.px-summary-title', (els) => els.map((e) => e.getAttribute('title'))), titles);
    const rows = page.locator('.px-steps-row');
    assert.equal(await rows.count(), common.length);
    const cells = await rows.nth(1).locator('td').allTextContents();
    const len = (t: TraceJson, i: number): number => {
      const w = t.steps.find((x) => x.index === i)!;
      return w.endUs - w.startUs;
    };
    const delta = len(pp, common[1]) - len(dp, common[1]);
    assert.equal(cells[0], String(common[1]));
    assert.match(cells[3], delta > 0 ? /^\+/ : /^−/, `B − A of step ${common[1]}: ${cells[3]}`);
    await rows.nth(1).click();
    await waitFor(page, `window.__parallax.stats().alignedStep === ${common[1]}`);
    s = await nextFrame(page);
    assert.deepEqual(s.runs.map((r) => r.offsetUs), [startOf(dp, common[1]), startOf(pp, common[1])]);
    // The view shows that step (aligned at view time 0).
    assert.ok(s.visible.startUs <= 0 && s.visible.endUs >= len(dp, common[1]) * 0.99, `view ${JSON.stringify(s.visible)}`);
    await page.close();
  });

  it('the selected range shows values with their units, each on one line', async () => {
    const page = await open();
    const axis = await page.locator('.px-axis').boundingBox();
    assert.ok(axis);
    await page.mouse.move(axis.x + axis.width * 0.2, axis.y + axis.height / 2);
    await page.mouse.down();
    await page.mouse.move(axis.x + axis.width * 0.7, axis.y + axis.height / 2, { steps: 5 });
    await page.mouse.up();
    await waitFor(page, 'window.__parallax.stats().selection !== null');
    const title = (await page.locator('.px-range-title').textContent()) ?? '';
    assert.match(title, /^-?\d+(\.\d+)? (ns|µs|ms|s) – \d+(\.\d+)? (ns|µs|ms|s) \(\d+(\.\d+)? (ns|µs|ms|s)\)$/);
    // Three significant digits at most in every figure.
    for (const n of title.match(/\d+(\.\d+)?/g) ?? []) assert.ok(n.replace('.', '').replace(/^0+/, '').length <= 3, `${n} in ${title}`);
    // Lines each value takes: the distinct tops of its text's line boxes.
    const lines = (await page.evaluate(`[...document.querySelectorAll('.px-range-title, .px-range-table td')]
      .filter((e) => e.textContent.trim() !== '')
      .map((e) => { const r = document.createRange(); r.selectNodeContents(e); return [e.textContent, new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size]; })`)) as [string, number][];
    assert.ok(lines.length > 3);
    assert.deepEqual(lines.filter(([, n]) => n !== 1), [], 'values that wrap');
    await page.close();
  });
});
