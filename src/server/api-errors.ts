/**
 * What the v1 API answers when a request goes wrong, in one shape (`{"error":{"code","message"}}`)
 * whoever notices it: a route, the router, fastify's body parsing or Node's HTTP parser. The same
 * place declares those answers in the OpenAPI document, so a client (or a fuzzer) can rely on them.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RouteOptions } from 'fastify';
import { z } from 'zod';
import type { TokenScope } from './store/jobs.ts';

/** Registered under an id, so the OpenAPI document holds it once (components.schemas.ApiError). */
export const apiErrorSchema = z
  .object({
    error: z.object({
      code: z.string().describe('A stable code, listed in docs/errors.md.'),
      message: z.string().describe('What went wrong and what would be valid.'),
      details: z
        .unknown()
        .optional()
        .describe('Structured facts, e.g. the spec issues with line and column.'),
    }),
  })
  .meta({ id: 'ApiError' });

export type ApiErrorBody = z.infer<typeof apiErrorSchema>;

/**
 * A status a route may answer with besides those every route of its kind has (see declaredErrors):
 * 404 for a route without path params that names something in its body (a pipeline).
 */
export type RouteErrorStatus = 404 | 409 | 422;

const WHY: Record<number, string> = {
  400: 'The request is malformed (a field, a query parameter, the URL); the message names the place.',
  401: 'No API token, or an unknown or revoked one.',
  403: "The token's scopes do not allow this call.",
  404: 'No such job, pipeline, schedule, webhook or token (in the path or the body).',
  409: 'The request conflicts with what the server holds (the message says what).',
  413: 'The request body is larger than the server accepts.',
  414: 'A path segment (an id or name) is longer than the server accepts.',
  415: 'The body has a Content-Type the route does not read.',
  422: 'The pipeline spec (or its params) is invalid; details.issues lists each problem with line and column.',
};

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * The error answers a route can give: 400 (any URL can be malformed), 401 unless public, 403 when
 * it needs more than read, 404 and 414 when it has path params, 413 and 415 when it takes a body,
 * and what the route itself declares in `config.errors` (409, 422).
 */
export function declaredErrors(route: {
  method: string | string[];
  schema?: { params?: unknown } | undefined;
  config?: { scope?: TokenScope | 'public'; errors?: RouteErrorStatus[] } | undefined;
}): number[] {
  const scope = route.config?.scope ?? 'admin';
  if (scope === 'public') return [];
  const methods = [route.method].flat();
  const statuses = [400, 401, ...(route.config?.errors ?? [])];
  if (scope !== 'read') statuses.push(403);
  if (route.schema?.params) statuses.push(404, 414);
  if (methods.some((m) => BODY_METHODS.has(m))) statuses.push(413, 415);
  return [...new Set(statuses)].sort();
}

/** Adds the route's error answers to its response schemas, each with the error shape and why it happens. */
export function withDeclaredErrors(route: RouteOptions): void {
  const statuses = declaredErrors(route as Parameters<typeof declaredErrors>[0]);
  if (!statuses.length) return;
  route.schema ??= {};
  route.schema.response ??= {};
  const response = route.schema.response as Record<string, unknown>;
  for (const status of statuses)
    response[status] ??= {
      description: WHY[status] ?? '',
      content: { 'application/json': { schema: apiErrorSchema } },
    };
}

/**
 * Which methods each path template answers, so that a request that matches no route gets 405 with
 * an `Allow` header when its path exists under another method, and 404 only when it does not.
 */
export class RouteTable {
  readonly #routes: { pattern: RegExp; fixed: number; methods: Set<string> }[] = [];

  add(url: string, method: string | string[]): void {
    const parts = url.split('/');
    const source = `^${parts
      .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/')}/?$`;
    let entry = this.#routes.find((r) => r.pattern.source === source);
    if (!entry) {
      const fixed = parts.filter((p) => !p.startsWith(':')).length;
      entry = { pattern: new RegExp(source), fixed, methods: new Set() };
      this.#routes.push(entry);
    }
    for (const m of [method].flat()) entry.methods.add(m);
  }

  /**
   * The methods of the path template that names the path most exactly (fewest params), as the
   * OpenAPI document lists it: /v1/pipelines/validate takes POST, though /v1/pipelines/:ref would
   * also match it. Empty when no route has the path; the query string is ignored.
   */
  allowed(url: string): string[] {
    const path = url.split('?')[0] ?? '';
    const matches = this.#routes.filter((r) => r.pattern.test(path));
    const best = Math.max(...matches.map((r) => r.fixed));
    return [...new Set(matches.filter((r) => r.fixed === best).flatMap((r) => [...r.methods]))].sort();
  }
}

/**
 * Errors Node's HTTP parser finds before fastify sees a request (headers or URL too large, not
 * HTTP at all), answered in the API's shape instead of fastify's default one.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [
          431,
          'the request line and headers are larger than the server accepts (a URL that long is not one this API uses)',
        ]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request did not arrive in time']
        : [400, `the request is not valid HTTP/1.1 (${err.code ?? err.message})`];
  const body = JSON.stringify({ error: { code: 'SLUICE_BAD_REQUEST', message } } satisfies ApiErrorBody);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
