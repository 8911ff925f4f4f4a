/**
 * Message protocols of the runtime, one per channel, named by direction:
 *  - caller (CLI / extension host) ⇄ runner process: {@link ToRunner} / {@link FromRunner};
 *  - runner ⇄ device worker thread: {@link ToDevice} / {@link FromDevice}.
 * Every incoming message is checked with the `is*` guards before use.
 */
import type { SpanColumnsLocal } from './spans';
import type { Plan } from '../profiler/plan';
import type { GpuBusy } from '../profiler/ort-profile';
import type { DeviceProgram, Program, TrainingProgram } from '../profiler/program';
import type { DeviceInfo } from './device/discovery';

export type { ParallelMode, Plan } from '../profiler/plan';

/** Timed steps a profile runs when none are asked for (the CLI, the extension's settings). */
export const DEFAULT_STEPS = 20;
/**
 * Seconds the timed steps of an inference profile last at least when no step count is asked
 * for: twenty sub-millisecond steps are over in 10 ms, and their median is that of whatever
 * state the machine was in for those milliseconds (see the runner's timedStepsFor).
 */
export const DEFAULT_MIN_TIME_S = 0.5;

/** What to profile and how; the runner's whole input. The parallel part is the typed {@link Plan}. */
export interface ProfileRequest {
  /** Model file to load (absolute path). */
  modelPath: string;
  /** How the model is named in output (the path as the user gave it, or `demo`). */
  modelLabel: string;
  /** Mode, devices, batch, steps and the mode's own fields. */
  plan: Plan;
  /** Record spans at all (off only for overhead benchmarks). */
  capture: boolean;
  /**
   * Measure what capture costs in this run: the timed steps run again with spans off, in
   * blocks alternating with the captured ones, and the summary compares the two step times.
   * Inference only (extra steps would train the weights further).
   */
  captureCheck?: boolean;
  /**
   * Inference: also measure a second operating point (half the timed steps, interleaved, on
   * workers of its own) — a pipeline at the next micro-batch count that divides the batch, a
   * data plan at twice the batch — so that predictions for other counts and batches rest on
   * two measured points. On unless false.
   */
  probe?: boolean;
  /** Merge ONNX Runtime's operator-level profile under each compute span. */
  opLevel: boolean;
  /** Measure the one-device baseline in the same command (speedup and numerical check). */
  baseline: boolean;
  /** Name of the batch dimension, when it cannot be found automatically. */
  batchDim?: string;
  /** Values of other symbolic dimensions. */
  dims?: Record<string, number>;
  /** Full shapes per input (their batch axis is replaced by `batch`). */
  inputShapes?: Record<string, number[]>;
  /** A .npy or .json file with the inputs to use instead of random data. */
  inputsFile?: string;
  /**
   * Values of inputs shared by every row (`--value sr=16000`): every element of the input
   * holds the value; they take precedence over `inputsFile`.
   */
  values?: Record<string, number>;
  /** Where to write the trace (atomically); null keeps it in memory only. */
  outPath: string | null;
  /** Stop after compiling the program, reporting it without running it. */
  dryRun?: boolean;
  /**
   * Inference: the timed steps last at least this long (ms). Where `plan.steps` of the step
   * time the warm-up measured take less, the run times more steps (at most MAX_TIMED_STEPS)
   * and the trace's plan records how many. Absent or 0: exactly `plan.steps`. Not with
   * training (every step trains) nor the capture check.
   */
  minTimedMs?: number;
  /** On a poorly measured run, hold timing findings back (default) or show them with a caveat. */
  adviceOnPoorQuality?: 'hold' | 'show';
  /** Memory per device to check the run and the other plans against (`--device-memory`), bytes. */
  deviceMemory?: number;
}

/** A progress report from the runner. */
export interface Progress {
  phase: 'load' | 'warmup' | 'baseline' | 'steps' | 'analyse' | 'write';
  /** Units done and total in this phase (steps for `baseline` and `steps`). */
  done: number;
  total: number;
  message: string;
}

/**
 * A runner process serves one request, `start` (profile a plan) or `devices` (discover the
 * machine's devices, for callers such as the VS Code extension host that must not load
 * ONNX Runtime themselves), then exits. `cancel` aborts a running request.
 */
export type ToRunner =
  | { type: 'start'; request: ProfileRequest }
  | {
      type: 'devices';
      /** Run the WebGPU probe (about a second); false reports WebGPU as not probed. */
      probeWebGpu: boolean;
    }
  | { type: 'cancel' };

export type FromRunner =
  | { type: 'progress'; progress: Progress }
  | {
      type: 'result';
      tracePath: string | null;
      /** Null for a dry run. */
      summary: unknown;
      findings: unknown[];
      /** The program (and, for a pipeline, the partition) that was or, for a dry run, would be run, as text and data. */
      planText?: string;
      planInfo?: unknown;
    }
  /** Answer to `devices`: a `DiscoveredDevices` (runtime/device/discovery), structured-cloned. */
  | { type: 'devices'; devices: unknown }
  | { type: 'error'; message: string; user: boolean };

export function isToRunner(m: unknown): m is ToRunner {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return (
    (t === 'start' && typeof (m as { request?: unknown }).request === 'object') ||
    (t === 'devices' && typeof (m as { probeWebGpu?: unknown }).probeWebGpu === 'boolean') ||
    t === 'cancel'
  );
}

export function isFromRunner(m: unknown): m is FromRunner {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  if (t === 'devices') {
    const d = (m as { devices?: unknown }).devices;
    return typeof d === 'object' && d !== null;
  }
  return t === 'progress' || t === 'result' || t === 'error';
}

/** One model input as shared with device workers: the global batch lives in shared memory. */
export interface SharedInput {
  name: string;
  /** ONNX Runtime tensor type, e.g. `float32`, `int64`. */
  dtype: string;
  /** Global dims (batch axis at its full size). */
  dims: number[];
  /** Axis that is split across data-parallel devices; null for inputs without a batch. */
  batchAxis: number | null;
  data: SharedArrayBuffer;
}

/** Device settings a worker needs to open its session. */
export interface WorkerDevice {
  id: string;
  kind: 'cpu' | 'webgpu' | 'cuda';
  executionProviders: DeviceInfo['executionProviders'];
  intraOpNumThreads: number;
}

export interface DeviceInit {
  type: 'init';
  rank: number;
  worldSize: number;
  device: WorkerDevice;
  /** This device's part of the program: its segments and the instructions of one step. */
  program: DeviceProgram;
  /** Model file of every segment this device loads, by segment id. */
  segmentPaths: Record<number, string>;
  /** Graph outputs and their batch axes (from the program). */
  outputs: Program['outputs'];
  /** Shared buffers collectives work on (from the program). */
  buffers: Program['buffers'];
  /** Rows per step, to size gathered outputs. */
  batch: number;
  /** The shared global batch. */
  inputs: SharedInput[];
  /** ONNX Runtime graph optimisation level (`all` unless calibrating by node name). */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Shared barrier/communication state (see runtime/comm), absent for a single device. */
  comm: unknown;
  /**
   * Communication groups of the proper sub-groups this device's collectives run over (see
   * runtime/comm/subgroups.ts), each with its ranks in the run; absent when every collective
   * spans the whole run.
   */
  subComms?: { group: number[]; comm: unknown }[];
  /**
   * µs this device polls a peer's counter before sleeping in a wait on it (`comm` and
   * `subComms`); absent: the communicator's short default (see runner/workers.ts `commSpinUs`).
   */
  commSpinUs?: number;
  /**
   * The communication threads' group (see device/comm-thread.ts), when the program starts
   * collectives that overlap its compute (`collective-start`) on more than one device.
   */
  commThreads?: unknown;
  /** Timed steps the runner will ask for in all (sizes the step-time arrays). */
  steps: number;
  /** Steps of the capture check the runner will ask for (0 or absent: none). */
  checkSteps?: number;
  /** Record spans of timed steps. */
  capture: boolean;
  /**
   * After the timed steps, run operator-profiled steps (ONNX Runtime's operator profiler on a
   * second session per segment) for operator detail. Timed steps never run under it.
   */
  opLevel: boolean;
  /** Folder for ONNX Runtime's profile files. */
  profileDir: string;
  /**
   * A training program's part (absent for inference): what to keep resident, and the initial
   * value of every parameter (the same for every replica), float32 in shared memory.
   */
  training?: { program: TrainingProgram; initial: Record<string, SharedArrayBuffer> };
}

/**
 * The runner drives the device workers in blocks of steps, so that two groups (the one-device
 * baseline and the parallel run) can alternate: `run` runs `steps` steps numbered from
 * `first` (negative numbers: warm-up, not recorded), every block starting at a barrier of the
 * group; `finish` runs the operator-profiled steps (if any) and reports everything.
 */
export type ToDeviceControl =
  /**
   * `uncaptured`: a block of the capture check (`ProfileRequest.captureCheck`): the same steps
   * with span capture off, their windows kept apart from the timed ones (`checkStart`/`checkEnd`).
   */
  | {
      type: 'run';
      first: number;
      steps: number;
      record: boolean;
      uncaptured?: boolean;
      /** The run's timed steps from now on (sent with the first timed block when the runner lengthened a short-step run; see ProfileRequest.minTimedMs). */
      totalSteps?: number;
    }
  | { type: 'finish'; profiledSteps: number };

export type ToDevice = DeviceInit | ToDeviceControl;

/** An output of one device as gathered into shared memory. */
export interface SharedOutput {
  name: string;
  dtype: string;
  dims: number[];
  data: SharedArrayBuffer;
}

/** The outputs of one run of a segment: their names, element types and dimensions. */
export interface SegmentOutputs {
  segment: number;
  tensors: { name: string; dtype: string; dims: number[] }[];
}

export type FromDevice =
  | { type: 'ready'; rank: number; loadMs: number }
  | { type: 'step'; rank: number; step: number }
  /**
   * A `run` block is done on this device. `faultsPerStep`: minor page faults of the device's
   * thread per step of the block (warm-up blocks, Linux only).
   */
  | { type: 'block'; rank: number; faultsPerStep?: number }
  | {
      type: 'done';
      rank: number;
      /** Per timed step: start (after the step barrier) and end, µs on the shared clock. */
      stepStart: Float64Array;
      stepEnd: Float64Array;
      /** Per operator-profiled step: start and end (empty without them). */
      profiledStart: Float64Array;
      profiledEnd: Float64Array;
      /** Per step of the capture check (spans off): start and end (empty without it). */
      checkStart: Float64Array;
      checkEnd: Float64Array;
      spans: SpanColumnsLocal | null;
      /** Gathered outputs: full-batch buffers holding the rows this device gathered. */
      outputs: SharedOutput[];
      /** Operator events that could not be matched to a run, if any (diagnostics). */
      notes: string[];
      /** Which threads the compute spans' `cpu`/`wait` columns count. */
      schedThreads: 'worker+pool' | 'worker' | 'none';
      /** WebGPU: the GPU's busy time over the operator-profiled runs, from its timestamps (absent when none were given). */
      gpu?: GpuBusy;
      /**
       * A training run's results: this device's loss per timed step (its rows' mean), and
       * (rank 0 only; every stage in pipeline mode, each holding its own) the parameters after
       * the timed steps, before any profiled step. A pipeline stage also reports the most
       * micro-batches of activations it kept between forward and backward, and their bytes.
       */
      training?: { losses: Float64Array; parameters: Record<string, Float32Array> | null; stash?: { peakMicroBatches: number; peakBytes: number } };
      /**
       * Per segment the device ran, the element type and dimensions of every output of its
       * first run (the shapes the run actually produced, for the memory per device).
       */
      segmentOutputs?: SegmentOutputs[];
    }
  | { type: 'error'; rank: number; message: string; user: boolean };

export function isFromDevice(m: unknown): m is FromDevice {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return (t === 'ready' || t === 'step' || t === 'block' || t === 'done' || t === 'error') && typeof (m as { rank?: unknown }).rank === 'number';
}

export function isToDevice(m: unknown): m is ToDevice {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === 'init' || t === 'run' || t === 'finish';
}
