/**
 * The execution layer: how a pipeline runs, the same for `sluice run`, a server job's process and,
 * later, a worker running one split of a job. Its callers are thin adapters: they load the spec,
 * open the checkpoint store, show progress or report it over IPC, and map the summary to an exit.
 *
 * `PipelineRunner` (runner.ts) plans, picks the engine, resumes, restarts and summarises:
 * - engine: the DuckDB pushdown where it gives exactly the streaming engine's output, else the
 *   streaming engine; the reasons go into the summary (`engine`, `engine_reasons`). A pushdown
 *   that DuckDB gives up on falls back to the streaming engine within the same run.
 * - resume: from the checkpoint store's unfinished checkpoint (streaming engine only).
 * - restart: after a retriable failure, from the last checkpoint, with the one backoff
 *   (src/shared/backoff.ts); a job's process is restarted by the server instead (`restart: false`).
 * - summary: one per attempt (src/engine/summary.ts builds it for every engine), written to the
 *   attempt's run.json.
 *
 * `Execution` (execution.ts) is what an engine implements, kept small so that new runtimes plug in:
 * - `run()` → `done` with a summary (succeeded, failed, interrupted), or `declined` when the
 *   engine finds it cannot give the same output after all (it wrote nothing; the next engine runs).
 * - `stop()` graceful (read no more, commit, checkpoint), `abort()` at once (discard uncommitted).
 * - `progress()` counters for progress lines, `snapshot()` per-operator counters for metrics.
 * - Checkpoints: an engine that keeps them is handed the resume point and a save function; one
 *   that does not says `restart_from: 'scratch'` in its summary.
 *
 * Imports: engine/, spec/, sql/, sdk/, shared/; never cli/ or server/.
 */
export type { Execution, ExecutionContext, ExecutionOutcome } from './execution.ts';
export { PushdownExecution, StreamingExecution } from './execution.ts';
export type { AttemptStart, RunnerHooks, RunnerOptions, RunnerPlan } from './runner.ts';
export { PipelineRunner, timestampedRunId } from './runner.ts';
