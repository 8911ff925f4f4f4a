/**
 * Memory per device of a run, as a trace records it (`meta.memory`, added in version 3 as an
 * optional field: traces without it read as before).
 *
 * What each figure is and where it comes from:
 *  - `parameterBytes`: exact. The initializers and Constant tensors of the segment models the
 *    device loaded (the whole model, its pipeline stage, its weight shards), or for a
 *    training run the weights the device keeps resident (the whole model in data mode, its
 *    stage's in pipeline mode).
 *  - `activationBytes`: computed, not measured (the CPU provider reports no memory). The
 *    peak of the tensors held while the device's nodes run, walked in execution order, at the
 *    shapes the run used: the device's rows (its shard of the batch, a micro-batch), the
 *    actual input dimensions, and the dimensions of every segment output the worker
 *    recorded. `shapeCheck` says how many recorded outputs matched the shapes propagated
 *    from the inputs.
 *  - training: `gradientBytes` (one float32 gradient per trainable parameter the device
 *    holds), `optimizerBytes` (momentum: one slot per parameter, Adam: two) and
 *    `storedActivationBytes` (what the forward hands the backward: the forward segment's
 *    outputs as the worker recorded them, or a pipeline stage's measured peak of stashed
 *    micro-batches).
 *  - `process`: the runner process's resident set, measured. Every device is a thread of the
 *    one runner process, so it is process-wide, never per device; it also holds what else
 *    ran beside the measured program (the one-device baseline, a probe).
 */
import { Type, type Static } from '@sinclair/typebox';

const Bytes = Type.Number({ minimum: 0 });

export const DeviceRunMemorySchema = Type.Object({
  /** Rank (lane) of the device. */
  device: Type.Integer({ minimum: 0 }),
  /** Batch rows one run of the device's segments handled (its shard, or one micro-batch). */
  rows: Type.Integer({ minimum: 0 }),
  parameterBytes: Bytes,
  activationBytes: Bytes,
  /** Training only: gradients of the trainable parameters the device holds. */
  gradientBytes: Type.Optional(Bytes),
  /** Training only: optimizer state (momentum or Adam slots). */
  optimizerBytes: Type.Optional(Bytes),
  /** Training only: activations kept from the forward for the backward. */
  storedActivationBytes: Type.Optional(Bytes),
  /** The sum of the figures above. */
  totalBytes: Bytes,
  /** Held tensors whose shape stayed unknown (counted as zero). */
  unknownTensors: Type.Integer({ minimum: 0 }),
  /**
   * Segment outputs the worker recorded, checked against the shapes propagated from the
   * run's inputs: how many were checked and the names of those that differed (their
   * recorded shapes are the ones counted).
   */
  shapeCheck: Type.Object({ checked: Type.Integer({ minimum: 0 }), mismatched: Type.Array(Type.String()) }),
});
export type DeviceRunMemory = Static<typeof DeviceRunMemorySchema>;

export const RunMemorySchema = Type.Object({
  devices: Type.Array(DeviceRunMemorySchema),
  /** The model's parameter bytes, whole. */
  modelParameterBytes: Bytes,
  /** Sum over devices of `totalBytes`. */
  totalBytes: Bytes,
  /**
   * The runner process's resident set (`process.memoryUsage().rss`) just before the device
   * workers started, its peak while they ran, and the growth between the two. The peak is
   * the kernel's high-water mark (`process.resourceUsage().maxRSS`) when the process reached
   * it during the run, else the largest sample taken every `sampleMs`.
   */
  process: Type.Optional(
    Type.Object({
      rssBeforeBytes: Bytes,
      peakRssBytes: Bytes,
      growthBytes: Bytes,
      peakSource: Type.Union([Type.Literal('maxRSS'), Type.Literal('sampled')]),
      sampleMs: Type.Number({ minimum: 0 }),
      /** What else ran in the process while it was measured (the baseline, a probe). */
      alsoRan: Type.Array(Type.String()),
    }),
  ),
  /**
   * The capacity per device given with `--device-memory`, and which plans of the same model
   * over the same devices and batch fit in it (from the memory table computed on the graph).
   */
  capacity: Type.Optional(
    Type.Object({
      bytes: Bytes,
      fitting: Type.Array(Type.String()),
      notFitting: Type.Array(Type.String()),
    }),
  ),
});
export type RunMemory = Static<typeof RunMemorySchema>;
