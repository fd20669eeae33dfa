/**
 * The HTTP face of the control plane: fastify with zod route schemas. The same schemas validate
 * requests, shape responses and generate the OpenAPI document at /v1/openapi.json, so the docs
 * cannot drift from what the server accepts.
 */
import fastifySwagger from '@fastify/swagger';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { type ERROR_CODES, SluiceError, toSluiceError } from '../sdk/errors.ts';
import { SpecInvalidError } from '../spec/validate.ts';
import type { ServerContext } from './context.ts';
import { healthRoutes } from './routes/health.ts';
import { jobRoutes } from './routes/jobs.ts';
import { pipelineRoutes } from './routes/pipelines.ts';
import { scheduleRoutes } from './routes/schedules.ts';
import { tokenRoutes } from './routes/tokens.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import type { TokenRecord, TokenScope } from './store/jobs.ts';

export type ZodApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least scope a token needs for this route; `public` routes need none (health only). */
    scope?: TokenScope | 'public';
  }
  interface FastifyRequest {
    token?: TokenRecord;
  }
}

const SCOPE_RANK: Record<TokenScope, number> = { read: 1, write: 2, admin: 3 };

const STATUS_BY_CODE: Partial<Record<keyof typeof ERROR_CODES, number>> = {
  SLUICE_SPEC_INVALID: 422,
  SLUICE_SPEC_YAML: 422,
  SLUICE_SPEC_VARIABLE: 422,
  SLUICE_SPEC_FORBIDDEN: 422,
  SLUICE_BAD_REQUEST: 400,
  SLUICE_USAGE: 400,
  SLUICE_NOT_FOUND: 404,
  SLUICE_UNAUTHORIZED: 401,
  SLUICE_FORBIDDEN: 403,
  SLUICE_CONFLICT: 409,
  SLUICE_JOB_STATE: 409,
  SLUICE_QUERY_FAILED: 400,
};

export interface AppOptions {
  /** Largest request body accepted, in bytes (specs are small; a larger body is refused with 413). */
  bodyLimit?: number;
}

export async function buildApp(ctx: ServerContext, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: options.bodyLimit ?? 1024 * 1024 });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // YAML specs may be sent as they are, not only inside JSON.
  app.addContentTypeParser(
    ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'],
    { parseAs: 'string' },
    (_req, body, done) => done(null, body),
  );

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Sluice control plane',
        version: '1',
        description:
          'Submit, run, watch, heal and audit pipeline jobs. Every route but /healthz and /readyz needs ' +
          '`Authorization: Bearer TOKEN`; scopes are read < write < admin.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.addHook('onRequest', async (req: FastifyRequest) => authenticate(ctx, req));
  app.addHook('onResponse', async (req, reply) => {
    ctx.metrics.observeRequest(
      req.routeOptions.url ?? 'unmatched',
      req.method,
      reply.statusCode,
      reply.elapsedTime,
    );
  });
  app.setErrorHandler((err, req, reply) => sendError(ctx, err, req, reply));
  app.setNotFoundHandler((req, reply) =>
    sendError(ctx, new SluiceError('SLUICE_NOT_FOUND', `no route ${req.method} ${req.url}`), req, reply),
  );

  const zapp = app.withTypeProvider<ZodTypeProvider>();
  healthRoutes(zapp, ctx);
  pipelineRoutes(zapp, ctx);
  jobRoutes(zapp, ctx);
  scheduleRoutes(zapp, ctx);
  webhookRoutes(zapp, ctx);
  tokenRoutes(zapp, ctx);
  app.get('/v1/openapi.json', { config: { scope: 'public' }, schema: { hide: true } as never }, async () =>
    app.swagger(),
  );
  await app.ready();
  return app;
}

async function authenticate(ctx: ServerContext, req: FastifyRequest): Promise<void> {
  const scope = req.routeOptions.config?.scope ?? 'admin';
  if (scope === 'public') return;
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) {
    throw new SluiceError(
      'SLUICE_UNAUTHORIZED',
      'this route needs an API token: send `Authorization: Bearer TOKEN` (the server printed an admin token on its first start)',
    );
  }
  const token = await ctx.store.verifyToken(match[1]!);
  if (!token) throw new SluiceError('SLUICE_UNAUTHORIZED', 'the API token is unknown or revoked');
  const best = Math.max(...token.scopes.map((s) => SCOPE_RANK[s]));
  if (best < SCOPE_RANK[scope]) {
    throw new SluiceError(
      'SLUICE_FORBIDDEN',
      `${req.method} ${req.routeOptions.url} needs a token with the ${scope} scope; token ${token.name} has ${token.scopes.join(', ')}`,
    );
  }
  req.token = token;
  // Last use is for audits, not security: it is written without waiting.
  ctx.store.touchToken(token.id).catch(() => {});
}

export interface ApiError {
  error: { code: string; message: string; details?: unknown };
}

function sendError(ctx: ServerContext, err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const problems = err.validation.map((v) => {
      const where = `${err.validationContext ?? 'body'}${v.instancePath.replaceAll('/', '.')}`;
      return `${where}: ${v.message}`;
    });
    return reply.status(400).send({
      error: { code: 'SLUICE_BAD_REQUEST', message: problems.join('; '), details: err.validation },
    });
  }
  const fastifyCode = (err as { code?: string; statusCode?: number }).code;
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return reply.status(413).send({
      error: { code: 'SLUICE_BAD_REQUEST', message: `the request body is larger than the server accepts` },
    });
  }
  if (typeof fastifyCode === 'string' && fastifyCode.startsWith('FST_ERR_CTP')) {
    return reply.status(400).send({
      error: { code: 'SLUICE_BAD_REQUEST', message: (err as Error).message },
    });
  }
  const error = toSluiceError(err);
  const status = STATUS_BY_CODE[error.code] ?? 500;
  if (status >= 500)
    ctx.logger.error('request failed', { method: req.method, url: req.url, error: error.message });
  const details = error instanceof SpecInvalidError ? { issues: error.issues } : error.details;
  return reply.status(status).send({
    error: { code: error.code, message: error.message, ...(details ? { details } : {}) },
  });
}
