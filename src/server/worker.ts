/**
 * One job's process, forked by the supervisor: it runs the pipeline on the streaming engine,
 * saves checkpoints, and reports progress, checkpoints and the summary over IPC. One bad job (a
 * crash, an out-of-memory) ends this process only; the server and other jobs carry on.
 *
 * SIGTERM (cancel) and a lost parent (the server died) both drain: stop reading, commit what was
 * read, save the checkpoint, exit. The supervisor restarts or finalises the job from the exit.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger } from '../shared/log.ts';
import { type CheckpointStore, FileCheckpointStore, saveCheckpointsTo } from '../engine/checkpoint-store.ts';
import { inputFraction, PipelineRun } from '../engine/run.ts';
import { defaultRegistry, openCheckpointStore } from '../registry.ts';
import { toSluiceError } from '../sdk/errors.ts';
import { workspaceRoots } from '../spec/workspace.ts';
import { confineProcessDuckDB } from '../sql/duckdb.ts';
import { loadVersion } from './jobs.ts';
import { type LiveProgress, type StartMessage, WORKER_EXIT, type WorkerMessage } from './protocol.ts';
import { takeSnapshot } from './worker-metrics.ts';

const PROGRESS_EVERY_MS = 1000;

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(message, undefined, {}, () => resolve());
  });
}

async function runJob(start: StartMessage): Promise<number> {
  const runId = `${start.jobId}-a${start.attempt}`;
  const logger = createLogger({
    level: start.logLevel,
    format: 'json',
    bindings: { job_id: start.jobId, attempt: start.attempt, run_id: runId },
  });
  let invalid = '';
  // The job's user SQL (sql steps, lookups, the pushdown) reaches only its folders (src/sql/confined.ts).
  await confineProcessDuckDB({
    allowedDirectories: [...workspaceRoots(start.workspace), start.runsDir, start.tmpDir],
  });
  const pipeline = await loadVersion(
    defaultRegistry(),
    start.version,
    start.pipelineName,
    start.params,
    start.workspace,
  ).catch((err) => {
    invalid = toSluiceError(err).message;
    logger.error('the spec no longer validates', { error: invalid });
    return undefined;
  });
  if (!pipeline) {
    await send({ type: 'invalid', message: invalid });
    return WORKER_EXIT.invalid;
  }

  const checkpoints: CheckpointStore = start.checkpointStore
    ? await openCheckpointStore(start.checkpointStore, `job-${start.jobId}`)
    : new FileCheckpointStore(start.checkpointDir);
  const previous = await checkpoints.load();
  const runDir = path.join(start.runsDir, runId);
  await mkdir(runDir, { recursive: true });
  const save = saveCheckpointsTo(checkpoints, pipeline.metadata.name, runId, () => {
    const p = run.progress();
    return { read: p.read, written: p.written, failed: p.failed };
  });
  const run: PipelineRun = new PipelineRun({
    pipeline,
    runId,
    runDir,
    logger,
    ...(previous ? { resume: previous } : {}),
    onCheckpoint: async (positions, final, pending) => {
      await save(positions, final, pending);
      await send({ type: 'checkpoint', positions, at: Date.now() });
    },
  });
  if (previous)
    logger.info('resuming from checkpoint', { positions: previous.positions, saved_at: previous.saved_at });
  else logger.info('starting from the beginning of the input');
  await send({ type: 'started', runId, resumedFrom: previous?.positions ?? null, checks: pipeline.checks });

  let finished = false;
  const stop = (why: string) => {
    if (finished) return;
    logger.warn(`${why}: draining and committing`);
    run.stop();
  };
  process.on('SIGTERM', () => stop('cancel requested (SIGTERM)'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('disconnect', () => stop('the server went away'));

  const timer = setInterval(() => {
    void send({ type: 'progress', progress: live(run), metrics: takeSnapshot(run) });
  }, PROGRESS_EVERY_MS);
  try {
    const summary = await run.run();
    await writeFile(path.join(runDir, 'run.json'), `${JSON.stringify(summary, null, 2)}\n`);
    await send({ type: 'progress', progress: live(run), metrics: takeSnapshot(run) });
    await send({ type: 'summary', summary });
    logger.info(`run ${summary.status}`, { records: summary.records, elapsed_ms: summary.elapsed_ms });
    if (summary.status === 'succeeded') return WORKER_EXIT.succeeded;
    if (summary.status === 'interrupted') return WORKER_EXIT.interrupted;
    return WORKER_EXIT.failed;
  } finally {
    finished = true;
    clearInterval(timer);
    await checkpoints.close?.();
  }
}

function live(run: PipelineRun): LiveProgress {
  const p = run.progress();
  return {
    read: p.read,
    written: p.written,
    failed: p.failed,
    filtered: p.filtered,
    elapsed_ms: Math.round(p.elapsedMs),
    records_per_second: p.elapsedMs > 0 ? Math.round((p.read / p.elapsedMs) * 1000) : 0,
    input_fraction: inputFraction(p),
  };
}

process.once('message', (message: StartMessage) => {
  runJob(message).then(
    (code) => {
      process.exitCode = code;
      process.disconnect?.();
    },
    (err) => {
      process.stderr.write(
        `${JSON.stringify({ level: 50, time: Date.now(), job_id: message.jobId, msg: 'job process failed', error: String(err?.stack ?? err) })}\n`,
      );
      process.exit(WORKER_EXIT.failed);
    },
  );
});
