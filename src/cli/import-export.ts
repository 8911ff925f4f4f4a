/**
 * `parallax import` and `parallax export`: traces from other profilers in, Chrome traces out.
 *
 *   parallax import <files...> [--out merged.parallax.json] [--json]
 *   parallax export <trace...> --format chrome --out trace.json
 *
 * `import` reads PyTorch profiler (Kineto) traces, one file per rank (plain or .gz), streamed
 * from their bytes in parallel worker threads (a file cut short imports what came before
 * the cut, with a warning), merges them into one Parallax trace, prints the same summary, breakdown and findings as `report`
 * plus a comparison of the ranks, and writes the trace when `--out` is given. `export`
 * takes anything `import` reads, or a Parallax trace, and writes it for Perfetto or
 * chrome://tracing.
 */
import { Option, type Command } from 'commander';
import { basename, resolve } from 'node:path';
import { UserError } from '../common/errors';
import { checkWritable } from '../common/out-path';
import { escapeTerminal } from '../common/terminal';
import { writeChromeTrace } from '../profiler/export-chrome';
import { deriveIdle } from '../profiler/idle';
import { importTrace } from '../profiler/import/detect';
import { importReport } from '../profiler/import/report';
import { analyseRanks, type RankAnalysis } from '../profiler/import/ranks';
import { writeTrace } from '../profiler/trace-io';
import { formatAnalysis, formatSummary, ms, table } from './format';

/** The ranks table and what it says. */
export function formatRanks(r: RankAnalysis): string {
  const out: string[] = ['ranks (per step)'];
  out.push(
    table(
      ['rank', 'compute', 'comm', 'exposed comm', 'collective wait', 'host idle', 'vs others'],
      r.ranks.map((x) => [
        x.label,
        ms(x.computePerStepUs),
        ms(x.commPerStepUs),
        ms(x.exposedCommPerStepUs),
        ms(x.collectiveWaitPerStepUs),
        ms(x.hostIdlePerStepUs),
        r.ranks.length > 1 ? `${x.slowdown.toFixed(2)}×${x.straggler ? ' straggler' : ''}` : '–',
      ]),
    ),
  );
  out.push(r.message);
  return out.join('\n');
}

interface ImportFlags {
  out?: string;
  json?: boolean;
}

/** Where the commands print; tests pass their own to read the output. */
export interface Output {
  write(text: string): void;
}

const stdout: Output = { write: (text) => void process.stdout.write(text) };

async function importCommand(files: string[], flags: ImportFlags, io: Output): Promise<void> {
  const out = flags.out ? resolve(flags.out) : null;
  if (out) await checkWritable(out, '--out');
  // A file cut short still imports; the warning says so on stderr, one line per file.
  const { trace, summary, analysis, findings: f } = await importReport(files, {
    warn: (line) => void process.stderr.write(`parallax: warning: ${escapeTerminal(line)}\n`),
  });
  const ranks = analyseRanks(analysis);
  if (out) await writeTrace(out, trace);
  if (flags.json) {
    const { criticalPath, ops, breakdown, pipeline, dataParallel, scaling } = analysis;
    io.write(
      `${JSON.stringify(
        {
          ...summary,
          findings: f,
          ranks,
          notes: trace.meta.notes,
          plan: trace.meta.plan,
          analysis: { criticalPath: { ...criticalPath, representative: undefined }, ops, perStep: breakdown, pipeline, dataParallel, scaling },
          tracePath: out,
        },
        null,
        2,
      )}\n`,
    );
    return;
  }
  const notes = trace.meta.notes.length > 0 ? `\n\nnotes\n${trace.meta.notes.map((n) => `  ${n}`).join('\n')}` : '';
  const written = out ? `\n\ntrace written to ${out}` : '\n\n(no --out given: the merged trace was not written)';
  io.write(escapeTerminal(`${formatSummary(summary, f)}\n\n${formatAnalysis(summary, analysis)}\n\n${formatRanks(ranks)}${notes}${written}\n`, { keepLines: true }));
}

interface ExportFlags {
  format: 'chrome';
  out?: string;
}

/** `run.parallax.json` → `run.chrome.json`, `rank0.json.gz` → `rank0.chrome.json`, beside the input. */
function defaultExportPath(input: string): string {
  const name = basename(input).replace(/\.gz$/i, '').replace(/(\.parallax)?\.json$/i, '');
  return resolve(input, '..', `${name}.chrome.json`);
}

async function exportCommand(files: string[], flags: ExportFlags, io: Output): Promise<void> {
  if (flags.format !== 'chrome') throw new UserError(`--format ${String(flags.format)} is not supported; use --format chrome`);
  // Idle spans are derived, so an export shows the same idle (and causes) as the report.
  const out = resolve(flags.out ?? defaultExportPath(files[0]));
  await checkWritable(out, flags.out ? '--out' : 'export file');
  const trace = deriveIdle(await importTrace(files));
  await writeChromeTrace(trace, out);
  io.write(escapeTerminal(`Chrome trace written to ${out} (open it in ui.perfetto.dev or chrome://tracing)\n`, { keepLines: true }));
}

/** Adds `import` and `export` to the `parallax` program. */
export function registerImportExport(program: Command, io: Output = stdout): void {
  program
    .command('import')
    .description('import PyTorch profiler (Kineto) traces, one file per rank, and report them like a Parallax run')
    .argument('<files...>', 'Kineto trace files (.json or .json.gz), one per rank')
    .option('--out <file>', 'write the merged trace to this .parallax.json file')
    .option('--json', 'print JSON')
    .action((files: string[], flags: ImportFlags) => importCommand(files, flags, io));

  program
    .command('export')
    .description('write a trace in another format (Chrome Trace Event Format, for Perfetto and chrome://tracing)')
    .argument('<traces...>', 'a .parallax.json file, or Kineto trace files (one per rank)')
    .addOption(new Option('--format <format>', 'output format').choices(['chrome']).default('chrome'))
    .option('--out <file>', 'output file (default <input>.chrome.json beside the input)')
    .action((files: string[], flags: ExportFlags) => exportCommand(files, flags, io));
}
