import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultRegistry } from '../../registry.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { sluice } from '../test-util.ts';
import { type Explanation, explainPipeline } from './explain.ts';

let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-explain-'));
  await writeFile(path.join(dir, 'in.csv'), 'id,country,amount\n1,de,10.5\n2,fr,-3\n');
  await writeFile(path.join(dir, 'in.jsonl'), '{"id":1}\n');
  await writeFile(path.join(dir, 'countries.csv'), 'code,name\nDE,Germany\n');
});
after(() => rm(dir, { recursive: true, force: true }));

async function explainSpec(body: string): Promise<Explanation> {
  const file = path.join(dir, `spec-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: t }\n${body}`);
  return explainPipeline(await loadPipeline({ file, registry: defaultRegistry() }));
}

const step = (e: Explanation, name: string) => e.operators.find((o) => o.role === 'step' && o.name === name)!;

describe('sluice explain', () => {
  it('names the path of each SQL step and the construct that decided it', async () => {
    const e = await explainSpec(`
source: { file: { path: in.jsonl } }
steps:
  - name: fast
    sql: SELECT id, id * 2 AS twice FROM input
  - name: fallback
    sql: SELECT id, levenshtein(CAST(id AS VARCHAR), 'x') AS d FROM input
  - name: joined
    sql:
      query: SELECT i.id, c.name FROM input i LEFT JOIN countries c ON c.code = 'DE'
      lookups: { countries: { path: countries.csv } }
  - name: totals
    sql: SELECT count(*) AS n FROM input GROUP BY id
  - name: keep
    filter: id > 0
sink: { file: { path: out/, format: jsonl } }
`);
    assert.equal(step(e, 'fast').path, 'compiled');
    assert.equal(step(e, 'fallback').path, 'duckdb-batch');
    assert.match(step(e, 'fallback').reason, /levenshtein/);
    assert.equal(step(e, 'joined').path, 'duckdb-batch');
    assert.match(step(e, 'joined').reason, /lookup table countries/);
    assert.equal(step(e, 'totals').path, 'duckdb-set');
    assert.match(step(e, 'totals').reason, /GROUP BY/);
    assert.equal(step(e, 'keep').path, 'compiled');
    assert.equal(e.engine, 'streaming');
    assert.ok(
      e.engine_reasons.some((r) => /jsonl|JSON/i.test(r)),
      e.engine_reasons.join('; '),
    );
  });

  it('shows the pushed-down COPY when source, SQL and sink are files DuckDB handles', async () => {
    const e = await explainSpec(`
source: { file: { path: in.csv, csv: { columns: { id: integer } } } }
steps:
  - sql: SELECT id, upper(country) AS country FROM input WHERE id > 0
sink: { file: { path: out/, format: parquet } }
`);
    assert.equal(e.engine, 'duckdb-pushdown');
    assert.match(e.pushdown_sql ?? '', /COPY/i);
    assert.match(e.pushdown_sql ?? '', /upper\(country\)/i);
  });

  it('says why a run is not pushed down, and the same as a table from the CLI', async () => {
    const file = path.join(dir, 'routed.yaml');
    await writeFile(
      file,
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: routed }
source: { file: { path: in.csv } }
steps:
  - validate: { schema: { type: object } }
sinks:
  - { name: de, route: "country = 'de'", file: { path: de/, format: jsonl } }
  - { name: rest, file: { path: rest/, format: jsonl } }
`,
    );
    const { stdout, code } = await sluice(['explain', file], dir);
    assert.equal(code, 0);
    assert.match(stdout, /^step\s+validate\s+validate\s+javascript/m);
    assert.match(stdout, /^route\s+route\s+route\s+compiled/m);
    assert.match(stdout, /engine: streaming/);
    assert.match(stdout, /- step validate is a validate step/);
    assert.match(stdout, /- 2 sinks/);
    const json = JSON.parse((await sluice(['explain', file, '--json'], dir)).stdout) as Explanation;
    assert.equal(json.pipeline, 'routed');
    assert.deepEqual(
      json.operators.map((o) => o.role),
      ['source', 'step', 'route', 'sink', 'sink', 'errors'],
    );
  });
});
