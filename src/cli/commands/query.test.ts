import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunSummary } from '../../engine/run.ts';
import { EXIT } from '../exit-codes.ts';
import { sluice } from '../test-util.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

let work: string;
let runs: string;

/** `sluice query SQL --format json` over the test runs, parsed. */
async function rows(sql: string, ...args: string[]): Promise<Record<string, unknown>[]> {
  const result = await sluice(['query', sql, '--run-dir', runs, '--format', 'json', ...args], work);
  assert.equal(result.code, EXIT.ok, result.stderr);
  return JSON.parse(result.stdout) as Record<string, unknown>[];
}

async function run(spec: string): Promise<RunSummary> {
  const result = await sluice(['run', spec, '--run-dir', runs, '--progress', 'none', '--json'], work);
  assert.equal(result.code, EXIT.ok, result.stderr + result.stdout);
  return JSON.parse(result.stdout) as RunSummary;
}

// orders: 200 generated records; the sql step drops multiples of 3 and fails on multiples of 5
// (a bad cast), the validate step rejects multiples of 7; even ids also go to a Parquet sink.
const ids = Array.from({ length: 200 }, (_, i) => i + 1);
const kept = ids.filter((id) => id % 3 !== 0);
const castFailures = kept.filter((id) => id % 5 === 0);
const schemaFailures = kept.filter((id) => id % 5 !== 0 && id % 7 === 0);
const written = kept.filter((id) => id % 5 !== 0 && id % 7 !== 0);

let orders: RunSummary;
let clean1: RunSummary;
let clean2: RunSummary;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-query-'));
  runs = path.join(work, 'runs');
  await writeFile(
    path.join(work, 'orders.yaml'),
    [
      'apiVersion: sluice/v1',
      'kind: Pipeline',
      'metadata: { name: orders }',
      'source:',
      `  generate: { count: 200, seed: 7, fields: { id: seq, amount: "float(0, 100, 2)", note: "pick('a, \\"q\\"', plain)" } }`,
      'steps:',
      "  - sql: SELECT id, amount, note, CAST(CASE WHEN id % 5 = 0 THEN 'x' ELSE '1' END AS INTEGER) AS one FROM input WHERE id % 3 <> 0",
      '  - validate:',
      '      schema: { type: object, properties: { id: { not: { multipleOf: 7 } } } }',
      'sinks:',
      '  - name: even-ids',
      '    route: id % 2 = 0',
      '    file: { path: out/even/, format: parquet }',
      '  - name: all',
      '    file: { path: out/all/, format: jsonl }',
      '',
    ].join('\n'),
  );
  // clean: a CSV with one broken line (SLUICE_DECODE), written to one gzipped CSV file.
  await writeFile(path.join(work, 'in.csv'), 'id,name\n1,ann\n2,bob,extra\n3,cy\n');
  await writeFile(
    path.join(work, 'clean.yaml'),
    [
      'apiVersion: sluice/v1',
      'kind: Pipeline',
      'metadata: { name: clean }',
      'source:',
      '  file: { path: in.csv, csv: { columns: { id: integer } } }',
      'sink:',
      '  file: { path: out/clean/, format: csv, compression: gzip }',
      '',
    ].join('\n'),
  );
  orders = await run('orders.yaml');
  clean1 = await run('clean.yaml');
  clean2 = await run('clean.yaml');
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('sluice query', () => {
  it('runs: one row per run, flattened from run.json', async () => {
    const result = await rows(
      'SELECT run_id, pipeline, status, engine, started_at, records_read, records_written, records_filtered, ' +
        'records_failed, error_rate, errors_by_code, sinks, output_files, failure_code FROM runs ORDER BY started_at',
    );
    assert.deepEqual(
      result.map((r) => r.run_id),
      [orders.run_id, clean1.run_id, clean2.run_id],
    );
    assert.deepEqual(result[0], {
      run_id: orders.run_id,
      pipeline: 'orders',
      status: 'succeeded',
      engine: 'streaming',
      started_at: orders.started_at,
      records_read: 200,
      records_written: written.length + written.filter((id) => id % 2 === 0).length,
      records_filtered: ids.length - kept.length,
      records_failed: castFailures.length + schemaFailures.length,
      error_rate: (castFailures.length + schemaFailures.length) / 200,
      errors_by_code: {
        SLUICE_EXPR_EVAL: castFailures.length,
        SLUICE_SCHEMA_VIOLATION: schemaFailures.length,
      },
      sinks: ['even-ids', 'all'],
      output_files: 2,
      failure_code: null,
    });
    assert.equal(result[2]!.records_failed, 1);
  });

  it("operators: each operator's in, out, filtered and failed", async () => {
    const ops = await rows(
      'SELECT name, kind, "in", out, filtered, failed FROM operators WHERE pipeline = \'orders\' ORDER BY ordinal',
    );
    assert.deepEqual(
      ops,
      orders.operators.map(({ name, kind, in: i, out, filtered, failed }) => ({
        name,
        kind,
        in: i,
        out,
        filtered,
        failed,
      })),
    );
    const sql = ops.find((o) => o.name === 'sql');
    assert.deepEqual(sql, {
      name: 'sql',
      kind: 'step',
      in: 200,
      out: kept.length - castFailures.length,
      filtered: ids.length - kept.length,
      failed: castFailures.length,
    });
  });

  it('errors: the error records, by code, with positions and the failed record as JSON', async () => {
    const byCode = await rows(
      'SELECT code, operator, count(*) AS n, list(position_offset ORDER BY position_offset) AS offsets ' +
        'FROM errors GROUP BY ALL ORDER BY code',
      '--run',
      orders.run_id,
    );
    assert.deepEqual(byCode, [
      { code: 'SLUICE_EXPR_EVAL', operator: 'sql', n: castFailures.length, offsets: castFailures },
      {
        code: 'SLUICE_SCHEMA_VIOLATION',
        operator: 'validate',
        n: schemaFailures.length,
        offsets: schemaFailures,
      },
    ]);
    const [first] = await rows(
      "SELECT run_id, record, record->>'note' AS note, retriable, time FROM errors WHERE code = 'SLUICE_SCHEMA_VIOLATION' ORDER BY position_offset LIMIT 1",
      '--run',
      orders.run_id,
    );
    assert.equal(first!.run_id, orders.run_id);
    assert.equal((first!.record as { id: number }).id, schemaFailures[0]);
    assert.equal(first!.note, (first!.record as { note: string }).note);
    assert.equal(first!.retriable, false);
    assert.match(String(first!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('outputs: the rows each sink wrote, with run_id and sink, and one view per sink', async () => {
    const all = await rows('SELECT * FROM output_all ORDER BY id', '--run', orders.run_id);
    const file = orders.outputs.all![0]!;
    const lines = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .sort((a, b) => Number(a.id) - Number(b.id));
    assert.deepEqual(
      all.map((r) => r.id),
      written,
    );
    assert.deepEqual(
      all,
      lines.map((l) => ({ run_id: orders.run_id, sink: 'all', ...l })),
      'output_all holds exactly the JSON Lines the sink wrote',
    );
    const even = await rows('SELECT id FROM output_even_ids ORDER BY id', '--run', orders.run_id);
    assert.deepEqual(
      even.map((r) => r.id),
      written.filter((id) => id % 2 === 0),
      'the Parquet sink, behind a sanitised view name',
    );
    const perSink = await rows(
      'SELECT sink, count(*) AS n FROM outputs GROUP BY sink ORDER BY sink',
      '--run',
      'orders',
    );
    assert.deepEqual(perSink, [
      { sink: 'all', n: written.length },
      { sink: 'even-ids', n: written.filter((id) => id % 2 === 0).length },
    ]);
    const clean = await rows('SELECT run_id, id, name FROM outputs ORDER BY id');
    assert.deepEqual(
      clean,
      [
        { run_id: clean2.run_id, id: 1, name: 'ann' },
        { run_id: clean2.run_id, id: 3, name: 'cy' },
      ],
      'a gzipped CSV, of the latest run by default',
    );
  });

  it('covers the latest run for errors and outputs by default, every run with --all', async () => {
    const latest = await rows('SELECT run_id, code, count(*) AS n FROM errors GROUP BY ALL');
    assert.deepEqual(latest, [{ run_id: clean2.run_id, code: 'SLUICE_DECODE', n: 1 }]);
    const all = await rows('SELECT run_id, count(*) AS n FROM errors GROUP BY ALL ORDER BY run_id', '--all');
    assert.deepEqual(
      all,
      [
        { run_id: clean1.run_id, n: 1 },
        { run_id: clean2.run_id, n: 1 },
        { run_id: orders.run_id, n: castFailures.length + schemaFailures.length },
      ].sort((a, b) => a.run_id.localeCompare(b.run_id)),
    );
    const outputs = await rows('SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM outputs', '--all');
    assert.deepEqual(outputs, [
      { n: 2 + 2 + written.length + written.filter((id) => id % 2 === 0).length, runs: 3 },
    ]);
    const runsTable = await rows('SELECT count(*) AS n FROM runs');
    assert.deepEqual(runsTable, [{ n: 3 }], 'runs lists every run without --all');
  });

  it('--run takes an id or a unique prefix; an ambiguous one lists the candidates', async () => {
    const prefix = orders.run_id.slice(0, -3);
    const one = await rows(
      'SELECT run_id FROM runs UNION ALL SELECT DISTINCT run_id FROM errors',
      '--run',
      prefix,
    );
    assert.deepEqual(one, [{ run_id: orders.run_id }, { run_id: orders.run_id }]);

    const ambiguous = await sluice(['query', 'SELECT 1', '--run-dir', runs, '--run', 'clean'], work);
    assert.equal(ambiguous.code, EXIT.usage);
    assert.match(ambiguous.stderr, /--run clean matches 2 runs/);
    assert.ok(ambiguous.stderr.includes(clean1.run_id) && ambiguous.stderr.includes(clean2.run_id));

    const none = await sluice(['query', 'SELECT 1', '--run-dir', runs, '--run', 'nope'], work);
    assert.equal(none.code, EXIT.usage);
    assert.match(none.stderr, new RegExp(`no run nope under .*; the latest are:\\n  ${clean2.run_id}`));
  });

  it('on a directory without runs, says where it looked and keeps every table, empty', async () => {
    const empty = path.join(work, 'no-runs');
    await mkdir(empty);
    const result = await sluice(
      [
        'query',
        'SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM operators) + (SELECT count(*) FROM files) ' +
          '+ (SELECT count(*) FROM errors) + (SELECT count(*) FROM outputs) AS n',
        '--run-dir',
        empty,
        '--format',
        'csv',
      ],
      work,
    );
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.equal(result.stdout, 'n\n0\n');
    assert.match(result.stderr, new RegExp(`no runs under ${empty.replaceAll('/', '\\/')} `));
    const columns = await sluice(
      ['query', 'SELECT column_name FROM (DESCRIBE errors)', '--run-dir', empty, '--format', 'jsonl'],
      work,
    );
    assert.ok(columns.stdout.includes('{"column_name":"position_offset"}'), columns.stdout);
  });

  it('a SQL error exits 1 with DuckDB’s message and a caret under the SQL', async () => {
    const sql = 'SELECT status FROM runs WHERE status = ok';
    const result = await sluice(['query', sql, '--run-dir', runs], work);
    assert.equal(result.code, EXIT.failed);
    assert.match(result.stderr, /SLUICE_QUERY_FAILED: Binder Error: Referenced column "ok" not found/);
    const lines = result.stderr.split('\n');
    const at = lines.findIndex((l) => l.startsWith('LINE 1: '));
    assert.ok(at >= 0, result.stderr);
    assert.equal(lines[at], `LINE 1: ${sql}`);
    assert.equal(lines[at + 1]!.indexOf('^'), 'LINE 1: '.length + sql.lastIndexOf('ok'));
  });

  it('an unknown table names the available tables', async () => {
    const result = await sluice(['query', 'SELECT * FROM run', '--run-dir', runs, '--run', 'orders'], work);
    assert.equal(result.code, EXIT.failed);
    assert.match(result.stderr, /Table with name run does not exist/);
    assert.match(
      result.stderr,
      /available tables: runs, operators, files, errors, outputs, output_even_ids, output_all\n/,
    );
  });

  it('prints csv and jsonl for scripts, and a capped table for people', async () => {
    const csv = await sluice(
      [
        'query',
        "SELECT id, note, 0.5 AS half, started_at FROM output_all JOIN runs USING (run_id) WHERE note <> 'plain' ORDER BY id LIMIT 1",
        '--run-dir',
        runs,
        '--run',
        'orders',
        '--format',
        'csv',
      ],
      work,
    );
    assert.equal(csv.code, EXIT.ok, csv.stderr);
    assert.match(
      csv.stdout,
      new RegExp(
        `^id,note,half,started_at\\n\\d+,"a, ""q""",0.5,${orders.started_at.replaceAll('.', '\\.')}\\n$`,
      ),
    );

    const jsonl = await sluice(
      [
        'query',
        'SELECT name, time_ms FROM operators ORDER BY ordinal',
        '--run-dir',
        runs,
        '--run',
        'orders',
        '--format',
        'jsonl',
      ],
      work,
    );
    assert.deepEqual(
      jsonl.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
      orders.operators.map((o) => ({ name: o.name, time_ms: o.time_ms })),
    );

    const table = await sluice(
      [
        'query',
        'SELECT id, amount FROM output_all ORDER BY id',
        '--run-dir',
        runs,
        '--run',
        'orders',
        '--limit',
        '5',
      ],
      work,
    );
    assert.equal(table.code, EXIT.ok, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    // Numeric columns are right-aligned: ids 1..11 take two characters.
    assert.equal(lines[0], 'id  amount');
    assert.match(lines[1]!, /^ 1 +\d+(\.\d+)?$/);
    assert.equal(lines.length, 1 + 5 + 1);
    assert.equal(
      lines.at(-1),
      `(5 rows; ${written.length - 5} more not shown, raise --limit or use 0 for all)`,
    );
  });

  it('documents every column of every table in docs/query.md', async () => {
    const doc = await readFile(path.join(ROOT, 'docs/query.md'), 'utf8');
    const columns = await rows(
      "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main' AND database_name = 'temp' " +
        "AND table_name IN ('runs', 'operators', 'files', 'errors', 'outputs')",
      '--run',
      'orders',
    );
    assert.ok(columns.length > 40, JSON.stringify(columns));
    const undocumented = columns.filter((c) => !doc.includes(`| \`${c.column_name}\` |`));
    // outputs' data columns come from the pipeline, not from Sluice.
    assert.deepEqual(
      undocumented.filter((c) => c.table_name !== 'outputs'),
      [],
    );
  });

  it('reads the run.json of every run directory, skipping ones without', async () => {
    await mkdir(path.join(runs, 'in-progress'), { recursive: true });
    const listed = await readdir(runs);
    assert.ok(listed.includes('in-progress'));
    assert.deepEqual(await rows('SELECT count(*) AS n FROM runs'), [{ n: 3 }]);
    await rm(path.join(runs, 'in-progress'), { recursive: true });
  });
});
