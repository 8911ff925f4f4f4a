/**
 * The runtime's public API for the CLI and the extension: run a profile plan in a separate
 * runner process and get its summary back.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CancelledError, UserError } from '../common/errors';
import { findPackageFile } from '../common/package-file';
import { isFromRunner, type FromRunner, type ProfileRequest, type Progress, type ToRunner } from './protocol';
import type { ProfileSummary } from '../profiler/summary';
import type { Finding } from '../profiler/findings';
import type { PlanInfo } from './runner/runner';
import type { DiscoveredDevices } from './device/discovery';
import { RUNNER_TEMP_ENV, RUNNER_TEMP_PREFIX } from './runner/parent-watch';

/**
 * Raised when the user cancelled the run: the one {@link CancelledError}, under the name
 * callers of this module have used.
 */
export { CancelledError as ProfileCancelled };

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

/** Finds a bundled entry point (`runner.js`, `device-worker.js`) in the package's dist/. */
export function distFile(name: string): string {
  const found = findPackageFile(__dirname, [name, join('dist', name)]);
  if (found) return found;
  throw new Error(`cannot find ${name}; run \`npm run build\` first`);
}

const LAST_WORDS = 4000;

/** Runners' temp folders not yet removed (see {@link forkRunner}). */
const runnerTemps = new Set<string>();
let removeOnExit = false;
const removeRunnerTemp = (dir: string): void => {
  rmSync(dir, { recursive: true, force: true });
  runnerTemps.delete(dir);
};

/**
 * Forks the runner with `nodePath` (default: this process's executable) and keeps the last
 * few thousand characters of its stdout and stderr for error messages.
 *
 * The runner writes stage models, ONNX Runtime profiles and probe models into the temp
 * folder. It removes them itself when it finishes, but a runner killed on cancel cannot, so
 * each runner gets a temp folder of its own (TMPDIR), which this process removes when the
 * runner exits (or when this process exits first). When this process is killed outright,
 * the runner notices (runner/parent-watch.ts) and removes the folder before it ends itself.
 */
function forkRunner(nodePath: string | undefined): { child: ChildProcess; lastWords: () => string } {
  if (!removeOnExit) {
    removeOnExit = true;
    process.once('exit', () => [...runnerTemps].forEach(removeRunnerTemp));
  }
  const temp = mkdtempSync(join(tmpdir(), RUNNER_TEMP_PREFIX));
  runnerTemps.add(temp);
  const child = fork(distFile('runner.js'), [], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    ...(nodePath ? { execPath: nodePath } : {}),
    // Device workers with large outputs collect garbage between blocks of steps (see the interpreter's onRun).
    execArgv: [...process.execArgv, '--expose-gc'],
    // Electron must run as plain Node for the runner.
    // ONNX Runtime's own leftovers (its telemetry's `mat-debug-<pid>.log`, profiles) go to
    // TMPDIR too. RUNNER_TEMP_ENV lets an orphaned runner remove the folder itself.
    env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', TMPDIR: temp, TMP: temp, TEMP: temp, [RUNNER_TEMP_ENV]: temp, GLIBC_TUNABLES: runnerMallocTunables(process.env['GLIBC_TUNABLES']) },
  });
  child.once('exit', () => removeRunnerTemp(temp));
  child.once('error', () => removeRunnerTemp(temp));
  let tail = '';
  const keep = (b: Buffer): void => {
    tail = (tail + b.toString()).slice(-LAST_WORDS);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, lastWords: () => tail.trim() };
}

/**
 * glibc malloc settings for the runner: memory freed stays with the process (no trim) and
 * chunks up to 32 MiB come from the heap rather than from a mapping of their own. Every
 * session run hands its outputs to JavaScript in a new buffer; device workers with large
 * outputs collect them between blocks of steps, and with these settings the next block reuses that memory
 * instead of faulting fresh pages in (on a virtual machine 170 faults, 2 ms of a 3 ms run,
 * for a stage with a 0.7 MB output). With the collection alone a probe still read 32–36 %
 * slower than the same plan run as the measured one; with both, 9–10 %. Settings the caller
 * gave come after these, so theirs win. Other C libraries ignore the variable.
 */
export function runnerMallocTunables(given: string | undefined): string {
  const ours = 'glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=33554432';
  return given && given.trim() !== '' ? `${ours}:${given}` : ours;
}

/** What {@link callRunner} does with one request. */
interface RunnerCall<T> {
  /** Node.js executable for the runner (default: this process's). */
  nodePath: string | undefined;
  signal: AbortSignal | undefined;
  /** The request sent once the runner is started. */
  request: ToRunner;
  /** Stops the runner when the signal aborts (the call then rejects with {@link CancelledError}). */
  stop: (child: ChildProcess) => void;
  /**
   * Handles one message from the runner; `settle` resolves or rejects the call (only the
   * first settle counts).
   */
  onMessage: (m: FromRunner, settle: (f: (resolve: (v: T) => void, reject: (e: Error) => void) => void) => void) => void;
}

/**
 * Forks the runner, sends it `call.request` and settles once: as `call.onMessage` says, with
 * {@link CancelledError} when the signal aborts, or with an Error carrying the runner's last
 * words when it cannot start or exits before answering.
 */
function callRunner<T>(call: RunnerCall<T>): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const { child, lastWords } = forkRunner(call.nodePath);
    let settled = false;
    const settle = (f: (resolve: (v: T) => void, reject: (e: Error) => void) => void): void => {
      if (!settled) {
        settled = true;
        call.signal?.removeEventListener('abort', onAbort);
        f(resolvePromise, reject);
      }
    };
    function onAbort(): void {
      call.stop(child);
      settle((_, no) => no(new CancelledError()));
    }
    if (call.signal?.aborted) return onAbort();
    call.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('message', (m: unknown) => {
      if (isFromRunner(m)) call.onMessage(m, settle);
    });
    child.on('error', (e) => settle((_, no) => no(new Error(`cannot start the runner: ${e.message}`))));
    child.on('exit', (code, sig) => {
      call.signal?.removeEventListener('abort', onAbort);
      settle((_, no) => no(new Error(`the runner exited unexpectedly (${sig ?? `code ${code}`}); its last output:\n${lastWords() || '(none)'}`)));
    });
    child.send(call.request);
  });
}

/**
 * Runs `plan` in a runner process. Resolves with the summary, rejects with a
 * {@link UserError} for bad input, {@link ProfileCancelled} when cancelled, or an Error
 * carrying the runner's last words when it crashed.
 */
export function profile(plan: ProfileRequest, opts: ProfileOptions = {}): Promise<ProfileOutcome> {
  return callRunner<ProfileOutcome>({
    nodePath: opts.nodePath,
    signal: opts.signal,
    request: { type: 'start', request: { ...plan, modelPath: resolve(plan.modelPath) } },
    stop: (child) => {
      const m: ToRunner = { type: 'cancel' };
      if (child.connected) child.send(m);
      // The runner stops its workers on cancel; if it is stuck in native code, kill it.
      setTimeout(() => child.kill('SIGKILL'), 800).unref();
    },
    onMessage: (m, settle) => {
      if (m.type === 'progress') opts.onProgress?.(m.progress);
      else if (m.type === 'result') settle((ok) =>
          ok({
            tracePath: m.tracePath,
            summary: m.summary as ProfileSummary,
            findings: m.findings as Finding[],
            ...(m.planText !== undefined ? { planText: m.planText, planInfo: m.planInfo as PlanInfo } : {}),
          }),
        );
      else if (m.type === 'error') {
        if (opts.signal?.aborted) settle((_, no) => no(new CancelledError()));
        else settle((_, no) => no(m.user ? new UserError(m.message) : new Error(`the runner failed: ${m.message}`)));
      }
    },
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
  return callRunner<DiscoveredDevices>({
    nodePath: opts.nodePath,
    signal: opts.signal,
    request: { type: 'devices', probeWebGpu: opts.probeWebGpu ?? true },
    stop: (child) => child.kill('SIGKILL'),
    onMessage: (m, settle) => {
      if (m.type === 'devices') settle((ok) => ok(m.devices as DiscoveredDevices));
      else if (m.type === 'error') settle((_, no) => no(m.user ? new UserError(m.message) : new Error(`device discovery failed: ${m.message}`)));
    },
  });
}
