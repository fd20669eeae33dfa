/**
 * SQL parsing through DuckDB's own parser (`json_serialize_sql`), plus the catalog facts the
 * compiler needs from DuckDB once per process: its keywords (for DuckDB's column names) and its
 * function names (to tell "not supported here" from "no such function").
 */

import { parseJsonExact } from '../formats/json-numbers.ts';
import { SluiceError } from '../sdk/errors.ts';
import { getDuckDB } from './duckdb.ts';

// biome-ignore lint/suspicious/noExplicitAny: the DuckDB AST is untyped JSON
export type AstNode = any;

export interface Catalog {
  keywords: Set<string>;
  /** Function name → DuckDB function type ('scalar', 'aggregate', 'macro', 'table', ...). */
  functions: Map<string, string>;
}

let queue: Promise<unknown> = Promise.resolve();

/** Runs queries on the shared connection one at a time. */
function serial<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

/** Functions DuckDB's parser knows by another name, absent from duckdb_functions(). */
const UNLISTED_FUNCTIONS: [string, string][] = [['unlist', 'table']];

let catalog: Promise<Catalog> | undefined;

export function getCatalog(): Promise<Catalog> {
  catalog ??= serial(async () => {
    const db = await getDuckDB();
    const kw = await db.runAndReadAll('SELECT keyword_name FROM duckdb_keywords()');
    const fns = await db.runAndReadAll(
      'SELECT DISTINCT function_name, function_type FROM duckdb_functions()',
    );
    const keywords = new Set(kw.getRowsJS().map((r) => String(r[0])));
    // table functions stay in: unnest() is one and works in a select list; where one does not,
    // DuckDB's binder says so when the query is handed to it
    const functions = new Map<string, string>(UNLISTED_FUNCTIONS);
    for (const [name, t] of fns.getRowsJS()) {
      // DuckDB's parser lower-cases function names (formatReadableSize is called as formatreadablesize)
      const n = String(name).toLowerCase();
      const type = String(t);
      const known = functions.get(n);
      // an aggregate overloaded as a scalar is reported as aggregate: it needs rows; a name that is
      // both a scalar and a table function (range) is the scalar in a select list
      if (known === 'aggregate') continue;
      if (type !== 'aggregate' && known && !known.startsWith('table')) continue;
      functions.set(n, type);
    }
    for (const name of await aggregateMacros(db, functions)) functions.set(name, 'aggregate');
    return { keywords, functions };
  }).catch((err: unknown) => {
    catalog = undefined;
    throw err;
  });
  return catalog;
}

/**
 * Built-in macros that call an aggregate (geomean is exp(avg(ln(x)))), directly or through
 * another such macro: like an aggregate, they need the whole input.
 */
async function aggregateMacros(
  db: Awaited<ReturnType<typeof getDuckDB>>,
  functions: Map<string, string>,
): Promise<string[]> {
  const r = await db.runAndReadAll(
    "SELECT DISTINCT lower(function_name), json_serialize_sql('SELECT ' || macro_definition) FROM duckdb_functions() WHERE function_type = 'macro'",
  );
  const calls = new Map<string, Set<string>>();
  for (const [name, ast] of r.getRowsJS()) {
    const called = calls.get(String(name)) ?? new Set<string>();
    const walk = (node: AstNode): void => {
      if (node === null || typeof node !== 'object') return;
      // a subquery's aggregate is over the subquery's rows
      if (node.class === 'SUBQUERY') return;
      if (node.class === 'FUNCTION') called.add(String(node.function_name).toLowerCase());
      for (const v of Object.values(node)) walk(v);
    };
    walk(JSON.parse(String(ast)).statements?.[0]?.node?.select_list);
    calls.set(String(name), called);
  }
  const aggregates = new Set<string>();
  for (let grew = true; grew; ) {
    grew = false;
    for (const [name, called] of calls) {
      if (aggregates.has(name)) continue;
      if ([...called].some((f) => functions.get(f) === 'aggregate' || aggregates.has(f))) {
        aggregates.add(name);
        grew = true;
      }
    }
  }
  return [...aggregates];
}

/** Position of a character offset as 1-based line and column. */
export function lineCol(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** Converts a UTF-8 byte offset (DuckDB's positions) to a UTF-16 character offset. */
export function byteToChar(text: string, byteOffset: number): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    if (bytes >= byteOffset) return i;
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return text.length;
}

export interface Parsed {
  /** The SELECT_NODE of the single statement. */
  node: AstNode;
  /** Maps a DuckDB query_location to a character offset in the user's text (undefined when unknown). */
  offset(loc: unknown): number | undefined;
}

export interface ParseOptions {
  /** Text the user wrote, and where it starts inside the SQL handed to DuckDB. */
  userText: string;
  prefix: number;
}

export function invalid(message: string, offset: number | undefined, userText: string): SluiceError {
  let msg = message;
  if (offset !== undefined) {
    const { line, column } = lineCol(userText, offset);
    msg = `${message} (at line ${line}, column ${column}, offset ${offset})`;
  }
  return new SluiceError('SLUICE_EXPR_INVALID', msg, offset === undefined ? {} : { details: { offset } });
}

/** Parses one SELECT statement with DuckDB; a syntax error becomes SLUICE_EXPR_INVALID with its position. */
export async function parseSelect(sql: string, opts: ParseOptions): Promise<Parsed> {
  const raw = await serial(async () => {
    const db = await getDuckDB();
    const r = await db.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [sql]);
    return String(r.getRowsJS()[0]?.[0]);
  });
  const json = parseJsonExact(raw) as AstNode;
  const toUser = (loc: unknown): number | undefined => {
    const n = typeof loc === 'string' ? Number(loc) : loc;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return undefined;
    const c = byteToChar(sql, n) - opts.prefix;
    return Math.max(0, Math.min(c, opts.userText.length));
  };
  if (json.error) {
    const message = String(json.error_message ?? 'invalid SQL');
    const offset = toUser(json.position);
    if (/Only SELECT statements/.test(message)) {
      throw invalid('only a SELECT statement is allowed', 0, opts.userText);
    }
    throw invalid(
      `SQL ${message.startsWith('syntax error') ? message : `error: ${message}`}`,
      offset,
      opts.userText,
    );
  }
  const statements = json.statements as AstNode[];
  if (!statements.length) throw invalid('the SQL is empty', 0, opts.userText);
  if (statements.length > 1) throw invalid('only one SQL statement is allowed', 0, opts.userText);
  return { node: statements[0].node, offset: toUser };
}
