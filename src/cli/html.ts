/**
 * Writes the standalone HTML report (`parallax … --html out.html`): the trace (and an
 * optional second trace to compare) with the built timeline bundle inlined, see
 * src/profiler/html-report.ts for what makes the file safe to open.
 */
import { promises as fs, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../common/errors';
import { findPackageFile } from '../common/package-file';
import { renderHtmlReport } from '../profiler/html-report';
import { parseTrace, serializeTrace, writeFileAtomic } from '../profiler/trace-io';
import type { Trace } from '../profiler/trace-format';

/**
 * Finds a file of the built webview (webview/dist/NAME) from this module's folder: the
 * bundled CLI lives in dist/, tests run it from src/cli/, the VSIX carries webview/dist/.
 */
export function webviewDistFile(name: string): string {
  const found = findPackageFile(__dirname, [join('webview', 'dist', name)]);
  if (found) return found;
  throw new UserError(`cannot find webview/dist/${name}; run \`npm run build\` (or \`node scripts/build-webview.mjs\`) first`);
}

/** The built timeline bundle. */
export function readWebviewBundle(): { js: string; css: string } {
  return { js: readFileSync(webviewDistFile('timeline.js'), 'utf8'), css: readFileSync(webviewDistFile('timeline.css'), 'utf8') };
}

async function traceText(t: string | Trace): Promise<{ text: string; title: string }> {
  if (typeof t !== 'string') {
    return { text: serializeTrace(t), title: `${t.meta.model?.path ?? 'run'} · ${t.meta.mode}` };
  }
  let text: string;
  try {
    text = await fs.readFile(t, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `${t}: no such file; check the path` : `${t}: cannot be read (${code ?? String(e)})`);
  }
  // Validate before embedding, so a broken file fails here with its name rather than in a browser.
  parseTrace(text, t);
  return { text, title: basename(t).replace(/\.parallax\.json$|\.json$/, '') };
}

export interface WriteHtmlOptions {
  title?: string;
  compareTitle?: string;
  theme?: 'light' | 'dark';
}

/**
 * Writes a self-contained HTML report of `trace` (a trace file path or a trace in memory)
 * to `outHtml`, atomically; with `compare`, the two runs are shown one above the other.
 */
export async function writeHtmlReport(trace: string | Trace, outHtml: string, compare?: string | Trace, opts: WriteHtmlOptions = {}): Promise<void> {
  const bundle = readWebviewBundle();
  const a = await traceText(trace);
  const b = compare !== undefined ? await traceText(compare) : undefined;
  const html = renderHtmlReport(a.text, {
    title: opts.title ?? a.title,
    compareJsonText: b?.text,
    compareTitle: opts.compareTitle ?? b?.title,
    bundleJs: bundle.js,
    bundleCss: bundle.css,
    theme: opts.theme,
  });
  await writeFileAtomic(outHtml, html);
}
