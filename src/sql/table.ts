/** Loading records into DuckDB temp tables with DuckDB's appender (no SQL text per row). */
import {
  BIGINT,
  BLOB,
  BOOLEAN,
  blobValue,
  DOUBLE,
  type DuckDBAppender,
  type DuckDBConnection,
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

/** A column as the appender writes it: fast paths for flat types, DuckDB values for nested ones. */
interface Writer {
  name: string;
  shape: Shape;
  type: DuckDBType;
}

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
  try {
    appendRows(appender, columns, values, ids, 'BIGINT');
  } finally {
    appender.closeSync();
  }
}

/**
 * `appendRecords` on an appender kept open across calls (creating one is a round trip to
 * DuckDB's thread), flushed at the end; the row number column is a BIGINT or an INTEGER.
 */
export function appendRows(
  appender: DuckDBAppender,
  columns: readonly Column[],
  values: readonly Record<string, unknown>[],
  ids: readonly number[],
  idType: 'BIGINT' | 'INTEGER',
): void {
  const writers: Writer[] = columns.map((c) => ({ name: c.name, shape: c.shape, type: duckType(c.shape) }));
  try {
    for (let i = 0; i < values.length; i++) {
      const row = values[i]!;
      if (idType === 'INTEGER') appender.appendInteger(ids[i]!);
      else appender.appendBigInt(BigInt(ids[i]!));
      for (const w of writers) {
        const v = row[w.name];
        if (v === null || v === undefined) {
          appender.appendNull();
          continue;
        }
        switch (w.shape.k) {
          case 'BIGINT':
            appender.appendBigInt(typeof v === 'bigint' ? v : BigInt(v as number));
            break;
          case 'DOUBLE':
            appender.appendDouble(Number(v));
            break;
          case 'VARCHAR':
            appender.appendVarchar(String(v));
            break;
          case 'BOOLEAN':
            appender.appendBoolean(Boolean(v));
            break;
          case 'TIMESTAMP':
            appender.appendTimestamp(new DuckDBTimestampValue(BigInt((v as Date).getTime()) * 1000n));
            break;
          case 'NULL':
            appender.appendNull();
            break;
          default:
            appender.appendValue(duckValue(v, w.shape), w.type);
        }
      }
      appender.endRow();
    }
    appender.flushSync();
  } catch (err) {
    // rows appended but not flushed would go with the next flush
    appender.clear();
    throw new SluiceError(
      'SLUICE_INTERNAL',
      `loading records into DuckDB failed: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
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
