/**
 * Worker side of the schedstat tests: spins for the asked wall time (or through a fixed
 * number of iterations: the same CPU work whatever else runs) and answers with the thread's
 * scheduler counters before and after, read by the sampler under test.
 */
import { parentPort } from 'node:worker_threads';
import { schedDelta, spanCpuUs, threadSampler } from '../../src/runtime/device/schedstat';

export interface SpinRequest {
  ms: number;
  /** When set, spin through this many iterations instead of for `ms`. */
  iterations?: number;
}
export interface SpinResult {
  wallUs: number;
  /** The threads' counters' change (lags by up to a tick). */
  counterCpuUs: number;
  /** The span's CPU time as the interpreter records it ({@link spanCpuUs}). */
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
  // The span's CPU time as the interpreter records it (the calling thread alone).
  parentPort?.postMessage({ wallUs, counterCpuUs: d.cpuUs, cpuUs: spanCpuUs(wallUs, d, sampler?.threads ?? 0), waitUs: d.waitUs, available: sampler !== null, x } as SpinResult);
});
