/**
 * The http step's protection, auth and metrics against the real test server: per-host rate limit,
 * circuit breaker, response cache with single flight, OAuth2 client credentials, redaction of
 * `${secret:...}` values, and the step metrics.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { REDACTED } from '../../http/client.ts';
import { parseRate, rateLimitOf, TokenBucket } from '../../http/rate-limit.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { testContext } from '../../sdk/testing.ts';
import type { Logger, RecordValue, SluiceRecord, StepInstance, StepResult } from '../../sdk/types.ts';
import { registerSecret } from '../../spec/secrets.ts';
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

interface Logged {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

function recorder(): { logger: Logger; lines: Logged[] } {
  const lines: Logged[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    lines.push({ level, msg, ...(fields ? { fields } : {}) });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
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
const recs = (n: number, value: (i: number) => RecordValue) =>
  Array.from({ length: n }, (_, i) => rec(value(i), i));
const values = (result: StepResult) => result.records.map((r) => r.value);

/** The most of `times` (ms) in any window of `ms` that starts at one of them. */
function maxInWindow(times: number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (j < sorted.length && sorted[j]! < sorted[i]! + ms) j++;
    best = Math.max(best, j - i);
  }
  return best;
}

// biome-ignore lint/suspicious/noExplicitAny: metrics are JSON of several shapes
type Metrics = Record<string, any>;
const metricsOf = (s: StepInstance) => s.metrics!() as Metrics;

function issues(input: Record<string, unknown>): { path: string; message: string }[] {
  const result = httpStep.config.safeParse({ request: { url: 'http://h/{{ id }}' }, ...input });
  assert.equal(result.success, false, 'expected the config to be refused');
  return result.error!.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

describe('http protection: config', () => {
  it('parses rates and derives the default burst', () => {
    assert.equal(parseRate('2000/s'), 2000);
    assert.equal(parseRate('120/min'), 2);
    assert.equal(parseRate('3600/h'), 1);
    assert.equal(parseRate(' 10 / second '), 10);
    assert.equal(parseRate('2000 per s'), undefined);
    assert.equal(parseRate('0/s'), undefined);
    assert.equal(parseRate('5/fortnight'), undefined);
    assert.deepEqual(rateLimitOf('2000/s'), { perSecond: 2000, burst: 100 });
    assert.deepEqual(rateLimitOf('50/s'), { perSecond: 50, burst: 3 });
    assert.deepEqual(rateLimitOf('100/min').burst, 1);
    assert.deepEqual(rateLimitOf({ rate: '50/s', burst: 10 }), { perSecond: 50, burst: 10 });
  });

  it('fills breaker and cache defaults', () => {
    const cfg = httpStep.config.parse({
      request: { url: 'http://h/{{ id }}' },
      breaker: {},
      cache: { key: '{{ id }}' },
      rate_limit: '100/min',
    });
    assert.deepEqual(cfg.breaker, {
      failure_rate: 0.5,
      window: '10s',
      min_calls: 20,
      open_for: '30s',
      half_open_calls: 5,
      when_open: 'wait',
    });
    assert.deepEqual(cfg.cache, { key: '{{ id }}', ttl: '10m', max_entries: 100_000 });
    assert.equal(cfg.rate_limit, '100/min');
  });

  it('names the field and what is valid for every mistake', () => {
    assert.deepEqual(issues({ rate_limit: '2000 per s' }), [
      {
        path: 'rate_limit',
        message:
          '"2000 per s" is not a rate: write requests per unit, e.g. 2000/s, 100/min or 5000/h (more than 0)',
      },
    ]);
    assert.equal(issues({ rate_limit: { rate: '5/s', burst: 0 } })[0]!.path, 'rate_limit.burst');
    assert.equal(issues({ rate_limit: { rate: '0/s' } })[0]!.path, 'rate_limit.rate');
    assert.equal(issues({ breaker: { failure_rate: 1.5 } })[0]!.path, 'breaker.failure_rate');
    assert.equal(issues({ breaker: { window: '10 seconds' } })[0]!.path, 'breaker.window');
    assert.equal(issues({ breaker: { when_open: 'queue' } })[0]!.path, 'breaker.when_open');
    assert.deepEqual(issues({ cache: { key: 'all' } }), [
      {
        path: 'cache.key',
        message:
          'the key has no placeholder, so every record would share one response: write it from the fields that decide the response, e.g. "{{ user.id }}"',
      },
    ]);
    assert.equal(issues({ cache: { key: '{{ a..b }}' } })[0]!.path, 'cache.key');
    assert.equal(issues({ cache: { key: '{{ id }}', ttl: 'soon' } })[0]!.path, 'cache.ttl');
    const oauth = { token_url: 'https://auth/token', client_id: 'c', client_secret: 's' };
    assert.equal(
      issues({ auth: { oauth2: { ...oauth, client_secret: undefined } } })[0]!.path,
      'auth.oauth2.client_secret',
    );
    assert.deepEqual(issues({ auth: { oauth2: { ...oauth, token_url: '/token' } } }), [
      {
        path: 'auth.oauth2.token_url',
        message: 'expected an absolute http:// or https:// URL without credentials in it',
      },
    ]);
    assert.deepEqual(issues({ auth: { bearer: 't', oauth2: oauth } }), [
      { path: 'auth.oauth2', message: 'give one of bearer, basic, header and oauth2, not bearer and oauth2' },
    ]);
    assert.deepEqual(
      issues({ request: { url: 'http://h/', headers: { Authorization: 'x' } }, auth: { oauth2: oauth } })[0],
      {
        path: 'request.headers.Authorization',
        message: 'Authorization is set by auth: give it in one place only',
      },
    );
  });
});

describe('http protection: rate limit', () => {
  it('the bucket grants at most burst + rate × T tokens in any T', async () => {
    const bucket = new TokenBucket(100, 5);
    const started = performance.now();
    const at: number[] = [];
    await Promise.all(
      Array.from({ length: 130 }, async () => {
        await bucket.take();
        at.push(performance.now() - started);
      }),
    );
    // `at` is when each waiter's continuation ran, not when its token was granted: on a loaded
    // machine a late timer lets continuations run back to back. Two tokens of slack per
    // window covers that; a bucket that leaked would exceed it by far more.
    for (const window of [100, 250, 500, 1000])
      assert.ok(
        maxInWindow(at, window) <= 5 + (100 * window) / 1000 + 2,
        `${maxInWindow(at, window)} in ${window}ms`,
      );
    assert.ok(at.at(-1)! >= 1200, `the last token after ${Math.round(at.at(-1)!)}ms`);
    assert.equal(bucket.waited, 125);
  });

  it('50/s over a second: the server sees at most 50 + burst requests in any second, and the wait is recorded', async () => {
    const s = step({
      request: { url: `${server.origin}/score/{{ id }}` },
      concurrency: 16,
      rate_limit: { rate: '50/s', burst: 5 },
    });
    await s.process(recs(5, (i) => ({ id: i }))); // open the connections and warm up before measuring
    server.reset();
    const started = performance.now();
    const result = await s.process(recs(100, (i) => ({ id: i })));
    const elapsed = performance.now() - started;
    assert.equal(result.records.length, 100);
    const arrivals = server.requests.map((r) => r.at);
    // Client and server share one event loop: allow 2 requests of arrival jitter.
    assert.ok(
      maxInWindow(arrivals, 1000) <= 50 + 5 + 2,
      `${maxInWindow(arrivals, 1000)} requests in a second`,
    );
    // 95 or more requests past the bucket at 50/s take 1.9 s: the limiter is not much slower than its rate.
    assert.ok(elapsed >= 1700 && elapsed < 4000, `took ${Math.round(elapsed)}ms`);
    const m = metricsOf(s);
    assert.equal(m.rate_limit.per_second, 50);
    assert.equal(m.rate_limit.burst, 5);
    assert.ok(m.rate_limit.waited >= 95, `waited ${m.rate_limit.waited}`);
    assert.ok(m.rate_limit.wait_ms > 95 * 100, `wait_ms ${m.rate_limit.wait_ms}`);
    assert.equal(m.requests['2xx'], 105);
  });

  it('a retry takes a token too', async () => {
    const s = step({
      request: { url: `${server.origin}/flaky/{{ key }}?times=1` },
      rate_limit: { rate: '2/s', burst: 1 },
      retry: { attempts: 2, initial: '1ms', max: '1ms' },
    });
    await s.process([rec({ key: 'a' })]);
    // the next token comes 500 ms after the first was taken; the first call's own trip to the
    // server (slow on a loaded machine) is the only thing that can shorten the gap seen there
    const [a, b] = server.hits('/flaky/a');
    assert.ok(b! - a! >= 250, `the retry waited for a token (${Math.round(b! - a!)}ms)`);
  });

  it('a call waiting for a token stops when the run is stopped', async () => {
    const controller = new AbortController();
    const s = step(
      { request: { url: `${server.origin}/score/{{ id }}` }, rate_limit: '1/min' },
      { signal: controller.signal },
    );
    const started = performance.now();
    const pending = Promise.resolve(s.process(recs(3, (i) => ({ id: i }))));
    setTimeout(() => controller.abort(new SluiceError('SLUICE_INTERRUPTED', 'stopped')), 100);
    await assert.rejects(
      pending,
      (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_INTERRUPTED',
    );
    assert.ok(performance.now() - started < 5000, 'stopped well before the next token, a minute away');
    assert.equal(server.requests.length, 1, 'only the first token was there');
  });
});

describe('http protection: circuit breaker', () => {
  const breaker = { failure_rate: 0.5, window: '10s', min_calls: 4, open_for: '300ms', half_open_calls: 2 };

  it('closed → open → half-open → closed: calls wait while it is open, probes close it, each transition logged once', async () => {
    const { logger, lines } = recorder();
    const s = step(
      {
        request: { url: `${server.origin}/outage/{{ id }}` },
        concurrency: 1,
        retry: { attempts: 1 },
        breaker: { ...breaker, when_open: 'wait' },
      },
      { logger },
    );
    server.outage = true;
    const failing = await s.process(recs(4, (i) => ({ id: `down-${i}` })));
    assert.equal(failing.rejected?.length, 4);
    assert.ok(failing.rejected!.every((r) => r.error.code === 'SLUICE_HTTP_STATUS'));
    assert.equal(metricsOf(s).breaker.state, 'open');
    const openedAt = performance.now();

    server.outage = false;
    const before = server.requests.length;
    const recovered = await s.process(recs(4, (i) => ({ id: `up-${i}` })));
    assert.deepEqual(
      values(recovered).map((v) => (v.response as { key: string }).key),
      ['up-0', 'up-1', 'up-2', 'up-3'],
    );
    const firstAfter = server.requests[before]!.at;
    assert.ok(firstAfter - openedAt >= 250, `held while open (${Math.round(firstAfter - openedAt)}ms)`);
    const warnings = lines.filter((l) => l.level === 'warn').map((l) => l.msg);
    assert.equal(warnings.length, 3, warnings.join('\n'));
    assert.match(
      warnings[0]!,
      /^http: circuit to http:\/\/127\.0\.0\.1:\d+ opened: 4 of the last 4 attempts failed \(100%, failure_rate 0\.5\); calls wait for 300ms, then 2 probe attempts test it$/,
    );
    assert.match(warnings[1]!, /half-open: letting 2 probe attempts through$/);
    assert.match(warnings[2]!, /closed: 2 probe attempts succeeded$/);
    // All four calls of the second batch were held; two went as probes, two after it closed.
    assert.deepEqual(metricsOf(s).breaker, {
      state: 'closed',
      opened: 1,
      half_opened: 1,
      closed: 1,
      refused: 4,
    });
  });

  it('when_open: error fails records at once with SLUICE_HTTP_CIRCUIT_OPEN; a failed probe opens it again', async () => {
    const { logger, lines } = recorder();
    const s = step(
      {
        request: { url: `${server.origin}/outage/{{ id }}` },
        concurrency: 1,
        retry: { attempts: 1 },
        breaker: { ...breaker, when_open: 'error' },
      },
      { logger },
    );
    server.outage = true;
    await s.process(recs(4, (i) => ({ id: `a${i}` })));
    const sent = server.requests.length;
    const refused = await s.process(recs(3, (i) => ({ id: `b${i}` })));
    assert.equal(server.requests.length, sent, 'nothing was sent while open');
    assert.equal(refused.rejected?.length, 3);
    for (const r of refused.rejected!) {
      assert.equal(r.error.code, 'SLUICE_HTTP_CIRCUIT_OPEN');
      assert.equal(r.error.retriable, true);
      assert.equal(r.attempts, 0);
      assert.equal(r.error.details?.state, 'open');
      assert.ok((r.error.details?.retry_in_ms as number) <= 300);
    }
    assert.match(
      refused.rejected![0]!.error.message,
      /^GET http:\/\/127\.0\.0\.1:\d+\/outage\/b0 was not sent: the circuit to http:\/\/127\.0\.0\.1:\d+ is open: too many recent calls failed/,
    );

    await new Promise((r) => setTimeout(r, 350));
    const probe = await s.process([rec({ id: 'probe' })]);
    assert.equal(probe.rejected![0]!.error.code, 'SLUICE_HTTP_STATUS', 'the probe was sent and failed');
    assert.equal(metricsOf(s).breaker.state, 'open');
    assert.match(lines.at(-1)!.msg, /opened again: a probe attempt failed/);

    server.outage = false;
    await new Promise((r) => setTimeout(r, 350));
    // Half-open lets two probes through; the third call of the batch is refused, then it closes.
    const back = await s.process(recs(3, (i) => ({ id: `c${i}` })));
    assert.deepEqual(
      values(back).map((v) => v.id),
      ['c0', 'c1'],
    );
    assert.equal(back.rejected![0]!.error.code, 'SLUICE_HTTP_CIRCUIT_OPEN');
    assert.equal(back.rejected![0]!.error.details?.state, 'half-open');
    assert.equal((await s.process(recs(3, (i) => ({ id: `d${i}` })))).records.length, 3);
    assert.deepEqual(metricsOf(s).breaker, {
      state: 'closed',
      opened: 2,
      half_opened: 2,
      closed: 1,
      refused: 4,
    });
  });

  it('counts retried attempts: one record retried into an outage opens it; 4xx are not failures', async () => {
    const s = step({
      request: { url: `${server.origin}/{{ route }}/{{ id }}` },
      concurrency: 4,
      retry: { attempts: 4, initial: '1ms', max: '2ms' },
      on_status: { '404': 'keep' },
      breaker: { ...breaker, when_open: 'error' },
    });
    const fine = await s.process(recs(8, (i) => ({ route: 'nowhere', id: i })));
    assert.equal(fine.records.length, 8, '404s kept');
    assert.equal(metricsOf(s).breaker.state, 'closed');
    server.outage = true;
    const [r] = (await s.process([rec({ route: 'outage', id: 'x' })])).rejected!;
    // 8 successes (a kept 404 is one) and 4 failed attempts: 33%, below 0.5, so all 4 were sent.
    assert.equal(server.hits('/outage/x').length, 4);
    assert.equal(r!.error.code, 'SLUICE_HTTP_STATUS');
    const more = await s.process(recs(8, (i) => ({ route: 'outage', id: `y${i}` })));
    assert.ok(more.rejected!.some((x) => x.error.code === 'SLUICE_HTTP_CIRCUIT_OPEN'));
    assert.equal(metricsOf(s).breaker.opened, 1);
  });
});

describe('http protection: response cache', () => {
  it('N records with 3 distinct keys make 3 calls; a later batch is served from the cache', async () => {
    const s = step({
      request: { url: `${server.origin}/score/{{ user.id }}` },
      cache: { key: '{{ user.id }}', ttl: '1m' },
    });
    const batch = recs(30, (i) => ({ n: i, user: { id: (i % 3) + 1 } }));
    const result = await s.process(batch);
    assert.equal(server.requests.length, 3);
    assert.deepEqual(
      values(result).map((v) => [v.n, (v.response as { id: string }).id]),
      batch.map((r) => [r.value.n, String((r.value.user as { id: number }).id)]),
    );
    await s.process(recs(10, (i) => ({ n: i, user: { id: (i % 3) + 1 } })));
    assert.equal(server.requests.length, 3, 'the second batch made no call');
    const m = metricsOf(s);
    // The first batch's calls start together: one per key loads, the 27 others join it.
    assert.deepEqual(m.cache, { hits: 10, misses: 3, joined: 27, entries: 3 });
    assert.equal(m.requests['2xx'], 3);
  });

  it('single flight: concurrent records with one key share one in-flight call', async () => {
    const s = step({
      request: { url: `${server.origin}/delay/{{ k }}?ms=100` },
      concurrency: 16,
      cache: { key: '{{ k }}' },
    });
    const result = await s.process(recs(12, (i) => ({ i, k: 'same' })));
    assert.equal(result.records.length, 12);
    assert.equal(server.hits('/delay/same').length, 1);
    assert.deepEqual(metricsOf(s).cache, { hits: 0, misses: 1, joined: 11, entries: 1 });
  });

  it('caches only kept responses; entries expire after ttl; a missing key field fails the record', async () => {
    const s = step({
      request: { url: `${server.origin}/status/{{ code }}` },
      retry: { attempts: 1 },
      on_status: { '404': 'drop' },
      cache: { key: '{{ code }}/{{ lang }}', ttl: '200ms' },
    });
    await s.process([rec({ code: 500, lang: 'en' })]);
    const failed = await s.process([rec({ code: 500, lang: 'en' })]);
    assert.equal(failed.rejected?.length, 1);
    await s.process([rec({ code: 404, lang: 'en' })]);
    await s.process([rec({ code: 404, lang: 'en' })]);
    assert.equal(server.hits('/status/500').length, 2, 'a failure is not cached');
    assert.equal(server.hits('/status/404').length, 2, 'a drop is not cached');

    const ok = step({
      request: { url: `${server.origin}/score/{{ id }}` },
      cache: { key: '{{ id }}-{{ lang }}', ttl: '200ms' },
    });
    await ok.process([rec({ id: 1, lang: 'en' })]);
    await ok.process([rec({ id: 1, lang: 'en' })]);
    assert.equal(server.hits('/score/1').length, 1);
    await new Promise((r) => setTimeout(r, 300));
    await ok.process([rec({ id: 1, lang: 'en' })]);
    assert.equal(server.hits('/score/1').length, 2, 'expired after the ttl');
    const missing = await ok.process([rec({ id: 2 }, 7)]);
    assert.equal(missing.rejected![0]!.error.code, 'SLUICE_HTTP_TEMPLATE');
    assert.equal(
      missing.rejected![0]!.error.message,
      'request cache.key: field "lang" is missing from the record (record p @ 7)',
    );
    assert.equal(server.hits('/score/2').length, 0);
  });
});

describe('http protection: OAuth2 client credentials', () => {
  const oauth2 = () => ({
    token_url: `${server.origin}/oauth/token`,
    client_id: server.oauth.clientId,
    client_secret: server.oauth.clientSecret,
    scope: 'read write',
    params: { resource: 'https://api.example.com' },
  });

  it('fetches one token for many concurrent calls, with a form POST', async () => {
    server.oauth.delayMs = 50;
    const s = step({
      request: { url: `${server.origin}/api/{{ id }}` },
      concurrency: 16,
      auth: { oauth2: oauth2() },
    });
    const result = await s.process(recs(50, (i) => ({ id: i })));
    assert.equal(result.records.length, 50, JSON.stringify(result.rejected?.[0]?.error.message));
    assert.equal(server.oauth.issued.length, 1);
    const form = server.oauth.forms[0]!;
    assert.deepEqual(Object.fromEntries(form), {
      grant_type: 'client_credentials',
      client_id: server.oauth.clientId,
      client_secret: server.oauth.clientSecret,
      scope: 'read write',
      resource: 'https://api.example.com',
    });
    assert.ok(
      values(result).every((v) => (v.response as { token: string }).token === server.oauth.issued[0]),
    );
    assert.deepEqual(metricsOf(s).oauth2, { token_fetches: 1, tokens_refused: 0 });
  });

  it('client_auth: basic sends the credentials in an Authorization header', async () => {
    const s = step({
      request: { url: `${server.origin}/api/{{ id }}` },
      auth: { oauth2: { ...oauth2(), client_secret: 'wrong', client_auth: 'basic' } },
    });
    await s.process([rec({ id: 1 })]);
    const seen = server.requests.find((r) => r.url === '/oauth/token')!;
    assert.equal(
      seen.headers.authorization,
      `Basic ${Buffer.from(`${server.oauth.clientId}:wrong`).toString('base64')}`,
    );
    assert.equal(new URLSearchParams(seen.body).get('client_secret'), null);
  });

  it('refreshes the token before it expires', async () => {
    server.oauth.expiresIn = 1;
    const s = step({ request: { url: `${server.origin}/api/{{ id }}` }, auth: { oauth2: oauth2() } });
    const first = await s.process(recs(3, (i) => ({ id: i })));
    await new Promise((r) => setTimeout(r, 950)); // past 90% of expires_in, before the server's expiry
    const second = await s.process(recs(3, (i) => ({ id: i })));
    assert.equal(first.records.length + second.records.length, 6);
    assert.equal(server.oauth.issued.length, 2);
    assert.ok(
      values(second).every((v) => (v.response as { token: string }).token === server.oauth.issued[1]),
    );
    assert.equal(
      server.requests.filter((r) => r.url.startsWith('/api/')).length,
      6,
      'no call was refused (refreshed before it expired)',
    );
  });

  it('a 401 fetches one new token, shared, and sends each refused call once more', async () => {
    const s = step({
      request: { url: `${server.origin}/api/{{ id }}` },
      concurrency: 8,
      auth: { oauth2: oauth2() },
    });
    await s.process(recs(4, (i) => ({ id: i })));
    server.oauth.revoked.add(server.oauth.issued[0]!);
    const result = await s.process(recs(20, (i) => ({ id: i })));
    assert.equal(result.records.length, 20);
    assert.equal(server.oauth.issued.length, 2, 'one refresh for all the refused calls');
    const m = metricsOf(s);
    assert.deepEqual(m.oauth2, { token_fetches: 2, tokens_refused: 1 });
    assert.ok(m.requests['4xx'] >= 1 && m.requests['4xx'] <= 8, `${m.requests['4xx']} calls refused`);
    assert.equal(m.retries, m.requests['4xx']);
  });

  it('a call refused again after the refresh fails with its 401; no token or secret is recorded', async () => {
    const { logger, lines } = recorder();
    const s = step(
      { request: { url: `${server.origin}/status/{{ code }}` }, auth: { oauth2: oauth2() } },
      { logger },
    );
    const result = await s.process([rec({ code: 401 })]);
    const [r] = result.rejected!;
    assert.equal(r!.error.code, 'SLUICE_HTTP_STATUS');
    assert.equal(r!.attempts, 2);
    assert.equal(server.oauth.issued.length, 2);
    const recorded = JSON.stringify({ m: r!.error.message, d: r!.error.details, lines });
    assert.match(String(r!.error.details?.body), /^denied: authorization=Bearer \[REDACTED\] /);
    for (const secret of [...server.oauth.issued, server.oauth.clientSecret])
      assert.ok(!recorded.includes(secret), `${secret} leaked`);
  });

  it('refused client credentials fail every record with SLUICE_HTTP_AUTH after one shared fetch, redacted', async () => {
    const secret = 'wrong-secret-4242-SECRET';
    const s = step({
      request: { url: `${server.origin}/api/{{ id }}` },
      concurrency: 5,
      auth: { oauth2: { ...oauth2(), client_secret: secret } },
    });
    const result = await s.process(recs(5, (i) => ({ id: i })));
    assert.equal(result.rejected?.length, 5);
    assert.equal(server.oauth.forms.length, 1, 'one token request for the five calls');
    assert.equal(server.requests.filter((r) => r.url.startsWith('/api/')).length, 0);
    const error = result.rejected![0]!.error;
    assert.equal(error.code, 'SLUICE_HTTP_AUTH');
    assert.equal(error.retriable, false);
    assert.equal(result.rejected![0]!.attempts, 0);
    assert.match(
      error.message,
      /^OAuth2 token endpoint http:\/\/127\.0\.0\.1:\d+\/oauth\/token answered 401 \(client sluice-client\)$/,
    );
    assert.equal(error.details?.status, 401);
    const recorded = JSON.stringify({ m: error.message, d: error.details });
    assert.ok(recorded.includes(REDACTED), 'the echoed form was redacted');
    assert.ok(!recorded.includes(secret));
  });
});

describe('http protection: secrets and metrics', () => {
  it('redacts every ${secret:...} value read, wherever the config put it', async () => {
    const secret = 'mounted-7c1f-SECRET';
    registerSecret(secret); // what reading ${secret:NAME} in a spec does
    const s = step({
      request: { url: `${server.origin}/status/{{ code }}`, query: { q: secret } },
      retry: { attempts: 1 },
    });
    const [r] = (await s.process([rec({ code: 400 })])).rejected!;
    const recorded = JSON.stringify({ m: r!.error.message, d: r!.error.details });
    assert.equal(server.requests[0]!.url, `/status/400?q=${secret}`, 'the secret was sent');
    assert.ok(!recorded.includes(secret), recorded);
    assert.match(r!.error.message, /\/status\/400\?q=\[REDACTED\] answered 400/);
  });

  it('counts requests by class, retries, and attempt latency in fixed buckets', async () => {
    const s = step({
      request: {
        url: `${server.origin}/{{ route }}/{{ key }}`,
        query: { ms: '{{ ms }}', times: '{{ times }}' },
      },
      // timeouts far above the 60 ms delay, so that a loaded machine cannot make "slow" time out
      timeout: { headers: '1s', total: '2s' },
      retry: { attempts: 2, initial: '1ms', max: '2ms', on: [503, 'network', 'timeout'] },
      on_status: { '404': 'keep' },
    });
    const target = (route: string, key: string, ms: number | null = null, times: number | null = null) =>
      ({ route, key, ms, times }) as RecordValue;
    await s.process([
      rec(target('score', '1')),
      rec(target('delay', 'slow', 60)),
      rec(target('nowhere', 'x')),
      rec(target('flaky', 'f', null, 1)),
      rec(target('reset', 'r')),
      rec(target('delay', 'late', 10_000)),
    ]);
    const m = metricsOf(s);
    assert.deepEqual(m.requests, { '2xx': 3, '3xx': 0, '4xx': 1, '5xx': 1, network: 2, timeout: 2 });
    assert.equal(m.retries, 3, 'flaky, reset and late were retried once');
    const latency = m.latency_ms;
    assert.equal(latency.count, 9);
    assert.equal(
      latency.counts.reduce((a: number, b: number) => a + b, 0),
      9,
    );
    assert.equal(latency.buckets[0], 5);
    assert.equal(latency.buckets.at(-2), 60_000);
    // The two timed-out attempts took at least 1 s each, the 60 ms delay at least 60 ms: each lands
    // in a bucket at or above its floor (how far above depends on the machine's load).
    const atLeast = (ms: number) =>
      latency.counts.reduce((n: number, c: number, i: number) => n + (latency.buckets[i] >= ms ? c : 0), 0);
    assert.ok(atLeast(1000) >= 2, JSON.stringify(latency));
    assert.ok(atLeast(100) >= 3, JSON.stringify(latency));
    assert.ok(latency.sum >= 1000 * 2 + 60);
    assert.ok(latency.p99_le >= 1000, JSON.stringify(latency));
    assert.equal(m.rate_limit, undefined, 'sections appear only when configured');
  });
});
