/**
 * The run history: trace files in each workspace folder's output folder (setting
 * `parallax.output.folder`), watched for changes, with cached digests (meta, summary,
 * findings; see runs-model.ts) and full traces for the views and hints that need spans.
 */
import { promises as fs } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import * as vscode from 'vscode';
import type { Trace } from '../profiler/trace-format';
import { readTrace } from '../profiler/trace-io';
import type { Ctx } from './ctx';
import { Setting } from './ids';
import { digestOfDocument, digestOfParts, type TraceDigest } from './runs-model';
import { DEFAULT_PROFILE_SETTINGS } from './run-config';

/** One trace file. */
export interface RunEntry {
  uri: vscode.Uri;
  path: string;
  /** File name. */
  name: string;
  mtimeMs: number;
  size: number;
  /** The workspace folder whose output folder holds it (undefined: opened from elsewhere). */
  folder: vscode.WorkspaceFolder | undefined;
}

export const TRACE_SUFFIX = '.parallax.json';

/** Files up to this size are parsed whole for a digest; larger ones are read at both ends. */
const WHOLE_DIGEST_BYTES = 8 * 2 ** 20;
const END_BYTES = 4 * 2 ** 20;
/** Full traces kept parsed in memory (each can be large). */
const TRACE_CACHE = 2;

export class RunStore implements vscode.Disposable {
  private entries: RunEntry[] = [];
  private readonly external = new Map<string, RunEntry>();
  private readonly digests = new Map<string, { mtimeMs: number; size: number; digest: Promise<TraceDigest | null> }>();
  private readonly traces: { path: string; mtimeMs: number; trace: Promise<Trace> }[] = [];
  private watchers: vscode.Disposable[] = [];
  private readonly changed = new vscode.EventEmitter<void>();
  private readonly disposables: vscode.Disposable[] = [this.changed];
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | null = null;
  /** Fires after a rescan found the list or a file changed. */
  readonly onDidChange = this.changed.event;

  constructor(private readonly ctx: Ctx) {
    this.disposables.push(
      vscode.workspace.onDidChangeWorkspaceFolders(() => this.rewatch()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration(Setting.outputFolder)) this.rewatch();
      }),
    );
    this.rewatch();
  }

  /** The output folder of a workspace folder (absolute). */
  outputDir(folder: vscode.WorkspaceFolder): string {
    const out = this.ctx.profileSettings(folder.uri).outputFolder || DEFAULT_PROFILE_SETTINGS.outputFolder;
    return isAbsolute(out) ? out : resolve(folder.uri.fsPath, out);
  }

  /** Output folders of every workspace folder, without repeats. */
  outputDirs(): { folder: vscode.WorkspaceFolder; dir: string }[] {
    const seen = new Set<string>();
    const out: { folder: vscode.WorkspaceFolder; dir: string }[] = [];
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      const dir = this.outputDir(folder);
      if (seen.has(dir)) continue;
      seen.add(dir);
      out.push({ folder, dir });
    }
    return out;
  }

  private rewatch(): void {
    for (const w of this.watchers) w.dispose();
    this.watchers = [];
    for (const { dir } of this.outputDirs()) {
      const w = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(dir), `*${TRACE_SUFFIX}`));
      w.onDidCreate(() => this.schedule());
      w.onDidDelete(() => this.schedule());
      w.onDidChange(() => this.schedule());
      this.watchers.push(w);
    }
    this.schedule(0);
  }

  private schedule(ms = 200): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), ms);
  }

  /** Rescans the output folders now; resolves when the list is current. */
  refresh(): Promise<void> {
    const run = async (): Promise<void> => {
      const found: RunEntry[] = [];
      for (const { folder, dir } of this.outputDirs()) {
        let names: string[];
        try {
          names = await fs.readdir(dir);
        } catch {
          continue; // No output folder yet.
        }
        for (const name of names) {
          if (!name.endsWith(TRACE_SUFFIX) || name.startsWith('.')) continue;
          const path = join(dir, name);
          try {
            const st = await fs.stat(path);
            if (st.isFile()) found.push({ uri: vscode.Uri.file(path), path, name, mtimeMs: st.mtimeMs, size: st.size, folder });
          } catch {
            // Deleted while scanning.
          }
        }
      }
      for (const e of this.external.values()) if (!found.some((f) => f.path === e.path)) found.push(e);
      found.sort((a, b) => b.mtimeMs - a.mtimeMs || a.name.localeCompare(b.name));
      const before = this.entries.map((e) => `${e.path}@${e.mtimeMs}`).join('|');
      this.entries = found;
      if (found.map((e) => `${e.path}@${e.mtimeMs}`).join('|') !== before) this.changed.fire();
    };
    // Scans run one after another, so a late one never overwrites a newer list.
    this.scanning = (this.scanning ?? Promise.resolve()).then(run, run);
    return this.scanning;
  }

  /** Every known trace, newest first. */
  list(): readonly RunEntry[] {
    return this.entries;
  }

  /** The entry for a path, if known. */
  entry(path: string): RunEntry | undefined {
    return this.entries.find((e) => e.path === path);
  }

  /** Adds a trace from outside the output folders (Open Trace…) to the list for this session. */
  async addExternal(path: string): Promise<void> {
    if (this.entries.some((e) => e.path === path)) return;
    const st = await fs.stat(path);
    this.external.set(path, { uri: vscode.Uri.file(path), path, name: basename(path), mtimeMs: st.mtimeMs, size: st.size, folder: undefined });
    await this.refresh();
  }

  /** Forgets an external entry (after deleting it). */
  forget(path: string): void {
    this.external.delete(path);
    this.digests.delete(path);
  }

  /** The digest of a trace (meta, summary, findings), cached while the file is unchanged; null when unreadable. */
  async digest(path: string): Promise<TraceDigest | null> {
    let st;
    try {
      st = await fs.stat(path);
    } catch {
      return null;
    }
    const hit = this.digests.get(path);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.digest;
    const digest = readDigest(path, st.size).catch((e: unknown) => {
      this.ctx.output.warn(`cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    });
    this.digests.set(path, { mtimeMs: st.mtimeMs, size: st.size, digest });
    return digest;
  }

  /** The full trace (spans included), cached for the last few files read. */
  async trace(path: string): Promise<Trace> {
    const st = await fs.stat(path);
    const i = this.traces.findIndex((t) => t.path === path);
    if (i >= 0 && this.traces[i].mtimeMs === st.mtimeMs) {
      const [t] = this.traces.splice(i, 1);
      this.traces.unshift(t);
      return t.trace;
    }
    if (i >= 0) this.traces.splice(i, 1);
    const trace = readTrace(path);
    this.traces.unshift({ path, mtimeMs: st.mtimeMs, trace });
    this.traces.length = Math.min(this.traces.length, TRACE_CACHE);
    trace.catch(() => {
      const j = this.traces.findIndex((t) => t.trace === trace);
      if (j >= 0) this.traces.splice(j, 1);
    });
    return trace;
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers) w.dispose();
    for (const d of this.disposables) d.dispose();
  }
}

async function readDigest(path: string, size: number): Promise<TraceDigest | null> {
  if (size <= WHOLE_DIGEST_BYTES) return digestOfDocument(JSON.parse(await fs.readFile(path, 'utf8')));
  const fh = await fs.open(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(END_BYTES, size));
    await fh.read(head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(END_BYTES, size));
    await fh.read(tail, 0, tail.length, size - tail.length);
    // A multi-byte character cut at either end only spoils text outside meta and the tail's
    // derived parts, which are found by their own markers.
    return digestOfParts(head.toString('utf8'), tail.toString('utf8'));
  } finally {
    await fh.close();
  }
}
