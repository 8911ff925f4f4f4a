/**
 * Reading and writing trace files. Writes are atomic (a temporary file in the same folder,
 * then a rename) so a crash or a full disk never leaves a half-written trace behind, and an
 * existing file is only replaced by a complete one.
 */
import { promises as fs } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../common/errors';
import { checkJsonDepth } from '../common/json-depth';
import { asWriteError, makeDirs } from '../common/out-path';
import { traceFromJson, traceToJson, TraceFormatError, type Trace } from './trace-format';

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

/** Writes a trace file atomically. */
export async function writeTrace(path: string, trace: Trace): Promise<void> {
  await writeFileAtomic(path, serializeTrace(trace));
}

/** Parses trace JSON text; `source` names the file in error messages. */
export function parseTrace(text: string, source: string): Trace {
  checkJsonDepth(text, source);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new UserError(`${source}: not valid JSON (is the file truncated?); re-run the profile or pick another trace`);
  }
  try {
    return traceFromJson(doc);
  } catch (e) {
    if (e instanceof TraceFormatError) throw new UserError(`${source}: ${e.message}`);
    throw e;
  }
}

/** Reads and validates a trace file, with one-line errors for missing or corrupt files. */
export async function readTrace(path: string): Promise<Trace> {
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
  return parseTrace(text, path);
}
