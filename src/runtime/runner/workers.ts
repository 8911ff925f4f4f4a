/**
 * Executes a compiled program: one worker thread per device, each running the interpreter
 * (runtime/device/interpreter.ts) on its part of the program, and collects what they measured.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { findPackageFile } from '../../common/package-file';
import { CancelledError, UserError } from '../../common/errors';
import type { DeviceInit, FromDevice, Progress, SharedInput, ToDeviceControl } from '../protocol';
import { isFromDevice } from '../protocol';
import type { Program, TrainingProgram } from '../../profiler/program';
import type { DeviceInfo } from '../device/discovery';
import { createCommGroup } from '../comm/communicator';
import { collectiveSubgroups } from '../comm/subgroups';

export interface RunnerHooks {
  progress(p: Progress): void;
  signal?: AbortSignal;
}

export { CancelledError };

/**
 * µs a device rank polls before sleeping when it waits for a peer (a collective's or a
 * channel's counter), where the run's threads fit the cores. A futex wake-up of an idle
 * core costs about 60 µs on the 2-core EPYC VM (two threads ping-ponging through shared
 * memory: 115 µs round trip sleeping, 1.6 µs polling), paid at every wait on a peer that
 * is still computing: once per split layer of a tensor-parallel step, once per micro-batch
 * hand-off of a pipeline. Polling for 2 ms covers the skews these programs have between
 * devices; ONNX Runtime's intra-op pool and NCCL poll the same way. Longer waits (a
 * pipeline's fill) sleep after the 2 ms.
 */
export const DEVICE_SPIN_US = 2000;

/**
 * The poll budget of the device ranks of a run (`DeviceInit.commSpinUs`): {@link DEVICE_SPIN_US}
 * when every thread the run computes on has a core of its own (each CPU device's intra-op
 * threads, one host thread per other device, and the communication threads when the
 * program overlaps collectives with compute), and no device computes on the host CPU behind
 * another's back (a software GPU, devices sharing a unit). Otherwise undefined: the
 * communicator's short default, since a poll then takes a core another thread needs.
 */
export function commSpinUs(devices: readonly Pick<DeviceInfo, 'kind' | 'intraOpNumThreads' | 'software' | 'sharesPhysicalUnit'>[], cores: number, commThreads: boolean): number | undefined {
  if (devices.length < 2 || devices.some((d) => d.software || d.sharesPhysicalUnit)) return undefined;
  const threads = devices.reduce((a, d) => a + (d.kind === 'cpu' ? Math.max(1, d.intraOpNumThreads) : 1), 0) + (commThreads ? devices.length : 0);
  return threads <= cores ? DEVICE_SPIN_US : undefined;
}

/**
 * The bundled device worker: beside this file in dist/, or (when the runtime runs from
 * source, as in-process tests do) in the package's dist/.
 */
function workerFile(): string {
  const f = findPackageFile(__dirname, ['device-worker.js', join('dist', 'device-worker.js')]);
  if (!f) throw new Error('dist/device-worker.js not found; run `npm run build` first');
  return f;
}

/**
 * How long a failed group waits for its other workers to come back from a request before
 * ending them. A worker ended while ONNX Runtime is inside a call (loading a model the
 * other device just found invalid) can abort the whole process from native code
 * ("terminate called after throwing an instance of 'Napi::Error'"); they usually fail the
 * same way within milliseconds.
 */
const SETTLE_MS = 10_000;

/** Groups not yet closed, so the runner can let them settle before it exits. */
const liveGroups = new Set<WorkerGroup>();

/** Waits until every worker group has closed (each waits for its busy workers, within {@link SETTLE_MS}). */
export async function settleWorkers(): Promise<void> {
  await Promise.all([...liveGroups].map((g) => g.close()));
}

/** A group of device workers driven through one step loop. */
class WorkerGroup {
  readonly workers: Worker[] = [];
  private readonly waiters = new Map<string, { resolve: (m: FromDevice) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Ranks with a request in flight (no answer yet): possibly inside ONNX Runtime. */
  private readonly busy = new Set<number>();
  private settled: () => void = () => {};
  onStep: (step: number) => void = () => {};

  constructor(n: number, signal?: AbortSignal) {
    const file = workerFile();
    for (let r = 0; r < n; r++) {
      const w = new Worker(file);
      w.on('message', (m: unknown) => this.onMessage(m));
      w.on('error', (e) => this.fail(new Error(`device worker ${r} crashed: ${e.message}`)));
      w.on('exit', (code) => {
        this.idle(r);
        if (code !== 0 && !this.closed) this.fail(new Error(`device worker ${r} exited with code ${code}`));
      });
      this.workers.push(w);
    }
    liveGroups.add(this);
    signal?.addEventListener('abort', () => this.fail(new CancelledError()), { once: true });
  }

  /** Sends a request to worker `rank`, which is busy until it answers. */
  post(rank: number, m: unknown): void {
    this.busy.add(rank);
    this.workers[rank]!.postMessage(m);
  }

  private idle(rank: number): void {
    this.busy.delete(rank);
    if (this.busy.size === 0) this.settled();
  }

  private onMessage(m: unknown): void {
    if (!isFromDevice(m)) return;
    if (m.type === 'step') {
      this.onStep(m.step);
      return;
    }
    this.idle(m.rank);
    if (m.type === 'error') {
      this.fail(m.user ? new UserError(m.message) : new Error(`device ${m.rank}: ${m.message}`));
      return;
    }
    const key = `${m.type}:${m.rank}`;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      w.resolve(m);
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.values()) w.reject(e);
    this.waiters.clear();
    // A cancel ends the workers at once (the caller kills the runner if that hangs); any
    // other failure lets busy workers come back first.
    void this.close(!(e instanceof CancelledError));
  }

  /** Waits for message `type` from every rank. */
  waitAll<T extends FromDevice['type']>(type: T): Promise<Extract<FromDevice, { type: T }>[]> {
    return Promise.all(
      this.workers.map(
        (_, r) =>
          new Promise<FromDevice>((resolve, reject) => {
            if (this.failure) return reject(this.failure);
            this.waiters.set(`${type}:${r}`, { resolve, reject });
          }),
      ),
    ) as Promise<Extract<FromDevice, { type: T }>[]>;
  }

  /** Ends the workers, after waiting (up to {@link SETTLE_MS}) for busy ones to answer when `settle`. */
  close(settle = true): Promise<void> {
    this.closing ??= (async () => {
      if (settle && this.busy.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, SETTLE_MS);
          this.settled = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.closed = true;
      await Promise.all(this.workers.map((w) => w.terminate()));
      liveGroups.delete(this);
    })();
    return this.closing;
  }
}

/** How a program is run: everything a device needs besides its part of the program. */
export interface ExecuteOptions {
  devices: DeviceInfo[];
  /** Model file of each segment id. */
  segmentPaths: Record<number, string>;
  inputs: SharedInput[];
  steps: number;
  warmup: number;
  capture: Capture;
  /** Steps of the capture check (the timed steps again with spans off), 0 or absent: none. */
  checkSteps?: number;
  profileDir: string;
  graphOptimizationLevel?: DeviceInit['graphOptimizationLevel'];
  /** A training program's initial parameter values (float32, shared by every replica). */
  initialWeights?: Record<string, SharedArrayBuffer>;
  /** Per rank, the initial values of that device's own parameters (tensor-parallel slices), in place of {@link initialWeights}. */
  initialWeightsByRank?: Record<string, SharedArrayBuffer>[];
  /** Progress phase and message of this execution. */
  phase: Progress['phase'];
  message: string;
}

/**
 * What a run records. The one-device baseline and the parallel run are built from the same
 * value, so their timed steps are measured alike; timed steps never run under ONNX
 * Runtime's operator profiler (`profiledSteps` extra steps after them do, when > 0).
 */
export interface Capture {
  spans: boolean;
  profiledSteps: number;
}

export type DoneMessage = Extract<FromDevice, { type: 'done' }>;

/**
 * A warm-up block whose device threads faulted in at most this many pages a step counts as
 * settled. A session run's outputs reach JavaScript in new buffers, freed when V8 collects
 * (see the interpreter's onRun); until the heap has grown to hold a block's worth, each
 * step's outputs fault in fresh pages. PP-OCR cls, pipeline cpu:2, M=2 (0.3 MB out of stage
 * 0 a run): the probe's first stage faulted 73–146 pages a step through its first timed
 * block after three warm-up steps (about 12 µs each on a virtual machine), and 0–1 in its
 * second; the timed run's, on the calibration's arenas, 0–1.
 */
export const WARMUP_SETTLED_FAULTS = 32;
/** At most this many warm-up steps beyond the asked ones, and for at most this long. */
const WARMUP_EXTRA_MAX_STEPS = 20;
const WARMUP_EXTRA_MAX_MS = 2000;
/**
 * Warm-up lasts at least this long (more steps than asked where the asked ones take less),
 * at most WARMUP_MIN_TIME_MAX_STEPS more. A few sub-millisecond steps are over before V8 has
 * optimised the step's code and the caches hold the run's data: openWakeWord's
 * melspectrogram (0.3 ms steps, data cpu:2, 2-core VM), capture check with capture off on
 * both sides, read its first timed block 3–9 % slower than the same steps interleaved with
 * it after 3 warm-up steps, and 0–3 % after 200 ms of warm-up; the median over runs of the
 * whole comparison went from 1.3 % to 0.4 %.
 */
export const WARMUP_MIN_MS = 200;
const WARMUP_MIN_TIME_MAX_STEPS = 2000;
/**
 * After WARMUP_MIN_MS, warm-up runs on in windows of WARMUP_WINDOW_MS while the step time
 * still falls: it stops at the first window (from the second on) that is not faster than
 * every earlier window by more than WARMUP_SETTLE_TOL, or after WARMUP_SETTLE_MAX_MS. Two
 * device threads handing micro-batches or shards to each other take far longer to reach
 * their steady step than one thread alone. silero VAD v5 and openWakeWord's melspectrogram,
 * pipeline cpu:2 (0.4–0.8 ms steps, 2-core VM), in 100 ms windows after the 200 ms:
 * 1.07, 0.74, 0.83, 0.86, 0.83, 0.69, 0.65, 0.71 ms… and 1.10, 0.92, 1.10, 0.86, 0.79, 0.79,
 * 0.77, 0.75 ms…, settled only after another 0.6–0.8 s; the one-device baseline's windows
 * were flat from the first. With 200 ms of warm-up alone, those runs' first timed block
 * measured 1.13–1.25× their median and the four blocks' medians spread so far that another
 * run could not repeat them (an imbalance finding of 5 % fired in one run of five); with
 * 1 s of warm-up the blocks agreed within 1–5 % and the median step fell 8–15 %.
 */
export const WARMUP_WINDOW_MS = 200;
export const WARMUP_SETTLE_TOL = 0.03;
export const WARMUP_SETTLE_MAX_MS = 2000;

/**
 * Whether warm-up goes on after windows whose per-step times were `windows` (oldest
 * first): from the second window on, only while the latest is faster than every earlier
 * one by more than WARMUP_SETTLE_TOL.
 */
export function stillSettling(windows: readonly number[]): boolean {
  if (windows.length < 2) return true;
  const latest = windows[windows.length - 1]!;
  const best = Math.min(...windows.slice(0, -1));
  return latest < best * (1 - WARMUP_SETTLE_TOL);
}

/** A device group that has loaded its program and runs it in blocks of steps. */
export class ProgramRun {
  private readonly group: WorkerGroup;
  private next = 0;

  private constructor(
    readonly program: Program,
    private o: ExecuteOptions,
    private readonly hooks: RunnerHooks,
  ) {
    this.group = new WorkerGroup(program.devices.length, hooks.signal);
  }

  /** Starts one worker per device and loads the program's segments. */
  static async start(program: Program, o: ExecuteOptions, hooks: RunnerHooks): Promise<ProgramRun> {
    const n = program.devices.length;
    if (n !== o.devices.length) throw new Error(`program for ${n} devices run on ${o.devices.length}`);
    const run = new ProgramRun(program, o, hooks);
    try {
      await run.load();
    } catch (e) {
      await run.close();
      throw e;
    }
    return run;
  }

  private async load(): Promise<void> {
    const { program, o, group } = this;
    const n = program.devices.length;
    // Collectives that overlap compute run on a communication thread per device, in a group
    // of their own, on buffers the devices allocate themselves; the others get the arena.
    const started = new Set(program.devices.flatMap((d) => d.instructions.flatMap((i) => (i.op === 'collective-start' ? [i.buffer] : []))));
    // A collective over part of the run (a hybrid's replica) runs in a group of its own,
    // whose arena holds that group's buffers rather than the run's.
    const subgroups = collectiveSubgroups(program);
    const inSubgroup = new Set(subgroups.flatMap((g) => g.buffers));
    const arenaBytes = program.buffers.reduce((a, b) => a + (started.has(b.name) || inSubgroup.has(b.name) ? 0 : b.elements * 4), 0);
    const comm = n > 1 ? createCommGroup(n, arenaBytes > 0 ? { arenaBytes: arenaBytes + 4096 } : {}) : null;
    const commThreads = n > 1 && started.size > 0 ? createCommGroup(n) : null;
    const subComms = subgroups.map(({ group, buffers }) => {
      const bytes = program.buffers.reduce((a, b) => a + (buffers.includes(b.name) && !started.has(b.name) ? b.elements * 4 : 0), 0);
      return { group, comm: createCommGroup(group.length, bytes > 0 ? { arenaBytes: bytes + 4096 } : {}) };
    });
    const readyP = group.waitAll('ready');
    const spinUs = commSpinUs(o.devices, availableParallelism(), commThreads !== null);
    o.devices.forEach((d, rank) => {
      const init: DeviceInit = {
        type: 'init',
        rank,
        worldSize: n,
        device: { id: d.id, kind: d.kind, executionProviders: d.executionProviders, intraOpNumThreads: d.intraOpNumThreads },
        program: program.devices[rank],
        segmentPaths: o.segmentPaths,
        outputs: program.outputs,
        buffers: program.buffers,
        batch: program.batch,
        inputs: o.inputs,
        comm,
        ...(commThreads ? { commThreads } : {}),
        ...(spinUs !== undefined ? { commSpinUs: spinUs } : {}),
        ...(subComms.some((c) => c.group.includes(rank)) ? { subComms: subComms.filter((c) => c.group.includes(rank)) } : {}),
        steps: o.steps,
        ...(o.checkSteps ? { checkSteps: o.checkSteps } : {}),
        capture: o.capture.spans,
        opLevel: o.capture.profiledSteps > 0,
        profileDir: o.profileDir,
        ...(o.graphOptimizationLevel ? { graphOptimizationLevel: o.graphOptimizationLevel } : {}),
        ...(trainingOf(program, rank) && (o.initialWeightsByRank?.[rank] ?? o.initialWeights) ? { training: { program: trainingOf(program, rank)!, initial: (o.initialWeightsByRank?.[rank] ?? o.initialWeights)! } } : {}),
      };
      group.post(rank, init);
    });
    await readyP;
    group.onStep = (step) => this.hooks.progress({ phase: this.o.phase, done: step + 1, total: this.o.steps, message: this.o.message });
  }

  private nextCheck = 0;

  private async block(first: number, steps: number, record: boolean, uncaptured = false): Promise<Extract<FromDevice, { type: 'block' }>[]> {
    if (steps <= 0) return [];
    const done = this.group.waitAll('block');
    const total = record && this.resized ? { totalSteps: this.o.steps } : {};
    if (record) this.resized = false;
    const m: ToDeviceControl = { type: 'run', first, steps, record, ...(uncaptured ? { uncaptured } : {}), ...total };
    this.group.workers.forEach((_, r) => this.group.post(r, m));
    return await done;
  }

  /**
   * Warm-up steps run beyond the asked ones: to last WARMUP_MIN_MS, until the step time
   * stopped falling (`settle`), and until the workers' memory stopped growing.
   */
  extraWarmup = { minTime: 0, settle: 0, memory: 0 };
  /**
   * The shortest time a step took in the warm-up's blocks, ms (a block's wall time over its
   * steps, so a little over a step; the first block's includes the first, slow runs); null
   * before an inference warm-up.
   */
  warmupStepMs: number | null = null;
  private resized = false;

  /** The timed steps of this run: before the first timed block only (the devices size their step records from it). */
  setSteps(steps: number): void {
    if (this.next > 0 || this.nextCheck > 0) throw new Error('the timed steps were resized after they started');
    if (steps === this.o.steps) return;
    this.o = { ...this.o, steps };
    this.resized = true;
  }

  /** The timed steps of this run. */
  get steps(): number {
    return this.o.steps;
  }

  /**
   * The unrecorded warm-up steps (at least one: first runs are slow); with `blockSteps` > 0
   * (not when training: each step updates the weights, and the baseline's must match), more
   * until the warm-up has lasted WARMUP_MIN_MS, then while the step time still falls (see
   * WARMUP_WINDOW_MS), then, while a device's thread faulted in more
   * than WARMUP_SETTLED_FAULTS pages a step, blocks of `blockSteps` more (the timed blocks'
   * length, so that the heap grows to what a timed block between two collections needs), at
   * most WARMUP_EXTRA_MAX_STEPS and WARMUP_EXTRA_MAX_MS more. Workers whose malloc arenas are
   * new (a probe's, a baseline's) otherwise grow their heaps through their first timed block,
   * while the timed run's workers take over the arenas the calibration left.
   */
  async warmup(blockSteps = 0): Promise<void> {
    const n = Math.max(1, this.o.warmup);
    const start = performance.now();
    let last = await this.block(-n, n, false);
    if (blockSteps <= 0) return;
    // Blocks sized from the last one's step time (the first steps are the slowest, so each
    // estimate falls short rather than over) until the warm-up has lasted WARMUP_MIN_MS.
    let perStep = (performance.now() - start) / n;
    this.warmupStepMs = perStep;
    while (performance.now() - start < WARMUP_MIN_MS && this.extraWarmup.minTime < WARMUP_MIN_TIME_MAX_STEPS) {
      const w = await this.warmWindow(WARMUP_MIN_MS - (performance.now() - start), perStep, WARMUP_MIN_TIME_MAX_STEPS - this.extraWarmup.minTime);
      ({ last, stepMs: perStep } = w);
      this.extraWarmup.minTime += w.steps;
    }
    // Then while the step time still falls (see WARMUP_WINDOW_MS).
    const windows: number[] = [];
    const s0 = performance.now();
    while (performance.now() - s0 < WARMUP_SETTLE_MAX_MS && this.extraWarmup.settle < WARMUP_MIN_TIME_MAX_STEPS) {
      const w = await this.warmWindow(WARMUP_WINDOW_MS, perStep, WARMUP_MIN_TIME_MAX_STEPS - this.extraWarmup.settle);
      ({ last, stepMs: perStep } = w);
      this.extraWarmup.settle += w.steps;
      windows.push(perStep);
      if (!stillSettling(windows)) break;
    }
    const k = Math.max(1, Math.min(blockSteps, WARMUP_EXTRA_MAX_STEPS));
    const t0 = performance.now();
    while (
      this.extraWarmup.memory + k <= WARMUP_EXTRA_MAX_STEPS &&
      performance.now() - t0 < WARMUP_EXTRA_MAX_MS &&
      last.some((b) => (b.faultsPerStep ?? 0) > WARMUP_SETTLED_FAULTS)
    ) {
      last = await this.block(-k, k, false);
      this.extraWarmup.memory += k;
    }
  }

  /**
   * One unrecorded warm-up block of about `ms` at `perStep` ms a step (at least one step, at
   * most `room`): its devices' reports, its step time and its steps. Keeps warmupStepMs the
   * shortest step time seen.
   */
  private async warmWindow(ms: number, perStep: number, room: number): Promise<{ last: Extract<FromDevice, { type: 'block' }>[]; stepMs: number; steps: number }> {
    const steps = Math.max(1, Math.min(room, Math.ceil(ms / Math.max(perStep, 1e-3))));
    const t = performance.now();
    const last = await this.block(-steps, steps, false);
    const stepMs = (performance.now() - t) / steps;
    this.warmupStepMs = Math.min(this.warmupStepMs ?? Infinity, stepMs);
    return { last, stepMs, steps };
  }

  /** The next `steps` timed steps. */
  async timed(steps: number): Promise<void> {
    const k = Math.min(steps, this.o.steps - this.next);
    await this.block(this.next, k, true);
    this.next += k;
  }

  /**
   * The next `steps` steps of the capture check: the timed steps' inputs again with no span
   * recorded, their windows reported apart (`checkStart`/`checkEnd`).
   */
  async check(steps: number): Promise<void> {
    const k = Math.min(steps, (this.o.checkSteps ?? 0) - this.nextCheck);
    await this.block(this.nextCheck, k, true, true);
    this.nextCheck += k;
  }

  /** Runs the operator-profiled steps, collects every device's results and ends the workers. */
  async finish(): Promise<DoneMessage[]> {
    try {
      const done = this.group.waitAll('done');
      const m: ToDeviceControl = { type: 'finish', profiledSteps: this.o.capture.profiledSteps };
      this.group.workers.forEach((_, r) => this.group.post(r, m));
      return await done;
    } finally {
      await this.close();
    }
  }

  close(): Promise<void> {
    return this.group.close();
  }
}

/** Runs `program` on `o.devices` (rank r on device r): warm-up, every timed step, then the profiled ones. */
export async function executeProgram(program: Program, o: ExecuteOptions, hooks: RunnerHooks): Promise<DoneMessage[]> {
  const run = await ProgramRun.start(program, o, hooks);
  try {
    await run.warmup();
    await run.timed(o.steps);
    return await run.finish();
  } finally {
    await run.close();
  }
}

/** A device's training part: its stage's in pipeline mode, the program's otherwise. */
function trainingOf(program: Program, rank: number): TrainingProgram | undefined {
  return program.stageTraining?.[rank] ?? program.training;
}
