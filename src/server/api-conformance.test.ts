/**
 * The v1 API answers every bad request in its own error shape with the status HTTP means for it,
 * and its OpenAPI document declares those answers and the rules the routes enforce. (The fuzzer,
 * scripts/fuzz-api.sh, checks the same against the document with generated requests.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from './server.ts';
import { type Api, apiClient, startTestServer } from './test-util.ts';

type ErrorBody = { error: { code: string; message: string } };

/** A raw request, for what fetch will not send (a method fetch refuses, a URL as it is). */
function raw(
  url: string,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, method, path: target, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function errorOf(res: { body: string; headers: Record<string, unknown> }): ErrorBody['error'] {
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const parsed = JSON.parse(res.body) as ErrorBody;
  assert.deepEqual(Object.keys(parsed), ['error'], res.body);
  assert.equal(typeof parsed.error.code, 'string', res.body);
  assert.equal(typeof parsed.error.message, 'string', res.body);
  return parsed.error;
}

describe('v1 API conformance', () => {
  let work: string;
  let server: RunningServer;
  let api: Api;
  let reader: Api;
  let auth: Record<string, string>;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'sluice-conformance-'));
    ({ server, api } = await startTestServer(path.join(work, 'sluice.db'), path.join(work, 'state')));
    auth = { authorization: `Bearer ${api.token}` };
    const made = await api.call<{ token: string }>('POST', '/v1/tokens', { name: 'r', scopes: ['read'] });
    reader = apiClient(api.url, made.body.token);
  });
  after(async () => {
    await server.close();
    await rm(work, { recursive: true, force: true });
  });

  it('answers the QUERY method (no body) with 405 on a known path and 404 elsewhere, never 500', async () => {
    const known = await raw(api.url, 'QUERY', '/v1/jobs', auth);
    assert.equal(known.status, 405, known.body);
    assert.equal(errorOf(known).code, 'SLUICE_METHOD_NOT_ALLOWED');
    assert.equal(known.headers.allow, 'GET, HEAD, POST');
    const health = await raw(api.url, 'QUERY', '/healthz');
    assert.equal(health.status, 405, health.body);
    const unknown = await raw(api.url, 'QUERY', '/v1/nowhere', auth);
    assert.equal(unknown.status, 404, unknown.body);
    assert.equal(errorOf(unknown).code, 'SLUICE_NOT_FOUND');
  });

  it('gives 405 with Allow for an undeclared method of a known path', async () => {
    const res = await raw(api.url, 'PATCH', '/v1/jobs', auth);
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'GET, HEAD, POST');
    assert.match(errorOf(res).message, /PATCH is not a method of \/v1\/jobs; it takes GET, HEAD, POST/);
    const byId = await raw(api.url, 'PUT', '/v1/jobs/job_x', auth);
    assert.equal(byId.status, 405);
    assert.equal(byId.headers.allow, 'GET, HEAD');
    // /v1/pipelines/:ref matches this path too, but the document (and the client) know it as its own.
    const validate = await raw(api.url, 'OPTIONS', '/v1/pipelines/validate', auth);
    assert.equal(validate.status, 405);
    assert.equal(validate.headers.allow, 'POST');
  });

  it('gives 404 for an unknown route whatever the token, not 403', async () => {
    for (const headers of [{ authorization: `Bearer ${reader.token}` }, auth, {}]) {
      const res = await raw(api.url, 'GET', '/v1/nowhere', headers);
      assert.equal(res.status, 404, res.body);
      const error = errorOf(res);
      assert.equal(error.code, 'SLUICE_NOT_FOUND');
      assert.equal(error.message, 'no route GET /v1/nowhere');
    }
  });

  it('answers a bad percent-escape (400), an overlong id (414) and overlong headers (431) in its own shape', async () => {
    const badEscape = await raw(api.url, 'GET', '/v1/jobs/%zz', auth);
    assert.equal(badEscape.status, 400);
    assert.deepEqual(errorOf(badEscape), {
      code: 'SLUICE_BAD_REQUEST',
      message: 'the path /v1/jobs/%zz has an invalid percent-escape',
    });
    const long = await raw(api.url, 'GET', `/v1/jobs/${'a'.repeat(150)}`, auth);
    assert.equal(long.status, 414);
    assert.equal(errorOf(long).code, 'SLUICE_BAD_REQUEST');
    assert.match(errorOf(long).message, /longer than any id or name \(at most 100 characters\)/);
    const huge = await raw(api.url, 'GET', `/v1/jobs/${'a'.repeat(100_000)}`, auth);
    assert.equal(huge.status, 431);
    assert.equal(errorOf(huge).code, 'SLUICE_BAD_REQUEST');
  });

  it('refuses a body it does not read with 415, naming what it reads', async () => {
    const res = await raw(
      api.url,
      'POST',
      '/v1/pipelines',
      { ...auth, 'content-type': 'application/octet-stream' },
      'xx',
    );
    assert.equal(res.status, 415, res.body);
    const error = errorOf(res);
    assert.equal(error.code, 'SLUICE_UNSUPPORTED_MEDIA_TYPE');
    assert.match(error.message, /application\/octet-stream is not accepted; send application\/json/);
  });

  it('serves the OpenAPI document to any token, not without one', async () => {
    const anonymous = await raw(api.url, 'GET', '/v1/openapi.json');
    assert.equal(anonymous.status, 401);
    assert.equal(errorOf(anonymous).code, 'SLUICE_UNAUTHORIZED');
    assert.equal((await reader.call('GET', '/v1/openapi.json')).status, 200);
  });

  it('declares every error answer with the error shape, and the rules the routes enforce', async () => {
    type Schema = {
      type?: string;
      pattern?: string;
      format?: string;
      required?: string[];
      properties?: Record<string, Schema>;
    };
    type Operation = {
      parameters?: { name: string; in: string; schema: Schema }[];
      requestBody?: { content: Record<string, { schema: Schema }> };
      responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
    };
    const doc = (await reader.call('GET', '/v1/openapi.json')).body as unknown as {
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: Record<string, Schema> };
    };
    const statuses = (p: string, m: string) => Object.keys(doc.paths[p]![m]!.responses);
    assert.deepEqual(statuses('/v1/jobs', 'post'), [
      '200',
      '201',
      '400',
      '401',
      '403',
      '404',
      '409',
      '413',
      '415',
      '422',
    ]);
    assert.deepEqual(statuses('/v1/jobs', 'get'), ['200', '400', '401']);
    assert.deepEqual(statuses('/v1/jobs/{id}', 'get'), ['200', '400', '401', '404', '414']);
    assert.deepEqual(statuses('/v1/tokens/{id}', 'delete'), [
      '200',
      '400',
      '401',
      '403',
      '404',
      '409',
      '414',
    ]);
    assert.deepEqual(statuses('/healthz', 'get'), ['200']);
    for (const text of ['/metrics', '/v1/jobs/{id}/logs'])
      assert.deepEqual(Object.keys(doc.paths[text]!.get!.responses['200']!.content!), ['text/plain'], text);
    const ref = doc.paths['/v1/jobs']!.post!.responses['409']!.content!['application/json']!.schema;
    assert.deepEqual(ref, { $ref: '#/components/schemas/ApiError' });
    const shape = doc.components.schemas.ApiError!;
    assert.deepEqual(shape.required, ['error']);
    assert.deepEqual(Object.keys(shape.properties!.error!.properties!), ['code', 'message', 'details']);

    const state = doc.paths['/v1/jobs']!.get!.parameters!.find((p) => p.name === 'state')!;
    assert.ok(state.schema.pattern?.includes('cancelling'), JSON.stringify(state));
    const backfill = doc.paths['/v1/backfills']!.post!.requestBody!.content['application/json']!.schema;
    assert.equal(backfill.properties!.from!.format, 'date');
    assert.equal(backfill.properties!.to!.format, 'date');
    const webhook = doc.paths['/v1/webhooks']!.post!.requestBody!.content['application/json']!.schema;
    assert.equal(webhook.properties!.url!.format, 'uri');
  });
});
