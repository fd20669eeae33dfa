import assert from 'node:assert/strict';
import { test } from 'node:test';
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
