/**
 * Wire encodings of float32 gradients for a compressed all-reduce (`--grad-dtype`):
 *
 * - `float16`: IEEE 754 binary16, rounded to nearest, ties to even (what a GPU's
 *   `__float2half_rn` and PyTorch DDP's `fp16_compress_hook` do). Node 20 has neither
 *   `Float16Array` nor `Math.f16round`, and `Math.fround` rounds to float32, so the conversion
 *   is done here on the float32 bit pattern; the tests check it against known bit patterns.
 * - `int8`: symmetric linear quantisation with one float32 scale per chunk of
 *   {@link INT8_CHUNK} elements (`scale = max|x| / 127`, `q = round(x / scale)`), the layout
 *   of 8-bit gradient compression in 1-bit/8-bit SGD and EF-SGD. A chunk-wise scale keeps one
 *   large gradient from flattening every other value of a big bucket to zero.
 *
 * Quantisation loses information every step; with error feedback (EF-SGD, Karimireddy et al.
 * 2019; the same idea as 1-bit SGD's) the part that was lost — the residual — is kept and
 * added to the next step's gradient before encoding, so nothing is lost for good, only
 * delayed. {@link encodeWithFeedback} does that; int8 uses it, float16 (whose relative error
 * is 2^-11) does not need it.
 *
 * Encoded layouts (little-endian, as every typed array on the platforms Node runs on):
 * float16 is `m` uint16 values (2m bytes); int8 is `ceil(m / INT8_CHUNK)` float32 scales then
 * `m` int8 values, padded to a multiple of 4 bytes so that blocks laid end to end stay
 * aligned for the scales of the next one.
 */

/** Element types of gradients on the wire. */
export type WireDtype = 'float32' | 'float16' | 'int8';

/** Elements that share one int8 scale. */
export const INT8_CHUNK = 2048;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bit pattern nearest to `x` (ties to even); NaN → quiet NaN, overflow → ±Infinity. */
export function float16Bits(x: number): number {
  f32[0] = x;
  return float16FromFloat32Bits(u32[0]!);
}

/**
 * The binary16 bit pattern nearest to the float32 whose bits are `b`. Integer operations
 * only, so that a bulk encoder can run it over a Uint32Array view of the floats.
 */
function float16FromFloat32Bits(b: number): number {
  const x = b & 0x7fffffff;
  // Fast path, results that are binary16 normals (float32 exponents 113..142): rebias the
  // exponent in place and round the 13 dropped bits to nearest even (adding 0xfff plus the
  // kept lowest bit carries exactly when the dropped part is above half, or half with an odd
  // kept part); a carry into the exponent is correct, up to Infinity.
  if (x >= 0x38800000 && x < 0x47800000) return ((b >>> 16) & 0x8000) | ((x - 0x38000000 + 0xfff + ((x >>> 13) & 1)) >>> 13);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  // Exponent rebiased from 127 to 15.
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A binary16 subnormal (unit 2^-24) or zero. Values below 2^-25 round to zero; the
    // float32 subnormals (exp 0) are far below that.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa steps the exponent, up to Infinity (0x7c00), as it should.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++;
  return sign | h;
}

/** The value of a binary16 bit pattern. */
export function float16Value(h: number): number {
  const sign = (h & 0x8000) !== 0 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m !== 0 ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Every binary16 pattern's value, for decoding at table speed. */
let table: Float32Array | null = null;
function float16Table(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = float16Value(h);
  }
  return table;
}

/** A wire encoding: its size for `m` elements, and encode/decode between float32 and bytes. */
export interface WireCodec {
  readonly dtype: WireDtype;
  /** Whether a sender keeps its quantisation residual for the next step (error feedback). */
  readonly feedback: boolean;
  /** Encoded bytes of `m` elements. */
  bytes(m: number): number;
  /** Encodes `src` into `out` (exactly `bytes(src.length)` bytes, 4-byte aligned). */
  encode(src: Float32Array, out: Uint8Array): void;
  /** Decodes `enc` into `out` (`out.length` elements). */
  decode(enc: Uint8Array, out: Float32Array): void;
}

const float32Codec: WireCodec = {
  dtype: 'float32',
  feedback: false,
  bytes: (m) => 4 * m,
  encode(src, out) {
    out.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  },
  decode(enc, out) {
    out.set(new Float32Array(enc.buffer, enc.byteOffset, out.length));
  },
};

const float16Codec: WireCodec = {
  dtype: 'float16',
  feedback: false,
  bytes: (m) => 2 * m,
  encode(src, out) {
    const h = new Uint16Array(out.buffer, out.byteOffset, src.length);
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) h[i] = float16FromFloat32Bits(bits[i]!);
  },
  decode(enc, out) {
    const t = float16Table();
    const h = new Uint16Array(enc.buffer, enc.byteOffset, out.length);
    for (let i = 0; i < out.length; i++) out[i] = t[h[i]!]!;
  },
};

const chunksOf = (m: number): number => Math.ceil(m / INT8_CHUNK);

const int8Codec: WireCodec = {
  dtype: 'int8',
  feedback: true,
  bytes: (m) => 4 * chunksOf(m) + Math.ceil(m / 4) * 4,
  encode(src, out) {
    const m = src.length;
    const chunks = chunksOf(m);
    const scales = new Float32Array(out.buffer, out.byteOffset, chunks);
    const q = new Int8Array(out.buffer, out.byteOffset + 4 * chunks, m);
    for (let c = 0; c < chunks; c++) {
      const lo = c * INT8_CHUNK;
      const hi = Math.min(m, lo + INT8_CHUNK);
      let max = 0;
      for (let i = lo; i < hi; i++) max = Math.max(max, Math.abs(src[i]!));
      // Rounded to float32 first, so the sender's residual uses the scale the receiver reads.
      const scale = Math.fround(max / 127);
      scales[c] = scale;
      if (scale === 0 || !Number.isFinite(scale)) {
        q.fill(0, lo, hi);
        continue;
      }
      // |x / scale| ≤ 127 by construction (up to rounding of the scale, hence the clamp);
      // rounding half away from zero, as an integer conversion of x/scale ± 0.5.
      const inv = 1 / scale;
      for (let i = lo; i < hi; i++) {
        const v = src[i]! * inv;
        const r = v >= 0 ? (v + 0.5) | 0 : (v - 0.5) | 0;
        q[i] = r > 127 ? 127 : r < -127 ? -127 : r;
      }
    }
  },
  decode(enc, out) {
    const m = out.length;
    const chunks = chunksOf(m);
    const scales = new Float32Array(enc.buffer, enc.byteOffset, chunks);
    const q = new Int8Array(enc.buffer, enc.byteOffset + 4 * chunks, m);
    for (let c = 0; c < chunks; c++) {
      const scale = scales[c]!;
      const hi = Math.min(m, (c + 1) * INT8_CHUNK);
      for (let i = c * INT8_CHUNK; i < hi; i++) out[i] = q[i]! * scale;
    }
  },
};

/** The codec of a wire dtype. */
export function wireCodec(dtype: WireDtype): WireCodec {
  switch (dtype) {
    case 'float32':
      return float32Codec;
    case 'float16':
      return float16Codec;
    case 'int8':
      return int8Codec;
    default: {
      const never: never = dtype;
      throw new Error(`unknown wire dtype ${String(never)}`);
    }
  }
}

/**
 * Encodes `src + residual` into `out` and leaves in `residual` what the encoding lost
 * (`src + residual − decode(out)`), which the next call adds back: error feedback.
 * `scratch` is working space of `src.length` elements.
 */
export function encodeWithFeedback(codec: WireCodec, src: Float32Array, residual: Float32Array, out: Uint8Array, scratch: Float32Array): void {
  const m = src.length;
  const x = scratch.subarray(0, m);
  for (let i = 0; i < m; i++) x[i] = src[i]! + residual[i]!;
  codec.encode(x, out);
  codec.decode(out, residual);
  for (let i = 0; i < m; i++) residual[i] = x[i]! - residual[i]!;
}
