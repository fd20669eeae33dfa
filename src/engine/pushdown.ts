/**
 * Pushdown: a run that reads files, applies only `sql`/`filter` steps and writes one file sink is
 * handed to DuckDB whole, as one multi-threaded `COPY (<query>) TO <temporary file>`. It is an
 * optimisation and must never change results: `planPushdown` accepts only what DuckDB computes
 * exactly as the streaming engine does (docs/pushdown.md lists the rules and why), the query
 * raises an error (`error()`) on any value the streaming engine would treat differently, and any
 * DuckDB error discards the temporary output so that the caller re-runs the pipeline on the
 * streaming engine, which routes failing records to the errors sink.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type DuckDBConnection, type DuckDBInstance, quotedIdentifier, quotedString } from '@duckdb/node-api';
import { fileSink } from '../connectors/file/index.ts';
import { formatFromPath, type InputFile, listInputFiles } from '../connectors/file/paths.ts';
import { type FileSinkConfig, isSingleFilePath } from '../connectors/file/sink.ts';
import type { FileSourceConfig } from '../connectors/file/source.ts';
import { isS3Url } from '../connectors/s3/client.ts';
import {
  type Compression,
  compressionExtension,
  compressionFromPath,
  createDecompressor,
} from '../formats/compression.ts';
import { type CsvColumnType, csvSchema, headerNames } from '../formats/csv.ts';
import { toSluiceError } from '../sdk/errors.ts';
import type { ComponentContext, Logger, RecordSchema, SinkDefinition, SinkInstance } from '../sdk/types.ts';
import type { Pipeline } from '../spec/validate.ts';
import { createDuckDBInstance } from '../sql/duckdb.ts';
import { planQuery, ResultSchema } from '../sql/index.ts';
import { defaultErrorsConfig } from './errors-location.ts';
import type { RunProgress } from './run.ts';
import type { OperatorSummary } from './stats.ts';
import { buildRunSummary, type RunSummary, type SummaryFacts } from './summary.ts';

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's serialized AST is untyped JSON
type Ast = any;

const MAX_SAFE = '9007199254740991';

/** Macros the pushdown query uses; they raise an error (→ fallback) where Sluice would differ. */
const SETUP = [
  // Sluice's source converts (and may reject) every declared field of every record, and its steps
  // evaluate every output column and every condition in the order written. These optimizers would
  // skip work whose errors matter: unused columns, filters moved below conversions, conditions
  // reordered or folded from column statistics.
  "SET disabled_optimizers = 'unused_columns,column_lifetime,filter_pushdown,filter_pullup,cte_filter_pusher,empty_result_pullup,reorder_filter,statistics_propagation'",
  `CREATE OR REPLACE TEMP MACRO __sluice_i53(x) AS CASE WHEN abs(x) > ${MAX_SAFE} THEN error('pushdown: a number beyond ±2^53 (the streaming engine fails such a record)') ELSE x END`,
  // A declared TIMESTAMP WITH TIME ZONE holds the UTC instant, as the streaming sink writes it.
  "SET TimeZone = 'UTC'",
  "CREATE OR REPLACE TEMP MACRO __sluice_finite(x) AS CASE WHEN isnan(x) OR isinf(x) THEN error('pushdown: NaN or infinity (written differently by the streaming engine)') WHEN x = 0 THEN 0::DOUBLE ELSE x END",
];

export interface PushdownStage {
  /** `source` or the step's name. */
  name: string;
  kind: 'source' | 'step';
  component: string;
  /** True when this stage can drop records (a WHERE clause or a filter). */
  filters: boolean;
}

export interface PushdownEligible {
  eligible: true;
  /** The whole statement as it runs, with the final output path (the run writes a hidden temporary name first). */
  sql: string;
  /** The SELECT handed to COPY. */
  query: string;
  /** What pushdown does here, for `--dry-run` and `explain`. */
  notes: string[];
  format: 'csv' | 'parquet';
  copyOptions: string;
  stages: PushdownStage[];
  /** `WITH ...` common table expressions defining `__sluice_s0` (source) ... `__sluice_sN`. */
  ctes: string;
  /** `declared`: the type the streaming engine's schema gives the column (see RecordSchema), if any. */
  outputColumns: { name: string; type: string; declared?: string }[];
  sourceFormat: 'csv' | 'parquet';
  sourceFiles: InputFile[];
  /** CSV: the dialect, to look for spaces around quotes while DuckDB runs (see `csvTextHazard`). */
  csvDialect?: { quote: string; delimiter: string; compression: Compression };
  sink: { name: string; single: boolean; root: string; ext: string };
}

export interface PushdownIneligible {
  eligible: false;
  reasons: string[];
}

export type PushdownPlan = PushdownEligible | PushdownIneligible;

export interface PlanOptions {
  /** `off` makes every pipeline ineligible (`--no-pushdown`, `settings.pushdown: off`). */
  pushdown?: 'auto' | 'off';
  /** A DuckDB connection to plan on; a private in-memory one otherwise. */
  connection?: DuckDBConnection;
}

class Refusal extends Error {}

/**
 * Decides whether `pipeline` can run as one DuckDB COPY with exactly the streaming engine's
 * results, and builds the statement. Opens no output; reads only file headers and metadata.
 */
export async function planPushdown(pipeline: Pipeline, options: PlanOptions = {}): Promise<PushdownPlan> {
  const reasons = structuralReasons(pipeline, options);
  if (reasons.length) return { eligible: false, reasons };
  let owned: { instance: DuckDBInstance; connection: DuckDBConnection } | undefined;
  let connection = options.connection;
  try {
    if (!connection) {
      const instance = await createDuckDBInstance({ threads: '1' });
      connection = await instance.connect();
      owned = { instance, connection };
    }
    return await new Planner(pipeline, connection).plan();
  } catch (err) {
    if (err instanceof Refusal) return { eligible: false, reasons: [err.message] };
    return { eligible: false, reasons: [`cannot plan the pushdown: ${toSluiceError(err).message}`] };
  } finally {
    if (owned) {
      owned.connection.closeSync();
      owned.instance.closeSync();
    }
  }
}

/** Reasons visible from the spec alone, all at once. */
function structuralReasons(pipeline: Pipeline, options: PlanOptions): string[] {
  const reasons: string[] = [];
  if (options.pushdown === 'off') reasons.push('pushdown is off (--no-pushdown or settings.pushdown: off)');
  else if ((pipeline.settings as { pushdown?: string }).pushdown === 'off')
    reasons.push('settings.pushdown is off');
  if (pipeline.source.component !== 'file')
    reasons.push(`the source is ${pipeline.source.component}; only the file source is pushed down`);
  for (const step of pipeline.steps)
    if (step.component !== 'sql' && step.component !== 'filter')
      reasons.push(
        `step ${step.name} is a ${step.component} step; only sql and filter steps are pushed down`,
      );
  if (pipeline.sinks.length !== 1)
    reasons.push(`${pipeline.sinks.length} sinks; pushdown writes exactly one`);
  const sink = pipeline.sinks[0];
  if (sink) {
    if (sink.component !== 'file')
      reasons.push(`sink ${sink.name} is ${sink.component}; only the file sink is pushed down`);
    if (sink.route !== undefined) reasons.push(`sink ${sink.name} has a route`);
    if (sink.component === 'file') {
      const config = sink.config as FileSinkConfig;
      const format = config.format ?? formatFromPath(config.path)?.format;
      if (format === 'jsonl')
        reasons.push(
          'the sink writes JSON Lines: DuckDB prints numbers, timestamps and escapes differently from Sluice (12.0 vs 12)',
        );
      if (isS3Url(config.path)) reasons.push('the sink writes to S3; pushdown writes local files only');
      if (config.roll) reasons.push('the sink rolls part files (roll); pushdown writes one file');
      if (config.partition_by) reasons.push('the sink partitions (partition_by)');
    }
  }
  if (pipeline.source.component === 'file') {
    const config = pipeline.source.config as FileSourceConfig;
    if (isS3Url(config.path)) reasons.push('the source reads S3; pushdown reads local files only');
    if (config.format === 'jsonl')
      reasons.push(
        'the source is JSON Lines: Sluice types every value by itself, DuckDB a whole column, so results could differ',
      );
    if (config.csv.escape !== config.csv.quote)
      reasons.push('csv.escape differs from csv.quote; only the standard doubled quote is pushed down');
    for (const [name, type] of Object.entries(config.csv.columns ?? {}))
      if (type === 'json') reasons.push(`csv column ${name} is json; json values are not pushed down`);
  }
  return reasons;
}

const INTEGER_TYPES = new Set([
  'TINYINT',
  'SMALLINT',
  'INTEGER',
  'BIGINT',
  'UTINYINT',
  'USMALLINT',
  'UINTEGER',
]);
const NUMERIC_TYPES = new Set([...INTEGER_TYPES, 'DOUBLE', 'FLOAT', 'HUGEINT', 'UBIGINT']);
/** Types a stage may hand to the next one (after the casts of `stageOutput`). */
const STAGE_TYPES = new Set([
  'VARCHAR',
  'BOOLEAN',
  'BIGINT',
  'DOUBLE',
  'TIMESTAMP',
  ...INTEGER_TYPES,
  'DATE',
]);
const ARITHMETIC = new Set(['+', '-', '*', '/', '//', '%', '**', '^']);
/** Functions that keep a number's value: on an integral DOUBLE they give what Sluice's BIGINT gives. */
const VALUE_KEEPING = new Set(['abs', 'round', 'floor', 'ceil', 'ceiling']);
/** Functions whose result differs between the engines by design (docs/sql.md). */
const REFUSED_FUNCTIONS = new Map<string, string>([
  ['now', 'is read once per query by DuckDB and once per record by Sluice'],
  ['current_timestamp', 'is read once per query by DuckDB and once per record by Sluice'],
  ['get_current_timestamp', 'is read once per query by DuckDB and once per record by Sluice'],
  ['transaction_timestamp', 'is read once per query by DuckDB and once per record by Sluice'],
  ['current_date', 'is read once per query by DuckDB and once per record by Sluice'],
  ['today', 'is read once per query by DuckDB and once per record by Sluice'],
  ['random', 'is random'],
  ['uuid', 'is random'],
  ['gen_random_uuid', 'is random'],
  ['typeof', 'names the static type (DuckDB) or the per-value type (Sluice)'],
  ['regexp_matches', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
  ['regexp_full_match', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
  ['regexp_replace', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
  ['regexp_extract', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
  ['~', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
  ['!~', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
  ['similar_to', 'runs RE2 in DuckDB and JavaScript regular expressions in Sluice'],
]);

interface Column {
  name: string;
  type: string;
}

class Planner {
  readonly #p: Pipeline;
  readonly #c: DuckDBConnection;
  #functions: Map<string, string> | undefined;

  constructor(pipeline: Pipeline, connection: DuckDBConnection) {
    this.#p = pipeline;
    this.#c = connection;
  }

  async #rows(sql: string): Promise<Record<string, unknown>[]> {
    const reader = await this.#c.runAndReadAll(sql);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  }

  async #describe(sql: string): Promise<Column[]> {
    const rows = await this.#rows(`DESCRIBE ${sql}`);
    return rows.map((r) => ({ name: String(r.column_name), type: String(r.column_type) }));
  }

  async plan(): Promise<PushdownEligible> {
    const p = this.#p;
    for (const sql of SETUP) await this.#c.run(sql);
    const sourceConfig = p.source.config as FileSourceConfig;
    const files = await listInputFiles(sourceConfig.path, p.baseDir);
    const formats = new Set(
      files.map((f) => sourceConfig.format ?? formatFromPath(f.absolute)?.format ?? 'unknown'),
    );
    if (formats.size !== 1)
      throw new Refusal(`the source files have several formats: ${[...formats].join(', ')}`);
    const sourceFormat = [...formats][0]!;
    if (sourceFormat !== 'csv' && sourceFormat !== 'parquet')
      throw new Refusal(
        sourceFormat === 'jsonl'
          ? 'the source is JSON Lines: Sluice types every value by itself, DuckDB a whole column, so results could differ'
          : `cannot tell the format of the source files (${sourceFormat})`,
      );
    const notes: string[] = [];
    const source =
      sourceFormat === 'csv' ? await this.#csvSource(sourceConfig, files) : await this.#parquetSource(files);
    // The schema the streaming engine's batches would carry, stage by stage: the Parquet sink gives
    // the output those types, so both engines write the same ones.
    let declared: RecordSchema | undefined =
      'declared' in source ? (source.declared as RecordSchema) : csvSchema(sourceConfig.csv.columns);
    const ctes = [`__sluice_s0 AS NOT MATERIALIZED (${source.sql})`];
    const stages: PushdownStage[] = [
      { name: 'source', kind: 'source', component: p.source.component, filters: false },
    ];
    let columns = source.columns;
    await this.#c.run(`CREATE OR REPLACE TEMP TABLE __sluice_s0 AS SELECT * FROM (${source.sql}) LIMIT 0`);
    for (const [i, step] of p.steps.entries()) {
      const k = i + 1;
      const { sql, columns: out, filters } = await this.#step(step, k, columns);
      if (step.component === 'sql') {
        const types = new ResultSchema((step.config as { query: string }).query);
        try {
          declared = await types.describe(columns.map((c) => [c.name, declared?.[c.name] ?? c.type]));
        } finally {
          await types.close();
        }
      }
      ctes.push(`__sluice_s${k} AS NOT MATERIALIZED (${sql})`);
      await this.#c.run(
        `CREATE OR REPLACE TEMP TABLE __sluice_s${k} AS SELECT * FROM (WITH ${ctes.join(',\n')} SELECT * FROM __sluice_s${k}) LIMIT 0`,
      );
      stages.push({ name: step.name, kind: 'step', component: step.component, filters });
      columns = out;
    }
    const sinkUse = p.sinks[0]!;
    const sinkConfig = sinkUse.config as FileSinkConfig;
    const single = isSingleFilePath(sinkConfig.path);
    const inferred = formatFromPath(sinkConfig.path);
    const format = (sinkConfig.format ?? inferred?.format) as 'csv' | 'parquet';
    const final = this.#sinkProjection(format, columns);
    const outputColumns = columns.map((c) => {
      const type = format === 'parquet' ? declared?.[c.name] : undefined;
      return type ? { ...c, declared: type } : c;
    });
    const typed = outputColumns.map((c) => {
      const v = quotedIdentifier(c.name);
      return 'declared' in c && c.declared !== c.type ? `CAST(${v} AS ${c.declared}) AS ${v}` : v;
    });
    const query = `WITH ${ctes.join(',\n')}\nSELECT ${typed.join(', ')} FROM (SELECT ${final} FROM __sluice_s${p.steps.length})`;
    await this.#describe(query); // binds: every type and name resolves
    let copyOptions: string;
    let ext: string;
    if (format === 'parquet') {
      const opts = ['FORMAT parquet', `COMPRESSION ${sinkConfig.parquet.compression}`];
      if (sinkConfig.parquet.row_group_size) opts.push(`ROW_GROUP_SIZE ${sinkConfig.parquet.row_group_size}`);
      copyOptions = opts.join(', ');
      ext = 'parquet';
    } else {
      const tsv = single && inferred?.tsv === true;
      const compression: Compression =
        sinkConfig.compression ?? (single ? compressionFromPath(sinkConfig.path) : 'none');
      const delimiter = sinkConfig.csv.delimiter ?? (tsv ? '\t' : ',');
      const opts = [
        'FORMAT csv',
        `HEADER ${sinkConfig.csv.header ? 'true' : 'false'}`,
        `DELIMITER ${quotedString(delimiter)}`,
        `QUOTE '"'`,
        `ESCAPE '"'`,
        `NEW_LINE '\\n'`,
        `COMPRESSION ${compression === 'none' ? "'none'" : quotedString(compression)}`,
      ];
      copyOptions = opts.join(', ');
      ext = `csv${compressionExtension(compression)}`;
      if (sinkConfig.csv.header)
        for (const c of columns)
          if (c.name.includes('#'))
            throw new Refusal(
              `output column ${JSON.stringify(c.name)} holds "#", which DuckDB's CSV writer quotes and Sluice's does not`,
            );
    }
    const root = path.resolve(p.baseDir, sinkConfig.path);
    const shown = single ? root : path.join(root, `part-<run id>-00001.${ext}`);
    const filtering = stages.filter((s) => s.filters).length;
    const threads = pushdownThreads({ sourceFiles: files });
    notes.push(
      `${sourceFormat} → ${stages.length - 1} SQL stage(s) → ${format}, as one DuckDB COPY on ${threads} thread(s)` +
        (files.length > 1 ? ` (${files.length} files: one thread keeps their order)` : ''),
    );
    notes.push(
      filtering === 0
        ? 'counts: no stage filters, so every count is the COPY row count'
        : `counts: from DuckDB's profile of the COPY (the scan and ${filtering} filter(s)), else one aggregate query`,
    );
    return {
      eligible: true,
      sql: `COPY (\n${query}\n) TO ${quotedString(shown)} (${copyOptions})`,
      query,
      notes,
      format,
      copyOptions,
      stages,
      ctes: `WITH ${ctes.join(',\n')}`,
      outputColumns,
      sourceFormat,
      sourceFiles: files,
      ...(this.#csvDialect ? { csvDialect: this.#csvDialect } : {}),
      sink: { name: sinkUse.name, single, root, ext },
    };
  }

  // ------------------------------------------------------------ sources

  #csvDialect: PushdownEligible['csvDialect'];

  async #csvSource(
    config: FileSourceConfig,
    files: InputFile[],
  ): Promise<{ sql: string; columns: Column[] }> {
    const csv = config.csv;
    const tsvs = new Set(files.map((f) => formatFromPath(f.absolute)?.tsv === true));
    if (!csv.delimiter && tsvs.size > 1) throw new Refusal('the source mixes .csv and .tsv files');
    const delimiter = csv.delimiter ?? (tsvs.has(true) ? '\t' : ',');
    const compressions = new Set(
      files.map((f) =>
        config.compression === 'auto' ? compressionFromPath(f.absolute) : config.compression,
      ),
    );
    if (compressions.size > 1) throw new Refusal('the source files use different compressions');
    const compression = [...compressions][0]!;
    this.#csvDialect = { quote: csv.quote, delimiter, compression };
    const dialect = [
      `delim = ${quotedString(delimiter)}`,
      `quote = ${quotedString(csv.quote)}`,
      `escape = ${quotedString(csv.escape)}`,
      `compression = ${quotedString(compression)}`,
      "comment = ''",
      'hive_partitioning = false',
      'filename = false',
    ];
    // The columns as Sluice names them, per file; every file must agree.
    let names: string[] | undefined;
    const declared = Object.entries(csv.columns ?? {});
    for (const file of files) {
      let fileNames: string[];
      if (csv.header || !declared.length) {
        let first: Record<string, unknown>[];
        try {
          first = await this.#rows(
            `SELECT * FROM read_csv(${quotedString(file.absolute)}, header = false, all_varchar = true, ` +
              `nullstr = '\u0001\u0002', ${dialect.join(', ')}) LIMIT 1`,
          );
        } catch (err) {
          throw new Refusal(
            `DuckDB cannot read ${file.display} as CSV: ${firstLine(toSluiceError(err).message)}`,
          );
        }
        const fields = Object.values(first[0] ?? {}).map((v) => (v === null ? '' : String(v)));
        if (!first.length) throw new Refusal(`${file.display} is empty`);
        fileNames = csv.header ? headerNames(fields) : fields.map((_, i) => `column${i}`);
      } else fileNames = declared.map(([name]) => name);
      if (names && names.join('\u0000') !== fileNames.join('\u0000'))
        throw new Refusal(`${file.display} has other columns than ${files[0]!.display}`);
      names = fileNames;
    }
    const lower = new Set<string>();
    for (const name of names!) {
      if (lower.has(name.toLowerCase()))
        throw new Refusal(`two columns differ only in case (${name}); DuckDB names are case-insensitive`);
      lower.add(name.toLowerCase());
    }
    const types = new Map(declared);
    if (csv.header) {
      const missing = declared.filter(([n]) => !names!.includes(n));
      if (missing.length)
        throw new Refusal(`csv.columns names ${missing.map(([n]) => n).join(', ')}, not in the header`);
    }
    const nulls = csv.null_values.length ? csv.null_values : ['\u0001\u0002\u0003'];
    const read =
      `read_csv([${files.map((f) => quotedString(f.absolute)).join(', ')}], header = ${csv.header}, ` +
      `auto_detect = false, columns = {${names!.map((n) => `${quotedString(n)}: 'VARCHAR'`).join(', ')}}, ` +
      `nullstr = [${nulls.map(quotedString).join(', ')}], allow_quoted_nulls = true, strict_mode = true, ` +
      `null_padding = false, ignore_errors = false, ${dialect.join(', ')})`;
    const columns: Column[] = [];
    // Each TRY_CAST is computed once in an inner projection: inside CASE, DuckDB would repeat it
    // per branch (measured ~15% of the whole COPY on 5M rows).
    const casts: string[] = [];
    const select = names!.map((name, i) => {
      const type = types.get(name) ?? 'string';
      const castRef = quotedIdentifier(`__sluice_cast_${i}`);
      const { expr, duck, cast } = csvConversion(quotedIdentifier(name), name, type, castRef);
      if (cast) casts.push(`${cast} AS ${castRef}`);
      columns.push({ name, type: duck });
      return `${expr} AS ${quotedIdentifier(name)}`;
    });
    const from = casts.length ? `(SELECT *, ${casts.join(', ')} FROM ${read})` : read;
    return { sql: `SELECT ${select.join(', ')} FROM ${from}`, columns };
  }

  async #parquetSource(
    files: InputFile[],
  ): Promise<{ sql: string; columns: Column[]; declared: Record<string, string> }> {
    let schema: Column[] | undefined;
    for (const file of files) {
      let cols: Column[];
      try {
        cols = await this.#describe(
          `SELECT * FROM read_parquet(${quotedString(file.absolute)}, hive_partitioning = false)`,
        );
      } catch (err) {
        throw new Refusal(
          `DuckDB cannot read ${file.display} as Parquet: ${firstLine(toSluiceError(err).message)}`,
        );
      }
      const key = (c: Column[]) => c.map((x) => `${x.name}\u0000${x.type}`).join('\u0001');
      if (schema && key(schema) !== key(cols))
        throw new Refusal(`${file.display} has another schema than ${files[0]!.display}`);
      schema = cols;
    }
    const columns: Column[] = [];
    const select = schema!.map(({ name, type }) => {
      const v = quotedIdentifier(name);
      let expr: string;
      let duck: string;
      if (type === 'VARCHAR' || type === 'BOOLEAN') {
        expr = v;
        duck = type;
      } else if (INTEGER_TYPES.has(type) || type === 'UBIGINT') {
        expr =
          type === 'BIGINT' || type === 'UBIGINT'
            ? `__sluice_i53(CAST(${v} AS BIGINT))`
            : `CAST(${v} AS BIGINT)`;
        duck = 'BIGINT';
      } else if (type === 'DOUBLE' || type === 'FLOAT') {
        expr = `CAST(${v} AS DOUBLE)`;
        duck = 'DOUBLE';
      } else if (type === 'DATE') {
        expr = `CAST(${v} AS TIMESTAMP)`;
        duck = 'TIMESTAMP';
      } else if (type === 'TIMESTAMP') {
        // The streaming reader keeps milliseconds, truncating toward zero.
        expr =
          `CASE WHEN epoch_us(${v}) < 0 AND epoch_us(${v}) % 1000 <> 0 THEN error('pushdown: a timestamp before 1970 with microseconds') ` +
          `ELSE date_trunc('millisecond', ${v}) END`;
        duck = 'TIMESTAMP';
      } else
        throw new Refusal(
          `Parquet column ${JSON.stringify(name)} is ${type}; pushdown takes VARCHAR, BOOLEAN, integers, FLOAT, DOUBLE, DATE and TIMESTAMP`,
        );
      columns.push({ name, type: duck });
      return `${expr} AS ${v}`;
    });
    const read = `read_parquet([${files.map((f) => quotedString(f.absolute)).join(', ')}], hive_partitioning = false)`;
    // The streaming reader's batches declare the file's own types.
    const declared = Object.fromEntries(schema!.map((c) => [c.name, c.type]));
    return { sql: `SELECT ${select.join(', ')} FROM ${read}`, columns, declared };
  }

  // ------------------------------------------------------------ steps

  async #step(
    step: Pipeline['steps'][number],
    k: number,
    input: Column[],
  ): Promise<{ sql: string; columns: Column[]; filters: boolean }> {
    const config = step.config as { query?: string; condition?: string; lookups?: unknown };
    if (config.lookups)
      throw new Refusal(`step ${step.name} joins lookups; only per-record SQL is pushed down`);
    const text =
      step.component === 'sql' ? config.query! : `SELECT * FROM input WHERE (\n${config.condition!}\n)`;
    // The SQL engine's own plan: only what it compiles per record is pushed down.
    const planned = await planQuery(step.component === 'sql' ? config.query! : config.condition!, {
      mode: step.component === 'sql' ? 'select' : 'condition',
      baseDir: this.#p.baseDir,
      bind: false,
    }).catch((err: unknown) => {
      throw new Refusal(`step ${step.name}: ${firstLine(toSluiceError(err).message)}`);
    });
    if (planned.path !== 'compiled')
      throw new Refusal(
        `step ${step.name} runs as ${planned.path} (${planned.reason}); only per-record compiled SQL is pushed down`,
      );
    const ast = await this.#parse(text, step.name);
    const node = ast.statements[0].node;
    const alias: string = node.from_table.alias || 'input';
    node.from_table.table_name = `__sluice_s${k - 1}`;
    node.from_table.alias = alias;
    const byName = new Map(input.map((c) => [c.name, c]));
    const ctx: ExprContext = { step: step.name, k, alias, byName, wrap: new Set() };
    const where = node.where_clause;
    // The names DuckDB gives the original query's columns (the rewrite must keep them).
    const original = await this.#describe(await this.#deserialize(ast));
    for (const item of node.select_list) await this.#check(item, ctx, 'output');
    if (where) {
      const r = await this.#check(where, ctx, 'condition');
      if (r.ambiguous) throw new Refusal(`step ${step.name}: the condition is a number`);
    }
    const names = new Set<string>();
    for (const c of original) {
      if (names.has(c.name))
        throw new Refusal(`step ${step.name}: two output columns are named ${JSON.stringify(c.name)}`);
      names.add(c.name);
    }
    node.select_list = node.select_list.map((n: Ast) => wrapMarked(n, ctx.wrap));
    if (where) node.where_clause = wrapMarked(where, ctx.wrap);
    const rewritten = await this.#deserialize(ast);
    const inner = `(${rewritten}) AS __sluice_t${k}(${original.map((c) => quotedIdentifier(c.name)).join(', ')})`;
    const columns: Column[] = [];
    const select = original.map(({ name, type }) => {
      const v = quotedIdentifier(name);
      if (!STAGE_TYPES.has(type))
        throw new Refusal(
          `step ${step.name}: column ${JSON.stringify(name)} is ${type}; pushdown passes VARCHAR, BOOLEAN, integers, DOUBLE, DATE and TIMESTAMP between stages`,
        );
      // As the streaming engine hands them on: every integer is a BIGINT, a date a TIMESTAMP.
      if (type === 'BIGINT') {
        // A function may give a BIGINT beyond ±2^53 (epoch_ns()); Sluice fails such a record.
        columns.push({ name, type });
        return `__sluice_i53(${v}) AS ${v}`;
      }
      if (INTEGER_TYPES.has(type)) {
        columns.push({ name, type: 'BIGINT' });
        return `CAST(${v} AS BIGINT) AS ${v}`;
      }
      if (type === 'DATE') {
        columns.push({ name, type: 'TIMESTAMP' });
        return `CAST(${v} AS TIMESTAMP) AS ${v}`;
      }
      columns.push({ name, type });
      return v;
    });
    return {
      sql: `SELECT ${select.join(', ')} FROM ${inner}`,
      columns,
      filters: where !== null && where !== undefined,
    };
  }

  async #parse(text: string, step: string): Promise<Ast> {
    const rows = await this.#rows(`SELECT json_serialize_sql(${quotedString(text)}) AS j`);
    const ast = parseAstJson(String(rows[0]?.j));
    if (ast.error) throw new Refusal(`step ${step}: DuckDB cannot parse the query`);
    if (ast.statements.length !== 1) throw new Refusal(`step ${step}: more than one statement`);
    const node = ast.statements[0].node;
    const refuse = (what: string) => {
      throw new Refusal(`step ${step}: ${what} is not per-record`);
    };
    if (node.type !== 'SELECT_NODE') refuse('a set operation');
    if (node.modifiers.length) refuse('ORDER BY, LIMIT or DISTINCT');
    if (node.cte_map?.map?.length) refuse('WITH');
    if (node.group_expressions.length || node.group_sets.length || node.having) refuse('GROUP BY');
    if (node.aggregate_handling !== 'STANDARD_HANDLING') refuse('GROUP BY ALL');
    if (node.qualify || node.sample) refuse('QUALIFY or SAMPLE');
    const from = node.from_table;
    if (
      from?.type !== 'BASE_TABLE' ||
      from.table_name.toLowerCase() !== 'input' ||
      from.schema_name ||
      from.catalog_name ||
      from.column_name_alias?.length ||
      from.sample ||
      from.at_clause
    )
      refuse('reading anything but `input`');
    return ast;
  }

  async #deserialize(ast: Ast): Promise<string> {
    const rows = await this.#rows(`SELECT json_deserialize_sql(${quotedString(JSON.stringify(ast))}) AS q`);
    return String(rows[0]?.q);
  }

  async #typeOf(node: Ast, ctx: ExprContext): Promise<string> {
    const ast = {
      error: false,
      statements: [
        {
          node: {
            type: 'SELECT_NODE',
            modifiers: [],
            cte_map: { map: [] },
            select_list: [{ ...node, alias: '' }],
            from_table: {
              type: 'BASE_TABLE',
              alias: ctx.alias,
              sample: null,
              query_location: 0,
              schema_name: '',
              table_name: `__sluice_s${ctx.k - 1}`,
              column_name_alias: [],
              catalog_name: '',
              at_clause: null,
            },
            where_clause: null,
            group_expressions: [],
            group_sets: [],
            aggregate_handling: 'STANDARD_HANDLING',
            having: null,
            sample: null,
            qualify: null,
          },
        },
      ],
    };
    try {
      const cols = await this.#describe(await this.#deserialize(ast));
      return cols[0]?.type ?? 'UNKNOWN';
    } catch (err) {
      throw new Refusal(
        `step ${ctx.step}: DuckDB cannot bind the query: ${firstLine(toSluiceError(err).message)}`,
      );
    }
  }

  async #functionType(name: string): Promise<string | undefined> {
    if (!this.#functions) {
      const rows = await this.#rows(
        'SELECT DISTINCT function_name AS n, function_type AS t FROM duckdb_functions()',
      );
      this.#functions = new Map();
      for (const r of rows) {
        const n = String(r.n);
        if (this.#functions.get(n) !== 'aggregate') this.#functions.set(n, String(r.t));
      }
    }
    return this.#functions.get(name);
  }

  /**
   * Checks one expression and marks what to guard. Returns whether its value is "ambiguous": a
   * DOUBLE that the streaming engine may hold as a BIGINT (Sluice types an integral number as
   * BIGINT, value by value), which only value-preserving operations may touch.
   */
  async #check(
    node: Ast,
    ctx: ExprContext,
    _use: 'output' | 'operand' | 'condition',
  ): Promise<{ ambiguous: boolean }> {
    const refuse = (what: string): never => {
      throw new Refusal(`step ${ctx.step}: ${what}`);
    };
    const ambiguousUse = (what: string): never =>
      refuse(
        `${what} is applied to a DOUBLE value; Sluice holds an integral double (12.0) as a BIGINT, DuckDB as a DOUBLE, so the result could differ`,
      );
    switch (node.class) {
      case 'CONSTANT':
        return { ambiguous: false };
      case 'COLUMN_REF': {
        const names: string[] = node.column_names;
        const name =
          names.length === 2 && names[0] === ctx.alias
            ? names[1]!
            : names.length === 1
              ? names[0]!
              : undefined;
        if (name === undefined) return refuse(`${names.join('.')} is not a column of the input`);
        const column = ctx.byName.get(name);
        if (!column)
          return refuse(
            `${JSON.stringify(name)} is not a column of the input (Sluice reads a missing or differently-cased field as NULL)`,
          );
        return { ambiguous: column.type === 'DOUBLE' };
      }
      case 'STAR': {
        if (
          node.columns ||
          node.expr ||
          node.relation_name ||
          node.rename_list?.length ||
          node.qualified_exclude_list?.length
        )
          refuse('COLUMNS(...) or a qualified * is not pushed down');
        for (const name of node.exclude_list ?? [])
          if (!ctx.byName.has(name)) refuse(`EXCLUDE names ${JSON.stringify(name)}, not a column`);
        for (const entry of node.replace_list ?? []) {
          if (!ctx.byName.has(entry.key)) refuse(`REPLACE names ${JSON.stringify(entry.key)}, not a column`);
          await this.#check(entry.value, ctx, 'output');
        }
        return { ambiguous: false };
      }
      case 'CAST': {
        const child = await this.#check(node.child, ctx, 'operand');
        const target: string = node.cast_type?.id ?? '';
        if (child.ambiguous && !['BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT', 'DOUBLE'].includes(target))
          ambiguousUse(`CAST to ${target}`);
        if (['BIGINT', 'HUGEINT', 'UBIGINT'].includes(target)) ctx.wrap.add(node);
        return { ambiguous: false };
      }
      case 'COMPARISON':
      case 'BETWEEN':
      case 'OPERATOR':
      case 'CONJUNCTION': {
        const kids: Ast[] =
          node.class === 'COMPARISON'
            ? [node.left, node.right]
            : node.class === 'BETWEEN'
              ? [node.input, node.lower, node.upper]
              : node.children;
        const results = [];
        for (const kid of kids) results.push(await this.#check(kid, ctx, 'operand'));
        if (results.some((r) => r.ambiguous)) {
          const comparison =
            node.class === 'COMPARISON' ||
            node.class === 'BETWEEN' ||
            ['COMPARE_IN', 'COMPARE_NOT_IN', 'OPERATOR_IS_NULL', 'OPERATOR_IS_NOT_NULL'].includes(node.type);
          if (!comparison) ambiguousUse(node.type);
          for (const [i, kid] of kids.entries()) {
            if (results[i]!.ambiguous) continue;
            const t = await this.#typeOf(kid, ctx);
            if (
              !NUMERIC_TYPES.has(t) &&
              !t.startsWith('DECIMAL') &&
              !(kid.class === 'CONSTANT' && kid.value?.is_null)
            )
              ambiguousUse(`a comparison with a ${t}`);
          }
        }
        return { ambiguous: false };
      }
      case 'CASE': {
        for (const check of node.case_checks) {
          if ((await this.#check(check.when_expr, ctx, 'condition')).ambiguous) ambiguousUse('CASE WHEN');
          if ((await this.#check(check.then_expr, ctx, 'operand')).ambiguous) ambiguousUse('CASE');
        }
        if (node.else_expr && (await this.#check(node.else_expr, ctx, 'operand')).ambiguous)
          ambiguousUse('CASE');
        return { ambiguous: false };
      }
      case 'FUNCTION': {
        const name: string = String(node.function_name).toLowerCase();
        if (node.filter || node.order_bys?.orders?.length || node.distinct || node.schema || node.catalog)
          refuse(`${name}(...) with FILTER, ORDER BY, DISTINCT or a schema is not per-record`);
        const why = REFUSED_FUNCTIONS.get(name);
        if (why) refuse(`${name} ${why}`);
        if (!node.is_operator) {
          const type = await this.#functionType(name);
          if (type !== 'scalar' && type !== 'macro')
            refuse(`${name} is a ${type ?? 'unknown'} function, not per-record`);
        }
        const results = [];
        for (const kid of node.children) results.push(await this.#check(kid, ctx, 'operand'));
        const anyAmbiguous = results.some((r) => r.ambiguous);
        let ambiguous = false;
        if (node.is_operator && ARITHMETIC.has(name)) {
          const type = await this.#typeOf(node, ctx);
          if (type.startsWith('DECIMAL'))
            refuse(`${name} gives a DECIMAL; Sluice limits exact decimals to what a JavaScript number holds`);
          // Sluice's integral double is a BIGINT: -amount is 0, not -0.0, so 1 / -amount is inf, not -inf.
          if (
            ['/', '//', '%'].includes(name) &&
            node.children.length > 1 &&
            touchesDouble(node.children[1], ctx)
          )
            refuse(
              `a DOUBLE value in the divisor of ${name}: Sluice's integral doubles are BIGINTs, whose zero has no sign (1 / -0.0 is -inf in DuckDB, inf in Sluice)`,
            );
          if (anyAmbiguous) {
            if (!['+', '-', '*', '/'].includes(name)) ambiguousUse(name);
            for (const [i, kid] of node.children.entries()) {
              if (results[i]!.ambiguous) continue;
              const t = await this.#typeOf(kid, ctx);
              if (!NUMERIC_TYPES.has(t) || t === 'FLOAT') ambiguousUse(`${name} with a ${t}`);
            }
            // Its value may differ in the sign of a zero: only value-keeping uses follow.
            ambiguous = true;
          }
          if (type === 'BIGINT' || type === 'HUGEINT' || type === 'UBIGINT' || ambiguous) ctx.wrap.add(node);
        } else if (anyAmbiguous) {
          if (!VALUE_KEEPING.has(name) || results.slice(1).some((r) => r.ambiguous))
            ambiguousUse(`${name}()`);
          if (name === 'round' && node.children.length > 1) {
            const t = await this.#typeOf(node.children[1], ctx);
            if (!INTEGER_TYPES.has(t)) ambiguousUse('round() with a non-integer precision');
          }
          ambiguous = true;
        }
        return { ambiguous };
      }
      default:
        return refuse(`${String(node.class).toLowerCase()} expressions are not pushed down`);
    }
  }

  /** The final SELECT list: the sink's types, and a guard on values Sluice would write differently. */
  #sinkProjection(format: 'csv' | 'parquet', columns: Column[]): string {
    return columns
      .map(({ name, type }) => {
        const v = quotedIdentifier(name);
        if (type === 'DOUBLE') {
          if (format === 'csv')
            throw new Refusal(
              `output column ${JSON.stringify(name)} is a DOUBLE: Sluice's CSV writer prints 12.0 as 12, DuckDB as 12.0`,
            );
          return `__sluice_finite(${v}) AS ${v}`;
        }
        if (type === 'TIMESTAMP' && format === 'parquet')
          // The streaming sink stages a Date as ISO text, which holds years 1-9999 only.
          return (
            `CASE WHEN ${v} BETWEEN TIMESTAMP '0001-01-01' AND TIMESTAMP '9999-12-31 23:59:59.999999' OR ${v} IS NULL ` +
            `THEN ${v} ELSE error('pushdown: a timestamp outside the years 1-9999') END AS ${v}`
          );
        if (type === 'TIMESTAMP' && format === 'csv')
          // Sluice writes a Date as ISO 8601 with milliseconds and Z (Date.toISOString()).
          return (
            `CASE WHEN year(${v}) < 1000 OR year(${v}) > 9999 THEN error('pushdown: a year outside 1000-9999') ` +
            `ELSE strftime(${v}, '%Y-%m-%dT%H:%M:%S.%gZ') END AS ${v}`
          );
        if (type === 'VARCHAR' && format === 'csv')
          return `CASE WHEN contains(${v}, '#') THEN error('pushdown: a "#", which DuckDB''s CSV writer quotes and Sluice''s does not') ELSE ${v} END AS ${v}`;
        return v;
      })
      .join(', ');
  }
}

interface ExprContext {
  step: string;
  k: number;
  alias: string;
  byName: Map<string, Column>;
  /** Nodes whose value is checked against ±2^53 (the streaming engine fails beyond it). */
  wrap: Set<Ast>;
}

/**
 * Parses DuckDB's serialized AST keeping every number's text: `1e6` is serialized as `1000000.0`
 * (the deserializer wants a double there) and a BIGINT constant may exceed 2^53.
 */
function parseAstJson(text: string): Ast {
  const withSource = JSON as unknown as {
    parse(
      text: string,
      reviver: (key: string, value: unknown, context?: { source?: string }) => unknown,
    ): Ast;
    rawJSON(text: string): unknown;
  };
  return withSource.parse(text, (_key, value, context) =>
    typeof value === 'number' && context?.source !== undefined && context.source !== String(value)
      ? withSource.rawJSON(context.source)
      : value,
  );
}

/** Whether an expression reads a DOUBLE column (directly or inside). */
function touchesDouble(node: Ast, ctx: ExprContext): boolean {
  if (node === null || typeof node !== 'object' || isRawJson(node)) return false;
  if (Array.isArray(node)) return node.some((n) => touchesDouble(n, ctx));
  if (node.class === 'COLUMN_REF') {
    const names: string[] = node.column_names;
    const name = names.at(-1);
    return name !== undefined && ctx.byName.get(name)?.type === 'DOUBLE';
  }
  return Object.values(node).some((v) => touchesDouble(v, ctx));
}

function isRawJson(value: unknown): boolean {
  return (JSON as unknown as { isRawJSON(v: unknown): boolean }).isRawJSON(value);
}

/** Copies `node` with every marked sub-expression wrapped in `__sluice_i53(...)`. */
function wrapMarked(node: Ast, marked: Set<Ast>): Ast {
  if (node === null || typeof node !== 'object' || isRawJson(node)) return node;
  if (Array.isArray(node)) return node.map((n) => wrapMarked(n, marked));
  const copy: Ast = {};
  for (const [k, v] of Object.entries(node)) copy[k] = wrapMarked(v, marked);
  if (!marked.has(node)) return copy;
  return {
    class: 'FUNCTION',
    type: 'FUNCTION',
    alias: copy.alias ?? '',
    query_location: copy.query_location ?? 0,
    function_name: '__sluice_i53',
    schema: '',
    children: [{ ...copy, alias: '' }],
    filter: null,
    order_bys: { type: 'ORDER_MODIFIER', orders: [] },
    distinct: false,
    is_operator: false,
    export_state: false,
    catalog: '',
  };
}

/**
 * A CSV field (VARCHAR, NULL already applied) converted as Sluice's CSV reader converts it, or an
 * error() where the reader would reject the value or convert it differently.
 */
function csvConversion(
  v: string,
  name: string,
  type: CsvColumnType,
  castRef: string,
): { expr: string; duck: string; cast?: string } {
  const fail = (what: string) =>
    `error(${quotedString(`pushdown: column ${JSON.stringify(name)}: ${what}`)} || ': ' || ${v})`;
  switch (type) {
    case 'string':
      return { expr: v, duck: 'VARCHAR' };
    case 'integer':
    case 'bigint': {
      // Fast path: the canonical spelling (DuckDB prints it back unchanged); else Sluice's pattern.
      const x = castRef;
      return {
        cast: `TRY_CAST(${v} AS BIGINT)`,
        expr:
          `CASE WHEN ${v} IS NULL THEN NULL WHEN CAST(${x} AS VARCHAR) = ${v} AND abs(${x}) <= ${MAX_SAFE} THEN ${x} ` +
          `WHEN regexp_full_match(${v}, '\\s*[+-]?\\d+\\s*') AND abs(TRY_CAST(${v} AS HUGEINT)) <= ${MAX_SAFE} ` +
          `THEN CAST(${v} AS BIGINT) ELSE ${fail(type === 'integer' ? 'not an integer within ±2^53' : 'not a bigint within ±2^53')} END`,
        duck: 'BIGINT',
      };
    }
    case 'double':
    case 'decimal': {
      const x = castRef;
      return {
        cast: `TRY_CAST(${v} AS DOUBLE)`,
        expr:
          `CASE WHEN ${v} IS NULL THEN NULL WHEN CAST(${x} AS VARCHAR) = ${v} THEN ${x} ` +
          `WHEN regexp_full_match(${v}, '\\s*[+-]?(\\d+\\.?\\d*|\\.\\d+)([eE][+-]?\\d+)?\\s*') ` +
          `THEN CAST(${v} AS DOUBLE) ELSE ${fail('not a finite number in plain notation')} END`,
        duck: 'DOUBLE',
      };
    }
    case 'boolean':
      return {
        expr:
          `CASE WHEN ${v} IS NULL THEN NULL WHEN lower(trim(${v})) IN ('true', 't', 'yes', 'y', '1') THEN true ` +
          `WHEN lower(trim(${v})) IN ('false', 'f', 'no', 'n', '0') THEN false ELSE ${fail('not a boolean')} END`,
        duck: 'BOOLEAN',
      };
    case 'date':
    case 'timestamp': {
      const ts = castRef;
      const d = castRef;
      // Fast path: DuckDB prints the value back as written (YYYY-MM-DD[ HH:MM:SS[.f...]]).
      const fast =
        type === 'date'
          ? `WHEN CAST(${d} AS VARCHAR) = ${v} AND substr(${v}, 5, 1) = '-' THEN CAST(${d} AS TIMESTAMP) `
          : `WHEN CAST(${ts} AS VARCHAR) = ${v} AND substr(${v}, 5, 1) = '-' THEN date_trunc('millisecond', ${ts}) `;
      const time =
        type === 'date'
          ? ''
          : `WHEN regexp_full_match(${v}, '[1-9]\\d{3}-\\d{2}-\\d{2}[T ]([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,9})?[Zz]?') ` +
            `THEN CAST(left(replace(rtrim(${v}, 'Zz'), 'T', ' '), 23) AS TIMESTAMP) `;
      return {
        cast: `TRY_CAST(${v} AS ${type === 'date' ? 'DATE' : 'TIMESTAMP'})`,
        expr:
          `CASE WHEN ${v} IS NULL THEN NULL ${fast}` +
          `WHEN regexp_full_match(${v}, '[1-9]\\d{3}-\\d{2}-\\d{2}') THEN CAST(CAST(${v} AS DATE) AS TIMESTAMP) ${time}` +
          `ELSE ${fail(type === 'date' ? 'not a YYYY-MM-DD date' : 'not a timestamp of the form YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]')} END`,
        duck: 'TIMESTAMP',
      };
    }
    default:
      throw new Refusal(`csv column ${name} is ${type}; not pushed down`);
  }
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

// ---------------------------------------------------------------- running

export interface PushdownRunOptions {
  pipeline: Pipeline;
  plan: PushdownEligible;
  runId: string;
  runDir: string;
  logger: Logger;
}

export type PushdownOutcome =
  | { kind: 'done'; summary: RunSummary }
  /** DuckDB stopped (a bad value, a malformed line): nothing was written; run the streaming engine. */
  | { kind: 'fallback'; reason: string };

/**
 * One pushed-down run: COPY to a hidden temporary file in the sink's folder, counts, the fixes
 * that give the Parquet file the column types the streaming sink would give it, then a rename.
 * `stop()`/`abort()` interrupt DuckDB and discard the temporary output.
 */
export class PushdownRun {
  readonly #o: PushdownRunOptions;
  #db: { instance: DuckDBInstance; connection: DuckDBConnection } | undefined;
  #started = 0;
  #interrupted = false;
  #temps = new Set<string>();
  #phase = 'starting';

  constructor(options: PushdownRunOptions) {
    this.#o = options;
  }

  stop(): void {
    if (this.#interrupted) return;
    this.#interrupted = true;
    this.#o.logger.warn('stopping: interrupting DuckDB; the temporary output is discarded');
    try {
      this.#db?.connection.interrupt();
    } catch {}
  }

  abort(): void {
    this.stop();
  }

  /** Elapsed time, and DuckDB's own estimate of the share done as the source fraction. */
  progress(): RunProgress {
    let percentage = -1;
    try {
      if (this.#db) percentage = this.#db.connection.progress.percentage;
    } catch {}
    return {
      elapsedMs: this.#started ? performance.now() - this.#started : 0,
      read: 0,
      skipped: 0,
      written: 0,
      failed: 0,
      filtered: 0,
      source: percentage >= 0 ? { bytesRead: percentage, bytesTotal: 100 } : {},
    };
  }

  get phase(): string {
    return this.#phase;
  }

  async run(): Promise<PushdownOutcome> {
    const { plan, pipeline, runId, logger } = this.#o;
    const startedAt = new Date();
    this.#started = performance.now();
    const safeRunId = runId.replace(/[^A-Za-z0-9._-]/g, '_') || 'run';
    const folder = plan.sink.single ? path.dirname(plan.sink.root) : plan.sink.root;
    let finalPath: string;
    let tempPath: string;
    let createdDir: string | undefined;
    const times = { count: 0, copy: 0 };
    let counts: number[];
    let written: number;
    const positions: Record<string, number> = {};
    try {
      createdDir = await fsp.mkdir(folder, { recursive: true });
      if (plan.sink.single) {
        finalPath = plan.sink.root;
        tempPath = path.join(folder, `.${path.basename(finalPath)}.${safeRunId}.inprogress`);
      } else {
        for (let seq = 1; ; seq++) {
          const name = `part-${safeRunId}-${String(seq).padStart(5, '0')}.${plan.sink.ext}`;
          finalPath = path.join(folder, name);
          tempPath = path.join(folder, `.${name}.inprogress`);
          if (!(await exists(finalPath)) && !(await exists(tempPath))) break;
        }
      }
      const instance = await createDuckDBInstance({
        threads: String(pushdownThreads(plan)),
        memory_limit: '256MB',
        temp_directory: os.tmpdir(),
        preserve_insertion_order: 'true',
      });
      this.#db = { instance, connection: await instance.connect() };
      const c = this.#db.connection;
      for (const sql of SETUP) await c.run(sql);
      // DuckDB estimates a query's progress only with its progress bar on (not printed here).
      await c.run('SET enable_progress_bar = true');
      await c.run('SET enable_progress_bar_print = false');
      if (this.#interrupted) throw new Interrupted();
      this.#phase = 'copy';
      this.#temps.add(tempPath);
      // DuckDB's profile of the COPY holds the exact row count of the scan and of every filter.
      const profile = path.join(os.tmpdir(), `sluice-pushdown-${process.pid}-${safeRunId}.json`);
      this.#temps.add(profile);
      await c.run("SET enable_profiling = 'json'");
      await c.run(`SET profiling_output = ${quotedString(profile)}`);
      // Meanwhile, look for what DuckDB's CSV reader accepts and Sluice's does not (spaces around quotes).
      const hazard = plan.csvDialect
        ? csvTextHazard(plan.sourceFiles, plan.csvDialect).catch(
            (err: unknown) => `cannot scan: ${String(err)}`,
          )
        : Promise.resolve(undefined);
      let t = performance.now();
      const copied = await c.runAndReadAll(
        `COPY (\n${plan.query}\n) TO ${quotedString(tempPath)} (${plan.copyOptions})`,
      );
      written = Number(copied.getRows()[0]?.[0] ?? 0);
      const copyMs = performance.now() - t;
      const found = await hazard;
      if (found) throw new Error(found);
      times.copy = performance.now() - t;
      logger.debug('pushdown: COPY done', {
        copy_ms: Math.round(copyMs),
        quote_scan_wait_ms: Math.round(times.copy - copyMs),
        opened_ms: Math.round(t - this.#started),
      });
      await c.run('PRAGMA disable_profiling');
      const profiled = await fsp
        .readFile(profile, 'utf8')
        .then((text) => JSON.parse(text) as ProfileNode)
        .catch(() => undefined);
      await fsp.unlink(profile).catch(() => {});
      this.#temps.delete(profile);
      if (this.#interrupted) throw new Interrupted();
      this.#phase = 'count';
      t = performance.now();
      counts =
        (profiled && countsFromProfile(profiled, plan.stages, written)) ?? (await this.#counts(c, written));
      if (plan.sourceFormat === 'parquet') {
        // As the streaming reader positions them: the last row index of every file.
        for (const file of plan.sourceFiles) {
          const reader = await c.runAndReadAll(
            `SELECT coalesce(sum(num_rows), 0)::BIGINT FROM parquet_file_metadata(${quotedString(file.absolute)})`,
          );
          const n = Number(reader.getRows()[0]?.[0] ?? 0);
          if (n > 0) positions[file.display] = n - 1;
        }
      }
      times.count = performance.now() - t;
      if (written === 0) {
        // No records: no file, and no folder the streaming sink would not have created either.
        await this.#discard(createdDir, folder);
      } else if (plan.format === 'parquet') {
        this.#phase = 'types';
        const started = performance.now();
        await this.#fixParquetTypes(c, tempPath, written);
        logger.debug('pushdown: Parquet column types checked', {
          ms: Math.round(performance.now() - started),
          count_ms: Math.round(times.count),
        });
      }
      if (this.#interrupted) throw new Interrupted();
    } catch (err) {
      await this.#discard(createdDir, folder);
      this.#close();
      if (err instanceof Interrupted || this.#interrupted)
        return { kind: 'done', summary: await this.#interruptedSummary(startedAt) };
      const reason = firstLine(toSluiceError(err).message);
      logger.warn(
        `pushdown: DuckDB stopped (${reason}); re-running on the streaming engine, which sends failing records to the errors sink`,
      );
      return { kind: 'fallback', reason };
    }
    this.#close();
    // Commit: data first, then the (empty) errors output, as the streaming engine does.
    const outputs: string[] = [];
    const sinkCtx = this.#ctx(pipeline.baseDir);
    if (written > 0) {
      await fsp.rename(tempPath!, finalPath!);
      this.#temps.delete(tempPath!);
      outputs.push(finalPath!);
    } else if (plan.sink.single && plan.format === 'csv') {
      // No records: the streaming sink still creates the (empty) file; let it do so.
      const sink = await (pipeline.sinks[0]!.def as SinkDefinition).create(
        pipeline.sinks[0]!.config as never,
        sinkCtx,
      );
      await sink.close();
      outputs.push(...(sink.outputs?.() ?? []));
    } else if (plan.sink.single) {
      logger.warn('no records: the Parquet file is not written', { path: plan.sink.root });
    }
    const errors = await this.#closeErrorsSink();
    return {
      kind: 'done',
      summary: this.#summary(startedAt, counts!, written!, times, outputs, errors, { positions }),
    };
  }

  /** Records in and out of every stage. */
  async #counts(c: DuckDBConnection, written: number): Promise<number[]> {
    const { plan } = this.#o;
    const n = plan.stages.length;
    // out[k]: records leaving stage k (0 = source). A stage that does not filter passes all.
    const out: (number | undefined)[] = new Array(n).fill(undefined);
    out[n - 1] = written;
    const lastFiltering = plan.stages.findLastIndex((s) => s.filters);
    const needed: number[] = [];
    if (lastFiltering === -1) return out.map(() => written);
    if (plan.sourceFormat === 'parquet') {
      const reader = await c.runAndReadAll(
        `SELECT coalesce(sum(num_rows), 0)::BIGINT AS n FROM parquet_file_metadata([${plan.sourceFiles.map((f) => quotedString(f.absolute)).join(', ')}])`,
      );
      out[0] = Number(reader.getRows()[0]?.[0] ?? 0);
    } else needed.push(0);
    for (let k = 1; k < lastFiltering; k++) if (plan.stages[k]!.filters) needed.push(k);
    if (needed.length) {
      // The COPY evaluated everything: counting needs only the conditions, so optimize freely.
      await c.run('RESET disabled_optimizers');
      const reader = await c.runAndReadAll(
        `${plan.ctes}\nSELECT ${needed.map((k) => `(SELECT count(*) FROM __sluice_s${k})::BIGINT`).join(', ')}`,
      );
      const row = reader.getRows()[0] ?? [];
      needed.forEach((k, i) => {
        out[k] = Number(row[i]);
      });
    }
    for (let k = 1; k < n; k++) if (!plan.stages[k]!.filters) out[k] ??= out[k - 1];
    // Stages after the last filtering one pass everything: they equal written.
    for (let k = lastFiltering; k < n; k++) out[k] = written;
    return out.map((v) => v ?? written);
  }

  /**
   * The streaming Parquet sink types a column by its values: a column that is always null is
   * VARCHAR, a DOUBLE column whose values are all integral is BIGINT. Rewrites the file when the
   * data asks for it (rare; a columnar pass over the output otherwise).
   */
  async #fixParquetTypes(c: DuckDBConnection, file: string, rows: number): Promise<void> {
    const cols = this.#o.plan.outputColumns;
    const f = quotedString(file);
    const integralDoubles = new Set<string>();
    // Non-null counts from the footer's statistics (free); DOUBLE columns are scanned for integrality.
    const meta = await c.runAndReadAll(
      `SELECT path_in_schema AS c, (sum(num_values) - sum(stats_null_count))::BIGINT AS n, ` +
        `count(stats_null_count) = count(*) AS known FROM parquet_metadata(${f}) GROUP BY 1`,
    );
    const nonNullOf = new Map<string, number>();
    for (const [name, n, known] of meta.getRows()) if (known === true) nonNullOf.set(String(name), Number(n));
    // A column with a declared type keeps it, as in the streaming sink, whatever its values.
    const probed = cols.filter(
      (c) => !c.declared && (c.type === 'DOUBLE' || (c.type !== 'VARCHAR' && !nonNullOf.has(c.name))),
    );
    if (probed.length) {
      const probes = probed.map(({ name, type }) => {
        const v = quotedIdentifier(name);
        return type === 'DOUBLE'
          ? `count(${v})::BIGINT, coalesce(bool_and(${v} = trunc(${v})), true)`
          : `count(${v})::BIGINT, true`;
      });
      const reader = await c.runAndReadAll(
        `SELECT ${probes.join(', ')} FROM read_parquet(${f}, hive_partitioning = false)`,
      );
      const row = reader.getRows()[0] ?? [];
      probed.forEach(({ name }, i) => {
        nonNullOf.set(name, Number(row[2 * i]));
        if (row[2 * i + 1] === true) integralDoubles.add(name);
      });
    }
    let changed = false;
    const select = cols.map(({ name, type, declared }) => {
      const v = quotedIdentifier(name);
      if (declared) return v;
      const nonNull = nonNullOf.get(name) ?? 1;
      if (nonNull === 0 && type !== 'VARCHAR') {
        changed = true;
        return `CAST(${v} AS VARCHAR) AS ${v}`;
      }
      if (type === 'DOUBLE' && integralDoubles.has(name) && nonNull > 0) {
        changed = true;
        return `CAST(${v} AS BIGINT) AS ${v}`;
      }
      return v;
    });
    if (!changed || rows === 0) return;
    const second = `${file}.types.inprogress`;
    this.#temps.add(second);
    await c.run(
      `COPY (SELECT ${select.join(', ')} FROM read_parquet(${quotedString(file)}, hive_partitioning = false)) TO ${quotedString(second)} (${this.#o.plan.copyOptions})`,
    );
    await fsp.rename(second, file);
    this.#temps.delete(second);
  }

  async #discard(createdDir: string | undefined, folder: string): Promise<void> {
    await Promise.all([...this.#temps].map((t) => fsp.unlink(t).catch(() => {})));
    this.#temps.clear();
    if (createdDir) {
      for (let d = folder; d.startsWith(createdDir); d = path.dirname(d)) {
        await fsp.rmdir(d).catch(() => {});
        if (d === createdDir) break;
      }
    }
  }

  #close(): void {
    const db = this.#db;
    this.#db = undefined;
    if (!db) return;
    try {
      db.connection.closeSync();
      db.instance.closeSync();
    } catch {}
  }

  #ctx(baseDir: string): ComponentContext {
    const { pipeline, runId, logger } = this.#o;
    return {
      signal: new AbortController().signal,
      logger,
      baseDir,
      pipelineName: pipeline.metadata.name,
      runId,
      batchSize: pipeline.settings.batch_size,
    };
  }

  /** Creates and closes the errors sink, as a streaming run with no failed record does. */
  async #closeErrorsSink(): Promise<{ component: string; outputs: string[] }> {
    const { pipeline, runDir } = this.#o;
    let sink: SinkInstance;
    let component: string;
    if (pipeline.errors) {
      component = pipeline.errors.component;
      sink = await pipeline.errors.def.create(pipeline.errors.config as never, this.#ctx(pipeline.baseDir));
    } else {
      component = 'file';
      const config = fileSink.config.parse(defaultErrorsConfig(runDir));
      sink = await fileSink.create(config as never, this.#ctx('/'));
    }
    await sink.close();
    return { component, outputs: sink.outputs?.() ?? [] };
  }

  async #interruptedSummary(startedAt: Date): Promise<RunSummary> {
    const errors = await this.#closeErrorsSink().catch(() => ({ component: 'file', outputs: [] }));
    const counts = this.#o.plan.stages.map(() => 0);
    return this.#summary(startedAt, counts, 0, { count: 0, copy: 0 }, [], errors, {
      status: 'interrupted',
      inputFraction: 0,
      failure: {
        code: 'SLUICE_INTERRUPTED',
        message: 'interrupted: DuckDB stopped; the temporary output was discarded',
        retriable: false,
      },
    });
  }

  #summary(
    startedAt: Date,
    counts: number[],
    written: number,
    times: { count: number; copy: number },
    outputs: string[],
    errors: { component: string; outputs: string[] },
    end: Partial<Pick<SummaryFacts, 'status' | 'failure' | 'inputFraction' | 'positions'>> = {},
  ): RunSummary {
    const { plan, pipeline, runId } = this.#o;
    const read = counts[0] ?? 0;
    const operators: OperatorSummary[] = plan.stages.map((stage, k) => {
      const inCount = k === 0 ? read : counts[k - 1]!;
      const outCount = counts[k]!;
      return {
        name: stage.name,
        kind: stage.kind,
        component: stage.component,
        in: inCount,
        out: outCount,
        filtered: Math.max(0, inCount - outCount),
        failed: 0,
        ...(outCount > inCount ? { added: outCount - inCount } : {}),
        time_ms: k === 0 ? Math.round(times.count) : 0,
      };
    });
    const sink = pipeline.sinks[0]!;
    operators.push({
      name: sink.name,
      kind: 'sink',
      component: sink.component,
      in: written,
      out: written,
      filtered: 0,
      failed: 0,
      time_ms: Math.round(times.copy),
    });
    operators.push({
      name: 'errors',
      kind: 'errors',
      component: errors.component,
      in: 0,
      out: 0,
      filtered: 0,
      failed: 0,
      time_ms: 0,
    });
    return buildRunSummary({
      runId,
      pipeline: { name: pipeline.metadata.name, file: pipeline.file },
      engine: 'duckdb-pushdown',
      engineReasons: plan.notes,
      // No checkpoint is kept: the COPY is all or nothing, so a restart runs it again from the start.
      restartFrom: 'scratch',
      status: end.status ?? 'succeeded',
      failure: end.failure ?? null,
      startedAt,
      elapsedMs: performance.now() - this.#started,
      operators,
      skipped: 0,
      inputFraction: end.inputFraction ?? 1,
      outputs: { [sink.name]: outputs },
      errors: { count: 0, by_code: {}, outputs: errors.outputs },
      checkpoints: { count: 0, last_at: null },
      positions: end.positions ?? {},
      resumedFrom: null,
    });
  }
}

class Interrupted extends Error {}

/**
 * DuckDB keeps the row order of one file on every thread (`preserve_insertion_order`), but with
 * several files and several threads it may emit a later file's rows first (seen with two small
 * CSV files). The streaming engine reads files one after the other, so several files are read on
 * one thread.
 */
export function pushdownThreads(plan: Pick<PushdownEligible, 'sourceFiles'>): number {
  return plan.sourceFiles.length > 1 ? 1 : os.availableParallelism();
}

/**
 * What DuckDB's CSV reader (with the options pushdown gives it) reads differently from Sluice's,
 * found in the raw text (decompressed): a `\r` not followed by `\n` (a line end to DuckDB, data to
 * Sluice), and a quote next to spaces at a field boundary:
 * DuckDB's CSV reader skips spaces between a delimiter (or a line start) and an opening quote, and
 * between a closing quote and a delimiter (or a line end): `a, "b"` gives `b`. Sluice's reader
 * keeps ` "b"` as text in the first case and rejects the line in the second. Scans the raw text
 * (decompressed) for such a quote; a message naming the file when there is one. Conservative: a
 * quote next to a space inside a quoted field can match too, which only costs a fallback.
 */
export async function csvTextHazard(
  files: InputFile[],
  dialect: { quote: string; delimiter: string; compression: Compression },
): Promise<string | undefined> {
  const quote = Buffer.from(dialect.quote);
  const delimiter = Buffer.from(dialect.delimiter);
  const blanks = [' ', '\t'].filter((b) => b !== dialect.delimiter).map((b) => b.charCodeAt(0));
  const isBlank = (byte: number | undefined) => byte !== undefined && blanks.includes(byte);
  const patterns = blanks.flatMap((b) => [
    { bytes: Buffer.concat([Buffer.from([b]), quote]), before: true },
    { bytes: Buffer.concat([quote, Buffer.from([b])]), before: false },
  ]);
  /** A delimiter, a line end, or the end of the text at `at`. */
  const endsField = (buf: Buffer, at: number, last: boolean) =>
    (at >= buf.length && last) ||
    buf[at] === 10 ||
    buf[at] === 13 ||
    buf.subarray(at, at + delimiter.length).equals(delimiter);
  /** A delimiter or a line end just before `at`, or the start of the text. */
  const startsField = (buf: Buffer, at: number, first: boolean) =>
    (at === 0 && first) ||
    buf[at - 1] === 10 ||
    buf[at - 1] === 13 ||
    (at >= delimiter.length && buf.subarray(at - delimiter.length, at).equals(delimiter));
  const message = (file: InputFile) =>
    `${file.display}: a quote next to a space, which DuckDB's CSV reader skips and Sluice's keeps or rejects`;
  const CHUNK = 8 * 1024 * 1024;
  // One buffer for every read: fresh 8 MiB buffers cost more in page faults than the scan itself.
  const work = Buffer.allocUnsafe(CHUNK + 4096);
  for (const file of files) {
    // work[0, carryLen) holds the tail of the previous chunk: 1 KiB of look-behind, then the bytes
    // from carryFrom on that are not scanned yet (their context may be in the next chunk).
    let carryLen = 0;
    let carryFrom = 0;
    /** Whether work[0] is the start of the file. */
    let first = true;
    const scan = (buf: Buffer, from: number, to: number, last: boolean): string | undefined => {
      // A \r not followed by \n: a line end to DuckDB, data to Sluice.
      for (let at = buf.indexOf(13, from); at !== -1 && at < to; at = buf.indexOf(13, at + 1))
        if (at + 1 < buf.length ? buf[at + 1] !== 10 : last)
          return `${file.display}: a carriage return without a line feed, which DuckDB's CSV reader takes for a line end and Sluice's for data`;
      // Most chunks of most files: no quote at all (one memchr).
      const q = buf.indexOf(quote, from);
      if (q === -1 || q >= to + quote.length) return undefined;
      for (const { bytes, before } of patterns) {
        for (let at = buf.indexOf(bytes, from); at !== -1 && at < to; at = buf.indexOf(bytes, at + 1)) {
          let i = before ? at : at + bytes.length;
          if (before) while (i > 0 && isBlank(buf[i - 1])) i--;
          else while (i < buf.length && isBlank(buf[i])) i++;
          if (before ? startsField(buf, i, first) : endsField(buf, i, last)) return message(file);
        }
      }
      return undefined;
    };
    /** Scans work[0, len); a message when there is a hazard. */
    const step = (len: number, last: boolean): string | undefined => {
      const buf = work.subarray(0, len);
      const limit = last ? len : Math.max(carryFrom, len - 1024);
      const found = scan(buf, carryFrom, limit, last);
      if (found) return found;
      const keepFrom = Math.max(0, limit - 1024);
      work.copyWithin(0, keepFrom, len);
      carryLen = len - keepFrom;
      carryFrom = limit - keepFrom;
      if (keepFrom > 0) first = false;
      return undefined;
    };
    const decompressor = createDecompressor(dialect.compression);
    if (!decompressor) {
      const handle = await fsp.open(file.absolute, 'r');
      try {
        for (;;) {
          const { bytesRead } = await handle.read(work, carryLen, CHUNK, null);
          if (bytesRead === 0) break;
          const found = step(carryLen + bytesRead, false);
          if (found) return found;
        }
      } finally {
        await handle.close();
      }
    } else {
      const raw = fs.createReadStream(file.absolute, { highWaterMark: 1024 * 1024 });
      try {
        for await (const chunk of raw.pipe(decompressor) as AsyncIterable<Buffer>) {
          for (let off = 0; off < chunk.length; off += CHUNK) {
            const part = chunk.subarray(off, off + CHUNK);
            part.copy(work, carryLen);
            const found = step(carryLen + part.length, false);
            if (found) return found;
          }
        }
      } finally {
        raw.destroy();
        decompressor.destroy();
      }
    }
    const found = step(carryLen, true);
    if (found) return found;
  }
  return undefined;
}

interface ProfileNode {
  operator_type?: string;
  operator_name?: string;
  operator_cardinality?: number;
  children?: ProfileNode[];
}

/**
 * Records leaving every stage, from the COPY's profile: the plan is a chain (COPY ← projections
 * and one FILTER per filtering stage, in order ← the scan), so the scan's cardinality is the
 * records read and each FILTER's the records its stage kept. Undefined when the plan does not
 * have that shape (then the counts are queried).
 */
export function countsFromProfile(
  root: ProfileNode,
  stages: PushdownStage[],
  written: number,
): number[] | undefined {
  const chain: ProfileNode[] = [];
  for (let node: ProfileNode | undefined = root; node; node = node.children?.[0]) {
    if ((node.children?.length ?? 0) > 1) return undefined;
    if (node.operator_type || node.operator_name) chain.push(node);
  }
  const scan = chain.at(-1);
  if (scan?.operator_type !== 'TABLE_SCAN' || typeof scan.operator_cardinality !== 'number') return undefined;
  const filters = chain
    .filter((n) => n.operator_type === 'FILTER')
    .map((n) => n.operator_cardinality)
    .reverse();
  const filtering = stages.filter((s) => s.filters).length;
  if (filters.length !== filtering || filters.some((n) => typeof n !== 'number')) return undefined;
  const out: number[] = [];
  let f = 0;
  for (const [k, stage] of stages.entries()) {
    if (k === 0) out.push(scan.operator_cardinality);
    else out.push(stage.filters ? (filters[f++] as number) : out[k - 1]!);
  }
  return out.at(-1) === written ? out : undefined;
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}
