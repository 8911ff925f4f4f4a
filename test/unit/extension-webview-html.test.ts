/**
 * The webview HTML helper (src/extension/webview-html.ts): the timeline page and the error
 * page, their Content Security Policy, nonce use, escaping and webview options. Pure string
 * work; runs without VS Code (the module's `vscode` import is type-only).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type * as vscode from 'vscode';
import {
  errorCsp,
  makeNonce,
  renderErrorHtml,
  renderTimelineHtml,
  TIMELINE_VIEW_TYPE,
  timelineCsp,
  timelineHtml,
  timelineWebviewOptions,
  webviewDistUri,
} from '../../src/extension/webview-html';

const CSP_SOURCE = 'https://*.vscode-cdn.net';
const NONCE = '0123456789abcdef0123456789abcdef';
const SCRIPT = 'https://file+.vscode-resource.vscode-cdn.net/ext/webview/dist/timeline.js';
const STYLE = 'https://file+.vscode-resource.vscode-cdn.net/ext/webview/dist/timeline.css';

/** The policy a page declares in its <meta http-equiv="Content-Security-Policy">, as directive → sources. */
function policyOf(html: string): Map<string, string[]> {
  const metas = [...html.matchAll(/<meta http-equiv="Content-Security-Policy" content="([^"]*)">/g)];
  assert.equal(metas.length, 1, 'exactly one CSP meta tag');
  const text = metas[0]![1]!.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&amp;/g, '&');
  const out = new Map<string, string[]>();
  for (const part of text.split(';')) {
    const [name, ...sources] = part.trim().split(/\s+/);
    if (name) out.set(name, sources);
  }
  return out;
}

function timelinePage(overrides: Partial<Parameters<typeof renderTimelineHtml>[0]> = {}): string {
  return renderTimelineHtml({ cspSource: CSP_SOURCE, nonce: NONCE, scriptUri: SCRIPT, styleUri: STYLE, ...overrides });
}

/** A stand-in for vscode.Uri with the two members the helper uses (`path`, `with`). */
function fakeUri(path: string): vscode.Uri {
  const u = {
    scheme: 'file',
    path,
    with(change: { path?: string }) {
      return fakeUri(change.path ?? path);
    },
    toString() {
      return `file://${path}`;
    },
  };
  return u as unknown as vscode.Uri;
}

describe('webview HTML helper', () => {
  it('timeline page policy starts at default-src none and lets in only the nonce script, own styles, data images and blob workers', () => {
    const csp = policyOf(timelinePage());
    assert.equal([...csp.keys()][0], 'default-src', 'default-src comes first');
    assert.deepEqual(csp.get('default-src'), ["'none'"]);
    assert.deepEqual(csp.get('script-src'), [`'nonce-${NONCE}'`]);
    assert.deepEqual(csp.get('style-src'), [CSP_SOURCE]);
    assert.deepEqual(csp.get('img-src'), [CSP_SOURCE, 'data:']);
    assert.deepEqual(csp.get('worker-src'), ['blob:']);
    assert.deepEqual(csp.get('base-uri'), ["'none'"]);
    for (const [name, sources] of csp) {
      for (const bad of ["'unsafe-inline'", "'unsafe-eval'", "'wasm-unsafe-eval'", '*', 'https:', 'http:']) {
        assert.ok(!sources.includes(bad), `${name} must not allow ${bad}`);
      }
    }
    assert.equal(timelineCsp(CSP_SOURCE, NONCE), [...csp].map(([n, s]) => [n, ...s].join(' ')).join('; '));
  });

  it('loads the bundle by asWebviewUri with the nonce, and has no inline script, handler or style', () => {
    const html = timelinePage();
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.equal(scripts.length, 1, 'one script element');
    assert.equal(scripts[0]![1], ` nonce="${NONCE}" src="${SCRIPT}"`);
    assert.equal(scripts[0]![2], '', 'the script element has no inline code');
    assert.ok(html.includes(`<link rel="stylesheet" href="${STYLE}">`));
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no inline event handlers');
    assert.doesNotMatch(html, /<style\b|\sstyle\s*=/i, 'no inline styles');
    assert.doesNotMatch(html, /javascript:/i);
    assert.match(html, /^<!doctype html>\n<html lang="en">/);
  });

  it('escapes the URIs and title it is given, and refuses a nonce that could break the policy', () => {
    const html = timelinePage({ scriptUri: 'https://x/a"><script>alert(1)</script>.js', title: '</title><script>alert(2)</script>' });
    assert.equal([...html.matchAll(/<script\b/g)].length, 1, 'no injected script element');
    assert.ok(html.includes('a&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;.js'));
    assert.ok(html.includes('<title>&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt;</title>'));
    for (const bad of ['', 'short', "abcdefghijklmnop' 'unsafe-inline", 'abcdefghijklmnop"x']) {
      assert.throws(() => timelinePage({ nonce: bad }), /nonce/);
    }
  });

  it('makes a new 128-bit nonce for every page', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const n = makeNonce();
      assert.match(n, /^[0-9a-f]{32}$/);
      seen.add(n);
    }
    assert.equal(seen.size, 100);
    const webview = {
      cspSource: CSP_SOURCE,
      asWebviewUri: (u: vscode.Uri) => fakeUri(`/resource${u.path}`),
    } as unknown as vscode.Webview;
    const a = timelineHtml(webview, fakeUri('/ext'));
    const b = timelineHtml(webview, fakeUri('/ext'));
    const nonceOf = (h: string): string => /script-src 'nonce-([^']+)'/.exec(h.replace(/&#39;/g, "'"))![1]!;
    assert.notEqual(nonceOf(a), nonceOf(b));
    assert.ok(a.includes(`<script nonce="${nonceOf(a)}" src="file:///resource/ext/webview/dist/timeline.js"></script>`), a);
    assert.ok(a.includes('href="file:///resource/ext/webview/dist/timeline.css"'));
  });

  it('error page shows its message as text and runs no script at all', () => {
    const html = renderErrorHtml({
      cspSource: CSP_SOURCE,
      styleUri: STYLE,
      title: 'Parallax: x',
      message: '/w/runs/<img src=x onerror=alert(1)>.parallax.json: not valid JSON',
    });
    const csp = policyOf(html);
    assert.deepEqual(csp.get('default-src'), ["'none'"]);
    assert.equal(csp.get('script-src'), undefined, 'no script-src: default-src none forbids every script');
    assert.equal(errorCsp(CSP_SOURCE), [...csp].map(([n, s]) => [n, ...s].join(' ')).join('; '));
    assert.doesNotMatch(html, /<script\b|<img\b/);
    assert.ok(html.includes('<div class="px-error" role="alert">/w/runs/&lt;img src=x onerror=alert(1)&gt;.parallax.json: not valid JSON</div>'));
  });

  it('limits the webview to the bundle folder, without command links', () => {
    const opts = timelineWebviewOptions(fakeUri('/home/u/.vscode/extensions/parallax/'));
    assert.equal(opts.enableScripts, true);
    assert.equal(opts.enableCommandUris, false);
    assert.deepEqual(
      opts.localResourceRoots?.map((u) => u.path),
      ['/home/u/.vscode/extensions/parallax/webview/dist'],
    );
    assert.equal(webviewDistUri(fakeUri('/ext')).path, '/ext/webview/dist');
  });

  it('the manifest activates the extension to restore the panel, and the VSIX ships the bundle', () => {
    const root = join(__dirname, '..', '..');
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { activationEvents: string[] };
    assert.ok(manifest.activationEvents.includes(`onWebviewPanel:${TIMELINE_VIEW_TYPE}`), JSON.stringify(manifest.activationEvents));
    const ignore = readFileSync(join(root, '.vscodeignore'), 'utf8').split('\n').map((l) => l.trim());
    assert.ok(ignore.some((l) => /^!webview\/dist\/\*\*\/\*\.\{[^}]*\bjs\b[^}]*\bcss\b/.test(l)), 'webview/dist js and css are let into the VSIX');
  });
});
