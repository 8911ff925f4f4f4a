/** The summary's "memory per device" block for the terminal. */
import type { MemorySummary } from '../profiler/memory-summary';
import { formatBytes } from '../profiler/units';
import { table } from './format';

/** The memory block: a row per device, the computed sum against the process's measured growth, the shape check. */
export function memoryLines(m: MemorySummary): string[] {
  const training = m.devices.some((d) => d.gradientBytes !== undefined);
  const stored = m.devices.some((d) => d.storedActivationBytes !== undefined);
  const cap = m.capacity;
  const header = [
    'device',
    'rows',
    'parameters',
    'activations (peak)',
    ...(training ? ['gradients', 'optimizer'] : []),
    ...(stored ? ['stored (other micro-batches)'] : []),
    'total',
    ...(cap ? [`fits ${formatBytes(cap.bytes)}`] : []),
  ];
  const rows = m.devices.map((d) => [
    d.id,
    String(d.rows),
    formatBytes(d.parameterBytes),
    formatBytes(d.activationBytes),
    ...(training ? [formatBytes(d.gradientBytes ?? 0), formatBytes(d.optimizerBytes ?? 0)] : []),
    ...(stored ? [formatBytes(d.storedActivationBytes ?? 0)] : []),
    formatBytes(d.totalBytes),
    ...(cap ? [d.fits ? 'yes' : 'NO'] : []),
  ]);
  const out = [
    'memory per device (parameters exact: the weights each device loaded or keeps resident; activations computed from the shapes the run produced, not measured: the CPU provider reports no memory)',
    table(header, rows),
  ];
  const p = m.process;
  if (p) {
    const also = p.alsoRan.length > 0 ? `, and the same process also ran ${listText(p.alsoRan)}` : '';
    out.push(
      `sum over devices ${formatBytes(m.totalBytes)} computed · runner process grew ${formatBytes(p.growthBytes)} while the devices ran (resident set ${formatBytes(p.rssBeforeBytes)} → peak ${formatBytes(p.peakRssBytes)}, ${p.peakSource === 'maxRSS' ? "the kernel's high-water mark" : `sampled every ${p.sampleMs} ms`}); measured process-wide: every device is a thread of that one process${also}`,
    );
  }
  const checked = m.devices.reduce((n, d) => n + d.shapeCheck.checked, 0);
  const differ = [...new Set(m.devices.flatMap((d) => d.shapeCheck.mismatched))];
  if (checked > 0) {
    out.push(differ.length === 0 ? `shapes: the ${checked} segment outputs the workers recorded match the shapes propagated from the inputs` : `shapes: ${differ.length} of ${checked} recorded segment outputs differ from the propagated shapes (${differ.slice(0, 4).join(', ')}${differ.length > 4 ? ', …' : ''}); their recorded shapes are counted`);
  }
  const unknown = m.devices.reduce((n, d) => Math.max(n, d.unknownTensors), 0);
  if (unknown > 0) out.push(`shapes: ${unknown} held tensor(s) of unknown shape counted as zero; the activation peak is a lower bound`);
  if (cap && m.overCapacity.length > 0) out.push(`does not fit in ${formatBytes(cap.bytes)} per device: ${m.overCapacity.join(', ')} (see the findings)`);
  return out;
}

/** `a`, `a and b`, `a, b and c`. */
function listText(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)!}`;
}
