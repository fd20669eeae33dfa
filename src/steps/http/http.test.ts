import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { EXCERPT_BYTES, parseRetryAfter, REDACTED } from '../../http/client.ts';
import { compileUrl } from '../../http/template.ts';
import { closedPort } from '../../http/test-util.ts';
import { defaultRegistry } from '../../registry.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { configIssues, testContext } from '../../sdk/testing.ts';
import type { RecordValue, Rejection, SluiceRecord, StepInstance, StepResult } from '../../sdk/types.ts';
import { validatePipeline } from '../../spec/validate.ts';
import { createHttpStep, httpStep } from './index.ts';
import { startTestServer, type TestServer } from './test-server.ts';

let server: TestServer;
const open: StepInstance[] = [];

before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.close();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close?.()));
  server.reset();
});

function parseConfig(input: unknown) {
  return httpStep.config.safeParse(input);
}

function step(input: Record<string, unknown>, ctx: Parameters<typeof testContext>[0] = {}): StepInstance {
  const cfg = httpStep.config.parse(input);
  const s = createHttpStep(cfg, testContext({ batchSize: 10_000, ...ctx }));
  open.push(s);
  return s;
}

const rec = (value: RecordValue, offset = 0): SluiceRecord => ({
  value,
  meta: { position: { partition: 'p', offset } },
});

const values = (result: StepResult) => result.records.map((r) => r.value);

const OPTIONS = ['ms', 'times', 'code', 'retry_after', 'date', 'every', 'chunks'] as const;
type Options = Partial<Record<(typeof OPTIONS)[number], number>>;

/** A request template that reaches every test-server route: options missing from a record are null, so left out. */
function routed(): { url: string; query: Record<string, string> } {
  return {
    url: `${server.origin}/{{ route }}/{{ key }}`,
    query: Object.fromEntries(OPTIONS.map((o) => [o, `{{ ${o} }}`])),
  };
}

/** A record aimed at a test-server route, e.g. target('flaky', 'a', { times: 2 }) for /flaky/a?times=2. */
function target(route: string, key: string | number, options: Options = {}): RecordValue {
  return { route, key, ...Object.fromEntries(OPTIONS.map((o) => [o, options[o] ?? null])) };
}

function only(result: StepResult): Rejection {
  assert.equal(result.rejected?.length, 1, JSON.stringify(result.rejected?.map((r) => r.error.message)));
  return result.rejected![0]!;
}

function issues(input: unknown): { path: string; message: string }[] {
  const result = parseConfig(input);
  assert.equal(result.success, false, 'expected the config to be refused');
  return result.error!.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

describe('http: config', () => {
  it('parses every example with the yaml package and the schema', () => {
    for (const example of httpStep.examples) {
      const result = parseConfig(parse(example.yaml));
      assert.equal(result.success, true, `${example.title}: ${JSON.stringify(result.error?.issues)}`);
    }
  });

  it('describes every field, nested ones too, and converts to JSON Schema', () => {
    const schema = z.toJSONSchema(httpStep.config, { io: 'input' }) as {
      properties: Record<
        string,
        { description?: string; properties?: Record<string, { description?: string }> }
      >;
    };
    assert.deepEqual(Object.keys(schema.properties).sort(), [
      'auth',
      'batch',
      'breaker',
      'cache',
      'concurrency',
      'on_status',
      'ordered',
      'rate_limit',
      'redirects',
      'request',
      'response',
      'retry',
      'timeout',
    ]);
    for (const [k, p] of Object.entries(schema.properties)) {
      assert.ok(p.description, k);
      for (const [n, inner] of Object.entries(p.properties ?? {})) assert.ok(inner.description, `${k}.${n}`);
    }
  });

  it('fills the documented defaults', () => {
    const cfg = httpStep.config.parse({ request: { url: 'http://h/x' } });
    assert.equal(cfg.request.method, 'GET');
    assert.equal(cfg.concurrency, 64);
    assert.equal(cfg.ordered, true);
    assert.deepEqual(cfg.timeout, { connect: '10s', headers: '30s', total: '60s' });
    assert.deepEqual(cfg.retry, {
      attempts: 3,
      backoff: 'exponential',
      initial: '100ms',
      max: '10s',
      on: [429, 502, 503, 504, 'network', 'timeout'],
    });
    assert.deepEqual(cfg.response, {
      into: 'response',
      as: 'auto',
      include: ['body'],
      max_bytes: '10MiB',
      decompress: true,
    });
    assert.deepEqual(cfg.redirects, { max: 5, cross_origin: false });
    assert.deepEqual(cfg.on_status, {});
  });

  it('refuses a placeholder in the host, credentials in the url, and a relative url', () => {
    assert.deepEqual(issues({ request: { url: 'https://{{ host }}/x' } }), [
      {
        path: 'request.url',
        message:
          'the scheme, host and port of the url must be fixed: a placeholder there would let the data choose where requests and their credentials go',
      },
    ]);
    assert.match(issues({ request: { url: 'https://u:p@h/x' } })[0]!.message, /put credentials in `auth`/);
    assert.match(issues({ request: { url: '/v1/x' } })[0]!.message, /must be absolute/);
    assert.match(issues({ request: { url: 'http://h/a b/{{ id }}' } })[0]!.message, /percent-encode it/);
  });

  it('refuses broken placeholders where they stand', () => {
    assert.deepEqual(issues({ request: { url: 'http://h/{{ id', query: { q: '{{ a..b }}' } } }), [
      {
        path: 'request.url',
        message:
          'a placeholder is written {{ field }} or {{ field.path }}, with one field path and nothing else inside the braces',
      },
      {
        path: 'request.query.q',
        message:
          '"a..b" is not a field path: write field names separated by dots, such as customer.id or items.0.sku',
      },
    ]);
    assert.equal(
      issues({ request: { method: 'POST', url: 'http://h/', body: { a: '{{ x y }}' } } })[0]!.path,
      'request.body',
    );
  });

  it('refuses a body on GET, two bodies, drop on 5xx, unknown statuses and keys, and auth given twice', () => {
    assert.match(
      issues({ request: { url: 'http://h/', body: { a: 1 } } })[0]!.message,
      /a GET request carries no body/,
    );
    assert.deepEqual(issues({ request: { method: 'POST', url: 'http://h/', body: {}, json: 'x' } })[0], {
      path: 'request.json',
      message: 'give one of body, json and form, not body and json',
    });
    assert.match(
      issues({ request: { url: 'http://h/' }, on_status: { '5xx': 'drop' } })[0]!.message,
      /cannot be dropped/,
    );
    assert.match(
      issues({ request: { url: 'http://h/' }, on_status: { '503': 'drop' } })[0]!.message,
      /cannot be dropped/,
    );
    assert.equal(
      issues({ request: { url: 'http://h/' }, on_status: { '6xx': 'keep' } })[0]!.path,
      'on_status.6xx',
    );
    assert.equal(
      issues({ request: { url: 'http://h/' }, retries: 3 })[0]!.message,
      'Unrecognized key: "retries"',
    );
    assert.deepEqual(
      issues({ request: { url: 'http://h/', headers: { authorization: 'x' } }, auth: { bearer: 't' } })[0],
      {
        path: 'request.headers.authorization',
        message: 'authorization is set by auth: give it in one place only',
      },
    );
    assert.equal(issues({ request: { url: 'http://h/' }, concurrency: 8193 })[0]!.path, 'concurrency');
    assert.deepEqual(
      issues({
        request: { url: 'http://h/' },
        auth: { bearer: 't', basic: { username: 'u', password: 'p' } },
      }),
      [{ path: 'auth.basic', message: 'give one of bearer, basic, header and oauth2, not bearer and basic' }],
    );
    assert.deepEqual(issues({ request: { url: 'http://h/' }, auth: {} }), [
      { path: 'auth', message: 'give one of bearer, basic, header and oauth2' },
    ]);
    assert.equal(issues({ request: { url: 'http://h/' }, retry: { on: [200] } })[0]!.path, 'retry.on.0');
  });
});

describe('http: templates', () => {
  it('percent-encodes path segments and query values: /, space, ?, #, & and unicode stay one value', async () => {
    const s = step({
      request: {
        url: `${server.origin}/echo/{{ id }}/x?raw={{ id }}`,
        query: { q: '{{ id }}', n: 7, tags: '{{ tags }}', none: '{{ missing_ok }}' },
        headers: { 'X-Name': 'name {{ user.name }}' },
      },
    });
    const id = 'a/b c?d#é€&=+';
    const result = await s.process([
      rec({ id, tags: ['x', 'y z'], missing_ok: null, user: { name: 'Zoe Q' } }),
    ]);
    const enc = encodeURIComponent(id);
    assert.equal(enc, 'a%2Fb%20c%3Fd%23%C3%A9%E2%82%AC%26%3D%2B');
    assert.equal(
      server.requests[0]!.url,
      `/echo/${enc}/x?raw=${enc}&q=${enc}&n=7&tags=x&tags=y%20z`,
      'the null parameter is left out, the array repeated',
    );
    assert.equal(server.requests[0]!.headers['x-name'], 'name Zoe Q');
    const echoed = values(result)[0]!.response as { url: string };
    assert.equal(echoed.url, server.requests[0]!.url);
  });

  it('builds a JSON body that keeps field types, and a form body', async () => {
    const s = step({
      request: {
        method: 'POST',
        url: `${server.origin}/echo/json`,
        body: {
          id: '{{ id }}',
          amount: '{{ amount }}',
          note: 'order {{ id }}',
          nested: ['{{ customer }}', '{{ none }}', 3, true],
        },
      },
    });
    await s.process([
      rec({ id: 7, amount: 12.5, customer: { name: 'A', big: 12345678901234567890n }, none: null }),
    ]);
    const seen = server.requests[0]!;
    assert.equal(seen.headers['content-type'], 'application/json');
    assert.equal(
      seen.body,
      '{"id":7,"amount":12.5,"note":"order 7","nested":[{"name":"A","big":12345678901234567890},null,3,true]}',
    );

    const form = step({
      request: {
        method: 'POST',
        url: `${server.origin}/echo/form`,
        form: { who: '{{ name }}', kind: 'full' },
      },
    });
    await form.process([rec({ name: 'Jo & Zoë' })]);
    assert.equal(server.requests[1]!.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(server.requests[1]!.body, 'who=Jo+%26+Zo%C3%AB&kind=full');

    const whole = step({ request: { method: 'PUT', url: `${server.origin}/echo/doc`, json: 'doc' } });
    await whole.process([rec({ doc: { a: [1, 'b'] } })]);
    assert.equal(server.requests[2]!.body, '{"a":[1,"b"]}');
  });

  it('fails a record whose placeholder names a missing or null field, naming field and record, and sends nothing', async () => {
    const s = step({ request: { url: `${server.origin}/echo/{{ customer.id }}` } });
    const good = rec({ customer: { id: 1 } }, 1);
    const missing = rec({ customer: {} }, 2);
    const nulled = rec({ customer: { id: null } }, 3);
    const inherited = rec({ customer: 'text' }, 4);
    const result = await s.process([good, missing, nulled, inherited]);
    assert.deepEqual(values(result), [{ customer: { id: 1 }, response: values(result)[0]!.response }]);
    assert.equal(server.requests.length, 1, 'only the good record was sent');
    const [a, b, c] = result.rejected!;
    assert.equal(a!.record, missing);
    assert.equal(a!.error.code, 'SLUICE_HTTP_TEMPLATE');
    assert.equal(
      a!.error.message,
      'request url: field "customer.id" is missing from the record (record p @ 2)',
    );
    assert.deepEqual(a!.error.details, { place: 'url', field: 'customer.id' });
    assert.equal(a!.attempts, 0);
    assert.equal(b!.error.message, 'request url: field "customer.id" is null (record p @ 3)');
    assert.match(c!.error.message, /missing from the record \(record p @ 4\)/);
  });

  it('refuses a path segment of . or .., and a header value with a line break or non-ASCII text', async () => {
    const s = step({ request: { url: `${server.origin}/echo/{{ id }}/x`, headers: { 'X-Id': '{{ id }}' } } });
    const result = await s.process([
      rec({ id: '..' }),
      rec({ id: 'a\r\nX-Injected: 1' }),
      rec({ id: 'a..b' }),
      rec({ id: 'Zoë' }),
    ]);
    assert.equal(result.rejected?.length, 3);
    assert.match(result.rejected![0]!.error.message, /field "id" is "\.\.", which would change the path/);
    assert.match(result.rejected![1]!.error.message, /headers\.X-Id: field "id" holds a line break/);
    assert.match(result.rejected![2]!.error.message, /headers\.X-Id: field "id" holds text outside ASCII/);
    assert.equal(server.requests.length, 1);
    assert.equal(server.requests[0]!.url, '/echo/a..b/x');
  });
});

describe('http: responses', () => {
  it('writes the JSON body into a copy of the record; the input is not changed', async () => {
    const s = step({
      request: { url: `${server.origin}/score/{{ id }}` },
      response: { into: 'risk.result' },
    });
    const input = rec({ id: 42, risk: { source: 'x' } });
    const result = await s.process([input]);
    assert.deepEqual(values(result), [{ id: 42, risk: { source: 'x', result: { id: '42', score: 0.42 } } }]);
    assert.deepEqual(input.value, { id: 42, risk: { source: 'x' } });
    assert.equal(result.records[0]!.meta, input.meta);
  });

  it('includes status and headers on request, reads text, and maps an empty body to null', async () => {
    const s = step({ request: routed(), response: { into: 'r', include: ['status', 'headers', 'body'] } });
    const result = await s.process([
      rec(target('text', 'x')),
      rec(target('empty', 'x')),
      rec(target('score', 3)),
    ]);
    const [text, empty, json] = values(result).map(
      (v) => v.r as { status: number; headers: Record<string, string>; body: unknown },
    );
    assert.equal(text!.status, 200);
    assert.equal(text!.headers['content-type'], 'text/plain');
    assert.equal(text!.body, 'plain text', 'auto reads a text/plain body as text');
    assert.deepEqual([empty!.status, empty!.body], [204, null]);
    assert.deepEqual(json!.body, { id: '3', score: 0.03 });

    const asText = step({
      request: { url: `${server.origin}/score/{{ id }}` },
      response: { as: 'text', include: ['status'] },
    });
    assert.deepEqual(values(await asText.process([rec({ id: 1 })])), [{ id: 1, response: { status: 200 } }]);
  });

  it('fails a body that is not the JSON asked for with SLUICE_HTTP_RESPONSE, without retrying', async () => {
    const s = step({ request: routed(), response: { as: 'json' } });
    const result = await s.process([rec(target('badjson', 'x')), rec(target('score', 1))]);
    assert.equal(result.records.length, 1);
    const { error, attempts } = only(result);
    assert.equal(error.code, 'SLUICE_HTTP_RESPONSE');
    assert.match(
      error.message,
      /^GET http:\/\/127\.0\.0\.1:\d+\/badjson\/x answered 200 with a body that is not valid JSON: /,
    );
    assert.equal(error.details?.body, '{"broken": ');
    assert.equal(attempts, 1);
    assert.equal(server.hits('/badjson/x').length, 1);
  });

  it('on_status: keeps a 404 with its response, drops other 4xx, and errors with status, attempts and a 1 KiB excerpt', async () => {
    const s = step({
      request: { url: `${server.origin}/status/{{ code }}` },
      response: { into: 'r', include: ['status', 'body'] },
      on_status: { '4xx': 'drop', '404': 'keep', '418': 'error' },
    });
    const result = await s.process([rec({ code: 404 }), rec({ code: 410 }), rec({ code: 418 })]);
    assert.deepEqual(
      values(result).map((v) => (v.r as { status: number }).status),
      [404],
    );
    const { error, attempts } = only(result);
    assert.equal(error.code, 'SLUICE_HTTP_STATUS');
    assert.match(
      error.message,
      /^GET http:\/\/127\.0\.0\.1:\d+\/status\/418 answered 418 I'm a Teapot after 1 attempt$/,
    );
    assert.equal(error.retriable, false);
    assert.equal(attempts, 1);
    const details = error.details as {
      status: number;
      body: string;
      body_truncated: boolean;
      attempts: number;
    };
    assert.equal(details.status, 418);
    assert.equal(details.attempts, 1);
    assert.equal(details.body_truncated, true);
    const bytes = Buffer.byteLength(details.body);
    assert.ok(bytes <= EXCERPT_BYTES && bytes > EXCERPT_BYTES - 4, `excerpt of ${bytes} bytes`);
    assert.ok(!details.body.includes('\ufffd'), 'cut on a character boundary');
    assert.ok(details.body.startsWith('denied: '));
  });
});

describe('http: retries', () => {
  it('retries a 503 until it succeeds, within the backoff bounds', async () => {
    const s = step({
      request: { url: `${server.origin}/flaky/{{ key }}?times=2` },
      retry: { attempts: 3, initial: '40ms', max: '60ms' },
    });
    const result = await s.process([rec({ key: 'a' })]);
    assert.deepEqual(values(result), [{ key: 'a', response: { key: 'a', hit: 3 } }]);
    const hits = server.hits('/flaky/a');
    assert.equal(hits.length, 3);
    // Full jitter: retry n waits at most min(max, initial * 2^(n-1)): 40ms, then 60ms.
    assert.ok(hits[1]! - hits[0]! < 40 + 80, `first gap ${hits[1]! - hits[0]!}`);
    assert.ok(hits[2]! - hits[1]! < 60 + 80, `second gap ${hits[2]! - hits[1]!}`);
  });

  it('a record that fails for good goes to rejections with status, attempts and body; the rest of its batch succeeds', async () => {
    const s = step({
      request: routed(),
      retry: { attempts: 3, initial: '10ms', max: '20ms', on: ['5xx'] },
    });
    const batch = Array.from({ length: 20 }, (_, i) =>
      rec(i === 5 ? target('status', 500) : target('score', i), i),
    );
    const result = await s.process(batch);
    assert.equal(result.records.length, 19);
    assert.deepEqual(
      values(result).map((v) => v.key),
      batch.filter((_, i) => i !== 5).map((r) => r.value.key),
    );
    const rejection = only(result);
    assert.equal(rejection.record, batch[5]);
    assert.equal(rejection.attempts, 3);
    assert.equal(rejection.error.code, 'SLUICE_HTTP_STATUS');
    assert.equal(rejection.error.retriable, true);
    assert.match(rejection.error.message, /answered 500 Internal Server Error after 3 attempts$/);
    assert.equal(rejection.error.details?.status, 500);
    assert.match(String(rejection.error.details?.body), /^denied: /);
    assert.equal(server.hits('/status/500').length, 3);
  });

  it('honours Retry-After in seconds and as an HTTP date: the retry comes no sooner', async () => {
    // Literal query options choose the two flavours of the header.
    const seconds = step({
      request: { url: `${server.origin}/flaky/seconds?code=429&retry_after=1` },
      retry: { attempts: 2, initial: '10ms', max: '5s' },
    });
    const date = step({
      request: { url: `${server.origin}/flaky/date?code=503&date=1500` },
      retry: { attempts: 2, initial: '10ms', max: '5s' },
    });
    const started = performance.now();
    const [a, b] = await Promise.all([seconds.process([rec({})]), date.process([rec({})])]);
    assert.equal(a.records.length, 1);
    assert.equal(b.records.length, 1);
    const throttle = (p: string) => server.throttles.find((t) => t.path === p)!;
    const retryOf = (p: string) => server.requests.filter((r) => r.url.startsWith(p))[1]!;
    // Seconds: the retry arrives at least 1 s after the 429 was sent, and not much later.
    const waited = retryOf('/flaky/seconds').at - throttle('/flaky/seconds').sentAt;
    assert.equal(throttle('/flaky/seconds').retryAfter, '1');
    assert.ok(waited >= 1000 && waited < 1000 + 10 + 250, `Retry-After: 1 honoured (${waited}ms)`);
    // An HTTP date (whole seconds, 0.5 to 1.5 s ahead): the retry arrives no sooner than that instant.
    const until = Date.parse(throttle('/flaky/date').retryAfter);
    assert.ok(
      retryOf('/flaky/date').wall >= until,
      `arrived ${retryOf('/flaky/date').wall - until}ms after the date`,
    );
    assert.ok(performance.now() - started < 2500);
  });

  it('caps a long Retry-After at retry.max', async () => {
    const s = step({
      request: { url: `${server.origin}/flaky/capped?code=429&retry_after=30` },
      retry: { attempts: 2, initial: '10ms', max: '300ms' },
    });
    const result = await s.process([rec({})]);
    assert.equal(result.records.length, 1);
    const [first, second] = server.hits('/flaky/capped');
    assert.ok(second! - first! >= 300 && second! - first! < 300 + 200, `waited ${second! - first!}ms`);
  });

  it('parses Retry-After: delta seconds, HTTP dates, garbage', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:02 GMT', now), 2000);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
  });

  it('a retry waiting out its backoff holds no slot: other records are called meanwhile', async () => {
    const s = step({
      request: routed(),
      concurrency: 1,
      retry: { attempts: 2, initial: '10ms', max: '2s' },
    });
    const result = await s.process([
      rec(target('flaky', 'wait', { retry_after: 1 })),
      rec(target('delay', 'b', { ms: 20 })),
    ]);
    assert.equal(result.records.length, 2);
    const [first, retry] = server.hits('/flaky/wait');
    const other = server.hits('/delay/b')[0]!;
    assert.ok(other > first! && other < retry!, 'the other record was called during the wait');
    assert.ok(retry! - first! >= 1000);
  });

  it('retries a reset connection; a connection that is always reset or refused fails with SLUICE_HTTP_NETWORK', async () => {
    const s = step({
      request: routed(),
      retry: { attempts: 3, initial: '10ms', max: '20ms' },
    });
    const result = await s.process([
      rec(target('reset', 'once', { times: 1 }), 1),
      rec(target('reset', 'always'), 2),
    ]);
    assert.deepEqual(
      values(result).map((v) => v.response),
      [{ key: 'once', hit: 2 }],
    );
    const { error, attempts } = only(result);
    assert.equal(error.code, 'SLUICE_HTTP_NETWORK');
    assert.equal(attempts, 3);
    assert.equal(server.hits('/reset/always').length, 3);
    assert.match(error.message, /\/reset\/always failed after 3 attempts: /);
    assert.equal(error.retriable, true);

    const port = await closedPort();
    const refused = step({
      request: { url: `http://127.0.0.1:${port}/x` },
      retry: { attempts: 2, initial: '10ms', max: '20ms' },
    });
    const r = only(await refused.process([rec({})]));
    assert.equal(r.error.code, 'SLUICE_HTTP_NETWORK');
    assert.equal(r.error.details?.cause, 'ECONNREFUSED');
    assert.equal(r.attempts, 2);

    const noRetry = step({
      request: { url: `http://127.0.0.1:${port}/x` },
      retry: { attempts: 5, on: [503] },
    });
    assert.equal(only(await noRetry.process([rec({})])).attempts, 1, 'network is not in retry.on');
  });

  it('times out waiting for headers, and on a body that is too slow; a slow body in time is read whole', async () => {
    const s = step({
      request: routed(),
      timeout: { headers: '100ms', total: '300ms' },
      retry: { attempts: 2, initial: '10ms', max: '20ms', on: ['timeout'] },
    });
    const started = performance.now();
    const result = await s.process([
      rec(target('delay', 'late', { ms: 1000 })),
      rec(target('slow', 'trickle', { every: 50, chunks: 20 })),
      rec(target('slow', 'quick', { every: 5, chunks: 5 })),
    ]);
    const elapsed = performance.now() - started;
    assert.deepEqual(
      values(result).map((v) => (v.response as { key: string }).key),
      ['quick'],
    );
    const [headers, total] = result.rejected!;
    assert.equal(headers!.error.code, 'SLUICE_HTTP_TIMEOUT');
    assert.equal(headers!.error.details?.phase, 'headers');
    assert.match(headers!.error.message, /timed out after 2 attempts: no response headers within 100ms/);
    assert.equal(headers!.attempts, 2);
    assert.equal(total!.error.details?.phase, 'total');
    assert.equal(total!.error.details?.timeout_ms, 300);
    assert.equal(server.hits('/delay/late').length, 2, 'timeouts are retried when listed');
    // undici's own timers tick about once a second: two attempts would take 2 s and more.
    assert.ok(elapsed < 1500, `precise timeouts (${Math.round(elapsed)}ms)`);
  });
});

describe('http: concurrency and order', () => {
  it('never has more than `concurrency` calls in flight, and uses all of them', async () => {
    const s = step({ request: { url: `${server.origin}/delay/{{ id }}?ms=10` }, concurrency: 8 });
    const batch = Array.from({ length: 200 }, (_, i) => rec({ id: i }, i));
    const result = await s.process(batch);
    assert.equal(result.records.length, 200);
    assert.equal(server.maxInFlight, 8);
    // Over several batches too, and with retries in the mix.
    server.reset();
    const mixed = step({
      request: routed(),
      concurrency: 5,
      retry: { attempts: 3, initial: '5ms', max: '10ms', on: ['5xx', 'network'] },
    });
    for (let b = 0; b < 3; b++) {
      const targets = Array.from({ length: 30 }, (_, i) =>
        i % 7 === 0
          ? target('reset', `b${b}-${i}`, { times: 1 })
          : i % 5 === 0
            ? target('flaky', `b${b}-${i}`, { times: 1 })
            : target('delay', `b${b}-${i}`, { ms: 5 }),
      );
      const r = await mixed.process(targets.map((t, i) => rec(t, b * 100 + i)));
      assert.equal(r.records.length, 30);
    }
    assert.equal(server.maxInFlight, 5);
  });

  it('ordered: output keeps input order although later calls finish first', async () => {
    const s = step({ request: { url: `${server.origin}/delay/{{ id }}`, query: { ms: '{{ ms }}' } } });
    const batch = [0, 1, 2, 3, 4].map((i) => rec({ id: i, ms: 200 - i * 40 }, i));
    const result = await s.process(batch);
    assert.deepEqual(
      server.finished.map((p) => p.split('/').pop()),
      ['4', '3', '2', '1', '0'],
      'the server answered the last first',
    );
    assert.deepEqual(
      values(result).map((v) => v.id),
      [0, 1, 2, 3, 4],
    );
  });

  it('unordered: records leave the batch as their calls complete', async () => {
    const s = step({
      request: { url: `${server.origin}/delay/{{ id }}`, query: { ms: '{{ ms }}' } },
      ordered: false,
    });
    const batch = [0, 1, 2, 3, 4].map((i) => rec({ id: i, ms: 200 - i * 40 }, i));
    const result = await s.process(batch);
    assert.deepEqual(
      values(result).map((v) => v.id),
      [4, 3, 2, 1, 0],
    );
  });

  it('asks the engine for enough batches in flight to keep concurrency busy, in its order mode', () => {
    const small = step({ request: { url: `${server.origin}/x` }, concurrency: 512 }, { batchSize: 100 });
    assert.deepEqual(small.inFlight, { batches: 12, ordered: true });
    const large = step(
      { request: { url: `${server.origin}/x` }, concurrency: 64, ordered: false },
      { batchSize: 1000 },
    );
    assert.deepEqual(large.inFlight, { batches: 2, ordered: false });
  });

  it('stops at once when the run is stopped hard, in flight and while waiting to retry', async () => {
    const controller = new AbortController();
    const s = step(
      { request: routed(), retry: { attempts: 5, initial: '10s', max: '10s' } },
      { signal: controller.signal },
    );
    const started = performance.now();
    const pending = Promise.resolve(
      s.process([rec(target('delay', 'a', { ms: 5000 })), rec(target('status', 503))]),
    );
    setTimeout(() => controller.abort(new SluiceError('SLUICE_INTERRUPTED', 'stopped')), 100);
    await assert.rejects(
      pending,
      (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_INTERRUPTED',
    );
    // A bound for a loaded machine, still well before the 5 s answer or the 10 s retry backoff.
    assert.ok(performance.now() - started < 4000, 'stopped before the answer or the backoff');
  });
});

describe('http: auth and redaction', () => {
  const TOKEN = 'tok-3f9a-SECRET-b1d2';
  const PASSWORD = 'pa ss&wörd';
  const KEY = 'key-77-SECRET';

  it('sends bearer, basic and header credentials', async () => {
    const bearer = step({ request: { url: `${server.origin}/echo/a` }, auth: { bearer: TOKEN } });
    const basic = step({
      request: { url: `${server.origin}/echo/b` },
      auth: { basic: { username: 'u', password: PASSWORD } },
    });
    const header = step({
      request: { url: `${server.origin}/echo/c` },
      auth: { header: { name: 'X-Api-Key', value: KEY } },
    });
    await bearer.process([rec({})]);
    await basic.process([rec({})]);
    await header.process([rec({})]);
    const [a, b, c] = server.requests;
    assert.equal(a!.headers.authorization, `Bearer ${TOKEN}`);
    assert.equal(b!.headers.authorization, `Basic ${Buffer.from(`u:${PASSWORD}`).toString('base64')}`);
    assert.equal(c!.headers['x-api-key'], KEY);
  });

  it('never puts a secret in a rejection, even when the server echoes it back', async () => {
    const cases = [
      { auth: { bearer: TOKEN }, secrets: [TOKEN] },
      {
        auth: { basic: { username: 'u', password: PASSWORD } },
        secrets: [PASSWORD, encodeURIComponent(PASSWORD), Buffer.from(`u:${PASSWORD}`).toString('base64')],
      },
      { auth: { header: { name: 'X-Api-Key', value: KEY } }, secrets: [KEY] },
    ];
    for (const { auth, secrets } of cases) {
      const s = step({
        request: {
          url: `${server.origin}/status/{{ code }}?api_key=${encodeURIComponent(PASSWORD)}`,
          query: { token: TOKEN },
        },
        auth,
        retry: { attempts: 2, initial: '5ms', max: '10ms', on: [401, 'timeout'] },
        timeout: { headers: '1s' },
      });
      const result = await s.process([rec({ code: 401 }), rec({ code: 503 })]);
      assert.equal(result.rejected?.length, 2);
      const recorded = JSON.stringify(
        result.rejected!.map((r) => ({ message: r.error.message, details: r.error.details })),
      );
      for (const secret of [...secrets, TOKEN, PASSWORD, encodeURIComponent(PASSWORD)])
        assert.ok(!recorded.includes(secret), `${secret} leaked: ${recorded.slice(0, 400)}`);
      assert.ok(recorded.includes(REDACTED));
      assert.match(
        result.rejected![0]!.error.message,
        /\/status\/401\?api_key=\[REDACTED\]&token=\[REDACTED\] answered 401/,
      );
      server.reset();
    }
  });
});

describe('batch (bulk endpoints)', () => {
  const bulkStep = (extra: Record<string, unknown>, url = `${server.origin}/bulk`) =>
    step({ request: { method: 'POST', url, body: { id: '{{ id }}' } }, batch: { max_records: 4 }, ...extra });
  const ids = (n: number) => Array.from({ length: n }, (_, i) => rec({ id: i + 1 }, i + 1));

  it('sends up to max_records items per request and splits the results back, in order', async () => {
    const before = server.requests.length;
    const result = await bulkStep({ response: { into: 'r' } }).process(ids(10));
    const sent = server.requests.slice(before).map((r) => JSON.parse(r.body) as { id: number }[]);
    assert.deepEqual(
      sent.map((items) => items.map((i) => i.id)).sort((x, y) => x[0]! - y[0]!),
      [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9, 10],
      ],
    );
    assert.deepEqual(
      result.records.map((r) => r.value),
      ids(10).map((r) => ({ id: r.value.id, r: { id: r.value.id, score: (r.value.id as number) / 10 } })),
    );
    assert.equal(server.requests.at(-1)!.headers['content-type'], 'application/json');
  });

  it('wraps the items and finds the results at a path', async () => {
    const before = server.requests.length;
    const s = bulkStep(
      { batch: { max_records: 3, wrap: 'data.items', results: 'data.results' }, response: { into: 'r' } },
      `${server.origin}/bulk?wrapped=1`,
    );
    const result = await s.process(ids(3));
    assert.deepEqual(JSON.parse(server.requests[before]!.body), {
      data: { items: [{ id: 1 }, { id: 2 }, { id: 3 }] },
    });
    assert.deepEqual(
      result.records.map((r) => (r.value.r as { score: number }).score),
      [0.1, 0.2, 0.3],
    );
  });

  it('fails every record of a request that fails, or whose results do not match the items', async () => {
    const refused = await bulkStep({ retry: { attempts: 1 } }, `${server.origin}/bulk?status=422`).process(
      ids(5),
    );
    assert.equal(refused.records.length, 0);
    assert.deepEqual(
      refused.rejected?.map((r) => [r.record?.value.id, r.error.code, r.error.details?.status]),
      [1, 2, 3, 4, 5].map((id) => [id, 'SLUICE_HTTP_STATUS', 422]),
    );
    const short = await bulkStep({}, `${server.origin}/bulk?short=1`).process(ids(4));
    assert.equal(short.rejected?.length, 4);
    assert.match(short.rejected![0]!.error.message, /a batch of 4 records holds 3 results at the body/);
    assert.equal(short.rejected![0]!.error.code, 'SLUICE_HTTP_RESPONSE');
  });

  it('leaves a record whose item cannot be rendered out of the request, alone', async () => {
    const before = server.requests.length;
    const result = await bulkStep({}).process([rec({ id: 1 }), rec({ other: 2 }), rec({ id: 3 })]);
    assert.deepEqual(JSON.parse(server.requests[before]!.body), [{ id: 1 }, { id: 3 }]);
    assert.equal(result.records.length, 2);
    assert.equal(result.rejected?.[0]?.error.code, 'SLUICE_HTTP_TEMPLATE');
  });

  it('is refused at validation with placeholders outside the body, with cache, or without a body', () => {
    const issues = (cfg: Record<string, unknown>) =>
      configIssues(httpStep.config, { batch: { max_records: 10 }, ...cfg });
    assert.deepEqual(
      issues({ request: { method: 'POST', url: 'https://h/x/{{ id }}', body: { id: '{{ id }}' } } }),
      [
        'request.url: with batch, one request carries many records: only request.body or request.json can use their fields',
      ],
    );
    assert.deepEqual(issues({ request: { method: 'POST', url: 'https://h/x' } }), [
      'batch: batch needs request.body or request.json: the item sent for each record',
    ]);
    assert.deepEqual(
      issues({ request: { method: 'POST', url: 'https://h/x', json: 'doc' }, cache: { key: '{{ id }}' } }),
      ['cache: cache applies to one call per record, not to batch'],
    );
  });
});

describe('response.sql', () => {
  const make = async (sql: string) => {
    const cfg = httpStep.config.parse({
      request: { url: `${server.origin}/score/{{ id }}` },
      response: { sql },
    });
    const s = await httpStep.create(cfg, testContext({ batchSize: 10_000 }));
    open.push(s);
    return s;
  };

  it('selects what the record becomes from the record and the response; WHERE drops records', async () => {
    const s = await make('SELECT id, response.score * 100 AS pct FROM input WHERE response.score >= 0.5');
    const result = await s.process([rec({ id: 49, keep: 'x' }), rec({ id: 50 }), rec({ id: 175 })]);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        { id: 50, pct: 50 },
        { id: 175, pct: 75 },
      ],
    );
    assert.equal(result.rejected, undefined);
  });

  it('rejects only the record the query fails on, with the attempt count', async () => {
    const s = await make("SELECT id, CAST(response.id || 'x' AS INTEGER) AS n FROM input");
    const result = await s.process([rec({ id: 1 })]);
    assert.equal(result.records.length, 0);
    assert.equal(result.rejected?.length, 1);
    assert.equal(result.rejected![0]!.attempts, 1);
    assert.match(result.rejected![0]!.error.message, /1x/);
  });

  it('is checked when the spec is validated: SQL outside the compiled subset, and SQL that does not parse', async () => {
    const validate = (sql: string) =>
      validatePipeline({
        file: 'inline.yaml',
        text: `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: t }
source: { generate: { count: 1, fields: { id: seq } } }
steps:
  - http:
      request: { url: "${server.origin}/score/{{ id }}" }
      response: { sql: "${sql}" }
sinks: [{ stdout: {} }]
`,
        registry: defaultRegistry(),
      });
    const outside = await validate("SELECT levenshtein(response.id, 'x') AS d FROM input");
    assert.equal(outside.issues.length, 1);
    assert.match(
      outside.issues[0]!.message,
      /response\.sql must be a per-record query in the compiled subset/,
    );
    assert.deepEqual(outside.issues[0]!.path, ['steps', 0, 'http', 'response', 'sql']);
    assert.equal(outside.issues[0]!.line, 8);
    const broken = await validate('SELECT id, FROM input WHERE');
    assert.equal(broken.issues.length, 1);
    assert.equal(broken.issues[0]!.line, 8, 'placed at its line');
    assert.ok(broken.issues[0]!.col > 1, 'and its column');
    assert.equal((await validate('SELECT id, response.score AS s FROM input')).issues.length, 0);
  });
});

describe('docs/http.md', () => {
  const file = path.resolve(import.meta.dirname, '../../../docs/http.md');

  it('every YAML example is valid: the pipeline validates, each fragment is a valid http config', async () => {
    const doc = await readFile(file, 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    assert.ok(blocks.length >= 8, `${blocks.length} examples`);
    for (const text of blocks) {
      const parsed = parse(text) as Record<string, unknown>;
      if (parsed.apiVersion) {
        const { issues } = await validatePipeline({
          file: path.join(path.dirname(file), 'example.yaml'),
          text,
          env: { RISK_TOKEN: 'x' },
          registry: defaultRegistry(),
        });
        // The example's input file exists only in a user's project.
        assert.deepEqual(
          issues.filter(
            (i) => !/no such file|not found|does not exist|no files match|ENOENT/i.test(i.message),
          ),
          [],
        );
        continue;
      }
      // A `sink: { http: ... }` or `source: { http: ... }` fragment is the http sink's or source's config.
      const role = parsed.sink ? 'sink' : parsed.source ? 'source' : undefined;
      const result = role
        ? defaultRegistry()
            .get(role, 'http')!
            .config.safeParse((parsed[role] as { http: unknown }).http)
        : parseConfig({ request: { url: 'https://h/x' }, ...parsed });
      assert.equal(result.success, true, `${text}: ${JSON.stringify(result.error?.issues)}`);
    }
  });

  it('the escaping table says what is sent', async () => {
    const doc = await readFile(file, 'utf8');
    const rows = [...doc.matchAll(/^\| `\{ name: "(.*)" \}` \| (.*) \|$/gm)];
    assert.equal(rows.length, 3);
    const { target } = compileUrl('https://h/users/{{ name }}?q={{ name }}');
    for (const [, name, sent] of rows) {
      if (sent!.startsWith('nothing')) assert.throws(() => target({ name: name! }), /would change the path/);
      else assert.equal(`\`${target({ name: name! })}\``, sent);
    }
  });
});
