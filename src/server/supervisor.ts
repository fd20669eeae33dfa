/**
 * Runs each job in its own child process and keeps the job store true to what the processes do.
 * It starts due pending jobs up to `maxJobs`, turns a process's exit into the job's next state,
 * restarts a job whose process died (per its restart policy, with backoff, from its checkpoint),
 * cancels by draining then killing, and on start recovers the jobs a previous server left running.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { setPriority, tmpdir } from 'node:os';
import path from 'node:path';
import type { RunSummary } from '../engine/run.ts';
import type { Logger } from '../sdk/types.ts';
import { backoffDelay } from '../shared/backoff.ts';
import type { Check } from '../spec/schema.ts';
import type { Workspace } from '../spec/workspace.ts';
import { apiJob, evaluateChecks, eventFor, jobPaths } from './jobs.ts';
import { IllegalTransitionError, isTerminal, type JobState } from './lifecycle.ts';
import type { ServerMetrics } from './metrics.ts';
import { type LiveProgress, type StartMessage, WORKER_EXIT, type WorkerMessage } from './protocol.ts';
import type { JobPatch, JobRecord, JobStore, PipelineVersion } from './store/jobs.ts';
import type { WebhookService } from './webhooks.ts';

// worker.ts in the checkout, worker.js in the installed package (dist/): the same extension as this module.
const WORKER = path.join(import.meta.dirname, `worker${path.extname(import.meta.filename)}`);
const JOB_NICENESS = 10;

export interface SupervisorOptions {
  store: JobStore;
  logger: Logger;
  metrics: ServerMetrics;
  webhooks: WebhookService;
  stateDir: string;
  /** Job processes running at once; more pending jobs wait their turn. */
  maxJobs: number;
  /** How long a cancelled job may drain before it is killed. */
  cancelGraceMs: number;
  pollMs?: number;
  jobLogLevel?: StartMessage['logLevel'];
  /** A state store for the jobs' checkpoints (s3://…, postgres://…) instead of each job's folder. */
  checkpointStore?: string;
  /** The server's workspace; secrets were checked against the submitting token already. */
  workspace: Workspace;
}

interface LiveJob {
  job: JobRecord;
  child: ChildProcess;
  attempt: number;
  runId?: string;
  /** Where a restart begins: a pushed-down run keeps no checkpoint and starts over. */
  restartFrom?: 'checkpoint' | 'scratch';
  progress?: LiveProgress;
  summary?: RunSummary;
  checks?: Check[];
  /** Why the spec no longer validates, when the process found so. */
  invalid?: string;
  killTimer?: NodeJS.Timeout;
  exited: Promise<void>;
}

/** A job moved to running, with what its process needs. */
interface PreparedLaunch {
  job: JobRecord;
  version: PipelineVersion;
  paths: ReturnType<typeof jobPaths>;
  attempt: number;
  /** Why the job cannot start after all (its folders could not be made): it ends without a process. */
  unstartable?: string;
}

/** What the job's summary keeps of each attempt (one per process). */
interface AttemptSummary {
  run_id: string;
  status: string;
  exit: string;
  records: RunSummary['records'] | null;
  elapsed_ms: number | null;
}

export class Supervisor {
  readonly #o: SupervisorOptions;
  readonly #live = new Map<string, LiveJob>();
  /**
   * Jobs moved to running whose process is not forked yet, with the reason of a cancel that came
   * meanwhile: the launch then ends the job instead of forking a process nothing would stop.
   */
  readonly #starting = new Map<string, { cancelled?: string }>();
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #again = false;
  #stopping = false;

  constructor(options: SupervisorOptions) {
    this.#o = options;
  }

  /** Recovers what a previous server left running, then starts the loop. */
  async start(): Promise<void> {
    await this.recover();
    this.#timer = setInterval(() => this.wake(), this.#o.pollMs ?? 500);
    this.wake();
  }

  /** Live progress of a running job, for the API. */
  progress(jobId: string): LiveProgress | undefined {
    return this.#live.get(jobId)?.progress;
  }

  get running(): number {
    return this.#live.size;
  }

  /** Runs a tick now (or right after the current one). */
  wake(): void {
    if (this.#stopping) return;
    if (this.#ticking) {
      this.#again = true;
      return;
    }
    this.#ticking = this.#tick()
      .catch((err) => this.#o.logger.error('supervisor tick failed', { error: String(err) }))
      .finally(() => {
        this.#ticking = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  async #tick(): Promise<void> {
    const free = this.#o.maxJobs - this.#live.size;
    if (free <= 0) return;
    for (const job of await this.#o.store.duePending(Date.now(), free)) {
      if (this.#stopping) return;
      await this.#launch(job).catch((err) =>
        this.#o.logger.error('could not start job', { job_id: job.id, error: String(err) }),
      );
    }
  }

  async #launch(pending: JobRecord): Promise<void> {
    const { store, logger } = this.#o;
    // Registered before the first await: from the move to running on, a cancel must find either
    // this or the process.
    const starting: { cancelled?: string } = {};
    this.#starting.set(pending.id, starting);
    let prepared: PreparedLaunch | undefined;
    try {
      prepared = await this.#prepare(pending);
    } finally {
      this.#starting.delete(pending.id);
    }
    if (!prepared) return;
    const { job, version, paths, attempt } = prepared;
    if (prepared.unstartable !== undefined) {
      // no process will end this job: it ends here (as cancelled if a cancel came meanwhile)
      const failed = await this.#finalize(job, 'running', 'failed', prepared.unstartable);
      if (!failed) await this.#finalize(job, 'cancelling', 'cancelled', starting.cancelled ?? 'cancelled');
      this.wake(); // the slot it was given is free again
      return;
    }
    // From here to `#live.set` nothing awaits, so a cancel either came already or finds the process.
    if (starting.cancelled !== undefined) {
      await this.#finalize(job, 'cancelling', 'cancelled', starting.cancelled);
      logger.info('job cancelled before its process started', { job_id: job.id });
      this.wake(); // the slot it was given is free again
      return;
    }
    // The job's stdout and stderr (its JSON log lines) go to its log file, kept across restarts.
    const logFd = openSync(paths.log, 'a');
    let child: ChildProcess;
    try {
      child = fork(WORKER, [], {
        stdio: ['ignore', logFd, logFd, 'ipc'],
        execArgv: ['--max-semi-space-size=4'],
        // The job id in its environment lets a later server tell its stale process from a reused
        // pid. The compile cache makes a job process start in ~0.4 s instead of ~2 s.
        env: {
          ...process.env,
          SLUICE_JOB_ID: job.id,
          // The job's temporary files (DuckDB's spills, the pushdown's profile) stay in its own folder.
          TMPDIR: paths.tmp,
          NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? path.join(tmpdir(), 'node-compile-cache'),
        },
      });
      // Job processes yield the CPU to the control plane, so the API answers while jobs saturate the machine.
      if (child.pid) {
        try {
          setPriority(child.pid, JOB_NICENESS);
        } catch {
          // not allowed here: jobs then share the CPU equally with the server
        }
      }
    } finally {
      closeSync(logFd);
    }
    let resolveExit!: () => void;
    const live: LiveJob = { job, child, attempt, exited: new Promise((r) => (resolveExit = r)) };
    this.#live.set(job.id, live);
    child.on('message', (m: WorkerMessage) => this.#onMessage(live, m));
    const ended = (code: number | null, signal: NodeJS.Signals | null) => {
      this.#onExit(live, code, signal)
        .catch((err) =>
          logger.error('could not record the end of a job process', { job_id: job.id, error: String(err) }),
        )
        .finally(() => {
          // A cancel that came while the end was being recorded set a timer for a process gone already.
          if (live.killTimer) clearTimeout(live.killTimer);
          this.#live.delete(job.id);
          resolveExit();
          this.wake();
        });
    };
    child.once('exit', ended);
    child.on('error', (err) => {
      logger.error('job process error', { job_id: job.id, error: err.message });
      // A process that could not be made emits no exit: it died as it started.
      if (child.pid === undefined && this.#live.get(job.id) === live) ended(null, null);
    });
    await store.patchJob(job.id, { pid: child.pid ?? null });
    const start: StartMessage = {
      type: 'start',
      jobId: job.id,
      attempt,
      pipelineName: job.pipeline_name,
      version,
      params: job.params,
      runsDir: paths.runs,
      checkpointDir: paths.checkpoints,
      ...(this.#o.checkpointStore ? { checkpointStore: this.#o.checkpointStore } : {}),
      logLevel: this.#o.jobLogLevel ?? 'info',
      workspace: { ...this.#o.workspace, secrets: undefined },
      tmpDir: paths.tmp,
    };
    child.send(start, (err) => {
      if (err) logger.warn('could not hand the job to its process (it died at once)', { job_id: job.id });
    });
    logger.info('job process started', { job_id: job.id, pid: child.pid, attempt });
  }

  /** Moves a due pending job to running and makes its folders; undefined when it is not to run. */
  async #prepare(pending: JobRecord): Promise<PreparedLaunch | undefined> {
    const { store, stateDir } = this.#o;
    // The spec was validated at submit; the job process validates it again (a lookup file may have
    // gone) and exits with WORKER_EXIT.invalid. Validating here too would put DuckDB's SQL parsing
    // on the API's event loop.
    const version = await store.getVersion(pending.pipeline_id, pending.pipeline_version);
    if (!version) {
      await this.#finalize(
        pending,
        'pending',
        'failed',
        `it could not start: pipeline version ${pending.pipeline_version} is gone`,
      );
      return undefined;
    }
    const attempt = pending.restarts + 1;
    const job = await store.transition(
      pending.id,
      'pending',
      'running',
      attempt === 1 ? 'started' : `restarted (attempt ${attempt})`,
      {
        reason: null,
        next_start_at: null,
        started_at: pending.started_at ?? Date.now(),
      },
    );
    if (!job) return undefined; // cancelled meanwhile
    const paths = jobPaths(stateDir, job.id);
    try {
      await mkdir(paths.runs, { recursive: true });
      await mkdir(paths.tmp, { recursive: true });
    } catch (err) {
      // the server's own paths stay in its log; the job's owner sees the kind of failure
      this.#o.logger.error('could not make the job folders', { job_id: job.id, error: String(err) });
      const code = (err as NodeJS.ErrnoException).code ?? 'an error';
      return {
        job,
        version,
        paths,
        attempt,
        unstartable: `it could not start: its folders could not be made (${code})`,
      };
    }
    return { job, version, paths, attempt };
  }

  #onMessage(live: LiveJob, m: WorkerMessage): void {
    if (m.type === 'started') {
      live.runId = m.runId;
      live.checks = m.checks;
      live.restartFrom = m.restartFrom;
    } else if (m.type === 'progress') {
      live.progress = m.progress;
      this.#o.metrics.setJobSnapshot(live.job.id, live.job.pipeline_name, m.metrics);
    } else if (m.type === 'summary') live.summary = m.summary;
    else if (m.type === 'invalid') live.invalid = m.message;
  }

  async #onExit(live: LiveJob, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (live.killTimer) clearTimeout(live.killTimer);
    const { store, logger } = this.#o;
    const exit = signal ? `killed by ${signal}` : `exit code ${code}`;
    let job = await store.getJob(live.job.id);
    if (!job) return;
    const attempts = this.#attempts(job, live, exit);
    logger.info('job process ended', { job_id: job.id, exit, state: job.state });
    if (this.#stopping) {
      // The server is shutting down: the job stays running in the store and the next start
      // resumes it from the checkpoint this process just saved.
      await store.patchJob(job.id, { summary: { ...(job.summary ?? {}), attempts }, pid: null });
      return;
    }
    const summary = live.summary;
    if (job.state === 'running') {
      if (await this.#endRun(job, live, code, exit, attempts)) return;
      // A cancel moved the job to cancelling after the read above; it ends as a cancelled job.
      job = await store.getJob(job.id);
      if (!job) return;
    }
    if (job.state === 'cancelling') {
      const to: JobState = summary?.status === 'succeeded' && code === 0 ? 'succeeded' : 'cancelled';
      await this.#finalize(
        job,
        'cancelling',
        to,
        to === 'cancelled' ? (job.reason ?? 'cancelled') : 'it finished before the cancel reached it',
        summary,
        attempts,
        live.checks,
      );
    }
  }

  /** The next state of a running job whose process ended; false when the job was no longer running. */
  async #endRun(
    job: JobRecord,
    live: LiveJob,
    code: number | null,
    exit: string,
    attempts: AttemptSummary[],
  ): Promise<boolean> {
    const summary = live.summary;
    if (code === WORKER_EXIT.succeeded && summary?.status === 'succeeded') {
      return this.#finalize(job, 'running', 'succeeded', 'finished', summary, attempts, live.checks);
    }
    if (code === WORKER_EXIT.failed && summary?.failure?.retriable) {
      // A dropped connection or a broker away: a restart from the checkpoint may well succeed.
      return this.#crashed(
        job,
        `it failed: ${summary.failure.code}: ${summary.failure.message}`,
        summary,
        attempts,
        live.restartFrom,
      );
    }
    if ((code === WORKER_EXIT.failed && summary?.status === 'failed') || code === WORKER_EXIT.invalid) {
      // The run failed on its own (error limit, bad input, invalid spec): running it again would fail again.
      const why = summary?.failure
        ? `${summary.failure.code}: ${summary.failure.message}`
        : `its spec no longer validates: ${live.invalid ?? 'see the job log'}`;
      return this.#finalize(job, 'running', 'failed', why, summary, attempts);
    }
    return this.#crashed(job, exit, summary, attempts, live.restartFrom);
  }

  /**
   * The process died, or the run failed with a retriable error (`exit` then starts with "it
   * failed"): restart from the checkpoint (or from scratch: a pushed-down run keeps none) while
   * the policy allows, else fail.
   */
  async #crashed(
    job: JobRecord,
    exit: string,
    summary: RunSummary | undefined,
    attempts: AttemptSummary[],
    from: LiveJob['restartFrom'] = 'checkpoint',
  ): Promise<boolean> {
    const where = from === 'scratch' ? 'from scratch (it keeps no checkpoint)' : 'from its last checkpoint';
    const policy = job.restart_policy;
    const used = job.restarts;
    if (used >= policy.attempts) {
      return this.#finalize(
        job,
        'running',
        'failed',
        `${exit.startsWith('it failed: ') ? exit.slice('it failed: '.length) : `SLUICE_JOB_PROCESS: ${why(exit)}`}; ` +
          `its restart policy allows ${policy.attempts} restart${policy.attempts === 1 ? '' : 's'}, all used`,
        summary,
        attempts,
      );
    }
    const wait = backoffDelay(used + 1, { baseMs: policy.backoff_ms, maxMs: policy.max_backoff_ms });
    const moved = await this.#o.store.transition(
      job.id,
      'running',
      'pending',
      `${why(exit)}; restart ${used + 1} of ${policy.attempts} in ${Math.round(wait / 1000)}s, ${where}`,
      {
        restarts: used + 1,
        next_start_at: Date.now() + wait,
        pid: null,
        summary: { ...(job.summary ?? {}), attempts },
      },
    );
    if (!moved) return false;
    this.#o.logger.warn(`job restarting ${where}: ${why(exit)}`, {
      job_id: job.id,
      exit,
      wait_ms: wait,
    });
    return true;
  }

  #attempts(job: JobRecord, live: LiveJob, exit: string): AttemptSummary[] {
    const previous = ((job.summary as { attempts?: AttemptSummary[] } | null)?.attempts ?? []).slice();
    previous.push({
      run_id: live.runId ?? `${job.id}-a${live.attempt}`,
      status: live.summary?.status ?? 'died',
      exit,
      records: live.summary?.records ?? null,
      elapsed_ms: live.summary?.elapsed_ms ?? null,
    });
    return previous;
  }

  /**
   * Moves a job to a final state with its post-processing: the summary (the last attempt's, with
   * totals over all attempts), the checks (which can fail a job whose process succeeded), metrics
   * and webhooks. False when the job was no longer in `from`.
   */
  async #finalize(
    job: JobRecord,
    from: JobState,
    to: JobState,
    reason: string,
    summary?: RunSummary,
    attempts?: AttemptSummary[],
    specChecks?: Check[],
  ): Promise<boolean> {
    const { store, logger, metrics, webhooks } = this.#o;
    const totals = { read: 0, written: 0, failed: 0, filtered: 0, skipped: 0 };
    for (const a of attempts ?? []) {
      if (!a.records) continue;
      totals.read += a.records.read;
      totals.written += a.records.written;
      totals.failed += a.records.failed;
      totals.filtered += a.records.filtered;
      totals.skipped += (a.records as { skipped?: number }).skipped ?? 0;
    }
    let checks: ReturnType<typeof evaluateChecks> | null = null;
    let state = to;
    let why = reason;
    if (to === 'succeeded') {
      checks = evaluateChecks(specChecks ?? [], totals);
      const failed = checks.filter((c) => !c.passed && c.severity === 'error');
      if (failed.length) {
        state = 'failed';
        why = `check${failed.length > 1 ? 's' : ''} failed: ${failed.map((c) => `${c.check} (${c.message})`).join('; ')}`;
      }
      for (const c of checks.filter((c) => !c.passed && c.severity === 'warn')) {
        logger.warn('alert: a warn-level check failed', {
          alert: true,
          job_id: job.id,
          check: c.check,
          message: c.message,
        });
      }
    }
    const patch: JobPatch = {
      reason: why,
      ended_at: Date.now(),
      pid: null,
      next_start_at: null,
      checks,
      summary: { ...(summary ?? (job.summary as object | null) ?? {}), attempts: attempts ?? [], totals },
    };
    let done: JobRecord | undefined;
    try {
      done = await store.transition(job.id, from, state, why, patch);
    } catch (err) {
      if (!(err instanceof IllegalTransitionError)) throw err;
      logger.error('illegal job transition refused', { job_id: job.id, error: err.message });
    }
    if (!done) return false;
    if (state === 'failed') logger.warn('alert: job failed', { alert: true, job_id: job.id, reason: why });
    const duration = done.started_at ? (done.ended_at ?? Date.now()) - done.started_at : 0;
    metrics.jobEnded(done.id, done.pipeline_name, state, duration);
    const event = eventFor(state);
    if (event) {
      await webhooks
        .emit(event, { job: apiJob(done), summary: done.summary, checks: done.checks })
        .catch((err) => logger.error('could not queue webhooks', { job_id: job.id, error: String(err) }));
    }
    return true;
  }

  /** Cancel: a pending job at once; a running one drains, then is killed after the grace period. */
  async cancel(job: JobRecord, reason: string): Promise<JobRecord> {
    const { store } = this.#o;
    if (job.state === 'pending') {
      await this.#finalize(job, 'pending', 'cancelled', reason);
      const after = await store.requireJob(job.id);
      // Cancelled, or started meanwhile: then it is cancelled as a running job.
      return after.state === 'cancelled' ? after : this.cancel(after, reason);
    }
    if (job.state === 'cancelling') return job;
    if (isTerminal(job.state)) throw new IllegalTransitionError(job.id, job.state, 'cancelled');
    const moved = await store.transition(job.id, 'running', 'cancelling', reason, { reason });
    if (!moved) return this.cancel(await store.requireJob(job.id), reason);
    const live = this.#live.get(job.id);
    if (!live) {
      const starting = this.#starting.get(job.id);
      if (starting) {
        // Its process is about to be forked: the launch sees this and ends the job instead.
        starting.cancelled = reason;
        return moved;
      }
      // No process here (it died a moment ago): nothing to drain.
      await this.#finalize(moved, 'cancelling', 'cancelled', reason);
      return store.requireJob(job.id);
    }
    live.child.kill('SIGTERM');
    live.killTimer = setTimeout(() => {
      this.#o.logger.warn('cancelled job did not stop in time; killing it', { job_id: job.id });
      live.child.kill('SIGKILL');
    }, this.#o.cancelGraceMs);
    return moved;
  }

  /**
   * After a server restart, every job left running or cancelling has no process here: a stale
   * process of the old server (still draining) is killed first, so two never write at once; then a
   * running job is restarted from its checkpoint and a cancelling one is cancelled.
   */
  async recover(): Promise<void> {
    const { store, logger } = this.#o;
    for (const job of await store.active()) {
      if (this.#live.has(job.id)) continue;
      if (job.pid) killStaleWorker(job.pid, job.id);
      if (job.state === 'cancelling') {
        await this.#finalize(
          job,
          'cancelling',
          'cancelled',
          `${job.reason ?? 'cancelled'} (the server restarted meanwhile)`,
        );
        continue;
      }
      if (job.restart_policy.attempts === 0) {
        await this.#finalize(
          job,
          'running',
          'failed',
          'the server restarted while it ran, and its restart policy allows no restarts',
        );
        continue;
      }
      // Not the job's fault: recovery after a server restart does not use up its restart attempts.
      await store.transition(
        job.id,
        'running',
        'pending',
        'the server restarted while it ran; resuming from its last checkpoint',
        {
          restarts: job.restarts + 1,
          pid: null,
          next_start_at: null,
        },
      );
      logger.warn('recovered a job left running by a previous server', { job_id: job.id });
    }
  }

  /** Stops the loop; running job processes drain and checkpoint, and stay running in the store. */
  async stop(graceMs = this.#o.cancelGraceMs): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#ticking;
    const lives = [...this.#live.values()];
    for (const live of lives) {
      live.child.kill('SIGTERM');
      live.killTimer = setTimeout(() => live.child.kill('SIGKILL'), graceMs);
    }
    await Promise.all(lives.map((l) => l.exited));
  }
}

/** Kills a job process left by a previous server, if that pid still is one (not a reused pid). */
function killStaleWorker(pid: number, jobId: string): void {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes(path.basename(WORKER))) return;
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    if (!environ.includes(`SLUICE_JOB_ID=${jobId}`)) return;
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already, or not ours to read
  }
}

/** Why a job is restarted, for its events: its process died, or its run failed with a retriable error. */
function why(exit: string): string {
  return exit.startsWith('it failed') ? exit : `its process died (${exit})`;
}
