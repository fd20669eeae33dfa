import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync, zstdDecompressSync } from 'node:zlib';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { type CliResult, sluice } from '../cli/test-util.ts';
import { defaultRegistry } from '../registry.ts';
import { loadPipeline } from '../spec/validate.ts';
import { planPushdown } from './pushdown.ts';
import { countsFromProfile, csvTextHazard } from './pushdown-run.ts';
import type { RunSummary } from './run.ts';
import { assertCountsAddUp } from './test-util.ts';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

let work: string;
let db: DuckDBConnection;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-pushdown-'));
  db = await (await DuckDBInstance.create(':memory:')).connect();
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const q = (s: string) => `'${s.replaceAll("'", "''")}'`;

async function rows(sql: string): Promise<Record<string, unknown>[]> {
  return (await db.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

interface CaseRun {
  dir: string;
  summary: RunSummary;
  result: CliResult;
  out: string;
}

/** Writes `spec` (with OUT replaced by an output path) in `dir` and runs it. */
async function runCase(dir: string, name: string, spec: string, args: string[] = []): Promise<CaseRun> {
  const out = path.join(dir, `out-${name}`);
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, spec.replaceAll('OUT', out));
  const runs = path.join(dir, `runs-${name}`);
  const result = await sluice(['run', file, '--run-dir', runs, '--progress', 'none', ...args], dir);
  const [summaryFile] = (await filesUnder(runs)).filter((f) => f.endsWith('run.json'));
  assert.ok(summaryFile, `no run.json: ${result.stderr}${result.stdout}`);
  const summary = JSON.parse(await readFile(summaryFile, 'utf8')) as RunSummary;
  assertCountsAddUp(summary);
  return { dir, summary, result, out };
}

/** Runs the spec with pushdown and with --no-pushdown. */
async function both(dir: string, spec: string): Promise<{ push: CaseRun; stream: CaseRun }> {
  const push = await runCase(dir, 'push', spec);
  const stream = await runCase(dir, 'stream', spec, ['--no-pushdown']);
  assert.equal(stream.summary.engine, 'streaming');
  return { push, stream };
}

function counts(s: RunSummary) {
  return {
    status: s.status,
    records: s.records,
    operators: s.operators.map(({ time_ms: _t, ...o }) => o),
    errors: { count: s.errors.count, by_code: s.errors.by_code, outputs: s.errors.outputs.length },
    outputs: Object.fromEntries(Object.entries(s.outputs).map(([k, v]) => [k, v.length])),
  };
}

/** Both outputs hold the same rows (EXCEPT ALL both ways), in the same order, with the same column types. */
async function assertSameParquet(a: string, b: string): Promise<void> {
  const ra = `read_parquet(${q(a)})`;
  const rb = `read_parquet(${q(b)})`;
  const [diff] = await rows(
    `SELECT (SELECT count(*) FROM (SELECT * FROM ${ra} EXCEPT ALL SELECT * FROM ${rb}))::INTEGER AS ab,
            (SELECT count(*) FROM (SELECT * FROM ${rb} EXCEPT ALL SELECT * FROM ${ra}))::INTEGER AS ba,
            (SELECT count(*) FROM ${ra})::INTEGER AS n`,
  );
  assert.deepEqual(diff, { ab: 0, ba: 0, n: diff?.n });
  const schema = (f: string) =>
    rows(`SELECT name, type, converted_type, logical_type::VARCHAR AS l FROM parquet_schema(${q(f)})`);
  assert.deepEqual(await schema(a), await schema(b), 'same Parquet schema');
  const ordered = (r: string) => rows(`SELECT * FROM ${r}`);
  assert.deepEqual(await ordered(ra), await ordered(rb), 'same rows in the same order');
}

async function only(dir: string): Promise<string> {
  const files = (await filesUnder(dir)).filter((f) => !path.basename(f).startsWith('.'));
  assert.equal(files.length, 1, `one output file in ${dir}: ${files.join(', ')}`);
  return files[0]!;
}

const head = (name: string) => `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: ${name} }\n`;

async function caseDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

describe('pushdown: same output, same summary', () => {
  it('CSV → sql + filter → Parquet: equal rows, order, types and counts', async () => {
    const dir = await caseDir('csv-parquet');
    await db.run(
      `COPY (SELECT i AS id, ['de','fr','nl',NULL][1 + i % 4] AS country,
                    CASE WHEN i % 7 = 0 THEN NULL ELSE round((i % 100) * 1.37 - 20, 2) END AS amount,
                    'u' || i || '@x' AS email, TIMESTAMP '2026-01-01' + to_seconds(i * 37) AS paid_at,
                    i % 3 = 0 AS vip, DATE '2026-01-01' + (i % 30)::INTEGER AS day
             FROM range(1, 20001) t(i)) TO ${q(path.join(dir, 'in.csv'))} (FORMAT csv, HEADER)`,
    );
    const spec = `${head('cp')}source:
  file:
    path: in.csv
    csv: { columns: { id: bigint, amount: double, paid_at: timestamp, vip: boolean, day: date } }
steps:
  - filter: country IS NOT NULL
  - sql: SELECT id, upper(country) AS country, amount * 100 AS cents, amount, email, paid_at, vip, day, id % 10 AS bucket FROM input WHERE amount >= 0
  - sql: SELECT * EXCLUDE (bucket) FROM input WHERE bucket <> 3
sink:
  file: { path: OUT/, format: parquet }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.result.code, 0, push.result.stderr);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    assert.ok(push.summary.records.filtered > 0 && push.summary.records.written > 0);
    await assertSameParquet(await only(push.out), await only(stream.out));
    assert.match(path.basename(await only(push.out)), /^part-cp-.*-00001\.parquet$/);
  });

  it('gives a declared DOUBLE column of integral values, and an all-null column, the types the streaming sink gives', async () => {
    const dir = await caseDir('types');
    await writeFile(path.join(dir, 'in.csv'), 'id,amount,note,ratio\n1,12,,0.5\n2,13.0,,1.5\n3,-4,,2\n');
    const spec = `${head('ty')}source:
  file: { path: in.csv, csv: { columns: { id: integer, amount: double, ratio: double } } }
steps:
  - sql: SELECT id, amount, amount * 2 AS twice, note, ratio FROM input
sink:
  file: { path: OUT/result.parquet }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    await assertSameParquet(path.join(push.out, 'result.parquet'), path.join(stream.out, 'result.parquet'));
    const types = await rows(
      `SELECT name, type FROM parquet_schema(${q(path.join(push.out, 'result.parquet'))}) WHERE name <> 'duckdb_schema'`,
    );
    assert.deepEqual(
      types.map((t) => `${t.name}:${t.type}`),
      // amount is declared double and twice is DOUBLE in SQL: both stay DOUBLE though their values are whole
      ['id:INT64', 'amount:DOUBLE', 'twice:DOUBLE', 'note:BYTE_ARRAY', 'ratio:DOUBLE'],
    );
  });

  it('CSV → CSV: the same bytes, quoting included', async () => {
    const dir = await caseDir('csv-csv');
    await writeFile(
      path.join(dir, 'in.csv'),
      [
        'id,name,city,flag,seen',
        '1,"Smith, John",Berlin,true,2026-01-01 10:00:00',
        '2,"say ""hi""",,false,2026-01-02T11:30:00.5Z',
        '3,"",Paris,yes,2026-01-03',
        '4,"two\nlines",Oslo,0,2026-01-04 00:00:00.123456',
        '5,plain,Rome,n,',
        '',
      ].join('\n'),
    );
    const spec = `${head('cc')}source:
  file: { path: in.csv, csv: { columns: { id: integer, flag: boolean, seen: timestamp } } }
steps:
  - sql: SELECT id, name, lower(city) AS city, flag, seen, id * 3 AS triple FROM input WHERE id <> 5 OR flag IS NOT NULL
sink:
  file: { path: OUT/result.csv }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    const a = await readFile(path.join(push.out, 'result.csv'), 'utf8');
    const b = await readFile(path.join(stream.out, 'result.csv'), 'utf8');
    assert.equal(a, b);
    assert.match(
      a,
      /^id,name,city,flag,seen,triple\n1,"Smith, John",berlin,true,2026-01-01T10:00:00.000Z,3\n/,
    );
  });

  it('Parquet → Parquet, with several files read in sorted order', async () => {
    const dir = await caseDir('pq-pq');
    await mkdir(path.join(dir, 'in'));
    for (const [part, from] of [
      ['b', 5001],
      ['a', 1],
    ] as const) {
      await db.run(
        `COPY (SELECT i::INTEGER AS id, i::BIGINT * 1000 AS big, (i % 50)::DOUBLE / 4 AS score, (i % 9)::FLOAT AS f,
                      'n' || i AS name, DATE '2025-06-01' + (i % 10)::INTEGER AS d,
                      TIMESTAMP '2025-06-01 00:00:00.123456' + to_seconds(i) AS ts, i % 2 = 0 AS even
               FROM range(${from}, ${from + 5000}) t(i)) TO ${q(path.join(dir, 'in', `${part}.parquet`))} (FORMAT parquet)`,
      );
    }
    const spec = `${head('pp')}source:
  file: { path: in/ }
steps:
  - sql: SELECT id, big + 1 AS big1, score, score * 2 AS s2, f, name || '!' AS name, d, ts, even FROM input WHERE score > 1
sink:
  file: { path: OUT/, format: parquet, parquet: { compression: snappy, row_group_size: 1000 } }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    await assertSameParquet(await only(push.out), await only(stream.out));
    const [first] = await rows(`SELECT id FROM read_parquet(${q(await only(push.out))}) LIMIT 1`);
    assert.equal(Number(first?.id), 5, 'a.parquet is read before b.parquet');
    assert.deepEqual(push.summary.positions, stream.summary.positions);
  });

  it('writes nothing for no records, as the streaming engine does', async () => {
    for (const [name, sink, expected] of [
      ['csv', 'OUT/r.csv', ['r.csv']],
      ['parquet', 'OUT/, format: parquet', []],
    ] as const) {
      const dir = await caseDir(`empty-${name}`);
      await writeFile(path.join(dir, 'in.csv'), 'id,v\n1,a\n2,b\n');
      const spec = `${head('em')}source:\n  file: { path: in.csv }\nsteps:\n  - filter: v = 'zzz'\nsink:\n  file: { path: ${sink} }\n`;
      const { push, stream } = await both(dir, spec);
      assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
      assert.deepEqual(counts(push.summary), counts(stream.summary));
      for (const run of [push, stream]) {
        const files = await filesUnder(run.out);
        assert.deepEqual(
          files.map((f) => path.basename(f)),
          expected,
        );
        for (const f of files) assert.equal(await readFile(f, 'utf8'), '');
      }
    }
  });

  it('keeps what per-value typing of doubles allows: arithmetic, rounding, comparisons, casts', async () => {
    const dir = await caseDir('doubles');
    const lines = ['id,amount'];
    for (let i = 0; i < 400; i++)
      lines.push(`${i},${i % 3 === 0 ? i * 4 : i % 3 === 1 ? i * 1.25 - 50 : ''}`);
    await writeFile(path.join(dir, 'in.csv'), `${lines.join('\n')}\n`);
    const spec = `${head('db')}source:
  file: { path: in.csv, csv: { columns: { id: integer, amount: double } } }
steps:
  - sql: >-
      SELECT id, amount, amount * 2 + id AS a2, -amount AS neg, round(amount) AS r, abs(amount) AS ab,
      floor(amount) AS fl, amount / 2 AS half, CAST(amount AS BIGINT) AS i, id / 4 AS q,
      amount > 10.5 AS big, amount IS NULL AS missing
      FROM input WHERE amount BETWEEN -100 AND 1e6 OR amount IS NULL
  - sql: SELECT *, a2 - 1 AS a3 FROM input WHERE r <> 8
sink:
  file: { path: OUT/r.parquet }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    await assertSameParquet(path.join(push.out, 'r.parquet'), path.join(stream.out, 'r.parquet'));
  });

  it('CSV options: no header, tab delimiter, null_values, booleans, a glob read in sorted order', async () => {
    const dir = await caseDir('options');
    await mkdir(path.join(dir, 'in'));
    await writeFile(path.join(dir, 'in', 'b.tsv'), '3\tNULL\tN\n4\tz\tyes\n');
    await writeFile(path.join(dir, 'in', 'a.tsv'), '1\tx\tTRUE\n\n2\t\tf\n');
    await writeFile(path.join(dir, 'in', '_skip.tsv'), '9\tq\ttrue\n');
    const spec = `${head('op')}source:
  file:
    path: in/*.tsv
    csv: { header: false, null_values: ['NULL'], columns: { n: integer, s: string, ok: boolean } }
steps:
  - filter: n <> 9
sink:
  file: { path: OUT/r.tsv }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    const a = await readFile(path.join(push.out, 'r.tsv'), 'utf8');
    assert.equal(a, await readFile(path.join(stream.out, 'r.tsv'), 'utf8'));
    assert.equal(a, 'n\ts\tok\n1\tx\ttrue\n2\t""\tfalse\n3\t\tfalse\n4\tz\ttrue\n');
  });

  it('reads gzip CSV and writes zstd CSV with the same content', async () => {
    const dir = await caseDir('compressed');
    await db.run(
      `COPY (SELECT i AS id, 'n,' || i AS name FROM range(1000) t(i)) TO ${q(path.join(dir, 'in.csv.gz'))} (FORMAT csv, HEADER)`,
    );
    const spec = `${head('gz')}source:\n  file: { path: in.csv.gz, csv: { columns: { id: integer } } }\nsteps:\n  - filter: id % 3 = 0\nsink:\n  file: { path: OUT/r.csv.zst }\n`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'duckdb-pushdown', push.result.stderr);
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    const text = async (f: string) => zstdDecompressSync(await readFile(f)).toString('utf8');
    const a = await text(path.join(push.out, 'r.csv.zst'));
    assert.equal(a, await text(path.join(stream.out, 'r.csv.zst')));
    assert.match(a, /^id,name\n0,"n,0"\n3,"n,3"\n/);
  });
});

describe('pushdown: falls back to the streaming engine', () => {
  it("on a CAST that fails: the bad record lands in the run directory's errors folder", async () => {
    const dir = await caseDir('cast');
    await writeFile(path.join(dir, 'in.csv'), 'id,code\n1,10\n2,x1\n3,30\n');
    const spec = `${head('ca')}source:
  file: { path: in.csv }
steps:
  - sql: SELECT id, CAST(code AS INTEGER) AS code FROM input
sink:
  file: { path: OUT/, format: parquet }
`;
    const push = await runCase(dir, 'push', spec);
    assert.equal(push.result.code, 0, push.result.stderr);
    assert.equal(push.summary.engine, 'streaming');
    assert.match(push.result.stderr, /pushdown: DuckDB stopped \(.*\); re-running on the streaming engine/);
    assert.equal(push.summary.records.failed, 1);
    const errorsFile = (await filesUnder(path.join(dir, 'runs-push'))).find((f) =>
      /[\\/]errors[\\/]part-[^/\\]+\.jsonl$/.test(f),
    )!;
    const errors = (await readFile(errorsFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'SLUICE_EXPR_EVAL');
    assert.equal(errors[0].record.code, 'x1');
    const left = (await filesUnder(push.out)).filter((f) => path.basename(f).startsWith('.'));
    assert.deepEqual(left, [], 'no temporary file is left');
    assert.equal(
      (await rows(`SELECT count(*)::INTEGER AS n FROM read_parquet(${q(await only(push.out))})`))[0]?.n,
      2,
    );
  });

  it('on a malformed CSV line, and on a bad value in a declared column the query does not use', async () => {
    for (const [name, text] of [
      // Past DuckDB's sniffing sample, so that the COPY meets it.
      ['malformed', `id,v\n${Array.from({ length: 30000 }, (_, i) => `${i},a`).join('\n')}\n2,"b\n3,c\n`],
      ['unused', 'id,v,n\n1,a,1\n2,b,two\n3,c,3\n'],
    ] as const) {
      const dir = await caseDir(`fb-${name}`);
      await writeFile(path.join(dir, 'in.csv'), text);
      const spec = `${head('fb')}source:
  file: { path: in.csv, csv: { columns: { id: integer${name === 'unused' ? ', n: integer' : ''} } } }
steps:
  - sql: SELECT id, v FROM input
sink:
  file: { path: OUT/r.csv }
`;
      const { push, stream } = await both(dir, spec);
      assert.equal(push.summary.engine, 'streaming', `${name}: ${push.result.stderr}`);
      assert.match(push.result.stderr, /re-running on the streaming engine/);
      assert.deepEqual(counts(push.summary), counts(stream.summary));
      assert.ok(push.summary.records.failed >= 1);
      assert.equal(
        await readFile(path.join(push.out, 'r.csv'), 'utf8'),
        await readFile(path.join(stream.out, 'r.csv'), 'utf8'),
      );
    }
  });

  it('on a value Sluice reads differently from DuckDB (an integer with a _ separator, a timestamp offset)', async () => {
    const dir = await caseDir('fb-values');
    await writeFile(
      path.join(dir, 'in.csv'),
      'id,at\n1_000,2026-01-01 10:00:00\n2,2026-01-01 10:00:00+02:00\n',
    );
    const spec = `${head('fv')}source:
  file: { path: in.csv, csv: { columns: { id: integer, at: timestamp } } }
sink:
  file: { path: OUT/r.parquet }
`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'streaming');
    assert.deepEqual(counts(push.summary), counts(stream.summary));
    assert.equal(push.summary.records.failed, 1, 'Sluice rejects 1_000');
  });
});

describe('csvTextHazard', () => {
  it('finds a quote DuckDB would unwrap past spaces and a lone \\r, across chunk boundaries, and nothing else', async () => {
    const dir = await caseDir('hazard');
    const cases: [string, boolean][] = [
      ['a,b\n1, "x"\n', true],
      ['a,b\n1,"x" \n', true],
      ['a,b\n1,"x"  ,2\n', true],
      ['  "a",b\n', true],
      ['a,b\n1,"x y"\n', false],
      ['a,b\n1,x "y" z\n', false],
      ['a,b\n1,"say ""hi"" now"\n', false],
      ['a\tb\n1\t"x"\n', false],
      [`a\n${'x'.repeat(8 * 1024 * 1024 - 3)},  "q"\n`, true],
      [`a\n${'x'.repeat(8 * 1024 * 1024 - 1030)},"q"  \n`, true],
      [`a\n${'x'.repeat(8 * 1024 * 1024 + 5)},  "q"\n`, true],
      ['a,b\r1,x\r', true],
      ['a,b\n1,x\ry\n', true],
      ['a,b\r\n1,"x\r\ny"\r\n', false],
      [`a\r\n${'x'.repeat(8 * 1024 * 1024 - 1030)}\r\n`, false],
    ];
    for (const [i, [text, expected]] of cases.entries()) {
      const file = path.join(dir, `${i}.csv`);
      await writeFile(file, text);
      const found = await csvTextHazard([{ display: `${i}.csv`, absolute: file, size: text.length }], {
        quote: '"',
        delimiter: text.includes('\t') ? '\t' : ',',
        compression: 'none',
      });
      assert.equal(found !== undefined, expected, JSON.stringify(text.slice(0, 40)));
    }
    const gz = path.join(dir, 'z.csv.gz');
    await writeFile(gz, gzipSync(`a,b\n${'1,x\n'.repeat(500_000)}2, "y"\n`));
    const dialect = { quote: '"', delimiter: ',', compression: 'gzip' as const };
    assert.match(
      (await csvTextHazard([{ display: 'z.csv.gz', absolute: gz, size: 0 }], dialect)) ?? '',
      /z\.csv\.gz: a quote next to a space/,
    );
  });

  it('makes a pushed-down run fall back, with the streaming result', async () => {
    const dir = await caseDir('fb-quote');
    await writeFile(path.join(dir, 'in.csv'), 'id,v\n1, "x"\n2,"y"\n');
    const spec = `${head('fq')}source:\n  file: { path: in.csv }\nsink:\n  file: { path: OUT/r.csv }\n`;
    const { push, stream } = await both(dir, spec);
    assert.equal(push.summary.engine, 'streaming');
    assert.match(push.result.stderr, /a quote next to a space/);
    assert.equal(
      await readFile(path.join(push.out, 'r.csv'), 'utf8'),
      await readFile(path.join(stream.out, 'r.csv'), 'utf8'),
    );
  });
});

describe('pushdown: SIGINT', () => {
  it('interrupts DuckDB, leaves no temporary file and exits 130', async () => {
    const dir = await caseDir('sigint');
    await db.run(
      `COPY (SELECT i AS id, 'name-' || i AS name, (i % 1000) * 0.5 AS amount FROM range(3000000) t(i))
       TO ${q(path.join(dir, 'in.csv'))} (FORMAT csv, HEADER)`,
    );
    const out = path.join(dir, 'out');
    await writeFile(
      path.join(dir, 'spec.yaml'),
      `${head('si')}source:
  file: { path: in.csv, csv: { columns: { id: bigint, amount: double } } }
steps:
  - sql: SELECT id, upper(name) AS name, amount * 2 AS amount FROM input WHERE amount >= 0
sink:
  file: { path: ${out}/, format: parquet }
`,
    );
    let sent = false;
    const result = await sluice(
      [
        'run',
        'spec.yaml',
        '--run-dir',
        path.join(dir, 'runs'),
        '--progress',
        'plain',
        '--progress-interval',
        '0.05',
      ],
      dir,
      (child) => {
        child.stderr?.on('data', (d: Buffer) => {
          if (!sent && d.toString().includes('DuckDB COPY (pushdown)')) {
            sent = true;
            child.kill('SIGINT');
          }
        });
      },
    );
    assert.ok(sent, `the progress line names the pushdown: ${result.stderr}`);
    assert.equal(result.code, 130, result.stderr + result.stdout);
    assert.deepEqual(await filesUnder(out), [], 'nothing is left in the output folder');
    const tmp = (await readdir(tmpdir())).filter(
      (f) => f.startsWith('sluice-pushdown-') && f.endsWith('.json'),
    );
    assert.deepEqual(tmp, [], 'no profile file is left');
    const [summaryFile] = (await filesUnder(path.join(dir, 'runs'))).filter((f) => f.endsWith('run.json'));
    const summary = JSON.parse(await readFile(summaryFile!, 'utf8')) as RunSummary;
    assert.equal(summary.status, 'interrupted');
    assert.equal(summary.engine, 'duckdb-pushdown');
  });
});

describe('planPushdown: eligibility', () => {
  async function reasons(spec: string, files: Record<string, string> = {}): Promise<string[]> {
    const dir = await mkdtemp(path.join(work, 'plan-'));
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
    const file = path.join(dir, 'spec.yaml');
    await writeFile(file, spec);
    const pipeline = await loadPipeline({ file, registry: defaultRegistry() });
    const plan = await planPushdown(pipeline);
    return plan.eligible ? [] : plan.reasons;
  }
  const csv = { 'in.csv': 'id,amount,name\n1,2.5,a\n' };
  const src = 'source:\n  file: { path: in.csv, csv: { columns: { id: integer, amount: double } } }\n';
  const sink = 'sink:\n  file: { path: out/, format: parquet }\n';

  it('accepts file → sql/filter → file', async () => {
    assert.deepEqual(
      await reasons(
        `${head('ok')}${src}steps:\n  - filter: amount > 1\n  - sql: SELECT id, name FROM input\n${sink}`,
        csv,
      ),
      [],
    );
  });

  it('names every structural reason at once', async () => {
    const got = await reasons(
      `${head('no')}source:\n  file: { path: in.jsonl }\nsteps:\n  - validate: { schema: { type: object } }\n` +
        'sinks:\n  - file: { path: a/, format: jsonl }\n  - file: { path: b/, format: csv, roll: { max_records: 5 } }\n' +
        'settings: { pushdown: "off" }\n',
      { 'in.jsonl': '{"a":1}\n' },
    );
    const text = got.join('\n');
    assert.match(text, /settings\.pushdown is off/);
    assert.match(text, /step validate is a validate step/);
    assert.match(text, /2 sinks/);
    assert.match(text, /the sink writes JSON Lines/);
  });

  it('refuses JSON Lines, per-value typing hazards and engine-specific functions', async () => {
    const cases: [string, RegExp][] = [
      ['SELECT CAST(amount AS VARCHAR) AS a FROM input', /CAST to VARCHAR is applied to a DOUBLE value/],
      ['SELECT amount // 2 AS a FROM input', /\/\/ is applied to a DOUBLE value/],
      ['SELECT CAST(amount / 2 AS VARCHAR) AS a FROM input', /CAST to VARCHAR is applied to a DOUBLE value/],
      ['SELECT 1 / (-amount * 2) AS a FROM input', /a DOUBLE value in the divisor of \//],
      ['SELECT typeof(id) AS t FROM input', /typeof names the static type/],
      ["SELECT id FROM input WHERE name ~ 'a'", /RE2/],
      ['SELECT now() AS t FROM input', /once per query/],
      ['SELECT Name FROM input', /"Name" is not a column of the input/],
      ['SELECT id * 1.5 AS x FROM input', /DECIMAL/],
      ['SELECT name, count(*) AS n FROM input GROUP BY name', /runs as duckdb-set/],
      ["SELECT levenshtein(name, 'a') AS d FROM input", /runs as duckdb-batch/],
    ];
    for (const [query, expected] of cases) {
      const got = await reasons(`${head('r')}${src}steps:\n  - sql: ${JSON.stringify(query)}\n${sink}`, csv);
      assert.match(got.join('\n'), expected, query);
    }
    const jsonl = await reasons(`${head('j')}source:\n  file: { path: in.jsonl }\n${sink}`, {
      'in.jsonl': '{"a":1}\n',
    });
    assert.match(jsonl.join('\n'), /JSON Lines/);
    const jsonlSink = await reasons(`${head('j')}${src}sink:\n  file: { path: out/, format: jsonl }\n`, csv);
    assert.match(jsonlSink.join('\n'), /JSON Lines/);
    const doubleCsv = await reasons(`${head('d')}${src}sink:\n  file: { path: out/r.csv }\n`, csv);
    assert.match(doubleCsv.join('\n'), /DOUBLE: Sluice's CSV writer prints 12\.0 as 12/);
  });

  it('--dry-run tells whether pushdown applies and why not', async () => {
    const dir = await caseDir('dry');
    await writeFile(path.join(dir, 'in.csv'), csv['in.csv']);
    await writeFile(
      path.join(dir, 'spec.yaml'),
      `${head('dr')}${src}steps:\n  - sql: SELECT id FROM input\n${sink}`,
    );
    const yes = await sluice(['run', 'spec.yaml', '--dry-run'], dir);
    assert.match(yes.stdout, /pushdown: yes, one DuckDB COPY/);
    const no = await sluice(['run', 'spec.yaml', '--dry-run', '--no-pushdown'], dir);
    assert.match(no.stdout, /pushdown: no, the streaming engine runs it:\n {2}- pushdown is off/);
  });
});

describe('countsFromProfile', () => {
  const stages = [
    { name: 'source', kind: 'source' as const, component: 'file', filters: false },
    { name: 'a', kind: 'step' as const, component: 'filter', filters: true },
    { name: 'b', kind: 'step' as const, component: 'sql', filters: false },
    { name: 'c', kind: 'step' as const, component: 'sql', filters: true },
  ];
  const chain = (filters: number[]) => ({
    children: [
      {
        operator_type: 'COPY_TO_FILE',
        operator_cardinality: 1,
        children: [
          {
            operator_type: 'FILTER',
            operator_cardinality: filters[1],
            children: [
              {
                operator_type: 'PROJECTION',
                operator_cardinality: filters[0],
                children: [
                  {
                    operator_type: 'FILTER',
                    operator_cardinality: filters[0],
                    children: [{ operator_type: 'TABLE_SCAN', operator_cardinality: 100 }],
                  },
                ],
              },
            ],
          },
        ],
      },
    ],
  });
  it('reads the scan and one FILTER per filtering stage, bottom up', () => {
    assert.deepEqual(countsFromProfile(chain([60, 25]), stages, 25), [100, 60, 60, 25]);
  });
  it('gives up on a plan of another shape', () => {
    assert.equal(countsFromProfile(chain([60, 25]), stages, 24), undefined);
    assert.equal(countsFromProfile(chain([60, 25]), stages.slice(0, 3), 25), undefined);
  });
});
