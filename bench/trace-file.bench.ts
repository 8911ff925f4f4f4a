/**
 * Trace files at scale: the JSON form against the binary side file, then a 10M-span trace.
 *
 *  1. A synthetic GPipe trace of 2,000,000 spans written and read back in both forms,
 *     interleaved, median of 3: file sizes, write and read times, and the ratio of the two
 *     reads (the side file is read without parsing text).
 *  2. A 10,000,000-span trace (beyond what the JSON form can hold: its text would pass V8's
 *     largest string): side file written and read, then `analyse` and `findings` on it.
 *     Targets from the big-trace work: read + analyses of a 10M-span trace under 5 s.
 *
 *   node --import tsx bench/trace-file.bench.ts      (PARALLAX_BENCH_SPANS=N for part 2)
 */
import * as os from 'node:os';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { analyse } from '../src/profiler/analysis/index';
import { syntheticPipelineTrace, type SyntheticPipelineOptions } from '../src/profiler/analysis/synthetic';
import { findings } from '../src/profiler/findings';
import { summarize } from '../src/profiler/summary';
import { median } from '../src/profiler/stats';
import { readTrace, writeTrace } from '../src/profiler/trace-io';
import { spansFilePath } from '../src/profiler/spans-file';
import type { Trace } from '../src/profiler/trace-format';

const SMALL_SPANS = 2_000_000;
const BIG_SPANS = Number(process.env['PARALLAX_BENCH_SPANS'] ?? 10_000_000);
const REPEATS = 3;
const TARGET_MS = 5000;

const base: Omit<SyntheticPipelineOptions, 'steps'> = {
  stageUs: [900, 1000, 1100, 1000, 950, 1050, 1000, 1200],
  microBatches: 16,
  commUs: 40,
  opsPerCompute: 8,
  jitter: 0.1,
  batch: 256,
  seed: 11,
};

function traceOf(spans: number): Trace {
  const perStep = syntheticPipelineTrace({ ...base, steps: 1 }).spans.count;
  return syntheticPipelineTrace({ ...base, steps: Math.ceil((1.01 * spans) / perStep) });
}

async function timed<T>(fn: () => Promise<T> | T): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'parallax-bench-trace-file-'));
  const loadStart = os.loadavg()[0] ?? 0;
  try {
    // Part 1: both forms, interleaved.
    const small = traceOf(SMALL_SPANS);
    const json = join(dir, 'inline.parallax.json');
    const side = join(dir, 'side.parallax.json');
    const w = { inline: [] as number[], side: [] as number[] };
    const r = { inline: [] as number[], side: [] as number[] };
    for (let i = 0; i < REPEATS; i++) {
      w.inline.push((await timed(() => writeTrace(json, small, { spans: 'inline' })))[1]);
      w.side.push((await timed(() => writeTrace(side, small, { spans: 'side-file' })))[1]);
      r.inline.push((await timed(() => readTrace(json)))[1]);
      r.side.push((await timed(() => readTrace(side)))[1]);
    }
    const inlineBytes = statSync(json).size;
    const sideBytes = statSync(side).size + statSync(spansFilePath(side)).size;
    const smallCount = small.spans.count;

    // Part 2: a big trace, side file only.
    const big = traceOf(BIG_SPANS);
    const bigPath = join(dir, 'big.parallax.json');
    const [, bigWriteMs] = await timed(() => writeTrace(bigPath, big));
    const bigBytes = statSync(bigPath).size + statSync(spansFilePath(bigPath)).size;
    const bigCount = big.spans.count;
    const [loaded, bigReadMs] = await timed(() => readTrace(bigPath));
    const [analysis, analyseMs] = await timed(() => analyse(loaded));
    const summary = summarize(loaded);
    const [found, findingsMs] = await timed(() => findings(loaded, summary, { analysis }));
    const totalMs = bigReadMs + analyseMs + findingsMs;

    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const med = { inlineWrite: median(w.inline), sideWrite: median(w.side), inlineRead: median(r.inline), sideRead: median(r.side) };
    const results = {
      bench: 'trace-file',
      machine: { cpu, cores: os.availableParallelism(), os: `${os.platform()} ${os.release()}`, node: process.versions.node },
      small: { spans: smallCount, inlineBytes, sideBytes, writeMs: w, readMs: r, medians: med },
      big: { spans: bigCount, bytes: bigBytes, writeMs: bigWriteMs, readMs: bigReadMs, analyseMs, findingsMs, totalMs, findings: found.map((f) => f.id) },
      targets: { readAndAnalyseMs: TARGET_MS },
    };
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/trace-file.json', `${JSON.stringify(results, null, 2)}\n`);
    const ms = (x: number): string => `${x.toFixed(0)} ms`;
    const mb = (x: number): string => `${(x / 2 ** 20).toFixed(0)} MiB`;
    process.stdout.write(`## Trace files: JSON against the binary span file; a ${bigCount.toLocaleString('en-US')}-span trace

Machine: ${cpu}, ${os.availableParallelism()} logical cores, Node ${process.versions.node}, shared: measured while other work ran (load average ${loadStart.toFixed(1)} at the start, ${(os.loadavg()[0] ?? 0).toFixed(1)} at the end). Command: \`node --import tsx bench/trace-file.bench.ts\`.
Synthetic GPipe traces (8 lanes, 16 micro-batches, 8 operator spans per compute span). Medians of ${REPEATS}, the two forms interleaved. A side file's write includes building the tile index it stores; its read checks every column (as each is read) and reads no tile index.

| ${smallCount.toLocaleString('en-US')} spans | JSON (one file) | side file (JSON + .spans) | JSON / side file |
|---|---|---|---|
| size on disk | ${mb(inlineBytes)} | ${mb(sideBytes)} | ${(inlineBytes / sideBytes).toFixed(1)}× |
| write | ${ms(med.inlineWrite)} | ${ms(med.sideWrite)} | ${(med.inlineWrite / med.sideWrite).toFixed(1)}× |
| read (validated) | ${ms(med.inlineRead)} | ${ms(med.sideRead)} | ${(med.inlineRead / med.sideRead).toFixed(1)}× |

| ${bigCount.toLocaleString('en-US')} spans (${mb(bigBytes)}, side file) | time | target |
|---|---|---|
| write | ${ms(bigWriteMs)} | |
| read (validated) | ${ms(bigReadMs)} | |
| \`analyse\` | ${ms(analyseMs)} | |
| \`findings\` | ${ms(findingsMs)} | |
| read + analyse + findings | ${ms(totalMs)} | < ${ms(TARGET_MS)}: ${totalMs < TARGET_MS ? 'PASS' : 'MISS'} |
`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
