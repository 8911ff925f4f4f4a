/**
 * The check of messages from the timeline view (src/extension/webview-messages.ts): every
 * message of the protocol passes; unknown types, wrong shapes, extra fields and oversized
 * payloads are refused with one short line; nothing a view sends makes the check throw.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkFromWebview, MAX_MESSAGE_TEXT } from '../../src/extension/webview-messages';
import type { FromWebview } from '../../webview/src/protocol';

/** One well-formed message of every type of the protocol. */
const VALID: FromWebview[] = [
  { type: 'ready', protocol: 2 },
  { type: 'loaded', runs: [{ spans: 120, lanes: 2, source: 'parallax' }], firstFrameMs: 31.5 },
  { type: 'loaded', runs: [], firstFrameMs: 0 },
  { type: 'error', message: 'the trace has no spans' },
  { type: 'openSource', run: 0, span: 7, name: '/layer0/MatMul', opType: 'MatMul', lane: 1, device: 'cpu:1' },
  { type: 'openSource', run: 1, span: 0, name: 'session.run', opType: null, lane: 0, device: '' },
  { type: 'selectFinding', run: 0, index: 3, id: 'pipeline-bubble' },
  { type: 'selectRange', startUs: 10, endUs: 20.5 },
  { type: 'selectRange', startUs: null, endUs: null },
  { type: 'query', id: 1, run: 0, query: { type: 'opStats', groupBy: 'opType' } },
  { type: 'query', id: 2, run: 1, query: { type: 'search', text: 'matmul', range: { startUs: 0, endUs: 100 }, limit: 50 } },
  { type: 'tile', id: 3, run: 0, request: { laneStart: 0, laneEnd: 8, startUs: -50, endUs: 1e9, pixels: 4800 } },
  { type: 'spanAt', id: 4, run: 1, request: { lane: 3, row: 1, timeUs: 1234.5, toleranceUs: 0.75 } },
];

function refused(data: unknown): string {
  const r = checkFromWebview(data);
  assert.equal(r.ok, false, `refused: ${JSON.stringify(data)?.slice(0, 200)}`);
  const error = (r as { error: string }).error;
  assert.equal(error.split('\n').length, 1, 'one line');
  assert.ok(error.length <= 300, `short (${error.length} characters)`);
  return error;
}

describe('messages from the timeline view', () => {
  test('every message of the protocol passes unchanged', () => {
    for (const m of VALID) assert.deepEqual(checkFromWebview(m), { ok: true, message: m });
  });

  test('a message of an unknown type is refused, including ones asking to open a file or run a command', () => {
    const asks: unknown[] = [
      { type: 'openFile', path: '/etc/passwd' },
      { type: 'open', uri: 'file:///etc/shadow' },
      { type: 'executeCommand', command: 'workbench.action.terminal.new', args: [] },
      { type: 'runCommand', command: 'parallax.profileModel' },
      { type: 'profile', modelPath: '../../outside.onnx' },
      { type: 'toString' },
      { type: '__proto__' },
      { type: 'constructor' },
      { type: 'READY', protocol: 2 },
      { protocol: 2 },
    ];
    for (const m of asks) assert.match(refused(m), /^unknown message type/);
  });

  test('values that are not message objects are refused', () => {
    for (const v of [null, undefined, 0, 'ready', true, [], [{ type: 'ready', protocol: 2 }]]) assert.match(refused(v), /^not a message object/);
  });

  test('a message of a known type with the wrong shape is refused, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ type: 'ready' }, /^ready: /],
      [{ type: 'ready', protocol: '2' }, /^ready: \/protocol/],
      [{ type: 'ready', protocol: -1 }, /^ready: \/protocol/],
      [{ type: 'ready', protocol: 1.5 }, /^ready: \/protocol/],
      [{ type: 'loaded', runs: [{ spans: 1, lanes: 1, source: 'a' }, { spans: 1, lanes: 1, source: 'b' }, { spans: 1, lanes: 1, source: 'c' }], firstFrameMs: 1 }, /^loaded: \/runs/],
      [{ type: 'loaded', runs: [{ spans: 1, lanes: 1 }], firstFrameMs: 1 }, /^loaded: \/runs\/0/],
      [{ type: 'loaded', runs: [], firstFrameMs: Number.NaN }, /^loaded: \/firstFrameMs/],
      [{ type: 'loaded', runs: [], firstFrameMs: Number.POSITIVE_INFINITY }, /^loaded: \/firstFrameMs/],
      [{ type: 'openSource', run: 2, span: 0, name: 'n', opType: null, lane: 0, device: 'cpu:0' }, /^openSource: \/run/],
      [{ type: 'openSource', run: 0, span: 0, name: 'n', lane: 0, device: 'cpu:0' }, /^openSource: /],
      [{ type: 'selectFinding', run: 0, index: 0, id: 7 }, /^selectFinding: \/id/],
      [{ type: 'selectRange', startUs: 10, endUs: null }, /^selectRange: /],
      [{ type: 'query', id: 1, run: 0, query: { type: 'opStats', groupBy: 'device' } }, /^query: \/query/],
      [{ type: 'query', id: 1, run: 0, query: { type: 'drop', text: 'x' } }, /^query: \/query/],
      [{ type: 'query', id: 1, run: 0, query: { type: 'search', text: 'x', range: { startUs: 9, endUs: 1 } } }, /range/],
    ];
    for (const [m, re] of cases) assert.match(refused(m), re);
  });

  test('tile requests out of bounds are refused: pixels, lanes, windows that run backwards', () => {
    const base = { type: 'tile', id: 1, run: 0, request: { laneStart: 0, laneEnd: 4, startUs: 0, endUs: 100, pixels: 1600 } };
    const bad = (request: Record<string, unknown>): string => refused({ ...base, request: { ...base.request, ...request } });
    assert.match(bad({ pixels: 0 }), /pixels/);
    assert.match(bad({ pixels: 1e6 }), /pixels/);
    assert.match(bad({ pixels: 2.5 }), /pixels/);
    assert.match(bad({ laneStart: -1 }), /laneStart/);
    assert.match(bad({ laneStart: 5, laneEnd: 4 }), /laneEnd/);
    assert.match(bad({ startUs: 100, endUs: 100 }), /startUs/);
    assert.match(bad({ endUs: Infinity }), /endUs/);
    assert.match(refused({ ...base, run: 2 }), /run/);
    assert.match(refused({ ...base, request: { ...base.request, path: '/etc/passwd' } }), /path|additional/i);
  });

  test('span-at requests outside a lane\'s rows or with a time that is no number are refused', () => {
    const base = { type: 'spanAt', id: 1, run: 0, request: { lane: 0, row: 2, timeUs: 10, toleranceUs: 1 } };
    const bad = (request: Record<string, unknown>): string => refused({ ...base, request: { ...base.request, ...request } });
    assert.match(bad({ row: 3 }), /row/);
    assert.match(bad({ lane: -1 }), /lane/);
    assert.match(bad({ timeUs: NaN }), /timeUs/);
    assert.match(bad({ toleranceUs: -1 }), /toleranceUs/);
    assert.match(refused({ ...base, request: { ...base.request, path: '/etc/passwd' } }), /path|additional/i);
  });

  test('fields the protocol does not have are refused (a path or command riding on a valid message)', () => {
    assert.match(refused({ type: 'openSource', run: 0, span: 0, name: 'n', opType: null, lane: 0, device: 'cpu:0', path: '/etc/passwd' }), /^openSource: /);
    assert.match(refused({ type: 'ready', protocol: 2, command: 'workbench.action.reloadWindow' }), /^ready: /);
    assert.match(refused({ type: 'query', id: 1, run: 0, query: { type: 'search', text: 'x', file: '/etc/hosts' } }), /^query: /);
  });

  test('oversized payloads are refused and the refusal does not quote them', () => {
    const big = 'A'.repeat(MAX_MESSAGE_TEXT + 1);
    const huge = 'B'.repeat(20 * 1024 * 1024);
    assert.match(refused({ type: 'error', message: big }), /^error: \/message/);
    const e = refused({ type: 'error', message: huge });
    assert.doesNotMatch(e, /BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB/);
    assert.match(refused({ type: 'query', id: 1, run: 0, query: { type: 'search', text: huge } }), /^query: /);
    assert.match(refused({ type: 'loaded', runs: Array.from({ length: 100_000 }, () => ({ spans: 1, lanes: 1, source: 'x' })), firstFrameMs: 1 }), /^loaded: \/runs/);
    assert.match(refused({ type: huge }), /^unknown message type "B{59}…?/);
    // At the cap itself a text passes.
    assert.equal(checkFromWebview({ type: 'error', message: 'C'.repeat(MAX_MESSAGE_TEXT) }).ok, true);
  });

  test('mutated messages (seeded) end in a typed message or one short refusal, never an exception', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const junk = (): unknown => [null, -1, 0.5, 2 ** 53, Number.NaN, '', 'x'.repeat(Math.floor(rand() * 20_000)), [], {}, { type: 'ready' }, true][Math.floor(rand() * 11)];
    let passed = 0;
    let refusedCount = 0;
    for (let i = 0; i < 3000; i++) {
      const m = structuredClone(VALID[Math.floor(rand() * VALID.length)]!) as unknown as Record<string, unknown>;
      const keys = Object.keys(m);
      const k = rand() < 0.15 ? `extra${i % 3}` : keys[Math.floor(rand() * keys.length)]!;
      if (rand() < 0.2) delete m[k];
      else m[k] = junk();
      const r = checkFromWebview(m);
      if (r.ok) {
        passed++;
        assert.ok(VALID.some((v) => v.type === r.message.type), 'a passing message has a protocol type');
      } else {
        refusedCount++;
        assert.equal(r.error.split('\n').length, 1);
        assert.ok(r.error.length <= 300);
      }
    }
    assert.ok(refusedCount > 2000, `most mutations are refused (${refusedCount})`);
    assert.ok(passed + refusedCount === 3000);
  });
});
