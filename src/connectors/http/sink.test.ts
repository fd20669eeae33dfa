/** The `http` sink against a real local HTTP server. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import zlib from 'node:zlib';
import type { SluiceError } from '../../sdk/errors.ts';
import { configIssues, sinkConformance, testContext } from '../../sdk/testing.ts';
import type { RecordValue, SluiceRecord } from '../../sdk/types.ts';
import { type HttpSink, httpSink, httpSinkConfig } from './index.ts';
import { closedPort, type PageServer, startPageServer } from './test-server.ts';

let server: PageServer;
before(async () => {
  server = await startPageServer();
});
after(() => server.close());

const TOKEN = 'sink-token-83f1-SECRET';

function records(values: RecordValue[]): SluiceRecord[] {
  return values.map((value, i) => ({ value, meta: { position: { partition: 'p', offset: i } } }));
}

function sink(config: Record<string, unknown>, batchSize = 100): HttpSink {
  return httpSink.create(httpSinkConfig.parse(config), testContext({ batchSize })) as HttpSink;
}

const fast = { initial: '1ms', max: '5ms' };

describe('http sink', () => {
  beforeEach(() => server.reset());

  it('POSTs each record as JSON to its templated URL, with headers, auth and an idempotency key', async () => {
    const s = sink({
      url: `${server.origin}/things/{{ id }}?src=sluice`,
      headers: { 'X-Kind': '{{ kind }}', 'X-Fixed': 'yes' },
      idempotency_key: '{{ id }}',
      auth: { bearer: TOKEN },
    });
    const values = [
      { id: 1, kind: 'a', amount: 1.5, tags: ['x'] },
      { id: 'a/b c', kind: 'b', amount: null, nested: { deep: true } },
      { id: 3, kind: 'c', big: 12345678901234567890n },
    ];
    const result = await s.write(records(values));
    await s.close();
    assert.equal(result, undefined);
    const seen = [...server.requests].sort((a, b) => a.url.localeCompare(b.url));
    assert.deepEqual(
      seen.map((r) => [r.method, r.url]),
      [
        ['POST', '/things/1?src=sluice'],
        ['POST', '/things/3?src=sluice'],
        ['POST', '/things/a%2Fb%20c?src=sluice'],
      ],
    );
    const byKey = new Map(seen.map((r) => [r.headers['idempotency-key'], r]));
    assert.deepEqual([...byKey.keys()].sort(), ['1', '3', 'a/b c']);
    assert.equal(byKey.get('1')!.body, '{"id":1,"kind":"a","amount":1.5,"tags":["x"]}');
    assert.equal(byKey.get('3')!.body, '{"id":3,"kind":"c","big":12345678901234567890}', 'bigint exact');
    assert.deepEqual(JSON.parse(byKey.get('a/b c')!.body), values[1]);
    for (const r of seen) {
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(r.headers['x-fixed'], 'yes');
    }
    assert.equal(byKey.get('a/b c')!.headers['x-kind'], 'b');
  });

  it('sends batches as JSON arrays of templated items, PUT, with a hashed idempotency key per batch', async () => {
    const s = sink({
      url: `${server.origin}/bulk`,
      method: 'PUT',
      batch: { max_records: 4 },
      body: { ref: '{{ id }}', label: 'item {{ id }}' },
      idempotency_key: 'k-{{ id }}',
      concurrency: 2,
    });
    const values = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, ignored: 'x' }));
    assert.equal(await s.write(records(values)), undefined);
    await s.close();
    assert.equal(server.requests.length, 3);
    const bodies = server.requests
      .map((r) => {
        assert.equal(r.method, 'PUT');
        assert.equal(r.url, '/bulk');
        const items = JSON.parse(r.body) as { ref: number; label: string }[];
        const key = createHash('sha256')
          .update(items.map((it) => `k-${it.ref}`).join('\n'))
          .digest('hex');
        assert.equal(r.headers['idempotency-key'], key);
        return items;
      })
      .sort((a, b) => a[0]!.ref - b[0]!.ref);
    assert.deepEqual(
      bodies.map((items) => items.map((it) => it.ref)),
      [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9, 10],
      ],
    );
    assert.deepEqual(bodies[2], [
      { ref: 9, label: 'item 9' },
      { ref: 10, label: 'item 10' },
    ]);
  });

  it('batches whole records by default, or the field given in json', async () => {
    const s = sink({ url: `${server.origin}/bulk`, batch: { max_records: 100 } });
    const values = [{ id: 1 }, { id: 2, at: new Date('2026-01-02T03:04:05.000Z') }];
    await s.write(records(values));
    await s.close();
    assert.equal(server.requests[0]!.body, '[{"id":1},{"id":2,"at":"2026-01-02T03:04:05.000Z"}]');
    server.reset();
    const j = sink({ url: `${server.origin}/bulk`, batch: { max_records: 100 }, json: 'doc' });
    await j.write(records([{ doc: { a: 1 } }, { doc: [1, 2] }]));
    await j.close();
    assert.equal(server.requests[0]!.body, '[{"a":1},[1,2]]');
  });

  it('rejects records refused with a 4xx (status, attempts, redacted body excerpt) and delivers the rest', async () => {
    server.handler = (req) => {
      const id = Number(req.path.split('/')[2]);
      if (id % 5 === 0)
        return { status: 422, body: { error: `id ${id} is invalid`, auth: req.headers.authorization } };
      return { status: 201 };
    };
    const s = sink({ url: `${server.origin}/things/{{ id }}`, auth: { bearer: TOKEN }, retry: fast });
    const values = Array.from({ length: 12 }, (_, i) => ({ id: i + 1 }));
    const result = await s.write(records(values));
    await s.close();
    const rejected = result?.rejected ?? [];
    assert.deepEqual(
      rejected.map((r) => r.record?.value.id),
      [5, 10],
    );
    const first = rejected[0]!;
    assert.equal(first.error.code, 'SLUICE_HTTP_STATUS');
    assert.equal(first.attempts, 1, '422 is not retried');
    assert.equal(first.error.details?.status, 422);
    assert.match(
      first.error.message,
      /^POST http:\/\/127\.0\.0\.1:\d+\/things\/5 answered 422 Unprocessable Entity after 1 attempt$/,
    );
    assert.equal(first.error.details?.body, '{"error":"id 5 is invalid","auth":"Bearer [REDACTED]"}');
    assert.equal(server.requests.length, 12);
  });

  it('follows a 307 with the same POST and body, and decodes a compressed error body for the excerpt', async () => {
    server.handler = (req) => {
      if (req.path.startsWith('/old/'))
        return { status: 307, headers: { location: `/things/${req.path.slice(5)}` } };
      if (req.path === '/things/2')
        return {
          status: 422,
          headers: { 'content-type': 'application/json', 'content-encoding': 'br' },
          body: zlib.brotliCompressSync(Buffer.from(JSON.stringify({ error: 'id 2 is invalid' }))),
        };
      return { status: 201 };
    };
    const s = sink({ url: `${server.origin}/old/{{ id }}`, retry: fast });
    const result = await s.write(records([{ id: 1 }, { id: 2 }]));
    await s.close();
    const things = server.requests.filter((r) => r.path.startsWith('/things/'));
    assert.deepEqual(things.map((r) => [r.method, r.path, r.body]).sort(), [
      ['POST', '/things/1', '{"id":1}'],
      ['POST', '/things/2', '{"id":2}'],
    ]);
    assert.equal(things[0]!.headers['accept-encoding'], 'gzip, deflate, br, zstd');
    const rejected = result?.rejected ?? [];
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.error.details?.body, '{"error":"id 2 is invalid"}');
  });

  it('rejects every record of a refused batch, saying so', async () => {
    server.handler = (req) =>
      (JSON.parse(req.body) as { id: number }[]).some((r) => r.id === 6)
        ? { status: 400, body: 'bad batch' }
        : { status: 200 };
    const s = sink({ url: `${server.origin}/bulk`, batch: { max_records: 5 } });
    const result = await s.write(records(Array.from({ length: 12 }, (_, i) => ({ id: i + 1 }))));
    await s.close();
    assert.deepEqual(
      result?.rejected?.map((r) => r.record?.value.id),
      [6, 7, 8, 9, 10],
    );
    const error = result!.rejected![0]!.error;
    assert.equal(error.details?.status, 400);
    assert.equal(error.details?.batch_records, 5);
    assert.equal(error.details?.body, 'bad batch');
    assert.match(error.message, /answered 400 Bad Request after 1 attempt \(a batch of 5 records\)$/);
  });

  it('retries 5xx (and honours the retry list) until the request succeeds', async () => {
    server.handler = (_req, hit) =>
      hit <= 2 ? { status: 503, headers: { 'retry-after': '0' } } : { status: 200 };
    const s = sink({ url: `${server.origin}/once/{{ id }}`, retry: { ...fast, attempts: 3 } });
    const result = await s.write(records([{ id: 1 }, { id: 2 }]));
    await s.close();
    assert.equal(result, undefined);
    assert.equal(server.hits('/once/1'), 3);
    assert.equal(server.hits('/once/2'), 3);
  });

  it('throws a retriable SLUICE_SINK_IO when retries run out, and a retry of the batch skips what was delivered', async () => {
    let down = true;
    server.handler = (req) => (down && req.path === '/x/2' ? { status: 503 } : { status: 200 });
    const s = sink({ url: `${server.origin}/x/{{ id }}`, retry: { ...fast, attempts: 2 } });
    const batch = records([{ id: 1 }, { id: 2 }, { id: 3 }]);
    await assert.rejects(s.write(batch), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SINK_IO');
      assert.equal(err.retriable, true);
      assert.match(
        err.message,
        /^http sink: 1 of 3 request\(s\) failed after their retries, e\.g\. POST .*\/x\/2 answered 503/,
      );
      assert.equal(err.details?.status, 503);
      return true;
    });
    assert.equal(server.requests.length, 4);
    down = false;
    server.requests.length = 0;
    assert.equal(await s.write(batch), undefined, 'the engine retries the same batch');
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ['/x/2'],
      'records 1 and 3 were delivered already',
    );
    await s.close();
  });

  it('throws a retriable SLUICE_SINK_IO when the server is down', async () => {
    const port = await closedPort();
    const s = sink({ url: `http://127.0.0.1:${port}/in`, retry: fast, auth: { bearer: TOKEN } });
    await assert.rejects(s.write(records([{ id: 1 }])), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SINK_IO');
      assert.equal(err.retriable, true);
      assert.equal(err.details?.code, 'SLUICE_HTTP_NETWORK');
      assert.match(err.message, /failed after 3 attempts: .*ECONNREFUSED/);
      return true;
    });
    await s.close();
  });

  it('rejects a record whose template cannot be rendered, sending nothing for it', async () => {
    const s = sink({ url: `${server.origin}/things/{{ id }}` });
    const result = await s.write(records([{ id: 1 }, { name: 'no id' }]));
    await s.close();
    assert.equal(result?.rejected?.length, 1);
    assert.equal(result!.rejected![0]!.error.code, 'SLUICE_HTTP_TEMPLATE');
    assert.equal(result!.rejected![0]!.attempts, 0);
    assert.match(
      result!.rejected![0]!.error.message,
      /field "id" is missing from the record \(record p @ 1\)/,
    );
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ['/things/1'],
    );
  });

  it('keeps at most `concurrency` requests in flight, and commit() waits for a write in flight', async () => {
    let inFlight = 0;
    let most = 0;
    server.handler = async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return { status: 200 };
    };
    const s = sink({ url: `${server.origin}/c/{{ id }}`, concurrency: 3 });
    const writing = s.write(records(Array.from({ length: 20 }, (_, i) => ({ id: i }))));
    await s.commit();
    assert.equal(server.requests.length, 20, 'commit() returned after every request was answered');
    await writing;
    await s.close();
    assert.ok(most <= 3 && most >= 2, `in flight at most 3 (${most})`);
  });

  it('uses OAuth2 client credentials and a rate limit, as the step does', async () => {
    server.handler = (req) =>
      req.path === '/token'
        ? { body: { access_token: 'at-SECRET-1', token_type: 'Bearer', expires_in: 3600 } }
        : req.headers.authorization === 'Bearer at-SECRET-1'
          ? { status: 200 }
          : { status: 401 };
    const s = sink({
      url: `${server.origin}/o/{{ id }}`,
      auth: { oauth2: { token_url: `${server.origin}/token`, client_id: 'c', client_secret: 'cs-SECRET' } },
      rate_limit: { rate: '50/s', burst: 1 },
    });
    const started = performance.now();
    assert.equal(await s.write(records([{ id: 1 }, { id: 2 }, { id: 3 }])), undefined);
    const took = performance.now() - started;
    await s.close();
    assert.equal(server.hits('/token'), 1, 'one token for every call');
    assert.ok(took >= 35, `3 requests at 50/s with a burst of 1 take 40 ms or so (${took.toFixed(0)} ms)`);
  });

  it('refuses configs that cannot work, naming the field', () => {
    const url = 'http://h/x';
    assert.deepEqual(configIssues(httpSinkConfig, { url: 'http://h/{{ id }}', batch: {} }), [
      'url: with batch, one request carries many records: the url cannot hold placeholders (send the fields in the body)',
    ]);
    assert.deepEqual(configIssues(httpSinkConfig, { url, batch: {}, headers: { 'X-A': '{{ a }}' } }), [
      'headers.X-A: with batch, one request carries many records: headers are fixed',
    ]);
    assert.deepEqual(configIssues(httpSinkConfig, { url, body: { a: 1 }, json: 'f' }), [
      'json: give one of body and json, not both',
    ]);
    assert.deepEqual(
      configIssues(httpSinkConfig, { url, idempotency_key: 'x', headers: { 'Idempotency-Key': 'y' } }),
      ['headers.Idempotency-Key: Idempotency-Key is set by idempotency_key: give it in one place only'],
    );
    assert.deepEqual(
      configIssues(httpSinkConfig, { url, auth: { bearer: 'a', basic: { username: 'u', password: 'p' } } }),
      ['auth.basic: give one of bearer, basic, header and oauth2, not bearer and basic'],
    );
    assert.deepEqual(configIssues(httpSinkConfig, { url, method: 'GET' }).length, 1);
    assert.deepEqual(configIssues(httpSinkConfig, { url: 'http://{{ host }}/x' }).length, 1);
    // The step's own schemas: same defaults.
    const cfg = httpSinkConfig.parse({ url });
    assert.deepEqual(cfg.timeout, { connect: '10s', headers: '30s', total: '60s' });
    assert.deepEqual(cfg.retry.on, [429, 502, 503, 504, 'network', 'timeout']);
  });
});

// ---------------------------------------------------------------- conformance

/** What the server was sent, one value per record (batches unpacked). */
const received: RecordValue[] = [];
function receiving(): void {
  server.handler = (req) => {
    const body = JSON.parse(req.body) as RecordValue | RecordValue[];
    received.push(...(Array.isArray(body) ? body : [body]));
    return { status: 204 };
  };
}

for (const [name, extra] of [
  ['one request per record', {}],
  ['batches of 30', { batch: { max_records: 30 } }],
] as const) {
  sinkConformance(`http (${name})`, {
    create: (ctx) =>
      httpSink.create(
        httpSinkConfig.parse({ url: `${server.origin}/conf`, idempotency_key: '{{ id }}', ...extra }),
        ctx,
      ),
    reset: () => {
      received.length = 0;
      receiving();
    },
    readBack: async () => [...received],
    // Requests the server answered cannot be taken back.
    atomic: false,
    // No id for the idempotency key: the record is refused before anything is sent.
    unencodable: { name: 'has no id', amount: 1, active: true },
  });
}
