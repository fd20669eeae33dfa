/**
 * Per-record SQL on DuckDB, in micro-batches: for queries outside the compiled subset, or joining
 * lookup tables. A batch is grouped by record shape (field names and value types) so each record
 * is typed as on its own; DuckDB scans each group in place (batch-scan.ts) with a row number that
 * maps the output rows back to their input record (its metadata, its position in the batch). A
 * group that fails (a bad cast) is bisected until the failing records are found: only those are
 * rejected.
 */
import type { DuckDBConnection, DuckDBMaterializedResult, DuckDBPreparedStatement } from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord, StepResult } from '../sdk/types.ts';
import { BatchFeed, feedViewSql, registerBatchScan } from './batch-scan.ts';
import { newOneThreadConnection } from './duckdb.ts';
import { type Lookups, loadLookups } from './lookups.ts';
import { CONDITION_PREFIX, duckMessage } from './plan.ts';
import { analysePruning, type Pruning, passthrough, starKeeps } from './pruning.ts';
import { mergeShapes, type Shape, ShapeError, shapeKey, shapeOf } from './shape.ts';
import { fromDuckDB, sqlValueConverter } from './values.ts';

export const ROW = '__sluice_row';
/** Shapes kept (a view and a prepared query each); beyond it the oldest are dropped. */
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
  /** The rows of this shape DuckDB scans, set per run. */
  feed: BatchFeed;
  view: string;
  names: string[];
  shapes: Shape[];
  /** Columns the query names that records of this shape lack: NULL in the view, excluded from `*`. */
  missing: string[];
  query?: string;
  /** A pruned query's output fields, in order (the row number is its last column). */
  parts?: Part[];
  /** The query, prepared once: parsing, binding and planning per batch cost more than the batch. */
  prepared?: DuckDBPreparedStatement;
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

/** Each input record's output: none, one record, or several (a query may give a record more rows). */
type Outputs = (SluiceRecord | SluiceRecord[] | undefined)[];

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
  #loaded = 0;
  /** DuckDB's own names of the select items the re-rendered query names otherwise, by index (`#ownNames`). */
  #itemNames: Map<number, string> | undefined;

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
      registerBatchScan(conn);
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
    for (const entry of this.#entries.values()) this.#release(entry);
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
    let out: Outputs;
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
        const o = out[i];
        if (r) rejections.push(r);
        else if (Array.isArray(o)) for (const x of o) records.push(x);
        else if (o) records.push(o);
      }
      at += j.batch.length;
      j.resolve(rejections.length ? { records, rejected: rejections } : { records });
    }
  }

  async #evaluate(batch: SluiceRecord[]): Promise<{ out: Outputs; rejected: (Rejection | undefined)[] }> {
    const out: Outputs = new Array(batch.length);
    const rejected: (Rejection | undefined)[] = new Array(batch.length);
    const groups = new Map<string, Group[]>();
    // records of one input mostly list the same fields in the same order: the names are compared
    // with the previous record's (property names are interned strings) before being looked up
    let lastNames: string[] = [];
    let lastKey = '';
    let fields: FieldInfo | undefined;
    for (let i = 0; i < batch.length; i++) {
      const value = batch[i]!.value;
      const names = Object.keys(value);
      if (!fields || !sameNames(names, lastNames)) {
        lastKey = names.join('\u0000');
        lastNames = names;
        fields = this.#fields(lastKey, names);
      }
      let shapes: Shape[];
      try {
        if (fields.clash) throw new ShapeError(fields.clash);
        shapes = valueShapes(value, names, fields.plan);
      } catch (err) {
        rejected[i] = this.#reject(batch[i]!, (err as Error).message);
        continue;
      }
      let list = groups.get(lastKey);
      if (!list) {
        list = [];
        groups.set(lastKey, list);
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
    out: Outputs,
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
    out: Outputs,
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
        out[i] ??= input;
        return;
      }
      // integers beyond ±2^53 stay exact bigints: DuckDB's answer, which compiled SQL defers to (per-record.ts)
      const record = { value: build(input, k, true), meta: input.meta };
      const had = out[i];
      if (had === undefined) out[i] = record;
      else if (Array.isArray(had)) had.push(record);
      else out[i] = [had, record];
    });
  }

  /** Runs the query over `rows` of the batch (DuckDB scans them in place), adding missing columns as NULL. */
  async #run(entry: Entry, rows: number[], batch: SluiceRecord[]): Promise<Result> {
    this.#calls++;
    this.#loaded += rows.length * entry.feed.columns.length;
    entry.feed.load(
      rows.map((i) => batch[i]!.value),
      rows,
    );
    try {
      for (let tries = 0; ; tries++) {
        entry.query ??= await this.#rewrite(entry);
        try {
          entry.prepared ??= await this.#conn.prepare(entry.query);
          return this.#read(entry, await entry.prepared.run());
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
      entry.feed.clear();
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
      await this.#conn.run(`DROP VIEW IF EXISTS ${old.view}`);
      this.#release(old);
    }
    const id = ++this.#seq;
    const columns = names.flatMap((name, i) =>
      shapes[i]!.k === 'NULL' ? [] : [{ name, shape: shapes[i]! }],
    );
    const entry: Entry = {
      id,
      feed: new BatchFeed(ROW, columns),
      view: `__sluice_v${id}`,
      names,
      shapes,
      missing: [],
    };
    await this.#createView(entry);
    this.#entries.set(key, entry);
    return entry;
  }

  /** Frees the entry's feed and statement. */
  #release(entry: Entry): void {
    entry.feed.close();
    this.#unprepare(entry);
  }

  #unprepare(entry: Entry): void {
    entry.prepared?.destroySync();
    entry.prepared = undefined;
  }

  async #createView(entry: Entry): Promise<void> {
    await this.#conn.run(
      `CREATE OR REPLACE TEMP VIEW ${entry.view} AS ${feedViewSql(entry.feed, entry.names, entry.missing)}`,
    );
  }

  /**
   * The user's statement reading the shape's view instead of `input`, with the row number added to
   * the select list and left out of every `*` and COLUMNS() (as are the columns only added as NULL).
   * Pruned, a `*` is spelled out: only the fields DuckDB must give back (lists, structs, replaced
   * ones) are selected. Select items that the re-rendering would name otherwise get DuckDB's own
   * name as their alias (see `#ownNames`).
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
    if (this.#mode === 'select') this.#itemNames ??= await this.#ownNames(entry);
    const names = this.#itemNames;
    // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
    const named = (item: any, i: number) => {
      const name = names?.get(i);
      return name === undefined ? item : { ...item, alias: name };
    };
    if (this.#mode === 'condition') root.select_list = [rowRef];
    else if (this.#pruning && this.#fields(entry.names.join('\u0000'), entry.names).plan) {
      const slots = this.#pruning.slots.map((s, i) =>
        s.star ? s : { star: false as const, item: named(s.item, i) },
      );
      const { select, parts } = spellOut({ ...this.#pruning, slots }, entry, alias);
      root.select_list = [...select, rowRef];
      entry.parts = parts;
    } else root.select_list = [...root.select_list.map(named), rowRef];
    await this.#hideColumns(root, alias, [ROW, ...entry.missing]);
    return this.#render(json);
  }

  /** DuckDB's SQL text of an AST. */
  async #render(json: unknown): Promise<string> {
    const r = await this.#conn.runAndReadAll('SELECT json_deserialize_sql($1::JSON)', [JSON.stringify(json)]);
    return String(r.getRowsJS()[0]?.[0]);
  }

  /**
   * Leaves `hidden` (columns of the view that are not fields of the record) out of every `*` and
   * COLUMNS() over the record, wherever it is: the select list, inside a call (`struct_pack(*COLUMNS(*))`),
   * the WHERE clause. A COLUMNS('regex') that DuckDB finds matching a hidden name becomes the
   * same selection over a `*` that leaves them out; one with a `\1`-style alias cannot, and keeps them.
   */
  // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
  async #hideColumns(root: any, alias: string, hidden: string[]): Promise<void> {
    for (const star of recordStars(root, alias)) {
      const regex = star.columns && star.expr?.class === 'CONSTANT' ? star.expr.value : undefined;
      if (regex?.type?.id === 'VARCHAR' && !regex.is_null) {
        if (String(star.alias).includes('\\')) continue;
        const re = String(regex.value);
        const hit = await this.#conn.runAndReadAll(
          `SELECT bool_or(regexp_matches(h, ${sqlString(re)})) FROM (VALUES ${hidden.map((h) => `(${sqlString(h)})`).join(', ')}) t(h)`,
        );
        if (hit.getRowsJS()[0]?.[0] !== true) continue;
        const r = await this.#conn.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [
          `SELECT COLUMNS(list_filter(*, lambda __sluice_c: regexp_matches(__sluice_c, ${sqlString(re)})))`,
        ]);
        // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
        const filter = (parseAst(String(r.getRowsJS()[0]?.[0])) as any).statements[0].node.select_list[0]
          .expr;
        const inner = filter.children[0];
        inner.relation_name = star.relation_name ?? '';
        exclude(inner, hidden);
        star.expr = filter;
      } else if (!star.expr) exclude(star, hidden);
      // COLUMNS(lambda) is COLUMNS(list_filter(*, lambda)): its inner `*` is one of the stars found
    }
  }

  /**
   * DuckDB's own names of the select items whose re-rendered text DuckDB names otherwise (a lambda
   * written `lambda x: ...`, an INTERVAL literal, a CHAR or DECIMAL cast), by item index. The user's
   * text is prepared over a temp view named input with the shape's columns, and the re-rendered
   * query beside it, each such item after a copy under a marker alias so that its column is found
   * by position. Such a name depends on the item's text only, so it is learnt once, from the first
   * shape DuckDB binds the query for (undefined until then). A name the query also refers to as
   * a column is left alone: as an alias it could be taken for that column.
   */
  async #ownNames(entry: Entry): Promise<Map<number, string> | undefined> {
    // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
    const json = parseAst(this.#ast) as any;
    const root = json.statements[0].node;
    // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
    const items: any[] = root.select_list;
    // a column reference is named after its column alike; an item with a star may expand to several
    const marked = new Set(
      items.flatMap((item, i) => (!item.alias && item.class !== 'COLUMN_REF' && !hasStar(item) ? [i] : [])),
    );
    if (!marked.size) return new Map();
    const input = findInput(root.from_table);
    const alias = String(input.alias || 'input');
    input.table_name = entry.view;
    input.alias = alias;
    root.select_list = items.flatMap((item, i) =>
      marked.has(i) ? [{ ...item, alias: `${NAME_MARK}${i}` }, item] : [item],
    );
    const columnNames = async (sql: string): Promise<string[]> => {
      const p = await this.#conn.prepare(sql);
      try {
        return Array.from({ length: p.columnCount }, (_, c) => p.columnName(c));
      } finally {
        p.destroySync();
      }
    };
    try {
      // both over the same columns, the row number too (a record without fields has no other), so
      // that their stars expand alike
      const rendered = await this.#render(json);
      await this.#conn.run(`CREATE OR REPLACE TEMP VIEW input AS SELECT * FROM ${entry.view}`);
      const own = await columnNames(this.#sql);
      const mine = await columnNames(rendered);
      if (own.length !== mine.length - marked.size) return undefined;
      const referenced = columnRefNames(json);
      const names = new Map<number, string>();
      let marks = 0;
      mine.forEach((name, c) => {
        if (!name.startsWith(NAME_MARK)) return;
        const ownName = own[c - marks++]!;
        if (ownName !== mine[c + 1] && !referenced.has(ownName.toLowerCase()))
          names.set(Number(name.slice(NAME_MARK.length)), ownName);
      });
      return names;
    } catch {
      return undefined;
    } finally {
      await this.#conn.run('DROP VIEW IF EXISTS temp.main.input');
    }
  }
}

/** The alias prefix that marks a select item's copy while DuckDB's own names are learnt. */
const NAME_MARK = '__sluice_name_';

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Adds `names` to a star's EXCLUDE list (those not there already). */
// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
function exclude(star: any, names: string[]): void {
  star.exclude_list ??= [];
  const list: unknown[] = star.exclude_list;
  const have = new Set(list.map((e) => String(typeof e === 'string' ? e : '').toLowerCase()));
  for (const n of names) if (!have.has(n.toLowerCase())) list.push(n);
}

/** The `*` and COLUMNS() nodes over the record (unqualified or qualified by its alias), outside subqueries and FROM. */
// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
function recordStars(root: any, alias: string): any[] {
  const lower = alias.toLowerCase();
  // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
  const stars: any[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
  const walk = (node: any): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) walk(n);
      return;
    }
    // a subquery's stars are over its own FROM (a lookup)
    if (node.class === 'SUBQUERY') {
      walk(node.child);
      return;
    }
    if (node.class === 'STAR') {
      const rel = String(node.relation_name ?? '').toLowerCase();
      if (!rel || rel === lower) stars.push(node);
    }
    for (const key of Object.keys(node)) walk(node[key]);
  };
  for (const key of Object.keys(root)) if (key !== 'from_table' && key !== 'cte_map') walk(root[key]);
  return stars;
}

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
function hasStar(node: any): boolean {
  if (node === null || typeof node !== 'object') return false;
  if (node.class === 'STAR') return true;
  // a subquery's `*` is over its own FROM: the item is still one column
  if (node.class === 'SUBQUERY') return false;
  return Object.values(node).some(hasStar);
}

/** The lower-cased names (every part) that the query's column references use. */
function columnRefNames(node: unknown, out = new Set<string>()): Set<string> {
  if (node === null || typeof node !== 'object') return out;
  const n = node as { class?: string; column_names?: unknown[] };
  if (n.class === 'COLUMN_REF') for (const c of n.column_names ?? []) out.add(String(c).toLowerCase());
  for (const v of Object.values(node)) columnRefNames(v, out);
  return out;
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

/**
 * The shapes of a record's fields. With a plan, a field DuckDB need not see (neither read by the
 * query nor a list or struct a `*` keeps) is NULL: left out of the scan and out of the grouping.
 */
function valueShapes(value: Record<string, unknown>, names: string[], plan?: FieldPlan | null): Shape[] {
  const shapes: Shape[] = new Array(names.length);
  for (let i = 0; i < names.length; i++) {
    if (plan && !plan.referenced[i] && !plan.starred[i]) {
      shapes[i] = NULL_SHAPE;
      continue;
    }
    let shape: Shape;
    try {
      shape = shapeOf(value[names[i]!]);
    } catch (err) {
      if (err instanceof ShapeError) throw new ShapeError(`field ${names[i]}: ${err.message}`);
      throw err;
    }
    shapes[i] = plan && !plan.referenced[i] && !nested(shape) ? NULL_SHAPE : shape;
  }
  return shapes;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
