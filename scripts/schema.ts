/**
 * `npm run schema`: writes the trace file's JSON schema (schemas/parallax-trace.schema.json)
 * from the format module. Run it after changing src/profiler/trace-format.ts or plan.ts;
 * test/unit/trace-schema.test.ts fails while the committed file is out of date.
 * It also writes the Chakra schema's reflection JSON (scripts/chakra-schema.ts).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TRACE_SCHEMA_PATH, traceSchemaText } from '../src/profiler/trace-schema';
import { CHAKRA_JSON_PATH, chakraSchemaText } from './chakra-schema';

const out = join(import.meta.dirname, '..', TRACE_SCHEMA_PATH);
writeFileSync(out, traceSchemaText());
process.stdout.write(`wrote ${TRACE_SCHEMA_PATH}\n`);
writeFileSync(join(import.meta.dirname, '..', CHAKRA_JSON_PATH), chakraSchemaText());
process.stdout.write(`wrote ${CHAKRA_JSON_PATH}\n`);
