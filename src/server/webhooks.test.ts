import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { toSluiceError } from '../sdk/errors.ts';
import type { ServerContext } from './context.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import type { Db } from './store/db.ts';
import { createTestStore, type TestStore } from './store/test-util.ts';
import { memoryLogger, type Receiver, startReceiver, webhookSuite } from './webhooks.suite.ts';
import { signPayload, WebhookService } from './webhooks.ts';

webhookSuite('sqlite');

it('the verification snippet of docs/webhooks.md accepts our signatures and refuses bad ones', async () => {
  const doc = await readFile(new URL('../../docs/webhooks.md', import.meta.url), 'utf8');
  const snippet = /```js\n([\s\S]*?verifySluiceSignature[\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(snippet, 'docs/webhooks.md has the snippet');
  assert.ok(snippet.trim().split('\n').length <= 12, 'the snippet stays short');
  const { verifySluiceSignature: verify } = await import(
    `data:text/javascript,${encodeURIComponent(snippet)}`
  );
  const body = JSON.stringify({ id: 'whd_1', event: 'job.failed', data: { job: { id: 'job_1' } } });
  const now = Math.floor(Date.now() / 1000);
  const header = signPayload('whsec_doc', body, now);
  assert.equal(verify('whsec_doc', body, header), true);
  assert.equal(verify('whsec_doc', `${body} `, header), false);
  assert.equal(verify('whsec_other', body, header), false);
  assert.equal(verify('whsec_doc', body, signPayload('whsec_doc', body, now - 301)), false);
  for (const bad of [undefined, '', 'garbage', `t=${now}`, `t=${now},v1=zz`])
    assert.equal(verify('whsec_doc', body, bad), false);
});

// The routes on a bare fastify with the compilers of app.ts; auth and the full error handler are
// app.ts's and are covered by the server's own tests.
describe('webhook routes', () => {
  let store: TestStore;
  let db: Db;
  let svc: WebhookService;
  let app: FastifyInstance;
  let rx: Receiver;
  const scopes: Record<string, unknown> = {};

  before(async () => {
    store = await createTestStore('sqlite');
    db = await store.openMigrated();
    svc = new WebhookService({ db, logger: memoryLogger(), pollMs: 10 });
    rx = await startReceiver(() => 200);
    app = Fastify({ logger: false });
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    await app.register(fastifySwagger, {
      openapi: { info: { title: 't', version: '1' } },
      transform: jsonSchemaTransform,
    });
    app.addHook('onRoute', (route) => {
      // fastify adds a HEAD twin of every GET on its own.
      if (route.method !== 'HEAD') scopes[`${route.method} ${route.url}`] = route.config?.scope;
    });
    app.setErrorHandler((err, _req, reply) => {
      if (hasZodFastifySchemaValidationErrors(err)) {
        return reply.status(400).send({ error: { code: 'SLUICE_BAD_REQUEST', message: err.message } });
      }
      const e = toSluiceError(err);
      const status = { SLUICE_BAD_REQUEST: 400, SLUICE_NOT_FOUND: 404 }[e.code as string] ?? 500;
      return reply.status(status).send({ error: { code: e.code, message: e.message } });
    });
    webhookRoutes(app.withTypeProvider<ZodTypeProvider>(), { webhooks: svc } as unknown as ServerContext);
    await app.ready();
  });
  after(async () => {
    await app.close();
    await svc.stop();
    await rx.close();
    await db.close();
    await store.dispose();
  });

  it('declares scopes and tags, and documents every route in OpenAPI', () => {
    assert.deepEqual(scopes, {
      'POST /v1/webhooks': 'admin',
      'GET /v1/webhooks': 'read',
      'DELETE /v1/webhooks/:id': 'admin',
      'GET /v1/webhooks/:id/deliveries': 'read',
    });
    const doc = app.swagger() as unknown as { paths: Record<string, Record<string, { tags: string[] }>> };
    assert.deepEqual(Object.keys(doc.paths).sort(), [
      '/v1/webhooks',
      '/v1/webhooks/{id}',
      '/v1/webhooks/{id}/deliveries',
    ]);
    for (const ops of Object.values(doc.paths))
      for (const op of Object.values(ops)) assert.deepEqual(op.tags, ['webhooks']);
  });

  it('registers, lists, shows deliveries and removes', async () => {
    const created = await app.inject({
      method: 'POST',
      url: '/v1/webhooks',
      payload: { url: `${rx.url}/x`, events: ['job.succeeded'] },
    });
    assert.equal(created.statusCode, 201);
    const { webhook, secret } = created.json();
    assert.match(secret, /^whsec_/);
    assert.deepEqual(Object.keys(webhook).sort(), ['created_at', 'events', 'id', 'url']);

    const listed = await app.inject({ method: 'GET', url: '/v1/webhooks' });
    assert.deepEqual(listed.json(), { webhooks: [webhook] });
    assert.ok(!listed.body.includes(secret));

    await svc.emit('job.succeeded', { job: { id: 'job_1' } });
    await svc.deliverDue();
    const log = await app.inject({ method: 'GET', url: `/v1/webhooks/${webhook.id}/deliveries?limit=10` });
    assert.equal(log.statusCode, 200);
    const [d] = log.json().deliveries;
    assert.equal(d.job_id, 'job_1');
    assert.equal(d.status, 'delivered');
    assert.equal(d.attempts, 1);

    const removed = await app.inject({ method: 'DELETE', url: `/v1/webhooks/${webhook.id}` });
    assert.equal(removed.statusCode, 204);
    assert.equal(removed.body, '');
    const again = await app.inject({ method: 'DELETE', url: `/v1/webhooks/${webhook.id}` });
    assert.equal(again.statusCode, 404);
    assert.equal(again.json().error.code, 'SLUICE_NOT_FOUND');
    assert.equal(
      (await app.inject({ method: 'GET', url: `/v1/webhooks/${webhook.id}/deliveries` })).statusCode,
      404,
    );
  });

  it('refuses a bad URL, an unknown event and a bad limit with 400', async () => {
    const badUrl = await app.inject({
      method: 'POST',
      url: '/v1/webhooks',
      payload: { url: 'file:///etc/passwd', events: ['*'] },
    });
    assert.equal(badUrl.statusCode, 400);
    assert.equal(badUrl.json().error.code, 'SLUICE_BAD_REQUEST');
    assert.match(
      badUrl.json().error.message,
      /url "file:\/\/\/etc\/passwd" is not an http:\/\/ or https:\/\/ URL/,
    );
    const badEvent = await app.inject({
      method: 'POST',
      url: '/v1/webhooks',
      payload: { url: rx.url, events: ['job.exploded'] },
    });
    assert.equal(badEvent.statusCode, 400);
    assert.match(badEvent.body, /events/);
    const { webhook } = (
      await app.inject({ method: 'POST', url: '/v1/webhooks', payload: { url: rx.url, events: ['*'] } })
    ).json();
    const badLimit = await app.inject({
      method: 'GET',
      url: `/v1/webhooks/${webhook.id}/deliveries?limit=0`,
    });
    assert.equal(badLimit.statusCode, 400);
  });
});
