/**
 * `parallax sweep` end to end through the built CLI on a small demo model: every plan that
 * fits cpu:2 is run for real (ONNX Runtime in device workers), each is predicted from the
 * others' runs, and 4 and 8 devices are predicted only; tensor plans among them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import { runCli, REPO } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { readTrace } from '../../src/profiler/trace-io';
import { SWEEP_SCHEMA_PATH, type SweepResult } from '../../src/profiler/sweep/schema';

const dir = tempDir('sweep');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

test('a sweep of a small model on cpu:2 measures every plan, predicts each from the others, and predicts 4 and 8 devices', async () => {
  const model = await ensureDemoModel(join(dir, 'models'), { layers: 4, hidden: 64, ffn: 128 });
  const out = join(dir, 'sweep.json');
  const html = join(dir, 'sweep.html');
  const traces = join(dir, 'predicted');
  const r = await runCli(
    ['sweep', model, '--devices', 'cpu:2', '--modes', 'data,pipeline,tensor', '--micro-batches', '2,4', '--batch', '16', '--repeats', '2', '--steps', '2', '--warmup', '1', '--out', out, '--html', html, '--traces', traces, '--json'],
    { env, timeoutMs: 600_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as SweepResult;
  const validate = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(join(REPO, SWEEP_SCHEMA_PATH), 'utf8')) as object);
  assert.ok(validate(s), JSON.stringify(validate.errors));
  assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), s, '--out writes what --json prints');

  const measured = s.plans.filter((p) => p.kind === 'measured');
  // data on 1 and 2 devices, pipeline M = 2 and 4 with the balanced and the shifted cut.
  assert.ok(measured.length >= 4, `measured plans: ${measured.map((p) => p.label).join(', ')}; skipped: ${JSON.stringify(s.skipped)}`);
  assert.deepEqual(measured.filter((p) => p.plan.mode === 'data').map((p) => p.devices).sort(), [1, 2]);
  assert.ok(measured.some((p) => p.plan.mode === 'pipeline'));
  for (const p of measured) {
    assert.equal(p.runs, 2, `${p.label}: one run per round`);
    assert.ok(p.measuredUs! > 0 && p.measuredInterval!.lo <= p.measuredUs! && p.measuredUs! <= p.measuredInterval!.hi, p.label);
    assert.ok(typeof p.predictedUs === 'number' && p.predictedUs > 0, `${p.label} has a prediction: ${p.predictionBasis}`);
    assert.equal(typeof p.errorPct, 'number', p.label);
    assert.ok(p.predictionBasis.length > 0);
    if (p.plan.mode === 'pipeline') assert.ok(p.plan.cuts && p.plan.cuts.length === 1, 'the cut it ran with is recorded');
  }
  assert.equal(typeof s.mapePct, 'number');
  assert.ok(s.maxAbsErrorPct! >= s.mapePct!);
  assert.equal(s.measurementQuality.runs, measured.reduce((a, p) => a + p.runs, 0));

  for (const n of [4, 8]) {
    const rows = s.plans.filter((p) => p.devices === n);
    assert.ok(rows.length >= 1, `${n} devices predicted`);
    for (const p of rows) {
      assert.equal(p.kind, 'predicted');
      assert.equal(p.measuredUs, null);
      assert.equal(p.errorPct, null);
      assert.ok(p.predictedUs! > 0, `${p.label}: ${p.predictionBasis}`);
      assert.ok(p.assumptions.length > 0, 'a prediction for devices not measured says what it assumes');
    }
  }
  assert.deepEqual(s.notRunnable, [], 'the demo model splits, so tensor is swept');
  assert.deepEqual(measured.filter((p) => p.plan.mode === 'tensor').map((p) => p.devices), [2]);

  // Every plan with a prediction has its predicted trace, in the native format, marked
  // predicted; every measured plan its measured run beside it.
  const files = readdirSync(traces);
  assert.equal(files.filter((f) => f.endsWith('.predicted.parallax.json')).length, s.plans.filter((p) => p.predictedUs !== null).length);
  assert.equal(files.filter((f) => f.endsWith('.measured.parallax.json')).length, measured.length);
  const eight = await readTrace(join(traces, files.find((f) => f.startsWith('data_cpu_8'))!));
  assert.equal(eight.meta.source, 'predicted');
  assert.equal(eight.lanes.length, 8);
  const two = await readTrace(join(traces, 'data_cpu_2_b16.measured.parallax.json'));
  assert.equal(two.meta.source, 'measured');

  const page = readFileSync(html, 'utf8');
  assert.equal((page.match(/<tr class="(measured|predicted)"/g) ?? []).length, s.plans.length);
  assert.equal((page.match(/<circle class="measured" data-devices/g) ?? []).length, s.scaling!.measured.length);
});

test('a data and tensor sweep of the demo model measures the tensor plan on cpu:2 and prints its prediction and error', async () => {
  const model = await ensureDemoModel(join(dir, 'models'), { layers: 4, hidden: 64, ffn: 128 });
  const out = join(dir, 'sweep-tensor.json');
  const r = await runCli(
    ['sweep', model, '--devices', 'cpu:2', '--modes', 'data,tensor', '--batch', '8', '--repeats', '1', '--steps', '2', '--warmup', '1', '--out', out],
    { env, timeoutMs: 600_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(readFileSync(out, 'utf8')) as SweepResult;
  const tensor = s.plans.find((p) => p.label === 'tensor cpu:2 b8');
  assert.ok(tensor, `plans: ${s.plans.map((p) => p.label).join(', ')}; skipped: ${JSON.stringify(s.skipped)}`);
  assert.equal(tensor.kind, 'measured');
  assert.equal(tensor.plan.mode, 'tensor');
  assert.ok(tensor.measuredUs! > 0);
  assert.ok(tensor.predictedUs! > 0, tensor.predictionBasis);
  assert.equal(typeof tensor.errorPct, 'number');
  // No other plan runs its shards: the prediction rests on the one-device line and the split.
  assert.match(tensor.predictionBasis, /one-device line × split share of the work/);
  const four = s.plans.find((p) => p.label === 'tensor cpu:4 b8');
  assert.ok(four && four.kind === 'predicted' && four.predictedUs! > 0, JSON.stringify(four));
  // The printed table has the row with its measured, predicted and error columns.
  const row = r.stdout.split('\n').find((l) => l.startsWith('tensor cpu:2 b8'));
  assert.ok(row, r.stdout);
  assert.match(row, /ms \[.*\]\s+\d+\.\d\d ms\s+[+-]?\d+\.\d %/);
  assert.match(r.stdout, /prediction error over \d+ measured plans/);
});

/** Bad input: exit 2, one `parallax:` line saying what is wrong, no stack trace, nothing written. */
async function expectExit2(args: string[], pattern: RegExp): Promise<void> {
  const out = join(dir, `bad-${Math.random().toString(36).slice(2)}.json`);
  const r = await runCli(['sweep', ...args, '--out', out], { env });
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^parallax: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(existsSync(out), false);
}

test('sweep refuses an unknown mode, zero micro-batches and a missing model with one line and exit 2', async () => {
  await expectExit2(['demo', '--modes', 'data,warp'], /unknown mode "warp"/);
  await expectExit2(['demo', '--micro-batches', '0'], /--micro-batches must be a positive integer/);
  await expectExit2([join(dir, 'no-such-model.onnx')], /no such file/);
  await expectExit2(['demo', '--devices', 'cpu:1,webgpu:1'], /one device kind/);
});
