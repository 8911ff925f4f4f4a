/**
 * Memory of long runs: the runner's resident set over a long data-parallel run of a small
 * model (so that steps are many and cheap), with ONNX Runtime's operator profile on and off.
 *
 * Spans are recorded into columnar buffers in each device worker, so memory is expected to
 * grow with the spans a run records and with nothing else: the figure to compare is the slope
 * of RSS over steps (least squares, past the first quarter of the run) against the bytes the
 * run's spans take in those buffers per step. Operator detail comes from a bounded set of
 * profiled steps, so operator-level capture should not change the slope.
 *
 *   npm run bench -- memory
 *   BENCH_MEMORY_STEPS=20000 npm run bench -- memory
 */
import * as os from 'node:os';
import { join } from 'node:path';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { ensureDemoModel } from '../src/runtime/onnx/demo-model';
import { makePlan } from '../src/profiler/plan';
import { readTrace } from '../src/profiler/trace-io';
import type { ProfileRequest } from '../src/runtime/protocol';
import { median } from '../src/profiler/stats';
import { rssSlope, sampleRunnerRss, SPAN_BYTES } from '../test/helpers/runner-rss';

const STEPS = Number(process.env['BENCH_MEMORY_STEPS'] ?? 10_000);
/** Runs per setting, interleaved (on, off, on, off, …). */
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);
const MODEL = { layers: 2, hidden: 32, ffn: 64 } as const;

interface Row {
  opLevel: boolean;
  steps: number;
  seconds: number;
  rssStartMiB: number;
  rssEndMiB: number;
  rssPeakMiB: number;
  slopeBytesPerStep: number;
  spansPerStep: number;
  spanBufferBytesPerStep: number;
  samples: number;
}

const MiB = 1024 * 1024;

async function measure(tmp: string, modelPath: string, opLevel: boolean): Promise<Row> {
  const outPath = join(tmp, `memory-${opLevel ? 'ops' : 'noops'}.parallax.json`);
  const req: ProfileRequest = {
    modelPath,
    modelLabel: 'demo (small)',
    plan: makePlan({ mode: 'data', devices: 'cpu:2', batch: 8, steps: STEPS, warmup: 2, seed: 0 }),
    capture: true,
    opLevel,
    baseline: false,
    outPath,
  };
  const t0 = Date.now();
  const { samples } = await sampleRunnerRss(req);
  const seconds = (Date.now() - t0) / 1000;
  const trace = await readTrace(outPath);
  const spansPerStep = trace.spans.count / STEPS;
  const slope = rssSlope(samples, STEPS / 4);
  const rss = samples.map((s) => s.rssBytes);
  return {
    opLevel,
    steps: STEPS,
    seconds,
    rssStartMiB: (rss[0] ?? Number.NaN) / MiB,
    rssEndMiB: (rss[rss.length - 1] ?? Number.NaN) / MiB,
    rssPeakMiB: Math.max(...rss) / MiB,
    slopeBytesPerStep: slope.bytesPerStep,
    spansPerStep,
    spanBufferBytesPerStep: spansPerStep * SPAN_BYTES,
    samples: samples.length,
  };
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'parallax-bench-memory-'));
  try {
    const modelPath = await ensureDemoModel(join(tmp, 'models'), MODEL);
    // Interleaved, so that both see the same machine.
    const rows: Row[] = [];
    for (let i = 0; i < REPEATS; i++) for (const opLevel of [true, false]) rows.push(await measure(tmp, modelPath, opLevel));
    const summary = [true, false].map((opLevel) => {
      const mine = rows.filter((r) => r.opLevel === opLevel);
      const slope = median(mine.map((r) => r.slopeBytesPerStep));
      const spans = median(mine.map((r) => r.spansPerStep));
      return { opLevel, slopeBytesPerStep: slope, bytesPerSpan: slope / spans, growthMiB: median(mine.map((r) => r.rssEndMiB - r.rssStartMiB)) };
    });
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/memory.json', JSON.stringify({ machine: { cpu, cores: os.availableParallelism() }, spanBytes: SPAN_BYTES, summary, rows }, null, 2));
    const n = (v: number, d = 1): string => v.toFixed(d);
    process.stdout.write(`## Memory of long runs (small demo model, cpu:2, batch 8, ${STEPS.toLocaleString('en-US')} steps)

Machine: ${cpu}, ${os.availableParallelism()} logical cores. Command: \`npm run bench -- memory\`.
The runner's RSS, sampled every 100 ms while it measures steps; slope by least squares past
the first quarter of the run. A span takes ${SPAN_BYTES} bytes in a device worker's span
buffer (buffers double when full, so up to twice that is reserved). Target: the slope stays
within a few times the span-buffer bytes per step, with operator-level capture on or off.

| operator profile | run | RSS at start → end (peak) | RSS slope | spans per step | span buffers per step |
|---|---|---|---|---|---|
${rows.map((r) => `| ${r.opLevel ? 'on' : 'off'} | ${n(r.seconds)} s | ${n(r.rssStartMiB)} → ${n(r.rssEndMiB)} MiB (${n(r.rssPeakMiB)}) | ${n(r.slopeBytesPerStep, 0)} B/step | ${n(r.spansPerStep, 2)} | ${n(r.spanBufferBytesPerStep, 0)} B |`).join('\n')}

Medians of ${REPEATS} runs each: ${summary.map((x) => `operator profile ${x.opLevel ? 'on' : 'off'}: ${n(x.slopeBytesPerStep, 0)} B/step, ${n(x.bytesPerSpan, 0)} B per recorded span, ${n(x.growthMiB)} MiB over the run`).join('; ')}.
`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
