/**
 * One entry point for every trace Parallax can read: `importTrace(paths)` looks at each
 * file's content (never its name) and dispatches:
 *  - a Parallax trace (`"format": "parallax-trace"`) goes through `readTrace`, or through
 *    the same validation when it is gzip-compressed;
 *  - a Chrome-trace JSON object with `traceEvents` is read as a PyTorch profiler (Kineto)
 *    trace, one file per rank, and the files are merged into one trace.
 * A Parallax trace is one file; mixing it with other files is refused.
 */
import { open } from 'node:fs/promises';
import { UserError } from '../../common/errors';
import { TRACE_FORMAT_TAG, type Trace } from '../trace-format';
import { parseTrace, readTrace } from '../trace-io';
import { extractKinetoRank, mergeKinetoRanks, type KinetoRank } from './kineto';
import { isGzip, parseJsonDocument, readTextFile, regularFileSize } from './read-json';

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
async function looksNative(path: string): Promise<boolean> {
  // Folders, FIFOs and devices are refused here, before anything opens them.
  await regularFileSize(path);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return false; // readTextFile reports the error with its one-line message
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

async function load(path: string): Promise<Loaded> {
  if (await looksNative(path)) return { format: 'parallax', trace: await readTrace(path), source: path };
  const text = await readTextFile(path);
  const { doc, nonFinite } = parseJsonDocument(text, path);
  if (typeof doc === 'object' && doc !== null && (doc as { format?: unknown }).format === TRACE_FORMAT_TAG) {
    return { format: 'parallax', trace: parseTrace(text, path), source: path };
  }
  if (typeof doc === 'object' && doc !== null && (Array.isArray(doc) || Array.isArray((doc as { traceEvents?: unknown }).traceEvents))) {
    // extractKinetoRank refuses bare event arrays and traces without GPU activity itself.
    return { format: 'kineto', rank: extractKinetoRank(doc, path, nonFinite), source: path };
  }
  throw new UserError(`${path}: neither a Parallax trace nor a PyTorch profiler (Kineto) trace (no "format" tag, no "traceEvents")`);
}

/** Reads one or more trace files of any supported format and returns one trace. */
export async function importTrace(paths: string[]): Promise<Trace> {
  if (paths.length === 0) throw new UserError('no trace files given');
  const loaded: Loaded[] = [];
  // One at a time: each Kineto document is reduced to columns before the next is parsed.
  for (const p of paths) loaded.push(await load(p));
  const native = loaded.filter((l) => l.format === 'parallax');
  if (native.length > 0) {
    if (loaded.length > 1) {
      throw new UserError(`${native[0].source}: a Parallax trace is a whole run; give it on its own, not with other files`);
    }
    return native[0].trace;
  }
  return mergeKinetoRanks(loaded.map((l) => (l as Extract<Loaded, { format: 'kineto' }>).rank));
}
