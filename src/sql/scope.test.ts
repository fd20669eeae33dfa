/**
 * Disagreements with DuckDB that the conformance suite's wider scope surfaced (queries run under a
 * file's setting that does not change their answer, derived tables, subqueries over constants):
 * each case compares Sluice, compiled or on the DuckDB path, with DuckDB itself.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SluiceError } from '../sdk/errors.ts';
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

  test('an ISO year before 0 (%G), which DuckDB writes wrapped, is written as DuckDB writes it', async () => {
    await sameOnBothPaths("SELECT strftime(d, '%G') AS g FROM input", bc);
    const f = await compileSelect("SELECT strftime(d, '%G') AS g FROM input");
    assert.deepEqual(f({ d: new Date(Date.UTC(2020, 0, 1)) }), { g: '2020' });
  });
});

/** Compiled SQL gives what Sluice's DuckDB path gives for the record (which reads any year, unlike the oracle's literals). */
async function sameOnBothPaths(sql: string, row: RecordValue): Promise<void> {
  const q = await BatchQuery.open(sql);
  try {
    const r = await q.process([{ value: row, meta: {} }]);
    assert.equal(r.rejected?.[0]?.error.message, undefined, 'DuckDB fails');
    let compiled: unknown;
    try {
      compiled = (await compileSelect(sql))(row);
    } catch (err) {
      if (isComputeOnDuckDB(err)) return; // the record is DuckDB's to compute
      throw err;
    }
    assert.deepEqual(compiled, r.records[0]?.value);
  } finally {
    await q.close();
  }
}

describe('dates before year 1 and infinities', () => {
  const bc = { ts: new Date(Date.UTC(-43, 2, 13, 9, 33, 41, 988)), d: new Date(Date.UTC(-5, 0, 1)) };
  const sqls = [
    // decade divides toward zero (-43 is decade -4), julian sums as DuckDB does
    "SELECT decade(ts) AS a, decade(d) AS b, julian(ts) AS c, date_part('julian', ts) AS e, date_part(['decade', 'julian'], ts) AS f FROM input",
    // beyond ±2^53 µs: DuckDB computes the record
    'SELECT epoch_us(ts) AS u FROM input',
    "SELECT last_day('infinity'::DATE) AS a, last_day('-infinity'::TIMESTAMP) AS b FROM input",
  ];
  for (const sql of sqls) test(sql, () => sameOnBothPaths(sql, bc));

  test('epoch_us beyond ±2^53 hands the record to DuckDB instead of failing it', async () => {
    const f = await compileSelect('SELECT epoch_us(ts) AS u FROM input');
    assert.throws(
      () => f(bc),
      (err) => isComputeOnDuckDB(err),
    );
  });
});

describe('what DuckDB binds, and what its binder refuses', () => {
  const row = { ts: new Date('1962-07-31T12:20:48.124Z'), k: ',', c: [] as number[], x: [1, 2] };
  for (const sql of [
    // DuckDB names ARRAY[...] in parentheses
    'SELECT array[1] || array[2], list_concat(array[1], array[NULL]) FROM input',
    "SELECT array_to_string([1, 2, 3], ',' || '') AS s FROM input",
  ]) {
    test(sql, async () => assert.equal(await compare(sql, row), undefined));
  }

  for (const sql of [
    "SELECT DATE_PART(['year', 'month', 'year'], ts) FROM input",
    'SELECT DATE_PART([], ts) FROM input',
    'SELECT array_to_string([1, 2, 3], k) FROM input',
  ]) {
    test(`refused, as DuckDB refuses it: ${sql}`, async () => {
      const theirs = await oracle(sql, row, 'table');
      assert.equal(theirs.ok, false);
      // at validation, or (a field typed per record: k) for every record
      let f: Awaited<ReturnType<typeof compileSelect>>;
      try {
        f = await compileSelect(sql);
      } catch (err) {
        assert.ok(!(err as SluiceError).details?.beyondSubset, 'refused, not handed to DuckDB');
        return;
      }
      assert.throws(
        () => f(row),
        (err: SluiceError) => err.code === 'SLUICE_EXPR_EVAL' && !isComputeOnDuckDB(err),
      );
    });
  }

  for (const sql of [
    // a list from a list function, empty: its element type is DuckDB's to know
    'SELECT [y for y in c if y IS NOT NULL] AS r FROM input',
    // a table-qualified name a lambda parameter shadows
    'SELECT list_transform(t.x, lambda x: (t.x)[1] + 1 + x) AS r FROM input AS t',
    // a subquery over VALUES or range(), COLUMNS() of the record's fields
    'SELECT (SELECT min(v) FROM (VALUES (k)) AS t(v)) AS m, (SELECT count(*) FROM range(3)) AS n FROM input',
    "SELECT to_hex(COLUMNS('^k$')) FROM input",
  ]) {
    test(`the DuckDB path gives DuckDB's answer: ${sql}`, async () => {
      const plan = await planQuery(sql);
      if (plan.path === 'compiled') return sameOnBothPaths(sql, row);
      assert.equal(plan.path, 'duckdb-batch');
      await compareDuckDBPath(sql, row);
    });
  }
});

describe('the DuckDB path hides its row number from every star', () => {
  const row = { a: 1, b: 2.5, c: 'x' };
  for (const sql of [
    'SELECT list_distinct([COLUMNS(*)]) FROM input',
    'SELECT COLUMNS(*) FROM input',
    'SELECT list_value(COLUMNS(* EXCLUDE (c))) FROM input',
    // a subquery's own star is not input's
    'SELECT *, (SELECT max(r) FROM (SELECT * FROM range(2) t(r))) AS n FROM input',
    'SELECT 1 + 1 AS two FROM input',
  ]) {
    test(sql, async () => {
      for (const loadAll of [false, true]) {
        const q = await BatchQuery.open(sql, { loadAll });
        try {
          const r = await q.process([{ value: row, meta: {} }]);
          const theirs = await oracle(sql, row, 'table');
          assert.ok(theirs.ok);
          assert.deepEqual(
            r.records.map((o) => o.value),
            theirs.rows,
          );
        } finally {
          await q.close();
        }
      }
    });
  }
});

test('the DuckDB path names a shorthand as DuckDB does for a record without fields', () =>
  compareDuckDBPath("SELECT TIMESTAMP '2021-12-01 13:54:48' + INTERVAL 1 DAY FROM input", {}));
