/**
 * The host ⇄ view protocol of the sweep panel (webview/src/sweep/, src/extension/sweep-panel.ts).
 * Direction is in the name: `ToSweepView` goes host → view, `FromSweepView` view → host. The
 * host checks every `FromSweepView` against its TypeBox schema
 * (src/extension/webview-messages.ts `checkFromSweepView`); the view checks what it receives
 * with {@link readToSweepView}, the sweep itself against the sweep result schema.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { SweepResultSchema, type SweepResult } from '../../src/profiler/sweep/schema';

export const SWEEP_PROTOCOL_VERSION = 1;

/** Which traces of a plan the host can show. */
export interface PlanTraces {
  predicted: boolean;
  measured: boolean;
}

/** The chart's colours come from CSS variables of the theme, so a theme change needs no message. */
export type ToSweepView =
  /** The sweep to show; `traces[i]` says what plan `i` has on disk (`tracesNote`: why none, when none). */
  { type: 'sweep'; result: SweepResult; title: string; traces: PlanTraces[]; tracesNote: string | null };

export type FromSweepView =
  /** The view is listening; the host may send `sweep`. */
  | { type: 'ready'; protocol: number }
  /** The user selected plan `index` (its `label` as shown, for the log): show its timelines. */
  | { type: 'selectPlan'; index: number; label: string }
  /** A message was refused; `message` says why. */
  | { type: 'error'; message: string };

export type ReadSweepResult = { ok: true; message: ToSweepView } | { ok: false; error: string };

const checkResult = TypeCompiler.Compile(SweepResultSchema);

/** Checks a message from the host before the view uses it. */
export function readToSweepView(data: unknown): ReadSweepResult {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, error: 'not a message object' };
  const m = data as Record<string, unknown>;
  switch (m['type']) {
    case 'sweep': {
      if (!checkResult.Check(m['result'])) return { ok: false, error: 'sweep: the result does not match the sweep schema' };
      const result = m['result'];
      const traces = m['traces'];
      const ok = (t: unknown): t is PlanTraces => typeof t === 'object' && t !== null && typeof (t as PlanTraces).predicted === 'boolean' && typeof (t as PlanTraces).measured === 'boolean';
      if (!Array.isArray(traces) || traces.length !== result.plans.length || !traces.every(ok)) return { ok: false, error: 'sweep: "traces" must say for every plan which traces it has' };
      const note = m['tracesNote'];
      if (note !== null && typeof note !== 'string') return { ok: false, error: 'sweep: "tracesNote" must be text or null' };
      const title = typeof m['title'] === 'string' ? m['title'] : '';
      return { ok: true, message: { type: 'sweep', result, title, traces, tracesNote: note } };
    }
    default:
      return { ok: false, error: `unknown message type ${JSON.stringify(String(m['type'])).slice(0, 60)}` };
  }
}
