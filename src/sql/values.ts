/** DuckDB result values as record values: what compiled SQL gives for the same SQL types. */

/** A BIGINT/HUGEINT result beyond ±2^53, which a JavaScript number cannot hold exactly. */
export class UnsafeIntegerError extends Error {}

/** bigint → number (refusing what would lose digits); nested lists and structs likewise. */
export function fromDuckDB(v: unknown): unknown {
  if (typeof v === 'bigint') {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) {
      throw new UnsafeIntegerError(`the integer ${v} is beyond ±2^53, the exact range of JavaScript numbers`);
    }
    return n;
  }
  if (v === null || typeof v !== 'object' || v instanceof Date || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(fromDuckDB);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = fromDuckDB((v as Record<string, unknown>)[k]);
  return out;
}

/**
 * A result row as a record. Two output columns with one name (`SELECT *, upper(a) AS a`, or both
 * sides of a join having `id`) are one field: the later value, at the earlier position.
 */
export function rowToRecord(
  names: readonly string[],
  row: readonly unknown[],
  skip = -1,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) {
    if (i === skip) continue;
    out[names[i]!] = fromDuckDB(row[i]);
  }
  return out;
}
