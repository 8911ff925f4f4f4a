/**
 * The Chakra execution-trace schema as protobufjs reflection JSON. The exporter
 * (src/profiler/export-chakra.ts) loads `schemas/chakra/et_def.json` with protobufjs' light
 * build, so the bundle needs no .proto parser and no file at run time; this generates that
 * JSON from the official `schemas/chakra/et_def.proto`. `npm run schema` writes it, and
 * test/unit/export-chakra.test.ts fails while the committed file is out of date.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'protobufjs';

/** Paths relative to the repository root. */
export const CHAKRA_PROTO_PATH = 'schemas/chakra/et_def.proto';
export const CHAKRA_JSON_PATH = 'schemas/chakra/et_def.json';

/** The reflection JSON of `et_def.proto`, field names as the .proto spells them. */
export function chakraSchemaText(repoRoot = join(import.meta.dirname, '..')): string {
  const root = parse(readFileSync(join(repoRoot, CHAKRA_PROTO_PATH), 'utf8'), { keepCase: true }).root;
  return `${JSON.stringify(root.toJSON(), null, 2)}\n`;
}
