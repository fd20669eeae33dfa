import { z } from 'zod';
import type { ZodApp } from '../app.ts';
import type { ServerContext } from '../context.ts';
import { TOKEN_SCOPES, type TokenRecord } from '../store/jobs.ts';

const apiToken = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(z.enum(TOKEN_SCOPES)),
  secrets: z.array(z.string()),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
  last_used_at: z.string().nullable(),
});

function toApiToken(t: TokenRecord): z.infer<typeof apiToken> {
  const iso = (n: number | null) => (n === null ? null : new Date(n).toISOString());
  return {
    ...t,
    created_at: iso(t.created_at)!,
    revoked_at: iso(t.revoked_at),
    last_used_at: iso(t.last_used_at),
  };
}

export function tokenRoutes(app: ZodApp, ctx: ServerContext): void {
  app.route({
    method: 'POST',
    url: '/v1/tokens',
    config: { scope: 'admin' },
    schema: {
      tags: ['tokens'],
      summary: 'Create an API token. The token is in this response only; the server keeps its hash.',
      body: z.object({
        name: z.string().min(1).max(100),
        scopes: z
          .array(z.enum(TOKEN_SCOPES))
          .min(1)
          .describe('read: look; write: also submit, cancel, restart; admin: also tokens and webhooks.'),
        secrets: z
          .array(z.string().min(1).max(200))
          .max(1000)
          .default([])
          .describe(
            'Secrets (names, or glob patterns such as `team_a_*`) that `${secret:…}` may read in specs this token saves, validates or submits. An admin token may use every secret.',
          ),
      }),
      response: { 201: z.object({ token: z.string(), record: apiToken }) },
    },
    handler: async (req, reply) => {
      const { token, record } = await ctx.store.createToken(req.body.name, req.body.scopes, req.body.secrets);
      return reply.status(201).send({ token, record: toApiToken(record) });
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/tokens',
    config: { scope: 'admin' },
    schema: {
      tags: ['tokens'],
      summary: 'List tokens (never their secrets).',
      response: { 200: z.object({ tokens: z.array(apiToken) }) },
    },
    handler: async () => ({ tokens: (await ctx.store.listTokens()).map(toApiToken) }),
  });

  app.route({
    method: 'DELETE',
    url: '/v1/tokens/:id',
    config: { scope: 'admin', errors: [409] },
    schema: {
      tags: ['tokens'],
      summary: 'Revoke a token: it stops working at once.',
      params: z.object({ id: z.string() }),
      response: { 200: z.object({ token: apiToken }) },
    },
    handler: async (req) => ({ token: toApiToken(await ctx.store.revokeToken(req.params.id)) }),
  });
}
