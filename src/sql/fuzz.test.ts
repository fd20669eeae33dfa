/**
 * Seeded random differential testing: random expressions over fixed and random records, compiled
 * SQL against DuckDB. Every (expression, record) pair is a case; at least 10,000 run by default.
 * SLUICE_SQL_FUZZ=<expressions> runs more or fewer; SLUICE_SQL_FUZZ_SEED=<n> picks another seed.
 * A failure prints the seed, the expression and the record, so it can be replayed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExprGen, RecordGen } from './fuzz.ts';
import { compare } from './oracle.ts';
import { ROWS } from './testdata.ts';

const EXPRESSIONS = Number(process.env.SLUICE_SQL_FUZZ ?? 850);
const SEED = Number(process.env.SLUICE_SQL_FUZZ_SEED ?? 20240517);
const RANDOM_PER_EXPRESSION = 6;

function show(row: Record<string, unknown>): string {
  return JSON.stringify(row, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
}

async function fuzz(
  title: string,
  columns: ConstructorParameters<typeof ExprGen>[1],
  recordsFor: (k: number) => Record<string, unknown>[],
): Promise<number> {
  const gen = new ExprGen(SEED, columns);
  const problems: string[] = [];
  let cases = 0;
  for (let k = 0; k < EXPRESSIONS; k++) {
    const sql = `SELECT ${gen.expr(3)} AS r FROM input`;
    for (const row of recordsFor(k)) {
      cases++;
      const diff = await compare(sql, row);
      if (diff)
        problems.push(`${title}, seed ${SEED}, case ${k}: ${sql}\n    record ${show(row)}\n    ${diff}`);
    }
  }
  assert.deepEqual(problems, [], `${problems.length} cases differ\n${problems.slice(0, 30).join('\n')}`);
  return cases;
}

test(`random expressions agree with DuckDB on fixed and random records (seed ${SEED})`, async (t) => {
  const fixed = await fuzz(
    'fixed records',
    { num: ['i', 'n', 'd'], str: ['s', 'u', 'c', 'num'], bool: ['b'], ts: ['ts'] },
    () => ROWS,
  );
  const records = new RecordGen(SEED);
  const random = await fuzz(
    'random records',
    {
      num: ['i', 'n', 'd', 'st.a', 'l[2]', 'deep.a.b.x', 'deep.a.b.c[1].d'],
      str: ['s', 'u', 'c', 'num', 'st.b', 'deep.s', 'tz'],
      bool: ['b'],
      ts: ['ts'],
      tsText: ['tz'],
    },
    () => Array.from({ length: RANDOM_PER_EXPRESSION }, () => records.record()),
  );
  t.diagnostic(`${fixed + random} cases: ${fixed} on fixed records, ${random} on random records`);
  if (!process.env.SLUICE_SQL_FUZZ) assert.ok(fixed + random >= 10_000, `only ${fixed + random} cases`);
});

const LIST_EXPRESSIONS = Math.max(1, Math.round(EXPRESSIONS / 4));

test(`random list expressions and lambdas agree with DuckDB (seed ${SEED})`, async (t) => {
  const gen = new ExprGen(SEED, {
    num: ['i', 'n', 'd'],
    str: ['s', 'u'],
    bool: ['(i > 0)'],
    ts: ["TIMESTAMP '2024-05-17 13:14:15.5'"],
    list: ['l', 'ld'],
  });
  const records = new RecordGen(SEED);
  const problems: string[] = [];
  let cases = 0;
  for (let k = 0; k < LIST_EXPRESSIONS; k++) {
    const sql = `SELECT ${gen.listExpr(2)} AS r FROM input`;
    for (let j = 0; j < RANDOM_PER_EXPRESSION; j++) {
      const row = records.listRecord();
      cases++;
      const diff = await compare(sql, row);
      if (diff)
        problems.push(`list records, seed ${SEED}, case ${k}: ${sql}\n    record ${show(row)}\n    ${diff}`);
    }
  }
  t.diagnostic(`${cases} list cases`);
  assert.deepEqual(problems, [], `${problems.length} cases differ\n${problems.slice(0, 30).join('\n')}`);
});
