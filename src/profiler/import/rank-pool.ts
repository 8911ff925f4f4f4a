/**
 * Ranks imported in parallel: each file of a multi-rank job is streamed in its own worker
 * thread (a bounded pool of min(files, cores) workers), and the rank's columns come back as
 * transferred ArrayBuffers, not copies. The merge then runs exactly as for files read one
 * after another, in the order the files were given, and the first failing file (in that
 * order) is the error reported, so the result never depends on which worker finished first.
 *
 * The worker entry (`import-worker.ts`, built to dist/import-worker.js) is a thin shim over
 * {@link handleImportRequest}, which tests drive in-process. Where the built worker is not
 * there (code run from its sources), files are read in this thread instead.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { UserError, isUserError } from '../../common/errors';
import { findPackageFile } from '../../common/package-file';
import { streamTraceFile, type StreamedFile, type StreamImportOptions } from './kineto-stream';
import type { KinetoRank } from './kineto';

/** Main thread → worker: stream one file. */
export interface ImportRequest {
  type: 'import';
  id: number;
  path: string;
  batchBytes?: number;
}

/** Worker → main thread: the file's result, or why it failed. */
export type ImportReply =
  | { type: 'imported'; id: number; file: StreamedFile }
  | { type: 'failed'; id: number; message: string; user: boolean; exitCode: number };

/** True for a well-formed {@link ImportRequest}. */
export function isImportRequest(m: unknown): m is ImportRequest {
  const r = m as Partial<ImportRequest> | null;
  return typeof r === 'object' && r !== null && r.type === 'import' && typeof r.id === 'number' && typeof r.path === 'string';
}

function isImportReply(m: unknown): m is ImportReply {
  const r = m as Partial<ImportReply> | null;
  return typeof r === 'object' && r !== null && (r.type === 'imported' || r.type === 'failed') && typeof r.id === 'number';
}

/** The buffers of a rank's columns, to transfer instead of copying. */
function columnBuffers(rank: KinetoRank): ArrayBuffer[] {
  const s = rank.spans;
  const arrays = [s.kind, s.name, s.start, s.dur, s.bytes, s.flags, s.comm, s.local, s.launchStep];
  return [...new Set(arrays.map((a) => a.buffer as ArrayBuffer))];
}

/** Streams the requested file; the reply and the buffers to transfer with it. */
export async function handleImportRequest(m: ImportRequest): Promise<{ reply: ImportReply; transfer: ArrayBuffer[] }> {
  try {
    const file = await streamTraceFile(m.path, m.batchBytes !== undefined ? { batchBytes: m.batchBytes } : {});
    return { reply: { type: 'imported', id: m.id, file }, transfer: file.kind === 'kineto' ? columnBuffers(file.rank) : [] };
  } catch (e) {
    const user = isUserError(e);
    const message = e instanceof Error ? e.message : String(e);
    return { reply: { type: 'failed', id: m.id, message, user, exitCode: user ? (e as UserError).exitCode : 1 }, transfer: [] };
  }
}

/** The built worker, or null when this code runs from its sources. */
function workerFile(): string | null {
  return findPackageFile(__dirname, ['import-worker.js', 'dist/import-worker.js']);
}

/** Options of {@link streamFiles}. */
export interface PoolOptions extends StreamImportOptions {
  /** Most worker threads; default the machine's cores. 1 (or no built worker) reads in this thread. */
  workers?: number;
  /**
   * Read even a single file in a worker thread, keeping this thread free (the extension
   * host must stay responsive while a file of GBs streams in).
   */
  offThread?: boolean;
}

/** How many workers {@link streamFiles} starts for `files` files. */
export function poolSize(files: number, workers = availableParallelism()): number {
  return Math.max(1, Math.min(files, workers));
}

/** One file's outcome: what it held, or the error reading it raised. */
export type Settled = { ok: true; file: StreamedFile } | { ok: false; error: Error };

/**
 * Streams every file (see {@link streamTraceFile}), in parallel worker threads when there
 * is more than one file and the built worker exists. Outcomes come back in the order of
 * `paths`, failures included, so the caller can report the first in that order.
 */
export async function streamFilesSettled(paths: string[], options: PoolOptions = {}): Promise<Settled[]> {
  const size = poolSize(paths.length, options.workers);
  const file = size > 1 || (options.offThread === true && paths.length > 0) ? workerFile() : null;
  if (file === null) {
    const out: Settled[] = [];
    for (const p of paths) {
      try {
        out.push({ ok: true, file: await streamTraceFile(p, options) });
      } catch (e) {
        out.push({ ok: false, error: e instanceof Error ? e : new Error(String(e)) });
      }
    }
    return out;
  }
  const results = await runPool(file, size, paths, options.batchBytes);
  return results.map((r): Settled => {
    if (r.type === 'imported') return { ok: true, file: r.file };
    return { ok: false, error: r.user ? new UserError(r.message, r.exitCode) : new Error(r.message) };
  });
}

/** {@link streamFilesSettled}, throwing the first failure in the order of `paths`. */
export async function streamFiles(paths: string[], options: PoolOptions = {}): Promise<StreamedFile[]> {
  return (await streamFilesSettled(paths, options)).map((r) => {
    if (!r.ok) throw r.error;
    return r.file;
  });
}

/** Runs the requests on `size` workers, each taking the next file when it is done. */
function runPool(file: string, size: number, paths: string[], batchBytes: number | undefined): Promise<ImportReply[]> {
  return new Promise((resolve, reject) => {
    const results: ImportReply[] = new Array<ImportReply>(paths.length);
    const workers: Worker[] = [];
    let next = 0;
    let done = 0;
    let finished = false;
    const finish = (error: Error | null): void => {
      if (finished) return;
      finished = true;
      for (const w of workers) void w.terminate();
      if (error) reject(error);
      else resolve(results);
    };
    const give = (w: Worker): void => {
      if (next >= paths.length) return;
      const id = next++;
      const request: ImportRequest = { type: 'import', id, path: paths[id], ...(batchBytes !== undefined ? { batchBytes } : {}) };
      w.postMessage(request);
    };
    for (let i = 0; i < size; i++) {
      const w = new Worker(file);
      workers.push(w);
      w.on('message', (m: unknown) => {
        if (!isImportReply(m) || m.id < 0 || m.id >= paths.length || results[m.id] !== undefined) {
          finish(new Error('import worker sent a malformed reply'));
          return;
        }
        results[m.id] = m;
        if (++done === paths.length) finish(null);
        else give(w);
      });
      w.on('error', (e) => finish(new Error(`import worker crashed: ${e.message}`)));
      w.on('exit', (code) => {
        if (code !== 0) finish(new Error(`import worker exited with code ${code}`));
      });
      give(w);
    }
  });
}
