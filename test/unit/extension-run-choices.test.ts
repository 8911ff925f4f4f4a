/**
 * The choices of "Profile Model…" that need no VS Code: which device specs the pick offers
 * before and after device discovery, and the progress text with its time left.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deviceChoices, progressMessage, specKinds } from '../../src/extension/run-config';
import type { DiscoveredDevices, KindAvailability } from '../../src/runtime/device/discovery';

/** A discovery result; the device choices read only its per-kind summary. */
function discovered(available: Partial<Record<KindAvailability['kind'], boolean>>): DiscoveredDevices {
  const kinds: KindAvailability[] = (['cpu', 'webgpu', 'cuda'] as const).map((kind) => ({
    kind,
    available: available[kind] ?? false,
    provider: kind,
    detail: `${kind} detail`,
  }));
  return { kinds } as unknown as DiscoveredDevices;
}

const specs = (d: DiscoveredDevices | null, def = 'cpu:2', cores = 2): string[] => deviceChoices(def, cores, d).map((c) => c.value);

describe('device choices', () => {
  it('before discovery offer CPU workers only', () => {
    assert.deepEqual(specs(null), ['cpu:2', 'cpu:1']);
    assert.deepEqual(specs(null, 'cpu:1', 8), ['cpu:1', 'cpu:2', 'cpu:4', 'cpu:8']);
  });

  it('after discovery add the accelerators found, and only those', () => {
    assert.deepEqual(specs(discovered({ cpu: true, webgpu: true })), ['cpu:2', 'cpu:1', 'cpu:1,webgpu:1', 'webgpu:1']);
    assert.deepEqual(specs(discovered({ cpu: true, cuda: true })), ['cpu:2', 'cpu:1', 'cuda:1']);
    assert.deepEqual(specs(discovered({ cpu: true })), ['cpu:2', 'cpu:1']);
  });

  it('leave out a configured default whose devices do not exist here', () => {
    assert.deepEqual(specs(null, 'cpu:1,webgpu:1'), ['cpu:1', 'cpu:2']);
    assert.deepEqual(specs(discovered({ cpu: true }), 'cuda:2'), ['cpu:1', 'cpu:2']);
    const withGpu = deviceChoices('cpu:1, WebGPU:1', 2, discovered({ cpu: true, webgpu: true }));
    assert.equal(withGpu[0]!.value, 'cpu:1, WebGPU:1');
    assert.match(withGpu[0]!.description ?? '', /default/);
  });

  it('name the kinds of a spec', () => {
    assert.deepEqual(specKinds('cpu:1, WebGPU:1'), ['cpu', 'webgpu']);
    assert.deepEqual(specKinds('cuda'), ['cuda']);
  });
});

describe('progress text', () => {
  it('counts steps and adds the time left once known', () => {
    const p = { phase: 'steps', done: 7, total: 20, message: 'measuring' } as const;
    assert.equal(progressMessage(p), 'measuring 7/20');
    assert.equal(progressMessage(p, null), 'measuring 7/20');
    assert.equal(progressMessage(p, 12_400), 'measuring 7/20 · 12 s left');
    assert.equal(progressMessage({ phase: 'load', done: 0, total: 1, message: 'loading model' }, 0), 'loading model');
  });
});
