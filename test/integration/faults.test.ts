/**
 * Faults around the runner process, through the real CLI:
 *  - the CLI killed with SIGKILL while the runner is inside a long `session.run`: the
 *    runner notices (its watchdog thread sees a new parent pid) and is gone within seconds;
 *  - no file left in $TMPDIR after normal, cancelled (SIGINT), killed and crashed runs:
 *    everything the runner and ONNX Runtime write (stage models, operator profiles,
 *    ONNX Runtime's `mat-debug-<pid>.log`) lands in the runner's private temp folder.
 *
 * Each case runs the CLI with TMPDIR set to a fresh folder and asserts that folder ends empty.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { BIN, REPO } from '../helpers/cli';
import { unknownOpModel } from '../helpers/hostile';
import { tempDir } from '../helpers/temp';

/** How long a runner may take to notice that its parent is gone (its watchdog polls every 250 ms). */
const ORPHAN_WATCHDOG_MS = 10_000;
/** How long the runner's private temp folder may take to go after the CLI ends. */
const CLEANUP_MS = 10_000;

/** A demo model whose session.run takes seconds at the batch below on one CPU device. */
const BIG_DEMO = { layers: 4, hidden: 512, ffn: 2048 } as const;
const BIG_BATCH = '8192';

/** Whether a process is alive: it exists and is not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name in parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Child processes of `pid` (from /proc, so that no extra process is started). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && alive(Number(name))) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

async function waitFor(what: string, ok: () => boolean, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

interface Started {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** CLIs started by this file, ended by its `after` hook should a test fail half-way. */
const started = new Set<ChildProcess>();
after(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Starts the CLI with `tmp` as its TMPDIR. */
function startCli(args: string[], tmp: string, cwd: string): Started {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, TMPDIR: tmp, TMP: tmp, TEMP: tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  let stderr = '';
  child.stdout!.resume();
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exited };
}

/**
 * Waits until the CLI's runner is measuring: its private temp folder holds the operator
 * profile folder, which the runner makes once the model is loaded. Returns the runner's pid.
 */
async function runnerMeasuring(cli: ChildProcess, tmp: string): Promise<number> {
  let runner = 0;
  await waitFor(
    'the runner started measuring',
    () => {
      runner = childrenOf(cli.pid!)[0] ?? 0;
      const priv = readdirSync(tmp).find((n) => n.startsWith('parallax-run-'));
      return runner > 0 && priv !== undefined && readdirSync(join(tmp, priv)).some((n) => n.startsWith('parallax-ortprof-'));
    },
    120_000,
  );
  return runner;
}

/** CPU seconds a process has used (utime + stime from /proc, in USER_HZ ticks of 1/100 s on Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5); `fields` starts at field 3 (state).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A fresh, empty folder to be the CLI's TMPDIR. */
function freshTmp(root: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  return dir;
}

describe('faults: runner processes and temp files', { timeout: 10 * 60_000 }, () => {
  const root = tempDir('faults');
  let model = '';

  before(async () => {
    if (!existsSync(join(REPO, 'dist', 'runner.js'))) throw new Error('dist/runner.js is missing: run `npm run build` first');
    model = await ensureDemoModel(join(root, 'models'), BIG_DEMO);
    writeFileSync(join(root, 'unknown-op.onnx'), unknownOpModel());
  });

  it('a normal run leaves nothing in $TMPDIR (no ONNX Runtime mat-debug log, no profile folder)', async () => {
    const tmp = freshTmp(root, 'normal');
    const small = await ensureDemoModel(join(root, 'models'), { layers: 2, hidden: 32, ffn: 64 });
    const r = startCli(['profile', small, '--devices', 'cpu:2', '--batch', '8', '--steps', '3', '--warmup', '1', '--out', join(root, 'normal.parallax.json')], tmp, root);
    const { code, stderr } = await r.exited;
    assert.equal(code, 0, stderr);
    assert.ok(existsSync(join(root, 'normal.parallax.json')), 'the trace was written');
    await waitFor('the temp folder emptied', () => readdirSync(tmp).length === 0, CLEANUP_MS).catch(() => undefined);
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('a run cancelled with SIGINT leaves no runner and nothing in $TMPDIR', async () => {
    const tmp = freshTmp(root, 'cancelled');
    const r = startCli(['profile', model, '--devices', 'cpu:1', '--batch', BIG_BATCH, '--steps', '100', '--warmup', '0', '--no-baseline', '--out', join(root, 'never-1.parallax.json')], tmp, root);
    const runner = await runnerMeasuring(r.child, tmp);
    r.child.kill('SIGINT');
    const { code } = await r.exited;
    assert.notEqual(code, 0, 'a cancelled run does not exit 0');
    await waitFor('the runner ended', () => !alive(runner), ORPHAN_WATCHDOG_MS);
    await waitFor('the temp folder emptied', () => readdirSync(tmp).length === 0, CLEANUP_MS).catch(() => undefined);
    assert.deepEqual(readdirSync(tmp), []);
    assert.equal(existsSync(join(root, 'never-1.parallax.json')), false);
  });

  it('SIGKILL of the CLI while the runner is inside a long session.run: the runner is gone within seconds and nothing is left in $TMPDIR', async (t) => {
    const tmp = freshTmp(root, 'killed');
    const r = startCli(['profile', model, '--devices', 'cpu:1', '--batch', BIG_BATCH, '--steps', '100', '--warmup', '0', '--no-baseline', '--out', join(root, 'never-2.parallax.json')], tmp, root);
    const runner = await runnerMeasuring(r.child, tmp);
    const priv = join(tmp, readdirSync(tmp).find((n) => n.startsWith('parallax-run-'))!);
    // Loading takes about two CPU seconds; each step of this model at this batch takes
    // seconds more, on all the device's threads. Past CPU_IN_RUN the device is inside a run.
    const CPU_IN_RUN = 8;
    await waitFor('the device ran steps', () => cpuSeconds(runner) >= CPU_IN_RUN, 120_000);
    // Whatever ONNX Runtime writes of its own (a mat-debug-<thread id>.log on some
    // builds and machines, not all) lands in the runner's private folder, never beside it.
    assert.deepEqual(readdirSync(tmp).filter((n) => !n.startsWith('parallax-run-')), [], 'nothing but the private folder in $TMPDIR while running');
    t.diagnostic(`private folder while running: ${readdirSync(priv).join(', ')}`);
    assert.ok(readdirSync(`/proc/${runner}/task`).length > 2, 'the runner has its device and watchdog threads');
    r.child.kill('SIGKILL');
    const { signal } = await r.exited;
    assert.equal(signal, 'SIGKILL');
    const gone = await waitFor('the orphaned runner ended', () => !alive(runner), ORPHAN_WATCHDOG_MS);
    t.diagnostic(`runner gone ${gone} ms after the CLI was killed`);
    await waitFor('the temp folder emptied', () => readdirSync(tmp).length === 0, CLEANUP_MS).catch(() => undefined);
    assert.deepEqual(readdirSync(tmp), [], 'the orphaned runner removed its private temp folder');
  });

  it("a runner whose main thread is blocked is ended by its watchdog thread when its parent is killed, and removes its private folder", async (t) => {
    const priv = join(root, 'parallax-run-blocked');
    mkdirSync(priv);
    writeFileSync(join(priv, 'leftover.onnx'), 'x');
    // parent (killed below) → blocked child; the parent prints the child's pid once it watches.
    const script = join(REPO, 'test', 'helpers', 'blocked-runner.ts');
    const parentSource = `const c = require('node:child_process').fork(${JSON.stringify(script)}, [], { execArgv: ['--import', 'tsx'] });
c.on('message', () => console.log(c.pid));`;
    const parent = spawn(process.execPath, ['-e', parentSource], { cwd: REPO, env: { ...process.env, PARALLAX_RUNNER_TEMP: priv }, stdio: ['ignore', 'pipe', 'inherit'] });
    started.add(parent);
    const child = await new Promise<number>((resolve) => parent.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
    assert.ok(alive(child), 'the blocked child runs');
    await new Promise((res) => setTimeout(res, 500));
    assert.ok(alive(child), 'the blocked child runs while its parent does');
    parent.kill('SIGKILL');
    const gone = await waitFor('the blocked orphan ended', () => !alive(child), ORPHAN_WATCHDOG_MS);
    t.diagnostic(`blocked orphan gone ${gone} ms after its parent was killed`);
    assert.equal(existsSync(priv), false, 'its private folder was removed');
  });

  it('a runner that dies in the middle of a run (SIGKILL, as a native crash would) leaves nothing in $TMPDIR', async () => {
    const tmp = freshTmp(root, 'runner-died');
    const r = startCli(['profile', model, '--devices', 'cpu:1', '--batch', BIG_BATCH, '--steps', '100', '--warmup', '0', '--no-baseline', '--out', join(root, 'never-4.parallax.json')], tmp, root);
    const runner = await runnerMeasuring(r.child, tmp);
    process.kill(runner, 'SIGKILL');
    const { code, stderr } = await r.exited;
    assert.notEqual(code, 0, 'the CLI reports the failure');
    assert.match(stderr, /runner exited unexpectedly \(SIGKILL\)/);
    await waitFor('the temp folder emptied', () => readdirSync(tmp).length === 0, CLEANUP_MS).catch(() => undefined);
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('a crashed run (a model ONNX Runtime rejects) leaves nothing in $TMPDIR', async () => {
    const tmp = freshTmp(root, 'crashed');
    const r = startCli(['profile', join(root, 'unknown-op.onnx'), '--devices', 'cpu:2', '--batch', '4', '--steps', '1', '--warmup', '0', '--out', join(root, 'never-3.parallax.json')], tmp, root);
    const { code, stderr } = await r.exited;
    assert.equal(code, 2, stderr);
    assert.match(stderr, /ONNX Runtime failed loading the model/);
    await waitFor('the temp folder emptied', () => readdirSync(tmp).length === 0, CLEANUP_MS).catch(() => undefined);
    assert.deepEqual(readdirSync(tmp), []);
  });
});
