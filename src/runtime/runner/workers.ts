/**
 * Executes a compiled program: one worker thread per device, each running the interpreter
 * (runtime/device/interpreter.ts) on its part of the program, and collects what they measured.
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { findPackageFile } from '../../common/package-file';
import { CancelledError, UserError } from '../../common/errors';
import type { DeviceInit, FromDevice, Progress, SharedInput } from '../protocol';
import { isFromDevice } from '../protocol';
import type { Program } from '../../profiler/program';
import type { DeviceInfo } from '../device/discovery';
import { createCommGroup } from '../comm/communicator';

export interface RunnerHooks {
  progress(p: Progress): void;
  signal?: AbortSignal;
}

export { CancelledError };

/**
 * The bundled device worker: beside this file in dist/, or (when the runtime runs from
 * source, as in-process tests do) in the package's dist/.
 */
function workerFile(): string {
  const f = findPackageFile(__dirname, ['device-worker.js', join('dist', 'device-worker.js')]);
  if (!f) throw new Error('dist/device-worker.js not found; run `npm run build` first');
  return f;
}

/** A group of device workers driven through one step loop. */
class WorkerGroup {
  readonly workers: Worker[] = [];
  private readonly waiters = new Map<string, { resolve: (m: FromDevice) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;
  private closed = false;
  onStep: (step: number) => void = () => {};

  constructor(n: number, signal?: AbortSignal) {
    const file = workerFile();
    for (let r = 0; r < n; r++) {
      const w = new Worker(file);
      w.on('message', (m: unknown) => this.onMessage(m));
      w.on('error', (e) => this.fail(new Error(`device worker ${r} crashed: ${e.message}`)));
      w.on('exit', (code) => {
        if (code !== 0 && !this.closed) this.fail(new Error(`device worker ${r} exited with code ${code}`));
      });
      this.workers.push(w);
    }
    signal?.addEventListener('abort', () => this.fail(new CancelledError()), { once: true });
  }

  private onMessage(m: unknown): void {
    if (!isFromDevice(m)) return;
    if (m.type === 'step') {
      this.onStep(m.step);
      return;
    }
    if (m.type === 'error') {
      this.fail(m.user ? new UserError(m.message) : new Error(`device ${m.rank}: ${m.message}`));
      return;
    }
    const key = `${m.type}:${m.rank}`;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      w.resolve(m);
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.values()) w.reject(e);
    this.waiters.clear();
    void this.close();
  }

  /** Waits for message `type` from every rank. */
  waitAll<T extends FromDevice['type']>(type: T): Promise<Extract<FromDevice, { type: T }>[]> {
    return Promise.all(
      this.workers.map(
        (_, r) =>
          new Promise<FromDevice>((resolve, reject) => {
            if (this.failure) return reject(this.failure);
            this.waiters.set(`${type}:${r}`, { resolve, reject });
          }),
      ),
    ) as Promise<Extract<FromDevice, { type: T }>[]>;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** How a program is run: everything a device needs besides its part of the program. */
export interface ExecuteOptions {
  devices: DeviceInfo[];
  /** Model file of each segment id. */
  segmentPaths: Record<number, string>;
  inputs: SharedInput[];
  steps: number;
  warmup: number;
  capture: boolean;
  opLevel: boolean;
  profileDir: string;
  graphOptimizationLevel?: DeviceInit['graphOptimizationLevel'];
  /** Progress phase and message of this execution. */
  phase: Progress['phase'];
  message: string;
}

export type DoneMessage = Extract<FromDevice, { type: 'done' }>;

/** Runs `program` on `o.devices` (rank r on device r) and returns every device's results. */
export async function executeProgram(program: Program, o: ExecuteOptions, hooks: RunnerHooks): Promise<DoneMessage[]> {
  const n = program.devices.length;
  if (n !== o.devices.length) throw new Error(`program for ${n} devices run on ${o.devices.length}`);
  const group = new WorkerGroup(n, hooks.signal);
  try {
    const arenaBytes = program.buffers.reduce((a, b) => a + b.elements * 4, 0);
    const comm = n > 1 ? createCommGroup(n, arenaBytes > 0 ? { arenaBytes: arenaBytes + 4096 } : {}) : null;
    const readyP = group.waitAll('ready');
    o.devices.forEach((d, rank) => {
      const init: DeviceInit = {
        type: 'init',
        rank,
        worldSize: n,
        device: { id: d.id, kind: d.kind, executionProviders: d.executionProviders, intraOpNumThreads: d.intraOpNumThreads },
        program: program.devices[rank],
        segmentPaths: o.segmentPaths,
        outputs: program.outputs,
        buffers: program.buffers,
        batch: program.batch,
        inputs: o.inputs,
        comm,
        steps: o.steps,
        warmup: o.warmup,
        capture: o.capture,
        opLevel: o.opLevel,
        profileDir: o.profileDir,
        ...(o.graphOptimizationLevel ? { graphOptimizationLevel: o.graphOptimizationLevel } : {}),
      };
      group.workers[rank].postMessage(init);
    });
    await readyP;
    const doneP = group.waitAll('done');
    group.onStep = (step) => hooks.progress({ phase: o.phase, done: step + 1, total: o.steps, message: o.message });
    for (const w of group.workers) w.postMessage({ type: 'go' });
    return await doneP;
  } finally {
    await group.close();
  }
}
