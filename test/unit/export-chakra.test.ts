import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { CHAKRA_JSON_PATH, chakraSchemaText } from '../../scripts/chakra-schema';
import { registerImportExport } from '../../src/cli/import-export';
import { chakraStepIndices, encodeChakraRank, toChakra } from '../../src/profiler/export-chakra';
import { importTrace } from '../../src/profiler/import/detect';
import { deriveIdle } from '../../src/profiler/idle';
import { COMM_OPS, SpanFlag, SpanKind, isCollectiveCode } from '../../src/profiler/trace-format';
import { decodeEtFile, numAttr, parseNodeText, protocDecode, splitDelimited } from '../helpers/chakra';
import { kinetoFixture } from '../helpers/kineto';
import { tempDir } from '../helpers/temp';
import { needs, protocMissing } from '../helpers/prerequisites';
import { traceOf } from '../helpers/trace-builders';

const REPO = join(import.meta.dirname, '..', '..');

test('the committed Chakra reflection JSON is the one et_def.proto generates (run `npm run schema` after changing it)', () => {
  assert.equal(readFileSync(join(REPO, CHAKRA_JSON_PATH), 'utf8'), chakraSchemaText());
});

test('the median step is a real step of median length; --step must name a step the trace has', () => {
  const windows = [[0, 10], [10, 40], [40, 60], [60, 75]] as [number, number][];
  const t = traceOf([], windows);
  // Lengths 10, 30, 20, 15: the lower median is 15 (step 3).
  assert.deepEqual(chakraStepIndices(t, { kind: 'median' }), [3]);
  assert.deepEqual(chakraStepIndices(t, { kind: 'all' }), [0, 1, 2, 3]);
  assert.deepEqual(chakraStepIndices(t, { kind: 'index', step: 1 }), [1]);
  assert.throws(() => chakraStepIndices(t, { kind: 'index', step: 7 }), /--step 7: the trace has no such step; its steps are 0..3/);
});

test('where a rank runs streams side by side, each node depends on the node that finished last before it started', needs(protocMissing()), () => {
  // Lane 0: compute 0–10, an all-reduce 5–20 overlapping it, compute 12–18, compute 20–30.
  const t = traceOf(
    [
      { lane: 0, kind: 'compute', name: 'a', start: 0, dur: 10, step: 0 },
      { lane: 0, kind: 'comm', comm: 'allreduce', name: 'ar', start: 5, dur: 15, step: 0, bytes: 4096 },
      { lane: 0, kind: 'compute', name: 'b', start: 12, dur: 6, step: 0 },
      { lane: 0, kind: 'compute', name: 'c', start: 20, dur: 10, step: 0 },
      { lane: 0, kind: 'compute', name: 'op', start: 1, dur: 2, step: 0, parent: 0, flags: SpanFlag.op },
      { lane: 1, kind: 'comm', comm: 'send', name: 's', start: 0, dur: 2, step: 0, peer: 0 },
      { lane: 1, kind: 'comm', name: 'kernel without a collective name', start: 3, dur: 2, step: 0 },
      { lane: 1, kind: 'comm', comm: 'recv', name: 'r', start: 6, dur: 2, step: 0 },
    ],
    [[0, 30]],
  );
  const exp = toChakra(t);
  const [r0, r1] = exp.ranks;
  assert.deepEqual(r0.nodes.map((n) => n.name), ['a', 'ar', 'b', 'c'], 'operator spans are not nodes');
  assert.deepEqual(r0.nodes.map((n) => n.data_deps), [[], [], [0], [1]], 'ar overlaps a; b waits for a; c for ar, the last to finish');
  assert.deepEqual(r1.nodes.map((n) => n.name), ['s']);
  assert.deepEqual(exp.leftOut, { unknownComm: 1, noPeer: 1 });

  // The independent decoder reads the same thing back.
  const messages = splitDelimited(encodeChakraRank(r0));
  assert.equal(messages.length, 1 + r0.nodes.length);
  assert.match(protocDecode('GlobalMetadata', messages[0]), /name: "world_size"\s+int64_val: 2/);
  const decoded = messages.slice(1).map((m) => parseNodeText(protocDecode('Node', m)));
  assert.deepEqual(decoded.map((n) => n.type), ['COMP_NODE', 'COMM_COLL_NODE', 'COMP_NODE', 'COMP_NODE']);
  assert.deepEqual(decoded.map((n) => n.dataDeps), [[], [], [0], [1]]);
  assert.equal(numAttr(decoded[1], 'comm_size'), 4096);
  assert.deepEqual(decoded.map((n) => n.startMicros), [0, 5, 12, 20]);
});

test('export --format chakra of Kineto traces writes their collectives with the bytes the trace carries', needs(protocMissing()), async () => {
  const dir = tempDir('chakra-kineto');
  const files = [kinetoFixture('job128-rank0.json.gz'), kinetoFixture('job128-rank1.json.gz')];
  const program = new Command().exitOverride();
  const out: string[] = [];
  registerImportExport(program, { write: (s) => out.push(s) });
  await program.parseAsync(['node', 'parallax', 'export', ...files, '--format', 'chakra', '--out', dir]);
  assert.match(out.join(''), /2 file\(s\) job128-rank0\.<rank>\.et/);

  const t = deriveIdle(await importTrace(files));
  const step = toChakra(t).steps[0];
  for (let lane = 0; lane < 2; lane++) {
    const { nodes } = decodeEtFile(join(dir, `job128-rank0.${lane}.et`));
    const s = t.spans;
    const colls: number[] = [];
    let kept = 0;
    for (let i = 0; i < s.count; i++) {
      if (s.lane[i] !== lane || s.step[i] !== step || s.parent[i] >= 0 || (s.flags[i] & (SpanFlag.op | SpanFlag.profiled)) !== 0) continue;
      if (s.kind[i] === SpanKind.compute) kept++;
      else if (s.kind[i] === SpanKind.comm && COMM_OPS[s.comm[i]] !== 'none') {
        kept++;
        if (isCollectiveCode(s.comm[i])) colls.push(Math.round(s.bytes[i]));
      }
    }
    assert.equal(nodes.length, kept, `rank ${lane}: one node per kept span`);
    const sizes = nodes.filter((n) => n.type === 'COMM_COLL_NODE').map((n) => numAttr(n, 'comm_size'));
    assert.ok(sizes.length > 0, 'the job all-reduces gradients');
    assert.deepEqual(sizes.sort((a, b) => a - b), colls.sort((a, b) => a - b));
    assert.ok(sizes.some((b) => b > 0), 'collectives carry their bytes');
  }
});

test('export refuses --step with --format chrome, which holds every step', async () => {
  const program = new Command().exitOverride();
  registerImportExport(program, { write: () => undefined });
  await assert.rejects(
    program.parseAsync(['node', 'parallax', 'export', kinetoFixture('ddp-2rank-rank0.json.gz'), '--format', 'chrome', '--step', '1']),
    /--step, --steps and --model go with --format chakra/,
  );
});
