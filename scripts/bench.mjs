// Runs every benchmark in bench/ (or the ones named) and writes BENCHMARKS.md.
//   node scripts/bench.mjs                 all
//   node scripts/bench.mjs allreduce       bench/allreduce.bench.ts only
// Each bench prints a Markdown section (starting with "## ") on stdout and writes raw
// numbers to bench/results/<name>.json. Benchmarks report figures against their targets;
// they never fail the process on a missed target (timing is not a pass/fail test here).
import { readdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';

const only = process.argv.slice(2);
const files = readdirSync('bench')
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();

const sections = new Map();
// Keep the sections of benches not run this time.
if (existsSync('BENCHMARKS.md')) {
  const old = readFileSync('BENCHMARKS.md', 'utf8');
  for (const part of old.split(/^<!-- bench:(\S+) -->$/m).slice(1).reduce((acc, v, i, a) => (i % 2 === 0 ? [...acc, [v, a[i + 1]]] : acc), [])) {
    sections.set(part[0], part[1].trim());
  }
}
let failed = 0;
for (const f of files) {
  const name = f.replace(/\.bench\.ts$/, '');
  process.stderr.write(`bench ${name}…\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${f}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const out = r.stdout ?? '';
  const i = out.indexOf('## ');
  if (r.status !== 0 || i < 0) {
    failed++;
    process.stderr.write(`bench ${name} failed (exit ${r.status})\n${out}\n`);
    continue;
  }
  const section = out.slice(i).trim();
  process.stdout.write(`${section}\n\n`);
  sections.set(name, section);
}
const header = `# Benchmarks

Figures from \`npm run bench\` (each section says its machine). Timings on shared machines vary
2–3× between runs, so every target is a ratio of two things measured in the same run,
interleaved, and quoted as medians. Benchmarks are not pass/fail tests.

`;
const body = [...sections.entries()].map(([k, v]) => `<!-- bench:${k} -->\n${v}`).join('\n\n');
writeFileSync('BENCHMARKS.md', `${header}${body}\n`);
process.stderr.write(`wrote BENCHMARKS.md (${os.cpus()[0]?.model ?? 'unknown cpu'})\n`);
process.exit(failed ? 1 : 0);
