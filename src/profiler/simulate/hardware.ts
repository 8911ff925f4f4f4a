/**
 * Hardware presets for predictions on machines Parallax has not measured: device kinds (peak
 * FLOP/s per precision and memory bandwidth), links (bandwidth per direction and latency), and
 * the two-level collectives of a multi-node machine.
 *
 * Every figure carries its source, in a comment and in the data, so a prediction can say
 * what it rests on. Vendor peaks are dense (no structured sparsity) and per GPU (SXM parts).
 *
 * Scaling compute to another device kind ({@link scaleComputeCost}) is a roofline ratio:
 * a segment's calibrated cost is multiplied by (its roofline time on the target) / (its
 * roofline time on the calibrated device), separately for the part that grows with the rows
 * (activations) and the fixed part (reading the weights once per run). The calibrated
 * device's own rates are the best it reached in the calibration ({@link calibratedRates}),
 * so the assumption is that each segment keeps, on the target, the efficiency relative to the
 * device's best that it shows here. A fixed part with no FLOPs and no bytes (host overhead)
 * is kept as measured.
 */
import type { ComputeCost, Link } from './costs';
import { collectiveUs } from './costs';
import type { CollectiveOp } from '../span-vocabulary';

/** Numeric precisions the device presets know peaks for. */
export const PRECISIONS = ['fp32', 'tf32', 'fp16', 'bf16', 'fp8'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** A device kind: what a roofline needs and where the figures come from. */
export interface DeviceKindPreset {
  id: string;
  label: string;
  /** Peak dense FLOP/s per precision (tensor cores where the precision uses them). */
  peakFlopsPerSec: Partial<Record<Precision, number>>;
  /** Memory (HBM) bandwidth, bytes/s. */
  memoryBytesPerSec: number;
  /** Memory per device, bytes. */
  memoryBytes: number;
  source: string;
}

/** Device kinds other than `this` (the calibrated device itself). */
export const DEVICE_KINDS = {
  // NVIDIA H100 Tensor Core GPU datasheet (H100 SXM): FP32 67 TFLOPS; TF32 989 TFLOPS, BF16/FP16
  // 1,979 TFLOPS, FP8 3,958 TFLOPS, each "with sparsity" (dense is half); GPU memory 80 GB,
  // bandwidth 3.35 TB/s.
  h100: {
    id: 'h100',
    label: 'NVIDIA H100 SXM 80GB',
    peakFlopsPerSec: { fp32: 67e12, tf32: 494.5e12, fp16: 989.5e12, bf16: 989.5e12, fp8: 1979e12 },
    memoryBytesPerSec: 3.35e12,
    memoryBytes: 80e9,
    source: 'NVIDIA H100 Tensor Core GPU datasheet (SXM): FP32 67 TFLOPS; TF32/BF16/FP16/FP8 dense = half the "with sparsity" 989/1,979/1,979/3,958 TFLOPS; HBM3 3.35 TB/s',
  },
  // NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM): FP32 19.5 TFLOPS; TF32 156 TFLOPS and
  // BF16/FP16 312 TFLOPS dense (312 and 624 with sparsity); HBM2e 2,039 GB/s. No FP8.
  a100: {
    id: 'a100',
    label: 'NVIDIA A100 SXM 80GB',
    peakFlopsPerSec: { fp32: 19.5e12, tf32: 156e12, fp16: 312e12, bf16: 312e12 },
    memoryBytesPerSec: 2.039e12,
    memoryBytes: 80e9,
    source: 'NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): FP32 19.5 TFLOPS; TF32 156, BF16/FP16 312 TFLOPS dense; HBM2e 2,039 GB/s',
  },
} as const satisfies Record<string, DeviceKindPreset>;
export type DeviceKindId = keyof typeof DEVICE_KINDS;
/** `this` is the calibrated device; the rest are presets. */
export type DeviceKindChoice = 'this' | DeviceKindId;
export const DEVICE_KIND_CHOICES: readonly DeviceKindChoice[] = ['this', ...(Object.keys(DEVICE_KINDS) as DeviceKindId[])];

/** A link preset: bandwidth per direction and per-step latency, with sources. */
export interface LinkPreset {
  id: string;
  label: string;
  /** Bandwidth per direction per device, bytes/s. */
  bytesPerSec: number;
  /** Latency per ring step, µs. */
  alphaUs: number;
  source: string;
}

// Latencies: NCCL's own cost model (src/graph/tuning.cc, `hwLat`, ring algorithm, Simple
// protocol, the one large buffers use): 3.4 µs per step over NVLink, 5.7 µs over PCIe, 9.6 µs
// over the network.
const NCCL_LATENCY = 'latency per ring step from NCCL\'s tuning model (src/graph/tuning.cc hwLat, ring/Simple)';
export const LINKS = {
  // NVIDIA H100 datasheet: NVLink 900 GB/s per GPU, both directions together.
  nvlink4: { id: 'nvlink4', label: 'NVLink 4', bytesPerSec: 450e9, alphaUs: 3.4, source: `NVIDIA H100 datasheet: NVLink 4 900 GB/s bidirectional = 450 GB/s per direction; ${NCCL_LATENCY}` },
  // PCI-SIG PCIe 4.0: 16 GT/s per lane, 128b/130b encoding: 16 × 16 × 128/130 / 8 = 31.5 GB/s per direction.
  pcie4x16: { id: 'pcie4x16', label: 'PCIe 4.0 x16', bytesPerSec: 31.5e9, alphaUs: 5.7, source: `PCIe 4.0 x16: 16 GT/s × 16 lanes, 128b/130b = 31.5 GB/s per direction; ${NCCL_LATENCY}` },
  // NVIDIA Quantum-2 / ConnectX-7 NDR InfiniBand: 400 Gb/s per port.
  'ib-ndr': { id: 'ib-ndr', label: 'InfiniBand NDR', bytesPerSec: 50e9, alphaUs: 9.6, source: `InfiniBand NDR (ConnectX-7): 400 Gb/s = 50 GB/s per direction; ${NCCL_LATENCY}` },
  // IEEE 802.3 100GBASE: 100 Gb/s.
  '100gbe': { id: '100gbe', label: '100 GbE', bytesPerSec: 12.5e9, alphaUs: 9.6, source: `100 Gigabit Ethernet (IEEE 802.3): 100 Gb/s = 12.5 GB/s per direction; ${NCCL_LATENCY}` },
} as const satisfies Record<string, LinkPreset>;
export type LinkId = keyof typeof LINKS;
export const LINK_IDS = Object.keys(LINKS) as LinkId[];

/** A custom link from `--link-alpha-us` and `--link-gbps` (gigabits per second per direction). */
export function customLink(alphaUs: number, gbps: number): LinkPreset {
  return { id: 'custom', label: `custom ${gbps} Gb/s, ${alphaUs} µs`, bytesPerSec: (gbps * 1e9) / 8, alphaUs, source: 'given on the command line' };
}

/** A preset as the simulator's α–β link (bytes per µs). */
export function linkOf(p: LinkPreset): Link {
  return { alphaUs: p.alphaUs, bytesPerUs: p.bytesPerSec / 1e6 };
}

/** A machine of `nodeSize` devices per node: links inside a node and between nodes. */
export interface Topology {
  nodeSize: number;
  intra: Link;
  inter: Link;
}

/** Nodes a group of `n` ranks spans (ranks fill nodes in order). */
export function nodesOf(n: number, nodeSize: number): number {
  return Math.ceil(n / Math.max(1, nodeSize));
}

/**
 * A collective over `n` ranks on a two-level machine, as NCCL runs it across nodes: the
 * ranks of a node work over the intra-node link and one ring per local rank crosses the
 * nodes. All-reduce: reduce-scatter inside each node, all-reduce of the node's 1/G share
 * across the M nodes, all-gather inside each node. All-gather (reduce-scatter the same in
 * reverse): across nodes on 1/G of the buffer, then inside each node on all of it.
 * Broadcast: across nodes, then inside each. With one node (G ≥ n) every formula is the
 * flat ring over the intra-node link.
 */
export function hierarchicalCollectiveUs(op: CollectiveOp, bytes: number, n: number, t: Topology): number {
  if (n <= 1) return 0;
  const g = Math.min(Math.max(1, t.nodeSize), n);
  const m = nodesOf(n, g);
  if (m <= 1) return collectiveUs(op, bytes, n, t.intra);
  switch (op) {
    case 'allreduce':
      return collectiveUs('reducescatter', bytes, g, t.intra) + collectiveUs('allreduce', bytes / g, m, t.inter) + collectiveUs('allgather', bytes, g, t.intra);
    case 'allgather':
    case 'reducescatter':
      return collectiveUs(op, bytes / g, m, t.inter) + collectiveUs(op, bytes, g, t.intra);
    case 'broadcast':
      return collectiveUs('broadcast', bytes, m, t.inter) + collectiveUs('broadcast', bytes, g, t.intra);
    default: {
      const never: never = op;
      throw new Error(`unknown collective ${String(never)}`);
    }
  }
}

/** The link between two ranks: intra-node when they share a node. */
export function linkBetween(a: number, b: number, t: Topology): Link {
  const g = Math.max(1, t.nodeSize);
  return Math.floor(a / g) === Math.floor(b / g) ? t.intra : t.inter;
}

/** FLOPs and bytes of one run of a segment: a fixed part and a part per row. */
export interface SegmentWork {
  flopsFixed: number;
  flopsPerRow: number;
  bytesFixed: number;
  bytesPerRow: number;
}

/** Rates of a device, per µs. */
export interface Rates {
  flopsPerUs: number;
  bytesPerUs: number;
}

/** A preset's rates at a precision; throws for a precision the device has no peak for. */
export function presetRates(p: DeviceKindPreset, precision: Precision): Rates {
  const peak = p.peakFlopsPerSec[precision];
  if (peak === undefined) throw new Error(`${p.label} has no ${precision} peak`);
  return { flopsPerUs: peak / 1e6, bytesPerUs: p.memoryBytesPerSec / 1e6 };
}

/**
 * The calibrated device's best rates: the highest FLOP rate of any segment's per-row part and
 * the highest byte rate of any segment's fixed part (reading its weights). Infinity where no
 * segment has the work to tell (the ratio then ignores that term).
 */
export function calibratedRates(entries: readonly { cost: ComputeCost; work: SegmentWork }[]): Rates {
  let flopsPerUs = 0;
  let bytesPerUs = 0;
  for (const { cost, work } of entries) {
    if (cost.perRowUs > 0 && work.flopsPerRow > 0) flopsPerUs = Math.max(flopsPerUs, work.flopsPerRow / cost.perRowUs);
    if (cost.fixedUs > 0 && work.bytesFixed > 0) bytesPerUs = Math.max(bytesPerUs, work.bytesFixed / cost.fixedUs);
  }
  return { flopsPerUs: flopsPerUs || Infinity, bytesPerUs: bytesPerUs || Infinity };
}

/** Roofline time of `flops` and `bytes` at `rates`, µs. */
export function rooflineUs(flops: number, bytes: number, rates: Rates): number {
  return Math.max(flops / rates.flopsPerUs, bytes / rates.bytesPerUs);
}

/** Roofline ratio target/calibrated of some work; 1 when the calibrated device's roofline says nothing (no work, or no rate). */
function ratio(flops: number, bytes: number, from: Rates, to: Rates): number {
  const here = rooflineUs(flops, bytes, from);
  return here > 0 && Number.isFinite(here) ? rooflineUs(flops, bytes, to) / here : 1;
}

/** A calibrated compute cost scaled from the calibrated device's rates to a target's (see the module comment). */
export function scaleComputeCost(cost: ComputeCost, work: SegmentWork, from: Rates, to: Rates): ComputeCost {
  return {
    fixedUs: cost.fixedUs * ratio(work.flopsFixed, work.bytesFixed, from, to),
    perRowUs: cost.perRowUs * ratio(work.flopsPerRow, work.bytesPerRow, from, to),
  };
}
