// Bundles every entry point with esbuild. `--watch` rebuilds on change, `--production`
// minifies and drops source maps. Type-checking is `npm run typecheck`, a separate step.
import * as esbuild from 'esbuild';
import { mkdirSync } from 'node:fs';

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

/** Node-side entry points: name in dist/ → source. */
const nodeEntries = {
  cli: 'src/cli/main.ts',
  runner: 'src/runtime/runner/main.ts',
  'device-worker': 'src/runtime/device/worker.ts',
  'import-worker': 'src/profiler/import/import-worker.ts',
  extension: 'src/extension/extension.ts',
};

const common = {
  bundle: true,
  minify: production,
  sourcemap: production ? false : 'linked',
  logLevel: 'warning',
  legalComments: 'none',
};

mkdirSync('dist', { recursive: true });
const contexts = [
  await esbuild.context({
    ...common,
    entryPoints: nodeEntries,
    outdir: 'dist',
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // vscode is provided by the extension host; onnxruntime-node carries native binaries
    // that must be loaded from node_modules, never bundled.
    external: ['vscode', 'onnxruntime-node'],
  }),
];

// The timeline view (webview/) has its own build: browser target, DOM types.
await import('./build-webview.mjs');

if (watch) {
  await Promise.all(contexts.map((c) => c.watch()));
  console.log('watching for changes…');
} else {
  await Promise.all(contexts.map((c) => c.rebuild()));
  await Promise.all(contexts.map((c) => c.dispose()));
}
