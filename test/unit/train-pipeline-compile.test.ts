/**
 * The pipeline training compiler (pure): the GPipe and 1F1B orders of a stage's forwards and
 * backwards, the peak stored activations they imply, a compiled program over the stages'
 * training models of a small transformer-like model (what each stage sends the other, under
 * which names), and the simulator running it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Value } from '@sinclair/typebox/value';
import { TRAIN_DEFAULTS, type PipelinePlan, type TrainPlan } from '../../src/profiler/plan';
import { ProgramSchema, type Instruction, type Program } from '../../src/profiler/program';
import { compileTrainPipeline, peakStored, stageWork, type PipelineWork } from '../../src/runtime/compile/train-pipeline';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { estimateNodeCostsUs, partitionPipeline } from '../../src/runtime/pipeline/partition';
import { buildPipelineTrainingModels } from '../../src/runtime/train/pipeline-models';
import { FREE_LINK, setComputeCost, simulate, type CostModel } from '../../src/profiler/simulate';
import { syntheticMeta } from '../../src/profiler/analysis/synthetic';
import { PhaseCode, SpanKind } from '../../src/profiler/trace-format';
import type { CompileContext } from '../../src/runtime/compile/common';

const text = (w: readonly PipelineWork[]): string => w.map((x) => `${x.pass}${x.micro}`).join(' ');

test('1F1B on stage 0 of 2 with 4 micro-batches: F0 F1 B0 F2 B1 F3 B2 B3; the last stage alternates from the start', () => {
  assert.equal(text(stageWork('1f1b', 0, 2, 4)), 'F0 F1 B0 F2 B1 F3 B2 B3');
  assert.equal(text(stageWork('1f1b', 1, 2, 4)), 'F0 B0 F1 B1 F2 B2 F3 B3');
  // Four stages: stage 0 warms up with three forwards.
  assert.equal(text(stageWork('1f1b', 0, 4, 6)), 'F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5');
  // Fewer micro-batches than stages: all forwards, then all backwards.
  assert.equal(text(stageWork('1f1b', 0, 4, 2)), 'F0 F1 B0 B1');
});

test('GPipe runs every forward, then every backward', () => {
  assert.equal(text(stageWork('gpipe', 0, 2, 4)), 'F0 F1 F2 F3 B0 B1 B2 B3');
  assert.equal(text(stageWork('gpipe', 1, 2, 4)), 'F0 F1 F2 F3 B0 B1 B2 B3');
});

test('peak stored activations per stage: M for GPipe, K − s (at most K, at most M) for 1F1B; every micro-batch once each way', () => {
  for (const k of [1, 2, 3, 4, 8]) {
    for (const m of [1, 2, 3, 4, 8, 16]) {
      for (let s = 0; s < k; s++) {
        const g = stageWork('gpipe', s, k, m);
        const f = stageWork('1f1b', s, k, m);
        assert.equal(peakStored(g), m, `GPipe K=${k} M=${m} s=${s}`);
        assert.equal(peakStored(f), Math.min(k - s, m), `1F1B K=${k} M=${m} s=${s}`);
        assert.ok(peakStored(f) <= k);
        for (const w of [g, f]) {
          // Each micro-batch's forward comes before its backward, and each occurs once.
          for (let i = 0; i < m; i++) {
            const fi = w.findIndex((x) => x.pass === 'F' && x.micro === i);
            const bi = w.findIndex((x) => x.pass === 'B' && x.micro === i);
            assert.ok(fi >= 0 && bi > fi, `micro-batch ${i}`);
          }
          assert.equal(w.length, 2 * m);
        }
      }
    }
  }
});

/** A 2-stage pipeline training program of a small demo model (2 layers, hidden 16). */
function compiled(schedule: PipelinePlan['schedule'], microBatches = 4, stages = 2): { program: Program; labels: string } {
  const bytes = buildDemoModel({ layers: Math.max(2, stages), hidden: 16, ffn: 32 });
  const ir = parseModel(bytes, 'demo');
  const part = partitionPipeline(ir, estimateNodeCostsUs(ir, { batch: 8 }), stages);
  const train: TrainPlan = { ...TRAIN_DEFAULTS, optimizer: 'momentum' };
  const models = buildPipelineTrainingModels(bytes, ir, part, { train, output: 'y', labels: 'labels' }, 'demo');
  const ctx: CompileContext = {
    inputs: [
      { name: 'x', dtype: 'float32', dims: [8, 16], batchAxis: 0 },
      { name: 'labels', dtype: 'float32', dims: [8, 16], batchAxis: 0 },
    ],
    outputs: [{ name: 'y', batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices: stages,
    nodeNames: ir.nodes.map((n) => n.name),
  };
  const plan: PipelinePlan & { train: TrainPlan } = { mode: 'pipeline', devices: `cpu:${stages}`, batch: 8, steps: 1, warmup: 0, seed: 0, schedule, microBatches, train };
  return { program: compileTrainPipeline(plan, part, ctx, models), labels: models.labels };
}

const runs = (ins: readonly Instruction[]): string =>
  ins.flatMap((i) => (i.op === 'run' ? [i.phase === 'optimizer' ? 'O' : `${i.phase === 'forward' ? 'F' : 'B'}${i.micro}`] : [])).join(' ');

test('a compiled 1F1B program: each stage runs its forwards and backwards in 1F1B order, then its optimizer; what one stage sends the other receives under the same names', () => {
  const { program, labels } = compiled('1f1b');
  assert.ok(Value.Check(ProgramSchema, program), 'the program matches its schema');
  assert.equal(runs(program.devices[0]!.instructions), 'F0 F1 B0 F2 B1 F3 B2 B3 O');
  assert.equal(runs(program.devices[1]!.instructions), 'F0 B0 F1 B1 F2 B2 F3 B3 O');
  assert.deepEqual(program.peakStored, [2, 1]);
  // Stage 0 scatters the inputs, the last stage the labels.
  const scattered = program.devices.map((d) => d.instructions.filter((i) => i.op === 'scatter').flatMap((i) => (i.op === 'scatter' ? i.tensors : [])));
  assert.ok(scattered[0]!.includes('x') && !scattered[0]!.includes(labels));
  assert.ok(scattered[1]!.includes(labels) && !scattered[1]!.includes('x'));
  // Point to point: every send of one stage is matched by a receive of the other, in order, same tensors.
  for (const [from, to] of [[0, 1], [1, 0]] as const) {
    const sends = program.devices[from]!.instructions.filter((i) => i.op === 'send' && i.to === to);
    const recvs = program.devices[to]!.instructions.filter((i) => i.op === 'recv' && i.from === from);
    assert.equal(sends.length, 4, `${from} → ${to}: one message per micro-batch`);
    assert.deepEqual(
      sends.map((i) => ('tensors' in i ? i.tensors : [])),
      recvs.map((i) => ('tensors' in i ? i.tensors : [])),
    );
    assert.ok(sends.every((i) => 'bytes' in i && i.bytes > 0), 'bytes estimated');
  }
  // Each stage trains its own parameters; together, every weight once.
  const st = program.stageTraining!;
  assert.equal(st.length, 2);
  const names = st.flatMap((t) => t.parameters.map((p) => p.name));
  assert.equal(new Set(names).size, names.length);
  assert.ok(st.every((t) => t.parameters.length > 0 && t.pipeline!.scale === 1 / 4 && t.pipeline!.stash.length > 0));
  assert.ok(st[0]!.loss === '' && st[1]!.loss !== '', 'only the last stage has the loss');
  assert.ok(st.every((t) => t.state.length === t.parameters.length), 'momentum: one state tensor per parameter');
});

/**
 * Runs a program's point-to-point transfers as rendezvous — a send completes only together
 * with its receive, as when every message is larger than the channel — and returns the
 * instruction each device is stuck at, or null when every device reaches its end.
 */
function rendezvousDeadlock(program: Program): string | null {
  const pc = program.devices.map(() => 0);
  const at = (d: number): Instruction | undefined => program.devices[d]!.instructions[pc[d]!];
  for (;;) {
    let moved = false;
    for (let d = 0; d < program.devices.length; d++) {
      const ins = at(d);
      if (!ins) continue;
      if (ins.op === 'send') {
        const peer = at(ins.to);
        if (peer?.op === 'recv' && peer.from === d && peer.micro === ins.micro) {
          pc[d]!++;
          pc[ins.to]!++;
          moved = true;
        }
      } else if (ins.op !== 'recv') {
        pc[d]!++;
        moved = true;
      }
    }
    if (pc.every((p, d) => p === program.devices[d]!.instructions.length)) return null;
    if (!moved) return program.devices.map((_, d) => `${d}: ${JSON.stringify(at(d) ?? 'done')}`).join('; ');
  }
}

test('no schedule deadlocks when transfers do not fit the channel: on each pair of neighbours the upstream stage sends first and the downstream one receives first', () => {
  for (const schedule of ['gpipe', '1f1b'] as const) {
    for (const stages of [2, 3, 4]) {
      for (const m of [1, 2, 3, 4, 8]) {
        const { program } = compiled(schedule, m, stages);
        assert.equal(program.devices.length, stages);
        assert.equal(rendezvousDeadlock(program), null, `${schedule} K=${stages} M=${m}`);
        // Still every forward and backward of every micro-batch, in the schedule's order.
        for (const [s, d] of program.devices.entries()) assert.equal(runs(d.instructions), `${text(stageWork(schedule, s, stages, m))} O`);
      }
    }
  }
  // The order before: a backward's gradient send straight after its run. Stage 1 sends
  // gradients of m while stage 0 sends activations of m + 1 — each waits for the other.
  const { program } = compiled('1f1b', 4, 2);
  const naive: Program = {
    ...program,
    devices: program.devices.map((d) => {
      const out: Instruction[] = [];
      for (const ins of d.instructions) {
        if (ins.op === 'send' && ins.to < d.rank) {
          // Put the gradient send back right after its backward run.
          const i = out.map((x) => x.op === 'run' && x.phase === 'backward' && x.micro === ins.micro).lastIndexOf(true);
          out.splice(i + 1, 0, ins);
        } else out.push(ins);
      }
      return { ...d, instructions: out };
    }),
  };
  assert.match(rendezvousDeadlock(naive) ?? '', /"op":"send"/, 'the order before deadlocks');
});

test('a compiled GPipe program keeps M micro-batches on every stage; the simulator predicts it with forward and backward spans per stage', () => {
  const { program } = compiled('gpipe', 4);
  assert.deepEqual(program.peakStored, [4, 4]);
  assert.equal(runs(program.devices[0]!.instructions), 'F0 F1 F2 F3 B0 B1 B2 B3 O');
  for (const schedule of ['gpipe', '1f1b'] as const) {
    const p = compiled(schedule, 4).program;
    const costs: CostModel = { compute: {}, transfers: { copy: FREE_LINK, p2p: { alphaUs: 20, bytesPerUs: 1000 }, collective: FREE_LINK } };
    for (const d of p.devices) {
      for (const id of d.segments) {
        const seg = p.segments[id]!;
        const phase = seg.kind === 'stage-forward' ? 'forward' : seg.kind === 'stage-backward' ? 'backward' : 'optimizer';
        setComputeCost(costs, d.rank, seg, phase, { fixedUs: phase === 'backward' ? 200 : 100, perRowUs: 5 });
      }
    }
    const meta = syntheticMeta(2, { mode: 'pipeline', devices: 'cpu:2', batch: 8, steps: 2, warmup: 0, seed: 0, schedule, microBatches: 4, train: { ...TRAIN_DEFAULTS } });
    const trace = simulate(p, costs, { steps: 2, meta });
    const s = trace.spans;
    for (let lane = 0; lane < 2; lane++) {
      const count = (phase: number): number => {
        let n = 0;
        for (let i = 0; i < s.count; i++) if (s.kind[i] === SpanKind.compute && s.lane[i] === lane && s.phase[i] === phase) n++;
        return n;
      };
      assert.equal(count(PhaseCode.forward), 2 * 4, `${schedule} stage ${lane}: a forward per micro-batch per step`);
      assert.equal(count(PhaseCode.backward), 2 * 4, `${schedule} stage ${lane}: a backward per micro-batch per step`);
      assert.equal(count(PhaseCode.optimizer), 2, `${schedule} stage ${lane}: an optimizer per step`);
    }
  }
});
