/**
 * Pipeline parallelism end to end through the CLI: calibration, partition, stage models in
 * ONNX Runtime, the GPipe schedule over shared-memory channels, and the bubble metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli, expectUserError as expectUserErrorIn } from '../helpers/cli';
import { ocrDetModelPath, MISSING_MODELS_HINT } from '../helpers/models';
import { writeTinyMatMulModel } from '../helpers/tiny-model';
import { readTrace } from '../../src/profiler/trace-io';
import { spanRow, SpanFlag } from '../../src/profiler/trace-format';
import { tempDir } from '../helpers/temp';
import { needs, ocrModelMissing } from '../helpers/prerequisites';

const dir = tempDir('pipe');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

test('a 2-stage pipeline of the demo model matches the one-device output and reports its bubbles', async () => {
  const out = join(dir, 'pipe.parallax.json');
  const r = await runCli(
    ['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--micro-batches', '4', '--batch', '16', '--steps', '3', '--warmup', '1', '--out', out, '--json'],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.mode, 'pipeline');
  assert.equal(s.numericalCheck.ok, true, JSON.stringify(s.numericalCheck));
  assert.ok(Math.abs(s.gpipeBubbleFraction - 1 / 5) < 1e-12, 'GPipe figure for K=2, M=4');
  assert.ok(s.bubbleFraction > 0 && s.bubbleFraction < 1);
  assert.ok(s.stageBalance >= 1 && s.stageBalance < 2);
  assert.equal(s.stages.length, 2);
  assert.equal(s.stages[0].nodes + s.stages[1].nodes, 24 * 7);
  for (const st of s.stages) assert.ok(st.computeUs > 0 && st.bubbleFraction >= 0);

  const t = await readTrace(out);
  const plan = t.meta.plan;
  assert.equal(plan.mode, 'pipeline');
  assert.ok(plan.mode === 'pipeline');
  assert.equal(plan.stages, 2);
  assert.equal(plan.microBatches, 4);
  assert.equal(plan.cuts?.length, 1);
  const rows = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i));
  const top = rows.filter((x) => x.parent === undefined);
  const sends = top.filter((x) => x.comm === 'send');
  const recvs = top.filter((x) => x.comm === 'recv');
  // One send per crossing tensor per micro-batch per step (3 steps × 4 micro-batches).
  assert.ok(sends.length >= 12 && sends.length % 12 === 0, `sends: ${sends.length}`);
  assert.equal(recvs.length, sends.length);
  assert.ok(sends.every((x) => x.lane === 0 && x.peer === 1 && (x.bytes ?? 0) > 0));
  assert.ok(recvs.every((x) => x.lane === 1 && x.peer === 0));
  // Every micro-batch is computed once per stage per step, tagged with its stage.
  // Timed steps never run under the operator profiler: operator detail comes from separate
  // profiled steps after them, whose compute spans say so and hold the operator spans.
  const profiled = top.filter((x) => x.kind === 'compute' && ((x.flags ?? 0) & SpanFlag.profiled) !== 0);
  const runs = top.filter((x) => x.kind === 'compute' && ((x.flags ?? 0) & SpanFlag.profiled) === 0);
  assert.equal(runs.length, 2 * 3 * 4);
  assert.equal(t.profiledSteps?.length, profiled.length / (2 * 4));
  assert.ok(profiled.every((x) => (x.step ?? -1) >= 3), 'profiled steps are numbered after the timed ones');
  const opParents = new Set(rows.filter((x) => x.parent !== undefined).map((x) => x.parent));
  assert.ok(opParents.size > 0);
  for (const p of opParents) assert.ok(((rows[p!]!.flags ?? 0) & SpanFlag.profiled) !== 0, 'operator spans nest under profiled compute spans only');
  assert.deepEqual(new Set(runs.filter((x) => x.lane === 1).map((x) => x.stage)), new Set([1]));
  assert.deepEqual(new Set(runs.map((x) => x.micro)), new Set([0, 1, 2, 3]));
  // Stage 1 cannot start a step before stage 0 sent it micro-batch 0: fill bubble.
  assert.ok(top.some((x) => x.kind === 'idle' && x.lane === 1 && x.cause === 'bubble'));
  // A receive starts after the matching send started.
  for (const rv of recvs) {
    const sd = sends.find((x) => x.step === rv.step && x.micro === rv.micro)!;
    assert.ok(rv.start + rv.dur >= sd.start);
  }
});

test('PP-OCRv4 detection split into 2 stages matches the one-device output', needs(ocrModelMissing()), async () => {
  const det = ocrDetModelPath();
  assert.ok(det, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);
  const r = await runCli(
    ['profile', det, '--mode', 'pipeline', '--devices', 'cpu:2', '--micro-batches', '2', '--batch', '2',
      '--dim', 'p2o.DynamicDimension.1=128', '--dim', 'p2o.DynamicDimension.2=128', '--steps', '2', '--warmup', '1', '--out', join(dir, 'ocr-pipe.parallax.json'), '--json'],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.numericalCheck.ok, true, JSON.stringify(s.numericalCheck));
  assert.equal(s.stages.length, 2);
  assert.equal(s.stages[0].nodes + s.stages[1].nodes, 672);
});

test('plan balances the 24-layer demo model within 10% for 2 and 4 stages without running it', async () => {
  for (const k of [2, 4]) {
    const r = await runCli(['plan', 'demo', '--stages', String(k), '--batch', '16', '--micro-batches', '1', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.stages.length, k);
    assert.equal(p.costSource, 'measured');
    assert.ok(p.balance <= 1.1, `K=${k}: balance ${p.balance}`);
    assert.equal(p.cuts.length, k - 1);
    // Beside the partition, the program every stage would run: receive, run, send.
    assert.equal(p.program.mode, 'pipeline');
    assert.equal(p.program.devices.length, k);
    assert.deepEqual(p.program.devices[k - 1].instructions.map((i: { op: string }) => i.op), ['recv', 'run', 'gather']);
  }
  const text = await runCli(['plan', 'demo', '--stages', '2', '--batch', '16', '--micro-batches', '1'], { env });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /stage/);
  assert.match(text.stdout, /Balance/);
  assert.match(text.stdout, /program: pipeline \(gpipe\)/);
  // Any mode: a data plan's program is scatter, run, gather on every device.
  const data = await runCli(['plan', 'demo', '--mode', 'data', '--devices', 'cpu:2', '--batch', '16', '--json'], { env });
  assert.equal(data.code, 0, data.stderr);
  const dp = JSON.parse(data.stdout);
  assert.deepEqual(dp.program.devices.map((d: { instructions: { op: string }[] }) => d.instructions.map((i) => i.op).join(' ')), ['scatter run gather', 'scatter run gather']);
});

const expectUserError = (args: string[], pattern: RegExp): Promise<void> => expectUserErrorIn(args, pattern, dir, env);

test('more stages than the model has nodes is refused', async () => {
  const tiny = writeTinyMatMulModel();
  try {
    await expectUserError(['profile', tiny.path, '--mode', 'pipeline', '--devices', 'cpu:3', '--batch', '4', '--micro-batches', '2'], /3 stages.*2 nodes/);
  } finally {
    tiny.dispose();
  }
});

test('a cut naming no node, or leaving an empty stage, is refused', async () => {
  await expectUserError(['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '4', '--micro-batches', '2', '--cuts', '/layers.3/nope'], /\/layers\.3\/nope/);
  await expectUserError(['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '4', '--micro-batches', '2', '--cuts', '/layers.23/Add'], /cut/i);
});

test('a micro-batch count that does not divide the batch is refused', async () => {
  await expectUserError(['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '10', '--micro-batches', '4'], /--batch 10 is not divisible by --micro-batches 4/);
});

test('--stages that disagrees with the devices is refused', async () => {
  await expectUserError(['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--stages', '3', '--batch', '6', '--micro-batches', '2'], /--stages 3/);
});
