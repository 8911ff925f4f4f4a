/**
 * Data-parallel training end to end through the built CLI: a real runner process, real
 * worker threads, real onnxruntime-node sessions running the forward, backward and
 * optimizer models cut from a small demo model, real gradient all-reduces over shared memory.
 *
 * Tolerance of the trained-weights check (recorded in the trace and asserted here):
 * |a−b| ≤ 1e-5 + 1e-4·|b| element-wise, float32. Two devices sum each gradient in another
 * order than one device does (per shard, scaled, then over the ring), which moves it by
 * float32 rounding; SGD carries that into the weights scaled by the learning rate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { encodeModel } from '../../src/runtime/onnx/model';
import { readTrace } from '../../src/profiler/trace-io';
import { PhaseCode, SpanFlag, spanRow, type Trace } from '../../src/profiler/trace-format';
import { fitCostModel, simulate } from '../../src/profiler/simulate';
import { runCli, expectUserError as expectUserErrorIn } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { assertTrainedLikeOneDevice } from '../helpers/parallel-check';

const dir = tempDir('train');
const env = { PARALLAX_CACHE: join(dir, 'cache') };
const expectUserError = (args: string[], pattern: RegExp): Promise<void> => expectUserErrorIn(args, pattern, dir, env);
const small = (): Promise<string> => ensureDemoModel(join(dir, 'models'), { layers: 2, hidden: 64, ffn: 128 });

async function train(name: string, args: string[]): Promise<{ summary: Record<string, unknown>; trace: Trace }> {
  const out = join(dir, `${name}.parallax.json`);
  const r = await runCli(['profile', await small(), '--train', '--mode', 'data', '--batch', '16', '--out', out, '--json', ...args], { env });
  assert.equal(r.code, 0, r.stderr);
  return { summary: JSON.parse(r.stdout) as Record<string, unknown>, trace: await readTrace(out) };
}

const parameterBytes = (t: Trace): number => t.meta.training!.parameterElements * 4;

test('2 devices train to the same weights as 1 device after 3 SGD steps, in buckets of the given size', async () => {
  // 1 warm-up step + 2 timed steps = 3 updates on either side.
  const { trace } = await train('sgd3', ['--devices', 'cpu:2', '--steps', '2', '--warmup', '1', '--optimizer', 'sgd', '--lr', '0.05', '--bucket-mb', '0.05', '--no-op-level']);
  assertTrainedLikeOneDevice(trace);
  const check = trace.meta.numericalCheck!;
  const training = trace.meta.training!;
  assert.equal(check.elements, training.parameterElements);
  // The weights moved: the loss of the second timed step is below the first's on both sides.
  assert.ok(training.lossCurve[1]! < training.lossCurve[0]!, `loss ${training.lossCurve.join(' → ')}`);
  assert.ok(Math.abs(training.lossCurve[1]! - training.baselineLossCurve![1]!) <= 1e-4 * Math.abs(training.baselineLossCurve![1]!), 'the same loss as one device');
  // 0.05 MB buckets split this model's 133 KB of gradients.
  assert.ok(training.buckets.length >= 3, `${training.buckets.length} buckets`);
  assert.equal(training.buckets.reduce((n, b) => n + b.bytes, 0), parameterBytes(trace));
  assert.ok(training.buckets.every((b) => b.bytes <= 50_000 || b.parameters.length === 1), 'a bucket is over the size only for a single parameter');
  // The backward runs in one part per bucket; each bucket's all-reduce runs on the
  // communication thread once its part has run (possibly while the next parts run), and the
  // optimizer starts after the last one.
  const rows = Array.from({ length: trace.spans.count }, (_, i) => spanRow(trace, i));
  for (let lane = 0; lane < 2; lane++) {
    for (let step = 0; step < 2; step++) {
      const mine = rows.filter((r) => r.lane === lane && r.step === step && r.parent === undefined);
      const parts = mine.filter((r) => r.kind === 'compute' && r.phase === 'backward').sort((a, b) => a.start - b.start);
      const reduces = mine.filter((r) => r.comm === 'allreduce').sort((a, b) => a.start - b.start);
      const opt = mine.find((r) => r.kind === 'compute' && r.phase === 'optimizer')!;
      assert.equal(parts.length, training.buckets.length, `lane ${lane}: a backward part per bucket`);
      assert.equal(reduces.length, training.buckets.length, `lane ${lane}: an all-reduce per bucket`);
      reduces.forEach((r, k) => {
        assert.ok(r.start >= parts[k]!.start + parts[k]!.dur - 1, `bucket ${k}'s all-reduce starts after its backward part`);
        assert.ok(r.start + r.dur <= opt.start + 1, `bucket ${k}'s all-reduce ends before the optimizer`);
        assert.match(r.name, /overlapped/);
      });
    }
  }
  // Reverse layer order: the first bucket holds the last layer's gradients.
  assert.match(training.buckets[0]!.parameters[0]!, /^layers\.1\./);
  assert.match(training.buckets.at(-1)!.parameters.at(-1)!, /^layers\.0\./);
});

test('momentum and Adam keep their state resident and train to the one-device weights too', async () => {
  for (const optimizer of ['momentum', 'adam']) {
    const { trace } = await train(optimizer, ['--devices', 'cpu:2', '--steps', '3', '--warmup', '1', '--optimizer', optimizer, '--lr', '0.002', '--no-op-level']);
    const check = trace.meta.numericalCheck!;
    assert.equal(check.ok, true, `${optimizer}: max abs err ${check.maxAbsErr} (atol ${check.atol})`);
    const curve = trace.meta.training!.lossCurve;
    assert.ok(curve.every(Number.isFinite), `${optimizer}: finite losses ${curve.join(', ')}`);
    assert.ok(curve[2]! < curve[0]!, `${optimizer}: loss ${curve.join(' → ')}`);
  }
});

test('the loss falls over 10 steps; the trace has forward, backward and optimizer spans and one gradient all-reduce per bucket per step', async () => {
  const { summary, trace } = await train('curve', ['--devices', 'cpu:2', '--steps', '10', '--warmup', '1', '--lr', '0.05', '--no-op-level']);
  const curve = trace.meta.training!.lossCurve;
  assert.equal(curve.length, 10);
  assert.ok(curve.every(Number.isFinite));
  assert.ok(curve[9]! < 0.9 * curve[0]!, `loss ${curve.map((l) => l.toFixed(4)).join(' → ')}`);
  for (let s = 1; s < curve.length; s++) assert.ok(curve[s]! <= curve[s - 1]! + 1e-6, `loss does not rise at step ${s}`);
  assert.equal(trace.meta.numericalCheck?.ok, true);
  assert.equal((summary as { numericalCheck?: { ok: boolean } }).numericalCheck?.ok, true);

  const rows = Array.from({ length: trace.spans.count }, (_, i) => spanRow(trace, i));
  const buckets = trace.meta.training!.buckets.length;
  assert.equal(buckets, 1, 'the default 25 MB bucket holds all of this model');
  for (let lane = 0; lane < 2; lane++) {
    for (let step = 0; step < 10; step++) {
      const mine = rows.filter((r) => r.lane === lane && r.step === step);
      for (const phase of ['forward', 'backward', 'optimizer'] as const) {
        assert.equal(mine.filter((r) => r.kind === 'compute' && r.phase === phase).length, 1, `lane ${lane} step ${step}: one ${phase} span`);
      }
      const grads = mine.filter((r) => r.kind === 'comm' && r.comm === 'allreduce' && ((r.flags ?? 0) & SpanFlag.gradient) !== 0);
      assert.equal(grads.length, buckets, `lane ${lane} step ${step}: one gradient all-reduce per bucket`);
      // A ring all-reduce over 2 ranks sends and receives half of each bucket twice: 2 × its bytes.
      const moved = grads.reduce((n, r) => n + (r.bytes ?? 0), 0);
      assert.ok(Math.abs(moved - 2 * parameterBytes(trace)) <= 64 * buckets, `moved ${moved} bytes for ${parameterBytes(trace)} of gradients`);
      const fwd = mine.find((r) => r.phase === 'forward')!;
      const bwd = mine.find((r) => r.phase === 'backward')!;
      const opt = mine.find((r) => r.phase === 'optimizer')!;
      assert.ok(fwd.start + fwd.dur <= bwd.start && bwd.start + bwd.dur <= grads[0]!.start && grads.at(-1)!.start <= opt.start, 'forward → backward → all-reduce → optimizer');
    }
  }
  // The simulator runs the program it ran, on costs fitted by phase from these spans.
  const predicted = simulate(trace.meta.program!, fitCostModel([trace]), { steps: 2, meta: trace.meta });
  const p = predicted.spans;
  const phases = new Set<number>();
  for (let i = 0; i < p.count; i++) if (p.kind[i] === 0) phases.add(p.phase[i]!);
  assert.deepEqual([...phases].sort(), [PhaseCode.forward, PhaseCode.backward, PhaseCode.optimizer].sort());
});

test('--bucket-mb sets the number of buckets: a smaller bucket, more all-reduces per step', async () => {
  const counts: number[] = [];
  for (const mb of ['25', '0.03']) {
    const { trace } = await train(`b${mb}`, ['--devices', 'cpu:2', '--steps', '1', '--warmup', '1', '--bucket-mb', mb, '--no-op-level', '--no-baseline']);
    const rows = Array.from({ length: trace.spans.count }, (_, i) => spanRow(trace, i));
    const perStep = rows.filter((r) => r.lane === 0 && r.step === 0 && r.comm === 'allreduce' && ((r.flags ?? 0) & SpanFlag.gradient) !== 0);
    assert.equal(perStep.length, trace.meta.training!.buckets.length, 'one all-reduce per bucket');
    assert.equal(new Set(perStep.map((r) => r.name)).size, perStep.length, 'each span names its bucket');
    const moved = perStep.reduce((n, r) => n + (r.bytes ?? 0), 0);
    assert.ok(Math.abs(moved - 2 * parameterBytes(trace)) <= 64 * perStep.length, `moved ${moved} bytes`);
    counts.push(perStep.length);
  }
  assert.equal(counts[0], 1);
  assert.ok(counts[1]! > counts[0]!, `buckets: ${counts.join(' vs ')}`);
});

test('training refuses what it cannot do with one line: a model with an operator without a gradient rule, settings without --train', async () => {
  const model = await small();
  await expectUserError(['profile', model, '--lr', '0.1', '--devices', 'cpu:2'], /--lr applies to training runs only; add --train/);
  await expectUserError(['profile', model, '--train', '--grad-sync', '--devices', 'cpu:2'], /--grad-sync .*synthetic/);
  // x → MatMul → Sin: Sin has no gradient rule.
  const f = 1; // TensorProto.DataType.FLOAT
  const proto: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'sin',
      input: [{ name: 'x', type: { tensorType: { elemType: f, shape: { dim: [{ dimParam: 'N' }, { dimValue: 4 }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: f, shape: { dim: [{ dimParam: 'N' }, { dimValue: 4 }] } } } }],
      initializer: [{ name: 'W', dims: [4, 4], dataType: f, floatData: Array.from({ length: 16 }, (_, i) => i / 16) }],
      node: [
        { name: 'mm', opType: 'MatMul', input: ['x', 'W'], output: ['h'] },
        { name: 'wave', opType: 'Sin', input: ['h'], output: ['y'] },
      ],
    },
  };
  const path = join(dir, 'sin.onnx');
  writeFileSync(path, encodeModel(proto));
  await expectUserError(['profile', path, '--train', '--devices', 'cpu:2'], /Sin.*wave/);
});
