/**
 * Every identifier the extension shares with its manifest (package.json `contributes`), in
 * one place: command ids `parallax.<verb>`, setting keys `parallax.<area>.<name>` and
 * context keys. A test (test/e2e/vscode/manifest.test.ts) checks that the manifest declares
 * exactly these, so a rename cannot leave a dead menu entry or an unread setting behind.
 *
 * Plain data, no `vscode` import: tests and scripts read it under Node.
 */

/** Command ids, as contributed in package.json. */
export const Command = {
  /** "Parallax: Profile Model…": pick a workspace .onnx (or browse), mode, devices, batch; run. */
  profileModel: 'parallax.profileModel',
  /** "Parallax: Profile Training Step…": pick a model, devices, batch, loss, optimizer; a data-parallel training run. */
  profileTraining: 'parallax.profileTraining',
  /** "Profile with Parallax": the explorer context menu entry for an .onnx file (hidden from the palette). */
  profileFile: 'parallax.profileFile',
  /** "Parallax: List Devices": device discovery in a runner process. */
  listDevices: 'parallax.listDevices',
  /** "Parallax: Stop Profiling": stops the running profile (enabled while one runs; the id predates the title). */
  cancelProfile: 'parallax.cancelProfile',
  /** "Parallax: Show Output": the Parallax output channel. */
  showOutput: 'parallax.showOutput',
  /** "Parallax: Profile with Config…": run a named plan of the workspace's parallax.json (args: config URI, plan name). */
  profileConfig: 'parallax.profileConfig',
  /** "Parallax: Re-run Last Profile": the last plan again (a config plan is re-read from its file first). */
  rerunProfile: 'parallax.rerunProfile',
  /** "Parallax: Open Trace…": a .parallax.json into the timeline (arg: its URI, else a file picker). */
  openTrace: 'parallax.openTrace',
  /** "Parallax: Compare Runs…": two traces side by side in the timeline (args: URIs, else picks). */
  compareRuns: 'parallax.compareRuns',
  /** "Parallax: Export Trace for Perfetto…": Chrome Trace Event JSON that Perfetto and chrome://tracing open. */
  exportTrace: 'parallax.exportTrace',
  /**
   * "Parallax: Show Timeline": the timeline panel. Registered by timeline-panel.ts, not by
   * commands.ts; args {@link ShowTimelineArgs}. Callers go through timeline.ts, which copes
   * with a build that lacks the panel.
   */
  showTimeline: 'parallax.showTimeline',
  /** Reveal a time range of a trace in the timeline (hover links, hints; args {@link ShowTimelineArgs}). Hidden from the palette. */
  revealInTimeline: 'parallax.revealInTimeline',
  /** A finding of the Findings view: the timeline at its evidence (time range and lanes). Hidden from the palette. */
  showFinding: 'parallax.showFinding',
  /** A Findings view item's secondary action: the parallax.json key (or model source) the finding maps to. Hidden from the palette. */
  showFindingSource: 'parallax.showFindingSource',
  /** Runs view: delete a trace file (after confirmation). Hidden from the palette. */
  deleteRun: 'parallax.deleteRun',
  /** Runs view: rescan the output folders. */
  refreshRuns: 'parallax.refreshRuns',
  /** "Parallax: Sweep Plans…": measure and predict a model's plans into the sweep panel (args: model URI, SweepArgs). Registered by sweep-panel.ts. */
  sweepPlans: 'parallax.sweepPlans',
  /** "Parallax: Open Sweep…": a `parallax sweep --out` file into the sweep panel (arg: its URI, else a file picker). Registered by sweep-panel.ts. */
  openSweep: 'parallax.openSweep',
} as const;

/** Commands contributed by the manifest but registered outside commands.ts (by the timeline and sweep panels). */
export const PANEL_COMMANDS = [Command.showTimeline, Command.sweepPlans, Command.openSweep] as const;
export type PanelCommandId = (typeof PANEL_COMMANDS)[number];

/**
 * Arguments of `parallax.showTimeline` (the contract with timeline-panel.ts): the trace to
 * show and optionally a range of its clock and lanes to reveal, or a second trace to compare.
 */
export interface ShowTimelineArgs {
  /** Absolute path of a .parallax.json trace. */
  tracePath: string;
  /** Range to reveal, µs on the trace clock. */
  startUs?: number;
  endUs?: number;
  /** Lanes to highlight. */
  lanes?: number[];
  /** A second trace, shown aligned under the first. */
  comparePath?: string;
}

export type CommandId = (typeof Command)[keyof typeof Command];

/** Setting keys, as contributed under `contributes.configuration` in package.json. */
export const Setting = {
  /** Node.js executable for the runner process; empty uses the extension host's runtime. */
  runnerNodePath: 'parallax.runner.nodePath',
  /** Parallel mode offered first: `data` or `pipeline`. */
  profileMode: 'parallax.profile.mode',
  /** Device spec offered first, e.g. `cpu:2`. */
  profileDevices: 'parallax.profile.devices',
  /** Global batch size offered first. */
  profileBatch: 'parallax.profile.batch',
  /** Measured steps per run. */
  profileSteps: 'parallax.profile.steps',
  /** Seconds the measured steps of an inference run last at least. */
  profileMinTime: 'parallax.profile.minTime',
  /** Unrecorded warm-up steps per run. */
  profileWarmup: 'parallax.profile.warmup',
  /** Measure the one-device baseline in the same run. */
  profileBaseline: 'parallax.profile.baseline',
  /** Merge ONNX Runtime's per-operator profile into the trace. */
  profileOpLevel: 'parallax.profile.opLevel',
  /** Folder for trace files, relative to the model's workspace folder (or absolute). */
  outputFolder: 'parallax.output.folder',
  /** Run the WebGPU probe when listing devices. */
  devicesProbeWebGpu: 'parallax.devices.probeWebGpu',
  /** Traces kept per parallax.json plan; older ones are deleted after a run (0 keeps all). */
  outputKeepRuns: 'parallax.output.keepRuns',
  /** Inlay hints with share of step time on the model's Python definitions. */
  hintsSource: 'parallax.hints.source',
  /** Smallest share of step time a source hint is shown for. */
  hintsMinShare: 'parallax.hints.minShare',
  /** On a poorly measured run: hold timing findings back, or show them with a caveat. */
  findingsOnPoorQuality: 'parallax.findings.onPoorMeasurement',
  /** Open the timeline of a run when profiling finishes. */
  timelineOpenOnFinish: 'parallax.timeline.openOnFinish',
  /** Traces with at least this many spans are shown in tiles. */
  timelineTileThreshold: 'parallax.timeline.tileThreshold',
} as const;

export type SettingKey = (typeof Setting)[keyof typeof Setting];

/** Context keys the manifest's `when` clauses read. */
export const ContextKey = {
  /** True while a profile runs in this window. */
  profiling: 'parallax.profiling',
  /** True when "Re-run Last Profile" has a plan to run. */
  hasLastProfile: 'parallax.hasLastProfile',
} as const;

/** The view container and its views (package.json `contributes.viewsContainers` / `views`). */
export const View = {
  container: 'parallax',
  runs: 'parallax.runs',
  devices: 'parallax.devices',
  findings: 'parallax.findings',
} as const;

/** `contextValue`s of tree items, which the manifest's `view/item/context` menus match. */
export const TreeItemContext = {
  run: 'parallaxRun',
  finding: 'parallaxFinding',
} as const;

/** Base name of the run-configuration file in a workspace folder's root. */
export const CONFIG_FILE = 'parallax.json';

/** Name of the output channel (also what the "Output" view lists). */
export const OUTPUT_CHANNEL = 'Parallax';
