/**
 * End-to-end harness: the packaged extension in a real VS Code workbench.
 *
 * code-server (VS Code's workbench and extension host, served over HTTP) is installed by
 * scripts/setup-code-server.mjs, the VSIX is built by scripts/package.mjs and installed
 * with `--install-extension`, and headless Chromium (Debian's `chromium`, driven by
 * playwright-core) operates the workbench as a user would: command palette, quick picks,
 * notifications, explorer, webviews.
 *
 * Every instance gets a fresh user-data-dir and extensions-dir under a temp folder and its
 * own port; `close()` kills code-server's whole process group (extension host, runner
 * processes and all) and removes the temp folder. Screenshots and, on failure, the
 * workbench logs go to test-artifacts/vscode/ (git-ignored).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { chromium, type Browser, type Frame, type Page } from 'playwright-core';
import { it as nodeIt } from 'node:test';
import type { ViewStats } from '../../../webview/src/hook-api';
import { chromiumMissing, codeServerMissing, needs } from '../../helpers/prerequisites';
import { removeTempDir, scratchDir } from '../../helpers/temp';
import { ensureDemoModel, type DemoModelOptions } from '../../../src/runtime/onnx/demo-model';

export const REPO = resolve(__dirname, '..', '..', '..');
export const ARTIFACTS = join(REPO, 'test-artifacts', 'vscode');

/** Must match scripts/setup-code-server.mjs. */
export const CODE_SERVER_VERSION = '4.100.3';

export function codeServerDir(): string {
  const env = process.env['PARALLAX_CODE_SERVER_DIR'];
  return env ? resolve(env) : join(REPO, '.cache', 'code-server');
}

export function codeServerBin(): string {
  return join(codeServerDir(), 'node_modules', '.bin', 'code-server');
}

/** Chromium to drive; $PARALLAX_CHROMIUM overrides Debian's. */
export function chromiumPath(): string {
  return process.env['PARALLAX_CHROMIUM'] ?? '/usr/bin/chromium';
}

/** Chromium flags for a quiet, offline, sandbox-less headless run (as root in CI). */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/**
 * Makes sure code-server is installed, running the setup script when it is not (about 40 s
 * cold with a reachable npm registry; nothing when installed). Throws with what to do when
 * the setup fails or Chromium is missing.
 */
export function ensureCodeServer(): string {
  if (!existsSync(chromiumPath())) {
    throw new Error(`no Chromium at ${chromiumPath()}: install it (apt-get install -y chromium) or set PARALLAX_CHROMIUM`);
  }
  const script = join(REPO, 'scripts', 'setup-code-server.mjs');
  if (spawnSync(process.execPath, [script, '--check']).status === 0) return codeServerBin();
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 15 * 60_000 });
  if (r.status !== 0) throw new Error(`scripts/setup-code-server.mjs failed (status ${r.status}); see its output above`);
  return codeServerBin();
}

/**
 * Why the workbench tests cannot run here (no Chromium, or code-server neither installed nor
 * buildable), with the install command; undefined when they can (or prerequisites are
 * required). Suites return early from `before` when it is set; {@link workbenchIt} skips each test.
 */
export function workbenchMissing(): string | undefined {
  return needs(chromiumMissing(), codeServerMissing()).skip;
}

/**
 * `it` for workbench tests: each test skips with {@link workbenchMissing}'s reason, and a
 * failing test leaves a screenshot of the workbench behind.
 */
export function workbenchIt(harness: () => VsCodeHarness | undefined): (name: string, fn: () => Promise<void>) => void {
  const skip = workbenchMissing();
  return (name, fn) => {
    nodeIt(name, skip ? { skip } : {}, async () => {
      try {
        await fn();
      } catch (e) {
        await harness()?.screenshot(`FAILED-${name.slice(0, 40)}`).catch(() => undefined);
        throw e;
      }
    });
  };
}

/** Files whose content decides the VSIX: the cache key of {@link ensureVsix}. */
function vsixInputs(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(join(REPO, 'src'));
  walk(join(REPO, 'webview', 'dist'));
  for (const f of ['package.json', '.vscodeignore', 'README.md', 'CHANGELOG.md', 'LICENSE', 'scripts/build.mjs', 'scripts/package.mjs', 'node_modules/onnxruntime-node/package.json']) {
    if (existsSync(join(REPO, f))) out.push(join(REPO, f));
  }
  return out;
}

/**
 * The VSIX under test: packaged with scripts/package.mjs (production build included) into
 * .cache/e2e/, and reused while none of its inputs changed, so that several e2e files in one
 * run (and reruns without changes) package once. $PARALLAX_E2E_VSIX uses a given file instead.
 */
export function ensureVsix(): string {
  const given = process.env['PARALLAX_E2E_VSIX'];
  if (given) return resolve(given);
  const hash = createHash('sha256');
  for (const f of vsixInputs()) {
    hash.update(relative(REPO, f));
    hash.update(readFileSync(f));
  }
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(REPO, '.cache', 'e2e');
  const vsix = join(dir, `parallax-linux-x64-${key}.vsix`);
  if (existsSync(vsix)) return vsix;
  mkdirSync(dir, { recursive: true });
  for (const old of readdirSync(dir)) if (old.endsWith('.vsix')) rmSync(join(dir, old), { force: true });
  const tmp = `${vsix}.partial-${process.pid}.vsix`;
  const r = spawnSync(process.execPath, [join(REPO, 'scripts', 'package.mjs'), '--out', tmp], { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/package.mjs failed:\n${r.stdout}\n${r.stderr}`);
  cpSync(tmp, vsix);
  rmSync(tmp, { force: true });
  return vsix;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface HarnessOptions {
  /** Folder to open as the workspace. */
  workspace: string;
  /** VSIX to install (default: none). */
  vsix?: string;
  /** Keep workspace trust on (for tests about trust); off by default. */
  trust?: boolean;
  /** User settings, merged over the harness's quiet defaults. */
  settings?: Record<string, unknown>;
  /**
   * User keybindings (keybindings.json). A keybinding runs its command through VS Code's
   * command service with `args`, as `vscode.commands.executeCommand` does, palette `when`
   * clauses aside.
   */
  keybindings?: { key: string; command: string; args?: unknown }[];
  /** Prefix for screenshots and logs. */
  name?: string;
}

/** Settings that keep the workbench quiet and deterministic. */
const QUIET_SETTINGS: Record<string, unknown> = {
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'workbench.enableExperiments': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'update.mode': 'none',
  'git.enabled': false,
  'chat.commandCenter.enabled': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'window.restoreWindows': 'none',
};

const QUICK_INPUT = '.quick-input-widget';
const QUICK_INPUT_BOX = `${QUICK_INPUT} .quick-input-box input`;
/** The quick input's text field (its placeholder says what the input asks for). */
export const QUICK_INPUT_FIELD = QUICK_INPUT_BOX;
const QUICK_ROWS = `${QUICK_INPUT} .quick-input-list .monaco-list-row`;
const TOASTS = '.notifications-toasts .notification-list-item';

export class VsCodeHarness {
  private logs: string;
  private shots = 0;

  private constructor(
    readonly page: Page,
    private readonly browser: Browser,
    private readonly server: ChildProcess,
    private readonly temp: string,
    readonly url: string,
    readonly name: string,
    private readonly serverLog: string,
  ) {
    this.logs = join(temp, 'user-data', 'logs');
  }

  /** Starts code-server on a free port, installs the VSIX, opens the workspace in Chromium. */
  static async start(opts: HarnessOptions): Promise<VsCodeHarness> {
    const bin = ensureCodeServer();
    const name = opts.name ?? 'vscode';
    mkdirSync(ARTIFACTS, { recursive: true });
    // This run's screenshots and logs replace the last run's of the same name.
    for (const f of readdirSync(ARTIFACTS)) if (f.startsWith(`${name}-`)) rmSync(join(ARTIFACTS, f), { recursive: true, force: true });
    const temp = scratchDir('e2e');
    const userData = join(temp, 'user-data');
    const extensions = join(temp, 'extensions');
    mkdirSync(join(userData, 'User'), { recursive: true });
    mkdirSync(extensions, { recursive: true });
    writeFileSync(join(userData, 'User', 'settings.json'), JSON.stringify({ ...QUIET_SETTINGS, ...opts.settings }, null, 2));
    if (opts.keybindings) writeFileSync(join(userData, 'User', 'keybindings.json'), JSON.stringify(opts.keybindings, null, 2));
    const common = ['--user-data-dir', userData, '--extensions-dir', extensions];
    if (opts.vsix) {
      const r = spawnSync(bin, [...common, '--install-extension', opts.vsix, '--force'], { encoding: 'utf8', timeout: 120_000 });
      if (r.status !== 0 || !/successfully installed/i.test(`${r.stdout}${r.stderr}`)) {
        rmSync(temp, { recursive: true, force: true });
        throw new Error(`code-server --install-extension ${opts.vsix} failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
      }
    }
    const port = await freePort();
    const serverLog = join(ARTIFACTS, `${name}-code-server.log`);
    const logStream = createWriteStream(serverLog);
    const args = [
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      ...common,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-getting-started-override',
      ...(opts.trust ? [] : ['--disable-workspace-trust']),
      opts.workspace,
    ];
    // Its own process group, so close() can end code-server, the extension host and every
    // runner process it forked with one signal. Their temp files go into this instance's temp
    // folder, which close() removes: a process killed with its group cannot clean up itself.
    const serverTemp = join(temp, 'tmp');
    mkdirSync(serverTemp);
    const env = { ...withoutElectronAsNode(), TMPDIR: serverTemp };
    const server = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
    server.stdout?.pipe(logStream);
    server.stderr?.pipe(logStream);
    const url = `http://127.0.0.1:${port}/?folder=${encodeURIComponent(opts.workspace)}`;
    let browser: Browser | null = null;
    try {
      await waitForHttp(`http://127.0.0.1:${port}/healthz`, server, 60_000);
      browser = await chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, headless: true });
      const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
      const page = await context.newPage();
      await page.goto(url);
      await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
      const h = new VsCodeHarness(page, browser, server, temp, url, name, serverLog);
      await h.waitForWorkbenchReady();
      return h;
    } catch (e) {
      await browser?.close().catch(() => undefined);
      killGroup(server);
      rmSync(temp, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * Waits until the workbench has laid out its status bar and explorer. Commands need no
   * further wait: running an extension's command activates it and waits for that.
   */
  private async waitForWorkbenchReady(): Promise<void> {
    await this.page.waitForSelector('.part.statusbar', { timeout: 60_000 });
    await this.page.waitForSelector('.explorer-folders-view', { state: 'attached', timeout: 60_000 });
  }

  /** Focuses the workbench so keyboard shortcuts reach it. */
  private async focusWorkbench(): Promise<void> {
    await this.page.locator('.monaco-workbench').focus().catch(() => undefined);
  }

  /** Opens the command palette (F1). */
  async openPalette(): Promise<void> {
    await this.focusWorkbench();
    await this.page.keyboard.press('F1');
    await this.page.waitForSelector(QUICK_INPUT_BOX, { state: 'visible' });
  }

  /** Labels of the rows the quick input shows now (aria-labels, which carry label and description). */
  async quickPickRows(): Promise<string[]> {
    await this.page.waitForSelector(QUICK_ROWS, { state: 'visible' });
    return this.page.locator(QUICK_ROWS).evaluateAll((rows) => rows.map((r) => r.getAttribute('aria-label') ?? r.textContent ?? ''));
  }

  /** Runs a command by its palette title (e.g. "Parallax: Profile Model…"): F1, type, pick. */
  async runCommand(title: string, timeoutMs = 30_000): Promise<void> {
    await this.findInPalette(title, timeoutMs);
    await this.selectRow(title);
  }

  /**
   * Opens the palette filtered by `filter` and waits until a row contains `text`, reopening
   * it while VS Code is still learning the extensions' contributions (right after start the
   * palette can say "No matching commands" for a command that appears a moment later).
   * Leaves the palette open; returns its rows.
   */
  async findInPalette(text: string, timeoutMs = 30_000, filter = text): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.openPalette();
      // The palette can close between opening and typing when something else takes focus
      // (a webview panel, a notification's progress); then it is opened again.
      const typed = await this.page.fill(QUICK_INPUT_BOX, `>${filter}`, { timeout: 3000 }).then(
        () => true,
        () => false,
      );
      const row = this.page.locator(QUICK_ROWS).filter({ hasText: text }).first();
      const found = typed && (await row.waitFor({ state: 'visible', timeout: 1500 }).then(
        () => true,
        () => false,
      ));
      if (found) return this.quickPickRows();
      if (Date.now() > deadline) {
        throw new Error(`the command palette shows no "${text}" after ${timeoutMs} ms; rows: ${JSON.stringify(await this.page.locator(QUICK_ROWS).allTextContents())}`);
      }
      await this.page.keyboard.press('Escape');
      await this.page.waitForTimeout(500);
    }
  }

  /**
   * Picks a quick-pick row and accepts it. A string is typed into the filter first and picks
   * the first row containing it; a RegExp is matched against the rows' text (label, then
   * description and detail) without typing, e.g. /^16/ for the row labelled 16.
   */
  async quickPick(text: string | RegExp, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.page.waitForSelector(QUICK_INPUT_BOX, { state: 'visible', timeout: opts.timeoutMs ?? 30_000 });
    if (typeof text === 'string') await this.page.fill(QUICK_INPUT_BOX, text);
    await this.selectRow(text, opts.timeoutMs);
  }

  /** Waits for a quick input (e.g. the next step of a flow) whose title contains `title`. */
  async waitForQuickInput(title: string | RegExp, timeoutMs = 30_000): Promise<void> {
    const re = typeof title === 'string' ? new RegExp(escapeRegExp(title)) : title;
    await this.page
      .locator(`${QUICK_INPUT} .quick-input-title`)
      .filter({ hasText: re })
      .first()
      .waitFor({ state: 'visible', timeout: timeoutMs });
  }

  /** Accepts the quick input as it stands (the active row, or the typed text of an input box). */
  async acceptQuickInput(): Promise<void> {
    await this.page.locator(QUICK_INPUT_BOX).press('Enter');
  }

  private async selectRow(text: string | RegExp, timeoutMs = 30_000): Promise<void> {
    const row = this.page.locator(QUICK_ROWS).filter({ hasText: text }).first();
    await row.waitFor({ state: 'visible', timeout: timeoutMs });
    // A click on a row accepts it, as for a user; no Enter afterwards, which could land
    // on the next quick pick of a flow.
    await row.click();
  }

  /** Closes whatever quick input is open. */
  async dismissQuickInput(): Promise<void> {
    if (await this.page.locator(QUICK_INPUT_BOX).isVisible()) await this.page.keyboard.press('Escape');
    await this.page.waitForSelector(QUICK_INPUT_BOX, { state: 'hidden' });
  }

  /** Texts of the notification toasts visible now. */
  async notifications(): Promise<string[]> {
    return this.page.locator(`${TOASTS} .notification-list-item-message`).allTextContents();
  }

  /** Clears every notification, so that a later wait cannot match an old one. */
  async clearNotifications(): Promise<void> {
    await this.runCommand('Notifications: Clear All Notifications');
    await this.page.locator(TOASTS).first().waitFor({ state: 'detached', timeout: 10_000 }).catch(() => undefined);
  }

  /**
   * Waits for a notification toast whose text matches `re` and returns its text. Fails early
   * when a toast matching `failOn` appears (e.g. the extension reporting an error).
   */
  async waitForNotification(re: RegExp, opts: { timeoutMs?: number; failOn?: RegExp } = {}): Promise<string> {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      const texts = await this.notifications();
      const hit = texts.find((t) => re.test(t));
      if (hit !== undefined) return hit;
      const bad = opts.failOn ? texts.find((t) => opts.failOn!.test(t)) : undefined;
      if (bad !== undefined) throw new Error(`notification "${bad}" appeared while waiting for ${re}`);
      if (Date.now() > deadline) throw new Error(`no notification matching ${re} within ${opts.timeoutMs ?? 60_000} ms; visible: ${JSON.stringify(texts)}`);
      await this.page.waitForTimeout(200);
    }
  }

  /** Opens a workspace file by its path relative to the folder, through Quick Open. */
  async openFile(relPath: string): Promise<void> {
    await this.openPalette();
    // Quick Open is the palette without the `>` prefix.
    await this.page.fill(QUICK_INPUT_BOX, relPath);
    const base = relPath.split('/').pop()!;
    await this.selectRow(base);
    await this.page.locator('.tabs-container .tab').filter({ hasText: base }).first().waitFor({ state: 'visible' });
  }

  /** The explorer row of a workspace file (its folders expanded first). */
  async explorerItem(relPath: string): Promise<ReturnType<Page['locator']>> {
    const parts = relPath.split('/');
    for (let i = 0; i < parts.length; i++) {
      // Rows carry their name as aria-label and their depth as aria-level (1 at the top of a
      // single-folder workspace, whose root has no row of its own).
      const row = this.page.locator(`.explorer-folders-view .monaco-list-row[aria-level="${i + 1}"][aria-label=${JSON.stringify(parts[i])}]`).first();
      await row.waitFor({ state: 'visible' });
      if (i < parts.length - 1 && (await row.getAttribute('aria-expanded')) === 'false') await row.click();
      if (i === parts.length - 1) return row;
    }
    throw new Error('unreachable');
  }

  /** Right-clicks an explorer item and picks a context-menu entry by its label. */
  async explorerContextMenu(relPath: string, entry: string): Promise<void> {
    const item = await this.explorerItem(relPath);
    const menuItem = this.page.locator('.monaco-menu .action-item .action-label').filter({ hasText: entry }).first();
    // Menus contributed by an extension appear once the workbench knows the extension: reopen
    // the menu a few times before giving up.
    for (let attempt = 1; ; attempt++) {
      await item.click({ button: 'right' });
      const shown = await menuItem.waitFor({ state: 'visible', timeout: 3000 }).then(
        () => true,
        () => false,
      );
      if (shown) break;
      await this.page.keyboard.press('Escape');
      if (attempt === 5) throw new Error(`the explorer context menu of ${relPath} has no "${entry}"`);
      await this.page.waitForTimeout(1000);
    }
    // VS Code's context menu ignores a mouse-up that comes right after it opened (the release
    // of the right click); hovering focuses the entry and Enter runs it, as from the keyboard.
    await menuItem.hover();
    await this.page.keyboard.press('Enter');
    await menuItem.waitFor({ state: 'hidden' });
  }

  /** Closes the editor tabs whose title matches (a middle click, as a user would), and waits until they are gone. */
  async closeTabs(title: string | RegExp, timeoutMs = 10_000): Promise<void> {
    const tabs = this.page.locator('.tabs-container .tab').filter({ hasText: title });
    const deadline = Date.now() + timeoutMs;
    while ((await tabs.count()) > 0) {
      if (Date.now() > deadline) throw new Error(`tabs matching ${String(title)} did not close`);
      await tabs.first().click({ button: 'middle' });
      await this.page.waitForTimeout(200);
    }
  }

  /** Text of the status bar items. */
  async statusBarTexts(): Promise<string[]> {
    return this.page.locator('.statusbar-item').allTextContents();
  }

  /**
   * The frames that hold webview content. VS Code puts each webview in an iframe (its
   * host page) with the extension's document in a nested iframe; these are the inner ones.
   */
  webviewFrames(): Frame[] {
    return this.page.frames().filter((f) => {
      const parent = f.parentFrame();
      return parent !== null && /\/webview\/browser\/pre\//.test(parent.url()) && f !== parent;
    });
  }

  /** Saves a screenshot as test-artifacts/vscode/<name>-NN-<label>.png and returns its path. */
  async screenshot(label: string): Promise<string> {
    const file = join(ARTIFACTS, `${this.name}-${String(++this.shots).padStart(2, '0')}-${label.replace(/[^\w.-]+/g, '-')}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }

  /**
   * The text of the workbench's log files whose path matches `file` (e.g. /parallax/i for the
   * extension's output channel, which VS Code keeps as a log file), concatenated.
   */
  logText(file: RegExp): string {
    const out: string[] = [];
    const walk = (dir: string): void => {
      if (!existsSync(dir)) return;
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (name.endsWith('.log') && file.test(relative(this.logs, p))) out.push(readFileSync(p, 'utf8'));
      }
    };
    walk(this.logs);
    return out.join('\n');
  }

  /** Waits until a log file matching `file` has a line matching `line` (logs are written asynchronously); returns the line. */
  async waitForLog(file: RegExp, line: RegExp, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.logText(file).split('\n').find((l) => line.test(l));
      if (hit !== undefined) return hit;
      if (Date.now() > deadline) throw new Error(`no line matching ${line} in the logs matching ${file} within ${timeoutMs} ms`);
      await this.page.waitForTimeout(250);
    }
  }

  /** Copies the workbench and extension-host logs into the artifacts folder (for failures). */
  saveLogs(): string {
    const dest = join(ARTIFACTS, `${this.name}-logs`);
    rmSync(dest, { recursive: true, force: true });
    if (existsSync(this.logs)) cpSync(this.logs, dest, { recursive: true });
    return dest;
  }

  /** Closes the browser and ends code-server's process group; removes the temp folders. */
  async close(): Promise<void> {
    await this.browser.close().catch(() => undefined);
    await stopGroup(this.server);
    removeTempDir(this.temp);
  }

  /** Where code-server's own output went. */
  get serverLogPath(): string {
    return this.serverLog;
  }
}

/** A suite's teardown: keep the workbench's logs, close it, remove its workspace folder. */
export async function closeWorkbench(vs: VsCodeHarness | undefined, workspace: string | undefined): Promise<void> {
  if (vs) {
    vs.saveLogs();
    await vs.close();
  }
  if (workspace) rmSync(workspace, { recursive: true, force: true });
}

/**
 * Posts `data` to the extension as the view's own `acquireVsCodeApi().postMessage` does: that
 * function calls `__vscode_post_message__('onmessage', { message })` on the webview's host
 * frame (the view's parent, which VS Code hides from the view's own scripts).
 */
export async function postFromView(frame: Frame, data: unknown): Promise<void> {
  const hostFrame = frame.parentFrame();
  if (!hostFrame) throw new Error('the view has no host frame');
  await hostFrame.evaluate(`window.__vscode_post_message__('onmessage', { message: ${JSON.stringify(data)} })`);
}

/** The timeline's draw statistics, from its test hook. */
export async function viewStats(f: Frame): Promise<ViewStats> {
  return (await f.evaluate('window.__parallax.stats()')) as ViewStats;
}

/**
 * Moves the mouse onto span `span` of run 0 (it must be on screen), waits for the tooltip,
 * saves a screenshot named `shot` and returns the tooltip's text, the point hovered (page
 * coordinates) and the frame's box.
 */
export async function hoverSpan(
  h: VsCodeHarness,
  frame: Frame,
  span: number,
  shot: string,
): Promise<{ text: string; x: number; y: number; box: { x: number; y: number } }> {
  const at = (await frame.evaluate(`window.__parallax.locate(0, ${span})`)) as { x: number; y: number } | null;
  if (!at) throw new Error(`span ${span} is not on screen`);
  const box = await (await frame.frameElement()).boundingBox();
  if (!box) throw new Error('the timeline frame has no box');
  const x = box.x + at.x;
  const y = box.y + at.y;
  await h.page.mouse.move(x, y);
  const tip = frame.locator('#px-tooltip');
  await tip.waitFor({ state: 'visible', timeout: 10_000 });
  const text = (await tip.textContent()) ?? '';
  await h.screenshot(shot);
  return { text, x, y, box };
}

/**
 * The timeline's webview frame once its trace is drawn: lane elements present and the hook
 * reporting `loaded`.
 */
export async function timelineFrame(h: VsCodeHarness, timeoutMs = 30_000): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const f of h.webviewFrames()) {
      const lanes = await f.locator('.px-app .px-lane').count().catch(() => 0);
      if (lanes === 0) continue;
      const loaded = await f.evaluate('window.__parallax.stats().loaded').catch(() => false);
      if (loaded === true) return f;
    }
    if (Date.now() > deadline) throw new Error(`no timeline webview with a drawn trace within ${timeoutMs} ms (${h.webviewFrames().length} webview frames)`);
    await h.page.waitForTimeout(250);
  }
}

/** This process's environment, less ELECTRON_RUN_AS_NODE (when tests run inside VS Code's terminal). */
function withoutElectronAsNode(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['ELECTRON_RUN_AS_NODE'];
  return env;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function waitForHttp(url: string, server: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`code-server exited with code ${server.exitCode} before listening`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`code-server did not answer ${url} within ${timeoutMs} ms`);
}

function killGroup(p: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (p.pid === undefined) return;
  try {
    process.kill(-p.pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGTERM to the group, SIGKILL after 5 s if code-server is still there. */
async function stopGroup(p: ChildProcess): Promise<void> {
  if (p.pid === undefined) return;
  const exited = p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => p.once('exit', () => r()));
  killGroup(p, 'SIGTERM');
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000).unref());
  if ((await Promise.race([exited, timer])) === 'timeout') killGroup(p, 'SIGKILL');
  // Children that ignored SIGTERM (a runner busy in native code) go too.
  killGroup(p, 'SIGKILL');
}

/**
 * A fresh workspace folder (`prefix` names it) holding a generated demo model under
 * `models/`, for suites that run the built CLI on it before the workbench starts; fails
 * when the CLI has not been built.
 */
export async function workspaceWithDemoModel(prefix: string, demo: DemoModelOptions): Promise<{ ws: string; modelRel: string }> {
  const ws = mkdtempSync(join(tmpdir(), prefix));
  const scratch = mkdtempSync(join(tmpdir(), 'parallax-e2e-model-'));
  const model = await ensureDemoModel(scratch, demo);
  mkdirSync(join(ws, 'models'));
  const modelRel = `models/${model.split('/').pop()!}`;
  copyFileSync(model, join(ws, modelRel));
  rmSync(scratch, { recursive: true, force: true });
  if (!existsSync(join(REPO, 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` first');
  return { ws, modelRel };
}
