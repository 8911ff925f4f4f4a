/**
 * End to end through the built CLI: a real runner process, real worker threads, real
 * onnxruntime-node sessions on the generated demo model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { runCli, expectUserError as expectUserErrorIn } from '../helpers/cli';
import { tinyMatMulModelBytes } from '../helpers/tiny-model';
import { readTrace } from '../../src/profiler/trace-io';
import { SpanFlag, spanRow } from '../../src/profiler/trace-format';
import { tempDir } from '../helpers/temp';

const dir = tempDir('cli');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

test('profile demo on cpu:2 prints a JSON summary, writes a valid trace, and matches the one-device output', async () => {
  const out = join(dir, 'run.parallax.json');
  const r = await runCli(['profile', 'demo', '--devices', 'cpu:2', '--batch', '16', '--steps', '4', '--warmup', '1', '--out', out, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'quiet when piped / with --json');
  const s = JSON.parse(r.stdout);
  assert.equal(s.mode, 'data');
  assert.equal(s.steps, 4);
  for (const k of ['median', 'p10', 'p90']) assert.ok(s.stepTimeUs[k] > 0, `stepTimeUs.${k}`);
  assert.equal(s.devices.length, 2);
  for (const d of s.devices) {
    assert.match(d.id, /^cpu:\d$/);
    assert.equal(d.kind, 'cpu');
    assert.equal(d.provider, 'cpu');
    assert.ok(d.computeUs > 0 && d.commUs > 0 && d.idleUs >= 0);
    assert.ok(d.utilization > 0 && d.utilization <= 1);
  }
  assert.ok(s.speedupVsOneDevice > 0);
  assert.equal(s.numericalCheck.ok, true);
  assert.ok(s.numericalCheck.maxAbsErr < 1e-3);
  assert.ok(Array.isArray(s.findings));
  assert.equal(s.tracePath, out);

  const trace = await readTrace(out);
  assert.equal(trace.lanes.length, 2);
  assert.equal(trace.steps.length, 4);
  const rows = Array.from({ length: trace.spans.count }, (_, i) => spanRow(trace, i));
  const profiled = (x: (typeof rows)[number]): boolean => ((x.flags ?? 0) & SpanFlag.profiled) !== 0;
  const runs = rows.filter((x) => x.kind === 'compute' && x.parent === undefined && !profiled(x));
  assert.equal(runs.length, 8, 'one session.run per device per timed step');
  const profiledRuns = rows.filter((x) => x.kind === 'compute' && x.parent === undefined && profiled(x));
  assert.equal(profiledRuns.length, 2 * (trace.profiledSteps?.length ?? 0), 'one profiled run per device per profiled step');
  const ops = rows.filter((x) => x.parent !== undefined);
  assert.ok(ops.length >= profiledRuns.length * 24 * 3, `operator spans nested under profiled runs (got ${ops.length})`);
  for (const op of ops.slice(0, 200)) {
    const parent = rows[op.parent!];
    assert.equal(parent.kind, 'compute');
    assert.ok(profiled(parent), 'operators come from profiled steps, never from timed ones');
    assert.equal(parent.lane, op.lane);
    assert.ok(op.start >= parent.start - 1 && op.start + op.dur <= parent.start + parent.dur + 1, 'op inside its run');
  }
  // ONNX Runtime fuses MatMul+Add into (Fused)Gemm; the fused node keeps the model's name.
  assert.ok(ops.some((o) => /Gemm|MatMul/.test(o.opType ?? '') && o.name.includes('/mlp/fc1/MatMul')));
  assert.ok(rows.some((x) => x.comm === 'scatter' && (x.bytes ?? 0) > 0));
  assert.ok(rows.some((x) => x.comm === 'gather' && (x.bytes ?? 0) > 0));
  assert.equal(trace.meta.numericalCheck?.ok, true);
  assert.equal(trace.meta.host.cores > 0, true);
  assert.match(trace.meta.model?.sha256 ?? '', /^[0-9a-f]{64}$/);

  const rep = await runCli(['report', out], { env });
  assert.equal(rep.code, 0, rep.stderr);
  assert.match(rep.stdout, /cpu:0/);
  assert.match(rep.stdout, /step time\s+median/);
  // The findings the run checked against the model are the ones `report` gives back.
  const repJson = await runCli(['report', out, '--json'], { env });
  assert.equal(repJson.code, 0, repJson.stderr);
  const rj = JSON.parse(repJson.stdout);
  assert.deepEqual(rj.findings, s.findings);
  assert.equal(rj.findingsNote, undefined);
  // A trace of another version has its findings recomputed, and says when their suggestions were not checked.
  const doc = JSON.parse(readFileSync(out, 'utf8'));
  doc.meta.tool.version = '0.0.1';
  const older = join(dir, 'older.parallax.json');
  writeFileSync(older, JSON.stringify(doc));
  const ro = await runCli(['report', older, '--json'], { env });
  assert.equal(ro.code, 0, ro.stderr);
  const oj = JSON.parse(ro.stdout);
  const withParams = oj.findings.some((f: { change: { params: object } }) => Object.keys(f.change.params).length > 0);
  if (withParams) assert.match(oj.findingsNote, /not checked against the model/);
  else assert.equal(oj.findingsNote, undefined);
});

test('devices lists cpu and says whether webgpu and cuda are available', async () => {
  const r = await runCli(['devices', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout);
  assert.ok(d.host.logicalCores >= 1);
  const kinds = d.kinds.map((k: { kind: string }) => k.kind);
  assert.deepEqual(kinds.slice(0, 3).sort(), ['cpu', 'cuda', 'webgpu']);
});

/** Bad input: one line on stderr naming the problem, exit ≠ 0, no stack trace, no output file. */
const expectUserError = (args: string[], pattern: RegExp): Promise<void> => expectUserErrorIn(args, pattern, dir, env);

test('a missing model file is named in a one-line error', async () => {
  await expectUserError(['profile', join(dir, 'nope.onnx')], /nope\.onnx: no such file/);
});

test('a file that is not ONNX is refused with its name', async () => {
  const p = join(dir, 'notes.onnx');
  writeFileSync(p, 'these are not the weights you are looking for\n');
  await expectUserError(['profile', p], /notes\.onnx/);
});

test('a truncated ONNX file is refused with its name', async () => {
  // The same cached file the CLI's `demo` uses (made here if no earlier test made it).
  const bytes = readFileSync(await ensureDemoModel(join(dir, 'cache')));
  const p = join(dir, 'truncated.onnx');
  writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length / 3)));
  await expectUserError(['profile', p], /truncated\.onnx.*truncated/i);
});

test('an unknown device kind is refused', async () => {
  await expectUserError(['profile', 'demo', '--devices', 'tpu:2'], /tpu/);
});

test('more devices than the batch has rows is refused', async () => {
  await expectUserError(['profile', 'demo', '--devices', 'cpu:4', '--batch', '3'], /batch 3.*4 devices/);
});

test('a batch the model cannot take is refused with the fixed batch size', async () => {
  // The tiny model with its batch dimension fixed at 1.
  const m = onnx.ModelProto.decode(tinyMatMulModelBytes().bytes);
  const dim0 = m.graph!.input![0].type!.tensorType!.shape!.dim![0];
  dim0.dimParam = '';
  dim0.dimValue = 1;
  const p = join(dir, 'fixed-batch.onnx');
  writeFileSync(p, onnx.ModelProto.encode(m).finish());
  await expectUserError(['profile', p, '--batch', '8'], /fixed.*1/);
});

test('a bad flag value is refused in one line', async () => {
  await expectUserError(['profile', 'demo', '--batch', 'many'], /--batch must be a positive integer/);
});

test('--grad-sync all-reduces a parameter-sized buffer each step, labelled as synthetic gradients', async () => {
  const out = join(dir, 'grad.parallax.json');
  const r = await runCli(['profile', 'demo', '--devices', 'cpu:2', '--batch', '8', '--steps', '2', '--warmup', '1', '--grad-sync', '--no-op-level', '--out', out, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const trace = await readTrace(out);
  const rows = Array.from({ length: trace.spans.count }, (_, i) => spanRow(trace, i));
  const ar = rows.filter((x) => x.comm === 'allreduce');
  assert.equal(ar.length, 2 * 2, 'one all-reduce per device per step');
  const params = trace.meta.model!.parameters;
  for (const x of ar) {
    assert.match(x.name, /synthetic gradients/);
    assert.equal(x.comm, 'allreduce');
    assert.equal(((x.flags ?? 0) & SpanFlag.synthetic) !== 0, true, 'flagged as synthetic data');
    assert.equal(x.step !== undefined && x.step >= 0, true);
    // A ring all-reduce over 2 ranks sends and receives half the buffer twice: 2 × 4·P bytes.
    assert.ok(Math.abs((x.bytes ?? 0) - 2 * 4 * params) <= 64, `bytes ${x.bytes} vs ${2 * 4 * params}`);
  }
  assert.ok(trace.meta.notes.some((n) => /synthetic/.test(n)));
  assert.equal(trace.meta.plan.mode === 'data' && trace.meta.plan.gradSync, true);
  const buffers = trace.meta.program?.buffers ?? [];
  assert.deepEqual(buffers, [{ name: 'gradients', dtype: 'float32', elements: params, synthetic: true }]);
});

test('--shards splits the batch unevenly as given, and the output still matches one device', async () => {
  const out = join(dir, 'shards.parallax.json');
  const r = await runCli(['profile', 'demo', '--devices', 'cpu:2', '--batch', '16', '--shards', '12,4', '--steps', '4', '--warmup', '1', '--no-op-level', '--out', out, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.numericalCheck.ok, true);
  const trace = await readTrace(out);
  assert.deepEqual(trace.meta.plan.mode === 'data' ? trace.meta.plan.shards : null, [12, 4]);
  // The device with three times the rows computes longer (medians per step, so one
  // preempted step on a busy machine does not decide it).
  assert.ok(s.devices[0].computePerStepUs > s.devices[1].computePerStepUs);
});

test('shards that do not add up to the batch, or do not match the devices, are refused', async () => {
  await expectUserError(['profile', 'demo', '--devices', 'cpu:2', '--batch', '16', '--shards', '10,5'], /adds up to 15 rows, not the batch of 16/);
  await expectUserError(['profile', 'demo', '--devices', 'cpu:2', '--batch', '16', '--shards', '16'], /1 shard for 2 devices/);
});
