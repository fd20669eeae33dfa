/**
 * A LIST or STRUCT cast to VARCHAR prints each element as DuckDB prints its type: a DECIMAL with its
 * scale (`.500` for DECIMAL(3,3)), a DOUBLE as `1.0`, a DATE without a time, a TIMESTAMP quoted, and a
 * record's list of 1 and 2.5 as the DOUBLE[] DuckDB makes of it. Compiled, and checked against DuckDB.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecordValue } from '../sdk/types.ts';
import { planQuery } from './index.ts';
import { compareRows } from './oracle.ts';

const ROWS: RecordValue[] = [
  {
    l: [1, 2.5],
    s: { a: 1, b: [{ c: 1 }, { c: 2.5 }] },
    n: [[1], [2.5]],
    t: [new Date('2020-01-01T01:02:03Z')],
  },
  { l: [1, null], s: { a: 0.5, b: null }, n: [[], null], t: [] },
  { l: null, s: null, n: null, t: null },
];

for (const expr of [
  'CAST([0.5::DECIMAL(3,3)] AS VARCHAR)',
  'CAST([1.50] AS VARCHAR)',
  'CAST([0.0, -0.5] AS VARCHAR)',
  "CAST({'a': [0.5::DECIMAL(3,3)], 'b': 1.5} AS VARCHAR)",
  'CAST([1::DOUBLE, 1e20] AS VARCHAR)',
  'CAST([1.5::FLOAT] AS VARCHAR)',
  "CAST([DATE '2020-01-01'] AS VARCHAR)",
  "CAST([TIMESTAMP '2020-01-01 01:02:03'] AS VARCHAR)",
  "CAST([{'foo': 1}, {'bar': 2.5}] AS VARCHAR)",
  "CAST(['a b', '1:2', 'NULL', ''] AS VARCHAR)",
  'CAST(l AS VARCHAR)',
  'CAST(s AS VARCHAR)',
  'CAST(n AS VARCHAR)',
  'CAST(t AS VARCHAR)',
  'CAST([l, [0.5]] AS VARCHAR)',
  "CAST({'x': l, 'y': 0.50} AS VARCHAR)",
  "array_to_string(n, ';')",
  'list_string_agg(n)',
]) {
  test(expr, async () => {
    const sql = `SELECT ${expr} AS r FROM input`;
    assert.equal((await planQuery(sql)).path, 'compiled');
    assert.deepEqual(await compareRows(sql, ROWS), []);
  });
}
