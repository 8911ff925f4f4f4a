/**
 * The value checks of span columns, one column at a time.
 *
 * Every check is a bound on one column: a code below its vocabulary's size, an index inside
 * the string table, the lanes or the spans, a time no clock produces, a number that is not
 * finite. Checked column by column, each check is a tight loop over one typed array with one
 * comparison per value (no call, no property load per span), several times faster than one
 * loop over every column; and a column can be checked as soon as it is in memory, which lets a
 * reader check the columns already read while the others are still being read
 * (spans-file.ts).
 *
 * The checks are the same whichever way the columns arrive (JSON arrays, a side file, a
 * message). Which span a message names when several columns are wrong follows the order of
 * {@link SPAN_COLUMN_CHECK_ORDER}, then the span's index.
 */
import { MAX_DURATION_US, MAX_TIMESTAMP_US } from '../common/limits';
import { COMM_OPS, IDLE_CAUSES, PHASES, SPAN_KINDS } from './span-vocabulary';
import type { SpanColumnName } from './trace-format';

/** What the bounds of a trace's columns depend on. */
export interface SpanLimits {
  /** Spans in the trace (bounds `parent`). */
  spans: number;
  /** Entries of the string table (bounds `name`, `opType`). */
  strings: number;
  /** Lanes (bounds `lane`). */
  lanes: number;
}

type Column = Int32Array | Uint8Array | Float64Array;

/**
 * Columns with a bound, in the order they are checked; the others (step, micro, stage, peer,
 * flags) accept any value of their type.
 */
export const SPAN_COLUMN_CHECK_ORDER = ['kind', 'name', 'opType', 'lane', 'parent', 'cause', 'comm', 'phase', 'start', 'dur', 'bytes', 'cpu', 'wait'] as const satisfies readonly SpanColumnName[];

const I32_MIN = -(2 ** 31);

// One loop per array type, so that each stays monomorphic (a loop that sees two kinds of typed
// array is markedly slower per value).

/** The first index whose value lies outside [lo, hi], or -1. */
function firstOutsideI32(a: Int32Array, lo: number, hi: number): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v < lo || v > hi) return i;
  }
  return -1;
}

/**
 * The first index whose value is above hi (below 128), or -1. Four bytes at a time where the
 * array is aligned: adding 127 - hi to each byte's low seven bits carries into its top bit
 * exactly when the byte is above hi, and a byte of 128 or more has its top bit already; the
 * exact index is then found byte by byte.
 */
function firstAboveU8(a: Uint8Array, hi: number): number {
  let i = 0;
  if (hi >= 0 && hi < 128 && a.byteOffset % 4 === 0) {
    const words = new Uint32Array(a.buffer, a.byteOffset, a.length >>> 2);
    const add = (127 - hi) * 0x01010101;
    let w = 0;
    for (; w < words.length; w++) {
      const x = words[w]!;
      if (((((x & 0x7f7f7f7f) + add) | x) & 0x80808080) !== 0) break;
    }
    i = w * 4;
  }
  for (; i < a.length; i++) if (a[i]! > hi) return i;
  return -1;
}

/** The bitwise or of every byte of `a`, four bytes at a time where the array is aligned. */
export function orOfBytes(a: Uint8Array): number {
  let acc = 0;
  let i = 0;
  if (a.byteOffset % 4 === 0) {
    const words = new Uint32Array(a.buffer, a.byteOffset, a.length >>> 2);
    for (let w = 0; w < words.length; w++) acc |= words[w]!;
    acc = (acc | (acc >>> 8) | (acc >>> 16) | (acc >>> 24)) & 0xff;
    i = words.length * 4;
  }
  for (; i < a.length; i++) acc |= a[i]!;
  return acc;
}

/** The largest value of `a`, or -Infinity when it is empty. */
export function maxOfI32(a: Int32Array): number {
  let hi = -Infinity;
  for (let i = 0; i < a.length; i++) if (a[i]! > hi) hi = a[i]!;
  return hi;
}

/** The first index whose value lies outside [lo, hi] or is NaN, or -1. */
function firstOutsideF64(a: Float64Array, lo: number, hi: number): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    // Written so that NaN fails: every comparison with NaN is false.
    if (!(v >= lo && v <= hi)) return i;
  }
  return -1;
}

/**
 * What is wrong with column `c` (one line, naming the first span that breaks its bound), or
 * null when every value is in bounds. Columns without a bound are not read.
 */
export function spanColumnProblem(c: SpanColumnName, col: Column, limits: SpanLimits): string | null {
  const at = (i: number, what: string): string | null => (i < 0 ? null : `invalid trace: spans.${c}[${i}] ${what}`);
  const i32 = (lo: number, hi: number, what: string): string | null => at(firstOutsideI32(col as Int32Array, lo, hi), what);
  const u8 = (hi: number, what: string): string | null => at(firstAboveU8(col as Uint8Array, hi), what);
  const f64 = (lo: number, hi: number, range: (v: number, i: number) => string): string | null => {
    const i = firstOutsideF64(col as Float64Array, lo, hi);
    if (i < 0) return null;
    const v = col[i]!;
    return Number.isFinite(v) ? range(v, i) : `invalid trace: spans.${c}[${i}] is not a finite number`;
  };
  switch (c) {
    case 'kind':
      return u8(SPAN_KINDS.length - 1, 'is unknown');
    case 'cause':
      return u8(IDLE_CAUSES.length - 1, 'is unknown');
    case 'comm':
      return u8(COMM_OPS.length - 1, 'is unknown');
    case 'phase':
      return u8(PHASES.length - 1, 'is unknown');
    case 'name':
      return i32(0, limits.strings - 1, 'is out of range');
    case 'opType':
      // -1 (or any negative) is "no operator type".
      return i32(I32_MIN, limits.strings - 1, 'is out of range');
    case 'lane':
      return i32(0, limits.lanes - 1, 'is out of range');
    case 'parent':
      return i32(I32_MIN, limits.spans - 1, 'is out of range');
    // Times no clock produces would turn every statistic they enter into nonsense.
    case 'dur':
      return f64(0, MAX_DURATION_US, (v, i) => `invalid trace: spans.dur[${i}] is ${v} µs, outside 0 to ${MAX_DURATION_US} µs`);
    case 'start':
      return f64(-MAX_TIMESTAMP_US, MAX_TIMESTAMP_US, (v, i) => `invalid trace: spans.start[${i}] is ${v} µs, beyond any clock`);
    case 'bytes':
    case 'cpu':
    case 'wait':
      return f64(-Number.MAX_VALUE, Number.MAX_VALUE, () => 'unreachable: a finite value is inside ±MAX_VALUE');
    case 'step':
    case 'micro':
    case 'stage':
    case 'peer':
    case 'flags':
      return null;
    default: {
      const never: never = c;
      return never;
    }
  }
}

/**
 * The first problem of any column of `cols` (in {@link SPAN_COLUMN_CHECK_ORDER}), or null;
 * columns for which `skip` holds are not read.
 */
export function spanColumnsProblem(cols: Record<SpanColumnName, Column>, limits: SpanLimits, skip: (c: SpanColumnName) => boolean = () => false): string | null {
  for (const c of SPAN_COLUMN_CHECK_ORDER) {
    if (skip(c)) continue;
    const p = spanColumnProblem(c, cols[c], limits);
    if (p) return p;
  }
  return null;
}
