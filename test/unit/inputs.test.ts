import { describe, test } from 'node:test';
import { ocrDetModelPath, MISSING_MODELS_HINT } from '../helpers/models';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import { isUserError } from '../../src/common/errors';
import { encodeModel, loadModel, parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { concatBatch, loadInputs, resolveInputShapes, sliceBatch, splitBatch, synthesizeInputs, type ModelInput, type ResolvedInput } from '../../src/runtime/inputs';
import { tempDir } from '../helpers/temp';
import { needs, ocrModelMissing } from '../helpers/prerequisites';
import { npy } from '../helpers/npy';

const dir = tempDir('inputs');

const ELEM = { float32: 1, uint8: 2, int64: 7, bool: 9, float16: 10 } as const;

/** An IR whose inputs each flow through an Identity node to an output. */
function modelWithInputs(path: string, inputs: Array<{ name: string; dims: Array<number | string | null>; elem?: number }>): ModelIR {
  const info = (name: string, dims: Array<number | string | null>, elem: number): onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {})) } } },
  });
  const bytes = encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      input: inputs.map((i) => info(i.name, i.dims, i.elem ?? ELEM.float32)),
      output: inputs.map((i) => info(`${i.name}_out`, i.dims, i.elem ?? ELEM.float32)),
      node: inputs.map((i) => ({ opType: 'Identity', input: [i.name], output: [`${i.name}_out`] })),
    },
  });
  return parseModel(bytes, path);
}

function throwsUserError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(isUserError(e), `expected a UserError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.match(e.message, pattern);
    return true;
  });
}

const OCR_DIMS = ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'];

describe('resolveInputShapes', () => {
  test('finds the symbolic batch dimension of the demo model on axis 0', () => {
    const ir = parseModel(buildDemoModel({ layers: 1, hidden: 8, ffn: 16 }), 'demo.onnx');
    assert.deepEqual(resolveInputShapes(ir, { batch: 8 }), [{ name: 'x', dtype: 'float32', dims: [8, 8], batchAxis: 0, batchFixed: false, modelDims: ['batch', 8] }]);
  });

  test('an unknown (unnamed) first dimension is the batch too', () => {
    const ir = modelWithInputs('m.onnx', [{ name: 'x', dims: [null, 4] }]);
    assert.deepEqual(resolveInputShapes(ir, { batch: 3 })[0].dims, [3, 4]);
  });

  test('unset symbolic dimensions are one UserError naming each of them and the flags that set them', () => {
    const ir = modelWithInputs('model.onnx', [{ name: 'x', dims: OCR_DIMS }]);
    throwsUserError(
      () => resolveInputShapes(ir, { batch: 2 }),
      /^model\.onnx: input "x" has unset dimensions p2o\.DynamicDimension\.1, p2o\.DynamicDimension\.2; set them with --dim p2o\.DynamicDimension\.1=VALUE --dim p2o\.DynamicDimension\.2=VALUE or --input-shape x=1,3,H,W$/,
    );
  });

  test('--dim values and --input-shape settle the remaining dimensions', () => {
    const ir = modelWithInputs('model.onnx', [{ name: 'x', dims: OCR_DIMS }]);
    const byDim = resolveInputShapes(ir, { batch: 2, dims: { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 320 } });
    assert.deepEqual(byDim[0].dims, [2, 3, 48, 320]);
    // The first dim of --input-shape is replaced by the batch.
    const byShape = resolveInputShapes(ir, { batch: 4, inputShapes: { x: [1, 3, 48, 320] } });
    assert.deepEqual(byShape[0].dims, [4, 3, 48, 320]);
    assert.equal(byShape[0].batchAxis, 0);
  });

  test('a symbol set by one input\'s --input-shape settles it for other inputs', () => {
    const ir = modelWithInputs('m.onnx', [
      { name: 'ids', dims: ['batch', 'seq'], elem: ELEM.int64 },
      { name: 'attention_mask', dims: ['batch', 'seq'], elem: ELEM.int64 },
    ]);
    const r = resolveInputShapes(ir, { batch: 2, inputShapes: { ids: [1, 16] } });
    assert.deepEqual(r.map((i) => i.dims), [[2, 16], [2, 16]]);
  });

  test('several inputs with unset dimensions are reported together', () => {
    const ir = modelWithInputs('m.onnx', [
      { name: 'ids', dims: ['batch', 'seq'], elem: ELEM.int64 },
      { name: 'pos', dims: ['batch', 'seq', null] },
    ]);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2 }), /input "ids" has unset dimension seq; input "pos" has unset dimensions seq, axis 2 \(unnamed\); set them with --dim seq=VALUE or --input-shape ids=1,D1 --input-shape pos=1,D1,D2$/);
  });

  test('a fixed batch that disagrees with --batch is a UserError saying the batch is fixed', () => {
    const ir = modelWithInputs('fixed.onnx', [{ name: 'x', dims: [1, 3, 8, 8] }]);
    throwsUserError(() => resolveInputShapes(ir, { batch: 8 }), /fixed\.onnx: the model's batch is fixed at 1 .*use --batch 1/);
    const r = resolveInputShapes(ir, { batch: 1 });
    assert.equal(r[0].batchAxis, 0);
    assert.equal(r[0].batchFixed, true);
  });

  test('--batch-dim names a batch axis that is not the first', () => {
    const ir = modelWithInputs('rnn.onnx', [
      { name: 'x', dims: ['seq', 'B', 16] },
      { name: 'h0', dims: [1, 'B', 16] },
      { name: 'scale', dims: [16] },
    ]);
    const r = resolveInputShapes(ir, { batch: 4, batchDim: 'B', dims: { seq: 10 } });
    assert.deepEqual(r.map((i) => [i.dims, i.batchAxis]), [[[10, 4, 16], 1], [[1, 4, 16], 1], [[16], null]]);
  });

  test('bad flags are UserErrors naming the flag', () => {
    const ir = modelWithInputs('m.onnx', [{ name: 'x', dims: ['batch', 'seq'] }]);
    throwsUserError(() => resolveInputShapes(ir, { batch: 0 }), /--batch 0/);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2, dims: { sequence: 4 } }), /--dim sequence: .*symbolic dimensions are batch, seq/);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2, dims: { batch: 4, seq: 1 } }), /--dim batch=4 conflicts with --batch 2/);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2, inputShapes: { y: [1, 2] } }), /no input "y"; its inputs are "x"/);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2, inputShapes: { x: [1, 2, 3] } }), /has 2 dimensions/);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2, batchDim: 'N' }), /--batch-dim N/);
  });
});

describe('synthesizeInputs', () => {
  const ir = modelWithInputs('m.onnx', [
    { name: 'image', dims: ['N', 3, 2, 2] },
    { name: 'ids', dims: ['N', 5], elem: ELEM.int64 },
    { name: 'attention_mask', dims: ['N', 5], elem: ELEM.int64 },
    { name: 'flags', dims: ['N', 4], elem: ELEM.bool },
    { name: 'half', dims: ['N', 4], elem: ELEM.float16 },
    { name: 'pixels', dims: ['N', 4], elem: ELEM.uint8 },
  ]);
  const resolved = resolveInputShapes(ir, { batch: 3 });

  test('is deterministic for a seed and differs between seeds', () => {
    const a = synthesizeInputs(resolved, 42);
    const b = synthesizeInputs(resolved, 42);
    const c = synthesizeInputs(resolved, 43);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a[0].data, c[0].data);
    assert.notDeepEqual(a[0].data.slice(0, 4), a[1].data.slice(0, 4), 'each input has its own stream');
  });

  test('gives each dtype the typed array ORT expects with sensible values', () => {
    const [image, ids, mask, flags, half, pixels] = synthesizeInputs(resolved, 1);
    assert.ok(image.data instanceof Float32Array && image.data.length === 36);
    assert.ok([...image.data].every((v) => v >= -1 && v < 1));
    assert.ok(ids.data instanceof BigInt64Array);
    assert.ok([...ids.data].every((v) => v >= 0n && v < 10n));
    assert.deepEqual([...(mask.data as BigInt64Array)], new Array(15).fill(1n), 'masks attend everywhere');
    assert.ok(flags.data instanceof Uint8Array && [...flags.data].every((v) => v === 0 || v === 1));
    assert.ok(half.data instanceof Uint16Array);
    // |x| < 1 in binary16 has an exponent field below 15.
    assert.ok([...half.data].every((bits) => ((bits >> 10) & 0x1f) < 15));
    assert.ok(pixels.data instanceof Uint8Array);
    assert.deepEqual(image.dims, [3, 3, 2, 2]);
    assert.equal(image.batchAxis, 0);
  });
});

function seq(dims: number[], batchAxis: number | null): ModelInput {
  const n = dims.reduce((a, b) => a * b, 1);
  return { name: 't', dtype: 'float32', dims, data: Float32Array.from({ length: n }, (_, i) => i), batchAxis };
}

describe('sliceBatch and splitBatch', () => {
  test('sliceBatch on axis 0 is a view of the rows', () => {
    const t = seq([4, 3], 0);
    const s = sliceBatch(t, 1, 2);
    assert.deepEqual(s.dims, [2, 3]);
    assert.deepEqual([...s.data], [3, 4, 5, 6, 7, 8]);
    assert.equal(s.data.buffer, t.data.buffer, 'no copy');
  });

  test('sliceBatch on axis 1 copies the right elements', () => {
    const t = seq([2, 4, 3], 1);
    const s = sliceBatch(t, 1, 2);
    assert.deepEqual(s.dims, [2, 2, 3]);
    assert.deepEqual([...s.data], [3, 4, 5, 6, 7, 8, 15, 16, 17, 18, 19, 20]);
  });

  test('sliceBatch leaves inputs without a batch axis whole and rejects rows out of range', () => {
    const t = seq([5], null);
    assert.equal(sliceBatch(t, 0, 1), t);
    assert.throws(() => sliceBatch(seq([4, 3], 0), 3, 2), RangeError);
  });

  test('concatBatch undoes an uneven split on axis 0 and axis 1', () => {
    for (const [dims, axis] of [[[5, 2], 0], [[2, 5, 3], 1]] as Array<[number[], number]>) {
      const t = seq(dims, axis);
      const counts = splitBatch(dims[axis], 3);
      let start = 0;
      const parts = counts.map((c) => {
        const p = sliceBatch(t, start, c);
        start += c;
        return p;
      });
      const back = concatBatch(parts);
      assert.deepEqual(back.dims, dims);
      assert.deepEqual([...back.data], [...t.data]);
    }
  });

  test('splitBatch splits as evenly as possible, the first parts one row larger', () => {
    assert.deepEqual(splitBatch(8, 2), [4, 4]);
    assert.deepEqual(splitBatch(10, 4), [3, 3, 2, 2]);
    assert.deepEqual(splitBatch(3, 3), [1, 1, 1]);
  });

  test('splitBatch with more parts than rows is a UserError asking for a larger batch', () => {
    throwsUserError(() => splitBatch(3, 4), /^batch 3 has fewer rows than the 4 devices; use --batch ≥ 4$/);
  });
});

describe('loadInputs', () => {
  const ir = modelWithInputs('m.onnx', [{ name: 'x', dims: ['N', 3] }]);
  const resolved: ResolvedInput[] = resolveInputShapes(ir, { batch: 2 });

  test('reads a .npy file for a single-input model', async () => {
    const f = join(dir, 'x.npy');
    writeFileSync(f, npy('<f4', [2, 3], new Float32Array([1, 2, 3, 4, 5, 6])));
    const [x] = await loadInputs(f, resolved);
    assert.deepEqual(x.dims, [2, 3]);
    assert.deepEqual([...x.data], [1, 2, 3, 4, 5, 6]);
    assert.equal(x.batchAxis, 0);
  });

  test('a .npy file with the wrong dtype or batch is a UserError saying what to change', async () => {
    const f64 = join(dir, 'x64.npy');
    writeFileSync(f64, npy('<f8', [2, 3], new Float64Array(6)));
    await assert.rejects(loadInputs(f64, resolved), (e: Error) => isUserError(e) && e.message.includes(f64) && /float64.*astype\(np\.float32\)/.test(e.message));
    const rows = join(dir, 'rows.npy');
    writeFileSync(rows, npy('<f4', [5, 3], new Float32Array(15)));
    await assert.rejects(loadInputs(rows, resolved), (e: Error) => isUserError(e) && /5 rows but the run's batch is 2; use --batch 5/.test(e.message));
    const bad = join(dir, 'bad.npy');
    writeFileSync(bad, 'not numpy');
    await assert.rejects(loadInputs(bad, resolved), (e: Error) => isUserError(e) && /not a NumPy/.test(e.message));
  });

  test('reads a .json file with flat or nested data', async () => {
    const f = join(dir, 'in.json');
    writeFileSync(f, JSON.stringify({ x: { dims: [2, 3], data: [[1, 2, 3], [4, 5, 6]] } }));
    const [x] = await loadInputs(f, resolved);
    assert.ok(x.data instanceof Float32Array);
    assert.deepEqual([...x.data], [1, 2, 3, 4, 5, 6]);
  });

  test('a .json file with a missing input, extra entry, wrong length or bad value is a UserError', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /lacks input "x"/],
      [{ x: { dims: [2, 3], data: [1, 2, 3, 4, 5, 6] }, y: {} }, /"y" that are not model inputs/],
      [{ x: { dims: [2, 3], data: [1, 2, 3] } }, /has 3 values but dims \[2, 3\] need 6/],
      [{ x: { dims: [2, 4], data: [] } }, /shape \[2, 4\] but the model expects \[2, 3\]/],
      [{ x: { dims: [2, 3], data: [1, 2, 'a', 4, 5, 6] } }, /data\[2\] is "a", not a number/],
    ];
    for (const [doc, pattern] of cases) {
      const f = join(dir, 'bad.json');
      writeFileSync(f, JSON.stringify(doc));
      await assert.rejects(loadInputs(f, resolved), (e: Error) => isUserError(e) && e.message.includes(f) && pattern.test(e.message));
    }
    const notJson = join(dir, 'broken.json');
    writeFileSync(notJson, '{ "x": ');
    await assert.rejects(loadInputs(notJson, resolved), (e: Error) => isUserError(e) && /not valid JSON/.test(e.message));
  });

  test('int64 JSON inputs accept numbers and integer strings', async () => {
    const r = resolveInputShapes(modelWithInputs('m.onnx', [{ name: 'ids', dims: ['N', 2], elem: ELEM.int64 }]), { batch: 1 });
    const f = join(dir, 'ids.json');
    writeFileSync(f, JSON.stringify({ ids: { dims: [1, 2], data: [7, '9007199254740993'] } }));
    const [ids] = await loadInputs(f, r);
    assert.deepEqual([...(ids.data as BigInt64Array)], [7n, 9007199254740993n]);
  });
});

const PP_OCR_DET = ocrDetModelPath() ?? '';
// Without the fetched model these tests skip, saying what to run (and fail under
// PARALLAX_REQUIRE_PREREQUISITES=1, as in CI, where the model must be there).
const ppOcrMissing = (): void => assert.ok(PP_OCR_DET, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);

describe('the real PP-OCRv4 detection model', () => {
  test('resolves its input with --dim values and names the unset dimensions without them', needs(ocrModelMissing()), async () => {
    ppOcrMissing();
    const ir = await loadModel(PP_OCR_DET);
    const r = resolveInputShapes(ir, { batch: 2, dims: { 'p2o.DynamicDimension.1': 640, 'p2o.DynamicDimension.2': 640 } });
    assert.deepEqual(r, [{ name: 'x', dtype: 'float32', dims: [2, 3, 640, 640], batchAxis: 0, batchFixed: false, modelDims: ir.inputs[0].dims }]);
    throwsUserError(() => resolveInputShapes(ir, { batch: 2 }), /ch_PP-OCRv4_det_infer\.onnx: input "x" has unset dimensions p2o\.DynamicDimension\.1, p2o\.DynamicDimension\.2; set them with --dim/);
  });
});
