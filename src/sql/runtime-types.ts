/**
 * Run-time helpers for FLOAT, the 128-bit integers (JS bigints inside compiled code), unsigned
 * integers, BLOB and MAP (see runtime.ts for the conventions).
 */
import { onDuckDB } from './fallback.ts';

/** Compiled code calls it by name (a helper), like the rest of this file. */
export { onDuckDB };

import { dblStr, decDown, evalError, POW10, roundAway, roundEven, strToDbl } from './runtime.ts';

// ---------------------------------------------------------------- FLOAT

const FLT_MAX = 3.4028234663852886e38;

/** DuckDB's FLOAT → VARCHAR: the shortest digits that read back as the same 32-bit float. */
export function fltStr(x: number): string {
  if (!Number.isFinite(x) || x === 0) return dblStr(x);
  let p = 1;
  let d = x;
  for (; p < 9; p++) {
    d = Number(x.toPrecision(p));
    if (Math.fround(d) === x) break;
  }
  if (p === 9) d = Number(x.toPrecision(9));
  return dblStr(d);
}

/** DOUBLE → FLOAT: out of FLOAT's range is a conversion error (undefined); inf and nan stay. */
export function dblToFlt(x: number): number | undefined {
  const f = Math.fround(x);
  if (Number.isFinite(x) && !Number.isFinite(f) && Math.abs(x) > FLT_MAX) return undefined;
  return f;
}

/** VARCHAR → FLOAT: beyond FLOAT's range a string reads as ±inf, as DuckDB's parser gives it. */
export function strToFlt(s: string): number | undefined {
  const d = strToDbl(s);
  return d === undefined ? undefined : Math.fround(d);
}

/** FLOAT → DECIMAL: DuckDB scales in 32-bit float arithmetic, then rounds. */
export function fltToDec(x: number, width: number, scale: number, expression: string): number | undefined {
  if (!Number.isFinite(x)) return undefined;
  const r = roundAway(Math.fround(x * Math.fround(POW10[scale]!)));
  if (Math.abs(r) >= POW10[width]!) return undefined;
  if (!Number.isSafeInteger(r)) return onDuckDB('a DECIMAL beyond ±2^53', expression);
  return r === 0 ? 0 : r;
}

/** FLOAT arithmetic result: overflow to ±inf, as DuckDB gives it. */
export function flt(x: number): number {
  return Math.fround(x);
}

// ---------------------------------------------------------------- 128-bit integers (bigint)

export const I128_MIN = -(2n ** 127n);
export const I128_MAX = 2n ** 127n - 1n;
export const U128_MAX = 2n ** 128n - 1n;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A 128-bit integer as a record value: a number within ±2^53, else the exact bigint (as the DuckDB path gives it). */
export function hugeOut(v: bigint): number | bigint {
  return v >= -SAFE && v <= SAFE ? Number(v) : v;
}

/** A record value (number or bigint) of a known 128-bit type, for compiled code. */
export function hugeIn(v: unknown): bigint | null {
  if (v === null || v === undefined) return null;
  return typeof v === 'bigint' ? v : BigInt(v as number);
}

const HUGE_RE = /^[+-]?\d(?:_?\d)*(?:\.\d*)?(?:[eE][+-]?\d+)?$/;

/** VARCHAR → HUGEINT/UHUGEINT, rounding half away from zero as DuckDB does for a decimal string. */
export function strToHuge(s: string, lo: bigint, hi: bigint): bigint | undefined {
  const t = s.trim().replace(/_/g, '');
  if (!HUGE_RE.test(t)) return undefined;
  let v: bigint;
  if (/^[+-]?\d+$/.test(t)) v = BigInt(t);
  else {
    const m = /^([+-]?)(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(t)!;
    const exp = Number(m[4] ?? 0);
    const frac = m[3] ?? '';
    const digits = m[2]! + frac;
    const point = m[2]!.length + exp; // digits before the decimal point
    if (point > 60) return undefined;
    if (point <= 0) v = point === 0 && digits.charCodeAt(0) >= 53 ? 1n : 0n;
    else {
      const int = digits.slice(0, point).padEnd(point, '0');
      v = BigInt(int);
      if (digits.length > point && digits.charCodeAt(point) >= 53) v += 1n;
    }
    if (m[1] === '-') v = -v;
  }
  return v >= lo && v <= hi ? v : undefined;
}

/** DOUBLE/FLOAT → 128-bit integer: rounds half to even (C's nearbyint), as DuckDB does. */
export function dblToHuge(x: number, lo: bigint, hi: bigint): bigint | undefined {
  if (!Number.isFinite(x)) return undefined;
  const v = BigInt(roundEven(x));
  return v >= lo && v <= hi ? v : undefined;
}

/** DECIMAL → 128-bit integer, rounding half away from zero. */
export function decToHuge(n: number, scale: number, lo: bigint, hi: bigint): bigint | undefined {
  const v = BigInt(decDown(n, scale));
  return v >= lo && v <= hi ? v : undefined;
}

/** 128-bit integer → a number integer type of range [lo, hi]. */
export function hugeToInt(v: bigint, lo: number, hi: number): number | undefined {
  const n = Number(v);
  if (n < lo || n > hi) return undefined;
  if (!Number.isSafeInteger(n)) return onDuckDB(`the integer ${v} is beyond ±2^53`, `CAST(${v})`);
  return n;
}

/** 128-bit integer → DECIMAL(w,s) as the scaled integer compiled code uses (exact within ±2^53). */
export function hugeToDec(v: bigint, width: number, scale: number): number | undefined {
  const r = v * 10n ** BigInt(scale);
  if ((r < 0n ? -r : r) >= 10n ** BigInt(width)) return undefined;
  return r >= -SAFE && r <= SAFE ? Number(r) : onDuckDB(`the DECIMAL of ${v} is beyond ±2^53`, `CAST(${v})`);
}

const OPS: Record<string, string> = { '+': 'addition', '-': 'subtraction', '*': 'multiplication' };

/** + - * on 128-bit integers, with DuckDB's overflow error. */
export function hugeArith(
  op: string,
  a: bigint,
  b: bigint,
  lo: bigint,
  hi: bigint,
  phys: string,
  x: string,
): bigint {
  const r = op === '+' ? a + b : op === '-' ? a - b : a * b;
  if (r < lo || r > hi) return evalError(`Overflow in ${OPS[op]} of ${phys} (${a} ${op} ${b})!`, x, r);
  return r;
}

export function hugeDiv(
  a: bigint,
  b: bigint,
  lo: bigint,
  hi: bigint,
  phys: string,
  x: string,
): bigint | null {
  if (b === 0n) return null;
  const r = a / b;
  if (r < lo || r > hi) return evalError(`Overflow in division of ${phys} (${a} // ${b})!`, x, a);
  return r;
}

export function hugeMod(a: bigint, b: bigint): bigint | null {
  return b === 0n ? null : a % b;
}

export function hugeNeg(a: bigint, x: string): bigint {
  if (a === I128_MIN) return evalError('Overflow in negation of numeric value!', x, a);
  return -a;
}

/** Negation of an unsigned integer wraps around, as DuckDB computes it (-(1::UTINYINT) is 255). */
export function uNeg(a: number, bits: number, x: string): number {
  if (a === 0) return 0;
  if (bits >= 64) return onDuckDB(`the negation of the UBIGINT ${a} is beyond ±2^53`, x);
  return 2 ** bits - a;
}

export function uHugeNeg(a: bigint): bigint {
  return a === 0n ? 0n : 2n ** 128n - a;
}

// ---------------------------------------------------------------- BLOB

/** VARCHAR → BLOB: `\xHH` escapes a byte; other characters must be ASCII. Undefined when it does not convert. */
export function strToBlob(s: string): Uint8Array | undefined {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92 /* \ */) {
      if (s[i + 1] !== 'x' || i + 3 >= s.length + 0 || !/^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
        return undefined;
      }
      out.push(Number.parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (c > 127) return undefined;
    else out.push(c);
  }
  return Uint8Array.from(out);
}

/** DuckDB's message for a string that does not convert to BLOB. */
export function blobMessage(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92) {
      if (i + 3 >= s.length || s[i + 1] !== 'x')
        return `Invalid hex escape code encountered in string -> blob conversion of string "${s}": unterminated escape code at end of blob`;
      const code = s.slice(i, i + 4);
      if (!/^\\x[0-9a-fA-F]{2}$/.test(code))
        return `Invalid hex escape code encountered in string -> blob conversion of string "${s}": ${code}`;
      i += 3;
    } else if (c > 127) {
      return `Invalid byte encountered in STRING -> BLOB conversion of string "${s}". All non-ascii characters must be escaped with hex codes (e.g. \\xAA)`;
    }
  }
  return `Could not convert string '${s}' to BLOB`;
}

const HEX = '0123456789ABCDEF';

/** BLOB → VARCHAR: printable ASCII as is, every other byte (and \ ' ") as `\xHH`. */
export function blobStr(b: Uint8Array): string {
  let s = '';
  for (const c of b) {
    if (c >= 32 && c <= 126 && c !== 92 && c !== 39 && c !== 34) s += String.fromCharCode(c);
    else s += `\\x${HEX[c >> 4]}${HEX[c & 15]}`;
  }
  return s;
}

/** Byte-wise order, a shorter prefix first (memcmp, as DuckDB compares blobs). */
export function blobCmp(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function blobConcat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const r = new Uint8Array(a.length + b.length);
  r.set(a, 0);
  r.set(b, a.length);
  return r;
}

/** A BLOB as a record value: a Buffer, as DuckDB's JS values and the Parquet reader give it. */
export function blobOut(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

// ---------------------------------------------------------------- MAP

interface Entry {
  key: unknown;
  value: unknown;
}

/** Key equality in record representation (numbers, strings, Dates, nested values). */
function keyEq(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (a instanceof Uint8Array && b instanceof Uint8Array) return blobCmp(a, b) === 0;
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null)
    return JSON.stringify(a) === JSON.stringify(b);
  return false;
}

function checkEntries(entries: Entry[], x: string): Entry[] {
  for (let i = 0; i < entries.length; i++) {
    const k = entries[i]!.key;
    if (k === null || k === undefined) return evalError('Map keys can not be NULL.', x, k);
    for (let j = 0; j < i; j++)
      if (keyEq(entries[j]!.key, k)) return evalError('Map keys must be unique.', x, k);
  }
  return entries;
}

/** map(keys, values) */
export function mapMake(keys: unknown[], values: unknown[], x: string): Entry[] {
  if (keys.length !== values.length)
    return evalError('The map key list does not align with the map value list.', x, keys);
  return checkEntries(
    keys.map((key, i) => ({ key, value: values[i] ?? null })),
    x,
  );
}

/** map_from_entries(list of two-field structs) */
export function mapFromEntries(list: unknown[], x: string): Entry[] {
  return checkEntries(
    list.map((e) => {
      if (e === null || e === undefined)
        return evalError('The list of map entries can not contain NULL', x, e);
      const [key, value] = Object.values(e as object);
      return { key: key ?? null, value: value ?? null };
    }),
    x,
  );
}

/** The value under `key` (record representation), or null. */
export function mapGet(m: Entry[], key: unknown): unknown {
  for (const e of m) if (keyEq(e.key, key)) return e.value;
  return null;
}

/** map_extract: [value] when the key is present, [] when not. */
export function mapFind(m: Entry[], key: unknown): unknown[] {
  for (const e of m) if (keyEq(e.key, key)) return [e.value];
  return [];
}
