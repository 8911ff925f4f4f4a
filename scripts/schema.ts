/**
 * `npm run schema`: writes the trace file's JSON schema (schemas/parallax-trace.schema.json)
 * from the format module. Run it after changing src/profiler/trace-format.ts or plan.ts;
 * test/unit/trace-schema.test.ts fails while the committed file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TRACE_SCHEMA_PATH, traceSchemaText } from '../src/profiler/trace-schema';

const out = join(import.meta.dirname, '..', TRACE_SCHEMA_PATH);
writeFileSync(out, traceSchemaText());
process.stdout.write(`wrote ${TRACE_SCHEMA_PATH}\n`);
