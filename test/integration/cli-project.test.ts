/**
 * `parallax project` through the built CLI on a real data-parallel run (uneven shards, so the
 * fit separates the fixed part of a step from the part per row): predictions for 8 and 64
 * devices on NVLink and on 100 GbE, written as traces that validate against the trace schema,
 * say they are predicted, and open in `report`.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import { runCli } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { tinyMatMulModelBytes } from '../helpers/tiny-model';
import { traceJsonSchema } from '../../src/profiler/trace-schema';
import { readTrace } from '../../src/profiler/trace-io';
import { CommOpCode, SpanFlag } from '../../src/profiler/trace-format';

const dir = tempDir('project');
const env = { PARALLAX_CACHE: join(dir, 'cache') };
const run = join(dir, 'dp.parallax.json');

before(async () => {
  const r = await runCli(['profile', 'demo', '--devices', 'cpu:2', '--batch', '64', '--shards', '24,40', '--grad-sync', '--steps', '3', '--warmup', '1', '--out', run, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
});

interface Row {
  devices: number;
  stepUs: number;
  speedup: number;
  efficiency: number;
  commShare: number;
  amdahlBound: number;
  tracePath: string;
}

for (const [name, links] of [
  ['NVLink', ['--link', 'nvlink4']],
  ['100 GbE', ['--link', '100gbe', '--inter-link', '100gbe']],
] as const) {
  test(`projecting a measured run to 8 and 64 devices on ${name} writes predicted traces that validate and open in report`, async () => {
    const out = join(dir, name.replace(/\W/g, ''));
    const r = await runCli(['project', run, '--predict-devices', '8,64', ...links, '--out-dir', out, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { rows: Row[]; serialFraction: number; assumptions: string[]; oneDeviceStepUs: number };
    assert.deepEqual(doc.rows.map((x) => x.devices), [8, 64]);
    assert.ok(doc.serialFraction > 0 && doc.serialFraction < 1, `serial fraction ${doc.serialFraction}`);
    assert.ok(doc.assumptions.some((a) => a.includes(name === 'NVLink' ? 'NVLink 4' : '100 GbE')));
    const validate = new Ajv({ allErrors: true, strict: false }).compile(traceJsonSchema());
    for (const row of doc.rows) {
      assert.ok(row.stepUs > 0 && row.speedup > 0);
      assert.ok(row.speedup <= row.amdahlBound + 1e-9, `${row.devices} devices: speedup ${row.speedup} beyond Amdahl ${row.amdahlBound}`);
      assert.ok(row.commShare > 0, 'the gradient all-reduce takes time');
      const json = JSON.parse(readFileSync(row.tracePath, 'utf8')) as unknown;
      assert.ok(validate(json), JSON.stringify(validate.errors?.slice(0, 3)));
      const t = await readTrace(row.tracePath);
      assert.equal(t.meta.source, 'predicted');
      assert.equal(t.lanes.length, row.devices);
      assert.ok(t.meta.devices.every((d) => d.label.includes('predicted')));
      for (let i = 0; i < t.spans.count; i++) assert.ok((t.spans.flags[i] & SpanFlag.predicted) !== 0, 'every span is marked predicted');
      assert.ok(t.meta.notes.some((n) => /^Assumed links:/.test(n)));
      const rep = await runCli(['report', row.tracePath], { env });
      assert.equal(rep.code, 0, rep.stderr);
      assert.match(rep.stdout, /source: predicted/);
    }
    // Strong scaling of 64 rows: 64 devices cannot beat 8 by more than the 8× more devices.
    assert.ok(doc.rows[1].speedup / doc.rows[0].speedup <= 8);
  });
}

test('the slower link never predicts a faster step', async () => {
  const step = async (links: string[]): Promise<number[]> => {
    const r = await runCli(['project', run, '--predict-devices', '8,64', ...links, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { rows: Row[] }).rows.map((x) => x.stepUs);
  };
  const fast = await step(['--link', 'nvlink4', '--inter-link', 'ib-ndr']);
  const slow = await step(['--link', '100gbe', '--inter-link', '100gbe']);
  fast.forEach((t, k) => assert.ok(t <= slow[k]!, `${t} vs ${slow[k]}`));
});

test('an H100 projection scales the calibrated compute by the roofline of the model\'s FLOPs and bytes', async () => {
  const r = await runCli(['project', run, '--predict-devices', '8', '--device-kind', 'h100', '--precision', 'bf16', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { rows: Row[]; assumptions: string[]; oneDeviceStepUs: number };
  assert.ok(doc.assumptions.some((a) => /NVIDIA H100 SXM 80GB at bf16/.test(a)));
  const cpu = await runCli(['project', run, '--predict-devices', '8', '--json'], { env });
  const here = JSON.parse(cpu.stdout) as { oneDeviceStepUs: number };
  assert.ok(doc.oneDeviceStepUs < here.oneDeviceStepUs, `an H100 runs the model faster than this machine's CPU (${doc.oneDeviceStepUs} vs ${here.oneDeviceStepUs} µs)`);
});

test('a pipeline run projects onto its own stages on other links, against all stages run in turn on one device', async () => {
  const pipe = join(dir, 'pp.parallax.json');
  const p = await runCli(['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '16', '--micro-batches', '4', '--steps', '3', '--warmup', '1', '--out', pipe, '--json'], { env });
  assert.equal(p.code, 0, p.stderr);
  const out = join(dir, 'pp-proj');
  const r = await runCli(['project', pipe, '--predict-devices', '2', '--link', '100gbe', '--out-dir', out, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { rows: Row[]; oneDeviceStepUs: number };
  const [row] = doc.rows;
  assert.ok(row && row.speedup <= row.amdahlBound + 1e-9 && row.speedup > 0);
  const t = await readTrace(row.tracePath);
  assert.equal(t.meta.plan.mode, 'pipeline');
  assert.equal(t.meta.source, 'predicted');
  assert.ok(t.spans.comm.some((c) => c === CommOpCode.send), 'activations still travel between the stages');
  const eight = await runCli(['project', pipe, '--predict-devices', '8'], { env });
  assert.equal(eight.code, 2);
  assert.match(eight.stderr, /a pipeline run of 2 stages projects to 2 devices/);
});

test('project refuses what it cannot predict with one line and exit 2', async () => {
  const other = join(dir, 'other.onnx');
  writeFileSync(other, tinyMatMulModelBytes().bytes);
  const cases: [string[], RegExp][] = [
    [['project', run, '--predict-devices', '128'], /fewer than 128 devices; use --scale weak/],
    [['project', run, '--predict-devices', '8,x'], /--predict-devices 8,x/],
    [['project', run, '--predict-devices', '8', '--device-kind', 'tpu'], /tpu/],
    [['project', run, '--predict-devices', '8', '--link-alpha-us', '3'], /goes with --link-gbps/],
    [['project', join(dir, 'missing.parallax.json'), '--predict-devices', '8'], /no such file/],
    [['project', run, '--predict-devices', '8', '--device-kind', 'a100', '--precision', 'fp8'], /has no fp8 peak/],
    [['project', run, '--predict-devices', '8', '--device-kind', 'h100', '--model', other], /not the model the trace was recorded with/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(args, { env });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
  }
});
