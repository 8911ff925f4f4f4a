/**
 * The check of every message the timeline view (and the sweep panel's view, at the end) sends to the extension host: a TypeBox
 * schema of {@link FromWebview}, compiled once. The view runs in a sandbox but shows names
 * from models and traces nobody here controls, so nothing it sends is trusted: a message of
 * an unknown type, of the wrong shape, with fields the protocol does not have, or larger than
 * the protocol needs is refused with a reason the host logs. No message names a file to open
 * or a command to run; the host decides both from its own state.
 *
 * Plain TypeScript (no `vscode`), so that it is unit-tested under Node.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { readSpanQuery } from '../profiler/span-query';
import { MAX_TILE_PIXELS, TILE_ROWS_PER_LANE } from '../profiler/span-tiles';
import type { FromWebview } from '../../webview/src/protocol';
import type { FromSweepView } from '../../webview/src/sweep-protocol';

/**
 * Longest text a view message carries. Names of nodes and devices, finding ids and error
 * messages are short; the cap keeps a hostile view from making the host hold (and log)
 * megabytes.
 */
export const MAX_MESSAGE_TEXT = 10_000;

/** Longest excerpt of a refused message's type that goes into the log. */
const MAX_LOGGED = 60;

const Text = Type.String({ maxLength: MAX_MESSAGE_TEXT });
const Count = Type.Integer({ minimum: 0 });
const Run = Type.Union([Type.Literal(0), Type.Literal(1)]);
const Finite = Type.Number({ minimum: -Number.MAX_VALUE, maximum: Number.MAX_VALUE });
const strict = { additionalProperties: false } as const;

const SpanQuerySchema = Type.Union([
  Type.Object(
    {
      type: Type.Literal('opStats'),
      groupBy: Type.Union([Type.Literal('opType'), Type.Literal('node')]),
      range: Type.Optional(Type.Object({ startUs: Finite, endUs: Finite }, strict)),
      text: Type.Optional(Text),
      limit: Type.Optional(Type.Integer({ minimum: 1 })),
    },
    strict,
  ),
  Type.Object(
    {
      type: Type.Literal('search'),
      text: Text,
      range: Type.Optional(Type.Object({ startUs: Finite, endUs: Finite }, strict)),
      limit: Type.Optional(Type.Integer({ minimum: 1 })),
    },
    strict,
  ),
]);

/** Most lanes a tile request may name (far more than any trace has devices or ranks). */
export const MAX_TILE_LANES = 1_000_000;

const TileRequestSchema = Type.Object(
  {
    laneStart: Type.Integer({ minimum: 0, maximum: MAX_TILE_LANES }),
    laneEnd: Type.Integer({ minimum: 0, maximum: MAX_TILE_LANES }),
    startUs: Finite,
    endUs: Finite,
    pixels: Type.Integer({ minimum: 1, maximum: MAX_TILE_PIXELS }),
  },
  strict,
);

const SpanAtRequestSchema = Type.Object(
  {
    lane: Type.Integer({ minimum: 0, maximum: MAX_TILE_LANES }),
    row: Type.Integer({ minimum: 0, maximum: TILE_ROWS_PER_LANE - 1 }),
    timeUs: Finite,
    toleranceUs: Type.Number({ minimum: 0, maximum: Number.MAX_VALUE }),
  },
  strict,
);

/** One schema per message type, keyed by `type`, so that a refusal names the right one. */
const MESSAGE_SCHEMAS = {
  ready: Type.Object({ type: Type.Literal('ready'), protocol: Count }, strict),
  loaded: Type.Object(
    {
      type: Type.Literal('loaded'),
      runs: Type.Array(Type.Object({ spans: Count, lanes: Count, source: Text }, strict), { maxItems: 2 }),
      firstFrameMs: Finite,
    },
    strict,
  ),
  error: Type.Object({ type: Type.Literal('error'), message: Text }, strict),
  openSource: Type.Object(
    { type: Type.Literal('openSource'), run: Run, span: Count, name: Text, opType: Type.Union([Text, Type.Null()]), lane: Count, device: Text },
    strict,
  ),
  selectFinding: Type.Object({ type: Type.Literal('selectFinding'), run: Run, index: Count, id: Text }, strict),
  selectRange: Type.Object({ type: Type.Literal('selectRange'), startUs: Type.Union([Finite, Type.Null()]), endUs: Type.Union([Finite, Type.Null()]) }, strict),
  query: Type.Object({ type: Type.Literal('query'), id: Count, run: Run, query: SpanQuerySchema }, strict),
  tile: Type.Object({ type: Type.Literal('tile'), id: Count, run: Run, request: TileRequestSchema }, strict),
  spanAt: Type.Object({ type: Type.Literal('spanAt'), id: Count, run: Run, request: SpanAtRequestSchema }, strict),
} satisfies Record<FromWebview['type'], TSchema>;

type MessageType = keyof typeof MESSAGE_SCHEMAS;

/**
 * The messages the schema accepts. {@link checkFromWebview} returns them as FromWebview, so a
 * protocol change the schema does not follow fails to compile there (or in the `satisfies`
 * above, for a new message type).
 */
type SchemaMessage = { [K in MessageType]: Static<(typeof MESSAGE_SCHEMAS)[K]> }[MessageType];

const CHECKS = Object.fromEntries(Object.entries(MESSAGE_SCHEMAS).map(([k, s]) => [k, TypeCompiler.Compile(s)])) as {
  [K in MessageType]: TypeCheck<(typeof MESSAGE_SCHEMAS)[K]>;
};

/** The outcome of {@link checkFromWebview}: the typed message, or why it was refused. */
export type FromWebviewCheck = { ok: true; message: FromWebview } | { ok: false; error: string };

/** A short, printable excerpt of a value for a log line. */
function excerpt(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v.slice(0, MAX_LOGGED)) : typeof v === 'object' ? (v === null ? 'null' : Array.isArray(v) ? 'an array' : 'an object') : String(v);
  return s.length > MAX_LOGGED ? `${s.slice(0, MAX_LOGGED)}…` : s;
}

/**
 * The schema check every view's messages go through: a plain object whose `type` is one of
 * `checks`' own keys, of that type's shape. The reason of a refusal is one short line.
 */
function checkShape<T extends string>(checks: Record<T, TypeCheck<TSchema>>, data: unknown): { ok: true; type: T } | { ok: false; error: string } {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, error: `not a message object but ${excerpt(data)}` };
  const type = (data as Record<string, unknown>)['type'];
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(checks, type)) return { ok: false, error: `unknown message type ${excerpt(type)}` };
  const check = checks[type as T];
  if (!check.Check(data)) {
    const first = check.Errors(data).First();
    const where = first ? `${first.path || '/'}: ${first.message}` : 'wrong shape';
    return { ok: false, error: `${type}: ${where.length > 200 ? `${where.slice(0, 200)}…` : where}` };
  }
  return { ok: true, type: type as T };
}

/**
 * Checks a message from the view against the protocol. The reason of a refusal is one
 * short line (it quotes at most a few dozen characters of the message).
 */
export function checkFromWebview(data: unknown): FromWebviewCheck {
  const shape = checkShape<MessageType>(CHECKS, data);
  if (!shape.ok) return shape;
  const type = shape.type;
  // What the schema does not say: a query's range must not run backwards, and a selected
  // range is two numbers or two nulls (cleared).
  if (type === 'query') {
    const q = readSpanQuery((data as { query: unknown }).query);
    if (!q.ok) return { ok: false, error: q.error };
  }
  if (type === 'tile') {
    const r = (data as { request: { laneStart: number; laneEnd: number; startUs: number; endUs: number } }).request;
    if (r.laneEnd < r.laneStart) return { ok: false, error: 'tile: "laneEnd" must not be below "laneStart"' };
    if (!(r.endUs > r.startUs)) return { ok: false, error: 'tile: "startUs" must be below "endUs"' };
  }
  if (type === 'selectRange') {
    const { startUs, endUs } = data as { startUs: number | null; endUs: number | null };
    if ((startUs === null) !== (endUs === null)) return { ok: false, error: 'selectRange: "startUs" and "endUs" must both be numbers or both null' };
  }
  const message: SchemaMessage = data as SchemaMessage;
  return { ok: true, message };
}

/**
 * The sweep panel's messages (webview/src/sweep-protocol.ts `FromSweepView`). A selection
 * names a row by its index; the host looks the plan and its trace files up in its own copy
 * of the sweep, never in what the view sends.
 */
const SWEEP_MESSAGE_SCHEMAS = {
  ready: MESSAGE_SCHEMAS.ready,
  error: MESSAGE_SCHEMAS.error,
  selectPlan: Type.Object({ type: Type.Literal('selectPlan'), index: Count, label: Text }, strict),
} satisfies Record<FromSweepView['type'], TSchema>;

type SweepMessageType = keyof typeof SWEEP_MESSAGE_SCHEMAS;
type SweepSchemaMessage = { [K in SweepMessageType]: Static<(typeof SWEEP_MESSAGE_SCHEMAS)[K]> }[SweepMessageType];

const SWEEP_CHECKS = Object.fromEntries(Object.entries(SWEEP_MESSAGE_SCHEMAS).map(([k, s]) => [k, TypeCompiler.Compile(s)])) as {
  [K in SweepMessageType]: TypeCheck<(typeof SWEEP_MESSAGE_SCHEMAS)[K]>;
};

/** The outcome of {@link checkFromSweepView}. */
export type FromSweepViewCheck = { ok: true; message: FromSweepView } | { ok: false; error: string };

/** Checks a message from the sweep panel's view, as {@link checkFromWebview} does the timeline's. */
export function checkFromSweepView(data: unknown): FromSweepViewCheck {
  const shape = checkShape<SweepMessageType>(SWEEP_CHECKS, data);
  if (!shape.ok) return shape;
  const message: SweepSchemaMessage = data as SweepSchemaMessage;
  return { ok: true, message };
}
