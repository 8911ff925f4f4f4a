/**
 * The sweep panel: one webview panel (a singleton) with a plan sweep's table, its error and
 * measurement quality, and its efficiency chart (the view is webview/src/sweep/).
 *
 *  - "Parallax: Sweep Plans…" (`parallax.sweepPlans`; also the explorer's menu on .onnx files)
 *    runs `runSweep` on a model, with progress and a cancel button as a profile has, and keeps
 *    the result and every plan's traces in the extension's storage.
 *  - "Parallax: Open Sweep…" (`parallax.openSweep`; also the explorer's menu on
 *    `*sweep*.json`) opens a `parallax sweep --out` file, checked against the sweep schema
 *    first; its traces are those `--traces` wrote beside it (or in a `traces` folder there).
 *  - Selecting a row shows the plan's measured run and its prediction compared in the
 *    timeline panel (`showTimeline` with a compare path). The view names the row by index;
 *    the files come from the host's own copy of the sweep, never from the message.
 *  - The panel survives a window reload: the shown sweep.json's path is kept in
 *    workspaceState and the serializer reads it again.
 */
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import { isUserError } from '../common/errors';
import { ProfileCancelled } from '../runtime/api';
import { runSweep } from '../runtime/sweep';
import type { SweepMode } from '../profiler/sweep/enumerate';
import { findTracesDir, readSweepResult, sweepTracePath, sweepTracesIn, writeSweepTraces } from '../profiler/sweep/files';
import type { SweepResult } from '../profiler/sweep/schema';
import { writeFileAtomic } from '../profiler/trace-io';
import { SWEEP_PROTOCOL_VERSION, type PlanTraces, type ToSweepView } from '../../webview/src/sweep-protocol';
import { ensureTrusted, reportError, warnBusy } from './commands';
import type { Ctx } from './ctx';
import { Command } from './ids';
import { pickModel } from './pick';
import { microBatchChoices, modeChoices, sweepArgs, SWEEP_DEFAULTS, type ChoiceItem, type SweepArgs } from './sweep-args';
import { showTimeline } from './timeline';
import { checkFromSweepView } from './webview-messages';
import { errorHtml, SWEEP_VIEW_TYPE, sweepHtml, timelineWebviewOptions } from './webview-html';

/** A sweep the panel shows: the result, where its traces lie, and which each plan has. */
export interface ShownSweep {
  result: SweepResult;
  /** The sweep.json it came from. */
  path: string;
  /** The folder of its traces, or null when none was found. */
  tracesDir: string | null;
  traces: PlanTraces[];
}

/** What `parallax.sweepPlans` and `parallax.openSweep` resolve with when a panel shows a sweep. */
export interface SweepCommandResult {
  sweepPath: string;
  plans: number;
}

/** workspaceState key of the shown sweep.json, for the serializer. One key: the panel is a singleton. */
const STATE_KEY = 'parallax.sweep.shown';

export class SweepPanel {
  static current: SweepPanel | undefined;
  private ready = false;
  private shown: ShownSweep | null = null;
  private readonly listeners: vscode.Disposable[] = [];

  private constructor(
    private readonly ctx: Ctx,
    readonly panel: vscode.WebviewPanel,
  ) {
    this.listeners.push(
      panel.webview.onDidReceiveMessage((m: unknown) => this.onMessage(m)),
      panel.onDidDispose(() => this.disposed()),
    );
  }

  /** Shows a sweep, in the panel (created when there is none). */
  static show(ctx: Ctx, shown: ShownSweep): SweepPanel {
    let p = SweepPanel.current;
    if (!p) {
      const panel = vscode.window.createWebviewPanel(SWEEP_VIEW_TYPE, 'Parallax sweep', { viewColumn: vscode.ViewColumn.Active, preserveFocus: false }, timelineWebviewOptions(ctx.extension.extensionUri));
      p = SweepPanel.current = new SweepPanel(ctx, panel);
    } else p.panel.reveal(undefined, false);
    p.present(shown);
    return p;
  }

  /**
   * Restores the panel after a window reload (the serializer's call): the sweep.json it
   * showed is read again; a file gone or changed into something else is one line in the panel.
   */
  static async revive(ctx: Ctx, panel: vscode.WebviewPanel): Promise<void> {
    if (SweepPanel.current) {
      panel.dispose();
      return;
    }
    panel.webview.options = timelineWebviewOptions(ctx.extension.extensionUri);
    const p = (SweepPanel.current = new SweepPanel(ctx, panel));
    const saved = ctx.extension.workspaceState.get<unknown>(STATE_KEY);
    const message = (text: string): void => {
      ctx.output.error(text);
      panel.webview.html = errorHtml(panel.webview, ctx.extension.extensionUri, 'Parallax sweep', text);
    };
    if (typeof saved !== 'string') return message('Parallax cannot restore this sweep: no sweep file is recorded for it. Run "Parallax: Open Sweep…" to open one.');
    try {
      p.present(await loadSweep(saved));
    } catch (e) {
      message(`Parallax cannot restore this sweep: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private present(shown: ShownSweep): void {
    this.shown = shown;
    void this.ctx.extension.workspaceState.update(STATE_KEY, shown.path);
    const title = `${shown.result.model} · sweep over ${shown.result.devices}`;
    this.panel.title = `Sweep: ${shown.result.model}`;
    // A fresh page each time: the view draws the sweep it is sent once it says `ready`.
    this.ready = false;
    this.panel.webview.html = sweepHtml(this.panel.webview, this.ctx.extension.extensionUri, title);
  }

  private post(m: ToSweepView): void {
    if (this.ready) void this.panel.webview.postMessage(m);
  }

  private message(): ToSweepView | null {
    const s = this.shown;
    if (!s) return null;
    const none = s.traces.every((t) => !t.predicted && !t.measured);
    return {
      type: 'sweep',
      result: s.result,
      title: `${s.result.model} · sweep over ${s.result.devices}`,
      traces: s.traces,
      tracesNote: none
        ? `The plans' traces are not there: no <plan>.predicted.parallax.json beside ${basename(s.path)}. Run \`parallax sweep … --out ${basename(s.path)} --traces <its folder>\` to keep them, then open the sweep again.`
        : null,
    };
  }

  private onMessage(data: unknown): void {
    const checked = checkFromSweepView(data);
    if (!checked.ok) {
      this.ctx.output.warn(`sweep: rejected a message from the view: ${checked.error}`);
      return;
    }
    const m = checked.message;
    switch (m.type) {
      case 'ready': {
        if (m.protocol !== SWEEP_PROTOCOL_VERSION) this.ctx.output.warn(`sweep: the view speaks protocol ${m.protocol}, the extension ${SWEEP_PROTOCOL_VERSION}`);
        this.ready = true;
        const msg = this.message();
        if (msg) this.post(msg);
        break;
      }
      case 'error':
        this.ctx.output.error(`sweep view: ${m.message.slice(0, 300)}`);
        break;
      case 'selectPlan':
        void this.selectPlan(m.index);
        break;
    }
  }

  /** Shows plan `index`'s measured run with its prediction compared (or the prediction alone). */
  private async selectPlan(index: number): Promise<void> {
    const s = this.shown;
    const plan = s?.result.plans[index];
    const t = s?.traces[index];
    if (!s || !plan || !t) {
      this.ctx.output.warn(`sweep: the view selected plan ${index}, which the sweep does not have`);
      return;
    }
    if (!s.tracesDir || (!t.measured && !t.predicted)) {
      void vscode.window.showWarningMessage(`Parallax: the traces of "${plan.label}" are not there; run the sweep with --traces to keep them.`);
      return;
    }
    const predicted = sweepTracePath(s.tracesDir, plan.label, 'predicted');
    const measured = sweepTracePath(s.tracesDir, plan.label, 'measured');
    this.ctx.output.info(`sweep: showing ${plan.label}${t.measured && t.predicted ? ': measured and predicted' : t.predicted ? ' (predicted only)' : ' (measured only)'}`);
    if (t.measured && t.predicted) await showTimeline(this.ctx, { tracePath: measured, comparePath: predicted });
    else await showTimeline(this.ctx, { tracePath: t.predicted ? predicted : measured });
  }

  private disposed(): void {
    if (SweepPanel.current === this) SweepPanel.current = undefined;
    this.shown = null;
    for (const d of this.listeners.splice(0)) d.dispose();
  }
}

/** Reads a sweep.json and finds its traces. Throws a UserError for a file that is not a sweep. */
async function loadSweep(path: string): Promise<ShownSweep> {
  const result = await readSweepResult(path);
  const tracesDir = await findTracesDir(path, result);
  return { result, path, tracesDir, traces: await sweepTracesIn(tracesDir, result) };
}

/** Opens a sweep.json into the panel; errors are one message naming the file. */
export async function openSweepFile(ctx: Ctx, path: string): Promise<SweepCommandResult | undefined> {
  let shown: ShownSweep;
  try {
    shown = await loadSweep(path);
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    ctx.output.error(`sweep: ${path}: ${text}`);
    void vscode.window.showErrorMessage(isUserError(e) ? `Parallax: ${text}` : `Parallax: cannot open ${vscode.workspace.asRelativePath(path, false)}: ${text}`);
    return undefined;
  }
  ctx.output.info(`sweep: ${path}: ${shown.result.plans.length} plans, traces ${shown.tracesDir ?? 'not found'}`);
  SweepPanel.show(ctx, shown);
  return { sweepPath: path, plans: shown.result.plans.length };
}

/** `parallax.openSweep`: a sweep.json given by the explorer, or picked. */
const openSweepCommand =
  (ctx: Ctx) =>
  async (arg?: unknown): Promise<SweepCommandResult | undefined> => {
    let path: string | undefined;
    if (arg instanceof vscode.Uri) {
      if (arg.scheme !== 'file') {
        void vscode.window.showErrorMessage(`Parallax: ${arg.toString(true)} is not a file on this machine's disk; copy the sweep into the workspace folder and open that copy.`);
        return undefined;
      }
      path = arg.fsPath;
    } else {
      const picked = await vscode.window.showOpenDialog({
        title: 'Parallax: open a sweep (the file `parallax sweep --out` wrote)',
        openLabel: 'Open Sweep',
        canSelectMany: false,
        filters: { 'Parallax sweeps': ['json'] },
        ...(vscode.workspace.workspaceFolders?.[0] ? { defaultUri: vscode.workspace.workspaceFolders[0].uri } : {}),
      });
      path = picked?.[0]?.fsPath;
    }
    return path ? openSweepFile(ctx, path) : undefined;
  };

/**
 * A multi-select pick over `items` (checked as they come); undefined when dismissed, and
 * when nothing is left checked (with a message saying so).
 */
async function pickMany<T>(items: ChoiceItem<T>[], title: string, placeHolder: string): Promise<T[] | undefined> {
  const picked = await vscode.window.showQuickPick(
    items.map((i) => ({ label: i.label, detail: i.detail, picked: i.picked, value: i.value })),
    { title, placeHolder, canPickMany: true, ignoreFocusOut: true },
  );
  if (!picked) return undefined;
  if (picked.length === 0) {
    void vscode.window.showWarningMessage(`Parallax: ${title}: nothing was checked, so nothing was swept. Check at least one and press Enter.`);
    return undefined;
  }
  return picked.map((p) => p.value);
}

/**
 * The modes and micro-batch counts to sweep: what the caller gave, else picked (the modes,
 * then the micro-batch counts when a pipeline is among them); undefined when dismissed.
 */
async function sweepChoices(given: SweepArgs, batch: number): Promise<{ modes: SweepMode[]; microBatches: number[] } | undefined> {
  const modes = given.modes ?? (await pickMany(modeChoices(), 'Parallax: Sweep Plans — modes', 'Modes to measure and predict (Space checks, Enter sweeps)'));
  if (!modes) return undefined;
  const pipelines = modes.includes('pipeline') || modes.includes('hybrid');
  const choices = microBatchChoices(batch);
  const microBatches =
    given.microBatches ??
    (pipelines && choices.length > 1 ? await pickMany(choices, 'Parallax: Sweep Plans — micro-batches', `Micro-batch counts for the pipelines (batch ${batch})`) : SWEEP_DEFAULTS.microBatches);
  if (!microBatches) return undefined;
  return { modes, microBatches };
}

/** `parallax.sweepPlans`: a model (from the explorer, or picked), swept with progress; the result opens in the panel. */
const sweepPlansCommand =
  (ctx: Ctx) =>
  async (arg?: unknown, choices?: unknown): Promise<SweepCommandResult | undefined> => {
    if (!(await ensureTrusted())) return undefined;
    if (ctx.isProfiling) return warnBusy(ctx);
    const target = arg instanceof vscode.Uri ? arg : await pickModel(undefined);
    if (!target) return undefined;
    if (target.scheme !== 'file') {
      void vscode.window.showErrorMessage(`Parallax: ${target.toString(true)} is not a file on this machine's disk; the profiler reads models from disk. Copy the model into the workspace folder and sweep that copy.`);
      return undefined;
    }
    // A keybinding passes its args alone, as the first argument: choices without a model.
    const given = sweepArgs(arg instanceof vscode.Uri ? choices : arg);
    const settings = ctx.profileSettings(target);
    const label = vscode.workspace.asRelativePath(target, false);
    const storage = ctx.extension.storageUri ?? ctx.extension.globalStorageUri;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const dir = join(storage.fsPath, 'sweeps', `${basename(target.fsPath).replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9._-]+/g, '_')}-${stamp}`);
    const devices = given.devices ?? settings.devices;
    const batch = given.batch ?? settings.batch;
    const chosen = await sweepChoices(given, batch);
    if (!chosen) return undefined;
    const abort = ctx.beginProfile(`sweep of ${label}`);
    ctx.output.info(`sweeping ${label} over ${devices} → ${dir}`);
    try {
      const outcome = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Parallax: sweeping plans of ${label}`, cancellable: true },
        (progress, token) => {
          token.onCancellationRequested(() => abort.abort());
          let shown = 0;
          const nodePath = ctx.runnerNodePath();
          return runSweep({
            modelPath: target.fsPath,
            modelLabel: label,
            devices,
            modes: chosen.modes,
            batches: [batch],
            microBatches: chosen.microBatches,
            repeats: given.repeats ?? SWEEP_DEFAULTS.repeats,
            steps: given.steps ?? SWEEP_DEFAULTS.steps,
            warmup: given.warmup ?? SWEEP_DEFAULTS.warmup,
            signal: abort.signal,
            ...(nodePath ? { nodePath } : {}),
            onProgress: (message, done, total) => {
              const pct = total > 0 ? (100 * done) / total : 0;
              progress.report({ message: `[${done}/${total}] ${message}`, increment: Math.max(0, pct - shown) });
              shown = Math.max(shown, pct);
              ctx.reportStatus(`[${done}/${total}] ${message}`);
            },
          });
        },
      );
      if (outcome.result.plans.every((p) => p.kind === 'predicted')) {
        throw new Error(`no plan of the sweep could be measured (${outcome.result.skipped.map((s) => `${s.label}: ${s.reason}`).join('; ') || 'none enumerated'}); profile the model first to check its inputs`);
      }
      await fs.mkdir(dir, { recursive: true });
      const sweepPath = join(dir, 'sweep.json');
      await writeFileAtomic(sweepPath, `${JSON.stringify(outcome.result, null, 2)}\n`);
      await writeSweepTraces(dir, outcome.predicted, outcome.measured);
      const r = outcome.result;
      ctx.output.info(`swept ${label}: ${r.plans.length} plans${r.mapePct === null ? '' : `, MAPE ${r.mapePct.toFixed(1)} %`}; written to ${sweepPath}`);
      return await openSweepFile(ctx, sweepPath);
    } catch (e) {
      if (e instanceof ProfileCancelled) {
        ctx.output.info(`sweep of ${label} cancelled`);
        void vscode.window.showInformationMessage(`Parallax: sweep of ${label} cancelled.`);
        return undefined;
      }
      reportError(ctx, `sweeping ${label}`, e);
      return undefined;
    } finally {
      ctx.endProfile();
    }
  };

/**
 * Registers `parallax.sweepPlans`, `parallax.openSweep` (ids.ts PANEL_COMMANDS) and the
 * serializer that restores the panel after a window reload (the manifest's
 * `onWebviewPanel:parallax.sweep` activation event brings the extension up for it). Called
 * once from `activate`.
 */
export function registerSweepPanel(ctx: Ctx): void {
  ctx.push(vscode.commands.registerCommand(Command.sweepPlans, sweepPlansCommand(ctx)));
  ctx.push(vscode.commands.registerCommand(Command.openSweep, openSweepCommand(ctx)));
  ctx.push(vscode.window.registerWebviewPanelSerializer(SWEEP_VIEW_TYPE, { deserializeWebviewPanel: (panel) => SweepPanel.revive(ctx, panel) }));
}
