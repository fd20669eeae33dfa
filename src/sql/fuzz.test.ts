/**
 * Seeded random differential testing: random expressions over the differential rows, compiled
 * SQL against DuckDB. SLUICE_SQL_FUZZ=<cases> runs more (the default keeps `npm test` quick);
 * SLUICE_SQL_FUZZ_SEED=<n> picks another seed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExprGen } from './fuzz.ts';
import { compare } from './oracle.ts';
import { ROWS } from './testdata.ts';

const CASES = Number(process.env.SLUICE_SQL_FUZZ ?? 250);
const SEED = Number(process.env.SLUICE_SQL_FUZZ_SEED ?? 20240517);

test(`${CASES} random expressions agree with DuckDB (seed ${SEED})`, async () => {
  const gen = new ExprGen(SEED, {
    num: ['i', 'n', 'd'],
    str: ['s', 'u', 'c', 'num'],
    bool: ['b'],
    ts: ['ts'],
  });
  const problems: string[] = [];
  for (let k = 0; k < CASES; k++) {
    const sql = `SELECT ${gen.expr(3)} AS r FROM input`;
    for (const [i, row] of ROWS.entries()) {
      const diff = await compare(sql, row);
      if (diff) problems.push(`case ${k}, row ${i}: ${sql}\n    ${diff}`);
    }
  }
  assert.deepEqual(problems, [], problems.slice(0, 30).join('\n'));
});
