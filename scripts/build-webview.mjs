// Bundles the timeline view: webview/src/main.ts → webview/dist/timeline.js + timeline.css
// (one IIFE for the browser, CSS imported by main.ts lands next to it), and the sweep panel:
// webview/src/sweep/main.ts → webview/dist/sweep.js + sweep.css.
//   node scripts/build-webview.mjs [--watch] [--production]
// The preparation worker (webview/src/prep-worker.ts) is bundled on its own and inlined into
// timeline.js as a string (the virtual module `parallax:prep-worker`), so the page can start
// it from a blob: one file to ship, no extra URL for a webview's CSP to allow.
// `@sinclair/typebox/compiler` is replaced by a CSP-safe shim (its checker is built with
// `new Function`, which a strict Content Security Policy refuses).
import * as esbuild from 'esbuild';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');
const outdir = join(root, 'webview', 'dist');
const target = ['chrome110', 'firefox115', 'safari16'];

/** Replaces TypeBox's eval-based compiler with the interpreting shim. */
const typeboxShim = {
  name: 'typebox-compiler-shim',
  setup(build) {
    build.onResolve({ filter: /^@sinclair\/typebox\/compiler$/ }, () => ({
      path: join(root, 'webview', 'src', 'shims', 'typebox-compiler.ts'),
    }));
  },
};

/** `import src from 'parallax:prep-worker'`: the bundled worker, as a string. */
const inlineWorker = {
  name: 'inline-prep-worker',
  setup(build) {
    build.onResolve({ filter: /^parallax:prep-worker$/ }, () => ({ path: 'prep-worker', namespace: 'parallax-worker' }));
    build.onLoad({ filter: /.*/, namespace: 'parallax-worker' }, async () => {
      const r = await esbuild.build({
        entryPoints: [join(root, 'webview', 'src', 'prep-worker.ts')],
        bundle: true,
        write: false,
        format: 'iife',
        platform: 'browser',
        target,
        minify: production,
        legalComments: 'none',
        metafile: true,
        logLevel: 'silent',
        plugins: [typeboxShim],
      });
      return {
        contents: `export default ${JSON.stringify(r.outputFiles[0].text)};`,
        loader: 'js',
        watchFiles: Object.keys(r.metafile.inputs).map((p) => resolve(root, p)),
      };
    });
  },
};

mkdirSync(outdir, { recursive: true });
// A production build has no source maps; do not leave a development build's behind.
if (production) for (const f of ['timeline.js.map', 'timeline.css.map', 'sweep.js.map', 'sweep.css.map']) rmSync(join(outdir, f), { force: true });
const ctx = await esbuild.context({
  absWorkingDir: root,
  entryPoints: { timeline: join(root, 'webview', 'src', 'main.ts'), sweep: join(root, 'webview', 'src', 'sweep', 'main.ts') },
  outdir,
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target,
  minify: production,
  sourcemap: production ? false : 'linked',
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [typeboxShim, inlineWorker],
});

if (watch) {
  await ctx.watch();
  console.log('webview: watching for changes…');
} else {
  await ctx.rebuild();
  await ctx.dispose();
}
