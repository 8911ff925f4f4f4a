/**
 * The sweep panel's pure parts: reading a sweep.json against the sweep schema
 * (src/profiler/sweep/files.ts), finding the plans' traces beside it, the messages the view
 * may send (src/extension/webview-messages.ts `checkFromSweepView`) and those it accepts
 * (webview/src/sweep-protocol.ts), and the table's text (webview/src/sweep/table.ts).
 * The fixture is a real `parallax sweep demo --repeats 1` result.
 *
 *   node --import tsx --test test/unit/sweep-panel.test.ts
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isUserError } from '../../src/common/errors';
import { microBatchChoices, modeChoices, sweepArgs } from '../../src/extension/sweep-args';
import { checkFromSweepView, MAX_MESSAGE_TEXT } from '../../src/extension/webview-messages';
import { findTracesDir, parseSweepResult, readSweepResult, sweepTracePath, sweepTracesIn, traceFileStem, writeSweepTraces } from '../../src/profiler/sweep/files';
import type { SweepResult } from '../../src/profiler/sweep/schema';
import type { Trace } from '../../src/profiler/trace-format';
import { readTrace } from '../../src/profiler/trace-io';
import { readToSweepView, type FromSweepView } from '../../webview/src/sweep-protocol';
import { curvePoints, errorLine, rowCells, SWEEP_COLUMNS } from '../../webview/src/sweep/cells';
import { tempDir } from '../helpers/temp';
import { traceOf } from '../helpers/trace-builders';

const FIXTURE = join(__dirname, '..', 'fixtures', 'sweep', 'demo-sweep.json');
const text = readFileSync(FIXTURE, 'utf8');
const sweep = (): SweepResult => parseSweepResult(text, 'demo-sweep.json');

/** A UserError of one line that matches `re`. */
function oneLineError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isUserError(e), `a UserError, got ${String(e)}`);
    assert.equal((e as Error).message.split('\n').length, 1);
    assert.match((e as Error).message, re);
    return true;
  });
}

describe('the choices of "Sweep Plans…"', () => {
  test('every mode is offered, the defaults checked', () => {
    const items = modeChoices();
    assert.deepEqual(items.map((i) => i.value), ['data', 'pipeline', 'tensor', 'hybrid']);
    assert.deepEqual(items.filter((i) => i.picked).map((i) => i.value), ['data', 'pipeline']);
    assert.ok(items.every((i) => i.detail.length > 0));
  });

  test('micro-batch counts that divide the batch, with their rows per micro-batch', () => {
    const items = microBatchChoices(12);
    assert.deepEqual(items.map((i) => i.value), [1, 2, 4]);
    assert.deepEqual(items.filter((i) => i.picked).map((i) => i.value), [1, 2, 4]);
    assert.equal(items[2]!.detail, '3 rows per micro-batch');
    assert.deepEqual(microBatchChoices(1).map((i) => i.detail), ['1 row per micro-batch']);
    assert.deepEqual(microBatchChoices(64, [2]).filter((i) => i.picked).map((i) => i.value), [2]);
  });
});

describe('sweep.json', () => {
  test('a real sweep result passes the schema check as it is', () => {
    const r = sweep();
    assert.deepEqual(r, JSON.parse(text));
    assert.ok(r.plans.some((p) => p.kind === 'measured') && r.plans.some((p) => p.kind === 'predicted'));
  });

  test('a file that is not JSON, or not a sweep, is one line naming the file and what to open', () => {
    oneLineError(() => parseSweepResult('{"plans": [', 'broken.json'), /^broken\.json is not JSON .*parallax sweep --out/);
    oneLineError(() => parseSweepResult('{"format":"parallax-trace"}', 'run.parallax.json'), /^run\.parallax\.json is not a Parallax sweep result \(.+\); open/);
    const r = JSON.parse(text) as { plans: Record<string, unknown>[] };
    r.plans[0]!['errorPct'] = 'large';
    oneLineError(() => parseSweepResult(JSON.stringify(r), 'sweep.json'), /\/plans\/0\/errorPct/);
  });

  test('reading a missing file or a folder says so', async () => {
    const dir = tempDir('sweep-read');
    await assert.rejects(readSweepResult(join(dir, 'nope.json')), /nope\.json: no such file/);
    await assert.rejects(readSweepResult(dir), /is not a file/);
    writeFileSync(join(dir, 'sweep.json'), text);
    assert.equal((await readSweepResult(join(dir, 'sweep.json'))).plans.length, sweep().plans.length);
  });
});

describe('traces of a sweep', () => {
  test('file names keep the plan label readable and safe', () => {
    assert.equal(traceFileStem('pipeline cpu:2 M=4 b32 (balanced cut)'), 'pipeline_cpu_2_M=4_b32_balanced_cut_');
    assert.equal(traceFileStem('../../etc/passwd'), '.._.._etc_passwd');
    assert.equal(sweepTracePath('/d', 'data cpu:2 b16', 'measured'), join('/d', 'data_cpu_2_b16.measured.parallax.json'));
  });

  test('written traces are found again per plan, measured ones only for measured plans; none without a folder', async () => {
    const r = sweep();
    const dir = tempDir('sweep-traces');
    const t: Trace = traceOf([{ lane: 0, kind: 'compute', name: 'run', start: 0, dur: 10, step: 0 }], [[0, 10]]);
    const measuredPlan = r.plans.find((p) => p.kind === 'measured')!;
    const predictedPlan = r.plans.find((p) => p.kind === 'predicted')!;
    await writeSweepTraces(dir, new Map([[measuredPlan.label, t], [predictedPlan.label, t]]), new Map([[measuredPlan.label, t]]));
    assert.equal((await readTrace(sweepTracePath(dir, measuredPlan.label, 'measured'))).spans.count, 1);
    const found = await sweepTracesIn(dir, r);
    r.plans.forEach((p, i) => {
      assert.deepEqual(found[i], { predicted: p === measuredPlan || p === predictedPlan, measured: p === measuredPlan }, p.label);
    });
    assert.ok((await sweepTracesIn(null, r)).every((x) => !x.predicted && !x.measured));
  });

  test('the traces folder is the sweep.json\'s own, else a "traces" folder beside it, else none', async () => {
    const r = sweep();
    const t = traceOf([{ lane: 0, kind: 'compute', name: 'run', start: 0, dur: 10, step: 0 }], [[0, 10]]);
    const first = r.plans[0]!.label;
    const here = tempDir('sweep-here');
    await writeSweepTraces(here, new Map([[first, t]]), new Map());
    assert.equal(await findTracesDir(join(here, 'sweep.json'), r), here);
    const beside = tempDir('sweep-beside');
    mkdirSync(join(beside, 'traces'));
    await writeSweepTraces(join(beside, 'traces'), new Map([[first, t]]), new Map());
    assert.equal(await findTracesDir(join(beside, 'sweep.json'), r), join(beside, 'traces'));
    assert.equal(await findTracesDir(join(tempDir('sweep-none'), 'sweep.json'), r), null);
  });
});

describe('messages from the sweep panel', () => {
  const VALID: FromSweepView[] = [
    { type: 'ready', protocol: 1 },
    { type: 'selectPlan', index: 0, label: 'data cpu:2 b16' },
    { type: 'selectPlan', index: 41, label: '' },
    { type: 'error', message: 'sweep: the result does not match the sweep schema' },
  ];

  function refused(data: unknown): string {
    const r = checkFromSweepView(data);
    assert.equal(r.ok, false, `refused: ${JSON.stringify(data)?.slice(0, 200)}`);
    const error = (r as { error: string }).error;
    assert.equal(error.split('\n').length, 1, 'one line');
    assert.ok(error.length <= 300, `short (${error.length} characters)`);
    return error;
  }

  test('every message of the protocol passes unchanged', () => {
    for (const m of VALID) assert.deepEqual(checkFromSweepView(m), { ok: true, message: m });
  });

  test('messages asking to open a file, run a command or profile, and the timeline\'s own types, are refused', () => {
    const asks: unknown[] = [
      { type: 'openFile', path: '/etc/passwd' },
      { type: 'showTimeline', tracePath: '/etc/passwd', comparePath: '../x.parallax.json' },
      { type: 'executeCommand', command: 'workbench.action.terminal.new', args: [] },
      { type: 'sweep', modelPath: '../../outside.onnx' },
      { type: 'query', id: 1, run: 0, query: { type: 'opStats', groupBy: 'opType' } },
      { type: 'openSource', run: 0, span: 1, name: 'x', opType: null, lane: 0, device: '' },
      { type: '__proto__' },
      { type: 'constructor' },
      { type: 'SELECTPLAN', index: 0, label: '' },
    ];
    for (const m of asks) assert.match(refused(m), /^unknown message type/);
    for (const v of [null, undefined, 3, 'ready', [], [{ type: 'ready', protocol: 1 }]]) assert.match(refused(v), /^not a message object/);
  });

  test('a selection with a path, a negative or fractional index, or an oversized label is refused', () => {
    assert.match(refused({ type: 'selectPlan', index: 0, label: 'x', tracePath: '/etc/passwd' }), /^selectPlan: /);
    assert.match(refused({ type: 'selectPlan', index: -1, label: 'x' }), /^selectPlan: \/index/);
    assert.match(refused({ type: 'selectPlan', index: 1.5, label: 'x' }), /^selectPlan: \/index/);
    assert.match(refused({ type: 'selectPlan', index: '0', label: 'x' }), /^selectPlan: \/index/);
    assert.match(refused({ type: 'selectPlan', index: 0, label: 'x'.repeat(MAX_MESSAGE_TEXT + 1) }), /^selectPlan: \/label/);
    assert.match(refused({ type: 'selectPlan', index: 0 }), /^selectPlan: /);
    assert.match(refused({ type: 'ready', protocol: 1, html: '<script>' }), /^ready: /);
  });
});

describe('the sweep view', () => {
  test('accepts a sweep with a trace flag per plan, refuses one that does not match', () => {
    const r = sweep();
    const traces = r.plans.map((p) => ({ predicted: true, measured: p.kind === 'measured' }));
    const ok = readToSweepView({ type: 'sweep', result: r, title: 't', traces, tracesNote: null });
    assert.equal(ok.ok, true);
    assert.match((readToSweepView({ type: 'sweep', result: r, title: 't', traces: traces.slice(1), tracesNote: null }) as { error: string }).error, /traces/);
    assert.match((readToSweepView({ type: 'sweep', result: { ...r, plans: 'all' }, title: 't', traces, tracesNote: null }) as { error: string }).error, /sweep schema/);
    assert.match((readToSweepView({ type: 'load', trace: {} }) as { error: string }).error, /unknown message type/);
  });

  test('the table says "predicted" where nothing was measured and gives each measured plan its error', () => {
    const r = sweep();
    for (const p of r.plans) {
      const cells = rowCells(p);
      assert.equal(cells.length, SWEEP_COLUMNS.length);
      assert.equal(cells[0], p.label);
      if (p.kind === 'predicted') assert.equal(cells[1], 'predicted');
      else assert.match(cells[1]!, /^\d+(\.\d\d)? (ms|µs) \[.+–.+\]$/);
      if (p.errorPct !== null) assert.equal(cells[3], `${p.errorPct > 0 ? '+' : ''}${p.errorPct.toFixed(1)} %`);
    }
    const line = errorLine(r);
    assert.ok(line.includes(`MAPE ${r.mapePct!.toFixed(1)} %`), line);
    assert.ok(line.includes(`max |error| ${r.maxAbsErrorPct!.toFixed(1)} %`), line);
    assert.ok(line.includes(`measurement quality ${r.measurementQuality.verdict}`), line);
  });
});

describe('the efficiency chart\'s predicted curve', () => {
  test('is Amdahl\'s law at the fitted serial fraction from 1 to the most devices, never above N× or the bound 1/f', () => {
    const s = { batch: 8, measured: [], predicted: [{ devices: 1, speedup: 1 }, { devices: 8, speedup: 3 }], predictedSerialFraction: 0.2, measuredSerialFraction: null };
    const pts = curvePoints(s, 8, 28);
    assert.equal(pts.length, 29);
    assert.deepEqual(pts[0], [1, 1]);
    assert.equal(pts.at(-1)![0], 8);
    assert.ok(Math.abs(pts.at(-1)![1] - 1 / (0.2 + 0.8 / 8)) < 1e-12);
    for (const [n, v] of pts) assert.ok(v <= n + 1e-12 && v < 1 / 0.2, `${v} at ${n} devices`);
    for (let i = 1; i < pts.length; i++) assert.ok(pts[i]![1] >= pts[i - 1]![1], 'more devices never predict less speedup on the curve');
  });

  test('joins the predicted points when no fraction was fitted', () => {
    const s = { batch: 8, measured: [], predicted: [{ devices: 1, speedup: 1 }, { devices: 4, speedup: 2.5 }], predictedSerialFraction: null, measuredSerialFraction: null };
    assert.deepEqual(curvePoints(s, 4), [[1, 1], [4, 2.5]]);
  });
});

describe('"Sweep Plans…" choices', () => {
  test('well-formed choices are taken as given', () => {
    const given = { devices: 'cpu:2', batch: 16, modes: ['data', 'pipeline'], microBatches: [1, 4], repeats: 1, steps: 2, warmup: 0 };
    assert.deepEqual(sweepArgs(given), given);
  });

  test('what does not fit is left out, one field at a time, and non-objects give no choices', () => {
    const bad = { devices: 'gpu:banana', batch: 0, modes: ['data', 'rm -rf'], microBatches: [2, 1.5], repeats: 1000, steps: -1, warmup: 'x', extra: true };
    assert.deepEqual(sweepArgs(bad), {});
    assert.deepEqual(sweepArgs({ ...bad, batch: 8 }), { batch: 8 });
    assert.deepEqual(sweepArgs({ modes: [] }), {});
    for (const v of [undefined, null, 'cpu:2', 3, [{ devices: 'cpu:2' }], { scheme: 'file', path: '/m.onnx', fsPath: '/m.onnx' }]) assert.deepEqual(sweepArgs(v), {});
  });
});
