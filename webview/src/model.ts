/**
 * The timeline's data model: everything computed once per trace so that a frame only reads.
 * Pure TypeScript over typed arrays, no DOM, so it runs in a Worker (prep-worker.ts) or on
 * the main thread, and under Node in tests.
 *
 * For each lane there are three rows: `state` (top-level compute spans and idle spans — the
 * device's state over time), `ops` (operator spans nested under compute) and `comm`. Each row
 * gets:
 *  - `order`: its spans' indices sorted by start (one Uint32Array for all rows, cut by
 *    `rowOffsets`), built with a counting sort by row, then a sort only where a row is not
 *    already in order;
 *  - `maxEnd`: the running maximum of span ends along `order`, so the first span that can
 *    reach into a view is found by binary search even when spans overlap;
 *  - for rows with many spans, a pyramid of pre-aggregated buckets (each level twice as wide
 *    as the one below, as in Perfetto's per-zoom summaries) storing each bucket's dominant
 *    draw class and coverage: a zoomed-out frame reads buckets, never millions of spans.
 * Plus the send→recv flows and the collective groups, each sorted by time with its own
 * running maximum end for visible-range queries.
 */

import { CommOpCode, IDLE_CAUSES, SpanFlag, SpanKind, isP2pCode, type IdleCause } from '../../src/profiler/span-vocabulary';

/** Row kinds within a lane. */
export const ROW_STATE = 0;
export const ROW_OPS = 1;
export const ROW_COMM = 2;
export const ROWS_PER_LANE = 3;
export const ROW_NAMES = ['state', 'ops', 'comm'] as const;

/** Draw classes (low 4 bits of `cls`): each has a colour and a legend entry. */
export const C_COMPUTE = 0;
export const C_OP = 1;
export const C_OP_ALT = 2;
export const C_COMM = 3;
export const C_STAGING = 4;
export const C_BUBBLE = 5;
export const C_COLLECTIVE = 6;
export const C_HOST = 7;
export const C_IDLE_OTHER = 8;
export const C_BACKPRESSURE = 9;
export const N_CLASSES = 10;
/** Idle classes are the last ones: C_BUBBLE … C_BACKPRESSURE (drawn hatched). */
export const C_IDLE_FIRST = C_BUBBLE;
export const CLASS_MASK = 0x0f;
/** Modifier bits on `cls`: drawn with a pattern over the class colour. */
export const M_EMULATED = 0x10;
export const M_PREDICTED = 0x20;
/** A pyramid bucket with nothing in it. */
export const EMPTY = 0xff;

/**
 * The draw class of idle spans of each cause. Typed by the causes of the trace format, so a
 * new cause does not compile until it has a class (and with it a colour and a legend entry).
 */
const IDLE_CLASS: Record<IdleCause, number> = {
  none: C_IDLE_OTHER,
  bubble: C_BUBBLE,
  collective: C_COLLECTIVE,
  host: C_HOST,
  other: C_IDLE_OTHER,
  backpressure: C_BACKPRESSURE,
};
/** Draw class by cause code. */
const IDLE_CLASS_OF_CODE = Uint8Array.from(IDLE_CAUSES, (c) => IDLE_CLASS[c]);

/** Rows with fewer spans than this are always drawn span by span. */
export const PYRAMID_MIN_SPANS = 4096;
/** Coarsest pyramid level has at most this many buckets. */
const PYRAMID_TOP_BUCKETS = 64;
/** Accumulation channels per bucket: one per class, then emulated and predicted time. */
export const CHANNELS = N_CLASSES + 2;

/** The span columns preparation reads (a subset of SpanColumns). */
export interface PrepInput {
  count: number;
  nLanes: number;
  lane: Int32Array;
  kind: Uint8Array;
  start: Float64Array;
  dur: Float64Array;
  parent: Int32Array;
  flags: Uint8Array;
  cause: Uint8Array;
  peer: Int32Array;
  micro: Int32Array;
  step: Int32Array;
  name: Int32Array;
  stage: Int32Array;
  /** What each comm span does (`spans.comm`, CommOpCode): flows pair `send` with `recv`. */
  comm: Uint8Array;
}

export interface PyramidLevel {
  /** Dominant class with modifier bits, or EMPTY. */
  cls: Uint8Array;
  /** Share of the bucket covered, 0–255. */
  cov: Uint8Array;
}

export interface Pyramid {
  /** Start of bucket 0, µs on the trace clock. */
  t0: number;
  /** Width of a level-0 bucket, µs; level k is `width0 * 2^k`. */
  width0: number;
  levels: PyramidLevel[];
}

/** Indices into the spans with their own time order, for flows and collectives. */
export interface TimeIndex {
  /** Earliest time of each item, ascending. */
  start: Float64Array;
  /** Running maximum of item ends along `start`. */
  maxEnd: Float64Array;
}

export interface Prepared {
  /** Draw class of every span (class | modifiers). */
  cls: Uint8Array;
  /** Span indices grouped by row (lane * 3 + row kind), sorted by start within a row. */
  order: Uint32Array;
  /** Row r's spans are order[rowOffsets[r] .. rowOffsets[r + 1]). */
  rowOffsets: Int32Array;
  /** Running maximum end along `order`, restarted at each row. */
  maxEnd: Float64Array;
  /** Smallest and largest pipeline stage seen in each row, -1 when none. */
  rowStageMin: Int32Array;
  rowStageMax: Int32Array;
  pyramids: (Pyramid | null)[];
  /** Matched point-to-point transfers: send span → recv span, sorted by send start. */
  flows: { send: Int32Array; recv: Int32Array; index: TimeIndex };
  /** Collective groups (one operation across lanes): members of group g are members[offsets[g]..offsets[g+1]). */
  collectives: { offsets: Int32Array; members: Int32Array; end: Float64Array; index: TimeIndex };
  /** Earliest start and latest end over all spans (0, 0 when empty). */
  extent: [number, number];
  /** Top-level spans per kind (compute, comm, idle) and operator spans. */
  counts: { compute: number; comm: number; idle: number; op: number };
  /** Milliseconds the preparation took. */
  prepMs: number;
}

/** Row kind of span i. */
export function rowKindOf(kind: number, parent: number, flags: number): number {
  if (kind === SpanKind.comm) return ROW_COMM;
  if (kind === SpanKind.compute && (parent >= 0 || (flags & SpanFlag.op) !== 0)) return ROW_OPS;
  return ROW_STATE;
}

function baseClass(kind: number, parent: number, flags: number, cause: number): number {
  if (kind === SpanKind.idle) return IDLE_CLASS_OF_CODE[cause] ?? C_IDLE_OTHER;
  if (kind === SpanKind.comm) return (flags & SpanFlag.staging) !== 0 ? C_STAGING : C_COMM;
  return parent >= 0 || (flags & SpanFlag.op) !== 0 ? C_OP : C_COMPUTE;
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

/** Prepares the draw model of one trace. */
export function prepare(inp: PrepInput): Prepared {
  const t0 = now();
  const n = inp.count;
  const nRows = inp.nLanes * ROWS_PER_LANE;
  const { lane, kind, start, dur, parent, flags, cause } = inp;

  // Classes, row of each span, counts per row.
  const cls = new Uint8Array(n);
  const rowOf = new Int32Array(n);
  const rowCount = new Int32Array(nRows + 1);
  const counts = { compute: 0, comm: 0, idle: 0, op: 0 };
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const k = kind[i];
    const p = parent[i];
    const f = flags[i];
    let c = baseClass(k, p, f, cause[i]);
    if (f & SpanFlag.emulated) c |= M_EMULATED;
    if (f & SpanFlag.predicted) c |= M_PREDICTED;
    cls[i] = c;
    const r = lane[i] * ROWS_PER_LANE + rowKindOf(k, p, f);
    rowOf[i] = r;
    rowCount[r + 1]++;
    if ((c & CLASS_MASK) === C_OP || (c & CLASS_MASK) === C_OP_ALT) counts.op++;
    else if (k === SpanKind.compute) counts.compute++;
    else if (k === SpanKind.comm) counts.comm++;
    else counts.idle++;
    const s = start[i];
    if (s < lo) lo = s;
    const e = s + dur[i];
    if (e > hi) hi = e;
  }
  const rowOffsets = new Int32Array(nRows + 1);
  for (let r = 0; r < nRows; r++) rowOffsets[r + 1] = rowOffsets[r] + rowCount[r + 1];

  // Counting sort by row keeps the trace's order within a row; most rows are then in order.
  const order = new Uint32Array(n);
  const fill = rowOffsets.slice(0, nRows);
  for (let i = 0; i < n; i++) order[fill[rowOf[i]]++] = i;

  const maxEnd = new Float64Array(n);
  const rowStageMin = new Int32Array(nRows).fill(-1);
  const rowStageMax = new Int32Array(nRows).fill(-1);
  const pyramids: (Pyramid | null)[] = [];
  for (let r = 0; r < nRows; r++) {
    const a = rowOffsets[r];
    const b = rowOffsets[r + 1];
    let sorted = true;
    for (let p = a + 1; p < b; p++) {
      if (start[order[p]] < start[order[p - 1]]) {
        sorted = false;
        break;
      }
    }
    if (!sorted) order.subarray(a, b).sort((x, y) => start[x] - start[y] || x - y);
    let m = -Infinity;
    let smin = -1;
    let smax = -1;
    let opParity = 0;
    for (let p = a; p < b; p++) {
      const i = order[p];
      const e = start[i] + dur[i];
      if (e > m) m = e;
      maxEnd[p] = m;
      const st = inp.stage[i];
      if (st >= 0) {
        if (smin < 0 || st < smin) smin = st;
        if (st > smax) smax = st;
      }
      // Neighbouring operators alternate between two shades so their boundaries show.
      if ((cls[i] & CLASS_MASK) === C_OP) {
        if (opParity & 1) cls[i] = (cls[i] & ~CLASS_MASK) | C_OP_ALT;
        opParity++;
      }
    }
    rowStageMin[r] = smin;
    rowStageMax[r] = smax;
    pyramids.push(b - a >= PYRAMID_MIN_SPANS ? buildPyramid(order, a, b, start, dur, cls, maxEnd[b - 1]) : null);
  }

  const flows = matchFlows(inp, order, rowOffsets);
  const collectives = groupCollectives(inp, order, rowOffsets);

  return {
    cls,
    order,
    rowOffsets,
    maxEnd,
    rowStageMin,
    rowStageMax,
    pyramids,
    flows,
    collectives,
    extent: n > 0 ? [lo, hi] : [0, 0],
    counts,
    prepMs: now() - t0,
  };
}

/** Builds the bucket pyramid of one row (positions a..b of `order`). */
function buildPyramid(
  order: Uint32Array,
  a: number,
  b: number,
  start: Float64Array,
  dur: Float64Array,
  cls: Uint8Array,
  end: number,
): Pyramid {
  const n = b - a;
  const t0 = start[order[a]];
  const span = Math.max(end - t0, 1e-3);
  // About two spans per finest bucket: finer buckets would cost memory and buy nothing,
  // since a view that fine holds few enough spans to draw them one by one.
  let nb = Math.max(PYRAMID_TOP_BUCKETS, Math.ceil(n / 2));
  const width0 = span / nb;
  let cov = new Float32Array(nb * CHANNELS);
  const last = nb - 1;
  for (let p = a; p < b; p++) {
    const i = order[p];
    const s = start[i] - t0;
    const d = dur[i];
    const c = cls[i];
    const base = c & CLASS_MASK;
    const emu = (c & M_EMULATED) !== 0;
    const pred = (c & M_PREDICTED) !== 0;
    let b0 = Math.floor(s / width0);
    if (b0 > last) b0 = last;
    if (d <= 0) {
      // Instants still count for a little, so they stay visible when zoomed out.
      const w = width0 * 0.05;
      cov[b0 * CHANNELS + base] += w;
      if (emu) cov[b0 * CHANNELS + N_CLASSES] += w;
      if (pred) cov[b0 * CHANNELS + N_CLASSES + 1] += w;
      continue;
    }
    let b1 = Math.floor((s + d) / width0);
    if (b1 > last) b1 = last;
    for (let k = b0; k <= b1; k++) {
      const lo = Math.max(s, k * width0);
      const hi = k === last ? s + d : Math.min(s + d, (k + 1) * width0);
      const w = hi - lo;
      if (w <= 0) continue;
      const o = k * CHANNELS;
      cov[o + base] += w;
      if (emu) cov[o + N_CLASSES] += w;
      if (pred) cov[o + N_CLASSES + 1] += w;
    }
  }
  const levels: PyramidLevel[] = [];
  let width = width0;
  for (;;) {
    const lc = new Uint8Array(nb);
    const lv = new Uint8Array(nb);
    for (let k = 0; k < nb; k++) {
      const o = k * CHANNELS;
      let best = -1;
      let bestW = 0;
      let total = 0;
      for (let c = 0; c < N_CLASSES; c++) {
        const w = cov[o + c];
        total += w;
        if (w > bestW) {
          bestW = w;
          best = c;
        }
      }
      if (best < 0) {
        lc[k] = EMPTY;
        continue;
      }
      let c = best;
      if (cov[o + N_CLASSES] * 2 >= total) c |= M_EMULATED;
      if (cov[o + N_CLASSES + 1] * 2 >= total) c |= M_PREDICTED;
      lc[k] = c;
      lv[k] = Math.max(1, Math.min(255, Math.round((total / width) * 255)));
    }
    levels.push({ cls: lc, cov: lv });
    if (nb <= PYRAMID_TOP_BUCKETS) break;
    const nb2 = Math.ceil(nb / 2);
    const next = new Float32Array(nb2 * CHANNELS);
    for (let k = 0; k < nb; k++) {
      const o = k * CHANNELS;
      const o2 = (k >> 1) * CHANNELS;
      for (let c = 0; c < CHANNELS; c++) next[o2 + c] += cov[o + c];
    }
    cov = next;
    nb = nb2;
    width *= 2;
  }
  return { t0, width0, levels };
}

function timeIndex(starts: number[], ends: number[]): { perm: number[]; index: TimeIndex } {
  const perm = starts.map((_, i) => i).sort((x, y) => starts[x] - starts[y] || x - y);
  const start = new Float64Array(perm.length);
  const maxEnd = new Float64Array(perm.length);
  let m = -Infinity;
  perm.forEach((j, p) => {
    start[p] = starts[j];
    m = Math.max(m, ends[j]);
    maxEnd[p] = m;
  });
  return { perm, index: { start, maxEnd } };
}

/**
 * Pairs each send with its recv: the k-th send from lane A to peer B (same step and
 * micro-batch) with the k-th recv on lane B from peer A, both in start order. The `comm`
 * column says which side is which; a span with a peer but neither code is left unpaired.
 */
function matchFlows(inp: PrepInput, order: Uint32Array, rowOffsets: Int32Array): Prepared['flows'] {
  const sends = new Map<string, number[]>();
  const recvs = new Map<string, number[]>();
  for (let l = 0; l < inp.nLanes; l++) {
    const r = l * ROWS_PER_LANE + ROW_COMM;
    for (let p = rowOffsets[r]; p < rowOffsets[r + 1]; p++) {
      const i = order[p];
      const peer = inp.peer[i];
      if (peer < 0 || peer >= inp.nLanes) continue;
      const op = inp.comm[i];
      if (!isP2pCode(op)) continue;
      const isSend = op === CommOpCode.send;
      const from = isSend ? l : peer;
      const to = isSend ? peer : l;
      const key = `${from},${to},${inp.step[i]},${inp.micro[i]}`;
      const m = isSend ? sends : recvs;
      let q = m.get(key);
      if (!q) m.set(key, (q = []));
      q.push(i);
    }
  }
  const sendIdx: number[] = [];
  const recvIdx: number[] = [];
  for (const [key, ss] of sends) {
    const rs = recvs.get(key);
    if (!rs) continue;
    const k = Math.min(ss.length, rs.length);
    for (let j = 0; j < k; j++) {
      sendIdx.push(ss[j]);
      recvIdx.push(rs[j]);
    }
  }
  const starts = sendIdx.map((s, j) => Math.min(inp.start[s], inp.start[recvIdx[j]]));
  const ends = sendIdx.map((s, j) => Math.max(inp.start[s] + inp.dur[s], inp.start[recvIdx[j]] + inp.dur[recvIdx[j]]));
  const { perm, index } = timeIndex(starts, ends);
  return { send: Int32Array.from(perm, (j) => sendIdx[j]), recv: Int32Array.from(perm, (j) => recvIdx[j]), index };
}

/**
 * Groups collective communication (comm spans with no peer, e.g. scatter, gather,
 * all-reduce) across lanes: the k-th occurrence of a name in a step on each lane is one
 * operation.
 */
function groupCollectives(inp: PrepInput, order: Uint32Array, rowOffsets: Int32Array): Prepared['collectives'] {
  const groups = new Map<string, number[]>();
  for (let l = 0; l < inp.nLanes; l++) {
    const r = l * ROWS_PER_LANE + ROW_COMM;
    const seen = new Map<string, number>();
    for (let p = rowOffsets[r]; p < rowOffsets[r + 1]; p++) {
      const i = order[p];
      if (inp.peer[i] >= 0 || inp.parent[i] >= 0 || (inp.flags[i] & SpanFlag.staging) !== 0) continue;
      const base = `${inp.step[i]},${inp.name[i]}`;
      const k = seen.get(base) ?? 0;
      seen.set(base, k + 1);
      const key = `${base},${k}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(i);
    }
  }
  const list = [...groups.values()];
  const starts = list.map((g) => Math.min(...g.map((i) => inp.start[i])));
  const ends = list.map((g) => Math.max(...g.map((i) => inp.start[i] + inp.dur[i])));
  const { perm, index } = timeIndex(starts, ends);
  const offsets = new Int32Array(list.length + 1);
  const members: number[] = [];
  perm.forEach((j, p) => {
    members.push(...list[j]);
    offsets[p + 1] = members.length;
  });
  return { offsets, members: Int32Array.from(members), end: Float64Array.from(perm, (j) => ends[j]), index };
}

/**
 * Positions [a, b) of the items of a time-sorted sequence that can overlap [t0, t1]:
 * `a` is the first whose running-max end reaches past t0, `b` the first that starts at or
 * after t1. `startAt(p)` reads the start of the item at position p.
 */
export function visibleSpan(
  lo: number,
  hi: number,
  startAt: (p: number) => number,
  maxEnd: Float64Array,
  t0: number,
  t1: number,
): [number, number] {
  let a = lo;
  let b = hi;
  while (a < b) {
    const m = (a + b) >>> 1;
    if (maxEnd[m] > t0) b = m;
    else a = m + 1;
  }
  const first = a;
  b = hi;
  while (a < b) {
    const m = (a + b) >>> 1;
    if (startAt(m) < t1) a = m + 1;
    else b = m;
  }
  return [first, a];
}

/** Transferable buffers of a prepared model (to post it from a worker without copying). */
export function preparedTransferables(p: Prepared): ArrayBuffer[] {
  const bufs: ArrayBufferLike[] = [
    p.cls.buffer,
    p.order.buffer,
    p.rowOffsets.buffer,
    p.maxEnd.buffer,
    p.rowStageMin.buffer,
    p.rowStageMax.buffer,
    p.flows.send.buffer,
    p.flows.recv.buffer,
    p.flows.index.start.buffer,
    p.flows.index.maxEnd.buffer,
    p.collectives.offsets.buffer,
    p.collectives.members.buffer,
    p.collectives.end.buffer,
    p.collectives.index.start.buffer,
    p.collectives.index.maxEnd.buffer,
  ];
  for (const py of p.pyramids) if (py) for (const l of py.levels) bufs.push(l.cls.buffer, l.cov.buffer);
  return [...new Set(bufs)].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
}
