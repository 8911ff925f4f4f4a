/**
 * A pipeline stage's stored activations: what its backward reads of its forward, kept per
 * micro-batch from the forward of that micro-batch to its backward. Tensors the device
 * reuses for the next micro-batch (received activations, scattered input rows) are copied;
 * ONNX Runtime's outputs are fresh per run and kept as they are. The peak number of
 * micro-batches held and their bytes are what a schedule bounds (GPipe: M, 1F1B: K − s).
 */
import * as ort from 'onnxruntime-node';
import type { AnyTypedArray } from '../tensor-util';

export class ActivationStash {
  private readonly held = new Map<number, { tensors: Map<string, ort.Tensor>; bytes: number }>();
  private bytes = 0;
  /** Most micro-batches held at once, and most bytes. */
  peakMicroBatches = 0;
  peakBytes = 0;

  /**
   * @param names tensors the backward reads of the forward and of the stage's inputs.
   * @param reused true for a tensor whose buffer the device fills again for the next micro-batch.
   */
  constructor(
    private readonly names: readonly string[],
    private readonly reused: (name: string) => boolean,
  ) {}

  /** Keeps micro-batch `micro`'s tensors from the feeds (after its forward ran). */
  save(micro: number, feeds: ReadonlyMap<string, ort.Tensor>): void {
    const tensors = new Map<string, ort.Tensor>();
    let bytes = 0;
    for (const name of this.names) {
      const t = feeds.get(name);
      if (!t) throw new Error(`the stage's backward reads ${name}, which its forward did not provide`);
      const data = t.data as AnyTypedArray;
      tensors.set(name, this.reused(name) ? new ort.Tensor(t.type as 'float32', data.slice() as Float32Array, t.dims) : t);
      bytes += data.byteLength;
    }
    this.held.set(micro, { tensors, bytes });
    this.bytes += bytes;
    this.peakMicroBatches = Math.max(this.peakMicroBatches, this.held.size);
    this.peakBytes = Math.max(this.peakBytes, this.bytes);
  }

  /** Puts micro-batch `micro`'s tensors back among the feeds (before its backward) and lets them go. */
  restore(micro: number, feeds: Map<string, ort.Tensor>): void {
    const h = this.held.get(micro);
    if (!h) throw new Error(`no stored activations of micro-batch ${micro}: its forward has not run on this stage`);
    for (const [name, t] of h.tensors) feeds.set(name, t);
    this.held.delete(micro);
    this.bytes -= h.bytes;
  }
}
