/**
 * Trainable weights between the whole model and a tensor-parallel device's shards: the
 * initial values each device starts from (its slice of every split weight, everything else
 * whole), and the reverse, the devices' trained shards gathered into whole tensors, so that
 * they can be compared with one device's training. Pure: float32 arrays in and out.
 */
import type { TensorShardPlan } from './shard-plan';
import { rowBiasName } from './shard-model';

/** Elements [start, start + length) along `axis` of a row-major float32 tensor of `dims`. */
function sliceFloats(data: Float32Array, dims: readonly number[], axis: number, start: number, length: number): Float32Array {
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const size = dims[axis]!;
  const out = new Float32Array(outer * length * inner);
  for (let o = 0; o < outer; o++) out.set(data.subarray((o * size + start) * inner, (o * size + start + length) * inner), o * length * inner);
  return out;
}

/** The parameters a row-parallel Gemm's bias copy stands for, by copy name. */
function rowBiasCopies(shard: TensorShardPlan): Map<string, string> {
  const copies = new Map<string, string>();
  for (const p of shard.initializers) copies.set(rowBiasName(p.name), p.name);
  return copies;
}

/**
 * The initial values of device `rank`'s parameters `names`: a split weight's slice, a row
 * bias copy's whole bias (device 0 is the only one that trains it), anything else whole.
 * @throws Error for a name with no whole value.
 */
export function shardInitialWeights(shard: TensorShardPlan, whole: Readonly<Record<string, Float32Array>>, rank: number, names: readonly string[]): Record<string, Float32Array> {
  const placement = new Map(shard.initializers.map((p) => [p.name, p]));
  const copies = rowBiasCopies(shard);
  const out: Record<string, Float32Array> = {};
  for (const name of names) {
    const source = copies.get(name) ?? name;
    const value = whole[source];
    if (!value) throw new Error(`no initial value for parameter ${source}`);
    const p = placement.get(source);
    if (p?.kind === 'split' && !copies.has(name)) {
      const s = p.slices[rank]!;
      out[name] = sliceFloats(value, p.dims, p.axis, s.start, s.length);
    } else out[name] = value.slice();
  }
  return out;
}

/**
 * The devices' trained parameters (`perRank[r]`: device r's, by the name it trains them
 * under) as whole tensors of the model: split weights joined along their split axis in
 * device order, a row bias from device 0's copy, replicated weights from device 0.
 * @throws Error when a device misses a slice of a split weight.
 */
export function gatherShardParameters(shard: TensorShardPlan, perRank: readonly Readonly<Record<string, Float32Array>>[]): Record<string, Float32Array> {
  const placement = new Map(shard.initializers.map((p) => [p.name, p]));
  const copies = rowBiasCopies(shard);
  const out: Record<string, Float32Array> = {};
  for (const [name, value] of Object.entries(perRank[0] ?? {})) {
    const copyOf = copies.get(name);
    if (copyOf !== undefined) {
      out[copyOf] = value.slice();
      continue;
    }
    const p = placement.get(name);
    if (p?.kind !== 'split') {
      out[name] = value.slice();
      continue;
    }
    const outer = p.dims.slice(0, p.axis).reduce((a, b) => a * b, 1);
    const inner = p.dims.slice(p.axis + 1).reduce((a, b) => a * b, 1);
    const size = p.dims[p.axis]!;
    const whole = new Float32Array(outer * size * inner);
    for (const s of p.slices) {
      const part = perRank[s.device]?.[name];
      if (!part || part.length !== outer * s.length * inner) throw new Error(`device ${s.device} holds no ${s.length}-wide slice of ${name}`);
      for (let o = 0; o < outer; o++) whole.set(part.subarray(o * s.length * inner, (o + 1) * s.length * inner), (o * size + s.start) * inner);
    }
    out[name] = whole;
  }
  return out;
}
