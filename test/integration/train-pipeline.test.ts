/**
 * Pipeline training end to end through the built CLI: a real runner process, one worker
 * thread per stage on cpu:2, real onnxruntime-node sessions running each stage's forward,
 * backward and optimizer models cut from a small demo model, activations and activation
 * gradients over the shared-memory channels, gradients summed over the micro-batches.
 *
 * Tolerance of the trained-weights check (recorded in the trace and asserted here), as in
 * data mode: |a−b| ≤ 1e-5 + 1e-4·|b| element-wise, float32. The pipeline sums each gradient
 * over micro-batches, one device over the whole batch at once; the orders differ by float32
 * rounding, which SGD carries into the weights scaled by the learning rate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DEFAULT_SLOTS } from '../../src/runtime/comm/group';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { readTrace } from '../../src/profiler/trace-io';
import { PhaseCode, spanRow, type Trace } from '../../src/profiler/trace-format';
import { fitCostModel, simulate } from '../../src/profiler/simulate';
import type { Finding } from '../../src/profiler/findings';
import { runCli, expectUserError as expectUserErrorIn } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { MISSING_MODELS_HINT, ocrDetModelPath } from '../helpers/models';
import { assertTrainedLikeOneDevice } from '../helpers/parallel-check';

const dir = tempDir('train-pipeline');
const env = { PARALLAX_CACHE: join(dir, 'cache') };
const small = (): Promise<string> => ensureDemoModel(join(dir, 'models'), { layers: 2, hidden: 64, ffn: 128 });
const M = 4;

async function train(schedule: 'gpipe' | '1f1b', args: string[]): Promise<{ summary: Record<string, unknown>; trace: Trace }> {
  const out = join(dir, `${schedule}.parallax.json`);
  const r = await runCli(['profile', await small(), '--train', '--mode', 'pipeline', '--devices', 'cpu:2', '--schedule', schedule, '--micro-batches', String(M), '--batch', '16', '--out', out, '--json', ...args], { env });
  assert.equal(r.code, 0, r.stderr);
  return { summary: JSON.parse(r.stdout) as Record<string, unknown>, trace: await readTrace(out) };
}

/** Per lane and step, the top-level compute spans in time order as `F0`, `B3`, `O`. */
function computeOrder(trace: Trace, lane: number, step: number): string {
  const rows = Array.from({ length: trace.spans.count }, (_, i) => spanRow(trace, i));
  return rows
    .filter((r) => r.lane === lane && r.step === step && r.kind === 'compute' && r.parent === undefined)
    .sort((a, b) => a.start - b.start)
    .map((r) => (r.phase === 'optimizer' ? 'O' : `${r.phase === 'forward' ? 'F' : 'B'}${r.micro}`))
    .join(' ');
}

for (const schedule of ['gpipe', '1f1b'] as const) {
  test(`${schedule}: 2 stages train to the one-device weights after 4 SGD steps, the loss falls, and each stage's stored activations stay within the schedule's bound`, async () => {
    // 1 warm-up step + 3 timed steps = 4 updates on either side.
    const { summary, trace } = await train(schedule, ['--steps', '3', '--warmup', '1', '--optimizer', 'sgd', '--lr', '0.05', '--no-op-level']);
    assertTrainedLikeOneDevice(trace, 'every parameter compared, each from the stage that holds it');
    const training = trace.meta.training!;
    const curve = training.lossCurve;
    assert.equal(curve.length, 3);
    assert.ok(curve[2]! < curve[0]!, `loss ${curve.join(' → ')}`);
    curve.forEach((l, s) => assert.ok(Math.abs(l - training.baselineLossCurve![s]!) <= 1e-4 * Math.abs(training.baselineLossCurve![s]!), `step ${s}: the same loss as one device (${l} vs ${training.baselineLossCurve![s]})`));

    // Stored activations: measured by each stage's device, as the compiled order implies, and
    // within the bound (1F1B: K − s ≤ K; GPipe: M).
    const p = training.pipeline!;
    assert.equal(p.schedule, schedule);
    assert.equal(p.microBatches, M);
    assert.deepEqual(p.stages.map((s) => s.peakStoredMicroBatches), schedule === 'gpipe' ? [M, M] : [2, 1]);
    for (const s of p.stages) {
      assert.equal(s.peakStoredMicroBatches, s.compiledPeakMicroBatches, `stage ${s.stage}: measured = compiled`);
      assert.ok(s.peakStoredMicroBatches <= (schedule === 'gpipe' ? M : 2));
      assert.ok(s.peakStoredBytes > 0 && s.parameters > 0);
    }
    // GPipe is told what 1F1B would keep (a checked suggestion); 1F1B is not.
    const memory = ((trace.findings ?? []) as Finding[]).filter((f) => f.id === 'pipeline-schedule-memory');
    if (schedule === 'gpipe') {
      assert.equal(memory.length, 1);
      assert.deepEqual(memory[0]!.change.params, { schedule: '1f1b' });
      assert.notEqual(memory[0]!.checked?.ok, false, memory[0]!.checked?.note);
    } else assert.equal(memory.length, 0);
    // The summary (`--json`) carries the same.
    const js = summary as { training?: { pipeline?: typeof p } };
    assert.deepEqual(js.training?.pipeline?.stages.map((s) => s.peakStoredMicroBatches), p.stages.map((s) => s.peakStoredMicroBatches));

    // The spans: per stage and step a forward and a backward per micro-batch, in the
    // schedule's order, then the optimizer.
    const want =
      schedule === 'gpipe'
        ? ['F0 F1 F2 F3 B0 B1 B2 B3 O', 'F0 F1 F2 F3 B0 B1 B2 B3 O']
        : ['F0 F1 B0 F2 B1 F3 B2 B3 O', 'F0 B0 F1 B1 F2 B2 F3 B3 O'];
    for (let lane = 0; lane < 2; lane++) for (let step = 0; step < 3; step++) assert.equal(computeOrder(trace, lane, step), want[lane], `stage ${lane}, step ${step}`);

    // The simulator runs the program it ran, on costs fitted from these spans.
    const predicted = simulate(trace.meta.program!, fitCostModel([trace]), { steps: 2, meta: trace.meta });
    const ps = predicted.spans;
    for (let lane = 0; lane < 2; lane++) {
      for (const phase of [PhaseCode.forward, PhaseCode.backward]) {
        let n = 0;
        for (let i = 0; i < ps.count; i++) if (ps.kind[i] === 0 && ps.lane[i] === lane && ps.phase[i] === phase) n++;
        assert.equal(n, 2 * M, `predicted stage ${lane}: ${M} spans of phase ${phase} per step`);
      }
    }
  });
}

test('the text summary reports each stage\'s stored activations; 1F1B without --train and a batch the micro-batches do not divide are refused with one line', async () => {
  const model = await small();
  const r = await runCli(['profile', model, '--train', '--mode', 'pipeline', '--devices', 'cpu:2', '--schedule', '1f1b', '--micro-batches', '8', '--batch', '16', '--steps', '1', '--warmup', '1', '--no-op-level', '--no-baseline', '--out', join(dir, 'text.parallax.json')], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1f1b over 8 micro-batches/);
  assert.match(r.stdout, /stored activations \(peak\)/);
  assert.match(r.stdout, /^0\s+\d+\s+2 micro-batches\s+2\s/m);
  assert.match(r.stdout, /^1\s+\d+\s+1 micro-batch\s+1\s/m);
  await expectUserErrorIn(['profile', model, '--mode', 'pipeline', '--devices', 'cpu:2', '--schedule', '1f1b'], /--schedule 1f1b .*needs --train/, dir, env);
  // `plan` shows the training program without running it: 1F1B's order on stage 0 and its bound.
  const plan = await runCli(['plan', model, '--train', '--mode', 'pipeline', '--devices', 'cpu:2', '--schedule', '1f1b', '--micro-batches', '4', '--batch', '16'], { env });
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /program: pipeline \(1f1b\)/);
  assert.match(plan.stdout, /stage 0 — loads .* keeps at most 2 micro-batches of activations/);
  const stage0 = plan.stdout.split(/cpu:1 — stage 1/)[0]!;
  const order = [...stage0.matchAll(/run {8}(?:m(\d) )?stage 0 (forward|backward|optimizer)/g)].map((x) => (x[2] === 'optimizer' ? 'O' : `${x[2] === 'forward' ? 'F' : 'B'}${x[1]}`));
  assert.equal(order.join(' '), 'F0 F1 B0 F2 B1 F3 B2 B3 O');
  await expectUserErrorIn(['profile', model, '--train', '--mode', 'pipeline', '--devices', 'cpu:2', '--micro-batches', '3', '--batch', '16'], /not divisible by --micro-batches 3/, dir, env);
});

test('a real CNN, PP-OCRv4 det, trains as a 2-stage 1F1B pipeline to the one-device weights, its convolution geometry carried across the cut', async () => {
  const model = ocrDetModelPath();
  assert.ok(model, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);
  const out = join(dir, 'ocr.parallax.json');
  const r = await runCli(
    // A cut that five tensors cross (the backbone's skip connections): more messages per
    // transfer than the channel has slots, so 1F1B's crossing sends — stage 0's activations
    // of micro-batch 1, stage 1's gradients of micro-batch 0 — deadlocked until the
    // downstream stage received before it sent. The balanced cut moves with the measured
    // node costs (four tensors on a quiet machine, five under load), so it is fixed here.
    ['profile', model, '--train', '--mode', 'pipeline', '--devices', 'cpu:2', '--schedule', '1f1b', '--micro-batches', '2', '--batch', '2', '--input-shape', 'x=2,3,64,64', '--cuts', 'p2o.Conv.22', '--steps', '1', '--warmup', '1', '--lr', '0.001', '--no-op-level', '--out', out, '--json'],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const trace = await readTrace(out);
  const check = trace.meta.numericalCheck!;
  assert.equal(check.ok, true, `max abs err ${check.maxAbsErr}`);
  const p = trace.meta.training!.pipeline!;
  assert.equal(check.outputs!.length, p.stages.reduce((n, s) => n + s.parameters, 0), 'every trained weight compared');
  assert.ok(p.stages.every((s) => s.parameters > 0), 'both stages hold weights');
  assert.deepEqual(p.stages.map((s) => s.peakStoredMicroBatches), [2, 1]);
  const send = trace.meta.program!.devices[0]!.instructions.find((i) => i.op === 'send');
  assert.ok(send && send.op === 'send' && send.tensors.length > DEFAULT_SLOTS, `more tensors cross the cut than a channel has slots (${DEFAULT_SLOTS})`);
});
