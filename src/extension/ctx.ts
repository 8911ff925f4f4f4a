/**
 * The extension's context: one object that owns every disposable (commands, output channel,
 * status bar item, listeners), reads settings, and tracks the one profile that may run at a
 * time. Commands receive it (see commands.ts), as in rust-analyzer's `ctx.ts`.
 */
import * as vscode from 'vscode';
import type { DiscoveredDevices } from '../runtime/device/discovery';
import type { ParallelMode } from '../runtime/protocol';
import { Command, ContextKey, OUTPUT_CHANNEL, Setting, type CommandId } from './ids';
import { DEFAULT_PROFILE_SETTINGS, type ProfileSettings } from './run-config';

/** A profile in progress. */
interface RunningProfile {
  label: string;
  abort: AbortController;
}

export class Ctx implements vscode.Disposable {
  readonly output: vscode.LogOutputChannel;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly status: vscode.StatusBarItem;
  private running: RunningProfile | null = null;
  /** Devices found by "List Devices" in this session; shapes the device choices. */
  discovered: DiscoveredDevices | null = null;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.output = this.push(vscode.window.createOutputChannel(OUTPUT_CHANNEL, { log: true }));
    this.status = this.push(vscode.window.createStatusBarItem('parallax.running', vscode.StatusBarAlignment.Left, 10));
    this.status.name = 'Parallax profile';
    this.status.command = Command.cancelProfile;
    extension.subscriptions.push(this);
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
      mode: (mode === 'pipeline' ? 'pipeline' : 'data') satisfies ParallelMode,
      devices: c.get<string>(Setting.profileDevices, d.devices).trim() || d.devices,
      batch: positive(c.get<number>(Setting.profileBatch, d.batch), d.batch),
      steps: positive(c.get<number>(Setting.profileSteps, d.steps), d.steps),
      warmup: Math.max(0, Math.floor(c.get<number>(Setting.profileWarmup, d.warmup))),
      baseline: c.get<boolean>(Setting.profileBaseline, d.baseline),
      opLevel: c.get<boolean>(Setting.profileOpLevel, d.opLevel),
      outputFolder: c.get<string>(Setting.outputFolder, d.outputFolder).trim() || d.outputFolder,
    };
  }

  /** `parallax.runner.nodePath`, or undefined for the extension host's own runtime. */
  runnerNodePath(): string | undefined {
    const p = vscode.workspace.getConfiguration().get<string>(Setting.runnerNodePath, '').trim();
    return p === '' ? undefined : p;
  }

  probeWebGpu(): boolean {
    return vscode.workspace.getConfiguration().get<boolean>(Setting.devicesProbeWebGpu, true);
  }

  get isProfiling(): boolean {
    return this.running !== null;
  }

  get runningLabel(): string | null {
    return this.running?.label ?? null;
  }

  /** Marks a profile as running: context key, status bar. Returns its abort controller. */
  beginProfile(label: string): AbortController {
    const abort = new AbortController();
    this.running = { label, abort };
    void vscode.commands.executeCommand('setContext', ContextKey.profiling, true);
    this.status.text = `$(loading~spin) Parallax: ${label}`;
    this.status.tooltip = `Parallax is profiling ${label}. Click to cancel.`;
    this.status.show();
    return abort;
  }

  /** Shows the current phase in the status bar. */
  reportStatus(text: string): void {
    if (this.running) this.status.text = `$(loading~spin) Parallax: ${this.running.label} — ${text}`;
  }

  endProfile(): void {
    this.running = null;
    void vscode.commands.executeCommand('setContext', ContextKey.profiling, false);
    this.status.hide();
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
