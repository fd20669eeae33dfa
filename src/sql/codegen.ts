/**
 * Code generation: turns IR, specialised for the SQL types of the values it reads, into
 * straight-line JavaScript source. Types are static inside a generated function, so every
 * operator compiles to a plain JS operation plus the checks DuckDB's semantics need (integer
 * overflow, NULL propagation, decimal scale). Values whose type is only known per record (an
 * element of a record's list) go through a run-time site that compiles the operator per type.
 */
import { LATERAL_CALLS } from './calls/lateral.ts';
import { LAMBDA_CALLS, LIST_CALLS } from './calls/lists.ts';
import { TEMPORAL_CALLS } from './calls/temporal.ts';
import { mapSubscript, TYPE_CALLS } from './calls/types.ts';
import {
  arithTypes,
  castPlanTypes,
  concatTypes,
  implicitNumeric,
  isExtType,
  negTypes,
  prepCmpTypes,
} from './codegen-types.ts';
import { isComputeOnDuckDB } from './fallback.ts';
import { children, type Node } from './ir.ts';
import * as R from './runtime.ts';
import * as RT from './runtime-types.ts';
import {
  asDecimal,
  decimal,
  INT_BITS,
  INT_DIGITS,
  INT_PHYS,
  INT_RANGE,
  isHuge,
  isInt,
  isNumeric,
  isTemporal,
  isUnsigned,
  maxNumeric,
  type SqlType,
  sameType,
  T,
  typeName,
  unifyInt,
} from './types.ts';

/**
 * Why compiled code leaves a construct DuckDB accepts to DuckDB: it does not model it ('unmodelled'),
 * or it cannot hold a constant exactly ('inexact': an integer beyond ±2^53).
 */
export type BeyondReason = 'unmodelled' | 'inexact';

/** A type or constant problem found while generating code: a bind error in DuckDB's terms. */
export class CompileError extends Error {
  readonly node: Node;
  /**
   * 'value': a constant that does not convert (DuckDB fails only where it is evaluated); 'type': a bind
   * error; 'beyond': DuckDB accepts it but compiled code leaves it to DuckDB (at validation the query,
   * at run time the record, goes to DuckDB).
   */
  readonly kind: 'type' | 'value' | 'beyond';
  /** For kind 'beyond': why, and what (the construct, or for 'inexact' the whole reason). */
  readonly beyond?: { reason: BeyondReason; what: string };
  /** For kind 'beyond', `message` says what compiled code leaves to DuckDB; the message users see is made here. */
  constructor(
    message: string,
    node: Node,
    kind: 'type' | 'value' | 'beyond' = 'type',
    reason: BeyondReason = 'unmodelled',
  ) {
    super(
      kind === 'beyond' && reason === 'unmodelled'
        ? `${message} is not yet supported in per-record SQL`
        : message,
    );
    this.name = 'CompileError';
    this.node = node;
    this.kind = kind;
    if (kind === 'beyond') this.beyond = { reason, what: message };
  }
}

export interface Val {
  /** A JS expression that is cheap to repeat: an identifier or a literal. */
  code: string;
  type: SqlType;
  nullable: boolean;
  /** An integer or string constant, which DuckDB lets adapt to the other operand's type. */
  lit?: boolean;
  /** Set when the value is known at compile time (`cv` holds it, internal representation). */
  isConst?: boolean;
  cv?: unknown;
}

/**
 * Evaluates a constant subtree at compile time, as DuckDB's optimizer folds constants. Returns
 * undefined when it cannot (its evaluation fails: DuckDB then fails only where it is evaluated).
 * Installed by program.ts, which builds functions.
 */
export const folding: { fold?: (node: Node) => { type: SqlType; value: unknown } | undefined } = {};

const HELPERS = { ...R, ...RT };
const HELPER_NAMES = Object.keys(HELPERS);

function jsLit(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (v === Number.POSITIVE_INFINITY) return 'Infinity';
    if (v === Number.NEGATIVE_INFINITY) return '(-Infinity)';
    if (Object.is(v, -0)) return '(-0)';
    return v < 0 ? `(${v})` : String(v);
  }
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v);
  throw new Error(`not a literal: ${String(v)}`);
}

function isLiteralValue(v: unknown): boolean {
  return v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';
}

const evalCache = new Map<string, (c: unknown) => unknown>();

/**
 * Runs run-time code on a constant at compile time. What compiled code leaves to DuckDB for a value
 * (an integer beyond ±2^53, a NaN as text) leaves the query to DuckDB.
 */
function atCompileTime<T>(node: Node, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof Error && err.message.includes('beyond ±2^53'))
      throw new CompileError(err.message.replace(/ \(in .*\)$/s, ''), node, 'beyond', 'inexact');
    if (isComputeOnDuckDB(err)) throw new CompileError(err.message, node, 'beyond', 'inexact');
    throw err;
  }
}

/** Evaluates an expression template over one value at compile time (constant folding). */
function evalTemplate(template: (c: string) => string, value: unknown): unknown {
  const src = template('c');
  let fn = evalCache.get(src);
  if (!fn) {
    fn = new Function('R', `"use strict"; const {${HELPER_NAMES.join(', ')}} = R; return (c) => ${src};`)(
      HELPERS,
    ) as (c: unknown) => unknown;
    evalCache.set(src, fn);
  }
  return fn(value);
}

function pow10(k: number): number {
  return R.POW10[k]!;
}

const CMP_JS: Record<string, string> = {
  '=': '===',
  '<>': '!==',
  '<': '<',
  '<=': '<=',
  '>': '>',
  '>=': '>=',
};

type CmpKind = 'num' | 'dbl' | 'str' | 'bool' | 'deep' | 'nested' | 'interval' | 'blob';

/** Where a value comes from when a function is generated: a record leaf or a run-time site argument. */
export interface Input {
  /** JS parameter name. */
  name: string;
  type: SqlType;
  /** The value arrives in record representation and needs converting (a Date, a bigint). */
  fromRecord: boolean;
  /** The value is a JS bigint (class 9). */
  bigint?: boolean;
}

/** A run-time site: an operator whose operands' types are only known per record. */
export interface DynSite {
  node: Node;
  types: SqlType[];
  cache: Map<string, (...args: unknown[]) => unknown>;
}

export class Gen {
  readonly lines: string[] = [];
  readonly consts: unknown[] = [];
  #n = 0;
  /** Above 0 while generating code that only runs on some records (a CASE branch, a later AND operand). */
  #lazy = 0;
  /** Set by cond() for the next node generated. */
  #condNext = false;
  /** True in the generator that evaluates a constant subtree (no nested folding). */
  folding = false;
  readonly #leaves: Map<string, Val>;
  readonly #params: Val[];
  /** Lambda parameters in scope while a lambda body is generated. */
  readonly #lvars = new Map<number, Val>();

  /** `leaves` maps a path key (JSON of the path) to its input; `params` are run-time site arguments. */
  constructor(leaves: Map<string, Input>, params: Input[]) {
    this.#leaves = new Map();
    this.#params = [];
    for (const [key, inp] of leaves) this.#leaves.set(key, this.#load(inp));
    for (const inp of params) this.#params.push(this.#load(inp));
  }

  #load(inp: Input): Val {
    const t = inp.type;
    if (t.id === 'NULL') return { code: 'null', type: T.NULL, nullable: true }; // data, not a constant
    if (!inp.fromRecord) return { code: inp.name, type: t, nullable: true };
    if (t.id === 'TIMESTAMP' || t.id === 'DATE') {
      const v = this.tmp();
      this.emit(`const ${v} = ${inp.name}.getTime() * 1000;`);
      return { code: v, type: t, nullable: false };
    }
    if (inp.bigint) {
      const v = this.tmp();
      this.emit(`const ${v} = Number(${inp.name});`);
      return { code: v, type: t, nullable: false };
    }
    return { code: inp.name, type: t, nullable: false };
  }

  /** Generates `fn` with lambda parameters bound to values. */
  withLambda<V>(binds: [number, Val][], fn: () => V): V {
    for (const [id, v] of binds) this.#lvars.set(id, v);
    try {
      return fn();
    } finally {
      for (const [id] of binds) this.#lvars.delete(id);
    }
  }

  fail(message: string, node: Node, kind: 'type' | 'value' | 'beyond' = 'type'): CompileError {
    return new CompileError(message, node, kind);
  }

  tmp(): string {
    return `t${this.#n++}`;
  }

  emit(line: string): void {
    this.lines.push(line);
  }

  /** A reference to a compile-time object (a RegExp, a Set, a site). */
  k(value: unknown): string {
    this.consts.push(value);
    return `K${this.consts.length - 1}`;
  }

  x(node: Node): string {
    return JSON.stringify(node.text);
  }

  constVal(type: SqlType, value: unknown, lit = false): Val {
    if (value === null || value === undefined)
      return { code: 'null', type, nullable: true, isConst: true, cv: null };
    if (isLiteralValue(value))
      return { code: jsLit(value), type, nullable: false, isConst: true, cv: value, lit };
    return { code: this.k(value), type, nullable: false, isConst: true, cv: value, lit };
  }

  /**
   * NULL of a type. `constant` marks a NULL known without the record (a literal, a folded constant):
   * DuckDB folds operators over those; a NULL read from the record is only data.
   */
  nullOf(type: SqlType, constant = false): Val {
    return constant ? this.constVal(type, null) : { code: 'null', type, nullable: true };
  }

  isNull(v: Val): boolean {
    return v.type.id === 'NULL' || v.code === 'null';
  }

  /** Runs `fn` collecting the lines it emits separately (for lazily evaluated branches). */
  capture<V>(fn: () => V, lazy = false): { lines: string[]; val: V } {
    const saved = this.lines.length;
    if (lazy) this.#lazy++;
    try {
      const val = fn();
      const lines = this.lines.splice(saved);
      return { lines, val };
    } finally {
      if (lazy) this.#lazy--;
    }
  }

  /** Runs `fn` as code that only some records reach. */
  lazily<V>(fn: () => V): V {
    this.#lazy++;
    try {
      return fn();
    } finally {
      this.#lazy--;
    }
  }

  /**
   * Emits a NULL-propagating operation: NULL when any argument is NULL, else `expr`. `check`
   * adds statements run on the result (overflow checks); `nullable` says `expr` itself may be NULL.
   */
  op(
    args: Val[],
    type: SqlType,
    expr: string,
    opts: { nullable?: boolean; check?: (t: string) => string; fold?: boolean } = {},
  ): Val {
    if (args.some((a) => this.isNull(a)))
      return this.nullOf(
        type,
        args.some((a) => this.isNull(a) && a.isConst === true),
      );
    const guards = args.filter((a) => a.nullable).map((a) => `${a.code} !== null`);
    const t = this.tmp();
    if (!opts.check) {
      this.emit(
        guards.length ? `const ${t} = ${guards.join(' && ')} ? ${expr} : null;` : `const ${t} = ${expr};`,
      );
    } else if (guards.length) {
      this.emit(`let ${t} = null;`);
      this.emit(`if (${guards.join(' && ')}) { ${t} = ${expr}; ${opts.check(t)} }`);
    } else {
      this.emit(`const ${t} = ${expr};`);
      this.emit(opts.check(t));
    }
    return { code: t, type, nullable: guards.length > 0 || !!opts.nullable };
  }

  // ------------------------------------------------------------ representation

  /** Internal → record representation (DECIMAL as a number, DATE/TIMESTAMP as a Date). */
  toOut(v: Val, node?: Node): Val {
    const t = v.type;
    let tpl: ((c: string) => string) | undefined;
    if (t.id === 'DECIMAL') tpl = (c) => `${c} / ${pow10(t.scale)}`;
    else if (isTemporal(t)) {
      const xs = node ? this.x(node) : '"output"';
      tpl = (c) => `usToDate(${c}, ${JSON.stringify(typeName(t).replace(' WITH TIME ZONE', ''))}, ${xs})`;
      // an infinity fails only the records that reach it
      if (v.isConst && !(Math.abs(v.cv as number) <= 8.64e18))
        return this.op([{ ...v, isConst: false }], t, tpl(v.code));
    } else if (t.id === 'INTERVAL') tpl = (c) => `intervalStr(${c})`;
    else if (t.id === 'TIME') tpl = (c) => `timeStr(${c})`;
    else if (isHuge(t)) tpl = (c) => `hugeOut(${c})`;
    else if (t.id === 'BLOB') tpl = (c) => `blobOut(${c})`;
    if (!tpl || this.isNull(v)) return v;
    if (v.isConst) return this.constVal(T.ANY, evalTemplate(tpl, v.cv));
    return this.op([v], t, tpl(v.code));
  }

  /** Record → internal representation, for a value of known type taken out of a LIST or STRUCT. */
  fromOut(code: string, type: SqlType, nullable = true): Val {
    let expr = code;
    if (type.id === 'DECIMAL') expr = `Math.round(${code} * ${pow10(type.scale)})`;
    else if (isTemporal(type)) expr = `${code}.getTime() * 1000`;
    else if (isHuge(type)) expr = `hugeIn(${code})`;
    else return { code, type, nullable };
    const t = this.tmp();
    this.emit(`const ${t} = ${code} === null ? null : ${expr};`);
    return { code: t, type, nullable };
  }

  // ------------------------------------------------------------ casts

  /** The JS template for casting `from` → `to`; `fails` when it can yield undefined (no conversion). */
  castPlan(from: SqlType, to: SqlType, node: Node): { tpl: (c: string) => string; fails: boolean } {
    const err = () =>
      new CompileError(`Unimplemented type for cast (${typeName(from)} -> ${typeName(to)})`, node);
    if (sameType(from, to)) return { tpl: (c) => c, fails: false };
    const ext = castPlanTypes(from, to, JSON.stringify(node.text));
    if (ext === 'unimplemented') throw new CompileError(err().message, node, 'value');
    if (ext === 'beyond')
      throw new CompileError(`CAST from ${typeName(from)} to ${typeName(to)}`, node, 'beyond');
    if (ext) return ext;
    switch (to.id) {
      case 'VARCHAR':
        if (isInt(from)) return { tpl: (c) => `String(${c})`, fails: false };
        switch (from.id) {
          case 'DOUBLE':
            return { tpl: (c) => `dblStr(${c})`, fails: false };
          case 'DECIMAL':
            return { tpl: (c) => `decStr(${c}, ${from.scale}, ${from.width})`, fails: false };
          case 'BOOLEAN':
            return { tpl: (c) => `(${c} ? "true" : "false")`, fails: false };
          case 'DATE':
            return { tpl: (c) => `dateStr(${c})`, fails: false };
          case 'TIMESTAMP':
            return { tpl: (c) => `tsStr(${c})`, fails: false };
          case 'TIMESTAMPTZ':
            return { tpl: (c) => `tstzStr(${c})`, fails: false };
          case 'INTERVAL':
            return { tpl: (c) => `intervalStr(${c})`, fails: false };
          case 'TIME':
            return { tpl: (c) => `timeStr(${c})`, fails: false };
          case 'LIST':
          case 'STRUCT':
            return { tpl: (c) => `nestedText(${c}, ${JSON.stringify(from)})`, fails: false };
          default:
            throw err();
        }
      case 'TINYINT':
      case 'SMALLINT':
      case 'INTEGER':
      case 'BIGINT':
      case 'UTINYINT':
      case 'USMALLINT':
      case 'UINTEGER':
      case 'UBIGINT': {
        const [lo, hi] = INT_RANGE[to.id];
        if (isInt(from)) {
          if (INT_BITS[from.id] <= INT_BITS[to.id]) return { tpl: (c) => c, fails: false };
          return { tpl: (c) => `(${c} >= ${lo} && ${c} <= ${hi} ? ${c} : undefined)`, fails: true };
        }
        switch (from.id) {
          case 'VARCHAR':
            return { tpl: (c) => `strToInt(${c}, ${lo}, ${hi}, ${JSON.stringify(node.text)})`, fails: true };
          case 'DOUBLE':
            return { tpl: (c) => `dblToInt(${c}, ${lo}, ${hi})`, fails: true };
          case 'DECIMAL':
            return { tpl: (c) => `decToInt(${c}, ${from.scale}, ${lo}, ${hi})`, fails: true };
          case 'BOOLEAN':
            return { tpl: (c) => `(${c} ? 1 : 0)`, fails: false };
          default:
            throw err();
        }
      }
      case 'DOUBLE':
        if (isInt(from)) return { tpl: (c) => c, fails: false };
        switch (from.id) {
          case 'VARCHAR':
            return { tpl: (c) => `strToDbl(${c})`, fails: true };
          case 'DECIMAL':
            return { tpl: (c) => `${c} / ${pow10(from.scale)}`, fails: false };
          case 'BOOLEAN':
            return { tpl: (c) => `(${c} ? 1 : 0)`, fails: false };
          default:
            throw err();
        }
      case 'DECIMAL': {
        const { width, scale } = to;
        if (isInt(from)) {
          // wide enough for every value of the integer type: only JS's exact range can be exceeded
          if (width - scale >= INT_DIGITS[from.id]) {
            return {
              tpl: (c) => (scale ? `chkDec(${c} * ${pow10(scale)}, ${JSON.stringify(node.text)})` : c),
              fails: false,
            };
          }
          return {
            tpl: (c) => `decToDec(${c}, 0, ${width}, ${scale}, ${JSON.stringify(node.text)})`,
            fails: true,
          };
        }
        switch (from.id) {
          case 'VARCHAR':
            return {
              tpl: (c) => `strToDec(${c}, ${width}, ${scale}, ${JSON.stringify(node.text)})`,
              fails: true,
            };
          case 'DOUBLE':
            return {
              tpl: (c) => `dblToDec(${c}, ${width}, ${scale}, ${JSON.stringify(node.text)})`,
              fails: true,
            };
          case 'DECIMAL':
            return {
              tpl: (c) => `decToDec(${c}, ${from.scale}, ${width}, ${scale}, ${JSON.stringify(node.text)})`,
              fails: true,
            };
          case 'BOOLEAN':
            // DuckDB's quirk: true is the smallest unit of a type without integer digits (DECIMAL(4,4) .0001)
            return { tpl: (c) => `(${c} ? ${width === scale ? 1 : pow10(scale)} : 0)`, fails: false };
          default:
            throw err();
        }
      }
      case 'BOOLEAN':
        if (isNumeric(from)) return { tpl: (c) => `(${c} !== 0)`, fails: false };
        if (from.id === 'VARCHAR') return { tpl: (c) => `strToBool(${c})`, fails: true };
        throw err();
      case 'DATE':
        if (from.id === 'VARCHAR') return { tpl: (c) => `strToDate(${c})`, fails: true };
        if (from.id === 'TIMESTAMP' || from.id === 'TIMESTAMPTZ')
          return { tpl: (c) => `floorDay(${c})`, fails: false };
        throw err();
      case 'TIMESTAMP':
      case 'TIMESTAMPTZ':
        if (from.id === 'VARCHAR') return { tpl: (c) => `strToTs(${c})`, fails: true };
        if (isTemporal(from)) return { tpl: (c) => c, fails: false };
        throw err();
      case 'INTERVAL':
        // only constant text reaches here (bind.ts sends a cast of a field to DuckDB)
        if (from.id === 'VARCHAR') return { tpl: (c) => `parseIntervalText(${c})`, fails: true };
        throw err();
      case 'TIME':
        if (from.id === 'VARCHAR') return { tpl: (c) => `parseTimeText(${c})`, fails: true };
        if (from.id === 'TIMESTAMP' || from.id === 'TIMESTAMPTZ')
          return { tpl: (c) => `(${c} - floorDay(${c}))`, fails: false };
        throw err();
      case 'ANY':
        return { tpl: (c) => c, fails: false };
      default:
        throw err();
    }
  }

  /** DuckDB's message for a value that does not convert. */
  static castMessage(from: SqlType, to: SqlType, v: unknown): string {
    const phys = isInt(to) ? INT_PHYS[to.id] : to.id === 'BOOLEAN' ? 'BOOL' : typeName(to);
    if (from.id === 'VARCHAR') {
      if (to.id === 'BLOB') return RT.blobMessage(String(v));
      if (to.id === 'DATE') return R.dateCastMessage(String(v));
      if (to.id === 'TIMESTAMP' || to.id === 'TIMESTAMPTZ') return R.tsCastMessage(String(v));
      return `Could not convert string '${String(v)}' to ${phys}`;
    }
    const shown =
      from.id === 'DECIMAL'
        ? R.decStr(v as number, from.scale)
        : from.id === 'DOUBLE'
          ? R.dblStr(v as number)
          : String(v);
    if (to.id === 'DECIMAL') return `Could not cast value ${shown} to ${typeName(to)}`;
    const fromPhys = isInt(from) ? INT_PHYS[from.id] : typeName(from);
    return `Type ${fromPhys} with value ${shown} can't be cast because the value is out of range for the destination type ${phys}`;
  }

  cast(v: Val, to: SqlType, isTry: boolean, node: Node): Val {
    if (this.isNull(v)) return this.nullOf(to, v.isConst === true);
    if (sameType(v.type, to)) return v;
    let plan: ReturnType<Gen['castPlan']>;
    try {
      plan = this.castPlan(v.type, to, node);
    } catch (err) {
      // a cast DuckDB has no implementation for fails when evaluated; TRY_CAST gives NULL (codegen-types.ts)
      if (!(err instanceof CompileError) || err.kind !== 'value') throw err;
      if (isTry) return this.nullOf(to);
      if (v.isConst && this.#lazy === 0) throw new CompileError(err.message, node);
      const t = this.tmp();
      this.emit(`const ${t} = evalError(${jsLit(err.message)}, ${this.x(node)}, ${v.code});`);
      return { code: t, type: to, nullable: true };
    }
    const { tpl, fails } = plan;
    if (v.isConst) {
      const r = atCompileTime(node, () => evalTemplate(tpl, v.cv));
      if (r === undefined) {
        if (to.id === 'INTERVAL' || to.id === 'TIME')
          throw this.beyond(`the ${to.id} text ${JSON.stringify(v.cv)}`, node);
        if (isTry) return this.nullOf(to, true);
        const message = atCompileTime(node, () => Gen.castMessage(v.type, to, v.cv));
        // as DuckDB, a constant that cannot convert fails only when it is evaluated
        if (this.#lazy === 0) throw new CompileError(message, node, 'value');
        const t = this.tmp();
        this.emit(`const ${t} = evalError(${jsLit(message)}, ${this.x(node)}, ${jsLit(v.cv)});`);
        return { code: t, type: to, nullable: true };
      }
      return this.constVal(to, r);
    }
    if (!fails) return this.op([v], to, tpl(v.code));
    const msg = this.k((val: unknown) => Gen.castMessage(v.type, to, val));
    if (isTry) {
      const r = this.op([v], to, tpl(v.code), { nullable: true });
      const t = this.tmp();
      this.emit(`const ${t} = ${r.code} === undefined ? null : ${r.code};`);
      return { code: t, type: to, nullable: true };
    }
    return this.op([v], to, tpl(v.code), {
      check: (t) => `if (${t} === undefined) evalError(${msg}(${v.code}), ${this.x(node)}, ${v.code});`,
    });
  }

  /** Implicit conversion (function arguments, mixing branches): only the casts DuckDB does silently. */
  convert(v: Val, to: SqlType, node: Node, what: () => string): Val {
    if (this.isNull(v)) return this.nullOf(to, v.isConst === true);
    const from = v.type;
    if (sameType(from, to)) return v;
    if (to.id === 'ANY') return this.toOut(v);
    if (v.lit && from.id === 'VARCHAR') return this.cast(v, to, false, node);
    let ok = false;
    if (isInt(from) && isInt(to))
      ok = INT_BITS[from.id] <= INT_BITS[to.id] || (v.isConst === true && this.fits(v.cv as number, to));
    else if (isInt(from) && (to.id === 'DOUBLE' || to.id === 'DECIMAL')) ok = true;
    else if (implicitNumeric(from, to)) ok = true;
    else if (from.id === 'DECIMAL' && (to.id === 'DOUBLE' || to.id === 'DECIMAL')) ok = true;
    else if (from.id === 'DATE' && (to.id === 'TIMESTAMP' || to.id === 'TIMESTAMPTZ')) ok = true;
    else if (from.id === 'TIMESTAMP' && to.id === 'TIMESTAMPTZ') ok = true;
    else if (from.id === 'TIMESTAMPTZ' && to.id === 'TIMESTAMP') ok = true;
    else if (from.id === 'BOOLEAN' && isNumeric(to)) ok = true;
    else if ((from.id === 'LIST' && to.id === 'LIST') || (from.id === 'STRUCT' && to.id === 'STRUCT')) {
      return { ...v, type: to };
    }
    if (!ok) throw new CompileError(what(), node);
    return this.cast(v, to, false, node);
  }

  fits(n: number, t: SqlType): boolean {
    if (!isInt(t)) return false;
    const [lo, hi] = INT_RANGE[t.id];
    return n >= lo && n <= hi;
  }

  /** The common type of values mixed by CASE, COALESCE, IN, greatest/least, list literals. */
  unify(vals: Val[], what: string, node: Node): SqlType {
    let t: SqlType | null = null;
    let lit = false;
    for (const v of vals) {
      if (v.type.id === 'NULL') continue;
      if (t === null) {
        t = v.type;
        lit = !!v.lit;
        continue;
      }
      const b = v.type;
      const bLit = !!v.lit;
      if (sameType(t, b)) {
        lit = lit && bLit;
        continue;
      }
      if (t.id === 'ANY' || b.id === 'ANY') {
        t = T.ANY;
        lit = false;
        continue;
      }
      if (lit && t.id === 'VARCHAR') {
        t = b;
        lit = bLit;
        continue;
      }
      if (bLit && b.id === 'VARCHAR') continue;
      if (isNumeric(t) && isNumeric(b)) {
        t = (isInt(t) || isHuge(t)) && (isInt(b) || isHuge(b)) ? unifyInt(t, b) : maxNumeric(t, b);
        lit = false;
        continue;
      }
      if ((t.id === 'BOOLEAN' && isNumeric(b)) || (b.id === 'BOOLEAN' && isNumeric(t))) {
        t = t.id === 'BOOLEAN' ? b : t;
        lit = false;
        continue;
      }
      if (isTemporal(t) && isTemporal(b)) {
        t = t.id === 'TIMESTAMPTZ' || b.id === 'TIMESTAMPTZ' ? T.TIMESTAMPTZ : T.TIMESTAMP;
        continue;
      }
      if (t.id === 'LIST' && b.id === 'LIST') {
        t = T.LIST_ANY;
        continue;
      }
      if (t.id === 'STRUCT' && b.id === 'STRUCT') {
        t = T.STRUCT_ANY;
        continue;
      }
      const ta: string = lit && isInt(t) ? 'INTEGER_LITERAL' : typeName(t);
      const tb: string = bLit && isInt(b) ? 'INTEGER_LITERAL' : typeName(b);
      throw new CompileError(
        `Cannot mix values of type ${ta} and ${tb} in ${what} - an explicit cast is required`,
        node,
      );
    }
    return t ?? T.NULL;
  }

  // ------------------------------------------------------------ nodes

  /** Generates a value used as a condition (WHERE, CASE WHEN): AND/OR/NOT stop early there, as DuckDB's selections do. */
  cond(node: Node): Val {
    this.#condNext = true;
    return this.bool(this.gen(node), node);
  }

  gen(node: Node): Val {
    const cond = this.#condNext;
    this.#condNext = false;
    if (!this.folding && node.k !== 'const' && folding.fold && constantSubtree(node)) {
      const f = folding.fold(node);
      if (f) return this.constVal(f.type, f.value);
    }
    switch (node.k) {
      case 'const':
        return this.constVal(node.type, node.value, node.lit);
      case 'leaf': {
        const v = this.#leaves.get(JSON.stringify(node.path));
        if (!v) throw new Error(`internal: unknown leaf ${node.text}`);
        return v;
      }
      case 'param': {
        const v = this.#params[node.i];
        if (!v) throw new Error('internal: unknown parameter');
        return v;
      }
      case 'lvar': {
        const v = this.#lvars.get(node.id);
        if (!v) throw new Error(`internal: lambda parameter ${node.text} out of scope`);
        return v;
      }
      case 'and':
      case 'or':
        return this.#logic(node, cond);
      case 'isnull': {
        const a = this.gen(node.arg);
        if (this.isNull(a)) return this.constVal(T.BOOLEAN, !node.not);
        if (!a.nullable) return this.constVal(T.BOOLEAN, node.not);
        const t = this.tmp();
        this.emit(`const ${t} = ${a.code} ${node.not ? '!==' : '==='} null;`);
        return { code: t, type: T.BOOLEAN, nullable: false };
      }
      case 'case':
        return this.#case(node);
      case 'coalesce':
        return this.#coalesce(node);
      case 'call':
        if (node.fn === 'not' && cond) {
          const a = this.cond(node.args[0]!);
          return this.op([a], T.BOOLEAN, `!${a.code}`);
        }
        return this.#call(node);
    }
  }

  /** A value used as a condition: BOOLEAN (or NULL); anything else is DuckDB's implicit cast to BOOLEAN. */
  bool(v: Val, node: Node): Val {
    if (v.type.id === 'BOOLEAN' || this.isNull(v)) return v;
    if (v.type.id === 'ANY') {
      const t = this.tmp();
      this.emit(`const ${t} = anyBool(${v.code}, ${this.x(node)});`);
      return { code: t, type: T.BOOLEAN, nullable: true };
    }
    if (isNumeric(v.type) || v.type.id === 'VARCHAR') return this.cast(v, T.BOOLEAN, false, node);
    throw new CompileError(`Cannot use a value of type ${typeName(v.type)} as a condition`, node);
  }

  /**
   * AND/OR with three-valued logic. As a condition (WHERE, CASE WHEN) operands are evaluated left to
   * right until one decides the result, as DuckDB's selections do; elsewhere (a SELECT-list value)
   * DuckDB evaluates every operand, and so does this.
   */
  #logic(node: Extract<Node, { k: 'and' | 'or' }>, cond: boolean): Val {
    const and = node.k === 'and';
    const stop = and ? 'false' : 'true';
    // a constant operand that decides the result (FALSE in AND, TRUE in OR) folds it, as DuckDB's optimizer
    // does (a BETWEEN that is constant as a whole is evaluated as a whole)
    for (const arg of node.between && constantSubtree(node) ? [] : node.args) {
      if (!constantSubtree(arg)) continue;
      const { val } = this.capture(() => this.bool(this.gen(arg), arg), true);
      if (val.isConst && val.cv === !and) {
        for (const other of node.args) this.capture(() => this.gen(other), true); // still type-checked
        return this.constVal(T.BOOLEAN, !and);
      }
    }
    if (!cond) {
      const vals = node.args.map((arg) => this.bool(this.gen(arg), arg));
      const live = vals.filter((v) => !this.isNull(v));
      const anyNull = live.length < vals.length;
      const r = this.tmp();
      const decided = live.map((v) => `${v.code} === ${stop}`).join(' || ') || 'false';
      const nulls = live.filter((v) => v.nullable).map((v) => `${v.code} === null`);
      const undecided = anyNull
        ? 'null'
        : nulls.length
          ? `(${nulls.join(' || ')} ? null : ${and})`
          : String(and);
      this.emit(`const ${r} = ${decided} ? ${stop} : ${undecided};`);
      return { code: r, type: T.BOOLEAN, nullable: anyNull || nulls.length > 0 };
    }
    const r = this.tmp();
    this.emit(`let ${r} = ${and ? 'true' : 'false'};`);
    let depth = 0;
    let nullable = false;
    node.args.forEach((arg, i) => {
      const v = i === 0 ? this.cond(arg) : this.lazily(() => this.cond(arg));
      if (v.nullable) nullable = true;
      const last = i === node.args.length - 1;
      if (this.isNull(v)) {
        this.emit(`${r} = null;`);
        return;
      }
      this.emit(`if (${v.code} === ${stop}) ${r} = ${stop}; else {`);
      if (v.nullable) this.emit(`if (${v.code} === null) ${r} = null;`);
      if (!last) depth++;
      else this.emit('}');
    });
    for (let i = 0; i < depth; i++) this.emit('}');
    return { code: r, type: T.BOOLEAN, nullable };
  }

  #case(node: Extract<Node, { k: 'case' }>): Val {
    const conds: { lines: string[]; val: Val }[] = [];
    const thens: { lines: string[]; val: Val }[] = [];
    node.whens.forEach((w, i) => {
      conds.push(this.capture(() => this.cond(w.when), i > 0));
      thens.push(this.capture(() => this.gen(w.result), true));
    });
    const els = node.else
      ? this.capture(() => this.gen(node.else!), true)
      : { lines: [], val: this.nullOf(T.NULL, true) };
    const branches = [...thens, els];
    const type = this.unify(
      branches.map((b) => b.val),
      'CASE expression',
      node,
    );
    const r = this.tmp();
    this.emit(`let ${r};`);
    let nullable = false;
    const assign = (b: { lines: string[]; val: Val }, branchNode: Node) => {
      for (const l of b.lines) this.emit(l);
      const v = this.lazily(() =>
        this.convert(b.val, type, branchNode, () => `Cannot mix types in CASE expression`),
      );
      if (v.nullable) nullable = true;
      this.emit(`${r} = ${v.code};`);
    };
    node.whens.forEach((w, i) => {
      for (const l of conds[i]!.lines) this.emit(l);
      this.emit(`if (${conds[i]!.val.code} === true) {`);
      assign(thens[i]!, w.result);
      this.emit('} else {');
    });
    assign(els, node.else ?? node);
    for (let i = 0; i < node.whens.length; i++) this.emit('}');
    return { code: r, type, nullable };
  }

  #coalesce(node: Extract<Node, { k: 'coalesce' }>): Val {
    const parts = node.args.map((a, i) => this.capture(() => this.gen(a), i > 0));
    const type = this.unify(
      parts.map((p) => p.val),
      'COALESCE',
      node,
    );
    const r = this.tmp();
    this.emit(`let ${r} = null;`);
    let open = 0;
    let nullable = true;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      for (const l of p.lines) this.emit(l);
      const v = this.lazily(() =>
        this.convert(p.val, type, node.args[i]!, () => 'Cannot mix types in COALESCE'),
      );
      if (this.isNull(v)) continue;
      this.emit(`${r} = ${v.code};`);
      if (!v.nullable) {
        nullable = false;
        break;
      }
      if (i < parts.length - 1) {
        this.emit(`if (${r} === null) {`);
        open++;
      }
    }
    for (let i = 0; i < open; i++) this.emit('}');
    return { code: r, type, nullable };
  }

  // ------------------------------------------------------------ calls

  #call(node: Extract<Node, { k: 'call' }>): Val {
    if (node.fn === 'typeof') {
      // DuckDB folds typeof() to the argument's type: the argument is not evaluated (it cannot fail)
      const { lines, val } = this.capture(() => this.gen(node.args[0]!), true);
      // a value whose type is known only per record (or a list or struct holding one) is looked at
      if (typedPerRecord(val.type)) for (const l of lines) this.emit(l);
      return this.#impl(node, [val]);
    }
    const strict = STRICT.has(node.fn);
    let failure: CompileError | undefined;
    const { lines, val: args } = this.capture(() =>
      node.args.map((a) => {
        try {
          return this.gen(a);
        } catch (err) {
          // a constant that does not convert loses to a constant NULL operand that folds the call (below)
          if (!(err instanceof CompileError) || err.kind !== 'value' || !strict || failure) throw err;
          failure = err;
          return this.nullOf(T.NULL);
        }
      }),
    );
    // `+` on lists is DuckDB's list_concat, which skips a NULL operand
    const listConcat = node.fn === '+' && args.some((a) => a.type.id === 'LIST');
    const folds =
      strict &&
      !listConcat &&
      args.some((a, i) => this.isNull(a) && (a.isConst || constantSubtree(node.args[i]!)));
    if (failure) {
      if (!args.some((a) => a.isConst === true && a.cv === null)) throw failure;
      return this.nullOf(T.NULL, true);
    }
    if (folds) {
      // DuckDB's optimizer folds an operator with a constant NULL operand to NULL without evaluating
      // the other operands (after binding: a type error still is one)
      const typed = this.capture(() => this.#impl(node, args));
      return this.nullOf(typed.val.type, true);
    }
    for (const l of lines) this.emit(l);
    return this.#impl(node, args);
  }

  #impl(node: Extract<Node, { k: 'call' }>, args: Val[]): Val {
    if (args.some((a) => a.type.id === 'ANY') && !ANY_NATIVE.has(node.fn)) return this.dynamic(node, args);
    if (args.some((a) => a.type.id === 'OTHER')) {
      throw new CompileError(`${node.text} cannot use ${typeName(T.OTHER)}`, node, 'beyond');
    }
    const sub =
      node.fn === 'array_extract' || node.fn === 'struct_extract'
        ? mapSubscript(this, args, node)
        : undefined;
    if (sub) return sub;
    if (!TYPE_AWARE.has(node.fn) && !(node.fn in TYPE_CALLS) && args.some((a) => isExtType(a.type))) {
      throw new CompileError(
        `${node.fn}() on ${args.map((a) => typeName(a.type)).join(', ')}`,
        node,
        'beyond',
      );
    }
    const impl = CALLS[node.fn];
    if (!impl) throw new CompileError(`internal: no implementation of ${node.fn}`, node);
    return impl(this, args, node);
  }

  /** Compiles `node` per record for the run-time types of its ANY arguments. */
  dynamic(node: Extract<Node, { k: 'call' }>, args: Val[]): Val {
    const site: DynSite = { node, types: args.map((a) => a.type), cache: new Map() };
    const ref = this.k(site);
    const t = this.tmp();
    this.emit(`const ${t} = dyn(${ref}, ${args.map((a) => a.code).join(', ') || 'undefined'});`);
    return { code: t, type: T.ANY, nullable: true };
  }

  /** A bind error at `node` (for call implementations outside this module). */
  error(message: string, node: Node): CompileError {
    return new CompileError(message, node);
  }

  /** A construct outside the compiled subset, found with the types (DuckDB runs the query). */
  beyond(message: string, node: Node): CompileError {
    return new CompileError(message, node, 'beyond');
  }

  mismatch(name: string, args: Val[], node: Node): CompileError {
    const types = args.map((a) =>
      a.lit && isInt(a.type)
        ? 'INTEGER_LITERAL'
        : a.lit && a.type.id === 'VARCHAR'
          ? 'STRING_LITERAL'
          : typeName(a.type),
    );
    return new CompileError(
      `No function matches the given name and argument types '${name}(${types.join(', ')})'. You might need to add explicit type casts.`,
      node,
    );
  }

  /** Converts arguments to a function's parameter types (implicit casts only). */
  params(name: string, args: Val[], types: SqlType[], node: Node): Val[] {
    return args.map((a, i) =>
      this.convert(
        a,
        types[Math.min(i, types.length - 1)]!,
        node,
        () => this.mismatch(name, args, node).message,
      ),
    );
  }

  /** A compile-time constant string argument (a pattern, a date part), or undefined when it varies. */
  constString(v: Val): string | null | undefined {
    if (this.isNull(v)) return null;
    if (v.isConst && typeof v.cv === 'string') return v.cv;
    return undefined;
  }

  // ------------------------------------------------------------ comparisons

  /**
   * Brings two values to a comparable type with DuckDB's rules: numbers compare as numbers; a
   * string constant takes the other side's type; a string column meets a number, boolean or date
   * only in an equality (it is cast); booleans order against integers; anything else needs a cast.
   */
  prepCmp(a: Val, b: Val, node: Node, ordered: boolean): { a: Val; b: Val; kind: CmpKind } {
    const ta = a.type;
    const tb = b.type;
    if (this.isNull(a) || this.isNull(b)) return { a, b, kind: 'num' };
    const ext = prepCmpTypes(this, a, b, node, ordered);
    if (ext) return ext;
    const fail = (): never => {
      const na = a.lit && isInt(ta) ? 'INTEGER_LITERAL' : typeName(ta);
      const nb = b.lit && isInt(tb) ? 'INTEGER_LITERAL' : typeName(tb);
      throw new CompileError(
        `Cannot compare values of type ${na} and type ${nb} - an explicit cast is required`,
        node,
      );
    };
    if (isNumeric(ta) && isNumeric(tb)) {
      const t = maxNumeric(ta, tb);
      const why = () => 'incompatible numbers';
      return {
        a: this.convert(a, t, node, why),
        b: this.convert(b, t, node, why),
        kind: t.id === 'DOUBLE' || t.id === 'FLOAT' ? 'dbl' : 'num',
      };
    }
    if (ta.id === 'VARCHAR' && tb.id === 'VARCHAR') return { a, b, kind: 'str' };
    const scalar = (t: SqlType) =>
      isNumeric(t) || t.id === 'BOOLEAN' || isTemporal(t) || t.id === 'INTERVAL' || t.id === 'TIME';
    if (ta.id === 'VARCHAR' && scalar(tb)) {
      if (!a.lit && ordered) fail();
      return this.prepCmp(this.cast(a, tb, false, node), b, node, ordered);
    }
    if (tb.id === 'VARCHAR' && scalar(ta)) {
      if (!b.lit && ordered) fail();
      return this.prepCmp(a, this.cast(b, ta, false, node), node, ordered);
    }
    if (ta.id === 'BOOLEAN' && tb.id === 'BOOLEAN') return { a, b, kind: 'bool' };
    if (ta.id === 'BOOLEAN' && isNumeric(tb)) {
      if (ordered && !isInt(tb)) fail();
      return this.prepCmp(this.cast(a, tb, false, node), b, node, ordered);
    }
    if (tb.id === 'BOOLEAN' && isNumeric(ta)) {
      if (ordered && !isInt(ta)) fail();
      return this.prepCmp(a, this.cast(b, ta, false, node), node, ordered);
    }
    if (isTemporal(ta) && isTemporal(tb)) return { a, b, kind: 'num' };
    if (ta.id === 'TIME' && tb.id === 'TIME') return { a, b, kind: 'num' };
    if (ta.id === 'INTERVAL' && tb.id === 'INTERVAL') return { a, b, kind: 'interval' };
    if ((ta.id === 'LIST' && tb.id === 'LIST') || (ta.id === 'STRUCT' && tb.id === 'STRUCT')) {
      if (ordered && !nestedComparable(ta, tb)) fail();
      if (!ordered && !likeElements(ta, tb))
        throw new CompileError(`= on ${typeName(ta)} and ${typeName(tb)}`, node, 'beyond');
      return { a, b, kind: ordered ? 'nested' : 'deep' };
    }
    return fail();
  }

  /** `x` is the expression's text as a JS literal, for a run-time error. */
  cmpCode(kind: CmpKind, op: string, a: string, b: string, x = '""'): string {
    switch (kind) {
      case 'dbl':
        switch (op) {
          case '=':
            return `dblEq(${a}, ${b})`;
          case '<>':
            return `!dblEq(${a}, ${b})`;
          case '<':
            return `dblLt(${a}, ${b})`;
          case '<=':
            return `dblLe(${a}, ${b})`;
          case '>':
            return `dblLt(${b}, ${a})`;
          default:
            return `dblLe(${b}, ${a})`;
        }
      case 'str':
        if (op === '=' || op === '<>') return `${a} ${CMP_JS[op]} ${b}`;
        return `strCmp(${a}, ${b}) ${op} 0`;
      case 'deep':
        return op === '=' ? `deepEq(${a}, ${b}, ${x})` : `!deepEq(${a}, ${b}, ${x})`;
      case 'nested':
        return `nestedCmp(${a}, ${b}, ${x}) ${op} 0`;
      case 'interval':
        return `intervalCmp(${a}, ${b}) ${CMP_JS[op]} 0`;
      case 'blob':
        return `blobCmp(${a}, ${b}) ${CMP_JS[op]} 0`;
      default:
        return `${a} ${CMP_JS[op]} ${b}`;
    }
  }

  compare(op: string, a: Val, b: Val, node: Node): Val {
    const p = this.prepCmp(a, b, node, op !== '=' && op !== '<>');
    return this.op([p.a, p.b], T.BOOLEAN, this.cmpCode(p.kind, op, p.a.code, p.b.code, this.x(node)));
  }
}

/**
 * Whether DuckDB compares LISTs or STRUCTs of these types without an explicit cast: their elements
 * (fields, by name) must be comparable; an element type known only per record is checked then.
 */
function nestedComparable(a: SqlType, b: SqlType): boolean {
  if (a.id === 'ANY' || b.id === 'ANY' || a.id === 'NULL' || b.id === 'NULL') return true;
  if (a.id === 'LIST' && b.id === 'LIST') return nestedComparable(a.child, b.child);
  if (a.id === 'STRUCT' && b.id === 'STRUCT') {
    if (!a.fields || !b.fields) return true;
    return a.fields.every(([k, t]) => {
      const other = b.fields!.find(([n]) => n.toLowerCase() === k.toLowerCase());
      return !other || nestedComparable(t, other[1]);
    });
  }
  const scalar = (t: SqlType) => isNumeric(t) || t.id === 'BOOLEAN';
  if (scalar(a) && scalar(b)) return true;
  if (isTemporal(a) && isTemporal(b)) return true;
  return a.id === b.id && a.id !== 'LIST' && a.id !== 'STRUCT' && a.id !== 'OTHER';
}

/**
 * Whether `=` on LISTs or STRUCTs of these types compares like with like, as compiled code does.
 * DuckDB first casts both to one type: a VARCHAR element against a number compares the number's
 * text ([1] = ['1'] is true), a BOOLEAN against a number its value ([1] = [true]); DuckDB runs those.
 * An element type known only per record is checked then (deepEq).
 */
function likeElements(a: SqlType, b: SqlType): boolean {
  if (a.id === 'ANY' || b.id === 'ANY' || a.id === 'NULL' || b.id === 'NULL') return true;
  if (a.id === 'LIST' && b.id === 'LIST') return likeElements(a.child, b.child);
  if (a.id === 'STRUCT' && b.id === 'STRUCT') {
    if (!a.fields || !b.fields) return true;
    return a.fields.every(([k, t]) => {
      const other = b.fields!.find(([n]) => n.toLowerCase() === k.toLowerCase());
      return !other || likeElements(t, other[1]);
    });
  }
  if (isNumeric(a) && isNumeric(b)) return true;
  if (isTemporal(a) && isTemporal(b)) return true;
  return a.id === b.id && a.id !== 'LIST' && a.id !== 'STRUCT';
}

/** Calls whose result is NULL when any operand is NULL (DuckDB folds them on a constant NULL operand). */
const STRICT = new Set([
  '+',
  '-',
  '*',
  '/',
  '//',
  '%',
  '**',
  '||',
  'neg',
  'pos',
  'not',
  '=',
  '<>',
  '<',
  '<=',
  '>',
  '>=',
  'like',
  'cast',
  'try_cast',
  'upper',
  'lower',
  'length',
  'trim',
  'ltrim',
  'rtrim',
  'substr',
  'replace',
  'starts_with',
  'ends_with',
  'contains',
  'left',
  'right',
  'lpad',
  'rpad',
  'split_part',
  'regexp_matches',
  'regexp_full_match',
  'regexp_replace',
  'strpos',
  'abs',
  'round',
  'floor',
  'ceil',
  'sqrt',
  'power',
  'ln',
  'log10',
  'log',
  'exp',
  'sign',
  'date_trunc',
  'date_part',
  'strftime',
  'array_extract',
  'struct_extract',
]);
// (strptime's format is checked before its NULL: DuckDB refuses strptime(NULL, ''))
for (const name of Object.keys(TEMPORAL_CALLS))
  if (!['now', 'today', 'strptime', 'try_strptime'].includes(name)) STRICT.add(name);

const constantCache = new WeakMap<Node, boolean>();

/** Whether a subtree reads nothing from the record (and not the clock): DuckDB can fold it. */
export function constantSubtree(n: Node): boolean {
  let c = constantCache.get(n);
  if (c === undefined) {
    c = !(
      n.k === 'leaf' ||
      n.k === 'param' ||
      n.k === 'lvar' ||
      (n.k === 'call' && (n.fn === 'now' || n.fn === 'today'))
    );
    if (c) {
      const kids =
        n.k === 'call' && n.lambda
          ? [...n.args, ...lambdaFree(n)]
          : n.k === 'call' || n.k === 'and' || n.k === 'or' || n.k === 'coalesce'
            ? n.args
            : n.k === 'isnull'
              ? [n.arg]
              : n.k === 'case'
                ? [...n.whens.flatMap((w) => [w.when, w.result]), ...(n.else ? [n.else] : [])]
                : [];
      c = kids.every(constantSubtree);
    }
    constantCache.set(n, c);
  }
  return c;
}

/**
 * What a lambda body reads from outside the lambda, for constantSubtree: the record (a leaf) and
 * the clock are not constant; the lambda's own parameters are.
 */
function lambdaFree(call: Extract<Node, { k: 'call' }>): Node[] {
  const out: Node[] = [];
  // parameters of this lambda and of lambdas nested in its body are bound; any other is an outer lambda's
  const bound = new Set<number>();
  const visit = (n: Node): void => {
    if (n.k === 'call' && n.lambda) for (const id of n.lambda.params) bound.add(id);
    if (
      n.k === 'leaf' ||
      n.k === 'param' ||
      (n.k === 'lvar' && !bound.has(n.id)) ||
      (n.k === 'call' && (n.fn === 'now' || n.fn === 'today'))
    )
      out.push(n);
    for (const c of children(n)) visit(c);
  };
  for (const id of call.lambda!.params) bound.add(id);
  visit(call.lambda!.body);
  return out;
}
/** Calls that know the types of codegen-types.ts; any other call on them runs on DuckDB. */
const TYPE_AWARE = new Set([
  ...['+', '-', '*', '/', '//', '%', '**', '||', 'neg', 'pos'],
  ...Object.keys(CMP_JS),
  ...['distinct', 'not_distinct', 'in', 'not_in', 'cast', 'try_cast', 'typeof', 'nullif'],
  ...['concat', 'concat_ws', 'list_value', 'struct_pack', 'sqrt', 'power', 'ln', 'log10', 'exp'],
]);

/** Calls that handle ANY arguments themselves instead of going through a run-time site. */
const ANY_NATIVE = new Set([
  ...LAMBDA_CALLS,
  'array_extract',
  'struct_extract',
  'typeof',
  'concat',
  'concat_ws',
  'list_value',
  'struct_pack',
]);

export type CallImpl = (g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>) => Val;

function x(g: Gen, node: Node): string {
  return g.x(node);
}

function needVarchar(g: Gen, name: string, args: Val[], node: Node, types: SqlType[]): Val[] {
  return g.params(name, args, types, node);
}

// ---------------------------------------------------------------- arithmetic

function narrowLiteral(lit: Val, other: Val): Val {
  if (!lit.lit || !lit.isConst || typeof lit.cv !== 'number' || other.lit) return lit;
  if (!isInt(lit.type) || !isInt(other.type)) return lit;
  if (INT_BITS[other.type.id] >= INT_BITS[lit.type.id] && !isUnsigned(other.type)) return lit;
  const [lo, hi] = INT_RANGE[other.type.id];
  return lit.cv >= lo && lit.cv <= hi ? { ...lit, type: other.type } : lit;
}

/** Arithmetic on dates, timestamps, times and intervals, or undefined for other operands. */
function temporalArith(g: Gen, op: string, a: Val, b: Val, node: Node): Val | undefined {
  const ta = a.type.id === 'NULL' ? b.type : a.type;
  const tb = b.type.id === 'NULL' ? a.type : b.type;
  if (op === '*' && (ta.id === 'INTERVAL' || tb.id === 'INTERVAL')) {
    const [iv, n] = ta.id === 'INTERVAL' ? [a, b] : [b, a];
    if (g.isNull(n) || g.isNull(iv)) return g.op([iv, n], T.INTERVAL, 'null');
    if (isInt(n.type))
      return g.op([iv, n], T.INTERVAL, `intervalMulInt(${iv.code}, ${n.code}, ${x(g, node)})`);
    if (n.type.id === 'DOUBLE' || n.type.id === 'DECIMAL') {
      const f = g.convert(n, T.DOUBLE, node, () => g.mismatch(op, [a, b], node).message);
      return g.op([iv, f], T.INTERVAL, `intervalMulDbl(${iv.code}, ${f.code}, ${x(g, node)})`);
    }
  }
  if ((ta.id === 'INTERVAL' || tb.id === 'INTERVAL') && op !== '+' && op !== '-')
    throw g.beyond(`the operator ${op} on an INTERVAL`, node);
  if (op !== '+' && op !== '-') return undefined;
  const ts = (t: SqlType) => t.id === 'TIMESTAMP' || t.id === 'TIMESTAMPTZ';
  const stamp = (t: SqlType) => (t.id === 'TIMESTAMPTZ' ? T.TIMESTAMPTZ : T.TIMESTAMP);
  if (op === '-' && isTemporal(ta) && isTemporal(tb) && (ts(ta) || ts(tb)))
    return g.op([a, b], T.INTERVAL, `tsDiff(${a.code}, ${b.code})`);
  if (isTemporal(ta) && tb.id === 'INTERVAL') {
    const iv = op === '-' ? `intervalNeg(${b.code})` : b.code;
    return g.op([a, b], stamp(ta), `tsAddInterval(${a.code}, ${iv})`);
  }
  if (op === '+' && ta.id === 'INTERVAL' && isTemporal(tb))
    return g.op([a, b], stamp(tb), `tsAddInterval(${b.code}, ${a.code})`);
  if (ta.id === 'INTERVAL' && tb.id === 'INTERVAL') {
    const iv = op === '-' ? `intervalNeg(${b.code})` : b.code;
    return g.op([a, b], T.INTERVAL, `intervalAdd(${a.code}, ${iv})`);
  }
  if (ta.id === 'TIME' && tb.id === 'INTERVAL') {
    const iv = op === '-' ? `intervalNeg(${b.code})` : b.code;
    return g.op([a, b], T.TIME, `timeAddInterval(${a.code}, ${iv})`);
  }
  if (op === '+' && ta.id === 'INTERVAL' && tb.id === 'TIME')
    return g.op([a, b], T.TIME, `timeAddInterval(${b.code}, ${a.code})`);
  if (op === '+' && ta.id === 'DATE' && tb.id === 'TIME')
    return g.op([a, b], T.TIMESTAMP, `${a.code} + ${b.code}`);
  if (op === '+' && ta.id === 'TIME' && tb.id === 'DATE')
    return g.op([a, b], T.TIMESTAMP, `${a.code} + ${b.code}`);
  return undefined;
}

/**
 * DuckDB's binder on a string constant in arithmetic, where it is not a number yet: other overloads
 * compete (`'1' + 1` could be DATE + days, `'1' * 2.5` an INTERVAL times a number), and where no
 * candidate is cheapest DuckDB refuses the query. Which operand types meet that, per operator and
 * side of the constant, as DuckDB 1.5 decides (`NULL` is a NULL constant); beside another NULL the
 * result is NULL.
 */
const AMBIGUOUS_WITH_STRING: Record<string, { left: (t: string) => boolean; right: (t: string) => boolean }> =
  {
    '+': { left: (t) => t === 'INTEGER', right: (t) => t === 'INTEGER' },
    '-': { left: (t) => t === 'INTEGER', right: () => false },
    '*': {
      left: (t) => ['BIGINT', 'DOUBLE', 'DECIMAL', 'NULL'].includes(t),
      right: (t) => ['BIGINT', 'DOUBLE', 'DECIMAL', 'NULL'].includes(t),
    },
    '/': { left: (t) => t !== 'FLOAT', right: () => false },
  };

function stringConstantOperand(g: Gen, op: string, a: Val, b: Val, node: Node): Val | undefined {
  const str = (v: Val) => v.lit === true && v.type.id === 'VARCHAR';
  if (str(a) === str(b)) return undefined;
  const [s, o] = str(a) ? [a, b] : [b, a];
  const rule = AMBIGUOUS_WITH_STRING[op];
  const other = o.type.id === 'NULL' ? (o.isConst ? 'NULL' : '') : isNumeric(o.type) ? o.type.id : '';
  if (rule && other && (s === a ? rule.left(other) : rule.right(other))) {
    const kind = (v: Val) =>
      str(v)
        ? 'STRING_LITERAL'
        : v.type.id === 'NULL'
          ? '"NULL"'
          : v.lit
            ? 'INTEGER_LITERAL'
            : typeName(v.type);
    throw g.error(
      `Could not choose a best candidate function for the function call "${op}(${kind(a)}, ${kind(b)})". In order to select one, please add explicit type casts.`,
      node,
    );
  }
  if (o.type.id === 'NULL') return g.nullOf(op === '/' || op === '**' ? T.DOUBLE : T.BIGINT);
  return undefined;
}

function arith(op: string): CallImpl {
  return (g, args, node) => {
    let [a, b] = args as [Val, Val];
    const nullConst = stringConstantOperand(g, op, a, b, node);
    if (nullConst) return nullConst;
    // a string constant adapts to the other operand, as DuckDB's string literals do
    if (a.lit && a.type.id === 'VARCHAR' && !(b.lit && b.type.id === 'VARCHAR') && b.type.id !== 'NULL') {
      a = g.cast(a, b.type, false, node);
    }
    if (b.lit && b.type.id === 'VARCHAR' && !(a.lit && a.type.id === 'VARCHAR') && a.type.id !== 'NULL') {
      b = g.cast(b, a.type, false, node);
    }
    // an integer constant takes a narrower integer operand's type when it fits, as DuckDB's integer
    // literals do: SMALLINT + 1 is SMALLINT arithmetic and overflows at 32767
    a = narrowLiteral(a, b);
    b = narrowLiteral(b, a);
    const ta = a.type.id === 'NULL' ? b.type : a.type;
    const tb = b.type.id === 'NULL' ? a.type : b.type;
    if (op === '+' && ta.id === 'LIST' && tb.id === 'LIST') return listConcatOp(g, a, b, node);
    const temporal = temporalArith(g, op, a, b, node);
    if (temporal) return temporal;
    if (ta.id === 'DATE' && isInt(tb) && (op === '+' || op === '-')) {
      return g.op([a, b], T.DATE, `${a.code} ${op} ${b.code} * 86400000000`);
    }
    if (isInt(ta) && tb.id === 'DATE' && op === '+')
      return g.op([a, b], T.DATE, `${b.code} + ${a.code} * 86400000000`);
    if (ta.id === 'DATE' && tb.id === 'DATE' && op === '-')
      return g.op([a, b], T.BIGINT, `(${a.code} - ${b.code}) / 86400000000`);
    if (!(isNumeric(ta) || ta.id === 'NULL') || !(isNumeric(tb) || tb.id === 'NULL')) {
      throw g.mismatch(op, args, node);
    }
    if (a.type.id === 'NULL' && b.type.id === 'NULL')
      return g.nullOf(op === '/' || op === '**' ? T.DOUBLE : T.INTEGER);
    const ext = arithTypes(g, op, a, b, ta, tb, node);
    if (ext) return ext;
    const why = () => g.mismatch(op, args, node).message;
    if (op === '/' || op === '**') {
      const ca = g.convert(a, T.DOUBLE, node, why);
      const cb = g.convert(b, T.DOUBLE, node, why);
      return g.op(
        [ca, cb],
        T.DOUBLE,
        op === '/' ? `${ca.code} / ${cb.code}` : `Math.pow(${ca.code}, ${cb.code})`,
      );
    }
    const t = maxNumeric(ta, tb);
    if (t.id === 'DOUBLE' || (op === '//' && t.id === 'DECIMAL')) {
      const ca = g.convert(a, T.DOUBLE, node, why);
      const cb = g.convert(b, T.DOUBLE, node, why);
      if (op === '//')
        return g.op([ca, cb], T.DOUBLE, `dblIntDiv(${ca.code}, ${cb.code})`, { nullable: true });
      return g.op([ca, cb], T.DOUBLE, `${ca.code} ${op} ${cb.code}`);
    }
    if (isInt(t)) {
      const ca = g.convert(a, t, node, why);
      const cb = g.convert(b, t, node, why);
      const [lo, hi] = INT_RANGE[t.id];
      const phys = INT_PHYS[t.id];
      if (op === '//') {
        return g.op(
          [ca, cb],
          t,
          `intDiv(${ca.code}, ${cb.code}, ${lo}, ${hi}, ${JSON.stringify(phys)}, ${x(g, node)})`,
          {
            nullable: true,
          },
        );
      }
      if (op === '%') return g.op([ca, cb], t, `intMod(${ca.code}, ${cb.code})`, { nullable: true });
      const ok =
        phys === 'INT64'
          ? (r: string) => `Number.isSafeInteger(${r})`
          : phys === 'UINT64'
            ? (r: string) => `Number.isSafeInteger(${r}) && ${r} >= 0`
            : (r: string) => `${r} >= ${lo} && ${r} <= ${hi}`;
      // `+ 0` turns the -0 of a negative times zero into the 0 an integer is
      const expr = op === '*' ? `${ca.code} * ${cb.code} + 0` : `${ca.code} ${op} ${cb.code}`;
      return g.op([ca, cb], t, expr, {
        check: (r) =>
          `if (!(${ok(r)})) intOvf(${JSON.stringify(phys)}, ${JSON.stringify(op)}, ${ca.code}, ${cb.code}, ${r}, ${x(g, node)});`,
      });
    }
    // DECIMAL
    const da = asDecimal(ta)!;
    const db = asDecimal(tb)!;
    const ca = g.convert(a, decimal(da.width, da.scale), node, why);
    const cb = g.convert(b, decimal(db.width, db.scale), node, why);
    if (op === '*') {
      const scale = da.scale + db.scale;
      if (scale > 38) {
        throw new CompileError(
          `Needed scale ${scale} to accurately represent the multiplication result, but this is out of range of the DECIMAL type. Max scale is 38; could not perform an accurate multiplication. Either add a cast to DOUBLE, or add an explicit cast to a decimal with a lower scale.`,
          node,
        );
      }
      const rt = decimal(Math.min(38, da.width + db.width), scale);
      return g.op([ca, cb], rt, `${ca.code} * ${cb.code}`, {
        check: (r) => `if (!Number.isSafeInteger(${r})) chkDec(${r}, ${x(g, node)});`,
      });
    }
    const scale = Math.max(da.scale, db.scale);
    const sa = scale === da.scale ? ca.code : `${ca.code} * ${R.POW10[scale - da.scale]}`;
    const sb = scale === db.scale ? cb.code : `${cb.code} * ${R.POW10[scale - db.scale]}`;
    if (op === '%') {
      const rt = maxNumeric(decimal(da.width, da.scale), decimal(db.width, db.scale));
      return g.op([ca, cb], rt, `intMod(${sa}, ${sb})`, { nullable: true });
    }
    const width = Math.min(38, Math.max(da.width - da.scale, db.width - db.scale) + scale + 1);
    return g.op([ca, cb], decimal(width, scale), `${sa} ${op} ${sb}`, {
      check: (r) => `if (!Number.isSafeInteger(${r})) chkDec(${r}, ${x(g, node)});`,
    });
  };
}

/** `l1 + l2`: DuckDB's list_concat, where a NULL list counts as empty. */
function listConcatOp(g: Gen, a: Val, b: Val, node: Node): Val {
  const ca = a.type.id === 'LIST' ? a.type.child : T.NULL;
  const cb = b.type.id === 'LIST' ? b.type.child : T.NULL;
  let child: SqlType;
  try {
    child = g.unify(
      [
        { ...a, type: ca },
        { ...b, type: cb },
      ],
      'list concatenation',
      node,
    );
  } catch {
    throw new CompileError(
      `Cannot concatenate lists of types ${typeName(a.type)} and ${typeName(b.type)} - an explicit cast is required`,
      node,
    );
  }
  const part = (v: Val) => (g.isNull(v) ? '' : v.nullable ? `...(${v.code} ?? [])` : `...${v.code}`);
  const t = g.tmp();
  g.emit(`const ${t} = [${[part(a), part(b)].filter(Boolean).join(', ')}];`);
  return { code: t, type: { id: 'LIST', child }, nullable: false };
}

function concatOp(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [a, b] = args as [Val, Val];
  if (a.type.id === 'ANY' || b.type.id === 'ANY') return g.dynamic(node, args);
  const ext = concatTypes(g, a, b, node);
  if (ext) return ext;
  // `[1] || NULL` is NULL in DuckDB, as any operator over a NULL
  if (g.isNull(a) || g.isNull(b)) return g.nullOf(T.VARCHAR, a.isConst === true || b.isConst === true);
  if (a.type.id === 'LIST' && b.type.id === 'LIST') {
    const t = g.unify(
      [
        { ...a, type: a.type.child },
        { ...b, type: b.type.child },
      ],
      'list concatenation',
      node,
    );
    return g.op([a, b], { id: 'LIST', child: t }, `[...${a.code}, ...${b.code}]`);
  }
  if (a.type.id === 'LIST' || b.type.id === 'LIST' || a.type.id === 'STRUCT' || b.type.id === 'STRUCT') {
    throw new CompileError(
      `Cannot concatenate types ${typeName(a.type)} and ${typeName(b.type)} - an explicit cast is required`,
      node,
    );
  }
  const sa = g.cast(a, T.VARCHAR, false, node);
  const sb = g.cast(b, T.VARCHAR, false, node);
  return g.op([sa, sb], T.VARCHAR, `${sa.code} + ${sb.code}`);
}

// ---------------------------------------------------------------- predicates

function inList(not: boolean): CallImpl {
  return (g, args, node) => {
    const [xv, ...items] = args as [Val, ...Val[]];
    if (g.isNull(xv)) return g.nullOf(T.BOOLEAN);
    const conds: string[] = [];
    const nullChecks: string[] = [];
    let constNull = false;
    const simple = items.every(
      (i) => i.isConst && i.cv !== null && (typeof i.cv === 'string' || typeof i.cv === 'number'),
    );
    for (const item of items) {
      if (g.isNull(item)) {
        constNull = true;
        continue;
      }
      const p = g.prepCmp(xv, item, node, false);
      const eq = g.cmpCode(p.kind, '=', p.a.code, p.b.code);
      conds.push(p.b.nullable ? `(${p.b.code} !== null && ${eq})` : eq);
      if (p.b.nullable) nullChecks.push(`${p.b.code} === null`);
    }
    const r = g.tmp();
    const none = constNull
      ? 'null'
      : nullChecks.length
        ? `(${nullChecks.join(' || ')} ? null : false)`
        : 'false';
    let match: string;
    if (
      simple &&
      conds.length >= 4 &&
      (xv.type.id === 'VARCHAR' || isInt(xv.type)) &&
      items.every((i) => sameType(i.type, xv.type) || (isInt(i.type) && isInt(xv.type)))
    ) {
      const set = g.k(new Set(items.map((i) => i.cv)));
      match = `${set}.has(${xv.code})`;
    } else {
      match = conds.length ? conds.join(' || ') : 'false';
    }
    const t = not
      ? `(${match} ? false : ${none === 'false' ? 'true' : `(${none} === null ? null : true)`})`
      : `(${match} ? true : ${none})`;
    g.emit(`const ${r} = ${xv.nullable ? `${xv.code} === null ? null : ` : ''}${t};`);
    return { code: r, type: T.BOOLEAN, nullable: xv.nullable || none !== 'false' };
  };
}

function distinct(not: boolean): CallImpl {
  return (g, args, node) => {
    const [a, b] = args as [Val, Val];
    if (g.isNull(a) && g.isNull(b)) return g.constVal(T.BOOLEAN, not);
    if (g.isNull(a) || g.isNull(b)) {
      const other = g.isNull(a) ? b : a;
      if (!other.nullable) return g.constVal(T.BOOLEAN, !not);
      const r = g.tmp();
      g.emit(`const ${r} = ${other.code} ${not ? '===' : '!=='} null;`);
      return { code: r, type: T.BOOLEAN, nullable: false };
    }
    const p = g.prepCmp(a, b, node, false);
    const eq = g.cmpCode(p.kind, '=', p.a.code, p.b.code);
    const r = g.tmp();
    const an = p.a.nullable ? `${p.a.code} === null` : 'false';
    const bn = p.b.nullable ? `${p.b.code} === null` : 'false';
    if (an === 'false' && bn === 'false') g.emit(`const ${r} = ${not ? '' : '!'}(${eq});`);
    else
      g.emit(`const ${r} = ${an} || ${bn} ? ${not ? '' : '!'}(${an} && ${bn}) : ${not ? '' : '!'}(${eq});`);
    return { code: r, type: T.BOOLEAN, nullable: false };
  };
}

function like(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const ci = !!node.opt?.ci;
  const not = !!node.opt?.not;
  const [s, p, e] = g.params('like', args, [T.VARCHAR, T.VARCHAR, T.VARCHAR], node) as [
    Val,
    Val,
    Val | undefined,
  ];
  const pattern = g.constString(p);
  const escapeArg = e === undefined ? null : g.constString(e);
  if (escapeArg !== null && escapeArg !== undefined && Array.from(escapeArg).length > 1) {
    throw new CompileError('Invalid escape string. Escape string must be empty or one character.', node);
  }
  const esc = escapeArg === undefined || escapeArg === null || escapeArg === '' ? null : escapeArg;
  let code: string;
  if (pattern !== undefined && pattern !== null && escapeArg !== undefined) {
    let re: RegExp;
    try {
      re = R.likeRegExp(pattern, esc, ci);
    } catch (err) {
      throw new CompileError((err as Error).message, node);
    }
    const body = pattern.replace(/^%/, '').replace(/%$/, '');
    const simple = !ci && esc === null && !/[%_]/.test(body);
    if (simple && pattern === body) code = `${s.code} === ${jsLit(pattern)}`;
    else if (simple && pattern === `%${body}%` && pattern.length >= 2)
      code = `${s.code}.includes(${jsLit(body)})`;
    else if (simple && pattern === `${body}%`) code = `${s.code}.startsWith(${jsLit(body)})`;
    else if (simple && pattern === `%${body}`) code = `${s.code}.endsWith(${jsLit(body)})`;
    else code = `${g.k(re)}.test(${s.code})`;
  } else {
    const escCode = e === undefined ? 'null' : `(${e.code} === "" ? null : ${e.code})`;
    code = `likeDyn(${s.code}, ${p.code}, ${escCode}, ${ci}, ${x(g, node)})`;
  }
  const list = e === undefined ? [s, p] : [s, p, e];
  return g.op(list, T.BOOLEAN, not ? `!(${code})` : code);
}

// ---------------------------------------------------------------- functions

function strict1(fn: (c: string) => string, arg: SqlType, result: SqlType, name: string): CallImpl {
  return (g, args, node) => {
    const [a] = needVarchar(g, name, args, node, [arg]) as [Val];
    return g.op([a], result, fn(a.code));
  };
}

function padFn(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>, left: boolean): Val {
  const name = left ? 'lpad' : 'rpad';
  const [str] = g.params(name, [args[0]!], [T.VARCHAR], node) as [Val];
  const [fill] = g.params(name, [args[2]!], [T.VARCHAR], node) as [Val];
  const n = intParam(g, name, args, 1, node, T.INTEGER);
  return g.op([str, n, fill], T.VARCHAR, `pad(${str.code}, ${n.code}, ${fill.code}, ${left}, ${x(g, node)})`);
}

/** The options argument of a regex function: DuckDB needs a constant string, not NULL. */
function regexOptions(g: Gen, o: Val | undefined, node: Node): string {
  if (o === undefined) return '';
  const options = o.isConst ? g.constString(o) : undefined;
  if (options === undefined) throw new CompileError('Regex options field must be a constant', node);
  if (options === null) throw new CompileError('Regex options field must not be NULL', node);
  return options;
}

function regexFn(mode: 'search' | 'full'): CallImpl {
  return (g, args, node) => {
    const [s, p, o] = g.params('regexp_matches', args, [T.VARCHAR, T.VARCHAR, T.VARCHAR], node) as [
      Val,
      Val,
      Val | undefined,
    ];
    const options = regexOptions(g, o, node);
    const pattern = g.constString(p);
    let code: string;
    if (pattern !== undefined && pattern !== null) {
      let re: RegExp;
      try {
        re = R.makeRegExp(pattern, options ?? '', mode);
      } catch (err) {
        throw new CompileError((err as Error).message, node);
      }
      code = `${g.k(re)}.test(${s.code})`;
    } else
      code = `regexDyn(${p.code}, ${jsLit(options ?? '')}, ${jsLit(mode)}, ${x(g, node)}).test(${s.code})`;
    return g.op([s, p], T.BOOLEAN, code);
  };
}

function regexReplace(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [s, p, r, o] = g.params(
    'regexp_replace',
    args,
    [T.VARCHAR, T.VARCHAR, T.VARCHAR, T.VARCHAR],
    node,
  ) as [Val, Val, Val, Val | undefined];
  const options = regexOptions(g, o, node);
  const pattern = g.constString(p);
  const repl = g.constString(r);
  let reCode: string;
  let re: RegExp | undefined;
  if (pattern !== undefined && pattern !== null) {
    try {
      re = R.makeRegExp(pattern, options ?? '', 'replace');
    } catch (err) {
      throw new CompileError((err as Error).message, node);
    }
    reCode = g.k(re);
  } else reCode = `regexDyn(${p.code}, ${jsLit(options ?? '')}, "replace", ${x(g, node)})`;
  if (re && repl !== undefined && repl !== null) {
    // RE2 leaves the string as it is when the replacement names a group the pattern does not have
    if (R.maxGroupRef(repl) > R.groupCount(re)) return g.op([s, p, r], T.VARCHAR, s.code);
    if (re.global) return g.op([s, p, r], T.VARCHAR, `reReplaceAll(${s.code}, ${reCode}, ${jsLit(repl)})`);
    return g.op([s, p, r], T.VARCHAR, `${s.code}.replace(${reCode}, ${jsLit(R.jsReplacement(repl))})`);
  }
  return g.op([s, p, r], T.VARCHAR, `reReplaceDyn(${s.code}, ${reCode}, ${r.code})`);
}

function trimFn(left: boolean, right: boolean, name: string): CallImpl {
  return (g, args, node) => {
    const ps = g.params(name, args, [T.VARCHAR, T.VARCHAR], node);
    const chars = ps[1] ? ps[1].code : '" "';
    return g.op(ps, T.VARCHAR, `trimChars(${ps[0]!.code}, ${chars}, ${left}, ${right})`);
  };
}

/** An integer parameter: narrower integers widen to `target`; an integer constant may narrow if it fits. */
function intParam(g: Gen, name: string, args: Val[], i: number, node: Node, target: SqlType = T.BIGINT): Val {
  const a = args[i]!;
  if (isInt(a.type) || g.isNull(a) || (a.lit && a.type.id === 'VARCHAR')) {
    return g.convert(a, target, node, () => g.mismatch(name, args, node).message);
  }
  throw g.mismatch(name, args, node);
}

/** contains(list, x), DuckDB's list_contains: x is brought to the element type; NULL elements never match. */
function listContains(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [list, needle] = args as [Val, Val];
  const child = (list.type as { child: SqlType }).child;
  const lit = needle.lit === true && needle.type.id === 'VARCHAR';
  let v = needle;
  if (!g.isNull(v) && child.id !== 'ANY' && child.id !== 'NULL') {
    if (lit) v = g.cast(v, child, false, node);
    else if (!nestedComparable(child, v.type)) {
      throw new CompileError(
        "Cannot deduce template type 'T' in function: 'contains(T[], T) -> BOOLEAN'",
        node,
      );
    }
  }
  // elements are in record representation, so is the value looked for (numbers compare by value)
  const out = g.toOut(v);
  const dynLit = lit && (child.id === 'ANY' || child.id === 'NULL');
  return g.op([list, out], T.BOOLEAN, `listHas(${list.code}, ${out.code}, ${dynLit}, ${x(g, node)})`);
}

function concatFn(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const typed = args.filter((a) => !g.isNull(a) && a.type.id !== 'ANY');
  if (typed.some((a) => a.type.id === 'LIST') && typed.some((a) => a.type.id !== 'LIST')) {
    const names = typed.map((a) => typeName(a.type));
    throw new CompileError(
      `Cannot concatenate types ${names.slice(0, -1).join(', ')} and ${names.at(-1)} - an explicit cast is required`,
      node,
    );
  }
  const parts: string[] = [];
  for (const a of args) {
    if (g.isNull(a)) continue;
    if (a.type.id === 'ANY') {
      parts.push(`(anyStr(${a.code}) ?? "")`);
      continue;
    }
    if (a.type.id === 'LIST' && args.every((b) => b.type.id === 'LIST' || g.isNull(b))) {
      const lists = args
        .filter((b) => !g.isNull(b))
        .map((b) => (b.nullable ? `...(${b.code} ?? [])` : `...${b.code}`));
      const t = g.tmp();
      g.emit(`const ${t} = [${lists.join(', ')}];`);
      return { code: t, type: T.LIST_ANY, nullable: false };
    }
    const s = g.cast(a, T.VARCHAR, false, node);
    parts.push(s.nullable ? `(${s.code} ?? "")` : s.code);
  }
  const t = g.tmp();
  g.emit(`const ${t} = ${parts.length ? parts.join(' + ') : '""'};`);
  return { code: t, type: T.VARCHAR, nullable: false };
}

function concatWs(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [sep, ...rest] = args as [Val, ...Val[]];
  if (sep.type.id === 'ANY') return g.dynamic(node, args);
  const sv = g.convert(sep, T.VARCHAR, node, () => g.mismatch('concat_ws', args, node).message);
  if (g.isNull(sv)) return g.nullOf(T.VARCHAR);
  const arr = g.tmp();
  g.emit(`const ${arr} = [];`);
  for (const a of rest) {
    if (g.isNull(a)) continue;
    const s =
      a.type.id === 'ANY' ? { code: `anyStr(${a.code})`, nullable: true } : g.cast(a, T.VARCHAR, false, node);
    if (s.nullable) g.emit(`if (${s.code} !== null) ${arr}.push(${s.code});`);
    else g.emit(`${arr}.push(${s.code});`);
  }
  return g.op([sv], T.VARCHAR, `${arr}.join(${sv.code})`);
}

function mathDbl(
  name: string,
  fn: (c: string) => string,
  check?: (c: string, xs: string) => string,
): CallImpl {
  return (g, args, node) => {
    const [a] = g.params(name, args, [T.DOUBLE], node) as [Val];
    if (check && !g.isNull(a)) g.emit(check(a.code, x(g, node)));
    return g.op([a], T.DOUBLE, fn(a.code));
  };
}

function logCheck(c: string, xs: string): string {
  return `if (${c} !== null && ${c} <= 0) evalError(${c} === 0 ? "cannot take logarithm of zero" : "cannot take logarithm of a negative number", ${xs}, ${c});`;
}

function roundFn(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [a, nArg] = args as [Val, Val | undefined];
  const n = nArg === undefined ? g.constVal(T.INTEGER, 0) : intParam(g, 'round', args, 1, node, T.INTEGER);
  const t = a.type;
  if (g.isNull(a)) return g.nullOf(T.DOUBLE);
  if (isInt(t)) {
    if (n.isConst && typeof n.cv === 'number' && n.cv >= 0) return a;
    if (t.id !== 'BIGINT') {
      // DuckDB wraps around when rounding overflows a 32-bit or narrower integer
      const wrap = INT_BITS[t.id] === 32 ? '| 0' : `<< ${32 - INT_BITS[t.id]} >> ${32 - INT_BITS[t.id]}`;
      return g.op(
        [a, n],
        t,
        `${n.code} >= 0 ? ${a.code} : (decDown(${a.code}, -${n.code}) * POW10[-${n.code}]) ${wrap}`,
      );
    }
    const [lo, hi] = INT_RANGE[t.id];
    return g.op(
      [a, n],
      t,
      `${n.code} >= 0 ? ${a.code} : decDown(${a.code}, -${n.code}) * POW10[-${n.code}]`,
      {
        check: (r) =>
          `if (!(${r} >= ${lo} && ${r} <= ${hi})) evalError("Overflow in ROUND", ${x(g, node)}, ${a.code}); else if (!Number.isSafeInteger(${r})) onDuckDB("a BIGINT beyond ±2^53", ${x(g, node)});`,
      },
    );
  }
  if (t.id === 'DOUBLE') return g.op([a, n], T.DOUBLE, `roundDbl(${a.code}, ${n.code})`);
  if (t.id === 'DECIMAL') {
    if (g.isNull(n)) return g.nullOf(t, n.isConst === true);
    if (!n.isConst || typeof n.cv !== 'number') {
      throw new CompileError('ROUND(DECIMAL, INTEGER) with non-constant precision is not supported', node);
    }
    const k = n.cv;
    if (k >= t.scale) return a;
    if (k >= 0) return g.op([a], decimal(t.width, k), `decDown(${a.code}, ${t.scale - k})`);
    return g.op([a], decimal(t.width, 0), `decDown(${a.code}, ${t.scale - k}) * ${R.POW10[-k]}`, {
      check: (r) => `if (!Number.isSafeInteger(${r})) chkDec(${r}, ${x(g, node)});`,
    });
  }
  throw g.mismatch('round', args, node);
}

function floorCeil(up: boolean): CallImpl {
  return (g, args, node) => {
    const [a] = args as [Val];
    const t = a.type;
    if (g.isNull(a)) return g.nullOf(T.DOUBLE);
    if (isInt(t)) return g.convert(a, T.DOUBLE, node, () => '');
    if (t.id === 'DOUBLE') return g.op([a], T.DOUBLE, `Math.${up ? 'ceil' : 'floor'}(${a.code})`);
    if (t.id === 'DECIMAL') {
      const d = R.POW10[t.scale]!;
      const c = a.code;
      const expr = up
        ? `(${c} - (${c} % ${d})) / ${d} + (${c} % ${d} > 0 ? 1 : 0)`
        : `(${c} - (${c} % ${d})) / ${d} - (${c} % ${d} < 0 ? 1 : 0)`;
      return g.op([a], decimal(t.width, 0), expr);
    }
    throw g.mismatch(up ? 'ceil' : 'floor', args, node);
  };
}

function absFn(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [a] = args as [Val];
  if (g.isNull(a)) return g.nullOf(T.INTEGER);
  const t = a.type;
  if (isInt(t)) {
    const [lo] = INT_RANGE[t.id];
    return g.op(
      [a],
      t,
      `${a.code} < 0 ? intNeg(${a.code}, ${lo}, ${JSON.stringify(INT_PHYS[t.id])}, ${x(g, node)}) : ${a.code}`,
    );
  }
  if (t.id === 'DOUBLE' || t.id === 'DECIMAL') return g.op([a], t, `Math.abs(${a.code})`);
  throw g.mismatch('abs', args, node);
}

function signFn(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [a] = args as [Val];
  if (g.isNull(a)) return g.nullOf(T.TINYINT);
  if (!isNumeric(a.type)) throw g.mismatch('sign', args, node);
  return g.op([a], T.TINYINT, `(${a.code} > 0 ? 1 : ${a.code} < 0 ? -1 : 0)`);
}

function greatestLeast(greatest: boolean): CallImpl {
  return (g, args, node) => {
    const name = greatest ? 'greatest' : 'least';
    const t = g.unify(args, `${name}()`, node);
    if (t.id === 'NULL') return g.nullOf(T.INTEGER);
    if (t.id === 'OTHER') throw g.mismatch(name, args, node);
    const nested = t.id === 'LIST' || t.id === 'STRUCT';
    if (nested && args.some((a, i) => i > 0 && !nestedComparable(args[0]!.type, a.type)))
      throw g.mismatch(name, args, node);
    const vals = args.map((a) => g.convert(a, t, node, () => g.mismatch(name, args, node).message));
    const r = g.tmp();
    g.emit(`let ${r} = null;`);
    const better = (v: string) => {
      // lists and structs order as in comparisons (element by element, field by field)
      if (nested) return `nestedCmp(${v}, ${r}, ${x(g, node)}) ${greatest ? '>' : '<'} 0`;
      if (t.id === 'VARCHAR') return `strCmp(${v}, ${r}) ${greatest ? '>' : '<'} 0`;
      if (t.id === 'DOUBLE') return `dblCmp(${v}, ${r}) ${greatest ? '>' : '<'} 0`;
      return `${v} ${greatest ? '>' : '<'} ${r}`;
    };
    let nullable = true;
    for (const v of vals) {
      if (g.isNull(v)) continue;
      if (!v.nullable) nullable = false;
      g.emit(`if (${v.code} !== null && (${r} === null || ${better(v.code)})) ${r} = ${v.code};`);
    }
    return { code: r, type: t, nullable };
  };
}

/** nullif(a, b) is DuckDB's CASE WHEN a = b THEN NULL ELSE a END: a's type, compared with `=`'s rules. */
function nullifFn(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [a, b] = args as [Val, Val];
  if (g.isNull(a)) return a;
  if (g.isNull(b)) return a;
  const p = g.prepCmp(a, b, node, false);
  const eq = g.cmpCode(p.kind, '=', p.a.code, p.b.code);
  const r = g.tmp();
  const guards = [p.a, p.b]
    .filter((v) => v.nullable)
    .map((v) => `${v.code} === null || `)
    .join('');
  g.emit(`const ${r} = ${guards}!(${eq}) ? ${a.code} : null;`);
  return { code: r, type: a.type, nullable: true };
}

function structPack(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const names = node.names ?? [];
  const fields: [string, SqlType][] = [];
  const parts: string[] = [];
  args.forEach((a, i) => {
    const out = g.toOut(a);
    fields.push([names[i]!, a.type]);
    parts.push(`${JSON.stringify(names[i])}: ${out.code}`);
  });
  const t = g.tmp();
  g.emit(`const ${t} = {${parts.join(', ')}};`);
  return { code: t, type: { id: 'STRUCT', fields }, nullable: false };
}

function listValue(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const child = g.unify(args, 'list', node);
  checkStructFields(
    g,
    args.map((a) => a.type),
    node,
  );
  const items = args.map((a) => g.toOut(g.convert(a, child, node, () => '')).code);
  const t = g.tmp();
  // structs of different keys get every key, as DuckDB unifies them into one STRUCT type
  const nested = (child.id === 'STRUCT' || child.id === 'LIST') && args.length > 1;
  const unknown = (c: SqlType): boolean =>
    (c.id === 'STRUCT' && !c.fields) || (c.id === 'LIST' && (c.child.id === 'ANY' || unknown(c.child)));
  if (nested && (unknown(child) || !args.every((a) => sameType(a.type, child)))) {
    g.emit(`const ${t} = unifyStructs(sameTypedItems([${items.join(', ')}], ${g.x(node)}));`);
  } else g.emit(`const ${t} = [${items.join(', ')}];`);
  return { code: t, type: { id: 'LIST', child }, nullable: false };
}

/** Struct values mixed in one list must have fields of compatible types, by name (DuckDB's binder). */
function checkStructFields(g: Gen, types: SqlType[], node: Node): void {
  const byName = new Map<string, SqlType[]>();
  for (const t of types) {
    if (t.id === 'LIST') {
      checkStructFields(g, [t.child], node);
      continue;
    }
    if (t.id !== 'STRUCT' || !t.fields) continue;
    for (const [k, ft] of t.fields) {
      const key = k.toLowerCase();
      byName.set(key, [...(byName.get(key) ?? []), ft]);
    }
  }
  for (const fieldTypes of byName.values()) {
    if (fieldTypes.length < 2) continue;
    try {
      g.unify(
        fieldTypes.map((type) => ({ code: 'null', type, nullable: true })),
        'list',
        node,
      );
    } catch {
      throw new CompileError(
        "Cannot deduce template type 'T' in function: 'list_value(T, [T...]) -> T[]'",
        node,
      );
    }
    checkStructFields(g, fieldTypes, node);
  }
}

function arrayExtract(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [base, key] = args as [Val, Val];
  if (g.isNull(base) || g.isNull(key)) return g.nullOf(T.ANY);
  if (base.type.id === 'ANY' || key.type.id === 'ANY') {
    return g.op([base, key], T.ANY, `extractAny(${base.code}, ${key.code}, ${x(g, node)})`, {
      nullable: true,
    });
  }
  if (base.type.id === 'STRUCT' && key.type.id === 'VARCHAR') return structExtract(g, args, node);
  if (!isInt(key.type)) throw g.mismatch('array_extract', args, node);
  if (base.type.id === 'VARCHAR') {
    return g.op([base, key], T.VARCHAR, `elem(${base.code}, ${key.code}, ${x(g, node)})`);
  }
  if (base.type.id !== 'LIST') throw g.mismatch('array_extract', args, node);
  const raw = g.op([base, key], T.ANY, `elem(${base.code}, ${key.code}, ${x(g, node)})`, { nullable: true });
  const child = base.type.child;
  if (child.id === 'ANY' || child.id === 'NULL')
    return { ...raw, type: child.id === 'NULL' ? T.NULL : T.ANY };
  return g.fromOut(raw.code, child);
}

function structExtract(g: Gen, args: Val[], node: Extract<Node, { k: 'call' }>): Val {
  const [base, key] = args as [Val, Val];
  if (g.isNull(base)) return g.nullOf(T.ANY);
  const name = g.constString(key);
  if (base.type.id === 'ANY' || base.type.id === 'STRUCT') {
    const keyCode = name === undefined || name === null ? key.code : jsLit(name);
    const raw = g.op([base, key], T.ANY, `field(${base.code}, ${keyCode}, ${x(g, node)})`, {
      nullable: true,
    });
    if (base.type.id === 'STRUCT' && base.type.fields && typeof name === 'string') {
      const f =
        base.type.fields.find(([n]) => n === name) ??
        base.type.fields.find(([n]) => n.toLowerCase() === name.toLowerCase());
      if (!f) throw new CompileError(`Could not find key "${name}" in struct`, node);
      return g.fromOut(raw.code, f[1]);
    }
    return raw;
  }
  throw new CompileError(
    `Cannot extract field ${JSON.stringify(name ?? key.code)} from a value of type ${typeName(base.type)}`,
    node,
  );
}

/** Whether a value's SQL type is known only per record: ANY, or a list or struct from the record. */
function typedPerRecord(t: SqlType): boolean {
  if (t.id === 'ANY') return true;
  if (t.id === 'LIST') return t.child.id === 'ANY' || typedPerRecord(t.child);
  if (t.id === 'STRUCT') return !t.fields || t.fields.some(([, f]) => typedPerRecord(f));
  return false;
}

const CALLS: Record<string, CallImpl> = R.nullProto({
  '+': arith('+'),
  '-': arith('-'),
  '*': arith('*'),
  '/': arith('/'),
  '//': arith('//'),
  '%': arith('%'),
  '**': arith('**'),
  '||': concatOp,
  neg: (g, args, node) => {
    const [a] = args as [Val];
    if (g.isNull(a)) return a;
    const t = a.type;
    const ext = negTypes(g, a, node);
    if (ext) return ext;
    if (isInt(t)) {
      const [lo] = INT_RANGE[t.id];
      if (a.isConst && a.cv !== lo) return g.constVal(t, a.cv === 0 ? 0 : -(a.cv as number));
      return g.op([a], t, `intNeg(${a.code}, ${lo}, ${JSON.stringify(INT_PHYS[t.id])}, ${x(g, node)})`);
    }
    if (t.id === 'DOUBLE' || t.id === 'DECIMAL') return g.op([a], t, `-${a.code}`);
    if (t.id === 'INTERVAL') return g.op([a], t, `intervalNeg(${a.code})`);
    throw g.mismatch('-', args, node);
  },
  pos: (g, args, node) => {
    const [a] = args as [Val];
    if (!isNumeric(a.type) && !g.isNull(a)) throw g.mismatch('+', args, node);
    return a;
  },
  not: (g, args, node) => {
    const a = g.bool(args[0]!, node);
    return g.op([a], T.BOOLEAN, `!${a.code}`);
  },
  '=': (g, args, node) => g.compare('=', args[0]!, args[1]!, node),
  '<>': (g, args, node) => g.compare('<>', args[0]!, args[1]!, node),
  '<': (g, args, node) => g.compare('<', args[0]!, args[1]!, node),
  '<=': (g, args, node) => g.compare('<=', args[0]!, args[1]!, node),
  '>': (g, args, node) => g.compare('>', args[0]!, args[1]!, node),
  '>=': (g, args, node) => g.compare('>=', args[0]!, args[1]!, node),
  distinct: distinct(false),
  not_distinct: distinct(true),
  in: inList(false),
  not_in: inList(true),
  like,
  // a cast value is no longer a constant that adapts to the other operand ('1'::VARCHAR + 1 has no function)
  cast: (g, args, node) => ({ ...g.cast(args[0]!, node.to!, false, node), lit: false }),
  try_cast: (g, args, node) => ({ ...g.cast(args[0]!, node.to!, true, node), lit: false }),
  upper: strict1((c) => `upper(${c})`, T.VARCHAR, T.VARCHAR, 'upper'),
  lower: strict1((c) => `lower(${c})`, T.VARCHAR, T.VARCHAR, 'lower'),
  length: (g, args, node) => {
    const [a] = args as [Val];
    if (a.type.id === 'LIST') return g.op([a], T.BIGINT, `${a.code}.length`);
    const [s] = g.params('length', args, [T.VARCHAR], node) as [Val];
    return g.op([s], T.BIGINT, `strLen(${s.code})`);
  },
  trim: trimFn(true, true, 'trim'),
  ltrim: trimFn(true, false, 'ltrim'),
  rtrim: trimFn(false, true, 'rtrim'),
  concat: concatFn,
  concat_ws: concatWs,
  substr: (g, args, node) => {
    const [s] = g.params('substr', [args[0]!], [T.VARCHAR], node) as [Val];
    const start = intParam(g, 'substr', args, 1, node);
    const len = args.length > 2 ? intParam(g, 'substr', args, 2, node) : g.constVal(T.BIGINT, 4294967295);
    // DuckDB takes an ASCII-only path for a column its statistics show ASCII (here: a field whose value is
    // ASCII), its Unicode path otherwise; they differ for negative offsets reaching before the start
    const unicode = node.args[0]!.k !== 'leaf';
    return g.op(
      [s, start, len],
      T.VARCHAR,
      `substr(${s.code}, ${start.code}, ${len.code}, ${unicode}, ${x(g, node)})`,
    );
  },
  replace: (g, args, node) => {
    const [s, f, r] = g.params('replace', args, [T.VARCHAR, T.VARCHAR, T.VARCHAR], node) as [Val, Val, Val];
    return g.op(
      [s, f, r],
      T.VARCHAR,
      `(${f.code} === "" ? ${s.code} : ${s.code}.split(${f.code}).join(${r.code}))`,
    );
  },
  starts_with: (g, args, node) => {
    const [s, p] = g.params('starts_with', args, [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
    return g.op([s, p], T.BOOLEAN, `${s.code}.startsWith(${p.code})`);
  },
  ends_with: (g, args, node) => {
    const [s, p] = g.params('ends_with', args, [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
    return g.op([s, p], T.BOOLEAN, `${s.code}.endsWith(${p.code})`);
  },
  contains: (g, args, node) => {
    if (args[0]!.type.id === 'LIST') return listContains(g, args, node);
    const [a0, a1] = args as [Val, Val];
    if (a1.isConst && a1.type.id === 'NULL' && ((a0.isConst && a0.type.id === 'NULL') || a0.lit)) {
      // DuckDB cannot choose between contains(VARCHAR, VARCHAR), contains(T[], T) and contains(MAP, K)
      const first = a0.type.id === 'NULL' ? '"NULL"' : 'STRING_LITERAL';
      throw new CompileError(
        `Could not choose a best candidate function for the function call "contains(${first}, "NULL")". In order to select one, please add explicit type casts.`,
        node,
      );
    }
    // a NULL read from the record has no type here: a typed column in DuckDB gives NULL
    if (g.isNull(a0) || g.isNull(a1)) return g.nullOf(T.BOOLEAN, a0.isConst === true || a1.isConst === true);
    const [s, p] = g.params('contains', args, [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
    return g.op([s, p], T.BOOLEAN, `${s.code}.includes(${p.code})`);
  },
  left: (g, args, node) => {
    const [s] = g.params('left', [args[0]!], [T.VARCHAR], node) as [Val];
    const n = intParam(g, 'left', args, 1, node);
    return g.op([s, n], T.VARCHAR, `leftStr(${s.code}, ${n.code}, ${x(g, node)})`);
  },
  right: (g, args, node) => {
    const [s] = g.params('right', [args[0]!], [T.VARCHAR], node) as [Val];
    const n = intParam(g, 'right', args, 1, node);
    return g.op([s, n], T.VARCHAR, `rightStr(${s.code}, ${n.code})`);
  },
  lpad: (g, args, node) => padFn(g, args, node, true),
  rpad: (g, args, node) => padFn(g, args, node, false),
  split_part: (g, args, node) => {
    const [s, sep] = g.params('split_part', [args[0]!, args[1]!], [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
    const i = intParam(g, 'split_part', args, 2, node);
    return g.op([s, sep, i], T.VARCHAR, `splitPart(${s.code}, ${sep.code}, ${i.code})`);
  },
  regexp_matches: regexFn('search'),
  regexp_full_match: regexFn('full'),
  regexp_replace: regexReplace,
  strpos: (g, args, node) => {
    const [s, n] = g.params('strpos', args, [T.VARCHAR, T.VARCHAR], node) as [Val, Val];
    return g.op([s, n], T.BIGINT, `strpos(${s.code}, ${n.code})`);
  },
  abs: absFn,
  round: roundFn,
  floor: floorCeil(false),
  ceil: floorCeil(true),
  greatest: greatestLeast(true),
  least: greatestLeast(false),
  sqrt: mathDbl(
    'sqrt',
    (c) => `Math.sqrt(${c})`,
    (c, xs) =>
      `if (${c} !== null && ${c} < 0) evalError("cannot take square root of a negative number", ${xs}, ${c});`,
  ),
  power: (g, args, node) => {
    const [a, b] = g.params('power', args, [T.DOUBLE, T.DOUBLE], node) as [Val, Val];
    return g.op([a, b], T.DOUBLE, `Math.pow(${a.code}, ${b.code})`);
  },
  ln: mathDbl('ln', (c) => `Math.log(${c})`, logCheck),
  log10: mathDbl('log10', (c) => `Math.log10(${c})`, logCheck),
  log: (g, args, node) => {
    if (args.length === 1) return mathDbl('log', (c) => `Math.log10(${c})`, logCheck)(g, args, node);
    const [b, v] = g.params('log', args, [T.DOUBLE, T.DOUBLE], node) as [Val, Val];
    return g.op([b, v], T.DOUBLE, `logBase(${b.code}, ${v.code}, ${x(g, node)})`);
  },
  exp: mathDbl('exp', (c) => `Math.exp(${c})`),
  sign: signFn,
  nullif: nullifFn,
  ...TEMPORAL_CALLS,
  struct_pack: structPack,
  list_value: listValue,
  array_extract: arrayExtract,
  struct_extract: structExtract,
  ...LIST_CALLS,
  typeof: (g, args) => {
    const [a] = args as [Val];
    if (a.type.id === 'ANY')
      return g.op([], T.VARCHAR, `(${a.code} === null ? '"NULL"' : typeOfRecordValue(${a.code}))`);
    // a list or struct from the record: its element and field types are its values'
    const fromRecord = (t: SqlType): boolean => t.id !== 'ANY' && typedPerRecord(t);
    if (fromRecord(a.type)) {
      // a struct literal names its fields' types; only those read from the record are looked at per value
      const text = (t: SqlType, code: string): string => {
        if (!fromRecord(t)) return JSON.stringify(typeName(t));
        if (t.id !== 'STRUCT' || !t.fields) return `typeOfRecordValue(${code})`;
        const parts = t.fields.map(
          ([k, f]) =>
            `${JSON.stringify(`${/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? k : `"${k.replace(/"/g, '""')}"`} `)} + ${text(f, `${code}[${JSON.stringify(k)}]`)}`,
        );
        return `"STRUCT(" + ${parts.join(' + ", " + ')} + ")"`;
      };
      return g.op([a], T.VARCHAR, text(a.type, a.code));
    }
    const name = a.type.id === 'NULL' ? '"NULL"' : a.lit && isInt(a.type) ? 'INTEGER' : typeName(a.type);
    return g.constVal(T.VARCHAR, name);
  },
  ...TYPE_CALLS,
  ...LATERAL_CALLS,
});
