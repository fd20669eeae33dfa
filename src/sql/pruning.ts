/**
 * Column pruning for the DuckDB micro-batch path: a record goes to DuckDB with only the fields
 * the query reads, and fields a `*` (or a plain column reference) passes on unchanged are taken
 * from the record itself instead of being read back. Loading and reading values one by one is
 * most of the path's cost; a field DuckDB would return exactly as it received it need not make
 * the trip. Only queries whose every use of the record's columns can be seen in their syntax are
 * pruned: a bare `*`, `input.*` or `* EXCLUDE (...) REPLACE (...)` at the top of the select list,
 * over `input` alone (no join, no CTE); anything else (COLUMNS(), a `*` inside an expression, a
 * positional reference, the row as a struct) runs as before, every field loaded.
 */

/** One item of the select list: a `*` over the record, or any other expression. */
export type Slot =
  | { star: true; exclude: Set<string>; replace: Map<string, unknown> }
  | { star: false; item: unknown };

export interface Pruning {
  /** Lower-cased names the query's column references mention (any part of `a.b.c`). */
  referenced: Set<string>;
  slots: Slot[];
}

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's AST is untyped JSON
type Node = any;

/**
 * How `root` (a SELECT node of DuckDB's serialized AST reading `input` as `alias`) can be pruned,
 * or undefined when some use of the record's columns is not plain to see.
 */
export function analysePruning(root: Node, alias: string): Pruning | undefined {
  if (root?.type !== 'SELECT_NODE' || root.from_table?.type !== 'BASE_TABLE') return undefined;
  if (root.cte_map?.map?.length) return undefined;
  const lowerAlias = alias.toLowerCase();
  const referenced = new Set<string>();
  let plain = true;
  const walk = (node: Node): void => {
    if (!plain || node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) walk(n);
      return;
    }
    switch (node.class) {
      case 'STAR':
      case 'POSITIONAL_REFERENCE':
        plain = false;
        return;
      case 'COLUMN_REF': {
        const names: string[] = (node.column_names ?? []).map((n: unknown) => String(n).toLowerCase());
        // `input` alone is the whole row as a struct
        if (names.length === 1 && names[0] === lowerAlias) plain = false;
        for (const n of names) referenced.add(n);
        return;
      }
    }
    for (const key of Object.keys(node)) walk(node[key]);
  };
  const slots: Slot[] = [];
  for (const item of root.select_list ?? []) {
    if (item?.class !== 'STAR') {
      walk(item);
      slots.push({ star: false, item });
      continue;
    }
    const rel = String(item.relation_name ?? '').toLowerCase();
    if (
      item.columns ||
      item.expr ||
      item.unpacked ||
      item.rename_list?.length ||
      item.qualified_exclude_list?.length ||
      (rel && rel !== lowerAlias) ||
      !(item.exclude_list ?? []).every((e: unknown) => typeof e === 'string')
    )
      return undefined;
    const replace = new Map<string, unknown>();
    for (const r of item.replace_list ?? []) {
      walk(r.value);
      replace.set(String(r.key).toLowerCase(), r.value);
    }
    slots.push({
      star: true,
      exclude: new Set((item.exclude_list as string[]).map((e) => e.toLowerCase())),
      replace,
    });
  }
  for (const key of Object.keys(root)) {
    if (key !== 'select_list' && key !== 'from_table') walk(root[key]);
  }
  return plain ? { referenced, slots } : undefined;
}

/** Whether some `*` of the query passes the field (lower-cased name) on as it is. */
export function starKeeps(p: Pruning, lower: string): boolean {
  return p.slots.some((s) => s.star && !s.exclude.has(lower) && !s.replace.has(lower));
}

/**
 * A flat record value as DuckDB gives it back from a column of its own type (see shape.ts):
 * integers within ±2^53 as numbers (-0 as 0), others as exact bigints; a string with a lone
 * surrogate with U+FFFD in its place (UTF-8 has no lone surrogates); a missing value as NULL.
 * Lists and structs are not flat (DuckDB unifies the keys of structs in a list): they are read back.
 */
export function passthrough(v: unknown): unknown {
  switch (typeof v) {
    case 'number':
      return v === 0 ? 0 : v;
    case 'string':
      return v.isWellFormed() ? v : v.toWellFormed();
    case 'bigint': {
      const n = Number(v);
      return Number.isSafeInteger(n) ? n : v;
    }
    case 'undefined':
      return null;
    default:
      return v;
  }
}
