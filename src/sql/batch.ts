/**
 * Per-record SQL on DuckDB, in micro-batches: for queries outside the compiled subset, or joining
 * lookup tables. A batch is grouped by record shape (field names and value types) so each record
 * is typed as on its own; each group is appended to a temp table with a row number that maps the
 * output rows back to their input record (its metadata, its position in the batch). A group that
 * fails (a bad cast) is bisected until the failing records are found: only those are rejected.
 */
import type {
  DuckDBAppender,
  DuckDBConnection,
  DuckDBMaterializedResult,
  DuckDBPreparedStatement,
} from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord, StepResult } from '../sdk/types.ts';
import { newOneThreadConnection } from './duckdb.ts';
import { type Lookups, loadLookups } from './lookups.ts';
import { CONDITION_PREFIX, duckMessage } from './plan.ts';
import { analysePruning, type Pruning, passthrough, starKeeps } from './pruning.ts';
import { mergeShapes, type Shape, ShapeError, shapeKey, shapeOf, shapeSql } from './shape.ts';
import { appendRows, type Column, quoteIdent } from './table.ts';
import { fromDuckDB, sqlValueConverter } from './values.ts';

export const ROW = '__sluice_row';
/** Shapes kept (a temp table each); beyond it the oldest are dropped. */
const MAX_SHAPES = 64;
/** Missing columns added for one shape before giving up (each costs one failed bind). */
const MAX_MISSING = 200;
/**
 * Records per DuckDB call that waiting batches are joined into: a call has a fixed cost (round
 * trips to DuckDB's thread, the plan's start) worth some hundreds of records' work. Measured on
 * JSONL → sql → JSONL: 4,096 used less CPU than 8,192 and 16,384 (records held longer cost the
 * garbage collector more).
 */
const CALL_RECORDS = 4096;
/** Field lists whose pruning is remembered (records of one input rarely have many). */
const MAX_FIELD_PLANS = 1024;

export interface BatchQueryOptions {
  mode?: 'select' | 'condition';
  lookups?: Lookups;
  baseDir?: string;
  /** Internal, for tests: load every field and read every output column back (no pruning). */
  loadAll?: boolean;
}

/**
 * How many batches of `batchSize` records the engine should hand a step on this path before the
 * first has returned: those waiting while DuckDB works are joined into the next call.
 */
export function duckBatchesInFlight(batchSize: number): { batches: number; ordered: true } {
  return { batches: Math.min(32, Math.max(1, Math.ceil(CALL_RECORDS / batchSize))), ordered: true };
}

/** An output field: a record field passed on as it is (`field`), or result column `col`. */
interface Part {
  /** The output name; a non-star item's is DuckDB's name of result column `col`. */
  name?: string;
  col: number;
  field?: string;
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
  /** A pruned query's output fields, in order (the row number is its last column). */
  parts?: Part[];
  /** The query and the table reset, prepared once: parsing, binding and planning per batch cost more than the batch. */
  prepared?: { query: DuckDBPreparedStatement; clear: DuckDBPreparedStatement };
  /** The table's appender, kept open. */
  appender?: DuckDBAppender;
}

interface Group {
  names: string[];
  shapes: Shape[];
  rows: number[];
}

/** Which fields of records with these names DuckDB needs: those the query reads, and lists and structs a `*` keeps. */
interface FieldPlan {
  referenced: boolean[];
  starred: boolean[];
}

interface FieldInfo {
  clash?: string;
  plan: FieldPlan | null;
}

/** A result: its column names, each row's record index, and the columns converted (only those read). */
type Result = { names: string[]; rows: number[]; columns: (unknown[] | undefined)[] };

interface Job {
  batch: SluiceRecord[];
  resolve(result: StepResult): void;
  reject(err: unknown): void;
}

/** JSON.parse keeping integers beyond 2^53 as raw JSON, so they serialise back unchanged. */
function parseAst(text: string): unknown {
  const raw = (JSON as unknown as { rawJSON(s: string): unknown }).rawJSON;
  // a number keeps its text when JavaScript would write it otherwise: an integer beyond 2^53, and a
  // DOUBLE constant such as 1000000000.0, which written as 1000000000 DuckDB would read as an integer
  // ("property 'value' expected type 'double', but got type: 'uint'")
  return JSON.parse(text, (_k, value, context?: { source?: string }) =>
    typeof value === 'number' && context?.source && JSON.stringify(value) !== context.source
      ? raw(context.source)
      : value,
  );
}

const NULL_SHAPE: Shape = { k: 'NULL' };
const nested = (s: Shape) => s.k === 'LIST' || s.k === 'STRUCT';

export class BatchQuery {
  readonly #conn: DuckDBConnection;
  readonly #sql: string;
  readonly #mode: 'select' | 'condition';
  readonly #ast: string;
  readonly #pruning: Pruning | undefined;
  readonly #fieldInfo = new Map<string, FieldInfo>();
  readonly #entries = new Map<string, Entry>();
  #seq = 0;
  readonly #waiting: Job[] = [];
  #running: Promise<void> | undefined;
  #calls = 0;
  /**
   * The reset of the table last run, started after its query and awaited before the connection is
   * used again (a connection runs one statement at a time).
   */
  #clearing: Promise<unknown> = Promise.resolve();
  #loaded = 0;

  private constructor(
    conn: DuckDBConnection,
    sql: string,
    mode: 'select' | 'condition',
    ast: string,
    prune: boolean,
  ) {
    this.#conn = conn;
    this.#sql = sql;
    this.#mode = mode;
    this.#ast = ast;
    // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
    const root = (parseAst(ast) as any)?.statements?.[0]?.node;
    const input = findInput(root?.from_table);
    this.#pruning =
      prune && input && root.from_table === input
        ? analysePruning(root, String(input.alias || 'input'))
        : undefined;
  }

  static async open(sql: string, opts: BatchQueryOptions = {}): Promise<BatchQuery> {
    const mode = opts.mode ?? 'select';
    // On the one-thread instance: the batches are small, and a second thread costs more CPU
    // waking up and handing work over than it saves (measured: about 30% less CPU on one thread).
    const conn = await newOneThreadConnection();
    try {
      // Each shape's query is prepared once and run on every batch, but DuckDB plans it with the
      // statistics of the table at that time (the first batch): a branch they prove dead is gone
      // for every later batch too, so a record of a later batch would not meet its error.
      await conn.run("SET disabled_optimizers = 'statistics_propagation'");
      await loadLookups(conn, opts.lookups, opts.baseDir ?? '.', true);
      const text = mode === 'condition' ? `${CONDITION_PREFIX}${sql}\n` : sql;
      const r = await conn.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [text]);
      return new BatchQuery(conn, sql, mode, String(r.getRowsJS()[0]?.[0]), !opts.loadAll);
    } catch (err) {
      conn.closeSync();
      throw err;
    }
  }

  /**
   * Runs the query on each record of `batch`; outputs keep the input order and metadata. Batches
   * handed in while DuckDB works on earlier ones are joined into one call (each still gets its own
   * result): see `duckBatchesInFlight`.
   */
  process(batch: SluiceRecord[]): Promise<StepResult> {
    return new Promise<StepResult>((resolve, reject) => {
      this.#waiting.push({ batch, resolve, reject });
      this.#pump();
    });
  }

  /** How the path worked: DuckDB calls made, field values loaded into DuckDB, whether fields are pruned. */
  stats(): { calls: number; loaded: number; pruned: boolean } {
    return { calls: this.#calls, loaded: this.#loaded, pruned: this.#pruning !== undefined };
  }

  async close(): Promise<void> {
    while (this.#running) await this.#running;
    for (const entry of this.#entries.values()) await this.#release(entry);
    this.#conn.closeSync();
  }

  #pump(): void {
    if (this.#running || !this.#waiting.length) return;
    const jobs: Job[] = [this.#waiting.shift()!];
    let rows = jobs[0]!.batch.length;
    while (this.#waiting.length && rows + this.#waiting[0]!.batch.length <= CALL_RECORDS) {
      const job = this.#waiting.shift()!;
      rows += job.batch.length;
      jobs.push(job);
    }
    this.#running = this.#runJobs(jobs).finally(() => {
      this.#running = undefined;
      this.#pump();
    });
  }

  async #runJobs(jobs: Job[]): Promise<void> {
    const all = jobs.length === 1 ? jobs[0]!.batch : jobs.flatMap((j) => j.batch);
    let out: (SluiceRecord[] | undefined)[];
    let rejected: (Rejection | undefined)[];
    try {
      ({ out, rejected } = await this.#evaluate(all));
    } catch (err) {
      for (const j of jobs) j.reject(err);
      return;
    }
    let at = 0;
    for (const j of jobs) {
      const records: SluiceRecord[] = [];
      const rejections: Rejection[] = [];
      for (let i = at; i < at + j.batch.length; i++) {
        const r = rejected[i];
        if (r) rejections.push(r);
        else if (out[i]) for (const o of out[i]!) records.push(o);
      }
      at += j.batch.length;
      j.resolve(rejections.length ? { records, rejected: rejections } : { records });
    }
  }

  async #evaluate(
    batch: SluiceRecord[],
  ): Promise<{ out: (SluiceRecord[] | undefined)[]; rejected: (Rejection | undefined)[] }> {
    const out: (SluiceRecord[] | undefined)[] = new Array(batch.length);
    const rejected: (Rejection | undefined)[] = new Array(batch.length);
    const groups = new Map<string, Group[]>();
    for (let i = 0; i < batch.length; i++) {
      const value = batch[i]!.value;
      const names = Object.keys(value);
      const key = names.join('\u0000');
      const fields = this.#fields(key, names);
      let shapes: Shape[];
      try {
        if (fields.clash) throw new ShapeError(fields.clash);
        shapes = valueShapes(value, names);
      } catch (err) {
        rejected[i] = this.#reject(batch[i]!, (err as Error).message);
        continue;
      }
      const plan = fields.plan;
      if (plan) {
        // a field DuckDB need not see is left out of the table, and out of the grouping
        for (let f = 0; f < shapes.length; f++) {
          if (!plan.referenced[f] && !(plan.starred[f] && nested(shapes[f]!))) shapes[f] = NULL_SHAPE;
        }
      }
      let list = groups.get(key);
      if (!list) {
        list = [];
        groups.set(key, list);
      }
      const group = list.find((g) => mergeInto(g.shapes, shapes));
      if (group) group.rows.push(i);
      else list.push({ names, shapes, rows: [i] });
    }
    for (const list of groups.values()) {
      for (const g of list) await this.#runGroup(g, batch, out, rejected);
    }
    return { out, rejected };
  }

  /**
   * What records with these field names need, worked out once per list of names: whether DuckDB
   * can take the names, and which fields it needs, or null when the query is not pruned for them
   * (a `* REPLACE` of a field they lack keeps DuckDB's own handling of it).
   */
  #fields(key: string, names: string[]): FieldInfo {
    let info = this.#fieldInfo.get(key);
    if (info) return info;
    const clash = caseClash(names);
    const p = this.#pruning;
    const lower = names.map((n) => n.toLowerCase());
    const replaced = p?.slots.flatMap((s) => (s.star ? [...s.replace.keys()] : [])) ?? [];
    const plan =
      p && replaced.every((r) => lower.includes(r))
        ? {
            referenced: lower.map((n) => p.referenced.has(n)),
            starred: lower.map((n) => this.#mode === 'select' && starKeeps(p, n)),
          }
        : null;
    info = clash ? { clash, plan } : { plan };
    if (this.#fieldInfo.size >= MAX_FIELD_PLANS) this.#fieldInfo.clear();
    this.#fieldInfo.set(key, info);
    return info;
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
      this.#collect(entry, result, batch, out, rejected);
    };
    await attempt(g.rows);
  }

  #collect(
    entry: Entry,
    result: Result,
    batch: SluiceRecord[],
    out: (SluiceRecord[] | undefined)[],
    rejected: (Rejection | undefined)[],
  ): void {
    const { names, columns } = result;
    const rowAt = names.lastIndexOf(ROW);
    const build = entry.parts
      ? (input: SluiceRecord, k: number, exact: boolean) =>
          assemble(entry.parts!, names, columns, input.value, k, exact)
      : (_input: SluiceRecord, k: number, exact: boolean) => toRecord(names, columns, k, rowAt, exact);
    result.rows.forEach((i, k) => {
      if (rejected[i]) return;
      const input = batch[i]!;
      if (this.#mode === 'condition') {
        out[i] ??= [input];
        return;
      }
      // integers beyond ±2^53 stay exact bigints: DuckDB's answer, which compiled SQL defers to (per-record.ts)
      const value = build(input, k, true);
      const rows = out[i] ?? [];
      rows.push({ value, meta: input.meta });
      out[i] = rows;
    });
  }

  /** Loads `rows` of the batch into the shape's table and runs the query, adding missing columns as NULL. */
  async #run(entry: Entry, rows: number[], batch: SluiceRecord[]): Promise<Result> {
    const columns: Column[] = [];
    entry.names.forEach((name, i) => {
      if (entry.shapes[i]!.k !== 'NULL') columns.push({ name, shape: entry.shapes[i]! });
    });
    this.#calls++;
    this.#loaded += rows.length * columns.length;
    await this.#clearing;
    entry.appender ??= await this.#conn.createAppender(entry.table, 'main', 'temp');
    try {
      appendRows(
        entry.appender,
        columns,
        rows.map((i) => batch[i]!.value),
        rows,
        'INTEGER',
      );
      for (let tries = 0; ; tries++) {
        entry.query ??= await this.#rewrite(entry);
        try {
          entry.prepared ??= {
            query: await this.#conn.prepare(entry.query),
            clear: await this.#conn.prepare(`DELETE FROM ${entry.table}`),
          };
          return this.#read(entry, await entry.prepared.query.run());
        } catch (err) {
          const missing = missingColumn((err as Error).message, entry);
          if (!missing || tries >= MAX_MISSING) throw err;
          entry.missing.push(missing);
          await this.#createView(entry);
          entry.query = undefined;
          this.#unprepare(entry);
        }
      }
    } finally {
      // the reset runs on DuckDB's thread while this thread makes records of the result
      // (rows left in the table would be taken for the next run's: a failed reset is tried again, and
      // a second failure fails whatever uses the connection next)
      const clear = () => this.#conn.run(`DELETE FROM ${entry.table}`);
      const clearing = (entry.prepared ? entry.prepared.clear.run() : clear()).catch(clear);
      clearing.catch(() => {});
      this.#clearing = clearing;
    }
  }

  /** The query's result, read at once (it is materialized), converting only the columns the output takes. */
  #read(entry: Entry, result: DuckDBMaterializedResult): Result {
    const names = result.columnNames();
    const rowAt = names.lastIndexOf(ROW);
    const wanted = names.map((_, c) => c !== rowAt && this.#mode === 'select');
    if (entry.parts) {
      wanted.fill(false);
      for (const p of entry.parts) if (p.field === undefined) wanted[p.col] = true;
    }
    const columns: (unknown[] | undefined)[] = names.map((_, c) => (wanted[c] ? [] : undefined));
    const rows: number[] = [];
    for (let n = 0; n < result.chunkCount; n++) {
      const chunk = result.getChunk(n);
      const ids = chunk.getColumnVector(rowAt);
      for (let k = 0; k < chunk.rowCount; k++) rows.push(ids.getItem(k) as number);
      columns.forEach((col, c) => {
        if (col) for (const v of chunk.convertColumnValues(c, sqlValueConverter)) col.push(v);
      });
    }
    return { names, rows, columns };
  }

  async #entry(names: string[], shapes: Shape[]): Promise<Entry> {
    await this.#clearing;
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
      await this.#release(old);
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
    const defs = [`${ROW} INTEGER`];
    names.forEach((n, i) => {
      if (shapes[i]!.k !== 'NULL') defs.push(`${quoteIdent(n)} ${shapeSql(shapes[i]!)}`);
    });
    await this.#conn.run(`CREATE OR REPLACE TEMP TABLE ${entry.table} (${defs.join(', ')})`);
    await this.#createView(entry);
    this.#entries.set(key, entry);
    return entry;
  }

  /** Closes the entry's appender and statements. */
  async #release(entry: Entry): Promise<void> {
    await this.#clearing.catch(() => undefined);
    entry.appender?.closeSync();
    entry.appender = undefined;
    this.#unprepare(entry);
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
   * the select list and left out of `*` (as are the columns only added as NULL). Pruned, a `*` is
   * spelled out: only the fields DuckDB must give back (lists, structs, replaced ones) are selected.
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
    const rowRef = columnRef(alias, ROW);
    rowRef.alias = ROW;
    entry.parts = undefined;
    if (this.#mode === 'select') await this.#keepNames(entry, root.select_list);
    if (this.#mode === 'condition') root.select_list = [rowRef];
    else if (this.#pruning && this.#fields(entry.names.join('\u0000'), entry.names).plan) {
      const { select, parts } = spellOut(this.#pruning, entry, alias);
      root.select_list = [...select, rowRef];
      entry.parts = parts;
    } else {
      const hidden = [ROW, ...entry.missing];
      // every `*` of input's, also COLUMNS(*) and one inside an expression (list_distinct([COLUMNS(*)])),
      // but not a subquery's own
      // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
      const exclude = (v: any): void => {
        if (v === null || typeof v !== 'object' || v.class === 'SUBQUERY') return;
        if (Array.isArray(v)) {
          for (const e of v) exclude(e);
          return;
        }
        const rel = String(v.relation_name ?? '').toLowerCase();
        if (v.class === 'STAR' && !v.expr && (!rel || rel === alias.toLowerCase())) {
          v.exclude_list ??= [];
          const ex: unknown[] = v.exclude_list;
          const have = new Set(ex.map((e) => String(typeof e === 'string' ? e : '').toLowerCase()));
          for (const h of hidden) if (!have.has(h.toLowerCase())) ex.push(h);
        }
        for (const k of Object.keys(v)) exclude(v[k]);
      };
      exclude(root.select_list);
      root.select_list.push(rowRef);
    }
    const r = await this.#conn.runAndReadAll('SELECT json_deserialize_sql($1::JSON)', [JSON.stringify(json)]);
    return String(r.getRowsJS()[0]?.[0]);
  }

  /**
   * Aliases each unnamed select item that computes something with the name DuckDB gives it in the
   * user's SQL. The rewrite
   * goes through SQL text, where what DuckDB's parser made of a shorthand reads back as written
   * SQL with another name: `INTERVAL 1 DAY` is to_days(CAST(trunc(CAST(1 AS DOUBLE)) AS INTEGER)),
   * which, written, is named CAST(1 AS "DOUBLE").
   */
  // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
  async #keepNames(entry: Entry, items: any[]): Promise<void> {
    const stars = items.filter((i) => i.class === 'STAR').length;
    if (stars > 1 || items.every((i) => i.class === 'STAR' || i.alias)) return;
    let names: string[];
    try {
      // (a `*` takes the row number too: only its width counts, below)
      await this.#conn.run(`CREATE OR REPLACE TEMP VIEW input AS SELECT * FROM ${entry.view}`);
      const p = await this.#conn.prepare(this.#sql);
      names = Array.from({ length: p.columnCount }, (_, i) => p.columnName(i));
      p.destroySync();
    } catch {
      return; // the rewritten query meets the same error
    }
    const starWidth = names.length - (items.length - stars);
    let at = 0;
    items.forEach((item, i) => {
      if (item.class === 'STAR') {
        at += starWidth;
        return;
      }
      // a bare name stays unaliased: an alias would shadow a column the record lacks (`l` AS l)
      if (!item.alias && names[at]!.includes('(')) {
        item.alias = names[at];
        const slot = this.#pruning?.slots[i];
        if (slot && !slot.star) (slot.item as { alias?: string }).alias = names[at];
      }
      at++;
    });
  }
}

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
function columnRef(alias: string, name: string): any {
  return {
    class: 'COLUMN_REF',
    type: 'COLUMN_REF',
    alias: '',
    query_location: 0,
    column_names: [alias, name],
  };
}

/**
 * A pruned select list for records of `entry`'s shape: each `*` spelled out as the fields it
 * keeps, of which only lists, structs and replaced fields are selected (the others pass on from
 * the record); other items as written, a bare reference to a flat field passed on too.
 */
// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
function spellOut(p: Pruning, entry: Entry, alias: string): { select: any[]; parts: Part[] } {
  const select: unknown[] = [];
  const parts: Part[] = [];
  const lowerAlias = alias.toLowerCase();
  const byLower = new Map(entry.names.map((n, i) => [n.toLowerCase(), i]));
  for (const slot of p.slots) {
    if (!slot.star) {
      parts.push({ col: select.length, ...plainField(slot.item) });
      select.push(slot.item);
      continue;
    }
    entry.names.forEach((name, i) => {
      const lower = name.toLowerCase();
      if (slot.exclude.has(lower)) return;
      const replacement = slot.replace.get(lower);
      if (replacement !== undefined || nested(entry.shapes[i]!)) {
        parts.push({ name, col: select.length });
        select.push(replacement ?? columnRef(alias, name));
      } else parts.push({ name, col: -1, field: name });
    });
  }
  return { select, parts };

  /** The record field a bare column reference names, when it is flat (its value passes on). */
  // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
  function plainField(item: any): { field?: string } {
    if (item?.class !== 'COLUMN_REF') return {};
    const names: string[] = item.column_names.map((n: unknown) => String(n).toLowerCase());
    const qualified = names.length === 2 && names[0] === lowerAlias && !byLower.has(lowerAlias);
    if (names.length !== 1 && !qualified) return {};
    const i = byLower.get(names[names.length - 1]!);
    return i === undefined || nested(entry.shapes[i]!) ? {} : { field: entry.names[i]! };
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
  const clash = caseClash(names);
  if (clash) throw new ShapeError(clash);
  return valueShapes(value, names);
}

/** Why DuckDB could not take these field names as columns (two differ only in case), if so. */
function caseClash(names: string[]): string | undefined {
  const seen = new Map<string, string>();
  for (const n of names) {
    const lower = n.toLowerCase();
    const other = seen.get(lower);
    if (other !== undefined)
      return `fields "${other}" and "${n}" differ only in case, which DuckDB's column names ignore`;
    seen.set(lower, n);
  }
  return undefined;
}

function valueShapes(value: Record<string, unknown>, names: string[]): Shape[] {
  const shapes: Shape[] = new Array(names.length);
  for (let i = 0; i < names.length; i++) {
    try {
      shapes[i] = shapeOf(value[names[i]!]);
    } catch (err) {
      if (err instanceof ShapeError) throw new ShapeError(`field ${names[i]}: ${err.message}`);
      throw err;
    }
  }
  return shapes;
}

/** Merges `b` into `a` (in place) when each pair of shapes merges exactly; false, untouched, if not. */
function mergeInto(a: Shape[], b: Shape[]): boolean {
  let same = true;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i] && b[i]!.k !== 'NULL') {
      same = false;
      if (!mergeShapes(a[i]!, b[i]!, 'exact')) return false;
    }
  }
  if (!same) for (let i = 0; i < a.length; i++) a[i] = mergeShapes(a[i]!, b[i]!, 'exact')!;
  return true;
}

function toRecord(
  names: string[],
  columns: (unknown[] | undefined)[],
  k: number,
  skip: number,
  exactBigints: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) {
    if (i === skip) continue;
    out[names[i]!] = fromDuckDB(columns[i]![k], exactBigints);
  }
  return out;
}

/** A pruned query's output row `k`: fields passed on from `value`, the others from the result. */
function assemble(
  parts: Part[],
  names: string[],
  columns: (unknown[] | undefined)[],
  value: Record<string, unknown>,
  k: number,
  exactBigints: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of parts) {
    const name = p.name ?? names[p.col]!;
    out[name] =
      p.field !== undefined ? passthrough(value[p.field]) : fromDuckDB(columns[p.col]![k], exactBigints);
  }
  return out;
}
