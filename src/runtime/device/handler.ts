/**
 * The device worker's logic, free of `worker_threads` so tests can drive it in-process.
 *
 * One handler owns one ONNX Runtime session on one device. For data parallelism it runs
 * SPMD-style: after `go`, every worker loops over the steps on its own, synchronised with
 * its peers by a shared-memory barrier at each step boundary, so the runner's event loop is
 * never on the hot path. Per step it records:
 *   scatter (comm)  its shard of the global batch copied from shared memory into its input;
 *   compute         session.run;
 *   gather (comm)   its outputs copied into shared memory for the runner to concatenate.
 * The wait at the next barrier is left unrecorded: it is idle time, derived later.
 */
import * as ort from 'onnxruntime-node';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { SpanBuffer, SpanFlag, nowUs } from '../spans';
import type { DeviceInit, FromDevice, SharedOutput, ToDevice } from '../protocol';
import { ctorFor, copyRows, viewOf, type AnyTypedArray } from '../tensor-util';
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

export class DeviceHandler {
  private init: DeviceInit | null = null;
  private session: ort.InferenceSession | null = null;
  private inputs: LocalInput[] = [];
  private outputs: { name: string; view: AnyTypedArray; shared: SharedOutput }[] = [];
  private comm: Communicator | null = null;
  private readonly spans = new SpanBuffer(1 << 14);
  private profilePrefix = '';

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
    const recorder = { comm: (name: string, s: number, d: number, b: number, p: number) => name !== 'barrier' && this.spans.comm(name, s, d, b, p) };
    if (m.comm) this.comm = Communicator.attach(m.comm as CommGroupDescriptor, m.rank, recorder);
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: m.device.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
      intraOpNumThreads: m.device.intraOpNumThreads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    };
    if (m.opLevel && m.capture) {
      mkdirSync(m.profileDir, { recursive: true });
      options.enableProfiling = true;
      this.profilePrefix = join(m.profileDir, `rank${m.rank}`);
      options.profileFilePrefix = this.profilePrefix;
    }
    this.session = await ort.InferenceSession.create(m.modelPath, options);
    // Each device owns an input buffer of its shard; the tensors wrap those buffers, so a
    // step's scatter is a copy into memory the session reads directly.
    this.inputs = m.inputs.map((inp) => {
      const dims = inp.dims.slice();
      if (inp.batchAxis !== null) dims[inp.batchAxis] = m.shard.count;
      const C = ctorFor(inp.dtype);
      const local = new C(dims.reduce((a, b) => a * b, 1));
      const src = viewOf(inp.dtype, inp.data);
      const tensor = new ort.Tensor(inp.dtype as 'float32', local as Float32Array, dims);
      return { name: inp.name, dtype: inp.dtype, src, globalDims: inp.dims, batchAxis: inp.batchAxis, local, tensor };
    });
    for (let w = 0; w < Math.max(1, m.warmup); w++) await this.runOnce(-1, false);
    this.spans.clear();
    this.post({ type: 'ready', rank: m.rank, loadMs: performance.now() - t0, outputs: this.outputs.map((o) => o.shared) });
  }

  private scatter(): number {
    let bytes = 0;
    const m = this.init!;
    for (const inp of this.inputs) {
      if (inp.batchAxis === null) inp.local.set(inp.src as never);
      else copyRows(inp.src, inp.globalDims, inp.batchAxis, m.shard.start, m.shard.count, inp.local);
      bytes += inp.local.byteLength;
    }
    return bytes;
  }

  /** One step: scatter, compute, gather. Records spans when `record` is set. */
  private async runOnce(step: number, record: boolean): Promise<void> {
    const session = this.session!;
    let t = nowUs();
    const inBytes = this.scatter();
    let t2 = nowUs();
    if (record) this.spans.record(1, 'scatter', t, t2 - t, { step, bytes: inBytes, peer: -1 });
    const feeds: Record<string, ort.Tensor> = {};
    for (const inp of this.inputs) feeds[inp.name] = inp.tensor;
    t = nowUs();
    const results = await session.run(feeds);
    t2 = nowUs();
    if (record) this.spans.compute('session.run', t, t2 - t, { step });
    t = t2;
    if (this.outputs.length === 0) this.allocOutputs(results);
    let outBytes = 0;
    for (const o of this.outputs) {
      const data = results[o.name]!.data as AnyTypedArray;
      (o.view as unknown as { set(a: ArrayLike<number>): void }).set(data as unknown as ArrayLike<number>);
      outBytes += o.view.byteLength;
    }
    t2 = nowUs();
    if (record) this.spans.record(1, 'gather', t, t2 - t, { step, bytes: outBytes, peer: -1 });
  }

  private allocOutputs(results: ort.InferenceSession.OnnxValueMapType): void {
    for (const name of this.session!.outputNames) {
      const v = results[name]!;
      const data = v.data as AnyTypedArray;
      const sab = new SharedArrayBuffer(data.byteLength);
      const shared: SharedOutput = { name, dtype: v.type, dims: v.dims.slice(), data: sab };
      this.outputs.push({ name, view: viewOf(v.type, sab), shared });
    }
  }

  private async onGo(): Promise<void> {
    const m = this.init!;
    const stepStart = new Float64Array(m.steps);
    const stepEnd = new Float64Array(m.steps);
    const computeIdx: number[] = [];
    for (let step = 0; step < m.steps; step++) {
      this.comm?.barrier();
      stepStart[step] = nowUs();
      const before = this.spans.count;
      await this.runOnce(step, m.capture);
      if (m.capture) computeIdx.push(before + 1);
      stepEnd[step] = nowUs();
      if (m.rank === 0) this.post({ type: 'step', rank: 0, step });
    }
    this.comm?.barrier();
    const notes: string[] = [];
    if (m.capture && m.opLevel) notes.push(...(await this.mergeOpProfile(computeIdx)));
    const spans = m.capture ? this.spans.take() : null;
    this.post(
      { type: 'done', rank: m.rank, stepStart, stepEnd, spans, notes },
      [stepStart.buffer, stepEnd.buffer, ...(spans ? SpanBuffer.transferList(spans) : [])],
    );
    await this.session?.release();
  }

  /**
   * Ends ONNX Runtime's profiler and nests its per-node events under the compute spans of
   * the measured steps (the warm-up runs, which ORT also recorded, are skipped).
   */
  private async mergeOpProfile(computeIdx: number[]): Promise<string[]> {
    const m = this.init!;
    const file = endOrtProfiling(this.session!, this.profilePrefix);
    const events = await readOrtProfile(file);
    await fs.rm(file, { force: true });
    const snapshot = this.spans.take();
    const windows = computeIdx.map((i) => ({ startUs: snapshot.start[i], durUs: snapshot.dur[i] }));
    const aligned = alignOrtProfile(events, windows, { skipRuns: Math.max(1, m.warmup) });
    for (const op of aligned.ops) {
      const parent = computeIdx[op.runIndex];
      this.spans.record(0, op.name, op.startUs, op.durUs, {
        step: snapshot.step[parent],
        parent,
        opType: op.opType,
        flags: SpanFlag.op,
      });
    }
    return aligned.notes;
  }
}
