// Compares this checkout with another commit on the figures BENCHMARKS.md tracks, running
// the two builds' CLIs interleaved (A, B, A, B, …) in one command so both see the same
// machine. Prints a Markdown section; numbers are medians.
//   node scripts/bench-ab.mjs <git-ref> [pairs] [figure-filter]   (filter: text in the figure names)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import os from 'node:os';

const ref = process.argv[2];
const pairs = Number(process.argv[3] ?? 5);
const filter = process.argv[4] ?? '';
if (!ref) {
  console.error('usage: node scripts/bench-ab.mjs <git-ref> [pairs]');
  process.exit(2);
}
const here = resolve('.');
const tmp = mkdtempSync(join(os.tmpdir(), 'parallax-ab-'));
const other = join(tmp, 'base');

function sh(cmd, args, cwd) {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Runs one CLI and returns its JSON summary. */
function cli(root, args) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'parallax.js'), ...args, '--json'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`${root}: parallax ${args.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const FIGURES = [
  { name: 'speedup cpu:2 vs one device (data, batch 64)', args: ['profile', 'demo', '--devices', 'cpu:2', '--batch', '64', '--steps', '10', '--warmup', '2', '--no-op-level'], read: (s) => s.speedupVsOneDevice, better: 'higher' },
  { name: 'step time, data cpu:2, operator profile on (ms)', args: ['profile', 'demo', '--devices', 'cpu:2', '--batch', '64', '--steps', '10', '--warmup', '2', '--no-baseline'], read: (s) => s.stepTimeUs.median / 1000, better: 'lower' },
  { name: 'step time, data cpu:2, operator profile off (ms)', args: ['profile', 'demo', '--devices', 'cpu:2', '--batch', '64', '--steps', '10', '--warmup', '2', '--no-baseline', '--no-op-level'], read: (s) => s.stepTimeUs.median / 1000, better: 'lower' },
  { name: 'pipeline bubble, cpu:2, M = 8 (%)', args: ['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '64', '--micro-batches', '8', '--steps', '10', '--warmup', '2', '--no-baseline', '--no-op-level'], read: (s) => 100 * s.bubbleFraction, better: 'lower' },
  { name: 'pipeline step time, cpu:2, M = 8 (ms)', args: ['profile', 'demo', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '64', '--micro-batches', '8', '--steps', '10', '--warmup', '2', '--no-baseline', '--no-op-level'], read: (s) => s.stepTimeUs.median / 1000, better: 'lower' },
];

const chosen = FIGURES.filter((f) => f.name.includes(filter));
try {
  process.stderr.write(`building ${ref} in a temporary worktree…\n`);
  sh('git', ['worktree', 'add', '--detach', other, ref], here);
  symlinkSync(join(here, 'node_modules'), join(other, 'node_modules'));
  sh('npm', ['run', 'build', '--silent'], other);
  if (!existsSync(join(here, 'dist', 'cli.js'))) sh('npm', ['run', 'build', '--silent'], here);
  const results = chosen.map(() => ({ a: [], b: [] }));
  for (let p = 0; p < pairs; p++) {
    chosen.forEach((f, i) => {
      // Alternate which build goes first, so neither always runs on a warmer machine.
      const order = p % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
      for (const side of order) results[i][side].push(f.read(cli(side === 'a' ? other : here, f.args)));
    });
    process.stderr.write(`pair ${p + 1}/${pairs} done\n`);
  }
  const headRev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const baseRev = execFileSync('git', ['rev-parse', '--short', ref], { encoding: 'utf8' }).trim();
  const rows = chosen.map((f, i) => {
    const a = median(results[i].a);
    const b = median(results[i].b);
    const change = (b - a) / a;
    const worse = f.better === 'higher' ? change < -0.05 : change > 0.05;
    return `| ${f.name} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${change >= 0 ? '+' : ''}${(100 * change).toFixed(1)}% | ${worse ? 'worse' : 'no worse'} |`;
  });
  process.stdout.write(`## Before and after (${baseRev} → ${headRev}), interleaved

Machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} logical cores. Command: \`node scripts/bench-ab.mjs ${ref} ${pairs}${filter ? ` '${filter}'` : ''}\`.
Medians of ${pairs} interleaved pairs (the two builds' CLIs alternate, the order flipping every pair); "no worse" allows 5 % of noise.

| figure | ${baseRev} | ${headRev} | change | |
|---|---|---|---|---|
${rows.join('\n')}
`);
} finally {
  spawnSync('git', ['worktree', 'remove', '--force', other], { cwd: here });
  rmSync(tmp, { recursive: true, force: true });
}
