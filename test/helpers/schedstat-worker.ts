/**
 * Worker side of the schedstat tests: spins for the asked wall time (or through a fixed
 * number of iterations: the same CPU work whatever else runs) and answers with the thread's
 * scheduler counters before and after, read by the sampler under test.
 */
import { parentPort } from 'node:worker_threads';
import { schedDelta, threadSampler } from '../../src/runtime/device/schedstat';

export interface SpinRequest {
  ms: number;
  /** When set, spin through this many iterations instead of for `ms`. */
  iterations?: number;
}
export interface SpinResult {
  wallUs: number;
  cpuUs: number;
  waitUs: number;
  available: boolean;
}

const sampler = threadSampler();
parentPort?.on('message', (m: SpinRequest) => {
  const a = sampler?.read() ?? null;
  const t0 = performance.now();
  let x = 0;
  if (m.iterations !== undefined) for (let i = 0; i < m.iterations; i++) x += Math.sqrt(x + 1);
  else while (performance.now() - t0 < m.ms) x += Math.sqrt(x + 1);
  const wallUs = (performance.now() - t0) * 1000;
  const d = schedDelta(a, sampler?.read() ?? null);
  parentPort?.postMessage({ wallUs, cpuUs: d.cpuUs, waitUs: d.waitUs, available: sampler !== null, x } as SpinResult);
});
