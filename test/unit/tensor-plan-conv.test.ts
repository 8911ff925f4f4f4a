/**
 * The tensor-parallel sharding planner on convolutional models built in code: Conv pairs split
 * on output then input channels through BatchNormalization, per-channel scales, Clip, pools
 * and a depthwise Conv; a Conv that pairs with a Gemm through GlobalAveragePool and Flatten;
 * and what stops a channel split (a grouped Conv whose groups N does not divide, a
 * channels-last Flatten, a kernel held in a Constant node, a channel count N does not divide).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { onnx } from 'onnx-proto';
import { isUserError } from '../../src/common/errors';
import { parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { planTensorSharding, type InitializerPlacement, type TensorShardPlan } from '../../src/runtime/tensor/shard-plan';
import { cnnModelBytes, type CnnOptions } from '../helpers/cnn-model';

const cnn = (opts: CnnOptions = {}): ModelIR => parseModel(cnnModelBytes(opts), 'cnn.onnx');

function placement(plan: TensorShardPlan, name: string): InitializerPlacement {
  const p = plan.initializers.find((x) => x.name === name);
  assert.ok(p, `initializer ${name}`);
  return p;
}

/** Asserts `name` is split along `axis` in the role `role`, one equal part per device. */
function assertSplit(plan: TensorShardPlan, name: string, axis: number, role: string): void {
  const p = placement(plan, name);
  assert.ok(p.kind === 'split', `${name} is split`);
  assert.equal(p.axis, axis, `${name} axis`);
  assert.equal(p.role, role, `${name} role`);
  assert.deepEqual(
    p.slices.map((s) => [s.start, s.length]),
    Array.from({ length: plan.devices }, (_, d) => [(d * p.dims[axis]!) / plan.devices, p.dims[axis]! / plan.devices]),
  );
}

describe('tensor sharding planner, Conv channel splits', () => {
  it('splits each Conv pair on output then input channels, carrying the split through BatchNormalization, per-channel Mul/Add, Clip and MaxPool', () => {
    const c = 8;
    const size = 16;
    const plan = planTensorSharding(cnn({ channels: c, size }), 2);
    assert.deepEqual(
      plan.groups.map((g) => [g.label, g.columnNodes, g.rowNodes]),
      [
        ['/block.0', ['/block.0/conv1/Conv'], ['/block.0/conv2/Conv']],
        ['/block.1', ['/block.1/conv1/Conv'], ['/block.1/conv2/Conv']],
        ['/head', ['/head/conv/Conv'], ['/head/fc/Gemm']],
      ],
    );
    assert.deepEqual(plan.groups[1]!.nodes, ['/block.1/conv1/Conv', '/block.1/scale/Mul', '/block.1/shift/Add', '/block.1/act/Clip', '/block.1/pool/MaxPool', '/block.1/conv2/Conv']);
    assert.deepEqual(plan.notSplit, []);

    // Column-parallel kernels [Cout, Cin, k, k] split on axis 0 with their biases; row-parallel ones on axis 1.
    assertSplit(plan, 'block.0.conv1.weight', 0, 'column-weight');
    assertSplit(plan, 'block.0.conv1.bias', 0, 'split-operand');
    for (const stat of ['weight', 'bias', 'running_mean', 'running_var']) assertSplit(plan, `block.0.bn.${stat}`, 0, 'split-operand');
    assertSplit(plan, 'block.0.conv2.weight', 1, 'row-weight');
    assertSplit(plan, 'block.1.scale', 0, 'split-operand'); // [2c, 1, 1]
    assertSplit(plan, 'block.1.shift', 1, 'split-operand'); // [1, 2c, 1, 1]
    assertSplit(plan, 'block.1.conv2.weight', 1, 'row-weight');
    assertSplit(plan, 'head.conv.weight', 0, 'column-weight');
    // The head's Gemm (transB, weight [classes, 2c]) reads the pooled channels: it is cut along its input axis.
    assertSplit(plan, 'head.fc.weight', 1, 'row-weight');
    for (const bias of ['block.0.conv2.bias', 'block.1.conv2.bias', 'head.fc.bias']) {
      assert.equal(placement(plan, bias).kind, 'replicated', `${bias} is added once, after the all-reduce`);
    }
    assert.equal(placement(plan, 'block.1.act.min').kind, 'replicated');

    // One all-reduce per pair, of the row-parallel node's whole output per batch row.
    assert.deepEqual(
      plan.collectives.map((x) => [x.op, x.afterNode, x.bytesPerRow]),
      [
        ['all-reduce', '/block.0/conv2/Conv', c * size * size * 4],
        ['all-reduce', '/block.1/conv2/Conv', c * (size / 2) * (size / 2) * 4],
        ['all-reduce', '/head/fc/Gemm', 10 * 4],
      ],
    );
    assert.equal(plan.splitTensors['/block.1/pool/MaxPool_output_0'], 1, 'the pooled tensor stays split on channels');
    assert.equal(plan.splitTensors['/head/flatten/Flatten_output_0'], 1, 'Flatten after the global pool keeps the channel parts contiguous');
  });

  it('holds half of every split Conv kernel per device, and the replicated rest whole', () => {
    const ir = cnn();
    for (const n of [2, 4]) {
      const plan = planTensorSharding(ir, n);
      const split = plan.initializers.filter((p) => p.kind === 'split' && p.parameter).reduce((a, p) => a + p.bytes, 0);
      for (const b of plan.perDeviceParameterBytes) assert.equal(b, ir.parameterBytes - split + split / n);
      for (const name of ['block.0.conv1.weight', 'block.0.conv2.weight', 'block.1.conv1.weight', 'block.1.conv2.weight', 'head.conv.weight']) {
        const p = placement(plan, name);
        assert.ok(p.kind === 'split');
        for (const s of p.slices) assert.equal(s.bytes, p.bytes / n, `${name} on device ${s.device}`);
      }
    }
  });

  it('carries a channel split through a depthwise Conv with its kernel rows and a share of its groups', () => {
    for (const n of [2, 4]) {
      const plan = planTensorSharding(cnn({ channels: 8, groups: 16 }), n);
      assert.deepEqual(plan.notSplit, []);
      const block1 = plan.groups.find((g) => g.label === '/block.1');
      assert.ok(block1, JSON.stringify(plan.groups));
      assert.deepEqual(block1.nodes, ['/block.1/conv1/Conv', '/block.1/scale/Mul', '/block.1/shift/Add', '/block.1/act/Clip', '/block.1/dw/Conv', '/block.1/pool/MaxPool', '/block.1/conv2/Conv']);
      assert.deepEqual(block1.rowNodes, ['/block.1/conv2/Conv'], 'the depthwise Conv is no row-parallel layer: no all-reduce after it');
      assertSplit(plan, 'block.1.dw.weight', 0, 'split-operand');
      assertSplit(plan, 'block.1.dw.bias', 0, 'split-operand');
      assert.equal(plan.splitTensors['/block.1/dw/Conv_output_0'], 1);
      assert.equal(plan.collectives.length, 3);
    }
  });

  it('leaves a Conv pair whole when a grouped Conv inside it has groups the devices do not divide, saying why, and splits the next pair it finds', () => {
    const plan = planTensorSharding(cnn({ channels: 8, groups: 2 }), 4);
    const reasons = new Map(plan.notSplit.map((x) => [x.node, x.reason]));
    assert.match(reasons.get('/block.1/conv1/Conv') ?? '', /Conv node "\/block\.1\/dw\/Conv" cannot take the split: its 2 groups \(group=2\) do not divide over 4 devices/);
    assert.match(reasons.get('/block.1/dw/Conv') ?? '', /grouped or depthwise Conv \(group=2\) starts no split/);
    assert.equal(placement(plan, 'block.1.conv1.weight').kind, 'replicated');
    assert.equal(placement(plan, 'block.1.dw.weight').kind, 'replicated');
    assert.deepEqual(plan.groups[0]!.columnNodes, ['/block.0/conv1/Conv'], 'block.0 still splits');
    // With block.1's first Conv whole, its 1×1 Conv is the next column split and the head's Conv closes it.
    assert.ok(plan.groups.some((g) => g.columnNodes[0] === '/block.1/conv2/Conv' && g.rowNodes[0] === '/head/conv/Conv'));
  });

  it('leaves the head Conv whole when a channels-last Flatten interleaves its channel parts', () => {
    const plan = planTensorSharding(cnn({ channelsLastHead: true }), 2);
    const head = plan.notSplit.find((x) => x.node === '/head/conv/Conv');
    assert.ok(head, JSON.stringify(plan.notSplit));
    assert.equal(head.weight, 'head.conv.weight');
    assert.match(head.reason, /Flatten node "\/head\/flatten\/Flatten" cannot take the split: no dimension of its output \[1, \d+\] keeps the split in 2 equal contiguous parts/);
    assert.equal(placement(plan, 'head.conv.weight').kind, 'replicated');
    assert.deepEqual(plan.groups.slice(0, 2).map((g) => g.label), ['/block.0', '/block.1']);
  });

  it('names channel counts that do not divide over the devices', () => {
    // 3 devices: the 8 and 16 output channels of every Conv and the Gemm's 10 classes do not divide.
    assert.throws(
      () => planTensorSharding(cnn({ channels: 8 }), 3),
      (e: unknown) => isUserError(e) && /nothing to split .* over 3 devices: looked for .*Conv pairs .*: dimension 8 of weight "block\.0\.conv1\.weight" is not divisible by 3/.test((e as Error).message),
    );
    // 6 channels over 3 devices: block.0 splits; block.1 and the head (12 channels) too.
    assert.equal(planTensorSharding(cnn({ channels: 6 }), 3).groups.length, 3);
  });

  it('does not split a Conv whose kernel is a Constant node\'s value, and says so', () => {
    // The kernel moved from the initializers into a Constant node, as some exporters write it.
    const model = onnx.ModelProto.decode(cnnModelBytes());
    const graph = model.graph!;
    const moved = new Set(['block.0.conv1.weight', 'block.0.conv2.weight']);
    const constants = graph.initializer!.filter((t) => moved.has(t.name!)).map((t) =>
      onnx.NodeProto.create({ name: `${t.name}/Constant`, opType: 'Constant', output: [t.name!], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t }] }),
    );
    graph.initializer = graph.initializer!.filter((t) => !moved.has(t.name!));
    graph.node = [...constants, ...graph.node!];
    const plan = planTensorSharding(parseModel(onnx.ModelProto.encode(model).finish(), 'cnn-constants.onnx'), 2);
    const reason = plan.notSplit.find((x) => x.node === '/block.0/conv1/Conv')?.reason ?? '';
    assert.match(reason, /its weight "block\.0\.conv1\.weight" is not a floating-point initializer \(it is a Constant node's value; this planner splits initializers only\)/);
    assert.deepEqual(plan.groups.map((g) => g.label), ['/block.1', '/head'], 'the other pairs still split');
  });
});
