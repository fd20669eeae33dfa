import { authSecrets, createAuth, redactorFor } from '../../http/auth.ts';
import { CircuitBreaker } from '../../http/breaker.ts';
import { ResponseCache } from '../../http/cache.ts';
import { acceptEncoding, type CallOutcome, HttpCaller, type PreparedRequest } from '../../http/client.ts';
import { rateLimitOf, TokenBucket } from '../../http/rate-limit.ts';
import {
  compileForm,
  compileJsonBody,
  compileJsonField,
  compileQuery,
  compileText,
  compileUrl,
  hasPlaceholder,
  headerValueCheck,
  parseFieldRef,
  type Renderer,
  withField,
} from '../../http/template.ts';
import { defineStep } from '../../sdk/define.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  RecordValue,
  Rejection,
  SluiceRecord,
  StepInstance,
  StepResult,
} from '../../sdk/types.ts';
import { parseDuration } from '../../spec/duration.ts';
import { parseSize } from '../../spec/size.ts';
import { compileSelect } from '../../sql/compile.ts';
import { sqlIssues } from '../../sql/issues.ts';
import { planQuery, type QueryPlan } from '../../sql/plan.ts';
import { bulkProcess } from './bulk.ts';
import { type HttpConfig, httpConfig } from './config.ts';

export { type HttpConfig, httpConfig } from './config.ts';

// Header and query names whose fixed values are treated as secrets and redacted.
const SENSITIVE_NAME =
  /auth|token|secret|passw|api[-_]?key|apikey|signature|session|cookie|credential|private/i;

/** The credentials and secret-looking fixed values of a config: what must never be recorded. */
export function secretsOf(cfg: HttpConfig): string[] {
  const { auth, request } = cfg;
  const secrets = authSecrets(auth);
  const fixed = (name: string, value: string) => {
    if (SENSITIVE_NAME.test(name) && !hasPlaceholder(value)) secrets.push(value);
  };
  for (const [name, value] of Object.entries(request.headers ?? {})) fixed(name, value);
  for (const [name, value] of Object.entries(request.query ?? {})) fixed(name, value);
  const query = request.url.split('?')[1]?.split('#')[0];
  for (const pair of query?.split('&') ?? []) {
    const [name = '', value = ''] = pair.split('=');
    if (!value || hasPlaceholder(value)) continue;
    fixed(name, value);
    try {
      fixed(name, decodeURIComponent(value));
    } catch {}
  }
  return secrets.filter((s) => s.length > 0);
}

/** The request of `batch:` mode without its body: its URL and headers have no placeholders. */
function fixedRequest(cfg: HttpConfig): PreparedRequest {
  const { body: _body, json: _json, ...request } = cfg.request;
  const req = requestBuilder({ ...cfg, request })({});
  return { ...req, headers: { 'content-type': 'application/json', ...req.headers } };
}

/** Renders the request of one record; throws SLUICE_HTTP_TEMPLATE when a field is missing. */
function requestBuilder(cfg: HttpConfig): (value: RecordValue) => PreparedRequest {
  const { request, auth } = cfg;
  const url = compileUrl(request.url);
  const query = request.query && Object.keys(request.query).length ? compileQuery(request.query) : undefined;
  const staticHeaders: Record<string, string> = {};
  const dynamicHeaders: [string, Renderer][] = [];
  for (const [name, template] of Object.entries(request.headers ?? {})) {
    const key = name.toLowerCase();
    if (hasPlaceholder(template))
      dynamicHeaders.push([key, compileText(template, `headers.${name}`, headerValueCheck)]);
    else staticHeaders[key] = template;
  }
  let body: Renderer | undefined;
  let contentType: string | undefined;
  if (request.body !== undefined) {
    body = compileJsonBody(request.body);
    contentType = 'application/json';
  } else if (request.json !== undefined) {
    body = compileJsonField(request.json);
    contentType = 'application/json';
  } else if (request.form !== undefined) {
    body = compileForm(request.form);
    contentType = 'application/x-www-form-urlencoded';
  }
  if (
    contentType &&
    !('content-type' in staticHeaders) &&
    !dynamicHeaders.some(([k]) => k === 'content-type')
  )
    staticHeaders['content-type'] = contentType;
  if (auth?.bearer !== undefined) staticHeaders.authorization = `Bearer ${auth.bearer}`;
  if (auth?.basic)
    staticHeaders.authorization = `Basic ${Buffer.from(`${auth.basic.username}:${auth.basic.password}`).toString('base64')}`;
  if (auth?.header) staticHeaders[auth.header.name.toLowerCase()] = auth.header.value;
  if (!dynamicHeaders.some(([k]) => k === 'accept-encoding'))
    acceptEncoding(staticHeaders, cfg.response.decompress);
  const joiner = url.hasQuery ? '&' : '?';
  return (value) => {
    let path = url.target(value);
    if (query) {
      const q = query(value);
      if (q) path += (path.endsWith('?') || path.endsWith('&') ? '' : joiner) + q;
    }
    let headers = staticHeaders;
    if (dynamicHeaders.length) {
      headers = { ...staticHeaders };
      for (const [name, render] of dynamicHeaders) headers[name] = render(value);
    }
    const req: PreparedRequest = { method: request.method, path, headers };
    if (body) req.body = body(value);
    return req;
  };
}

/** Maps a kept response into (a copy of) the record's value. */
function responseMapper(
  cfg: HttpConfig,
): (value: RecordValue, outcome: Extract<CallOutcome, { kind: 'response' }>) => RecordValue {
  const into = parseFieldRef(cfg.response.into);
  const include = new Set(cfg.response.include);
  if (include.size === 1 && include.has('body'))
    return (value, outcome) => withField(value, into, outcome.body);
  return (value, outcome) => {
    const mapped: Record<string, unknown> = {};
    if (include.has('status')) mapped.status = outcome.status;
    if (include.has('headers')) mapped.headers = { ...outcome.headers };
    if (include.has('body')) mapped.body = outcome.body;
    return withField(value, into, mapped);
  };
}

function ms(duration: string): number {
  return parseDuration(duration) ?? 0;
}

/**
 * `select`: `response.sql` compiled (by the step's `create`), applied to the record with the
 * response mapped in; null drops the record.
 */
export function createHttpStep(
  cfg: HttpConfig,
  ctx: ComponentContext,
  select?: (value: RecordValue) => RecordValue | null,
): StepInstance {
  const build = requestBuilder(cfg);
  const mapResponse = responseMapper(cfg);
  const map = select
    ? (value: RecordValue, outcome: Extract<CallOutcome, { kind: 'response' }>) =>
        select(mapResponse(value, outcome))
    : mapResponse;
  const on = cfg.retry.on;
  const origin = compileUrl(cfg.request.url).origin;
  // The config's credentials and every `${secret:...}` value of the spec, with access tokens added as they come.
  const redactor = redactorFor(cfg.auth, secretsOf(cfg));
  const auth = createAuth(cfg.auth, {
    signal: ctx.signal,
    logger: ctx.logger,
    redactor,
    timeoutMs: ms(cfg.timeout.total),
  });
  const limit = cfg.rate_limit ? rateLimitOf(cfg.rate_limit) : undefined;
  const limiter = limit ? new TokenBucket(limit.perSecond, limit.burst) : undefined;
  const breaker = cfg.breaker
    ? new CircuitBreaker(redactor.redact(origin), cfg.breaker, ctx.logger)
    : undefined;
  const cache = cfg.cache
    ? new ResponseCache<CallOutcome>({ ttlMs: ms(cfg.cache.ttl), maxEntries: cfg.cache.max_entries })
    : undefined;
  const cacheKey = cfg.cache ? compileText(cfg.cache.key, 'cache.key') : undefined;
  // Only responses the record is kept with are cached: failures and drops are asked again.
  const isKept = (outcome: CallOutcome) => outcome.kind === 'response';
  const caller = new HttpCaller({
    origin,
    concurrency: cfg.concurrency,
    timeouts: {
      connect: ms(cfg.timeout.connect),
      headers: ms(cfg.timeout.headers),
      total: ms(cfg.timeout.total),
    },
    retry: {
      attempts: cfg.retry.attempts,
      backoff: cfg.retry.backoff,
      initial: ms(cfg.retry.initial),
      max: ms(cfg.retry.max),
      statuses: new Set(on.filter((x): x is number => typeof x === 'number')),
      serverErrors: on.includes('5xx'),
      network: on.includes('network'),
      timeout: on.includes('timeout'),
    },
    onStatus: cfg.on_status,
    as: cfg.response.as,
    maxBytes: parseSize(cfg.response.max_bytes),
    decompress: cfg.response.decompress,
    redirects: { max: cfg.redirects.max, crossOrigin: cfg.redirects.cross_origin },
    ...(cfg.auth?.header ? { credentialHeaders: [cfg.auth.header.name.toLowerCase()] } : {}),
    signal: ctx.signal,
    redactor,
    ...(limiter ? { limiter } : {}),
    ...(breaker ? { breaker } : {}),
    ...(auth?.oauth2 ? { oauth2: auth.oauth2 } : {}),
  });
  const metrics = (): Record<string, unknown> => ({
    ...caller.metrics.toJSON(),
    ...(limiter && limit
      ? {
          rate_limit: {
            per_second: limit.perSecond,
            burst: limit.burst,
            wait_ms: Math.round(limiter.waitMs),
            waited: limiter.waited,
          },
        }
      : {}),
    ...(breaker
      ? {
          breaker: {
            state: breaker.state,
            opened: breaker.transitions.open,
            half_opened: breaker.transitions['half-open'],
            closed: breaker.transitions.closed,
            refused: breaker.refused,
          },
        }
      : {}),
    ...(cache
      ? { cache: { hits: cache.hits, misses: cache.misses, joined: cache.joined, entries: cache.size } }
      : {}),
    ...(auth?.oauth2
      ? { oauth2: { token_fetches: auth.oauth2.fetches, tokens_refused: auth.oauth2.rejected } }
      : {}),
  });
  const closeAll = async () => {
    limiter?.close();
    breaker?.close();
    cache?.clear();
    await Promise.all([caller.close(), auth?.close()]);
  };
  const ordered = cfg.ordered;
  // Enough batches in the step at once to keep `concurrency` calls in flight while the oldest
  // batch waits for its slowest call (twice what fills the slots).
  const perCall = cfg.batch?.max_records ?? 1;
  const batchesInFlight = Math.min(
    1024,
    2 * Math.ceil((cfg.concurrency * perCall) / Math.max(1, ctx.batchSize)),
  );
  const bulk = cfg.batch
    ? bulkProcess({
        caller,
        batch: cfg.batch,
        request: fixedRequest(cfg),
        item:
          cfg.request.body !== undefined
            ? compileJsonBody(cfg.request.body)
            : compileJsonField(cfg.request.json!),
        map,
        ordered,
        signal: ctx.signal,
      })
    : undefined;

  /** One record: its output record, nothing (dropped) or its rejection. */
  const one = async (record: SluiceRecord): Promise<SluiceRecord | Rejection | undefined> => {
    let req: PreparedRequest;
    let key: string | undefined;
    try {
      req = build(record.value);
      key = cacheKey?.(record.value);
    } catch (err) {
      const error = toSluiceError(err, 'SLUICE_STEP_FAILED');
      const pos = record.meta.position;
      if (error.code !== 'SLUICE_HTTP_TEMPLATE' || !pos) return { record, error, attempts: 0 };
      // Name the record in the message too: a log line then says which one.
      const named = new SluiceError(
        error.code,
        `${error.message} (record ${pos.partition} @ ${pos.offset})`,
        {
          ...(error.details ? { details: error.details } : {}),
        },
      );
      return { record, error: named, attempts: 0 };
    }
    const call = () => caller.call(req);
    const outcome = cache && key !== undefined ? (await cache.get(key, call, isKept)).value : await call();
    switch (outcome.kind) {
      case 'response': {
        let value: RecordValue | null;
        try {
          value = map(record.value, outcome);
        } catch (err) {
          // response.sql failed on this record (a CAST that does not convert): it alone is rejected.
          return { record, error: toSluiceError(err, 'SLUICE_STEP_FAILED'), attempts: outcome.attempts };
        }
        return value === null ? undefined : { value, meta: record.meta };
      }
      case 'dropped':
      case 'aborted':
        return undefined;
      case 'failed':
        return { record, error: outcome.error, attempts: outcome.attempts };
    }
  };

  return {
    inFlight: { batches: batchesInFlight, ordered },
    async process(batch: SluiceRecord[]): Promise<StepResult> {
      if (bulk) return bulk(batch);
      const records: (SluiceRecord | undefined)[] = ordered ? new Array(batch.length) : [];
      const rejections: (Rejection | undefined)[] = new Array(batch.length);
      let failed = 0;
      // Every call of the batch starts now; the caller's slots bound how many are in flight.
      await Promise.all(
        batch.map(async (record, i) => {
          const out = await one(record);
          if (out === undefined) return;
          if ('error' in out) {
            rejections[i] = out;
            failed++;
          } else if (ordered) records[i] = out;
          else records.push(out);
        }),
      );
      if (ctx.signal.aborted) throw toSluiceError(ctx.signal.reason, 'SLUICE_INTERRUPTED');
      const kept = records.filter((r): r is SluiceRecord => r !== undefined);
      if (!failed) return { records: kept };
      return { records: kept, rejected: rejections.filter((r): r is Rejection => r !== undefined) };
    },
    close: closeAll,
    metrics,
  };
}

export const httpStep = defineStep({
  name: 'http',
  summary:
    'Calls an HTTP API once per record (templated from its fields) and maps the response into the record, with retries, timeouts and bounded concurrency.',
  description: `For each record, renders a request from the record's fields (\`{{ field.path }}\` placeholders in the URL, query, headers and body), sends it over a pool of keep-alive connections (undici) with at most \`concurrency\` calls in flight, and writes the response (body, or status, headers and body) into the record under \`response.into\`. Records are copied, never changed in place.

Every call is independent: a call that fails after its retries sends that record alone to the errors sink (\`SLUICE_HTTP_STATUS\` with the status, attempt count and the first KiB of the body; \`SLUICE_HTTP_NETWORK\`; \`SLUICE_HTTP_TIMEOUT\`; \`SLUICE_HTTP_RESPONSE\` for a body that is not the JSON asked for) while the other records of its batch go on. A placeholder naming a field the record lacks fails that record with \`SLUICE_HTTP_TEMPLATE\` and sends nothing. \`on_status\` decides, per status class or code, whether a record whose final response is not 2xx is kept (with the response mapped), dropped or sent to the errors sink.

Retries (\`retry\`) use exponential backoff with full jitter, on the statuses and conditions listed in \`retry.on\`, and honour \`Retry-After\` (seconds or an HTTP date, up to \`retry.max\`). While a record waits to retry it holds no connection: other records' calls use it. Credentials (\`auth\`: bearer, basic, an API key header, or OAuth2 client credentials with the token cached, refreshed before expiry and on a 401) come from \`\${env:...}\` or \`\${secret:...}\` and are redacted from everything Sluice records. \`rate_limit\` (a token bucket per host), \`breaker\` (a circuit breaker on the failure rate, holding or failing calls while open) and \`cache\` (LRU with a TTL and single flight, keyed by a template) protect the API; the step's metrics (requests by status class, latency, retries, cache, limiter, breaker) are in the run summary. See docs/http.md.

Responses compressed with gzip, deflate, br or zstd are decoded (\`Accept-Encoding\` is sent; \`response.decompress\`), redirects are followed up to \`redirects.max\` hops on the same origin (\`redirects.cross_origin\` allows others, without credentials), and a body larger than \`response.max_bytes\` once decoded (10 MiB) fails its record with SLUICE_HTTP_BODY_TOO_LARGE.

Calls of several batches run at once, up to \`concurrency\` in flight; a checkpoint waits for every call before it. \`ordered: false\` lets a batch whose calls have all finished pass one still waiting on a slow call.`,
  config: httpConfig,
  examples: [
    {
      title: 'Score each payment, writing the JSON answer to a field',
      yaml: `request:
  url: https://risk.internal/v1/score/{{ id }}
concurrency: 512
response: { into: risk }
`,
    },
    {
      title: 'POST a JSON body built from the record, with a bearer token from the environment',
      yaml: `request:
  method: POST
  url: https://api.example.com/v2/customers/{{ customer.id }}/verify
  headers: { Idempotency-Key: "{{ id }}" }
  body:
    email: "{{ customer.email }}"
    amount: "{{ amount }}"
    note: "order {{ id }}"
auth: { bearer: "\${env:API_TOKEN}" }
`,
    },
    {
      title: 'Query parameters, timeouts, retries and status handling',
      yaml: `request:
  url: https://geo.example.com/lookup
  query: { ip: "{{ client_ip }}", lang: en }
concurrency: 256
ordered: false
timeout: { connect: 2s, headers: 5s, total: 10s }
retry: { attempts: 5, initial: 200ms, max: 30s, on: [429, 5xx, network, timeout] }
response: { into: geo, as: json, include: [status, body] }
on_status: { 404: drop, 4xx: error, 5xx: error }
`,
    },
    {
      title: 'Send a field as the whole body, with an API key header',
      yaml: `request:
  method: PUT
  url: https://search.example.com/index/products/{{ sku }}
  json: document
auth: { header: { name: X-Api-Key, value: "\${env:SEARCH_KEY}" } }
response: { into: indexed, include: [status] }
`,
    },
    {
      title: 'OAuth2, a rate limit, a circuit breaker and a cache of answers per customer',
      yaml: `request:
  url: https://crm.example.com/v3/customers/{{ customer_id }}
auth:
  oauth2:
    token_url: https://auth.example.com/oauth2/token
    client_id: sluice
    client_secret: "\${secret:crm_client_secret}"
    scope: customers.read
rate_limit: 500/s
breaker: { failure_rate: 0.5, window: 10s, min_calls: 20, open_for: 30s, when_open: wait }
cache: { key: "{{ customer_id }}", ttl: 10m }
response: { into: customer }
`,
    },
    {
      title: 'A form POST with basic authentication, keeping 404s',
      yaml: `request:
  method: POST
  url: https://legacy.example.com/cgi/lookup
  form: { account: "{{ account_id }}", kind: full }
auth: { basic: { username: sluice, password: "\${env:LEGACY_PASSWORD}" } }
response: { into: legacy, as: text, include: [status, headers, body] }
on_status: { 404: keep }
`,
    },
  ],
  async check(cfg) {
    const sql = cfg.response.sql;
    if (!sql) return [];
    let plan: QueryPlan | undefined;
    const issues = await sqlIssues(['response', 'sql'], async () => {
      plan = await planQuery(sql, { bind: false });
    });
    if (issues.length || !plan || plan.path === 'compiled') return issues;
    return [
      {
        path: ['response', 'sql'],
        message: `response.sql must be a per-record query in the compiled subset (docs/sql.md): ${plan.reason}; put that SQL in a sql step after this one`,
        ...(plan.offset === undefined ? {} : { offset: plan.offset }),
      },
    ];
  },
  create: async (cfg, ctx) =>
    createHttpStep(cfg, ctx, cfg.response.sql ? await compileSelect(cfg.response.sql) : undefined),
});
