/**
 * Every operator's counts add up (in + added = out + filtered + failed), every operator's input is
 * the output of the one before it, and the run's totals are the operators' sums: for every kind of
 * step, on the streaming engine and pushed down. `runSpec` checks this for every run it makes.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { RunSummary } from './run.ts';
import { countProblems } from './stats.ts';
import { runSpec } from './test-util.ts';

let work: string;
let dirs = 0;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-counts-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(work, `${++dirs}-${name}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

const head = (name: string) => `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: ${name} }\n`;

/** A generate source of `count` records: id 1..count and s, a string that is not a number for every fifth id. */
const generated = (count: number) =>
  `source:\n  generate: { count: ${count}, fields: { id: seq, s: "template('{seq}')" } }\n`;

/** in, out, filtered, failed and added of one operator. */
function op(summary: RunSummary, name: string): [number, number, number, number, number] {
  const o = summary.operators.find((x) => x.name === name);
  assert.ok(o, `no operator ${name} in ${summary.operators.map((x) => x.name).join(', ')}`);
  return [o.in, o.out, o.filtered, o.failed, o.added ?? 0];
}

/** The input: ten payments and one line whose amount is not an integer. */
const payments = `id,amount,ts
1,10,1
1,12,2
2,-5,1
2,7,2
3,0,1
4,9,1
4,9,2
5,3,1
6,8,1
7,-1,1
`;
const latestPositive = `steps:
  - name: latest
    sql: SELECT * FROM input WHERE amount > 0 QUALIFY row_number() OVER (PARTITION BY id ORDER BY ts DESC) = 1
`;
const paymentsSource = `source:
  file: { path: in.csv, csv: { columns: { id: integer, amount: integer, ts: integer } } }
`;

describe('counts add up', () => {
  it('set-level sql (QUALIFY with WHERE) over 10 records and a bad line: what it consumed without output is filtered', async () => {
    const dir = await freshDir('qualify');
    await writeFile(path.join(dir, 'in.csv'), `${payments}8,x,1\n`);
    const s = await runSpec(
      dir,
      `${head('qualify')}${paymentsSource}${latestPositive}sinks:\n  - file: { path: out/, format: jsonl }\n`,
    );
    assert.deepEqual(op(s, 'source'), [11, 10, 0, 1, 0]);
    // ids 1, 2, 4, 5, 6 keep their latest positive payment
    assert.deepEqual(op(s, 'latest'), [10, 5, 5, 0, 0]);
    assert.deepEqual(s.records, { read: 11, written: 5, filtered: 5, failed: 1, skipped: 0 });
  });

  it('pushed down to DuckDB (per-record SQL only; set-level SQL runs on the streaming engine)', async () => {
    const dir = await freshDir('pushdown');
    await writeFile(path.join(dir, 'in.csv'), payments);
    const s = await runSpec(
      dir,
      `${head('pushdown')}${paymentsSource}steps:\n  - name: positive\n    sql: SELECT id, amount FROM input WHERE amount > 0\n  - filter: id <> 4\nsinks:\n  - file: { path: out/, format: parquet }\n`,
      { pushdown: 'auto' },
    );
    assert.equal(s.engine, 'duckdb-pushdown');
    assert.deepEqual(op(s, 'positive'), [10, 7, 3, 0, 0]);
    assert.deepEqual(op(s, 'filter'), [7, 5, 2, 0, 0]);
    assert.deepEqual(s.records, { read: 10, written: 5, filtered: 5, failed: 0, skipped: 0 });
  });

  it('set-level GROUP BY: rows folded into a group are filtered; a self-join that fans out adds', async () => {
    const dir = await freshDir('set');
    const setLevel = (name: string, query: string) =>
      runSpec(
        dir,
        `${head(name)}${generated(10)}steps:\n  - name: ${name}\n    sql: ${query}\nsinks:\n  - file: { path: out-${name}/, format: parquet }\n`,
        { pushdown: 'off', runId: name },
      );
    const grouped = await setLevel('grouped', 'SELECT id % 3 AS k, count(*) AS n FROM input GROUP BY ALL');
    assert.deepEqual(op(grouped, 'grouped'), [10, 3, 7, 0, 0]);
    const joined = await setLevel(
      'joined',
      'SELECT a.id, b.id AS other FROM input a JOIN input b ON a.id % 2 = b.id % 2',
    );
    assert.deepEqual(op(joined, 'joined'), [10, 50, 0, 0, 40]);
    assert.deepEqual(joined.records, { read: 10, written: 50, filtered: 0, failed: 0, skipped: 0 });
  });

  it('per-record sql, compiled and on DuckDB: WHERE filters, a bad cast fails', async () => {
    const dir = await freshDir('per-record');
    // s is '1'..'20'; ids 5 and 15 get 'x' and fail the cast; ids divisible by 4 are filtered.
    const s = await runSpec(
      dir,
      `${head('per-record')}${generated(20)}steps:
  - name: compiled
    sql: SELECT id, CAST(CASE WHEN id % 10 = 5 THEN 'x' ELSE s END AS INTEGER) AS n FROM input WHERE id % 4 <> 0
  - name: fallback
    sql: SELECT id, n, levenshtein(CAST(n AS VARCHAR), 'x') AS d, CAST(CASE WHEN id = 7 THEN 'y' ELSE '1' END AS INTEGER) AS c FROM input WHERE id <> 2
sinks:
  - file: { path: out/, format: jsonl }
settings: { batch_size: 6 }
`,
    );
    assert.deepEqual(op(s, 'compiled'), [20, 13, 5, 2, 0]);
    assert.deepEqual(op(s, 'fallback'), [13, 11, 1, 1, 0]);
    assert.deepEqual(s.records, { read: 20, written: 11, filtered: 6, failed: 3, skipped: 0 });
  });

  it('filter, validate, a script step that drops, rejects and duplicates, and routes that match nothing', async () => {
    const dir = await freshDir('steps');
    const sdk = JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '../sdk/index.ts')).href);
    await writeFile(
      path.join(dir, 'fan.ts'),
      `import { defineStep, SluiceError, z } from ${sdk};
export default defineStep({
  name: 'fan',
  summary: 'ids up to 5 twice; drops multiples of 3, rejects multiples of 7 (tests only)',
  config: z.object({}).strict(),
  examples: [],
  create: () => ({
    process(batch) {
      const records = [];
      const rejected = [];
      for (const r of batch) {
        if (r.value.id <= 5) records.push(r, r);
        else if (r.value.id % 7 === 0) rejected.push({ record: r, error: new SluiceError('SLUICE_EXPR_EVAL', 'seven') });
        else if (r.value.id % 3 !== 0) records.push(r);
      }
      return { records, rejected };
    },
  }),
});
`,
    );
    const s = await runSpec(
      dir,
      `${head('steps')}${generated(30)}steps:
  - filter: CAST(CASE WHEN id = 30 THEN 'z' ELSE s END AS INTEGER) <> 29
  - validate: { schema: { type: object, properties: { id: { not: { const: 28 } } } } }
  - script: { module: fan.ts }
sinks:
  - route: id % 2 = 0
    file: { path: even/, format: jsonl }
  - route: id % 5 = 1
    file: { path: ones/, format: jsonl }
settings: { batch_size: 5 }
`,
    );
    assert.deepEqual(op(s, 'filter'), [30, 28, 1, 1, 0]);
    assert.deepEqual(op(s, 'validate'), [28, 27, 0, 1, 0]);
    // batch 1 (ids 1..5) doubles: 5 added; later batches drop 6, 9, 12, 15, 18, 24, 27 and reject 7, 14, 21
    assert.deepEqual(op(s, 'script'), [27, 22, 7, 3, 5]);
    const route = op(s, 'route');
    assert.equal(route[0], 22);
    assert.equal(route[0], route[1] + route[3], 'a record no route takes is a route failure');
    assert.deepEqual([s.records.read, s.records.filtered, s.records.failed], [30, 8, 1 + 1 + 3 + route[3]]);
  });
});

describe('countProblems', () => {
  it('finds the issue summary: 11 read, 6 written, 0 filtered, 1 failed', () => {
    const o = (name: string, kind: 'source' | 'step' | 'sink' | 'errors', n: number[]) => ({
      name,
      kind,
      component: name,
      in: n[0]!,
      out: n[1]!,
      filtered: n[2]!,
      failed: n[3]!,
      time_ms: 0,
    });
    const summary = {
      failure: null,
      operators: [
        o('source', 'source', [11, 10, 0, 1]),
        o('sql', 'step', [10, 6, 0, 0]),
        o('file', 'sink', [6, 6, 0, 0]),
        o('errors', 'errors', [1, 1, 0, 0]),
      ],
      records: { read: 11, written: 6, filtered: 0, failed: 1 },
    };
    assert.deepEqual(countProblems(summary), ['sql: in 10 + added 0 != out 6 + filtered 0 + failed 0']);
    summary.operators[1]!.filtered = 4;
    summary.records.filtered = 4;
    assert.deepEqual(countProblems(summary), []);
    summary.operators[2]!.in = 5;
    assert.deepEqual(countProblems(summary), [
      'file: in 5 + added 0 != out 6 + filtered 0 + failed 0',
      'file: in 5 != out 6 of sql',
    ]);
  });
});
