/**
 * Temp folders for tests that are removed however the test ends: by an `after` hook of the
 * suite (or file) that made them, and, should the hook never run (the file crashed or was
 * cancelled), when the test process exits. scripts/test.mjs fails a run that leaves
 * `parallax-*` entries behind in the temp folder.
 */
import { after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();
process.once('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh `parallax-<name>-XXXXXX` folder in the system temp folder, removed after the
 * enclosing suite (or the file, when called at the top level).
 */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `parallax-${name}-`));
  made.add(dir);
  after(() => removeTempDir(dir));
  return dir;
}

/** A fresh temp folder the caller removes with {@link removeTempDir} (in a `finally`). */
export function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `parallax-${name}-`));
  made.add(dir);
  return dir;
}

/** Removes a folder made by {@link tempDir} or {@link scratchDir}. */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  made.delete(dir);
}
