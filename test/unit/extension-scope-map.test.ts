/**
 * ONNX nodes → the user's Python: scopes from TorchScript names (fused names included) and
 * dynamo metadata, `self.<attr> = …` definitions, resolution through the classes a
 * definition constructs, stack traces matched to workspace files, and the hints built from a
 * trace's operator time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  PythonIndex,
  indexPython,
  isLibraryFrame,
  matchTrailingPath,
  moduleScopeOfNodeName,
  parsePythonStringList,
  parseStackTrace,
  scopeSteps,
  scopeStepsOfMetadata,
  userFrame,
} from '../../src/extension/scope-map';
import { hintLabel, indexRanges, opTimes, shareText, sourceHints } from '../../src/extension/source-model';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';

/** The module the demo model's node names pretend to come from (see runtime/onnx/demo-model.ts). */
const DEMO_PY = `import torch.nn as nn


class MLP(nn.Module):
    """Two linear layers.

    self.fc9 = this is a docstring, not a definition
    """

    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, ffn)  # up
        self.act = nn.ReLU()
        self.fc2: nn.Linear = nn.Linear(ffn, hidden)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.ln = nn.LayerNorm(hidden)
        self.mlp = MLP(hidden, ffn)

    def forward(self, x):
        return x + self.mlp(self.ln(x))


class DemoMLP(nn.Module):
    def __init__(self, layers=8, hidden=256, ffn=1024):
        super().__init__()
        self.layers = nn.ModuleList(
            [Block(hidden, ffn) for _ in range(layers)]
        )
        if layers > 100:
            self.layers == None

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
`;

/** Another model in the workspace with attributes of the same names. */
const OTHER_PY = `import torch.nn as nn

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.add_module("proj", nn.Linear(8, 8))

class FancyBlock(Block):
    def __init__(self):
        super().__init__()
        self.extra = nn.Identity()
`;

describe('scopes of node names', () => {
  it('reads the TorchScript exporter’s module scopes, ORT’s fused and renamed nodes mapped back first', () => {
    assert.equal(moduleScopeOfNodeName('/layers.3/mlp/fc1/MatMul'), 'layers.3.mlp.fc1');
    assert.equal(moduleScopeOfNodeName('fused /layers.3/mlp/fc1/MatMul/MatMulAddFusion'), 'layers.3.mlp.fc1');
    assert.equal(moduleScopeOfNodeName('/layers.0/ln/LayerNormalization_token_12'), 'layers.0.ln');
    assert.equal(moduleScopeOfNodeName('/encoder/layer.0/attention/self/query/MatMul'), 'encoder.layer.0.attention.self.query');
    // A traced Sequential repeats its own name in its children's scope.
    assert.equal(moduleScopeOfNodeName('/layer1/layer1.0/conv1/Conv'), 'layer1.0.conv1');
    assert.equal(moduleScopeOfNodeName('/Add'), '');
    assert.equal(moduleScopeOfNodeName('MatMul_3'), null);
    assert.equal(moduleScopeOfNodeName('node_linear_8'), null);
  });

  it('splits a module path into attributes with their container indices', () => {
    assert.deepEqual(scopeSteps('layers.3.mlp.fc1'), [
      { attr: 'layers', indices: [3] },
      { attr: 'mlp', indices: [] },
      { attr: 'fc1', indices: [] },
    ]);
    assert.deepEqual(scopeSteps('blocks.1.0.conv'), [
      { attr: 'blocks', indices: [1, 0] },
      { attr: 'conv', indices: [] },
    ]);
    assert.deepEqual(scopeSteps(''), []);
  });

  it('reads Python list reprs', () => {
    assert.deepEqual(parsePythonStringList("['', 'layers.0', \"it's\"]"), ['', 'layers.0', "it's"]);
    assert.deepEqual(parsePythonStringList('[]'), []);
    assert.equal(parsePythonStringList("'x'"), null);
    assert.equal(parsePythonStringList("['x'"), null);
  });

  it('reads dynamo’s name_scopes and class_hierarchy: the path and each attribute’s owning class', () => {
    const steps = scopeStepsOfMetadata({
      'pkg.torch.onnx.name_scopes': "['', 'network', 'network.0', 'linear']",
      'pkg.torch.onnx.class_hierarchy': "['__main__.GestureNN', 'torch.nn.modules.container.Sequential', 'torch.nn.modules.linear.Linear', 'aten.linear.default']",
    });
    assert.deepEqual(steps, [{ attr: 'network', indices: [0], owner: 'GestureNN' }]);
    const deep = scopeStepsOfMetadata({
      'pkg.torch.onnx.name_scopes': "['', 'layers.2', 'layers.2.mlp', 'layers.2.mlp.fc1', 'linear_8']",
      'pkg.torch.onnx.class_hierarchy': "['DemoMLP', 'Block', 'MLP', 'Linear', 'aten.linear.default']",
    });
    assert.deepEqual(deep, [
      { attr: 'layers', indices: [2], owner: 'DemoMLP' },
      { attr: 'mlp', indices: [], owner: 'Block' },
      { attr: 'fc1', indices: [], owner: 'MLP' },
    ]);
    assert.equal(scopeStepsOfMetadata({}), null);
    assert.deepEqual(scopeStepsOfMetadata({ 'pkg.torch.onnx.name_scopes': "['', 'add']" }), []);
  });
});

describe('Python definitions', () => {
  it('finds classes and self.<attr> definitions with where a hint goes, skipping docstrings and comparisons', () => {
    const ix = indexPython(DEMO_PY);
    assert.deepEqual(
      ix.classes.map((c) => [c.name, c.bases]),
      [
        ['MLP', ['Module']],
        ['Block', ['Module']],
        ['DemoMLP', ['Module']],
      ],
    );
    assert.deepEqual(
      ix.defs.map((d) => `${d.className}.${d.attr}@${d.line + 1}`),
      ['MLP.fc1@12', 'MLP.act@13', 'MLP.fc2@14', 'Block.ln@23', 'Block.mlp@24', 'DemoMLP.layers@33'],
    );
    const lines = DEMO_PY.split('\n');
    const fc1 = ix.defs[0]!;
    assert.equal(lines[fc1.line]!.slice(0, fc1.lineEnd), '        self.fc1 = nn.Linear(hidden, ffn)', 'the hint goes before the comment');
    assert.equal(fc1.character, 8);
    const layers = ix.defs.find((d) => d.attr === 'layers')!;
    assert.match(layers.rhs, /^nn\.ModuleList\(\n\s+\[Block\(hidden, ffn\) for _ in range\(layers\)\]\n\s+\)$/);
    assert.deepEqual(layers.calls, ['ModuleList', 'Block', 'range']);
  });

  it('reads add_module and base classes', () => {
    const ix = indexPython(OTHER_PY);
    assert.deepEqual(
      ix.defs.map((d) => `${d.className}.${d.attr}`),
      ['Attention.fc1', 'Attention.proj', 'FancyBlock.extra'],
    );
    assert.deepEqual(ix.classes[1]!.bases, ['Block']);
  });
});

describe('module paths → definitions', () => {
  const py = new PythonIndex([
    ['/ws/model.py', indexPython(DEMO_PY)],
    ['/ws/other.py', indexPython(OTHER_PY)],
  ]);
  const where = (steps: ReturnType<typeof scopeSteps>): string[][] => py.resolve(steps).map((r) => r.defs.map((d) => `${d.file}:${d.def.className}.${d.def.attr}`));

  it('follows the classes each definition constructs, so a shared attribute name resolves to the right class', () => {
    assert.deepEqual(where(scopeSteps('layers.3.mlp.fc1')), [['/ws/model.py:DemoMLP.layers'], ['/ws/model.py:Block.mlp'], ['/ws/model.py:MLP.fc1']]);
  });

  it('takes the owning class from dynamo metadata when given', () => {
    assert.deepEqual(where([{ attr: 'fc1', indices: [], owner: 'Attention' }]), [['/ws/other.py:Attention.fc1']]);
  });

  it('finds attributes in base classes', () => {
    assert.deepEqual(where([{ attr: 'extra', indices: [] }, { attr: 'ln', indices: [] }]).slice(0, 1), [['/ws/other.py:FancyBlock.extra']]);
    assert.deepEqual(py.defsOf('FancyBlock', 'mlp').map((d) => d.def.className), ['Block']);
  });

  it('stops where the path leaves the workspace’s code, and shows every candidate where the source is ambiguous', () => {
    assert.deepEqual(where(scopeSteps('layers.0.mlp.fc1.weight_quant')), [['/ws/model.py:DemoMLP.layers'], ['/ws/model.py:Block.mlp'], ['/ws/model.py:MLP.fc1']]);
    assert.deepEqual(where(scopeSteps('decoder.x')), []);
    // fc1 alone, no scope above it: both classes define it.
    assert.deepEqual(where(scopeSteps('fc1')), [['/ws/other.py:Attention.fc1', '/ws/model.py:MLP.fc1']]);
  });
});

describe('stack traces', () => {
  const TRACE = [
    'File "C:\\Users\\me\\proj\\src\\train_model.py", line 96, in forward',
    '    return self.network(x)',
    '  File "C:\\Python312\\site-packages\\torch\\nn\\modules\\container.py", line 250, in forward',
    '    input = module(input)',
    '  File "/home/u/proj/src/layers.py", line 12, in forward',
    '    return self.fc(x)',
    '  File "/usr/lib/python3.12/site-packages/torch/nn/modules/linear.py", line 125, in forward',
    '    return F.linear(input, self.weight, self.bias)',
  ].join('\n');

  it('parses frames outermost first and picks the innermost frame of the user’s code', () => {
    const frames = parseStackTrace(TRACE);
    assert.equal(frames.length, 4);
    assert.deepEqual(frames[0], { file: 'C:\\Users\\me\\proj\\src\\train_model.py', line: 96, func: 'forward', code: 'return self.network(x)' });
    assert.ok(isLibraryFrame(frames[1]!.file));
    assert.deepEqual(userFrame(frames), { file: '/home/u/proj/src/layers.py', line: 12, func: 'forward', code: 'return self.fc(x)' });
    assert.equal(userFrame(frames.filter((f) => isLibraryFrame(f.file))), null);
  });

  it('matches a path from another machine to workspace files by the most trailing components', () => {
    const files = ['/ws/src/train_model.py', '/ws/tests/train_model.py', '/ws/src/layers.py'];
    assert.deepEqual(matchTrailingPath('C:\\Users\\me\\proj\\SRC\\train_model.py', files), ['/ws/src/train_model.py']);
    assert.deepEqual(matchTrailingPath('/home/u/proj/src/layers.py', files), ['/ws/src/layers.py']);
    assert.deepEqual(matchTrailingPath('/elsewhere/train_model.py', files), ['/ws/src/train_model.py', '/ws/tests/train_model.py'], 'a tie is left to the caller');
    assert.deepEqual(matchTrailingPath('/x/model.py', files), []);
  });
});

describe('hints from a trace’s operator time', () => {
  // Two stages of the demo model: layers 0-1 on stage 0, layers 2-3 on stage 1, which is slower.
  const names = (l: number): string[] => [`/layers.${l}/ln/LayerNormalization`, `fused /layers.${l}/mlp/fc1/MatMul/MatMulAddFusion`, `/layers.${l}/mlp/fc2/MatMul/MatMulAddFusion`];
  const trace = syntheticPipelineTrace({
    stageUs: [10, 30],
    microBatches: 2,
    steps: 3,
    opsPerCompute: 6,
    stageNodes: [[...names(0), ...names(1)], [...names(2), ...names(3)]],
  });
  const times = opTimes(trace);
  const py = new PythonIndex([['/ws/model.py', indexPython(DEMO_PY)]]);

  it('sums operator time per model node, fused names mapped back, with stages and the bottleneck stage', () => {
    assert.ok(times.nodes.has('/layers.0/mlp/fc1/MatMul'));
    assert.ok(!times.nodes.has('fused /layers.0/mlp/fc1/MatMul/MatMulAddFusion'));
    assert.deepEqual(times.nodes.get('/layers.3/mlp/fc2/MatMul')!.stages, [1]);
    assert.equal(times.stageCount, 2);
    assert.equal(times.bottleneckStage, 1);
    let total = 0;
    for (const t of times.nodes.values()) total += t.us;
    // Every operator span sits in a step: all of stage compute (10 + 30 per micro-batch) is operator time.
    assert.ok(Math.abs(total - 3 * 2 * 40) < 1e-6, `${total}`);
    assert.equal(times.deviceStepUs, trace.steps.reduce((s, w) => s + w.endUs - w.startUs, 0) * 2);
  });

  it('puts inclusive time on each definition along the path, per ModuleList entry and stage, at the end of its line', () => {
    const hints = sourceHints(times, { python: py, pythonFiles: ['/ws/model.py'] });
    const by = new Map(hints.map((h) => [`${h.className}.${h.attr}`, h]));
    const layers = by.get('DemoMLP.layers')!;
    const mlp = by.get('Block.mlp')!;
    const fc1 = by.get('MLP.fc1')!;
    assert.ok(Math.abs(layers.us - 240) < 1e-6);
    assert.deepEqual(layers.stages, [0, 1]);
    assert.deepEqual(
      layers.perIndex.map((p) => [p.index, p.stages]),
      [
        [0, [0]],
        [1, [0]],
        [2, [1]],
        [3, [1]],
      ],
    );
    assert.ok(mlp.us < layers.us && fc1.us < mlp.us);
    assert.equal(by.get('MLP.act'), undefined, 'ReLU was fused into fc1: no time of its own');
    assert.equal(fc1.line, 11);
    assert.equal(fc1.character, '        self.fc1 = nn.Linear(hidden, ffn)'.length);
    assert.ok(layers.range && layers.range.startUs >= trace.steps[0]!.startUs && layers.range.endUs <= trace.steps[2]!.endUs);
    assert.deepEqual(fc1.topNodes.map((n) => n.node).sort(), ['/layers.0/mlp/fc1/MatMul', '/layers.1/mlp/fc1/MatMul', '/layers.2/mlp/fc1/MatMul', '/layers.3/mlp/fc1/MatMul']);
    assert.ok(layers.onBottleneck);
    assert.equal(hintLabel(layers, times), `◷ ${shareText(layers.share)} of step · [2–3] ◀ bottleneck`);
    assert.equal(hintLabel(fc1, times), `◷ ${shareText(fc1.share)} of step · stages 0–1`);
  });

  it('marks a definition that runs on the bottleneck stage alone', () => {
    const one = syntheticPipelineTrace({ stageUs: [10, 30], microBatches: 2, steps: 2, opsPerCompute: 1, stageNodes: [['/layers.0/ln/LayerNormalization'], ['/layers.1/mlp/fc1/MatMul']] });
    const t = opTimes(one);
    const fc1 = sourceHints(t, { python: py, pythonFiles: [] }).find((h) => h.attr === 'fc1')!;
    assert.equal(hintLabel(fc1, t), `◷ ${shareText(fc1.share)} of step · stage 1 ◀ bottleneck`);
  });

  it('adds a hint on the line a dynamo stack trace names, matched to the workspace file', () => {
    const metadata = new Map([
      ['/layers.0/mlp/fc1/MatMul', { 'pkg.torch.onnx.stack_trace': 'File "/home/u/proj/model.py", line 17, in forward\n    return self.fc2(self.act(self.fc1(x)))' }],
    ]);
    const hints = sourceHints(times, { python: py, pythonFiles: ['/ws/model.py'], metadata });
    const call = hints.find((h) => h.kind === 'call')!;
    assert.equal(call.file, '/ws/model.py');
    assert.equal(call.line, 16);
    assert.equal(call.character, -1, 'at the end of the line as the editor has it');
    assert.ok(Math.abs(call.us - times.nodes.get('/layers.0/mlp/fc1/MatMul')!.us) < 1e-9);
  });

  it('writes index runs and shares compactly', () => {
    assert.equal(indexRanges([5, 0, 1, 2, 3, 7, 8]), '0–3, 5, 7–8');
    assert.equal(shareText(0.042), '4.2%');
    assert.equal(shareText(0.47), '47%');
  });
});
