/**
 * Testing only: when a Sluice result value is DuckDB's. One rule for the differential tests
 * (oracle.ts) and the DuckDB conformance suite (conformance/runner.ts; its README states the rule).
 * Not on any run-time path.
 */

/** Functions whose results are not exact in the last bits (C library vs JavaScript's Math). */
const TRANSCENDENTAL =
  /\b(sin|cos|tan|asin|acos|atan|atan2|cot|sinh|cosh|tanh|asinh|acosh|atanh|exp|ln|log|log2|log10|pow|power|sqrt|cbrt|gamma|lgamma|degrees|radians|erf|erfc)\s*\(|\*\*|\^/i;

/** Whether `sql` calls a function whose double result may differ from DuckDB's in the last bits. */
export function callsTranscendental(sql: string): boolean {
  return TRANSCENDENTAL.test(sql);
}

/**
 * Equality of one output value: numbers equal as doubles (with `tolerant`, within a relative 1e-15:
 * see callsTranscendental); NaN equals NaN; zero's sign must match (DuckDB prints a DOUBLE -0 as
 * `-0.0`); a bigint equals a number or bigint of the same exact value; Dates by epoch milliseconds;
 * bytes by content; lists and structs deeply, struct keys in order; null equals undefined.
 */
export function sameValue(a: unknown, b: unknown, tolerant = false): boolean {
  if (a === null || a === undefined || b === null || b === undefined)
    return (a === null || a === undefined) && (b === null || b === undefined);
  if (typeof a === 'number' && typeof b === 'number') {
    if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
    if (a === 0 && b === 0) return Object.is(a, b);
    if (a === b) return true;
    return tolerant && Math.abs(a - b) <= 1e-15 * Math.max(Math.abs(a), Math.abs(b));
  }
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    const x = exactInteger(a);
    return x !== undefined && x === exactInteger(b);
  }
  if (a instanceof Date || b instanceof Date)
    return a instanceof Date && b instanceof Date && Object.is(a.getTime(), b.getTime());
  if (a instanceof Uint8Array || b instanceof Uint8Array)
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0;
  if (Array.isArray(a) || Array.isArray(b))
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((x, i) => sameValue(x, b[i], tolerant))
    );
  if (typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return (
      ka.length === kb.length &&
      ka.every(
        (k, i) =>
          k === kb[i] &&
          sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], tolerant),
      )
    );
  }
  return a === b;
}

function exactInteger(x: unknown): bigint | undefined {
  if (typeof x === 'bigint') return x;
  return typeof x === 'number' && Number.isInteger(x) ? BigInt(x) : undefined;
}
