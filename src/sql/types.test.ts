/**
 * FLOAT, HUGEINT/UHUGEINT, the unsigned integers, BLOB and MAP: each expression must stay on the
 * compiled path and agree with DuckDB on every record (value, column name, failure); the ones the
 * compiler does not model must go to DuckDB, never fail. Records holding what compiled SQL cannot
 * answer exactly (integers beyond ±2^53) are evaluated on DuckDB, on the sql and filter steps.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ComponentContext, SluiceRecord } from '../sdk/types.ts';
import { createFilterStep, filterStep } from '../steps/filter/index.ts';
import { createSqlStep, sqlStep } from '../steps/sql/index.ts';
import { planQuery } from './index.ts';
import { compare } from './oracle.ts';
import { sameValue } from './same-value.ts';
import { ROWS } from './testdata.ts';

const RECORDS = [
  ...ROWS,
  { i: 255, n: -128, d: 3.4e38, s: '\\xAA\\x00b', u: 'x', b: false, z: null, num: '18446744073709551615' },
  { i: 65535, n: 4294967295, d: 0.1, s: 'a\\', u: 'é', b: true, z: null, num: '-1' },
];

const COMPILED: string[] = [
  // FLOAT
  'd::FLOAT',
  'CAST(d AS REAL)',
  'i::FLOAT',
  'n::FLOAT',
  '(d::FLOAT)::VARCHAR',
  '(i::FLOAT / 3)::VARCHAR',
  '0.1::FLOAT',
  '(0.1::FLOAT)::DOUBLE',
  'd::FLOAT + i',
  'd::FLOAT * d::FLOAT',
  'd::FLOAT + d',
  'd::FLOAT + 1.5',
  'i::FLOAT / 0',
  'i::FLOAT // 2',
  'i::FLOAT // 0',
  'd::FLOAT % 2',
  'd::FLOAT % 0',
  '3.0e38::FLOAT * 10',
  'num::FLOAT',
  'TRY_CAST(num AS FLOAT)',
  "'1e39'::FLOAT",
  'd::FLOAT::INTEGER',
  'd::FLOAT::DECIMAL(10,4)',
  'd::FLOAT = 2.5',
  '0.1::FLOAT = 0.1',
  '0.1::FLOAT = 0.1::DOUBLE',
  '16777217 = 16777217::FLOAT',
  'd::FLOAT < i',
  '-(d::FLOAT)',
  'typeof(d::FLOAT + 1)',
  'typeof(i::FLOAT / 2)',
  'sqrt(d::FLOAT)',
  'coalesce(d::FLOAT, i)',
  // unsigned integers
  'i::UTINYINT',
  'n::UTINYINT',
  'i::USMALLINT',
  'n::UINTEGER',
  'i::UBIGINT',
  'TRY_CAST(n AS UINTEGER)',
  'num::UBIGINT',
  'num::UINTEGER',
  'd::UTINYINT',
  'i::UTINYINT + 1',
  'i::UTINYINT + 1000',
  'i::UTINYINT - 8',
  'i::UTINYINT * 2',
  'i::UTINYINT // 2',
  'i::UTINYINT % 0',
  'i::UTINYINT + n::TINYINT',
  'i::USMALLINT * 300',
  'i::UINTEGER * i::UINTEGER',
  'i::UBIGINT + n',
  'n::UINTEGER - i::UINTEGER',
  '-(i::UTINYINT)',
  '-(i::UINTEGER)',
  'i::UTINYINT::TINYINT',
  'n::TINYINT::UTINYINT',
  'i::UTINYINT = 7',
  'i::UTINYINT < n',
  'i::UTINYINT IN (7, 255)',
  'typeof(i::UTINYINT + n::TINYINT)',
  'typeof(coalesce(i::UTINYINT, n::TINYINT))',
  'typeof(i::UBIGINT + n)',
  'typeof(i::USMALLINT + 1)',
  'CASE WHEN b THEN i::UTINYINT ELSE n END',
  '(i::UTINYINT)::VARCHAR',
  // 128-bit integers
  'i::HUGEINT',
  'i::HUGEINT * 1000000000000000 * 100',
  '(i::HUGEINT * 1000000000000000 * 100)::VARCHAR',
  'i::HUGEINT * 1e30::HUGEINT',
  "'170141183460469231731687303715884105727'::HUGEINT + i",
  "'-170141183460469231731687303715884105728'::HUGEINT - i",
  "'340282366920938463463374607431768211455'::UHUGEINT + i::UHUGEINT",
  '-(i::HUGEINT)',
  'i::HUGEINT // 2',
  'i::HUGEINT % 0',
  'i::HUGEINT / 2',
  'i::HUGEINT ** 2',
  'num::HUGEINT',
  'TRY_CAST(num AS HUGEINT)',
  "'1.5'::HUGEINT",
  'd::HUGEINT',
  'i::HUGEINT = 7',
  'i::HUGEINT < n',
  'i::UHUGEINT',
  'i::UHUGEINT - 300',
  'i::UHUGEINT + n::HUGEINT',
  'i::UBIGINT + n::BIGINT',
  'i::HUGEINT::INTEGER',
  'i::HUGEINT::DOUBLE',
  'i::HUGEINT::DECIMAL(10,2)',
  'i::HUGEINT::FLOAT',
  'typeof(i::HUGEINT + 1)',
  '[i::HUGEINT, 1]',
  "{'h': i::HUGEINT}",
  // BLOB
  's::BLOB',
  "'\\xAA'::BLOB",
  "'\\xaa\\x41b'::BLOB",
  'TRY_CAST(s AS BLOB)',
  'TRY_CAST(u AS BLOB)',
  '(s::BLOB)::VARCHAR',
  "('\\x00\\x7F\\x5C ~'::BLOB)::VARCHAR",
  'octet_length(s::BLOB)',
  's::BLOB = s::BLOB',
  "s::BLOB = 'hello'",
  "s::BLOB < '\\xFF'::BLOB",
  "'ab'::BLOB < 'b'::BLOB",
  's::BLOB || s::BLOB',
  "s::BLOB || 'x'",
  "concat(s::BLOB, '!')",
  'typeof(s::BLOB)',
  '[s::BLOB]',
  'coalesce(s::BLOB, NULL)',
  // MAP
  "MAP {'a': i, 'b': n}",
  "map(['a'], [s])",
  'map([s], [i])',
  'map([i, n], [s, u])',
  "map(['a', 'b'], [1])",
  "map(['a', 'a'], [1, 2])",
  'map([i, z], [1, 2])',
  "(MAP {'a': i})['a']",
  "(MAP {'a': i})['b']",
  "(MAP {'a': i})[s]",
  "map_extract(MAP {'a': i}, 'a')",
  "element_at(MAP {'a': i}, 'b')",
  "map_extract_value(MAP {'a': i}, 'a')",
  "cardinality(MAP {'a': i, 'b': 2})",
  "map_keys(MAP {'a': i, 'b': n})",
  "map_values(MAP {'a': i, 'b': n})",
  "map_entries(MAP {'a': i})",
  "map_from_entries([{'k': s, 'v': i}])",
  "map_from_entries([{'k': 'a', 'v': 1}, {'k': 'a', 'v': 2}])",
  "typeof(MAP {'a': i})",
  "MAP {'a': i} = MAP {'a': 7}",
  "MAP {'a': [i, n]}['a'][1]",
  "MAP {'a': i}['a'] + 1",
  'map([i], [s])[7]',
];

/** Not modelled by the compiler: DuckDB runs these (the plan says duckdb-batch), with DuckDB's answer. */
const ON_DUCKDB: string[] = ['abs(d::FLOAT)', 'round(i::HUGEINT, -1)', "MAP {'a': i}::VARCHAR", 'map()'];

describe('new types agree with DuckDB on the compiled path', () => {
  for (const expr of COMPILED) {
    test(expr, async () => {
      const sql = `SELECT ${expr} FROM input`;
      assert.equal((await planQuery(sql)).path, 'compiled', `${sql} should be compiled`);
      const problems: string[] = [];
      for (const [i, row] of RECORDS.entries()) {
        const diff = await compare(sql, row);
        if (diff) problems.push(`record ${i}: ${diff}`);
      }
      assert.deepEqual(problems, []);
    });
  }
  for (const expr of ON_DUCKDB) {
    test(`${expr} runs on DuckDB`, async () => {
      const sql = `SELECT ${expr} FROM input`;
      assert.equal((await planQuery(sql)).path, 'duckdb-batch');
      for (const row of RECORDS) assert.equal(await compare(sql, row), undefined);
    });
  }
});

const ctx: ComponentContext = {
  stepName: 'sql',
  baseDir: '.',
  batchSize: 100,
} as unknown as ComponentContext;

function rec(value: Record<string, unknown>, offset: number): SluiceRecord {
  return { value, meta: { position: { partition: 'in', offset } } };
}

describe('record values of the new types, compiled and on DuckDB', () => {
  const query =
    "SELECT s::BLOB AS bl, MAP {'k': i} AS m, d::FLOAT AS f, i::HUGEINT * 1000000000 * 10000000000 AS h, i::UBIGINT AS u FROM input";
  test('are the same on both paths: a BLOB is a Buffer, a MAP a list of {key, value}', async () => {
    const batch = [rec({ s: 'a\\xFFb', i: 3, d: 0.1 }, 1), rec({ s: '', i: 0, d: -2 }, 2)];
    const cfg = sqlStep.config.parse({ query });
    assert.equal((await planQuery(query)).path, 'compiled');
    const compiled = await (await createSqlStep(cfg, ctx)).process(batch);
    const duck = await createSqlStep(cfg, ctx, { forceDuckDB: true });
    const viaDuck = await duck.process(batch);
    await duck.close?.();
    assert.equal(compiled.records.length, 2);
    const first = compiled.records[0]!.value;
    assert.ok(Buffer.isBuffer(first.bl), 'a BLOB is a Buffer');
    assert.deepEqual([...(first.bl as Buffer)], [97, 255, 98]);
    assert.deepEqual(first.m, [{ key: 'k', value: 3 }]);
    assert.equal(first.f, Math.fround(0.1));
    assert.equal(first.h, 30000000000000000000n);
    compiled.records.forEach((r, i) => {
      const other = viaDuck.records[i]!.value;
      assert.ok(Buffer.isBuffer(other.bl));
      assert.ok(
        sameValue(other, r.value),
        `${String(Object.values(other))} vs ${String(Object.values(r.value))}`,
      );
    });
  });
});

describe('a record holding bytes (a Buffer) is a BLOB on both paths', () => {
  const query =
    "SELECT b, octet_length(b) AS n, b || b AS bb, CAST(b AS VARCHAR) AS t, b < '\\xFF'::BLOB AS lt FROM input";
  test('compiled, DuckDB and the oracle agree', async () => {
    const batch = [rec({ b: Buffer.from([0xaa, 0x41]) }, 1), rec({ b: new Uint8Array([0x27, 0x5c]) }, 2)];
    assert.equal((await planQuery(query)).path, 'compiled');
    for (const r of batch) assert.equal(await compare(query, r.value), undefined);
    const cfg = sqlStep.config.parse({ query });
    const compiled = await (await createSqlStep(cfg, ctx)).process(batch);
    const duck = await createSqlStep(cfg, ctx, { forceDuckDB: true });
    const viaDuck = await duck.process(batch);
    await duck.close?.();
    assert.equal(viaDuck.rejected, undefined);
    assert.deepEqual(
      compiled.records.map((r) => r.value.t),
      ['\\xAAA', '\\x27\\x5C'],
    );
    for (const [i, r] of compiled.records.entries()) assert.ok(sameValue(viaDuck.records[i]!.value, r.value));
  });
});

describe('records compiled SQL cannot answer exactly are evaluated on DuckDB', () => {
  test('sql step: an integer beyond ±2^53 in the record, or computed, gives the exact bigint in input order', async () => {
    const query = 'SELECT id, n + 1 AS next, n * 3 AS triple, n::UBIGINT AS u FROM input WHERE n > 0';
    assert.equal((await planQuery(query)).path, 'compiled');
    const step = await createSqlStep(sqlStep.config.parse({ query }), ctx);
    const batch = [
      rec({ id: 1, n: 5 }, 1),
      rec({ id: 2, n: 9007199254740993n }, 2),
      rec({ id: 3, n: 2 ** 52 }, 3),
      rec({ id: 4, n: -1 }, 4),
      rec({ id: 5, n: 2n ** 63n - 1n }, 5),
      rec({ id: 6, n: 6 }, 6),
    ];
    const out = await step.process(batch);
    await step.close?.();
    assert.deepEqual(
      out.records.map((r) => r.value),
      [
        { id: 1, next: 6, triple: 15, u: 5 },
        { id: 2, next: 9007199254740994n, triple: 27021597764222979n, u: 9007199254740993n },
        { id: 3, next: 4503599627370497, triple: 13510798882111488n, u: 4503599627370496 },
        { id: 6, next: 7, triple: 18, u: 6 },
      ],
    );
    assert.deepEqual(
      out.records.map((r) => r.meta),
      [batch[0]!.meta, batch[1]!.meta, batch[2]!.meta, batch[5]!.meta],
    );
    // n + 1 overflows BIGINT: DuckDB's own error, for that record only
    assert.equal(out.rejected?.length, 1);
    assert.equal(out.rejected![0]!.record, batch[4]);
    assert.match(out.rejected![0]!.error.message, /Overflow in addition of INT64/);
  });

  test('sql step: a cast to BIGINT beyond ±2^53 gives the value DuckDB gives, a bad one the error DuckDB gives', async () => {
    const query = 'SELECT CAST(s AS BIGINT) AS v, CAST(d AS BIGINT) AS w FROM input';
    assert.equal((await planQuery(query)).path, 'compiled');
    const step = await createSqlStep(sqlStep.config.parse({ query }), ctx);
    const batch = [
      rec({ s: '12', d: 1.5 }, 1),
      rec({ s: '100000000000000001', d: 0 }, 2),
      rec({ s: 'abc', d: 0 }, 3),
      rec({ s: '9223372036854775808', d: 0 }, 4),
      rec({ s: '5', d: 1e17 }, 5),
    ];
    const out = await step.process(batch);
    await step.close?.();
    assert.deepEqual(
      out.records.map((r) => r.value),
      [
        { v: 12, w: 2 },
        { v: 100000000000000001n, w: 0 },
        { v: 5, w: 100000000000000000n },
      ],
    );
    assert.deepEqual(
      out.rejected?.map((r) => [r.record, /Could not convert string/.test(r.error.message)]),
      [
        [batch[2], true],
        [batch[3], true],
      ],
    );
  });

  test('filter step: a condition on an integer beyond ±2^53 keeps exactly the records DuckDB keeps', async () => {
    const condition = 'n > 9007199254740991 AND n * 2 > 0';
    const cfg = filterStep.config.parse({ condition });
    assert.equal((await planQuery(condition, { mode: 'condition' })).path, 'compiled');
    const step = await createFilterStep(cfg, ctx);
    const batch = [
      rec({ n: 9007199254740993n }, 1),
      rec({ n: 1 }, 2),
      rec({ n: 9007199254740992 }, 3), // a number, not a bigint: a DOUBLE on both paths
      rec({ n: 2n ** 62n }, 4),
    ];
    const out = await step.process(batch);
    await step.close?.();
    assert.deepEqual(
      out.records.map((r) => r.meta.position?.offset),
      [1, 3, 4],
    );
    // a filter keeps the input records themselves, also those DuckDB evaluated
    assert.deepEqual(out.records, [batch[0], batch[2], batch[3]]);
    assert.ok(out.records.every((r, k) => r === [batch[0], batch[2], batch[3]][k]));
    assert.equal(out.rejected, undefined);
  });
});
