/**
 * The batch axis of every graph output: the axis a device's rows are gathered on, and the
 * axis the numerical check compares on. Found, in order:
 *
 *  1. by name: the output carries the batch dimension's name (the one `--batch-dim` gives, or
 *     the one found on the inputs), as silero VAD v4's state `hn: [2, batch, 64]` does;
 *  2. by the model's fixed batch: a model whose batch is fixed gathers on axis 0;
 *  3. by its declared shape: an output whose every dimension is a number does not grow with
 *     the batch, so it has no batch axis;
 *  4. by measurement, for the rest (unnamed or unrelated symbolic dimensions, as in silero VAD
 *     v5's `stateN: [?, ?, ?]`): the model is run on one row and on two rows, and the axis
 *     that doubles is the batch axis ({@link axisFromProbe}); an output whose shape does not
 *     change has none.
 */
import { UserError } from '../common/errors';
import type { ModelIR } from './onnx/model';
import type { ResolvedInput } from './inputs';

/** An output's batch axis: an axis, null for none, undefined when only a measurement can tell. */
export type OutputAxis = number | null | undefined;

/** The names the batch dimension goes by in the resolved inputs. */
export function batchNames(resolved: readonly ResolvedInput[]): Set<string> {
  const names = new Set<string>();
  for (const r of resolved) {
    const d = r.batchAxis === null ? undefined : r.modelDims?.[r.batchAxis];
    if (typeof d === 'string') names.add(d);
  }
  return names;
}

/** Each output's batch axis as far as names and declared shapes tell (rules 1–3 above). */
export function outputBatchAxes(ir: Pick<ModelIR, 'outputs'>, resolved: readonly ResolvedInput[]): Map<string, OutputAxis> {
  const names = batchNames(resolved);
  const fixed = resolved.find((r) => r.batchFixed);
  const batched = resolved.some((r) => r.batchAxis !== null);
  const axes = new Map<string, OutputAxis>();
  for (const o of ir.outputs) {
    const md = o.dims;
    const byName = md ? md.findIndex((d) => typeof d === 'string' && names.has(d)) : -1;
    if (!batched) axes.set(o.name, null);
    else if (byName >= 0) axes.set(o.name, byName);
    else if (fixed) axes.set(o.name, md && md.length > 0 && (typeof md[0] !== 'number' || md[0] === fixed.dims[fixed.batchAxis!]) ? 0 : null);
    else if (md && md.every((d) => typeof d === 'number')) axes.set(o.name, null);
    else axes.set(o.name, undefined);
  }
  return axes;
}

/**
 * The batch axis of output `name` from its shapes on one row and on two rows: the one axis
 * that doubles; null when the shape does not change. Anything else (several axes change, or
 * one changes by another factor) is a UserError: such an output cannot be split by rows.
 */
export function axisFromProbe(name: string, one: readonly number[], two: readonly number[], label: string): number | null {
  const changed = one.length === two.length ? one.flatMap((d, i) => (d !== two[i] ? [i] : [])) : null;
  if (changed && changed.length === 0) return null;
  if (changed && changed.length === 1 && two[changed[0]] === 2 * one[changed[0]]) return changed[0];
  throw new UserError(
    `${label}: output "${name}" has shape [${one.join(', ')}] for one row and [${two.join(', ')}] for two, so it has no single batch axis and cannot be split across devices or micro-batches; use one device, or name the batch dimension with --batch-dim`,
  );
}

/**
 * Outputs without a batch axis are refused in runs that split the batch: the interpreter
 * gathers outputs by rows only, so nothing would show that every device and micro-batch
 * computed the same value.
 */
export function checkUnbatchedOutputs(axes: ReadonlyMap<string, number | null>, parts: number, label: string): void {
  const none = [...axes].filter(([, a]) => a === null).map(([n]) => `"${n}"`);
  if (none.length === 0 || parts <= 1) return;
  throw new UserError(
    `${label}: output${none.length > 1 ? 's' : ''} ${none.join(', ')} ${none.length > 1 ? 'have' : 'has'} no batch axis, and Parallax cannot yet check that such an output is the same on every device and micro-batch; run it on one device with one micro-batch, or export the model with the batch dimension on every output`,
  );
}
