import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DuckDBConnection } from '@duckdb/node-api';
import { BatchFeed, feedViewSql, registerBatchScan } from './batch-scan.ts';
import { newOneThreadConnection } from './duckdb.ts';
import { shapeOf } from './shape.ts';
import { fromDuckDB, sqlValueConverter } from './values.ts';

const ROW = '__row';

/** The query's rows as record values, as the DuckDB path converts them. */
async function rows(conn: DuckDBConnection, sql: string): Promise<unknown[]> {
  const result = await conn.runAndReadAll(sql);
  return result.convertRowObjects(sqlValueConverter).map((row) => fromDuckDB(row, true));
}

describe('the batch scan (records read in place by DuckDB)', () => {
  let conn: DuckDBConnection;
  before(async () => {
    conn = await newOneThreadConnection();
    registerBatchScan(conn);
  });
  after(() => conn.closeSync());

  test('every shape of value comes back exactly, with its row id; NULLs stay NULL', async () => {
    const value = {
      i: 9007199254740993n,
      h: -(2n ** 100n),
      d: 0.1,
      s: 'a\u0000b é',
      b: true,
      t: new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 123)),
      x: Buffer.from([0, 255, 7]),
      l: [1, null, 3],
      st: { a: 'x', n: [{ k: 1.5 }] },
    };
    const columns = Object.entries(value).map(([name, v]) => ({ name, shape: shapeOf(v) }));
    const feed = new BatchFeed(ROW, columns);
    try {
      const empty = Object.fromEntries(Object.keys(value).map((k) => [k, null]));
      feed.load([value, empty], [41, 42]);
      const got = await rows(conn, `SELECT * FROM ${feed.sql}`);
      assert.deepEqual(got, [
        { [ROW]: 41, ...value },
        { [ROW]: 42, ...empty },
      ]);
    } finally {
      feed.close();
    }
  });

  test('a prepared query reads the rows loaded before each run, across chunks of 2,048', async () => {
    const feed = new BatchFeed(ROW, [{ name: 's', shape: { k: 'VARCHAR' } }]);
    try {
      await conn.run(`CREATE TEMP VIEW scan_view AS ${feedViewSql(feed, ['s', 'absent'], ['m'])}`);
      const query = await conn.prepare(
        `SELECT ${ROW}, upper(s) AS u, absent, m FROM scan_view WHERE s <> 'skip'`,
      );
      for (const n of [3, 5000, 0]) {
        const values = Array.from({ length: n }, (_, i) => ({ s: i === 1 ? 'skip' : `v${i}` }));
        feed.load(
          values,
          values.map((_, i) => i * 10),
        );
        const got = (await query.runAndReadAll()).getRowsJS();
        const want = values.flatMap((v, i) =>
          v.s === 'skip' ? [] : [[i * 10, v.s.toUpperCase(), null, null]],
        );
        assert.equal(got.length, want.length, `rows for a batch of ${n}`);
        assert.deepEqual(got, want);
      }
      query.destroySync();
    } finally {
      feed.close();
    }
  });

  test('a closed feed is refused with its id; a value that does not fit fails the query, not the process', async () => {
    const feed = new BatchFeed(ROW, [{ name: 'n', shape: { k: 'BIGINT' } }]);
    feed.close();
    await assert.rejects(conn.run(`SELECT * FROM ${feed.sql}`), /__sluice_batch\(\d+\): no such batch/);
    const bad = new BatchFeed(ROW, [{ name: 'n', shape: { k: 'BIGINT' } }]);
    try {
      bad.load([{ n: 2n ** 64n }], [0]);
      await assert.rejects(conn.run(`SELECT * FROM ${bad.sql}`), /loading records into DuckDB failed/);
      bad.load([{ n: 7 }], [0]);
      assert.deepEqual(await rows(conn, `SELECT n FROM ${bad.sql}`), [{ n: 7 }]);
    } finally {
      bad.close();
    }
  });
});
