/**
 * The one way into the timeline panel for the rest of the extension. The panel
 * (timeline-panel.ts) registers `parallax.showTimeline`; callers here go through
 * {@link showTimeline}, which also marks the trace as the current run (the Findings view
 * follows it) and, should the command fail, says where the trace is and offers the
 * Perfetto export instead.
 */
import * as vscode from 'vscode';
import type { Ctx } from './ctx';
import { Command, type ShowTimelineArgs } from './ids';

/** Opens the timeline at `args` (a trace, a range, lanes, or a trace to compare with). */
export async function showTimeline(ctx: Ctx, args: ShowTimelineArgs): Promise<void> {
  ctx.currentTrace = args.tracePath;
  try {
    await vscode.commands.executeCommand(Command.showTimeline, args);
  } catch (e) {
    ctx.output.warn(`${Command.showTimeline} failed: ${e instanceof Error ? e.message : String(e)}`);
    await timelineUnavailable(ctx, args);
  }
}

/** Checks a value received as command arguments (hover links and tree items pass JSON). */
export function timelineArgs(v: unknown): ShowTimelineArgs | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o['tracePath'] !== 'string' || o['tracePath'] === '') return null;
  const num = (k: string): number | undefined => (typeof o[k] === 'number' && Number.isFinite(o[k]) ? (o[k] as number) : undefined);
  const startUs = num('startUs');
  const endUs = num('endUs');
  const lanes = Array.isArray(o['lanes']) && o['lanes'].every((l) => Number.isInteger(l) && (l as number) >= 0) ? (o['lanes'] as number[]) : undefined;
  return {
    tracePath: o['tracePath'],
    ...(startUs !== undefined ? { startUs } : {}),
    ...(endUs !== undefined ? { endUs } : {}),
    ...(lanes ? { lanes } : {}),
    ...(typeof o['comparePath'] === 'string' ? { comparePath: o['comparePath'] } : {}),
  };
}

async function timelineUnavailable(ctx: Ctx, args: ShowTimelineArgs): Promise<void> {
  const rel = vscode.workspace.asRelativePath(vscode.Uri.file(args.tracePath), false);
  const range = args.startUs !== undefined && args.endUs !== undefined ? ` (range ${(args.startUs / 1000).toFixed(1)}–${(args.endUs / 1000).toFixed(1)} ms)` : '';
  ctx.output.info(`timeline requested for ${args.tracePath}${range}${args.comparePath ? ` compared with ${args.comparePath}` : ''}`);
  const perfetto = 'Export for Perfetto…';
  const a = await vscode.window.showInformationMessage(
    `Parallax: the timeline view is not available. The trace is ${rel}${range}; export it to open it in Perfetto.`,
    perfetto,
  );
  if (a === perfetto) await vscode.commands.executeCommand(Command.exportTrace, vscode.Uri.file(args.tracePath));
}
