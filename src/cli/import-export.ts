/**
 * `parallax import` and `parallax export`: traces from other profilers in, Chrome traces out.
 *
 *   parallax import <files...> [--out merged.parallax.json] [--json]
 *   parallax export <trace...> --format chrome --out trace.json
 *   parallax export <trace...> --format chakra --out et/ [--step N | --steps all]
 *
 * `import` reads PyTorch profiler (Kineto) traces, one file per rank (plain or .gz), streamed
 * from their bytes in parallel worker threads (a file cut short imports what came before
 * the cut, with a warning), merges them into one Parallax trace, prints the same summary, breakdown and findings as `report`
 * plus a comparison of the ranks, and writes the trace when `--out` is given. `export`
 * takes anything `import` reads, or a Parallax trace, and writes it for Perfetto or
 * chrome://tracing, or as MLCommons Chakra execution traces (one file per rank) for ASTRA-sim.
 */
import { Option, type Command } from 'commander';
import { basename, join, resolve } from 'node:path';
import { UserError, isUserError } from '../common/errors';
import { checkWritable } from '../common/out-path';
import { escapeTerminal } from '../common/terminal';
import { writeChakraTrace, type ChakraSteps } from '../profiler/export-chakra';
import { writeChromeTrace } from '../profiler/export-chrome';
import { deriveIdle } from '../profiler/idle';
import { importTrace } from '../profiler/import/detect';
import { importReport } from '../profiler/import/report';
import { analyseRanks, type RankAnalysis } from '../profiler/import/ranks';
import { writeTrace } from '../profiler/trace-io';
import type { SegmentWork } from '../profiler/simulate/hardware';
import type { Trace } from '../profiler/trace-format';
import { segmentWork } from '../runtime/projection';
import { resolveModel } from './model-arg';
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
  format: 'chrome' | 'chakra';
  out?: string;
  step?: number;
  steps?: 'all';
  model?: string;
}

/** `run.parallax.json` → `run`, `rank0.json.gz` → `rank0`: the name exports are written under. */
function exportBaseName(input: string): string {
  return basename(input).replace(/\.gz$/i, '').replace(/(\.parallax)?\.json$/i, '');
}

/** `run.parallax.json` → `run.chrome.json`, `rank0.json.gz` → `rank0.chrome.json`, beside the input. */
function defaultExportPath(input: string): string {
  return resolve(input, '..', `${exportBaseName(input)}.chrome.json`);
}

/** `run.parallax.json` → the folder `run.et` beside the input. */
function defaultChakraDir(input: string): string {
  return resolve(input, '..', `${exportBaseName(input)}.et`);
}

/** `--step`/`--steps` as a choice of steps; both at once is a user error. */
function chakraSteps(flags: ExportFlags): ChakraSteps {
  if (flags.step !== undefined && flags.steps !== undefined) throw new UserError('give --step N or --steps all, not both');
  if (flags.steps === 'all') return { kind: 'all' };
  return flags.step === undefined ? { kind: 'median' } : { kind: 'index', step: flags.step };
}

/**
 * FLOPs and bytes per segment for the compute nodes' `num_ops` and `tensor_size`, from the
 * model the trace was recorded with (or `--model`). A model that cannot be found leaves them
 * out with a note; a `--model` that is not the trace's model is an error.
 */
async function chakraWork(trace: Trace, model: string | undefined): Promise<{ work: Record<string, SegmentWork>; note: string | null }> {
  const program = trace.meta.program;
  const meta = trace.meta.model;
  if (!program || !meta) {
    if (model !== undefined) throw new UserError('--model: the trace records no program to run the model in; leave --model out');
    return { work: {}, note: null };
  }
  try {
    const { modelPath } = await resolveModel(model ?? meta.path);
    return { work: await segmentWork(modelPath, program.segments, meta.sha256), note: null };
  } catch (e) {
    if (model !== undefined || !isUserError(e)) throw e;
    return { work: {}, note: `num_ops and tensor_size left out of compute nodes: ${(e as Error).message}` };
  }
}

async function exportChakra(files: string[], flags: ExportFlags, io: Output): Promise<void> {
  const choice = chakraSteps(flags);
  const name = exportBaseName(files[0]);
  const dir = resolve(flags.out ?? defaultChakraDir(files[0]));
  // The probe is the first rank's file: a folder that cannot hold it fails before any reading.
  await checkWritable(join(dir, `${name}.0.et`), flags.out ? '--out' : 'export folder');
  const trace = deriveIdle(await importTrace(files));
  const { work, note } = await chakraWork(trace, flags.model);
  const { files: written, export: exp } = await writeChakraTrace(trace, dir, name, choice, work);
  const nodes = exp.ranks.reduce((a, r) => a + r.nodes.length, 0);
  const which = exp.steps.length === 0 ? 'every span (the trace has no step windows)' : exp.steps.length === 1 ? `step ${exp.steps[0]}` : `${exp.steps.length} steps`;
  const lines = [`Chakra execution traces written to ${dir}: ${written.length} file(s) ${name}.<rank>.et, ${nodes} nodes, ${which} (for ASTRA-sim and the Chakra tools)`];
  const { unknownComm, noPeer } = exp.leftOut;
  if (unknownComm > 0) lines.push(`${unknownComm} communication span(s) of unknown kind were left out`);
  if (noPeer > 0) lines.push(`${noPeer} send/recv span(s) without a known peer were left out`);
  if (note) lines.push(note);
  io.write(escapeTerminal(`${lines.join('\n')}\n`, { keepLines: true }));
}

async function exportCommand(files: string[], flags: ExportFlags, io: Output): Promise<void> {
  if (flags.format === 'chakra') return exportChakra(files, flags, io);
  if (flags.format !== 'chrome') throw new UserError(`--format ${String(flags.format)} is not supported; use --format chrome or --format chakra`);
  if (flags.step !== undefined || flags.steps !== undefined || flags.model !== undefined) {
    throw new UserError('--step, --steps and --model go with --format chakra; a Chrome export holds every step as recorded');
  }
  // Idle spans are derived, so an export shows the same idle (and causes) as the report.
  const out = resolve(flags.out ?? defaultExportPath(files[0]));
  await checkWritable(out, flags.out ? '--out' : 'export file');
  const trace = deriveIdle(await importTrace(files));
  await writeChromeTrace(trace, out);
  io.write(escapeTerminal(`Chrome trace written to ${out} (open it in ui.perfetto.dev or chrome://tracing)\n`, { keepLines: true }));
}

/** A step index for `--step`. */
function stepIndex(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new UserError(`--step ${v}: give a step index, a whole number ≥ 0`);
  return n;
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
    .description('write a trace in another format: Chrome Trace Event Format (Perfetto, chrome://tracing) or Chakra execution traces (ASTRA-sim)')
    .argument('<traces...>', 'a .parallax.json file, or Kineto trace files (one per rank)')
    .addOption(new Option('--format <format>', 'output format').choices(['chrome', 'chakra']).default('chrome'))
    .option('--out <path>', 'chrome: output file (default <input>.chrome.json); chakra: output folder for <name>.<rank>.et (default <input>.et/)')
    .option('--step <n>', 'chakra: export this step (default: the median step)', stepIndex)
    .addOption(new Option('--steps <which>', 'chakra: export every step').choices(['all']))
    .option('--model <file.onnx>', 'chakra: the model, when the trace\'s path no longer finds it (FLOPs and bytes of compute nodes)')
    .action((files: string[], flags: ExportFlags) => exportCommand(files, flags, io));
}
