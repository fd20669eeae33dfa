/**
 * The `http` source: reads a JSON API page by page (cursor, offset or Link-header pagination)
 * over the `http` step's caller, and as a batch job ends with the last page; with
 * `poll_interval` it keeps asking for what is new.
 *
 * Positions. Offset pagination: one partition `offset`, each record's offset its place in the
 * listing (the `offset` parameter plus its index in the page), so a resume asks for the offset
 * after the last committed one. Cursor and link pagination: one partition per page, named by what
 * requests it (`cursor:<cursor>`, `link:<path?query>`), the offset `page number × 1e6 + index in
 * the page`; a resume finds the committed page with the highest offset, asks for it again (its
 * cursor or URL comes from the partition name), skips what was committed and goes on from there.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import LinkHeader from 'http-link-header';
import { z } from 'zod';
import { acceptEncoding, type HttpCaller, type Redactor } from '../../http/client.ts';
import {
  type FieldRef,
  hasPlaceholder,
  lookup,
  parseFieldRef,
  stringifyJson,
  TemplateSyntaxError,
} from '../../http/template.ts';
import { defineSource } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  Rejection,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
} from '../../sdk/types.ts';
import { durationSchema } from '../../spec/duration.ts';
import {
  authSchema,
  type Connection,
  checkAuthAndRetry,
  connect,
  connectorRedactor,
  HEADER_NAME,
  ms,
  rateLimitSchema,
  redirectsSchema,
  responseSchema,
  retrySchema,
  timeoutSchema,
} from './common.ts';

const scalar = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));
const fieldPath = z
  .string()
  .min(1)
  .refine(
    (s) => {
      try {
        parseFieldRef(s);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'expected a field path: field names separated by dots, such as data.items or meta.next' },
  );
const paramName = z.string().min(1);

/** Items per page above which page-based offsets (page × 1e6 + index) would collide. */
const PAGE_SPAN = 1_000_000;

const pagination = z
  .object({
    cursor: z
      .object({
        path: fieldPath.describe(
          'Where the next cursor is in the body, a dotted path such as `next_cursor` or `meta.next`.',
        ),
        param: paramName
          .default('cursor')
          .describe('The query parameter the cursor is sent back in, e.g. `cursor`, `page_token`, `after`.'),
      })
      .strict()
      .optional()
      .describe(
        'Cursor pagination: each page names the next in its body; the listing ends when the cursor is absent, ' +
          'null, empty or unchanged, or the page is empty.',
      ),
    offset: z
      .object({
        param: paramName
          .default('offset')
          .describe('The query parameter of the offset (0 for the first record).'),
        limit_param: paramName.default('limit').describe('The query parameter of the page size.'),
        limit: z
          .number()
          .int()
          .min(1)
          .max(PAGE_SPAN)
          .default(100)
          .describe('Records asked for per page; a page with fewer ends the listing.'),
      })
      .strict()
      .optional()
      .describe(
        'Offset pagination: `offset` and `limit` query parameters; a short or empty page ends the listing.',
      ),
    link: z
      .object({
        rel: z.string().min(1).default('next').describe('The link relation of the next page.'),
      })
      .strict()
      .optional()
      .describe(
        "Link-header pagination (RFC 8288, as GitHub does): the next page is the URL of the response's " +
          '`Link: <...>; rel="next"`; the listing ends on a page without one. The URL must stay on the origin ' +
          'of `url`.',
      ),
  })
  .strict()
  .optional()
  .describe(
    'How the next page is asked for, one of `{ cursor: { path, param } }`, `{ offset: { param, limit_param, ' +
      'limit } }` or `{ link: {} }`. Without it, the source reads one page.',
  );

export const httpSourceConfig = z
  .object({
    url: z
      .string()
      .min(1)
      .describe(
        'The first page, e.g. `https://api.example.com/v1/orders?status=paid`. Fixed: a source has no record ' +
          'to fill placeholders from (use `${env:NAME}` or `${param:NAME}` for variable parts).',
      ),
    query: z
      .record(z.string(), scalar)
      .optional()
      .describe('Query parameters added to every request, e.g. `{ status: paid, per_page: 100 }`.'),
    headers: z
      .record(z.string(), scalar)
      .optional()
      .describe(
        'Request headers, e.g. `{ Accept: application/vnd.github+json }`. Credentials belong in `auth`.',
      ),
    records: fieldPath
      .optional()
      .describe(
        'Where the records are in the body, a dotted path to an array (`items`, `data.results`); null counts ' +
          'as an empty page. Without it the body itself must be the array. Each item that is a JSON object is ' +
          'a record; any other item goes to the errors sink (SLUICE_DECODE).',
      ),
    pagination,
    poll_interval: durationSchema
      .optional()
      .describe(
        'Makes the source a stream: once the pages end, it asks again every interval for what is new (the ' +
          'next offset, the newest cursor, or the last page again, skipping the items already read). Without ' +
          'it the run ends with the last page.',
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
    const issue = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: 'custom', path, message });
    let url: URL | undefined;
    try {
      url = new URL(cfg.url);
    } catch {
      issue(['url'], 'expected an absolute URL starting with http:// or https://');
    }
    if (url) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        issue(['url'], 'expected an absolute URL starting with http:// or https://');
      if (url.username || url.password)
        issue(['url'], 'put credentials in `auth`, not in the url, so that they are never recorded');
      if (url.hash) issue(['url'], 'a url fragment (#...) is never sent: remove it');
    }
    const noTemplate = (path: (string | number)[], value: string) => {
      try {
        if (hasPlaceholder(value))
          issue(path, 'a source has no record to fill {{ }} placeholders from: write the value itself');
      } catch (err) {
        if (err instanceof TemplateSyntaxError) issue(path, err.message);
        else throw err;
      }
    };
    noTemplate(['url'], cfg.url);
    for (const [name, value] of Object.entries(cfg.query ?? {})) noTemplate(['query', name], value);
    for (const [name, value] of Object.entries(cfg.headers ?? {})) {
      if (!HEADER_NAME.test(name)) issue(['headers', name], `"${name}" is not a valid header name`);
      noTemplate(['headers', name], value);
    }
    const modes = (['cursor', 'offset', 'link'] as const).filter((k) => cfg.pagination?.[k] !== undefined);
    if (cfg.pagination && modes.length !== 1)
      issue(
        ['pagination', ...modes.slice(1, 2)],
        modes.length
          ? `give one of cursor, offset and link, not ${modes.join(' and ')}`
          : 'give one of cursor, offset and link',
      );
    if (cfg.poll_interval !== undefined && !modes.length)
      issue(
        ['poll_interval'],
        'polling needs pagination (cursor, offset or link): without it there is no way to ask for what is new',
      );
    checkAuthAndRetry(cfg, issue);
  });

export type HttpSourceConfig = z.output<typeof httpSourceConfig>;

type Mode = 'none' | 'cursor' | 'offset' | 'link';

/** A page to ask for and where its records go. */
interface PageRequest {
  /** Path and query on the origin. */
  target: string;
  /** The position partition of its records. */
  partition: string;
  /** Cursor and link: the page's number in the listing (0 first), the high part of offsets. */
  seq: number;
  /** Offset pagination: the offset asked for. */
  offset: number;
  /** Cursor pagination: the cursor sent (undefined on the first page). */
  cursor: string | undefined;
  /** Items of this page already read (a resumed or re-polled page): they are skipped. */
  skip: number;
}

/** What a page said: its items and how to ask for the next one. */
interface Page {
  items: unknown[];
  /** The next page, or undefined when the listing ends here. */
  next: PageRequest | undefined;
  /** When the listing ends here, what to ask for when polling (the same page, or what it pointed to). */
  poll: PageRequest;
}

export class HttpSource implements SourceInstance {
  readonly #cfg: HttpSourceConfig;
  readonly #ctx: ComponentContext;
  readonly #mode: Mode;
  readonly #origin: string;
  /** The first page's target, with `query` added. */
  readonly #base: string;
  readonly #headers: Record<string, string>;
  readonly #records: FieldRef | undefined;
  readonly #cursorPath: FieldRef | undefined;
  readonly #redactor: Redactor;
  readonly #connection: Connection;
  readonly #caller: HttpCaller;
  #pagesRead = 0;
  #started = false;
  #closing: Promise<void> | undefined;

  constructor(cfg: HttpSourceConfig, ctx: ComponentContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    const p = cfg.pagination;
    this.#mode = p?.cursor ? 'cursor' : p?.offset ? 'offset' : p?.link ? 'link' : 'none';
    const url = new URL(cfg.url);
    this.#origin = url.origin;
    this.#base = withParams(url.pathname + url.search, Object.entries(cfg.query ?? {}));
    this.#headers = { accept: 'application/json' };
    for (const [name, value] of Object.entries(cfg.headers ?? {})) this.#headers[name.toLowerCase()] = value;
    acceptEncoding(this.#headers, cfg.response.decompress);
    this.#records = cfg.records === undefined ? undefined : parseFieldRef(cfg.records);
    this.#cursorPath = p?.cursor ? parseFieldRef(p.cursor.path) : undefined;
    this.#redactor = connectorRedactor(cfg.auth, { headers: cfg.headers, query: cfg.query, url: cfg.url });
    this.#connection = connect({
      origin: this.#origin,
      // Pages are read one after the other: each names the next.
      concurrency: 1,
      timeout: cfg.timeout,
      retry: cfg.retry,
      auth: cfg.auth,
      rateLimit: cfg.rate_limit,
      redirects: cfg.redirects,
      response: cfg.response,
      as: 'json',
      signal: ctx.signal,
      redactor: this.#redactor,
      logger: ctx.logger,
    });
    this.#caller = this.#connection.caller;
    Object.assign(this.#headers, this.#connection.authHeaders);
  }

  /** Pages fetched so far (re-polls included). */
  get pagesRead(): number {
    return this.#pagesRead;
  }

  async *read(): AsyncGenerator<SourceBatch> {
    if (this.#started)
      throw new SluiceError('SLUICE_SOURCE_IO', 'an http source can be read only once', { retriable: false });
    this.#started = true;
    const { signal, batchSize } = this.#ctx;
    const interval = this.#cfg.poll_interval === undefined ? undefined : ms(this.#cfg.poll_interval);
    let request: PageRequest | undefined = this.#first();
    while (request) {
      if (signal.aborted) return;
      const page = await this.#fetch(request);
      if (!page) return; // aborted
      const records: SluiceRecord[] = [];
      const rejected: Rejection[] = [];
      for (let i = request.skip; i < page.items.length; i++) {
        const item = page.items[i];
        const position = { partition: request.partition, offset: this.#offsetOf(request, i) };
        if (item !== null && typeof item === 'object' && !Array.isArray(item))
          records.push({ value: item as Record<string, unknown>, meta: { position } });
        else
          rejected.push({
            raw: stringifyJson(item) ?? String(item),
            position,
            error: new SluiceError(
              'SLUICE_DECODE',
              `http source: item ${i} of page ${request.seq + 1} (${this.#where(request)}) is ${describe(item)}, not a JSON object`,
              { details: { page: request.seq + 1, index: i } },
            ),
          });
      }
      // Never more than batchSize items (records plus rejected) in one batch.
      let r = 0;
      let j = 0;
      while (r < records.length || j < rejected.length) {
        if (signal.aborted) return;
        const take = Math.min(batchSize, records.length - r);
        const batch: SourceBatch = { records: records.slice(r, r + take) };
        r += take;
        const room = batchSize - take;
        if (room > 0 && j < rejected.length) {
          batch.rejected = rejected.slice(j, j + room);
          j += batch.rejected.length;
        }
        yield batch;
      }
      if (page.next) {
        request = page.next;
        continue;
      }
      if (interval === undefined) return;
      // Streaming: wait, then ask for what is new.
      try {
        await sleep(interval, undefined, { signal });
      } catch {
        return;
      }
      request = page.poll;
    }
  }

  #offsetOf(request: PageRequest, index: number): number {
    if (this.#mode === 'offset') return request.offset + index;
    if (this.#mode === 'none') return index;
    return request.seq * PAGE_SPAN + index;
  }

  /** The first page to ask for: the start of the listing, or where a resumed run left off. */
  #first(): PageRequest {
    const resume = this.#ctx.resume ?? {};
    const base: PageRequest = {
      target: this.#base,
      partition: 'page',
      seq: 0,
      offset: 0,
      cursor: undefined,
      skip: 0,
    };
    switch (this.#mode) {
      case 'none': {
        const done = resume.page;
        return { ...base, skip: done === undefined ? 0 : done + 1 };
      }
      case 'offset': {
        const done = resume.offset;
        return this.#offsetPage(done === undefined ? 0 : done + 1);
      }
      case 'cursor':
      case 'link': {
        const prefix = `${this.#mode}:`;
        let last: [string, number] | undefined;
        for (const [partition, offset] of Object.entries(resume))
          if (partition.startsWith(prefix) && (!last || offset > last[1])) last = [partition, offset];
        if (!last)
          return this.#mode === 'cursor' ? this.#cursorPage(undefined, 0) : this.#linkPage(this.#base, 0);
        const saved = last[0].slice(prefix.length);
        const seq = Math.floor(last[1] / PAGE_SPAN);
        const skip = (last[1] % PAGE_SPAN) + 1;
        const page =
          this.#mode === 'cursor'
            ? this.#cursorPage(saved === '' ? undefined : saved, seq)
            : this.#linkPage(this.#restoreTarget(saved), seq);
        return { ...page, skip };
      }
    }
  }

  #offsetPage(offset: number): PageRequest {
    const o = this.#cfg.pagination!.offset!;
    return {
      target: withParams(this.#base, [
        [o.param, String(offset)],
        [o.limit_param, String(o.limit)],
      ]),
      partition: 'offset',
      seq: 0,
      offset,
      cursor: undefined,
      skip: 0,
    };
  }

  #cursorPage(cursor: string | undefined, seq: number): PageRequest {
    const param = this.#cfg.pagination!.cursor!.param;
    return {
      target: cursor === undefined ? this.#base : withParams(this.#base, [[param, cursor]]),
      partition: `cursor:${cursor ?? ''}`,
      seq,
      offset: 0,
      cursor,
      skip: 0,
    };
  }

  #linkPage(target: string, seq: number): PageRequest {
    return {
      target,
      partition: `link:${this.#savedTarget(target)}`,
      seq,
      offset: 0,
      cursor: undefined,
      skip: 0,
    };
  }

  /** A page's target as kept in a checkpoint: query parameters holding a secret are left out. */
  #savedTarget(target: string): string {
    const at = target.indexOf('?');
    if (at < 0) return target;
    const kept = target
      .slice(at + 1)
      .split('&')
      .filter((pair) => {
        let decoded = pair;
        try {
          decoded = decodeURIComponent(pair.replace(/\+/g, ' '));
        } catch {}
        return this.#redactor.redact(pair) === pair && this.#redactor.redact(decoded) === decoded;
      });
    return kept.length ? `${target.slice(0, at)}?${kept.join('&')}` : target.slice(0, at);
  }

  /** A saved target with the configured query parameters it lacks (those left out as secrets) put back. */
  #restoreTarget(saved: string): string {
    const url = new URL(saved, this.#origin);
    const missing = Object.entries(this.#cfg.query ?? {}).filter(([name]) => !url.searchParams.has(name));
    return missing.length ? withParams(saved, missing) : saved;
  }

  #where(request: PageRequest): string {
    return this.#redactor.redact(`GET ${this.#origin}${request.target}`);
  }

  /** Fetches a page and works out the next; undefined when the run was stopped meanwhile. */
  async #fetch(request: PageRequest): Promise<Page | undefined> {
    const outcome = await this.#caller.call({ method: 'GET', path: request.target, headers: this.#headers });
    this.#pagesRead++;
    const pageNo = request.seq + 1;
    const label = this.#mode === 'offset' ? `the page at offset ${request.offset}` : `page ${pageNo}`;
    if (outcome.kind === 'aborted' || outcome.kind === 'dropped') return undefined;
    if (outcome.kind === 'failed') {
      const error = outcome.error;
      throw new SluiceError('SLUICE_SOURCE_IO', `http source: ${label}: ${error.message}`, {
        retriable: error.retriable,
        cause: error,
        details: { ...error.details, code: error.code, page: pageNo },
      });
    }
    const fail = (problem: string) =>
      new SluiceError('SLUICE_SOURCE_IO', `http source: ${label} (${this.#where(request)}): ${problem}`, {
        retriable: false,
        details: { url: this.#redactor.redact(this.#origin + request.target), page: pageNo },
      });
    const body = outcome.body;
    let items: unknown[];
    if (body === null) items = [];
    else if (this.#records) {
      const found = lookup(body, this.#records);
      if (found === null) items = [];
      else if (Array.isArray(found)) items = found;
      else if (typeof found === 'symbol')
        throw fail(`the body has no field "${this.#records.name}" (records)${keysHint(body)}`);
      else throw fail(`"${this.#records.name}" (records) is ${describe(found)}, not an array`);
    } else if (Array.isArray(body)) items = body;
    else
      throw fail(
        `the body is ${describe(body)}, not an array: give \`records\`, the path to the array${keysHint(body)}`,
      );
    if (items.length >= PAGE_SPAN && this.#mode !== 'offset')
      throw fail(`the page holds ${items.length} items, more than the ${PAGE_SPAN - 1} a page may hold`);
    const seen = Math.max(request.skip, items.length);
    const again: PageRequest = { ...request, skip: seen };
    switch (this.#mode) {
      case 'none':
        return { items, next: undefined, poll: again };
      case 'offset': {
        const limit = this.#cfg.pagination!.offset!.limit;
        const after = this.#offsetPage(request.offset + items.length);
        return { items, next: items.length < limit ? undefined : after, poll: after };
      }
      case 'cursor': {
        const found = lookup(body, this.#cursorPath!);
        const cursor =
          typeof found === 'string' || typeof found === 'number' || typeof found === 'bigint'
            ? String(found)
            : undefined;
        const moved = cursor !== undefined && cursor !== '' && cursor !== request.cursor;
        const after = moved ? this.#cursorPage(cursor, request.seq + 1) : undefined;
        return { items, next: items.length ? after : undefined, poll: after ?? again };
      }
      case 'link': {
        const next = this.#nextLink(outcome.headers.link, request, fail);
        const after =
          next === undefined || next === request.target ? undefined : this.#linkPage(next, request.seq + 1);
        return { items, next: after, poll: after ?? again };
      }
    }
  }

  /** The target of the `Link` header's next page, resolved against the page; undefined when there is none. */
  #nextLink(
    header: string | string[] | undefined,
    request: PageRequest,
    fail: (problem: string) => SluiceError,
  ): string | undefined {
    const rel = this.#cfg.pagination!.link!.rel;
    const values = header === undefined ? [] : Array.isArray(header) ? header : [header];
    let uri: string | undefined;
    for (const value of values) {
      try {
        uri ??= LinkHeader.parse(value).rel(rel)[0]?.uri;
      } catch (err) {
        throw fail(`its Link header cannot be read: ${(err as Error).message}`);
      }
    }
    if (uri === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(uri, this.#origin + request.target);
    } catch {
      throw fail(`its Link header's ${rel} URL "${this.#redactor.redact(uri)}" is not a valid URL`);
    }
    if (url.origin !== this.#origin)
      throw fail(
        `its Link header's ${rel} URL is on ${url.origin}, not ${this.#origin}: the source sends its credentials to the origin of \`url\` only`,
      );
    return url.pathname + url.search;
  }

  async close(): Promise<void> {
    this.#closing ??= this.#connection.close();
    return this.#closing;
  }
}

/** `target` with each parameter set (replacing one of the same name), keeping the rest as written. */
function withParams(target: string, params: [string, string][]): string {
  if (!params.length) return target;
  const at = target.indexOf('?');
  const path = at < 0 ? target : target.slice(0, at);
  const names = new Set(params.map(([name]) => name));
  const kept =
    at < 0
      ? []
      : target
          .slice(at + 1)
          .split('&')
          .filter((pair) => {
            if (!pair) return false;
            const name = pair.split('=', 1)[0]!;
            try {
              return !names.has(decodeURIComponent(name.replace(/\+/g, ' ')));
            } catch {
              return true;
            }
          });
  const added = params.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  return `${path}?${[...kept, ...added].join('&')}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `a string (${JSON.stringify(value.slice(0, 40))})`;
  return `${typeof value === 'number' ? 'a number' : `a ${typeof value}`} (${String(value)})`;
}

function keysHint(body: unknown): string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return '';
  const keys = Object.keys(body).slice(0, 10);
  return keys.length ? `; its fields are ${keys.join(', ')}` : '';
}

export const httpSource = defineSource({
  name: 'http',
  summary:
    'Reads records from a JSON API page by page (cursor, offset or Link-header pagination), as a batch job or polling for new items.',
  description: `Asks \`url\` for the first page (GET, with \`query\` and \`headers\`), takes the records from the JSON body (\`records\`, a path to an array, or the body itself), then asks for the next page as \`pagination\` says: a cursor from the body sent back as a query parameter (\`cursor\`), \`offset\`/\`limit\` parameters (\`offset\`), or the \`Link: <...>; rel="next"\` header (\`link\`). Pages are read one after the other. As a batch job the run ends with the last page; with \`poll_interval\` the source keeps asking for what is new (streaming).

Each record's position is its page and place: a resumed run asks again for the last page a checkpoint covered (its cursor or URL is kept in the checkpoint; with offset pagination, the offset after the last record committed) and skips the records already committed. Failed requests are retried as in the \`http\` step (\`retry\`, honouring \`Retry-After\` on 429 and 503); a page that still fails, whose body is not JSON, or that has no array where \`records\` points fails the run with \`SLUICE_SOURCE_IO\`, naming the page and the URL (retriable for 408, 429, 5xx, network errors and timeouts: \`sluice run\` restarts from the last checkpoint). Credentials (\`auth\`) are redacted from everything Sluice records, checkpoints included. See docs/http.md.`,
  config: httpSourceConfig,
  examples: [
    {
      title: 'Cursor pagination: records in `data`, the next cursor in `meta.next_cursor`',
      yaml: `url: https://api.example.com/v1/orders
query: { status: paid, limit: 200 }
records: data
pagination: { cursor: { path: meta.next_cursor, param: cursor } }
auth: { bearer: "\${env:API_TOKEN}" }
`,
    },
    {
      title: 'Offset pagination, 500 per page',
      yaml: `url: https://api.example.com/v2/customers
records: results
pagination: { offset: { param: offset, limit_param: limit, limit: 500 } }
retry: { attempts: 6, max: 60s }
`,
    },
    {
      title: 'GitHub-style Link headers, polling every minute for new items',
      yaml: `url: https://git.example.com/api/v3/repos/acme/widgets/issues
query: { state: all, per_page: 100, direction: asc }
headers: { Accept: application/vnd.github+json }
pagination: { link: {} }
poll_interval: 60s
auth: { bearer: "\${env:GITHUB_TOKEN}" }
`,
    },
  ],
  bounded: (cfg) => cfg.poll_interval === undefined,
  create: (cfg, ctx) => new HttpSource(cfg, ctx),
});
