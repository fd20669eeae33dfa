/**
 * DuckDB's VARCHAR → integer conversion (its TryIntegerCast with decimals and exponents), step for
 * step, so that every string converts, rounds or fails exactly as in DuckDB: leading spaces, a sign,
 * single `_` between digits, `0x`/`0b` (no sign, no spaces around), a fraction rounded on its first
 * digit, an exponent that fits a SMALLINT, trailing spaces. Exact in BigInt; the rare strings that
 * are not plain digits take this path.
 */

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
/** Decimal digits of an int64, as DuckDB's NumericLimits<int64_t>::Digits(). */
const I64_DIGITS = 19;

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

interface State {
  result: bigint;
  decimal: bigint;
  /** DuckDB keeps this in a uint16_t, which its exponent arithmetic may wrap. */
  digits: number;
}

function finalize(st: State, neg: boolean, lo: bigint, hi: bigint): boolean {
  if (st.result < lo || st.result > hi) return false;
  while (st.decimal > 10n) {
    st.decimal /= 10n;
    st.digits = (st.digits - 1) & 0xffff;
  }
  if (st.digits === 1 && st.decimal >= 5n) {
    st.result += neg ? -1n : 1n;
    if (st.result < lo || st.result > hi) return false;
  }
  return true;
}

function applyExponent(st: State, exponent: number, neg: boolean, lo: bigint, hi: bigint): boolean {
  let e = exponent;
  if (e < 0) {
    while (st.result !== 0n && e++ < 0) {
      st.decimal = st.result % 10n;
      st.result /= 10n;
    }
    // shifted past every digit: nothing is left to round on (DuckDB 1.5: '5e-12' is 0, '.5e-1' too)
    if (e < 0) st.decimal = 0n;
    if (st.decimal < 0n) st.decimal = -st.decimal;
    st.digits = 1;
    return finalize(st, neg, lo, hi);
  }
  while (st.result !== 0n && e-- > 0) {
    st.result *= 10n;
    if (st.result < I64_MIN || st.result > I64_MAX) return false;
  }
  if (st.decimal === 0n) return finalize(st, neg, lo, hi);
  e = exponent - st.digits;
  let remainder = 0n;
  if (e < 0) {
    if (-e <= I64_DIGITS) {
      const power = 10n ** BigInt(-e);
      remainder = st.decimal % power;
      st.decimal /= power;
    } else st.decimal = 0n;
  } else {
    while (e-- > 0) {
      st.decimal *= 10n;
      if (st.decimal > I64_MAX) return false;
    }
  }
  st.digits = (st.digits - exponent) & 0xffff;
  st.result += neg ? -st.decimal : st.decimal;
  if (st.result < I64_MIN || st.result > I64_MAX) return false;
  st.decimal = remainder;
  return finalize(st, neg, lo, hi);
}

/** The exponent after `e`: an integer in SMALLINT's range, `_` between digits, trailing spaces. */
function parseExponent(s: string, at: number): number | undefined {
  const st: State = { result: 0n, decimal: 0n, digits: 0 };
  const neg = s[at] === '-';
  const ok = loop(s, at, neg, false, st, -32768n, 32767n);
  return ok ? Number(st.result) : undefined;
}

/** DuckDB's IntegerCastLoop from `at` (a sign included); `st.result` holds the value when it returns true. */
function loop(s: string, at: number, neg: boolean, exp: boolean, st: State, lo: bigint, hi: bigint): boolean {
  const len = s.length;
  const start = neg || s[at] === '+' ? at + 1 : at;
  // the mantissa accumulates in an int64 (the exponent's own loop in its SMALLINT)
  const min = exp ? I64_MIN : lo;
  const max = exp ? I64_MAX : hi;
  let pos = start;
  while (pos < len) {
    if (!isDigit(s.charCodeAt(pos))) {
      if (s[pos] === '.') {
        const before = pos > start;
        pos++;
        const first = pos;
        while (pos < len && isDigit(s.charCodeAt(pos))) {
          // without an exponent DuckDB's first pass takes no fraction; its second pass (with) does
          const d = BigInt(s.charCodeAt(pos) - 48);
          if (st.decimal <= (I64_MAX - d) / 10n) {
            st.digits++;
            st.decimal = st.decimal * 10n + d;
          }
          pos++;
          if (pos !== len && s[pos] === '_') {
            pos++;
            if (pos === len || !isDigit(s.charCodeAt(pos))) return false;
          }
        }
        if (!exp && pos > first) return false;
        if (!(before || pos > first)) return false;
        if (pos >= len) break;
      }
      if (isSpace(s.charCodeAt(pos))) {
        while (++pos < len) if (!isSpace(s.charCodeAt(pos))) return false;
        break;
      }
      if (exp && (s[pos] === 'e' || s[pos] === 'E')) {
        if (pos === start) return false;
        pos++;
        if (pos >= len) return false;
        const e = parseExponent(s, pos);
        if (e === undefined) return false;
        return applyExponent(st, e, neg, lo, hi);
      }
      return false;
    }
    const d = BigInt(s.charCodeAt(pos++) - 48);
    if (neg) {
      if (st.result < (min + d) / 10n) return false;
      st.result = st.result * 10n - d;
    } else {
      if (st.result > (max - d) / 10n) return false;
      st.result = st.result * 10n + d;
    }
    if (pos !== len && s[pos] === '_') {
      pos++;
      if (pos === len || !isDigit(s.charCodeAt(pos))) return false;
    }
  }
  if (exp ? !finalize(st, neg, lo, hi) : st.result < lo || st.result > hi) return false;
  return pos > start;
}

function radixLoop(s: string, at: number, radix: 2 | 16, hi: bigint): bigint | undefined {
  const valid = (c: string | undefined) =>
    c !== undefined && (radix === 2 ? c === '0' || c === '1' : /^[0-9a-fA-F]$/.test(c));
  const start = at;
  let pos = start;
  let result = 0n;
  while (pos < s.length) {
    const c = s[pos]!;
    if (!valid(c)) return undefined;
    const d = BigInt(Number.parseInt(c, 16));
    pos++;
    if (pos !== s.length && s[pos] === '_') {
      pos++;
      if (!valid(s[pos])) return undefined;
    }
    if (result > (I64_MAX - d) / BigInt(radix)) return undefined;
    result = result * BigInt(radix) + d;
  }
  if (result > hi) return undefined;
  return pos > start ? result : undefined;
}

/** `s` as an integer in [lo, hi] the way DuckDB casts it, or undefined when DuckDB refuses it. */
export function parseDuckInt(s: string, lo: bigint, hi: bigint): bigint | undefined {
  let p = 0;
  while (p < s.length && isSpace(s.charCodeAt(p))) p++;
  if (p === s.length) return undefined;
  if (s[p] !== '-' && s.length - p > 1 && s[p] === '0') {
    const kind = s[p + 1];
    if (kind === 'x' || kind === 'X') return radixLoop(s, p + 2, 16, hi);
    if (kind === 'b' || kind === 'B') return radixLoop(s, p + 2, 2, hi);
  }
  const neg = s[p] === '-';
  // DuckDB tries plain integers first (fraction-free), then with a fraction and an exponent
  const plain: State = { result: 0n, decimal: 0n, digits: 0 };
  if (loop(s, p, neg, false, plain, lo, hi)) return plain.result;
  const full: State = { result: 0n, decimal: 0n, digits: 0 };
  return loop(s, p, neg, true, full, lo, hi) ? full.result : undefined;
}
