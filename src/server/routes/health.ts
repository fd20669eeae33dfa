import { z } from 'zod';
import type { ZodApp } from '../app.ts';
import type { ServerContext } from '../context.ts';

export function healthRoutes(app: ZodApp, ctx: ServerContext): void {
  app.route({
    method: 'GET',
    url: '/healthz',
    config: { scope: 'public' },
    schema: {
      tags: ['health'],
      summary: 'Liveness: the server process answers.',
      security: [],
      response: { 200: z.object({ status: z.literal('ok') }) },
    },
    handler: async () => ({ status: 'ok' as const }),
  });

  app.route({
    method: 'GET',
    url: '/readyz',
    config: { scope: 'public' },
    schema: {
      tags: ['health'],
      summary: 'Readiness: the job store answers and the supervisor runs.',
      security: [],
      response: {
        200: z.object({ status: z.literal('ready'), store: z.string(), running_jobs: z.number() }),
        503: z.object({ status: z.literal('unavailable'), reason: z.string() }),
      },
    },
    handler: async (_req, reply) => {
      try {
        await ctx.db.get('SELECT 1 AS ok');
      } catch (err) {
        return reply
          .status(503)
          .send({ status: 'unavailable' as const, reason: `job store: ${String(err)}` });
      }
      return { status: 'ready' as const, store: ctx.db.kind, running_jobs: ctx.supervisor.running };
    },
  });

  app.route({
    method: 'GET',
    url: '/metrics',
    config: { scope: 'read' },
    schema: {
      tags: ['health'],
      summary: 'Prometheus metrics (text exposition format).',
      response: {
        200: {
          description: 'The text exposition format 0.0.4; docs/observability.md lists every metric.',
          content: { 'text/plain': { schema: z.string() } },
        },
      },
    },
    handler: async (_req, reply) => {
      reply.header('content-type', ctx.metrics.contentType);
      return ctx.metrics.render();
    },
  });
}
