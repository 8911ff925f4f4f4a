/**
 * A device's communication thread: runs the collectives a device starts (`collective-start`)
 * while the device thread goes on with its next instructions, as PyTorch DDP runs each
 * gradient bucket's all-reduce on its own stream while backward continues. ONNX Runtime's
 * `session.run` holds the device thread until it returns, so overlap needs a second thread.
 *
 * The two threads share, through memory: the bucket buffers (plain SharedArrayBuffers), a
 * control block (how many collectives were requested and done, stop and error flags, the
 * queue of requested buffers) and, per buffer, the start, duration and bytes of its latest
 * collective, which the device records as a span when it waits for it. The communication
 * threads of a run form their own group (a communicator of their own), so their collectives
 * never interleave with the device threads' step barriers.
 *
 * The thread is the device worker's own bundle started again with {@link COMM_THREAD_ROLE}.
 *
 * With a wire dtype other than float32 (`--grad-dtype`) each buffer's all-reduce is a
 * {@link CompressedAllReduce}, which keeps that buffer's error-feedback residual here, on the
 * thread that encodes it, from one step to the next.
 */
import { Worker, type MessagePort } from 'node:worker_threads';
import { join } from 'node:path';
import { findPackageFile } from '../../common/package-file';
import { Communicator, type CommGroupDescriptor } from '../comm/communicator';
import { CompressedAllReduce } from '../comm/compressed-allreduce';
import { wireCodec, type WireDtype } from '../comm/compress';

/** `workerData.role` of a communication thread. */
export const COMM_THREAD_ROLE = 'comm-thread';

const REQUESTED = 0;
const DONE = 1;
const STOP = 2;
const FAILED = 3;
const QUEUE = 4;
/** Bytes of the error message slot. */
const MESSAGE_BYTES = 512;

interface CommThreadInit {
  desc: CommGroupDescriptor;
  rank: number;
  ctrl: SharedArrayBuffer;
  timings: SharedArrayBuffer;
  message: SharedArrayBuffer;
  buffers: SharedArrayBuffer[];
  wire: WireDtype;
}

/** One started collective as the device records it: µs on the shared clock, and bytes moved. */
export interface CollectiveTiming {
  startUs: number;
  durUs: number;
  bytes: number;
}

/** The device's handle on its communication thread. */
export class CommThread {
  private requested = 0;

  private constructor(
    private readonly worker: Worker,
    private readonly ctrl: Int32Array,
    private readonly timings: Float64Array,
    private readonly message: Uint8Array,
    private readonly capacity: number,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Starts the thread as `rank` of the communication threads' group, all-reducing the given
   * buffers (indexed by position) when asked. Resolves once it is attached.
   */
  static async start(desc: CommGroupDescriptor, rank: number, buffers: readonly Float32Array[], wire: WireDtype = 'float32'): Promise<CommThread> {
    const file = findPackageFile(__dirname, ['device-worker.js', join('dist', 'device-worker.js')]);
    if (!file) throw new Error('dist/device-worker.js not found; run `npm run build` first');
    const ctrl = new SharedArrayBuffer((QUEUE + buffers.length) * 4);
    const timings = new SharedArrayBuffer(buffers.length * 3 * 8);
    const message = new SharedArrayBuffer(MESSAGE_BYTES);
    const worker = new Worker(file, { workerData: { role: COMM_THREAD_ROLE } });
    const init: CommThreadInit = { desc, rank, ctrl, timings, message, buffers: buffers.map((b) => b.buffer as SharedArrayBuffer), wire };
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
      worker.postMessage(init);
    });
    return new CommThread(worker, new Int32Array(ctrl), new Float64Array(timings), new Uint8Array(message), buffers.length, desc.timeoutMs);
  }

  /** Asks the thread to all-reduce buffer `index` after the ones asked before. */
  allReduce(index: number): void {
    this.ctrl[QUEUE + (this.requested % this.capacity)] = index;
    this.requested++;
    Atomics.store(this.ctrl, REQUESTED, this.requested);
    Atomics.notify(this.ctrl, REQUESTED);
  }

  /**
   * Blocks until every collective asked for has finished; throws the thread's error if one
   * failed, or when nothing finished for longer than the group's own deadline (the thread is
   * gone: its exit event cannot reach this thread while it waits here).
   */
  waitAll(): void {
    let last = Atomics.load(this.ctrl, DONE);
    let since = performance.now();
    for (;;) {
      const done = Atomics.load(this.ctrl, DONE);
      if (done >= this.requested) return;
      if (Atomics.load(this.ctrl, FAILED) !== 0) {
        const text = new TextDecoder().decode(this.message.slice()).replace(/\0+$/, '');
        throw new Error(`the communication thread failed: ${text}`);
      }
      if (done !== last) {
        last = done;
        since = performance.now();
      } else if (performance.now() - since > this.timeoutMs + 5000) {
        throw new Error(`the communication thread finished no collective for ${Math.round((performance.now() - since) / 1000)} s`);
      }
      Atomics.wait(this.ctrl, DONE, done, 200);
    }
  }

  /** The latest collective on buffer `index`: from its first transfer's start to its last one's end, with the bytes of them all. */
  timing(index: number): CollectiveTiming {
    return { startUs: this.timings[index * 3]!, durUs: this.timings[index * 3 + 1]!, bytes: this.timings[index * 3 + 2]! };
  }

  /** Stops the thread (it finishes what it was asked first) and ends it. */
  async stop(): Promise<void> {
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.notify(this.ctrl, REQUESTED);
    await this.worker.terminate();
  }
}

/**
 * The communication thread's side: waits for its init message, attaches to the group, then
 * serves requests until told to stop. It never returns to its event loop while serving (it
 * waits on shared memory instead), which is what lets it run while its device is inside
 * ONNX Runtime.
 */
export function serveCommThread(port: MessagePort): void {
  port.once('message', (m: CommThreadInit) => {
    const ctrl = new Int32Array(m.ctrl);
    const timings = new Float64Array(m.timings);
    const buffers = m.buffers.map((b) => new Float32Array(b));
    let current = -1;
    let first = true;
    // A compressed all-reduce is several operations of the communicator (gathers, then an
    // all-gather); they are recorded as one collective.
    const comm = Communicator.attach(m.desc, m.rank, {
      comm: (_name: string, startUs: number, durUs: number, bytes: number): void => {
        if (current < 0) return;
        const i = current * 3;
        if (first) {
          timings[i] = startUs;
          timings[i + 2] = 0;
          first = false;
        }
        timings[i + 1] = startUs + durUs - timings[i]!;
        timings[i + 2]! += bytes;
      },
    });
    const codec = wireCodec(m.wire);
    const compressed = codec.dtype === 'float32' ? null : buffers.map((b) => new CompressedAllReduce(comm, codec, b.length));
    port.postMessage({ type: 'ready' });
    let done = 0;
    for (;;) {
      while (Atomics.load(ctrl, REQUESTED) === done) {
        if (Atomics.load(ctrl, STOP) !== 0) return;
        Atomics.wait(ctrl, REQUESTED, done, 200);
      }
      current = ctrl[QUEUE + (done % buffers.length)]!;
      first = true;
      try {
        if (compressed) compressed[current]!.run(buffers[current]!);
        else comm.allReduce(buffers[current]!);
      } catch (e) {
        new Uint8Array(m.message).set(new TextEncoder().encode((e instanceof Error ? e.message : String(e)).slice(0, MESSAGE_BYTES / 2)));
        Atomics.store(ctrl, FAILED, 1);
        Atomics.notify(ctrl, DONE);
        return;
      }
      done++;
      Atomics.store(ctrl, DONE, done);
      Atomics.notify(ctrl, DONE);
    }
  });
}
