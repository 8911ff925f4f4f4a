/**
 * Finds a file the build puts beside the code (dist/runner.js, webview/dist/timeline.js)
 * from a module's folder. The same module runs from dist/ when bundled, from src/… under
 * the tests, and from an installed extension's folder, so the search walks up a few levels.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The first of `candidates` (paths relative to a folder) that exists in `from` or one of
 * its ancestors, nearest folder first; null when none does within six levels.
 */
export function findPackageFile(from: string, candidates: readonly string[]): string | null {
  let dir = from;
  for (let i = 0; i < 6; i++) {
    for (const rel of candidates) {
      const candidate = join(dir, rel);
      if (existsSync(candidate)) return candidate;
    }
    dir = dirname(dir);
  }
  return null;
}
