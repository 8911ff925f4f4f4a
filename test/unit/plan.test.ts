/**
 * The Plan union is the one definition of the parallel modes: the CLI, the run-configuration
 * schema, package.json's setting and the extension's pickers all list what it lists.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MODE_DESCRIPTIONS, PARALLEL_MODES, PIPELINE_SCHEDULES, makePlan, planFields, withPlanFields, PlanFieldError } from '../../src/profiler/plan';
import { MODE_CHOICES } from '../../src/extension/run-config';
import { buildProgram } from '../../src/cli/main';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  description: string;
  contributes: { configuration: { properties: Record<string, { enum?: string[]; enumDescriptions?: string[] }> } };
};
const configSchema = JSON.parse(readFileSync('schemas/parallax-config.schema.json', 'utf8')) as {
  definitions: { plan: { properties: Record<string, { enum?: string[]; enumDescriptions?: string[] }> } };
};

describe('parallel modes are defined once', () => {
  it('package.json offers exactly the modes the Plan union has, with their descriptions', () => {
    const setting = pkg.contributes.configuration.properties['parallax.profile.mode']!;
    assert.deepEqual(setting.enum, [...PARALLEL_MODES]);
    assert.deepEqual(setting.enumDescriptions, PARALLEL_MODES.map((m) => MODE_DESCRIPTIONS[m]));
  });

  it('the parallax.json schema offers exactly the modes and schedules the Plan union has', () => {
    const plan = configSchema.definitions.plan.properties;
    assert.deepEqual(plan['mode']!.enum, [...PARALLEL_MODES]);
    assert.deepEqual(plan['mode']!.enumDescriptions, PARALLEL_MODES.map((m) => MODE_DESCRIPTIONS[m]));
    assert.deepEqual(plan['schedule']!.enum, [...PIPELINE_SCHEDULES]);
  });

  it('the extension picker and the CLI --mode choices list the same modes', () => {
    assert.deepEqual(MODE_CHOICES.map((c) => c.value), [...PARALLEL_MODES]);
    const cli = buildProgram();
    for (const name of ['profile', 'plan']) {
      const cmd = cli.commands.find((c) => c.name() === name)!;
      const opt = cmd.options.find((o) => o.long === '--mode')!;
      assert.deepEqual(opt.argChoices, [...PARALLEL_MODES], `${name} --mode`);
    }
  });

  it('nothing advertises a mode that does not exist', () => {
    // The package's description names only modes the Plan union runs.
    for (const m of ['tensor', 'hybrid']) if (new RegExp(`\\b${m}\\b`, 'i').test(pkg.description)) assert.ok((PARALLEL_MODES as readonly string[]).includes(m), m);
  });
});

describe('makePlan', () => {
  it('builds each mode with its own fields and refuses fields of another mode by flag name', () => {
    const base = { devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0 };
    assert.deepEqual(makePlan({ mode: 'data', ...base, shards: [6, 2] }), { mode: 'data', ...base, shards: [6, 2] });
    assert.deepEqual(makePlan({ mode: 'pipeline', ...base }), { mode: 'pipeline', ...base, schedule: 'gpipe', microBatches: 4 });
    assert.throws(() => makePlan({ mode: 'data', ...base, microBatches: 2 }), (e: unknown) => e instanceof PlanFieldError && /--micro-batches applies to --mode pipeline only/.test(e.message));
    assert.throws(() => makePlan({ mode: 'pipeline', ...base, shards: [4, 4] }), /--shards applies to --mode data only/);
  });

  it('round-trips through planFields, and a mode change drops the old mode\'s fields', () => {
    const p = makePlan({ mode: 'pipeline', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0, microBatches: 2, cuts: ['a'] });
    assert.deepEqual(makePlan(planFields(p)), p);
    const d = withPlanFields(p, { mode: 'data' });
    assert.deepEqual(d, { mode: 'data', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0 });
    assert.equal(withPlanFields(p, { microBatches: 8 }).mode === 'pipeline' && (withPlanFields(p, { microBatches: 8 }) as { microBatches: number }).microBatches, 8);
  });
});
