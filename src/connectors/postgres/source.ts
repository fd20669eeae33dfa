import { createHash } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { defineSource } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
  SourceProgress,
} from '../../sdk/types.ts';
import {
  COLUMN_NAME,
  columnName,
  connect,
  connectionFields,
  ident,
  pgError,
  qualified,
  safeUrl,
  splitTable,
  TABLE_NAME,
} from './common.ts';

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
          'Memory holds about one fetch.',
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
  });

export type PostgresSourceConfig = z.output<typeof postgresSourceConfig>;

/** The partition of every position: `postgres:<table>`, or `postgres:<first 12 hex of the query's sha256>`. */
export function sourcePartition(cfg: Pick<PostgresSourceConfig, 'table' | 'query'>): string {
  if (cfg.table !== undefined) {
    const { schema, name } = splitTable(cfg.table);
    return `postgres:${schema}.${name}`;
  }
  return `postgres:${createHash('sha256')
    .update(cfg.query ?? '')
    .digest('hex')
    .slice(0, 12)}`;
}

/** The column the source adds for a row's position, removed before the record is yielded. */
const OFFSET_COLUMN = '__sluice_offset';
const CURSOR_NAME = 'sluice_read';

/** Type OIDs of cursor columns mapped to epoch microseconds. */
const TIME_TYPES = new Set([1114, 1184, 1082]);
/** int2, int4, int8, float4, float8, numeric, oid. */
const NUMBER_TYPES = new Set([21, 23, 20, 700, 701, 1700, 26]);

export class PostgresSource implements SourceInstance {
  readonly #cfg: PostgresSourceConfig;
  readonly #ctx: ComponentContext;
  readonly #partition: string;
  #client: pg.Client | undefined;
  #recordsTotal: number | undefined;
  #started = false;
  #closing: Promise<void> | undefined;

  constructor(cfg: PostgresSourceConfig, ctx: ComponentContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#partition = sourcePartition(cfg);
  }

  progress(): SourceProgress {
    return this.#recordsTotal === undefined ? {} : { recordsTotal: this.#recordsTotal };
  }

  async *read(): AsyncGenerator<SourceBatch> {
    if (this.#started)
      throw new SluiceError('SLUICE_SOURCE_IO', 'a postgres source can be read only once', {
        retriable: false,
      });
    this.#started = true;
    const { signal, logger } = this.#ctx;
    const cfg = this.#cfg;
    const what = cfg.table ?? 'the query';
    const client = await connect(cfg.url, logger, 'SLUICE_SOURCE_IO', signal);
    this.#client = client;
    let step = `cannot read ${what} from ${safeUrl(cfg.url)}`;
    try {
      // One snapshot for the whole read: the count and the rows agree, and a full read is consistent.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { sql, params } = await this.#plan(client);
      step = `cannot count the rows of ${what}`;
      const count = await client.query(`SELECT count(*)::bigint AS n FROM (${sql}) q`, params);
      this.#recordsTotal = Number((count.rows[0] as { n: unknown }).n);
      step = `cannot read ${what}`;
      await client.query(`DECLARE ${CURSOR_NAME} NO SCROLL CURSOR FOR ${sql}`, params);
      const { batchSize } = this.#ctx;
      const fetch = Math.max(1, cfg.fetch_size ?? batchSize);
      for (;;) {
        if (signal.aborted || this.#closing) return;
        const result = await client.query(`FETCH ${fetch} FROM ${CURSOR_NAME}`);
        if (!result.rows.length) break;
        const records = this.#records(result.rows as Record<string, unknown>[]);
        // A fetch larger than the batch size is yielded in batches of it.
        for (let i = 0; i < records.length; i += batchSize) {
          if (signal.aborted || this.#closing) return;
          yield { records: records.slice(i, i + batchSize) };
        }
      }
      await client.query('COMMIT');
    } catch (err) {
      if (this.#closing || signal.aborted) return;
      const error = pgError(err, 'SLUICE_SOURCE_IO', step, { source: this.#partition });
      if (error.retriable)
        logger.warn(`postgres: ${error.message}; a resumed run carries on from its last checkpoint`);
      throw error;
    }
  }

  /** The SELECT with its position column, in position order, after the resumed position. */
  async #plan(client: pg.Client): Promise<{ sql: string; params: unknown[] }> {
    const cfg = this.#cfg;
    const base =
      cfg.table !== undefined ? `SELECT * FROM ${qualified(cfg.table)}` : cfg.query!.replace(/;\s*$/, '');
    const resumed = this.#ctx.resume?.[this.#partition];
    if (cfg.mode === 'incremental') {
      const cursor = ident(columnName(cfg.cursor!));
      const probe = await client.query(`SELECT ${cursor} FROM (${base}) q LIMIT 0`);
      const type = probe.fields[0]?.dataTypeID ?? 0;
      let offset: string;
      let after: string;
      if (TIME_TYPES.has(type)) {
        offset = `(extract(epoch FROM q.${cursor}) * 1000000)::bigint`;
        after =
          type === 1184
            ? `q.${cursor} > ('epoch'::timestamptz + $1::bigint * interval '1 microsecond')`
            : type === 1114
              ? `q.${cursor} > ('epoch'::timestamp + $1::bigint * interval '1 microsecond')`
              : `q.${cursor} > ('epoch'::date + ($1::bigint / 86400000000)::int)`;
      } else if (NUMBER_TYPES.has(type)) {
        offset = `q.${cursor}::text`;
        after = `q.${cursor} > $1::numeric`;
      } else {
        throw new SluiceError(
          'SLUICE_SOURCE_IO',
          `cursor column ${cfg.cursor} must be a number, timestamp, timestamptz or date column (its type OID is ${type})`,
          { retriable: false, details: { cursor: cfg.cursor, type_oid: type } },
        );
      }
      const where = resumed === undefined ? '' : ` WHERE ${after}`;
      return {
        sql: `SELECT q.*, ${offset} AS ${OFFSET_COLUMN} FROM (${base}) q${where} ORDER BY q.${cursor}`,
        params: resumed === undefined ? [] : [String(resumed)],
      };
    }
    const order =
      cfg.order_by?.map((c) => ident(columnName(c))) ?? (cfg.table ? await this.#primaryKey(client) : []);
    if (cfg.table !== undefined && !order.length)
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `table ${cfg.table} has no primary key: set order_by to columns that order its rows the same way on every run`,
        { retriable: false, details: { table: cfg.table } },
      );
    // Window numbering over the order; a query without order_by keeps its own ORDER BY.
    const over = order.length ? `ORDER BY ${order.map((c) => `q.${c}`).join(', ')}` : '';
    const skip = resumed === undefined ? '' : ` OFFSET ${Math.max(0, Math.floor(resumed) + 1)}`;
    return {
      sql: `SELECT q.*, (row_number() OVER (${over}) - 1) AS ${OFFSET_COLUMN} FROM (${base}) q ${over}${skip}`,
      params: [],
    };
  }

  async #primaryKey(client: pg.Client): Promise<string[]> {
    const result = await client.query(
      `SELECT a.attname AS name
         FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1::regclass AND i.indisprimary
        ORDER BY array_position(i.indkey, a.attnum)`,
      [qualified(this.#cfg.table!)],
    );
    return result.rows.map((r) => ident((r as { name: string }).name));
  }

  #records(rows: Record<string, unknown>[]): SluiceRecord[] {
    const records: SluiceRecord[] = [];
    for (const row of rows) {
      const raw = row[OFFSET_COLUMN];
      delete row[OFFSET_COLUMN];
      const offset = Number(raw);
      if (
        !Number.isFinite(offset) ||
        (typeof raw === 'string' && /^-?\d+$/.test(raw) && !Number.isSafeInteger(offset))
      )
        throw new SluiceError(
          'SLUICE_SOURCE_IO',
          `cursor value ${String(raw)} is not a number that a position can hold exactly (at most 2^53)`,
          { retriable: false, details: { cursor: this.#cfg.cursor, value: String(raw) } },
        );
      records.push({ value: row, meta: { position: { partition: this.#partition, offset } } });
    }
    return records;
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#client?.end().catch(() => {});
    })();
    return this.#closing;
  }
}

export const postgresSource = defineSource({
  name: 'postgres',
  summary: 'Reads a PostgreSQL table or query, in full or incrementally by a cursor column.',
  description: `Reads \`table\` (or the rows of \`query\`) in one REPEATABLE READ snapshot through a server-side cursor, \`fetch_size\` rows at a time, so memory stays flat whatever the table's size.

Positions: partition \`postgres:<schema>.<table>\` (or \`postgres:<hash of the query>\`). In \`full\` mode the offset is the row's index in the order of the primary key (or \`order_by\`); a resumed run skips the rows before it. In \`incremental\` mode the offset is the \`cursor\` value (a timestamp as epoch microseconds) and a resumed run, or the next run given the last checkpoint, reads only rows whose cursor is greater.

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
      title: 'A query, in a stable order',
      yaml: `url: postgres://etl@db.internal:5432/shop
query: SELECT id, email, created_at FROM customers WHERE active
order_by: [id]
`,
    },
  ],
  bounded: () => true,
  create: (cfg, ctx) => new PostgresSource(cfg, ctx),
});
