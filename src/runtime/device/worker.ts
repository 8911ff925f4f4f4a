/**
 * Device worker thread entry: wires `parentPort` to the pure {@link Interpreter}, or, started
 * again by a device with the communication-thread role, serves that device's collectives.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Interpreter } from './interpreter';
import { isToDevice } from '../protocol';
import { COMM_THREAD_ROLE, serveCommThread } from './comm-thread';

const port = parentPort;
if (!port) throw new Error('device-worker must run in a worker thread');
if ((workerData as { role?: unknown } | null)?.role === COMM_THREAD_ROLE) {
  serveCommThread(port);
} else {
  const handler = new Interpreter((m, transfer) => port.postMessage(m, transfer ?? []));
  port.on('message', (m: unknown) => {
    if (isToDevice(m)) void handler.handle(m);
  });
}
