/**
 * The cost of switching between two runs' blocks, and what waiting for quiet saves.
 *
 * A profile alternates the timed run with the one-device baseline (and the probe) in blocks,
 * each run a session of the same process. ONNX Runtime's intra-op threads spin after a
 * `session.run` returns; while the last block's session spins, the next block's first steps
 * run short of a core. This bench runs two sessions of the demo MLP (every core as intra-op
 * threads, as `--devices cpu:1` gets) in alternating blocks, twice per round, interleaved:
 * straight from one block to the next, and with the runner's wait for quiet
 * (src/runtime/runner/quiesce.ts) before each block. It reports the first step of a block
 * over the median of the block's other steps (1 = no switching cost), the median step, and
 * the waits. Target: the first step within 1.25× of the rest with the wait.
 *
 *   npm run bench -- quiesce
 */
import * as os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { defaultCacheDir, ensureDemoModel } from '../src/runtime/onnx/demo-model';
import { median } from '../src/profiler/stats';
import { quiesce } from '../src/runtime/runner/quiesce';

const ROUNDS = Number(process.env['BENCH_REPEATS'] ?? 6);
const BLOCKS = 8;
const STEPS_PER_BLOCK = 5;
const BATCH = 32;
const TARGET = 1.25;

type Variant = 'straight' | 'quiet';

async function main(): Promise<void> {
  const path = await ensureDemoModel(defaultCacheDir());
  const threads = os.availableParallelism();
  const open = (): Promise<ort.InferenceSession> => ort.InferenceSession.create(path, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' });
  const sessions = [await open(), await open()];
  const name = sessions[0]!.inputNames[0]!;
  const x = new ort.Tensor('float32', Float32Array.from({ length: BATCH * 512 }, (_, i) => Math.sin(i)), [BATCH, 512]);
  const feeds = { [name]: x };
  for (let i = 0; i < 10; i++) for (const s of sessions) await s.run(feeds);

  const firstOverRest: Record<Variant, number[]> = { straight: [], quiet: [] };
  const steps: Record<Variant, number[]> = { straight: [], quiet: [] };
  const waits: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order: Variant[] = r % 2 === 0 ? ['straight', 'quiet'] : ['quiet', 'straight'];
    for (const v of order) {
      for (let b = 0; b < BLOCKS; b++) {
        if (v === 'quiet') waits.push((await quiesce()).waitedMs);
        const s = sessions[b % 2]!;
        const t: number[] = [];
        for (let k = 0; k < STEPS_PER_BLOCK; k++) {
          const t0 = performance.now();
          await s.run(feeds);
          t.push(performance.now() - t0);
        }
        // The first block of a variant follows the other variant's last: counted all the same.
        firstOverRest[v].push(t[0]! / median(t.slice(1)));
        steps[v].push(...t);
      }
    }
    process.stderr.write(`round ${r + 1}/${ROUNDS}: first/rest straight ${median(firstOverRest.straight).toFixed(2)}, with the wait ${median(firstOverRest.quiet).toFixed(2)}\n`);
  }
  for (const s of sessions) await s.release();

  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const fr = (v: Variant): number => median(firstOverRest[v]);
  const ms = (x: number): string => `${x.toFixed(1)} ms`;
  const summary = {
    straight: { firstOverRest: fr('straight'), stepMs: median(steps.straight) },
    quiet: { firstOverRest: fr('quiet'), stepMs: median(steps.quiet), waitMs: median(waits), waitMaxMs: Math.max(...waits) },
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/quiesce.json', JSON.stringify({ machine: { cpu, cores: threads }, rounds: ROUNDS, blocks: BLOCKS, stepsPerBlock: STEPS_PER_BLOCK, summary, firstOverRest, waits }, null, 2));

  const L = (s: string): void => void process.stdout.write(`${s}\n`);
  L(`## Switching between runs' blocks (demo MLP, two sessions of ${threads} threads, batch ${BATCH})`);
  L('');
  L(`Machine: ${cpu}, ${threads} logical cores, load average ${os.loadavg().map((v) => v.toFixed(1)).join(' / ')} at the end. Command: \`npm run bench -- quiesce\`.`);
  L(`Two ONNX Runtime sessions of the demo MLP run in ${BLOCKS} alternating blocks of ${STEPS_PER_BLOCK} steps, as a profile alternates the timed run and the one-device baseline; each of ${ROUNDS} rounds runs the blocks straight one after another and with the runner's wait for the process to go quiet before each block, interleaved. First/rest: a block's first step over the median of its other steps (median over ${ROUNDS * BLOCKS} blocks). Target: ≤ ${TARGET} with the wait.`);
  L('');
  L('| blocks | first / rest | step (median) | wait before a block (median, longest) |');
  L('|---|---|---|---|');
  L(`| straight | ${summary.straight.firstOverRest.toFixed(2)} | ${ms(summary.straight.stepMs)} | – |`);
  L(`| after waiting for quiet | ${summary.quiet.firstOverRest.toFixed(2)} ${summary.quiet.firstOverRest <= TARGET ? 'PASS' : 'MISS'} | ${ms(summary.quiet.stepMs)} | ${ms(summary.quiet.waitMs)}, ${ms(summary.quiet.waitMaxMs)} |`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
