import { createHash } from 'node:crypto';
import type pg from 'pg';
import { SluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
  SourceProgress,
} from '../../sdk/types.ts';
import {
  columnName,
  connect,
  ident,
  isConnectionError,
  pgError,
  qualified,
  safeUrl,
  splitTable,
} from './common.ts';
import type { PostgresSourceConfig } from './source-definition.ts';
import { planSplits, type SplitWork } from './splits.ts';

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

/** How a split key maps to key numbers and back in SQL. */
type KeyKind = 'int' | 'timestamptz' | 'timestamp' | 'date';
const KEY_KINDS = new Map<number, KeyKind>([
  [21, 'int'],
  [23, 'int'],
  [20, 'int'],
  [1184, 'timestamptz'],
  [1114, 'timestamp'],
  [1082, 'date'],
]);
const DAY_US = 86_400_000_000n;

/** The key number of a key expression (an integer as it is, a time as epoch microseconds). */
function keyNumber(expr: string, kind: KeyKind): string {
  return kind === 'int' ? expr : `(extract(epoch FROM ${expr}) * 1000000)::bigint`;
}

/** Floor and ceiling division of key numbers by a day, for date bounds. */
const floorDiv = (n: bigint, d: bigint) => (n >= 0n || n % d === 0n ? n / d : n / d - 1n);
const ceilDiv = (n: bigint, d: bigint) => -floorDiv(-n, d);

/**
 * `expr op <key number>` in the key's own type, so the key's index serves the range. A date key
 * compares by whole days, rounded so that a date is in a range exactly when its key number is.
 */
function keyCompare(
  expr: string,
  kind: KeyKind,
  op: '>=' | '<=' | '>',
  n: bigint,
  params: unknown[],
): string {
  if (kind === 'date') {
    const days = op === '>=' ? ceilDiv(n, DAY_US) : floorDiv(n, DAY_US);
    params.push(days.toString());
    return `${expr} ${op} ('epoch'::date + $${params.length}::int)`;
  }
  params.push(n.toString());
  const p = `$${params.length}::bigint`;
  if (kind === 'int') return `${expr} ${op} ${p}`;
  return `${expr} ${op} ('epoch'::${kind} + ${p} * interval '1 microsecond')`;
}

/** The WHERE of a split: its range, and after its resumed offset. */
function splitWhere(expr: string, kind: KeyKind, split: SplitWork, params: unknown[]): string {
  const conds: string[] = [];
  if (split.lo !== null) conds.push(keyCompare(expr, kind, '>=', split.lo, params));
  if (split.hi !== null) conds.push(keyCompare(expr, kind, '<=', split.hi, params));
  if (split.after !== undefined) conds.push(keyCompare(expr, kind, '>', split.after, params));
  return conds.length ? conds.join(' AND ') : 'true';
}

/** Batches that reader tasks put and the generator takes, at most `capacity` waiting. */
class BatchQueue {
  readonly #items: SourceBatch[] = [];
  readonly #capacity: number;
  #wake: (() => void) | undefined;
  #space: (() => void)[] = [];
  #ended = false;
  error: unknown;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  async put(batch: SourceBatch): Promise<void> {
    while (this.#items.length >= this.#capacity && !this.#ended)
      await new Promise<void>((resolve) => this.#space.push(resolve));
    if (this.#ended) return;
    this.#items.push(batch);
    this.#poke();
  }

  /** The next batch, or undefined once `end()` was called and nothing is left. */
  async take(): Promise<SourceBatch | undefined> {
    for (;;) {
      const item = this.#items.shift();
      if (item) {
        this.#space.shift()?.();
        return item;
      }
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** No more batches (`error` set when a reader failed): waiting readers and the taker go on. */
  end(error?: unknown): void {
    if (error !== undefined && this.error === undefined) this.error = error;
    this.#ended = true;
    if (error !== undefined) this.#items.length = 0;
    for (const resolve of this.#space.splice(0)) resolve();
    this.#poke();
  }

  get ended(): boolean {
    return this.#ended;
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

export class PostgresSource implements SourceInstance {
  readonly #cfg: PostgresSourceConfig;
  readonly #ctx: ComponentContext;
  readonly #partition: string;
  readonly #clients: pg.Client[] = [];
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
    if (this.#cfg.parallelism > 1 || this.#cfg.split_by !== undefined) yield* this.#readSplits();
    else yield* this.#readOne();
  }

  async #connect(): Promise<pg.Client> {
    const client = await connect(this.#cfg.url, this.#ctx.logger, 'SLUICE_SOURCE_IO', this.#ctx.signal);
    this.#clients.push(client);
    if (this.#closing) await client.end().catch(() => {});
    return client;
  }

  #fail(err: unknown, step: string): SluiceError {
    const error = pgError(err, 'SLUICE_SOURCE_IO', step, { source: this.#partition });
    if (error.retriable)
      this.#ctx.logger.warn(`postgres: ${error.message}; a resumed run carries on from its last checkpoint`);
    return error;
  }

  async *#readOne(): AsyncGenerator<SourceBatch> {
    const { signal } = this.#ctx;
    const cfg = this.#cfg;
    const what = cfg.table ?? 'the query';
    const client = await this.#connect();
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
      for await (const records of this.#fetches(client, CURSOR_NAME, fetch, this.#partition)) {
        if (signal.aborted || this.#closing) return;
        // A fetch larger than the batch size is yielded in batches of it.
        for (let i = 0; i < records.length; i += batchSize) {
          if (signal.aborted || this.#closing) return;
          yield { records: records.slice(i, i + batchSize) };
        }
      }
      await client.query('COMMIT');
    } catch (err) {
      if (this.#closing || signal.aborted) return;
      throw this.#fail(err, step);
    }
  }

  /**
   * Parallel read: the key's min and max in one snapshot, split into ranges, each read by one of
   * `parallelism` connections through its own cursor, all importing that snapshot.
   */
  async *#readSplits(): AsyncGenerator<SourceBatch> {
    const { signal, logger, batchSize } = this.#ctx;
    const cfg = this.#cfg;
    const table = cfg.table!;
    const target = qualified(table);
    const what = `table ${table}`;
    const first = await this.#connect();
    let step = `cannot plan the splits of ${what} on ${safeUrl(cfg.url)}`;
    let queue: BatchQueue | undefined;
    const readers: Promise<void>[] = [];
    try {
      await first.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      let snapshot: string | undefined;
      try {
        // Not under a savepoint: PostgreSQL exports no snapshot from a subtransaction.
        snapshot = (await first.query('SELECT pg_export_snapshot() AS s')).rows[0]?.s as string;
      } catch (err) {
        if (isConnectionError(err)) throw err;
        await first.query('ROLLBACK');
        await first.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        logger.warn(
          `postgres: cannot export a snapshot for the splits of ${table} (${err instanceof Error ? err.message : String(err)}); ` +
            'each split reads its own snapshot, so rows changed during the read may be seen by one split and not another',
        );
      }
      const { column, kind } = await this.#splitKey(first);
      const key = ident(column);
      const bounds = await first.query(
        `SELECT (${keyNumber('m.lo', kind)})::text AS lo, (${keyNumber('m.hi', kind)})::text AS hi
           FROM (SELECT min(${key}) AS lo, max(${key}) AS hi FROM ${target}) m`,
      );
      const b = bounds.rows[0] as { lo: string | null; hi: string | null };
      const splits = planSplits({
        base: this.#partition,
        column,
        parallelism: cfg.parallelism,
        min: b.lo === null ? null : BigInt(b.lo),
        max: b.hi === null ? null : BigInt(b.hi),
        resume: this.#ctx.resume,
      });
      step = `cannot count the rows of ${what}`;
      const countParams: unknown[] = [];
      const anySplit = splits.map((s) => `(${splitWhere(key, kind, s, countParams)})`).join(' OR ');
      this.#recordsTotal = splits.length
        ? Number(
            (
              (
                await first.query(
                  `SELECT count(*)::bigint AS n FROM ${target} WHERE ${anySplit}`,
                  countParams,
                )
              ).rows[0] as { n: unknown }
            ).n,
          )
        : 0;
      logger.debug(`postgres: reading ${what} in ${splits.length} split(s)`, {
        splits: splits.map((s) => s.partition),
        snapshot: snapshot ?? null,
      });
      if (!splits.length) {
        await first.query('COMMIT');
        return;
      }
      step = `cannot read ${what}`;
      const fetch = Math.max(1, cfg.fetch_size ?? batchSize);
      const readerCount = Math.min(cfg.parallelism, splits.length);
      const q = new BatchQueue(2 * readerCount);
      queue = q;
      const pending = [...splits];
      let next = 0;
      const readSplit = async (client: pg.Client, split: SplitWork): Promise<void> => {
        const params: unknown[] = [];
        const cursor = `sluice_split_${next++}`;
        await client.query(
          `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT t.*, ${keyNumber(`t.${key}`, kind)} AS ${OFFSET_COLUMN}
             FROM ${target} t WHERE ${splitWhere(`t.${key}`, kind, split, params)} ORDER BY t.${key}`,
          params,
        );
        for await (const records of this.#fetches(client, cursor, fetch, split.partition)) {
          if (q.ended || signal.aborted || this.#closing) return;
          for (let i = 0; i < records.length; i += batchSize)
            await q.put({ records: records.slice(i, i + batchSize) });
        }
        await client.query(`CLOSE ${cursor}`);
      };
      // The exported snapshot lives as long as the first transaction: it commits only once every
      // other reader has imported it (or failed to).
      const imports: Promise<void>[] = [];
      const reader = async (index: number, imported?: () => void): Promise<void> => {
        let client = first;
        if (index > 0) {
          try {
            client = await this.#connect();
            await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
            if (snapshot !== undefined) await client.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
          } finally {
            imported?.();
          }
        }
        for (let split = pending.shift(); split; split = pending.shift()) {
          if (q.ended) return;
          await readSplit(client, split);
        }
        if (index === 0) await Promise.all(imports);
        await client.query('COMMIT');
      };
      for (let i = 1; i < readerCount; i++) {
        let imported!: () => void;
        imports.push(new Promise<void>((resolve) => (imported = resolve)));
        readers.push(reader(i, imported));
      }
      readers.unshift(reader(0));
      // The queue ends when every reader is done, or at once with the first error.
      Promise.all(readers).then(
        () => q.end(),
        (err: unknown) => q.end(err),
      );
      for (;;) {
        const batch = await q.take();
        if (q.error !== undefined) throw q.error;
        if (!batch || signal.aborted || this.#closing) return;
        yield batch;
      }
    } catch (err) {
      if (this.#closing || signal.aborted) return;
      throw this.#fail(err, step);
    } finally {
      // Stopped early (the consumer returned or a reader failed): readers stop at their next batch.
      queue?.end();
      await Promise.allSettled(readers);
    }
  }

  /**
   * The split column and how its values map to key numbers. It must be an integer or time column,
   * NOT NULL (a null key is in no range) and unique on its own (positions are keys).
   */
  async #splitKey(client: pg.Client): Promise<{ column: string; kind: KeyKind }> {
    const cfg = this.#cfg;
    const table = cfg.table!;
    const given = cfg.split_by ?? cfg.cursor;
    let column: string;
    if (given !== undefined) column = columnName(given);
    else {
      const pk = await this.#primaryKey(client, false);
      if (pk.length !== 1)
        throw new SluiceError(
          'SLUICE_SOURCE_IO',
          `table ${table} has ${pk.length ? 'a primary key of several columns' : 'no primary key'}: set split_by to a ` +
            'unique NOT NULL integer or timestamp column to read it in splits',
          { retriable: false, details: { table } },
        );
      column = pk[0]!;
    }
    const info = await client.query(
      `SELECT a.atttypid::int AS type, a.attnotnull AS notnull,
              EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
                        AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL) AS unique
         FROM pg_attribute a
        WHERE a.attrelid = $1::regclass AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`,
      [qualified(table), column],
    );
    const row = info.rows[0] as { type: number; notnull: boolean; unique: boolean } | undefined;
    const problem = (why: string) =>
      new SluiceError('SLUICE_SOURCE_IO', `split_by column ${column} of ${table} ${why}`, {
        retriable: false,
        details: { table, split_by: column },
      });
    if (!row) throw problem('does not exist');
    const kind = KEY_KINDS.get(row.type);
    if (!kind)
      throw problem(
        `must be smallint, integer, bigint, timestamp, timestamptz or date (its type OID is ${row.type})`,
      );
    if (!row.unique)
      throw problem(
        'needs a unique index (or primary key) of its own: positions are keys, and each split reads a key range',
      );
    if (!row.notnull)
      throw problem('must be NOT NULL: a row with a null key is in no split and would not be read');
    return { column, kind };
  }

  /** The SELECT with its position column, in position order, after the resumed position. */
  async #plan(client: pg.Client): Promise<{ sql: string; params: unknown[] }> {
    const cfg = this.#cfg;
    const base =
      cfg.table !== undefined ? `SELECT * FROM ${qualified(cfg.table)}` : cfg.query!.replace(/;\s*$/, '');
    const resumed = this.#ctx.resume?.[this.#partition];
    const split = Object.keys(this.#ctx.resume ?? {}).find((p) => p.startsWith(`${this.#partition}#`));
    if (split !== undefined)
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `the checkpoint holds a position of split ${split}, written by a read in splits: resume with the same split_by ` +
          '(and any parallelism), or run from scratch',
        { retriable: false, details: { partition: split } },
      );
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

  /** The primary key's columns, quoted (or as stored, with `quoted` false). */
  async #primaryKey(client: pg.Client, quoted = true): Promise<string[]> {
    const result = await client.query(
      `SELECT a.attname AS name
         FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1::regclass AND i.indisprimary
        ORDER BY array_position(i.indkey, a.attnum)`,
      [qualified(this.#cfg.table!)],
    );
    return result.rows.map((r) =>
      quoted ? ident((r as { name: string }).name) : (r as { name: string }).name,
    );
  }

  /**
   * The cursor's rows as records, a fetch at a time. The next FETCH is sent before the current one
   * is converted, so the server and the network work while this process converts. Rows come as
   * arrays and are built into objects without the position column: deleting a property would
   * turn every record into a slow dictionary-mode object.
   */
  async *#fetches(
    client: pg.Client,
    cursor: string,
    fetch: number,
    partition: string,
  ): AsyncGenerator<SluiceRecord[]> {
    const query = () => {
      const p = client.query({ text: `FETCH ${fetch} FROM ${cursor}`, rowMode: 'array' });
      // A prefetch still in flight when the read stops must not become an unhandled rejection.
      p.catch(() => {});
      return p;
    };
    for (let next = query(); ; ) {
      const result = await next;
      if (!result.rows.length) return;
      if (result.rows.length === fetch) next = query();
      yield this.#records(result, partition);
      if (result.rows.length < fetch) return;
    }
  }

  #records(result: pg.QueryResult, partition: string): SluiceRecord[] {
    const names = result.fields.map((f) => f.name);
    const at = names.lastIndexOf(OFFSET_COLUMN);
    const records: SluiceRecord[] = [];
    for (const cells of result.rows as unknown[][]) {
      const value: Record<string, unknown> = {};
      for (let i = 0; i < names.length; i++) if (i !== at) value[names[i]!] = cells[i];
      const raw = cells[at];
      const offset = Number(raw);
      if (
        !Number.isFinite(offset) ||
        (typeof raw === 'string' && /^-?\d+$/.test(raw) && !Number.isSafeInteger(offset))
      )
        throw new SluiceError(
          'SLUICE_SOURCE_IO',
          `cursor value ${String(raw)} is not a number that a position can hold exactly (at most 2^53)`,
          {
            retriable: false,
            details: { cursor: this.#cfg.cursor ?? this.#cfg.split_by, value: String(raw) },
          },
        );
      records.push({ value, meta: { position: { partition, offset } } });
    }
    return records;
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all(this.#clients.map((c) => c.end().catch(() => {})));
    })();
    return this.#closing;
  }
}

export { type PostgresSourceConfig, postgresSource, postgresSourceConfig } from './source-definition.ts';
