/**
 * The tensor-parallel compiler (pure): the chain every device runs, the all-reduce after each
 * row-parallel layer on a buffer of the activation's size labelled with its layer, the
 * simulator's prediction of the same program, and slicing along an axis.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { compileTensor, prepareTensor } from '../../src/runtime/compile/tensor';
import { sliceAlong } from '../../src/runtime/tensor/shard-model';
import type { CompileContext } from '../../src/runtime/compile';
import type { Program } from '../../src/profiler/program';
import { isUserError } from '../../src/common/errors';
import { CommOpCode, SpanKind } from '../../src/profiler/trace-format';
import { FREE_LINK, setComputeCost, simulate, type CostModel } from '../../src/profiler/simulate';
import { syntheticMeta } from '../../src/profiler/analysis/synthetic';
import { tinyMatMulModelBytes } from '../helpers/tiny-model';

const HIDDEN = 32;

function compileDemo(layers: number, batch: number, devices: number): Program {
  const ir = parseModel(buildDemoModel({ layers, hidden: HIDDEN, ffn: 4 * HIDDEN }), 'demo.onnx');
  const ctx: CompileContext = {
    inputs: [{ name: ir.inputs[0]!.name, dtype: 'float32', dims: [batch, HIDDEN], batchAxis: 0 }],
    outputs: [{ name: ir.outputs[0]!.name, batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices,
    nodeNames: ir.nodes.map((n) => n.name),
  };
  return compileTensor({ mode: 'tensor', devices: `cpu:${devices}`, batch, steps: 1, warmup: 0, seed: 0 }, prepareTensor(ir, devices, {}), ctx);
}

test('a tensor program: every device scatters all rows, runs its chain with one all-reduce per block, the first gathers', () => {
  const layers = 3;
  const batch = 6;
  const p = compileDemo(layers, batch, 2);
  assert.equal(p.mode, 'tensor');
  assert.equal(p.buffers.length, layers);
  p.buffers.forEach((b, i) => {
    assert.equal(b.elements, batch * HIDDEN, 'the all-reduced activation: every row of the residual stream');
    assert.equal(b.synthetic, false);
    assert.deepEqual(b.activation?.layer, `/layers.${i}/mlp`);
  });
  for (const d of p.devices) {
    const ops = d.instructions.map((i) => (i.op === 'collective' ? `${i.collective}:${i.buffer}` : i.op));
    const expected = ['scatter', ...Array.from({ length: layers }, (_, i) => ['run', `allreduce:${p.buffers[i]!.name}`]).flat(), 'run', ...(d.rank === 0 ? ['gather'] : [])];
    assert.deepEqual(ops, expected, `rank ${d.rank}`);
    const scatter = d.instructions[0]!;
    assert.ok(scatter.op === 'scatter' && scatter.rows.start === 0 && scatter.rows.count === batch, 'tensor parallelism does not split rows');
    for (const i of d.instructions) {
      if (i.op === 'run') {
        const seg = p.segments.find((s) => s.id === i.segment)!;
        assert.ok(seg.kind === 'shard' && seg.rank === d.rank, 'a device runs only its own shards');
      }
      if (i.op === 'collective') assert.equal(i.bytes, batch * HIDDEN * 4);
    }
  }
});

test('the simulator predicts a tensor program: per step and device, its all-reduces labelled with their layers', () => {
  const p = compileDemo(2, 4, 2);
  const costs: CostModel = { compute: {}, transfers: { copy: FREE_LINK, p2p: FREE_LINK, collective: { alphaUs: 10, bytesPerUs: 1000 } } };
  for (const seg of p.segments) setComputeCost(costs, seg.kind === 'shard' ? seg.rank : 0, seg, 'forward', { fixedUs: 100, perRowUs: 5 });
  const trace = simulate(p, costs, { steps: 2, meta: syntheticMeta(2, { mode: 'tensor', devices: 'cpu:2', batch: 4, steps: 2, warmup: 0, seed: 0 }) });
  const s = trace.spans;
  for (let lane = 0; lane < 2; lane++) {
    for (const step of [0, 1]) {
      const names: string[] = [];
      for (let i = 0; i < s.count; i++) {
        if (s.lane[i] === lane && s.step[i] === step && s.kind[i] === SpanKind.comm && s.comm[i] === CommOpCode.allreduce) names.push(trace.strings[s.name[i]!]!);
      }
      assert.deepEqual(names, ['allreduce.ring (/layers.0/mlp)', 'allreduce.ring (/layers.1/mlp)'], `lane ${lane} step ${step}`);
    }
  }
  // Three runs of 100 + 4·5 µs and two all-reduces of 512 bytes (ring over 2: 2·α + S/β).
  const step = trace.steps[0]!.endUs - trace.steps[0]!.startUs;
  assert.ok(step >= 3 * 120 + 2 * 20, `step ${step} µs holds the compute and the all-reduces`);
});

test('a split graph output (an all-gather) is refused in one line naming the output', () => {
  const { bytes } = tinyMatMulModelBytes({ k: 8, n: 8 });
  const ir = parseModel(bytes, 'tiny.onnx');
  const prep = prepareTensor(ir, 2, {});
  assert.ok(prep.shard.collectives.some((c) => c.op === 'all-gather'));
  const ctx: CompileContext = { inputs: [{ name: 'x', dtype: 'float32', dims: [2, 8], batchAxis: 0 }], outputs: [{ name: 'y', batchAxis: 0 }], parameterCount: ir.parameterCount, devices: 2, nodeNames: ir.nodes.map((n) => n.name) };
  assert.throws(
    () => compileTensor({ mode: 'tensor', devices: 'cpu:2', batch: 2, steps: 1, warmup: 0, seed: 0 }, prep, ctx),
    (e: unknown) => isUserError(e) && /graph output "y" stays split across devices and would need an all-gather/.test((e as Error).message) && !(e as Error).message.includes('\n'),
  );
});

test('sliceAlong takes elements [start, start + length) of one axis of a row-major tensor', () => {
  // A [2, 3, 4] tensor of 1-byte elements 0..23.
  const data = Uint8Array.from({ length: 24 }, (_, i) => i);
  assert.deepEqual(Array.from(sliceAlong(data, [2, 3, 4], 1, 1, 1, 2)), [4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23]);
  assert.deepEqual(Array.from(sliceAlong(data, [2, 3, 4], 1, 2, 2, 2)), [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23]);
  assert.deepEqual(Array.from(sliceAlong(data, [2, 3, 4], 1, 0, 1, 1)), Array.from({ length: 12 }, (_, i) => 12 + i));
  // 4-byte elements: the byte runs move whole.
  const f = new Float32Array([0, 1, 2, 3, 4, 5]);
  assert.deepEqual(Array.from(new Float32Array(sliceAlong(new Uint8Array(f.buffer), [2, 3], 4, 1, 2, 1).buffer)), [2, 5]);
});
