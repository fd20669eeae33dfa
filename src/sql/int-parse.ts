/**
 * VARCHAR → integer as DuckDB's cast gives it, for the strings that are not plain digits (the
 * common case takes a fast path in runtime.ts): a description of the forms DuckDB accepts and what
 * they mean, not a port of DuckDB's parser; text-casts.test.ts checks each form against DuckDB.
 *
 * | form (after leading white space)                  | value                                       |
 * | ------------------------------------------------- | ------------------------------------------- |
 * | `0x` hex digits, `0b` binary digits               | unsigned, at most 2^63-1; no sign, nothing after |
 * | sign, then only white space (`'- '`)              | 0 (so is an exponent of just a sign: `1e- `) |
 * | [sign] digits [`.`]                               | the integer, within the target's range      |
 * | [sign] digits `.` digits, `.` digits              | rounded half away from zero                 |
 * | any of those, then `e`/`E` [sign] digits [`.`]    | times 10^exponent, then rounded likewise    |
 *
 * An unsigned target refuses a minus sign before white space, a point or an exponent (`'- '`,
 * `'-0.4'`, `'-0e0'`; `'-0'` is 0), and a UBIGINT reads hex, binary, fractions and exponents in
 * unsigned 64-bit arithmetic (up to 2^64-1) where every other target uses signed.
 *
 * Digits may have single `_` between them; trailing white space is allowed except after a hex or
 * binary number. With a fraction or an exponent DuckDB computes in 64-bit integers: the integer part
 * (and, for a positive exponent, it scaled, and the fraction digits it moves before the point) must
 * fit a BIGINT (a UBIGINT for a UBIGINT target); a fraction digit that would overflow its 64-bit
 * accumulator is skipped (a later, smaller one may still count); the exponent fits a SMALLINT.
 */

const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;
/** The largest magnitude a BIGINT holds for each sign. */
const I64_MAGNITUDE = { pos: I64_MAX, neg: 2n ** 63n };

const SPACE = '[ \\t\\n\\v\\f\\r]';
const DIGITS = '\\d(?:_?\\d)*';
const RADIX = new RegExp(`^${SPACE}*0(?:[xX]([0-9a-fA-F](?:_?[0-9a-fA-F])*)|[bB]([01](?:_?[01])*))$`);
const RADIX_PREFIX = new RegExp(`^${SPACE}*0[xXbB]`);
const SIGN_ONLY = new RegExp(`^${SPACE}*[+-]${SPACE}+$`);
const DECIMAL = new RegExp(
  `^${SPACE}*([+-]?)(${DIGITS})?(?:\\.(${DIGITS})?)?(?:([eE])(?:([+-]?${DIGITS})\\.?|[+-](?=${SPACE})))?${SPACE}*$`,
);

/** `s` as an integer in [lo, hi] the way DuckDB casts it, or undefined when DuckDB refuses it. */
export function parseDuckInt(s: string, lo: bigint, hi: bigint): bigint | undefined {
  const unsigned = lo === 0n;
  // DuckDB reads a UBIGINT in unsigned 64-bit arithmetic, every other integer in signed
  const ubigint = hi > I64_MAX;
  if (RADIX_PREFIX.test(s)) {
    const m = RADIX.exec(s);
    if (!m) return undefined;
    const v =
      m[1] !== undefined ? BigInt(`0x${m[1].replace(/_/g, '')}`) : BigInt(`0b${m[2]!.replace(/_/g, '')}`);
    return v <= (ubigint ? U64_MAX : I64_MAX) && v <= hi ? v : undefined;
  }
  // an unsigned target takes no minus sign before white space, nor before a fraction or exponent
  if (SIGN_ONLY.test(s))
    return unsigned && s.trimStart()[0] === '-' ? undefined : 0n >= lo && 0n <= hi ? 0n : undefined;
  const m = DECIMAL.exec(s);
  if (!m) return undefined;
  const [, sign, intText, fracText, expMark, expText] = m;
  if (intText === undefined && fracText === undefined) return undefined;
  const neg = sign === '-';
  const int = BigInt((intText ?? '0').replace(/_/g, ''));
  const inRange = (v: bigint) => (v >= lo && v <= hi ? v : undefined);
  if (unsigned && neg && (expMark !== undefined || s.includes('.'))) return undefined;
  if (fracText === undefined && expMark === undefined) return inRange(neg ? -int : int);
  // with a fraction or an exponent, DuckDB's arithmetic is in 64-bit integers (unsigned ones for an unsigned target)
  const limit = ubigint ? U64_MAX : neg ? I64_MAGNITUDE.neg : I64_MAGNITUDE.pos;
  if (int > limit) return undefined;
  const exponent = expText === undefined ? 0 : Number(expText.replace(/_/g, ''));
  if (exponent < -32768 || exponent > 32767) return undefined;
  const frac = keptFractionDigits(fracText?.replace(/_/g, '') ?? '');
  let magnitude: bigint;
  let roundUp: boolean;
  if (exponent < 0) {
    // the point moves left into the integer part: the fraction no longer decides the rounding
    const scale = 10n ** BigInt(-exponent);
    magnitude = int / scale;
    roundUp = int >= scale / 10n && (int % scale) / (scale / 10n) >= 5n;
  } else {
    const scaled = int * 10n ** BigInt(exponent);
    if (scaled > limit) return undefined;
    // the fraction digits the exponent moves before the point, and those left after it
    const moved = frac.slice(0, exponent).padEnd(exponent, '0');
    const rest = frac.slice(exponent);
    if (
      /[1-9]/.test(frac) &&
      exponent > frac.length &&
      BigInt(frac) * 10n ** BigInt(exponent - frac.length) > I64_MAX
    )
      return undefined;
    magnitude = scaled + (frac && rest.length <= 19 ? BigInt(moved || '0') : 0n);
    if (magnitude > limit) return undefined;
    roundUp = rest.length <= 19 && rest.charCodeAt(0) >= 53; // '5'
  }
  if (roundUp) magnitude += 1n;
  return inRange(neg ? -magnitude : magnitude);
}

/** The fraction's digits DuckDB keeps: each one that still fits its 64-bit accumulator. */
function keptFractionDigits(digits: string): string {
  let kept = '';
  let value = 0n;
  for (const c of digits) {
    const next = value * 10n + BigInt(c.charCodeAt(0) - 48);
    if (next > I64_MAX) continue;
    value = next;
    kept += c;
  }
  return kept;
}
