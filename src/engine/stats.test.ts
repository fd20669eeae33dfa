import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LATENCY_BUCKETS_SECONDS, LatencyHistogram, OperatorStats } from './stats.ts';

describe('LatencyHistogram', () => {
  it('puts a value in the first bucket whose bound is at least the value (bounds are inclusive)', () => {
    const h = new LatencyHistogram();
    h.observe(0); // first bucket
    h.observe(0.0005); // on the first bound: still the first bucket
    h.observe(0.00051); // just above: the second
    h.observe(10); // on the last bound
    h.observe(10.5); // above every bound: the overflow slot
    assert.equal(h.buckets.length, LATENCY_BUCKETS_SECONDS.length + 1);
    assert.equal(h.buckets[0], 2);
    assert.equal(h.buckets[1], 1);
    assert.equal(h.buckets[LATENCY_BUCKETS_SECONDS.length - 1], 1);
    assert.equal(h.buckets[LATENCY_BUCKETS_SECONDS.length], 1);
    assert.equal(
      h.buckets.reduce((a, b) => a + b, 0),
      5,
    );
    assert.equal(h.count, 5);
    assert.ok(Math.abs(h.sum - 20.50101) < 1e-9);
  });

  it('has strictly increasing bounds from half a millisecond to ten seconds', () => {
    assert.equal(LATENCY_BUCKETS_SECONDS[0], 0.0005);
    assert.equal(LATENCY_BUCKETS_SECONDS.at(-1), 10);
    for (let i = 1; i < LATENCY_BUCKETS_SECONDS.length; i++)
      assert.ok(LATENCY_BUCKETS_SECONDS[i]! > LATENCY_BUCKETS_SECONDS[i - 1]!);
  });
});

describe('OperatorStats', () => {
  it('times every counted batch in seconds and keeps the run summary shape', () => {
    const stats = new OperatorStats('shape', 'step', 'sql');
    stats.count(10, 8, 1, 2); // 2 ms
    stats.count(10, 10, 0, 300); // 300 ms
    assert.equal(stats.latency.count, 2);
    assert.equal(stats.latency.count, stats.batches);
    assert.equal(stats.latency.buckets[LATENCY_BUCKETS_SECONDS.indexOf(0.0025)], 1);
    assert.equal(stats.latency.buckets[LATENCY_BUCKETS_SECONDS.indexOf(0.5)], 1);
    assert.ok(Math.abs(stats.latency.sum - 0.302) < 1e-9);
    assert.deepEqual(stats.toJSON(), {
      name: 'shape',
      kind: 'step',
      component: 'sql',
      in: 20,
      out: 18,
      filtered: 1,
      failed: 1,
      time_ms: 302,
    });
  });
});
