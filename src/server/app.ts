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
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { type ERROR_CODES, type ErrorCode, SluiceError, toSluiceError } from '../sdk/errors.ts';
import { SpecInvalidError } from '../spec/validate.ts';
import {
  type ApiErrorBody,
  clientErrorHandler,
  type RouteErrorStatus,
  RouteTable,
  withDeclaredErrors,
} from './api-errors.ts';
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
    /** Error statuses this route may answer besides the ones every route of its kind has (api-errors.ts). */
    errors?: RouteErrorStatus[];
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
  SLUICE_LAST_ADMIN_TOKEN: 409,
  SLUICE_QUERY_FAILED: 400,
  SLUICE_METHOD_NOT_ALLOWED: 405,
  SLUICE_UNSUPPORTED_MEDIA_TYPE: 415,
};

/** Parsers besides fastify's JSON one; a body of another Content-Type is refused with 415. */
const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'];

export interface AppOptions {
  /** Largest request body accepted, in bytes (specs are small; a larger body is refused with 413). */
  bodyLimit?: number;
}

export async function buildApp(ctx: ServerContext, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    // A bad percent-escape or an overlong path segment, found by the router: answered in our shape.
    frameworkErrors: (err, req, reply) => sendError(ctx, err, req, reply),
    clientErrorHandler,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // YAML specs may be sent as they are, not only inside JSON.
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string' }, (_req, body, done) => done(null, body));

  // Before swagger's own onRoute hook, so the document shows the error answers added here.
  const routes = new RouteTable();
  app.addHook('onRoute', (route) => {
    routes.add(route.url, route.method);
    withDeclaredErrors(route);
  });

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
    // Emits the schemas registered with an id (the error shape) once, under components.schemas.
    transformObject: jsonSchemaTransformObject,
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
  app.setErrorHandler((err, req, reply) =>
    // A request no route matches may still fail before the not-found handler (a QUERY without a
    // Content-Type, a body of an unknown type): it is a 404 or 405 all the same.
    req.is404 && !isFrameworkUrlError(err) ? sendMiss(routes, req, reply) : sendError(ctx, err, req, reply),
  );
  app.setNotFoundHandler((req, reply) => sendMiss(routes, req, reply));

  const zapp = app.withTypeProvider<ZodTypeProvider>();
  healthRoutes(zapp, ctx);
  pipelineRoutes(zapp, ctx);
  jobRoutes(zapp, ctx);
  scheduleRoutes(zapp, ctx);
  webhookRoutes(zapp, ctx);
  tokenRoutes(zapp, ctx);
  app.get('/v1/openapi.json', { config: { scope: 'read' }, schema: { hide: true } as never }, async () =>
    app.swagger(),
  );
  await app.ready();
  return app;
}

async function authenticate(ctx: ServerContext, req: FastifyRequest): Promise<void> {
  // No route: the not-found handler answers 404 or 405 (which paths exist is in the docs anyway).
  if (req.is404) return;
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

const isFrameworkUrlError = (err: unknown) =>
  ['FST_ERR_BAD_URL', 'FST_ERR_MAX_PARAM_LENGTH'].includes((err as { code?: string }).code ?? '');

function send(reply: FastifyReply, status: number, code: ErrorCode, message: string): FastifyReply {
  return reply.status(status).send({ error: { code, message } } satisfies ApiErrorBody);
}

/** 405 with `Allow` when the path exists under other methods, else 404. */
function sendMiss(routes: RouteTable, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const allowed = routes.allowed(req.url);
  if (!allowed.length) return send(reply, 404, 'SLUICE_NOT_FOUND', `no route ${req.method} ${req.url}`);
  reply.header('allow', allowed.join(', '));
  return send(
    reply,
    405,
    'SLUICE_METHOD_NOT_ALLOWED',
    `${req.method} is not a method of ${req.url.split('?')[0]}; it takes ${allowed.join(', ')}`,
  );
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
  const { code: fastifyCode, statusCode } = err as { code?: string; statusCode?: number };
  const path = req.url.split('?')[0] ?? req.url;
  switch (fastifyCode) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return send(reply, 413, 'SLUICE_BAD_REQUEST', 'the request body is larger than the server accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return send(
        reply,
        415,
        'SLUICE_UNSUPPORTED_MEDIA_TYPE',
        `Content-Type ${req.headers['content-type'] ?? '(none)'} is not accepted; send application/json (a spec may also be sent as ${YAML_TYPES.join(', ')})`,
      );
    case 'FST_ERR_BAD_URL':
      return send(reply, 400, 'SLUICE_BAD_REQUEST', `the path ${path} has an invalid percent-escape`);
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return send(
        reply,
        414,
        'SLUICE_BAD_REQUEST',
        `a path segment of ${path.slice(0, 120)}… is longer than any id or name (at most 100 characters)`,
      );
  }
  // Any other refusal of fastify's (a malformed body, a missing Content-Type): its 4xx status, our shape.
  if (fastifyCode?.startsWith('FST_') && statusCode && statusCode >= 400 && statusCode < 500)
    return send(reply, statusCode, 'SLUICE_BAD_REQUEST', (err as Error).message);
  const error = toSluiceError(err);
  const status = STATUS_BY_CODE[error.code] ?? 500;
  if (status >= 500)
    ctx.logger.error('request failed', { method: req.method, url: req.url, error: error.message });
  const details = error instanceof SpecInvalidError ? { issues: error.issues } : error.details;
  return reply.status(status).send({
    error: { code: error.code, message: error.message, ...(details ? { details } : {}) },
  });
}
