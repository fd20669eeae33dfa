/**
 * Per-record SQL on DuckDB, in micro-batches: for queries outside the compiled subset, or joining
 * lookup tables. A batch is grouped by record shape (field names and value types) so each record
 * is typed as on its own; each group is appended to a temp table with a row number that maps the
 * output rows back to their input record (its metadata, its position in the batch). A group that
 * fails (a bad cast) is bisected until the failing records are found: only those are rejected.
 */
import type { DuckDBConnection, DuckDBPreparedStatement } from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord, StepResult } from '../sdk/types.ts';
import { newDuckDBConnection } from './duckdb.ts';
import { type Lookups, loadLookups } from './lookups.ts';
import { CONDITION_PREFIX, duckMessage } from './plan.ts';
import { mergeShapes, type Shape, ShapeError, shapeKey, shapeOf, shapeSql } from './shape.ts';
import { appendRecords, type Column, quoteIdent } from './table.ts';
import { fromDuckDB, sqlValueConverter } from './values.ts';

export const ROW = '__sluice_row';
/** Shapes kept (a temp table each); beyond it the oldest are dropped. */
const MAX_SHAPES = 64;
/** Missing columns added for one shape before giving up (each costs one failed bind). */
const MAX_MISSING = 200;

export interface BatchQueryOptions {
  mode?: 'select' | 'condition';
  lookups?: Lookups;
  baseDir?: string;
}

interface Entry {
  id: number;
  table: string;
  view: string;
  names: string[];
  shapes: Shape[];
  /** Columns the query names that records of this shape lack: NULL in the view, excluded from `*`. */
  missing: string[];
  query?: string;
  /** The query and the table reset, prepared once: parsing, binding and planning per batch cost more than the batch. */
  prepared?: { query: DuckDBPreparedStatement; clear: DuckDBPreparedStatement };
}

interface Group {
  names: string[];
  shapes: Shape[];
  rows: number[];
}

type Result = { names: string[]; rows: unknown[][] };

/** JSON.parse keeping integers beyond 2^53 as raw JSON, so they serialise back unchanged. */
function parseAst(text: string): unknown {
  const raw = (JSON as unknown as { rawJSON(s: string): unknown }).rawJSON;
  return JSON.parse(text, (_k, value, context?: { source?: string }) =>
    typeof value === 'number' &&
    !Number.isSafeInteger(value) &&
    context?.source &&
    /^-?\d+$/.test(context.source)
      ? raw(context.source)
      : value,
  );
}

export class BatchQuery {
  readonly #conn: DuckDBConnection;
  readonly #sql: string;
  readonly #mode: 'select' | 'condition';
  readonly #ast: string;
  readonly #entries = new Map<string, Entry>();
  #seq = 0;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(conn: DuckDBConnection, sql: string, mode: 'select' | 'condition', ast: string) {
    this.#conn = conn;
    this.#sql = sql;
    this.#mode = mode;
    this.#ast = ast;
  }

  static async open(sql: string, opts: BatchQueryOptions = {}): Promise<BatchQuery> {
    const mode = opts.mode ?? 'select';
    const conn = await newDuckDBConnection();
    try {
      // Each shape's query is prepared once and run on every batch, but DuckDB plans it with the
      // statistics of the table at that time (the first batch): a branch they prove dead is gone
      // for every later batch too, so a record of a later batch would not meet its error.
      await conn.run("SET disabled_optimizers = 'statistics_propagation'");
      await loadLookups(conn, opts.lookups, opts.baseDir ?? '.', true);
      const text = mode === 'condition' ? `${CONDITION_PREFIX}${sql}\n` : sql;
      const r = await conn.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [text]);
      return new BatchQuery(conn, sql, mode, String(r.getRowsJS()[0]?.[0]));
    } catch (err) {
      conn.closeSync();
      throw err;
    }
  }

  /** Runs the query on each record of `batch`; outputs keep the input order and metadata. */
  process(batch: SluiceRecord[]): Promise<StepResult> {
    const run = () => this.#process(batch);
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => undefined);
    this.#conn.closeSync();
  }

  async #process(batch: SluiceRecord[]): Promise<StepResult> {
    const out: (SluiceRecord[] | undefined)[] = new Array(batch.length);
    const rejected: (Rejection | undefined)[] = new Array(batch.length);
    const groups = new Map<string, Group[]>();
    for (let i = 0; i < batch.length; i++) {
      const value = batch[i]!.value;
      const names = Object.keys(value);
      let shapes: Shape[];
      try {
        shapes = shapesOf(value, names);
      } catch (err) {
        rejected[i] = this.#reject(batch[i]!, (err as Error).message);
        continue;
      }
      const key = names.join('\u0000');
      let list = groups.get(key);
      if (!list) {
        list = [];
        groups.set(key, list);
      }
      let placed = false;
      for (const g of list) {
        const merged = mergeAll(g.shapes, shapes);
        if (merged) {
          g.shapes = merged;
          g.rows.push(i);
          placed = true;
          break;
        }
      }
      if (!placed) list.push({ names, shapes, rows: [i] });
    }
    for (const list of groups.values()) {
      for (const g of list) await this.#runGroup(g, batch, out, rejected);
    }
    const records: SluiceRecord[] = [];
    const rejections: Rejection[] = [];
    for (let i = 0; i < batch.length; i++) {
      const r = rejected[i];
      if (r) rejections.push(r);
      else if (out[i]) for (const o of out[i]!) records.push(o);
    }
    return rejections.length ? { records, rejected: rejections } : { records };
  }

  #reject(record: SluiceRecord, message: string): Rejection {
    return {
      record,
      error: new SluiceError('SLUICE_EXPR_EVAL', `${message} (in ${this.#sql})`, {
        details: { expression: this.#sql, value: record.value },
      }),
    };
  }

  async #runGroup(
    g: Group,
    batch: SluiceRecord[],
    out: (SluiceRecord[] | undefined)[],
    rejected: (Rejection | undefined)[],
  ): Promise<void> {
    let entry: Entry;
    try {
      entry = await this.#entry(g.names, g.shapes);
    } catch (err) {
      for (const i of g.rows) rejected[i] = this.#reject(batch[i]!, duckMessage((err as Error).message));
      return;
    }
    const attempt = async (rows: number[]): Promise<void> => {
      let result: Result;
      try {
        result = await this.#run(entry, rows, batch);
      } catch (err) {
        const message = duckMessage((err as Error).message);
        // a query that does not bind for this shape fails every record of it alike
        if (rows.length === 1 || /^(Binder|Catalog|Parser|Not implemented) Error/.test(message)) {
          for (const i of rows) rejected[i] = this.#reject(batch[i]!, message);
          return;
        }
        const half = rows.length >> 1;
        await attempt(rows.slice(0, half));
        await attempt(rows.slice(half));
        return;
      }
      this.#collect(result, batch, out, rejected);
    };
    await attempt(g.rows);
  }

  #collect(
    result: Result,
    batch: SluiceRecord[],
    out: (SluiceRecord[] | undefined)[],
    rejected: (Rejection | undefined)[],
  ): void {
    const rowAt = result.names.lastIndexOf(ROW);
    for (const row of result.rows) {
      const i = Number(row[rowAt]);
      if (rejected[i]) continue;
      const input = batch[i]!;
      if (this.#mode === 'condition') {
        out[i] ??= [input];
        continue;
      }
      // integers beyond ±2^53 stay exact bigints: DuckDB's answer, which compiled SQL defers to (per-record.ts)
      const value = toRecord(result.names, row, rowAt, true);
      const rows = out[i] ?? [];
      rows.push({ value, meta: input.meta });
      out[i] = rows;
    }
  }

  /** Loads `rows` of the batch into the shape's table and runs the query, adding missing columns as NULL. */
  async #run(entry: Entry, rows: number[], batch: SluiceRecord[]): Promise<Result> {
    const columns: Column[] = [];
    entry.names.forEach((name, i) => {
      if (entry.shapes[i]!.k !== 'NULL') columns.push({ name, shape: entry.shapes[i]! });
    });
    if (entry.prepared) await entry.prepared.clear.run();
    else await this.#conn.run(`DELETE FROM ${entry.table}`);
    await appendRecords(
      this.#conn,
      entry.table,
      columns,
      rows.map((i) => batch[i]!.value),
      rows,
    );
    for (let tries = 0; ; tries++) {
      entry.query ??= await this.#rewrite(entry);
      try {
        entry.prepared ??= {
          query: await this.#conn.prepare(entry.query),
          clear: await this.#conn.prepare(`DELETE FROM ${entry.table}`),
        };
        const reader = await entry.prepared.query.runAndReadAll();
        return { names: reader.columnNames(), rows: reader.convertRows(sqlValueConverter) as unknown[][] };
      } catch (err) {
        const missing = missingColumn((err as Error).message, entry);
        if (!missing || tries >= MAX_MISSING) throw err;
        entry.missing.push(missing);
        await this.#createView(entry);
        entry.query = undefined;
        this.#unprepare(entry);
      }
    }
  }

  async #entry(names: string[], shapes: Shape[]): Promise<Entry> {
    const key = `${names.join('\u0000')}\u0001${shapes.map(shapeKey).join('\u0000')}`;
    const found = this.#entries.get(key);
    if (found) {
      // most recently used last, for eviction
      this.#entries.delete(key);
      this.#entries.set(key, found);
      return found;
    }
    if (this.#entries.size >= MAX_SHAPES) {
      const [oldKey, old] = this.#entries.entries().next().value as [string, Entry];
      this.#entries.delete(oldKey);
      this.#unprepare(old);
      await this.#conn.run(`DROP VIEW IF EXISTS ${old.view}; DROP TABLE IF EXISTS ${old.table}`);
    }
    const id = ++this.#seq;
    const entry: Entry = {
      id,
      table: `__sluice_t${id}`,
      view: `__sluice_v${id}`,
      names,
      shapes,
      missing: [],
    };
    const defs = [`${ROW} BIGINT`];
    names.forEach((n, i) => {
      if (shapes[i]!.k !== 'NULL') defs.push(`${quoteIdent(n)} ${shapeSql(shapes[i]!)}`);
    });
    await this.#conn.run(`CREATE OR REPLACE TEMP TABLE ${entry.table} (${defs.join(', ')})`);
    await this.#createView(entry);
    this.#entries.set(key, entry);
    return entry;
  }

  #unprepare(entry: Entry): void {
    entry.prepared?.query.destroySync();
    entry.prepared?.clear.destroySync();
    entry.prepared = undefined;
  }

  async #createView(entry: Entry): Promise<void> {
    const cols = [ROW];
    entry.names.forEach((n, i) => {
      cols.push(entry.shapes[i]!.k === 'NULL' ? `NULL AS ${quoteIdent(n)}` : quoteIdent(n));
    });
    for (const m of entry.missing) cols.push(`NULL AS ${quoteIdent(m)}`);
    await this.#conn.run(
      `CREATE OR REPLACE TEMP VIEW ${entry.view} AS SELECT ${cols.join(', ')} FROM ${entry.table}`,
    );
  }

  /**
   * The user's statement reading the shape's view instead of `input`, with the row number added to
   * the select list and left out of `*` (as are the columns only added as NULL).
   */
  async #rewrite(entry: Entry): Promise<string> {
    // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
    const json = parseAst(this.#ast) as any;
    const root = json.statements[0].node;
    const input = findInput(root.from_table);
    if (!input) throw new Error('the query does not read input');
    const alias = String(input.alias || 'input');
    input.table_name = entry.view;
    input.alias = alias;
    const rowRef = {
      class: 'COLUMN_REF',
      type: 'COLUMN_REF',
      alias: ROW,
      query_location: 0,
      column_names: [alias, ROW],
    };
    if (this.#mode === 'condition') root.select_list = [rowRef];
    else {
      const hidden = [ROW, ...entry.missing];
      for (const item of root.select_list) {
        if (item.class !== 'STAR' || item.columns) continue;
        const rel = String(item.relation_name ?? '').toLowerCase();
        if (rel && rel !== alias.toLowerCase()) continue;
        item.exclude_list ??= [];
        const ex: unknown[] = item.exclude_list;
        const have = new Set(ex.map((e) => String(typeof e === 'string' ? e : '').toLowerCase()));
        for (const h of hidden) if (!have.has(h.toLowerCase())) ex.push(h);
      }
      root.select_list.push(rowRef);
    }
    const r = await this.#conn.runAndReadAll('SELECT json_deserialize_sql($1::JSON)', [JSON.stringify(json)]);
    return String(r.getRowsJS()[0]?.[0]);
  }
}

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
function findInput(t: any): any {
  if (!t) return undefined;
  if (t.type === 'BASE_TABLE') return String(t.table_name).toLowerCase() === 'input' ? t : undefined;
  if (t.type === 'JOIN') return findInput(t.left) ?? findInput(t.right);
  return undefined;
}

/** The name of an input column DuckDB could not find, if it is one records of this shape lack. */
function missingColumn(message: string, entry: Entry): string | undefined {
  const m =
    /Referenced column "([^"]+)" not found/.exec(message) ??
    /Table "[^"]+" does not have a column named "([^"]+)"/.exec(message) ??
    /Column "([^"]+)" in (?:EXCLUDE|REPLACE) list not found/.exec(message);
  const name = m?.[1];
  if (!name) return undefined;
  const lower = name.toLowerCase();
  if (
    entry.names.some((n) => n.toLowerCase() === lower) ||
    entry.missing.some((n) => n.toLowerCase() === lower)
  )
    return undefined;
  return name;
}

/** The shapes of a record's fields; field names DuckDB would take for one (case-insensitively) are refused. */
export function shapesOf(value: Record<string, unknown>, names: string[]): Shape[] {
  const seen = new Map<string, string>();
  return names.map((n) => {
    const lower = n.toLowerCase();
    const other = seen.get(lower);
    if (other !== undefined) {
      throw new ShapeError(
        `fields "${other}" and "${n}" differ only in case, which DuckDB's column names ignore`,
      );
    }
    seen.set(lower, n);
    try {
      return shapeOf(value[n]);
    } catch (err) {
      if (err instanceof ShapeError) throw new ShapeError(`field ${n}: ${err.message}`);
      throw err;
    }
  });
}

function mergeAll(a: Shape[], b: Shape[]): Shape[] | undefined {
  const out: Shape[] = [];
  for (let i = 0; i < a.length; i++) {
    const m = mergeShapes(a[i]!, b[i]!, 'exact');
    if (!m) return undefined;
    out.push(m);
  }
  return out;
}

function toRecord(
  names: string[],
  row: unknown[],
  skip: number,
  exactBigints: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) {
    if (i === skip) continue;
    out[names[i]!] = fromDuckDB(row[i], exactBigints);
  }
  return out;
}
