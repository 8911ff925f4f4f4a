/**
 * The timeline view's summary shows what a WebGPU device's own GPU timestamps say: a small
 * demo model profiled on cpu:1,webgpu:1 (Mesa's software Vulkan device where there is no
 * GPU) with the built CLI, its standalone report opened in headless Chromium, and the
 * summary's GPU line read from the page against the run's `meta.gpuTimestamps`.
 *
 *   node --import tsx --test test/e2e/gpu-summary.test.ts
 *
 * Needs a built CLI (`npm run build`), /usr/bin/chromium and a Vulkan driver.
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
import { chromiumMissing, gated, needs, vulkanMissing } from '../helpers/prerequisites';
import type { TraceJson } from '../../src/profiler/trace-format';

describe('GPU busy time in the timeline summary', () => {
  const missing = [chromiumMissing(), vulkanMissing()];
  const noPrerequisites = needs(...missing).skip;
  const it = gated(test, ...missing);
  let browser: Browser;
  let dir: string;
  let traceText: string;
  const problems: PageProblems[] = [];

  before(async () => {
    if (noPrerequisites) return;
    dir = mkdtempSync(join(tmpdir(), 'parallax-gpu-view-'));
    const model = join(dir, 'demo-small.onnx');
    writeFileSync(model, buildDemoModel({ layers: 2, hidden: 64, ffn: 256 }));
    const out = join(dir, 'hetero.parallax.json');
    // The operator-profiled steps (on by default) are the ones the GPU timestamps come from.
    const r = await runCli(['profile', model, '--devices', 'cpu:1,webgpu:1', '--batch', '8', '--steps', '2', '--warmup', '1', '--no-baseline', '--no-probe', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    traceText = readFileSync(out, 'utf8');
    browser = await launch();
  });

  after(() => closeBrowserSuite(browser, dir, problems));

  it("shows the WebGPU device's busy share from its timestamps, and no line for the CPU device", async () => {
    const trace = JSON.parse(traceText) as TraceJson;
    const g = trace.meta.gpuTimestamps;
    assert.ok(g && g.length === 1, `the run recorded GPU timestamps for the WebGPU device: ${JSON.stringify(g)}`);
    const gpu = g[0]!;
    const file = join(dir, 'report.html');
    writeFileSync(file, reportHtml(traceText, { title: 'gpu' }));
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    problems.push(await watchProblems(page));
    await page.goto(`file://${file}`);
    await waitLoaded(page);
    const metric = page.locator('.px-gpu-busy');
    assert.equal(await metric.count(), 1, 'one GPU line in the summary');
    const text = (await metric.textContent()) ?? '';
    const m = /^GPU busy: webgpu:0 (\d+(?:\.\d+)?)% of its operator-profiled runs \((\d+) dispatches over (\d+) runs\)$/.exec(text);
    assert.ok(m, text);
    assert.ok(Math.abs(Number(m[1]) - (100 * gpu.busyUs) / gpu.computeUs) < 1, `${m[1]}% against ${gpu.busyUs} of ${gpu.computeUs} µs`);
    assert.equal(Number(m[2]), gpu.kernels);
    assert.equal(Number(m[3]), gpu.runs);
    assert.doesNotMatch(text, /cpu:0/);
    assert.match((await metric.getAttribute('title')) ?? '', /GPU's own timestamps of the operator-profiled runs/);
    await page.close();
  });
});
