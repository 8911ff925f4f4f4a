/**
 * The runtime's public API for the CLI and the extension: run a profile plan in a separate
 * runner process and get its summary back.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../common/errors';
import { isFromRunner, type ProfileRequest, type Progress, type ToRunner } from './protocol';
import type { ProfileSummary } from '../profiler/summary';
import type { Finding } from '../profiler/findings';
import type { PlanInfo } from './runner/runner';
import type { DiscoveredDevices } from './device/discovery';

export interface ProfileOptions {
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /**
   * Node.js executable for the runner. Defaults to the current one; inside the VS Code
   * extension host that is Electron running as Node, and a setting can point at a system
   * Node instead (Electron's V8 memory cage has broken native addons that hand out external buffers before).
   */
  nodePath?: string;
}

export interface ProfileOutcome {
  tracePath: string | null;
  summary: ProfileSummary;
  findings: Finding[];
  /** Pipeline: the partition as text (the whole answer of a dry run, whose summary is null). */
  planText?: string;
  planInfo?: PlanInfo;
}

/** Raised when the user cancelled the run. */
export class ProfileCancelled extends Error {
  constructor() {
    super('profiling cancelled');
    this.name = 'ProfileCancelled';
  }
}

/** Finds a bundled entry point (`runner.js`, `device-worker.js`) in the package's dist/. */
export function distFile(name: string): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    for (const candidate of [join(dir, name), join(dir, 'dist', name)]) if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`cannot find ${name}; run \`npm run build\` first`);
}

const LAST_WORDS = 4000;

/**
 * Forks the runner with `nodePath` (default: this process's executable) and keeps the last
 * few thousand characters of its stdout and stderr for error messages.
 */
function forkRunner(nodePath: string | undefined): { child: ChildProcess; lastWords: () => string } {
  const child = fork(distFile('runner.js'), [], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    ...(nodePath ? { execPath: nodePath } : {}),
    // Electron must run as plain Node for the runner.
    env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
  });
  let tail = '';
  const keep = (b: Buffer): void => {
    tail = (tail + b.toString()).slice(-LAST_WORDS);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, lastWords: () => tail.trim() };
}

/**
 * Runs `plan` in a runner process. Resolves with the summary, rejects with a
 * {@link UserError} for bad input, {@link ProfileCancelled} when cancelled, or an Error
 * carrying the runner's last words when it crashed.
 */
export function profile(plan: ProfileRequest, opts: ProfileOptions = {}): Promise<ProfileOutcome> {
  return new Promise((resolvePromise, reject) => {
    const { child, lastWords } = forkRunner(opts.nodePath);
    let settled = false;
    const settle = (f: () => void): void => {
      if (!settled) {
        settled = true;
        f();
      }
    };
    const onAbort = (): void => {
      const m: ToRunner = { type: 'cancel' };
      if (child.connected) child.send(m);
      // The runner stops its workers on cancel; if it is stuck in native code, kill it.
      setTimeout(() => child.kill('SIGKILL'), 800).unref();
      settle(() => reject(new ProfileCancelled()));
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('message', (m: unknown) => {
      if (!isFromRunner(m)) return;
      if (m.type === 'progress') opts.onProgress?.(m.progress);
      else if (m.type === 'result') settle(() =>
          resolvePromise({
            tracePath: m.tracePath,
            summary: m.summary as ProfileSummary,
            findings: m.findings as Finding[],
            ...(m.planText !== undefined ? { planText: m.planText, planInfo: m.planInfo as PlanInfo } : {}),
          }),
        );
      else if (m.type === 'error') {
        if (opts.signal?.aborted) settle(() => reject(new ProfileCancelled()));
        else settle(() => reject(m.user ? new UserError(m.message) : new Error(`the runner failed: ${m.message}`)));
      }
    });
    child.on('error', (e) => settle(() => reject(new Error(`cannot start the runner: ${e.message}`))));
    child.on('exit', (code, sig) => {
      opts.signal?.removeEventListener('abort', onAbort);
      settle(() =>
        reject(new Error(`the runner exited unexpectedly (${sig ?? `code ${code}`}); its last output:\n${lastWords() || '(none)'}`)),
      );
    });
    const start: ToRunner = { type: 'start', request: { ...plan, modelPath: resolve(plan.modelPath) } };
    child.send(start);
  });
}

/** Options for {@link listDevices}. */
export interface ListDevicesOptions {
  signal?: AbortSignal;
  /** Node.js executable for the runner, as in {@link ProfileOptions.nodePath}. */
  nodePath?: string;
  /** Run the WebGPU probe (default true; it takes about a second). */
  probeWebGpu?: boolean;
}

/**
 * Discovers the machine's devices in a runner process, so that the caller never loads
 * ONNX Runtime itself (the VS Code extension host must not: a native crash there would take every extension down). Rejects with
 * {@link ProfileCancelled} when cancelled, or an Error carrying the runner's last words.
 */
export function listDevices(opts: ListDevicesOptions = {}): Promise<DiscoveredDevices> {
  return new Promise((resolvePromise, reject) => {
    const { child, lastWords } = forkRunner(opts.nodePath);
    let settled = false;
    const settle = (f: () => void): void => {
      if (!settled) {
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        f();
      }
    };
    function onAbort(): void {
      child.kill('SIGKILL');
      settle(() => reject(new ProfileCancelled()));
    }
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('message', (m: unknown) => {
      if (!isFromRunner(m)) return;
      if (m.type === 'devices') settle(() => resolvePromise(m.devices as DiscoveredDevices));
      else if (m.type === 'error') settle(() => reject(m.user ? new UserError(m.message) : new Error(`device discovery failed: ${m.message}`)));
    });
    child.on('error', (e) => settle(() => reject(new Error(`cannot start the runner: ${e.message}`))));
    child.on('exit', (code, sig) =>
      settle(() => reject(new Error(`the runner exited unexpectedly (${sig ?? `code ${code}`}); its last output:\n${lastWords() || '(none)'}`))),
    );
    const request: ToRunner = { type: 'devices', probeWebGpu: opts.probeWebGpu ?? true };
    child.send(request);
  });
}
