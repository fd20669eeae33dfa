import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoundedQueue } from './queue.ts';

describe('BoundedQueue', () => {
  it('makes push wait while full and resume when the consumer takes an item', async () => {
    const q = new BoundedQueue<number>(2);
    await q.push(1);
    await q.push(2);
    let third = false;
    const pending = q.push(3).then(() => {
      third = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(third, false, 'push waits on a full queue');
    const it = q[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { value: 1, done: false });
    await pending;
    assert.equal(third, true);
    assert.equal(q.size, 2);
  });

  it('drains queued items after close, then ends', async () => {
    const q = new BoundedQueue<number>(4);
    await q.push(1);
    await q.push(2);
    q.close();
    const seen: number[] = [];
    for await (const n of q) seen.push(n);
    assert.deepEqual(seen, [1, 2]);
    await assert.rejects(q.push(3), /closed queue/);
  });

  it('fail() wakes a waiting producer and consumer with the reason', async () => {
    const full = new BoundedQueue<number>(1);
    await full.push(1);
    const producer = full.push(2);
    const empty = new BoundedQueue<number>(1);
    const consumer = empty[Symbol.asyncIterator]().next();
    const reason = new Error('stop');
    full.fail(reason);
    empty.fail(reason);
    await assert.rejects(producer, /stop/);
    await assert.rejects(consumer, /stop/);
  });
});
