/**
 * Every supported operator's gradient against central finite differences, in real
 * onnxruntime-node sessions (see test/helpers/grad-check.ts for the method).
 *
 * Tolerances: the error is |analytic − numeric| / max(1, largest |numeric| of the tensor).
 *
 * | element type | step  | tolerance | why                                                            |
 * |--------------|-------|-----------|----------------------------------------------------------------|
 * | float64      | 1e-6  | 1e-6      | truncation O(step²) and rounding O(1e-16/step) are both < 1e-9 |
 * | float32      | 1e-2  | 1e-3      | the loss is summed in float32: rounding ~1e-7·|loss|/step      |
 *
 * float32 is used only where ONNX Runtime's CPU provider has no double kernel for an op the
 * forward or backward graph needs (Erf, Gelu, HardSigmoid, HardSwish, Softplus, Mean, Conv,
 * ConvTranspose, AveragePool, Resize, GlobalAveragePool, Clip before opset 12).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SUPPORTED_OPS } from '../../src/runtime/train/autodiff';
import { checkGradients, int64s, node, type GradCase } from '../helpers/grad-check';

const F64 = { dtype: 'float64', tol: 1e-6 } as const;
const F32 = { dtype: 'float32', tol: 1e-3 } as const;

type Case = Omit<GradCase, 'dtype' | 'tol'> & { dtype?: GradCase['dtype']; tol?: number };

const cases: Record<string, Case & { dtype: GradCase['dtype']; tol: number }> = {};
const add = (name: string, precision: typeof F64 | typeof F32, c: Case): void => {
  cases[name] = { ...precision, ...c } as Case & { dtype: GradCase['dtype']; tol: number };
};

// --- MatMul and Gemm -----------------------------------------------------------------
add('MatMul 2-D', F64, { nodes: [node('MatMul', ['x', 'W'], ['y'])], inputs: { x: { dims: [3, 4] } }, params: { W: { dims: [4, 5] } } });
add('MatMul batched with a broadcast weight', F64, { nodes: [node('MatMul', ['x', 'W'], ['y'])], inputs: { x: { dims: [2, 3, 4] } }, params: { W: { dims: [4, 5] } } });
add('MatMul with broadcast batch axes on both sides', F64, { nodes: [node('MatMul', ['a', 'B'], ['y'])], inputs: { a: { dims: [2, 1, 3, 4] } }, params: { B: { dims: [3, 4, 2] } } });
add('MatMul vector × matrix', F64, { nodes: [node('MatMul', ['v', 'W'], ['y'])], inputs: { v: { dims: [4] } }, params: { W: { dims: [4, 5] } } });
add('MatMul matrix × vector', F64, { nodes: [node('MatMul', ['x', 'v'], ['y'])], inputs: { x: { dims: [3, 4] } }, params: { v: { dims: [4] } } });
for (const [ta, tb] of [[0, 0], [1, 0], [0, 1], [1, 1]] as const) {
  add(`Gemm transA=${ta} transB=${tb} alpha beta, bias broadcast`, F64, {
    nodes: [node('Gemm', ['a', 'B', 'C'], ['y'], { transA: ta, transB: tb, alpha: 0.7, beta: 1.3 })],
    inputs: { a: { dims: ta ? [4, 3] : [3, 4] } },
    params: { B: { dims: tb ? [5, 4] : [4, 5] }, C: { dims: [5] } },
  });
}
add('Gemm with a [M, 1] bias', F64, { nodes: [node('Gemm', ['a', 'B', 'C'], ['y'])], inputs: { a: { dims: [3, 4] } }, params: { B: { dims: [4, 5] }, C: { dims: [3, 1] } } });

// --- elementwise binary with broadcasting ---------------------------------------------
add('Add with broadcasting', F64, { nodes: [node('Add', ['a', 'b'], ['y'])], inputs: { a: { dims: [2, 3, 4] } }, params: { b: { dims: [3, 1] } } });
add('Sub with broadcasting', F64, { nodes: [node('Sub', ['a', 'b'], ['y'])], inputs: { a: { dims: [3, 4] } }, params: { b: { dims: [4] } } });
add('Mul with broadcasting', F64, { nodes: [node('Mul', ['a', 'b'], ['y'])], inputs: { a: { dims: [2, 3] } }, params: { b: { dims: [2, 1] } } });
add('Div with broadcasting', F64, { nodes: [node('Div', ['a', 'b'], ['y'])], inputs: { a: { dims: [2, 3] } }, params: { b: { dims: [1, 3], scale: 0.5, offset: 2 } } });
add('Pow with a trainable exponent', F64, { nodes: [node('Pow', ['x', 'e'], ['y'])], inputs: { x: { dims: [2, 3], scale: 0.5, offset: 2 } }, params: { e: { dims: [3], scale: 0.5, offset: 1.5 } } });
add('Sqrt', F64, { nodes: [node('Sqrt', ['x'], ['y'])], inputs: { x: { dims: [2, 3], scale: 0.5, offset: 2 } } });

// --- activations -------------------------------------------------------------------------
for (const op of ['Relu', 'Tanh', 'Sigmoid', 'Exp', 'Neg', 'Identity']) add(op, F64, { nodes: [node(op, ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 2 } } });
add('Abs', F64, { nodes: [node('Abs', ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 2 } } });
add('Reciprocal', F64, { nodes: [node('Reciprocal', ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 0.5, offset: 1.5 } } });
add('LeakyRelu', F64, { nodes: [node('LeakyRelu', ['x'], ['y'], { alpha: 0.2 })], inputs: { x: { dims: [3, 4], scale: 2 } } });
add('Cast to the same float type, Dropout in inference mode', F64, {
  nodes: [node('Cast', ['x'], ['c'], { to: 11 }), node('Dropout', ['c'], ['y'])],
  inputs: { x: { dims: [3, 4] } },
});
add('Where with a broadcast condition and operands', F64, {
  nodes: [node('Greater', ['x', 'zero'], ['mask']), node('Where', ['mask', 'x', 'b'], ['y'])],
  inputs: { x: { dims: [3, 4], scale: 2 } },
  params: { b: { dims: [4] }, zero: { dims: [], values: [0] } },
  freeze: ['zero'],
});
add('Log', F64, { nodes: [node('Log', ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 0.5, offset: 1.5 } } });
add('Erf', F32, { nodes: [node('Erf', ['x'], ['y'])], inputs: { x: { dims: [3, 4] } } });
add('Gelu (opset 20)', F32, { nodes: [node('Gelu', ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 2 } }, opset: 20 });
add('Gelu written as x·½·(1 + erf(x/√2))', F32, {
  nodes: [
    node('Div', ['x', 'sqrt2'], ['xs'], {}, 'div'),
    node('Erf', ['xs'], ['e'], {}, 'erf'),
    node('Add', ['e', 'one'], ['e1'], {}, 'add'),
    node('Mul', ['x', 'e1'], ['m'], {}, 'mul'),
    node('Mul', ['m', 'half'], ['y'], {}, 'mul2'),
  ],
  inputs: { x: { dims: [3, 4], scale: 2 } },
  params: { sqrt2: { dims: [], values: [Math.SQRT2] }, one: { dims: [], values: [1] }, half: { dims: [], values: [0.5] } },
  freeze: ['sqrt2', 'one', 'half'],
});
add('Gelu tanh approximation (opset 20)', F32, { nodes: [node('Gelu', ['x'], ['y'], { approximate: 'tanh' })], inputs: { x: { dims: [3, 4], scale: 2 } }, opset: 20 });
add('Softplus', F32, { nodes: [node('Softplus', ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 2 } } });
add('Sum and Mean of three broadcast inputs', F32, {
  nodes: [node('Sum', ['a', 'b', 'c'], ['s']), node('Mean', ['s', 'a', 'b'], ['y'])],
  inputs: { a: { dims: [2, 3] }, c: { dims: [1] } },
  params: { b: { dims: [3] } },
});
add('Max and Min with broadcasting', F64, {
  nodes: [node('Max', ['a', 'b'], ['m']), node('Min', ['m', 'c'], ['y'])],
  inputs: { a: { dims: [3, 4], scale: 2 }, c: { dims: [4], scale: 2 } },
  params: { b: { dims: [3, 1], scale: 2 } },
});
add('HardSigmoid', F32, { nodes: [node('HardSigmoid', ['x'], ['y'], { alpha: 0.3, beta: 0.4 })], inputs: { x: { dims: [4, 5], scale: 4 } } });
add('HardSwish', F32, { nodes: [node('HardSwish', ['x'], ['y'])], inputs: { x: { dims: [4, 5], scale: 5 } }, opset: 14 });
add('Clip with min and max', F64, {
  nodes: [node('Clip', ['x', 'lo', 'hi'], ['y'])],
  inputs: { x: { dims: [4, 5], scale: 2 } },
  params: { lo: { dims: [], values: [-0.5] }, hi: { dims: [], values: [0.7] } },
  freeze: ['lo', 'hi'],
});
add('Softmax on the last axis', F64, { nodes: [node('Softmax', ['x'], ['y'])], inputs: { x: { dims: [3, 4], scale: 2 } } });
add('Softmax on axis 1 of a 3-D tensor', F64, { nodes: [node('Softmax', ['x'], ['y'], { axis: 1 })], inputs: { x: { dims: [2, 3, 4], scale: 2 } } });
add('LogSoftmax on axis 0', F64, { nodes: [node('LogSoftmax', ['x'], ['y'], { axis: 0 })], inputs: { x: { dims: [3, 4], scale: 2 } } });

// --- shape ops ---------------------------------------------------------------------------
add('Reshape', F64, { nodes: [node('Reshape', ['x', 'shape'], ['y'])], inputs: { x: { dims: [2, 3, 4] } }, constants: [int64s('shape', [4, -1])] });
add('Flatten at axis 2', F64, { nodes: [node('Flatten', ['x'], ['y'], { axis: 2 })], inputs: { x: { dims: [2, 3, 4] } } });
add('Squeeze then Unsqueeze', F64, {
  nodes: [node('Squeeze', ['x', 'ax1'], ['s']), node('Unsqueeze', ['s', 'ax0'], ['y'])],
  inputs: { x: { dims: [2, 1, 4] } },
  constants: [int64s('ax1', [1]), int64s('ax0', [0])],
});
add('Transpose with a permutation', F64, { nodes: [node('Transpose', ['x'], ['y'], { perm: [2, 0, 1] })], inputs: { x: { dims: [2, 3, 4] } } });
add('Transpose by default reverses', F64, { nodes: [node('Transpose', ['x'], ['y'])], inputs: { x: { dims: [2, 3, 4] } } });
add('Expand', F64, { nodes: [node('Expand', ['x', 'shape'], ['y'])], inputs: { x: { dims: [3, 1] } }, constants: [int64s('shape', [2, 3, 4])] });
add('Concat on axis 1', F64, { nodes: [node('Concat', ['a', 'b', 'c'], ['y'], { axis: 1 })], inputs: { a: { dims: [2, 1] }, c: { dims: [2, 3] } }, params: { b: { dims: [2, 2] } } });
add('Split with sizes, one output unused', F64, {
  nodes: [node('Split', ['x', 'sizes'], ['s0', 's1'], { axis: 1 }), node('Mul', ['s1', 's1'], ['y'])],
  inputs: { x: { dims: [2, 5] } },
  constants: [int64s('sizes', [2, 3])],
});
add('Split into equal parts, both used', F64, {
  nodes: [node('Split', ['x'], ['s0', 's1'], { axis: 0 }), node('Mul', ['s0', 's1'], ['y'])],
  inputs: { x: { dims: [4, 3] } },
});
add('Slice with steps', F64, {
  nodes: [node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])],
  inputs: { x: { dims: [4, 6] } },
  constants: [int64s('st', [1, 0]), int64s('en', [3, 100]), int64s('ax', [0, 1]), int64s('sp', [1, 2])],
});
add('Slice with a negative step', F64, {
  nodes: [node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])],
  inputs: { x: { dims: [4, 6] } },
  constants: [int64s('st', [-1]), int64s('en', [-100]), int64s('ax', [1]), int64s('sp', [-2])],
});
add('Gather embedding rows with repeated indices', F64, {
  nodes: [node('Gather', ['E', 'ids'], ['y'])],
  params: { E: { dims: [5, 3] } },
  constants: [int64s('ids', [1, 3, 1, 0, 4, 1], [2, 3])],
});
add('Gather embedding rows at opset 13 (one-hot path)', F64, {
  nodes: [node('Gather', ['E', 'ids'], ['y'])],
  params: { E: { dims: [5, 3] } },
  constants: [int64s('ids', [1, 3, 1, 0, -1, 1], [2, 3])],
  opset: 13,
});
add('Gather on axis 1', F64, { nodes: [node('Gather', ['x', 'ids'], ['y'], { axis: 1 })], inputs: { x: { dims: [3, 4] } }, constants: [int64s('ids', [3, 0, 3])] });

// --- reductions and normalisation -------------------------------------------------------
add('ReduceSum over axis 1 without keepdims', F64, { nodes: [node('ReduceSum', ['x', 'axes'], ['y'], { keepdims: 0 })], inputs: { x: { dims: [2, 3, 4] } }, constants: [int64s('axes', [1])] });
add('ReduceSum over all axes', F64, { nodes: [node('ReduceSum', ['x'], ['y'])], inputs: { x: { dims: [2, 3] } } });
add('ReduceMean with axes attribute (opset 17)', F64, { nodes: [node('ReduceMean', ['x'], ['y'], { axes: [0, -1] })], inputs: { x: { dims: [2, 3, 4] } } });
add('ReduceMean with axes input (opset 18)', F64, { nodes: [node('ReduceMean', ['x', 'axes'], ['y'], { keepdims: 0 })], inputs: { x: { dims: [2, 3, 4] } }, constants: [int64s('axes', [-1])], opset: 18 });
add('LayerNormalization on the last axis', F64, {
  nodes: [node('LayerNormalization', ['x', 'g', 'b'], ['y'], { axis: -1, epsilon: 1e-5 })],
  inputs: { x: { dims: [2, 3, 4] } },
  params: { g: { dims: [4], offset: 1 }, b: { dims: [4] } },
});
add('LayerNormalization over the last two axes', F64, {
  nodes: [node('LayerNormalization', ['x', 'g', 'b'], ['y'], { axis: 1 })],
  inputs: { x: { dims: [2, 3, 4] } },
  params: { g: { dims: [3, 4], offset: 1 }, b: { dims: [3, 4] } },
});
add('BatchNormalization with inference statistics', F64, {
  nodes: [node('BatchNormalization', ['x', 's', 'b', 'mean', 'var'], ['y'], { epsilon: 1e-3 })],
  inputs: { x: { dims: [2, 3, 4, 4] } },
  params: { s: { dims: [3], offset: 1 }, b: { dims: [3] }, mean: { dims: [3] }, var: { dims: [3], scale: 0.3, offset: 1 } },
  freeze: ['mean', 'var'],
});
add('GlobalAveragePool', F32, { nodes: [node('GlobalAveragePool', ['x'], ['y'])], inputs: { x: { dims: [2, 3, 4, 5] } } });

// --- convolution and pooling --------------------------------------------------------------
add('Conv with strides and pads, with bias', F32, {
  nodes: [node('Conv', ['x', 'W', 'B'], ['y'], { strides: [2, 2], pads: [1, 1, 1, 1] })],
  inputs: { x: { dims: [2, 4, 7, 7] } },
  params: { W: { dims: [6, 4, 3, 3] }, B: { dims: [6] } },
});
add('Conv with groups and dilations', F32, {
  nodes: [node('Conv', ['x', 'W'], ['y'], { group: 2, dilations: [2, 1], pads: [2, 1, 2, 0] })],
  inputs: { x: { dims: [2, 4, 6, 5] } },
  params: { W: { dims: [6, 2, 3, 2] } },
});
add('Conv depthwise with auto_pad SAME_UPPER and stride 2', F32, {
  nodes: [node('Conv', ['x', 'W'], ['y'], { group: 3, strides: [2, 2], auto_pad: 'SAME_UPPER' })],
  inputs: { x: { dims: [1, 3, 6, 5] } },
  params: { W: { dims: [3, 1, 3, 3] } },
});
add('Conv 1-D', F32, { nodes: [node('Conv', ['x', 'W'], ['y'], { strides: [3] })], inputs: { x: { dims: [2, 2, 11] } }, params: { W: { dims: [3, 2, 4] } } });
add('ConvTranspose with strides, pads and output_padding, with bias', F32, {
  nodes: [node('ConvTranspose', ['x', 'W', 'B'], ['y'], { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] })],
  inputs: { x: { dims: [1, 4, 4, 4] } },
  params: { W: { dims: [4, 3, 3, 3] }, B: { dims: [3] } },
});
add('ConvTranspose with groups', F32, {
  nodes: [node('ConvTranspose', ['x', 'W'], ['y'], { group: 2, strides: [2, 1] })],
  inputs: { x: { dims: [2, 4, 3, 3] } },
  params: { W: { dims: [4, 2, 2, 3] } },
});
add('MaxPool without overlap', F64, { nodes: [node('MaxPool', ['x'], ['y'], { kernel_shape: [2, 2], strides: [2, 2] })], inputs: { x: { dims: [2, 3, 4, 4] } } });
add('MaxPool with overlapping windows and pads', F64, { nodes: [node('MaxPool', ['x'], ['y'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] })], inputs: { x: { dims: [1, 2, 5, 5] } } });
add('AveragePool with pads, padding not counted', F32, { nodes: [node('AveragePool', ['x'], ['y'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] })], inputs: { x: { dims: [1, 2, 6, 5] } } });
add('AveragePool with pads counted', F32, { nodes: [node('AveragePool', ['x'], ['y'], { kernel_shape: [2, 3], strides: [1, 2], pads: [0, 1, 1, 1], count_include_pad: 1 })], inputs: { x: { dims: [1, 2, 5, 5] } } });
add('Resize nearest ×2', F32, {
  nodes: [node('Resize', ['x', '', 'scales'], ['y'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' })],
  inputs: { x: { dims: [1, 2, 3, 3] } },
  constants: [{ name: 'scales', dims: [4], dataType: 1, floatData: [1, 1, 2, 2] }],
});

// --- opset 11 forms (axes as attributes, Split sizes as attribute, Softmax over the last axis) ---
add('opset 11: Softmax, Concat, ReduceSum and Unsqueeze with attributes', F64, {
  nodes: [
    node('Softmax', ['x'], ['s'], { axis: 1 }, 'softmax'),
    node('Concat', ['s', 'x'], ['c'], { axis: 1 }, 'concat'),
    node('ReduceSum', ['c'], ['r'], { axes: [1], keepdims: 0 }, 'sum'),
    node('Unsqueeze', ['r'], ['u'], { axes: [1] }, 'unsqueeze'),
    node('Mul', ['u', 'x'], ['y'], {}, 'mul'),
  ],
  inputs: { x: { dims: [3, 4], scale: 2 } },
  opset: 11,
});
add('opset 11: Clip', F32, {
  nodes: [node('Clip', ['x', 'lo', 'hi'], ['y'])],
  inputs: { x: { dims: [4, 5], scale: 2 } },
  params: { lo: { dims: [], values: [-0.5] }, hi: { dims: [], values: [0.7] } },
  freeze: ['lo', 'hi'],
  opset: 11,
});

describe('autodiff: each operator’s gradient matches central finite differences', () => {
  test('every supported operator has a case here', () => {
    const covered = new Set(Object.values(cases).flatMap((c) => c.nodes.map((n) => n.opType!)));
    const missing = SUPPORTED_OPS.filter((op) => !covered.has(op));
    assert.deepEqual(missing, [], `operators without a finite-difference case: ${missing.join(', ')}`);
  });

  for (const [name, c] of Object.entries(cases)) {
    test(name, async (t) => {
      const r = await checkGradients(c);
      t.diagnostic(`${r.checked} elements, worst error ${r.worst.toExponential(2)}`);
    });
  }
});
