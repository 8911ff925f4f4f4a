/**
 * What a span's label on the canvas says: what the span does, read from its columns — the
 * operator type for an operator, the phase (with micro-batch and stage) for a compute span
 * of a step, the operation for a transfer, the cause for idle time — and its recorded name
 * only where the columns say nothing more (imported traces name their kernels).
 */
import { COMM_OPS, IDLE_CAUSES, PHASES, SpanFlag, SpanKind } from '../../../src/profiler/trace-format';
import type { Run } from '../data';
import { formatBytes } from '../format';
import type { NameCache } from './names';

export function spanLabel(run: Run, runIndex: number, i: number, names: NameCache): string {
  const sp = run.trace.spans;
  const kind = sp.kind[i];
  if (kind === SpanKind.idle) return `idle: ${IDLE_CAUSES[sp.cause[i]] ?? 'other'}`;
  if (kind === SpanKind.comm) {
    const op = sp.comm[i] !== 0 ? COMM_OPS[sp.comm[i]] : null;
    if (!op) return names.get(runIndex, sp.name[i]);
    return sp.bytes[i] > 0 ? `${op} ${formatBytes(sp.bytes[i])}` : op;
  }
  const isOp = sp.parent[i] >= 0 || (sp.flags[i] & SpanFlag.op) !== 0;
  if (isOp) return sp.opType[i] >= 0 ? names.get(runIndex, sp.opType[i]) : names.get(runIndex, sp.name[i]);
  const phase = sp.phase[i] !== 0 ? PHASES[sp.phase[i]] : null;
  if (!phase) return names.get(runIndex, sp.name[i]);
  const parts: string[] = [phase];
  if (sp.micro[i] >= 0) parts.push(`mb ${sp.micro[i]}`);
  if (sp.stage[i] >= 0) parts.push(`stage ${sp.stage[i]}`);
  if (sp.flags[i] & SpanFlag.profiled) parts.push('profiled');
  return parts.join(' · ');
}
