/**
 * Loading the JSON documents importers read: plain or gzip-compressed (recognised by the gzip
 * magic bytes, not by the file name, since profilers and users rename files freely), with
 * one-line errors that name the file for everything a user can get wrong.
 *
 * gzip is inflated as a stream with a cap on the expansion ratio and on the total output
 * (see `common/limits.ts`), so a decompression bomb stops after a bounded amount of work and
 * memory while an honest trace of several GB still streams through. {@link openTextStream}
 * hands out the decompressed bytes chunk by chunk for readers that do not need the whole
 * text; {@link readTextFile} is the whole-text convenience on top of it.
 */
import { createReadStream, promises as fs } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { createGunzip } from 'node:zlib';
import { UserError } from '../../common/errors';
import { INFLATE_FREE_BYTES, MAX_INFLATED_BYTES, MAX_INFLATE_RATIO } from '../../common/limits';
import { checkJsonDepth } from '../../common/json-depth';

/** True when the bytes start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Bytes per read from a file. */
const READ_CHUNK_BYTES = 2 ** 20;

const MiB = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`;

function fsError(path: string, e: unknown): UserError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new UserError(`${path}: no such file; check the path`);
  if (code === 'EISDIR') return new UserError(`${path}: is a folder, not a trace file`);
  if (code === 'EACCES' || code === 'EPERM') return new UserError(`${path}: cannot be read (permission denied); make it readable`);
  return new UserError(`${path}: cannot be read (${code ?? String(e)})`);
}

/**
 * Size of a regular file, refusing folders, FIFOs, devices and sockets before anything reads
 * them (a FIFO would block the read forever, a device would never end).
 */
export async function regularFileSize(path: string): Promise<number> {
  let st;
  try {
    st = await fs.stat(path);
  } catch (e) {
    throw fsError(path, e);
  }
  if (st.isDirectory()) throw new UserError(`${path}: is a folder, not a trace file`);
  if (!st.isFile()) throw new UserError(`${path}: is not a regular file (a pipe, device or socket); give a trace file`);
  return st.size;
}

/** Most bytes a gzip stream of `compressedBytes` may inflate to (see `common/limits.ts`). */
export function inflateLimit(compressedBytes: number): number {
  return Math.min(MAX_INFLATED_BYTES, Math.max(INFLATE_FREE_BYTES, MAX_INFLATE_RATIO * compressedBytes));
}

/** How a reader of a stream wants a gzip stream that ends early handled. */
export interface StreamOptions {
  /**
   * When given, a gzip stream cut short ends quietly after everything it inflated to, and
   * this is called, instead of the stream being refused as corrupt: for readers that
   * recognise an incomplete document themselves and keep what came before the cut.
   * Corrupt data is refused either way.
   */
  onCut?: () => void;
}

/**
 * Inflates a gzip byte stream chunk by chunk, stopping with a {@link UserError} once the
 * output passes {@link inflateLimit} of `compressedBytes` or the data is corrupt. Memory
 * stays at one chunk whatever the file holds.
 */
export async function* gunzipChunks(input: AsyncIterable<Uint8Array>, compressedBytes: number, source: string, options: StreamOptions = {}): AsyncGenerator<Buffer> {
  const limit = inflateLimit(compressedBytes);
  const gunzip = createGunzip();
  const source_ = input[Symbol.asyncIterator]();
  let inputError: unknown = null;
  // Feed the inflater from the input by hand so that backpressure holds, an input error ends
  // the inflater too, and stopping early (a cap reached) stops reading the input.
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await source_.next();
        if (done || gunzip.destroyed) break;
        if (!gunzip.write(value)) await drainOrClose(gunzip);
      }
      if (!gunzip.destroyed) gunzip.end();
    } catch (e) {
      inputError = e;
      gunzip.destroy(e as Error);
    }
  })();
  let out = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      out += chunk.length;
      if (out > limit) {
        throw new UserError(
          out > MAX_INFLATED_BYTES
            ? `${source}: inflates to more than ${MiB(MAX_INFLATED_BYTES)}, the most Parallax reads from one file; split the trace into fewer steps per file`
            : `${source}: gzip data inflates more than ${MAX_INFLATE_RATIO}× (past ${MiB(limit)} from ${MiB(compressedBytes)} compressed), which no trace does; the file is not a trace`,
        );
      }
      yield chunk;
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (inputError !== null) throw fsError(source, inputError);
    // zlib has handed out everything the cut stream decoded before it reports the cut.
    if (options.onCut && (e as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') {
      options.onCut();
      return;
    }
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(`${source}: corrupt gzip data (${why}); copy the file again or give the uncompressed JSON`);
  } finally {
    gunzip.destroy();
    await source_.return?.();
  }
}

/** Resolves when a writable drains or closes, leaving no listener behind. */
function drainOrClose(w: NodeJS.WritableStream & { once: NodeJS.EventEmitter['once']; off: NodeJS.EventEmitter['off'] }): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.once('drain', done);
    w.once('close', done);
  });
}

/** A file's content, decompressed when it is gzip, as a stream of chunks. */
export interface TextStream {
  /** True when the file was gzip-compressed. */
  gzip: boolean;
  /** Size of the file on disk. */
  fileBytes: number;
  /** The (decompressed) bytes, chunk by chunk; iterate once. */
  chunks: AsyncIterable<Buffer>;
}

/**
 * Opens a trace file for streaming: refuses what is not a regular file, recognises gzip by
 * its magic bytes and inflates it with the caps of {@link gunzipChunks}. Read errors come
 * out of the iteration as one-line {@link UserError}s.
 */
export async function openTextStream(path: string, options: StreamOptions = {}): Promise<TextStream> {
  const fileBytes = await regularFileSize(path);
  let head: Buffer;
  try {
    const fh = await fs.open(path, 'r');
    try {
      head = Buffer.alloc(2);
      const { bytesRead } = await fh.read(head, 0, 2, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw fsError(path, e);
  }
  const raw = async function* (): AsyncGenerator<Buffer> {
    try {
      // Chunks of 1 MiB: fewer round trips to the file system than the default 64 KiB.
      for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK_BYTES })) yield chunk as Buffer;
    } catch (e) {
      throw fsError(path, e);
    }
  };
  const gzip = isGzip(head);
  return { gzip, fileBytes, chunks: gzip ? gunzipChunks(raw(), fileBytes, path, options) : raw() };
}

/**
 * Collects chunks into one buffer, refusing (before concatenating) more than one JavaScript
 * string can hold, since JSON.parse needs the whole text as one string.
 */
async function collect(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, source: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of chunks) {
    n += c.length;
    if (n > bufferConstants.MAX_STRING_LENGTH) {
      throw new UserError(
        `${source}: more than ${MiB(bufferConstants.MAX_STRING_LENGTH)} of JSON, more than one JavaScript string can hold; profile fewer steps per file`,
      );
    }
    parts.push(c);
  }
  return Buffer.concat(parts, n);
}

/** Reads a file (decompressing gzip) as UTF-8 text, with one-line errors. */
export async function readTextFile(path: string): Promise<string> {
  const { chunks } = await openTextStream(path);
  return (await collect(chunks, path)).toString('utf8');
}

/** Decompresses gzip bytes already in memory (if they are gzip) and decodes them as UTF-8 text. */
export async function decodeText(bytes: Buffer, source: string): Promise<string> {
  if (!isGzip(bytes)) {
    if (bytes.length > bufferConstants.MAX_STRING_LENGTH) return collect([bytes], source).then((b) => b.toString('utf8'));
    return bytes.toString('utf8');
  }
  const one = async function* (): AsyncGenerator<Buffer> {
    yield bytes;
  };
  return (await collect(gunzipChunks(one(), bytes.length, source), source)).toString('utf8');
}

/**
 * The literals Python's `json` writes for non-finite floats, which JSON does not allow,
 * replaced by `null` outside strings. Returns null when the text has none.
 */
export function replaceNonFinite(text: string): { text: string; count: number } | null {
  const re = /"(?:[^"\\]|\\.)*"|-?\bInfinity\b|\bNaN\b/g;
  let count = 0;
  const out = text.replace(re, (m) => {
    if (m.startsWith('"')) return m;
    count++;
    return 'null';
  });
  return count > 0 ? { text: out, count } : null;
}

/** A parsed document and how many non-finite literals were read as null. */
export interface ParsedJson {
  doc: unknown;
  /** `NaN`, `Infinity` and `-Infinity` literals (Python's json writes them) read as null. */
  nonFinite: number;
}

/**
 * Parses JSON text, turning a syntax error into a one-line error naming the file. Nesting
 * deeper than `MAX_JSON_DEPTH` is refused (code that walks the document recurses);
 * the `NaN`/`Infinity` literals Python writes are read as null and counted.
 */
export function parseJsonDocument(text: string, source: string): ParsedJson {
  checkJsonDepth(text, source);
  try {
    return { doc: JSON.parse(text), nonFinite: 0 };
  } catch {
    // Only a failed parse pays for the scan.
  }
  const fixed = replaceNonFinite(text);
  if (fixed) {
    try {
      return { doc: JSON.parse(fixed.text), nonFinite: fixed.count };
    } catch {
      // Not the only problem: fall through to the general message.
    }
  }
  throw new UserError(`${source}: not valid JSON (is the file truncated?); give a complete trace file`);
}

/** Parses JSON text; see {@link parseJsonDocument}. */
export function parseJsonText(text: string, source: string): unknown {
  return parseJsonDocument(text, source).doc;
}

/** Reads, decompresses when needed, and parses one JSON file. */
export async function readJsonFile(path: string): Promise<unknown> {
  return parseJsonText(await readTextFile(path), path);
}
