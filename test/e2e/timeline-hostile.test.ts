/**
 * A trace is data from elsewhere: names come from ONNX models and imported profiles. This
 * suite opens the standalone report of a trace whose every string is hostile — markup that
 * runs script if parsed as HTML, a `</script>` that would end the data block, a 1 MB name,
 * bidirectional overrides — and checks that it is all shown as text: no script runs
 * (`window.__pwned` stays unset), no element is created from a name, the Content Security
 * Policy is never tripped, and nothing is logged as an error.
 *
 *   node --import tsx --test test/e2e/timeline-hostile.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ensureWebviewBuilt, launch, locate, reportHtml, setView, stats, waitFor, waitLoaded, watchProblems, type PageProblems } from '../helpers/browser';
import { meta } from '../helpers/trace-builders';
import { TraceBuilder, type Trace } from '../../src/profiler/trace-format';
import { serializeTrace } from '../../src/profiler/trace-io';
import { renderHtmlReport } from '../../src/profiler/html-report';
import { chromiumMissing, gated, needs } from '../helpers/prerequisites';

const IMG = '<img src=x onerror="window.__pwned=1">';
const SCRIPT_END = '</script><script>window.__pwned=2</script>';
const COMMENT = '<!--<script>window.__pwned=3</script>';
const BIDI = 'safe\u202Egnp.exe\u202C name\u2066x\u2069';
const HUGE = `${'<b>'.repeat(10)}${'A'.repeat(1024 * 1024)}`;
const SVG = '<svg/onload=window.__pwned=4>';

function hostileTrace(): Trace {
  const m = meta({ mode: 'data', source: `measured ${IMG}` }, 2);
  m.devices = m.devices.map((d, i) => ({ ...d, id: `${SVG}${i}`, label: i === 0 ? `${IMG} lane` : `${BIDI} lane`, physicalUnit: SCRIPT_END }));
  m.model = { path: COMMENT, sha256: '0', opset: 17, nodeCount: 1, parameters: 1, parameterBytes: 4, inputs: [], outputs: [] };
  m.notes = [IMG];
  const b = new TraceBuilder();
  const names = [IMG, SCRIPT_END, COMMENT, BIDI, HUGE, SVG];
  names.forEach((name, k) => {
    const c = b.push({ lane: k % 2, kind: 'compute', name, opType: IMG, start: k * 1000, dur: 900, step: 0 });
    b.push({ lane: k % 2, kind: 'compute', name: `${name} op`, opType: SVG, start: k * 1000 + 100, dur: 500, step: 0, parent: c, flags: 8 });
  });
  b.push({ lane: 0, kind: 'comm', name: SCRIPT_END, start: 6000, dur: 100, step: 0, bytes: 10, peer: 1 });
  b.push({ lane: 1, kind: 'idle', name: BIDI, start: 6000, dur: 100, step: 0, cause: 'host' });
  return {
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: [{ index: 0, startUs: 0, endUs: 6100 }],
    spans: b.finish(),
    summary: {
      mode: 'data',
      source: IMG,
      model: IMG,
      steps: 1,
      batch: 8,
      stepTimeUs: { median: 6100, p10: 6100, p90: 6100 },
      throughputPerS: 1,
      devices: m.devices.map((d) => ({ id: d.id, label: d.label, computeUs: 5000, commUs: 100, idleUs: 100, idleByCauseUs: { host: 100 } })),
      speedupVsOneDevice: null,
      baseline: { description: IMG, stepTimeUs: 1 },
      numericalCheck: { reference: SCRIPT_END, maxAbsErr: 0, maxRelErr: 0, atol: 0, rtol: 0, ok: true, elements: 1 },
    },
    findings: [
      {
        id: IMG,
        severity: `critical ${IMG}`,
        message: `${SCRIPT_END} ${BIDI} ${HUGE.slice(0, 5000)}`,
        evidence: { lanes: [0, 1, 99, -1], startUs: 0, endUs: 2000, numbers: {} },
        change: { description: COMMENT, params: {} },
        currentStepUs: 6100,
        predictedStepUs: 3000,
      },
    ],
  };
}

describe('hostile trace strings in the standalone report', () => {
  // Each test skips (and is counted) when Chromium is missing.
  const noBrowser = needs(chromiumMissing()).skip;
  const it = gated(test, chromiumMissing());
  let browser: Browser;
  let dir: string;
  let page: Page;
  let problems: PageProblems;
  const trace = hostileTrace();

  before(async () => {
    if (noBrowser) return;
    dir = mkdtempSync(join(tmpdir(), 'parallax-hostile-'));
    ensureWebviewBuilt();
    browser = await launch();
    const file = join(dir, 'hostile.html');
    writeFileSync(file, reportHtml(serializeTrace(trace), { title: `${IMG}</title><script>window.__pwned=5</script>` }));
    page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    problems = await watchProblems(page);
    await page.goto(`file://${file}`);
    await waitLoaded(page);
  });

  after(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs no script and creates no element from any name', async () => {
    // Hover every span, open the finding, brush a range: every place a name is shown.
    for (let i = 0; i < trace.spans.count; i++) {
      const run = trace.spans;
      await setView(page, run.start[i] - 50, run.start[i] + run.dur[i] + 50);
      const at = await locate(page, 0, i);
      assert.ok(at, `span ${i} on screen`);
      await page.mouse.move(at.x, at.y);
      await waitFor(page, `window.__parallax.stats().hover && window.__parallax.stats().hover.span === ${i}`);
    }
    await page.locator('.px-finding').first().click();
    await page.keyboard.press('0');
    const axis = (await page.locator('svg.px-axis').boundingBox())!;
    await page.mouse.move(axis.x + 50, axis.y + 10);
    await page.mouse.down();
    await page.mouse.move(axis.x + 400, axis.y + 10, { steps: 6 });
    await page.mouse.up();
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    assert.equal(await page.locator('img, iframe, object, embed, b').count(), 0);
    assert.equal(await page.locator('svg').count(), 1, 'only the time axis is an SVG');
    assert.equal(await page.locator('script:not([type])').count(), 1, 'only the bundle script');
    assert.deepEqual(problems.cspViolations, []);
    assert.deepEqual(problems.pageErrors, []);
    assert.deepEqual(problems.consoleErrors, []);
  });

  it('shows markup as literal text, in lane labels, tooltips, findings and the title', async () => {
    const labels = await page.$$eval('.px-lane-label', (els) => els.map((e) => e.textContent));
    assert.equal(labels[0], `${IMG} lane`);
    const img = 0;
    await setView(page, -100, 1000);
    const at = await locate(page, 0, img);
    await page.mouse.move(at!.x, at!.y);
    await waitFor(page, 'window.__parallax.stats().hover && window.__parallax.stats().hover.span === 0');
    const s = await stats(page);
    assert.ok(s.tooltip.text.startsWith(IMG), s.tooltip.text.slice(0, 200));
    assert.ok(s.tooltip.text.includes(`op type${IMG}`));
    const finding = await page.locator('.px-finding').first().innerText();
    assert.ok(finding.includes(SCRIPT_END), finding.slice(0, 200));
    assert.ok(finding.includes(COMMENT));
    assert.equal(await page.locator('.px-finding.px-sev-info').count(), 1, 'an unknown severity falls back to info');
    assert.ok((await page.title()).includes(`${IMG}</title>`));
    assert.ok((await page.locator('.px-group-header').first().innerText()).includes(SCRIPT_END));
  });

  it('spells out bidi controls and cuts a 1 MB name to a readable length', async () => {
    const bidiSpan = 3 * 2;
    await setView(page, 3000 - 100, 4000);
    let at = await locate(page, 0, bidiSpan);
    await page.mouse.move(at!.x, at!.y);
    await waitFor(page, `window.__parallax.stats().hover && window.__parallax.stats().hover.span === ${bidiSpan}`);
    let s = await stats(page);
    assert.ok(s.tooltip.text.startsWith('safe⟨U+202E⟩gnp.exe⟨U+202C⟩ name⟨U+2066⟩x⟨U+2069⟩'), s.tooltip.text.slice(0, 120));
    assert.ok(!/[\u202A-\u202E\u2066-\u2069]/.test(s.tooltip.text), 'no raw bidi control reaches the screen');
    const laneLabel = await page.locator('.px-lane-label').nth(1).innerText();
    assert.ok(laneLabel.includes('⟨U+202E⟩'), laneLabel);
    const hugeSpan = 4 * 2;
    await setView(page, 4000 - 100, 5000);
    at = await locate(page, 0, hugeSpan);
    await page.mouse.move(at!.x, at!.y);
    await waitFor(page, `window.__parallax.stats().hover && window.__parallax.stats().hover.span === ${hugeSpan}`);
    s = await stats(page);
    assert.ok(s.tooltip.text.length < 2000, `tooltip is ${s.tooltip.text.length} characters`);
    assert.match(s.tooltip.text, /more characters/);
    const frame = (await page.evaluate('window.__parallax.frameTimes()')) as number[];
    assert.ok(frame.length > 0);
  });

  it('refuses a document that is not a trace, with a message and no script', async () => {
    const b = ensureWebviewBuilt();
    const html = renderHtmlReport(JSON.stringify({ format: 'parallax-trace', version: 1, meta: IMG }), { title: 'broken', bundleJs: b.js, bundleCss: b.css });
    const file = join(dir, 'broken.html');
    writeFileSync(file, html);
    const p2 = await browser.newPage();
    const pr = await watchProblems(p2);
    await p2.goto(`file://${file}`);
    await waitFor(p2, 'window.__parallax.stats().error !== null');
    assert.match(await p2.locator('.px-error').innerText(), /cannot be shown: invalid trace/);
    assert.equal(await p2.evaluate('window.__pwned'), undefined);
    assert.deepEqual(pr.cspViolations, []);
    assert.deepEqual(pr.pageErrors, []);
    await p2.close();
  });
});
