/**
 * The manifest (package.json `contributes`) and src/extension/ids.ts declare the same
 * commands, settings and context keys, and the allow-list ships what the extension loads.
 * Cheap (no VS Code); it lives beside the e2e tests because it guards what they install.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_FILE, Command, ContextKey, Setting, TreeItemContext, View } from '../../../src/extension/ids';
import { REPO } from './harness';

interface Manifest {
  main: string;
  activationEvents: string[];
  capabilities?: { untrustedWorkspaces?: { supported: unknown; restrictedConfigurations?: string[] } };
  contributes: {
    commands: { command: string; title: string; category?: string; enablement?: string }[];
    menus: Record<string, { command: string; when?: string }[]>;
    configuration: { properties: Record<string, { default?: unknown }> };
    viewsContainers?: { activitybar?: { id: string; title: string; icon: string }[] };
    views?: Record<string, { id: string; name: string }[]>;
    viewsWelcome?: { view: string; contents: string }[];
    jsonValidation?: { fileMatch: string; url: string }[];
  };
}

const manifest = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as Manifest;

describe('extension manifest', () => {
  it('contributes exactly the commands declared in ids.ts, each with a Parallax title', () => {
    const declared = Object.values(Command).sort();
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual(contributed, declared);
    for (const c of manifest.contributes.commands) {
      assert.match(c.command, /^parallax\.[a-z][A-Za-z]*$/, `${c.command} is parallax.<verb>`);
      assert.equal(c.category, 'Parallax', `${c.command} is in the Parallax category`);
    }
    const profile = manifest.contributes.commands.find((c) => c.command === Command.profileModel);
    assert.equal(profile?.title, 'Profile Model…');
  });

  it('contributes exactly the settings declared in ids.ts, named parallax.<area>.<name>', () => {
    const declared = Object.values(Setting).sort();
    const contributed = Object.keys(manifest.contributes.configuration.properties).sort();
    assert.deepEqual(contributed, declared);
    for (const key of contributed) assert.match(key, /^parallax\.[a-z]+\.[a-z][A-Za-z]*$/, key);
  });

  it('menus name declared commands and context keys only', () => {
    const ids = new Set<string>(Object.values(Command));
    for (const [menu, entries] of Object.entries(manifest.contributes.menus)) {
      for (const e of entries) assert.ok(ids.has(e.command), `${menu} names ${e.command}`);
    }
    // `parallax.*` names in when clauses are our context keys, view ids, or the config file's name.
    const keys = new Set<string>([...Object.values(ContextKey), ...Object.values(View), CONFIG_FILE]);
    const whens = [
      ...Object.values(manifest.contributes.menus).flatMap((es) => es.map((e) => e.when ?? '')),
      ...manifest.contributes.commands.map((c) => c.enablement ?? ''),
    ];
    for (const w of whens) for (const k of w.match(/parallax\.[A-Za-z.]+/g) ?? []) assert.ok(keys.has(k), `unknown context key ${k} in "${w}"`);
    const items = new Set<string>(Object.values(TreeItemContext));
    for (const w of whens) for (const k of w.match(/viewItem == (\w+)/g) ?? []) assert.ok(items.has(k.slice('viewItem == '.length)), `unknown tree item context in "${w}"`);
    const explorer = manifest.contributes.menus['explorer/context'] ?? [];
    assert.ok(explorer.some((e) => e.command === Command.profileFile && /resourceExtname == \.onnx/.test(e.when ?? '')));
  });

  it('contributes the Parallax view container with the views declared in ids.ts, each with a welcome text', () => {
    const container = manifest.contributes.viewsContainers?.activitybar?.find((c) => c.id === View.container);
    assert.ok(container, 'an activity bar container');
    assert.match(container.icon, /^\$\([a-z-]+\)$/, 'a codicon (the VSIX ships no media)');
    const views = (manifest.contributes.views?.[View.container] ?? []).map((v) => v.id).sort();
    assert.deepEqual(views, [View.devices, View.findings, View.runs].sort());
    const welcome = new Set((manifest.contributes.viewsWelcome ?? []).map((w) => w.view));
    for (const v of views) assert.ok(welcome.has(v), `${v} has a welcome text`);
    for (const w of manifest.contributes.viewsWelcome ?? []) {
      for (const m of w.contents.matchAll(/command:([\w.]+)/g)) assert.ok(Object.values(Command).includes(m[1] as never), `welcome links ${m[1]}`);
    }
  });

  it('validates parallax.json against the shipped schema', () => {
    const v = manifest.contributes.jsonValidation?.find((j) => j.fileMatch === CONFIG_FILE);
    assert.equal(v?.url, './schemas/parallax-config.schema.json');
    const schema = JSON.parse(readFileSync(join(REPO, v!.url), 'utf8')) as { properties?: { plans?: unknown } };
    assert.ok(schema.properties?.plans);
    const lines = readFileSync(join(REPO, '.vscodeignore'), 'utf8').split('\n').map((l) => l.trim());
    assert.ok(lines.includes('!schemas/**'), 'the VSIX carries the schema');
  });

  it('limits itself in untrusted workspaces and restricts the runner executable setting', () => {
    const u = manifest.capabilities?.untrustedWorkspaces;
    assert.equal(u?.supported, 'limited');
    assert.ok(u?.restrictedConfigurations?.includes(Setting.runnerNodePath));
  });

  it('has an allow-list that ships the bundles and onnxruntime-node, and no source', () => {
    const lines = readFileSync(join(REPO, '.vscodeignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.equal(lines[0], '**', 'the allow-list starts by excluding everything');
    for (const want of ['!dist/extension.js', '!dist/runner.js', '!dist/device-worker.js', '!dist/import-worker.js', '!node_modules/onnxruntime-node/bin/napi-v6/linux/x64/**']) {
      assert.ok(lines.includes(want), `.vscodeignore lets in ${want}`);
    }
    assert.equal(manifest.main, './dist/extension.js');
    assert.ok(!lines.some((l) => /^!src\b/.test(l)), 'no source in the VSIX');
  });
});
