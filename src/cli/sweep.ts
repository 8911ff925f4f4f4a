/**
 * `parallax sweep model.onnx --devices cpu:2 [--modes data,pipeline,tensor,hybrid] [--micro-batches 1,2,4,8]
 * [--batch 32,64] [--repeats 3] [--out sweep.json] [--json] [--html sweep.html]`: every plan
 * that fits this machine measured (interleaved, repeated), each predicted from the others,
 * 4 and 8 devices predicted, one table best first with the prediction error.
 */
import { resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UserError } from '../common/errors';
import { checkWritable } from '../common/out-path';
import { escapeTerminal } from '../common/terminal';
import { MAX_BATCH } from '../common/limits';
import { runSweep } from '../runtime/sweep';
import { SWEEP_MODES, type SweepMode } from '../profiler/sweep/enumerate';
import type { SweepResult } from '../profiler/sweep/schema';
import { renderSweepHtml } from '../profiler/sweep/html';
import { writeFileAtomic } from '../profiler/trace-io';
import { writeSweepTraces } from '../profiler/sweep/files';
import { formatBytes } from '../profiler/units';
import { table } from './format';

/** Parsers and helpers `main.ts` shares with this command. */
export interface SweepCliHelpers {
  deviceSpec: (v: string) => string;
  positiveInt: (name: string, max?: number) => (v: string) => number;
  nonNegativeInt: (name: string) => (v: string) => number;
  collectDim: (v: string, prev: Record<string, number>) => Record<string, number>;
  collectShape: (v: string, prev: Record<string, number[]>) => Record<string, number[]>;
  collectValue: (v: string, prev: Record<string, number>) => Record<string, number>;
  resolveModel: (model: string) => Promise<{ modelPath: string; label: string }>;
}

interface SweepFlags {
  devices: string;
  modes: SweepMode[];
  microBatches: number[];
  batch: number[];
  repeats: number;
  steps: number;
  warmup: number;
  out?: string;
  json?: boolean;
  html?: string;
  traces?: string;
  batchDim?: string;
  dim: Record<string, number>;
  inputShape: Record<string, number[]>;
  value: Record<string, number>;
}

/** `--modes data,pipeline`. */
export function parseModes(v: string): SweepMode[] {
  const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) throw new InvalidArgumentError(`--modes names no mode; give some of ${SWEEP_MODES.join(', ')}`);
  for (const m of list) {
    if (!(SWEEP_MODES as readonly string[]).includes(m)) throw new InvalidArgumentError(`--modes: unknown mode "${m}"; choose from ${SWEEP_MODES.join(', ')}`);
  }
  return [...new Set(list)] as SweepMode[];
}

/** A comma-separated list of positive integers (`--batch 32,64`, `--micro-batches 1,2,4`). */
export function intList(name: string, parse: (v: string) => number) {
  return (v: string): number[] => {
    const parts = v.split(',');
    if (parts.some((p) => p.trim() === '')) throw new InvalidArgumentError(`${name} expects positive integers separated by commas, e.g. 1,2,4, got "${v}"`);
    return [...new Set(parts.map((p) => parse(p.trim())))];
  };
}

export { traceFileStem } from '../profiler/sweep/files';

const ms = (us: number | null): string => (us === null ? '–' : `${(us / 1000).toFixed(2)} ms`);
const pct = (v: number | null): string => (v === null ? '–' : `${(v * 100).toFixed(0)} %`);

/** The sweep as terminal text: the table, the error line, quality and notes. */
export function formatSweep(r: SweepResult): string {
  const rows = r.plans.map((p) => [
    p.label,
    p.measuredUs === null ? 'predicted' : `${ms(p.measuredUs)} [${ms(p.measuredInterval?.lo ?? null)}–${ms(p.measuredInterval?.hi ?? null)}]`,
    ms(p.predictedUs),
    p.errorPct === null ? '–' : `${p.errorPct > 0 ? '+' : ''}${p.errorPct.toFixed(1)} %`,
    pct(p.efficiency),
    pct(p.bubble),
    pct(p.commShare),
    p.memoryPerDeviceBytes === null ? '–' : formatBytes(p.memoryPerDeviceBytes),
    p.fits === null ? '–' : p.fits ? 'yes' : 'NO',
  ]);
  const out = [
    `${r.model} · sweep over ${r.devices} · ${r.settings.repeats} interleaved repetitions of ${r.settings.steps} steps · best first (time per row)`,
    table(['plan', 'measured step (median [p25–p75])', 'predicted', 'error', 'efficiency', 'bubble', 'comm', 'memory/device', 'fits'], rows, 1),
    '',
    r.mapePct === null
      ? 'prediction error: no measured plan has a prediction'
      : `prediction error over ${r.plans.filter((p) => p.kind === 'measured' && p.errorPct !== null).length} measured plans (each predicted from the others' runs): MAPE ${r.mapePct.toFixed(1)} %, max |error| ${r.maxAbsErrorPct!.toFixed(1)} %`,
    `measurement quality: ${r.measurementQuality.verdict} (${r.measurementQuality.good} good, ${r.measurementQuality.fair} fair, ${r.measurementQuality.poor} poor of ${r.measurementQuality.runs} runs)`,
  ];
  const inter = Object.entries(r.interference);
  if (inter.length > 0) out.push(`interference (compute slowdown with N devices at once): ${inter.map(([n, f]) => `${n} devices ×${f.toFixed(2)}`).join(', ')}`);
  if (r.scaling?.predictedSerialFraction != null) out.push(`Amdahl serial fraction of the predicted data-parallel curve: ${r.scaling.predictedSerialFraction.toFixed(3)}`);
  for (const n of r.notRunnable) out.push(`${n.mode}: ${n.reason}`);
  for (const s of r.skipped) out.push(`skipped ${s.label}: ${s.reason}`);
  return out.join('\n');
}

async function sweepCommand(model: string, flags: SweepFlags, h: SweepCliHelpers): Promise<void> {
  const { modelPath, label } = await h.resolveModel(model);
  if (flags.out) await checkWritable(resolve(flags.out), '--out');
  if (flags.html) await checkWritable(resolve(flags.html), '--html');
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  const tty = !flags.json && process.stderr.isTTY;
  try {
    const { result, predicted, measured } = await runSweep({
      modelPath,
      modelLabel: label,
      devices: flags.devices,
      modes: flags.modes,
      batches: flags.batch,
      microBatches: flags.microBatches,
      repeats: flags.repeats,
      steps: flags.steps,
      warmup: flags.warmup,
      flags: {
        ...(flags.batchDim ? { batchDim: flags.batchDim } : {}),
        ...(Object.keys(flags.dim).length ? { dims: flags.dim } : {}),
        ...(Object.keys(flags.inputShape).length ? { inputShapes: flags.inputShape } : {}),
        ...(Object.keys(flags.value).length ? { values: flags.value } : {}),
      },
      signal: abort.signal,
      onProgress: (m, done, total) => {
        if (tty) process.stderr.write(`\r\x1b[2K[${done}/${total}] ${escapeTerminal(m)}`);
      },
    });
    if (tty) process.stderr.write('\r\x1b[2K');
    if (result.plans.every((p) => p.kind === 'predicted')) {
      throw new UserError(`${label}: no plan of the sweep could be measured (${result.skipped.map((s) => `${s.label}: ${s.reason}`).join('; ') || 'none enumerated'}); check the model's input flags with \`parallax profile\` first`);
    }
    const json = `${JSON.stringify(result, null, 2)}\n`;
    if (flags.out) await writeFileAtomic(resolve(flags.out), json);
    if (flags.html) await writeFileAtomic(resolve(flags.html), renderSweepHtml(result));
    if (flags.traces) {
      // Per plan its predicted trace and (measured plans) its first run, for the timeline:
      // `parallax report P.predicted.parallax.json --html x.html --compare P.measured.parallax.json`.
      await writeSweepTraces(resolve(flags.traces), predicted, measured);
    }
    if (flags.json) process.stdout.write(json);
    else {
      process.stdout.write(escapeTerminal(`${formatSweep(result)}\n`, { keepLines: true }));
      if (flags.out) process.stdout.write(`sweep written to ${resolve(flags.out)}\n`);
      if (flags.html) process.stdout.write(`report written to ${resolve(flags.html)}\n`);
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Adds `sweep` to the command line. */
export function registerSweep(program: Command, h: SweepCliHelpers): void {
  program
    .command('sweep')
    .description('measure every plan that fits this machine (interleaved, repeated), predict each from the others and 4/8 devices, and show the prediction error')
    .argument('<model>', 'an .onnx file, or "demo" for the bundled demo model')
    .option('--devices <spec>', 'one device kind, e.g. cpu:2: plans use 1..N of them', h.deviceSpec, 'cpu:2')
    .addOption(new Option('--modes <list>', `modes to sweep (${SWEEP_MODES.join(', ')}; tensor where the model splits, hybrid measured from 4 devices and predicted below)`).argParser(parseModes).default(['data', 'pipeline'], 'data,pipeline'))
    .addOption(new Option('--micro-batches <list>', 'pipeline micro-batch counts').argParser(intList('--micro-batches', h.positiveInt('--micro-batches'))).default([1, 2, 4, 8], '1,2,4,8'))
    .addOption(new Option('--batch <list>', 'global batch sizes').argParser(intList('--batch', h.positiveInt('--batch', MAX_BATCH))).default([32], '32'))
    .option('--repeats <n>', 'interleaved rounds over all plans', h.positiveInt('--repeats', 100), 3)
    .option('--steps <n>', 'measured steps per run', h.positiveInt('--steps', 10_000), 10)
    .option('--warmup <n>', 'unrecorded warm-up steps per run', h.nonNegativeInt('--warmup'), 2)
    .option('--out <file>', 'write the result as JSON')
    .option('--json', 'print the result as JSON on stdout')
    .option('--html <file.html>', 'write a standalone page with the table and the speedup chart')
    .option('--traces <dir>', 'write each plan\'s predicted trace and first measured run there (<plan>.predicted|measured.parallax.json)')
    .option('--batch-dim <name>', 'name of the batch dimension, when it cannot be found')
    .option('--dim <name=value>', 'value of a symbolic dimension (repeatable)', h.collectDim, {})
    .option('--input-shape <name=d0,d1,…>', 'full shape of an input (repeatable)', h.collectShape, {})
    .option('--value <name=v>', 'value of an input shared by every row, e.g. sr=16000 (repeatable)', h.collectValue, {})
    .action((model: string, flags: SweepFlags) => sweepCommand(model, flags, h));
}
