import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError } from './errors.ts';
import {
  canonical,
  checkAbortEndsRead,
  checkBatchSizes,
  checkPositionsIncrease,
  checkPositionsPresent,
  checkRecordCount,
  checkRejected,
  checkSameRecords,
  readAll,
  runStep,
  sinkConformance,
  sourceConformance,
  testContext,
} from './testing.ts';
import type {
  ComponentContext,
  RecordValue,
  SinkInstance,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
} from './types.ts';

// ---------------------------------------------------------------- tiny in-memory components

/** Yields `n` records over two partitions, in batches of ctx.batchSize, honouring the signal. */
function memorySource(n: number, ctx: ComponentContext): SourceInstance {
  let closed = false;
  return {
    async *read() {
      let batch: SluiceRecord[] = [];
      for (let i = 0; i < n; i++) {
        if (closed || ctx.signal.aborted) return;
        batch.push({ value: { i }, meta: { position: { partition: `p${i % 2}`, offset: i } } });
        if (batch.length === ctx.batchSize) {
          yield { records: batch };
          batch = [];
        }
      }
      if (batch.length) yield { records: batch };
    },
    async close() {
      closed = true;
    },
  };
}

/** A transactional in-memory sink: writes are staged, commit/close publish, abort drops. */
function memorySink(store: RecordValue[][]): SinkInstance {
  let staged: RecordValue[] = [];
  let done = false;
  const visible: RecordValue[] = [];
  store.push(visible);
  const commit = async () => {
    visible.push(...staged);
    staged = [];
  };
  return {
    async write(batch) {
      const rejected = [];
      for (const record of batch) {
        try {
          staged.push(JSON.parse(JSON.stringify(record.value)));
        } catch (err) {
          rejected.push({ record, error: new SluiceError('SLUICE_SINK_REJECTED', String(err)) });
        }
      }
      return { rejected };
    },
    commit,
    async close() {
      if (done) return;
      done = true;
      await commit();
    },
    async abort() {
      staged = [];
      done = true;
    },
  };
}

// ---------------------------------------------------------------- the kit against good components

sourceConformance('memory source', { create: (ctx) => memorySource(53, ctx), expectedRecords: 53 });

const stores: RecordValue[][] = [];
sinkConformance('memory sink', {
  create: () => memorySink(stores),
  readBack: async () => stores.at(-1) ?? [],
  reset: () => {
    stores.length = 0;
  },
  unencodable: { id: 1n },
});

// ---------------------------------------------------------------- the checks catch broken ones

const rec = (partition: string, offset: number): SluiceRecord => ({
  value: {},
  meta: { position: { partition, offset } },
});

describe('testContext', () => {
  it('gives defaults, a fresh signal each time, and takes overrides', () => {
    const a = testContext();
    const b = testContext({ batchSize: 5, pipelineName: 'p' });
    assert.equal(a.baseDir, process.cwd());
    assert.equal(a.pipelineName, 'test');
    assert.equal(a.runId, 'test-run');
    assert.equal(a.batchSize, 100);
    assert.equal(a.signal.aborted, false);
    assert.notEqual(a.signal, testContext().signal);
    assert.equal(b.batchSize, 5);
    assert.equal(b.pipelineName, 'p');
  });
});

describe('source checks', () => {
  it('checkPositionsIncrease flags offsets that go backwards or repeat, per partition', () => {
    assert.deepEqual(checkPositionsIncrease([rec('a', 1), rec('b', 0), rec('a', 2), rec('b', 5)]), []);
    const problems = checkPositionsIncrease([
      rec('a', 1),
      rec('a', 3),
      rec('a', 2),
      rec('b', 4),
      rec('b', 4),
    ]);
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /offset 2 in partition "a" follows offset 3/);
    assert.match(problems[1]!, /offset 4 in partition "b" follows offset 4/);
  });

  it('checkPositionsPresent flags records without a position', () => {
    const problems = checkPositionsPresent([rec('a', 1), { value: {}, meta: {} }]);
    assert.deepEqual(problems, ['record #1 has no meta.position']);
  });

  it('checkBatchSizes counts records plus rejected input against the batch size', () => {
    const batch = (n: number, r = 0): SourceBatch => ({
      records: Array.from({ length: n }, (_, i) => rec('a', i)),
      rejected: Array.from({ length: r }, () => ({
        raw: 'x',
        error: new SluiceError('SLUICE_DECODE', 'bad'),
      })),
    });
    assert.deepEqual(checkBatchSizes([batch(3), batch(1), batch(0)], 3), []);
    assert.equal(checkBatchSizes([batch(2, 2)], 3).length, 1);
    assert.equal(checkBatchSizes([batch(4)], 3).length, 1);
  });

  it('checkRecordCount compares the records yielded, not rejected input', () => {
    const batches: SourceBatch[] = [
      { records: [rec('a', 1)], rejected: [{ raw: 'x', error: new SluiceError('SLUICE_DECODE', 'x') }] },
    ];
    assert.deepEqual(checkRecordCount(batches, 1), []);
    assert.deepEqual(checkRecordCount(batches, 2), ['expected 2 records, the source yielded 1']);
  });

  it('checkAbortEndsRead passes a source that honours the signal', async () => {
    const controller = new AbortController();
    const source = memorySource(1000, testContext({ batchSize: 10, signal: controller.signal }));
    assert.deepEqual(await checkAbortEndsRead(source, controller), []);
  });

  it('checkAbortEndsRead flags a source that ignores the signal', async () => {
    const controller = new AbortController();
    const source = memorySource(1000, testContext({ batchSize: 10 })); // not given the signal
    const problems = await checkAbortEndsRead(source, controller);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /kept yielding batches/);
  });

  it('checkAbortEndsRead flags a source that hangs after the abort', async () => {
    const controller = new AbortController();
    const hanging: SourceInstance = {
      async *read() {
        yield { records: [rec('a', 1)] };
        await new Promise(() => {}); // never settles
      },
      async close() {},
    };
    const problems = await checkAbortEndsRead(hanging, controller, 50);
    assert.deepEqual(problems, ['read() did not end within 50 ms after the signal aborted']);
  });

  it('readAll gathers every batch', async () => {
    const batches = await readAll(memorySource(25, testContext({ batchSize: 10 })));
    assert.deepEqual(
      batches.map((b) => b.records.length),
      [10, 10, 5],
    );
  });
});

describe('sink checks', () => {
  it('canonical ignores key order but keeps types apart', () => {
    assert.equal(canonical({ a: 1, b: { c: 2, d: 3 } }), canonical({ b: { d: 3, c: 2 }, a: 1 }));
    assert.notEqual(canonical({ a: 1 }), canonical({ a: '1' }));
    const d = new Date('2024-01-01T00:00:00Z');
    assert.notEqual(canonical({ t: d }), canonical({ t: d.toISOString() }));
    assert.notEqual(canonical({ n: 1n }), canonical({ n: '1' }));
    assert.equal(canonical({ a: 1, u: undefined }), canonical({ a: 1 }));
  });

  it('checkSameRecords compares as a multiset', () => {
    const a = { id: 1 };
    const b = { id: 2 };
    assert.deepEqual(checkSameRecords([b, a, a], [a, a, b]), []);
    assert.match(checkSameRecords([a, b], [a, a, b]).join(), /1 written record\(s\) not read back/);
    assert.match(checkSameRecords([a, a, b], [a, b]).join(), /1 record\(s\) read back that were not written/);
    assert.equal(checkSameRecords([{ id: 1, x: 'changed' }], [a]).length, 2);
  });

  it('checkRejected flags a dropped record, an extra rejection and an error without a code', () => {
    const bad = { id: 1n };
    const record = { value: bad, meta: {} };
    const good = { value: { id: 2 }, meta: {} };
    const err = new SluiceError('SLUICE_SINK_REJECTED', 'no bigint');
    assert.deepEqual(checkRejected({ rejected: [{ record, error: err }] }, bad), []);
    assert.match(checkRejected({}, bad).join(), /found it 0 time/);
    assert.match(checkRejected(undefined, bad).join(), /found it 0 time/);
    assert.match(
      checkRejected(
        {
          rejected: [
            { record, error: err },
            { record: good, error: err },
          ],
        },
        bad,
      ).join(),
      /1 other record/,
    );
    const plain = new Error('x') as unknown as SluiceError;
    assert.match(
      checkRejected({ rejected: [{ record, error: plain }] }, bad).join(),
      /no known SluiceError code/,
    );
  });
});

describe('runStep', () => {
  it("runs a step on records: its output, what it filtered and what it rejected with the error's code", async () => {
    const { filterStep } = await import('../steps/filter/definition.ts');
    const run = await runStep(filterStep, { condition: 'CAST(amount AS INTEGER) > 0' }, [
      { id: 1, amount: '5' },
      { id: 2, amount: '0' },
      { id: 3, amount: 'x' },
    ]);
    assert.deepEqual(run.records, [{ id: 1, amount: '5' }]);
    assert.equal(run.filtered, 1);
    assert.deepEqual(
      run.rejected.map((r) => [r.value?.id, r.code]),
      [[3, 'SLUICE_EXPR_EVAL']],
    );
  });

  it('refuses a config its schema or check refuses, naming the step and the field', async () => {
    const { filterStep } = await import('../steps/filter/definition.ts');
    await assert.rejects(
      runStep(filterStep, { condition: 'amount >' }, []),
      /invalid config for step filter: condition: /,
    );
    await assert.rejects(runStep(filterStep, {}, []), /invalid config for step filter: condition/);
  });
});
