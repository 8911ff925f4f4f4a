/** The bundled preparation worker as source text (scripts/build-webview.mjs inlines it). */
declare module 'parallax:prep-worker' {
  const source: string;
  export default source;
}

/** Present inside a VS Code webview. */
declare function acquireVsCodeApi(): {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
};
