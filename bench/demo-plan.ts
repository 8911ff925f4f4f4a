/** The demo-model profile request the benchmarks start from; each bench overrides what it measures. */
import { defaultCacheDir, ensureDemoModel } from '../src/runtime/onnx/demo-model';
import type { ProfileRequest } from '../src/runtime/protocol';
import { makePlan, withPlanFields, type PlanFields } from '../src/profiler/plan';

/** Request fields and flat plan fields a bench may override. */
export type DemoOverrides = Partial<Omit<ProfileRequest, 'plan'>> & Partial<PlanFields>;

const REQUEST_KEYS = ['modelPath', 'modelLabel', 'capture', 'opLevel', 'baseline', 'batchDim', 'dims', 'inputShapes', 'inputsFile', 'outPath', 'dryRun'] as const;

/** `req` with request fields and plan fields overridden. */
export function withOverrides(req: ProfileRequest, over: DemoOverrides): ProfileRequest {
  const next: Record<string, unknown> = { ...req };
  const planChange: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(over)) {
    if ((REQUEST_KEYS as readonly string[]).includes(k)) next[k] = v;
    else planChange[k] = v;
  }
  return { ...(next as unknown as ProfileRequest), plan: withPlanFields(req.plan, planChange as Partial<PlanFields>) };
}

export async function demoPlan(over: DemoOverrides = {}): Promise<ProfileRequest> {
  const base: ProfileRequest = {
    modelPath: await ensureDemoModel(defaultCacheDir()),
    modelLabel: 'demo',
    plan: makePlan({ mode: 'data', devices: 'cpu:2', batch: 64, steps: 10, warmup: 2, seed: 0 }),
    capture: true,
    opLevel: false,
    baseline: false,
    outPath: null,
  };
  return withOverrides(base, over);
}
