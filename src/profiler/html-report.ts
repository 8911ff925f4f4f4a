/**
 * The standalone HTML report: one self-contained file that opens in any browser, with the
 * timeline bundle (webview/dist/timeline.js + timeline.css) and the trace(s) inlined.
 *
 * Safety, since trace names come from models and hosts nobody here controls:
 *  - a strict Content Security Policy in a <meta> tag: `default-src 'none'`, the inline
 *    script and style allowed by their SHA-256 hashes (a static file has no per-response
 *    nonce to offer), workers only from blob: URLs (the view prepares big traces in one);
 *  - trace JSON sits in `<script type="application/json">` data blocks, never executed, with
 *    every `<` written as `\u003c` so no `</script>` or `<!--` inside a name can end the block;
 *  - the view puts every name on screen as text (textContent / canvas fillText).
 * Pure string work: no file system, no DOM (src/cli/html.ts reads the bundle and writes).
 */
import { createHash } from 'node:crypto';
import { TOOL_VERSION } from '../common/version';

export interface HtmlReportOptions {
  /** Shown in the page title and header. */
  title: string;
  /** A second trace to compare against, drawn below the first on an aligned axis. */
  compareJsonText?: string;
  /** Title of the compared run. */
  compareTitle?: string;
  /** webview/dist/timeline.js */
  bundleJs: string;
  /** webview/dist/timeline.css */
  bundleCss: string;
  /** Force a theme; by default the page follows the browser's light/dark preference. */
  theme?: 'light' | 'dark';
}

/** Makes JSON text safe inside a <script type="application/json"> block. */
export function escapeJsonForScript(json: string): string {
  // `<` can only occur inside JSON strings, where \u003c means the same character.
  return json.replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A CSP source expression for inline code: `'sha256-…'`. */
export function cspHash(s: string): string {
  return `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
}

/** Inline code must not close its element early; source-map links would point nowhere. */
function inlineJs(js: string): string {
  return js
    .replace(/\n\/\/# sourceMappingURL=[^\n]*\s*$/, '\n')
    .replace(/<\/(script)/gi, '<\\/$1')
    .replace(/<!--/g, '<\\!--');
}

function inlineCss(css: string): string {
  return css.replace(/\/\*# sourceMappingURL=[^*]*\*\/\s*$/, '').replace(/<\/(style)/gi, '<\\/$1');
}

/** Renders the report. `traceJsonText` is a Parallax trace file's text (it is not re-parsed). */
export function renderHtmlReport(traceJsonText: string, opts: HtmlReportOptions): string {
  const js = inlineJs(opts.bundleJs);
  const css = inlineCss(opts.bundleCss);
  const csp = [
    "default-src 'none'",
    `script-src ${cspHash(js)}`,
    `style-src ${cspHash(css)}`,
    'worker-src blob:',
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const config = escapeJsonForScript(JSON.stringify({ title: opts.title, compareTitle: opts.compareTitle }));
  const parts = [
    '<!doctype html>',
    `<html lang="en"${opts.theme ? ` data-theme="${opts.theme}"` : ''}>`,
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<meta name="generator" content="Parallax ${escapeHtml(TOOL_VERSION)}">`,
    `<title>Parallax · ${escapeHtml(opts.title)}</title>`,
    `<style>${css}</style>`,
    '</head>',
    '<body>',
    `<script type="application/json" id="parallax-config">${config}</script>`,
    `<script type="application/json" id="parallax-trace">${escapeJsonForScript(traceJsonText)}</script>`,
  ];
  if (opts.compareJsonText !== undefined) {
    parts.push(`<script type="application/json" id="parallax-compare">${escapeJsonForScript(opts.compareJsonText)}</script>`);
  }
  parts.push(`<script>${js}</script>`, '</body>', '</html>', '');
  return parts.join('\n');
}
