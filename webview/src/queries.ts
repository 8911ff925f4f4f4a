/**
 * Where the view's span queries (operator table, search, filters) are answered. Today the
 * view holds every span and answers them itself with the functions of
 * src/profiler/span-query.ts ({@link localQueries}); the host answers the same typed
 * queries with the same functions on its copy of the trace ({@link hostQueries}, protocol
 * messages `query` / `queryResult`), the path for a big trace served in tiles. The panels
 * talk to the {@link SpanQueries} interface only, and every answer is a promise.
 */
import { answerSpanQuery, spanMask, type SpanFilter, type SpanQuery, type SpanQueryResult } from '../../src/profiler/span-query';
import type { Run } from './data';
import type { Host } from './host';
import type { ToWebview } from './protocol';

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

/** Answers to the view's queries that the host sends back (`queryResult` messages). */
export interface HostQueries {
  /** Asks the host to answer `q` about run `run` on its copy of the trace. */
  ask(run: number, q: SpanQuery): Promise<SpanQueryResult>;
  /** Hands over a `queryResult` from the host. */
  settle(m: Extract<ToWebview, { type: 'queryResult' }>): void;
}

/** Queries the host answers (protocol version 2): the path for traces the view does not hold whole. */
export function hostQueries(host: Host): HostQueries {
  let next = 1;
  const waiting = new Map<number, { resolve(r: SpanQueryResult): void; reject(e: Error): void }>();
  return {
    ask(run, query) {
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        host.post({ type: 'query', id, run, query });
      });
    },
    settle(m) {
      const w = waiting.get(m.id);
      if (!w) return;
      waiting.delete(m.id);
      if ('error' in m) w.reject(new Error(m.error));
      else w.resolve(m.result);
    },
  };
}
