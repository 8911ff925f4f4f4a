// Runs the test tiers with Node's own test runner (TypeScript through tsx).
//   node scripts/test.mjs            every tier
//   node scripts/test.mjs unit       one tier (unit | integration | e2e)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
