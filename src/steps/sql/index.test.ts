import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { ComponentContext, SluiceRecord, StepInstance } from '../../sdk/types.ts';
import { sqlStep } from './index.ts';

const ctx: ComponentContext = {
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} },
  baseDir: '.',
  pipelineName: 'test',
  runId: 'run-1',
  batchSize: 100,
};

function rec(value: Record<string, unknown>, offset: number): SluiceRecord {
  return {
    value,
    meta: { position: { partition: 'in.jsonl', offset }, eventTime: 1000 + offset, headers: { h: 'v' } },
  };
}

async function make(query: string): Promise<StepInstance> {
  return sqlStep.create(sqlStep.config.parse({ query }), ctx);
}

describe('sql step', () => {
  test('is declared with a shorthand, a strict schema and examples that validate and compile', async () => {
    assert.equal(sqlStep.kind, 'step');
    assert.equal(sqlStep.name, 'sql');
    assert.equal(sqlStep.shorthand, 'query');
    assert.ok(sqlStep.summary && sqlStep.description?.includes('docs/sql.md'));
    assert.equal(sqlStep.config.safeParse({ query: 'SELECT 1 FROM input', sql: 'x' }).success, false);
    assert.ok(sqlStep.examples.length >= 2);
    for (const ex of sqlStep.examples) {
      const raw = parseYaml(ex.yaml) as unknown;
      const cfg = sqlStep.config.parse(typeof raw === 'string' ? { query: raw } : raw);
      assert.deepEqual(await sqlStep.check!(cfg, { baseDir: '.' }), [], ex.title);
    }
  });

  test('check refuses what needs a set of rows, or a FROM other than input', async () => {
    const grouped = await sqlStep.check!(
      { query: 'SELECT country, sum(amount) FROM input GROUP BY country' },
      { baseDir: '.' },
    );
    assert.equal(grouped.length, 1);
    assert.deepEqual(grouped[0]!.path, ['query']);
    assert.equal(grouped[0]!.offset, 48);
    assert.match(grouped[0]!.message, /GROUP BY is not allowed in per-record SQL/);
    const agg = await sqlStep.check!({ query: 'SELECT sum(amount) AS total FROM input' }, { baseDir: '.' });
    assert.equal(agg[0]!.offset, 7);
    assert.match(agg[0]!.message, /aggregate function sum\(\) is not allowed in per-record SQL/);
    const from = await sqlStep.check!({ query: 'SELECT * FROM payments' }, { baseDir: '.' });
    assert.match(from[0]!.message, /FROM must be the table input/);
    assert.equal(from[0]!.offset, 14);
  });

  test('projects each record and carries its metadata over', async () => {
    const step = await make(
      'SELECT id, upper(country) AS country, amount * 100 AS cents FROM input WHERE amount > 0',
    );
    const batch = [
      rec({ id: 1, country: 'de', amount: 2.5 }, 1),
      rec({ id: 2, country: 'fr', amount: -3 }, 2),
      rec({ id: 3, country: 'it', amount: 4 }, 3),
    ];
    const out = await step.process(batch);
    assert.deepEqual(
      out.records.map((r) => r.value),
      [
        { id: 1, country: 'DE', cents: 250 },
        { id: 3, country: 'IT', cents: 400 },
      ],
    );
    assert.equal(out.records[0]!.meta, batch[0]!.meta);
    assert.equal(out.records[1]!.meta, batch[2]!.meta);
    assert.deepEqual(batch[0]!.value, { id: 1, country: 'de', amount: 2.5 }, 'the input is not modified');
  });

  test('a record the query fails on goes to the errors; the batch carries on', async () => {
    const step = await make('SELECT id, 100 // CAST(n AS INTEGER) AS q FROM input');
    const batch = [rec({ id: 1, n: '4' }, 1), rec({ id: 2, n: 'x' }, 2), rec({ id: 3, n: '0' }, 3)];
    const out = await step.process(batch);
    assert.deepEqual(
      out.records.map((r) => r.value),
      [
        { id: 1, q: 25 },
        { id: 3, q: null },
      ],
    );
    assert.equal(out.rejected?.length, 1);
    assert.equal(out.rejected![0]!.record, batch[1]);
    assert.equal(out.rejected![0]!.error.code, 'SLUICE_EXPR_EVAL');
  });
});
