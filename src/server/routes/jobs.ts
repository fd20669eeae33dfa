import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { queryRunsDir } from '../../cli/commands/query.ts';
import { DEFAULT_ERRORS_DIR, isErrorsPartFile } from '../../engine/errors-location.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { ZodApp } from '../app.ts';
import type { ServerContext } from '../context.ts';
import { apiJob, jobPaths } from '../jobs.ts';
import { isTerminal, JOB_STATES, type JobState } from '../lifecycle.ts';
import type { JobRecord } from '../store/jobs.ts';
import { validateForSave, workspaceFor } from './pipelines.ts';

/** `?state=`: one or more job states, comma-separated (spaces around them allowed). */
const STATE_LIST = new RegExp(`^\\s*(${JOB_STATES.join('|')})\\s*(,\\s*(${JOB_STATES.join('|')})\\s*)*$`);

const iso = z.string().nullable();
export const apiJobSchema = z.object({
  id: z.string(),
  pipeline: z.object({ id: z.string(), name: z.string(), version: z.number() }),
  params: z.record(z.string(), z.string()),
  state: z.enum(JOB_STATES),
  restarts: z.number(),
  restart_policy: z.object({ attempts: z.number(), backoff_ms: z.number(), max_backoff_ms: z.number() }),
  reason: z.string().nullable(),
  schedule_id: z.string().nullable(),
  scheduled_for: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  started_at: iso,
  ended_at: iso,
  next_start_at: iso,
  summary: z
    .record(z.string(), z.unknown())
    .nullable()
    .describe('The last run summary, with `attempts` and `totals` over all attempts.'),
  checks: z.array(z.unknown()).nullable(),
  progress: z
    .object({
      read: z.number(),
      written: z.number(),
      failed: z.number(),
      filtered: z.number(),
      elapsed_ms: z.number(),
      records_per_second: z.number(),
      input_fraction: z.number().nullable(),
    })
    .nullable()
    .describe('Live counts of the running attempt.'),
});

const idParams = z.object({ id: z.string() });
const jobReply = z.object({ job: apiJobSchema });

export function showJob(ctx: ServerContext, job: JobRecord) {
  return apiJob(job, ctx.supervisor.progress(job.id) ?? null);
}

export function jobRoutes(app: ZodApp, ctx: ServerContext): void {
  app.route({
    method: 'POST',
    url: '/v1/jobs',
    config: { scope: 'write', errors: [404, 409, 422] },
    schema: {
      tags: ['jobs'],
      summary:
        'Submit a job: a version of a stored pipeline, or an inline spec (stored as a new version first).',
      description:
        'Send `Idempotency-Key` to make a retried request safe: the same key with the same body returns the job it made (200); with another body it is refused (409).',
      headers: z.object({ 'idempotency-key': z.string().max(200).optional() }),
      body: z
        .object({
          pipeline: z.string().optional().describe('Pipeline id or name.'),
          version: z.number().int().min(1).optional().describe('Default: the latest.'),
          params: z
            .record(z.string(), z.string())
            .optional()
            .describe('Values for `${param:NAME}` in the spec.'),
          spec: z
            .string()
            .optional()
            .describe('An inline spec (YAML): stored as a new version of its pipeline, then submitted.'),
          base_dir: z
            .string()
            .optional()
            .describe('With `spec`: the directory its relative paths resolve against.'),
        })
        .refine((b) => b.pipeline !== undefined || b.spec !== undefined, {
          message: 'give `pipeline` (a stored pipeline) or `spec` (an inline spec)',
        }),
      response: { 200: jobReply, 201: jobReply },
    },
    handler: async (req, reply) => {
      const body = req.body;
      const key = req.headers['idempotency-key'];
      const requestHash = createHash('sha256').update(JSON.stringify(body)).digest('hex');
      if (key) {
        // A repeat of a request that was accepted: the same job, nothing stored again.
        const seen = await ctx.store.findByIdempotencyKey(key, requestHash);
        if (seen) return reply.status(200).send({ job: showJob(ctx, seen) });
      }
      let pipeline = body.pipeline;
      let version = body.version;
      if (body.spec !== undefined) {
        const saveBody = {
          spec: body.spec,
          ...(body.base_dir !== undefined ? { base_dir: body.base_dir } : {}),
        };
        const { name, baseDir } = await validateForSave(ctx, saveBody, body.params ?? {}, req.token);
        if (pipeline !== undefined && pipeline !== name) {
          throw new SluiceError(
            'SLUICE_BAD_REQUEST',
            `body.pipeline is "${pipeline}" but the spec's metadata.name is "${name}"`,
          );
        }
        const saved = await ctx.store.savePipeline(name, body.spec, baseDir, { reuseIfSame: true });
        pipeline = saved.pipeline.id;
        version = saved.version;
      }
      const { job, created } = await ctx.jobs.submit({
        pipeline: pipeline!,
        ...(version !== undefined ? { version } : {}),
        ...(body.params ? { params: body.params } : {}),
        ...(key ? { idempotencyKey: key, requestHash } : {}),
        workspace: workspaceFor(ctx, req.token),
      });
      return reply.status(created ? 201 : 200).send({ job: showJob(ctx, job) });
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/jobs',
    config: { scope: 'read' },
    schema: {
      tags: ['jobs'],
      summary: 'List jobs, newest first, a page at a time.',
      querystring: z.object({
        state: z
          .string()
          .regex(STATE_LIST, `unknown state; valid: a comma-separated list of ${JOB_STATES.join(', ')}`)
          .optional()
          .describe(`Comma-separated states: ${JOB_STATES.join(', ')}.`),
        pipeline: z.string().optional().describe('Pipeline id or name.'),
        schedule: z.string().optional().describe('Schedule id.'),
        limit: z.coerce.number().int().min(1).max(1000).default(50),
        before: z.string().optional().describe('The `next` of the previous page.'),
      }),
      response: { 200: z.object({ jobs: z.array(apiJobSchema), next: z.string().nullable() }) },
    },
    handler: async (req) => {
      const q = req.query;
      const states = q.state ? q.state.split(',').map((s) => s.trim()) : undefined;
      const jobs = await ctx.store.listJobs({
        ...(states ? { states: states as JobState[] } : {}),
        ...(q.pipeline ? { pipeline: q.pipeline } : {}),
        ...(q.schedule ? { scheduleId: q.schedule } : {}),
        ...(q.before ? { before: q.before } : {}),
        limit: q.limit + 1,
      });
      const page = jobs.slice(0, q.limit);
      return { jobs: page.map((j) => showJob(ctx, j)), next: jobs.length > q.limit ? page.at(-1)!.id : null };
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/jobs/:id',
    config: { scope: 'read' },
    schema: {
      tags: ['jobs'],
      summary: 'A job and its history of states.',
      params: idParams,
      response: {
        200: z.object({
          job: apiJobSchema,
          events: z.array(
            z.object({
              seq: z.number(),
              at: z.string(),
              from_state: z.string().nullable(),
              to_state: z.string(),
              reason: z.string().nullable(),
            }),
          ),
        }),
      },
    },
    handler: async (req) => {
      const job = await ctx.store.requireJob(req.params.id);
      const events = await ctx.store.events(job.id);
      return {
        job: showJob(ctx, job),
        events: events.map((e) => ({
          seq: Number(e.seq),
          at: new Date(Number(e.at)).toISOString(),
          from_state: e.from_state,
          to_state: e.to_state,
          reason: e.reason,
        })),
      };
    },
  });

  app.route({
    method: 'POST',
    url: '/v1/jobs/:id/cancel',
    config: { scope: 'write', errors: [409] },
    schema: {
      tags: ['jobs'],
      summary:
        'Cancel a job: a pending one at once; a running one drains and commits, and is killed after the grace period.',
      params: idParams,
      response: { 200: jobReply },
    },
    handler: async (req) => ({ job: showJob(ctx, await ctx.jobs.cancel(req.params.id)) }),
  });

  app.route({
    method: 'POST',
    url: '/v1/jobs/:id/restart',
    config: { scope: 'write', errors: [409] },
    schema: {
      tags: ['jobs'],
      summary: 'Run a failed or cancelled job again, from its last checkpoint.',
      params: idParams,
      response: { 200: jobReply },
    },
    handler: async (req) => ({ job: showJob(ctx, await ctx.jobs.restart(req.params.id)) }),
  });

  app.route({
    method: 'GET',
    url: '/v1/jobs/:id/summary',
    config: { scope: 'read' },
    schema: {
      tags: ['jobs'],
      summary: "The job's run summary: the last attempt's, with `attempts` and `totals` over all of them.",
      params: idParams,
      response: { 200: z.record(z.string(), z.unknown()) },
    },
    handler: async (req) => {
      const job = await ctx.store.requireJob(req.params.id);
      if (!job.summary)
        throw new SluiceError('SLUICE_NOT_FOUND', `job ${job.id} has no summary yet (it is ${job.state})`);
      return job.summary;
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/jobs/:id/logs',
    config: { scope: 'read' },
    schema: {
      tags: ['jobs'],
      summary: "The job's log: JSON lines, each with job_id. `follow=true` streams until the job is final.",
      params: idParams,
      querystring: z.object({
        offset: z.coerce.number().int().min(0).default(0).describe('Byte offset to start from.'),
        follow: z
          .enum(['true', 'false'])
          .default('false')
          .transform((v) => v === 'true'),
      }),
      response: {
        200: {
          description:
            'JSON lines from `offset` on; the `Sluice-Log-Offset` header is where the next read starts.',
          content: { 'text/plain': { schema: z.string() } },
        },
      },
    },
    handler: async (req, reply) => {
      const job = await ctx.store.requireJob(req.params.id);
      const file = jobPaths(ctx.stateDir, job.id).log;
      const size = (await stat(file).catch(() => undefined))?.size ?? 0;
      reply.header('content-type', 'text/plain; charset=utf-8');
      if (!req.query.follow) {
        const start = Math.min(req.query.offset, size);
        reply.header('sluice-log-offset', String(size));
        if (start >= size) return '';
        // The documented string, streamed (fastify sends a stream as it is, unserialized).
        return reply.send(createReadStream(file, { start, end: size - 1 }) as unknown as string);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
      let offset = req.query.offset;
      const closed = new AbortController();
      req.raw.on('close', () => closed.abort());
      while (!closed.signal.aborted) {
        offset = await copyFrom(file, offset, (chunk) => res.write(chunk));
        const now = await ctx.store.getJob(job.id);
        if (!now || isTerminal(now.state)) {
          offset = await copyFrom(file, offset, (chunk) => res.write(chunk));
          break;
        }
        await sleep(250, undefined, { signal: closed.signal }).catch(() => {});
      }
      res.end();
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/jobs/:id/errors',
    config: { scope: 'read' },
    schema: {
      tags: ['jobs'],
      summary:
        "The job's error records (every attempt's errors sink, when it writes JSON Lines), oldest first.",
      params: idParams,
      querystring: z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(100) }),
      response: {
        200: z.object({ errors: z.array(z.record(z.string(), z.unknown())), truncated: z.boolean() }),
      },
    },
    handler: async (req) => {
      const job = await ctx.store.requireJob(req.params.id);
      return readErrorRecords(jobPaths(ctx.stateDir, job.id).runs, req.query.limit);
    },
  });

  app.route({
    method: 'POST',
    url: '/v1/jobs/:id/query',
    config: { scope: 'read' },
    schema: {
      tags: ['jobs'],
      summary:
        "DuckDB SQL over the job's record-level stats: tables runs, operators, files, errors, outputs (docs/query.md). The SQL sees these tables only: no other file, URL, database or extension; it is stopped after the server's query timeout.",
      params: idParams,
      body: z.object({ sql: z.string().min(1), limit: z.number().int().min(1).max(100_000).default(1000) }),
      response: {
        200: z.object({
          columns: z.array(z.string()),
          rows: z.array(z.record(z.string(), z.unknown())),
          total: z.number(),
          notes: z.array(z.string()),
        }),
      },
    },
    handler: async (req) => {
      const job = await ctx.store.requireJob(req.params.id);
      return queryRunsDir(jobPaths(ctx.stateDir, job.id).runs, req.body.sql, req.body.limit, {
        timeoutMs: ctx.queryTimeoutMs,
      });
    },
  });
}

/** Writes what the file holds past `offset`; returns the new offset. */
async function copyFrom(file: string, offset: number, write: (chunk: Buffer) => void): Promise<number> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return offset;
  try {
    const buffer = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (!bytesRead) return offset;
      write(Buffer.from(buffer.subarray(0, bytesRead)));
      offset += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

async function readErrorRecords(runsDir: string, limit: number) {
  const errors: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  const runs = (await readdir(runsDir).catch(() => [] as string[])).sort();
  for (const run of runs) {
    const summary = await readFile(path.join(runsDir, run, 'run.json'), 'utf8')
      .then((t) => JSON.parse(t) as { errors?: { outputs?: string[] } })
      .catch(() => undefined);
    // The default errors folder too: an attempt that was killed has no run.json, yet its
    // checkpoints committed error records there.
    const defaultDir = path.join(runsDir, run, DEFAULT_ERRORS_DIR);
    const parts = (await readdir(defaultDir).catch(() => [] as string[])).filter(isErrorsPartFile).sort();
    const files = [...parts.map((p) => path.join(defaultDir, p)), ...(summary?.errors?.outputs ?? [])];
    for (const file of files.filter((f) => f.endsWith('.jsonl'))) {
      if (seen.has(path.resolve(file))) continue;
      seen.add(path.resolve(file));
      const text = await readFile(file, 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        if (!line) continue;
        if (errors.length >= limit) return { errors, truncated: true };
        errors.push(JSON.parse(line) as Record<string, unknown>);
      }
    }
  }
  return { errors, truncated: false };
}
