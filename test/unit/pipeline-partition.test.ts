/**
 * Pipeline partitioning on the demo model and on small graphs built by hand: balance,
 * optimality against brute force, skip connections, shared weights, Constants, subgraph
 * ops, explicit cuts and their errors, and the printed plan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { onnx } from 'onnx-proto';
import { UserError } from '../../src/common/errors';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { estimateCosts, parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { mulberry32 } from '../../src/runtime/onnx/random';
import { estimateNodeCostsUs, partitionFromCuts, partitionPipeline, type Partition } from '../../src/runtime/pipeline/partition';
import { formatPartition } from '../../src/runtime/pipeline/plan-format';

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const T = onnx.AttributeProto.AttributeType;

function vi(name: string, elemType = FLOAT, dims: Array<number | string> = ['batch', 4]): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

function node(name: string, opType: string, input: string[], output: string[], attribute: onnx.IAttributeProto[] = []): onnx.INodeProto {
  return { name, opType, input, output, attribute };
}

function irOf(graph: onnx.IGraphProto, path = 'hand.onnx'): ModelIR {
  const bytes = onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph }).finish();
  return parseModel(bytes, path);
}

/**
 * Two inputs, three outputs, a residual `r` that skips ahead, a weight `W` read by two
 * nodes, and a Constant `two` read by two nodes (listed first, as exporters write them).
 */
function skipGraph(): ModelIR {
  return irOf({
    name: 'skip',
    node: [
      node('const_two', 'Constant', [], ['two'], [{ name: 'value', type: T.TENSOR, t: { dims: [], dataType: FLOAT, floatData: [2] } }]),
      node('relu', 'Relu', ['a'], ['r']),
      node('add_b', 'Add', ['r', 'b'], ['s']),
      node('mul_w', 'Mul', ['s', 'W'], ['m']),
      node('sigmoid', 'Sigmoid', ['m'], ['g']),
      node('mul_two', 'Mul', ['g', 'two'], ['h']),
      node('mul_w2', 'Mul', ['h', 'W'], ['hw']),
      node('skip', 'Add', ['hw', 'r'], ['y1']),
      node('scale', 'Mul', ['y1', 'two'], ['y2']),
      node('sub_b', 'Sub', ['y2', 'b'], ['y3']),
    ],
    initializer: [{ name: 'W', dims: [4], dataType: FLOAT, floatData: [1, 2, 3, 4] }],
    input: [vi('a'), vi('b')],
    output: [vi('y1'), vi('g'), vi('y3')],
  });
}

/** A chain x → n0 → n1 → … → y of `n` Relu nodes. */
function chain(n: number): ModelIR {
  const nodes = Array.from({ length: n }, (_, i) => node(`n${i}`, 'Relu', [i === 0 ? 'x' : `t${i - 1}`], [i === n - 1 ? 'y' : `t${i}`]));
  return irOf({ name: 'chain', node: nodes, input: [vi('x')], output: [vi('y')] });
}

/** Costs by node name (every other node 0). */
function costsByName(ir: ModelIR, byName: Record<string, number>): Float64Array {
  return Float64Array.from(ir.nodes, (n) => byName[n.name] ?? 0);
}

function stageNames(p: Partition, ir: ModelIR): string[][] {
  return p.stages.map((s) => s.nodeIndices.map((i) => ir.nodes[i].name));
}

/** Every way to choose `k` items of `items`, in order. */
function* combinations<X>(items: X[], k: number, from = 0): Generator<X[]> {
  if (k === 0) {
    yield [];
    return;
  }
  for (let i = from; i <= items.length - k; i++) for (const rest of combinations(items, k - 1, i + 1)) yield [items[i], ...rest];
}

/** Bytes each stage sends to later stages, each tensor once per producing stage (what balancing weighs). */
function sentOnce(p: Partition): number {
  let total = 0;
  for (const s of p.stages) for (const o of s.outputs) if (o.to.some((d) => d !== 'graph')) total += o.bytes ?? 0;
  return total;
}

function assertOneLineUserError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, pattern);
    return true;
  });
}

test('pipeline partition balances the demo model within 10% for 2 and 4 stages by FLOPs', () => {
  const ir = parseModel(buildDemoModel({ hidden: 64, ffn: 128 }), 'demo.onnx');
  const flops = Float64Array.from(estimateCosts(ir, { batch: 1 }).nodes, (c) => c.flops ?? 0);
  for (const k of [2, 4]) {
    const p = partitionPipeline(ir, flops, k, { costSource: 'estimated' });
    assert.equal(p.stages.length, k);
    assert.ok(p.balance <= 1.1, `K=${k}: balance ${p.balance}`);
    // Every node in exactly one stage, the stages in order and contiguous.
    assert.deepEqual(p.stages.flatMap((s) => s.nodeIndices), p.order);
    assert.deepEqual([...p.order].sort((a, b) => a - b), ir.nodes.map((n) => n.index));
    // 24 equal blocks: the cuts fall between blocks, after each block's residual Add, carrying one 64-wide row.
    for (const c of p.cuts) assert.match(c, /^\/layers\.\d+\/Add$/);
    for (const s of p.stages.slice(0, -1)) assert.equal(s.cutBytesOut, 64 * 4);
  }
});

test('pipeline partition finds the brute-force optimal bottleneck on random chains, then the cheapest cuts', () => {
  const rand = mulberry32(42);
  for (let trial = 0; trial < 150; trial++) {
    const n = 3 + Math.floor(rand() * 7);
    const ir = chain(n);
    const cost = Float64Array.from({ length: n }, () => Math.floor(rand() * 20));
    const bytes = Array.from({ length: n }, () => 1 + Math.floor(rand() * 5));
    const comm = trial % 2 === 0 ? 0 : rand() * 3;
    const cutBytes = (t: string): number => (t === 'y' ? 0 : bytes[Number(t.slice(1))]);
    for (let k = 1; k <= Math.min(n, 5); k++) {
      // Brute force over every set of k − 1 cut positions: stage cost = its nodes + comm × the bytes of its last tensor.
      let best = Infinity;
      let bestBytes = Infinity;
      const positions = Array.from({ length: n - 1 }, (_, i) => i + 1);
      for (const cuts of combinations(positions, k - 1)) {
        const b = [0, ...cuts, n];
        let max = 0;
        let sent = 0;
        for (let s = 0; s < k; s++) {
          let c = 0;
          for (let i = b[s]; i < b[s + 1]; i++) c += cost[i];
          if (s < k - 1) {
            c += comm * bytes[b[s + 1] - 1];
            sent += bytes[b[s + 1] - 1];
          }
          max = Math.max(max, c);
        }
        if (max < best - 1e-9) {
          best = max;
          bestBytes = sent;
        } else if (Math.abs(max - best) <= 1e-9) bestBytes = Math.min(bestBytes, sent);
      }
      const p = partitionPipeline(ir, cost, k, { cutBytes, commCostUsPerByte: comm });
      assert.ok(Math.abs(p.bottleneckUs - best) < 1e-9, `n=${n} k=${k} comm=${comm}: got ${p.bottleneckUs}, optimum ${best}`);
      assert.equal(sentOnce(p), bestBytes, `n=${n} k=${k}: bytes`);
    }
  }
});

test('pipeline partition is optimal on a graph with skip connections, checked against every explicit cut', () => {
  const ir = skipGraph();
  const rand = mulberry32(7);
  const computing = ir.nodes.filter((n) => n.opType !== 'Constant').map((n) => n.name);
  // In pipeline order the Constant sits just before mul_two, so every computing node but the last can take a cut.
  const cuttable = partitionFromCuts(ir, []).order.map((i) => ir.nodes[i].name).filter((n) => computing.includes(n)).slice(0, -1);
  for (let trial = 0; trial < 20; trial++) {
    const cost = Float64Array.from(ir.nodes, (n) => (n.opType === 'Constant' ? 0 : Math.floor(rand() * 10)));
    const sizes = new Map(['r', 's', 'm', 'g', 'h', 'hw', 'y1', 'y2'].map((t) => [t, 1 + Math.floor(rand() * 8)]));
    const opts = { cutBytes: (t: string) => sizes.get(t) ?? 0, commCostUsPerByte: trial % 2 ? 0.5 : 0 };
    for (const k of [2, 3, 4]) {
      let best = Infinity;
      for (const cuts of combinations(cuttable, k - 1)) best = Math.min(best, partitionFromCuts(ir, cuts, { ...opts, nodeCostUs: cost }).bottleneckUs);
      const p = partitionPipeline(ir, cost, k, opts);
      assert.ok(Math.abs(p.bottleneckUs - best) < 1e-9, `k=${k}: got ${p.bottleneckUs}, brute force ${best}`);
    }
  }
});

test('a skipping tensor is sent straight from its producer to every stage that reads it', () => {
  const ir = skipGraph();
  const p = partitionFromCuts(ir, ['relu', 'mul_w', 'skip']);
  assert.deepEqual(stageNames(p, ir), [['relu'], ['add_b', 'mul_w'], ['sigmoid', 'const_two', 'mul_two', 'mul_w2', 'skip'], ['scale', 'sub_b']]);
  const [s0, s1, s2, s3] = p.stages;
  // r: produced in stage 0, read in stages 1 (add_b) and 2 (skip): two direct sends, nothing passed through.
  assert.deepEqual(s0.outputs, [{ name: 'r', to: [1, 2], bytes: 16 }]);
  assert.equal(s0.cutBytesOut, 32, 'a tensor sent to two stages counts twice');
  assert.deepEqual(s1.inputs, [{ name: 'r', from: 0 }, { name: 'b', from: 'graph' }]);
  assert.deepEqual(s1.outputs, [{ name: 'm', to: [2], bytes: 16 }]);
  assert.deepEqual(s2.inputs, [{ name: 'm', from: 1 }, { name: 'r', from: 0 }]);
  // g is a graph output only; y1 is both a graph output and read by stage 3.
  assert.deepEqual(s2.outputs, [
    { name: 'g', to: ['graph'], bytes: 16 },
    { name: 'y1', to: [3, 'graph'], bytes: 16 },
  ]);
  // The graph input b is fed to both stages that read it.
  assert.deepEqual(s3.inputs, [{ name: 'y1', from: 2 }, { name: 'b', from: 'graph' }]);
  assert.deepEqual(s3.outputs, [{ name: 'y3', to: ['graph'], bytes: 16 }]);
  assert.equal(s3.cutBytesOut, 0);
});

test('shared weights are copied into every stage that reads them, and Constants never cross a cut', () => {
  const ir = skipGraph();
  const p = partitionFromCuts(ir, ['mul_w', 'skip']);
  const [s0, s1, s2] = p.stages;
  assert.deepEqual(s0.initializers, ['W']);
  assert.deepEqual(s1.initializers, ['W']);
  assert.equal(s0.parameters, 4);
  assert.equal(s1.parameters, 4 + 1, 'W and the Constant it owns');
  // The Constant rides with its first consumer (mul_two, stage 1); stage 2 reads it too and gets a copy.
  assert.ok(s1.nodeIndices.map((i) => ir.nodes[i].name).includes('const_two'));
  assert.deepEqual(s2.constantCopies.map((i) => ir.nodes[i].name), ['const_two']);
  for (const s of p.stages) for (const i of s.inputs) assert.notEqual(i.name, 'two');
  assert.equal(s2.parameters, 1);
});

test('a node with a subgraph stays whole, and the outer tensors its body reads are stage inputs', () => {
  const branch = (op: string): onnx.IGraphProto => ({
    name: `${op}_branch`,
    node: [node(`${op}_in_body`, op, ['r', 'x'], [`${op}_out`])],
    output: [vi(`${op}_out`, FLOAT, [2, 3])],
  });
  const ir = irOf({
    name: 'if',
    node: [
      node('relu', 'Relu', ['x'], ['r']),
      node('sum', 'ReduceSum', ['r'], ['total'], [{ name: 'keepdims', type: T.INT, i: 0 }]),
      node('positive', 'Greater', ['total', 'zero'], ['cond']),
      node('choose', 'If', ['cond'], ['z'], [
        { name: 'then_branch', type: T.GRAPH, g: branch('Add') },
        { name: 'else_branch', type: T.GRAPH, g: branch('Sub') },
      ]),
      node('neg', 'Neg', ['z'], ['y']),
    ],
    initializer: [{ name: 'zero', dims: [], dataType: FLOAT, floatData: [0] }],
    input: [vi('x', FLOAT, [2, 3])],
    output: [vi('y', FLOAT, [2, 3])],
  });
  const p = partitionFromCuts(ir, ['positive']);
  assert.deepEqual(stageNames(p, ir), [['relu', 'sum', 'positive'], ['choose', 'neg']]);
  assert.deepEqual(p.stages[1].inputs, [{ name: 'cond', from: 0 }, { name: 'r', from: 0 }, { name: 'x', from: 'graph' }]);
  assert.deepEqual(p.stages[0].outputs.map((o) => o.name), ['r', 'cond']);
});

test('explicit cuts give the stages they name, and a balanced partition round-trips through its cuts', () => {
  const ir = chain(6);
  const p = partitionFromCuts(ir, ['n1', 'n3']);
  assert.deepEqual(stageNames(p, ir), [['n0', 'n1'], ['n2', 'n3'], ['n4', 'n5']]);
  assert.deepEqual(p.cuts, ['n1', 'n3']);
  assert.equal(p.costSource, 'estimated');
  assert.deepEqual(stageNames(partitionFromCuts(ir, []), ir), [['n0', 'n1', 'n2', 'n3', 'n4', 'n5']]);

  const demo = parseModel(buildDemoModel({ layers: 6, hidden: 16, ffn: 32 }), 'demo.onnx');
  const costs = estimateNodeCostsUs(demo, { batch: 8 });
  const balanced = partitionPipeline(demo, costs, 3);
  const again = partitionFromCuts(demo, balanced.cuts, { nodeCostUs: costs });
  assert.deepEqual(stageNames(again, demo), stageNames(balanced, demo));
  assert.equal(again.bottleneckUs, balanced.bottleneckUs);
});

test('bad stage counts and bad cuts are one-line UserErrors that say what to do', () => {
  const ir = skipGraph();
  const costs = estimateNodeCostsUs(ir);
  assertOneLineUserError(() => partitionPipeline(ir, costs, 0), /--stages must be a whole number of at least 1, got 0/);
  assertOneLineUserError(() => partitionPipeline(ir, costs, 2.5), /at least 1, got 2.5/);
  // 10 nodes, but the Constant rides with mul_two: 9 places a stage can start.
  assertOneLineUserError(() => partitionPipeline(ir, costs, 10), /cannot cut 10 nodes into 10 stages: only 9 nodes can start a stage.*use --stages 9 or fewer/);
  assert.equal(partitionPipeline(ir, costs, 9).stages.length, 9);
  assertOneLineUserError(() => partitionFromCuts(ir, ['mul_ww']), /no node named "mul_ww".*did you mean "mul_w"/);
  assertOneLineUserError(() => partitionFromCuts(ir, ['zzzzzzzzzzzz']), /no node named "zzzzzzzzzzzz".*parallax plan/);
  assertOneLineUserError(() => partitionFromCuts(ir, ['relu', 'relu']), /names "relu" twice.*empty stage/);
  assertOneLineUserError(() => partitionFromCuts(ir, ['skip', 'relu']), /topological order.*"relu" runs before "skip".*relu,skip/);
  assertOneLineUserError(() => partitionFromCuts(ir, ['sub_b']), /"sub_b" is the last node.*does not separate the graph/);
  assertOneLineUserError(() => partitionFromCuts(ir, ['const_two']), /"const_two" is a Constant node.*cut after a computing node instead \(e\.g\. "mul_two"\)/);
  assertOneLineUserError(() => partitionFromCuts(ir, ['relu', '']), /empty node name/);
  assert.throws(() => partitionPipeline(ir, new Float64Array(3), 2), RangeError);
});

test('estimated node costs come from FLOPs and bytes, with Constants free', () => {
  const ir = skipGraph();
  const costs = estimateNodeCostsUs(ir, { batch: 4 });
  for (const n of ir.nodes) {
    if (n.opType === 'Constant') assert.equal(costs[n.index], 0);
    else assert.ok(costs[n.index] > 0, n.name);
  }
  const demo = parseModel(buildDemoModel({ layers: 1, hidden: 64, ffn: 256 }), 'demo.onnx');
  const c = estimateNodeCostsUs(demo, { batch: 64 });
  const byName = Object.fromEntries(demo.nodes.map((n) => [n.name, c[n.index]]));
  assert.ok(byName['/layers.0/mlp/fc1/MatMul'] > 3 * byName['/layers.0/mlp/act/Relu'], 'a MatMul outweighs an activation');
});

test('the printed plan shows each stage’s node range, cost, weights and sends, and the balance', () => {
  const ir = skipGraph();
  const costs = costsByName(ir, { relu: 10, add_b: 10, mul_w: 20, sigmoid: 1500, mul_two: 10, mul_w2: 10, skip: 10, scale: 2_500_000, sub_b: 10 });
  const measured = formatPartition(partitionFromCuts(ir, ['relu', 'mul_w', 'skip'], { nodeCostUs: costs }), ir);
  assert.equal(
    measured,
    [
      'Pipeline plan for hand.onnx: 4 stages over 10 nodes',
      'Costs are measured per node.',
      'stage  nodes (first → last)  count     cost  params  sends (per row of batch)',
      '    0  relu                      1  10.0 µs       0  16 B → 1, 16 B → 2',
      '    1  add_b → mul_w             2  30.0 µs       4  16 B → 2',
      '    2  sigmoid → skip            5  1.53 ms       5  16 B → 3',
      '    3  scale → sub_b             2   2.50 s       1  —',
      'Balance 4.00 (max/mean stage cost; 1.00 is perfect): stage 3 is the bottleneck at 2.50 s; cuts after "relu", "mul_w", "skip"',
      '',
    ].join('\n'),
  );
  const estimated = formatPartition(partitionPipeline(ir, estimateNodeCostsUs(ir), 2, { costSource: 'estimated' }), ir);
  assert.match(estimated, /Costs are ESTIMATED from FLOPs and bytes .* not measured/);
  assert.match(estimated, /est\. cost/);
});

/** Least bottleneck of a chain cut into k contiguous stages, by binary search on the bottleneck with a greedy fill. */
function chainOptimum(costs: Float64Array, k: number): number {
  const fits = (t: number): boolean => {
    let stages = 1;
    let acc = 0;
    for (const c of costs) {
      if (c > t) return false;
      if (acc + c > t) {
        stages++;
        acc = 0;
      }
      acc += c;
    }
    return stages <= k;
  };
  let lo = 0;
  let hi = costs.reduce((a, b) => a + b, 0);
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (fits(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

test('a chain of 30,000 nodes partitions within 1% of the optimal bottleneck (searched over blocks)', () => {
  const n = 30_000;
  const nodes: onnx.INodeProto[] = [];
  for (let i = 0; i < n; i++) nodes.push(node(`r${i}`, 'Relu', [i === 0 ? 'x' : `t${i - 1}`], [i === n - 1 ? 'y' : `t${i}`]));
  const ir = irOf({ name: 'chain', node: nodes, input: [vi('x')], output: [vi('y')] });
  const rand = mulberry32(5);
  const costs = Float64Array.from({ length: n }, () => 1 + 99 * rand() ** 3);
  for (const k of [2, 3, 7]) {
    const p = partitionPipeline(ir, costs, k);
    assert.equal(p.stages.length, k);
    assert.equal(p.stages.reduce((a, s) => a + s.nodeIndices.length, 0), n, 'every node in one stage');
    const worst = Math.max(...p.stages.map((s) => s.computeUs));
    const best = chainOptimum(costs, k);
    assert.ok(worst <= best * 1.01, `k=${k}: bottleneck ${worst.toFixed(1)} vs optimum ${best.toFixed(1)}`);
  }
});
