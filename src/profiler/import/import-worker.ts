/** Import worker thread entry: wires `parentPort` to {@link handleImportRequest}. */
import { parentPort } from 'node:worker_threads';
import { handleImportRequest, isImportRequest } from './rank-pool';

const port = parentPort;
if (!port) throw new Error('import-worker must run in a worker thread');
port.on('message', (m: unknown) => {
  if (!isImportRequest(m)) return;
  void handleImportRequest(m).then(({ reply, transfer }) => port.postMessage(reply, transfer));
});
