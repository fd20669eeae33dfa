/**
 * `npm run bench`: Sluice side by side with DuckDB's own COPY on the same files, in one run,
 * printed as ratios (this machine is shared and noisy, so only ratios taken together mean much).
 *
 *   npm run bench                 # 1M records per case, and the 5M-record memory run
 *   npm run bench -- --records 200000 --memory-records 1000000   # quicker
 *   npm run bench -- --only sql,pushdown --repeat 3             # some cases, best of 3 runs each
 *
 * Cases: generate, jsonl, sql, microbatch, duckpath, parquet, pushdown, memory, server (the control plane
 * under 1,000 jobs, 20 at once, against itself idle: bench/server.ts; `--server-jobs N`),
 * postgres and kafka (bench/connectors.ts: PostgreSQL → Parquet next to psql's \copy, Kafka →
 * Kafka next to a bare client loop; they start the project's services when not running), http
 * (bench/http.ts: the http step against a 100 ms server beside bare undici and fetch harnesses,
 * and a run with failing calls whose counts must add up), startup (bench/startup.ts: `sluice --help`
 * and `sluice validate` of the quick start as a ratio to a bare `node -e 0`, median of 9 runs).
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
    repeat: { type: 'string', default: '1' },
    'server-jobs': { type: 'string', default: '1000' },
  },
});
/** Each timed case runs this many times, alternating where cases are compared; the best time counts. */
const REPEAT = Math.max(1, Number(values.repeat));
const N = Number(values.records);
const MEM_N = Number(values['memory-records']);
const ROOT = path.resolve(import.meta.dirname, '..');
const DATA = path.join(ROOT, 'bench/.data');
const NODE = process.execPath;
const BIN = path.join(ROOT, 'bin/sluice.js');

interface ChildResult {
  engine: string;
  /** Time inside the steps (their operators' time_ms). */
  stepMs: number;
  status: string;
  failure: { code: string; message: string } | null;
  elapsedMs: number;
  /** CPU time of the whole process, every thread (user + system). */
  cpuMs: number;
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
async function runSluice(name: string, spec: string, args: string[] = []): Promise<ChildResult> {
  const dir = path.join(DATA, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'spec.yaml');
  await writeFile(file, spec);
  const env = { ...process.env, PATH: `${path.dirname(NODE)}:${process.env.PATH}` };
  const out = execFileSync(
    BIN,
    ['run', file, '--json', '--progress', 'none', '--run-dir', path.join(dir, 'runs'), ...args],
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
    engine: summary.engine,
    stepMs: summary.operators.filter((o) => o.kind === 'step').reduce((n, o) => n + o.time_ms, 0),
    status: summary.status,
    failure: summary.failure,
    elapsedMs: summary.elapsed_ms,
    cpuMs: summary.cpu_ms,
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

/** The fastest of REPEAT runs of each thunk, run in turns so that they share the machine's moods. */
async function best<T extends { elapsedMs: number }>(...thunks: (() => Promise<T>)[]): Promise<T[]> {
  const bests: (T | undefined)[] = thunks.map(() => undefined);
  for (let r = 0; r < REPEAT; r++)
    for (const [i, thunk] of thunks.entries()) {
      const result = await thunk();
      if (!bests[i] || result.elapsedMs < bests[i]!.elapsedMs) bests[i] = result;
    }
  return bests as T[];
}
/**
 * DuckDB's own COPY as a user runs it (`duckdb -c "COPY ..."`): a fresh in-process instance, opened
 * within the timing, as a pushed-down Sluice run opens its own. A long-lived instance runs a
 * repeated CSV query about 30% faster (measured: 310 ms against 450 ms over 1M rows), which is
 * not what either side gets on a real run.
 */
const timeFreshDuck = async (q: string) => {
  const t = performance.now();
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  await connection.run(q);
  const ms = performance.now() - t;
  connection.closeSync();
  instance.closeSync();
  return ms;
};
const bestDuck = async (q: string) => {
  let ms = Number.POSITIVE_INFINITY;
  for (let r = 0; r < REPEAT; r++) ms = Math.min(ms, await timeDuck(q));
  return ms;
};
/** Three expressions and a filter that keeps every record (amounts are never negative). */
const SQL_STEP =
  'SELECT id, upper(country) AS country, amount * 100 AS amount, lower(email) AS email, paid_at FROM input WHERE amount >= 0';
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
  // The same records in and out (the filter keeps all, the projection keeps every field), so the
  // ratio of the two runs is the sql step's own cost.
  const base = `${header('js')}source:\n  file: { path: ${jsonl} }\n`;
  const sink = (name: string) => `sink:\n  file: { path: ${DATA}/${name}/out/, format: jsonl }\n`;
  const step = `steps:\n  - sql: ${SQL_STEP}\n`;
  const [without, withSql] = await best(
    () => runSluice('jsonl-nosql', base + sink('jsonl-nosql')),
    () => runSluice('jsonl-sql', base + step + sink('jsonl-sql')),
  );
  const duckMs = await bestDuck(
    `COPY (${SQL_STEP.replace('FROM input', `FROM read_json('${jsonl}')`)}) TO '${DATA}/duck-js.jsonl' (FORMAT json)`,
  );
  const ratio = withSql!.elapsedMs / without!.elapsedMs;
  report('JSONL → JSONL (baseline for sql)', N, without!, undefined);
  report(
    'JSONL → sql → JSONL',
    N,
    withSql!,
    duckMs,
    `sql step: ${ratio.toFixed(2)}x the baseline (target ≤ 1.30); the step's own time ${Math.round(withSql!.stepMs)} ms of ${Math.round(withSql!.elapsedMs)} ms`,
  );
}

if (want('microbatch')) {
  // The same query with one function outside the compiled subset (levenshtein): it runs on DuckDB
  // in micro-batches; at the default batch size and at 10,000 records per batch.
  const query = SQL_STEP.replace(
    ' FROM input',
    ", levenshtein(email, 'user1@example.com') AS distance FROM input",
  );
  const base = `${header('mb')}source:\n  file: { path: ${jsonl} }\nsteps:\n  - sql: ${query}\n`;
  const sink = (name: string) => `sink:\n  file: { path: ${DATA}/${name}/out/, format: jsonl }\n`;
  const small = await runSluice('microbatch', base + sink('microbatch'));
  const large = await runSluice(
    'microbatch-10k',
    `${base + sink('microbatch-10k')}settings: { batch_size: 10000 }\n`,
  );
  const duckMs = await bestDuck(
    `COPY (${query.replace('FROM input', `FROM read_json('${jsonl}')`)}) TO '${DATA}/duck-mb.jsonl' (FORMAT json)`,
  );
  // (the step's time is not shown: batches overlap on this path, their times add up to more than the run's)
  const step = (r: ChildResult) => `${rate(N, r.cpuMs)} per CPU-second`;
  report('JSONL → sql on DuckDB batches → JSONL', N, small, duckMs, step(small));
  report('  the same, batch_size 10000', N, large, duckMs, step(large));
}

if (want('duckpath')) {
  // One expression added to every record, three ways over the same file: in the compiled subset,
  // outside it (Sluice runs it on DuckDB in micro-batches), and DuckDB's own SELECT of the latter
  // over the file, written as JSON to /dev/null. Per CPU-second counts every thread of the process
  // (DuckDB's too): what one core would give.
  const { planQuery } = await import('../src/sql/index.ts');
  const inSubset = 'SELECT *, length(email) AS n FROM input';
  const outside = "SELECT *, levenshtein(email, 'abc') AS n FROM input";
  for (const [query, path] of [
    [inSubset, 'compiled'],
    [outside, 'duckdb-batch'],
  ] as const) {
    const plan = await planQuery(query, { bind: false });
    if (plan.path !== path)
      throw new Error(`${query} runs on ${plan.path}, not ${path}: pick another expression`);
  }
  const spec = (name: string, query: string) =>
    `${header(name)}source:\n  file: { path: ${jsonl} }\nsteps:\n  - sql: ${query}\nsink:\n  file: { path: ${DATA}/${name}/out/, format: jsonl }\n`;
  const duckQuery = `COPY (${outside.replace('FROM input', `FROM read_json('${jsonl}')`)}) TO '/dev/null' (FORMAT json)`;
  const [compiled, viaDuck, duckRun] = await best<ChildResult | { elapsedMs: number; cpuMs: number }>(
    () => runSluice('duckpath-compiled', spec('dpc', inSubset)),
    () => runSluice('duckpath-duckdb', spec('dpd', outside)),
    async () => {
      const cpu = process.cpuUsage();
      const elapsedMs = await timeFreshDuck(duckQuery);
      const used = process.cpuUsage(cpu);
      return { elapsedMs, cpuMs: (used.user + used.system) / 1000 };
    },
  );
  const perCpu = (r: { cpuMs: number }) => rate(N, r.cpuMs);
  const duckMs = duckRun!.elapsedMs;
  report(
    'JSONL → sql (compiled: length) → JSONL',
    N,
    compiled as ChildResult,
    duckMs,
    `${perCpu(compiled!)} per CPU-second`,
  );
  report(
    'JSONL → sql (DuckDB path: levenshtein) → JSONL',
    N,
    viaDuck as ChildResult,
    duckMs,
    `${perCpu(viaDuck!)} per CPU-second; ${(viaDuck!.elapsedMs / compiled!.elapsedMs).toFixed(2)}x the compiled time`,
  );
  rows.push([
    "  DuckDB's own SELECT (levenshtein), read_json → /dev/null",
    N.toLocaleString('en-US'),
    '',
    rate(N, duckMs),
    '',
    '',
    `${perCpu(duckRun!)} per CPU-second (every core)`,
  ]);
  // the step alone, records already parsed: the issue's target is ≥ 200k records per CPU-second
  const { measureSqlStep } = await import('./sql-step.ts');
  const step = await measureSqlStep(jsonl, inSubset, outside, REPEAT);
  const perSecond = (n: number) => `${Math.round(n).toLocaleString('en-US')}/s`;
  for (const [name, n, note] of [
    ['  sql step alone, compiled (length)', step.compiled, ''],
    [
      '  sql step alone, DuckDB path (levenshtein)',
      step.duckPath,
      `${(step.compiled / step.duckPath).toFixed(2)}x the compiled CPU; target ≥ 200,000/s`,
    ],
    [
      "  DuckDB's own SELECT (levenshtein) over the rows in a table, one thread",
      step.duckSelect,
      `${(step.duckSelect / step.duckPath).toFixed(2)}x the DuckDB path`,
    ],
  ] as const)
    rows.push([
      name,
      N.toLocaleString('en-US'),
      '',
      '',
      '',
      '',
      `${perSecond(n)} per CPU-second${note ? `; ${note}` : ''}`,
    ]);
}

if (want('parquet')) {
  // The streaming engine (this file → file run would otherwise be pushed down to DuckDB).
  const ours = await runSluice(
    'csv-parquet',
    `${header('cp')}source:\n  file:\n    path: ${csv}\n    csv: { columns: ${CSV_COLUMNS} }\nsink:\n  file: { path: ${DATA}/csv-parquet/out/, format: parquet }\n`,
    ['--no-pushdown'],
  );
  const duckMs = await timeDuck(
    `COPY (SELECT * FROM read_csv('${csv}')) TO '${DATA}/duck-cp.parquet' (FORMAT parquet)`,
  );
  report('CSV → Parquet (streaming)', N, ours, duckMs);
}

if (want('pushdown')) {
  // CSV → sql (three expressions and a filter) → Parquet, handed to DuckDB as one COPY, next to
  // DuckDB's own COPY of the same query on the same file and to the same spec on the streaming engine.
  const spec = (name: string) =>
    `${header(name)}source:\n  file:\n    path: ${csv}\n    csv: { columns: ${CSV_COLUMNS} }\n` +
    `steps:\n  - sql: ${SQL_STEP}\nsink:\n  file: { path: ${DATA}/${name}/out/, format: parquet }\n`;
  const duckOut = `${DATA}/duck-pushdown.parquet`;
  const duckQuery = `COPY (${SQL_STEP.replace('FROM input', `FROM read_csv('${csv}')`)}) TO '${duckOut}' (FORMAT parquet, COMPRESSION zstd)`;
  // alternating Sluice and DuckDB in each round, so both meet the same moments of a noisy machine
  const [pushedRun, duckRun] = await best<ChildResult | { elapsedMs: number }>(
    () => runSluice('pushdown', spec('pushdown')),
    async () => ({ elapsedMs: await timeFreshDuck(duckQuery) }),
  );
  const pushed = pushedRun as ChildResult;
  const duckMs = duckRun!.elapsedMs;
  const [streamed] = await best(() => runSluice('pushdown-off', spec('pushdown-off'), ['--no-pushdown']));
  if (pushed.engine !== 'duckdb-pushdown') throw new Error(`pushdown did not run: ${pushed.engine}`);
  const out = `${DATA}/pushdown/out/*.parquet`;
  const [check] = (
    await duck.runAndReadAll(
      `SELECT (SELECT count(*) FROM read_parquet('${out}')) AS n,
              (SELECT count(*) FROM (SELECT * FROM read_parquet('${out}') EXCEPT ALL SELECT * FROM read_parquet('${DATA}/pushdown-off/out/*.parquet'))) +
              (SELECT count(*) FROM (SELECT * FROM read_parquet('${DATA}/pushdown-off/out/*.parquet') EXCEPT ALL SELECT * FROM read_parquet('${out}'))) AS differ`,
    )
  ).getRowObjectsJS();
  const note = `${(pushed.elapsedMs / duckMs).toFixed(2)}x DuckDB (target ≤ 1.5); ${check?.n} rows, ${check?.differ} differ from pushdown off`;
  report('CSV → sql → Parquet, pushdown', N, pushed, duckMs, note);
  report(
    'CSV → sql → Parquet, pushdown off',
    N,
    streamed!,
    duckMs,
    `${(streamed!.elapsedMs / pushed.elapsedMs).toFixed(1)}x the pushdown time`,
  );
  if (Number(check?.differ) !== 0) throw new Error(`pushdown output differs: ${note}`);
}

if (want('memory')) {
  const big = MEM_N === N ? { csv } : await makeInputs(MEM_N, String(MEM_N));
  const out = path.join(DATA, 'memory/out');
  const ours = await runSluice(
    'memory',
    `${header('mem')}source:\n  file:\n    path: ${big.csv}\n    csv: { columns: ${CSV_COLUMNS} }\nsink:\n  file: { path: ${out}/, format: parquet }\n`,
    ['--no-pushdown'],
  );
  // DuckDB reads back exactly the input rows: same count, and no row missing or different.
  const diff = await duck.runAndReadAll(
    `SELECT (SELECT count(*) FROM read_parquet('${out}/*.parquet')) AS n,
            (SELECT count(*) FROM (SELECT * FROM read_csv('${big.csv}') EXCEPT ALL SELECT * FROM read_parquet('${out}/*.parquet'))) AS missing`,
  );
  const [check] = diff.getRowObjectsJS();
  const note = `read back ${check?.n} rows, ${check?.missing} differ`;
  report('CSV → Parquet (memory, streaming)', MEM_N, ours, undefined, note);
  if (Number(check?.n) !== MEM_N || Number(check?.missing) !== 0)
    throw new Error(`read-back mismatch: ${note}`);
}

const table = [
  ['case', 'records', 'sluice', 'duckdb COPY', 'sluice time / duckdb', 'sluice peak RSS', 'notes'],
  ...rows,
];
const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
if (rows.length) {
  process.stdout.write(
    `\nnode ${process.version}, ${(await import('node:os')).cpus().length} cores; DuckDB uses every core, Sluice's streaming engine one (pushdown: DuckDB, every core)\n\n`,
  );
  for (const r of table) process.stdout.write(`| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |\n`);
}

if (want('postgres') || want('kafka')) {
  const { benchConnectors, printConnectorTable } = await import('./connectors.ts');
  const connectorRows = await benchConnectors({
    records: N,
    repeat: REPEAT,
    dataDir: DATA,
    only: (name) => want(name),
    count: async (glob) =>
      Number(
        (await duck.runAndReadAll(`SELECT count(*) AS n FROM read_parquet('${glob}')`)).getRowObjectsJS()[0]
          ?.n,
      ),
  });
  process.stdout.write(`\nconnectors, each beside its peer in the same run (best of ${REPEAT})\n\n`);
  printConnectorTable(connectorRows);
}

if (want('http')) {
  const { benchHttp, printHttpTable } = await import('./http.ts');
  const httpRows = await benchHttp({ dataDir: DATA, failureRecords: N, seconds: 20 });
  process.stdout.write(`\nthe http step against a local server in its own process\n\n`);
  printHttpTable(httpRows);
}

if (want('server')) {
  const { benchServer, printTable } = await import('./server.ts');
  process.stdout.write(
    `\ncontrol plane (sluice server, embedded store): the same API calls idle and under load\n\n`,
  );
  printTable(await benchServer({ jobs: Number(values['server-jobs']), maxJobs: 20 }));
}

if (want('startup')) {
  const { benchStartup, printStartupTable } = await import('./startup.ts');
  const runs = Math.max(9, REPEAT);
  process.stdout.write(
    `\nCLI start-up beside a bare Node (median of ${runs} runs each; target: within 5x)\n\n`,
  );
  printStartupTable(benchStartup({ root: ROOT, runs }));
}
