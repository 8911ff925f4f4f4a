/**
 * Mapping ONNX nodes back to the user's Python source, as pure functions over strings:
 *
 *  - TorchScript exporter: node names carry module scopes, `/layers.3/mlp/fc1/MatMul` →
 *    module path `layers.3.mlp.fc1` ({@link moduleScopeOfNodeName}); ORT's fused names
 *    (`fused /layers.3/mlp/fc1/MatMul/MatMulAddFusion`) are mapped back first.
 *  - dynamo exporter: `pkg.torch.onnx.name_scopes` (cumulative module paths, the node's own
 *    name last) and `pkg.torch.onnx.class_hierarchy` (the class of each level) give the path
 *    and the owning classes ({@link scopeStepsOfMetadata}); `pkg.torch.onnx.stack_trace`
 *    gives file and line ({@link parseStackTrace}, {@link userFrame}), matched to workspace
 *    files by trailing path components ({@link matchTrailingPath}).
 *  - A module path resolves to `self.<attr> = …` definitions in the workspace's Python
 *    ({@link indexPython}, {@link PythonIndex}): the first attribute is looked up among all
 *    classes, each next one in the class the previous definition constructs (its right-hand
 *    side calls a workspace class, e.g. `nn.ModuleList([Block(…) …])` → Block), with base
 *    classes searched too; where the chain cannot be followed, any class defining the
 *    attribute is tried, and the reading that resolves the longest chain wins. Indexed
 *    entries (`layers.3`, a ModuleList or Sequential child) aggregate to the attribute.
 *
 * No `vscode` import; source-model.ts combines this with a trace's operator times.
 */
import { modelNodeName } from '../profiler/analysis/ops';

// ---------------------------------------------------------------------------------------------
// Scopes

/** One attribute step of a module path, with the ModuleList/Sequential indices that follow it. */
export interface ScopeStep {
  attr: string;
  /** `layers.3` → [3]; nested containers give several. */
  indices: number[];
  /** The class that defines the attribute, when the exporter recorded it (dynamo's class_hierarchy). */
  owner?: string;
}

const NUMERIC = /^\d+$/;

/**
 * The module path of a TorchScript-exported node name: the scope components before the
 * operator's own name, with a component that repeats its parent's as a prefix
 * (`/layer1/layer1.0/conv1/Conv`, a traced Sequential) reduced to its own part. `''` for a
 * node at the root scope (`/Add`); null for names without scopes (`MatMul_3`, dynamo's
 * `node_linear`). Fused and renamed operator names from ONNX Runtime are mapped back first.
 */
export function moduleScopeOfNodeName(name: string, known?: ReadonlySet<string>): string | null {
  const node = modelNodeName(name, known);
  if (!node.startsWith('/')) return null;
  const comps = node.split('/').slice(1, -1).filter((c) => c !== '');
  const out: string[] = [];
  let prev = '';
  for (const c of comps) {
    const own = prev !== '' && c.startsWith(`${prev}.`) ? c.slice(prev.length + 1) : c;
    out.push(own);
    prev = c;
  }
  return out.join('.');
}

/** Steps of a dotted module path: `layers.3.mlp.fc1` → layers[3], mlp, fc1. A leading index has no attribute and is dropped. */
export function scopeSteps(modulePath: string): ScopeStep[] {
  const steps: ScopeStep[] = [];
  for (const seg of modulePath.split('.')) {
    if (seg === '') continue;
    if (NUMERIC.test(seg)) {
      steps[steps.length - 1]?.indices.push(Number(seg));
      continue;
    }
    steps.push({ attr: seg, indices: [] });
  }
  return steps;
}

/**
 * A Python list of strings as `repr()` writes it (`['', 'layers.0', "it's"]`); null when
 * the text is not one.
 */
export function parsePythonStringList(text: string): string[] | null {
  const t = text.trim();
  if (!t.startsWith('[') || !t.endsWith(']')) return null;
  const out: string[] = [];
  let i = 1;
  const n = t.length - 1;
  for (;;) {
    while (i < n && /[\s,]/.test(t[i])) i++;
    if (i >= n) return out;
    const q = t[i];
    if (q !== "'" && q !== '"') return null;
    let s = '';
    for (i++; i < n && t[i] !== q; i++) {
      if (t[i] === '\\' && i + 1 < n) {
        i++;
        const e = t[i];
        s += e === 'n' ? '\n' : e === 't' ? '\t' : e;
      } else s += t[i];
    }
    if (i >= n) return null;
    out.push(s);
    i++;
  }
}

/** Last component of a dotted class name: `torch.nn.modules.linear.Linear` → `Linear`. */
export function shortClassName(qualified: string): string {
  const i = qualified.lastIndexOf('.');
  return i < 0 ? qualified : qualified.slice(i + 1);
}

/** Metadata keys of the dynamo exporter. */
export const META_NAME_SCOPES = 'pkg.torch.onnx.name_scopes';
export const META_CLASS_HIERARCHY = 'pkg.torch.onnx.class_hierarchy';
export const META_STACK_TRACE = 'pkg.torch.onnx.stack_trace';

/**
 * Scope steps from dynamo metadata: `name_scopes` lists cumulative module paths from the root
 * (`''`) with the node's own name last (`['', 'layers.0', 'layers.0.mlp', 'linear']`), and
 * `class_hierarchy` the class of each level, so every attribute's owning class is known.
 * Null without `name_scopes`.
 */
export function scopeStepsOfMetadata(meta: Record<string, string> | null | undefined): ScopeStep[] | null {
  const raw = meta?.[META_NAME_SCOPES];
  if (raw === undefined) return null;
  const scopes = parsePythonStringList(raw);
  if (!scopes || scopes.length === 0) return null;
  const classesRaw = meta?.[META_CLASS_HIERARCHY];
  const classes = classesRaw !== undefined ? parsePythonStringList(classesRaw) : null;
  // The last entry is the node's own name unless it extends the path before it.
  const levels = scopes.slice();
  const last = levels[levels.length - 1];
  const before = levels.length > 1 ? levels[levels.length - 2] : '';
  if (levels.length > 1 && !(before === '' ? false : last.startsWith(`${before}.`))) levels.pop();
  const steps: ScopeStep[] = [];
  for (let i = 1; i < levels.length; i++) {
    const prev = levels[i - 1];
    const cur = levels[i];
    const rel = prev !== '' && cur.startsWith(`${prev}.`) ? cur.slice(prev.length + 1) : cur;
    const owner = classes && classes.length === scopes.length ? classes[i - 1] : undefined;
    let first = true;
    for (const seg of rel.split('.')) {
      if (seg === '') continue;
      if (NUMERIC.test(seg)) {
        steps[steps.length - 1]?.indices.push(Number(seg));
        continue;
      }
      // Only the first attribute of a level is owned by the previous level's class; deeper
      // ones belong to modules the exporter did not trace (a ModuleList's entries).
      steps.push({ attr: seg, indices: [], ...(first && owner !== undefined ? { owner: shortClassName(owner) } : {}) });
      first = false;
    }
  }
  return steps;
}

// ---------------------------------------------------------------------------------------------
// Python source

export interface PyClass {
  name: string;
  /** 0-based line of the `class` statement. */
  line: number;
  indent: number;
  /** Base classes' short names. */
  bases: string[];
}

/** A `self.<attr> = …` (or `self.add_module('attr', …)`) in a class body. */
export interface PyAttrDef {
  className: string;
  attr: string;
  /** 0-based line and character of `self`. */
  line: number;
  character: number;
  /** End of the statement's first line, trailing spaces and comment excluded (where a hint goes). */
  lineEnd: number;
  /** The right-hand side, all its lines joined. */
  rhs: string;
  /** Names the right-hand side calls (short names: `nn.ModuleList(` → ModuleList). */
  calls: string[];
}

export interface PyFileIndex {
  classes: PyClass[];
  defs: PyAttrDef[];
}

const CLASS_RE = /^(\s*)class\s+([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:/;
const SELF_ASSIGN_RE = /^(\s*)self\.([A-Za-z_]\w*)\s*(?::[^=]+?)?=(?!=)/;
const ADD_MODULE_RE = /^(\s*)self\.(?:add_module|register_module)\(\s*(['"])([A-Za-z_]\w*)\2\s*,/;
const CALL_RE = /([A-Za-z_][\w.]*)\s*\(/g;
const MAX_STATEMENT_LINES = 200;

const indentOf = (s: string): number => {
  let n = 0;
  for (const c of s) {
    if (c === ' ') n++;
    else if (c === '\t') n += 8 - (n % 8);
    else break;
  }
  return n;
};

/** End of a line's code: before a `#` comment outside strings, trailing spaces trimmed. */
function codeEnd(line: string): number {
  let q: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '\\') i++;
      else if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === '#') return line.slice(0, i).trimEnd().length;
  }
  return line.trimEnd().length;
}

/** The statement starting at `lines[start]` from `col`: its text through bracket-balanced continuation lines. */
function statementFrom(lines: string[], start: number, col: number): string {
  let depth = 0;
  let out = '';
  for (let l = start; l < lines.length && l < start + MAX_STATEMENT_LINES; l++) {
    const line = l === start ? lines[l].slice(col) : lines[l];
    const end = codeEnd(line);
    let q: string | null = null;
    for (let i = 0; i < end; i++) {
      const c = line[i];
      if (q) {
        if (c === '\\') i++;
        else if (c === q) q = null;
      } else if (c === '"' || c === "'") q = c;
      else if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth = Math.max(0, depth - 1);
    }
    const code = line.slice(0, end);
    out += (out ? '\n' : '') + code;
    if (depth === 0 && !code.endsWith('\\')) break;
  }
  return out;
}

/**
 * Classes and `self.<attr>` definitions of one Python file. A light reading, not a parser:
 * class bodies by indentation, triple-quoted strings skipped, statements followed through
 * open brackets. It is enough for `__init__` methods as people write them.
 */
export function indexPython(text: string): PyFileIndex {
  const lines = text.split(/\r?\n/);
  const classes: PyClass[] = [];
  const defs: PyAttrDef[] = [];
  const stack: PyClass[] = [];
  let inTriple: string | null = null;
  for (let l = 0; l < lines.length; l++) {
    const line = lines[l];
    if (inTriple) {
      if (line.includes(inTriple)) inTriple = null;
      continue;
    }
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const ind = indentOf(line);
    while (stack.length > 0 && ind <= stack[stack.length - 1].indent) stack.pop();
    // A docstring or other triple-quoted string that does not close on its own line.
    for (const tq of ['"""', "'''"]) {
      const count = line.split(tq).length - 1;
      if (count % 2 === 1) {
        inTriple = tq;
        break;
      }
    }
    const cm = CLASS_RE.exec(line);
    if (cm) {
      const cls: PyClass = {
        name: cm[2],
        line: l,
        indent: ind,
        bases: (cm[3] ?? '')
          .split(',')
          .map((b) => shortClassName(b.trim().replace(/\[.*$/, '')))
          .filter((b) => /^[A-Za-z_]\w*$/.test(b)),
      };
      classes.push(cls);
      stack.push(cls);
      continue;
    }
    const owner = stack[stack.length - 1];
    if (!owner) continue;
    const am = SELF_ASSIGN_RE.exec(line);
    const mm = am ? null : ADD_MODULE_RE.exec(line);
    if (!am && !mm) continue;
    const attr = am ? am[2] : mm![3];
    const character = (am ? am[1] : mm![1]).length;
    const rhs = am ? statementFrom(lines, l, am[0].length).trim() : statementFrom(lines, l, mm![0].length).trim();
    const calls: string[] = [];
    for (const c of rhs.matchAll(CALL_RE)) {
      const name = shortClassName(c[1]);
      if (!calls.includes(name)) calls.push(name);
    }
    defs.push({ className: owner.name, attr, line: l, character, lineEnd: codeEnd(line), rhs, calls });
  }
  return { classes, defs };
}

/** A definition and the file it is in. */
export interface DefRef {
  file: string;
  def: PyAttrDef;
}

/** Resolution of one scope step: the definitions it maps to (several where the source is ambiguous). */
export interface ResolvedStep {
  step: ScopeStep;
  defs: DefRef[];
}

/** The workspace's Python classes and definitions, for resolving module paths. */
export class PythonIndex {
  private readonly classes = new Map<string, { file: string; cls: PyClass }[]>();
  private readonly defs = new Map<string, DefRef[]>();
  private readonly withAttr = new Map<string, Set<string>>();
  /** Resolved definitions per path shape (attributes and owners; indices do not change the answer). */
  private readonly memo = new Map<string, DefRef[][]>();

  constructor(files: Iterable<[file: string, index: PyFileIndex]>) {
    for (const [file, ix] of files) {
      for (const cls of ix.classes) push(this.classes, cls.name, { file, cls });
      for (const def of ix.defs) {
        push(this.defs, `${def.className}.${def.attr}`, { file, def });
        let s = this.withAttr.get(def.attr);
        if (!s) this.withAttr.set(def.attr, (s = new Set()));
        s.add(def.className);
      }
    }
  }

  /** True when a class of this name is defined in the workspace. */
  hasClass(name: string): boolean {
    return this.classes.has(name);
  }

  /** Definitions of `attr` in class `cls` or, failing that, in its bases (depth-first). */
  defsOf(cls: string, attr: string, seen = new Set<string>()): DefRef[] {
    const own = this.defs.get(`${cls}.${attr}`);
    if (own) return own;
    if (seen.has(cls)) return [];
    seen.add(cls);
    for (const c of this.classes.get(cls) ?? []) {
      for (const b of c.cls.bases) {
        const d = this.defsOf(b, attr, seen);
        if (d.length > 0) return d;
      }
    }
    return [];
  }

  /** Workspace classes a definition constructs (the element class of a ModuleList comprehension, a submodule's class). */
  childClasses(defs: readonly DefRef[]): string[] {
    const out: string[] = [];
    for (const d of defs) for (const c of d.def.calls) if (this.classes.has(c) && !out.includes(c)) out.push(c);
    return out;
  }

  /**
   * The definitions each step of a module path maps to, from the root; the result stops
   * where the path cannot be followed further (it may be empty).
   */
  resolve(steps: readonly ScopeStep[]): ResolvedStep[] {
    const key = steps.map((s) => `${s.owner ?? ''}:${s.attr}`).join('/');
    const hit = this.memo.get(key);
    if (hit) return hit.map((defs, i) => ({ step: steps[i]!, defs }));
    const best = new Map<string, { depth: number; path: DefRef[][] }>();
    const walk = (i: number, cls: string | null): { depth: number; path: DefRef[][] } => {
      if (i >= steps.length) return { depth: 0, path: [] };
      const memoKey = `${i}|${cls ?? ''}`;
      const m = best.get(memoKey);
      if (m) return m;
      const step = steps[i];
      let owners: string[];
      if (step.owner !== undefined && this.defsOf(step.owner, step.attr).length > 0) owners = [step.owner];
      else if (cls !== null && this.defsOf(cls, step.attr).length > 0) owners = [cls];
      else owners = [...(this.withAttr.get(step.attr) ?? [])].sort();
      let top = { depth: 0, path: [] as DefRef[][] };
      const tied: DefRef[] = [];
      let tail: DefRef[][] = [];
      for (const o of owners) {
        const defs = this.defsOf(o, step.attr);
        if (defs.length === 0) continue;
        const children = this.childClasses(defs);
        let sub = { depth: 0, path: [] as DefRef[][] };
        for (const c of children.length > 0 ? children : [null]) {
          const r = walk(i + 1, c);
          if (r.depth > sub.depth) sub = r;
        }
        const depth = 1 + sub.depth;
        if (depth > top.depth) {
          top = { depth, path: [] };
          tied.length = 0;
          tail = sub.path;
        }
        if (depth === top.depth) for (const d of defs) if (!tied.includes(d)) tied.push(d);
      }
      const result = top.depth === 0 ? top : { depth: top.depth, path: [tied.slice(), ...tail] };
      best.set(memoKey, result);
      return result;
    };
    const r = walk(0, null);
    this.memo.set(key, r.path);
    return r.path.map((defs, i) => ({ step: steps[i]!, defs }));
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

// ---------------------------------------------------------------------------------------------
// Stack traces

export interface PyFrame {
  file: string;
  /** 1-based, as Python prints it. */
  line: number;
  func: string;
  /** The source line the trace shows, if any. */
  code?: string;
}

/** Frames of a Python traceback text (`File "…", line N, in f` lines, each optionally followed by its code), outermost first. */
export function parseStackTrace(text: string): PyFrame[] {
  const frames: PyFrame[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*File "([^"]+)", line (\d+)(?:, in (.+))?\s*$/.exec(lines[i]);
    if (!m) continue;
    const next = lines[i + 1];
    const code = next !== undefined && !/^\s*File "/.test(next) && next.trim() !== '' ? next.trim() : undefined;
    frames.push({ file: m[1], line: Number(m[2]), func: (m[3] ?? '').trim(), ...(code !== undefined ? { code } : {}) });
  }
  return frames;
}

/** Frames of installed packages and the interpreter: not the user's code. */
export function isLibraryFrame(file: string): boolean {
  const f = file.replace(/\\/g, '/');
  return (
    /\/(site|dist)-packages\//.test(f) ||
    /\/lib\/python\d[\d.]*\//i.test(f) ||
    /\/torch\/(nn|fx|_dynamo|onnx|export|_export|_higher_order_ops)\//.test(f) ||
    f.startsWith('<')
  );
}

/** The innermost frame of the user's own code, or null. */
export function userFrame(frames: readonly PyFrame[]): PyFrame | null {
  for (let i = frames.length - 1; i >= 0; i--) if (!isLibraryFrame(frames[i].file)) return frames[i];
  return null;
}

/**
 * Workspace files that match a path recorded on another machine by the most trailing path
 * components (at least the file name). Windows paths compare case-insensitively. Several
 * files come back only when they tie; the caller should not guess between them.
 */
export function matchTrailingPath(recorded: string, candidates: readonly string[]): string[] {
  const windows = /\\|^[A-Za-z]:/.test(recorded);
  const norm = (s: string): string => (windows ? s.toLowerCase() : s);
  const want = recorded.split(/[\\/]+/).filter((s) => s !== '').map(norm);
  let best = 0;
  let out: string[] = [];
  for (const c of candidates) {
    const have = c.split(/[\\/]+/).filter((s) => s !== '').map(norm);
    let k = 0;
    while (k < want.length && k < have.length && want[want.length - 1 - k] === have[have.length - 1 - k]) k++;
    if (k === 0) continue;
    if (k > best) {
      best = k;
      out = [c];
    } else if (k === best) out.push(c);
  }
  return out;
}
