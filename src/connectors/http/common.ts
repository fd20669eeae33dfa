/**
 * What the `http` sink and source share with the `http` step (src/http/): the timeout, retry and
 * auth schemas (the same objects the step's config uses, so validation and reference docs are
 * identical), the undici caller (HttpCaller: pool, bounded concurrency, per-attempt timeouts,
 * retries honouring Retry-After), and redaction of credentials.
 */
import { z } from 'zod';
import { type Auth, authConfig, authHeaderName, createAuth, redactorFor } from '../../http/auth.ts';
import { type CallerOptions, HttpCaller, type Redactor } from '../../http/client.ts';
import { type RateLimitConfig, rateLimitConfig, rateLimitOf, TokenBucket } from '../../http/rate-limit.ts';
import {
  DEFAULT_MAX_BYTES,
  decompressSchema,
  maxBytesSchema,
  redirectsSchema,
  retrySchema,
  timeoutSchema,
} from '../../http/schemas.ts';
import type { ComponentContext } from '../../sdk/types.ts';
import { parseDuration } from '../../spec/duration.ts';
import { parseSize } from '../../spec/size.ts';

/** `timeout`, `retry` and `redirects`, exactly as the step has them (with their defaults). */
export { redirectsSchema, retrySchema, timeoutSchema };
/** `auth`: bearer, basic, header or oauth2, as the step has it. */
export const authSchema = authConfig.optional();
/** `rate_limit`: the step's per-host token bucket. */
export const rateLimitSchema = rateLimitConfig.optional();
/** `response: { max_bytes, decompress }`: the step's cap on a body and decoding of it. */
export const responseSchema = z
  .object({ max_bytes: maxBytesSchema, decompress: decompressSchema })
  .strict()
  .default({ max_bytes: DEFAULT_MAX_BYTES, decompress: true })
  .describe(
    'How response bodies are read: decoded (Content-Encoding) and capped in size, as in the http step.',
  );

export type TimeoutConfig = z.output<typeof timeoutSchema>;
export type RetryConfig = z.output<typeof retrySchema>;
export type AuthConfig = z.output<typeof authSchema>;
export type RedirectsConfig = z.output<typeof redirectsSchema>;
export type ResponseConfig = z.output<typeof responseSchema>;

export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// As the step: header and query names whose fixed values are treated as secrets and redacted.
const SENSITIVE_NAME =
  /auth|token|secret|passw|api[-_]?key|apikey|signature|session|cookie|credential|private/i;

type Issue = (path: (string | number)[], message: string) => void;

/** The checks the step makes on headers against `auth`, and on `retry`, with the same messages. */
export function checkAuthAndRetry(
  cfg: { auth?: AuthConfig; retry: RetryConfig; headers?: Record<string, string> },
  issue: Issue,
): void {
  const authHeader = authHeaderName(cfg.auth);
  for (const name of Object.keys(cfg.headers ?? {}))
    if (name.toLowerCase() === authHeader)
      issue(['headers', name], `${name} is set by auth: give it in one place only`);
  if (new Set(cfg.retry.on.map(String)).size !== cfg.retry.on.length)
    issue(['retry', 'on'], 'list each status or condition at most once');
}

/**
 * What must never be recorded: the credentials, every `${secret:...}` value, and the fixed values
 * of headers and query parameters whose names look secret (as the step redacts them).
 */
export function connectorRedactor(
  auth: AuthConfig,
  fixed: { headers?: Record<string, string>; query?: Record<string, string>; url: string },
  isTemplate: (value: string) => boolean = () => false,
): Redactor {
  const secrets: string[] = [];
  const add = (name: string, value: string) => {
    if (SENSITIVE_NAME.test(name) && !isTemplate(value)) secrets.push(value);
  };
  for (const [name, value] of Object.entries(fixed.headers ?? {})) add(name, value);
  for (const [name, value] of Object.entries(fixed.query ?? {})) add(name, value);
  const query = fixed.url.split('?')[1]?.split('#')[0];
  for (const pair of query?.split('&') ?? []) {
    const [name = '', value = ''] = pair.split('=');
    if (!value) continue;
    add(name, value);
    try {
      add(name, decodeURIComponent(value));
    } catch {}
  }
  return redactorFor(
    auth,
    secrets.filter((s) => s.length > 0),
  );
}

export function ms(duration: string): number {
  return parseDuration(duration) ?? 0;
}

/** What `retry.on` retries, in the caller's terms. */
export function retryOptions(retry: RetryConfig): CallerOptions['retry'] {
  const on = retry.on;
  return {
    attempts: retry.attempts,
    backoff: retry.backoff,
    initial: ms(retry.initial),
    max: ms(retry.max),
    statuses: new Set(on.filter((x): x is number => typeof x === 'number')),
    serverErrors: on.includes('5xx'),
    network: on.includes('network'),
    timeout: on.includes('timeout'),
  };
}

/** A connector's caller with its credentials and rate limit; `close()` releases all three. */
export interface Connection {
  caller: HttpCaller;
  /** Headers `auth` sends with every request (none for oauth2, which the caller adds). */
  authHeaders: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

export function connect(opts: {
  origin: string;
  concurrency: number;
  timeout: TimeoutConfig;
  retry: RetryConfig;
  auth: AuthConfig;
  rateLimit: RateLimitConfig | undefined;
  redirects: RedirectsConfig;
  response: ResponseConfig;
  as: CallerOptions['as'];
  signal: AbortSignal;
  redactor: Redactor;
  logger: ComponentContext['logger'];
}): Connection {
  const auth: Auth | undefined = createAuth(opts.auth, {
    signal: opts.signal,
    logger: opts.logger,
    redactor: opts.redactor,
    timeoutMs: ms(opts.timeout.total),
  });
  const limit = opts.rateLimit ? rateLimitOf(opts.rateLimit) : undefined;
  const limiter = limit ? new TokenBucket(limit.perSecond, limit.burst) : undefined;
  const caller = new HttpCaller({
    origin: opts.origin,
    concurrency: opts.concurrency,
    timeouts: {
      connect: ms(opts.timeout.connect),
      headers: ms(opts.timeout.headers),
      total: ms(opts.timeout.total),
    },
    retry: retryOptions(opts.retry),
    // 2xx is a success, every other final status a failure the connector classifies itself.
    onStatus: {},
    as: opts.as,
    maxBytes: parseSize(opts.response.max_bytes),
    decompress: opts.response.decompress,
    redirects: { max: opts.redirects.max, crossOrigin: opts.redirects.cross_origin },
    ...(opts.auth?.header ? { credentialHeaders: [opts.auth.header.name.toLowerCase()] } : {}),
    signal: opts.signal,
    redactor: opts.redactor,
    ...(limiter ? { limiter } : {}),
    ...(auth?.oauth2 ? { oauth2: auth.oauth2 } : {}),
  });
  let closing: Promise<void> | undefined;
  return {
    caller,
    authHeaders: auth?.headers ?? {},
    close: () => {
      closing ??= (async () => {
        limiter?.close();
        await Promise.all([caller.close(), auth?.close()]);
      })();
      return closing;
    },
  };
}
