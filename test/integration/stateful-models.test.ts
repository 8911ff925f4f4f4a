/**
 * Stateful real models end to end through the CLI: silero VAD v4 (recurrent state h, c and
 * hn, cn of shape [2, batch, 64], a scalar int64 `sr`, an If node) and v5 (state [2, ?, 128]
 * and stateN with no dimension names). Their state is split and gathered on axis 1, data
 * parallel and in a pipeline, and every output matches the one-device run; what cannot be run
 * is one `parallax:` line and exit 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { sileroV4ModelPath, sileroV5ModelPath, MISSING_MODELS_HINT } from '../helpers/models';
import { readTrace } from '../../src/profiler/trace-io';
import { tempDir } from '../helpers/temp';
import { modelMissing, needs, type Missing } from '../helpers/prerequisites';

const dir = tempDir('stateful');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

const v4Missing = (): Missing => modelMissing(sileroV4ModelPath(), 'silero VAD v4');
const v5Missing = (): Missing => modelMissing(sileroV5ModelPath(), 'silero VAD v5');

function model(path: string | null, name: string): string {
  assert.ok(path, `${name} not fetched: ${MISSING_MODELS_HINT}`);
  return path;
}

const MODES: { name: string; args: string[] }[] = [
  { name: 'data parallel (cpu:2)', args: ['--mode', 'data'] },
  { name: 'pipeline (cpu:2, M=2)', args: ['--mode', 'pipeline', '--micro-batches', '2'] },
];

/** Runs a profile and checks every output of the model against the one-device run. */
async function profileAllOutputsOk(path: string, label: string, modelArgs: string[], mode: (typeof MODES)[number], stateAxis: Record<string, number>): Promise<void> {
  const out = join(dir, `${label}-${mode.args[1]}.parallax.json`);
  const r = await runCli(['profile', path, ...mode.args, ...modelArgs, '--devices', 'cpu:2', '--batch', '4', '--steps', '2', '--warmup', '1', '--no-op-level', '--out', out, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const t = await readTrace(out);
  const nc = t.meta.numericalCheck;
  assert.ok(nc, 'numerical check recorded');
  const names = t.meta.model!.outputs.map((o) => o.name).sort();
  assert.deepEqual(nc.outputs?.map((o) => o.name).sort(), names, 'one entry per model output');
  for (const o of nc.outputs!) {
    assert.equal(o.ok, true, `${label} ${mode.name}: output ${o.name} ${JSON.stringify(o)}`);
    assert.ok(o.elements > 0, `${o.name} compared`);
  }
  assert.equal(nc.ok, true);
  assert.equal(nc.elements, nc.outputs!.reduce((n, o) => n + o.elements, 0));
  // The state is gathered on its batch axis (1), the probability on axis 0.
  const axes = Object.fromEntries(t.meta.program!.outputs.map((o) => [o.name, o.batchAxis]));
  assert.deepEqual(axes, { output: 0, ...stateAxis });
  const plan = t.meta.plan;
  assert.ok(plan.mode === 'data' || plan.mode === 'pipeline');
  const inputs = Object.fromEntries((plan.inputs ?? []).map((i) => [i.name, i.batchAxis]));
  assert.equal(inputs['sr'], null, 'sr is shared by every row');
}

for (const mode of MODES) {
  test(`silero VAD v4 runs ${mode.name} with every output (output, hn, cn) matching one device`, needs(v4Missing()), async () => {
    const path = model(sileroV4ModelPath(), 'silero VAD v4');
    await profileAllOutputsOk(path, 'silero-v4', ['--dim', 'sequence=512', '--value', 'sr=16000'], mode, { hn: 1, cn: 1 });
  });

  test(`silero VAD v5 runs ${mode.name} with every output (output, stateN) matching one device`, needs(v5Missing()), async () => {
    const path = model(sileroV5ModelPath(), 'silero VAD v5');
    await profileAllOutputsOk(path, 'silero-v5', ['--input-shape', 'input=4,512', '--value', 'sr=16000'], mode, { stateN: 1 });
  });
}

test('silero VAD: what cannot run is one parallax: line and exit 2', needs(v4Missing(), v5Missing()), async () => {
  const v4 = model(sileroV4ModelPath(), 'silero VAD v4');
  const v5 = model(sileroV5ModelPath(), 'silero VAD v5');
  const base = ['--devices', 'cpu:2', '--batch', '4', '--no-op-level'];
  const cases: { args: string[]; pattern: RegExp }[] = [
    // A sample rate is not random data.
    { args: ['profile', v4, ...base, '--dim', 'sequence=512'], pattern: /input "sr".*looks like a rate.*--value sr=/ },
    { args: ['profile', v5, ...base, '--input-shape', 'input=4,512', '--mode', 'pipeline', '--micro-batches', '2'], pattern: /input "sr".*--value sr=/ },
    // v5's input has an unnamed length: one placeholder per dimension, never one for two.
    { args: ['profile', v5, ...base, '--value', 'sr=16000'], pattern: /input "input" has unset dimension axis 1 \(unnamed\); set them with --input-shape input=1,D1$/ },
    { args: ['profile', v4, ...base, '--dim', 'sequence=512', '--value', 'sr=abc'], pattern: /--value expects NAME=NUMBER/ },
    { args: ['profile', v4, ...base, '--dim', 'sequence=512', '--value', 'rate=16000'], pattern: /--value rate=16000: .* has no input "rate"/ },
    { args: ['profile', v4, ...base, '--dim', 'sequence=512', '--value', 'sr=16000', '--value', 'h=0'], pattern: /--value h=0: input "h" .* has a batch axis/ },
  ];
  for (const c of cases) {
    const r = await runCli([...c.args, '--out', join(dir, 'bad.parallax.json'), '--steps', '1', '--warmup', '0'], { env });
    assert.equal(r.code, 2, `${c.args.join(' ')}: exit 2, got ${r.code}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
    assert.match(lines[0], /^parallax: /);
    assert.match(lines[0], c.pattern);
  }
});
