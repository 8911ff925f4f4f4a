/**
 * ONNX sharding annotations (NodeProto.device_configurations): read from the model's bytes,
 * and followed by the tensor planner — only the weights they cut split, every cut is checked
 * against the plan, and a cut the run cannot make is one line saying why.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUserError } from '../../src/common/errors';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { readNodeExtras } from '../../src/runtime/onnx/node-metadata';
import { planTensorSharding } from '../../src/runtime/tensor/shard-plan';
import { annotateSharding, type Annotation } from '../helpers/sharding-annotations';

const demo = buildDemoModel({ layers: 3, hidden: 64, ffn: 256 });
const plain = parseModel(demo, 'demo.onnx');
/** The weights of block b's MLP: fc1 by columns (axis 1 of [in, out]), fc2 by rows (axis 0). */
function block(b: number, shards = 2): Annotation[] {
  const fc1 = plain.nodes.find((n) => n.name === `/layers.${b}/mlp/fc1/MatMul`)!;
  const fc2 = plain.nodes.find((n) => n.name === `/layers.${b}/mlp/fc2/MatMul`)!;
  return [
    { node: fc1.name, tensor: fc1.inputs[1]!, axis: 1, shards },
    { node: fc2.name, tensor: fc2.inputs[1]!, axis: 0, shards },
  ];
}
const annotated = (a: Annotation[]) => parseModel(annotateSharding(demo, a), 'annotated.onnx');

describe('ONNX sharding annotations', () => {
  it('are read from the nodes as written, and the model is otherwise unchanged', () => {
    const bytes = annotateSharding(demo, block(1));
    const extras = readNodeExtras(bytes);
    const ir = parseModel(bytes, 'annotated.onnx');
    assert.equal(ir.nodes.length, plain.nodes.length);
    assert.equal(ir.parameterBytes, plain.parameterBytes);
    const fc1 = ir.nodes.find((n) => n.name === '/layers.1/mlp/fc1/MatMul')!;
    assert.deepEqual(fc1.sharding, [{ configuration: 'tensor-parallel', tensor: fc1.inputs[1], devices: [0, 1], dims: [{ axis: 1, shards: 2 }] }]);
    assert.equal(extras.filter((e) => e.sharding.length > 0).length, 2);
    assert.equal(ir.nodes.filter((n) => n.sharding).length, 2);
    assert.ok(plain.nodes.every((n) => n.sharding === undefined));
  });

  it('the planner splits only the annotated weights, as annotated, and keeps the rest whole', () => {
    const all = planTensorSharding(plain, 2);
    assert.equal(all.groups.length, 3);
    assert.equal(all.annotations, 0);
    const plan = planTensorSharding(annotated([...block(0), ...block(2)]), 2);
    assert.deepEqual(plan.groups.map((g) => g.label), ['/layers.0/mlp', '/layers.2/mlp']);
    assert.equal(plan.annotations, 4);
    assert.ok(plan.notSplit.some((x) => x.node === '/layers.1/mlp/fc1/MatMul' && /sharding annotations leave its weight whole/.test(x.reason)));
    for (const a of [...block(0), ...block(2)]) {
      const placed = plan.initializers.find((i) => i.name === a.tensor)!;
      assert.ok(placed.kind === 'split' && placed.axis === a.axis, `${a.tensor} split on axis ${a.axis}`);
    }
  });

  it('a cut into another number of shards than devices, or one the split cannot make, is one line', () => {
    const bad = (a: Annotation[], re: RegExp): void =>
      assert.throws(() => planTensorSharding(annotated(a), 2), (e: unknown) => isUserError(e) && re.test((e as Error).message) && !(e as Error).message.includes('\n'));
    bad(block(1, 4), /cuts its weight ".*" into 4 shards, but the run has 2 devices/);
    // fc2 alone by rows: its input is whole, so no row split can follow.
    bad([block(1)[1]!], /cuts ".*" by rows \(axis 0\), which tensor parallelism cannot follow here: no weight before it is cut by columns/);
    bad([{ ...block(1)[0]!, axis: 0 }], /by rows \(axis 0\), which tensor parallelism cannot follow/);
  });
});
