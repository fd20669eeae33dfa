/** The `http` step in a real run: `sluice run` (a child process) against the test server. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../../cli/exit-codes.ts';
import { sluice } from '../../cli/test-util.ts';
import type { ErrorRecordValue } from '../../engine/error-channel.ts';
import type { RunSummary } from '../../engine/run.ts';
import { assertCountsAddUp } from '../../engine/test-util.ts';
import { startTestServer, type TestServer } from './test-server.ts';

let server: TestServer;
let work: string;
before(async () => {
  server = await startTestServer();
  work = await mkdtemp(path.join(tmpdir(), 'sluice-http-'));
});
after(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

async function jsonLines<T>(files: string[]): Promise<T[]> {
  const out: T[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const line of text.split('\n')) if (line) out.push(JSON.parse(line) as T);
  }
  return out;
}

describe('http step in a pipeline run', () => {
  it('generate → http → filter → file: outputs in order, drops 404s, sends failures to the errors sink, never records the token', async () => {
    const out = path.join(work, 'out');
    const runs = path.join(work, 'runs');
    const spec = path.join(work, 'enrich.yaml');
    await writeFile(
      spec,
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: enrich }
source:
  generate: { count: 60, fields: { id: seq } }
steps:
  - name: score
    http:
      request: { url: "${server.origin}/enrich/{{ id }}" }
      auth: { bearer: "\${env:ENRICH_TOKEN}" }
      concurrency: 8
      retry: { attempts: 3, initial: 5ms, max: 20ms, on: [5xx] }
      on_status: { 404: drop }
  - filter: response.score < 0.5
sink:
  file: { path: ${out}/, format: jsonl }
settings: { batch_size: 16 }
`,
    );
    const result = await sluice(['run', spec, '--run-dir', runs, '--progress', 'none'], work, undefined, {
      ENRICH_TOKEN: server.token,
    });
    assert.equal(result.code, EXIT.ok, result.stderr + result.stdout);

    // ids 1..60: multiples of 10 answer 404 (dropped), 7, 32 and 57 answer 500 three times (errors),
    // ids ending in 3 answer 503 once (retried), scores of 0.5 and more are filtered out.
    const expected = Array.from({ length: 49 }, (_, i) => i + 1).filter(
      (id) => id % 10 !== 0 && id % 25 !== 7,
    );
    const written = await jsonLines<{ id: number; response: { id: number; score: number } }>(
      await filesUnder(out),
    );
    assert.deepEqual(
      written.map((r) => r.id),
      expected,
      'in input order, across batches',
    );
    for (const r of written) assert.deepEqual(r.response, { id: r.id, score: r.id / 100 });
    assert.equal(server.hits('/enrich/3').length, 2, 'a 503 was retried');
    assert.equal(server.hits('/enrich/7').length, 3);
    assert.ok(server.maxInFlight <= 8, `at most 8 calls in flight (${server.maxInFlight})`);

    const runFiles = await filesUnder(runs);
    const summary = JSON.parse(
      await readFile(runFiles.find((f) => f.endsWith('run.json'))!, 'utf8'),
    ) as RunSummary;
    assertCountsAddUp(summary);
    assert.deepEqual(summary.records, { read: 60, written: 43, filtered: 14, failed: 3, skipped: 0 });
    const step = summary.operators.find((o) => o.name === 'score')!;
    assert.deepEqual([step.component, step.in, step.out, step.filtered, step.failed], ['http', 60, 51, 6, 3]);
    assert.deepEqual(summary.errors.by_code, { SLUICE_HTTP_STATUS: 3 });

    const errors = await jsonLines<ErrorRecordValue>(runFiles.filter((f) => /[\\/]errors[\\/]/.test(f)));
    assert.deepEqual(
      errors.map((e) => [e.record?.id, e.code, e.attempts, e.operator, e.details?.status]),
      [
        [7, 'SLUICE_HTTP_STATUS', 3, 'score', 500],
        [32, 'SLUICE_HTTP_STATUS', 3, 'score', 500],
        [57, 'SLUICE_HTTP_STATUS', 3, 'score', 500],
      ],
    );
    assert.match(String(errors[0]!.details?.body), /^\{"error":"failed with Bearer \[REDACTED\]"\}$/);
    assert.match(
      errors[0]!.message,
      /^GET http:\/\/127\.0\.0\.1:\d+\/enrich\/7 answered 500 Internal Server Error after 3 attempts$/,
    );

    // The token reached the server, and nothing Sluice wrote holds it.
    for (const file of [...runFiles, ...(await filesUnder(out))])
      assert.ok(!(await readFile(file, 'utf8')).includes(server.token), `the token is in ${file}`);
    assert.ok(!(result.stdout + result.stderr).includes(server.token));
  });
});

describe('http step protection in a pipeline run', () => {
  it('OAuth2 with a ${secret:...} client secret, cache, rate limit and breaker: metrics in run.json and the CLI summary, no secret recorded', async () => {
    const out = path.join(work, 'out-protected');
    const runs = path.join(work, 'runs-protected');
    const secrets = path.join(work, 'secrets');
    await mkdir(secrets, { recursive: true });
    await writeFile(path.join(secrets, 'client_secret'), `${server.oauth.clientSecret}\n`);
    const spec = path.join(work, 'protected.yaml');
    // ids 1..40; the cache key is id % 4, so four calls; two records (id 13, id 33 → key 1) share a key.
    await writeFile(
      spec,
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: protected }
source:
  generate: { count: 40, fields: { id: seq } }
steps:
  - sql: SELECT id, id % 4 AS bucket FROM input
  - name: lookup
    http:
      request: { url: "${server.origin}/api/{{ bucket }}" }
      auth:
        oauth2:
          token_url: ${server.origin}/oauth/token
          client_id: ${server.oauth.clientId}
          client_secret: \${secret:client_secret}
      concurrency: 8
      rate_limit: 200/s
      breaker: { min_calls: 10 }
      cache: { key: "{{ bucket }}", ttl: 1m }
sink:
  file: { path: ${out}/, format: jsonl }
settings: { batch_size: 10 }
`,
    );
    const result = await sluice(['run', spec, '--run-dir', runs, '--progress', 'none'], work, undefined, {
      SLUICE_SECRETS_DIR: secrets,
    });
    assert.equal(result.code, EXIT.ok, result.stderr + result.stdout);
    const written = await jsonLines<{ id: number; bucket: number; response: { key: string } }>(
      await filesUnder(out),
    );
    assert.equal(written.length, 40);
    for (const r of written) assert.equal(r.response.key, String(r.bucket));
    assert.equal(server.oauth.issued.length, 1, 'one token for the run');
    assert.equal(server.requests.filter((r) => r.url.startsWith('/api/')).length, 4, 'one call per key');

    const runFiles = await filesUnder(runs);
    const summary = JSON.parse(
      await readFile(runFiles.find((f) => f.endsWith('run.json'))!, 'utf8'),
    ) as RunSummary;
    assertCountsAddUp(summary);
    const lookup = summary.operators.find((o) => o.name === 'lookup')!;
    const metrics = lookup.metrics as Record<string, Record<string, unknown>>;
    assert.deepEqual(metrics.requests, { '2xx': 4, '3xx': 0, '4xx': 0, '5xx': 0, network: 0, timeout: 0 });
    assert.equal(metrics.cache!.misses, 4);
    assert.equal((metrics.cache!.hits as number) + (metrics.cache!.joined as number), 36);
    assert.deepEqual(metrics.oauth2, { token_fetches: 1, tokens_refused: 0 });
    assert.equal(metrics.breaker!.state, 'closed');
    assert.equal(metrics.rate_limit!.per_second, 200);
    assert.equal(summary.operators.find((o) => o.component === 'sql')!.metrics, undefined);
    assert.match(
      result.stdout + result.stderr,
      /lookup: 4 requests \(2xx 4\), p50 ≤ \d+ms, p99 ≤ \d+ms; cache \d+ hits, \d+ joined, 4 misses; rate limit 200\/s, \d+ waited \d+ms in all; breaker closed; oauth2 1 token fetch/,
    );
    // /api echoes the token in its 2xx body, which is the records' data: only what Sluice records is checked.
    for (const file of runFiles) {
      const text = await readFile(file, 'utf8');
      assert.ok(!text.includes(server.oauth.clientSecret), `the client secret is in ${file}`);
      assert.ok(!text.includes(server.oauth.issued[0]!), `the access token is in ${file}`);
    }
    for (const secret of [server.oauth.clientSecret, server.oauth.issued[0]!])
      assert.ok(!(result.stdout + result.stderr).includes(secret));
  });
});

describe('http step redaction of interpolated values in a pipeline run', () => {
  it('an ${env:...} value in a header named X-Tenant, echoed by a 500, is in no error record, errors file or log', async () => {
    const runs = path.join(work, 'runs-tenant');
    const out = path.join(work, 'out-tenant');
    const spec = path.join(work, 'tenant.yaml');
    const tenant = 'tenant-4f2a-private';
    await writeFile(
      spec,
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: tenant }
source:
  generate: { count: 3, fields: { id: seq } }
steps:
  - name: echo
    http:
      request:
        url: "${server.origin}/echo/{{ id }}?status=500&t=\${env:TENANT_ID}"
        headers: { X-Tenant: "\${env:TENANT_ID}", X-Debug: "\${env:DEBUG_LEVEL}" }
      retry: { attempts: 1 }
sink:
  file: { path: ${out}/, format: jsonl }
`,
    );
    const result = await sluice(['run', spec, '--run-dir', runs, '--progress', 'none'], work, undefined, {
      TENANT_ID: tenant,
      DEBUG_LEVEL: '1',
    });
    assert.equal(result.code, EXIT.ok, result.stderr + result.stdout);
    assert.ok(
      server.requests.some((r) => r.headers['x-tenant'] === tenant),
      'the header reached the server, which echoed it',
    );
    const runFiles = await filesUnder(runs);
    const errors = await jsonLines<ErrorRecordValue>(runFiles.filter((f) => /[\\/]errors[\\/]/.test(f)));
    assert.equal(errors.length, 3);
    const body = String(errors[0]!.details?.body);
    assert.match(body, /"x-tenant":"\[REDACTED\]"/);
    assert.match(body, /"x-debug":"1"/, 'a value shorter than 6 characters is not redacted');
    assert.match(errors[0]!.message, /\/echo\/1\?status=500&t=\[REDACTED\] answered 500/);
    for (const file of runFiles)
      assert.ok(!(await readFile(file, 'utf8')).includes(tenant), `the env value is in ${file}`);
    assert.ok(!(result.stdout + result.stderr).includes(tenant));
  });
});
