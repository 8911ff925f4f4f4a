/**
 * The runner: turns a {@link ProfileRequest} into a trace. It runs in its own process (never
 * in the extension host or the CLI's process, so a native crash in ONNX Runtime takes only
 * the runner down) and owns one worker thread per device.
 *
 *   load model → resolve inputs → plan devices → prepare the mode (a pipeline calibrates and
 *   partitions) → compile the plan to a program → one-device baseline (a data program on
 *   the first device) → execute the program → numerical check → trace (spans merged on one
 *   clock, idle derived) → summary and findings → write
 */
import { join } from 'node:path';
import * as os from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { UserError } from '../../common/errors';
import type { ProfileRequest, SharedInput } from '../protocol';
import { assertNever, type Plan } from '../../profiler/plan';
import { formatProgram, type Program } from '../../profiler/program';
import { writeStageModels } from '../pipeline/stage-model';
import { formatPartition } from '../pipeline/plan-format';
import type { Partition } from '../pipeline/partition';
import { loadModel, type ModelIR } from '../onnx/model';
import { resolveInputShapes, synthesizeInputs, loadInputs, type ModelInput, type ResolvedInput } from '../inputs';
import { batchNames, checkUnbatchedOutputs, outputBatchAxes } from '../batch-axes';
import { probeOutputAxes } from './probe';
import { discoverDevices, parseDeviceSpec, planDevices, type DeviceInfo } from '../device/discovery';
import { viewOf } from '../tensor-util';
import type { CaptureSettings, MeasurementMeta, Trace, TraceMeta } from '../../profiler/trace-format';
import { loadSampler, type OtherLoad } from '../device/schedstat';
import { deriveIdle } from '../../profiler/idle';
import { summarize, type ProfileSummary } from '../../profiler/summary';
import { findings as runFindings } from '../../profiler/findings';
import { spread } from '../../profiler/stats';
import { writeTrace } from '../../profiler/trace-io';
import { compile, resolveShards, type CompileContext, type Prepared } from '../compile';
import { compileData } from '../compile/data';
import { CancelledError, ProgramRun, type Capture, type DoneMessage, type RunnerHooks } from './workers';
import { checkPipelinePlan, preparePartition } from './calibrate';
import { checkFindings } from './check-findings';
import { buildTrace, compareOutputs, mergeOutputs } from './trace';
import { prepareTraining, trainingResults, writeTrainingSegments, type TrainingSetup } from './train-setup';
import { compileTrainData } from '../compile/train-data';

export { CancelledError, type RunnerHooks } from './workers';
export { compareOutputs } from './trace';
export { checkShards } from '../compile';

export interface RunnerResult {
  /** Null for a dry run. */
  trace: Trace | null;
  summary: ProfileSummary | null;
  /** The program (and a pipeline's partition) as text. */
  planText: string;
  planInfo: PlanInfo;
}

/** What `parallax plan --json` reports: a pipeline's partition fields, and the program. */
export interface PlanInfo {
  stages?: { index: number; nodes: number; firstNode: string; lastNode: string; costUs: number; parameters: number; cutBytesOutPerRow: number | null }[];
  /** max / mean stage cost. */
  balance?: number;
  cuts?: string[];
  costSource?: string;
  microBatchRows?: number;
  program: Program;
}

/** The model, its inputs in shared memory and the devices, checked against the plan. */
interface Loaded {
  ir: ModelIR;
  resolved: ResolvedInput[];
  inputs: SharedInput[];
  devices: DeviceInfo[];
  ortVersion: string;
  /** What device discovery found (once per run: it may probe WebGPU in a child process). */
  discovered: Awaited<ReturnType<typeof discoverDevices>>;
  dimValues: Record<string, number>;
  compile: CompileContext;
  /** A training plan's step models, labels and initial weights (null for inference). */
  training: TrainingSetup | null;
}

/** Row-splits of a run: devices, and a pipeline's micro-batches. */
function partsOf(plan: Plan, devices: number): number {
  return Math.max(devices, plan.mode === 'pipeline' ? plan.microBatches : 1);
}

/**
 * Every output's batch axis: from names and declared shapes where they tell, measured where
 * they do not. Outputs without one are refused in runs that split the batch.
 */
async function resolveOutputAxes(req: ProfileRequest, ir: ModelIR, resolved: readonly ResolvedInput[], tensors: readonly ModelInput[], parts: number): Promise<Map<string, number | null>> {
  const declared = outputBatchAxes(ir, resolved);
  const open = [...declared].filter(([, a]) => a === undefined).map(([n]) => n);
  const measured = open.length > 0 ? await probeOutputAxes(req.modelPath, tensors, open, req.modelLabel) : new Map<string, number | null>();
  const axes = new Map<string, number | null>();
  for (const [name, a] of declared) axes.set(name, a === undefined ? measured.get(name)! : a);
  checkUnbatchedOutputs(axes, parts, req.modelLabel);
  return axes;
}

async function load(req: ProfileRequest): Promise<Loaded> {
  const plan = req.plan;
  const ir = await loadModel(req.modelPath);
  const resolved = resolveInputShapes(ir, {
    batch: plan.batch,
    ...(req.batchDim !== undefined ? { batchDim: req.batchDim } : {}),
    ...(req.dims !== undefined ? { dims: req.dims } : {}),
    ...(req.inputShapes !== undefined ? { inputShapes: req.inputShapes } : {}),
    ...(req.values !== undefined ? { values: req.values } : {}),
  });
  let tensors = req.inputsFile ? await loadInputs(req.inputsFile, resolved, req.values) : synthesizeInputs(resolved, plan.seed, req.values);
  const discovered = await discoverDevices();
  const devices = planDevices(parseDeviceSpec(plan.devices), discovered);
  const parts = partsOf(plan, devices.length);
  const fixed = resolved.find((r) => r.batchFixed);
  if (fixed && parts > 1) {
    throw new UserError(
      `${req.modelLabel}: input "${fixed.name}" has a fixed batch of ${fixed.dims[fixed.batchAxis ?? 0]}, so it cannot be split across devices or micro-batches; re-export the model with a dynamic batch axis or use one device`,
    );
  }
  const outputAxes = await resolveOutputAxes(req, ir, resolved, tensors, parts);
  const batchName = [...batchNames(resolved)][0] ?? null;
  // Built before any worker starts: a model the gradient rules cannot differentiate is
  // refused here, with every operator and node at fault in one line.
  let training: TrainingSetup | null = null;
  if (plan.mode === 'data' && plan.train) {
    // Symbolic sizes other than the batch, as resolved (a CNN's spatial sizes from
    // --input-shape): convolution gradients need them fixed.
    const fixedDims: Record<string, number> = { ...(req.dims ?? {}) };
    for (const r of resolved) {
      r.modelDims?.forEach((d, k) => {
        if (typeof d === 'string' && k !== r.batchAxis && r.dims[k] !== undefined) fixedDims[d] = r.dims[k];
      });
    }
    const labelAxis = outputAxes.get(ir.outputs[0]?.name ?? '') ?? 0;
    training = await prepareTraining(req.modelPath, req.modelLabel, plan.train, tensors, labelAxis, withoutBatch(fixedDims, batchName));
    tensors = [...tensors, training.labels];
  }
  // The global batch lives in shared memory; every device copies its rows from there.
  const inputs: SharedInput[] = tensors.map((t) => {
    const sab = new SharedArrayBuffer(t.data.byteLength);
    (viewOf(t.dtype, sab) as unknown as { set(a: ArrayLike<number>): void }).set(t.data as unknown as ArrayLike<number>);
    return { name: t.name, dtype: t.dtype, dims: t.dims, batchAxis: t.batchAxis, data: sab };
  });
  const dimValues: Record<string, number> = { ...(req.dims ?? {}) };
  if (batchName) dimValues[batchName] = plan.batch;
  const compileCtx: CompileContext = {
    inputs: inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: i.dims, batchAxis: i.batchAxis })),
    // Outputs without a batch axis (one-part runs only) are not gathered.
    outputs: ir.outputs.flatMap((o) => {
      const axis = outputAxes.get(o.name);
      return axis === null || axis === undefined ? [] : [{ name: o.name, batchAxis: axis }];
    }),
    parameterCount: ir.parameterCount,
    devices: devices.length,
    nodeNames: ir.nodes.map((n) => n.name),
    ...(training ? { training: training.models.context } : {}),
  };
  return { ir, resolved, inputs, devices, ortVersion: discovered.onnxruntimeVersion, discovered, dimValues, compile: compileCtx, training };
}

/** Symbolic dimension values without the batch's (the gradient models keep the batch free). */
function withoutBatch(dims: Record<string, number>, batchName: string | null): Record<string, number> {
  const out = { ...dims };
  if (batchName) delete out[batchName];
  return out;
}

/** A pipeline partition as `plan --json` reports it. */
function partitionInfo(partition: Partition, microRows: number): Omit<PlanInfo, 'program'> {
  return {
    stages: partition.stages.map((st) => ({
      index: st.index,
      nodes: st.nodeIndices.length,
      firstNode: st.nodeNames.first,
      lastNode: st.nodeNames.last,
      costUs: st.costUs,
      parameters: st.parameters,
      cutBytesOutPerRow: st.cutBytesOut,
    })),
    balance: partition.balance,
    cuts: partition.cuts,
    costSource: partition.costSource,
    microBatchRows: microRows,
  };
}

/** A mode's preparation, and the plan as it will run (with what was resolved). */
interface Preparation {
  prepared: Prepared;
  plan: Plan;
  /** Text and data about the preparation (a pipeline's partition). */
  text: string;
  info: Omit<PlanInfo, 'program'>;
}

async function prepare(req: ProfileRequest, l: Loaded, profileDir: string, hooks: RunnerHooks): Promise<Preparation> {
  const plan = req.plan;
  switch (plan.mode) {
    case 'data': {
      const shards = resolveShards(plan, l.devices.length);
      return { prepared: { mode: 'data' }, plan: { ...plan, shards }, text: '', info: {} };
    }
    case 'pipeline': {
      checkPipelinePlan(plan, l.ir, l.devices.length, req.modelLabel);
      const cal = { modelPath: req.modelPath, device: l.devices[0], inputs: l.inputs, compile: l.compile, profileDir };
      const { partition, calibration } = await preparePartition(plan, l.ir, cal, l.dimValues, l.devices.length, hooks, req.dryRun === true);
      const recorded: Plan = {
        ...plan,
        stages: l.devices.length,
        cuts: partition.cuts,
        partition: {
          stageNodes: partition.stages.map((st) => st.nodeIndices.map((i) => l.ir.nodes[i].name)),
          stageCostUs: partition.stages.map((st) => st.computeUs),
          balance: partition.balance,
        },
        calibration,
      };
      const microRows = plan.batch / plan.microBatches;
      return { prepared: { mode: 'pipeline', partition }, plan: recorded, text: formatPartition(partition, l.ir), info: partitionInfo(partition, microRows) };
    }
    default:
      return assertNever(plan, 'plan');
  }
}

/** Model files of a program's segments (stage models are written into `workDir`). */
function materialise(program: Program, prepared: Prepared, modelPath: string, workDir: string, training: TrainingSetup | null): Record<number, string> {
  const paths: Record<number, string> = training ? writeTrainingSegments(program, training.models, join(workDir, 'train')) : {};
  const stagePaths = prepared.mode === 'pipeline' ? writeStageModels(modelPath, prepared.partition, join(workDir, 'stages')) : [];
  for (const seg of program.segments) {
    switch (seg.kind) {
      case 'whole':
        paths[seg.id] = modelPath;
        break;
      case 'stage':
        paths[seg.id] = stagePaths[seg.stage]!;
        break;
      case 'train-forward':
      case 'train-backward':
      case 'optimizer':
        if (paths[seg.id] === undefined) throw new Error(`no step model for segment ${seg.label}`);
        break;
      default:
        assertNever(seg, 'segment');
    }
  }
  return paths;
}

/** Operator-profiled steps after the timed ones, when operator detail is asked for. */
const PROFILED_STEPS = 3;
/** Timed steps alternate between the baseline and the parallel run in up to this many blocks each. */
const MAX_BLOCKS = 4;

/** Block sizes: `steps` split into at most {@link MAX_BLOCKS} nearly equal blocks. */
function blocksOf(steps: number): number[] {
  const k = Math.max(1, Math.min(MAX_BLOCKS, steps));
  return Array.from({ length: k }, (_, i) => Math.floor(steps / k) + (i < steps % k ? 1 : 0));
}

/** The one-device baseline program: the whole batch as a data program on the first device's configuration. */
function baselineProgram(req: ProfileRequest, l: Loaded): Program {
  const plan = req.plan;
  if (plan.mode === 'data' && plan.train && l.compile.training) {
    const one = { mode: 'data' as const, devices: l.devices[0]!.id, batch: plan.batch, steps: plan.steps, warmup: plan.warmup, seed: plan.seed, train: plan.train };
    return compileTrainData(one, { ...l.compile, devices: 1, training: l.compile.training });
  }
  return compileData({ mode: 'data', devices: l.devices[0]!.id, batch: plan.batch, steps: plan.steps, warmup: plan.warmup, seed: plan.seed }, { ...l.compile, devices: 1 });
}

/** What the runner measured: the parallel run's results and, with a baseline, its results. */
interface Runs {
  done: DoneMessage[];
  /** Other processes' load over the timed steps, null where it cannot be measured. */
  load: OtherLoad | null;
  baseline: { program: Program; done: DoneMessage[] } | null;
}

/**
 * Runs the program and, when asked, the one-device baseline with the same capture settings,
 * their timed steps alternating in blocks (P B B P P B …) so both see the same machine; the
 * operator-profiled steps (parallel run only) come after every timed step.
 */
async function measure(req: ProfileRequest, l: Loaded, program: Program, segmentPaths: Record<number, string>, profileDir: string, hooks: RunnerHooks): Promise<Runs> {
  const plan = req.plan;
  const capture: Capture = { spans: req.capture, profiledSteps: req.capture && req.opLevel ? PROFILED_STEPS : 0 };
  const common = { inputs: l.inputs, steps: plan.steps, warmup: plan.warmup, profileDir, ...(l.training ? { initialWeights: l.training.initial } : {}) };
  hooks.progress({ phase: 'warmup', done: 0, total: l.devices.length, message: `starting ${l.devices.length} device worker(s)` });
  const par = await ProgramRun.start(program, { ...common, devices: l.devices, segmentPaths, capture, phase: 'steps', message: 'measuring' }, hooks);
  let base: ProgramRun | null = null;
  try {
    if (req.baseline) {
      const bp = baselineProgram(req, l);
      // The same capture for the timed steps; operator detail is the parallel run's only.
      const bc: Capture = { ...capture, profiledSteps: 0 };
      // A training baseline runs the same step models; inference's is the whole model.
      const baseSegments = l.training ? segmentPaths : { 0: req.modelPath };
      base = await ProgramRun.start(bp, { ...common, devices: [l.devices[0]!], segmentPaths: baseSegments, capture: bc, phase: 'baseline', message: 'one-device baseline' }, hooks);
    }
    await par.warmup();
    await base?.warmup();
    const sampler = loadSampler();
    sampler?.start();
    for (const [b, k] of blocksOf(plan.steps).entries()) {
      const order = b % 2 === 0 ? [par, base] : [base, par];
      for (const r of order) await r?.timed(k);
    }
    const load = sampler?.stop() ?? null;
    const baseDone = base ? await base.finish() : null;
    const done = await par.finish();
    return { done, load, baseline: base && baseDone ? { program: base.program, done: baseDone } : null };
  } finally {
    await par.close();
    await base?.close();
  }
}

/** The baseline's record in the trace, its reference outputs and their description. */
function baselineRecord(req: ProfileRequest, l: Loaded, b: NonNullable<Runs['baseline']>, capture: CaptureSettings) {
  const d = l.devices[0]!;
  const done = b.done[0]!;
  const times = Array.from(done.stepEnd, (e, i) => e - done.stepStart[i]!);
  const meta: NonNullable<TraceMeta['baseline']> = {
    description: `one device (${d.id} configuration, ${d.intraOpNumThreads} thread${d.intraOpNumThreads === 1 ? '' : 's'}) running the whole batch of ${req.plan.batch}`,
    stepTimeUs: spread(times),
    stepTimesUs: times,
    schedule: 'interleaved',
    capture: { ...capture, profiledSteps: 0 },
  };
  return { meta, reference: mergeOutputs(b.program, b.done), referenceName: `one-device run (${d.id} configuration, same inputs)` };
}

/** Runs a profile request to completion and returns the trace and its summary. */
export async function runProfile(req: ProfileRequest, hooks: RunnerHooks): Promise<RunnerResult> {
  const check = (): void => {
    if (hooks.signal?.aborted) throw new CancelledError();
  };
  hooks.progress({ phase: 'load', done: 0, total: 1, message: 'loading model' });
  const l = await load(req);
  check();
  const profileDir = mkdtempSync(join(os.tmpdir(), 'parallax-ortprof-'));
  try {
    const prep = await prepare(req, l, profileDir, hooks);
    const program = compile(prep.plan, prep.prepared, l.compile);
    // A dry run (`parallax plan`) shows the program too; a profile shows the partition only
    // (the program is in the trace).
    const programText = formatProgram(program, l.devices.map((d) => d.id));
    const planText = req.dryRun ? [prep.text, programText].filter((t) => t !== '').join('\n\n') : prep.text;
    const planInfo: PlanInfo = { ...prep.info, program };
    if (req.dryRun) return { trace: null, summary: null, planText, planInfo };
    check();
    const runs = await measure(req, l, program, materialise(program, prep.prepared, req.modelPath, profileDir, l.training), profileDir, hooks);
    const capture: CaptureSettings = { spans: req.capture, opProfilerOnTimedSteps: false, profiledSteps: req.capture && req.opLevel ? PROFILED_STEPS : 0 };
    const baseline = runs.baseline ? baselineRecord(req, l, runs.baseline, capture) : null;
    const done = runs.done;
    const measurement: MeasurementMeta | undefined = runs.load ? { ...runs.load, threads: done.map((d) => d.schedThreads) } : undefined;
    check();
    hooks.progress({ phase: 'analyse', done: 0, total: 1, message: 'building the trace' });
    const plan = req.plan;
    const trained =
      plan.mode === 'data' && plan.train && l.training
        ? trainingResults(plan.train, l.training.models, program, done, runs.baseline ? { ...runs.baseline, reference: `one-device training (${l.devices[0]!.id} configuration, same global batch, labels and initial weights)` } : null, Math.max(1, plan.warmup) + plan.steps, l.training.frozen)
        : null;
    const numericalCheck = trained ? trained.check : baseline ? compareOutputs(mergeOutputs(program, done), baseline.reference, baseline.referenceName) : undefined;
    let trace = buildTrace({ request: req, plan: prep.plan, program, ir: l.ir, ortVersion: l.ortVersion, devices: l.devices, done, inputs: l.inputs, numericalCheck, ...(trained ? { training: trained.meta } : {}), baseline: baseline?.meta, capture, measurement });
    trace = deriveIdle(trace);
    const summary = summarize(trace);
    trace.summary = summary;
    trace.findings = checkFindings(runFindings(trace, summary), { ir: l.ir, request: req, resolved: l.resolved, devices: l.devices, discovered: l.discovered, trace });
    if (req.outPath) {
      hooks.progress({ phase: 'write', done: 0, total: 1, message: `writing ${req.outPath}` });
      await writeTrace(req.outPath, trace);
    }
    return { trace, summary, planText, planInfo };
  } finally {
    rmSync(profileDir, { recursive: true, force: true });
  }
}
