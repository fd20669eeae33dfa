/** The kafka components without a broker: config validation, checks, error mapping, rejections. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NetworkError, UserError } from '@platformatic/kafka';
import { defaultRegistry } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { configIssues, testContext } from '../../sdk/testing.ts';
import { kafkaError } from './common.ts';
import { type KafkaSource, kafkaSink, kafkaSource } from './index.ts';
import { startTimestamp } from './source.ts';

const base = { bootstrap_servers: '127.0.0.1:9092' };

describe('kafka source config', () => {
  it('fills the defaults', () => {
    const cfg = kafkaSource.config.parse({ ...base, topics: ['orders'] });
    assert.deepEqual(cfg, {
      bootstrap_servers: '127.0.0.1:9092',
      client_id: 'sluice',
      topics: ['orders'],
      start_from: 'earliest',
      format: 'json',
      value_field: 'value',
      fields: {},
      fetch_max_bytes: 2 * 1024 * 1024,
      stop_at_end: false,
    });
    assert.equal(kafkaSource.bounded(cfg), false);
    assert.equal(kafkaSource.bounded({ ...cfg, stop_at_end: true }), true);
  });

  it('needs exactly one of topics and topic_pattern, naming the field', () => {
    assert.deepEqual(configIssues(kafkaSource.config, base), [
      'topics: give either `topics` (a list) or `topic_pattern` (a regular expression), not both',
    ]);
    assert.deepEqual(configIssues(kafkaSource.config, { ...base, topics: ['a'], topic_pattern: 'a.*' }), [
      'topic_pattern: give either `topics` (a list) or `topic_pattern` (a regular expression), not both',
    ]);
    assert.deepEqual(configIssues(kafkaSource.config, { ...base, topic_pattern: 'orders(' }), [
      'topic_pattern: not a valid regular expression',
    ]);
    assert.deepEqual(configIssues(kafkaSource.config, { ...base, topics: ['no spaces'] }), [
      'topics.0: a topic name is 1-249 letters, digits, ".", "_" or "-"',
    ]);
  });

  it('refuses a broker address without a port, and an empty list', () => {
    assert.deepEqual(
      configIssues(kafkaSource.config, { bootstrap_servers: 'k1:9092,localhost', topics: ['a'] }),
      ['bootstrap_servers: "localhost" is not host:port (e.g. 127.0.0.1:9092)'],
    );
    assert.deepEqual(
      configIssues(kafkaSource.config, { bootstrap_servers: ['[::1]:9092', 'k2:99999'], topics: ['a'] }),
      ['bootstrap_servers: "k2:99999" is not host:port (e.g. 127.0.0.1:9092)'],
    );
    assert.deepEqual(configIssues(kafkaSource.config, { bootstrap_servers: ' , ', topics: ['a'] }), [
      'bootstrap_servers: name at least one broker',
    ]);
    assert.match(configIssues(kafkaSource.config, { topics: ['a'] })[0] ?? '', /^bootstrap_servers: /);
  });

  it('takes earliest, latest or an ISO timestamp with a zone for start_from', () => {
    for (const ok of [
      'earliest',
      'latest',
      '2024-05-01',
      '2024-05-01T10:00:00Z',
      '2024-05-01T10:00:00.123+02:00',
    ])
      assert.deepEqual(configIssues(kafkaSource.config, { ...base, topics: ['a'], start_from: ok }), [], ok);
    for (const bad of ['yesterday', '2024-05-01T10:00:00', '2024-13-45', 'Earliest'])
      assert.deepEqual(
        configIssues(kafkaSource.config, { ...base, topics: ['a'], start_from: bad }),
        [
          'start_from: expected earliest, latest, or an ISO 8601 date or time with a zone (2024-05-01T00:00:00Z)',
        ],
        bad,
      );
    assert.equal(startTimestamp('2024-05-01'), Date.UTC(2024, 4, 1));
    assert.equal(startTimestamp('2024-05-01T12:00:00+02:00'), Date.UTC(2024, 4, 1, 10));
    assert.equal(startTimestamp('latest'), undefined);
  });

  it('refuses unknown fields, at the top and in fields', () => {
    assert.deepEqual(configIssues(kafkaSource.config, { ...base, topics: ['a'], topic: 'a' }), [
      ': Unrecognized key: "topic"',
    ]);
    assert.deepEqual(configIssues(kafkaSource.config, { ...base, topics: ['a'], fields: { keys: 'k' } }), [
      'fields: Unrecognized key: "keys"',
    ]);
    assert.deepEqual(configIssues(kafkaSource.config, { ...base, topics: ['a'], format: 'avro' }).length, 1);
  });

  it('reads in the group sluice-<pipeline> unless one is given; close() without read() is harmless', async () => {
    const cfg = kafkaSource.config.parse({ ...base, topics: ['a'] });
    const source = (await await kafkaSource.create(
      cfg,
      testContext({ pipelineName: 'orders-etl' }),
    )) as KafkaSource;
    assert.equal(source.group, 'sluice-orders-etl');
    await source.close();
    await source.close();
    await source.commit({ 'a/0': 5 }); // nothing connected: nothing to do
    const named = (await kafkaSource.create({ ...cfg, group: 'mine' }, testContext())) as KafkaSource;
    assert.equal(named.group, 'mine');
    await named.close();
  });
});

describe('kafka sink config', () => {
  it('fills the defaults and needs a valid topic', () => {
    assert.deepEqual(kafkaSink.config.parse({ ...base, topic: 'out' }), {
      bootstrap_servers: '127.0.0.1:9092',
      client_id: 'sluice',
      topic: 'out',
      headers: {},
      forward_meta: true,
      compression: 'none',
      max_message_bytes: 1_000_000,
    });
    assert.deepEqual(configIssues(kafkaSink.config, base), [
      'topic: Invalid input: expected string, received undefined',
    ]);
    assert.deepEqual(configIssues(kafkaSink.config, { ...base, topic: 'a/b' }), [
      'topic: a topic name is 1-249 letters, digits, ".", "_" or "-"',
    ]);
    assert.equal(configIssues(kafkaSink.config, { ...base, topic: 'a', compression: 'brotli' }).length, 1);
    assert.deepEqual(configIssues(kafkaSink.config, { ...base, topic: 'a', acks: 1 }), [
      ': Unrecognized key: "acks"',
    ]);
  });

  it('check() points at a key or header expression that does not compile', async () => {
    const check = (cfg: Record<string, unknown>) =>
      kafkaSink.check!(kafkaSink.config.parse({ ...base, topic: 'a', ...cfg }), { baseDir: process.cwd() });
    assert.deepEqual(await check({ key: "customer_id || '-' || region", headers: { h: 'upper(name)' } }), []);
    const [keyIssue, ...rest] = await check({ key: 'customer_id +' });
    assert.deepEqual(rest, []);
    assert.deepEqual(keyIssue?.path, ['key']);
    assert.equal(keyIssue?.offset, 13);
    assert.match(keyIssue?.message ?? '', /syntax error/);
    const [headerIssue] = await check({ headers: { ok: "'x'", trace: 'nosuchfn(id)' } });
    assert.deepEqual(headerIssue?.path, ['headers', 'trace']);
    assert.match(headerIssue?.message ?? '', /unknown function nosuchfn/);
    assert.deepEqual((await check({ key: 'sum(amount)' }))[0]?.path, ['key']);
  });

  it('rejects records it cannot send before it talks to a broker', async () => {
    // No broker at this address: a write that sends nothing must not need one.
    const sink = await kafkaSink.create(
      kafkaSink.config.parse({
        bootstrap_servers: '127.0.0.1:1',
        topic: 'a',
        key: 'CAST(code AS INTEGER)',
        max_message_bytes: 64,
      }),
      testContext(),
    );
    const circular: Record<string, unknown> = { code: '1' };
    circular.self = circular;
    const result = await sink.write([
      { value: { code: 'x' }, meta: {} },
      { value: { code: '2', text: 'y'.repeat(100) }, meta: {} },
      { value: circular, meta: {} },
    ]);
    assert.deepEqual(
      result?.rejected?.map((r) => r.error.code),
      ['SLUICE_EXPR_EVAL', 'SLUICE_SINK_REJECTED', 'SLUICE_SINK_REJECTED'],
    );
    assert.match(result?.rejected?.[1]?.error.message ?? '', /more than max_message_bytes \(64\)/);
    assert.deepEqual(sink.outputs?.(), ['kafka topic a']);
    await sink.abort();
    await sink.close();
  });
});

describe('kafka errors', () => {
  it('are retriable for network trouble only, and list what the client said', () => {
    const network = kafkaError(
      new NetworkError('Connection to k1:9092 failed.'),
      'SLUICE_SOURCE_IO',
      'cannot read',
    );
    assert.equal(network.code, 'SLUICE_SOURCE_IO');
    assert.equal(network.retriable, true);
    assert.equal(network.message, 'cannot read: Connection to k1:9092 failed.');

    const user = kafkaError(new UserError('Unknown topic t.'), 'SLUICE_SINK_IO', 'cannot write');
    assert.equal(user.retriable, false);

    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const mixed = new AggregateError([new NetworkError('down'), refused, new UserError('bad')], 'several');
    assert.equal(
      kafkaError(mixed, 'SLUICE_SINK_IO', 'x').retriable,
      false,
      'one lasting failure: not retriable',
    );
    const transient = new AggregateError([new NetworkError('down'), refused], 'several');
    const err = kafkaError(transient, 'SLUICE_SINK_IO', 'x');
    assert.equal(err.retriable, true);
    assert.equal(err.message, 'x: down; connect ECONNREFUSED');
    assert.deepEqual(err.details?.kafka_codes, ['PLT_KFK_NETWORK', 'ECONNREFUSED']);

    const ours = new SluiceError('SLUICE_DECODE', 'kept');
    assert.equal(kafkaError(ours, 'SLUICE_SOURCE_IO', 'x'), ours);
  });
});

describe('kafka in the registry', () => {
  it('is a source and a sink', () => {
    const registry = defaultRegistry();
    assert.equal(registry.source('kafka'), kafkaSource);
    assert.equal(registry.sink('kafka'), kafkaSink);
  });
});
