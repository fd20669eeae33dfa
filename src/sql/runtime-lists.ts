/**
 * Run-time helpers of the list functions (calls/lists.ts): the element type of a record's list,
 * sorting, slicing, ranges and splitting. Values are in record representation.
 */
import { cls, dblCmp, evalError, strCmp, typeOfValue } from './runtime.ts';

/**
 * Lists a compiled list function made of DOUBLEs, whose type is not visible in the values when
 * they are all integral: listCls reads it in the next list function. (A WeakSet, so the record's
 * value carries nothing extra.)
 */
const DOUBLE_LISTS = new WeakSet<unknown[]>();

export function markDoubleList(a: unknown[]): void {
  DOUBLE_LISTS.add(a);
}

/**
 * The element class of a list from a record, as DuckDB types it (numbers widen to DOUBLE): 0 when
 * every element is NULL (or none), 1 BIGINT, 2 DOUBLE, 3 VARCHAR, 4 BOOLEAN, 5 TIMESTAMP, -1 for
 * anything else (nested values, mixed types, JS bigints), which the compiled code treats per element.
 */
export function listCls(a: unknown[]): number {
  if (DOUBLE_LISTS.has(a)) return 2;
  let k = 0;
  for (let i = 0; i < a.length; i++) {
    const c = cls(a[i]);
    if (c === 0 || c === k) continue;
    if (k === 0 && c <= 5) k = c;
    else if ((k === 1 && c === 2) || (k === 2 && c === 1)) k = 2;
    else return -1;
  }
  return k;
}

/** A value used as a list: the array, NULL, or DuckDB's bind error for another type. */
export function asList(v: unknown, fn: string, x: string): unknown[] | null {
  if (v === null || v === undefined) return null;
  if (Array.isArray(v)) return v;
  return evalError(`No function matches the given name and argument types '${fn}(${typeOfValue(v)})'`, x, v);
}

export function emptyReduce(x: string): never {
  return evalError('Cannot perform list_reduce on an empty input list', x, []);
}

/** Orders two non-NULL elements of one kind: 'num' (numbers, Dates' times), 'dbl', 'str', 'bool'. */
function cmpKind(kind: string): (a: unknown, b: unknown) => number {
  switch (kind) {
    case 'dbl':
      return (a, b) => dblCmp(a as number, b as number);
    case 'str':
      return (a, b) => strCmp(a as string, b as string);
    case 'time':
      return (a, b) => (a as Date).getTime() - (b as Date).getTime();
    case 'bool':
      return (a, b) => Number(a) - Number(b);
    case 'any':
      return cmpNested;
    default:
      return (a, b) => (a as number) - (b as number);
  }
}

const COMPARATORS = new Map<string, (a: unknown, b: unknown) => number>();

/** list_sort: a sorted copy, NULLs first or last. */
export function sortList(a: unknown[], kind: string, desc: boolean, nullsFirst: boolean): unknown[] {
  let cmp = COMPARATORS.get(kind);
  if (!cmp) {
    cmp = cmpKind(kind);
    COMPARATORS.set(kind, cmp);
  }
  const values: unknown[] = [];
  let nulls = 0;
  for (const v of a) {
    if (v === null || v === undefined) nulls++;
    else values.push(v);
  }
  const c = cmp;
  values.sort(desc ? (x, y) => c(y, x) : c);
  const pad = new Array(nulls).fill(null);
  return nullsFirst ? [...pad, ...values] : [...values, ...pad];
}

/** list_slice(l, begin, end) and l[begin:end]: 1-based, inclusive, negative from the end. */
export function sliceBounds(n: number, begin: number, end: number): [number, number] {
  let b = begin < 0 ? n + begin + 1 : begin;
  let e = end < 0 ? n + end + 1 : end;
  if (b < 1) b = 1;
  if (e > n) e = n;
  return [b - 1, Math.max(e, b - 1)];
}

export function sliceList(a: unknown[], begin: number, end: number): unknown[] {
  const [b, e] = sliceBounds(a.length, begin, end);
  return a.slice(b, e);
}

export function sliceStr(s: string, begin: number, end: number): string {
  const cps = Array.from(s);
  const [b, e] = sliceBounds(cps.length, begin, end);
  return cps.slice(b, e).join('');
}

/** Elements a range may hold before it is refused (DuckDB would build it; a record this size is a mistake). */
const MAX_RANGE = 1 << 24;

/** range(start, stop, step) (stop excluded) and generate_series (stop included) over integers. */
export function intRange(start: number, stop: number, step: number, inclusive: boolean, x: string): number[] {
  const out: number[] = [];
  if (step === 0) return out;
  const n = Math.floor((stop - start) / step) + 1;
  if (n > MAX_RANGE) return evalError(`a range of more than ${MAX_RANGE} elements`, x, n);
  for (
    let v = start;
    step > 0 ? v < stop || (inclusive && v === stop) : v > stop || (inclusive && v === stop);
    v += step
  ) {
    out.push(v);
  }
  return out;
}

/** string_split(s, sep): an empty separator splits into characters. */
export function splitStr(s: string, sep: string): string[] {
  if (sep === '') return s === '' ? [''] : Array.from(s);
  return s.split(sep);
}

/** regexp_extract: group `g` of the first match, '' without a match or when the group did not take part. */
export function reExtract(s: string, re: RegExp, g: number): string {
  re.lastIndex = 0;
  const m = re.exec(s);
  if (!m) return '';
  return m[g] ?? '';
}

/** regexp_extract_all: group `g` of every non-overlapping match (`re` is global). */
export function reExtractAll(s: string, re: RegExp, g: number): string[] {
  const out: string[] = [];
  re.lastIndex = 0;
  for (;;) {
    const m = re.exec(s);
    if (!m) break;
    out.push(m[g] ?? '');
    if (m[0] === '') {
      if (re.lastIndex >= s.length) break;
      re.lastIndex += s.codePointAt(re.lastIndex)! > 0xffff ? 2 : 1;
    }
  }
  return out;
}

/** flatten: the elements of the inner lists, NULL inner lists skipped. */
export function flattenList(a: unknown[], x: string): unknown[] {
  const out: unknown[] = [];
  for (const v of a) {
    if (v === null || v === undefined) continue;
    if (!Array.isArray(v))
      return evalError(
        `No function matches the given name and argument types 'flatten(${typeOfValue(v)}[])'`,
        x,
        v,
      );
    for (const e of v) out.push(e === undefined ? null : e);
  }
  return out;
}

/**
 * DuckDB's order of nested values (lists lexicographically, structs field by field), NULLs inside
 * them last; values of different classes (never in one DuckDB list) by class.
 */
export function cmpNested(a: unknown, b: unknown): number {
  const ca = cls(a);
  const cb = cls(b);
  if (ca === 0 || cb === 0) return ca === cb ? 0 : ca === 0 ? 1 : -1;
  const num = (c: number) => c === 1 || c === 2 || c === 9;
  if (num(ca) && num(cb)) return dblCmp(Number(a), Number(b));
  if (ca !== cb) return ca - cb;
  switch (ca) {
    case 3:
      return strCmp(a as string, b as string);
    case 4:
      return Number(a) - Number(b);
    case 5:
      return (a as Date).getTime() - (b as Date).getTime();
    case 6: {
      const x = a as unknown[];
      const y = b as unknown[];
      for (let i = 0; i < x.length && i < y.length; i++) {
        const c = cmpNested(x[i] ?? null, y[i] ?? null);
        if (c !== 0) return c;
      }
      return x.length - y.length;
    }
    case 7: {
      const x = Object.values(a as object);
      const y = Object.values(b as object);
      for (let i = 0; i < x.length && i < y.length; i++) {
        const c = cmpNested(x[i] ?? null, y[i] ?? null);
        if (c !== 0) return c;
      }
      return x.length - y.length;
    }
    default:
      return 0;
  }
}

/** A key equal for equal nested values (list_unique of lists and structs). */
export function nestedKey(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    typeof x === 'bigint' ? Number(x) : x instanceof Date ? x.getTime() : x,
  );
}
