/**
 * The device worker's logic, free of `worker_threads` so tests can drive it in-process.
 *
 * One handler owns one ONNX Runtime session on one device. After `go`, every worker runs
 * its steps on its own, SPMD-style, synchronised with its peers through shared memory (a
 * barrier at each step boundary; point-to-point channels between pipeline stages), so the
 * runner's event loop is never on the hot path.
 *
 * Data parallelism, per step:
 *   scatter (comm)  its shard of the global batch copied from shared memory into its input;
 *   compute         session.run;
 *   gather (comm)   its outputs copied into shared memory for the runner to concatenate.
 * Pipeline stage, per step and micro-batch m (GPipe fill-drain, driven by data arrival):
 *   scatter         graph inputs of micro-batch m from the shared global batch (if any);
 *   recv (comm)     activations of m from each earlier stage that feeds this one;
 *   compute         session.run of the stage model;
 *   send (comm)     activations of m to each later stage that needs them;
 *   gather          graph outputs of m into shared memory (if any).
 * Waits (at the barrier, or for a peer's data) are not recorded: they are idle time, derived
 * later with their cause.
 */
import * as ort from 'onnxruntime-node';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { SpanBuffer, SpanFlag, nowUs } from '../spans';
import type { DeviceInit, FromDevice, PipelineRole, SharedOutput, ToDevice } from '../protocol';
import { ctorFor, copyRows, viewOf, elementCount, type AnyTypedArray } from '../tensor-util';
import { Communicator, type CommGroupDescriptor } from '../comm/communicator';
import { alignOrtProfile, endOrtProfiling, readOrtProfile } from '../../profiler/ort-profile';
import { isUserError } from '../../common/errors';

interface LocalInput {
  name: string;
  dtype: string;
  src: AnyTypedArray;
  globalDims: number[];
  batchAxis: number | null;
  local: AnyTypedArray;
  tensor: ort.Tensor;
}

/** A received activation: its buffer (reused across micro-batches) and tensor. */
interface Activation {
  dtype: string;
  dims: number[];
  buf: AnyTypedArray;
  tensor: ort.Tensor;
}

type TypedSet = { set(a: ArrayLike<number>, offset?: number): void };

/** Tensor metadata sent once per tensor before the first transfer (during warm-up). */
const DTYPES = ['float32', 'float64', 'float16', 'int32', 'int16', 'int8', 'uint8', 'uint16', 'uint32', 'bool', 'int64', 'uint64'];
const HEADER_INTS = 18;

export class DeviceHandler {
  private init: DeviceInit | null = null;
  private session: ort.InferenceSession | null = null;
  private inputs: LocalInput[] = [];
  private outputs: { name: string; view: AnyTypedArray; shared: SharedOutput }[] = [];
  private comm: Communicator | null = null;
  private readonly spans = new SpanBuffer(1 << 14);
  private profilePrefix = '';
  /** Pipeline: received activations by tensor name; shapes learnt during warm-up. */
  private readonly acts = new Map<string, Activation>();
  private readonly header = new Int32Array(HEADER_INTS);
  /** Data parallel with gradient sync: the synthetic gradient buffer, in shared memory. */
  private grads: Float32Array | null = null;

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
    // The step barrier is not communication: the time a device waits there is idle time,
    // derived later with its cause (waiting on the slowest peer), so it is not recorded.
    const recorder = {
      comm: (name: string, s: number, d: number, b: number, p: number): void => {
        if (name === 'barrier') return;
        // The only all-reduce of a data-parallel step is the synthetic gradient sync.
        this.spans.comm(name.startsWith('allreduce') && this.grads ? `${name} (synthetic gradients)` : name, s, d, b, p);
      },
    };
    if (m.comm) this.comm = Communicator.attach(m.comm as CommGroupDescriptor, m.rank, recorder);
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: m.device.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
      intraOpNumThreads: m.device.intraOpNumThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: m.graphOptimizationLevel ?? 'all',
    };
    if (m.opLevel && m.capture) {
      mkdirSync(m.profileDir, { recursive: true });
      this.profilePrefix = join(m.profileDir, `rank${m.rank}-${process.pid}-${Date.now().toString(36)}`);
      options.enableProfiling = true;
      options.profileFilePrefix = this.profilePrefix;
    }
    this.session = await ort.InferenceSession.create(m.modelPath, options);
    if (this.comm && (m.gradElements ?? 0) > 0) this.grads = this.comm.alloc(Float32Array, m.gradElements!);
    const rows = m.role ? m.role.micro[0].count : m.shard.count;
    // Each device owns an input buffer of its rows; the tensors wrap those buffers, so a
    // scatter is a copy into memory the session reads directly.
    const wanted = m.role ? new Set(m.role.graphInputs) : null;
    this.inputs = m.inputs
      .filter((inp) => !wanted || wanted.has(inp.name))
      .map((inp) => {
        const dims = inp.dims.slice();
        if (inp.batchAxis !== null) dims[inp.batchAxis] = rows;
        const local = new (ctorFor(inp.dtype))(elementCount(dims));
        const src = viewOf(inp.dtype, inp.data);
        const tensor = new ort.Tensor(inp.dtype as 'float32', local as Float32Array, dims);
        return { name: inp.name, dtype: inp.dtype, src, globalDims: inp.dims, batchAxis: inp.batchAxis, local, tensor };
      });
    // Data parallelism warms up alone; pipeline stages need each other, so they warm up
    // together after `go`.
    if (!m.role) {
      for (let w = 0; w < Math.max(1, m.warmup); w++) await this.dataStep(-1, false);
      this.spans.clear();
    }
    this.post({ type: 'ready', rank: m.rank, loadMs: performance.now() - t0, outputs: this.outputs.map((o) => o.shared) });
  }

  /** Copies rows [start, start+count) of every graph input into the local buffers. */
  private scatter(start: number, count: number): number {
    let bytes = 0;
    for (const inp of this.inputs) {
      if (inp.batchAxis === null) (inp.local as unknown as TypedSet).set(inp.src as unknown as ArrayLike<number>);
      else copyRows(inp.src, inp.globalDims, inp.batchAxis, start, count, inp.local);
      bytes += inp.local.byteLength;
    }
    return bytes;
  }

  /** One data-parallel step: scatter, compute, gather. Records spans when `record` is set. */
  private async dataStep(step: number, record: boolean): Promise<void> {
    const m = this.init!;
    this.spans.context = { step, micro: -1, stage: -1 };
    let t = nowUs();
    const inBytes = this.scatter(m.shard.start, m.shard.count);
    let t2 = nowUs();
    if (record) this.spans.record(1, 'scatter', t, t2 - t, { step, bytes: inBytes, peer: -1 });
    const feeds: Record<string, ort.Tensor> = {};
    for (const inp of this.inputs) feeds[inp.name] = inp.tensor;
    t = nowUs();
    const results = await this.session!.run(feeds);
    t2 = nowUs();
    if (record) this.spans.compute('session.run', t, t2 - t, { step });
    t = t2;
    if (this.outputs.length === 0) {
      for (const name of this.session!.outputNames) this.allocOutput(name, results[name]!, results[name]!.dims.slice());
    }
    let outBytes = 0;
    for (const o of this.outputs) {
      (o.view as unknown as TypedSet).set(results[o.name]!.data as unknown as ArrayLike<number>);
      outBytes += o.view.byteLength;
    }
    t2 = nowUs();
    if (record) this.spans.record(1, 'gather', t, t2 - t, { step, bytes: outBytes, peer: -1 });
    // Zeros stay zeros, so repeated sums never overflow; the memory traffic is the same.
    if (this.grads) this.comm!.allReduce(this.grads);
  }

  private allocOutput(name: string, v: ort.Tensor, dims: number[]): void {
    const sab = new SharedArrayBuffer(elementCount(dims) * (v.data as AnyTypedArray).BYTES_PER_ELEMENT);
    const shared: SharedOutput = { name, dtype: v.type, dims, data: sab };
    this.outputs.push({ name, view: viewOf(v.type, sab), shared });
  }

  /** Sends a tensor's dtype and dims ahead of its first transfer (warm-up only). */
  private sendHeader(dst: number, v: ort.Tensor): void {
    const h = this.header.fill(0);
    h[0] = DTYPES.indexOf(v.type);
    h[1] = v.dims.length;
    v.dims.forEach((d, i) => (h[2 + i] = d));
    this.comm!.send(dst, h);
  }

  private recvHeader(src: number, name: string): Activation {
    const h = this.header;
    this.comm!.recv(src, h);
    const dtype = DTYPES[h[0]] ?? 'float32';
    const dims = Array.from(h.subarray(2, 2 + h[1]));
    const buf = new (ctorFor(dtype))(elementCount(dims));
    const act: Activation = { dtype, dims, buf, tensor: new ort.Tensor(dtype as 'float32', buf as Float32Array, dims) };
    this.acts.set(name, act);
    return act;
  }

  /**
   * One micro-batch through this stage. Shapes of received tensors are exchanged during the
   * first warm-up micro-batch, so measured transfers are the tensors alone.
   */
  private async stageMicro(role: PipelineRole, step: number, micro: number, record: boolean, learn: boolean): Promise<void> {
    const x = { step, micro, stage: role.stage };
    this.spans.context = x;
    const rows = role.micro[micro];
    const feeds: Record<string, ort.Tensor> = {};
    if (this.inputs.length > 0) {
      const t = nowUs();
      const bytes = this.scatter(rows.start, rows.count);
      const t2 = nowUs();
      if (record) this.spans.record(1, 'scatter', t, t2 - t, { ...x, bytes, peer: -1 });
      for (const inp of this.inputs) feeds[inp.name] = inp.tensor;
    }
    for (const g of role.recvFrom) {
      for (const name of g.tensors) {
        const act = learn ? this.recvHeader(g.stage, name) : this.acts.get(name)!;
        this.comm!.recv(g.stage, act.buf);
        feeds[name] = act.tensor;
      }
    }
    let t = nowUs();
    const results = await this.session!.run(feeds);
    let t2 = nowUs();
    if (record) this.spans.compute('session.run', t, t2 - t, x);
    for (const g of role.sendTo) {
      for (const name of g.tensors) {
        const v = results[name]!;
        if (learn) this.sendHeader(g.stage, v);
        this.comm!.send(g.stage, v.data as AnyTypedArray);
      }
    }
    if (role.graphOutputs.length > 0) {
      t = nowUs();
      let bytes = 0;
      for (const name of role.graphOutputs) {
        const v = results[name]!;
        let o = this.outputs.find((p) => p.name === name);
        if (!o) {
          const dims = v.dims.slice();
          dims[0] = role.batch;
          this.allocOutput(name, v, dims);
          o = this.outputs[this.outputs.length - 1];
        }
        const data = v.data as AnyTypedArray;
        (o.view as unknown as TypedSet).set(data as unknown as ArrayLike<number>, rows.start * (data.length / rows.count));
        bytes += data.byteLength;
      }
      t2 = nowUs();
      if (record) this.spans.record(1, 'gather', t, t2 - t, { ...x, bytes, peer: -1 });
    }
  }

  private async onGo(): Promise<void> {
    const m = this.init!;
    const role = m.role;
    const warm = role ? Math.max(1, m.warmup) : 0;
    const stepStart = new Float64Array(m.steps);
    const stepEnd = new Float64Array(m.steps);
    const computeIdx: number[] = [];
    for (let step = -warm; step < m.steps; step++) {
      const record = m.capture && step >= 0;
      this.comm?.barrier();
      const start = nowUs();
      if (role) {
        for (let micro = 0; micro < role.micro.length; micro++) {
          const before = this.spans.count;
          await this.stageMicro(role, step, micro, record, step === -warm && micro === 0);
          if (record) computeIdx.push(this.indexOfCompute(before));
        }
      } else {
        const before = this.spans.count;
        await this.dataStep(step, record);
        if (record) computeIdx.push(this.indexOfCompute(before));
      }
      if (step >= 0) {
        stepStart[step] = start;
        stepEnd[step] = nowUs();
        if (m.rank === 0) this.post({ type: 'step', rank: 0, step });
      } else {
        this.spans.clear();
      }
    }
    this.comm?.barrier();
    const notes: string[] = [];
    if (m.capture && m.opLevel) notes.push(...(await this.mergeOpProfile(computeIdx, role ? warm * role.micro.length : Math.max(1, m.warmup))));
    const spans = m.capture ? this.spans.take() : null;
    const outputs = this.outputs.map((o) => o.shared);
    this.post(
      { type: 'done', rank: m.rank, stepStart, stepEnd, spans, notes, outputs },
      [stepStart.buffer, stepEnd.buffer, ...(spans ? SpanBuffer.transferList(spans) : [])],
    );
    await this.session?.release();
  }

  /** Index of the first compute span recorded at or after `from`. */
  private indexOfCompute(from: number): number {
    const cols = this.spans.peekKinds();
    for (let i = from; i < this.spans.count; i++) if (cols[i] === 0) return i;
    return -1;
  }

  /**
   * Ends ONNX Runtime's profiler and nests its per-node events under the compute spans of
   * the measured runs (the warm-up runs, which ORT also recorded, are skipped).
   */
  private async mergeOpProfile(computeIdx: number[], skipRuns: number): Promise<string[]> {
    const file = endOrtProfiling(this.session!, this.profilePrefix);
    const events = await readOrtProfile(file);
    await fs.rm(file, { force: true });
    const snapshot = this.spans.take();
    const windows = computeIdx.map((i) => ({ startUs: snapshot.start[i], durUs: snapshot.dur[i] }));
    const aligned = alignOrtProfile(events, windows, { skipRuns });
    for (const op of aligned.ops) {
      const parent = computeIdx[op.runIndex];
      this.spans.record(0, op.name, op.startUs, op.durUs, {
        step: snapshot.step[parent],
        micro: snapshot.micro[parent],
        stage: snapshot.stage[parent],
        parent,
        opType: op.opType,
        flags: SpanFlag.op,
      });
    }
    return aligned.notes;
  }
}
