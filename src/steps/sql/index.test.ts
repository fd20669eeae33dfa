import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { parse as parseYaml } from 'yaml';
import type { ComponentContext, SluiceRecord, StepInstance, StepResult } from '../../sdk/types.ts';
import { sameValue } from '../../sql/same-value.ts';
import { ROWS } from '../../sql/testdata.ts';
import { createSqlStep, type SqlConfig, sqlStep } from './index.ts';

const ctx: ComponentContext = {
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} },
  baseDir: 'examples',
  pipelineName: 'test',
  runId: 'run-1',
  batchSize: 100,
};
const check = { baseDir: 'examples' };
const COUNTRIES = { countries: { path: 'data/countries.csv' } };

function rec(value: Record<string, unknown>, offset: number): SluiceRecord {
  return {
    value,
    meta: { position: { partition: 'in.jsonl', offset }, eventTime: 1000 + offset, headers: { h: 'v' } },
  };
}

/** DuckDB's own rows for a query, as plain values. */
async function duckRows(sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(':memory:');
  try {
    const conn = await instance.connect();
    return (await conn.runAndReadAll(sql)).getRowObjectsJS();
  } finally {
    instance.closeSync();
  }
}

async function make(query: string, lookups?: SqlConfig['lookups']): Promise<StepInstance> {
  return sqlStep.create(sqlStep.config.parse({ query, ...(lookups ? { lookups } : {}) }), ctx);
}

/** Runs a step over batches, then drains it as the engine does at the end of the input. */
async function runAll(
  step: StepInstance,
  batches: SluiceRecord[][],
): Promise<{ out: StepResult[]; tail: StepResult[] }> {
  const out: StepResult[] = [];
  for (const b of batches) out.push(await step.process(b));
  const tail: StepResult[] = [];
  const finished = step.finish?.();
  if (finished && Symbol.asyncIterator in finished) for await (const r of finished) tail.push(r);
  else if (finished) tail.push(await finished);
  await step.close?.();
  return { out, tail };
}

describe('sql step', () => {
  test('is declared with a shorthand, a strict schema and examples that validate', async () => {
    assert.equal(sqlStep.kind, 'step');
    assert.equal(sqlStep.name, 'sql');
    assert.equal(sqlStep.shorthand, 'query');
    assert.ok(sqlStep.summary && sqlStep.description?.includes('docs/sql.md'));
    assert.equal(sqlStep.config.safeParse({ query: 'SELECT 1 FROM input', sql: 'x' }).success, false);
    assert.equal(
      sqlStep.config.safeParse({ query: 'SELECT 1 FROM input', lookups: { input: { path: 'x.csv' } } })
        .success,
      false,
      'a lookup cannot be called input',
    );
    assert.ok(sqlStep.examples.length >= 2);
    for (const ex of sqlStep.examples) {
      const raw = parseYaml(ex.yaml) as unknown;
      const cfg = sqlStep.config.parse(typeof raw === 'string' ? { query: raw } : raw);
      assert.deepEqual(await sqlStep.check!(cfg, check), [], ex.title);
    }
  });

  test('check refuses unknown tables, functions and lookup columns, pointing into the query', async () => {
    const from = await sqlStep.check!({ query: 'SELECT * FROM payments' }, check);
    assert.equal(from.length, 1);
    assert.deepEqual(from[0]!.path, ['query']);
    assert.equal(from[0]!.offset, 14);
    assert.match(from[0]!.message, /unknown table payments/);
    const fn = await sqlStep.check!({ query: 'SELECT levenstein(a, b) FROM input' }, check);
    assert.match(fn[0]!.message, /unknown function levenstein\(\); did you mean levenshtein\?/);
    const col = await sqlStep.check!(
      {
        query: 'SELECT i.id, c.nme FROM input AS i LEFT JOIN countries AS c ON i.country = c.code',
        lookups: COUNTRIES,
      },
      check,
    );
    assert.equal(col.length, 1);
    assert.match(col[0]!.message, /lookup table countries has no column nme; did you mean name\?/);
    assert.equal(col[0]!.offset, 13);
    const table = await sqlStep.check!(
      { query: 'SELECT * FROM input JOIN contries USING (code)', lookups: COUNTRIES },
      check,
    );
    assert.match(table[0]!.message, /unknown table contries; did you mean countries\?/);
    const file = await sqlStep.check!(
      { query: 'SELECT * FROM input', lookups: { rates: { path: 'data/missing.csv' } } },
      check,
    );
    assert.deepEqual(file[0]!.path, ['lookups', 'rates', 'path']);
    assert.match(file[0]!.message, /lookup rates: no such file .*missing\.csv/);
  });

  test('explain names the path and the construct that decided it', async () => {
    const explain = (query: string, lookups?: SqlConfig['lookups']) =>
      sqlStep.explain!({ query, ...(lookups ? { lookups } : {}) }, check);
    assert.deepEqual(await explain('SELECT id, upper(name) AS n FROM input WHERE id > 1'), {
      path: 'compiled',
      reason: 'every construct is in the compiled subset',
    });
    assert.deepEqual(await explain("SELECT levenshtein(a, 'x') AS d FROM input"), {
      path: 'duckdb-batch',
      reason: 'levenshtein() is not in the compiled subset',
    });
    assert.deepEqual(await explain('SELECT list_transform(l, x -> x * 2) AS l FROM input'), {
      path: 'compiled',
      reason: 'every construct is in the compiled subset',
    });
    assert.deepEqual(await explain('SELECT list_distinct(l) AS l FROM input'), {
      path: 'duckdb-batch',
      reason: 'list_distinct() is not in the compiled subset',
    });
    assert.deepEqual(
      await explain('SELECT i.*, c.name FROM input i LEFT JOIN countries c ON i.country = c.code', COUNTRIES),
      { path: 'duckdb-batch', reason: 'joins lookup table countries' },
    );
    assert.deepEqual(await explain('SELECT country, sum(amount) FROM input GROUP BY country'), {
      path: 'duckdb-set',
      reason: 'GROUP BY needs the whole input',
    });
    assert.equal(
      (await explain('SELECT count(*) AS n FROM input')).reason,
      'aggregate function count(*) needs the whole input',
    );
    assert.equal((await explain('SELECT * FROM input ORDER BY id')).reason, 'ORDER BY needs the whole input');
    assert.equal(
      (await explain('SELECT id, lag(id) OVER (ORDER BY id) AS prev FROM input')).reason,
      'window function lag() needs the whole input',
    );
    assert.equal((await explain('SELECT DISTINCT country FROM input')).path, 'duckdb-set');
    assert.equal((await explain('SELECT * FROM input a JOIN input b ON a.id = b.parent')).path, 'duckdb-set');
  });

  test('needsBoundedInput gives the reason and where it is, only for set-level SQL', async () => {
    const need = await sqlStep.needsBoundedInput!(
      { query: 'SELECT country, sum(amount) FROM input GROUP BY country' },
      check,
    );
    assert.deepEqual(need, { reason: 'GROUP BY needs the whole input', path: ['query'], offset: 48 });
    assert.equal(
      await sqlStep.needsBoundedInput!({ query: "SELECT levenshtein(a, 'b') FROM input" }, check),
      undefined,
    );
  });

  test('projects each record and carries its metadata over', async () => {
    const step = await make(
      'SELECT id, upper(country) AS country, amount * 100 AS cents FROM input WHERE amount > 0',
    );
    const batch = [
      rec({ id: 1, country: 'de', amount: 2.5 }, 1),
      rec({ id: 2, country: 'fr', amount: -3 }, 2),
      rec({ id: 3, country: 'it', amount: 4 }, 3),
    ];
    const out = await step.process(batch);
    assert.deepEqual(
      out.records.map((r) => r.value),
      [
        { id: 1, country: 'DE', cents: 250 },
        { id: 3, country: 'IT', cents: 400 },
      ],
    );
    assert.equal(out.records[0]!.meta, batch[0]!.meta);
    assert.equal(out.records[1]!.meta, batch[2]!.meta);
    assert.deepEqual(batch[0]!.value, { id: 1, country: 'de', amount: 2.5 }, 'the input is not modified');
  });

  test('a record the query fails on goes to the errors; the batch carries on', async () => {
    const step = await make('SELECT id, 100 // CAST(n AS INTEGER) AS q FROM input');
    const batch = [rec({ id: 1, n: '4' }, 1), rec({ id: 2, n: 'x' }, 2), rec({ id: 3, n: '0' }, 3)];
    const out = await step.process(batch);
    assert.deepEqual(
      out.records.map((r) => r.value),
      [
        { id: 1, q: 25 },
        { id: 3, q: null },
      ],
    );
    assert.equal(out.rejected?.length, 1);
    assert.equal(out.rejected![0]!.record, batch[1]);
    assert.equal(out.rejected![0]!.error.code, 'SLUICE_EXPR_EVAL');
  });
});

describe('sql step on DuckDB micro-batches', () => {
  test('functions outside the compiled subset give what DuckDB gives', async () => {
    const step = await make(
      "SELECT id, levenshtein(name, 'sluice') AS d, regexp_split_to_array(tags, ',') AS tags, " +
        'list_transform(l, x -> x * 2) AS l2 FROM input WHERE id <> 2',
    );
    const batch = [
      rec({ id: 1, name: 'slice', tags: 'a,b', l: [1, 2] }, 1),
      rec({ id: 2, name: 'x', tags: 'c', l: [] }, 2),
      rec({ id: 3, name: null, tags: null, l: null }, 3),
      rec({ id: 4, name: 'sluice', tags: '', l: [5, null] }, 4),
    ];
    const { out } = await runAll(step, [batch]);
    assert.deepEqual(
      out[0]!.records.map((r) => r.value),
      [
        { id: 1, d: 1, tags: ['a', 'b'], l2: [2, 4] },
        { id: 3, d: null, tags: null, l2: null },
        { id: 4, d: 0, tags: [''], l2: [10, null] },
      ],
    );
    assert.deepEqual(
      out[0]!.records.map((r) => r.meta),
      [batch[0]!.meta, batch[2]!.meta, batch[3]!.meta],
    );
  });

  test('asks the engine for several batches in flight, joined into DuckDB calls; compiled asks for none', async () => {
    const duck = await make("SELECT *, levenshtein(name, 'x') AS d FROM input");
    const compiled = await make('SELECT *, length(name) AS d FROM input');
    try {
      assert.deepEqual(
        duck.inFlight,
        { batches: 32, ordered: true },
        'batches of 100: 32 (4,096 records, at most 32)',
      );
      assert.equal(compiled.inFlight, undefined);
      // handed in together, as the engine does: each batch its own output, in order
      const batches = [0, 1, 2].map((b) => [rec({ name: `n${b}` }, b)]);
      const out = await Promise.all(batches.map((batch) => duck.process(batch)));
      assert.deepEqual(
        out.map((r) => r.records.map((o) => [o.value.name, o.meta.position?.offset])),
        [[['n0', 0]], [['n1', 1]], [['n2', 2]]],
      );
    } finally {
      await duck.close?.();
      await compiled.close?.();
    }
  });

  test('a batch is not judged by the statistics of the batch before it (the prepared plan is reused)', async () => {
    // DuckDB's statistics propagation proves `id = 7` false over a table of ids 1 and 3 and folds
    // the CASE away; reused for the next batch, that plan gave id 7 the ELSE branch, not the error.
    const step = await make(
      "SELECT id, CAST(CASE WHEN id = 7 THEN 'y' ELSE '1' END AS INTEGER) AS c, levenshtein('a', 'b') AS d FROM input",
    );
    const { out } = await runAll(step, [
      [rec({ id: 1 }, 1), rec({ id: 3 }, 2)],
      [rec({ id: 7 }, 3), rec({ id: 9 }, 4)],
    ]);
    assert.deepEqual(
      out[1]!.records.map((r) => r.value),
      [{ id: 9, c: 1, d: 1 }],
    );
    assert.deepEqual(
      out[1]!.rejected?.map((r) => [r.record?.value.id, r.error.code]),
      [[7, 'SLUICE_EXPR_EVAL']],
    );
  });

  test('records of different shapes keep their own types, their order and their metadata', async () => {
    const step = await make("SELECT typeof(v) AS t, v, levenshtein('a', 'b') AS one FROM input");
    const values: unknown[] = [
      1,
      'x',
      2.5,
      null,
      true,
      new Date('2024-01-02T03:04:05.006Z'),
      [1, 2],
      { a: 1 },
      7,
    ];
    const batch = values.map((v, i) => rec({ v }, i));
    const { out } = await runAll(step, [batch]);
    assert.deepEqual(
      out[0]!.records.map((r) => r.value.t),
      [
        'BIGINT',
        'VARCHAR',
        'DOUBLE',
        'BIGINT',
        'BOOLEAN',
        'TIMESTAMP',
        'BIGINT[]',
        'STRUCT(a BIGINT)',
        'BIGINT',
      ],
      'a NULL joins the typed records of its shape',
    );
    assert.deepEqual(
      out[0]!.records.map((r) => r.value.v),
      values,
    );
    assert.deepEqual(
      out[0]!.records.map((r) => r.meta.position?.offset),
      values.map((_, i) => i),
    );
  });

  test('a missing field reads as NULL, and * leaves it out', async () => {
    const step = await make("SELECT *, levenshtein(coalesce(b, ''), 'x') AS d FROM input");
    const { out } = await runAll(step, [[rec({ a: 1 }, 1), rec({ a: 2, b: 'x' }, 2)]]);
    assert.deepEqual(
      out[0]!.records.map((r) => r.value),
      [
        { a: 1, d: 1 },
        { a: 2, b: 'x', d: 0 },
      ],
    );
  });

  test('a batch of 100 with 3 bad casts: 97 out, the 3 rejected with the value', async () => {
    const step = await make('SELECT id, CAST(n AS INTEGER) + levenshtein(s, s) AS n FROM input');
    const bad = new Set([7, 50, 93]);
    const batch = Array.from({ length: 100 }, (_, i) =>
      rec({ id: i, n: bad.has(i) ? `bad${i}` : String(i), s: 'x' }, i),
    );
    const { out } = await runAll(step, [batch]);
    const [result] = out;
    assert.equal(result!.records.length, 97);
    assert.deepEqual(
      result!.records.map((r) => r.value.id),
      batch.map((r) => r.value.id).filter((id) => !bad.has(id as number)),
    );
    assert.ok(result!.records.every((r) => r.value.n === r.value.id));
    assert.equal(result!.rejected?.length, 3);
    assert.deepEqual(
      result!.rejected!.map((r) => r.record),
      [batch[7], batch[50], batch[93]],
    );
    for (const r of result!.rejected!) {
      assert.equal(r.error.code, 'SLUICE_EXPR_EVAL');
      assert.match(r.error.message, new RegExp(`Could not convert string '${r.record!.value.n}' to INT32`));
      assert.equal(
        r.error.details?.expression,
        'SELECT id, CAST(n AS INTEGER) + levenshtein(s, s) AS n FROM input',
      );
      assert.deepEqual(r.error.details?.value, r.record!.value);
    }
  });

  test('a result beyond ±2^53 is the exact bigint DuckDB gives, on DuckDB and on the compiled path', async () => {
    for (const query of [
      'SELECT id, n * 1000 + hash(1) * 0 AS big FROM input',
      'SELECT id, n * 1000 AS big FROM input',
    ]) {
      const step = await make(query);
      const batch = [rec({ id: 1, n: 1 }, 1), rec({ id: 2, n: 2 ** 50 }, 2), rec({ id: 3, n: 2 }, 3)];
      const { out } = await runAll(step, [batch]);
      assert.deepEqual(
        out[0]!.records.map((r) => r.value),
        [
          { id: 1, big: 1000 },
          { id: 2, big: 1125899906842624000n },
          { id: 3, big: 2000 },
        ],
        query,
      );
      assert.deepEqual(
        out[0]!.records.map((r) => r.meta),
        batch.map((r) => r.meta),
      );
      assert.equal(out[0]!.rejected, undefined, query);
    }
  });

  test("a list function over a list it does not model (bigints beyond ±2^53, mixed types) gives DuckDB's answer", async () => {
    const step = await make('SELECT id, list_sum(l) AS s FROM input');
    const batch = [
      rec({ id: 1, l: [1, 2] }, 1),
      rec({ id: 2, l: [9223372036854775807n, 5n] }, 2),
      rec({ id: 3, l: [1.5, 2] }, 3),
    ];
    const { out } = await runAll(step, [batch]);
    assert.deepEqual(
      out[0]!.records.map((r) => r.value),
      [
        { id: 1, s: 3 },
        { id: 2, s: 9223372036854775812n },
        { id: 3, s: 3.5 },
      ],
    );
    assert.equal(out[0]!.rejected, undefined);
  });

  test("a NaN written as text is DuckDB's, sign included (nan, -nan), not the compiled code's", async () => {
    // inf - inf and -nan have their sign bit set on DuckDB's x86 builds; JavaScript cannot say
    const step = await make(
      "SELECT id, (x - x)::VARCHAR AS diff, (-(x - x))::VARCHAR AS neg, 'nan'::DOUBLE::VARCHAR AS lit, x::VARCHAR AS t FROM input",
    );
    const batch = [rec({ id: 1, x: Number.POSITIVE_INFINITY }, 1), rec({ id: 2, x: 2.5 }, 2)];
    const { out } = await runAll(step, [batch]);
    const expected = await duckRows(
      "SELECT id, (x - x)::VARCHAR AS diff, (-(x - x))::VARCHAR AS neg, 'nan'::DOUBLE::VARCHAR AS lit, x::VARCHAR AS t FROM (VALUES (1, 'inf'::DOUBLE), (2, 2.5::DOUBLE)) v(id, x)",
    );
    assert.deepEqual(
      out[0]!.records.map((r) => r.value),
      expected,
    );
    assert.equal(out[0]!.rejected, undefined);
  });

  test("a constant NaN that fails a cast is DuckDB's to fail, record by record, not refused at validation", async () => {
    // the failure's message would print the NaN, whose sign only DuckDB knows
    const step = await make("SELECT id, CAST('nan'::DOUBLE AS INTEGER) AS n FROM input");
    const { out } = await runAll(step, [[rec({ id: 1 }, 1), rec({ id: 2 }, 2)]]);
    const duck = await duckRows("SELECT CAST('nan'::DOUBLE AS INTEGER) AS n").then(
      () => assert.fail('DuckDB casts it'),
      // its first line: the rest points into its own query text
      (err: Error) => err.message.split('\n')[0]!,
    );
    assert.deepEqual(out[0]!.records, []);
    assert.deepEqual(
      out[0]!.rejected?.map((r) => r.error.message.slice(0, duck.length)),
      [duck, duck],
    );
  });

  test('integers beyond ±2^53 (as JSON Lines gives them) pass through and compare exactly', async () => {
    const step = await make(
      'SELECT id, n, n > 9007199254740992 AS above, n = 9007199254740993 AS eq, n + 1 AS next FROM input WHERE n <> 0',
    );
    const batch = [
      rec({ id: 1, n: 9007199254740993n }, 1),
      rec({ id: 2, n: -12345678901234567890n }, 2),
      rec({ id: 3, n: 123456789012345678901234567890n }, 3),
      rec({ id: 4, n: 5 }, 4),
      rec({ id: 5, n: 2n ** 130n }, 5),
    ];
    const { out } = await runAll(step, [batch]);
    assert.deepEqual(
      out[0]!.records.map((r) => r.value),
      [
        { id: 1, n: 9007199254740993n, above: true, eq: true, next: 9007199254740994n },
        { id: 2, n: -12345678901234567890n, above: false, eq: false, next: -12345678901234567889n },
        {
          id: 3,
          n: 123456789012345678901234567890n,
          above: true,
          eq: false,
          next: 123456789012345678901234567891n,
        },
        { id: 4, n: 5, above: false, eq: false, next: 6 },
      ],
    );
    // Beyond 128 bits DuckDB has no integer type: the record fails, naming the value.
    assert.deepEqual(
      out[0]!.rejected!.map((r) => r.record?.value.id),
      [5],
    );
    assert.match(out[0]!.rejected![0]!.error.message, /does not fit a HUGEINT/);
  });

  test('lookup tables: LEFT JOIN keeps unmatched records, INNER JOIN filters them', async () => {
    const batch = [
      rec({ id: 1, country: 'DE' }, 1),
      rec({ id: 2, country: 'XX' }, 2),
      rec({ id: 3, country: null }, 3),
      rec({ id: 4, country: 'JP' }, 4),
    ];
    const left = await make(
      'SELECT p.*, c.name AS country_name FROM input AS p LEFT JOIN countries AS c ON p.country = c.code',
      COUNTRIES,
    );
    const l = (await runAll(left, [batch])).out[0]!;
    assert.deepEqual(
      l.records.map((r) => r.value),
      [
        { id: 1, country: 'DE', country_name: 'Germany' },
        { id: 2, country: 'XX', country_name: null },
        { id: 3, country: null, country_name: null },
        { id: 4, country: 'JP', country_name: 'Japan' },
      ],
    );
    assert.deepEqual(
      l.records.map((r) => r.meta),
      batch.map((r) => r.meta),
    );
    const inner = await make(
      "SELECT id, region FROM input JOIN countries ON input.country = countries.code WHERE region <> 'Asia'",
      COUNTRIES,
    );
    const i = (await runAll(inner, [batch])).out[0]!;
    assert.deepEqual(
      i.records.map((r) => r.value),
      [{ id: 1, region: 'Europe' }],
    );
    assert.equal(i.records[0]!.meta, batch[0]!.meta);
  });
});

/** In-subset queries run compiled and forced onto DuckDB micro-batches must agree. */
const SAME = [
  'SELECT * FROM input',
  'SELECT i, n, d, i + n AS s, d * 2 AS dd, i // 2 AS q, n % 3 AS r FROM input',
  "SELECT s, upper(s) AS u, length(u) AS len, s || '!' AS bang, concat(s, z) AS c FROM input",
  'SELECT b, NOT b AS nb, b AND i > 0 AS both, z IS NULL AS zn FROM input WHERE i IS NOT NULL',
  "SELECT ts, extract(year FROM ts) AS y, date_trunc('day', ts) AS day FROM input",
  'SELECT l, l[1] AS first, st, st.a AS a, st.b AS b FROM input',
  "SELECT c, CASE WHEN c IN ('DE', 'de') THEN 'germany' ELSE 'other' END AS k, coalesce(z, i, 0) AS co FROM input",
  'SELECT * EXCLUDE (u, st) REPLACE (i * 10 AS i) FROM input',
  'SELECT TRY_CAST(num AS INTEGER) AS ni, TRY_CAST(num AS DOUBLE) AS nd FROM input',
];

describe('compiled and DuckDB batch paths give the same results', () => {
  for (const query of SAME) {
    test(query, async () => {
      const batch = [...ROWS, ...ROWS.slice(0, 3)].map((v, i) => rec(v, i));
      const cfg = sqlStep.config.parse({ query });
      const compiled = await (await createSqlStep(cfg, ctx)).process(batch);
      const duck = await createSqlStep(cfg, ctx, { forceDuckDB: true });
      const viaDuck = await duck.process(batch);
      await duck.close?.();
      const key = (r: SluiceRecord) => r.meta.position?.offset;
      assert.deepEqual(viaDuck.records.map(key), compiled.records.map(key), 'the same records, in order');
      assert.deepEqual(
        (viaDuck.rejected ?? []).map((r) => key(r.record!)),
        (compiled.rejected ?? []).map((r) => key(r.record!)),
        'the same records fail',
      );
      compiled.records.forEach((r, i) => {
        const other = viaDuck.records[i]!;
        assert.ok(
          sameValue(other.value, r.value),
          `${JSON.stringify(other.value)} vs ${JSON.stringify(r.value)}`,
        );
        assert.equal(other.meta, r.meta);
      });
    });
  }

  test('a failing cast fails the same records on both paths', async () => {
    const query = 'SELECT CAST(num AS INTEGER) AS n FROM input';
    const batch = ROWS.map((v, i) => rec(v, i));
    const cfg = sqlStep.config.parse({ query });
    const compiled = await (await createSqlStep(cfg, ctx)).process(batch);
    const duck = await createSqlStep(cfg, ctx, { forceDuckDB: true });
    const viaDuck = await duck.process(batch);
    await duck.close?.();
    assert.deepEqual(
      viaDuck.records.map((r) => r.value),
      compiled.records.map((r) => r.value),
    );
    assert.deepEqual(
      viaDuck.rejected?.map((r) => r.record),
      compiled.rejected?.map((r) => r.record),
    );
    assert.ok(viaDuck.rejected!.every((r) => r.error.code === 'SLUICE_EXPR_EVAL'));
  });
});

describe('set-level SQL', () => {
  const batches = [
    [rec({ id: 1, country: 'DE', amount: 10 }, 1), rec({ id: 2, country: 'FR', amount: 5 }, 2)],
    [rec({ id: 3, country: 'DE', amount: 2.5 }, 3), rec({ id: 4, country: 'US', amount: null }, 4)],
    [rec({ id: 5, country: 'FR', amount: 1 }, 5)],
  ];

  test('GROUP BY with ORDER BY over several batches; BIGINT and DOUBLE unify to DOUBLE', async () => {
    const step = await make(
      'SELECT country, count(*) AS n, sum(amount) AS total FROM input GROUP BY country ORDER BY total DESC NULLS LAST',
    );
    const { out, tail } = await runAll(step, batches);
    assert.ok(
      out.every((r) => r.records.length === 0 && !r.rejected),
      'nothing is emitted before the end',
    );
    assert.deepEqual(
      tail.flatMap((r) => r.records.map((x) => x.value)),
      [
        { country: 'DE', n: 2, total: 12.5 },
        { country: 'FR', n: 2, total: 6 },
        { country: 'US', n: 1, total: null },
      ],
    );
  });

  test('set-level results beyond ±2^53 are exact bigints; BIGINT and HUGEINT unify to HUGEINT', async () => {
    const step = await make(
      'SELECT sum(n) AS total, max(n) AS top, sum(id) * 4611686018427387904 AS big FROM input',
    );
    const { tail } = await runAll(step, [
      [rec({ id: 1, n: 9007199254740993n }, 1), rec({ id: 2, n: 5 }, 2)],
      [rec({ id: 3, n: -123456789012345678901234567890n }, 3)],
    ]);
    assert.deepEqual(tail[0]!.records[0]!.value, {
      total: -123456789012345678901234567890n + 9007199254740993n + 5n,
      top: 9007199254740993n,
      big: 6n * 4611686018427387904n,
    });
  });

  test('count(*), a window function and the output in batches of batchSize', async () => {
    const count = await make('SELECT count(*) AS n, count(amount) AS with_amount FROM input');
    assert.deepEqual((await runAll(count, batches)).tail[0]!.records[0]!.value, { n: 5, with_amount: 4 });
    const small = { ...ctx, batchSize: 2 };
    const windowed = await sqlStep.create(
      sqlStep.config.parse({
        query:
          'SELECT id, sum(amount) OVER (PARTITION BY country ORDER BY id) AS running FROM input ORDER BY id',
      }),
      small,
    );
    const { tail } = await runAll(windowed, batches);
    assert.deepEqual(
      tail.map((r) => r.records.length),
      [2, 2, 1],
    );
    assert.deepEqual(
      tail.flatMap((r) => r.records.map((x) => x.value)),
      [
        { id: 1, running: 10 },
        { id: 2, running: 5 },
        { id: 3, running: 12.5 },
        { id: 4, running: null },
        { id: 5, running: 6 },
      ],
    );
  });

  test('a field whose type cannot join its column is rejected, naming both types', async () => {
    const step = await make('SELECT sum(amount) AS total FROM input');
    const bad = rec({ id: 9, amount: 'lots' }, 9);
    const { out, tail } = await runAll(step, [...batches, [bad]]);
    const rejected = out.at(-1)!.rejected!;
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.record, bad);
    assert.equal(rejected[0]!.error.code, 'SLUICE_SQL_TYPE_CONFLICT');
    assert.match(rejected[0]!.error.message, /field amount is VARCHAR here but DOUBLE in earlier records/);
    assert.deepEqual(tail[0]!.records[0]!.value, { total: 18.5 });
  });

  test('a self-join and a lookup join over the whole input', async () => {
    const step = await make(
      'SELECT a.id, b.id AS same_country, c.name FROM input a JOIN input b ON a.country = b.country AND a.id < b.id ' +
        'JOIN countries c ON c.code = a.country ORDER BY a.id',
      COUNTRIES,
    );
    const { tail } = await runAll(step, batches);
    assert.deepEqual(
      tail.flatMap((r) => r.records.map((x) => x.value)),
      [
        { id: 1, same_country: 3, name: 'Germany' },
        { id: 2, same_country: 5, name: 'France' },
      ],
    );
  });
});
