/**
 * Which engine runs a query: compiled JavaScript (the per-record subset), DuckDB in micro-batches
 * (per-record SQL outside the subset, or joining lookup tables), or DuckDB over the whole input
 * (GROUP BY, ORDER BY, windows, ...). See docs/sql.md.
 */
import { closest, distance } from 'fastest-levenshtein';
import { SluiceError } from '../sdk/errors.ts';
import { compileCondition, compileSelect } from './compile.ts';
import { newDuckDBConnection } from './duckdb.ts';
import { type Lookups, loadLookups, quoteIdent } from './lookups.ts';
import { type AstNode, getCatalog, invalid, type Parsed, parseSelect } from './parse.ts';

export type QueryPath = 'compiled' | 'duckdb-batch' | 'duckdb-set';

export interface QueryPlan {
  path: QueryPath;
  /** One sentence naming the construct that decided the path. */
  reason: string;
  /** Where that construct is in the SQL (a character offset), when known. */
  offset?: number;
  /** Lookup tables the query reads. */
  lookups: string[];
}

export interface PlanOptions {
  /** `select` (default): a `SELECT ... FROM input ...`; `condition`: a boolean expression (filter). */
  mode?: 'select' | 'condition';
  /** Lookup tables the query may join, with paths relative to `baseDir`. */
  lookups?: Lookups;
  baseDir?: string;
  /** Check names against DuckDB's binder (loads lookup files' schemas). Default true. */
  bind?: boolean;
  /** Internal (tests, differential checks): run an in-subset query on DuckDB too. */
  forceDuckDB?: boolean;
}

export const CONDITION_PREFIX = 'SELECT * FROM input WHERE ';

/** Facts about a parsed query that decide its path. */
export interface Analysis {
  parsed: Parsed;
  /** The SQL handed to DuckDB (a condition wrapped in `SELECT * FROM input WHERE`). */
  text: string;
  prefix: number;
  /** A construct that needs the whole input, or undefined for a record-local query. */
  set?: { reason: string; loc?: number };
  lookups: string[];
  /** Input columns the query names (for binding without records). */
  columns: string[];
  /** Table aliases (lower case) of the lookups, to name a lookup in messages. */
  lookupAliases: Map<string, string>;
}

/**
 * Plans a query. Throws SLUICE_EXPR_INVALID (with `details.offset` into `sql`) when it does not
 * parse, names unknown tables or columns, or (a condition) needs a set of rows.
 */
export async function planQuery(sql: string, opts: PlanOptions = {}): Promise<QueryPlan> {
  const mode = opts.mode ?? 'select';
  let beyond: SluiceError | undefined;
  try {
    await (mode === 'condition' ? compileCondition(sql) : compileSelect(sql));
    if (!opts.forceDuckDB) {
      return { path: 'compiled', reason: 'every construct is in the compiled subset', lookups: [] };
    }
  } catch (err) {
    if (!(err instanceof SluiceError) || !err.details?.beyondSubset) throw err;
    beyond = err;
  }
  const a = await analyze(sql, mode, Object.keys(opts.lookups ?? {}));
  if (opts.bind !== false) await bindCheck(a, sql, opts);
  if (a.set) {
    return { path: 'duckdb-set', reason: a.set.reason, ...at(a.set.loc), lookups: a.lookups };
  }
  if (a.lookups.length) {
    const names = a.lookups.join(', ');
    return {
      path: 'duckdb-batch',
      reason: `joins lookup table${a.lookups.length > 1 ? 's' : ''} ${names}`,
      lookups: a.lookups,
    };
  }
  if (!beyond) {
    if (opts.forceDuckDB)
      return { path: 'duckdb-batch', reason: 'DuckDB was forced (forceDuckDB)', lookups: [] };
    return { path: 'compiled', reason: 'every construct is in the compiled subset', lookups: [] };
  }
  const offset = beyond.details?.offset as number | undefined;
  return { path: 'duckdb-batch', reason: beyondReason(beyond.message), ...at(offset), lookups: [] };
}

function at(offset: number | undefined): { offset?: number } {
  return offset === undefined ? {} : { offset };
}

function beyondReason(message: string): string {
  const text = message.replace(/ \(at line \d+, column \d+, offset \d+\)$/, '');
  const m = /^(.*?) is not yet supported in per-record SQL/.exec(text);
  if (m) return `${m[1]!.replace(/^the function /, '')} is not in the compiled subset`;
  const n = /^(.*?) is not allowed in per-record SQL/.exec(text);
  if (n) return `${n[1]} is not in the compiled subset`;
  return `${text.split(';')[0]}, outside the compiled subset`;
}

const MODIFIERS: Record<string, string> = {
  ORDER_MODIFIER: 'ORDER BY',
  DISTINCT_MODIFIER: 'DISTINCT',
  LIMIT_MODIFIER: 'LIMIT',
  LIMIT_PERCENT_MODIFIER: 'LIMIT',
};

/** Bare words DuckDB reads as functions, never as input columns. */
const BARE = new Set([
  'current_date',
  'current_time',
  'current_timestamp',
  'localtime',
  'localtimestamp',
  'current_user',
  'current_role',
  'session_user',
  'user',
  'current_schema',
  'current_catalog',
]);

/** Parses a query with DuckDB and finds what decides its path: set-level constructs, lookups, input columns. */
export async function analyze(
  sql: string,
  mode: 'select' | 'condition',
  lookupNames: string[],
): Promise<Analysis> {
  if (!sql.trim()) throw invalid(`the ${mode === 'condition' ? 'condition' : 'query'} is empty`, 0, sql);
  const prefix = mode === 'condition' ? CONDITION_PREFIX.length : 0;
  const text = mode === 'condition' ? `${CONDITION_PREFIX}${sql}\n` : sql;
  const [catalog, parsed] = await Promise.all([getCatalog(), parseSelect(text, { userText: sql, prefix })]);
  const root = parsed.node;
  const lookupByLower = new Map(lookupNames.map((n) => [n.toLowerCase(), n]));
  const cteNames = new Set<string>();
  const inputRefs: { node: AstNode; top: boolean }[] = [];
  const usedLookups = new Set<string>();
  const inputAliases = new Set<string>(['input']);
  const lookupAliases = new Map<string, string>();
  const lambdaParams = new Set<string>();
  const refs: { names: string[]; aliasable: boolean }[] = [];
  let aliasable = false;
  let aggregate: AstNode | undefined;
  let window: AstNode | undefined;
  const fail = (message: string, node: AstNode): never => {
    throw invalid(message, parsed.offset(node?.query_location), sql);
  };

  const walkTable = (t: AstNode, top: boolean): void => {
    if (!t || typeof t !== 'object') return;
    switch (t.type) {
      case 'BASE_TABLE': {
        const name = String(t.table_name);
        const lower = name.toLowerCase();
        if (t.schema_name || t.catalog_name) fail(`unknown table ${t.schema_name}.${name}`, t);
        if (cteNames.has(lower)) return;
        if (lower === 'input') {
          inputRefs.push({ node: t, top });
          if (t.alias) inputAliases.add(String(t.alias).toLowerCase());
          return;
        }
        const lookup = lookupByLower.get(lower);
        if (lookup) {
          usedLookups.add(lookup);
          lookupAliases.set(String(t.alias || name).toLowerCase(), lookup);
          return;
        }
        const tables = ['input', ...lookupNames];
        const near = closest(name, tables);
        const hint =
          distance(lower, near.toLowerCase()) <= Math.max(2, Math.floor(name.length / 3))
            ? `did you mean ${near}? `
            : '';
        fail(
          `unknown table ${name}; ${hint}the tables are input (the record)${lookupNames.length ? ` and the lookups ${lookupNames.join(', ')}` : '; declare reference data under `lookups`'}`,
          t,
        );
        return;
      }
      case 'JOIN':
        walkTable(t.left, top);
        walkTable(t.right, top);
        walk(t.condition, top);
        return;
      case 'SUBQUERY':
        walkNode(t.subquery?.node, false);
        return;
      case 'TABLE_FUNCTION':
        // inside a subquery, a generator of constants (no file, no other table) is the query's own business
        if (!top && GENERATORS.has(String(t.function?.function_name).toLowerCase())) {
          walk(t.function?.children, top);
          return;
        }
        fail(
          `table function ${t.function?.function_name}() is not allowed: read reference data with \`lookups\``,
          t.function ?? t,
        );
        return;
      case 'EMPTY':
        return;
      case 'EXPRESSION_LIST':
        // VALUES (...) in a subquery: constants, or the record's fields
        if (!top) {
          walk(t.values, top);
          return;
        }
        fail('expression list is not allowed in FROM', t);
        return;
      default:
        fail(`${String(t.type).toLowerCase().replace(/_/g, ' ')} is not allowed in FROM`, t);
    }
  };

  /** Expressions: `top` is false inside a subquery, where aggregates are the subquery's business. */
  const walk = (x: AstNode, top: boolean): void => {
    if (!x || typeof x !== 'object') return;
    if (Array.isArray(x)) {
      for (const e of x) walk(e, top);
      return;
    }
    if (x.class === 'SUBQUERY') {
      walk(x.child, top);
      walkNode(x.subquery?.node, false);
      return;
    }
    if (x.class === 'WINDOW' && top) window ??= x;
    if (x.class === 'FUNCTION' && top && !x.is_operator) {
      const name = String(x.function_name).toLowerCase();
      if (catalog.functions.get(name) === 'aggregate') aggregate ??= x;
    }
    if (x.class === 'LAMBDA') {
      for (const p of lambdaNames(x.lhs)) lambdaParams.add(p);
    }
    if (x.class === 'COLUMN_REF') refs.push({ names: (x.column_names as unknown[]).map(String), aliasable });
    for (const k of Object.keys(x)) if (k !== 'subquery') walk(x[k], top);
  };

  const walkNode = (node: AstNode, top: boolean): void => {
    if (!node) return;
    for (const c of node.cte_map?.map ?? []) {
      cteNames.add(String(c.key).toLowerCase());
      walkNode(c.value?.query?.node, false);
    }
    if (node.type === 'SET_OPERATION_NODE') {
      walkNode(node.left, top);
      walkNode(node.right, top);
      return;
    }
    if (node.type !== 'SELECT_NODE')
      fail(`${String(node.type).toLowerCase().replace(/_/g, ' ')} is not supported`, node);
    walkTable(node.from_table, top);
    for (const k of ['select_list', 'where_clause', 'group_expressions', 'having', 'qualify', 'modifiers']) {
      // GROUP BY k, ORDER BY k, HAVING k... may name a select-list alias rather than a column
      aliasable = top && !['select_list', 'where_clause'].includes(k);
      walk(node[k], top);
      aliasable = false;
    }
  };

  walkNode(root, true);

  if (!inputRefs.length) {
    throw invalid('the query must read FROM input (the record)', 0, sql);
  }
  let set: Analysis['set'];
  const loc = (n: AstNode): number | undefined => parsed.offset(n?.query_location);
  if (root.type === 'SET_OPERATION_NODE') {
    set = { reason: `${String(root.setop_type).replace(/_/g, ' ')} needs the whole input` };
  } else {
    const mod = (root.modifiers ?? []).find((m: AstNode) => MODIFIERS[m.type]);
    const grouped =
      root.group_expressions?.length ||
      root.group_sets?.length ||
      root.aggregate_handling !== 'STANDARD_HANDLING';
    if (grouped) set = { reason: 'GROUP BY needs the whole input', loc: loc(root.group_expressions?.[0]) };
    else if (window)
      set = { reason: `window function ${window.function_name}() needs the whole input`, loc: loc(window) };
    else if (aggregate) {
      const name = String(aggregate.function_name);
      set = {
        reason: `aggregate function ${name === 'count_star' ? 'count(*)' : `${name}()`} needs the whole input`,
        loc: loc(aggregate),
      };
    } else if (root.having) set = { reason: 'HAVING needs the whole input', loc: loc(root.having) };
    else if (root.qualify) set = { reason: 'QUALIFY needs the whole input', loc: loc(root.qualify) };
    else if (mod) {
      set = {
        reason: `${MODIFIERS[mod.type]} needs the whole input`,
        loc: loc(mod.orders?.[0]?.expression ?? mod.limit ?? mod.offset),
      };
    } else if (inputRefs.length > 1 || !inputRefs[0]!.top) {
      const second = inputRefs.find((r) => !r.top) ?? inputRefs[1]!;
      set = {
        reason: 'reading input more than once (a self-join or a subquery over input) needs the whole input',
        loc: loc(second.node),
      };
    }
  }
  if (set && mode === 'condition') {
    throw invalid(
      `${set.reason.replace(/ needs the whole input$/, '')} is not allowed in a filter condition: it is evaluated on each record; use a sql step`,
      set.loc,
      sql,
    );
  }

  const aliases = new Set<string>();
  if (root.type === 'SELECT_NODE') {
    for (const item of root.select_list ?? []) if (item.alias) aliases.add(String(item.alias).toLowerCase());
  }
  const columns = new Map<string, string>();
  for (const { names, aliasable: maybeAlias } of refs) {
    if (maybeAlias && names.length === 1 && aliases.has(names[0]!.toLowerCase())) continue;
    const first = names[0]!.toLowerCase();
    let col: string | undefined;
    if (names.length > 1 && inputAliases.has(first)) col = names[1];
    else if (names.length > 1 && lookupAliases.has(first)) col = undefined;
    else if (names.length === 1 && (lambdaParams.has(first) || BARE.has(first))) col = undefined;
    else col = names[0];
    if (col !== undefined && !columns.has(col.toLowerCase())) columns.set(col.toLowerCase(), col);
  }
  return {
    parsed,
    text,
    prefix,
    ...(set ? { set } : {}),
    lookups: [...usedLookups],
    columns: [...columns.values()],
    lookupAliases,
  };
}

function lambdaNames(lhs: AstNode): string[] {
  if (!lhs) return [];
  if (lhs.class === 'COLUMN_REF') return [String(lhs.column_names?.at(-1)).toLowerCase()];
  if (lhs.class === 'FUNCTION' && Array.isArray(lhs.children)) return lhs.children.flatMap(lambdaNames);
  return [];
}

/** Table functions that generate constants, allowed in a subquery (`(SELECT list(i) FROM range(4))`). */
const GENERATORS = new Set(['range', 'generate_series', 'unnest']);

/**
 * Errors that depend on the records' types or fields, which validation cannot know: not spec
 * errors (`COLUMNS('^a')` matches the fields a record has).
 */
const TYPE_DEPENDENT =
  /^(Conversion Error|Invalid Input Error|Out of Range Error)|No function matches the given name and argument types|Cannot deduce template type|Cannot compare values|could not be cast|cannot be cast|Cannot extract field|"NULL"|No matching columns found that match regex|resulted in an empty set of columns|Could not choose a best candidate function/;

/** COLUMNS('regex') or COLUMNS(lambda) matching none of the columns named: the records' fields decide. */
const FIELD_DEPENDENT = /No matching columns found that match regex|resulted in an empty set of columns/;

/** A call without arguments (`hash(*)` is `hash()` to DuckDB's parser) fails whatever the types. */
const NO_ARGUMENTS = /argument types '[^'(]*\(\)'|Can't pack nothing into a struct/;

/**
 * Binds the query in DuckDB against lookups (as views) and an `input` whose columns are the ones
 * the query names, all NULL: unknown tables, columns and functions are reported with an offset
 * into the SQL and the nearest valid names.
 */
async function bindCheck(a: Analysis, sql: string, opts: PlanOptions): Promise<void> {
  const conn = await newDuckDBConnection();
  try {
    const lookupColumns = await loadLookups(conn, opts.lookups, opts.baseDir ?? '.', false);
    const taken = new Set<string>();
    // an unqualified name that a joined lookup has is the lookup's column
    for (const name of a.lookups) for (const c of lookupColumns.get(name) ?? []) taken.add(c.toLowerCase());
    const cols = a.columns.filter((c) => !taken.has(c.toLowerCase()));
    const list = cols.length
      ? cols.map((c) => `NULL AS ${quoteIdent(c)}`).join(', ')
      : 'NULL AS __sluice_none';
    await conn.run(`CREATE OR REPLACE TEMP VIEW input AS SELECT ${list}`);
    try {
      const prepared = await conn.prepare(a.text);
      prepared.destroySync();
    } catch (err) {
      const message = (err as Error).message;
      if (TYPE_DEPENDENT.test(message) && !NO_ARGUMENTS.test(message)) return;
      if (FIELD_DEPENDENT.test(message)) return;
      throw bindError(message, a, sql, lookupColumns, cols);
    }
  } finally {
    conn.closeSync();
  }
}

/** DuckDB's message on one line, without its `LINE n:` excerpt. */
export function duckMessage(message: string): string {
  return message
    .split('\n')
    .filter((l) => l.trim() && !/^LINE \d+:/.test(l) && !/^\s*\^\s*$/.test(l))
    .join(' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/** The offset DuckDB's caret (`LINE n: ...` then `^`) points at, in the user's SQL. */
export function caretOffset(
  message: string,
  a: Pick<Analysis, 'text' | 'prefix'>,
  sql: string,
): number | undefined {
  const m = /LINE (\d+): (.*)\n( *)\^/.exec(message);
  if (!m) return undefined;
  const lineNo = Number(m[1]);
  const shown = m[2]!;
  const col = m[3]!.length - `LINE ${lineNo}: `.length;
  const lines = a.text.split('\n');
  const line = lines[lineNo - 1];
  if (line === undefined) return undefined;
  let start = 0;
  for (let i = 0; i < lineNo - 1; i++) start += lines[i]!.length + 1;
  let inLine = col;
  if (shown.startsWith('...')) {
    const idx = line.indexOf(shown.slice(3).replace(/\.\.\.$/, ''));
    if (idx < 0) return undefined;
    inLine = idx + col - 3;
  }
  const off = start + inLine - a.prefix;
  return Math.max(0, Math.min(off, sql.length));
}

function bindError(
  message: string,
  a: Analysis,
  sql: string,
  lookupColumns: Map<string, string[]>,
  inputColumns: string[],
): SluiceError {
  const offset = caretOffset(message, a, sql);
  let text = duckMessage(message);
  const qualified = /(?:Table|Values list) "([^"]+)" does not have a column named "([^"]+)"/.exec(text);
  const bare = /Referenced column "([^"]+)" not found/.exec(text);
  if (qualified) {
    const [, table, col] = qualified as unknown as [string, string, string];
    const lookup = a.lookupAliases.get(table.toLowerCase());
    const cols = lookup ? lookupColumns.get(lookup)! : undefined;
    if (cols) {
      text = `lookup table ${lookup} has no column ${col}; ${hint(col, cols)}its columns: ${cols.join(', ')}`;
    }
  } else if (bare) {
    const col = bare[1]!;
    const all = [...inputColumns, ...[...lookupColumns.values()].flat()];
    text = `unknown column ${col}; ${hint(col, all)}(${text})`;
  }
  return invalid(text, offset, sql);
}

function hint(word: string, candidates: string[]): string {
  if (!candidates.length) return '';
  const best = closest(word, candidates);
  return distance(word.toLowerCase(), best.toLowerCase()) <= Math.max(2, Math.floor(word.length / 3))
    ? `did you mean ${best}? `
    : '';
}
