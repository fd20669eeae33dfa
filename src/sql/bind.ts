/**
 * Binding: checks that DuckDB's AST stays inside the per-record subset and turns it into the IR.
 * Every refusal is a SLUICE_EXPR_INVALID naming the construct and its position.
 */
import { closest, distance } from 'fastest-levenshtein';
import type { SluiceError } from '../sdk/errors.ts';
import { LIST_AGGREGATES } from './calls/lists.ts';
import { constantSubtree } from './codegen.ts';
import { describeSubset, FUNCTION_NAMES, FUNCTIONS } from './functions.ts';
import { type BoundQuery, children, type Node, type OutColumn, type PathSeg } from './ir.ts';
import { type AstNode, type Catalog, invalid, type Parsed } from './parse.ts';
import { dblText, decStr, nullProto } from './runtime.ts';
import { decimal, type SqlType, T } from './types.ts';

export interface BindContext {
  parsed: Parsed;
  catalog: Catalog;
  userText: string;
}

const COMPARISONS: Record<string, string> = nullProto({
  COMPARE_EQUAL: '=',
  COMPARE_NOTEQUAL: '!=',
  COMPARE_LESSTHAN: '<',
  COMPARE_GREATERTHAN: '>',
  COMPARE_LESSTHANOREQUALTO: '<=',
  COMPARE_GREATERTHANOREQUALTO: '>=',
  COMPARE_DISTINCT_FROM: 'IS DISTINCT FROM',
  COMPARE_NOT_DISTINCT_FROM: 'IS NOT DISTINCT FROM',
});

const CMP_FN: Record<string, string> = nullProto({
  COMPARE_EQUAL: '=',
  COMPARE_NOTEQUAL: '<>',
  COMPARE_LESSTHAN: '<',
  COMPARE_GREATERTHAN: '>',
  COMPARE_LESSTHANOREQUALTO: '<=',
  COMPARE_GREATERTHANOREQUALTO: '>=',
  COMPARE_DISTINCT_FROM: 'distinct',
  COMPARE_NOT_DISTINCT_FROM: 'not_distinct',
});

const ARITH = new Set(['+', '-', '*', '/', '//', '%', '**', '^', '||']);
const LIKE_OPS: Record<string, { ci: boolean; not: boolean }> = nullProto({
  '~~': { ci: false, not: false },
  '!~~': { ci: false, not: true },
  '~~*': { ci: true, not: false },
  '!~~*': { ci: true, not: true },
  like_escape: { ci: false, not: false },
  not_like_escape: { ci: false, not: true },
  ilike_escape: { ci: true, not: false },
  not_ilike_escape: { ci: true, not: true },
});

const CAST_TYPES: Record<string, SqlType> = nullProto({
  VARCHAR: T.VARCHAR,
  INTEGER: T.INTEGER,
  BIGINT: T.BIGINT,
  SMALLINT: T.SMALLINT,
  TINYINT: T.TINYINT,
  DOUBLE: T.DOUBLE,
  BOOLEAN: T.BOOLEAN,
  DATE: T.DATE,
  TIMESTAMP: T.TIMESTAMP,
  INTERVAL: T.INTERVAL,
  TIME: T.TIME,
  FLOAT: T.FLOAT,
  HUGEINT: T.HUGEINT,
  UHUGEINT: T.UHUGEINT,
  UTINYINT: T.UTINYINT,
  USMALLINT: T.USMALLINT,
  UINTEGER: T.UINTEGER,
  UBIGINT: T.UBIGINT,
  BLOB: T.BLOB,
});

/** How DuckDB names a type in a CAST's column name (some quoted). */
const TYPE_TEXT: Record<string, string> = nullProto({
  DOUBLE: '"DOUBLE"',
  DATE: '"DATE"',
  TINYINT: '"TINYINT"',
  HUGEINT: '"HUGEINT"',
  UHUGEINT: '"UHUGEINT"',
  UTINYINT: '"UTINYINT"',
  USMALLINT: '"USMALLINT"',
  UINTEGER: '"UINTEGER"',
  UBIGINT: '"UBIGINT"',
  BLOB: '"BLOB"',
});

/** Functions taking a lambda: how many parameters the lambda may have. */
const LAMBDA_PARAMS: Record<string, [number, number]> = nullProto({
  list_transform: [1, 2],
  list_filter: [1, 2],
  list_reduce: [2, 3],
});

/** Zero-argument functions that SQL writes without parentheses and DuckDB parses as column references. */
const BARE_FUNCTIONS: Record<string, string> = nullProto({
  current_timestamp: 'now',
  current_date: 'today',
  localtimestamp: 'now',
});

export class Binder {
  readonly #ctx: BindContext;
  /** Alias of `input` in FROM (also `input` itself), lower case (DuckDB's names ignore case). */
  #tableNames = new Set(['input']);
  /** Offsets of the expressions being bound, innermost last: the position of a node DuckDB does not place. */
  #where: number[] = [];
  /** Lambda parameters in scope, innermost last: lower-cased name → id (they shadow columns). */
  #lambdaScopes: Map<string, number>[] = [];
  #lambdaIds = 0;
  /** The select list's aliases, lower case, with the last item of each name (DuckDB's choice). */
  #aliases = new Map<string, { index: number; ast: AstNode }>();
  /** The select item being bound (WHERE: after every item), for which aliases it may read. */
  #position = Number.POSITIVE_INFINITY;
  /** Bare names read before their alias is defined: DuckDB refuses the query when the column is absent. */
  #lateral = new Set<string>();

  constructor(ctx: BindContext) {
    this.#ctx = ctx;
  }

  error(message: string, ast?: AstNode): SluiceError {
    const at = (ast === undefined ? undefined : this.loc(ast)) ?? this.#where.at(-1) ?? 0;
    return invalid(message, at, this.#ctx.userText);
  }

  unsupported(what: string, ast?: AstNode): SluiceError {
    return this.beyond(`${what} is not yet supported in per-record SQL; supported: ${describeSubset()}`, ast);
  }

  /**
   * A refusal because the construct is outside the compiled subset (not because the SQL is wrong):
   * tagged `details.beyondSubset` so the planner can hand the query to DuckDB instead.
   */
  beyond(message: string, ast?: AstNode): SluiceError {
    const err = this.error(message, ast);
    if (err.details) err.details.beyondSubset = true;
    return err;
  }

  /** The character offset of an AST node, falling back to its first child with a known position. */
  loc(ast: AstNode): number | undefined {
    if (!ast || typeof ast !== 'object') return undefined;
    const own = this.#ctx.parsed.offset(ast.query_location);
    if (own !== undefined) return own;
    for (const key of ['children', 'left', 'child', 'input', 'lhs']) {
      const c = ast[key];
      const first = Array.isArray(c) ? c[0] : c;
      if (first && typeof first === 'object') {
        const l = this.loc(first);
        if (l !== undefined) return l;
      }
    }
    return undefined;
  }

  quoteIdent(name: string): string {
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !this.#ctx.catalog.keywords.has(name.toLowerCase()))
      return name;
    return `"${name.replace(/"/g, '""')}"`;
  }

  // ------------------------------------------------------------ statements

  bindQuery(node: AstNode, mode: 'select' | 'condition'): BoundQuery {
    if (node.type !== 'SELECT_NODE') {
      const right = node.right?.select_list?.[0];
      throw this.unsupported(
        `${String(node.setop_type ?? node.type).replace(/_/g, ' ')} (a set operation)`,
        right,
      );
    }
    for (const m of node.modifiers ?? []) {
      const what =
        m.type === 'ORDER_MODIFIER'
          ? 'ORDER BY'
          : m.type === 'DISTINCT_MODIFIER'
            ? 'DISTINCT'
            : m.type === 'LIMIT_MODIFIER' || m.type === 'LIMIT_PERCENT_MODIFIER'
              ? 'LIMIT/OFFSET'
              : String(m.type);
      const at = m.orders?.[0]?.expression ?? m.limit ?? m.offset ?? node.select_list?.[0];
      throw this.beyond(`${what} is not allowed in per-record SQL: each record is processed on its own`, at);
    }
    if (node.cte_map?.map?.length) throw this.unsupported('WITH (a common table expression)');
    this.#bindFrom(node.from_table);
    if (
      node.group_expressions?.length ||
      node.group_sets?.length ||
      node.aggregate_handling !== 'STANDARD_HANDLING'
    ) {
      throw this.beyond(
        'GROUP BY is not allowed in per-record SQL: each record is processed on its own',
        node.group_expressions?.[0],
      );
    }
    if (node.having) throw this.beyond('HAVING is not allowed in per-record SQL', node.having);
    if (node.qualify) throw this.beyond('QUALIFY is not allowed in per-record SQL', node.qualify);
    if (node.sample) throw this.unsupported('USING SAMPLE');
    if (mode === 'select')
      (node.select_list as AstNode[]).forEach((item, index) => {
        if (item.alias && item.class !== 'STAR')
          this.#aliases.set(String(item.alias).toLowerCase(), { index, ast: item });
      });
    const where = node.where_clause ? this.expr(node.where_clause) : null;
    if (mode === 'condition') return { columns: [], where };
    // two columns of one name are one field of the record, holding the last one's value, as on
    // DuckDB's path (DuckDB itself accepts the query)
    const columns: OutColumn[] = [];
    for (const [index, item] of (node.select_list as AstNode[]).entries()) {
      this.#position = index;
      if (item.class === 'STAR') {
        columns.push(this.#star(item));
        continue;
      }
      const bound = this.expr(item);
      // two columns with one name (DuckDB outputs both) are one field of the record: the later
      // value at the earlier position, as on the DuckDB path (values.ts rowToRecord)
      const name = item.alias ? String(item.alias) : this.defaultName(item, bound);
      columns.push({ kind: 'expr', name, node: bound });
    }
    return this.#lateral.size ? { columns, where, lateral: [...this.#lateral] } : { columns, where };
  }

  #bindFrom(from: AstNode): void {
    if (!from || from.type === 'EMPTY') throw this.error('the query needs FROM input');
    if (from.type === 'JOIN')
      throw this.beyond('joins are not allowed in per-record SQL', from.right ?? from);
    if (from.type !== 'BASE_TABLE') {
      throw this.beyond(
        `FROM must be the table input, not a ${String(from.type).toLowerCase().replace(/_/g, ' ')}`,
        from,
      );
    }
    if (String(from.table_name).toLowerCase() !== 'input' || from.schema_name || from.catalog_name) {
      const name = [from.catalog_name, from.schema_name, from.table_name].filter(Boolean).join('.');
      throw this.beyond(`FROM must be the table input (each record), not ${name}`, from);
    }
    if (from.sample || from.at_clause || from.column_name_alias?.length)
      throw this.unsupported('this FROM clause', from);
    if (from.alias) this.#tableNames.add(String(from.alias).toLowerCase());
  }

  #star(item: AstNode): OutColumn {
    if (item.relation_name && !this.#tableNames.has(String(item.relation_name).toLowerCase())) {
      throw this.error(`unknown table "${item.relation_name}" in ${item.relation_name}.*`, item);
    }
    if (item.columns || item.expr) throw this.unsupported('COLUMNS(...)', item);
    if (item.rename_list?.length) throw this.unsupported('* RENAME', item);
    const exclude: string[] = [];
    for (const e of item.exclude_list ?? [])
      exclude.push(typeof e === 'string' ? e : String(e?.column_names?.at(-1) ?? e));
    for (const e of item.qualified_exclude_list ?? []) {
      const names = e?.column_names ?? e;
      exclude.push(String(Array.isArray(names) ? names.at(-1) : names));
    }
    const replace = (item.replace_list ?? []).map((r: AstNode) => ({
      name: String(r.key),
      node: this.expr(r.value),
    }));
    return { kind: 'star', exclude, replace };
  }

  /** DuckDB's name for an unaliased select-list expression. */
  defaultName(item: AstNode, bound: Node): string {
    if (item.class === 'COLUMN_REF') {
      const names = item.column_names as string[];
      if (!(names.length === 1 && BARE_FUNCTIONS[names[0]!.toLowerCase()])) return String(names.at(-1));
    }
    return bound.text;
  }

  // ------------------------------------------------------------ expressions

  expr(ast: AstNode): Node {
    const loc = this.loc(ast);
    if (loc !== undefined) this.#where.push(loc);
    try {
      return this.#expr(ast, loc);
    } finally {
      if (loc !== undefined) this.#where.pop();
    }
  }

  #expr(ast: AstNode, loc: number | undefined): Node {
    switch (ast.class) {
      case 'CONSTANT':
        return this.#constant(ast, loc);
      case 'COLUMN_REF':
        return this.#columnRef(ast, loc);
      case 'CAST':
        return this.#cast(ast, loc);
      case 'COMPARISON': {
        const l = this.expr(ast.left);
        const r = this.expr(ast.right);
        const op = COMPARISONS[ast.type];
        const fn = CMP_FN[ast.type];
        if (!op || !fn) throw this.unsupported(`the comparison ${ast.type}`, ast);
        return { k: 'call', fn, args: [l, r], text: `(${l.text} ${op} ${r.text})`, loc };
      }
      case 'CONJUNCTION': {
        const args = (ast.children as AstNode[]).map((c) => this.expr(c));
        const and = ast.type === 'CONJUNCTION_AND';
        return {
          k: and ? 'and' : 'or',
          args,
          text: `(${args.map((a) => a.text).join(and ? ' AND ' : ' OR ')})`,
          loc,
        };
      }
      case 'OPERATOR':
        return this.#operator(ast, loc);
      case 'BETWEEN': {
        // x BETWEEN lo AND hi is (x >= lo) AND (x <= hi), as DuckDB's optimizer treats it
        const x = this.expr(ast.input);
        const lo = this.expr(ast.lower);
        const hi = this.expr(ast.upper);
        const text = `(${x.text} BETWEEN ${lo.text} AND ${hi.text})`;
        const ge: Node = { k: 'call', fn: '>=', args: [x, lo], text, loc };
        const le: Node = { k: 'call', fn: '<=', args: [x, hi], text, loc };
        return { k: 'and', args: [ge, le], text, loc, between: true };
      }
      case 'CASE': {
        const whens = (ast.case_checks as AstNode[]).map((c) => ({
          when: this.expr(c.when_expr),
          result: this.expr(c.then_expr),
        }));
        const els = ast.else_expr ? this.expr(ast.else_expr) : null;
        const text = `CASE ${whens.map((w) => ` WHEN (${w.when.text}) THEN (${w.result.text})`).join('')} ELSE ${els ? els.text : 'NULL'} END`;
        return { k: 'case', whens, else: els, text, loc };
      }
      case 'FUNCTION':
        return this.#function(ast, loc);
      case 'WINDOW':
        throw this.beyond(
          `window function ${ast.function_name}() is not allowed in per-record SQL: each record is processed on its own`,
          ast,
        );
      case 'SUBQUERY':
        throw this.beyond('subqueries are not allowed in per-record SQL', ast);
      case 'STAR':
        // COLUMNS(*) in a call or a condition, struct_pack(*COLUMNS(*)): DuckDB's binder judges the rest
        throw this.unsupported('* or COLUMNS() inside an expression', ast);
      case 'PARAMETER':
        throw this.error('query parameters ($1, ?) are not allowed: write the value in the SQL', ast);
      case 'LAMBDA':
        throw this.unsupported('a lambda (x -> ...)', ast);
      case 'COLLATE':
        throw this.unsupported('COLLATE', ast);
      default:
        throw this.unsupported(
          String(ast.class ?? ast.type)
            .toLowerCase()
            .replace(/_/g, ' '),
          ast,
        );
    }
  }

  #constant(ast: AstNode, loc: number | undefined): Node {
    const v = ast.value;
    const id = v.type?.id as string;
    if (v.is_null) return { k: 'const', type: T.NULL, value: null, lit: false, text: 'NULL', loc };
    const raw = v.value;
    switch (id) {
      case 'INTEGER':
      case 'BIGINT': {
        if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) {
          throw this.beyond(
            `the integer ${String(raw)} is beyond ±2^53, the exact range of JavaScript numbers`,
            ast,
          );
        }
        const type = id === 'INTEGER' ? T.INTEGER : T.BIGINT;
        return { k: 'const', type, value: raw, lit: true, text: String(raw), loc };
      }
      case 'HUGEINT':
      case 'UHUGEINT':
        throw this.beyond('the integer is beyond ±2^53, the exact range of JavaScript numbers', ast);
      case 'DECIMAL': {
        const { width, scale } = v.type.type_info;
        if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) {
          throw this.beyond('the decimal has more digits than JavaScript numbers hold exactly (15)', ast);
        }
        return {
          k: 'const',
          type: decimal(width, scale),
          value: raw,
          lit: false,
          text: decStr(raw, scale),
          loc,
        };
      }
      case 'DOUBLE':
      case 'FLOAT': {
        const d = Number(raw);
        return { k: 'const', type: T.DOUBLE, value: d, lit: false, text: dblText(d), loc };
      }
      case 'VARCHAR': {
        const s = String(raw);
        return { k: 'const', type: T.VARCHAR, value: s, lit: true, text: `'${s.replace(/'/g, "''")}'`, loc };
      }
      case 'BOOLEAN':
        return {
          k: 'const',
          type: T.BOOLEAN,
          value: Boolean(raw),
          lit: false,
          text: raw ? 'true' : 'false',
          loc,
        };
      default:
        throw this.unsupported(`a constant of type ${id}`, ast);
    }
  }

  #columnRef(ast: AstNode, loc: number | undefined): Node {
    let names = (ast.column_names as unknown[]).map(String);
    if (names.length === 1) {
      const bare = BARE_FUNCTIONS[names[0]!.toLowerCase()];
      if (bare) return { k: 'call', fn: bare, args: [], text: names[0]!, loc };
      // a time of day (current_time is a TIME WITH TIME ZONE, not modelled here): DuckDB gives it
      if (['current_time', 'localtime'].includes(names[0]!.toLowerCase()))
        throw this.beyond(`${names[0]} (the time of day) is not allowed in per-record SQL`, ast);
    }
    const text = names.map((n) => this.quoteIdent(n)).join('.');
    const lambda = this.#lambdaVar(names, loc);
    if (lambda) return lambda;
    // a table-qualified name is the column, even inside a lambda whose parameter has its name
    if (names.length > 1 && this.#tableNames.has(names[0]!.toLowerCase())) names = names.slice(1);
    // DuckDB reads a bare name that is also a select-list alias (in a select item or WHERE) as the
    // column when the table has it, else as the alias (or refuses it, before its definition)
    else if (names.length === 1 && this.#aliases.has(names[0]!.toLowerCase())) {
      const alias = this.#aliases.get(names[0]!.toLowerCase())!;
      const column: Node = { k: 'leaf', path: names, text, loc };
      if (alias.index >= this.#position) {
        this.#lateral.add(names[0]!);
        return column;
      }
      const opt = { name: names[0]!, alias: this.#bindAlias(alias.index, alias.ast) };
      return { k: 'call', fn: 'lateral_alias', args: [column], opt, text, loc };
    }
    return { k: 'leaf', path: names, text, loc };
  }

  castType(t: AstNode, ast: AstNode): { type: SqlType; text: string } {
    const id = String(t?.id);
    if (id === 'DECIMAL') {
      const { width, scale } = t.type_info ?? { width: 18, scale: 3 };
      if (width > 38 || scale > width)
        throw this.error(`DECIMAL(${width},${scale}) is not a valid type`, ast);
      // compiled SQL holds a DECIMAL as a scaled integer in a JavaScript number: with more than 15
      // fractional digits not even 1 is exact there, so DuckDB runs the query
      if (scale > 15) {
        throw this.beyond(
          `DECIMAL(${width},${scale}) has more fractional digits than JavaScript numbers hold exactly (15)`,
          ast,
        );
      }
      return {
        type: decimal(width, scale),
        text: scale === 0 ? `DECIMAL(${width})` : `DECIMAL(${width}, ${scale})`,
      };
    }
    const type = CAST_TYPES[id];
    if (type) return { type, text: TYPE_TEXT[id] ?? id };
    if (id === 'UNBOUND') {
      const name = String(t.type_info?.name ?? 'unknown');
      throw this.beyond(
        `unknown type ${name}; per-record SQL casts to ${Object.keys(CAST_TYPES).join(', ')}, DECIMAL(p,s)`,
        ast,
      );
    }
    throw this.unsupported(`CAST to ${id}`, ast);
  }

  #cast(ast: AstNode, loc: number | undefined): Node {
    const arg = this.expr(ast.child);
    const { type, text: typeText } = this.castType(ast.cast_type, ast);
    // INTERVAL and TIME text is parsed here only when constant (its common forms); DuckDB takes the rest
    if (
      (type.id === 'INTERVAL' || type.id === 'TIME') &&
      !(arg.k === 'const' && (arg.type.id === 'VARCHAR' || arg.type.id === 'NULL'))
    )
      throw this.beyond(
        `a cast to ${type.id} of a value that is not a constant string is not allowed in per-record SQL`,
        ast,
      );
    const fn = ast.try_cast ? 'try_cast' : 'cast';
    // `INTERVAL n SECOND` is to_seconds(CAST(n AS DOUBLE)) at the operand's place, a cast whose
    // column name spells the type unquoted (a written one quotes a keyword: CAST(n AS "DOUBLE"))
    const desugared = loc !== undefined && ast.query_location === ast.child?.query_location;
    return {
      k: 'call',
      fn,
      args: [arg],
      to: type,
      text: `${ast.try_cast ? 'TRY_CAST' : 'CAST'}(${arg.text} AS ${desugared ? String(ast.cast_type.id) : typeText})`,
      loc,
    };
  }

  #operator(ast: AstNode, loc: number | undefined): Node {
    const kids = (ast.children ?? []) as AstNode[];
    switch (ast.type) {
      case 'OPERATOR_NOT': {
        const a = this.expr(kids[0]);
        return { k: 'call', fn: 'not', args: [a], text: `(NOT ${a.text})`, loc };
      }
      case 'OPERATOR_IS_NULL':
      case 'OPERATOR_IS_NOT_NULL': {
        const a = this.expr(kids[0]);
        const not = ast.type === 'OPERATOR_IS_NOT_NULL';
        return { k: 'isnull', arg: a, not, text: `(${a.text} IS ${not ? 'NOT ' : ''}NULL)`, loc };
      }
      case 'COMPARE_IN':
      case 'COMPARE_NOT_IN': {
        const args = kids.map((c) => this.expr(c));
        const not = ast.type === 'COMPARE_NOT_IN';
        const text = `(${args[0]!.text} ${not ? 'NOT IN' : 'IN'} (${args
          .slice(1)
          .map((a) => a.text)
          .join(', ')}))`;
        return { k: 'call', fn: not ? 'not_in' : 'in', args, text, loc };
      }
      case 'OPERATOR_COALESCE': {
        const args = kids.map((c) => this.expr(c));
        return { k: 'coalesce', args, text: `COALESCE(${args.map((a) => a.text).join(', ')})`, loc };
      }
      case 'ARRAY_EXTRACT': {
        const base = this.expr(kids[0]);
        const key = this.expr(kids[1]);
        return this.#extract(base, key, `${base.text}[${key.text}]`, ast, loc);
      }
      case 'STRUCT_EXTRACT': {
        const base = this.expr(kids[0]);
        const key = this.expr(kids[1]);
        const name = key.k === 'const' ? String(key.value) : key.text;
        return this.#extract(base, key, `(${base.text}).${this.quoteIdent(name)}`, ast, loc);
      }
      case 'ARRAY_CONSTRUCTOR': {
        const args = kids.map((c) => this.expr(c));
        return {
          k: 'call',
          fn: 'list_value',
          args,
          // DuckDB's name wraps it in parentheses: (ARRAY[1])
          text: `(ARRAY[${args.map((a) => a.text).join(', ')}])`,
          loc,
        };
      }
      case 'ARRAY_SLICE': {
        // an omitted bound is an empty list constant: from the first, to the last element
        const omitted = (c: AstNode) => c?.class === 'CONSTANT' && c.value?.type?.id === 'LIST';
        if (kids.length !== 3) throw this.unsupported('list slicing with a step (l[a:b:c])', ast);
        const base = this.expr(kids[0]);
        const bound = (c: AstNode, dflt: number): Node =>
          omitted(c) ? { k: 'const', type: T.BIGINT, value: dflt, lit: true, text: '', loc } : this.expr(c);
        const b = bound(kids[1], 1);
        const e = bound(kids[2], -1);
        return {
          k: 'call',
          fn: 'list_slice',
          args: [base, b, e],
          text: `${base.text}[${b.text}:${e.text}]`,
          loc,
        };
      }
      default:
        throw this.unsupported(`the operator ${String(ast.type).toLowerCase().replace(/_/g, ' ')}`, ast);
    }
  }

  /** `base[key]` / `base.key`: a constant key on a record path extends the path. */
  #extract(base: Node, key: Node, text: string, ast: AstNode, loc: number | undefined): Node {
    if (key.k === 'const' && base.k === 'leaf') {
      if (key.type.id === 'VARCHAR') return { k: 'leaf', path: [...base.path, String(key.value)], text, loc };
      if (key.type.id === 'INTEGER' || key.type.id === 'BIGINT') {
        return { k: 'leaf', path: [...base.path, key.value as number], text, loc };
      }
    }
    if (key.k === 'const' && key.type.id === 'VARCHAR') {
      return { k: 'call', fn: 'struct_extract', args: [base, key], text, loc };
    }
    if (key.k === 'const' && key.type.id === 'NULL')
      return { k: 'const', type: T.NULL, value: null, lit: false, text, loc };
    if (key.k === 'const' && key.type.id !== 'INTEGER' && key.type.id !== 'BIGINT') {
      throw this.error(`a list index must be an integer and a struct key a string, not ${key.text}`, ast);
    }
    return { k: 'call', fn: 'array_extract', args: [base, key], text, loc };
  }

  #function(ast: AstNode, loc: number | undefined): Node {
    const rawName = String(ast.function_name);
    const name = rawName.toLowerCase();
    const kids = (ast.children ?? []) as AstNode[];
    if (ast.is_operator || (ARITH.has(name) && kids.length <= 2)) {
      const args = kids.map((c) => this.expr(c));
      if (ARITH.has(name) || name === '~~' || name === '!~~' || name === '~~*' || name === '!~~*') {
        const text =
          args.length === 1
            ? `${rawName}(${args[0]!.text})`
            : `(${args[0]!.text} ${rawName} ${args[1]!.text})`;
        const like = LIKE_OPS[name];
        if (like) return { k: 'call', fn: 'like', args, opt: like, text, loc };
        if (args.length === 1) {
          if (name === '-') return { k: 'call', fn: 'neg', args, text, loc };
          if (name === '+') return { k: 'call', fn: 'pos', args, text, loc };
          throw this.unsupported(`the unary operator ${rawName}`, ast);
        }
        return { k: 'call', fn: name === '^' ? '**' : name, args, text, loc };
      }
      throw this.unsupported(`the operator ${rawName}`, ast);
    }
    if (ast.distinct || ast.filter || ast.order_bys?.orders?.length) {
      throw this.beyond(
        `${rawName}(DISTINCT/ORDER BY/FILTER ...) is an aggregate form, not allowed in per-record SQL`,
        ast,
      );
    }
    if (ast.schema && ast.schema !== 'main' && ast.schema !== 'pg_catalog') {
      throw this.error(`unknown function ${ast.schema}.${rawName}()`, ast);
    }
    const like = LIKE_OPS[name];
    const info = like ? { name: 'like', min: 3, max: 3 } : FUNCTIONS.get(name);
    if (!info) throw this.#unknownFunction(name, ast);
    if (kids.length < info.min || kids.length > info.max) {
      const arity =
        info.min === info.max
          ? `${info.min}`
          : info.max === Number.POSITIVE_INFINITY
            ? `at least ${info.min}`
            : `${info.min} to ${info.max}`;
      throw this.error(
        `${rawName}() takes ${arity} argument${info.max === 1 ? '' : 's'}, not ${kids.length}`,
        ast,
      );
    }
    if (LAMBDA_PARAMS[info.name]) return this.#lambdaCall(info.name, rawName, kids, ast, loc);
    const args = kids.map((c) => this.expr(c));
    const prefix = ast.schema === 'main' ? 'main.' : '';
    const argText =
      name === 'struct_pack'
        ? kids.map((c, i) => `${this.quoteIdent(String(c.alias))} := ${args[i]!.text}`).join(', ')
        : args.map((a) => a.text).join(', ');
    const text = `${prefix}${this.quoteIdent(rawName)}(${argText})`;
    if (like) return { k: 'call', fn: 'like', args, opt: like, text, loc };
    if (info.name === 'ifnull') return { k: 'coalesce', args, text, loc };
    if (info.name === 'struct_pack') {
      const names = kids.map((c) => String(c.alias ?? ''));
      if (names.some((n) => n === '')) throw this.error('a struct needs a name for every field', ast);
      if (new Set(names).size !== names.length) throw this.error('a struct has a duplicate field name', ast);
      return { k: 'call', fn: 'struct_pack', args, names, text, loc };
    }
    if (info.name === 'array_extract' || info.name === 'struct_extract') {
      return this.#extract(args[0]!, args[1]!, text, ast, loc);
    }
    if (
      (info.name === 'date_part' || info.name === 'date_trunc' || info.name === 'date_diff') &&
      !constantSubtree(args[0]!)
    ) {
      throw this.beyond(
        `${info.name}() with a part that is not a constant is not allowed in per-record SQL`,
        ast,
      );
    }
    if (info.name === 'strftime' && !constantSubtree(args[0]!) && !constantSubtree(args[1]!)) {
      // DuckDB's own refusal, at bind time
      throw this.error('strftime format must be a constant', ast);
    }
    if ((info.name === 'strptime' || info.name === 'try_strptime') && !constantSubtree(args[1]!)) {
      throw this.error('strptime format must be a constant', ast);
    }
    const opt = this.#listOptions(info.name, rawName, args, ast);
    return opt
      ? { k: 'call', fn: info.name, args, text, loc, opt }
      : { k: 'call', fn: info.name, args, text, loc };
  }

  /** Constant arguments that choose what a list function does: the aggregate's name, the sort order. */
  #listOptions(fn: string, rawName: string, args: Node[], ast: AstNode): Record<string, unknown> | undefined {
    const word = (n: Node | undefined) =>
      n?.k === 'const' && typeof n.value === 'string' ? n.value.trim().toUpperCase() : undefined;
    if (fn === 'list_aggregate') {
      const name = word(args[1])?.toLowerCase();
      const extra = name === 'string_agg' ? 1 : 0;
      if (!name || !LIST_AGGREGATES.has(name) || args.length > 2 + extra)
        throw this.unsupported(`${rawName}() with ${args[1]?.text ?? 'this'} as the aggregate`, ast);
      return { aggregate: name };
    }
    if (fn === 'list_sort' || fn === 'list_reverse_sort') {
      const words = args.slice(1).map(word);
      let desc = fn === 'list_reverse_sort';
      let nullsFirst = false;
      let i = 0;
      if (fn === 'list_sort' && (words[0] === 'ASC' || words[0] === 'DESC')) desc = words[i++] === 'DESC';
      if (words[i] === 'NULLS FIRST' || words[i] === 'NULLS LAST') nullsFirst = words[i++] === 'NULLS FIRST';
      if (i !== words.length)
        throw this.unsupported(
          `${rawName}() with an order other than constant 'ASC'/'DESC' and 'NULLS FIRST'/'NULLS LAST'`,
          ast,
        );
      return { desc, nullsFirst };
    }
    return undefined;
  }

  /** Select item `index`'s expression, bound as in its place (outside any lambda, reading earlier aliases). */
  #bindAlias(index: number, ast: AstNode): Node {
    const [position, scopes] = [this.#position, this.#lambdaScopes];
    this.#position = index;
    this.#lambdaScopes = [];
    try {
      return this.expr(ast);
    } finally {
      this.#position = position;
      this.#lambdaScopes = scopes;
    }
  }

  /** A reference to a lambda parameter in scope (`x`, or `x.field`), which shadows a column of that name. */
  #lambdaVar(names: string[], loc: number | undefined): Node | undefined {
    const first = names[0]!.toLowerCase();
    for (let i = this.#lambdaScopes.length - 1; i >= 0; i--) {
      const id = this.#lambdaScopes[i]!.get(first);
      if (id === undefined) continue;
      let node: Node = { k: 'lvar', id, text: this.quoteIdent(names[0]!), loc };
      for (const field of names.slice(1)) {
        const key: Node = { k: 'const', type: T.VARCHAR, value: field, lit: true, text: `'${field}'`, loc };
        node = {
          k: 'call',
          fn: 'struct_extract',
          args: [node, key],
          text: `${node.text}.${this.quoteIdent(field)}`,
          loc,
        };
      }
      return node;
    }
    return undefined;
  }

  /** list_transform / list_filter / list_reduce: the list, a lambda (`x -> ...` or `lambda x: ...`), an initial value. */
  #lambdaCall(fn: string, rawName: string, kids: AstNode[], ast: AstNode, loc: number | undefined): Node {
    const lam = kids[1];
    if (
      lam?.class !== 'LAMBDA' ||
      kids.slice(2).some((k) => k.class === 'LAMBDA') ||
      kids[0]?.class === 'LAMBDA'
    )
      throw this.unsupported(`${rawName}() without a lambda as its second argument`, ast);
    const lhs = lam.lhs;
    const paramAsts: AstNode[] =
      lhs?.class === 'COLUMN_REF'
        ? [lhs]
        : lhs?.class === 'FUNCTION' && String(lhs.function_name) === 'row'
          ? lhs.children
          : [];
    const names = paramAsts.map((p) =>
      p?.class === 'COLUMN_REF' && p.column_names?.length === 1 ? String(p.column_names[0]) : '',
    );
    const [min, max] = LAMBDA_PARAMS[fn]!;
    if (!names.length || names.some((n) => !n) || names.length < min || names.length > max)
      throw this.unsupported(`${rawName}() with this lambda's parameters`, lam);
    const list = this.expr(kids[0]);
    const scope = new Map<string, number>();
    const params = names.map((n) => {
      const id = this.#lambdaIds++;
      scope.set(n.toLowerCase(), id);
      return id;
    });
    this.#lambdaScopes.push(scope);
    let body: Node;
    try {
      body = this.expr(lam.expr);
    } finally {
      this.#lambdaScopes.pop();
    }
    const rest = kids.slice(2).map((c) => this.expr(c));
    // DuckDB writes `x -> e` for the arrow form, `lambda x: e` for Python's (whose parameters it does not place)
    const arrow = this.#ctx.parsed.offset(lhs.query_location) !== undefined;
    const ps = names.map((n) => this.quoteIdent(n)).join(', ');
    const lamText = arrow
      ? `(${names.length === 1 ? ps : `main."row"(${ps})`} -> ${body.text})`
      : `(lambda ${ps}: ${body.text})`;
    const prefix = ast.schema === 'main' ? 'main.' : '';
    const text = `${prefix}${this.quoteIdent(rawName)}(${[list.text, lamText, ...rest.map((r) => r.text)].join(', ')})`;
    return { k: 'call', fn, args: [list, ...rest], lambda: { params, body }, text, loc };
  }

  #unknownFunction(name: string, ast: AstNode): SluiceError {
    const type = this.#ctx.catalog.functions.get(name);
    if (type === 'aggregate') {
      const shown = name === 'count_star' ? 'count(*)' : `${name}()`;
      return this.beyond(
        `aggregate function ${shown} is not allowed in per-record SQL: each record is processed on its own`,
        ast,
      );
    }
    if (type) return this.unsupported(`the function ${name}()`, ast);
    const nearest = (names: Iterable<string>) =>
      [...names]
        .map((n) => ({ n, d: distance(name, n) }))
        .filter((x) => x.d <= Math.max(2, Math.floor(name.length / 3)))
        .sort((a, b) => a.d - b.d)
        .slice(0, 3)
        .map((x) => x.n);
    // the compiled subset first; any other DuckDB function runs on DuckDB
    let near = nearest(FUNCTION_NAMES);
    if (!near.length) {
      const scalar = [...this.#ctx.catalog.functions]
        .filter(([, t]) => t === 'scalar' || t === 'macro')
        .map(([n]) => n);
      near = nearest(scalar.filter((n) => /^[a-z][a-z0-9_]*$/.test(n)));
    }
    const hint = near.length
      ? `; did you mean ${near.join(', ')}?`
      : `; the closest supported function is ${closest(name, FUNCTION_NAMES)}()`;
    return this.error(`unknown function ${name}()${hint}`, ast);
  }
}

/** Collects the distinct record paths an IR reads, in first-use order. */
export function collectLeaves(nodes: (Node | null)[]): PathSeg[][] {
  const seen = new Map<string, PathSeg[]>();
  const visit = (n: Node): void => {
    if (n.k === 'leaf') {
      const key = JSON.stringify(n.path);
      if (!seen.has(key)) seen.set(key, n.path);
    }
    for (const c of children(n)) visit(c);
  };
  for (const n of nodes) if (n) visit(n);
  return [...seen.values()];
}
