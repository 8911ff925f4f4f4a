/**
 * Element-wise sum kernels for the reducing collectives.
 *
 * The reduction is the hot loop of a ring all-reduce: every byte a rank receives in the
 * reduce-scatter phase is added to its own data once. A plain JavaScript loop over
 * Float32Array runs at about 2 GB/s on current x86 servers (each element is widened to a
 * double, bounds-checked and narrowed again), five to six times slower than `TypedArray.set`,
 * so it would cap the all-reduce far below memory bandwidth. A WebAssembly SIMD loop
 * (`f32x4.add`, four lanes, unrolled four times) runs at cache bandwidth instead (~30 GB/s
 * on cache-resident chunks), so the kernels here are a few dozen bytes of hand-assembled
 * WebAssembly working directly on the group's shared linear memory, with a JavaScript
 * fallback for hosts without WebAssembly SIMD or shared WebAssembly memory.
 *
 * WebAssembly can only address its own linear memory, which is why the whole comm group's
 * state (channel slots and per-rank scratch) lives in one shared `WebAssembly.Memory`: both
 * operands and the destination of every reduction are slots in that memory.
 */

/** Element types the reducing collectives accept. */
export type ReduceArray = Float32Array | Float64Array | Int32Array;

/** Index of a kernel in {@link KERNEL_OPS}. */
export type ReduceKind = 0 | 1 | 2;

/** The element type of a reduction, as an index into the kernel table. */
export function reduceKindOf(a: ReduceArray): ReduceKind {
  if (a instanceof Float32Array) return 0;
  if (a instanceof Float64Array) return 1;
  return 2;
}

/** Human-readable names of {@link ReduceKind}s, for error messages. */
export const REDUCE_KIND_NAMES = ['float32', 'float64', 'int32'] as const;

/** SIMD opcodes (after the 0xfd prefix, LEB128) of the lane-wise add for each kind. */
const KERNEL_OPS: readonly (readonly number[])[] = [
  [0xe4, 0x01], // f32x4.add
  [0xf0, 0x01], // f64x2.add
  [0xae, 0x01], // i32x4.add (wraps, as Int32Array arithmetic does)
];

/** Bytes the SIMD kernels process per loop iteration; the JS tail handles the rest. */
export const KERNEL_BLOCK_BYTES = 64;

/**
 * `add(dst, a, b, n)`: `dst[i] = a[i] + b[i]` over `n` bytes at byte addresses `dst`, `a`, `b`
 * of linear memory, where `n` is a multiple of {@link KERNEL_BLOCK_BYTES}. `dst` may equal
 * `a` or `b` (each 16-byte lane group is loaded before it is stored).
 */
export type AddKernel = (dst: number, a: number, b: number, nBytes: number) => void;

/** Minimal WebAssembly typings: the project's lib settings (ES2022, no DOM) do not declare them. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

/** The host's WebAssembly API, or null where there is none. */
function wasmApi(): WasmApi | null {
  const w = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
  return w ?? null;
}

/** WebAssembly page size. */
export const WASM_PAGE = 65536;

/**
 * Allocates shared linear memory of at least `bytes` bytes, or returns null when the host
 * cannot (no WebAssembly, no shared memory, or the size is over the 4 GiB limit).
 */
export function createSharedWasmMemory(bytes: number): WasmMemory | null {
  const api = wasmApi();
  if (api === null) return null;
  const pages = Math.ceil(bytes / WASM_PAGE);
  if (pages > 65536) return null;
  try {
    const mem = new api.Memory({ initial: pages, maximum: pages, shared: true });
    return mem.buffer instanceof SharedArrayBuffer ? mem : null;
  } catch {
    return null;
  }
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function name(s: string): number[] {
  return [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/**
 * Assembles the kernel module: it imports the shared memory as `e.m` (declared with the same
 * page count as the group's memory) and exports `f32`, `f64` and `i32` add functions of
 * type `(i32, i32, i32, i32) -> ()`. Written out by hand because the kernels are tiny and a
 * WebAssembly toolchain in the build would be far larger than the code it produces.
 */
export function assembleKernelModule(pages: number): Uint8Array {
  const get = (i: number): number[] => [0x20, i];
  const set = (i: number): number[] => [0x21, i];
  // memarg: alignment exponent 4 (16 bytes; slots are 64-byte aligned), then the offset.
  const load = (off: number): number[] => [0xfd, 0x00, 0x04, ...uleb(off)];
  const store = (off: number): number[] => [0xfd, 0x0b, 0x04, ...uleb(off)];
  const body = (op: readonly number[]): number[] => {
    const b: number[] = [0x00]; // no locals besides the four parameters
    // Parameter 3 becomes the end address dst + n.
    b.push(...get(0), ...get(3), 0x6a, ...set(3));
    // block { if dst >= end break; loop { ...; if dst < end continue } }
    b.push(0x02, 0x40, ...get(0), ...get(3), 0x4f, 0x0d, 0x00, 0x03, 0x40);
    for (const off of [0, 16, 32, 48]) {
      b.push(...get(0), ...get(1), ...load(off), ...get(2), ...load(off), 0xfd, ...op, ...store(off));
    }
    for (const p of [0, 1, 2]) b.push(...get(p), 0x41, 0xc0, 0x00, 0x6a, ...set(p)); // p += 64 (SLEB 64)
    b.push(...get(0), ...get(3), 0x49, 0x0d, 0x00, 0x0b, 0x0b, 0x0b);
    return [...uleb(b.length), ...b];
  };
  const funcType = [0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 0];
  const exportNames = ['f32', 'f64', 'i32'];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, ...funcType]),
    // import e.m: memory, limits flag 3 = shared with maximum.
    ...section(2, [1, ...name('e'), ...name('m'), 0x02, 0x03, ...uleb(pages), ...uleb(pages)]),
    ...section(3, [3, 0, 0, 0]),
    ...section(7, [3, ...exportNames.flatMap((n, i) => [...name(n), 0x00, i])]),
    ...section(10, [3, ...KERNEL_OPS.flatMap(body)]),
  ]);
}

/**
 * Instantiates the SIMD kernels over `memory`, or returns null where WebAssembly SIMD is
 * unavailable (the caller then uses {@link jsAdd}).
 */
export function instantiateKernels(memory: WasmMemory): AddKernel[] | null {
  const api = wasmApi();
  if (api === null) return null;
  const pages = memory.buffer.byteLength / WASM_PAGE;
  try {
    const bytes = assembleKernelModule(pages);
    if (!api.validate(bytes)) return null;
    const inst = new api.Instance(new api.Module(bytes), { e: { m: memory } });
    return [inst.exports['f32'] as AddKernel, inst.exports['f64'] as AddKernel, inst.exports['i32'] as AddKernel];
  } catch {
    return null;
  }
}

/**
 * Scalar `dst[i] = a[i] + b[i]` over `count` elements of the given kind, with every operand
 * given as a byte offset into `buf`. Used for the tail a SIMD block does not cover and as
 * the whole kernel where WebAssembly is missing.
 */
export function jsAdd(views: readonly [Float32Array, Float64Array, Int32Array], kind: ReduceKind, dst: number, a: number, b: number, count: number): void {
  if (kind === 0) {
    const v = views[0];
    const d = dst >> 2, x = a >> 2, y = b >> 2;
    for (let i = 0; i < count; i++) v[d + i] = v[x + i] + v[y + i];
  } else if (kind === 1) {
    const v = views[1];
    const d = dst >> 3, x = a >> 3, y = b >> 3;
    for (let i = 0; i < count; i++) v[d + i] = v[x + i] + v[y + i];
  } else {
    const v = views[2];
    const d = dst >> 2, x = a >> 2, y = b >> 2;
    for (let i = 0; i < count; i++) v[d + i] = (v[x + i] + v[y + i]) | 0;
  }
}
