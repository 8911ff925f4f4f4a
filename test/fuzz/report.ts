/** Limits every fuzz run holds to, and the text a run's report prints. */
import type { FuzzReport } from './harness';

/**
 * Longest one input may take. Generous: on a busy 2-core machine a real model through the
 * whole pipeline takes tens of milliseconds; a second would already be a problem worth a look.
 */
export const FUZZ_WATCHDOG_MS = 10_000;

/** Heap cap of the fuzz worker, MB: no input of a few MB may need more. */
export const FUZZ_MEMORY_MB = 512;

/** A report as text: counts, rate, sample refusals and every finding with its saved input. */
export function describeReport(target: string, seed: number, r: FuzzReport): string {
  const lines = [
    `${target}: ${r.inputs} inputs (seed ${seed}) in ${(r.ms / 1000).toFixed(1)} s: ${r.results} results, ${r.refusals} one-line refusals, ${r.findings.length} findings`,
    ...r.sampleRefusals.map((m) => `  refused: ${m.slice(0, 160)}`),
    ...r.findings.map((f) => `  FINDING ${f.kind} at input ${f.index} (${f.file}): ${f.message.slice(0, 600)}`),
  ];
  return lines.join('\n');
}
