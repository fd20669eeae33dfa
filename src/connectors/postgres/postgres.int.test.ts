/**
 * The postgres source and sink against the test PostgreSQL (scripts/services/postgres.sh), in a
 * fresh database for this file: faithful types, incremental resume, upsert, rejections,
 * create_table, the conformance kit, and pipeline runs SIGKILLed mid-run and resumed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { FileCheckpointStore } from '../../engine/checkpoint-store.ts';
import { PipelineRun } from '../../engine/run.ts';
import { killedInCheckpoint } from '../../engine/test-util.ts';
import { defaultRegistry } from '../../registry.ts';
import type { SluiceError } from '../../sdk/errors.ts';
import {
  checkSameRecords,
  readAll,
  sinkConformance,
  sourceConformance,
  testContext,
} from '../../sdk/testing.ts';
import type { RecordValue, SluiceRecord } from '../../sdk/types.ts';
import { createTestStore, type TestStore } from '../../server/store/test-util.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { PostgresCheckpointStore } from './checkpoint-store.ts';
import { faithfulTypes } from './common.ts';
import { postgresSink, postgresSource, sourcePartition } from './index.ts';
import { evenSplits, splitPartition } from './splits.ts';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

let store: TestStore;
let db: pg.Client;
// Top-level hooks: the conformance suites below read the URL when their tests run.
before(async () => {
  store = await createTestStore('postgres');
  db = new pg.Client({ connectionString: store.url, types: faithfulTypes });
  await db.connect();
  await db.query(`SET TIME ZONE 'UTC'`);
});
after(async () => {
  await db?.end();
  await store?.dispose();
});

const sql = async (text: string, params: unknown[] = []) => (await db.query(text, params)).rows;
const source = (config: Record<string, unknown>, ctx = testContext()) =>
  postgresSource.create(postgresSource.config.parse({ url: store.url, ...config }), ctx);
const sink = (config: Record<string, unknown>, ctx = testContext()) =>
  postgresSink.create(postgresSink.config.parse({ url: store.url, ...config }), ctx);
const records = (values: RecordValue[], partition = 'p', from = 0): SluiceRecord[] =>
  values.map((value, i) => ({ value, meta: { position: { partition, offset: from + i } } }));
async function readValues(config: Record<string, unknown>, ctx = testContext()): Promise<SluiceRecord[]> {
  const s = await source(config, ctx);
  try {
    return (await readAll(s)).flatMap((b) => b.records);
  } finally {
    await s.close();
  }
}

const TYPES = `id int PRIMARY KEY, n numeric, big bigint, huge bigint, f double precision, t text,
    ts timestamptz, tsn timestamp, d date, j jsonb, js json, ints int[], texts text[], nums numeric[],
    b bytea, u uuid, ok boolean`;

describe('postgres source types', () => {
  const expected = {
    id: 1,
    n: '12345678901234567890.123456789',
    big: 42,
    huge: '9223372036854775807',
    f: 1.5,
    t: 'héllo',
    ts: '2024-05-01T12:34:56.123456Z',
    tsn: '2024-05-01T12:34:56.5',
    d: '2024-05-01',
    j: { a: [1, { b: null }], s: 'x' },
    js: { k: true },
    ints: [1, 2, 3],
    texts: ['a', 'b,c', null],
    nums: ['1.10', '2'],
    b: Buffer.from([0, 1, 2, 255]).toString('base64'),
    u: '0b0e3c1e-4c8a-4d1e-9f2a-6d1c7b3e9a10',
    ok: true,
  };

  before(async () => {
    await sql(`CREATE TABLE types_src (${TYPES})`);
    await sql(`CREATE TABLE types_dst (${TYPES})`);
    await sql(
      `INSERT INTO types_src VALUES (1, 12345678901234567890.123456789, 42, 9223372036854775807, 1.5, 'héllo',
        '2024-05-01 14:34:56.123456+02', '2024-05-01 12:34:56.5', '2024-05-01', '{"a":[1,{"b":null}],"s":"x"}',
        '{"k":true}', '{1,2,3}', '{a,"b,c",NULL}', '{1.10,2}', '\\x000102ff', '0b0e3c1e-4c8a-4d1e-9f2a-6d1c7b3e9a10', true),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
    );
  });

  it('reads every listed type faithfully', async () => {
    const rows = await readValues({ table: 'public.types_src' });
    assert.equal(rows.length, 2);
    assert.deepEqual(rows[0]!.value, expected);
    assert.deepEqual(rows[0]!.meta.position, { partition: 'postgres:public.types_src', offset: 0 });
    assert.equal(rows[1]!.value.n, null);
    assert.equal(rows[1]!.meta.position?.offset, 1);
  });

  it('round-trips every type through the sink into an identical table', async () => {
    const rows = await readValues({ table: 'types_src' });
    const out = await sink({ table: 'types_dst' });
    assert.equal(await out.write(rows), undefined);
    await out.close();
    const back = await readValues({ table: 'types_dst' });
    assert.deepEqual(
      back.map((r) => r.value),
      rows.map((r) => r.value),
    );
    // Exact, not just equal after parsing: the numeric kept every digit in the table.
    assert.deepEqual(await sql(`SELECT n::text AS n FROM types_dst WHERE id = 1`), [
      { n: '12345678901234567890.123456789' },
    ]);
  });
});

describe('postgres source modes', () => {
  before(async () => {
    await sql(`CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, name text)`);
    await sql(
      `INSERT INTO events (at, name) SELECT '2024-01-01'::timestamptz + g * interval '1 second' + g * interval '1 microsecond', 'e' || g
         FROM generate_series(1, 50) g`,
    );
  });

  it('reads in fetches no larger than the batch size, full mode by primary key', async () => {
    const s = await source({ table: 'events' }, testContext({ batchSize: 8 }));
    const batches = await readAll(s);
    await s.close();
    assert.equal(batches.length, 7);
    assert.ok(batches.every((b) => b.records.length <= 8));
    const all = batches.flatMap((b) => b.records);
    assert.deepEqual(
      all.map((r) => r.value.id),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    assert.deepEqual(s.progress?.(), { recordsTotal: 50 });
  });

  it('yields a larger fetch_size in batches of the batch size', async () => {
    const s = await source({ table: 'events', fetch_size: 20 }, testContext({ batchSize: 8 }));
    const batches = await readAll(s);
    await s.close();
    assert.deepEqual(
      batches.map((b) => b.records.length),
      [8, 8, 4, 8, 8, 4, 8, 2],
    );
  });

  it('fails a read whose connection drops with a retriable SLUICE_SOURCE_IO and a log line', async () => {
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void warnings.push(m), error() {} };
    const s = await source({ table: 'events' }, testContext({ batchSize: 5, logger }));
    const iterator = s.read()[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.records.length, 5);
    await sql(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()`,
    );
    // The fetch sent ahead of time may still arrive; the one after it fails, well before the end.
    let more = 0;
    await assert.rejects(
      async () => {
        while (!(await iterator.next()).done) more++;
      },
      (err: SluiceError) =>
        err.code === 'SLUICE_SOURCE_IO' && err.retriable && /cannot read events/.test(err.message),
    );
    assert.ok(more <= 1, `${more} batches after the connection dropped`);
    assert.match(warnings.at(-1)!, /a resumed run carries on from its last checkpoint/);
    await s.close();
  });

  it('incremental by a numeric cursor reads only rows after the resumed position', async () => {
    const cfg = { table: 'events', mode: 'incremental', cursor: 'id' };
    const first = await readValues(cfg);
    assert.equal(first.length, 50);
    assert.equal(first.at(-1)!.meta.position!.offset, 50);
    await sql(`INSERT INTO events (at, name) VALUES (now(), 'new1'), (now(), 'new2')`);
    const resumed = await readValues(
      cfg,
      testContext({ resume: { [sourcePartition({ table: 'events' })]: 50 } }),
    );
    assert.deepEqual(
      resumed.map((r) => [r.value.name, r.meta.position?.offset]),
      [
        ['new1', 51],
        ['new2', 52],
      ],
    );
  });

  it('incremental by a timestamptz cursor uses epoch microseconds as positions', async () => {
    const cfg = {
      query: 'SELECT id, at, name FROM events WHERE id <= 50',
      mode: 'incremental',
      cursor: 'at',
    };
    const all = await readValues(cfg);
    assert.equal(all.length, 50);
    const tenth = all[9]!;
    assert.equal(tenth.value.at, '2024-01-01T00:00:10.00001Z');
    assert.equal(tenth.meta.position!.offset, Date.UTC(2024, 0, 1, 0, 0, 10) * 1000 + 10);
    const resumed = await readValues(
      cfg,
      testContext({ resume: { [sourcePartition(cfg)]: tenth.meta.position!.offset } }),
    );
    assert.equal(resumed.length, 40);
    assert.equal(resumed[0]!.value.id, 11);
  });

  it('full mode resumes after the row index', async () => {
    const rows = await readValues(
      { table: 'events' },
      testContext({ resume: { 'postgres:public.events': 44 } }),
    );
    assert.deepEqual(
      rows.map((r) => r.meta.position?.offset),
      [45, 46, 47, 48, 49, 50, 51],
    );
  });

  it('refuses a table without a primary key unless order_by is given, and a text cursor', async () => {
    await sql(`CREATE TABLE nokey (v int)`);
    await sql(`INSERT INTO nokey VALUES (3), (1), (2)`);
    await assert.rejects(readValues({ table: 'nokey' }), /has no primary key: set order_by/);
    const rows = await readValues({ table: 'nokey', order_by: ['v'] });
    assert.deepEqual(
      rows.map((r) => r.value.v),
      [1, 2, 3],
    );
    await assert.rejects(
      readValues({ table: 'events', mode: 'incremental', cursor: 'name' }),
      (err: SluiceError) =>
        err.code === 'SLUICE_SOURCE_IO' && /must be a number, timestamp/.test(err.message),
    );
  });
});

describe('postgres sink', () => {
  for (const method of ['insert', 'copy'])
    it(`upserts by key, the last record of a key in a batch winning (method: ${method})`, async () => {
      const customers = `customers_${method}`;
      await sql(`CREATE TABLE ${customers} (id int PRIMARY KEY, name text, visits int)`);
      await sql(`INSERT INTO ${customers} VALUES (1, 'old', 1), (2, 'keep', 5)`);
      const out = await sink({ table: customers, mode: 'upsert', key: ['id'], method });
      await out.write(
        records([
          { id: 1, name: 'new', visits: 2 },
          { id: 3, name: 'three', visits: 1 },
          { id: 3, name: 'three again', visits: 9 },
          // Only the fields a record has are updated: visits stays 5.
          { id: 2, name: 'renamed' },
        ]),
      );
      await out.close();
      assert.deepEqual(await sql(`SELECT * FROM ${customers} ORDER BY id`), [
        { id: 1, name: 'new', visits: 2 },
        { id: 2, name: 'renamed', visits: 5 },
        { id: 3, name: 'three again', visits: 9 },
      ]);
    });

  for (const method of ['insert', 'copy'])
    it(`rejects a bad value or an unknown field naming the field, and writes the rest of the batch (method: ${method})`, async () => {
      const strict = `strict_${method}`;
      await sql(`CREATE TABLE ${strict} (id int PRIMARY KEY, amount integer NOT NULL, note text)`);
      const debug: string[] = [];
      const logger = { ...silent, debug: (m: string) => void debug.push(m) };
      const out = await sink({ table: strict, method }, testContext({ logger }));
      const result = await out.write(
        records([
          { id: 1, amount: 10, note: 'ok' },
          { id: 2, amount: 'ten', note: 'bad cast' },
          { id: 3, amount: 30, colour: 'red' },
          { id: 4, amount: null },
          { id: 5, amount: 50 },
        ]),
      );
      await out.close();
      const rejected = result?.rejected ?? [];
      assert.deepEqual(
        rejected.map((r) => [r.record?.value.id, r.error.code, r.error.details?.field]),
        [
          [3, 'SLUICE_SINK_REJECTED', 'colour'],
          [2, 'SLUICE_SINK_REJECTED', 'amount'],
          [4, 'SLUICE_SINK_REJECTED', 'amount'],
        ],
      );
      assert.match(
        rejected[1]!.error.message,
        /field "amount".*\(integer\).*invalid input syntax for type integer/,
      );
      assert.equal(rejected[1]!.error.details?.column_type, 'integer');
      assert.match(
        rejected[0]!.error.message,
        new RegExp(`field "colour" has no column in table public\\.${strict}`),
      );
      assert.match(rejected[2]!.error.message, /field "amount" \(column type integer\).*not-null/);
      // With COPY, the refused COPY (one bad row fails it all) is what sent the batch row by row.
      if (method === 'copy')
        assert.match(debug.join('\n'), /refused a COPY of 4 row\(s\).*writing them row by row/);
      assert.deepEqual(
        (await sql(`SELECT id FROM ${strict} ORDER BY id`)).map((r) => r.id),
        [1, 5],
      );
    });

  it('creates the table from the first batch when asked', async () => {
    const out = await sink({ table: 'made.things', create_table: true, mode: 'upsert', key: ['id'] });
    await out.write(
      records([
        { id: 1, price: 1.5, name: 'a', on: true, tags: ['x'], meta: { k: 1 }, none: null },
        { id: 2, price: 2, name: 'b', on: false, tags: [], meta: {}, none: null },
      ]),
    );
    await out.close();
    const cols = await sql(
      `SELECT column_name AS c, data_type AS t FROM information_schema.columns
        WHERE table_schema = 'made' AND table_name = 'things' ORDER BY ordinal_position`,
    );
    assert.deepEqual(
      cols.map((r) => `${r.c} ${r.t}`),
      [
        'id bigint',
        'price double precision',
        'name text',
        'on boolean',
        'tags jsonb',
        'meta jsonb',
        'none text',
      ],
    );
    assert.deepEqual(await sql(`SELECT id, tags, meta FROM made.things ORDER BY id`), [
      { id: 1, tags: ['x'], meta: { k: 1 } },
      { id: 2, tags: [], meta: {} },
    ]);
    const pk = await sql(
      `SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'made.things'::regclass AND indisprimary`,
    );
    assert.equal(pk[0]!.n, 1);
  });

  for (const method of ['insert', 'copy'])
    it(`keeps integers beyond 2^53 exact: bigint within 64 bits, numeric beyond, in jsonb too (method: ${method})`, async () => {
      const table = `made.big_${method}`;
      const out = await sink({ table, create_table: true, method });
      await out.write(
        records([
          {
            id: 1,
            small: 9007199254740993n,
            wide: 12345678901234567890n,
            doc: { n: -123456789012345678901234567890n },
          },
          { id: 2, small: -9223372036854775808n, wide: -123456789012345678901234567890n, doc: { n: 1 } },
          { id: 3, small: 5, wide: 5, doc: null },
        ]),
      );
      await out.commit();
      await out.close();
      const cols = await sql(
        `SELECT column_name AS c, data_type AS t FROM information_schema.columns
          WHERE table_schema = 'made' AND table_name = $1 ORDER BY ordinal_position`,
        [`big_${method}`],
      );
      assert.deepEqual(
        cols.map((r) => `${r.c} ${r.t}`),
        ['id bigint', 'small bigint', 'wide numeric', 'doc jsonb'],
      );
      assert.deepEqual(
        await sql(`SELECT small::text AS s, wide::text AS w, doc::text AS d FROM ${table} ORDER BY id`),
        [
          { s: '9007199254740993', w: '12345678901234567890', d: '{"n": -123456789012345678901234567890}' },
          { s: '-9223372036854775808', w: '-123456789012345678901234567890', d: '{"n": 1}' },
          { s: '5', w: '5', d: null },
        ],
      );
    });

  for (const method of ['insert', 'copy'])
    it(`commits in one transaction with its positions, and skips what the table already holds (method: ${method})`, async () => {
      const once = `once_${method}`;
      await sql(`CREATE TABLE ${once} (id int)`);
      const ctx = testContext({ pipelineName: `once-pipe-${method}` });
      const first = await sink({ table: once, method }, ctx);
      const bad = { id: 'one and a half' };
      assert.equal((await first.write(records([{ id: 0 }, bad, { id: 2 }])))?.rejected?.length, 1);
      assert.deepEqual(await sql(`SELECT * FROM ${once}`), [], 'nothing visible before commit');
      await first.commit();
      await first.write(records([{ id: 3 }], 'p', 3));
      await first.abort();
      assert.deepEqual(
        await sql(`SELECT positions, rejected FROM sluice_checkpoints WHERE pipeline = $1`, [
          `once-pipe-${method}`,
        ]),
        [{ positions: { p: 2 }, rejected: [['p', 1]] }],
      );
      // A resumed attempt reads from an older checkpoint: the rows the table holds are not written
      // again, and the record the table refused is refused again (its error record is not lost).
      const second = await sink({ table: once, method }, ctx);
      const result = await second.write(records([{ id: 0 }, bad, { id: 2 }, { id: 3 }, { id: 4 }]));
      assert.deepEqual(
        result?.rejected?.map((r) => r.record?.value),
        [bad],
      );
      await second.close();
      assert.deepEqual(
        (await sql(`SELECT id FROM ${once} ORDER BY id`)).map((r) => r.id),
        [0, 2, 3, 4],
      );
      // Without exactly_once the same records load again.
      const again = await sink({ table: once, exactly_once: false, method }, ctx);
      await again.write(records([{ id: 0 }]));
      await again.close();
      assert.equal((await sql(`SELECT count(*)::int AS n FROM ${once}`))[0]!.n, 5);
    });

  it('survives a dropped connection: a retriable error while nothing is pending, a failed run when rows are', async () => {
    await sql(`CREATE TABLE dropped (id int)`);
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void warnings.push(m), error() {} };
    const out = await sink({ table: 'dropped' }, testContext({ logger, pipelineName: 'dropped-pipe' }));
    const killOthers = () =>
      sql(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
    await out.write(records([{ id: 0 }, { id: 1 }]));
    await out.commit();
    await killOthers();
    // Nothing uncommitted was lost: the engine may retry the batch, which reconnects.
    const batch = records([{ id: 2 }], 'p', 2);
    await assert.rejects(
      out.write(batch),
      (err: SluiceError) => err.code === 'SLUICE_SINK_IO' && err.retriable,
    );
    assert.match(warnings.at(-1)!, /connection to .* was lost.*the batch is retried on a new connection/);
    assert.equal(await out.write(batch), undefined);
    await killOthers();
    // Batch 2 was in the open transaction and is gone with it: retrying batch 3 alone would lose it.
    await assert.rejects(
      out.write(records([{ id: 3 }], 'p', 3)),
      (err: SluiceError) => err.code === 'SLUICE_SINK_ROLLED_BACK' && err.retriable,
    );
    assert.match(warnings.at(-1)!, /rolled back: the run fails and resumes from its checkpoint/);
    await out.abort();
    assert.deepEqual(
      (await sql(`SELECT id FROM dropped ORDER BY id`)).map((r) => r.id),
      [0, 1],
    );
  });

  it('fails on a missing table unless create_table, naming it', async () => {
    const out = await sink({ table: 'nowhere' });
    await assert.rejects(
      out.write(records([{ a: 1 }])),
      /table public\.nowhere does not exist \(set create_table/,
    );
    await out.abort();
  });
});

describe('postgres parallel reads', () => {
  const sorted = (rs: SluiceRecord[]) =>
    rs.map((r) => r.value).sort((a, b) => (a.id as number) - (b.id as number));
  let single: SluiceRecord[];

  before(async () => {
    // Keys with gaps and outliers, so some splits are sparse and one is empty.
    await sql(`CREATE TABLE par (${TYPES})`);
    await sql(
      `INSERT INTO par
       SELECT id, (id * 1.25)::numeric, id::bigint * 1000000000000, CASE WHEN id % 7 = 0 THEN 9223372036854775807 END,
              id / 3.0, 'row ' || id, '2024-01-01'::timestamptz + id * interval '1.000001 second',
              '2024-01-01'::timestamp + id * interval '1 minute', '2024-01-01'::date + id % 400,
              jsonb_build_object('id', id, 'tags', jsonb_build_array('a', id)), json_build_object('k', id % 2 = 0),
              ARRAY[id, id + 1], ARRAY['x' || id, NULL], ARRAY[id / 7.0], decode(lpad(to_hex(id), 8, '0'), 'hex'),
              md5(id::text)::uuid, id % 2 = 0
         FROM (SELECT g * 3 AS id FROM generate_series(1, 200) g
               UNION ALL SELECT 1000 + g FROM generate_series(1, 50) g
               UNION ALL VALUES (-40), (1000)) k`,
    );
    await sql(`CREATE TABLE par_empty (id bigint PRIMARY KEY, v text)`);
    single = await readValues({ table: 'par' });
    assert.equal(single.length, 252);
  });

  for (const parallelism of [1, 3, 4, 16]) {
    it(`reads the same rows with the same types as a single reader (parallelism ${parallelism})`, async () => {
      const ctx = testContext({ batchSize: 16 });
      const s = await source({ table: 'par', parallelism, split_by: 'id' }, ctx);
      const batches = await readAll(s);
      await s.close();
      const rows = batches.flatMap((b) => b.records);
      assert.deepEqual(sorted(rows), sorted(single));
      assert.deepEqual(
        checkSameRecords(
          rows.map((r) => r.value),
          single.map((r) => r.value),
        ),
        [],
      );
      assert.deepEqual(s.progress?.(), { recordsTotal: 252 });
      // One partition per split, named by its key range; the offset is the row's key, increasing.
      const partitions = new Map<string, number[]>();
      for (const r of rows) {
        const { partition, offset } = r.meta.position!;
        assert.equal(offset, r.value.id);
        partitions.set(partition, [...(partitions.get(partition) ?? []), offset]);
      }
      // Keys -40..1050 with gaps: the splits that hold a key, of `parallelism` even ranges.
      const expected = evenSplits(-40n, 1050n, parallelism)
        .filter((r) =>
          single.some(
            (x) =>
              BigInt(x.value.id as number) >= (r.lo ?? -1000n) &&
              BigInt(x.value.id as number) <= (r.hi ?? 10000n),
          ),
        )
        .map((r) => splitPartition('postgres:public.par', 'id', r));
      assert.deepEqual([...partitions.keys()].sort(), expected.sort());
      if (parallelism === 16) assert.ok(expected.length < 16, 'some ranges hold no key');
      else assert.equal(expected.length, parallelism);
      for (const [partition, offsets] of partitions)
        assert.deepEqual(
          offsets,
          [...offsets].sort((a, b) => a - b),
          `${partition} in key order`,
        );
    });
  }

  it('defaults split_by to the primary key, and splits by a timestamptz key', async () => {
    const byPk = await readValues({ table: 'par', parallelism: 3 });
    assert.deepEqual(sorted(byPk), sorted(single));
    await sql(`CREATE TABLE par_ts (at timestamptz PRIMARY KEY, id int NOT NULL)`);
    await sql(
      `INSERT INTO par_ts SELECT '2024-01-01'::timestamptz + g * interval '1 hour' + g * interval '3 microseconds', g
         FROM generate_series(1, 100) g`,
    );
    const one = await readValues({ table: 'par_ts' });
    const three = await readValues({ table: 'par_ts', parallelism: 3 });
    assert.deepEqual(sorted(three), sorted(one));
    assert.equal(new Set(three.map((r) => r.meta.position!.partition)).size, 3);
    const first = three.find((r) => r.value.id === 1)!;
    assert.equal(first.meta.position!.offset, Date.UTC(2024, 0, 1, 1) * 1000 + 3);
  });

  it('reads nothing from an empty table', async () => {
    const s = await source({ table: 'par_empty', parallelism: 4 });
    assert.deepEqual(await readAll(s), []);
    assert.deepEqual(s.progress?.(), { recordsTotal: 0 });
    await s.close();
  });

  it('resumes from mid-split positions: each remaining row once, also with another parallelism', async () => {
    const all = await readValues({ table: 'par', parallelism: 3 }, testContext({ batchSize: 10 }));
    const parts = [...new Set(all.map((r) => r.meta.position!.partition))].sort();
    assert.equal(parts.length, 3);
    // Split 0 committed its first 20 rows, split 2 its first row, split 1 nothing.
    const committed = new Map<string, number>();
    const inSplit = (p: string) => all.filter((r) => r.meta.position!.partition === p);
    committed.set(parts[0]!, inSplit(parts[0]!)[19]!.meta.position!.offset);
    committed.set(parts[2]!, inSplit(parts[2]!)[0]!.meta.position!.offset);
    const resume = Object.fromEntries(committed);
    const done = all.filter((r) => {
      const held = committed.get(r.meta.position!.partition);
      return held !== undefined && r.meta.position!.offset <= held;
    });
    for (const parallelism of [3, 4, 1]) {
      const ctx = testContext({ batchSize: 7, resume });
      const s = await source({ table: 'par', parallelism, split_by: 'id' }, ctx);
      const rest = (await readAll(s)).flatMap((b) => b.records);
      assert.deepEqual(s.progress?.(), { recordsTotal: 252 - done.length });
      await s.close();
      assert.equal(rest.length, 252 - done.length, `parallelism ${parallelism}`);
      assert.deepEqual(sorted([...done, ...rest]), sorted(single), `parallelism ${parallelism}`);
      // The splits that committed carry on under their own names, past their offsets.
      for (const r of rest) {
        const held = committed.get(r.meta.position!.partition);
        if (held !== undefined) assert.ok(r.meta.position!.offset > held);
      }
    }
    // A checkpoint of a single reader cannot be resumed in splits, and the other way round.
    await assert.rejects(
      readValues({ table: 'par', parallelism: 2 }, testContext({ resume: { 'postgres:public.par': 5 } })),
      /written by a single reader/,
    );
    await assert.rejects(
      readValues({ table: 'par' }, testContext({ resume })),
      /written by a read in splits: resume with the same split_by/,
    );
  });

  it('reads one snapshot in every split: rows changed during the read are not seen', async () => {
    await sql(`CREATE TABLE par_snap (LIKE par INCLUDING ALL)`);
    await sql(`INSERT INTO par_snap SELECT * FROM par`);
    const s = await source({ table: 'par_snap', parallelism: 4 }, testContext({ batchSize: 5 }));
    const iterator = s.read()[Symbol.asyncIterator]();
    const rows = [...((await iterator.next()).value?.records ?? [])];
    // Changes in every split's range, committed after the read began.
    await sql(`DELETE FROM par_snap WHERE id > 1000 OR id IN (300, 600)`);
    await sql(`UPDATE par_snap SET t = 'changed' WHERE id IN (3, 501, 999)`);
    await sql(`INSERT INTO par_snap (id, t) VALUES (601, 'late'), (-100, 'early'), (2000, 'after')`);
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) rows.push(...r.value.records);
    await s.close();
    assert.deepEqual(sorted(rows), sorted(single));
  });

  it('refuses a split column that is not unique, nullable or of another type', async () => {
    await sql(
      `CREATE TABLE par_bad (id int PRIMARY KEY, n int NOT NULL, u int UNIQUE, t text UNIQUE NOT NULL)`,
    );
    await assert.rejects(
      readValues({ table: 'par_bad', parallelism: 2, split_by: 'n' }),
      /needs a unique index/,
    );
    await assert.rejects(readValues({ table: 'par_bad', parallelism: 2, split_by: 'u' }), /must be NOT NULL/);
    await assert.rejects(
      readValues({ table: 'par_bad', parallelism: 2, split_by: 't' }),
      /must be smallint, integer, bigint, timestamp/,
    );
    await assert.rejects(readValues({ table: 'nokey', parallelism: 2 }), /no primary key: set split_by/);
  });
});

describe('postgres sink method: copy', () => {
  it('writes every type exactly as the insert method does, escaping text, arrays, json and bytea', async () => {
    await sql(`CREATE TABLE copy_src (${TYPES})`);
    await sql(`CREATE TABLE copy_by_insert (${TYPES})`);
    await sql(`CREATE TABLE copy_by_copy (${TYPES})`);
    await sql(
      `INSERT INTO copy_src VALUES (1, 12345678901234567890.123456789, 42, 9223372036854775807, 1.5, 'héllo',
        '2024-05-01 14:34:56.123456+02', '2024-05-01 12:34:56.5', '2024-05-01', '{"a":[1,{"b":null}],"s":"x"}',
        '{"k":true}', '{1,2,3}', '{a,"b,c",NULL}', '{1.10,2}', '\\x000102ff', '0b0e3c1e-4c8a-4d1e-9f2a-6d1c7b3e9a10', true),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
    );
    // The characters COPY's text format escapes, in every kind of column that holds text.
    const tricky = 'tab\there\nnew line\\back\\\\slash "q" \\N \r, {a}';
    await sql(
      `INSERT INTO copy_src VALUES (3, -0.000001, -9007199254740991, -9223372036854775808, -1e-300, $1,
        'infinity', '-infinity', '4713-01-01 BC', $2, '"just a string"', '{}', $3, '{NaN}', $4,
        '00000000-0000-0000-0000-000000000000', false),
        (4, 0, 0, 0, 0, '', '1999-12-31 23:59:59.999999+00', '2000-01-01 00:00:00', '2000-02-29', '[]', '[null]',
        '{NULL}', $5, '{}', '\\x', 'ffffffff-ffff-ffff-ffff-ffffffffffff', NULL)`,
      [
        tricky,
        JSON.stringify({ 'k\t': tricky, u: 'ü€😀', n: 1.5e300, nested: [tricky, null] }),
        [tricky, 'nl\nx', 'bs\\', null],
        Buffer.from([0x5c, 0x0a, 0x09, 0x0d, 0x4e, 0x00]),
        ['', 'NULL', '\\N', 'a\\\\b', 'x"y', ',{}'],
      ],
    );
    const rows = await readValues({ table: 'copy_src' });
    assert.equal(rows.length, 4);
    assert.equal(rows[2]!.value.t, tricky);
    for (const [table, method] of [
      ['copy_by_insert', 'insert'],
      ['copy_by_copy', 'copy'],
    ] as const) {
      const out = await sink({ table, method });
      assert.equal(await out.write(rows), undefined, method);
      await out.close();
    }
    const byCopy = await readValues({ table: 'copy_by_copy' });
    assert.deepEqual(
      byCopy.map((r) => r.value),
      rows.map((r) => r.value),
    );
    assert.deepEqual(
      byCopy.map((r) => r.value),
      (await readValues({ table: 'copy_by_insert' })).map((r) => r.value),
    );
    // Compared as PostgreSQL prints them, too: nothing was changed on the way.
    const text = `SELECT t.*::text AS row FROM %s t ORDER BY id`;
    assert.deepEqual(
      await sql(text.replace('%s', 'copy_by_copy')),
      await sql(text.replace('%s', 'copy_src')),
    );
  });

  it('copies a field-less record and records with different fields, absent fields taking defaults', async () => {
    await sql(`CREATE TABLE copy_defaults (id serial PRIMARY KEY, a text DEFAULT 'dflt', b int)`);
    // Which statement wrote each row: COPY per set of fields, INSERT for the record without fields.
    await sql(`CREATE TABLE copy_log (b int, query text)`);
    await sql(`CREATE FUNCTION log_query() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO copy_log VALUES (NEW.b, split_part(current_query(), ' ', 1)); RETURN NEW; END $$`);
    await sql(
      `CREATE TRIGGER log_query BEFORE INSERT ON copy_defaults FOR EACH ROW EXECUTE FUNCTION log_query()`,
    );
    const out = await sink({ table: 'copy_defaults', method: 'copy' });
    assert.equal(await out.write(records([{ a: 'x', b: 1 }, { b: 2 }, {}, { a: null, b: 4 }])), undefined);
    await out.close();
    assert.deepEqual(await sql(`SELECT b, query FROM copy_log ORDER BY b NULLS LAST`), [
      { b: 1, query: 'COPY' },
      { b: 2, query: 'COPY' },
      { b: 4, query: 'COPY' },
      { b: null, query: 'INSERT' },
    ]);
    assert.deepEqual(await sql(`SELECT a, b FROM copy_defaults ORDER BY b NULLS LAST`), [
      { a: 'x', b: 1 },
      { a: 'dflt', b: 2 },
      { a: null, b: 4 },
      { a: 'dflt', b: null },
    ]);
  });
});

describe('postgres checkpoint store', () => {
  const checkpoint = (n: number) => ({
    pipeline: 'cp-pipe',
    run_id: `run-${n}`,
    positions: { 'postgres:public.orders#id[*,10]': n, other: 2 },
    saved_at: new Date(Date.UTC(2024, 0, 1, 0, 0, n)).toISOString(),
    final: false,
    records: { read: n, written: n, failed: 0 },
  });

  it('saves, loads, replaces and clears one checkpoint per key', async () => {
    const a = new PostgresCheckpointStore(store.url, 'pipe-a');
    const b = new PostgresCheckpointStore(store.url, 'pipe-b');
    try {
      assert.equal(await a.load(), undefined);
      await a.save(checkpoint(1));
      await a.save(checkpoint(2));
      await b.save({ ...checkpoint(9), pending: { sinks: { out: { files: ['x'] } } } });
      assert.deepEqual(await a.load(), checkpoint(2));
      assert.deepEqual(await b.load(), { ...checkpoint(9), pending: { sinks: { out: { files: ['x'] } } } });
      assert.deepEqual(await sql(`SELECT key FROM public.sluice_state_checkpoints ORDER BY key`), [
        { key: 'pipe-a' },
        { key: 'pipe-b' },
      ]);
      await a.clear();
      assert.equal(await a.load(), undefined);
      assert.deepEqual((await b.load())?.run_id, 'run-9');
      await a.clear();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps its table in the schema the URL search_path names', async () => {
    await sql(`CREATE SCHEMA cp_state`);
    const u = new URL(store.url);
    u.searchParams.set('options', '-c search_path=cp_state,public');
    const s = new PostgresCheckpointStore(u.toString(), 'in-schema');
    try {
      await s.save(checkpoint(3));
      assert.deepEqual(await s.load(), checkpoint(3));
      assert.match(s.location, /table cp_state\.sluice_state_checkpoints key "in-schema"/);
      assert.deepEqual(await sql(`SELECT key FROM cp_state.sluice_state_checkpoints`), [
        { key: 'in-schema' },
      ]);
    } finally {
      await s.close();
    }
  });

  it('refuses a corrupt checkpoint naming the table and key, and fails cleanly without a server', async () => {
    const s = new PostgresCheckpointStore(store.url, 'corrupt');
    try {
      await s.save(checkpoint(4));
      await sql(`UPDATE sluice_state_checkpoints SET checkpoint = '{"pipeline": 1}' WHERE key = 'corrupt'`);
      await assert.rejects(s.load(), (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_CHECKPOINT');
        assert.match(err.message, /public\.sluice_state_checkpoints key "corrupt" is corrupt: pipeline: /);
        return true;
      });
    } finally {
      await s.close();
    }
    const down = new PostgresCheckpointStore('postgres://sluice@127.0.0.1:9/none', 'k');
    await assert.rejects(down.save(checkpoint(5)), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_CHECKPOINT');
      assert.match(err.message, /cannot save the checkpoint postgres 127\.0\.0\.1:9\/none/);
      return true;
    });
    await down.close();
  });
});

describe('postgres conformance', () => {
  before(async () => {
    await sql(`CREATE TABLE conf_src (id int PRIMARY KEY, v text)`);
    await sql(`INSERT INTO conf_src SELECT g, 'v' || g FROM generate_series(1, 60) g`);
    await sql(`CREATE TABLE conf_sink (id bigint, name text, amount integer, active boolean)`);
  });

  sourceConformance('postgres', {
    create: (ctx) => source({ table: 'conf_src' }, ctx),
    expectedRecords: 60,
  });

  sourceConformance('postgres, parallelism 3', {
    create: (ctx) => source({ table: 'conf_src', parallelism: 3 }, ctx),
    expectedRecords: 60,
  });

  sinkConformance('postgres', {
    create: (ctx) => sink({ table: 'conf_sink' }, ctx),
    reset: async () => {
      await sql(`TRUNCATE conf_sink`);
      await sql(`DELETE FROM sluice_checkpoints WHERE sink = 'public.conf_sink'`).catch(() => {});
    },
    readBack: async () => (await sql(`SELECT id, name, amount, active FROM conf_sink`)) as RecordValue[],
    unencodable: { id: 7, name: 'x', amount: 'not a number', active: true },
  });

  sinkConformance('postgres, method copy', {
    create: (ctx) => sink({ table: 'conf_sink', method: 'copy' }, ctx),
    reset: async () => {
      await sql(`TRUNCATE conf_sink`);
      await sql(`DELETE FROM sluice_checkpoints WHERE sink = 'public.conf_sink'`).catch(() => {});
    },
    readBack: async () => (await sql(`SELECT id, name, amount, active FROM conf_sink`)) as RecordValue[],
    unencodable: { id: 7, name: 'x', amount: 'not a number', active: true },
  });
});

describe('postgres in a pipeline run, SIGKILLed and resumed', () => {
  let work: string;
  before(async () => {
    work = await fs.mkdtemp(path.join(store.dir, 'runs-'));
  });

  const COUNT = 3000;

  /** Kills the job inside checkpoint `at`, its checkpoints in `dir/state`. */
  const killedJob = (dir: string, at: number, when: 'before-save' | 'after-save') =>
    killedInCheckpoint(dir, { store: { location: dir, key: 'state' }, at, when });

  /** Resumes the job in this process, as the next attempt, from its saved checkpoint. */
  async function resume(dir: string) {
    const cp = await new FileCheckpointStore(path.join(dir, 'state')).load();
    assert.ok(cp && Object.keys(cp.positions).length, 'a checkpoint was saved before the kill');
    const pipeline = await loadPipeline({
      file: path.join(dir, 'pipeline.yaml'),
      registry: defaultRegistry(),
    });
    const run = new PipelineRun({
      pipeline,
      runId: 'job-2',
      runDir: path.join(dir, 'run2'),
      logger: silent,
      resume: { positions: cp.positions, pending: cp.pending },
    });
    const summary = await run.run();
    assert.equal(summary.status, 'succeeded', JSON.stringify(summary));
    return { cp, summary };
  }

  for (const [at, when, method] of [
    [3, 'before-save', 'insert'],
    [7, 'after-save', 'insert'],
    [3, 'before-save', 'copy'],
  ] as const) {
    it(`generate → postgres (${method}): killed ${when} of checkpoint ${at}, resumed: every row once`, async () => {
      const dir = await fs.mkdtemp(path.join(work, 'gen-'));
      const table = `gen_${when.replace('-', '_')}_${method}`;
      await fs.writeFile(
        path.join(dir, 'pipeline.yaml'),
        `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: gen-to-pg-${at}-${method} }
source:
  generate:
    count: ${COUNT}
    seed: 7
    fields: { id: seq, v: "int(1, 1000000)", s: "string(1, 8) | null(0.2)" }
sinks:
  - postgres: { url: "${store.url}", table: ${table}, create_table: true, method: ${method} }
settings: { batch_size: 100, checkpoint_interval: 0ms }
`,
      );
      await killedJob(dir, at, when);
      const partial = (await sql(`SELECT count(*)::int AS n FROM ${table}`))[0]!.n as number;
      assert.ok(partial > 0 && partial < COUNT, `the kill left part of the rows: ${partial}`);
      const { cp } = await resume(dir);
      // Killed before the save, the table holds rows past the checkpoint that the resumed run reads again.
      if (when === 'before-save')
        assert.ok(partial > (cp.positions.generate ?? 0) + 1, 'rows past the checkpoint');
      const [stats] = await sql(
        `SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, min(id)::int AS lo, max(id)::int AS hi FROM ${table}`,
      );
      assert.deepEqual(stats, { n: COUNT, d: COUNT, lo: 1, hi: COUNT });
    });
  }

  it('postgres → files: killed after a checkpoint, resumed: every row once', async () => {
    await sql(`CREATE TABLE big_src (id int PRIMARY KEY, payload jsonb, at timestamptz)`);
    await sql(
      `INSERT INTO big_src SELECT g, jsonb_build_object('g', g), '2024-01-01'::timestamptz + g * interval '1 minute'
         FROM generate_series(1, ${COUNT}) g`,
    );
    const dir = await fs.mkdtemp(path.join(work, 'pg-'));
    await fs.writeFile(
      path.join(dir, 'pipeline.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: pg-to-files }
source:
  postgres: { url: "${store.url}", table: big_src }
sinks:
  - file: { path: out/, format: jsonl }
settings: { batch_size: 100, checkpoint_interval: 0ms }
`,
    );
    await killedJob(dir, 5, 'after-save');
    await resume(dir);
    const ids: number[] = [];
    for (const f of await fs.readdir(path.join(dir, 'out')))
      if (f.endsWith('.jsonl'))
        for (const line of (await fs.readFile(path.join(dir, 'out', f), 'utf8')).split('\n'))
          if (line) {
            const v = JSON.parse(line) as { id: number; payload: { g: number }; at: string };
            assert.equal(v.payload.g, v.id);
            ids.push(v.id);
          }
    ids.sort((a, b) => a - b);
    assert.equal(ids.length, COUNT);
    assert.deepEqual(
      ids,
      Array.from({ length: COUNT }, (_, i) => i + 1),
    );
  });
});
