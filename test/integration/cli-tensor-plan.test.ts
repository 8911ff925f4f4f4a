/**
 * `parallax plan --mode tensor` through the real CLI: the shard map, the collectives and the
 * memory table as text and JSON, planned sizes with a capacity, and the one-line refusals
 * (nothing to split, flags that disagree). Running a tensor plan: cli-tensor-parallel.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, type CliResult } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { nothingToSplitModelBytes, transformerModelBytes } from '../helpers/transformer-model';
import { annotateSharding } from '../helpers/sharding-annotations';

const dir = tempDir('tensor-plan');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

function writeModel(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const demoBytes = buildDemoModel({ layers: 3, hidden: 64, ffn: 256 });
const demoPath = writeModel('demo-small.onnx', demoBytes);

/** One `parallax:` line on stderr matching `pattern`, exit 2, no stack trace, nothing on stdout. */
function assertOneLineError(r: CliResult, pattern: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^parallax: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(r.stdout, '');
}

test('plan --mode tensor prints the split groups, collectives, shard map and memory per device', async () => {
  const r = await runCli(['plan', demoPath, '--mode', 'tensor', '--devices', 'cpu:2'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /tensor parallel · 2 devices · planned, not run/);
  assert.match(r.stdout, /3 split groups · 3 all-reduces and 0 all-gathers per forward step/);
  for (let i = 0; i < 3; i++) {
    assert.match(r.stdout, new RegExp(`/layers\\.${i}/mlp/fc1/MatMul\\s+/layers\\.${i}/mlp/fc2/MatMul\\s+all-reduce`));
  }
  assert.match(r.stdout, /layers\.0\.mlp\.fc1\.weight\s+64×256\s+column-weight, axis 1\s+128 of 256/);
  assert.match(r.stdout, /layers\.0\.mlp\.fc2\.weight\s+256×64\s+row-weight, axis 0\s+128 of 256/);
  assert.match(r.stdout, /layers\.0\.ln\.weight\s+64\s+replicated/);
  assert.match(r.stdout, /^data ×2\s+32\s/m);
  assert.match(r.stdout, /^pipeline ×2\s+16\s/m);
  assert.match(r.stdout, /^tensor ×2\s+64\s/m);
  assert.match(r.stdout, /give --device-memory/);
});

test('plan --mode tensor --json gives the shard map and a memory table matching the IR\'s parameter bytes', async () => {
  const r = await runCli(['plan', demoPath, '--mode', 'tensor', '--devices', 'cpu:2', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  const ir = parseModel(demoBytes, demoPath);
  assert.equal(out.devices, 2);
  assert.equal(out.plan.collectives.length, 3);
  assert.ok(out.plan.collectives.every((c: { op: string }) => c.op === 'all-reduce'));
  assert.equal(out.plan.initializers.length, ir.initializers.length);
  const fc1 = out.plan.initializers.find((p: { name: string }) => p.name === 'layers.1.mlp.fc1.weight');
  assert.deepEqual(
    fc1.slices.map((s: { device: number; start: number; length: number }) => [s.device, s.start, s.length]),
    [
      [0, 0, 128],
      [1, 128, 128],
    ],
  );
  assert.equal(out.memory.parameterBytes, ir.parameterBytes);
  const plans = new Map<string, { devices: { parameterBytes: number }[] }>(out.memory.plans.map((p: { mode: string }) => [p.mode, p]));
  assert.ok(plans.get('data')!.devices.every((d) => d.parameterBytes === ir.parameterBytes));
  assert.equal(plans.get('pipeline')!.devices.reduce((a, d) => a + d.parameterBytes, 0), ir.parameterBytes);
  const split = out.plan.initializers.filter((p: { kind: string }) => p.kind === 'split').reduce((a: number, p: { bytes: number }) => a + p.bytes, 0);
  const tensor = plans.get('tensor')!.devices;
  assert.ok(tensor.every((d) => d.parameterBytes === ir.parameterBytes - split / 2));
});

test('plan --mode tensor --tensor 8 --device-memory plans a size that is not run and names the plans that fit', async () => {
  const path = writeModel('transformer.onnx', transformerModelBytes({ blocks: 2, hidden: 64, heads: 8, ffn: 256 }));
  const big = await runCli(['plan', path, '--mode', 'tensor', '--tensor', '8', '--device-memory', '16GiB', '--json'], { env });
  assert.equal(big.code, 0, big.stderr);
  const out = JSON.parse(big.stdout);
  assert.equal(out.devices, 8);
  assert.equal(out.memory.capacityBytes, 16 * 2 ** 30);
  assert.equal(out.plan.collectives.length, 4, 'attention and MLP of two blocks');
  assert.deepEqual(out.memory.fitting, ['data ×8', 'pipeline ×8', 'tensor ×8', 'data 2 × tensor 4', 'data 4 × tensor 2']);

  // A capacity that the split plans fit and the replicated one does not (it holds every parameter).
  const max = new Map<string, number>(out.memory.plans.map((p: { mode: string; maxBytes: number }) => [p.mode, p.maxBytes]));
  const cap = Math.max(max.get('pipeline')!, max.get('tensor')!);
  assert.ok(cap < max.get('data')!, JSON.stringify([...max]));
  const small = await runCli(['plan', path, '--mode', 'tensor', '--tensor', '8', '--device-memory', String(cap)], { env });
  assert.equal(small.code, 0, small.stderr);
  assert.match(small.stdout, /^data ×8 .*DOES NOT FIT$/m);
  // The hybrids hold more weights than tensor ×8 but fewer rows of activations, so they fit too.
  assert.ok(max.get('hybrid')! <= cap);
  assert.match(small.stdout, /does not fit in .* per device: data ×8; plans that fit: pipeline ×8, tensor ×8, data 2 × tensor 4, data 4 × tensor 2/);
});

test('plan --mode tensor of a model with nothing to split says what it looked for, exit 2', async () => {
  const path = writeModel('nothing.onnx', nothingToSplitModelBytes());
  const r = await runCli(['plan', path, '--mode', 'tensor', '--devices', 'cpu:2'], { env });
  assertOneLineError(r, /nothing to split for tensor parallelism over 2 devices: looked for MatMul\/Gemm nodes .* use --mode data or --mode pipeline/);
});

test('tensor planning flags are checked before any work', async () => {
  assertOneLineError(await runCli(['plan', demoPath, '--mode', 'tensor', '--device-memory', '16 gigs'], { env }), /--device-memory expects a size such as 16GiB/);
  assertOneLineError(await runCli(['plan', demoPath, '--mode', 'data', '--tensor', '2'], { env }), /--tensor applies to --mode tensor or hybrid only/);
  assertOneLineError(await runCli(['plan', demoPath, '--mode', 'tensor', '--tensor', '4', '--devices', 'cpu:2'], { env }), /--tensor 4 and --devices cpu:2 \(2 devices\) disagree/);
});

test('plan --mode tensor follows the model\'s ONNX sharding annotations, and --keep-whole leaves a block whole', async () => {
  const ir = parseModel(demoBytes, 'demo.onnx');
  const weight = (name: string): string => ir.nodes.find((n) => n.name === name)!.inputs[1]!;
  const annotations = [
    { node: '/layers.1/mlp/fc1/MatMul', tensor: weight('/layers.1/mlp/fc1/MatMul'), axis: 1, shards: 2 },
    { node: '/layers.1/mlp/fc2/MatMul', tensor: weight('/layers.1/mlp/fc2/MatMul'), axis: 0, shards: 2 },
  ];
  const path = writeModel('annotated.onnx', annotateSharding(demoBytes, annotations));
  const r = await runCli(['plan', path, '--mode', 'tensor', '--devices', 'cpu:2', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout).plan as { groups: { label: string }[]; annotations: number };
  assert.deepEqual(plan.groups.map((g) => g.label), ['/layers.1/mlp']);
  assert.equal(plan.annotations, 2);
  const text = await runCli(['plan', path, '--mode', 'tensor', '--devices', 'cpu:2'], { env });
  assert.match(text.stdout, /split as the model's sharding annotations say \(2 annotated weight cuts\)/);
  const four = await runCli(['plan', path, '--mode', 'tensor', '--devices', 'cpu:4'], { env });
  assert.equal(four.code, 2);
  assert.match(four.stderr, /^parallax: .*cuts its weight ".*" into 2 shards, but the run has 4 devices/);

  const kept = await runCli(['plan', demoPath, '--mode', 'tensor', '--devices', 'cpu:2', '--keep-whole', '/layers.0/mlp', '--json'], { env });
  assert.equal(kept.code, 0, kept.stderr);
  const keptPlan = JSON.parse(kept.stdout).plan as { groups: { label: string }[] };
  assert.ok(!keptPlan.groups.some((g) => g.label === '/layers.0/mlp') && keptPlan.groups.length > 0);
});
