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
import { compare, oracle, sameValue } from './oracle.ts';
import { planQuery } from './plan.ts';

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
  const theirs = await oracle(`SELECT ${expr} AS r FROM input`, row);
  const shown = JSON.stringify(mine.outcome);
  if (!theirs.ok) {
    const bindError = /^(Binder|Parser|Catalog) Error/.test(theirs.error);
    if (bindError)
      assert.ok('refused' in mine.outcome, `${expr}: DuckDB refuses (${theirs.error}), Sluice ${shown}`);
    else assert.ok(!('value' in mine.outcome), `${expr}: DuckDB fails (${theirs.error}), Sluice ${shown}`);
  } else {
    assert.ok(
      'value' in mine.outcome,
      `${expr}: DuckDB gives ${JSON.stringify(theirs.rows)}, Sluice ${shown}`,
    );
    const expected = theirs.rows.map((r) => r.r);
    assert.ok(
      mine.outcome.value.length === expected.length &&
        mine.outcome.value.every((v, i) => sameValue(v, expected[i])),
      `${expr}: DuckDB gives ${JSON.stringify(expected)}, Sluice ${shown} on ${mine.path}`,
    );
  }
  if (path) assert.equal(mine.path, path, `${expr} runs on ${mine.path}`);
  if (mine.path === 'compiled') {
    const diff = await compare(`SELECT ${expr} AS r FROM input`, row);
    assert.equal(diff, undefined, diff);
  }
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
    for (const expr of [
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
    ]) {
      await agrees(expr);
    }
  });
  test('contains() on a list is list_contains', async () => {
    for (const expr of [
      "contains(tags, 'vip')",
      "contains(tags, 'zz')",
      'contains(l, 2)',
      "contains(l, '2')",
      'contains(l, 2.0)',
      'contains([1, 2, NULL], NULL)',
      "contains(['a', 'b'], 2)",
      "contains([1, 2], 'a')",
      "contains([{'a': 1}], {'a': 1})",
    ]) {
      await agrees(expr);
    }
  });
  test('contains() where DuckDB cannot choose an overload is refused with its reason', async () => {
    await agrees('contains(NULL, NULL)', ROW, 'refused');
    await agrees("contains('abc', NULL)", ROW, 'refused');
    await agrees('contains(s, NULL)', ROW, 'compiled');
    await agrees("contains(NULL, 'a')", ROW, 'compiled');
  });
  test('+ on lists concatenates them; || with NULL is NULL', async () => {
    for (const expr of ['[1,2] + [3,4]', '[1] + NULL', 'NULL + [1]', 'l + l', '[1] + [2.5]', "['a'] + [1]"]) {
      await agrees(expr);
    }
    for (const expr of ['[1] || NULL', 'l || NULL', 'NULL || [1]']) await agrees(expr);
  });
  test('concat() of a list and a string is refused, as DuckDB refuses it', async () => {
    await agrees("concat([1], 'hello')", ROW, 'refused');
    await agrees("concat('a', 'b', [1])", ROW, 'refused');
    await agrees('concat(l, [7], NULL)', ROW, 'compiled');
  });
  test('a list of structs with different keys gets every key', async () => {
    for (const expr of [
      "[{'foo':1}, {'bar':2}]",
      "[{'foo':1}, {'FOO':2}]",
      "[{'a':1,'b':2}, {'b':3,'a':4}]",
      "[{'x': {'a':1}}, {'x': {'b':2}}]",
      "[[{'a':1}], [{'b':2}]]",
      "[st, {'c': 3}]",
    ]) {
      await agrees(expr, ROW, 'compiled');
    }
    await agrees("[{'a':1}, {'a':'x'}]", ROW, 'refused');
  });
  test('struct fields and columns are found whatever their case', async () => {
    for (const expr of ['st.b', "st['b']", 'ST.A', 'S', 'I + 1', "struct_extract({'Ab': 1}, 'ab')"]) {
      await agrees(expr, ROW, 'compiled');
    }
  });
});
