/**
 * Cron schedules and date backfills. A schedule keeps its next fire time in the job store; each
 * tick submits the jobs of the fires that came due (per its catch-up policy) and moves the next
 * fire on. Every fire is submitted with the idempotency key `schedule:<id>:<fire ISO>`, so a fire
 * becomes one job however often it is submitted: a crash between the submit and the bookkeeping,
 * two ticks racing, or two servers sharing one PostgreSQL all end with one job per fire.
 */
import { Cron } from 'croner';
import { SluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import type { SubmitRequest } from './jobs.ts';
import type { Db } from './store/db.ts';
import { newId, sha256 } from './store/ids.ts';
import type { JobRecord, JobStore } from './store/jobs.ts';

export type CatchUp = 'none' | 'latest' | 'all';
export const CATCH_UP_POLICIES: readonly CatchUp[] = ['none', 'latest', 'all'];

/** With catch-up `all`, the most missed fires submitted in one tick; the rest follow on the next ticks. */
export const MAX_CATCH_UP_FIRES = 1000;
/** The most dates one backfill takes: ten years of days. */
export const MAX_BACKFILL_DATES = 3660;
/**
 * A fire is missed, rather than late, when it was due more than this long ago (Quartz's default
 * misfire threshold): a tick that runs a second late still submits a `none` schedule's fire.
 */
export const MISFIRE_GRACE_MS = 60_000;

const DAY_MS = 86_400_000;
// The names a spec's `${param:NAME}` can refer to (src/spec/interpolate.ts).
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const CRON_HELP =
  'expected 5 fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * *") or 6 with seconds first (e.g. "0 */15 * * * *")';

export interface ScheduleInput {
  /** Pipeline id or name. */
  pipeline: string;
  cron: string;
  /** IANA time zone the cron expression and the date param are read in; default UTC. */
  timezone?: string;
  catch_up?: CatchUp;
  params?: Record<string, string>;
  /** The param that receives the fire date (YYYY-MM-DD in the timezone); default `date`. */
  param_name?: string;
  enabled?: boolean;
}

export type SchedulePatch = Partial<ScheduleInput>;

export interface BackfillInput {
  pipeline: string;
  /** First date, YYYY-MM-DD. */
  from: string;
  /** Last date, YYYY-MM-DD, included. */
  to: string;
  param_name?: string;
  params?: Record<string, string>;
}

/** A schedule as the API shows it: times as ISO strings or null. */
export interface ApiSchedule {
  id: string;
  pipeline: { id: string; name: string };
  cron: string;
  timezone: string;
  catch_up: CatchUp;
  param_name: string;
  params: Record<string, string>;
  enabled: boolean;
  last_fire_at: string | null;
  next_fire_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface SchedulerOptions {
  db: Db;
  store: JobStore;
  submit: (req: SubmitRequest) => Promise<{ job: JobRecord; created: boolean }>;
  logger: Logger;
  /** The clock, in epoch milliseconds; tests inject one. */
  now?: () => number;
  /** How often `start()` ticks; default 1000 ms. */
  pollMs?: number;
  /** With catch-up `all`, the most missed fires one tick submits; default MAX_CATCH_UP_FIRES. */
  maxCatchUp?: number;
}

interface ScheduleRow {
  id: string;
  pipeline_id: string;
  pipeline_name: string | null;
  cron: string;
  timezone: string;
  catch_up: CatchUp;
  param_name: string;
  params: string;
  enabled: number;
  last_fire_at: number | null;
  next_fire_at: number | null;
  created_at: number;
  updated_at: number;
}

const SELECT =
  'SELECT s.*, p.name AS pipeline_name FROM schedules s LEFT JOIN pipelines p ON p.id = s.pipeline_id';

export class Scheduler {
  readonly #o: SchedulerOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<unknown> | undefined;
  #stopped = true;
  /** Set by stop(): a long catch-up ends at the next fire instead of finishing first. */
  #halt = false;

  constructor(options: SchedulerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  // ------------------------------------------------------------ schedules

  async create(input: ScheduleInput): Promise<ApiSchedule> {
    const pipeline = await this.#o.store.requirePipeline(input.pipeline);
    const s = validateSchedule({
      cron: input.cron,
      timezone: input.timezone ?? 'UTC',
      catch_up: input.catch_up ?? 'latest',
      param_name: input.param_name ?? 'date',
      params: input.params ?? {},
    });
    const enabled = input.enabled ?? true;
    const now = this.#now();
    const id = newId('sch');
    await this.#o.db.run(
      `INSERT INTO schedules (id, pipeline_id, cron, timezone, catch_up, param_name, params, enabled,
         last_fire_at, next_fire_at, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $10)`,
      [
        id,
        pipeline.id,
        s.cron,
        s.timezone,
        s.catch_up,
        s.param_name,
        JSON.stringify(s.params),
        enabled ? 1 : 0,
        enabled ? nextFireAfter(s.cronJob, now) : null,
        now,
      ],
    );
    this.#o.logger.info('schedule created', { schedule_id: id, pipeline: pipeline.name, cron: s.cron });
    return this.get(id);
  }

  async list(): Promise<ApiSchedule[]> {
    return (await this.#o.db.all<ScheduleRow>(`${SELECT} ORDER BY s.id`)).map(apiSchedule);
  }

  async get(id: string): Promise<ApiSchedule> {
    return apiSchedule(await this.#require(id));
  }

  /**
   * Changes the fields given. A new cron or timezone, or enabling a disabled schedule, plans the
   * next fire from now: fires missed while a schedule was disabled are not caught up.
   */
  async update(id: string, patch: SchedulePatch): Promise<ApiSchedule> {
    const row = await this.#require(id);
    const pipelineId =
      patch.pipeline === undefined
        ? row.pipeline_id
        : (await this.#o.store.requirePipeline(patch.pipeline)).id;
    const s = validateSchedule({
      cron: patch.cron ?? row.cron,
      timezone: patch.timezone ?? row.timezone,
      catch_up: patch.catch_up ?? row.catch_up,
      param_name: patch.param_name ?? row.param_name,
      params: patch.params ?? (JSON.parse(row.params) as Record<string, string>),
    });
    const wasEnabled = Boolean(Number(row.enabled));
    const enabled = patch.enabled ?? wasEnabled;
    const now = this.#now();
    const replan =
      s.cron !== row.cron || s.timezone !== row.timezone || !wasEnabled || row.next_fire_at === null;
    const next = !enabled ? null : replan ? nextFireAfter(s.cronJob, now) : row.next_fire_at;
    const changed = await this.#o.db.run(
      `UPDATE schedules SET pipeline_id = $1, cron = $2, timezone = $3, catch_up = $4, param_name = $5,
         params = $6, enabled = $7, next_fire_at = $8, updated_at = $9
       WHERE id = $10`,
      [
        pipelineId,
        s.cron,
        s.timezone,
        s.catch_up,
        s.param_name,
        JSON.stringify(s.params),
        enabled ? 1 : 0,
        next,
        now,
        id,
      ],
    );
    if (!changed) throw notFound(id);
    return this.get(id);
  }

  /** Deletes the schedule; the jobs it submitted stay. */
  async remove(id: string): Promise<void> {
    const changed = await this.#o.db.run('DELETE FROM schedules WHERE id = $1', [id]);
    if (!changed) throw notFound(id);
    this.#o.logger.info('schedule deleted', { schedule_id: id });
  }

  async #require(id: string): Promise<ScheduleRow> {
    const row = await this.#o.db.get<ScheduleRow>(`${SELECT} WHERE s.id = $1`, [id]);
    if (!row) throw notFound(id);
    return row;
  }

  // ------------------------------------------------------------ backfills

  /**
   * One job per date from `from` to `to` (both included), oldest first, each with the date in
   * `param_name`. Submitting the same backfill again returns the same jobs: each date's job has
   * the idempotency key `backfill:<pipeline id>:<date>:<hash of its params>`.
   */
  async backfill(input: BackfillInput): Promise<JobRecord[]> {
    const paramName = validateParamName(input.param_name ?? 'date');
    const params = validateParams(input.params ?? {}, paramName);
    const dates = dateRange(input.from, input.to);
    const pipeline = await this.#o.store.requirePipeline(input.pipeline);
    const jobs: JobRecord[] = [];
    let created = 0;
    for (const date of dates) {
      const jobParams = { ...params, [paramName]: date };
      const result = await this.#o.submit({
        pipeline: pipeline.id,
        params: jobParams,
        idempotencyKey: `backfill:${pipeline.id}:${date}:${paramsHash(jobParams)}`,
      });
      if (result.created) created++;
      jobs.push(result.job);
    }
    this.#o.logger.info('backfill submitted', {
      pipeline: pipeline.name,
      from: dates[0],
      to: dates[dates.length - 1],
      jobs: jobs.length,
      created,
    });
    return jobs;
  }

  // ------------------------------------------------------------ firing

  /** Submits the jobs of every fire due at `now`; returns how many jobs it created. */
  async tick(now: number = this.#now()): Promise<number> {
    const due = await this.#o.db.all<ScheduleRow>(
      `${SELECT} WHERE s.enabled = 1 AND s.next_fire_at IS NOT NULL AND s.next_fire_at <= $1
       ORDER BY s.next_fire_at, s.id`,
      [now],
    );
    let created = 0;
    for (const row of due) {
      if (this.#halt) break;
      try {
        created += await this.#fire(row, now);
      } catch (err) {
        // One broken schedule must not hold up the others; it is tried again next tick.
        this.#o.logger.error('schedule tick failed', { schedule_id: row.id, error: String(err) });
      }
    }
    return created;
  }

  async #fire(row: ScheduleRow, now: number): Promise<number> {
    const { logger } = this.#o;
    const cron = cronJob(row.cron, row.timezone);
    const first = row.next_fire_at!;
    let fires: number[];
    let next: number | null;
    if (row.catch_up === 'all') {
      fires = [];
      let t: number | null = first;
      while (t !== null && t <= now && fires.length < (this.#o.maxCatchUp ?? MAX_CATCH_UP_FIRES)) {
        fires.push(t);
        t = nextFireAfter(cron, t);
      }
      next = t;
      if (t !== null && t <= now) {
        logger.warn('schedule catch-up capped; the remaining missed fires follow on the next ticks', {
          schedule_id: row.id,
          submitting: fires.length,
          next_missed_fire: iso(t),
        });
      }
    } else {
      // The latest due fire directly, without walking every missed one (a per-second cron after a
      // week down would be 600 000 steps).
      const latest = Math.max(first, cron.previousRuns(1, new Date(now + 1))[0]?.getTime() ?? first);
      const onTime = now - latest <= MISFIRE_GRACE_MS;
      fires = row.catch_up === 'latest' || onTime ? [latest] : [];
      next = nextFireAfter(cron, now);
      if (latest > first || !fires.length) {
        logger.info('schedule missed fires', {
          schedule_id: row.id,
          catch_up: row.catch_up,
          missed_since: iso(first),
          submitting: fires.map(iso),
        });
      }
    }

    const params = JSON.parse(row.params) as Record<string, string>;
    let lastFire = row.last_fire_at;
    let created = 0;
    for (const fire of fires) {
      if (this.#halt) {
        next = fire;
        break;
      }
      const scheduledFor = iso(fire);
      try {
        const result = await this.#o.submit({
          pipeline: row.pipeline_id,
          params: { ...params, [row.param_name]: localDate(fire, row.timezone) },
          idempotencyKey: `schedule:${row.id}:${scheduledFor}`,
          scheduleId: row.id,
          scheduledFor,
        });
        if (result.created) {
          created++;
          logger.info('schedule fired', { schedule_id: row.id, fire: scheduledFor, job_id: result.job.id });
        }
        lastFire = fire;
      } catch (err) {
        if (err instanceof SluiceError && !err.retriable) {
          // Refused for good (the spec does not validate with these params, the pipeline is gone):
          // retrying every tick would only repeat the error. A backfill can redo the date.
          logger.error('schedule fire skipped: the job was refused', {
            schedule_id: row.id,
            fire: scheduledFor,
            code: err.code,
            error: err.message,
          });
          continue;
        }
        // Perhaps passing (the job store away): keep this fire due, so the next tick tries again.
        logger.error('schedule fire failed; trying again next tick', {
          schedule_id: row.id,
          fire: scheduledFor,
          error: String(err),
        });
        next = fire;
        break;
      }
    }

    // Compare-and-set on the fire this tick started from: a racing tick that got here first
    // has already moved the schedule on, and its bookkeeping stands.
    await this.#o.db.run(
      'UPDATE schedules SET last_fire_at = $1, next_fire_at = $2 WHERE id = $3 AND next_fire_at = $4',
      [lastFire, next, row.id, first],
    );
    return created;
  }

  /** Ticks now, then every `pollMs` after each tick ends (ticks never overlap). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#halt = false;
    const loop = () => {
      this.#timer = undefined;
      this.#ticking = this.tick()
        .catch((err) => this.#o.logger.error('scheduler tick failed', { error: String(err) }))
        .finally(() => {
          this.#ticking = undefined;
          if (!this.#stopped) this.#timer = setTimeout(loop, this.#o.pollMs ?? 1000);
        });
    };
    loop();
  }

  /** Stops the loop, after the tick in progress (if any) ends. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#halt = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#ticking;
  }
}

// ------------------------------------------------------------ validation

interface ValidSchedule {
  cron: string;
  timezone: string;
  catch_up: CatchUp;
  param_name: string;
  params: Record<string, string>;
  cronJob: Cron;
}

function badRequest(field: string, message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_REQUEST', message, { details: { field } });
}

function notFound(id: string): SluiceError {
  return new SluiceError('SLUICE_NOT_FOUND', `no schedule with id "${id}"`);
}

function validateSchedule(s: Omit<ValidSchedule, 'cronJob'>): ValidSchedule {
  const timezone = validateTimezone(s.timezone);
  const cron = s.cron.trim().replace(/\s+/g, ' ');
  let job: Cron;
  try {
    job = cronJob(cron, timezone);
  } catch (err) {
    const why = (err as Error).message.replace(/^CronPattern: /, '');
    throw badRequest('cron', `cron "${s.cron}" is not valid (${why}); ${CRON_HELP}`);
  }
  // Matches no date at all, such as February 30th.
  if (nextFireAfter(job, Date.now()) === null) {
    throw badRequest('cron', `cron "${s.cron}" never fires: no date matches it; ${CRON_HELP}`);
  }
  if (!CATCH_UP_POLICIES.includes(s.catch_up)) {
    throw badRequest(
      'catch_up',
      `catch_up "${s.catch_up}" is not valid; use one of ${CATCH_UP_POLICIES.join(', ')}`,
    );
  }
  const param_name = validateParamName(s.param_name);
  return {
    cron,
    timezone,
    catch_up: s.catch_up,
    param_name,
    params: validateParams(s.params, param_name),
    cronJob: job,
  };
}

/** An IANA name, spelled the way the time zone database spells it (`europe/berlin` → `Europe/Berlin`). */
function validateTimezone(timezone: string): string {
  const help = 'use an IANA time zone name such as UTC, Europe/Berlin or America/New_York';
  // Intl also takes offsets such as +02:00, which have no daylight saving: not a place's time.
  if (/^[+-]/.test(timezone)) {
    throw badRequest(
      'timezone',
      `timezone "${timezone}" is an offset, not a time zone; ${help} (Etc/GMT-2 is a fixed +02:00)`,
    );
  }
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    throw badRequest('timezone', `timezone "${timezone}" is not a known time zone; ${help}`);
  }
  return resolved.toLowerCase() === timezone.toLowerCase() ? resolved : timezone;
}

function validateParamName(name: string): string {
  if (!PARAM_NAME.test(name)) {
    throw badRequest(
      'param_name',
      `param_name "${name}" is not a valid param name; use letters, digits, _, . and - starting with a letter or _ (the NAME of \${param:NAME})`,
    );
  }
  return name;
}

function validateParams(params: Record<string, string>, paramName: string): Record<string, string> {
  for (const [key, value] of Object.entries(params)) {
    if (!PARAM_NAME.test(key)) {
      throw badRequest(
        'params',
        `params key "${key}" is not a valid param name; use letters, digits, _, . and - starting with a letter or _`,
      );
    }
    if (typeof value !== 'string') throw badRequest('params', `params.${key} must be a string`);
  }
  if (paramName in params) {
    throw badRequest(
      'params',
      `params.${paramName} is set by the schedule itself (param_name: ${paramName}, the fire date); remove it or choose another param_name`,
    );
  }
  return params;
}

/** Every date from..to, both included, as YYYY-MM-DD. */
function dateRange(from: string, to: string): string[] {
  const start = parseDate('from', from);
  const end = parseDate('to', to);
  if (end < start) throw badRequest('to', `to (${to}) is before from (${from}); give from <= to`);
  const n = (end - start) / DAY_MS + 1;
  if (n > MAX_BACKFILL_DATES) {
    throw badRequest(
      'to',
      `from ${from} to ${to} is ${n} dates; a backfill takes at most ${MAX_BACKFILL_DATES}: split it into several`,
    );
  }
  return Array.from({ length: n }, (_, i) => new Date(start + i * DAY_MS).toISOString().slice(0, 10));
}

function parseDate(field: string, text: string): number {
  const m = DATE.exec(text);
  const t = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : Number.NaN;
  // Date.UTC rolls 2025-02-30 over to March: a real date reads back as itself.
  if (!m || new Date(t).toISOString().slice(0, 10) !== text) {
    throw badRequest(field, `${field} "${text}" is not a date; expected YYYY-MM-DD, e.g. 2025-01-31`);
  }
  return t;
}

/** Stable over key order: the same params always give the same hash. */
function paramsHash(params: Record<string, string>): string {
  const sorted = Object.keys(params)
    .sort()
    .map((k) => [k, params[k]]);
  return sha256(JSON.stringify(sorted)).slice(0, 16);
}

// ------------------------------------------------------------ time

function cronJob(expr: string, timezone: string): Cron {
  // Paused, with no function: croner only computes fire times here, it never runs a timer.
  return new Cron(expr, { timezone, paused: true, mode: '5-or-6-parts' });
}

/** The first fire strictly after `t`, or null when there is none. */
function nextFireAfter(cron: Cron, t: number): number | null {
  return cron.nextRun(new Date(t))?.getTime() ?? null;
}

const dateFormats = new Map<string, Intl.DateTimeFormat>();

/** The calendar date of instant `t` in `timezone`, as YYYY-MM-DD. */
export function localDate(t: number, timezone: string): string {
  let format = dateFormats.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
    });
    dateFormats.set(timezone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(new Date(t)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}`;
}

function iso(t: number): string {
  return new Date(t).toISOString();
}

function apiSchedule(row: ScheduleRow): ApiSchedule {
  const isoOrNull = (t: number | null) => (t === null ? null : iso(Number(t)));
  return {
    id: row.id,
    pipeline: { id: row.pipeline_id, name: row.pipeline_name ?? row.pipeline_id },
    cron: row.cron,
    timezone: row.timezone,
    catch_up: row.catch_up,
    param_name: row.param_name,
    params: JSON.parse(row.params) as Record<string, string>,
    enabled: Boolean(Number(row.enabled)),
    last_fire_at: isoOrNull(row.last_fire_at),
    next_fire_at: isoOrNull(row.next_fire_at),
    created_at: iso(Number(row.created_at)),
    updated_at: iso(Number(row.updated_at)),
  };
}
