/**
 * A stand-in for a runner whose main thread is stuck (as it is inside a long synchronous
 * native call): it starts the parent watch of src/runtime/runner/parent-watch.ts, tells its
 * parent so, then blocks its main thread for good. Only the watchdog thread can end it.
 */
import { watchParent } from '../../src/runtime/runner/parent-watch';

watchParent();
process.send!('watching', () => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});
