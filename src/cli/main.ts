/**
 * The `parallax` command line: the same core as the extension, for terminals and CI.
 *
 *   parallax devices [--json]
 *   parallax profile <model.onnx|demo> --mode data --devices cpu:2 --batch 64 --steps 20 --out run.parallax.json [--json]
 *   parallax plan <model.onnx|demo> --mode tensor --devices cpu:2 [--tensor 8 --device-memory 16GiB] [--json]
 *   parallax report <run.parallax.json> [--json]
 *   parallax sweep <model.onnx|demo> --devices cpu:2 [--modes data,pipeline] [--batch 32,64] [--out sweep.json] [--json] [--html sweep.html]
 *
 * Errors a user can act on print one line (`parallax: …`) and exit 2; cancellation exits 130.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { basename, join, resolve } from 'node:path';
import { UserError, isUserError } from '../common/errors';
import { checkWritable } from '../common/out-path';
import { MAX_BATCH } from '../common/limits';
import { escapeTerminal } from '../common/terminal';
import { TOOL_VERSION } from '../common/version';
import { profile, ProfileCancelled } from '../runtime/api';
import { DEFAULT_MIN_TIME_S, DEFAULT_STEPS, type ProfileRequest, type Progress } from '../runtime/protocol';
import { EtaEstimator, formatEta } from '../runtime/progress-eta';
import { GRAD_DTYPES, makePlan, PARALLEL_MODES, PIPELINE_SCHEDULES, PlanFieldError, TRAIN_DEFAULTS, TRAIN_LOSSES, TRAIN_OPTIMIZERS, type GradDtype, type ParallelMode, type Plan, type PipelineSchedule, type TrainLoss, type TrainOptimizer, type TrainPlan } from '../profiler/plan';
import { parseByteSize } from '../profiler/units';
import { tensorPlanCommand } from './tensor-plan';
import { discoverDevices } from '../runtime/device/discovery';
import { readTrace } from '../profiler/trace-io';
import { summarize } from '../profiler/summary';
import { findings as runFindings, type Finding } from '../profiler/findings';
import { deriveIdle } from '../profiler/idle';
import { formatAnalysis, formatSummary, table } from './format';
import { analyse } from '../profiler/analysis';
import { writeHtmlReport } from './html';
import { registerImportExport } from './import-export';
import { resolveModel } from './model-arg';
import { registerProject } from './project';
import { registerSweep } from './sweep';

/**
 * Writes text for a terminal: names from models and traces are shown with their control
 * characters escaped (JSON output needs no such care: JSON.stringify escapes them).
 */
function print(text: string): void {
  process.stdout.write(escapeTerminal(text, { keepLines: true }));
}

function positiveInt(name: string, max = MAX_COUNT_FLAG) {
  return (v: string): number => {
    const n = Number(v);
    // Only plain digits: `1e12` and `0x10` are numbers to Number() but not what anyone types as a count.
    if (!/^\s*\d+\s*$/.test(v) || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${v}"`);
    if (n > max) throw new InvalidArgumentError(`${name} ${v} is more than the ${max} Parallax accepts`);
    return n;
  };
}

/** Largest value of a count flag (steps, micro-batches, stages): far beyond any useful profile, small enough to loop over. */
const MAX_COUNT_FLAG = 1_000_000;

/**
 * `--devices`: the spec as given, refusing a bare kind (`cpu`), which means one device and so
 * no parallelism at all; an explicit `cpu:1` is taken as meant.
 */
function deviceSpec(v: string): string {
  const bare = v.split(',').map((e) => e.trim()).find((e) => /^[A-Za-z]+$/.test(e));
  if (bare !== undefined) {
    throw new InvalidArgumentError(`--devices "${v}": "${bare}" has no count, which means one device; write ${bare.toLowerCase()}:2 for two (or ${bare.toLowerCase()}:1 for one on purpose)`);
  }
  return v;
}

function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\s*\d+\s*$/.test(v) || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got "${v}"`);
    if (n > MAX_COUNT_FLAG) throw new InvalidArgumentError(`${name} ${v} is more than the ${MAX_COUNT_FLAG} Parallax accepts`);
    return n;
  };
}

/** `--shards 48,16`. */
function parseShards(v: string): number[] {
  if (!/^\d+(,\d+)*$/.test(v)) throw new InvalidArgumentError(`--shards expects row counts like 48,16, got "${v}"`);
  return v.split(',').map(Number);
}

/** `--device-memory 16GiB`. */
function parseDeviceMemory(v: string): number {
  const bytes = parseByteSize(v);
  if (bytes === null) throw new InvalidArgumentError(`--device-memory expects a size such as 16GiB, 512MiB or 80GB, got "${v}"`);
  return bytes;
}

/** A repeatable flag's values, in order. */
function collectList(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

/** `--dim NAME=VALUE`, repeatable. */
function collectDim(v: string, prev: Record<string, number>): Record<string, number> {
  const m = /^(.+)=(\d+)$/.exec(v);
  if (!m || Number(m[2]) < 1) throw new InvalidArgumentError(`--dim expects NAME=VALUE with a positive VALUE, got "${v}"`);
  return { ...prev, [m[1]]: Number(m[2]) };
}

/** `--input-shape x=1,3,48,320`, repeatable. */
function collectShape(v: string, prev: Record<string, number[]>): Record<string, number[]> {
  const m = /^(.+)=(\d+(?:,\d+)*)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`--input-shape expects NAME=D0,D1,…, got "${v}"`);
  return { ...prev, [m[1]]: m[2].split(',').map(Number) };
}

/** `--value NAME=V`, repeatable: the value of an input shared by every row (e.g. sr=16000). */
function collectValue(v: string, prev: Record<string, number>): Record<string, number> {
  const m = /^(.+)=(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/i.exec(v);
  if (!m) throw new InvalidArgumentError(`--value expects NAME=NUMBER, e.g. sr=16000, got "${v}"`);
  return { ...prev, [m[1]]: Number(m[2]) };
}

/**
 * Progress display: a bar on a terminal, nothing when piped or with --json. The time left is
 * Parallax's own estimate ({@link EtaEstimator}): cli-progress's would count from the start of
 * the run across phases of different totals.
 */
function progressReporter(quiet: boolean): { update(p: Progress): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  const bar = new SingleBar(
    { format: '{phase} [{bar}] {value}/{total} | {message}{left}', hideCursor: true, stream: process.stderr, clearOnComplete: true },
    Presets.shades_classic,
  );
  // (`{left}`, not `{eta}`: cli-progress fills `{eta}` itself.)
  const eta = new EtaEstimator();
  let started = false;
  let phase = '';
  return {
    update(p) {
      const left = eta.update(p, Date.now());
      const payload = { phase: p.phase.padEnd(8), message: escapeTerminal(p.message), left: left !== null && left > 0 ? ` | ${formatEta(left)} left` : '' };
      if (!started) {
        bar.start(p.total, p.done, payload);
        started = true;
      }
      if (p.phase !== phase) {
        phase = p.phase;
        bar.setTotal(p.total);
      }
      bar.update(p.done, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

interface ProfileFlags {
  mode: ParallelMode;
  /** Tensor and hybrid modes: devices each weight is split over. */
  tensor?: number;
  /** Hybrid mode: replicas the batch is split over. */
  data?: number;
  /** Hybrid mode: stages of each replica's pipeline. */
  pipeline?: number;
  /** Tensor plans: layers kept whole. */
  keepWhole?: string[];
  gradSync?: boolean;
  train?: boolean;
  loss?: TrainLoss;
  optimizer?: TrainOptimizer;
  lr?: number;
  bucketMb?: number;
  gradDtype?: GradDtype;
  syncEvery?: number;
  labels?: string;
  freeze?: string[];
  shards?: number[];
  /** Also write a self-contained HTML report of the run. */
  report?: string;
  microBatches?: number;
  stages?: number;
  cuts?: string;
  schedule?: PipelineSchedule;
  devices: string;
  batch: number;
  /** Absent: DEFAULT_STEPS, lengthened to last --min-time. */
  steps?: number;
  /** Seconds the timed steps last at least (default DEFAULT_MIN_TIME_S when --steps is absent, else 0). */
  minTime?: number;
  warmup: number;
  seed: number;
  out?: string;
  json?: boolean;
  baseline: boolean;
  opLevel: boolean;
  captureCheck?: boolean;
  probe: boolean;
  batchDim?: string;
  dim: Record<string, number>;
  inputShape: Record<string, number[]>;
  value: Record<string, number>;
  inputs?: string;
  adviceOnPoorQuality: 'hold' | 'show';
  /** Capacity per device in bytes (`--device-memory`). */
  deviceMemory?: number;
}

/** The training part of the flags: `--train` and its settings (which mean nothing without it). */
function trainOf(flags: ProfileFlags): TrainPlan | undefined {
  if (!flags.train) {
    const given = [['loss', '--loss'], ['optimizer', '--optimizer'], ['lr', '--lr'], ['bucketMb', '--bucket-mb'], ['gradDtype', '--grad-dtype'], ['syncEvery', '--sync-every'], ['labels', '--labels'], ['freeze', '--freeze']] as const;
    for (const [k, flag] of given) {
      if (flags[k] !== undefined) throw new UserError(`${flag} applies to training runs only; add --train`);
    }
    return undefined;
  }
  return {
    loss: flags.loss ?? TRAIN_DEFAULTS.loss,
    optimizer: flags.optimizer ?? TRAIN_DEFAULTS.optimizer,
    lr: flags.lr ?? TRAIN_DEFAULTS.lr,
    bucketMb: flags.bucketMb ?? TRAIN_DEFAULTS.bucketMb,
    ...(flags.gradDtype ? { gradDtype: flags.gradDtype } : {}),
    ...(flags.syncEvery ? { syncEvery: flags.syncEvery } : {}),
    ...(flags.labels ? { labels: resolve(flags.labels) } : {}),
    ...(flags.freeze ? { freeze: flags.freeze } : {}),
  };
}

/** A positive finite number flag (`--lr 0.01`, `--bucket-mb 25`). */
function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got "${v}"`);
    return n;
  };
}

/** A finite number ≥ 0 flag (`--min-time 0` turns the minimum off). */
function nonNegativeNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 3600) throw new InvalidArgumentError(`${name} must be a number of seconds from 0 to 3600, got "${v}"`);
    return n;
  };
}

/** The typed plan of the flags; flags of another mode are refused before any work starts. */
function planOf(flags: ProfileFlags & { mode: ParallelMode }): Plan {
  const cuts = flags.cuts?.split(',').map((c) => c.trim()).filter((c) => c !== '');
  if (cuts !== undefined && cuts.length === 0) throw new UserError(`--cuts "${flags.cuts}" names no node; give node names separated by commas, e.g. --cuts conv3,relu7`);
  try {
    return makePlan({
      mode: flags.mode,
      devices: flags.devices,
      batch: flags.batch,
      steps: flags.steps ?? DEFAULT_STEPS,
      warmup: flags.warmup,
      seed: flags.seed,
      shards: flags.shards,
      gradSync: flags.gradSync,
      train: trainOf(flags),
      microBatches: flags.microBatches,
      stages: flags.stages,
      cuts,
      schedule: flags.schedule,
      tensor: flags.tensor,
      data: flags.data,
      pipeline: flags.pipeline,
      keepWhole: flags.keepWhole,
    });
  } catch (e) {
    throw e instanceof PlanFieldError ? new UserError(e.message) : e;
  }
}

/** The request's minimum timed duration: --min-time, else DEFAULT_MIN_TIME_S unless --steps fixes the count. */
function minTimedOf(flags: Pick<ProfileFlags, 'steps' | 'minTime'>): { minTimedMs?: number } {
  const s = flags.minTime ?? (flags.steps === undefined ? DEFAULT_MIN_TIME_S : 0);
  return s > 0 ? { minTimedMs: s * 1000 } : {};
}

async function profileCommand(model: string, flags: ProfileFlags): Promise<void> {
  const { modelPath, label } = await resolveModel(model);
  const out = resolve(flags.out ?? join('runs', `${basename(label, '.onnx')}-${flags.mode}.parallax.json`));
  // Checked before the run, which may take minutes, rather than when its result is written.
  await checkWritable(out, flags.out ? '--out' : 'trace file');
  if (flags.report) await checkWritable(resolve(flags.report), '--report');
  const plan: ProfileRequest = {
    modelPath,
    modelLabel: label,
    plan: planOf({ ...flags, mode: flags.mode }),
    capture: true,
    opLevel: flags.opLevel,
    ...(flags.captureCheck ? { captureCheck: true } : {}),
    ...(flags.probe === false ? { probe: false } : {}),
    adviceOnPoorQuality: flags.adviceOnPoorQuality,
    baseline: flags.baseline,
    ...minTimedOf(flags),
    ...(flags.batchDim ? { batchDim: flags.batchDim } : {}),
    ...(Object.keys(flags.dim).length ? { dims: flags.dim } : {}),
    ...(Object.keys(flags.inputShape).length ? { inputShapes: flags.inputShape } : {}),
    ...(Object.keys(flags.value).length ? { values: flags.value } : {}),
    ...(flags.inputs ? { inputsFile: resolve(flags.inputs) } : {}),
    ...(flags.deviceMemory !== undefined ? { deviceMemory: flags.deviceMemory } : {}),
    outPath: out,
  };
  const progress = progressReporter(Boolean(flags.json));
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    const result = await profile(plan, { onProgress: (p) => progress.update(p), signal: abort.signal });
    progress.stop();
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ ...result.summary, findings: result.findings, tracePath: result.tracePath }, null, 2)}\n`);
    } else {
      const partition = result.planText ? `${result.planText}\n\n` : '';
      print(`${partition}${formatSummary(result.summary, result.findings)}\n\ntrace written to ${result.tracePath}\n`);
    }
    if (flags.report && result.tracePath) {
      await writeHtmlReport(result.tracePath, resolve(flags.report), undefined, { title: `${label} · ${flags.mode} parallel` });
      if (!flags.json) print(`report written to ${resolve(flags.report)}\n`);
    }
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
  }
}

/** Flags of `plan`: the profile flags it shares, and those of a tensor plan. */
type PlanFlags = ProfileFlags & { stages: number; microBatches: number; deviceMemory?: number };

async function planCommand(model: string, flags: PlanFlags): Promise<void> {
  if (flags.mode !== 'tensor') {
    if (flags.tensor !== undefined && flags.mode !== 'hybrid') throw new UserError('--tensor applies to --mode tensor or hybrid only');
    if (flags.deviceMemory !== undefined) throw new UserError('--device-memory applies to --mode tensor only (its memory table compares the data, pipeline, tensor and data × tensor plans)');
  }
  const { modelPath, label } = await resolveModel(model);
  if (flags.mode === 'tensor') {
    await tensorPlanCommand(modelPath, label, {
      ...(flags.devices !== undefined ? { devices: flags.devices } : {}),
      ...(flags.tensor !== undefined ? { tensor: flags.tensor } : {}),
      ...(flags.keepWhole !== undefined ? { keepWhole: flags.keepWhole } : {}),
      ...(flags.deviceMemory !== undefined ? { deviceMemory: flags.deviceMemory } : {}),
      batch: flags.batch,
      microBatches: flags.microBatches,
      dim: flags.dim,
      ...(flags.json ? { json: true } : {}),
    });
    return;
  }
  const mode = flags.mode;
  const plan: ProfileRequest = {
    modelPath,
    modelLabel: label,
    // `plan` of a data plan shows its program; the pipeline-only defaults do not apply to it.
    plan: planOf({
      ...flags,
      devices: flags.devices ?? `cpu:${flags.stages}`,
      steps: 1,
      warmup: 1,
      seed: 0,
      mode,
      ...(mode === 'data' || (mode === 'hybrid' && flags.pipeline === undefined) ? { stages: undefined, microBatches: undefined } : {}),
      ...(mode === 'hybrid' ? { stages: undefined } : {}),
    } as ProfileFlags & { mode: ParallelMode }),
    capture: true,
    opLevel: true,
    baseline: false,
    outPath: null,
    dryRun: true,
    ...(flags.batchDim ? { batchDim: flags.batchDim } : {}),
    ...(Object.keys(flags.dim).length ? { dims: flags.dim } : {}),
    ...(Object.keys(flags.inputShape).length ? { inputShapes: flags.inputShape } : {}),
    ...(Object.keys(flags.value).length ? { values: flags.value } : {}),
  };
  const result = await profile(plan);
  if (flags.json) process.stdout.write(`${JSON.stringify(result.planInfo, null, 2)}\n`);
  else print(`${result.planText ?? ''}\n`);
}

async function devicesCommand(flags: { json?: boolean }): Promise<void> {
  const d = await discoverDevices();
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
    return;
  }
  print(`${d.host.cpuModel} · ${d.host.logicalCores} logical cores · ${(d.host.memoryBytes / 2 ** 30).toFixed(1)} GiB · ${d.host.os}\n`);
  print(`onnxruntime-node ${d.onnxruntimeVersion}\n\n`);
  print(
    `${table(
      ['kind', 'available', 'provider', 'detail'],
      d.kinds.map((k) => [k.kind, k.available ? 'yes' : 'no', k.provider, k.detail]),
      4,
    )}\n`,
  );
}

/** The shape of a finding as a run stores it (the trace's `findings` are read as plain JSON). */
function isStoredFinding(x: unknown): boolean {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as Record<string, unknown>;
  const change = o['change'] as Record<string, unknown> | undefined;
  return typeof o['id'] === 'string' && typeof o['severity'] === 'string' && typeof o['message'] === 'string' && typeof change === 'object' && change !== null && typeof change['params'] === 'object' && change['params'] !== null;
}

async function reportCommand(file: string, flags: { json?: boolean; html?: string; compare?: string }): Promise<void> {
  if (flags.html) {
    await writeHtmlReport(file, resolve(flags.html), flags.compare);
    if (!flags.json) print(`report written to ${resolve(flags.html)}\n`);
  }
  let trace = await readTrace(file);
  // Summaries and findings are derived: recompute them from the spans with this version's
  // analyses rather than trusting what an older version stored.
  trace = deriveIdle(trace);
  const summary = summarize(trace);
  const analysis = analyse(trace);
  // Findings a run of this version stored were checked against the model and plan when it
  // was recorded (cut points, fixed batches, device threads): those are kept. Recomputed
  // ones cannot be checked here (the trace does not carry the model's input flags), so they
  // are used for traces of other versions or without stored findings, and say so.
  const kept = trace.meta.tool.version === TOOL_VERSION && Array.isArray(trace.findings) && trace.findings.every(isStoredFinding) ? (trace.findings as Finding[]) : null;
  const stored = kept !== null;
  const f: Finding[] = kept ?? runFindings(trace, summary, { analysis });
  const unchecked = !stored && trace.meta.mode !== 'imported' && f.some((x) => Object.keys(x.change.params).length > 0);
  const uncheckedNote = unchecked
    ? `Findings recomputed from the spans of a trace written by ${trace.meta.tool.name} ${trace.meta.tool.version}: their suggestions were not checked against the model; profile again to check them.`
    : null;
  if (flags.json) {
    const { criticalPath, ops, breakdown, pipeline, dataParallel, scaling } = analysis;
    process.stdout.write(
      `${JSON.stringify({ ...summary, findings: f, ...(uncheckedNote ? { findingsNote: uncheckedNote } : {}), analysis: { criticalPath: { ...criticalPath, representative: undefined }, ops, perStep: breakdown, pipeline, dataParallel, scaling } }, null, 2)}\n`,
    );
  } else {
    print(`${formatSummary(summary, f)}${uncheckedNote ? `\n${uncheckedNote}` : ''}\n\n${formatAnalysis(summary, analysis)}\n`);
  }
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('parallax')
    .description('Profile ONNX models run in parallel across local devices and explain where the time goes.')
    .version(TOOL_VERSION)
    // Set before the subcommands are added, which inherit both: errors come back as
    // exceptions (so main() picks the exit code) and print as one `parallax:` line.
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(escapeTerminal(s.startsWith('error: ') ? `parallax: ${s.slice(7)}` : s, { keepLines: true })),
    });

  program
    .command('devices')
    .description('list the devices this machine has (cpu workers, webgpu, cuda)')
    .option('--json', 'print JSON')
    .action((flags: { json?: boolean }) => devicesCommand(flags));

  program
    .command('profile')
    .description('run a model in parallel across devices and record its timeline')
    .argument('<model>', 'an .onnx file, or "demo" for the bundled demo model')
    .addOption(new Option('--mode <mode>', 'parallel mode').choices([...PARALLEL_MODES]).default('data'))
    .option('--devices <spec>', 'devices, e.g. cpu:2 or cpu:1,webgpu:1', deviceSpec, 'cpu:2')
    .option('--batch <n>', 'global batch size (split across devices)', positiveInt('--batch', MAX_BATCH), 64)
    .option('--steps <n>', `measured steps (default ${DEFAULT_STEPS}, more where they would take under --min-time)`, positiveInt('--steps'))
    .option('--min-time <s>', `inference: time steps for at least this long, more than --steps where those are short (default ${DEFAULT_MIN_TIME_S} without --steps, else 0)`, nonNegativeNumber('--min-time'))
    .option('--warmup <n>', 'unrecorded warm-up steps', nonNegativeInt('--warmup'), 3)
    .option('--seed <n>', 'seed for synthesized inputs', nonNegativeInt('--seed'), 0)
    .option('--out <file>', 'trace file to write (default runs/<model>-<mode>.parallax.json)')
    .option('--json', 'print the summary as JSON on stdout, no progress display')
    .option('--no-baseline', 'skip the one-device baseline (no speedup, no numerical check)')
    .option('--no-op-level', "skip ONNX Runtime's per-operator profile")
    .option('--no-probe', 'skip the second operating point (a pipeline at another micro-batch count, a data plan at twice the batch) that predictions for other counts and batches rest on')
    .option('--capture-check', 'also run the timed steps with capture off, interleaved, and report what capture costs (inference only)')
    .addOption(
      new Option('--advice-on-poor-quality <policy>', 'when the machine was busy: hold timing findings back, or show them with a caveat')
        .choices(['hold', 'show'])
        .default('hold'),
    )
    .option('--batch-dim <name>', 'name of the batch dimension, when it cannot be found')
    .option('--dim <name=value>', 'value of a symbolic dimension (repeatable)', collectDim, {})
    .option('--input-shape <name=d0,d1,…>', 'full shape of an input (repeatable)', collectShape, {})
    .option('--value <name=v>', 'value of an input shared by every row, e.g. sr=16000 (repeatable)', collectValue, {})
    .option('--inputs <file>', 'inputs from a .npy or .json file instead of random data')
    .option('--report <file.html>', 'also write a self-contained HTML timeline report')
    .option('--shards <rows>', 'data: rows per device, e.g. 48,16 (default: as even as possible)', parseShards)
    .option('--grad-sync', 'data, inference: all-reduce a parameter-sized buffer of zeros each step (synthetic gradients; --train syncs real ones)')
    .option('--train', 'data, pipeline: train instead of running inference (forward, backward, gradient all-reduce or accumulation over micro-batches, optimizer; labels from a fixed random teacher)')
    .addOption(new Option('--loss <kind>', `with --train: loss (default ${TRAIN_DEFAULTS.loss})`).choices([...TRAIN_LOSSES]))
    .addOption(new Option('--optimizer <kind>', `with --train: optimizer (default ${TRAIN_DEFAULTS.optimizer})`).choices([...TRAIN_OPTIMIZERS]))
    .option('--lr <rate>', `with --train: learning rate (default ${TRAIN_DEFAULTS.lr})`, positiveNumber('--lr'))
    .option('--bucket-mb <mb>', `with --train: gradient bucket size in MB (default ${TRAIN_DEFAULTS.bucketMb}, as PyTorch DDP)`, positiveNumber('--bucket-mb'))
    .addOption(new Option('--grad-dtype <dtype>', 'with --train: gradients on the wire of the all-reduce (default float32; int8 with error feedback)').choices([...GRAD_DTYPES]))
    .option('--sync-every <k>', 'with --train: local SGD, each device steps on its own gradients and parameters are averaged every k steps (default 1)', positiveInt('--sync-every'))
    .option('--labels <file.npy>', 'with --train: labels of the global batch (default: from a fixed random teacher)')
    .option('--freeze <pattern>', 'with --train: leave parameters whose names match unchanged: a glob (layers.0.*) or /regex/ (repeatable)', collectList)
    .option('--micro-batches <n>', 'pipeline: micro-batches per step (default 4; must divide --batch)', positiveInt('--micro-batches'))
    .option('--stages <n>', 'pipeline: number of stages (one per device)', positiveInt('--stages'))
    .option('--tensor <n>', 'tensor: devices each weight is split over (must equal the count of --devices); hybrid: devices per replica', positiveInt('--tensor'))
    .option('--keep-whole <pattern>', 'tensor plans: keep these layers whole instead of splitting them: a node name, a scope (/layers.5/mlp) or a glob (repeatable)', collectList)
    .option('--data <n>', 'hybrid: replicas the batch is split over (--data × --tensor or --data × --pipeline devices)', positiveInt('--data'))
    .option('--pipeline <n>', 'hybrid: stages of each replica\'s pipeline', positiveInt('--pipeline'))
    .option('--cuts <nodes>', 'pipeline: cut after these nodes (comma-separated names) instead of balancing')
    .addOption(new Option('--schedule <name>', 'pipeline schedule: gpipe (default), or 1f1b with --train').choices([...PIPELINE_SCHEDULES]))
    .option('--device-memory <size>', 'memory per device, e.g. 16GiB: a finding says when the plan does not fit and names the plans that do', parseDeviceMemory)
    .action((model: string, flags: ProfileFlags) => profileCommand(model, flags));

  program
    .command('plan')
    .description('compile a plan and print the program every device would run (a pipeline calibrates and partitions first), without running it')
    .argument('<model>', 'an .onnx file, or "demo" for the bundled demo model')
    .addOption(new Option('--mode <mode>', 'parallel mode').choices([...PARALLEL_MODES]).default('pipeline'))
    .option('--stages <n>', 'number of stages', positiveInt('--stages'), 2)
    .option('--devices <spec>', 'devices the stages would run on (default cpu:<stages>)', deviceSpec)
    .option('--batch <n>', 'global batch size', positiveInt('--batch', MAX_BATCH), 64)
    .option('--micro-batches <n>', 'micro-batches per step (sets the calibration size)', positiveInt('--micro-batches'), 4)
    .option('--cuts <nodes>', 'cut after these nodes instead of balancing')
    .addOption(new Option('--schedule <name>', 'pipeline schedule: gpipe (default), or 1f1b with --train').choices([...PIPELINE_SCHEDULES]))
    .option('--train', 'show the training program (forward, backward and optimizer per device) instead of inference')
    .option('--batch-dim <name>', 'name of the batch dimension, when it cannot be found')
    .option('--dim <name=value>', 'value of a symbolic dimension (repeatable)', collectDim, {})
    .option('--input-shape <name=d0,d1,…>', 'full shape of an input (repeatable)', collectShape, {})
    .option('--value <name=v>', 'value of an input shared by every row, e.g. sr=16000 (repeatable)', collectValue, {})
    .option('--tensor <n>', 'tensor: devices to split over when planning a size that is not run (default: the count of --devices)', positiveInt('--tensor'))
    .option('--keep-whole <pattern>', 'tensor: keep these layers whole instead of splitting them: a node name, a scope (/layers.5/mlp) or a glob (repeatable)', collectList)
    .option('--data <n>', 'hybrid: replicas the batch is split over (--data × --tensor or --data × --pipeline devices)', positiveInt('--data'))
    .option('--pipeline <n>', 'hybrid: stages of each replica\'s pipeline', positiveInt('--pipeline'))
    .option('--device-memory <size>', 'tensor: memory per device to check the plans against, e.g. 16GiB', parseDeviceMemory)
    .option('--json', 'print the partition and the program (tensor: the shard map and memory table) as JSON')
    .action((model: string, flags: PlanFlags) => planCommand(model, flags));

  program
    .command('report')
    .description('print the breakdown and findings of a recorded trace')
    .argument('<trace>', 'a .parallax.json file')
    .option('--json', 'print JSON')
    .option('--html <file.html>', 'also write a self-contained HTML timeline report')
    .option('--compare <trace>', 'with --html: a second run shown above the first on aligned axes')
    .action((file: string, flags: { json?: boolean; html?: string; compare?: string }) => reportCommand(file, flags));

  registerImportExport(program);
  registerProject(program);
  registerSweep(program, { deviceSpec, positiveInt, nonNegativeInt, collectDim, collectShape, collectValue, resolveModel });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) {
      return ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' ? 0 : 2;
    }
    if (e instanceof ProfileCancelled) {
      process.stderr.write('parallax: cancelled\n');
      return 130;
    }
    // Messages quote names from the user's files: escape them, and keep to one line.
    if (isUserError(e)) {
      process.stderr.write(`parallax: ${escapeTerminal((e as Error).message)}\n`);
      return 2;
    }
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`parallax: internal error: ${escapeTerminal(message, { keepLines: true })}\n`);
    return 1;
  }
}
