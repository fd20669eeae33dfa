import { z } from 'zod';
import { authConfig, authHeaderName } from '../../http/auth.ts';
import { breakerConfig } from '../../http/breaker.ts';
import { cacheConfig } from '../../http/cache.ts';
import { rateLimitConfig } from '../../http/rate-limit.ts';
import {
  DEFAULT_MAX_BYTES,
  decompressSchema,
  maxBytesSchema,
  redirectsSchema,
  retrySchema,
  timeoutSchema,
} from '../../http/schemas.ts';
import {
  compileJsonBody,
  compileUrl,
  configChecks,
  hasPlaceholder,
  parseFieldRef,
  parseTemplate,
} from '../../http/template.ts';

export const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] as const;
export const STATUS_KEY = /^(?:[2-5]xx|[2-5]\d\d)$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

// YAML may write `v: 2` or `full: true`; they are sent as text.
const scalarTemplate = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));

const request = z
  .object({
    method: z.enum(METHODS).default('GET').describe('The HTTP method.'),
    url: z
      .string()
      .min(1)
      .describe(
        'The URL, with `{{ field.path }}` placeholders filled from the record, e.g. ' +
          '`https://api.example.com/v1/users/{{ user.id }}/orders?since={{ since }}`. Values are percent-encoded, so ' +
          'a value with `/`, `?`, `&`, spaces or non-ASCII text stays one path segment or one query value. The scheme, ' +
          'host and port are fixed (no placeholders there).',
      ),
    query: z
      .record(z.string(), scalarTemplate)
      .optional()
      .describe(
        'Query parameters added to the URL, each a template: `{ q: "{{ name }}", limit: 10 }`. Values are ' +
          'percent-encoded. A parameter that is exactly one placeholder is left out when the field is null and ' +
          'repeated when it is an array.',
      ),
    headers: z
      .record(z.string(), scalarTemplate)
      .optional()
      .describe(
        'Request headers, each value a template: `{ X-Request-Id: "{{ id }}" }`. A value with a line break or text ' +
          'outside ASCII fails its record (SLUICE_HTTP_TEMPLATE). Put credentials in `auth`.',
      ),
    body: z
      .union([z.record(z.string(), z.unknown()), z.array(z.unknown())])
      .optional()
      .describe(
        'A JSON body template: an object (or array) whose strings are templates. A string that is exactly one ' +
          'placeholder keeps the field\'s type: `{ id: "{{ id }}", amount: "{{ amount }}", note: "order {{ id }}" }` ' +
          'sends `{"id": 7, "amount": 12.5, "note": "order 7"}`. Sent as application/json.',
      ),
    json: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A field whose value is sent as the whole JSON body, e.g. `payload`. Sent as application/json.',
      ),
    form: z
      .record(z.string(), scalarTemplate)
      .optional()
      .describe(
        'Form fields, each a template: `{ grant: "{{ kind }}", id: "{{ id }}" }`. Sent as ' +
          'application/x-www-form-urlencoded.',
      ),
  })
  .strict()
  .describe('The request made for each record.');

const response = z
  .object({
    into: z
      .string()
      .min(1)
      .default('response')
      .describe('The field the response is written to (a dotted path creates nested fields), e.g. `risk`.'),
    as: z
      .enum(['auto', 'json', 'text'])
      .default('auto')
      .describe(
        'How the body is read: json (invalid JSON fails with SLUICE_HTTP_RESPONSE), text, or auto (JSON when the ' +
          'Content-Type is JSON, else text). An empty body is null.',
      ),
    include: z
      .array(z.enum(['status', 'headers', 'body']))
      .min(1)
      .default(['body'])
      .describe(
        'What is written: with just `body` (the default) the field holds the body itself; otherwise an object ' +
          'with the listed keys, e.g. `{ status: 200, headers: { content-type: ... }, body: ... }`.',
      ),
    max_bytes: maxBytesSchema,
    decompress: decompressSchema,
    sql: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A per-record query that selects what the record becomes, over `input`: the record with the response ' +
          'under `into` (as `include` shapes it), e.g. `SELECT * EXCLUDE (response), response.score AS score FROM ' +
          'input WHERE response.score > 0.5` (a record the WHERE rejects is dropped). DuckDB semantics, in the compiled ' +
          'subset of docs/sql.md (checked when the spec is validated); for other SQL add a `sql` step after this one.',
      ),
  })
  .strict()
  .describe('How the final response is mapped into the record (which is copied, never changed in place).');

const onStatus = z
  .record(z.string(), z.enum(['error', 'drop', 'keep']))
  .default({})
  .describe(
    'What happens to a record by the status of its final response, per class (`4xx`) or code (`404`, which ' +
      'wins over its class): keep (the record goes on, the response mapped), drop (the record is filtered out) or ' +
      'error (the record goes to the errors sink with SLUICE_HTTP_STATUS, the status, the attempt count and the ' +
      'first KiB of the body). Defaults: 2xx keep, every other status error. A 5xx cannot be dropped: it says ' +
      'nothing about the record.',
  );

export const httpConfig = z
  .object({
    request,
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(8192)
      .default(64)
      .describe(
        'Most calls in flight at once (over keep-alive connections to the one host), over as many batches as it ' +
          'takes: the engine hands the step several batches at once.',
      ),
    ordered: z
      .boolean()
      .default(true)
      .describe(
        'true: each output batch keeps the input order; false: records leave a batch in the order their calls ' +
          'completed.',
      ),
    timeout: timeoutSchema,
    retry: retrySchema,
    response: response.default({
      into: 'response',
      as: 'auto',
      include: ['body'],
      max_bytes: DEFAULT_MAX_BYTES,
      decompress: true,
    }),
    redirects: redirectsSchema,
    on_status: onStatus,
    auth: authConfig.optional(),
    rate_limit: rateLimitConfig.optional(),
    breaker: breakerConfig.optional(),
    cache: cacheConfig.optional(),
    batch: z
      .object({
        max_records: z.number().int().min(2).max(10_000).describe('Most records in one request.'),
        wrap: z
          .string()
          .min(1)
          .optional()
          .describe(
            'The request body is `{ "<wrap>": [items] }`; without it, the array of items itself. Each item is ' +
              '`request.body` (or `request.json`) rendered for one record.',
          ),
        results: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Where the array of results is in the response body (a dotted path, e.g. `data.results`); without it, ' +
              'the body is the array. It must hold one result per item, in the same order.',
          ),
      })
      .strict()
      .optional()
      .describe(
        'For bulk endpoints: one request carries up to `max_records` records, and the response is split back, result ' +
          'i going to record i (under `response.into`, with the status and headers of the whole response). A failed ' +
          'request fails all its records; a response with another number of results fails them with ' +
          'SLUICE_HTTP_RESPONSE.',
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const { issue, template } = configChecks(ctx);
    const { request: req } = cfg;
    template(['request', 'url'], () => compileUrl(req.url));
    for (const [name, value] of Object.entries(req.query ?? {}))
      template(['request', 'query', name], () => parseTemplate(value));
    for (const [name, value] of Object.entries(req.headers ?? {})) {
      if (!HEADER_NAME.test(name))
        issue(['request', 'headers', name], `"${name}" is not a valid header name`);
      template(['request', 'headers', name], () => parseTemplate(value));
    }
    for (const [name, value] of Object.entries(req.form ?? {}))
      template(['request', 'form', name], () => parseTemplate(value));
    if (req.body !== undefined) template(['request', 'body'], () => compileJsonBody(req.body));
    if (req.json !== undefined) template(['request', 'json'], () => parseFieldRef(req.json!));
    const bodies = (['body', 'json', 'form'] as const).filter((k) => req[k] !== undefined);
    if (bodies.length > 1)
      issue(['request', bodies[1]!], `give one of body, json and form, not ${bodies.join(' and ')}`);
    if (bodies.length && (req.method === 'GET' || req.method === 'HEAD'))
      issue(
        ['request', bodies[0]!],
        `a ${req.method} request carries no body: use POST, PUT or PATCH, or send the values in query`,
      );
    const authHeader = authHeaderName(cfg.auth);
    for (const name of Object.keys(req.headers ?? {}))
      if (name.toLowerCase() === authHeader)
        issue(['request', 'headers', name], `${name} is set by auth: give it in one place only`);
    template(['response', 'into'], () => parseFieldRef(cfg.response.into));
    if (new Set(cfg.response.include).size !== cfg.response.include.length)
      issue(['response', 'include'], 'list each of status, headers and body at most once');
    for (const [key, action] of Object.entries(cfg.on_status)) {
      if (!STATUS_KEY.test(key))
        issue(['on_status', key], `"${key}" is not a status class (2xx to 5xx) or code (200 to 599)`);
      else if (key.startsWith('5') && action === 'drop')
        issue(
          ['on_status', key],
          'a server error says nothing about the record, so it cannot be dropped: use error (the errors sink can be replayed) or keep',
        );
    }
    if (cfg.cache)
      template(['cache', 'key'], () => {
        if (!parseTemplate(cfg.cache!.key).some((p) => typeof p !== 'string'))
          issue(
            ['cache', 'key'],
            'the key has no placeholder, so every record would share one response: write it from the fields that decide the response, e.g. "{{ user.id }}"',
          );
      });
    if (new Set(cfg.retry.on.map(String)).size !== cfg.retry.on.length)
      issue(['retry', 'on'], 'list each status or condition at most once');
    if (cfg.batch) {
      // One request stands for many records: only the body's items can differ between them.
      const fixed = (path: (string | number)[], text: string) => {
        try {
          if (hasPlaceholder(text))
            issue(
              path,
              'with batch, one request carries many records: only request.body or request.json can use their fields',
            );
        } catch {}
      };
      fixed(['request', 'url'], req.url);
      for (const [name, value] of Object.entries(req.query ?? {})) fixed(['request', 'query', name], value);
      for (const [name, value] of Object.entries(req.headers ?? {}))
        fixed(['request', 'headers', name], value);
      if (req.body === undefined && req.json === undefined)
        issue(['batch'], 'batch needs request.body or request.json: the item sent for each record');
      if (cfg.cache) issue(['cache'], 'cache applies to one call per record, not to batch');
      if (cfg.response.as === 'text')
        issue(['response', 'as'], 'batch splits a JSON response: use json or auto');
      if (cfg.batch.wrap !== undefined) template(['batch', 'wrap'], () => parseFieldRef(cfg.batch!.wrap!));
      if (cfg.batch.results !== undefined)
        template(['batch', 'results'], () => parseFieldRef(cfg.batch!.results!));
    }
  });

export type HttpConfig = z.output<typeof httpConfig>;
