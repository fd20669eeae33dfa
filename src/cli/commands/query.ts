import { once } from 'node:events';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  DuckDBArrayType,
  DuckDBArrayValue,
  type DuckDBConnection,
  DuckDBDecimalValue,
  DuckDBListType,
  DuckDBListValue,
  DuckDBMapType,
  DuckDBMapValue,
  DuckDBStructType,
  DuckDBStructValue,
  DuckDBTimestampMillisecondsValue,
  DuckDBTimestampNanosecondsValue,
  DuckDBTimestampSecondsValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
} from '@duckdb/node-api';
import { DEFAULT_ERRORS_DIR, isErrorsPartFile } from '../../engine/errors-location.ts';
import type { RunSummary } from '../../engine/run.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { openConfinedDuckDB, withStatementTimeout } from '../../sql/confined.ts';
import { newDuckDBConnection } from '../../sql/duckdb.ts';
import { EXIT } from '../exit-codes.ts';
import { renderTable } from '../format.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const queryCommand = defineCommand({
  name: 'query',
  usage: 'sluice query SQL [--run ID | --all] [--run-dir DIR] [--format table|json|jsonl|csv] [--limit N]',
  summary:
    'Run DuckDB SQL over past runs: tables runs, operators, files, errors and outputs (see docs/query.md).',
  positionals: ['SQL'],
  options: {
    run: {
      type: 'string',
      value: 'ID',
      description:
        'Query only this run (a run id or a unique prefix of one); every table then holds that run alone.',
    },
    all: {
      type: 'boolean',
      description: 'Make errors and outputs cover every run, not only the latest.',
    },
    'run-dir': {
      type: 'string',
      value: 'DIR',
      default: '.sluice/runs',
      description: 'Folder holding the run directories, as given to `sluice run --run-dir`.',
    },
    format: {
      type: 'string',
      value: 'FORMAT',
      default: 'table',
      description: 'table (for people), json (an array), jsonl (one object a line) or csv.',
    },
    limit: {
      type: 'string',
      value: 'N',
      description:
        'Print at most N rows and say how many were left out; 0 for all. Default: 1000 for table, all otherwise.',
    },
  },
});

type Format = 'table' | 'json' | 'jsonl' | 'csv';
const FORMATS: readonly Format[] = ['table', 'json', 'jsonl', 'csv'];

/** Column name and DuckDB type of the tables built from run.json, in order. */
const RUN_COLUMNS: [string, string][] = [
  ['run_id', 'VARCHAR'],
  ['pipeline', 'VARCHAR'],
  ['spec', 'VARCHAR'],
  ['status', 'VARCHAR'],
  ['engine', 'VARCHAR'],
  ['started_at', 'TIMESTAMP'],
  ['ended_at', 'TIMESTAMP'],
  ['elapsed_ms', 'BIGINT'],
  ['records_read', 'BIGINT'],
  ['records_written', 'BIGINT'],
  ['records_filtered', 'BIGINT'],
  ['records_failed', 'BIGINT'],
  ['error_rate', 'DOUBLE'],
  ['records_per_second', 'DOUBLE'],
  ['input_fraction', 'DOUBLE'],
  ['peak_rss_mib', 'DOUBLE'],
  ['failure_code', 'VARCHAR'],
  ['failure_message', 'VARCHAR'],
  ['errors_by_code', 'MAP(VARCHAR, BIGINT)'],
  ['error_outputs', 'VARCHAR[]'],
  ['sinks', 'VARCHAR[]'],
  ['outputs', 'MAP(VARCHAR, VARCHAR[])'],
  ['output_files', 'BIGINT'],
  ['checkpoints', 'BIGINT'],
  ['last_checkpoint_at', 'TIMESTAMP'],
  ['positions', 'MAP(VARCHAR, BIGINT)'],
  ['run_dir', 'VARCHAR'],
];

const OPERATOR_COLUMNS: [string, string][] = [
  ['run_id', 'VARCHAR'],
  ['pipeline', 'VARCHAR'],
  ['ordinal', 'INTEGER'],
  ['name', 'VARCHAR'],
  ['kind', 'VARCHAR'],
  ['component', 'VARCHAR'],
  ['in', 'BIGINT'],
  ['out', 'BIGINT'],
  ['filtered', 'BIGINT'],
  ['failed', 'BIGINT'],
  ['added', 'BIGINT'],
  ['time_ms', 'BIGINT'],
];

const FILE_COLUMNS: [string, string][] = [
  ['run_id', 'VARCHAR'],
  ['role', 'VARCHAR'],
  ['sink', 'VARCHAR'],
  ['path', 'VARCHAR'],
  ['format', 'VARCHAR'],
  ['compression', 'VARCHAR'],
  ['bytes', 'BIGINT'],
];

/** The error record fields as the ErrorChannel writes them (src/engine/error-channel.ts). */
const ERROR_RECORD_FIELDS: [string, string][] = [
  ['time', 'TIMESTAMP'],
  ['pipeline', 'VARCHAR'],
  ['stage', 'VARCHAR'],
  ['operator', 'VARCHAR'],
  ['component', 'VARCHAR'],
  ['code', 'VARCHAR'],
  ['message', 'VARCHAR'],
  ['retriable', 'BOOLEAN'],
  ['attempts', 'BIGINT'],
  ['position', 'STRUCT(partition VARCHAR, "offset" BIGINT)'],
  ['details', 'JSON'],
  ['record', 'JSON'],
  ['raw', 'VARCHAR'],
];

const ERROR_COLUMNS: [string, string][] = [
  ['run_id', 'VARCHAR'],
  ...ERROR_RECORD_FIELDS.filter(([name]) => name !== 'position'),
  ['position_partition', 'VARCHAR'],
  ['position_offset', 'BIGINT'],
  ['error_output', 'VARCHAR'],
];

/** The tables every query can use, in the order `available tables` lists them. */
const BASE_TABLES = ['runs', 'operators', 'files', 'errors', 'outputs'];

/** Column holding the file each row came from; named so no data column collides with it. */
const FILE_COL = '__sluice_file';

interface RunInfo {
  id: string;
  dir: string;
  summary: Partial<RunSummary>;
  startedMs: number;
}

interface FileRow {
  run_id: string;
  role: 'output' | 'errors';
  sink: string | null;
  path: string;
  format: string | null;
  compression: string | null;
  bytes: number | null;
}

export async function query(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(queryCommand, argv);
  const sql = positionals[0]!;
  const format = (options.format ?? 'table') as Format;
  if (!FORMATS.includes(format)) {
    throw new SluiceError('SLUICE_USAGE', `--format takes ${FORMATS.join(', ')}, got "${options.format}"`);
  }
  let limit = format === 'table' ? 1000 : 0;
  if (options.limit !== undefined) {
    limit = Number(options.limit);
    if (!Number.isInteger(limit) || limit < 0) {
      throw new SluiceError('SLUICE_USAGE', `--limit takes a whole number >= 0, got "${options.limit}"`);
    }
  }
  if (options.run !== undefined && options.all) {
    throw new SluiceError('SLUICE_USAGE', '--run and --all exclude each other');
  }
  const runDir = path.resolve(options['run-dir'] ?? '.sluice/runs');
  const notes: string[] = [];
  const found = await discoverRuns(runDir, notes);

  // Run tables are small (one run.json each), so they cover every run; record tables can be
  // large, so they cover the latest run unless --all or --run says otherwise.
  let tableRuns = found;
  let dataRuns = found.slice(-1);
  if (options.run !== undefined) {
    tableRuns = dataRuns = [pickRun(found, options.run, runDir)];
  } else if (options.all) {
    dataRuns = found;
  } else if (found.length > 1 && format === 'table' && /\b(errors|outputs?_?\w*)\b/i.test(sql)) {
    notes.push(
      `errors and outputs hold the latest run, ${dataRuns[0]!.id}; --all for all ${found.length} runs`,
    );
  }
  if (!found.length) {
    notes.push(
      `no runs under ${runDir} (a run directory holds the run.json \`sluice run\` writes); the tables are empty`,
    );
  }

  const conn = await newDuckDBConnection();
  try {
    const { tables } = await buildTables(conn, tableRuns, dataRuns, notes);
    for (const note of notes) process.stderr.write(`note: ${note}\n`);
    await execute(conn, sql, tables, format, limit);
  } finally {
    conn.closeSync();
  }
  return EXIT.ok;
}

/** Limits of a query the control plane runs for a token holder. */
export interface ConfinedQueryOptions {
  /** Interrupt the query after this long (default 30 s). */
  timeoutMs?: number;
  /** DuckDB's memory_limit (default 256MB). */
  memoryLimit?: string;
}

/**
 * The same tables over every run under `runDir`, as JSON rows (at most `limit`): what the control
 * plane's `POST /v1/jobs/:id/query` answers with, over one job's attempts. The SQL runs in its own
 * confined DuckDB: it sees these tables and the files they read, and no other file, URL,
 * database or extension (src/sql/confined.ts); it is stopped after `timeoutMs`.
 */
export async function queryRunsDir(
  runDir: string,
  sql: string,
  limit: number,
  options: ConfinedQueryOptions = {},
): Promise<{ columns: string[]; rows: Record<string, unknown>[]; total: number; notes: string[] }> {
  const notes: string[] = [];
  const found = await discoverRuns(runDir, notes);
  let tables = [...BASE_TABLES];
  const confined = await openConfinedDuckDB(
    { memoryLimit: options.memoryLimit ?? '256MB', threads: 2 },
    async (conn) => {
      const built = await buildTables(conn, found, found, notes);
      tables = built.tables;
      // The views read these files when a query uses them: the only files the SQL may open.
      return { allowedPaths: built.files };
    },
  ).catch((err: unknown) => {
    throw err instanceof SluiceError ? err : queryError(err, tables);
  });
  const conn = confined.connection;
  try {
    return await withStatementTimeout(conn, options.timeoutMs ?? 30_000, async () => {
      const extracted = await conn.extractStatements(sql);
      if (extracted.count === 0) throw new SluiceError('SLUICE_USAGE', 'the SQL holds no statement');
      for (let i = 0; i < extracted.count - 1; i++) await (await extracted.prepare(i)).run();
      const result = await (await extracted.prepare(extracted.count - 1)).stream();
      const columns = result.deduplicatedColumnNames();
      const types = result.columnTypes();
      const rows: Record<string, unknown>[] = [];
      let total = 0;
      for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        total += chunk.rowCount;
        for (const row of chunk.getRows()) {
          if (rows.length >= limit) break;
          const record: Record<string, unknown> = {};
          row.forEach((v, i) => {
            record[columns[i]!] = toJson(v, types[i]!, true);
          });
          rows.push(record);
        }
      }
      return { columns, rows, total, notes };
    });
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw queryError(err, tables);
  } finally {
    confined.close();
  }
}

/** Every run directory with a readable run.json, oldest first; others are skipped with a note. */
async function discoverRuns(runDir: string, notes: string[]): Promise<RunInfo[]> {
  const entries = await readdir(runDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
    throw new SluiceError('SLUICE_USAGE', `cannot read --run-dir ${runDir}: ${err.message}`);
  });
  const runs: RunInfo[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const dir = path.join(runDir, entry.name);
    let text: string;
    try {
      text = await readFile(path.join(dir, 'run.json'), 'utf8');
    } catch {
      // A run still going (or one that crashed) has no run.json yet: nothing to report on.
      continue;
    }
    let summary: Partial<RunSummary>;
    try {
      summary = JSON.parse(text) as Partial<RunSummary>;
      if (typeof summary !== 'object' || summary === null || Array.isArray(summary)) throw new Error();
    } catch {
      notes.push(`skipped ${dir}: its run.json is not a JSON object`);
      continue;
    }
    const id = typeof summary.run_id === 'string' ? summary.run_id : entry.name;
    const startedMs = Date.parse(String(summary.started_at));
    runs.push({ id, dir, summary, startedMs: Number.isNaN(startedMs) ? 0 : startedMs });
  }
  return runs.sort((a, b) => a.startedMs - b.startedMs || a.id.localeCompare(b.id));
}

/** `--run ID`: an exact id, else a unique prefix; anything else is a usage error naming candidates. */
function pickRun(runs: RunInfo[], wanted: string, runDir: string): RunInfo {
  const exact = runs.find((r) => r.id === wanted || path.basename(r.dir) === wanted);
  if (exact) return exact;
  const matches = runs.filter((r) => r.id.startsWith(wanted) || path.basename(r.dir).startsWith(wanted));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) {
    const shown = matches.slice(-20).map((r) => `  ${r.id}`);
    const more = matches.length > 20 ? [`  ... and ${matches.length - 20} more`] : [];
    throw new SluiceError(
      'SLUICE_USAGE',
      [`--run ${wanted} matches ${matches.length} runs; give more of the id:`, ...shown, ...more].join('\n'),
    );
  }
  const latest = runs
    .slice(-5)
    .reverse()
    .map((r) => `  ${r.id}`);
  throw new SluiceError(
    'SLUICE_USAGE',
    runs.length
      ? [`no run ${wanted} under ${runDir}; the latest are:`, ...latest].join('\n')
      : `no run ${wanted}: there are no runs under ${runDir}`,
  );
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function structure(columns: [string, string][]): string {
  return JSON.stringify([Object.fromEntries(columns)]);
}

/** Creates a temp table with exactly `columns` from JS rows, via JSON so nested types convert. */
async function loadTable(
  conn: DuckDBConnection,
  name: string,
  columns: [string, string][],
  rows: Record<string, unknown>[],
): Promise<void> {
  const select = columns.map(([c]) => `r.${quoteIdent(c)}`).join(', ');
  await conn.run(
    `CREATE TEMP TABLE ${quoteIdent(name)} AS SELECT ${select} ` +
      `FROM (SELECT unnest(json_transform($1::JSON, ${quoteString(structure(columns))})) AS r)`,
    [JSON.stringify(rows)],
  );
}

function emptySelect(columns: [string, string][]): string {
  return `SELECT ${columns.map(([c, t]) => `NULL::${t} AS ${quoteIdent(c)}`).join(', ')} WHERE false`;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const obj = (v: unknown): Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];

/** One row of `runs`: run.json flattened; a field an older or damaged run.json lacks is NULL. */
function runRow(run: RunInfo): Record<string, unknown> {
  const s = run.summary;
  const records = obj(s.records);
  const errors = obj(s.errors);
  const failure = obj(s.failure);
  const outputs = Object.fromEntries(Object.entries(obj(s.outputs)).map(([k, v]) => [k, strings(v)]));
  const read = num(records.read);
  const failed = num(records.failed);
  return {
    run_id: run.id,
    pipeline: str(s.pipeline),
    spec: str(s.spec),
    status: str(s.status),
    // runs from before pushdown existed were all streaming
    engine: str(s.engine) ?? 'streaming',
    started_at: str(s.started_at),
    ended_at: str(s.ended_at),
    elapsed_ms: num(s.elapsed_ms),
    records_read: read,
    records_written: num(records.written),
    records_filtered: num(records.filtered),
    records_failed: failed,
    error_rate: read && failed !== null ? failed / read : null,
    records_per_second: num(s.records_per_second),
    input_fraction: num(s.input_fraction),
    peak_rss_mib: num(s.peak_rss_mib),
    failure_code: str(failure.code),
    failure_message: str(failure.message),
    errors_by_code: obj(errors.by_code),
    error_outputs: strings(errors.outputs),
    sinks: Object.keys(outputs),
    outputs,
    output_files: Object.values(outputs).reduce((n, files) => n + files.length, 0),
    checkpoints: num(obj(s.checkpoints).count),
    last_checkpoint_at: str(obj(s.checkpoints).last_at),
    positions: obj(s.positions),
    run_dir: run.dir,
  };
}

function operatorRows(run: RunInfo): Record<string, unknown>[] {
  const ops = Array.isArray(run.summary.operators) ? run.summary.operators : [];
  return ops.map((op, i) => {
    const o = obj(op);
    return {
      run_id: run.id,
      pipeline: str(run.summary.pipeline),
      ordinal: i + 1,
      name: str(o.name),
      kind: str(o.kind),
      component: str(o.component),
      in: num(o.in),
      out: num(o.out),
      filtered: num(o.filtered),
      failed: num(o.failed),
      added: num(o.added ?? 0),
      time_ms: num(o.time_ms),
    };
  });
}

/** Format and compression of a data file from its name, as the file source and sink name them. */
function fileFormat(file: string): { format: string | null; compression: string | null } {
  let name = file.toLowerCase();
  let compression: string | null = null;
  if (name.endsWith('.gz')) compression = 'gzip';
  else if (name.endsWith('.zst') || name.endsWith('.zstd')) compression = 'zstd';
  if (compression) name = name.slice(0, name.lastIndexOf('.'));
  const ext = path.extname(name);
  const format =
    ext === '.csv' || ext === '.tsv'
      ? 'csv'
      : ext === '.jsonl' || ext === '.ndjson' || ext === '.json'
        ? 'jsonl'
        : ext === '.parquet'
          ? 'parquet'
          : null;
  return { format, compression };
}

async function sizeOf(file: string): Promise<number | null> {
  try {
    const s = await stat(file);
    return s.isFile() ? s.size : null;
  } catch {
    return null;
  }
}

/** Files of a run: outputs per sink, then error outputs (the default errors folder's part files included). */
async function filesOf(run: RunInfo): Promise<FileRow[]> {
  const rows: FileRow[] = [];
  const seen = new Set<string>();
  const add = async (role: FileRow['role'], sink: string | null, file: string) => {
    const resolved = path.resolve(file);
    if (seen.has(`${role}\0${resolved}`)) return;
    seen.add(`${role}\0${resolved}`);
    const { format, compression } = fileFormat(resolved);
    rows.push({
      run_id: run.id,
      role,
      sink,
      path: resolved,
      format,
      compression,
      bytes: await sizeOf(resolved),
    });
  };
  for (const [sink, files] of Object.entries(obj(run.summary.outputs))) {
    for (const file of strings(files)) await add('output', sink, file);
  }
  for (const file of strings(obj(run.summary.errors).outputs)) await add('errors', null, file);
  const defaultDir = path.join(run.dir, DEFAULT_ERRORS_DIR);
  const parts = await readdir(defaultDir).catch(() => [] as string[]);
  for (const name of parts.filter(isErrorsPartFile).sort())
    await add('errors', null, path.join(defaultDir, name));
  // Runs from before the default errors sink wrote part files.
  const legacy = path.join(run.dir, 'errors.jsonl');
  if ((await sizeOf(legacy)) !== null) await add('errors', null, legacy);
  return rows;
}

interface BuiltTables {
  tables: string[];
  files: string[];
}

/** A SQL identifier for a sink's view: lower case letters, digits and `_`, unique. */
function viewName(sink: string, taken: Set<string>): string {
  const base = `output_${
    sink
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, '_')
      .replace(/^_+|_+$/g, '') || 'sink'
  }`;
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

/** The SELECT reading `files` (all one format) with run_id and sink joined from the files table. */
function readerSelect(format: string, files: string[]): string {
  const list = `[${files.map(quoteString).join(', ')}]`;
  const opts = `union_by_name = true, filename = ${quoteString(FILE_COL)}`;
  const reader =
    format === 'parquet'
      ? `read_parquet(${list}, ${opts})`
      : format === 'csv'
        ? `read_csv(${list}, ${opts})`
        : `read_json(${list}, format = 'auto', ${opts})`;
  // A data column named run_id or sink would clash with the ones added here: ours win.
  return (
    `SELECT f.run_id, f.sink, d.* EXCLUDE (${FILE_COL}) ` +
    `FROM (SELECT COLUMNS(lambda c: c NOT IN ('run_id', 'sink')) FROM ${reader}) d ` +
    `JOIN files f ON f.role = 'output' AND f.path = d.${FILE_COL}`
  );
}

/**
 * Creates runs, operators and files (from tableRuns) and errors, outputs and output_<sink> views
 * (over dataRuns). Views read files only when a query uses them. Returns the table names and the
 * files the views read.
 */
async function buildTables(
  conn: DuckDBConnection,
  tableRuns: RunInfo[],
  dataRuns: RunInfo[],
  notes: string[],
): Promise<BuiltTables> {
  // Sluice writes every timestamp in UTC; date functions on TIMESTAMPTZ should agree.
  await conn.run(`SET SESSION TimeZone = 'UTC'`);
  await loadTable(conn, 'runs', RUN_COLUMNS, tableRuns.map(runRow));
  await loadTable(conn, 'operators', OPERATOR_COLUMNS, tableRuns.flatMap(operatorRows));
  const fileRows = (await Promise.all([...new Set([...tableRuns, ...dataRuns])].map(filesOf))).flat();
  await loadTable(conn, 'files', FILE_COLUMNS, fileRows as unknown as Record<string, unknown>[]);

  const dataIds = new Set(dataRuns.map((r) => r.id));
  const readable = fileRows.filter((f) => dataIds.has(f.run_id));
  const missing = readable.filter((f) => f.bytes === null);
  if (missing.length) {
    notes.push(
      `${missing.length} file(s) listed in run.json no longer exist and are left out, e.g. ${missing[0]!.path}`,
    );
  }

  // errors: every JSON Lines error output; other formats are noted, not guessed at.
  const errorFiles = readable.filter((f) => f.role === 'errors' && f.bytes !== null);
  const otherErrors = errorFiles.filter((f) => f.format !== 'jsonl');
  if (otherErrors.length) {
    notes.push(
      `errors leaves out ${otherErrors.length} error output(s) that are not JSON Lines, e.g. ${otherErrors[0]!.path}`,
    );
  }
  const jsonlErrors = errorFiles.filter((f) => f.format === 'jsonl').map((f) => f.path);
  const errorSelect = jsonlErrors.length
    ? `SELECT f.run_id, ${ERROR_RECORD_FIELDS.filter(([c]) => c !== 'position')
        .map(([c]) => `e.${quoteIdent(c)}`)
        .join(', ')}, e.position.partition AS position_partition, e.position."offset" AS position_offset, ` +
      `e.${FILE_COL} AS error_output ` +
      `FROM read_json([${jsonlErrors.map(quoteString).join(', ')}], format = 'newline_delimited', ` +
      `columns = {${ERROR_RECORD_FIELDS.map(([c, t]) => `${quoteIdent(c)}: ${quoteString(t)}`).join(', ')}}, ` +
      `filename = ${quoteString(FILE_COL)}) e JOIN files f ON f.role = 'errors' AND f.path = e.${FILE_COL}`
    : emptySelect(ERROR_COLUMNS);
  await conn.run(`CREATE TEMP VIEW errors AS ${errorSelect}`);

  // outputs: one view per sink (its own columns), and all of them unioned by column name.
  const sinks = new Map<string, FileRow[]>();
  for (const f of readable) {
    if (f.role !== 'output' || f.sink === null) continue;
    sinks.set(f.sink, [...(sinks.get(f.sink) ?? []), f]);
  }
  const taken = new Set(BASE_TABLES);
  const sinkViews: string[] = [];
  const unknown: string[] = [];
  for (const [sink, files] of sinks) {
    const byFormat = new Map<string, string[]>();
    // An empty file has no columns to read (the sink creates none, but a user might).
    for (const f of files.filter((f) => f.bytes)) {
      if (f.format === null) unknown.push(f.path);
      else byFormat.set(f.format, [...(byFormat.get(f.format) ?? []), f.path]);
    }
    const parts = [...byFormat].map(([format, paths]) => readerSelect(format, paths));
    const view = viewName(sink, taken);
    const body = parts.length
      ? parts.join(' UNION ALL BY NAME ')
      : `SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS sink WHERE false`;
    await conn.run(`CREATE TEMP VIEW ${quoteIdent(view)} AS ${body}`);
    sinkViews.push(view);
  }
  if (unknown.length) {
    notes.push(`outputs leaves out ${unknown.length} file(s) of unknown format, e.g. ${unknown[0]}`);
  }
  const outputs = sinkViews.length
    ? sinkViews.map((v) => `SELECT * FROM ${quoteIdent(v)}`).join(' UNION ALL BY NAME ')
    : `SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS sink WHERE false`;
  await conn.run(`CREATE TEMP VIEW outputs AS ${outputs}`);
  const files = [...jsonlErrors, ...[...sinks.values()].flat().flatMap((f) => (f.bytes ? [f.path] : []))];
  return { tables: [...BASE_TABLES, ...sinkViews], files };
}

/** Runs the statements; the last one's result is printed, streamed chunk by chunk. */
async function execute(
  conn: DuckDBConnection,
  sql: string,
  tables: string[],
  format: Format,
  limit: number,
): Promise<void> {
  try {
    const extracted = await conn.extractStatements(sql);
    if (extracted.count === 0) throw new SluiceError('SLUICE_USAGE', 'the SQL holds no statement');
    for (let i = 0; i < extracted.count - 1; i++) await (await extracted.prepare(i)).run();
    const result = await (await extracted.prepare(extracted.count - 1)).stream();
    await print(result, format, limit);
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw queryError(err, tables);
  }
}

function queryError(err: unknown, tables: string[]): SluiceError {
  let message = (err instanceof Error ? err.message : String(err)).replace(
    /^Failed to extract statements: /,
    '',
  );
  if (/Table with name \S+ does not exist/.test(message)) {
    message += `\navailable tables: ${tables.join(', ')}`;
  }
  return new SluiceError('SLUICE_QUERY_FAILED', message, { cause: err });
}

interface Column {
  name: string;
  type: DuckDBType;
  numeric: boolean;
}

const NUMERIC = new Set<DuckDBTypeId>([
  DuckDBTypeId.TINYINT,
  DuckDBTypeId.SMALLINT,
  DuckDBTypeId.INTEGER,
  DuckDBTypeId.BIGINT,
  DuckDBTypeId.HUGEINT,
  DuckDBTypeId.UTINYINT,
  DuckDBTypeId.USMALLINT,
  DuckDBTypeId.UINTEGER,
  DuckDBTypeId.UBIGINT,
  DuckDBTypeId.UHUGEINT,
  DuckDBTypeId.FLOAT,
  DuckDBTypeId.DOUBLE,
  DuckDBTypeId.DECIMAL,
]);

type Streamed = Awaited<ReturnType<DuckDBConnection['stream']>>;

async function print(result: Streamed, format: Format, limit: number): Promise<void> {
  const names = result.deduplicatedColumnNames();
  const columns: Column[] = result.columnTypes().map((type, i) => ({
    name: names[i]!,
    type,
    numeric: NUMERIC.has(type.typeId),
  }));
  const out = new Output();
  let shown = 0;
  let total = 0;
  const table: string[][] = [];
  if (format === 'json') out.write('[');
  if (format === 'csv') out.write(`${columns.map((c) => csvCell(c.name)).join(',')}\n`);
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    total += chunk.rowCount;
    const take = limit ? Math.min(chunk.rowCount, limit - shown) : chunk.rowCount;
    if (take <= 0 || out.closed) continue; // keep counting what is not shown
    const rows = chunk.getRows().slice(0, take);
    const lines: string[] = [];
    for (const row of rows) {
      if (format === 'table') {
        table.push(row.map((v, i) => tableCell(toJson(v, columns[i]!.type, false))));
      } else if (format === 'csv') {
        lines.push(row.map((v, i) => csvCell(toJson(v, columns[i]!.type, false))).join(','));
      } else {
        const record: Record<string, unknown> = {};
        row.forEach((v, i) => {
          record[columns[i]!.name] = toJson(v, columns[i]!.type, true);
        });
        lines.push(JSON.stringify(record));
      }
    }
    if (format === 'json') out.write(`${shown ? ',' : ''}\n${lines.join(',\n')}`);
    else if (lines.length) out.write(`${lines.join('\n')}\n`);
    shown += take;
    await out.drained();
  }
  if (format === 'json') out.write(shown ? '\n]\n' : ']\n');
  if (format === 'table') {
    out.write(`${renderAligned(columns, table)}\n`);
    out.write(
      `(${shown} row${shown === 1 ? '' : 's'}${total > shown ? `; ${total - shown} more not shown, raise --limit or use 0 for all` : ''})\n`,
    );
  } else if (total > shown) {
    process.stderr.write(`note: ${total - shown} more row(s) not shown (--limit ${limit})\n`);
  }
  await out.drained();
}

/** renderTable with numeric columns (by DuckDB type) right-aligned, NULLs included. */
function renderAligned(columns: Column[], rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.name.length, ...rows.map((r) => r[i]!.length)));
  const pad = (text: string, i: number) => (columns[i]!.numeric ? text.padStart(widths[i]!) : text);
  return renderTable(
    columns.map((c, i) => pad(c.name, i)),
    rows.map((r) => r.map(pad)),
  );
}

/** Writes to stdout with backpressure; stops quietly when the reader goes away (`| head`). */
class Output {
  closed = false;
  #pending = false;

  constructor() {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') this.closed = true;
      else throw err;
    });
  }

  write(text: string): void {
    if (this.closed) return;
    if (!process.stdout.write(text)) this.#pending = true;
  }

  async drained(): Promise<void> {
    if (!this.#pending || this.closed) return;
    this.#pending = false;
    await Promise.race([once(process.stdout, 'drain'), once(process.stdout, 'close')]);
  }
}

function tableCell(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  let text =
    typeof value === 'number'
      ? formatNumber(value)
      : typeof value === 'string'
        ? value
        : JSON.stringify(value);
  text = text.replace(/\r?\n/g, '\\n');
  // Long values are cut for people; --format json shows them whole.
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

function formatNumber(n: number): string {
  if (Number.isInteger(n) || !Number.isFinite(n)) return String(n);
  if (Math.abs(n) < 1e-6) return n.toPrecision(3);
  return n.toLocaleString('en-US', { maximumFractionDigits: 6, useGrouping: false });
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text =
    typeof value === 'string'
      ? value
      : typeof value === 'number' || typeof value === 'boolean'
        ? String(value)
        : JSON.stringify(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** ISO 8601 in UTC, keeping microseconds when there are any. */
function isoFromMicros(micros: bigint, fallback: string): string {
  const millis = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  const date = new Date(Number(millis));
  if (Number.isNaN(date.getTime())) return fallback;
  const iso = date.toISOString();
  const sub = ((micros % 1000n) + 1000n) % 1000n;
  return sub ? `${iso.slice(0, -1)}${String(sub).padStart(3, '0')}Z` : iso;
}

/**
 * A DuckDB value as JSON: bigints as numbers when exact (strings otherwise), timestamps as ISO
 * 8601 in UTC (Sluice writes UTC), decimals as numbers, maps as objects. JSON columns are
 * parsed when `nestJson` (JSON output) and kept as text for csv and table cells.
 */
function toJson(value: DuckDBValue, type: DuckDBType, nestJson: boolean): unknown {
  if (value === null) return null;
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (typeof value === 'string') {
    if (nestJson && type.alias === 'JSON') {
      try {
        return JSON.parse(value);
      } catch {
        return value;
      }
    }
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (value instanceof DuckDBTimestampValue || value instanceof DuckDBTimestampTZValue) {
    return value.isFinite ? isoFromMicros(value.micros, value.toString()) : value.toString();
  }
  if (value instanceof DuckDBTimestampSecondsValue) {
    return value.isFinite ? isoFromMicros(value.seconds * 1_000_000n, value.toString()) : value.toString();
  }
  if (value instanceof DuckDBTimestampMillisecondsValue) {
    return value.isFinite ? isoFromMicros(value.millis * 1000n, value.toString()) : value.toString();
  }
  if (value instanceof DuckDBTimestampNanosecondsValue) {
    return value.isFinite ? isoFromMicros(value.nanos / 1000n, value.toString()) : value.toString();
  }
  if (value instanceof DuckDBDecimalValue) return value.toDouble();
  if (value instanceof DuckDBListValue || value instanceof DuckDBArrayValue) {
    const inner = type instanceof DuckDBListType || type instanceof DuckDBArrayType ? type.valueType : type;
    return value.items.map((v) => toJson(v, inner, nestJson));
  }
  if (value instanceof DuckDBStructValue) {
    const struct = type instanceof DuckDBStructType ? type : undefined;
    return Object.fromEntries(
      Object.entries(value.entries).map(([k, v]) => [
        k,
        toJson(v, struct?.entryTypes[struct.entryIndexes[k] ?? -1] ?? type, nestJson),
      ]),
    );
  }
  if (value instanceof DuckDBMapValue) {
    const map = type instanceof DuckDBMapType ? type : undefined;
    return Object.fromEntries(
      value.entries.map((e) => [
        String(toJson(e.key, map?.keyType ?? type, false)),
        toJson(e.value, map?.valueType ?? type, nestJson),
      ]),
    );
  }
  return value.toString();
}
