/**
 * The timeline view's summary shows the memory per device of a real run: a small demo model
 * profiled data parallel on cpu:2 with the built CLI and a capacity it does not fit, its
 * standalone report opened in headless Chromium, and the summary's memory line read from the
 * page.
 *
 *   node --import tsx --test test/e2e/memory-summary.test.ts
 *
 * Needs a built CLI (`npm run build`) and /usr/bin/chromium.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { runCli } from '../helpers/cli';
import { closeBrowserSuite, launch, reportHtml, waitLoaded, watchProblems, type PageProblems } from '../helpers/browser';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { chromiumMissing, gated, needs } from '../helpers/prerequisites';
import type { TraceJson } from '../../src/profiler/trace-format';

describe('memory per device in the timeline summary', () => {
  const noBrowser = needs(chromiumMissing()).skip;
  const it = gated(test, chromiumMissing());
  let browser: Browser;
  let dir: string;
  let traceText: string;
  const problems: PageProblems[] = [];

  before(async () => {
    if (noBrowser) return;
    dir = mkdtempSync(join(tmpdir(), 'parallax-memory-view-'));
    const model = join(dir, 'demo-small.onnx');
    writeFileSync(model, buildDemoModel({ layers: 2, hidden: 64, ffn: 256 }));
    const out = join(dir, 'data.parallax.json');
    const r = await runCli(['profile', model, '--devices', 'cpu:2', '--batch', '8', '--steps', '2', '--warmup', '1', '--no-baseline', '--no-probe', '--no-op-level', '--device-memory', '200KiB', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    traceText = readFileSync(out, 'utf8');
    browser = await launch();
  });

  after(() => closeBrowserSuite(browser, dir, problems));

  it("shows each device's total and parts, the process-wide measured growth and the capacity it exceeds", async () => {
    const trace = JSON.parse(traceText) as TraceJson;
    const memory = trace.meta.memory;
    assert.ok(memory, 'the run recorded meta.memory');
    const file = join(dir, 'report.html');
    writeFileSync(file, reportHtml(traceText, { title: 'memory' }));
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    problems.push(await watchProblems(page));
    await page.goto(`file://${file}`);
    await waitLoaded(page);
    const metric = page.locator('.px-memory');
    assert.equal(await metric.count(), 1, 'one memory line in the summary');
    const text = (await metric.textContent()) ?? '';
    assert.match(text, /^memory per device:/);
    assert.match(text, /cpu:0 \S+ KiB \(parameters 260 KiB, activations \S+ KiB\)/);
    assert.match(text, /cpu:1 /);
    assert.match(text, /runner process grew \S+ \S+ \(measured, process-wide: all devices share it\)/);
    assert.match(text, /capacity 200 KiB: 2 devices over; fits: pipeline ×2, tensor ×2/);
    assert.match((await metric.getAttribute('class')) ?? '', /px-bad/, 'shown as a problem');
    assert.match((await metric.getAttribute('title')) ?? '', /computed from the shapes the run produced, not measured/);
    await page.close();
  });
});
