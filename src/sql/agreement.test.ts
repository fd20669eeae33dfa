/**
 * A sql step gives DuckDB's answer or DuckDB runs it (issue 13): for each expression, what Sluice does
 * end to end (planQuery, then the compiled function or DuckDB in batches) is compared with DuckDB
 * itself over the same record. A refusal at validation passes only where DuckDB refuses the query
 * too; an error record only where DuckDB fails on that record.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordValue } from '../sdk/types.ts';
import { BatchQuery } from './batch.ts';
import { compileSelect } from './index.ts';
import { type OracleResult, oracle } from './oracle.ts';
import { planQuery } from './plan.ts';
import { callsTranscendental, sameValue } from './same-value.ts';

const ROW: RecordValue = {
  i: 5,
  d: 2.5,
  s: 'Hello',
  l: [1, 2, 3],
  tags: ['vip', 'x'],
  st: { a: 1, B: 'x' },
  big: 4294967296,
};

type Outcome = { refused: string } | { failed: string } | { value: unknown[] };

const batches: BatchQuery[] = [];
after(async () => {
  for (const b of batches) await b.close();
});

/** What a sql step does with `SELECT <expr> AS r FROM input` over one record. */
async function sluice(expr: string, row: RecordValue): Promise<{ path: string; outcome: Outcome }> {
  const sql = `SELECT ${expr} AS r FROM input`;
  let plan: Awaited<ReturnType<typeof planQuery>>;
  try {
    plan = await planQuery(sql);
  } catch (err) {
    assert.ok(err instanceof SluiceError && err.code === 'SLUICE_EXPR_INVALID', String(err));
    return { path: 'refused', outcome: { refused: err.message } };
  }
  if (plan.path === 'compiled') {
    const f = await compileSelect(sql);
    try {
      return { path: plan.path, outcome: { value: [f(row)?.r] } };
    } catch (err) {
      assert.ok(err instanceof SluiceError && err.code === 'SLUICE_EXPR_EVAL', String(err));
      return { path: plan.path, outcome: { failed: err.message } };
    }
  }
  const batch = await BatchQuery.open(sql);
  batches.push(batch);
  const out = await batch.process([{ value: row, meta: {} } as never]);
  if (out.rejected?.length) return { path: plan.path, outcome: { failed: out.rejected[0]!.error.message } };
  return { path: plan.path, outcome: { value: out.records.map((r) => r.value.r) } };
}

/**
 * Sluice agrees with DuckDB on `expr` over `row`: the same values, or DuckDB refusing the query and
 * Sluice refusing it at validation, or both failing the record (a constant that fails may be
 * refused at validation: DuckDB fails the query whatever the input).
 */
async function agrees(expr: string, row: RecordValue = ROW, path?: string): Promise<void> {
  const mine = await sluice(expr, row);
  if (path) assert.equal(mine.path, path, `${expr} runs on ${mine.path}: ${JSON.stringify(mine.outcome)}`);
  // DuckDB may fold a one-row input of constants differently from a table (docs/sql.md): either will do
  const problems: string[] = [];
  for (const mode of ['constants', 'table'] as const) {
    const problem = judge(expr, mine.outcome, await oracle(`SELECT ${expr} AS r FROM input`, row, mode));
    if (!problem) return;
    problems.push(problem);
  }
  assert.fail(`${problems[0]} on ${mine.path}`);
}

/** `agrees` for each expression in turn. */
async function agreeAll(exprs: string[], row: RecordValue = ROW, path?: string): Promise<void> {
  for (const expr of exprs) await agrees(expr, row, path);
}

function judge(expr: string, mine: Outcome, theirs: OracleResult): string | undefined {
  const shown = JSON.stringify(mine);
  if (!theirs.ok) {
    if (/^(Binder|Parser|Catalog) Error/.test(theirs.error)) {
      return 'refused' in mine ? undefined : `${expr}: DuckDB refuses (${theirs.error}), Sluice ${shown}`;
    }
    return 'value' in mine ? `${expr}: DuckDB fails (${theirs.error}), Sluice ${shown}` : undefined;
  }
  const expected = theirs.rows.map((r) => r.r);
  if (
    'value' in mine &&
    mine.value.length === expected.length &&
    mine.value.every((v, i) => sameValue(v, expected[i], callsTranscendental(expr)))
  ) {
    return undefined;
  }
  return `${expr}: DuckDB gives ${JSON.stringify(expected)}, Sluice ${shown}`;
}

describe('the function catalog', () => {
  test('unnest() and unlist() run on DuckDB, one output record per element', async () => {
    await agrees('unnest(l)', ROW, 'duckdb-batch');
    await agrees('unlist([1, 2])', ROW, 'duckdb-batch');
  });
  test('a table function in a select list is refused with DuckDB’s reason', async () => {
    const { outcome } = await sluice("read_csv('x.csv')", ROW);
    assert.match((outcome as { refused: string }).refused, /is a table function/);
  });
  test('camel-case function names are found whatever their case', async () => {
    await agrees('formatReadableSize(i)', ROW, 'duckdb-batch');
    await agrees('formatreadabledecimalsize(1500)', ROW, 'duckdb-batch');
  });
});

describe('lists and structs', () => {
  test('< <= > >= order lists element by element and structs field by field, NULLs last', async () => {
    await agreeAll([
      '[1,2] < [1,3]',
      'l < [1,3]',
      'l >= [1, 2, 3, 0]',
      '[1, NULL] < [1, 2]',
      '[1, 2] <= [1, NULL]',
      "['b'] > ['a', 'c']",
      "st < {'a': 2, 'B': 'y'}",
      "{'a': 2} < {'b': 1}",
      "{'a': 1, 'b': 2} < {'b': 3, 'a': 1}",
      '[[1,2],[3]] < [[1,2],[4]]',
      "[1,2] < ['1', '3']",
    ]);
  });
  test('greatest() and least() order lists and structs as comparisons do', async () => {
    await agreeAll(
      [
        'greatest([1,2],[1,3])',
        'greatest(l, [1,3])',
        'least(l, [1,3], NULL)',
        "least(st, {'a': 0, 'B': 'z'})",
        'greatest([1, NULL], [1, 2])',
      ],
      ROW,
      'compiled',
    );
    await agrees("greatest([1], ['a'])", ROW, 'refused');
  });
  test('contains() on a list is list_contains', async () => {
    await agreeAll([
      "contains(tags, 'vip')",
      "contains(tags, 'zz')",
      'contains(l, 2)',
      "contains(l, '2')",
      'contains(l, 2.0)',
      'contains([1, 2, NULL], NULL)',
      "contains(['a', 'b'], 2)",
      "contains([1, 2], 'a')",
      "contains([{'a': 1}], {'a': 1})",
    ]);
  });
  test('contains() where DuckDB cannot choose an overload is refused with its reason', async () => {
    await agrees('contains(NULL, NULL)', ROW, 'refused');
    await agrees("contains('abc', NULL)", ROW, 'refused');
    await agrees('contains(s, NULL)', ROW, 'compiled');
    await agrees("contains(NULL, 'a')", ROW, 'compiled');
  });
  test('+ on lists concatenates them; || with NULL is NULL', async () => {
    await agreeAll(['[1,2] + [3,4]', '[1] + NULL', 'NULL + [1]', 'l + l', '[1] + [2.5]', "['a'] + [1]"]);
    await agreeAll(['[1] || NULL', 'l || NULL', 'NULL || [1]']);
  });
  test('concat() of a list and a string is refused, as DuckDB refuses it', async () => {
    await agrees("concat([1], 'hello')", ROW, 'refused');
    await agrees("concat('a', 'b', [1])", ROW, 'refused');
    await agrees('concat(l, [7], NULL)', ROW, 'compiled');
  });
  test('a list of structs with different keys gets every key', async () => {
    await agreeAll(
      [
        "[{'foo':1}, {'bar':2}]",
        "[{'foo':1}, {'FOO':2}]",
        "[{'a':1,'b':2}, {'b':3,'a':4}]",
        "[{'x': {'a':1}}, {'x': {'b':2}}]",
        "[[{'a':1}], [{'b':2}]]",
        "[st, {'c': 3}]",
      ],
      ROW,
      'compiled',
    );
    await agrees("[{'a':1}, {'a':'x'}]", ROW, 'refused');
  });
  test('typeof() of a record list or struct names its element and field types', async () => {
    await agreeAll(
      [
        'typeof(l)',
        'typeof(st)',
        'typeof(tags)',
        'typeof([l])',
        "typeof({'x': 1, 'y': {'z': st, 'w': 1.5}})",
      ],
      ROW,
      'compiled',
    );
  });
  test('struct fields and columns are found whatever their case', async () => {
    await agreeAll(
      ['st.b', "st['b']", 'ST.A', 'S', 'I + 1', "struct_extract({'Ab': 1}, 'ab')"],
      ROW,
      'compiled',
    );
  });
});

describe('numbers', () => {
  test('round(x, NULL) is NULL; round(double, n) with n far below 0 is 0', async () => {
    await agreeAll([
      'round(42.5, NULL)',
      'round(i, NULL)',
      'round(d, NULL)',
      'round(42::DOUBLE, -1000)',
      'round(d, -400)',
      'round(d, 400)',
      "round('inf'::DOUBLE, -1)",
      'round(1e300::DOUBLE, -299)',
    ]);
  });
  test('log(b, x) fails as DuckDB does for a base of 0, below 0, or 1', async () => {
    await agreeAll(['log(0, 8)', 'log(-2, 8)', 'log(1, 8)', 'log(1, 0)', 'log(2, 0)', 'log(2, -1)']);
    await agreeAll(
      ['log(i - 5, 8)', 'log(i - 4, 8)', 'log(i - 6, 8)', 'log(2, i)', 'log(d, 100)', 'log(0.5, 8)'],
      ROW,
      'compiled',
    );
  });
  test('VARCHAR → integer follows DuckDB’s rules for underscores, 0x/0b, fractions, exponents and spaces', async () => {
    const strings = [
      '0b_1',
      '0b10_',
      '0x_1',
      '0x1_f',
      '-0x10',
      '+0x10',
      ' 0x10',
      '0x10 ',
      '0x80000000',
      '0b1',
      '1e-100000',
      '1e-32768',
      '1e-32769',
      '0e32768',
      '1e0_0',
      '1e-0_1',
      '5e-12',
      '.5e-1',
      '0.49999e1',
      '14.5e-1',
      '1_000',
      '1__000',
      '_1',
      '1_',
      '1.5_5',
      '1.55_',
      ' +1.5e1 ',
      '2.5',
      '-2.5',
      '1.',
      '.5',
      '.',
      '2147483647.5',
      '99999999999999999999e-12',
      '123456789e-3',
      ' \t12\n',
    ];
    for (const s of strings) {
      await agrees(`CAST(s AS INTEGER)`, { s }, 'compiled');
      await agrees(`TRY_CAST(s AS TINYINT)`, { s }, 'compiled');
    }
    await agrees("CAST('0b_1' AS INTEGER)");
    await agrees("CAST('1e-100000' AS INTEGER)");
  });
  test('a constant DuckDB holds exactly but a JavaScript number cannot runs on DuckDB', async () => {
    await agrees("'922337203685478.758'::DECIMAL(18,3)", ROW, 'duckdb-batch');
    // (DuckDB's answer, 2^63 - 1, is beyond JavaScript's exact numbers on the DuckDB path too)
    assert.equal((await sluice("CAST('0x7FFFFFFFFFFFFFFF' AS BIGINT)", ROW)).path, 'duckdb-batch');
    await agrees('0.123456789 * 0.123456789', ROW, 'duckdb-batch');
    await agrees('CAST(d AS DECIMAL(20,16))', ROW, 'duckdb-batch');
  });
  test('DECIMAL text has no integer digit for a type without one; true is its smallest unit', async () => {
    await agreeAll(
      [
        "CAST('0.1'::DECIMAL(3,3) AS VARCHAR)",
        "CAST('-0.1'::DECIMAL(3,3) AS VARCHAR)",
        "CAST('0'::DECIMAL(3,3) AS VARCHAR)",
        "CAST('0.1'::DECIMAL(4,3) AS VARCHAR)",
        'CAST(true::DECIMAL(4,4) AS VARCHAR)',
        'true::DECIMAL(3,3)',
        'true::DECIMAL(5,4)',
        '(i > 0)::DECIMAL(2,2)',
      ],
      ROW,
      'compiled',
    );
    await agrees("CAST('0.1'::DECIMAL(32,32) AS VARCHAR)", ROW, 'duckdb-batch');
  });
  test('substring() offsets and lengths beyond 32 bits fail as in DuckDB', async () => {
    await agreeAll([
      'substring(s, 0, 4294967296)',
      'substring(s, 4294967296, 1)',
      'substring(s, 1, -4294967297)',
      "substring('Hello', -4294967297, 2)",
      'substring(s, 0, 4294967295)',
      "substring('Hello', -4294967296, 2)",
      'left(s, 4294967296)',
      'left(s, -4294967297)',
      's[4294967296]',
      's[-4294967296]',
      'substring(s, 1, big)',
    ]);
  });
});

describe('regular expressions', () => {
  test('options: spaces, tabs and newlines are ignored, the last of c/i and s/m wins, g only in regexp_replace', async () => {
    await agreeAll([
      "regexp_matches(s, 'h', 'i ')",
      "regexp_matches(s, 'h', ' i')",
      "regexp_matches(s, 'h', E'i\\t')",
      "regexp_matches(s, 'h', E'i\\n')",
      "regexp_matches(E'a\\nb', 'a.b', 'sm')",
      "regexp_matches(E'a\\nb', 'a.b', 'ms')",
      "regexp_matches('A', 'a', 'ic')",
      "regexp_matches('A', 'a', 'ci')",
      "regexp_replace(s, 'L', '_', 'i g')",
    ]);
    await agreeAll([
      "regexp_matches(s, 'h', E'i\\r')",
      "regexp_matches(s, 'h', 'g')",
      "regexp_matches(s, 'h', NULL)",
    ]);
  });
  test('a global replace skips an empty match where the previous match ended, as RE2 does', async () => {
    const cases: [string, string, string, string][] = [
      ['hello\nworld', '.*', 'x', 'sg'],
      ['hello\nworld', '.*', 'x', 'g'],
      ['abc', 'b*', '-', 'g'],
      ['abc', 'x*', '-', 'g'],
      ['aaa', 'a*?', '-', 'g'],
      ['abc', '', '-', 'g'],
      ['héllo', 'x*', '-', 'g'],
      ['ab', '\\b', '|', 'g'],
      ['abab', 'ab|', 'X', 'g'],
      ['abc', '(b*)', '[\\1]', 'g'],
      ['😀a', 'x*', '-', 'g'],
      ['a b  c', ' *', '_', 'g'],
      ['abc', '(?P<x>b)|', '<\\0>', 'g'],
    ];
    for (const [text, pattern, replacement, options] of cases) {
      await agrees(
        `regexp_replace(s, '${pattern}', '${replacement}', '${options}')`,
        { s: text },
        'compiled',
      );
      await agrees(
        `regexp_replace(s, p, r, '${options}')`,
        { s: text, p: pattern, r: replacement },
        'compiled',
      );
    }
  });
});

describe('RE2 syntax and the DuckDB path', () => {
  test('\\x{HHHH}, octal \\123, \\Q...\\E, \\z, \\A and [[:alpha:]] classes mean what they mean in RE2', async () => {
    await agreeAll(
      [
        "regexp_matches('00 001', '^00\\x{0020}001$')",
        "regexp_matches('00 001', '\\x{1F986}')",
        "regexp_matches(s, '[[:alpha:]][[:lower:]]')",
        "regexp_matches('a1', '^[[:digit:]]')",
        "regexp_matches('axb', '\\Qa.b\\E')",
        "regexp_matches('a]', '[]a]+$')",
        "regexp_replace('a-b_c', '[[:punct:]]', '', 'g')",
        "regexp_matches('S', '\\123')",
        "regexp_replace(E'\\001\\002\\003', '\\002?', 'x', 'g')",
      ],
      ROW,
      'compiled',
    );
  });
  test('an ESCAPE of more than one character known per record fails as in DuckDB', async () => {
    await agrees('s ILIKE p ESCAPE e', { s: 'a%c', p: 'a$%C', e: 'a%c' }, 'compiled');
    await agrees('s ILIKE p ESCAPE e', { s: 'a%c', p: 'a$%C', e: '$' }, 'compiled');
  });
  test('a DOUBLE constant with an integral value keeps its type on the DuckDB path', async () => {
    await agrees('format_bytes(1e9::BIGINT)', ROW, 'duckdb-batch');
    await agrees("printf('%,.f', 1.7e12::double)", ROW, 'duckdb-batch');
  });
});

describe('output columns', () => {
  test('two output columns of one name are one field with the last value, as on DuckDB’s path', async () => {
    const sql = 'SELECT 1 == 1, 1 = 1, i AS x, i + 1 AS x FROM input';
    assert.equal((await planQuery(sql)).path, 'compiled');
    const batch = await BatchQuery.open(sql);
    batches.push(batch);
    const out = await batch.process([{ value: ROW, meta: {} } as never]);
    assert.deepEqual((await compileSelect(sql))(ROW), out.records[0]!.value);
  });
});
