/** Runs the built `parallax` CLI as a user would, capturing its output. */
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const REPO = join(__dirname, '..', '..');
export const BIN = join(REPO, 'bin', 'parallax.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? REPO,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`parallax ${args.join(' ')} timed out\n${stderr}`));
    }, opts.timeoutMs ?? 240_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Runs a command that must fail on bad input: one `parallax:` line on stderr matching
 * `pattern`, a non-zero exit, no stack trace, no trace file and no temporary file left in `dir`.
 */
export async function expectUserError(args: string[], pattern: RegExp, dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const out = join(dir, `bad-${Math.random().toString(36).slice(2)}.parallax.json`);
  const r = await runCli([...args, '--out', out, '--steps', '1', '--warmup', '0'], { env });
  assert.notEqual(r.code, 0, `exit code for ${args.join(' ')}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(lines[0], /^parallax: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(existsSync(out), false, 'nothing written');
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
}
