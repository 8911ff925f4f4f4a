/**
 * The quick picks of "Profile Model…" (model, mode, devices, batch) and "Profile Training
 * Step…" (model, devices, batch, loss, optimizer). Each returns undefined
 * when the user dismisses it, which ends the flow without a message.
 */
import * as os from 'node:os';
import * as vscode from 'vscode';
import { TRAIN_DEFAULTS, TRAIN_LOSSES, TRAIN_OPTIMIZERS, type ParallelMode, type TrainLoss, type TrainOptimizer } from '../profiler/plan';
import type { DiscoveredDevices } from '../runtime/device/discovery';
import {
  MODE_CHOICES,
  batchChoices,
  checkBatchText,
  checkDeviceSpecText,
  deviceChoices,
  preferredFirst,
  type Choice,
  type ProfileSettings,
} from './run-config';

/**
 * Which flow a pick belongs to and where in it: "Profile Model…" (model, mode, devices,
 * batch) or "Profile Training Step…" (model, devices, batch, loss, optimizer). Titles read
 * `Parallax: <flow> (<step>/<steps>) — <what>`.
 */
export type PickFlow = 'model' | 'training';
const FLOWS: Record<PickFlow, { name: string; steps: Record<string, number> }> = {
  model: { name: 'Profile Model', steps: { model: 1, mode: 2, devices: 3, batch: 4 } },
  training: { name: 'Profile Training Step', steps: { model: 1, devices: 2, batch: 3, loss: 4, optimizer: 5 } },
};
const title = (flow: PickFlow, step: string, what: string): string => {
  const f = FLOWS[flow];
  return `Parallax: ${f.name} (${f.steps[step] ?? '?'}/${Object.keys(f.steps).length}) — ${what}`;
};

/** Files the model search leaves out: dependencies, VCS folders, build output. */
const MODEL_EXCLUDE = '{**/node_modules/**,**/.git/**,**/.cache/**}';
/** Enough to pick from; a workspace with more models is better served by Browse…. */
const MAX_MODELS = 500;

interface ModelItem extends vscode.QuickPickItem {
  uri?: vscode.Uri;
  browse?: true;
}

/**
 * Picks an .onnx model among the workspace's files, the one used last first, with
 * "Browse…" for a file elsewhere.
 */
export async function pickModel(lastUsed: string | undefined, flow: PickFlow = 'model'): Promise<vscode.Uri | undefined> {
  const found = await vscode.workspace.findFiles('**/*.onnx', MODEL_EXCLUDE, MAX_MODELS);
  found.sort((a, b) => {
    if (a.toString() === lastUsed) return -1;
    if (b.toString() === lastUsed) return 1;
    return a.path.localeCompare(b.path);
  });
  const items: ModelItem[] = found.map((uri) => {
    const rel = vscode.workspace.asRelativePath(uri, true);
    const slash = rel.lastIndexOf('/');
    return {
      label: `$(file-binary) ${rel.slice(slash + 1)}`,
      description: slash > 0 ? rel.slice(0, slash) : '',
      ...(uri.toString() === lastUsed ? { detail: 'last profiled' } : {}),
      uri,
    };
  });
  if (items.length > 0) items.push({ label: '', kind: vscode.QuickPickItemKind.Separator });
  items.push({ label: '$(folder-opened) Browse…', description: 'an .onnx file outside the workspace', browse: true });
  const picked = await vscode.window.showQuickPick(items, {
    title: title(flow, 'model', 'model'),
    placeHolder: found.length > 0 ? 'ONNX model to profile' : 'No .onnx files in the workspace — browse for one',
    matchOnDescription: true,
    ignoreFocusOut: true,
  });
  if (!picked) return undefined;
  if (picked.uri) return picked.uri;
  const chosen = await vscode.window.showOpenDialog({
    canSelectMany: false,
    filters: { 'ONNX model': ['onnx'] },
    title: 'Model to profile',
    openLabel: 'Profile',
  });
  return chosen?.[0];
}

async function pickChoice<T>(choices: readonly Choice<T>[], options: vscode.QuickPickOptions): Promise<T | undefined> {
  const picked = await vscode.window.showQuickPick(
    choices.map((c) => ({ label: c.label, ...(c.description ? { description: c.description } : {}), value: c.value })),
    { ignoreFocusOut: true, ...options },
  );
  return picked?.value;
}

export function pickMode(settings: ProfileSettings): Promise<ParallelMode | undefined> {
  return pickChoice(preferredFirst(MODE_CHOICES, settings.mode), { title: title('model', 'mode', 'parallel mode'), placeHolder: 'How to split the work' });
}

const CUSTOM = Symbol('custom');

interface DeviceItem extends vscode.QuickPickItem {
  value?: string | typeof CUSTOM;
}

/**
 * Picks the devices. Only devices that exist are offered: with no discovery yet, the pick
 * opens at once with the CPU choices, busy, while `discover` looks for WebGPU and CUDA
 * devices in a runner process, and fills in what it found. Closing the pick stops a
 * discovery still running (it would compete with the profile for the cores).
 */
export async function pickDevices(
  settings: ProfileSettings,
  discovered: DiscoveredDevices | null,
  discover: (signal: AbortSignal) => Promise<DiscoveredDevices | null>,
  flow: PickFlow = 'model',
): Promise<string | undefined> {
  const qp = vscode.window.createQuickPick<DeviceItem>();
  const itemsFor = (d: DiscoveredDevices | null, searching: boolean): DeviceItem[] => [
    ...deviceChoices(settings.devices, os.availableParallelism(), d).map((c) => ({ label: c.label, ...(c.description ? { description: c.description } : {}), value: c.value })),
    ...(searching ? [{ label: 'looking for WebGPU and CUDA devices…', kind: vscode.QuickPickItemKind.Separator }] : []),
    { label: '$(edit) Other…', description: 'type a device spec', value: CUSTOM },
  ];
  qp.title = title(flow, 'devices', 'devices');
  qp.ignoreFocusOut = true;
  qp.placeholder = 'Devices to run on';
  qp.items = itemsFor(discovered, discovered === null);
  const abort = new AbortController();
  if (discovered === null) {
    qp.busy = true;
    qp.placeholder = 'Devices to run on (discovering this machine’s devices…)';
    void discover(abort.signal).then((d) => {
      if (abort.signal.aborted) return;
      qp.busy = false;
      qp.placeholder = d ? 'Devices to run on' : 'Devices to run on (device discovery failed: see the Parallax output)';
      qp.items = itemsFor(d, false);
    });
  }
  const picked = await new Promise<DeviceItem | undefined>((resolve) => {
    qp.onDidAccept(() => resolve(qp.selectedItems[0]));
    qp.onDidHide(() => resolve(undefined));
    qp.show();
  });
  abort.abort();
  qp.dispose();
  if (picked?.value === undefined) return undefined;
  if (picked.value !== CUSTOM) return picked.value;
  return vscode.window.showInputBox({
    title: title(flow, 'devices', 'devices'),
    prompt: 'Device spec: comma-separated kind:count, e.g. cpu:2 or cpu:1,webgpu:1',
    value: settings.devices,
    ignoreFocusOut: true,
    validateInput: checkDeviceSpecText,
  });
}

/** "Profile Training Step…": the loss, then the optimizer, defaults first. */
export function pickLoss(): Promise<TrainLoss | undefined> {
  const describe: Record<TrainLoss, string> = { mse: 'mean squared error against the labels', 'cross-entropy': 'softmax cross-entropy against class labels' };
  const choices = TRAIN_LOSSES.map((l) => ({ value: l, label: l, description: describe[l] }));
  return pickChoice(preferredFirst(choices, TRAIN_DEFAULTS.loss), { title: title('training', 'loss', 'loss'), placeHolder: 'What the training step minimises (labels from a fixed random teacher)' });
}

export function pickOptimizer(): Promise<TrainOptimizer | undefined> {
  const describe: Record<TrainOptimizer, string> = { sgd: `plain SGD, lr ${TRAIN_DEFAULTS.lr}`, momentum: 'SGD with momentum 0.9', adam: 'Adam' };
  const choices = TRAIN_OPTIMIZERS.map((o) => ({ value: o, label: o, description: describe[o] }));
  return pickChoice(preferredFirst(choices, TRAIN_DEFAULTS.optimizer), { title: title('training', 'optimizer', 'optimizer'), placeHolder: 'How each step updates the weights' });
}

export async function pickBatch(settings: ProfileSettings, flow: PickFlow = 'model'): Promise<number | undefined> {
  const choices: Choice<number | typeof CUSTOM>[] = [...batchChoices(settings.batch), { value: CUSTOM, label: '$(edit) Other…' }];
  const picked = await pickChoice(choices, {
    title: title(flow, 'batch', 'global batch size'),
    placeHolder: 'Rows per step, split across data-parallel devices (micro-batched in pipeline mode)',
  });
  if (picked !== CUSTOM) return picked;
  const text = await vscode.window.showInputBox({
    title: title(flow, 'batch', 'global batch size'),
    value: String(settings.batch),
    ignoreFocusOut: true,
    validateInput: checkBatchText,
  });
  return text === undefined ? undefined : Number(text.trim());
}
