/**
 * One job's process, forked by the supervisor: an adapter over the runner (src/runner), which
 * picks the engine (pushdown or streaming), resumes and checkpoints; this process reports
 * progress, checkpoints and the summary over IPC. One bad job (a crash, an out-of-memory) ends
 * this process only. SIGTERM (cancel) and a lost parent (the server died) both drain: stop
 * reading, commit, checkpoint, exit; the supervisor restarts or finalises the job from the exit.
 */
import { type CheckpointStore, FileCheckpointStore } from '../engine/checkpoint-store.ts';
import { defaultRegistry, openCheckpointStore } from '../registry.ts';
import { PipelineRunner } from '../runner/index.ts';
import { toSluiceError } from '../sdk/errors.ts';
import { createLogger } from '../shared/log.ts';
import { workspaceRoots } from '../spec/workspace.ts';
import { confineProcessDuckDB } from '../sql/duckdb.ts';
import { loadVersion } from './jobs.ts';
import { type StartMessage, sendToServer as send, WORKER_EXIT } from './protocol.ts';
import { liveProgress, takeSnapshot } from './worker-metrics.ts';

const PROGRESS_EVERY_MS = 1000;

async function runJob(start: StartMessage): Promise<number> {
  const runId = `${start.jobId}-a${start.attempt}`;
  const bindings = { job_id: start.jobId, attempt: start.attempt, run_id: runId };
  const logger = createLogger({ level: start.logLevel, format: 'json', bindings });
  // The job's user SQL (sql steps, lookups, the pushdown) reaches only its folders (src/sql/confined.ts).
  await confineProcessDuckDB({
    allowedDirectories: [...workspaceRoots(start.workspace), start.runsDir, start.tmpDir],
  });
  const { version, pipelineName, params, workspace } = start;
  const loaded = await loadVersion(defaultRegistry(), version, pipelineName, params, workspace).catch(
    (err: unknown) => toSluiceError(err),
  );
  if (!('metadata' in loaded)) {
    logger.error('the spec no longer validates', { error: loaded.message });
    await send({ type: 'invalid', message: loaded.message });
    return WORKER_EXIT.invalid;
  }
  const pipeline = loaded;
  const checkpoints: CheckpointStore = start.checkpointStore
    ? await openCheckpointStore(start.checkpointStore, `job-${start.jobId}`)
    : new FileCheckpointStore(start.checkpointDir);
  // One attempt per process: the supervisor restarts the job (a new process) per its policy. The
  // job's store holds only its own checkpoints: a final one means this job's run finished.
  const runner = new PipelineRunner(
    {
      pipeline,
      checkpoints,
      runsDir: start.runsDir,
      runId: () => runId,
      logger: () => logger,
      afterFinal: 'resume',
      restart: false,
    },
    {
      onAttempt: ({ engine, resume, restartFrom }) =>
        send({
          type: 'started',
          runId,
          resumedFrom: resume?.positions ?? null,
          checks: pipeline.checks,
          engine,
          restartFrom,
        }),
      onCheckpoint: (positions) => send({ type: 'checkpoint', positions, at: Date.now() }),
    },
  );
  let finished = false;
  const stop = (why: string) => {
    if (finished) return;
    logger.warn(`${why}: draining and committing`);
    runner.stop();
  };
  process.on('SIGTERM', () => stop('cancel requested (SIGTERM)'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('disconnect', () => stop('the server went away'));
  const report = () =>
    send({ type: 'progress', progress: liveProgress(runner.progress()), metrics: takeSnapshot(runner) });
  const timer = setInterval(report, PROGRESS_EVERY_MS);
  try {
    const summary = await runner.run();
    await report();
    await send({ type: 'summary', summary });
    if (summary.status === 'succeeded') return WORKER_EXIT.succeeded;
    return summary.status === 'interrupted' ? WORKER_EXIT.interrupted : WORKER_EXIT.failed;
  } finally {
    finished = true;
    clearInterval(timer);
    await checkpoints.close?.();
  }
}

process.once('message', (message: StartMessage) => {
  runJob(message).then(
    (code) => {
      process.exitCode = code;
      process.disconnect?.();
    },
    (err) => {
      const line = { level: 50, time: Date.now(), job_id: message.jobId, msg: 'job process failed' };
      process.stderr.write(`${JSON.stringify({ ...line, error: String(err?.stack ?? err) })}\n`);
      process.exit(WORKER_EXIT.failed);
    },
  );
});
