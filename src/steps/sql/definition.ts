import { z } from 'zod';
import { defineStep } from '../../sdk/define.ts';
import type { ConfigIssue } from '../../sdk/types.ts';
import { newDuckDBConnection } from '../../sql/duckdb.ts';
import { sqlIssues } from '../../sql/issues.ts';
import { checkLookups, lookupsSchema } from '../../sql/lookups.ts';
import { planQuery } from '../../sql/plan.ts';

const config = z
  .object({
    query: z
      .string()
      .min(1)
      .describe(
        'A query in DuckDB syntax and semantics over `input`, the records: per record ' +
          '`SELECT <expressions> FROM input [WHERE <condition>]`, optionally joining `lookups`; or, on bounded input, ' +
          'set-level SQL (GROUP BY, ORDER BY, DISTINCT, LIMIT, window functions, self-joins). `*`, `* EXCLUDE (...)` and ' +
          '`* REPLACE (... AS ...)` keep the other fields. Records the WHERE clause rejects are dropped. See docs/sql.md.',
      ),
    lookups: lookupsSchema.optional(),
  })
  .strict();

export type SqlConfig = z.output<typeof config>;

export const sqlStep = defineStep({
  name: 'sql',
  summary:
    'Reshapes each record with a SQL SELECT (filtering with WHERE, joining lookup tables), or runs set-level SQL on bounded input.',
  description:
    'A per-record query runs on one record at a time, as `SELECT ... FROM input WHERE ...` would in DuckDB: same NULL ' +
    'rules, same types (`5 / 2` is 2.5, `5 // 2` is 2, integer overflow is an error), same column names for unaliased ' +
    'expressions. Inside the compiled subset (docs/sql.md) it is compiled to JavaScript and costs little per record; ' +
    'outside it (another DuckDB function, a lambda, a join with a lookup table) it runs on DuckDB in micro-batches with ' +
    "the same results. The output record's metadata (key, headers, position, event time) is the input record's. " +
    'Set-level SQL (GROUP BY, aggregates, ORDER BY, DISTINCT, LIMIT, window functions, input joined with itself) ' +
    'collects the whole input in DuckDB and emits the result when the input ends: it is refused on an unbounded ' +
    'source. SQL that does not parse, or names an unknown function, table or column, is refused when the spec is ' +
    'validated; a record the query fails on (a CAST that does not convert, an overflow) goes to the errors sink.',
  config,
  shorthand: 'query',
  examples: [
    {
      title: 'Project, rename and compute, keeping positive amounts',
      yaml: 'SELECT id, upper(country) AS country, amount * 100 AS cents FROM input WHERE amount > 0',
    },
    {
      title: 'Keep every field but one, and fix another',
      yaml: 'SELECT * EXCLUDE (password) REPLACE (lower(email) AS email) FROM input',
    },
    {
      title: 'Nested fields and dates, with the long form',
      yaml: [
        'query: |',
        '  SELECT payload.ref AS order_ref,',
        '         CAST(payload.total AS DECIMAL(10,2)) AS total,',
        "         date_trunc('day', CAST(payload.created_at AS TIMESTAMP)) AS day",
        '  FROM input',
        "  WHERE payload.status IN ('paid', 'shipped')",
      ].join('\n'),
    },
    {
      title: 'Any DuckDB function (this one runs on DuckDB in micro-batches)',
      yaml: "SELECT id, levenshtein(lower(name), 'sluice') AS distance, string_split(tags, ',') AS tags FROM input",
    },
    {
      title: 'Enrich each record from a lookup table (a CSV file read once)',
      yaml: [
        'query: |',
        '  SELECT p.*, c.name AS country_name',
        '  FROM input AS p LEFT JOIN countries AS c ON p.country = c.code',
        'lookups:',
        '  countries: { path: data/countries.csv }',
      ].join('\n'),
    },
    {
      title: 'Totals per country over the whole (bounded) input',
      yaml: 'SELECT country, count(*) AS payments, sum(amount) AS total FROM input GROUP BY country ORDER BY total DESC',
    },
  ],
  paths: (cfg) =>
    Object.entries(cfg.lookups ?? {}).map(([name, lookup]) => ({
      path: ['lookups', name, 'path'],
      value: lookup.path,
    })),
  async check(cfg, ctx) {
    if (cfg.lookups) {
      const conn = await newDuckDBConnection();
      let problems: { name: string; message: string }[];
      try {
        problems = await checkLookups(conn, cfg.lookups, ctx.baseDir);
      } finally {
        conn.closeSync();
      }
      if (problems.length) {
        return problems.map((p): ConfigIssue => ({ path: ['lookups', p.name, 'path'], message: p.message }));
      }
    }
    return sqlIssues('query', () =>
      planQuery(cfg.query, { ...(cfg.lookups ? { lookups: cfg.lookups } : {}), baseDir: ctx.baseDir }),
    );
  },
  async needsBoundedInput(cfg, ctx) {
    const plan = await planQuery(cfg.query, {
      ...(cfg.lookups ? { lookups: cfg.lookups } : {}),
      baseDir: ctx.baseDir,
      bind: false,
    });
    if (plan.path !== 'duckdb-set') return undefined;
    return {
      reason: plan.reason,
      path: ['query'],
      ...(plan.offset === undefined ? {} : { offset: plan.offset }),
    };
  },
  async explain(cfg, ctx) {
    const plan = await planQuery(cfg.query, {
      ...(cfg.lookups ? { lookups: cfg.lookups } : {}),
      baseDir: ctx.baseDir,
      bind: false,
    });
    return { path: plan.path, reason: plan.reason };
  },
  // DuckDB's runtime paths load when a pipeline runs the step.
  create: async (cfg, ctx) => (await import('./index.ts')).createSqlStep(cfg, ctx),
});
