/**
 * The binary side file of a large trace: its span columns as raw little-endian typed arrays,
 * next to the JSON document that holds everything else (`job.parallax.json` +
 * `job.parallax.spans`).
 *
 * A trace of tens of millions of spans does not fit the JSON form: its text would pass V8's
 * largest string (about 512 MiB) and parsing it builds an array of boxed numbers per column
 * before they are copied into typed arrays. The side file is read without parsing anything:
 * each column is read from its offset straight into the memory of its typed array.
 *
 * Layout (all integers little-endian):
 *
 * ```
 *  0   8 bytes   magic "PLXSPANS"
 *  8   u32       layout version (1)
 * 12   u32       header length H in bytes
 * 16   H bytes   header, UTF-8 JSON: { id, count, columns: [{ name, type, offset, bytes }], tileIndex? }
 *      ...       each column at its `offset` (a multiple of 8), `bytes` = count × element size
 *      ...       optional: the tile index section after the columns (tile-index-section.ts)
 * ```
 *
 * The tile index section (added with the tiled timeline; the layout version stays 1, since a
 * reader that does not know it skips it) holds what the timeline builds to show the trace in
 * tiles, so that opening a big trace reads it rather than spending seconds building it. It is
 * checked (description, SHA-256 digest, invariants) when it is read; a section that fails is
 * left aside with a note and the index is built as for a file without one.
 *
 * The JSON document's `spans` is then `{ count, file, id, bytes }`: `file` is the side file's
 * name, in the same folder; `id` is random per write and must match the side file's, so a
 * JSON document is never paired with the columns of another write; `bytes` is the side
 * file's size. The side file is written (atomically) before the document that refers to it.
 *
 * The file is read like any other input from anywhere: its name must be a plain file name
 * (no folder part), every offset and size is checked against the file before anything is
 * allocated, and the columns then go through the same checks as the JSON form (span-checks.ts),
 * each column as soon as it is read, while the next ones are being read.
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../common/errors';
import { asWriteError, makeDirs } from '../common/out-path';
import { SPAN_COLUMN_CHECK_ORDER, spanColumnProblem, type SpanLimits } from './span-checks';
import { SPAN_COLUMNS, SPAN_COLUMN_TYPES, spanColumnCtor, type SpanColumnName, type SpanColumns } from './trace-format';
import type { SpanTilesIndex } from './span-tiles';
import { decodeTileIndex, encodeTileIndex, tileIndexSectionProblem, type TileIndexSection } from './tile-index-section';

/** Traces with at least this many spans keep their columns in a side file by default. */
export const SPANS_FILE_MIN_SPANS = 1_000_000;

const MAGIC = 'PLXSPANS';
const LAYOUT_VERSION = 1;
const PREFIX_BYTES = 16;
/** A header lists 18 columns; anything much longer is not one. */
const MAX_HEADER_BYTES = 64 * 1024;
const ELEMENT_BYTES = { i32: 4, u8: 1, f64: 8 } as const;

/** The `spans` member of a JSON document whose columns are in a side file. */
export interface SpansFileRef {
  count: number;
  file: string;
  id: string;
  bytes: number;
}

interface ColumnEntry {
  name: SpanColumnName;
  type: 'i32' | 'u8' | 'f64';
  offset: number;
  bytes: number;
}

/** True when a document's `spans` points to a side file rather than holding the columns. */
export function isSpansFileRef(spans: unknown): spans is SpansFileRef {
  return typeof spans === 'object' && spans !== null && typeof (spans as { file?: unknown }).file === 'string';
}

/** The side file's path for a trace document's path: `x.parallax.json` → `x.parallax.spans`. */
export function spansFilePath(tracePath: string): string {
  return `${tracePath.endsWith('.json') ? tracePath.slice(0, -'.json'.length) : tracePath}.spans`;
}

function checkEndianness(path: string): void {
  if (endianness() !== 'LE') throw new UserError(`${path}: span side files are little-endian and this machine is not; convert the trace on a little-endian machine`);
}

const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/**
 * Writes the columns (and, when given, the tile index built on them) to the side file of
 * `tracePath` atomically and returns the reference the JSON document stores in place of the
 * columns.
 */
export async function writeSpansFile(tracePath: string, spans: SpanColumns, tileIndex?: SpanTilesIndex): Promise<SpansFileRef> {
  const path = spansFilePath(tracePath);
  checkEndianness(path);
  const id = randomBytes(8).toString('hex');
  const count = spans.count;
  // The header's size depends on the offsets, which depend on the header's size: lay the
  // columns out after a header padded to a size that holds any offsets of this file.
  const draft = (start: number): ColumnEntry[] => {
    let offset = start;
    return SPAN_COLUMNS.map((name) => {
      const type = SPAN_COLUMN_TYPES[name];
      const bytes = count * ELEMENT_BYTES[type];
      const e = { name, type, offset, bytes };
      offset = align8(offset + bytes);
      return e;
    });
  };
  const indexAt = (cols: ColumnEntry[]): number => align8(cols[cols.length - 1]!.offset + cols[cols.length - 1]!.bytes);
  const probeColumns = draft(Number.MAX_SAFE_INTEGER);
  const probeIndex = tileIndex ? { tileIndex: encodeTileIndex(tileIndex, Number.MAX_SAFE_INTEGER).section } : {};
  const probe = Buffer.from(JSON.stringify({ id, count, columns: probeColumns, ...probeIndex }), 'utf8').length;
  const dataStart = align8(PREFIX_BYTES + probe);
  const columns = draft(dataStart);
  const index = tileIndex ? encodeTileIndex(tileIndex, indexAt(columns)) : null;
  const header = Buffer.from(JSON.stringify({ id, count, columns, ...(index ? { tileIndex: index.section } : {}) }), 'utf8');
  const prefix = Buffer.alloc(dataStart);
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(LAYOUT_VERSION, 8);
  prefix.writeUInt32LE(header.length, 12);
  header.copy(prefix, PREFIX_BYTES);
  const last = columns[columns.length - 1]!;
  const total = index ? index.section.offset + index.section.bytes : last.offset + last.bytes;

  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fh: fs.FileHandle | undefined;
  try {
    await makeDirs(dir);
    fh = await fs.open(tmp, 'w');
    await fh.write(prefix, 0, prefix.length, 0);
    for (const c of columns) {
      const col = spans[c.name];
      // A view of the column's own memory: nothing is copied on the way to the file.
      await writeFully(fh, new Uint8Array(col.buffer, col.byteOffset, c.bytes), c.offset);
    }
    if (index) {
      let at = index.section.offset;
      for (const chunk of index.chunks) {
        await writeFully(fh, chunk, at);
        at += chunk.byteLength;
      }
    }
    await fh.truncate(total);
    await fh.close();
    fh = undefined;
    await fs.rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw asWriteError(path, e);
  }
  return { count, file: basename(path), id, bytes: total };
}

async function writeFully(fh: fs.FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Reads the columns a document refers to. `tracePath` is the document's path; the side file
 * must sit in the same folder. Every failure is one line naming the file and what to do.
 */
export async function readSpansFile(tracePath: string, ref: SpansFileRef): Promise<SpanColumns> {
  return (await readSpansFileWithIndex(tracePath, ref, null)).spans;
}

/** What {@link readSpansFileWithIndex} read. */
export interface SpansFileContents {
  spans: SpanColumns;
  /** The stored tile index, when one was asked for, stored and sound. */
  tileIndex: SpanTilesIndex | null;
  /** Why a stored tile index was left aside (one line), or null. */
  note: string | null;
  /** The bounds every column was checked against while it was read ({@link ReadSpansOptions.check}), or null. */
  checked: SpanLimits | null;
}

/** How {@link readSpansFileWithIndex} checks the columns it reads. */
export interface ReadSpansOptions {
  /**
   * Check every column's values against these bounds (those of the trace document the side
   * file belongs to) as it is read; a column out of bounds fails the read with one line.
   * Without it the columns come back unchecked and the caller checks them.
   */
  check?: SpanLimits;
  /**
   * Check each column as soon as it is read, while the others are being read (the default), or
   * only after every read has ended (the way Parallax read before: kept to measure one against
   * the other).
   */
  overlap?: boolean;
}

/**
 * Reads the columns as {@link readSpansFile} does and, when `lanes` is given (the trace's lane
 * count), the tile index stored with them. A stored index that does not fit, is cut short or
 * fails its checksum is never an error: it is left aside with a note, and the caller builds
 * the index.
 */
export async function readSpansFileWithIndex(tracePath: string, ref: SpansFileRef, lanes: number | null, opts: ReadSpansOptions = {}): Promise<SpansFileContents> {
  const bad = (what: string): UserError => new UserError(`${tracePath}: its span file ${JSON.stringify(ref.file.slice(0, 60))} ${what}; re-import or re-run to write the pair again`);
  if (!Number.isInteger(ref.count) || ref.count < 0 || typeof ref.id !== 'string' || !Number.isInteger(ref.bytes)) throw bad('is described wrongly in the trace');
  // Only a plain name in the trace's own folder: a document must not make Parallax read
  // another file of the machine.
  if (ref.file !== basename(ref.file) || ref.file === '.' || ref.file === '..' || !ref.file.endsWith('.spans') || /[\\/\u0000]/.test(ref.file)) {
    throw bad('is not a plain file name ending in .spans next to the trace');
  }
  const path = join(dirname(tracePath), ref.file);
  checkEndianness(path);
  const short = (): UserError => bad('ended while being read (changed on disk?)');
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw bad(code === 'ENOENT' ? 'is missing (copy it along with the trace)' : `cannot be read (${code ?? 'error'})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw bad('is not a regular file');
    const wrongSize = (): UserError => bad(`has ${st.size} bytes where the trace expects ${ref.bytes} (truncated, or from another write)`);
    // A file cut short inside its tile index section still has whole columns: that case is
    // told apart below, once the header says where the section lies.
    if (st.size > ref.bytes) throw wrongSize();
    // Until then, a file too short for its own header is simply cut short.
    const cut = (): UserError => (st.size < ref.bytes ? wrongSize() : short());
    const prefix = Buffer.alloc(PREFIX_BYTES);
    await readFully(fh, prefix, 0, cut);
    if (prefix.toString('latin1', 0, 8) !== MAGIC) throw bad('is not a Parallax span file');
    if (prefix.readUInt32LE(8) !== LAYOUT_VERSION) throw bad(`has layout version ${prefix.readUInt32LE(8)}, which this Parallax does not read; update Parallax`);
    const headerBytes = prefix.readUInt32LE(12);
    if (headerBytes > MAX_HEADER_BYTES) throw bad('has a corrupt header');
    if (PREFIX_BYTES + headerBytes > st.size) throw st.size < ref.bytes ? wrongSize() : bad('has a corrupt header');
    const headerBuf = Buffer.alloc(headerBytes);
    await readFully(fh, headerBuf, PREFIX_BYTES, cut);
    let header: { id?: unknown; count?: unknown; columns?: unknown; tileIndex?: unknown };
    try {
      header = JSON.parse(headerBuf.toString('utf8')) as typeof header;
    } catch {
      throw bad('has a corrupt header');
    }
    const entries = checkColumns(header.columns, ref.count, st.size, PREFIX_BYTES + headerBytes);
    const dataEnd = entries ? Math.max(...entries.map((e) => e.offset + e.bytes)) : Infinity;
    const indexRaw = header.tileIndex as { offset?: unknown; bytes?: unknown } | undefined;
    const cutInIndex = typeof indexRaw === 'object' && indexRaw !== null && typeof indexRaw.offset === 'number' && typeof indexRaw.bytes === 'number' && indexRaw.offset >= dataEnd && indexRaw.offset + indexRaw.bytes === ref.bytes;
    if (st.size !== ref.bytes && !cutInIndex) throw wrongSize();
    if (header.id !== ref.id) throw bad('belongs to another write of this trace');
    if (header.count !== ref.count) throw bad(`holds ${String(header.count)} spans where the trace says ${ref.count}`);
    if (!entries) throw bad('has a corrupt column table');
    const spans = allocUnfilled(ref.count);
    const leftAside = (why: string): string => `${path}: its stored tile index ${why}; the index is built instead`;
    const wantIndex = lanes !== null && header.tileIndex !== undefined;
    const indexProblem = wantIndex ? tileIndexSectionProblem(header.tileIndex, ref.count, lanes, dataEnd, st.size) : null;
    const section = wantIndex && !indexProblem ? (header.tileIndex as TileIndexSection) : null;
    // The stored index's digest covers the index's bytes only, not the columns: it proves the
    // index is the one written, not that the columns still are. So no check of a column is
    // left out because an index is stored; each column is checked in full.
    const { check, overlap = true } = opts;
    // A column's problem, by column name; the first in check order is reported once every
    // read has ended, so that the message does not depend on which read finished first.
    const problems = new Map<SpanColumnName, string>();
    const checkColumn = (e: ColumnEntry): void => {
      const p = check ? spanColumnProblem(e.name, spans[e.name], check) : null;
      if (p) problems.set(e.name, p);
    };
    let tileIndex: SpanTilesIndex | null = null;
    let note = indexProblem ? leftAside(indexProblem) : null;
    const readIndex = async (): Promise<void> => {
      if (!section) return;
      // A buffer of its own (offset 0), so that every part is an aligned view of it.
      const buf = new Uint8Array(Buffer.allocUnsafeSlow(section.bytes).buffer, 0, section.bytes);
      await readFully(fh, buf, section.offset, short);
      try {
        tileIndex = decodeTileIndex(buf, section);
      } catch (e) {
        note = leftAside(e instanceof Error ? e.message : String(e));
      }
    };
    const readColumn = async (e: ColumnEntry): Promise<void> => {
      const col = spans[e.name];
      await readFully(fh, new Uint8Array(col.buffer, col.byteOffset, e.bytes), e.offset, short);
      // Checked as soon as it is in memory: this thread checks one column while libuv's
      // threads read the next ones.
      if (overlap) checkColumn(e);
    };
    // All columns (and the tile index) at once: positional reads of one file run side by side
    // in libuv's thread pool, about a quarter faster than one after another for the gigabyte
    // of a 20M-span trace. The index first, so that its digest is computed while the columns
    // are read. A failed read fails the whole, but only after every read has ended, so that
    // none writes into columns that are being dropped.
    // (Without overlap the index is read after the columns, as before.)
    const settled = overlap ? await Promise.allSettled([readIndex(), ...entries.map(readColumn)]) : await Promise.allSettled(entries.map(readColumn));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (!overlap) await readIndex();
    if (!overlap) for (const e of entries) checkColumn(e);
    const problem = SPAN_COLUMN_CHECK_ORDER.map((c) => problems.get(c)).find((p) => p !== undefined);
    if (problem) throw new UserError(`${tracePath}: ${problem}`);
    return { spans, tileIndex, note, checked: check ?? null };
  } finally {
    await fh.close();
  }
}

/**
 * Span columns for `n` spans whose memory is not zeroed first: every byte is read from the file
 * right after (or the read fails and the columns are dropped), and zeroing 1.5 GB of columns
 * of a 20M-span trace is a pass over memory of its own.
 */
function allocUnfilled(n: number): SpanColumns {
  const cols = { count: n } as Record<string, unknown>;
  for (const c of SPAN_COLUMNS) {
    const Ctor = spanColumnCtor(c);
    const bytes = n * Ctor.BYTES_PER_ELEMENT;
    // A buffer of its own (offset 0), so that the typed array is aligned.
    cols[c] = new Ctor(Buffer.allocUnsafeSlow(bytes).buffer, 0, n);
  }
  return cols as unknown as SpanColumns;
}

/** The column table, checked: every column once, of its type and size, inside the file. */
function checkColumns(raw: unknown, count: number, size: number, dataStart: number): ColumnEntry[] | null {
  if (!Array.isArray(raw) || raw.length !== SPAN_COLUMNS.length) return null;
  const seen = new Set<string>();
  for (const e of raw as Partial<ColumnEntry>[]) {
    if (typeof e !== 'object' || e === null || typeof e.name !== 'string' || !(SPAN_COLUMNS as readonly string[]).includes(e.name) || seen.has(e.name)) return null;
    seen.add(e.name);
    const type = SPAN_COLUMN_TYPES[e.name];
    if (e.type !== type || e.bytes !== count * ELEMENT_BYTES[type]) return null;
    if (!Number.isInteger(e.offset) || e.offset! < dataStart || e.offset! + e.bytes > size) return null;
  }
  return raw as ColumnEntry[];
}

async function readFully(fh: fs.FileHandle, into: Uint8Array, position: number, short: () => Error): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw short();
    done += bytesRead;
  }
}
