/**
 * Fuzz worker: runs inputs [from, to) of one target and reports each one's outcome to the
 * harness, which watches it from the main thread (a hang or a crash here cannot hide).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isUserError } from '../../src/common/errors';
import { fuzzTarget, type TargetName } from './targets';
import { Rand, inputSeed } from './mutate';

export interface WorkerJob {
  target: TargetName;
  seed: number;
  from: number;
  to: number;
}

/** What the worker posts: the start of an input, its outcome, the end of the job. */
export type FromFuzzWorker =
  | { type: 'start'; index: number }
  | { type: 'outcome'; index: number; outcome: 'result' | 'refused'; message?: string }
  | { type: 'bug'; index: number; message: string }
  | { type: 'done' };

/** Longest message a refusal may have: one line a user reads. */
const MAX_MESSAGE = 2000;

/** Why an error is a finding rather than a proper refusal, or null when it is one. */
export function findingOf(e: unknown): string | null {
  if (!isUserError(e)) return `untyped ${e instanceof Error ? `${e.name}: ${e.stack ?? e.message}` : String(e)}`;
  const m = (e as Error).message;
  if (m.includes('\n')) return `multi-line UserError: ${m}`;
  if (m.length > MAX_MESSAGE) return `UserError of ${m.length} characters: ${m.slice(0, 200)}…`;
  return null;
}

async function main(job: WorkerJob): Promise<void> {
  const target = fuzzTarget(job.target);
  const post = (m: FromFuzzWorker): void => parentPort!.postMessage(m);
  for (let i = job.from; i < job.to; i++) {
    const bytes = target.generate(new Rand(inputSeed(job.seed, i)), i);
    post({ type: 'start', index: i });
    try {
      await target.run(bytes);
      post({ type: 'outcome', index: i, outcome: 'result' });
    } catch (e) {
      const finding = findingOf(e);
      if (finding === null) post({ type: 'outcome', index: i, outcome: 'refused', message: (e as Error).message });
      else post({ type: 'bug', index: i, message: finding });
    }
  }
  post({ type: 'done' });
}

if (parentPort && workerData) void main(workerData as WorkerJob);
