/**
 * The timeline view under load, in headless Chromium at 1600×900 (software rendering,
 * `--disable-gpu`, as in CI and in VS Code with GPU acceleration off):
 *  - a synthetic 1,000,000-span trace over 8 lanes (each step per lane: one compute span with
 *    240 operators nested in it, 4 collective comm spans, idle gaps by cause):
 *    * first frame after the data arrives: from the `load` call with the columns in the page
 *      to the animation frame after the first frame was drawn (validation, preparation in
 *      the worker, layout, drawing, presentation), target ≤ 1.5 s;
 *    * pan/zoom frame time: draw time of every frame produced by real wheel, drag and
 *      W/A/S/D input plus a zoom sweep from the whole trace down to 1 ms (every level of
 *      detail), p95 target ≤ 16 ms; and the rAF-to-rAF interval while panning every frame
 *      (what a user sees; capped at the display rate) with its share of dropped frames;
 *    * page memory per span: (V8 heap used + array-buffer backing stores) after load and
 *      GC, minus the same before, over the span count, target ≤ 150 B. Typed-array
 *      columns live in backing stores outside the V8 heap, so the heap alone would flatter;
 *  - a 5,000,000-span trace: it opens, and pans and zooms (frame times reported).
 * The columns are generated inside the page as typed arrays: the binary path a host uses
 * for big traces (see TraceColumnsDocument in webview/src/protocol.ts), with no transfer
 * cost folded into the figures. Reported as PASS/MISS, never asserted.
 *
 *   node --import tsx bench/timeline.bench.ts [--reps N] [--skip-5m]
 *
 * Prints a Markdown section and writes bench/results/timeline.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, platform, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Browser, CDPSession, Page } from 'playwright-core';
import { launch, nextFrame, reportHtml, setView, stats, waitLoaded } from '../test/helpers/browser';
import { dataPlan, meta } from '../test/helpers/trace-builders';
import { TraceBuilder } from '../src/profiler/trace-format';
import { serializeTrace } from '../src/profiler/trace-io';
import type { ViewStats } from '../webview/src/hook-api';

export const WIDTH = 1600;
export const HEIGHT = 900;
export const LANES = 8;
export const SPANS_PER_STEP = 250; // 1 compute + 240 operators + 4 comm + 5 idle

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** A small valid trace with 8 lanes: the page the big traces are loaded into. */
export function shellTrace(): string {
  const m = meta({ plan: dataPlan({ batch: 64, shards: Array(LANES).fill(8) }, LANES) }, LANES);
  const b = new TraceBuilder();
  b.push({ lane: 0, kind: 'compute', name: 'warm-up', start: 0, dur: 10, step: 0 });
  return serializeTrace({
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: [{ index: 0, startUs: 0, endUs: 10 }],
    spans: b.finish(),
  });
}

/**
 * Page-side generator (a string: tsx would wrap a function in helpers the page lacks).
 * Builds the columns of an n-span trace in typed arrays, then calls the view's `load` and
 * returns the stats of the first frame.
 */
export function loadScript(n: number, metaJson: string): string {
  return `(async () => {
    const n = ${n}, lanes = ${LANES}, perStep = ${SPANS_PER_STEP};
    const steps = Math.floor(n / lanes / perStep);
    const cols = { count: n, lane: new Int32Array(n), kind: new Uint8Array(n), name: new Int32Array(n), opType: new Int32Array(n),
      start: new Float64Array(n), dur: new Float64Array(n), step: new Int32Array(n), micro: new Int32Array(n).fill(-1),
      stage: new Int32Array(n).fill(-1), bytes: new Float64Array(n), peer: new Int32Array(n).fill(-1), parent: new Int32Array(n).fill(-1),
      flags: new Uint8Array(n), cause: new Uint8Array(n) };
    const strings = ['session.run', 'all-reduce', 'idle', 'MatMul', 'Add', 'LayerNormalization', 'Gelu'];
    for (let k = 0; k < 60; k++) strings.push('/layers.' + k + '/mlp/fc/MatMul');
    let seed = 12345;
    const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 4294967296; };
    const stepLen = 20000;
    const stepWin = [];
    let i = 0;
    for (let l = 0; l < lanes; l++) {
      for (let s = 0; s < steps; s++) {
        const t0 = s * stepLen;
        const host = 20 + rnd() * 40;
        // idle: host overhead before compute
        cols.lane[i] = l; cols.kind[i] = 2; cols.name[i] = 2; cols.opType[i] = -1; cols.start[i] = t0; cols.dur[i] = host; cols.step[i] = s; cols.cause[i] = 3; i++;
        const c = i;
        cols.lane[i] = l; cols.kind[i] = 0; cols.name[i] = 0; cols.opType[i] = -1; cols.start[i] = t0 + host; cols.step[i] = s; i++;
        let t = t0 + host;
        for (let k = 0; k < 240; k++) {
          const d = 5 + rnd() * (k % 4 === 1 ? 140 : 50);
          cols.lane[i] = l; cols.kind[i] = 0; cols.name[i] = 7 + (k % 60); cols.opType[i] = 3 + (k % 4); cols.start[i] = t; cols.dur[i] = d;
          cols.step[i] = s; cols.parent[i] = c; cols.flags[i] = 8; i++;
          t += d + 0.5;
        }
        cols.dur[c] = t - (t0 + host);
        // idle: waiting for the slowest rank at the collective (straggler skew per lane)
        const wait = 50 + l * 40 + rnd() * 200;
        cols.lane[i] = l; cols.kind[i] = 2; cols.name[i] = 2; cols.opType[i] = -1; cols.start[i] = t; cols.dur[i] = wait; cols.step[i] = s; cols.cause[i] = 2; i++;
        t += wait;
        for (let k = 0; k < 4; k++) {
          const d = 30 + rnd() * 60;
          cols.lane[i] = l; cols.kind[i] = 1; cols.name[i] = 1; cols.opType[i] = -1; cols.start[i] = t; cols.dur[i] = d; cols.step[i] = s; cols.bytes[i] = 1 << 20;
          cols.flags[i] = k === 3 ? 1 : 0; i++;
          t += d;
          if (k < 3) { cols.lane[i] = l; cols.kind[i] = 2; cols.name[i] = 2; cols.opType[i] = -1; cols.start[i] = t; cols.dur[i] = 3; cols.step[i] = s; cols.cause[i] = 2; i++; t += 3; }
        }
        if (l === 0) stepWin.push({ index: s, startUs: t0, endUs: t0 + stepLen - 1 });
      }
    }
    // Any remainder (n not a multiple of a step) is filled with short operator spans on lane 0.
    for (let j = 0; i < n; i++, j++) { cols.lane[i] = 0; cols.kind[i] = 0; cols.name[i] = 7; cols.opType[i] = 3; cols.start[i] = steps * stepLen + j * 2; cols.dur[i] = 1; cols.flags[i] = 8; cols.step[i] = -1; }
    const meta = ${metaJson};
    const doc = { format: 'parallax-trace', version: 1, meta, strings,
      lanes: meta.devices.map((d, k) => ({ device: k, label: d.label, group: d.physicalUnit })), steps: stepWin, spans: cols };
    const t0 = performance.now();
    const st = await window.__parallax.load(doc, undefined, { title: 'synthetic ' + n + ' spans' });
    return { stats: st, loadMs: performance.now() - t0 };
  })()`;
}

export async function heapBytes(cdp: CDPSession): Promise<{ used: number; backing: number; total: number }> {
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('HeapProfiler.collectGarbage');
  const h = (await cdp.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
  const backing = h.backingStorageSize ?? 0;
  return { used: h.usedSize, backing, total: h.usedSize + backing };
}

interface LoadResult {
  firstFrameMs: number;
  loadMs: number;
  prepMs: number;
  prepWhere: string;
  bytesPerSpan: number;
  heapPerSpan: number;
  backingPerSpan: number;
}

async function openShell(browser: Browser, file: string): Promise<{ page: Page; cdp: CDPSession }> {
  const page = await browser.newPage({ viewport: { width: WIDTH, height: HEIGHT } });
  await page.goto(`file://${file}`);
  await waitLoaded(page);
  const cdp = await page.context().newCDPSession(page);
  return { page, cdp };
}

async function loadOnce(browser: Browser, file: string, n: number, metaJson: string): Promise<{ page: Page; cdp: CDPSession; r: LoadResult }> {
  const { page, cdp } = await openShell(browser, file);
  const before = await heapBytes(cdp);
  const out = (await page.evaluate(loadScript(n, metaJson))) as { stats: ViewStats; loadMs: number };
  if (!out.stats.loaded) throw new Error(`load failed: ${out.stats.error}`);
  const after = await heapBytes(cdp);
  return {
    page,
    cdp,
    r: {
      firstFrameMs: out.stats.frame.firstFrameMs ?? NaN,
      loadMs: out.loadMs,
      prepMs: out.stats.frame.prepMs,
      prepWhere: out.stats.frame.prepWhere,
      bytesPerSpan: (after.total - before.total) / n,
      heapPerSpan: (after.used - before.used) / n,
      backingPerSpan: (after.backing - before.backing) / n,
    },
  };
}

/** Real input (wheel, drag, keys) and a zoom sweep; returns the draw time of every frame. */
export async function interact(page: Page, quick = false): Promise<{ drawMs: number[]; rafMs: number[] }> {
  const s0 = await stats(page);
  const box = (await page.locator('.px-canvas-wrap').boundingBox())!;
  const x0 = box.x + 40;
  const y = box.y + 60;
  await page.evaluate('window.__parallax.frameTimes().length');
  const before = ((await page.evaluate('window.__parallax.frameTimes()')) as number[]).length;
  // Zoom sweep: whole trace → 1 ms, every level of detail on the way.
  const full = s0.visible.endUs - s0.visible.startUs;
  const mid = (s0.visible.startUs + s0.visible.endUs) / 2;
  for (let w = full; w > 1000; w *= quick ? 0.5 : 0.75) await setView(page, mid - w / 2, mid + w / 2);
  await setView(page, s0.visible.startUs, s0.visible.endUs);
  // Wheel zoom in and out at several places.
  for (let k = 0; k < (quick ? 6 : 24); k++) {
    await page.mouse.move(x0 + ((k * 97) % (box.width - 80)), y);
    await page.mouse.wheel(0, k % 8 < 5 ? -240 : 300);
    await nextFrame(page);
  }
  // Drag pans.
  for (let k = 0; k < (quick ? 2 : 6); k++) {
    const sx = box.x + box.width / 2;
    await page.mouse.move(sx, y);
    await page.mouse.down();
    for (let j = 1; j <= 8; j++) {
      await page.mouse.move(sx + (k % 2 ? -1 : 1) * j * 40, y);
      await nextFrame(page);
    }
    await page.mouse.up();
  }
  // Keyboard, Perfetto style.
  await page.locator('.px-canvas-wrap').focus();
  for (const key of quick ? ['w', 'd', 's', 'a'] : ['w', 'w', 'w', 'd', 'd', 'd', 'a', 's', 's', 'w', 'd', 'a', 'a', 's', 's', 's', 'd', 'w']) {
    await page.keyboard.press(key);
    await nextFrame(page);
  }
  await page.keyboard.press('0');
  await nextFrame(page);
  const all = (await page.evaluate('window.__parallax.frameTimes()')) as number[];
  const drawMs = all.slice(before);
  // Continuous pan and zoom, one step per animation frame, at 1/8 of the trace (a view where
  // panning moves and dense rows switch between pyramid and spans): the intervals a user sees.
  await setView(page, mid - full / 16, mid + full / 16);
  const rafMs = (await page.evaluate(`new Promise((resolve) => {
    const out = []; let last = 0; let k = 0;
    const keys = ['d', 'd', 'd', 'd', 'w', 'd', 'd', 's', 'a', 'a', 'a', 'a', 'a'];
    function tick(t) {
      if (last) out.push(t - last);
      last = t;
      if (k++ >= ${quick ? 60 : 180}) return resolve(out);
      document.dispatchEvent(new KeyboardEvent('keydown', { key: keys[k % keys.length], bubbles: true }));
      requestAnimationFrame(tick);
    }
    requestAnimationFrame(tick);
  })`)) as number[];
  const all2 = (await page.evaluate('window.__parallax.frameTimes()')) as number[];
  drawMs.push(...all2.slice(all.length > all2.length ? 0 : all.length));
  return { drawMs, rafMs };
}

/** Median time per drawing phase over 20 frames of the whole trace (the heaviest view). */
async function fullViewPhases(page: Page): Promise<Record<string, number>> {
  const acc: Record<string, number[]> = {};
  for (let k = 0; k < 20; k++) {
    const s = await nextFrame(page);
    for (const [name, ms] of Object.entries(s.drawn.phaseMs)) (acc[name] ??= []).push(ms);
    (acc['total'] ??= []).push(s.frame.lastMs);
  }
  return Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, median(v)]));
}

async function main(): Promise<void> {
  const repsArg = process.argv.indexOf('--reps');
  const reps = repsArg > 0 ? Number(process.argv[repsArg + 1]) : 3;
  const skip5m = process.argv.includes('--skip-5m');
  const dir = mkdtempSync(join(tmpdir(), 'parallax-timeline-bench-'));
  const file = join(dir, 'shell.html');
  writeFileSync(file, reportHtml(shellTrace(), { title: 'bench' }));
  const metaJson = JSON.stringify(meta({ plan: dataPlan({ batch: 64, shards: Array(LANES).fill(8) }, LANES) }, LANES));
  const browser = await launch(['--js-flags=--max-old-space-size=4096']);
  const version = browser.version();

  const N1 = 1_000_000;
  const loads: LoadResult[] = [];
  let drawMs: number[] = [];
  let rafMs: number[] = [];
  let phases: Record<string, number> = {};
  for (let r = 0; r < reps; r++) {
    const { page, r: res } = await loadOnce(browser, file, N1, metaJson);
    loads.push(res);
    if (r === 0) {
      phases = await fullViewPhases(page);
      if (process.argv.includes('--phases')) console.error(JSON.stringify(phases));
      const it = await interact(page);
      drawMs = it.drawMs;
      rafMs = it.rafMs;
    }
    await page.close();
  }

  let big: (LoadResult & { drawP95: number; drawMedian: number; frames: number; error?: string }) | null = null;
  if (!skip5m) {
    try {
      const { page, r: res } = await loadOnce(browser, file, 5_000_000, metaJson);
      const it = await interact(page, true);
      big = { ...res, drawP95: quantile(it.drawMs, 0.95), drawMedian: median(it.drawMs), frames: it.drawMs.length };
      await page.close();
    } catch (e) {
      big = { firstFrameMs: NaN, loadMs: NaN, prepMs: NaN, prepWhere: '', bytesPerSpan: NaN, heapPerSpan: NaN, backingPerSpan: NaN, drawP95: NaN, drawMedian: NaN, frames: 0, error: String(e) };
    }
  }
  await browser.close();
  rmSync(dir, { recursive: true, force: true });

  const first = median(loads.map((l) => l.firstFrameMs));
  const mem = median(loads.map((l) => l.bytesPerSpan));
  const p95 = quantile(drawMs, 0.95);
  const dropped = rafMs.filter((x) => x > 20).length / Math.max(1, rafMs.length);
  const v = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');
  const cpu = cpus()[0]?.model ?? 'unknown';
  const lines = [
    '## Timeline view: 1,000,000 spans over 8 lanes, headless Chromium at 1600×900',
    '',
    `Machine: ${cpu}, ${availableParallelism()} cores, ${platform()} ${release()}; Chromium ${version} with --disable-gpu (software rendering). ` +
      `First frame and memory: medians of ${reps} loads, each in a fresh page; frame times: ${drawMs.length} frames from real wheel, drag and ` +
      `W/A/S/D input and a zoom sweep over every level of detail. Columns are generated in the page as typed arrays (the binary load path).`,
    '',
    '| figure | median | target | verdict |',
    '|---|---:|---:|---|',
    `| first frame after data arrives (validate, prepare in a worker, draw, present) | ${f0(first)} ms | ≤ 1500 ms | ${v(first <= 1500)} |`,
    `| pan/zoom frame draw time, p95 (median ${f1(median(drawMs))} ms) | ${f1(p95)} ms | ≤ 16 ms | ${v(p95 <= 16)} |`,
    `| page memory per span (V8 heap + array buffers, after GC) | ${f0(mem)} B | ≤ 150 B | ${v(mem <= 150)} |`,
    `| 5,000,000 spans: first frame | ${big ? (big.error ? 'failed' : `${f0(big.firstFrameMs)} ms`) : 'skipped'} | opens | ${big ? v(!big.error && Number.isFinite(big.firstFrameMs)) : '–'} |`,
    `| 5,000,000 spans: pan/zoom draw p95 (median ${big ? f1(big.drawMedian) : '–'} ms, ${big?.frames ?? 0} frames) | ${big ? `${f1(big.drawP95)} ms` : 'skipped'} | pans | ${big ? v(!big.error && big.frames > 0) : '–'} |`,
    '',
    `Details: preparation ${f0(median(loads.map((l) => l.prepMs)))} ms (${loads[0]?.prepWhere ?? '?'} thread); memory per span = ` +
      `${f0(median(loads.map((l) => l.heapPerSpan)))} B V8 heap + ${f0(median(loads.map((l) => l.backingPerSpan)))} B array buffers (the 14 span columns alone are 59 B). ` +
      `Continuous pan, one step per animation frame: rAF interval median ${f1(median(rafMs))} ms, p95 ${f1(quantile(rafMs, 0.95))} ms, ` +
      `${(dropped * 100).toFixed(1)}% of frames over 20 ms; whole-trace frame ${f1(phases['total'] ?? NaN)} ms = spans ${f1(phases['spans'] ?? NaN)} + putImageData ${f1(phases['present'] ?? NaN)} + overlay ${f1(phases['overlay'] ?? NaN)} + axis ${f1(phases['axis'] ?? NaN)} ms (the display rate caps the interval at ~16.7 ms, so the draw time is the figure held to the 16 ms target).` +
      (big && !big.error ? ` 5M spans: ${f0(big.bytesPerSpan)} B per span, preparation ${f0(big.prepMs)} ms.` : big?.error ? ` 5M spans failed: ${big.error}` : ''),
    '',
  ];
  process.stdout.write(lines.join('\n'));

  const out = join(__dirname, 'results', 'timeline.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      {
        machine: { cpu, cores: availableParallelism(), os: `${platform()} ${release()}`, node: process.versions.node, chromium: version },
        viewport: { width: WIDTH, height: HEIGHT },
        spans: N1,
        lanes: LANES,
        loads,
        drawMs,
        rafMs,
        fullViewPhasesMs: phases,
        summary: { firstFrameMsMedian: first, drawMsP95: p95, drawMsMedian: median(drawMs), bytesPerSpanMedian: mem, rafDroppedShare: dropped },
        fiveMillion: big,
        targets: { firstFrameMs: 1500, drawMsP95: 16, bytesPerSpan: 150 },
      },
      null,
      2,
    ),
  );
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
