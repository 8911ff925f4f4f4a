/** Device worker thread entry: wires `parentPort` to the pure {@link DeviceHandler}. */
import { parentPort } from 'node:worker_threads';
import { DeviceHandler } from './handler';
import { isToDevice } from '../protocol';

const port = parentPort;
if (!port) throw new Error('device-worker must run in a worker thread');
const handler = new DeviceHandler((m, transfer) => port.postMessage(m, transfer ?? []));
port.on('message', (m: unknown) => {
  if (isToDevice(m)) void handler.handle(m);
});
