/**
 * What the PostgreSQL source and sink share: the connection field, identifier quoting, faithful
 * type parsers, and how a driver error becomes a SluiceError (retriable when the server or the
 * network may recover).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { type ErrorCode, SluiceError } from '../../sdk/errors.ts';
import type { Logger } from '../../sdk/types.ts';

export {
  COLUMN_NAME,
  columnName,
  connectionFields,
  ident,
  qualified,
  splitTable,
  TABLE_NAME,
} from './names.ts';

// ---------------------------------------------------------------- types

/** Type OIDs (pg_type) the parsers below change. */
const OID = {
  int8: 20,
  int8Array: 1016,
  numeric: 1700,
  numericArray: 1231,
  timestamp: 1114,
  timestampArray: 1115,
  timestamptz: 1184,
  timestamptzArray: 1185,
  date: 1082,
  dateArray: 1182,
  bytea: 17,
  byteaArray: 1001,
} as const;

/** int8: a number while it is a safe integer, else its exact decimal text. */
function parseInt8(text: string): number | string {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}

/** `2024-05-01 12:00:00.123456+00` (session in UTC) → `2024-05-01T12:00:00.123456Z`; microseconds kept. */
function parseTimestamptz(text: string): string {
  if (text === 'infinity' || text === '-infinity') return text;
  return text.replace(' ', 'T').replace(/\+00(:00)?$/, 'Z');
}

function parseTimestamp(text: string): string {
  if (text === 'infinity' || text === '-infinity') return text;
  return text.replace(' ', 'T');
}

/** `\x0102` → base64. */
function parseBytea(text: string): string {
  return text.startsWith('\\x')
    ? Buffer.from(text.slice(2), 'hex').toString('base64')
    : Buffer.from(text, 'binary').toString('base64');
}

const identity = (s: string) => s;

/** pg's own array-literal parser (postgres-array, through pg-types), with our element parser. */
const arrays = (
  pg.types as unknown as {
    arrayParser: { create(text: string, f: (s: string) => unknown): { parse(): unknown[] } };
  }
).arrayParser;
const parseArray = (text: string, f: (s: string) => unknown) => arrays.create(text, f).parse();
const parsers = new Map<number, (text: string) => unknown>([
  [OID.int8, parseInt8],
  [OID.int8Array, (t) => parseArray(t, parseInt8)],
  [OID.numeric, identity],
  [OID.numericArray, (t) => parseArray(t, identity)],
  [OID.timestamptz, parseTimestamptz],
  [OID.timestamptzArray, (t) => parseArray(t, parseTimestamptz)],
  [OID.timestamp, parseTimestamp],
  [OID.timestampArray, (t) => parseArray(t, parseTimestamp)],
  [OID.date, identity],
  [OID.dateArray, (t) => parseArray(t, identity)],
  [OID.bytea, parseBytea],
  [OID.byteaArray, (t) => parseArray(t, parseBytea)],
]);

/**
 * Per-client type parsers: numeric stays exact text, int8 a number when safe, timestamps ISO text
 * with microseconds, bytea base64; json/jsonb, arrays, uuid and the rest keep pg's defaults.
 */
export const faithfulTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    return parsers.get(oid) ?? (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format);
  },
} as pg.CustomTypesConfig;

// ---------------------------------------------------------------- errors

interface PgError extends Error {
  code?: string;
}

/** Connection trouble (refused, reset, the server shutting down) can pass; a bad query will not. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as PgError | undefined)?.code;
  if (typeof code !== 'string') {
    const message = err instanceof Error ? err.message : '';
    return /Connection terminated|connection.*(closed|ended)|Client has encountered a connection error/i.test(
      message,
    );
  }
  // errno codes (ECONNREFUSED, ECONNRESET, ...); SQLSTATE class 08 (connection), 57P01-03 (shutdown).
  return /^E[A-Z]+$/.test(code) || code.startsWith('08') || /^57P0[123]$/.test(code);
}

/** SQLSTATE class 22 (data exception) or 23 (integrity constraint): the fault of one row. */
export function isDataError(err: unknown): boolean {
  const code = (err as PgError | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

/** A driver error as a SluiceError; retriable only for connection trouble unless `retriable` says. */
export function pgError(
  err: unknown,
  code: Extract<ErrorCode, 'SLUICE_SOURCE_IO' | 'SLUICE_SINK_IO' | 'SLUICE_SINK_ROLLED_BACK'>,
  what: string,
  details: Record<string, unknown> = {},
  retriable = isConnectionError(err),
): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as PgError;
  const message = err instanceof Error ? err.message : String(err);
  return new SluiceError(code, `${what}: ${message}`, {
    cause: err,
    retriable,
    details: { ...details, ...(e?.code ? { sqlstate: e.code } : {}) },
  });
}

/** Where a URL points, without its password, for log lines and messages. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'postgres';
  }
}

export const CONNECT_ATTEMPTS = 4;

/**
 * A connected client in UTC (timestamps then come back as `+00`), after at most CONNECT_ATTEMPTS
 * tries with backoff on connection errors; each failed try is logged.
 */
export async function connect(
  url: string,
  logger: Logger,
  code: Extract<ErrorCode, 'SLUICE_SOURCE_IO' | 'SLUICE_SINK_IO' | 'SLUICE_SINK_ROLLED_BACK'>,
  signal?: AbortSignal,
): Promise<pg.Client> {
  for (let attempt = 1; ; attempt++) {
    const client = new pg.Client({ connectionString: url, types: faithfulTypes });
    // An error on an idle client (the server went away) must not crash the process: the next query fails.
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query(`SET TIME ZONE 'UTC'`);
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      const error = pgError(err, code, `cannot connect to PostgreSQL at ${safeUrl(url)}`);
      if (!error.retriable || attempt >= CONNECT_ATTEMPTS || signal?.aborted) throw error;
      const wait = 200 * 2 ** (attempt - 1);
      logger.warn(
        `postgres: ${error.message}; retrying in ${wait} ms (attempt ${attempt + 1} of ${CONNECT_ATTEMPTS})`,
      );
      await sleep(wait);
    }
  }
}
