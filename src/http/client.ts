/**
 * The calls of the `http` step: keep-alive connections to the step's origin (undici Clients on a free list), a
 * bound on calls in flight, per-attempt timeouts, retries with full jitter honouring Retry-After,
 * decoded Content-Encoding (undici's decompress interceptor), redirects followed under a policy,
 * a cap on the body size, and the classification of every final outcome. Each record's call is independent: a call that
 * fails becomes that record's outcome and never holds up the others.
 */
import { STATUS_CODES } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, Client, type Dispatcher, interceptors } from 'undici';
import { SluiceError, toSluiceError } from '../sdk/errors.ts';
import type { OAuth2Client } from './auth.ts';
import type { Admission, CircuitBreaker } from './breaker.ts';
import { HttpMetrics, type OutcomeClass } from './metrics.ts';
import type { TokenBucket } from './rate-limit.ts';
import type { Redactor } from './redact.ts';

export { REDACTED, Redactor } from './redact.ts';

type IncomingHttpHeaders = Dispatcher.ResponseData['headers'];

/** A request rendered for one record. */
export interface PreparedRequest {
  /** Another origin than the caller's: only on a request a cross-origin redirect made. */
  origin?: string;
  method: string;
  /** Path and query, percent-encoded: `/v1/users/42?full=1`. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export type StatusAction = 'keep' | 'drop' | 'error';

export interface CallerOptions {
  origin: string;
  concurrency: number;
  timeouts: { connect: number; headers: number; total: number };
  retry: {
    attempts: number;
    backoff: 'exponential' | 'constant';
    initial: number;
    max: number;
    /** Statuses retried, and whether network errors and timeouts are. */
    statuses: ReadonlySet<number>;
    serverErrors: boolean;
    network: boolean;
    timeout: boolean;
  };
  /** The action for a final status: by code, then class, then 2xx keep / else error. */
  onStatus: Readonly<Record<string, StatusAction>>;
  as: 'auto' | 'json' | 'text';
  /** Cancels waits and in-flight calls (the run's hard stop). */
  signal: AbortSignal;
  redactor: Redactor;
  /** Taken before every attempt (the per-host rate limit). */
  limiter?: TokenBucket;
  /** Asked before every attempt and told how it went (the per-host circuit breaker). */
  breaker?: CircuitBreaker;
  /** Sends `Authorization: Bearer <token>`; a 401 fetches a new token and sends the call once more. */
  oauth2?: OAuth2Client;
  /** Most bytes of a body kept, counted after Content-Encoding is decoded (response.max_bytes). */
  maxBytes: number;
  /** Decodes gzip, deflate, br and zstd bodies (the request asks for them: ACCEPT_ENCODING). */
  decompress: boolean;
  /** Redirects followed per attempt, and whether to other origins. */
  redirects: { max: number; crossOrigin: boolean };
  /** Header names (lowercase) besides Authorization, Cookie and Proxy-Authorization never sent to another origin. */
  credentialHeaders?: readonly string[];
}

/** What a request asks for when responses are decoded: every encoding undici's decompress interceptor reads. */
export const ACCEPT_ENCODING = 'gzip, deflate, br, zstd';

/** Adds Accept-Encoding to a request's headers (names in lowercase) unless they set it. */
export function acceptEncoding(headers: Record<string, string>, decompress: boolean): void {
  if (decompress && !('accept-encoding' in headers)) headers['accept-encoding'] = ACCEPT_ENCODING;
}

type Dispatch = Dispatcher['dispatch'];

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Codes of node:zlib's errors (gzip and deflate, brotli, zstd): a body its Content-Encoding does not describe. */
const DECODE_ERROR = /^(?:Z_|ERR__ERROR_|ZSTD_error_)/;
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

/** What became of one record's call, after its retries. */
export type CallOutcome =
  | {
      kind: 'response';
      action: 'keep';
      status: number;
      headers: IncomingHttpHeaders;
      body: unknown;
      attempts: number;
    }
  | { kind: 'dropped'; status: number; attempts: number }
  | { kind: 'failed'; error: SluiceError; attempts: number }
  | { kind: 'aborted' };

/** The error body kept in an error record: at most this many bytes of UTF-8 text. */
export const EXCERPT_BYTES = 1024;
/** Bytes of an error body read before redaction, so that a secret cut at the edge never shows. */
const EXCERPT_READ = 64 * 1024;

// ---------------------------------------------------------------- in-flight bound

/** A counting semaphore with a synchronous fast path; waiters are served first come, first served. */
class Slots {
  #free: number;
  readonly #waiters: (() => void)[] = [];
  #head = 0;

  constructor(size: number) {
    this.#free = size;
  }

  /** Undefined when a slot was free (taken at once), else a promise resolved when one is. */
  acquire(): Promise<void> | undefined {
    if (this.#free > 0) {
      this.#free--;
      return undefined;
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  release(): void {
    if (this.#head < this.#waiters.length) {
      const next = this.#waiters[this.#head]!;
      this.#waiters[this.#head++] = undefined as unknown as () => void;
      if (this.#head === this.#waiters.length) {
        this.#waiters.length = 0;
        this.#head = 0;
      }
      next(); // the slot passes straight to the next waiter
      return;
    }
    this.#free++;
  }
}

// ---------------------------------------------------------------- attempts

/** Aborts an attempt that ran out of time; `phase` says which deadline passed. */
class AttemptTimeout extends Error {
  readonly phase: 'headers' | 'total';
  readonly ms: number;
  constructor(phase: 'headers' | 'total', ms: number) {
    super(`${phase} timeout`);
    this.phase = phase;
    this.ms = ms;
  }
}

type AttemptResult =
  | { kind: 'retry-status'; status: number; retryAfterMs: number | undefined }
  | { kind: 'reauth' }
  | { kind: 'final'; outcome: CallOutcome }
  | { kind: 'network'; message: string; cause: string }
  | { kind: 'timeout'; phase: 'connect' | 'headers' | 'total'; ms: number }
  | { kind: 'invalid'; message: string }
  | { kind: 'redirect'; status: number; location: string }
  | { kind: 'too-large'; status: number }
  | { kind: 'undecodable'; status: number; message: string };

const ACTIONS = { keep: 1, drop: 2, error: 3 } as const;
const ABORTED: CallOutcome = Object.freeze({ kind: 'aborted' });
const ACTION_NAMES = [undefined, 'keep', 'drop', 'error'] as const;

export class HttpCaller {
  /** Every connection made so far (one undici Client each), and those not carrying a call now. */
  readonly #clients: Client[] = [];
  /** Connections not carrying a call now, as their dispatch functions (through the decompress interceptor). */
  readonly #free: Dispatch[] = [];
  readonly #clientOptions: Client.Options;
  readonly #decode: Dispatcher.DispatcherComposeInterceptor | undefined;
  /** Connections to other origins, for cross-origin redirects only (made on the first). */
  #agent: Agent | undefined;
  #agentDispatch: Dispatch | undefined;
  readonly #stripped: ReadonlySet<string>;
  #closed = false;
  readonly #slots: Slots;
  readonly #opts: CallerOptions;
  /** Per status 0..599: the action (1 keep, 2 drop, 3 error) and, at +600, 1 when it is retried. */
  readonly #table = new Uint8Array(1200);
  readonly #onAbort: () => void;
  /** Requests by outcome, latency, retries: the step's metrics. */
  readonly metrics = new HttpMetrics();

  constructor(opts: CallerOptions) {
    this.#opts = opts;
    this.#slots = new Slots(opts.concurrency);
    // HTTP/1.1 without pipelining carries one call per connection: as many connections as calls,
    // each an undici Client taken from a free list. (undici's Pool looks for a free connection by
    // scanning all of them on every call: a quarter of the CPU at 4,096 in flight.)
    this.#clientOptions = {
      pipelining: 1,
      connect: { timeout: opts.timeouts.connect },
      // Backstops only: undici's parser timers are coarse (about 1 s); the attempt's own timers are precise.
      headersTimeout: opts.timeouts.headers + 1000,
      bodyTimeout: opts.timeouts.total + 1000,
    };
    // Error bodies too: their excerpt is meant to be read. maxSize also bounds each stage of a
    // chained encoding (gzip, br), which the handler's own count of the decoded body cannot see.
    this.#decode = opts.decompress
      ? interceptors.decompress({ skipErrorResponses: false, maxSize: opts.maxBytes })
      : undefined;
    this.#stripped = new Set([...CREDENTIAL_HEADERS, ...(opts.credentialHeaders ?? [])]);
    for (let status = 100; status < 600; status++) {
      const action =
        opts.onStatus[String(status)] ??
        opts.onStatus[`${Math.floor(status / 100)}xx`] ??
        (status >= 200 && status < 300 ? 'keep' : 'error');
      this.#table[status] = ACTIONS[action];
      const retried = opts.retry.statuses.has(status) || (opts.retry.serverErrors && status >= 500);
      this.#table[600 + status] = retried ? 1 : 0;
    }
    this.#onAbort = () => {
      for (const client of this.#clients) client.destroy().catch(() => {});
      this.#agent?.destroy().catch(() => {});
    };
    opts.signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  async close(): Promise<void> {
    this.#opts.signal.removeEventListener('abort', this.#onAbort);
    if (this.#closed) return;
    this.#closed = true;
    const aborted = this.#opts.signal.aborted;
    const agent = this.#agent;
    await Promise.all([
      ...this.#clients.map((c) => (c.destroyed || c.closed ? undefined : aborted ? c.destroy() : c.close())),
      agent && !agent.destroyed && !agent.closed ? (aborted ? agent.destroy() : agent.close()) : undefined,
    ]);
  }

  /**
   * Makes one record's call, with its retries. Never rejects. Each attempt passes the circuit
   * breaker (which may hold it or refuse it), takes a concurrency slot, then a rate-limit token
   * (holding the slot, so that requests leave at the limiter's pace), then the OAuth2 token.
   */
  async call(req: PreparedRequest): Promise<CallOutcome> {
    const { retry, signal, limiter, breaker, oauth2 } = this.#opts;
    /** Attempts that do not count against retry.attempts: the one after a 401 refreshed the token. */
    let free = 0;
    let reauthed = false;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return ABORTED;
      let admission: Admission | undefined;
      if (breaker) {
        try {
          const admitted = breaker.admit(signal);
          admission = admitted instanceof Promise ? await admitted : admitted;
        } catch (err) {
          const error = toSluiceError(err, 'SLUICE_INTERRUPTED');
          if (signal.aborted || error.code !== 'SLUICE_HTTP_CIRCUIT_OPEN') return ABORTED;
          return {
            kind: 'failed',
            error: this.#circuitError(req, error, attempt - 1),
            attempts: attempt - 1,
          };
        }
      }
      if (attempt > 1) this.metrics.retries++;
      const wait = this.#slots.acquire();
      if (wait) await wait;
      let result: AttemptResult;
      let status = 0;
      let token: string | undefined;
      /** The request the final response answered: the configured one, or where redirects led. */
      let answered = req;
      const started = performance.now();
      try {
        if (limiter) {
          const taken = limiter.take(signal);
          if (taken) await taken;
        }
        let headers = req.headers;
        if (oauth2) {
          const got = oauth2.token();
          token = typeof got === 'string' ? got : await got;
          headers = { ...req.headers, authorization: `Bearer ${token}` };
        }
        const sent = await this.#send(
          req,
          headers,
          attempt,
          attempt - free < retry.attempts,
          !!oauth2 && !reauthed,
        );
        result = sent.result;
        status = sent.status;
        answered = sent.req;
      } catch (err) {
        // No request was sent: stopped while waiting for a token, or no OAuth2 token could be had.
        if (admission) breaker!.release(admission);
        const error = toSluiceError(err, 'SLUICE_HTTP_AUTH');
        if (signal.aborted || error.code === 'SLUICE_INTERRUPTED') return ABORTED;
        return { kind: 'failed', error, attempts: attempt - 1 };
      } finally {
        this.#slots.release(); // no slot is held while waiting to retry
      }
      if (result.kind === 'invalid') {
        if (admission) breaker!.release(admission);
      } else {
        const outcome: OutcomeClass =
          result.kind === 'network' || result.kind === 'timeout' ? result.kind : HttpMetrics.classOf(status);
        this.metrics.attempt(outcome, performance.now() - started);
        if (admission)
          breaker!.record(admission, outcome === 'network' || outcome === 'timeout' || this.#retried(status));
      }
      if (signal.aborted) return ABORTED;
      if (result.kind === 'final') return result.outcome;
      if (result.kind === 'reauth') {
        // The token was refused: one new token, one more attempt, not counted against retry.attempts.
        oauth2!.invalidate(token!);
        reauthed = true;
        free++;
        continue;
      }
      const retried =
        result.kind === 'retry-status' ||
        (result.kind === 'network' && retry.network) ||
        (result.kind === 'timeout' && retry.timeout);
      if (!retried || attempt - free >= retry.attempts) return this.#failure(answered, result, attempt);
      const delay = this.#backoff(
        attempt - free,
        result.kind === 'retry-status' ? result.retryAfterMs : undefined,
      );
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        return ABORTED;
      }
    }
  }

  /** Whether a status is one `retry.on` lists (so a failure for the circuit breaker). */
  #retried(status: number): boolean {
    return status >= 100 && status < 600 && this.#table[600 + status] === 1;
  }

  #circuitError(req: PreparedRequest, error: SluiceError, attempts: number): SluiceError {
    return new SluiceError(
      'SLUICE_HTTP_CIRCUIT_OPEN',
      this.#opts.redactor.redact(`${req.method} ${this.#url(req)} was not sent: ${error.message}`),
      { details: { ...this.#where(req, attempts), ...error.details } },
    );
  }

  /** Full jitter; a Retry-After is a floor (the jitter spreads the retries above it), capped by max. */
  #backoff(attempt: number, retryAfterMs: number | undefined): number {
    const { backoff, initial, max } = this.#opts.retry;
    const scale = backoff === 'constant' ? initial : initial * 2 ** (attempt - 1);
    const jitter = Math.random() * Math.min(max, scale);
    return Math.min(max, (retryAfterMs ?? 0) + jitter);
  }

  /**
   * One attempt, on undici's dispatch API: no stream and no AbortSignal per call, which cost a
   * quarter of the throughput at thousands in flight. The status decides what the body is for:
   * nothing for a retried or dropped response (it is read and discarded, so the connection is
   * reused), all of it to keep, an excerpt for an error record.
   */
  #attempt(
    req: PreparedRequest,
    headers: Record<string, string>,
    attempt: number,
    mayRetry: boolean,
    mayReauth: boolean,
  ): Promise<AttemptHandler> {
    const elsewhere = req.origin !== undefined;
    // Every attempt holds a slot, and there are as many connections as slots: one is free.
    const client = elsewhere ? this.#otherOrigins() : (this.#free.pop() ?? this.#connection());
    return new Promise((resolve) => {
      const handler = new AttemptHandler(this, req, attempt, mayRetry, mayReauth, () => {
        if (!elsewhere) this.#free.push(client);
        resolve(handler);
      });
      try {
        client(
          {
            ...(elsewhere ? { origin: req.origin } : {}),
            path: req.path,
            method: req.method as Dispatcher.HttpMethod,
            headers,
            body: req.body ?? null,
          },
          handler,
        );
      } catch (err) {
        handler.fail(err);
      }
    });
  }

  /**
   * One attempt with the redirects it meets: each hop is sent under the redirect policy, on a
   * connection to its origin, with its own timeouts. The result is the last hop's.
   */
  async #send(
    req: PreparedRequest,
    headers: Record<string, string>,
    attempt: number,
    mayRetry: boolean,
    mayReauth: boolean,
  ): Promise<{ result: AttemptResult; status: number; req: PreparedRequest }> {
    let sent: PreparedRequest = headers === req.headers ? req : { ...req, headers };
    for (let hops = 1; ; hops++) {
      const started = performance.now();
      const handler = await this.#attempt(sent, sent.headers, attempt, mayRetry, mayReauth);
      const result = handler.result;
      if (result.kind !== 'redirect') return { result, status: handler.status, req: sent };
      this.metrics.attempt('3xx', performance.now() - started);
      const next = this.#follow(req, sent, result, hops);
      if (next instanceof SluiceError)
        return {
          result: { kind: 'final', outcome: { kind: 'failed', error: next, attempts: attempt } },
          status: result.status,
          req: sent,
        };
      sent = next;
    }
  }

  /** The request a redirect asks for, or why it is not followed (SLUICE_HTTP_REDIRECT). */
  #follow(
    first: PreparedRequest,
    from: PreparedRequest,
    redirect: { status: number; location: string },
    hops: number,
  ): PreparedRequest | SluiceError {
    const { redactor, redirects, origin } = this.#opts;
    const { status, location } = redirect;
    const fromUrl = this.#url(from);
    let to: URL | undefined;
    try {
      to = new URL(location, fromUrl);
    } catch {}
    const refuse = (why: string) =>
      new SluiceError('SLUICE_HTTP_REDIRECT', redactor.redact(`${first.method} ${this.#url(first)} ${why}`), {
        details: {
          method: first.method,
          url: redactor.redact(this.#url(first)),
          status,
          location: redactor.redact(location),
          redirects: hops - 1,
        },
      });
    const hop = `${fromUrl} answered ${status} with Location ${to?.href ?? location}`;
    if (!to || (to.protocol !== 'http:' && to.protocol !== 'https:'))
      return refuse(`was redirected to a Location that is not an http(s) URL: ${hop}`);
    if (hops > redirects.max)
      return refuse(
        `was redirected more than ${redirects.max} times (redirects.max): ${hop}, which was not followed`,
      );
    const crosses = to.origin !== origin;
    if (crosses && !redirects.crossOrigin)
      return refuse(
        `was redirected to another origin (${to.href}): ${hop}, which was not followed; set redirects.cross_origin: true to follow redirects to other origins (credentials are not sent there)`,
      );
    // 303, and 301/302 after a POST, become a GET without a body (RFC 9110 15.4, as fetch does).
    const toGet =
      (status === 303 && from.method !== 'HEAD') ||
      ((status === 301 || status === 302) && from.method === 'POST');
    let headers = from.headers;
    if (toGet || crosses) {
      headers = {};
      for (const [name, value] of Object.entries(from.headers)) {
        if (toGet && name.startsWith('content-')) continue;
        if (crosses && this.#stripped.has(name)) continue;
        headers[name] = value;
      }
    }
    const next: PreparedRequest = {
      method: toGet ? 'GET' : from.method,
      path: to.pathname + to.search,
      headers,
    };
    if (crosses) next.origin = to.origin;
    if (!toGet && from.body !== undefined) next.body = from.body;
    return next;
  }

  /** A new connection to the origin (it connects on its first call, and again after a failure). */
  #connection(): Dispatch {
    const client = new Client(this.#opts.origin, this.#clientOptions);
    this.#clients.push(client);
    return this.#intercepted(client);
  }

  /**
   * The dispatcher's dispatch through the interceptor, applied as compose() does but without its
   * Proxy and per-call copy of the options: this is every call's path.
   */
  #intercepted(dispatcher: Dispatcher): Dispatch {
    const dispatch: Dispatch = dispatcher.dispatch.bind(dispatcher);
    return this.#decode ? (this.#decode(dispatch) as Dispatch) : dispatch;
  }

  /** Connections to the origins cross-origin redirects lead to (rare: pooled by undici's Agent). */
  #otherOrigins(): Dispatch {
    if (!this.#agentDispatch) {
      this.#agent = new Agent(this.#clientOptions);
      this.#agentDispatch = this.#intercepted(this.#agent);
    }
    return this.#agentDispatch;
  }

  /** Whether a 301, 302, 303, 307 or 308 is followed rather than taken as the final response. */
  get followsRedirects(): boolean {
    return this.#opts.redirects.max > 0;
  }

  get maxBytes(): number {
    return this.#opts.maxBytes;
  }

  /** What a final status means for the record (keep, drop, error), or retry when it is retried and may be. */
  decide(status: number, mayRetry: boolean): 'retry' | StatusAction {
    const code = status >= 100 && status < 600 ? status : 599;
    if (mayRetry && this.#table[600 + code] === 1) return 'retry';
    return ACTION_NAMES[this.#table[code]!]!;
  }

  get timeouts(): CallerOptions['timeouts'] {
    return this.#opts.timeouts;
  }

  /** The result of an attempt whose whole response is in. */
  finish(
    req: PreparedRequest,
    attempt: number,
    action: 'keep' | 'error',
    status: number,
    headers: IncomingHttpHeaders,
    body: Buffer,
    more: boolean,
  ): AttemptResult {
    const contentType = headerText(headers['content-type']);
    if (action === 'error') {
      const excerpt: Excerpt = body.length
        ? excerptOf(body.toString('utf8'), more, this.#opts.redactor)
        : { body: null, body_truncated: false };
      return {
        kind: 'final',
        outcome: {
          kind: 'failed',
          attempts: attempt,
          error: this.#statusError(req, status, attempt, excerpt, contentType),
        },
      };
    }
    const parsed = this.#parseBody(req, body.toString('utf8'), contentType, status, attempt);
    if (parsed instanceof SluiceError)
      return { kind: 'final', outcome: { kind: 'failed', error: parsed, attempts: attempt } };
    return {
      kind: 'final',
      outcome: { kind: 'response', action: 'keep', status, headers, body: parsed, attempts: attempt },
    };
  }

  #parseBody(
    req: PreparedRequest,
    text: string,
    contentType: string | undefined,
    status: number,
    attempts: number,
  ): unknown {
    if (text === '') return null;
    const { as } = this.#opts;
    if (as === 'text' || (as === 'auto' && !isJsonType(contentType))) return text;
    try {
      return JSON.parse(text);
    } catch (err) {
      const excerpt = excerptOf(text, false, this.#opts.redactor);
      return new SluiceError(
        'SLUICE_HTTP_RESPONSE',
        this.#opts.redactor.redact(
          `${req.method} ${this.#url(req)} answered ${status} with a body that is not valid JSON: ${(err as Error).message}`,
        ),
        {
          details: {
            ...this.#where(req, attempts),
            status,
            ...excerpt,
            content_type: this.#contentType(contentType),
          },
        },
      );
    }
  }

  /** The response's Content-Type for an error record: an upstream may echo request headers in it too. */
  #contentType(contentType: string | undefined): string | null {
    return contentType === undefined ? null : this.#opts.redactor.redact(contentType);
  }

  #url(req: PreparedRequest): string {
    return (req.origin ?? this.#opts.origin) + req.path;
  }

  #where(req: PreparedRequest, attempts: number): Record<string, unknown> {
    return { method: req.method, url: this.#opts.redactor.redact(this.#url(req)), attempts };
  }

  #statusError(
    req: PreparedRequest,
    status: number,
    attempts: number,
    excerpt: Excerpt,
    contentType: string | undefined,
  ): SluiceError {
    const reason = STATUS_CODES[status];
    return new SluiceError(
      'SLUICE_HTTP_STATUS',
      this.#opts.redactor.redact(
        `${req.method} ${this.#url(req)} answered ${status}${reason ? ` ${reason}` : ''} after ${plural(attempts, 'attempt')}`,
      ),
      {
        // Worth replaying later: the server was overloaded or failing, not refusing the record.
        retriable: status === 408 || status === 429 || status >= 500,
        details: {
          ...this.#where(req, attempts),
          status,
          ...excerpt,
          content_type: this.#contentType(contentType),
        },
      },
    );
  }

  #failure(
    req: PreparedRequest,
    result: Exclude<AttemptResult, { kind: 'final' } | { kind: 'reauth' }>,
    attempts: number,
  ): CallOutcome {
    const { redactor } = this.#opts;
    const at = `${req.method} ${this.#url(req)}`;
    let error: SluiceError;
    switch (result.kind) {
      case 'retry-status':
        // Retries ran out on a retried status: its body was drained, so there is no excerpt.
        error = this.#statusError(
          req,
          result.status,
          attempts,
          { body: null, body_truncated: false },
          undefined,
        );
        break;
      case 'network':
        error = new SluiceError(
          'SLUICE_HTTP_NETWORK',
          redactor.redact(`${at} failed after ${plural(attempts, 'attempt')}: ${result.message}`),
          { details: { ...this.#where(req, attempts), cause: result.cause } },
        );
        break;
      case 'timeout':
        error = new SluiceError(
          'SLUICE_HTTP_TIMEOUT',
          redactor.redact(
            `${at} timed out after ${plural(attempts, 'attempt')}: ${timeoutText(result.phase, result.ms)}`,
          ),
          { details: { ...this.#where(req, attempts), phase: result.phase, timeout_ms: result.ms } },
        );
        break;
      case 'too-large': {
        const { maxBytes } = this.#opts;
        error = new SluiceError(
          'SLUICE_HTTP_BODY_TOO_LARGE',
          redactor.redact(
            `${at} answered ${result.status} with a body of more than response.max_bytes (${maxBytes} bytes, counted after decoding): reading stopped there`,
          ),
          { details: { ...this.#where(req, attempts), status: result.status, max_bytes: maxBytes } },
        );
        break;
      }
      case 'undecodable':
        error = new SluiceError(
          'SLUICE_HTTP_RESPONSE',
          redactor.redact(
            `${at} answered ${result.status} with a body that does not decode as its Content-Encoding says: ${result.message}`,
          ),
          { details: { ...this.#where(req, attempts), status: result.status } },
        );
        break;
      case 'redirect':
        throw new Error('unreachable: a redirect is followed or refused by #send');
      case 'invalid':
        error = new SluiceError('SLUICE_HTTP_TEMPLATE', redactor.redact(`request: ${result.message}`), {
          details: this.#where(req, 0),
        });
        return { kind: 'failed', error, attempts: 0 };
    }
    return { kind: 'failed', error, attempts };
  }
}

/**
 * Receives one attempt's response from undici. Settles once: with the response, an error, or a
 * timeout (its own timer, exact to the millisecond; undici's parser timers tick about once a second).
 */
class AttemptHandler implements Dispatcher.DispatchHandler {
  readonly #caller: HttpCaller;
  readonly #req: PreparedRequest;
  readonly #attempt: number;
  readonly #mayRetry: boolean;
  readonly #mayReauth: boolean;
  readonly #resolve: () => void;
  /** How the attempt ended, once settled. */
  result: AttemptResult = { kind: 'invalid', message: 'not settled' };
  readonly #started = performance.now();
  #settled = false;
  #controller: Dispatcher.DispatchController | undefined;
  #pendingAbort: Error | undefined;
  #timer: NodeJS.Timeout;
  #status = 0;
  #headers: IncomingHttpHeaders = {};
  #action: 'retry' | 'reauth' | 'redirect' | StatusAction = 'keep';
  #retryAfterMs: number | undefined;
  #location = '';
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(
    caller: HttpCaller,
    req: PreparedRequest,
    attempt: number,
    mayRetry: boolean,
    mayReauth: boolean,
    resolve: () => void,
  ) {
    this.#caller = caller;
    this.#req = req;
    this.#attempt = attempt;
    this.#mayRetry = mayRetry;
    this.#mayReauth = mayReauth;
    this.#resolve = resolve;
    const { headers, total } = caller.timeouts;
    // The Error is made only if the deadline passes: capturing a stack per attempt cost about a
    // tenth of the CPU time of a call (profile of 25,600 calls, 512 in flight).
    const phase = headers < total ? 'headers' : 'total';
    const ms = Math.min(headers, total);
    this.#timer = setTimeout(() => this.#timeout(new AttemptTimeout(phase, ms)), ms);
  }

  #settle(result: AttemptResult): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    this.#chunks = [];
    this.result = result;
    this.#resolve();
  }

  /** The response's status; 0 when no response headers arrived. */
  get status(): number {
    return this.#status;
  }

  #abort(reason: Error): void {
    if (this.#controller) this.#controller.abort(reason);
    else this.#pendingAbort = reason; // not on a socket yet: aborted when it gets there
  }

  #timeout(reason: AttemptTimeout): void {
    this.#settle({ kind: 'timeout', phase: reason.phase, ms: reason.ms });
    this.#abort(reason);
  }

  fail(err: unknown): void {
    this.#settle(classify(err));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#pendingAbort) controller.abort(this.#pendingAbort);
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
  ): void {
    if (status < 200 || this.#settled) return; // 1xx: informational, the real answer follows
    this.#status = status;
    this.#headers = headers;
    this.#action = status === 401 && this.#mayReauth ? 'reauth' : this.#caller.decide(status, this.#mayRetry);
    if (this.#action === 'retry') this.#retryAfterMs = parseRetryAfter(headers['retry-after']);
    else if (REDIRECT_STATUSES.has(status) && this.#caller.followsRedirects) {
      const location = headerText(headers.location);
      if (location) {
        this.#action = 'redirect';
        this.#location = location;
      }
    } else if (
      this.#action === 'keep' &&
      this.#req.method !== 'HEAD' && // its Content-Length is that of a GET's body: it has none
      Number(headerText(headers['content-length'])) > this.#caller.maxBytes
    ) {
      // Announced too large (a decoded body has no Content-Length: it is counted as it comes).
      this.#settle({ kind: 'too-large', status });
      this.#abort(new Error('body too large'));
      return;
    }
    const { headers: headersMs, total } = this.#caller.timeouts;
    if (headersMs < total) {
      clearTimeout(this.#timer);
      const left = Math.max(0, total - (performance.now() - this.#started));
      this.#timer = setTimeout(() => this.#timeout(new AttemptTimeout('total', total)), left);
    }
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    const action = this.#action;
    if (action === 'retry' || action === 'drop' || action === 'reauth' || action === 'redirect') return; // read and discarded: the connection is reused
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (action === 'keep' && this.#size > this.#caller.maxBytes) {
      this.#settle({ kind: 'too-large', status: this.#status });
      this.#abort(new Error('body too large'));
      return;
    }
    if (action === 'error' && this.#size >= EXCERPT_READ) {
      // Enough for the excerpt: stop reading (the connection is closed rather than drained).
      this.#settle(this.#final(true));
      this.#abort(new Error('excerpt read'));
    }
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    if (this.#action === 'retry')
      this.#settle({ kind: 'retry-status', status: this.#status, retryAfterMs: this.#retryAfterMs });
    else if (this.#action === 'reauth') this.#settle({ kind: 'reauth' });
    else if (this.#action === 'redirect')
      this.#settle({ kind: 'redirect', status: this.#status, location: this.#location });
    else this.#settle(this.#final(false));
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // The decompress interceptor's cap on a stage of a chained encoding.
    const code = (error as { code?: string }).code ?? '';
    if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') this.#settle({ kind: 'too-large', status: this.#status });
    else if (DECODE_ERROR.test(code))
      this.#settle({ kind: 'undecodable', status: this.#status, message: `${error.message} (${code})` });
    else this.#settle(classify(error));
  }

  #final(more: boolean): AttemptResult {
    const action = this.#action as StatusAction;
    if (action === 'drop')
      return { kind: 'final', outcome: { kind: 'dropped', status: this.#status, attempts: this.#attempt } };
    const chunks = this.#chunks;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#size);
    return this.#caller.finish(
      this.#req,
      this.#attempt,
      action === 'error' ? 'error' : 'keep',
      this.#status,
      this.#headers,
      body,
      more,
    );
  }
}

function timeoutText(phase: 'connect' | 'headers' | 'total', ms: number): string {
  if (phase === 'connect') return `no connection within ${ms}ms (timeout.connect)`;
  if (phase === 'headers') return `no response headers within ${ms}ms (timeout.headers)`;
  return `the response was not complete within ${ms}ms (timeout.total)`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function classify(err: unknown): AttemptResult {
  if (err instanceof AttemptTimeout) return { kind: 'timeout', phase: err.phase, ms: err.ms };
  const e = err as { code?: string; message?: string; errors?: { code?: string; message?: string }[] };
  const code = e?.code ?? e?.errors?.[0]?.code ?? 'UNKNOWN';
  const message = e?.message || e?.errors?.[0]?.message || String(err);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { kind: 'timeout', phase: 'connect', ms: Number(/(\d+)ms/.exec(message)?.[1] ?? 0) };
    case 'UND_ERR_HEADERS_TIMEOUT':
      return { kind: 'timeout', phase: 'headers', ms: 0 };
    case 'UND_ERR_BODY_TIMEOUT':
      return { kind: 'timeout', phase: 'total', ms: 0 };
    case 'UND_ERR_INVALID_ARG':
      // A rendered header or path undici refuses: the record's data, not the network.
      return { kind: 'invalid', message };
    default:
      return {
        kind: 'network',
        message: code === 'UNKNOWN' || message.includes(code) ? message : `${message} (${code})`,
        cause: code,
      };
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function isJsonType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return type === 'application/json' || type === 'text/json' || type.endsWith('+json');
}

/** `Retry-After` as milliseconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3). */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = headerText(value)?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

interface Excerpt {
  body: string | null;
  body_truncated: boolean;
}

/** Redacts, then cuts to EXCERPT_BYTES of UTF-8 on a character boundary. */
function excerptOf(text: string, more: boolean, redactor: Redactor): Excerpt {
  const clean = redactor.redact(text);
  const bytes = Buffer.from(clean, 'utf8');
  if (bytes.length <= EXCERPT_BYTES) return { body: clean, body_truncated: more };
  let end = EXCERPT_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // back to the start of a split character
  return { body: bytes.subarray(0, end).toString('utf8'), body_truncated: true };
}
