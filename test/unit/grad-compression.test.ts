/**
 * Wire encodings of gradients: float16 against known binary16 bit patterns (round to
 * nearest, ties to even), int8 with a per-chunk scale, and error feedback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeWithFeedback, float16Bits, float16Value, INT8_CHUNK, wireCodec } from '../../src/runtime/comm/compress';

test('float16 encodes known values to their IEEE 754 binary16 bit patterns', () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [65504, 0x7bff], // largest finite
    [65520, 0x7c00], // halfway to the next binade rounds to even: Infinity
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // a tie between 0 and 2^-24: even is 0
    [1.5 * 2 ** -25, 0x0001],
    [3 * 2 ** -25, 0x0002], // a tie between 1 and 2 units: even is 2
    [1 + 2 ** -11, 0x3c00], // a tie between 1 and 1 + 2^-10: even is 1
    [1 + 3 * 2 ** -11, 0x3c02], // a tie between 1 + 2^-10 and 1 + 2^-9: even is the latter
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up out of the subnormals
  ];
  for (const [x, bits] of cases) assert.equal(float16Bits(x), bits, `${x} → 0x${float16Bits(x).toString(16)}, want 0x${bits.toString(16)}`);
  assert.equal(float16Bits(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(float16Bits(NaN) & 0x3ff, 0);
});

test('float16 decodes every finite pattern to a value that encodes back to it', () => {
  for (let h = 0; h < 65536; h++) {
    const v = float16Value(h);
    if (Number.isNaN(v)) {
      assert.equal((h >>> 10) & 0x1f, 0x1f);
      continue;
    }
    assert.equal(float16Bits(v), h, `0x${h.toString(16)}`);
  }
  assert.equal(float16Value(0x3555), 0.333251953125);
  assert.equal(float16Value(0x0001), 2 ** -24);
  assert.equal(float16Value(0xfbff), -65504);
});

test('the float16 codec round-trips arrays within half a unit in the last place', () => {
  const c = wireCodec('float16');
  const src = Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i) * 10 ** ((i % 7) - 3));
  const enc = new Uint8Array(c.bytes(src.length));
  assert.equal(enc.length, 2 * src.length);
  c.encode(src, enc);
  const out = new Float32Array(src.length);
  c.decode(enc, out);
  for (let i = 0; i < src.length; i++) {
    const a = Math.abs(src[i]!);
    // Half an ulp: 2^-11 relative for normals, 2^-25 absolute for subnormals.
    assert.ok(Math.abs(out[i]! - src[i]!) <= Math.max(a * 2 ** -11, 2 ** -25), `${src[i]} → ${out[i]}`);
  }
});

test('int8 keeps one scale per chunk: a large value in one chunk leaves small values of another intact', () => {
  const c = wireCodec('int8');
  const m = INT8_CHUNK + 3;
  const src = new Float32Array(m).fill(0.001);
  src[0] = 100;
  const enc = new Uint8Array(c.bytes(m));
  assert.equal(enc.length, 8 + Math.ceil(m / 4) * 4, 'two scales and a byte per element, padded to 4');
  c.encode(src, enc);
  const out = new Float32Array(m);
  c.decode(enc, out);
  assert.ok(Math.abs(out[0]! - 100) <= 100 / 254);
  assert.equal(out[1], 0, 'in the first chunk 0.001 is below half a step of 100/127');
  for (let i = INT8_CHUNK; i < m; i++) assert.ok(Math.abs(out[i]! - 0.001) <= 1e-8, `second chunk ${out[i]}`);
  const zeros = new Float32Array(5);
  const z = new Uint8Array(c.bytes(5));
  c.encode(zeros, z);
  const back = new Float32Array(5).fill(7);
  c.decode(z, back);
  assert.deepEqual([...back], [0, 0, 0, 0, 0]);
});

test('error feedback carries what int8 lost into the next step, so small gradients are delayed, not dropped', () => {
  const c = wireCodec('int8');
  const m = 4;
  const g = Float32Array.of(1, 0.001, -0.003, 0.5);
  const residual = new Float32Array(m);
  const enc = new Uint8Array(c.bytes(m));
  const scratch = new Float32Array(m);
  const out = new Float32Array(m);
  const sent = new Float64Array(m);
  const plain = new Float64Array(m);
  const steps = 100;
  for (let s = 0; s < steps; s++) {
    encodeWithFeedback(c, g, residual, enc, scratch);
    c.decode(enc, out);
    for (let i = 0; i < m; i++) sent[i]! += out[i]!;
    c.encode(g, enc);
    c.decode(enc, out);
    for (let i = 0; i < m; i++) plain[i]! += out[i]!;
  }
  // What was sent plus what is still held back is exactly what was given.
  for (let i = 0; i < m; i++) assert.ok(Math.abs(sent[i]! + residual[i]! - steps * g[i]!) <= 1e-4, `element ${i}`);
  // Without feedback 0.001 rounds to 0 every time; with it, it gets through on average.
  assert.equal(plain[1], 0);
  assert.ok(Math.abs(sent[1]! - steps * 0.001) <= 1 / 127, `sent ${sent[1]}`);
  assert.ok(Math.abs(sent[2]! - steps * -0.003) <= 1 / 127, `sent ${sent[2]}`);
});
