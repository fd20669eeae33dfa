/**
 * The compile entry points: a condition, a scalar expression or a per-record SELECT, compiled to
 * JavaScript. Validation needs only these (and plan.ts); DuckDB's runtime paths are elsewhere.
 */
import type { RecordValue } from '../sdk/types.ts';
import { Binder } from './bind.ts';
import { getCatalog, invalid, parseSelect } from './parse.ts';
import { Program } from './program.ts';

/** A compiled boolean expression: true keeps the record; SQL NULL counts as false. */
export type CompiledCondition = (row: RecordValue) => boolean;

/** A compiled `SELECT ... FROM input [WHERE ...]`: the projected row, or null when WHERE filters it out. */
export type CompiledSelect = (row: RecordValue) => RecordValue | null;

const CONDITION_PREFIX = 'SELECT * FROM input WHERE ';
const MAX_CACHED = 256;
const cache = new Map<string, Promise<unknown>>();

function cached<T>(key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key) as Promise<T> | undefined;
  if (!p) {
    p = make();
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

/**
 * Compiles a boolean SQL expression over a record, e.g. `amount > 0 AND country IN ('DE','FR')`.
 * Throws SLUICE_EXPR_INVALID (with `details.offset`, a character offset in `sql`) when it does not
 * parse or leaves the subset. The function throws SLUICE_EXPR_EVAL for a record it cannot evaluate.
 */
export function compileCondition(sql: string): Promise<CompiledCondition> {
  return cached(`c\u0000${sql}`, async () => {
    if (!sql.trim()) throw invalid('the condition is empty', 0, sql);
    const [catalog, parsed] = await Promise.all([
      getCatalog(),
      parseSelect(`${CONDITION_PREFIX}${sql}\n`, { userText: sql, prefix: CONDITION_PREFIX.length }),
    ]);
    const binder = new Binder({ parsed, catalog, userText: sql });
    const node = parsed.node;
    if (
      node.type === 'SELECT_NODE' &&
      (node.select_list?.length !== 1 || node.select_list[0].class !== 'STAR')
    ) {
      throw invalid('a condition must be a single boolean expression', 0, sql);
    }
    const query = binder.bindQuery(node, 'condition');
    if (!query.where) throw invalid('the condition is empty', 0, sql);
    return new Program({ query, mode: 'condition', userText: sql }).build() as CompiledCondition;
  });
}

/** A compiled scalar expression over a record (a sink's message key): its value, SQL NULL as null. */
export type CompiledExpression = (row: RecordValue) => unknown;

const EXPRESSION_PREFIX = 'SELECT ';
const EXPRESSION_COLUMN = '__sluice_expr';

/**
 * Compiles one scalar SQL expression over a record, e.g. `customer.id || '-' || region`. Errors as
 * for `compileCondition`, with offsets inside `sql`.
 */
export function compileExpression(sql: string): Promise<CompiledExpression> {
  return cached(`e\u0000${sql}`, async () => {
    if (!sql.trim()) throw invalid('the expression is empty', 0, sql);
    const [catalog, parsed] = await Promise.all([
      getCatalog(),
      parseSelect(`${EXPRESSION_PREFIX}${sql}\nAS ${EXPRESSION_COLUMN} FROM input`, {
        userText: sql,
        prefix: EXPRESSION_PREFIX.length,
      }),
    ]);
    const node = parsed.node;
    if (
      node.type !== 'SELECT_NODE' ||
      node.select_list?.length !== 1 ||
      node.select_list[0].class === 'STAR' ||
      node.where_clause
    )
      throw invalid('expected a single SQL expression', 0, sql);
    const query = new Binder({ parsed, catalog, userText: sql }).bindQuery(node, 'select');
    const select = new Program({ query, mode: 'select', userText: sql }).build() as CompiledSelect;
    return (row: RecordValue) => select(row)?.[EXPRESSION_COLUMN] ?? null;
  });
}

/**
 * Compiles `SELECT <expressions> FROM input [WHERE <condition>]`. The function returns the projected
 * row (a new object; nested values are shared with the input) or null when WHERE filters the record.
 */
export function compileSelect(sql: string): Promise<CompiledSelect> {
  return cached(`s\u0000${sql}`, async () => {
    if (!sql.trim()) throw invalid('the query is empty', 0, sql);
    const [catalog, parsed] = await Promise.all([
      getCatalog(),
      parseSelect(sql, { userText: sql, prefix: 0 }),
    ]);
    const query = new Binder({ parsed, catalog, userText: sql }).bindQuery(parsed.node, 'select');
    return new Program({ query, mode: 'select', userText: sql }).build() as CompiledSelect;
  });
}
