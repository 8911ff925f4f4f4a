/** Plain-text rendering of summaries and findings for the terminal. */
import type { ProfileSummary } from '../profiler/summary';
import type { TrainingSummary } from '../profiler/training-summary';
import type { Finding } from '../profiler/findings';
import type { MeasurementQuality } from '../profiler/quality';
import type { NumericalCheck } from '../profiler/trace-format';
import type { Analysis } from '../profiler/analysis';
import { formatBytes, formatDuration, formatPercent } from '../profiler/units';
import { IDLE_SPAN_CAUSES } from '../profiler/span-vocabulary';
import { memoryLines } from './memory-lines';

/** A duration for the terminal: `830 µs`, `12.35 ms`, `1.25 s`. */
export function ms(us: number): string {
  return formatDuration(us, { msDigits: 2 });
}

function pct(x: number): string {
  return formatPercent(x, 1);
}

/**
 * Lays out rows as a table with a header rule. By default the first column is left-aligned
 * and the others (numbers) right-aligned; `leftColumns` left-aligns more of them (text).
 */
export function table(header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The measurement-quality lines, or none when the quality is good (or unknown, for old summaries). */
export function formatQuality(q: MeasurementQuality | undefined): string[] {
  if (!q || q.verdict === 'good') return [];
  const head = q.verdict === 'poor' ? 'MEASUREMENT QUALITY: POOR — timings are unreliable on this run' : 'measurement quality: fair';
  return [head, ...q.reasons.map((r) => `  ${r}`)];
}

export function formatSummary(s: ProfileSummary, findings: Finding[]): string {
  const out: string[] = [];
  const quality = formatQuality(s.measurementQuality);
  if (quality.length > 0) out.push(...quality, '');
  const mode = s.mode === 'imported' ? `imported from ${s.source.replace(/^imported:/, '')}` : `${s.mode} parallel`;
  const title = `${s.model ?? 'trace'} · ${mode} · ${s.devices.length} device${s.devices.length === 1 ? '' : 's'} · ${s.steps} steps${s.batch ? ` · batch ${s.batch}` : ''}`;
  out.push(title);
  if (s.source !== 'measured') out.push(`source: ${s.source} (not measured on this machine)`);
  out.push('');
  const steps = s.steps || 1;
  out.push(
    table(
      ['device', 'compute/step', 'comm/step', 'idle/step', 'compute', 'comm', 'idle', 'util'],
      s.devices.map((d) => {
        const tot = d.computeUs + d.commUs + d.idleUs || 1;
        return [
          d.label,
          ms(d.computeUs / steps),
          ms(d.commUs / steps),
          ms(d.idleUs / steps),
          pct(d.computeUs / tot),
          pct(d.commUs / tot),
          pct(d.idleUs / tot),
          pct(d.utilization),
        ];
      }),
    ),
  );
  out.push('');
  out.push(`step time   median ${ms(s.stepTimeUs.median)}   p10 ${ms(s.stepTimeUs.p10)}   p90 ${ms(s.stepTimeUs.p90)}`);
  if (s.throughputPerS !== null) out.push(`throughput  ${s.throughputPerS.toFixed(1)} samples/s`);
  if (s.speedupVsOneDevice !== null && s.baseline) {
    const iv = s.speedupInterval ? ` (90% interval ${s.speedupInterval.lo.toFixed(2)}–${s.speedupInterval.hi.toFixed(2)}×)` : '';
    // Summaries written before measurement quality existed have no speedupReliable: trusted as before.
    const unreliable = s.speedupReliable === false ? ' — unreliable (measurement quality poor)' : '';
    const how = s.baseline.blockPairs ? `steps interleaved with the parallel run's in ${s.baseline.blockPairs} pairs of blocks, compared pair by pair` : "steps interleaved with the parallel run's";
    out.push(`speedup     ${s.speedupVsOneDevice.toFixed(2)}×${iv} vs ${s.baseline.description} (median ${ms(s.baseline.stepTimeUs)}, ${how})${unreliable}`);
  }
  if (s.probe) {
    const what = s.probe.microBatches !== undefined ? `${s.probe.microBatches} micro-batches` : s.probe.mode === 'data' ? 'data parallel, same batch and devices' : `batch ${s.probe.batch ?? '?'}`;
    const why = s.probe.mode === 'data' ? 'the alternative tensor parallelism is weighed against' : 'a second operating point for predictions';
    out.push(`probe       ${what}: median ${ms(s.probe.stepTimeUs)} over ${s.probe.steps} steps, interleaved on workers of its own (${why})`);
  }
  for (const g of s.gpuBusy ?? []) {
    out.push(`gpu         ${g.device}: busy ${formatPercent(g.share, 0)} of its operator-profiled runs (GPU timestamps of ${g.kernels} shader dispatches over ${g.runs} runs)`);
  }
  if (s.captureOverhead) {
    const c = s.captureOverhead;
    const sp = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}%`;
    out.push(`capture     ${sp(c.ratio)} (90% interval ${sp(c.lo)} to ${sp(c.hi)}): median ${ms(c.capturedUs)} captured vs ${ms(c.uncapturedUs)} with capture off, ${c.steps} steps each, interleaved in this run`);
  }
  if (s.numericalCheck) out.push(numericsLine(s.numericalCheck, s.training ? 'parameter' : 'output'));
  if (s.training) out.push('', ...trainingLines(s.training));
  if (s.memory) out.push('', ...memoryLines(s.memory));
  if (s.stages && s.bubbleFraction !== undefined) {
    out.push(
      `bubble      ${pct(s.bubbleFraction)} of stage time (GPipe (K−1)/(M+K−1) = ${pct(s.gpipeBubbleFraction ?? NaN)}), stage balance max/mean ${(s.stageBalance ?? NaN).toFixed(2)}`,
    );
    out.push('');
    out.push(
      table(
        ['stage', 'device', 'nodes', 'first → last node', 'compute/step', 'bubble'],
        s.stages.map((st) => [
          String(st.index),
          st.device,
          String(st.nodes),
          st.firstNode ? `${st.firstNode} → ${st.lastNode}` : '',
          ms(st.computeUs / steps),
          pct(st.bubbleFraction),
        ]),
      ),
    );
  }
  const shared = s.devices.filter((d) => d.sharesPhysicalUnit || d.software);
  for (const d of shared) {
    out.push(`note        ${d.label}${d.sharesPhysicalUnit ? ': a virtual device sharing its physical unit' : ''}${d.software ? ' (software implementation)' : ''}`);
  }
  const active = findings.filter((f) => !f.heldBack);
  const held = findings.filter((f) => f.heldBack);
  if (active.length > 0) {
    out.push('');
    out.push('findings');
    for (const f of active) {
      out.push(`  [${f.severity}] ${f.message}`);
      if (f.caveat) out.push(`      caveat: ${f.caveat}`);
      out.push(`      change: ${f.change.description}`);
      if (f.predictedStepUs !== null) {
        const change = f.predictedStepUs / f.currentStepUs - 1;
        // A bigger batch lengthens the step but raises throughput: say both.
        const tp = f.throughput
          ? `; throughput ${f.throughput.currentPerS.toFixed(0)} → ${f.throughput.predictedPerS.toFixed(0)} samples/s`
          : '';
        out.push(`      predicted step: ${ms(f.currentStepUs)} → ${ms(f.predictedStepUs)} (${change <= 0 ? '−' : '+'}${Math.abs(change * 100).toFixed(0)}%)${tp}`);
      }
    }
  }
  if (held.length > 0) {
    out.push('');
    out.push('held back (their evidence is timing, and measurement quality is poor; rerun on a quiet machine)');
    for (const f of held) out.push(`  [${f.heldBack!.severity}] ${f.message}`);
  }
  return out.join('\n');
}

/** The deeper breakdown `parallax report` adds: idle by cause, critical path, top operators. */
export function formatAnalysis(s: ProfileSummary, a: Analysis): string {
  const out: string[] = [];
  out.push('idle by cause (per step)');
  const steps = s.steps || 1;
  out.push(
    table(
      ['device', ...IDLE_SPAN_CAUSES.map((c) => (c === 'collective' ? 'collective wait' : c)), 'critical-path share', 'slack'],
      s.devices.map((d, l) => [
        d.label,
        ...IDLE_SPAN_CAUSES.map((c) => ms(d.idleByCauseUs[c] / steps)),
        pct(a.criticalPath.laneCriticalShare[l] ?? NaN),
        ms(a.criticalPath.laneSlackUs[l] ?? NaN),
      ]),
    ),
  );
  if (a.ops.available) {
    const groups = a.pipeline ? a.ops.perStage : a.ops.perLane;
    for (const g of groups) {
      out.push('');
      const who = a.pipeline ? `stage ${g.index}` : (s.devices[g.index]?.label ?? `lane ${g.index}`);
      out.push(`top operators · ${who}`);
      out.push(
        table(
          ['operator', 'type', 'mean', 'share of step'],
          g.ops.slice(0, 5).map((o) => [o.node, o.opType, ms(o.meanUs), pct(o.shareOfStep)]),
          2,
        ),
      );
    }
  }
  return out.join('\n');
}

/** A training run's lines: the loss, and each part of a step per device. */
function trainingLines(t: TrainingSummary): string[] {
  // JSON turns a NaN loss (a diverged run) into null.
  const loss = (x: number | null): string => (typeof x === 'number' && Number.isFinite(x) ? x.toPrecision(5) : 'not a number');
  const base = t.baselineLossLast !== null ? ` (one device: ${loss(t.baselineLossLast)})` : '';
  const p = t.pipeline;
  const tp = t.tensor;
  const sync = p
    ? `${p.schedule} over ${p.microBatches} micro-batches, gradients summed per stage`
    : tp
      ? `each device trains its slices; all-reduces per step: ${tp.forwardAllReduces} of activations (forward), ${tp.backwardAllReduces} of activation gradients (backward)${tp.gradientAllReduces > 0 ? `, ${tp.gradientAllReduces} of the partial gradients of weights read in split layers` : ''}`
      : `gradients ${(t.gradientBytes / 1e6).toFixed(2)} MB per step in ${t.buckets} bucket${t.buckets === 1 ? '' : 's'}`;
  const stored = p
    ? [
        table(
          ['stage', 'parameters', 'stored activations (peak)', 'schedule bound', 'bytes (peak)'],
          p.stages.map((st) => [String(st.stage), String(st.parameters), `${st.peakStoredMicroBatches} micro-batch${st.peakStoredMicroBatches === 1 ? '' : 'es'}`, String(st.compiledPeakMicroBatches), formatBytes(st.peakStoredBytes)]),
        ),
      ]
    : [];
  return [
    `training    ${t.loss} loss ${loss(t.lossFirst)} → ${loss(t.lossLast)}${base} over the timed steps; ${t.optimizer}, lr ${t.lr}; ${sync}`,
    ...(p || tp ? [] : [`            ${t.syncEvery > 1 ? `local SGD, parameters averaged every ${t.syncEvery} steps` : `${t.gradDtype} gradients on the wire`}: ${(t.wireBytesPerStep / 1e6).toFixed(3)} MB sent and received per step per device`]),
    ...(t.notComparable ? [`numerics    not checked: ${t.notComparable}`] : []),
    ...stored,
    table(
      ['device', 'forward/step', 'backward/step', 'all-reduce/step', 'of it overlapped', 'optimizer/step'],
      t.devices.map((d) => [d.id, ms(d.forwardUs), ms(d.backwardUs), ms(d.allReduceUs), ms(d.overlapUs), ms(d.optimizerUs)]),
    ),
  ];
}

/**
 * The summary's numerics line. A mismatch names each failing output and its error (or that
 * the run did not produce it), so the output at fault is visible without opening the trace.
 */
export function numericsLine(nc: NumericalCheck, noun: 'output' | 'parameter' = 'output'): string {
  const l2 = nc.l2Tol !== undefined && nc.maxRelL2 !== undefined ? `, relative L2 err ${nc.maxRelL2.toExponential(2)} (tolerance ${nc.l2Tol.toExponential(0)})` : '';
  const errs = `max abs err ${nc.maxAbsErr.toExponential(2)}, max rel err ${nc.maxRelErr.toExponential(2)}${l2}`;
  const outputs = nc.outputs ?? [];
  const count = outputs.length > 0 ? `, ${outputs.length} ${noun}${outputs.length === 1 ? '' : 's'}` : '';
  if (nc.ok) return `numerics    ok: ${errs}${count} against ${nc.reference}`;
  const failing = outputs
    .filter((o) => !o.ok)
    .map((o) => (o.elements === 0 ? `"${o.name}" (missing or of another size)` : `"${o.name}" (max abs err ${o.maxAbsErr.toExponential(2)}, max rel err ${o.maxRelErr.toExponential(2)}${nc.l2Tol !== undefined && o.relL2 !== undefined ? `, relative L2 err ${o.relL2.toExponential(2)}` : ''})`));
  const which = failing.length > 0 ? ` in ${failing.join(', ')}` : '';
  return `numerics    MISMATCH${which}: ${errs}${count} against ${nc.reference}`;
}
