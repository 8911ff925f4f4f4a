/**
 * Hostile inputs through the real CLI: crafted models and traces, impossible flags and
 * unwritable outputs. Each must end with exit 2 and exactly one `parallax:` line on stderr:
 * no stack, no "internal error", no raw control byte, nothing written.
 */
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { runCli } from '../helpers/cli';
import { tinyMatMulModelBytes } from '../helpers/tiny-model';
import { deepJson, duplicateOutputModel, renamedNodesModel, externalDataModel, gzipZeros, kinetoOneEvent, nestedIfModel, unknownOpModel } from '../helpers/hostile';
import { kinetoTrace } from '../../src/profiler/import/kineto';
import { serializeTrace } from '../../src/profiler/trace-io';

const dir = mkdtempSync(join(tmpdir(), 'parallax-hostile-cli-'));
const env = { PARALLAX_CACHE: join(dir, 'cache') };
after(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string): string => join(dir, name);

before(() => {
  const w = (name: string, content: string | Uint8Array): void => writeFileSync(at(name), content);
  w('tiny.onnx', tinyMatMulModelBytes().bytes);
  w('a-file', 'not a folder');
  w('world.json', JSON.stringify(kinetoOneEvent({ rank: 0, worldSize: 1e15 })));
  w('rank.json', JSON.stringify(kinetoOneEvent({ rank: 2 ** 40 })));
  w('dur.json', JSON.stringify(kinetoOneEvent({ dur: 1e300 })));
  w('strings.json', JSON.stringify(kinetoOneEvent({ ts: '1000', dur: '5' })));
  w('deep.json', deepJson(5000));
  w('bomb.json.gz', gzipZeros(64 * 2 ** 20));
  const native = JSON.parse(serializeTrace(kinetoTrace([{ doc: kinetoOneEvent(), source: 'one.json' }]))) as { spans: Record<string, unknown> };
  native.spans['count'] = 2 ** 32;
  w('huge.parallax.json', JSON.stringify(native));
  w('ext-up.onnx', externalDataModel('../../etc/passwd'));
  w('ext-abs.onnx', externalDataModel('/etc/passwd'));
  mkdirSync(at('linked'));
  symlinkSync('/etc/passwd', at('linked/w.bin'));
  writeFileSync(at('linked/model.onnx'), externalDataModel('w.bin'));
  w('nested.onnx', nestedIfModel(100));
  w('nested-deeper.onnx', nestedIfModel(3000));
  w('unknown-op.onnx', unknownOpModel());
  w('esc.onnx', duplicateOutputModel(['\x1b]0;pwned\x07\x1b[2J', 'ok\rall good']));
  execFileSync('mkfifo', [at('fifo')]);
  mkdirSync(at('a-folder'));
});

const profile = (model: string, ...flags: string[]): string[] => ['profile', at(model), '--steps', '1', '--warmup', '0', '--out', at('out.parallax.json'), ...flags];

/** [what, arguments, pattern of the one line]. */
const TABLE: [string, () => string[], RegExp][] = [
  // Class 1: counts that would size loops.
  ['a Kineto world of 1e15 ranks', () => ['import', at('world.json')], /world_size 1000000000000000 is more ranks than any job/],
  ['a Kineto rank of 2^40', () => ['import', at('rank.json')], /rank 1099511627776 is beyond/],
  // Class 3: the user's input, not an internal error.
  ['a folder given to import', () => ['import', at('a-folder')], /is a folder, not a trace file/],
  ['a FIFO given to import', () => ['import', at('fifo')], /not a regular file/],
  ['a model ONNX Runtime rejects', () => profile('unknown-op.onnx'), /ONNX Runtime failed loading the model: .*NoSuchOperator/],
  ['--batch 1e12', () => profile('tiny.onnx', '--batch', '1e12'), /--batch must be a positive integer, got "1e12"/],
  ['--batch beyond the limit', () => profile('tiny.onnx', '--batch', '100000000'), /--batch 100000000 is more than the 1000000/],
  ['--out under a file', () => ['profile', at('tiny.onnx'), '--out', at('a-file/run.parallax.json')], /--out .*a part of the path is a file/],
  ['--out a folder', () => ['profile', at('tiny.onnx'), '--out', at('a-folder')], /--out .* is a folder; give a file path/],
  ['--out in /proc', () => ['profile', at('tiny.onnx'), '--out', '/proc/parallax-test/run.json'], /--out \/proc\/parallax-test\/run\.json: /],
  ['import --out a folder', () => ['import', at('dur.json'), '--out', at('a-folder')], /--out .* is a folder/],
  ['--report under a file', () => profile('tiny.onnx', '--report', at('a-file/r.html')), /--report .*a part of the path is a file/],
  // Class 4: nesting and sizes.
  ['JSON nested 5,000 deep', () => ['import', at('deep.json')], /nested more than 256 levels/],
  ['a native trace claiming 2^32 spans', () => ['report', at('huge.parallax.json')], /spans\.count 4294967296 is more than/],
  ['100 nested Ifs', () => profile('nested.onnx'), /more than 64 levels deep/],
  ['3,000 nested Ifs', () => profile('nested-deeper.onnx'), /nests subgraphs .*(more than 64 levels|thousands of levels) deep/],
  // Class 5: a decompression bomb.
  ['gzip of 64 MiB of zeros', () => ['import', at('bomb.json.gz')], /inflates more than 100×/],
  // Class 6: values outside physical range.
  ['a kernel of 1e300 µs', () => ['import', at('dur.json')], /within physical range/],
  ['timestamps as strings', () => ['import', at('strings.json')], /none of its 1 complete .* has a numeric "ts"/],
  // Class 7: control bytes in names.
  ['node names with escape sequences', () => profile('esc.onnx'), /two nodes \(\\x1b\]0;pwned\\x07\\x1b\[2J and ok\\rall good\)/],
  // Class 8: external data outside the model's folder.
  ['external data at ../../etc/passwd', () => profile('ext-up.onnx'), /climbs out of the model's folder/],
  ['external data at /etc/passwd', () => profile('ext-abs.onnx'), /absolute path/],
  ['external data through a link to /etc/passwd', () => ['profile', at('linked/model.onnx'), '--steps', '1', '--out', at('out.parallax.json')], /link out of the model's folder/],
  // Class 12: flags that did nothing or too little, silently.
  ['--devices cpu (no count)', () => profile('tiny.onnx', '--devices', 'cpu'), /"cpu" has no count, which means one device/],
  ['--cuts ,,,', () => profile('tiny.onnx', '--mode', 'pipeline', '--cuts', ',,,'), /--cuts ",,," names no node/],
];

describe('hostile inputs through the CLI: exit 2 and one line', () => {
  for (const [what, args, pattern] of TABLE) {
    test(what, async () => {
      const r = await runCli(args(), { env });
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      assert.equal(r.code, 2, `exit code; stderr:\n${r.stderr}`);
      assert.equal(lines.length, 1, `exactly one line, got:\n${r.stderr}`);
      assert.match(lines[0]!, /^parallax: /);
      assert.doesNotMatch(lines[0]!, /internal error/);
      assert.match(lines[0]!, pattern);
      assert.doesNotMatch(r.stderr.replace(/\n$/, ''), /[\x00-\x08\x0b-\x1f\x7f]/, 'no raw control byte');
      assert.equal(r.stdout, '', 'nothing on stdout');
      assert.equal(existsSync(at('out.parallax.json')), false, 'no trace written');
      assert.doesNotMatch(lines[0]!, /1294|root:x:0/, 'nothing about what /etc/passwd holds');
    });
  }

  test('names printed on stdout have their control characters escaped (plan of a model with crafted node names)', async () => {
    writeFileSync(at('names.onnx'), renamedNodesModel(['\x1b]0;pwned\x07\x1b[2Jmatmul', 'add\rall good']));
    const r = await runCli(['plan', at('names.onnx'), '--stages', '2', '--batch', '4', '--micro-batches', '2'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\\x1b\]0;pwned\\x07\\x1b\[2Jmatmul/);
    assert.match(r.stdout, /add\\rall good/);
    assert.doesNotMatch(r.stdout, /[\x00-\x08\x0b-\x1f\x7f]/, 'no raw control byte');
  });

  test('no temporary or probe file is left beside the outputs', () => {
    assert.deepEqual(readdirSync(dir).filter((f) => /\.(tmp|probe)$/.test(f)), []);
  });
});
