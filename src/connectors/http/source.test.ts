/** The `http` source against a real local HTTP server: each pagination mode, resume, polling, failures. */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import zlib from 'node:zlib';
import type { SluiceError } from '../../sdk/errors.ts';
import { configIssues, readAll, sourceConformance, testContext } from '../../sdk/testing.ts';
import type { ComponentContext, SluiceRecord, SourceBatch } from '../../sdk/types.ts';
import { type HttpSource, httpSource, httpSourceConfig } from './index.ts';
import type { Answer, Arrived, PageServer } from './test-server.ts';
import { startPageServer } from './test-server.ts';

let server: PageServer;
before(async () => {
  server = await startPageServer();
});
after(() => server.close());

const PAGE = 5;
/** The listing the server pages through; tests may grow it. */
let items: { id: number; name: string }[] = [];
const listing = (n: number) => Array.from({ length: n }, (_, i) => ({ id: i + 1, name: `item ${i + 1}` }));

/** Cursor pages: `{ data, meta: { next_cursor } }`, the cursor `c<start>`; null after the last. */
function cursorPage(req: Arrived): Answer {
  const cursor = req.query.get('cursor');
  const start = cursor ? Number(cursor.slice(1)) : 0;
  const data = items.slice(start, start + PAGE);
  const next = start + PAGE < items.length ? `c${start + PAGE}` : null;
  return { body: { data, meta: { next_cursor: next } } };
}

/** Offset pages: `{ results }` from `offset` and `limit`. */
function offsetPage(req: Arrived): Answer {
  const offset = Number(req.query.get('offset'));
  const limit = Number(req.query.get('limit'));
  return { body: { results: items.slice(offset, offset + limit) } };
}

/** Link pages: the body is the array, `Link: <...page=n+1>; rel="next"` while there are more. */
function linkPage(req: Arrived): Answer {
  const page = Number(req.query.get('page') ?? 1);
  const per = Number(req.query.get('per_page'));
  const start = (page - 1) * per;
  const next = new URL(req.url, server.origin);
  next.searchParams.set('page', String(page + 1));
  const last = new URL(req.url, server.origin);
  last.searchParams.set('page', String(Math.ceil(items.length / per)));
  const links = [`<${last.href}>; rel="last"`];
  if (start + per < items.length) links.unshift(`<${next.href}>; rel="next"`);
  return { body: items.slice(start, start + per), headers: { link: links.join(', ') } };
}

const route = (req: Arrived): Answer => {
  if (req.path === '/cursor') return cursorPage(req);
  if (req.path === '/offset') return offsetPage(req);
  if (req.path === '/link') return linkPage(req);
  return { status: 404, body: { error: 'no such route' } };
};

const modes = {
  cursor: () => ({
    url: `${server.origin}/cursor?limit=${PAGE}`,
    records: 'data',
    pagination: { cursor: { path: 'meta.next_cursor' } },
  }),
  offset: () => ({
    url: `${server.origin}/offset`,
    records: 'results',
    pagination: { offset: { limit: PAGE } },
  }),
  link: () => ({
    url: `${server.origin}/link`,
    query: { per_page: PAGE },
    pagination: { link: {} },
  }),
} as const;

function source(config: Record<string, unknown>, ctx: Partial<ComponentContext> = {}): HttpSource {
  return httpSource.create(
    httpSourceConfig.parse(config),
    testContext({ batchSize: 4, ...ctx }),
  ) as HttpSource;
}

async function readRecords(s: HttpSource): Promise<SluiceRecord[]> {
  try {
    return (await readAll(s)).flatMap((b) => b.records);
  } finally {
    await s.close();
  }
}

/** The engine's checkpoint after `records`: per partition, the last offset. */
function positionsAfter(records: SluiceRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) out[r.meta.position!.partition] = r.meta.position!.offset;
  return out;
}

const ids = (records: SluiceRecord[]) => records.map((r) => r.value.id);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const fast = { initial: '1ms', max: '5ms' };

describe('http source', () => {
  beforeEach(() => {
    server.reset();
    server.handler = route;
    items = listing(23);
  });

  it('cursor: reads every item once, in order, sending the cursor back, and ends at the last page', async () => {
    const records = await readRecords(source(modes.cursor()));
    assert.deepEqual(ids(records), range(1, 23));
    assert.deepEqual(
      server.requests.map((r) => r.url),
      ['', 'c5', 'c10', 'c15', 'c20'].map((c) => `/cursor?limit=5${c ? `&cursor=${c}` : ''}`),
    );
    assert.deepEqual(records[7]!.meta.position, { partition: 'cursor:c5', offset: 1_000_002 });
    assert.equal(server.requests[0]!.headers.accept, 'application/json');
  });

  it('offset: reads every item once, in order, and ends on the short page', async () => {
    const records = await readRecords(source(modes.offset()));
    assert.deepEqual(ids(records), range(1, 23));
    assert.deepEqual(
      server.requests.map((r) => r.url),
      [0, 5, 10, 15, 20].map((o) => `/offset?offset=${o}&limit=5`),
    );
    assert.deepEqual(records[7]!.meta.position, { partition: 'offset', offset: 7 });
  });

  it('offset: ends on an empty page when the last page is full', async () => {
    items = listing(20);
    const records = await readRecords(source(modes.offset()));
    assert.deepEqual(ids(records), range(1, 20));
    assert.equal(server.requests.at(-1)!.url, '/offset?offset=20&limit=5');
    assert.equal(server.requests.length, 5);
  });

  it('link: follows rel="next" of the Link header, and ends on the page without one', async () => {
    const records = await readRecords(source(modes.link()));
    assert.deepEqual(ids(records), range(1, 23));
    assert.deepEqual(
      server.requests.map((r) => r.url),
      ['/link?per_page=5', ...[2, 3, 4, 5].map((p) => `/link?per_page=5&page=${p}`)],
    );
    assert.deepEqual(records[7]!.meta.position, {
      partition: 'link:/link?per_page=5&page=2',
      offset: 1_000_002,
    });
  });

  it('a single page (no pagination) whose body is the array', async () => {
    server.handler = () => ({ body: [{ a: 1 }, { a: 2 }] });
    const records = await readRecords(source({ url: `${server.origin}/all` }));
    assert.deepEqual(
      records.map((r) => [r.value, r.meta.position]),
      [
        [{ a: 1 }, { partition: 'page', offset: 0 }],
        [{ a: 2 }, { partition: 'page', offset: 1 }],
      ],
    );
    assert.equal(server.requests.length, 1);
  });

  for (const mode of ['cursor', 'offset', 'link'] as const) {
    it(`${mode}: resumes from a checkpoint at the page of the last committed record, skipping what was committed`, async () => {
      const all = await readRecords(source(modes[mode]()));
      // Committed up to item 12: the second record of the third page.
      const resume = positionsAfter(all.slice(0, 12));
      server.requests.length = 0;
      const rest = await readRecords(source(modes[mode](), { resume }));
      assert.deepEqual(ids(rest), range(13, 23));
      const first = server.requests[0]!.url;
      const expected = {
        cursor: '/cursor?limit=5&cursor=c10',
        offset: '/offset?offset=12&limit=5',
        link: '/link?per_page=5&page=3',
      };
      assert.equal(first, expected[mode], 'the first request is the page of the last committed record');
      assert.equal(server.requests.length, 3);
      // Positions continue those of the first run.
      assert.deepEqual(
        rest.map((r) => r.meta.position),
        all.slice(12).map((r) => r.meta.position),
      );
    });
  }

  it('resumes after the last record of the listing by asking for its page again and reading nothing', async () => {
    const all = await readRecords(source(modes.cursor()));
    server.requests.length = 0;
    const rest = await readRecords(source(modes.cursor(), { resume: positionsAfter(all) }));
    assert.deepEqual(rest, []);
    assert.deepEqual(
      server.requests.map((r) => r.url),
      ['/cursor?limit=5&cursor=c20'],
    );
  });

  for (const mode of ['cursor', 'offset', 'link'] as const) {
    it(`${mode}: with poll_interval, keeps polling and reads new items once`, async () => {
      const controller = new AbortController();
      const s = source({ ...modes[mode](), poll_interval: '20ms' }, { signal: controller.signal });
      const seen: SluiceRecord[] = [];
      for await (const batch of s.read()) {
        seen.push(...batch.records);
        if (seen.length === 23) items = listing(31); // new items arrive after the end
        if (seen.length >= 31) controller.abort();
      }
      await s.close();
      assert.deepEqual(ids(seen), range(1, 31));
      assert.ok(s.pagesRead > 6, 'it polled');
    });
  }

  it('honours Retry-After on a 429', async () => {
    server.handler = (req, hit) =>
      req.query.get('cursor') === 'c5' && hit === 2
        ? { status: 429, headers: { 'retry-after': '1' }, body: { error: 'slow down' } }
        : route(req);
    const records = await readRecords(source({ ...modes.cursor(), retry: { initial: '1ms' } }));
    assert.deepEqual(ids(records), range(1, 23));
    const page2 = server.requests.filter((r) => r.query.get('cursor') === 'c5');
    assert.equal(page2.length, 2);
    const waited = page2[1]!.at - page2[0]!.at;
    assert.ok(waited >= 990, `the retry came ${waited.toFixed(0)} ms after the 429, not 1 s`);
  });

  it('retries a 503 and fails with a retriable SLUICE_SOURCE_IO naming the page when it does not pass', async () => {
    server.handler = (req) =>
      req.query.get('cursor') === 'c10' ? { status: 503, body: 'busy' } : route(req);
    const s = source({ ...modes.cursor(), retry: { ...fast, attempts: 2 } });
    const got: SluiceRecord[] = [];
    await assert.rejects(
      (async () => {
        for await (const b of s.read()) got.push(...b.records);
      })(),
      (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_SOURCE_IO');
        assert.equal(err.retriable, true);
        assert.match(
          err.message,
          /^http source: page 3: GET http:\/\/127\.0\.0\.1:\d+\/cursor\?limit=5&cursor=c10 answered 503 Service Unavailable after 2 attempts$/,
        );
        assert.equal(err.details?.status, 503);
        assert.equal(err.details?.page, 3);
        return true;
      },
    );
    await s.close();
    assert.deepEqual(ids(got), range(1, 10));
  });

  it('fails with a clear, non-retriable error on a page that is not JSON', async () => {
    server.handler = (req) =>
      req.query.get('offset') === '5'
        ? { headers: { 'content-type': 'application/json' }, body: '{"results": [' }
        : route(req);
    const s = source(modes.offset());
    await assert.rejects(readAll(s), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.equal(err.retriable, false);
      assert.match(
        err.message,
        /^http source: the page at offset 5: GET http:\/\/127\.0\.0\.1:\d+\/offset\?offset=5&limit=5 answered 200 with a body that is not valid JSON: /,
      );
      assert.equal(err.details?.code, 'SLUICE_HTTP_RESPONSE');
      return true;
    });
    await s.close();
  });

  it('decodes compressed pages (gzip, br, zstd), asking for them with Accept-Encoding', async () => {
    const encoders = [zlib.gzipSync, zlib.brotliCompressSync, zlib.zstdCompressSync];
    const names = ['gzip', 'br', 'zstd'];
    server.handler = (req) => {
      const page = route(req);
      const k = Number(req.query.get('offset')) / PAGE;
      return {
        headers: { 'content-type': 'application/json', 'content-encoding': names[k % 3]! },
        body: encoders[k % 3]!(Buffer.from(JSON.stringify(page.body))),
      };
    };
    const records = await readRecords(source(modes.offset()));
    assert.deepEqual(ids(records), range(1, 23));
    assert.equal(server.requests[0]!.headers['accept-encoding'], 'gzip, deflate, br, zstd');
  });

  it('follows a redirect on the same origin, and refuses one to another origin', async () => {
    server.handler = (req) =>
      req.path === '/old' ? { status: 301, headers: { location: `/offset${req.url.slice(4)}` } } : route(req);
    const records = await readRecords(source({ ...modes.offset(), url: `${server.origin}/old` }));
    assert.deepEqual(ids(records), range(1, 23));

    server.handler = () => ({ status: 302, headers: { location: 'http://localhost:1/elsewhere' } });
    const s = source(modes.offset());
    await assert.rejects(readAll(s), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.equal(err.details?.code, 'SLUICE_HTTP_REDIRECT');
      assert.match(err.message, /redirected to another origin \(http:\/\/localhost:1\/elsewhere\)/);
      return true;
    });
    await s.close();
  });

  it('fails on a page larger than response.max_bytes, naming the limit', async () => {
    server.handler = (req) =>
      req.query.get('offset') === '5'
        ? {
            headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
            body: zlib.gzipSync(Buffer.from(JSON.stringify({ results: items, pad: ' '.repeat(5000) }))),
          }
        : route(req);
    const s = source({ ...modes.offset(), response: { max_bytes: 4096 } });
    const got: SluiceRecord[] = [];
    await assert.rejects(
      (async () => {
        for await (const batch of s.read()) got.push(...batch.records);
      })(),
      (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_SOURCE_IO');
        assert.equal(err.details?.code, 'SLUICE_HTTP_BODY_TOO_LARGE');
        assert.match(err.message, /the page at offset 5: .* more than response\.max_bytes \(4096 bytes/);
        return true;
      },
    );
    await s.close();
    assert.deepEqual(ids(got), range(1, 5));
  });

  it('fails naming the fields found when `records` points nowhere', async () => {
    const s = source({ ...modes.cursor(), records: 'items' });
    await assert.rejects(readAll(s), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.match(
        err.message,
        /^http source: page 1 \(GET http:\/\/127\.0\.0\.1:\d+\/cursor\?limit=5\): the body has no field "items" \(records\); its fields are data, meta$/,
      );
      return true;
    });
    await s.close();
  });

  it('sends an item that is not an object to the errors sink, with its position', async () => {
    server.handler = () => ({ body: { data: [{ id: 1 }, 'oops', { id: 3 }] } });
    const batches: SourceBatch[] = await readAll(
      source({ url: `${server.origin}/x`, records: 'data' }, { batchSize: 10 }),
    );
    assert.deepEqual(ids(batches.flatMap((b) => b.records)), [1, 3]);
    const rejected = batches.flatMap((b) => b.rejected ?? []);
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.error.code, 'SLUICE_DECODE');
    assert.equal(rejected[0]!.raw, '"oops"');
    assert.deepEqual(rejected[0]!.position, { partition: 'page', offset: 1 });
  });

  it('refuses a next link to another origin', async () => {
    server.handler = () => ({
      body: [{ id: 1 }],
      headers: { link: '<http://elsewhere.example/x?page=2>; rel="next"' },
    });
    const s = source({
      url: `${server.origin}/x`,
      pagination: { link: {} },
      auth: { bearer: 'tok-SECRET-1' },
    });
    await assert.rejects(
      readAll(s),
      /Link header's next URL is on http:\/\/elsewhere\.example, not http:\/\/127\.0\.0\.1:\d+: the source sends its credentials to the origin of `url` only/,
    );
    await s.close();
  });

  it('keeps secret query parameters out of positions, and puts them back on resume', async () => {
    const KEY = 'key-77-SECRET';
    server.handler = (req) => (req.query.get('api_key') === KEY ? linkPage(req) : { status: 401 });
    const cfg = {
      ...modes.link(),
      query: { per_page: PAGE, api_key: KEY },
      auth: { bearer: 'tok-SECRET-2' },
    };
    const all = await readRecords(source(cfg));
    assert.deepEqual(ids(all), range(1, 23));
    for (const r of all) assert.ok(!r.meta.position!.partition.includes(KEY), r.meta.position!.partition);
    assert.equal(all[7]!.meta.position!.partition, 'link:/link?per_page=5&page=2');
    const rest = await readRecords(source(cfg, { resume: positionsAfter(all.slice(0, 12)) }));
    assert.deepEqual(ids(rest), range(13, 23));
  });

  it('sends the configured headers and credentials', async () => {
    server.handler = () => ({ body: [] });
    await readRecords(
      source({
        url: `${server.origin}/x?a=1`,
        headers: { Accept: 'application/vnd.api+json', 'X-Tenant': 'acme' },
        auth: { header: { name: 'X-Api-Key', value: 'k-SECRET' } },
        query: { b: 'two words' },
      }),
    );
    const req = server.requests[0]!;
    assert.equal(req.url, '/x?a=1&b=two%20words');
    assert.equal(req.headers.accept, 'application/vnd.api+json');
    assert.equal(req.headers['x-tenant'], 'acme');
    assert.equal(req.headers['x-api-key'], 'k-SECRET');
  });

  it('refuses configs that cannot work, naming the field', () => {
    const url = 'http://h/x';
    assert.deepEqual(configIssues(httpSourceConfig, { url: 'http://h/{{ id }}' }), [
      'url: a source has no record to fill {{ }} placeholders from: write the value itself',
    ]);
    assert.deepEqual(configIssues(httpSourceConfig, { url, poll_interval: '10s' }), [
      'poll_interval: polling needs pagination (cursor, offset or link): without it there is no way to ask for what is new',
    ]);
    assert.deepEqual(configIssues(httpSourceConfig, { url, pagination: { link: {}, offset: {} } }), [
      'pagination.link: give one of cursor, offset and link, not offset and link',
    ]);
    assert.deepEqual(configIssues(httpSourceConfig, { url, records: 'a..b' }), [
      'records: expected a field path: field names separated by dots, such as data.items or meta.next',
    ]);
    assert.deepEqual(configIssues(httpSourceConfig, { url: 'ftp://h/x' }), [
      'url: expected an absolute URL starting with http:// or https://',
    ]);
    assert.equal(httpSource.bounded(httpSourceConfig.parse({ url })), true);
    assert.equal(
      httpSource.bounded(httpSourceConfig.parse({ url, pagination: { link: {} }, poll_interval: '5s' })),
      false,
    );
  });
});

sourceConformance('http (cursor pagination)', {
  create: (ctx) => {
    server.handler = route;
    items = listing(23);
    return httpSource.create(httpSourceConfig.parse(modes.cursor()), ctx);
  },
  expectedRecords: 23,
});
