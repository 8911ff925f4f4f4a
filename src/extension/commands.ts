/**
 * Commands as small factories `(ctx) => handler`, one per id in ids.ts. The table at the end
 * is what extension.ts registers; its type makes a missing handler a compile error.
 */
import { existsSync, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as vscode from 'vscode';
import { isUserError } from '../common/errors';
import { formatSummary, table } from '../cli/format';
import { listDevices as discoverInRunner, profile, ProfileCancelled } from '../runtime/api';
import type { ProfileRequest } from '../runtime/protocol';
import type { DiscoveredDevices } from '../runtime/device/discovery';
import { EtaEstimator } from '../runtime/progress-eta';
import { isParallelMode, TRAIN_DEFAULTS, TRAIN_LOSSES, TRAIN_OPTIMIZERS, type ParallelMode, type TrainLoss, type TrainOptimizer } from '../profiler/plan';
import type { ProfileSummary } from '../profiler/summary';
import { writeChromeTrace } from '../profiler/export-chrome';
import { looksNative } from '../profiler/import/detect';
import { importReport } from '../profiler/import/report';
import { writeTrace } from '../profiler/trace-io';
import {
  configTraceName,
  findPlan,
  isConfigTraceOf,
  parseConfig,
  planModelPath,
  toProfilePlan,
  tracesToPrune,
  type ConfigDoc,
} from './config-model';
import { planKey, rootConfig } from './config-providers';
import type { Ctx } from './ctx';
import { evidenceArgs, formatDuration, lensSummary, planHints } from './hints';
import { CONFIG_FILE, Command, ContextKey, Setting, type CommandId, type PanelCommandId } from './ids';
import { pickBatch, pickDevices, pickLoss, pickMode, pickModel, pickOptimizer } from './pick';
import { buildPlan, checkDeviceSpecText, progressMessage, progressPercent, summaryLine, tracePath } from './run-config';
import { runDescription } from './runs-model';
import { expandTracePaths, importedTraceName } from './open-traces';
import { FindingItem, RunItem } from './views';
import { showTimeline, timelineArgs } from './timeline';

type Handler = (...args: never[]) => unknown;
type Factory = (ctx: Ctx) => Handler;

/** workspaceState key: the model profiled last, offered first next time. */
const LAST_MODEL = 'parallax.lastModel';

/** workspaceState key: what "Re-run Last Profile" runs ({@link LastRun}). */
export const LAST_RUN = 'parallax.lastRun';

/**
 * The last profile: a parallax.json plan (re-read from the file when re-run, so edits and
 * quick fixes apply) or a plan built by "Profile Model…" (run as it was).
 */
export type LastRun = { kind: 'config'; config: string; plan: string } | { kind: 'plan'; plan: ProfileRequest; label: string };

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
    ...(isParallelMode(o['mode']) ? { mode: o['mode'] } : {}),
    ...(typeof o['devices'] === 'string' && checkDeviceSpecText(o['devices']) === null ? { devices: o['devices'] } : {}),
    ...(typeof o['batch'] === 'number' && Number.isInteger(o['batch']) && o['batch'] > 0 ? { batch: o['batch'] } : {}),
  };
}

/**
 * "Profile Model…" and the explorer's "Profile with Parallax": a model (given by the menu,
 * or picked among the workspace's .onnx files), then mode, devices and batch, then the run.
 */
const profileModel: Factory = (ctx) => async (arg?: unknown, choices?: unknown): Promise<ProfileCommandResult | undefined> => {
  if (!(await ensureTrusted())) return;
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
  const devices = given.devices ?? (await pickDevices(settings, ctx.discovered, (signal) => discoverQuietly(ctx, signal)));
  if (!devices) return;
  const batch = given.batch ?? (await pickBatch(settings));
  if (batch === undefined) return;
  await ctx.extension.workspaceState.update(LAST_MODEL, target.toString());

  const root = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? dirname(target.fsPath);
  const label = vscode.workspace.asRelativePath(target, false);
  const outPath = tracePath(root, settings.outputFolder, target.fsPath, mode);
  // Another profile may have started while this one's quick picks were open.
  if (ctx.isProfiling) return warnBusy(ctx);
  const plan = buildPlan({ modelPath: target.fsPath, modelLabel: label, mode, devices, batch }, settings, outPath);
  await rememberLastRun(ctx, { kind: 'plan', plan, label });
  return runProfile(ctx, plan, label);
};

/**
 * Choices a caller may pass to `parallax.profileTraining` after the model URI, to skip those
 * quick picks: `executeCommand(id, uri, { devices: 'cpu:2', batch: 16, loss: 'mse', optimizer: 'sgd' })`.
 */
export interface TrainingArgs {
  devices?: string;
  batch?: number;
  loss?: TrainLoss;
  optimizer?: TrainOptimizer;
}

function trainingArgs(v: unknown): TrainingArgs {
  const base = profileArgs(v);
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof vscode.Uri) return {};
  const o = v as Record<string, unknown>;
  return {
    ...(base.devices ? { devices: base.devices } : {}),
    ...(base.batch ? { batch: base.batch } : {}),
    ...((TRAIN_LOSSES as readonly unknown[]).includes(o['loss']) ? { loss: o['loss'] as TrainLoss } : {}),
    ...((TRAIN_OPTIMIZERS as readonly unknown[]).includes(o['optimizer']) ? { optimizer: o['optimizer'] as TrainOptimizer } : {}),
  };
}

/**
 * "Profile Training Step…": a model, devices, batch, loss and optimizer, then a data-parallel
 * training run (forward, backward, gradient all-reduce, optimizer each step) with the other
 * training settings at their defaults; the trace goes beside the inference traces as
 * `<model>-train.parallax.json`.
 */
const profileTraining: Factory = (ctx) => async (arg?: unknown, choices?: unknown): Promise<ProfileCommandResult | undefined> => {
  if (!(await ensureTrusted())) return;
  if (ctx.isProfiling) return warnBusy(ctx);
  const given = trainingArgs(choices);
  const target = arg instanceof vscode.Uri ? arg : await pickModel(ctx.extension.workspaceState.get<string>(LAST_MODEL), 'training');
  if (!target) return;
  if (target.scheme !== 'file') {
    void vscode.window.showErrorMessage(`Parallax: ${target.toString(true)} is not a file on this machine's disk; the profiler reads models from disk. Copy the model into the workspace folder and train that copy.`);
    return;
  }
  const settings = ctx.profileSettings(target);
  const devices = given.devices ?? (await pickDevices(settings, ctx.discovered, (signal) => discoverQuietly(ctx, signal), 'training'));
  if (!devices) return;
  const batch = given.batch ?? (await pickBatch(settings, 'training'));
  if (batch === undefined) return;
  const loss = given.loss ?? (await pickLoss());
  if (!loss) return;
  const optimizer = given.optimizer ?? (await pickOptimizer());
  if (!optimizer) return;
  await ctx.extension.workspaceState.update(LAST_MODEL, target.toString());
  const root = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? dirname(target.fsPath);
  const label = vscode.workspace.asRelativePath(target, false);
  if (ctx.isProfiling) return warnBusy(ctx);
  const train = { ...TRAIN_DEFAULTS, loss, optimizer };
  const plan = buildPlan({ modelPath: target.fsPath, modelLabel: label, mode: 'data', devices, batch, train }, settings, tracePath(root, settings.outputFolder, target.fsPath, 'train'));
  await rememberLastRun(ctx, { kind: 'plan', plan, label });
  return runProfile(ctx, plan, label);
};

/** Profiling runs native code on the model: only in a trusted workspace (viewing traces works everywhere). */
export async function ensureTrusted(): Promise<boolean> {
  if (vscode.workspace.isTrusted) return true;
  const manage = 'Manage Workspace Trust';
  const a = await vscode.window.showWarningMessage(
    'Parallax profiles models only in a trusted workspace: loading an ONNX model runs native ONNX Runtime code on its contents. Trust this workspace to profile.',
    manage,
  );
  if (a === manage) void vscode.commands.executeCommand('workbench.trust.manage');
  return false;
}

async function rememberLastRun(ctx: Ctx, last: LastRun): Promise<void> {
  await ctx.extension.workspaceState.update(LAST_RUN, last);
  void vscode.commands.executeCommand('setContext', ContextKey.hasLastProfile, true);
}

/** Shows an error about the config file with a button that opens it (at a plan, when given). */
function configError(ctx: Ctx, configUri: vscode.Uri, message: string, plan?: string): undefined {
  ctx.output.error(message);
  const open = `Open ${CONFIG_FILE}`;
  void vscode.window.showErrorMessage(`Parallax: ${message}`, open).then((a) => {
    if (a !== open) return;
    if (plan) void ctx.configHints.revealKey(configUri, plan, null);
    else void vscode.window.showTextDocument(configUri);
  });
  return undefined;
}

/** The workspace's parallax.json: the only one, or the one picked among the folders'. */
async function pickConfig(): Promise<vscode.Uri | undefined> {
  const found = (vscode.workspace.workspaceFolders ?? []).map((f) => ({ folder: f, uri: rootConfig(f) })).filter((x) => x.uri !== null);
  if (found.length === 0) {
    const create = `Create ${CONFIG_FILE}`;
    const folder = vscode.workspace.workspaceFolders?.[0];
    const a = await vscode.window.showInformationMessage(
      `Parallax: no ${CONFIG_FILE} in the workspace folder${(vscode.workspace.workspaceFolders?.length ?? 0) > 1 ? 's' : ''}. It holds named plans: { "plans": { "<name>": { "model": "models/x.onnx", "mode": "pipeline", "devices": "cpu:2", "batch": 64 } } }.`,
      ...(folder ? [create] : []),
    );
    if (a === create && folder) {
      const uri = vscode.Uri.file(join(folder.uri.fsPath, CONFIG_FILE));
      const edit = new vscode.WorkspaceEdit();
      edit.createFile(uri, { ignoreIfExists: true, contents: Buffer.from(STARTER_CONFIG) });
      await vscode.workspace.applyEdit(edit);
      await vscode.window.showTextDocument(uri);
    }
    return undefined;
  }
  if (found.length === 1) return found[0]!.uri!;
  const picked = await vscode.window.showQuickPick(
    found.map((x) => ({ label: x.folder.name, description: vscode.workspace.asRelativePath(x.uri!, true), uri: x.uri! })),
    { title: `Parallax: Profile with Config — which ${CONFIG_FILE}`, ignoreFocusOut: true },
  );
  return picked?.uri;
}

/** What "Create parallax.json" writes: one plan per mode, on a model path to fill in. */
const STARTER_CONFIG = `{
  "plans": {
    "data2": { "model": "models/model.onnx", "mode": "data", "devices": "cpu:2", "batch": 64, "steps": 20 },
    "pipe2": { "model": "models/model.onnx", "mode": "pipeline", "devices": "cpu:2", "batch": 64, "microBatches": 4, "steps": 20 }
  }
}
`;

async function pickPlan(ctx: Ctx, configUri: vscode.Uri, doc: ConfigDoc): Promise<string | undefined> {
  if (doc.plans.length === 1) return doc.plans[0]!.name;
  const items = await Promise.all(
    doc.plans.map(async (p) => {
      const v = p.values;
      const run = await ctx.configHints.lastRun(configUri, p);
      const errors = p.problems.filter((x) => x.severity === 'error');
      return {
        label: p.name,
        description: [v.mode ?? 'data', v.devices, v.batch !== undefined ? `batch ${v.batch}` : undefined, v.model].filter((x) => x !== undefined).join(' · '),
        detail: errors.length > 0 ? `$(error) ${errors[0]!.message}` : run?.digest.summary ? lensSummary(run.digest.summary) : v.description,
        name: p.name,
      };
    }),
  );
  const picked = await vscode.window.showQuickPick(items, { title: `Parallax: Profile with Config — plan`, placeHolder: `Plans in ${vscode.workspace.asRelativePath(configUri, false)}`, ignoreFocusOut: true });
  return picked?.name;
}

/**
 * "Profile with Config…": a plan of parallax.json (given by a CodeLens or picked), saved
 * first if its editor has changes, run into its own timestamped trace; older traces of the
 * plan beyond `parallax.output.keepRuns` are deleted afterwards.
 */
const profileConfig: Factory = (ctx) => async (arg?: unknown, planArg?: unknown): Promise<ProfileCommandResult | undefined> => {
  if (!(await ensureTrusted())) return;
  if (ctx.isProfiling) return warnBusy(ctx);
  const configUri = arg instanceof vscode.Uri ? arg : await pickConfig();
  if (!configUri) return;
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === configUri.toString());
  // The run uses what the file says, as a launch configuration does: save pending edits first.
  if (open?.isDirty) await open.save();
  const src = await ctx.configHints.configText(configUri);
  if (!src) return configError(ctx, configUri, `cannot read ${configUri.fsPath}`);
  const doc = parseConfig(src.text);
  const rel = vscode.workspace.asRelativePath(configUri, false);
  if (doc.plans.length === 0) return configError(ctx, configUri, `${rel} has no plans${doc.problems[0] ? ` (${doc.problems[0].message})` : ''}; add one under "plans"`);
  const name = typeof planArg === 'string' ? planArg : await pickPlan(ctx, configUri, doc);
  if (name === undefined) return;
  const plan = findPlan(doc, name);
  if (!plan) return configError(ctx, configUri, `${rel} has no plan "${name}"; its plans are ${doc.plans.map((p) => `"${p.name}"`).join(', ')}`);
  const error = plan.problems.find((p) => p.severity === 'error');
  if (error) return configError(ctx, configUri, `plan "${name}" in ${rel} cannot run: ${error.message}`, name);
  const modelPath = planModelPath(plan, configUri.fsPath)!;
  if (!existsSync(modelPath)) return configError(ctx, configUri, `plan "${name}" in ${rel}: no model file at ${modelPath} (relative paths start at the file's folder)`, name);
  const settings = ctx.profileSettings(configUri);
  const folder = vscode.workspace.getWorkspaceFolder(configUri);
  const dir = folder ? ctx.runs.outputDir(folder) : join(dirname(configUri.fsPath), settings.outputFolder);
  const at = new Date();
  let n = 0;
  while (existsSync(join(dir, configTraceName(modelPath, name, at, n)))) n++;
  const outPath = join(dir, configTraceName(modelPath, name, at, n));
  const pp = toProfilePlan(plan, configUri.fsPath, settings, outPath)!;
  await rememberLastRun(ctx, { kind: 'config', config: configUri.toString(), plan: name });
  if (ctx.isProfiling) return warnBusy(ctx);
  const result = await runProfile(ctx, pp, `plan "${name}" (${plan.values.model})`, planKey(configUri, name));
  if (result) await pruneRuns(ctx, dir, modelPath, name, ctx.keepRuns(configUri));
  return result;
};

/** Deletes a plan's oldest traces beyond `keep` (0 keeps all). */
async function pruneRuns(ctx: Ctx, dir: string, modelPath: string, planName: string, keep: number): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  const old = tracesToPrune(names.filter((f) => isConfigTraceOf(f, modelPath, planName)), keep);
  for (const f of old) {
    await fs.rm(join(dir, f), { force: true });
    ctx.output.info(`removed ${f}: ${Setting.outputKeepRuns} keeps the newest ${keep} traces of plan "${planName}"`);
  }
  if (old.length > 0) await ctx.runs.refresh();
}

/** "Re-run Last Profile": the last plan again; a parallax.json plan is read afresh from its file. */
const rerunProfile: Factory = (ctx) => async (): Promise<ProfileCommandResult | undefined> => {
  // First, so that an untrusted workspace hears why before anything else (also with no last run).
  if (!(await ensureTrusted())) return;
  const last = ctx.extension.workspaceState.get<LastRun>(LAST_RUN);
  if (!last) {
    void vscode.window.showInformationMessage('Parallax: nothing profiled yet in this workspace; run "Profile Model…" or "Profile with Config…" first.');
    return;
  }
  if (last.kind === 'config') return (await vscode.commands.executeCommand(Command.profileConfig, vscode.Uri.parse(last.config), last.plan)) as ProfileCommandResult | undefined;
  if (ctx.isProfiling) return warnBusy(ctx);
  if (!existsSync(last.plan.modelPath)) {
    void vscode.window.showErrorMessage(`Parallax: the last profiled model ${last.plan.modelPath} is gone; profile another with "Profile Model…".`);
    return;
  }
  return runProfile(ctx, last.plan, last.label);
};

export async function warnBusy(ctx: Ctx): Promise<undefined> {
  const cancel = 'Cancel It';
  const a = await vscode.window.showWarningMessage(`Parallax is already profiling ${ctx.runningLabel}; one profile runs at a time.`, cancel);
  if (a === cancel) ctx.cancelProfile();
  return undefined;
}

async function runProfile(ctx: Ctx, plan: ProfileRequest, label: string, runningPlan: string | null = null): Promise<ProfileCommandResult | undefined> {
  const abort = ctx.beginProfile(label, runningPlan);
  const out = ctx.output;
  const p = plan.plan;
  out.info(`profiling ${label}: ${p.mode} parallel on ${p.devices}, batch ${p.batch}, ${p.steps} steps (+${p.warmup} warm-up) → ${plan.outPath}`);
  const started = Date.now();
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Parallax: profiling ${label}`, cancellable: true },
      (progress, token) => {
        token.onCancellationRequested(() => abort.abort());
        let shown = 0;
        let lastPhase = '';
        let lastAt = 0;
        const eta = new EtaEstimator();
        const nodePath = ctx.runnerNodePath();
        return profile(plan, {
          signal: abort.signal,
          ...(nodePath ? { nodePath } : {}),
          onProgress: (p) => {
            // The runner reports every step; a few updates a second are all a user can read.
            const now = Date.now();
            const left = eta.update(p, now);
            if (p.phase === lastPhase && now - lastAt < PROGRESS_INTERVAL_MS && p.done < p.total) return;
            lastPhase = p.phase;
            lastAt = now;
            const pct = progressPercent(p, plan.baseline);
            const message = progressMessage(p, left);
            progress.report({ message, increment: Math.max(0, pct - shown) });
            shown = Math.max(shown, pct);
            ctx.reportStatus(message);
          },
        });
      },
    );
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    out.info(reportBlock(`profiled ${label} in ${seconds} s; trace written to ${result.tracePath}`, formatSummary(result.summary, result.findings)));
    const traceUri = result.tracePath ? vscode.Uri.file(result.tracePath) : null;
    // The views, CodeLenses and hints follow the new trace without waiting for the file watcher.
    await ctx.runs.refresh();
    if (result.tracePath) ctx.currentTrace = result.tracePath;
    const openNow = traceUri !== null && ctx.openTimelineOnFinish();
    if (openNow) void showTimeline(ctx, { tracePath: traceUri.fsPath });
    const where = traceUri ? ` Trace: ${vscode.workspace.asRelativePath(traceUri, false)}` : '';
    const openTrace = 'Open Trace';
    void vscode.window
      .showInformationMessage(`Parallax: profiled ${label} — ${summaryLine(result.summary)}.${where}`, ...(traceUri && !openNow ? [openTrace] : []), SHOW_OUTPUT)
      .then((a) => {
        if (a === openTrace && traceUri) void showTimeline(ctx, { tracePath: traceUri.fsPath });
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
export function reportError(ctx: Ctx, what: string, e: unknown): void {
  let text = e instanceof Error ? e.message : String(e);
  const nodePath = ctx.runnerNodePath();
  if (nodePath && /^cannot start the runner/.test(text)) text += ` (check the setting ${Setting.runnerNodePath}: "${nodePath}")`;
  ctx.output.error(`${what} failed: ${e instanceof Error && !isUserError(e) ? (e.stack ?? text) : text}`);
  const message = isUserError(e) ? `Parallax: ${text}` : `Parallax: ${what} failed: ${text.split('\n')[0]} (details in the Parallax output).`;
  void vscode.window.showErrorMessage(message, SHOW_OUTPUT).then((a) => {
    if (a === SHOW_OUTPUT) ctx.output.show(true);
  });
}

/**
 * One log message for a heading and a multi-line report (a summary, a table): the log channel
 * stamps the heading, and the report's lines follow as they are, aligned as in a terminal,
 * rather than each line behind a timestamp of its own.
 */
function reportBlock(heading: string, report: string): string {
  return `${heading}\n${report}\n`;
}

/**
 * Discovers the machine's devices in a runner process (never ONNX Runtime in the extension
 * host), remembers them and writes them to the output as a table.
 */
async function discover(ctx: Ctx, signal: AbortSignal): Promise<DiscoveredDevices> {
  const nodePath = ctx.runnerNodePath();
  const d = await discoverInRunner({ signal, probeWebGpu: ctx.probeWebGpu(), ...(nodePath ? { nodePath } : {}) });
  ctx.discovered = d;
  const rows = d.kinds.map((k) => [k.kind, k.available ? 'yes' : 'no', k.provider, k.detail]);
  ctx.output.info(reportBlock(`devices: ${hostLine(d)}; onnxruntime-node ${d.onnxruntimeVersion}`, table(['kind', 'available', 'provider', 'detail'], rows)));
  return d;
}

/** {@link discover} for the device pick: null (the reason in the output) when it fails or is stopped. */
async function discoverQuietly(ctx: Ctx, signal: AbortSignal): Promise<DiscoveredDevices | null> {
  try {
    return await discover(ctx, signal);
  } catch (e) {
    if (!(e instanceof ProfileCancelled)) ctx.output.warn(`device discovery failed: ${e instanceof Error ? e.message : String(e)}`);
    return null;
  }
}

function hostLine(d: DiscoveredDevices): string {
  return `${d.host.cpuModel} · ${d.host.logicalCores} logical cores · ${(d.host.memoryBytes / 2 ** 30).toFixed(1)} GiB · ${d.host.os}`;
}

/** "List Devices": discovery with a progress notification, then what it found in a quick pick. */
const listDevices: Factory = (ctx) => async () => {
  let d;
  try {
    d = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Parallax: discovering devices', cancellable: true },
      (_progress, token) => {
        const abort = new AbortController();
        token.onCancellationRequested(() => abort.abort());
        return discover(ctx, abort.signal);
      },
    );
  } catch (e) {
    if (e instanceof ProfileCancelled) return;
    reportError(ctx, 'device discovery', e);
    return;
  }
  const host = hostLine(d);

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

/** A trace path from a command argument: a URI (explorer, notifications) or a Runs view item. */
function tracePathOf(v: unknown): string | null {
  if (v instanceof vscode.Uri) return v.scheme === 'file' ? v.fsPath : null;
  if (v instanceof RunItem) return v.run.path;
  return null;
}

const BROWSE = '$(folder-opened) Browse…';

/** Picks a trace among the runs (newest first) or on disk. */
async function pickTrace(ctx: Ctx, title: string, exclude?: string): Promise<string | undefined> {
  const runs = ctx.runs.list().filter((r) => r.path !== exclude).slice(0, 100);
  const items = await Promise.all(
    runs.map(async (r) => {
      const d = await ctx.runs.digest(r.path);
      return {
        label: r.name.replace(/\.parallax\.json$/, ''),
        description: d ? runDescription(d, formatDuration) : '',
        detail: `${vscode.workspace.asRelativePath(r.uri, false)} · ${new Date(r.mtimeMs).toLocaleString()}`,
        path: r.path as string | undefined,
      };
    }),
  );
  items.push({ label: BROWSE, description: 'a trace file elsewhere', detail: '', path: undefined });
  const picked = await vscode.window.showQuickPick(items, { title, matchOnDescription: true, matchOnDetail: true, ignoreFocusOut: true });
  if (!picked) return undefined;
  if (picked.path) return picked.path;
  const dir = ctx.runs.outputDirs()[0]?.dir;
  const chosen = await vscode.window.showOpenDialog({
    canSelectMany: false,
    filters: { 'Parallax trace': ['json'], 'PyTorch profiler trace (Kineto)': ['json', 'gz'] },
    title,
    openLabel: 'Open',
    ...(dir && existsSync(dir) ? { defaultUri: vscode.Uri.file(dir) } : {}),
  });
  return chosen?.[0]?.fsPath;
}

/** Checks that a file is a Parallax trace (its digest has a meta or a summary); adds outside files to the Runs view. */
async function admitTrace(ctx: Ctx, path: string): Promise<boolean> {
  const d = await ctx.runs.digest(path);
  if (!d || (!d.meta && !d.summary)) {
    void vscode.window.showErrorMessage(`Parallax: ${path} is not a Parallax trace (no "meta" or "summary"); pick a .parallax.json file that Parallax wrote.`);
    return false;
  }
  if (!ctx.runs.entry(path)) await ctx.runs.addExternal(path);
  return true;
}

/**
 * "Open Trace…": a trace into the timeline: a Parallax trace, or PyTorch profiler traces
 * imported first, one file or a job's ranks (files selected together in the explorer, or a
 * folder) into one timeline. Works in untrusted workspaces: reading a trace runs nothing.
 */
const openTrace: Factory = (ctx) => async (arg?: unknown, selection?: unknown) => {
  const selected = Array.isArray(selection) ? selection.map(tracePathOf).filter((p): p is string => p !== null) : [];
  const one = tracePathOf(arg) ?? (selected.length > 1 ? null : await pickTrace(ctx, 'Parallax: Open Trace'));
  const given = selected.length > 1 ? selected : one ? [one] : [];
  if (given.length === 0) return;
  let expanded: Awaited<ReturnType<typeof expandTracePaths>>;
  try {
    expanded = await expandTracePaths(given);
  } catch (e) {
    void vscode.window.showErrorMessage(`Parallax: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  const { files, folder } = expanded;
  const native = await Promise.all(files.map((f) => looksNative(f).catch(() => false)));
  if (files.length > 1 && native.some((n) => n)) {
    void vscode.window.showErrorMessage(
      `Parallax: ${basename(files[native.indexOf(true)]!)} is a Parallax trace; open it alone, or select only the PyTorch profiler traces of one job's ranks`,
    );
    return;
  }
  const path = files.length === 1 && native[0] ? files[0] : await importForTimeline(ctx, files, importedTraceName(files, folder));
  if (!path || !(await admitTrace(ctx, path))) return;
  await showTimeline(ctx, { tracePath: path });
};

/**
 * Traces that are not Parallax traces (PyTorch profiler traces, plain or gzip; several files
 * are the ranks of one job) are imported first, streamed in worker threads so the extension
 * host stays responsive, and written as `name` to the output folder (beside the first file
 * when no folder is open). Returns the written trace, or undefined after showing why it could
 * not be imported.
 */
async function importForTimeline(ctx: Ctx, paths: string[], name: string): Promise<string | undefined> {
  const path = paths[0]!;
  const dir = ctx.runs.outputDirs()[0]?.dir ?? dirname(path);
  const out = join(dir, name);
  const warnings: string[] = [];
  const what = paths.length === 1 ? basename(path) : `${paths.length} ranks`;
  try {
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Parallax: importing ${what}` }, async () => {
      const { trace } = await importReport(paths, { offThread: true, warn: (line) => warnings.push(line) });
      await fs.mkdir(dir, { recursive: true });
      await writeTrace(out, trace);
    });
  } catch (e) {
    void vscode.window.showErrorMessage(`Parallax: ${isUserError(e) ? e.message : `cannot import ${what}: ${e instanceof Error ? e.message : String(e)}`}`);
    return undefined;
  }
  for (const w of warnings) void vscode.window.showWarningMessage(`Parallax: ${w}`);
  ctx.output.info(`imported ${paths.join(', ')} → ${out}`);
  return out;
}

/** "Compare Runs…": two traces aligned in the timeline (two selected in the Runs view, one and a pick, or two picks). */
const compareRuns: Factory = (ctx) => async (arg?: unknown, selection?: unknown) => {
  const selected = Array.isArray(selection) ? selection.map(tracePathOf).filter((p): p is string => p !== null) : [];
  let a: string | undefined;
  let b: string | undefined;
  if (selected.length >= 2) [a, b] = selected;
  else {
    a = tracePathOf(arg) ?? (await pickTrace(ctx, 'Parallax: Compare Runs (1/2) — first run'));
    if (!a) return;
    b = await pickTrace(ctx, `Parallax: Compare Runs (2/2) — compare ${basename(a)} with`, a);
  }
  if (!a || !b) return;
  if (!(await admitTrace(ctx, a)) || !(await admitTrace(ctx, b))) return;
  await showTimeline(ctx, { tracePath: a, comparePath: b });
};

/** "Export Trace for Perfetto…": Chrome Trace Event JSON, which ui.perfetto.dev and chrome://tracing open. */
const exportTrace: Factory = (ctx) => async (arg?: unknown) => {
  const path = tracePathOf(arg) ?? (await pickTrace(ctx, 'Parallax: Export Trace for Perfetto'));
  if (!path) return;
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.file(path.replace(/\.parallax\.json$|\.json$/, '') + '.perfetto.json'),
    filters: { 'Chrome Trace Event JSON': ['json'] },
    title: 'Export for Perfetto',
    saveLabel: 'Export',
  });
  if (!target) return;
  try {
    // toChromeTrace's events, written in chunks (a trace of millions of spans never becomes one string).
    await writeChromeTrace(await ctx.runs.trace(path), target.fsPath);
  } catch (e) {
    reportError(ctx, `exporting ${basename(path)}`, e);
    return;
  }
  const perfetto = 'Open Perfetto';
  const reveal = 'Reveal in Explorer';
  const a = await vscode.window.showInformationMessage(
    `Parallax: exported ${vscode.workspace.asRelativePath(target, false)}; open ui.perfetto.dev and drop the file in (it stays on this machine).`,
    perfetto,
    reveal,
  );
  if (a === perfetto) void vscode.env.openExternal(vscode.Uri.parse('https://ui.perfetto.dev'));
  else if (a === reveal) void vscode.commands.executeCommand('revealFileInOS', target);
};

/** Hover links and hints: the timeline at a range (args checked, since links carry JSON). */
const revealInTimeline: Factory = (ctx) => async (arg?: unknown) => {
  const args = timelineArgs(arg);
  if (!args) return;
  await showTimeline(ctx, args);
};

/** The node a finding names, for findings about an operator (`dominant-op`: "… most of it in <node>."). */
function findingNode(message: string): string | null {
  const m = /most of it in (\S+)\.$/.exec(message);
  return m ? m[1]! : null;
}

/** Reads the `{ tracePath, index }` a Findings view item passes; null when it is not one. */
function findingArg(arg: unknown): { tracePath: string; index: number } | null {
  const o = typeof arg === 'object' && arg !== null ? (arg as { tracePath?: unknown; index?: unknown }) : {};
  if (typeof o.tracePath === 'string' && typeof o.index === 'number') return { tracePath: o.tracePath, index: o.index };
  // The inline action on a Findings view item passes the item itself.
  if (arg instanceof FindingItem) return { tracePath: arg.tracePath, index: arg.index };
  return null;
}

/** A Findings view item: the timeline at the finding's evidence (its time range and lanes). */
const showFinding: Factory = (ctx) => async (arg?: unknown) => {
  const o = findingArg(arg);
  if (!o) return;
  const d = await ctx.runs.digest(o.tracePath);
  const f = d?.findings[o.index];
  if (!d || !f) return;
  await showTimeline(ctx, evidenceArgs(f, o.tracePath));
};

/**
 * A Findings view item's secondary action: the source the finding maps to — the plan's key
 * in parallax.json for a run of a plan, else the Python definition of the node it names.
 */
const showFindingSource: Factory = (ctx) => async (arg?: unknown) => {
  const o = findingArg(arg);
  if (!o) return;
  const d = await ctx.runs.digest(o.tracePath);
  const f = d?.findings[o.index];
  if (!d || !f) return;
  const entry = ctx.runs.entry(o.tracePath);
  const config = entry?.folder ? rootConfig(entry.folder) : null;
  if (config && entry) {
    const src = await ctx.configHints.configText(config);
    const doc = src ? parseConfig(src.text) : null;
    for (const plan of doc?.plans ?? []) {
      const model = planModelPath(plan, config.fsPath);
      if (model === null || !isConfigTraceOf(entry.name, model, plan.name)) continue;
      const hint = planHints(d.findings, plan, d.meta?.plan ?? null, ctx.profileSettings(config)).find((h) => h.findingIndex === o.index);
      if (hint) {
        await ctx.configHints.revealKey(config, plan.name, hint.keyWritten ? hint.key : null);
        return;
      }
    }
  }
  const node = findingNode(f.message);
  const loc = node ? await ctx.sourceHints.locateNode(o.tracePath, node) : null;
  if (loc) await vscode.window.showTextDocument(loc.uri, { selection: loc.range, preview: true });
  else void vscode.window.showInformationMessage(`Parallax: the finding "${f.id}" maps to no key of parallax.json and no node of the model's source.`);
};

/** Runs view: deletes traces (the selection, or one picked) after a modal confirmation; to the trash where there is one. */
const deleteRun: Factory = (ctx) => async (arg?: unknown, selection?: unknown) => {
  let paths = Array.isArray(selection) ? selection.map(tracePathOf).filter((p): p is string => p !== null) : [];
  const one = tracePathOf(arg);
  if (paths.length === 0 && one) paths = [one];
  if (one && !paths.includes(one)) paths = [one];
  if (paths.length === 0) {
    const p = await pickTrace(ctx, 'Parallax: Delete Trace');
    if (!p) return;
    paths = [p];
  }
  const names = paths.map((p) => basename(p));
  const del = 'Delete';
  const a = await vscode.window.showWarningMessage(
    paths.length === 1 ? `Delete the trace ${names[0]}?` : `Delete ${paths.length} traces?`,
    { modal: true, detail: `${paths.length > 1 ? `${names.join('\n')}\n\n` : ''}The files go to the trash where the system has one; otherwise they are deleted for good.` },
    del,
  );
  if (a !== del) return;
  for (const p of paths) {
    const uri = vscode.Uri.file(p);
    try {
      await vscode.workspace.fs.delete(uri, { useTrash: true });
    } catch {
      try {
        await vscode.workspace.fs.delete(uri, { useTrash: false });
      } catch (e) {
        reportError(ctx, `deleting ${basename(p)}`, e);
        continue;
      }
    }
    ctx.runs.forget(p);
    if (ctx.currentTrace === p) ctx.currentTrace = null;
  }
  await ctx.runs.refresh();
};

const refreshRuns: Factory = (ctx) => () => ctx.runs.refresh();

/** Every command's handler factory, keyed by its id (the panel's commands are registered by the panel). */
export const commands: Record<Exclude<CommandId, PanelCommandId>, Factory> = {
  [Command.profileModel]: profileModel,
  [Command.profileFile]: profileModel,
  [Command.profileTraining]: profileTraining,
  [Command.listDevices]: listDevices,
  [Command.cancelProfile]: cancelProfile,
  [Command.showOutput]: showOutput,
  [Command.profileConfig]: profileConfig,
  [Command.rerunProfile]: rerunProfile,
  [Command.openTrace]: openTrace,
  [Command.compareRuns]: compareRuns,
  [Command.exportTrace]: exportTrace,
  [Command.revealInTimeline]: revealInTimeline,
  [Command.showFinding]: showFinding,
  [Command.showFindingSource]: showFindingSource,
  [Command.deleteRun]: deleteRun,
  [Command.refreshRuns]: refreshRuns,
};
