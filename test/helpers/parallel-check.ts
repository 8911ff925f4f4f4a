/**
 * Checks shared by the integration tests of split runs (tensor parallel, hybrids): the
 * numerical result against one device running the whole model, and the all-reduce spans of
 * every lane and measured step.
 */
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { CommOpCode, SpanFlag, SpanKind, type Trace } from '../../src/profiler/trace-format';

/** The graph input and output a check feeds and reads: `x` and `y` unless a model names them otherwise. */
export interface CheckNames {
  input: string;
  output: string;
}

/** The largest |value| of the model's output (`y`) run whole on one device (the scale the relative error is taken against). */
export async function referenceScale(model: string, x: Float32Array, dims: number[], names: CheckNames = { input: 'x', output: 'y' }): Promise<number> {
  const session = await ort.InferenceSession.create(model);
  try {
    const y = (await session.run({ [names.input]: new ort.Tensor('float32', x, dims) }))[names.output]!.data as Float32Array;
    return y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  } finally {
    await session.release();
  }
}

/** Per lane and measured step, the names of its all-reduce spans in order. */
export function allReducesPerStep(trace: Trace): Map<string, string[]> {
  const s = trace.spans;
  const measured = new Set(trace.steps.map((w) => w.index));
  const out = new Map<string, string[]>();
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.comm || s.comm[i] !== CommOpCode.allreduce || !measured.has(s.step[i]!)) continue;
    if ((s.flags[i]! & SpanFlag.profiled) !== 0) continue;
    const key = `${s.lane[i]}|${s.step[i]}`;
    out.set(key, [...(out.get(key) ?? []), trace.strings[s.name[i]!]!]);
  }
  return out;
}

/** Checks the numerical result against one device: the runner's check, and max |Δ| / max |y| ≤ 1e-4. */
export async function assertMatchesOneDevice(trace: Trace, model: string, x: Float32Array, dims: number[], names?: CheckNames): Promise<void> {
  const check = trace.meta.numericalCheck!;
  assert.ok(check, 'the run checks itself against one device');
  assert.equal(check.ok, true, JSON.stringify(check));
  assert.match(check.reference, /one-device run/);
  const scale = await referenceScale(model, x, dims, names);
  assert.ok(scale > 0);
  const rel = check.maxAbsErr / scale;
  assert.ok(rel <= 1e-4, `relative error ${rel} (max |Δ| ${check.maxAbsErr} over max |y| ${scale})`);
}

/** The run checked its trained weights against one-device training: every parameter, within 1e-5 + 1e-4·|b|. */
export function assertTrainedLikeOneDevice(trace: Trace, what = 'every parameter compared'): void {
  const check = trace.meta.numericalCheck!;
  assert.match(check.reference, /one-device training/);
  assert.equal(check.atol, 1e-5);
  assert.equal(check.rtol, 1e-4);
  assert.equal(check.ok, true, `max abs err ${check.maxAbsErr}, max rel err ${check.maxRelErr}`);
  assert.equal(check.outputs!.length, trace.meta.training!.parameters, what);
}
