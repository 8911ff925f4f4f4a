/**
 * Hostile inputs, class by class: each gets the example that broke Parallax and variants,
 * and must end in one typed line (a UserError) or a sound result, never a crash of Node,
 * an untyped exception, a stat of a file outside the model's folder or raw control bytes.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { isUserError } from '../../src/common/errors';
import { escapeTerminal } from '../../src/common/terminal';
import { escapingChannel } from '../../src/extension/escaping-channel';
import { jsonDepth } from '../../src/common/json-depth';
import { INFLATE_FREE_BYTES, MAX_INFLATED_BYTES, MAX_GRAPH_DEPTH, MAX_INFLATE_RATIO, MAX_JSON_DEPTH, MAX_WORLD_SIZE } from '../../src/common/limits';
import { importTrace } from '../../src/profiler/import/detect';
import { formatGaps, formatRanges, kinetoTrace } from '../../src/profiler/import/kineto';
import { gunzipChunks, inflateLimit, openTextStream, parseJsonDocument, readTextFile } from '../../src/profiler/import/read-json';
import { parseTrace, serializeTrace } from '../../src/profiler/trace-io';
import { loadModel, parseModel } from '../../src/runtime/onnx/model';
import { deepJson, externalDataModel, gzipZeros, kinetoOneEvent, nestedIfModel, duplicateOutputModel } from '../helpers/hostile';

const dir = mkdtempSync(join(tmpdir(), 'parallax-hostile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Asserts `fn` fails with a one-line UserError matching `pattern`, and returns its message. */
async function userError(fn: () => unknown, pattern: RegExp): Promise<string> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, 'expected an error');
  assert.ok(isUserError(caught), `expected a UserError, got ${caught instanceof Error ? (caught.stack ?? caught.message) : String(caught)}`);
  const message = (caught as Error).message;
  assert.doesNotMatch(message, /\n/);
  assert.match(message, pattern);
  return message;
}

function file(name: string, content: string | Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

describe('class 1: counts a file claims do not size loops or allocations', () => {
  test('a one-event Kineto trace claiming a world of 1e15 ranks is refused in one line', async () => {
    await userError(() => kinetoTrace([{ doc: kinetoOneEvent({ rank: 0, worldSize: 1e15 }), source: 'w.json' }]), /world_size 1000000000000000 .*up to/);
  });

  test('a rank of 2^40 without a world size is refused as well', async () => {
    await userError(() => kinetoTrace([{ doc: kinetoOneEvent({ rank: 2 ** 40 }), source: 'r.json' }]), /rank 1099511627776 is beyond/);
  });

  test('a world at the limit imports, and the missing ranks are described without enumerating them', () => {
    const t = kinetoTrace([{ doc: kinetoOneEvent({ rank: 5, worldSize: MAX_WORLD_SIZE }), source: 'w.json' }]);
    const note = t.meta.notes.find((n) => /have no file here/.test(n));
    assert.ok(note, t.meta.notes.join('\n'));
    assert.match(note, new RegExp(`${MAX_WORLD_SIZE - 1} of the world's ${MAX_WORLD_SIZE} ranks`));
    assert.match(note, new RegExp(`ranks 0–4, 6–${MAX_WORLD_SIZE - 1}\\)`));
  });

  test('formatGaps agrees with formatRanges over the enumerated gaps', () => {
    const cases: [number[], number][] = [[[0], 1], [[1, 3], 6], [[0, 2, 4, 6, 8, 10, 12, 14], 20], [[], 4], [[7], 8]];
    for (const [present, size] of cases) {
      const missing = [...Array(size).keys()].filter((r) => !present.includes(r));
      assert.equal(formatGaps(present, size), formatRanges(missing), `${present} of ${size}`);
    }
  });

  test('a native trace claiming 2^32 spans is refused before any allocation; so is a count its columns do not hold', async () => {
    const doc = JSON.parse(serializeTrace(kinetoTrace([{ doc: kinetoOneEvent(), source: 'one.json' }]))) as { spans: Record<string, unknown>; version: number };
    doc.spans['count'] = 2 ** 32;
    await userError(() => parseTrace(JSON.stringify(doc), 'huge.json'), /huge\.json: invalid trace: spans\.count 4294967296 is more than/);
    doc.spans['count'] = 50_000_000;
    await userError(() => parseTrace(JSON.stringify(doc), 'claims.json'), /claims\.json: invalid trace: spans\.\w+ must be an array of 50000000 numbers/);
    // A version-1 document is migrated first: the migration must not size columns by the claim either.
    doc.version = 1;
    doc.spans['count'] = 2 ** 32;
    await userError(() => parseTrace(JSON.stringify(doc), 'v1.json'), /v1\.json: /);
  });
});

describe('class 4: nesting and size limits', () => {
  test('JSON nested 5,000 levels is refused before it is parsed or walked', async () => {
    const p = file('deep.json', deepJson(5000));
    await userError(() => importTrace([p]), new RegExp(`nested more than ${MAX_JSON_DEPTH} levels`));
  });

  test('a native trace nested deeply is refused by the native reader too', async () => {
    await userError(() => parseTrace(`{"format":"parallax-trace","meta":${deepJson(1000)}}`, 'deep.parallax.json'), /nested more than/);
  });

  test('jsonDepth skips brackets inside strings and escaped quotes', () => {
    assert.equal(jsonDepth('{"a":"[[[[\\"[[["}'), 1);
    assert.equal(jsonDepth('[[1],[[2]]]'), 3);
    assert.equal(jsonDepth('[]'), 1);
  });

  test(`subgraphs nested past ${MAX_GRAPH_DEPTH} levels are refused; a few levels load`, async () => {
    await userError(() => parseModel(nestedIfModel(MAX_GRAPH_DEPTH + 1), 'deep.onnx'), new RegExp(`more than ${MAX_GRAPH_DEPTH} levels`));
    const ir = parseModel(nestedIfModel(3), 'ok.onnx');
    assert.equal(ir.nodes.length, 1);
  });

  test('3,000 nested Ifs (deeper than the protobuf decoder can recurse) are a one-line error, not "not an ONNX model"', async () => {
    const msg = await userError(() => parseModel(nestedIfModel(3000), 'deeper.onnx'), /nests subgraphs/);
    assert.doesNotMatch(msg, /not an ONNX model/);
  });
});

describe('class 5: decompression is streamed and capped', () => {
  test('gzip of zeros (a bomb) stops at the ratio cap in one line', async () => {
    const bomb = gzipZeros(64 * 2 ** 20);
    const p = file('bomb.json.gz', bomb);
    await userError(() => readTextFile(p), new RegExp(`inflates more than ${MAX_INFLATE_RATIO}×`));
    await userError(() => importTrace([p]), /inflates more than/);
  });

  test('the limit is generous for small files and proportional for large ones', () => {
    assert.equal(inflateLimit(1000), INFLATE_FREE_BYTES);
    assert.equal(inflateLimit(2 ** 28), MAX_INFLATE_RATIO * 2 ** 28);
    assert.equal(inflateLimit(2 ** 40), MAX_INFLATED_BYTES);
  });

  test('an honest gzip trace streams through in chunks and reads back whole', async () => {
    const text = JSON.stringify(kinetoOneEvent({ name: 'x'.repeat(100_000) }));
    const p = file('honest.json.gz', gzipSync(text));
    const s = await openTextStream(p);
    assert.equal(s.gzip, true);
    const parts: Buffer[] = [];
    for await (const c of s.chunks) parts.push(c);
    assert.ok(parts.length > 1, 'more than one chunk');
    assert.equal(Buffer.concat(parts).toString('utf8'), text);
    assert.equal(await readTextFile(p), text);
  });

  test('truncated gzip is a corrupt-data line', async () => {
    const gz = gzipSync('{"traceEvents":[]}'.repeat(1000));
    const cut = gz.subarray(0, gz.length >> 1);
    async function* once(): AsyncGenerator<Buffer> {
      yield cut;
    }
    await userError(async () => {
      for await (const _ of gunzipChunks(once(), cut.length, 'cut.gz')) void _;
    }, /cut\.gz: corrupt gzip data/);
  });

  test('folders and FIFOs are refused before anything reads them', async () => {
    await userError(() => importTrace([dir]), /is a folder/);
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await userError(() => importTrace([fifo]), /not a regular file/);
  });
});

describe('class 6: values outside physical range are refused or counted', () => {
  test('a kernel lasting 1e300 µs is not imported as a step of 5e+299 µs', async () => {
    await userError(() => kinetoTrace([{ doc: kinetoOneEvent({ dur: 1e300 }), source: 'd.json' }]), /within physical range/);
    const doc = kinetoOneEvent();
    (doc['traceEvents'] as unknown[]).push({ ph: 'X', cat: 'kernel', name: 'k', pid: 0, tid: 7, ts: 2000, dur: 1e300, args: { device: 0 } });
    const t = kinetoTrace([{ doc, source: 'd.json' }]);
    assert.equal(t.spans.count, 1);
    assert.ok(t.meta.notes.some((n) => /^1 complete events had a negative duration/.test(n)), t.meta.notes.join('\n'));
    assert.ok(t.steps.every((s) => s.endUs - s.startUs < 1e6));
  });

  test('500 kernels with string timestamps are counted in a note, not dropped silently', () => {
    const doc = kinetoOneEvent();
    for (let i = 0; i < 500; i++) (doc['traceEvents'] as unknown[]).push({ ph: 'X', cat: 'kernel', name: 'k', pid: 0, tid: 7, ts: String(2000 + i), dur: 5, args: { device: 0 } });
    const t = kinetoTrace([{ doc, source: 's.json' }]);
    assert.ok(t.meta.notes.includes('500 complete events had a "ts" or "dur" that is not a number and were left out.'), t.meta.notes.join('\n'));
  });

  test("Python's NaN and Infinity literals are read as missing and counted, not called truncated JSON", async () => {
    const text = '{"traceEvents":[{"ph":"X","cat":"kernel","name":"NaN","pid":0,"tid":1,"ts":1,"dur":2,"args":{"device":0,"x":NaN,"y":-Infinity}},{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":1,"ts":5,"dur":Infinity}]}';
    const parsed = parseJsonDocument(text, 'nan.json');
    assert.equal(parsed.nonFinite, 3);
    const p = file('nan.json', text);
    const t = await importTrace([p]);
    assert.equal(t.spans.count, 1);
    assert.equal(t.strings[t.spans.name[0]], 'NaN', 'a string "NaN" is kept as it is');
    assert.ok(t.meta.notes.some((n) => /^3 NaN or Infinity values/.test(n)), t.meta.notes.join('\n'));
    assert.ok(t.meta.notes.some((n) => /^1 complete events had a "ts" or "dur" that is not a number/.test(n)), t.meta.notes.join('\n'));
  });

  test('a native trace with a span of 1e300 µs or a negative one is refused', async () => {
    const doc = JSON.parse(serializeTrace(kinetoTrace([{ doc: kinetoOneEvent(), source: 'one.json' }]))) as { spans: Record<string, number[]> };
    doc.spans['dur']![0] = 1e300;
    await userError(() => parseTrace(JSON.stringify(doc), 'long.json'), /spans\.dur\[0\] is 1e\+300 µs, outside/);
    doc.spans['dur']![0] = -5;
    await userError(() => parseTrace(JSON.stringify(doc), 'neg.json'), /spans\.dur\[0\] is -5 µs/);
  });

  test('JSON that is really truncated still says so', async () => {
    await userError(() => parseJsonDocument('{"traceEvents":[{"ph":"X", NaN', 't.json'), /not valid JSON \(is the file truncated\?\)/);
  });
});

describe('class 7: control characters in names are escaped', () => {
  test('ESC, BEL, CR, DEL, C1 and bidi overrides become visible escapes', () => {
    assert.equal(escapeTerminal('a\x1b]0;pwned\x07b'), 'a\\x1b]0;pwned\\x07b');
    assert.equal(escapeTerminal('bad\rall good'), 'bad\\rall good');
    assert.equal(escapeTerminal('x\x7f\x9by\u202ez'), 'x\\x7f\\x9by\\u202ez');
    assert.equal(escapeTerminal('one\ntwo\tthree'), 'one\\ntwo\\tthree');
    assert.equal(escapeTerminal('one\ntwo\tthree\r', { keepLines: true }), 'one\ntwo\tthree\\r');
    assert.equal(escapeTerminal('plain µs – ✓'), 'plain µs – ✓');
  });

  test('a loader error quoting crafted node names carries no raw control byte once escaped', async () => {
    const msg = await userError(() => parseModel(duplicateOutputModel(['\x1b]0;pwned\x07\x1b[2J', 'ok\rall good']), 'esc.onnx'), /produced by two nodes/);
    const shown = escapeTerminal(msg);
    assert.doesNotMatch(shown, /[\x00-\x1f\x7f]/);
    assert.match(shown, /\\x1b\]0;pwned\\x07\\x1b\[2J/);
    assert.match(shown, /ok\\rall good/);
  });
});

describe('class 8: external data stays inside the model folder', () => {
  const modelDir = join(dir, 'model');
  const outside = join(dir, 'outside');
  mkdirSync(modelDir, { recursive: true });
  mkdirSync(outside, { recursive: true });
  writeFileSync(join(outside, 'secret.bin'), Buffer.alloc(1294));

  const place = (name: string, location: string): string => {
    const p = join(modelDir, name);
    writeFileSync(p, externalDataModel(location));
    return p;
  };

  const refusals: [string, string, RegExp][] = [
    ['../ out of the folder', '../outside/secret.bin', /climbs out of the model's folder/],
    ['an absolute path', '/etc/passwd', /absolute path/],
    ['a Windows absolute path', 'C:\\Windows\\win.ini', /absolute path/],
    ['.. hidden in the middle', 'sub/../../outside/secret.bin', /climbs out/],
    ['backslash ..', '..\\outside\\secret.bin', /climbs out/],
  ];
  for (const [what, location, pattern] of refusals) {
    test(`refuses ${what} by the text alone, without a size`, async () => {
      const p = place(`m-${what.replace(/\W+/g, '-')}.onnx`, location);
      const msg = await userError(() => loadModel(p), pattern);
      assert.doesNotMatch(msg, /1294|bytes/);
      // Refused even when the files are not checked (the text alone is enough).
      await userError(() => loadModel(p, { checkExternalData: false }), pattern);
    });
  }

  test('refuses a symbolic link out of the folder without naming its target or its size', async () => {
    symlinkSync(join(outside, 'secret.bin'), join(modelDir, 'abs-link.bin'));
    symlinkSync('../outside/secret.bin', join(modelDir, 'rel-link.bin'));
    symlinkSync(outside, join(modelDir, 'dir-link'));
    for (const location of ['abs-link.bin', 'rel-link.bin', 'dir-link/secret.bin']) {
      const msg = await userError(() => loadModel(place(`link-${location.replace(/\W+/g, '-')}.onnx`, location)), /link out of the model's folder|through a link out/);
      // It quotes the location the model gave, never where the link leads or what is there.
      assert.doesNotMatch(msg, /1294|outside/);
    }
  });

  test('a link out of the folder to a file that does not exist reads the same as one that does', async () => {
    symlinkSync(join(outside, 'no-such.bin'), join(modelDir, 'dangling.bin'));
    const msg = await userError(() => loadModel(place('dangling.onnx', 'dangling.bin')), /link out of the model's folder/);
    assert.doesNotMatch(msg, /missing/);
  });

  test('refuses a folder or a FIFO inside the model folder', async () => {
    mkdirSync(join(modelDir, 'a-folder'));
    await userError(() => loadModel(place('folder.onnx', 'a-folder')), /not a regular file/);
    execFileSync('mkfifo', [join(modelDir, 'a-fifo')]);
    await userError(() => loadModel(place('fifo.onnx', 'a-fifo')), /not a regular file/);
  });

  test('accepts data beside the model, also through a link that stays inside', async () => {
    mkdirSync(join(modelDir, 'weights'));
    writeFileSync(join(modelDir, 'weights', 'w.bin'), Buffer.alloc(16 * 8 * 4));
    symlinkSync('weights/w.bin', join(modelDir, 'inside-link.bin'));
    const direct = await loadModel(place('direct.onnx', 'weights/w.bin'));
    assert.deepEqual(direct.externalDataFiles, [join(modelDir, 'weights', 'w.bin')]);
    const linked = await loadModel(place('linked.onnx', 'inside-link.bin'));
    assert.equal(linked.externalDataFiles.length, 1);
  });
});

describe('class 7: the output channel', () => {
  test('text reaching the channel is escaped; other members work on the channel itself', () => {
    class Channel {
      readonly lines: string[] = [];
      #disposed = false;
      get name(): string {
        return 'Parallax';
      }
      info(message: string, ...args: unknown[]): void {
        this.lines.push([message, ...args.map(String)].join(' '));
      }
      appendLine(message: string): void {
        this.lines.push(message);
      }
      dispose(): void {
        this.#disposed = true;
      }
      get disposed(): boolean {
        return this.#disposed;
      }
    }
    const raw = new Channel();
    const ch = escapingChannel(raw);
    ch.info('model \x1b]0;pwned\x07 loaded\nnext line', '\x1b');
    ch.appendLine('ok\rall good');
    ch.dispose();
    assert.deepEqual(raw.lines, ['model \\x1b]0;pwned\\x07 loaded\nnext line \\x1b', 'ok\\rall good']);
    assert.equal(ch.name, 'Parallax');
    assert.equal(raw.disposed, true, 'private state reached through the proxy');
  });
});
