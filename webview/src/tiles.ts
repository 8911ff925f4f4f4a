/**
 * The view's side of tiled traces (protocol version 3). A trace too big to post whole comes
 * in a `load` without span columns and with a {@link TiledInfo}; the view then asks the host
 * for the tile of the window it shows (`tile` messages, answered by `tileResult` from
 * src/profiler/span-tiles.ts on the host's copy of the trace) and draws it with the same
 * renderer as a trace it holds whole:
 *
 *  - a tile covers three times the visible window (one window either side) at the view's
 *    pixel density, and the lanes on screen with a margin ({@link tileLanesFor}), so panning,
 *    zooming and scrolling draw from the tile in hand until the view leaves it or needs finer
 *    detail than it has; then the next one is asked for (a trace of hundreds of ranks never
 *    has the host gather the spans of lanes nobody sees);
 *  - one request per run is in flight at a time, with an id; views that change meanwhile
 *    coalesce into one request sent when the answer arrives, and answers to anything but
 *    the latest request are applied only if nothing newer is, so stale tiles never
 *    replace fresh ones;
 *  - while a request is in flight the view draws the tile it has, scaled to the new view
 *    (never a blank frame);
 *  - the tile's merged buckets become spans of their own (one per bucket, as wide as the time
 *    it covers, centred in it, coloured by its dominant key, named "merged spans") marked in
 *    `merged` with the number of spans they stand for, so the renderer's per-pixel merging draws
 *    them exactly as it draws pyramid buckets, and hover says how many spans are there;
 *  - span indices in the view are positions in the current tile; `index` maps them to the
 *    trace's (for the host, the search and the selection across tiles);
 *  - hovering a merged bucket asks the host which span lies under the pointer (`spanAt`,
 *    {@link SpanAtFeed}), and the tooltip then shows that span.
 *
 * View memory is bounded by the tile size (the host caps spans per tile and buckets per
 * pixel), whatever the trace's size.
 */
import { SPAN_COLUMNS, SpanFlag, SpanKind, allocSpans, type SpanColumns } from '../../src/profiler/trace-format';
import { IDLE_CAUSES } from '../../src/profiler/span-vocabulary';
import { N_TILE_KEYS, MAX_TILE_PIXELS, TILE_ROWS_PER_LANE, type SpanAtRequest, type Tile, type TileKey, TILE_KEYS } from '../../src/profiler/span-tiles';
import type { Trace } from '../../src/profiler/trace-format';
import { prepare, type Prepared } from './model';
import type { FromWebview, TiledInfo, ToWebview } from './protocol';

export type { TiledInfo };

/**
 * The parts of a loaded run (data.ts `Run`) tiles read and replace; a structural type so
 * that this module (and its tests under Node) does not pull in the page's loader.
 */
export interface Run {
  trace: Trace;
  prepared: Prepared;
  offsetUs: number;
  tiled: TiledRun | null;
}

/** A tiled run's state: the tile it draws and what it asked for. */
export interface TiledRun {
  info: TiledInfo;
  /** Index of the "merged spans" name in the run's string table. */
  mergedName: number;
  /** Per span of the current tile: its index in the trace (-1 for merged buckets). */
  index: Int32Array;
  /** Per span of the current tile: 0, or the number of spans a merged bucket stands for. */
  merged: Float64Array;
  /** The current tile's window and resolution (µs per pixel); null before the first. */
  window: TileWindow | null;
  /** The request in flight, or null. */
  pending: (TileWindow & { id: number }) | null;
}

export interface TileWindow {
  startUs: number;
  endUs: number;
  pixels: number;
  /** The lanes [laneStart, laneEnd) it holds. */
  laneStart: number;
  laneEnd: number;
  /** The tile has merged buckets (its detail is bounded by its resolution). */
  bucketed: boolean;
}

/** Name of merged-bucket spans. */
export const MERGED_NAME = 'merged spans';

/** Lanes asked for beyond those on screen, at least, on either side (half the lanes on screen when more). */
export const LANE_MARGIN = 2;

/** A tile is fine for a view when its pixels are at most this much wider than the view's. */
const COARSEST = 1.5;

/** Kind, flags and cause of a span of each key (what the view colours it by). */
const KEY_SPAN: Record<TileKey, { kind: number; flags: number; cause: number }> = {
  compute: { kind: SpanKind.compute, flags: 0, cause: 0 },
  op: { kind: SpanKind.compute, flags: SpanFlag.op, cause: 0 },
  comm: { kind: SpanKind.comm, flags: 0, cause: 0 },
  staging: { kind: SpanKind.comm, flags: SpanFlag.staging, cause: 0 },
  bubble: { kind: SpanKind.idle, flags: 0, cause: IDLE_CAUSES.indexOf('bubble') },
  collective: { kind: SpanKind.idle, flags: 0, cause: IDLE_CAUSES.indexOf('collective') },
  host: { kind: SpanKind.idle, flags: 0, cause: IDLE_CAUSES.indexOf('host') },
  other: { kind: SpanKind.idle, flags: 0, cause: IDLE_CAUSES.indexOf('other') },
  backpressure: { kind: SpanKind.idle, flags: 0, cause: IDLE_CAUSES.indexOf('backpressure') },
};

function isCol(x: unknown, Ctor: { new (n: number): ArrayBufferView }, n: number): boolean {
  return x instanceof Ctor && (x as unknown as ArrayLike<number>).length === n;
}

/**
 * Checks a tile from the host: every column a typed array of the right type and length,
 * codes and indices in range for a trace of `nLanes` lanes and `nStrings` strings. Returns
 * why not, or null when it is fine.
 */
export function tileError(x: unknown, nLanes: number, nStrings: number): string | null {
  if (typeof x !== 'object' || x === null) return 'the tile is not an object';
  const t = x as Tile;
  const sp = t.spans as unknown as Record<string, unknown> | undefined;
  const b = t.buckets as unknown as Record<string, unknown> | undefined;
  if (!sp || !b || typeof sp['count'] !== 'number' || typeof b['count'] !== 'number') return 'the tile has no spans or buckets';
  if (!(t.endUs > t.startUs) || !Number.isFinite(t.startUs) || !Number.isFinite(t.endUs)) return 'the tile window is not a time range';
  if (!Number.isInteger(t.pixels) || t.pixels < 1 || t.pixels > MAX_TILE_PIXELS) return 'the tile has no pixel width';
  const spanError = spanColumnsError(t.spans, nLanes, nStrings);
  if (spanError) return `tile ${spanError}`;
  const m = b['count'] as number;
  const bcols: [string, { new (n: number): ArrayBufferView }][] = [
    ['lane', Int32Array], ['row', Uint8Array], ['start', Float64Array], ['width', Float64Array], ['key', Uint8Array],
    ['cover', Float64Array], ['spans', Float64Array], ['emulated', Float64Array], ['predicted', Float64Array],
  ];
  for (const [c, Ctor] of bcols) if (!isCol(b[c], Ctor, m)) return `tile buckets.${c} must be a typed array of ${m}`;
  const bk = t.buckets;
  for (let q = 0; q < m; q++) {
    if (bk.lane[q] < 0 || bk.lane[q] >= nLanes || bk.row[q] >= TILE_ROWS_PER_LANE || bk.key[q] >= N_TILE_KEYS) return `tile bucket ${q} refers outside the trace`;
    if (!Number.isFinite(bk.start[q]) || !(bk.width[q] > 0) || !(bk.cover[q] >= 0)) return `tile bucket ${q} is not a time range`;
  }
  return null;
}

/**
 * Checks span columns from the host (a tile's spans, or a `spanAtResult`): every column a
 * typed array of the right type and length, codes and indices in range. Returns why not
 * ("spans.…", "span i …"), or null when they are fine.
 */
export function spanColumnsError(x: unknown, nLanes: number, nStrings: number): string | null {
  const sp = x as Record<string, unknown> | null;
  if (typeof sp !== 'object' || sp === null || typeof sp['count'] !== 'number' || !Number.isInteger(sp['count']) || sp['count'] < 0) return 'spans have no count';
  const n = sp['count'];
  const blank = allocSpans(0) as unknown as Record<string, unknown>;
  for (const c of [...SPAN_COLUMNS, 'index'] as const) {
    const Ctor = c === 'index' ? Int32Array : ((blank[c] as object).constructor as { new (n: number): ArrayBufferView });
    if (!isCol(sp[c], Ctor, n)) return `spans.${c} must be a typed array of ${n}`;
  }
  const s = x as Tile['spans'];
  for (let i = 0; i < n; i++) {
    if (s.lane[i] < 0 || s.lane[i] >= nLanes || s.name[i] < 0 || s.name[i] >= nStrings || s.opType[i] >= nStrings || s.parent[i] >= n || s.peer[i] >= nLanes) {
      return `span ${i} refers outside the trace`;
    }
    if (!Number.isFinite(s.start[i]) || !Number.isFinite(s.dur[i]) || s.kind[i] > 2 || s.cause[i] >= IDLE_CAUSES.length) return `span ${i} is not a span`;
  }
  return null;
}

/** The spans the view draws for a tile: its spans, then one span per merged bucket. */
export function tileSpans(t: Tile, mergedName: number): { spans: SpanColumns; index: Int32Array; merged: Float64Array } {
  const ns = t.spans.count;
  const nb = t.buckets.count;
  const n = ns + nb;
  const spans = allocSpans(n);
  for (const c of SPAN_COLUMNS) (spans[c] as Float64Array).set(t.spans[c] as Float64Array);
  const index = new Int32Array(n).fill(-1);
  index.set(t.spans.index);
  const merged = new Float64Array(n);
  const b = t.buckets;
  for (let q = 0; q < nb; q++) {
    const i = ns + q;
    const k = KEY_SPAN[TILE_KEYS[b.key[q]]];
    // As wide as the time covered (overlaps can add up past the bucket: capped at it).
    const d = Math.min(b.cover[q], b.width[q]);
    spans.lane[i] = b.lane[q];
    spans.kind[i] = k.kind;
    spans.flags[i] = k.flags | (b.emulated[q] * 2 >= b.cover[q] && b.cover[q] > 0 ? SpanFlag.emulated : 0) | (b.predicted[q] * 2 >= b.cover[q] && b.cover[q] > 0 ? SpanFlag.predicted : 0);
    spans.cause[i] = k.cause;
    spans.name[i] = mergedName;
    spans.opType[i] = -1;
    spans.start[i] = b.start[q] + (b.width[q] - d) / 2;
    spans.dur[i] = d;
    spans.step[i] = -1;
    spans.micro[i] = -1;
    spans.stage[i] = -1;
    spans.peer[i] = -1;
    spans.parent[i] = -1;
    merged[i] = b.spans[q];
  }
  return { spans, index, merged };
}

/**
 * The lanes to ask for when lanes [a, b) of a run of `nLanes` lanes are on screen (null: none
 * is): those, and a margin either side so that scrolling a little draws from the tile in hand.
 */
export function tileLanesFor(visible: readonly [number, number] | null, nLanes: number): [number, number] {
  if (!visible) return [0, Math.min(nLanes, 2 * LANE_MARGIN)];
  const [a, b] = visible;
  const m = Math.max(LANE_MARGIN, Math.ceil((b - a) / 2));
  return [Math.max(0, a - m), Math.min(nLanes, b + m)];
}

/** The window to ask for to show [t0, t1) over `widthPx` device pixels: one window either side. */
export function tileWindowFor(t0: number, t1: number, widthPx: number): Omit<TileWindow, 'bucketed' | 'laneStart' | 'laneEnd'> {
  const w = t1 - t0;
  return { startUs: t0 - w, endUs: t1 + w, pixels: Math.max(1, Math.min(MAX_TILE_PIXELS, Math.round(3 * widthPx))) };
}

/** True when a tile (or request) for `have` can show [t0, t1) of lanes [lanes[0], lanes[1]) over `widthPx` device pixels. */
export function tileServes(have: TileWindow | null, t0: number, t1: number, widthPx: number, lanes: readonly [number, number] | null): boolean {
  if (!have || have.startUs > t0 || have.endUs < t1) return false;
  if (lanes && lanes[1] > lanes[0] && (have.laneStart > lanes[0] || have.laneEnd < lanes[1])) return false;
  if (!have.bucketed) return true;
  const havePx = (have.endUs - have.startUs) / have.pixels;
  return havePx <= (COARSEST * (t1 - t0)) / Math.max(1, widthPx);
}

/** Puts a tile of lanes [lanes[0], lanes[1]) in place of a tiled run's spans: the draw model is prepared again from it. */
export function applyTile(run: Run, t: Tile, lanes: readonly [number, number]): void {
  const st = run.tiled;
  if (!st) return;
  const { spans, index, merged } = tileSpans(t, st.mergedName);
  // Merged buckets are no transfers: a peer (their own lane, for the preparation only) keeps
  // merged comm buckets out of the collective groups, which pair comm spans without one.
  const peer = spans.peer.slice();
  for (let i = t.spans.count; i < spans.count; i++) peer[i] = spans.lane[i]!;
  const prepared = prepare({ ...spans, peer, nLanes: run.trace.lanes.length });
  prepared.extent = [st.info.startUs, st.info.endUs];
  run.trace.spans = spans;
  run.prepared = prepared;
  st.index = index;
  st.merged = merged;
  st.window = { startUs: t.startUs, endUs: t.endUs, pixels: t.pixels, laneStart: lanes[0], laneEnd: lanes[1], bucketed: t.buckets.count > 0 };
}

/** Position in the current tile of trace span `global`, or -1. */
export function localIndex(st: TiledRun, global: number): number {
  return st.index.indexOf(global);
}

/** Tile traffic, for the test hook and the benchmark. */
export interface TileStats {
  requested: number;
  received: number;
  /** Answers dropped because a newer tile was already in place, or refused. */
  dropped: number;
  /** Milliseconds from the last request to its answer being in place. */
  lastMs: number;
  /** Spans (merged buckets included) in the tiles in place now. */
  spans: number;
}

/** The lanes [a, b) of run `run` on screen, or null when none is. */
export type LanesOnScreen = (run: number) => [number, number] | null;

/**
 * Asks for and applies the tiles of the tiled runs. `update` is called whenever the view
 * changes; it sends at most one request per run at a time (the view's latest window is
 * asked for when the answer in flight arrives).
 */
export class TileFeed {
  private nextId = 1;
  private readonly sentAt = new Map<number, number>();
  private waiters: (() => void)[] = [];
  readonly stats: TileStats = { requested: 0, received: 0, dropped: 0, lastMs: 0, spans: 0 };
  /** The last view asked for, to ask again when the answer in flight arrives. */
  private view: { v0: number; v1: number; widthPx: number; lanesOf: LanesOnScreen } | null = null;

  constructor(
    private readonly post: (m: Extract<FromWebview, { type: 'tile' }>) => void,
    /** A tile was put in place for run `run`; `prevIndex` maps the previous tile's positions to trace indices. */
    private readonly applied: (run: number, prevIndex: Int32Array) => void,
    /** A tile could not be had: why. */
    private readonly failed: (message: string) => void,
  ) {}

  /**
   * The view shows [v0, v1] (view time) over `widthPx` device pixels, and of each run the
   * lanes `lanesOf(run)` says are on screen: asks for tiles that are needed.
   */
  update(runs: readonly Run[], v0: number, v1: number, widthPx: number, lanesOf: LanesOnScreen): void {
    this.view = { v0, v1, widthPx, lanesOf };
    runs.forEach((run, ri) => {
      const st = run.tiled;
      if (!st || st.pending) return;
      const t0 = v0 + run.offsetUs;
      const t1 = v1 + run.offsetUs;
      const visible = lanesOf(ri);
      // A run with no lane on screen keeps the tile it has (it needs one to report loaded).
      if (!visible && st.window) return;
      if (tileServes(st.window, t0, t1, widthPx, visible)) return;
      const w = tileWindowFor(t0, t1, widthPx);
      const [laneStart, laneEnd] = tileLanesFor(visible, run.trace.lanes.length);
      const id = this.nextId++;
      st.pending = { ...w, laneStart, laneEnd, bucketed: true, id };
      this.sentAt.set(id, performance.now());
      this.stats.requested++;
      this.post({ type: 'tile', id, run: ri, request: { ...w, laneStart, laneEnd } });
    });
  }

  /** A `tileResult` arrived: puts the tile in place (when it is the one asked for) and asks for the next if the view moved on. */
  receive(runs: readonly Run[], m: Extract<ToWebview, { type: 'tileResult' }>): void {
    const run = runs[m.run];
    const st = run?.tiled;
    const sent = this.sentAt.get(m.id);
    this.sentAt.delete(m.id);
    if (!run || !st || !st.pending || st.pending.id !== m.id) {
      this.stats.dropped++;
      return;
    }
    const asked = st.pending;
    st.pending = null;
    const why = 'error' in m ? `the host could not send a tile: ${m.error}` : tileError(m.tile, run.trace.lanes.length, run.trace.strings.length);
    if (why !== null || 'error' in m) {
      this.stats.dropped++;
      // Not asked again until the view moves: the same request would fail the same way.
      this.view = null;
      this.failed(why ?? 'no tile');
    } else {
      {
        const prev = st.index;
        applyTile(run, m.tile, [asked.laneStart, asked.laneEnd]);
        this.stats.received++;
        this.stats.spans = runs.reduce((a, r) => a + (r.tiled ? r.trace.spans.count : 0), 0);
        if (sent !== undefined) this.stats.lastMs = performance.now() - sent;
        this.applied(m.run, prev);
      }
    }
    if (runs.every((r) => !r.tiled || r.tiled.window || !r.tiled.pending)) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
    if (this.view) this.update(runs, this.view.v0, this.view.v1, this.view.widthPx, this.view.lanesOf);
  }

  /** Resolves when every tiled run has a tile in place (at once when there is none). */
  whenReady(runs: readonly Run[]): Promise<void> {
    if (runs.every((r) => !r.tiled || r.tiled.window)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Forgets requests in flight (new runs loaded). */
  reset(): void {
    this.sentAt.clear();
    this.view = null;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** What the view asks the host about: the point under the pointer over a merged bucket of run `run`. */
export interface SpanAtAsk {
  run: number;
  /** The merged bucket hovered (a position in the run's current tile). */
  span: number;
  request: SpanAtRequest;
}

/**
 * Asks the host which span lies under the pointer where a tile drew a merged bucket, one
 * request at a time: while one is in flight, newer asks replace each other and the latest is
 * sent when the answer arrives. An answer is handed on only when it answers the latest ask
 * (the pointer has not moved meanwhile) and its span checks out against the run's trace.
 */
export class SpanAtFeed {
  private nextId = 1;
  private inFlight: { id: number; ask: SpanAtAsk } | null = null;
  private latest: SpanAtAsk | null = null;
  /** Answers handed on, for the test hook. */
  answered = 0;

  constructor(
    private readonly post: (m: Extract<FromWebview, { type: 'spanAt' }>) => void,
    /** The span under `ask` (columns of one span). */
    private readonly found: (ask: SpanAtAsk, span: Tile['spans']) => void,
  ) {}

  /** The pointer is over a merged bucket: asks (now, or when the answer in flight arrives). */
  ask(a: SpanAtAsk): void {
    this.latest = a;
    if (!this.inFlight) this.send();
  }

  /** The pointer left the bucket, or a new tile came: nothing asked so far is wanted. */
  cancel(): void {
    this.latest = null;
  }

  /** New runs: forgets the request in flight too (its answer is ignored). */
  reset(): void {
    this.latest = null;
    this.inFlight = null;
  }

  receive(runs: readonly Run[], m: Extract<ToWebview, { type: 'spanAtResult' }>): void {
    const sent = this.inFlight;
    if (!sent || sent.id !== m.id) return;
    this.inFlight = null;
    if (this.latest === sent.ask) {
      this.latest = null;
      const run = runs[m.run];
      if (run && m.run === sent.ask.run && 'span' in m && m.span.count === 1 && spanColumnsError(m.span, run.trace.lanes.length, run.trace.strings.length) === null) {
        this.answered++;
        this.found(sent.ask, m.span);
      }
    } else if (this.latest) this.send();
  }

  private send(): void {
    const a = this.latest;
    if (!a) return;
    const id = this.nextId++;
    this.inFlight = { id, ask: a };
    this.post({ type: 'spanAt', id, run: a.run, request: a.request });
  }
}
