/** `PipelineRunner`: the one orchestration of a run (see src/runner/index.ts). */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Checkpoint, type CheckpointStore, saveCheckpointsTo } from '../engine/checkpoint-store.ts';
import { type PushdownPlan, planPushdown } from '../engine/pushdown.ts';
import type { RunProgress, RunSnapshot } from '../engine/run.ts';
import type { EngineName, RunSummary } from '../engine/summary.ts';
import type { Logger } from '../sdk/types.ts';
import { type Backoff, backoffDelay } from '../shared/backoff.ts';
import { parseDuration } from '../spec/duration.ts';
import type { Pipeline } from '../spec/validate.ts';
import { type Execution, PushdownExecution, StreamingExecution } from './execution.ts';

export interface RunnerOptions {
  pipeline: Pipeline;
  /** Where the pipeline's (or the job's) last checkpoint lives. Not closed by the runner. */
  checkpoints: CheckpointStore;
  /** Folder under which each attempt gets its own run directory (named by its run id). */
  runsDir: string;
  /** The run id of attempt `n` (1 for the first, one more per restart). */
  runId: (attempt: number) => string;
  /** The logger of one attempt. */
  logger: (runId: string) => Logger;
  /** `off`: always the streaming engine (`--no-pushdown`). Default `auto`. */
  pushdown?: 'auto' | 'off';
  /** Ignore an unfinished checkpoint: read the whole input again (`--from-scratch`). */
  fromScratch?: boolean;
  /**
   * A final checkpoint (its run succeeded): `start-over` reads the whole input again (`sluice
   * run`: the pipeline's next run); `resume` resumes from it, reading nothing new (a job's own
   * store: that job's run succeeded and its process died before it said so).
   */
  afterFinal?: 'start-over' | 'resume';
  /**
   * Restarts after a retriable failure, in this process: the pipeline's `settings.restart` by
   * default; `false` when the caller restarts (the server's supervisor restarts a job's process).
   */
  restart?: false | { attempts: number; backoff: Backoff };
}

/** What is known as an attempt starts. */
export interface AttemptStart {
  attempt: number;
  runId: string;
  runDir: string;
  engine: EngineName;
  /** Why this engine (pushdown notes, or why not pushed down). */
  reasons: readonly string[];
  /** The checkpoint this attempt resumes from. */
  resume: Checkpoint | undefined;
  restartFrom: RunSummary['restart_from'];
}

export interface RunnerHooks {
  onAttempt?(start: AttemptStart): void | Promise<void>;
  /** A checkpoint was saved. */
  onCheckpoint?(positions: Record<string, number>): void | Promise<void>;
  /** An attempt failed with a retriable error; the next starts after `waitMs`. */
  onRestart?(failed: RunSummary, restart: { number: number; of: number; waitMs: number }): void;
}

/** The engine the runner picks, and the checkpoint it resumes from. */
export interface RunnerPlan {
  resume: Checkpoint | undefined;
  pushdown: PushdownPlan;
}

const IDLE: RunProgress = {
  elapsedMs: 0,
  read: 0,
  skipped: 0,
  written: 0,
  failed: 0,
  filtered: 0,
  source: {},
};

export class PipelineRunner {
  readonly #o: RunnerOptions;
  readonly #hooks: RunnerHooks;
  readonly #stopped = new AbortController();
  #aborted = false;
  #plan: Promise<RunnerPlan> | undefined;
  #current: Execution | undefined;

  constructor(options: RunnerOptions, hooks: RunnerHooks = {}) {
    this.#o = options;
    this.#hooks = hooks;
  }

  /**
   * Loads the checkpoint and picks the engine, reading no record (`--dry-run` shows it): the
   * pushdown where it gives the streaming engine's output, never for a resumed run (a pushed-down
   * run keeps no checkpoints, so only the streaming engine can continue one).
   */
  plan(): Promise<RunnerPlan> {
    this.#plan ??= (async () => {
      const { checkpoints, pipeline, fromScratch, afterFinal } = this.#o;
      const previous = fromScratch ? undefined : await checkpoints.load();
      const resume = previous && (!previous.final || afterFinal === 'resume') ? previous : undefined;
      const pushdown = await planPushdown(pipeline, {
        pushdown: this.#o.pushdown === 'off' ? 'off' : 'auto',
      });
      if (resume && pushdown.eligible)
        return { resume, pushdown: { eligible: false, reasons: ['the run resumes from a checkpoint'] } };
      return { resume, pushdown };
    })();
    return this.#plan;
  }

  /** The engine of the attempt running now. */
  get engine(): EngineName | undefined {
    return this.#current?.engine;
  }

  progress(): RunProgress {
    return this.#current?.progress() ?? IDLE;
  }

  snapshot(): RunSnapshot {
    return this.#current?.snapshot() ?? { operators: [], queues: [], lastCheckpointAt: null };
  }

  /** Graceful stop: the running attempt drains and checkpoints; no restart follows. */
  stop(): void {
    this.#stopped.abort();
    this.#current?.stop();
  }

  /** Stop at once; uncommitted output is discarded. */
  abort(): void {
    this.#aborted = true;
    this.stop();
    this.#current?.abort();
  }

  /** Runs the pipeline to its end, restarting after retriable failures; writes each attempt's run.json. */
  async run(): Promise<RunSummary> {
    const { checkpoints } = this.#o;
    let { resume, pushdown } = await this.plan();
    if (!resume) await checkpoints.clear();
    const restart = this.#restartPolicy();
    for (let attempt = 1; ; attempt++) {
      const summary = await this.#attempt(attempt, resume, pushdown);
      const failure = summary.failure;
      const restarts = attempt - 1;
      if (
        summary.status !== 'failed' ||
        !failure?.retriable ||
        !restart ||
        restarts >= restart.attempts ||
        this.#stopped.signal.aborted
      )
        return summary;
      const waitMs = backoffDelay(attempt, restart.backoff);
      this.#hooks.onRestart?.(summary, { number: attempt, of: restart.attempts, waitMs });
      await sleep(waitMs, undefined, { signal: this.#stopped.signal }).catch(() => {});
      if (this.#stopped.signal.aborted) return summary;
      const saved = await checkpoints.load();
      resume = saved && !saved.final ? saved : undefined;
      // A restart continues on the streaming engine, which alone keeps checkpoints.
      pushdown = {
        eligible: false,
        reasons: [`restart ${attempt} of a run that failed on the streaming engine`],
      };
    }
  }

  async #attempt(attempt: number, resume: Checkpoint | undefined, plan: PushdownPlan): Promise<RunSummary> {
    const { pipeline, checkpoints } = this.#o;
    const runId = this.#o.runId(attempt);
    const runDir = path.resolve(this.#o.runsDir, runId);
    await mkdir(runDir, { recursive: true });
    const logger = this.#o.logger(runId);
    const context = { pipeline, runId, runDir, logger };
    let summary: RunSummary | undefined;
    let reasons = plan.eligible ? plan.notes : plan.reasons;
    await this.#hooks.onAttempt?.({
      attempt,
      runId,
      runDir,
      engine: plan.eligible ? 'duckdb-pushdown' : 'streaming',
      reasons,
      resume,
      restartFrom: plan.eligible ? 'scratch' : 'checkpoint',
    });
    if (resume)
      logger.info('resuming from checkpoint', { positions: resume.positions, saved_at: resume.saved_at });
    else logger.info('starting from the beginning of the input');
    if (plan.eligible) {
      logger.info('pushdown: the run is one DuckDB COPY (docs/pushdown.md)', { notes: reasons });
      const outcome = await this.#execute(
        new PushdownExecution({ ...context, engineReasons: reasons }, plan),
      );
      if (outcome.kind === 'done') summary = outcome.summary;
      else
        reasons = [
          `DuckDB stopped (${outcome.reason}); the streaming engine sends failing records to the errors sink`,
        ];
    }
    if (!summary) {
      const save = saveCheckpointsTo(checkpoints, pipeline.metadata.name, runId, () => {
        const p = this.progress();
        return { read: p.read, written: p.written, failed: p.failed };
      });
      const streaming = new StreamingExecution(
        { ...context, engineReasons: reasons },
        {
          resume,
          onCheckpoint: async (positions, final, pending) => {
            await save(positions, final, pending);
            await this.#hooks.onCheckpoint?.(positions);
          },
        },
      );
      const outcome = await this.#execute(streaming);
      if (outcome.kind !== 'done') throw new Error('the streaming engine declined a run');
      summary = outcome.summary;
    }
    await writeFile(path.join(runDir, 'run.json'), `${JSON.stringify(summary, null, 2)}\n`);
    logger.info(`run ${summary.status}`, {
      records: summary.records,
      elapsed_ms: summary.elapsed_ms,
      engine: summary.engine,
    });
    return summary;
  }

  /** Runs one execution, handing it a stop or abort that came before it started. */
  #execute(execution: Execution) {
    this.#current = execution;
    if (this.#aborted) execution.abort();
    else if (this.#stopped.signal.aborted) execution.stop();
    return execution.run();
  }

  #restartPolicy(): { attempts: number; backoff: Backoff } | undefined {
    if (this.#o.restart === false) return undefined;
    if (this.#o.restart) return this.#o.restart;
    const policy = this.#o.pipeline.settings.restart;
    return {
      attempts: policy.attempts,
      backoff: {
        baseMs: parseDuration(policy.backoff) ?? 1000,
        maxMs: parseDuration(policy.max_backoff) ?? 60_000,
      },
    };
  }
}

/** A run id for a run started by hand: `<pipeline>-<yyyymmdd-hhmmss>-<4 hex>`, sortable by time. */
export function timestampedRunId(pipeline: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${pipeline}-${stamp}-${randomBytes(2).toString('hex')}`;
}
