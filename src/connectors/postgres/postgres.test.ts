/** The postgres components without a server: config validation, names, type inference, error mapping. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { defaultRegistry } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { configIssues, testContext } from '../../sdk/testing.ts';
import { isConnectionError, isDataError, pgError, qualified, splitTable } from './common.ts';
import { postgresSink, postgresSource, sourcePartition } from './index.ts';
import { inferType } from './sink.ts';

const url = 'postgres://u@127.0.0.1:5432/db';

describe('postgres source config', () => {
  it('fills the defaults and is bounded', () => {
    const cfg = postgresSource.config.parse({ url, table: 'public.orders' });
    assert.deepEqual(cfg, { url, table: 'public.orders', mode: 'full' });
    assert.equal(postgresSource.bounded(cfg), true);
  });

  it('needs exactly one of table and query', () => {
    assert.deepEqual(configIssues(postgresSource.config, { url }), [
      'table: give either `table` or `query`, not both',
    ]);
    assert.deepEqual(configIssues(postgresSource.config, { url, table: 't', query: 'SELECT 1' }), [
      'query: give either `table` or `query`, not both',
    ]);
  });

  it('needs a cursor for incremental mode, and only there', () => {
    assert.deepEqual(configIssues(postgresSource.config, { url, table: 't', mode: 'incremental' }), [
      'cursor: mode: incremental needs a `cursor` column',
    ]);
    assert.deepEqual(configIssues(postgresSource.config, { url, table: 't', cursor: 'id' }), [
      'cursor: `cursor` is only for mode: incremental',
    ]);
    assert.deepEqual(
      configIssues(postgresSource.config, {
        url,
        table: 't',
        mode: 'incremental',
        cursor: 'id',
        order_by: ['id'],
      }),
      ['order_by: mode: incremental reads in `cursor` order; `order_by` is only for mode: full'],
    );
  });

  it('refuses a URL that is not postgres://, a bad table name and unknown keys', () => {
    assert.deepEqual(configIssues(postgresSource.config, { url: 'mysql://x', table: 't' }), [
      'url: expected a postgres:// URL',
    ]);
    assert.deepEqual(configIssues(postgresSource.config, { url, table: 'a b; drop' }), [
      'table: expected a table name, optionally schema-qualified: `public.orders`',
    ]);
    assert.equal(configIssues(postgresSource.config, { url, table: 't', tabel: 'x' }).length, 1);
  });

  it('names partitions after the table, or a hash of the query', () => {
    assert.equal(sourcePartition({ table: 'Orders' }), 'postgres:public.orders');
    assert.equal(sourcePartition({ table: 'sales."Events"' }), 'postgres:sales.Events');
    const a = sourcePartition({ query: 'SELECT 1' });
    assert.match(a, /^postgres:[0-9a-f]{12}$/);
    assert.notEqual(a, sourcePartition({ query: 'SELECT 2' }));
  });
});

describe('postgres sink config', () => {
  it('fills the defaults', () => {
    assert.deepEqual(postgresSink.config.parse({ url, table: 't' }), {
      url,
      table: 't',
      mode: 'insert',
      create_table: false,
      exactly_once: true,
    });
  });

  it('needs key for upsert, and only there', () => {
    assert.deepEqual(configIssues(postgresSink.config, { url, table: 't', mode: 'upsert' }), [
      'key: mode: upsert needs `key`, the columns that identify a row',
    ]);
    assert.deepEqual(configIssues(postgresSink.config, { url, table: 't', key: ['id'] }), [
      'key: `key` is only for mode: upsert',
    ]);
    assert.deepEqual(
      configIssues(postgresSink.config, { url, table: 't', mode: 'upsert', key: [] }).length,
      1,
    );
  });

  it('is registered, and every example parses', () => {
    const registry = defaultRegistry();
    for (const def of [registry.source('postgres'), registry.sink('postgres')]) {
      assert.ok(def, 'registered');
      assert.ok(def.examples.length >= 2);
      for (const example of def.examples)
        assert.ok(def.config.safeParse(parse(example.yaml)).success, example.title);
    }
  });
});

describe('postgres names and types', () => {
  it('splits and quotes table names, folding unquoted ones to lower case', () => {
    assert.deepEqual(splitTable('Orders'), { schema: 'public', name: 'orders' });
    assert.deepEqual(splitTable('s."My ""T"""'), { schema: 's', name: 'My "T"' });
    assert.equal(qualified('s."My ""T"""'), '"s"."My ""T"""');
  });

  it('infers column types from the first batch', () => {
    assert.equal(inferType([1, 2, null]), 'bigint');
    assert.equal(inferType([1, 2.5]), 'double precision');
    assert.equal(inferType(['a', null]), 'text');
    assert.equal(inferType([true, false]), 'boolean');
    assert.equal(inferType([{ a: 1 }, [1, 2]]), 'jsonb');
    assert.equal(inferType([new Date()]), 'timestamptz');
    assert.equal(inferType([null, undefined]), 'text');
    assert.equal(inferType([1, 'a']), 'text');
  });
});

describe('postgres error mapping', () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

  it('treats connection trouble as retriable and data errors as not', () => {
    assert.equal(isConnectionError(withCode('refused', 'ECONNREFUSED')), true);
    assert.equal(isConnectionError(withCode('admin shutdown', '57P01')), true);
    assert.equal(isConnectionError(new Error('Connection terminated unexpectedly')), true);
    assert.equal(isConnectionError(withCode('bad int', '22P02')), false);
    assert.equal(isDataError(withCode('bad int', '22P02')), true);
    assert.equal(isDataError(withCode('not null', '23502')), true);
    assert.equal(isDataError(withCode('syntax', '42601')), false);
    const io = pgError(withCode('refused', 'ECONNREFUSED'), 'SLUICE_SINK_IO', 'cannot connect');
    assert.ok(io instanceof SluiceError);
    assert.equal(io.retriable, true);
    assert.equal(io.message, 'cannot connect: refused');
    assert.equal(pgError(withCode('syntax', '42601'), 'SLUICE_SOURCE_IO', 'x').retriable, false);
  });

  it('fails a read against a closed port with a retriable SLUICE_SOURCE_IO after bounded retries', async () => {
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void warnings.push(m), error() {} };
    const source = await postgresSource.create(
      postgresSource.config.parse({ url: 'postgres://u@127.0.0.1:9/db', table: 't' }),
      testContext({ logger }),
    );
    await assert.rejects(
      async () => {
        for await (const _ of source.read()) break;
      },
      (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_SOURCE_IO');
        assert.equal(err.retriable, true);
        assert.match(err.message, /cannot connect to PostgreSQL at 127\.0\.0\.1:9\/db/);
        return true;
      },
    );
    assert.equal(warnings.length, 3);
    assert.match(warnings[0]!, /retrying in 200 ms \(attempt 2 of 4\)/);
    await source.close();
  });
});
