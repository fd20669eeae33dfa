/**
 * A string constant in arithmetic: where DuckDB's binder cannot choose between overloads (`'1' + 1`
 * could be DATE + days, `'1' * 2.5` an INTERVAL times a number, `'1' / 2` either) it refuses the
 * query; elsewhere the constant becomes the other operand's type; beside NULL the result is NULL. An explicit cast makes a constant an ordinary value of its type
 * (`'1'::VARCHAR + 1` has no function). Checked against DuckDB.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecordValue } from '../sdk/types.ts';
import { compareRows } from './oracle.ts';

const ROWS: RecordValue[] = [
  { x: 5, d: 2.5 },
  { x: null, d: null },
];

for (const expr of [
  "'1' + 1",
  "'1' - 1",
  "1 - '1'",
  "'1' + CAST(x AS INTEGER)",
  "CAST(x AS INTEGER) + '1'",
  "CAST(x AS INTEGER) - '1'",
  "'1' + x",
  "x - '1'",
  "'1' + d",
  "'1' + NULL",
  "NULL - '1'",
  "'1' * NULL",
  "'1' / NULL",
  "'1' // NULL",
  "'1' ** NULL",
  "'1' * x",
  "'1' / x",
  "x * '1'",
  "x / '1'",
  "'1' * d",
  "'1' * 2.5",
  "'1' * CAST(2 AS FLOAT)",
  "'1' / 2",
  "'1' / CAST(2 AS FLOAT)",
  "2 / '1'",
  "'1' * CAST(x AS SMALLINT)",
  "'1.5' + 1",
  "'1'::VARCHAR + 1",
  "'1' * 2",
  "'1' + 1.5",
  "CAST(1 AS INTEGER) + '1'",
  "CAST(3 AS SMALLINT) + '1'",
]) {
  test(expr, async () => {
    const sql = `SELECT ${expr} AS r FROM input`;
    assert.deepEqual(await compareRows(sql, ROWS), []);
  });
}
