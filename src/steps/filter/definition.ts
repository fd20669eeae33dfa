import { z } from 'zod';
import { defineStep } from '../../sdk/define.ts';
import { sqlIssues } from '../../sql/issues.ts';
import { planQuery } from '../../sql/plan.ts';

const config = z
  .object({
    condition: z
      .string()
      .min(1)
      .describe(
        "A SQL boolean expression over the record, in DuckDB syntax (e.g. `amount > 0 AND country IN ('DE', 'FR')`). " +
          'Records for which it is TRUE are kept; FALSE and NULL drop the record. Any DuckDB scalar function may be ' +
          'used; aggregates and window functions may not (they need a set of rows). See docs/sql.md.',
      ),
  })
  .strict();

export type FilterConfig = z.output<typeof config>;

export const filterStep = defineStep({
  name: 'filter',
  summary: 'Keeps the records for which a SQL condition is true.',
  description:
    'The condition is a per-record SQL expression with DuckDB semantics (three-valued logic: a NULL result drops ' +
    'the record, like FALSE). Inside the compiled subset of docs/sql.md (column references including nested ' +
    'fields, arithmetic, comparisons, AND/OR/NOT, IN, BETWEEN, LIKE, CASE, CAST and common string, math and date ' +
    'functions) it is compiled to JavaScript once, so filtering costs little per record; any other DuckDB scalar ' +
    'function makes it run on DuckDB in micro-batches, with the same results. A condition that does not parse, ' +
    'names an unknown function or needs a set of rows (an aggregate) is refused when the spec is validated, with ' +
    'its line and column. A record the condition cannot be evaluated on (a failing CAST, an integer overflow) goes ' +
    'to the errors sink; the others carry on.',
  config,
  shorthand: 'condition',
  examples: [
    { title: 'Keep positive amounts from two countries', yaml: "amount > 0 AND country IN ('DE', 'FR')" },
    { title: 'Drop test accounts, whatever the case of the e-mail', yaml: "email NOT ILIKE '%@example.com'" },
    {
      title: 'A nested field, with the long form',
      yaml: "condition: payload.user.id IS NOT NULL AND coalesce(payload.kind, 'other') <> 'heartbeat'",
    },
  ],
  async check(cfg, ctx) {
    return sqlIssues('condition', () =>
      planQuery(cfg.condition, { mode: 'condition', baseDir: ctx.baseDir }),
    );
  },
  async explain(cfg, ctx) {
    const plan = await planQuery(cfg.condition, { mode: 'condition', baseDir: ctx.baseDir, bind: false });
    return { path: plan.path, reason: plan.reason };
  },
  // DuckDB's runtime paths load when a pipeline runs the step.
  create: async (cfg, ctx) => (await import('./index.ts')).createFilterStep(cfg, ctx),
});

/** Creates the step; `forceDuckDB` (internal, for tests) runs an in-subset condition on DuckDB too. */
