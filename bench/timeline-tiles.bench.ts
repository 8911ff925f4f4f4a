/**
 * The timeline view in tiles (protocol 3), in headless Chromium at 1600×900 as in
 * timeline.bench.ts, at 1,000,000, 5,000,000 and 20,000,000 spans over 8 lanes (the same
 * synthetic trace shape: per step and lane one compute span with 240 operators, 4
 * collectives, idle gaps by cause):
 *  - the span columns are built here, in the Node process, and the tile server
 *    (src/profiler/span-tiles.ts, the code the extension host runs) is built on them; the
 *    page gets a `load` without spans and asks for tiles, which reach this process through
 *    a Playwright binding standing in for the webview's postMessage (each tile crosses as
 *    base64 columns, decoded in the page, then posted to the view as a host message);
 *  - first frame: from the `load` call to the animation frame after the first frame drawn
 *    with the first tile (round trip included), target ≤ 2 s;
 *  - pan/zoom frame draw time p95 over the same real input as timeline.bench.ts (wheel,
 *    drag, W/A/S/D, a zoom sweep over every level of detail), target ≤ 16 ms;
 *  - view memory: V8 heap used + array-buffer backing stores after GC, after the load and
 *    again after all the input (the largest of the two), target ≤ 300 MB at 20M spans, and flat
 *    across sizes;
 *  - host side: tile server build time and tile answer times (median, p95);
 *  - first open, as the extension host does it: the trace is written once (a side file with
 *    its tile index, as `import` writes it), then read back REPS times each way (WAYS),
 *    interleaved: with the stored index as the host reads it now, with the stored index as it
 *    was read before (columns checked after every read, summary in a pass of its own), or
 *    without it (the index built); first open = read + index + summary + the first frame above
 *    (medians), target ≤ 2 s.
 * Reported as PASS/MISS, never asserted.
 *
 *   node --import tsx bench/timeline-tiles.bench.ts [--sizes 1,5,20] (millions of spans)
 *
 * Prints a Markdown section and writes bench/results/timeline-tiles.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launch, reportHtml, waitLoaded } from '../test/helpers/browser';
import { dataPlan, meta } from '../test/helpers/trace-builders';
import { SpanTiles, tileSummary, type Tile, type TileRequest } from '../src/profiler/span-tiles';
import { SPAN_COLUMNS, allocSpans, type SpanColumns, type Trace } from '../src/profiler/trace-format';
import { readTraceWithTileIndex, writeTrace } from '../src/profiler/trace-io';
import type { ViewStats } from '../webview/src/hook-api';
import { HEIGHT, LANES, SPANS_PER_STEP, WIDTH, heapBytes, interact, median, quantile, shellTrace } from './timeline.bench';

/** The span columns of timeline.bench.ts's page-side generator, built here (same shape, same seed). */
export function benchColumns(n: number): { spans: SpanColumns; steps: { index: number; startUs: number; endUs: number }[]; strings: string[] } {
  const c = allocSpans(n);
  c.micro.fill(-1);
  c.stage.fill(-1);
  c.peer.fill(-1);
  c.parent.fill(-1);
  c.opType.fill(-1);
  const strings = ['session.run', 'all-reduce', 'idle', 'MatMul', 'Add', 'LayerNormalization', 'Gelu'];
  for (let k = 0; k < 60; k++) strings.push(`/layers.${k}/mlp/fc/MatMul`);
  const nSteps = Math.floor(n / LANES / SPANS_PER_STEP);
  let seed = 12345;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 4294967296;
  };
  const stepLen = 20000;
  const steps: { index: number; startUs: number; endUs: number }[] = [];
  let i = 0;
  const put = (lane: number, kind: number, name: number, start: number, dur: number, step: number): number => {
    c.lane[i] = lane;
    c.kind[i] = kind;
    c.name[i] = name;
    c.start[i] = start;
    c.dur[i] = dur;
    c.step[i] = step;
    return i++;
  };
  for (let l = 0; l < LANES; l++) {
    for (let s = 0; s < nSteps; s++) {
      const t0 = s * stepLen;
      const host = 20 + rnd() * 40;
      c.cause[put(l, 2, 2, t0, host, s)] = 3;
      const comp = put(l, 0, 0, t0 + host, 0, s);
      let t = t0 + host;
      for (let k = 0; k < 240; k++) {
        const d = 5 + rnd() * (k % 4 === 1 ? 140 : 50);
        const o = put(l, 0, 7 + (k % 60), t, d, s);
        c.opType[o] = 3 + (k % 4);
        c.parent[o] = comp;
        c.flags[o] = 8;
        t += d + 0.5;
      }
      c.dur[comp] = t - (t0 + host);
      const wait = 50 + l * 40 + rnd() * 200;
      c.cause[put(l, 2, 2, t, wait, s)] = 2;
      t += wait;
      for (let k = 0; k < 4; k++) {
        const d = 30 + rnd() * 60;
        const m = put(l, 1, 1, t, d, s);
        c.bytes[m] = 1 << 20;
        c.flags[m] = k === 3 ? 1 : 0;
        t += d;
        if (k < 3) {
          c.cause[put(l, 2, 2, t, 3, s)] = 2;
          t += 3;
        }
      }
      if (l === 0) steps.push({ index: s, startUs: t0, endUs: t0 + stepLen - 1 });
    }
  }
  for (let j = 0; i < n; j++) {
    const o = put(0, 0, 7, nSteps * stepLen + j * 2, 1, -1);
    c.opType[o] = 3;
    c.flags[o] = 8;
  }
  return { spans: c, steps, strings };
}

/** A tile as base64 columns (what crosses the binding), and the page-side decoder. */
function encodeTile(t: Tile): Record<string, unknown> {
  const enc = (a: ArrayBufferView): { t: string; b: string } => ({ t: a.constructor.name, b: Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64') });
  const cols = (o: Record<string, unknown>): Record<string, unknown> =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [k, ArrayBuffer.isView(v) ? enc(v) : v]));
  return { ...t, spans: cols(t.spans as unknown as Record<string, unknown>), buckets: cols(t.buckets as unknown as Record<string, unknown>) };
}

const BRIDGE = `(() => {
  const dec = (o) => {
    const out = {};
    for (const [k, v] of Object.entries(o)) {
      if (v && typeof v === 'object' && typeof v.b === 'string') {
        const bin = atob(v.b); const u = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
        out[k] = new self[v.t](u.buffer);
      } else out[k] = v;
    }
    return out;
  };
  window.addEventListener('parallax:post', async (e) => {
    const m = e.detail;
    if (m.type !== 'tile') return;
    const r = await window.__benchTile(m.run, m.request);
    const msg = r.error ? { type: 'tileResult', id: m.id, run: m.run, error: r.error }
      : { type: 'tileResult', id: m.id, run: m.run, tile: { ...r, spans: dec(r.spans), buckets: dec(r.buckets) } };
    window.postMessage(msg, '*');
  });
})()`;

/** Reads of the written trace per way of opening it (interleaved). */
const REPS = 3;

/**
 * The ways of opening a written trace that are compared:
 *  - `stored`: as the extension host opens it: the columns checked as each is read, while the
 *    others are read; the stored tile index read and checked (SpanTiles.fromIndex); the view's
 *    summary from the index's row table (SpanTiles.summary);
 *  - `storedBefore`: the same trace opened the way Parallax did before: every column read,
 *    then checked; the summary in a pass of its own over the spans (tileSummary);
 *  - `built`: the trace read without its stored index, which is built, as for a side file
 *    without one (summary by tileSummary).
 */
const WAYS = ['stored', 'storedBefore', 'built'] as const;
type Way = (typeof WAYS)[number];

/** One way of opening a written trace: read (columns, checked), index, view summary. */
interface OpenTimes {
  readMs: number[];
  indexMs: number[];
  summaryMs: number[];
}

/**
 * Opens the trace at `path` REPS times each way, interleaved. Returns the times and the tile
 * server of the last open with the stored index.
 */
async function openWays(path: string): Promise<{ times: Record<Way, OpenTimes>; tiles: SpanTiles; storedBytes: number }> {
  const times = Object.fromEntries(WAYS.map((w) => [w, { readMs: [], indexMs: [], summaryMs: [] }])) as unknown as Record<Way, OpenTimes>;
  let tiles: SpanTiles | null = null;
  let storedBytes = 0;
  const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
  for (let k = 0; k < REPS; k++) {
    for (const way of WAYS) {
      if (way === 'stored') tiles = null;
      gc();
      const withIndex = way !== 'built';
      const t0 = performance.now();
      const r = await readTraceWithTileIndex(path, () => withIndex, { overlap: way === 'stored' });
      const t1 = performance.now();
      if (withIndex && !r.tileIndex) throw new Error(`no stored index read: ${r.note ?? 'none stored'}`);
      const t = r.tileIndex ? SpanTiles.fromIndex(r.trace, r.tileIndex) : new SpanTiles(r.trace);
      const t2 = performance.now();
      // The panel sends the view's summary with the load.
      if (way === 'stored') t.summary();
      else tileSummary(r.trace.spans, r.trace.lanes.length);
      const t3 = performance.now();
      times[way].readMs.push(t1 - t0);
      times[way].indexMs.push(t2 - t1);
      times[way].summaryMs.push(t3 - t2);
      if (way === 'stored') {
        tiles = t;
        storedBytes = Object.values(r.tileIndex!).reduce((a: number, v) => a + (ArrayBuffer.isView(v) ? v.byteLength : 0), 0);
      }
    }
  }
  return { times, tiles: tiles!, storedBytes };
}

interface OpenMedians {
  readMs: number;
  indexMs: number;
  summaryMs: number;
}

interface SizeResult {
  spans: number;
  buildMs: number;
  /** Medians of {@link openWays}. */
  open: Record<Way, OpenMedians>;
  /** Bytes of the stored index in the side file, and the seconds writeTrace took (index build included). */
  storedIndexMB: number;
  writeS: number;
  firstFrameMs: number;
  drawP95: number;
  drawMedian: number;
  frames: number;
  tileMsMedian: number;
  tileMsP95: number;
  tiles: number;
  tileSpansMax: number;
  memLoadMB: number;
  memAfterMB: number;
  roundTripMs: number;
}

async function runSize(browser: Browser, file: string, metaJson: string, n: number, dir: string): Promise<SizeResult> {
  let cols: ReturnType<typeof benchColumns> | null = benchColumns(n);
  const lanes = Array.from({ length: LANES }, (_, k) => ({ device: k, label: `cpu:${k}`, group: 'cpu' }));
  const tracePath = join(dir, `tiles-${n}.parallax.json`);
  const tw = performance.now();
  await writeTrace(tracePath, { meta: JSON.parse(metaJson) as Trace['meta'], strings: cols.strings, lanes, steps: cols.steps, spans: cols.spans }, { spans: 'side-file' });
  const writeS = (performance.now() - tw) / 1000;
  // The columns in hand are dropped: what the view is served from is what was read back.
  cols.spans = allocSpans(0);
  const open = await openWays(tracePath);
  let tiles: SpanTiles | null = open.tiles;
  const buildMs = median(open.times.built.indexMs);
  const tileMs: number[] = [];
  let tileSpansMax = 0;
  const page = await browser.newPage({ viewport: { width: WIDTH, height: HEIGHT } });
  await page.exposeFunction('__benchTile', (_run: number, req: TileRequest) => {
    try {
      const t0 = performance.now();
      const t = tiles!.tile(req);
      tileMs.push(performance.now() - t0);
      tileSpansMax = Math.max(tileSpansMax, t.spans.count + t.buckets.count);
      return encodeTile(t);
    } catch (e) {
      return { error: String(e) };
    }
  });
  await page.goto(`file://${file}`);
  await waitLoaded(page);
  await page.evaluate(BRIDGE);
  const cdp = await page.context().newCDPSession(page);
  const before = await heapBytes(cdp);
  const doc = {
    format: 'parallax-trace',
    version: 1,
    meta: JSON.parse(metaJson) as unknown,
    strings: cols.strings,
    lanes: Array.from({ length: LANES }, (_, k) => ({ device: k, label: `cpu:${k}`, group: 'cpu' })),
    steps: cols.steps,
    spans: { count: 0, ...Object.fromEntries(SPAN_COLUMNS.map((c) => [c, []])) },
  };
  // A string, not a function: tsx would wrap a function in helpers the page lacks.
  const st = (await page.evaluate(
    `window.__parallax.load(${JSON.stringify(doc)}, undefined, { title: 'tiles' }, [${JSON.stringify(tiles.summary())}])`,
  )) as ViewStats;
  if (!st.loaded) throw new Error(`load failed: ${st.error}`);
  const afterLoad = await heapBytes(cdp);
  const it = await interact(page, n > 5_000_000);
  const after = await heapBytes(cdp);
  const end = (await page.evaluate('window.__parallax.stats()')) as ViewStats;
  await page.close();
  tiles = null;
  cols = null;
  rmSync(tracePath, { force: true });
  rmSync(tracePath.replace(/\.json$/, '.spans'), { force: true });
  const med = (o: OpenTimes): OpenMedians => ({ readMs: median(o.readMs), indexMs: median(o.indexMs), summaryMs: median(o.summaryMs) });
  return {
    spans: n,
    buildMs,
    open: Object.fromEntries(WAYS.map((w) => [w, med(open.times[w])])) as Record<Way, OpenMedians>,
    storedIndexMB: open.storedBytes / 2 ** 20,
    writeS,
    firstFrameMs: st.frame.firstFrameMs ?? NaN,
    drawP95: quantile(it.drawMs, 0.95),
    drawMedian: median(it.drawMs),
    frames: it.drawMs.length,
    tileMsMedian: median(tileMs),
    tileMsP95: quantile(tileMs, 0.95),
    tiles: tileMs.length,
    tileSpansMax,
    memLoadMB: (afterLoad.total - before.total) / 2 ** 20,
    memAfterMB: (after.total - before.total) / 2 ** 20,
    roundTripMs: end.tiles?.lastMs ?? NaN,
  };
}

async function main(): Promise<void> {
  const si = process.argv.indexOf('--sizes');
  const sizes = (si > 0 ? process.argv[si + 1]! : '1,5,20').split(',').map((s) => Math.round(Number(s) * 1e6));
  const loadStart = loadavg()[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'parallax-tiles-bench-'));
  const file = join(dir, 'shell.html');
  writeFileSync(file, reportHtml(shellTrace(), { title: 'bench' }));
  const metaJson = JSON.stringify(meta({ plan: dataPlan({ batch: 64, shards: Array(LANES).fill(8) }, LANES) }, LANES));
  const browser = await launch();
  const version = browser.version();
  const results: SizeResult[] = [];
  for (const n of sizes) {
    results.push(await runSize(browser, file, metaJson, n, dir));
    (globalThis as { gc?: () => void }).gc?.();
  }
  await browser.close();
  rmSync(dir, { recursive: true, force: true });

  const v = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');
  const cpu = cpus()[0]?.model ?? 'unknown';
  const rows = results.map((r) => {
    const mem = Math.max(r.memLoadMB, r.memAfterMB);
    return `| ${(r.spans / 1e6).toFixed(0)}M | ${f0(r.firstFrameMs)} ms ${v(r.firstFrameMs <= 2000)} | ${f1(r.drawP95)} ms ${v(r.drawP95 <= 16)} (median ${f1(r.drawMedian)}, ${r.frames} frames) | ${f0(r.memLoadMB)} / ${f0(r.memAfterMB)} MB ${v(mem <= 300)} | ${f0(r.tileMsMedian)} / ${f0(r.tileMsP95)} ms (${r.tiles} tiles, ≤ ${r.tileSpansMax.toLocaleString('en-US')} spans + buckets) |`;
  });
  const openRows = results.map((r) => {
    const total = (o: OpenMedians): number => o.readMs + o.indexMs + o.summaryMs + r.firstFrameMs;
    const cell = (o: OpenMedians): string =>
      `${(total(o) / 1000).toFixed(2)} s ${v(total(o) <= 2000)} (read ${f0(o.readMs)} + index ${f0(o.indexMs)} + summary ${f0(o.summaryMs)} + frame ${f0(r.firstFrameMs)} ms)`;
    const o = r.open;
    return `| ${(r.spans / 1e6).toFixed(0)}M | ${cell(o.stored)} | ${cell(o.storedBefore)} | ${(total(o.storedBefore) / total(o.stored)).toFixed(2)}× | ${cell(o.built)} | ${f0(r.storedIndexMB)} MB | ${r.writeS.toFixed(1)} s |`;
  });
  const lines = [
    '## Timeline view in tiles: 1M, 5M and 20M spans over 8 lanes, headless Chromium at 1600×900',
    '',
    `Machine: ${cpu}, ${availableParallelism()} cores, shared: measured while other work ran (load average ${loadStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, the bench's own processes included), ${platform()} ${release()}; Chromium ${version} with --disable-gpu. ` +
      'The tile server (src/profiler/span-tiles.ts) runs in the bench\'s Node process, as in the extension host; tiles reach the page through a Playwright binding ' +
      'standing in for postMessage (base64 columns, decoded in the page). Same trace shape and input as the timeline bench; one load per size.',
    '',
    '| spans | first frame, index ready (≤ 2 s) | pan/zoom draw p95 (≤ 16 ms) | view memory after load / after input (≤ 300 MB) | tile answer median / p95 |',
    '|---|---:|---:|---:|---:|',
    ...rows,
    '',
    `First open of the trace written as \`import\` writes it (side file with its tile index), as the extension host does it: read the trace (every column checked), ` +
      `the tile index (read back and checked, or built as for a side file without one), the view's summary, then the first frame above. Medians of ${REPS} opens each way, interleaved. ` +
      '"Stored index": each column checked as soon as it is read while the next ones are read, the summary from the index\'s row table; ' +
      '"before": the same file opened as Parallax did before (every column read, then checked; the summary in a pass of its own over the spans).',
    '',
    '| spans | first open, stored index (≤ 2 s) | first open, stored index, before | before ÷ now | first open, index built (≤ 2 s) | stored index | write (index build included) |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...openRows,
    '',
    'View memory is V8 heap used + array-buffer backing stores after GC, minus the same before the load: it holds the tile in hand and its draw model, ' +
      'bounded by the window\'s pixels and the host\'s span budget per tile, not by the trace. The first frame includes the first tile\'s round trip. ' +
      'First open adds read, index and first frame, an upper bound since the view starts up while the host reads; reads come from the page cache (the file was just written).',
    '',
  ];
  process.stdout.write(lines.join('\n'));
  const out = join(__dirname, 'results', 'timeline-tiles.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify({ machine: { cpu, cores: availableParallelism(), os: `${platform()} ${release()}`, node: process.versions.node, chromium: version }, results, targets: { firstFrameMs: 2000, drawMsP95: 16, viewMemoryMB: 300 } }, null, 2),
  );
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
