import { z } from 'zod';
import { defineSink } from '../../sdk/define.ts';
import { COLUMN_NAME, connectionFields, TABLE_NAME } from './names.ts';

export const postgresSinkConfig = z
  .object({
    ...connectionFields,
    table: z
      .string()
      .regex(TABLE_NAME, 'expected a table name, optionally schema-qualified: `public.orders`')
      .describe('The table to write to, `schema.table` (the schema defaults to `public`).'),
    mode: z
      .enum(['insert', 'upsert'])
      .default('insert')
      .describe(
        '`insert` adds every record as a row; `upsert` inserts or, when a row with the same `key` exists, ' +
          'updates its other columns (INSERT ... ON CONFLICT (key) DO UPDATE).',
      ),
    method: z
      .enum(['insert', 'copy'])
      .default('insert')
      .describe(
        'How rows are sent. `insert`: multi-row INSERT ... VALUES with parameters. `copy`: COPY ... FROM STDIN ' +
          "(text format), several times faster for bulk loads, in the same transaction as the rows' positions; " +
          'with `mode: upsert` the batch is copied into a temporary table and upserted from it. A batch the ' +
          'server refuses is written again row by row with INSERT, so only the bad records are rejected.',
      ),
    key: z
      .array(z.string().regex(COLUMN_NAME, 'expected a column name'))
      .min(1)
      .optional()
      .describe(
        'With `mode: upsert`: the key columns. The table needs a primary key or unique index on exactly ' +
          'them (`create_table` makes them the primary key). Within one batch the last record of a key wins.',
      ),
    create_table: z
      .boolean()
      .default(false)
      .describe(
        'Creates the table when it does not exist, with a column per field of the first batch: integers as bigint, other numbers as double precision, strings as text, booleans as boolean, objects and arrays as jsonb, dates as timestamptz (a field that is null throughout the batch as text).',
      ),
    exactly_once: z
      .boolean()
      .default(true)
      .describe(
        'Keeps, in the same transaction as the rows, the source positions written into the table, in ' +
          '`<schema>.sluice_checkpoints` (one row per pipeline and table); records at or before them are ' +
          'skipped as already written. So a run killed after committing but before its checkpoint was saved ' +
          'does not write those rows twice when it resumes. Set it to false to load the same records again ' +
          '(a rerun from scratch into a truncated table also needs its sluice_checkpoints row deleted).',
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.mode === 'upsert' && !cfg.key)
      ctx.addIssue({
        code: 'custom',
        path: ['key'],
        message: 'mode: upsert needs `key`, the columns that identify a row',
      });
    if (cfg.mode === 'insert' && cfg.key)
      ctx.addIssue({ code: 'custom', path: ['key'], message: '`key` is only for mode: upsert' });
  });

export type PostgresSinkConfig = z.output<typeof postgresSinkConfig>;

export const postgresSink = defineSink({
  name: 'postgres',
  summary: 'Writes records to a PostgreSQL table (insert or upsert), exactly once across a kill.',
  description: `Each record becomes a row of \`table\`: each field goes to the column of the same name (a field the record lacks takes the column default). Rows are written with multi-row \`INSERT ... VALUES\` statements (or, with \`method: copy\`, \`COPY ... FROM STDIN\`) in one transaction per checkpoint, committed at the checkpoint. With \`mode: upsert\` a row whose \`key\` exists is updated instead.

A record with a field that has no column, or a value its column cannot take (text in an integer column, a null in a NOT NULL column), goes to the errors sink as SLUICE_SINK_REJECTED naming the field and the column type; the rest of the batch is written.

With \`exactly_once\` (the default) the transaction also records, in \`<schema>.sluice_checkpoints\`, the last source position per partition the table now holds; records at or before them are skipped. A run killed at any point and resumed therefore leaves each record in the table once. See docs/postgres.md for the precise guarantee.`,
  config: postgresSinkConfig,
  examples: [
    {
      title: 'Append rows to an existing table',
      yaml: `url: postgres://etl@db.internal:5432/shop
table: analytics.page_views
`,
    },
    {
      title: 'Bulk load with COPY',
      yaml: `url: postgres://etl@db.internal:5432/warehouse
table: staging.events
method: copy
`,
    },
    {
      title: 'Upsert customers by id, creating the table on the first run',
      yaml: `url: postgres://etl@db.internal:5432/crm
table: customers
mode: upsert
key: [id]
create_table: true
`,
    },
  ],
  // The driver loads only when a pipeline writes to PostgreSQL.
  create: async (cfg, ctx) => new (await import('./sink.ts')).PostgresSink(cfg, ctx),
});
