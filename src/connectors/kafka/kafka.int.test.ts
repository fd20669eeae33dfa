/**
 * The kafka source and sink against a real broker: `scripts/services/kafka.sh start` (address in
 * SLUICE_TEST_KAFKA_BOOTSTRAP, default 127.0.0.1:59092). Every test makes its own topics and
 * consumer groups, so tests never see each other's messages.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin, Consumer, Producer } from '@platformatic/kafka';
import { PipelineRun } from '../../engine/run.ts';
import { defaultRegistry } from '../../registry.ts';
import type { SluiceError } from '../../sdk/errors.ts';
import {
  checkPositionsIncrease,
  sinkConformance,
  sourceConformance,
  testContext,
} from '../../sdk/testing.ts';
import type { ComponentContext, RecordValue, Rejection, SluiceRecord } from '../../sdk/types.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { type KafkaSource, kafkaSink, kafkaSource } from './index.ts';

const BOOTSTRAP = process.env.SLUICE_TEST_KAFKA_BOOTSTRAP ?? '127.0.0.1:59092';
const silent = { debug() {}, info() {}, warn() {}, error() {} };

const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

const admin = new Admin({ clientId: 'sluice-test', bootstrapBrokers: [BOOTSTRAP] });
const created: string[] = [];
after(async () => {
  if (created.length) await admin.deleteTopics({ topics: created }).catch(() => {});
  await admin.close();
});

async function createTopics(topics: string[], partitions: number): Promise<void> {
  await admin.createTopics({ topics, partitions, replicas: 1 });
  created.push(...topics);
  // A produce racing the leader elections of a new topic fails for some partitions, and the
  // client then sends the whole request again: wait until every partition has its leader.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const metadata = await admin.metadata({ topics, forceUpdate: true });
    const ready = topics.every((t) => {
      const parts = metadata.topics.get(t)?.partitions ?? [];
      return parts.length === partitions && parts.every((p) => p.leader >= 0);
    });
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`topics ${topics.join(', ')} have no leaders after 10s`);
    await sleep(50);
  }
}

async function createTopic(partitions = 3, prefix = 'sluice-t'): Promise<string> {
  const topic = unique(prefix);
  await createTopics([topic], partitions);
  return topic;
}

interface RawMessage {
  value: string | null;
  key?: string;
  partition?: number;
  timestamp?: number;
  headers?: Record<string, string>;
}

/** Produces messages as they are, bytes and all, with the client itself (not the sink under test). */
async function produceRaw(topic: string, messages: RawMessage[]): Promise<void> {
  // Idempotent: a retried request cannot write its messages twice.
  const producer = new Producer({ clientId: 'sluice-test', bootstrapBrokers: [BOOTSTRAP], idempotent: true });
  try {
    await producer.send({
      messages: messages.map((m) => ({
        topic,
        ...(m.value === null ? {} : { value: Buffer.from(m.value) }),
        ...(m.key === undefined ? {} : { key: Buffer.from(m.key) }),
        ...(m.partition === undefined ? {} : { partition: m.partition }),
        ...(m.timestamp === undefined ? {} : { timestamp: BigInt(m.timestamp) }),
        headers: new Map(Object.entries(m.headers ?? {}).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
      })),
    });
  } finally {
    await producer.close();
  }
}

async function sourceFor(
  config: Record<string, unknown>,
  ctx: Partial<ComponentContext> = {},
): Promise<KafkaSource> {
  const cfg = kafkaSource.config.parse({
    bootstrap_servers: BOOTSTRAP,
    group: unique('sluice-g'),
    stop_at_end: true,
    ...config,
  });
  return (await kafkaSource.create(cfg, testContext(ctx))) as KafkaSource;
}

async function readAllOf(
  pending: KafkaSource | Promise<KafkaSource>,
  { close = true } = {},
): Promise<{ records: SluiceRecord[]; rejected: Rejection[]; batches: number }> {
  const source = await pending;
  const records: SluiceRecord[] = [];
  const rejected: Rejection[] = [];
  let batches = 0;
  try {
    for await (const batch of source.read()) {
      batches++;
      records.push(...batch.records);
      rejected.push(...(batch.rejected ?? []));
    }
  } finally {
    if (close) await source.close();
  }
  return { records, rejected, batches };
}

async function writeWithSink(config: Record<string, unknown>, records: SluiceRecord[]): Promise<Rejection[]> {
  const sink = await kafkaSink.create(
    kafkaSink.config.parse({ bootstrap_servers: BOOTSTRAP, ...config }),
    testContext(),
  );
  const rejected: Rejection[] = [];
  try {
    for (let i = 0; i < records.length; i += 200) {
      const result = await sink.write(records.slice(i, i + 200));
      rejected.push(...(result?.rejected ?? []));
    }
  } finally {
    await sink.close();
  }
  return rejected;
}

async function committedOffsets(group: string, topic: string, partitions: number): Promise<bigint[]> {
  const consumer = new Consumer({ clientId: 'sluice-test', groupId: group, bootstrapBrokers: [BOOTSTRAP] });
  try {
    const offsets = await consumer.listCommittedOffsets({
      topics: [{ topic, partitions: Array.from({ length: partitions }, (_, i) => i) }],
    });
    return offsets.get(topic) ?? [];
  } finally {
    await consumer.close();
  }
}

const values = (records: SluiceRecord[]) => records.map((r) => r.value);
const ids = (records: SluiceRecord[]) => records.map((r) => r.value.id as number).sort((a, b) => a - b);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('kafka sink → kafka source', () => {
  it('reads back exactly the records written, with keys, headers and positions', async () => {
    const topic = await createTopic(3);
    const n = 1000;
    const records = range(1, n).map((id) => ({ value: { id, name: `n${id}`, tags: [id % 2] }, meta: {} }));
    const rejected = await writeWithSink(
      { topic, key: "'k' || (id % 7)", headers: { parity: "CASE WHEN id % 2 = 0 THEN 'even' END" } },
      records,
    );
    assert.deepEqual(rejected, []);

    const source = await sourceFor({ topics: [topic], fields: { key: 'kafka_key', offset: 'kafka_offset' } });
    assert.equal(
      kafkaSource.bounded(
        kafkaSource.config.parse({ bootstrap_servers: BOOTSTRAP, topics: [topic], stop_at_end: true }),
      ),
      true,
    );
    const got = await readAllOf(source);
    assert.deepEqual(got.rejected, []);
    assert.deepEqual(ids(got.records), range(1, n), 'every record exactly once');
    assert.deepEqual(checkPositionsIncrease(got.records), []);
    assert.deepEqual(source.progress(), { recordsTotal: n });
    const partitions = new Set<string>();
    for (const r of got.records) {
      const id = r.value.id as number;
      assert.equal(r.meta.key, `k${id % 7}`);
      assert.equal(r.value.kafka_key, `k${id % 7}`);
      assert.deepEqual(
        r.meta.headers,
        id % 2 === 0 ? { parity: 'even' } : {},
        'a NULL header is not written',
      );
      assert.equal(r.value.kafka_offset, r.meta.position?.offset);
      assert.equal(r.value.name, `n${id}`);
      assert.equal(typeof r.meta.eventTime, 'number');
      partitions.add(r.meta.position!.partition);
      // One key, one partition: the producer hashes keys.
    }
    assert.ok(partitions.size > 1, `spread over the partitions, got ${[...partitions]}`);
    const partitionOfKey = new Map<unknown, string>();
    for (const r of got.records) {
      const p = partitionOfKey.get(r.meta.key) ?? r.meta.position!.partition;
      assert.equal(r.meta.position!.partition, p);
      partitionOfKey.set(r.meta.key, p);
    }
    assert.match([...partitions][0]!, new RegExp(`^${topic}/[0-2]$`));
  });

  it('a topic-to-topic copy keeps keys, headers and timestamps (forward_meta)', async () => {
    const from = await createTopic(2);
    const to = await createTopic(2);
    await produceRaw(from, [
      { value: '{"a":1}', key: 'x', headers: { trace: 't1' }, timestamp: Date.UTC(2024, 0, 1) },
      { value: '{"a":2}', key: 'y', headers: { trace: 't2', other: 'o' }, timestamp: Date.UTC(2024, 0, 2) },
      { value: '{"a":3}', timestamp: Date.UTC(2024, 0, 3) },
    ]);
    const first = await readAllOf(sourceFor({ topics: [from] }));
    assert.equal(first.records.length, 3);
    await writeWithSink({ topic: to, headers: { copied: "'yes'" } }, first.records);
    const copy = await readAllOf(sourceFor({ topics: [to], fields: { timestamp: 'ts' } }));
    const byA = new Map(copy.records.map((r) => [r.value.a, r]));
    assert.equal(byA.get(1)?.meta.key, 'x');
    assert.deepEqual(byA.get(1)?.meta.headers, { trace: 't1', copied: 'yes' });
    assert.deepEqual(byA.get(2)?.meta.headers, { trace: 't2', other: 'o', copied: 'yes' });
    assert.equal(byA.get(3)?.meta.key, undefined);
    assert.equal(byA.get(2)?.meta.eventTime, Date.UTC(2024, 0, 2));
    assert.deepEqual(byA.get(3)?.value.ts, new Date(Date.UTC(2024, 0, 3)));
  });

  it('writes to a topic that does not exist yet when the broker creates topics on first use', async () => {
    const topic = unique('sluice-auto');
    created.push(topic);
    const rejected = await writeWithSink({ topic }, [
      { value: { id: 1 }, meta: {} },
      { value: { id: 2 }, meta: {} },
    ]);
    assert.deepEqual(rejected, []);
    assert.deepEqual(ids((await readAllOf(sourceFor({ topics: [topic] }))).records), [1, 2]);
  });

  it('rejects, without sending, a record too large or whose key expression fails, and writes the rest', async () => {
    const topic = await createTopic(1);
    const rejected = await writeWithSink({ topic, key: 'CAST(code AS INTEGER)', max_message_bytes: 200 }, [
      { value: { id: 1, code: '1' }, meta: {} },
      { value: { id: 2, code: 'not a number' }, meta: {} },
      { value: { id: 3, code: '3', blob: 'x'.repeat(500) }, meta: {} },
      { value: { id: 4, code: '4' }, meta: {} },
    ]);
    assert.deepEqual(
      rejected.map((r) => [r.record?.value.id, r.error.code]),
      [
        [2, 'SLUICE_EXPR_EVAL'],
        [3, 'SLUICE_SINK_REJECTED'],
      ],
    );
    const got = await readAllOf(sourceFor({ topics: [topic] }));
    assert.deepEqual(ids(got.records), [1, 4]);
    assert.deepEqual(
      got.records.map((r) => r.meta.key),
      ['1', '4'],
    );
  });
});

describe('kafka source', () => {
  it('sends a value that is not a JSON object to rejections with its topic, partition and offset', async () => {
    const topic = await createTopic(1);
    await produceRaw(topic, [
      { value: '{"id":1}' },
      { value: 'not json', key: 'bad' },
      { value: '[1,2]' },
      { value: null, key: 'tombstone' },
      { value: '{"id":5}' },
    ]);
    const got = await readAllOf(sourceFor({ topics: [topic] }), {});
    assert.deepEqual(values(got.records), [{ id: 1 }, {}, { id: 5 }]);
    assert.equal(got.records[1]?.meta.key, 'tombstone');
    assert.deepEqual(
      got.rejected.map((r) => [r.error.code, r.position, r.raw, (r.error as SluiceError).details]),
      [
        [
          'SLUICE_DECODE',
          { partition: `${topic}/0`, offset: 1 },
          'not json',
          { topic, partition: 0, offset: 1, key: 'bad' },
        ],
        [
          'SLUICE_DECODE',
          { partition: `${topic}/0`, offset: 2 },
          '[1,2]',
          { topic, partition: 0, offset: 2, key: null },
        ],
      ],
    );
    assert.match(got.rejected[0]!.error.message, new RegExp(`^${topic}/0@1: invalid JSON`));
    assert.match(got.rejected[1]!.error.message, /expected a JSON object, found an array/);
  });

  it('decodes string and bytes values into value_field', async () => {
    const topic = await createTopic(1);
    await produceRaw(topic, [{ value: 'héllo' }, { value: null }]);
    const text = await readAllOf(sourceFor({ topics: [topic], format: 'string', value_field: 'line' }));
    assert.deepEqual(values(text.records), [{ line: 'héllo' }, { line: null }]);
    const bytes = await readAllOf(sourceFor({ topics: [topic], format: 'bytes' }));
    assert.deepEqual(values(bytes.records), [
      { value: Buffer.from('héllo').toString('base64') },
      { value: null },
    ]);
  });

  it('starts a new group at start_from: a timestamp, or latest', async () => {
    const topic = await createTopic(2);
    const t0 = Date.UTC(2024, 4, 1);
    await produceRaw(
      topic,
      range(0, 5).map((i) => ({
        value: JSON.stringify({ id: i }),
        partition: i % 2,
        timestamp: t0 + i * 60_000,
      })),
    );
    const fromTs = await readAllOf(
      sourceFor({ topics: [topic], start_from: new Date(t0 + 2 * 60_000).toISOString() }),
    );
    assert.deepEqual(ids(fromTs.records), [2, 3, 4, 5]);
    const future = await readAllOf(sourceFor({ topics: [topic], start_from: '2999-01-01' }));
    assert.deepEqual(future.records, []);
    const latest = await readAllOf(sourceFor({ topics: [topic], start_from: 'latest' }));
    assert.deepEqual(latest.records, []);
    const earliest = await readAllOf(sourceFor({ topics: [topic] }));
    assert.deepEqual(ids(earliest.records), range(0, 5));
  });

  it('reads every topic a topic_pattern matches, and only those', async () => {
    const family = unique('sluice-fam');
    const a = `${family}.a`;
    const b = `${family}.b`;
    const other = `${family}-other`;
    await createTopics([a, b, other], 1);
    await produceRaw(a, [{ value: '{"id":1}' }]);
    await produceRaw(b, [{ value: '{"id":2}' }, { value: '{"id":3}' }]);
    await produceRaw(other, [{ value: '{"id":99}' }]);
    const got = await readAllOf(
      sourceFor({ topic_pattern: `${family.replaceAll('-', '\\-')}\\..*`, fields: { topic: 'topic' } }),
    );
    assert.deepEqual(ids(got.records), [1, 2, 3]);
    assert.deepEqual(new Set(got.records.map((r) => r.value.topic)), new Set([a, b]));
    const none = await readAllOf(sourceFor({ topic_pattern: `${family}-nothing-.*` }));
    assert.deepEqual(none.records, []);
  });

  it('stops at the ends it saw at the start, not at messages produced while it reads', async () => {
    const topic = await createTopic(1);
    await produceRaw(
      topic,
      range(1, 10).map((id) => ({ value: JSON.stringify({ id }) })),
    );
    const source = await sourceFor({ topics: [topic] }, { batchSize: 3 });
    const records: SluiceRecord[] = [];
    let producedMore = false;
    for await (const batch of source.read()) {
      records.push(...batch.records);
      if (!producedMore) {
        producedMore = true;
        await produceRaw(
          topic,
          range(11, 15).map((id) => ({ value: JSON.stringify({ id }) })),
        );
      }
    }
    await source.close();
    assert.deepEqual(ids(records), range(1, 10));
  });

  it('resumes after the offsets of a checkpoint (ctx.resume), ahead of the group', async () => {
    const topic = await createTopic(2);
    await produceRaw(
      topic,
      range(0, 9).map((id) => ({ value: JSON.stringify({ id }), partition: id % 2 })),
    );
    // Partition 0 holds ids 0,2,4,6,8 at offsets 0..4: resuming after offset 2 skips 0, 2 and 4.
    const got = await readAllOf(sourceFor({ topics: [topic] }, { resume: { [`${topic}/0`]: 2 } }));
    assert.deepEqual(ids(got.records), [1, 3, 5, 6, 7, 8, 9]);
  });

  it('commits offsets after the positions it is given, and a new run of the group starts there', async () => {
    const topic = await createTopic(2);
    const group = unique('sluice-g');
    await produceRaw(
      topic,
      range(0, 9).map((id) => ({ value: JSON.stringify({ id }), partition: id % 2 })),
    );
    const first = await sourceFor({ topics: [topic], group });
    const read = await readAllOf(first, { close: false });
    assert.equal(read.records.length, 10);
    // As the engine would after a checkpoint: partition 0 fully, partition 1 up to offset 1 (ids 1, 3).
    await first.commit({ [`${topic}/0`]: 4, [`${topic}/1`]: 1, 'not-this-topic/0': 7 });
    await first.close();
    assert.deepEqual(await committedOffsets(group, topic, 2), [5n, 2n]);
    const second = await readAllOf(sourceFor({ topics: [topic], group }));
    assert.deepEqual(ids(second.records), [5, 7, 9]);
  });

  it('ends a streaming read (no stop_at_end) when closed, and when its signal aborts', async () => {
    const topic = await createTopic(1);
    await produceRaw(topic, [{ value: '{"id":1}' }]);
    const controller = new AbortController();
    const source = await sourceFor({ topics: [topic], stop_at_end: false }, { signal: controller.signal });
    const iterator = source.read()[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.deepEqual(first.done ? [] : ids(first.value.records), [1]);
    const pending = iterator.next();
    setTimeout(() => controller.abort(), 100);
    const started = performance.now();
    assert.equal((await pending).done, true);
    // Without the abort it would wait for records forever; the bound is for a loaded machine.
    assert.ok(performance.now() - started < 10_000, 'the abort ended the read');
    await source.close();
    await source.close();
  });

  it('fails with a clear, non-retriable error for a topic that does not exist', async () => {
    const topic = unique('sluice-missing');
    await assert.rejects(readAllOf(sourceFor({ topics: [topic] })), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.equal(err.retriable, false);
      assert.match(err.message, new RegExp(topic));
      return true;
    });
  });

  it('fails with a retriable SLUICE_SOURCE_IO / SLUICE_SINK_IO when no broker answers', async () => {
    const nowhere = '127.0.0.1:1';
    const source = (await kafkaSource.create(
      kafkaSource.config.parse({ bootstrap_servers: nowhere, topics: ['t'], stop_at_end: true }),
      testContext(),
    )) as KafkaSource;
    await assert.rejects(readAllOf(source), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.equal(err.retriable, true);
      assert.match(err.message, /127\.0\.0\.1:1/);
      return true;
    });
    await assert.rejects(
      writeWithSink({ bootstrap_servers: nowhere, topic: 't' }, [{ value: { a: 1 }, meta: {} }]),
      (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_SINK_IO');
        assert.equal(err.retriable, true);
        return true;
      },
    );
  });
});

describe('kafka in a pipeline run', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-kafka-'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  async function startSpec(name: string, yaml: string) {
    const runDir = path.join(dir, name);
    await fs.mkdir(runDir, { recursive: true });
    const pipeline = await loadPipeline({
      file: path.join(runDir, 'pipeline.yaml'),
      text: yaml,
      registry: defaultRegistry(),
    });
    const run = new PipelineRun({ pipeline, runId: unique('run'), runDir, logger: silent });
    return { run, done: run.run(), runDir };
  }

  async function runSpec(name: string, yaml: string) {
    const { done, runDir } = await startSpec(name, yaml);
    return { summary: await done, runDir };
  }

  async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const value = await probe();
      if (ok(value)) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${String(value)}`);
      await sleep(100);
    }
  }

  async function jsonLines(folder: string): Promise<RecordValue[]> {
    const files = (await fs.readdir(folder).catch(() => [] as string[])).filter((f) => f.endsWith('.jsonl'));
    const out: RecordValue[] = [];
    for (const f of files)
      for (const line of (await fs.readFile(path.join(folder, f), 'utf8')).split('\n'))
        if (line) out.push(JSON.parse(line) as RecordValue);
    return out;
  }

  const spec = (topic: string, group: string, out: string, extra = '') => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: kafka-to-files }
source:
  kafka:
    bootstrap_servers: ${BOOTSTRAP}
    group: ${group}
    topics: [${topic}]
    stop_at_end: true
sinks:
  - file: { path: ${out}/, format: jsonl }
${extra}`;

  it('commits the group only at its checkpoints: a second run reads only new messages', async () => {
    const topic = await createTopic(3);
    const group = unique('sluice-g');
    await produceRaw(
      topic,
      range(1, 30).map((id) => ({ value: JSON.stringify({ id }), partition: id % 3 })),
    );
    await produceRaw(topic, [{ value: 'oops', partition: 1 }]);

    const first = await runSpec('first', spec(topic, group, 'out'));
    assert.equal(first.summary.status, 'succeeded');
    assert.deepEqual(first.summary.records, { read: 31, written: 30, filtered: 0, failed: 1, skipped: 0 });
    assert.deepEqual(
      ids((await jsonLines(path.join(first.runDir, 'out'))).map((value) => ({ value, meta: {} }))),
      range(1, 30),
    );
    const errors = await jsonLines(path.join(first.runDir, 'errors'));
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.code, 'SLUICE_DECODE');
    assert.equal(errors[0]?.raw, 'oops');
    assert.deepEqual(errors[0]?.position, { partition: `${topic}/1`, offset: 10 });
    assert.deepEqual(errors[0]?.details, { topic, partition: 1, offset: 10, key: null });
    // Committed past the last offsets, the undecodable message included.
    assert.deepEqual(await committedOffsets(group, topic, 3), [10n, 11n, 10n]);

    await produceRaw(
      topic,
      range(31, 36).map((id) => ({ value: JSON.stringify({ id }), partition: id % 3 })),
    );
    const second = await runSpec('second', spec(topic, group, 'out'));
    assert.equal(second.summary.status, 'succeeded');
    assert.deepEqual(
      ids((await jsonLines(path.join(second.runDir, 'out'))).map((value) => ({ value, meta: {} }))),
      range(31, 36),
    );
    assert.deepEqual(await committedOffsets(group, topic, 3), [12n, 13n, 12n]);

    const third = await runSpec('third', spec(topic, group, 'out'));
    assert.deepEqual(third.summary.records.read, 0);
  });

  it('a streaming run commits the group at each checkpoint, also once the topic goes quiet', async () => {
    const topic = await createTopic(1);
    const group = unique('sluice-g');
    await produceRaw(
      topic,
      range(1, 3).map((id) => ({ value: JSON.stringify({ id }) })),
    );
    const yaml = spec(topic, group, 'out', 'settings:\n  checkpoint_interval: 300ms\n').replace(
      'stop_at_end: true',
      'stop_at_end: false',
    );
    const { run, done, runDir } = await startSpec('streaming', yaml);
    const committed = () => committedOffsets(group, topic, 1);
    await until('the first commit', committed, (o) => o[0] === 3n);
    await produceRaw(
      topic,
      range(4, 5).map((id) => ({ value: JSON.stringify({ id }) })),
    );
    await until('the second commit', committed, (o) => o[0] === 5n);
    run.stop();
    const summary = await done;
    assert.equal(summary.status, 'interrupted');
    assert.equal(summary.records.written, 5);
    assert.deepEqual(summary.positions, { [`${topic}/0`]: 4 });
    const written = await jsonLines(path.join(runDir, 'out'));
    assert.deepEqual(ids(written.map((value) => ({ value, meta: {} }))), range(1, 5));
  });

  it('a failed run commits nothing to the group: the next run reads it all again', async () => {
    const topic = await createTopic(1);
    const group = unique('sluice-g');
    await produceRaw(topic, [{ value: '{"id":1}' }, { value: 'broken' }, { value: '{"id":3}' }]);
    const failing = await runSpec(
      'failing',
      spec(topic, group, 'out', 'settings:\n  error_policy: { max_errors: 0 }\n'),
    );
    assert.equal(failing.summary.status, 'failed');
    assert.equal(failing.summary.failure?.code, 'SLUICE_ERROR_LIMIT');
    assert.deepEqual(await committedOffsets(group, topic, 1), [-1n]);
    const retry = await runSpec('retry', spec(topic, group, 'out'));
    assert.equal(retry.summary.status, 'succeeded');
    assert.deepEqual(retry.summary.records, { read: 3, written: 2, filtered: 0, failed: 1, skipped: 0 });
    assert.deepEqual(await committedOffsets(group, topic, 1), [3n]);
  });
});

// ---------------------------------------------------------------- the conformance kit

let conformanceTopic = '';
before(async () => {
  conformanceTopic = await createTopic(3, 'sluice-conf');
  await produceRaw(
    conformanceTopic,
    range(1, 95).map((id) => ({ value: JSON.stringify({ id }), partition: id % 3 })),
  );
});

sourceConformance('kafka (3 partitions, stop_at_end)', {
  create: (ctx) =>
    kafkaSource.create(
      kafkaSource.config.parse({
        bootstrap_servers: BOOTSTRAP,
        topics: [conformanceTopic],
        group: unique('sluice-conf'),
        stop_at_end: true,
      }),
      ctx,
    ),
  expectedRecords: 95,
});

let sinkTopic = '';
sinkConformance('kafka', {
  create: (ctx) =>
    kafkaSink.create(
      kafkaSink.config.parse({
        bootstrap_servers: BOOTSTRAP,
        topic: sinkTopic,
        max_message_bytes: 10_000,
        compression: 'zstd',
      }),
      ctx,
    ),
  reset: async () => {
    sinkTopic = await createTopic(2, 'sluice-conf-sink');
  },
  readBack: async () => values((await readAllOf(sourceFor({ topics: [sinkTopic] }))).records),
  atomic: false,
  unencodable: { id: 0, name: 'x'.repeat(20_000), amount: 0, active: false },
});
