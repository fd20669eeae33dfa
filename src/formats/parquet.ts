/**
 * Parquet through embedded DuckDB: a streaming reader (`read_parquet`, chunk by chunk) and the
 * pieces of a bounded-memory writer (records are staged as JSON Lines while the exact type of
 * every field is tracked; DuckDB then converts the staged file with `read_json` and explicit
 * column types, streaming, under a memory limit).
 */
import os from 'node:os';
import {
  type DuckDBConnection,
  DuckDBInstance,
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
  type DuckDBValueConverter,
  quotedIdentifier,
  quotedString,
} from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordValue, SourceBatch } from '../sdk/types.ts';
import { sqlValueConverter } from '../sql/values.ts';
import { BatchBuilder, type DecodeOptions } from './batch.ts';

// ---------------------------------------------------------------- DuckDB

export interface DuckDB {
  instance: DuckDBInstance;
  connection: DuckDBConnection;
  close(): void;
}

/** An in-memory DuckDB with a memory limit and spilling to the OS temp directory. */
export async function openDuckDB(opts: { memoryLimit?: string; threads?: number } = {}): Promise<DuckDB> {
  const instance = await DuckDBInstance.create(':memory:', {
    memory_limit: opts.memoryLimit ?? '256MB',
    threads: String(opts.threads ?? Math.min(2, Math.max(1, os.availableParallelism()))),
    temp_directory: os.tmpdir(),
    preserve_insertion_order: 'true',
  });
  const connection = await instance.connect();
  let closed = false;
  return {
    instance,
    connection,
    close() {
      if (closed) return;
      closed = true;
      connection.closeSync();
      instance.closeSync();
    },
  };
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;

/**
 * DuckDB values to plain JS: 64/128-bit integers → number when safe, else a decimal string;
 * DECIMAL → number; DATE and TIMESTAMP → Date; TIME and INTERVAL → their text; the rest as the
 * DuckDB client converts them (lists → arrays, structs → objects).
 */
export const duckdbToJs: DuckDBValueConverter<unknown> = (
  value: DuckDBValue,
  type: DuckDBType,
  _converter: DuckDBValueConverter<unknown>,
): unknown => {
  if (value == null) return null;
  switch (type.typeId) {
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
    case DuckDBTypeId.BIGNUM: {
      const big = value as bigint;
      return big <= MAX_SAFE && big >= MIN_SAFE ? Number(big) : big.toString();
    }
    default:
      return sqlValueConverter(value, type, duckdbToJs);
  }
};

// ---------------------------------------------------------------- reading

/** The number of rows a Parquet file holds, from its footer. */
export async function parquetRowCount(connection: DuckDBConnection, file: string): Promise<number> {
  const reader = await connection.runAndReadAll(
    `SELECT coalesce(sum(num_rows), 0)::BIGINT AS n FROM parquet_file_metadata(${quotedString(file)})`,
  );
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

/**
 * Streams the rows of a Parquet file, one DuckDB chunk (2048 rows) at a time. Positions:
 * `{ partition, offset: the 0-based row index }`. `onRows` is told how many rows were read.
 */
export async function* readParquet(
  connection: DuckDBConnection,
  file: string,
  opts: DecodeOptions & { onRows?: (rows: number) => void },
): AsyncGenerator<SourceBatch> {
  const { partition, signal } = opts;
  // Columns come from the file only (as for CSV and JSON Lines), not from `key=value` folders in its path.
  const result = await connection.stream(
    `SELECT * FROM read_parquet(${quotedString(file)}, hive_partitioning = false)`,
  );
  const names = result.deduplicatedColumnNames();
  const width = names.length;
  // The file's own column types travel with its batches (a DATE stays a DATE in a Parquet sink).
  const types = result.columnTypes();
  const schema = Object.fromEntries(names.map((n, i) => [n, types[i]!.toString()]));
  const batches = new BatchBuilder(opts.batchSize);
  let row = 0;
  for await (const rows of result.yieldConvertedRows(duckdbToJs)) {
    if (signal?.aborted) return;
    for (const values of rows) {
      const value: RecordValue = {};
      for (let i = 0; i < width; i++) value[names[i]!] = values[i];
      batches.add({ value, meta: { position: { partition, offset: row++ } } });
    }
    opts.onRows?.(rows.length);
    if (batches.pending) for (const batch of batches.take()) yield { ...batch, schema };
  }
  if (signal?.aborted) return;
  for (const batch of batches.end()) yield { ...batch, schema };
}

// ---------------------------------------------------------------- writing

const K_NULL = 1;
const K_BOOL = 2;
const K_INT = 4;
const K_FLOAT = 8;
const K_BIGINT = 16;
const K_STRING = 32;
const K_DATE = 64;
const K_OBJECT = 128;
const K_ARRAY = 256;
const K_OTHER = 512;
/** A bigint beyond the 64-bit range. */
const K_HUGE = 1024;
/** A Date that is not at midnight UTC: it does not fit a declared DATE. */
const K_TIME_OF_DAY = 2048;
const NUMERIC = K_INT | K_FLOAT | K_BIGINT | K_HUGE;
const SCALAR = NUMERIC | K_BOOL | K_STRING | K_DATE;
/** Beyond this many distinct keys an object is stored as JSON rather than a STRUCT. */
const MAX_STRUCT_FIELDS = 500;
const MAX_STRUCT_DEPTH = 16;
/** A JS integer beyond ±2^63 does not fit BIGINT. */
const INT64_LIMIT = 2 ** 63;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

class TypeNode {
  kinds = 0;
  fields: Map<string, TypeNode> | undefined;
  elem: TypeNode | undefined;
}

function observe(node: TypeNode, v: unknown): void {
  switch (typeof v) {
    case 'string':
      node.kinds |= K_STRING;
      return;
    case 'number':
      node.kinds |= Number.isInteger(v) && Math.abs(v) < INT64_LIMIT ? K_INT : K_FLOAT;
      return;
    case 'boolean':
      node.kinds |= K_BOOL;
      return;
    case 'bigint':
      node.kinds |= v >= INT64_MIN && v <= INT64_MAX ? K_BIGINT : K_HUGE;
      return;
    case 'object': {
      if (v === null) {
        node.kinds |= K_NULL;
        return;
      }
      if (v instanceof Date) {
        node.kinds |= v.getTime() % 86_400_000 === 0 ? K_DATE : K_DATE | K_TIME_OF_DAY;
        return;
      }
      if (Array.isArray(v)) {
        node.kinds |= K_ARRAY;
        node.elem ??= new TypeNode();
        const elem = node.elem;
        for (const item of v) observe(elem, item);
        return;
      }
      if (ArrayBuffer.isView(v) || typeof (v as { toJSON?: unknown }).toJSON === 'function') {
        node.kinds |= K_OTHER;
        return;
      }
      node.kinds |= K_OBJECT;
      node.fields ??= new Map<string, TypeNode>();
      const fields = node.fields;
      const obj = v as Record<string, unknown>;
      for (const key in obj) {
        let child = fields.get(key);
        if (!child) {
          child = new TypeNode();
          fields.set(key, child);
        }
        observe(child, obj[key]);
      }
      return;
    }
    default:
      // undefined, functions, symbols: JSON leaves them out, so they read back as null.
      node.kinds |= K_NULL;
  }
}

function sqlType(node: TypeNode, depth: number): string {
  const k = node.kinds & ~(K_NULL | K_TIME_OF_DAY);
  if (k === 0) return 'VARCHAR';
  // Parquet has no 128-bit integer: bigints beyond 64 bits are kept exact as DECIMAL(38,0).
  if ((k & ~NUMERIC) === 0) return k & K_FLOAT ? 'DOUBLE' : k & K_HUGE ? 'DECIMAL(38,0)' : 'BIGINT';
  if (k === K_BOOL) return 'BOOLEAN';
  if (k === K_DATE) return 'TIMESTAMP';
  if ((k & ~SCALAR) === 0) return 'VARCHAR';
  if (
    k === K_OBJECT &&
    node.fields?.size &&
    node.fields.size <= MAX_STRUCT_FIELDS &&
    depth < MAX_STRUCT_DEPTH
  ) {
    const lower = new Set<string>();
    const parts: string[] = [];
    for (const [name, child] of node.fields) {
      // DuckDB names are case-insensitive: two keys differing only in case cannot be a STRUCT.
      if (lower.has(name.toLowerCase())) return 'JSON';
      lower.add(name.toLowerCase());
      parts.push(`${quotedIdentifier(name)} ${sqlType(child, depth + 1)}`);
    }
    return `STRUCT(${parts.join(', ')})`;
  }
  if (k === K_ARRAY && node.elem && node.elem.kinds & ~K_NULL && depth < MAX_STRUCT_DEPTH)
    return `${sqlType(node.elem, depth + 1)}[]`;
  return 'JSON';
}

const INTEGER_TYPES = /^(TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER)$/;
const NUMBER_TYPES = /^(FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\))$/;
const TEXT_TYPES = /^(VARCHAR|UUID|TIME|INTERVAL)$/;

/**
 * Whether the values seen for a column can all take its declared type without changing: numbers
 * for a numeric type (whole ones for an integer type), Dates at midnight for a DATE, Dates for a
 * timestamp, strings for VARCHAR, UUID, TIME or INTERVAL (DuckDB's text of them), lists for a
 * list and objects for a struct (DuckDB's cast checks inside them). All nulls fit anything.
 */
function fits(declared: string, node: TypeNode): boolean {
  const k = node.kinds & ~K_NULL;
  if (k === 0) return true;
  if (INTEGER_TYPES.test(declared)) return (k & ~(K_INT | K_BIGINT)) === 0;
  if (NUMBER_TYPES.test(declared)) return (k & ~(K_INT | K_FLOAT | K_BIGINT)) === 0;
  if (declared === 'DATE') return k === K_DATE;
  if (/^TIMESTAMP( WITH TIME ZONE)?$/.test(declared)) return (k & ~K_TIME_OF_DAY) === K_DATE;
  if (declared === 'BOOLEAN') return k === K_BOOL;
  if (TEXT_TYPES.test(declared)) return k === K_STRING;
  if (declared.endsWith('[]')) return k === K_ARRAY;
  if (declared.startsWith('STRUCT(')) return k === K_OBJECT && sqlType(node, 0).startsWith('STRUCT(');
  return false;
}

/** DECIMAL(38,0), the widest integer Parquet holds, takes up to 38 digits. */
const DECIMAL38_LIMIT = 10n ** 38n;
/** A JSON text that may hold an integer of more than 38 digits. */
const DIGITS_39 = /\d{39}/;

/** The dotted path of the first integer in `v` that DECIMAL(38,0) cannot hold, if any. */
function tooWideInteger(v: unknown, path: string): string | undefined {
  if (typeof v === 'bigint') return v >= DECIMAL38_LIMIT || v <= -DECIMAL38_LIMIT ? path : undefined;
  if (v === null || typeof v !== 'object' || v instanceof Date) return undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const found = tooWideInteger(v[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  for (const key in v) {
    const found = tooWideInteger((v as Record<string, unknown>)[key], path ? `${path}.${key}` : key);
    if (found) return found;
  }
  return undefined;
}

/**
 * Tracks the exact types of the fields of the records staged for one Parquet file, in the order
 * fields were first seen, and names the DuckDB type each column gets:
 * integers → BIGINT (DECIMAL(38,0) with bigints beyond 64 bits), any fraction → DOUBLE, booleans → BOOLEAN,
 * Dates → TIMESTAMP, strings and mixed scalars → VARCHAR, objects → STRUCT, arrays → LIST,
 * anything mixed with objects or arrays → JSON; a field that is always null → VARCHAR.
 */
export class TypeTracker {
  readonly #root = new Map<string, TypeNode>();
  /** Declared types by column; null once two batches declared different ones. */
  readonly #declared = new Map<string, string | null>();

  /** Records the declared types of a batch's fields (RecordSchema): see `casts`. */
  declare(schema: Readonly<Record<string, string>> | undefined): void {
    if (!schema) return;
    for (const name in schema) {
      const type = schema[name]!;
      const had = this.#declared.get(name);
      if (had === undefined) this.#declared.set(name, type);
      else if (had !== null && had !== type) this.#declared.set(name, null);
    }
  }

  /**
   * Throws SLUICE_SINK_REJECTED, naming the field, when the record holds an integer Parquet cannot
   * hold exactly (more than 38 digits); `json` is the record's JSON text, a cheap first check.
   */
  refuseUnwritable(value: RecordValue, json: string): void {
    if (!DIGITS_39.test(json)) return;
    const field = tooWideInteger(value, '');
    if (field)
      throw new SluiceError(
        'SLUICE_SINK_REJECTED',
        `field "${field}" holds an integer of more than 38 digits, which Parquet cannot hold exactly (its widest integer is DECIMAL(38,0))`,
        { details: { field } },
      );
  }

  observe(value: RecordValue): void {
    const root = this.#root;
    for (const key in value) {
      let node = root.get(key);
      if (!node) {
        node = new TypeNode();
        root.set(key, node);
      }
      observe(node, value[key]);
    }
  }

  get size(): number {
    return this.#root.size;
  }

  /** `[column, DuckDB type]` in first-seen order. */
  columns(): [string, string][] {
    return [...this.#root].map(([name, node]) => [name, sqlType(node, 0)]);
  }

  /**
   * The declared type of each column that had one (the same in every batch that declared it) and
   * whose values all fit it: the Parquet column gets it instead of the type of its values.
   */
  casts(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, node] of this.#root) {
      const declared = this.#declared.get(name);
      if (declared && declared !== sqlType(node, 0) && fits(declared, node)) out[name] = declared;
    }
    return out;
  }
}

export interface ParquetWriteOptions {
  compression: 'snappy' | 'zstd' | 'gzip' | 'uncompressed';
  rowGroupSize?: number | undefined;
}

/**
 * Converts a staged JSON Lines file to Parquet with DuckDB, with the given column types (in
 * order). Streams: memory stays within the DuckDB instance's limit whatever the file size.
 */
export async function stagedJsonlToParquet(
  connection: DuckDBConnection,
  staged: string,
  columns: [string, string][],
  out: string,
  opts: ParquetWriteOptions & { casts?: Record<string, string> },
): Promise<void> {
  const columnSpec = columns.map(([name, type]) => `${quotedString(name)}: ${quotedString(type)}`).join(', ');
  const options = [`FORMAT parquet`, `COMPRESSION ${opts.compression}`];
  if (opts.rowGroupSize) options.push(`ROW_GROUP_SIZE ${Math.floor(opts.rowGroupSize)}`);
  const copy = async (select: string) => {
    await connection.run(
      `COPY (SELECT ${select} FROM read_json(${quotedString(staged)}, format = 'newline_delimited', records = true, ` +
        // The staged file sits in its partition folder: its path must not add columns.
        'hive_partitioning = false, ' +
        `columns = {${columnSpec}})) TO ${quotedString(out)} (${options.join(', ')})`,
    );
  };
  const casts = opts.casts ?? {};
  if (!Object.keys(casts).length) return copy('*');
  // Declared types: a staged Date is a UTC instant, so TIMESTAMP WITH TIME ZONE reads it in UTC.
  await connection.run("SET TimeZone = 'UTC'");
  const select = columns
    .map(([name]) => {
      const id = quotedIdentifier(name);
      return casts[name] ? `CAST(${id} AS ${casts[name]}) AS ${id}` : id;
    })
    .join(', ');
  try {
    await copy(select);
  } catch {
    // A value that does not take its declared type after all: the columns keep their values' types.
    await copy('*');
  }
}
