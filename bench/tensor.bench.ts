/**
 * Tensor parallelism against data parallelism and one device, on the generated demo model
 * (24 blocks of LayerNorm + MLP, batch 64): `--mode tensor --devices cpu:2` (each device
 * computes half of every MLP on all 64 rows, then the blocks' partial sums are all-reduced,
 * 24 all-reduces of 64 × 512 floats per step) and `--mode data --devices cpu:2` (32 rows each,
 * no communication but the gather), each with its one-device baseline interleaved in the same
 * command. The two modes alternate run by run (tensor, data, tensor, …).
 */
import * as os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { profile } from '../src/runtime/api';
import { demoPlan } from './demo-plan';
import { median } from '../src/profiler/stats';

const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);

interface Run {
  stepUs: number;
  baselineUs: number;
  commShare: number;
  quality: string;
  /** Largest |tensor-parallel − one-device| over the output, and whether the run's check passed. */
  maxAbsErr: number | null;
  ok: boolean | null;
}

async function run(mode: 'tensor' | 'data'): Promise<Run> {
  const req = await demoPlan({ mode, steps: 10, warmup: 2, baseline: true, capture: true, opLevel: false, outPath: null });
  const s = (await profile(req)).summary;
  return {
    stepUs: s.stepTimeUs.median,
    baselineUs: s.baseline?.stepTimeUs ?? NaN,
    commShare: s.totals.commShare,
    quality: s.measurementQuality.verdict,
    maxAbsErr: s.numericalCheck?.maxAbsErr ?? null,
    ok: s.numericalCheck?.ok ?? null,
  };
}

async function main(): Promise<void> {
  const tensor: Run[] = [];
  const data: Run[] = [];
  for (let i = 0; i < REPEATS; i++) {
    tensor.push(await run('tensor'));
    data.push(await run('data'));
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/tensor.json', JSON.stringify({ machine: { cpu, cores: os.availableParallelism() }, tensor, data }, null, 2));
  const ms = (us: number): string => `${(us / 1000).toFixed(2)} ms`;
  const med = (xs: Run[], f: (r: Run) => number): number => median(xs.map(f));
  const speed = (xs: Run[]): string => xs.map((r) => (r.baselineUs / r.stepUs).toFixed(2)).join(', ');
  process.stdout.write(`## Tensor against data parallelism (demo model, 50 M parameters, batch 64, cpu:2, 10 steps)

Machine: ${cpu}, ${os.availableParallelism()} logical cores, shared with other work while measured
(measurement quality of the runs: tensor ${tensor.map((r) => r.quality).join(', ')}; data ${data.map((r) => r.quality).join(', ')}).
Command: \`npm run bench -- tensor\` (${REPEATS} runs of each mode, alternating; each run interleaves
its steps with a one-device baseline of the whole batch).

| figure | median | per run |
|---|---|---|
| step, tensor cpu:2 (24 all-reduces of 128 KiB per step) | ${ms(med(tensor, (r) => r.stepUs))} | ${tensor.map((r) => ms(r.stepUs)).join(', ')} |
| step, data cpu:2 | ${ms(med(data, (r) => r.stepUs))} | ${data.map((r) => ms(r.stepUs)).join(', ')} |
| step, one device (baselines of both) | ${ms(median([...tensor, ...data].map((r) => r.baselineUs)))} | ${[...tensor, ...data].map((r) => ms(r.baselineUs)).join(', ')} |
| speedup vs one device, tensor | ${med(tensor, (r) => r.baselineUs / r.stepUs).toFixed(2)}× | ${speed(tensor)} |
| speedup vs one device, data | ${med(data, (r) => r.baselineUs / r.stepUs).toFixed(2)}× | ${speed(data)} |
| communication share of device time, tensor | ${(med(tensor, (r) => r.commShare) * 100).toFixed(1)}% | |
| communication share of device time, data | ${(med(data, (r) => r.commShare) * 100).toFixed(1)}% | |
| largest absolute difference from one device's output, tensor (check ${tensor.every((r) => r.ok === true) ? 'ok' : 'FAILED'} in every run) | ${Math.max(...tensor.map((r) => r.maxAbsErr ?? NaN)).toExponential(1)} | |
`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
