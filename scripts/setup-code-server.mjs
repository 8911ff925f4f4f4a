// Installs code-server (the real VS Code workbench and extension host, served to a browser)
// for the end-to-end tests. code-server's own install scripts download prebuilt binaries from GitHub, which
// this network cannot reach, so the packages are installed with --ignore-scripts and their
// native modules are rebuilt from source against the local Node headers.
//
//   node scripts/setup-code-server.mjs            install unless already there; prints the binary
//   node scripts/setup-code-server.mjs --check    exit 0 when installed, 1 when not (installs nothing)
//   node scripts/setup-code-server.mjs --force    reinstall
//
// The install goes to $PARALLAX_CODE_SERVER_DIR, default <repo>/.cache/code-server
// (git-ignored). It is built in a scratch folder beside it and renamed into place, and a stamp
// file records the version and recipe, so an interrupted install never looks complete and a
// change of version reinstalls. Needs (Debian): libkrb5-dev libsecret-1-dev libx11-dev
// libxkbfile-dev ripgrep build-essential python3; run as root, the script apt-installs the
// missing ones, otherwise it names them and stops. test/e2e/vscode/harness.ts holds the same
// path logic; keep the two in step.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, copyFileSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** code-server 4.100.x is the last line built for Node 20 (newer ones want Node 22 or 24). */
export const CODE_SERVER_VERSION = '4.100.3';
/** Bump when the steps below change, so existing installs are redone. */
const RECIPE = 1;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function codeServerDir() {
  return process.env.PARALLAX_CODE_SERVER_DIR ? resolve(process.env.PARALLAX_CODE_SERVER_DIR) : join(root, '.cache', 'code-server');
}

/** The code-server launcher inside an install folder. */
export function codeServerBin(dir = codeServerDir()) {
  return join(dir, 'node_modules', '.bin', 'code-server');
}

const stampFile = (dir) => join(dir, '.parallax-code-server.json');
const wantedStamp = () => ({ version: CODE_SERVER_VERSION, recipe: RECIPE, node: process.versions.modules });

/** True when `dir` holds a complete install of this version and recipe for this Node ABI. */
export function isInstalled(dir = codeServerDir()) {
  try {
    const s = JSON.parse(readFileSync(stampFile(dir), 'utf8'));
    const w = wantedStamp();
    return s.version === w.version && s.recipe === w.recipe && s.node === w.node && existsSync(codeServerBin(dir));
  } catch {
    return false;
  }
}

const APT_PACKAGES = ['libkrb5-dev', 'libsecret-1-dev', 'libx11-dev', 'libxkbfile-dev', 'ripgrep', 'build-essential', 'python3'];

function log(msg) {
  process.stderr.write(`setup-code-server: ${msg}\n`);
}

function run(cmd, args, cwd, env = process.env) {
  const started = Date.now();
  log(`${cmd} ${args.join(' ')}${cwd ? `   (in ${cwd})` : ''}`);
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-40).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `status ${r.status}`})${out ? `:\n${out}` : ''}`);
  }
  log(`  done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return r.stdout;
}

function dpkgInstalled(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.startsWith('install ok installed');
}

function ensureAptPackages() {
  if (process.platform !== 'linux' || spawnSync('dpkg-query', ['--version']).status !== 0) {
    log(`not a Debian-like system: make sure these (or their equivalents) are installed: ${APT_PACKAGES.join(' ')}`);
    return;
  }
  const missing = APT_PACKAGES.filter((p) => !dpkgInstalled(p));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing system packages; install them first:\n  sudo apt-get install -y ${missing.join(' ')}`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], undefined, env);
  run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', ...missing], undefined, env);
}

/**
 * Environment for the npm steps. node-gyp would download Node's headers from nodejs.org;
 * point it at the headers installed with Node instead (Debian/NodeSource and the official
 * tarballs put them in <prefix>/include/node). Native builds use both cores.
 */
function buildEnv(toolsBin) {
  const env = {
    ...process.env,
    JOBS: 'max',
    // Some native modules' build scripts call `npx node-gyp@<version>`; let npx fetch it from
    // the registry without asking (there is no terminal to answer).
    npm_config_yes: 'true',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    npm_config_update_notifier: 'false',
  };
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node.h'))) env.npm_config_nodedir = prefix;
  else log(`no Node headers under ${prefix}/include/node: node-gyp will try to download them`);
  env.PATH = `${toolsBin}:${env.PATH ?? ''}`;
  return env;
}

function install(dest) {
  ensureAptPackages();
  const rg = spawnSync('sh', ['-c', 'command -v rg'], { encoding: 'utf8' }).stdout.trim();
  if (!rg) throw new Error('ripgrep (rg) not found on PATH; install it (apt-get install ripgrep)');

  const parent = dirname(dest);
  mkdirSync(parent, { recursive: true });
  const scratch = `${dest}.partial-${process.pid}`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  try {
    // node-gyp as a local tool rather than `npm i -g`: the machine's global npm stays as it was.
    const tools = join(scratch, '.tools');
    const env0 = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' };
    run('npm', ['install', '--prefix', tools, '--no-save', '--loglevel=error', 'node-gyp'], undefined, env0);
    const env = buildEnv(join(tools, 'node_modules', '.bin'));

    run('npm', ['install', '--prefix', scratch, '--loglevel=error', '--ignore-scripts', `code-server@${CODE_SERVER_VERSION}`], undefined, env);
    const cs = join(scratch, 'node_modules', 'code-server');
    run('npm', ['rebuild', 'argon2', '--build-from-source', '--loglevel=error'], scratch, env);

    const vscode = join(cs, 'lib', 'vscode');
    run('npm', ['install', '--omit=dev', '--ignore-scripts', '--loglevel=error'], vscode, env);
    const rgBin = join(vscode, 'node_modules', '@vscode', 'ripgrep', 'bin');
    mkdirSync(rgBin, { recursive: true });
    copyFileSync(rg, join(rgBin, 'rg'));
    chmodSync(join(rgBin, 'rg'), 0o755);
    run(
      'npm',
      ['rebuild', '--loglevel=error', 'node-pty', '@vscode/spdlog', '@parcel/watcher', 'native-watchdog', '@vscode/deviceid', 'kerberos'],
      vscode,
      env,
    );
    const link = (target, path) => {
      rmSync(path, { force: true });
      symlinkSync(target, path);
    };
    link('node_modules', join(vscode, 'node_modules.asar'));
    link('code-linux.sh', join(vscode, 'bin', 'remote-cli', 'code-server'));
    link('browser-linux.sh', join(vscode, 'bin', 'helpers', 'browser.sh'));
    run('npm', ['install', '--omit=dev', '--ignore-scripts', '--loglevel=error'], join(vscode, 'extensions'), env);

    rmSync(tools, { recursive: true, force: true });
    run(codeServerBin(scratch), ['--version'], undefined, env);
    writeFileSync(stampFile(scratch), `${JSON.stringify({ ...wantedStamp(), installedAt: new Date().toISOString() })}\n`);
    rmSync(dest, { recursive: true, force: true });
    renameSync(scratch, dest);
  } catch (e) {
    rmSync(scratch, { recursive: true, force: true });
    throw e;
  }
}

function main() {
  const args = process.argv.slice(2);
  const dir = codeServerDir();
  if (args.includes('--check')) process.exit(isInstalled(dir) ? 0 : 1);
  if (!args.includes('--force') && isInstalled(dir)) {
    log(`code-server ${CODE_SERVER_VERSION} already installed in ${dir}`);
  } else {
    const started = Date.now();
    log(`installing code-server ${CODE_SERVER_VERSION} into ${dir}`);
    install(dir);
    log(`installed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  process.stdout.write(`${codeServerBin(dir)}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    process.exit(1);
  }
}
