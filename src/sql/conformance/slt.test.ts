import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sameValue } from './runner.ts';
import { parseSlt } from './slt.ts';

test('parseSlt: statements, queries with results, loops with ${var}, mode skip and onlyif', () => {
  const text = `# name: x
require icu

statement ok
CREATE TABLE t(i INTEGER)

query I rowsort
SELECT i
FROM t
----
1
2

foreach type <signed>

statement error
SELECT NULL::\${type}
----
Conversion Error

endloop

loop i 0 2

query T
SELECT \${i}
----
\${i}

endloop

mode skip

query I
SELECT 'skipped'
----

mode unskip

onlyif postgres
query I
SELECT 'other engine'
----

skipif postgres
query I
SELECT 'kept'
----
kept
`;
  const recs = parseSlt(text);
  assert.deepEqual(recs[0], { kind: 'command', name: 'require', args: ['icu'], line: 2 });
  assert.deepEqual(recs[1], { kind: 'statement', expect: 'ok', sql: 'CREATE TABLE t(i INTEGER)', line: 4 });
  assert.deepEqual(recs[2], {
    kind: 'query',
    types: 'I',
    sortMode: 'rowsort',
    sql: 'SELECT i\nFROM t',
    expected: ['1', '2'],
    line: 7,
  });
  const errors = recs.filter((r) => r.kind === 'statement' && r.expect === 'error');
  assert.deepEqual(
    errors.map((r) => 'sql' in r && r.sql),
    ['tinyint', 'smallint', 'integer', 'bigint', 'hugeint'].map((t) => `SELECT NULL::${t}`),
  );
  const queries = recs.filter((r) => r.kind === 'query').map((r) => 'sql' in r && r.sql);
  assert.deepEqual(queries, ['SELECT i\nFROM t', 'SELECT 0', 'SELECT 1', "SELECT 'kept'"]);
});

test('sameValue: NaN, the sign of zero, relative 1e-15 only for transcendental results, bigints, Dates, nesting', () => {
  assert.ok(sameValue(Number.NaN, Number.NaN, false));
  assert.ok(!sameValue(-0, 0, false));
  assert.ok(sameValue(-0, -0, false));
  assert.ok(!sameValue(0.1 + 0.2, 0.3, false));
  assert.ok(sameValue(0.1 + 0.2, 0.3, true));
  assert.ok(!sameValue(1, 1 + 1e-14, true));
  assert.ok(sameValue(2n ** 60n, 2n ** 60n, false));
  assert.ok(sameValue(42n, 42, false));
  assert.ok(!sameValue(42n, 42.5, false));
  assert.ok(sameValue(new Date(5), new Date(5), false));
  assert.ok(sameValue([{ a: [1, null] }], [{ a: [1, null] }], false));
  assert.ok(!sameValue({ a: 1, b: 2 }, { b: 2, a: 1 }, false));
  assert.ok(!sameValue('1', 1, false));
  assert.ok(sameValue(null, undefined, false));
});
