/**
 * Runs the preparation (model.ts) off the main thread when it can: in a Worker made from a
 * blob holding the bundled prep-worker.ts (inlined at build time, see scripts/build-webview.mjs).
 * The span columns are transferred to the worker and back, so for a large trace nothing is
 * copied and the page stays responsive while it works. Where workers are refused (a CSP
 * without `worker-src blob:`, or a build without the inlined source) the same function runs
 * on the main thread. A handshake comes first so that columns are only handed to a worker
 * that is known to run.
 */
import type { SpanColumns } from '../../src/profiler/trace-format';
import { prepare, type PrepInput, type Prepared } from './model';
import workerSource from 'parallax:prep-worker';

/** Traces with fewer spans are prepared in place: a worker round trip would cost more. */
export const WORKER_MIN_SPANS = 20_000;

const PREP_COLUMNS = ['lane', 'kind', 'start', 'dur', 'parent', 'flags', 'cause', 'peer', 'micro', 'step', 'name', 'stage', 'comm'] as const;

let workerPromise: Promise<Worker | null> | null = null;

function startWorker(): Promise<Worker | null> {
  if (workerPromise) return workerPromise;
  workerPromise = new Promise<Worker | null>((resolve) => {
    const src = typeof workerSource === 'string' ? workerSource : '';
    if (!src || typeof Worker === 'undefined' || typeof Blob === 'undefined') return resolve(null);
    let w: Worker;
    try {
      const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
      w = new Worker(url);
      URL.revokeObjectURL(url);
    } catch {
      return resolve(null);
    }
    const timer = setTimeout(() => {
      w.terminate();
      resolve(null);
    }, 3000);
    w.onerror = (): void => {
      clearTimeout(timer);
      w.terminate();
      resolve(null);
    };
    w.onmessage = (e: MessageEvent): void => {
      if ((e.data as { type?: string }).type === 'pong') {
        clearTimeout(timer);
        w.onmessage = null;
        w.onerror = null;
        resolve(w);
      }
    };
    w.postMessage({ type: 'ping' });
  });
  return workerPromise;
}

/** A column that owns its whole buffer can be transferred; anything else is copied first. */
function ownBuffer<T extends Int32Array | Uint8Array | Float64Array>(a: T, seen: Set<ArrayBufferLike>): T {
  const own = a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer && !seen.has(a.buffer);
  const out = own ? a : (a.slice() as T);
  seen.add(out.buffer);
  return out;
}

let nextId = 1;

/** Where the last preparation ran, for the test hook. */
export let lastPrepWhere: 'worker' | 'main' = 'main';

/**
 * Prepares the draw model of a trace's spans. The columns named in PREP_COLUMNS may be
 * replaced in `spans` by equal arrays (they travel to the worker and back).
 */
export async function prepareSpans(spans: SpanColumns, nLanes: number): Promise<Prepared> {
  const input: PrepInput = {
    count: spans.count,
    nLanes,
    lane: spans.lane,
    kind: spans.kind,
    start: spans.start,
    dur: spans.dur,
    parent: spans.parent,
    flags: spans.flags,
    cause: spans.cause,
    peer: spans.peer,
    micro: spans.micro,
    step: spans.step,
    name: spans.name,
    stage: spans.stage,
    comm: spans.comm,
  };
  const worker = spans.count >= WORKER_MIN_SPANS ? await startWorker() : null;
  if (!worker) {
    lastPrepWhere = 'main';
    return prepare(input);
  }
  const seen = new Set<ArrayBufferLike>();
  const send = { ...input } as unknown as Record<string, unknown>;
  for (const c of PREP_COLUMNS) send[c] = ownBuffer(input[c], seen);
  const id = nextId++;
  const reply = await new Promise<{ type: string; prepared?: Prepared; message?: string; input: PrepInput }>((resolve) => {
    const onMessage = (e: MessageEvent): void => {
      const d = e.data as { id?: number };
      if (d.id !== id) return;
      worker.removeEventListener('message', onMessage);
      resolve(e.data as { type: string; prepared?: Prepared; message?: string; input: PrepInput });
    };
    worker.addEventListener('message', onMessage);
    worker.postMessage({ type: 'prepare', id, input: send }, PREP_COLUMNS.map((c) => (send[c] as Int32Array).buffer as ArrayBuffer));
  });
  // The columns come back whatever happened; put them where the trace expects them.
  const cols = spans as unknown as Record<string, unknown>;
  for (const c of PREP_COLUMNS) cols[c] = reply.input[c];
  if (reply.type !== 'prepared' || !reply.prepared) throw new Error(`preparing the trace failed: ${reply.message ?? 'unknown error'}`);
  lastPrepWhere = 'worker';
  return reply.prepared;
}
