/**
 * Multi-tenant confinement of the control plane: what a read token's SQL and a write token's spec
 * may touch on the server's machine. Every refusal is tried, not only the happy path.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ApiJob } from './jobs.ts';
import type { RunningServer } from './server.ts';
import { type Api, apiClient, generateSpec, startTestServer, waitForJob } from './test-util.ts';

type ErrorBody = {
  error: {
    code: string;
    message: string;
    details?: { issues?: { code: string; line: number; col: number; message: string }[] };
  };
};

describe('confinement of the control plane', () => {
  let work: string;
  let dataRoot: string;
  let secretsDir: string;
  let server: RunningServer;
  let admin: Api;
  let reader: Api;
  let jobId: string;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'sluice-confine-'));
    dataRoot = path.join(work, 'data');
    secretsDir = path.join(work, 'secrets');
    await mkdir(secretsDir, { recursive: true });
    await writeFile(path.join(secretsDir, 'db_password'), 's3cr3t-value\n');
    ({ server, api: admin } = await startTestServer(path.join(work, 'sluice.db'), path.join(work, 'state'), {
      dataRoot,
      queryTimeoutMs: 2_000,
    }));
    const made = await admin.call<{ token: string }>('POST', '/v1/tokens', { name: 'r', scopes: ['read'] });
    reader = apiClient(server.url, made.body.token);
    const submitted = await admin.call<{ job: ApiJob }>('POST', '/v1/jobs', {
      spec: generateSpec('own-tables', { count: 5 }),
    });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    jobId = submitted.body.job.id;
    assert.equal((await waitForJob(admin, jobId)).state, 'succeeded');
  });
  after(async () => {
    await server.close();
    await rm(work, { recursive: true, force: true });
  });

  describe('POST /v1/jobs/:id/query with a read token', () => {
    const query = (sql: string) =>
      reader.call<ErrorBody & { rows: Record<string, unknown>[] }>('POST', `/v1/jobs/${jobId}/query`, {
        sql,
      });

    it("answers over the job's own tables, outputs included", async () => {
      const res = await query(
        'SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM outputs) AS outputs, (SELECT count(*) FROM operators) AS ops, (SELECT count(*) FROM errors) AS errors',
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body.rows, [{ runs: 1, outputs: 5, ops: 3, errors: 0 }]);
    });

    const refused = (title: string, sql: () => string) =>
      it(`refuses ${title}`, async () => {
        const res = await query(sql());
        assert.equal(res.status, 400, `expected a refusal, got ${res.status}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'SLUICE_QUERY_FAILED');
        assert.doesNotMatch(JSON.stringify(res.body), /root:|s3cr3t|SQLite format/);
      });

    refused('read_text of /etc/passwd', () => "SELECT content FROM read_text('/etc/passwd')");
    refused(
      'read_blob of the job store',
      () => `SELECT content FROM read_blob('${path.join(work, 'sluice.db')}')`,
    );
    refused('read_text of a secret file', () => `SELECT content FROM read_text('${secretsDir}/db_password')`);
    refused('read_csv of /etc/passwd', () => "SELECT * FROM read_csv('/etc/passwd')");
    refused("glob() of the server's folders", () => `SELECT * FROM glob('${work}/*')`);
    refused(
      "a read of a file beside the job's own",
      () => `SELECT * FROM read_text('${path.join(work, 'state', 'jobs', jobId, 'job.log')}')`,
    );
    refused(
      'ATTACH of the job store',
      () => `ATTACH '${path.join(work, 'sluice.db')}' AS store (TYPE sqlite)`,
    );
    refused('INSTALL', () => 'INSTALL httpfs');
    refused('LOAD', () => 'LOAD httpfs');
    refused(
      'SET enable_external_access',
      () => "SET enable_external_access = true; SELECT content FROM read_text('/etc/passwd')",
    );
    refused(
      'widening allowed_directories',
      () => "SET allowed_directories = ['/']; SELECT content FROM read_text('/etc/passwd')",
    );
    refused('unlocking the configuration', () => 'SET lock_configuration = false');
    refused('raising the memory limit', () => "SET memory_limit = '64GB'");
    refused('a URL', () => "SELECT * FROM read_json('http://127.0.0.1:9/x')");

    it('writes no file: COPY TO, EXPORT DATABASE', async () => {
      const target = path.join(work, 'written.csv');
      for (const sql of [
        `COPY (SELECT 'x') TO '${target}'`,
        `EXPORT DATABASE '${path.join(work, 'exported')}'`,
        `COPY (SELECT 'x') TO '${path.join(work, 'state', 'jobs', jobId, 'runs', 'x.csv')}'`,
      ]) {
        const res = await query(sql);
        assert.equal(res.status, 400, `${sql}: ${JSON.stringify(res.body)}`);
      }
      assert.equal(existsSync(target), false);
      assert.equal(existsSync(path.join(work, 'exported')), false);
    });

    it('stops a query that runs past the timeout', async () => {
      const res = await query('SELECT count(*) FROM range(1000000000000) a');
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.match(res.body.error.message, /ran longer than 2 s/);
    });
  });
});
