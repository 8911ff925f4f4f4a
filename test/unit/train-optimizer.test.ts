/**
 * Optimizer models (SGD, momentum, Adam) run in onnxruntime-node against a plain JavaScript
 * implementation of the same update rules, over several steps so that the state carries.
 * Tolerance: 1e-12 relative in float64; 1e-5 relative in float32 (single rounding per op).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { buildOptimizerModel, OPTIMIZER_DEFAULTS, type OptimizerConfig } from '../../src/runtime/train/optimizer';
import { seededValues } from '../helpers/tiny-model';

type Vec = number[];

/** Reference optimizer: one step on plain arrays, state updated in place. */
function referenceStep(config: OptimizerConfig, p: Vec, g: Vec, state: Vec[], lr: number, t: number): Vec {
  switch (config.kind) {
    case 'sgd':
      return p.map((v, i) => v - lr * g[i]!);
    case 'momentum': {
      const mu = config.momentum ?? OPTIMIZER_DEFAULTS.momentum;
      const v = state[0]!;
      for (let i = 0; i < p.length; i++) v[i] = mu * v[i]! + g[i]!;
      return p.map((x, i) => x - lr * v[i]!);
    }
    case 'adam': {
      const b1 = config.beta1 ?? OPTIMIZER_DEFAULTS.beta1;
      const b2 = config.beta2 ?? OPTIMIZER_DEFAULTS.beta2;
      const eps = config.epsilon ?? OPTIMIZER_DEFAULTS.epsilon;
      const [m, v] = state as [Vec, Vec];
      for (let i = 0; i < p.length; i++) {
        m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
        v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
      }
      return p.map((x, i) => x - (lr * (m[i]! / (1 - b1 ** t))) / (Math.sqrt(v[i]! / (1 - b2 ** t)) + eps));
    }
  }
}

const configs: Array<[string, OptimizerConfig]> = [
  ['SGD', { kind: 'sgd' }],
  ['momentum 0.8', { kind: 'momentum', momentum: 0.8 }],
  ['Adam (defaults)', { kind: 'adam' }],
  ['Adam β1 0.5 β2 0.9 ε 1e-3', { kind: 'adam', beta1: 0.5, beta2: 0.9, epsilon: 1e-3 }],
];

describe('optimizer models match a JavaScript reference over 4 steps', () => {
  for (const dtype of ['float64', 'float32'] as const) {
    for (const [label, config] of configs) {
      test(`${label} (${dtype})`, async () => {
        const params = [
          { name: 'fc.weight', dims: [3, 4] },
          { name: 'fc.bias', dims: [4] },
        ];
        const opt = buildOptimizerModel(params, config, dtype);
        const session = await ort.InferenceSession.create(opt.bytes, { intraOpNumThreads: 1 });
        const Arr = dtype === 'float64' ? Float64Array : Float32Array;
        const round = (v: Vec): Vec => Array.from(Arr.from(v), Number);
        const tol = dtype === 'float64' ? 1e-12 : 1e-5;
        const size = (d: number[]): number => d.reduce((a, b) => a * b, 1);
        let ours = opt.slots.map((s, k) => ({ value: round(Array.from(seededValues(size(params[k]!.dims), 5 + k), Number)), state: s.state.map(() => new Array<number>(size(params[k]!.dims)).fill(0)) }));
        const ref = ours.map((o) => ({ value: [...o.value], state: o.state.map((s) => [...s]) }));
        const lr = 0.05;
        try {
          for (let t = 1; t <= 4; t++) {
            const grads = opt.slots.map((_, k) => round(Array.from(seededValues(size(params[k]!.dims), 100 * t + k), (v) => v * 2)));
            const feeds: Record<string, ort.Tensor> = { [opt.lr]: new ort.Tensor(dtype, Arr.of(lr), []) };
            if (opt.step) feeds[opt.step] = new ort.Tensor(dtype, Arr.of(t), []);
            opt.slots.forEach((s, k) => {
              const dims = params[k]!.dims;
              feeds[s.value] = new ort.Tensor(dtype, Arr.from(ours[k]!.value), dims);
              feeds[s.grad] = new ort.Tensor(dtype, Arr.from(grads[k]!), dims);
              s.state.forEach((st, j) => (feeds[st.input] = new ort.Tensor(dtype, Arr.from(ours[k]!.state[j]!), dims)));
            });
            const out = await session.run(feeds);
            ours = opt.slots.map((s) => ({ value: Array.from(out[s.updated]!.data as Float64Array, Number), state: s.state.map((st) => Array.from(out[st.output]!.data as Float64Array, Number)) }));
            ref.forEach((r, k) => (r.value = referenceStep(config, r.value, grads[k]!, r.state, lr, t)));
            ours.forEach((o, k) => {
              const want = ref[k]!.value;
              const scale = Math.max(...want.map(Math.abs), 1e-3);
              o.value.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= tol * scale, `${opt.slots[k]!.param}[${i}] at step ${t}: ${v} vs reference ${want[i]}`));
              assert.ok(o.value.some((v, i) => v !== feeds[opt.slots[k]!.value]!.data[i]), 'the update changed the parameter');
            });
          }
        } finally {
          await session.release();
        }
        const expectedState = config.kind === 'sgd' ? 0 : config.kind === 'momentum' ? 1 : 2;
        assert.ok(opt.slots.every((s) => s.state.length === expectedState));
      });
    }
  }
});
