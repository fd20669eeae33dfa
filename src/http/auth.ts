/**
 * Credentials of the HTTP components: fixed ones (bearer, basic, a header) and OAuth2 client
 * credentials (a token fetched with a form POST, cached, refreshed before it expires, shared by
 * concurrent calls, fetched afresh when the API answers 401). The http sink and source use
 * `authConfig` and `createAuth` as they are.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { z } from 'zod';
import { SluiceError, toSluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import { registeredSecrets } from '../spec/secrets.ts';
import { Redactor } from './redact.ts';

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const absoluteUrl = z
  .string()
  .min(1)
  .refine(
    (s) => {
      try {
        const u = new URL(s);
        return (u.protocol === 'http:' || u.protocol === 'https:') && !u.username && !u.password;
      } catch {
        return false;
      }
    },
    { message: 'expected an absolute http:// or https:// URL without credentials in it' },
  );

const oauth2 = z
  .object({
    token_url: absoluteUrl.describe('The token endpoint, e.g. `https://auth.example.com/oauth2/token`.'),
    client_id: z.string().min(1).describe('The client id.'),
    client_secret: z
      .string()
      .min(1)
      .describe('The client secret; write it as `${secret:NAME}` or `${env:NAME}`.'),
    scope: z.string().min(1).optional().describe('Scopes asked for, space separated (`scope`).'),
    audience: z
      .string()
      .min(1)
      .optional()
      .describe('The API the token is for (`audience`), where the server wants it.'),
    params: z
      .record(
        z.string(),
        z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v)),
      )
      .optional()
      .describe('More form fields sent to the token endpoint, e.g. `{ resource: https://api.example.com }`.'),
    client_auth: z
      .enum(['body', 'basic'])
      .default('body')
      .describe(
        'How the client authenticates: body (client_id and client_secret as form fields) or basic (HTTP basic with them, RFC 6749 2.3.1).',
      ),
  })
  .strict()
  .describe(
    'OAuth2 client credentials: the token is fetched with a form POST (`grant_type=client_credentials`), sent as `Authorization: Bearer`, cached, and fetched again before it expires (at `expires_in` less a tenth of it, at most 60 s less) or when the API answers 401 (that call is then sent once more). Concurrent calls share one fetch. Failures give SLUICE_HTTP_AUTH.',
  );

// One object with optional forms (rather than a union) so that every form is documented.
export const authConfig = z
  .object({
    bearer: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A token sent as `Authorization: Bearer <token>`; write it as `${env:NAME}` or `${secret:NAME}`.',
      ),
    basic: z
      .object({
        username: z.string().describe('The user name.'),
        password: z.string().describe('The password; write it as `${env:NAME}` or `${secret:NAME}`.'),
      })
      .strict()
      .optional()
      .describe('HTTP basic authentication (`Authorization: Basic ...`).'),
    header: z
      .object({
        name: z
          .string()
          .regex(HEADER_NAME, 'expected a header name')
          .describe('The header, e.g. `X-Api-Key`.'),
        value: z.string().min(1).describe('Its value; write it as `${env:NAME}` or `${secret:NAME}`.'),
      })
      .strict()
      .optional()
      .describe('An API key sent in a header of your choice.'),
    oauth2: oauth2.optional(),
  })
  .strict()
  .superRefine((auth, ctx) => {
    const forms = AUTH_FORMS.filter((k) => auth[k] !== undefined);
    if (forms.length !== 1)
      ctx.addIssue({
        code: 'custom',
        path: forms.slice(1, 2),
        message: forms.length
          ? `give one of bearer, basic, header and oauth2, not ${forms.join(' and ')}`
          : 'give one of bearer, basic, header and oauth2',
      });
  })
  .describe(
    'Credentials, one of `{ bearer: ... }`, `{ basic: { username, password } }`, `{ header: { name, value } }` or `{ oauth2: { token_url, client_id, client_secret } }`. They, OAuth2 access tokens and every `${secret:...}` value are redacted (`[REDACTED]`) from every error record, log line and summary Sluice writes.',
  );

const AUTH_FORMS = ['bearer', 'basic', 'header', 'oauth2'] as const;

export type AuthConfig = z.output<typeof authConfig>;
export type OAuth2Config = z.output<typeof oauth2>;

/** The request header the credentials go in (lower case), or undefined without auth. */
export function authHeaderName(cfg: AuthConfig | undefined): string | undefined {
  if (!cfg) return undefined;
  return cfg.header ? cfg.header.name.toLowerCase() : 'authorization';
}

/** The secrets of an auth config, in every form they are sent in. */
export function authSecrets(cfg: AuthConfig | undefined): string[] {
  const secrets: string[] = [];
  if (cfg?.bearer !== undefined) secrets.push(cfg.bearer);
  if (cfg?.basic) secrets.push(cfg.basic.password, basicCredentials(cfg.basic.username, cfg.basic.password));
  if (cfg?.header) secrets.push(cfg.header.value);
  if (cfg?.oauth2) {
    const { client_id, client_secret } = cfg.oauth2;
    secrets.push(client_secret, basicCredentials(formEncode(client_id), formEncode(client_secret)));
  }
  return secrets.filter((s) => s.length > 0);
}

function basicCredentials(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`).toString('base64');
}

function formEncode(text: string): string {
  return new URLSearchParams({ s: text }).toString().slice(2);
}

export interface AuthOptions {
  /** Cancels token fetches (the run's hard stop). */
  signal: AbortSignal;
  logger: Logger;
  /** Redacts the config's secrets; access tokens are added to it as they are fetched. */
  redactor: Redactor;
  /** Longest time for one token request (headers and body). */
  timeoutMs?: number;
}

/** Credentials ready to use: fixed headers, and an OAuth2 token source when configured. */
export interface Auth {
  /** Headers sent with every request (bearer, basic, an API key header); empty for OAuth2. */
  readonly headers: Readonly<Record<string, string>>;
  readonly oauth2?: OAuth2Client;
  close(): Promise<void>;
}

/** The credentials of a config, or undefined without `auth`. */
export function createAuth(cfg: AuthConfig | undefined, options: AuthOptions): Auth | undefined {
  if (!cfg) return undefined;
  const headers: Record<string, string> = {};
  if (cfg.bearer !== undefined) headers.authorization = `Bearer ${cfg.bearer}`;
  if (cfg.basic) headers.authorization = `Basic ${basicCredentials(cfg.basic.username, cfg.basic.password)}`;
  if (cfg.header) headers[cfg.header.name.toLowerCase()] = cfg.header.value;
  if (!cfg.oauth2) return { headers, close: async () => {} };
  const client = new OAuth2Client(cfg.oauth2, options);
  return { headers, oauth2: client, close: () => client.close() };
}

/** A Redactor for a config's auth secrets, every `${secret:...}` value read, and `more`. */
export function redactorFor(cfg: AuthConfig | undefined, more: Iterable<string> = []): Redactor {
  return new Redactor([...authSecrets(cfg), ...registeredSecrets(), ...more]);
}

/** Token requests tried per fetch, on network errors, timeouts, 429 and 5xx. */
const TOKEN_ATTEMPTS = 3;
/** How long a token is used: its lifetime less a tenth of it, at most this much less. */
const REFRESH_AHEAD_MAX_MS = 60_000;
const EXCERPT_BYTES = 1024;

interface Token {
  value: string;
  /** performance.now() after which a call fetches a new one; Infinity without expires_in. */
  refreshAt: number;
}

/** Fetches and caches OAuth2 client-credentials tokens. */
export class OAuth2Client {
  readonly #cfg: OAuth2Config;
  readonly #options: AuthOptions;
  readonly #agent: Agent;
  #token: Token | undefined;
  #pending: Promise<string> | undefined;
  /** Token requests that got a token; tokens dropped because the API answered 401. */
  fetches = 0;
  rejected = 0;

  constructor(cfg: OAuth2Config, options: AuthOptions) {
    this.#cfg = cfg;
    this.#options = options;
    const timeout = options.timeoutMs ?? 30_000;
    this.#agent = new Agent({
      connections: 4,
      connect: { timeout },
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
  }

  /**
   * A token to send: the cached one while it is fresh (synchronously), else a promise of a new one
   * (one fetch shared by every caller). Rejects with SLUICE_HTTP_AUTH, or the run's stop reason.
   */
  token(): string | Promise<string> {
    const token = this.#token;
    if (token && performance.now() < token.refreshAt) return token.value;
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** The API refused `token` (401): the next call fetches a new one, unless one already replaced it. */
  invalidate(token: string): void {
    if (this.#token?.value !== token) return;
    this.#token = undefined;
    this.rejected++;
  }

  async close(): Promise<void> {
    await this.#agent.close().catch(() => {});
  }

  async #fetch(): Promise<string> {
    const { signal, redactor } = this.#options;
    const { token_url, client_id, client_secret, scope, audience, params, client_auth } = this.#cfg;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (client_auth === 'basic')
      headers.authorization = `Basic ${basicCredentials(formEncode(client_id), formEncode(client_secret))}`;
    else {
      form.set('client_id', client_id);
      form.set('client_secret', client_secret);
    }
    if (scope !== undefined) form.set('scope', scope);
    if (audience !== undefined) form.set('audience', audience);
    for (const [k, v] of Object.entries(params ?? {})) form.set(k, v);
    const body = form.toString();
    const timeout = this.#options.timeoutMs ?? 30_000;
    let last: SluiceError | undefined;
    for (let attempt = 1; attempt <= TOKEN_ATTEMPTS; attempt++) {
      if (signal.aborted) throw toSluiceError(signal.reason, 'SLUICE_INTERRUPTED');
      const started = performance.now();
      let status: number;
      let text: string;
      try {
        const res = await request(token_url, {
          method: 'POST',
          headers,
          body,
          dispatcher: this.#agent,
          signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        if (signal.aborted) throw toSluiceError(signal.reason, 'SLUICE_INTERRUPTED');
        const e = err as { code?: string; name?: string; message?: string };
        const why = e.name === 'TimeoutError' ? `no answer within ${timeout}ms` : (e.message ?? String(err));
        last = this.#error(
          `could not be reached: ${why}${e.code && !why.includes(e.code) ? ` (${e.code})` : ''}`,
          true,
          {
            cause: e.code ?? e.name ?? 'UNKNOWN',
          },
        );
        await this.#backoff(attempt);
        continue;
      }
      if (status >= 200 && status < 300) {
        const token = this.#parse(text, started);
        this.fetches++;
        this.#token = token;
        return token.value;
      }
      const excerpt = redactor.redact(
        Buffer.from(text)
          .subarray(0, EXCERPT_BYTES * 64)
          .toString('utf8'),
      );
      const cut = Buffer.from(excerpt)
        .subarray(0, EXCERPT_BYTES)
        .toString('utf8')
        .replace(/\ufffd$/, '');
      const retriable = status === 429 || status >= 500;
      last = this.#error(`answered ${status}`, retriable, { status, body: cut || null });
      if (!retriable) throw last;
      await this.#backoff(attempt);
    }
    throw last!;
  }

  async #backoff(attempt: number): Promise<void> {
    if (attempt >= TOKEN_ATTEMPTS) return;
    try {
      await sleep(Math.random() * 100 * 2 ** attempt, undefined, { signal: this.#options.signal });
    } catch {}
  }

  #parse(text: string, started: number): Token {
    let parsed: { access_token?: unknown; token_type?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw this.#error('answered with a body that is not JSON', false, {});
    }
    const { access_token, token_type, expires_in } = parsed ?? {};
    if (typeof access_token !== 'string' || !access_token)
      throw this.#error('answered without an access_token', false, {});
    if (typeof token_type === 'string' && token_type.toLowerCase() !== 'bearer')
      throw this.#error(
        `answered with token_type "${token_type}": only bearer tokens are supported`,
        false,
        {},
      );
    this.#options.redactor.add(access_token);
    const lifetime = Number(expires_in);
    const refreshAt =
      Number.isFinite(lifetime) && lifetime > 0
        ? started + lifetime * 1000 - Math.min(REFRESH_AHEAD_MAX_MS, lifetime * 100)
        : Number.POSITIVE_INFINITY;
    return { value: access_token, refreshAt };
  }

  #error(what: string, retriable: boolean, details: Record<string, unknown>): SluiceError {
    const { redactor } = this.#options;
    const url = redactor.redact(this.#cfg.token_url);
    return new SluiceError(
      'SLUICE_HTTP_AUTH',
      redactor.redact(`OAuth2 token endpoint ${url} ${what} (client ${this.#cfg.client_id})`),
      { retriable, details: { token_url: url, ...details } },
    );
  }
}
