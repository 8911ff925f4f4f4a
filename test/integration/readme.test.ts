/**
 * The README's examples reproduce: every command block marked `<!-- readme-test -->` is run as
 * the README writes it (in a scratch folder, `npx parallax` being this checkout's CLI), and
 * its output must show the sections of the output block that follows it, in that order.
 * Figures vary from run to run and machine to machine, so only the sections are compared:
 * each line that starts at the margin contributes its leading words ("step time",
 * "speedup", the table's "device" header, "trace written to"…).
 *
 * `--steps` is set to PARALLAX_README_STEPS (default 3) to keep the suite short;
 * PARALLAX_README_STEPS=asis runs the commands with the README's own step counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, REPO } from '../helpers/cli';
import { tempDir } from '../helpers/temp';

/** A marked example: the command and the output the README shows for it. */
interface Example {
  line: number;
  command: string;
  expected: string;
}

/** Marked examples of a Markdown text: the marker, a fenced command block, then a fenced output block. */
export function readmeExamples(markdown: string): Example[] {
  const lines = markdown.split('\n');
  const out: Example[] = [];
  const fence = (from: number): { body: string; end: number } | null => {
    let i = from;
    while (i < lines.length && lines[i]!.trim() === '') i++;
    if (!/^```/.test(lines[i] ?? '')) return null;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    return { body: lines.slice(start, end).join('\n'), end: end + 1 };
  };
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '<!-- readme-test -->') continue;
    const cmd = fence(i + 1);
    // Prose may stand between the command and its output.
    let j = cmd?.end ?? i + 1;
    while (j < lines.length && !/^```/.test(lines[j]!) && lines[j]!.trim() !== '<!-- readme-test -->') j++;
    const shown = cmd ? fence(j) : null;
    assert.ok(cmd && shown, `README.md:${i + 1}: a readme-test marker needs a command block and an output block after it`);
    out.push({ line: i + 1, command: cmd.body.replace(/\\\n\s*/g, ' ').trim(), expected: shown.body });
  }
  return out;
}

/** Sections printed only on some runs: measurement trouble, findings or held-back findings. */
const CONDITIONAL = new Set(['measurement quality', 'MEASUREMENT QUALITY', 'findings', 'held back']);

/** The leading words of each line that starts at the margin (see the file comment). */
export function sections(text: string): string[] {
  const keys: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || /^\s/.test(line) || !/[A-Za-z]/.test(line)) continue;
    // Words up to the first column gap, figure, path or parenthesis; a word ending in a colon
    // ends the key ("cpu:0" → "cpu", "MEASUREMENT QUALITY: POOR" → "MEASUREMENT QUALITY").
    const words: string[] = [];
    for (const w of line.split(/\s{2,}/)[0]!.split(' ')) {
      const m = /^([A-Za-z·-]+)(:?)/.exec(w);
      if (!m || (m[2] === '' && m[0] !== w)) break;
      words.push(m[1]!);
      if (m[2] === ':') break;
    }
    if (words.length > 0) keys.push(words.join(' '));
  }
  return keys;
}

/** The shell command to run for a README command: `npm start` is its script, `npx parallax` this CLI. */
function runnable(command: string, steps: string): string {
  let c = command;
  if (c === 'npm start') {
    const start = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start']!;
    // The build is the test run's own first step; the rest is the command.
    c = start.replace(/^npm run build --silent && /, '');
  }
  c = c.replace(/^(npx parallax|node bin\/parallax\.js)\b/, `"${process.execPath}" "${BIN}"`);
  if (steps !== 'asis') c = c.replace(/--steps \d+/, `--steps ${steps}`);
  return c;
}

const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
const examples = readmeExamples(readme);
const steps = process.env['PARALLAX_README_STEPS'] ?? '3';

test('the README marks its examples, each with a command and the output it shows', () => {
  assert.ok(examples.length >= 2, `marked examples: ${examples.map((e) => e.command).join(' | ')}`);
  assert.ok(examples.some((e) => e.command === 'npm start'), 'the headline example, npm start, is one of them');
  for (const e of examples) assert.ok(sections(e.expected).length >= 3, `README.md:${e.line}: the output block of "${e.command}" shows its sections`);
});

for (const e of examples) {
  test(`README.md:${e.line}: "${e.command}" prints the sections the README shows`, () => {
    assert.ok(existsSync(join(REPO, 'dist', 'cli.js')), 'the CLI is built (npm run build)');
    const cwd = tempDir('readme');
    const r = spawnSync('sh', ['-c', runnable(e.command, steps)], { cwd, encoding: 'utf8', timeout: 10 * 60_000 });
    assert.equal(r.status, 0, `exit ${r.status}\n${r.stderr}`);
    const want = sections(e.expected).filter((k) => !CONDITIONAL.has(k));
    const got = sections(r.stdout);
    // Each wanted section appears, in the README's order.
    let at = 0;
    for (const k of want) {
      const i = got.indexOf(k, at);
      assert.ok(i >= 0, `section "${k}" missing or out of order; the README shows ${JSON.stringify(want)}, the command printed ${JSON.stringify(got)}\n${r.stdout}`);
      at = i + 1;
    }
  });
}
