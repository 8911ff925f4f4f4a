/**
 * Reading and writing trace files. Writes are atomic (a temporary file in the same folder,
 * then a rename) so a crash or a full disk never leaves a half-written trace behind, and an
 * existing file is only replaced by a complete one.
 *
 * A trace of {@link SPANS_FILE_MIN_SPANS} spans or more keeps its span columns in a binary
 * side file next to the JSON document (`spans-file.ts`); smaller ones stay one readable JSON
 * file. Readers take either.
 */
import { promises as fs } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../common/errors';
import { checkJsonDepth } from '../common/json-depth';
import { asWriteError, makeDirs } from '../common/out-path';
import { isSpansFileRef, readSpansFileWithIndex, writeSpansFile, SPANS_FILE_MIN_SPANS, type ReadSpansOptions } from './spans-file';
import { buildSpanTiles, type SpanTilesIndex } from './span-tiles';
import { allocSpans, traceFromJson, traceToJson, TraceFormatError, type CheckedColumns, type Trace } from './trace-format';

/** Writes `data` to `path` atomically, creating the folder if needed. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await makeDirs(dir);
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    // A full disk, a folder in the way or a read-only place is the user's to fix.
    throw asWriteError(path, e);
  }
}

/** Serialises a trace to JSON text. */
export function serializeTrace(trace: Trace): string {
  return JSON.stringify(traceToJson(trace));
}

/** Where a trace's span columns go: `auto` puts them in a side file from {@link SPANS_FILE_MIN_SPANS} spans. */
export type SpansStorage = 'auto' | 'inline' | 'side-file';

/**
 * Writes a trace file atomically; large traces (or `spans: 'side-file'`) write their columns
 * to the side file first, then the document that refers to it. A side file also stores the
 * index the tiled timeline needs (built here, about 100 ms per million spans; `tileIndex:
 * false` leaves it out), so that opening the trace does not build it.
 */
export async function writeTrace(path: string, trace: Trace, opts: { spans?: SpansStorage; tileIndex?: boolean } = {}): Promise<void> {
  const storage = opts.spans ?? 'auto';
  const side = storage === 'side-file' || (storage === 'auto' && trace.spans.count >= SPANS_FILE_MIN_SPANS);
  if (!side) {
    await writeFileAtomic(path, serializeTrace(trace));
    return;
  }
  // Built in slices: the extension host writes imported traces too, and stays responsive.
  const index = opts.tileIndex === false ? undefined : (await buildSpanTiles(trace)).exportIndex();
  const ref = await writeSpansFile(path, trace.spans, index);
  const doc = traceToJson({ ...trace, spans: allocSpans(0) });
  await writeFileAtomic(path, JSON.stringify({ ...doc, spans: ref }));
}

function parseDocument(text: string, source: string): unknown {
  checkJsonDepth(text, source);
  try {
    return JSON.parse(text);
  } catch {
    throw new UserError(`${source}: not valid JSON (is the file truncated?); re-run the profile or pick another trace`);
  }
}

function fromDocument(doc: unknown, source: string, checked?: CheckedColumns): Trace {
  try {
    return traceFromJson(doc, checked);
  } catch (e) {
    if (e instanceof TraceFormatError) throw new UserError(`${source}: ${e.message}`);
    throw e;
  }
}

/**
 * Parses trace JSON text; `source` names the file in error messages. A document whose spans
 * are in a side file needs {@link readTrace}, which knows where the document lies.
 */
export function parseTrace(text: string, source: string): Trace {
  return fromDocument(parseDocument(text, source), source);
}

/** Reads and validates a trace file, with one-line errors for missing or corrupt files. */
export async function readTrace(path: string): Promise<Trace> {
  return (await readTraceWithTileIndex(path, () => false)).trace;
}

/** A trace read with the tile index stored beside it. */
export interface TraceWithTileIndex {
  trace: Trace;
  /** The stored index, when asked for and sound (see `SpanTiles.fromIndex`), else null. */
  tileIndex: SpanTilesIndex | null;
  /** Why a stored index was left aside, one line; null when none was or all was well. */
  note: string | null;
}

/**
 * Reads a trace as {@link readTrace} does and, for a trace whose columns are in a side file
 * and for which `want(spanCount)` holds, the tile index stored in it. A trace without one
 * (inline JSON, a side file written without it or by an older Parallax) reads with a null
 * index; a stored index that is cut short or corrupt is left aside with a note. The side
 * file's columns are checked as each is read, while the next ones are read (`overlap: false`
 * checks them after every read has ended, as Parallax did before; kept to measure the two
 * against each other).
 */
export async function readTraceWithTileIndex(path: string, want: (spans: number) => boolean, opts: Pick<ReadSpansOptions, 'overlap'> = {}): Promise<TraceWithTileIndex> {
  let text: string;
  try {
    const st = await fs.stat(path);
    // A FIFO or a device would block or never end; refuse them before reading.
    if (!st.isFile() && !st.isDirectory()) throw new UserError(`${path}: is not a regular file (a pipe, device or socket); give a trace file`);
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${path}: no such file; check the path`);
    if (code === 'EISDIR') throw new UserError(`${path}: is a folder, not a trace file`);
    throw new UserError(`${path}: cannot be read (${code ?? String(e)})`);
  }
  const doc = parseDocument(text, path);
  const spans = typeof doc === 'object' && doc !== null ? (doc as { spans?: unknown }).spans : undefined;
  if (!isSpansFileRef(spans)) return { trace: fromDocument(doc, path), tileIndex: null, note: null };
  const { lanes, strings } = doc as { lanes?: unknown; strings?: unknown };
  const wantIndex = Array.isArray(lanes) && Number.isInteger(spans.count) && want(spans.count);
  // The columns are checked while they are read, against the bounds this document sets; a
  // document too broken to set them is refused by traceFromJson, which then checks all.
  const check = Array.isArray(lanes) && Array.isArray(strings) ? { spans: spans.count, strings: strings.length, lanes: lanes.length } : undefined;
  const read = await readSpansFileWithIndex(path, spans, wantIndex ? (lanes as unknown[]).length : null, { ...opts, ...(check ? { check } : {}) });
  const checked = read.checked ? { columns: read.spans, limits: read.checked } : undefined;
  return { trace: fromDocument({ ...(doc as object), spans: read.spans }, path, checked), tileIndex: read.tileIndex, note: read.note };
}
