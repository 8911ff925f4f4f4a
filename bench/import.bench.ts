/**
 * Import of big Kineto traces: the streaming reader against `JSON.parse` of the same kind of
 * text, against a general streaming JSON library, in memory, across eight ranks, and on a
 * file cut short.
 *
 * Generates Kineto-shaped traces from the real DDP fixture's event mix (`kineto-gen.ts`) in a
 * temporary folder, deleted at the end: one of PARALLAX_BENCH_IMPORT_MB (default 1000) MB
 * and eight ranks of PARALLAX_BENCH_RANK_MB (default 250, or a quarter of the big file when
 * that is smaller) MB. Each figure comes from its own child process (`import-child.ts`), so
 * peak memory (`maxRSS`) is the measured work's own; the streaming import and `JSON.parse`
 * of a 400 MB slice (or the whole file, when smaller) alternate, and the medians of
 * BENCH_REPEATS (default 3) runs are reported, with the median of the per-pair ratios.
 * Needs `npm run build` (the import worker).
 *
 *   node --import tsx bench/import.bench.ts
 *   PARALLAX_BENCH_IMPORT_MB=64 node --import tsx bench/import.bench.ts
 */
import * as os from 'node:os';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median } from '../src/profiler/stats';
import { writeKinetoTrace } from './kineto-gen';

const MB = 1e6;
const SIZE_MB = Number(process.env['PARALLAX_BENCH_IMPORT_MB'] ?? 1000);
const RANK_MB = Number(process.env['PARALLAX_BENCH_RANK_MB'] ?? Math.min(250, Math.max(4, Math.round(SIZE_MB / 4))));
const SLICE_MB = Math.min(400, SIZE_MB);
const LIBRARY_MB = Math.min(100, SIZE_MB);
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);
const RANKS = 8;
const CUT_AT = 0.7;

const TARGET_MBS = 60;
const TARGET_RATIO = 0.7;
const TARGET_RSS_RATIO = 1.5;

interface Run {
  ms: number;
  maxRss: number;
  spans?: number;
  lanes?: number;
  bytes?: number;
  events?: number;
  notes?: string[];
}

/** Runs one measurement in its own process and returns what it printed. */
function child(args: string[]): Run {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(__dirname, 'import-child.ts'), ...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`import-child ${args[0]} failed (exit ${r.status}): ${r.stderr}`);
  return JSON.parse(line) as Run;
}

function main(): void {
  if (!existsSync(join(__dirname, '..', 'dist', 'import-worker.js'))) throw new Error('dist/import-worker.js missing: run npm run build first');
  const dir = mkdtempSync(join(os.tmpdir(), 'parallax-bench-import-'));
  try {
    run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function run(dir: string): void {
  const loadStart = os.loadavg()[0] ?? 0;
  const big = join(dir, 'big.json');
  const t = performance.now();
  const gen = writeKinetoTrace(big, SIZE_MB * MB);
  const ranks = Array.from({ length: RANKS }, (_, r) => {
    const p = join(dir, `rank-${r}.json`);
    writeKinetoTrace(p, RANK_MB * MB, r, RANKS);
    return p;
  });
  const genMs = performance.now() - t;
  const fileBytes = statSync(big).size;
  const rankBytes = ranks.reduce((a, p) => a + statSync(p).size, 0);

  const baseline = child(['baseline']);
  const imports: Run[] = [];
  const parses: Run[] = [];
  for (let i = 0; i < REPEATS; i++) {
    imports.push(child(['import', big]));
    parses.push(child(['parse', big, String(SLICE_MB * MB)]));
  }
  const library = child(['library', big, String(LIBRARY_MB * MB)]);
  const sequential: Run[] = [];
  const parallel: Run[] = [];
  for (let i = 0; i < REPEATS; i++) {
    sequential.push(child(['import', ...ranks, '--workers', '1']));
    parallel.push(child(['import', ...ranks, '--workers', String(RANKS)]));
  }
  const cutBytes = Math.floor(fileBytes * CUT_AT);
  truncateSync(big, cutBytes);
  const cut = child(['import', big]);

  const mbs = (bytes: number, ms: number): number => bytes / MB / (ms / 1000);
  const importMbs = imports.map((r) => mbs(fileBytes, r.ms));
  const parseMbs = parses.map((r) => mbs(r.bytes ?? 0, r.ms));
  const ratios = importMbs.map((x, i) => x / parseMbs[i]!);
  const libraryMbs = mbs(library.bytes ?? 0, library.ms);
  const rss = median(imports.map((r) => r.maxRss));
  const medImport = median(importMbs);
  const medParse = median(parseMbs);
  const medRatio = median(ratios);
  const seqMs = median(sequential.map((r) => r.ms));
  const parMs = median(parallel.map((r) => r.ms));
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const cores = os.availableParallelism();
  const load = `${loadStart.toFixed(1)} at the start, ${(os.loadavg()[0] ?? 0).toFixed(1)} at the end`;

  const results = {
    bench: 'import',
    machine: { cpu, cores, os: `${os.platform()} ${os.release()}`, node: process.versions.node },
    config: { sizeMb: SIZE_MB, rankMb: RANK_MB, sliceMb: SLICE_MB, libraryMb: LIBRARY_MB, repeats: REPEATS, ranks: RANKS, cutAt: CUT_AT },
    generated: { fileBytes, events: gen.events, rankBytes, genMs },
    loadAverage: load,
    baselineRss: baseline.maxRss,
    imports,
    parses,
    library,
    sequential,
    parallel,
    cut,
    medians: { importMbs: medImport, parseMbs: medParse, ratio: medRatio, libraryMbs, rss, rssRatio: rss / fileBytes, sequentialMs: seqMs, parallelMs: parMs },
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/import.json', `${JSON.stringify(results, null, 2)}\n`);

  const f0 = (x: number): string => x.toFixed(0);
  const pass = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  const size = (b: number): string => `${f0(b / MB)} MB`;
  process.stdout.write(`## Import of big Kineto traces (streaming)

Machine: ${cpu}, ${cores} logical cores, Node ${process.versions.node} (load average ${load}, the bench's own processes included; timings vary 2–3× between runs, so compare the ratios, measured in the same run; threads of the parallel import also win a larger share of a contended machine than one thread does). Command: \`PARALLAX_BENCH_IMPORT_MB=${SIZE_MB} node --import tsx bench/import.bench.ts\`.
Traces: generated from the real DDP fixture's event mix (\`bench/kineto-gen.ts\`): one of ${size(fileBytes)} (${gen.events.toLocaleString('en-US')} events, ${(imports[0]?.spans ?? 0).toLocaleString('en-US')} GPU spans), eight ranks of ${size(rankBytes / RANKS)}. Medians of ${REPEATS} runs, each in its own process; import and \`JSON.parse\` alternate.

| figure | median | target | result |
|---|---|---|---|
| streaming import (\`importTrace\`, file → trace), ${size(fileBytes)} | ${f0(medImport)} MB/s | ≥ ${TARGET_MBS} MB/s | ${pass(medImport >= TARGET_MBS)} |
| \`JSON.parse\` of a ${size(parses[0]?.bytes ?? 0)} slice (text in memory, parse only) | ${f0(medParse)} MB/s | | |
| streaming import / \`JSON.parse\` (median of the per-pair ratios) | ${medRatio.toFixed(2)}× | ≥ ${TARGET_RATIO}× | ${pass(medRatio >= TARGET_RATIO)} |
| \`@streamparser/json\` (\`$.traceEvents.*\`, keepStack off) into the same event sink, first ${size(library.bytes ?? 0)} | ${f0(libraryMbs)} MB/s (${(libraryMbs / medParse).toFixed(2)}× \`JSON.parse\`) | | |
| peak RSS of the import process | ${size(rss)} (${(rss / fileBytes).toFixed(2)}× the file; the process alone: ${size(baseline.maxRss)}) | < ${TARGET_RSS_RATIO}× | ${pass(rss < TARGET_RSS_RATIO * fileBytes)} |
| ${RANKS} ranks × ${size(rankBytes / RANKS)}, one after another | ${f0(seqMs)} ms | | |
| ${RANKS} ranks × ${size(rankBytes / RANKS)}, worker threads (pool of ${Math.min(RANKS, cores)}) | ${f0(parMs)} ms (${(seqMs / parMs).toFixed(2)}× faster) | faster | ${pass(parMs < seqMs)} |
| the ${size(fileBytes)} file cut at ${size(cutBytes)} | ${f0(mbs(cutBytes, cut.ms))} MB/s, ${(cut.spans ?? 0).toLocaleString('en-US')} GPU spans, note: ${cut.notes?.length ? '“' + (cut.notes[0] ?? '').replace(/^\S+: /, '') + '”' : 'none'} | imports with a note | ${pass((cut.notes?.length ?? 0) > 0 && (cut.spans ?? 0) > 0)} |
`);
}

main();
