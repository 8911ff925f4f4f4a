/**
 * Projection: what a measured plan would do on N devices of a given kind, over given links.
 *
 *   measured trace(s) ──fitCostModel──▶ costs per device kind ──(roofline scaling, hardware.ts)──▶
 *   projected cost model ──simulate(program for N devices)──▶ predicted trace + a table row
 *
 * The programs for N devices come from the compilers, which live on the runtime side (the
 * profiler never imports the runtime): the CLI compiles them and hands them in. Everything
 * here is pure.
 *
 * A projected cost model keeps what the calibration measured and replaces what it cannot
 * know: compute per segment from the measured device kind (scaled by the roofline when the
 * target is another kind), host time per instruction as measured (its median over ranks),
 * host copies of batch rows at the measured copy speed, every transfer between devices on the
 * chosen links (two-level collectives across nodes), and no interference between devices
 * (each is taken as a dedicated unit). Those assumptions are written into the predicted
 * trace's notes and returned with every projection.
 */
import { median } from '../stats';
import { measurementQuality } from '../quality';
import { SpanKind, type DeviceMeta, type Lane, type Trace, type TraceMeta } from '../trace-format';
import type { Instruction, Program } from '../program';
import type { DataPlan, PipelinePlan } from '../plan';
import { fitCostModel } from './fit';
import { bytesKey, type ComputeCost, type CostModel } from './costs';
import {
  DEVICE_KINDS,
  calibratedRates,
  linkOf,
  presetRates,
  scaleComputeCost,
  type DeviceKindChoice,
  type LinkPreset,
  type Precision,
  type SegmentWork,
} from './hardware';
import { simulate } from './simulate';

/** Strong scaling keeps the global batch; weak scaling keeps the rows per device. */
export type Scaling = 'strong' | 'weak';

/** The machine and scaling a projection assumes. */
export interface ProjectionSetup {
  kind: DeviceKindChoice;
  /** Precision of the roofline peaks (kinds other than `this`). */
  precision: Precision;
  /** Devices per node; collectives over more devices cross nodes. */
  nodeSize: number;
  link: LinkPreset;
  interLink: LinkPreset;
  scaling: Scaling;
}

/** A projected cost model and what it rests on. */
export interface ProjectionModel {
  costs: CostModel;
  /** Device kind of the projected devices, as trace metadata names kinds. */
  deviceKind: DeviceMeta['kind'];
  /** One line per assumption. */
  assumptions: string[];
  /** The measured trace the projected traces take their metadata from. */
  template: Trace;
  /** Bytes per row the measured host copies moved (outputs are not known before a run). */
  copyBytesPerRow: Record<'scatter' | 'gather', number>;
}

/** Splits a {@link kindKey} back into its device kind, segment key and phase. */
function splitKindKey(key: string): { kind: string; segment: string; phase: string } {
  const a = key.indexOf('|');
  const b = key.lastIndexOf('|');
  return { kind: key.slice(0, a), segment: key.slice(a + 1, b), phase: key.slice(b + 1) };
}

/** Bytes per row that host copies (`scatter`/`gather`) moved in the measured run, from its program and fitted bytes. */
function copyBytesPerRow(program: Program, costs: CostModel): Record<'scatter' | 'gather', number> {
  const per: Record<'scatter' | 'gather', number[]> = { scatter: [], gather: [] };
  for (const d of program.devices) {
    d.instructions.forEach((ins, idx) => {
      if (ins.op !== 'scatter' && ins.op !== 'gather') return;
      const bytes = ins.bytes > 0 ? ins.bytes : (costs.bytes?.[bytesKey(d.rank, idx)]?.bytes ?? 0);
      if (bytes > 0) per[ins.op].push(bytes / ins.rows.count);
    });
  }
  return { scatter: per.scatter.length > 0 ? median(per.scatter) : 0, gather: per.gather.length > 0 ? median(per.gather) : 0 };
}

/**
 * Fits the measured traces and builds the cost model of the projected machine. `work` (FLOPs
 * and bytes per segment key) is needed for kinds other than `this`.
 */
export function projectionModel(measured: readonly Trace[], setup: ProjectionSetup, work: Record<string, SegmentWork> = {}): ProjectionModel {
  const template = measured[0];
  if (!template?.meta.program) throw new Error('a projection needs a measured trace that records its program');
  const fitted = fitCostModel(measured);
  const measuredKind = template.meta.devices[0]?.kind ?? 'cpu';
  const assumptions: string[] = [];
  const byKind: Record<string, ComputeCost> = {};
  const deviceKind: DeviceMeta['kind'] = setup.kind === 'this' ? measuredKind : 'cuda';
  const entries = Object.entries(fitted.computeByKind ?? {}).filter(([k]) => splitKindKey(k).kind === measuredKind);
  if (setup.kind === 'this') {
    for (const [k, c] of entries) {
      const { segment, phase } = splitKindKey(k);
      byKind[`${deviceKind}|${segment}|${phase}`] = c;
    }
    assumptions.push(`devices: ${measuredKind} as calibrated here, each a dedicated unit (no interference)`);
  } else {
    const preset = DEVICE_KINDS[setup.kind];
    const to = presetRates(preset, setup.precision);
    const withWork = entries.map(([k, cost]) => {
      const w = work[splitKindKey(k).segment];
      if (!w) throw new Error(`no FLOP and byte estimate for segment ${splitKindKey(k).segment}`);
      return { k, cost, work: w };
    });
    const from = calibratedRates(withWork);
    for (const { k, cost, work: w } of withWork) {
      const { segment, phase } = splitKindKey(k);
      byKind[`${deviceKind}|${segment}|${phase}`] = scaleComputeCost(cost, w, from, to);
    }
    assumptions.push(
      `devices: ${preset.label} at ${setup.precision} (${preset.source}); compute scaled from ${measuredKind} by roofline, keeping each segment's efficiency relative to the best measured here (${(from.flopsPerUs / 1e3).toFixed(1)} GFLOP/s)`,
    );
  }
  for (const c of Object.values(fitted.computeByKind ?? {})) {
    if ((c.rowSizes?.length ?? 0) < 2) {
      assumptions.push(`compute: one row size measured (${(c.rowSizes ?? []).join(', ')}), so its fixed part is taken as 0 and predictions for many devices are optimistic; calibrate with uneven --shards or a second batch size`);
      break;
    }
  }
  // A calibration taken while other programs had the cores carries their contention into every prediction.
  const worst = measured.map((t) => measurementQuality(t)).find((q) => q.verdict !== 'good');
  if (worst) assumptions.push(`calibration: measured under ${worst.verdict} measurement quality (${(worst.reasons[0] ?? 'contention').replace(/\.$/, '')}); its costs carry that contention`);
  const hosts = Object.values(fitted.hostUs ?? {});
  const host = hosts.length > 0 ? median(hosts) : 0;
  assumptions.push(`host: ${host.toFixed(1)} µs per instruction as measured; host copies of batch rows at the measured speed`);
  const links = setup.link.id === setup.interLink.id ? setup.link.label : `${setup.link.label} inside nodes of ${setup.nodeSize}, ${setup.interLink.label} between them`;
  assumptions.push(`links: ${links} (${setup.link.source}${setup.interLink.id === setup.link.id ? '' : `; ${setup.interLink.source}`})`);
  assumptions.push(`scaling: ${setup.scaling === 'strong' ? 'strong (the global batch is split over the devices)' : 'weak (each device keeps its rows per step)'}`);
  const intra = linkOf(setup.link);
  const costs: CostModel = {
    compute: {},
    computeByKind: byKind,
    transfers: { copy: fitted.transfers.copy, p2p: intra, collective: intra },
    ...(fitted.recv ? { recv: fitted.recv } : {}),
    // Filled per projected rank count by projectPlan.
    hostUs: { '*': host },
    notes: fitted.notes ?? [],
    topology: { nodeSize: setup.nodeSize, intra, inter: linkOf(setup.interLink) },
  };
  return { costs, deviceKind, assumptions, template, copyBytesPerRow: copyBytesPerRow(template.meta.program, fitted) };
}

/** The data plan for `n` devices of a measured one: same global batch (strong) or same rows per device (weak). */
export function scaledDataPlan(measured: DataPlan, n: number, scaling: Scaling, devicesSpec: string): DataPlan {
  const measuredDevices = measured.shards?.length ?? 1;
  const perDevice = Math.max(1, Math.round(measured.batch / measuredDevices));
  const batch = scaling === 'strong' ? measured.batch : perDevice * n;
  const { shards: _s, ...rest } = measured;
  return { ...rest, devices: devicesSpec, batch };
}

/** One projected point: its plan and the program the compiler made for it. */
export interface ProjectionPoint {
  devices: number;
  plan: DataPlan | PipelinePlan;
  program: Program;
}

/**
 * The one-device baseline of a multi-segment program (a pipeline's stages): one device runs
 * every segment in order on the whole batch, between one scatter and one gather (their bytes
 * are filled from the measured bytes per row when projected).
 */
export function sequentialProgram(p: Program): Program {
  const rows = { start: 0, count: p.batch };
  const runs: Instruction[] = p.segments.map((seg) => {
    const phase = p.devices.flatMap((d) => d.instructions).find((i): i is Extract<Instruction, { op: 'run' }> => i.op === 'run' && i.segment === seg.id)?.phase ?? 'forward';
    return { op: 'run', micro: -1, segment: seg.id, rows: p.batch, phase };
  });
  const instructions: Instruction[] = [{ op: 'scatter', micro: -1, rows, tensors: [], bytes: 0 }, ...runs, { op: 'gather', micro: -1, rows, tensors: [], bytes: 0 }];
  return { ...p, schedule: 'sequential', buffers: [], devices: [{ rank: 0, stage: -1, segments: p.segments.map((g) => g.id), instructions }] };
}

/** Fills the host-copy bytes the compiler could not know (outputs) from the measured bytes per row. */
function withCopyBytes(program: Program, perRow: Record<'scatter' | 'gather', number>): Program {
  return {
    ...program,
    devices: program.devices.map((d) => ({
      ...d,
      instructions: d.instructions.map((ins) =>
        (ins.op === 'scatter' || ins.op === 'gather') && ins.bytes === 0 ? { ...ins, bytes: Math.round(perRow[ins.op] * ins.rows.count) } : ins,
      ),
    })),
  };
}

/** Metadata of the projected devices: `<kind>:<i> (predicted)`, grouped by node. */
function projectedDevices(model: ProjectionModel, setup: ProjectionSetup, n: number): { devices: DeviceMeta[]; lanes: Lane[] } {
  const name = setup.kind === 'this' ? model.deviceKind : setup.kind;
  const what = setup.kind === 'this' ? 'as calibrated' : DEVICE_KINDS[setup.kind].label;
  const devices: DeviceMeta[] = [];
  const lanes: Lane[] = [];
  for (let i = 0; i < n; i++) {
    const node = Math.floor(i / Math.max(1, setup.nodeSize));
    const label = `${name}:${i} (predicted, ${what})`;
    devices.push({ id: `${name}:${i}`, kind: model.deviceKind, provider: 'predicted', threads: 0, physicalUnit: `node ${node}`, sharesPhysicalUnit: false, software: false, label });
    lanes.push({ device: i, label, group: `node ${node}` });
  }
  return { devices, lanes };
}

/** Simulates one projected point; the trace is marked predicted and its notes carry the assumptions. */
export function projectPoint(model: ProjectionModel, setup: ProjectionSetup, point: ProjectionPoint, steps = 3): Trace {
  const program = withCopyBytes(point.program, model.copyBytesPerRow);
  const host = model.costs.hostUs?.['*'] ?? 0;
  const hostUs: Record<string, number> = {};
  for (let r = 0; r < point.devices; r++) hostUs[String(r)] = host;
  const costs: CostModel = { ...model.costs, hostUs };
  const { devices, lanes } = projectedDevices(model, setup, point.devices);
  const {
    measurement: _m,
    baseline: _b,
    numericalCheck: _n,
    capture: _c,
    ...kept
  } = model.template.meta;
  const meta: TraceMeta = {
    ...kept,
    mode: point.plan.mode,
    plan: point.plan,
    devices,
    notes: [`Projection of ${model.template.meta.model?.path ?? 'the measured run'} to ${point.devices} devices.`, ...model.assumptions.map((a) => `Assumed ${a}.`)],
  };
  return simulate(program, costs, { steps, meta, lanes });
}

/** A row of the projection table. */
export interface ProjectionRow {
  devices: number;
  /** Predicted step, µs (median over the simulated steps). */
  stepUs: number;
  /** Against the same machine with one device (strong: time ratio; weak: throughput ratio). */
  speedup: number;
  efficiency: number;
  /** Communication time over busy-plus-idle time, averaged over devices. */
  commShare: number;
}

/** Median step length of a trace, µs. */
export function stepUs(t: Trace): number {
  return median(t.steps.map((w) => w.endUs - w.startUs));
}

/** Share of the step each device spends in communication, averaged over devices. */
export function commShare(t: Trace): number {
  const s = t.spans;
  const comm = new Float64Array(t.lanes.length);
  for (let i = 0; i < s.count; i++) if (s.kind[i] === SpanKind.comm && s.parent[i] < 0) comm[s.lane[i]] += s.dur[i];
  const total = t.steps.reduce((a, w) => a + (w.endUs - w.startUs), 0);
  if (total <= 0 || t.lanes.length === 0) return 0;
  let sum = 0;
  for (const c of comm) sum += c / total;
  return sum / t.lanes.length;
}

/** Table rows from predicted traces, against the one-device prediction `one`. */
export function projectionRows(one: Trace, traces: readonly { devices: number; trace: Trace }[], scaling: Scaling): ProjectionRow[] {
  const t1 = stepUs(one);
  return traces.map(({ devices, trace }) => {
    const tn = stepUs(trace);
    const speedup = scaling === 'strong' ? t1 / tn : (devices * t1) / tn;
    return { devices, stepUs: tn, speedup, efficiency: speedup / devices, commShare: commShare(trace) };
  });
}

/**
 * The serial fraction of the calibrated one-device step: the share of it that does not shrink
 * when the rows are split (fixed compute, host time, latencies), found by simulating the same
 * program with every per-row and per-byte cost removed.
 */
export function serialFraction(model: ProjectionModel, setup: ProjectionSetup, one: ProjectionPoint): number {
  const full = stepUs(projectPoint(model, setup, one, 1));
  const serialCompute: Record<string, ComputeCost> = {};
  for (const [k, c] of Object.entries(model.costs.computeByKind ?? {})) serialCompute[k] = { fixedUs: c.fixedUs, perRowUs: 0 };
  const copy = { alphaUs: model.costs.transfers.copy.alphaUs, bytesPerUs: Infinity };
  const serialModel: ProjectionModel = {
    ...model,
    costs: { ...model.costs, computeByKind: serialCompute, transfers: { ...model.costs.transfers, copy }, ...(model.costs.recv ? { recv: { alphaUs: model.costs.recv.alphaUs, bytesPerUs: Infinity } } : {}) },
  };
  const serial = stepUs(projectPoint(serialModel, setup, one, 1));
  return full > 0 ? serial / full : 0;
}

/** Amdahl's bound on the speedup of `n` devices for serial fraction `s`. */
export function amdahlBound(s: number, n: number): number {
  return 1 / (s + (1 - s) / n);
}
