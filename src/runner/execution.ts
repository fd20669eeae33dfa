/**
 * The `Execution` contract and its two implementations: the streaming engine (src/engine/run.ts)
 * and the DuckDB pushdown (src/engine/pushdown-run.ts). See src/runner/index.ts for the contract's
 * rules; an engine added later (one split of a job on a worker, Flink SQL) is one more class here.
 */
import type { Checkpoint } from '../engine/checkpoint-store.ts';
import type { PushdownEligible } from '../engine/pushdown.ts';
import { PushdownRun } from '../engine/pushdown-run.ts';
import { PipelineRun, type RunOptions, type RunProgress, type RunSnapshot } from '../engine/run.ts';
import type { EngineName, RunSummary } from '../engine/summary.ts';
import type { Logger } from '../sdk/types.ts';
import type { Pipeline } from '../spec/validate.ts';

export interface Execution {
  readonly engine: EngineName;
  /**
   * Runs to the end: `done` with the summary (succeeded, failed or interrupted), or `declined`
   * when this engine cannot give the same output for this input after all; a declined execution
   * wrote nothing, and the runner runs the pipeline on the next engine.
   */
  run(): Promise<ExecutionOutcome>;
  /** Graceful: read no more, finish what is in flight, commit, checkpoint; run() ends `interrupted`. */
  stop(): void;
  /** At once: uncommitted output is discarded; run() ends `interrupted`. */
  abort(): void;
  /** Counters so far; cheap, polled for progress lines and job progress. */
  progress(): RunProgress;
  /** Per-operator counters and queue depths, for metrics; cheap. */
  snapshot(): RunSnapshot;
}

export type ExecutionOutcome = { kind: 'done'; summary: RunSummary } | { kind: 'declined'; reason: string };

/** What every execution is given: one run (one attempt) of one pipeline. */
export interface ExecutionContext {
  pipeline: Pipeline;
  runId: string;
  /** This run's own directory (run.json, the default errors/ folder). */
  runDir: string;
  logger: Logger;
  /** Why this engine was chosen, for the summary. */
  engineReasons: readonly string[];
}

/** The streaming engine: resumes from a checkpoint and saves them (RunOptions.onCheckpoint). */
export class StreamingExecution implements Execution {
  readonly engine = 'streaming';
  readonly #run: PipelineRun;

  constructor(
    context: ExecutionContext,
    checkpointing: { resume?: Checkpoint | undefined; onCheckpoint?: RunOptions['onCheckpoint'] } = {},
  ) {
    const { resume, onCheckpoint } = checkpointing;
    this.#run = new PipelineRun({
      ...context,
      ...(resume ? { resume } : {}),
      ...(onCheckpoint ? { onCheckpoint } : {}),
    });
  }

  async run(): Promise<ExecutionOutcome> {
    return { kind: 'done', summary: await this.#run.run() };
  }
  stop(): void {
    this.#run.stop();
  }
  abort(): void {
    this.#run.abort();
  }
  progress(): RunProgress {
    return this.#run.progress();
  }
  snapshot(): RunSnapshot {
    return this.#run.snapshot();
  }
}

/**
 * One DuckDB COPY of the whole pipeline (docs/pushdown.md). All or nothing: no checkpoints, so a
 * restart runs it again from the start; DuckDB stopping on a value declines, writing nothing.
 */
export class PushdownExecution implements Execution {
  readonly engine = 'duckdb-pushdown';
  readonly #run: PushdownRun;

  constructor(context: ExecutionContext, plan: PushdownEligible) {
    this.#run = new PushdownRun({ ...context, plan });
  }

  async run(): Promise<ExecutionOutcome> {
    const outcome = await this.#run.run();
    return outcome.kind === 'done' ? outcome : { kind: 'declined', reason: outcome.reason };
  }
  stop(): void {
    this.#run.stop();
  }
  abort(): void {
    this.#run.abort();
  }
  /** Elapsed time, with DuckDB's estimate of the share done as the source's bytes (of 100). */
  progress(): RunProgress {
    return this.#run.progress();
  }
  /** DuckDB runs the operators inside one query: there are no per-operator counters until the end. */
  snapshot(): RunSnapshot {
    return { operators: [], queues: [], lastCheckpointAt: null };
  }
}
