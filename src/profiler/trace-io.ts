/**
 * Reading and writing trace files. Writes are atomic (a temporary file in the same folder,
 * then a rename) so a crash or a full disk never leaves a half-written trace behind, and an
 * existing file is only replaced by a complete one.
 */
import { promises as fs } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../common/errors';
import { traceFromJson, traceToJson, TraceFormatError, type Trace } from './trace-format';

/** Writes `data` to `path` atomically, creating the folder if needed. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await fs.mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
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
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${path}: no such file; check the path`);
    if (code === 'EISDIR') throw new UserError(`${path}: is a folder, not a trace file`);
    throw new UserError(`${path}: cannot be read (${code ?? String(e)})`);
  }
  return parseTrace(text, path);
}
