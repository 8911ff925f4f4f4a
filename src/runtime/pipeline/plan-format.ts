/**
 * The text `parallax plan model.onnx --mode pipeline --stages K` prints: one row per stage
 * with its node range, cost, weights and the activation bytes it sends across its cuts,
 * then the balance. Plain text, no colours, so it reads the same in a terminal, a log and a
 * test snapshot.
 */
import { basename } from 'node:path';
import { formatBytes, formatDurationSig3, sig3 } from '../../profiler/units';
import type { ModelIR } from '../onnx/model';
import { NOMINAL_MACHINE, type Partition, type PipelineStage } from './partition';

/** Longest node name shown before it is shortened in the middle. */
const NAME_WIDTH = 36;

/** Formats a partition as a table (lines end with `\n`). */
export function formatPartition(partition: Partition, ir: ModelIR): string {
  const k = partition.stages.length;
  const estimated = partition.costSource === 'estimated';
  const per = partition.batchDim ? `per row of ${partition.batchDim}` : 'per step';
  const lines: string[] = [];
  lines.push(`Pipeline plan for ${basename(ir.path)}: ${k} stage${k === 1 ? '' : 's'} over ${ir.nodes.length} nodes`);
  lines.push(
    estimated
      ? `Costs are ESTIMATED from FLOPs and bytes on a nominal ${NOMINAL_MACHINE.flopsPerUs / 1000} GFLOP/s, ${NOMINAL_MACHINE.bytesPerUs / 1000} GB/s machine, not measured; profile the model to balance by measured time.`
      : 'Costs are measured per node.',
  );
  const header = ['stage', 'nodes (first → last)', 'count', estimated ? 'est. cost' : 'cost', 'params', `sends (${per})`];
  const rows = partition.stages.map((s) => [
    String(s.index),
    s.nodeNames.first === s.nodeNames.last ? shorten(s.nodeNames.first) : `${shorten(s.nodeNames.first)} → ${shorten(s.nodeNames.last)}`,
    String(s.nodeIndices.length),
    formatUs(s.costUs) + (s.sendUs > 0 ? ` (${formatUs(s.sendUs)} send)` : ''),
    formatCount(s.parameters),
    formatSends(s),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  // Numbers right-aligned, text left-aligned.
  const right = [true, false, true, true, true, false];
  const fmt = (cells: string[]): string => cells.map((v, c) => (right[c] ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join('  ').trimEnd();
  lines.push(fmt(header));
  for (const r of rows) lines.push(fmt(r));
  const bottleneck = partition.stages.reduce((a, b) => (b.costUs > a.costUs ? b : a));
  lines.push(
    `Balance ${partition.balance.toFixed(2)} (max/mean stage cost; 1.00 is perfect): stage ${bottleneck.index} is the bottleneck at ${formatUs(bottleneck.costUs)}` +
      (k > 1 ? `; cuts after ${partition.cuts.map((c) => `"${c}"`).join(', ')}` : ''),
  );
  return lines.join('\n') + '\n';
}

/** "256 B → 1, 1.5 KiB → 3"; "—" when the stage sends nothing on; "?" where a size is unknown. */
function formatSends(s: PipelineStage): string {
  const byDest = new Map<number, number | null>();
  for (const o of s.outputs) {
    for (const d of o.to) {
      if (d === 'graph') continue;
      const prev = byDest.has(d) ? byDest.get(d)! : 0;
      byDest.set(d, prev === null || o.bytes === null ? null : prev + o.bytes);
    }
  }
  if (byDest.size === 0) return '—';
  return [...byDest]
    .sort((a, b) => a[0] - b[0])
    .map(([d, b]) => `${b === null ? '?' : formatBytes(b)} → ${d}`)
    .join(', ');
}

function shorten(name: string): string {
  if (name.length <= NAME_WIDTH) return name;
  const head = Math.ceil((NAME_WIDTH - 1) / 2);
  return `${name.slice(0, head)}…${name.slice(name.length - (NAME_WIDTH - 1 - head))}`;
}

/** Microseconds as µs, ms or s with three significant digits. */
export const formatUs = formatDurationSig3;

function formatCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1e6) return `${sig3(n / 1000)} k`;
  if (n < 1e9) return `${sig3(n / 1e6)} M`;
  return `${sig3(n / 1e9)} G`;
}
