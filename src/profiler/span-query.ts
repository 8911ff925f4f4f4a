/**
 * Queries over a trace's spans that a view asks while the user explores: operator statistics
 * (by operator type or by node: count, total, mean, share, per device) and search by name.
 *
 * Pure TypeScript over the span columns, no DOM and no `vscode`: the timeline view answers
 * them on the spans it holds, and a host that holds a trace too big to send whole (served to
 * the view in tiles) answers the same {@link SpanQuery} with the same functions, so the
 * view's tables and search do not depend on where the spans live. Nothing here allocates an
 * object per span; a million-span trace is one pass per query.
 */
import { isOpSpan } from './analysis/span-index';
import type { Trace } from './trace-format';

/** The parts of a trace the queries read. */
export type QueryableTrace = Pick<Trace, 'strings' | 'lanes' | 'spans'>;

/** How operator statistics are grouped: by operator type (`MatMul`) or by node (its name). */
export type OpGroupBy = 'opType' | 'node';

/** A time window on the trace clock, µs; spans are counted when they start inside it. */
export interface QueryRange {
  startUs: number;
  endUs: number;
}

/** A question about the spans of one run. */
export type SpanQuery =
  /** Operator spans grouped by type or node, largest total first; optionally only spans whose name matches `text`. */
  | { type: 'opStats'; groupBy: OpGroupBy; range?: QueryRange; text?: string; limit?: number }
  /** Spans whose name or operator type contains `text` (case-insensitive), earliest first. */
  | { type: 'search'; text: string; range?: QueryRange; limit?: number };

/** One row of the operator table. */
export interface OpStatsRow {
  /** The operator type, or the node name. */
  key: string;
  /** Operator type of the row (for node rows: the node's type). */
  opType: string;
  count: number;
  totalUs: number;
  meanUs: number;
  /** totalUs over the time of all operator spans counted. */
  share: number;
  /** Total µs per lane (index = lane), 0 where the lane ran none. */
  byLaneUs: number[];
}

export interface OpStatsResult {
  type: 'opStats';
  groupBy: OpGroupBy;
  rows: OpStatsRow[];
  /** Rows there were before `limit` cut them. */
  totalRows: number;
  /** Operator spans counted and their time, µs. */
  spans: number;
  totalUs: number;
  /** Lane labels, for the per-device columns. */
  lanes: string[];
}

/** One span found by a search. */
export interface SearchHit {
  span: number;
  lane: number;
  name: string;
  startUs: number;
  durUs: number;
}

export interface SearchResult {
  type: 'search';
  text: string;
  /** All matching spans (the hits are the first `limit` of them). */
  count: number;
  hits: SearchHit[];
}

export type SpanQueryResult = OpStatsResult | SearchResult;

/** Default number of rows and hits a query answers with. */
export const DEFAULT_QUERY_LIMIT = 200;

/** Per string index: 1 when the string contains `text` (case-insensitive). Empty text matches nothing. */
export function matchingStrings(strings: readonly string[], text: string): Uint8Array {
  const out = new Uint8Array(strings.length);
  const needle = text.trim().toLowerCase();
  if (needle === '') return out;
  for (let i = 0; i < strings.length; i++) if (strings[i].toLowerCase().includes(needle)) out[i] = 1;
  return out;
}

function inRange(start: number, range: QueryRange | undefined): boolean {
  return !range || (start >= range.startUs && start < range.endUs);
}

/** What picks spans for a filter: an operator type, a node, or a text in name or type. */
export type SpanFilter = { by: 'opType'; key: string } | { by: 'node'; key: string } | { by: 'text'; text: string };

/**
 * Per span: 1 when it passes `filter`. Operator-type and node filters pick operator spans;
 * a text filter picks any span whose name or operator type contains the text.
 */
export function spanMask(trace: QueryableTrace, filter: SpanFilter): Uint8Array {
  const s = trace.spans;
  const out = new Uint8Array(s.count);
  switch (filter.by) {
    case 'opType':
    case 'node': {
      const col = filter.by === 'opType' ? s.opType : s.name;
      const idx = new Uint8Array(trace.strings.length);
      trace.strings.forEach((str, i) => (idx[i] = str === filter.key ? 1 : 0));
      for (let i = 0; i < s.count; i++) {
        const v = col[i];
        if (v >= 0 && idx[v] === 1 && isOpSpan(s.flags[i], s.parent[i])) out[i] = 1;
      }
      return out;
    }
    case 'text': {
      const m = matchingStrings(trace.strings, filter.text);
      for (let i = 0; i < s.count; i++) {
        if (m[s.name[i]] === 1 || (s.opType[i] >= 0 && m[s.opType[i]] === 1)) out[i] = 1;
      }
      return out;
    }
    default: {
      const never: never = filter;
      throw new Error(`unknown filter ${JSON.stringify(never)}`);
    }
  }
}

/** Operator statistics of one run. */
export function opStats(trace: QueryableTrace, groupBy: OpGroupBy, opts: { range?: QueryRange; text?: string; limit?: number } = {}): OpStatsResult {
  const s = trace.spans;
  const nLanes = trace.lanes.length;
  const textMatch = opts.text ? matchingStrings(trace.strings, opts.text) : null;
  // Group by string index (type or name): one slot per string, so no map per span.
  const nStr = trace.strings.length;
  const count = new Float64Array(nStr);
  const total = new Float64Array(nStr);
  const byLane = new Float64Array(nStr * nLanes);
  const typeOf = new Int32Array(nStr).fill(-1);
  let spans = 0;
  let totalUs = 0;
  for (let i = 0; i < s.count; i++) {
    if (!isOpSpan(s.flags[i], s.parent[i]) || !inRange(s.start[i], opts.range)) continue;
    if (textMatch && textMatch[s.name[i]] !== 1 && !(s.opType[i] >= 0 && textMatch[s.opType[i]] === 1)) continue;
    const key = groupBy === 'opType' ? s.opType[i] : s.name[i];
    if (key < 0) continue; // an operator span without a type has no row by type
    const d = s.dur[i];
    count[key]++;
    total[key] += d;
    byLane[key * nLanes + s.lane[i]] += d;
    if (typeOf[key] < 0) typeOf[key] = s.opType[i];
    spans++;
    totalUs += d;
  }
  const rows: OpStatsRow[] = [];
  for (let k = 0; k < nStr; k++) {
    if (count[k] === 0) continue;
    rows.push({
      key: trace.strings[k],
      opType: typeOf[k] >= 0 ? trace.strings[typeOf[k]] : '',
      count: count[k],
      totalUs: total[k],
      meanUs: total[k] / count[k],
      share: totalUs > 0 ? total[k] / totalUs : 0,
      byLaneUs: Array.from(byLane.subarray(k * nLanes, (k + 1) * nLanes)),
    });
  }
  rows.sort((a, b) => b.totalUs - a.totalUs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const limit = opts.limit ?? DEFAULT_QUERY_LIMIT;
  return { type: 'opStats', groupBy, rows: rows.slice(0, limit), totalRows: rows.length, spans, totalUs, lanes: trace.lanes.map((l) => l.label) };
}

/** Spans whose name or operator type contains `text`, earliest first. */
export function searchSpans(trace: QueryableTrace, text: string, opts: { range?: QueryRange; limit?: number } = {}): SearchResult {
  const s = trace.spans;
  const mask = spanMask(trace, { by: 'text', text });
  const limit = opts.limit ?? DEFAULT_QUERY_LIMIT;
  let count = 0;
  // Keep the `limit` earliest matches: spans are not sorted by start, so collect and sort
  // the indices (a typed array), then build objects only for the hits returned.
  const found: number[] = [];
  for (let i = 0; i < s.count; i++) {
    if (mask[i] !== 1 || !inRange(s.start[i], opts.range)) continue;
    count++;
    found.push(i);
  }
  const idx = Int32Array.from(found).sort((a, b) => s.start[a] - s.start[b] || a - b);
  const hits: SearchHit[] = [];
  for (let j = 0; j < Math.min(limit, idx.length); j++) {
    const i = idx[j];
    hits.push({ span: i, lane: s.lane[i], name: trace.strings[s.name[i]] ?? '', startUs: s.start[i], durUs: s.dur[i] });
  }
  return { type: 'search', text, count, hits };
}

/** Answers any {@link SpanQuery}: the one entry point a host or the view calls. */
export function answerSpanQuery(trace: QueryableTrace, q: SpanQuery): SpanQueryResult {
  switch (q.type) {
    case 'opStats':
      return opStats(trace, q.groupBy, { range: q.range, text: q.text, limit: q.limit });
    case 'search':
      return searchSpans(trace, q.text, { range: q.range, limit: q.limit });
    default: {
      const never: never = q;
      throw new Error(`unknown query ${JSON.stringify(never)}`);
    }
  }
}

/** Checks a query received over a channel (untrusted); returns it or a one-line reason. */
export function readSpanQuery(x: unknown): { ok: true; query: SpanQuery } | { ok: false; error: string } {
  if (typeof x !== 'object' || x === null) return { ok: false, error: 'query is not an object' };
  const q = x as Record<string, unknown>;
  const range = q['range'];
  if (range !== undefined) {
    const r = range as Record<string, unknown> | null;
    if (typeof r !== 'object' || r === null || typeof r['startUs'] !== 'number' || typeof r['endUs'] !== 'number' || !(r['startUs'] <= r['endUs'])) {
      return { ok: false, error: 'query: "range" must be { startUs, endUs } with startUs ≤ endUs' };
    }
  }
  const limit = q['limit'];
  if (limit !== undefined && !(Number.isInteger(limit) && (limit as number) > 0)) return { ok: false, error: 'query: "limit" must be a positive integer' };
  if (q['text'] !== undefined && typeof q['text'] !== 'string') return { ok: false, error: 'query: "text" must be a string' };
  switch (q['type']) {
    case 'opStats':
      if (q['groupBy'] !== 'opType' && q['groupBy'] !== 'node') return { ok: false, error: 'query: "groupBy" must be "opType" or "node"' };
      return { ok: true, query: q as unknown as SpanQuery };
    case 'search':
      if (typeof q['text'] !== 'string') return { ok: false, error: 'query: search needs a "text"' };
      return { ok: true, query: q as unknown as SpanQuery };
    default:
      return { ok: false, error: `query: unknown type ${JSON.stringify(String(q['type'])).slice(0, 40)}` };
  }
}
