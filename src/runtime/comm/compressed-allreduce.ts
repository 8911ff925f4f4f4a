/**
 * An all-reduce of a float32 buffer whose data travels encoded (`--grad-dtype float16|int8`),
 * with every sum taken in float32 after decoding.
 *
 * A ring all-reduce adds partial sums at every hop; with encoded data each hop would decode,
 * add and encode again, piling up one rounding per hop. Here the buffer is cut into the same
 * `worldSize` blocks as the ring's, and:
 *
 *   1. reduce-scatter: each rank encodes block k (k ≠ its rank) and sends it to rank k, which
 *      decodes every contribution and sums them with its own float32 block;
 *   2. all-gather: each rank encodes its summed block once and the encoded sums travel the
 *      ring to every rank; every rank, the block's owner included, decodes the same bytes, so
 *      all replicas hold identical values.
 *
 * Each rank sends (n−1)/n of the encoded buffer in each phase, the ring all-reduce's
 * 2(n−1)/n, so the bytes on the wire shrink exactly by the encoding's ratio. Encoding is
 * done twice per value (a contribution, then the sum); with error feedback (int8) both
 * residuals are kept: a sender's per block it sends, and an owner's for its summed block
 * (worker- and server-side error compensation, as 1-bit Adam keeps both).
 */
import type { Communicator } from './communicator';
import { encodeWithFeedback, type WireCodec } from './compress';

/** A compressed all-reduce of buffers of one length, keeping its error-feedback residuals between calls. */
export class CompressedAllReduce {
  private readonly offsets: number[];
  private readonly lengths: number[];
  private readonly encBytes: number[];
  /** Per block, its encoded form (what this rank sends, or for its own block the encoded sum). */
  private readonly encoded: Uint8Array[];
  /** What the owner of this rank's block receives from the others, one after another. */
  private readonly inbox: Uint8Array;
  /** Every block's encoded sum, in rank order, after the all-gather. */
  private readonly gathered: Uint8Array;
  private readonly scratch: Float32Array;
  private readonly decoded: Float32Array;
  /** Quantisation residuals: for blocks of other ranks this rank's as a sender, for its own block the owner's. */
  readonly residual: Float32Array;

  constructor(
    private readonly comm: Communicator,
    private readonly codec: WireCodec,
    readonly elements: number,
  ) {
    const n = comm.worldSize;
    const base = Math.floor(elements / n);
    const extra = elements % n;
    this.lengths = Array.from({ length: n }, (_, k) => base + (k < extra ? 1 : 0));
    this.offsets = [];
    let o = 0;
    for (const l of this.lengths) {
      this.offsets.push(o);
      o += l;
    }
    this.encBytes = this.lengths.map((l) => codec.bytes(l));
    this.encoded = this.encBytes.map((b) => new Uint8Array(b));
    const mine = this.encBytes[comm.rank]!;
    this.inbox = new Uint8Array(mine * (n - 1));
    this.gathered = new Uint8Array(this.encBytes.reduce((a, b) => a + b, 0));
    const longest = Math.max(0, ...this.lengths);
    this.scratch = new Float32Array(longest);
    this.decoded = new Float32Array(longest);
    this.residual = new Float32Array(elements);
  }

  /** Replaces `buf` on every rank with the element-wise sum over all ranks, as decoded from the wire. */
  run(buf: Float32Array): void {
    if (buf.length !== this.elements) throw new RangeError(`compressed all-reduce of ${this.elements} elements given ${buf.length}`);
    const comm = this.comm;
    const n = comm.worldSize;
    const r = comm.rank;
    const block = (a: Float32Array, k: number): Float32Array => a.subarray(this.offsets[k]!, this.offsets[k]! + this.lengths[k]!);
    // Reduce-scatter: block k goes, encoded, to rank k.
    for (let k = 0; k < n; k++) if (k !== r) this.encode(block(buf, k), block(this.residual, k), this.encoded[k]!);
    for (let root = 0; root < n; root++) {
      const counts = Array.from({ length: n }, (_, j) => (j === root ? 0 : this.encBytes[root]!));
      if (root === r) comm.gatherv(new Uint8Array(0), this.inbox, counts, root);
      else comm.gatherv(this.encoded[root]!, null, counts, root);
    }
    const own = block(buf, r);
    const dec = this.decoded.subarray(0, own.length);
    const mine = this.encBytes[r]!;
    for (let j = 0; j < n - 1; j++) {
      this.codec.decode(this.inbox.subarray(j * mine, (j + 1) * mine), dec);
      for (let i = 0; i < own.length; i++) own[i]! += dec[i]!;
    }
    // All-gather of the encoded sums; every rank decodes the same bytes.
    this.encode(own, block(this.residual, r), this.encoded[r]!);
    comm.allGatherv(this.encoded[r]!, this.gathered, this.encBytes);
    let at = 0;
    for (let k = 0; k < n; k++) {
      this.codec.decode(this.gathered.subarray(at, at + this.encBytes[k]!), block(buf, k));
      at += this.encBytes[k]!;
    }
  }

  private encode(src: Float32Array, residual: Float32Array, out: Uint8Array): void {
    if (this.codec.feedback) encodeWithFeedback(this.codec, src, residual, out, this.scratch);
    else this.codec.encode(src, out);
  }
}
