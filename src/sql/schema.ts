/**
 * The result types of a step's query, from DuckDB itself: the query is bound (DESCRIBE, nothing
 * runs) over an empty `input` whose columns have the input batch's declared types, or else the
 * types its values have (an integral number a BIGINT, a Date a TIMESTAMP, ...). The same answer
 * for the compiled, micro-batch and set-level paths, so a Parquet sink gives a column the type
 * DuckDB would.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import type { RecordSchema, SluiceRecord } from '../sdk/types.ts';
import { shapesOf } from './batch.ts';
import { newDuckDBConnection } from './duckdb.ts';
import { shapeSql } from './shape.ts';
import { quoteIdent } from './table.ts';

/** Distinct input types remembered per query: beyond this, new ones are described again. */
const MAX_CACHED = 64;

export class ResultSchema {
  readonly #sql: string;
  #conn: Promise<DuckDBConnection> | undefined;
  readonly #cache = new Map<string, RecordSchema | undefined>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(sql: string) {
    this.#sql = sql;
  }

  /**
   * The types of the query's result columns over records like the batch's first one, with the
   * declared `input` types; undefined when DuckDB cannot bind it for them. Columns whose type is
   * unknown (a NULL) are left out.
   */
  of(records: readonly SluiceRecord[], input: RecordSchema | undefined): Promise<RecordSchema | undefined> {
    const first = records[0];
    if (!first) return Promise.resolve(undefined);
    let columns: [string, string][];
    try {
      const names = Object.keys(first.value);
      const shapes = shapesOf(first.value, names);
      columns = names.map((n, i) => [
        n,
        input?.[n] ?? (shapes[i]!.k === 'NULL' ? 'NULL' : shapeSql(shapes[i]!)),
      ]);
    } catch {
      return Promise.resolve(undefined); // a field DuckDB cannot hold: the sink types it by its values
    }
    return this.describe(columns);
  }

  /** The types of the query's result columns over an `input` with these columns and types. */
  describe(columns: [name: string, type: string][]): Promise<RecordSchema | undefined> {
    const key = JSON.stringify(columns);
    if (this.#cache.has(key)) return Promise.resolve(this.#cache.get(key));
    const run = () => this.#describe(key, columns);
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => undefined);
    const conn = await this.#conn?.catch(() => undefined);
    conn?.closeSync();
  }

  async #describe(key: string, columns: [string, string][]): Promise<RecordSchema | undefined> {
    if (this.#cache.has(key)) return this.#cache.get(key);
    this.#conn ??= newDuckDBConnection();
    const conn = await this.#conn;
    // A field that is null in the sample has no type: bound once as VARCHAR and once as BIGINT,
    // an output whose type differs between the two depends on it, and is left to its values.
    const unknown = columns.some(([, t]) => t === 'NULL');
    const as = (nullType: string) =>
      this.#bind(
        conn,
        columns.map(([n, t]) => [n, t === 'NULL' ? nullType : t]),
      );
    let schema: RecordSchema | undefined;
    if (!unknown) schema = await as('');
    else {
      const [a, b] = [await as('VARCHAR'), await as('BIGINT')];
      if (a && b) schema = Object.fromEntries(Object.entries(a).filter(([n, t]) => b[n] === t));
      else {
        const nulls = new Set(columns.filter(([, t]) => t === 'NULL').map(([n]) => n));
        const one = a ?? b;
        schema = one && Object.fromEntries(Object.entries(one).filter(([n]) => !nulls.has(n)));
      }
    }
    if (this.#cache.size >= MAX_CACHED) this.#cache.clear();
    this.#cache.set(key, schema);
    return schema;
  }

  /** The result types over an empty `input` of these columns; undefined when it does not bind. */
  async #bind(conn: DuckDBConnection, columns: [string, string][]): Promise<RecordSchema | undefined> {
    try {
      const select = columns.map(([n, t]) => `CAST(NULL AS ${t}) AS ${quoteIdent(n)}`).join(', ');
      await conn.run(
        `CREATE OR REPLACE TEMP VIEW input AS SELECT ${select || '1 AS __sluice_empty'} LIMIT 0`,
      );
      const described = await conn.runAndReadAll(`DESCRIBE ${this.#sql}`);
      const out: Record<string, string> = {};
      for (const [name, type] of described.getRowsJS()) out[String(name)] = String(type);
      return out;
    } catch {
      return undefined; // not bindable over these types: the sink types the result by its values
    }
  }
}
