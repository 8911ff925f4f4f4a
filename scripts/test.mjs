// Runs the test tiers with Node's own test runner (TypeScript through tsx).
//   node scripts/test.mjs            every tier
//   node scripts/test.mjs unit       one tier (unit | integration | e2e)
import { readdirSync, statSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';

const tiers = process.argv.slice(2);
const wanted = tiers.length > 0 ? tiers : ['unit', 'integration', 'e2e'];

function collect(dir) {
  let out = [];
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(collect(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = wanted.flatMap((t) => collect(join('test', t)));
if (files.length === 0) {
  console.error(`no test files found for: ${wanted.join(', ')}`);
  process.exit(1);
}
// Integration tests start processes, worker threads and ONNX Runtime sessions; on a
// 2-core machine they are more reliable one file at a time.
// Human-readable output on the terminal, TAP into a file for the closing count line.
const tapDir = mkdtempSync(join(tmpdir(), 'parallax-tap-'));
const tap = join(tapDir, 'results.tap');
const r = spawnSync(
  process.execPath,
  [
    '--import', 'tsx', '--test', '--test-concurrency=1',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { stdio: 'inherit' },
);
const text = readFileSync(tap, 'utf8');
rmSync(tapDir, { recursive: true, force: true });
const count = (k) => Number(text.match(new RegExp(`^# ${k} (\\d+)$`, 'm'))?.[1] ?? 0);
const passed = count('pass');
const failed = count('fail') + count('cancelled');
const skipped = count('skipped');
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(r.status === 0 && failed === 0 && passed > 0 ? 0 : 1);
