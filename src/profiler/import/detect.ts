/**
 * One entry point for every trace Parallax can read: `importTrace(paths)` looks at each
 * file's content (never its name) and dispatches:
 *  - a Parallax trace (`"format": "parallax-trace"`) goes through `readTrace`, or through
 *    the same validation when it is gzip-compressed;
 *  - a Chrome-trace JSON object with `traceEvents` is read as a PyTorch profiler (Kineto)
 *    trace, one file per rank, streamed from its bytes (`kineto-stream.ts`), and the files
 *    are merged into one trace.
 * A Parallax trace is one file; mixing it with other files is refused.
 */
import { open } from 'node:fs/promises';
import { UserError } from '../../common/errors';
import { TRACE_FORMAT_TAG, type Trace } from '../trace-format';
import { parseTrace, readTrace } from '../trace-io';
import { extractKinetoRank, mergeKinetoRanks, type KinetoRank } from './kineto';
import { isGzip, regularFileSize } from './read-json';
import type { StreamedFile } from './kineto-stream';
import { streamFilesSettled, type PoolOptions } from './rank-pool';

/** The formats {@link importTrace} recognises. */
export type TraceFileFormat = 'parallax' | 'kineto';

/** How far into a file the cheap check for a native trace looks. */
const HEAD_BYTES = 4096;
const NATIVE_TAG = new RegExp(`"format"\\s*:\\s*"${TRACE_FORMAT_TAG}"`);

/**
 * True when the first bytes of an uncompressed file show a Parallax trace, so it can go
 * straight to `readTrace` without being read twice. Parallax writes `format` first; a file
 * that puts it elsewhere is still recognised after parsing.
 */
export async function looksNative(path: string): Promise<boolean> {
  // Folders, FIFOs and devices are refused here, before anything opens them.
  await regularFileSize(path);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return false; // the stream reports the error with its one-line message
  }
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0);
    const head = buf.subarray(0, bytesRead);
    return !isGzip(head) && NATIVE_TAG.test(head.toString('utf8'));
  } finally {
    await fh.close();
  }
}

type Loaded = { format: 'parallax'; trace: Trace; source: string } | { format: 'kineto'; rank: KinetoRank; source: string };

/** What a streamed file is: a Kineto rank, a Parallax trace, or neither (refused). */
function recognise(path: string, f: StreamedFile): Loaded {
  if (f.kind === 'kineto') return { format: 'kineto', rank: f.rank, source: path };
  const { doc, text, nonFinite } = f;
  if (typeof doc === 'object' && doc !== null && (doc as { format?: unknown }).format === TRACE_FORMAT_TAG) {
    return { format: 'parallax', trace: parseTrace(text, path), source: path };
  }
  if (Array.isArray(doc)) {
    // extractKinetoRank refuses bare event arrays with what to do instead.
    return { format: 'kineto', rank: extractKinetoRank(doc, path, nonFinite), source: path };
  }
  throw new UserError(`${path}: neither a Parallax trace nor a PyTorch profiler (Kineto) trace (no "format" tag, no "traceEvents")`);
}

/** Options of {@link importTrace}. */
export interface ImportOptions extends PoolOptions {
  /** Called once per file cut short, with the note the trace carries about it (one line). */
  warn?: (line: string) => void;
}

/**
 * Reads one or more trace files of any supported format and returns one trace. Kineto
 * files, one per rank, are streamed in parallel worker threads (see `rank-pool.ts`).
 */
export async function importTrace(paths: string[], options: ImportOptions = {}): Promise<Trace> {
  if (paths.length === 0) throw new UserError('no trace files given');
  // Native traces are recognised by their first bytes and read whole; the rest stream. A
  // file that cannot be read fails in its place in the order given, as if read in turn.
  const native: (boolean | Error)[] = [];
  for (const p of paths) native.push(await looksNative(p).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
  const streamed = await streamFilesSettled(paths.filter((_, i) => native[i] === false), options);
  const loaded: Loaded[] = [];
  let k = 0;
  for (let i = 0; i < paths.length; i++) {
    const n = native[i];
    if (n instanceof Error) throw n;
    if (n) {
      loaded.push({ format: 'parallax', trace: await readTrace(paths[i]), source: paths[i] });
      continue;
    }
    const s = streamed[k++];
    if (!s.ok) throw s.error;
    loaded.push(recognise(paths[i], s.file));
  }
  const nativeLoaded = loaded.filter((l) => l.format === 'parallax');
  if (nativeLoaded.length > 0) {
    if (loaded.length > 1) {
      throw new UserError(`${nativeLoaded[0].source}: a Parallax trace is a whole run; give it on its own, not with other files`);
    }
    return nativeLoaded[0].trace;
  }
  const ranks = loaded.map((l) => (l as Extract<Loaded, { format: 'kineto' }>).rank);
  for (const r of ranks) if (r.truncated !== null) options.warn?.(r.truncated);
  return mergeKinetoRanks(ranks);
}
