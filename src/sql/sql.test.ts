import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordValue } from '../sdk/types.ts';
import { compileCondition, compileSelect, describeSubset } from './index.ts';
import { lineCol } from './parse.ts';

async function invalid(sql: string, kind: 'select' | 'condition' = 'select'): Promise<SluiceError> {
  try {
    await (kind === 'select' ? compileSelect(sql) : compileCondition(sql));
  } catch (err) {
    assert.ok(err instanceof SluiceError, String(err));
    assert.equal(err.code, 'SLUICE_EXPR_INVALID');
    return err;
  }
  assert.fail(`expected ${JSON.stringify(sql)} to be refused`);
}

async function evalError(sql: string, row: RecordValue): Promise<SluiceError> {
  const f = await compileSelect(sql);
  try {
    f(row);
  } catch (err) {
    assert.ok(err instanceof SluiceError, String(err));
    assert.equal(err.code, 'SLUICE_EXPR_EVAL');
    return err;
  }
  assert.fail(`expected ${sql} to fail on ${JSON.stringify(row)}`);
}

async function one(expr: string, row: RecordValue = {}): Promise<unknown> {
  const out = (await compileSelect(`SELECT ${expr} AS r FROM input`))(row);
  assert.ok(out);
  return out.r;
}

describe('invalid SQL is refused with its position', () => {
  test('a syntax error names DuckDB’s message, line and column', async () => {
    const err = await invalid('SELECT a +\nFROM input');
    assert.match(err.message, /syntax error at or near "FROM" \(at line 2, column 1, offset 11\)/);
    assert.deepEqual(err.details, { offset: 11 });
  });

  test('an unknown function suggests the nearest ones', async () => {
    const err = await invalid('SELECT id, uper(country) FROM input');
    assert.match(err.message, /unknown function uper\(\); did you mean upper\?/);
    assert.equal(err.details?.offset, 11);
    assert.match((await invalid('SELECT lenght(s) FROM input')).message, /did you mean length/);
  });

  test('positions in a condition are offsets in the condition, in characters', async () => {
    const err = await invalid("name = 'Grüße 😀' AND uper(x) = 'A'", 'condition');
    assert.equal(err.details?.offset, "name = 'Grüße 😀' AND ".length);
    assert.match(err.message, /line 1, column 23/);
    const multi = await invalid('a > 0\n  AND lenght(b) > 2', 'condition');
    assert.equal(multi.details?.offset, 12);
    assert.match(multi.message, /line 2, column 7/);
  });

  const refused: [string, RegExp][] = [
    ['SELECT sum(amount) FROM input', /aggregate function sum\(\) is not allowed/],
    ['SELECT count(*) FROM input', /aggregate function count\(\*\)/],
    ['SELECT row_number() OVER () FROM input', /window function row_number\(\) is not allowed/],
    ['SELECT a FROM input GROUP BY a', /GROUP BY is not allowed/],
    ['SELECT a FROM input ORDER BY a', /ORDER BY is not allowed/],
    ['SELECT a FROM input LIMIT 10', /LIMIT\/OFFSET is not allowed/],
    ['SELECT DISTINCT a FROM input', /DISTINCT is not allowed/],
    ['SELECT a FROM input JOIN other ON true', /joins are not allowed/],
    ['SELECT a FROM input, other', /joins are not allowed/],
    ['SELECT a FROM orders', /FROM must be the table input \(each record\), not orders/],
    ['SELECT 1', /needs FROM input/],
    ['SELECT (SELECT 1) FROM input', /subqueries are not allowed/],
    [
      'SELECT a FROM input UNION SELECT b FROM input',
      /UNION \(a set operation\) is not yet supported in per-record SQL; supported: /,
    ],
    [
      'SELECT md5(s) FROM input',
      /the function md5\(\) is not yet supported in per-record SQL; supported: SELECT/,
    ],
    ['SELECT CAST(a AS FOO) FROM input', /unknown type FOO/],
    [
      'SELECT CAST(a AS INTERVAL) FROM input',
      /a cast to INTERVAL of a value that is not a constant string is not allowed/,
    ],
    ['SELECT a[1:3:2] FROM input', /list slicing with a step/],
    ['SELECT $1 FROM input', /query parameters/],
    ['INSERT INTO t VALUES (1)', /only a SELECT statement/],
    ['SELECT 1 FROM input; SELECT 2 FROM input', /only one SQL statement/],
    ["SELECT CAST('abc' AS INTEGER) FROM input", /Could not convert string 'abc' to INT32/],
    ["SELECT date_part('fortnight', ts) FROM input", /extract specifier "fortnight" not recognized/],
    ["SELECT regexp_matches(s, '(') FROM input", /invalid regular expression '\('/],
    ["SELECT strftime(ts, '%Q') FROM input", /Unrecognized format for strftime\/strptime: %Q/],
    [
      'SELECT upper(5) FROM input',
      /No function matches the given name and argument types 'upper\(INTEGER_LITERAL\)'/,
    ],
    ['SELECT substr(s) FROM input', /substr\(\) takes 2 to 3 arguments, not 1/],
    ['SELECT 100000000000000000000 FROM input', /beyond ±2\^53/],
  ];
  for (const [sql, message] of refused) {
    test(sql, async () => {
      const err = await invalid(sql);
      assert.match(err.message, message);
      assert.equal(typeof err.details?.offset, 'number');
    });
  }

  test("a refusal as beyond the subset reads the same whatever the user's text holds", async () => {
    // the pattern JavaScript cannot take is quoted in the message: its words must not change the rest
    for (const pattern of ['a{,2}', 'a{,2} per-record SQL', 'a{,2} beyond ±2^53']) {
      const err = await invalid(`SELECT regexp_extract_all('x', '${pattern}') AS r FROM input`);
      assert.ok(err.details?.beyondSubset, pattern);
      assert.match(err.message, /: Incomplete quantifier is not yet supported in per-record SQL \(at line 1/);
    }
  });

  test('the offset points at the construct', async () => {
    assert.equal((await invalid('SELECT id, sum(x) FROM input')).details?.offset, 11);
    assert.equal((await invalid('SELECT id FROM input ORDER BY id')).details?.offset, 30);
    assert.equal((await invalid('SELECT id FROM orders')).details?.offset, 15);
  });

  test('a condition is one boolean expression', async () => {
    assert.match((await invalid('', 'condition')).message, /empty/);
    assert.match((await invalid('a, b', 'condition')).message, /syntax error/);
    assert.match((await invalid('a > 0 ORDER BY a', 'condition')).message, /ORDER BY/);
    assert.equal(await (await compileCondition('a > 0 -- positive only'))({ a: 1 }), true);
  });

  test('line and column count from 1', () => {
    assert.deepEqual(lineCol('ab\ncd', 0), { line: 1, column: 1 });
    assert.deepEqual(lineCol('ab\ncd', 4), { line: 2, column: 2 });
  });
});

describe('a record that fails is reported with the expression and the value', () => {
  test('a CAST that does not convert', async () => {
    const err = await evalError('SELECT CAST(qty AS INTEGER) AS q FROM input', { qty: 'twelve' });
    assert.match(err.message, /Could not convert string 'twelve' to INT32 \(in CAST\(qty AS INTEGER\)\)/);
    assert.deepEqual(err.details, { expression: 'CAST(qty AS INTEGER)', value: 'twelve' });
  });

  test('integer overflow follows DuckDB’s types', async () => {
    const err = await evalError('SELECT CAST(a AS INTEGER) * 2 FROM input', { a: 2000000000 });
    assert.match(err.message, /Overflow in multiplication of INT32 \(2000000000 \* 2\)!/);
    assert.equal(await one('a * 2', { a: 2000000000 }), 4000000000);
    const big = await evalError('SELECT a * a FROM input', { a: 2 ** 30 });
    assert.match(big.message, /beyond ±2\^53/);
    const over = await evalError('SELECT a * a FROM input', { a: 2 ** 40 });
    assert.match(over.message, /Overflow in multiplication of INT64/);
  });

  test('a type DuckDB would not accept fails that record only', async () => {
    const f = await compileSelect('SELECT upper(name) AS n FROM input');
    assert.deepEqual(f({ name: 'ada' }), { n: 'ADA' });
    assert.throws(
      () => f({ name: 42 }),
      (e: unknown) => e instanceof SluiceError && /upper\(BIGINT\)/.test(e.message),
    );
    assert.deepEqual(f({ name: 'bob' }), { n: 'BOB' });
  });

  test('math domain errors', async () => {
    assert.match(
      (await evalError('SELECT sqrt(x) FROM input', { x: -1 })).message,
      /square root of a negative number/,
    );
    assert.match((await evalError('SELECT ln(x) FROM input', { x: 0 })).message, /logarithm of zero/);
  });

  test('a struct field of a scalar', async () => {
    assert.match(
      (await evalError('SELECT a.b FROM input', { a: 'text' })).message,
      /Cannot extract field 'b'/,
    );
  });
});

describe('DuckDB semantics', () => {
  test('division', async () => {
    assert.equal(await one('5 / 2'), 2.5);
    assert.equal(await one('5 // 2'), 2);
    assert.equal(await one('-7 // 2'), -3); // DuckDB truncates toward zero
    assert.equal(await one('1 / 0'), Number.POSITIVE_INFINITY); // DuckDB 1.5 follows IEEE here
    assert.equal(await one('1 // 0'), null);
    assert.equal(await one('5 % 0'), null);
    assert.equal(await one('a / b', { a: 7, b: 2 }), 3.5);
  });

  test('NULL propagation and three-valued logic', async () => {
    assert.equal(await one("'a' || NULL"), null);
    assert.equal(await one("concat('a', NULL)"), 'a');
    assert.equal(await one('x > 1 AND false', { x: null }), false);
    assert.equal(await one('x > 1 OR true', { x: null }), true);
    assert.equal(await one('x > 1 OR false', { x: null }), null);
    assert.equal(await one('x NOT IN (1, NULL)', { x: 2 }), null);
    const cond = await compileCondition('x > 1');
    assert.equal(cond({ x: null }), false);
    assert.equal(cond({}), false);
    assert.equal(cond({ x: 2 }), true);
  });

  test('decimals are exact and round half away from zero', async () => {
    assert.equal(await one('0.1 + 0.2 = 0.3'), true);
    assert.equal(await one('0.1 + 0.2'), 0.3);
    assert.equal(await one('round(2.345, 2)'), 2.35);
    assert.equal(await one('round(-2.5)'), -3);
    assert.equal(await one('CAST(2.5 AS INTEGER)'), 3);
    assert.equal(await one('CAST(x AS INTEGER)', { x: 2.5 }), 2); // DOUBLE → INTEGER rounds to even
    assert.equal(await one('CAST(x AS DECIMAL(5,2))', { x: 1.005 }), 1);
    assert.equal(await one('CAST(1.50 * 2 AS VARCHAR)'), '3.00');
    assert.equal(await one('CAST(x * 2 AS VARCHAR)', { x: 1.5 }), '3.0');
  });

  test('nested fields, keys and list indexes', async () => {
    const row = { payload: { user: { id: 7 }, tags: ['a', 'b', 'c'] }, m: { k: 'v' } };
    assert.equal(await one('payload.user.id', row), 7);
    assert.equal(await one("m['k']", row), 'v');
    assert.equal(await one('payload.tags[1]', row), 'a');
    assert.equal(await one('payload.tags[-1]', row), 'c');
    assert.equal(await one('payload.tags[9]', row), null);
    assert.equal(await one('payload.missing.id', row), null);
    assert.equal(await one('input.m.k', row), 'v');
  });

  test('a missing column reads as NULL', async () => {
    assert.deepEqual((await compileSelect('SELECT a, b FROM input'))({ a: 1 }), { a: 1, b: null });
  });

  test('timestamps are Dates in and out', async () => {
    const ts = new Date('2024-05-17T13:14:15.500Z');
    assert.deepEqual(await one("date_trunc('day', ts)", { ts }), new Date('2024-05-17T00:00:00Z'));
    assert.equal(await one("strftime(ts, '%Y-%m-%d %H:%M')", { ts }), '2024-05-17 13:14');
    assert.deepEqual(await one("CAST('2024-01-02 03:04:05' AS TIMESTAMP)"), new Date('2024-01-02T03:04:05Z'));
    assert.equal(await one('extract(year FROM ts)', { ts }), 2024);
    assert.equal(await one("ts > TIMESTAMP '2024-01-01'", { ts }), true);
    const now = (await one('now()')) as Date;
    assert.ok(now instanceof Date && Math.abs(now.getTime() - Date.now()) < 5000);
  });

  test('every record is typed on its own', async () => {
    const f = await compileSelect('SELECT x * 2 AS y, typeof(x) AS t FROM input');
    assert.deepEqual(f({ x: 3 }), { y: 6, t: 'BIGINT' });
    assert.deepEqual(f({ x: 1.5 }), { y: 3, t: 'DOUBLE' });
    assert.deepEqual(f({ x: null }), { y: null, t: '"NULL"' });
    assert.deepEqual(f({ x: 4n }), { y: 8, t: 'BIGINT' });
    assert.deepEqual(f({ x: 3 }), { y: 6, t: 'BIGINT' });
  });

  test('a list element typed per record', async () => {
    const f = await compileSelect('SELECT l[i] + 1 AS v FROM input');
    assert.deepEqual(f({ l: [1, 2], i: 2 }), { v: 3 });
    assert.deepEqual(f({ l: [1.5, 2.5], i: 1 }), { v: 2.5 });
    assert.deepEqual(f({ l: [1, 2], i: 5 }), { v: null });
    assert.throws(() => f({ l: ['a'], i: 1 }), SluiceError);
  });
});

describe('SELECT lists', () => {
  test('unaliased columns get DuckDB’s names', async () => {
    const f = await compileSelect(
      "SELECT id, upper(country), amount * 100, CAST(x AS VARCHAR), s LIKE 'a%' FROM input",
    );
    assert.deepEqual(Object.keys(f({})!), [
      'id',
      'upper(country)',
      '(amount * 100)',
      'CAST(x AS VARCHAR)',
      "(s ~~ 'a%')",
    ]);
    assert.deepEqual(Object.keys((await compileSelect('SELECT payload.user.id FROM input'))({})!), ['id']);
    // two columns of one name: one field, the last one's value, in the first one's place (DuckDB's path)
    assert.deepEqual(
      (await compileSelect('SELECT id, payload.user.id, 1 AS z FROM input'))({
        id: 1,
        payload: { user: { id: 2 } },
      }),
      {
        id: 2,
        z: 1,
      },
    );
  });

  test('* keeps the record’s fields in order; EXCLUDE and REPLACE adjust them', async () => {
    const row = { a: 1, b: 'x', c: true };
    assert.equal((await compileSelect('SELECT * FROM input'))(row), row);
    assert.deepEqual(Object.entries((await compileSelect('SELECT * EXCLUDE (b) FROM input'))(row)!), [
      ['a', 1],
      ['c', true],
    ]);
    assert.deepEqual(
      Object.entries((await compileSelect('SELECT * REPLACE (a + 10 AS a) FROM input'))(row)!),
      [
        ['a', 11],
        ['b', 'x'],
        ['c', true],
      ],
    );
    assert.deepEqual(
      Object.entries((await compileSelect('SELECT a + 1 AS n, * EXCLUDE (c) FROM input'))(row)!),
      [
        ['n', 2],
        ['a', 1],
        ['b', 'x'],
      ],
    );
  });

  test('a column named like a field replaces it: in place after *, first before it', async () => {
    const row = { a: 1, b: 'x' };
    assert.deepEqual(Object.entries((await compileSelect('SELECT *, upper(b) AS b FROM input'))(row)!), [
      ['a', 1],
      ['b', 'X'],
    ]);
    assert.deepEqual(Object.entries((await compileSelect('SELECT upper(b) AS b, * FROM input'))(row)!), [
      ['b', 'X'],
      ['a', 1],
    ]);
  });

  test('the input record is never modified, and odd field names are safe', async () => {
    const row = JSON.parse(
      '{"__proto__": {"polluted": true}, "constructor": 5, "a": {"k": 1}}',
    ) as RecordValue;
    const f = await compileSelect('SELECT *, a.k + 1 AS k2, "constructor" + 1 AS c2 FROM input');
    const out = f(row)!;
    assert.deepEqual(Object.keys(out), ['__proto__', 'constructor', 'a', 'k2', 'c2']);
    assert.equal(out.c2, 6);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(Object.keys(row), ['__proto__', 'constructor', 'a']);
    assert.equal(await one('"toString"', {}), null);
  });

  test('WHERE filters with null', async () => {
    const f = await compileSelect('SELECT id FROM input WHERE amount > 0');
    assert.deepEqual(f({ id: 1, amount: 5 }), { id: 1 });
    assert.equal(f({ id: 2, amount: -5 }), null);
    assert.equal(f({ id: 3 }), null);
  });

  test('a compiled query is reused for the same SQL', async () => {
    assert.equal(
      await compileSelect('SELECT 1 AS one FROM input'),
      await compileSelect('SELECT 1 AS one FROM input'),
    );
  });

  test('describeSubset lists the supported constructs', () => {
    const d = describeSubset();
    for (const word of [
      'CASE',
      'CAST',
      'LIKE',
      'COALESCE',
      'upper',
      'regexp_replace',
      'date_trunc',
      'strftime',
      'EXCLUDE',
    ]) {
      assert.ok(d.includes(word), word);
    }
  });
});
