/** The demo-model profile plan the benchmarks start from; each bench overrides what it measures. */
import { defaultCacheDir, ensureDemoModel } from '../src/runtime/onnx/demo-model';
import type { ProfilePlan } from '../src/runtime/protocol';

export async function demoPlan(over: Partial<ProfilePlan> = {}): Promise<ProfilePlan> {
  return {
    modelPath: await ensureDemoModel(defaultCacheDir()),
    modelLabel: 'demo',
    mode: 'data',
    devices: 'cpu:2',
    batch: 64,
    steps: 10,
    warmup: 2,
    seed: 0,
    capture: true,
    opLevel: false,
    baseline: false,
    outPath: null,
    ...over,
  };
}
