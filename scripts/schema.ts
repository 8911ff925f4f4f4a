/**
 * `npm run schema`: writes the JSON schemas generated from the format modules: the trace
 * file's (schemas/parallax-trace.schema.json, from src/profiler/trace-format.ts and plan.ts),
 * the sweep result's (schemas/parallax-sweep.schema.json, from src/profiler/sweep/schema.ts)
 * and the Chakra schema's reflection JSON (scripts/chakra-schema.ts). Run it after changing
 * them; unit tests fail while a committed file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TRACE_SCHEMA_PATH, traceSchemaText } from '../src/profiler/trace-schema';
import { SWEEP_SCHEMA_PATH, sweepSchemaText } from '../src/profiler/sweep/schema';
import { CHAKRA_JSON_PATH, chakraSchemaText } from './chakra-schema';

for (const [path, text] of [
  [TRACE_SCHEMA_PATH, traceSchemaText()],
  [SWEEP_SCHEMA_PATH, sweepSchemaText()],
  [CHAKRA_JSON_PATH, chakraSchemaText()],
] as const) {
  writeFileSync(join(import.meta.dirname, '..', path), text);
  process.stdout.write(`wrote ${path}\n`);
}
