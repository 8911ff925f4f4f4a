/** Typed-array helpers for tensors in shared memory: dtype mapping and batch-row copies. */
import { tensorArrayFor, type TensorData, type TensorDataCtor } from './onnx/dtypes';

/** A tensor's data in shared memory: one of the typed arrays of {@link tensorArrayFor}. */
export type AnyTypedArray = TensorData;

/** The typed-array constructor for an ONNX Runtime tensor type. */
export function ctorFor(dtype: string): TensorDataCtor {
  const c = tensorArrayFor(dtype);
  if (!c) throw new Error(`unsupported tensor type ${dtype}`);
  return c;
}

export function bytesPerElement(dtype: string): number {
  return ctorFor(dtype).BYTES_PER_ELEMENT;
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** A typed view of a shared buffer holding a tensor of `dtype`. */
export function viewOf(dtype: string, buf: ArrayBufferLike): AnyTypedArray {
  return new (ctorFor(dtype))(buf);
}

/** Elements before `axis` (outer), after it (inner), and the rows along it. */
function rowGeometry(dims: readonly number[], axis: number): { outer: number; inner: number; rows: number } {
  let outer = 1;
  for (let i = 0; i < axis; i++) outer *= dims[i];
  let inner = 1;
  for (let i = axis + 1; i < dims.length; i++) inner *= dims[i];
  return { outer, inner, rows: dims[axis] };
}

/**
 * Copies rows [start, start+count) along `axis` of `src` (shape `dims`) into `dst`, which has
 * the same shape with `count` at `axis`. Axis 0 is one contiguous copy; other axes copy one
 * contiguous block per index of the leading axes.
 */
export function copyRows(src: AnyTypedArray, dims: readonly number[], axis: number, start: number, count: number, dst: AnyTypedArray): void {
  const { outer, inner, rows } = rowGeometry(dims, axis);
  const block = count * inner;
  const d = dst as unknown as { set(a: ArrayLike<number | bigint>, o: number): void };
  for (let o = 0; o < outer; o++) {
    const from = (o * rows + start) * inner;
    d.set(src.subarray(from, from + block) as unknown as ArrayLike<number>, o * block);
  }
}

/** Inverse of {@link copyRows}: writes `src` (rows of a shard) into rows [start, start+count) of `dst`. */
export function placeRows(src: AnyTypedArray, dims: readonly number[], axis: number, start: number, count: number, dst: AnyTypedArray): void {
  const { outer, inner, rows } = rowGeometry(dims, axis);
  const block = count * inner;
  const d = dst as unknown as { set(a: ArrayLike<number | bigint>, o: number): void };
  for (let o = 0; o < outer; o++) {
    d.set(src.subarray(o * block, (o + 1) * block) as unknown as ArrayLike<number>, (o * rows + start) * inner);
  }
}

/**
 * `src` (shape `dims`) repeated `times` times along `axis`: the result has `dims[axis]·times`
 * rows there, copy k holding rows [k·n, (k+1)·n) (a batch made larger from the rows it has).
 */
export function tileRows(dtype: string, src: AnyTypedArray, dims: readonly number[], axis: number, times: number): { data: AnyTypedArray; dims: number[] } {
  const out = dims.slice();
  out[axis] = dims[axis]! * times;
  const Ctor = ctorFor(dtype);
  const dst = new Ctor(new SharedArrayBuffer(elementCount(out) * bytesPerElement(dtype))) as unknown as AnyTypedArray;
  for (let k = 0; k < times; k++) placeRows(src, out, axis, k * dims[axis]!, dims[axis]!, dst);
  return { data: dst, dims: out };
}
