/**
 * What "Open Trace…" is given, turned into the files to read: one Parallax trace, or the
 * PyTorch profiler traces of a job's ranks (several files selected together, or a folder
 * holding them), which are imported together into one trace with a lane per rank.
 *
 * Plain Node (no `vscode`), so that it is unit-tested under Node.
 */
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../common/errors';

/** A PyTorch profiler trace file name (plain or gzip JSON), not a trace Parallax wrote. */
export function isRankFileName(name: string): boolean {
  return /\.json(\.gz)?$/i.test(name) && !/\.parallax\.json$/i.test(name);
}

/**
 * The files behind the given paths: a folder stands for the PyTorch profiler traces directly
 * in it, in name order (numbers compared as numbers: rank2 before rank10); a file for itself.
 * A folder without any is a user error naming it.
 */
export async function expandTracePaths(paths: readonly string[]): Promise<{ files: string[]; folder: string | null }> {
  const files: string[] = [];
  let folder: string | null = null;
  for (const p of paths) {
    const st = await fs.stat(p).catch(() => null);
    if (!st?.isDirectory()) {
      files.push(p);
      continue;
    }
    const names = (await fs.readdir(p, { withFileTypes: true }))
      .filter((d) => d.isFile() && isRankFileName(d.name))
      .map((d) => d.name)
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    if (names.length === 0) throw new UserError(`${p}: no PyTorch profiler traces (.json or .json.gz) in this folder; pick the folder that holds the rank files`);
    files.push(...names.map((n) => join(p, n)));
    folder ??= p;
  }
  return { files, folder };
}

/**
 * The name of the trace an import writes: `<file>.parallax.json` for one file,
 * `<folder>.parallax.json` for a folder, `<first file>-<n>-ranks.parallax.json` for several files.
 */
export function importedTraceName(files: readonly string[], folder: string | null): string {
  const stem = (p: string): string => basename(p).replace(/\.gz$/i, '').replace(/\.json$/i, '');
  if (folder !== null) return `${basename(folder)}.parallax.json`;
  if (files.length === 1) return `${stem(files[0]!)}.parallax.json`;
  return `${stem(files[0]!)}-${files.length}-ranks.parallax.json`;
}
