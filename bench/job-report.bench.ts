/**
 * `parallax report` of an imported multi-rank job, as a user runs it: eight Kineto ranks of
 * PARALLAX_BENCH_RANK_MB (default 250) MB generated from the real DDP fixture's event mix
 * (`kineto-gen.ts`), imported once with `parallax import` (a side file with its tile index),
 * then `parallax report job.parallax.json` run BENCH_REPEATS (default 3) times, each its own
 * process (wall time from spawn to exit, Node's start included), target < 10 s. Where the
 * time goes comes from the same steps run in this process (read, idle, summary, analyses,
 * findings; medians). The generated files live in a temporary folder deleted at the end.
 * Needs `npm run build` (the CLI).
 *
 *   node --import tsx bench/job-report.bench.ts
 *   PARALLAX_BENCH_RANK_MB=25 node --import tsx bench/job-report.bench.ts
 */
import * as os from 'node:os';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median } from '../src/profiler/stats';
import { readTrace } from '../src/profiler/trace-io';
import { deriveIdle } from '../src/profiler/idle';
import { summarize } from '../src/profiler/summary';
import { analyse } from '../src/profiler/analysis';
import { findings } from '../src/profiler/findings';
import { writeKinetoTrace } from './kineto-gen';

const MB = 1e6;
const RANK_MB = Number(process.env['PARALLAX_BENCH_RANK_MB'] ?? 250);
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);
const RANKS = 8;
const TARGET_S = 10;
const CLI = join(__dirname, '..', 'bin', 'parallax.js');

/** Runs the CLI and returns its wall time in ms; throws with its output when it fails. */
function cli(args: string[], cwd: string): number {
  const t = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`parallax ${args[0]} failed (exit ${r.status}): ${r.stderr}`);
  return ms;
}

/** The steps of `report` in this process, timed one by one. */
async function steps(path: string): Promise<Record<string, number>> {
  const t0 = performance.now();
  const read = await readTrace(path);
  const t1 = performance.now();
  const trace = deriveIdle(read);
  const t2 = performance.now();
  const summary = summarize(trace);
  const t3 = performance.now();
  const analysis = analyse(trace);
  const t4 = performance.now();
  findings(trace, summary, { analysis });
  const t5 = performance.now();
  return { read: t1 - t0, idle: t2 - t1, summary: t3 - t2, analyses: t4 - t3, findings: t5 - t4, spans: trace.spans.count };
}

async function main(): Promise<void> {
  if (!existsSync(join(__dirname, '..', 'dist', 'cli.js')) || !existsSync(join(__dirname, '..', 'dist', 'import-worker.js'))) {
    throw new Error('dist/ missing: run npm run build first');
  }
  const dir = mkdtempSync(join(os.tmpdir(), 'parallax-bench-job-report-'));
  try {
    await run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function run(dir: string): Promise<void> {
  const loadStart = os.loadavg()[0] ?? 0;
  const ranks = Array.from({ length: RANKS }, (_, r) => {
    const p = join(dir, `rank-${r}.json`);
    writeKinetoTrace(p, RANK_MB * MB, r, RANKS);
    return p;
  });
  const rankBytes = ranks.reduce((a, p) => a + statSync(p).size, 0);
  const importMs = cli(['import', ...ranks, '--out', 'job.parallax.json'], dir);
  const job = join(dir, 'job.parallax.json');
  // Jobs under a million spans stay one JSON file.
  const side = join(dir, 'job.parallax.spans');
  const sideBytes = existsSync(side) ? statSync(side).size : 0;
  const reportMs: number[] = [];
  const inProcess: Record<string, number>[] = [];
  for (let i = 0; i < REPEATS; i++) {
    reportMs.push(cli(['report', 'job.parallax.json'], dir));
    inProcess.push(await steps(job));
    (globalThis as { gc?: () => void }).gc?.();
  }
  const part = (k: string): number => median(inProcess.map((r) => r[k]!));
  const med = median(reportMs);
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const cores = os.availableParallelism();
  const load = `${loadStart.toFixed(1)} at the start, ${(os.loadavg()[0] ?? 0).toFixed(1)} at the end`;
  const spans = inProcess[0]?.['spans'] ?? 0;
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(
    join(__dirname, 'results', 'job-report.json'),
    `${JSON.stringify({ bench: 'job-report', machine: { cpu, cores, os: `${os.platform()} ${os.release()}`, node: process.versions.node }, loadAverage: load, rankMb: RANK_MB, ranks: RANKS, rankBytes, sideBytes, spans, importMs, reportMs, inProcess }, null, 2)}\n`,
  );
  const f0 = (x: number): string => x.toFixed(0);
  const s2 = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  process.stdout.write(`## Report of an imported 8-rank job

Machine: ${cpu}, ${cores} logical cores, Node ${process.versions.node}, shared: measured while other work ran (load average ${load}, the bench's own processes included). Command: \`PARALLAX_BENCH_RANK_MB=${RANK_MB} node --import tsx bench/job-report.bench.ts\`.
Job: ${RANKS} Kineto ranks of ${f0(rankBytes / RANKS / MB)} MB generated from the real DDP fixture's event mix (\`bench/kineto-gen.ts\`), imported once with \`parallax import rank-*.json --out job.parallax.json\` (${s2(importMs)}; ${spans.toLocaleString('en-US')} spans, ${sideBytes > 0 ? `side file ${f0(sideBytes / MB)} MB` : 'no side file'}). \`parallax report job.parallax.json\` run ${REPEATS} times, each its own process, wall time from spawn to exit (medians).

| figure | median | target | result |
|---|---:|---|---|
| \`parallax report job.parallax.json\` | ${s2(med)} | < ${TARGET_S} s | ${med < TARGET_S * 1000 ? 'PASS' : 'MISS'} |
| in one process: read (columns checked) | ${f0(part('read'))} ms | | |
| idle derivation | ${f0(part('idle'))} ms | | |
| summary | ${f0(part('summary'))} ms | | |
| analyses (breakdown, stragglers, critical path, top ops, …) | ${f0(part('analyses'))} ms | | |
| findings | ${f0(part('findings'))} ms | | |
`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
