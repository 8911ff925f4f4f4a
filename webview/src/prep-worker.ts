/**
 * Worker entry: a thin shim around `prepare` (model.ts). The page builds it from a blob
 * (see prep-client.ts); the span columns arrive transferred, and go back transferred with
 * the prepared model, so nothing is copied either way.
 */
import { prepare, preparedTransferables, type PrepInput } from './model';

interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
}
const scope = self as unknown as WorkerScope;

scope.onmessage = (e: MessageEvent): void => {
  const msg = e.data as { type: 'ping' } | { type: 'prepare'; id: number; input: PrepInput };
  if (msg.type === 'ping') {
    scope.postMessage({ type: 'pong' });
    return;
  }
  const input = msg.input;
  const back = [input.lane, input.kind, input.start, input.dur, input.parent, input.flags, input.cause, input.peer, input.micro, input.step, input.name, input.stage, input.comm].map(
    (a) => a.buffer as ArrayBuffer,
  );
  try {
    const prepared = prepare(input);
    scope.postMessage({ type: 'prepared', id: msg.id, prepared, input }, [...new Set([...back, ...preparedTransferables(prepared)])]);
  } catch (err) {
    scope.postMessage({ type: 'failed', id: msg.id, message: String(err), input }, back);
  }
};
