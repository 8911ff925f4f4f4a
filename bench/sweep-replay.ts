/**
 * Predicts every plan of a kept sweep again (leave-one-out, as `parallax sweep` does) and
 * prints measured, predicted and error per plan, with the MAPE and the largest error.
 *
 *   node --import tsx bench/sweep-replay.ts DIR/<model> [DIR/<model> ...]
 */
import { loadModel } from '../src/runtime/onnx/model';
import { sweepSplit } from '../src/runtime/tensor/sweep-split';
import { fitReferences, leaveOneOut, NoBasisError, predictFrom } from '../src/profiler/sweep/predict';
import { median } from '../src/profiler/stats';
import type { Plan } from '../src/profiler/plan';
import { loadRuns } from './sweep-runs';

async function replay(dir: string): Promise<number[]> {
  const saved = await loadRuns(dir);
  const ir = await loadModel(saved.modelPath);
  const splits = sweepSplit(ir, saved.flags.dims);
  const errs: number[] = [];
  for (const p of saved.runs) {
    const t0 = p.traces[0]!;
    const plan = t0.meta.plan as Plan;
    const measured = median(p.traces.flatMap((t) => t.steps.map((w) => w.endUs - w.startUs)));
    const training = leaveOneOut(p.id, saved.runs);
    const split = splits.sharesFor(plan);
    try {
      const got = predictFrom({ program: t0.meta.program!, meta: t0.meta, lanes: t0.lanes, steps: t0.steps.length, ...(split ? { split } : {}) }, training, fitReferences(training));
      const err = (got.predictedUs / measured - 1) * 100;
      errs.push(Math.abs(err));
      process.stdout.write(`${p.id.padEnd(36)} ${(measured / 1000).toFixed(2).padStart(8)} ms ${(got.predictedUs / 1000).toFixed(2).padStart(8)} ms ${`${err > 0 ? '+' : ''}${err.toFixed(1)}`.padStart(7)} %\n`);
    } catch (e) {
      if (!(e instanceof NoBasisError)) throw e;
      process.stdout.write(`${p.id.padEnd(36)} no prediction: ${e.message}\n`);
    }
  }
  const mape = errs.reduce((a, b) => a + b, 0) / Math.max(1, errs.length);
  process.stdout.write(`${dir}: MAPE ${mape.toFixed(1)} %, max ${Math.max(0, ...errs).toFixed(1)} % over ${errs.length} plans\n\n`);
  return errs;
}

async function main(): Promise<void> {
  const dirs = process.argv.slice(2);
  if (dirs.length === 0) throw new Error('usage: node --import tsx bench/sweep-replay.ts DIR/<model> [...]');
  const all: number[] = [];
  for (const d of dirs) all.push(...(await replay(d)));
  if (dirs.length > 1) process.stdout.write(`all: MAPE ${(all.reduce((a, b) => a + b, 0) / all.length).toFixed(1)} %, max ${Math.max(...all).toFixed(1)} % over ${all.length} plans\n`);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
