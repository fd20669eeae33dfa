/**
 * DuckDB as the oracle for per-record SQL: runs a `SELECT ... FROM input` against a one-row
 * `input` built from a record (types as the compiler gives them: integral numbers BIGINT, other
 * numbers DOUBLE, strings VARCHAR, Dates TIMESTAMP, arrays LIST, objects STRUCT). Used by the
 * differential tests; not on the hot path.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';
import type { RecordValue, SluiceRecord } from '../sdk/types.ts';
import { newDuckDBConnection } from './duckdb.ts';
import { isComputeOnDuckDB } from './fallback.ts';
import { compileSelect } from './index.ts';
import { withDuckDBFallback } from './per-record.ts';
import { callsTranscendental, sameValue } from './same-value.ts';
import { sqlValueConverter } from './values.ts';

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** A record value as a DuckDB SQL literal of the type the compiler gives it. */
export function sqlLiteral(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  switch (typeof v) {
    case 'number':
      if (Number.isSafeInteger(v)) return `CAST(${v} AS BIGINT)`;
      return `CAST('${Number.isNaN(v) ? 'nan' : v === Number.POSITIVE_INFINITY ? 'inf' : v === Number.NEGATIVE_INFINITY ? '-inf' : String(v)}' AS DOUBLE)`;
    case 'string':
      return `CAST('${v.replace(/'/g, "''")}' AS VARCHAR)`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v instanceof Date) {
        const d = v;
        const ts = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
        return `CAST('${ts}' AS TIMESTAMP)`;
      }
      if (Array.isArray(v)) return `[${v.map(sqlLiteral).join(', ')}]`;
      if (v instanceof Uint8Array)
        return `CAST('${[...v].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}' AS BLOB)`;
      const entries = Object.entries(v as object);
      if (!entries.length) throw new Error('an empty object has no DuckDB STRUCT literal');
      return `{${entries.map(([k, e]) => `'${k.replace(/'/g, "''")}': ${sqlLiteral(e)}`).join(', ')}}`;
    }
    default:
      throw new Error(`no SQL literal for ${typeof v}`);
  }
}

/** The `WITH input AS (...)` prefix for one record, with `columns` (all referenced ones) present. */
export function inputCte(row: RecordValue, columns: string[] = Object.keys(row)): string {
  const names = [...new Set([...Object.keys(row), ...columns])];
  if (!names.length) return 'WITH input AS (SELECT 1 AS "__none") ';
  return `WITH input AS (SELECT ${names.map((k) => `${sqlLiteral(row[k])} AS ${quoteIdent(k)}`).join(', ')}) `;
}

export type OracleResult =
  | { ok: true; rows: Record<string, unknown>[]; columns: string[] }
  | { ok: false; error: string };

let conn: Promise<DuckDBConnection> | undefined;
let queue: Promise<unknown> = Promise.resolve();

/** Normalises DuckDB's JS values to what compiled SQL returns (bigint → number). */
export function normalize(v: unknown): unknown {
  // beyond ±2^53 both paths give the exact bigint
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, normalize(e)]));
  }
  return v;
}

/**
 * How the one-row `input` is given to DuckDB. As a CTE of constants, DuckDB's optimizer folds what
 * it can (a NULL operand, a FALSE conjunct) before evaluating; as a table it evaluates every
 * operand of AND/OR in a SELECT list. Whether an operand that does not decide the result may fail
 * therefore depends on the plan; a difference in that alone is accepted when either mode agrees.
 */
export type OracleMode = 'constants' | 'table';

/** Runs `sql` (a `SELECT ... FROM input ...`) in DuckDB over one record. */
export function oracle(sql: string, row: RecordValue, mode: OracleMode = 'constants'): Promise<OracleResult> {
  const run = async (): Promise<OracleResult> => {
    conn ??= newDuckDBConnection();
    const c = await conn;
    try {
      let query = inputCte(row) + sql;
      if (mode === 'table') {
        await c.run(
          `CREATE OR REPLACE TEMP TABLE input AS ${inputCte(row).replace(/^WITH input AS \((.*)\) $/s, '$1')}`,
        );
        query = sql;
      }
      const r = await c.runAndReadAll(query);
      return {
        ok: true,
        columns: r.columnNames(),
        // as the DuckDB path converts results (TIME and INTERVAL as DuckDB's text of them)
        rows: r.convertRowObjects(sqlValueConverter).map((o) => normalize(o) as Record<string, unknown>),
      };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  };
  const p = queue.then(run, run);
  queue = p.catch(() => undefined);
  return p;
}

type Outcome =
  | { error: string; unexpected?: boolean }
  | { filtered: true }
  | { value: Record<string, unknown> }
  /** Refused as beyond the compiled subset, or handed to DuckDB for this record: DuckDB answers. */
  | { fallback: true };

async function ours(sql: string, row: RecordValue): Promise<Outcome> {
  try {
    const f = await compileSelect(sql);
    const out = f(row);
    return out === null ? { filtered: true } : { value: out };
  } catch (err) {
    if (isComputeOnDuckDB(err) || (err instanceof SluiceError && err.details?.beyondSubset)) {
      return { fallback: true };
    }
    if (
      !(err instanceof SluiceError) ||
      (err.code !== 'SLUICE_EXPR_INVALID' && err.code !== 'SLUICE_EXPR_EVAL')
    ) {
      return { error: `UNEXPECTED ${String((err as Error)?.stack ?? err)}`, unexpected: true };
    }
    return { error: `${err.code}: ${err.message}` };
  }
}

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    (typeof x === 'number' && !Number.isFinite(x)) || typeof x === 'bigint' ? String(x) : x,
  );
}

/**
 * Compares compiled SQL and DuckDB on one record: same value and column names, or both failing.
 * Returns a description of the difference, if any.
 */
export async function compare(sql: string, row: RecordValue): Promise<string | undefined> {
  const mine = await ours(sql, row);
  const diff = judge(mine, await oracle(sql, row, 'constants'), sql, row);
  if (!diff || ('unexpected' in mine && mine.unexpected)) return diff;
  const other = judge(mine, await oracle(sql, row, 'table'), sql, row);
  return other ? `${diff} (and as a table: ${other})` : undefined;
}

/** compare() over several records: the differences, each with its record. */
export async function compareRows(sql: string, rows: RecordValue[]): Promise<string[]> {
  const diffs: string[] = [];
  for (const row of rows) {
    const diff = await compare(sql, row);
    if (diff) diffs.push(`${show(row)}: ${diff}`);
  }
  return diffs;
}

/** A top-level field the SQL names whose value in this record is NULL (it has no type in DuckDB). */
function namesNullField(sql: string, row: RecordValue): boolean {
  return Object.entries(row).some(
    ([k, v]) => v === null && new RegExp(`(^|[^\\w.'])${k}\\b`).test(sql.replace(/'[^']*'/g, "''")),
  );
}

function judge(mine: Outcome, theirs: OracleResult, sql: string, row: RecordValue): string | undefined {
  if ('fallback' in mine) return undefined;
  if ('unexpected' in mine && mine.unexpected) return `compiled SQL crashed: ${mine.error}`;
  if (!theirs.ok) {
    if ('error' in mine) return undefined;
    // a field that is NULL in the one-row input has DuckDB's NULL type, which `l[2]` or abs() cannot
    // bind; a typed column would give NULL, as compiled SQL does
    if (/^Binder Error/.test(theirs.error) && namesNullField(sql, row)) return undefined;
    // DuckDB evaluates an expression on a struct field in a CASE branch or later COALESCE operand even
    // where the row does not reach it; compiled SQL evaluates it only when reached (docs/sql.md)
    if (
      /^(Conversion|Out of Range) Error/.test(theirs.error) &&
      /\b(CASE|coalesce)\b/i.test(sql) &&
      /(^|[^\w.])[a-z_]\w*\.[a-z_]/i.test(sql.replace(/'[^']*'/g, "''"))
    ) {
      return undefined;
    }
    // a NULL in the one-row table has DuckDB's NULL type, which some functions cannot bind;
    // a typed column would give NULL, as compiled SQL does
    if (/^Binder Error.*"NULL"/s.test(theirs.error)) return undefined;
    if (
      /^Binder Error/.test(theirs.error) &&
      'value' in mine &&
      Object.values(mine.value).every((v) => v === null)
    ) {
      return undefined;
    }
    return `DuckDB fails (${theirs.error.split('\n')[0]}) but compiled SQL gives ${show('value' in mine ? mine.value : null)}`;
  }
  // a documented limit: integers and decimals are exact only within ±2^53 in JavaScript
  if ('error' in mine && mine.error.includes('beyond ±2^53')) return undefined;
  if ('error' in mine) return `compiled SQL fails (${mine.error}) but DuckDB gives ${show(theirs.rows)}`;
  if ('filtered' in mine)
    return theirs.rows.length === 0 ? undefined : `filtered, but DuckDB gives ${show(theirs.rows)}`;
  if (theirs.rows.length !== 1)
    return `DuckDB returns ${theirs.rows.length} rows, compiled SQL ${show(mine.value)}`;
  const names = Object.keys(mine.value);
  if (names.join('\u0000') !== theirs.columns.join('\u0000')) {
    return `column names ${show(names)} but DuckDB names ${show(theirs.columns)}`;
  }
  const expected = theirs.rows[0]!;
  const tolerant = callsTranscendental(sql);
  for (const k of names) {
    if (!sameValue(mine.value[k], expected[k], tolerant)) {
      return `${k}: ${show(mine.value[k])} but DuckDB gives ${show(expected[k])}`;
    }
  }
  return undefined;
}

/**
 * What a sql step on the compiled path outputs for each record, one record per batch: compiled
 * code, or DuckDB for a record compiled code hands over. A value, null when dropped, or
 * `error: <message>` for an error record.
 */
export async function perRecordOutputs(sql: string, rows: RecordValue[]): Promise<unknown[]> {
  const select = await compileSelect(sql);
  const step = withDuckDBFallback(
    (record) => {
      const value = select(record.value);
      return value === null ? null : { value, meta: record.meta };
    },
    sql,
    {},
  );
  try {
    const out: unknown[] = [];
    for (const value of rows) {
      const r = await step.process([{ value, meta: {} } as SluiceRecord]);
      out.push(r.rejected?.length ? `error: ${r.rejected[0]!.error.message}` : (r.records[0]?.value ?? null));
    }
    return out;
  } finally {
    await step.close();
  }
}

/**
 * The records for which a sql step on the compiled path (perRecordOutputs) does not give DuckDB's
 * answer over that record alone: a description of each. DuckDB errors that `skip` accepts leave
 * the record out.
 */
export async function perRecordDifferences(
  sql: string,
  rows: RecordValue[],
  skip: (duckdbError: string) => boolean = () => false,
): Promise<string[]> {
  const ours = await perRecordOutputs(sql, rows);
  const problems: string[] = [];
  for (const [i, row] of rows.entries()) {
    const theirs = await oracle(sql, row, 'table');
    if (!theirs.ok && skip(theirs.error)) continue;
    const agree = theirs.ok
      ? sameValue(ours[i], theirs.rows[0] ?? null)
      : typeof ours[i] === 'string' && (ours[i] as string).startsWith('error: ');
    if (!agree) problems.push(`${show(row)}: Sluice ${show(ours[i])}, DuckDB ${show(theirs)}`);
  }
  return problems;
}
