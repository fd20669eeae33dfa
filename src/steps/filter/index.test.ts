import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { ComponentContext, SluiceRecord, StepInstance } from '../../sdk/types.ts';
import { createFilterStep, filterStep } from './index.ts';

const ctx: ComponentContext = {
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} },
  baseDir: '.',
  pipelineName: 'test',
  runId: 'run-1',
  batchSize: 100,
};

function rec(value: Record<string, unknown>, offset: number): SluiceRecord {
  return { value, meta: { position: { partition: 'f.jsonl', offset }, key: `k${offset}` } };
}

async function make(condition: string): Promise<StepInstance> {
  return filterStep.create(filterStep.config.parse({ condition }), ctx);
}

describe('filter step', () => {
  test('is declared with a shorthand, a strict schema and examples that validate and compile', async () => {
    assert.equal(filterStep.kind, 'step');
    assert.equal(filterStep.name, 'filter');
    assert.equal(filterStep.shorthand, 'condition');
    assert.ok(filterStep.summary && filterStep.description?.includes('docs/sql.md'));
    assert.equal(filterStep.config.safeParse({ condition: 'a > 0', extra: 1 }).success, false);
    assert.equal(filterStep.config.safeParse({ condition: '' }).success, false);
    assert.ok(filterStep.examples.length >= 2);
    for (const ex of filterStep.examples) {
      const raw = parseYaml(ex.yaml) as unknown;
      const cfg = filterStep.config.parse(typeof raw === 'string' ? { condition: raw } : raw);
      assert.deepEqual(await filterStep.check!(cfg, { baseDir: '.' }), [], ex.title);
    }
  });

  test('check refuses SQL that does not compile, pointing into the condition', async () => {
    const issues = await filterStep.check!(
      { condition: 'amount > 0 AND lenght(name) > 2' },
      { baseDir: '.' },
    );
    assert.equal(issues.length, 1);
    assert.deepEqual(issues[0]!.path, ['condition']);
    assert.equal(issues[0]!.offset, 15);
    assert.match(
      issues[0]!.message,
      /unknown function lenght\(\); did you mean length\? \(at line 1, column 16, offset 15\)/,
    );
    const agg = await filterStep.check!({ condition: 'sum(amount) > 0' }, { baseDir: '.' });
    assert.match(agg[0]!.message, /aggregate function sum\(\) is not allowed in a filter condition/);
    assert.equal(agg[0]!.offset, 0);
    const win = await filterStep.check!({ condition: 'row_number() OVER () > 1' }, { baseDir: '.' });
    assert.match(win[0]!.message, /window function row_number\(\) is not allowed in a filter condition/);
  });

  test('keeps the records for which the condition is true; false and NULL drop them', async () => {
    const step = await make("amount > 0 AND country IN ('DE', 'FR')");
    const batch = [
      rec({ amount: 5, country: 'DE' }, 1),
      rec({ amount: -1, country: 'DE' }, 2),
      rec({ amount: null, country: 'FR' }, 3),
      rec({ amount: 2.5, country: 'FR' }, 4),
      rec({ country: 'FR' }, 5),
    ];
    const out = await step.process(batch);
    assert.deepEqual(out.records, [batch[0], batch[3]]);
    assert.equal(out.records[0], batch[0]);
    assert.equal(out.rejected, undefined);
  });

  test('a record the condition fails on is rejected alone', async () => {
    const step = await make('CAST(qty AS INTEGER) > 1');
    const batch = [rec({ qty: '3' }, 1), rec({ qty: 'many' }, 2), rec({ qty: '0' }, 3), rec({ qty: '7' }, 4)];
    const out = await step.process(batch);
    assert.deepEqual(
      out.records.map((r) => r.meta.position?.offset),
      [1, 4],
    );
    assert.equal(out.rejected?.length, 1);
    const [rej] = out.rejected!;
    assert.equal(rej!.record, batch[1]);
    assert.equal(rej!.error.code, 'SLUICE_EXPR_EVAL');
    assert.match(rej!.error.message, /Could not convert string 'many' to INT32/);
    assert.deepEqual(rej!.error.details, { expression: 'CAST(qty AS INTEGER)', value: 'many' });
  });

  test('a condition outside the compiled subset runs on DuckDB micro-batches, keeping the records', async () => {
    const cfg = filterStep.config.parse({
      condition: "levenshtein(name, 'sluice') <= 1 AND CAST(n AS INTEGER) > 0",
    });
    assert.deepEqual(await filterStep.explain!(cfg, { baseDir: '.' }), {
      path: 'duckdb-batch',
      reason: 'levenshtein() is not in the compiled subset',
    });
    const step = await filterStep.create(cfg, ctx);
    const batch = [
      rec({ name: 'slice', n: '1' }, 1),
      rec({ name: 'other', n: '1' }, 2),
      rec({ name: 'sluice', n: 'x' }, 3),
      rec({ name: null, n: '1' }, 4),
      rec({ name: 'sluice', n: 2 }, 5),
    ];
    const out = await step.process(batch);
    await step.close?.();
    assert.deepEqual(out.records, [batch[0], batch[4]]);
    assert.equal(out.records[0], batch[0], 'the same record objects');
    assert.equal(out.rejected?.length, 1);
    assert.equal(out.rejected![0]!.record, batch[2]);
    assert.equal(out.rejected![0]!.error.code, 'SLUICE_EXPR_EVAL');
  });

  test('an in-subset condition forced onto DuckDB keeps and rejects the same records', async () => {
    const condition = "amount > 0 AND country IN ('DE', 'FR') OR CAST(qty AS INTEGER) > 1";
    const batch = [
      rec({ amount: 5, country: 'DE', qty: '0' }, 1),
      rec({ amount: -1, country: 'DE', qty: '3' }, 2),
      rec({ amount: null, country: 'FR', qty: 'many' }, 3),
      rec({ amount: 2.5, country: 'FR', qty: null }, 4),
      rec({ country: 'US', qty: '1' }, 5),
    ];
    const cfg = filterStep.config.parse({ condition });
    const compiled = await (await createFilterStep(cfg, ctx)).process(batch);
    const duck = await createFilterStep(cfg, ctx, { forceDuckDB: true });
    const viaDuck = await duck.process(batch);
    await duck.close?.();
    assert.deepEqual(viaDuck.records, compiled.records);
    assert.deepEqual(
      viaDuck.rejected?.map((r) => r.record),
      compiled.rejected?.map((r) => r.record),
    );
  });
});
