/**
 * Entry of the timeline bundle (webview/dist/timeline.js + timeline.css): creates the host
 * channel and the app, installs the test hook, and loads the embedded traces of a standalone
 * report. The parts live in app.ts (state and messages), page.ts (the page's DOM) and
 * test-hook.ts (`window.__parallax`).
 */
import './timeline.css';
import { App } from './app';
import { createHost } from './host';
import { PROTOCOL_VERSION } from './protocol';
import { createHook } from './test-hook';

function boot(): void {
  const host = createHost();
  document.documentElement.classList.add(host.kind === 'vscode' ? 'px-in-vscode' : 'px-standalone');
  const app = new App(host);
  host.listen((d) => void app.handle(d));
  Object.defineProperty(window, '__parallax', { value: Object.freeze(createHook(app)), configurable: false, writable: false });
  if (host.kind === 'standalone') app.loadEmbedded();
  host.post({ type: 'ready', protocol: PROTOCOL_VERSION });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
