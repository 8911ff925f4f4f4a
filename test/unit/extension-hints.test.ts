/**
 * Hints in parallax.json: which key a finding is about, the diagnostic's words, the quick
 * fix's edit, the CodeLens line and the hover; and the trace digests they are read from.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findPlan, parseConfig } from '../../src/extension/config-model';
import { changedSinceRun, formatChange, formatDuration, hoverMarkdown, lensSummary, planEdit, planHints, type KeyHint } from '../../src/extension/hints';
import { derivedFromTail, digestOfDocument, digestOfParts, runDescription, topLevelValueText } from '../../src/extension/runs-model';
import { findings, type Finding } from '../../src/profiler/findings';
import { summarize } from '../../src/profiler/summary';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { serializeTrace } from '../../src/profiler/trace-io';

const SETTINGS = { devices: 'cpu:2', batch: 64 };

/** A finding as the rules make them, with the fields a test cares about. */
function finding(id: string, params: Record<string, unknown>, over: Partial<Finding> = {}, numbers: Record<string, number> = {}): Finding {
  return {
    id,
    severity: 'warning',
    message: `${id} message.`,
    evidence: { lanes: [0, 1], startUs: 1000, endUs: 5000, numbers },
    change: { description: `${id} change`, params },
    currentStepUs: 104_000,
    predictedStepUs: 80_100,
    ...over,
  };
}

const bubble = finding('pipeline-bubble', { microBatches: 12 }, {}, { bubbleFraction: 0.43, suggestedIdealBubbleFraction: 0.14, microBatches: 2 });

const CONFIG = `{
  "plans": {
    "pipe": {
      "model": "m.onnx",
      "mode": "pipeline",
      "devices": "cpu:2",
      "batch": 64,
      "microBatches": 2,
      "cuts": ["/layers.3/Add"]
    },
    "auto": { "model": "m.onnx", "mode": "pipeline", "devices": "cpu:2", "batch": 64 },
    "data": { "model": "m.onnx", "devices": "cpu:2", "batch": 64 }
  }
}
`;
const doc = parseConfig(CONFIG);
const pipe = findPlan(doc, 'pipe')!;
const RUN_PLAN = { devices: 'cpu:2', batch: 64, microBatches: 2, cuts: ['/layers.3/Add'], stages: 2 };

function applyFix(text: string, planName: string, h: KeyHint): string {
  const e = planEdit(text, planName, h.changes)!;
  return text.slice(0, e.offset) + e.content + text.slice(e.offset + e.length);
}

describe('findings → plan keys', () => {
  it('puts a pipeline bubble at "microBatches" with the measured and the predicted bubble and step', () => {
    const [h] = planHints([bubble], pipe, RUN_PLAN, SETTINGS);
    assert.equal(h!.key, 'microBatches');
    assert.ok(h!.keyWritten);
    assert.equal(h!.message, 'bubble 43%; 12 micro-batches predicts 14% (step 80.1 ms, −23%)');
    assert.equal(h!.fixTitle, 'Set "microBatches" to 12 — predicted step 80.1 ms (−23%)');
    assert.deepEqual(h!.changes, [{ key: 'microBatches', value: 12 }]);
  });

  it('maps each rule to its key: cuts, devices (and stages), batch', () => {
    const fs = [
      finding('pipeline-imbalance', { cuts: ['/layers.4/Add'] }, {}, { slowestStage: 1, imbalance: 1.2 }),
      finding('poor-scaling', { devices: 'cpu:1', stages: 1 }, {}, { efficiency: 0.32, devices: 2 }),
      finding('host-overhead', { batch: 256 }, { throughput: { currentPerS: 1000, predictedPerS: 1400 } }, { overheadShare: 0.23 }),
      finding('dominant-op', {}, { severity: 'info', predictedStepUs: null }),
    ];
    const hints = planHints(fs, pipe, RUN_PLAN, SETTINGS);
    assert.deepEqual(
      hints.map((h) => [h.finding.id, h.key]),
      [
        ['pipeline-imbalance', 'cuts'],
        ['poor-scaling', 'devices'],
        ['host-overhead', 'batch'],
      ],
    );
    assert.match(hints[0]!.message, /^stage 1 sets the pace \(imbalance 1\.20×\); cuts at \/layers\.4\/Add; predicted step 80\.1 ms \(−23%\)$/);
    // One device cannot take the plan's one cut: the fix drops "cuts"; "stages" is not written by the plan.
    assert.deepEqual(hints[1]!.changes, [
      { key: 'devices', value: 'cpu:1' },
      { key: 'cuts', value: undefined },
    ]);
    assert.match(hints[1]!.fixTitle!, /^Set "devices" to "cpu:1" \(removing "cuts"\)/);
    assert.equal(hints[2]!.message, 'host overhead 23% of device time; batch 256 predicts 1400 samples/s (+40%)');
  });

  it('maps a straggler to "shards" in a data plan, with a fix that writes the rebalanced rows', () => {
    const data = findPlan(doc, 'data')!;
    const hints = planHints([finding('straggler', { shards: [40, 24] }, {}, { ratio: 1.8 })], data, { devices: 'cpu:2', batch: 64, shards: [32, 32] }, SETTINGS);
    assert.equal(hints.length, 1);
    assert.equal(hints[0]!.key, 'shards');
    assert.deepEqual(hints[0]!.changes, [{ key: 'shards', value: [40, 24] }]);
    assert.match(hints[0]!.message, /shards 40\/24/);
    assert.notEqual(hints[0]!.fixTitle, null);
  });

  it('maps comm-bound to "batch" or "devices", whichever its suggestion changes', () => {
    const data = findPlan(doc, 'data')!;
    const byBatch = planHints([finding('comm-bound', { batch: 128, shards: [64, 64] })], data, { devices: 'cpu:2', batch: 64 }, SETTINGS);
    const byDevices = planHints([finding('comm-bound', { devices: 'cpu:1', shards: [64] })], data, { devices: 'cpu:2', batch: 64 }, SETTINGS);
    assert.equal(byBatch[0]!.key, 'batch');
    assert.equal(byDevices[0]!.key, 'devices');
  });

  it('maps tensor-collectives to "keepWhole" (a fix that writes the layers) and tensor-vs-data to "mode"', () => {
    const text = `{ "plans": { "tp": { "model": "m.onnx", "mode": "tensor", "devices": "cpu:2", "batch": 64 } } }`;
    const tp = findPlan(parseConfig(text), 'tp')!;
    const run = { devices: 'cpu:2', batch: 64 };
    const [keep] = planHints([finding('tensor-collectives', { keepWhole: ['/layers.5/mlp'] }, {}, { collectiveShare: 0.41 })], tp, run, SETTINGS);
    assert.equal(keep!.key, 'keepWhole');
    assert.match(keep!.message, /all-reduces 41% of the step; keep whole \/layers\.5\/mlp/);
    const fixed = parseConfig(applyFix(text, 'tp', keep!));
    assert.deepEqual(findPlan(fixed, 'tp')!.values.keepWhole, ['/layers.5/mlp']);
    assert.deepEqual(fixed.problems, []);
    const [data] = planHints([finding('tensor-vs-data', { mode: 'data' })], tp, run, SETTINGS);
    assert.equal(data!.key, 'mode');
    assert.deepEqual(data!.changes, [{ key: 'mode', value: 'data' }]);
  });

  it('drops a hint whose key the user changed since the run, or that already holds the suggestion', () => {
    const changed = findPlan(parseConfig(CONFIG.replace('"microBatches": 2', '"microBatches": 8')), 'pipe')!;
    assert.deepEqual(planHints([bubble], changed, RUN_PLAN, SETTINGS), []);
    const applied = findPlan(parseConfig(CONFIG.replace('"microBatches": 2', '"microBatches": 12')), 'pipe')!;
    assert.deepEqual(planHints([bubble], applied, RUN_PLAN, SETTINGS), []);
    // Without the run's plan, the finding's own numbers tell what was measured.
    assert.deepEqual(planHints([bubble], changed, null, SETTINGS), []);
    assert.equal(planHints([bubble], pipe, null, SETTINGS).length, 1);
  });

  it('drops every hint once the plan differs from the run in a key that shapes it', () => {
    const rebatched = findPlan(parseConfig(CONFIG.replace('"batch": 64', '"batch": 128')), 'pipe')!;
    const fs = [bubble, finding('poor-scaling', { devices: 'cpu:1' }, {}, {})];
    assert.deepEqual(changedSinceRun(rebatched, RUN_PLAN, SETTINGS), ['batch']);
    assert.deepEqual(planHints(fs, rebatched, RUN_PLAN, SETTINGS), []);
    assert.deepEqual(changedSinceRun(pipe, RUN_PLAN, SETTINGS), []);
    // Keys the runner chose (cuts of an auto-partitioned plan) do not count until written.
    assert.deepEqual(changedSinceRun(findPlan(doc, 'auto')!, { ...RUN_PLAN, microBatches: 4 }, SETTINGS), []);
  });

  it('puts a hint about a key the plan leaves to its default on the plan (keyWritten false)', () => {
    const auto = findPlan(doc, 'auto')!;
    const [h] = planHints([finding('pipeline-bubble', { microBatches: 8 }, {}, { microBatches: 4, bubbleFraction: 0.3 })], auto, { microBatches: 4 }, SETTINGS);
    assert.equal(h!.key, 'microBatches');
    assert.equal(h!.keyWritten, false);
  });
});

describe('the quick fix’s edit', () => {
  it('replaces the value in place and nothing else', () => {
    const [h] = planHints([bubble], pipe, RUN_PLAN, SETTINGS);
    const e = planEdit(CONFIG, 'pipe', h!.changes)!;
    assert.equal(CONFIG.slice(e.offset, e.offset + e.length), '2');
    assert.equal(e.content, '12');
    assert.equal(e.offset, CONFIG.indexOf('"microBatches": 2') + '"microBatches": '.length);
  });

  it('inserts a key the plan lacks, in the file’s own format', () => {
    const auto = findPlan(doc, 'auto')!;
    const [h] = planHints([finding('pipeline-imbalance', { cuts: ['/layers.4/Add'] }, {}, {})], auto, {}, SETTINGS);
    const out = applyFix(CONFIG, 'auto', h!);
    assert.deepEqual(findPlan(parseConfig(out), 'auto')!.values.cuts, ['/layers.4/Add']);
    assert.deepEqual(parseConfig(out).problems, []);
    // The other plans are untouched.
    assert.deepEqual(findPlan(parseConfig(out), 'pipe')!.values, pipe.values);
  });

  it('makes several key changes (and removals) one edit, keeping comments', () => {
    const text = CONFIG.replace('"plans": {', '"plans": { // ours');
    const plan = findPlan(parseConfig(text), 'pipe')!;
    const [h] = planHints([finding('poor-scaling', { devices: 'cpu:1' }, {}, {})], plan, RUN_PLAN, SETTINGS);
    const out = applyFix(text, 'pipe', h!);
    const after = findPlan(parseConfig(out), 'pipe')!;
    assert.equal(after.values.devices, 'cpu:1');
    assert.equal(after.values.cuts, undefined);
    assert.ok(out.includes('// ours'));
  });

  it('turns a pipeline into the one-device data plan the baseline ran, removing the pipeline keys', () => {
    const [h] = planHints([finding('poor-scaling', { devices: 'cpu:1', mode: 'data', shards: [64] }, {}, {})], pipe, RUN_PLAN, SETTINGS);
    const out = applyFix(CONFIG, 'pipe', h!);
    const after = findPlan(parseConfig(out), 'pipe')!;
    assert.equal(after.values.devices, 'cpu:1');
    assert.equal(after.values.mode, 'data');
    assert.equal(after.values.microBatches, undefined);
    assert.equal(after.values.cuts, undefined);
    assert.deepEqual(parseConfig(out).problems, []);
    assert.match(h!.fixTitle!, /removing "cuts", "microBatches"|removing "microBatches", "cuts"/);
  });

  it('offers nothing for information: a checked change that cannot be applied, or one predicted slower', () => {
    const slower = finding('pipeline-bubble', { microBatches: 12 }, { severity: 'info', predictedStepUs: 113_000 }, {});
    const rejected = finding('pipeline-imbalance', { cuts: ['/layers.4/Add'] }, { checked: { ok: false, note: 'no' } }, {});
    assert.deepEqual(planHints([slower, rejected], pipe, RUN_PLAN, SETTINGS), []);
  });

  it('is null when nothing changes', () => {
    assert.equal(planEdit(CONFIG, 'pipe', [{ key: 'batch', value: 64 }]), null);
  });
});

describe('CodeLens and hover', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 10, 10, 10], microBatches: 4, steps: 2, batch: 48 });
  const summary = summarize(t);

  it('sums up the last run: step, efficiency (with a baseline), bubble', () => {
    assert.equal(lensSummary(summary), `last step ${formatDuration(summary.stepTimeUs.median)} · bubble 43%`);
    const withBase = { ...summary, stepTimeUs: { median: 12_300, p10: 0, p90: 0 }, speedupVsOneDevice: 3.48, bubbleFraction: 0.14 };
    assert.equal(lensSummary(withBase), 'last step 12.3 ms · efficiency 87% · bubble 14%');
  });

  it('formats durations and changes for people', () => {
    assert.equal(formatDuration(950), '950 µs');
    assert.equal(formatDuration(80_100), '80.1 ms');
    assert.equal(formatDuration(2_500_000), '2.50 s');
    assert.equal(formatChange(100, 77), '−23%');
    assert.equal(formatChange(100, 140), '+40%');
  });

  it('shows the evidence of a real finding with a link that opens the timeline at its range', () => {
    const f = findings(t, summary).find((x) => x.id === 'pipeline-bubble')!;
    const plan = findPlan(parseConfig('{ "plans": { "p": { "model": "m.onnx", "mode": "pipeline", "devices": "cpu:4", "batch": 48, "microBatches": 4 } } }'), 'p')!;
    const hints = planHints([f], plan, t.meta.plan, { devices: 'cpu:4', batch: 48 });
    assert.equal(hints.length, 1);
    assert.match(hints[0]!.message, /^bubble 43%; 24 micro-batches predicts 11% \(step 45 µs, −36%\)$/);
    const md = hoverMarkdown(hints, '/ws/runs/t.parallax.json', ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3'], 'parallax.revealInTimeline');
    assert.match(md, /\*\*Parallax · pipeline\\-bubble\*\* \(critical\)/);
    assert.match(md, /\| bubbleFraction \| 43% \|/);
    assert.match(md, /cpu:0, cpu:1, cpu:2, cpu:3/);
    const link = /\(command:parallax\.revealInTimeline\?([^)]+)\)/.exec(md)!;
    const [args] = JSON.parse(decodeURIComponent(link[1]!)) as [{ tracePath: string; startUs: number; endUs: number; lanes: number[] }];
    assert.deepEqual(args, { tracePath: '/ws/runs/t.parallax.json', startUs: f.evidence.startUs, endUs: f.evidence.endUs, lanes: f.evidence.lanes });
  });
});

describe('trace digests (meta, summary, findings without the spans)', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 30], microBatches: 4, steps: 3, batch: 8, stageNodes: [['a'], ['b', 'c', 'd']], nodeCostUs: { a: 10, b: 10, c: 10, d: 10 } });
  t.summary = summarize(t);
  t.findings = findings(t, t.summary as ReturnType<typeof summarize>);
  const text = serializeTrace(t);

  it('reads the same from the head and tail of a compact trace as from the whole document', () => {
    const whole = digestOfDocument(JSON.parse(text));
    assert.ok(whole.meta && whole.summary && whole.findings.length > 0);
    const parts = digestOfParts(text.slice(0, Math.ceil(text.length * 0.6)), text.slice(Math.floor(text.length * 0.4)));
    assert.deepEqual(parts, whole);
    assert.equal(whole.meta!.mode, 'pipeline');
    const plan = whole.meta!.plan;
    assert.deepEqual(plan?.mode === 'pipeline' ? plan.cuts : null, ['a']);
    assert.match(runDescription(whole, formatDuration), /^pipeline · cpu:2 · step \d+ µs · \d+ findings?$/);
  });

  it('finds a leading top-level value in a prefix, and only a complete one', () => {
    assert.equal(topLevelValueText('{"a":1,"b":{"c":"}"},"d":[', 'b'), '{"c":"}"}');
    assert.equal(topLevelValueText('{"a":1,"b":{"c":', 'b'), null);
    assert.equal(topLevelValueText('{"a":1', 'z'), null);
  });

  it('skips a summary marker inside the findings’ strings', () => {
    const tail = 'xx],"summary":{"stepTimeUs":{"median":5},"devices":[]},"findings":[{"id":"x","message":",\\"summary\\": no"}]}';
    const d = derivedFromTail(tail)!;
    assert.equal(d.summary!.stepTimeUs.median, 5);
  });
});
