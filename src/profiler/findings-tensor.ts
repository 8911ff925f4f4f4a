/**
 * Rules for tensor-parallel runs (tensor and data × tensor plans), on the per-layer costs of
 * analysis/tensor.ts:
 *
 * - `tensor-collectives`: the all-reduces inside the split layers take a large share of the
 *   step. Each layer's collective time is split into waiting for the last device to arrive
 *   (skew between the devices, not bytes) and the reduction itself. Keeping a layer whole
 *   removes its reduction and makes every device compute the whole layer, (T − 1) × its split
 *   compute more; the layers for which that pays are suggested (`--keep-whole`), with the step
 *   predicted from those two measured terms. The wait is not counted as saved: removing one
 *   synchronisation point moves the skew to the next one.
 * - `tensor-vs-data`: the run also measured the same batch data parallel on the same devices
 *   (`meta.dataProbe`, interleaved with the timed steps); where that was faster, data
 *   parallelism is suggested with the measured step. Tensor parallelism is for models that do
 *   not fit one device, or for fast links inside a node with data parallelism across nodes.
 */
import type { Analysis, TensorLayer } from './analysis/index';
import { COMM_BOUND_SHARE, MIN_STEP_GAIN, type Finding } from './findings';
import { median } from './stats';
import type { Trace } from './trace-format';
import { formatBytes, formatDuration as dur, formatPercent } from './units';

const pct = (x: number): string => formatPercent(x, 0);

/** The evidence window: the step closest to the median. */
function medianStepWindow(trace: Trace, medianUs: number): { startUs: number; endUs: number } {
  let best = trace.steps[0];
  for (const w of trace.steps) if (best && Math.abs(w.endUs - w.startUs - medianUs) < Math.abs(best.endUs - best.startUs - medianUs)) best = w;
  return { startUs: best?.startUs ?? 0, endUs: best?.endUs ?? 0 };
}

/** What keeping a layer whole would save per step (negative: it would cost), or null without operator detail. */
export function keepWholeGainUs(layer: TensorLayer, tensor: number): number | null {
  return layer.splitComputeUs === null ? null : layer.transferUs - (tensor - 1) * layer.splitComputeUs;
}

/** All-reduces inside the split layers take a large share of the step; suggests the layers to keep whole. */
export function tensorCollectivesRule(trace: Trace, a: Analysis): Finding[] {
  const t = a.tensor;
  const step = a.stepTimeUs.median;
  if (!t || !(step > 0) || t.layers.length === 0) return [];
  const share = t.collectiveUs / step;
  if (share < COMM_BOUND_SHARE) return [];
  const top = t.layers.slice().sort((x, y) => y.collectiveUs - x.collectiveUs).slice(0, 3);
  const layerText = top.map((l) => `${l.label} ${dur(l.collectiveUs)}`).join(', ');
  const gains = t.layers.map((l) => ({ layer: l, gain: keepWholeGainUs(l, t.tensor) }));
  const keep = gains.filter((g) => g.gain !== null && g.gain > 0);
  const saved = keep.reduce((s, g) => s + g.gain!, 0);
  const ev = medianStepWindow(trace, step);
  const lanes = t.groups.flat();
  const numbers: Record<string, number> = {
    collectiveShare: share,
    collectiveUsPerStep: t.collectiveUs,
    waitUsPerStep: t.waitUs,
    transferUsPerStep: t.transferUs,
    layers: t.layers.length,
    tensor: t.tensor,
  };
  top.forEach((l, i) => {
    numbers[`top${i + 1}CollectiveUs`] = l.collectiveUs;
    numbers[`top${i + 1}WaitUs`] = l.waitUs;
  });
  const message =
    `All-reduces inside the ${t.layers.length} split layer${t.layers.length === 1 ? '' : 's'} take ${pct(share)} of each step (${dur(t.collectiveUs)} per device: ` +
    `${dur(t.waitUs)} waiting for the other device${t.tensor > 2 ? 's' : ''} to arrive, ${dur(t.transferUs)} reducing); the largest: ${layerText}.`;
  const base = { id: 'tensor-collectives', message, evidence: { lanes, ...ev, numbers }, currentStepUs: step };
  const all = keep.length === t.layers.length;
  if (keep.length > 0 && !all && saved / step >= MIN_STEP_GAIN) {
    const labels = keep.map((g) => g.layer.label);
    const shown = labels.length <= 4 ? labels.join(', ') : `${labels.slice(0, 3).join(', ')} and ${labels.length - 3} more`;
    const split = keep.reduce((s, g) => s + g.layer.splitComputeUs!, 0);
    const xfer = keep.reduce((s, g) => s + g.layer.transferUs, 0);
    return [
      {
        ...base,
        severity: share >= 0.5 ? 'critical' : 'warning',
        change: {
          description:
            `Split fewer layers: keep ${shown} whole (--keep-whole ${labels.map((l) => JSON.stringify(l)).join(' --keep-whole ')}). ` +
            `Their reductions cost ${dur(xfer)} per step and their splits save ${dur(split * (t.tensor - 1))} of compute (${t.tensor - 1} × ${dur(split)}, measured per operator), ` +
            `so the step is predicted at ${dur(step - saved)}. The wait is not counted as saved: it is skew between the devices, and moves to the next all-reduce.`,
          params: { keepWhole: labels },
        },
        predictedStepUs: step - saved,
      },
    ];
  }
  const why = all
    ? 'every layer\'s reduction costs more than the compute its split saves, so no split pays here (see tensor-vs-data)'
    : gains.some((g) => g.gain === null)
      ? 'the run has no operator detail (--no-op-level), so what each split saves in compute is unknown'
      : t.waitUs > t.transferUs
        ? `no layer's reduction costs more than the compute its split saves; most of the time is waiting (${dur(t.waitUs)}): devices arriving apart, which the measurement quality and the step spread say more about`
        : 'no layer\'s reduction costs more than the compute its split saves';
  return [{ ...base, severity: 'info', change: { description: `Nothing to change in the split: ${why}.`, params: {} }, predictedStepUs: null }];
}

/** The same batch run data parallel on the same devices measured faster than the tensor split. */
export function tensorVsDataRule(trace: Trace, a: Analysis): Finding[] {
  const probe = trace.meta.dataProbe;
  const step = a.stepTimeUs.median;
  if (!probe || probe.stepTimesUs.length === 0 || a.mode !== 'tensor' || !(step > 0)) return [];
  const data = median(probe.stepTimesUs);
  if (!(data < step * (1 - MIN_STEP_GAIN))) return [];
  const params = (trace.meta.plan as { parameterBytes?: number }).parameterBytes;
  const t = a.tensor;
  const ev = medianStepWindow(trace, step);
  const whole = params !== undefined ? ` (each device then holds all ${formatBytes(params)} of parameters)` : '';
  return [
    {
      id: 'tensor-vs-data',
      severity: step / data >= 1.5 ? 'critical' : 'warning',
      message:
        `Data parallelism on the same devices measured ${dur(data)} per step in this run against ${dur(step)} tensor parallel (${(step / data).toFixed(2)}× faster)` +
        (t ? `; the split costs ${dur(t.collectiveUs)} of all-reduces per step.` : '.'),
      evidence: {
        lanes: trace.lanes.map((_, i) => i),
        ...ev,
        numbers: { dataStepUs: data, tensorStepUs: step, probeSteps: probe.stepTimesUs.length, ...(t ? { collectiveUsPerStep: t.collectiveUs } : {}), ...(params !== undefined ? { parameterBytes: params } : {}) },
      },
      change: {
        description:
          `Run --mode data --devices ${probe.devices}${whole}: measured in this run, ${probe.stepTimesUs.length} steps interleaved with the timed ones. ` +
          'Tensor parallelism pays where the model does not fit one device, or inside a node whose links are fast (NVLink), with data parallelism across nodes (--mode hybrid --data D --tensor T).',
        params: { mode: 'data' },
      },
      currentStepUs: step,
      predictedStepUs: data,
    },
  ];
}
