// Packages the extension as a platform-specific VSIX: production bundles, then
// `vsce package --target <platform>`. The .vscodeignore allow-list decides what goes in; it
// is written for linux-x64, and for another target this script writes a copy whose
// onnxruntime binary line names that target's folder, so each VSIX carries one platform's
// native binaries (about 20 MB instead of 110 MB with every platform).
//
//   npm run package                                  → parallax-linux-x64-<version>.vsix
//   node scripts/package.mjs --target darwin-arm64 --out dist-vsix/
//   node scripts/package.mjs --skip-build            (reuse dist/ as it is)
//
// vsce runs from the project's own devDependencies and needs no network: dependencies come
// from `npm list` of the installed tree, filtered by the allow-list. Prints the VSIX path.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** vsce targets → onnxruntime-node's binary folder (bin/napi-v6/<platform>/<arch>). */
const TARGETS = {
  'linux-x64': 'linux/x64',
  'linux-arm64': 'linux/arm64',
  'darwin-arm64': 'darwin/arm64',
  'win32-x64': 'win32/x64',
  'win32-arm64': 'win32/arm64',
};

function parseArgs(argv) {
  const opts = { target: 'linux-x64', out: null, build: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--target') opts.target = argv[++i];
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--skip-build') opts.build = false;
    else throw new Error(`unknown argument ${a}; use --target <platform>, --out <file or folder>, --skip-build`);
  }
  if (!(opts.target in TARGETS)) throw new Error(`unknown --target ${opts.target}; use one of ${Object.keys(TARGETS).join(', ')}`);
  return opts;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `status ${r.status}`})`);
}

/**
 * Builds the production bundles and packages them. Returns the VSIX path.
 * @param {{ target?: string, out?: string | null, build?: boolean }} options
 */
export function packageExtension(options = {}) {
  const opts = { target: 'linux-x64', out: null, build: true, ...options };
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  let out = opts.out ? resolve(opts.out) : join(root, `${manifest.name}-${opts.target}-${manifest.version}.vsix`);
  if (opts.out && (opts.out.endsWith('/') || (existsSync(out) && statSync(out).isDirectory()))) {
    out = join(out, `${manifest.name}-${opts.target}-${manifest.version}.vsix`);
  }
  mkdirSync(dirname(out), { recursive: true });

  if (opts.build) run(process.execPath, [join(root, 'scripts', 'build.mjs'), '--production']);
  for (const f of ['dist/extension.js', 'dist/runner.js', 'dist/device-worker.js', 'dist/import-worker.js']) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing; run \`node scripts/build.mjs --production\``);
  }
  const ortBin = join(root, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', ...TARGETS[opts.target].split('/'));
  if (!existsSync(ortBin)) throw new Error(`onnxruntime-node has no binaries for ${opts.target} (${ortBin})`);

  // One ignore file per target: the allow-list with this target's binary folder.
  const allowList = readFileSync(join(root, '.vscodeignore'), 'utf8');
  const binLine = '!node_modules/onnxruntime-node/bin/napi-v6/linux/x64/**';
  if (!allowList.includes(binLine)) throw new Error(`.vscodeignore lost its line ${binLine}; scripts/package.mjs rewrites it per target`);
  const scratch = mkdtempSync(join(tmpdir(), 'parallax-package-'));
  const ignoreFile = join(scratch, 'vscodeignore');
  writeFileSync(ignoreFile, allowList.replace(binLine, `!node_modules/onnxruntime-node/bin/napi-v6/${TARGETS[opts.target]}/**`));

  try {
    rmSync(out, { force: true });
    run(process.execPath, [
      join(root, 'node_modules', '@vscode', 'vsce', 'vsce'),
      'package',
      '--target', opts.target,
      '--out', out,
      '--ignoreFile', ignoreFile,
      // The project has no public repository URL yet: README links stay relative rather
      // than pointing at a guessed host. Add `repository` to package.json once there is one.
      '--allow-missing-repository',
      '--no-rewrite-relative-links',
    ]);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const out = packageExtension(parseArgs(process.argv.slice(2)));
    process.stdout.write(`${out} (${(statSync(out).size / 2 ** 20).toFixed(1)} MiB)\n`);
  } catch (e) {
    process.stderr.write(`package: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
