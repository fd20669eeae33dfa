/**
 * Multi-tenant confinement of the control plane: what a read token's SQL and a write token's spec
 * may touch on the server's machine. Every refusal is tried, not only the happy path.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ApiJob } from './jobs.ts';
import type { RunningServer } from './server.ts';
import {
  type Api,
  apiClient,
  generateSpec,
  readJsonLines,
  startTestServer,
  waitForJob,
} from './test-util.ts';

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
  let writer: Api;
  let granted: Api;
  let jobId: string;
  const savedEnv = { ...process.env };

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'sluice-confine-'));
    dataRoot = path.join(work, 'data');
    secretsDir = path.join(work, 'secrets');
    await mkdir(secretsDir, { recursive: true });
    await writeFile(path.join(secretsDir, 'db_password'), 's3cr3t-value\n');
    await writeFile(path.join(secretsDir, 'team_a_key'), 'team-a-value\n');
    await mkdir(path.join(work, 'outside'), { recursive: true });
    await writeFile(path.join(work, 'outside', 'private.csv'), 'id,secret\n1,outside-value\n');
    await mkdir(path.join(dataRoot, 'in'), { recursive: true });
    await writeFile(path.join(dataRoot, 'in', 'rows.csv'), 'id,name\n1,a\n2,b\n');
    await symlink(path.join(work, 'outside'), path.join(dataRoot, 'link-out'));
    process.env.SLUICE_SECRETS_DIR = secretsDir;
    process.env.SLUICE_TEST_ALLOWED = 'allowed-value';
    process.env.SLUICE_TEST_PRIVATE = 'private-value';
    ({ server, api: admin } = await startTestServer(path.join(work, 'sluice.db'), path.join(work, 'state'), {
      dataRoot,
      allowEnv: ['SLUICE_TEST_ALLOWED'],
      queryTimeoutMs: 2_000,
    }));
    const token = async (name: string, scopes: string[], secrets?: string[]) => {
      const made = await admin.call<{ token: string }>('POST', '/v1/tokens', {
        name,
        scopes,
        ...(secrets ? { secrets } : {}),
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      return apiClient(server.url, made.body.token);
    };
    reader = await token('r', ['read']);
    writer = await token('w', ['write']);
    granted = await token('team-a', ['write'], ['team_a_*']);
    const submitted = await admin.call<{ job: ApiJob }>('POST', '/v1/jobs', {
      spec: generateSpec('own-tables', { count: 5 }),
    });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    jobId = submitted.body.job.id;
    assert.equal((await waitForJob(admin, jobId)).state, 'succeeded');
  });
  after(async () => {
    process.env = savedEnv;
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

  describe("a write token's spec", () => {
    const csvToJsonl = (name: string, from: string, to = `out/${name}/`, extra = '') => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  file: { path: ${from}, format: csv }
${extra}sink:
  file: { path: ${to}, format: jsonl }
`;
    const submit = (api: Api, spec: string, extra: Record<string, unknown> = {}) =>
      api.call<ErrorBody & { job: ApiJob }>('POST', '/v1/jobs', { spec, ...extra });

    /** Refused at submit, with SLUICE_SPEC_FORBIDDEN at `line` of the spec, before a job exists. */
    const assertForbidden = async (
      res: Awaited<ReturnType<typeof submit>>,
      line: number,
      message: RegExp,
    ) => {
      assert.equal(res.status, 422, JSON.stringify(res.body));
      const issue = res.body.error.details?.issues?.find((i) => i.code === 'SLUICE_SPEC_FORBIDDEN');
      assert.ok(issue, `no SLUICE_SPEC_FORBIDDEN issue in ${JSON.stringify(res.body)}`);
      assert.equal(issue.line, line, JSON.stringify(issue));
      assert.ok(issue.col > 0);
      assert.match(issue.message, message);
      assert.doesNotMatch(JSON.stringify(res.body), /root:x|outside-value|s3cr3t|private-value/);
    };

    it('runs in the data root: relative paths resolve there', async () => {
      const res = await submit(writer, csvToJsonl('in-root', 'in/rows.csv'));
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal((await waitForJob(writer, res.body.job.id)).state, 'succeeded');
      const rows = await readJsonLines(path.join(dataRoot, 'out', 'in-root'));
      assert.deepEqual(rows.map((r) => r.name).sort(), ['a', 'b']);
    });

    it('runs a SQL pipeline to Parquet inside its confinement (DuckDB writes into the data root)', async () => {
      const spec = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: pushed }
source:
  file: { path: in/rows.csv, csv: { columns: { id: integer, name: string } } }
steps:
  - sql: SELECT id, upper(name) AS n FROM input WHERE id > 1
sink:
  file: { path: out/pushed/, format: parquet }
`;
      const res = await submit(writer, spec);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const done = await waitForJob(writer, res.body.job.id);
      assert.equal(done.state, 'succeeded', JSON.stringify(done));
      const rows = await reader.call<{ rows: { n: string }[] }>('POST', `/v1/jobs/${done.id}/query`, {
        sql: 'SELECT n FROM outputs',
      });
      assert.deepEqual(rows.body.rows, [{ n: 'B' }]);
    });

    it('cannot read an absolute path', async () => {
      await assertForbidden(
        await submit(writer, csvToJsonl('abs', '/etc/passwd')),
        5,
        /absolute paths are refused/,
      );
    });

    it('cannot read through a ../ escape', async () => {
      await assertForbidden(
        await submit(writer, csvToJsonl('dotdot', '../outside/private.csv')),
        5,
        /outside the data root/,
      );
    });

    it('cannot glob out of the data root', async () => {
      await assertForbidden(await submit(writer, csvToJsonl('glob', '"{in,../outside}/*.csv"')), 5, /glob/);
    });

    it('cannot read through a symbolic link that leaves the data root', async () => {
      await assertForbidden(
        await submit(writer, csvToJsonl('symlink', 'link-out/private.csv')),
        5,
        /symbolic link/,
      );
    });

    it('cannot write outside the data root', async () => {
      const target = path.join(work, 'escaped');
      await assertForbidden(
        await submit(writer, csvToJsonl('write-abs', 'in/rows.csv', `${target}/`)),
        7,
        /absolute/,
      );
      await assertForbidden(
        await submit(writer, csvToJsonl('write-up', 'in/rows.csv', '../../escaped/')),
        7,
        /outside the data root/,
      );
      assert.equal(existsSync(target), false);
    });

    it('cannot send a base_dir outside the data root', async () => {
      const res = await submit(writer, csvToJsonl('base', 'rows.csv'), { base_dir: '/etc' });
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'SLUICE_SPEC_FORBIDDEN');
      assert.match(res.body.error.message, /base_dir/);
      const inside = await submit(writer, csvToJsonl('base-in', 'rows.csv', 'out/base-in/'), {
        base_dir: 'in',
      });
      assert.equal(inside.status, 201, JSON.stringify(inside.body));
      assert.equal((await waitForJob(writer, inside.body.job.id)).state, 'succeeded');
      assert.equal((await readJsonLines(path.join(dataRoot, 'in', 'out', 'base-in'))).length, 2);
    });

    it('cannot join a lookup table outside the data root', async () => {
      const extra = `steps:
  - sql:
      query: SELECT i.*, p.secret FROM input i LEFT JOIN private p ON p.id = i.id
      lookups:
        private: { path: ${path.join(work, 'outside', 'private.csv')} }
`;
      await assertForbidden(
        await submit(writer, csvToJsonl('lookup', 'in/rows.csv', 'out/lookup/', extra)),
        10,
        /absolute/,
      );
    });

    for (const [title, query] of [
      ['read_text', () => "SELECT *, (SELECT content FROM read_text('/etc/passwd')) AS leaked FROM input"],
      ['a replacement scan', () => "SELECT i.*, p.* FROM input i, '/etc/passwd' p"],
      [
        'a set-level replacement scan',
        () => "SELECT count(*) AS n, (SELECT count(*) FROM '/etc/passwd') AS leaked FROM input",
      ],
      [
        'a set-level replacement scan of the job store',
        () =>
          `SELECT count(*) AS n, (SELECT count(*) FROM '${path.join(work, 'sluice.db')}') AS leaked FROM input`,
      ],
    ] as [string, () => string][]) {
      it(`cannot read a server file with ${title} in a sql step`, async () => {
        const spec = csvToJsonl(
          'sql-read',
          'in/rows.csv',
          'out/sql-read/',
          `steps:\n  - sql: "${query()}"\n`,
        );
        const res = await submit(writer, spec);
        assert.equal(res.status, 422, JSON.stringify(res.body));
        assert.doesNotMatch(JSON.stringify(res.body), /root:x|SQLite/);
        assert.equal(existsSync(path.join(dataRoot, 'out', 'sql-read')), false);
      });
    }

    it('cannot read an environment variable that is not on the allow-list', async () => {
      const extra = 'steps:\n  - sql: "SELECT *, \'${env:SLUICE_TEST_PRIVATE}\' AS leaked FROM input"\n';
      await assertForbidden(
        await submit(writer, csvToJsonl('env-private', 'in/rows.csv', 'out/env-private/', extra)),
        7,
        /not allowed on this server/,
      );
      // A default does not get round the refusal either.
      const withDefault = extra.replace('SLUICE_TEST_PRIVATE', 'SLUICE_TEST_PRIVATE:-x');
      await assertForbidden(
        await submit(writer, csvToJsonl('env-default', 'in/rows.csv', 'out/env-default/', withDefault)),
        7,
        /allow-list/,
      );
    });

    it('reads an allow-listed environment variable', async () => {
      const extra = 'steps:\n  - sql: "SELECT *, \'${env:SLUICE_TEST_ALLOWED}\' AS v FROM input"\n';
      const res = await submit(writer, csvToJsonl('env-allowed', 'in/rows.csv', 'out/env-allowed/', extra));
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal((await waitForJob(writer, res.body.job.id)).state, 'succeeded');
      const rows = await readJsonLines(path.join(dataRoot, 'out', 'env-allowed'));
      assert.deepEqual(
        rows.map((r) => r.v),
        ['allowed-value', 'allowed-value'],
      );
    });

    it('cannot use a secret that was not granted to its token, at submit, validate and save', async () => {
      const extra = 'steps:\n  - sql: "SELECT *, \'${secret:db_password}\' AS leaked FROM input"\n';
      const spec = csvToJsonl('secret-denied', 'in/rows.csv', 'out/secret-denied/', extra);
      await assertForbidden(await submit(writer, spec), 7, /not granted to this API token/);
      await assertForbidden(await submit(granted, spec), 7, /granted: team_a_\*/);
      const validated = await writer.call<ErrorBody>('POST', '/v1/pipelines/validate', { spec });
      assert.equal(validated.status, 422);
      assert.equal(validated.body.error.details?.issues?.[0]?.code, 'SLUICE_SPEC_FORBIDDEN');
      const saved = await writer.call<ErrorBody>('POST', '/v1/pipelines', { spec });
      assert.equal(saved.status, 422);
      assert.equal(existsSync(path.join(dataRoot, 'out', 'secret-denied')), false);
    });

    it('cannot submit, schedule or backfill a stored pipeline that uses a secret not granted to it', async () => {
      const extra = 'steps:\n  - sql: "SELECT *, \'${secret:db_password}\' AS s FROM input"\n';
      const spec = csvToJsonl('secret-stored', 'in/rows.csv', 'out/secret-stored/', extra);
      const stored = await admin.call('POST', '/v1/pipelines', { spec });
      assert.equal(stored.status, 201, JSON.stringify(stored.body));
      const res = await writer.call<ErrorBody>('POST', '/v1/jobs', { pipeline: 'secret-stored' });
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.equal(res.body.error.details?.issues?.[0]?.code, 'SLUICE_SPEC_FORBIDDEN');
      // Nor have it run by a schedule or a backfill, which submit later without a token.
      const scheduled = await writer.call<ErrorBody>('POST', '/v1/schedules', {
        pipeline: 'secret-stored',
        cron: '0 3 * * *',
      });
      assert.equal(scheduled.status, 422, JSON.stringify(scheduled.body));
      assert.equal(scheduled.body.error.code, 'SLUICE_SPEC_FORBIDDEN');
      const backfill = await writer.call<ErrorBody>('POST', '/v1/backfills', {
        pipeline: 'secret-stored',
        from: '2026-01-01',
        to: '2026-01-02',
      });
      assert.equal(backfill.status, 422, JSON.stringify(backfill.body));
      assert.equal(backfill.body.error.code, 'SLUICE_SPEC_FORBIDDEN');
      assert.equal(
        (await admin.call<{ jobs: unknown[] }>('GET', '/v1/jobs?pipeline=secret-stored')).body.jobs.length,
        0,
      );
    });

    it('uses a granted secret (a glob grant) and an admin token uses any', async () => {
      const extra = 'steps:\n  - sql: "SELECT *, \'${secret:team_a_key}\' AS s FROM input"\n';
      const res = await submit(
        granted,
        csvToJsonl('secret-granted', 'in/rows.csv', 'out/secret-granted/', extra),
      );
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal((await waitForJob(granted, res.body.job.id)).state, 'succeeded');
      const rows = await readJsonLines(path.join(dataRoot, 'out', 'secret-granted'));
      assert.deepEqual(
        rows.map((r) => r.s),
        ['team-a-value', 'team-a-value'],
      );
      const byAdmin = await submit(
        admin,
        csvToJsonl(
          'secret-admin',
          'in/rows.csv',
          'out/secret-admin/',
          extra.replace('team_a_key', 'db_password'),
        ),
      );
      assert.equal(byAdmin.status, 201, JSON.stringify(byAdmin.body));
    });

    it('cannot run a script step unless the server allows scripts', async () => {
      await writeFile(path.join(dataRoot, 'step.mjs'), 'export default {};\n');
      const extra = 'steps:\n  - script: step.mjs\n';
      await assertForbidden(
        await submit(writer, csvToJsonl('script', 'in/rows.csv', 'out/script/', extra)),
        7,
        /allow-scripts/,
      );
    });

    it('keeps the token grants in the token list', async () => {
      const list = await admin.call<{ tokens: { name: string; secrets: string[] }[] }>('GET', '/v1/tokens');
      assert.deepEqual(list.body.tokens.find((t) => t.name === 'team-a')?.secrets, ['team_a_*']);
      assert.equal((await readFile(path.join(secretsDir, 'db_password'), 'utf8')).trim(), 's3cr3t-value');
    });
  });
});
