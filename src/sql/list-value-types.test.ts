/**
 * list_value (and [a, b]) of record lists or structs whose element types differ: DuckDB unifies
 * them, casting (a BOOLEAN list with a BIGINT one is BIGINT[][]) or refusing (VARCHAR[] with
 * BIGINT[]). Compiled code hands such a record to DuckDB; checked per record against DuckDB.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecordValue } from '../sdk/types.ts';
import { planQuery } from './index.ts';
import { perRecordDifferences } from './oracle.ts';

const ROWS: RecordValue[] = [
  { a: ['a'], b: [1] },
  { a: [1], b: [2.5] },
  { a: [true], b: [2] },
  { a: [[1]], b: [['x']] },
  { a: { k: 1 }, b: { k: 'x' } },
  { a: { k: 1 }, b: { j: 2.5 } },
  { a: [], b: ['x'] },
  { a: [new Date('2020-01-01T00:00:00Z')], b: ['2020-01-01'] },
];

for (const sql of [
  'SELECT list_value(a, b) AS r FROM input',
  'SELECT [a, b, a] AS r FROM input',
  'SELECT list_value(a, NULL, b) AS r FROM input',
]) {
  test(`record values of different types in one list: ${sql}`, async () => {
    assert.equal((await planQuery(sql)).path, 'compiled');
    assert.deepEqual(await perRecordDifferences(sql, ROWS), []);
  });
}

// a nested record list is typed as one by DuckDB ([[1], [2.5]] is DOUBLE[][]): an element read on
// its own must not keep the narrower type compiled code would give it alone
const NESTED: RecordValue[] = [
  { n: [[1], [2.5]] },
  { n: [[1], ['a']] },
  { n: [[1], [2]] },
  { n: [{ a: 1 }, { a: 0.5 }] },
];
for (const sql of [
  'SELECT list_transform(n, x -> x::VARCHAR) AS r FROM input',
  'SELECT list_transform(n, x -> typeof(x)) AS r FROM input',
  "SELECT array_to_string(n, ';') AS r FROM input",
]) {
  test(`elements of a nested record list: ${sql}`, async () => {
    assert.equal((await planQuery(sql)).path, 'compiled');
    assert.deepEqual(await perRecordDifferences(sql, NESTED), []);
  });
}
