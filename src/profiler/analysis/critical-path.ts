/**
 * The critical path of each step: the longest chain of data dependencies through the
 * top-level compute and comm spans of every lane, and how much slack each lane has.
 *
 * Dependencies, as a DAG per step:
 *  - lane order: a span depends on the spans of its lane that ended before it started
 *    (spans that overlap on a lane, such as comm running under compute, do not depend on
 *    each other);
 *  - point to point (by the `comm` column): the k-th `send` from lane a to peer b for micro-batch m is matched with
 *    the k-th `recv` on lane b from peer a for micro-batch m. Both ends of a transfer run at
 *    once, and whichever end started first also waits for the other (a recv blocks until
 *    data arrives; a send may block until the receiver frees its buffer), so the transfer
 *    itself is the shorter of the two spans and the rest of the longer one is waiting. The
 *    link therefore says: the recv cannot finish before send start + min(send, recv) (its
 *    "lag"). A transfer is counted once, and waiting inside a span is not passed on as a
 *    dependency;
 *  - collectives (comm spans without a peer, other than send/recv) join every lane taking
 *    part: the k-th collective of a name on each lane starts only when every participant has
 *    finished what came before it on its lane.
 *
 * Each span weighs its measured duration; the longest path is computed forward in
 * topological order (earliest finish), then backward (latest finish), and a span's slack is
 * latest − earliest finish. Along the path each span is credited with the time from its
 * predecessor's release to its own (a send releases its recv at start + lag), so the lanes'
 * shares add up to the path's length. Gaps between spans carry no weight, so a path is shorter than the
 * step by the idle time no dependency explains (host overhead, for instance).
 *
 * A lane's slack is the smallest slack of its own spans (collectives excluded: they are
 * shared by every lane and have the slack of the slowest participant): how much longer the
 * lane's least flexible span could take before the step would get longer.
 */
import { median } from '../stats';
import { CommOpCode, SpanKind, isP2pCode } from '../trace-format';
import type { SpanIndex } from './span-index';

/** Timer jitter tolerated when deciding that one span ended before another began, µs. */
const TOLERANCE_US = 1;
/** How far back on a lane to look for the spans a span depends on. */
const LANE_LOOKBACK = 8;

const ROLE_OTHER = 0;
const ROLE_COLLECTIVE = 1;
const ROLE_SEND = 2;
const ROLE_RECV = 3;

export interface CriticalPathStep {
  /** `trace.steps[pos].index`. */
  step: number;
  lengthUs: number;
  stepUs: number;
  /** Span indices along the path, in order. */
  spans: number[];
  /** Per lane, µs. */
  laneSlackUs: number[];
}

export interface CriticalPathAnalysis {
  /** Per step position: length of the critical path, µs. */
  lengthUs: number[];
  /** Per lane: median over steps of the lane's slack, µs. */
  laneSlackUs: number[];
  /** Per lane: share of the critical paths' length (all steps) spent in the lane's spans. */
  laneCriticalShare: number[];
  /** The step closest to the median step time, with its path. */
  representative: CriticalPathStep | null;
  /** Steps whose cross-lane links formed a cycle (inconsistent clocks); lane order alone was used there. */
  cyclicSteps: number;
}

/** Growable scratch buffers reused across steps. */
class Scratch {
  cap = 0;
  ecap = 0;
  span = new Int32Array(0);
  lane = new Int32Array(0);
  join = new Int32Array(0);
  w = new Float64Array(0);
  es = new Float64Array(0);
  ff = new Float64Array(0);
  ef = new Float64Array(0);
  lf = new Float64Array(0);
  predN = new Int32Array(0);
  predF = new Int32Array(0);
  bind = new Int32Array(0);
  indeg = new Int32Array(0);
  outOff = new Int32Array(0);
  order = new Int32Array(0);
  eSrc = new Int32Array(0);
  eDst = new Int32Array(0);
  /** Per edge: -1 for a precedence edge, else the lag of a transfer link (see the module comment). */
  eLag = new Float64Array(0);
  bindFF = new Uint8Array(0);
  outList = new Int32Array(0);
  role = new Uint8Array(0);
  next = new Int32Array(0);
  /** Send queues by key; head is kept all −1 between uses. */
  head = new Int32Array(0);
  tail = new Int32Array(0);
  touched = new Int32Array(0);

  ensureKeys(keys: number): void {
    if (keys <= this.head.length) return;
    this.head = new Int32Array(keys).fill(-1);
    this.tail = new Int32Array(keys);
  }

  ensure(nodes: number, edges: number): void {
    if (nodes > this.cap) {
      const c = Math.max(nodes, this.cap * 2, 64);
      this.cap = c;
      this.span = new Int32Array(c);
      this.lane = new Int32Array(c);
      this.join = new Int32Array(c);
      this.w = new Float64Array(c);
      this.es = new Float64Array(c);
      this.ff = new Float64Array(c);
      this.ef = new Float64Array(c);
      this.lf = new Float64Array(c);
      this.predN = new Int32Array(c);
      this.predF = new Int32Array(c);
      this.bind = new Int32Array(c);
      this.indeg = new Int32Array(c);
      this.outOff = new Int32Array(c + 1);
      this.order = new Int32Array(c);
      this.role = new Uint8Array(c);
      this.bindFF = new Uint8Array(c);
      this.next = new Int32Array(c);
      this.touched = new Int32Array(c);
    }
    if (edges > this.ecap) {
      const c = Math.max(edges, this.ecap * 2, 256);
      this.ecap = c;
      this.eSrc = new Int32Array(c);
      this.eDst = new Int32Array(c);
      this.eLag = new Float64Array(c);
      this.outList = new Int32Array(c);
    }
  }
}

interface StepResult {
  lengthUs: number;
  laneSlack: Float64Array;
  /** Nodes on the path, in order (real spans only). */
  path: number[];
  pathContribution: number[];
  cyclic: boolean;
}

/** One step's nodes in the scratch buffers: its busy spans, lane-major in start order. */
interface StepNodes {
  ix: SpanIndex;
  sc: Scratch;
  /** Number of span nodes (join nodes come after them). */
  n: number;
  /** First node of each lane, and n at the end (nLanes + 1 entries). */
  laneLo: Int32Array;
  nCollective: number;
  nP2p: number;
}

/** Adds a dependency edge a → b: `lag` −1 for precedence, else a transfer link's lag. */
type AddEdge = (a: number, b: number, lag: number) => void;

/** Solves one step; returns null when the step has no busy spans. */
function solveStep(ix: SpanIndex, p: number, sc: Scratch): StepResult | null {
  const g = loadStepNodes(ix, p, sc);
  if (!g) return null;
  return attemptStep(g, true) ?? attemptStep(g, false);
}

/** Puts step `p`'s busy spans into the scratch buffers with their weights and roles; null when there are none. */
function loadStepNodes(ix: SpanIndex, p: number, sc: Scratch): StepNodes | null {
  const { nLanes, nSteps, busy, busyOffset } = ix;
  const s = ix.trace.spans;
  let n = 0;
  for (let l = 0; l < nLanes; l++) n += busyOffset[l * nSteps + p + 1] - busyOffset[l * nSteps + p];
  if (n === 0) return null;
  // Nodes: the spans (lane-major, start order), then one join node per collective group.
  sc.ensure(2 * n, (LANE_LOOKBACK + 4) * n + 16);
  const laneLo = new Int32Array(nLanes + 1);
  let k = 0;
  for (let l = 0; l < nLanes; l++) {
    laneLo[l] = k;
    for (let j = busyOffset[l * nSteps + p]; j < busyOffset[l * nSteps + p + 1]; j++) {
      sc.span[k] = busy[j];
      sc.lane[k] = l;
      sc.w[k] = s.dur[busy[j]];
      k++;
    }
  }
  laneLo[nLanes] = n;
  // Each node's role, once: collective, point-to-point send or recv (with a peer), or other.
  let nCollective = 0;
  let nP2p = 0;
  for (let v = 0; v < n; v++) {
    const i = sc.span[v];
    let role = ROLE_OTHER;
    if (s.kind[i] === SpanKind.comm) {
      const op = s.comm[i];
      if (s.peer[i] < 0) role = isP2pCode(op) ? ROLE_OTHER : ROLE_COLLECTIVE;
      else role = op === CommOpCode.send ? ROLE_SEND : op === CommOpCode.recv ? ROLE_RECV : ROLE_OTHER;
    }
    sc.role[v] = role;
    if (role === ROLE_COLLECTIVE) nCollective++;
    else if (role !== ROLE_OTHER) nP2p++;
  }
  return { ix, sc, n, laneLo, nCollective, nP2p };
}

/**
 * Builds the step's dependency graph (with cross-lane links when `cross`), orders it and
 * finds the critical path and lane slack; null when the links form a cycle.
 */
function attemptStep(g: StepNodes, cross: boolean): StepResult | null {
  const { sc, n } = g;
  const total = cross && g.nCollective > 0 ? addCollectiveJoins(g) : clearJoins(g);
  let e = 0;
  const edge: AddEdge = (a, b, lag) => {
    sc.eSrc[e] = a;
    sc.eDst[e] = b;
    sc.eLag[e] = lag;
    e++;
  };
  addLaneEdges(g, edge);
  if (cross && g.nP2p > 0) addTransferEdges(g, edge);
  if (!forwardPass(sc, total, e)) return null;
  let length = 0;
  for (let v = 0; v < n; v++) if (sc.ef[v] > length) length = sc.ef[v];
  backwardPass(sc, total, length);
  const { path, pathContribution } = bindingPath(sc, n, pathEnd(sc, n, length), length);
  return { lengthUs: length, laneSlack: laneSlacks(g, length), path: path.map((v) => sc.span[v]), pathContribution, cyclic: !cross };
}

/** No collective groups: every span is its own target. Returns the node count. */
function clearJoins(g: StepNodes): number {
  g.sc.join.fill(-1, 0, g.n);
  return g.n;
}

/**
 * Collective groups: the k-th collective of a name on each lane, joined through one
 * zero-weight node per group. Returns the node count, join nodes included.
 */
function addCollectiveJoins(g: StepNodes): number {
  const { ix, sc, laneLo } = g;
  const s = ix.trace.spans;
  let total = clearJoins(g);
  const nStrings = ix.trace.strings.length;
  const keyOf = new Map<number, number>();
  const members = new Map<number, number[]>();
  for (let l = 0; l < ix.nLanes; l++) {
    keyOf.clear();
    for (let v = laneLo[l]; v < laneLo[l + 1]; v++) {
      if (sc.role[v] !== ROLE_COLLECTIVE) continue;
      const nm = s.name[sc.span[v]];
      const ord = keyOf.get(nm) ?? 0;
      keyOf.set(nm, ord + 1);
      const key = nm + ord * nStrings;
      let list = members.get(key);
      if (!list) members.set(key, (list = []));
      list.push(v);
    }
  }
  for (const list of members.values()) {
    if (list.length < 2) continue;
    const j = total++;
    sc.w[j] = 0;
    sc.span[j] = -1;
    sc.lane[j] = -1;
    for (const v of list) sc.join[v] = j;
  }
  return total;
}

/** Lane order: each span (or its join node) depends on the spans of its lane that ended before it started. */
function addLaneEdges(g: StepNodes, edge: AddEdge): void {
  const { sc, laneLo } = g;
  const s = g.ix.trace.spans;
  for (let l = 0; l < g.ix.nLanes; l++) {
    const lo = laneLo[l];
    for (let q = lo; q < laneLo[l + 1]; q++) {
      const target = sc.join[q] >= 0 ? sc.join[q] : q;
      if (target !== q) edge(target, q, -1);
      const startQ = s.start[sc.span[q]] + TOLERANCE_US;
      for (let r = q - 1; r >= lo && r >= q - LANE_LOOKBACK; r--) {
        const ir = sc.span[r];
        if (s.start[ir] + s.dur[ir] > startQ) continue;
        edge(r, target, -1);
        // r follows its own predecessor, which q therefore depends on through r.
        if (r - 1 >= lo) {
          const ip = sc.span[r - 1];
          if (s.start[ip] + s.dur[ip] <= s.start[ir] + TOLERANCE_US) break;
        }
      }
    }
  }
}

/** Point to point: links each recv to the matching send (see the module comment). */
function addTransferEdges(g: StepNodes, edge: AddEdge): void {
  const { ix, sc, n } = g;
  const s = ix.trace.spans;
  const nLanes = ix.nLanes;
  // Sends queue per (from lane, to lane, micro-batch); each recv takes the oldest one.
  const mk = ix.maxMicro + 2;
  sc.ensureKeys(nLanes * nLanes * mk);
  const { head, tail, next, touched } = sc;
  let nTouched = 0;
  for (let v = 0; v < n; v++) {
    if (sc.role[v] !== ROLE_SEND) continue;
    const i = sc.span[v];
    const key = (sc.lane[v] * nLanes + s.peer[i]) * mk + s.micro[i] + 1;
    next[v] = -1;
    if (head[key] < 0) {
      head[key] = v;
      touched[nTouched++] = key;
    } else next[tail[key]] = v;
    tail[key] = v;
  }
  for (let v = 0; v < n; v++) {
    if (sc.role[v] !== ROLE_RECV) continue;
    const i = sc.span[v];
    const key = (s.peer[i] * nLanes + sc.lane[v]) * mk + s.micro[i] + 1;
    const snd = head[key];
    if (snd < 0) continue;
    head[key] = next[snd];
    if (s.start[sc.span[snd]] <= s.start[i] + s.dur[i] + TOLERANCE_US) edge(snd, v, Math.min(sc.w[snd], sc.w[v]));
  }
  for (let k = 0; k < nTouched; k++) head[touched[k]] = -1;
}

/**
 * CSR of the `edges` out-edges, Kahn's topological order into `sc.order`, and the earliest
 * finish of every node with its binding predecessor; false when the graph has a cycle.
 */
function forwardPass(sc: Scratch, total: number, edges: number): boolean {
  const { indeg, outOff, outList, order } = sc;
  indeg.fill(0, 0, total);
  outOff.fill(0, 0, total + 1);
  for (let x = 0; x < edges; x++) {
    outOff[sc.eSrc[x] + 1]++;
    indeg[sc.eDst[x]]++;
  }
  for (let v = 0; v < total; v++) outOff[v + 1] += outOff[v];
  const fillPos = outOff.slice(0, total);
  for (let x = 0; x < edges; x++) outList[fillPos[sc.eSrc[x]]++] = x;
  let head = 0;
  let tail = 0;
  for (let v = 0; v < total; v++) if (indeg[v] === 0) order[tail++] = v;
  const { es, ff, ef, predN, predF, bind, bindFF } = sc;
  es.fill(0, 0, total);
  ff.fill(-Infinity, 0, total);
  predN.fill(-1, 0, total);
  predF.fill(-1, 0, total);
  while (head < tail) {
    const v = order[head++];
    const viaStart = es[v] + sc.w[v];
    // On a tie the transfer is the better explanation of when a recv ended (its own span
    // is then mostly waiting for the data).
    if (predF[v] >= 0 && ff[v] >= viaStart - 1e-9) {
      ef[v] = Math.max(ff[v], viaStart);
      bind[v] = predF[v];
      bindFF[v] = 1;
    } else {
      ef[v] = viaStart;
      bind[v] = predN[v];
      bindFF[v] = 0;
    }
    for (let o = outOff[v]; o < outOff[v + 1]; o++) {
      const x = outList[o];
      const d = sc.eDst[x];
      const lag = sc.eLag[x];
      if (lag >= 0) {
        const release = es[v] + lag;
        if (release > ff[d]) {
          ff[d] = release;
          predF[d] = v;
        }
      } else if (ef[v] > es[d]) {
        es[d] = ef[v];
        predN[d] = v;
      }
      if (--indeg[d] === 0) order[tail++] = d;
    }
  }
  return tail >= total;
}

/**
 * The node the path ends at: a span finishing last. When that is a collective every
 * participant finishes together; take the one on the lane that held the collective back.
 */
function pathEnd(sc: Scratch, n: number, length: number): number {
  let end = -1;
  for (let v = 0; v < n; v++) {
    if (sc.ef[v] < length - 1e-9) continue;
    if (end < 0) end = v;
    const j = sc.join[v];
    if (j >= 0 && sc.bind[j] >= 0 && sc.lane[sc.bind[j]] === sc.lane[v]) {
      end = v;
      break;
    }
  }
  return end;
}

/** Latest finish of every node (in reverse topological order) for a path of `length`. */
function backwardPass(sc: Scratch, total: number, length: number): void {
  const { order, outOff, outList, lf } = sc;
  for (let t = total - 1; t >= 0; t--) {
    const v = order[t];
    let late = length;
    for (let o = outOff[v]; o < outOff[v + 1]; o++) {
      const x = outList[o];
      const d = sc.eDst[x];
      const lag = sc.eLag[x];
      const limit = lag >= 0 ? lf[d] - lag + sc.w[v] : lf[d] - sc.w[d];
      if (limit < late) late = limit;
    }
    lf[v] = late;
  }
}

/** Per lane: the smallest slack of its own spans (collectives only where it has nothing else). */
function laneSlacks(g: StepNodes, length: number): Float64Array {
  const { sc, n } = g;
  const nLanes = g.ix.nLanes;
  const laneSlack = new Float64Array(nLanes).fill(Infinity);
  const laneSlackAny = new Float64Array(nLanes).fill(Infinity);
  for (let v = 0; v < n; v++) {
    const slack = Math.max(0, sc.lf[v] - sc.ef[v]);
    const l = sc.lane[v];
    if (slack < laneSlackAny[l]) laneSlackAny[l] = slack;
    if (sc.role[v] !== ROLE_COLLECTIVE && slack < laneSlack[l]) laneSlack[l] = slack;
  }
  for (let l = 0; l < nLanes; l++) {
    if (laneSlack[l] === Infinity) laneSlack[l] = laneSlackAny[l] === Infinity ? length : laneSlackAny[l];
  }
  return laneSlack;
}

/**
 * Walks the binding chain back from `end`. Each node contributes the time from its binding
 * predecessor's release to its own: a send releases its recv at start + lag, other nodes at
 * their finish; join nodes contribute nothing.
 */
function bindingPath(sc: Scratch, n: number, end: number, length: number): { path: number[]; pathContribution: number[] } {
  const { bind, bindFF, ff, ef } = sc;
  const path: number[] = [];
  const pathContribution: number[] = [];
  let release = length;
  for (let v = end; v >= 0; v = bind[v]) {
    const p = bind[v];
    const from = p < 0 ? 0 : bindFF[v] ? ff[v] : ef[p];
    if (v < n) {
      path.push(v);
      pathContribution.push(release - from);
    }
    release = from;
  }
  path.reverse();
  pathContribution.reverse();
  return { path, pathContribution };
}

/** Critical path of every measured step, lane slack and each lane's share of the path. */
export function analyseCriticalPath(ix: SpanIndex): CriticalPathAnalysis {
  const { nLanes, nSteps, stepUs, trace } = ix;
  const sc = new Scratch();
  const lengthUs = new Array<number>(nSteps).fill(0);
  const slackByLane = Array.from({ length: nLanes }, () => new Float64Array(nSteps));
  const critical = new Float64Array(nLanes);
  let criticalTotal = 0;
  let cyclicSteps = 0;
  const med = nSteps > 0 ? median(stepUs) : 0;
  let repPos = -1;
  for (let p = 0; p < nSteps; p++) if (repPos < 0 || Math.abs(stepUs[p] - med) < Math.abs(stepUs[repPos] - med)) repPos = p;
  let representative: CriticalPathStep | null = null;
  const s = trace.spans;
  for (let p = 0; p < nSteps; p++) {
    const r = solveStep(ix, p, sc);
    if (!r) {
      for (let l = 0; l < nLanes; l++) slackByLane[l][p] = stepUs[p];
      continue;
    }
    lengthUs[p] = r.lengthUs;
    if (r.cyclic) cyclicSteps++;
    for (let l = 0; l < nLanes; l++) slackByLane[l][p] = r.laneSlack[l];
    r.path.forEach((i, j) => {
      critical[s.lane[i]] += r.pathContribution[j];
      criticalTotal += r.pathContribution[j];
    });
    if (p === repPos) {
      representative = {
        step: trace.steps[p].index,
        lengthUs: r.lengthUs,
        stepUs: stepUs[p],
        spans: r.path,
        laneSlackUs: Array.from(r.laneSlack),
      };
    }
  }
  return {
    lengthUs,
    laneSlackUs: slackByLane.map((xs) => (nSteps > 0 ? median(xs) : 0)),
    laneCriticalShare: Array.from(critical, (c) => (criticalTotal > 0 ? c / criticalTotal : 0)),
    representative,
    cyclicSteps,
  };
}
