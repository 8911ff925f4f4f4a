/**
 * VS Code extension entry. The extension host never loads ONNX Runtime: profiling and device
 * discovery run in a runner process (src/runtime/api.ts). Layout of this folder:
 *   ids.ts         command ids, setting keys, context keys (the manifest must match)
 *   ctx.ts         the context object: disposables, settings, the running profile
 *   commands.ts    one factory per command, `(ctx) => handler`
 *   pick.ts        the quick picks of "Profile Model…"
 *   run-config.ts  pure helpers: choices, trace path, plan, progress (no `vscode`)
 */
import type * as vscode from 'vscode';
import { commands } from './commands';
import { Ctx } from './ctx';
import type { CommandId } from './ids';

export function activate(context: vscode.ExtensionContext): void {
  const ctx = new Ctx(context);
  for (const [id, factory] of Object.entries(commands)) ctx.registerCommand(id as CommandId, factory(ctx));
}

export function deactivate(): void {
  // Everything is owned by the Ctx, which VS Code disposes through context.subscriptions;
  // that also cancels a running profile, and the runner exits when its IPC channel closes.
}
