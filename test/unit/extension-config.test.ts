/**
 * parallax.json: parsing with exact key positions, the checks the schema cannot make, the
 * runner's plan, the plan's trace file names, and the JSON schema VS Code validates with.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Ajv from 'ajv';
import {
  PLAN_KEYS,
  configTraceName,
  configTraceOrder,
  deviceCount,
  effectiveValue,
  findPlan,
  isConfigTraceOf,
  isRunnable,
  keyAt,
  parseConfig,
  planAt,
  toProfilePlan,
  tracesToPrune,
  type TextSpan,
} from '../../src/extension/config-model';
import { DEFAULT_PROFILE_SETTINGS, hybridShape } from '../../src/extension/run-config';

const REPO = join(__dirname, '..', '..');
const at = (text: string, s: TextSpan): string => text.slice(s.offset, s.offset + s.length);

const CONFIG = `{
  // Plans for the demo model.
  "plans": {
    "pipe2": {
      "model": "models/demo.onnx",
      "mode": "pipeline",
      "devices": "cpu:2",
      "batch": 64,
      "microBatches": 2,
      "steps": 5,
    },
    "data2": { "model": "/abs/demo.onnx", "devices": "cpu:2", "batch": 32, "dims": { "seq": 16 } }
  }
}`;

describe('parallax.json parsing', () => {
  it('finds every plan with the exact spans of its name and of each key and value, comments and trailing commas allowed', () => {
    const doc = parseConfig(CONFIG);
    assert.deepEqual(doc.problems, []);
    assert.deepEqual(
      doc.plans.map((p) => p.name),
      ['pipe2', 'data2'],
    );
    const pipe = findPlan(doc, 'pipe2')!;
    assert.equal(at(CONFIG, pipe.nameSpan), '"pipe2"');
    const mb = pipe.keys.get('microBatches')!;
    assert.equal(at(CONFIG, mb.keySpan), '"microBatches"');
    assert.equal(at(CONFIG, mb.valueSpan), '2');
    assert.equal(at(CONFIG, mb.propertySpan), '"microBatches": 2');
    assert.equal(mb.value, 2);
    assert.deepEqual(pipe.values, { model: 'models/demo.onnx', mode: 'pipeline', devices: 'cpu:2', batch: 64, microBatches: 2, steps: 5 });
    assert.deepEqual(findPlan(doc, 'data2')!.values.dims, { seq: 16 });
    assert.ok(isRunnable(pipe));
  });

  it('finds the plan and key at an offset, for hovers and quick fixes', () => {
    const doc = parseConfig(CONFIG);
    const offset = CONFIG.indexOf('"microBatches"') + 3;
    const plan = planAt(doc, offset)!;
    assert.equal(plan.name, 'pipe2');
    assert.equal(keyAt(plan, offset)?.key, 'microBatches');
    assert.equal(keyAt(plan, CONFIG.indexOf(': 2,') + 2)?.key, 'microBatches', 'the value counts as the key');
    assert.equal(planAt(doc, 2), undefined);
  });

  it('reports syntax, missing plans, wrong types and unknown keys as the schema would (not repeated as diagnostics)', () => {
    assert.ok(parseConfig('{ "plans": { "a": { "model": "m.onnx", } ').problems.some((p) => p.bySchema && /JSON syntax/.test(p.message)));
    assert.match(parseConfig('{}').problems[0]!.message, /needs a "plans" object/);
    assert.match(parseConfig('[1]').problems[0]!.message, /must hold an object/);
    const text = '{ "plans": { "a": { "model": "m.onnx", "batch": "64", "devices": "gpu:2", "colour": 1 }, "b": { "mode": "data" } } }';
    const doc = parseConfig(text);
    const a = findPlan(doc, 'a')!;
    const batch = a.problems.find((p) => p.key === 'batch')!;
    assert.equal(at(text, batch.span), '"64"');
    assert.ok(batch.bySchema);
    assert.ok(a.problems.some((p) => p.key === 'devices' && p.severity === 'error'));
    const unknown = a.problems.find((p) => p.key === 'colour')!;
    assert.equal(unknown.severity, 'warning');
    assert.equal(at(text, unknown.span), '"colour"');
    assert.equal(a.values.batch, undefined, 'a wrong-typed value is left out');
    assert.ok(!isRunnable(a));
    const b = findPlan(doc, 'b')!;
    assert.match(b.problems[0]!.message, /has no "model"/);
    assert.equal(at(text, b.problems[0]!.span), '"b"');
  });

  it('checks what the schema cannot: micro-batches divide the batch, one stage and one cut gap per device, pipeline keys only in pipelines', () => {
    const text = `{ "plans": {
      "p": { "model": "m.onnx", "mode": "pipeline", "devices": "cpu:2,webgpu:1", "batch": 64, "microBatches": 6, "stages": 2, "cuts": ["/a/Add"] },
      "d": { "model": "m.onnx", "mode": "data", "microBatches": 4 } } }`;
    const doc = parseConfig(text);
    const p = findPlan(doc, 'p')!.problems.filter((x) => !x.bySchema);
    const byKey = new Map(p.map((x) => [x.key, x]));
    assert.match(byKey.get('microBatches')!.message, /6 micro-batches do not divide the batch of 64; e\.g\. 4 does/);
    assert.equal(at(text, byKey.get('microBatches')!.span), '"microBatches"');
    assert.match(byKey.get('stages')!.message, /2 stages but "devices": "cpu:2,webgpu:1" has 3/);
    assert.match(byKey.get('cuts')!.message, /1 cut make 2 stages, .* has 3; give 2/);
    const d = findPlan(doc, 'd')!.problems.filter((x) => !x.bySchema);
    assert.equal(d.length, 1);
    assert.equal(d[0]!.severity, 'warning');
    assert.match(d[0]!.message, /"microBatches" applies to "mode": "pipeline" only/);
  });

  it('counts devices in a spec', () => {
    assert.equal(deviceCount('cpu:2'), 2);
    assert.equal(deviceCount('cpu:1, webgpu:1,cuda'), 3);
    assert.equal(deviceCount('gpu:2'), null);
  });
});

describe('a plan as the runner’s plan', () => {
  const settings = { ...DEFAULT_PROFILE_SETTINGS, devices: 'cpu:4', batch: 16, steps: 7, warmup: 2 };

  it('resolves paths from the config file’s folder and fills in the settings’ defaults', () => {
    const text = '{ "plans": { "p": { "model": "models/x.onnx", "mode": "pipeline", "inputs": "in.npy", "cuts": ["/l/Add"], "devices": "cpu : 2" } } }';
    const plan = findPlan(parseConfig(text), 'p')!;
    const pp = toProfilePlan(plan, '/ws/parallax.json', settings, '/ws/runs/x.parallax.json')!;
    assert.equal(pp.modelPath, '/ws/models/x.onnx');
    assert.equal(pp.modelLabel, 'models/x.onnx');
    assert.equal(pp.inputsFile, '/ws/in.npy');
    assert.equal(pp.plan.devices, 'cpu:2');
    assert.equal(pp.plan.batch, 16);
    assert.equal(pp.plan.steps, 7);
    assert.equal(pp.plan.warmup, 2);
    assert.equal(pp.plan.mode === 'pipeline' ? pp.plan.microBatches : null, 4, 'pipelines default to 4 micro-batches, as the CLI does');
    assert.deepEqual(pp.plan.mode === 'pipeline' ? pp.plan.cuts : null, ['/l/Add']);
    assert.equal(pp.outPath, '/ws/runs/x.parallax.json');
    assert.equal(pp.capture, true);
  });

  it('leaves pipeline fields out of a data plan and refuses a plan with errors', () => {
    const doc = parseConfig('{ "plans": { "d": { "model": "/m.onnx", "batch": 8 }, "bad": { "model": "/m.onnx", "batch": 0 } } }');
    const pp = toProfilePlan(findPlan(doc, 'd')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.equal(pp.plan.mode, 'data');
    assert.equal('microBatches' in pp.plan, false);
    assert.equal(pp.plan.devices, 'cpu:4');
    assert.equal(toProfilePlan(findPlan(doc, 'bad')!, '/ws/parallax.json', settings, '/o.json'), null);
  });

  it('passes "deviceMemory" on as bytes, as --device-memory does, and refuses a size it cannot read', () => {
    const doc = parseConfig('{ "plans": { "m": { "model": "/m.onnx", "deviceMemory": "16GiB" }, "none": { "model": "/m.onnx" }, "bad": { "model": "/m.onnx", "deviceMemory": "16 parsecs" } } }');
    assert.equal(toProfilePlan(findPlan(doc, 'm')!, '/ws/parallax.json', settings, '/o.json')!.deviceMemory, 16 * 1024 ** 3);
    assert.equal('deviceMemory' in toProfilePlan(findPlan(doc, 'none')!, '/ws/parallax.json', settings, '/o.json')!, false);
    const bad = findPlan(doc, 'bad')!.problems.find((p) => p.key === 'deviceMemory');
    assert.ok(bad, JSON.stringify(findPlan(doc, 'bad')!.problems));
    assert.match(bad.message, /"deviceMemory" must be a size such as "16GiB"/);
    assert.equal(toProfilePlan(findPlan(doc, 'bad')!, '/ws/parallax.json', settings, '/o.json'), null);
  });

  it('trains a data or pipeline plan with "train", its settings over the defaults; refuses bad settings and 1F1B without training', () => {
    const doc = parseConfig(
      '{ "plans": { "t": { "model": "/m.onnx", "train": { "optimizer": "adam", "lr": 0.001 } }, "bad": { "model": "/m.onnx", "train": { "lr": -1 } }, "pipe": { "model": "/m.onnx", "mode": "pipeline", "schedule": "1f1b", "train": {} }, "inf1f1b": { "model": "/m.onnx", "mode": "pipeline", "schedule": "1f1b" } } }',
    );
    const pp = toProfilePlan(findPlan(doc, 't')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.deepEqual(pp.plan.mode === 'data' ? pp.plan.train : null, { loss: 'mse', optimizer: 'adam', lr: 0.001, bucketMb: 25 });
    const bad = findPlan(doc, 'bad')!;
    assert.equal(isRunnable(bad), false);
    assert.match(bad.problems[0]!.message, /"train" must be an object of "loss"/);
    const pipe = toProfilePlan(findPlan(doc, 'pipe')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.deepEqual(pp.plan.mode === 'data' ? pp.plan.train : null, { loss: 'mse', optimizer: 'adam', lr: 0.001, bucketMb: 25 });
    assert.ok(pipe.plan.mode === 'pipeline' && pipe.plan.schedule === '1f1b' && pipe.plan.train?.optimizer === 'sgd', 'a training pipeline with the defaults');
    const inference = findPlan(doc, 'inf1f1b')!;
    assert.equal(isRunnable(inference), false);
    assert.match(inference.problems.find((x) => x.key === 'schedule')!.message, /"schedule": "1f1b" .*needs "train"/);
  });

  it('runs a tensor plan with its "tensor" degree and training; refuses a degree other than the device count, warns on other modes\' keys', () => {
    const doc = parseConfig(
      '{ "plans": { "t": { "model": "/m.onnx", "mode": "tensor", "devices": "cpu:2", "tensor": 2 }, "n": { "model": "/m.onnx", "mode": "tensor", "devices": "cpu:2", "tensor": 4 }, "x": { "model": "/m.onnx", "mode": "tensor", "microBatches": 2, "shards": [1, 1] }, "tr": { "model": "/m.onnx", "mode": "tensor", "train": {} }, "d": { "model": "/m.onnx", "tensor": 2 } } }',
    );
    const pp = toProfilePlan(findPlan(doc, 't')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.deepEqual(pp.plan, { mode: 'tensor', devices: 'cpu:2', batch: 16, steps: 7, warmup: 2, seed: 0, tensor: 2 });
    const n = findPlan(doc, 'n')!;
    assert.equal(isRunnable(n), false);
    assert.match(n.problems.find((x) => x.key === 'tensor')!.message, /"tensor": 4 splits every weight over 4 devices, but "devices": "cpu:2" has 2/);
    const x = findPlan(doc, 'x')!;
    assert.equal(isRunnable(x), true, 'other modes\' keys are warnings');
    assert.deepEqual(x.problems.map((p) => [p.key, p.severity]).sort(), [['microBatches', 'warning'], ['shards', 'warning']]);
    const xp = toProfilePlan(x, '/ws/parallax.json', settings, '/o.json')!;
    assert.equal('microBatches' in xp.plan || 'shards' in xp.plan, false, 'and are left out of the run');
    const tr = findPlan(doc, 'tr')!;
    assert.equal(isRunnable(tr), true, JSON.stringify(tr.problems));
    const trp = toProfilePlan(tr, '/ws/parallax.json', settings, '/o.json')!;
    assert.ok(trp.plan.mode === 'tensor' && trp.plan.train?.optimizer === 'sgd', 'a tensor plan that trains, with the defaults');
    assert.match(findPlan(doc, 'd')!.problems.find((p) => p.key === 'tensor')!.message, /"tensor" applies to "mode": "tensor" only/);
  });

  it('takes the training flags in "train": gradDtype, syncEvery, labels beside the config, freeze; refuses compression with local SGD', () => {
    const doc = parseConfig(
      '{ "plans": { "c": { "model": "/m.onnx", "train": { "gradDtype": "int8", "labels": "data/y.npy", "freeze": ["layers.0.*"] } }, ' +
        '"l": { "model": "/m.onnx", "train": { "syncEvery": 4, "labels": "/abs/y.npy" } }, ' +
        '"both": { "model": "/m.onnx", "train": { "syncEvery": 2, "gradDtype": "float16" } }, ' +
        '"bad": { "model": "/m.onnx", "train": { "gradDtype": "int4", "syncEvery": 0 } } } }',
    );
    const c = toProfilePlan(findPlan(doc, 'c')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.deepEqual(c.plan.mode === 'data' ? c.plan.train : null, { loss: 'mse', optimizer: 'sgd', lr: 0.01, bucketMb: 25, gradDtype: 'int8', labels: '/ws/data/y.npy', freeze: ['layers.0.*'] });
    const l = toProfilePlan(findPlan(doc, 'l')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.equal(l.plan.mode === 'data' ? l.plan.train?.syncEvery : null, 4);
    assert.equal(l.plan.mode === 'data' ? l.plan.train?.labels : null, '/abs/y.npy');
    const both = findPlan(doc, 'both')!;
    assert.equal(isRunnable(both), false);
    assert.match(both.problems.find((x) => x.key === 'train')!.message, /use one or the other/);
    const bad = findPlan(doc, 'bad')!;
    assert.equal(isRunnable(bad), false);
    assert.match(bad.problems[0]!.message, /"gradDtype" \(float32, float16, int8\)/);
  });

  it('runs a hybrid plan with its "data" and "tensor"; refuses a product other than the device count or a missing degree', () => {
    const doc = parseConfig(
      '{ "plans": { "h": { "model": "/m.onnx", "mode": "hybrid", "devices": "cpu:4", "data": 2, "tensor": 2 }, "w": { "model": "/m.onnx", "mode": "hybrid", "devices": "cpu:2", "data": 2, "tensor": 2 }, "m": { "model": "/m.onnx", "mode": "hybrid", "devices": "cpu:4", "tensor": 2 }, "d": { "model": "/m.onnx", "mode": "tensor", "data": 2 } } }',
    );
    const hp = toProfilePlan(findPlan(doc, 'h')!, '/ws/parallax.json', settings, '/o.json')!;
    assert.deepEqual(hp.plan, { mode: 'hybrid', devices: 'cpu:4', batch: 16, steps: 7, warmup: 2, seed: 0, data: 2, tensor: 2 });
    const w = findPlan(doc, 'w')!;
    assert.equal(isRunnable(w), false);
    assert.match(w.problems.find((x) => x.key === 'data')!.message, /"data": 2 × "tensor": 2 needs 4 devices, but "devices": "cpu:2" has 2/);
    const m = findPlan(doc, 'm')!;
    assert.equal(isRunnable(m), false);
    assert.match(m.problems.find((x) => x.key === 'data')!.message, /"mode": "hybrid" needs "data" \(replicas\) and "tensor"/);
    assert.match(findPlan(doc, 'd')!.problems.find((p) => p.key === 'data')!.message, /"data" applies to "mode": "hybrid" only/);
    assert.deepEqual(hybridShape('cpu:4'), { data: 2, tensor: 2 });
    assert.deepEqual(hybridShape('cpu:6'), { data: 2, tensor: 3 });
  });

  it('gives the value a plan runs with, written or defaulted', () => {
    const doc = parseConfig('{ "plans": { "p": { "model": "m.onnx", "mode": "pipeline" }, "d": { "model": "m.onnx" } } }');
    assert.equal(effectiveValue(findPlan(doc, 'p')!, 'microBatches', settings), 4);
    assert.equal(effectiveValue(findPlan(doc, 'p')!, 'devices', settings), 'cpu:4');
    assert.equal(effectiveValue(findPlan(doc, 'd')!, 'microBatches', settings), undefined);
  });
});

describe('trace files of a plan', () => {
  const at0 = new Date(2025, 0, 2, 3, 4, 5);

  it('are named <model>.<plan>.<local time>.parallax.json, plan names made file-safe', () => {
    assert.equal(configTraceName('/ws/models/demo.onnx', 'pipe 2/x', at0), 'demo.pipe_2_x.20250102-030405.parallax.json');
    assert.equal(configTraceName('/ws/models/demo.onnx', 'p', at0, 2), 'demo.p.20250102-030405-2.parallax.json');
  });

  it('belong to exactly one plan, even when one plan’s name starts another’s', () => {
    const a = configTraceName('/m/demo.onnx', 'a', at0);
    const ab = configTraceName('/m/demo.onnx', 'a-b', at0);
    assert.ok(isConfigTraceOf(a, '/m/demo.onnx', 'a'));
    assert.ok(!isConfigTraceOf(ab, '/m/demo.onnx', 'a'));
    assert.ok(isConfigTraceOf(ab, '/m/demo.onnx', 'a-b'));
    assert.ok(!isConfigTraceOf(a, '/m/other.onnx', 'a'));
    assert.ok(!isConfigTraceOf('demo-pipeline.parallax.json', '/m/demo.onnx', 'pipeline'));
  });

  it('are pruned oldest first down to the number kept', () => {
    const names = [
      configTraceName('/m/d.onnx', 'p', new Date(2025, 0, 2, 3, 4, 6)),
      configTraceName('/m/d.onnx', 'p', at0, 1),
      configTraceName('/m/d.onnx', 'p', at0),
      configTraceName('/m/d.onnx', 'p', new Date(2024, 11, 31)),
    ];
    assert.deepEqual(tracesToPrune(names, 2), [names[3], names[2]]);
    assert.deepEqual(tracesToPrune(names, 0), []);
    assert.deepEqual(tracesToPrune(names, 4), []);
    assert.ok(configTraceOrder(names[1]!) > configTraceOrder(names[2]!));
  });
});

describe('the JSON schema (schemas/parallax-config.schema.json)', () => {
  const schema = JSON.parse(readFileSync(join(REPO, 'schemas', 'parallax-config.schema.json'), 'utf8')) as {
    definitions: { plan: { properties: Record<string, unknown> } };
  };
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(schema);

  it('documents exactly the keys the parser reads', () => {
    assert.deepEqual(Object.keys(schema.definitions.plan.properties).sort(), [...PLAN_KEYS].sort());
  });

  it('accepts a full config and rejects unknown keys, bad device specs and a missing model', () => {
    const good = { plans: { p: { model: 'm.onnx', mode: 'pipeline', devices: 'cpu:1,webgpu:1', batch: 8, microBatches: 4, cuts: ['/a/Add'], steps: 3, warmup: 0, dims: { seq: 4 }, inputShapes: { x: [8, 4] }, deviceMemory: '16 GiB' } } };
    assert.ok(validate(good), JSON.stringify(validate.errors));
    assert.ok(!validate({ plans: { p: { model: 'm.onnx', colour: 1 } } }));
    assert.ok(!validate({ plans: { p: { model: 'm.onnx', devices: 'gpu:2' } } }));
    assert.ok(!validate({ plans: { p: { mode: 'data' } } }));
    assert.ok(!validate({ plans: { p: { model: 'm.onnx', microBatches: 0 } } }));
    assert.ok(!validate({ plans: { p: { model: 'm.onnx', deviceMemory: '16 parsecs' } } }));
  });
});
