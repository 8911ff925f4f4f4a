/**
 * The data × tensor hybrid against data and tensor parallelism on four devices, on the
 * generated demo model (24 blocks of LayerNorm + MLP, batch 16): `--mode hybrid --data 2
 * --tensor 2` (two replicas of 8 rows, each all-reducing its blocks' partial sums inside its
 * own pair of devices), `--mode data` (4 rows per device, no communication but the gather)
 * and `--mode tensor` (every device all 16 rows on a quarter of every MLP, 24 all-reduces over
 * all four), each with its one-device baseline interleaved in the same command. The modes
 * alternate run by run.
 */
import * as os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { profile } from '../src/runtime/api';
import { demoPlan } from './demo-plan';
import { median } from '../src/profiler/stats';
import type { PlanFields } from '../src/profiler/plan';

const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);
const BATCH = 16;

interface Run {
  stepUs: number;
  baselineUs: number;
  commShare: number;
  quality: string;
  ok: boolean | null;
}

const MODES: Record<'hybrid' | 'data' | 'tensor', Partial<PlanFields>> = {
  hybrid: { mode: 'hybrid', data: 2, tensor: 2 },
  data: { mode: 'data' },
  tensor: { mode: 'tensor' },
};

async function run(mode: keyof typeof MODES): Promise<Run> {
  const req = await demoPlan({ ...MODES[mode], devices: 'cpu:4', batch: BATCH, steps: 6, warmup: 1, baseline: true, capture: true, opLevel: false, outPath: null });
  const s = (await profile(req)).summary;
  return { stepUs: s.stepTimeUs.median, baselineUs: s.baseline?.stepTimeUs ?? NaN, commShare: s.totals.commShare, quality: s.measurementQuality.verdict, ok: s.numericalCheck?.ok ?? null };
}

async function main(): Promise<void> {
  const runs: Record<keyof typeof MODES, Run[]> = { hybrid: [], data: [], tensor: [] };
  for (let i = 0; i < REPEATS; i++) for (const m of ['hybrid', 'data', 'tensor'] as const) runs[m].push(await run(m));
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/hybrid.json', JSON.stringify({ machine: { cpu, cores: os.availableParallelism() }, ...runs }, null, 2));
  const ms = (us: number): string => `${(us / 1000).toFixed(2)} ms`;
  const row = (label: string, xs: Run[]): string =>
    `| ${label} | ${ms(median(xs.map((r) => r.stepUs)))} | ${median(xs.map((r) => r.baselineUs / r.stepUs)).toFixed(2)}× | ${(median(xs.map((r) => r.commShare)) * 100).toFixed(1)}% | ${xs.map((r) => ms(r.stepUs)).join(', ')} | ${xs.every((r) => r.ok === true) ? 'ok' : 'FAILED'} |`;
  const all = [...runs.hybrid, ...runs.data, ...runs.tensor];
  process.stdout.write(`## Data × tensor hybrid against data and tensor parallelism (demo model, batch ${BATCH}, cpu:4, 6 steps)

Machine: ${cpu}, ${os.availableParallelism()} logical cores, shared with other work while measured, so
the four devices share ${os.availableParallelism()} cores (measurement quality of the runs: ${all.map((r) => r.quality).join(', ')}).
Command: \`npm run bench -- hybrid\` (${REPEATS} runs of each mode, alternating; each run interleaves
its steps with a one-device baseline of the whole batch). On a machine with fewer cores than
devices these figures show the cost of the communication pattern, not a speedup to expect.

| plan | step (median) | speedup vs one device | communication share | step per run | numerics |
|---|---|---|---|---|---|
${row('hybrid data 2 × tensor 2 (24 all-reduces per replica pair)', runs.hybrid)}
${row('data cpu:4', runs.data)}
${row('tensor cpu:4 (24 all-reduces over four)', runs.tensor)}
| one device (baselines of all) | ${ms(median(all.map((r) => r.baselineUs)))} | | | | |
`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
