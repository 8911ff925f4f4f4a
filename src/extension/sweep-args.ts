/**
 * The choices `parallax.sweepPlans` takes besides the model, read from a command argument.
 * Pure (no `vscode`), so that it is unit-tested under Node.
 */
import { SWEEP_MODES, type SweepMode } from '../profiler/sweep/enumerate';
import { MAX_BATCH } from '../common/limits';
import { checkDeviceSpecText } from './run-config';

/**
 * Choices a caller may pass to `parallax.sweepPlans` after the model URI (tests, other
 * commands): `executeCommand(id, uri, { devices: 'cpu:2', batch: 16, modes: ['data'], repeats: 1 })`,
 * or in place of it (a keybinding's args; the model is then picked).
 * What is left out comes from the profile settings (devices, batch) or `parallax sweep`'s defaults.
 */
export interface SweepArgs {
  devices?: string;
  batch?: number;
  modes?: SweepMode[];
  microBatches?: number[];
  repeats?: number;
  steps?: number;
  warmup?: number;
}

const posInt = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max;

/**
 * Reads {@link SweepArgs} from a command argument; what does not fit is left out (an
 * explorer passes a URI or a URI list there, which name none of these keys).
 */
export function sweepArgs(v: unknown): SweepArgs {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
  const o = v as Record<string, unknown>;
  const modes = o['modes'];
  const mbs = o['microBatches'];
  return {
    ...(typeof o['devices'] === 'string' && checkDeviceSpecText(o['devices']) === null ? { devices: o['devices'] } : {}),
    ...(posInt(o['batch'], MAX_BATCH) ? { batch: o['batch'] } : {}),
    ...(Array.isArray(modes) && modes.length > 0 && modes.every((m) => (SWEEP_MODES as readonly unknown[]).includes(m)) ? { modes: modes as SweepMode[] } : {}),
    ...(Array.isArray(mbs) && mbs.length > 0 && mbs.every((m) => posInt(m, 4096)) ? { microBatches: mbs as number[] } : {}),
    ...(posInt(o['repeats'], 100) ? { repeats: o['repeats'] } : {}),
    ...(posInt(o['steps'], 10_000) ? { steps: o['steps'] } : {}),
    ...(typeof o['warmup'] === 'number' && Number.isInteger(o['warmup']) && o['warmup'] >= 0 && o['warmup'] <= 10_000 ? { warmup: o['warmup'] } : {}),
  };
}

/** `parallax sweep`'s defaults, for what neither the caller nor the settings give. */
export const SWEEP_DEFAULTS = { modes: ['data', 'pipeline'] as SweepMode[], microBatches: [1, 2, 4, 8], repeats: 3, steps: 10, warmup: 2 };

/** One row of a multi-select pick: its label, words under it, and whether it starts checked. */
export interface ChoiceItem<T> {
  value: T;
  label: string;
  detail: string;
  picked: boolean;
}

const MODE_DETAIL: Record<SweepMode, string> = {
  data: 'the model on every device, the batch split: 1 … N devices',
  pipeline: 'stages on N devices, with each micro-batch count picked next',
  tensor: 'weights split over all N devices, where the model has layers to split',
  hybrid: 'data × tensor and data × pipeline, measured from 4 devices, predicted below',
};

/** The modes to sweep, as a multi-select pick; the defaults start checked. */
export function modeChoices(defaults: readonly SweepMode[] = SWEEP_DEFAULTS.modes): ChoiceItem<SweepMode>[] {
  return SWEEP_MODES.map((m) => ({ value: m, label: m, detail: MODE_DETAIL[m], picked: defaults.includes(m) }));
}

/** Micro-batch counts a pipeline sweep offers (each must divide the batch), the defaults checked. */
export function microBatchChoices(batch: number, defaults: readonly number[] = SWEEP_DEFAULTS.microBatches): ChoiceItem<number>[] {
  return [1, 2, 4, 8, 16, 32]
    .filter((m) => m <= batch && batch % m === 0)
    .map((m) => ({ value: m, label: String(m), detail: `${batch / m} row${batch / m === 1 ? '' : 's'} per micro-batch`, picked: defaults.includes(m) }));
}
