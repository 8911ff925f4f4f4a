import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  alignOrtProfile,
  endOrtProfiling,
  findOrtProfileFile,
  gpuBusyOf,
  matchRuns,
  parseOrtProfile,
  readOrtProfile,
  type OrtProfile,
  type RunWindow,
} from '../../src/profiler/ort-profile';
import { nowUs } from '../../src/runtime/spans';
import { seededValues, writeTinyMatMulModel, type TinyModel } from '../helpers/tiny-model';

const FIXTURE = join(__dirname, '..', 'fixtures', 'ort-profile', 'webgpu-other-clock.json');

function inside(span: { startUs: number; durUs: number }, w: RunWindow): boolean {
  return span.startUs >= w.startUs && span.startUs + span.durUs <= w.startUs + w.durUs + 1e-6;
}

describe('a real ONNX Runtime profile (CPU provider)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-ort-profile-'));
  let file = '';
  let text = '';
  let profile: OrtProfile;
  const windows: RunWindow[] = [];
  let model: TinyModel | null = null;

  before(async () => {
    model = writeTinyMatMulModel({ relu: true });
    const prefix = join(dir, 'tiny');
    // Optimisations off so the profile keeps the model's node names (with them on, ORT
    // fuses MatMul+Add+Relu into one FusedGemm node).
    const session = await ort.InferenceSession.create(model.path, {
      executionProviders: ['cpu'],
      intraOpNumThreads: 1,
      graphOptimizationLevel: 'disabled',
      enableProfiling: true,
      profileFilePrefix: prefix,
    });
    const x = new ort.Tensor('float32', seededValues(4 * model.k, 5), [4, model.k]);
    await session.run({ x }); // warm-up: recorded by ORT, not measured here
    for (let i = 0; i < 3; i++) {
      const t0 = nowUs();
      await session.run({ x });
      windows.push({ startUs: t0, durUs: nowUs() - t0 });
    }
    file = endOrtProfiling(session, prefix);
    await session.release();
    text = readFileSync(file, 'utf8');
    profile = parseOrtProfile(text);
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    model?.dispose();
  });

  test('endOrtProfiling finds the file ORT wrote for the prefix', () => {
    assert.match(file, /tiny_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+\.json$/);
    assert.ok(text.startsWith('['));
    assert.equal(findOrtProfileFile(join(dir, 'tin')), null, 'a shorter prefix does not match');
  });

  test('parsing yields one model_run per session.run and one node event per node per run', () => {
    assert.equal(profile.truncated, false);
    assert.equal(profile.runs.length, 4);
    assert.ok(profile.session.some((e) => e.name === 'session_initialization'));
    assert.equal(profile.nodes.length, 12);
    assert.deepEqual(profile.nodes.slice(0, 3).map((n) => [n.node, n.opType, n.provider]), [
      ['matmul', 'MatMul', 'CPUExecutionProvider'],
      ['add', 'Add', 'CPUExecutionProvider'],
      ['relu', 'Relu', 'CPUExecutionProvider'],
    ]);
    // The CPU provider prepacks constant MatMul weights and drops them from the recorded
    // input shapes; the activation input is always there.
    assert.deepEqual(profile.nodes[0].inputs?.[0], { dtype: 'float', dims: [4, 16] });
    assert.deepEqual(profile.nodes[0].outputs, [{ dtype: 'float', dims: [4, 8] }]);
    assert.equal(profile.gpu.length, 0);
  });

  test('streaming the file gives the same profile as parsing its text', async () => {
    assert.deepEqual(await readOrtProfile(file), profile);
  });

  test('op spans land inside their run windows, warm-up skipped by matching from the end', () => {
    const a = alignOrtProfile(profile, windows);
    assert.deepEqual(a.runMap, [1, 2, 3]);
    assert.equal(a.notes.length, 1);
    assert.match(a.notes[0], /1 more run\(s\) than were measured/);
    assert.equal(a.ops.length, 9);
    for (let r = 0; r < 3; r++) {
      const ops = a.ops.filter((o) => o.runIndex === r);
      assert.deepEqual(ops.map((o) => o.name), ['matmul', 'add', 'relu']);
      for (const o of ops) assert.ok(inside(o, windows[r]), `${o.name} of run ${r} lies inside its window`);
      for (let i = 1; i < ops.length; i++) assert.ok(ops[i].startUs >= ops[i - 1].startUs + ops[i - 1].durUs - 1e-6, 'ops do not overlap');
    }
    const b = alignOrtProfile(profile, windows, { skipRuns: 1 });
    assert.deepEqual(b.runMap, [1, 2, 3]);
    assert.deepEqual(b.notes, []);
    assert.deepEqual(b.ops, a.ops);
  });
});

describe('ORT profile edge cases (hand-written fixture)', () => {
  const text = readFileSync(FIXTURE, 'utf8');
  const p = parseOrtProfile(text);

  test('fence markers, unknown categories and node names with & are handled', () => {
    assert.equal(p.runs.length, 2);
    assert.deepEqual(p.nodes.map((n) => n.node), ['mm', 'a&b', 'mm', 'a&b', 'stray']);
    assert.deepEqual(p.otherCategories, { 'Node fence': 1, Custom: 1 });
    assert.deepEqual(p.gpu.map((g) => [g.node, g.opType, g.program]), [
      ['mm', 'MatMul', 'MatMulProgram'],
      ['a&b', 'Add', 'BinaryElementwise'],
      ['mm', 'MatMul', 'MatMulProgram'],
      ['a&b', 'Add', 'BinaryElementwise'],
    ]);
    assert.equal(p.gpu[0].shapes, 'inputs[0] = {4,4} inputs[1] = {16,2} outputs[0] = {4,2} ');
  });

  test('node events outside every model_run are dropped with a note', () => {
    const a = alignOrtProfile(p, [{ startUs: 1e6, durUs: 300 }]);
    assert.deepEqual(a.ops.map((o) => [o.name, o.startUs - 1e6, o.durUs]), [
      ['mm', 50, 40],
      ['a&b', 100, 30],
    ]);
    assert.ok(a.notes.some((n) => /1 ORT node event\(s\) lay outside every model_run/.test(n)));
  });

  test('the GPU\'s busy time over a run counts overlapping dispatches once, against the runs that have any', () => {
    const k = (runIndex: number, startUs: number, durUs: number) => ({ runIndex, name: 'n', opType: 'MatMul', program: 'p', startUs, durUs, clamped: false });
    const windows = [{ startUs: 0, durUs: 100 }, { startUs: 200, durUs: 50 }, { startUs: 400, durUs: 80 }];
    // Run 0: [10, 30) and [20, 50) overlap → 40 µs; run 1: [200, 210) → 10 µs; run 2 has none.
    const b = gpuBusyOf([k(0, 20, 30), k(0, 10, 20), k(1, 200, 10)], windows);
    assert.deepEqual(b, { kernels: 3, runs: 2, busyUs: 50, computeUs: 150 });
    assert.deepEqual(gpuBusyOf([], windows), { kernels: 0, runs: 0, busyUs: 0, computeUs: 0 });
    // The fixture's kernels, aligned into one window: busy time inside it.
    const w = { startUs: 1e6, durUs: 300 };
    const real = gpuBusyOf(alignOrtProfile(p, [w]).gpu, [w]);
    assert.equal(real.kernels, 2);
    assert.ok(real.busyUs > 0 && real.busyUs <= real.computeUs);
  });

  test('GPU kernels on another clock are shifted into their run window keeping their spacing', () => {
    const w = { startUs: 1e6, durUs: 300 };
    const a = alignOrtProfile(p, [w]);
    assert.deepEqual(a.gpu.map((g) => [g.name, g.program]), [
      ['mm', 'MatMulProgram'],
      ['a&b', 'BinaryElementwise'],
    ]);
    for (const g of a.gpu) assert.ok(inside(g, w));
    assert.equal(a.gpu[1].startUs - a.gpu[0].startUs, 60);
    assert.ok(a.gpu.every((g) => !g.clamped));
    assert.ok(a.notes.some((n) => /another clock/.test(n)));
    // With the warm-up run measured too, its kernels land in its own window.
    const w0 = { startUs: 0, durUs: 100_000 };
    const both = alignOrtProfile(p, [w0, w]);
    assert.deepEqual(both.gpu.map((g) => g.runIndex), [0, 0, 1, 1]);
    for (const g of both.gpu) assert.ok(inside(g, g.runIndex === 0 ? w0 : w));
  });

  test('spans longer than a window are clamped to it and flagged', () => {
    const w = { startUs: 1e6, durUs: 80 };
    const a = alignOrtProfile(p, [w]);
    const add = a.ops.find((o) => o.name === 'a&b')!;
    assert.equal(add.clamped, true);
    assert.ok(inside(add, w));
    assert.ok(a.notes.some((n) => /last much longer in ORT than their window/.test(n)) === false, 'a 200 µs run in an 80 µs window is not flagged below 1 ms');
  });

  test('fewer ORT runs than windows match from the start and the rest stay empty', () => {
    const ws = [0, 1, 2].map((i) => ({ startUs: i * 1e6, durUs: 200_000 }));
    const a = alignOrtProfile(p, ws);
    assert.deepEqual(a.runMap, [0, 1, -1]);
    assert.ok(a.notes.some((n) => /only 2 of 3 measured runs/.test(n)));
    assert.equal(a.ops.filter((o) => o.runIndex === 2).length, 0);
  });

  test('skipRuns overrides matching from the end and notes a count mismatch', () => {
    assert.deepEqual(matchRuns(5, 3, 1), { runMap: [1, 2, 3], notes: ['ORT recorded 5 runs; skipping 1 leaves 4 for 3 measured runs'] });
    assert.deepEqual(matchRuns(5, 3).runMap, [2, 3, 4]);
    assert.deepEqual(matchRuns(2, 2, 3).runMap, [-1, -1]);
  });

  test('a file cut short keeps the events before the cut and says so', () => {
    const lines = text.trimEnd().split('\n');
    const cut = lines.slice(0, 11).join('\n') + '\n{"cat" : "Node","pid" :7,"ts" :2000';
    const t = parseOrtProfile(cut);
    assert.equal(t.truncated, true);
    assert.equal(t.runs.length, 2);
    assert.equal(t.skipped, 1);
    const a = alignOrtProfile(t, [{ startUs: 0, durUs: 200 }]);
    assert.ok(a.notes.some((n) => /ends early/.test(n)));
  });

  test('other JSON layouts (pretty-printed, traceEvents object) parse the same', () => {
    const events = JSON.parse(text) as unknown[];
    const pretty = parseOrtProfile(JSON.stringify(events, null, 2));
    const wrapped = parseOrtProfile(JSON.stringify({ traceEvents: events }));
    for (const q of [pretty, wrapped]) {
      assert.equal(q.runs.length, 2);
      assert.equal(q.nodes.length, 5);
      assert.equal(q.gpu.length, 4);
    }
    assert.equal(alignOrtProfile(events, [{ startUs: 0, durUs: 300 }]).ops.length, 2, 'raw events are accepted too');
    assert.throws(() => parseOrtProfile('this is not a profile'), /not an ONNX Runtime profile/);
  });

  test('the streaming reader handles events split across read chunks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallax-ort-big-'));
    try {
      const pad = 'x'.repeat(1500);
      const lines = ['['];
      const n = 2000;
      for (let i = 0; i < n; i++) {
        lines.push(`{"cat" : "Node","pid" :1,"tid" :1,"dur" :5,"ts" :${100 + i * 10},"ph" : "X","name" :"n${i}_kernel_time","args" : {"op_name" : "Relu","provider" : "CPUExecutionProvider","pad" : "${pad}"}},`);
      }
      lines.push(`{"cat" : "Session","pid" :1,"tid" :1,"dur" :${n * 10 + 10},"ts" :95,"ph" : "X","name" :"model_run","args" : {}}`, ']');
      const big = join(dir, 'big.json');
      writeFileSync(big, lines.join('\n'));
      const q = await readOrtProfile(big);
      assert.equal(q.nodes.length, n);
      assert.equal(q.skipped, 0);
      assert.equal(q.truncated, false);
      assert.equal(q.nodes[n - 1].node, `n${n - 1}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('findOrtProfileFile takes the newest file of exactly that prefix', () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallax-ort-find-'));
    try {
      const older = join(dir, 'run_2026-01-01_10-00-00_001.json');
      const newer = join(dir, 'run_2026-01-01_10-00-05_002.json');
      writeFileSync(older, '[]');
      writeFileSync(newer, '[]');
      writeFileSync(join(dir, 'run_b_2026-01-01_10-00-09_003.json'), '[]');
      utimesSync(older, new Date(1000), new Date(1000));
      assert.equal(findOrtProfileFile(join(dir, 'run')), newer);
      assert.equal(findOrtProfileFile(join(dir, 'missing', 'run')), null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
