/**
 * Code generation for FLOAT, HUGEINT/UHUGEINT (JS bigints), the unsigned integers, BLOB and MAP:
 * casts, arithmetic and comparisons, called from the generic generator in codegen.ts. Semantics
 * measured on DuckDB 1.5 (see the differential tests).
 */
import type { Gen, Val } from './codegen.ts';
import type { Node } from './ir.ts';
import { POW10 } from './runtime.ts';
import {
  INT_RANGE,
  isHuge,
  isInt,
  isUnsigned,
  maxNumeric,
  type SqlType,
  sameType,
  T,
  typeName,
} from './types.ts';

export interface CastPlan {
  tpl: (c: string) => string;
  fails: boolean;
}

const HUGE_RANGE: Record<string, [string, string]> = {
  HUGEINT: ['I128_MIN', 'I128_MAX'],
  UHUGEINT: ['0n', 'U128_MAX'],
};

/** The types this file adds: an operation on them not handled here falls back to DuckDB. */
export function isExtType(t: SqlType): boolean {
  return (
    t.id === 'FLOAT' ||
    isHuge(t) ||
    isUnsigned(t) ||
    t.id === 'BLOB' ||
    t.id === 'MAP' ||
    (t.id === 'LIST' && isExtType(t.child))
  );
}

const same = (c: string) => c;

/**
 * The cast `from` → `to` when either is a type of this file: a plan, 'unimplemented' (DuckDB has no
 * such cast), 'beyond' (DuckDB has one, compiled code does not), or undefined (not ours).
 */
export function castPlanTypes(
  from: SqlType,
  to: SqlType,
  x: string,
): CastPlan | 'unimplemented' | 'beyond' | undefined {
  if (to.id === 'FLOAT') {
    if (isInt(from)) return { tpl: (c) => `Math.fround(${c})`, fails: false };
    if (isHuge(from)) return { tpl: (c) => `Math.fround(Number(${c}))`, fails: false };
    switch (from.id) {
      case 'DOUBLE':
        return { tpl: (c) => `dblToFlt(${c})`, fails: true };
      case 'DECIMAL':
        return { tpl: (c) => `Math.fround(${c} / ${POW10[from.scale]})`, fails: false };
      case 'VARCHAR':
        return { tpl: (c) => `strToFlt(${c})`, fails: true };
      case 'BOOLEAN':
        return { tpl: (c) => `(${c} ? 1 : 0)`, fails: false };
      default:
        return from.id === 'BLOB' || from.id === 'DATE' || from.id === 'TIMESTAMP'
          ? 'unimplemented'
          : 'beyond';
    }
  }
  if (from.id === 'FLOAT') {
    if (to.id === 'DOUBLE') return { tpl: same, fails: false };
    if (to.id === 'VARCHAR') return { tpl: (c) => `fltStr(${c})`, fails: false };
    if (to.id === 'BOOLEAN') return { tpl: (c) => `(${c} !== 0)`, fails: false };
    if (isInt(to)) {
      const [lo, hi] = INT_RANGE[to.id];
      return { tpl: (c) => `dblToInt(${c}, ${lo}, ${hi})`, fails: true };
    }
    if (isHuge(to)) {
      const [lo, hi] = HUGE_RANGE[to.id]!;
      return { tpl: (c) => `dblToHuge(${c}, ${lo}, ${hi})`, fails: true };
    }
    if (to.id === 'DECIMAL')
      return { tpl: (c) => `fltToDec(${c}, ${to.width}, ${to.scale}, ${x})`, fails: true };
    return to.id === 'BLOB' || to.id === 'DATE' || to.id === 'TIMESTAMP' ? 'unimplemented' : 'beyond';
  }
  if (isHuge(to)) {
    const [lo, hi] = HUGE_RANGE[to.id]!;
    if (isInt(from)) {
      if (to.id === 'UHUGEINT' && !isUnsigned(from))
        return { tpl: (c) => `(${c} >= 0 ? BigInt(${c}) : undefined)`, fails: true };
      return { tpl: (c) => `BigInt(${c})`, fails: false };
    }
    if (isHuge(from))
      return { tpl: (c) => `(${c} >= ${lo} && ${c} <= ${hi} ? ${c} : undefined)`, fails: true };
    switch (from.id) {
      case 'DOUBLE':
        return { tpl: (c) => `dblToHuge(${c}, ${lo}, ${hi})`, fails: true };
      case 'DECIMAL':
        return { tpl: (c) => `decToHuge(${c}, ${from.scale}, ${lo}, ${hi})`, fails: true };
      case 'VARCHAR':
        return { tpl: (c) => `strToHuge(${c}, ${lo}, ${hi})`, fails: true };
      case 'BOOLEAN':
        return { tpl: (c) => `(${c} ? 1n : 0n)`, fails: false };
      default:
        return from.id === 'BLOB' || from.id === 'DATE' || from.id === 'TIMESTAMP'
          ? 'unimplemented'
          : 'beyond';
    }
  }
  if (isHuge(from)) {
    if (isInt(to)) {
      const [lo, hi] = INT_RANGE[to.id];
      return { tpl: (c) => `hugeToInt(${c}, ${lo}, ${hi})`, fails: true };
    }
    switch (to.id) {
      case 'DOUBLE':
        return { tpl: (c) => `Number(${c})`, fails: false };
      case 'VARCHAR':
        return { tpl: (c) => `String(${c})`, fails: false };
      case 'DECIMAL':
        return { tpl: (c) => `hugeToDec(${c}, ${to.width}, ${to.scale})`, fails: true };
      case 'BOOLEAN':
        return { tpl: (c) => `(${c} !== 0n)`, fails: false };
      default:
        return to.id === 'BLOB' || to.id === 'DATE' || to.id === 'TIMESTAMP' ? 'unimplemented' : 'beyond';
    }
  }
  if (isInt(from) && isInt(to) && isUnsigned(from) !== isUnsigned(to)) {
    const [lo, hi] = INT_RANGE[to.id];
    return { tpl: (c) => `(${c} >= ${lo} && ${c} <= ${hi} ? ${c} : undefined)`, fails: true };
  }
  if (to.id === 'BLOB') {
    if (from.id === 'VARCHAR') return { tpl: (c) => `strToBlob(${c})`, fails: true };
    return 'unimplemented';
  }
  if (from.id === 'BLOB') {
    if (to.id === 'VARCHAR') return { tpl: (c) => `blobStr(${c})`, fails: false };
    return 'unimplemented';
  }
  if (from.id === 'MAP' || to.id === 'MAP') return 'beyond';
  return undefined;
}

/** Implicit casts DuckDB does silently between the numeric types of this file (function arguments, operands). */
export function implicitNumeric(from: SqlType, to: SqlType): boolean {
  const num = (t: SqlType) => isInt(t) || isHuge(t) || t.id === 'DECIMAL' || t.id === 'FLOAT';
  if (to.id === 'DOUBLE') return num(from);
  if (to.id === 'FLOAT') return num(from);
  if (isHuge(to)) return isInt(from) || isHuge(from);
  if (to.id === 'DECIMAL') return isHuge(from);
  return false;
}

/**
 * Arithmetic when the operands meet as FLOAT or as a 128-bit integer (returns undefined otherwise):
 * FLOAT rounds every result to 32 bits and gives NULL for a zero divisor; 128-bit integers compute
 * exactly in bigints with DuckDB's overflow errors.
 */
export function arithTypes(
  g: Gen,
  op: string,
  a: Val,
  b: Val,
  typeA: SqlType,
  typeB: SqlType,
  node: Node,
): Val | undefined {
  if (op === '**') return undefined;
  const why = () => g.mismatch(op, [a, b], node).message;
  let ta = typeA;
  let tb = typeB;
  // an integer constant takes a 128-bit operand's type when it fits, as DuckDB's integer literals do
  if (isHuge(tb) && a.lit && isInt(ta) && (tb.id === 'HUGEINT' || (a.cv as number) >= 0)) ta = tb;
  if (isHuge(ta) && b.lit && isInt(tb) && (ta.id === 'HUGEINT' || (b.cv as number) >= 0)) tb = ta;
  const floaty = (ta.id === 'FLOAT' || tb.id === 'FLOAT') && ta.id !== 'DOUBLE' && tb.id !== 'DOUBLE';
  if (op === '/' && !floaty) return undefined;
  const t = floaty ? T.FLOAT : maxNumeric(ta, tb);
  if (t.id === 'FLOAT') {
    const ca = g.convert(a, T.FLOAT, node, why);
    const cb = g.convert(b, T.FLOAT, node, why);
    if (op === '+' || op === '-' || op === '*')
      return g.op([ca, cb], T.FLOAT, `flt(${ca.code} ${op} ${cb.code})`);
    // as DOUBLE: `/` by zero is ±inf, `%` by zero nan, `//` by zero NULL
    if (op === '/' || op === '%') return g.op([ca, cb], T.FLOAT, `flt(${ca.code} ${op} ${cb.code})`);
    return g.op([ca, cb], T.FLOAT, `(${cb.code} === 0 ? null : flt(${ca.code} / ${cb.code}))`, {
      nullable: true,
    });
  }
  if (!isHuge(t)) return undefined;
  const ca = g.convert(a, t, node, why);
  const cb = g.convert(b, t, node, why);
  const [lo, hi] = HUGE_RANGE[t.id]!;
  const phys = t.id === 'HUGEINT' ? '"INT128"' : '"UINT128"';
  const x = g.x(node);
  if (op === '//')
    return g.op([ca, cb], t, `hugeDiv(${ca.code}, ${cb.code}, ${lo}, ${hi}, ${phys}, ${x})`, {
      nullable: true,
    });
  if (op === '%') return g.op([ca, cb], t, `hugeMod(${ca.code}, ${cb.code})`, { nullable: true });
  return g.op(
    [ca, cb],
    t,
    `hugeArith(${JSON.stringify(op)}, ${ca.code}, ${cb.code}, ${lo}, ${hi}, ${phys}, ${x})`,
  );
}

/** Unary minus on the types of this file, or undefined. */
export function negTypes(g: Gen, a: Val, node: Node): Val | undefined {
  const t = a.type;
  if (t.id === 'FLOAT') return g.op([a], t, `-${a.code}`);
  if (t.id === 'HUGEINT') return g.op([a], t, `hugeNeg(${a.code}, ${g.x(node)})`);
  if (t.id === 'UHUGEINT') return g.op([a], t, `uHugeNeg(${a.code})`);
  if (isInt(t) && isUnsigned(t)) {
    const bits = { UTINYINT: 8, USMALLINT: 16, UINTEGER: 32, UBIGINT: 64 }[t.id as string]!;
    return g.op([a], t, `uNeg(${a.code}, ${bits}, ${g.x(node)})`);
  }
  return undefined;
}

/** Comparison of BLOBs (byte order) and MAPs (equality of the entry lists), or undefined. */
export function prepCmpTypes(
  g: Gen,
  a: Val,
  b: Val,
  node: Node,
  ordered: boolean,
): { a: Val; b: Val; kind: 'blob' | 'deep' } | undefined {
  const ta = a.type;
  const tb = b.type;
  if (ta.id === 'BLOB' || tb.id === 'BLOB') {
    if (ta.id === 'BLOB' && tb.id === 'BLOB') return { a, b, kind: 'blob' };
    if (ta.id === 'BLOB' && tb.id === 'VARCHAR' && b.lit)
      return { a, b: g.cast(b, T.BLOB, false, node), kind: 'blob' };
    if (tb.id === 'BLOB' && ta.id === 'VARCHAR' && a.lit)
      return { a: g.cast(a, T.BLOB, false, node), b, kind: 'blob' };
    if (ta.id === 'VARCHAR' || tb.id === 'VARCHAR')
      throw g.fail(`comparing BLOB with VARCHAR`, node, 'beyond');
    throw g.fail(
      `Cannot compare values of type ${typeName(ta)} and type ${typeName(tb)} - an explicit cast is required`,
      node,
    );
  }
  if (ta.id === 'MAP' || tb.id === 'MAP') {
    if (ta.id === 'MAP' && tb.id === 'MAP' && !ordered && alike(ta.key, tb.key) && alike(ta.value, tb.value))
      return { a, b, kind: 'deep' };
    throw g.fail(`comparing ${typeName(ta)} with ${typeName(tb)}`, node, 'beyond');
  }
  return undefined;
}

/** Types whose values compare equal in record representation exactly when DuckDB's casts make them equal. */
function alike(a: SqlType, b: SqlType): boolean {
  const num = (t: SqlType) => isInt(t) || t.id === 'DOUBLE';
  return sameType(a, b) || a.id === 'NULL' || b.id === 'NULL' || (num(a) && num(b));
}

/** `a || b` with a BLOB operand: BLOB || BLOB is a BLOB; with a string, the BLOB is cast to VARCHAR. */
export function concatTypes(g: Gen, a: Val, b: Val, _node: Node): Val | undefined {
  if (a.type.id !== 'BLOB' && b.type.id !== 'BLOB') return undefined;
  if (a.type.id === 'BLOB' && b.type.id === 'BLOB')
    return g.op([a, b], T.BLOB, `blobConcat(${a.code}, ${b.code})`);
  return undefined;
}
