/**
 * Tensor-parallel findings on hand-built traces with known answers: each layer's all-reduce
 * split into waiting for the last device and reducing, the split compute read from the
 * operator-profiled steps, the layers worth keeping whole (and the predicted step), the
 * measured data-parallel alternative; and `--keep-whole` in the planner.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { analyse } from '../../src/profiler/analysis/index';
import { tensorCollectivesRule, tensorVsDataRule } from '../../src/profiler/findings-tensor';
import { SpanFlag, type SpanRow, type TraceMeta } from '../../src/profiler/trace-format';
import type { TensorPlan } from '../../src/profiler/plan';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { keptWhole, planTensorSharding } from '../../src/runtime/tensor/shard-plan';
import { isUserError } from '../../src/common/errors';
import { meta, traceOf } from '../helpers/trace-builders';

const STEP = 8000;
const TIMED = 3;

interface Layer {
  label: string;
  nodes: string[];
  /** Per lane: when it arrives at the layer's all-reduce, µs after the step's start. */
  arrive: number[];
  transferUs: number;
  /** Per node, its operator time on each device in the profiled step. */
  opUs: number;
}

function tensorPlan(layers: readonly Layer[], devices: number, data = 1): TensorPlan {
  const plan = {
    mode: data > 1 ? 'hybrid' : 'tensor',
    devices: `cpu:${devices}`,
    batch: 8,
    steps: TIMED,
    warmup: 0,
    seed: 0,
    tensor: devices / data,
    ...(data > 1 ? { data } : {}),
    groups: layers.map((l) => ({ label: l.label, allReduces: 1, allGathers: 0, nodes: l.nodes })),
    parameterBytes: 1_000_000,
  };
  return plan as unknown as TensorPlan;
}

/**
 * A trace of `layers` on `devices` lanes: per step each lane computes, arrives at each layer's
 * all-reduce at `arrive[lane]`, and every lane of its replica leaves `transferUs` after the last
 * one of the replica arrived. Step TIMED (after the timed ones) is operator-profiled.
 */
function tensorTrace(layers: readonly Layer[], opts: { devices?: number; data?: number; labelled?: boolean; ops?: boolean; probe?: number[] } = {}) {
  const n = opts.devices ?? 2;
  const data = opts.data ?? 1;
  const t = n / data;
  const rows: SpanRow[] = [];
  for (let s = 0; s < TIMED; s++) {
    const base = s * STEP;
    for (let lane = 0; lane < n; lane++) {
      const replica = Math.floor(lane / t);
      let at = base;
      for (const l of layers) {
        const arrive = base + l.arrive[lane]!;
        const last = base + Math.max(...l.arrive.slice(replica * t, replica * t + t));
        rows.push({ lane, kind: 'compute', name: 'session.run', start: at, dur: arrive - at, step: s, phase: 'forward' });
        const name = opts.labelled === false ? 'allreduce.ring' : `allreduce.ring (${l.label})`;
        rows.push({ lane, kind: 'comm', name, comm: 'allreduce', start: arrive, dur: last + l.transferUs - arrive, step: s, bytes: 4096 });
        at = last + l.transferUs;
      }
    }
  }
  const profiled = TIMED * STEP;
  if (opts.ops !== false) {
    for (let lane = 0; lane < n; lane++) {
      let at = profiled;
      for (const l of layers) {
        for (const node of l.nodes) {
          rows.push({ lane, kind: 'compute', name: `fused ${node}`, opType: 'MatMul', start: at, dur: l.opUs, step: TIMED, flags: SpanFlag.op });
          at += l.opUs;
        }
      }
    }
  }
  const steps = Array.from({ length: TIMED }, (_, s): [number, number] => [s * STEP, (s + 1) * STEP]);
  const m: TraceMeta = meta({ plan: tensorPlan(layers, n, data), ...(opts.probe ? { dataProbe: { devices: `cpu:${n}`, stepTimesUs: opts.probe } } : {}) }, n);
  const trace = traceOf(rows, steps, m);
  trace.profiledSteps = [{ index: TIMED, startUs: profiled, endUs: profiled + STEP }];
  return trace;
}

// Layer A: lane 1 arrives 500 µs after lane 0, then 300 µs reducing; its split saves 800 µs.
// Layer B: both arrive together, 3000 µs reducing; its split saves only 600 µs of compute.
const A: Layer = { label: '/l0/mlp', nodes: ['/l0/fc1/MatMul', '/l0/fc2/MatMul'], arrive: [2000, 2500], transferUs: 300, opUs: 400 };
const B: Layer = { label: '/l1/mlp', nodes: ['/l1/fc1/MatMul', '/l1/fc2/MatMul'], arrive: [5000, 5000], transferUs: 3000, opUs: 300 };

describe('tensor analysis', () => {
  it('splits each layer\'s all-reduce into waiting for the last device and reducing, and reads its split compute from the profiled operators', () => {
    const a = analyse(tensorTrace([A, B]));
    assert.ok(a.tensor);
    const [la, lb] = a.tensor.layers;
    assert.equal(la!.label, '/l0/mlp');
    assert.equal(la!.waitUs, 250, 'lane 0 waits 500 µs, lane 1 none: 250 per device');
    assert.equal(la!.transferUs, 300);
    assert.equal(la!.collectiveUs, 550);
    assert.equal(la!.splitComputeUs, 800);
    assert.equal(lb!.waitUs, 0);
    assert.equal(lb!.transferUs, 3000);
    assert.equal(lb!.splitComputeUs, 600);
    assert.equal(a.tensor.collectiveUs, 3550);
  });

  it('matches all-reduces to layers by position when their spans carry no label', () => {
    const a = analyse(tensorTrace([A, B], { labelled: false }));
    assert.deepEqual(a.tensor!.layers.map((l) => l.transferUs), [300, 3000]);
  });

  it('in a data × tensor hybrid, waits are within each replica only', () => {
    // Replica 1 (lanes 2, 3) arrives 1000 µs later than replica 0: not a wait, the replicas do not synchronise.
    const A4: Layer = { ...A, arrive: [2000, 2500, 3000, 3000] };
    const B4: Layer = { ...B, arrive: [5000, 5000, 6000, 6000] };
    const a = analyse(tensorTrace([A4, B4], { devices: 4, data: 2 }));
    assert.deepEqual(a.tensor!.groups, [[0, 1], [2, 3]]);
    assert.equal(a.tensor!.layers[0]!.waitUs, 125, '500 µs on one of four devices');
    assert.equal(a.tensor!.layers[1]!.waitUs, 0);
  });

  it('is null for runs that split no weights', () => {
    assert.equal(analyse(traceOf([], [[0, 10]])).tensor, null);
  });
});

describe('tensor-collectives', () => {
  it('suggests keeping whole the layer whose reduction costs more than its split saves, and predicts the step from both measured terms', () => {
    const trace = tensorTrace([A, B]);
    const [f] = tensorCollectivesRule(trace, analyse(trace));
    assert.ok(f);
    assert.equal(f.severity, 'warning', '3.55 ms of 8 ms is 44 %');
    assert.deepEqual(f.change.params, { keepWhole: ['/l1/mlp'] });
    assert.equal(f.predictedStepUs, STEP - (3000 - 600));
    assert.match(f.message, /take 44% of each step/);
    assert.match(f.message, /250 µs waiting/);
    assert.match(f.change.description, /--keep-whole "\/l1\/mlp"/);
  });

  it('without operator detail it reports the share and says why it cannot weigh the splits', () => {
    const trace = tensorTrace([A, B], { ops: false });
    const [f] = tensorCollectivesRule(trace, analyse(trace));
    assert.equal(f!.severity, 'info');
    assert.deepEqual(f!.change.params, {});
    assert.match(f!.change.description, /no operator detail/);
  });

  it('when every layer\'s reduction costs more than its split saves, it points to the data-parallel comparison instead of keeping everything whole', () => {
    const B2: Layer = { ...B, label: '/l0/mlp', nodes: A.nodes, arrive: [2000, 2000] };
    const C: Layer = { ...B, arrive: [7000, 7000] };
    const trace = tensorTrace([{ ...B2, transferUs: 3000 }, { ...C, transferUs: 800 }]);
    const [f] = tensorCollectivesRule(trace, analyse(trace));
    assert.equal(f!.severity, 'info');
    assert.match(f!.change.description, /no split pays here/);
  });

  it('stays quiet when the collectives are a small share of the step', () => {
    const small: Layer = { ...B, transferUs: 100 };
    const trace = tensorTrace([A, small]);
    assert.deepEqual(tensorCollectivesRule(trace, analyse(trace)), []);
  });
});

describe('tensor-vs-data', () => {
  it('suggests data parallelism with the step the run measured for it', () => {
    const trace = tensorTrace([A, B], { probe: [5000, 4000, 4500] });
    const [f] = tensorVsDataRule(trace, analyse(trace));
    assert.ok(f);
    assert.deepEqual(f.change.params, { mode: 'data' });
    assert.equal(f.predictedStepUs, 4500);
    assert.equal(f.severity, 'critical', '8 ms against 4.5 ms is 1.78×');
    assert.match(f.change.description, /measured in this run, 3 steps/);
  });

  it('says nothing when data parallelism measured no faster', () => {
    const trace = tensorTrace([A, B], { probe: [7900, 8100, 8000] });
    assert.deepEqual(tensorVsDataRule(trace, analyse(trace)), []);
    assert.deepEqual(tensorVsDataRule(tensorTrace([A, B]), analyse(tensorTrace([A, B]))), [], 'no probe, no finding');
  });
});

describe('--keep-whole in the planner', () => {
  const ir = parseModel(buildDemoModel({ layers: 3, hidden: 64, ffn: 256 }), 'demo.onnx');

  it('matches node names, scopes and globs', () => {
    assert.ok(keptWhole('/layers.1/mlp/fc1/MatMul', '/layers.1/mlp'));
    assert.ok(keptWhole('/layers.1/mlp/fc1/MatMul', '/layers.1/mlp/'));
    assert.ok(!keptWhole('/layers.10/mlp/fc1/MatMul', '/layers.1'), 'a scope ends at a slash');
    assert.ok(keptWhole('/layers.1/mlp/fc1/MatMul', '/layers.*/mlp/fc1/MatMul'));
    assert.ok(keptWhole('/layers.1/mlp/fc1/MatMul', '/layers.1/mlp/fc1/MatMul'));
  });

  it('leaves the named layer whole, says why, and splits the rest', () => {
    const all = planTensorSharding(ir, 2);
    const kept = planTensorSharding(ir, 2, { keepWhole: ['/layers.1/mlp'] });
    assert.equal(kept.groups.length, all.groups.length - 1);
    assert.ok(!kept.groups.some((g) => g.label === '/layers.1/mlp'));
    assert.ok(kept.notSplit.some((x) => x.node.startsWith('/layers.1/mlp/') && /kept whole by --keep-whole/.test(x.reason)));
    assert.ok(kept.perDeviceParameterBytes[0]! > all.perDeviceParameterBytes[0]!, 'a whole layer is held by every device');
  });

  it('refuses a pattern that matches nothing, and keeping every layer whole leaves nothing to split', () => {
    assert.throws(() => planTensorSharding(ir, 2, { keepWhole: ['/nope'] }), (e: unknown) => isUserError(e) && /--keep-whole \/nope matches no/.test((e as Error).message));
    assert.throws(() => planTensorSharding(ir, 2, { keepWhole: ['/layers.*'] }), (e: unknown) => isUserError(e) && /nothing to split/.test((e as Error).message));
  });
});
