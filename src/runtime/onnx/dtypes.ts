/**
 * ONNX element types: their names as Parallax prints them, their sizes, and the typed arrays
 * onnxruntime-node takes for them.
 *
 * Names follow numpy/onnxruntime-node spelling (`float32`, `int64`, `bool`), because those are
 * the names users see in error messages and in ORT's own tensor `type` field.
 */

/** An element type name. `unknown:<code>` stands for a code this table does not know. */
export type DType =
  | 'undefined'
  | 'float32'
  | 'uint8'
  | 'int8'
  | 'uint16'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'string'
  | 'bool'
  | 'float16'
  | 'float64'
  | 'uint32'
  | 'uint64'
  | 'complex64'
  | 'complex128'
  | 'bfloat16'
  | 'float8e4m3fn'
  | 'float8e4m3fnuz'
  | 'float8e5m2'
  | 'float8e5m2fnuz'
  | 'uint4'
  | 'int4'
  | 'float4e2m1'
  | `unknown:${number}`;

/** TensorProto.DataType codes in order (ONNX 1.18); the index is the code. */
const NAMES: readonly DType[] = [
  'undefined',
  'float32',
  'uint8',
  'int8',
  'uint16',
  'int16',
  'int32',
  'int64',
  'string',
  'bool',
  'float16',
  'float64',
  'uint32',
  'uint64',
  'complex64',
  'complex128',
  'bfloat16',
  'float8e4m3fn',
  'float8e4m3fnuz',
  'float8e5m2',
  'float8e5m2fnuz',
  'uint4',
  'int4',
  'float4e2m1',
];

/** Bits per element; 0 where the size is not fixed (string, undefined). */
const BITS: Readonly<Record<string, number>> = {
  float32: 32,
  uint8: 8,
  int8: 8,
  uint16: 16,
  int16: 16,
  int32: 32,
  int64: 64,
  bool: 8,
  float16: 16,
  float64: 64,
  uint32: 32,
  uint64: 64,
  complex64: 64,
  complex128: 128,
  bfloat16: 16,
  float8e4m3fn: 8,
  float8e4m3fnuz: 8,
  float8e5m2: 8,
  float8e5m2fnuz: 8,
  uint4: 4,
  int4: 4,
  float4e2m1: 4,
};

/** The name of a TensorProto.DataType code. */
export function dtypeName(code: number): DType {
  return NAMES[code] ?? `unknown:${code}`;
}

/** The TensorProto.DataType code of a name, or undefined for names this table lacks. */
export function dtypeCode(name: DType): number | undefined {
  const i = NAMES.indexOf(name);
  return i >= 0 ? i : undefined;
}

/** Bytes taken by `count` elements of `dtype`, or null where the size is not fixed. */
export function byteSize(dtype: DType, count: number): number | null {
  const bits = BITS[dtype];
  if (bits === undefined) return null;
  // Sub-byte types are packed two to a byte, with the last byte padded.
  return Math.ceil((count * bits) / 8);
}

/** True for the types whose values are learned weights rather than shapes or indices. */
export function isFloatType(dtype: DType): boolean {
  return dtype.startsWith('float') || dtype === 'bfloat16';
}

/**
 * True for the types that hold parameters: float and quantized types are weights,
 * int64/int32/bool are shapes and indices.
 */
export function isWeightType(dtype: DType): boolean {
  return isFloatType(dtype) || dtype === 'int8' || dtype === 'uint8' || dtype === 'int4' || dtype === 'uint4' || dtype === 'int16' || dtype === 'uint16';
}

/** Typed arrays onnxruntime-node accepts as tensor data. */
export type TensorData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int16Array
  | Int32Array
  | Uint32Array
  | Int8Array
  | Uint8Array
  | BigInt64Array
  | BigUint64Array;

/** A typed-array constructor: by length, or as a view of a buffer. */
export interface TensorDataCtor {
  new (length: number): TensorData;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
}

/**
 * The typed array each element type travels in. float16 and bfloat16 are carried as their raw
 * 16-bit patterns in a Uint16Array, which is what ORT expects; bool is one byte per element.
 * Types missing here (string, complex, sub-byte types) have no plain typed-array form.
 */
const TENSOR_ARRAYS: Readonly<Partial<Record<DType, TensorDataCtor>>> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  uint16: Uint16Array,
  int16: Int16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
};

/** The typed-array constructor for `dtype`, or undefined for types without one. */
export function tensorArrayFor(dtype: string): TensorDataCtor | undefined {
  return Object.hasOwn(TENSOR_ARRAYS, dtype) ? TENSOR_ARRAYS[dtype as DType] : undefined;
}

/**
 * Allocates a zeroed typed array for `count` elements of `dtype`, or returns null for types
 * onnxruntime-node cannot take from a plain typed array (string, complex, sub-byte types).
 */
export function allocTensorData(dtype: DType, count: number): TensorData | null {
  const Ctor = tensorArrayFor(dtype);
  return Ctor ? new Ctor(count) : null;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The IEEE 754 binary16 bit pattern nearest to `value` (round to nearest even). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to infinity
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa, with its implicit bit, into place.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // Rounding up may carry into the exponent; that is still the right pattern (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++;
  return sign | half;
}

/** The value of an IEEE 754 binary16 bit pattern. */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
