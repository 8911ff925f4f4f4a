/**
 * The one message protocol between the host (the VS Code extension, or the standalone
 * report's own bootstrap) and the timeline view.
 *
 * Direction is in the name: `ToWebview` messages go host → view, `FromWebview` view → host.
 * Everything the view receives is checked by {@link readToWebview} before use; traces are
 * then validated by `traceFromJson` (src/profiler/trace-format.ts) or, for typed-array
 * columns, by the same header check plus a typed loop (data.ts).
 *
 * Times in messages are µs on the trace clock of the run they refer to (the clock of
 * `spans.start`), the same clock findings' evidence uses.
 *
 * Protocol version history:
 *  - 1: first version.
 *  - 2: span queries: `query` (view → host) and `queryResult` (host → view), answered by
 *    the functions of src/profiler/span-query.ts on the host's copy of the trace.
 *  - 3: tiles for traces too big to post whole: a `load` whose `tiled[run]` is set carries
 *    that run without span columns; the view asks for the spans of the window it shows with
 *    `tile` (view → host) and the host answers `tileResult` from src/profiler/span-tiles.ts.
 *  - 4: `spanAt` (view → host) asks for the span under the pointer where a tile drew merged
 *    buckets; the host answers `spanAtResult` with that span (SpanTiles.spanAt), so the
 *    tooltip names it.
 */
import type { SpanQuery, SpanQueryResult } from '../../src/profiler/span-query';
import type { SpanAtRequest, Tile, TileRequest, TileSummary } from '../../src/profiler/span-tiles';
import type { SpanColumns, TraceJson } from '../../src/profiler/trace-format';

export const PROTOCOL_VERSION = 4;

/**
 * A trace whose span columns are typed arrays rather than JSON arrays (same fields, same
 * meaning). Hosts that already hold a trace in memory post it this way: structured clone
 * copies typed arrays as blocks, and a transfer list can move them without a copy.
 */
export type TraceColumnsDocument = Omit<TraceJson, 'spans'> & { spans: SpanColumns };

/** What the host says about a run it serves in tiles (protocol 3), in its `load`. */
export type TiledInfo = TileSummary;

/** A trace as the view accepts it: the JSON document, or the same with typed columns. */
export type TraceDocument = TraceJson | TraceColumnsDocument;

/** Host → view. */
export type ToWebview =
  /** Show a run; with `compare`, show two runs one above the other on aligned axes. */
  | {
      type: 'load';
      trace: TraceDocument;
      compare?: TraceDocument;
      title?: string;
      compareTitle?: string;
      /** Per run (0: trace, 1: compare): set when the run comes in tiles, its document then holding no spans. */
      tiled?: (TiledInfo | null)[];
    }
  /** Zoom to a time range (trace clock of `run`, default 0) and highlight `lanes` of that run. */
  | { type: 'reveal'; startUs: number; endUs: number; lanes?: number[]; run?: number }
  /** Select a finding as if it were clicked (e.g. from a diagnostic in the editor). */
  | { type: 'selectFinding'; index: number; run?: number }
  /** The theme changed: re-read colours from CSS variables. */
  | { type: 'theme' }
  /** Forget the loaded runs. */
  | { type: 'clear' }
  /** The answer to the view's `query` with the same `id`: a result, or why there is none. */
  | { type: 'queryResult'; id: number; result: SpanQueryResult }
  | { type: 'queryResult'; id: number; error: string }
  /** The answer to the view's `tile` with the same `id`: the tile, or why there is none. */
  | { type: 'tileResult'; id: number; run: number; tile: Tile }
  | { type: 'tileResult'; id: number; run: number; error: string }
  /** The answer to the view's `spanAt` with the same `id`: the span (count 0 when none is there), or why there is none. */
  | { type: 'spanAtResult'; id: number; run: number; span: Tile['spans'] }
  | { type: 'spanAtResult'; id: number; run: number; error: string };

/** View → host. */
export type FromWebview =
  /** The view is listening; the host may send `load`. */
  | { type: 'ready'; protocol: number }
  /** A `load` finished and the first frame is drawn. */
  | { type: 'loaded'; runs: { spans: number; lanes: number; source: string }[]; firstFrameMs: number }
  /** A message or trace was refused; `message` says why. */
  | { type: 'error'; message: string }
  /** The user asked for the source of a span (double-click, or Enter on a selected operator). */
  | { type: 'openSource'; run: number; span: number; name: string; opType: string | null; lane: number; device: string }
  /** The user selected a finding. */
  | { type: 'selectFinding'; run: number; index: number; id: string }
  /** The user brushed a time range (trace clock of run 0), or cleared it (`null`s). */
  | { type: 'selectRange'; startUs: number | null; endUs: number | null }
  /** A span query about run `run` for the host to answer on its copy of the trace (`queryResult`). */
  | { type: 'query'; id: number; run: number; query: SpanQuery }
  /** The tile of a tiled run the view needs to draw a window (`tileResult`). */
  | { type: 'tile'; id: number; run: number; request: TileRequest }
  /** The span under the pointer in a tiled run, where the view holds only a merged bucket (`spanAtResult`). */
  | { type: 'spanAt'; id: number; run: number; request: SpanAtRequest };

export type ReadResult = { ok: true; message: ToWebview } | { ok: false; error: string };

function isNum(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

function isTraceLike(x: unknown): boolean {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Checks the shape of a host message. Traces inside `load` are only checked to be objects
 * here; the full validation happens when they are loaded.
 */
export function readToWebview(data: unknown): ReadResult {
  if (typeof data !== 'object' || data === null) return { ok: false, error: 'message is not an object' };
  const m = data as Record<string, unknown>;
  switch (m['type']) {
    case 'load': {
      if (!isTraceLike(m['trace'])) return { ok: false, error: 'load: "trace" must be a trace document' };
      if (m['compare'] !== undefined && !isTraceLike(m['compare'])) return { ok: false, error: 'load: "compare" must be a trace document' };
      const tiled = m['tiled'];
      if (tiled !== undefined) {
        const ok =
          Array.isArray(tiled) &&
          tiled.length <= 2 &&
          tiled.every((t: unknown) => {
            if (t === null) return true;
            const o = t as Record<string, unknown> | undefined;
            const ints = (k: string, min: number): boolean => Array.isArray(o?.[k]) && (o[k] as unknown[]).every((v) => Number.isInteger(v) && (v as number) >= min);
            return (
              typeof o === 'object' &&
              Number.isInteger(o['spans']) &&
              (o['spans'] as number) >= 0 &&
              isNum(o['startUs']) &&
              isNum(o['endUs']) &&
              (o['endUs'] as number) >= (o['startUs'] as number) &&
              ints('rowSpans', 0) &&
              ints('rowStageMin', -1) &&
              ints('rowStageMax', -1) &&
              Number.isInteger(o['flags']) &&
              (o['flags'] as number) >= 0
            );
          });
        if (!ok) return { ok: false, error: 'load: "tiled" must list { spans, startUs, endUs, rowSpans, rowStageMin, rowStageMax, flags } or null per run' };
      }
      for (const k of ['title', 'compareTitle']) {
        if (m[k] !== undefined && typeof m[k] !== 'string') return { ok: false, error: `load: "${k}" must be a string` };
      }
      return { ok: true, message: m as unknown as ToWebview };
    }
    case 'reveal': {
      if (!isNum(m['startUs']) || !isNum(m['endUs']) || (m['endUs'] as number) < (m['startUs'] as number)) {
        return { ok: false, error: 'reveal: "startUs" and "endUs" must be numbers with startUs ≤ endUs' };
      }
      const lanes = m['lanes'];
      if (lanes !== undefined && !(Array.isArray(lanes) && lanes.every((l) => Number.isInteger(l) && (l as number) >= 0))) {
        return { ok: false, error: 'reveal: "lanes" must be lane indices' };
      }
      if (m['run'] !== undefined && m['run'] !== 0 && m['run'] !== 1) return { ok: false, error: 'reveal: "run" must be 0 or 1' };
      return { ok: true, message: m as unknown as ToWebview };
    }
    case 'selectFinding': {
      if (!Number.isInteger(m['index']) || (m['index'] as number) < 0) return { ok: false, error: 'selectFinding: "index" must be a finding index' };
      if (m['run'] !== undefined && m['run'] !== 0 && m['run'] !== 1) return { ok: false, error: 'selectFinding: "run" must be 0 or 1' };
      return { ok: true, message: m as unknown as ToWebview };
    }
    case 'queryResult': {
      if (!Number.isInteger(m['id'])) return { ok: false, error: 'queryResult: "id" must be an integer' };
      if (typeof m['error'] === 'string') return { ok: true, message: { type: 'queryResult', id: m['id'] as number, error: m['error'] } };
      const r = m['result'] as Record<string, unknown> | null;
      const shaped =
        typeof r === 'object' &&
        r !== null &&
        ((r['type'] === 'opStats' && Array.isArray(r['rows']) && Array.isArray(r['lanes'])) || (r['type'] === 'search' && Array.isArray(r['hits']) && isNum(r['count'])));
      if (!shaped) return { ok: false, error: 'queryResult: "result" must be an opStats or search result' };
      return { ok: true, message: m as unknown as ToWebview };
    }
    case 'tileResult': {
      if (!Number.isInteger(m['id']) || (m['run'] !== 0 && m['run'] !== 1)) return { ok: false, error: 'tileResult: "id" must be an integer and "run" 0 or 1' };
      if (typeof m['error'] === 'string') return { ok: true, message: { type: 'tileResult', id: m['id'] as number, run: m['run'], error: m['error'] } };
      // The tile's columns are checked against the run's trace when it is applied (tiles.ts).
      if (typeof m['tile'] !== 'object' || m['tile'] === null) return { ok: false, error: 'tileResult: "tile" must be a tile' };
      return { ok: true, message: m as unknown as ToWebview };
    }
    case 'spanAtResult': {
      if (!Number.isInteger(m['id']) || (m['run'] !== 0 && m['run'] !== 1)) return { ok: false, error: 'spanAtResult: "id" must be an integer and "run" 0 or 1' };
      if (typeof m['error'] === 'string') return { ok: true, message: { type: 'spanAtResult', id: m['id'] as number, run: m['run'], error: m['error'] } };
      // The span's columns are checked against the run's trace before use (tiles.ts).
      if (typeof m['span'] !== 'object' || m['span'] === null) return { ok: false, error: 'spanAtResult: "span" must be span columns' };
      return { ok: true, message: m as unknown as ToWebview };
    }
    case 'theme':
    case 'clear':
      return { ok: true, message: { type: m['type'] } };
    default:
      return { ok: false, error: `unknown message type ${JSON.stringify(String(m['type'])).slice(0, 60)}` };
  }
}
