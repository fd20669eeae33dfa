/** The postgres components without a server: config validation, names, type inference, error mapping. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { defaultRegistry } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { configIssues, testContext } from '../../sdk/testing.ts';
import { checkpointSchema } from './checkpoint-store.ts';
import { isConnectionError, isDataError, pgError, qualified, splitTable } from './common.ts';
import { postgresSink, postgresSource, sourcePartition } from './index.ts';
import { copyField, inferType } from './sink.ts';
import { evenSplits, parseSplitPartition, planSplits, splitPartition } from './splits.ts';

const url = 'postgres://u@127.0.0.1:5432/db';

describe('postgres source config', () => {
  it('fills the defaults and is bounded', () => {
    const cfg = postgresSource.config.parse({ url, table: 'public.orders' });
    assert.deepEqual(cfg, { url, table: 'public.orders', mode: 'full', parallelism: 1 });
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

describe('postgres source splits config', () => {
  it('splits only a table, without order_by, and in incremental mode by the cursor', () => {
    assert.deepEqual(configIssues(postgresSource.config, { url, query: 'SELECT 1', parallelism: 4 }), [
      'parallelism: parallel reads split a `table` by key ranges; they do not apply to `query`',
    ]);
    assert.deepEqual(
      configIssues(postgresSource.config, { url, table: 't', parallelism: 2, order_by: ['id'] }),
      [
        'order_by: with splits, each split reads in `split_by` order and splits interleave: remove `order_by`',
      ],
    );
    assert.deepEqual(
      configIssues(postgresSource.config, {
        url,
        table: 't',
        mode: 'incremental',
        cursor: 'at',
        split_by: 'id',
      }),
      [
        'split_by: mode: incremental splits by its `cursor` column: leave split_by out or set it to the cursor',
      ],
    );
    assert.deepEqual(
      configIssues(postgresSource.config, {
        url,
        table: 't',
        mode: 'incremental',
        cursor: 'ID',
        parallelism: 3,
      }),
      [],
    );
    assert.equal(configIssues(postgresSource.config, { url, table: 't', parallelism: 0 }).length, 1);
  });
});

describe('postgres key-range splits', () => {
  const base = 'postgres:public.orders';

  it('splits [min, max] into even contiguous ranges, open at both ends', () => {
    assert.deepEqual(evenSplits(1n, 10n, 3), [
      { lo: null, hi: 3n },
      { lo: 4n, hi: 6n },
      { lo: 7n, hi: null },
    ]);
    assert.deepEqual(evenSplits(5n, 6n, 4), [
      { lo: null, hi: 5n },
      { lo: 6n, hi: null },
    ]);
    assert.deepEqual(evenSplits(7n, 7n, 1), [{ lo: null, hi: null }]);
    assert.deepEqual(evenSplits(-10n, 9n, 2), [
      { lo: null, hi: -1n },
      { lo: 0n, hi: null },
    ]);
  });

  it('names a split partition after its range, and parses it back', () => {
    const name = splitPartition(base, 'id', { lo: -5n, hi: null });
    assert.equal(name, 'postgres:public.orders#id[-5,*]');
    assert.deepEqual(parseSplitPartition(base, name), { column: 'id', range: { lo: -5n, hi: null } });
    assert.deepEqual(parseSplitPartition(base, `${base}#Odd[Col[*,3]`), {
      column: 'Odd[Col',
      range: { lo: null, hi: 3n },
    });
    assert.equal(parseSplitPartition(base, base), undefined);
    assert.equal(parseSplitPartition(base, 'postgres:public.orders_2#id[1,2]'), undefined);
  });

  it('plans fresh splits, none for an empty table', () => {
    const fresh = planSplits({ base, column: 'id', parallelism: 2, min: 1n, max: 100n });
    assert.deepEqual(
      fresh.map((s) => [s.partition, s.after]),
      [
        ['postgres:public.orders#id[*,50]', undefined],
        ['postgres:public.orders#id[51,*]', undefined],
      ],
    );
    assert.deepEqual(planSplits({ base, column: 'id', parallelism: 4, min: null, max: null }), []);
  });

  it('resumes every split after its offset, and reads the key space no split covers as new splits', () => {
    const resume = {
      other: 5,
      [`${base}#id[*,30]`]: 12,
      [`${base}#id[61,90]`]: 90, // finished
      [`${base}#id[91,*]`]: 95,
    };
    const work = planSplits({ base, column: 'id', parallelism: 8, min: 1n, max: 500n, resume });
    assert.deepEqual(
      work.map((s) => [s.partition, s.lo, s.hi, s.after]),
      [
        [`${base}#id[*,30]`, null, 30n, 12n],
        [`${base}#id[31,60]`, 31n, 60n, undefined],
        [`${base}#id[91,*]`, 91n, null, 95n],
      ],
    );
    // Splits from a run whose table has since grown below and above: the gaps are read.
    const grown = planSplits({
      base,
      column: 'id',
      parallelism: 2,
      min: 0n,
      max: 0n,
      resume: { [`${base}#id[10,20]`]: 15 },
    });
    assert.deepEqual(
      grown.map((s) => s.partition),
      [`${base}#id[*,9]`, `${base}#id[10,20]`, `${base}#id[21,*]`],
    );
  });

  it('refuses positions it cannot carry on from', () => {
    const plan = (resume: Record<string, number>) =>
      planSplits({ base, column: 'id', parallelism: 2, min: 1n, max: 9n, resume });
    assert.throws(() => plan({ [base]: 3 }), /written by a single reader/);
    assert.throws(
      () => plan({ [`${base}#created_at[*,9]`]: 3 }),
      /split by column created_at, not id: resume with split_by: created_at/,
    );
    assert.throws(() => plan({ [`${base}#id[*,9]`]: 3, [`${base}#id[5,*]`]: 6 }), /overlap/);
  });
});

describe('postgres sink config', () => {
  it('fills the defaults', () => {
    assert.deepEqual(postgresSink.config.parse({ url, table: 't' }), {
      url,
      table: 't',
      mode: 'insert',
      method: 'insert',
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

describe('postgres COPY text encoding', () => {
  it('escapes what COPY text format needs, NULL as \\N, bytes as hex, arrays and json as pg sends them', () => {
    assert.equal(copyField(null), '\\N');
    assert.equal(copyField(undefined), '\\N');
    assert.equal(copyField('\\N'), '\\\\N');
    assert.equal(copyField('a\tb\nc\rd\\e'), 'a\\tb\\nc\\rd\\\\e');
    assert.equal(copyField(42), '42');
    assert.equal(copyField(true), 'true');
    assert.equal(copyField('12345678901234567890.123456789'), '12345678901234567890.123456789');
    assert.equal(copyField(Buffer.from([0, 0x5c, 0xff])), '\\\\x005cff');
    assert.equal(copyField(['a', 'b,c', null, 'q"\\']), '{"a","b,c",NULL,"q\\\\"\\\\\\\\"}');
    assert.equal(copyField('{"k":"x\ty"}'), '{"k":"x\\ty"}');
    const date = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6));
    assert.equal(new Date(copyField(date)).getTime(), date.getTime());
  });
});

describe('postgres checkpoint store', () => {
  it('takes its schema from the URL search_path, else public', () => {
    assert.equal(checkpointSchema(url), 'public');
    assert.equal(checkpointSchema(`${url}?search_path=etl,public`), 'etl');
    assert.equal(checkpointSchema(`${url}?options=-c%20search_path%3D%22%24user%22,State`), 'state');
    assert.equal(checkpointSchema(`${url}?options=--search_path%3D%22Mixed%22`), 'Mixed');
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
