/**
 * Set-level SQL (GROUP BY, ORDER BY, windows, self-joins) on bounded input: records are appended
 * batch by batch to one DuckDB temp table (memory in DuckDB, not JavaScript); when the input ends
 * the query runs once and its rows are emitted in batches.
 *
 * One table needs one type per column, unified across the input: NULL takes the other type,
 * BIGINT and DOUBLE give DOUBLE (also inside lists and structs), structs take the union of their
 * fields. Any other mix (a string where earlier records had numbers) rejects the record with
 * SLUICE_SQL_TYPE_CONFLICT naming the field and both types.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord, StepResult } from '../sdk/types.ts';
import { ROW, shapesOf } from './batch.ts';
import { newDuckDBConnection } from './duckdb.ts';
import { type Lookups, loadLookups } from './lookups.ts';
import { duckMessage } from './plan.ts';
import { mergeShapes, type Shape, shapeKey, shapeSql, showShape } from './shape.ts';
import { appendRecords, type Column, quoteIdent } from './table.ts';
import { fromDuckDB, sqlValueConverter } from './values.ts';

const TABLE = '__sluice_set';
const MAX_MISSING = 200;

export interface SetQueryOptions {
  lookups?: Lookups;
  baseDir?: string;
  /** Output rows per emitted batch. */
  batchSize?: number;
}

export class SetQuery {
  readonly #conn: DuckDBConnection;
  readonly #sql: string;
  readonly #batchSize: number;
  /** The table's columns in order, with their unified shapes. */
  readonly #columns: Column[] = [];
  #rows = 0;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(conn: DuckDBConnection, sql: string, batchSize: number) {
    this.#conn = conn;
    this.#sql = sql;
    this.#batchSize = batchSize;
  }

  static async open(sql: string, opts: SetQueryOptions = {}): Promise<SetQuery> {
    const conn = await newDuckDBConnection();
    try {
      await loadLookups(conn, opts.lookups, opts.baseDir ?? '.', true);
      await conn.run(`CREATE OR REPLACE TEMP TABLE ${TABLE} (${ROW} BIGINT)`);
      return new SetQuery(conn, sql, Math.max(1, opts.batchSize ?? 1000));
    } catch (err) {
      conn.closeSync();
      throw err;
    }
  }

  /** Adds a batch of input; returns the records whose fields do not fit the table's column types. */
  add(batch: SluiceRecord[]): Promise<Rejection[]> {
    return this.#serial(() => this.#add(batch));
  }

  /** Runs the query over everything added, yielding its rows in batches. */
  async *results(): AsyncGenerator<StepResult> {
    await this.#queue;
    const result = await this.#start();
    const names = result.columnNames();
    let records: SluiceRecord[] = [];
    for (;;) {
      let chunk: Awaited<ReturnType<typeof result.fetchChunk>>;
      try {
        chunk = await result.fetchChunk();
      } catch (err) {
        throw this.#failure(err);
      }
      if (!chunk || chunk.rowCount === 0) break;
      for (const row of chunk.convertRows(sqlValueConverter)) {
        // Set-level SQL has no compiled counterpart: an integer beyond ±2^53 stays an exact bigint.
        const value: Record<string, unknown> = {};
        for (let i = 0; i < names.length; i++) value[names[i]!] = fromDuckDB(row[i], true);
        records.push({ value, meta: {} });
        if (records.length >= this.#batchSize) {
          yield { records };
          records = [];
        }
      }
    }
    if (records.length) yield { records };
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => undefined);
    this.#conn.closeSync();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(fn, fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async #add(batch: SluiceRecord[]): Promise<Rejection[]> {
    const rejected: Rejection[] = [];
    const accepted: Record<string, unknown>[] = [];
    const index = new Map(this.#columns.map((c, i) => [c.name.toLowerCase(), i]));
    const next = this.#columns.map((c) => ({ ...c }));
    for (const record of batch) {
      const value = record.value;
      const names = Object.keys(value);
      let shapes: Shape[];
      try {
        shapes = shapesOf(value, names);
      } catch (err) {
        rejected.push(this.#conflict(record, (err as Error).message));
        continue;
      }
      // check every field before changing any column, so a refused record leaves no trace
      const changes: [number, Shape][] = [];
      let problem: string | undefined;
      for (let f = 0; f < names.length && !problem; f++) {
        const name = names[f]!;
        const at = index.get(name.toLowerCase());
        if (at === undefined) continue;
        const col = next[at]!;
        if (col.name !== name) {
          problem = `field "${name}" and column "${col.name}" differ only in case, which DuckDB's column names ignore`;
          break;
        }
        const merged = mergeShapes(col.shape, shapes[f]!, 'widen');
        if (!merged) {
          problem = `field ${name} is ${showShape(shapes[f]!)} here but ${showShape(col.shape)} in earlier records; a set-level query needs one type per column`;
        } else changes.push([at, merged]);
      }
      if (problem) {
        rejected.push(this.#conflict(record, problem));
        continue;
      }
      for (const [at, s] of changes) next[at]!.shape = s;
      names.forEach((name, f) => {
        if (!index.has(name.toLowerCase())) {
          index.set(name.toLowerCase(), next.length);
          next.push({ name, shape: shapes[f]! });
        }
      });
      accepted.push(value);
    }
    // new columns and widened types, then one append
    for (let i = 0; i < next.length; i++) {
      const col = next[i]!;
      const old = this.#columns[i];
      if (!old) {
        await this.#conn.run(
          `ALTER TABLE ${TABLE} ADD COLUMN ${quoteIdent(col.name)} ${shapeSql(col.shape)}`,
        );
        this.#columns.push({ ...col });
      } else if (shapeKey(old.shape) !== shapeKey(col.shape)) {
        await this.#conn.run(
          `ALTER TABLE ${TABLE} ALTER ${quoteIdent(col.name)} TYPE ${shapeSql(col.shape)}`,
        );
        old.shape = col.shape;
      }
    }
    if (accepted.length) {
      const ids = accepted.map((_, i) => this.#rows + i);
      await appendRecords(this.#conn, TABLE, this.#columns, accepted, ids);
      this.#rows += accepted.length;
    }
    return rejected;
  }

  #conflict(record: SluiceRecord, message: string): Rejection {
    return {
      record,
      error: new SluiceError('SLUICE_SQL_TYPE_CONFLICT', message, { details: { expression: this.#sql } }),
    };
  }

  #failure(err: unknown): SluiceError {
    return new SluiceError(
      'SLUICE_EXPR_EVAL',
      `the set-level query failed: ${duckMessage((err as Error).message)}`,
      {
        cause: err,
        details: { expression: this.#sql },
      },
    );
  }

  /** `input` as a view of the table (columns never seen non-NULL are plain NULL), then the query. */
  async #start() {
    const missing: string[] = [];
    for (let tries = 0; ; tries++) {
      const cols = this.#columns.map((c) =>
        c.shape.k === 'NULL' ? `NULL AS ${quoteIdent(c.name)}` : quoteIdent(c.name),
      );
      for (const m of missing) cols.push(`NULL AS ${quoteIdent(m)}`);
      if (!cols.length) cols.push('NULL AS __sluice_none');
      await this.#conn.run(`CREATE OR REPLACE TEMP VIEW input AS SELECT ${cols.join(', ')} FROM ${TABLE}`);
      try {
        return await this.#conn.stream(this.#sql);
      } catch (err) {
        const message = (err as Error).message;
        const m =
          /Referenced column "([^"]+)" not found/.exec(message) ??
          /Table "input" does not have a column named "([^"]+)"/i.exec(message);
        const name = m?.[1];
        const known = [...this.#columns.map((c) => c.name), ...missing].map((n) => n.toLowerCase());
        if (!name || known.includes(name.toLowerCase()) || tries >= MAX_MISSING) throw this.#failure(err);
        // a field no record had reads as NULL, as in per-record SQL
        missing.push(name);
      }
    }
  }
}
