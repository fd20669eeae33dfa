import { setTimeout as sleep } from 'node:timers/promises';
import { fileSink } from '../connectors/file/index.ts';
import { SluiceError, toSluiceError } from '../sdk/errors.ts';
import type {
  ComponentContext,
  Logger,
  Position,
  RecordSchema,
  Rejection,
  SinkInstance,
  SluiceRecord,
  SourceInstance,
  SourceProgress,
  StepInstance,
  StepResult,
} from '../sdk/types.ts';
import { backoffDelay } from '../shared/backoff.ts';
import { parseDuration } from '../spec/duration.ts';
import type { Pipeline, SinkUse } from '../spec/validate.ts';
import { type CompiledCondition, compileCondition } from '../sql/index.ts';
import type { PendingCommits } from './checkpoint-store.ts';
import { ErrorChannel } from './error-channel.ts';
import { defaultErrorsConfig } from './errors-location.ts';
import { BoundedQueue } from './queue.ts';
import { countProblems, OperatorStats } from './stats.ts';
import { buildRunSummary, type RunStatus, type RunSummary } from './summary.ts';

export type { RunStatus, RunSummary } from './summary.ts';

export interface RunProgress {
  elapsedMs: number;
  read: number;
  /** Records a resumed run dropped because an earlier attempt had committed them. */
  skipped: number;
  written: number;
  failed: number;
  filtered: number;
  source: SourceProgress;
}

/** How much of a bounded input a run has consumed (0..1), when its source can tell. */
export function inputFraction(p: RunProgress): number | null {
  const { bytesRead, bytesTotal, recordsTotal } = p.source;
  if (bytesTotal && bytesRead !== undefined) return Math.min(1, bytesRead / bytesTotal);
  if (recordsTotal) return Math.min(1, (p.read + p.skipped) / recordsTotal);
  return null;
}

export interface RunSnapshot {
  /** Source, steps, route, sinks and the errors sink, in pipeline order. */
  operators: OperatorStats[];
  /** The queue in front of each step and of the sinks. */
  queues: { size: number; capacity: number }[];
  lastCheckpointAt: number | null;
}

/** Where a run resumes: what an earlier attempt's last checkpoint holds. */
export interface ResumePoint {
  /** Per source partition, the last committed offset: records and rejections at or before it are skipped. */
  positions: Record<string, number>;
  /** Output that attempt prepared for the checkpoint: published before anything is read. */
  pending?: PendingCommits | undefined;
}

export interface RunOptions {
  pipeline: Pipeline;
  runId: string;
  /** Where the default errors sink writes (part files in `errors/`). */
  runDir: string;
  logger: Logger;
  /**
   * An earlier attempt's last checkpoint. Ignored, with a warning, when a step holds records
   * until the input ends or a sink makes its output durable only when it closes
   * (`durableCommits: false`): such a run starts from scratch.
   */
  resume?: ResumePoint;
  /**
   * Persists a checkpoint: the committed positions, and the output of two-phase-commit sinks
   * prepared for them (`pending`), which the engine publishes only once this returns; save both
   * together and hand them back as `resume`. Called at each barrier (final false), and once at the
   * end: final true after a successful run, false after a graceful stop. With a step that holds
   * records back or a sink durable only at close, only the successful end calls it. A failure
   * fails the run with SLUICE_CHECKPOINT.
   */
  onCheckpoint?: (
    positions: Record<string, number>,
    final: boolean,
    pending: PendingCommits,
  ) => Promise<void>;
  /** Why this run is on the streaming engine (the pushdown's reasons), for the summary. */
  engineReasons?: readonly string[];
}

type QueueItem =
  | { kind: 'batch'; records: SluiceRecord[]; schema?: RecordSchema | undefined }
  | { kind: 'barrier'; positions: Map<string, number> };

interface SinkSlot {
  use: SinkUse;
  instance: SinkInstance;
  stats: OperatorStats;
  route?: CompiledCondition;
}

/**
 * One run of a pipeline: source → steps → router → sinks, joined by bounded queues, with an
 * errors sink beside them. `stop()` drains gracefully (stop reading, finish what is in flight,
 * commit); `abort()` stops at once and discards what was not committed.
 */
export class PipelineRun {
  readonly #options: RunOptions;
  readonly #pipeline: Pipeline;
  readonly #stopSource = new AbortController();
  readonly #hardStop = new AbortController();
  readonly #queues: BoundedQueue<QueueItem>[] = [];
  readonly #positions = new Map<string, number>();
  #committedPositions = new Map<string, number>();
  #failure: SluiceError | undefined;
  #interrupted = false;
  #started = 0;
  #sourceStats: OperatorStats;
  #stepStats: OperatorStats[];
  #routeStats: OperatorStats | undefined;
  #sinkSlots: SinkSlot[] = [];
  #errors: ErrorChannel | undefined;
  #errorSink: SinkInstance | undefined;
  #source: SourceInstance | undefined;
  #checkpoints = 0;
  #lastCheckpoint: Date | undefined;
  /** Resume offsets of partitions whose records may still be skipped; emptied as the source passes them. */
  #resume = new Map<string, number>();
  #resumedFrom: Record<string, number> | null = null;
  #skipped = 0;
  /** The first step that holds records until the input ends: no mid-run checkpoints, no resume. */
  #holdingStep: string | undefined;
  /**
   * The first sink, the errors sink included, whose output becomes durable only when it closes
   * (`durableCommits: false`): no mid-run commits or checkpoints, no resume.
   */
  #closeOnlySink: string | undefined;

  constructor(options: RunOptions) {
    this.#options = options;
    this.#pipeline = options.pipeline;
    this.#sourceStats = new OperatorStats('source', 'source', this.#pipeline.source.component);
    this.#stepStats = this.#pipeline.steps.map((s) => new OperatorStats(s.name, 'step', s.component));
    if (this.#pipeline.sinks.some((s) => s.route !== undefined)) {
      this.#routeStats = new OperatorStats('route', 'route', 'route');
    }
  }

  /** Graceful stop (first SIGINT): stop reading, drain what is in flight, commit, report. */
  stop(): void {
    if (this.#stopSource.signal.aborted) return;
    this.#interrupted = true;
    this.#options.logger.warn('stopping: no more records will be read; draining and committing');
    this.#stopSource.abort();
  }

  /** Hard stop (second SIGINT): end at once, discard uncommitted output. Error records are kept. */
  abort(): void {
    this.#interrupted = true;
    this.#fail(new SluiceError('SLUICE_INTERRUPTED', 'stopped at once by a second signal'));
  }

  progress(): RunProgress {
    return {
      elapsedMs: this.#started ? performance.now() - this.#started : 0,
      read: this.#sourceStats.out,
      skipped: this.#skipped,
      written: this.#sinkSlots.reduce((n, s) => n + s.stats.out, 0),
      failed: this.#errors?.total ?? 0,
      filtered: this.#stepStats.reduce((n, s) => n + s.filtered, 0),
      source: this.#source?.progress?.() ?? {},
    };
  }

  /** Live per-operator counters, queue depths and checkpoint time, for metrics (cheap). */
  snapshot(): RunSnapshot {
    return {
      operators: [
        this.#sourceStats,
        ...this.#stepStats,
        ...(this.#routeStats ? [this.#routeStats] : []),
        ...this.#sinkSlots.map((s) => s.stats),
        ...(this.#errors ? [this.#errors.stats] : []),
      ],
      queues: this.#queues.map((q) => ({ size: q.size, capacity: q.capacity })),
      lastCheckpointAt: this.#lastCheckpoint?.getTime() ?? null,
    };
  }

  async run(): Promise<RunSummary> {
    const startedAt = new Date();
    this.#started = performance.now();
    const steps: StepInstance[] = [];
    try {
      await this.#open(steps);
      await this.#execute(steps);
      this.#errors?.checkAtEnd();
      if (this.#failure) throw this.#failure;
      // After a graceful stop a holding step emitted results over part of the input, and a sink
      // durable only at close published what it had: a resume starts from scratch, so save nothing.
      const save = !this.#interrupted || !this.#notResumable();
      await this.#commitAll(new Map(this.#positions), save ? { final: !this.#interrupted } : undefined, true);
    } catch (err) {
      this.#recordFailure(err);
      await this.#cleanUpAfterFailure();
    } finally {
      await Promise.allSettled(steps.map((s) => s.close?.()));
      await this.#source?.close().catch(() => {});
    }
    const summary = this.#summary(startedAt);
    // The engine counts every record once: a summary that does not add up is Sluice's bug, said aloud.
    const problems = countProblems(summary);
    if (problems.length) this.#options.logger.warn('the run counts do not add up', { problems });
    return summary;
  }

  async #open(steps: StepInstance[]): Promise<void> {
    const { pipeline, runId, logger } = this.#options;
    const ctx = (signal: AbortSignal): ComponentContext => ({
      signal,
      logger,
      baseDir: pipeline.baseDir,
      pipelineName: pipeline.metadata.name,
      runId,
      batchSize: pipeline.settings.batch_size,
    });
    const sourceSignal = AbortSignal.any([this.#stopSource.signal, this.#hardStop.signal]);
    const errorsUse = pipeline.errors ?? {
      def: fileSink,
      component: 'file',
      name: 'errors',
      config: fileSink.config.parse(defaultErrorsConfig(this.#options.runDir)),
      path: ['errors'],
    };
    // The default errors folder lives in the run directory whatever the spec's directory is.
    const errorsCtx = pipeline.errors
      ? ctx(this.#hardStop.signal)
      : { ...ctx(this.#hardStop.signal), baseDir: '/' };
    const errorSink = await errorsUse.def.create(errorsUse.config as never, errorsCtx);
    this.#errorSink = errorSink;
    this.#errors = new ErrorChannel({
      sink: errorSink,
      stats: new OperatorStats('errors', 'errors', errorsUse.component),
      policy: pipeline.settings.error_policy,
      pipeline: pipeline.metadata.name,
      runId,
      recordsRead: () => this.#sourceStats.in,
      onLimit: (error) => this.#fail(error),
    });
    for (const use of pipeline.sinks) {
      const instance = await use.def.create(use.config as never, ctx(this.#hardStop.signal));
      this.#sinkSlots.push({
        use,
        instance,
        stats: new OperatorStats(use.name, 'sink', use.component),
        ...(use.route !== undefined ? { route: await compileCondition(use.route) } : {}),
      });
    }
    for (const use of pipeline.steps)
      steps.push(await use.def.create(use.config as never, ctx(this.#hardStop.signal)));
    steps.forEach((step, i) => {
      if (step.metrics) this.#stepStats[i]!.metrics = () => step.metrics!();
    });
    const holding = steps.findIndex((s) => s.finish !== undefined);
    this.#holdingStep = holding < 0 ? undefined : pipeline.steps[holding]?.name;
    const closeOnly = this.#sinkSlots.find((s) => s.instance.durableCommits === false);
    this.#closeOnlySink = closeOnly
      ? `sink ${closeOnly.use.name} (${closeOnly.use.component})`
      : errorSink.durableCommits === false
        ? `the errors sink (${errorsUse.component})`
        : undefined;
    const sourceCtx = ctx(sourceSignal);
    const resume = this.#options.resume?.positions;
    const notResumable = this.#notResumable();
    if (resume && notResumable) {
      // A holding step's output depends on the whole input: skipping what was committed would
      // change it. A sink durable only at close lost what the earlier attempt wrote to it. Pending
      // output is not published either: the run writes all of it again.
      if (Object.keys(resume).length)
        logger.warn(`not resuming: the run starts from scratch because ${notResumable}`, { resume });
    } else if (resume) {
      // Before anything is read: the checkpoint's positions count the prepared output as written.
      await this.#completePending(this.#options.resume?.pending);
      this.#resumedFrom = { ...resume };
      for (const [partition, offset] of Object.entries(resume)) {
        this.#resume.set(partition, offset);
        this.#positions.set(partition, offset);
      }
      // A run that reads nothing new still reports (and checkpoints) where it resumed from.
      this.#committedPositions = new Map(this.#positions);
      sourceCtx.resume = Object.freeze({ ...resume });
    }
    this.#source = await pipeline.source.def.create(pipeline.source.config as never, sourceCtx);
  }

  /** Why a checkpoint of this run could not be resumed from, or undefined when it could. */
  #notResumable(): string | undefined {
    if (this.#holdingStep) return `step ${this.#holdingStep} holds records until the input ends`;
    if (this.#closeOnlySink)
      return `${this.#closeOnlySink} makes its output durable only when the run ends (durableCommits: false), so no checkpoint can cover its records`;
    return undefined;
  }

  async #execute(steps: StepInstance[]): Promise<void> {
    const depth = this.#pipeline.settings.queue_depth;
    for (let i = 0; i <= steps.length; i++) this.#queues.push(new BoundedQueue<QueueItem>(depth));
    const loops = [
      this.#sourceLoop(this.#queues[0]!),
      ...steps.map((step, i) =>
        this.#stepLoop(step, this.#stepStats[i]!, this.#queues[i]!, this.#queues[i + 1]!),
      ),
      this.#sinkLoop(this.#queues[steps.length]!),
    ];
    // Fail at once: a loop that stopped consuming would leave the one before it blocked on a full queue.
    await Promise.all(loops.map((loop) => loop.catch((err: unknown) => this.#fail(err))));
    if (this.#failure) throw this.#failure;
  }

  /**
   * Keeps the first failure. A sink whose reader went away (SLUICE_OUTPUT_CLOSED) is a stop, not
   * a failure of the records: the run ends interrupted at its last checkpoint, like a kill.
   */
  #recordFailure(reason: unknown): void {
    if (this.#failure) return;
    this.#failure = toSluiceError(reason);
    if (this.#failure.code === 'SLUICE_OUTPUT_CLOSED') this.#interrupted = true;
  }

  #fail(reason: unknown): void {
    this.#recordFailure(reason);
    this.#stopSource.abort();
    this.#hardStop.abort(this.#failure);
    for (const q of this.#queues) q.fail(this.#failure);
  }

  async #sourceLoop(out: BoundedQueue<QueueItem>): Promise<void> {
    const source = this.#source!;
    const stats = this.#sourceStats;
    const origin = { stage: 'source' as const, operator: 'source', component: stats.component };
    const interval = parseDuration(this.#pipeline.settings.checkpoint_interval) ?? 60_000;
    let lastBarrier = performance.now();
    const iterator = source.read()[Symbol.asyncIterator]();
    const signal = this.#stopSource.signal;
    /** Barriers sent so far: the epoch this loop's error records belong to. */
    let epoch = 0;
    try {
      for (;;) {
        const started = performance.now();
        const next = await nextOrStop(iterator, signal);
        if (next === undefined || next.done) break;
        let { records, rejected } = next.value;
        const { schema } = next.value;
        if (this.#resume.size) ({ records, rejected } = this.#skipCommitted(records, rejected));
        const failed = rejected?.length ?? 0;
        stats.count(records.length + failed, records.length, failed, performance.now() - started);
        for (const record of records) this.#advance(record.meta.position);
        if (rejected?.length) {
          for (const r of rejected) this.#advance(r.position ?? r.record?.meta.position);
          await this.#errors!.report(origin, rejected, epoch);
        }
        if (records.length) await out.push({ kind: 'batch', records, schema });
        if (performance.now() - lastBarrier >= interval) {
          lastBarrier = performance.now();
          await out.push({ kind: 'barrier', positions: new Map(this.#positions) });
          epoch++;
        }
      }
    } finally {
      out.close();
    }
  }

  /**
   * Drops what an earlier attempt committed: records and rejections at or before the resume offset
   * of their partition. Whatever has no position is kept, as nothing says it was committed.
   */
  #skipCommitted(
    records: SluiceRecord[],
    rejected: Rejection[] | undefined,
  ): { records: SluiceRecord[]; rejected: Rejection[] | undefined } {
    const resume = this.#resume;
    const passed = new Set<string>();
    const committed = (position: Position | undefined): boolean => {
      if (!position) return false;
      const offset = resume.get(position.partition);
      if (offset === undefined) return false;
      if (position.offset <= offset) return true;
      passed.add(position.partition);
      return false;
    };
    const keptRecords = records.filter((r) => !committed(r.meta.position));
    const keptRejected = rejected?.filter((r) => !committed(r.position ?? r.record?.meta.position));
    this.#skipped +=
      records.length - keptRecords.length + (rejected?.length ?? 0) - (keptRejected?.length ?? 0);
    // Offsets only increase within a partition from one batch to the next: once a batch went past
    // the resume offset, no later record of that partition can be at or before it.
    for (const partition of passed) resume.delete(partition);
    return { records: keptRecords, rejected: keptRejected };
  }

  /** Positions only move forward: a batch's rejections may sit before its last record. */
  #advance(position: Position | undefined): void {
    if (!position) return;
    const current = this.#positions.get(position.partition);
    if (current === undefined || position.offset > current)
      this.#positions.set(position.partition, position.offset);
  }

  async #stepLoop(
    step: StepInstance,
    stats: OperatorStats,
    input: BoundedQueue<QueueItem>,
    out: BoundedQueue<QueueItem>,
  ): Promise<void> {
    const origin = { stage: 'step' as const, operator: stats.name, component: stats.component };
    // a step that holds records back (set-level SQL) pairs no output with its input: what it does
    // not emit per batch is held, not filtered
    const holds = step.finish !== undefined;
    /** Barriers forwarded so far: the epoch this step's error records belong to. */
    let epoch = 0;
    // A step that keeps its input records hands on their schema; any other gives its own, if any.
    const emit = async (inCount: number, result: StepResult, started: number, input?: RecordSchema) => {
      const failed = result.rejected?.length ?? 0;
      stats.count(inCount, result.records.length, failed, performance.now() - started, !holds);
      if (failed) await this.#errors!.report(origin, result.rejected!, epoch);
      const schema = result.schema ?? (step.keepsRecords ? input : undefined);
      if (result.records.length) await out.push({ kind: 'batch', records: result.records, schema });
    };
    // Batches handed to the step and not emitted yet (at most inFlight.batches; one without it).
    const pending = new Set<Promise<void>>();
    type Done = { inCount: number; result: StepResult; started: number; schema?: RecordSchema | undefined };
    const ready: Done[] = [];
    const maxInFlight = Math.max(1, step.inFlight?.batches ?? 1);
    const ordered = step.inFlight?.ordered ?? true;
    const queue: Promise<Done>[] = [];
    /** Emits the oldest batch (ordered) or the first one finished (unordered). */
    const emitOne = async () => {
      if (ordered) {
        const done = await queue.shift()!;
        await emit(done.inCount, done.result, done.started, done.schema);
        return;
      }
      if (!ready.length) await Promise.race(pending);
      const done = ready.shift()!;
      await emit(done.inCount, done.result, done.started, done.schema);
    };
    const inFlight = () => (ordered ? queue.length : pending.size + ready.length);
    try {
      for await (const item of input) {
        if (item.kind === 'barrier') {
          // The barrier's positions cover every batch before it: those are all emitted first.
          while (inFlight()) await emitOne();
          await out.push(item);
          epoch++;
          continue;
        }
        const started = performance.now();
        if (maxInFlight === 1) {
          await emit(
            item.records.length,
            await step.process(item.records, item.schema),
            started,
            item.schema,
          );
          continue;
        }
        const inCount = item.records.length;
        const { schema } = item;
        const result = Promise.resolve()
          .then(() => step.process(item.records, schema))
          .then((r): Done => ({ inCount, result: r, started, schema }));
        if (ordered) {
          // Settled later by emitOne; a rejection must not go unhandled meanwhile.
          result.catch(() => {});
          queue.push(result);
        } else {
          const tracked: Promise<void> = result.then((done) => {
            pending.delete(tracked);
            ready.push(done);
          });
          tracked.catch(() => {});
          pending.add(tracked);
        }
        while (inFlight() >= maxInFlight) await emitOne();
      }
      while (inFlight()) await emitOne();
      if (step.finish && !this.#failure) {
        let started = performance.now();
        const finished = step.finish();
        if (isAsyncIterable(finished)) {
          for await (const result of finished) {
            await emit(0, result, started);
            if (this.#failure) break;
            started = performance.now();
          }
        } else {
          await emit(0, await finished, started);
        }
        if (!this.#failure) stats.settle();
      }
    } finally {
      out.close();
    }
  }

  async #sinkLoop(input: BoundedQueue<QueueItem>): Promise<void> {
    let epoch = 0;
    for await (const item of input) {
      if (item.kind === 'barrier') {
        await this.#checkpoint(item.positions);
        // Error records upstream operators reported past this barrier may be written now.
        await this.#errors!.advance(++epoch);
        continue;
      }
      const routed = this.#route(item.records);
      if (routed.rejected.length) {
        await this.#errors!.report(
          { stage: 'route', operator: 'route', component: 'route' },
          routed.rejected,
        );
      }
      await Promise.all(this.#sinkSlots.map((slot, i) => this.#write(slot, routed.perSink[i]!, item.schema)));
    }
  }

  /**
   * Sends each record to every sink whose route accepts it. A record no route accepts, or one a
   * route condition fails on (a bad cast), is rejected as a whole: it goes to no sink, so it is
   * never half-delivered.
   */
  #route(records: SluiceRecord[]): { perSink: SluiceRecord[][]; rejected: Rejection[] } {
    if (!this.#routeStats) return { perSink: this.#sinkSlots.map(() => records), rejected: [] };
    const started = performance.now();
    const perSink: SluiceRecord[][] = this.#sinkSlots.map(() => []);
    const rejected: Rejection[] = [];
    const targets: number[] = [];
    for (const record of records) {
      targets.length = 0;
      let failure: SluiceError | undefined;
      for (const [i, slot] of this.#sinkSlots.entries()) {
        try {
          if (!slot.route || slot.route(record.value)) targets.push(i);
        } catch (err) {
          const cause = toSluiceError(err);
          failure = new SluiceError(cause.code, `route of sink ${slot.use.name}: ${cause.message}`, {
            cause,
            details: { ...cause.details, sink: slot.use.name, route: slot.use.route },
          });
          break;
        }
      }
      if (failure) rejected.push({ record, error: failure });
      else if (!targets.length)
        rejected.push({
          record,
          error: new SluiceError('SLUICE_ROUTE_UNMATCHED', 'the record matched no sink route'),
        });
      else for (const i of targets) perSink[i]!.push(record);
    }
    this.#routeStats.count(
      records.length,
      records.length - rejected.length,
      rejected.length,
      performance.now() - started,
    );
    return { perSink, rejected };
  }

  /**
   * Writes with retries for retriable errors (exponential backoff, full jitter). A batch the sink
   * refuses with a non-retriable error goes to the errors sink; a retriable one that outlasts the
   * retries fails the run.
   */
  async #write(slot: SinkSlot, records: SluiceRecord[], schema: RecordSchema | undefined): Promise<void> {
    if (!records.length) return;
    const { attempts, initial_backoff, max_backoff } = this.#pipeline.settings.sink_retry;
    const base = parseDuration(initial_backoff) ?? 100;
    const cap = parseDuration(max_backoff) ?? 10_000;
    const origin = { stage: 'sink' as const, operator: slot.use.name, component: slot.use.component };
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      try {
        const result = await slot.instance.write(records, schema);
        const failed = result?.rejected?.length ?? 0;
        slot.stats.count(records.length, records.length - failed, failed, performance.now() - started);
        if (failed) await this.#errors!.report(origin, result!.rejected!);
        return;
      } catch (err) {
        const error = toSluiceError(err, 'SLUICE_SINK_IO');
        // Rolled back: records of earlier batches are gone with the sink's transaction; retrying
        // this batch, or sending it to the errors sink, would let the next checkpoint commit past
        // the lost ones. Output closed: nobody reads it any more, and the records are not in error.
        if (
          this.#hardStop.signal.aborted ||
          error.code === 'SLUICE_SINK_ROLLED_BACK' ||
          error.code === 'SLUICE_OUTPUT_CLOSED'
        )
          throw error;
        // Out of retries, a retriable error is the sink's trouble (a broker or database away), not
        // the records': the run fails and is restarted from its checkpoint (settings.restart)
        // instead of sending good records to the errors sink.
        if (error.retriable && attempt >= attempts) throw error;
        if (error.retriable) {
          const wait = backoffDelay(attempt, { baseMs: base, maxMs: cap, jitter: 'full' });
          this.#options.logger.warn(`sink ${slot.use.name}: write failed, retrying`, {
            attempt,
            of: attempts,
            wait_ms: Math.round(wait),
            error: error.message,
          });
          await sleep(wait, undefined, { signal: this.#hardStop.signal }).catch(() => {});
          continue;
        }
        slot.stats.count(records.length, 0, records.length, performance.now() - started);
        const rejections: Rejection[] = records.map((record) => ({ record, error, attempts: attempt }));
        await this.#errors!.report(origin, rejections);
        return;
      }
    }
  }

  async #checkpoint(positions: Map<string, number>): Promise<void> {
    // After a kill the rerun starts from scratch: whatever the other sinks published now, it
    // would write again.
    if (this.#closeOnlySink) return;
    // A holding step's records are not in the sinks yet: these positions are not safe to resume from.
    await this.#commitAll(positions, this.#holdingStep ? undefined : { final: false }, false);
    this.#checkpoints++;
    this.#lastCheckpoint = new Date();
  }

  /**
   * Commits every sink and saves the checkpoint (when `save` is given), in this order: sinks with
   * two-phase commit prepare, others commit; then the errors sink, last, so that it holds every
   * error of the records before the barrier; then the checkpoint is saved with the prepared
   * tokens; then the prepared output is published. A crash before the save leaves prepared output
   * hidden and the records are read again; a crash after it is completed by the resumed run
   * (#completePending). Sinks without two-phase commit commit before the save: a crash between
   * writes their records since the previous checkpoint twice. `closing` closes every sink too.
   */
  async #commitAll(
    positions: Map<string, number>,
    save: { final: boolean } | undefined,
    closing: boolean,
  ): Promise<void> {
    const pending: PendingCommits = { sinks: {} };
    const prepared: [SinkInstance, unknown][] = [];
    const commitOne = async (sink: SinkInstance): Promise<{ token: unknown } | undefined> => {
      if (sink.prepareCommit && sink.commitPrepared) {
        const token = await sink.prepareCommit();
        prepared.push([sink, token]);
        return { token };
      }
      await (closing ? sink.close() : sink.commit());
      return undefined;
    };
    await Promise.all(
      this.#sinkSlots.map(async (s) => {
        const done = await commitOne(s.instance);
        if (done) pending.sinks[s.use.name] = done.token;
      }),
    );
    // At the end every record is covered: every held error record goes.
    if (closing) await this.#errors!.advance(Number.POSITIVE_INFINITY);
    await this.#errors!.settled();
    const errors = await commitOne(this.#errorSink!);
    if (errors) pending.errors = errors.token;
    this.#committedPositions = positions;
    if (save) await this.#saveCheckpoint(save.final, pending);
    // Every sink publishes, even when one fails: the saved checkpoint names all of it.
    const published = await Promise.allSettled(prepared.map(([sink, token]) => sink.commitPrepared!(token)));
    const failed = published.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    // Only now may a source record its place outside Sluice (a Kafka consumer group's offsets).
    if (save && this.#source?.commit)
      await this.#source
        .commit(Object.fromEntries(positions))
        .catch((err: unknown) => this.#options.logger.warn('source: commit failed', { error: String(err) }));
    if (closing) await Promise.all(prepared.map(([sink]) => sink.close()));
  }

  /** Publishes what the checkpoint this run resumes from names as prepared. */
  async #completePending(pending: PendingCommits | undefined): Promise<void> {
    if (!pending) return;
    const targets = Object.entries(pending.sinks).map(([name, token]) => ({
      what: `sink ${name}`,
      sink: this.#sinkSlots.find((s) => s.use.name === name)?.instance,
      token,
    }));
    if (pending.errors !== undefined)
      targets.push({ what: 'the errors sink', sink: this.#errorSink, token: pending.errors });
    for (const { what, sink, token } of targets) {
      // Skipping it would lose the records the checkpoint counts as written.
      if (!sink?.commitPrepared)
        throw new SluiceError(
          'SLUICE_CHECKPOINT',
          `the checkpoint holds output prepared by ${what}, which this pipeline ${sink ? 'cannot publish (no two-phase commit)' : 'no longer has'}; run the pipeline from the start`,
          { details: { token } },
        );
      await sink.commitPrepared(token);
    }
  }

  async #saveCheckpoint(final: boolean, pending: PendingCommits): Promise<void> {
    const save = this.#options.onCheckpoint;
    if (!save) return;
    try {
      await save(Object.fromEntries(this.#committedPositions), final, pending);
    } catch (err) {
      if (err instanceof SluiceError && err.code === 'SLUICE_CHECKPOINT') throw err;
      const cause = toSluiceError(err);
      throw new SluiceError('SLUICE_CHECKPOINT', `cannot save the checkpoint: ${cause.message}`, { cause });
    }
  }

  async #cleanUpAfterFailure(): Promise<void> {
    const { logger } = this.#options;
    await Promise.all(
      this.#sinkSlots.map((s) =>
        s.instance
          .abort()
          .catch((err) => logger.error(`sink ${s.use.name}: abort failed`, { error: String(err) })),
      ),
    );
    // Error records explain the failure: they are committed, never discarded.
    await this.#errors
      ?.advance(Number.POSITIVE_INFINITY)
      .catch((err) => logger.error('errors sink: write failed', { error: String(err) }));
    await this.#errors?.settled();
    await this.#errorSink
      ?.close()
      .catch((err) => logger.error('errors sink: close failed', { error: String(err) }));
  }

  #summary(startedAt: Date): RunSummary {
    const failure = this.#failure;
    const status: RunStatus = this.#interrupted ? 'interrupted' : failure ? 'failed' : 'succeeded';
    return buildRunSummary({
      runId: this.#options.runId,
      pipeline: { name: this.#pipeline.metadata.name, file: this.#pipeline.file },
      engine: 'streaming',
      engineReasons: this.#options.engineReasons,
      restartFrom: this.#notResumable() ? 'scratch' : 'checkpoint',
      status,
      failure,
      startedAt,
      elapsedMs: performance.now() - this.#started,
      operators: this.snapshot().operators.map((s) => s.toJSON()),
      skipped: this.#skipped,
      inputFraction: inputFraction(this.progress()),
      outputs: Object.fromEntries(this.#sinkSlots.map((s) => [s.use.name, s.instance.outputs?.() ?? []])),
      errors: {
        count: this.#errors?.total ?? 0,
        by_code: Object.fromEntries(this.#errors?.byCode ?? []),
        outputs: this.#errorSink?.outputs?.() ?? [],
      },
      checkpoints: { count: this.#checkpoints, last_at: this.#lastCheckpoint?.toISOString() ?? null },
      positions: Object.fromEntries(this.#committedPositions),
      resumedFrom: this.#resumedFrom,
    });
  }
}

/**
 * The next batch, or undefined once `signal` aborts. The abort listener is removed after every
 * call: a promise that stays pending for the whole run would keep every batch reachable.
 */
async function nextOrStop<T>(
  iterator: AsyncIterator<T>,
  signal: AbortSignal,
): Promise<IteratorResult<T> | undefined> {
  if (signal.aborted) return undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([iterator.next(), stopped]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

function isAsyncIterable<T>(x: unknown): x is AsyncIterable<T> {
  return typeof (x as AsyncIterable<T> | null)?.[Symbol.asyncIterator] === 'function';
}
