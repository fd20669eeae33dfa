import { z } from 'zod';
import type { ZodApp } from '../app.ts';
import type { ServerContext } from '../context.ts';
import { ALL_EVENTS, WEBHOOK_EVENTS } from '../webhooks.ts';

const eventName = z.enum([...WEBHOOK_EVENTS, ALL_EVENTS]);

const apiWebhook = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.string()),
  created_at: z.string(),
});

const apiDelivery = z.object({
  id: z.string(),
  webhook_id: z.string(),
  event: z.string(),
  job_id: z.string().nullable(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int(),
  last_status: z
    .number()
    .int()
    .nullable()
    .describe('HTTP status of the last attempt; null when no response came.'),
  last_error: z.string().nullable(),
  created_at: z.string(),
  delivered_at: z.string().nullable(),
  next_attempt_at: z.string().nullable().describe('When a pending delivery is tried next.'),
});

const byId = z.object({ id: z.string() });

export function webhookRoutes(app: ZodApp, ctx: ServerContext): void {
  app.route({
    method: 'POST',
    url: '/v1/webhooks',
    config: { scope: 'admin' },
    schema: {
      tags: ['webhooks'],
      summary: 'Register a webhook',
      description:
        'Each listed event of a job is POSTed to the URL as JSON, signed with HMAC-SHA256 in the ' +
        '`Sluice-Signature` header (see docs/webhooks.md). The secret is in this response only.',
      body: z.object({
        url: z
          .url({
            protocol: /^https?$/,
            error: (iss) => `${JSON.stringify(iss.input)} is not an http:// or https:// URL`,
          })
          .describe('http:// or https:// URL that receives the POSTs.'),
        events: z.array(eventName).min(1).describe("Events to send; '*' is every event."),
        secret: z
          .string()
          .min(1)
          .max(1000)
          .optional()
          .describe('Signing secret; generated (whsec_...) when left out.'),
      }),
      response: { 201: z.object({ webhook: apiWebhook, secret: z.string() }) },
    },
    handler: async (req, reply) => reply.status(201).send(await ctx.webhooks.register(req.body)),
  });

  app.route({
    method: 'GET',
    url: '/v1/webhooks',
    config: { scope: 'read' },
    schema: {
      tags: ['webhooks'],
      summary: 'List webhooks (never their secrets)',
      response: { 200: z.object({ webhooks: z.array(apiWebhook) }) },
    },
    handler: async () => ({ webhooks: await ctx.webhooks.list() }),
  });

  app.route({
    method: 'DELETE',
    url: '/v1/webhooks/:id',
    config: { scope: 'admin' },
    schema: {
      tags: ['webhooks'],
      summary: 'Remove a webhook',
      description: 'Deliveries still waiting are given up; the delivery log is kept.',
      params: byId,
      response: { 204: z.undefined().describe('Removed') },
    },
    handler: async (req, reply) => {
      await ctx.webhooks.remove(req.params.id);
      return reply.status(204).send();
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/webhooks/:id/deliveries',
    config: { scope: 'read' },
    schema: {
      tags: ['webhooks'],
      summary: "A webhook's delivery log, newest first",
      params: byId,
      querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(50) }),
      response: { 200: z.object({ deliveries: z.array(apiDelivery) }) },
    },
    handler: async (req) => ({ deliveries: await ctx.webhooks.deliveries(req.params.id, req.query.limit) }),
  });
}
