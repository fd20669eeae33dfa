import os from 'node:os';
import path from 'node:path';
import { type DuckDBConnection, type DuckDBInstance, quotedIdentifier, quotedString } from '@duckdb/node-api';
import { formatFromPath, type InputFile, listInputFiles } from '../connectors/file/paths.ts';
import { type FileSinkConfig, isSingleFilePath } from '../connectors/file/sink-definition.ts';
import type { FileSourceConfig } from '../connectors/file/source.ts';
import { isS3Url } from '../connectors/s3/client.ts';
import { type Compression, compressionExtension, compressionFromPath } from '../formats/compression.ts';
import { type CsvColumnType, csvSchema, headerNames } from '../formats/csv.ts';
import { toSluiceError } from '../sdk/errors.ts';
import type { RecordSchema } from '../sdk/types.ts';
import type { Pipeline } from '../spec/validate.ts';
import { createDuckDBInstance } from '../sql/duckdb.ts';
import { planQuery, ResultSchema } from '../sql/index.ts';

// biome-ignore lint/suspicious/noExplicitAny: DuckDB's serialized AST is untyped JSON
type Ast = any;

const MAX_SAFE = '9007199254740991';

/** Macros the pushdown query uses; they raise an error (→ fallback) where Sluice would differ. */
export const SETUP = [
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

export function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/**
 * DuckDB keeps the row order of one file on every thread (`preserve_insertion_order`), but with
 * several files and several threads it may emit a later file's rows first (seen with two small
 * CSV files). The streaming engine reads files one after the other, so several files are read on
 * one thread.
 */
export function pushdownThreads(plan: Pick<PushdownEligible, 'sourceFiles'>): number {
  return plan.sourceFiles.length > 1 ? 1 : os.availableParallelism();
}
