/**
 * The Parallax trace file format: the single source of truth.
 *
 * A trace is one JSON document (`*.parallax.json`) with:
 *  - `meta`     what ran, where, how, and whether the numbers can be trusted;
 *  - `strings`  a string table; spans refer to names by index;
 *  - `lanes`    one per device (or per rank of an imported trace);
 *  - `steps`    the window of every measured step;
 *  - `spans`    columnar: one array per field, all of length `spans.count`;
 *  - `summary`, `findings`  derived, and recomputable from the spans.
 *
 * Columnar spans keep a trace with millions of spans compact (no per-span object, no
 * repeated keys) and load straight into typed arrays for analysis and drawing.
 *
 * All times are microseconds. `spans.start` and `steps[].startUs` are relative to
 * `meta.startTimeUs`, which is an absolute time (µs since the Unix epoch).
 *
 * Version history:
 *  - version 1: first format.
 *  - version 2: span columns `comm` (what a communication span does, {@link COMM_OPS}) and
 *    `phase` ({@link PHASES}); flag 16 (synthetic data); idle cause `backpressure`;
 *    `meta.plan` is the typed {@link TracePlan} (src/profiler/plan.ts) and `meta.mode` equals
 *    `meta.plan.mode` (`data`, `pipeline` or `imported`); `meta.program`; `meta.link` removed
 *    (nothing wrote it).
 *    Span columns `cpu` and `wait` (schedstat µs, −1 not measured); `meta.measurement`
 *    (other processes' load during the run).
 *    Version 1 files are migrated on read (see {@link traceFromJson}).
 *  - version 3: `spans` may instead be `{ count, file, id, bytes }`, naming a binary side
 *    file next to the document that holds the columns (`src/profiler/spans-file.ts`); large
 *    traces are written that way. `meta.channel`: the slots of a point-to-point channel.
 *    Version 2 documents read as they are.
 *
 * The JSON schema for the file is {@link TraceSchema} (TypeBox, which is JSON Schema);
 * `npm run schema` writes it to `schemas/parallax-trace.schema.json`.
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { PARALLEL_MODES, TracePlanSchema, migrateV1Plan } from './plan';

/** The current format version; readers accept this and every earlier version. */
export const TRACE_FORMAT_VERSION = 3;
/** The `format` tag every trace file carries. */
export const TRACE_FORMAT_TAG = 'parallax-trace';

// The span vocabulary (kinds, flags, communication operations, phases, idle causes) is
// part of this format; it sits in its own module so that program.ts can use it too.
export * from './span-vocabulary';
import { COMM_OPS, CommOpCode, IDLE_CAUSES, commCodeOfCollective, IdleCauseCode, PHASES, PhaseCode, SPAN_KINDS, SpanFlag, SpanKind, type CommOp, type IdleCause, type Phase, type SpanKindName } from './span-vocabulary';
import { ProgramSchema } from './program';
import { RunMemorySchema } from './memory-format';
import { MAX_TRACE_SPANS } from '../common/limits';
import { spanColumnsProblem, type SpanLimits } from './span-checks';

/** One dimension of a tensor shape: a size, a symbolic name, or unknown. */
const Dim = Type.Union([Type.Number(), Type.String(), Type.Null()]);

export const ModelMetaSchema = Type.Object({
  /** Path the model was loaded from, as given by the user. */
  path: Type.String(),
  /** sha256 of the model file, hex. */
  sha256: Type.String(),
  /** Opset of the default ONNX domain. */
  opset: Type.Number(),
  nodeCount: Type.Number(),
  /** Number of parameters (elements of all initializers). */
  parameters: Type.Number(),
  /** Bytes of all initializers. */
  parameterBytes: Type.Number(),
  producer: Type.Optional(Type.String()),
  inputs: Type.Array(Type.Object({ name: Type.String(), dtype: Type.String(), dims: Type.Array(Dim) })),
  outputs: Type.Array(Type.Object({ name: Type.String(), dtype: Type.String(), dims: Type.Array(Dim) })),
});

export const DeviceMetaSchema = Type.Object({
  /** Stable id, e.g. `cpu:0`, `webgpu:0`, `cuda:1`, `rank:3`. */
  id: Type.String(),
  kind: Type.Union([Type.Literal('cpu'), Type.Literal('webgpu'), Type.Literal('cuda'), Type.Literal('rank')]),
  /** ONNX Runtime execution provider, or the framework for imported ranks. */
  provider: Type.String(),
  /** Intra-op threads of the device's session (cpu), 0 where not applicable. */
  threads: Type.Number(),
  /** The physical unit the device runs on, e.g. `host-cpu`, `gpu:0 (llvmpipe)`. */
  physicalUnit: Type.String(),
  /** True when another device of the run shares the same physical unit (a virtual device). */
  sharesPhysicalUnit: Type.Boolean(),
  /** True for software implementations of a GPU API (e.g. Mesa lavapipe). */
  software: Type.Boolean(),
  /** Human label, honest about sharing and software, e.g. `cpu:1 (1 thread)`. */
  label: Type.String(),
});
export type DeviceMeta = Static<typeof DeviceMetaSchema>;

export const NumericalCheckSchema = Type.Object({
  /** What the output was compared against, e.g. `single-device run (cpu:0, same inputs)`. */
  reference: Type.String(),
  maxAbsErr: Type.Number(),
  maxRelErr: Type.Number(),
  /** Tolerance used for `ok`: |a−b| ≤ atol + rtol·|b| element-wise. */
  atol: Type.Number(),
  rtol: Type.Number(),
  /**
   * Where set (trained weights), an output that misses the element-wise tolerance is still
   * `ok` when its relative L2 error ‖a−b‖₂ / ‖b‖₂ is at most this: a few elements on the
   * other side of a ReLU's kink after float32 reordering move a whole training run a little,
   * which no element-wise tolerance bounds, while a wrong gradient moves every element.
   */
  l2Tol: Type.Optional(Type.Number()),
  /** Largest relative L2 error over the outputs. */
  maxRelL2: Type.Optional(Type.Number()),
  ok: Type.Boolean(),
  /** Number of output elements compared. */
  elements: Type.Number(),
  /**
   * The same check per graph output, each compared on its own batch axis (added in version
   * 2; absent in older traces): a mismatch names the output at fault. An output the run did
   * not produce, or produced with another number of elements, has `ok: false` and
   * `elements: 0`.
   */
  outputs: Type.Optional(
    Type.Array(
      Type.Object({
        name: Type.String(),
        maxAbsErr: Type.Number(),
        maxRelErr: Type.Number(),
        /** ‖a−b‖₂ / ‖b‖₂ over the output (‖a−b‖₂ where ‖b‖₂ is 0). */
        relL2: Type.Optional(Type.Number()),
        ok: Type.Boolean(),
        elements: Type.Number(),
      }),
    ),
  ),
});
export type NumericalCheck = Static<typeof NumericalCheckSchema>;

/** What a run's timed steps recorded (see `meta.capture`). */
export const CaptureSettingsSchema = Type.Object({
  /** Spans recorded at all. */
  spans: Type.Boolean(),
  /** ONNX Runtime's operator profiler on during timed steps (false since version 2). */
  opProfilerOnTimedSteps: Type.Boolean(),
  /** Operator-profiled steps run after the timed ones. */
  profiledSteps: Type.Number(),
});
export type CaptureSettings = Static<typeof CaptureSettingsSchema>;
/** Machine-level measurement conditions of a run; added in version 2. */
export const MeasurementMetaSchema = Type.Object({
  /** Other processes' average load over the measured steps, in cores (/proc/stat busy time minus this process's). */
  otherLoadCores: Type.Number(),
  /** Of that, niced processes' user time (nice > 0), which yields to the run; absent in older traces. */
  nicedLoadCores: Type.Optional(Type.Number()),
  /** This process's own average load over the same window, in cores. */
  selfLoadCores: Type.Optional(Type.Number()),
  /** Of `otherLoadCores`, the host's: time the hypervisor ran others on this virtual machine's ready CPUs (/proc/stat steal), in cores; absent in older traces. */
  stealCores: Type.Optional(Type.Number()),
  /** CPUs of the machine the load is measured against. */
  cores: Type.Number(),
  /** Length of the window the load was averaged over, ms. */
  windowMs: Type.Number(),
  /**
   * Per device (index into `devices`): which threads the span columns `cpu`/`wait` count —
   * `worker+pool` (the worker thread and its session's intra-op threads), `worker` (the worker
   * thread alone: one intra-op thread, or the pool could not be told apart from other threads).
   */
  threads: Type.Optional(Type.Array(Type.Union([Type.Literal('worker+pool'), Type.Literal('worker'), Type.Literal('none')]))),
});
export type MeasurementMeta = Static<typeof MeasurementMetaSchema>;

/**
 * What a training run trained (added in version 2; absent for inference): its settings, its
 * gradient buckets, and the global batch's loss per timed step, beside the one-device run's
 * when one was run. `meta.numericalCheck` then compares trained weights, not outputs.
 */
export const TrainingMetaSchema = Type.Object({
  loss: Type.String(),
  optimizer: Type.String(),
  lr: Type.Number(),
  bucketMb: Type.Number(),
  /** Trainable parameters (tensors) and their elements. */
  parameters: Type.Number(),
  parameterElements: Type.Number(),
  /** Gradient buckets in the order they are all-reduced (last layer first). */
  buckets: Type.Array(Type.Object({ name: Type.String(), bytes: Type.Number(), parameters: Type.Array(Type.String()) })),
  /** Float weights nothing differentiable connects to the loss (left as they are). */
  untrained: Type.Array(Type.String()),
  /** Loss of the global batch per timed step (warm-up steps train too, before these). */
  lossCurve: Type.Array(Type.Number()),
  baselineLossCurve: Type.Optional(Type.Array(Type.Number())),
  /**
   * Where the labels came from: a fixed random teacher (the model with seeded noise on its
   * weights), or a file the user gave (`--labels`). The fields below are absent in traces
   * written before those flags existed, which read as their defaults.
   */
  labels: Type.Union([Type.Literal('teacher'), Type.Literal('file')]),
  /** Element type of gradients on the wire (`--grad-dtype`); absent: float32. */
  gradDtype: Type.Optional(Type.String()),
  /** Local SGD's averaging interval in steps (`--sync-every`); absent: 1, gradients all-reduced every step. */
  syncEvery: Type.Optional(Type.Number()),
  /** Parameters `--freeze` left unchanged; absent: none. */
  frozen: Type.Optional(Type.Array(Type.String())),
  /**
   * Why the trained weights were not checked against one-device training: compressed
   * gradients and local SGD change the updates themselves, so only the loss curves compare.
   */
  notComparable: Type.Optional(Type.String()),
  /**
   * Pipeline training (absent in data mode): the schedule, the micro-batches, and per stage
   * the activations it kept between a micro-batch's forward and backward — the most
   * micro-batches at once as measured by the device and as the compiled schedule implies,
   * and their measured bytes (the saved intermediate tensors and the stage inputs its
   * backward reads). Optional: traces without it read as before.
   */
  pipeline: Type.Optional(
    Type.Object({
      schedule: Type.String(),
      microBatches: Type.Number(),
      stages: Type.Array(
        Type.Object({
          stage: Type.Number(),
          parameters: Type.Number(),
          peakStoredMicroBatches: Type.Number(),
          compiledPeakMicroBatches: Type.Number(),
          peakStoredBytes: Type.Number(),
        }),
      ),
    }),
  ),
});
export type TrainingMeta = Static<typeof TrainingMetaSchema>;

export const TraceMetaSchema = Type.Object({
  formatVersion: Type.Number(),
  tool: Type.Object({ name: Type.String(), version: Type.String() }),
  /**
   * Where the spans come from: measured by Parallax, predicted by the projection model, or
   * imported from another profiler (e.g. `imported:kineto`). Predicted traces are labelled
   * as such in every view.
   */
  source: Type.String(),
  model: Type.Optional(ModelMetaSchema),
  /** The parallel mode, or `imported` for traces of other tools; always equal to `plan.mode`. */
  mode: Type.Union([...PARALLEL_MODES.map((m) => Type.Literal(m)), Type.Literal('imported')]),
  /**
   * The plan as run (a {@link TracePlan}, keyed by `mode`): batch, devices, steps, and per
   * mode the shards, or the micro-batches, cuts, partition and calibration. Typed in
   * version 2; version 1 kept a free-form record here.
   */
  plan: TracePlanSchema,
  devices: Type.Array(DeviceMetaSchema),
  host: Type.Object({
    cpuModel: Type.String(),
    cores: Type.Number(),
    memoryBytes: Type.Number(),
    os: Type.String(),
    node: Type.String(),
  }),
  onnxruntimeVersion: Type.Optional(Type.String()),
  /** Absolute start of the trace clock, µs since the Unix epoch. */
  startTimeUs: Type.Number(),
  numericalCheck: Type.Optional(NumericalCheckSchema),
  /** A training run's record (added in version 2). */
  training: Type.Optional(TrainingMetaSchema),
  /** Baseline the speedup is measured against, when one was run. */
  baseline: Type.Optional(
    Type.Object({
      description: Type.String(),
      stepTimeUs: Type.Object({ median: Type.Number(), p10: Type.Number(), p90: Type.Number() }),
      /** Every timed baseline step, µs, for the speedup's interval. Added in version 2. */
      stepTimesUs: Type.Optional(Type.Array(Type.Number())),
      /**
       * How the baseline's steps were scheduled against the parallel run's: `interleaved`
       * (alternating blocks in one run) or `before` (all first). Added in version 2.
       */
      schedule: Type.Optional(Type.Union([Type.Literal('interleaved'), Type.Literal('before')])),
      /** What its timed steps recorded; equal to `meta.capture` when the speedup is unbiased. Added in version 2. */
      capture: Type.Optional(CaptureSettingsSchema),
    }),
  ),
  /**
   * What the timed steps recorded: spans, and whether ONNX Runtime's operator profiler ran
   * during them (never, since version 2: operator detail comes from separate profiled steps).
   * Added in version 2.
   */
  capture: Type.Optional(CaptureSettingsSchema),
  /**
   * How much of the machine the run got, measured over the measured steps (Linux; absent
   * where not measured, e.g. imported or predicted traces). Added in version 2.
   */
  measurement: Type.Optional(MeasurementMetaSchema),
  /**
   * The timed steps in the blocks they ran in, in order (other runs of the same measurement —
   * the baseline, a probe — ran between them; an interleaved baseline ran blocks of the same
   * sizes, block i next to block i). Steps within a block share the machine's state of that
   * moment, so the speedup's interval resamples whole blocks. Absent in older traces.
   */
  timedBlocks: Type.Optional(Type.Array(Type.Integer({ minimum: 1 }))),
  /**
   * The capture check (`--capture-check`): step times of the timed steps run again with span
   * capture off, in slices alternating with the captured ones in the same workers, µs.
   */
  captureCheck: Type.Optional(Type.Object({ stepTimesUs: Type.Array(Type.Number()) })),
  /**
   * WebGPU devices whose provider gave GPU timestamps: over the operator-profiled runs with
   * timed shader dispatches, the dispatches' count, the time at least one ran on the GPU
   * (µs, overlaps counted once) and those runs' wall time (µs).
   */
  gpuTimestamps: Type.Optional(
    Type.Array(Type.Object({ device: Type.Integer({ minimum: 0 }), kernels: Type.Integer({ minimum: 0 }), runs: Type.Integer({ minimum: 0 }), busyUs: Type.Number({ minimum: 0 }), computeUs: Type.Number({ minimum: 0 }) })),
  ),
  /**
   * Pipeline runs: a second operating point measured in the same run (the next micro-batch
   * count dividing the batch, interleaved, on workers of its own): its step times, and each
   * stage's compute and comm per micro-batch, µs. The pipeline step model is fitted through
   * both points. `cuts`: see below.
   */
  batchProbe: Type.Optional(
    /** Data-parallel runs: the same plan at twice the batch (its inputs' rows repeated), measured in the same run. */
    Type.Object({ batch: Type.Number(), stepTimesUs: Type.Array(Type.Number()) }),
  ),
  /**
   * Tensor-parallel runs: the same batch run data parallel on the same devices (the whole
   * model on each), measured in the same run, interleaved, on workers of its own: step times, µs.
   */
  dataProbe: Type.Optional(Type.Object({ devices: Type.String(), stepTimesUs: Type.Array(Type.Number()) })),
  microProbe: Type.Optional(
    Type.Object({
      microBatches: Type.Number(),
      stepTimesUs: Type.Array(Type.Number()),
      stagePerMicroUs: Type.Array(Type.Number()),
      stageCommPerMicroUs: Type.Array(Type.Number()),
      /**
       * The cuts the probe ran, where they are not the run's: a plan without `--cuts` is
       * partitioned again at the probe's micro-batch size (from the calibration at that size),
       * as a run at that count would be, so the probe measures what the change runs.
       */
      cuts: Type.Optional(Type.Array(Type.String())),
    }),
  ),
  /**
   * The point-to-point channels between devices: `slots` slots of `slotBytes` each. A message
   * takes ⌈bytes / slotBytes⌉ slots (at least one), and a send that finds no free slot waits
   * for its receiver to drain one; the simulator bounds its channels the same way. Absent
   * where not recorded (one device, imported or older traces). Added in version 3.
   */
  channel: Type.Optional(Type.Object({ slots: Type.Integer({ minimum: 1 }), slotBytes: Type.Integer({ minimum: 1 }) })),
  /**
   * What findings do when measurement quality is poor: `hold` (the default) keeps timing
   * findings back, `show` keeps them as advice with a caveat naming the contention. Added in
   * version 2.
   */
  adviceOnPoorQuality: Type.Optional(Type.Union([Type.Literal('hold'), Type.Literal('show')])),
  /** The device program the run executed (or the simulation ran); added in version 2. */
  program: Type.Optional(ProgramSchema),
  /**
   * Memory per device: parameters, computed activation peak, training state, and the runner
   * process's measured growth (see memory-format.ts). Absent in traces written before it.
   */
  memory: Type.Optional(RunMemorySchema),
  /** Whether operator spans from ONNX Runtime's profiler are included. */
  opLevel: Type.Boolean(),
  /** Free-form notes shown with the trace (e.g. why a device was labelled shared). */
  notes: Type.Array(Type.String()),
});
export type TraceMeta = Static<typeof TraceMetaSchema>;

export const LaneSchema = Type.Object({
  /** Index of the device in `meta.devices`. */
  device: Type.Number(),
  /** Display label. */
  label: Type.String(),
  /** Group of lanes drawn together (the physical unit). */
  group: Type.String(),
});
export type Lane = Static<typeof LaneSchema>;

export const StepSchema = Type.Object({
  index: Type.Number(),
  startUs: Type.Number(),
  endUs: Type.Number(),
});
export type StepWindow = Static<typeof StepSchema>;

const NumArray = Type.Array(Type.Number());

/** Columnar spans. Every array has length `count`; -1 means "not applicable". */
export const SpanColumnsSchema = Type.Object({
  count: Type.Number(),
  /** Lane index. */
  lane: NumArray,
  /** Index into {@link SPAN_KINDS}. */
  kind: NumArray,
  /** Index into `strings`. */
  name: NumArray,
  /** Operator type (index into `strings`), -1 for non-operator spans. */
  opType: NumArray,
  /** Start, µs relative to `meta.startTimeUs`. */
  start: NumArray,
  /** Duration, µs. */
  dur: NumArray,
  step: NumArray,
  /** Micro-batch index (pipeline), -1 otherwise. */
  micro: NumArray,
  /** Pipeline stage, -1 otherwise. */
  stage: NumArray,
  /** Bytes moved (comm) or 0. */
  bytes: NumArray,
  /** Peer lane for point-to-point comm, -1 for collectives and non-comm spans. */
  peer: NumArray,
  /** Enclosing span (operator spans nest under their compute span), -1 for top level. */
  parent: NumArray,
  /** Bit flags, {@link SpanFlag}: 1 emulated, 2 predicted, 4 staging copy, 8 operator span, 16 synthetic data. */
  flags: NumArray,
  /** Idle cause, index into {@link IDLE_CAUSES}; 0 for non-idle spans. */
  cause: NumArray,
  /** Communication operation, index into {@link COMM_OPS}; 0 for other spans. Added in version 2. */
  comm: NumArray,
  /** Phase, index into {@link PHASES}. Added in version 2. */
  phase: NumArray,
  /**
   * CPU time (µs) the device's threads received during a compute span (Linux schedstat),
   * −1 where not measured (spans closer than 20 ms to the last measured one are sampled).
   * Beside `dur` it says how much of the machine the span got.
   * Added in version 2.
   */
  cpu: NumArray,
  /** Time (µs) the device's threads spent runnable but waiting for a core during the span, −1 where not measured. Added in version 2. */
  wait: NumArray,
});
export type SpanColumnsJson = Static<typeof SpanColumnsSchema>;

/** `spans` of a document whose columns are in a binary side file (version 3). */
export const SpanColumnsFileSchema = Type.Object({
  count: Type.Number(),
  /** The side file's name, in the document's folder (`x.parallax.json` → `x.parallax.spans`). */
  file: Type.String(),
  /** Random per write; the side file carries the same, so a pair from two writes is refused. */
  id: Type.String(),
  /** The side file's size in bytes. */
  bytes: Type.Number(),
});

export const TraceSchema = Type.Object({
  format: Type.Literal(TRACE_FORMAT_TAG),
  version: Type.Number(),
  meta: TraceMetaSchema,
  strings: Type.Array(Type.String()),
  lanes: Type.Array(LaneSchema),
  /** The timed steps: every timing, breakdown and finding is computed over these. */
  steps: Type.Array(StepSchema),
  /**
   * Operator-profiled steps, run after the timed ones under ONNX Runtime's operator profiler
   * (their compute spans carry {@link SpanFlag.profiled}); operator shares come from them.
   * Added in version 2.
   */
  profiledSteps: Type.Optional(Type.Array(StepSchema)),
  spans: Type.Union([SpanColumnsSchema, SpanColumnsFileSchema]),
  /** Derived; see src/profiler/summary.ts. */
  summary: Type.Optional(Type.Unknown()),
  /** Derived; see src/profiler/findings.ts. */
  findings: Type.Optional(Type.Array(Type.Unknown())),
});
/** Any valid trace document: span columns inline, or in a side file (version 3). */
export type TraceDocument = Static<typeof TraceSchema>;
/** A trace document with its span columns inline (every document `traceToJson` makes). */
export type TraceJson = Omit<TraceDocument, 'spans'> & { spans: SpanColumnsJson };

/** The span columns in memory: typed arrays, so millions of spans stay compact. */
export interface SpanColumns {
  count: number;
  lane: Int32Array;
  kind: Uint8Array;
  name: Int32Array;
  opType: Int32Array;
  start: Float64Array;
  dur: Float64Array;
  step: Int32Array;
  micro: Int32Array;
  stage: Int32Array;
  bytes: Float64Array;
  peer: Int32Array;
  parent: Int32Array;
  flags: Uint8Array;
  cause: Uint8Array;
  comm: Uint8Array;
  phase: Uint8Array;
  cpu: Float64Array;
  wait: Float64Array;
}

/** A trace in memory. */
export interface Trace {
  meta: TraceMeta;
  strings: string[];
  lanes: Lane[];
  steps: StepWindow[];
  /** Operator-profiled steps (see the schema). */
  profiledSteps?: StepWindow[];
  spans: SpanColumns;
  summary?: unknown;
  findings?: unknown[];
}

/** Names of the span columns, in file order. */
export const SPAN_COLUMNS = [
  'lane', 'kind', 'name', 'opType', 'start', 'dur', 'step', 'micro', 'stage', 'bytes', 'peer', 'parent', 'flags', 'cause', 'comm', 'phase', 'cpu', 'wait',
] as const;
export type SpanColumnName = (typeof SPAN_COLUMNS)[number];

/** Element type of each span column in memory. */
export const SPAN_COLUMN_TYPES: Record<SpanColumnName, 'i32' | 'u8' | 'f64'> = {
  lane: 'i32', kind: 'u8', name: 'i32', opType: 'i32', start: 'f64', dur: 'f64', step: 'i32', micro: 'i32',
  stage: 'i32', bytes: 'f64', peer: 'i32', parent: 'i32', flags: 'u8', cause: 'u8', comm: 'u8', phase: 'u8', cpu: 'f64', wait: 'f64',
};

/** The typed-array constructor of a span column. */
export function spanColumnCtor(c: SpanColumnName): Int32ArrayConstructor | Uint8ArrayConstructor | Float64ArrayConstructor {
  const type = SPAN_COLUMN_TYPES[c];
  return type === 'i32' ? Int32Array : type === 'u8' ? Uint8Array : Float64Array;
}

function allocColumn(c: SpanColumnName, n: number): Int32Array | Uint8Array | Float64Array {
  return new (spanColumnCtor(c))(n);
}

/** Allocates empty span columns for `n` spans. */
export function allocSpans(n: number): SpanColumns {
  const cols = { count: n } as Record<string, unknown>;
  for (const c of SPAN_COLUMNS) cols[c] = allocColumn(c, n);
  return cols as unknown as SpanColumns;
}

/** A string table: each distinct string once, spans refer to it by index. */
export class StringTable {
  readonly strings: string[] = [];
  private readonly index = new Map<string, number>();

  /** The index of `s`, adding it on first use. */
  intern(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.strings.length;
      this.strings.push(s);
      this.index.set(s, i);
    }
    return i;
  }
}

/** A span as a plain object, for tests, tooltips and small traces. */
export interface SpanRow {
  lane: number;
  kind: SpanKindName;
  name: string;
  opType?: string;
  start: number;
  dur: number;
  step?: number;
  micro?: number;
  stage?: number;
  bytes?: number;
  peer?: number;
  parent?: number;
  flags?: number;
  cause?: IdleCause;
  comm?: CommOp;
  phase?: Phase;
  cpu?: number;
  wait?: number;
}

/**
 * Accumulates spans and interns strings; `finish()` yields the trace's columns.
 * Used by the runner when it merges worker buffers, by importers and by the projection.
 */
export class TraceBuilder {
  private readonly table = new StringTable();
  readonly strings: string[] = this.table.strings;
  private cols: SpanColumns = allocSpans(1024);
  private n = 0;

  intern(s: string): number {
    return this.table.intern(s);
  }

  get count(): number {
    return this.n;
  }

  private ensure(extra: number): void {
    const need = this.n + extra;
    if (need <= this.cols.lane.length) return;
    let cap = this.cols.lane.length;
    while (cap < need) cap *= 2;
    const next = allocSpans(cap);
    for (const c of SPAN_COLUMNS) (next[c] as Float64Array).set(this.cols[c] as Float64Array);
    this.cols = next;
  }

  /** Appends one span; returns its index. */
  push(row: SpanRow): number {
    this.ensure(1);
    const i = this.n++;
    const c = this.cols;
    c.lane[i] = row.lane;
    c.kind[i] = SPAN_KINDS.indexOf(row.kind);
    c.name[i] = this.intern(row.name);
    c.opType[i] = row.opType === undefined ? -1 : this.intern(row.opType);
    c.start[i] = row.start;
    c.dur[i] = row.dur;
    c.step[i] = row.step ?? -1;
    c.micro[i] = row.micro ?? -1;
    c.stage[i] = row.stage ?? -1;
    c.bytes[i] = row.bytes ?? 0;
    c.peer[i] = row.peer ?? -1;
    c.parent[i] = row.parent ?? -1;
    c.flags[i] = row.flags ?? 0;
    c.cause[i] = row.cause === undefined ? 0 : IdleCauseCode[row.cause];
    c.comm[i] = row.comm === undefined ? 0 : CommOpCode[row.comm];
    c.phase[i] = row.phase === undefined ? 0 : PhaseCode[row.phase];
    c.cpu[i] = row.cpu ?? -1;
    c.wait[i] = row.wait ?? -1;
    return i;
  }

  /**
   * Appends a block of columns recorded elsewhere (a worker's buffer), remapping its local
   * string table, shifting times by `-timeZeroUs`, putting every span on `lane`, and
   * offsetting `parent` indices by the block's position.
   */
  appendBlock(
    block: {
      count: number;
      strings: string[];
      kind: ArrayLike<number>;
      name: ArrayLike<number>;
      opType: ArrayLike<number>;
      start: ArrayLike<number>;
      dur: ArrayLike<number>;
      step: ArrayLike<number>;
      micro: ArrayLike<number>;
      stage: ArrayLike<number>;
      bytes: ArrayLike<number>;
      peer: ArrayLike<number>;
      parent: ArrayLike<number>;
      flags: ArrayLike<number>;
      cause: ArrayLike<number>;
      comm: ArrayLike<number>;
      phase: ArrayLike<number>;
      cpu?: ArrayLike<number>;
      wait?: ArrayLike<number>;
    },
    lane: number,
    timeZeroUs: number,
    peerToLane: (peer: number) => number = (p) => p,
  ): void {
    const n = block.count;
    this.ensure(n);
    const remap = block.strings.map((s) => this.intern(s));
    const base = this.n;
    const c = this.cols;
    for (let j = 0; j < n; j++) {
      const i = base + j;
      c.lane[i] = lane;
      c.kind[i] = block.kind[j];
      c.name[i] = remap[block.name[j]];
      const op = block.opType[j];
      c.opType[i] = op < 0 ? -1 : remap[op];
      c.start[i] = block.start[j] - timeZeroUs;
      c.dur[i] = block.dur[j];
      c.step[i] = block.step[j];
      c.micro[i] = block.micro[j];
      c.stage[i] = block.stage[j];
      c.bytes[i] = block.bytes[j];
      const peer = block.peer[j];
      c.peer[i] = peer < 0 ? -1 : peerToLane(peer);
      const parent = block.parent[j];
      c.parent[i] = parent < 0 ? -1 : parent + base;
      c.flags[i] = block.flags[j];
      c.cause[i] = block.cause[j];
      c.comm[i] = block.comm[j];
      c.phase[i] = block.phase[j];
      c.cpu[i] = block.cpu ? block.cpu[j] : -1;
      c.wait[i] = block.wait ? block.wait[j] : -1;
    }
    this.n += n;
  }

  /** Trimmed columns. The builder should not be used afterwards. */
  finish(): SpanColumns {
    const out = allocSpans(this.n);
    for (const c of SPAN_COLUMNS) (out[c] as Float64Array).set((this.cols[c] as Float64Array).subarray(0, this.n));
    return out;
  }
}

/** Reads span `i` as an object (slow path: tooltips, tests, small exports). */
export function spanRow(trace: Pick<Trace, 'spans' | 'strings'>, i: number): SpanRow {
  const s = trace.spans;
  const row: SpanRow = {
    lane: s.lane[i],
    kind: SPAN_KINDS[s.kind[i]] ?? 'compute',
    name: trace.strings[s.name[i]] ?? '',
    start: s.start[i],
    dur: s.dur[i],
  };
  if (s.opType[i] >= 0) row.opType = trace.strings[s.opType[i]];
  if (s.step[i] >= 0) row.step = s.step[i];
  if (s.micro[i] >= 0) row.micro = s.micro[i];
  if (s.stage[i] >= 0) row.stage = s.stage[i];
  if (s.bytes[i] > 0) row.bytes = s.bytes[i];
  if (s.peer[i] >= 0) row.peer = s.peer[i];
  if (s.parent[i] >= 0) row.parent = s.parent[i];
  if (s.flags[i] !== 0) row.flags = s.flags[i];
  if (s.cause[i] !== 0) row.cause = IDLE_CAUSES[s.cause[i]];
  if (s.comm[i] !== 0) row.comm = COMM_OPS[s.comm[i]];
  if (s.phase[i] !== 0) row.phase = PHASES[s.phase[i]];
  if (s.cpu[i] >= 0) row.cpu = s.cpu[i];
  if (s.wait[i] >= 0) row.wait = s.wait[i];
  return row;
}

/** Converts an in-memory trace to its JSON document. */
export function traceToJson(trace: Trace): TraceJson {
  const spans = { count: trace.spans.count } as Record<string, unknown>;
  for (const c of SPAN_COLUMNS) spans[c] = Array.from(trace.spans[c] as ArrayLike<number>);
  const json: TraceJson = {
    format: TRACE_FORMAT_TAG,
    version: TRACE_FORMAT_VERSION,
    meta: trace.meta,
    strings: trace.strings,
    lanes: trace.lanes,
    steps: trace.steps,
    ...(trace.profiledSteps ? { profiledSteps: trace.profiledSteps } : {}),
    spans: spans as unknown as SpanColumnsJson,
  };
  if (trace.summary !== undefined) json.summary = trace.summary;
  if (trace.findings !== undefined) json.findings = trace.findings;
  return json;
}

// The span arrays hold millions of numbers; checking them element by element through the
// schema validator would dominate load time, so the schema check runs on the document with
// the columns stubbed out and the columns get a dedicated typed check below.
const HeaderSchema = Type.Object({ ...TraceSchema.properties, spans: Type.Object({ count: Type.Number() }) });
const headerCheck = TypeCompiler.Compile(HeaderSchema);

/** Thrown when a document is not a valid trace; the message says where and why. */
export class TraceFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TraceFormatError';
  }
}

/**
 * Brings a version-1 document to version 2: the `comm` column and the synthetic-data flag are
 * filled from the span names version 1 used (this migration is the one place that reads a
 * meaning out of a name), the
 * `phase` column marks top-level compute as forward, and `meta.plan` becomes a typed plan.
 */
function migrateV1(doc: Record<string, unknown>): Record<string, unknown> {
  const spans = doc['spans'] as Record<string, unknown> | undefined;
  const strings = doc['strings'];
  const meta = doc['meta'] as Record<string, unknown> | undefined;
  if (!spans || !Array.isArray(strings) || !meta) return doc;
  const n = typeof spans['count'] === 'number' ? spans['count'] : 0;
  const kind = spans['kind'];
  const name = spans['name'];
  const parent = spans['parent'];
  const flags = spans['flags'];
  const columnLike = (x: unknown): x is ArrayLike<number> => Array.isArray(x) || (ArrayBuffer.isView(x) && !(x instanceof DataView));
  if (!columnLike(kind) || !columnLike(name) || !columnLike(parent) || !columnLike(flags)) return doc;
  // The count sizes the new columns: it must be what the file holds, not just what it claims.
  if (!Number.isInteger(n) || n < 0 || kind.length !== n) return doc;
  // A host may hand over typed columns (the webview's binary path); new columns match them.
  const typed = ArrayBuffer.isView(kind);
  const comm: number[] | Uint8Array = typed ? new Uint8Array(n) : new Array<number>(n).fill(0);
  const phase: number[] | Uint8Array = typed ? new Uint8Array(n) : new Array<number>(n).fill(0);
  const unmeasured = (): number[] | Float64Array => (typed ? new Float64Array(n).fill(-1) : new Array<number>(n).fill(-1));
  const newFlags: number[] | Uint8Array = typed ? Uint8Array.from(flags) : Array.from(flags);
  // Parallax's own spans were named by operation (`send`, `allreduce.ring …`); imported
  // Kineto spans by collective (`nccl:all_reduce`).
  const byPrefix = (s: string): number => {
    if (s.startsWith('nccl:')) return commCodeOfCollective(s.slice(5));
    for (const op of COMM_OPS) if (op !== 'none' && s.startsWith(op)) return CommOpCode[op];
    return 0;
  };
  for (let i = 0; i < n; i++) {
    if (kind[i] === SpanKind.comm) {
      const s = String(strings[name[i] as number] ?? '');
      comm[i] = byPrefix(s);
      // Version 1 said that gradients were synthetic only in the name (`… (synthetic gradients)`).
      if (/\(synthetic\b/.test(s)) newFlags[i] = (newFlags[i] ?? 0) | SpanFlag.synthetic;
    } else if (kind[i] === SpanKind.compute && parent[i] === -1) phase[i] = PhaseCode.forward;
  }
  const plan = meta['plan'];
  const migratedPlan =
    plan && typeof plan === 'object' && !('mode' in plan) ? migrateV1Plan(String(meta['mode']), plan as Record<string, unknown>) : plan;
  // Version 1 called a one-device run mode `single`; it is a one-device data plan now, and
  // `meta.mode` follows the plan. `link` was never written and is no longer part of `meta`.
  const { link: _link, ...rest } = meta;
  const mode = migratedPlan && typeof migratedPlan === 'object' && 'mode' in migratedPlan ? migratedPlan['mode'] : meta['mode'];
  return { ...doc, version: 2, meta: { ...rest, mode, plan: migratedPlan }, spans: { ...spans, flags: newFlags, comm, phase, cpu: unmeasured(), wait: unmeasured() } };
}

/**
 * Brings an older trace document to the current version (columns may be plain or typed
 * arrays); documents of the current version, and anything that is not a trace, come back as
 * they are.
 */
export function upgradeTraceDocument(doc: unknown): unknown {
  if (typeof doc !== 'object' || doc === null) return doc;
  const version = (doc as { version?: unknown }).version;
  return typeof version === 'number' && version < 2 ? migrateV1(doc as Record<string, unknown>) : doc;
}

/** Span columns whose values were checked already, and the bounds they were checked against. */
export interface CheckedColumns {
  columns: SpanColumns;
  limits: SpanLimits;
}

/**
 * Validates a parsed JSON document and converts it to an in-memory trace. `checked` names
 * columns whose values were checked already (a side file's, checked while they were read):
 * a column is not checked again when it is the very array that was checked and the bounds
 * were the document's own; every other column, and everything else, is checked here.
 */
export function traceFromJson(input: unknown, checked?: CheckedColumns): Trace {
  let doc = input;
  if (typeof doc !== 'object' || doc === null || (doc as { format?: unknown }).format !== TRACE_FORMAT_TAG) {
    throw new TraceFormatError(`not a Parallax trace (missing "format": "${TRACE_FORMAT_TAG}")`);
  }
  const version = (doc as { version?: unknown }).version;
  if (typeof version !== 'number' || version > TRACE_FORMAT_VERSION) {
    throw new TraceFormatError(
      `trace format version ${String(version)} is newer than this Parallax understands (${TRACE_FORMAT_VERSION}); update Parallax`,
    );
  }
  doc = upgradeTraceDocument(doc);
  const rawSpans = (doc as { spans?: Record<string, unknown> }).spans;
  const header = { ...(doc as object), spans: { count: rawSpans?.['count'] } };
  if (!headerCheck.Check(header)) {
    const first = headerCheck.Errors(header).First();
    throw new TraceFormatError(`invalid trace at ${first?.path || '/'}: ${first?.message ?? 'schema mismatch'}`);
  }
  const j = doc as TraceJson;
  if (j.meta.mode !== j.meta.plan.mode) {
    throw new TraceFormatError(`invalid trace: meta.mode is "${j.meta.mode}" but meta.plan.mode is "${j.meta.plan.mode}"; they must agree`);
  }
  const n = j.spans.count;
  if (!Number.isInteger(n) || n < 0) throw new TraceFormatError('invalid trace: spans.count is not a count');
  if (n > MAX_TRACE_SPANS) throw new TraceFormatError(`invalid trace: spans.count ${n} is more than the ${MAX_TRACE_SPANS} spans Parallax reads`);
  if (typeof (j.spans as { file?: unknown }).file === 'string') {
    throw new TraceFormatError('its spans are in a side file (.spans); open the .parallax.json file itself, with the .spans file beside it');
  }
  // Every column must hold the count it claims before anything is allocated for it.
  for (const c of SPAN_COLUMNS) {
    const col = (j.spans as Record<string, unknown>)[c];
    if (!(Array.isArray(col) || col instanceof spanColumnCtor(c)) || (col as ArrayLike<number>).length !== n) {
      throw new TraceFormatError(`invalid trace: spans.${c} must be an array of ${n} numbers`);
    }
  }
  const cols: Record<string, unknown> = { count: n };
  for (const c of SPAN_COLUMNS) {
    const col = (j.spans as Record<string, unknown>)[c] as ArrayLike<unknown>;
    if (col instanceof spanColumnCtor(c)) {
      // Columns read from a side file (or posted as typed arrays) are taken as they are; only
      // floating-point columns can hold a value that is not finite.
      cols[c] = col;
      continue;
    }
    const dst = allocColumn(c, n);
    for (let i = 0; i < n; i++) {
      const v = col[i];
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw new TraceFormatError(`invalid trace: spans.${c}[${i}] is not a finite number`);
      }
      dst[i] = v;
    }
    cols[c] = dst;
  }
  const spans = cols as unknown as SpanColumns;
  const limits: SpanLimits = { spans: n, strings: j.strings.length, lanes: j.lanes.length };
  const sameLimits = checked !== undefined && checked.limits.spans === n && checked.limits.strings === limits.strings && checked.limits.lanes === limits.lanes;
  const problem = spanColumnsProblem(spans, limits, (c) => sameLimits && checked.columns[c] === spans[c]);
  if (problem) throw new TraceFormatError(problem);
  const trace: Trace = { meta: j.meta, strings: j.strings, lanes: j.lanes, steps: j.steps, spans, ...(j.profiledSteps ? { profiledSteps: j.profiledSteps } : {}) };
  if (j.summary !== undefined) trace.summary = j.summary;
  if (j.findings !== undefined) trace.findings = j.findings;
  return trace;
}
