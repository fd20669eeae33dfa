/**
 * Connector benchmarks, side by side in one run (`npm run bench -- --only postgres,kafka`):
 *
 * - postgres: a 1M-row table → Parquet with Sluice (one reader, then two by key ranges), next to
 *   `psql`'s own `\copy (SELECT …) TO` of the same table into CSV, as a ratio;
 * - kafka: a 1M-message topic → another topic with Sluice, next to a bare consumer → producer
 *   loop on the same client library (bench/kafka-baseline.ts), in messages/s and per CPU-second.
 *
 * The servers are the project's own (scripts/services/*.sh, started here when not running);
 * SLUICE_TEST_POSTGRES_URL and SLUICE_TEST_KAFKA_BOOTSTRAP point elsewhere.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { RunSummary } from '../src/engine/run.ts';

export interface ConnectorBenchOptions {
  records: number;
  repeat: number;
  dataDir: string;
  only: (name: string) => boolean;
  /** DuckDB on the bench's instance, to read back what was written. */
  count: (parquetGlob: string) => Promise<number>;
}

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'bin/sluice.js');
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` };

/** Starts a project service (idempotent) and returns its address. */
function service(name: 'postgres' | 'kafka', envName: string): string {
  const given = process.env[envName];
  if (given) return given;
  process.stderr.write(
    `bench: starting ${name} (scripts/services/${name}.sh; it stays up, stop it with stop)\n`,
  );
  return execFileSync(path.join(ROOT, `scripts/services/${name}.sh`), ['start'], { encoding: 'utf8' }).trim();
}

interface Timed {
  elapsedMs: number;
  cpuMs: number;
  maxRssMiB: number;
}

/**
 * `sluice run` as a user runs it, in `dir/name` (made afresh) with the spec written there; its
 * summary. Throws unless the run succeeded.
 */
export async function runSluiceIn(dir: string, name: string, spec: string): Promise<RunSummary> {
  const work = path.join(dir, name);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const file = path.join(work, 'spec.yaml');
  await writeFile(file, spec);
  const args = ['run', file, '--json', '--progress', 'none', '--from-scratch'];
  args.push('--run-dir', path.join(work, 'runs'), '--checkpoint-store', path.join(work, 'state'));
  const out = execFileSync(BIN, args, { encoding: 'utf8', maxBuffer: 1 << 26, env, cwd: work });
  const summary = JSON.parse(out) as RunSummary;
  if (summary.status !== 'succeeded')
    throw new Error(`${name}: ${summary.status} ${JSON.stringify(summary.failure)}`);
  return summary;
}

/** runSluiceIn's wall time, CPU time and peak memory. */
async function runSluice(dir: string, name: string, spec: string): Promise<Timed & { summary: RunSummary }> {
  const summary = await runSluiceIn(dir, name, spec);
  return { elapsedMs: summary.elapsed_ms, cpuMs: summary.cpu_ms, maxRssMiB: summary.peak_rss_mib, summary };
}

/** The fastest of `repeat` rounds of each thunk, run in turns so that they share the machine's moods. */
async function best<T extends { elapsedMs: number }>(
  repeat: number,
  ...thunks: (() => Promise<T>)[]
): Promise<T[]> {
  const bests: (T | undefined)[] = thunks.map(() => undefined);
  for (let r = 0; r < repeat; r++)
    for (const [i, thunk] of thunks.entries()) {
      const result = await thunk();
      if (!bests[i] || result.elapsedMs < bests[i]!.elapsedMs) bests[i] = result;
    }
  return bests as T[];
}

const perSecond = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
const header = (name: string) => `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: ${name} }\n`;

/** Makes (once per size) a table of `n` orders with the types a migration meets. */
async function ordersTable(url: string, n: number): Promise<string> {
  const table = `bench_orders_${n}`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const exists = await client.query(`SELECT count(*)::int AS n FROM pg_class WHERE relname = $1`, [table]);
    if (exists.rows[0].n === 0) {
      process.stderr.write(`bench: creating ${table} (${n.toLocaleString('en-US')} rows)\n`);
      await client.query(`CREATE TABLE ${table} (
        id bigint PRIMARY KEY, country text NOT NULL, amount numeric(12,2), email text,
        paid_at timestamptz, tags text[], attrs jsonb, ref uuid)`);
      await client.query(`INSERT INTO ${table}
        SELECT g, (ARRAY['DE','FR','NL','US','GB'])[1 + g % 5], round((g % 1000) * 1.37, 2),
               'user' || g || '@example.com', '2026-01-01'::timestamptz + g * interval '1 second',
               ARRAY['t' || (g % 7), 'x'], jsonb_build_object('n', g % 100, 'vip', g % 13 = 0),
               md5(g::text)::uuid
          FROM generate_series(1, ${n}) g`);
      await client.query(`VACUUM ANALYZE ${table}`);
    }
  } finally {
    await client.end();
  }
  return table;
}

export async function benchConnectors(o: ConnectorBenchOptions): Promise<string[][]> {
  const rows: string[][] = [];
  const dir = path.join(o.dataDir, 'connectors');
  await mkdir(dir, { recursive: true });

  if (o.only('postgres')) {
    const url = service('postgres', 'SLUICE_TEST_POSTGRES_URL');
    const table = await ordersTable(url, o.records);
    const csv = path.join(dir, 'psql-copy.csv');
    const psql = async (): Promise<Timed> => {
      const t = performance.now();
      execFileSync(
        'psql',
        [url, '-q', '-c', `\\copy (SELECT * FROM ${table}) TO '${csv}' WITH (FORMAT csv)`],
        { env },
      );
      return { elapsedMs: performance.now() - t, cpuMs: Number.NaN, maxRssMiB: Number.NaN };
    };
    const spec = (name: string, parallelism: number) =>
      `${header(name)}source:\n  postgres: { url: "${url}", table: ${table}, parallelism: ${parallelism} }\n` +
      `sink:\n  file: { path: ${dir}/${name}/out/, format: parquet }\nsettings: { batch_size: 5000 }\n`;
    const [copy, one, two] = await best<Timed>(
      o.repeat,
      psql,
      () => runSluice(dir, 'pg-parquet', spec('pg-parquet', 1)),
      () => runSluice(dir, 'pg-parquet-2', spec('pg-parquet-2', 2)),
    );
    for (const name of ['pg-parquet', 'pg-parquet-2']) {
      const n = await o.count(`${dir}/${name}/out/*.parquet`);
      if (n !== o.records) throw new Error(`${name}: read back ${n} rows, expected ${o.records}`);
    }
    const csvMiB = (await stat(csv)).size / 2 ** 20;
    rows.push([
      'PostgreSQL → CSV, psql \\copy (peer)',
      o.records.toLocaleString('en-US'),
      perSecond(o.records, copy!.elapsedMs),
      '',
      '1.00x',
      '',
      `${csvMiB.toFixed(0)} MiB of CSV; psql and the server share the 2 cores`,
    ]);
    for (const [label, r] of [
      ['PostgreSQL → Parquet, Sluice', one!],
      ['PostgreSQL → Parquet, Sluice, parallelism 2', two!],
    ] as const)
      rows.push([
        label,
        o.records.toLocaleString('en-US'),
        perSecond(o.records, r.elapsedMs),
        perSecond(o.records, r.cpuMs),
        `${(r.elapsedMs / copy!.elapsedMs).toFixed(2)}x`,
        `${Math.round(r.maxRssMiB)} MiB`,
        'read back with DuckDB: every row',
      ]);
  }

  if (o.only('kafka')) {
    const bootstrap = service('kafka', 'SLUICE_TEST_KAFKA_BOOTSTRAP');
    const suffix = randomBytes(3).toString('hex');
    const input = `bench-in-${o.records}-${suffix}`;
    const fill = await runSluice(
      dir,
      'kafka-fill',
      `${header('kafka-fill')}source:\n  generate:\n    count: ${o.records}\n    seed: 1\n` +
        `    fields: { id: seq, country: "pick(DE,FR,NL,US,GB)", amount: "float(0,1370,2)", email: "template('user{seq}@example.com')" }\n` +
        `sink:\n  kafka: { bootstrap_servers: "${bootstrap}", topic: ${input} }\nsettings: { batch_size: 5000 }\n`,
    );
    rows.push([
      'generate → Kafka, Sluice',
      o.records.toLocaleString('en-US'),
      perSecond(o.records, fill.elapsedMs),
      perSecond(o.records, fill.cpuMs),
      '',
      `${Math.round(fill.maxRssMiB)} MiB`,
      'idempotent producer, acks=all',
    ]);
    let round = 0;
    const sluiceCopy = () => {
      const name = `kafka-copy-${++round}`;
      return runSluice(
        dir,
        name,
        `${header(name)}source:\n  kafka: { bootstrap_servers: "${bootstrap}", group: ${name}-${suffix}, topics: [${input}], stop_at_end: true }\n` +
          `sink:\n  kafka: { bootstrap_servers: "${bootstrap}", topic: ${name}-${suffix}, forward_meta: true }\nsettings: { batch_size: 5000 }\n`,
      );
    };
    const baseline = async (): Promise<Timed> => {
      const name = `kafka-bare-${++round}`;
      const out = execFileSync(
        process.execPath,
        [
          path.join(ROOT, 'bench/kafka-baseline.ts'),
          bootstrap,
          input,
          `${name}-${suffix}`,
          `${name}-${suffix}`,
          '5000',
        ],
        { encoding: 'utf8', env },
      );
      const r = JSON.parse(out) as Timed & { copied: number };
      if (r.copied !== o.records) throw new Error(`baseline copied ${r.copied} of ${o.records}`);
      return r;
    };
    const [ours, bare] = await best<Timed>(o.repeat, sluiceCopy, baseline);
    const written = (ours as Timed & { summary: RunSummary }).summary.records.written;
    if (written !== o.records) throw new Error(`sluice copied ${written} of ${o.records}`);
    rows.push([
      'Kafka → Kafka, bare client loop (peer)',
      o.records.toLocaleString('en-US'),
      perSecond(o.records, bare!.elapsedMs),
      perSecond(o.records, bare!.cpuMs),
      '1.00x',
      `${Math.round(bare!.maxRssMiB)} MiB`,
      'same library, consumer piped into an idempotent producer',
    ]);
    rows.push([
      'Kafka → Kafka, Sluice',
      o.records.toLocaleString('en-US'),
      perSecond(o.records, ours!.elapsedMs),
      perSecond(o.records, ours!.cpuMs),
      `${(ours!.elapsedMs / bare!.elapsedMs).toFixed(2)}x`,
      `${Math.round(ours!.maxRssMiB)} MiB`,
      `keys, headers and timestamps forwarded; offsets committed at checkpoints; the broker shares the ${os.cpus().length} cores`,
    ]);
  }
  return rows;
}

/** Prints the rows as a Markdown table. */
export function printConnectorTable(rows: string[][]): void {
  const table = [
    ['case', 'records', 'wall clock', 'per CPU-second (one core)', 'time / peer', 'peak RSS', 'notes'],
    ...rows,
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
  for (const r of table) process.stdout.write(`| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |\n`);
}
