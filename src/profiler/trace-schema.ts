/**
 * The JSON schema of a trace file, as a document: {@link TraceSchema} (TypeBox builds JSON
 * Schema) with the draft, id and title a schema file carries. `npm run schema` writes it to
 * `schemas/parallax-trace.schema.json`; a unit test checks that the committed file is what
 * this gives, so the file never drifts from the format module.
 *
 * The schema checks the shape of a document. A few rules are beyond it and are checked on
 * read by `traceFromJson`: every span column has `spans.count` entries, indices are in
 * range, and `meta.mode` equals `meta.plan.mode`. Version-1 documents do not match it;
 * `traceFromJson` migrates them first.
 */
import { TraceSchema } from './trace-format';

/** Where the schema file lives in the repository. */
export const TRACE_SCHEMA_PATH = 'schemas/parallax-trace.schema.json';

/** The schema document (plain JSON: TypeBox's symbol-keyed annotations are left out). */
export function traceJsonSchema(): Record<string, unknown> {
  const body = JSON.parse(JSON.stringify(TraceSchema)) as Record<string, unknown>;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://parallax-tools.dev/schemas/parallax-trace.schema.json',
    title: 'Parallax trace (*.parallax.json)',
    description:
      'A profile of one parallel run: meta (what ran, where, the plan), a string table, lanes, step windows and columnar spans. Generated from src/profiler/trace-format.ts by `npm run schema`; do not edit.',
    ...body,
  };
}

/** The schema file's text: two-space JSON with a final newline. */
export function traceSchemaText(): string {
  return `${JSON.stringify(traceJsonSchema(), null, 2)}\n`;
}
