/**
 * Self-consistency of the simulator on real runs of the demo model: a cost model fitted from
 * a run (per segment fixed + per-row cost, per transfer α + bytes/β — not the spans replayed)
 * must predict that run's step time, and costs fitted at M = 2 and 4 must predict M = 8.
 */
import * as os from 'node:os';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { profile } from '../src/runtime/api';
import { readTrace } from '../src/profiler/trace-io';
import { selfConsistency } from '../src/profiler/simulate';
import { median } from '../src/profiler/stats';
import type { Trace } from '../src/profiler/trace-format';
import { demoPlan, withOverrides, type DemoOverrides } from './demo-plan';

const REPEATS = 3;

interface Row {
  label: string;
  errors: number[];
  target: number;
}

async function run(tmp: string, name: string, over: DemoOverrides): Promise<Trace> {
  const outPath = join(tmp, `${name}.parallax.json`);
  const base = await demoPlan({ steps: 10, warmup: 2, outPath });
  await profile(withOverrides(base, over));
  return readTrace(outPath);
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'parallax-consistency-'));
  const rows: Row[] = [
    { label: 'data, cpu:2 (fit on the run itself)', errors: [], target: 0.05 },
    { label: 'pipeline, cpu:2, M = 2 (itself)', errors: [], target: 0.05 },
    { label: 'pipeline, cpu:2, M = 4 (itself)', errors: [], target: 0.05 },
    { label: 'pipeline, cpu:2, M = 8 (itself)', errors: [], target: 0.05 },
    { label: 'pipeline M = 8 predicted from fits at M = 2 and 4', errors: [], target: 0.1 },
  ];
  try {
    for (let r = 0; r < REPEATS; r++) {
      // Interleaved: each repetition runs every configuration once.
      const data = await run(tmp, `data-${r}`, {});
      const pipes = [];
      for (const m of [2, 4, 8]) pipes.push(await run(tmp, `pipe${m}-${r}`, { mode: 'pipeline', microBatches: m }));
      rows[0].errors.push(selfConsistency([data], data).error);
      pipes.forEach((t, i) => rows[1 + i].errors.push(selfConsistency([t], t).error));
      rows[4].errors.push(selfConsistency([pipes[0], pipes[1]], pipes[2]).error);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/consistency.json', JSON.stringify({ machine: { cpu, cores: os.availableParallelism() }, rows }, null, 2));
  const pct = (x: number): string => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;
  const table = rows
    .map((row) => {
      const m = median(row.errors);
      return `| ${row.label} | ${pct(m)} | ${row.errors.map(pct).join(', ')} | within ±${row.target * 100}% | ${Math.abs(m) <= row.target ? 'PASS' : 'MISS'} |`;
    })
    .join('\n');
  process.stdout.write(`## Simulator self-consistency (demo model, batch 64, 10 steps)

Machine: ${cpu}, ${os.availableParallelism()} logical cores. Command: \`npm run bench -- consistency\`. Each measured run's
program is simulated on a cost model fitted from measured spans (per segment: fixed + per-row µs; per transfer
class: α + bytes/β); the predicted median step time is compared with the measured one. ${REPEATS} interleaved repetitions.

| run | median error | each repetition | target | |
|---|---|---|---|---|
${table}
`);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
