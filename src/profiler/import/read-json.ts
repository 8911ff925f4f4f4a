/**
 * Loading the JSON documents importers read: plain or gzip-compressed (recognised by the gzip
 * magic bytes, not by the file name, since profilers and users rename files freely), with
 * one-line errors that name the file for everything a user can get wrong.
 */
import { promises as fs } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { UserError } from '../../common/errors';

const gunzipAsync = promisify(gunzip);

/** True when the bytes start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Reads a file's bytes, with one-line errors for missing and unreadable files. */
export async function readFileBytes(path: string): Promise<Buffer> {
  try {
    return await fs.readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${path}: no such file; check the path`);
    if (code === 'EISDIR') throw new UserError(`${path}: is a folder, not a trace file`);
    throw new UserError(`${path}: cannot be read (${code ?? String(e)})`);
  }
}

/** Decompresses gzip bytes (if they are gzip) and decodes them as UTF-8 text. */
export async function decodeText(bytes: Buffer, source: string): Promise<string> {
  let raw = bytes;
  if (isGzip(bytes)) {
    try {
      raw = await gunzipAsync(bytes);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new UserError(`${source}: corrupt gzip data (${why}); copy the file again or give the uncompressed JSON`);
    }
  }
  // V8 cannot hold a string longer than this; JSON.parse needs the whole text as one string.
  if (raw.length > bufferConstants.MAX_STRING_LENGTH) {
    throw new UserError(
      `${source}: ${(raw.length / 2 ** 20).toFixed(0)} MiB of JSON is more than one JavaScript string can hold (${(bufferConstants.MAX_STRING_LENGTH / 2 ** 20).toFixed(0)} MiB); profile fewer steps per file`,
    );
  }
  return raw.toString('utf8');
}

/** Parses JSON text, turning a syntax error into a one-line error naming the file. */
export function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new UserError(`${source}: not valid JSON (is the file truncated?); give a complete trace file`);
  }
}

/** Reads, decompresses when needed, and parses one JSON file. */
export async function readJsonFile(path: string): Promise<unknown> {
  return parseJsonText(await decodeText(await readFileBytes(path), path), path);
}
