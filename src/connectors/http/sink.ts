/**
 * The `http` sink: sends each record (or a batch of records as one JSON array) to an HTTP API,
 * over the `http` step's caller. A write returns once every request of its batch has its final
 * answer: 2xx delivered, a refused request's records rejected, a transient failure (after the
 * retries) thrown as a retriable SLUICE_SINK_IO so the engine retries the batch.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  acceptEncoding,
  type CallOutcome,
  type HttpCaller,
  type PreparedRequest,
  type Redactor,
} from '../../http/client.ts';
import {
  type CompiledUrl,
  compileJsonBody,
  compileJsonField,
  compileText,
  compileUrl,
  configChecks,
  hasPlaceholder,
  headerValueCheck,
  parseFieldRef,
  parseTemplate,
  type Renderer,
  stringifyJson,
} from '../../http/template.ts';
import { defineSink } from '../../sdk/define.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  Rejection,
  SinkInstance,
  SinkWriteResult,
  SluiceRecord,
} from '../../sdk/types.ts';
import {
  authSchema,
  type Connection,
  checkAuthAndRetry,
  connect,
  connectorRedactor,
  HEADER_NAME,
  type RetryConfig,
  rateLimitSchema,
  redirectsSchema,
  responseSchema,
  retryOptions,
  retrySchema,
  timeoutSchema,
} from './common.ts';

// YAML may write `v: 2`; header values are sent as text.
const scalarTemplate = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));

export const httpSinkConfig = z
  .object({
    url: z
      .string()
      .min(1)
      .describe(
        'Where records are sent, e.g. `https://api.example.com/v1/events`. Without `batch` it may hold ' +
          '`{{ field.path }}` placeholders filled from each record (`.../customers/{{ customer.id }}`), ' +
          'percent-encoded as in the `http` step; the scheme, host and port are fixed.',
      ),
    method: z.enum(['POST', 'PUT', 'PATCH']).default('POST').describe('The HTTP method.'),
    headers: z
      .record(z.string(), scalarTemplate)
      .optional()
      .describe(
        'Request headers, each value a template (`{ X-Tenant: acme, X-Source: "{{ source }}" }`); with ' +
          '`batch` they are fixed. Credentials belong in `auth`.',
      ),
    body: z
      .union([z.record(z.string(), z.unknown()), z.array(z.unknown())])
      .optional()
      .describe(
        'A JSON template for what is sent for each record, as in the `http` step (a string that is exactly ' +
          'one placeholder keeps the field\'s type): `{ event: "{{ kind }}", at: "{{ ts }}" }`. With `batch`, ' +
          'each item of the array. Default: the whole record as JSON.',
      ),
    json: z
      .string()
      .min(1)
      .optional()
      .describe('A field whose value is sent (or, with `batch`, is the item) instead of the whole record.'),
    batch: z
      .object({
        max_records: z
          .number()
          .int()
          .min(1)
          .max(100_000)
          .default(500)
          .describe(
            'Most records in one request. A write of `settings.batch_size` records is cut into requests of ' +
              'at most this many, sent concurrently.',
          ),
      })
      .strict()
      .optional()
      .describe(
        "Sends records in batches, each request's body a JSON array of the records (or of their `body` or " +
          '`json` items), for bulk endpoints. Without it, one request per record.',
      ),
    idempotency_key: scalarTemplate
      .optional()
      .describe(
        'A template sent as the `Idempotency-Key` header, e.g. `"{{ id }}"`, so that an API that honours ' +
          'it applies a resent request once. With `batch`, the key of a request is the SHA-256 (hex) of its ' +
          "records' keys, one per line.",
      ),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(16)
      .describe(
        'Most requests in flight at once (over keep-alive connections to the one host). A write sends its ' +
          'batch and returns when every request has its answer, so at most ' +
          '`settings.batch_size` (or that / `batch.max_records`) requests are in flight.',
      ),
    timeout: timeoutSchema,
    retry: retrySchema,
    auth: authSchema,
    rate_limit: rateLimitSchema,
    redirects: redirectsSchema,
    response: responseSchema,
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const { issue, template } = configChecks(ctx);
    const batched = cfg.batch !== undefined;
    template(['url'], () => compileUrl(cfg.url));
    if (batched && hasPlaceholderSafe(cfg.url))
      issue(
        ['url'],
        'with batch, one request carries many records: the url cannot hold placeholders (send the fields in the body)',
      );
    for (const [name, value] of Object.entries(cfg.headers ?? {})) {
      if (!HEADER_NAME.test(name)) issue(['headers', name], `"${name}" is not a valid header name`);
      template(['headers', name], () => parseTemplate(value));
      if (batched && hasPlaceholderSafe(value))
        issue(['headers', name], 'with batch, one request carries many records: headers are fixed');
      if (name.toLowerCase() === 'idempotency-key' && cfg.idempotency_key !== undefined)
        issue(['headers', name], 'Idempotency-Key is set by idempotency_key: give it in one place only');
    }
    if (cfg.body !== undefined && cfg.json !== undefined)
      issue(['json'], 'give one of body and json, not both');
    if (cfg.body !== undefined) template(['body'], () => compileJsonBody(cfg.body));
    if (cfg.json !== undefined) template(['json'], () => parseFieldRef(cfg.json!));
    if (cfg.idempotency_key !== undefined)
      template(['idempotency_key'], () => parseTemplate(cfg.idempotency_key!));
    checkAuthAndRetry(cfg, issue);
  });

export type HttpSinkConfig = z.output<typeof httpSinkConfig>;

function hasPlaceholderSafe(text: string): boolean {
  try {
    return hasPlaceholder(text);
  } catch {
    return false; // a syntax error is reported on its own
  }
}

/** One request of a write and the records it carries. */
interface Job {
  records: SluiceRecord[];
  req: PreparedRequest;
}

/** Whether a failure is the server's or the network's passing trouble (retry.on), not the records'. */
function transientTest(retry: RetryConfig): (error: SluiceError) => boolean {
  const opts = retryOptions(retry);
  return (error) => {
    if (error.code === 'SLUICE_HTTP_NETWORK' || error.code === 'SLUICE_HTTP_TIMEOUT') return true;
    if (error.code !== 'SLUICE_HTTP_STATUS') return false;
    const status = Number(error.details?.status);
    return opts.statuses.has(status) || (opts.serverErrors && status >= 500);
  };
}

/** Names the record in a template error, as the step does: a log line then says which one. */
function recordError(err: unknown, record: SluiceRecord): SluiceError {
  const error = toSluiceError(err, 'SLUICE_SINK_REJECTED');
  const pos = record.meta.position;
  if (!pos) return error;
  return new SluiceError(error.code, `${error.message} (record ${pos.partition} @ ${pos.offset})`, {
    ...(error.details ? { details: error.details } : {}),
  });
}

export class HttpSink implements SinkInstance {
  readonly #cfg: HttpSinkConfig;
  readonly #ctx: ComponentContext;
  readonly #url: CompiledUrl;
  readonly #redactor: Redactor;
  readonly #connection: Connection;
  readonly #caller: HttpCaller;
  /** Aborted by abort(): cancels calls in flight (and the run's hard stop does too). */
  readonly #stop = new AbortController();
  readonly #transient: (error: SluiceError) => boolean;
  readonly #staticHeaders: Record<string, string> = {};
  readonly #dynamicHeaders: [string, Renderer][] = [];
  readonly #item: (record: SluiceRecord) => string;
  readonly #key: Renderer | undefined;
  /**
   * Records a write delivered (2xx) before another request of its batch failed: the engine then
   * retries the same batch, and these are not sent again. A restart from a checkpoint sends
   * them again (at least once).
   */
  readonly #delivered = new WeakSet<SluiceRecord>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  constructor(cfg: HttpSinkConfig, ctx: ComponentContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#url = compileUrl(cfg.url);
    this.#redactor = connectorRedactor(cfg.auth, { headers: cfg.headers, url: cfg.url }, hasPlaceholderSafe);
    this.#connection = connect({
      origin: this.#url.origin,
      concurrency: cfg.concurrency,
      timeout: cfg.timeout,
      retry: cfg.retry,
      auth: cfg.auth,
      rateLimit: cfg.rate_limit,
      redirects: cfg.redirects,
      response: cfg.response,
      as: 'text',
      signal: AbortSignal.any([ctx.signal, this.#stop.signal]),
      redactor: this.#redactor,
      logger: ctx.logger,
    });
    this.#caller = this.#connection.caller;
    this.#transient = transientTest(cfg.retry);
    for (const [name, template] of Object.entries(cfg.headers ?? {})) {
      const key = name.toLowerCase();
      if (hasPlaceholder(template))
        this.#dynamicHeaders.push([key, compileText(template, `headers.${name}`, headerValueCheck)]);
      else this.#staticHeaders[key] = template;
    }
    if (!('content-type' in this.#staticHeaders) && !this.#dynamicHeaders.some(([k]) => k === 'content-type'))
      this.#staticHeaders['content-type'] = 'application/json';
    Object.assign(this.#staticHeaders, this.#connection.authHeaders);
    if (!this.#dynamicHeaders.some(([k]) => k === 'accept-encoding'))
      acceptEncoding(this.#staticHeaders, cfg.response.decompress);
    const item =
      cfg.body !== undefined ? compileJsonBody(cfg.body) : cfg.json ? compileJsonField(cfg.json) : undefined;
    this.#item = item
      ? (record) => item(record.value)
      : (record) => {
          const text: string | undefined = stringifyJson(record.value);
          if (text === undefined)
            throw new SluiceError('SLUICE_SINK_REJECTED', 'the record has no JSON form');
          return text;
        };
    this.#key =
      cfg.idempotency_key === undefined
        ? undefined
        : compileText(cfg.idempotency_key, 'idempotency_key', headerValueCheck);
    const perRequest = cfg.batch?.max_records ?? 1;
    const requests = Math.ceil(ctx.batchSize / perRequest);
    if (requests < cfg.concurrency)
      ctx.logger.warn(
        `http sink: a write of settings.batch_size ${ctx.batchSize} records makes at most ${requests} request(s), fewer than concurrency ${cfg.concurrency}`,
      );
  }

  async write(batch: SluiceRecord[]): Promise<SinkWriteResult | undefined> {
    if (this.#closing)
      throw new SluiceError('SLUICE_SINK_IO', 'http sink: write after close', { retriable: false });
    const work = this.#write(batch);
    this.#inFlight.add(work);
    try {
      return await work;
    } finally {
      this.#inFlight.delete(work);
    }
  }

  async #write(batch: SluiceRecord[]): Promise<SinkWriteResult | undefined> {
    const rejected: Rejection[] = [];
    const jobs = this.#jobs(
      batch.filter((r) => !this.#delivered.has(r)),
      rejected,
    );
    const outcomes = await Promise.all(jobs.map((job) => this.#caller.call(job.req)));
    if (this.#ctx.signal.aborted) throw toSluiceError(this.#ctx.signal.reason, 'SLUICE_INTERRUPTED');
    if (this.#stop.signal.aborted)
      throw new SluiceError('SLUICE_SINK_IO', 'http sink: aborted while writing', { retriable: false });
    const transient: Extract<CallOutcome, { kind: 'failed' }>[] = [];
    outcomes.forEach((outcome, i) => {
      const job = jobs[i]!;
      if (outcome.kind === 'response') {
        for (const record of job.records) this.#delivered.add(record);
      } else if (outcome.kind === 'failed') {
        if (this.#transient(outcome.error)) transient.push(outcome);
        else {
          const error =
            job.records.length > 1 ? batchError(outcome.error, job.records.length) : outcome.error;
          for (const record of job.records) rejected.push({ record, error, attempts: outcome.attempts });
        }
      }
    });
    if (transient.length) {
      const first = transient[0]!.error;
      throw new SluiceError(
        'SLUICE_SINK_IO',
        `http sink: ${transient.length} of ${jobs.length} request(s) failed after their retries, e.g. ${first.message}`,
        {
          retriable: true,
          cause: first,
          details: {
            ...first.details,
            code: first.code,
            failed_requests: transient.length,
            requests: jobs.length,
          },
        },
      );
    }
    return rejected.length ? { rejected } : undefined;
  }

  /** Renders the requests of a write; records that cannot be rendered are rejected (no request). */
  #jobs(records: SluiceRecord[], rejected: Rejection[]): Job[] {
    const { method } = this.#cfg;
    const jobs: Job[] = [];
    const batch = this.#cfg.batch;
    if (!batch) {
      for (const record of records) {
        try {
          const headers = this.#headers(record);
          if (this.#key) headers['idempotency-key'] = this.#key(record.value);
          jobs.push({
            records: [record],
            req: { method, path: this.#url.target(record.value), headers, body: this.#item(record) },
          });
        } catch (err) {
          rejected.push({ record, error: recordError(err, record), attempts: 0 });
        }
      }
      return jobs;
    }
    const path = this.#url.target({});
    let items: string[] = [];
    let keys: string[] = [];
    let carried: SluiceRecord[] = [];
    const flush = () => {
      if (!carried.length) return;
      const headers = { ...this.#staticHeaders };
      if (this.#key) headers['idempotency-key'] = createHash('sha256').update(keys.join('\n')).digest('hex');
      jobs.push({ records: carried, req: { method, path, headers, body: `[${items.join(',')}]` } });
      items = [];
      keys = [];
      carried = [];
    };
    for (const record of records) {
      try {
        const item = this.#item(record);
        const key = this.#key?.(record.value);
        items.push(item);
        if (key !== undefined) keys.push(key);
        carried.push(record);
      } catch (err) {
        rejected.push({ record, error: recordError(err, record), attempts: 0 });
        continue;
      }
      if (carried.length >= batch.max_records) flush();
    }
    flush();
    return jobs;
  }

  #headers(record: SluiceRecord): Record<string, string> {
    const headers = { ...this.#staticHeaders };
    for (const [name, render] of this.#dynamicHeaders) headers[name] = render(record.value);
    return headers;
  }

  /** Every write returned only once its requests were answered: this waits for any still running. */
  async commit(): Promise<void> {
    await Promise.allSettled(this.#inFlight);
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.commit();
      await this.#connection.close();
    })();
    return this.#closing;
  }

  /** Delivered requests cannot be taken back: aborting cancels those in flight and closes. */
  async abort(): Promise<void> {
    this.#stop.abort();
    this.#closing ??= (async () => {
      await Promise.allSettled(this.#inFlight);
      await this.#connection.close();
    })();
    return this.#closing;
  }

  outputs(): string[] {
    return [`${this.#cfg.method} ${this.#redactor.redact(this.#cfg.url)}`];
  }
}

/** The error of a refused batch, saying so (every record of it carries it). */
function batchError(error: SluiceError, records: number): SluiceError {
  return new SluiceError(error.code, `${error.message} (a batch of ${records} records)`, {
    retriable: error.retriable,
    details: { ...error.details, batch_records: records },
  });
}

export const httpSink = defineSink({
  name: 'http',
  summary:
    'Sends each record, or batches of records as JSON arrays, to an HTTP API, with retries, timeouts, bounded concurrency and idempotency keys.',
  description: `Without \`batch\`, each record is one request: \`method\` to \`url\` (placeholders filled from the record), its body the record as JSON (or the \`body\` template, or the field \`json\`). With \`batch: { max_records: N }\`, each request carries up to N records as one JSON array. Requests run concurrently (up to \`concurrency\`, over keep-alive connections) and a write returns once each has its final answer.

A 2xx answer delivers its records. A request refused with another status (after the retries that \`retry.on\` allows) sends its records to the errors sink with \`SLUICE_HTTP_STATUS\`, the status, the attempt count and the first KiB of the body; with \`batch\`, every record of the refused request. A failure that \`retry.on\` calls transient (by default 429, 502, 503, 504, network errors and timeouts) fails the write after its retries with a retriable \`SLUICE_SINK_IO\`: the engine retries the batch (\`settings.sink_retry\`), without resending what was delivered, then fails the run, which \`sluice run\` restarts from its last checkpoint (\`settings.restart\`).

Delivery is **at least once**: a request the server applied but whose answer was lost is sent again, and a restart resends what was delivered after the last checkpoint. Send an \`idempotency_key\` (an \`Idempotency-Key\` header) to an API that honours it to have duplicates applied once. Timeouts, retries and \`auth\` work as in the \`http\` step; credentials are redacted from everything Sluice records. See docs/http.md.`,
  config: httpSinkConfig,
  examples: [
    {
      title: 'POST each record as JSON, with an idempotency key and a bearer token',
      yaml: `url: https://api.example.com/v1/events
idempotency_key: "{{ id }}"
auth: { bearer: "\${env:API_TOKEN}" }
`,
    },
    {
      title: 'Batches of 500 records to a bulk endpoint, each item built from the record',
      yaml: `url: https://ingest.example.com/v2/bulk
batch: { max_records: 500 }
body: { id: "{{ id }}", type: "{{ kind }}", attributes: "{{ payload }}" }
headers: { X-Source: sluice }
concurrency: 4
retry: { attempts: 5, initial: 200ms, max: 30s, on: [429, 5xx, network, timeout] }
`,
    },
    {
      title: 'PUT each document to its own URL, with an API key header',
      yaml: `url: https://search.example.com/index/products/{{ sku }}
method: PUT
json: document
auth: { header: { name: X-Api-Key, value: "\${env:SEARCH_KEY}" } }
timeout: { connect: 2s, headers: 10s, total: 30s }
`,
    },
  ],
  create: (cfg, ctx) => new HttpSink(cfg, ctx),
});
