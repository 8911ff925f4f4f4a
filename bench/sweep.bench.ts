/**
 * The plan sweep's prediction error: every plan that fits cpu:2 measured (interleaved,
 * repeated) on the demo MLP and a real CNN (PP-OCR cls), each predicted from the other plans'
 * runs only (leave-one-out), and the error of predicted against measured median step.
 *
 * Target (issue): over ≥ 12 measured plans on ≥ 2 models, mean absolute percentage error
 * ≤ 8 % and the largest ≤ 20 %.
 *
 *   npm run bench -- sweep
 *   PARALLAX_SWEEP_QUICK=1 npm run bench -- sweep     one repetition, fewer steps
 *   PARALLAX_SWEEP_RUNS=DIR npm run bench -- sweep    also keep every measured run in DIR,
 *                                                     for bench/sweep-replay.ts to predict again
 */
import * as os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSweep, type SweepInputFlags } from '../src/runtime/sweep';
import { defaultCacheDir, ensureDemoModel } from '../src/runtime/onnx/demo-model';
import type { SweepPlanRow, SweepResult } from '../src/profiler/sweep/schema';
import { ocrClsModelPath, MISSING_MODELS_HINT } from '../test/helpers/models';
import { saveRuns } from './sweep-runs';

const QUICK = process.env['PARALLAX_SWEEP_QUICK'] === '1';
const REPEATS = QUICK ? 1 : 3;
const STEPS = QUICK ? 4 : 10;
const WARMUP = 2;

interface BenchModel {
  name: string;
  label: string;
  resolve: () => Promise<string | null>;
  flags: SweepInputFlags;
  batches: number[];
  microBatches: number[];
}

const MODELS: BenchModel[] = [
  // Two batches per model: two one-device plans, so each one-device plan is predicted from a
  // one-device line rather than from the operator calibration alone.
  { name: 'demo', label: 'demo MLP (24 × 512/2048)', resolve: () => ensureDemoModel(defaultCacheDir()), flags: {}, batches: [32, 64], microBatches: [2, 4, 8] },
  { name: 'cls', label: 'PP-OCR mobile v2 cls (CNN)', resolve: async () => ocrClsModelPath(), flags: { inputShapes: { x: [1, 3, 48, 192] } }, batches: [8, 16], microBatches: [1, 2, 4] },
];

const t0 = Date.now();
function log(msg: string): void {
  process.stderr.write(`[sweep ${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${msg}\n`);
}

const ms = (us: number | null): string => (us === null ? '–' : `${(us / 1000).toFixed(2)} ms`);
const signed = (v: number | null): string => (v === null ? '–' : `${v > 0 ? '+' : ''}${v.toFixed(1)} %`);

async function main(): Promise<void> {
  const results: { model: BenchModel; result: SweepResult | null; skipped?: string }[] = [];
  for (const m of MODELS) {
    const path = await m.resolve();
    if (path === null) {
      log(`${m.name}: skipped (${MISSING_MODELS_HINT})`);
      results.push({ model: m, result: null, skipped: MISSING_MODELS_HINT });
      continue;
    }
    log(`${m.name}: sweeping`);
    const { result, runs } = await runSweep({
      modelPath: path,
      modelLabel: m.name,
      devices: 'cpu:2',
      // Tensor plans where the model splits (two batches: each tensor plan's all-reduces are
      // fitted on the other's); hybrids need 4 devices and are listed as such on cpu:2.
      modes: ['data', 'pipeline', 'tensor', 'hybrid'],
      batches: m.batches,
      microBatches: m.microBatches,
      repeats: REPEATS,
      steps: STEPS,
      warmup: WARMUP,
      flags: m.flags,
      onProgress: (msg, done, total) => log(`${m.name} [${done}/${total}] ${msg}`),
    });
    results.push({ model: m, result });
    const keep = process.env['PARALLAX_SWEEP_RUNS'];
    if (keep) await saveRuns(join(keep, m.name), { modelPath: path, flags: m.flags, runs });
  }
  const measured: (SweepPlanRow & { model: string })[] = results.flatMap((r) => (r.result?.plans ?? []).filter((p) => p.kind === 'measured').map((p) => ({ ...p, model: r.model.name })));
  const errs = measured.filter((p) => p.errorPct !== null).map((p) => Math.abs(p.errorPct!));
  const mape = errs.length ? errs.reduce((a, b) => a + b, 0) / errs.length : null;
  const maxErr = errs.length ? Math.max(...errs) : null;
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/sweep.json', JSON.stringify({ machine: { cpu, cores: os.availableParallelism(), loadavg: os.loadavg() }, settings: { quick: QUICK, repeats: REPEATS, steps: STEPS, warmup: WARMUP }, results, mapePct: mape, maxAbsErrorPct: maxErr }, null, 2));

  const L: string[] = [];
  L.push(`## Plan sweep: predicted against measured step time, leave-one-out${QUICK ? ' (quick)' : ''}`);
  L.push('');
  L.push(`Machine: ${cpu}, ${os.availableParallelism()} logical cores, load average ${os.loadavg().map((v) => v.toFixed(1)).join(' / ')} at the end. Command: \`${QUICK ? 'PARALLAX_SWEEP_QUICK=1 ' : ''}npm run bench -- sweep\` (the same as \`parallax sweep MODEL --devices cpu:2 --repeats ${REPEATS} --steps ${STEPS}\` per model).`);
  L.push(`Every plan that fits cpu:2 runs ${REPEATS} time(s), round robin over the plans, ${STEPS} steps after ${WARMUP} warm-up; measured = median of all its steps. Each plan is predicted from the other plans' runs only (its own never enter its fit); error = predicted / measured − 1.`);
  L.push('');
  L.push('| model | plan | measured step [p25–p75] | predicted | error | quality | prediction basis |');
  L.push('|---|---|---|---|---|---|---|');
  for (const p of measured) {
    L.push(`| ${p.model} | ${p.label} | ${ms(p.measuredUs)} [${ms(p.measuredInterval?.lo ?? null)}–${ms(p.measuredInterval?.hi ?? null)}] | ${ms(p.predictedUs)} | ${signed(p.errorPct)} | ${p.quality ?? '–'} | ${p.predictionBasis.replace(/\|/g, '\\|')} |`);
  }
  L.push('');
  const mark = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  L.push(`Over ${errs.length} measured plans on ${results.filter((r) => r.result).length} models: MAPE ${mape === null ? '–' : `${mape.toFixed(1)} % ${mark(mape <= 8)}`} (target ≤ 8 %), max |error| ${maxErr === null ? '–' : `${maxErr.toFixed(1)} % ${mark(maxErr <= 20)}`} (target ≤ 20 %).`);
  for (const r of results) {
    if (!r.result) {
      L.push(`${r.model.name}: skipped (${r.skipped}).`);
      continue;
    }
    const q = r.result.measurementQuality;
    const inter = Object.entries(r.result.interference).map(([n, f]) => `${n} devices ×${f.toFixed(2)}`).join(', ') || '–';
    L.push(`${r.model.label}: MAPE ${r.result.mapePct?.toFixed(1) ?? '–'} %, max ${r.result.maxAbsErrorPct?.toFixed(1) ?? '–'} %; measurement quality ${q.verdict} (${q.good} good, ${q.fair} fair, ${q.poor} poor of ${q.runs} runs); interference ${inter}; predicted only: ${r.result.plans.filter((p) => p.kind === 'predicted').map((p) => `${p.label} ${ms(p.predictedUs)}`).join(', ')}.`);
  }
  process.stdout.write(`${L.join('\n')}\n`);
  log('done');
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
