/**
 * Differential: a type declared by the source or produced by SQL is the type of the Parquet
 * column, on the streaming engine and pushed down alike, and both give what DuckDB's own
 * `COPY (SELECT ...) TO ... (FORMAT parquet)` gives: the same column types, the same values.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { runSpec } from './test-util.ts';

let work: string;
let db: DuckDBConnection;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-parquet-types-'));
  db = await (await DuckDBInstance.create(':memory:')).connect();
  await db.run("SET TimeZone = 'UTC'");
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const q = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Column types and values (as DuckDB prints them) of a Parquet file, rows in `id` order. */
async function readBack(file: string): Promise<{ types: string[]; rows: string[] }> {
  const described = await db.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${q(file)})`);
  const types = described.getRowsJS().map(([name, type]) => `${name} ${type}`);
  const reader = await db.runAndReadAll(
    `SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet(${q(file)}) ORDER BY id`,
  );
  return { types, rows: reader.getRowsJS().map((r) => JSON.stringify(r)) };
}

async function onlyParquet(dir: string): Promise<string> {
  const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.parquet'));
  assert.equal(files.length, 1, `one Parquet file in ${dir}: ${files.join(', ')}`);
  return path.join(dir, files[0]!);
}

/**
 * Each case: the SQL expression over the CSV's text column `v`, the texts of `v`, and whether the
 * run is pushed down (only per-record compiled SQL is; the others run on the streaming engine).
 */
const CASES: { name: string; expr: string; values: string[]; pushedDown?: boolean }[] = [
  { name: 'date', expr: 'TRY_CAST(v AS DATE)', values: ['2024-03-01', '1999-12-31'], pushedDown: true },
  { name: 'integer', expr: 'TRY_CAST(v AS INTEGER)', values: ['12', '-2147483648'], pushedDown: true },
  { name: 'smallint', expr: 'TRY_CAST(v AS SMALLINT)', values: ['-7', '32767'], pushedDown: true },
  { name: 'bigint', expr: 'TRY_CAST(v AS BIGINT)', values: ['9000000000', '-1'], pushedDown: true },
  { name: 'double', expr: 'TRY_CAST(v AS DOUBLE)', values: ['2.5', '3'], pushedDown: true },
  { name: 'float', expr: 'TRY_CAST(v AS FLOAT)', values: ['0.1', '3'] },
  { name: 'decimal', expr: 'TRY_CAST(v AS DECIMAL(10,2))', values: ['12.34', '7'] },
  { name: 'varchar', expr: 'upper(v)', values: ['abc', 'Zürich'], pushedDown: true },
  { name: 'boolean', expr: 'TRY_CAST(v AS BOOLEAN)', values: ['true', 'false'], pushedDown: true },
  {
    name: 'timestamp',
    expr: 'TRY_CAST(v AS TIMESTAMP)',
    values: ['2024-03-01 12:34:56.789', '1970-01-01 00:00:00'],
    pushedDown: true,
  },
  {
    name: 'timestamptz',
    expr: 'TRY_CAST(v AS TIMESTAMP WITH TIME ZONE)',
    values: ['2024-03-01 12:34:56.789+00', '2024-03-01 23:00:00+02'],
  },
  { name: 'time', expr: 'TRY_CAST(v AS TIME)', values: ['12:34:56', '00:00:00.5'] },
  { name: 'interval', expr: 'TRY_CAST(v AS INTERVAL)', values: ['3 days', '1 month 2 hours'] },
  { name: 'list', expr: '[TRY_CAST(v AS INTEGER), 2]', values: ['1', '5'] },
  {
    name: 'struct',
    expr: "{'n': TRY_CAST(v AS SMALLINT), 'd': TRY_CAST('2024-01-02' AS DATE)}",
    values: ['1', '5'],
  },
];

describe('Parquet column types: declared and SQL-produced types survive, streaming and pushed down', () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.expr}`, async () => {
      const dir = path.join(work, c.name);
      await mkdir(dir, { recursive: true });
      // A row with an empty v (NULL) as well, so a column is typed by more than its values.
      const csv = ['id,v', ...c.values.map((v, i) => `${i + 1},"${v}"`), `${c.values.length + 1},`].join(
        '\n',
      );
      await writeFile(path.join(dir, 'in.csv'), `${csv}\n`);
      const oracle = path.join(dir, 'oracle.parquet');
      await db.run(
        `COPY (SELECT CAST(id AS BIGINT) AS id, ${c.expr} AS c FROM read_csv(${q(path.join(dir, 'in.csv'))}, all_varchar = true, header = true)) ` +
          `TO ${q(oracle)} (FORMAT parquet)`,
      );
      const expected = await readBack(oracle);
      for (const pushdown of ['auto', 'off'] as const) {
        const out = `out-${pushdown}`;
        const summary = await runSpec(
          dir,
          `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: types }
source:
  file: { path: in.csv, csv: { columns: { id: integer, v: string } } }
steps:
  - sql: ${JSON.stringify(`SELECT id, ${c.expr} AS c FROM input`)}
sinks:
  - file: { path: ${out}/, format: parquet }
`,
          { pushdown, runId: `run-${pushdown}` },
        );
        assert.equal(summary.status, 'succeeded');
        const got = await readBack(await onlyParquet(path.join(dir, out)));
        assert.deepEqual(got, expected, `pushdown ${pushdown} (engine ${summary.engine})`);
        if (pushdown === 'auto')
          assert.equal(summary.engine, c.pushedDown ? 'duckdb-pushdown' : 'streaming', 'the engine that ran');
      }
    });
  }

  it('declared CSV columns keep their types through SELECT *, a filter and a set-level step', async () => {
    const dir = path.join(work, 'declared');
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, 'in.csv'),
      'id,day,at,amount,ok\n1,2024-03-01,2024-03-01T10:00:00Z,2.5,true\n2,2024-03-02,,3,\n',
    );
    const source = `source:
  file: { path: in.csv, csv: { columns: { id: integer, day: date, at: timestamp, amount: double, ok: boolean } } }
`;
    const expected = ['id BIGINT', 'day DATE', 'at TIMESTAMP', 'amount DOUBLE', 'ok BOOLEAN'];
    for (const [name, steps] of [
      ['star', '  - sql: SELECT * FROM input\n  - filter: id > 0\n'],
      ['set', '  - sql: SELECT * FROM input ORDER BY id DESC\n'],
    ] as const) {
      for (const pushdown of ['auto', 'off'] as const) {
        const out = `out-${name}-${pushdown}`;
        const summary = await runSpec(
          dir,
          `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: declared }\n${source}steps:\n${steps}sinks:\n  - file: { path: ${out}/, format: parquet }\n`,
          { pushdown, runId: `${name}-${pushdown}` },
        );
        const got = await readBack(await onlyParquet(path.join(dir, out)));
        assert.deepEqual(got.types, expected, `${name}, pushdown ${pushdown} (engine ${summary.engine})`);
        assert.equal(got.rows.length, 2);
      }
    }
  });
});
