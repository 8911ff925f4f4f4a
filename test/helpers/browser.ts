/**
 * Headless Chromium for the timeline's end-to-end tests and benchmark (playwright-core with
 * Debian's chromium), plus helpers that read the view's test hook (`window.__parallax`,
 * documented in webview/src/hook-api.ts).
 *
 * Page-side code is passed to `page.evaluate` as strings: tsx compiles this file with
 * `keepNames`, which would wrap functions in a `__name` helper the page does not have.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, readdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { ViewStats } from '../../webview/src/hook-api';
import { renderHtmlReport } from '../../src/profiler/html-report';
import { REPO } from './cli';

export const CHROMIUM = process.env['PARALLAX_CHROMIUM'] ?? '/usr/bin/chromium';
export const ARTIFACTS = join(REPO, 'test-artifacts');

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM);
}

export async function launch(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

function newestMtime(dir: string): number {
  let m = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    m = Math.max(m, s.isDirectory() ? newestMtime(p) : s.mtimeMs);
  }
  return m;
}

/** Builds webview/dist when it is missing or older than webview/src. */
export function ensureWebviewBuilt(): { js: string; css: string } {
  const js = join(REPO, 'webview', 'dist', 'timeline.js');
  const css = join(REPO, 'webview', 'dist', 'timeline.css');
  const stale = !existsSync(js) || !existsSync(css) || statSync(js).mtimeMs < newestMtime(join(REPO, 'webview', 'src'));
  if (stale) {
    const r = spawnSync(process.execPath, [join(REPO, 'scripts', 'build-webview.mjs')], { cwd: REPO, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`webview build failed:\n${r.stdout}\n${r.stderr}`);
  }
  return { js: readFileSync(js, 'utf8'), css: readFileSync(css, 'utf8') };
}

/** The standalone report of a trace's JSON text, as the CLI would write it. */
export function reportHtml(traceJson: string, opts: { title?: string; compare?: string; theme?: 'light' | 'dark' } = {}): string {
  const b = ensureWebviewBuilt();
  return renderHtmlReport(traceJson, {
    title: opts.title ?? 'test run',
    compareJsonText: opts.compare,
    bundleJs: b.js,
    bundleCss: b.css,
    theme: opts.theme,
  });
}

/** What a page reported that a test should fail on. */
export interface PageProblems {
  cspViolations: string[];
  consoleErrors: string[];
  pageErrors: string[];
}

/**
 * Records CSP violations (a `securitypolicyviolation` listener installed before any page
 * script runs), console errors and uncaught exceptions.
 */
export async function watchProblems(page: Page): Promise<PageProblems> {
  const p: PageProblems = { cspViolations: [], consoleErrors: [], pageErrors: [] };
  await page.exposeBinding('__pxReportViolation', (_src, v: string) => {
    p.cspViolations.push(v);
  });
  await page.addInitScript(
    `document.addEventListener('securitypolicyviolation', function (e) { window.__pxReportViolation(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '')); });`,
  );
  page.on('console', (m) => {
    if (m.type() === 'error') p.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => p.pageErrors.push(String(e)));
  return p;
}

/**
 * Polls a page expression until it is truthy. Unlike `page.waitForFunction`, which evaluates
 * its predicate with `eval` inside the page and so trips the report's CSP, each poll is a
 * CDP evaluation, which the page's policy does not govern.
 */
export async function waitFor(page: Page, expression: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await page.evaluate(expression)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until the view has drawn its first frame (or reports an error). */
export async function waitLoaded(page: Page, timeoutMs = 30_000): Promise<ViewStats> {
  await waitFor(page, 'window.__parallax && (window.__parallax.stats().loaded || window.__parallax.stats().error)', timeoutMs);
  const s = await stats(page);
  if (s.error) throw new Error(`view error: ${s.error}`);
  return s;
}

export function stats(page: Page): Promise<ViewStats> {
  return page.evaluate('window.__parallax.stats()') as Promise<ViewStats>;
}

export function nextFrame(page: Page): Promise<ViewStats> {
  return page.evaluate('window.__parallax.nextFrame()') as Promise<ViewStats>;
}

export function locate(page: Page, run: number, span: number): Promise<{ x: number; y: number } | null> {
  return page.evaluate(`window.__parallax.locate(${run}, ${span})`) as Promise<{ x: number; y: number } | null>;
}

export function setView(page: Page, startUs: number, endUs: number): Promise<ViewStats> {
  return page.evaluate(`window.__parallax.setView(${startUs}, ${endUs})`) as Promise<ViewStats>;
}

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/**
 * A Chromium suite's teardown: close the browser, remove the suite's folder, and check that
 * nothing any page did tripped the CSP or threw.
 */
export async function closeBrowserSuite(browser: Browser | undefined, dir: string | undefined, problems: readonly PageProblems[]): Promise<void> {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const p of problems) {
    assert.deepEqual(p.cspViolations, [], 'CSP violations');
    assert.deepEqual(p.pageErrors, [], 'page errors');
    assert.deepEqual(p.consoleErrors, [], 'console errors');
  }
}
