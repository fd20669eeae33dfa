/** The v1 API beyond the job lifecycle (suite.ts): pipelines, post-processing, logs, errors, query, limits. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitUntil } from '../sdk/testing.ts';
import type { ApiJob } from './jobs.ts';
import type { RunningServer } from './server.ts';
import { type Api, generateSpec, startTestServer, waitForJob } from './test-util.ts';
import { verifySignature } from './webhooks.ts';

type ErrorBody = {
  error: { code: string; message: string; details?: { issues?: { line: number; col: number }[] } };
};

describe('v1 API', () => {
  let work: string;
  let server: RunningServer;
  let api: Api;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'sluice-api-'));
    ({ server, api } = await startTestServer(path.join(work, 'sluice.db'), path.join(work, 'state'), {
      webhookRetry: { attempts: 4, baseMs: 50, maxMs: 200 },
    }));
  });
  after(async () => {
    await server.close();
    await rm(work, { recursive: true, force: true });
  });

  const submit = async (spec: string, params?: Record<string, string>) => {
    const res = await api.call<{ job: ApiJob }>('POST', '/v1/jobs', {
      spec,
      base_dir: work,
      ...(params ? { params } : {}),
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.job;
  };

  it('keeps every version of a pipeline and serves each spec', async () => {
    const v1 = await api.call<{ pipeline: { name: string }; version: number }>('POST', '/v1/pipelines', {
      spec: generateSpec('versioned', { count: 1 }),
      base_dir: work,
    });
    assert.equal(v1.status, 201);
    assert.equal(v1.body.version, 1);
    const v2 = await api.call<{ version: number }>('PUT', '/v1/pipelines/versioned', {
      spec: generateSpec('versioned', { count: 2 }),
      base_dir: work,
    });
    assert.equal(v2.body.version, 2);
    const detail = await api.call<{ versions: { version: number }[] }>('GET', '/v1/pipelines/versioned');
    assert.deepEqual(
      detail.body.versions.map((v) => v.version),
      [1, 2],
    );
    const first = await api.call<{ spec: string }>('GET', '/v1/pipelines/versioned/versions/1');
    assert.match(first.body.spec, /count: 1\n/);
    const renamed = await api.call<ErrorBody>('PUT', '/v1/pipelines/versioned', {
      spec: generateSpec('other-name', { count: 1 }),
    });
    assert.equal(renamed.status, 409);
    assert.match(renamed.body.error.message, /metadata.name is "other-name"/);
  });

  it('validates as a dry run: 200 or 422 with line and column, storing nothing', async () => {
    const before = await api.call<{ pipelines: unknown[] }>('GET', '/v1/pipelines');
    const ok = await api.call<{ valid: boolean }>('POST', '/v1/pipelines/validate', {
      spec: generateSpec('dry', { count: 1 }),
    });
    assert.deepEqual(ok.body, { valid: true, pipeline: 'dry' });
    const bad = await api.call<ErrorBody>('POST', '/v1/pipelines/validate', {
      spec: generateSpec('dry', { count: 1 }).replace('batch_size: 200', 'batch_sise: 200'),
    });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.code, 'SLUICE_SPEC_INVALID');
    assert.match(bad.body.error.message, /batch_size/, 'suggests the nearest valid key');
    assert.equal(bad.body.error.details?.issues?.[0]?.line, 13);
    const afterList = await api.call<{ pipelines: unknown[] }>('GET', '/v1/pipelines');
    assert.equal(afterList.body.pipelines.length, before.body.pipelines.length);
  });

  it('stores a spec that needs params, and refuses a job that does not give them', async () => {
    const spec = generateSpec('needs-day', { count: 3, out: '"out/${param:day}/"' });
    const saved = await api.call('POST', '/v1/pipelines', { spec, base_dir: work });
    assert.equal(saved.status, 201);
    const refused = await api.call<ErrorBody>('POST', '/v1/jobs', { pipeline: 'needs-day' });
    assert.equal(refused.status, 422);
    assert.match(refused.body.error.message, /param day is not set/);
    const job = await api.call<{ job: ApiJob }>('POST', '/v1/jobs', {
      pipeline: 'needs-day',
      params: { day: '2026-12-01' },
    });
    assert.equal(job.status, 201);
    assert.equal((await waitForJob(api, job.body.job.id)).state, 'succeeded');
  });

  it('fails a job whose error-severity check fails, and records a warn check without failing', async () => {
    const strict = `${generateSpec('checked', { count: 5 })}checks:\n  - row_count: { min: 10 }\n`;
    const failed = await waitForJob(api, (await submit(strict)).id);
    assert.equal(failed.state, 'failed');
    assert.match(failed.reason ?? '', /check failed: row_count \(5 records written; expected at least 10\)/);
    const lenient = `${generateSpec('checked-warn', { count: 5 })}checks:\n  - row_count: { min: 10, severity: warn }\n  - error_rate: { max: 0 }\n`;
    const ok = await waitForJob(api, (await submit(lenient)).id);
    assert.equal(ok.state, 'succeeded');
    assert.deepEqual(
      (ok.checks as { check: string; passed: boolean }[]).map((c) => [c.check, c.passed]),
      [
        ['row_count', false],
        ['error_rate', true],
      ],
    );
  });

  it('serves error records, SQL over the run, the summary and JSON logs with the job id', async () => {
    await writeFile(path.join(work, 'in.jsonl'), '{"id": 1}\n{"id": 2\n{"id": 3}\n');
    const spec = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: with-errors }
source:
  file: { path: in.jsonl, format: jsonl }
sink:
  file: { path: out/with-errors/, format: jsonl }
`;
    const job = await waitForJob(api, (await submit(spec)).id);
    assert.equal(job.state, 'succeeded', job.reason ?? '');
    const errors = await api.call<{ errors: { code: string; raw?: string }[] }>(
      'GET',
      `/v1/jobs/${job.id}/errors`,
    );
    assert.equal(errors.body.errors.length, 1);
    assert.equal(errors.body.errors[0]?.code, 'SLUICE_DECODE');
    const query = await api.call<{ rows: { code: string; n: number }[] }>(
      'POST',
      `/v1/jobs/${job.id}/query`,
      {
        sql: 'SELECT code, count(*) AS n FROM errors GROUP BY code',
      },
    );
    assert.equal(query.status, 200, JSON.stringify(query.body));
    assert.deepEqual(query.body.rows, [{ code: 'SLUICE_DECODE', n: 1 }]);
    const badSql = await api.call<ErrorBody>('POST', `/v1/jobs/${job.id}/query`, {
      sql: 'SELECT * FROM nowhere',
    });
    assert.equal(badSql.status, 400);
    assert.equal(badSql.body.error.code, 'SLUICE_QUERY_FAILED');
    const summary = await api.call<{ records: { read: number; written: number; failed: number } }>(
      'GET',
      `/v1/jobs/${job.id}/summary`,
    );
    assert.deepEqual(summary.body.records.written, 2);
    assert.equal(summary.body.records.failed, 1);
    const logs = await api.call<string>('GET', `/v1/jobs/${job.id}/logs`);
    const lines = String(logs.body).trim().split('\n');
    assert.ok(lines.length >= 2, 'the job logged its start and end');
    for (const line of lines) assert.equal(JSON.parse(line).job_id, job.id);
    assert.equal(Number(logs.headers.get('sluice-log-offset')), Buffer.byteLength(String(logs.body)));
    const followed = await api.call<string>('GET', `/v1/jobs/${job.id}/logs?follow=true`);
    assert.equal(followed.body, logs.body, 'follow on a finished job returns the whole log and ends');
  });

  it('refuses bodies over the limit, unknown routes and bad query parameters with the error shape', async () => {
    const huge = await api.call<ErrorBody>('POST', '/v1/pipelines', { spec: 'x'.repeat(2 * 1024 * 1024) });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error.code, 'SLUICE_BAD_REQUEST');
    const missing = await api.call<ErrorBody>('GET', '/v1/nothing');
    assert.equal(missing.status, 404);
    const badState = await api.call<ErrorBody>('GET', '/v1/jobs?state=runing');
    assert.equal(badState.status, 400);
    assert.match(
      badState.body.error.message,
      /^querystring\.state: unknown state; valid: .*pending, running/,
    );
    const noJob = await api.call<ErrorBody>('GET', '/v1/jobs/job_nope');
    assert.equal(noJob.status, 404);
    assert.equal(noJob.body.error.code, 'SLUICE_NOT_FOUND');
  });

  it('publishes the OpenAPI document and metrics only with a token', async () => {
    assert.equal((await fetch(`${api.url}/v1/openapi.json`)).status, 401);
    const doc = (await api.call('GET', '/v1/openapi.json')).body as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    assert.equal(doc.openapi, '3.1.0');
    for (const route of [
      '/v1/jobs',
      '/v1/jobs/{id}/cancel',
      '/v1/pipelines',
      '/v1/schedules',
      '/v1/webhooks',
      '/v1/tokens',
    ])
      assert.ok(doc.paths[route], `${route} is documented`);
    assert.equal((await fetch(`${api.url}/metrics`)).status, 401);
    const metrics = await api.call<string>('GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.body), /sluice_jobs\{state="succeeded"\} \d+/);
  });

  it('sends a signed job.failed webhook when a job ends, retrying after the receiver answers 500', async () => {
    const received: { headers: IncomingHttpHeaders; body: string; at: number }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        received.push({ headers: req.headers, body, at: Date.now() });
        res.statusCode = received.length === 1 ? 500 : 200;
        res.end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
      const hook = await api.call<{ webhook: { id: string }; secret: string }>('POST', '/v1/webhooks', {
        url,
        events: ['job.failed'],
      });
      assert.equal(hook.status, 201);
      const strict = `${generateSpec('hooked', { count: 3 })}checks:\n  - row_count: { min: 10 }\n`;
      const job = await waitForJob(api, (await submit(strict)).id);
      assert.equal(job.state, 'failed');
      await waitUntil('the webhook delivered after one failed attempt', () => received.length >= 2);
      assert.equal(received.length, 2, 'one failed attempt, then the delivery');
      const [first, second] = received as [(typeof received)[0], (typeof received)[0]];
      assert.equal(
        first.headers['sluice-delivery'],
        second.headers['sluice-delivery'],
        'the retry is the same delivery',
      );
      const signature = String(second.headers['sluice-signature']);
      assert.ok(
        verifySignature(hook.body.secret, second.body, signature),
        'the signature verifies with the secret',
      );
      assert.ok(!verifySignature('whsec_wrong', second.body, signature));
      const payload = JSON.parse(second.body) as {
        event: string;
        data: { job: { id: string; state: string; reason: string } };
      };
      assert.equal(payload.event, 'job.failed');
      assert.equal(payload.data.job.id, job.id);
      assert.match(payload.data.job.reason, /row_count/);
      const log = await api.call<{ deliveries: { status: string; attempts: number; last_status: number }[] }>(
        'GET',
        `/v1/webhooks/${hook.body.webhook.id}/deliveries`,
      );
      assert.deepEqual(
        log.body.deliveries.map((d) => [d.status, d.attempts, d.last_status]),
        [['delivered', 2, 200]],
      );
    } finally {
      receiver.close();
    }
  });

  it('cancels a pending job at once, while the only job slot is taken', async () => {
    const small = await startTestServer(path.join(work, 'one-slot.db'), path.join(work, 'one-slot'), {
      maxJobs: 1,
    });
    try {
      const post = (spec: string) =>
        small.api.call<{ job: ApiJob }>('POST', '/v1/jobs', { spec, base_dir: work }).then((r) => r.body.job);
      const busy = await post(generateSpec('slot-holder', { rate: '1000/s' }));
      await waitForJob(small.api, busy.id, (j) => j.state === 'running');
      const waiting = await post(generateSpec('slot-waiter', { count: 10 }));
      assert.equal(waiting.state, 'pending');
      const cancelled = await small.api.call<{ job: ApiJob }>('POST', `/v1/jobs/${waiting.id}/cancel`);
      assert.equal(cancelled.body.job.state, 'cancelled');
      const detail = await small.api.call<{ events: { to_state: string }[] }>(
        'GET',
        `/v1/jobs/${waiting.id}`,
      );
      assert.deepEqual(
        detail.body.events.map((e) => e.to_state),
        ['pending', 'cancelled'],
      );
      await small.api.call('POST', `/v1/jobs/${busy.id}/cancel`);
      assert.equal((await waitForJob(small.api, busy.id)).state, 'cancelled');
      const restarted = await small.api.call<{ job: ApiJob }>('POST', `/v1/jobs/${waiting.id}/restart`);
      assert.equal(restarted.body.job.state, 'pending');
      const done = await waitForJob(small.api, waiting.id);
      assert.equal(done.state, 'succeeded');
      assert.equal(done.restarts, 1);
    } finally {
      await small.server.close();
    }
  });

  it('pages through jobs newest first', async () => {
    const all = await api.call<{ jobs: ApiJob[] }>('GET', '/v1/jobs?limit=1000');
    const seen: string[] = [];
    let before: string | null = null;
    do {
      const page: { body: { jobs: ApiJob[]; next: string | null } } = await api.call(
        'GET',
        `/v1/jobs?limit=2${before ? `&before=${before}` : ''}`,
      );
      seen.push(...page.body.jobs.map((j) => j.id));
      before = page.body.next;
    } while (before);
    assert.deepEqual(
      seen,
      all.body.jobs.map((j) => j.id),
    );
    assert.deepEqual([...seen].sort().reverse(), seen);
  });
});
