import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { stringifyJsonExact } from '../../formats/json-numbers.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  Rejection,
  SinkInstance,
  SinkWriteResult,
  SluiceRecord,
} from '../../sdk/types.ts';
import {
  columnName,
  connect,
  ident,
  isConnectionError,
  isDataError,
  pgError,
  safeUrl,
  splitTable,
} from './common.ts';
import type { PostgresSinkConfig } from './sink-definition.ts';

interface Column {
  /** format_type(): `integer`, `numeric(10,2)`, `jsonb`, `text[]`. */
  type: string;
  json: boolean;
  bytea: boolean;
  /** bytea[]: its string elements are base64 too. */
  byteaArray: boolean;
}

/** Parameters per INSERT statement, well under PostgreSQL's 65535. */
const MAX_PARAMS = 30_000;
const CHECKPOINTS = 'sluice_checkpoints';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The column type `create_table` gives a field, from its values in the first batch. */
export function inferType(values: unknown[]): string {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (!present.length) return 'text';
  if (present.every((v) => typeof v === 'boolean')) return 'boolean';
  if (present.every((v) => typeof v === 'number' || typeof v === 'bigint')) {
    if (!present.every((v) => typeof v === 'bigint' || Number.isInteger(v))) return 'double precision';
    // An integer beyond 64 bits (from JSON Lines) is kept exact in numeric.
    return present.some((v) => typeof v === 'bigint' && (v < INT64_MIN || v > INT64_MAX))
      ? 'numeric'
      : 'bigint';
  }
  if (present.every((v) => v instanceof Date)) return 'timestamptz';
  if (present.every((v) => typeof v === 'object' && !(v instanceof Date) && !(v instanceof Uint8Array)))
    return 'jsonb';
  // Strings, or a mix that no one type holds: text takes them all.
  return 'text';
}

/** A record value as the parameter for its column. */
function encode(value: unknown, column: Column): unknown {
  if (value === null || value === undefined) return null;
  if (column.json) return stringifyJsonExact(value);
  if (column.bytea && typeof value === 'string') return Buffer.from(value, 'base64');
  if (column.byteaArray && Array.isArray(value)) return base64Elements(value);
  if (typeof value === 'bigint') return value.toString();
  if (
    typeof value === 'object' &&
    !Array.isArray(value) &&
    !(value instanceof Date) &&
    !(value instanceof Uint8Array)
  )
    return stringifyJsonExact(value);
  return value;
}

/** Base64 strings of a (nested) bytea[] value as bytes, the source's form read back. */
function base64Elements(value: unknown[]): unknown[] {
  return value.map((v) =>
    typeof v === 'string' ? Buffer.from(v, 'base64') : Array.isArray(v) ? base64Elements(v) : v,
  );
}

/** pg's own conversion of a parameter to its text form (arrays as array literals, dates with offset). */
const prepareValue = (pg as unknown as { utils: { prepareValue(v: unknown): unknown } }).utils.prepareValue;

/** COPY text format: a backslash, newline, carriage return or tab inside a value is escaped. */
const COPY_SPECIAL = /[\\\n\r\t]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** An encoded value (what the INSERT path would send as a parameter) as one COPY text field. */
export function copyField(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  let text: string;
  if (value instanceof Uint8Array)
    text = `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  else {
    const prepared = prepareValue(value);
    text = prepared instanceof Uint8Array ? `\\x${Buffer.from(prepared).toString('hex')}` : String(prepared);
  }
  return text.replace(COPY_SPECIAL, (c) => COPY_ESCAPES[c]!);
}

/** COPY data arrives in pieces of about this many characters. */
const COPY_PIECE = 256 * 1024;
const STAGE = 'sluice_stage';

interface Row {
  record: SluiceRecord;
  values: Map<string, unknown>;
}

export class PostgresSink implements SinkInstance {
  readonly #cfg: PostgresSinkConfig;
  readonly #ctx: ComponentContext;
  readonly #schema: string;
  readonly #name: string;
  readonly #target: string;
  readonly #sinkId: string;
  #client: pg.Client | undefined;
  #columns: Map<string, Column> | undefined;
  /** Positions the table already holds (committed by this or an earlier run of the pipeline). */
  #committed = new Map<string, number>();
  /** Positions written in the open transaction. */
  #pending = new Map<string, number>();
  /** Positions of the records rejected in the open transaction, as `[partition, offset]`. */
  #pendingRejected: [string, number][] = [];
  /**
   * Records the last commit rejected (`partition\noffset`): at or before the held positions, yet
   * not in the table. A resumed run rejects them again, so their error records are not lost.
   */
  #redo = new Set<string>();
  #inTx = false;
  #txRows = 0;
  #skipped = 0;
  #done: Promise<void> | undefined;

  constructor(cfg: PostgresSinkConfig, ctx: ComponentContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    const { schema, name } = splitTable(cfg.table);
    this.#schema = schema;
    this.#name = name;
    this.#target = `${ident(schema)}.${ident(name)}`;
    this.#sinkId = `${schema}.${name}`;
  }

  async write(batch: SluiceRecord[]): Promise<SinkWriteResult | undefined> {
    if (this.#done)
      throw new SluiceError('SLUICE_SINK_IO', 'the postgres sink is closed', { retriable: false });
    if (!batch.length) return undefined;
    await this.#setup(batch);
    const columns = this.#columns!;
    const rejected: Rejection[] = [];
    let rows: Row[] = [];
    for (const record of batch) {
      const pos = record.meta.position;
      if (this.#cfg.exactly_once && pos) {
        const held = this.#committed.get(pos.partition);
        if (held !== undefined && pos.offset <= held && !this.#redo.has(`${pos.partition}\n${pos.offset}`)) {
          this.#skipped++;
          continue;
        }
      }
      const values = new Map<string, unknown>();
      let problem: SluiceError | undefined;
      for (const [field, value] of Object.entries(record.value)) {
        if (value === undefined) continue;
        const column = columns.get(field);
        if (!column) {
          problem = new SluiceError(
            'SLUICE_SINK_REJECTED',
            `field "${field}" has no column in table ${this.#sinkId}`,
            { details: { field, table: this.#sinkId } },
          );
          break;
        }
        values.set(field, encode(value, column));
      }
      if (problem) rejected.push({ record, error: problem });
      else rows.push({ record, values });
    }
    if (this.#cfg.mode === 'upsert') rows = this.#lastPerKey(rows, rejected);
    if (rows.length) await this.#insertBatch(rows, rejected);
    for (const { record } of rows) this.#track(record);
    for (const { record } of rejected) {
      const pos = record?.meta.position;
      if (pos) this.#pendingRejected.push([pos.partition, pos.offset]);
    }
    return rejected.length ? { rejected } : undefined;
  }

  /** With upsert, one row per key (the last): ON CONFLICT cannot touch a row twice in one statement. */
  #lastPerKey(rows: Row[], rejected: Rejection[]): Row[] {
    const keys = (this.#cfg.key ?? []).map(columnName);
    const byKey = new Map<string, Row>();
    for (const row of rows) {
      const missing = keys.find((k) => row.values.get(k) === null || row.values.get(k) === undefined);
      if (missing !== undefined) {
        rejected.push({
          record: row.record,
          error: new SluiceError('SLUICE_SINK_REJECTED', `key field "${missing}" is missing or null`, {
            details: { field: missing, table: this.#sinkId },
          }),
        });
        continue;
      }
      const id = JSON.stringify(keys.map((k) => row.values.get(k)));
      byKey.delete(id);
      byKey.set(id, row);
    }
    const kept = new Set(byKey.values());
    // The rows a later one of the same key replaced still count as written: their positions are tracked.
    for (const row of rows)
      if (!kept.has(row) && !rejected.some((r) => r.record === row.record)) this.#track(row.record);
    return [...kept];
  }

  #track(record: SluiceRecord): void {
    const pos = record.meta.position;
    if (!pos) return;
    const prev = this.#pending.get(pos.partition);
    if (prev === undefined || pos.offset > prev) this.#pending.set(pos.partition, pos.offset);
  }

  /** Writes the rows in the open transaction; a row the server refuses becomes a rejection. */
  async #insertBatch(rows: Row[], rejected: Rejection[]): Promise<void> {
    const client = this.#client!;
    const hadRows = this.#txRows > 0;
    try {
      if (!this.#inTx) {
        await client.query('BEGIN');
        this.#inTx = true;
      }
      await client.query('SAVEPOINT sluice_batch');
      try {
        for (const group of this.#groups(rows))
          if (this.#cfg.method === 'copy' && group[0]?.values.size) await this.#copy(group);
          else for (const chunk of this.#chunks(group)) await this.#insert(chunk);
        await client.query('RELEASE SAVEPOINT sluice_batch');
      } catch (err) {
        if (!isDataError(err)) throw err;
        if (this.#cfg.method === 'copy')
          this.#ctx.logger.debug(
            `postgres: ${this.#sinkId} refused a COPY of ${rows.length} row(s) (${err instanceof Error ? err.message : String(err)}); writing them row by row`,
          );
        // Some row is bad: find which, one row at a time, and write the others.
        await client.query('ROLLBACK TO SAVEPOINT sluice_batch');
        for (const row of rows) {
          await client.query('SAVEPOINT sluice_row');
          try {
            await this.#insert([row]);
            await client.query('RELEASE SAVEPOINT sluice_row');
          } catch (rowErr) {
            if (!isDataError(rowErr)) throw rowErr;
            await client.query('ROLLBACK TO SAVEPOINT sluice_row');
            rejected.push({ record: row.record, error: await this.#blame(row, rowErr) });
          }
        }
        const bad = new Set(rejected.map((r) => r.record));
        rows.splice(0, rows.length, ...rows.filter((r) => !bad.has(r.record)));
      }
      this.#txRows += rows.length;
    } catch (err) {
      throw this.#ioError(err, `cannot write to ${this.#sinkId}`, hadRows);
    }
  }

  /**
   * A write error as SLUICE_SINK_IO. A lost connection is retriable only while the transaction held
   * nothing from earlier batches: a retry of this batch alone could not bring those back, so the run
   * fails instead and resumes from its last checkpoint.
   */
  #ioError(err: unknown, what: string, hadRows: boolean): SluiceError {
    const connection = isConnectionError(err);
    if (connection) {
      this.#dropClient();
      const retriable = !hadRows;
      this.#ctx.logger.warn(
        `postgres: ${what}: the connection to ${safeUrl(this.#cfg.url)} was lost (${err instanceof Error ? err.message : String(err)}); ` +
          (retriable
            ? 'the batch is retried on a new connection'
            : 'rows written since the last checkpoint are rolled back: the run fails and resumes from its checkpoint'),
      );
      return pgError(
        err,
        retriable ? 'SLUICE_SINK_IO' : 'SLUICE_SINK_ROLLED_BACK',
        what,
        { table: this.#sinkId },
        true,
      );
    }
    return pgError(err, 'SLUICE_SINK_IO', what, { table: this.#sinkId }, false);
  }

  #dropClient(): void {
    const client = this.#client;
    this.#client = undefined;
    this.#inTx = false;
    this.#txRows = 0;
    this.#pending.clear();
    this.#pendingRejected = [];
    client?.end().catch(() => {});
  }

  /**
   * Upsert rows grouped by the fields they have: in one statement a row without a field would set
   * that column of an existing row to its default (EXCLUDED holds the default), not leave it.
   */
  #groups(rows: Row[]): Row[][] {
    // COPY names one column list for all its rows, so it needs the grouping too.
    if (this.#cfg.mode !== 'upsert' && this.#cfg.method !== 'copy') return [rows];
    const groups = new Map<string, Row[]>();
    for (const row of rows) {
      const id = JSON.stringify([...row.values.keys()].sort());
      const group = groups.get(id);
      if (group) group.push(row);
      else groups.set(id, [row]);
    }
    return [...groups.values()];
  }

  *#chunks(rows: Row[]): Generator<Row[]> {
    const width = Math.max(1, this.#columns!.size);
    const per = Math.max(1, Math.floor(MAX_PARAMS / width));
    for (let i = 0; i < rows.length; i += per) yield rows.slice(i, i + per);
  }

  async #insert(rows: Row[]): Promise<void> {
    const fields = [...new Set(rows.flatMap((r) => [...r.values.keys()]))];
    if (!fields.length) {
      for (let i = 0; i < rows.length; i++)
        await this.#client!.query(`INSERT INTO ${this.#target} DEFAULT VALUES`);
      return;
    }
    const params: unknown[] = [];
    const tuples = rows.map((row) => {
      const cells = fields.map((f) => {
        // An absent field takes the column's default; an explicit null is NULL.
        if (!row.values.has(f)) return 'DEFAULT';
        params.push(row.values.get(f));
        return `$${params.length}`;
      });
      return `(${cells.join(', ')})`;
    });
    const sql = `INSERT INTO ${this.#target} (${fields.map(ident).join(', ')}) VALUES ${tuples.join(', ')}`;
    await this.#client!.query(sql + this.#onConflict(fields), params);
  }

  /**
   * COPY of rows that all have the same fields, in the open transaction. With upsert, into a
   * temporary table of just those columns (no constraints, so only type errors stop it), then one
   * INSERT ... SELECT ... ON CONFLICT from it.
   */
  async #copy(rows: Row[]): Promise<void> {
    const client = this.#client!;
    const fields = [...rows[0]!.values.keys()];
    const columns = fields.map(ident).join(', ');
    const upsert = this.#cfg.mode === 'upsert';
    if (upsert)
      await client.query(`CREATE TEMP TABLE ${STAGE} AS SELECT ${columns} FROM ${this.#target} WITH NO DATA`);
    const into = upsert ? STAGE : this.#target;
    function* pieces(): Generator<string> {
      let piece = '';
      for (const row of rows) {
        let line = '';
        for (let i = 0; i < fields.length; i++) {
          if (i) line += '\t';
          line += copyField(row.values.get(fields[i]!));
        }
        piece += `${line}\n`;
        if (piece.length >= COPY_PIECE) {
          yield piece;
          piece = '';
        }
      }
      if (piece) yield piece;
    }
    await pipeline(Readable.from(pieces()), client.query(copyFrom(`COPY ${into} (${columns}) FROM STDIN`)));
    if (upsert) {
      await client.query(
        `INSERT INTO ${this.#target} (${columns}) SELECT ${columns} FROM ${STAGE}${this.#onConflict(fields)}`,
      );
      await client.query(`DROP TABLE ${STAGE}`);
    }
  }

  /** With upsert, the ON CONFLICT clause that updates the other fields; else nothing. */
  #onConflict(fields: string[]): string {
    if (this.#cfg.mode !== 'upsert') return '';
    const keys = (this.#cfg.key ?? []).map(columnName);
    const others = fields.filter((f) => !keys.includes(f));
    return ` ON CONFLICT (${keys.map(ident).join(', ')}) ${
      others.length
        ? `DO UPDATE SET ${others.map((f) => `${ident(f)} = EXCLUDED.${ident(f)}`).join(', ')}`
        : 'DO NOTHING'
    }`;
  }

  /** Names the field of a refused row: the first value its column type cannot take, else the server's column. */
  async #blame(row: Row, err: unknown): Promise<SluiceError> {
    const client = this.#client!;
    const pgErr = err as { message?: string; code?: string; column?: string; constraint?: string };
    for (const [field, value] of row.values) {
      const column = this.#columns!.get(field)!;
      await client.query('SAVEPOINT sluice_cast');
      try {
        await client.query(`SELECT $1::${column.type}`, [value]);
        await client.query('RELEASE SAVEPOINT sluice_cast');
      } catch (castErr) {
        await client.query('ROLLBACK TO SAVEPOINT sluice_cast');
        const message = castErr instanceof Error ? castErr.message : String(castErr);
        return new SluiceError(
          'SLUICE_SINK_REJECTED',
          `field "${field}" cannot be written to column ${field} (${column.type}) of ${this.#sinkId}: ${message}`,
          {
            details: {
              field,
              column_type: column.type,
              table: this.#sinkId,
              sqlstate: (castErr as { code?: string }).code,
            },
          },
        );
      }
    }
    const field = pgErr.column;
    const type = field ? this.#columns!.get(field)?.type : undefined;
    return new SluiceError(
      'SLUICE_SINK_REJECTED',
      `${field ? `field "${field}" (column type ${type ?? 'unknown'}): ` : ''}${this.#sinkId} refused the row: ${pgErr.message ?? String(err)}`,
      {
        details: {
          table: this.#sinkId,
          sqlstate: pgErr.code,
          ...(field ? { field, column_type: type } : {}),
          ...(pgErr.constraint ? { constraint: pgErr.constraint } : {}),
        },
      },
    );
  }

  /** Connects, creates the table if asked, and loads its columns and the positions it holds. */
  async #setup(batch: SluiceRecord[]): Promise<void> {
    if (this.#client && this.#columns) return;
    const { logger, signal } = this.#ctx;
    this.#client = await connect(this.#cfg.url, logger, 'SLUICE_SINK_IO', signal);
    const client = this.#client;
    try {
      let columns = await this.#loadColumns();
      if (!columns.size && this.#cfg.create_table) {
        await this.#createTable(batch);
        columns = await this.#loadColumns();
      }
      if (!columns.size)
        throw new SluiceError(
          'SLUICE_SINK_IO',
          `table ${this.#sinkId} does not exist (set create_table: true to create it from the records)`,
          { retriable: false, details: { table: this.#sinkId } },
        );
      if (this.#cfg.exactly_once) {
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${ident(this.#schema)}.${CHECKPOINTS} (
             pipeline text NOT NULL, sink text NOT NULL, token text NOT NULL,
             positions jsonb NOT NULL, rejected jsonb NOT NULL DEFAULT '[]', committed_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (pipeline, sink))`,
        );
        const held = await client.query(
          `SELECT positions, rejected FROM ${ident(this.#schema)}.${CHECKPOINTS} WHERE pipeline = $1 AND sink = $2`,
          [this.#ctx.pipelineName, this.#sinkId],
        );
        const row = held.rows[0] as
          | { positions: Record<string, number>; rejected: [string, number][] }
          | undefined;
        const positions = row?.positions ?? {};
        for (const [partition, offset] of row?.rejected ?? []) this.#redo.add(`${partition}\n${offset}`);
        // Reconnects keep the larger of what this instance committed and what the table says.
        for (const [partition, offset] of Object.entries(positions))
          if (!(this.#committed.get(partition)! >= offset)) this.#committed.set(partition, offset);
      }
      this.#columns = columns;
    } catch (err) {
      const error = pgError(err, 'SLUICE_SINK_IO', `cannot prepare table ${this.#sinkId}`, {
        table: this.#sinkId,
      });
      this.#dropClient();
      throw error;
    }
  }

  async #loadColumns(): Promise<Map<string, Column>> {
    const result = await this.#client!.query(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typname AS typname
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [this.#target],
    );
    const columns = new Map<string, Column>();
    for (const r of result.rows as { name: string; type: string; typname: string }[])
      columns.set(r.name, {
        type: r.type,
        json: r.typname === 'json' || r.typname === 'jsonb',
        bytea: r.typname === 'bytea',
        byteaArray: r.typname === '_bytea',
      });
    return columns;
  }

  async #createTable(batch: SluiceRecord[]): Promise<void> {
    const fields = new Map<string, unknown[]>();
    for (const { value } of batch)
      for (const [field, v] of Object.entries(value)) {
        if (!fields.has(field)) fields.set(field, []);
        fields.get(field)!.push(v);
      }
    const keys = this.#cfg.mode === 'upsert' ? (this.#cfg.key ?? []).map(columnName) : [];
    const defs = [...fields].map(([field, values]) => `${ident(field)} ${inferType(values)}`);
    for (const k of keys) if (!fields.has(k)) defs.push(`${ident(k)} text`);
    if (keys.length) defs.push(`PRIMARY KEY (${keys.map(ident).join(', ')})`);
    await this.#client!.query(`CREATE SCHEMA IF NOT EXISTS ${ident(this.#schema)}`);
    await this.#client!.query(`CREATE TABLE IF NOT EXISTS ${this.#target} (${defs.join(', ')})`);
    this.#ctx.logger.info(`postgres: created table ${this.#sinkId}`, { columns: defs });
  }

  /**
   * Commits the rows written since the last commit, in one transaction with the positions they
   * cover (exactly_once), so the table and its sluice_checkpoints row never disagree.
   */
  async commit(): Promise<void> {
    if (!this.#inTx || !this.#client) return;
    const client = this.#client;
    try {
      if (this.#cfg.exactly_once && this.#pending.size) {
        const merged = new Map(this.#committed);
        for (const [p, o] of this.#pending) if (!(merged.get(p)! >= o)) merged.set(p, o);
        const positions = Object.fromEntries(merged);
        await client.query(
          `INSERT INTO ${ident(this.#schema)}.${CHECKPOINTS} (pipeline, sink, token, positions, rejected) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (pipeline, sink) DO UPDATE SET token = EXCLUDED.token, positions = EXCLUDED.positions,
             rejected = EXCLUDED.rejected, committed_at = now()`,
          [
            this.#ctx.pipelineName,
            this.#sinkId,
            randomUUID(),
            JSON.stringify(positions),
            JSON.stringify(this.#pendingRejected),
          ],
        );
        await client.query('COMMIT');
        this.#committed = merged;
      } else {
        await client.query('COMMIT');
      }
      this.#inTx = false;
      this.#txRows = 0;
      this.#pending.clear();
      this.#pendingRejected = [];
    } catch (err) {
      // Whether a COMMIT whose connection died landed is unknown: fail, and let the resume (and the
      // positions in sluice_checkpoints) sort it out rather than guess.
      throw this.#ioError(err, `cannot commit to ${this.#sinkId}`, true);
    }
  }

  async close(): Promise<void> {
    this.#done ??= (async () => {
      try {
        await this.commit();
        if (this.#skipped)
          this.#ctx.logger.info(
            `postgres: skipped ${this.#skipped} record(s) that ${this.#sinkId} already held (exactly_once)`,
          );
      } finally {
        await this.#client?.end().catch(() => {});
        this.#client = undefined;
      }
    })();
    return this.#done;
  }

  async abort(): Promise<void> {
    this.#done ??= (async () => {
      const client = this.#client;
      this.#client = undefined;
      if (!client) return;
      if (this.#inTx) await client.query('ROLLBACK').catch(() => {});
      await client.end().catch(() => {});
    })();
    return this.#done;
  }

  outputs(): string[] {
    return [`postgres table ${this.#sinkId}`];
  }
}

export { type PostgresSinkConfig, postgresSink, postgresSinkConfig } from './sink-definition.ts';
