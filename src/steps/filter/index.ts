import { z } from 'zod';
import { defineStep, mapRecords, SluiceError } from '../../sdk/index.ts';
import type { ConfigIssue } from '../../sdk/types.ts';
import { compileCondition } from '../../sql/index.ts';

const config = z
  .object({
    condition: z
      .string()
      .min(1)
      .describe(
        "A SQL boolean expression over the record, in DuckDB syntax (e.g. `amount > 0 AND country IN ('DE', 'FR')`). " +
          'Records for which it is TRUE are kept; FALSE and NULL drop the record. See docs/sql.md.',
      ),
  })
  .strict();

export type FilterConfig = z.output<typeof config>;

/**
 * Compiles a SQL snippet for `check`: a SLUICE_EXPR_INVALID becomes a config issue at `field`, its message
 * giving the line, column and character offset in the SQL, and `offset` set for the spec's YAML position.
 */
export async function sqlIssues(field: string, compile: () => Promise<unknown>): Promise<ConfigIssue[]> {
  try {
    await compile();
    return [];
  } catch (err) {
    if (err instanceof SluiceError && err.code === 'SLUICE_EXPR_INVALID') {
      const offset = err.details?.offset;
      return [
        {
          path: [field],
          message: err.message,
          ...(typeof offset === 'number' ? { offset } : {}),
        },
      ];
    }
    throw err;
  }
}

export const filterStep = defineStep({
  name: 'filter',
  summary: 'Keeps the records for which a SQL condition is true.',
  description:
    'The condition is a per-record SQL expression with DuckDB semantics (three-valued logic: a NULL result drops ' +
    'the record, like FALSE). It is compiled to JavaScript once, so filtering costs little per record. Supported: ' +
    'column references including nested fields (`payload.user.id`, `tags[1]`), arithmetic, comparisons, ' +
    'AND/OR/NOT, IS [NOT] NULL, [NOT] IN, BETWEEN, LIKE/ILIKE, CASE, CAST, COALESCE and the string, math and ' +
    'date functions listed in docs/sql.md. A condition that does not parse or leaves that subset is refused when ' +
    'the spec is validated, with its line and column. A record the condition cannot be evaluated on (a failing ' +
    'CAST, an integer overflow) goes to the errors sink; the others carry on.',
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
  async check(cfg) {
    return sqlIssues('condition', () => compileCondition(cfg.condition));
  },
  async create(cfg) {
    const condition = await compileCondition(cfg.condition);
    return mapRecords((record) => (condition(record.value) ? record : null));
  },
});
