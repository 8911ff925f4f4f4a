/**
 * Output paths checked before the work that fills them: a run that takes minutes must not
 * end in `EISDIR` or `EACCES` when the trace is written. The check creates the folders the
 * write would create anyway, then creates and removes a probe file where the output goes.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from './errors';

/**
 * One line for a file-system error met while writing `path` (`what` names the file's role,
 * e.g. "--out"), or null for an error that is not the user's to fix.
 */
export function writeErrorMessage(path: string, e: unknown, what = 'output file'): string | null {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EISDIR':
      return `${what} ${path} is a folder; give a file path`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `${what} ${path}: a part of the path is a file, not a folder; give a path in a folder`;
    case 'EACCES':
    case 'EPERM':
      return `${what} ${path}: no permission to write there; choose a folder you can write to`;
    case 'EROFS':
      return `${what} ${path}: the file system is read-only; choose another folder`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `${what} ${path}: the disk is full; free some space or write elsewhere`;
    case 'ENOENT':
      return `${what} ${path}: the folder cannot be created there; choose another folder`;
    case 'ENAMETOOLONG':
      return `${what} ${path}: the path is too long`;
    default:
      return null;
  }
}

/**
 * Creates `dir` and its missing parents, one level at a time. Node's own recursive mkdir
 * loops forever under /proc (each level answers ENOENT, and it retries the parent), so a
 * path such as /proc/x/run.json would hang the CLI instead of failing.
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  let cur = resolve(dir);
  for (;;) {
    try {
      const st = await fs.stat(cur);
      if (!st.isDirectory()) throw Object.assign(new Error(`${cur} is not a folder`), { code: 'ENOTDIR' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      missing.push(cur);
      const up = dirname(cur);
      if (up === cur) break;
      cur = up;
    }
  }
  for (const d of missing.reverse()) {
    try {
      await fs.mkdir(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** Rethrows a file-system error of writing `path` as a {@link UserError} when it is the user's to fix. */
export function asWriteError(path: string, e: unknown, what?: string): unknown {
  if (e instanceof UserError) return e;
  const msg = writeErrorMessage(path, e, what);
  return msg === null ? e : new UserError(msg);
}

/**
 * Checks, before any work, that a file can be written at `path`: not a folder, not a device
 * or pipe, its folder creatable and writable. Creates missing folders (the write would).
 */
export async function checkWritable(path: string, what = 'output file'): Promise<void> {
  const abs = resolve(path);
  try {
    const st = await fs.stat(abs);
    if (st.isDirectory()) throw new UserError(`${what} ${abs} is a folder; give a file path`);
    if (!st.isFile()) throw new UserError(`${what} ${abs} is not a regular file (a device, pipe or socket); give a file path`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw asWriteError(abs, e, what);
  }
  const dir = dirname(abs);
  const probe = join(dir, `.${basename(abs)}.${randomBytes(4).toString('hex')}.probe`);
  try {
    await makeDirs(dir);
    const fh = await fs.open(probe, 'wx');
    await fh.close();
  } catch (e) {
    throw asWriteError(abs, e, what);
  } finally {
    await fs.rm(probe, { force: true }).catch(() => undefined);
  }
}
