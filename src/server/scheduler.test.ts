import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { defaultRegistry } from '../registry.ts';
import { buildApp } from './app.ts';
import type { ServerContext } from './context.ts';
import { ServerMetrics } from './metrics.ts';
import { jobService, NIGHTLY_SPEC, recordingLogger, schedulerSuite } from './scheduler.suite.ts';
import { Scheduler } from './scheduler.ts';
import type { Db } from './store/db.ts';
import { JobStore } from './store/jobs.ts';
import { createTestStore, type TestStore } from './store/test-util.ts';
import { Supervisor } from './supervisor.ts';
import { testWorkspace } from './test-util.ts';
import { WebhookService } from './webhooks.ts';

schedulerSuite('sqlite');

// The routes through the server's own app (auth, scopes, error rendering) on a real port; the
// supervisor and the other loops are built but never started, so no job runs.
describe('schedule routes', () => {
  let ts: TestStore;
  let db: Db;
  let app: FastifyInstance;
  let base: string;
  let writeToken: string;
  let readToken: string;

  before(async () => {
    ts = await createTestStore('sqlite');
    db = await ts.openMigrated();
    const store = new JobStore(db);
    const logger = recordingLogger();
    const registry = defaultRegistry();
    const metrics = new ServerMetrics({ jobCounts: () => store.countByState() });
    const webhooks = new WebhookService({ db, logger });
    const supervisor = new Supervisor({
      store,
      logger,
      metrics,
      webhooks,
      stateDir: ts.dir,
      workspace: testWorkspace(ts.dir),
      maxJobs: 1,
      cancelGraceMs: 1000,
    });
    const jobs = jobService(store, logger);
    const scheduler = new Scheduler({
      db,
      store,
      logger,
      submit: (req) => jobs.submit(req),
      now: () => Date.parse('2025-01-01T00:00:00Z'),
    });
    const ctx: ServerContext = {
      db,
      store,
      logger,
      registry,
      stateDir: ts.dir,
      jobs,
      supervisor,
      webhooks,
      scheduler,
      metrics,
      workspace: testWorkspace(ts.dir),
      queryTimeoutMs: 30_000,
    };
    await store.savePipeline('nightly', NIGHTLY_SPEC, ts.dir);
    writeToken = (await store.createToken('writer', ['write'])).token;
    readToken = (await store.createToken('reader', ['read'])).token;
    app = await buildApp(ctx);
    base = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await app.close();
    await db.close();
    await ts.dispose();
  });

  async function call(method: string, url: string, body?: unknown, token = writeToken) {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  it('creates, reads, changes and deletes a schedule', async () => {
    const created = await call('POST', '/v1/schedules', {
      pipeline: 'nightly',
      cron: '0 2 * * *',
      timezone: 'Europe/Berlin',
      params: { region: 'eu' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const s = created.body.schedule;
    assert.match(s.id, /^sch_/);
    assert.deepEqual(
      { ...s, id: undefined, pipeline: { ...s.pipeline, id: undefined } },
      {
        id: undefined,
        pipeline: { id: undefined, name: 'nightly' },
        cron: '0 2 * * *',
        timezone: 'Europe/Berlin',
        catch_up: 'latest',
        param_name: 'date',
        params: { region: 'eu' },
        enabled: true,
        last_fire_at: null,
        next_fire_at: '2025-01-01T01:00:00.000Z',
        created_at: '2025-01-01T00:00:00.000Z',
        updated_at: '2025-01-01T00:00:00.000Z',
      },
    );

    const list = await call('GET', '/v1/schedules', undefined, readToken);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body, { schedules: [s] });
    assert.deepEqual((await call('GET', `/v1/schedules/${s.id}`, undefined, readToken)).body, {
      schedule: s,
    });

    const patched = await call('PATCH', `/v1/schedules/${s.id}`, { enabled: false });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.schedule.enabled, false);
    assert.equal(patched.body.schedule.next_fire_at, null);

    const deleted = await call('DELETE', `/v1/schedules/${s.id}`);
    assert.equal(deleted.status, 204);
    assert.equal(deleted.body, undefined);
    const gone = await call('GET', `/v1/schedules/${s.id}`, undefined, readToken);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'SLUICE_NOT_FOUND');
  });

  it('refuses bad input with 400 naming the field, and writes without the write scope', async () => {
    const badCron = await call('POST', '/v1/schedules', { pipeline: 'nightly', cron: 'daily' });
    assert.equal(badCron.status, 400);
    assert.equal(badCron.body.error.code, 'SLUICE_BAD_REQUEST');
    assert.match(badCron.body.error.message, /^cron "daily" is not valid/);
    assert.deepEqual(badCron.body.error.details, { field: 'cron' });

    const badPolicy = await call('POST', '/v1/schedules', {
      pipeline: 'nightly',
      cron: '0 2 * * *',
      catch_up: 'some',
    });
    assert.equal(badPolicy.status, 400);
    assert.match(badPolicy.body.error.message, /catch_up/);

    const unknownField = await call('POST', '/v1/schedules', {
      pipeline: 'nightly',
      cron: '0 2 * * *',
      tz: 'UTC',
    });
    assert.equal(unknownField.status, 400);

    const unknownPipeline = await call('POST', '/v1/schedules', { pipeline: 'nope', cron: '0 2 * * *' });
    assert.equal(unknownPipeline.status, 404);

    const forbidden = await call(
      'POST',
      '/v1/schedules',
      { pipeline: 'nightly', cron: '0 2 * * *' },
      readToken,
    );
    assert.equal(forbidden.status, 403);
    const backfillForbidden = await call(
      'POST',
      '/v1/backfills',
      { pipeline: 'nightly', from: '2025-01-01', to: '2025-01-02' },
      readToken,
    );
    assert.equal(backfillForbidden.status, 403);
  });

  it('backfills through POST /v1/backfills, the same jobs on a repeat', async () => {
    const body = { pipeline: 'nightly', from: '2025-01-30', to: '2025-02-02', param_name: 'date' };
    const first = await call('POST', '/v1/backfills', body);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.deepEqual(
      first.body.jobs.map((j: { params: { date: string } }) => j.params.date),
      ['2025-01-30', '2025-01-31', '2025-02-01', '2025-02-02'],
    );
    assert.equal(first.body.jobs[0].pipeline.name, 'nightly');
    assert.equal(first.body.jobs[0].state, 'pending');
    const second = await call('POST', '/v1/backfills', body);
    assert.equal(second.status, 201);
    assert.deepEqual(
      second.body.jobs.map((j: { id: string }) => j.id),
      first.body.jobs.map((j: { id: string }) => j.id),
    );

    const reversed = await call('POST', '/v1/backfills', { ...body, from: '2025-02-02', to: '2025-01-30' });
    assert.equal(reversed.status, 400);
    assert.deepEqual(reversed.body.error.details, { field: 'to' });
  });

  it('documents the routes in OpenAPI under the schedules tag', async () => {
    const doc = (await call('GET', '/v1/openapi.json')).body as {
      paths: Record<string, Record<string, { tags: string[] }>>;
    };
    const ops = [
      ['/v1/schedules', 'post'],
      ['/v1/schedules', 'get'],
      ['/v1/schedules/{id}', 'get'],
      ['/v1/schedules/{id}', 'patch'],
      ['/v1/schedules/{id}', 'delete'],
      ['/v1/backfills', 'post'],
    ] as const;
    for (const [path, method] of ops)
      assert.deepEqual(doc.paths[path]?.[method]?.tags, ['schedules'], `${method} ${path}`);
  });
});
