/**
 * `parallax plan model.onnx --mode tensor`: the tensor-parallel shard map, the collectives
 * it costs and the memory per device of the data, pipeline and tensor plans, as terminal
 * tables or JSON. Planning only: nothing runs the model.
 */
import { basename } from 'node:path';
import { UserError } from '../common/errors';
import { formatBytes, formatPercent } from '../profiler/units';
import { parseDeviceSpec } from '../runtime/device/discovery';
import { loadModel } from '../runtime/onnx/model';
import type { MemoryTable } from '../runtime/tensor/memory';
import { planMemoryTable } from '../runtime/run-memory';
import { planTensorSharding, type InitializerPlacement, type TensorShardPlan } from '../runtime/tensor/shard-plan';
import { table } from './format';

/** Flags of `plan --mode tensor`. */
export interface TensorPlanFlags {
  /** Device spec; its device count is the tensor degree unless `tensor` gives one. */
  devices?: string;
  /** Tensor-parallel degree for a planned size that is not run. */
  tensor?: number;
  /** Capacity per device in bytes (parsed from `--device-memory`). */
  deviceMemory?: number;
  /** Layers kept whole (`--keep-whole`). */
  keepWhole?: string[];
  batch: number;
  microBatches: number;
  dim: Record<string, number>;
  json?: boolean;
}

/** The devices a tensor plan is for: `--tensor N`, else the count of `--devices`, else 2. */
export function tensorDegree(flags: Pick<TensorPlanFlags, 'devices' | 'tensor'>): number {
  const fromSpec = flags.devices !== undefined ? parseDeviceSpec(flags.devices).reduce((s, r) => s + r.count, 0) : null;
  if (flags.tensor !== undefined && fromSpec !== null && fromSpec !== flags.tensor) {
    throw new UserError(`--tensor ${flags.tensor} and --devices ${flags.devices} (${fromSpec} devices) disagree; give one of them, or the same count in both`);
  }
  return flags.tensor ?? fromSpec ?? 2;
}

/** Plans `modelPath` tensor-parallel and writes the result to stdout. */
export async function tensorPlanCommand(modelPath: string, label: string, flags: TensorPlanFlags): Promise<void> {
  const n = tensorDegree(flags);
  if (flags.batch % flags.microBatches !== 0) {
    throw new UserError(`--micro-batches ${flags.microBatches} does not divide --batch ${flags.batch}; pick a micro-batch count that divides the batch`);
  }
  const ir = await loadModel(modelPath);
  const dimValues = Object.keys(flags.dim).length > 0 ? flags.dim : undefined;
  const opts = { ...(dimValues ? { dimValues } : {}), ...(flags.keepWhole ? { keepWhole: flags.keepWhole } : {}) };
  const plan = planTensorSharding(ir, n, opts);
  const memory = planMemoryTable(ir, { devices: n, batch: flags.batch, microBatches: flags.microBatches, capacityBytes: flags.deviceMemory ?? null, ...opts }, plan);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ model: label, devices: n, plan, memory }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${formatTensorPlan(plan, memory, basename(label))}\n`);
}

const dimsText = (dims: readonly number[]): string => (dims.length === 0 ? 'scalar' : dims.join('×'));

/** One row of the shard map: where the initializer's parts sit. */
function placementText(p: InitializerPlacement): [string, string] {
  switch (p.kind) {
    case 'replicated':
      return ['replicated', `whole, ${formatBytes(p.bytes)}`];
    case 'split': {
      const s = p.slices[0];
      return [`${p.role}, axis ${p.axis}`, `${s.length} of ${p.dims[p.axis]} (device d: [d·${s.length}, (d+1)·${s.length})), ${formatBytes(s.bytes)}`];
    }
    default:
      return p satisfies never;
  }
}

/** The plan as terminal tables: summary, split groups, collectives, shard map, candidates left whole, memory. */
export function formatTensorPlan(plan: TensorShardPlan, memory: MemoryTable, model: string): string {
  const n = plan.devices;
  const reduces = plan.collectives.filter((c) => c.op === 'all-reduce').length;
  const gathers = plan.collectives.length - reduces;
  const perDevice = Math.max(...plan.perDeviceParameterBytes);
  const perRow = plan.batchDim ? `bytes per row of ${plan.batchDim}` : 'bytes per step';
  const out: string[] = [
    `${model} · tensor parallel · ${n} devices · planned, not run`,
    `${plan.groups.length} split group${plan.groups.length === 1 ? '' : 's'} · ${reduces} all-reduce${reduces === 1 ? '' : 's'} and ${gathers} all-gather${gathers === 1 ? '' : 's'} per forward step · parameters per device ${formatBytes(perDevice)} of ${formatBytes(plan.parameterBytes)} (${formatPercent(perDevice / plan.parameterBytes)})`,
    ...(plan.annotations ? [`split as the model's sharding annotations say (${plan.annotations} annotated weight cut${plan.annotations === 1 ? '' : 's'}); other weights are kept whole`] : []),
    '',
    'split groups',
    table(
      ['group', 'scope', 'column-parallel', 'row-parallel', 'collectives'],
      plan.groups.map((g) => [String(g.index), g.label, g.columnNodes.join(', '), g.rowNodes.join(', ') || '—', g.collectives.map((i) => plan.collectives[i].op).join(', ') || '—']),
      4,
    ),
    '',
    `collectives (one forward step; ${perRow})`,
    table(
      ['#', 'op', 'group', 'after node', 'tensor', 'bytes'],
      plan.collectives.map((c, i) => [String(i), c.op, String(c.group), c.afterNode, c.tensor, c.bytesPerRow === null ? '?' : formatBytes(c.bytesPerRow)]),
      5,
    ),
    '',
    'shard map (per initializer)',
    table(
      ['initializer', 'shape', 'placement', 'per device'],
      plan.initializers.map((p) => [p.name, dimsText(p.dims), ...placementText(p)]),
      4,
    ),
  ];
  if (plan.notSplit.length > 0) {
    out.push('', 'left whole', table(['node', 'reason'], plan.notSplit.map((x) => [x.node, x.reason]), 2));
  }
  out.push('', ...formatMemoryTable(memory));
  return out.join('\n');
}

/** The memory per device of each plan, and which plans fit the capacity. */
export function formatMemoryTable(m: MemoryTable): string[] {
  const cap = m.capacityBytes === null ? null : formatBytes(m.capacityBytes);
  const rows = m.plans.map((p) => {
    if (p.kind === 'impossible') return [p.label, '—', '—', '—', '—', `not possible: ${p.reason}`];
    const worst = p.devices.reduce((a, b) => (b.totalBytes > a.totalBytes ? b : a));
    const fits = p.fits === null ? '—' : p.fits ? 'yes' : 'DOES NOT FIT';
    return [p.label, String(p.rows), formatBytes(worst.parameterBytes), formatBytes(worst.activationBytes), formatBytes(p.maxBytes), fits];
  });
  const lines = [
    `memory per device (largest device of each plan; batch ${m.batch}, pipeline micro-batches ${m.microBatches}; activations are peak estimates from shapes)`,
    table(['plan', 'rows', 'parameters', 'activations', 'total', cap ? `fits ${cap}` : 'fits'], rows, 1),
  ];
  if (cap === null) lines.push('give --device-memory (e.g. 16GiB) to check which plans fit');
  else if (m.notFitting.length > 0) {
    lines.push(`does not fit in ${cap} per device: ${m.notFitting.join(', ')}; ${m.fitting.length > 0 ? `plans that fit: ${m.fitting.join(', ')}` : 'no plan fits; use more devices or devices with more memory'}`);
  } else lines.push(`every plan fits in ${cap} per device`);
  return lines;
}
