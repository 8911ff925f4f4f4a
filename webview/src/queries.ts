/**
 * Where the view's span queries (operator table, search, filters) are answered. Today the
 * view holds every span and answers them itself with the functions of
 * src/profiler/span-query.ts; a host that serves a big trace in tiles answers the same
 * typed queries with the same functions, so the panels talk to this interface only and
 * every answer is a promise.
 */
import { answerSpanQuery, spanMask, type SpanFilter, type SpanQuery, type SpanQueryResult } from '../../src/profiler/span-query';
import type { Run } from './data';

export interface SpanQueries {
  /** Answers `q` about run `run`. */
  ask(run: number, q: SpanQuery): Promise<SpanQueryResult>;
  /** Per span of run `run`: 1 when `filter` picks it. */
  mask(run: number, filter: SpanFilter): Promise<Uint8Array>;
}

/** Queries answered on the spans the view holds. */
export function localQueries(runs: () => readonly Run[]): SpanQueries {
  const trace = (run: number) => {
    const r = runs()[run];
    if (!r) throw new Error(`no run ${run}`);
    return r.trace;
  };
  return {
    ask: async (run, q) => answerSpanQuery(trace(run), q),
    mask: async (run, filter) => spanMask(trace(run), filter),
  };
}
