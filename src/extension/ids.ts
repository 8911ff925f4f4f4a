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
  /** "Profile with Parallax": the explorer context menu entry for an .onnx file (hidden from the palette). */
  profileFile: 'parallax.profileFile',
  /** "Parallax: List Devices": device discovery in a runner process. */
  listDevices: 'parallax.listDevices',
  /** "Parallax: Cancel Profiling": stops the running profile (enabled while one runs). */
  cancelProfile: 'parallax.cancelProfile',
  /** "Parallax: Show Output": the Parallax output channel. */
  showOutput: 'parallax.showOutput',
} as const;

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
} as const;

export type SettingKey = (typeof Setting)[keyof typeof Setting];

/** Context keys the manifest's `when` clauses read. */
export const ContextKey = {
  /** True while a profile runs in this window. */
  profiling: 'parallax.profiling',
} as const;

/** Name of the output channel (also what the "Output" view lists). */
export const OUTPUT_CHANNEL = 'Parallax';
