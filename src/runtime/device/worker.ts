/** Device worker thread entry: wires `parentPort` to the pure {@link Interpreter}. */
import { parentPort } from 'node:worker_threads';
import { Interpreter } from './interpreter';
import { isToDevice } from '../protocol';

const port = parentPort;
if (!port) throw new Error('device-worker must run in a worker thread');
const handler = new Interpreter((m, transfer) => port.postMessage(m, transfer ?? []));
port.on('message', (m: unknown) => {
  if (isToDevice(m)) void handler.handle(m);
});
