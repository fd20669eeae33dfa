/**
 * What a submit, a cancel or a restart does, whoever asks (a route, the scheduler, a backfill):
 * validate the spec with the job's params before anything is stored, then hand the job to the
 * supervisor. Also the post-processing of a job that ended: checks, summary, webhooks.
 */
import path from 'node:path';
import type { Registry } from '../registry.ts';
import { SluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import { parseDuration } from '../spec/duration.ts';
import type { Check } from '../spec/schema.ts';
import { loadPipeline, type Pipeline } from '../spec/validate.ts';
import type { Workspace } from '../spec/workspace.ts';
import type { JobState } from './lifecycle.ts';
import type { LiveProgress } from './protocol.ts';
import type { JobRecord, JobStore, PipelineVersion, RestartPolicy } from './store/jobs.ts';

export interface SubmitRequest {
  /** Pipeline id or name. */
  pipeline: string;
  /** Defaults to the latest version. */
  version?: number;
  params?: Record<string, string>;
  idempotencyKey?: string;
  /** Hash of the request body, to tell a repeated request from a reused Idempotency-Key. */
  requestHash?: string;
  scheduleId?: string;
  scheduledFor?: string;
  /** The submitting token's workspace (its secrets); default: the server's, every secret allowed. */
  workspace?: Workspace;
}

export interface CheckResult {
  check: string;
  severity: 'error' | 'warn';
  passed: boolean;
  message: string;
}

/** Where a job keeps its files. */
export function jobPaths(stateDir: string, jobId: string) {
  const dir = path.join(stateDir, 'jobs', jobId);
  return {
    dir,
    log: path.join(dir, 'job.log'),
    checkpoints: path.join(dir, 'checkpoint'),
    runs: path.join(dir, 'runs'),
    tmp: path.join(dir, 'tmp'),
  };
}

/** The spec's file name as errors show it: the pipeline's name in its base directory. */
export function specFile(version: PipelineVersion, name: string): string {
  return path.join(version.base_dir, `${name}.v${version.version}.yaml`);
}

export async function loadVersion(
  registry: Registry,
  version: PipelineVersion,
  name: string,
  params: Record<string, string>,
  workspace?: Workspace,
): Promise<Pipeline> {
  return loadPipeline({
    file: specFile(version, name),
    text: version.spec,
    params,
    registry,
    ...(workspace ? { workspace } : {}),
  });
}

export function restartPolicyOf(pipeline: Pipeline): RestartPolicy {
  const r = pipeline.settings.restart;
  return {
    attempts: r.attempts,
    backoff_ms: parseDuration(r.backoff) ?? 1000,
    max_backoff_ms: parseDuration(r.max_backoff) ?? 60_000,
  };
}

export interface JobServiceOptions {
  store: JobStore;
  registry: Registry;
  logger: Logger;
  /** Tells the supervisor a job is waiting, so it need not wait for its next tick. */
  wake: () => void;
  cancel: (job: JobRecord, reason: string) => Promise<JobRecord>;
  /** The server's workspace: every job's spec is checked against it at submit. */
  workspace: Workspace;
}

export class JobService {
  readonly #o: JobServiceOptions;

  constructor(options: JobServiceOptions) {
    this.#o = options;
  }

  /** Validates the pipeline version with the params, then stores a pending job. */
  async submit(req: SubmitRequest): Promise<{ job: JobRecord; created: boolean }> {
    const { store, registry } = this.#o;
    const pipeline = await store.requirePipeline(req.pipeline);
    const versionNo = req.version ?? pipeline.latest_version;
    const version = await store.getVersion(pipeline.id, versionNo);
    if (!version) {
      throw new SluiceError(
        'SLUICE_NOT_FOUND',
        `pipeline ${pipeline.name} has no version ${versionNo} (latest: ${pipeline.latest_version})`,
      );
    }
    const params = req.params ?? {};
    // A job whose spec does not validate with its params is refused before it is stored.
    const loaded = await loadVersion(
      registry,
      version,
      pipeline.name,
      params,
      req.workspace ?? this.#o.workspace,
    );
    const result = await store.createJob({
      pipelineId: pipeline.id,
      version: versionNo,
      params,
      restartPolicy: restartPolicyOf(loaded),
      ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
      ...(req.requestHash ? { requestHash: req.requestHash } : {}),
      ...(req.scheduleId ? { scheduleId: req.scheduleId } : {}),
      ...(req.scheduledFor ? { scheduledFor: req.scheduledFor } : {}),
    });
    if (result.created) {
      this.#o.logger.info('job submitted', {
        job_id: result.job.id,
        pipeline: pipeline.name,
        version: versionNo,
      });
      this.#o.wake();
    }
    return result;
  }

  async cancel(id: string, reason = 'cancelled by a user'): Promise<JobRecord> {
    const job = await this.#o.store.requireJob(id);
    return this.#o.cancel(job, reason);
  }

  /** Runs a failed or cancelled job again, from its last checkpoint. */
  async restart(id: string): Promise<JobRecord> {
    const { store } = this.#o;
    const job = await store.requireJob(id);
    const moved = await store.transition(
      id,
      job.state,
      'pending',
      'restarted by a user, from its last checkpoint',
      {
        restarts: job.restarts + 1,
        next_start_at: null,
        ended_at: null,
        reason: null,
      },
    );
    if (!moved) return store.requireJob(id);
    this.#o.wake();
    return moved;
  }
}

/** The job's data-quality checks, over the totals of all its attempts. */
export function evaluateChecks(
  checks: readonly Check[],
  totals: { read: number; written: number; failed: number },
): CheckResult[] {
  const results: CheckResult[] = [];
  for (const check of checks) {
    if ('row_count' in check) {
      const { min, max, severity } = check.row_count;
      const n = totals.written;
      const passed = (min === undefined || n >= min) && (max === undefined || n <= max);
      const bounds = [min !== undefined ? `at least ${min}` : '', max !== undefined ? `at most ${max}` : '']
        .filter(Boolean)
        .join(' and ');
      results.push({
        check: 'row_count',
        severity,
        passed,
        message: `${n} records written; expected ${bounds || 'any number'}`,
      });
    } else {
      const { max, severity } = check.error_rate;
      const rate = totals.read ? totals.failed / totals.read : 0;
      results.push({
        check: 'error_rate',
        severity,
        passed: rate <= max,
        message: `${totals.failed} of ${totals.read} records failed (${(rate * 100).toFixed(2)}%); at most ${(max * 100).toFixed(2)}% allowed`,
      });
    }
  }
  return results;
}

/** The webhook event of a job that reached a final state. */
export function eventFor(state: JobState): 'job.succeeded' | 'job.failed' | 'job.cancelled' | undefined {
  if (state === 'succeeded') return 'job.succeeded';
  if (state === 'failed') return 'job.failed';
  if (state === 'cancelled') return 'job.cancelled';
  return undefined;
}

/** A job as the API shows it: times as ISO strings, the pipeline as one object. */
export function apiJob(job: JobRecord, live?: LiveProgress | null) {
  const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
  return {
    id: job.id,
    pipeline: { id: job.pipeline_id, name: job.pipeline_name, version: job.pipeline_version },
    params: job.params,
    state: job.state,
    restarts: job.restarts,
    restart_policy: job.restart_policy,
    reason: job.reason,
    schedule_id: job.schedule_id,
    scheduled_for: job.scheduled_for,
    created_at: iso(job.created_at)!,
    updated_at: iso(job.updated_at)!,
    started_at: iso(job.started_at),
    ended_at: iso(job.ended_at),
    next_start_at: iso(job.next_start_at),
    summary: job.summary,
    checks: job.checks,
    progress: live ?? null,
  };
}
export type ApiJob = ReturnType<typeof apiJob>;
