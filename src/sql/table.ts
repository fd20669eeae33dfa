/** Loading records into DuckDB temp tables with DuckDB's appender (no SQL text per row). */
import { BIGINT, type DuckDBConnection, DuckDBDataChunk } from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import { duckConverter, duckType, type Shape } from './shape.ts';

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
