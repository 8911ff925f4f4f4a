/**
 * Operator detail lives in the operator-profiled steps, after the timed ones: analyses that
 * need operators read them from there, and never mistake the timed steps' lack of operator
 * spans for time between operators.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { summarize } from '../../src/profiler/summary';
import { findings } from '../../src/profiler/findings';
import { analyse } from '../../src/profiler/analysis';
import { SpanFlag, type SpanRow } from '../../src/profiler/trace-format';
import { dataPlan, meta, traceOf } from '../helpers/trace-builders';

/** Two devices, four timed steps of 100 µs (no operators), then two profiled steps whose operators fill 95 % of compute. */
function trace() {
  const rows: SpanRow[] = [];
  const steps: [number, number][] = [];
  for (let st = 0; st < 4; st++) {
    const t0 = st * 100;
    steps.push([t0, t0 + 100]);
    for (const lane of [0, 1]) {
      rows.push({ lane, kind: 'comm', name: 'scatter', comm: 'scatter', start: t0, dur: 2, step: st, bytes: 64 });
      rows.push({ lane, kind: 'compute', name: 'session.run', start: t0 + 2, dur: 94, step: st, phase: 'forward' });
      rows.push({ lane, kind: 'comm', name: 'gather', comm: 'gather', start: t0 + 96, dur: 2, step: st, bytes: 64 });
    }
  }
  const profiled: { index: number; startUs: number; endUs: number }[] = [];
  for (let k = 0; k < 2; k++) {
    const st = 4 + k;
    const t0 = 400 + k * 120;
    profiled.push({ index: st, startUs: t0, endUs: t0 + 120 });
    for (const lane of [0, 1]) {
      const parent = rows.length;
      rows.push({ lane, kind: 'compute', name: 'session.run', start: t0, dur: 110, step: st, flags: SpanFlag.profiled, phase: 'forward' });
      rows.push({ lane, kind: 'compute', name: 'fc/MatMul', opType: 'MatMul', start: t0 + 1, dur: 70, step: st, parent, flags: SpanFlag.op });
      rows.push({ lane, kind: 'compute', name: 'fc/Relu', opType: 'Relu', start: t0 + 72, dur: 34.5, step: st, parent, flags: SpanFlag.op });
    }
  }
  const t = traceOf(rows, steps, meta({ plan: dataPlan({ batch: 8 }) }));
  return deriveIdle({ ...t, profiledSteps: profiled });
}

test('operators come from the profiled steps, and timed steps without operators are no gaps between them', () => {
  const t = trace();
  const a = analyse(t);
  assert.ok(a.ops.available);
  const lane0 = a.ops.perLane[0]!;
  assert.equal(lane0.opCount, 4, 'two operators in each of the two profiled steps');
  assert.ok(Math.abs(lane0.opUs / lane0.computeUs - 209 / 220) < 1e-9, 'operator share of the profiled compute');
  const f = findings(t, summarize(t));
  assert.equal(f.some((x) => x.id === 'host-overhead'), false, f.map((x) => `${x.id}: ${x.message}`).join(' | '));
});
