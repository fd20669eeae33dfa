/**
 * A compiled query: a dispatcher that reads the record paths the SQL uses, classifies their
 * values (BIGINT, DOUBLE, VARCHAR, ...), and calls the function generated for that combination
 * of types, generating it on first use. Records of one shape hit a one-entry cache.
 */
import { SluiceError } from '../sdk/errors.ts';
import { collectLeaves } from './bind.ts';
import { CompileError, type DynSite, folding, Gen, type Input, type Val } from './codegen.ts';
import { ComputeOnDuckDB } from './fallback.ts';
import { type BoundQuery, children, type Node, type PathSeg } from './ir.ts';
import { invalid } from './parse.ts';
import * as R from './runtime.ts';
import * as RT from './runtime-types.ts';
import { CLASS_BIGINT, CLASS_TYPES } from './types.ts';

type Fn = (...args: unknown[]) => unknown;

/** Leaves beyond this many are keyed by a string instead of a number. */
const NUMERIC_KEY_LEAVES = 13;
/** Specialisations kept per query; beyond it the cache starts over (pathological type mixes). */
const MAX_SPECIALISATIONS = 4096;

const HELPERS: Record<string, unknown> = { ...R, ...RT, dyn };
const HELPER_LIST = Object.keys(HELPERS).join(', ');

function buildFunction(params: string[], g: Gen): Fn {
  const consts = g.consts.map((_, i) => `K${i} = K[${i}]`);
  const src = [
    '"use strict";',
    `const {${HELPER_LIST}} = H;`,
    consts.length ? `const ${consts.join(', ')};` : '',
    `return function compiled(${params.join(', ')}) {`,
    ...g.lines,
    '};',
  ].join('\n');
  return new Function('H', 'K', src)(HELPERS, g.consts) as Fn;
}

function evalFailure(err: CompileError): Fn {
  if (err.kind === 'beyond') {
    return (): never => {
      throw new ComputeOnDuckDB(`${err.message} is computed by DuckDB`, err.node.text);
    };
  }
  const e = (): never => {
    throw new SluiceError('SLUICE_EXPR_EVAL', `${err.message} (in ${err.node.text})`, {
      details: { expression: err.node.text, value: null },
    });
  };
  return e;
}

folding.fold = (node: Node) => {
  const g = new Gen(new Map(), []);
  g.folding = true;
  let v: Val;
  try {
    v = g.gen(node);
  } catch (err) {
    if (err instanceof CompileError) return undefined; // generated normally, where it reports or defers the error
    throw err;
  }
  if (v.isConst) return { type: v.type, value: v.cv };
  g.emit(`return ${v.code};`);
  try {
    return { type: v.type, value: buildFunction([], g)() };
  } catch (err) {
    // a constant DuckDB holds exactly but a JavaScript number cannot: the query runs on DuckDB
    if (err instanceof SluiceError && err.message.includes('beyond ±2^53'))
      throw new CompileError(err.message.replace(/ \(in .*\)$/s, ''), node, 'beyond', 'inexact');
    if (err instanceof SluiceError && err.code === 'SLUICE_EXPR_EVAL') return undefined;
    throw err;
  }
};

/** Runs a run-time site: compiles the operator for the classes of its ANY arguments. */
export function dyn(site: DynSite, ...args: unknown[]): unknown {
  let key = '';
  for (let i = 0; i < args.length; i++) key += site.types[i]!.id === 'ANY' ? R.cls(args[i]) : '-';
  let fn = site.cache.get(key);
  if (!fn) {
    fn = compileSite(site, args);
    site.cache.set(key, fn);
  }
  return fn(...args);
}

function compileSite(site: DynSite, args: unknown[]): Fn {
  const node = site.node as Extract<Node, { k: 'call' }>;
  const params: Input[] = site.types.map((t, i) =>
    t.id === 'ANY'
      ? {
          name: `P${i}`,
          type: CLASS_TYPES[R.cls(args[i])]!,
          fromRecord: true,
          bigint: R.cls(args[i]) === CLASS_BIGINT,
        }
      : { name: `P${i}`, type: t, fromRecord: false },
  );
  const g = new Gen(new Map(), params);
  try {
    const call: Node = {
      ...node,
      args: node.args.map((a, i) => ({ k: 'param', i, text: a.text, loc: a.loc }) as Node),
    };
    const v = g.toOut(g.gen(call));
    g.emit(`return ${v.code};`);
    return buildFunction(
      params.map((p) => p.name),
      g,
    );
  } catch (err) {
    if (err instanceof CompileError) return evalFailure(err);
    throw err;
  }
}

export interface ProgramSpec {
  query: BoundQuery;
  mode: 'select' | 'condition';
  userText: string;
}

function leafCode(path: PathSeg[], text: string): string {
  const [first, ...rest] = path as [string, ...PathSeg[]];
  const name = JSON.stringify(first);
  // DuckDB finds a column whatever the case it is written in: an exact match first, as JSON keys may differ only in case
  let code = R.needsOwnCheck(first)
    ? `(Object.hasOwn(row, ${name}) ? row[${name}] : fieldCi(row, ${name}))`
    : `(row[${name}] ?? fieldCi(row, ${name}))`;
  const x = JSON.stringify(text);
  for (const seg of rest) {
    code =
      typeof seg === 'number'
        ? `elem(${code}, ${seg}, ${x})`
        : `field(${code}, ${JSON.stringify(seg)}, ${x})`;
  }
  return code;
}

export class Program {
  readonly #spec: ProgramSpec;
  readonly #leaves: PathSeg[][];
  readonly #leafText: string[];

  constructor(spec: ProgramSpec) {
    this.#spec = spec;
    const cols = spec.query.columns.flatMap((c) =>
      c.kind === 'expr' ? [c.node] : c.replace.map((r) => r.node),
    );
    this.#leaves = collectLeaves([spec.query.where, ...cols]);
    const texts = new Map<string, string>();
    const note = (n: Node | null): void => {
      if (!n) return;
      if (n.k === 'leaf') texts.set(JSON.stringify(n.path), n.text);
      for (const c of children(n)) note(c);
    };
    note(spec.query.where);
    cols.forEach(note);
    this.#leafText = this.#leaves.map((p) => texts.get(JSON.stringify(p)) ?? p.join('.'));
  }

  /**
   * Generates the function for one combination of value classes. With `strict`, a type error
   * is thrown as SLUICE_EXPR_INVALID (used with all-NULL inputs to check constants at compile time).
   */
  specialize(classes: number[], strict = false): Fn {
    const inputs = new Map<string, Input>();
    this.#leaves.forEach((p, i) => {
      const c = classes[i] ?? 8;
      inputs.set(JSON.stringify(p), {
        name: `L${i}`,
        type: CLASS_TYPES[c]!,
        fromRecord: true,
        bigint: c === CLASS_BIGINT,
      });
    });
    const g = new Gen(inputs, []);
    try {
      for (const name of this.#spec.query.lateral ?? []) {
        const i = this.#leaves.findIndex((p) => p.length === 1 && p[0] === name);
        // a field that holds a value is the column DuckDB reads; an absent one is DuckDB's to resolve
        if (i >= 0 && !classes[i])
          g.emit(
            `if (L${i} == null && !hasColumn(row, ${JSON.stringify(name)})) onDuckDB(${JSON.stringify(`the record has no field ${name}, which DuckDB then reads as a select-list alias not yet defined`)}, ${JSON.stringify(name)});`,
          );
      }
      this.#body(g);
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      if (strict) {
        // a construct the compiler does not model is not wrong SQL: DuckDB runs the query
        const refusal = invalid(err.message, err.node.loc, this.#spec.userText);
        if (err.kind === 'beyond' && refusal.details) refusal.details.beyondSubset = true;
        throw refusal;
      }
      return evalFailure(err);
    }
    return buildFunction(['row', ...this.#leaves.map((_, i) => `L${i}`)], g);
  }

  #body(g: Gen): void {
    const { query, mode } = this.#spec;
    if (query.where) {
      const w = g.cond(query.where);
      if (mode === 'condition') {
        g.emit(`return ${w.code} === true;`);
        return;
      }
      g.emit(`if (${w.code} !== true) return null;`);
    } else if (mode === 'condition') {
      g.emit('return true;');
      return;
    }
    const cols = query.columns;
    if (
      cols.length === 1 &&
      cols[0]!.kind === 'star' &&
      !cols[0]!.exclude.length &&
      !cols[0]!.replace.length
    ) {
      g.emit('return row;');
      return;
    }
    // values first, in select-list order
    const vals = cols.map((c) =>
      c.kind === 'expr'
        ? [g.toOut(g.gen(c.node), c.node)]
        : c.replace.map((r) => g.toOut(g.gen(r.node), r.node)),
    );
    if (!cols.some((c) => c.kind === 'star')) {
      const parts = cols.map((c, i) => {
        const name = (c as { name: string }).name;
        const key = name === '__proto__' ? `["__proto__"]` : JSON.stringify(name);
        return `${key}: ${vals[i]![0]!.code}`;
      });
      g.emit(`return {${parts.join(', ')}};`);
      return;
    }
    const explicitBefore = new Set<string>();
    let first = true;
    g.emit('const o = {};');
    cols.forEach((c, i) => {
      if (c.kind === 'expr') {
        const key = JSON.stringify(c.name);
        g.emit(
          c.name === '__proto__'
            ? `setOwn(o, ${key}, ${vals[i]![0]!.code});`
            : `o[${key}] = ${vals[i]![0]!.code};`,
        );
        explicitBefore.add(c.name);
        first = false;
        return;
      }
      const skip = new Set([...c.exclude, ...explicitBefore]);
      if (first && !skip.size && !c.replace.length && i === 0) {
        g.lines.pop();
        g.emit('const o = {...row};');
      } else {
        const skipRef = skip.size ? g.k(skip) : 'null';
        let replRef = 'null';
        if (c.replace.length) {
          replRef = g.tmp();
          g.emit(
            `const ${replRef} = new Map([${c.replace.map((r, j) => `[${JSON.stringify(r.name)}, ${(vals[i]![j] as Val).code}]`).join(', ')}]);`,
          );
        }
        g.emit(`copyStar(o, row, ${skipRef}, ${replRef});`);
      }
      first = false;
    });
    // an explicit column named like a record field after * replaces that field in place
    g.emit('return o;');
  }

  /** Builds the per-record function. */
  build(): Fn {
    const n = this.#leaves.length;
    // check constants and types that do not depend on the record (bad casts of literals, unknown date parts)
    this.specialize(new Array(n).fill(0), true);
    const lines: string[] = [];
    for (const [i, p] of this.#leaves.entries())
      lines.push(`const L${i} = ${leafCode(p, this.#leafText[i]!)};`);
    const args = ['row', ...this.#leaves.map((_, i) => `L${i}`)].join(', ');
    if (n === 0) lines.push('const k = 0;');
    else if (n <= NUMERIC_KEY_LEAVES) {
      lines.push(
        `const k = ${this.#leaves.map((_, i) => (i === 0 ? 'cls(L0)' : `cls(L${i}) * ${16 ** i}`)).join(' + ')};`,
      );
    } else lines.push(`const k = ${this.#leaves.map((_, i) => `cls(L${i})`).join(" + ',' + ")};`);
    lines.push(`if (k === S.lastK) return S.lastF(${args});`);
    lines.push(`if (k === S.prevK) return S.prevF(${args});`);
    lines.push(`return S.miss(k, ${args});`);
    const state = {
      lastK: -1 as unknown,
      lastF: null as unknown as Fn,
      prevK: -1 as unknown,
      prevF: null as unknown as Fn,
      cache: new Map<unknown, Fn>(),
      miss: (k: unknown, ...rest: unknown[]): unknown => {
        let f = state.cache.get(k);
        if (!f) {
          const classes =
            typeof k === 'number'
              ? Array.from({ length: n }, (_, i) => Math.floor(k / 16 ** i) % 16)
              : String(k).split(',').map(Number);
          f = this.specialize(classes);
          if (state.cache.size >= MAX_SPECIALISATIONS) state.cache.clear();
          state.cache.set(k, f);
        }
        state.prevK = state.lastK;
        state.prevF = state.lastF;
        state.lastK = k;
        state.lastF = f;
        return f(...rest);
      },
    };
    const src = [
      '"use strict";',
      `const {${HELPER_LIST}} = H;`,
      'return function sql(row) {',
      ...lines,
      '};',
    ].join('\n');
    return new Function('H', 'S', src)(HELPERS, state) as Fn;
  }
}
