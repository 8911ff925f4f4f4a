/**
 * Where a trace's operator time lands in the user's Python: per ONNX node the time its
 * operator spans took (ORT's fused names mapped back, see profiler/analysis/ops.ts), then per
 * `self.<attr> = …` definition (inclusive of everything under that module) and per source
 * line of a dynamo stack trace. source-hints.ts shows the result as inlay hints. No `vscode`.
 *
 * Shares are of device time: an operator's time over (Σ measured step windows × lanes), the
 * same denominator as `shareOfStep` in the ops analysis. On a data-parallel run that is the
 * share of each device's step; on a pipeline, where each node runs on one stage, the shares
 * of all definitions add up to the devices' busy fraction.
 */
import { opDetailView } from '../profiler/analysis';
import type { Trace } from '../profiler/trace-format';
import { modelNodeName } from '../profiler/analysis/ops';
import { isOpSpan } from '../profiler/analysis/span-index';
import { SpanKind } from '../profiler/trace-format';
import {
  META_STACK_TRACE,
  matchTrailingPath,
  moduleScopeOfNodeName,
  parseStackTrace,
  scopeSteps,
  scopeStepsOfMetadata,
  userFrame,
  type PythonIndex,
  type ScopeStep,
} from './scope-map';

/** Operator time of one model node over the measured steps. */
export interface NodeTime {
  us: number;
  count: number;
  lanes: number[];
  /** Pipeline stages it ran on (empty outside pipelines). */
  stages: number[];
  /** Its extent in the representative step, µs on the trace clock (NaN when it did not run there). */
  repStartUs: number;
  repEndUs: number;
}

export interface OpTimes {
  /** By model node name. */
  nodes: Map<string, NodeTime>;
  /** Σ measured step windows × lanes, µs: the denominator of shares. */
  deviceStepUs: number;
  /** The measured step whose length is closest to the median: where clicks reveal. */
  repStep: { index: number; startUs: number; endUs: number } | null;
  /** Number of pipeline stages (0 outside pipelines). */
  stageCount: number;
  /** The stage with the most compute, when there are two or more. */
  bottleneckStage: number | null;
}

/**
 * Operator time per model node. `known` (the model's node names) lets names ORT generated
 * (`_token_N`, plain `_N`) map to the right node.
 */
export function opTimes(timed: Trace, known?: ReadonlySet<string>): OpTimes {
  // Operator detail comes from the operator-profiled steps when the trace has them.
  const trace = opDetailView(timed);
  const s = trace.spans;
  const measured = new Map<number, number>();
  trace.steps.forEach((w) => measured.set(w.index, w.endUs - w.startUs));
  const lens = [...measured.values()].sort((a, b) => a - b);
  const med = lens.length > 0 ? lens[Math.floor((lens.length - 1) / 2)] : 0;
  let rep: OpTimes['repStep'] = null;
  for (const w of trace.steps) {
    if (!rep || Math.abs(w.endUs - w.startUs - med) < Math.abs(rep.endUs - rep.startUs - med)) rep = { index: w.index, startUs: w.startUs, endUs: w.endUs };
  }
  const byName = new Map<number, string>();
  const nodes = new Map<string, NodeTime & { laneSet: Set<number>; stageSet: Set<number> }>();
  const stageCompute = new Map<number, number>();
  const isOp = (i: number): boolean => isOpSpan(s.flags[i], s.parent[i]);
  // A lane's stage, from its top-level compute spans: operator spans may not repeat it.
  const laneStage = new Map<number, number>();
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.compute || isOp(i) || !measured.has(s.step[i])) continue;
    if (s.stage[i] >= 0) {
      stageCompute.set(s.stage[i], (stageCompute.get(s.stage[i]) ?? 0) + s.dur[i]);
      laneStage.set(s.lane[i], s.stage[i]);
    }
  }
  const stageOf = (i: number): number => {
    if (s.stage[i] >= 0) return s.stage[i];
    const p = s.parent[i];
    if (p >= 0 && p < s.count && s.stage[p] >= 0) return s.stage[p];
    return laneStage.get(s.lane[i]) ?? -1;
  };
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.compute || !measured.has(s.step[i]) || !isOp(i)) continue;
    let node = byName.get(s.name[i]);
    if (node === undefined) {
      node = modelNodeName(trace.strings[s.name[i]] ?? '', known);
      byName.set(s.name[i], node);
    }
    let t = nodes.get(node);
    if (!t) {
      t = { us: 0, count: 0, lanes: [], stages: [], repStartUs: NaN, repEndUs: NaN, laneSet: new Set(), stageSet: new Set() };
      nodes.set(node, t);
    }
    t.us += s.dur[i];
    t.count++;
    t.laneSet.add(s.lane[i]);
    const st = stageOf(i);
    if (st >= 0) t.stageSet.add(st);
    if (rep && s.step[i] === rep.index) {
      const a = s.start[i];
      const b = a + s.dur[i];
      if (!(t.repStartUs <= a)) t.repStartUs = a;
      if (!(t.repEndUs >= b)) t.repEndUs = b;
    }
  }
  const out = new Map<string, NodeTime>();
  for (const [k, t] of nodes) {
    out.set(k, {
      us: t.us,
      count: t.count,
      lanes: [...t.laneSet].sort((a, b) => a - b),
      stages: [...t.stageSet].sort((a, b) => a - b),
      repStartUs: t.repStartUs,
      repEndUs: t.repEndUs,
    });
  }
  let windows = 0;
  for (const v of measured.values()) windows += v;
  let bottleneck: number | null = null;
  if (stageCompute.size >= 2) {
    let best = -Infinity;
    for (const [st, us] of stageCompute) if (us > best) [best, bottleneck] = [us, st];
  }
  return { nodes: out, deviceStepUs: windows * trace.lanes.length, repStep: rep, stageCount: stageCompute.size, bottleneckStage: bottleneck };
}

/** A hint on a line of Python: a definition's or a call site's share of the step. */
export interface SourceHint {
  kind: 'definition' | 'call';
  file: string;
  /** 0-based line, and the character after which the hint goes. */
  line: number;
  character: number;
  /** For definitions: the class and attribute. */
  className?: string;
  attr?: string;
  us: number;
  /** us / device step time. */
  share: number;
  stages: number[];
  lanes: number[];
  /** The nodes under it in the representative step, µs on the trace clock; null when none ran there. */
  range: { startUs: number; endUs: number } | null;
  /** The heaviest nodes under it, by time. */
  topNodes: { node: string; us: number }[];
  /** ModuleList / Sequential entries aggregated into this definition: time and stages per index. */
  perIndex: { index: number; us: number; stages: number[] }[];
  /** True when the hint's time is on the bottleneck stage (all of it, or its entries there). */
  onBottleneck: boolean;
}

/** What {@link sourceHints} needs besides the times. */
export interface SourceContext {
  /** The workspace's Python definitions. */
  python: PythonIndex;
  /** Paths of the workspace's Python files, for matching stack-trace paths. */
  pythonFiles: readonly string[];
  /** The model's node metadata by node name (dynamo exporter), when the model could be read. */
  metadata?: ReadonlyMap<string, Record<string, string>>;
}

interface Acc {
  hint: Omit<SourceHint, 'stages' | 'lanes' | 'range' | 'topNodes' | 'perIndex' | 'share' | 'onBottleneck'>;
  stages: Set<number>;
  lanes: Set<number>;
  start: number;
  end: number;
  nodes: Map<string, number>;
  perIndex: Map<number, { us: number; stages: Set<number> }>;
}

const TOP_NODES = 5;

/** Scope steps of a node: dynamo metadata first, then the TorchScript name. */
export function nodeScope(node: string, meta: Record<string, string> | undefined): ScopeStep[] | null {
  const fromMeta = scopeStepsOfMetadata(meta);
  if (fromMeta && fromMeta.length > 0) return fromMeta;
  const path = moduleScopeOfNodeName(node);
  return path === null ? null : scopeSteps(path);
}

/** Hints for every definition and call site that the trace's operator time maps to. */
export function sourceHints(times: OpTimes, ctx: SourceContext): SourceHint[] {
  const accs = new Map<string, Acc>();
  const get = (key: string, make: () => Acc['hint']): Acc => {
    let a = accs.get(key);
    if (!a) {
      a = { hint: make(), stages: new Set(), lanes: new Set(), start: NaN, end: NaN, nodes: new Map(), perIndex: new Map() };
      accs.set(key, a);
    }
    return a;
  };
  const add = (a: Acc, node: string, t: NodeTime, index?: number): void => {
    a.hint.us += t.us;
    for (const st of t.stages) a.stages.add(st);
    for (const l of t.lanes) a.lanes.add(l);
    if (Number.isFinite(t.repStartUs)) {
      if (!(a.start <= t.repStartUs)) a.start = t.repStartUs;
      if (!(a.end >= t.repEndUs)) a.end = t.repEndUs;
    }
    a.nodes.set(node, (a.nodes.get(node) ?? 0) + t.us);
    if (index !== undefined) {
      let e = a.perIndex.get(index);
      if (!e) a.perIndex.set(index, (e = { us: 0, stages: new Set() }));
      e.us += t.us;
      for (const st of t.stages) e.stages.add(st);
    }
  };
  for (const [node, t] of times.nodes) {
    const meta = ctx.metadata?.get(node);
    const steps = nodeScope(node, meta);
    if (steps && steps.length > 0) {
      for (const r of ctx.python.resolve(steps)) {
        for (const d of r.defs) {
          const key = `d:${d.file}:${d.def.line}`;
          const a = get(key, () => ({ kind: 'definition', file: d.file, line: d.def.line, character: d.def.lineEnd, className: d.def.className, attr: d.def.attr, us: 0 }));
          add(a, node, t, r.step.indices[0]);
        }
      }
    }
    const stack = meta?.[META_STACK_TRACE];
    if (stack) {
      const frame = userFrame(parseStackTrace(stack));
      const files = frame ? matchTrailingPath(frame.file, ctx.pythonFiles) : [];
      if (frame && files.length === 1) {
        const key = `c:${files[0]}:${frame.line - 1}`;
        const a = get(key, () => ({ kind: 'call', file: files[0]!, line: frame.line - 1, character: -1, us: 0 }));
        add(a, node, t);
      }
    }
  }
  const out: SourceHint[] = [];
  for (const a of accs.values()) {
    const stages = [...a.stages].sort((x, y) => x - y);
    const perIndex = [...a.perIndex.entries()]
      .sort((x, y) => x[0] - y[0])
      .map(([index, e]) => ({ index, us: e.us, stages: [...e.stages].sort((x, y) => x - y) }));
    const b = times.bottleneckStage;
    out.push({
      ...a.hint,
      share: times.deviceStepUs > 0 ? a.hint.us / times.deviceStepUs : 0,
      stages,
      lanes: [...a.lanes].sort((x, y) => x - y),
      range: Number.isFinite(a.start) ? { startUs: a.start, endUs: a.end } : null,
      topNodes: [...a.nodes.entries()]
        .sort((x, y) => y[1] - x[1])
        .slice(0, TOP_NODES)
        .map(([node, us]) => ({ node, us })),
      perIndex,
      onBottleneck: b !== null && (stages.length === 1 ? stages[0] === b : perIndex.some((p) => p.stages.length === 1 && p.stages[0] === b)),
    });
  }
  return out.sort((x, y) => (x.file < y.file ? -1 : x.file > y.file ? 1 : x.line - y.line));
}

/** Contiguous runs of indices as text: [0,1,2,3,5] → "0–3, 5". */
export function indexRanges(indices: readonly number[]): string {
  const xs = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(i === j ? String(xs[i]) : `${xs[i]}–${xs[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** Share as text: one decimal under 10%, whole percent above. */
export function shareText(share: number): string {
  const p = share * 100;
  return p < 10 ? `${p.toFixed(1)}%` : `${Math.round(p)}%`;
}

/**
 * The inlay hint's text: `◷ 47% of step`, with the stage where the time is on one stage and a
 * marker on the bottleneck stage (for a ModuleList: which of its entries sit there, e.g.
 * `◷ 61% of step · [4–7] ◀ bottleneck`).
 */
export function hintLabel(h: SourceHint, times: Pick<OpTimes, 'stageCount' | 'bottleneckStage'>): string {
  let s = `◷ ${shareText(h.share)} of step`;
  if (times.stageCount < 2) return s;
  const b = times.bottleneckStage;
  if (h.stages.length === 1) {
    s += ` · stage ${h.stages[0]}`;
    if (h.stages[0] === b) s += ' ◀ bottleneck';
    return s;
  }
  const onB = h.perIndex.filter((p) => p.stages.length === 1 && p.stages[0] === b).map((p) => p.index);
  // Kept short: VS Code cuts inlay hints at 43 characters by default (the tooltip has the rest).
  if (b !== null && onB.length > 0 && h.attr !== undefined) return `${s} · [${indexRanges(onB)}] ◀ bottleneck`;
  if (h.stages.length > 1) s += ` · stages ${indexRanges(h.stages)}`;
  return s;
}
