/**
 * The compiler's intermediate form: DuckDB's AST reduced to the per-record subset, with column
 * references resolved to record paths. Every node keeps DuckDB's text of the expression (what
 * DuckDB would name an unaliased column, and what errors quote) and its offset in the SQL.
 */
import type { SqlType } from './types.ts';

export type PathSeg = string | number;

interface Base {
  /** DuckDB's rendering of the expression (its default column name when unaliased). */
  text: string;
  /** Character offset in the user's SQL, when DuckDB reports one. */
  loc: number | undefined;
}

export type Node =
  /** `value` is in the compiler's internal representation (see runtime.ts). */
  | (Base & { k: 'const'; type: SqlType; value: unknown; lit: boolean })
  /** A value read from the record along a path of field names and list indexes. */
  | (Base & { k: 'leaf'; path: PathSeg[] })
  /** An argument of a compiled run-time site (see codegen.ts `dynamic`). */
  | (Base & { k: 'param'; i: number })
  /** A lambda parameter (`x` in `x -> x + 1`), numbered per query; it shadows a column of that name. */
  | (Base & { k: 'lvar'; id: number })
  /**
   * An operator or function with strict argument evaluation. `to` is the target of a cast,
   * `names` the field names of a struct literal, `opt` per-function flags (LIKE's case-insensitivity).
   */
  | (Base & {
      k: 'call';
      fn: string;
      args: Node[];
      to?: SqlType;
      names?: string[];
      opt?: Record<string, unknown>;
      /** The lambda argument of list_transform, list_filter, list_reduce: its parameters' ids and body. */
      lambda?: { params: number[]; body: Node };
    })
  /** `between` marks the AND that `x BETWEEN lo AND hi` becomes. */
  | (Base & { k: 'and' | 'or'; args: Node[]; between?: boolean })
  | (Base & { k: 'isnull'; arg: Node; not: boolean })
  | (Base & { k: 'case'; whens: { when: Node; result: Node }[]; else: Node | null })
  | (Base & { k: 'coalesce'; args: Node[] });

export type OutColumn =
  | { kind: 'expr'; name: string; node: Node }
  | { kind: 'star'; exclude: string[]; replace: { name: string; node: Node }[] };

export interface BoundQuery {
  columns: OutColumn[];
  where: Node | null;
  /** Bare column names that are also select-list aliases: a record lacking the column goes to DuckDB. */
  lateral?: string[];
}

/** The direct children of a node. */
export function children(n: Node): Node[] {
  switch (n.k) {
    case 'call':
      return n.lambda ? [...n.args, n.lambda.body] : n.args;
    case 'and':
    case 'or':
    case 'coalesce':
      return n.args;
    case 'isnull':
      return [n.arg];
    case 'case': {
      const out: Node[] = [];
      for (const w of n.whens) out.push(w.when, w.result);
      if (n.else) out.push(n.else);
      return out;
    }
    default:
      return [];
  }
}
