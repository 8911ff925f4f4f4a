import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyRows, placeRows, tileRows } from '../../src/runtime/tensor-util';

test('copyRows takes a contiguous block of rows on axis 0 and strided blocks on inner axes', () => {
  const src = Float32Array.from({ length: 24 }, (_, i) => i); // dims [2, 3, 4]
  const a0 = new Float32Array(12);
  copyRows(src, [2, 3, 4], 0, 1, 1, a0);
  assert.deepEqual(Array.from(a0), Array.from({ length: 12 }, (_, i) => 12 + i));
  const a1 = new Float32Array(2 * 2 * 4);
  copyRows(src, [2, 3, 4], 1, 1, 2, a1);
  assert.deepEqual(Array.from(a1), [4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23]);
});

test('placeRows is the inverse of copyRows', () => {
  const src = Float32Array.from({ length: 24 }, (_, i) => i);
  const back = new Float32Array(24);
  for (const [start, count] of [[0, 1], [1, 2]] as const) {
    const part = new Float32Array(2 * count * 4);
    copyRows(src, [2, 3, 4], 1, start, count, part);
    placeRows(part, [2, 3, 4], 1, start, count, back);
  }
  assert.deepEqual(back, src);
});

test('tileRows repeats the rows along axis 0', () => {
  const src = Float32Array.from([1, 2, 3, 4, 5, 6]); // [3, 2]
  const t = tileRows('float32', src, [3, 2], 0, 2);
  assert.deepEqual(t.dims, [6, 2]);
  assert.deepEqual(Array.from(t.data as Float32Array), [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
  assert.ok(t.data.buffer instanceof SharedArrayBuffer);
});

test('tileRows repeats the rows along an inner axis (recurrent state [layers, batch, hidden])', () => {
  // [2 layers, 2 rows, 2 hidden]
  const src = BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
  const t = tileRows('int64', src, [2, 2, 2], 1, 3);
  assert.deepEqual(t.dims, [2, 6, 2]);
  assert.deepEqual(Array.from(t.data as BigInt64Array), [1n, 2n, 3n, 4n, 1n, 2n, 3n, 4n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 5n, 6n, 7n, 8n, 5n, 6n, 7n, 8n]);
});
