/**
 * The webhook tests, run on both stores: webhooks.test.ts (SQLite) and webhooks.int.test.ts
 * (PostgreSQL). Deliveries go to a real HTTP receiver on 127.0.0.1 that records what it gets.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { SluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import type { Db } from './store/db.ts';
import { createTestStore, type StoreKind, type TestStore } from './store/test-util.ts';
import {
  type ApiDelivery,
  backoffDelay,
  verifySignature,
  WebhookService,
  type WebhookServiceOptions,
} from './webhooks.ts';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Receiver {
  url: string;
  requests: Received[];
  close(): Promise<void>;
}

/**
 * A receiver answering each request as `respond` says (`n` counts from 1): a status, a status with a
 * body, headers and a delay, or never ('hang').
 */
export async function startReceiver(
  respond: (
    req: Received,
    n: number,
  ) =>
    | number
    | 'hang'
    | { status: number; body?: string; headers?: Record<string, string>; delayMs?: number },
): Promise<Receiver> {
  const requests: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received = {
        path: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        at: Date.now(),
      };
      requests.push(received);
      const answer = respond(received, requests.length);
      if (answer === 'hang') return;
      const {
        status,
        body = '',
        headers = {},
        delayMs = 0,
      } = typeof answer === 'number' ? { status: answer } : answer;
      setTimeout(
        () => res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(body),
        delayMs,
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A logger that keeps every line, so a test can look for what must never be logged. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(JSON.stringify({ level, msg, ...fields }));
  };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const jobData = (id = 'job_abc') => ({
  job: { id, state: 'succeeded', pipeline: { id: 'pl_1', name: 'payments', version: 1 } },
  summary: { records: { read: 3, written: 3, filtered: 0, failed: 0 } },
  checks: [{ check: 'row_count', severity: 'error', passed: true, message: '3 rows' }],
});

export function webhookSuite(kind: StoreKind): void {
  describe(`webhooks on ${kind}`, () => {
    let store: TestStore;
    let db: Db;
    let logger: ReturnType<typeof memoryLogger>;
    const cleanups: (() => Promise<void>)[] = [];

    before(async () => {
      store = await createTestStore(kind);
      db = await store.openMigrated();
    });
    after(async () => {
      await db.close();
      await store.dispose();
    });
    beforeEach(async () => {
      logger = memoryLogger();
      await db.run('DELETE FROM webhook_deliveries');
      await db.run('DELETE FROM webhooks');
    });
    afterEach(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn();
    });

    function service(opts: Partial<WebhookServiceOptions> = {}): WebhookService {
      const svc = new WebhookService({
        db,
        logger,
        pollMs: 10,
        timeoutMs: 2000,
        retry: { attempts: 3, baseMs: 10, maxMs: 50 },
        ...opts,
      });
      cleanups.push(() => svc.stop());
      return svc;
    }

    async function receiver(respond: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
      const rx = await startReceiver(respond);
      cleanups.push(() => rx.close());
      return rx;
    }

    async function onlyDelivery(svc: WebhookService, webhookId: string): Promise<ApiDelivery> {
      const list = await svc.deliveries(webhookId);
      assert.equal(list.length, 1, `one delivery for ${webhookId}`);
      return list[0]!;
    }

    async function settled(svc: WebhookService, webhookId: string): Promise<ApiDelivery> {
      let last: ApiDelivery | undefined;
      await waitFor(async () => {
        last = await onlyDelivery(svc, webhookId);
        return last.status !== 'pending';
      }, 'the delivery to settle');
      return last!;
    }

    it('delivers a signed payload that verifySignature accepts and rejects when tampered', async () => {
      const rx = await receiver(() => 200);
      const svc = service();
      const { webhook, secret } = await svc.register({ url: `${rx.url}/hook`, events: ['job.succeeded'] });
      assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
      assert.equal(await svc.emit('job.succeeded', jobData()), 1);
      svc.start();

      const delivery = await settled(svc, webhook.id);
      assert.equal(rx.requests.length, 1);
      const req = rx.requests[0]!;
      assert.equal(req.path, '/hook');
      assert.equal(req.headers['content-type'], 'application/json');
      assert.equal(req.headers['user-agent'], 'sluice-webhooks/1');
      assert.equal(req.headers['sluice-event'], 'job.succeeded');
      assert.equal(req.headers['sluice-delivery'], delivery.id);
      assert.deepEqual(JSON.parse(req.body), {
        id: delivery.id,
        event: 'job.succeeded',
        created_at: delivery.created_at,
        data: jobData(),
      });
      assert.deepEqual(
        { ...delivery, created_at: 'x', delivered_at: typeof delivery.delivered_at },
        {
          id: delivery.id,
          webhook_id: webhook.id,
          event: 'job.succeeded',
          job_id: 'job_abc',
          status: 'delivered',
          attempts: 1,
          last_status: 200,
          last_error: null,
          created_at: 'x',
          delivered_at: 'string',
          next_attempt_at: null,
        },
      );

      const header = req.headers['sluice-signature'] as string;
      const t = Number(/^t=(\d+),/.exec(header)?.[1]);
      assert.ok(Math.abs(t - Date.now() / 1000) < 10, 'signed now');
      // The documented scheme, as a receiver in any language computes it.
      assert.equal(
        header,
        `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${req.body}`).digest('hex')}`,
      );
      assert.equal(verifySignature(secret, req.body, header), true);
      assert.equal(verifySignature(secret, req.body.replace('job_abc', 'job_abd'), header), false);
      assert.equal(verifySignature(`${secret}x`, req.body, header), false);
      assert.equal(verifySignature(secret, req.body, header, { now: (t + 301) * 1000 }), false, 'stale');
      assert.equal(
        verifySignature(secret, req.body, header, { now: (t - 301) * 1000 }),
        false,
        'from the future',
      );
      assert.equal(verifySignature(secret, req.body, header, { now: (t + 299) * 1000 }), true);
      assert.equal(
        verifySignature(secret, req.body, header, { now: (t + 61) * 1000, toleranceSec: 60 }),
        false,
      );
      const sig = header.slice(header.indexOf('v1='));
      for (const bad of [
        undefined,
        '',
        'garbage',
        `t=${t}`,
        sig,
        `t=${t},v1=${'0'.repeat(64)}`,
        `t=${t},v1=abc`,
      ]) {
        assert.equal(verifySignature(secret, req.body, bad), false, `header ${bad}`);
      }
      // A receiver rotating secrets may be sent several v1 entries; one match is enough.
      assert.equal(verifySignature(secret, req.body, `t=${t},v1=${'0'.repeat(64)},${sig}`), true);

      assert.ok(logger.lines.some((l) => l.includes('webhook delivered')));
      assert.ok(!logger.lines.some((l) => l.includes(secret)), 'the secret is never logged');
      assert.ok(!JSON.stringify(await svc.list()).includes(secret), 'list never shows the secret');
    });

    it('retries a 500 with exponential backoff until a 2xx: 3 attempts, one delivery id', async () => {
      const rx = await receiver((_req, n) => (n <= 2 ? { status: 500, body: 'try later' } : 200));
      // The widest jitter, so each wait is its ceiling: 60 ms, then 120 ms capped at 100 ms.
      const svc = service({ retry: { attempts: 5, baseMs: 60, maxMs: 100 }, random: () => 1 });
      const { webhook, secret } = await svc.register({ url: rx.url, events: ['*'] });
      await svc.emit('job.failed', jobData());

      // The first attempt by hand, to look at the row between attempts.
      assert.equal(await svc.deliverDue(), 1);
      const pending = await onlyDelivery(svc, webhook.id);
      assert.equal(pending.status, 'pending');
      assert.equal(pending.attempts, 1);
      assert.equal(pending.last_status, 500);
      assert.equal(pending.last_error, 'HTTP 500: try later');
      assert.ok(
        Date.parse(pending.next_attempt_at!) >= rx.requests[0]!.at + 55,
        'next attempt after the backoff',
      );
      assert.equal(
        await svc.deliverDue(Date.parse(pending.next_attempt_at!) - 1),
        0,
        'not due before its backoff',
      );

      svc.start();
      const done = await settled(svc, webhook.id);
      assert.equal(rx.requests.length, 3);
      assert.equal(done.status, 'delivered');
      assert.equal(done.attempts, 3);
      assert.equal(done.last_status, 200);
      assert.equal(done.last_error, null);
      assert.equal(done.next_attempt_at, null);
      const [a, b, c] = rx.requests as [Received, Received, Received];
      // Lower bounds only (timers never fire early; a loaded machine only makes gaps longer).
      assert.ok(b.at - a.at >= 55, `first gap ${b.at - a.at} ms >= 60 ms`);
      assert.ok(c.at - b.at >= 95, `second gap ${c.at - b.at} ms >= 100 ms (the cap)`);
      for (const r of rx.requests) {
        assert.equal(r.headers['sluice-delivery'], done.id, 'every attempt carries the same delivery id');
        assert.equal(r.body, a.body, 'every attempt sends the same body');
        assert.ok(verifySignature(secret, r.body, r.headers['sluice-signature'] as string));
      }
    });

    it('marks a delivery failed after the configured attempts', async () => {
      const rx = await receiver(() => ({ status: 500, body: 'boom' }));
      const svc = service({ retry: { attempts: 3, baseMs: 5, maxMs: 20 } });
      const { webhook } = await svc.register({ url: rx.url, events: ['job.failed'] });
      await svc.emit('job.failed', jobData('job_f'));
      svc.start();
      const done = await settled(svc, webhook.id);
      assert.equal(done.status, 'failed');
      assert.equal(done.attempts, 3);
      assert.equal(done.last_status, 500);
      assert.equal(done.last_error, 'HTTP 500: boom');
      assert.equal(done.next_attempt_at, null);
      assert.equal(done.delivered_at, null);
      await sleep(100);
      assert.equal(rx.requests.length, 3, 'no attempt after the last one');
      assert.ok(logger.lines.some((l) => l.includes('failed for good')));
    });

    it("sends each hook only the events it asked for; '*' gets them all", async () => {
      const rx = await receiver(() => 204);
      const svc = service();
      const failedOnly = await svc.register({ url: `${rx.url}/failed`, events: ['job.failed'] });
      const all = await svc.register({ url: `${rx.url}/all`, events: ['*'] });
      const two = await svc.register({ url: `${rx.url}/two`, events: ['job.succeeded', 'job.cancelled'] });
      assert.equal(await svc.emit('job.succeeded', jobData('job_s')), 2);
      assert.equal(await svc.emit('job.failed', jobData('job_f')), 2);
      assert.equal(await svc.emit('job.cancelled', jobData('job_c')), 2);
      svc.start();
      await waitFor(() => rx.requests.length >= 6, 'six deliveries');
      await sleep(50);
      const got = (path: string) =>
        rx.requests
          .filter((r) => r.path === path)
          .map((r) => r.headers['sluice-event'])
          .sort();
      assert.deepEqual(got('/failed'), ['job.failed']);
      assert.deepEqual(got('/all'), ['job.cancelled', 'job.failed', 'job.succeeded']);
      assert.deepEqual(got('/two'), ['job.cancelled', 'job.succeeded']);
      assert.equal(rx.requests.length, 6);
      const log = await svc.deliveries(two.webhook.id);
      assert.deepEqual(log.map((d) => d.job_id).sort(), ['job_c', 'job_s']);
      assert.ok(log.every((d) => d.status === 'delivered' && d.last_status === 204));
      assert.equal((await svc.deliveries(failedOnly.webhook.id)).length, 1);
      assert.equal((await svc.deliveries(all.webhook.id)).length, 3);
      assert.equal((await svc.deliveries(all.webhook.id, 2)).length, 2, 'limit');
    });

    it('counts a timeout and a refused connection as failed attempts with a clear last_error', async () => {
      const rx = await receiver(() => 'hang');
      const closed = await startReceiver(() => 200);
      await closed.close(); // its port now refuses connections
      const svc = service({ timeoutMs: 150, retry: { attempts: 2, baseMs: 10, maxMs: 10 } });
      const slow = await svc.register({ url: rx.url, events: ['*'] });
      const gone = await svc.register({ url: closed.url, events: ['*'] });
      await svc.emit('job.succeeded', jobData());

      const started = Date.now();
      assert.equal(await svc.deliverDue(), 2);
      const took = Date.now() - started;
      assert.ok(took >= 140 && took < 3000, `the attempt ended at the timeout (${took} ms)`);
      const timedOut = await onlyDelivery(svc, slow.webhook.id);
      assert.equal(timedOut.status, 'pending');
      assert.equal(timedOut.attempts, 1);
      assert.equal(timedOut.last_status, null);
      assert.equal(timedOut.last_error, 'timed out after 150 ms');
      const refused = await onlyDelivery(svc, gone.webhook.id);
      assert.equal(refused.attempts, 1);
      assert.equal(refused.last_status, null);
      assert.match(refused.last_error ?? '', /^connection failed: ECONNREFUSED/);

      // The last attempt fails the same way and ends the delivery.
      assert.equal(await svc.deliverDue(Date.now() + 1000), 2);
      const final = await onlyDelivery(svc, slow.webhook.id);
      assert.equal(final.status, 'failed');
      assert.equal(final.attempts, 2);
      assert.equal(final.last_error, 'timed out after 150 ms');
    });

    it('keeps retrying after a restart: a new service on the same store picks up pending deliveries', async () => {
      const rx = await receiver((_req, n) => (n === 1 ? 503 : 200));
      const firstDb = await store.open();
      const first = new WebhookService({
        db: firstDb,
        logger,
        retry: { attempts: 4, baseMs: 10, maxMs: 10 },
      });
      const { webhook, secret } = await first.register({ url: rx.url, events: ['job.succeeded'] });
      await first.emit('job.succeeded', jobData('job_r1'));
      assert.equal(await first.deliverDue(), 1);
      await first.emit('job.succeeded', jobData('job_r2')); // queued, never attempted
      await first.stop();
      await firstDb.close();

      const second = service({ retry: { attempts: 4, baseMs: 10, maxMs: 10 } });
      const before = await second.deliveries(webhook.id);
      assert.deepEqual(
        before.map((d) => [d.job_id, d.status, d.attempts, d.last_status]),
        [
          ['job_r2', 'pending', 0, null],
          ['job_r1', 'pending', 1, 503],
        ],
      );
      second.start();
      await waitFor(
        async () => (await second.deliveries(webhook.id)).every((d) => d.status === 'delivered'),
        'both deliveries',
      );
      const log = await second.deliveries(webhook.id);
      assert.deepEqual(
        log.map((d) => [d.job_id, d.attempts, d.last_status]),
        [
          ['job_r2', 1, 200],
          ['job_r1', 2, 200],
        ],
      );
      assert.equal(rx.requests.length, 3);
      assert.ok(
        rx.requests.every((r) => verifySignature(secret, r.body, r.headers['sluice-signature'] as string)),
      );
    });

    it('validates registrations and removes hooks, giving up their pending deliveries', async () => {
      const svc = service();
      const bad = async (
        input: { url: string; events: string[]; secret?: string },
        field: string,
        pattern: RegExp,
      ) => {
        await assert.rejects(svc.register(input), (err: unknown) => {
          assert.ok(err instanceof SluiceError);
          assert.equal(err.code, 'SLUICE_BAD_REQUEST');
          assert.equal(err.details?.field, field);
          assert.match(err.message, pattern);
          return true;
        });
      };
      await bad({ url: 'ftp://example.com/x', events: ['*'] }, 'url', /^url: .*http or https, not ftp/);
      await bad({ url: 'not a url', events: ['*'] }, 'url', /^url: "not a url" is not a valid URL/);
      await bad({ url: 'http://127.0.0.1/', events: [] }, 'events', /^events: must list/);
      await bad({ url: 'http://127.0.0.1/', events: ['job.exploded'] }, 'events', /"job\.exploded"/);
      await bad({ url: 'http://127.0.0.1/', events: ['*'], secret: '' }, 'secret', /^secret:/);
      assert.deepEqual(await svc.list(), []);

      const rx = await receiver(() => 200);
      const mine = await svc.register({ url: `${rx.url}/a`, events: ['*'], secret: 'my-own-secret-value' });
      assert.equal(mine.secret, 'my-own-secret-value');
      const other = await svc.register({ url: `${rx.url}/b`, events: ['job.failed'] });
      assert.notEqual(other.secret, mine.secret);
      assert.deepEqual(
        // Two hooks made in one millisecond have no defined order: compare by URL.
        (await svc.list())
          .map((w) => [w.id, w.url, w.events])
          .sort((x, y) => String(x[1]).localeCompare(String(y[1]))),
        [
          [mine.webhook.id, `${rx.url}/a`, ['*']],
          [other.webhook.id, `${rx.url}/b`, ['job.failed']],
        ],
      );

      assert.equal(await svc.emit('job.failed', jobData()), 2);
      await svc.remove(mine.webhook.id);
      assert.deepEqual(
        (await svc.list()).map((w) => w.id),
        [other.webhook.id],
      );
      assert.equal(await svc.deliverDue(), 1, 'only the remaining hook is sent to');
      assert.deepEqual(
        rx.requests.map((r) => r.path),
        ['/b'],
      );
      const given = await db.get<{ status: string; last_error: string }>(
        'SELECT status, last_error FROM webhook_deliveries WHERE webhook_id = $1',
        [mine.webhook.id],
      );
      assert.deepEqual({ ...given }, { status: 'failed', last_error: 'webhook removed before delivery' });
      assert.equal(await svc.emit('job.failed', jobData()), 1, 'a removed hook gets no new deliveries');

      for (const call of [() => svc.remove(mine.webhook.id), () => svc.deliveries(mine.webhook.id)]) {
        await assert.rejects(
          call(),
          (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_NOT_FOUND',
        );
      }
    });

    it('does not follow redirects: a 3xx is a failed attempt', async () => {
      const rx = await receiver((req) =>
        req.path === '/moved' ? { status: 302, headers: { location: '/elsewhere' } } : 200,
      );
      const svc = service({ retry: { attempts: 1, baseMs: 10, maxMs: 10 } });
      const { webhook } = await svc.register({ url: `${rx.url}/moved`, events: ['*'] });
      await svc.emit('job.cancelled', jobData());
      assert.equal(await svc.deliverDue(), 1);
      const d = await onlyDelivery(svc, webhook.id);
      assert.deepEqual([d.status, d.last_status, d.last_error], ['failed', 302, 'HTTP 302']);
      assert.deepEqual(
        rx.requests.map((r) => r.path),
        ['/moved'],
      );
    });

    it('sends at most `concurrency` at once, and stop() waits for sends in flight', async () => {
      let open = 0;
      let most = 0;
      const rx = await receiver(() => {
        open++;
        most = Math.max(most, open);
        setTimeout(() => open--, 60);
        return { status: 200, delayMs: 60 };
      });
      const svc = service({ concurrency: 2 });
      const hooks = [];
      for (let i = 0; i < 5; i++)
        hooks.push((await svc.register({ url: `${rx.url}/${i}`, events: ['*'] })).webhook);
      assert.equal(await svc.emit('job.succeeded', jobData()), 5);
      svc.start();
      await waitFor(() => rx.requests.length === 5, 'five requests');
      // The fifth request has arrived but not been answered yet: stop() must wait for its answer.
      await svc.stop();
      for (const hook of hooks) assert.equal((await onlyDelivery(svc, hook.id)).status, 'delivered');
      assert.ok(most <= 2, `${most} requests in flight at once, at most 2`);
    });

    it('never sends one attempt twice when several senders race for it', async () => {
      const rx = await receiver(() => 200);
      const one = service();
      const two = service();
      const { webhook } = await one.register({ url: rx.url, events: ['*'] });
      await one.emit('job.succeeded', jobData());
      const counts = await Promise.all([
        one.deliverDue(),
        two.deliverDue(),
        one.deliverDue(),
        two.deliverDue(),
      ]);
      assert.equal(
        counts.reduce((a, b) => a + b, 0),
        1,
        `one sender wins the claim (${counts})`,
      );
      assert.equal(rx.requests.length, 1);
      assert.equal((await onlyDelivery(one, webhook.id)).attempts, 1);
    });

    it('computes backoff as full jitter under an exponential ceiling with a cap', () => {
      const retry = { attempts: 8, baseMs: 1000, maxMs: 300_000 };
      assert.deepEqual(
        [1, 2, 3, 4, 8, 9, 12].map((n) => backoffDelay(n, retry, () => 1)),
        [1000, 2000, 4000, 8000, 128_000, 256_000, 300_000],
      );
      assert.equal(
        backoffDelay(5, retry, () => 0),
        0,
      );
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(3, retry);
        assert.ok(d >= 0 && d <= 4000, `${d} within [0, 4000]`);
      }
    });
  });
}
