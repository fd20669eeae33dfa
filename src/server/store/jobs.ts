/**
 * Pipelines (versioned specs), jobs (runs of a version, with their state machine and event log)
 * and API tokens, on either database. Every state change is a compare-and-set on the current
 * state plus an event row, in one transaction: two actors (the reconciler and a cancel) can race,
 * only one of them wins, and the loser sees the state it lost to.
 */
import { randomBytes } from 'node:crypto';
import { SluiceError } from '../../sdk/errors.ts';
import { assertTransition, type JobState } from '../lifecycle.ts';
import type { Db, SqlValue } from './db.ts';
import { newId, sha256 } from './ids.ts';

export interface RestartPolicy {
  /** Restarts after a crash before the job is failed. */
  attempts: number;
  /** First wait before a restart, in milliseconds; doubles each time up to max_backoff_ms. */
  backoff_ms: number;
  max_backoff_ms: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  attempts: 3,
  backoff_ms: 1000,
  max_backoff_ms: 60_000,
};

export interface PipelineRecord {
  id: string;
  name: string;
  latest_version: number;
  created_at: number;
  updated_at: number;
}

export interface PipelineVersion {
  pipeline_id: string;
  version: number;
  spec: string;
  base_dir: string;
  created_at: number;
}

export interface JobRecord {
  id: string;
  pipeline_id: string;
  pipeline_name: string;
  pipeline_version: number;
  params: Record<string, string>;
  state: JobState;
  restarts: number;
  restart_policy: RestartPolicy;
  reason: string | null;
  idempotency_key: string | null;
  schedule_id: string | null;
  scheduled_for: string | null;
  owner: string | null;
  pid: number | null;
  next_start_at: number | null;
  summary: Record<string, unknown> | null;
  checks: unknown[] | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  ended_at: number | null;
}

export interface JobEvent {
  job_id: string;
  seq: number;
  at: number;
  from_state: JobState | null;
  to_state: JobState;
  reason: string | null;
}

export interface NewJob {
  pipelineId: string;
  version?: number;
  params?: Record<string, string>;
  restartPolicy?: RestartPolicy;
  idempotencyKey?: string;
  /** Hash of the submit request, to tell a repeated request from a reused key. */
  requestHash?: string;
  scheduleId?: string;
  scheduledFor?: string;
}

export interface JobFilter {
  states?: JobState[];
  pipeline?: string;
  scheduleId?: string;
  /** Ids sort by creation time: a page starts after this id, newest first. */
  before?: string;
  limit?: number;
}

/** Fields a transition may set besides the state. */
export interface JobPatch {
  reason?: string | null;
  restarts?: number;
  owner?: string | null;
  pid?: number | null;
  next_start_at?: number | null;
  summary?: Record<string, unknown> | null;
  checks?: unknown[] | null;
  started_at?: number | null;
  ended_at?: number | null;
}

export type TokenScope = 'read' | 'write' | 'admin';
export const TOKEN_SCOPES: readonly TokenScope[] = ['read', 'write', 'admin'];

export interface TokenRecord {
  id: string;
  name: string;
  scopes: TokenScope[];
  /** Secret names or glob patterns `${secret:…}` may read in specs this token sends (admin: all). */
  secrets: string[];
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
}

const JSON_COLUMNS = ['params', 'restart_policy', 'summary', 'checks'] as const;

function jobFromRow(row: Record<string, unknown>): JobRecord {
  const job = { ...row } as Record<string, unknown>;
  for (const c of JSON_COLUMNS) job[c] = typeof row[c] === 'string' ? JSON.parse(row[c] as string) : null;
  delete job.request_hash;
  return job as unknown as JobRecord;
}

function tokenFromRow(row: Record<string, unknown>): TokenRecord {
  const { hash: _hash, ...rest } = row;
  return {
    ...rest,
    scopes: JSON.parse(row.scopes as string),
    secrets: JSON.parse((row.secrets as string | null) ?? '[]'),
  } as TokenRecord;
}

export class JobStore {
  readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  // ------------------------------------------------------------ pipelines

  /**
   * Stores a new version of the pipeline called `name`, creating the pipeline on its first version.
   * With `reuseIfSame`, the latest version is returned instead when it holds the same spec and
   * base_dir. Concurrent saves of one name serialise on the unique keys: a loser retries.
   */
  async savePipeline(
    name: string,
    spec: string,
    baseDir: string,
    options: { reuseIfSame?: boolean } = {},
  ): Promise<{ pipeline: PipelineRecord; version: number }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.tx((tx) => this.#save(tx, name, spec, baseDir, options.reuseIfSame ?? false));
      } catch (err) {
        if (!isUniqueViolation(err) || attempt >= 5) throw err;
      }
    }
  }

  async #save(
    tx: Db,
    name: string,
    spec: string,
    baseDir: string,
    reuseIfSame: boolean,
  ): Promise<{ pipeline: PipelineRecord; version: number }> {
    const now = Date.now();
    const existing = await tx.get<PipelineRecord>('SELECT * FROM pipelines WHERE name = $1', [name]);
    if (!existing) {
      const id = newId('pl');
      await tx.run(
        'INSERT INTO pipelines (id, name, latest_version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)',
        [id, name, now],
      );
      await tx.run(
        'INSERT INTO pipeline_versions (pipeline_id, version, spec, base_dir, created_at) VALUES ($1, 1, $2, $3, $4)',
        [id, spec, baseDir, now],
      );
      return { pipeline: { id, name, latest_version: 1, created_at: now, updated_at: now }, version: 1 };
    }
    if (reuseIfSame) {
      const latest = await tx.get<PipelineVersion>(
        'SELECT * FROM pipeline_versions WHERE pipeline_id = $1 AND version = $2',
        [existing.id, existing.latest_version],
      );
      if (latest && latest.spec === spec && latest.base_dir === baseDir) {
        return { pipeline: existing, version: latest.version };
      }
    }
    const version = existing.latest_version + 1;
    // The version's primary key refuses a concurrent save of the same number: that one retries.
    await tx.run(
      'INSERT INTO pipeline_versions (pipeline_id, version, spec, base_dir, created_at) VALUES ($1, $2, $3, $4, $5)',
      [existing.id, version, spec, baseDir, now],
    );
    await tx.run('UPDATE pipelines SET latest_version = $1, updated_at = $2 WHERE id = $3', [
      version,
      now,
      existing.id,
    ]);
    return { pipeline: { ...existing, latest_version: version, updated_at: now }, version };
  }

  /** By id or by name. */
  async getPipeline(ref: string): Promise<PipelineRecord | undefined> {
    return this.db.get<PipelineRecord>('SELECT * FROM pipelines WHERE id = $1 OR name = $1', [ref]);
  }

  async requirePipeline(ref: string): Promise<PipelineRecord> {
    const p = await this.getPipeline(ref);
    if (!p) throw new SluiceError('SLUICE_NOT_FOUND', `no pipeline with id or name "${ref}"`);
    return p;
  }

  async listPipelines(): Promise<PipelineRecord[]> {
    return this.db.all<PipelineRecord>('SELECT * FROM pipelines ORDER BY name');
  }

  async getVersion(pipelineId: string, version: number): Promise<PipelineVersion | undefined> {
    return this.db.get<PipelineVersion>(
      'SELECT * FROM pipeline_versions WHERE pipeline_id = $1 AND version = $2',
      [pipelineId, version],
    );
  }

  async listVersions(pipelineId: string): Promise<Omit<PipelineVersion, 'spec'>[]> {
    return this.db.all(
      'SELECT pipeline_id, version, base_dir, created_at FROM pipeline_versions WHERE pipeline_id = $1 ORDER BY version',
      [pipelineId],
    );
  }

  // ------------------------------------------------------------ jobs

  /**
   * Creates a pending job. With an idempotency key already used by the same request, returns the
   * job that request made (`created: false`); with the key used by another request, refuses.
   */
  async createJob(job: NewJob): Promise<{ job: JobRecord; created: boolean }> {
    if (job.idempotencyKey) {
      const existing = await this.#byIdempotencyKey(job.idempotencyKey, job.requestHash);
      if (existing) return { job: existing, created: false };
    }
    const pipeline = await this.db.get<PipelineRecord>('SELECT * FROM pipelines WHERE id = $1', [
      job.pipelineId,
    ]);
    if (!pipeline) throw new SluiceError('SLUICE_NOT_FOUND', `no pipeline with id "${job.pipelineId}"`);
    const version = job.version ?? pipeline.latest_version;
    const id = newId('job');
    const now = Date.now();
    try {
      await this.db.tx(async (tx) => {
        await tx.run(
          `INSERT INTO jobs (id, pipeline_id, pipeline_name, pipeline_version, params, state, restarts,
             restart_policy, idempotency_key, request_hash, schedule_id, scheduled_for, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8, $9, $10, $11, $11)`,
          [
            id,
            pipeline.id,
            pipeline.name,
            version,
            JSON.stringify(job.params ?? {}),
            JSON.stringify(job.restartPolicy ?? DEFAULT_RESTART_POLICY),
            job.idempotencyKey ?? null,
            job.requestHash ?? null,
            job.scheduleId ?? null,
            job.scheduledFor ?? null,
            now,
          ],
        );
        await tx.run(
          'INSERT INTO job_events (job_id, seq, at, from_state, to_state, reason) VALUES ($1, 1, $2, NULL, $3, $4)',
          [id, now, 'pending', 'submitted'],
        );
      });
    } catch (err) {
      // Two identical requests at once: the unique key lets one insert; the other returns its job.
      if (job.idempotencyKey && isUniqueViolation(err)) {
        const existing = await this.#byIdempotencyKey(job.idempotencyKey, job.requestHash);
        if (existing) return { job: existing, created: false };
      }
      throw err;
    }
    return { job: (await this.getJob(id))!, created: true };
  }

  /** The job an earlier request with this key made; refuses a key reused by another request. */
  findByIdempotencyKey(key: string, requestHash: string | undefined): Promise<JobRecord | undefined> {
    return this.#byIdempotencyKey(key, requestHash);
  }

  async #byIdempotencyKey(key: string, requestHash: string | undefined): Promise<JobRecord | undefined> {
    const row = await this.db.get('SELECT * FROM jobs WHERE idempotency_key = $1', [key]);
    if (!row) return undefined;
    if (requestHash !== undefined && row.request_hash !== requestHash) {
      throw new SluiceError(
        'SLUICE_CONFLICT',
        `Idempotency-Key "${key}" was already used by a different request (job ${String(row.id)}); use a new key for a new job`,
        { details: { job_id: row.id } },
      );
    }
    return jobFromRow(row);
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const row = await this.db.get('SELECT * FROM jobs WHERE id = $1', [id]);
    return row ? jobFromRow(row) : undefined;
  }

  async requireJob(id: string): Promise<JobRecord> {
    const job = await this.getJob(id);
    if (!job) throw new SluiceError('SLUICE_NOT_FOUND', `no job with id "${id}"`);
    return job;
  }

  async listJobs(filter: JobFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    const param = (v: SqlValue) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (filter.states?.length) where.push(`state IN (${filter.states.map((s) => param(s)).join(', ')})`);
    if (filter.pipeline)
      where.push(`(pipeline_id = ${param(filter.pipeline)} OR pipeline_name = $${params.length})`);
    if (filter.scheduleId) where.push(`schedule_id = ${param(filter.scheduleId)}`);
    if (filter.before) where.push(`id < ${param(filter.before)}`);
    const limit = Math.min(Math.max(filter.limit ?? 50, 1), 1000);
    const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${param(limit)}`;
    return (await this.db.all(sql, params)).map(jobFromRow);
  }

  /** Pending jobs whose start time has come, oldest first. */
  async duePending(now: number, limit: number): Promise<JobRecord[]> {
    const rows = await this.db.all(
      `SELECT * FROM jobs WHERE state = 'pending' AND (next_start_at IS NULL OR next_start_at <= $1)
       ORDER BY id LIMIT $2`,
      [now, limit],
    );
    return rows.map(jobFromRow);
  }

  /** Jobs a process should be running for (running or cancelling). */
  async active(): Promise<JobRecord[]> {
    return (await this.db.all("SELECT * FROM jobs WHERE state IN ('running', 'cancelling') ORDER BY id")).map(
      jobFromRow,
    );
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = await this.db.all<{ state: string; n: number }>(
      'SELECT state, COUNT(*) AS n FROM jobs GROUP BY state',
    );
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  /**
   * Moves a job from one of `from` to `to`, setting `patch`, and logs the event; all or nothing.
   * Returns the updated job, or undefined when the job was no longer in one of `from` (another
   * actor moved it first). Throws when the move itself is illegal.
   */
  async transition(
    id: string,
    from: JobState | JobState[],
    to: JobState,
    reason: string,
    patch: JobPatch = {},
  ): Promise<JobRecord | undefined> {
    const froms = Array.isArray(from) ? from : [from];
    return this.db.tx(async (tx) => {
      const row = await tx.get<{ state: JobState }>('SELECT state FROM jobs WHERE id = $1', [id]);
      if (!row) throw new SluiceError('SLUICE_NOT_FOUND', `no job with id "${id}"`);
      if (!froms.includes(row.state)) return undefined;
      assertTransition(id, row.state, to);
      const now = Date.now();
      const params: SqlValue[] = [to, now];
      const sets = ['state = $1', 'updated_at = $2', ...patchAssignments(patch, params)];
      if (patch.reason === undefined) {
        params.push(reason);
        sets.push(`reason = $${params.length}`);
      }
      params.push(id, row.state);
      const changed = await tx.run(
        `UPDATE jobs SET ${sets.join(', ')} WHERE id = $${params.length - 1} AND state = $${params.length}`,
        params,
      );
      if (!changed) return undefined;
      const seq = await tx.get<{ n: number }>(
        'SELECT COALESCE(MAX(seq), 0) AS n FROM job_events WHERE job_id = $1',
        [id],
      );
      await tx.run(
        'INSERT INTO job_events (job_id, seq, at, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5, $6)',
        [id, Number(seq?.n ?? 0) + 1, now, row.state, to, reason],
      );
      return jobFromRow((await tx.get('SELECT * FROM jobs WHERE id = $1', [id]))!);
    });
  }

  /** Sets fields without a change of state (pid, summary while running). */
  async patchJob(id: string, patch: JobPatch): Promise<void> {
    const params: SqlValue[] = [];
    const sets = patchAssignments(patch, params);
    if (!sets.length) return;
    params.push(Date.now(), id);
    await this.db.run(
      `UPDATE jobs SET ${sets.join(', ')}, updated_at = $${params.length - 1} WHERE id = $${params.length}`,
      params,
    );
  }

  async events(id: string): Promise<JobEvent[]> {
    return this.db.all<JobEvent>('SELECT * FROM job_events WHERE job_id = $1 ORDER BY seq', [id]);
  }

  // ------------------------------------------------------------ tokens

  /** Creates a token; the secret is returned once and only its hash is kept. */
  async createToken(
    name: string,
    scopes: TokenScope[],
    secrets: string[] = [],
  ): Promise<{ token: string; record: TokenRecord }> {
    const id = newId('tok');
    const token = `sluice_${randomBytes(24).toString('base64url')}`;
    const now = Date.now();
    await this.db.run(
      'INSERT INTO tokens (id, name, hash, scopes, secrets, created_at) VALUES ($1, $2, $3, $4, $5, $6)',
      [id, name, sha256(token), JSON.stringify(scopes), JSON.stringify(secrets), now],
    );
    return {
      token,
      record: { id, name, scopes, secrets, created_at: now, revoked_at: null, last_used_at: null },
    };
  }

  /** The live token with this secret, or undefined. */
  async verifyToken(token: string): Promise<TokenRecord | undefined> {
    const row = await this.db.get('SELECT * FROM tokens WHERE hash = $1 AND revoked_at IS NULL', [
      sha256(token),
    ]);
    return row ? tokenFromRow(row) : undefined;
  }

  async touchToken(id: string): Promise<void> {
    await this.db.run('UPDATE tokens SET last_used_at = $1 WHERE id = $2', [Date.now(), id]);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.db.all('SELECT * FROM tokens ORDER BY id')).map(tokenFromRow);
  }

  async countTokens(): Promise<number> {
    const row = await this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM tokens');
    return Number(row?.n ?? 0);
  }

  /**
   * Revokes a token, unless it is the last live admin token: without one nobody could make tokens
   * or webhooks again through the API. The live tokens are read under a row lock on PostgreSQL
   * (SQLite runs one transaction at a time), so two admins revoking each other's token at once
   * cannot both succeed.
   */
  async revokeToken(id: string): Promise<TokenRecord> {
    return this.db.tx(async (tx) => {
      const lock = tx.kind === 'postgres' ? ' FOR UPDATE' : '';
      const live = (await tx.all(`SELECT * FROM tokens WHERE revoked_at IS NULL${lock}`)).map(tokenFromRow);
      const target = live.find((t) => t.id === id);
      if (target?.scopes.includes('admin') && !live.some((t) => t.id !== id && t.scopes.includes('admin')))
        throw new SluiceError(
          'SLUICE_LAST_ADMIN_TOKEN',
          `token ${id} is the last live admin token: create another admin token first (POST /v1/tokens, or \`sluice server token create\` on the server's machine)`,
        );
      if (target) await tx.run('UPDATE tokens SET revoked_at = $1 WHERE id = $2', [Date.now(), id]);
      const row = await tx.get('SELECT * FROM tokens WHERE id = $1', [id]);
      if (!row) throw new SluiceError('SLUICE_NOT_FOUND', `no token with id "${id}"`);
      return tokenFromRow(row);
    });
  }
}

/** `column = $n` for each field of the patch, its value pushed to `params` (objects as JSON). */
function patchAssignments(patch: JobPatch, params: SqlValue[]): string[] {
  return Object.entries(patch).map(([key, value]) => {
    params.push(
      value === null || value === undefined
        ? null
        : typeof value === 'object'
          ? JSON.stringify(value)
          : (value as SqlValue),
    );
    return `${key} = $${params.length}`;
  });
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; errcode?: number; message?: string };
  return e?.code === '23505' || /UNIQUE constraint failed/i.test(e?.message ?? '');
}
