/**
 * Runs inside VS Code's extension host (Electron), started by ../electron.test.ts through
 * @vscode/test-electron: the same flow as the code-server test, driven through the API
 * rather than the UI, once with the runner forked from Electron-as-Node and once from a
 * system Node (`parallax.runner.nodePath`), the two runtimes the runner must work under.
 * Bundled to one CommonJS file by the outer test; `vscode` comes from the host.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as vscode from 'vscode';

interface ProfileCommandResult {
  tracePath: string | null;
  summary: { stepTimeUs: { median: number } };
}

export async function run(): Promise<void> {
  const ext = vscode.extensions.getExtension('parallax-tools.parallax');
  assert.ok(ext, 'the Parallax extension is loaded');
  await ext.activate();
  const commands = await vscode.commands.getCommands(true);
  for (const id of ['parallax.profileModel', 'parallax.profileFile', 'parallax.listDevices']) assert.ok(commands.includes(id), `${id} is registered`);

  const [model] = await vscode.workspace.findFiles('**/*.onnx');
  assert.ok(model, 'the workspace holds a model');

  const runtimes: [string, string][] = [['Electron as Node', '']];
  const systemNode = process.env['PARALLAX_SYSTEM_NODE'];
  if (systemNode) runtimes.push(['system Node', systemNode]);
  for (const [what, nodePath] of runtimes) {
    await vscode.workspace.getConfiguration().update('parallax.runner.nodePath', nodePath, vscode.ConfigurationTarget.Global);
    const result = await vscode.commands.executeCommand<ProfileCommandResult | undefined>('parallax.profileModel', model, {
      mode: 'data',
      devices: 'cpu:2',
      batch: 16,
    });
    assert.ok(result, `the profile with the runner on ${what} completed (see the Parallax output for its error)`);
    assert.ok(result.tracePath && existsSync(result.tracePath), `trace written (${what}): ${result.tracePath}`);
    assert.ok(result.summary.stepTimeUs.median > 0, `median step time measured (${what})`);
  }
}
