/**
 * Analysis speed on a million-span trace.
 *
 * Builds a synthetic GPipe trace (8 stages on 8 lanes, 16 micro-batches, recv/compute/send
 * per micro-batch with 8 operator spans under each compute, idle bubbles derived, ±5% jitter
 * on compute) with at least 1,000,000 spans, then times `analyse` (every analysis: breakdown,
 * overlap, pipeline bubbles, critical path, top operators) and `findings` (analyse plus every
 * rule), median of 5 runs after one warm-up. Target: `analyse` under 2 s.
 *
 *   node --import tsx bench/analysis.bench.ts
 */
import * as os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { analyse } from '../src/profiler/analysis/index';
import { syntheticPipelineTrace, type SyntheticPipelineOptions } from '../src/profiler/analysis/synthetic';
import { findings } from '../src/profiler/findings';
import { summarize } from '../src/profiler/summary';
import { median } from '../src/profiler/stats';

const TARGET_SPANS = 1_000_000;
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 5);
const TARGET_MS = 2000;

function main(): void {
  const base: Omit<SyntheticPipelineOptions, 'steps'> = {
    stageUs: [900, 1000, 1100, 1000, 950, 1050, 1000, 1200],
    microBatches: 16,
    commUs: 40,
    opsPerCompute: 8,
    jitter: 0.1,
    batch: 256,
    seed: 7,
  };
  const perStep = syntheticPipelineTrace({ ...base, steps: 1 }).spans.count;
  // Jitter moves a few idle gaps in or out; 1% more steps keeps the count above the target.
  const steps = Math.ceil((1.01 * TARGET_SPANS) / perStep);
  let t = performance.now();
  const trace = syntheticPipelineTrace({ ...base, steps });
  const buildMs = performance.now() - t;
  const spans = trace.spans.count;

  const time = (fn: () => unknown): number[] => {
    fn();
    const out: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      t = performance.now();
      fn();
      out.push(performance.now() - t);
    }
    return out;
  };
  let check = analyse(trace);
  const analyseMs = time(() => (check = analyse(trace)));
  const summary = summarize(trace);
  let found = findings(trace, summary, { analysis: check });
  const findingsMs = time(() => (found = findings(trace, summary)));

  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const med = median(analyseMs);
  const medF = median(findingsMs);
  const results = {
    bench: 'analysis',
    machine: { cpu, cores: os.availableParallelism(), os: `${os.platform()} ${os.release()}`, node: process.versions.node },
    config: { ...base, steps, spans, lanes: trace.lanes.length, repeats: REPEATS },
    buildMs,
    analyseMs,
    findingsMs,
    medians: { analyseMs: med, findingsMs: medF },
    targets: { analyseMs: TARGET_MS },
    pass: med < TARGET_MS,
    sanity: {
      bubbleFraction: check.pipeline?.bubbleFraction ?? null,
      idealBubbleFraction: check.pipeline?.idealBubbleFraction ?? null,
      imbalance: check.pipeline?.imbalance ?? null,
      criticalPathUs: check.criticalPath.representative?.lengthUs ?? null,
      medianStepUs: check.stepTimeUs.median,
      findings: found.map((f) => f.id),
    },
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/analysis.json', `${JSON.stringify(results, null, 2)}\n`);
  const ms = (x: number): string => `${x.toFixed(0)} ms`;
  process.stdout.write(`## Analyses of a ${spans.toLocaleString('en-US')}-span trace

Machine: ${cpu}, ${os.availableParallelism()} logical cores, Node ${process.versions.node}. Command: \`node --import tsx bench/analysis.bench.ts\`.
Trace: synthetic GPipe, ${trace.lanes.length} lanes, ${base.microBatches} micro-batches, ${steps} steps, ${base.opsPerCompute} operator spans per compute span (built in ${ms(buildMs)}).

| figure | median (${REPEATS} runs) | target | result | machine |
|---|---|---|---|---|
| \`analyse\` (breakdown, overlap, bubbles, critical path, top ops) | ${ms(med)} | < ${ms(TARGET_MS)} | ${med < TARGET_MS ? 'PASS' : 'MISS'} | ${cpu} |
| \`findings\` (analyse + every rule) | ${ms(medF)} | | | ${cpu} |
`);
}

main();
