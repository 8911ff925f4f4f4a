/**
 * The runner must not outlive the process that forked it (the CLI, or VS Code's extension
 * host). When that process is killed outright (SIGKILL, a crash, the window closed) nothing
 * tells the runner but the end of its IPC channel and a new parent process id, and the
 * runner's main thread may be busy when that happens. So a small watchdog thread of its own
 * polls the parent pid; on a change (the runner was re-parented, to PID 1 or a subreaper) or
 * when the main thread sees the IPC channel close, the runner removes its private temp folder
 * and ends itself with SIGKILL.
 *
 * SIGKILL rather than `process.exit`: exiting normally tears down the device workers, and a
 * worker torn down while ONNX Runtime is inside `session.run` can abort from native code or
 * keep the exit waiting until the run returns (seconds to minutes for a big model). An orphan
 * has nobody to report to, so ending it at once is the safe way out.
 */
import { rmSync } from 'node:fs';
import { basename } from 'node:path';
import { Worker } from 'node:worker_threads';

/**
 * Environment variable through which the runner's parent names the runner's private temp
 * folder (also its TMPDIR), which the runner may remove when it finds itself orphaned.
 */
export const RUNNER_TEMP_ENV = 'PARALLAX_RUNNER_TEMP';

/** Prefix of the private temp folders the parent makes for runners (see api.ts). */
export const RUNNER_TEMP_PREFIX = 'parallax-run-';

/** How often the watchdog thread looks at the parent pid. */
export const PARENT_POLL_MS = 250;

/**
 * The folder a runner may remove when orphaned: the one its parent named, and only when it
 * looks like one the parent made for it (a stray environment variable must not make the
 * runner delete someone else's folder).
 */
export function privateTempOf(env: NodeJS.ProcessEnv): string | null {
  const dir = env[RUNNER_TEMP_ENV];
  return dir && basename(dir).startsWith(RUNNER_TEMP_PREFIX) ? dir : null;
}

/**
 * The watchdog thread's code. It runs as `eval` source so that the runner bundle needs no
 * extra entry file; it uses only Node built-ins.
 */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
const { rmSync } = require('node:fs');
const { parentPid, tempDir, pollMs } = workerData;
setInterval(() => {
  if (process.ppid === parentPid) return;
  if (tempDir) {
    try { rmSync(tempDir, { recursive: true, force: true, maxRetries: 2 }); } catch {}
  }
  process.kill(process.pid, 'SIGKILL');
}, pollMs);
`;

/** Removes the private temp folder (if any) and ends this process at once. */
function endOrphan(tempDir: string | null): never {
  if (tempDir) {
    try {
      rmSync(tempDir, { recursive: true, force: true, maxRetries: 2 });
    } catch {
      // The process ends anyway; the parent's own clean-up may still get it.
    }
  }
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is not delivered synchronously on every platform.
  process.exit(137);
}

/**
 * Starts watching the parent: a watchdog thread that polls the parent pid (it runs whatever
 * the main thread is doing) and an IPC `disconnect` handler on the main thread. Either ends
 * the process as described above. The thread is unref'd, so it never keeps the runner alive.
 */
export function watchParent(env: NodeJS.ProcessEnv = process.env): void {
  // Not forked with an IPC channel (started by hand): there is no parent to watch.
  if (process.send === undefined) return;
  const tempDir = privateTempOf(env);
  const parentPid = process.ppid;
  process.on('disconnect', () => endOrphan(tempDir));
  // Forked by a parent that is already gone: nothing will ever disconnect.
  if (!process.connected) endOrphan(tempDir);
  const watchdog = new Worker(WATCHDOG_SOURCE, {
    eval: true,
    workerData: { parentPid, tempDir, pollMs: PARENT_POLL_MS },
    // Plenty for a timer; keeps the thread small.
    resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 },
  });
  // Should the thread fail, the runner still has the IPC `disconnect` above; an unhandled
  // worker error would otherwise end the run.
  watchdog.on('error', () => undefined);
  watchdog.unref();
}
