/**
 * Mutation primitives shared by the fuzz targets: a seeded random source and byte-level
 * mutations (flips, cuts, insertions, repeats) that any encoded input can go through.
 */
import { mulberry32 } from '../../src/runtime/onnx/random';

/** A seeded random source with the helpers mutations need. */
export class Rand {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed >>> 0);
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** The seed of input `index` of a run seeded `seed`: inputs are reproducible one by one. */
export function inputSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

/** Numbers that break careless code: zero, negatives, powers of two at type edges, huge and tiny values. */
export const HOSTILE_NUMBERS: readonly number[] = [0, -1, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e12, 1e300, -1e300, 5e-324, 0.5, 7];

/** Strings that break careless code: control bytes, escapes, separators, long runs. */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  '\x1b]0;title\x07\x1b[2J',
  'a\rall good',
  '../../etc/passwd',
  '/etc/passwd',
  'C:\\Windows\\win.ini',
  '\u202eevil',
  'x'.repeat(10_000),
  'ProfilerStep#99999999999',
  'nccl:all_reduce',
  'ncclDevKernel_AllReduce',
  '\0',
  '{"a":[',
];

/** One byte-level mutation of `bytes` (a new buffer). */
export function mutateBytes(bytes: Uint8Array, r: Rand): Uint8Array {
  const b = Buffer.from(bytes);
  if (b.length === 0) return Buffer.from([r.int(256)]);
  switch (r.int(6)) {
    case 0: {
      // Flip a few bytes.
      const n = 1 + r.int(4);
      for (let i = 0; i < n; i++) b[r.int(b.length)] = r.int(256);
      return b;
    }
    case 1:
      // Truncate.
      return b.subarray(0, r.int(b.length));
    case 2: {
      // Insert random bytes.
      const at = r.int(b.length);
      const extra = Buffer.from(Array.from({ length: 1 + r.int(8) }, () => r.int(256)));
      return Buffer.concat([b.subarray(0, at), extra, b.subarray(at)]);
    }
    case 3: {
      // Repeat a slice (grows nested lengths and repeated fields).
      const a = r.int(b.length);
      const len = 1 + r.int(Math.min(256, b.length - a));
      const at = r.int(b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(a, a + len), b.subarray(at)]);
    }
    case 4: {
      // Varint-looking bytes: continuation bits everywhere make lengths huge.
      const at = r.int(b.length);
      for (let i = 0; i < 1 + r.int(5) && at + i < b.length; i++) b[at + i] = 0xff;
      return b;
    }
    default: {
      // Delete a slice.
      const a = r.int(b.length);
      return Buffer.concat([b.subarray(0, a), b.subarray(a + 1 + r.int(32))]);
    }
  }
}
