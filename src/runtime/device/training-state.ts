/**
 * What a device keeps between the steps of a training program: its replica's weights, the
 * optimizer state, the learning rate and step inputs, and the gradients unpacked from the
 * all-reduced buckets; plus the loss of each timed step. Every replica starts from the same
 * initial values, applies the same all-reduced gradients, and so stays equal to the others.
 *
 * The update runs as the program's optimizer segment (an ONNX model, so it runs on the
 * device's provider like the rest of the step); its new values are copied over the resident
 * arrays, which the tensors fed to every segment wrap, so the next step reads them in place.
 * Measured against a JavaScript loop over the same Float32Arrays on the demo model (50 M
 * parameters, one thread; `npm run bench -- train`, BENCHMARKS.md), the segment with its
 * copy back was faster for SGD and Adam and about even for momentum on a busy 2-core
 * machine (no loop won consistently over repeated runs), so it stays: it is also an
 * instruction like any other, which the simulator costs by phase, and on a GPU provider it
 * runs there.
 */
import * as ort from 'onnxruntime-node';
import type { Phase } from '../../profiler/span-vocabulary';
import type { ProgramBuffer, TrainingProgram } from '../../profiler/program';

type Results = ort.InferenceSession.OnnxValueMapType;

const elementsOf = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

export class TrainingState {
  private readonly weights = new Map<string, { data: Float32Array; tensor: ort.Tensor }>();
  private readonly state = new Map<string, { data: Float32Array; tensor: ort.Tensor; output: string }>();
  private readonly grads = new Map<string, { data: Float32Array; tensor: ort.Tensor }>();
  /** A pipeline stage's gradients summed over the step's micro-batches, by backward output. */
  private readonly accumulated = new Map<string, { data: Float32Array; tensor: ort.Tensor }>();
  private readonly lr: ort.Tensor;
  /** Adam's 1-based step: the number of the next update. */
  private readonly stepValue = Float32Array.of(1);
  private readonly stepTensor: ort.Tensor;
  private updates = 0;
  private step = 0;
  /** Loss of this device's rows per timed step. */
  readonly losses: Float64Array;

  constructor(
    private readonly p: TrainingProgram,
    initial: Record<string, SharedArrayBuffer>,
    timedSteps: number,
  ) {
    const dimsOf = new Map(p.parameters.map((x) => [x.name, x.dims]));
    for (const { name, dims } of p.parameters) {
      const src = initial[name];
      if (!src) throw new Error(`no initial value for parameter ${name}`);
      const data = new Float32Array(elementsOf(dims));
      data.set(new Float32Array(src));
      this.weights.set(name, { data, tensor: new ort.Tensor('float32', data, dims) });
    }
    for (const s of p.state) {
      const dims = dimsOf.get(s.param)!;
      const data = new Float32Array(elementsOf(dims));
      this.state.set(s.input, { data, tensor: new ort.Tensor('float32', data, dims), output: s.output });
    }
    for (const g of p.pipeline?.gradients ?? []) {
      const data = new Float32Array(elementsOf(dimsOf.get(g.param)!));
      this.accumulated.set(g.grad, { data, tensor: new ort.Tensor('float32', data, dimsOf.get(g.param)!) });
    }
    this.lr = new ort.Tensor('float32', new Float32Array([p.lr]), []);
    this.stepTensor = new ort.Tensor('float32', this.stepValue, []);
    this.losses = new Float64Array(timedSteps).fill(NaN);
  }

  /** Puts the resident tensors among the feeds of the device's runs. */
  feed(feeds: Map<string, ort.Tensor>): void {
    for (const [name, w] of this.weights) feeds.set(name, w.tensor);
    for (const [name, s] of this.state) feeds.set(name, s.tensor);
    feeds.set(this.p.lrInput, this.lr);
    if (this.p.stepInput) feeds.set(this.p.stepInput, this.stepTensor);
  }

  /** Starts step `step`; only a timed step's loss is recorded (warm-up and profiled steps train too). */
  beginStep(step: number, timed: boolean): void {
    this.step = timed ? step : -1;
    for (const a of this.accumulated.values()) a.data.fill(0);
    // A pipeline's last stage adds up the micro-batches' losses.
    if (this.p.pipeline && this.timedStep()) this.losses[this.step] = 0;
  }

  private timedStep(): boolean {
    return this.step >= 0 && this.step < this.losses.length;
  }

  /**
   * After a run: the forward's loss is recorded (timed steps only); the optimizer's new
   * values are copied over the resident ones, and the resident tensors fed again in place of
   * the run's outputs.
   */
  afterRun(phase: Phase, results: Results, feeds: Map<string, ort.Tensor>): void {
    switch (phase) {
      case 'forward': {
        const loss = results[this.p.loss];
        if (!loss || !this.timedStep()) return;
        if (this.p.pipeline) this.losses[this.step]! += Number(loss.data[0]) * this.p.pipeline.scale;
        else this.losses[this.step] = Number(loss.data[0]);
        return;
      }
      case 'optimizer':
        for (const u of this.p.updated) this.weights.get(u.param)!.data.set(results[u.output]!.data as Float32Array);
        for (const s of this.state.values()) s.data.set(results[s.output]!.data as Float32Array);
        this.updates++;
        this.stepValue[0] = this.updates + 1;
        this.feed(feeds);
        return;
      case 'backward':
        // A pipeline stage sums its micro-batches' gradients, which the optimizer reads.
        for (const [grad, a] of this.accumulated) {
          const g = results[grad]?.data as Float32Array | undefined;
          if (!g) throw new Error(`gradient ${grad} was not produced by the stage's backward`);
          const scale = this.p.pipeline!.scale;
          for (let i = 0; i < g.length; i++) a.data[i]! += g[i]! * scale;
          feeds.set(grad, a.tensor);
        }
        return;
      case 'none':
        return;
      default: {
        const never: never = phase;
        throw new Error(`unknown phase ${String(never)}`);
      }
    }
  }

  /** Packs a bucket's gradients, as the backward parts of this step put them among the feeds, scaled by `scale`. */
  pack(def: ProgramBuffer, buf: Float32Array, feeds: ReadonlyMap<string, ort.Tensor>, scale: number): void {
    for (const g of def.gradients ?? []) {
      const v = feeds.get(g.grad);
      if (!v) throw new Error(`gradient ${g.grad} was not produced by the backward`);
      const src = v.data as Float32Array;
      if (src.length !== g.elements) throw new Error(`gradient ${g.grad} has ${src.length} elements, not ${g.elements}`);
      if (scale === 1) buf.set(src, g.offset);
      else for (let i = 0; i < src.length; i++) buf[g.offset + i] = src[i]! * scale;
    }
  }

  /**
   * Copies a bucket's (all-reduced) gradients out for the optimizer, which reads them under
   * the backward's output names. Copied, not viewed: ONNX Runtime does not take tensors over shared memory.
   */
  unpack(def: ProgramBuffer, buf: Float32Array, feeds: Map<string, ort.Tensor>): void {
    for (const g of def.gradients ?? []) {
      let local = this.grads.get(g.grad);
      if (!local) {
        const dims = this.p.parameters.find((x) => x.name === g.param)!.dims;
        const data = new Float32Array(g.elements);
        local = { data, tensor: new ort.Tensor('float32', data, dims) };
        this.grads.set(g.grad, local);
      }
      local.data.set(buf.subarray(g.offset, g.offset + g.elements));
      // In place of the device's own gradient, which the backward's run put among the feeds.
      feeds.set(g.grad, local.tensor);
    }
  }

  /** Optimizer updates applied so far (warm-up steps included). */
  get updatesDone(): number {
    return this.updates;
  }

  /** Packs the current weights into a parameter buffer, scaled by `scale`. */
  packParameters(def: ProgramBuffer, buf: Float32Array, scale: number): void {
    for (const p of def.parameters ?? []) {
      const w = this.weights.get(p.param);
      if (!w) throw new Error(`no resident weight for parameter ${p.param}`);
      for (let i = 0; i < p.elements; i++) buf[p.offset + i] = w.data[i]! * scale;
    }
  }

  /** Copies a parameter buffer's (averaged) values over the resident weights, which every later run reads in place. */
  unpackParameters(def: ProgramBuffer, buf: Float32Array): void {
    for (const p of def.parameters ?? []) this.weights.get(p.param)!.data.set(buf.subarray(p.offset, p.offset + p.elements));
  }

  /** Copies of the current weights. */
  snapshot(): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const [name, w] of this.weights) out[name] = w.data.slice();
    return out;
  }
}
