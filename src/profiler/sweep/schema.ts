/**
 * The result of `parallax sweep`: every plan it measured or predicted, one row each, with the
 * prediction error over the measured ones. `--json` prints it and `--out` writes it; the JSON
 * schema file (schemas/parallax-sweep.schema.json) is generated from {@link SweepResultSchema}
 * by `npm run schema`.
 */
import { Type, type Static } from '@sinclair/typebox';
import { PlanSchema } from '../plan';

const Nullable = <T extends ReturnType<typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);
const NullNumber = Nullable(Type.Number());

/** The measurement-quality verdicts (see quality.ts). */
export const QualityVerdictSchema = Type.Union([Type.Literal('good'), Type.Literal('fair'), Type.Literal('poor')]);

/** One plan of the sweep: measured here (with its prediction beside it) or predicted only. */
export const SweepPlanRowSchema = Type.Object({
  /** The plan as run or as it would run (pipeline cuts filled in). */
  plan: PlanSchema,
  /** Short name, e.g. `pipeline cpu:2 M=4 b32 (balanced cut)`. */
  label: Type.String(),
  /** `measured`: run here; `predicted`: not run (a device count or machine this one does not have). */
  kind: Type.Union([Type.Literal('measured'), Type.Literal('predicted')]),
  /** Devices the plan uses. */
  devices: Type.Integer({ minimum: 1 }),
  /** Median step time over every measured step of every repetition, µs; null when only predicted. */
  measuredUs: NullNumber,
  /** p25–p75 of those step times, µs; null when only predicted. */
  measuredInterval: Type.Union([Type.Object({ lo: Type.Number(), hi: Type.Number() }), Type.Null()]),
  /** Repetitions measured (runs of the plan). */
  runs: Type.Integer({ minimum: 0 }),
  /** Predicted step time, µs (never fitted on this plan's own measurements); null when no cost could be found. */
  predictedUs: NullNumber,
  /** (predicted − measured) / measured · 100; null when either is missing. */
  errorPct: NullNumber,
  /** Speedup per row against one device of the same kind, divided by the devices. */
  efficiency: NullNumber,
  /** Pipeline bubble: idle waiting on a previous stage over all stages' step time (measured where measured). */
  bubble: NullNumber,
  /** Share of device time spent communicating (measured where measured). */
  commShare: NullNumber,
  /** Estimated memory of the largest device (parameters + peak activations), bytes. */
  memoryPerDeviceBytes: NullNumber,
  /** Whether that fits the memory each device has (this machine's memory shared by its devices); null when unknown. */
  fits: Type.Union([Type.Boolean(), Type.Null()]),
  /** What the predicted compute costs rest on (leave-one-out), one phrase per basis used. */
  predictionBasis: Type.String(),
  /** Worst measurement-quality verdict of the plan's runs; null when only predicted. */
  quality: Type.Union([QualityVerdictSchema, Type.Null()]),
  /** Assumptions a prediction rests on (hardware presets, extrapolated interference). */
  assumptions: Type.Array(Type.String()),
});
export type SweepPlanRow = Static<typeof SweepPlanRowSchema>;

/** Measurement quality over all runs of the sweep. */
export const SweepQualitySchema = Type.Object({
  /** Worst verdict of any run. */
  verdict: QualityVerdictSchema,
  runs: Type.Integer({ minimum: 0 }),
  good: Type.Integer({ minimum: 0 }),
  fair: Type.Integer({ minimum: 0 }),
  poor: Type.Integer({ minimum: 0 }),
  /** Distinct reasons given by the runs that were not good. */
  reasons: Type.Array(Type.String()),
});
export type SweepQuality = Static<typeof SweepQualitySchema>;

/** The speedup chart's data: measured data-parallel points and the predicted Amdahl curve. */
export const SweepScalingSchema = Type.Object({
  /** Batch the chart's points share. */
  batch: Type.Integer({ minimum: 1 }),
  measured: Type.Array(Type.Object({ devices: Type.Integer(), speedup: Type.Number() })),
  predicted: Type.Array(Type.Object({ devices: Type.Integer(), speedup: Type.Number() })),
  /** Amdahl serial fraction fitted to the predicted points (the curve drawn); null when not fitted. */
  predictedSerialFraction: NullNumber,
  /** The same fitted to the measured points; null with fewer than two device counts. */
  measuredSerialFraction: NullNumber,
});
export type SweepScaling = Static<typeof SweepScalingSchema>;

export const SweepResultSchema = Type.Object({
  tool: Type.Object({ name: Type.String(), version: Type.String() }),
  model: Type.String(),
  /** The device spec swept, e.g. `cpu:2`. */
  devices: Type.String(),
  settings: Type.Object({
    modes: Type.Array(Type.String()),
    batches: Type.Array(Type.Integer({ minimum: 1 })),
    microBatches: Type.Array(Type.Integer({ minimum: 1 })),
    repeats: Type.Integer({ minimum: 1 }),
    steps: Type.Integer({ minimum: 1 }),
    warmup: Type.Integer({ minimum: 0 }),
  }),
  /** Best first: time per row, measured where measured, else predicted. */
  plans: Type.Array(SweepPlanRowSchema),
  /** Mean |errorPct| over measured plans with a prediction; null when there is none. */
  mapePct: NullNumber,
  /** Largest |errorPct| over the same. */
  maxAbsErrorPct: NullNumber,
  measurementQuality: SweepQualitySchema,
  /** Slowdown of compute when this many devices run at once, by device count, measured from 1-device vs N-device per-row costs. */
  interference: Type.Record(Type.String(), Type.Number()),
  scaling: Type.Union([SweepScalingSchema, Type.Null()]),
  /** Modes asked for that nothing can run yet. */
  notRunnable: Type.Array(Type.Object({ mode: Type.String(), reason: Type.String() })),
  /** Plans left out, and why (a micro-batch count that does not divide the batch, a run that failed). */
  skipped: Type.Array(Type.Object({ label: Type.String(), reason: Type.String() })),
});
export type SweepResult = Static<typeof SweepResultSchema>;

/** Where the schema file lives in the repository. */
export const SWEEP_SCHEMA_PATH = 'schemas/parallax-sweep.schema.json';

/** The schema file's text: two-space JSON with a final newline. */
export function sweepSchemaText(): string {
  const body = JSON.parse(JSON.stringify(SweepResultSchema)) as Record<string, unknown>;
  const doc = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://parallax-tools.dev/schemas/parallax-sweep.schema.json',
    title: 'Parallax plan sweep (parallax sweep --json / --out)',
    description: 'Every plan a sweep measured or predicted, with the prediction error. Generated from src/profiler/sweep/schema.ts by `npm run schema`; do not edit.',
    ...body,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
