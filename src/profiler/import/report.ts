/**
 * An imported trace made ready to read: idle derived, then the summary, analyses and
 * findings a Parallax run carries. `parallax import` prints them; the extension's Open
 * Trace… writes the trace and opens it in the timeline.
 */
import { analyse, type Analysis } from '../analysis';
import { findings as runFindings, type Finding } from '../findings';
import { deriveIdle } from '../idle';
import { summarize, type ProfileSummary } from '../summary';
import type { Trace } from '../trace-format';
import { importTrace, type ImportOptions } from './detect';

/** An imported trace with its summary and findings in it, and the analyses they came from. */
export interface ImportedReport {
  trace: Trace;
  summary: ProfileSummary;
  analysis: Analysis;
  findings: Finding[];
}

/** Imports `paths` (see {@link importTrace}) and analyses the result. */
export async function importReport(paths: string[], options: ImportOptions = {}): Promise<ImportedReport> {
  const trace = deriveIdle(await importTrace(paths, options));
  const summary = summarize(trace);
  const analysis = analyse(trace);
  const f = runFindings(trace, summary, { analysis });
  return { trace: { ...trace, summary, findings: f }, summary, analysis, findings: f };
}
