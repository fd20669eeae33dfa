/**
 * Pushdown, the run: one DuckDB COPY of a pipeline that planPushdown (pushdown.ts) accepted, its
 * counts and the fixes that give its output the streaming engine's types, then a rename. DuckDB
 * stopping on a value is a fallback (the streaming engine runs the pipeline).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type DuckDBConnection, type DuckDBInstance, quotedIdentifier, quotedString } from '@duckdb/node-api';
import { fileSink } from '../connectors/file/index.ts';
import type { InputFile } from '../connectors/file/paths.ts';
import { type Compression, createDecompressor } from '../formats/compression.ts';
import { toSluiceError } from '../sdk/errors.ts';
import type { ComponentContext, Logger, SinkDefinition, SinkInstance } from '../sdk/types.ts';
import type { Pipeline } from '../spec/validate.ts';
import { createDuckDBInstance } from '../sql/duckdb.ts';
import { defaultErrorsConfig } from './errors-location.ts';
import { firstLine, type PushdownEligible, type PushdownStage, pushdownThreads, SETUP } from './pushdown.ts';
import type { RunProgress } from './run.ts';
import type { OperatorSummary } from './stats.ts';
import { buildRunSummary, type RunSummary, type SummaryFacts } from './summary.ts';

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
