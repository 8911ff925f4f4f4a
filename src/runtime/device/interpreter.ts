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
import * as ort from 'onnxruntime-node';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { SpanBuffer, nowUs } from '../spans';
import { COMM_OPS, CommOpCode, PhaseCode, SpanFlag, SpanKind } from '../../profiler/trace-format';
import type { Instruction } from '../../profiler/program';
import type { DeviceInit, FromDevice, SharedOutput, ToDevice } from '../protocol';
import { ctorFor, copyRows, viewOf, elementCount, placeRows, type AnyTypedArray } from '../tensor-util';
import { Communicator, type CommGroupDescriptor } from '../comm/communicator';
import { alignOrtProfile, endOrtProfiling, readOrtProfile } from '../../profiler/ort-profile';
import { isUserError } from '../../common/errors';

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

/** A segment's session and, when operator profiling is on, its compute spans per run. */
interface SegmentSession {
  session: ort.InferenceSession;
  profilePrefix: string;
  computeIdx: number[];
  warmRuns: number;
}

/** Tensor metadata sent once per tensor before its first transfer (during warm-up). */
const DTYPES = ['float32', 'float64', 'float16', 'int32', 'int16', 'int8', 'uint8', 'uint16', 'uint32', 'bool', 'int64', 'uint64'];
const HEADER_INTS = 18;

/** The span context of the instruction being executed (what comm spans are recorded as). */
interface CommContext {
  code: number;
  flags: number;
  name: string;
}

export class Interpreter {
  private init: DeviceInit | null = null;
  private readonly sessions = new Map<number, SegmentSession>();
  private inputs = new Map<string, LocalInput>();
  /** Gathered outputs: full-batch buffers in shared memory, with this device's rows filled. */
  private readonly outputs = new Map<string, { view: AnyTypedArray; dims: number[]; axis: number; shared: SharedOutput }>();
  private comm: Communicator | null = null;
  private readonly spans = new SpanBuffer(1 << 14);
  private readonly buffers = new Map<string, Float32Array>();
  /** Tensors available to the next `run`: scattered inputs and received activations. */
  private readonly feeds = new Map<string, ort.Tensor>();
  /** Outputs of the latest `run`, for the `send` and `gather` after it. */
  private results: ort.InferenceSession.OnnxValueMapType = {};
  private readonly acts = new Map<string, Activation>();
  private readonly sentHeader = new Set<string>();
  private readonly header = new Int32Array(HEADER_INTS);
  private recording = false;
  private commContext: CommContext | null = null;

  constructor(private readonly post: (m: FromDevice, transfer?: ArrayBuffer[]) => void) {}

  async handle(m: ToDevice): Promise<void> {
    const rank = this.init?.rank ?? -1;
    try {
      if (m.type === 'init') await this.onInit(m);
      else await this.onGo();
    } catch (e) {
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
      comm: (_name: string, s: number, d: number, b: number, p: number): void => {
        const c = this.commContext;
        if (c && this.recording) this.spans.record(SpanKind.comm, c.name, s, d, { bytes: b, peer: p, comm: c.code, flags: c.flags });
      },
    };
    if (m.comm) this.comm = Communicator.attach(m.comm as CommGroupDescriptor, m.rank, recorder);
    for (const id of m.program.segments) this.sessions.set(id, await this.openSession(m, id));
    for (const b of m.buffers) {
      if (!this.comm) throw new Error(`buffer ${b.name} needs a communication group`);
      this.buffers.set(b.name, this.comm.alloc(Float32Array, b.elements));
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
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: m.device.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
      intraOpNumThreads: m.device.intraOpNumThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: m.graphOptimizationLevel ?? 'all',
    };
    let profilePrefix = '';
    if (m.opLevel && m.capture) {
      mkdirSync(m.profileDir, { recursive: true });
      profilePrefix = join(m.profileDir, `rank${m.rank}-seg${id}-${process.pid}-${Date.now().toString(36)}`);
      options.enableProfiling = true;
      options.profileFilePrefix = profilePrefix;
    }
    const path = m.segmentPaths[id];
    if (path === undefined) throw new Error(`no model file for segment ${id}`);
    const session = await ort.InferenceSession.create(path, options);
    return { session, profilePrefix, computeIdx: [], warmRuns: 0 };
  }

  private async onGo(): Promise<void> {
    const m = this.init!;
    const warm = Math.max(1, m.warmup);
    const stepStart = new Float64Array(m.steps);
    const stepEnd = new Float64Array(m.steps);
    for (let step = -warm; step < m.steps; step++) {
      this.recording = m.capture && step >= 0;
      this.comm?.barrier();
      const start = nowUs();
      this.spans.context = { step, micro: -1, stage: m.program.stage };
      for (const ins of m.program.instructions) await this.execute(ins, step);
      if (step >= 0) {
        stepStart[step] = start;
        stepEnd[step] = nowUs();
        if (m.rank === 0) this.post({ type: 'step', rank: 0, step });
      } else {
        this.spans.clear();
      }
    }
    this.recording = false;
    this.comm?.barrier();
    const notes: string[] = [];
    if (m.capture && m.opLevel) for (const [, seg] of this.sessions) notes.push(...(await this.mergeOpProfile(seg)));
    const spans = m.capture ? this.spans.take() : null;
    const outputs = [...this.outputs.values()].map((o) => o.shared);
    this.post(
      { type: 'done', rank: m.rank, stepStart, stepEnd, spans, notes, outputs },
      [stepStart.buffer, stepEnd.buffer, ...(spans ? SpanBuffer.transferList(spans) : [])],
    );
    for (const [, seg] of this.sessions) await seg.session.release();
  }

  /** Executes one instruction. */
  private async execute(ins: Instruction, step: number): Promise<void> {
    if ('micro' in ins) this.spans.context.micro = ins.micro;
    switch (ins.op) {
      case 'scatter':
        return this.timed(CommOpCode.scatter, ins.bytes, () => this.scatter(ins.rows.start, ins.rows.count, ins.tensors));
      case 'recv':
        this.inComm(CommOpCode.recv, 0, () => {
          for (const name of ins.tensors) this.feeds.set(name, this.recvTensor(ins.from, name));
        });
        return;
      case 'run':
        return this.run(ins, step);
      case 'send':
        this.inComm(CommOpCode.send, 0, () => {
          for (const name of ins.tensors) this.sendTensor(ins.to, name);
        });
        return;
      case 'collective': {
        const buf = this.buffers.get(ins.buffer);
        if (!buf || !this.comm) throw new Error(`collective on unknown buffer ${ins.buffer}`);
        const synthetic = this.init!.buffers.find((b) => b.name === ins.buffer)?.synthetic ?? false;
        const code = CommOpCode[ins.collective];
        // The name is for people (the timeline, Perfetto); the flag and the comm column are
        // what tools read.
        const name = `${commName(code)} (${synthetic ? 'synthetic ' : ''}${ins.buffer})`;
        this.inComm(code, synthetic ? SpanFlag.synthetic : 0, () => this.collective(ins.collective, buf), name);
        return;
      }
      case 'gather':
        return this.timed(CommOpCode.gather, 0, () => this.gather(ins.rows.start, ins.rows.count, ins.tensors));
      default: {
        const never: never = ins;
        throw new Error(`unknown instruction ${JSON.stringify(never)}`);
      }
    }
  }

  /** Runs `fn` with the communicator's spans recorded as `code`. */
  private inComm(code: number, flags: number, fn: () => void, name = commName(code)): void {
    this.commContext = { code, flags, name };
    try {
      fn();
    } finally {
      this.commContext = null;
    }
  }

  /** Times a host copy and records it as a comm span of `code`; `fn` returns the bytes moved. */
  private timed(code: number, _estimate: number, fn: () => number): void {
    const t = nowUs();
    const bytes = fn();
    const t2 = nowUs();
    if (this.recording) this.spans.record(SpanKind.comm, commName(code), t, t2 - t, { bytes, peer: -1, comm: code });
  }

  private collective(kind: Extract<Instruction, { op: 'collective' }>['collective'], buf: Float32Array): void {
    switch (kind) {
      case 'allreduce':
        // Zeros stay zeros, so repeated sums never overflow; the memory traffic is the same.
        this.comm!.allReduce(buf);
        return;
      case 'broadcast':
        this.comm!.broadcast(buf, 0);
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

  private async run(ins: Extract<Instruction, { op: 'run' }>, step: number): Promise<void> {
    const seg = this.sessions.get(ins.segment);
    if (!seg) throw new Error(`segment ${ins.segment} is not loaded on this device`);
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of seg.session.inputNames) {
      const t = this.feeds.get(name);
      if (!t) throw new Error(`segment ${ins.segment} needs input ${name}, which no earlier instruction of the step provided`);
      feeds[name] = t;
    }
    const t = nowUs();
    this.results = await seg.session.run(feeds);
    const t2 = nowUs();
    if (this.recording) {
      seg.computeIdx.push(this.spans.record(SpanKind.compute, 'session.run', t, t2 - t, { phase: PhaseCode[ins.phase] }));
    } else if (step < 0) {
      seg.warmRuns++;
    }
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
      h[0] = DTYPES.indexOf(v.type);
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
      const dtype = DTYPES[h[0]] ?? 'float32';
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
    const file = endOrtProfiling(seg.session, seg.profilePrefix);
    const events = await readOrtProfile(file);
    await fs.rm(file, { force: true });
    const snapshot = this.spans.take();
    const windows = seg.computeIdx.map((i) => ({ startUs: snapshot.start[i], durUs: snapshot.dur[i] }));
    const aligned = alignOrtProfile(events, windows, { skipRuns: seg.warmRuns });
    for (const op of aligned.ops) {
      const parent = seg.computeIdx[op.runIndex];
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
