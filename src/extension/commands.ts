/**
 * Commands as small factories `(ctx) => handler`, one per id in ids.ts. The table at the end
 * is what extension.ts registers; its type makes a missing handler a compile error.
 */
import { dirname } from 'node:path';
import * as vscode from 'vscode';
import { isUserError } from '../common/errors';
import { formatSummary, table } from '../cli/format';
import { listDevices as discoverInRunner, profile, ProfileCancelled } from '../runtime/api';
import type { ParallelMode, ProfilePlan } from '../runtime/protocol';
import type { ProfileSummary } from '../profiler/summary';
import type { Ctx } from './ctx';
import { Command, Setting, type CommandId } from './ids';
import { pickBatch, pickDevices, pickMode, pickModel } from './pick';
import { buildPlan, checkDeviceSpecText, progressMessage, progressPercent, summaryLine, tracePath } from './run-config';

type Handler = (...args: never[]) => unknown;
type Factory = (ctx: Ctx) => Handler;

/** workspaceState key: the model profiled last, offered first next time. */
const LAST_MODEL = 'parallax.lastModel';

const SHOW_OUTPUT = 'Show Output';

/** Least time between two progress updates of the same phase. */
const PROGRESS_INTERVAL_MS = 150;

/**
 * Choices a caller may pass to `parallax.profileModel` after the model URI, to skip those
 * quick picks (other commands, CodeLenses, tests): `executeCommand(id, uri, { mode: 'data',
 * devices: 'cpu:2', batch: 16 })`.
 */
export interface ProfileArgs {
  mode?: ParallelMode;
  devices?: string;
  batch?: number;
}

/** What `parallax.profileModel` resolves with when a run completes (undefined otherwise). */
export interface ProfileCommandResult {
  tracePath: string | null;
  summary: ProfileSummary;
}

function profileArgs(v: unknown): ProfileArgs {
  // The explorer passes (uri, selectedUris[]): only a plain object counts as choices.
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof vscode.Uri) return {};
  const o = v as Record<string, unknown>;
  return {
    ...(o['mode'] === 'data' || o['mode'] === 'pipeline' ? { mode: o['mode'] } : {}),
    ...(typeof o['devices'] === 'string' && checkDeviceSpecText(o['devices']) === null ? { devices: o['devices'] } : {}),
    ...(typeof o['batch'] === 'number' && Number.isInteger(o['batch']) && o['batch'] > 0 ? { batch: o['batch'] } : {}),
  };
}

/**
 * "Profile Model…" and the explorer's "Profile with Parallax": a model (given by the menu,
 * or picked among the workspace's .onnx files), then mode, devices and batch, then the run.
 */
const profileModel: Factory = (ctx) => async (arg?: unknown, choices?: unknown): Promise<ProfileCommandResult | undefined> => {
  if (!vscode.workspace.isTrusted) {
    const manage = 'Manage Workspace Trust';
    const a = await vscode.window.showWarningMessage(
      'Parallax profiles models only in a trusted workspace: loading an ONNX model runs native ONNX Runtime code on its contents. Trust this workspace to profile.',
      manage,
    );
    if (a === manage) void vscode.commands.executeCommand('workbench.trust.manage');
    return;
  }
  if (ctx.isProfiling) return warnBusy(ctx);
  const given = profileArgs(choices);
  const target = arg instanceof vscode.Uri ? arg : await pickModel(ctx.extension.workspaceState.get<string>(LAST_MODEL));
  if (!target) return;
  if (target.scheme !== 'file') {
    void vscode.window.showErrorMessage(
      `Parallax: ${target.toString(true)} is not a file on this machine's disk; the profiler reads models from disk. Copy the model into the workspace folder and profile that copy.`,
    );
    return;
  }
  const settings = ctx.profileSettings(target);
  const mode = given.mode ?? (await pickMode(settings));
  if (!mode) return;
  const devices = given.devices ?? (await pickDevices(settings, ctx.discovered));
  if (!devices) return;
  const batch = given.batch ?? (await pickBatch(settings));
  if (batch === undefined) return;
  await ctx.extension.workspaceState.update(LAST_MODEL, target.toString());

  const root = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? dirname(target.fsPath);
  const label = vscode.workspace.asRelativePath(target, false);
  const outPath = tracePath(root, settings.outputFolder, target.fsPath, mode);
  // Another profile may have started while this one's quick picks were open.
  if (ctx.isProfiling) return warnBusy(ctx);
  return runProfile(ctx, buildPlan({ modelPath: target.fsPath, modelLabel: label, mode, devices, batch }, settings, outPath), label);
};

async function warnBusy(ctx: Ctx): Promise<undefined> {
  const cancel = 'Cancel It';
  const a = await vscode.window.showWarningMessage(`Parallax is already profiling ${ctx.runningLabel}; one profile runs at a time.`, cancel);
  if (a === cancel) ctx.cancelProfile();
  return undefined;
}

async function runProfile(ctx: Ctx, plan: ProfilePlan, label: string): Promise<ProfileCommandResult | undefined> {
  const abort = ctx.beginProfile(label);
  const out = ctx.output;
  out.info(`profiling ${label}: ${plan.mode} parallel on ${plan.devices}, batch ${plan.batch}, ${plan.steps} steps (+${plan.warmup} warm-up) → ${plan.outPath}`);
  const started = Date.now();
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Parallax: profiling ${label}`, cancellable: true },
      (progress, token) => {
        token.onCancellationRequested(() => abort.abort());
        let shown = 0;
        let lastPhase = '';
        let lastAt = 0;
        const nodePath = ctx.runnerNodePath();
        return profile(plan, {
          signal: abort.signal,
          ...(nodePath ? { nodePath } : {}),
          onProgress: (p) => {
            // The runner reports every step; a few updates a second are all a user can read.
            const now = Date.now();
            if (p.phase === lastPhase && now - lastAt < PROGRESS_INTERVAL_MS && p.done < p.total) return;
            lastPhase = p.phase;
            lastAt = now;
            const pct = progressPercent(p, plan.baseline);
            progress.report({ message: progressMessage(p), increment: Math.max(0, pct - shown) });
            shown = Math.max(shown, pct);
            ctx.reportStatus(progressMessage(p));
          },
        });
      },
    );
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    out.info(`profiled ${label} in ${seconds} s; trace written to ${result.tracePath}`);
    for (const line of formatSummary(result.summary, result.findings).split('\n')) out.info(line);
    const traceUri = result.tracePath ? vscode.Uri.file(result.tracePath) : null;
    const where = traceUri ? ` Trace: ${vscode.workspace.asRelativePath(traceUri, false)}` : '';
    const openTrace = 'Open Trace';
    void vscode.window
      .showInformationMessage(`Parallax: profiled ${label} — ${summaryLine(result.summary)}.${where}`, ...(traceUri ? [openTrace] : []), SHOW_OUTPUT)
      .then((a) => {
        if (a === openTrace && traceUri) void vscode.commands.executeCommand('vscode.open', traceUri);
        else if (a === SHOW_OUTPUT) out.show(true);
      });
    return { tracePath: result.tracePath, summary: result.summary };
  } catch (e) {
    if (e instanceof ProfileCancelled) {
      out.info(`profiling ${label} cancelled`);
      void vscode.window.showInformationMessage(`Parallax: profiling ${label} cancelled.`);
      return undefined;
    }
    reportError(ctx, `profiling ${label}`, e);
    return undefined;
  } finally {
    ctx.endProfile();
  }
}

/** Shows an error: a UserError's message as it is, anything else with the first line and the details in the output. */
function reportError(ctx: Ctx, what: string, e: unknown): void {
  let text = e instanceof Error ? e.message : String(e);
  const nodePath = ctx.runnerNodePath();
  if (nodePath && /^cannot start the runner/.test(text)) text += ` (check the setting ${Setting.runnerNodePath}: "${nodePath}")`;
  ctx.output.error(`${what} failed: ${e instanceof Error && !isUserError(e) ? (e.stack ?? text) : text}`);
  const message = isUserError(e) ? `Parallax: ${text}` : `Parallax: ${what} failed: ${text.split('\n')[0]} (details in the Parallax output).`;
  void vscode.window.showErrorMessage(message, SHOW_OUTPUT).then((a) => {
    if (a === SHOW_OUTPUT) ctx.output.show(true);
  });
}

/** "List Devices": discovery runs in a runner process (never ONNX Runtime in the extension host). */
const listDevices: Factory = (ctx) => async () => {
  let d;
  try {
    d = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Parallax: discovering devices', cancellable: true },
      (_progress, token) => {
        const abort = new AbortController();
        token.onCancellationRequested(() => abort.abort());
        const nodePath = ctx.runnerNodePath();
        return discoverInRunner({ signal: abort.signal, probeWebGpu: ctx.probeWebGpu(), ...(nodePath ? { nodePath } : {}) });
      },
    );
  } catch (e) {
    if (e instanceof ProfileCancelled) return;
    reportError(ctx, 'device discovery', e);
    return;
  }
  ctx.discovered = d;
  const host = `${d.host.cpuModel} · ${d.host.logicalCores} logical cores · ${(d.host.memoryBytes / 2 ** 30).toFixed(1)} GiB · ${d.host.os}`;
  ctx.output.info(`devices: ${host}; onnxruntime-node ${d.onnxruntimeVersion}`);
  const rows = d.kinds.map((k) => [k.kind, k.available ? 'yes' : 'no', k.provider, k.detail]);
  for (const line of table(['kind', 'available', 'provider', 'detail'], rows).split('\n')) ctx.output.info(line);

  const details = '$(output) Show details in the Parallax output';
  const picked = await vscode.window.showQuickPick(
    [
      ...d.kinds.map((k) => ({
        label: `${k.available ? '$(check)' : '$(circle-slash)'} ${k.kind}`,
        description: k.available ? `available · provider ${k.provider}` : 'not available',
        detail: k.detail,
      })),
      { label: '', kind: vscode.QuickPickItemKind.Separator },
      { label: details },
    ],
    { title: `Parallax: devices — ${host} · onnxruntime-node ${d.onnxruntimeVersion}`, placeHolder: 'Devices this machine offers Parallax' },
  );
  if (picked?.label === details) ctx.output.show(true);
};

const cancelProfile: Factory = (ctx) => () => {
  if (!ctx.cancelProfile()) void vscode.window.showInformationMessage('Parallax: no profile is running.');
};

const showOutput: Factory = (ctx) => () => ctx.output.show(true);

/** Every command's handler factory, keyed by its id. */
export const commands: Record<CommandId, Factory> = {
  [Command.profileModel]: profileModel,
  [Command.profileFile]: profileModel,
  [Command.listDevices]: listDevices,
  [Command.cancelProfile]: cancelProfile,
  [Command.showOutput]: showOutput,
};
