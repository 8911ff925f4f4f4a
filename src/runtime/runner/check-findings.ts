/**
 * Suggestions checked before they are made. Each finding's change (`change.params`) is applied
 * to the request's plan and validated as the CLI would validate the changed run: the plan's
 * fields, the device spec and the threads its devices get, the batch against fixed batches and
 * given `--inputs`, shards, micro-batches dividing the batch, stages and cuts through the
 * partitioner. A cut the partitioner refuses (after a Constant) moves to the nearest earlier
 * node that takes one, keeping every computing node in its stage, and the step is predicted
 * again; a change that still cannot run, or whose prediction does not describe what it would
 * run, becomes information (severity `info`, no parameters, a note saying why).
 */
import { UserError } from '../../common/errors';
import { asInformation, informIfNoGain, predictPipelineCuts, type Finding } from '../../profiler/findings';
import { PlanFieldError, withPlanFields, type Plan, type PlanFields } from '../../profiler/plan';
import type { Trace } from '../../profiler/trace-format';
import { formatDuration } from '../../profiler/units';
import type { ProfileRequest } from '../protocol';
import type { ModelIR } from '../onnx/model';
import { resolveInputShapes, type ResolvedInput } from '../inputs';
import { parseDeviceSpec, planDevices, type DeviceInfo, type DiscoveredDevices } from '../device/discovery';
import { nearestCutAtOrBefore, partitionFromCuts } from '../pipeline/partition';
import { resolveShards } from '../compile/data';
import { checkPipelinePlan } from './calibrate';
import { planTensorSharding } from '../tensor/shard-plan';

export interface CheckContext {
  ir: ModelIR;
  /** The request as the user gave it: a change is applied to its plan, as the CLI would rerun it. */
  request: Pick<ProfileRequest, 'plan' | 'modelLabel' | 'batchDim' | 'dims' | 'inputShapes' | 'values' | 'inputsFile'>;
  /** The inputs as resolved for the run (`batchFixed`). */
  resolved: readonly ResolvedInput[];
  /** The devices the run had (their threads are what the predictions were measured with). */
  devices: readonly DeviceInfo[];
  discovered: DiscoveredDevices;
  /** The run's trace, for re-predicting a moved cut. */
  trace?: Trace;
}

/** A change whose prediction does not describe what it would run. */
class NotModelled extends Error {}

/** Checks every finding's change; returns the findings, adjusted or demoted to information. */
export function checkFindings(found: readonly Finding[], ctx: CheckContext): Finding[] {
  return found.map((f) => checkFinding(f, ctx));
}

export function checkFinding(f: Finding, ctx: CheckContext): Finding {
  if (Object.keys(f.change.params).length === 0) return f;
  let finding = f;
  let moved: string | null = null;
  const cuts = f.change.params['cuts'];
  if (Array.isArray(cuts)) {
    const r = moveCuts(f, cuts as string[], ctx);
    if ('note' in r) return asInformation(f, r.note);
    finding = r.finding;
    moved = r.moved;
  }
  try {
    validate(changedPlan(finding, ctx), ctx);
  } catch (e) {
    if (e instanceof UserError || e instanceof PlanFieldError || e instanceof NotModelled) return asInformation(f, `the change cannot be applied as suggested: ${e.message}`);
    return asInformation(f, `the change could not be checked: ${e instanceof Error ? e.message : String(e)}`);
  }
  const checked: Finding = { ...finding, checked: moved ? { ok: true, note: moved } : { ok: true } };
  return informIfNoGain(checked);
}

/** The request's plan with the finding's change, as a rerun with the suggested flags would have it. */
function changedPlan(f: Finding, ctx: CheckContext): Plan {
  const base = ctx.request.plan;
  const change = { ...f.change.params } as Partial<PlanFields>;
  // Fewer or more pipeline devices make explicit cuts wrong (K − 1 of them): the suggestion
  // drops them (as the quick fix does) and the runner re-balances for the new device count.
  if (base.mode === 'pipeline' && base.cuts && change.devices !== undefined && change.cuts === undefined && (change.mode ?? 'pipeline') === 'pipeline') {
    const k = parseDeviceSpec(change.devices).reduce((s, r) => s + r.count, 0);
    if (base.cuts.length !== k - 1) change.cuts = [];
  }
  // A data plan's shards are rows per device: a new device count without new shards splits evenly.
  if (base.mode === 'data' && base.shards && change.devices !== undefined && change.shards === undefined) change.shards = undefined;
  return withPlanFields(base, change);
}

/** Validates a changed plan exactly as loading and preparing the run would; throws why not. */
function validate(plan: Plan, ctx: CheckContext): void {
  const req = ctx.request;
  const label = req.modelLabel;
  const devices = planDevices(parseDeviceSpec(plan.devices, ctx.discovered), ctx.discovered);
  if (plan.devices !== req.plan.devices) checkThreads(plan.devices, devices, ctx.devices);
  let resolved = ctx.resolved;
  if (plan.batch !== req.plan.batch) {
    if (req.inputsFile) {
      throw new UserError(`--inputs ${req.inputsFile} gives the rows of the batch (${req.plan.batch}), so --batch ${plan.batch} cannot run with it`);
    }
    resolved = resolveInputShapes(ctx.ir, {
      batch: plan.batch,
      ...(req.batchDim !== undefined ? { batchDim: req.batchDim } : {}),
      ...(req.dims !== undefined ? { dims: req.dims } : {}),
      ...(req.inputShapes !== undefined ? { inputShapes: req.inputShapes } : {}),
      ...(req.values !== undefined ? { values: req.values } : {}),
    });
  }
  const parts = Math.max(devices.length, plan.mode === 'pipeline' ? plan.microBatches : 1);
  const fixed = resolved.find((r) => r.batchFixed);
  if (fixed && parts > 1) {
    throw new UserError(`${label}: input "${fixed.name}" has a fixed batch of ${fixed.dims[fixed.batchAxis ?? 0]}, so it cannot be split across devices or micro-batches`);
  }
  switch (plan.mode) {
    case 'data':
      resolveShards(plan, devices.length);
      break;
    case 'pipeline': {
      checkPipelinePlan(plan, ctx.ir, devices.length, label);
      if (plan.cuts && plan.cuts.length > 0) {
        const p = partitionFromCuts(ctx.ir, plan.cuts, { dimValues: { ...(req.dims ?? {}) } });
        if (p.stages.length !== devices.length) {
          throw new UserError(`--cuts gives ${p.stages.length} stages but --devices ${plan.devices} has ${devices.length} devices`);
        }
      }
      break;
    }
    case 'tensor':
    case 'hybrid':
      // The split the change asks for (layers kept whole) must leave something to split.
      if (plan.mode === 'tensor' || 'tensor' in plan) {
        const t = plan.mode === 'tensor' ? devices.length : plan.tensor;
        planTensorSharding(ctx.ir, t, { dimValues: { ...(req.dims ?? {}) }, ...(plan.keepWhole ? { keepWhole: plan.keepWhole } : {}) });
      }
      break;
  }
}

/**
 * The predictions of device changes rest on the run's per-device speed, measured with the
 * threads the run's devices had. A device spec cannot set threads, so a spec whose devices get
 * other threads (fewer CPU workers share the cores among fewer) runs something the prediction
 * does not describe.
 */
function checkThreads(spec: string, planned: readonly DeviceInfo[], measured: readonly DeviceInfo[]): void {
  for (const d of planned) {
    const ran = measured.find((m) => m.kind === d.kind);
    if (ran && ran.intraOpNumThreads !== d.intraOpNumThreads) {
      const t = (n: number): string => `${n} thread${n === 1 ? '' : 's'}`;
      throw new NotModelled(
        `--devices ${spec} runs ${d.kind} workers with ${t(d.intraOpNumThreads)}, but the prediction was measured with ${t(ran.intraOpNumThreads)} per ${d.kind} device (${ran.id}), and a device spec cannot set threads; measure --devices ${spec} to know`,
      );
    }
  }
}

/**
 * Moves cuts the partitioner would refuse to the nearest earlier node that takes one (see
 * {@link nearestCutAtOrBefore}) and re-predicts the step; a note when they cannot be moved.
 */
function moveCuts(f: Finding, cuts: string[], ctx: CheckContext): { finding: Finding; moved: string | null } | { note: string } {
  const next: string[] = [];
  const changes: string[] = [];
  for (const c of cuts) {
    const to = nearestCutAtOrBefore(ctx.ir, c);
    if (to === null) return { note: `no node at or before "${c}" takes a cut` };
    if (to !== c) changes.push(`"${c}" → "${to}"`);
    next.push(to);
  }
  if (new Set(next).size !== next.length) return { note: `moving the cuts off Constant nodes (${changes.join(', ')}) would leave a stage empty` };
  if (changes.length === 0) return { finding: f, moved: null };
  const re = ctx.trace ? predictPipelineCuts(ctx.trace, next) : null;
  if (!re) return { note: `the cuts ${changes.join(', ')} had to move off Constant nodes, and the step could not be predicted again for the moved cuts` };
  const why = `moved ${changes.join(', ')}: a cut after a Constant is refused (Constants are copied into every stage that reads them), and the nearest earlier node keeps every computing node in its stage`;
  const dur = (us: number): string => formatDuration(us, { sDigits: false });
  return {
    moved: why,
    finding: {
      ...f,
      evidence: { ...f.evidence, numbers: { ...f.evidence.numbers, predictedMaxStagePerMicroUs: Math.max(...re.stagePerMicroUs) } },
      change: {
        description: `Cut after ${next.join(', ')} (${why}): the measured node costs then give stages of ${re.stagePerMicroUs.map(dur).join(' / ')} per micro-batch${re.note}.`,
        params: { ...f.change.params, cuts: next },
      },
      predictedStepUs: re.predictedStepUs,
    },
  };
}
