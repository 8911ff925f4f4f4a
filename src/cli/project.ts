/**
 * `parallax project`: predicts a measured data-parallel run on other device counts, device
 * kinds and links, and a measured pipeline on other device kinds and links (its own stages).
 *
 *   parallax project run.parallax.json [more runs…] --predict-devices 8,64 [--device-kind this|h100|a100]
 *     [--precision fp32] [--node-size 8] [--link nvlink4|pcie4x16|ib-ndr|100gbe]
 *     [--inter-link ib-ndr|100gbe|…] [--link-alpha-us A --link-gbps G] [--scale strong|weak]
 *     [--model model.onnx] [--out-dir proj/] [--json]
 *
 * Predicted traces are written as `<name>.<kind>-<N>.<link>[+<inter-link>].parallax.json`.
 *
 * The costs are fitted from the measured run(s) (several runs of different batch sizes or
 * uneven `--shards` separate the fixed part of a step from the part per row); the programs
 * for each device count come from the compiler (runtime side); the simulator (profiler
 * side) predicts each, and the predicted traces, marked predicted with their assumptions in
 * their notes, open in `report` and the timeline.
 */
import { Option, type Command } from 'commander';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../common/errors';
import { checkWritable } from '../common/out-path';
import { escapeTerminal } from '../common/terminal';
import {
  DEVICE_KIND_CHOICES,
  DEVICE_KINDS,
  LINKS,
  LINK_IDS,
  PRECISIONS,
  customLink,
  type DeviceKindChoice,
  type DeviceKindPreset,
  type LinkId,
  type LinkPreset,
  type Precision,
  type SegmentWork,
} from '../profiler/simulate/hardware';
import { amdahlBound, projectPoint, projectionModel, projectionRows, scaledDataPlan, sequentialProgram, serialFraction, stepUs, type ProjectionPoint, type ProjectionRow, type ProjectionSetup, type Scaling } from '../profiler/simulate/project';
import { readTrace, writeTrace } from '../profiler/trace-io';
import type { Trace } from '../profiler/trace-format';
import { compileDataFor, segmentWork } from '../runtime/projection';
import { resolveModel } from './model-arg';
import { ms, table } from './format';
import type { Output } from './import-export';

interface ProjectFlags {
  predictDevices: number[];
  deviceKind: DeviceKindChoice;
  precision: Precision;
  nodeSize: number;
  link: LinkId;
  interLink: LinkId;
  linkAlphaUs?: number;
  linkGbps?: number;
  scale: Scaling;
  model?: string;
  outDir?: string;
  json?: boolean;
}

const stdout: Output = { write: (text) => void process.stdout.write(text) };

/** Largest device count a projection simulates. */
const MAX_PROJECTED_DEVICES = 4096;

function deviceCounts(v: string): number[] {
  const parts = v.split(',').map((x) => x.trim());
  const out = parts.map(Number);
  if (parts.some((p) => !/^\d+$/.test(p)) || out.some((n) => n < 1 || n > MAX_PROJECTED_DEVICES)) {
    throw new UserError(`--predict-devices ${v}: give device counts from 1 to ${MAX_PROJECTED_DEVICES}, comma-separated (e.g. 8,64)`);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function positive(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new UserError(`${name} ${v}: give a positive number`);
    return n;
  };
}

function nonNegative(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new UserError(`${name} ${v}: give a number ≥ 0`);
    return n;
  };
}

/** The intra-node link: a preset, or the custom one when `--link-gbps` is given. */
function intraLink(flags: ProjectFlags): LinkPreset {
  if (flags.linkGbps !== undefined) return customLink(flags.linkAlphaUs ?? 0, flags.linkGbps);
  if (flags.linkAlphaUs !== undefined) throw new UserError('--link-alpha-us goes with --link-gbps (a custom link needs its bandwidth)');
  return LINKS[flags.link];
}

/** The measured runs: data-parallel Parallax traces that record their program. */
async function measuredRuns(files: string[]): Promise<Trace[]> {
  const traces: Trace[] = [];
  for (const f of files) {
    const t = await readTrace(f);
    if (t.meta.source !== 'measured') throw new UserError(`${f}: is ${t.meta.source}, not measured; project from a run recorded by \`parallax profile\``);
    if (t.meta.plan.mode !== 'data' && t.meta.plan.mode !== 'pipeline') throw new UserError(`${f}: is a ${t.meta.plan.mode} trace; project a data-parallel or pipeline run (parallax sweep predicts tensor and hybrid plans)`);
    if (!t.meta.program) throw new UserError(`${f}: records no program (an older trace); profile the model again`);
    traces.push(t);
  }
  const sha = traces[0].meta.model?.sha256;
  const other = traces.find((t) => t.meta.model?.sha256 !== sha);
  if (other) throw new UserError(`the runs are of different models (${traces[0].meta.model?.path ?? '?'} and ${other.meta.model?.path ?? '?'}); project runs of one model`);
  const mixed = traces.find((t) => t.meta.plan.mode !== traces[0].meta.plan.mode);
  if (mixed) throw new UserError('the runs mix data-parallel and pipeline plans; project runs of one plan');
  return traces;
}

/** The device spec a projected plan records, e.g. `h100:64`. */
function specOf(kind: DeviceKindChoice, measuredKind: string, n: number): string {
  return `${kind === 'this' ? measuredKind : kind}:${n}`;
}

/**
 * The points to simulate: a data plan compiled for each device count (and one device), or a
 * pipeline's own program on its K stages (a new partition per device count is not made
 * here), with every stage run in turn on one device as the baseline.
 */
function pointsOf(template: Trace, setup: ProjectionSetup, measuredKind: string, counts: number[]): { one: ProjectionPoint; at: (n: number) => ProjectionPoint } {
  const plan = template.meta.plan;
  const program = template.meta.program!;
  if (plan.mode === 'pipeline') {
    const k = program.devices.length;
    const bad = counts.find((n) => n !== k);
    if (bad !== undefined) throw new UserError(`--predict-devices ${bad}: a pipeline run of ${k} stages projects to ${k} devices (other kinds and links); re-profile with --devices for another stage count`);
    return {
      one: { devices: 1, plan: { ...plan, devices: specOf(setup.kind, measuredKind, 1) }, program: sequentialProgram(program) },
      at: (n) => ({ devices: n, plan: { ...plan, devices: specOf(setup.kind, measuredKind, n) }, program }),
    };
  }
  if (plan.mode !== 'data') throw new UserError(`a ${plan.mode} trace cannot be projected`);
  const tooMany = counts.find((n) => setup.scaling === 'strong' && n > plan.batch);
  if (tooMany !== undefined) {
    throw new UserError(`strong scaling splits the measured batch of ${plan.batch} rows, which is fewer than ${tooMany} devices; use --scale weak, or profile a batch of at least ${tooMany}`);
  }
  const at = (n: number): ProjectionPoint => {
    const p = scaledDataPlan(plan, n, setup.scaling, specOf(setup.kind, measuredKind, n));
    const compiled = compileDataFor(template.meta, p, n);
    const rows = compiled.devices.map((d) => d.instructions.find((i) => i.op === 'scatter')?.rows.count ?? 0);
    return { devices: n, plan: { ...p, shards: rows }, program: compiled };
  };
  return { one: at(1), at };
}

/** FLOPs and bytes per segment key, for the roofline of a device kind other than `this`. */
async function workOf(flags: ProjectFlags, template: Trace): Promise<Record<string, SegmentWork>> {
  if (flags.deviceKind === 'this') return {};
  const label = flags.model ?? template.meta.model?.path;
  if (!label) throw new UserError('the trace does not name its model; give --model model.onnx for the FLOP estimate');
  const { modelPath } = await resolveModel(label);
  return segmentWork(modelPath, template.meta.program!.segments, template.meta.model?.sha256);
}

interface Projected {
  rows: (ProjectionRow & { amdahlBound: number; tracePath: string | null })[];
  serialFraction: number;
  assumptions: string[];
}

async function projectCommand(files: string[], flags: ProjectFlags, io: Output): Promise<void> {
  if (!Number.isInteger(flags.nodeSize) || flags.nodeSize < 1) throw new UserError(`--node-size ${flags.nodeSize}: give a whole number of devices per node`);
  const link = intraLink(flags);
  const setup: ProjectionSetup = { kind: flags.deviceKind, precision: flags.precision, nodeSize: flags.nodeSize, link, interLink: LINKS[flags.interLink], scaling: flags.scale };
  if (setup.kind !== 'this') {
    const preset: DeviceKindPreset = DEVICE_KINDS[setup.kind];
    if (preset.peakFlopsPerSec[setup.precision] === undefined) throw new UserError(`--precision ${setup.precision}: ${preset.label} has no ${setup.precision} peak; choose another precision`);
  }
  const outDir = flags.outDir ? resolve(flags.outDir) : null;
  const name = basename(files[0]).replace(/(\.parallax)?\.json$/i, '');
  // One file per device count, kind and links, so projections over other links sit side by side.
  const links = setup.link.id === setup.interLink.id ? setup.link.id : `${setup.link.id}+${setup.interLink.id}`;
  const fileOf = (n: number): string => join(outDir ?? '.', `${name}.${setup.kind}-${n}.${links}.parallax.json`);
  if (outDir) await checkWritable(fileOf(flags.predictDevices[0]), '--out-dir');
  const measured = await measuredRuns(files);
  const template = measured[0];
  const measuredKind = template.meta.devices[0]?.kind ?? 'cpu';
  const points = pointsOf(template, setup, measuredKind, flags.predictDevices);
  const model = projectionModel(measured, setup, await workOf(flags, template));
  const one = points.one;
  const oneTrace = projectPoint(model, setup, one);
  const predicted = flags.predictDevices.map((n) => ({ devices: n, trace: n === 1 ? oneTrace : projectPoint(model, setup, points.at(n)) }));
  const s = serialFraction(model, setup, one);
  const rows: Projected['rows'] = [];
  const table0 = projectionRows(oneTrace, predicted, setup.scaling);
  for (let k = 0; k < predicted.length; k++) {
    const path = outDir ? fileOf(predicted[k].devices) : null;
    if (path) await writeTrace(path, predicted[k].trace);
    rows.push({ ...table0[k], amdahlBound: amdahlBound(s, predicted[k].devices), tracePath: path });
  }
  const result: Projected = { rows, serialFraction: s, assumptions: model.assumptions };
  if (flags.json) {
    io.write(`${JSON.stringify({ ...result, oneDeviceStepUs: stepUs(oneTrace) }, null, 2)}\n`);
    return;
  }
  io.write(escapeTerminal(`${formatProjection(result, stepUs(oneTrace), setup)}\n`, { keepLines: true }));
}

/** The table and the assumption lines. */
export function formatProjection(p: Projected, oneDeviceUs: number, setup: ProjectionSetup): string {
  const out = [`PREDICTED (not measured): ${setup.scaling} scaling; one device would take ${ms(oneDeviceUs)} per step`];
  out.push(
    table(
      ['devices', 'predicted step', 'speedup', 'efficiency', 'comm share', 'Amdahl bound', 'trace'],
      p.rows.map((r) => [
        String(r.devices),
        ms(r.stepUs),
        `${r.speedup.toFixed(2)}×`,
        `${(r.efficiency * 100).toFixed(0)}%`,
        `${(r.commShare * 100).toFixed(0)}%`,
        setup.scaling === 'strong' ? `${r.amdahlBound.toFixed(2)}×` : '–',
        r.tracePath ?? '(no --out-dir)',
      ]),
    ),
  );
  out.push(`calibrated serial fraction ${(p.serialFraction * 100).toFixed(1)}%`);
  out.push('assumptions:');
  for (const a of p.assumptions) out.push(`  ${a}`);
  return out.join('\n');
}

/** Adds `project` to the `parallax` program. */
export function registerProject(program: Command, io: Output = stdout): void {
  program
    .command('project')
    .description('predict a measured run on other device counts (data-parallel), device kinds and links (simulated, labelled predicted)')
    .argument('<traces...>', 'measured .parallax.json runs of one model (several batch sizes calibrate better)')
    .requiredOption('--predict-devices <counts>', 'device counts to predict, e.g. 8,64', deviceCounts)
    .addOption(new Option('--device-kind <kind>', 'device kind: this (as calibrated) or a preset').choices([...DEVICE_KIND_CHOICES]).default('this'))
    .addOption(new Option('--precision <p>', 'precision of the preset peaks').choices([...PRECISIONS]).default('fp32'))
    .option('--node-size <n>', 'devices per node', positive('--node-size'), 8)
    .addOption(new Option('--link <link>', 'link inside a node').choices(LINK_IDS).default('nvlink4'))
    .addOption(new Option('--inter-link <link>', 'link between nodes').choices(LINK_IDS).default('ib-ndr'))
    .option('--link-alpha-us <µs>', 'custom link inside a node: latency per step', nonNegative('--link-alpha-us'))
    .option('--link-gbps <Gb/s>', 'custom link inside a node: gigabits per second per direction', positive('--link-gbps'))
    .addOption(new Option('--scale <scaling>', 'strong: same global batch; weak: same rows per device').choices(['strong', 'weak']).default('strong'))
    .option('--model <file.onnx>', 'the model, when the trace\'s path no longer finds it (for the FLOP estimate of other device kinds)')
    .option('--out-dir <dir>', 'write each predicted trace here (<name>.<kind>-<N>.<links>.parallax.json)')
    .option('--json', 'print JSON')
    .action((files: string[], flags: ProjectFlags) => projectCommand(files, flags, io));
}
