import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SluiceError } from '../sdk/errors.ts';
import type { RecordValue, SluiceRecord, StepResult } from '../sdk/types.ts';
import { BatchQuery, type BatchQueryOptions } from './batch.ts';
import { newDuckDBConnection } from './duckdb.ts';
import { normalize, oracle } from './oracle.ts';
import { planQuery } from './plan.ts';
import { sameValue } from './same-value.ts';
import { SetQuery } from './set.ts';
import { ROWS } from './testdata.ts';

const rec = (value: RecordValue, offset: number): SluiceRecord => ({
  value,
  meta: { position: { partition: 'in', offset } },
});

/** Values whose trip through DuckDB is not the identity, or is easy to get wrong. */
const ODD: RecordValue[] = [
  { id: 1, s: 'abc', t: 'x', z: -0, big: 9007199254740993n, small: 5n, f: 0.5 },
  { id: 2, s: 'a\u0000b', t: 'lone \uD800 surrogate', z: 0, big: -(2n ** 70n), small: -7n, f: Number.NaN },
  { id: 3, s: null, t: undefined, z: null, big: null, small: null, f: Number.POSITIVE_INFINITY },
  { id: 4, s: 'abcd', t: 'y', z: 3, big: 2n ** 100n, small: 0n, f: 1e300 },
  // structs in a list get each other's keys from DuckDB: read back, not passed on
  { id: 5, s: 'zz', t: 'q', l: [{ a: 1 }, { b: 2 }], st: { a: [1, null] }, w: new Date(Date.UTC(1, 0, 1)) },
  { id: 6, s: 'zz', t: 'q', l: [], st: { a: [] }, w: new Date(-8.64e15) },
  { id: 7, s: 'k', t: 'k', l: null, st: null, w: null },
  ...ROWS,
];

/** The same query pruned and with every field loaded, over the same batches: results must be identical. */
async function bothWays(
  query: string,
  batches: RecordValue[][],
  opts: BatchQueryOptions = {},
): Promise<{ pruned: StepResult[]; all: StepResult[]; stats: ReturnType<BatchQuery['stats']> }> {
  const pruned = await BatchQuery.open(query, opts);
  const all = await BatchQuery.open(query, { ...opts, loadAll: true });
  try {
    const records = batches.map((b, i) => b.map((v, j) => rec(v, i * 1000 + j)));
    const a: StepResult[] = [];
    const b: StepResult[] = [];
    for (const batch of records) {
      a.push(await pruned.process(batch));
      b.push(await all.process(batch));
    }
    return { pruned: a, all: b, stats: pruned.stats() };
  } finally {
    await pruned.close();
    await all.close();
  }
}

function assertSame(pruned: StepResult[], all: StepResult[]): void {
  assert.equal(pruned.length, all.length);
  pruned.forEach((p, i) => {
    // deepStrictEqual tells -0 from 0, a bigint from a number, and compares Dates by time
    assert.deepStrictEqual(
      p.records.map((r) => r.value),
      all[i]!.records.map((r) => r.value),
    );
    assert.deepStrictEqual(
      p.records.map((r) => r.meta),
      all[i]!.records.map((r) => r.meta),
    );
    assert.deepStrictEqual(
      (p.rejected ?? []).map((r) => [r.record?.meta.position?.offset, r.error.code, r.error.message]),
      (all[i]!.rejected ?? []).map((r) => [r.record?.meta.position?.offset, r.error.code, r.error.message]),
    );
  });
}

describe('BatchQuery: only the fields a query reads go to DuckDB', () => {
  const PRUNED = [
    "SELECT *, levenshtein(coalesce(s, ''), 'abc') AS d FROM input",
    "SELECT * EXCLUDE (z) REPLACE (upper(t) AS t), levenshtein(t, 'x') AS d FROM input WHERE id <> 3",
    "SELECT id, l, st, w, big, f, t, levenshtein(s, 'a') FROM input WHERE id > 0",
    "SELECT *, upper(s) AS s, levenshtein(s, 'q') AS s FROM input",
    'SELECT input.*, z AS zz, input.big AS b2, list_transform(l, x -> x) AS l2 FROM input AS input',
    "SELECT *, * EXCLUDE (id), levenshtein(s, 'abc') AS d FROM input",
    'SELECT * FROM input WHERE levenshtein(s, s) = 0',
    'SELECT *, CAST(t AS INTEGER) + levenshtein(s, s) AS n FROM input',
    'SELECT *, big * 1000000000 + levenshtein(s, s) AS huge FROM input',
    'SELECT *, missing_field, levenshtein(t, t) AS d FROM input',
  ];
  for (const query of PRUNED) {
    test(`same results pruned as loaded whole: ${query}`, async () => {
      const { pruned, all, stats } = await bothWays(query, [ODD, ODD.slice(0, 5), ODD.slice(3)]);
      assert.equal(stats.pruned, true, 'the query is pruned');
      assertSame(pruned, all);
    });
  }

  test('a condition loads only its fields and keeps the records as they are', async () => {
    const query = "levenshtein(coalesce(t, ''), 'x') <= 1";
    const { pruned, all, stats } = await bothWays(query, [ODD], { mode: 'condition' });
    assert.equal(stats.pruned, true);
    assert.equal(stats.loaded, ODD.filter((v) => 't' in v).length, 'one field per record that has it');
    assertSame(pruned, all);
  });

  test('SELECT * with one expression loads one field per record, not all of them', async () => {
    const values = Array.from({ length: 50 }, (_, i) => ({ id: i, email: `u${i}@x.org`, n: i / 2, k: 'x' }));
    const { pruned, all, stats } = await bothWays("SELECT *, levenshtein(email, 'abc') AS d FROM input", [
      values,
    ]);
    assert.equal(stats.loaded, 50, 'only email is loaded');
    assertSame(pruned, all);
    assert.deepStrictEqual(pruned[0]!.records[3]!.value, { id: 3, email: 'u3@x.org', n: 1.5, k: 'x', d: 8 });
  });

  const WHOLE = [
    "SELECT COLUMNS('s|t'), levenshtein(s, 'a') AS d FROM input",
    "SELECT concat_ws(',', *) AS row, levenshtein(s, 'a') AS d FROM input",
    "SELECT to_json(input) AS j, levenshtein(s, 'a') AS d FROM input",
    "SELECT #1 AS first, levenshtein(s, 'a') AS d FROM input",
    "WITH w AS (SELECT 1 AS one) SELECT *, levenshtein(s, 'a') AS d FROM input",
  ];
  for (const query of WHOLE) {
    test(`loads every field when the columns used are not plain to see: ${query}`, async () => {
      const values = [{ id: 1, s: 'a', t: 'b' }];
      const q = await BatchQuery.open(query);
      try {
        await q.process(values.map((v, i) => rec(v, i)));
        assert.equal(q.stats().pruned, false);
        assert.equal(q.stats().loaded, 3);
      } finally {
        await q.close();
      }
    });
  }

  test('a * REPLACE of a field a record lacks keeps DuckDB handling it (no pruning for that record)', async () => {
    const query = "SELECT * REPLACE (upper(t) AS t), levenshtein(s, 'a') AS d FROM input";
    const { pruned, all } = await bothWays(query, [
      [
        { s: 'a', t: 'b', u: 1 },
        { s: 'ab', u: 2 },
      ],
    ]);
    assertSame(pruned, all);
    assert.deepStrictEqual(pruned[0]!.records[0]!.value, { s: 'a', t: 'B', u: 1, d: 0 });
  });
});

describe('BatchQuery: batches handed in while DuckDB works are joined into one call', () => {
  test('ten batches at once: two DuckDB calls, each batch its own records, metadata and errors', async () => {
    const q = await BatchQuery.open('SELECT id, CAST(n AS INTEGER) + levenshtein(s, s) AS n FROM input');
    try {
      const bad = new Set([23, 71, 72]);
      const batches = Array.from({ length: 10 }, (_, b) =>
        Array.from({ length: 10 }, (_, j) => {
          const id = b * 10 + j;
          return rec({ id, n: bad.has(id) ? `bad${id}` : String(id), s: 'x' }, id);
        }),
      );
      const results = await Promise.all(batches.map((batch) => q.process(batch)));
      results.forEach((result, b) => {
        const batch = batches[b]!;
        const good = batch.filter((r) => !bad.has(r.value.id as number));
        assert.deepStrictEqual(
          result.records.map((r) => r.value),
          good.map((r) => ({ id: r.value.id, n: r.value.id })),
        );
        assert.deepStrictEqual(
          result.records.map((r) => r.meta),
          good.map((r) => r.meta),
        );
        assert.deepStrictEqual(
          (result.rejected ?? []).map((r) => r.record),
          batch.filter((r) => bad.has(r.value.id as number)),
        );
        for (const r of result.rejected ?? []) assert.equal(r.error.code, 'SLUICE_EXPR_EVAL');
      });
      // the first batch runs at once; the nine handed in meanwhile run together, bisected for their
      // three bad records (each failed half is run again)
      const { calls } = q.stats();
      assert.ok(calls < 10 + 3 * 8, `${calls} calls`);
      const clean = await BatchQuery.open("SELECT id, levenshtein(s, 'x') AS d FROM input");
      try {
        const ok = batches.map((batch) => batch.map((r) => rec({ id: r.value.id, s: 'x' }, 0)));
        const out = await Promise.all(ok.map((batch) => clean.process(batch)));
        assert.deepStrictEqual(
          out.map((r) => r.records.length),
          ok.map(() => 10),
        );
        assert.equal(clean.stats().calls, 2, 'one call for the first batch, one for the nine others');
      } finally {
        await clean.close();
      }
    } finally {
      await q.close();
    }
  });
});

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

/** The query on the DuckDB path and on DuckDB itself, record by record: same names, same values, or both failing. */
async function assertDuckDBsAnswer(query: string, values: RecordValue[]): Promise<void> {
  const q = await BatchQuery.open(query);
  let result: StepResult;
  try {
    result = await q.process(values.map((v, i) => rec(v, i)));
  } finally {
    await q.close();
  }
  const out = [...result.records];
  const rejected = new Set((result.rejected ?? []).map((r) => r.record?.meta.position?.offset));
  for (const [i, row] of values.entries()) {
    const theirs = await oracle(query, row, 'table');
    if (!theirs.ok) {
      assert.ok(
        rejected.has(i),
        `record ${i}: DuckDB fails (${theirs.error.split('\n')[0]}), Sluice does not`,
      );
      continue;
    }
    assert.ok(!rejected.has(i), `record ${i}: DuckDB gives ${show(theirs.rows)}, Sluice rejects it`);
    for (const expected of theirs.rows) {
      const mine = out.shift()?.value ?? {};
      assert.deepStrictEqual(Object.keys(mine), theirs.columns, `record ${i}: column names`);
      for (const k of theirs.columns)
        assert.ok(
          sameValue(normalize(mine[k]), expected[k]),
          `record ${i}, ${k}: ${show(mine[k])} vs ${show(expected[k])}`,
        );
    }
  }
  assert.equal(out.length, 0, 'no more rows than DuckDB');
}

describe("BatchQuery: DuckDB's own column names and meaning", () => {
  const ROW = { x: 2, s: 'ab', l: [1, 2, 3], d: new Date(Date.UTC(2020, 0, 31)) };
  const CASES: [string, string][] = [
    ['a lambda keeps its `lambda x:` spelling', 'SELECT list_transform(l, lambda x: x + 1) FROM input'],
    [
      'two lambdas, one nested',
      'SELECT list_transform(l, lambda x: list_filter(l, lambda y: y > x)) FROM input',
    ],
    ['an INTERVAL literal', "SELECT d + INTERVAL '3' MONTH, list_distinct([INTERVAL 1 YEAR]) FROM input"],
    ['a CHAR cast', 'SELECT hash(NULL::CHAR), s::CHAR FROM input'],
    ['a DECIMAL cast', "SELECT '1.234'::DECIMAL, printf('%.3f', '1.234'::DECIMAL), x::DECIMAL FROM input"],
    [
      'renamed items beside a star and an aliased item',
      "SELECT *, x::DECIMAL, s AS t, '1.5'::DECIMAL AS y FROM input",
    ],
    [
      'a renamed item in a filtered query',
      'SELECT list_transform(l, lambda x: x * 2) FROM input WHERE x > 1',
    ],
  ];
  for (const [what, query] of CASES) {
    test(`${what}: ${query}`, async () => {
      await assertDuckDBsAnswer(query, [ROW, { ...ROW, x: 0 }]);
    });
  }

  const STARS = [
    'SELECT struct_pack(*COLUMNS(*)) AS p FROM input',
    'SELECT hash(*COLUMNS(*)) AS h FROM input',
    'SELECT COLUMNS(*) FROM input',
    "SELECT COLUMNS(c -> c <> 'l') FROM input",
    "SELECT COLUMNS('s|x') FROM input",
    "SELECT COLUMNS('^x$') + 1, COLUMNS(c -> c = 's') FROM input",
    'SELECT struct_pack(COLUMNS(*)) FROM input',
    'SELECT x FROM input WHERE COLUMNS(*) IS NOT NULL',
  ];
  for (const query of STARS) {
    test(`a * inside an expression covers the record's fields only: ${query}`, async () => {
      const { path } = await planQuery(query);
      assert.equal(path, 'duckdb-batch');
      await assertDuckDBsAnswer(query, [
        { x: 2, s: 'ab' },
        { x: 3, s: null },
      ]);
    });
  }

  test('a * inside an expression leaves out a field the record lacks, which the query names', async () => {
    // `m` is not in the record: Sluice reads it as NULL, and no star shows it (DuckDB has no column m)
    const stars = "SELECT struct_pack(*COLUMNS(*)) AS p, COLUMNS('s|m') FROM input";
    const q = await BatchQuery.open("SELECT struct_pack(*COLUMNS(*)) AS p, COLUMNS('s|m'), m FROM input");
    let mine: RecordValue;
    try {
      mine = (await q.process([rec({ x: 2, s: 'ab' }, 0)])).records[0]!.value;
    } finally {
      await q.close();
    }
    const theirs = await oracle(stars, { x: 2, s: 'ab' }, 'table');
    assert.ok(theirs.ok);
    assert.deepStrictEqual(mine, { ...theirs.rows[0], m: null });
  });

  test('a condition with COLUMNS(*) tests the record fields only', async () => {
    const condition = 'COLUMNS(*) IS NULL';
    const values = [
      { x: null, s: null },
      { x: 1, s: null },
    ];
    const q = await BatchQuery.open(condition, { mode: 'condition' });
    let kept: RecordValue[];
    try {
      kept = (await q.process(values.map((v, i) => rec(v, i)))).records.map((r) => r.value);
    } finally {
      await q.close();
    }
    const expected: RecordValue[] = [];
    for (const v of values) {
      const theirs = await oracle(`SELECT * FROM input WHERE ${condition}`, v, 'table');
      assert.ok(theirs.ok);
      if (theirs.rows.length) expected.push(v);
    }
    assert.deepStrictEqual(kept, expected);
    assert.equal(expected.length, 1);
  });

  test("DuckDB's names also when the first shape lacks a field the query reads", async () => {
    const query = 'SELECT x::DECIMAL, list_transform(l, lambda v: v + m) FROM input';
    const q = await BatchQuery.open(query);
    let first: RecordValue;
    let second: RecordValue;
    try {
      first = (await q.process([rec({ x: 1, l: [1] }, 0)])).records[0]!.value;
      second = (await q.process([rec({ x: 1, l: [1], m: 2 }, 1)])).records[0]!.value;
    } finally {
      await q.close();
    }
    const theirs = await oracle(query, { x: 1, l: [1], m: 2 }, 'table');
    assert.ok(theirs.ok);
    assert.deepStrictEqual(Object.keys(first), theirs.columns);
    assert.deepStrictEqual(second, theirs.rows[0]);
  });

  for (const query of [
    'SELECT struct_pack(*) FROM input',
    'SELECT hash(*) FROM input',
    'SELECT row(*) FROM input',
  ]) {
    test(`f(*) is f() in DuckDB, which refuses it; so does Sluice, at validation: ${query}`, async () => {
      assert.equal((await oracle(query, { x: 1 }, 'table')).ok, false);
      await assert.rejects(planQuery(query), (err: SluiceError) => err.code === 'SLUICE_EXPR_INVALID');
    });
  }

  test('geomean() is an aggregate (a built-in macro over avg()): the whole input, as DuckDB answers', async () => {
    const query = 'SELECT geomean(x) AS g FROM input';
    const plan = await planQuery(query);
    assert.equal(plan.path, 'duckdb-set');
    assert.match(plan.reason, /geomean/);
    await assert.rejects(
      planQuery('geomean(x) > 1', { mode: 'condition' }),
      /geomean\(\) is not allowed in a filter/,
    );
    const values = [{ x: 2 }, { x: 8 }];
    const set = await SetQuery.open(query);
    const rows: RecordValue[] = [];
    try {
      await set.add(values.map((v, i) => rec(v, i)));
      for await (const r of set.results()) for (const o of r.records) rows.push(o.value);
    } finally {
      await set.close();
    }
    const conn = await newDuckDBConnection();
    try {
      const r = await conn.runAndReadAll(`WITH input AS (SELECT * FROM (VALUES (2), (8)) t(x)) ${query}`);
      assert.deepStrictEqual(rows, r.getRowObjectsJS());
    } finally {
      conn.closeSync();
    }
  });

  test('CURRENT_TIME: the name and the kind of value DuckDB gives', async () => {
    const query = 'SELECT CURRENT_TIME, current_time AS t FROM input';
    const q = await BatchQuery.open(query);
    let mine: RecordValue;
    try {
      mine = (await q.process([rec({ x: 1 }, 0)])).records[0]!.value;
    } finally {
      await q.close();
    }
    const theirs = await oracle(query, { x: 1 }, 'table');
    assert.ok(theirs.ok);
    assert.deepStrictEqual(Object.keys(mine), theirs.columns);
    // the time of day with its offset, in DuckDB's text of a TIME WITH TIME ZONE; a few seconds apart at most
    const seconds = (v: unknown) => {
      const m = /^(\d\d):(\d\d):(\d\d(?:\.\d+)?)\+00$/.exec(String(v));
      assert.ok(m, `${v} is DuckDB's text of a TIMETZ`);
      return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
    };
    const apart = Math.abs(seconds(mine.CURRENT_TIME) - seconds(theirs.rows[0]!.CURRENT_TIME));
    assert.ok(Math.min(apart, 86400 - apart) < 60, `${mine.CURRENT_TIME} vs ${theirs.rows[0]!.CURRENT_TIME}`);
  });
});
