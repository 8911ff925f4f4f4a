/**
 * The one place webview HTML is made (vscode-extension-samples' webview-sample pattern):
 *  - a Content Security Policy that starts at `default-src 'none'` and lets in only the
 *    bundle's script (by a per-page nonce), its stylesheet and images from the extension's
 *    own resources (`webview.cspSource`), data: images, and workers from blob: URLs (the
 *    timeline prepares big traces in a blob worker; see webview/README.md);
 *  - assets by `asWebviewUri`, from `webview/dist` only, which is also the panel's only
 *    `localResourceRoots` entry: the view can load nothing else from disk;
 *  - no inline script, no inline event handler, no inline style: every dynamic string is
 *    HTML-escaped, and names from traces never reach this HTML (the view shows them as text).
 *
 * The string builders are pure (no `vscode` at run time; the import below is type-only), so
 * test/unit/extension-webview-html.test.ts checks them under plain Node.
 */
import { randomBytes } from 'node:crypto';
import type * as vscode from 'vscode';

/**
 * View type of the timeline panel. The manifest's `onWebviewPanel:parallax.timeline`
 * activation event names it, so that VS Code activates the extension to restore the panel.
 */
export const TIMELINE_VIEW_TYPE = 'parallax.timeline';

/** Folder of the timeline bundle inside the extension (shipped by .vscodeignore). */
export const WEBVIEW_DIST = ['webview', 'dist'] as const;
export const TIMELINE_JS = 'timeline.js';
export const TIMELINE_CSS = 'timeline.css';

/** View type of the sweep panel, and its bundle (webview/src/sweep/, built beside the timeline's). */
export const SWEEP_VIEW_TYPE = 'parallax.sweep';
export const SWEEP_JS = 'sweep.js';
export const SWEEP_CSS = 'sweep.css';

/**
 * A fresh nonce for one page: 128 random bits, hex (CSP's base64-value grammar accepts it,
 * and it needs no escaping in an attribute).
 */
export function makeNonce(): string {
  return randomBytes(16).toString('hex');
}

/** What the pure builders need: all strings, so tests can give any value. */
export interface PageParts {
  /** `webview.cspSource`: the origin of the extension's resources inside the webview. */
  cspSource: string;
  /** `asWebviewUri` of webview/dist/timeline.css. */
  styleUri: string;
}

export interface TimelinePageParts extends PageParts {
  /** From {@link makeNonce}; a new one for every page. */
  nonce: string;
  /** `asWebviewUri` of webview/dist/timeline.js. */
  scriptUri: string;
  /** Document title (the panel's tab title comes from the panel, not from here). */
  title?: string;
}

export interface ErrorPageParts extends PageParts {
  title: string;
  /** One line saying what went wrong, naming the file, and what to do. */
  message: string;
}

/**
 * The timeline page's policy. `worker-src blob:` is for the view's preparation worker (the
 * view falls back to the main thread without it, but big traces then freeze the page while
 * they are sorted). No 'unsafe-inline', no 'unsafe-eval': the bundle needs neither
 * (webview/src/shims/typebox-compiler.ts replaces TypeBox's `new Function`).
 */
export function timelineCsp(cspSource: string, nonce: string): string {
  checkNonce(nonce);
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${cspSource}`,
    `img-src ${cspSource} data:`,
    `font-src ${cspSource}`,
    'worker-src blob:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

/** The error page's policy: the stylesheet and nothing else (it has no script at all). */
export function errorCsp(cspSource: string): string {
  return ["default-src 'none'", `style-src ${cspSource}`, `font-src ${cspSource}`, "base-uri 'none'", "form-action 'none'"].join('; ');
}

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function checkNonce(nonce: string): void {
  // A nonce with a quote or a space would end the CSP source expression early.
  if (!/^[A-Za-z0-9+/_-]{16,}={0,2}$/.test(nonce)) throw new Error('webview nonce must be at least 16 base64 characters');
}

function head(csp: string, styleUri: string, title: string): string[] {
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<link rel="stylesheet" href="${escapeHtml(styleUri)}">`,
    `<title>${escapeHtml(title)}</title>`,
    '</head>',
  ];
}

/**
 * The timeline page: the stylesheet, an empty body and the bundle's script, which builds
 * the page and posts `ready` (webview/src/main.ts).
 */
export function renderTimelineHtml(p: TimelinePageParts): string {
  return [
    ...head(timelineCsp(p.cspSource, p.nonce), p.styleUri, p.title ?? 'Parallax timeline'),
    '<body>',
    `<script nonce="${p.nonce}" src="${escapeHtml(p.scriptUri)}"></script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * A page with one error line and no script, for a panel that cannot show its trace (e.g. a
 * restored panel whose trace file was deleted). It uses the timeline's stylesheet, so it
 * follows the theme like the timeline does.
 */
export function renderErrorHtml(p: ErrorPageParts): string {
  return [
    ...head(errorCsp(p.cspSource), p.styleUri, p.title),
    '<body>',
    '<div class="px-app">',
    `<header class="px-header"><h1 class="px-title" dir="auto">${escapeHtml(p.title)}</h1></header>`,
    `<div class="px-error" role="alert">${escapeHtml(p.message)}</div>`,
    '</div>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * `vscode.Uri.joinPath` without a run-time `vscode` import (which would tie this module to
 * the extension host): a child of `base` through `Uri.with`.
 */
function child(base: vscode.Uri, ...segments: string[]): vscode.Uri {
  return base.with({ path: `${base.path.replace(/\/+$/, '')}/${segments.join('/')}` });
}

/** The bundle folder, webview/dist, inside the extension. */
export function webviewDistUri(extensionUri: vscode.Uri): vscode.Uri {
  return child(extensionUri, ...WEBVIEW_DIST);
}

/**
 * Options for a webview that shows the timeline: scripts on, resources from webview/dist
 * only, no command URIs (the view talks to the extension through messages only).
 */
export function timelineWebviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return { enableScripts: true, enableCommandUris: false, localResourceRoots: [webviewDistUri(extensionUri)] };
}

/** The timeline page for a webview, with a fresh nonce. */
export function timelineHtml(webview: vscode.Webview, extensionUri: vscode.Uri, title?: string): string {
  const dist = webviewDistUri(extensionUri);
  return renderTimelineHtml({
    cspSource: webview.cspSource,
    nonce: makeNonce(),
    scriptUri: webview.asWebviewUri(child(dist, TIMELINE_JS)).toString(),
    styleUri: webview.asWebviewUri(child(dist, TIMELINE_CSS)).toString(),
    ...(title !== undefined ? { title } : {}),
  });
}

/**
 * The sweep panel's page: the timeline page's policy and layout with the sweep bundle
 * (webview/dist/sweep.js + sweep.css), with a fresh nonce.
 */
export function sweepHtml(webview: vscode.Webview, extensionUri: vscode.Uri, title: string): string {
  const dist = webviewDistUri(extensionUri);
  return renderTimelineHtml({
    cspSource: webview.cspSource,
    nonce: makeNonce(),
    scriptUri: webview.asWebviewUri(child(dist, SWEEP_JS)).toString(),
    styleUri: webview.asWebviewUri(child(dist, SWEEP_CSS)).toString(),
    title,
  });
}

/** The error page for a webview. */
export function errorHtml(webview: vscode.Webview, extensionUri: vscode.Uri, title: string, message: string): string {
  return renderErrorHtml({
    cspSource: webview.cspSource,
    styleUri: webview.asWebviewUri(child(webviewDistUri(extensionUri), TIMELINE_CSS)).toString(),
    title,
    message,
  });
}
