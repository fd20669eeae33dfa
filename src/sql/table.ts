/** Loading records into DuckDB temp tables with DuckDB's appender (no SQL text per row). */
import {
  BIGINT,
  BLOB,
  BOOLEAN,
  blobValue,
  DOUBLE,
  type DuckDBConnection,
  DuckDBDataChunk,
  DuckDBTimestampValue,
  type DuckDBType,
  type DuckDBValue,
  HUGEINT,
  INTEGER,
  LIST,
  listValue,
  STRUCT,
  structValue,
  TIMESTAMP,
  VARCHAR,
} from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { Shape } from './shape.ts';

export interface Column {
  name: string;
  shape: Shape;
}

/** Rows per data chunk: DuckDB's vector size, the most a chunk holds. */
const CHUNK_ROWS = 2048;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Appends `values` to `table` (a temp table whose columns are a BIGINT row number then `columns`
 * in order): row `i` gets row number `ids[i]`. Values must fit their column's shape.
 */
export async function appendRecords(
  conn: DuckDBConnection,
  table: string,
  columns: readonly Column[],
  values: readonly Record<string, unknown>[],
  ids: readonly number[],
): Promise<void> {
  const appender = await conn.createAppender(table, 'main', 'temp');
  const convert = columns.map((c) => duckConverter(c.shape));
  const types = [BIGINT, ...columns.map((c) => duckType(c.shape))];
  try {
    // filled column by column: a vector write per value, one native call per chunk for numbers
    for (let at = 0; at < values.length; at += CHUNK_ROWS) {
      const n = Math.min(CHUNK_ROWS, values.length - at);
      const chunk = DuckDBDataChunk.create(types, n);
      const idVector = chunk.getColumnVector(0);
      for (let k = 0; k < n; k++) idVector.setItem(k, BigInt(ids[at + k]!));
      idVector.flush();
      columns.forEach(({ name }, c) => {
        const vector = chunk.getColumnVector(c + 1);
        for (let k = 0; k < n; k++) vector.setItem(k, convert[c]!(values[at + k]![name]));
        vector.flush();
      });
      appender.appendDataChunk(chunk);
    }
    appender.flushSync();
  } catch (err) {
    // rows appended but not flushed would go with the close's flush
    appender.clear();
    throw new SluiceError(
      'SLUICE_INTERNAL',
      `loading records into DuckDB failed: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  } finally {
    appender.closeSync();
  }
}

/** DuckDB's type for a shape (NULL inside a nested type is stored as INTEGER: its values are all NULL). */
export function duckType(s: Shape): DuckDBType {
  switch (s.k) {
    case 'NULL':
      return INTEGER;
    case 'BIGINT':
      return BIGINT;
    case 'HUGEINT':
      return HUGEINT;
    case 'DOUBLE':
      return DOUBLE;
    case 'VARCHAR':
      return VARCHAR;
    case 'BOOLEAN':
      return BOOLEAN;
    case 'TIMESTAMP':
      return TIMESTAMP;
    case 'BLOB':
      return BLOB;
    case 'LIST':
      return LIST(duckType(s.e));
    case 'STRUCT':
      return STRUCT(Object.fromEntries(s.f.map(([n, t]) => [n, duckType(t)])));
  }
}

/** A record value as a DuckDB value of shape `s` (which the value's own shape merges into). */
export function duckValue(v: unknown, s: Shape): DuckDBValue {
  if (v === null || v === undefined) return null;
  switch (s.k) {
    case 'NULL':
      return null;
    case 'BIGINT':
    case 'HUGEINT':
      return typeof v === 'bigint' ? v : BigInt(typeof v === 'boolean' ? Number(v) : (v as number));
    case 'DOUBLE':
      return Number(v);
    case 'VARCHAR':
      return String(v);
    case 'BOOLEAN':
      return Boolean(v);
    case 'TIMESTAMP':
      return new DuckDBTimestampValue(BigInt((v as Date).getTime()) * 1000n);
    case 'BLOB':
      return blobValue(v as Uint8Array);
    case 'LIST':
      return listValue((v as unknown[]).map((x) => duckValue(x, s.e)));
    case 'STRUCT': {
      const o = v as Record<string, unknown>;
      return structValue(Object.fromEntries(s.f.map(([n, t]) => [n, duckValue(o[n], t)])));
    }
  }
}

/**
 * `duckValue` for one column of shape `s`, with the flat types' cases picked once: what a scan or
 * an appender calls per value.
 */
export function duckConverter(s: Shape): (v: unknown) => DuckDBValue {
  switch (s.k) {
    case 'NULL':
      return () => null;
    case 'DOUBLE':
      return (v) => (v == null ? null : Number(v));
    case 'VARCHAR':
      return (v) => (v == null ? null : String(v));
    default:
      return (v) => duckValue(v, s);
  }
}
