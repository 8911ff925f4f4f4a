/**
 * A sweep's measured runs kept on disk, so that the leave-one-out predictions can be made
 * again from the same measurements (a change to the predictor compared on identical data,
 * free of the 2–3× run-to-run drift of a shared machine).
 *
 *   PARALLAX_SWEEP_RUNS=DIR npm run bench -- sweep      keeps DIR/<model>/runs.json + traces
 *   node --import tsx bench/sweep-replay.ts DIR/<model>  predicts every plan again
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MeasuredRuns } from '../src/profiler/sweep/predict';
import { traceFileStem } from '../src/profiler/sweep/files';
import { readTrace, writeTrace } from '../src/profiler/trace-io';
import type { SweepInputFlags } from '../src/runtime/sweep';

export interface SavedRuns {
  modelPath: string;
  flags: SweepInputFlags;
  runs: MeasuredRuns[];
}

interface Index {
  modelPath: string;
  flags: SweepInputFlags;
  plans: { id: string; files: string[] }[];
}

export async function saveRuns(dir: string, saved: SavedRuns): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const index: Index = { modelPath: saved.modelPath, flags: saved.flags, plans: [] };
  for (const p of saved.runs) {
    const files: string[] = [];
    for (const [i, t] of p.traces.entries()) {
      const f = `${traceFileStem(p.id)}.${i}.parallax.json`;
      await writeTrace(join(dir, f), t);
      files.push(f);
    }
    index.plans.push({ id: p.id, files });
  }
  writeFileSync(join(dir, 'runs.json'), JSON.stringify(index, null, 2));
}

export async function loadRuns(dir: string): Promise<SavedRuns> {
  const index = JSON.parse(readFileSync(join(dir, 'runs.json'), 'utf8')) as Index;
  const runs: MeasuredRuns[] = [];
  for (const p of index.plans) runs.push({ id: p.id, traces: await Promise.all(p.files.map((f) => readTrace(join(dir, f)))) });
  return { modelPath: index.modelPath, flags: index.flags, runs };
}
