/**
 * Disagreements with DuckDB that the conformance suite's wider scope surfaced (queries run under a
 * file's setting that does not change their answer, derived tables, subqueries over constants):
 * each case compares Sluice, compiled or on the DuckDB path, with DuckDB itself.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RecordValue } from '../sdk/types.ts';
import { BatchQuery } from './batch.ts';
import { compileSelect, isComputeOnDuckDB, planQuery } from './index.ts';
import { compare, oracle } from './oracle.ts';

/** The DuckDB micro-batch path's output for one record, against DuckDB's own. */
async function compareDuckDBPath(sql: string, row: RecordValue): Promise<void> {
  const q = await BatchQuery.open(sql);
  try {
    const r = await q.process([{ value: row, meta: {} }]);
    const theirs = await oracle(sql, row, 'table');
    assert.ok(theirs.ok, `DuckDB fails: ${!theirs.ok && theirs.error}`);
    assert.deepEqual(
      r.records.map((o) => Object.keys(o.value)),
      theirs.rows.map((o) => Object.keys(o)),
    );
  } finally {
    await q.close();
  }
}

describe('column names', () => {
  // INTERVAL n DAY is DuckDB's to_days(CAST(trunc(CAST(n AS DOUBLE)) AS INTEGER)), named unquoted
  const sqls = [
    'SELECT ts + INTERVAL 1 day, ts - INTERVAL 2 second, CAST(1 AS DOUBLE), to_seconds(CAST(n AS DOUBLE)) FROM input',
    'SELECT ts + INTERVAL (n) hour FROM input AS t',
  ];
  const row = { ts: new Date('2021-07-30T07:00:00Z'), n: 3 };
  for (const sql of sqls) {
    test(`compiled: ${sql}`, async () => assert.equal(await compare(sql, row), undefined));
    test(`DuckDB path: ${sql}`, () => compareDuckDBPath(sql, row));
  }
});

describe('strftime', () => {
  const bc = { ts: new Date(Date.UTC(-43, 2, 13, 9, 33, 41, 988)), d: new Date(Date.UTC(-999, 0, 1)) };
  // a negative year is not padded: -43-03-13
  // (the oracle's SQL literals cannot spell such a year: DuckDB's own path reads the record)
  test('a year before 0 is written unpadded, as DuckDB writes it: -43-03-13', async () => {
    const sql =
      "SELECT strftime(ts, '%Y-%m-%d %H:%M:%S.%f %Z') AS a, strftime(ts, '%c|%x') AS b, strftime(d, '%Y') AS c FROM input";
    const q = await BatchQuery.open(sql);
    try {
      const r = await q.process([{ value: bc, meta: {} }]);
      assert.deepEqual(r.records[0]?.value, {
        a: '-43-03-13 09:33:41.988000 ',
        b: '-43-03-13 09:33:41|-43-03-13',
        c: '-999',
      });
      assert.deepEqual((await compileSelect(sql))(bc), r.records[0]?.value);
    } finally {
      await q.close();
    }
  });

  test('an ISO year before 0 (%G), which DuckDB writes wrapped, is computed on DuckDB', async () => {
    const f = await compileSelect("SELECT strftime(d, '%G') AS g FROM input");
    assert.throws(
      () => f(bc),
      (err) => isComputeOnDuckDB(err),
    );
    assert.deepEqual(f({ d: new Date(Date.UTC(2020, 0, 1)) }), { g: '2020' });
  });

  test('a format DuckDB cannot parse runs on DuckDB, which fails only the values it formats', async () => {
    const sql = "SELECT strftime(ts, '%C') AS c FROM input";
    assert.equal((await planQuery(sql)).path, 'duckdb-batch');
    const q = await BatchQuery.open(sql);
    try {
      const r = await q.process([
        { value: { ts: null }, meta: {} },
        { value: bc, meta: {} },
      ]);
      assert.deepEqual(
        r.records.map((o) => o.value),
        [{ c: null }],
      );
      assert.match(r.rejected?.[0]?.error.message ?? '', /Unrecognized format for strftime\/strptime: %C/);
    } finally {
      await q.close();
    }
  });
});
