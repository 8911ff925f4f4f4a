/**
 * Data-parallel speedup and capture overhead, on the generated demo model.
 *
 *  - speedup: `--devices cpu:2` against one device of the same configuration running the
 *    whole batch, both measured inside one profile command (the figure `profile` reports);
 *  - capture overhead: the same cpu:2 run with spans and ONNX Runtime's operator profile on,
 *    against capture off, interleaved (off, on, off, on, …) in this one process.
 */
import * as os from 'node:os';
import { join } from 'node:path';
import { mkdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { profile } from '../src/runtime/api';
import { demoPlan } from './demo-plan';
import { median } from '../src/profiler/stats';

const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 5);

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'parallax-bench-'));
  const base = await demoPlan({ steps: 20, warmup: 3, opLevel: true, baseline: true, outPath: join(tmp, 'run.parallax.json') });

  const speedups: number[] = [];
  for (let i = 0; i < Math.max(3, Math.ceil(REPEATS / 2)); i++) {
    const r = await profile(base);
    if (r.summary.speedupVsOneDevice !== null) speedups.push(r.summary.speedupVsOneDevice);
  }

  const off: number[] = [];
  const on: number[] = [];
  const onNoOps: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    off.push((await profile({ ...base, baseline: false, capture: false, opLevel: false, outPath: null })).summary.stepTimeUs.median);
    on.push((await profile({ ...base, baseline: false, capture: true, opLevel: true, outPath: null })).summary.stepTimeUs.median);
    onNoOps.push((await profile({ ...base, baseline: false, capture: true, opLevel: false, outPath: null })).summary.stepTimeUs.median);
  }
  const speedup = median(speedups);
  const overheadPairs = on.map((v, i) => v / off[i] - 1);
  const overhead = median(overheadPairs);
  const overheadSpans = median(onNoOps.map((v, i) => v / off[i] - 1));
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const results = { machine: { cpu, cores: os.availableParallelism() }, speedups, off, on, onNoOps, speedup, overhead, overheadSpans };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/profile.json', JSON.stringify(results, null, 2));
  const mark = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  const f = (us: number): string => `${(us / 1000).toFixed(2)} ms`;
  process.stdout.write(`## Data-parallel speedup and capture overhead (demo model, batch 64, 20 steps)

Machine: ${cpu}, ${os.availableParallelism()} logical cores. Command: \`npm run bench -- profile\`.

| figure | median | target | |
|---|---|---|---|
| speedup cpu:2 vs one device (same command, ${speedups.length} runs: ${speedups.map((s) => s.toFixed(2)).join(', ')}) | ${speedup.toFixed(2)}× | ≥ 1.7× | ${mark(speedup >= 1.7)} |
| step time, capture off | ${f(median(off))} | | |
| step time, spans + operator profile | ${f(median(on))} | | |
| step time, spans only | ${f(median(onNoOps))} | | |
| capture overhead, spans + operator profile (median of ${REPEATS} interleaved pairs) | ${(overhead * 100).toFixed(1)}% | ≤ 3% | ${mark(overhead <= 0.03)} |
| capture overhead, spans only | ${(overheadSpans * 100).toFixed(1)}% | | |
`);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
