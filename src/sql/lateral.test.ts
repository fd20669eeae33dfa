/**
 * Select-list aliases read by a later select item or by WHERE (lateral aliases): DuckDB reads such
 * a name as the table's column when there is one, else as the alias. Compiled code reads a field
 * holding a value, computes the alias for a record lacking the field, and hands a record whose
 * field is NULL (or a use DuckDB refuses) to DuckDB. Checked per record against DuckDB over a
 * one-row table with exactly the record's fields.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecordValue } from '../sdk/types.ts';
import { compileSelect, planQuery } from './index.ts';
import { perRecordDifferences } from './oracle.ts';

const RECORDS: RecordValue[] = [{}, { x: 5 }, { x: 5, c: 7 }, { x: 5, c: null }, { x: 5, C: 3 }, { c: 'a' }];

const QUERIES = [
  'SELECT 1 AS c, c + 1 AS d FROM input',
  'SELECT 1 AS C, c + 1 AS d FROM input',
  'SELECT x + 1 AS c FROM input WHERE c > 5',
  'SELECT 1 AS c, list_transform([1, 2], lambda y: y + c) AS l FROM input',
  'SELECT 1 AS c, list_transform([1, 2], lambda c: c + 1) AS l FROM input',
  'SELECT [[y] for y in range(3)] AS c, [z for z in c if z IS NOT NULL] AS l FROM input',
  'SELECT c + 1 AS d, 1 AS c FROM input',
  'SELECT c + 1 AS c FROM input',
  'SELECT 1 AS c, 2 AS e, c + e AS d FROM input WHERE d > 2',
  "SELECT 'a' AS c, c || 'x' AS d FROM input",
  'SELECT x + 1 AS a, a + 1 AS b FROM input WHERE b = 7',
  'SELECT a + 1 AS b, x AS a FROM input WHERE b = 6',
  'SELECT 1 AS c, CASE WHEN x > 100 THEN d END AS e, 2 AS d FROM input',
];

for (const sql of QUERIES) {
  test(`lateral alias: ${sql}`, async () => {
    assert.equal((await planQuery(sql)).path, 'compiled');
    // a record without x (every record reads a missing field as NULL), or a NULL field in a lambda's
    // list (an untyped NULL to DuckDB here, a typed column in a table): not what is tested here
    const skip = (error: string) => /column "x" not found|Invalid LIST argument/.test(error);
    assert.deepEqual(await perRecordDifferences(sql, RECORDS, skip), []);
  });
}

test('a record holding the field reads it, one lacking it the alias, both compiled', async () => {
  const f = await compileSelect('SELECT x + 1 AS c FROM input WHERE c > 5');
  assert.deepEqual(f({ x: 5, c: 7 }), { c: 6 });
  assert.deepEqual(f({ x: 5 }), { c: 6 });
});

test('a record lacking the field computes the alias on compiled code; one holding NULL goes to DuckDB', async () => {
  // DuckDB's answers: {x: 5} reads the alias, {c: 7} the column
  const f = await compileSelect("SELECT 'a' AS c, c || 'x' AS d, typeof(c) AS t FROM input");
  assert.deepEqual(f({ x: 5 }), { c: 'a', d: 'ax', t: 'VARCHAR' });
  assert.deepEqual(f({ c: 7 }), { c: 'a', d: '7x', t: 'BIGINT' });
  assert.throws(
    () => f({ c: null }),
    (err: Error & { details?: { computeOnDuckDB?: boolean } }) => err.details?.computeOnDuckDB === true,
  );
});
