/**
 * The DuckDB conformance suite: runs DuckDB's own sqllogictest files for scalar functions
 * (src/sql/conformance/duckdb/, from DuckDB's repository) and compares, query by query, what a
 * Sluice `sql` step gives with what the DuckDB we run gives for the same records. See
 * src/sql/conformance/README.md for the definitions (scope, records, oracle, equality).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import {
  type DuckDBConnection,
  type DuckDBInstance,
  type DuckDBType,
  type DuckDBValue,
  LIST,
  listValue,
  VARCHAR,
} from '@duckdb/node-api';
import { SluiceError } from '../../sdk/errors.ts';
import type { RecordValue } from '../../sdk/types.ts';
import { BatchQuery, shapesOf } from '../batch.ts';
import { withStatementTimeout } from '../confined.ts';
import { createDuckDBInstance } from '../duckdb.ts';
import { isComputeOnDuckDB } from '../fallback.ts';
import { compileSelect } from '../index.ts';
import { planQuery } from '../plan.ts';
import { callsTranscendental, sameValue } from '../same-value.ts';
import { shapeKey, shapeSql } from '../shape.ts';
import { appendRecords, quoteIdent } from '../table.ts';
import { fromDuckDB, sqlValueConverter } from '../values.ts';
import { parseSlt, type SltRecord } from './slt.ts';

export const TEST_ROOT = new URL('./duckdb/', import.meta.url).pathname;
export const EXCEPTIONS_FILE = new URL('./exceptions.json', import.meta.url).pathname;

/** How long one DuckDB statement may run before it is interrupted (the suite must not hang). */
const STATEMENT_MS = 5_000;
/** How long Sluice's DuckDB path may take for one query over all its records. */
const FALLBACK_MS = 30_000;
/** Rows of a test table given to a query as records; the rest are left out (reported). */
export const MAX_RECORDS = 64;

/** Statements that are not SELECTs (no need to ask DuckDB's parser). */
const SETUP =
  /^\s*(CREATE|INSERT|UPDATE|DELETE|DROP|ALTER|SET|RESET|PRAGMA|COPY|ATTACH|DETACH|USE|BEGIN|COMMIT|ROLLBACK|CHECKPOINT|INSTALL|LOAD|CALL|EXPORT|IMPORT|VACUUM|ANALYZE|PREPARE|EXECUTE|DEALLOCATE)\b/i;

/** Settings that change how DuckDB runs, never what it answers: ignored, not applied. */
const HARMLESS_SETTINGS = new Set([
  'enable_verification',
  'disable_verification',
  'verify_parallelism',
  'threads',
  'enable_profiling',
  'disable_profiling',
  'profiling_output',
  'profiling_mode',
  'debug_force_external',
  'enable_optimizer',
  'memory_limit',
  'enable_progress_bar',
  'disable_progress_bar',
]);

/** `require` arguments this DuckDB satisfies (built-in extensions, standard vector size, not Windows). */
const SATISFIED = new Set(['icu', 'json', 'parquet', 'notwindows', 'skip_reload', 'vector_size 2048']);

/** Runner commands that need files, a restart or wall-clock time: the file is left out. */
const FILE_COMMANDS = new Set(['load', 'restart', 'unzip', 'sleep', 'reconnect', 'concurrentloop']);

export type Path = 'compiled' | 'fallback' | 'refused';

export interface Counts {
  inScope: number;
  agreeCompiled: number;
  agreeFallback: number;
  /** Both refuse: DuckDB errors on every record, and Sluice refuses at validation. */
  agreeRefused: number;
  excepted: number;
  disagree: number;
  outOfScope: number;
}

export interface Disagreement {
  /** The test file, relative to src/sql/conformance/duckdb/. */
  file: string;
  line: number;
  /** The query as the test file has it (after loop substitution): the exceptions key. */
  sql: string;
  /** The query as Sluice and the oracle run it (the table renamed `input`). */
  sluiceSql: string;
  path: Path;
  /** The record on which they differ (JSON; bigints as strings). */
  record: unknown;
  sluice: string;
  duckdb: string;
  /** A grouping key: the kind of difference and the error message or functions involved. */
  category: string;
  excepted?: string;
}

export interface Exception {
  file: string;
  sql: string;
  reason: string;
}

export interface Report {
  total: Counts;
  byDirectory: Record<string, Counts>;
  outOfScopeReasons: Record<string, number>;
  /** In-scope queries run while the file had changed a setting (DuckDB's answer the same either way), per setting. */
  inScopeUnderSetting: Record<string, number>;
  /** Rows left out of in-scope queries' records (per query): a value Sluice's readers cannot take (a DATE beyond JavaScript's Date range). */
  unreadableRows: number;
  skippedFiles: { file: string; reason: string }[];
  disagreements: Disagreement[];
  /** Exceptions whose query now agrees (or no longer exists): to delete from the file. */
  stale: Exception[];
  /** In-scope queries whose table had more rows than MAX_RECORDS (only the first ones ran). */
  truncatedTables: number;
  /** Records left out of the comparison: a null field DuckDB's binder cannot type (see untypedNull). */
  untypedNullRecords: number;
  ms: number;
  /** Milliseconds per phase: open (fresh databases), parse, setup, records, duckdb (the oracle), sluice. */
  phases: Record<string, number>;
}

function emptyCounts(): Counts {
  return {
    inScope: 0,
    agreeCompiled: 0,
    agreeFallback: 0,
    agreeRefused: 0,
    excepted: 0,
    disagree: 0,
    outOfScope: 0,
  };
}

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
type Ast = any;

interface Catalog {
  aggregate: Set<string>;
  volatile: Set<string>;
  tableOnly: Set<string>;
}

type Outcome =
  | { kind: 'value'; value: Record<string, unknown> }
  | { kind: 'filtered' }
  | { kind: 'error'; message: string };

class Interrupted extends Error {}

/** Milliseconds spent per phase of the run (opening databases, parsing, setup, DuckDB, Sluice). */
const timings: Record<string, number> = {};

async function timed<T>(phase: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    timings[phase] = (timings[phase] ?? 0) + performance.now() - t0;
  }
}

/** Runs `f` on `conn`, interrupting it after `ms` (as a statement timeout does for a user's query). */
async function run<T>(conn: DuckDBConnection, ms: number, f: () => Promise<T>): Promise<T> {
  try {
    return await withStatementTimeout(conn, ms, f);
  } catch (err) {
    // DuckDB's own errors are not SluiceErrors: this one is the timeout
    if (err instanceof SluiceError && err.code === 'SLUICE_QUERY_FAILED')
      throw new Interrupted(`interrupted after ${ms} ms`);
    throw err;
  }
}

async function loadCatalog(conn: DuckDBConnection): Promise<Catalog> {
  const r = await conn.runAndReadAll(
    "SELECT lower(function_name), list(DISTINCT function_type), list(DISTINCT stability), string_agg(macro_definition, ' ') FROM duckdb_functions() GROUP BY ALL",
  );
  const cat: Catalog = { aggregate: new Set(), volatile: new Set(), tableOnly: new Set() };
  const rows = r.getRowsJS() as [string, string[], (string | null)[], string | null][];
  for (const [name, types, stabilities] of rows) {
    if (types.includes('aggregate')) cat.aggregate.add(name);
    if (types.every((t) => t === 'table' || t === 'table_macro')) cat.tableOnly.add(name);
    // error() is volatile only so that DuckDB never folds it away; its answer is deterministic
    if (name !== 'error' && stabilities.some((s) => s === 'VOLATILE' || s === 'CONSISTENT_WITHIN_QUERY'))
      cat.volatile.add(name);
  }
  // a built-in macro that calls an aggregate (geomean) is one too
  for (const [name, types, , definition] of rows) {
    if (!types.includes('macro') || !definition) continue;
    for (const m of definition.matchAll(/([\w$]+)\s*\(/g))
      if (cat.aggregate.has(m[1]!.toLowerCase())) cat.aggregate.add(name);
  }
  // set-returning in a select list: one row becomes several
  cat.tableOnly.add('unnest').add('unlist');
  return cat;
}

/** The state of one test file's database that decides whether a query is in scope. */
interface FileState {
  /**
   * Settings that differ from Sluice's now: a query runs on DuckDB both ways, and is in scope only
   * where the answers agree (a sql step cannot change a setting).
   */
  changed: string[];
  /** ATTACH/USE: queries may name another database's tables (out of scope). */
  attached?: boolean;
  /** The settings of a fresh database, to tell a change from setting a default (`SET Calendar='gregorian'`). */
  defaults: Map<string, string>;
  /** Macros, functions and types the file created (lower case): queries naming them are out of scope. */
  userNames: Set<string>;
}

interface Scoped {
  kind: 'constant' | 'table';
  /** The SQL as Sluice gets it: `... FROM input ...`. */
  sluiceSql: string;
  /** What the records are read from (`SELECT * FROM <table>`): the table's name, a derived table, a table function. */
  table?: string;
}

/**
 * Where the keywords of `words` (upper case) stand at the top level of `sql`: outside parentheses,
 * quotes and comments.
 */
function topLevelWords(sql: string, words: ReadonlySet<string>): { word: string; index: number }[] {
  const out: { word: string; index: number }[] = [];
  let depth = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      // E'...' strings take backslash escapes; the others double the quote
      const escapes = c === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '');
      i++;
      while (i < sql.length) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (c === '(' || c === '[' || c === '{') {
      depth++;
      i++;
    } else if (c === ')' || c === ']' || c === '}') {
      depth--;
      i++;
    } else if (/[A-Za-z_]/.test(c) && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const word = /^[A-Za-z_][\w$]*/.exec(sql.slice(i))![0];
      if (depth === 0 && words.has(word.toUpperCase())) out.push({ word: word.toUpperCase(), index: i });
      i += word.length;
    } else i++;
  }
  return out;
}

const CLAUSES = new Set(['FROM', 'WHERE', 'ORDER']);

const IDENT = String.raw`(?:"(?:[^"]|"")*"|[A-Za-z_][\w$]*)`;
const QUALIFIED = new RegExp(`^(?:${IDENT}\\s*\\.\\s*)*${IDENT}`);

/** Why a parsed query is out of scope, or how Sluice gets it. */
function scope(sql: string, ast: Ast, cat: Catalog, state: FileState): Scoped | { out: string } {
  if (ast.error) return { out: 'does not parse as a SELECT' };
  if (ast.statements.length !== 1) return { out: 'several statements' };
  const node = ast.statements[0].node;
  if (node.type !== 'SELECT_NODE') return { out: 'set operation (UNION, ...)' };
  if (node.cte_map?.map?.length) return { out: 'WITH' };
  if (node.group_expressions?.length || node.group_sets?.length) return { out: 'GROUP BY' };
  if (node.having) return { out: 'HAVING' };
  if (node.qualify) return { out: 'QUALIFY' };
  if (node.sample) return { out: 'SAMPLE' };
  if (node.aggregate_handling !== 'STANDARD_HANDLING') return { out: 'GROUP BY ALL' };
  let ordered = false;
  for (const m of node.modifiers ?? []) {
    if (m.type === 'ORDER_MODIFIER') ordered = true;
    else if (m.type === 'DISTINCT_MODIFIER') return { out: 'DISTINCT' };
    else return { out: 'LIMIT' };
  }
  const from = node.from_table;
  let kind: 'constant' | 'table' | 'derived';
  if (from.type === 'EMPTY') kind = 'constant';
  else if (from.type === 'BASE_TABLE') kind = 'table';
  // the rows of a derived table, a table function or VALUES in FROM are the records, as a table's are
  else if (from.type === 'SUBQUERY' || from.type === 'TABLE_FUNCTION' || from.type === 'EXPRESSION_LIST')
    kind = 'derived';
  else return { out: `FROM ${from.type.toLowerCase().replace(/_/g, ' ')}` };
  if (state.attached) return { out: 'after ATTACH/USE' };
  const why = expressionScope(
    { select: node.select_list, where: node.where_clause, mods: node.modifiers },
    cat,
  );
  if (why) return { out: why };
  const lower = sql.toLowerCase();
  for (const n of state.userNames) {
    if (new RegExp(`(^|[^\\w$])${n.replace(/[^\w$]/g, '\\$&')}($|[^\\w$])`).test(lower))
      return { out: 'names a macro or type the file created' };
  }
  let text = sql.replace(/[\s;]+$/, '');
  const clauses = topLevelWords(text, CLAUSES);
  if (ordered) {
    const last = clauses.findLast((c) => c.word === 'ORDER');
    if (!last) return { out: 'ORDER BY not found' };
    text = text.slice(0, last.index).replace(/\s+$/, '');
  }
  if (kind === 'constant') {
    // a WHERE without FROM filters the one empty record
    const where = node.where_clause ? clauses.find((c) => c.word === 'WHERE') : undefined;
    if (node.where_clause && !where) return { out: 'WHERE not found' };
    if (!where) return { kind, sluiceSql: `${text}\nFROM input` };
    return {
      kind,
      sluiceSql: `${text.slice(0, where.index).replace(/\s+$/, '')}\nFROM input\n${text.slice(where.index)}`,
    };
  }
  if (kind === 'derived') {
    const start = clauses.find((c) => c.word === 'FROM');
    const end = clauses.find((c) => c.word !== 'FROM' && start && c.index > start.index);
    if (!start) return { out: 'FROM not found' };
    const source = text.slice(start.index + 4, end?.index ?? text.length).trim();
    const alias = from.alias ? ` AS ${quoteIdent(String(from.alias))}` : '';
    return {
      kind: 'table',
      table: source,
      sluiceSql: `${text.slice(0, start.index)}FROM input${alias}${end ? ` ${text.slice(end.index)}` : ''}`,
    };
  }
  const loc = Number(from.query_location);
  const m = QUALIFIED.exec(text.slice(loc));
  if (!m || !Number.isSafeInteger(loc)) return { out: 'table name not found in the text' };
  const name = String(from.table_name);
  const qualifiedUse = new RegExp(`(^|[^\\w$"])"?${name.replace(/[^\w$]/g, '\\$&')}"?\\s*\\.`, 'i');
  const alias =
    !from.alias && qualifiedUse.test(`${text.slice(0, loc)} ${text.slice(loc + m[0].length)}`)
      ? ` AS ${quoteIdent(name)}`
      : '';
  const sluiceSql = `${text.slice(0, loc)}input${alias}${text.slice(loc + m[0].length)}`;
  const table = [from.catalog_name, from.schema_name, name]
    .filter((p: string) => p)
    .map((p: string) => quoteIdent(p))
    .join('.');
  return { kind, sluiceSql, table };
}

/** Why expressions leave the scope: a subquery over a table, window, aggregate, set-returning or volatile function. */
function expressionScope(root: unknown, cat: Catalog): string | undefined {
  let why: string | undefined;
  // `inner`: inside a subquery over constants, which is per record (DuckDB's path runs it), so
  // aggregates and the like are fine there; only the clock is not
  const visit = (v: unknown, inner: boolean): void => {
    if (why || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const e of v) visit(e, inner);
      return;
    }
    const o = v as Ast;
    const name = o.class === 'FUNCTION' ? String(o.function_name).toLowerCase() : '';
    if (o.class === 'SUBQUERY' && !inner && readsTable(o.subquery)) why = 'subquery over a table';
    else if (
      (name && cat.volatile.has(name)) ||
      (o.class === 'COLUMN_REF' &&
        o.column_names?.length === 1 &&
        CLOCK_WORDS.has(String(o.column_names[0]).toLowerCase()))
    )
      why = 'nondeterministic function';
    else if (inner) {
      // nothing else leaves the scope inside a subquery over constants
    } else if (o.class === 'WINDOW') why = 'window function';
    else if (o.class === 'PARAMETER') why = 'prepared-statement parameter';
    else if (name && cat.aggregate.has(name)) why = 'aggregate function';
    else if (name && cat.tableOnly.has(name)) why = 'set-returning or table function';
    if (why) return;
    for (const k of Object.keys(o)) visit(o[k], inner || o.class === 'SUBQUERY');
  };
  visit(root, false);
  return why;
}

/** Whether a query (part) reads a table: a base table in some FROM, or a CTE naming one. */
function readsTable(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some(readsTable);
  const o = v as Ast;
  if (o.type === 'BASE_TABLE') return true;
  return Object.keys(o).some((k) => readsTable(o[k]));
}

/**
 * DuckDB's ASTs of a file's statements (`{ error: true }` for a statement that is not a SELECT or
 * does not parse), in one round trip: parsing needs none of the file's state.
 */
async function parseAll(conn: DuckDBConnection, sqls: string[]): Promise<Map<string, Ast>> {
  const unique = [...new Set(sqls.filter((q) => !SETUP.test(q)))];
  const out = new Map<string, Ast>();
  if (!unique.length) return out;
  const r = await timed('parse', () =>
    conn.runAndReadAll(
      'SELECT json_serialize_sql(s) FROM unnest($1) WITH ORDINALITY AS t(s, i) ORDER BY i',
      [listValue(unique)],
      [LIST(VARCHAR)],
    ),
  );
  r.getRowsJS().forEach(([json], i) => {
    out.set(unique[i]!, JSON.parse(String(json)));
  });
  return out;
}

/** Bare words DuckDB reads as the clock (`CURRENT_TIME`), parsed as column references. */
const CLOCK_WORDS = new Set([
  'current_date',
  'current_time',
  'current_timestamp',
  'localtime',
  'localtimestamp',
]);

/** Names of the functions, operators and casts a query uses (for grouping disagreements). */
function functionsOf(ast: Ast): string[] {
  const names = new Set<string>();
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const e of v) visit(e);
      return;
    }
    const o = v as Ast;
    if (o.class === 'FUNCTION') names.add(String(o.function_name).toLowerCase());
    else if (o.class === 'CAST') names.add(`CAST AS ${String(o.cast_type?.id ?? '?')}`);
    else if (o.class === 'COMPARISON' || o.class === 'CONJUNCTION' || o.class === 'OPERATOR')
      names.add(String(o.type));
    for (const k of Object.keys(o)) visit(o[k]);
  };
  visit(ast);
  return [...names].sort();
}

/** DuckDB's output row as a record: later columns of one name win, at the earlier position (rowToRecord's rule). */
function toRecordExact(names: readonly string[], row: readonly unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) out[names[i]!] = fromDuckDB(row[i], true);
  return out;
}

/** The first line of an error message, without DuckDB's JSON wrapper. */
function firstLine(message: string): string {
  return message.split('\n')[0]!.slice(0, 300);
}

/**
 * The one-row `input` of a file's database (a temp view over a temp table), typed as Sluice types
 * the record, built with the DuckDB path's own code. Consecutive records of one shape reuse it.
 */
class OracleInput {
  #key?: string;
  #value?: RecordValue;
  readonly conn: DuckDBConnection;

  constructor(conn: DuckDBConnection) {
    this.conn = conn;
  }

  async load(value: RecordValue): Promise<void> {
    const names = Object.keys(value);
    const shapes = shapesOf(value, names);
    const typed = names.flatMap((name, i) => (shapes[i]!.k === 'NULL' ? [] : [{ name, shape: shapes[i]! }]));
    const key = `${names.join('\u0000')}\u0001${shapes.map(shapeKey).join('\u0000')}`;
    if (key === this.#key) {
      if (this.#value === value || !names.length) return;
      await this.conn.run('DELETE FROM __sluice_conformance');
    } else {
      const defs = ['__sluice_row BIGINT', ...typed.map((c) => `${quoteIdent(c.name)} ${shapeSql(c.shape)}`)];
      const cols = names.map((n, i) =>
        shapes[i]!.k === 'NULL' ? `NULL AS ${quoteIdent(n)}` : quoteIdent(n),
      );
      if (!cols.length) cols.push('__sluice_row');
      await this.conn.run(`CREATE OR REPLACE TEMP TABLE __sluice_conformance (${defs.join(', ')})`);
      await this.conn.run(
        `CREATE OR REPLACE TEMP VIEW input AS SELECT ${cols.join(', ')} FROM __sluice_conformance`,
      );
      this.#key = key;
    }
    await appendRecords(this.conn, '__sluice_conformance', typed, [value], [0]);
    this.#value = value;
  }
}

/** DuckDB's answer for one record: the query over a one-row `input` typed as Sluice types the record. */
async function oracle(input: OracleInput, sql: string, value: RecordValue): Promise<Outcome> {
  const conn = input.conn;
  await input.load(value);
  try {
    const r = await run(conn, STATEMENT_MS, () => conn.runAndReadAll(sql));
    const rows = r.convertRows(sqlValueConverter) as unknown[][];
    if (rows.length === 0) return { kind: 'filtered' };
    if (rows.length > 1)
      return { kind: 'error', message: `DuckDB returned ${rows.length} rows for one record` };
    return { kind: 'value', value: toRecordExact(r.columnNames(), rows[0]!) };
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    return { kind: 'error', message: firstLine((err as Error).message) };
  }
}

/** Sluice's answers for the records, and the path it took. */
async function sluice(sql: string, records: RecordValue[]): Promise<{ path: Path; outcomes: Outcome[] }> {
  let compiled: Awaited<ReturnType<typeof compileSelect>>;
  try {
    compiled = await compileSelect(sql);
  } catch (err) {
    const refused = (message: string) => ({
      path: 'refused' as const,
      outcomes: records.map(() => ({ kind: 'error' as const, message })),
    });
    if (!(err instanceof SluiceError)) return refused(`crash: ${(err as Error)?.stack ?? err}`);
    if (err.code !== 'SLUICE_EXPR_INVALID' || !err.details?.beyondSubset)
      return refused(`${err.code}: ${err.message}`);
    let plan: Awaited<ReturnType<typeof planQuery>>;
    try {
      plan = await planQuery(sql);
    } catch (e) {
      return refused(`${(e as SluiceError).code ?? 'crash'}: ${(e as Error).message}`);
    }
    if (plan.path !== 'duckdb-batch') return refused(`planned ${plan.path}: ${plan.reason}`);
    return { path: 'fallback', outcomes: await fallback(sql, records) };
  }
  // a record compiled SQL hands to DuckDB (ComputeOnDuckDB: an integer beyond ±2^53) is evaluated
  // there, as the sql step does (src/sql/per-record.ts)
  const onDuckDB: number[] = [];
  const outcomes = records.map((value, i): Outcome => {
    try {
      const out = compiled(value);
      return out === null ? { kind: 'filtered' } : { kind: 'value', value: out };
    } catch (err) {
      if (isComputeOnDuckDB(err)) {
        onDuckDB.push(i);
        return { kind: 'filtered' };
      }
      if (err instanceof SluiceError && err.code === 'SLUICE_EXPR_EVAL')
        return { kind: 'error', message: `${err.code}: ${err.message}` };
      return { kind: 'error', message: `crash: ${(err as Error)?.stack ?? err}` };
    }
  });
  if (onDuckDB.length) {
    const theirs = await fallback(
      sql,
      onDuckDB.map((i) => records[i]!),
    );
    onDuckDB.forEach((i, k) => {
      outcomes[i] = theirs[k]!;
    });
  }
  return { path: 'compiled', outcomes };
}

/** The DuckDB micro-batch path, one record per batch so each outcome maps to its record. */
async function fallback(sql: string, records: RecordValue[]): Promise<Outcome[]> {
  const q = await BatchQuery.open(sql);
  try {
    // one batch, as a step gives it; each record's index rides in its metadata key
    const work = (async () => {
      const r = await q.process(records.map((value, i) => ({ value, meta: { key: i } })));
      const outcomes: Outcome[] = records.map(() => ({ kind: 'filtered' }));
      const seen = new Set<number>();
      for (const rej of r.rejected ?? []) {
        const i = rej.record?.meta.key as number;
        outcomes[i] = { kind: 'error', message: `${rej.error.code}: ${rej.error.message}` };
      }
      for (const out of r.records) {
        const i = out.meta.key as number;
        outcomes[i] = seen.has(i)
          ? { kind: 'error', message: 'several output records for one input record' }
          : { kind: 'value', value: out.value };
        seen.add(i);
      }
      return outcomes;
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the DuckDB path took over ${FALLBACK_MS} ms`)), FALLBACK_MS);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await q.close();
  }
}

/** A value as JSON for the report (bigints, non-finite numbers, -0, Dates and bytes kept visible). */
export function show(v: unknown): string {
  return JSON.stringify(v, function (this: unknown, k, x) {
    const raw = (this as Record<string, unknown>)?.[k];
    if (typeof raw === 'bigint') return `${raw}n`;
    if (raw instanceof Date) return Number.isNaN(raw.getTime()) ? 'Invalid Date' : raw.toISOString();
    if (raw instanceof Uint8Array) return `bytes:${Buffer.from(raw).toString('hex')}`;
    if (typeof raw === 'number' && (!Number.isFinite(raw) || Object.is(raw, -0)))
      return String(raw === 0 ? '-0' : raw);
    return x;
  });
}

function showOutcome(o: Outcome): string {
  if (o.kind === 'error') return `error: ${o.message.split('\n')[0]}`;
  if (o.kind === 'filtered') return 'filtered out (no row)';
  return show(o.value);
}

/** How a Sluice outcome differs from DuckDB's, or undefined when they agree. */
function differ(mine: Outcome, theirs: Outcome, tolerant: boolean): string | undefined {
  if (mine.kind === 'error' && mine.message.startsWith('crash:')) return 'Sluice crashed';
  if (theirs.kind === 'error')
    return mine.kind === 'error' ? undefined : 'DuckDB errors, Sluice gives a value';
  if (mine.kind === 'error') return 'Sluice errors, DuckDB gives a value';
  if (mine.kind !== theirs.kind)
    return mine.kind === 'filtered' ? 'Sluice filters the record out' : 'DuckDB filters the record out';
  if (mine.kind === 'filtered' || theirs.kind === 'filtered') return undefined;
  const names = Object.keys(mine.value);
  const expected = Object.keys(theirs.value);
  if (names.join('\u0000') !== expected.join('\u0000')) return 'column names differ';
  for (const k of names) if (!sameValue(mine.value[k], theirs.value[k], tolerant)) return 'values differ';
  return undefined;
}

/** Strips the parts of a message that vary between instances of one cause (quoted values, numbers, positions). */
function messageClass(message: string): string {
  return message
    .replace(/^SLUICE_EXPR_\w+: /, '')
    .replace(/ \(at line \d+, column \d+, offset \d+\)/g, '')
    .replace(/ \(in [\s\S]*\)$/, '')
    .replace(/'[^']*'/g, "'…'")
    .replace(/"[^"]*"/g, '"…"')
    .replace(/-?\d+(\.\d+)?/g, 'N')
    .slice(0, 160);
}

function categoryOf(kind: string, mine: Outcome, theirs: Outcome, fns: string[]): string {
  if (kind === 'Sluice crashed' && mine.kind === 'error')
    return `Sluice crashed: ${messageClass(mine.message.slice(7))}`;
  if (kind === 'Sluice errors, DuckDB gives a value' && mine.kind === 'error')
    return `Sluice errors: ${messageClass(mine.message)}`;
  if (kind === 'DuckDB errors, Sluice gives a value' && theirs.kind === 'error')
    return `DuckDB errors: ${messageClass(theirs.message)}`;
  if (kind === 'column names differ' && mine.kind === 'value' && theirs.kind === 'value')
    return `column names differ: ${nameDifference(Object.keys(mine.value), Object.keys(theirs.value))}`;
  return `${kind}: ${fns.filter((f) => !f.startsWith('COMPARE_') && !f.startsWith('CONJUNCTION_')).join(', ') || '(none)'}`;
}

/** The part of the first differing column name that differs: Sluice's text, then DuckDB's. */
function nameDifference(mine: string[], theirs: string[]): string {
  if (mine.length !== theirs.length) return `${mine.length} columns where DuckDB has ${theirs.length}`;
  const i = mine.findIndex((n, k) => n !== theirs[k]);
  const a = mine[i]!;
  const b = theirs[i]!;
  let start = 0;
  while (start < a.length && a[start] === b[start]) start++;
  let end = 0;
  while (end < a.length - start && end < b.length - start && a.at(-1 - end) === b.at(-1 - end)) end++;
  const cut = (t: string) => JSON.stringify(t.slice(start, t.length - end).slice(0, 40));
  return `Sluice ${cut(a)} where DuckDB ${cut(b)}`;
}

/** The records a table's rows make, as Sluice's DuckDB readers give them. */
async function tableRecords(
  conn: DuckDBConnection,
  table: string,
): Promise<{ records: RecordValue[]; truncated: boolean; unreadable: number } | { out: string }> {
  const r = await run(conn, STATEMENT_MS, () =>
    conn.runAndReadAll(`SELECT * FROM ${table} LIMIT ${MAX_RECORDS + 1}`),
  );
  // a row holding a value the readers cannot take (a DATE beyond JavaScript's Date range) never
  // reaches a step: it is left out, and the other rows are the records
  let failure: string | undefined;
  const converter = (value: DuckDBValue, type: DuckDBType): unknown => {
    try {
      return sqlValueConverter(value, type, converter);
    } catch (err) {
      failure ??= (err as Error).message;
      return UNREADABLE;
    }
  };
  const rows = r.convertRows(converter) as unknown[][];
  const names = r.columnNames();
  const records: RecordValue[] = [];
  let unreadable = 0;
  for (const row of rows.slice(0, MAX_RECORDS)) {
    if (holdsUnreadable(row)) {
      unreadable++;
      continue;
    }
    const value = toRecordExact(names, row) as RecordValue;
    try {
      shapesOf(value, Object.keys(value));
    } catch {
      return { out: 'the table holds a value with no record type (an empty struct, a mixed list)' };
    }
    records.push(value);
  }
  if (failure && !records.length)
    return { out: `the table cannot be read (${messageClass(failure).split(':')[0]})` };
  return { records, truncated: rows.length > MAX_RECORDS, unreadable };
}

const UNREADABLE = Symbol('unreadable');

function holdsUnreadable(v: unknown): boolean {
  if (v === UNREADABLE) return true;
  if (Array.isArray(v)) return v.some(holdsUnreadable);
  if (v && typeof v === 'object' && !(v instanceof Date) && !(v instanceof Uint8Array))
    return Object.values(v).some(holdsUnreadable);
  return false;
}

function settingName(sql: string): string | undefined {
  const m = /^\s*(?:SET|RESET|PRAGMA)\s+(?:(?:GLOBAL|SESSION|LOCAL)\s+)?([\w.]+)/i.exec(sql);
  return m?.[1]?.toLowerCase();
}

export interface RunOptions {
  /** Only files whose path (relative to the test root) contains this. */
  filter?: string;
  /** The test files' folder (default: DuckDB's files under src/sql/conformance/duckdb/). */
  root?: string;
  /** The exceptions file (default: src/sql/conformance/exceptions.json). */
  exceptionsFile?: string;
  /** Called after each file, for progress. */
  onFile?: (file: string, ms: number) => void;
}

async function listTests(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.test'))
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

export async function loadExceptions(path = EXCEPTIONS_FILE): Promise<Exception[]> {
  const doc = JSON.parse(await readFile(path, 'utf8')) as { exceptions: Exception[] };
  return doc.exceptions;
}

export function exceptionKey(file: string, sql: string): string {
  return `${file}\u0000${sql.trim()}`;
}

/** Runs every test file and classifies every query; see Report. */
export async function runConformance(opts: RunOptions = {}): Promise<Report> {
  const started = Date.now();
  const root = opts.root ?? TEST_ROOT;
  const exceptions = await loadExceptions(opts.exceptionsFile);
  const byKey = new Map(exceptions.map((e) => [exceptionKey(e.file, e.sql), e]));
  const used = new Set<string>();
  const report: Report = {
    total: emptyCounts(),
    byDirectory: {},
    outOfScopeReasons: {},
    inScopeUnderSetting: {},
    unreadableRows: 0,
    skippedFiles: [],
    disagreements: [],
    stale: [],
    truncatedTables: 0,
    untypedNullRecords: 0,
    ms: 0,
    phases: {},
  };
  let catalog: Catalog | undefined;
  // a database at Sluice's settings, for the files that change one (made on first use)
  let defaults: Promise<{ db: DuckDBInstance; input: OracleInput }> | undefined;
  const defaultsOracle = async (): Promise<OracleInput> => {
    defaults ??= (async () => {
      const db = await createDuckDBInstance();
      const conn = await db.connect();
      await conn.run('SET threads = 1');
      return { db, input: new OracleInput(conn) };
    })();
    return (await defaults).input;
  };
  // the next file's database is created while this file runs (creating one takes a while)
  let next: Promise<DuckDBInstance> | undefined;
  for (const file of await listTests(root)) {
    if (opts.filter && !file.includes(opts.filter)) continue;
    const t0 = Date.now();
    const text = await readFile(join(root, file), 'utf8');
    const records = parseSlt(text);
    const skip = fileSkipReason(records, text);
    if (skip) {
      report.skippedFiles.push({ file, reason: skip });
      continue;
    }
    const dir = file.split('/')[0]!;
    report.byDirectory[dir] ??= emptyCounts();
    const counts = report.byDirectory[dir];
    const db: DuckDBInstance = await timed('open', () => next ?? createDuckDBInstance());
    next = createDuckDBInstance();
    const conn = await db.connect();
    try {
      await conn.run('SET threads = 1');
      catalog ??= await loadCatalog(conn);
      const asts = await parseAll(
        conn,
        records.flatMap((r) => (r.kind === 'command' ? [] : [r.sql])),
      );
      const tables = new Map<string, Awaited<ReturnType<typeof tableRecords>>>();
      const state: FileState = { changed: [], userNames: new Set(), defaults: await readSettings(conn) };
      const input = new OracleInput(conn);
      const pending: Promise<void>[] = [];
      for (const rec of records) {
        if (rec.kind === 'command') {
          if (rec.name === 'halt') break;
          continue;
        }
        const count = (k: keyof Counts) => {
          counts[k]++;
          report.total[k]++;
        };
        const outOfScope = (reason: string) => {
          count('outOfScope');
          report.outOfScopeReasons[reason] = (report.outOfScopeReasons[reason] ?? 0) + 1;
        };
        const ast: Ast = asts.get(rec.sql) ?? { error: true };
        if (ast.error) {
          // not a SELECT: a statement that sets the file's state up
          await timed('setup', () => execute(conn, rec.sql, state));
          tables.clear();
          if (rec.kind === 'query') outOfScope('not a SELECT');
          continue;
        }
        const s = scope(rec.sql, ast, catalog, state);
        if ('out' in s) {
          outOfScope(s.out);
          continue;
        }
        const changed = state.changed;
        const verdict = await judgeQuery(
          { file: input, defaults: defaultsOracle, changed },
          tables,
          file,
          rec,
          s,
          ast,
        );
        if ('out' in verdict) {
          outOfScope(verdict.out);
          continue;
        }
        report.unreadableRows += verdict.unreadable;
        pending.push(
          verdict.finish.then((judged) => {
            if (judged.truncated) report.truncatedTables++;
            for (const name of changed)
              report.inScopeUnderSetting[name] = (report.inScopeUnderSetting[name] ?? 0) + 1;
            report.untypedNullRecords += judged.untypedNull ?? 0;
            count('inScope');
            if (!judged.disagreement) {
              count(
                judged.path === 'compiled'
                  ? 'agreeCompiled'
                  : judged.path === 'fallback'
                    ? 'agreeFallback'
                    : 'agreeRefused',
              );
              return;
            }
            const key = exceptionKey(file, rec.sql);
            const exception = byKey.get(key);
            if (exception) {
              used.add(key);
              count('excepted');
              report.disagreements.push({ ...judged.disagreement, excepted: exception.reason });
            } else {
              count('disagree');
              report.disagreements.push(judged.disagreement);
            }
          }),
        );
      }
      await Promise.all(pending);
    } finally {
      conn.closeSync();
      db.closeSync();
    }
    opts.onFile?.(file, Date.now() - t0);
  }
  report.stale = exceptions.filter(
    (e) => !used.has(exceptionKey(e.file, e.sql)) && (!opts.filter || e.file.includes(opts.filter)),
  );
  if (next) (await next).closeSync();
  if (defaults) {
    const { db, input } = await defaults;
    input.conn.closeSync();
    db.closeSync();
  }
  report.disagreements.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
  report.ms = Date.now() - started;
  for (const [k, v] of Object.entries(timings)) {
    report.phases[k] = Math.round(v);
    delete timings[k];
  }
  return report;
}

function fileSkipReason(records: SltRecord[], text: string): string | undefined {
  for (const r of records) {
    if (r.kind !== 'command') continue;
    if (r.name === 'require') {
      const what = r.args.join(' ');
      if (!SATISFIED.has(what) && !SATISFIED.has(r.args[0]!)) return `require ${what}`;
    }
    if (FILE_COMMANDS.has(r.name)) return `uses the runner command ${r.name}`;
  }
  if (/__TEST_DIR__|\{DATA_DIR\}|'data\//.test(text)) return 'reads or writes files';
  return undefined;
}

/** Runs a statement of the file's setup (its errors are the test's business), noting what changes scope. */
async function execute(conn: DuckDBConnection, sql: string, state: FileState): Promise<void> {
  const setting = settingName(sql);
  if (setting && HARMLESS_SETTINGS.has(setting)) return;
  try {
    await run(conn, STATEMENT_MS, () => conn.run(sql));
  } catch {
    return;
  }
  if (setting) await noteSettings(conn, state);
  else if (/^\s*(ATTACH|USE)\b/i.test(sql)) state.attached = true;
  for (const m of sql.matchAll(
    /\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:MACRO|FUNCTION|TYPE)\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))*)/gi,
  )) {
    state.userNames.add(m[1]!.split('.').at(-1)!.replace(/"/g, '').toLowerCase());
  }
}

async function readSettings(conn: DuckDBConnection): Promise<Map<string, string>> {
  const r = await conn.runAndReadAll('SELECT name, value FROM duckdb_settings()');
  return new Map(r.getRowsJS().map(([n, v]) => [String(n), String(v)]));
}

/** After a SET/RESET/PRAGMA: which settings now differ from a fresh database's (so scope follows RESET too). */
async function noteSettings(conn: DuckDBConnection, state: FileState): Promise<void> {
  const now = await readSettings(conn);
  const changed = [...now]
    .filter(([n, v]) => state.defaults.get(n) !== v && !HARMLESS_SETTINGS.has(n.toLowerCase()))
    .map(([n]) => n);
  // an alias changes with its setting (null_order with default_null_order): one name is enough
  state.changed = changed.filter(
    (n) => !SETTING_ALIASES.has(n) || !changed.includes(SETTING_ALIASES.get(n)!),
  );
}

/** Settings that are another's alias: listed under the other's name. */
const SETTING_ALIASES = new Map([['null_order', 'default_null_order']]);

type Judged = { path: Path; truncated: boolean; untypedNull?: number; disagreement?: Disagreement };
/** Out of scope, or in scope with Sluice's side under way (it needs no state of the file's database). */
type Verdict = { out: string } | { finish: Promise<Judged>; unreadable: number };

/** How many queries' Sluice side run at once: each waits mostly on DuckDB's threads. */
const SLUICE_CONCURRENCY = Number(process.env.SLUICE_CONFORMANCE_CONCURRENCY ?? 4);
let running = 0;
const waiting: (() => void)[] = [];

async function limit<T>(f: () => Promise<T>): Promise<T> {
  if (running >= SLUICE_CONCURRENCY) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/**
 * DuckDB cannot find a column (or the table's `rowid`) the record does not have: Sluice's records
 * have no schema, so a missing field reads as NULL there; the test meant the table's columns.
 */
function lacksColumn(record: RecordValue, theirs: Outcome): boolean {
  if (theirs.kind !== 'error') return false;
  const m = /^Binder Error: Referenced column "([^"]+)" not found/.exec(theirs.message);
  if (!m) return false;
  const name = m[1]!.toLowerCase();
  return !Object.keys(record).some((k) => k.toLowerCase() === name);
}

/**
 * A record with a null field on which DuckDB's binder cannot pick a function: the field is an
 * untyped NULL in the one-row input, which a typed column (other records) would not be.
 */
function untypedNull(record: RecordValue, theirs: Outcome): boolean {
  return (
    theirs.kind === 'error' &&
    /^Binder Error: (Could not choose a best candidate function|Cannot deduce template type)/.test(
      theirs.message,
    ) &&
    Object.values(record).some((v) => v === null)
  );
}

/** The oracle's connections: the file's database, and one at Sluice's settings for a file that changed some. */
interface Oracles {
  file: OracleInput;
  defaults: () => Promise<OracleInput>;
  changed: readonly string[];
}

async function judgeQuery(
  oracles: Oracles,
  /** Records per table, read once until a statement may have changed them. */
  tables: Map<string, Awaited<ReturnType<typeof tableRecords>>>,
  file: string,
  rec: Extract<SltRecord, { sql: string }>,
  s: Scoped,
  ast: Ast,
): Promise<Verdict> {
  const conn = oracles.file.conn;
  let records: RecordValue[] = [{}];
  let truncated = false;
  let unreadable = 0;
  if (s.kind === 'table') {
    let got = tables.get(s.table!);
    if (!got) {
      try {
        got = await timed('records', () => tableRecords(conn, s.table!));
      } catch (err) {
        got = {
          out:
            err instanceof Interrupted
              ? 'reading the table took too long'
              : `the table cannot be read (${messageClass((err as Error).message).split(':')[0]})`,
        };
      }
      tables.set(s.table!, got);
    }
    if ('out' in got) return got;
    if (!got.records.length) return { out: 'the table is empty' };
    records = got.records;
    truncated = got.truncated;
    unreadable = got.unreadable;
  }
  let theirs: Outcome[];
  const answers = async (input: OracleInput): Promise<Outcome[]> => {
    const out: Outcome[] = [];
    for (const r of records) out.push(await oracle(input, s.sluiceSql, r));
    return out;
  };
  try {
    if (!oracles.changed.length) theirs = await timed('duckdb', () => answers(oracles.file));
    else {
      // the answer under Sluice's settings is the one to give; the query is in scope only when
      // the file's settings give it too (the two databases answer at once)
      const defaults = await oracles.defaults();
      // both settle before either connection is used again (an interrupted one throws after)
      const settled = await timed('duckdb', () =>
        Promise.allSettled([answers(oracles.file), answers(defaults)]),
      );
      const [file, ours] = settled.map((r) => {
        if (r.status === 'rejected') throw r.reason;
        return r.value;
      }) as [Outcome[], Outcome[]];
      if (ours.some((o, i) => differ(o, file[i]!, false)))
        return { out: `depends on setting ${oracles.changed.join(', ')}` };
      theirs = ours;
    }
  } catch (err) {
    if (err instanceof Interrupted) return { out: 'DuckDB took too long' };
    throw err;
  }
  if (theirs.some((t, i) => lacksColumn(records[i]!, t)))
    return { out: 'names a column the table lacks (a missing field is NULL in a record)' };
  const untyped = records.map((r, i) => untypedNull(r, theirs[i]!));
  const compared = untyped.filter((u) => !u).length;
  if (!compared) return { out: 'only records with an untyped NULL DuckDB cannot bind' };
  return {
    finish: limit(() => compareSluice(file, rec, s, ast, records, theirs, truncated, untyped)),
    unreadable,
  };
}

/** Sluice's answer for the records, compared with DuckDB's. */
async function compareSluice(
  file: string,
  rec: Extract<SltRecord, { sql: string }>,
  s: Scoped,
  ast: Ast,
  records: RecordValue[],
  theirs: Outcome[],
  truncated: boolean,
  untyped: boolean[],
): Promise<Judged> {
  let mine: { path: Path; outcomes: Outcome[] };
  try {
    mine = await timed('sluice', () => sluice(s.sluiceSql, records));
  } catch (err) {
    mine = {
      path: 'fallback',
      outcomes: records.map(() => ({ kind: 'error', message: `crash: ${(err as Error).message}` })),
    };
  }
  const tolerant = callsTranscendental(s.sluiceSql);
  const compared = untyped.filter((u) => !u).length;
  for (let i = 0; i < records.length; i++) {
    if (untyped[i]) continue;
    const kind = differ(mine.outcomes[i]!, theirs[i]!, tolerant);
    if (!kind) continue;
    return {
      path: mine.path,
      truncated,
      disagreement: {
        file,
        line: rec.line,
        sql: rec.sql,
        sluiceSql: s.sluiceSql,
        path: mine.path,
        record: JSON.parse(show(records[i])),
        sluice: showOutcome(mine.outcomes[i]!),
        duckdb: showOutcome(theirs[i]!),
        category: `[${mine.path}] ${categoryOf(kind, mine.outcomes[i]!, theirs[i]!, functionsOf(ast))}`,
      },
    };
  }
  // a refusal agrees only where DuckDB errors on every record (checked above per record)
  return { path: mine.path, truncated, untypedNull: records.length - compared };
}
