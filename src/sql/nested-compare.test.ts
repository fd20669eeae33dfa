/**
 * `=` on LISTs and STRUCTs whose element types differ: DuckDB casts both sides to one type first
 * ([1] = ['1'] compares texts and is true; [1] = [true] compares values), which compiled code does
 * not model. Such a comparison of known types runs on DuckDB; one whose types show only per record
 * hands that record to DuckDB. Checked against DuckDB over each record alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecordValue } from '../sdk/types.ts';
import { planQuery } from './index.ts';
import { perRecordDifferences } from './oracle.ts';

for (const expr of [
  "[1] = ['1']",
  '[1] = [true]',
  "{'a': 1} = {'a': '1'}",
  "[1] IN (['1'])",
  "[1] IS DISTINCT FROM ['1']",
  "[[1]] = ['[1]']",
  "[1.5] <> ['1.5']",
  "[1] = [DATE '2020-01-01']",
]) {
  test(`${expr} runs on DuckDB`, async () => {
    const plan = await planQuery(`SELECT ${expr} AS r FROM input`);
    assert.equal(plan.path, 'duckdb-batch', plan.reason);
  });
}

const ROWS: RecordValue[] = [
  { l: [1], m: ['1'] },
  { l: [1], m: ['1.0'] },
  { l: [1.5], m: ['1.5'] },
  { l: [1], m: [true] },
  { l: [2], m: [true] },
  { l: [1, null], m: [1, null] },
  { l: ['a'], m: ['a'] },
  { l: [[1]], m: ['[1]'] },
  { l: [{ a: 1 }], m: [{ a: '1' }] },
  { l: [new Date('2020-01-01T00:00:00Z')], m: ['2020-01-01 00:00:00'] },
];

for (const sql of [
  'SELECT l = m AS r FROM input',
  'SELECT l <> m AS r FROM input',
  'SELECT l IS NOT DISTINCT FROM m AS r FROM input',
  'SELECT l IN (m) AS r FROM input',
  'SELECT l FROM input WHERE l = m',
]) {
  test(`record lists: ${sql}`, async () => {
    assert.deepEqual(await perRecordDifferences(sql, ROWS), []);
  });
}
