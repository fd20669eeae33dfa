import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay } from './backoff.ts';

describe('backoffDelay', () => {
  it('doubles from the base and stops at the cap', () => {
    const policy = { baseMs: 100, maxMs: 1000 };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy)),
      [100, 200, 400, 800, 1000, 1000],
    );
  });

  it('full jitter draws below the computed wait', () => {
    const policy = { baseMs: 100, maxMs: 1000, jitter: 'full' as const };
    assert.equal(
      backoffDelay(3, policy, () => 0.5),
      200,
    );
    assert.equal(
      backoffDelay(3, policy, () => 0),
      0,
    );
  });
});
