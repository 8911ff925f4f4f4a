/**
 * The device interpreter: executes this device's part of any {@link Program}, free of
 * `worker_threads` so tests can drive it in-process. It does not know which mode compiled
 * the program: it loads the segments it is given and runs its instruction list once per
 * step, SPMD-style, synchronised with its peers through shared memory (a barrier at each
 * step start; point-to-point channels and collectives inside the step), so the runner's
 * event loop is never on the hot path.
 *
 * Every span is recorded from the instruction being executed — its kind, communication
 * operation, phase, bytes, peer, micro-batch and the device's stage — never inferred later
 * from a name. Waits (at the barrier, or for a peer's data) are not recorded: they are idle
 * time, derived later with their cause.
 */
import { asInputError, ortCall } from '../input-errors';
import * as ort from 'onnxruntime-node';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { SpanBuffer, nowUs } from '../spans';
import { COMM_OPS, CommOpCode, PhaseCode, SpanFlag, SpanKind } from '../../profiler/trace-format';
import { activationSpanLabel, type Instruction, type ProgramBuffer } from '../../profiler/program';
import { TrainingState } from './training-state';
import { ActivationStash } from './activation-stash';
import { CommThread } from './comm-thread';
import type { DeviceInit, FromDevice, SegmentOutputs, SharedOutput, ToDevice } from '../protocol';
import { ctorFor, copyRows, viewOf, elementCount, placeRows, type AnyTypedArray } from '../tensor-util';
import { Communicator, type CommGroupDescriptor } from '../comm/communicator';
import { groupKey } from '../comm/subgroups';
import { alignOrtProfile, endOrtProfiling, gpuBusyOf, readOrtProfile, type GpuBusy } from '../../profiler/ort-profile';
import { isUserError } from '../../common/errors';
import { dtypeCode, dtypeName, type DType } from '../onnx/dtypes';
import { schedDelta, sessionThreadWatch, spanCpuUs, threadMinorFaults, threadSampler, type SchedSample } from './schedstat';

type TypedSet = { set(a: ArrayLike<number>, offset?: number): void };

/** A graph input: its rows in the shared global batch and local buffers per row count. */
interface LocalInput {
  name: string;
  dtype: string;
  src: AnyTypedArray;
  globalDims: number[];
  batchAxis: number | null;
  byRows: Map<number, { local: AnyTypedArray; tensor: ort.Tensor }>;
}

/** A received tensor: its buffer (reused across micro-batches) and tensor. */
interface Activation {
  buf: AnyTypedArray;
  tensor: ort.Tensor;
}

/**
 * A segment's sessions: the one timed steps run on (never profiled), and, for the
 * operator-profiled steps at the end, a second one with ONNX Runtime's profiler on, with
 * the compute spans of its recorded runs.
 */
interface SegmentSession {
  session: ort.InferenceSession;
  profiled: { session: ort.InferenceSession; prefix: string; computeIdx: number[]; warmRuns: number } | null;
}

/** Tensor metadata sent once per tensor before its first transfer (during warm-up): ONNX dtype code, rank, dims. */
const HEADER_INTS = 18;

/** Least time between two progress messages of a block of timed steps, µs. */
const PROGRESS_EVERY_US = 100_000;

/**
 * Least time from the start of one compute span whose scheduler counters were read to the
 * start of the next, µs. A pair of reads (a pread of /proc per thread, each regenerating its
 * text) takes 10–30 µs itself, but costs the run around it more: on sub-millisecond steps
 * (silero VAD, data cpu:2, 2-core VM, capture check with 32 alternations) each pair added
 * about 80 µs to the step — +10–15 % read around every span, +6 % at a 2 ms gap, +2 % at
 * 20 ms, the same as with no reads at all. Spans at least this far apart are all read; closer
 * ones are sampled, which keeps the shares of CPU and wait unbiased. Unread spans carry −1
 * (not measured).
 */
const COUNTER_READ_GAP_US = 20_000;

/**
 * A worker collects garbage at a block's start (see onRun) once its session runs have handed
 * JavaScript GC_AFTER_OUTPUT_BYTES of outputs, at GC_MIN_RUN_OUTPUT_BYTES a run or more on
 * average since the last collection. Small outputs are left alone: a full collection before
 * every block cost openWakeWord's melspectrogram (0.4 ms steps, a few kB out) a third of its
 * step.
 */
const GC_AFTER_OUTPUT_BYTES = 1024 * 1024;
const GC_MIN_RUN_OUTPUT_BYTES = 64 * 1024;

/** The span context of the instruction being executed (what comm spans are recorded as). */
interface CommContext {
  code: number;
  flags: number;
  name: string;
  /** The transfers the instruction made so far (a send or recv of several tensors makes one each). */
  first: number;
  end: number;
  bytes: number;
  blocked: number;
  peer: number;
}

export class Interpreter {
  private init: DeviceInit | null = null;
  private readonly sessions = new Map<number, SegmentSession>();
  private inputs = new Map<string, LocalInput>();
  /** Gathered outputs: full-batch buffers in shared memory, with this device's rows filled. */
  private readonly outputs = new Map<string, { view: AnyTypedArray; dims: number[]; axis: number; shared: SharedOutput }>();
  private comm: Communicator | null = null;
  /** Communicators of the sub-groups this device's collectives run over, by {@link groupKey}. */
  private readonly subComms = new Map<string, Communicator>();
  private readonly spans = new SpanBuffer(1 << 14);
  private readonly buffers = new Map<string, Float32Array>();
  /** A training program's resident weights, optimizer state and gradients (null for inference). */
  private training: TrainingState | null = null;
  /** A pipeline training stage's activations kept from each micro-batch's forward to its backward (null otherwise). */
  private stash: ActivationStash | null = null;
  /** The communication thread that runs started collectives, with the buffers it serves by name (null without one). */
  private commThread: { thread: CommThread; index: Map<string, number> } | null = null;
  /** Tensors available to the next `run`: scattered inputs and received activations. */
  private readonly feeds = new Map<string, ort.Tensor>();
  /** Outputs of the latest `run`, for the `send` and `gather` after it. */
  private results: ort.InferenceSession.OnnxValueMapType = {};
  /** Bytes of session outputs handed to JavaScript, and session runs, since the last collection. */
  private outputBytesSinceGc = 0;
  private runsSinceGc = 0;
  private readonly acts = new Map<string, Activation>();
  /** All-reduced activations (tensor parallelism), by tensor name. */
  private readonly sums = new Map<string, Activation>();
  private readonly sentHeader = new Set<string>();
  private readonly header = new Int32Array(HEADER_INTS);
  private recording = false;
  /** The outputs of each segment's first run, reported with `done` (memory per device). */
  private readonly segmentOutputs = new Map<number, SegmentOutputs>();
  private commContext: CommContext | null = null;
  /**
   * CPU time and run-queue wait of this device's threads (Linux schedstat): the worker
   * thread, plus its sessions' intra-op threads where they can be told apart.
   */
  private readonly sched = threadSampler();
  private schedThreads: 'worker+pool' | 'worker' | 'none' = this.sched ? 'worker' : 'none';
  private poolsExact = true;
  /** Intra-op threads of this device's sessions, added to the sampler once all are known. */
  private readonly poolTids: number[] = [];
  /**
   * CPU time one pair of sampler reads adds to the span between them (the reads' own
   * syscalls), µs; measured once at init and subtracted, so that sub-millisecond spans do
   * not read more CPU than wall time.
   */
  private probeCpuUs = 0;
  /** WebGPU: the GPU's busy time over the operator-profiled runs, summed over segments. */
  private gpuBusy: GpuBusy | null = null;
  /** When the last compute span whose counters were read started (see COUNTER_READ_GAP_US). */
  private lastCounterReadUs = -Infinity;

  constructor(private readonly post: (m: FromDevice, transfer?: ArrayBuffer[]) => void) {}

  async handle(m: ToDevice): Promise<void> {
    const rank = this.init?.rank ?? -1;
    try {
      switch (m.type) {
        case 'init':
          return await this.onInit(m);
        case 'run':
          if (m.totalSteps !== undefined) this.init!.steps = m.totalSteps;
          return await this.onRun(m.first, m.steps, m.record, m.uncaptured === true);
        case 'finish':
          return await this.onFinish(m.profiledSteps);
        default: {
          const never: never = m;
          throw new Error(`unknown message ${JSON.stringify(never)}`);
        }
      }
    } catch (caught) {
      const e = asInputError(caught);
      const message = e instanceof Error ? e.message : String(e);
      this.post({ type: 'error', rank: m.type === 'init' ? m.rank : rank, message, user: isUserError(e) });
    }
  }

  private async onInit(m: DeviceInit): Promise<void> {
    this.init = m;
    const t0 = performance.now();
    // The communicator reports each transfer it makes; the instruction being executed says
    // what it is. Outside an instruction (the step barrier) nothing is recorded: a wait
    // there is idle time, derived later with its cause.
    const recorder = {
      comm: (_name: string, s: number, d: number, b: number, p: number, blockedUs = 0): void => {
        const c = this.commContext;
        if (!c || !this.recording) return;
        // Gathered into the instruction's one span (inComm records it).
        if (c.first < 0) c.first = s;
        c.end = s + d;
        c.bytes += b;
        c.peer = p;
        // A send that found the channel full waited for the receiver to free it: that wait
        // is backpressure, left out of the span so it is derived as idle with that cause.
        if (c.code === CommOpCode.send) c.blocked += Math.min(blockedUs, d);
      },
    };
    const spin = m.commSpinUs !== undefined ? { spin: m.commSpinUs } : {};
    if (m.comm) this.comm = Communicator.attach(m.comm as CommGroupDescriptor, m.rank, recorder, spin);
    for (const sub of m.subComms ?? []) {
      // A sub-group numbers its ranks from 0; the spans name peers by their rank in the run.
      const local = { comm: (n: string, st: number, d: number, b: number, p: number, blockedUs = 0): void => recorder.comm(n, st, d, b, p >= 0 ? (sub.group[p] ?? p) : p, blockedUs) };
      this.subComms.set(groupKey(sub.group), Communicator.attach(sub.comm as CommGroupDescriptor, sub.group.indexOf(m.rank), local, spin));
    }
    for (const id of m.program.segments) this.sessions.set(id, await this.openSession(m, id));
    // The columns count the pools only when every session's pool was found exactly; a
    // partial set would be divided by the wrong number of threads.
    if (this.sched && this.poolsExact && this.poolTids.length > 0) this.sched.addThreads(this.poolTids);
    if (this.sched && m.device.intraOpNumThreads > 1) this.schedThreads = this.poolsExact && this.poolTids.length > 0 ? 'worker+pool' : 'worker';
    this.probeCpuUs = this.measureProbe();
    // Buffers of started collectives are plain shared memory, for the communication thread.
    const started = new Set(m.program.instructions.flatMap((i) => (i.op === 'collective-start' ? [i.buffer] : [])));
    for (const b of m.buffers) {
      // A gradient bucket of a one-device run is packed and read, never communicated.
      if (started.has(b.name) || (!this.comm && b.gradients)) this.buffers.set(b.name, new Float32Array(new SharedArrayBuffer(b.elements * 4)));
      else if (!this.comm) throw new Error(`buffer ${b.name} needs a communication group`);
      else this.buffers.set(b.name, this.commOfBuffer(b.name).alloc(Float32Array, b.elements));
    }
    if (m.commThreads && started.size > 0) {
      const names = [...started];
      const thread = await CommThread.start(m.commThreads as CommGroupDescriptor, m.rank, names.map((n) => this.buffers.get(n)!), m.training?.program.gradDtype ?? 'float32');
      this.commThread = { thread, index: new Map(names.map((n, i) => [n, i])) };
    }
    if (m.training) {
      this.training = new TrainingState(m.training.program, m.training.initial, m.steps);
      this.training.feed(this.feeds);
      const stash = m.training.program.pipeline?.stash;
      if (stash) this.stash = new ActivationStash(stash, (name) => this.acts.has(name) || this.inputs.has(name));
    }
    for (const inp of m.inputs) {
      this.inputs.set(inp.name, {
        name: inp.name,
        dtype: inp.dtype,
        src: viewOf(inp.dtype, inp.data),
        globalDims: inp.dims,
        batchAxis: inp.batchAxis,
        byRows: new Map(),
      });
    }
    this.post({ type: 'ready', rank: m.rank, loadMs: performance.now() - t0 });
  }

  private async openSession(m: DeviceInit, id: number): Promise<SegmentSession> {
    const watch = sessionThreadWatch();
    const session = await ortCall('loading the model', () => ort.InferenceSession.create(this.segmentPath(id), sessionOptions(m)));
    const pool = watch.end(m.device.intraOpNumThreads);
    if (pool.attribution === 'exact') this.poolTids.push(...pool.tids);
    else if (pool.attribution !== 'none') this.poolsExact = false;
    return { session, profiled: null };
  }

  /** Median CPU time of an empty pair of sampler reads (see `probeCpuUs`). */
  private measureProbe(): number {
    if (!this.sched) return 0;
    const v: number[] = [];
    for (let i = 0; i < 31; i++) {
      const d = schedDelta(this.sched.read(), this.sched.read());
      if (d.cpuUs >= 0) v.push(d.cpuUs);
    }
    v.sort((a, b) => a - b);
    return v.length > 0 ? v[v.length >> 1] : 0;
  }

  private segmentPath(id: number): string {
    const path = this.init!.segmentPaths[id];
    if (path === undefined) throw new Error(`no model file for segment ${id}`);
    return path;
  }

  /** Opens the operator-profiled session of every segment (after the timed steps). */
  private async openProfiled(): Promise<void> {
    const m = this.init!;
    mkdirSync(m.profileDir, { recursive: true });
    for (const [id, seg] of this.sessions) {
      const prefix = join(m.profileDir, `rank${m.rank}-seg${id}-${process.pid}-${Date.now().toString(36)}`);
      const options = { ...sessionOptions(m), enableProfiling: true, profileFilePrefix: prefix };
      seg.profiled = { session: await ortCall('loading the model', () => ort.InferenceSession.create(this.segmentPath(id), options)), prefix, computeIdx: [], warmRuns: 0 };
    }
  }

  /** Timed step windows, filled as recorded blocks run. */
  private stepStart = new Float64Array(0);
  private stepEnd = new Float64Array(0);
  /** When the last progress message left (see PROGRESS_EVERY_US). */
  private lastProgressUs = -Infinity;
  /** Step windows of the capture check's blocks (same steps, spans off). */
  private checkStart = new Float64Array(0);
  private checkEnd = new Float64Array(0);
  /** True while a block of timed steps runs (a training step records its loss then). */
  private timedBlock = false;
  /** Which session `run` instructions use: the timed one, or the operator-profiled one. */
  private useProfiled = false;

  /** One step: the group's barrier, then this device's instructions in order. */
  private async step(step: number): Promise<{ start: number; end: number }> {
    this.comm?.barrier();
    this.training?.beginStep(step, this.timedBlock);
    const start = nowUs();
    this.spans.context = { step, micro: -1, stage: this.init!.program.stage };
    for (const ins of this.init!.program.instructions) await this.execute(ins);
    return { start, end: nowUs() };
  }

  /**
   * A block of steps: warm-up (negative step numbers, not recorded), timed, or a block of the
   * capture check (`uncaptured`: the timed steps again with no span recorded, their windows
   * kept apart so the runner can compare step time with capture on and off in one run).
   */
  private async onRun(first: number, steps: number, record: boolean, uncaptured: boolean): Promise<void> {
    const m = this.init!;
    if (this.stepStart.length !== m.steps) {
      this.stepStart = new Float64Array(m.steps);
      this.stepEnd = new Float64Array(m.steps);
    }
    const checkSteps = m.checkSteps ?? 0;
    if (this.checkStart.length !== checkSteps) {
      this.checkStart = new Float64Array(checkSteps);
      this.checkEnd = new Float64Array(checkSteps);
    }
    // Warm-up steps record too, and their spans are dropped at the block's end: code that
    // first records in a timed step runs unoptimised, and the code around it (optimised
    // while nothing was recorded) deoptimises. After warm-up that never recorded, the first
    // four or five timed steps of silero VAD (0.5 ms steps, data cpu:2, 2-core VM) took
    // 1.5–6× the rest.
    const warmupRecording = !record && m.capture;
    this.recording = (record && m.capture && !uncaptured) || warmupRecording;
    this.timedBlock = record && !uncaptured;
    // A block starts from a collected heap (the runner exposes gc), outside the steps'
    // windows, once the runs have handed out large outputs (GC_AFTER_OUTPUT_BYTES).
    // A session run's outputs arrive in new buffers that V8 frees only when it collects; until
    // then each run's outputs take fresh memory, whose pages fault in (170 faults, 2 ms of a
    // 3 ms run for a 0.7 MB output on a virtual machine) in whichever workers' heaps had not
    // grown before — the probe's and the baseline's, not the run's. Collected at a block's
    // start, the last blocks' buffers are reused in this one.
    if (this.outputBytesSinceGc >= GC_AFTER_OUTPUT_BYTES && this.outputBytesSinceGc >= GC_MIN_RUN_OUTPUT_BYTES * this.runsSinceGc) {
      (globalThis as { gc?: () => void }).gc?.();
      this.outputBytesSinceGc = 0;
      this.runsSinceGc = 0;
    }
    // Room for the block's spans, touched now rather than page by page inside its steps:
    // as many a step as the last recorded block made, at least one per instruction.
    const recorded = this.recording;
    if (recorded) this.spans.reserve(steps * Math.max(m.program.instructions.length, this.spansPerStep));
    const spansBefore = this.spans.count;
    // A warm-up block reports its page faults per step (see ProgramRun.warmup).
    const faultsBefore = record ? null : threadMinorFaults();
    for (let k = 0; k < steps; k++) {
      const step = first + k;
      const w = await this.step(step);
      if (uncaptured && record && step >= 0 && step < checkSteps) {
        this.checkStart[step] = w.start;
        this.checkEnd[step] = w.end;
      } else if (record && !uncaptured && step >= 0 && step < m.steps) {
        this.stepStart[step] = w.start;
        this.stepEnd[step] = w.end;
        // Progress at most every PROGRESS_EVERY_US and at the block's end: a message per step
        // wakes the runner's main thread (and the progress display behind it) every step,
        // which on a machine with no spare core costs a sub-millisecond step a large share.
        if (m.rank === 0 && (w.end - this.lastProgressUs >= PROGRESS_EVERY_US || k === steps - 1)) {
          this.lastProgressUs = w.end;
          this.post({ type: 'step', rank: 0, step });
        }
      }
    }
    this.recording = false;
    this.timedBlock = false;
    if (recorded && steps > 0) this.spansPerStep = Math.ceil((this.spans.count - spansBefore) / steps);
    if (warmupRecording) this.spans.truncate(spansBefore);
    const faultsAfter = faultsBefore !== null ? threadMinorFaults() : null;
    this.post({ type: 'block', rank: m.rank, ...(faultsBefore !== null && faultsAfter !== null ? { faultsPerStep: (faultsAfter - faultsBefore) / steps } : {}) });
  }

  /**
   * Runs the operator-profiled steps (one unrecorded first, for the profiled sessions' own
   * warm-up), merges ONNX Runtime's operator events under their compute spans, and reports.
   * Their step numbers follow the timed ones; their compute spans carry the profiled flag.
   */
  private async onFinish(profiledSteps: number): Promise<void> {
    const m = this.init!;
    const profiledStart = new Float64Array(profiledSteps);
    const profiledEnd = new Float64Array(profiledSteps);
    const notes: string[] = [];
    // The trained weights are those after the timed steps; the profiled steps train on.
    // Data-parallel replicas hold the same weights (rank 0 reports them); pipeline stages and tensor-parallel shards each hold their own.
    const stash = this.stash ? { stash: { peakMicroBatches: this.stash.peakMicroBatches, peakBytes: this.stash.peakBytes } } : {};
    const trained = this.training ? { losses: this.training.losses, parameters: m.rank === 0 || this.stash || m.training?.program.ownParameters ? this.training.snapshot() : null, ...stash } : undefined;
    if (profiledSteps > 0 && m.capture && m.opLevel) {
      await this.openProfiled();
      this.useProfiled = true;
      for (let k = -1; k < profiledSteps; k++) {
        this.recording = k >= 0;
        const w = await this.step(m.steps + k);
        if (k >= 0) {
          profiledStart[k] = w.start;
          profiledEnd[k] = w.end;
        }
      }
      this.recording = false;
      this.useProfiled = false;
      this.comm?.barrier();
      for (const [, seg] of this.sessions) notes.push(...(await this.mergeOpProfile(seg)));
    }
    this.comm?.barrier();
    // Every session is released before `done`: the runner terminates the worker as soon as
    // every device reported, and native work still in flight in a terminating thread (a
    // release, a finaliser) can abort the whole runner process.
    await this.releaseSessions();
    const spans = m.capture ? this.spans.take() : null;
    const outputs = [...this.outputs.values()].map((o) => o.shared);
    const { stepStart, stepEnd, checkStart, checkEnd } = this;
    this.post(
      {
        type: 'done',
        rank: m.rank,
        stepStart,
        stepEnd,
        profiledStart,
        profiledEnd,
        checkStart,
        checkEnd,
        spans,
        notes,
        outputs,
        schedThreads: this.schedThreads,
        ...(trained ? { training: trained } : {}),
        ...(this.gpuBusy ? { gpu: this.gpuBusy } : {}),
        segmentOutputs: [...this.segmentOutputs.values()],
      },
      [stepStart.buffer, stepEnd.buffer, profiledStart.buffer, profiledEnd.buffer, checkStart.buffer, checkEnd.buffer, ...(spans ? SpanBuffer.transferList(spans) : [])],
    );
  }

  private async releaseSessions(): Promise<void> {
    await this.commThread?.thread.stop();
    this.commThread = null;
    for (const [, seg] of this.sessions) {
      await seg.session.release();
      await seg.profiled?.session.release();
    }
    this.sessions.clear();
  }

  /** Spans a step made in the last recorded block (warm-up included). */
  private spansPerStep = 0;
  /** The interned name of a compute span of `session.run`. */
  private readonly runNameId = this.spans.intern('session.run');
  /** Interned names of comm spans by op code (see commNameId). */
  private readonly commNameIds: number[] = [];

  /** The interned default name of a comm span of `code`. */
  private commNameId(code: number): number {
    return (this.commNameIds[code] ??= this.spans.intern(commName(code)));
  }

  /** Executes one instruction. */
  private async execute(ins: Instruction): Promise<void> {
    if ('micro' in ins) this.spans.context.micro = ins.micro;
    switch (ins.op) {
      case 'scatter':
        return this.timed(CommOpCode.scatter, () => this.scatter(ins.rows.start, ins.rows.count, ins.tensors));
      case 'recv':
        this.inComm(CommOpCode.recv, 0, () => {
          for (const name of ins.tensors) this.feeds.set(name, this.recvTensor(ins.from, name));
        });
        return;
      case 'run':
        return this.run(ins);
      case 'send':
        this.inComm(CommOpCode.send, 0, () => {
          for (const name of ins.tensors) this.sendTensor(ins.to, name);
        });
        return;
      case 'collective': {
        const buf = this.buffers.get(ins.buffer);
        const def = this.init!.buffers.find((b) => b.name === ins.buffer);
        if (def?.gradients && buf) return this.gradientBucket(ins, def, buf);
        if (def?.activation && buf) return this.activationCollective(ins, def.activation, buf);
        if (def?.parameters && buf) return this.averageParameters(ins, def, buf);
        if (!buf || !this.comm) throw new Error(`collective on unknown buffer ${ins.buffer}`);
        const synthetic = def?.synthetic ?? false;
        const code = CommOpCode[ins.collective];
        // The name is for people (the timeline, Perfetto); the flag and the comm column are
        // what tools read.
        const name = `${commName(code)} (${synthetic ? 'synthetic ' : ''}${ins.buffer})`;
        this.inComm(code, synthetic ? SpanFlag.synthetic : 0, () => this.collective(ins.collective, buf, ins.group), name);
        return;
      }
      case 'collective-start':
        return this.startCollective(ins);
      case 'collective-wait':
        return this.waitCollectives(ins.buffers);
      case 'gather':
        return this.timed(CommOpCode.gather, () => this.gather(ins.rows.start, ins.rows.count, ins.tensors));
      default: {
        const never: never = ins;
        throw new Error(`unknown instruction ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * A gradient bucket: its gradients from this step's backward packed into the buffer, each
   * scaled by this device's share of the global batch (losses average over a device's rows),
   * then summed over the group, so that every replica holds the global batch's gradient;
   * then unpacked for the optimizer.
   */
  private gradientBucket(ins: Extract<Instruction, { op: 'collective' }>, def: ProgramBuffer, buf: Float32Array): void {
    const t = this.training;
    if (!t) throw new Error(`gradient bucket ${def.name} in a program without a training part`);
    t.pack(def, buf, this.feeds, this.shareOfBatch());
    if (this.comm && ins.group.length > 1) {
      this.inComm(CommOpCode[ins.collective], SpanFlag.gradient, () => this.collective(ins.collective, buf, ins.group), `${commName(CommOpCode[ins.collective])} (${def.name}, ${def.gradients!.length} gradients)`);
    }
    t.unpack(def, buf, this.feeds);
  }

  /**
   * An activation all-reduce (tensor parallelism): the latest run's partial sum `tensor` is
   * copied into the buffer, summed over the group, and the sum (shaped as the partial one)
   * feeds the later segments, and the gather, under the same name. The span names the layer
   * (and the backward pass, for a gradient all-reduced in tensor-parallel training).
   */
  private activationCollective(ins: Extract<Instruction, { op: 'collective' }>, act: NonNullable<ProgramBuffer['activation']>, buf: Float32Array): void {
    const v = this.results[act.tensor];
    if (!v) throw new Error(`all-reduce of ${act.tensor}, which the latest run did not produce`);
    if (v.type !== 'float32') throw new Error(`all-reduce of ${act.tensor}: ${v.type} activations are not reduced yet (float32 only)`);
    const data = v.data as Float32Array;
    if (data.length !== buf.length) throw new Error(`all-reduce of ${act.tensor}: ${data.length} elements, but its buffer holds ${buf.length}`);
    buf.set(data);
    if (this.comm && ins.group.length > 1) {
      const backward = act.phase === 'backward';
      this.inComm(CommOpCode[ins.collective], 0, () => this.collective(ins.collective, buf, ins.group), `${commName(CommOpCode[ins.collective])} (${activationSpanLabel(act)})`, backward ? PhaseCode.backward : 0);
    }
    // The session keeps no reference to its feeds after a run, so the sum can live in a
    // buffer of its own that the next step's all-reduce overwrites only after it is read.
    let sum = this.sums.get(act.tensor);
    if (!sum || sum.buf.length !== buf.length) {
      const local = new Float32Array(buf.length);
      sum = { buf: local, tensor: new ort.Tensor('float32', local, v.dims) };
      this.sums.set(act.tensor, sum);
    }
    (sum.buf as Float32Array).set(buf);
    this.feeds.set(act.tensor, sum.tensor);
    this.results = { ...this.results, [act.tensor]: sum.tensor };
  }

  /**
   * Local SGD's parameter averaging, after every `ins.every`-th update: the weights packed,
   * each scaled by this device's share of the global batch, summed over the group (the
   * weighted average), and copied back over the resident weights.
   */
  private averageParameters(ins: Extract<Instruction, { op: 'collective' }>, def: ProgramBuffer, buf: Float32Array): void {
    const t = this.training;
    if (!t) throw new Error(`parameter buffer ${def.name} in a program without a training part`);
    if (ins.every !== undefined && t.updatesDone % ins.every !== 0) return;
    if (!this.comm || ins.group.length < 2) return;
    t.packParameters(def, buf, this.shareOfBatch());
    this.inComm(CommOpCode[ins.collective], 0, () => this.collective(ins.collective, buf, ins.group), `${commName(CommOpCode[ins.collective])} (${def.name}, average of ${def.parameters!.length} parameters)`);
    t.unpackParameters(def, buf);
  }

  /**
   * Starts a collective on the communication thread (a gradient bucket is packed first); with
   * one device there is no thread and nothing to communicate.
   */
  private startCollective(ins: Extract<Instruction, { op: 'collective-start' }>): void {
    const buf = this.buffers.get(ins.buffer);
    const def = this.init!.buffers.find((b) => b.name === ins.buffer);
    if (!buf || !def) throw new Error(`collective on unknown buffer ${ins.buffer}`);
    if (ins.collective !== 'allreduce') throw new Error(`${ins.collective} on the communication thread is not used by any compiler yet`);
    if (def.gradients) this.training!.pack(def, buf, this.feeds, this.shareOfBatch());
    if (this.commThread && ins.group.length > 1) this.commThread.thread.allReduce(this.commThread.index.get(ins.buffer)!);
  }

  /**
   * Waits for the started collectives, records each as a comm span at the time the thread
   * ran it, and unpacks the gradient buckets for the optimizer.
   */
  private waitCollectives(names: readonly string[]): void {
    const ct = this.commThread;
    ct?.thread.waitAll();
    for (const name of names) {
      const def = this.init!.buffers.find((b) => b.name === name);
      const buf = this.buffers.get(name);
      if (!def || !buf) throw new Error(`wait for unknown buffer ${name}`);
      const index = ct?.index.get(name);
      if (ct && index !== undefined && this.recording) {
        const t = ct.thread.timing(index);
        const flags = def.gradients ? SpanFlag.gradient : 0;
        this.spans.record(SpanKind.comm, `${commName(CommOpCode.allreduce)} (${name}${def.gradients ? `, ${def.gradients.length} gradients` : ''}, overlapped)`, t.startUs, t.durUs, { bytes: t.bytes, peer: -1, comm: CommOpCode.allreduce, flags });
      }
      if (def.gradients) this.training!.unpack(def, buf, this.feeds);
    }
  }

  /** Rows of this device's step over the global batch (from its scatter instructions). */
  private shareOfBatch(): number {
    let rows = 0;
    for (const ins of this.init!.program.instructions) if (ins.op === 'scatter') rows += ins.rows.count;
    return rows / this.init!.batch;
  }

  /** Runs `fn` with the communicator's spans recorded as `code`. */
  /**
   * Runs the transfers of one instruction and records one span for them all: from the first
   * transfer's start to the last one's end, with their bytes summed. (The waits of a blocked
   * send may sit between chunks or tensors; the span keeps their sum at its start.)
   */
  private inComm(code: number, flags: number, fn: () => void, name = commName(code), phase = 0): void {
    const c: CommContext = { code, flags, name, first: -1, end: 0, bytes: 0, blocked: 0, peer: -1 };
    this.commContext = c;
    try {
      fn();
    } finally {
      this.commContext = null;
    }
    if (c.first < 0 || !this.recording) return;
    const blocked = Math.min(c.blocked, c.end - c.first);
    const nameId = c.name === commName(c.code) ? this.commNameId(c.code) : this.spans.intern(c.name);
    this.spans.put(SpanKind.comm, nameId, c.first + blocked, c.end - c.first - blocked, c.bytes, c.peer, c.code, c.flags, phase);
  }

  /** Times a host copy and records it as a comm span of `code`; `fn` returns the bytes moved. */
  private timed(code: number, fn: () => number): void {
    const t = nowUs();
    const bytes = fn();
    const t2 = nowUs();
    if (this.recording) this.spans.put(SpanKind.comm, this.commNameId(code), t, t2 - t, bytes, -1, code, 0, 0);
  }

  /** The communicator of a collective's group: the whole run's, or the sub-group's own. */
  private commOf(group: readonly number[]): Communicator {
    const c = this.subComms.get(groupKey(group)) ?? this.comm;
    if (!c) throw new Error(`collective over [${group.join(', ')}] without a communication group`);
    return c;
  }

  /** The communicator whose arena holds a buffer: that of the group this device's collectives on it run over. */
  private commOfBuffer(name: string): Communicator {
    for (const ins of this.init!.program.instructions) if (ins.op === 'collective' && ins.buffer === name) return this.commOf(ins.group);
    return this.comm!;
  }

  private collective(kind: Extract<Instruction, { op: 'collective' }>['collective'], buf: Float32Array, group: readonly number[]): void {
    const comm = this.commOf(group);
    switch (kind) {
      case 'allreduce':
        // A synthetic buffer holds zeros, so its repeated sums never overflow; a gradient
        // bucket is packed afresh before each sum.
        comm.allReduce(buf);
        return;
      case 'broadcast':
        comm.broadcast(buf, 0);
        return;
      case 'allgather':
      case 'reducescatter':
        throw new Error(`${kind} on a whole buffer is not used by any compiler yet`);
      default: {
        const never: never = kind;
        throw new Error(`unknown collective ${String(never)}`);
      }
    }
  }

  /** Copies rows [start, start+count) of the named graph inputs into local buffers. */
  private scatter(start: number, count: number, names: readonly string[]): number {
    let bytes = 0;
    for (const name of names) {
      const inp = this.inputs.get(name);
      if (!inp) throw new Error(`scatter of unknown input ${name}`);
      const { local, tensor } = this.localFor(inp, count);
      if (inp.batchAxis === null) (local as unknown as TypedSet).set(inp.src as unknown as ArrayLike<number>);
      else copyRows(inp.src, inp.globalDims, inp.batchAxis, start, count, local);
      bytes += local.byteLength;
      this.feeds.set(name, tensor);
    }
    return bytes;
  }

  /** The input's local buffer and tensor for `rows` rows (made once per row count). */
  private localFor(inp: LocalInput, rows: number): { local: AnyTypedArray; tensor: ort.Tensor } {
    let b = inp.byRows.get(rows);
    if (!b) {
      const dims = inp.globalDims.slice();
      if (inp.batchAxis !== null) dims[inp.batchAxis] = rows;
      const local = new (ctorFor(inp.dtype))(elementCount(dims));
      b = { local, tensor: new ort.Tensor(inp.dtype as 'float32', local as Float32Array, dims) };
      inp.byRows.set(rows, b);
    }
    return b;
  }

  private async run(ins: Extract<Instruction, { op: 'run' }>): Promise<void> {
    const seg = this.sessions.get(ins.segment);
    if (!seg) throw new Error(`segment ${ins.segment} is not loaded on this device`);
    if (this.stash && ins.phase === 'backward' && ins.micro >= 0) this.stash.restore(ins.micro, this.feeds);
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of seg.session.inputNames) {
      const t = this.feeds.get(name);
      if (!t) throw new Error(`segment ${ins.segment} needs input ${name}, which no earlier instruction of the step provided`);
      feeds[name] = t;
    }
    const prof = this.useProfiled ? seg.profiled : null;
    const sample = this.recording && this.sched !== null && nowUs() - this.lastCounterReadUs >= COUNTER_READ_GAP_US;
    const c0: SchedSample | null = sample ? this.sched!.read() : null;
    const t = nowUs();
    const session = prof ? prof.session : seg.session;
    this.results = await ortCall('running the model', () => session.run(feeds));
    const t2 = nowUs();
    for (const v of Object.values(this.results)) {
      // Outputs held on a GPU have no host buffer (and `data` would throw).
      const t = v as { location?: string; data?: { byteLength?: number } };
      if (t.location === 'cpu') this.outputBytesSinceGc += t.data?.byteLength ?? 0;
    }
    this.runsSinceGc++;
    // A run's results feed the device's later runs (a training step's backward reads the
    // forward's activations); a training step's optimizer writes its results over the
    // resident weights.
    for (const [name, v] of Object.entries(this.results)) this.feeds.set(name, v);
    if (!this.segmentOutputs.has(ins.segment)) this.segmentOutputs.set(ins.segment, outputShapes(ins.segment, this.results));
    this.training?.afterRun(ins.phase, this.results, this.feeds);
    if (this.stash && ins.phase === 'forward' && ins.micro >= 0) this.stash.save(ins.micro, this.feeds);
    if (!this.recording) {
      if (prof) prof.warmRuns++;
      return;
    }
    const d = sample ? schedDelta(c0, this.sched!.read()) : schedDelta(null, null);
    if (sample) this.lastCounterReadUs = t;
    const cpu = spanCpuUs(t2 - t, d, this.sched?.threads ?? 0, this.probeCpuUs);
    const i = this.spans.put(SpanKind.compute, this.runNameId, t, t2 - t, 0, -1, 0, prof ? SpanFlag.profiled : 0, PhaseCode[ins.phase], cpu, d.waitUs);
    if (prof) prof.computeIdx.push(i);
  }

  /** Copies rows of the named outputs of the latest run into the full-batch shared outputs. */
  private gather(start: number, count: number, names: readonly string[]): number {
    let bytes = 0;
    for (const name of names) {
      const v = this.results[name];
      if (!v) throw new Error(`gather of ${name}, which the latest run did not produce`);
      const o = this.outputs.get(name) ?? this.allocOutput(name, v);
      const data = v.data as AnyTypedArray;
      placeRows(data, o.dims, o.axis, start, count, o.view);
      bytes += data.byteLength;
    }
    return bytes;
  }

  private allocOutput(name: string, v: ort.Tensor): { view: AnyTypedArray; dims: number[]; axis: number; shared: SharedOutput } {
    const m = this.init!;
    const axis = m.outputs.find((o) => o.name === name)?.batchAxis ?? 0;
    const dims = v.dims.slice();
    dims[axis] = m.batch;
    const sab = new SharedArrayBuffer(elementCount(dims) * (v.data as AnyTypedArray).BYTES_PER_ELEMENT);
    const o = { view: viewOf(v.type, sab), dims, axis, shared: { name, dtype: v.type, dims, data: sab } };
    this.outputs.set(name, o);
    return o;
  }

  /**
   * Sends one output of the latest run to a peer. The first transfer of each tensor (during
   * warm-up) is preceded by its dtype and shape, so measured transfers are the tensors alone.
   */
  private sendTensor(dst: number, name: string): void {
    const v = this.results[name];
    if (!v) throw new Error(`send of ${name}, which the latest run did not produce`);
    if (!this.sentHeader.has(name)) {
      const h = this.header.fill(0);
      h[0] = dtypeCode(v.type as DType) ?? -1;
      h[1] = v.dims.length;
      v.dims.forEach((d, i) => (h[2 + i] = d));
      this.withoutRecording(() => this.comm!.send(dst, h));
      this.sentHeader.add(name);
    }
    this.comm!.send(dst, v.data as AnyTypedArray);
  }

  private recvTensor(src: number, name: string): ort.Tensor {
    let act = this.acts.get(name);
    if (!act) {
      const h = this.header;
      this.withoutRecording(() => this.comm!.recv(src, h));
      const dtype = h[0]! > 0 ? dtypeName(h[0]!) : 'float32';
      const dims = Array.from(h.subarray(2, 2 + h[1]));
      const buf = new (ctorFor(dtype))(elementCount(dims));
      act = { buf, tensor: new ort.Tensor(dtype as 'float32', buf as Float32Array, dims) };
      this.acts.set(name, act);
    }
    this.comm!.recv(src, act.buf);
    return act.tensor;
  }

  private withoutRecording(fn: () => void): void {
    const c = this.commContext;
    this.commContext = null;
    try {
      fn();
    } finally {
      this.commContext = c;
    }
  }

  /**
   * Ends ONNX Runtime's profiler of one segment and nests its per-node events under that
   * segment's compute spans of the measured runs (the warm-up runs, which ORT also recorded,
   * are skipped).
   */
  private async mergeOpProfile(seg: SegmentSession): Promise<string[]> {
    const prof = seg.profiled;
    if (!prof) return [];
    const file = endOrtProfiling(prof.session, prof.prefix);
    const events = await readOrtProfile(file);
    await fs.rm(file, { force: true });
    const snapshot = this.spans.take();
    const windows = prof.computeIdx.map((i) => ({ startUs: snapshot.start[i], durUs: snapshot.dur[i] }));
    const aligned = alignOrtProfile(events, windows, { skipRuns: prof.warmRuns });
    if (aligned.gpu.length > 0) {
      const g = gpuBusyOf(aligned.gpu, windows);
      const t = this.gpuBusy;
      this.gpuBusy = t ? { kernels: t.kernels + g.kernels, runs: t.runs + g.runs, busyUs: t.busyUs + g.busyUs, computeUs: t.computeUs + g.computeUs } : g;
    }
    for (const op of aligned.ops) {
      const parent = prof.computeIdx[op.runIndex];
      this.spans.record(SpanKind.compute, op.name, op.startUs, op.durUs, {
        step: snapshot.step[parent],
        micro: snapshot.micro[parent],
        stage: snapshot.stage[parent],
        parent,
        opType: op.opType,
        flags: SpanFlag.op,
        phase: snapshot.phase[parent],
      });
    }
    return aligned.notes;
  }
}

/** Session options of a device: its provider and threads; never ONNX Runtime's profiler. */
function sessionOptions(m: DeviceInit): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: m.device.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
    intraOpNumThreads: m.device.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: m.graphOptimizationLevel ?? 'all',
  };
}

/** Display name of a communication span: its operation (the `comm` column says the same). */
function commName(code: number): string {
  switch (code) {
    case CommOpCode.allreduce:
      return 'allreduce.ring';
    case CommOpCode.allgather:
      return 'allgather.ring';
    case CommOpCode.reducescatter:
      return 'reducescatter.ring';
    default:
      return COMM_OPS[code] ?? 'comm';
  }
}

/** The element type and dimensions of each output of a segment's run. */
function outputShapes(segment: number, results: ort.InferenceSession.OnnxValueMapType): SegmentOutputs {
  const tensors: SegmentOutputs['tensors'] = [];
  for (const [name, v] of Object.entries(results)) {
    // Non-tensor values (sequences, maps) have no dimensions and are left out.
    if ('dims' in v && 'type' in v) tensors.push({ name, dtype: v.type, dims: [...v.dims] });
  }
  return { segment, tensors };
}
