import type { z } from 'zod';
import type { SluiceError } from './errors.ts';

/** A record's value is a row: field names to values (nested objects and arrays allowed). */
export type RecordValue = Record<string, unknown>;

/**
 * Where a record came from, Kafka Connect style: a source partition (a file path, a topic
 * partition, a table split) and an offset inside it. Offsets only increase within a partition;
 * the engine saves the latest per partition as the checkpoint, so a source never persists state.
 */
export interface Position {
  partition: string;
  offset: number;
}

export interface RecordMeta {
  key?: unknown;
  headers?: Record<string, string>;
  position?: Position;
  /** Event time in milliseconds since the epoch. */
  eventTime?: number;
}

export interface SluiceRecord<V extends RecordValue = RecordValue> {
  value: V;
  meta: RecordMeta;
}

/**
 * A record that could not be processed. It becomes an error record in the errors sink; it is
 * never dropped. `raw` carries the undecoded input (a CSV line, a JSON line) when there is no record.
 */
export interface Rejection {
  record?: SluiceRecord;
  raw?: string;
  position?: Position;
  error: SluiceError;
  attempts?: number;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** What every component is handed when it is created. */
export interface ComponentContext {
  /** Aborted when the run is cancelled hard (second signal) or fails. */
  signal: AbortSignal;
  logger: Logger;
  /** Directory of the spec file: relative paths in a config resolve against it. */
  baseDir: string;
  pipelineName: string;
  runId: string;
  /** Records per batch the engine asks for (settings.batch_size). */
  batchSize: number;
  /**
   * Given to the source of a resumed run: per partition, the last offset an earlier attempt
   * committed. A source may use it to seek past what was committed; the engine drops records at
   * or before these offsets anyway, so a source that ignores it is still correct, only slower.
   */
  resume?: Readonly<Record<string, number>>;
}

// ---------------------------------------------------------------- schemas

/**
 * The SQL types of a batch's fields where they are known (declared CSV columns, the result types
 * of a sql step): field name → DuckDB type (`DATE`, `INTEGER`, `DECIMAL(10,2)`,
 * `TIMESTAMP WITH TIME ZONE`, `INTEGER[]`, ...). A typed sink (Parquet) gives those columns these
 * types; fields it does not name are typed by their values. It travels with the batch.
 */
export type RecordSchema = Readonly<Record<string, string>>;

// ---------------------------------------------------------------- sources

export interface SourceBatch {
  records: SluiceRecord[];
  /** Input that could not be decoded: it goes to the errors sink, counted as failed by the source. */
  rejected?: Rejection[];
  /** The declared types of the records' fields, when the source knows them. */
  schema?: RecordSchema;
}

export interface SourceProgress {
  bytesRead?: number;
  bytesTotal?: number;
  /** Records the source yields in this run: without those it seeks past when it resumes. */
  recordsTotal?: number;
}

export interface SourceInstance {
  /** Yields batches until the input ends (bounded) or the signal aborts. Records carry positions. */
  read(): AsyncIterable<SourceBatch>;
  /** How far the source is, for progress and ETA. Cheap: called several times a second. */
  progress?(): SourceProgress;
  /**
   * Optional: told, after each checkpoint is saved (and its output published), the positions the
   * sinks now hold: per partition, the last offset covered. A source that keeps its place outside
   * Sluice (a Kafka consumer group) commits it here, so that it never commits records the sinks
   * may not have. Not called for checkpoints a run cannot resume from. A rejection is logged.
   */
  commit?(positions: Readonly<Record<string, number>>): Promise<void>;
  /** Releases resources. Must be idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------- steps

export interface StepResult {
  records: SluiceRecord[];
  rejected?: Rejection[];
  /** The types of the output's fields, when the step knows them (a sql step's result types). */
  schema?: RecordSchema;
}

export interface StepInstance {
  /**
   * Maps a batch to a batch. Records not returned and not rejected count as filtered. `schema`
   * is the input batch's schema, when it has one.
   */
  process(batch: SluiceRecord[], schema?: RecordSchema): StepResult | Promise<StepResult>;
  /**
   * True for a step that passes its input records on unchanged or drops them (a filter, a
   * validation): the engine hands its output the input's schema. Otherwise the output has only
   * the schema the step's result gives.
   */
  readonly keepsRecords?: boolean;
  /**
   * Called once when the input has ended, for steps that hold records back (set-level SQL). It may
   * return the held-back output at once or yield it in batches. A step with `finish` reports no
   * filtered records: its output does not answer batch by batch to its input.
   */
  finish?(): StepResult | Promise<StepResult> | AsyncIterable<StepResult>;
  close?(): Promise<void>;
  /**
   * For a step that waits on I/O (one HTTP call per record): how many batches the engine may hand
   * to `process` before the first of them has returned, so that calls of several batches are in
   * flight at once. `ordered: true` emits the results batch by batch in input order; `false` emits
   * each batch's result as soon as it is ready. A checkpoint barrier waits for every batch before
   * it either way. Default: one batch at a time.
   */
  readonly inFlight?: { batches: number; ordered: boolean };
  /**
   * Optional: the step's own counters (requests by status, cache hits, ...), JSON-serialisable.
   * Read when the run summary is made (after `close`), and shown under the step's `metrics`.
   */
  metrics?(): Record<string, unknown>;
}

// ---------------------------------------------------------------- sinks

export interface SinkWriteResult {
  rejected?: Rejection[];
}

export interface SinkInstance {
  /**
   * Writes a batch. Throwing a retriable SluiceError makes the engine retry the whole batch, so a
   * write that throws must have written nothing that a retry would duplicate. Records the sink
   * refuses individually are returned as rejected.
   */
  write(batch: SluiceRecord[], schema?: RecordSchema): Promise<SinkWriteResult | undefined>;
  /** Makes everything written so far durable and visible (called on checkpoint, unless the sink has two-phase commit). */
  commit(): Promise<void>;
  /**
   * Set to false by a sink instance whose output becomes durable only at `close()`, so that
   * neither `commit()` nor two-phase commit can make it durable mid-run (one file renamed into
   * place at the end: a file sink with a single-file `path`). A checkpoint could then name records
   * that a kill loses, so a pipeline with such a sink (the errors sink included) neither commits
   * nor saves a checkpoint before its input ends, and a resume of it starts from scratch, with a
   * warning naming the sink. Unset means true.
   */
  readonly durableCommits?: boolean;
  /** Commits and releases resources. Must be idempotent. */
  close(): Promise<void>;
  /** Discards what was not committed (temporary files, open transactions). Must be idempotent. */
  abort(): Promise<void>;
  /** Final names of what this sink made visible, for the summary. */
  outputs?(): string[];
  /**
   * Two-phase commit, phase one (optional, with `commitPrepared`). Makes everything written so far
   * durable but not yet visible (part files finished under their temporary names) and returns a
   * JSON-serialisable token naming what `commitPrepared` will publish. The engine saves the token
   * in the checkpoint before it calls `commitPrepared`, so output is published only once the
   * checkpoint covering its records is saved: a crash before the save publishes nothing (the
   * records are read again), a crash after it is completed on resume. A sink with these two
   * methods is not asked to `commit()` at checkpoints. `abort()` must leave prepared output in
   * place: a saved checkpoint may name it.
   */
  prepareCommit?(): Promise<unknown>;
  /**
   * Two-phase commit, phase two: publishes what `prepareCommit` returned `token` for. Idempotent:
   * output already published is left as it is. Also called on a fresh instance (same config, maybe
   * another process and run id) with the token from the checkpoint a run resumes from, before
   * anything is read, to finish what a killed attempt prepared; it may then clean up that
   * attempt's temporary output the token does not name.
   */
  commitPrepared?(token: unknown): Promise<void>;
}

// ---------------------------------------------------------------- definitions

export interface ComponentExample {
  title: string;
  /** The component's config as YAML, exactly as it stands under the component's name in a spec. */
  yaml: string;
}

interface DefinitionBase<C extends z.ZodType> {
  name: string;
  summary: string;
  description?: string;
  /** The single source of validation, types, the JSON Schema and the reference docs. */
  config: C;
  /** When the config may be written as a bare string, the field that string fills (`sql: SELECT ...`). */
  shorthand?: string;
  examples: ComponentExample[];
  /**
   * Checks that need more than the schema (a SQL expression that must parse). Issues carry a path
   * relative to the component's config.
   */
  check?(config: z.output<C>, ctx: { baseDir: string }): Promise<ConfigIssue[]>;
  /**
   * The local files, folders and globs the config names (not `s3://` URLs), so that the control
   * plane can keep them inside its workspace before anything is read.
   */
  paths?(config: z.output<C>): ConfigPath[];
  /** True for a component that runs code the spec names (a module): the control plane refuses it unless allowed. */
  runsCode?: boolean;
}

export interface ConfigPath {
  /** Where the path is, relative to the component's config. */
  path: (string | number)[];
  value: string;
}

export interface ConfigIssue {
  path: (string | number)[];
  message: string;
  /** A character offset inside the string at `path` (a SQL expression), for a precise column. */
  offset?: number;
}

export interface SourceDefinition<C extends z.ZodType = z.ZodType> extends DefinitionBase<C> {
  kind: 'source';
  /** False for sources that never end by themselves (a rate-limited generator with no count). */
  bounded(config: z.output<C>): boolean;
  create(config: z.output<C>, ctx: ComponentContext): SourceInstance | Promise<SourceInstance>;
}

/** Why a step cannot run on unbounded input, located in its config for the spec's line:column. */
export interface BoundedInputNeed {
  /** What needs the whole input, e.g. "GROUP BY needs the whole input". */
  reason: string;
  /** The config field it is in (relative to the step's config), e.g. ['query']. */
  path: (string | number)[];
  /** A character offset inside the string at `path` (a SQL query). */
  offset?: number;
}

/** How a step would run its config: which engine, and the construct that decided it. */
export interface StepExplanation {
  /** `compiled` (JavaScript per record), `duckdb-batch` (DuckDB per record, in micro-batches), `duckdb-set` (DuckDB over the whole input). */
  path: string;
  /** One sentence naming the construct that decided it. */
  reason: string;
}

export interface StepDefinition<C extends z.ZodType = z.ZodType> extends DefinitionBase<C> {
  kind: 'step';
  create(config: z.output<C>, ctx: ComponentContext): StepInstance | Promise<StepInstance>;
  /**
   * Set for steps that can need the whole input (set-level SQL): the reason when this config does,
   * else undefined. Validation refuses such a step on an unbounded source. Called only on a
   * config that passed `check`.
   */
  needsBoundedInput?(config: z.output<C>, ctx: { baseDir: string }): Promise<BoundedInputNeed | undefined>;
  /** Which engine runs this config and why (`sluice explain`, planners). */
  explain?(config: z.output<C>, ctx: { baseDir: string }): Promise<StepExplanation>;
}

export interface SinkDefinition<C extends z.ZodType = z.ZodType> extends DefinitionBase<C> {
  kind: 'sink';
  create(config: z.output<C>, ctx: ComponentContext): SinkInstance | Promise<SinkInstance>;
}

export type ComponentDefinition = SourceDefinition | StepDefinition | SinkDefinition;
export type ComponentKind = ComponentDefinition['kind'];
