/**
 * A sweep on disk: its result file (sweep.json, validated against the sweep schema before
 * use) and the plans' traces beside it (`parallax sweep --traces DIR`:
 * `<plan>.predicted.parallax.json` and, for measured plans, `<plan>.measured.parallax.json`).
 * The CLI writes them; the extension's sweep panel reads them back.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { UserError } from '../../common/errors';
import type { Trace } from '../trace-format';
import { writeTrace } from '../trace-io';
import { SweepResultSchema, type SweepResult } from './schema';

/** The two traces a plan can have. */
export type SweepTraceKind = 'predicted' | 'measured';

/** Largest sweep.json read (a sweep of thousands of plans is a few MB). */
export const MAX_SWEEP_FILE_BYTES = 64 * 2 ** 20;

/** The file name stem of a plan's traces: its label with runs of other characters as `_` (`data cpu:2 b32` → `data_cpu_2_b32`). */
export function traceFileStem(label: string): string {
  return label.replace(/[^A-Za-z0-9=.-]+/g, '_');
}

/** Where a plan's trace of one kind lies in a traces folder. */
export function sweepTracePath(dir: string, planLabel: string, kind: SweepTraceKind): string {
  return join(dir, `${traceFileStem(planLabel)}.${kind}.parallax.json`);
}

/** Writes each plan's predicted trace and each measured plan's first run into `dir`. */
export async function writeSweepTraces(dir: string, predicted: ReadonlyMap<string, Trace>, measured: ReadonlyMap<string, Trace>): Promise<void> {
  for (const [label, trace] of predicted) await writeTrace(sweepTracePath(dir, label, 'predicted'), trace);
  for (const [label, trace] of measured) await writeTrace(sweepTracePath(dir, label, 'measured'), trace);
}

const check = TypeCompiler.Compile(SweepResultSchema);

/**
 * Parses a sweep result and checks it against the schema. Throws a {@link UserError} of one
 * line that names `source`, the first fault and what to do.
 */
export function parseSweepResult(text: string, source: string): SweepResult {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${source} is not JSON (${e instanceof Error ? e.message : String(e)}); open the file \`parallax sweep --out\` wrote`);
  }
  if (!check.Check(data)) {
    const first = check.Errors(data).First();
    const where = first ? `${first.path || '/'}: ${first.message}` : 'wrong shape';
    throw new UserError(`${source} is not a Parallax sweep result (${where}); open the file \`parallax sweep --out\` wrote`);
  }
  return data;
}

/** Reads and checks a sweep.json (see {@link parseSweepResult}). */
export async function readSweepResult(path: string): Promise<SweepResult> {
  const name = basename(path);
  let st;
  try {
    st = await fs.stat(path);
  } catch {
    throw new UserError(`${name}: no such file; check the path`);
  }
  if (!st.isFile()) throw new UserError(`${name} is not a file; open a sweep.json`);
  if (st.size > MAX_SWEEP_FILE_BYTES) throw new UserError(`${name} is ${(st.size / 2 ** 20).toFixed(0)} MiB, more than a sweep result can be (${MAX_SWEEP_FILE_BYTES / 2 ** 20} MiB); open the file \`parallax sweep --out\` wrote`);
  return parseSweepResult(await fs.readFile(path, 'utf8'), name);
}

/** Whether each of a sweep's plans has its traces in `dir` (null: no folder to look in). */
export async function sweepTracesIn(dir: string | null, r: SweepResult): Promise<{ predicted: boolean; measured: boolean }[]> {
  const has = async (p: string): Promise<boolean> => (await fs.stat(p).catch(() => null))?.isFile() === true;
  return Promise.all(
    r.plans.map(async (p) => ({
      predicted: dir !== null && (await has(sweepTracePath(dir, p.label, 'predicted'))),
      measured: dir !== null && p.kind === 'measured' && (await has(sweepTracePath(dir, p.label, 'measured'))),
    })),
  );
}

/**
 * The traces folder of a sweep.json: its own folder, else a `traces` folder beside it,
 * whichever holds a trace of the sweep's first plan; null when neither does.
 */
export async function findTracesDir(sweepPath: string, r: SweepResult): Promise<string | null> {
  const probe = r.plans[0];
  if (!probe) return null;
  for (const dir of [dirname(sweepPath), join(dirname(sweepPath), 'traces')]) {
    const found = await sweepTracesIn(dir, { ...r, plans: [probe] });
    if (found[0]!.predicted || found[0]!.measured) return dir;
  }
  return null;
}
