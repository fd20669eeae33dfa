/**
 * Run-time helpers called by compiled per-record SQL. Conventions (the "internal" representation
 * inside a compiled function): SQL NULL is `null`; integers, DOUBLE are JS numbers; DECIMAL(w,s)
 * is the scaled integer (1.50 in DECIMAL(3,2) is 150); DATE and TIMESTAMP are epoch microseconds (see runtime-temporal.ts);
 * VARCHAR is a string; LIST and STRUCT are arrays and objects holding record ("output")
 * representation values. Cast helpers return `undefined` when a value does not convert, so that
 * CAST can throw and TRY_CAST can yield NULL.
 */
import { SluiceError } from '../sdk/errors.ts';
import { onDuckDB } from './fallback.ts';
import { parseDuckInt } from './int-parse.ts';
import { nestedText } from './runtime-nested-text.ts';
import { tsStr } from './runtime-temporal.ts';
import { type Shape, shapeOf } from './shape.ts';
import type { SqlType } from './types.ts';

export * from './runtime-interval.ts';
export * from './runtime-lateral.ts';
export * from './runtime-nested-text.ts';
export * from './runtime-temporal.ts';

/** A lookup table without Object.prototype, so that user-supplied keys like `constructor` miss. */
export function nullProto<T extends object>(o: T): T {
  return Object.setPrototypeOf(o, null) as T;
}

// ---------------------------------------------------------------- errors

/** Throws the per-record evaluation error. `expression` is the SQL text of the failing expression. */
export function evalError(message: string, expression: string, value?: unknown): never {
  throw new SluiceError('SLUICE_EXPR_EVAL', `${message} (in ${expression})`, {
    details: { expression, value: describeValue(value) },
  });
}

function describeValue(v: unknown): unknown {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return v;
}

// ---------------------------------------------------------------- classification

/**
 * The SQL type class of a record value: 0 NULL, 1 BIGINT, 2 DOUBLE, 3 VARCHAR, 4 BOOLEAN,
 * 5 TIMESTAMP, 6 LIST, 7 STRUCT, 8 other, 9 BIGINT held as a JS bigint, 10 BLOB (a Uint8Array).
 */
export function cls(v: unknown): number {
  switch (typeof v) {
    case 'number':
      return Number.isSafeInteger(v) ? 1 : 2;
    case 'string':
      return 3;
    case 'boolean':
      return 4;
    case 'undefined':
      return 0;
    case 'object':
      if (v === null) return 0;
      if (Array.isArray(v)) return 6;
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? 8 : 5;
      if (v instanceof Uint8Array) return 10;
      return isPlainObject(v) ? 7 : 8;
    case 'bigint':
      return v >= -9007199254740991n && v <= 9007199254740991n ? 9 : 8;
    default:
      return 8;
  }
}

function isPlainObject(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

const PROTO_KEYS = new Set(Object.getOwnPropertyNames(Object.prototype));

/** Whether reading `obj[name]` needs an own-property check (the name exists on Object.prototype). */
export function needsOwnCheck(name: string): boolean {
  return PROTO_KEYS.has(name);
}

/** A struct field of a record value; a missing field reads as NULL. */
export function field(v: unknown, name: string, expression: string): unknown {
  if (v == null) return null;
  if (typeof v !== 'object' || Array.isArray(v) || v instanceof Date) {
    return evalError(`Cannot extract field '${name}' from a value of type ${typeOfValue(v)}`, expression, v);
  }
  if (PROTO_KEYS.has(name) && !Object.hasOwn(v, name)) return fieldCi(v, name);
  const r = (v as Record<string, unknown>)[name];
  return r === undefined ? fieldCi(v, name) : r;
}

/** A list element (1-based, negative from the end) or a character of a string; out of range is NULL. */
export function elem(v: unknown, index: number, expression: string): unknown {
  if (v == null) return null;
  if (Array.isArray(v)) {
    const i = index > 0 ? index - 1 : index < 0 ? v.length + index : -1;
    if (i < 0 || i >= v.length) return null;
    const r = v[i];
    return r === undefined ? null : r;
  }
  if (typeof v === 'string') {
    if (index > 4294967295 || index < -4294967296) substrRange(index, 1, expression);
    return strElem(v, index);
  }
  if (typeof v === 'object' && !(v instanceof Date) && typeof index === 'number') {
    return evalError(`Cannot extract element ${index} from a STRUCT: use a field name`, expression, v);
  }
  return evalError(`Cannot extract element ${index} from a value of type ${typeOfValue(v)}`, expression, v);
}

function strElem(s: string, index: number): string {
  const cps = hasSurrogates(s) ? Array.from(s) : null;
  const n = cps ? cps.length : s.length;
  const i = index > 0 ? index - 1 : index < 0 ? n + index : -1;
  if (i < 0 || i >= n) return '';
  return cps ? cps[i]! : s[i]!;
}

/** `x[k]` where both are only known per record. */
export function extractAny(v: unknown, key: unknown, expression: string): unknown {
  if (v == null || key == null) return null;
  if (typeof key === 'string') return field(v, key, expression);
  if (typeof key === 'number' && Number.isInteger(key)) return elem(v, key, expression);
  return evalError(`Cannot use ${typeOfValue(key)} as an index`, expression, key);
}

/**
 * typeof() of a record value: a list or struct gets the DuckDB type the DuckDB paths give it
 * (`BIGINT[]`, `STRUCT(a BIGINT, b VARCHAR)`; see shape.ts), other values their class.
 */
export function typeOfRecordValue(v: unknown): string {
  if (typeof v !== 'object' || v === null || v instanceof Date) return typeOfValue(v);
  try {
    return shapeText(shapeOf(v));
  } catch {
    return typeOfValue(v);
  }
}

function shapeText(s: Shape): string {
  if (s.k === 'NULL') return 'INTEGER';
  if (s.k === 'LIST') return `${shapeText(s.e)}[]`;
  if (s.k === 'STRUCT') {
    const name = (n: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(n) ? n : `"${n.replace(/"/g, '""')}"`);
    return `STRUCT(${s.f.map(([n, t]) => `${name(n)} ${shapeText(t)}`).join(', ')})`;
  }
  return s.k;
}

export function typeOfValue(v: unknown): string {
  return [
    'NULL',
    'BIGINT',
    'DOUBLE',
    'VARCHAR',
    'BOOLEAN',
    'TIMESTAMP',
    'LIST',
    'STRUCT',
    'OTHER',
    'BIGINT',
    'BLOB',
  ][cls(v)]!;
}

// ---------------------------------------------------------------- integers

const TWO63 = 2 ** 63;

const OP_NAMES: Record<string, string> = { '+': 'addition', '-': 'subtraction', '*': 'multiplication' };

/** Throws the overflow error of an integer operation; a 64-bit result beyond ±2^53 is left to DuckDB. */
export function intOvf(phys: string, op: string, a: number, b: number, r: number, x: string): never {
  // r is the nearest double: within (or at) the 64-bit range, only DuckDB knows the exact answer
  if ((phys === 'INT64' && Math.abs(r) <= TWO63) || (phys === 'UINT64' && r >= 0 && r <= 2 * TWO63)) {
    return onDuckDB(
      `the ${phys === 'INT64' ? 'BIGINT' : 'UBIGINT'} result of ${a} ${op} ${b} is beyond ±2^53`,
      x,
    );
  }
  return evalError(`Overflow in ${OP_NAMES[op] ?? op} of ${phys} (${a} ${op} ${b})!`, x, r);
}

export function intDiv(a: number, b: number, lo: number, hi: number, phys: string, x: string): number | null {
  if (b === 0) return null;
  const r = (a - (a % b)) / b;
  if (r < lo || r > hi) return evalError(`Overflow in division of ${phys} (${a} // ${b})!`, x, a);
  return r === 0 ? 0 : r;
}

export function intMod(a: number, b: number): number | null {
  if (b === 0) return null;
  const r = a % b;
  return r === 0 ? 0 : r;
}

export function intNeg(a: number, lo: number, phys: string, x: string): number {
  if (a === lo) return evalError(`Overflow in negation of ${phys} (${a})!`, x, a);
  return a === 0 ? 0 : -a;
}

// ---------------------------------------------------------------- doubles and decimals

/** `a // b` on doubles: DuckDB divides (no flooring) and yields NULL for a zero divisor. */
export function dblIntDiv(a: number, b: number): number | null {
  return b === 0 ? null : a / b;
}

export function dblEq(a: number, b: number): boolean {
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}
/** DuckDB orders NaN above every other double. */
export function dblLt(a: number, b: number): boolean {
  return a < b || (Number.isNaN(b) && !Number.isNaN(a));
}
export function dblLe(a: number, b: number): boolean {
  return a <= b || Number.isNaN(b);
}
export function dblCmp(a: number, b: number): number {
  if (a === b) return 0;
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return a < b ? -1 : 1;
}

export const POW10: number[] = Array.from({ length: 39 }, (_, i) => 10 ** i);

/** Checks a scaled decimal result stays in JS's exact integer range. */
export function chkDec(r: number, x: string): number {
  if (Number.isSafeInteger(r)) return r;
  return onDuckDB('a DECIMAL result beyond ±2^53', x);
}

/** Divides a scaled integer by 10^k, rounding half away from zero (exact). */
export function decDown(n: number, k: number): number {
  if (k <= 0) return n * POW10[-k]!;
  const d = POW10[k]!;
  const r = n % d;
  let q = (n - r) / d;
  if (Math.abs(r) * 2 >= d) q += n < 0 ? -1 : 1;
  return q === 0 ? 0 : q;
}

/** Rounds half away from zero, as DuckDB's round() does for doubles. */
export function roundAway(x: number): number {
  const r = x < 0 ? -Math.round(-x) : Math.round(x);
  return r === 0 && x < 0 ? -0 : r;
}

/**
 * round(double, n): DuckDB computes round(x * 10^n) / 10^n, keeping x when that is not finite; for
 * n < 0, round(x / 10^-n) * 10^-n, giving 0 when that is not finite (round(42, -1000) is 0).
 */
export function roundDbl(x: number, n: number): number {
  if (n === 0) return roundAway(x);
  if (n > 0) {
    const m = 10 ** n;
    const r = roundAway(x * m) / m;
    return Number.isFinite(r) ? r : x;
  }
  const m = 10 ** -n;
  const r = roundAway(x / m) * m;
  return Number.isFinite(r) ? r : 0;
}

/** log(b, x): DuckDB's log10(x) / log10(b), checking b first; a base of 1 divides by zero. */
export function logBase(b: number, x: number, expression: string): number {
  const d = log10Checked(b, expression);
  if (d === 0) return evalError('divison by zero in based logarithm', expression, b);
  return log10Checked(x, expression) / d;
}

function log10Checked(v: number, expression: string): number {
  if (v < 0) return evalError('cannot take logarithm of a negative number', expression, v);
  if (v === 0) return evalError('cannot take logarithm of zero', expression, v);
  return Math.log10(v);
}

/** Round half to even, as C's nearbyint (DuckDB's DOUBLE → integer cast). */
export function roundEven(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x % 1) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

// ---------------------------------------------------------------- to text

/**
 * DuckDB's DOUBLE → VARCHAR of a value: `dblText`, except that a NaN goes to DuckDB. DuckDB prints a
 * NaN with its sign bit set as -nan (inf - inf on x86, -'nan'); JavaScript does not keep a NaN's sign
 * reliably (V8 may make any NaN its canonical one), so DuckDB prints this record's.
 */
export function dblStr(x: number): string {
  if (Number.isNaN(x))
    return onDuckDB('a NaN as text (DuckDB writes its sign bit: nan or -nan)', 'CAST(DOUBLE AS VARCHAR)');
  return dblText(x);
}

/**
 * DuckDB's digits for a DOUBLE: shortest round-trip digits, exponent outside 1e-5 .. 1e16; a NaN is
 * `nan`. For the text of the query itself (a constant in a message); a value cast to text uses dblStr.
 */
export function dblText(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Number.POSITIVE_INFINITY) return 'inf';
  if (x === Number.NEGATIVE_INFINITY) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const ax = Math.abs(x);
  if (ax >= 1e-4 && ax < 1e16) {
    const s = String(x);
    return s.includes('.') ? s : `${s}.0`;
  }
  const e = x.toExponential();
  const i = e.indexOf('e');
  const exp = Number(e.slice(i + 1));
  const ae = Math.abs(exp);
  return `${e.slice(0, i)}e${exp < 0 ? '-' : '+'}${ae < 10 ? '0' : ''}${ae}`;
}

/** A DECIMAL's text; DuckDB writes no integer digit for a type that has none: DECIMAL(3,3) 0.1 is `.100`. */
export function decStr(n: number, scale: number, width = 38): string {
  if (scale === 0) return String(n === 0 ? 0 : n);
  const neg = n < 0;
  const digits = String(Math.abs(n)).padStart(width === scale ? scale : scale + 1, '0');
  const cut = digits.length - scale;
  return `${neg ? '-' : ''}${digits.slice(0, cut)}.${digits.slice(cut)}`;
}

/** A list or struct typed per record (its fields and elements by their values). */
const RECORD_NESTED: SqlType = { id: 'ANY' };

/** A record ("output" representation) value as DuckDB would print it as VARCHAR. */
export function anyStr(v: unknown): string | null {
  switch (cls(v)) {
    case 0:
      return null;
    case 1:
    case 9:
      return String(v);
    case 2:
      return dblStr(v as number);
    case 3:
      return v as string;
    case 4:
      return v ? 'true' : 'false';
    case 5:
      return tsStr((v as Date).getTime() * 1000);
    case 6:
    case 7:
      // typed as DuckDB types the record's value (a list of 1 and 2.5 is DOUBLE[]: `[1.0, 2.5]`)
      return nestedText(v, RECORD_NESTED);
    default:
      return String(v);
  }
}

/** A nested value's text as DuckDB quotes it inside a LIST or STRUCT's text. */
export function quoteNested(s: string, value = false): string {
  const needs =
    s === '' || /['"\\[\]{}(),:=]/.test(s) || /^\s|\s$/.test(s) || (value && s.toUpperCase() === 'NULL');
  if (!needs) return s;
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

// ---------------------------------------------------------------- casts from VARCHAR

function trimSpace(s: string): string {
  return s.trim();
}

const PLAIN_INT = /^[ \t\n\v\f\r]*([+-]?\d{1,15})[ \t\n\v\f\r]*$/;
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;

/**
 * VARCHAR → integer in [lo, hi] as DuckDB converts it (see int-parse.ts); plain digits take a fast
 * path. A value DuckDB accepts beyond ±2^53 fails with the documented limit, not as unconvertible.
 */
export function strToInt(s: string, lo: number, hi: number, x: string): number | undefined {
  const m = PLAIN_INT.exec(s);
  if (m) {
    const v = Number(m[1]);
    return v >= lo && v <= hi ? v + 0 : undefined;
  }
  // the ranges' upper ends are doubles: 2^63 stands for BIGINT's, 2^64 for UBIGINT's
  const r = parseDuckInt(s, BigInt(lo), hi >= 2 ** 64 ? U64_MAX : hi >= 2 ** 63 ? I64_MAX : BigInt(hi));
  if (r === undefined) return undefined;
  const n = Number(r);
  if (!Number.isSafeInteger(n)) return beyondExact(`the integer ${r}`, x, s);
  return n;
}

/** A value DuckDB holds exactly but a JavaScript number cannot: DuckDB evaluates the record. */
export function beyondExact(what: string, x: string, _value: unknown): never {
  return onDuckDB(`${what} is beyond ±2^53, the exact range of JavaScript numbers`, x);
}

const DBL_RE = /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?$/;

export function strToDbl(s: string): number | undefined {
  const t = trimSpace(s);
  if (DBL_RE.test(t)) return Number(t.replace(/_/g, ''));
  const l = t.toLowerCase();
  if (l === 'inf' || l === '+inf' || l === 'infinity' || l === '+infinity') return Number.POSITIVE_INFINITY;
  if (l === '-inf' || l === '-infinity') return Number.NEGATIVE_INFINITY;
  if (l === 'nan' || l === '+nan' || l === '-nan') return Number.NaN;
  return undefined;
}

/** VARCHAR → DECIMAL(w,s) as the scaled integer, rounding half away from zero (exact on the digits). */
export function strToDec(s: string, width: number, scale: number, x: string): number | undefined {
  const raw = trimSpace(s);
  if (/(^|[^0-9])_|_($|[^0-9])/.test(raw)) return undefined; // `_` only between digits
  const t = raw.replace(/_/g, '');
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(t);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) {
    const d = DBL_RE.test(t) ? Number(t) : undefined;
    return d === undefined ? undefined : dblToDec(d, width, scale, x);
  }
  const int = m[2] || '0';
  const frac = m[3] ?? '';
  const digits = int + frac.slice(0, scale).padEnd(scale, '0');
  let n = Number(digits);
  if (frac.length > scale && frac.charCodeAt(scale) >= 53 /* '5' */) n += 1;
  if (n >= POW10[width]!) return undefined;
  if (!Number.isSafeInteger(n)) return beyondExact(`the DECIMAL(${width},${scale}) value ${s.trim()}`, x, s);
  return m[1] === '-' && n !== 0 ? -n : n;
}

export function strToBool(s: string): boolean | undefined {
  switch (s.toLowerCase()) {
    case 'true':
    case 't':
    case 'yes':
    case 'y':
    case '1':
      return true;
    case 'false':
    case 'f':
    case 'no':
    case 'n':
    case '0':
      return false;
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------- numeric casts

export function dblToInt(x: number, lo: number, hi: number): number | undefined {
  if (!Number.isFinite(x)) return undefined;
  if (lo === 0 && x < 0) return undefined; // an unsigned target refuses any negative double, -0.5 too
  const r = roundEven(x);
  if (r < lo || r > hi) return undefined;
  if (!Number.isSafeInteger(r)) return onDuckDB(`the integer ${r} is beyond ±2^53`, `CAST(${x})`);
  return r === 0 ? 0 : r;
}

export function decToInt(n: number, scale: number, lo: number, hi: number): number | undefined {
  const r = decDown(n, scale);
  return r < lo || r > hi ? undefined : r;
}

export function dblToDec(v: number, width: number, scale: number, x: string): number | undefined {
  if (!Number.isFinite(v)) return undefined;
  const r = roundAway(v * POW10[scale]!);
  if (Math.abs(r) >= POW10[width]!) return undefined;
  if (!Number.isSafeInteger(r)) return beyondExact(`the DECIMAL(${width},${scale}) value ${dblStr(v)}`, x, v);
  return r === 0 ? 0 : r;
}

export function decToDec(
  n: number,
  from: number,
  width: number,
  scale: number,
  x: string,
): number | undefined {
  const r = scale >= from ? n * POW10[scale - from]! : decDown(n, from - scale);
  if (Math.abs(r) >= POW10[width]!) return undefined;
  if (!Number.isSafeInteger(r))
    return beyondExact(`the DECIMAL(${width},${scale}) value ${decStr(n, from)}`, x, n);
  return r;
}

// ---------------------------------------------------------------- strings

const SURROGATE = /[\uD800-\uDFFF]/;

export function hasSurrogates(s: string): boolean {
  return SURROGATE.test(s);
}

/** Length in Unicode code points, as DuckDB's length(). */
export function strLen(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) n--;
  }
  return n;
}

/** Binary (UTF-8 byte order) comparison, as DuckDB compares VARCHARs. */
export function strCmp(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        if (x < 0xe000) x += 0x10000;
        if (y < 0xe000) y += 0x10000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

const NON_ASCII = /[\u0080-\uffff]/;

function mapCodePoints(s: string, upper: boolean): string {
  let out = '';
  for (const ch of s) {
    const m = upper ? ch.toUpperCase() : ch.toLowerCase();
    if (m.length === ch.length || [...m].length === 1) out += m;
    else if (ch === 'ß') out += 'ẞ';
    else if (ch === 'İ') out += 'i';
    else out += ch;
  }
  return out;
}

/** upper() with simple (one-to-one) case mapping, as DuckDB. */
export function upper(s: string): string {
  const u = s.toUpperCase();
  if (u.length === s.length || !NON_ASCII.test(s)) return u;
  return mapCodePoints(s, true);
}

export function lower(s: string): string {
  const l = s.toLowerCase();
  if ((l.length === s.length && !s.includes('Σ')) || !NON_ASCII.test(s)) return l;
  return mapCodePoints(s, false);
}

export function trimChars(s: string, chars: string, left: boolean, right: boolean): string {
  if (chars === ' ') {
    let i = 0;
    let j = s.length;
    if (left) while (i < j && s.charCodeAt(i) === 32) i++;
    if (right) while (j > i && s.charCodeAt(j - 1) === 32) j--;
    return i === 0 && j === s.length ? s : s.slice(i, j);
  }
  const set = new Set(chars);
  const cps = Array.from(s);
  let i = 0;
  let j = cps.length;
  if (left) while (i < j && set.has(cps[i]!)) i++;
  if (right) while (j > i && set.has(cps[j - 1]!)) j--;
  return cps.slice(i, j).join('');
}

/** DuckDB's substring on code points (negative offsets count from the end, negative lengths go backwards). */
/** DuckDB's substring takes 32-bit offsets and lengths (beyond, an Out of Range Error). */
export function substrRange(offset: number, length: number, x: string): void {
  if (offset > 4294967295) evalError('Substring offset outside of supported range (> 4294967295)', x, offset);
  if (offset < -4294967296)
    evalError('Substring offset outside of supported range (< -4294967296)', x, offset);
  if (length > 4294967295) evalError('Substring length outside of supported range (> 4294967295)', x, length);
  if (length < -4294967296)
    evalError('Substring length outside of supported range (< -4294967296)', x, length);
}

export function substr(s: string, offset: number, length: number, unicodeOnly: boolean, x: string): string {
  if (offset > 4294967295 || offset < -4294967296 || length > 4294967295 || length < -4294967296)
    substrRange(offset, length, x);
  if (length === 0) return '';
  if (offset < 0 && !unicodeOnly && !NON_ASCII.test(s)) {
    // DuckDB's ASCII-only path counts a negative offset differently when it reaches before the start
    let start = Math.max(s.length + offset, 0);
    let end: number;
    if (length > 0) end = Math.min(s.length, start + length);
    else {
      end = start;
      start = Math.max(0, start + length);
    }
    return s.slice(start, end);
  }
  const cps = hasSurrogates(s) ? Array.from(s) : null;
  const n = cps ? cps.length : s.length;
  const slice = (a: number, b: number) => (cps ? cps.slice(a, b).join('') : s.slice(a, b));
  if (offset < 0) {
    let startPos = 0;
    let endPos = -1;
    const off = offset - 1;
    let start: number;
    let end: number;
    if (length < 0) {
      start = -off - length;
      end = -off;
    } else {
      start = -off;
      end = -off - length;
    }
    if (end <= 0) endPos = n;
    let cur = 0;
    for (let i = n; i > 0; i--) {
      cur++;
      if (cur === start) {
        startPos = i;
        break;
      }
      if (cur === end) endPos = i;
    }
    if (endPos === -1) return '';
    return slice(startPos, endPos);
  }
  const off = offset - 1;
  let start: number;
  let end: number;
  if (length < 0) {
    start = Math.max(0, off + length);
    end = off;
  } else {
    start = Math.max(0, off);
    end = off + length;
  }
  if (start >= n || end === 0 || end <= start) return '';
  return slice(start, Math.min(end, n));
}

export function leftStr(s: string, k: number, x: string): string {
  if (k > 4294967295) substrRange(1, k, x);
  const cps = hasSurrogates(s) ? Array.from(s) : null;
  const n = cps ? cps.length : s.length;
  const e = k >= 0 ? Math.min(k, n) : Math.max(0, n + k);
  return cps ? cps.slice(0, e).join('') : s.slice(0, e);
}

export function rightStr(s: string, k: number): string {
  const cps = hasSurrogates(s) ? Array.from(s) : null;
  const n = cps ? cps.length : s.length;
  const b = k >= 0 ? Math.max(0, n - k) : Math.min(n, -k);
  return cps ? cps.slice(b).join('') : s.slice(b);
}

export function pad(s: string, len: number, fill: string, left: boolean, x: string): string {
  if (len <= 0) return '';
  const cps = Array.from(s);
  if (cps.length >= len) return cps.slice(0, len).join('');
  const fcps = Array.from(fill);
  if (fcps.length === 0) return evalError(`Insufficient padding in ${left ? 'LPAD' : 'RPAD'}.`, x, s);
  const need = len - cps.length;
  let p = '';
  for (let i = 0; i < need; i++) p += fcps[i % fcps.length];
  return left ? p + s : s + p;
}

export function splitPart(s: string, sep: string, index: number): string {
  if (index === 0) return '';
  const parts = sep === '' ? Array.from(s) : s.split(sep);
  const i = index > 0 ? index - 1 : parts.length + index;
  return i >= 0 && i < parts.length ? parts[i]! : '';
}

/** 1-based code point position of `needle` in `s`, 0 when absent. */
export function strpos(s: string, needle: string): number {
  const i = s.indexOf(needle);
  if (i <= 0) return i + 1;
  return hasSurrogates(s) ? strLen(s.slice(0, i)) + 1 : i + 1;
}

// ---------------------------------------------------------------- LIKE and regular expressions

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Compiles a LIKE pattern (`%`, `_`, optional escape character) to an anchored RegExp. */
export function likeRegExp(pattern: string, escapeChar: string | null, ci: boolean): RegExp {
  let re = '';
  const cps = Array.from(pattern);
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!;
    if (escapeChar !== null && c === escapeChar) {
      const next = cps[++i];
      if (next === undefined) throw new RangeError('Like pattern must not end with escape character!');
      re += escapeRe(next);
    } else if (c === '%') re += '[^]*';
    else if (c === '_') re += '[^]';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, ci ? 'iu' : 'u');
}

const likeCache = new Map<string, RegExp>();

export function likeDyn(
  s: string,
  pattern: string,
  escapeChar: string | null,
  ci: boolean,
  x: string,
): boolean {
  if (escapeChar !== null && Array.from(escapeChar).length > 1)
    return evalError('Invalid escape string. Escape string must be empty or one character.', x, escapeChar);
  const key = `${ci ? 'i' : 'c'}${escapeChar ?? ''}\u0000${pattern}`;
  return cachedRegExp(likeCache, key, () => likeRegExp(pattern, escapeChar, ci), x, pattern).test(s);
}

/**
 * The regular expression for a pattern met at run time, built once per key (a cache of at most
 * about 1,000, emptied when full); a pattern that does not build fails the record.
 */
function cachedRegExp(
  cache: Map<string, RegExp>,
  key: string,
  build: () => RegExp,
  x: string,
  pattern: string,
): RegExp {
  let re = cache.get(key);
  if (re) return re;
  try {
    re = build();
  } catch (e) {
    return evalError((e as Error).message, x, pattern);
  }
  if (cache.size > 1000) cache.clear();
  cache.set(key, re);
  return re;
}

/**
 * Translates an RE2 pattern and DuckDB options to a JavaScript RegExp. RE2 and JavaScript agree on
 * the common syntax; inline flags at the start (`(?i)`, `(?s)`) become RegExp flags.
 */
export function makeRegExp(pattern: string, options: string, mode: 'search' | 'full' | 'replace'): RegExp {
  // DuckDB's options: the last of c/i and of s/m/n/p wins; spaces, tabs and newlines are ignored
  let ci = false;
  let dotNl = false;
  let global = false;
  let literal = false;
  for (const o of options) {
    if (o === 'i' || o === 'c') ci = o === 'i';
    else if (o === 's' || o === 'm' || o === 'n' || o === 'p') dotNl = o === 's';
    else if (o === 'l') literal = true;
    else if (o === 'g') {
      if (mode !== 'replace')
        throw new RangeError("Option 'g' (global replace) is only valid for regexp_replace");
      global = true;
    } else if (o !== ' ' && o !== '\t' && o !== '\n') throw new RangeError(`Unrecognized Regex option ${o}`);
  }
  let flags = `u${ci ? 'i' : ''}${dotNl ? 's' : ''}`;
  let p = pattern;
  const inline = /^\(\?([imsU]+)\)/.exec(p);
  if (inline && !literal) {
    for (const f of inline[1]!) {
      if ((f === 'i' || f === 's') && !flags.includes(f)) flags += f;
      else if (f === 'm' && !flags.includes('m')) flags += 'm';
    }
    p = p.slice(inline[0].length);
  }
  p = literal ? escapeRe(p) : re2Syntax(p);
  if (mode === 'full') p = `^(?:${p})$`;
  if (global) flags += 'g';
  try {
    return new RegExp(p, flags);
  } catch (e) {
    const why = (e as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
    throw new RangeError(`invalid regular expression '${pattern}': ${why}`);
  }
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '\\x21-\\x7E',
  lower: 'a-z',
  print: '\\x20-\\x7E',
  punct: '\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '\\w',
  xdigit: '0-9A-Fa-f',
};

/**
 * RE2 syntax JavaScript writes otherwise: `\\z` and `\\A`, `\\x{HHHH}`, `\\Q...\\E`, `(?P<name>`
 * and `[[:alpha:]]` (which JavaScript would read as a class of the letters `[:alph`).
 */
function re2Syntax(p: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\' && i + 1 < p.length) {
      const n = p[i + 1]!;
      if (n === 'x' && p[i + 2] === '{') {
        const close = p.indexOf('}', i + 3);
        if (close > 0) {
          out += `\\u{${p.slice(i + 3, close)}}`;
          i = close;
          continue;
        }
      }
      // an octal escape: \0 and up to two more octal digits, or \1-\7 followed by one or two
      if (n >= '0' && n <= '7' && (n === '0' || (p[i + 2]! >= '0' && p[i + 2]! <= '7'))) {
        const oct = /^[0-7]{1,3}/.exec(p.slice(i + 1))![0];
        out += `\\u{${Number.parseInt(oct, 8).toString(16)}}`;
        i += oct.length;
        continue;
      }
      if (n === 'Q' && !inClass) {
        const end = p.indexOf('\\E', i + 2);
        out += escapeRe(p.slice(i + 2, end < 0 ? p.length : end));
        i = end < 0 ? p.length : end + 1;
        continue;
      }
      out += !inClass && n === 'z' ? '$' : !inClass && n === 'A' ? '^' : c + n;
      i++;
      continue;
    }
    if (inClass) {
      const posix = c === '[' && p[i + 1] === ':' ? /^\[:([a-z]+):\]/.exec(p.slice(i)) : null;
      if (posix && POSIX_CLASSES[posix[1]!]) {
        out += POSIX_CLASSES[posix[1]!];
        i += posix[0].length - 1;
        continue;
      }
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      // a `]` first in the class (or after `^`) is a literal
      if (p[i + 1] === '^') out += p[++i];
      if (p[i + 1] === ']') {
        out += '\\]';
        i++;
      }
      continue;
    }
    if (c === '(' && p.startsWith('(?P<', i)) {
      out += '(?<';
      i += 3;
      continue;
    }
    out += c;
  }
  return out;
}

/** RE2 replacement (`\1`, `\0`) to JavaScript's (`$1`, `$&`). */
export function jsReplacement(r: string): string {
  let out = '';
  for (let i = 0; i < r.length; i++) {
    const c = r[i]!;
    if (c === '$') out += '$$';
    else if (c === '\\' && i + 1 < r.length) {
      const n = r[++i]!;
      if (n === '0') out += '$&';
      else if (n >= '1' && n <= '9') out += `$${n}`;
      else out += n === '$' ? '$$' : n;
    } else out += c;
  }
  return out;
}

/** Number of capture groups of a RegExp. */
export function groupCount(re: RegExp): number {
  return new RegExp(`${re.source}|`, re.flags.replace('g', '')).exec('')!.length - 1;
}

/** The highest group an RE2 replacement refers to (`\\1`..`\\9`; `\\0` is the whole match). */
export function maxGroupRef(r: string): number {
  let max = 0;
  for (let i = 0; i < r.length - 1; i++) {
    if (r[i] === '\\') {
      const n = r.charCodeAt(i + 1) - 48;
      if (n >= 1 && n <= 9) max = Math.max(max, n);
      i++;
    }
  }
  return max;
}

/** regexp_replace with a replacement known only per record: RE2 leaves the string as is when the replacement names a missing group. */
export function reReplaceDyn(s: string, re: RegExp, r: string): string {
  if (maxGroupRef(r) > groupCount(re)) return s;
  if (re.global) return reReplaceAll(s, re, r);
  re.lastIndex = 0;
  return s.replace(re, jsReplacement(r));
}

/**
 * regexp_replace(..., 'g') as RE2's GlobalReplace: every match is replaced except an empty match
 * where the previous match ended (JavaScript replaces it: `.*` on 'ab' gives 'xx' there, 'x' in DuckDB).
 * `r` is the RE2 replacement (`\\0`..`\\9`).
 */
export function reReplaceAll(s: string, re: RegExp, r: string): string {
  let lastEnd = -1;
  re.lastIndex = 0;
  return s.replace(re, (...args: unknown[]) => {
    const match = args[0] as string;
    // (match, groups..., offset, input[, named groups])
    const at = typeof args[args.length - 1] === 'object' ? args.length - 3 : args.length - 2;
    const offset = args[at] as number;
    if (match === '' && offset === lastEnd) return '';
    lastEnd = offset + match.length;
    return rewrite(r, args, at);
  });
}

/** RE2's Rewrite of a replacement for one match (`args` as String.replace passes them; groups end before `end`). */
function rewrite(r: string, args: unknown[], end: number): string {
  if (!r.includes('\\')) return r;
  let out = '';
  for (let i = 0; i < r.length; i++) {
    const c = r[i]!;
    if (c !== '\\' || i + 1 >= r.length) {
      out += c;
      continue;
    }
    const n = r[++i]!;
    const k = n.charCodeAt(0) - 48;
    if (k >= 0 && k <= 9) out += k < end ? ((args[k] as string | undefined) ?? '') : '';
    else out += n;
  }
  return out;
}

const reCache = new Map<string, RegExp>();

export function regexDyn(
  pattern: string,
  options: string,
  mode: 'search' | 'full' | 'replace',
  x: string,
): RegExp {
  const key = `${mode}\u0000${options}\u0000${pattern}`;
  const re = cachedRegExp(reCache, key, () => makeRegExp(pattern, options, mode), x, pattern);
  re.lastIndex = 0;
  return re;
}

// ---------------------------------------------------------------- nested values

/**
 * Equality of record-representation values, as DuckDB compares LISTs and STRUCTs (NULLs equal inside).
 * Values of different kinds (a string and a number, a number and a boolean) DuckDB compares after
 * casting both to one type (the number's text, the boolean's value): that record is DuckDB's.
 */
export function deepEq(a: unknown, b: unknown, x = ''): boolean {
  if (a === b) return true;
  if (a == null || b == null) return a == null && b == null;
  if (typeof a === 'number' && typeof b === 'number') return dblEq(a, b);
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEq(a[i], b[i], x)) return false;
    return true;
  }
  if (isStruct(a) && isStruct(b)) {
    // STRUCTs compare field by field, matched by name without regard to case (a field one lacks is NULL)
    for (const k of structKeys(a, b)) if (!deepEq(fieldCi(a, k), fieldCi(b, k), x)) return false;
    return true;
  }
  if (a instanceof Uint8Array && b instanceof Uint8Array)
    return a.length === b.length && a.every((byte, i) => byte === b[i]);
  if (valueKind(a) === valueKind(b)) return false;
  return onDuckDB(`comparing ${typeOfValue(a)} with ${typeOfValue(b)} inside a list or struct`, x);
}

function isStruct(v: unknown): v is object {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Date) &&
    !(v instanceof Uint8Array)
  );
}

/** What deepEq compares directly: values of one kind (a bigint and a number are one kind to DuckDB, not here). */
function valueKind(v: unknown): string {
  if (Array.isArray(v)) return 'list';
  if (v instanceof Date) return 'date';
  if (v instanceof Uint8Array) return 'blob';
  return typeof v;
}

/** A struct's field by name, an exact match first, else without regard to case, as DuckDB finds struct keys. */
export function fieldCi(v: object, name: string): unknown {
  if (Object.hasOwn(v, name)) return (v as Record<string, unknown>)[name] ?? null;
  const lower = name.toLowerCase();
  for (const k in v) if (k.toLowerCase() === lower) return (v as Record<string, unknown>)[k] ?? null;
  return null;
}

/** The field names of two structs unified as DuckDB unifies struct types: a's, then b's others (case-insensitive). */
function structKeys(a: object, b: object): string[] {
  const keys = Object.keys(a);
  const seen = new Set(keys.map((k) => k.toLowerCase()));
  for (const k of Object.keys(b)) if (!seen.has(k.toLowerCase())) keys.push(k);
  return keys;
}

/**
 * Orders two record-representation values as DuckDB orders LISTs and STRUCTs: element by element
 * (a list that is a prefix of the other is smaller), struct fields by name, a NULL inside after
 * every value and equal to another NULL.
 */
export function nestedCmp(a: unknown, b: unknown, x: string): number {
  if (a == null || b == null) return a == null ? (b == null ? 0 : 1) : -1;
  if (typeof a === 'number' || typeof a === 'boolean') {
    if (typeof b === 'number' || typeof b === 'boolean') return dblCmp(Number(a), Number(b));
  } else if (typeof a === 'string') {
    if (typeof b === 'string') return strCmp(a, b);
  } else if (a instanceof Date) {
    if (b instanceof Date) return dblCmp(a.getTime(), b.getTime());
  } else if (Array.isArray(a)) {
    if (Array.isArray(b)) {
      const n = Math.min(a.length, b.length);
      for (let i = 0; i < n; i++) {
        const c = nestedCmp(a[i], b[i], x);
        if (c !== 0) return c;
      }
      return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
    }
  } else if (typeof a === 'object' && typeof b === 'object' && !Array.isArray(b) && !(b instanceof Date)) {
    for (const k of structKeys(a, b)) {
      const c = nestedCmp(fieldCi(a, k), fieldCi(b, k), x);
      if (c !== 0) return c;
    }
    return 0;
  }
  return evalError(
    `Cannot compare values of type ${typeOfValue(a)} and type ${typeOfValue(b)} - an explicit cast is required`,
    x,
    a,
  );
}

/**
 * contains(list, x) / list_contains: NULL for a NULL list or x, else whether an element equals x.
 * `lit` is x as a string constant, which DuckDB casts to the list's element type.
 */
export function listHas(list: unknown[], x: unknown, lit: boolean, expression: string): boolean {
  for (const e of list) {
    if (e == null) continue;
    if (lit && typeof e === 'number' && typeof x === 'string') {
      const n = strToDbl(x);
      if (n === undefined) return evalError(`Could not convert string '${x}' to DOUBLE`, expression, x);
      if (dblEq(e, n)) return true;
    } else if (deepEq(e, x)) return true;
  }
  return false;
}

/**
 * The elements of a list literal with their STRUCT keys unified, as DuckDB types `[{'a': 1}, {'b': 2}]`
 * STRUCT(a, b)[]: every struct gets every key (case-insensitive, first spelling), a missing one NULL.
 */
export function unifyStructs(items: unknown[]): unknown[] {
  let keys: string[] | undefined;
  let differ = false;
  for (const v of items) {
    if (v == null) continue;
    if (Array.isArray(v)) {
      // lists of structs: unify all their elements together
      const flat = unifyStructs(items.flatMap((l) => (Array.isArray(l) ? l : [])));
      let at = 0;
      return items.map((l) => {
        if (!Array.isArray(l)) return l;
        const part = flat.slice(at, at + l.length);
        at += l.length;
        return part;
      });
    }
    if (typeof v !== 'object' || v instanceof Date) return items;
    const own = Object.keys(v);
    if (!keys) {
      keys = own;
      continue;
    }
    if (own.length !== keys.length || own.some((k, i) => k !== keys![i])) differ = true;
    const seen = new Set(keys.map((k) => k.toLowerCase()));
    for (const k of own) if (!seen.has(k.toLowerCase())) keys = [...keys, k];
  }
  if (!keys) return items;
  const all = keys;
  const columns = all.map((k) =>
    unifyStructs(items.map((v) => (v == null ? null : fieldCi(v as object, k)))),
  );
  if (
    !differ &&
    columns.every((c, j) => c.every((e, i) => items[i] == null || e === fieldCi(items[i] as object, all[j]!)))
  ) {
    return items;
  }
  return items.map((v, i) => (v == null ? v : Object.fromEntries(all.map((k, j) => [k, columns[j]![i]]))));
}

/** A value in record representation turned to boolean for AND/OR/WHERE when its type is only known at run time. */
export function anyBool(v: unknown, x: string): boolean | null {
  if (v == null) return null;
  if (typeof v === 'boolean') return v;
  return evalError(`Cannot use a value of type ${typeOfValue(v)} as a condition`, x, v);
}

// ---------------------------------------------------------------- output rows

/** Sets an own, enumerable property even for the name `__proto__`. */
export function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__')
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** Copies a record's fields for `*`, leaving out `skip` and taking REPLACE values from `repl`. */
export function copyStar(
  o: Record<string, unknown>,
  row: Record<string, unknown>,
  skip: Set<string> | null,
  repl: Map<string, unknown> | null,
): void {
  for (const k in row) {
    if (skip?.has(k)) continue;
    setOwn(o, k, repl?.has(k) ? repl.get(k) : row[k]);
  }
}
export * from './runtime-lists.ts';
