/** Programs built the way the compilers build them, and trace metadata for them (simulator and sweep tests). */
import type { DeviceProgram, Instruction, Program, Segment } from '../../src/profiler/program';
import type { Trace } from '../../src/profiler/trace-format';
import { syntheticMeta } from '../../src/profiler/analysis/synthetic';

/** The whole-model segment of a data program. */
export const WHOLE: Segment = { id: 0, kind: 'whole', label: 'model' };

/** Data mode: per rank [scatter, run whole model, gather] (+ all-reduce of the gradients). */
export function dataProgram(n: number, batch: number, o: { rowBytes?: number; outBytes?: number; allreduceBytes?: number } = {}): Program {
  const rows = batch / n;
  const devices: DeviceProgram[] = Array.from({ length: n }, (_, r) => {
    const range = { start: r * rows, count: rows };
    const ins: Instruction[] = [
      { op: 'scatter', micro: -1, rows: range, tensors: ['x'], bytes: rows * (o.rowBytes ?? 0) },
      { op: 'run', micro: -1, segment: 0, rows, phase: 'forward' },
      { op: 'gather', micro: -1, rows: range, tensors: ['y'], bytes: rows * (o.outBytes ?? 0) },
    ];
    if (o.allreduceBytes !== undefined) {
      ins.push({ op: 'collective', collective: 'allreduce', group: Array.from({ length: n }, (_, g) => g), buffer: 'gradients', bytes: o.allreduceBytes });
    }
    return { rank: r, stage: -1, segments: [0], instructions: ins };
  });
  const buffers = o.allreduceBytes === undefined ? [] : [{ name: 'gradients', dtype: 'float32' as const, elements: o.allreduceBytes / 4, synthetic: true }];
  return { mode: 'data', schedule: 'none', batch, segments: [WHOLE], devices, outputs: [{ name: 'y', batchAxis: 0 }], buffers };
}

/** K stage segments of two nodes each. */
export function stageSegments(k: number): Segment[] {
  return Array.from({ length: k }, (_, s) => ({ id: s, kind: 'stage' as const, label: `stage ${s}`, stage: s, nodes: [`n${s}a`, `n${s}b`] }));
}

/** GPipe: per stage s and micro m: [scatter (s = 0), recv ← s−1, run s, send → s+1, gather (last)]. */
export function gpipeProgram(k: number, m: number, batch: number, o: { rowBytes?: number; actBytes?: number; outBytes?: number } = {}): Program {
  const rows = batch / m;
  const devices: DeviceProgram[] = Array.from({ length: k }, (_, s) => {
    const ins: Instruction[] = [];
    for (let mi = 0; mi < m; mi++) {
      const range = { start: mi * rows, count: rows };
      if (s === 0) ins.push({ op: 'scatter', micro: mi, rows: range, tensors: ['x'], bytes: rows * (o.rowBytes ?? 0) });
      if (s > 0) ins.push({ op: 'recv', micro: mi, from: s - 1, tensors: [`h${s - 1}`], bytes: rows * (o.actBytes ?? 0) });
      ins.push({ op: 'run', micro: mi, segment: s, rows, phase: 'forward' });
      if (s < k - 1) ins.push({ op: 'send', micro: mi, to: s + 1, tensors: [`h${s}`], bytes: rows * (o.actBytes ?? 0) });
      if (s === k - 1) ins.push({ op: 'gather', micro: mi, rows: range, tensors: ['y'], bytes: rows * (o.outBytes ?? 0) });
    }
    return { rank: s, stage: s, segments: [s], instructions: ins };
  });
  return { mode: 'pipeline', schedule: 'gpipe', batch, segments: stageSegments(k), devices, outputs: [{ name: 'y', batchAxis: 0 }], buffers: [] };
}

/**
 * Tensor mode as its compiler builds it: per rank [scatter every row, run part 0, all-reduce,
 * run part 1, …, gather (rank 0)]; `parts[k]` names the nodes of chain part k.
 */
export function tensorProgram(n: number, batch: number, parts: readonly string[][], o: { rowBytes?: number; allreduceBytesPerRow?: number } = {}): Program {
  const k = parts.length;
  const rows = { start: 0, count: batch };
  const group = Array.from({ length: n }, (_, g) => g);
  const segments: Segment[] = [];
  for (let rank = 0; rank < n; rank++) parts.forEach((nodes, part) => segments.push({ id: rank * k + part, kind: 'shard', label: `shard ${rank} part ${part}`, rank, part, nodes: [...nodes] }));
  const bytes = batch * (o.allreduceBytesPerRow ?? 0);
  const devices: DeviceProgram[] = group.map((rank) => {
    const ins: Instruction[] = [{ op: 'scatter', micro: -1, rows, tensors: ['x'], bytes: batch * (o.rowBytes ?? 0) }];
    parts.forEach((_, part) => {
      ins.push({ op: 'run', micro: -1, segment: rank * k + part, rows: batch, phase: 'forward' });
      if (part < k - 1) ins.push({ op: 'collective', collective: 'allreduce', group, buffer: `tensor.allreduce${part}`, bytes });
    });
    if (rank === 0) ins.push({ op: 'gather', micro: -1, rows, tensors: ['y'], bytes: 0 });
    return { rank, stage: -1, segments: parts.map((_, part) => rank * k + part), instructions: ins };
  });
  const buffers = parts.slice(0, -1).map((_, i) => ({ name: `tensor.allreduce${i}`, dtype: 'float32' as const, elements: bytes / 4, synthetic: false }));
  return { mode: 'tensor', schedule: 'megatron', batch, segments, devices, outputs: [{ name: 'y', batchAxis: 0 }], buffers };
}

/** Synthetic metadata with one CPU device per rank and the program's plan. */
export function metaFor(p: Program): Trace['meta'] {
  const base = { devices: `cpu:${p.devices.length}`, batch: p.batch, steps: 1, warmup: 0, seed: 0 };
  return syntheticMeta(p.devices.length, p.mode === 'pipeline' ? { mode: 'pipeline', ...base, schedule: 'gpipe', microBatches: 1 } : { mode: 'data', ...base });
}

