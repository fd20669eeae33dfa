import { z } from 'zod';
import type { ZodApp } from '../app.ts';
import type { ServerContext } from '../context.ts';
import { CATCH_UP_POLICIES, MAX_BACKFILL_DATES } from '../scheduler.ts';
import { apiJobSchema, showJob } from './jobs.ts';
import { assertSecretsGranted } from './pipelines.ts';

const params = z
  .record(z.string(), z.string())
  .describe('Values for `${param:NAME}` in the spec, given to every job (besides the date param).');
const paramName = z
  .string()
  .describe(
    'The param that receives the date, YYYY-MM-DD (in the timezone, for a schedule). Default: `date`.',
  );

const scheduleFields = {
  pipeline: z.string().min(1).describe('Pipeline id or name; each fire runs its latest version.'),
  cron: z
    .string()
    .min(1)
    .describe(
      'When to fire: 5 fields (minute hour day-of-month month day-of-week, e.g. `0 2 * * *`) or 6 with seconds first.',
    ),
  timezone: z
    .string()
    .describe('IANA time zone the cron expression and the date are read in. Default: `UTC`.'),
  catch_up: z
    .enum(CATCH_UP_POLICIES)
    .describe(
      'Fires missed while the server was down: `none` skips them, `latest` (default) runs the most recent one, `all` runs each, oldest first.',
    ),
  params,
  param_name: paramName,
  enabled: z.boolean().describe('A disabled schedule does not fire. Default: true.'),
};

const apiScheduleSchema = z.object({
  id: z.string(),
  pipeline: z.object({ id: z.string(), name: z.string() }),
  cron: z.string(),
  timezone: z.string(),
  catch_up: z.enum(CATCH_UP_POLICIES),
  param_name: z.string(),
  params: z.record(z.string(), z.string()),
  enabled: z.boolean(),
  last_fire_at: z.string().nullable().describe('The latest fire that submitted a job.'),
  next_fire_at: z.string().nullable().describe('The next fire; null while disabled.'),
  created_at: z.string(),
  updated_at: z.string(),
});

const scheduleReply = z.object({ schedule: apiScheduleSchema });
const idParams = z.object({ id: z.string() });
const date = z.iso.date({ error: 'expected a date as YYYY-MM-DD, e.g. 2025-01-31' });

export function scheduleRoutes(app: ZodApp, ctx: ServerContext): void {
  app.route({
    method: 'POST',
    url: '/v1/schedules',
    config: { scope: 'write', errors: [404] },
    schema: {
      tags: ['schedules'],
      summary: 'Create a schedule: run a pipeline on a cron, with the fire date as a param.',
      body: z.strictObject({
        pipeline: scheduleFields.pipeline,
        cron: scheduleFields.cron,
        timezone: scheduleFields.timezone.optional(),
        catch_up: scheduleFields.catch_up.optional(),
        params: params.optional(),
        param_name: paramName.optional(),
        enabled: scheduleFields.enabled.optional(),
      }),
      response: { 201: scheduleReply },
    },
    handler: async (req, reply) => {
      await assertSecretsGranted(ctx, req.token, req.body.pipeline);
      return reply.status(201).send({ schedule: await ctx.scheduler.create(req.body) });
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/schedules',
    config: { scope: 'read' },
    schema: {
      tags: ['schedules'],
      summary: 'List schedules, oldest first.',
      response: { 200: z.object({ schedules: z.array(apiScheduleSchema) }) },
    },
    handler: async () => ({ schedules: await ctx.scheduler.list() }),
  });

  app.route({
    method: 'GET',
    url: '/v1/schedules/:id',
    config: { scope: 'read' },
    schema: {
      tags: ['schedules'],
      summary: 'One schedule, with its last and next fire.',
      params: idParams,
      response: { 200: scheduleReply },
    },
    handler: async (req) => ({ schedule: await ctx.scheduler.get(req.params.id) }),
  });

  app.route({
    method: 'PATCH',
    url: '/v1/schedules/:id',
    config: { scope: 'write' },
    schema: {
      tags: ['schedules'],
      summary: 'Change a schedule: only the fields given.',
      description:
        'A new cron or timezone, or enabling a disabled schedule, plans the next fire from now; fires missed while disabled are not caught up.',
      params: idParams,
      body: z.strictObject({
        pipeline: scheduleFields.pipeline.optional(),
        cron: scheduleFields.cron.optional(),
        timezone: scheduleFields.timezone.optional(),
        catch_up: scheduleFields.catch_up.optional(),
        params: params.optional().describe('Replaces all params (besides the date param).'),
        param_name: paramName.optional(),
        enabled: scheduleFields.enabled.optional(),
      }),
      response: { 200: scheduleReply },
    },
    handler: async (req) => {
      if (req.body.pipeline !== undefined) await assertSecretsGranted(ctx, req.token, req.body.pipeline);
      return { schedule: await ctx.scheduler.update(req.params.id, req.body) };
    },
  });

  app.route({
    method: 'DELETE',
    url: '/v1/schedules/:id',
    config: { scope: 'write' },
    schema: {
      tags: ['schedules'],
      summary: 'Delete a schedule; the jobs it submitted stay.',
      params: idParams,
      response: { 204: z.null().describe('Deleted.') },
    },
    handler: async (req, reply) => {
      await ctx.scheduler.remove(req.params.id);
      return reply.status(204).send(null);
    },
  });

  app.route({
    method: 'POST',
    url: '/v1/backfills',
    config: { scope: 'write', errors: [404] },
    schema: {
      tags: ['schedules'],
      summary: 'Backfill: one job per date from..to (both included), oldest first.',
      description: `Each job gets its date in \`param_name\`. Idempotent per pipeline, date and params: sending the same backfill again returns the same jobs. At most ${MAX_BACKFILL_DATES} dates.`,
      body: z.strictObject({
        pipeline: z.string().min(1).describe('Pipeline id or name; the jobs run its latest version.'),
        from: date.describe('The first date, YYYY-MM-DD.'),
        to: date.describe('The last date, YYYY-MM-DD (included).'),
        param_name: paramName.optional(),
        params: params.optional(),
      }),
      response: { 201: z.object({ jobs: z.array(apiJobSchema) }) },
    },
    handler: async (req, reply) => {
      await assertSecretsGranted(ctx, req.token, req.body.pipeline);
      const jobs = await ctx.scheduler.backfill(req.body);
      return reply.status(201).send({ jobs: jobs.map((job) => showJob(ctx, job)) });
    },
  });
}
