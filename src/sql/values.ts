/** DuckDB result values as record values: what compiled SQL gives for the same SQL types. */
import {
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
  type DuckDBValueConverter,
  type JS,
  JSDuckDBValueConverter,
} from '@duckdb/node-api';

/**
 * DuckDB's JS conversion, except TIME and INTERVAL, which become DuckDB's text of them
 * (`12:34:56`, `3 days`), as the Parquet reader gives them, so a sink can cast them back.
 */
export const sqlValueConverter: DuckDBValueConverter<unknown> = (
  value: DuckDBValue,
  type: DuckDBType,
  // the converter of nested values: this one, or one that calls it (the Parquet reader's)
  nested: DuckDBValueConverter<unknown> = sqlValueConverter,
): unknown => {
  if (value == null) return null;
  switch (type.typeId) {
    case DuckDBTypeId.TIME:
    case DuckDBTypeId.TIME_NS:
    case DuckDBTypeId.TIME_TZ:
    case DuckDBTypeId.INTERVAL:
      return String(value);
    default:
      return JSDuckDBValueConverter(value, type, nested as unknown as DuckDBValueConverter<JS>);
  }
};

/** A BIGINT/HUGEINT result beyond ±2^53, which a JavaScript number cannot hold exactly. */
export class UnsafeIntegerError extends Error {}

/**
 * bigint → number; nested lists and structs likewise. An integer beyond ±2^53 stays an exact
 * bigint with `exactBigints`, else is refused (UnsafeIntegerError): compiled SQL computes
 * BIGINT in JavaScript numbers and fails such a result, and the DuckDB path must agree with it
 * for every record the compiled path could have taken.
 */
export function fromDuckDB(v: unknown, exactBigints = false): unknown {
  if (typeof v === 'bigint') {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) {
      if (exactBigints) return v;
      throw new UnsafeIntegerError(`the integer ${v} is beyond ±2^53, the exact range of JavaScript numbers`);
    }
    return n;
  }
  if (v === null || typeof v !== 'object' || v instanceof Date || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map((x) => fromDuckDB(x, exactBigints));
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = fromDuckDB((v as Record<string, unknown>)[k], exactBigints);
  return out;
}

/**
 * Whether a record holds an integer beyond ±2^53 (a bigint, as JSON Lines gives it): compiled SQL
 * cannot take such a record, so its DuckDB results may hold exact bigints too.
 */
export function holdsUnsafeInteger(v: unknown): boolean {
  if (typeof v === 'bigint') return !Number.isSafeInteger(Number(v));
  if (v === null || typeof v !== 'object' || v instanceof Date || v instanceof Uint8Array) return false;
  if (Array.isArray(v)) return v.some(holdsUnsafeInteger);
  for (const k in v) if (holdsUnsafeInteger((v as Record<string, unknown>)[k])) return true;
  return false;
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
