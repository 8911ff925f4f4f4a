/**
 * How much of the machine a device got: per-thread scheduler statistics and other processes'
 * load, read from Linux's /proc. Everywhere else every sampler is `null` and callers record
 * "not measured" (−1).
 *
 *  - {@link threadSampler}: the calling thread's `/proc/thread-self/schedstat` (nanoseconds on
 *    a CPU, nanoseconds runnable but waiting on a run queue, time slices), plus any threads
 *    added with {@link ThreadSampler.addThreads} (ONNX Runtime's intra-op pool of the thread's
 *    sessions). Read it around a compute span; {@link schedDelta} gives the counters' change
 *    in µs and {@link spanCpuUs} the span's `cpu` column. One read costs a few µs (one pread
 *    of an open descriptor per thread).
 *
 *    The kernel prints a thread's `sum_exec_runtime` as last updated by the scheduler — at a
 *    tick or a context switch — so the counter of a thread that is running when it is read
 *    lags by up to one tick (4 ms at HZ=250): a millisecond-scale span read that way gets
 *    0 or 4 ms of CPU. Run-queue wait is added when a thread is switched in, so the calling
 *    thread's wait is exact (it is running at both reads). A span the calling thread computes
 *    alone and without blocking (a one-thread ONNX Runtime session runs inline) therefore
 *    gets its CPU time exactly as wall time minus that wait. Bringing the counter up to date
 *    instead, with getrusage(RUSAGE_SELF) (`process.cpuUsage()`), was measured at 0.25–0.6 ms
 *    a call on average, with millisecond tails, once two device threads of the process called
 *    it (under 10 µs with one): most of what span capture cost a sub-millisecond step. Added
 *    threads that are running at a read keep the tick lag, which averages out over many
 *    spans but not within one.
 *  - {@link sessionThreadWatch}: finds the intra-op threads a session creates (see there for
 *    when it cannot tell and falls back to the worker thread alone).
 *  - {@link loadSampler}: other processes' average load over a window, in cores: busy jiffies
 *    of /proc/stat minus this process's utime+stime (/proc/self/stat), as a share of all
 *    jiffies, times the cores. Resolution is the kernel tick (10 ms), so windows shorter than
 *    ~0.2 s are coarse.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import * as os from 'node:os';

/** Cumulative scheduler counters of one or more threads. */
export interface SchedSample {
  /** Nanoseconds on a CPU. */
  cpuNs: number;
  /** Nanoseconds runnable but waiting for a CPU. */
  waitNs: number;
  /** Time slices (times scheduled in). */
  slices: number;
}

/** A span's share of the machine, µs; −1 where not measured (the span columns' convention). */
export interface SchedDelta {
  cpuUs: number;
  waitUs: number;
}

const NOT_MEASURED: SchedDelta = Object.freeze({ cpuUs: -1, waitUs: -1 });

/** Parses the three numbers of a schedstat file; null when it is not one. */
export function parseSchedstat(text: string): SchedSample | null {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length < 3 || !f.slice(0, 3).every(Number.isFinite)) return null;
  return { cpuNs: f[0], waitNs: f[1], slices: f[2] };
}

/** `b − a` in µs, or −1/−1 when either sample is missing or the counters went backwards. */
export function schedDelta(a: SchedSample | null | undefined, b: SchedSample | null | undefined): SchedDelta {
  if (!a || !b) return NOT_MEASURED;
  const cpu = (b.cpuNs - a.cpuNs) / 1000;
  const wait = (b.waitNs - a.waitNs) / 1000;
  if (!(cpu >= 0) || !(wait >= 0)) return NOT_MEASURED;
  return { cpuUs: cpu, waitUs: wait };
}

/**
 * A compute span's `cpu` column, µs: for a sampler of the calling thread alone, the span's
 * wall time minus its run-queue wait (exact for a thread that computes without blocking; see
 * the module comment); with added threads, the counters' change less `probeUs` (what an empty
 * pair of reads costs). −1 when not measured.
 */
export function spanCpuUs(wallUs: number, d: SchedDelta, threads: number, probeUs = 0): number {
  if (d.cpuUs < 0 || d.waitUs < 0) return -1;
  if (threads === 1) return Math.max(0, wallUs - d.waitUs);
  return Math.max(0, d.cpuUs - probeUs);
}

/** Scheduler counters of the calling thread and the threads added to it. */
export interface ThreadSampler {
  /** Sum of the counters of every sampled thread now; null if a read failed. */
  read(): SchedSample | null;
  /**
   * Adds threads of this process (tids, e.g. from {@link sessionThreadWatch}) to every later
   * read. A thread that has exited stops counting (its counters are gone), so compare only
   * reads taken with the same set of threads.
   */
  addThreads(tids: readonly number[]): void;
  /** Number of threads sampled (1 + added). */
  readonly threads: number;
  /** Closes the descriptors; later reads return null. */
  close(): void;
}

const isLinux = process.platform === 'linux';

class FdSampler implements ThreadSampler {
  private fds: number[];
  private readonly tids = new Set<number>();
  private readonly buf = Buffer.alloc(128);

  constructor(fd: number) {
    this.fds = [fd];
  }

  get threads(): number {
    return this.fds.length;
  }

  addThreads(tids: readonly number[]): void {
    for (const tid of tids) {
      if (this.tids.has(tid) || !Number.isInteger(tid) || tid <= 0) continue;
      try {
        this.fds.push(openSync(`/proc/self/task/${tid}/schedstat`, 'r'));
        this.tids.add(tid);
      } catch {
        // The thread has exited (or is not ours): nothing to add.
      }
    }
  }

  read(): SchedSample | null {
    if (this.fds.length === 0) return null;
    let cpuNs = 0;
    let waitNs = 0;
    let slices = 0;
    for (const fd of this.fds) {
      let s: SchedSample | null = null;
      try {
        // A pread at offset 0 regenerates the file, so one descriptor serves every read.
        const n = readSync(fd, this.buf, 0, this.buf.length, 0);
        s = parseSchedstat(this.buf.toString('latin1', 0, n));
      } catch {
        s = null;
      }
      if (!s) return null;
      cpuNs += s.cpuNs;
      waitNs += s.waitNs;
      slices += s.slices;
    }
    return { cpuNs, waitNs, slices };
  }

  close(): void {
    for (const fd of this.fds) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    this.fds = [];
  }
}

/**
 * A sampler of the calling thread (the descriptor is bound to the thread that opens it, so
 * create it inside the device worker). Null where /proc/thread-self/schedstat is unavailable
 * (not Linux, or a kernel without schedstats).
 */
export function threadSampler(): ThreadSampler | null {
  if (!isLinux) return null;
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return null;
  }
  const s = new FdSampler(fd);
  if (!s.read()) {
    s.close();
    return null;
  }
  return s;
}

/** The calling thread's id (tid), or null off Linux. */
export function currentTid(): number | null {
  if (!isLinux) return null;
  try {
    return Number(readFileSync('/proc/thread-self/stat', 'latin1').split(' ', 1)[0]) || null;
  } catch {
    return null;
  }
}

/** Thread ids of this process now; empty off Linux. */
export function processThreads(): number[] {
  if (!isLinux) return [];
  try {
    return readdirSync('/proc/self/task').map(Number).filter((t) => t > 0);
  } catch {
    return [];
  }
}

/** What {@link SessionThreadWatch.end} found. */
export interface SessionThreads {
  /** The session's intra-op threads; empty when they could not be told apart. */
  tids: number[];
  /** `exact`: the new threads are exactly the pool; `none`: no pool to find (1 thread); `ambiguous`: other threads started meanwhile, so none are used. */
  attribution: 'exact' | 'none' | 'ambiguous' | 'unavailable';
  /** Threads that appeared during the creation. */
  appeared: number;
}

export interface SessionThreadWatch {
  /** Call after the session was created, with the session's `intraOpNumThreads`. */
  end(intraOpNumThreads: number): SessionThreads;
}

/**
 * Finds the intra-op thread pool of a session created between `sessionThreadWatch()` and
 * `.end(n)`. ONNX Runtime does not name its threads (they keep the process's `comm`,
 * `node`), so the watch lists /proc/self/task before and after: a pool of n intra-op
 * threads adds n − 1 threads (the calling thread is the n-th). Other threads may appear in
 * the same window — another worker creating its session concurrently, or the one-off thread
 * ONNX Runtime starts with its environment on first use in the process — and cannot be told
 * apart from the pool, so unless exactly n − 1 threads appeared the result is `ambiguous`,
 * with no tids: the device is then measured on its worker thread only, which undercounts the
 * CPU its pool got but never counts another device's.
 */
export function sessionThreadWatch(): SessionThreadWatch {
  const before = isLinux ? new Set(processThreads()) : null;
  return {
    end(n: number): SessionThreads {
      if (!before) return { tids: [], attribution: 'unavailable', appeared: 0 };
      const added = processThreads().filter((t) => !before.has(t));
      const want = Math.max(0, Math.floor(n) - 1);
      if (want === 0) return { tids: [], attribution: 'none', appeared: added.length };
      if (added.length === want) return { tids: added, attribution: 'exact', appeared: added.length };
      return { tids: [], attribution: 'ambiguous', appeared: added.length };
    },
  };
}

/** Counters of the whole machine and of this process, in jiffies. */
export interface LoadSample {
  /** Busy jiffies of all CPUs (user, nice, system, irq, softirq, steal). */
  busy: number;
  /** Of those, user time of processes with a positive nice value. */
  nice: number;
  /** Of those, steal: time the hypervisor ran something else while a virtual CPU was ready (0 on bare metal; absent in older samples). */
  steal?: number;
  /** Whether niced processes yield to this run (no session autogroups); false when unknown. */
  nicedYields?: boolean;
  /** This process's nice value when sampled. */
  selfNice?: number;
  /** All jiffies of all CPUs, idle included. */
  total: number;
  /** This process's utime + stime. */
  self: number;
  /** CPUs listed in /proc/stat. */
  cores: number;
  /** Wall clock, ms. */
  atMs: number;
}

/** Parses /proc/stat's aggregate `cpu` line and counts the per-CPU lines. */
export function parseProcStat(text: string): { busy: number; nice: number; steal: number; total: number; cores: number } | null {
  const lines = text.split('\n');
  const agg = lines.find((l) => /^cpu\s/.test(l));
  if (!agg) return null;
  const f = agg.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || !f.every(Number.isFinite)) return null;
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
  // counted in user and nice.
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, nice, steal, total: busy + idle + iowait, cores: lines.filter((l) => /^cpu\d+\s/.test(l)).length };
}

/** utime + stime of a /proc/<pid>/stat line (fields 14 and 15; the name may hold spaces). */
export function parseSelfCpuTicks(text: string): number | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state), so fields 14 and 15 are rest[11] and rest[12].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : null;
}

let niceValue: number | null = null;
/** This process's nice value (0 where it cannot be read). */
function ownNice(): number {
  if (niceValue === null) {
    try {
      niceValue = (os.getPriority() as number) | 0;
    } catch {
      niceValue = 0;
    }
  }
  return niceValue;
}

/** True when the kernel schedules by session autogroup (or when that cannot be read). */
function autogroups(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'latin1').trim() !== '0';
  } catch {
    // No such file: a kernel without autogroup support, where nice applies machine-wide.
    return false;
  }
}

function loadSample(): LoadSample | null {
  try {
    const st = parseProcStat(readFileSync('/proc/stat', 'latin1'));
    const self = parseSelfCpuTicks(readFileSync('/proc/self/stat', 'latin1'));
    if (!st || self === null) return null;
    return { ...st, self, atMs: Date.now(), nicedYields: !autogroups(), selfNice: ownNice() };
  } catch {
    return null;
  }
}

/** Other processes' load over a window. */
export interface OtherLoad {
  /** Average cores busy with other processes' work, niced processes included. */
  otherLoadCores: number;
  /**
   * Of that, the cores busy with niced processes' user time (nice > 0), when they yield to
   * this run: the scheduler gives them a small weight against its threads (nice 19: 15
   * against 1024), so they are reported but judged through the run's own run-queue wait.
   * 0 when the kernel groups processes by session (`sched_autogroup_enabled`): nice then
   * orders threads within a session only, and a niced process elsewhere competes in full;
   * 0 too when this process is itself niced.
   */
  nicedLoadCores: number;
  /** Average cores this process used. */
  selfLoadCores: number;
  /**
   * Of `otherLoadCores`, the cores' worth of time the hypervisor gave this virtual machine's
   * CPUs to others while they were ready to run (/proc/stat steal): the host's load, not a
   * process of this machine. 0 on bare metal.
   */
  stealCores: number;
  /** CPUs of the machine. */
  cores: number;
  /** Length of the window, ms. */
  windowMs: number;
}

/** Other processes' load between two samples; null when the window is empty. */
export function otherLoad(a: LoadSample, b: LoadSample): OtherLoad | null {
  const total = b.total - a.total;
  if (!(total > 0) || !(b.cores > 0)) return null;
  const busy = b.busy - a.busy;
  const self = b.self - a.self;
  const share = (x: number): number => Math.min(b.cores, Math.max(0, (x / total) * b.cores));
  const other = share(busy - self);
  // Only a process running at nice 0 or below can tell: /proc/stat's `nice` counts every
  // process with a positive nice value, and a run that is itself niced competes with them
  // on equal terms (its own time would be in that column too).
  const niced = b.nicedYields && (b.selfNice ?? 0) <= 0 ? Math.min(other, share(b.nice - a.nice)) : 0;
  const steal = Math.min(other, share((b.steal ?? 0) - (a.steal ?? 0)));
  return { otherLoadCores: other, nicedLoadCores: niced, selfLoadCores: share(self), stealCores: steal, cores: b.cores, windowMs: b.atMs - a.atMs };
}

export interface LoadSampler {
  /** Starts (or restarts) the window. */
  start(): void;
  /** Ends the window; null when it could not be measured. */
  stop(): OtherLoad | null;
}

/**
 * Samples other processes' load over a window (the measured steps): `start()` before,
 * `stop()` after. Null off Linux or when /proc/stat cannot be read.
 */
export function loadSampler(): LoadSampler | null {
  if (!isLinux || !loadSample()) return null;
  let first: LoadSample | null = null;
  return {
    start() {
      first = loadSample();
    },
    stop() {
      const last = loadSample();
      const a = first;
      first = null;
      return a && last ? otherLoad(a, last) : null;
    },
  };
}

/**
 * Minor page faults of the calling thread so far (`/proc/thread-self/stat`, field 10), or
 * null off Linux or when it cannot be read. A fault is memory touched for the first time:
 * about 12 µs each on a virtual machine.
 */
export function threadMinorFaults(): number | null {
  if (!isLinux) return null;
  try {
    const text = readFileSync('/proc/thread-self/stat', 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces; fields follow its ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const v = Number(f[7]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}
