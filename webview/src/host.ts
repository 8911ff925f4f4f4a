/**
 * The view's side of the host channel. Inside a VS Code webview the host is the extension
 * (`acquireVsCodeApi().postMessage` out, window `message` events in). In the standalone
 * report there is no host: outgoing messages are kept (the test hook shows them) and
 * announced as a `parallax:post` event on window, and incoming messages are only taken
 * from the page itself (`event.source === window`), never from a frame that embeds it.
 */
import type { FromWebview } from './protocol';

export interface Host<M = FromWebview> {
  readonly kind: 'vscode' | 'standalone';
  post(message: M): void;
  listen(onMessage: (data: unknown) => void): void;
  getState(): unknown;
  setState(state: unknown): void;
  /** Messages posted so far (the last 200). */
  readonly sent: M[];
}

/** The channel; `M` is the protocol's view → host message type (the timeline's by default). */
export function createHost<M = FromWebview>(): Host<M> {
  const sent: M[] = [];
  const keep = (m: M): void => {
    sent.push(m);
    if (sent.length > 200) sent.shift();
  };
  if (typeof acquireVsCodeApi === 'function') {
    const api = acquireVsCodeApi();
    return {
      kind: 'vscode',
      sent,
      post(m) {
        keep(m);
        api.postMessage(m);
      },
      listen(on) {
        window.addEventListener('message', (e: MessageEvent) => on(e.data));
      },
      getState: () => api.getState(),
      setState: (s) => api.setState(s),
    };
  }
  let state: unknown = undefined;
  return {
    kind: 'standalone',
    sent,
    post(m) {
      keep(m);
      window.dispatchEvent(new CustomEvent('parallax:post', { detail: m }));
    },
    listen(on) {
      window.addEventListener('message', (e: MessageEvent) => {
        if (e.source === window) on(e.data);
      });
    },
    getState: () => state,
    setState: (s) => {
      state = s;
    },
  };
}
