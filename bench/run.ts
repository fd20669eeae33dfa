/**
 * `npm run bench`: Sluice side by side with DuckDB's own COPY on the same files, in one run,
 * printed as ratios (this machine is shared and noisy, so only ratios taken together mean much).
 *
 *   npm run bench                 # 1M records per case, and the 5M-record memory run
 *   npm run bench -- --records 200000 --memory-records 1000000   # quicker
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import type { RunSummary } from '../src/engine/run.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    'memory-records': { type: 'string', default: '5000000' },
    only: { type: 'string' },
  },
});
const N = Number(values.records);
const MEM_N = Number(values['memory-records']);
const ROOT = path.resolve(import.meta.dirname, '..');
const DATA = path.join(ROOT, 'bench/.data');
const NODE = process.execPath;
const BIN = path.join(ROOT, 'bin/sluice.js');

interface ChildResult {
  status: string;
  failure: { code: string; message: string } | null;
  elapsedMs: number;
  maxRssMiB: number;
}

const duck = await (await DuckDBInstance.create(':memory:')).connect();
const sql = (q: string) => duck.run(q);
const timeDuck = async (q: string) => {
  const t = performance.now();
  await duck.run(q);
  return performance.now() - t;
};

const COLUMNS = `i AS id, ['DE','FR','NL','US','GB'][1 + i % 5] AS country, round((i % 1000) * 1.37, 2) AS amount,
  'user' || i || '@example.com' AS email, TIMESTAMP '2026-01-01' + to_seconds(i) AS paid_at`;

async function makeInputs(n: number, tag: string) {
  await mkdir(DATA, { recursive: true });
  const jsonl = path.join(DATA, `in-${tag}.jsonl`);
  const csv = path.join(DATA, `in-${tag}.csv`);
  await sql(`COPY (SELECT ${COLUMNS} FROM range(1, ${n + 1}) t(i)) TO '${jsonl}' (FORMAT json)`);
  await sql(`COPY (SELECT ${COLUMNS} FROM range(1, ${n + 1}) t(i)) TO '${csv}' (FORMAT csv, HEADER)`);
  return { jsonl, csv };
}

/** Runs the real CLI, exactly as a user does (`sluice run`), and reads its summary. */
async function runSluice(name: string, spec: string): Promise<ChildResult> {
  const dir = path.join(DATA, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'spec.yaml');
  await writeFile(file, spec);
  const env = { ...process.env, PATH: `${path.dirname(NODE)}:${process.env.PATH}` };
  const out = execFileSync(
    BIN,
    ['run', file, '--json', '--progress', 'none', '--run-dir', path.join(dir, 'runs')],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      env,
    },
  );
  const summary = JSON.parse(out) as RunSummary;
  if (summary.status !== 'succeeded')
    throw new Error(`${name}: ${summary.status} ${JSON.stringify(summary.failure)}`);
  return {
    status: summary.status,
    failure: summary.failure,
    elapsedMs: summary.elapsed_ms,
    maxRssMiB: summary.peak_rss_mib,
  };
}

const header = (name: string) => `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: ${name} }\n`;
const CSV_COLUMNS = '{ id: bigint, country: string, amount: double, email: string, paid_at: timestamp }';

const rows: string[][] = [];
const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
function report(name: string, n: number, ours: ChildResult, duckMs: number | undefined, note = '') {
  rows.push([
    name,
    n.toLocaleString('en-US'),
    rate(n, ours.elapsedMs),
    duckMs === undefined ? '' : rate(n, duckMs),
    duckMs === undefined ? '' : `${(ours.elapsedMs / duckMs).toFixed(2)}x`,
    `${Math.round(ours.maxRssMiB)} MiB`,
    note,
  ]);
  process.stderr.write(`${name}: ${rate(n, ours.elapsedMs)}, peak ${Math.round(ours.maxRssMiB)} MiB\n`);
}

const want = (name: string) => !values.only || values.only.split(',').includes(name);
const { jsonl, csv } = await makeInputs(N, String(N));

if (want('generate')) {
  const out = path.join(DATA, 'generate-jsonl/out');
  const ours = await runSluice(
    'generate-jsonl',
    `${header('gen')}source:\n  generate:\n    count: ${N}\n    fields: { id: seq, country: "pick(DE,FR,NL,US,GB)", amount: "float(0,1370,2)", email: "template('user{seq}@example.com')" }\nsink:\n  file: { path: ${out}/, format: jsonl }\n`,
  );
  const duckMs = await timeDuck(
    `COPY (SELECT i AS id, ['DE','FR','NL','US','GB'][1 + i % 5] AS country, round(random() * 1370, 2) AS amount, 'user' || i || '@example.com' AS email FROM range(1, ${N + 1}) t(i)) TO '${DATA}/duck-gen.jsonl' (FORMAT json)`,
  );
  report('generate → JSONL', N, ours, duckMs);
}

if (want('jsonl')) {
  const ours = await runSluice(
    'jsonl-jsonl',
    `${header('jj')}source:\n  file: { path: ${jsonl} }\nsink:\n  file: { path: ${DATA}/jsonl-jsonl/out/, format: jsonl }\n`,
  );
  const duckMs = await timeDuck(
    `COPY (SELECT * FROM read_json('${jsonl}')) TO '${DATA}/duck-jj.jsonl' (FORMAT json)`,
  );
  report('JSONL → JSONL', N, ours, duckMs);
}

if (want('sql')) {
  const base = `${header('js')}source:\n  file: { path: ${jsonl} }\n`;
  const sink = (name: string) => `sink:\n  file: { path: ${DATA}/${name}/out/, format: jsonl }\n`;
  const step =
    'steps:\n  - sql: SELECT id, upper(country) AS country, amount * 100 AS cents, email FROM input WHERE amount > 10\n';
  const without = await runSluice('jsonl-nosql', base + sink('jsonl-nosql'));
  const withSql = await runSluice('jsonl-sql', base + step + sink('jsonl-sql'));
  const duckMs = await timeDuck(
    `COPY (SELECT id, upper(country) AS country, amount * 100 AS cents, email FROM read_json('${jsonl}') WHERE amount > 10) TO '${DATA}/duck-js.jsonl' (FORMAT json)`,
  );
  report('JSONL → JSONL (baseline for sql)', N, without, undefined);
  report(
    'JSONL → sql → JSONL',
    N,
    withSql,
    duckMs,
    `sql step: ${withSql.elapsedMs >= without.elapsedMs ? '+' : ''}${((withSql.elapsedMs / without.elapsedMs - 1) * 100).toFixed(0)}% vs the baseline`,
  );
}

if (want('parquet')) {
  const ours = await runSluice(
    'csv-parquet',
    `${header('cp')}source:\n  file:\n    path: ${csv}\n    csv: { columns: ${CSV_COLUMNS} }\nsink:\n  file: { path: ${DATA}/csv-parquet/out/, format: parquet }\n`,
  );
  const duckMs = await timeDuck(
    `COPY (SELECT * FROM read_csv('${csv}')) TO '${DATA}/duck-cp.parquet' (FORMAT parquet)`,
  );
  report('CSV → Parquet', N, ours, duckMs);
}

if (want('memory')) {
  const big = MEM_N === N ? { csv } : await makeInputs(MEM_N, String(MEM_N));
  const out = path.join(DATA, 'memory/out');
  const ours = await runSluice(
    'memory',
    `${header('mem')}source:\n  file:\n    path: ${big.csv}\n    csv: { columns: ${CSV_COLUMNS} }\nsink:\n  file: { path: ${out}/, format: parquet }\n`,
  );
  // DuckDB reads back exactly the input rows: same count, and no row missing or different.
  const diff = await duck.runAndReadAll(
    `SELECT (SELECT count(*) FROM read_parquet('${out}/*.parquet')) AS n,
            (SELECT count(*) FROM (SELECT * FROM read_csv('${big.csv}') EXCEPT ALL SELECT * FROM read_parquet('${out}/*.parquet'))) AS missing`,
  );
  const [check] = diff.getRowObjectsJS();
  const note = `read back ${check?.n} rows, ${check?.missing} differ`;
  report('CSV → Parquet (memory)', MEM_N, ours, undefined, note);
  if (Number(check?.n) !== MEM_N || Number(check?.missing) !== 0)
    throw new Error(`read-back mismatch: ${note}`);
}

const table = [
  ['case', 'records', 'sluice', 'duckdb COPY', 'sluice time / duckdb', 'sluice peak RSS', 'notes'],
  ...rows,
];
const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
process.stdout.write(
  `\nnode ${process.version}, ${(await import('node:os')).cpus().length} cores; DuckDB uses every core, Sluice one\n\n`,
);
for (const r of table) process.stdout.write(`| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |\n`);
