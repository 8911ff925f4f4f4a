/**
 * `parallax profile --mode hybrid --data 2 --tensor 2` end to end on cpu:4: a real runner
 * process, four real worker threads, real onnxruntime-node sessions on each replica's shard
 * models, and every replica's partial sums all-reduced through a sub-communicator of its own.
 * Had an all-reduce summed over all four devices, each output would count its layer twice;
 * the outputs are checked against one device running the whole model on the same inputs.
 * `--data 2 --pipeline 2` runs two two-stage pipelines over one partition, each on its rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, expectUserError } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { seededValues } from '../helpers/tiny-model';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { readTrace } from '../../src/profiler/trace-io';
import { fitCostModel, simulate } from '../../src/profiler/simulate';
import { allReducesPerStep, assertMatchesOneDevice } from '../helpers/parallel-check';

const dir = tempDir('hybrid-parallel');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

test('demo model, data 2 × tensor 2 on cpu:4: output of one device, each replica all-reduces inside its own group', async () => {
  const layers = 3;
  const model = join(dir, 'demo-small.onnx');
  writeFileSync(model, buildDemoModel({ layers, hidden: 64, ffn: 256 }));
  const dims = [8, 64];
  const x = seededValues(dims[0]! * dims[1]!, 11);
  const inputs = join(dir, 'demo.inputs.json');
  writeFileSync(inputs, JSON.stringify({ x: { dims, data: Array.from(x) } }));
  const out = join(dir, 'demo-hybrid.parallax.json');
  const r = await runCli(['profile', model, '--mode', 'hybrid', '--data', '2', '--tensor', '2', '--devices', 'cpu:4', '--batch', '8', '--steps', '3', '--warmup', '1', '--inputs', inputs, '--out', out], { env });
  assert.equal(r.code, 0, r.stderr);
  const trace = await readTrace(out);
  await assertMatchesOneDevice(trace, model, x, dims);

  const plan = trace.meta.plan;
  assert.ok(plan.mode === 'hybrid' && 'tensor' in plan && plan.data === 2 && plan.tensor === 2);
  assert.equal(plan.perDeviceParameterBytes?.length, 4, 'parameters recorded for every device');

  // Four workers on fewer than four cores are labelled as sharing them.
  const cores = availableParallelism();
  for (const d of trace.meta.devices) assert.equal(d.sharesPhysicalUnit, cores < 4, `${d.id} shares a physical unit exactly when cores (${cores}) are too few`);

  const program = trace.meta.program!;
  assert.equal(program.mode, 'hybrid');
  for (const d of program.devices) {
    const group = d.rank < 2 ? [0, 1] : [2, 3];
    const collectives = d.instructions.filter((i) => i.op === 'collective');
    assert.equal(collectives.length, layers);
    for (const c of collectives) assert.ok(c.op === 'collective' && c.group.join(',') === group.join(','), `rank ${d.rank}: all-reduce over its replica [${group.join(', ')}]`);
  }

  const expected = Array.from({ length: layers }, (_, i) => `allreduce.ring (/layers.${i}/mlp)`);
  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 4 * trace.steps.length, 'all-reduces on all four lanes in every measured step');
  for (const [key, names] of perStep) assert.deepEqual(names, expected, `lane|step ${key}: one all-reduce per block, labelled with its block`);

  // The simulator runs the same program on costs fitted from this trace, and predicts the group all-reduces.
  const predicted = allReducesPerStep(simulate(program, fitCostModel([trace]), { steps: 2, meta: trace.meta }));
  assert.equal(predicted.size, 4 * 2);
  for (const names of predicted.values()) assert.deepEqual(names, expected);
});

test('demo model, data 2 × pipeline 2 on cpu:4: output of one device, each replica sends only between its own stages', async () => {
  const model = join(dir, 'demo-pipe.onnx');
  writeFileSync(model, buildDemoModel({ layers: 4, hidden: 64, ffn: 256 }));
  const dims = [8, 64];
  const x = seededValues(dims[0]! * dims[1]!, 13);
  const inputs = join(dir, 'pipe.inputs.json');
  writeFileSync(inputs, JSON.stringify({ x: { dims, data: Array.from(x) } }));
  const out = join(dir, 'demo-hybrid-pipe.parallax.json');
  const r = await runCli(['profile', model, '--mode', 'hybrid', '--data', '2', '--pipeline', '2', '--micro-batches', '2', '--devices', 'cpu:4', '--batch', '8', '--steps', '3', '--warmup', '1', '--inputs', inputs, '--out', out], { env });
  assert.equal(r.code, 0, r.stderr);
  const trace = await readTrace(out);
  await assertMatchesOneDevice(trace, model, x, dims);
  const plan = trace.meta.plan;
  assert.ok(plan.mode === 'hybrid' && 'pipeline' in plan && plan.pipeline === 2 && plan.partition?.stageNodes.length === 2, 'the partition of one replica is recorded');
  const program = trace.meta.program!;
  assert.deepEqual(program.devices.map((d) => d.stage), [0, 1, 0, 1]);
  for (const d of program.devices) {
    const peers = d.instructions.flatMap((i) => (i.op === 'send' ? [i.to] : i.op === 'recv' ? [i.from] : []));
    assert.equal(peers.length, 2, `rank ${d.rank}: one transfer per micro-batch`);
    assert.ok(peers.every((p) => Math.floor(p / 2) === Math.floor(d.rank / 2) && p !== d.rank), `rank ${d.rank} talks to its own replica only`);
  }
});

test('a hybrid whose --data × --tensor is not the device count, or without --data, is refused in one line', async () => {
  await expectUserError(['profile', 'demo', '--mode', 'hybrid', '--data', '2', '--tensor', '2', '--devices', 'cpu:2', '--batch', '8'], /--data 2 × --tensor 2 needs 4 devices, but --devices cpu:2 gives 2/, dir, env);
  await expectUserError(['profile', 'demo', '--mode', 'hybrid', '--tensor', '2', '--devices', 'cpu:4'], /--mode hybrid needs --data <replicas> and --tensor <devices per replica>/, dir, env);
  await expectUserError(['profile', 'demo', '--mode', 'data', '--data', '2', '--devices', 'cpu:2'], /--data applies to --mode hybrid only/, dir, env);
});
