/**
 * The extension's context: one object that owns every disposable (commands, output channel,
 * status bar item, listeners), reads settings, and tracks the one profile that may run at a
 * time. Commands receive it (see commands.ts), as in rust-analyzer's `ctx.ts`.
 */
import * as vscode from 'vscode';
import { escapingChannel } from './escaping-channel';
import type { DiscoveredDevices } from '../runtime/device/discovery';
import { isParallelMode } from '../profiler/plan';
import { TILE_THRESHOLD_SPANS } from '../profiler/span-tiles';
import { ConfigHints } from './config-providers';
import { Command, ContextKey, OUTPUT_CHANNEL, Setting, type CommandId } from './ids';
import { DEFAULT_PROFILE_SETTINGS, type ProfileSettings } from './run-config';
import { RunStore } from './runs';
import { SourceHints } from './source-hints';

/** A profile in progress. */
interface RunningProfile {
  label: string;
  abort: AbortController;
  /** The parallax.json plan it runs (`<config uri>#<plan>`), for the plan's CodeLens. */
  planKey: string | null;
}

/** globalState key: the last device discovery (the machine's devices outlive a workspace). */
const DEVICES_KEY = 'parallax.discoveredDevices';

export class Ctx implements vscode.Disposable {
  readonly output: vscode.LogOutputChannel;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly status: vscode.StatusBarItem;
  private running: RunningProfile | null = null;
  private discoveredDevices: DiscoveredDevices | null;
  private current: string | null = null;
  private readonly profilingChanged = this.push(new vscode.EventEmitter<void>());
  private readonly devicesChanged = this.push(new vscode.EventEmitter<void>());
  private readonly currentChanged = this.push(new vscode.EventEmitter<void>());
  /** Fires when a profile starts or ends. */
  readonly onDidChangeProfiling = this.profilingChanged.event;
  /** Fires when "List Devices" found devices. */
  readonly onDidChangeDevices = this.devicesChanged.event;
  /** Fires when the run the Findings view shows changes. */
  readonly onDidChangeCurrentTrace = this.currentChanged.event;
  /** The trace files of the output folders. */
  readonly runs: RunStore;
  /** CodeLenses, diagnostics, quick fixes and hovers in parallax.json. */
  readonly configHints: ConfigHints;
  /** Inlay hints in the model's Python source. */
  readonly sourceHints: SourceHints;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.output = this.push(escapingChannel(vscode.window.createOutputChannel(OUTPUT_CHANNEL, { log: true })));
    this.status = this.push(vscode.window.createStatusBarItem('parallax.running', vscode.StatusBarAlignment.Left, 10));
    this.status.name = 'Parallax profile';
    this.status.command = Command.cancelProfile;
    this.discoveredDevices = extension.globalState.get<DiscoveredDevices>(DEVICES_KEY) ?? null;
    extension.subscriptions.push(this);
    this.runs = this.push(new RunStore(this));
    this.configHints = this.push(new ConfigHints(this, this.runs));
    this.sourceHints = this.push(new SourceHints(this, this.runs));
  }

  /** Devices found by the last discovery (kept across sessions); shapes the device choices and the Devices view. */
  get discovered(): DiscoveredDevices | null {
    return this.discoveredDevices;
  }

  set discovered(d: DiscoveredDevices | null) {
    this.discoveredDevices = d;
    void this.extension.globalState.update(DEVICES_KEY, d ?? undefined);
    this.devicesChanged.fire();
  }

  /**
   * The trace the user looked at last (opened, profiled, picked in the Runs view): the run
   * the Findings view shows. Null: the newest trace.
   */
  get currentTrace(): string | null {
    return this.current;
  }

  set currentTrace(path: string | null) {
    if (path === this.current) return;
    this.current = path;
    this.currentChanged.fire();
  }

  /** Takes ownership of a disposable: it is disposed with the context. */
  push<T extends vscode.Disposable>(d: T): T {
    this.disposables.push(d);
    return d;
  }

  registerCommand(id: CommandId, handler: (...args: never[]) => unknown): void {
    this.push(vscode.commands.registerCommand(id, handler as (...args: unknown[]) => unknown));
  }

  /** Settings that shape a run, read fresh each time (the user may change them between runs). */
  profileSettings(scope?: vscode.Uri): ProfileSettings {
    const c = vscode.workspace.getConfiguration(undefined, scope);
    const d = DEFAULT_PROFILE_SETTINGS;
    const mode = c.get<string>(Setting.profileMode, d.mode);
    return {
      mode: isParallelMode(mode) ? mode : 'data',
      devices: c.get<string>(Setting.profileDevices, d.devices).trim() || d.devices,
      batch: positive(c.get<number>(Setting.profileBatch, d.batch), d.batch),
      steps: positive(c.get<number>(Setting.profileSteps, d.steps), d.steps),
      minTime: Math.min(3600, Math.max(0, Number(c.get<number>(Setting.profileMinTime, d.minTime)) || 0)),
      warmup: Math.max(0, Math.floor(c.get<number>(Setting.profileWarmup, d.warmup))),
      baseline: c.get<boolean>(Setting.profileBaseline, d.baseline),
      opLevel: c.get<boolean>(Setting.profileOpLevel, d.opLevel),
      outputFolder: c.get<string>(Setting.outputFolder, d.outputFolder).trim() || d.outputFolder,
      adviceOnPoorQuality: c.get<string>(Setting.findingsOnPoorQuality, 'holdBack') === 'show' ? 'show' : 'hold',
    };
  }

  /** `parallax.runner.nodePath`, or undefined for the extension host's own runtime. */
  runnerNodePath(): string | undefined {
    const p = vscode.workspace.getConfiguration().get<string>(Setting.runnerNodePath, '').trim();
    return p === '' ? undefined : p;
  }

  /** `parallax.timeline.openOnFinish`: open a run's timeline when profiling finishes. */
  openTimelineOnFinish(): boolean {
    return vscode.workspace.getConfiguration().get<boolean>(Setting.timelineOpenOnFinish, true);
  }

  /** `parallax.timeline.tileThreshold`: traces with at least this many spans are shown in tiles. */
  tileThreshold(): number {
    const n = vscode.workspace.getConfiguration().get<number>(Setting.timelineTileThreshold, TILE_THRESHOLD_SPANS);
    return Number.isFinite(n) && n >= 0 ? Math.floor(n) : TILE_THRESHOLD_SPANS;
  }

  probeWebGpu(): boolean {
    return vscode.workspace.getConfiguration().get<boolean>(Setting.devicesProbeWebGpu, true);
  }

  /** `parallax.output.keepRuns`: traces kept per parallax.json plan (0: all). */
  keepRuns(scope?: vscode.Uri): number {
    const n = vscode.workspace.getConfiguration(undefined, scope).get<number>(Setting.outputKeepRuns, 10);
    return Number.isFinite(n) && n >= 0 ? Math.floor(n) : 10;
  }

  /** `parallax.hints.source` and `parallax.hints.minShare`. */
  sourceHintSettings(scope?: vscode.Uri): { enabled: boolean; minShare: number } {
    const c = vscode.workspace.getConfiguration(undefined, scope);
    const min = c.get<number>(Setting.hintsMinShare, 0.01);
    return { enabled: c.get<boolean>(Setting.hintsSource, true), minShare: Number.isFinite(min) && min >= 0 ? min : 0.01 };
  }

  get isProfiling(): boolean {
    return this.running !== null;
  }

  get runningLabel(): string | null {
    return this.running?.label ?? null;
  }

  /** The parallax.json plan being profiled (`<config uri>#<plan>`), if a plan is. */
  get runningPlanKey(): string | null {
    return this.running?.planKey ?? null;
  }

  /** Marks a profile as running: context key, status bar. Returns its abort controller. */
  beginProfile(label: string, planKey: string | null = null): AbortController {
    const abort = new AbortController();
    this.running = { label, abort, planKey };
    void vscode.commands.executeCommand('setContext', ContextKey.profiling, true);
    // Static icons while profiling: an animation repaints the window many times a second,
    // on the very cores the profiler is measuring (and on every core without a GPU).
    this.status.text = `$(pulse) Parallax: ${label}`;
    this.status.tooltip = `Parallax is profiling ${label}. Click to stop.`;
    this.status.show();
    this.profilingChanged.fire();
    return abort;
  }

  /** Shows the current phase in the status bar. */
  reportStatus(text: string): void {
    if (this.running) this.status.text = `$(pulse) Parallax: ${this.running.label} — ${text}`;
  }

  endProfile(): void {
    this.running = null;
    void vscode.commands.executeCommand('setContext', ContextKey.profiling, false);
    this.status.hide();
    this.profilingChanged.fire();
  }

  /** Cancels the running profile; false when none runs. */
  cancelProfile(): boolean {
    if (!this.running) return false;
    this.output.info(`cancelling the profile of ${this.running.label}`);
    this.running.abort.abort();
    return true;
  }

  dispose(): void {
    this.running?.abort.abort();
    this.running = null;
    for (const d of this.disposables.splice(0).reverse()) {
      try {
        d.dispose();
      } catch {
        // Disposing must go on through the rest even if one throws.
      }
    }
  }
}

function positive(v: number, fallback: number): number {
  return Number.isFinite(v) && v >= 1 ? Math.floor(v) : fallback;
}
