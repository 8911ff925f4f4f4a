import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import { TRACE_SCHEMA_PATH, traceJsonSchema, traceSchemaText } from '../../src/profiler/trace-schema';
import { traceToJson } from '../../src/profiler/trace-format';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { dataPlan, meta, traceOf } from '../helpers/trace-builders';

const REPO = join(import.meta.dirname, '..', '..');

test('the committed trace schema is the one the format module generates (run `npm run schema` after changing it)', () => {
  assert.equal(readFileSync(join(REPO, TRACE_SCHEMA_PATH), 'utf8'), traceSchemaText());
});

test('the trace schema accepts written traces and rejects modes and fields the format does not have', () => {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(traceJsonSchema());
  const pipeline = JSON.parse(JSON.stringify(traceToJson(syntheticPipelineTrace({ stageUs: [10, 20], microBatches: 2, steps: 1, commUs: 1, opsPerCompute: 2 }))));
  assert.ok(validate(pipeline), JSON.stringify(validate.errors));
  const data = JSON.parse(JSON.stringify(traceToJson(traceOf([{ lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 5, step: 0 }], [[0, 5]], meta({ plan: dataPlan() }))))) as { meta: Record<string, unknown> };
  assert.ok(validate(data), JSON.stringify(validate.errors));
  assert.ok(!validate({ ...data, meta: { ...data.meta, mode: 'single' } }));
  assert.ok(!validate({ ...data, meta: { ...data.meta, plan: { batch: 8 } } }), 'a flat version-1 plan is not a version-2 plan');
  const props = (traceJsonSchema()['properties'] as { meta: { properties: Record<string, unknown> } }).meta.properties;
  assert.equal(props['link'], undefined);
});
