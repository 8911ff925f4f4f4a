/**
 * VS Code extension entry. The extension host never loads ONNX Runtime: profiling and device
 * discovery run in a runner process (src/runtime/api.ts). Layout of this folder:
 *   ids.ts               command ids, setting keys, context keys, views (the manifest must match)
 *   ctx.ts               the context object: disposables, settings, the running profile, services
 *   commands.ts          one factory per command, `(ctx) => handler`
 *   pick.ts              the quick picks of "Profile Model…"
 *   run-config.ts        pure: choices, trace path, plan, progress (no `vscode`)
 *   config-model.ts      pure: parallax.json parsing with key positions, checks, plan, trace names
 *   hints.ts             pure: finding → plan key, diagnostic text, quick-fix edit, lens, hover
 *   config-providers.ts  CodeLens, diagnostics, quick fixes and hovers in parallax.json
 *   scope-map.ts         pure: ONNX node scopes / stack traces → Python definitions and files
 *   source-model.ts      pure: operator time per node → hints per Python definition and line
 *   source-hints.ts      inlay hints in the model's Python source
 *   runs-model.ts        pure: trace digests (meta, summary, findings) without the spans
 *   runs.ts              the run history: output folders watched, digests and traces cached
 *   views.ts             the Parallax view container: Runs, Devices, Findings
 *   timeline.ts          the way into the timeline panel (`parallax.showTimeline`)
 *   timeline-panel.ts    the timeline panel (webview) that registers `parallax.showTimeline`
 *   sweep-panel.ts       the sweep panel (webview) and its commands `parallax.sweepPlans`, `parallax.openSweep`
 *   sweep-args.ts        pure: the choices `parallax.sweepPlans` takes
 *   webview-html.ts      the panels' HTML (nonce CSP, asWebviewUri)
 */
import * as vscode from 'vscode';
import { commands, LAST_RUN } from './commands';
import { Ctx } from './ctx';
import { ContextKey, type CommandId } from './ids';
import { registerSweepPanel } from './sweep-panel';
import { registerTimelinePanel } from './timeline-panel';
import { registerViews } from './views';

export function activate(context: vscode.ExtensionContext): void {
  const ctx = new Ctx(context);
  for (const [id, factory] of Object.entries(commands)) ctx.registerCommand(id as CommandId, factory(ctx));
  registerTimelinePanel(ctx);
  registerSweepPanel(ctx);
  registerViews(ctx, ctx.runs);
  void vscode.commands.executeCommand('setContext', ContextKey.hasLastProfile, context.workspaceState.get(LAST_RUN) !== undefined);
}

export function deactivate(): void {
  // Everything is owned by the Ctx, which VS Code disposes through context.subscriptions;
  // that also cancels a running profile, and the runner exits when its IPC channel closes.
}
