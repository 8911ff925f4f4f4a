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
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { formatDuration } from '../../profiler/units';
import { UserError } from '../../common/errors';
import type { ProfileRequest, SharedInput } from '../protocol';
import { assertNever, type HybridTensorPlan, type PipelinePlan, type Plan, type TrainPlan } from '../../profiler/plan';
import { formatProgram, type Program } from '../../profiler/program';
import { writeStageModels } from '../pipeline/stage-model';
import { formatPartition } from '../pipeline/plan-format';
import type { Partition } from '../pipeline/partition';
import { loadModel, type ModelIR } from '../onnx/model';
import { resolveInputShapes, synthesizeInputs, loadInputs, type ModelInput, type ResolvedInput } from '../inputs';
import { batchNames, checkUnbatchedOutputs, outputBatchAxes } from '../batch-axes';
import { probeOutputAxes } from './probe';
import { discoverDevices, parseDeviceSpec, planDevices, type DeviceInfo } from '../device/discovery';
import { tileRows, viewOf } from '../tensor-util';
import type { CaptureSettings, MeasurementMeta, Trace, TraceMeta } from '../../profiler/trace-format';
import { loadSampler, type OtherLoad } from '../device/schedstat';
import { deriveIdle } from '../../profiler/idle';
import { summarize, type ProfileSummary } from '../../profiler/summary';
import { findings as runFindings } from '../../profiler/findings';
import { analyse } from '../../profiler/analysis';
import { spread } from '../../profiler/stats';
import { writeTrace } from '../../profiler/trace-io';
import { compile, resolveShards, type CompileContext, type Prepared } from '../compile';
import { compileData } from '../compile/data';
import { CancelledError, ProgramRun, WARMUP_MIN_MS, WARMUP_SETTLE_MAX_MS, WARMUP_SETTLE_TOL, WARMUP_SETTLED_FAULTS, WARMUP_WINDOW_MS, type Capture, type DoneMessage, type RunnerHooks } from './workers';
import { checkPipelinePlan, partitionFromCosts, preparePartition } from './calibrate';
import { checkFindings } from './check-findings';
import { buildTrace, compareOutputs, mergeOutputs } from './trace';
import { prepareTraining, trainingResults, writePipelineTrainingSegments, writeTensorTrainingSegments, writeTrainingSegments, type TrainingSetup } from './train-setup';
import { buildPipelineTrainingModels, type PipelineTrainingModels } from '../train/pipeline-models';
import { buildTensorTrainingModels, type TensorTrainingModels } from '../train/tensor-models';
import { gatherShardParameters, shardInitialWeights } from '../tensor/shard-weights';
import { compileTrainData } from '../compile/train-data';
import { prepareTensor } from '../compile/tensor';
import { replicaPipelinePlan } from '../compile/hybrid';
import { writeShardModels } from '../tensor/shard-model';
import type { TensorShardPlan } from '../tensor/shard-plan';
import { formatBytes } from '../../profiler/units';
import { RssWatch } from './rss-watch';
import { QuietLog, quiesce } from './quiesce';
import { memoryOfRun } from './run-memory-setup';
import type { RunMemory } from '../../profiler/memory-format';

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
  /** Symbolic sizes other than the batch that gradient models pin (a CNN's spatial sizes). */
  trainDims: Record<string, number>;
}

/** A plan's training settings; hybrid plans do not train. */
const trainOf = (plan: Plan): TrainPlan | undefined => ('train' in plan ? plan.train : undefined);

/** Row-splits of a run: devices, and a pipeline's micro-batches; a tensor plan runs every row on every device. */
function partsOf(plan: Plan, devices: number): number {
  switch (plan.mode) {
    case 'data':
      return devices;
    case 'pipeline':
      return Math.max(devices, plan.microBatches);
    case 'tensor':
      return 1;
    case 'hybrid':
      return 'pipeline' in plan ? plan.data * plan.microBatches : plan.data;
    default:
      return assertNever(plan, 'plan');
  }
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
  let trainDims: Record<string, number> = {};
  const train = trainOf(plan);
  if (train) {
    // Symbolic sizes other than the batch, as resolved (a CNN's spatial sizes from
    // --input-shape): convolution gradients need them fixed.
    const fixedDims: Record<string, number> = { ...(req.dims ?? {}) };
    for (const r of resolved) {
      r.modelDims?.forEach((d, k) => {
        if (typeof d === 'string' && k !== r.batchAxis && r.dims[k] !== undefined) fixedDims[d] = r.dims[k];
      });
    }
    const labelAxis = outputAxes.get(ir.outputs[0]?.name ?? '') ?? 0;
    trainDims = withoutBatch(fixedDims, batchName);
    training = await prepareTraining(req.modelPath, req.modelLabel, train, tensors, labelAxis, trainDims);
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
  return { ir, resolved, inputs, devices, ortVersion: discovered.onnxruntimeVersion, discovered, dimValues, compile: compileCtx, training, trainDims };
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
      const p = await pipelinePartition(req, l, plan, l.devices.length, profileDir, hooks);
      return { prepared: { mode: 'pipeline', partition: p.partition }, plan: { ...plan, ...p.recorded }, text: p.text, info: p.info };
    }
    case 'tensor':
      return prepareTensorPlan(plan, l);
    case 'hybrid': {
      if (!('pipeline' in plan)) return prepareHybridPlan(plan, l);
      if (plan.data * plan.pipeline !== l.devices.length) {
        throw new UserError(`--data ${plan.data} × --pipeline ${plan.pipeline} needs ${plan.data * plan.pipeline} devices, but --devices ${plan.devices} gives ${l.devices.length}; give --devices with ${plan.data * plan.pipeline}`);
      }
      // One replica's pipeline is calibrated and partitioned; every replica runs that partition.
      const p = await pipelinePartition(req, l, replicaPipelinePlan(plan), plan.pipeline, profileDir, hooks);
      const { stages: _stages, ...recorded } = p.recorded;
      const text = `data ${plan.data} × pipeline ${plan.pipeline}: ${plan.data} replicas of ${plan.batch / plan.data} rows, each a pipeline of ${plan.pipeline} stages\n${p.text}`;
      return { prepared: { mode: 'hybrid-pipeline', partition: p.partition }, plan: { ...plan, ...recorded }, text, info: p.info };
    }
    default:
      return assertNever(plan, 'plan');
  }
}

/** A tensor plan's shard plan and the chain of segments cut at its all-reduces. */
function prepareTensorPlan(plan: Extract<Plan, { mode: 'tensor' }>, l: Loaded): Preparation {
  const n = l.devices.length;
  if (plan.tensor !== undefined && plan.tensor !== n) {
    throw new UserError(`--tensor ${plan.tensor} splits every weight over ${plan.tensor} devices, but --devices ${plan.devices} gives ${n}; give --devices with ${plan.tensor} devices, or run --mode hybrid --data <replicas> --tensor ${plan.tensor}`);
  }
  const t = tensorShards(l, n, plan.keepWhole);
  const recorded: Plan = { ...plan, tensor: n, ...t.recorded };
  return { prepared: { mode: 'tensor', ...t.prepared }, plan: recorded, text: `tensor parallel over ${n} devices: ${t.text}`, info: {} };
}

/** A pipeline's partition into `k` stages (calibrated, or along its cuts), what its plan records of it, and its text. */
async function pipelinePartition(req: ProfileRequest, l: Loaded, plan: PipelinePlan, k: number, profileDir: string, hooks: RunnerHooks) {
  checkPipelinePlan(plan, l.ir, k, req.modelLabel);
  const cal = { modelPath: req.modelPath, device: l.devices[0]!, inputs: l.inputs, compile: l.compile, profileDir };
  const { partition, calibration } = await preparePartition(plan, l.ir, cal, l.dimValues, k, hooks, req.dryRun === true);
  const recorded = {
    stages: k,
    cuts: partition.cuts,
    partition: {
      stageNodes: partition.stages.map((st) => st.nodeIndices.map((i) => l.ir.nodes[i]!.name)),
      stageCostUs: partition.stages.map((st) => st.computeUs),
      balance: partition.balance,
    },
    calibration,
  };
  return { partition, recorded, text: formatPartition(partition, l.ir), info: partitionInfo(partition, plan.batch / plan.microBatches) };
}

/** A data × tensor plan: the shard plan of one replica (every replica holds the same slices). */
function prepareHybridPlan(plan: HybridTensorPlan, l: Loaded): Preparation {
  const n = l.devices.length;
  if (plan.data * plan.tensor !== n) {
    throw new UserError(`--data ${plan.data} × --tensor ${plan.tensor} needs ${plan.data * plan.tensor} devices, but --devices ${plan.devices} gives ${n}; give --devices with ${plan.data * plan.tensor}`);
  }
  const t = tensorShards(l, plan.tensor, plan.keepWhole);
  const perDevice = Array.from({ length: plan.data }, () => t.recorded.perDeviceParameterBytes).flat();
  const recorded: Plan = { ...plan, ...t.recorded, perDeviceParameterBytes: perDevice };
  const text = `data ${plan.data} × tensor ${plan.tensor}: ${plan.data} replicas of ${plan.batch / plan.data} rows, each tensor parallel over ${plan.tensor} devices: ${t.text}`;
  return { prepared: { mode: 'hybrid', ...t.prepared }, plan: recorded, text, info: {} };
}

/** Symbolic sizes as the inputs resolved them (a sequence length from --input-shape). */
function resolvedDims(l: Loaded): Record<string, number> {
  const dims: Record<string, number> = { ...l.dimValues };
  for (const r of l.resolved) {
    r.modelDims?.forEach((d, k) => {
      if (typeof d === 'string' && r.dims[k] !== undefined) dims[d] = r.dims[k];
    });
  }
  return dims;
}

/** The shard plan over `n` devices, what a plan records of it, and a line about it. */
function tensorShards(l: Loaded, n: number, keepWhole: readonly string[] = []): { prepared: ReturnType<typeof prepareTensor>; recorded: { groups: { label: string; allReduces: number; allGathers: number; nodes: string[] }[]; parameterBytes: number; perDeviceParameterBytes: number[] }; text: string } {
  // The all-reduce buffers are sized from the symbolic sizes as the inputs resolved them.
  const prepared = prepareTensor(l.ir, n, resolvedDims(l), keepWhole);
  const { shard, chain } = prepared;
  const allReduces = shard.collectives.filter((c) => c.op === 'all-reduce').length;
  const recorded = {
    groups: shard.groups.map((g) => ({
      label: g.label,
      allReduces: g.collectives.filter((c) => shard.collectives[c]!.op === 'all-reduce').length,
      allGathers: g.collectives.filter((c) => shard.collectives[c]!.op === 'all-gather').length,
      nodes: g.nodes,
    })),
    parameterBytes: shard.parameterBytes,
    perDeviceParameterBytes: shard.perDeviceParameterBytes,
  };
  const text =
    `${shard.groups.length} split group${shard.groups.length === 1 ? '' : 's'}, ${allReduces} all-reduce${allReduces === 1 ? '' : 's'} per step, ` +
    `${chain.stages.length} segment${chain.stages.length === 1 ? '' : 's'} per device; parameters per device ${shard.perDeviceParameterBytes.map((b) => formatBytes(b)).join(', ')} of ${formatBytes(shard.parameterBytes)}` +
    (shard.annotations ? `; split as the model's sharding annotations say (${shard.annotations} annotated weight cut${shard.annotations === 1 ? '' : 's'})` : '');
  return { prepared, recorded, text };
}

/** Model files of a program's segments (stage models are written into `workDir`). */
function materialise(program: Program, prepared: Prepared, modelPath: string, workDir: string, training: TrainingSetup | null, stages: PipelineTrainingModels | null, shards: TensorTrainingModels | null): Record<number, string> {
  const paths: Record<number, string> = stages
    ? writePipelineTrainingSegments(program, stages, join(workDir, 'train-stages'))
    : shards
      ? writeTensorTrainingSegments(shards, join(workDir, 'train-shards'))
      : training
      ? writeTrainingSegments(program, training.models, join(workDir, 'train'))
      : {};
  const stagePaths = (prepared.mode === 'pipeline' || prepared.mode === 'hybrid-pipeline') && program.segments.some((s) => s.kind === 'stage') ? writeStageModels(modelPath, prepared.partition, join(workDir, 'stages')) : [];
  const shardPaths = prepared.mode === 'tensor' || prepared.mode === 'hybrid' ? writeShardModels(modelPath, program, prepared, join(workDir, 'shards')) : {};
  for (const seg of program.segments) {
    switch (seg.kind) {
      case 'whole':
        paths[seg.id] = modelPath;
        break;
      case 'stage':
        paths[seg.id] = stagePaths[seg.stage]!;
        break;
      case 'shard':
        paths[seg.id] = shardPaths[seg.id]!;
        break;
      case 'train-forward':
      case 'train-backward':
      case 'stage-forward':
      case 'stage-backward':
      case 'optimizer':
        if (paths[seg.id] === undefined) throw new Error(`no step model for segment ${seg.label}`);
        break;
      default:
        assertNever(seg, 'segment');
    }
  }
  return paths;
}

/** A pipeline training plan's stage models, built over its partition (null for any other plan). */
function pipelineTrainingModels(req: ProfileRequest, l: Loaded, prepared: Prepared): PipelineTrainingModels | null {
  const plan = req.plan;
  if (plan.mode !== 'pipeline' || !plan.train || !l.training || prepared.mode !== 'pipeline') return null;
  const wl = l.training.models.withLoss;
  return buildPipelineTrainingModels(readFileSync(req.modelPath), l.ir, prepared.partition, { train: plan.train, output: wl.output, labels: wl.labels }, req.modelLabel, l.trainDims);
}

/** A tensor training plan's per-device models, built over its chain (null for any other plan). */
function tensorTrainingModels(req: ProfileRequest, l: Loaded, prepared: Prepared): TensorTrainingModels | null {
  const plan = req.plan;
  if (plan.mode !== 'tensor' || !plan.train || !l.training || prepared.mode !== 'tensor') return null;
  const wl = l.training.models.withLoss;
  return buildTensorTrainingModels(readFileSync(req.modelPath), l.ir, prepared, { train: plan.train, output: wl.output, labels: wl.labels }, req.modelLabel, l.trainDims);
}

/** Each device's initial weights in a tensor training run: its slices of the whole model's (see runtime/tensor/shard-weights.ts). */
function shardInitial(l: Loaded, prepared: Prepared, shards: TensorTrainingModels): Record<string, SharedArrayBuffer>[] {
  if (prepared.mode !== 'tensor' || !l.training) throw new Error('shard weights of a run that is not tensor training');
  const whole = Object.fromEntries(Object.entries(l.training.initial).map(([k, v]) => [k, new Float32Array(v)]));
  return shards.context.ranks.map((r, rank) => {
    const values = shardInitialWeights(prepared.shard, whole, rank, r.parameters.map((p) => p.name));
    return Object.fromEntries(
      Object.entries(values).map(([k, v]) => {
        const sab = new SharedArrayBuffer(v.byteLength);
        new Float32Array(sab).set(v);
        return [k, sab];
      }),
    );
  });
}

/** Operator-profiled steps after the timed ones, when operator detail is asked for. */
const PROFILED_STEPS = 3;
/** Timed steps alternate between the baseline and the parallel run in up to this many blocks each. */
const MAX_BLOCKS = 4;
/**
 * The capture check alternates captured and uncaptured steps within each of the parallel
 * run's blocks, in up to this many slices each: a few per cent is what it resolves, and
 * between whole blocks the machine drifts by more than that (sub-millisecond steps on a
 * 2-core VM: ±5 % per run with 4 alternations, ±2 % with 32).
 */
const CHECK_SLICES = 8;

/** Block sizes: `steps` split into at most `max` nearly equal blocks. */
function blocksOf(steps: number, max = MAX_BLOCKS): number[] {
  const k = Math.max(1, Math.min(max, steps));
  return Array.from({ length: k }, (_, i) => Math.floor(steps / k) + (i < steps % k ? 1 : 0));
}

/**
 * One block of the parallel run's timed steps with the capture check's: slices of captured
 * and uncaptured steps in turn, each block starting with the kind the previous one did not.
 */
async function timedAndCheck(par: ProgramRun, steps: number, block: number): Promise<void> {
  for (const [i, s] of blocksOf(steps, CHECK_SLICES).entries()) {
    if ((i + block) % 2 === 0) {
      await par.timed(s);
      await par.check(s);
    } else {
      await par.check(s);
      await par.timed(s);
    }
  }
}

/** The one-device baseline program: the whole batch as a data program on the first device's configuration. */
function baselineProgram(req: ProfileRequest, l: Loaded): Program {
  const plan = req.plan;
  const train = trainOf(plan);
  if (train && l.compile.training) {
    const one = { mode: 'data' as const, devices: l.devices[0]!.id, batch: plan.batch, steps: plan.steps, warmup: plan.warmup, seed: plan.seed, train };
    return compileTrainData(one, { ...l.compile, devices: 1, training: l.compile.training });
  }
  return compileData({ mode: 'data', devices: l.devices[0]!.id, batch: plan.batch, steps: plan.steps, warmup: plan.warmup, seed: plan.seed }, { ...l.compile, devices: 1 });
}

/** What the runner measured: the parallel run's results and, with a baseline, its results. */
interface Runs {
  /** Timed steps run: the plan's, or more to last ProfileRequest.minTimedMs. */
  steps: number;
  /** The timed steps of each block the runs alternated in, in order. */
  blocks: number[];
  done: DoneMessage[];
  /** Other processes' load over the timed steps, null where it cannot be measured. */
  load: OtherLoad | null;
  baseline: { program: Program; done: DoneMessage[] } | null;
  /** The probe's results (see {@link probePlanOf}), when it ran. */
  probe: (ProbePlan & { done: DoneMessage[] }) | null;
  /** The runner process's resident set while the workers ran. */
  rss: NonNullable<RunMemory['process']>;
  /** What waiting for the process to go quiet between runs' blocks took, as a trace note (see quiesce). */
  quietNote: string | null;
  /** Warm-up steps each run took beyond the asked ones (see ProgramRun.warmup). */
  extraWarmup: Record<'run' | 'baseline' | 'probe', { minTime: number; settle: number; memory: number }>;
}

/** A second operating point to measure: its plan, program and, for a larger batch, its inputs. */
interface ProbePlan {
  plan: Plan;
  program: Program;
  inputs?: SharedInput[];
  /** Model files of its segments, where they are not the run's own (a tensor run's data probe runs the whole model). */
  segmentPaths?: Record<number, string>;
  /** A pipeline probe's cuts, where they are not the run's (see {@link probePartition}). */
  cuts?: string[];
}

/**
 * The second micro-batch count a pipeline run also measures: the next count above M that
 * divides the batch, else the nearest below; null when the batch has no other divisor. Two
 * measured operating points separate what a micro-batch costs per row from what it costs
 * whatever its rows (a session run, the host's hand-offs), which one point cannot.
 */
export function probeMicroBatches(batch: number, m: number): number | null {
  for (let d = m + 1; d <= batch; d++) if (batch % d === 0) return d;
  for (let d = m - 1; d >= 1; d--) if (batch % d === 0) return d;
  return null;
}

/** Steps of the micro-batch probe: half the timed steps, at least 2. */
const probeSteps = (steps: number): number => Math.max(2, Math.ceil(steps / 2));

/** At most this many timed steps when a run is lengthened to last ProfileRequest.minTimedMs. */
export const MAX_TIMED_STEPS = 5000;

/**
 * The timed steps of a run asked for `asked` steps that should last `minTimedMs` (0 or absent:
 * no minimum), given a step time from its warm-up (null: none, which keeps `asked`): enough
 * steps of that length to last the minimum, at least `asked`, at most MAX_TIMED_STEPS.
 * Twenty sub-millisecond steps are over in 10 ms, inside one of the states the operating
 * system leaves the cores in for tens of milliseconds after the workers wake (silero VAD,
 * data cpu:2, 2-core VM: stretches of 0.8 ms steps and of 0.35 ms steps, as when the two
 * workers share one core and when each has its own); the median of such a run is that of
 * whichever state it fell in. Five runs of 20 steps gave medians of 0.51–0.93 ms, five of
 * 1000 steps 0.34–0.37 ms.
 */
export function timedStepsFor(asked: number, minTimedMs: number | undefined, warmupStepMs: number | null): number {
  if (!minTimedMs || minTimedMs <= 0 || warmupStepMs === null || !(warmupStepMs > 0)) return asked;
  return Math.max(asked, Math.min(MAX_TIMED_STEPS, Math.ceil(minTimedMs / warmupStepMs)));
}

/**
 * Runs the program and, when asked, the one-device baseline with the same capture settings,
 * their timed steps alternating in blocks (P B B P P B …) so both see the same machine; the
 * operator-profiled steps (parallel run only) come after every timed step.
 */
async function measure(
  req: ProfileRequest,
  l: Loaded,
  program: Program,
  segmentPaths: Record<number, string>,
  profileDir: string,
  hooks: RunnerHooks,
  probePlan: ProbePlan | null,
  initialByRank?: Record<string, SharedArrayBuffer>[],
): Promise<Runs> {
  const plan = req.plan;
  const capture: Capture = { spans: req.capture, profiledSteps: req.capture && req.opLevel ? PROFILED_STEPS : 0 };
  const common = { inputs: l.inputs, steps: plan.steps, warmup: plan.warmup, profileDir, ...(l.training ? { initialWeights: l.training.initial } : {}) };
  // The capture check runs the timed steps again with spans off, in the same workers and
  // sessions, so the two step times differ only by what capture does.
  const check = req.captureCheck === true && req.capture;
  hooks.progress({ phase: 'warmup', done: 0, total: l.devices.length, message: `starting ${l.devices.length} device worker(s)` });
  const rss = new RssWatch();
  const par = await ProgramRun.start(program, { ...common, ...(check ? { checkSteps: plan.steps } : {}), ...(initialByRank ? { initialWeightsByRank: initialByRank } : {}), devices: l.devices, segmentPaths, capture, phase: 'steps', message: 'measuring' }, hooks);
  let base: ProgramRun | null = null;
  let probe: ProgramRun | null = null;
  // The probe's blocks are as long as the timed run's, so that as large a share of its steps
  // are a block's first: on sub-millisecond steps the first step after another run's block
  // runs 1.5–3× slower (silero VAD v5, data cpu:2, 2-core VM: caches the other run evicted,
  // and the counter reads that first span always gets), and in blocks of one step every
  // probe step was a first one. They are spread over the timed blocks.
  let mainBlocks = blocksOf(plan.steps);
  const probeLayout = (steps: number): Map<number, { steps: number; index: number }> => {
    const probeBlocks = probePlan ? blocksOf(probeSteps(steps), Math.max(1, Math.min(mainBlocks.length, Math.round(probeSteps(steps) / mainBlocks[0]!)))) : [];
    return new Map(probeBlocks.map((k, i) => [Math.floor((i * mainBlocks.length) / probeBlocks.length), { steps: k, index: i }]));
  };
  let probeAt = probeLayout(plan.steps);
  let steps = plan.steps;
  try {
    if (req.baseline) {
      const bp = baselineProgram(req, l);
      // The same capture for the timed steps; operator detail is the parallel run's only.
      const bc: Capture = { ...capture, profiledSteps: 0 };
      // A data-parallel training baseline runs the same step models, a pipeline's the
      // whole model's step models; inference's is the whole model.
      const baseSegments = !l.training ? { 0: req.modelPath } : program.stageTraining ? writeTrainingSegments(bp, l.training.models, join(profileDir, 'train-baseline')) : segmentPaths;
      base = await ProgramRun.start(bp, { ...common, devices: [l.devices[0]!], segmentPaths: baseSegments, capture: bc, phase: 'baseline', message: 'one-device baseline' }, hooks);
    }
    if (probePlan) {
      // The same stage models and capture; its own workers, so the timed run is untouched.
      probe = await ProgramRun.start(
        probePlan.program,
        {
          ...common,
          ...(probePlan.inputs ? { inputs: probePlan.inputs } : {}),
          steps: probeSteps(plan.steps),
          devices: l.devices,
          segmentPaths: probePlan.segmentPaths ?? segmentPaths,
          capture: { ...capture, profiledSteps: 0 },
          phase: 'steps',
          message: 'measuring a second operating point',
        },
        hooks,
      );
    }
    // Warm-up runs on until each run's heap holds a timed block's worth (see warmup). Not
    // when training: every warm-up step updates the weights, and the baseline's must match.
    const settle = (k: number | undefined): number => (l.training ? 0 : (k ?? 0));
    await par.warmup(settle(mainBlocks[0]));
    await base?.warmup(settle(mainBlocks[0]));
    await probe?.warmup(settle([...probeAt.values()][0]?.steps));
    // Short steps: time enough of them (see timedStepsFor).
    steps = timedStepsFor(plan.steps, req.minTimedMs, l.training || check ? null : par.warmupStepMs);
    if (steps !== plan.steps) {
      par.setSteps(steps);
      base?.setSteps(steps);
      probe?.setSteps(probeSteps(steps));
      mainBlocks = blocksOf(steps);
      probeAt = probeLayout(steps);
    }
    const sampler = loadSampler();
    sampler?.start();
    // Every run's block starts once the run before it has stopped using the CPU (see quiesce):
    // warm-up ended with the last run warmed up.
    let last: ProgramRun | null = probe ?? base ?? par;
    const quiet = new QuietLog();
    for (const [b, k] of mainBlocks.entries()) {
      // Each block rotates who goes first: P B (C), then B (C) P, … so that none of the
      // three always follows another.
      const order: { run: ProgramRun; go: () => Promise<void> }[] = [{ run: par, go: check ? () => timedAndCheck(par, k, b) : () => par.timed(k) }];
      if (base) order.push({ run: base, go: () => base!.timed(k) });
      const rotated = order.map((_, i) => order[(i + b) % order.length]!);
      // The probe's blocks take every place in turn by their own count: spread over the
      // timed blocks, a place taken from the timed block's index can be the same every time
      // (two probe blocks at timed blocks 0 and 2 always followed the run).
      const pk = probeAt.get(b);
      if (probe && pk) rotated.splice(pk.index % (rotated.length + 1), 0, { run: probe, go: () => probe!.timed(pk.steps) });
      for (const { run, go } of rotated) {
        if (run !== last) quiet.add(await quiesce());
        last = run;
        await go();
      }
    }
    const load = sampler?.stop() ?? null;
    const baseDone = base ? await base.finish() : null;
    const probeDone = probe ? await probe.finish() : null;
    const done = await par.finish();
    const alsoRan = [
      ...(base ? ['the one-device baseline'] : []),
      ...(probe ? ['the second operating point (probe)'] : []),
      ...(capture.profiledSteps > 0 ? ["the operator-profiled steps' second sessions"] : []),
    ];
    return {
      steps,
      blocks: mainBlocks,
      rss: rss.stop(alsoRan),
      quietNote: quiet.note(),
      extraWarmup: { run: par.extraWarmup, baseline: base?.extraWarmup ?? { minTime: 0, settle: 0, memory: 0 }, probe: probe?.extraWarmup ?? { minTime: 0, settle: 0, memory: 0 } },
      done,
      load,
      baseline: base && baseDone ? { program: base.program, done: baseDone } : null,
      probe: probePlan && probe && probeDone ? { ...probePlan, plan: { ...probePlan.plan, steps: probe.steps }, done: probeDone } : null,
    };
  } finally {
    rss.dispose();
    await par.close();
    await base?.close();
    await probe?.close();
  }
}

/** What the warm-up added beyond --warmup, and why (see ProgramRun.warmup), as trace notes. */
function warmupNotes(extra: Runs['extraWarmup']): string[] {
  const whose = { run: 'the timed run', baseline: 'the baseline', probe: 'the probe' } as const;
  const list = (key: 'minTime' | 'settle' | 'memory'): string =>
    (Object.entries(extra) as [keyof typeof whose, { minTime: number; settle: number; memory: number }][])
      .filter(([, e]) => e[key] > 0)
      .map(([k, e]) => `${e[key]} more step${e[key] === 1 ? '' : 's'} for ${whose[k]}`)
      .join(', ');
  const notes: string[] = [];
  const time = list('minTime');
  if (time) notes.push(`Warm-up ran longer than --warmup asked, to last at least ${WARMUP_MIN_MS} ms: ${time}. The first few hundred short steps still run code V8 has not optimised and data the caches do not yet hold.`);
  const settle = list('settle');
  if (settle) notes.push(`Warm-up then ran on in windows of ${WARMUP_WINDOW_MS} ms until one was no more than ${Math.round(WARMUP_SETTLE_TOL * 100)} % faster than every earlier one (at most ${WARMUP_SETTLE_MAX_MS / 1000} s): ${settle}. Device threads that hand work to each other reach their steady step time only after up to a second.`);
  const memory = list('memory');
  if (memory) notes.push(`Warm-up ran longer than --warmup asked, until the devices' memory stopped faulting in (at most ${WARMUP_SETTLED_FAULTS} new pages a step): ${memory}. A heap still growing costs the first timed steps a page fault for every fresh 4 KiB of output.`);
  return notes;
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

/** Models whose parameters exceed this are not loaded a second time for a probe. */
const PROBE_MAX_PARAMETER_BYTES = 512 * 1024 * 1024;

/**
 * The second operating point an inference run also measures, or null where it does not apply:
 * a pipeline at the next micro-batch count that divides the batch (same stage models), a data
 * plan at twice the batch (every shard doubled, the inputs' rows repeated).
 */
function probePlanOf(req: ProfileRequest, prep: Preparation, l: Loaded, workDir: string): ProbePlan | null {
  const plan = prep.plan;
  if (req.probe === false || l.training || l.ir.parameterBytes > PROBE_MAX_PARAMETER_BYTES) return null;
  if (plan.mode === 'pipeline') {
    // A batch axis the stage models keep symbolic is what lets a micro-batch carry other rows.
    if (prep.prepared.mode !== 'pipeline' || prep.prepared.partition.batchDim === null) return null;
    const m2 = probeMicroBatches(plan.batch, plan.microBatches);
    if (m2 === null) return null;
    const own = probePartition(req, prep, l, m2);
    if (own) {
      const probe: Plan = { ...plan, microBatches: m2, cuts: own.cuts };
      const prepared: Prepared = { ...prep.prepared, partition: own };
      const program = compile(probe, prepared, l.compile);
      const paths = writeStageModels(req.modelPath, own, join(workDir, 'probe-stages'));
      const segmentPaths = Object.fromEntries(program.segments.flatMap((seg) => (seg.kind === 'stage' ? [[seg.id, paths[seg.stage]!]] : [])));
      return { plan: probe, program, segmentPaths, cuts: own.cuts };
    }
    const probe: Plan = { ...plan, microBatches: m2 };
    return { plan: probe, program: compile(probe, prep.prepared, l.compile) };
  }
  if (plan.mode === 'tensor') {
    // The alternative a tensor plan is weighed against: the same batch split over the same
    // devices, each holding the whole model.
    if (l.resolved.some((r) => r.batchFixed) || !l.inputs.some((i) => i.batchAxis !== null) || plan.batch < l.devices.length) return null;
    const probe: Plan = { mode: 'data', devices: plan.devices, batch: plan.batch, steps: plan.steps, warmup: plan.warmup, seed: plan.seed };
    const shards = resolveShards(probe, l.devices.length);
    const program = compile({ ...probe, shards }, { mode: 'data' }, l.compile);
    return { plan: { ...probe, shards }, program, segmentPaths: Object.fromEntries(program.segments.map((seg) => [seg.id, req.modelPath])) };
  }
  if (plan.mode !== 'data' || l.resolved.some((r) => r.batchFixed) || !l.inputs.some((i) => i.batchAxis !== null)) return null;
  const probe: Plan = { ...plan, batch: plan.batch * 2, shards: resolveShards(plan, l.devices.length).map((r) => r * 2) };
  const inputs = l.inputs.map((i): SharedInput => {
    if (i.batchAxis === null) return i;
    const t = tileRows(i.dtype, viewOf(i.dtype, i.data), i.dims, i.batchAxis, 2);
    return { ...i, dims: t.dims, data: t.data.buffer as SharedArrayBuffer };
  });
  const ctx: CompileContext = { ...l.compile, inputs: inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: i.dims, batchAxis: i.batchAxis })) };
  return { plan: probe, program: compile(probe, prep.prepared, ctx), inputs };
}

/**
 * The partition a pipeline probe at `m2` micro-batches runs, where it is not the run's: a plan
 * without `--cuts` is cut again from the calibration at the probe's micro-batch size, when
 * the run calibrated at that size, since a run at `m2` micro-batches cuts there (the bubble
 * advice's prediction is the probe's step, so the probe runs what the advice does). Null
 * (the run's own partition) with explicit cuts, without that calibration, or when the cuts
 * come out the same.
 */
function probePartition(req: ProfileRequest, prep: Preparation, l: Loaded, m2: number): Partition | null {
  const plan = prep.plan;
  if (plan.mode !== 'pipeline' || prep.prepared.mode !== 'pipeline') return null;
  const asked = req.plan.mode === 'pipeline' ? req.plan.cuts : undefined;
  if (asked && asked.length > 0) return null;
  const alt = plan.calibration?.alt;
  if (!alt || alt.rows !== plan.batch / m2) return null;
  const current = prep.prepared.partition;
  const own = partitionFromCosts(l.ir, alt.nodeCostUs, current.stages.length, l.dimValues);
  if (own.cuts.length === current.cuts.length && own.cuts.every((c, i) => c === current.cuts[i])) return null;
  return { ...own, batchDim: current.batchDim };
}

/**
 * The probe's record in the trace: its step times and, for a pipeline, each stage's compute
 * and comm per micro-batch from its own trace analysed as any pipeline run.
 */
function probeRecord(
  probe: NonNullable<Runs['probe']>,
  m: Pick<Parameters<typeof buildTrace>[0], 'request' | 'ir' | 'ortVersion' | 'devices' | 'inputs' | 'capture'>,
): Pick<TraceMeta, 'microProbe' | 'batchProbe' | 'dataProbe'> {
  const t = deriveIdle(buildTrace({ ...m, plan: probe.plan, program: probe.program, done: probe.done, numericalCheck: undefined, baseline: undefined, measurement: undefined }));
  const stepTimesUs = t.steps.map((w) => w.endUs - w.startUs);
  if (m.request.plan.mode === 'tensor') return { dataProbe: { devices: probe.plan.devices, stepTimesUs } };
  if (probe.plan.mode !== 'pipeline') return { batchProbe: { batch: probe.plan.batch, stepTimesUs } };
  const model = analyse(t).pipeline?.model;
  return {
    microProbe: {
      microBatches: probe.plan.microBatches,
      stepTimesUs,
      stagePerMicroUs: model?.stagePerMicroUs ?? [],
      stageCommPerMicroUs: model?.stageCommPerMicroUs ?? [],
      ...(probe.cuts ? { cuts: probe.cuts } : {}),
    },
  };
}

/** The devices' trained shards as the whole model's parameters (tensor training). */
function gatherShards(shard: TensorShardPlan): (done: readonly DoneMessage[]) => Record<string, Float32Array> {
  return (done) => gatherShardParameters(shard, done.map((d) => d.training?.parameters ?? {}));
}

/** Runs a profile request to completion and returns the trace and its summary. */
export async function runProfile(req: ProfileRequest, hooks: RunnerHooks): Promise<RunnerResult> {
  const check = (): void => {
    if (hooks.signal?.aborted) throw new CancelledError();
  };
  if (req.captureCheck && 'train' in req.plan && req.plan.train) {
    throw new UserError('--capture-check runs the timed steps twice, which would train the weights further than the one-device reference; drop --capture-check or --train');
  }
  hooks.progress({ phase: 'load', done: 0, total: 1, message: 'loading model' });
  const l = await load(req);
  check();
  const profileDir = mkdtempSync(join(os.tmpdir(), 'parallax-ortprof-'));
  try {
    const prep = await prepare(req, l, profileDir, hooks);
    const stages = pipelineTrainingModels(req, l, prep.prepared);
    const shards = tensorTrainingModels(req, l, prep.prepared);
    const program = compile(prep.plan, prep.prepared, { ...l.compile, ...(stages ? { pipelineTraining: stages } : {}), ...(shards ? { tensorTraining: shards.context } : {}) });
    // A dry run (`parallax plan`) shows the program too; a profile shows the partition only
    // (the program is in the trace).
    const programText = formatProgram(program, l.devices.map((d) => d.id));
    const planText = req.dryRun ? [prep.text, programText].filter((t) => t !== '').join('\n\n') : prep.text;
    const planInfo: PlanInfo = { ...prep.info, program };
    if (req.dryRun) return { trace: null, summary: null, planText, planInfo };
    check();
    const probePlan = probePlanOf(req, prep, l, profileDir);
    const segmentPaths = materialise(program, prep.prepared, req.modelPath, profileDir, l.training, stages, shards);
    const runs = await measure(req, l, program, segmentPaths, profileDir, hooks, probePlan, shards ? shardInitial(l, prep.prepared, shards) : undefined);
    const capture: CaptureSettings = { spans: req.capture, opProfilerOnTimedSteps: false, profiledSteps: req.capture && req.opLevel ? PROFILED_STEPS : 0 };
    // The plan as run: more timed steps where short ones were lengthened (see timedStepsFor).
    prep.plan = { ...prep.plan, steps: runs.steps };
    const baseline = runs.baseline ? baselineRecord(req, l, runs.baseline, capture) : null;
    const done = runs.done;
    const measurement: MeasurementMeta | undefined = runs.load ? { ...runs.load, threads: done.map((d) => d.schedThreads) } : undefined;
    check();
    hooks.progress({ phase: 'analyse', done: 0, total: 1, message: 'building the trace' });
    const plan = req.plan;
    const train = trainOf(plan);
    const trained =
      train && l.training
        ? trainingResults(
            train,
            l.training.models,
            program,
            done,
            runs.baseline ? { ...runs.baseline, reference: `one-device training (${l.devices[0]!.id} configuration, same global batch, labels and initial weights)` } : null,
            Math.max(1, plan.warmup) + plan.steps,
            l.training.frozen,
            prep.prepared.mode === 'tensor' ? gatherShards(prep.prepared.shard) : undefined,
          )
        : null;
    const numericalCheck = trained ? trained.check : baseline ? compareOutputs(mergeOutputs(program, done), baseline.reference, baseline.referenceName) : undefined;
    let trace = buildTrace({ request: req, plan: prep.plan, program, ir: l.ir, ortVersion: l.ortVersion, devices: l.devices, done, inputs: l.inputs, numericalCheck, ...(trained ? { training: trained.meta } : {}), baseline: baseline?.meta, capture, measurement, timedBlocks: runs.blocks });
    trace = deriveIdle(trace);
    trace.meta.memory = await memoryOfRun({
      ir: l.ir,
      plan: prep.plan,
      prepared: prep.prepared,
      program,
      inputs: l.inputs,
      dims: withoutBatch(resolvedDims(l), [...batchNames(l.resolved)][0] ?? null),
      segmentPaths,
      done,
      process: runs.rss,
      ...(req.deviceMemory !== undefined ? { capacityBytes: req.deviceMemory } : {}),
    });
    if (runs.probe) {
      const rec = probeRecord(runs.probe, { request: req, ir: l.ir, ortVersion: l.ortVersion, devices: l.devices, inputs: l.inputs, capture });
      Object.assign(trace.meta, rec);
      const steps = (rec.microProbe ?? rec.batchProbe ?? rec.dataProbe)?.stepTimesUs.length ?? 0;
      if (rec.dataProbe) {
        trace.meta.notes.push(
          `Probe: ${steps} steps of the same batch run data parallel on the same devices (the whole model on each) ran on workers of their own, in blocks alternating with the timed steps, so that tensor parallelism is weighed against a measured alternative. The gaps between blocks on this timeline include those steps.`,
        );
      } else {
        const what = rec.microProbe ? `${rec.microProbe.microBatches} micro-batches` : `the batch of ${rec.batchProbe?.batch ?? 0} (the inputs' rows repeated)`;
        trace.meta.notes.push(
          `Probe: ${steps} steps with ${what} ran on workers of their own, in blocks alternating with the timed steps, so that predictions for other ${rec.microProbe ? 'micro-batch counts' : 'batches'} rest on two measured points. The gaps between blocks on this timeline include those steps.`,
        );
      }
    }
    trace.meta.notes.push(...warmupNotes(runs.extraWarmup));
    if (runs.quietNote) trace.meta.notes.push(runs.quietNote);
    if (runs.steps !== req.plan.steps) {
      trace.meta.notes.push(
        `Timed ${runs.steps} steps where ${req.plan.steps} were asked: the steps are short, and timed steps last at least ${formatDuration((req.minTimedMs ?? 0) * 1000)} (--min-time; --steps alone times exactly that many).`,
      );
    }
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
