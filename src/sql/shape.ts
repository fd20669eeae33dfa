/**
 * SQL types of record values for the DuckDB paths, exactly as the compiler and the oracle type
 * them (integral number → BIGINT, other number → DOUBLE, Date → TIMESTAMP, array → LIST, object →
 * STRUCT). Pure: the compiler imports it, so DuckDB loads only where a path runs on it (the
 * conversion to appender values is in table.ts).
 */
export type Shape =
  | { k: 'NULL' | 'BIGINT' | 'HUGEINT' | 'DOUBLE' | 'VARCHAR' | 'BOOLEAN' | 'TIMESTAMP' | 'BLOB' }
  | { k: 'LIST'; e: Shape }
  | { k: 'STRUCT'; f: [string, Shape][] };

const NULL_S: Shape = { k: 'NULL' };
const PRIM: Record<string, Shape> = {
  BIGINT: { k: 'BIGINT' },
  HUGEINT: { k: 'HUGEINT' },
  DOUBLE: { k: 'DOUBLE' },
  VARCHAR: { k: 'VARCHAR' },
  BOOLEAN: { k: 'BOOLEAN' },
  TIMESTAMP: { k: 'TIMESTAMP' },
  BLOB: { k: 'BLOB' },
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT128_MIN = -(2n ** 127n);
const INT128_MAX = 2n ** 127n - 1n;

/** A value DuckDB cannot hold in a typed column (an empty object, a list mixing strings and numbers). */
export class ShapeError extends Error {}

/**
 * How two types combine. `exact`: per-record typing, where only NULL yields (a group of records
 * shares one table only when each value keeps its own type). `list`: DuckDB's list literal rules
 * (numbers widen, BOOLEAN joins numbers, structs take the union of their keys). `widen`: one
 * column for a whole input (numbers widen, structs take the union of their keys).
 */
export type MergeMode = 'exact' | 'list' | 'widen';

const NUM_RANK: Record<string, number> = { BOOLEAN: 0, BIGINT: 1, HUGEINT: 2, DOUBLE: 3 };

export function mergeShapes(a: Shape, b: Shape, mode: MergeMode): Shape | undefined {
  if (a.k === 'NULL') return b;
  if (b.k === 'NULL') return a;
  if (a.k === 'LIST' && b.k === 'LIST') {
    const e = mergeShapes(a.e, b.e, mode);
    return e && (e === a.e ? a : { k: 'LIST', e });
  }
  if (a.k === 'STRUCT' && b.k === 'STRUCT') {
    if (mode === 'exact' && (a.f.length !== b.f.length || a.f.some(([n], i) => b.f[i]![0] !== n)))
      return undefined;
    const fields = new Map(a.f);
    for (const [n, t] of b.f) {
      const cur = fields.get(n);
      const m = cur ? mergeShapes(cur, t, mode) : t;
      if (!m) return undefined;
      fields.set(n, m);
    }
    return { k: 'STRUCT', f: [...fields] };
  }
  if (a.k === b.k) return a;
  if (mode === 'exact') return undefined;
  const ra = NUM_RANK[a.k];
  const rb = NUM_RANK[b.k];
  if (ra === undefined || rb === undefined) return undefined;
  // a BOOLEAN joins numbers in a list literal only; a column of booleans and numbers is a conflict
  if (mode === 'widen' && (ra === 0 || rb === 0)) return undefined;
  return ra >= rb ? a : b;
}

/** The SQL type of one value. Throws ShapeError for a value DuckDB cannot type. */
export function shapeOf(v: unknown): Shape {
  if (v === null || v === undefined) return NULL_S;
  switch (typeof v) {
    case 'number':
      return Number.isSafeInteger(v) ? PRIM.BIGINT! : PRIM.DOUBLE!;
    case 'bigint':
      if (v >= INT64_MIN && v <= INT64_MAX) return PRIM.BIGINT!;
      if (v >= INT128_MIN && v <= INT128_MAX) return PRIM.HUGEINT!;
      throw new ShapeError(`the integer ${v} does not fit a HUGEINT (128 bits)`);
    case 'string':
      return PRIM.VARCHAR!;
    case 'boolean':
      return PRIM.BOOLEAN!;
    case 'object': {
      if (v instanceof Date) {
        if (Number.isNaN(v.getTime())) throw new ShapeError('an invalid Date has no TIMESTAMP value');
        return PRIM.TIMESTAMP!;
      }
      // a Buffer (what DuckDB's and the Parquet reader's BLOBs become) is a BLOB, as compiled SQL types it
      if (v instanceof Uint8Array) return PRIM.BLOB!;
      if (Array.isArray(v)) {
        let e: Shape = NULL_S;
        for (const x of v) {
          const m = mergeShapes(e, shapeOf(x), 'list');
          if (!m) throw new ShapeError(`a list mixing ${showShape(e)} and ${showShape(shapeOf(x))}`);
          e = m;
        }
        return { k: 'LIST', e };
      }
      const entries = Object.entries(v as object);
      if (!entries.length) throw new ShapeError('an empty object has no DuckDB STRUCT type');
      return { k: 'STRUCT', f: entries.map(([n, x]) => [n, shapeOf(x)]) };
    }
    default:
      throw new ShapeError(`a ${typeof v} has no SQL type`);
  }
}

function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** DuckDB's text for a shape (NULL inside a nested type is stored as INTEGER: its values are all NULL). */
export function shapeSql(s: Shape): string {
  switch (s.k) {
    case 'NULL':
      return 'INTEGER';
    case 'LIST':
      return `${shapeSql(s.e)}[]`;
    case 'STRUCT':
      return `STRUCT(${s.f.map(([n, t]) => `${quote(n)} ${shapeSql(t)}`).join(', ')})`;
    default:
      return s.k;
  }
}

/** A short name for messages: BIGINT, VARCHAR[], STRUCT(a, b). */
export function showShape(s: Shape): string {
  if (s.k === 'LIST') return `${showShape(s.e)}[]`;
  if (s.k === 'STRUCT') return `STRUCT(${s.f.map(([n]) => n).join(', ')})`;
  return s.k;
}

/** A key identifying a shape exactly. */
export function shapeKey(s: Shape): string {
  if (s.k === 'LIST') return `${shapeKey(s.e)}[]`;
  if (s.k === 'STRUCT') return `{${s.f.map(([n, t]) => `${JSON.stringify(n)}:${shapeKey(t)}`).join(',')}}`;
  return s.k;
}
