/**
 * Plans: what a user asks Parallax to run, as one discriminated union keyed by `mode`.
 *
 * The same type is the request (the CLI's flags, a `parallax.json` run configuration, the
 * extension's quick picks all become a {@link Plan}) and the record (`meta.plan` of a trace,
 * with the fields the runner resolved filled in). Adding a mode is a new member here and a
 * new compiler in src/runtime/compile/; the CLI's `--mode` choices, the configuration
 * schema, package.json's enum and the extension all derive their lists from
 * {@link PARALLEL_MODES} (test/unit/plan.test.ts checks that they agree).
 *
 * It lives on the profiler side, beside the trace format, because traces carry it and the
 * profiler never imports the runtime.
 */
import { Type, type Static } from '@sinclair/typebox';

/** Parallel modes Parallax can run, in the order they are offered. */
export const PARALLEL_MODES = ['data', 'pipeline', 'tensor', 'hybrid'] as const;
export type ParallelMode = (typeof PARALLEL_MODES)[number];

/** One line per mode, for pickers, `--help` and the configuration schema. */
export const MODE_DESCRIPTIONS: Record<ParallelMode, string> = {
  data: 'Replicate the model on every device and split the batch.',
  pipeline: 'Cut the graph into stages, one per device, and stream micro-batches through them.',
  tensor: 'Split weight matrices across devices (column- then row-parallel pairs) and all-reduce each layer\'s partial sums.',
  hybrid: 'Data × tensor or data × pipeline: split the batch over replicas, each a tensor-parallel group or a pipeline of its own.',
};

/**
 * Pipeline schedules: the order of each stage's instructions within a step. `gpipe`:
 * fill–drain (training: every forward, then every backward); `1f1b`: training only,
 * PipeDream-Flush's one-forward-one-backward, which keeps at most K micro-batches of
 * activations per stage instead of M.
 */
export const PIPELINE_SCHEDULES = ['gpipe', '1f1b'] as const;
export type PipelineSchedule = (typeof PIPELINE_SCHEDULES)[number];

/** Losses a training step can minimise (see runtime/train/loss.ts). */
export const TRAIN_LOSSES = ['mse', 'cross-entropy'] as const;
export type TrainLoss = (typeof TRAIN_LOSSES)[number];
/** Optimizers a training step can apply (see runtime/train/optimizer.ts). */
export const TRAIN_OPTIMIZERS = ['sgd', 'momentum', 'adam'] as const;
export type TrainOptimizer = (typeof TRAIN_OPTIMIZERS)[number];
/** Element types gradients can travel in on the wire of the all-reduce (see runtime/comm/compress.ts). */
export const GRAD_DTYPES = ['float32', 'float16', 'int8'] as const;
export type GradDtype = (typeof GRAD_DTYPES)[number];
/** Defaults of the training part of a plan (25 MB buckets, as PyTorch DDP's `bucket_cap_mb`). */
export const TRAIN_DEFAULTS = { loss: 'mse', optimizer: 'sgd', lr: 0.01, bucketMb: 25 } as const satisfies TrainPlan;

/** True when `v` names a mode Parallax can run. */
export function isParallelMode(v: unknown): v is ParallelMode {
  return typeof v === 'string' && (PARALLEL_MODES as readonly string[]).includes(v);
}

const Int = Type.Integer({ minimum: 0 });
const PosInt = Type.Integer({ minimum: 1 });

/** How a graph input is laid out in the global batch (recorded; absent in a request). */
export const InputLayoutSchema = Type.Object({
  name: Type.String(),
  dims: Type.Array(Type.Number()),
  /** Axis split across devices or micro-batches; null for inputs without a batch. */
  batchAxis: Type.Union([Type.Number(), Type.Null()]),
});
export type InputLayout = Static<typeof InputLayoutSchema>;

/** Fields every mode has. */
const common = {
  /** Device spec, e.g. `cpu:2` or `cpu:1,webgpu:1` (kind:count, comma-separated). */
  devices: Type.String(),
  /** Global batch: rows per step. */
  batch: PosInt,
  /** Measured steps. */
  steps: PosInt,
  /** Unrecorded warm-up steps before measuring. */
  warmup: Int,
  /** Seed of synthesized inputs. */
  seed: Type.Number(),
  /** Recorded: the inputs as run. */
  inputs: Type.Optional(Type.Array(InputLayoutSchema)),
};

/**
 * The optional training part of a plan: each step runs forward and backward on the device's
 * rows against synthetic teacher labels, all-reduces the gradients in buckets (data mode) or
 * accumulates them over the micro-batches (pipeline mode) and applies the optimizer to the
 * weights each worker keeps resident.
 */
export const TrainPlanSchema = Type.Object({
  loss: Type.Union(TRAIN_LOSSES.map((l) => Type.Literal(l))),
  optimizer: Type.Union(TRAIN_OPTIMIZERS.map((o) => Type.Literal(o))),
  /** Learning rate. */
  lr: Type.Number({ exclusiveMinimum: 0 }),
  /** Gradient bucket size in MB (10^6 bytes), as PyTorch DDP's `bucket_cap_mb`. */
  bucketMb: Type.Number({ exclusiveMinimum: 0 }),
  /**
   * Element type of the gradients on the wire of each bucket's all-reduce (absent: float32):
   * float16 rounds to nearest even; int8 has a scale per chunk and error feedback. Sums are
   * taken in float32 after decoding.
   */
  gradDtype: Type.Optional(Type.Union(GRAD_DTYPES.map((d) => Type.Literal(d)))),
  /**
   * Local SGD: each device applies its own gradients and the parameters are averaged over
   * the devices after every `syncEvery`-th update (absent or 1: gradients all-reduced every
   * step).
   */
  syncEvery: Type.Optional(PosInt),
  /** A `.npy` file with the labels of the global batch (absent: labels from a fixed random teacher). */
  labels: Type.Optional(Type.String()),
  /**
   * Parameters left unchanged: patterns on initializer names, each a glob (`*` any run of
   * characters, `?` one, matched against the whole name) or a regular expression written
   * `/…/` (found anywhere in the name).
   */
  freeze: Type.Optional(Type.Array(Type.String())),
});
export type TrainPlan = Static<typeof TrainPlanSchema>;

export const DataPlanSchema = Type.Object({
  mode: Type.Literal('data'),
  ...common,
  /** Rows per device in device order; recorded always, requested optionally (default: even split). */
  shards: Type.Optional(Type.Array(PosInt)),
  /**
   * After each step, ring all-reduce a float32 buffer as large as the model's parameters, as
   * a training step's gradient sync would. The gradients are synthetic (zeros): the
   * transfer and reduction are real, the values are not, and the spans say so.
   */
  gradSync: Type.Optional(Type.Boolean()),
  /** Train instead of running inference (absent: inference). */
  train: Type.Optional(TrainPlanSchema),
});
export type DataPlan = Static<typeof DataPlanSchema>;

/** The partition a pipeline ran with (recorded by the runner). */
export const PartitionRecordSchema = Type.Object({
  /** Per stage, the ONNX node names in it, in topological order. */
  stageNodes: Type.Array(Type.Array(Type.String())),
  /** Per stage, calibrated compute µs of one micro-batch. */
  stageCostUs: Type.Array(Type.Number()),
  /** max / mean stage cost. */
  balance: Type.Number(),
});
export type PartitionRecord = Static<typeof PartitionRecordSchema>;

/** Per-node costs measured before partitioning (recorded by the runner). */
export const CalibrationRecordSchema = Type.Object({
  device: Type.String(),
  /** Rows of the calibration runs (the micro-batch size). */
  rows: Type.Number(),
  runs: Type.Number(),
  note: Type.String(),
  /** µs per node name at `rows`. */
  nodeCostUs: Type.Record(Type.String(), Type.Number()),
  /** The same at a second size, so a micro-batch's fixed and per-row cost can be told apart. */
  alt: Type.Optional(Type.Object({ rows: Type.Number(), nodeCostUs: Type.Record(Type.String(), Type.Number()) })),
});
export type CalibrationRecord = Static<typeof CalibrationRecordSchema>;

export const PipelinePlanSchema = Type.Object({
  mode: Type.Literal('pipeline'),
  ...common,
  schedule: Type.Union(PIPELINE_SCHEDULES.map((s) => Type.Literal(s))),
  /** Micro-batches per step (must divide the batch). */
  microBatches: PosInt,
  /** Stages; one per device (the default and, for now, the only choice). */
  stages: Type.Optional(PosInt),
  /** Node names after which the graph is cut (K − 1); requested optionally, recorded always. */
  cuts: Type.Optional(Type.Array(Type.String())),
  partition: Type.Optional(PartitionRecordSchema),
  calibration: Type.Optional(CalibrationRecordSchema),
  /** Train instead of running inference (absent: inference); `bucketMb` is unused (no all-reduce). */
  train: Type.Optional(TrainPlanSchema),
});
export type PipelinePlan = Static<typeof PipelinePlanSchema>;

/** What a run of a plan with split weights records (tensor and data × tensor plans). */
/**
 * Layers a tensor plan keeps whole (replicated) although they could split: each entry a node
 * name, a scope that prefixes node names (`/layers.5/mlp`), or a `*` glob over node names.
 */
const keepWholeField = { keepWhole: Type.Optional(Type.Array(Type.String(), { minItems: 1 })) };

const tensorRecorded = {
  /** Per split group, its label (the layers' common scope) and its collectives in one forward step. */
  groups: Type.Optional(
    Type.Array(
      Type.Object({
        label: Type.String(),
        allReduces: Int,
        allGathers: Int,
        /** The nodes that run on the group's split tensors (its column- and row-parallel layers and what lies between). */
        nodes: Type.Optional(Type.Array(Type.String())),
      }),
    ),
  ),
  /** Parameter bytes of the model, and those each device holds. */
  parameterBytes: Type.Optional(Type.Number()),
  perDeviceParameterBytes: Type.Optional(Type.Array(Type.Number())),
};

/**
 * Tensor parallelism: every device runs the whole batch on its shard of each split weight
 * (runtime/tensor/shard-plan.ts decides the split); the partial sums of every row-parallel
 * layer are all-reduced.
 */
export const TensorPlanSchema = Type.Object({
  mode: Type.Literal('tensor'),
  ...common,
  /** Devices each weight is split over; requested optionally (it must equal the device count), recorded always. */
  tensor: Type.Optional(Type.Integer({ minimum: 2 })),
  ...keepWholeField,
  ...tensorRecorded,
  /** Train instead of running inference (absent: inference); `bucketMb` is unused (no gradient buckets). */
  train: Type.Optional(TrainPlanSchema),
});
export type TensorPlan = Static<typeof TensorPlanSchema>;

/**
 * A hybrid of data and tensor parallelism: the batch is split over `data` replicas, and each
 * replica is a tensor-parallel group of `tensor` consecutive devices (replica r holds ranks
 * r·tensor … r·tensor + tensor − 1) whose activation all-reduces run in that group only.
 */
export const HybridTensorPlanSchema = Type.Object({
  mode: Type.Literal('hybrid'),
  ...common,
  /** Replicas the batch is split over (data-parallel degree). */
  data: PosInt,
  /** Devices of each replica that every split weight is shared over (tensor-parallel degree). */
  tensor: Type.Integer({ minimum: 2 }),
  ...keepWholeField,
  ...tensorRecorded,
});
export type HybridTensorPlan = Static<typeof HybridTensorPlanSchema>;

/**
 * A hybrid of data and pipeline parallelism: the batch is split over `data` replicas, and each
 * replica is a pipeline of `pipeline` consecutive devices (one stage each) through which its
 * rows flow in `microBatches` micro-batches. One partition serves every replica.
 */
export const HybridPipelinePlanSchema = Type.Object({
  mode: Type.Literal('hybrid'),
  ...common,
  data: PosInt,
  /** Stages of each replica's pipeline (pipeline-parallel degree). */
  pipeline: Type.Integer({ minimum: 2 }),
  schedule: Type.Union(PIPELINE_SCHEDULES.map((s) => Type.Literal(s))),
  /** Micro-batches per replica and step (must divide the replica's rows). */
  microBatches: PosInt,
  /** Node names after which the graph is cut; requested optionally, recorded always. */
  cuts: Type.Optional(Type.Array(Type.String())),
  partition: Type.Optional(PartitionRecordSchema),
  calibration: Type.Optional(CalibrationRecordSchema),
});
export type HybridPipelinePlan = Static<typeof HybridPipelinePlanSchema>;

/** A hybrid plan: data × tensor, or data × pipeline (told apart by which degree it has). */
export const HybridPlanSchema = Type.Union([HybridTensorPlanSchema, HybridPipelinePlanSchema]);
export type HybridPlan = HybridTensorPlan | HybridPipelinePlan;

/** A plan Parallax can run. */
export const PlanSchema = Type.Union([DataPlanSchema, PipelinePlanSchema, TensorPlanSchema, HybridPlanSchema]);
export type Plan = DataPlan | PipelinePlan | TensorPlan | HybridPlan;

/** The plan of an imported trace (another tool ran it; Parallax only records what it saw). */
export const ImportedPlanSchema = Type.Object({
  mode: Type.Literal('imported'),
  worldSize: Type.Number(),
  ranks: Type.Array(Type.Number()),
  steps: Type.Number(),
  stepIndices: Type.Array(Type.Number()),
  backend: Type.String(),
  files: Type.Array(Type.String()),
});
export type ImportedPlan = Static<typeof ImportedPlanSchema>;

/** What `meta.plan` of a trace holds. */
export const TracePlanSchema = Type.Union([DataPlanSchema, PipelinePlanSchema, TensorPlanSchema, HybridPlanSchema, ImportedPlanSchema]);
export type TracePlan = Plan | ImportedPlan;

/** Exhaustiveness check for a `switch` over a union's discriminant. */
export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(x)}`);
}

/** The GPipe (fill–drain) bubble fraction of K equal stages and M micro-batches: (K−1)/(M+K−1). */
export function gpipeBubble(stages: number, microBatches: number): number {
  return stages > 0 && microBatches > 0 ? (stages - 1) / (microBatches + stages - 1) : NaN;
}

/**
 * Converts a version-1 `meta.plan` (a free-form record beside `meta.mode`) to a
 * {@link TracePlan}. Fields the old record lacks keep their defaults; the old flat pipeline
 * fields move into `partition` and `calibration`.
 */
export function migrateV1Plan(mode: string, p: Record<string, unknown>): TracePlan | Record<string, unknown> {
  const num = (k: string, d: number): number => (typeof p[k] === 'number' ? (p[k] as number) : d);
  const base = {
    devices: typeof p['devices'] === 'string' ? (p['devices'] as string) : 'cpu:1',
    batch: num('batch', 1),
    steps: num('steps', 1),
    warmup: num('warmup', 0),
    seed: num('seed', 0),
    ...(Array.isArray(p['inputs']) ? { inputs: p['inputs'] as InputLayout[] } : {}),
  };
  if (mode === 'data' || mode === 'single') {
    return {
      mode: 'data',
      ...base,
      ...(Array.isArray(p['shards']) ? { shards: p['shards'] as number[] } : {}),
      ...(p['gradSync'] ? { gradSync: true } : {}),
    };
  }
  if (mode === 'pipeline') {
    const stageNodes = p['stageNodes'] as string[][] | undefined;
    const alt = p['nodeCostUsAlt'] as { rows: number; costs: Record<string, number> } | undefined;
    const cal = p['calibration'] as { device?: string; rows?: number; runs?: number; note?: string } | undefined;
    return {
      mode: 'pipeline',
      ...base,
      schedule: 'gpipe',
      microBatches: num('microBatches', 1),
      ...(typeof p['stages'] === 'number' ? { stages: p['stages'] as number } : {}),
      ...(Array.isArray(p['cuts']) ? { cuts: p['cuts'] as string[] } : {}),
      ...(Array.isArray(stageNodes)
        ? {
            partition: {
              stageNodes,
              stageCostUs: Array.isArray(p['stageCostUs']) ? (p['stageCostUs'] as number[]) : stageNodes.map(() => 0),
              balance: num('partitionBalance', 1),
            },
          }
        : {}),
      ...(p['nodeCostUs'] && typeof p['nodeCostUs'] === 'object'
        ? {
            calibration: {
              device: cal?.device ?? 'cpu:0',
              rows: cal?.rows ?? num('microBatchRows', 1),
              runs: cal?.runs ?? 1,
              note: cal?.note ?? '',
              nodeCostUs: p['nodeCostUs'] as Record<string, number>,
              ...(alt ? { alt: { rows: alt.rows, nodeCostUs: alt.costs } } : {}),
            },
          }
        : {}),
    };
  }
  if (mode === 'imported') return { mode: 'imported', ...p };
  return p;
}

/** A plan's fields as flags and run configurations give them: flat, mode-specific ones optional. */
export interface PlanFields {
  mode: ParallelMode;
  devices: string;
  batch: number;
  steps: number;
  warmup: number;
  seed: number;
  shards?: number[] | undefined;
  gradSync?: boolean | undefined;
  microBatches?: number | undefined;
  stages?: number | undefined;
  cuts?: string[] | undefined;
  schedule?: PipelineSchedule | undefined;
  train?: TrainPlan | undefined;
  /** Tensor and hybrid modes: devices each weight is split over. */
  tensor?: number | undefined;
  /** Hybrid mode: replicas the batch is split over. */
  data?: number | undefined;
  /** Hybrid mode: stages of each replica's pipeline. */
  pipeline?: number | undefined;
  /** Tensor and data × tensor modes: layers kept whole (see the plan's `keepWhole`). */
  keepWhole?: string[] | undefined;
}

/** Default micro-batches of a pipeline plan that names none. */
export const DEFAULT_MICRO_BATCHES = 4;

/** The CLI flag of a mode-specific plan field, for messages. */
const FLAG: Record<'shards' | 'gradSync' | 'microBatches' | 'stages' | 'cuts' | 'schedule' | 'tensor' | 'data' | 'pipeline' | 'keepWhole', string> = {
  shards: '--shards',
  gradSync: '--grad-sync',
  microBatches: '--micro-batches',
  stages: '--stages',
  cuts: '--cuts',
  schedule: '--schedule',
  tensor: '--tensor',
  data: '--data',
  pipeline: '--pipeline',
  keepWhole: '--keep-whole',
};

/** Thrown by {@link makePlan} for a field that does not belong to the plan's mode. */
export class PlanFieldError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanFieldError';
  }
}

/**
 * Builds the typed plan from flat fields, refusing fields of another mode (one clear line
 * naming the flag and the mode it belongs to).
 */
export function makePlan(f: PlanFields): Plan {
  const base = { devices: f.devices, batch: f.batch, steps: f.steps, warmup: f.warmup, seed: f.seed };
  if (f.mode !== 'hybrid' && f.data !== undefined) throw new PlanFieldError('--data applies to --mode hybrid only');
  if (f.mode !== 'hybrid' && f.pipeline !== undefined) throw new PlanFieldError('--pipeline applies to --mode hybrid only');
  const refuse = (keys: (keyof typeof FLAG)[], mode: ParallelMode): void => {
    for (const k of keys) {
      if (f[k] !== undefined && f[k] !== false) throw new PlanFieldError(`${FLAG[k]} applies to --mode ${mode} only`);
    }
  };
  switch (f.mode) {
    case 'data':
      refuse(['microBatches', 'stages', 'cuts', 'schedule'], 'pipeline');
      refuse(['tensor', 'keepWhole'], 'tensor');
      if (f.train && f.gradSync) throw new PlanFieldError('--grad-sync all-reduces synthetic gradients of an inference run; --train all-reduces real ones, so drop --grad-sync');
      if (f.train) checkTrain(f.train);
      return { mode: 'data', ...base, ...(f.shards ? { shards: f.shards } : {}), ...(f.gradSync ? { gradSync: true } : {}), ...(f.train ? { train: f.train } : {}) };
    case 'pipeline':
      refuse(['shards', 'gradSync'], 'data');
      refuse(['tensor', 'keepWhole'], 'tensor');
      if (f.schedule === '1f1b' && !f.train) throw new PlanFieldError('--schedule 1f1b interleaves forward and backward micro-batches, so it needs --train (inference has no backward); use --schedule gpipe');
      if (f.train) {
        checkTrain(f.train);
        const t = f.train;
        if ((t.gradDtype ?? 'float32') !== 'float32' || (t.syncEvery ?? 1) > 1) {
          throw new PlanFieldError('--grad-dtype and --sync-every act on the data-parallel gradient all-reduce; a pipeline sums its gradients per stage and sends none, so drop them or use --mode data');
        }
        if ((t.freeze ?? []).length > 0) throw new PlanFieldError('--freeze is not supported in pipeline training yet; drop it or use --mode data');
      }
      return {
        mode: 'pipeline',
        ...base,
        schedule: f.schedule ?? 'gpipe',
        microBatches: f.microBatches ?? DEFAULT_MICRO_BATCHES,
        ...(f.stages !== undefined ? { stages: f.stages } : {}),
        ...(f.cuts && f.cuts.length > 0 ? { cuts: f.cuts } : {}),
        ...(f.train ? { train: f.train } : {}),
      };
    case 'tensor':
      refuse(['shards', 'gradSync'], 'data');
      refuse(['microBatches', 'stages', 'cuts', 'schedule'], 'pipeline');
      if (f.tensor !== undefined && !(Number.isInteger(f.tensor) && f.tensor >= 2)) throw new PlanFieldError(`--tensor ${f.tensor} must be a whole number of at least 2`);
      if (f.train) {
        checkTrain(f.train);
        if ((f.train.gradDtype ?? 'float32') !== 'float32' || (f.train.syncEvery ?? 1) > 1) {
          throw new PlanFieldError('--grad-dtype and --sync-every act on the data-parallel gradient all-reduce; tensor parallelism all-reduces activations and their gradients, not weight gradients, so drop them or use --mode data');
        }
      }
      return { mode: 'tensor', ...base, ...(f.tensor !== undefined ? { tensor: f.tensor } : {}), ...(f.train ? { train: f.train } : {}), ...keepWholeOf(f) };
    case 'hybrid':
      if (f.train) throw new PlanFieldError('not yet: training runs in data mode (--mode data); hybrid training is coming');
      refuse(['shards', 'gradSync'], 'data');
      if (f.pipeline !== undefined && f.tensor !== undefined) throw new PlanFieldError('pipeline × tensor hybrids are not run; give --data with either --tensor or --pipeline');
      if (f.data === undefined || (f.tensor === undefined && f.pipeline === undefined)) {
        throw new PlanFieldError('--mode hybrid needs --data <replicas> and --tensor <devices per replica> or --pipeline <stages per replica>, e.g. --data 2 --tensor 2 --devices cpu:4');
      }
      if (!(Number.isInteger(f.data) && f.data >= 1)) throw new PlanFieldError(`--data ${f.data} must be a whole number of at least 1`);
      if (f.pipeline !== undefined) {
        refuse(['stages'], 'pipeline');
        if (f.keepWhole !== undefined && f.keepWhole.length > 0) throw new PlanFieldError('--keep-whole applies to tensor plans (--mode tensor, or --mode hybrid with --tensor)');
        if (!(Number.isInteger(f.pipeline) && f.pipeline >= 2)) throw new PlanFieldError(`--pipeline ${f.pipeline} must be a whole number of at least 2`);
        return {
          mode: 'hybrid',
          ...base,
          data: f.data,
          pipeline: f.pipeline,
          schedule: f.schedule ?? 'gpipe',
          microBatches: f.microBatches ?? DEFAULT_MICRO_BATCHES,
          ...(f.cuts && f.cuts.length > 0 ? { cuts: f.cuts } : {}),
        };
      }
      refuse(['microBatches', 'stages', 'cuts', 'schedule'], 'pipeline');
      if (!(Number.isInteger(f.tensor) && f.tensor! >= 2)) throw new PlanFieldError(`--tensor ${f.tensor} must be a whole number of at least 2`);
      return { mode: 'hybrid', ...base, data: f.data, tensor: f.tensor!, ...keepWholeOf(f) };
    default:
      return assertNever(f.mode, 'mode');
  }
}

function keepWholeOf(f: PlanFields): { keepWhole?: string[] } {
  if (f.keepWhole === undefined || f.keepWhole.length === 0) return {};
  const empty = f.keepWhole.find((p) => p.trim() === '');
  if (empty !== undefined) throw new PlanFieldError('--keep-whole needs a node name, a scope such as /layers.5/mlp, or a glob; got an empty pattern');
  return { keepWhole: f.keepWhole };
}

/** The flat fields of a plan (the inverse of {@link makePlan}, minus recorded extras). */
export function planFields(p: Plan): PlanFields {
  const base = { mode: p.mode, devices: p.devices, batch: p.batch, steps: p.steps, warmup: p.warmup, seed: p.seed };
  switch (p.mode) {
    case 'data':
      return { ...base, shards: p.shards, gradSync: p.gradSync, train: p.train };
    case 'pipeline':
      return { ...base, microBatches: p.microBatches, stages: p.stages, cuts: p.cuts, schedule: p.schedule, train: p.train };
    case 'tensor':
      return { ...base, tensor: p.tensor, keepWhole: p.keepWhole, train: p.train };
    case 'hybrid':
      return 'pipeline' in p
        ? { ...base, data: p.data, pipeline: p.pipeline, microBatches: p.microBatches, cuts: p.cuts, schedule: p.schedule }
        : { ...base, data: p.data, tensor: p.tensor, keepWhole: p.keepWhole };
    default:
      return assertNever(p, 'plan');
  }
}

/** `p` with some flat fields changed (a finding's suggested change, a benchmark's variant). */
export function withPlanFields(p: Plan, change: Partial<PlanFields>): Plan {
  const f = { ...planFields(p), ...change };
  // Fields of the old mode do not carry over to a new one.
  if (change.mode !== undefined && change.mode !== p.mode) {
    return makePlan({ mode: f.mode, devices: f.devices, batch: f.batch, steps: f.steps, warmup: f.warmup, seed: f.seed, ...pick(change) });
  }
  return makePlan(f);
}

/** Checks the training part's numbers (the CLI's parsers check them too; run configurations reach here unparsed). */
function checkTrain(t: TrainPlan): void {
  if (!(TRAIN_LOSSES as readonly string[]).includes(t.loss)) throw new PlanFieldError(`loss "${t.loss}" is not one of ${TRAIN_LOSSES.join(', ')}`);
  if (!(TRAIN_OPTIMIZERS as readonly string[]).includes(t.optimizer)) throw new PlanFieldError(`optimizer "${t.optimizer}" is not one of ${TRAIN_OPTIMIZERS.join(', ')}`);
  if (!(Number.isFinite(t.lr) && t.lr > 0)) throw new PlanFieldError(`learning rate ${t.lr} must be a positive number, e.g. --lr 0.01`);
  if (!(Number.isFinite(t.bucketMb) && t.bucketMb > 0)) throw new PlanFieldError(`bucket size ${t.bucketMb} MB must be a positive number, e.g. --bucket-mb 25`);
  if (t.gradDtype !== undefined && !(GRAD_DTYPES as readonly string[]).includes(t.gradDtype)) throw new PlanFieldError(`gradient dtype "${t.gradDtype}" is not one of ${GRAD_DTYPES.join(', ')}`);
  if (t.syncEvery !== undefined && !(Number.isInteger(t.syncEvery) && t.syncEvery >= 1)) throw new PlanFieldError(`sync interval ${t.syncEvery} must be a whole number of steps, 1 or more, e.g. --sync-every 4`);
  if ((t.syncEvery ?? 1) > 1 && (t.gradDtype ?? 'float32') !== 'float32') {
    throw new PlanFieldError('--grad-dtype compresses the gradients of the all-reduce, which local SGD (--sync-every above 1) does not send; use one or the other');
  }
  for (const p of t.freeze ?? []) freezePattern(p);
}

function pick(change: Partial<PlanFields>): Partial<PlanFields> {
  const out: Partial<PlanFields> = {};
  for (const k of ['shards', 'gradSync', 'microBatches', 'stages', 'cuts', 'schedule', 'train', 'tensor', 'data', 'pipeline', 'keepWhole'] as const) if (change[k] !== undefined) (out as Record<string, unknown>)[k] = change[k];
  return out;
}

/**
 * One `freeze` pattern as a regular expression: a glob (`*`, `?`) matches the whole name; a
 * pattern written `/…/` is a regular expression found anywhere in the name. Throws a
 * {@link PlanFieldError} for a pattern that does not compile.
 */
export function freezePattern(pattern: string): RegExp {
  if (pattern.length === 0) throw new PlanFieldError('an empty --freeze pattern matches nothing; give a glob such as "layers.0.*" or a /regular expression/');
  if (pattern.length >= 2 && pattern.startsWith('/') && pattern.endsWith('/')) {
    try {
      return new RegExp(pattern.slice(1, -1));
    } catch (e) {
      throw new PlanFieldError(`--freeze ${pattern}: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}; write a valid regular expression between the slashes`);
    }
  }
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}
