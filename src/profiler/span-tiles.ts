/**
 * Level-of-detail tiles of a trace's spans: what a timeline needs to draw one time window of
 * some lanes at some resolution, answered from the span columns without handing them all
 * over (the way Perfetto's trace processor answers its UI). The extension host builds one
 * per shown trace when the trace is too big to post to the view whole, and answers the
 * view's `tile` messages with it; pure TypeScript, no DOM and no `vscode`.
 *
 * Rows. Each lane has three rows, as the view draws them: `state` (top-level compute and idle
 * spans), `ops` (operator spans nested under compute) and `comm`.
 *
 * Built once, O(n) memory beyond the columns (about 5 B per span plus the buckets):
 *  - per row, the span indices sorted by start (`order`) and, per block of BLOCK positions,
 *    the running maximum of span ends, so the first span reaching into a window is found by
 *    a binary search over blocks and a scan of one block (a running maximum per span would
 *    cost 8 B per span; the view keeps that one because its tiles are small);
 *  - per row, a pyramid of buckets on one absolute grid: level k buckets are
 *    `[j·w0·2^k, (j+1)·w0·2^k)` with `w0` a power of two of µs chosen so that a level-0 bucket
 *    holds about SPANS_PER_BUCKET spans of the row. Each bucket keeps, per colour key (see
 *    {@link TILE_KEYS}), the time covered and the spans starting in it, plus the time covered
 *    by emulated and by predicted spans. Buckets sit on absolute multiples, so every level is
 *    the exact sum of the one below, and a tile's buckets are exactly what a brute-force pass
 *    over the spans gives for the same grid (tests check this).
 *
 * A request names a window [startUs, endUs), a lane range and the width in pixels. Per row:
 * when the row has at most `budget` spans that can reach into the window, they are returned
 * one by one with every column the renderer, tooltip and hit test read (the view merges the
 * sub-pixel ones itself, as it does for a trace it holds whole); otherwise the row is returned
 * as buckets of the largest power-of-two width not above one pixel, read from the pyramid level
 * of that width, or, for a width finer than level 0, binned from the window's spans (at most
 * about SPANS_PER_BUCKET per pixel). So a request costs O(pixels + returned spans) whatever the
 * trace's size, and its answer is bounded by the budget and the pixels.
 */
import { maxOfI32, orOfBytes } from './span-checks';
import { IdleCauseCode, SpanFlag, SpanKind, SPAN_COLUMNS, allocSpans, type SpanColumns, type Trace } from './trace-format';

// The codes the hot loops read, as plain constants: a module's exports can be getters (in
// CommonJS builds), too slow to call once per span.
const K_COMPUTE: number = SpanKind.compute;
const K_COMM: number = SpanKind.comm;
const K_IDLE: number = SpanKind.idle;
const F_OP: number = SpanFlag.op;
const F_STAGING: number = SpanFlag.staging;
const F_EMULATED: number = SpanFlag.emulated;
const F_PREDICTED: number = SpanFlag.predicted;

/** Row kinds within a lane, in the order the view stacks them. */
export const TILE_ROW_STATE = 0;
export const TILE_ROW_OPS = 1;
export const TILE_ROW_COMM = 2;
export const TILE_ROWS_PER_LANE = 3;

/** The row kind a span is drawn in: comm, nested operators, or the device's state. */
export function tileRowOf(kind: number, parent: number, flags: number): number {
  if (kind === K_COMM) return TILE_ROW_COMM;
  if (kind === K_COMPUTE && (parent >= 0 || (flags & F_OP) !== 0)) return TILE_ROW_OPS;
  return TILE_ROW_STATE;
}

/**
 * Colour keys of merged buckets: what the view colours a span by (its kind, operator or not,
 * staging copy or not, and for idle spans the cause; idle without a cause is `other`).
 */
export const TILE_KEYS = ['compute', 'op', 'comm', 'staging', 'bubble', 'collective', 'host', 'other', 'backpressure'] as const;
export type TileKey = (typeof TILE_KEYS)[number];
export const N_TILE_KEYS = TILE_KEYS.length;
const KEY_OF_CAUSE = new Uint8Array(256).fill(7);
KEY_OF_CAUSE[IdleCauseCode.bubble] = 4;
KEY_OF_CAUSE[IdleCauseCode.collective] = 5;
KEY_OF_CAUSE[IdleCauseCode.host] = 6;
KEY_OF_CAUSE[IdleCauseCode.backpressure] = 8;

/** The colour key of a span. */
export function tileKeyOf(kind: number, parent: number, flags: number, cause: number): number {
  if (kind === K_IDLE) return KEY_OF_CAUSE[cause & 255]!;
  if (kind === K_COMM) return (flags & F_STAGING) !== 0 ? 3 : 2;
  return parent >= 0 || (flags & F_OP) !== 0 ? 1 : 0;
}

/** Spans of a row per level-0 bucket, about: sets the finest pyramid level. */
export const SPANS_PER_BUCKET = 32;
/** Positions per block of the running-maximum index. */
const BLOCK = 64;
/** Coarsest pyramid level has at most this many buckets. */
const TOP_BUCKETS = 64;
/** Channels per bucket: covered µs per key, spans starting per key, emulated µs, predicted µs. */
const CH_COUNT = N_TILE_KEYS;
const CH_EMU = 2 * N_TILE_KEYS;
const CH_PRED = CH_EMU + 1;
const CHANNELS = CH_PRED + 1;

/**
 * Traces with at least this many spans are shown in tiles by default (setting
 * `parallax.timeline.tileThreshold`): below it, posting the columns whole costs the view
 * ~150 B per span, a few hundred MB at most, and saves every round trip.
 */
export const TILE_THRESHOLD_SPANS = 2_000_000;

/** Spans of work per slice of {@link buildSpanTiles}. */
const SLICE_SPANS = 1 << 20;
/** Largest pixel width of a request. */
export const MAX_TILE_PIXELS = 16384;
/** Spans a tile returns one by one at most, over all its rows. */
export const MAX_TILE_SPANS = 400_000;

export interface TileRequest {
  /** Lanes [laneStart, laneEnd). */
  laneStart: number;
  laneEnd: number;
  /** The window, µs on the trace clock. */
  startUs: number;
  endUs: number;
  /** Its width in device pixels. */
  pixels: number;
}

/** Most spans {@link SpanTiles.spanAt} looks at (a pixel of a zoomed-out row can hold millions). */
export const SPAN_AT_SCAN_LIMIT = 50_000;

/** Where the view's pointer is: a lane's row (TILE_ROW_*), a time and how far from it a span still counts. */
export interface SpanAtRequest {
  lane: number;
  row: number;
  /** µs on the trace clock. */
  timeUs: number;
  /** µs: the view's hit tolerance in pixels times its µs per pixel. */
  toleranceUs: number;
}

/** Merged buckets of a tile: one entry per non-empty bucket, rows in request order. */
export interface TileBuckets {
  count: number;
  lane: Int32Array;
  /** Row kind (TILE_ROW_*). */
  row: Uint8Array;
  /** Bucket start, µs (a multiple of its width). */
  start: Float64Array;
  /** Bucket width, µs (a power of two). */
  width: Float64Array;
  /** The key covering most of the bucket (by time; by span count when nothing has a duration). */
  key: Uint8Array;
  /** Time covered by spans inside the bucket, all keys, µs (overlapping spans add up). */
  cover: Float64Array;
  /** Spans starting in the bucket. */
  spans: Float64Array;
  /** Time covered by emulated and by predicted spans, µs. */
  emulated: Float64Array;
  predicted: Float64Array;
}

/**
 * One tile. `spans` holds the rows returned span by span: every span column, `index` (the
 * span's index in the trace) and `parent` rewritten to the parent's position in the tile
 * (-1 when the parent is not in it; such spans keep the `op` flag so they stay operators).
 */
export interface Tile {
  startUs: number;
  endUs: number;
  pixels: number;
  spans: SpanColumns & { index: Int32Array };
  buckets: TileBuckets;
  /** Rows returned span by span and as buckets. */
  spanRows: number;
  bucketRows: number;
}

interface Pyramid {
  /** Width of a level-0 bucket, µs (a power of two). */
  w0: number;
  /** Per level: the grid index of its first bucket and the channels of its buckets. */
  first: number[];
  data: Float32Array[];
}

/**
 * What the view needs before its first tile: the span count, the extent, and per row
 * (lane · 3 + row kind) its span count and pipeline stages, so that it lays out the rows the
 * trace has (and labels state rows by stage) whatever the tile in hand holds.
 */
export interface TileSummary {
  spans: number;
  /** Earliest start and latest end over all spans, µs. */
  startUs: number;
  endUs: number;
  rowSpans: number[];
  /** Smallest and largest stage of each row's spans, -1 when none. */
  rowStageMin: number[];
  rowStageMax: number[];
  /** Every flag any span has (bitwise or of `spans.flags`): emulated or predicted spans are labelled as such. */
  flags: number;
}

/** The {@link TileSummary} of a trace: one pass over its columns, no index. */
export function tileSummary(sp: SpanColumns, nLanes: number): TileSummary {
  const nRows = nLanes * TILE_ROWS_PER_LANE;
  const rowSpans = new Array<number>(nRows).fill(0);
  const rowStageMin = new Array<number>(nRows).fill(-1);
  const rowStageMax = new Array<number>(nRows).fill(-1);
  const { lane, kind, parent, flags, start, dur, stage } = sp;
  let lo = Infinity;
  let hi = -Infinity;
  let seen = 0;
  for (let i = 0; i < sp.count; i++) {
    seen |= flags[i]!;
    const r = lane[i]! * TILE_ROWS_PER_LANE + tileRowOf(kind[i]!, parent[i]!, flags[i]!);
    rowSpans[r]!++;
    const st = stage[i]!;
    if (st >= 0) {
      if (rowStageMin[r]! < 0 || st < rowStageMin[r]!) rowStageMin[r] = st;
      if (st > rowStageMax[r]!) rowStageMax[r] = st;
    }
    const s = start[i]!;
    if (s < lo) lo = s;
    const e = s + dur[i]!;
    if (e > hi) hi = e;
  }
  return { spans: sp.count, startUs: sp.count > 0 ? lo : 0, endUs: sp.count > 0 ? hi : 0, rowSpans, rowStageMin, rowStageMax, flags: seen };
}

function pow2AtMost(x: number): number {
  return 2 ** Math.floor(Math.log2(x));
}

/**
 * Names the index's rules: the row and key of a span ({@link tileRowOf}, {@link tileKeyOf}),
 * the block size, the bucket sizing and the bucket channels. A stored index whose layout is
 * not this one was built by other rules and is rebuilt instead of read; change the leading
 * number whenever a rule changes that these numbers do not show.
 */
export const TILE_INDEX_LAYOUT = `tiles-1 block=${BLOCK} bucket=${SPANS_PER_BUCKET} top=${TOP_BUCKETS} channels=${CHANNELS} keys=${TILE_KEYS.join(',')}`;

/**
 * The index of a {@link SpanTiles} as plain typed arrays, to store next to the span columns
 * (spans-file.ts) so that opening a big trace skips the build. Rows are lane · 3 + row kind.
 */
export interface SpanTilesIndex {
  /** Span count and lane count the index was built for. */
  count: number;
  lanes: number;
  /** Earliest start and latest end, µs. */
  extent: Float64Array;
  /** Colour key of each span. */
  keys: Uint8Array;
  /** Span indices by row, sorted by start within a row; row r holds positions [rowOffsets[r], rowOffsets[r + 1]). */
  order: Uint32Array;
  rowOffsets: Float64Array;
  /** Running maximum end per block of positions; row r's blocks are [blockOffsets[r], blockOffsets[r + 1]). */
  blockOffsets: Float64Array;
  blockMax: Float64Array;
  /** Per row, the width of its level-0 bucket (0 for a row without spans). */
  pyramidW0: Float64Array;
  /** Row r's pyramid levels are [pyramidLevels[r], pyramidLevels[r + 1]) of the level tables. */
  pyramidLevels: Float64Array;
  /** Per level, the grid index of its first bucket and where its channels lie in `levelData`. */
  levelFirst: Float64Array;
  levelOffsets: Float64Array;
  levelData: Float32Array;
}

/** A stored index that does not fit the trace or breaks the index's invariants. */
export class TileIndexError extends Error {}

/** The tile server of one trace. */
export class SpanTiles {
  private readonly sp!: SpanColumns;
  private readonly nLanes!: number;
  /** Colour key of each span (1 B per span: binning reads it for every span it touches). */
  private readonly keys!: Uint8Array;
  /** Span indices by row, sorted by start within a row. */
  private readonly order!: Uint32Array;
  private readonly rowOffsets!: Float64Array;
  /** Running maximum end of each row's spans, per block of BLOCK positions. */
  private readonly blockMax!: Float64Array;
  private readonly blockOffsets!: Float64Array;
  private readonly pyramids!: (Pyramid | null)[];
  readonly extent!: [number, number];
  /** Milliseconds the build took (with the pauses between slices, for {@link buildSpanTiles}). */
  readonly buildMs!: number;

  /**
   * Builds the index of `trace` in one go. {@link buildSpanTiles} does the same in slices, for
   * a caller that must stay responsive (the extension host at tens of millions of spans).
   */
  constructor(trace: Pick<Trace, 'spans' | 'lanes'>) {
    const steps = this.build(trace);
    while (!steps.next().done);
  }

  /**
   * The build, as slices of about SLICE_SPANS spans of work each, resumed by the caller (the
   * constructor, or {@link buildSpanTiles}). Not for other callers. The fields are assigned
   * through `self`: TypeScript lets only a constructor assign readonly fields.
   */
  *build(trace: Pick<Trace, 'spans' | 'lanes'>): Generator<void, void> {
    const t0 = Date.now();
    const self = this as unknown as Record<string, unknown>;
    const sp = trace.spans;
    self['sp'] = sp;
    const n = sp.count;
    const nLanes = trace.lanes.length;
    self['nLanes'] = nLanes;
    const nRows = nLanes * TILE_ROWS_PER_LANE;
    const rowOf = new Int32Array(n);
    const rowCount = new Float64Array(nRows + 1);
    const keys = new Uint8Array(n);
    self['keys'] = keys;
    const ext = [Infinity, -Infinity] as [number, number];
    // Hot loops live in plain functions: V8 optimises them better than a generator's body.
    for (let i = 0; i < n; i += SLICE_SPANS) {
      classify(sp, i, Math.min(n, i + SLICE_SPANS), keys, rowOf, rowCount, ext);
      yield;
    }
    self['extent'] = n > 0 ? ext : [0, 0];
    const rowOffsets = new Float64Array(nRows + 1);
    for (let r = 0; r < nRows; r++) rowOffsets[r + 1] = rowOffsets[r] + rowCount[r + 1];
    self['rowOffsets'] = rowOffsets;
    // A counting sort by row keeps the trace's order within a row; rows are then sorted
    // only where they are not already in order (traces are mostly written in time order).
    const order = new Uint32Array(n);
    self['order'] = order;
    countingSort(order, rowOf, rowOffsets.slice(0, nRows));
    yield;
    const blockOffsets = new Float64Array(nRows + 1);
    for (let r = 0; r < nRows; r++) blockOffsets[r + 1] = blockOffsets[r] + Math.ceil((rowOffsets[r + 1] - rowOffsets[r]) / BLOCK);
    self['blockOffsets'] = blockOffsets;
    const blockMax = new Float64Array(blockOffsets[nRows]);
    self['blockMax'] = blockMax;
    const pyramids: (Pyramid | null)[] = [];
    self['pyramids'] = pyramids;
    const range: [number, number] = [0, 0];
    for (let r = 0; r < nRows; r++) {
      const a = rowOffsets[r];
      const b = rowOffsets[r + 1];
      indexRow(sp, order, a, b, blockMax, blockOffsets[r], range);
      yield;
      pyramids.push(b > a ? yield* this.buildPyramid(a, b, range[0], range[1]) : null);
    }
    self['buildMs'] = Date.now() - t0;
  }

  /** The index as plain arrays, to store with the trace (see {@link SpanTiles.fromIndex}). */
  exportIndex(): SpanTilesIndex {
    const nRows = this.pyramids.length;
    const pyramidW0 = new Float64Array(nRows);
    const pyramidLevels = new Float64Array(nRows + 1);
    const levels: { first: number; data: Float32Array }[] = [];
    this.pyramids.forEach((py, r) => {
      if (py) {
        pyramidW0[r] = py.w0;
        py.data.forEach((data, k) => levels.push({ first: py.first[k]!, data }));
      }
      pyramidLevels[r + 1] = levels.length;
    });
    const levelFirst = Float64Array.from(levels, (l) => l.first);
    const levelOffsets = new Float64Array(levels.length + 1);
    levels.forEach((l, k) => (levelOffsets[k + 1] = levelOffsets[k] + l.data.length));
    const levelData = new Float32Array(levelOffsets[levels.length]);
    levels.forEach((l, k) => levelData.set(l.data, levelOffsets[k]));
    return {
      count: this.sp.count,
      lanes: this.nLanes,
      extent: Float64Array.from(this.extent),
      keys: this.keys,
      order: this.order,
      rowOffsets: this.rowOffsets,
      blockOffsets: this.blockOffsets,
      blockMax: this.blockMax,
      pyramidW0,
      pyramidLevels,
      levelFirst,
      levelOffsets,
      levelData,
    };
  }

  /**
   * The tile server of `trace` from a stored index, without the build. The index is checked
   * for everything that keeps the queries in bounds (sizes, offsets, span indices, keys,
   * bucket widths); throws a {@link TileIndexError} naming the first thing wrong. Whether it
   * was built from these very columns is for its store to vouch for (the side file keeps a
   * checksum and the write's id): an index that passes these checks but belongs to other
   * spans gives wrong tiles, never a hang or a read out of range.
   */
  static fromIndex(trace: Pick<Trace, 'spans' | 'lanes'>, index: SpanTilesIndex): SpanTiles {
    const t0 = Date.now();
    checkIndex(trace, index);
    const tiles = Object.create(SpanTiles.prototype) as SpanTiles;
    const self = tiles as unknown as Record<string, unknown>;
    const nRows = trace.lanes.length * TILE_ROWS_PER_LANE;
    const pyramids: (Pyramid | null)[] = [];
    for (let r = 0; r < nRows; r++) {
      const a = index.pyramidLevels[r]!;
      const b = index.pyramidLevels[r + 1]!;
      if (a === b) {
        pyramids.push(null);
        continue;
      }
      const py: Pyramid = { w0: index.pyramidW0[r]!, first: [], data: [] };
      for (let k = a; k < b; k++) {
        py.first.push(index.levelFirst[k]!);
        py.data.push(index.levelData.subarray(index.levelOffsets[k], index.levelOffsets[k + 1]));
      }
      pyramids.push(py);
    }
    self['sp'] = trace.spans;
    self['nLanes'] = trace.lanes.length;
    self['keys'] = index.keys;
    self['order'] = index.order;
    self['rowOffsets'] = index.rowOffsets;
    self['blockOffsets'] = index.blockOffsets;
    self['blockMax'] = index.blockMax;
    self['pyramids'] = pyramids;
    self['extent'] = [index.extent[0]!, index.extent[1]!];
    self['buildMs'] = Date.now() - t0;
    return tiles;
  }

  /**
   * The numbers the view needs before its first tile: the same as {@link tileSummary}, but the
   * span count per row and the extent come from the index (its row table and extent were
   * counted from the same rows when it was built or stored, and the tiles are drawn from
   * them), so only `flags` and `stage` are read, each in one typed-array pass; a trace whose
   * spans have stages (a pipeline) still needs the rows of those spans and takes the full
   * pass.
   */
  summary(): TileSummary {
    if (maxOfI32(this.sp.stage) >= 0) return tileSummary(this.sp, this.nLanes);
    const nRows = this.nLanes * TILE_ROWS_PER_LANE;
    const ro = this.rowOffsets;
    const rowSpans = Array.from({ length: nRows }, (_, r) => ro[r + 1]! - ro[r]!);
    const n = this.sp.count;
    return {
      spans: n,
      startUs: n > 0 ? this.extent[0] : 0,
      endUs: n > 0 ? this.extent[1] : 0,
      rowSpans,
      rowStageMin: new Array<number>(nRows).fill(-1),
      rowStageMax: new Array<number>(nRows).fill(-1),
      flags: orOfBytes(this.sp.flags),
    };
  }

  /** Adds span i's share of each bucket it touches to a grid of width `w` whose bucket 0 is grid index `first`. */
  private addSpan(data: Float32Array | Float64Array, first: number, nb: number, w: number, i: number): void {
    const sp = this.sp;
    const key = this.keys[i];
    const s = sp.start[i];
    const d = sp.dur[i];
    const e = s + d;
    const f = sp.flags[i];
    const j0 = Math.floor(s / w);
    const k0 = j0 - first;
    const inGrid = k0 >= 0 && k0 < nb;
    if (inGrid) data[k0 * CHANNELS + CH_COUNT + key] += 1;
    if (e <= s) return;
    const jEnd = Math.ceil(e / w) - 1;
    if (jEnd === j0 && inGrid) {
      // Most spans lie inside one bucket.
      const o = k0 * CHANNELS;
      data[o + key] += d;
      if (f & F_EMULATED) data[o + CH_EMU] += d;
      if (f & F_PREDICTED) data[o + CH_PRED] += d;
      return;
    }
    const j1 = Math.min(jEnd, first + nb - 1);
    for (let j = Math.max(j0, first); j <= j1; j++) {
      const lo = Math.max(s, j * w);
      const hi = Math.min(e, (j + 1) * w);
      const c = hi - lo;
      if (c <= 0) continue;
      const o = (j - first) * CHANNELS;
      data[o + key] += c;
      if (f & F_EMULATED) data[o + CH_EMU] += c;
      if (f & F_PREDICTED) data[o + CH_PRED] += c;
    }
  }

  /** Bins the spans at row positions [a, b) into a grid (see addSpan). */
  private binRange(data: Float32Array | Float64Array, first: number, nb: number, w: number, a: number, b: number): void {
    const order = this.order;
    for (let p = a; p < b; p++) this.addSpan(data, first, nb, w, order[p]);
  }

  private *buildPyramid(a: number, b: number, lo: number, hi: number): Generator<void, Pyramid> {
    const n = b - a;
    const w0 = pow2AtMost(Math.max((hi - lo) / Math.max(1, Math.ceil(n / SPANS_PER_BUCKET)), 1e-3));
    let first = Math.floor(lo / w0);
    let nb = Math.max(1, Math.ceil(hi / w0) - first);
    let data: Float32Array = new Float32Array(nb * CHANNELS);
    for (let p = a; p < b; p += SLICE_SPANS) {
      this.binRange(data, first, nb, w0, p, Math.min(b, p + SLICE_SPANS));
      yield;
    }
    const py: Pyramid = { w0, first: [first], data: [data] };
    while (nb > TOP_BUCKETS) {
      const first2 = Math.floor(first / 2);
      const nb2 = Math.floor((first + nb - 1) / 2) - first2 + 1;
      const next = halve(data, first, nb, first2, nb2);
      py.first.push(first2);
      py.data.push(next);
      first = first2;
      nb = nb2;
      data = next;
    }
    return py;
  }

  /** Positions [a, b) of row r's spans that can reach into [t0, t1). */
  private candidates(r: number, t0: number, t1: number): [number, number] {
    const a0 = this.rowOffsets[r];
    const b0 = this.rowOffsets[r + 1];
    const bm = this.blockMax;
    let lo = this.blockOffsets[r];
    let hi = this.blockOffsets[r + 1];
    while (lo < hi) {
      const m = Math.floor((lo + hi) / 2);
      if (bm[m] >= t0) hi = m;
      else lo = m + 1;
    }
    let a = a0 + (lo - this.blockOffsets[r]) * BLOCK;
    const start = this.sp.start;
    const dur = this.sp.dur;
    const order = this.order;
    // Within the block, skip spans that end before the window and come before any that reach it.
    const blockEnd = Math.min(b0, a + BLOCK);
    let m = -Infinity;
    while (a < blockEnd) {
      const i = order[a];
      m = Math.max(m, start[i] + dur[i]);
      if (m >= t0) break;
      a++;
    }
    let b = b0;
    let l = a;
    while (l < b) {
      const mid = Math.floor((l + b) / 2);
      if (start[order[mid]] < t1) l = mid + 1;
      else b = mid;
    }
    return [Math.min(a, l), l];
  }

  /** Answers one request. Throws when it is out of range (the caller has checked its shape). */
  tile(req: TileRequest): Tile {
    const { startUs: t0, endUs: t1 } = req;
    if (!(t1 > t0) || !Number.isFinite(t0) || !Number.isFinite(t1)) throw new Error('tile: the window must have startUs < endUs');
    const pixels = Math.max(1, Math.min(MAX_TILE_PIXELS, Math.floor(req.pixels)));
    const l0 = Math.max(0, Math.floor(req.laneStart));
    const l1 = Math.min(this.nLanes, Math.floor(req.laneEnd));
    const nRows = Math.max(0, l1 - l0) * TILE_ROWS_PER_LANE;
    const budget = Math.max(256, Math.min(2 * pixels, Math.floor(MAX_TILE_SPANS / Math.max(1, nRows))));
    const px = (t1 - t0) / pixels;
    const spanRanges: [number, number][] = [];
    const bucketParts: { lane: number; row: number; w: number; first: number; data: Float32Array | Float64Array }[] = [];
    let nSpans = 0;
    for (let lane = l0; lane < l1; lane++) {
      for (let k = 0; k < TILE_ROWS_PER_LANE; k++) {
        const r = lane * TILE_ROWS_PER_LANE + k;
        const [a, b] = this.candidates(r, t0, t1);
        if (a >= b) continue;
        const py = this.pyramids[r];
        if (b - a <= budget || !py) {
          spanRanges.push([a, b]);
          nSpans += b - a;
          continue;
        }
        bucketParts.push({ lane, row: k, ...this.bucketsOf(r, py, t0, t1, px) });
      }
    }
    return {
      startUs: t0,
      endUs: t1,
      pixels,
      spans: this.gather(spanRanges, nSpans, t0, t1),
      buckets: packBuckets(bucketParts),
      spanRows: spanRanges.length,
      bucketRows: bucketParts.length,
    };
  }

  /**
   * The span of a lane's row under a point: the shortest span containing `timeUs`, else the
   * nearest within `toleranceUs`, as the view's own hit test picks among the spans it holds
   * (webview/src/timeline/hit-test.ts), so hovering a merged bucket names the span beneath.
   * Looks at {@link SPAN_AT_SCAN_LIMIT} spans at most. Returns the span as a tile's spans
   * (count 0 or 1; its parent is not in it, so an operator keeps the `op` flag).
   */
  spanAt(req: SpanAtRequest): Tile['spans'] {
    const { lane, row, timeUs: t, toleranceUs } = req;
    const tol = Math.max(0, toleranceUs);
    if (!Number.isFinite(t) || !Number.isFinite(tol)) throw new Error('spanAt: the time and tolerance must be numbers');
    if (!Number.isInteger(lane) || lane < 0 || lane >= this.nLanes || !Number.isInteger(row) || row < 0 || row >= TILE_ROWS_PER_LANE) return this.columnsOf(new Int32Array(0));
    const [a, b] = this.candidates(lane * TILE_ROWS_PER_LANE + row, t - tol, t + tol);
    const { start, dur } = this.sp;
    let best = -1;
    let bestScore = Infinity;
    const limit = Math.min(b, a + SPAN_AT_SCAN_LIMIT);
    for (let p = a; p < limit; p++) {
      const i = this.order[p];
      const s = start[i];
      const e = s + dur[i];
      const dist = t < s ? s - t : t > e ? t - e : 0;
      if (dist > tol) continue;
      // Containing spans first, the shortest of them; then the nearest.
      const score = dist > 0 ? 1e15 + dist : dur[i];
      if (score < bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return this.columnsOf(best >= 0 ? Int32Array.of(best) : new Int32Array(0));
  }

  /** Row r's buckets over [t0, t1) at the largest power-of-two width ≤ px. */
  private bucketsOf(r: number, py: Pyramid, t0: number, t1: number, px: number): { w: number; first: number; data: Float32Array | Float64Array } {
    const level = Math.floor(Math.log2(px / py.w0));
    if (level >= 0) {
      const lv = Math.min(level, py.data.length - 1);
      const w = py.w0 * 2 ** lv;
      const first = py.first[lv];
      const data = py.data[lv];
      const nb = data.length / CHANNELS;
      const ja = Math.max(first, Math.floor(t0 / w));
      const jb = Math.min(first + nb, Math.ceil(t1 / w));
      return { w, first: ja, data: data.subarray((ja - first) * CHANNELS, Math.max(ja, jb) * CHANNELS - first * CHANNELS) };
    }
    // Finer than level 0: bin the spans that reach into the buckets the window touches
    // (about SPANS_PER_BUCKET per pixel at most).
    const w = pow2AtMost(px);
    const first = Math.floor(t0 / w);
    const nb = Math.ceil(t1 / w) - first;
    const data = new Float64Array(nb * CHANNELS);
    const [a, b] = this.candidates(r, first * w, (first + nb) * w);
    this.binRange(data, first, nb, w, a, b);
    return { w, first, data };
  }

  /** The spans at the given row positions, in every column, with parents mapped into the tile. */
  private gather(ranges: [number, number][], n: number, t0: number, t1: number): Tile['spans'] {
    const index = new Int32Array(n);
    const sp = this.sp;
    let q = 0;
    for (const [a, b] of ranges) {
      for (let p = a; p < b; p++) {
        const i = this.order[p];
        // Candidates run from the first span whose block reaches the window; drop the few
        // before it that end before it starts.
        if (!overlaps(sp.start[i], sp.dur[i], t0, t1)) continue;
        index[q++] = i;
      }
    }
    return this.columnsOf(index.subarray(0, q));
  }

  /** Every column of the spans `index` names, with parents mapped to positions among them (-1 and the `op` flag when not there). */
  private columnsOf(index: Int32Array): Tile['spans'] {
    const count = index.length;
    const sp = this.sp;
    const out = allocSpans(count);
    const cols = {} as Record<string, unknown>;
    for (const c of SPAN_COLUMNS) {
      const src = sp[c];
      const dst = (out[c] as typeof src).subarray(0, count) as typeof src;
      // One copy loop per element type, so that each stays monomorphic.
      if (src instanceof Float64Array) gatherF64(dst as Float64Array, src, index);
      else if (src instanceof Int32Array) gatherI32(dst as Int32Array, src, index);
      else gatherU8(dst as Uint8Array, src, index);
      cols[c] = dst;
    }
    const res = { ...(cols as unknown as SpanColumns), count, index } as Tile['spans'];
    if (count > 0) {
      const at = new Map<number, number>();
      for (let k = 0; k < count; k++) at.set(index[k], k);
      for (let k = 0; k < count; k++) {
        const p = res.parent[k];
        if (p < 0) continue;
        const local = at.get(p);
        if (local === undefined) {
          res.parent[k] = -1;
          res.flags[k] |= F_OP;
        } else res.parent[k] = local;
      }
    }
    return compact(res);
  }
}

/** The checks of {@link SpanTiles.fromIndex}: one pass over the positions, the rest per row and level. */
function checkIndex(trace: Pick<Trace, 'spans' | 'lanes'>, x: SpanTilesIndex): void {
  const bad = (what: string): TileIndexError => new TileIndexError(`the stored tile index ${what}`);
  const n = trace.spans.count;
  const nRows = trace.lanes.length * TILE_ROWS_PER_LANE;
  if (x.count !== n || x.lanes !== trace.lanes.length) throw bad(`was built for ${x.count} spans on ${x.lanes} lanes, the trace has ${n} on ${trace.lanes.length}`);
  if (x.keys.length !== n || x.order.length !== n) throw bad('does not have one key and one position per span');
  if (x.extent.length !== 2 || !(x.extent[0]! <= x.extent[1]!) || (n > 0 && !x.extent.every(Number.isFinite))) throw bad('has no valid extent');
  if (!checkOrderAndKeys(x.order, x.keys, n)) throw bad('names a span or colour key that does not exist');
  const ro = x.rowOffsets;
  const bo = x.blockOffsets;
  if (ro.length !== nRows + 1 || bo.length !== nRows + 1 || ro[0] !== 0 || bo[0] !== 0 || ro[nRows] !== n || bo[nRows] !== x.blockMax.length) throw bad('has row tables of the wrong size');
  const pl = x.pyramidLevels;
  const nLevels = x.levelFirst.length;
  if (x.pyramidW0.length !== nRows || pl.length !== nRows + 1 || pl[0] !== 0 || pl[nRows] !== nLevels || x.levelOffsets.length !== nLevels + 1 || x.levelOffsets[0] !== 0 || x.levelOffsets[nLevels] !== x.levelData.length) {
    throw bad('has pyramid tables of the wrong size');
  }
  for (let r = 0; r < nRows; r++) {
    const len = ro[r + 1]! - ro[r]!;
    if (!Number.isInteger(len) || len < 0 || bo[r + 1]! - bo[r]! !== Math.ceil(len / BLOCK)) throw bad(`has a wrong row table at row ${r}`);
    const levels = pl[r + 1]! - pl[r]!;
    const w0 = x.pyramidW0[r]!;
    if (!Number.isInteger(levels) || levels < 0 || (len > 0) !== (levels > 0)) throw bad(`has a wrong pyramid at row ${r}`);
    if (levels > 0 && !(w0 > 0 && Number.isFinite(w0) && Math.log2(w0) % 1 === 0)) throw bad(`has a bucket width that is not a power of two at row ${r}`);
  }
  for (let k = 0; k < nLevels; k++) {
    const size = x.levelOffsets[k + 1]! - x.levelOffsets[k]!;
    if (!Number.isInteger(size) || size < CHANNELS || size % CHANNELS !== 0 || !Number.isSafeInteger(x.levelFirst[k]!)) throw bad(`has a wrong pyramid level ${k}`);
  }
}

/** True when every position names a span below n and every key is a colour key. */
function checkOrderAndKeys(order: Uint32Array, keys: Uint8Array, n: number): boolean {
  let hiOrder = 0;
  let hiKey = 0;
  for (let p = 0; p < n; p++) {
    if (order[p]! > hiOrder) hiOrder = order[p]!;
    if (keys[p]! > hiKey) hiKey = keys[p]!;
  }
  return n === 0 || (hiOrder < n && hiKey < N_TILE_KEYS);
}

/** True when a span [s, s + d) reaches into [t0, t1); an instant counts where it stands. */
export function overlaps(s: number, d: number, t0: number, t1: number): boolean {
  return s < t1 && (s + d > t0 || (d === 0 && s >= t0));
}

function gatherF64(dst: Float64Array, src: Float64Array, index: Int32Array): void {
  for (let k = 0; k < index.length; k++) dst[k] = src[index[k]!]!;
}
function gatherI32(dst: Int32Array, src: Int32Array, index: Int32Array): void {
  for (let k = 0; k < index.length; k++) dst[k] = src[index[k]!]!;
}
function gatherU8(dst: Uint8Array, src: Uint8Array, index: Int32Array): void {
  for (let k = 0; k < index.length; k++) dst[k] = src[index[k]!]!;
}

/** Span indices by row into `order`, keeping the trace's order within a row; `fill[r]` starts at row r's offset. */
function countingSort(order: Uint32Array, rowOf: Int32Array, fill: Float64Array): void {
  for (let i = 0; i < rowOf.length; i++) order[fill[rowOf[i]!]!++] = i;
}

/**
 * Sorts one row's positions [a, b) by start where they are not in order already, and fills
 * its blocks' running maximum end. `range` gets the row's earliest start and latest end.
 */
function indexRow(sp: SpanColumns, order: Uint32Array, a: number, b: number, blockMax: Float64Array, block0: number, range: [number, number]): void {
  const { start, dur } = sp;
  let sorted = true;
  for (let p = a + 1; p < b; p++) {
    if (start[order[p]!]! < start[order[p - 1]!]!) {
      sorted = false;
      break;
    }
  }
  if (!sorted) order.subarray(a, b).sort((x, y) => start[x]! - start[y]! || x - y);
  let m = -Infinity;
  let lo = Infinity;
  for (let p = a; p < b; p++) {
    const i = order[p]!;
    const e = start[i]! + dur[i]!;
    if (e > m) m = e;
    if (start[i]! < lo) lo = start[i]!;
    if ((p - a) % BLOCK === BLOCK - 1 || p === b - 1) blockMax[block0 + Math.floor((p - a) / BLOCK)] = m;
  }
  range[0] = lo;
  range[1] = m;
}

/** The next pyramid level: bucket j of `data` (grid index first + k) adds into bucket floor(j / 2). */
function halve(data: Float32Array, first: number, nb: number, first2: number, nb2: number): Float32Array {
  const next = new Float32Array(nb2 * CHANNELS);
  for (let k = 0; k < nb; k++) {
    const o = k * CHANNELS;
    const o2 = (Math.floor((first + k) / 2) - first2) * CHANNELS;
    for (let c = 0; c < CHANNELS; c++) next[o2 + c] += data[o + c]!;
  }
  return next;
}

/** Keys, rows and row counts of spans [from, to), widening `ext` to their extent. */
function classify(sp: SpanColumns, from: number, to: number, keys: Uint8Array, rowOf: Int32Array, rowCount: Float64Array, ext: [number, number]): void {
  const { lane, kind, parent, flags, cause, start, dur } = sp;
  let lo = ext[0];
  let hi = ext[1];
  for (let i = from; i < to; i++) {
    const k = kind[i];
    const p = parent[i];
    const f = flags[i];
    keys[i] = tileKeyOf(k, p, f, cause[i]);
    const r = lane[i] * TILE_ROWS_PER_LANE + tileRowOf(k, p, f);
    rowOf[i] = r;
    rowCount[r + 1]++;
    const s = start[i];
    if (s < lo) lo = s;
    const e = s + dur[i];
    if (e > hi) hi = e;
  }
  ext[0] = lo;
  ext[1] = hi;
}

/**
 * Builds the tile server of `trace` in slices, calling `pause` between them (by default
 * a zero-delay timer, so that other events run): the extension host stays responsive while it
 * indexes tens of millions of spans.
 */
export async function buildSpanTiles(trace: Pick<Trace, 'spans' | 'lanes'>, pause: () => Promise<void> = () => new Promise((r) => setTimeout(r, 0))): Promise<SpanTiles> {
  const tiles = Object.create(SpanTiles.prototype) as SpanTiles;
  const steps = tiles.build(trace);
  while (!steps.next().done) await pause();
  return tiles;
}

/** Copies columns cut short by filtering into buffers of their own size (they are posted and transferred). */
function compact(t: Tile['spans']): Tile['spans'] {
  const out = { count: t.count } as Record<string, unknown>;
  for (const c of [...SPAN_COLUMNS, 'index'] as const) {
    const a = t[c];
    out[c] = a.byteLength === a.buffer.byteLength ? a : a.slice();
  }
  return out as unknown as Tile['spans'];
}

function packBuckets(parts: { lane: number; row: number; w: number; first: number; data: Float32Array | Float64Array }[]): TileBuckets {
  let n = 0;
  for (const p of parts) {
    const nb = p.data.length / CHANNELS;
    for (let k = 0; k < nb; k++) if (!emptyBucket(p.data, k * CHANNELS)) n++;
  }
  const out: TileBuckets = {
    count: n,
    lane: new Int32Array(n),
    row: new Uint8Array(n),
    start: new Float64Array(n),
    width: new Float64Array(n),
    key: new Uint8Array(n),
    cover: new Float64Array(n),
    spans: new Float64Array(n),
    emulated: new Float64Array(n),
    predicted: new Float64Array(n),
  };
  let q = 0;
  for (const p of parts) {
    const nb = p.data.length / CHANNELS;
    const d = p.data;
    for (let k = 0; k < nb; k++) {
      const o = k * CHANNELS;
      if (emptyBucket(d, o)) continue;
      // The key covering most time; where nothing has a duration (instants only), the key
      // with most spans starting. Ties go to the lower key.
      let best = 0;
      let cover = 0;
      let count = 0;
      for (let c = 0; c < N_TILE_KEYS; c++) {
        cover += d[o + c];
        count += d[o + CH_COUNT + c];
        if (d[o + c] > d[o + best]) best = c;
      }
      if (d[o + best] === 0) {
        best = 0;
        for (let c = 1; c < N_TILE_KEYS; c++) if (d[o + CH_COUNT + c] > d[o + CH_COUNT + best]) best = c;
      }
      out.lane[q] = p.lane;
      out.row[q] = p.row;
      out.start[q] = (p.first + k) * p.w;
      out.width[q] = p.w;
      out.key[q] = best;
      out.cover[q] = cover;
      out.spans[q] = count;
      out.emulated[q] = d[o + CH_EMU];
      out.predicted[q] = d[o + CH_PRED];
      q++;
    }
  }
  return out;
}

function emptyBucket(d: Float32Array | Float64Array, o: number): boolean {
  for (let c = 0; c < 2 * N_TILE_KEYS; c++) if (d[o + c] !== 0) return false;
  return true;
}

/** Typed arrays of a tile, to post it with a transfer list. */
export function tileTransferables(t: Tile): ArrayBuffer[] {
  const bufs: ArrayBufferLike[] = [];
  for (const c of [...SPAN_COLUMNS, 'index'] as const) bufs.push(t.spans[c].buffer);
  const b = t.buckets;
  bufs.push(b.lane.buffer, b.row.buffer, b.start.buffer, b.width.buffer, b.key.buffer, b.cover.buffer, b.spans.buffer, b.emulated.buffer, b.predicted.buffer);
  return [...new Set(bufs)].filter((x): x is ArrayBuffer => x instanceof ArrayBuffer);
}
