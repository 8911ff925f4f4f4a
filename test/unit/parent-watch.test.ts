/**
 * Which folder an orphaned runner may remove (src/runtime/runner/parent-watch.ts): only the
 * private temp folder its parent named, never another folder an environment variable points at.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { privateTempOf, RUNNER_TEMP_ENV, RUNNER_TEMP_PREFIX } from '../../src/runtime/runner/parent-watch';

test('an orphaned runner removes only a private temp folder its parent named', () => {
  const mine = `/var/tmp/${RUNNER_TEMP_PREFIX}aB3xYz`;
  assert.equal(privateTempOf({ [RUNNER_TEMP_ENV]: mine }), mine);
  assert.equal(privateTempOf({}), null);
  assert.equal(privateTempOf({ [RUNNER_TEMP_ENV]: '' }), null);
  for (const other of ['/home/someone', '/', '/tmp', `/tmp/${RUNNER_TEMP_PREFIX}x/..`, `/tmp/not-${RUNNER_TEMP_PREFIX}x`]) {
    assert.equal(privateTempOf({ [RUNNER_TEMP_ENV]: other }), null, other);
  }
});
