import { z } from 'zod';
import { defineSource } from '../../sdk/define.ts';
import { COLUMN_NAME, columnName, connectionFields, TABLE_NAME } from './names.ts';

export const postgresSourceConfig = z
  .object({
    ...connectionFields,
    table: z
      .string()
      .regex(TABLE_NAME, 'expected a table name, optionally schema-qualified: `public.orders`')
      .optional()
      .describe(
        'The table to read, `schema.table` (the schema defaults to `public`). Give `table` or `query`.',
      ),
    query: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A SELECT to read instead of a table. In `full` mode give it an ORDER BY (or set `order_by`): the ' +
          'row index is the position, so the order must be the same on every run for a resume to be right.',
      ),
    mode: z
      .enum(['full', 'incremental'])
      .default('full')
      .describe(
        '`full` reads every row; `incremental` reads only rows whose `cursor` is greater than the last ' +
          'position a checkpoint holds, in cursor order.',
      ),
    cursor: z
      .string()
      .regex(COLUMN_NAME, 'expected a column name')
      .optional()
      .describe(
        'With `mode: incremental`: a column that only grows and is unique, e.g. a serial id or an ' +
          '`updated_at` timestamp. A number column is the position itself; a timestamp, timestamptz or date ' +
          'column is mapped to epoch microseconds.',
      ),
    order_by: z
      .array(z.string().regex(COLUMN_NAME, 'expected a column name'))
      .min(1)
      .optional()
      .describe(
        "With `mode: full`: the columns that order the rows (the table's primary key when not given). " +
          'The position of a row is its index in this order.',
      ),
    fetch_size: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'Rows fetched from the server-side cursor at a time; the batch size of the run when not given. ' +
          'Memory holds about one fetch (per split with `parallelism`).',
      ),
    parallelism: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(1)
      .describe(
        'Splits of `table` read at once, each a contiguous range of `split_by` over its own connection and ' +
          'cursor, all in one snapshot. Each split is its own position partition, ' +
          '`postgres:<schema>.<table>#<column>[<lo>,<hi>]`, whose offset is the last key read in it. Batches ' +
          'of different splits interleave, so rows do not come in key order. See docs/postgres.md.',
      ),
    split_by: z
      .string()
      .regex(COLUMN_NAME, 'expected a column name')
      .optional()
      .describe(
        'The column `parallelism` splits by: integer (smallint, integer, bigint), timestamp, timestamptz or ' +
          'date, NOT NULL, with a unique index of its own. Defaults to the single-column primary key in `full` ' +
          'mode and to `cursor` in `incremental` mode. Setting it with `parallelism: 1` reads one range with ' +
          'key positions.',
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if ((cfg.table === undefined) === (cfg.query === undefined))
      ctx.addIssue({
        code: 'custom',
        path: cfg.table ? ['query'] : ['table'],
        message: 'give either `table` or `query`, not both',
      });
    if (cfg.mode === 'incremental' && cfg.cursor === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['cursor'],
        message: 'mode: incremental needs a `cursor` column',
      });
    if (cfg.mode === 'full' && cfg.cursor !== undefined)
      ctx.addIssue({ code: 'custom', path: ['cursor'], message: '`cursor` is only for mode: incremental' });
    if (cfg.mode === 'incremental' && cfg.order_by !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['order_by'],
        message: 'mode: incremental reads in `cursor` order; `order_by` is only for mode: full',
      });
    if (cfg.parallelism > 1 || cfg.split_by !== undefined) {
      const field = cfg.parallelism > 1 ? 'parallelism' : 'split_by';
      if (cfg.query !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: 'parallel reads split a `table` by key ranges; they do not apply to `query`',
        });
      if (cfg.order_by !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['order_by'],
          message:
            'with splits, each split reads in `split_by` order and splits interleave: remove `order_by`',
        });
      if (
        cfg.mode === 'incremental' &&
        cfg.split_by !== undefined &&
        cfg.cursor !== undefined &&
        columnName(cfg.split_by) !== columnName(cfg.cursor)
      )
        ctx.addIssue({
          code: 'custom',
          path: ['split_by'],
          message:
            'mode: incremental splits by its `cursor` column: leave split_by out or set it to the cursor',
        });
    }
  });

export type PostgresSourceConfig = z.output<typeof postgresSourceConfig>;

export const postgresSource = defineSource({
  name: 'postgres',
  summary: 'Reads a PostgreSQL table or query, in full or incrementally by a cursor column.',
  description: `Reads \`table\` (or the rows of \`query\`) in one REPEATABLE READ snapshot through a server-side cursor, \`fetch_size\` rows at a time, so memory stays flat whatever the table's size.

Positions: partition \`postgres:<schema>.<table>\` (or \`postgres:<hash of the query>\`). In \`full\` mode the offset is the row's index in the order of the primary key (or \`order_by\`); a resumed run skips the rows before it. In \`incremental\` mode the offset is the \`cursor\` value (a timestamp as epoch microseconds) and a resumed run, or the next run given the last checkpoint, reads only rows whose cursor is greater.

With \`parallelism: N\` a table is read in N key ranges of \`split_by\` at once, one connection and cursor each, all in one exported snapshot; each range is its own partition (\`postgres:<schema>.<table>#<column>[<lo>,<hi>]\`) whose offset is the last key read in it.

Types are kept exact: numeric as its decimal text, bigint as a number when it is a safe integer (else text), timestamptz as ISO 8601 text in UTC with microseconds (\`2024-05-01T12:00:00.123456Z\`), timestamp without zone likewise without \`Z\`, date as \`YYYY-MM-DD\`, json and jsonb as objects, arrays as arrays, bytea as base64 text, uuid as text. See docs/postgres.md.`,
  config: postgresSourceConfig,
  examples: [
    {
      title: 'A whole table, in primary-key order',
      yaml: `url: postgres://etl@db.internal:5432/shop
table: public.orders
`,
    },
    {
      title: 'New rows since the last run, by an increasing id',
      yaml: `url: postgres://etl@db.internal:5432/shop
table: sales.events
mode: incremental
cursor: id
fetch_size: 5000
`,
    },
    {
      title: 'A large table in four key ranges read at once, one snapshot',
      yaml: `url: postgres://etl@db.internal:5432/shop
table: public.order_lines
parallelism: 4
split_by: id
fetch_size: 10000
`,
    },
    {
      title: 'A query, in a stable order',
      yaml: `url: postgres://etl@db.internal:5432/shop
query: SELECT id, email, created_at FROM customers WHERE active
order_by: [id]
`,
    },
  ],
  bounded: () => true,
  // The driver loads only when a pipeline reads from PostgreSQL.
  create: async (cfg, ctx) => new (await import('./source.ts')).PostgresSource(cfg, ctx),
});
