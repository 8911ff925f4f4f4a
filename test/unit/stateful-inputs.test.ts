/**
 * Input and output resolution for stateful and multi-input models, on hand-built IRs shaped
 * like silero VAD v4 (named batch on the state's axis 1), v5 (unnamed dimensions) and others:
 * batch axes of inputs and outputs, `--value`, rate-like inputs, per-output numerical checks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isUserError } from '../../src/common/errors';
import type { Dim, ModelIR, ValueInfo } from '../../src/runtime/onnx/model';
import { findBatchAxes, looksLikeRate, resolveInputShapes, synthesizeInputs, type ResolvedInput } from '../../src/runtime/inputs';
import { axisFromProbe, checkUnbatchedOutputs, outputBatchAxes } from '../../src/runtime/batch-axes';
import { compareOutputs } from '../../src/runtime/runner/trace';
import { numericsLine } from '../../src/cli/format';

function value(name: string, dims: Dim[] | null, dtype = 'float32'): ValueInfo {
  return { name, kind: 'tensor', dtype, dims } as ValueInfo;
}

/** Just what input and output resolution read of an IR. */
function ir(inputs: ValueInfo[], outputs: ValueInfo[] = []): ModelIR {
  return { path: 'm.onnx', inputs, outputs } as unknown as ModelIR;
}

const V4 = ir(
  [value('input', ['batch', 'sequence']), value('sr', [], 'int64'), value('h', [2, 'batch', 64]), value('c', [2, 'batch', 64])],
  [value('output', ['batch', 1]), value('hn', [2, 'batch', 64]), value('cn', [2, 'batch', 64])],
);
const V5 = ir([value('input', [null, null]), value('state', [2, null, 128]), value('sr', [], 'int64')], [value('output', [null, 1]), value('stateN', [null, null, null])]);

function throwsUserError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(isUserError(e), `expected a UserError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.match(e.message, pattern);
    return true;
  });
}

const axesOf = (r: readonly ResolvedInput[]): Record<string, number | null> => Object.fromEntries(r.map((x) => [x.name, x.batchAxis]));

describe('batch axes of inputs', () => {
  test('a recurrent state [2, batch, 64] has its batch on axis 1 by name, without --batch-dim', () => {
    assert.deepEqual(Object.fromEntries(findBatchAxes(V4.inputs)), { input: 0, sr: null, h: 1, c: 1 });
    const r = resolveInputShapes(V4, { batch: 4, dims: { sequence: 512 } });
    assert.deepEqual(axesOf(r), { input: 0, sr: null, h: 1, c: 1 });
    assert.deepEqual(r.find((x) => x.name === 'h')!.dims, [2, 4, 64]);
    assert.deepEqual(r.find((x) => x.name === 'sr')!.dims, []);
  });

  test('--batch-dim applies by name to every input carrying it', () => {
    const r = resolveInputShapes(V4, { batch: 6, batchDim: 'batch', dims: { sequence: 8 } });
    assert.deepEqual(axesOf(r), { input: 0, sr: null, h: 1, c: 1 });
    const seq = ir([value('x', ['seq', 'batch', 16]), value('mask', ['batch', 'seq'])]);
    assert.deepEqual(axesOf(resolveInputShapes(seq, { batch: 3, batchDim: 'batch', dims: { seq: 5 } })), { x: 1, mask: 0 });
  });

  test('an unnamed state [2, ?, 128] takes its batch on its one unnamed axis when the batch is unnamed too', () => {
    assert.deepEqual(Object.fromEntries(findBatchAxes(V5.inputs)), { input: 0, state: 1, sr: null });
    const r = resolveInputShapes(V5, { batch: 4, inputShapes: { input: [1, 512] } });
    assert.deepEqual(axesOf(r), { input: 0, state: 1, sr: null });
    assert.deepEqual(r.find((x) => x.name === 'state')!.dims, [2, 4, 128]);
  });

  test('a numeric-first input without the batch name or a single unnamed axis stays shared', () => {
    const m = ir([value('x', ['batch', 8]), value('table', [16, 8]), value('pos', [1, null, null])]);
    assert.deepEqual(Object.fromEntries(findBatchAxes(m.inputs)), { x: 0, table: null, pos: null });
  });

  test('unset unnamed dimensions of two inputs get two different placeholders', () => {
    const m = ir([value('a', [null, null]), value('b', ['n', 3, null])]);
    throwsUserError(() => resolveInputShapes(m, { batch: 2 }), /--input-shape a=1,D1 --input-shape b=1,3,D2$/);
    const named = ir([value('a', ['n', 'len']), value('b', ['n', 'len', 4])]);
    throwsUserError(() => resolveInputShapes(named, { batch: 2 }), /--dim len=VALUE or --input-shape a=1,D1 --input-shape b=1,D1,4$/);
  });
});

describe('--value and rate-like inputs', () => {
  test('a scalar int64 sr is refused without --value, naming the input and the flag', () => {
    const r = resolveInputShapes(V4, { batch: 2, dims: { sequence: 4 } });
    assert.equal(looksLikeRate(r.find((x) => x.name === 'sr')!), true);
    assert.equal(looksLikeRate(r.find((x) => x.name === 'input')!), false);
    throwsUserError(() => synthesizeInputs(r, 0), /input "sr" \(int64, shape \[\]\) looks like a rate.*--value sr=VALUE/);
  });

  test('--value fills the input; other inputs stay seeded random data', () => {
    const r = resolveInputShapes(V4, { batch: 2, dims: { sequence: 4 }, values: { sr: 16000 } });
    const t = synthesizeInputs(r, 7, { sr: 16000 });
    const sr = t.find((x) => x.name === 'sr')!;
    assert.ok(sr.data instanceof BigInt64Array);
    assert.deepEqual([...(sr.data as BigInt64Array)], [16000n]);
    assert.deepEqual(t.find((x) => x.name === 'h')!.dims, [2, 2, 64]);
    const k = synthesizeInputs(resolveInputShapes(ir([value('x', ['n', 2]), value('k', [1], 'int32')]), { batch: 1 }), 0, { k: 3 });
    assert.deepEqual([...(k[1].data as Int32Array)], [3]);
  });

  test('--value errors name the flag: unknown input, batched input, fraction for an integer', () => {
    throwsUserError(() => resolveInputShapes(V4, { batch: 2, dims: { sequence: 4 }, values: { rate: 1 } }), /--value rate=1: m.onnx has no input "rate"/);
    throwsUserError(() => resolveInputShapes(V4, { batch: 2, dims: { sequence: 4 }, values: { h: 0 } }), /--value h=0: input "h" .* has a batch axis/);
    throwsUserError(() => resolveInputShapes(V4, { batch: 2, dims: { sequence: 4 }, values: { sr: 0.5 } }), /--value sr=0.5: input "sr" is int64; give a whole number/);
  });
});

describe('batch axes of outputs', () => {
  test('by name: output on axis 0, state hn, cn on axis 1', () => {
    const r = resolveInputShapes(V4, { batch: 4, dims: { sequence: 8 } });
    assert.deepEqual(Object.fromEntries(outputBatchAxes(V4, r)), { output: 0, hn: 1, cn: 1 });
  });

  test('unnamed outputs are left to measurement; fully numeric outputs have no batch axis', () => {
    const r = resolveInputShapes(V5, { batch: 4, inputShapes: { input: [1, 8] } });
    assert.deepEqual(Object.fromEntries(outputBatchAxes(V5, r)), { output: undefined, stateN: undefined });
    const m = ir([value('x', ['n', 4])], [value('y', ['n', 2]), value('count', [1], 'int64'), value('z', [null, 'n'])]);
    assert.deepEqual(Object.fromEntries(outputBatchAxes(m, resolveInputShapes(m, { batch: 2 }))), { y: 0, count: null, z: 1 });
  });

  test('a fixed-batch model gathers on axis 0; a model without a batch axis gathers none', () => {
    const fixed = ir([value('x', [1, 3])], [value('y', [1, 2]), value('w', [5])]);
    assert.deepEqual(Object.fromEntries(outputBatchAxes(fixed, resolveInputShapes(fixed, { batch: 1 }))), { y: 0, w: null });
  });

  test('measured: the axis that doubles from one row to two; none when nothing changes; else refused', () => {
    assert.equal(axisFromProbe('stateN', [2, 1, 128], [2, 2, 128], 'm'), 1);
    assert.equal(axisFromProbe('output', [1, 1], [2, 1], 'm'), 0);
    assert.equal(axisFromProbe('k', [3], [3], 'm'), null);
    throwsUserError(() => axisFromProbe('o', [1, 1], [2, 2], 'm.onnx'), /output "o" has shape \[1, 1\] for one row and \[2, 2\] for two/);
    throwsUserError(() => axisFromProbe('o', [4], [7], 'm.onnx'), /no single batch axis/);
  });

  test('outputs without a batch axis are refused only when the batch is split', () => {
    const axes = new Map<string, number | null>([
      ['y', 0],
      ['count', null],
    ]);
    checkUnbatchedOutputs(axes, 1, 'm.onnx');
    throwsUserError(() => checkUnbatchedOutputs(axes, 2, 'm.onnx'), /output "count" has no batch axis/);
  });
});

describe('per-output numerical check', () => {
  const want = new Map([
    ['output', Float32Array.from([0.5, 0.25])],
    ['hn', Float32Array.from([1, 2, 3, 4])],
    ['cn', Float32Array.from([1, 1])],
  ]);

  test('every output is listed; totals are over all of them', () => {
    const nc = compareOutputs(new Map(want), want, 'one device');
    assert.equal(nc.ok, true);
    assert.deepEqual(nc.outputs!.map((o) => [o.name, o.ok, o.elements]), [
      ['output', true, 2],
      ['hn', true, 4],
      ['cn', true, 2],
    ]);
    assert.equal(nc.elements, 8);
    assert.match(numericsLine(nc), /^numerics {4}ok: .*, 3 outputs against one device$/);
  });

  test('a wrong or missing output is named in the mismatch line, with its error', () => {
    const got = new Map([
      ['output', Float32Array.from([0.5, 0.25])],
      ['hn', Float32Array.from([1, 2, 3, 4.5])],
    ]);
    const nc = compareOutputs(got, want, 'one device');
    assert.equal(nc.ok, false);
    const hn = nc.outputs!.find((o) => o.name === 'hn')!;
    assert.equal(hn.ok, false);
    assert.equal(hn.maxAbsErr, 0.5);
    assert.deepEqual(nc.outputs!.find((o) => o.name === 'cn'), { name: 'cn', maxAbsErr: 0, maxRelErr: 0, ok: false, elements: 0 });
    assert.ok(Math.abs(hn.relL2! - 0.5 / Math.sqrt(30)) < 1e-9, `relative L2 ${hn.relL2}`);
    assert.equal(nc.maxAbsErr, 0.5);
    const line = numericsLine(nc);
    assert.match(line, /^numerics {4}MISMATCH in "hn" \(max abs err 5\.00e-1, max rel err 1\.25e-1\), "cn" \(missing or of another size\)/);
    assert.doesNotMatch(line, /"output"/);
  });

  test('trained weights: a few elements past the element-wise tolerance pass on their relative L2 error; an error in every element does not', () => {
    const n = 10_000;
    const ref = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.05);
    // A ReLU kink flipped after reordering: three elements off by 2e-5, far past 1e-5 + 1e-4·|b|.
    const kink = Float32Array.from(ref);
    for (const i of [3, 500, 9000]) kink[i]! += 2e-5;
    const elementwise = compareOutputs(new Map([['w', kink]]), new Map([['w', ref]]), 'one-device training', 1e-5, 1e-4);
    assert.equal(elementwise.ok, false, 'element-wise alone fails it');
    const nc = compareOutputs(new Map([['w', kink]]), new Map([['w', ref]]), 'one-device training', 1e-5, 1e-4, 1e-3);
    assert.equal(nc.ok, true);
    assert.ok(nc.maxRelL2! > 0 && nc.maxRelL2! < 1e-4, `relative L2 ${nc.maxRelL2}`);
    assert.match(numericsLine(nc, 'parameter'), /^numerics {4}ok: .*relative L2 err \d\.\d\de-\d \(tolerance 1e-3\), 1 parameter against one-device training$/);
    // A gradient off by a share in every element: 1 % of each weight.
    const wrong = ref.map((v) => v * 1.01);
    const bad = compareOutputs(new Map([['w', wrong]]), new Map([['w', ref]]), 'one-device training', 1e-5, 1e-4, 1e-3);
    assert.equal(bad.ok, false);
    assert.ok(Math.abs(bad.maxRelL2! - 0.01) < 1e-4, `relative L2 ${bad.maxRelL2}`);
    assert.match(numericsLine(bad, 'parameter'), /MISMATCH in "w" \(max abs err .*, relative L2 err 1\.00e-2\)/);
    // NaN fails the norm criterion too.
    const nan = Float32Array.from(ref);
    nan[7] = NaN;
    assert.equal(compareOutputs(new Map([['w', nan]]), new Map([['w', ref]]), 'ref', 1e-5, 1e-4, 1e-3).ok, false);
  });

  test('NaN is the largest error and stays JSON-safe', () => {
    const nc = compareOutputs(new Map([['cn', Float32Array.from([NaN, 1])]]), new Map([['cn', Float32Array.from([1, 1])]]), 'ref');
    assert.equal(nc.ok, false);
    assert.equal(nc.maxAbsErr, Number.MAX_VALUE);
    assert.equal(JSON.parse(JSON.stringify(nc)).maxAbsErr, Number.MAX_VALUE);
  });
});
