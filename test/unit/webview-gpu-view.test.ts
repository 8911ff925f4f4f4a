/**
 * The summary panel's GPU line reads `summary.gpuBusy` from a file: what it keeps and what it
 * refuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gpuBusyView } from '../../webview/src/gpu-view';

test("a WebGPU device's busy share is kept with its dispatch and run counts", () => {
  assert.deepEqual(gpuBusyView([{ device: 'webgpu:0', share: 0.42, kernels: 120, runs: 3 }]), [{ device: 'webgpu:0', share: 0.42, kernels: 120, runs: 3 }]);
  // A share above 1 (clock skew between the GPU and host timestamps) shows as fully busy.
  assert.equal(gpuBusyView([{ device: 'webgpu:0', share: 1.3, kernels: 1, runs: 1 }])![0]!.share, 1);
});

test('absent, empty or malformed GPU entries give no line', () => {
  assert.equal(gpuBusyView(undefined), null);
  assert.equal(gpuBusyView([]), null);
  assert.equal(gpuBusyView([{ device: 'webgpu:0', share: 'high' }]), null);
  assert.equal(gpuBusyView([{ share: 0.5 }]), null);
  assert.equal(gpuBusyView([{ device: 'webgpu:0', share: -0.1 }]), null);
  assert.equal(gpuBusyView({ device: 'webgpu:0', share: 0.5 }), null);
});
