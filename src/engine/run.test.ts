import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineSink, defineSource, defineStep, mapRecords } from '../sdk/define.ts';
import { SluiceError } from '../sdk/errors.ts';
import { waitUntil } from '../sdk/testing.ts';
import type {
  RecordValue,
  SinkDefinition,
  SluiceRecord,
  SourceDefinition,
  StepDefinition,
} from '../sdk/types.ts';
import { settingsSchema } from '../spec/schema.ts';
import type { ComponentUse, Pipeline, SinkUse } from '../spec/validate.ts';
import type { ErrorRecordValue } from './error-channel.ts';
import { CheckedRun } from './test-util.ts';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** A counting source: `total` records {n}, or endless when total is Infinity; optional delay per batch. */
function countingSource(
  total: number,
  opts: { delayMs?: number; produced?: { n: number } } = {},
): SourceDefinition {
  return defineSource({
    name: 'count',
    summary: 'test',
    config: z.object({}),
    examples: [],
    bounded: () => Number.isFinite(total),
    create: (_c, ctx) => ({
      async *read() {
        let n = 0;
        while (n < total && !ctx.signal.aborted) {
          const records: SluiceRecord[] = [];
          for (let i = 0; i < ctx.batchSize && n < total; i++) {
            n++;
            records.push({ value: { n }, meta: { position: { partition: 'p', offset: n } } });
          }
          if (opts.produced) opts.produced.n = n;
          if (opts.delayMs) await sleep(opts.delayMs);
          yield { records };
        }
      },
      progress: () => (Number.isFinite(total) ? { recordsTotal: total } : {}),
      async close() {},
    }),
  }) as SourceDefinition;
}

interface MemorySink {
  def: SinkDefinition;
  written: RecordValue[];
  committed: RecordValue[];
  calls: string[];
}

/** A sink that stages writes and moves them to `committed` on commit/close; abort drops staged. */
function memorySink(behaviour: { writeDelayMs?: number; failWrites?: SluiceError[] } = {}): MemorySink {
  const state: MemorySink = {
    def: undefined as unknown as SinkDefinition,
    written: [],
    committed: [],
    calls: [],
  };
  let staged: RecordValue[] = [];
  state.def = defineSink({
    name: 'memory',
    summary: 'test',
    config: z.object({}),
    examples: [],
    create: () => ({
      async write(batch) {
        state.calls.push('write');
        if (behaviour.writeDelayMs) await sleep(behaviour.writeDelayMs);
        const failure = behaviour.failWrites?.shift();
        if (failure) throw failure;
        for (const r of batch) {
          if (r.value.reject)
            return { rejected: [{ record: r, error: new SluiceError('SLUICE_SINK_REJECTED', 'no') }] };
        }
        staged.push(...batch.map((r) => r.value));
        state.written.push(...batch.map((r) => r.value));
        return undefined;
      },
      async commit() {
        state.calls.push('commit');
        state.committed.push(...staged);
        staged = [];
      },
      async close() {
        state.calls.push('close');
        state.committed.push(...staged);
        staged = [];
      },
      async abort() {
        state.calls.push('abort');
        staged = [];
      },
    }),
  }) as SinkDefinition;
  return state;
}

function step(name: string, fn: (r: SluiceRecord) => SluiceRecord | null): StepDefinition {
  return defineStep({
    name,
    summary: 'test',
    config: z.object({}),
    examples: [],
    create: () => mapRecords(fn),
  }) as StepDefinition;
}

function use<D extends SourceDefinition | StepDefinition | SinkDefinition>(
  def: D,
  name = def.name,
): ComponentUse<D> {
  return { def, component: def.name, name, config: {}, path: [] };
}

function pipeline(parts: {
  source: SourceDefinition;
  steps?: StepDefinition[];
  sinks: (SinkUse | SinkDefinition)[];
  errors: SinkDefinition;
  settings?: Record<string, unknown>;
}): Pipeline {
  return {
    file: 'test.yaml',
    baseDir: process.cwd(),
    metadata: { name: 'test' },
    checks: [],
    source: use(parts.source),
    steps: (parts.steps ?? []).map((s, i) => use(s, `${s.name}${i}`)),
    sinks: parts.sinks.map((s, i) => ('def' in s ? s : use(s, `sink${i}`))),
    errors: use(parts.errors, 'errors'),
    settings: settingsSchema.parse(parts.settings ?? {}),
    bounded: true,
  };
}

function runOf(p: Pipeline) {
  return new CheckedRun({ pipeline: p, runId: 'r1', runDir: '/nonexistent', logger: silent });
}

describe('PipelineRun', () => {
  it('counts every record: read = written + filtered + failed', async () => {
    const sink = memorySink();
    const errors = memorySink();
    const p = pipeline({
      source: countingSource(1000),
      steps: [
        step('odd', (r) => ((r.value.n as number) % 2 === 0 ? null : r)),
        step('boom', (r) => {
          if ((r.value.n as number) % 100 === 1) throw new Error('bad record');
          return r;
        }),
      ],
      sinks: [sink.def],
      errors: errors.def,
      settings: { batch_size: 64 },
    });
    const summary = await runOf(p).run();
    assert.equal(summary.status, 'succeeded');
    assert.equal(summary.records.read, 1000);
    assert.equal(summary.records.filtered, 500);
    assert.equal(summary.records.failed, 10);
    assert.equal(summary.records.written, 490);
    assert.equal(sink.committed.length, 490);
    const { read, written, filtered, failed } = summary.records;
    assert.equal(read, written + filtered + failed);
    const boom = summary.operators.find((o) => o.name === 'boom1');
    assert.deepEqual([boom?.in, boom?.out, boom?.failed, boom?.filtered], [500, 490, 10, 0]);
    assert.equal(summary.positions.p, 1000, 'final position committed');
    const first = errors.committed[0] as unknown as ErrorRecordValue;
    assert.equal(first.code, 'SLUICE_STEP_FAILED');
    assert.equal(first.operator, 'boom1');
    assert.equal(first.stage, 'step');
    assert.deepEqual(first.record, { n: 1 });
    assert.deepEqual(first.position, { partition: 'p', offset: 1 });
    assert.equal(first.message, 'bad record');
  });

  it('applies backpressure: a slow sink holds the source back to the queue bound', async () => {
    const produced = { n: 0 };
    let maxLead = 0;
    const sink = memorySink({ writeDelayMs: 5 });
    const slowWatcher = step('watch', (r) => {
      maxLead = Math.max(maxLead, produced.n - (r.value.n as number));
      return r;
    });
    const p = pipeline({
      source: countingSource(2000, { produced }),
      steps: [slowWatcher],
      sinks: [sink.def],
      errors: memorySink().def,
      settings: { batch_size: 10, queue_depth: 2 },
    });
    await runOf(p).run();
    assert.equal(sink.committed.length, 2000);
    // Two queues of depth 2, one batch in each operator's hands: the source can never be far ahead.
    assert.ok(maxLead <= 10 * 8, `source ran ${maxLead} records ahead of the step`);
  });

  it('fails the job when max_errors is exceeded, discarding uncommitted output', async () => {
    const sink = memorySink();
    const errors = memorySink();
    const p = pipeline({
      source: countingSource(10_000),
      steps: [
        step('fail', (r) => {
          if ((r.value.n as number) % 10 === 0) throw new Error('every tenth');
          return r;
        }),
      ],
      sinks: [sink.def],
      errors: errors.def,
      settings: { batch_size: 100, error_policy: { max_errors: 25 } },
    });
    const summary = await runOf(p).run();
    assert.equal(summary.status, 'failed');
    assert.equal(summary.failure?.code, 'SLUICE_ERROR_LIMIT');
    assert.match(summary.failure!.message, /max_errors 25 exceeded: \d+ records failed of \d+ read/);
    assert.ok(sink.calls.includes('abort') && !sink.calls.includes('close'), sink.calls.join(','));
    assert.equal(sink.committed.length, 0);
    assert.ok(errors.committed.length >= 26, 'error records are committed even when the job fails');
  });

  it('fails on max_error_rate once min_records have been read', async () => {
    const p = pipeline({
      source: countingSource(5000),
      steps: [
        step('fail', (r) => {
          if ((r.value.n as number) % 4 === 0) throw new Error('a quarter fail');
          return r;
        }),
      ],
      sinks: [memorySink().def],
      errors: memorySink().def,
      settings: { batch_size: 50, error_policy: { max_error_rate: 0.1, min_records: 500 } },
    });
    const summary = await runOf(p).run();
    assert.equal(summary.failure?.code, 'SLUICE_ERROR_LIMIT');
    assert.match(summary.failure!.message, /max_error_rate 0.1 exceeded/);
    assert.ok(summary.records.read < 5000, 'stopped early');
  });

  it('retries retriable sink errors; out of retries, fails the run as retriable and keeps the batch out of the errors sink', async () => {
    const retriable = () => new SluiceError('SLUICE_SINK_IO', 'flaky');
    const flaky = memorySink({ failWrites: [retriable(), retriable()] });
    const p1 = pipeline({
      source: countingSource(30),
      sinks: [flaky.def],
      errors: memorySink().def,
      settings: { batch_size: 10, sink_retry: { attempts: 3, initial_backoff: '1ms' } },
    });
    const ok = await runOf(p1).run();
    assert.equal(ok.status, 'succeeded');
    assert.equal(flaky.committed.length, 30);

    const broken = memorySink({ failWrites: [retriable(), retriable(), retriable()] });
    const errors = memorySink();
    const p2 = pipeline({
      source: countingSource(30),
      sinks: [broken.def],
      errors: errors.def,
      settings: { batch_size: 10, sink_retry: { attempts: 3, initial_backoff: '1ms' } },
    });
    const summary = await runOf(p2).run();
    assert.equal(summary.status, 'failed');
    assert.deepEqual(summary.failure, { code: 'SLUICE_SINK_IO', message: 'flaky', retriable: true });
    assert.equal(summary.records.failed, 0);
    assert.equal(errors.committed.length, 0, 'good records are not errors');
  });

  it('sends a batch the sink refuses with a non-retriable error to the errors sink, with attempts', async () => {
    const refused = memorySink({
      failWrites: [new SluiceError('SLUICE_SINK_IO', 'no such column', { retriable: false })],
    });
    const errors = memorySink();
    const summary = await runOf(
      pipeline({
        source: countingSource(30),
        sinks: [refused.def],
        errors: errors.def,
        settings: { batch_size: 10 },
      }),
    ).run();
    assert.equal(summary.status, 'succeeded');
    assert.equal(summary.records.failed, 10);
    assert.equal(refused.committed.length, 20);
    const rec = errors.committed[0] as unknown as ErrorRecordValue;
    assert.equal(rec.attempts, 1);
    assert.equal(rec.stage, 'sink');
    assert.equal(rec.code, 'SLUICE_SINK_IO');
  });

  it('routes records to the sinks whose condition accepts them; unmatched ones become errors', async () => {
    const low = memorySink();
    const high = memorySink();
    const errors = memorySink();
    const p = pipeline({
      source: countingSource(100),
      sinks: [
        { ...use(low.def, 'low'), route: 'n <= 40' },
        { ...use(high.def, 'high'), route: 'n > 50' },
      ],
      errors: errors.def,
    });
    const summary = await runOf(p).run();
    assert.equal(low.committed.length, 40);
    assert.equal(high.committed.length, 50);
    assert.equal(errors.committed.length, 10);
    assert.equal((errors.committed[0] as unknown as ErrorRecordValue).code, 'SLUICE_ROUTE_UNMATCHED');
    assert.equal(summary.operators.find((o) => o.kind === 'route')?.failed, 10);
  });

  it('rejects a record a route condition fails on, without failing the batch or half-delivering it', async () => {
    const narrow = memorySink();
    const wide = memorySink();
    const errors = memorySink();
    const p = pipeline({
      source: countingSource(100),
      sinks: [
        // fails for n < 50: 'bad' does not convert to INTEGER
        {
          ...use(narrow.def, 'narrow'),
          route: "CAST(CASE WHEN n < 50 THEN 'bad' ELSE CAST(n AS VARCHAR) END AS INTEGER) < 60",
        },
        { ...use(wide.def, 'wide'), route: 'n >= 40' },
      ],
      errors: errors.def,
    });
    const summary = await runOf(p).run();
    assert.equal(summary.status, 'succeeded', JSON.stringify(summary.failure));
    assert.deepEqual(
      narrow.committed.map((v) => v.n),
      [50, 51, 52, 53, 54, 55, 56, 57, 58, 59],
    );
    // n 1..100; n 40..49 pass the wide route but failed the narrow one: they go to no sink
    assert.equal(wide.committed.length, 51);
    assert.equal(errors.committed.length, 49);
    const rec = errors.committed.find(
      (e) => (e.record as { n: number }).n === 45,
    ) as unknown as ErrorRecordValue;
    assert.equal(rec.code, 'SLUICE_EXPR_EVAL');
    assert.equal(rec.stage, 'route');
    assert.equal(rec.details?.sink, 'narrow');
    assert.match(rec.message, /route of sink narrow: .*'bad'.*INTEGER/);
    assert.equal(summary.operators.find((o) => o.kind === 'route')?.failed, 49);
  });

  it('a step that holds records back emits them at the end, in the batches its finish() yields', async () => {
    const sink = memorySink();
    const reverse = defineStep({
      name: 'reverse',
      summary: 'test',
      config: z.object({}),
      examples: [],
      create: () => {
        const held: SluiceRecord[] = [];
        return {
          process(batch) {
            held.push(...batch);
            return { records: [] };
          },
          async *finish() {
            held.reverse();
            for (let i = 0; i < held.length; i += 7) yield { records: held.slice(i, i + 7) };
          },
        };
      },
    });
    const summary = await runOf(
      pipeline({ source: countingSource(30), steps: [reverse], sinks: [sink.def], errors: memorySink().def }),
    ).run();
    assert.deepEqual(
      sink.committed.map((v) => v.n),
      Array.from({ length: 30 }, (_, i) => 30 - i),
    );
    // 30 records in batches of at most 7
    assert.equal(sink.calls.filter((c) => c === 'write').length, 5);
    const step = summary.operators.find((o) => o.kind === 'step')!;
    assert.deepEqual([step.in, step.out, step.filtered], [30, 30, 0]);
  });

  it('stop() drains and commits what was read, and reports how far it got', async () => {
    const sink = memorySink();
    const p = pipeline({
      source: countingSource(Number.POSITIVE_INFINITY, { delayMs: 2 }),
      sinks: [sink.def],
      errors: memorySink().def,
      settings: { batch_size: 10 },
    });
    const run = runOf(p);
    const done = run.run();
    await waitUntil('a batch written', () => sink.written.length > 0);
    run.stop();
    const summary = await done;
    assert.equal(summary.status, 'interrupted');
    assert.equal(summary.failure, null);
    assert.ok(summary.records.read > 0);
    assert.equal(sink.committed.length, summary.records.read, 'everything read was committed');
    assert.equal(summary.positions.p, summary.records.read);
    assert.ok(sink.calls.includes('close') && !sink.calls.includes('abort'));
  });

  it('abort() stops at once and discards uncommitted output', async () => {
    const sink = memorySink({ writeDelayMs: 20 });
    const p = pipeline({
      source: countingSource(Number.POSITIVE_INFINITY),
      sinks: [sink.def],
      errors: memorySink().def,
      settings: { batch_size: 10 },
    });
    const run = runOf(p);
    const done = run.run();
    await waitUntil('a batch written', () => sink.written.length > 0);
    run.abort();
    const summary = await done;
    assert.equal(summary.status, 'interrupted');
    assert.equal(summary.failure?.code, 'SLUICE_INTERRUPTED');
    assert.ok(sink.calls.includes('abort'));
    assert.equal(sink.committed.length, 0);
  });

  it('commits sinks at checkpoint barriers with the positions read before them', async () => {
    const sink = memorySink();
    const p = pipeline({
      source: countingSource(200, { delayMs: 3 }),
      sinks: [sink.def],
      errors: memorySink().def,
      settings: { batch_size: 10, checkpoint_interval: '10ms' },
    });
    const summary = await runOf(p).run();
    assert.ok(summary.checkpoints.count >= 2, `checkpoints: ${summary.checkpoints.count}`);
    assert.ok(sink.calls.indexOf('commit') < sink.calls.lastIndexOf('write'), 'commits happen mid-run');
    assert.equal(sink.committed.length, 200);
  });

  it('fails the job when a source throws, naming the error', async () => {
    const broken = defineSource({
      name: 'broken',
      summary: 'test',
      config: z.object({}),
      examples: [],
      bounded: () => true,
      create: () => ({
        // biome-ignore lint/correctness/useYield: the failure is the point
        async *read() {
          throw new SluiceError('SLUICE_SOURCE_IO', 'disk on fire');
        },
        async close() {},
      }),
    }) as SourceDefinition;
    const sink = memorySink();
    const summary = await runOf(
      pipeline({ source: broken, sinks: [sink.def], errors: memorySink().def }),
    ).run();
    assert.equal(summary.status, 'failed');
    assert.deepEqual(summary.failure, { code: 'SLUICE_SOURCE_IO', message: 'disk on fire', retriable: true });
    assert.ok(sink.calls.includes('abort'));
  });

  describe('a step with batches in flight (inFlight)', () => {
    interface IoSeen {
      maxConcurrent: number;
      concurrent: number;
      emittedBatches: number[];
    }

    /**
     * A step that waits on I/O: batch k (1-based, by its first record) takes `delay(k)` ms, or
     * until the promise `delay` returns settles (an event, where a test needs an order), and the
     * step notes how many batches it holds at once and which records a checkpoint could see.
     */
    function ioStep(ordered: boolean, delay: (batch: number, seen: IoSeen) => number | Promise<void>) {
      const seen: IoSeen = { maxConcurrent: 0, concurrent: 0, emittedBatches: [] };
      const def = defineStep({
        name: 'io',
        summary: 'test',
        config: z.object({}),
        examples: [],
        create: () => ({
          inFlight: { batches: 4, ordered },
          async process(batch: SluiceRecord[]) {
            const k = Math.ceil((batch[0]!.value.n as number) / 10);
            seen.concurrent++;
            seen.maxConcurrent = Math.max(seen.maxConcurrent, seen.concurrent);
            const wait = delay(k, seen);
            await (typeof wait === 'number' ? sleep(wait) : wait);
            seen.concurrent--;
            seen.emittedBatches.push(k);
            const rejected = batch
              .filter((r) => (r.value.n as number) % 25 === 0)
              .map((record) => ({ record, error: new SluiceError('SLUICE_STEP_FAILED', 'no') }));
            return { records: batch.filter((r) => (r.value.n as number) % 25 !== 0), rejected };
          },
        }),
      }) as StepDefinition;
      return { def, seen };
    }

    it('ordered: runs up to 4 batches at once and emits them in input order; counts stay exact', async () => {
      const sink = memorySink();
      const errors = memorySink();
      // The first four batches end only once the step holds all four; after them, early batches
      // are the slowest: finished later ones must wait for them.
      const io = ioStep(true, (k, seen) =>
        k <= 4 ? waitUntil('four batches in the step', () => seen.maxConcurrent === 4) : k % 4 === 1 ? 40 : 5,
      );
      const summary = await runOf(
        pipeline({
          source: countingSource(200),
          steps: [io.def],
          sinks: [sink.def],
          errors: errors.def,
          settings: { batch_size: 10 },
        }),
      ).run();
      assert.equal(summary.status, 'succeeded');
      assert.equal(io.seen.maxConcurrent, 4, 'four batches were in the step at once');
      const ns = sink.committed.map((v) => v.n as number);
      assert.deepEqual(
        ns,
        Array.from({ length: 200 }, (_, i) => i + 1).filter((n) => n % 25 !== 0),
      );
      assert.equal(errors.committed.length, 8);
      assert.equal(summary.records.written + summary.records.failed, 200);
    });

    it('unordered: a slow batch does not hold back the batches behind it', async () => {
      const sink = memorySink();
      // Batch 1 ends only once a later batch has left the step.
      const io = ioStep(false, (k, seen) =>
        k === 1 ? waitUntil('a later batch done', () => seen.emittedBatches.length > 0) : 5,
      );
      const summary = await runOf(
        pipeline({
          source: countingSource(60),
          steps: [io.def],
          sinks: [sink.def],
          errors: memorySink().def,
          settings: { batch_size: 10 },
        }),
      ).run();
      assert.equal(summary.status, 'succeeded');
      const first = sink.written.findIndex((v) => (v.n as number) <= 10);
      assert.ok(first > 0, `batch 1 was written after later ones (at ${first})`);
      assert.deepEqual(
        sink.committed.map((v) => v.n as number).sort((a, b) => a - b),
        Array.from({ length: 60 }, (_, i) => i + 1).filter((n) => n % 25 !== 0),
      );
    });

    it('a checkpoint never covers a record still in the step', async () => {
      const sink = memorySink();
      const io = ioStep(false, (k) => (k % 3 === 0 ? 30 : 2));
      const seenAtCheckpoint: { position: number; written: number }[] = [];
      const run = new CheckedRun({
        pipeline: pipeline({
          source: countingSource(300, { delayMs: 1 }),
          steps: [io.def],
          sinks: [sink.def],
          errors: memorySink().def,
          settings: { batch_size: 10, checkpoint_interval: '0ms' },
        }),
        runId: 'r1',
        runDir: '/nonexistent',
        logger: silent,
        onCheckpoint: async (positions) => {
          // Every record up to the saved position is in the sink (or was rejected, n % 25 === 0).
          seenAtCheckpoint.push({ position: positions.p ?? 0, written: sink.written.length });
        },
      });
      const summary = await run.run();
      assert.equal(summary.status, 'succeeded');
      assert.ok(seenAtCheckpoint.length > 3, 'several checkpoints');
      for (const { position, written } of seenAtCheckpoint)
        assert.ok(
          written >= position - Math.floor(position / 25),
          `position ${position} but ${written} written`,
        );
    });
  });
});
