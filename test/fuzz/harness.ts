/**
 * The fuzz harness: runs a target's inputs in a worker thread with a memory cap, watches each
 * input with a watchdog from the main thread, restarts the worker after a hang or a crash,
 * and reports every finding with the input that caused it (saved to a folder, so it can be
 * replayed: see test/fixtures/fuzz-regressions/).
 */
import { Worker } from 'node:worker_threads';
import { mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fuzzTarget, type TargetName } from './targets';
import { Rand, inputSeed } from './mutate';
import type { FromFuzzWorker, WorkerJob } from './worker';

export interface FuzzOptions {
  target: TargetName;
  count: number;
  seed: number;
  /** Longest one input may run before it counts as a hang. */
  watchdogMs: number;
  /** Heap cap of the worker (V8 old generation), MB: an input needing more is a finding. */
  memoryMb: number;
  /** Where inputs behind findings are written. */
  saveDir: string;
}

export interface Finding {
  index: number;
  kind: 'bug' | 'hang' | 'crash';
  message: string;
  /** The saved input. */
  file: string;
}

export interface FuzzReport {
  inputs: number;
  results: number;
  refusals: number;
  findings: Finding[];
  /** A few distinct refusal messages, to show what the fuzzer reached. */
  sampleRefusals: string[];
  ms: number;
}

const WORKER = join(__dirname, 'worker.ts');

/** How long a fuzz worker may take to start before its first input. */
const STARTUP_MS = 60_000;

/** Runs `opts.count` inputs of a target; never throws for what an input does. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const t0 = performance.now();
  const report: FuzzReport = { inputs: 0, results: 0, refusals: 0, findings: [], sampleRefusals: [], ms: 0 };
  const kinds = new Set<string>();
  let target: ReturnType<typeof fuzzTarget> | null = null;
  const save = (index: number, kind: Finding['kind'], message: string): void => {
    target ??= fuzzTarget(opts.target);
    const bytes = target.generate(new Rand(inputSeed(opts.seed, index)), index);
    mkdirSync(opts.saveDir, { recursive: true });
    const file = join(opts.saveDir, `${opts.target}-seed${opts.seed}-${index}-${kind}.${target.ext}`);
    writeFileSync(file, bytes);
    report.findings.push({ index, kind, message, file });
  };
  let next = 0;
  while (next < opts.count) {
    next = await new Promise<number>((resolve) => {
      const job: WorkerJob = { target: opts.target, seed: opts.seed, from: next, to: opts.count };
      const w = new Worker(WORKER, { workerData: job, execArgv: ['--require', 'tsx/cjs'], resourceLimits: { maxOldGenerationSizeMb: opts.memoryMb } });
      let current = -1;
      let timer: NodeJS.Timeout | null = null;
      let ended = false;
      const end = (resumeAt: number): void => {
        if (ended) return;
        ended = true;
        if (timer) clearTimeout(timer);
        void w.terminate();
        resolve(resumeAt);
      };
      const arm = (): void => {
        if (timer) clearTimeout(timer);
        // Before its first input the worker is still starting (loading the transpiler and the
        // target's seeds), which a busy machine can stretch past an input's allowance: that
        // wait gets its own, longer one, and running out of it is no input's hang.
        const starting = current < 0;
        timer = setTimeout(
          () => {
            if (starting) {
              report.findings.push({ index: -1, kind: 'crash', message: `the fuzz worker did not start within ${STARTUP_MS} ms`, file: '' });
              end(opts.count);
              return;
            }
            report.inputs++;
            save(current, 'hang', `no outcome within ${opts.watchdogMs} ms`);
            end(current + 1);
          },
          starting ? Math.max(STARTUP_MS, opts.watchdogMs) : opts.watchdogMs,
        );
      };
      // Until the first 'start' the worker is loading (see arm).
      arm();
      w.on('message', (m: FromFuzzWorker) => {
        if (m.type === 'start') {
          current = m.index;
          arm();
        } else if (m.type === 'outcome') {
          report.inputs++;
          if (m.outcome === 'result') report.results++;
          else {
            report.refusals++;
            const kind = (m.message ?? '').replace(/^\S*fuzz[^:]*: /, '').slice(0, 60);
            if (!kinds.has(kind) && report.sampleRefusals.length < 12) {
              kinds.add(kind);
              report.sampleRefusals.push(m.message ?? '');
            }
          }
        } else if (m.type === 'bug') {
          report.inputs++;
          save(m.index, 'bug', m.message);
        } else if (m.type === 'done') end(opts.count);
      });
      w.on('error', (e) => {
        if (current < 0) {
          // The target itself failed to start (a seed missing): nothing to resume.
          report.findings.push({ index: -1, kind: 'crash', message: `the fuzz worker failed before the first input: ${e.message}`, file: '' });
          end(opts.count);
          return;
        }
        report.inputs++;
        save(current, 'crash', `the worker died: ${e.message}`);
        end(current + 1);
      });
      w.on('exit', (code) => {
        if (ended) return;
        report.inputs++;
        save(current, 'crash', `the worker exited with code ${code}`);
        end(current + 1);
      });
    });
  }
  report.ms = performance.now() - t0;
  // A folder made for findings that were not found is not left behind.
  try {
    if (readdirSync(opts.saveDir).length === 0) rmdirSync(opts.saveDir);
  } catch {
    // Never created.
  }
  return report;
}

/** Seed and count of a fuzz run: `PARALLAX_FUZZ_SEED` and `PARALLAX_FUZZ_COUNT` override the defaults. */
export function fuzzSettings(defaultCount: number): { seed: number; count: number } {
  const env = (k: string): number | null => {
    const v = process.env[k];
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
  };
  return { seed: env('PARALLAX_FUZZ_SEED') ?? 1, count: env('PARALLAX_FUZZ_COUNT') ?? defaultCount };
}
