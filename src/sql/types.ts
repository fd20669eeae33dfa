/**
 * SQL types as the per-record compiler sees them. A record's values get DuckDB types from their
 * JavaScript values (an integral number is a BIGINT, any other number a DOUBLE, a string a
 * VARCHAR, a Date a TIMESTAMP, an array a LIST, a plain object a STRUCT); every compiled
 * function is specialised for the types of the values it reads, so inside it types are static.
 */

export type IntId = 'TINYINT' | 'SMALLINT' | 'INTEGER' | 'BIGINT';

export type SqlType =
  | { id: 'NULL' }
  | { id: 'BOOLEAN' }
  | { id: IntId }
  | { id: 'DOUBLE' }
  | { id: 'DECIMAL'; width: number; scale: number }
  | { id: 'VARCHAR' }
  | { id: 'DATE' }
  | { id: 'TIMESTAMP' }
  | { id: 'TIMESTAMPTZ' }
  /** Microseconds since midnight. */
  | { id: 'TIME' }
  /** DuckDB's months, days and microseconds (runtime-interval.ts). */
  | { id: 'INTERVAL' }
  /** `child` is ANY for a list that came from a record. */
  | { id: 'LIST'; child: SqlType }
  /** `fields` is undefined for a struct that came from a record (its fields are only known per value). */
  | { id: 'STRUCT'; fields?: [string, SqlType][] }
  /** A value whose type is only known per record (an element of a record's list): classified at run time. */
  | { id: 'ANY' }
  /** A JavaScript value with no SQL type (a bigint out of range, a Buffer): it can only be passed through. */
  | { id: 'OTHER' };

export const T = {
  NULL: { id: 'NULL' } as SqlType,
  BOOLEAN: { id: 'BOOLEAN' } as SqlType,
  TINYINT: { id: 'TINYINT' } as SqlType,
  SMALLINT: { id: 'SMALLINT' } as SqlType,
  INTEGER: { id: 'INTEGER' } as SqlType,
  BIGINT: { id: 'BIGINT' } as SqlType,
  DOUBLE: { id: 'DOUBLE' } as SqlType,
  VARCHAR: { id: 'VARCHAR' } as SqlType,
  DATE: { id: 'DATE' } as SqlType,
  TIMESTAMP: { id: 'TIMESTAMP' } as SqlType,
  TIMESTAMPTZ: { id: 'TIMESTAMPTZ' } as SqlType,
  TIME: { id: 'TIME' } as SqlType,
  INTERVAL: { id: 'INTERVAL' } as SqlType,
  ANY: { id: 'ANY' } as SqlType,
  OTHER: { id: 'OTHER' } as SqlType,
  LIST_ANY: { id: 'LIST', child: { id: 'ANY' } } as SqlType,
  STRUCT_ANY: { id: 'STRUCT' } as SqlType,
} as const;

export function decimal(width: number, scale: number): SqlType {
  return { id: 'DECIMAL', width, scale };
}

export const INT_BITS: Record<IntId, number> = { TINYINT: 8, SMALLINT: 16, INTEGER: 32, BIGINT: 64 };
/** Decimal digits an integer type needs, as DuckDB counts them when mixing with DECIMAL. */
export const INT_DIGITS: Record<IntId, number> = { TINYINT: 3, SMALLINT: 5, INTEGER: 10, BIGINT: 19 };
export const INT_RANGE: Record<IntId, [number, number]> = {
  TINYINT: [-128, 127],
  SMALLINT: [-32768, 32767],
  INTEGER: [-2147483648, 2147483647],
  BIGINT: [-(2 ** 63), 2 ** 63], // beyond JS's exact range: BIGINT results are checked against ±2^53
};
/** DuckDB's physical names, used in its overflow messages. */
export const INT_PHYS: Record<IntId, string> = {
  TINYINT: 'INT8',
  SMALLINT: 'INT16',
  INTEGER: 'INT32',
  BIGINT: 'INT64',
};

export function isInt(t: SqlType): t is { id: IntId } {
  return t.id === 'TINYINT' || t.id === 'SMALLINT' || t.id === 'INTEGER' || t.id === 'BIGINT';
}

export function isNumeric(t: SqlType): boolean {
  return isInt(t) || t.id === 'DOUBLE' || t.id === 'DECIMAL';
}

export function isTemporal(t: SqlType): boolean {
  return t.id === 'DATE' || t.id === 'TIMESTAMP' || t.id === 'TIMESTAMPTZ';
}

export function typeName(t: SqlType): string {
  switch (t.id) {
    case 'DECIMAL':
      return `DECIMAL(${t.width},${t.scale})`;
    case 'LIST':
      return t.child.id === 'ANY' ? 'LIST' : `${typeName(t.child)}[]`;
    case 'STRUCT':
      return t.fields ? `STRUCT(${t.fields.map(([k, v]) => `${k} ${typeName(v)}`).join(', ')})` : 'STRUCT';
    case 'TIMESTAMPTZ':
      return 'TIMESTAMP WITH TIME ZONE';
    case 'OTHER':
      return 'an unsupported JavaScript value';
    default:
      return t.id;
  }
}

export function sameType(a: SqlType, b: SqlType): boolean {
  if (a.id !== b.id) return false;
  if (a.id === 'DECIMAL' && b.id === 'DECIMAL') return a.width === b.width && a.scale === b.scale;
  if (a.id === 'LIST' && b.id === 'LIST') return sameType(a.child, b.child);
  if (a.id === 'STRUCT' && b.id === 'STRUCT') {
    if (!a.fields || !b.fields) return !a.fields && !b.fields;
    return (
      a.fields.length === b.fields.length &&
      a.fields.every(([k, v], i) => b.fields![i]![0] === k && sameType(v, b.fields![i]![1]))
    );
  }
  return true;
}

/** An integer type as a DECIMAL, for mixing with decimals. */
export function asDecimal(t: SqlType): { width: number; scale: number } | undefined {
  if (t.id === 'DECIMAL') return { width: t.width, scale: t.scale };
  if (isInt(t)) return { width: INT_DIGITS[t.id], scale: 0 };
  return undefined;
}

/**
 * The type two numeric values are brought to before an operation, following DuckDB's
 * implicit-cast rules: the wider integer, a decimal wide enough for both, or DOUBLE.
 */
export function maxNumeric(a: SqlType, b: SqlType): SqlType {
  if (a.id === 'NULL') return b;
  if (b.id === 'NULL') return a;
  if (a.id === 'DOUBLE' || b.id === 'DOUBLE') return T.DOUBLE;
  if (isInt(a) && isInt(b)) return INT_BITS[a.id] >= INT_BITS[b.id] ? a : b;
  const da = asDecimal(a);
  const db = asDecimal(b);
  if (!da || !db) return T.DOUBLE;
  const scale = Math.max(da.scale, db.scale);
  const width = Math.min(38, Math.max(da.width - da.scale, db.width - db.scale) + scale);
  return decimal(width, scale);
}

/** Runtime value classes of record values (see `classify` in runtime.ts). */
export const CLASS_TYPES: SqlType[] = [
  T.NULL, // 0 null/undefined
  T.BIGINT, // 1 safe integer number
  T.DOUBLE, // 2 other number
  T.VARCHAR, // 3 string
  T.BOOLEAN, // 4 boolean
  T.TIMESTAMP, // 5 valid Date
  T.LIST_ANY, // 6 array
  T.STRUCT_ANY, // 7 plain object
  T.OTHER, // 8 anything else
  T.BIGINT, // 9 safe bigint
];

/** Class of a JS bigint that fits a BIGINT: converted to a number when read. */
export const CLASS_BIGINT = 9;
