// Runs the test tiers with Node's own test runner (TypeScript through tsx).
//   node scripts/test.mjs            every tier
//   node scripts/test.mjs unit       one tier (unit | integration | e2e)
import { existsSync, mkdirSync, readdirSync, statSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
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
//
// The tests run with a temp folder of their own (TMPDIR), so what they leave behind is
// told apart from what other programs on the machine write: every `parallax-*` entry still
// in it after the run is a test (or the code under test) that did not clean up, and fails
// the run. The folder itself is removed either way.
const scratch = mkdtempSync(join(tmpdir(), 'parallax-test-run-'));
const testTemp = join(scratch, 'tmp');
mkdirSync(testTemp);
const tap = join(scratch, 'results.tap');
const r = spawnSync(
  process.execPath,
  [
    '--import', 'tsx', '--test', '--test-concurrency=1',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { stdio: 'inherit', env: { ...process.env, TMPDIR: testTemp, TMP: testTemp, TEMP: testTemp } },
);
const text = existsSync(tap) ? readFileSync(tap, 'utf8') : '';
const leftovers = readdirSync(testTemp).filter((name) => name.startsWith('parallax-')).sort();
rmSync(scratch, { recursive: true, force: true });

const count = (k) => Number(text.match(new RegExp(`^# ${k} (\\d+)$`, 'm'))?.[1] ?? 0);
const passed = count('pass');
const failed = count('fail') + count('cancelled');
const skips = skipped(text);

if (skips.length > 0) {
  console.log(`\nskipped (${skips.length}):`);
  for (const s of skips) console.log(`  ${s.name}\n    ${s.reason}`);
}
if (leftovers.length > 0) {
  console.log(`\ntests left ${leftovers.length} temp folder${leftovers.length === 1 ? '' : 's'} behind (each test must remove its own, pass or fail):`);
  for (const name of leftovers) console.log(`  ${name}`);
}
console.log(`\n${passed} passed, ${failed} failed, ${skips.length} skipped${leftovers.length ? `, ${leftovers.length} temp folders left` : ''}`);
process.exit(r.status === 0 && failed === 0 && passed > 0 && leftovers.length === 0 ? 0 : 1);

/**
 * Every skipped test or suite in a TAP report, named by its path of suites, with its reason
 * (`ok 3 - name # SKIP reason`). A skipped suite counts once here, as it does in the runner's
 * own count, so prerequisites skip each test rather than a whole suite.
 */
function skipped(tapText) {
  const out = [];
  const parents = [];
  for (const line of tapText.split('\n')) {
    const indent = line.length - line.trimStart().length;
    const depth = indent / 4;
    const sub = line.match(/^\s*# Subtest: (.*)$/);
    if (sub) {
      parents.length = depth;
      parents[depth] = sub[1];
      continue;
    }
    const m = line.match(/^\s*(?:not )?ok \d+ - (.*?) # SKIP ?(.*)$/);
    if (m) out.push({ name: [...parents.slice(0, depth), m[1]].join(' › '), reason: m[2] || '(no reason given)' });
  }
  return out;
}
