/**
 * The Parallax view container's trees: Runs (the traces in the output folders: open,
 * compare two, export, delete), Devices (the last "List Devices") and Findings (of the
 * current run: the one opened or profiled last, else the newest).
 */
import * as vscode from 'vscode';
import type { Finding } from '../profiler/findings';
import type { Ctx } from './ctx';
import { Command, TreeItemContext, View } from './ids';
import { formatDuration, lensSummary, predictionText } from './hints';
import type { RunEntry, RunStore } from './runs';
import { runDescription } from './runs-model';

/** The most runs the Runs view lists (newest first); older ones stay on disk. */
const MAX_RUNS = 200;

/** A Runs view item: one trace file. */
export class RunItem extends vscode.TreeItem {
  constructor(readonly run: RunEntry) {
    super(run.name.replace(/\.parallax\.json$/, ''), vscode.TreeItemCollapsibleState.None);
    this.resourceUri = run.uri;
    this.contextValue = TreeItemContext.run;
    this.iconPath = new vscode.ThemeIcon('pulse');
    this.command = { title: 'Open Trace', command: Command.openTrace, arguments: [run.uri] };
    this.id = run.path;
  }
}

class RunsProvider implements vscode.TreeDataProvider<RunItem> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(
    private readonly ctx: Ctx,
    private readonly runs: RunStore,
  ) {}

  fire(): void {
    this.changed.fire();
  }

  async getChildren(element?: RunItem): Promise<RunItem[]> {
    if (element) return [];
    const entries = this.runs.list().slice(0, MAX_RUNS);
    return Promise.all(
      entries.map(async (e) => {
        const item = new RunItem(e);
        const d = await this.runs.digest(e.path);
        const when = new Date(e.mtimeMs).toLocaleString();
        item.description = d ? runDescription(d, formatDuration) : 'unreadable';
        const md = new vscode.MarkdownString();
        md.appendText(`${vscode.workspace.asRelativePath(e.uri, false)}\n${when} · ${(e.size / 2 ** 20).toFixed(1)} MB`);
        if (d?.summary) md.appendText(`\n${lensSummary(d.summary)}`);
        if (d?.meta?.modelPath) md.appendText(`\nmodel ${d.meta.modelPath}`);
        item.tooltip = md;
        if (this.ctx.currentTrace === e.path) item.iconPath = new vscode.ThemeIcon('pulse', new vscode.ThemeColor('charts.blue'));
        return item;
      }),
    );
  }

  getTreeItem(element: RunItem): vscode.TreeItem {
    return element;
  }
}

type DeviceNode = { kind: 'host'; text: string; tooltip: string } | { kind: 'device'; name: string; available: boolean; provider: string; detail: string };

class DevicesProvider implements vscode.TreeDataProvider<DeviceNode> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly ctx: Ctx) {}

  fire(): void {
    this.changed.fire();
  }

  getChildren(element?: DeviceNode): DeviceNode[] {
    const d = this.ctx.discovered;
    if (element || !d) return [];
    const host = `${d.host.cpuModel} · ${d.host.logicalCores} cores · ${(d.host.memoryBytes / 2 ** 30).toFixed(1)} GiB`;
    return [
      { kind: 'host', text: host, tooltip: `${host} · ${d.host.os} · onnxruntime-node ${d.onnxruntimeVersion}` },
      ...d.kinds.map((k) => ({ kind: 'device' as const, name: k.kind, available: k.available, provider: k.provider, detail: k.detail })),
    ];
  }

  getTreeItem(n: DeviceNode): vscode.TreeItem {
    if (n.kind === 'host') {
      const item = new vscode.TreeItem(n.text);
      item.iconPath = new vscode.ThemeIcon('vm');
      item.tooltip = n.tooltip;
      return item;
    }
    const item = new vscode.TreeItem(n.name);
    item.description = n.available ? `available · ${n.provider}` : 'not available';
    item.tooltip = n.detail;
    item.iconPath = new vscode.ThemeIcon(n.available ? 'check' : 'circle-slash', n.available ? new vscode.ThemeColor('testing.iconPassed') : undefined);
    return item;
  }
}

/** A Findings view item. */
export class FindingItem extends vscode.TreeItem {
  constructor(
    readonly tracePath: string,
    readonly index: number,
    readonly finding: Finding,
  ) {
    super(firstSentence(finding.message), vscode.TreeItemCollapsibleState.None);
    this.description = finding.heldBack ? 'held back: measurement quality poor' : predictionText(finding) || finding.id;
    this.contextValue = TreeItemContext.finding;
    const icon = finding.severity === 'critical' ? 'error' : finding.severity === 'warning' ? 'warning' : 'info';
    const color = finding.severity === 'critical' ? 'problemsErrorIcon.foreground' : finding.severity === 'warning' ? 'problemsWarningIcon.foreground' : 'problemsInfoIcon.foreground';
    this.iconPath = new vscode.ThemeIcon(icon, new vscode.ThemeColor(color));
    const md = new vscode.MarkdownString();
    md.appendMarkdown(`**${finding.id}** (${finding.severity})\n\n`);
    if (finding.heldBack) {
      md.appendText(finding.heldBack.reason);
      md.appendMarkdown('\n\n');
    }
    md.appendText(finding.message);
    md.appendMarkdown('\n\n**Change:** ');
    md.appendText(finding.change.description);
    this.tooltip = md;
    md.appendMarkdown('\n\nClick to see the evidence in the timeline; the config key is one click away (the item\'s $(go-to-file) action).');
    md.supportThemeIcons = true;
    this.command = { title: 'Show Finding in Timeline', command: Command.showFinding, arguments: [{ tracePath, index }] };
  }
}

function firstSentence(s: string): string {
  const m = /^(.*?[.;:])\s/.exec(s);
  const t = m ? m[1] : s;
  return t.length > 120 ? `${t.slice(0, 117)}…` : t;
}

class FindingsProvider implements vscode.TreeDataProvider<FindingItem> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  /** The trace shown, set by getChildren (the view's description names it). */
  shown: string | null = null;

  constructor(
    private readonly ctx: Ctx,
    private readonly runs: RunStore,
    private readonly onShown: (path: string | null) => void,
  ) {}

  fire(): void {
    this.changed.fire();
  }

  async getChildren(element?: FindingItem): Promise<FindingItem[]> {
    if (element) return [];
    const path = this.ctx.currentTrace ?? this.runs.list()[0]?.path ?? null;
    this.shown = path;
    this.onShown(path);
    if (!path) return [];
    const d = await this.runs.digest(path);
    // Actionable findings first, then by predicted gain; held-back findings last.
    const rank = (f: Finding): number => (f.heldBack ? 3 : f.severity === 'critical' ? 0 : f.severity === 'warning' ? 1 : 2);
    const gain = (f: Finding): number => (f.predictedStepUs !== null && f.currentStepUs > 0 ? f.predictedStepUs / f.currentStepUs : 1);
    return (d?.findings ?? [])
      .map((f, i) => ({ f, i }))
      .sort((a, b) => rank(a.f) - rank(b.f) || gain(a.f) - gain(b.f))
      .map(({ f, i }) => new FindingItem(path, i, f));
  }

  getTreeItem(element: FindingItem): vscode.TreeItem {
    return element;
  }
}

/** Creates the three views; returns the Runs tree view (for its selection). */
export function registerViews(ctx: Ctx, runs: RunStore): { runsView: vscode.TreeView<RunItem> } {
  const runsProvider = new RunsProvider(ctx, runs);
  const devicesProvider = new DevicesProvider(ctx);
  const views: { findings?: vscode.TreeView<FindingItem> } = {};
  const findingsProvider = new FindingsProvider(ctx, runs, (path) => {
    if (views.findings) views.findings.description = path ? vscode.workspace.asRelativePath(vscode.Uri.file(path), false) : undefined;
  });
  const runsView = ctx.push(vscode.window.createTreeView(View.runs, { treeDataProvider: runsProvider, canSelectMany: true, showCollapseAll: false }));
  ctx.push(vscode.window.createTreeView(View.devices, { treeDataProvider: devicesProvider }));
  views.findings = ctx.push(vscode.window.createTreeView(View.findings, { treeDataProvider: findingsProvider }));
  ctx.push(runs.onDidChange(() => (runsProvider.fire(), findingsProvider.fire())));
  ctx.push(ctx.onDidChangeCurrentTrace(() => (runsProvider.fire(), findingsProvider.fire())));
  ctx.push(ctx.onDidChangeDevices(() => devicesProvider.fire()));
  return { runsView };
}
