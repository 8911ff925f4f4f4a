/**
 * The discrete-event simulator: runs a {@link Program} on a {@link CostModel} and writes the
 * trace the run would produce, in the native format, every span flagged predicted.
 *
 * Semantics mirror the runtime's interpreter:
 *  - every step starts on all devices at once (the runtime has a barrier at each step start)
 *    and ends when the last device finishes its last instruction;
 *  - each device executes its instruction list in order;
 *  - `run`, `scatter`, `gather` keep the device busy for their cost;
 *  - `send` keeps the sender busy for α + bytes/β (it copies into a shared-memory channel), a
 *    FIFO per (sender, receiver). Without `costs.channel` channels are unbounded and a send
 *    never waits: the data is available to the receiver when the send ends. With it (the
 *    runtime's channels have a few slots; a message takes ⌈bytes / slot⌉ of them, at least
 *    one), a send starts only once the messages still in the channel leave enough slots, i.e.
 *    when the receiver has drained them; a message larger than the whole channel streams
 *    through it, so the sender finishes no earlier than the receiver has taken all but the
 *    channel's worth. The wait is no span: it comes out as backpressure idle before the send,
 *    as the runtime records it;
 *  - `recv` completes at max(when the receiver reaches it, when the data arrived). Its span
 *    starts then and lasts the copy out of the channel (`costs.recv`): the transfer itself is
 *    charged on the send, because the runtime's receiver drains the channel while the sender
 *    fills it. The wait before the recv is no span at all, so it comes out as idle (a bubble)
 *    from deriveIdle, as in measured traces, where the recv span starts at the data's arrival;
 *  - `collective` starts when every member of its group has reached it, lasts its ring
 *    cost, and gives every member a span.
 * With a topology in the cost model (a machine of several nodes, see hardware.ts), sends use
 * the intra- or inter-node link between their ranks and collectives the two-level cost.
 * A program whose sends and receives (or collectives) cannot all complete throws a
 * {@link DeadlockError} naming each blocked rank and instruction.
 */
import { deriveIdle } from '../idle';
import { activationSpanLabel, formatInstruction, type DeviceProgram, type Instruction, type Program } from '../program';
import { SpanFlag, TraceBuilder, type Lane, type StepWindow, type Trace, type TraceMeta } from '../trace-format';
import {
  bytesKey,
  collectiveUs,
  computeCostOf,
  linkUs,
  runUs,
  type CostModel,
} from './costs';
import { hierarchicalCollectiveUs, linkBetween } from './hardware';

/** Options of {@link simulate}. */
export interface SimulateOptions {
  /** Steps to run. */
  steps: number;
  /** Metadata template (a measured trace's, or a synthetic one); it must list a device per rank. */
  meta: TraceMeta;
  /** Lanes, one per rank; by default one per device of `meta`, in order. */
  lanes?: Lane[];
}

/** The program cannot complete: some rank waits for a message or a peer that never comes. */
export class DeadlockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeadlockError';
  }
}

interface Message {
  arrive: number;
  micro: number;
  bytes: number;
  /** Index of the send instruction, for error messages. */
  index: number;
  /** Channel slots it takes (see {@link slotsOf}); 0 on unbounded channels. */
  slots: number;
  /** When the receiver had copied it out of the channel (set by the recv). */
  drained?: number;
  /** A message larger than its channel: it streams while the receiver drains it. */
  streaming?: { start: number; dur: number; alphaUs: number; bytesPerUs: number; done?: number };
}

/** What passed through one channel this step, in order: what is still in it is undrained. */
interface Channel {
  queue: Message[];
  history: Message[];
}

interface Context {
  program: Program;
  costs: CostModel;
  /** Device program per rank. */
  devices: DeviceProgram[];
  kinds: (TraceMeta['devices'][number]['kind'] | undefined)[];
  builder: TraceBuilder;
}

interface StepState {
  step: number;
  pc: Int32Array;
  clock: Float64Array;
  /** Messages in flight, key `from>to`. */
  channels: Map<string, Channel>;
  /** A rank's send of a message larger than its channel, waiting for the receiver. */
  streaming: Map<number, Message>;
  /** Collective instances: arrival time per rank, and the start once everyone arrived. */
  arrivals: Map<string, Map<number, number>>;
  started: Map<string, number>;
  /** When each rank's communication thread is free (started collectives queue on it). */
  commFree: Float64Array;
  /** End of each started collective by `rank|buffer`, once every member has started it. */
  startedDone: Map<string, number>;
  /** What each collective instance does (`op buffer`), so members that disagree are caught. */
  what: Map<string, string>;
  /** Collectives over a group a rank has completed this step, key `rank|group`. */
  collectivesDone: Map<string, number>;
}

/**
 * Simulates `opts.steps` steps of `program` on `costs`. Returns a trace with
 * `meta.source = 'predicted'`, `meta.program = program`, step windows, and idle spans derived
 * as for measured traces.
 */
export function simulate(program: Program, costs: CostModel, opts: SimulateOptions): Trace {
  const n = program.devices.length;
  const devices: DeviceProgram[] = [];
  for (const d of program.devices) {
    if (d.rank >= n || devices[d.rank] !== undefined) throw new Error(`program devices must have ranks 0..${n - 1}, each once (rank ${d.rank})`);
    devices[d.rank] = d;
  }
  const lanes = opts.lanes ?? opts.meta.devices.slice(0, n).map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit }));
  if (lanes.length < n) throw new Error(`the program has ${n} ranks but the trace metadata has ${lanes.length} lanes`);
  const kinds = lanes.slice(0, n).map((l) => opts.meta.devices[l.device]?.kind);
  const ctx: Context = { program, costs, devices, kinds, builder: new TraceBuilder() };
  const steps: StepWindow[] = [];
  let t0 = 0;
  for (let step = 0; step < opts.steps; step++) {
    const end = runStep(ctx, step, t0);
    steps.push({ index: step, startUs: t0, endUs: end });
    t0 = end;
  }
  // The mode and plan stay the template's (a trace's mode always agrees with its plan).
  const meta: TraceMeta = { ...opts.meta, source: 'predicted', program };
  const spans = ctx.builder.finish();
  const withIdle = deriveIdle({ meta, strings: ctx.builder.strings, lanes, steps, spans });
  // deriveIdle does not know the trace is a prediction; its idle spans are one too.
  const f = withIdle.spans.flags;
  for (let i = 0; i < withIdle.spans.count; i++) f[i] = (f[i] ?? 0) | SpanFlag.predicted;
  return withIdle;
}

/** Runs one step from `t0` on every device; returns its end. */
function runStep(ctx: Context, step: number, t0: number): number {
  const n = ctx.devices.length;
  const st: StepState = {
    step,
    pc: new Int32Array(n),
    clock: new Float64Array(n).fill(t0),
    channels: new Map(),
    streaming: new Map(),
    arrivals: new Map(),
    started: new Map(),
    what: new Map(),
    collectivesDone: new Map(),
    commFree: new Float64Array(n).fill(t0),
    startedDone: new Map(),
  };
  // Advance every device as far as it can go; repeat until nothing moves. Each pass either
  // completes an instruction somewhere or proves that nothing ever will (a deadlock).
  let moved = true;
  while (moved) {
    moved = false;
    for (let r = 0; r < n; r++) {
      const list = ctx.devices[r]!.instructions;
      while (st.pc[r]! < list.length && execute(ctx, st, r, list[st.pc[r]!]!, st.pc[r]!)) {
        st.pc[r] = st.pc[r]! + 1;
        moved = true;
      }
    }
  }
  const blocked = ctx.devices.filter((d) => st.pc[d.rank]! < d.instructions.length);
  if (blocked.length > 0) throw new DeadlockError(deadlockMessage(ctx, st, blocked));
  for (const [key, { queue }] of st.channels) {
    const m = queue[0];
    if (m) {
      const [from, to] = key.split('>');
      throw new DeadlockError(
        `step ${step}: rank ${from} sends to rank ${to} (instruction ${m.index}) but rank ${to} never receives it; the message would stay in the channel`,
      );
    }
  }
  let end = t0;
  for (const c of st.clock) end = Math.max(end, c);
  return end;
}

function deadlockMessage(ctx: Context, st: StepState, blocked: DeviceProgram[]): string {
  const lines = blocked.map((d) => {
    const pc = st.pc[d.rank]!;
    const ins = d.instructions[pc]!;
    const why =
      ins.op === 'recv'
        ? `waits for a message from rank ${ins.from}`
        : ins.op === 'collective'
          ? `waits for ranks ${ins.group.filter((g) => !(st.arrivals.get(collectiveKey(st, d.rank, ins))?.has(g) ?? false)).join(', ')} to join`
          : ins.op === 'collective-wait'
            ? `waits for collectives on ${ins.buffers.filter((b) => !st.startedDone.has(`${d.rank}|${b}`)).join(', ')} that not every member started`
            : ins.op === 'send'
              ? `waits for rank ${ins.to} to drain the channel (it never receives)`
              : 'cannot proceed';
    return `rank ${d.rank} at instruction ${pc} (${formatInstruction(ins, ctx.program.segments).replace(/\s+/g, ' ')}) ${why}`;
  });
  return `deadlock in step ${st.step}: ${lines.join('; ')}`;
}

/** Bytes an instruction moves: its own estimate, else what was measured for it, else 0. */
function bytesOf(ctx: Context, rank: number, index: number, ins: Extract<Instruction, { bytes: number }>): number {
  if (ins.bytes > 0) return ins.bytes;
  const m = ctx.costs.bytes?.[bytesKey(rank, index)];
  const micro = 'micro' in ins ? ins.micro : -1;
  return m && m.op === ins.op && m.micro === micro ? m.bytes : 0;
}

function collectiveKey(st: StepState, rank: number, ins: Extract<Instruction, { op: 'collective' | 'collective-start' }>): string {
  const group = [...ins.group].sort((a, b) => a - b).join(',');
  return `${group}#${st.collectivesDone.get(`${rank}|${group}`) ?? 0}`;
}

/**
 * Executes instruction `index` of rank `r` if it can complete now; returns false when it
 * must wait (a recv without its message, a collective without all its members).
 */
function execute(ctx: Context, st: StepState, r: number, ins: Instruction, index: number): boolean {
  const b = ctx.builder;
  const stage = ctx.devices[r]!.stage;
  const base = { lane: r, step: st.step, stage, flags: SpanFlag.predicted };
  // The host's own time before each instruction (measured gaps between a device's spans).
  const t = st.clock[r]! + (ctx.costs.hostUs?.[String(r)] ?? 0);
  const transfers = ctx.costs.transfers;
  switch (ins.op) {
    case 'run': {
      const seg = ctx.program.segments.find((x) => x.id === ins.segment);
      if (!seg) throw new Error(`rank ${r} instruction ${index}: runs segment ${ins.segment}, which the program does not define`);
      const cost = computeCostOf(ctx.costs, r, ctx.kinds[r], seg, ins.phase);
      const dur = runUs(cost, ins.rows, ctx.costs.interference?.[String(r)] ?? 1);
      b.push({ ...base, kind: 'compute', name: 'session.run', start: t, dur, micro: ins.micro, phase: ins.phase });
      st.clock[r] = t + dur;
      return true;
    }
    case 'scatter':
    case 'gather': {
      const bytes = bytesOf(ctx, r, index, ins);
      const dur = linkUs(bytes, transfers.copy);
      b.push({ ...base, kind: 'comm', name: ins.op, start: t, dur, micro: ins.micro, bytes, comm: ins.op });
      st.clock[r] = t + dur;
      return true;
    }
    case 'send': {
      if (ins.to === r || ctx.devices[ins.to] === undefined) throw new Error(`rank ${r} instruction ${index}: send to invalid rank ${ins.to}`);
      const bytes = bytesOf(ctx, r, index, ins);
      const topo = ctx.costs.topology;
      const link = topo ? linkBetween(r, ins.to, topo) : transfers.p2p;
      const dur = linkUs(bytes, link);
      const key = `${r}>${ins.to}`;
      let ch = st.channels.get(key);
      if (!ch) st.channels.set(key, (ch = { queue: [], history: [] }));
      const waiting = st.streaming.get(r);
      if (waiting) {
        // A message larger than the channel: done once the receiver has drained it.
        const done = waiting.streaming!.done;
        if (done === undefined) return false;
        st.streaming.delete(r);
        b.push({ ...base, kind: 'comm', name: 'send', start: done - dur, dur, micro: ins.micro, bytes, peer: ins.to, comm: 'send' });
        st.clock[r] = done;
        return true;
      }
      const channel = ctx.costs.channel;
      const slots = channel ? slotsOf(bytes, ins.tensors.length, channel) : 0;
      const start = roomAt(ch, t, slots, channel?.slots);
      if (start === null) return false;
      const m: Message = { arrive: start + dur, micro: ins.micro, bytes, index, slots };
      ch.queue.push(m);
      ch.history.push(m);
      if (channel && slots > channel.slots) {
        m.streaming = { start, dur, alphaUs: link.alphaUs, bytesPerUs: link.bytesPerUs };
        st.streaming.set(r, m);
        return false;
      }
      b.push({ ...base, kind: 'comm', name: 'send', start, dur, micro: ins.micro, bytes, peer: ins.to, comm: 'send' });
      st.clock[r] = start + dur;
      return true;
    }
    case 'recv': {
      if (ins.from === r || ctx.devices[ins.from] === undefined) throw new Error(`rank ${r} instruction ${index}: recv from invalid rank ${ins.from}`);
      const m = st.channels.get(`${ins.from}>${r}`)?.queue.shift();
      if (m === undefined) return false;
      if (m.micro !== ins.micro) {
        throw new DeadlockError(
          `step ${st.step}: rank ${r} instruction ${index} receives micro-batch ${ins.micro} from rank ${ins.from}, but the next message in that channel is micro-batch ${m.micro} (rank ${ins.from} instruction ${m.index}): sends and receives are mis-ordered`,
        );
      }
      const copy = ctx.costs.recv ? linkUs(m.bytes, ctx.costs.recv) : 0;
      const s = m.streaming;
      if (s) {
        // The sender fills the channel while this rank drains it: the last bytes go in once
        // all but a channel's worth have come out.
        const start = Math.max(t, s.start);
        const { slots, slotBytes } = ctx.costs.channel!;
        const rest = m.bytes - slots * slotBytes;
        s.done = Math.max(s.start + s.dur, start + s.alphaUs + rest / s.bytesPerUs);
        const end = Math.max(s.done, start + copy);
        b.push({ ...base, kind: 'comm', name: 'recv', start, dur: end - start, micro: ins.micro, bytes: m.bytes, peer: ins.from, comm: 'recv' });
        m.drained = end;
        st.clock[r] = end;
        return true;
      }
      const start = Math.max(t, m.arrive);
      b.push({ ...base, kind: 'comm', name: 'recv', start, dur: copy, micro: ins.micro, bytes: m.bytes, peer: ins.from, comm: 'recv' });
      m.drained = start + copy;
      st.clock[r] = start + copy;
      return true;
    }
    case 'collective':
      // Local SGD's parameter average runs in every `every`-th step only (counted from 1 here;
      // a real run counts its warm-up updates too).
      if (ins.every !== undefined && (st.step + 1) % ins.every !== 0) return true;
      return collective(ctx, st, r, ins, index);
    case 'collective-start':
      startCollective(ctx, st, r, ins, index);
      return true;
    case 'collective-wait': {
      const ends = ins.buffers.map((buf) => st.startedDone.get(`${r}|${buf}`));
      if (ends.some((e) => e === undefined)) return false;
      st.clock[r] = Math.max(st.clock[r]!, ...(ends as number[]));
      return true;
    }
    default: {
      const never: never = ins;
      throw new Error(`unknown instruction ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Slots a send takes: each of its tensors is its own message of whole slots, at least one;
 * with only the total known, ⌈bytes / slot⌉ and at least one per tensor.
 */
function slotsOf(bytes: number, tensors: number, channel: { slotBytes: number }): number {
  return Math.max(tensors, 1, Math.ceil(bytes / channel.slotBytes));
}

/**
 * When a send needing `need` slots, reaching its channel at `t`, can start: at `t` if what is
 * still in the channel then leaves enough slots (always, without a bound), else once the
 * receiver has drained enough; `null` while that depends on receives not yet simulated. A
 * message larger than the channel needs it empty.
 */
function roomAt(ch: Channel, t: number, need: number, slots: number | undefined): number | null {
  if (slots === undefined) return t;
  const want = Math.min(need, slots);
  // Messages still in the channel at t (sent before, drained after or not yet).
  const held = ch.history.filter((m) => m.drained === undefined || m.drained > t);
  let used = held.reduce((s, m) => s + m.slots, 0);
  if (used + want <= slots) return t;
  if (held.some((m) => m.drained === undefined)) return null;
  // Every held message has a drain time: slots free up as they leave, in that order.
  for (const m of held.sort((x, y) => x.drained! - y.drained!)) {
    used -= m.slots;
    if (used + want <= slots) return m.drained!;
  }
  return t;
}

/**
 * A started collective: rank `r` registers and goes on. Once every member has started it, it
 * runs on the members' communication threads as soon as all of them are free (they run their
 * collectives one at a time, in order), overlapping whatever the ranks compute meanwhile.
 */
function startCollective(ctx: Context, st: StepState, r: number, ins: Extract<Instruction, { op: 'collective-start' }>, index: number): void {
  for (const g of ins.group) if (ctx.devices[g] === undefined) throw new Error(`rank ${r} instruction ${index}: collective over unknown rank ${g}`);
  if (!ins.group.includes(r)) throw new Error(`rank ${r} instruction ${index}: collective over [${ins.group.join(', ')}] does not include the rank`);
  const key = collectiveKey(st, r, ins);
  const what = `${ins.collective} ${ins.buffer}`;
  const first = st.what.get(key);
  if (first === undefined) st.what.set(key, what);
  else if (first !== what) throw new DeadlockError(`step ${st.step}: rank ${r} instruction ${index} starts ${what} but its group is in ${first}: collectives are mis-ordered`);
  const group = key.slice(0, key.indexOf('#'));
  st.collectivesDone.set(`${r}|${group}`, (st.collectivesDone.get(`${r}|${group}`) ?? 0) + 1);
  let arrived = st.arrivals.get(key);
  if (!arrived) st.arrivals.set(key, (arrived = new Map()));
  arrived.set(r, st.clock[r]!);
  if (!ins.group.every((g) => arrived.has(g))) return;
  const start = Math.max(...ins.group.map((g) => Math.max(arrived.get(g)!, st.commFree[g]!)));
  const bytes = bytesOf(ctx, r, index, ins);
  const dur = collectiveDurUs(ctx, ins.collective, bytes, ins.group.length);
  const gradient = ctx.program.buffers.find((b) => b.name === ins.buffer)?.gradients ? SpanFlag.gradient : 0;
  for (const g of ins.group) {
    ctx.builder.push({ lane: g, step: st.step, stage: ctx.devices[g]!.stage, flags: SpanFlag.predicted | gradient, kind: 'comm', name: `${ins.collective}.ring`, start, dur, bytes, comm: ins.collective });
    st.commFree[g] = start + dur;
    st.startedDone.set(`${g}|${ins.buffer}`, start + dur);
  }
}

/** A collective's duration: the two-level cost on a multi-node topology, else the ring on the collective link. */
function collectiveDurUs(ctx: Context, op: Extract<Instruction, { op: 'collective' }>['collective'], bytes: number, n: number): number {
  const topo = ctx.costs.topology;
  return topo ? hierarchicalCollectiveUs(op, bytes, n, topo) : collectiveUs(op, bytes, n, ctx.costs.transfers.collective);
}

/** A collective: registers rank `r`'s arrival; completes once every member has arrived. */
function collective(ctx: Context, st: StepState, r: number, ins: Extract<Instruction, { op: 'collective' }>, index: number): boolean {
  if (!ins.group.includes(r)) throw new Error(`rank ${r} instruction ${index}: collective over [${ins.group.join(', ')}] does not include the rank`);
  for (const g of ins.group) if (ctx.devices[g] === undefined) throw new Error(`rank ${r} instruction ${index}: collective over unknown rank ${g}`);
  const key = collectiveKey(st, r, ins);
  const what = `${ins.collective} ${ins.buffer}`;
  const first = st.what.get(key);
  if (first === undefined) st.what.set(key, what);
  else if (first !== what) {
    throw new DeadlockError(`step ${st.step}: rank ${r} instruction ${index} is ${what} but its group is in ${first}: collectives are mis-ordered`);
  }
  let arrived = st.arrivals.get(key);
  if (!arrived) st.arrivals.set(key, (arrived = new Map()));
  if (!arrived.has(r)) arrived.set(r, st.clock[r]!);
  if (!ins.group.every((g) => arrived.has(g))) return false;
  let start = st.started.get(key);
  if (start === undefined) {
    start = Math.max(...ins.group.map((g) => arrived.get(g)!));
    st.started.set(key, start);
  }
  const bytes = bytesOf(ctx, r, index, ins);
  const dur = collectiveDurUs(ctx, ins.collective, bytes, ins.group.length);
  const buffer = ctx.program.buffers.find((b) => b.name === ins.buffer);
  ctx.builder.push({
    lane: r,
    step: st.step,
    stage: ctx.devices[r]!.stage,
    // A gradient bucket's all-reduce is marked as such, as the interpreter marks it.
    flags: SpanFlag.predicted | (buffer?.gradients ? SpanFlag.gradient : 0),
    kind: 'comm',
    // An activation's all-reduce names its layer, as the interpreter names it.
    name: buffer?.activation ? `${ins.collective}.ring (${activationSpanLabel(buffer.activation)})` : `${ins.collective}.ring`,
    ...(buffer?.activation?.phase ? { phase: buffer.activation.phase } : {}),
    start,
    dur,
    bytes,
    comm: ins.collective,
  });
  st.clock[r] = start + dur;
  const group = key.slice(0, key.indexOf('#'));
  st.collectivesDone.set(`${r}|${group}`, (st.collectivesDone.get(`${r}|${group}`) ?? 0) + 1);
  return true;
}
