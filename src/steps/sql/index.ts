import { z } from 'zod';
import { defineStep, mapRecords } from '../../sdk/index.ts';
import { compileSelect } from '../../sql/index.ts';
import { sqlIssues } from '../filter/index.ts';

const config = z
  .object({
    query: z
      .string()
      .min(1)
      .describe(
        'A per-record query `SELECT <expressions> FROM input [WHERE <condition>]` in DuckDB syntax and semantics; ' +
          '`input` is the current record. `*`, `* EXCLUDE (...)` and `* REPLACE (... AS ...)` keep the other fields. ' +
          'Records the WHERE clause rejects are dropped. See docs/sql.md for the supported SQL.',
      ),
  })
  .strict();

export type SqlConfig = z.output<typeof config>;

export const sqlStep = defineStep({
  name: 'sql',
  summary: 'Reshapes each record with a SQL SELECT (and optionally filters it with WHERE).',
  description:
    'The query runs on one record at a time, as `SELECT ... FROM input WHERE ...` would in DuckDB: same NULL rules, ' +
    'same types (`5 / 2` is 2.5, `5 // 2` is 2, integer overflow is an error), same column names for unaliased ' +
    'expressions. It is compiled to JavaScript once per shape of record, so it costs little per record. The output ' +
    "record is the projected row; its metadata (key, headers, position, event time) is the input record's. " +
    'GROUP BY, ORDER BY, joins, window and aggregate functions need a set of rows and are refused here. A query ' +
    'that does not parse or leaves the supported subset (docs/sql.md) is refused when the spec is validated; a ' +
    'record the query fails on (a CAST that does not convert, an overflow) goes to the errors sink.',
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
  ],
  async check(cfg) {
    return sqlIssues('query', () => compileSelect(cfg.query));
  },
  async create(cfg) {
    const select = await compileSelect(cfg.query);
    return mapRecords((record) => {
      const value = select(record.value);
      return value === null ? null : { value, meta: record.meta };
    });
  },
});
