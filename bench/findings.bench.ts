/**
 * Findings that say what to change, checked by making the change: on real pipeline runs of
 * the demo model (cpu:2),
 *  - an unbalanced `--cuts` (6 layers | 18 layers) must yield a pipeline-imbalance finding;
 *    its suggested cuts are run, and the measured step is compared with the prediction;
 *  - M = 2 must yield a pipeline-bubble finding; its suggested M is run likewise.
 * Target: the suggested change lowers the measured step, and the prediction is within 15 %.
 */
import * as os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { profile } from '../src/runtime/api';
import { demoPlan, withOverrides, type DemoOverrides } from './demo-plan';
import type { ProfileRequest } from '../src/runtime/protocol';
import { median } from '../src/profiler/stats';
import type { Finding } from '../src/profiler/findings';

const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 3);

interface Trial {
  rule: string;
  before: number[];
  predicted: number[];
  after: number[];
  change: string;
  /** Per repetition without the finding: what the run found instead. */
  missed: string[];
}

async function trial(base: ProfileRequest, rule: string, apply: (f: Finding) => DemoOverrides): Promise<Trial> {
  const t: Trial = { rule, before: [], predicted: [], after: [], change: '', missed: [] };
  for (let r = 0; r < REPEATS; r++) {
    const a = await profile(base);
    const f = a.findings.find((x) => x.id === rule && !x.heldBack);
    if (!f || f.predictedStepUs === null) {
      // A repetition without the finding is reported, not fatal: silence is a miss of its own.
      t.missed.push(`${(a.summary.stepTimeUs.median / 1000).toFixed(1)} ms, ${a.summary.measurementQuality.verdict} quality, findings: ${a.findings.map((x) => x.id + (x.heldBack ? ' (held back)' : '')).join(', ') || 'none'}`);
      process.stderr.write(`findings bench: no ${rule} finding in repetition ${r + 1} (${t.missed[t.missed.length - 1]})\n`);
      continue;
    }
    t.change = f.change.description;
    const b = await profile(withOverrides(base, apply(f)));
    t.before.push(a.summary.stepTimeUs.median);
    t.predicted.push(f.predictedStepUs);
    t.after.push(b.summary.stepTimeUs.median);
  }
  return t;
}

async function main(): Promise<void> {
  const base = await demoPlan({ mode: 'pipeline', steps: 8, microBatches: 4 });
  const imbalance = await trial(withOverrides(base, { cuts: ['/layers.5/Add'] }), 'pipeline-imbalance', (f) => ({ cuts: f.change.params['cuts'] as string[] }));
  // At batch 64 a micro-batch of this model is dominated by streaming its stage's weights, so
  // more micro-batches do not pay and the bubble rule rightly stays silent; at batch 256 the
  // per-row work dominates and the bubble is worth shrinking.
  const bubble = await trial(withOverrides(base, { batch: 256, microBatches: 2 }), 'pipeline-bubble', (f) => ({ microBatches: f.change.params['microBatches'] as number }));
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/findings.json', JSON.stringify({ machine: { cpu, cores: os.availableParallelism() }, imbalance, bubble }, null, 2));
  const mark = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  const row = (t: Trial): string => {
    const fired = `${t.before.length} of ${REPEATS}`;
    if (t.before.length === 0) return `| ${t.rule} | no finding in any repetition (${t.missed.join('; ')}) | – | – | – | MISS | – (fired ${fired}) |`;
    const before = median(t.before);
    const after = median(t.after);
    const pred = median(t.predicted);
    const err = pred / after - 1;
    const f = (us: number): string => `${(us / 1000).toFixed(1)} ms`;
    return `| ${t.rule} | ${t.change} | ${f(before)} | ${f(pred)} | ${f(after)} | ${mark(after < before)} | ${(err * 100).toFixed(0)}% ${mark(Math.abs(err) <= 0.15)} (fired ${fired}) |`;
  };
  process.stdout.write(`## Findings checked by running their suggestion (demo model, pipeline cpu:2; batch 64 for the imbalance, 256 for the bubble)

Machine: ${cpu}, ${os.availableParallelism()} logical cores. Command: \`npm run bench -- findings\`. Medians of the before/after pairs of the repetitions in which the finding fired (of ${REPEATS}).

| rule | suggested change | step before | predicted | step after | improves | prediction error (≤ 15%) |
|---|---|---|---|---|---|---|
${row(imbalance)}
${row(bubble)}
`);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
