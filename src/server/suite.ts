/**
 * The control plane's behaviour, run on both job stores (server.test.ts: SQLite;
 * server.int.test.ts: PostgreSQL): the state machine, idempotent submit, cancel, a job process
 * killed with SIGKILL, and a server killed with three jobs running.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { EXIT } from '../cli/exit-codes.ts';
import { sluice } from '../cli/test-util.ts';
import type { SluiceError } from '../sdk/errors.ts';
import type { ApiJob } from './jobs.ts';
import { jobPaths } from './jobs.ts';
import { canTransition, JOB_STATES } from './lifecycle.ts';
import type { RunningServer } from './server.ts';
import type { Db } from './store/db.ts';
import { JobStore } from './store/jobs.ts';
import { createTestStore, type StoreKind, type TestStore } from './store/test-util.ts';
import {
  type Api,
  apiClient,
  generateSpec,
  readJsonLines,
  spawnServer,
  startTestServer,
  waitForJob,
} from './test-util.ts';

function ids(rows: Record<string, unknown>[]): number[] {
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

function assertExactlyOnce(rows: Record<string, unknown>[], count: number): void {
  const seen = ids(rows);
  assert.equal(seen.length, count, `expected ${count} records, got ${seen.length}`);
  for (let i = 0; i < count; i++) if (seen[i] !== i + 1) assert.fail(`record ${i + 1} missing or duplicated`);
}

export function controlPlaneSuite(kind: StoreKind): void {
  describe(`control plane on ${kind}`, () => {
    let store: TestStore;
    let work: string;

    before(async () => {
      store = await createTestStore(kind);
      work = await mkdtemp(path.join(tmpdir(), 'sluice-cp-'));
    });
    after(async () => {
      await store.dispose();
      await rm(work, { recursive: true, force: true });
    });

    describe('state machine', () => {
      let db: Db;
      let jobs: JobStore;
      let pipelineId: string;
      before(async () => {
        db = await store.openMigrated();
        jobs = new JobStore(db);
        pipelineId = (await jobs.savePipeline('sm', generateSpec('sm', { count: 1 }), work)).pipeline.id;
      });
      after(() => db.close());

      for (const from of JOB_STATES) {
        for (const to of JOB_STATES) {
          const legal = canTransition(from, to);
          it(`${from} → ${to} is ${legal ? 'legal' : 'refused'}`, async () => {
            const { job } = await jobs.createJob({ pipelineId });
            await db.run('UPDATE jobs SET state = $1 WHERE id = $2', [from, job.id]);
            if (legal) {
              const moved = await jobs.transition(job.id, from, to, 'test');
              assert.equal(moved?.state, to);
              const events = await jobs.events(job.id);
              assert.deepEqual(
                events.map((e) => [e.from_state, e.to_state]),
                [
                  [null, 'pending'],
                  [from, to],
                ],
              );
            } else {
              await assert.rejects(jobs.transition(job.id, from, to, 'test'), (err: SluiceError) => {
                assert.equal(err.code, 'SLUICE_JOB_STATE');
                assert.match(err.message, new RegExp(`is ${from} and cannot become ${to}`));
                return true;
              });
              assert.equal((await jobs.getJob(job.id))?.state, from, 'a refused move changes nothing');
            }
          });
        }
      }

      it('a stale compare-and-set loses: the second actor sees the job moved', async () => {
        const { job } = await jobs.createJob({ pipelineId });
        assert.ok(await jobs.transition(job.id, 'pending', 'running', 'first'));
        assert.equal(await jobs.transition(job.id, 'pending', 'cancelled', 'second'), undefined);
        assert.equal((await jobs.getJob(job.id))?.state, 'running');
      });
    });

    describe('API and job processes', () => {
      let server: RunningServer;
      let api: Api;
      before(async () => {
        ({ server, api } = await startTestServer(store.url, path.join(work, 'state'), {
          maxJobs: 4,
          // One test runs a script step (a plugin module in the test's folder).
          allowScripts: true,
        }));
      });
      after(() => server.close());

      const submit = (spec: string, headers: Record<string, string> = {}, params?: Record<string, string>) =>
        api.call<{ job: ApiJob }>(
          'POST',
          '/v1/jobs',
          { spec, base_dir: work, ...(params ? { params } : {}) },
          headers,
        );

      it('runs a submitted job to success and keeps its summary and history', async () => {
        const res = await submit(generateSpec('ok', { count: 5000 }));
        assert.equal(res.status, 201);
        const job = await waitForJob(api, res.body.job.id);
        assert.equal(job.state, 'succeeded', job.reason ?? '');
        const totals = (job.summary as { totals: { read: number; written: number } }).totals;
        assert.deepEqual([totals.read, totals.written], [5000, 5000]);
        assertExactlyOnce(await readJsonLines(path.join(work, 'out/ok')), 5000);
        const detail = await api.call<{ events: { from_state: string; to_state: string }[] }>(
          'GET',
          `/v1/jobs/${job.id}`,
        );
        assert.deepEqual(
          detail.body.events.map((e) => e.to_state),
          ['pending', 'running', 'succeeded'],
        );
      });

      it('runs a file → SQL → file job pushed down to DuckDB, and its summary says so', async () => {
        await mkdir(path.join(work, 'pushdown'), { recursive: true });
        await writeFile(path.join(work, 'pushdown/in.csv'), 'id,amount\n1,10\n2,-3\n3,7\n');
        const spec = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: pushed }
source:
  file: { path: pushdown/in.csv, csv: { columns: { id: integer, amount: integer } } }
steps:
  - sql: SELECT id, amount * 2 AS twice FROM input WHERE amount > 0
sink:
  file: { path: out/pushed/result.csv }
`;
        const job = await waitForJob(api, (await submit(spec)).body.job.id);
        assert.equal(job.state, 'succeeded', job.reason ?? '');
        const summary = job.summary as {
          engine: string;
          engine_reasons: string[];
          restart_from: string;
          records: { read: number; written: number; filtered: number };
        };
        assert.equal(summary.engine, 'duckdb-pushdown');
        assert.match(summary.engine_reasons.join('\n'), /as one DuckDB COPY/);
        assert.equal(summary.restart_from, 'scratch', 'a pushed-down job restarts from scratch');
        assert.deepEqual(summary.records, { read: 3, written: 2, filtered: 1, failed: 0, skipped: 0 });
        assert.equal(
          await readFile(path.join(work, 'out/pushed/result.csv'), 'utf8'),
          'id,twice\n1,20\n3,14\n',
        );
      });

      it('refuses an invalid spec before storing anything, naming line and column', async () => {
        const before = await api.call<{ jobs: unknown[] }>('GET', '/v1/jobs?limit=1000');
        const res = await api.call<{
          error: { code: string; message: string; details: { issues: { line: number }[] } };
        }>('POST', '/v1/jobs', {
          spec: 'apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: bad }\nsource:\n  generat: { count: 1 }\nsink: { stdout: {} }\n',
        });
        assert.equal(res.status, 422);
        assert.equal(res.body.error.code, 'SLUICE_SPEC_INVALID');
        assert.equal(res.body.error.details.issues[0]?.line, 5);
        assert.match(res.body.error.message, /generate/);
        const afterList = await api.call<{ jobs: unknown[] }>('GET', '/v1/jobs?limit=1000');
        assert.equal(afterList.body.jobs.length, before.body.jobs.length);
      });

      it('returns the same job for a repeated Idempotency-Key, and refuses the key for another body', async () => {
        const spec = generateSpec('idem', { count: 10 });
        const key = { 'idempotency-key': `key-${kind}` };
        const results = await Promise.all([submit(spec, key), submit(spec, key), submit(spec, key)]);
        const jobIds = new Set(results.map((r) => r.body.job.id));
        assert.equal(jobIds.size, 1, 'one job for three identical requests');
        assert.deepEqual(results.map((r) => r.status).sort(), [200, 200, 201]);
        const other = await submit(generateSpec('idem', { count: 11 }), key);
        assert.equal(other.status, 409);
        assert.equal((other.body as unknown as { error: { code: string } }).error.code, 'SLUICE_CONFLICT');
        const list = await api.call<{ jobs: ApiJob[] }>('GET', '/v1/jobs?pipeline=idem');
        assert.equal(list.body.jobs.length, 1);
      });

      it('cancels a running job: it drains, commits and ends cancelled; cancelling again is refused', async () => {
        const res = await submit(generateSpec('endless', { rate: '2000/s' }));
        const id = res.body.job.id;
        await waitForJob(api, id, (j) => j.state === 'running' && (j.progress?.written ?? 0) > 0);
        const cancel = await api.call<{ job: ApiJob }>('POST', `/v1/jobs/${id}/cancel`);
        assert.equal(cancel.status, 200);
        assert.ok(['cancelling', 'cancelled'].includes(cancel.body.job.state));
        const job = await waitForJob(api, id);
        assert.equal(job.state, 'cancelled');
        const rows = await readJsonLines(path.join(work, 'out/endless'));
        assert.ok(rows.length > 0, 'what was read before the cancel was committed');
        assertExactlyOnce(rows, rows.length);
        const again = await api.call<{ error: { code: string } }>('POST', `/v1/jobs/${id}/cancel`);
        assert.equal(again.status, 409);
        assert.equal(again.body.error.code, 'SLUICE_JOB_STATE');
        const detail = await api.call<{ events: { to_state: string }[] }>('GET', `/v1/jobs/${id}`);
        assert.deepEqual(
          detail.body.events.map((e) => e.to_state),
          ['pending', 'running', 'cancelling', 'cancelled'],
        );
      });

      it('restarts a job whose process is killed with SIGKILL, from its checkpoint, losing nothing', async () => {
        const count = 12_000;
        const res = await submit(generateSpec('killed', { count, rate: '4000/s' }));
        const id = res.body.job.id;
        const checkpoint = path.join(jobPaths(server.ctx.stateDir, id).checkpoints, 'checkpoint.json');
        const running = await waitForJob(
          api,
          id,
          (j) => j.state === 'running' && existsSync(checkpoint) && (j.progress?.written ?? 0) > 2000,
        );
        const pid = (await server.ctx.store.getJob(running.id))?.pid;
        assert.ok(pid, 'the job has a process id');
        process.kill(pid, 'SIGKILL');
        const job = await waitForJob(api, id);
        assert.equal(job.state, 'succeeded', job.reason ?? '');
        assert.equal(job.restarts, 1);
        assertExactlyOnce(await readJsonLines(path.join(work, 'out/killed')), count);
        const attempts = (job.summary as { attempts: { status: string; exit: string }[] }).attempts;
        assert.equal(attempts.length, 2);
        assert.match(attempts[0]!.exit, /SIGKILL/);
        const second = job.summary as {
          records: { skipped: number };
          resumed_from: Record<string, number> | null;
        };
        assert.ok(second.resumed_from && second.resumed_from.generate! > 0, 'the second attempt resumed');
        assert.ok(second.records.skipped >= 0);
        const detail = await api.call<{ events: { to_state: string; reason: string }[] }>(
          'GET',
          `/v1/jobs/${id}`,
        );
        const died = detail.body.events.find((e) => e.to_state === 'pending' && /died/.test(e.reason));
        assert.ok(died, 'the death is in the history');
        assert.match(died.reason, /SIGKILL/);
      });

      it('fails a job whose process keeps dying once its restart policy is used up', async () => {
        const res = await submit(generateSpec('doomed', { count: 1_000_000, rate: '2000/s', attempts: 1 }));
        const id = res.body.job.id;
        for (let restarts = 0; restarts <= 1; restarts++) {
          const j = await waitForJob(
            api,
            id,
            (x) => x.state === 'running' && x.restarts === restarts && (x.progress?.read ?? 0) > 0,
          );
          process.kill((await server.ctx.store.getJob(j.id))!.pid!, 'SIGKILL');
        }
        const job = await waitForJob(api, id);
        assert.equal(job.state, 'failed');
        assert.match(
          job.reason ?? '',
          /SLUICE_JOB_PROCESS: its process died \(killed by SIGKILL\).*1 restart/,
        );
      });

      it('restarts a job whose run failed with a retriable error, and says why', async () => {
        // A step whose first attempt fails as a sink does when its database is away.
        const marker = path.join(work, `flaky-${Date.now()}.marker`);
        const module = path.join(work, `flaky-${Date.now()}.ts`);
        const sdk = pathToFileURL(path.resolve(import.meta.dirname, '../sdk/index.ts')).href;
        await writeFile(
          module,
          `import { existsSync, writeFileSync } from 'node:fs';
import { defineStep, SluiceError, z } from ${JSON.stringify(sdk)};
export default defineStep({
  name: 'flaky-open',
  summary: 'Fails its first attempt with a retriable error (tests only).',
  config: z.object({}).strict(),
  examples: [],
  create: () => {
    if (!existsSync(${JSON.stringify(marker)})) {
      writeFileSync(${JSON.stringify(marker)}, '');
      throw new SluiceError('SLUICE_SINK_IO', 'the database is away', { retriable: true });
    }
    return { process: (batch) => ({ records: batch }) };
  },
});
`,
        );
        const spec = generateSpec('flaky', { count: 500 }).replace(
          'sink:\n',
          `steps:\n  - script: { module: ${JSON.stringify(module)} }\nsink:\n`,
        );
        const id = (await submit(spec)).body.job.id;
        const job = await waitForJob(api, id);
        assert.equal(job.state, 'succeeded', job.reason ?? '');
        assert.equal(job.restarts, 1);
        assertExactlyOnce(await readJsonLines(path.join(work, 'out/flaky')), 500);
        const detail = await api.call<{ events: { to_state: string; reason: string }[] }>(
          'GET',
          `/v1/jobs/${id}`,
        );
        const restarted = detail.body.events.find(
          (e) => e.to_state === 'pending' && e.reason !== 'submitted',
        );
        assert.match(
          restarted?.reason ?? '',
          /^it failed: SLUICE_SINK_IO: .*the database is away; restart 1 of 3/,
        );
      });

      it('a read-scoped token can look but not submit or cancel; no token gets 401', async () => {
        const made = await api.call<{ token: string }>('POST', '/v1/tokens', {
          name: 'viewer',
          scopes: ['read'],
        });
        assert.equal(made.status, 201);
        const viewer = apiClient(api.url, made.body.token);
        assert.equal((await viewer.call('GET', '/v1/jobs')).status, 200);
        const refused = await viewer.call<{ error: { code: string } }>('POST', '/v1/jobs', {
          pipeline: 'ok',
        });
        assert.equal(refused.status, 403);
        assert.equal(refused.body.error.code, 'SLUICE_FORBIDDEN');
        assert.equal((await apiClient(api.url, 'nope').call('GET', '/v1/jobs')).status, 401);
        assert.equal((await fetch(`${api.url}/healthz`)).status, 200);
        const tokens = await api.call<{ tokens: Record<string, unknown>[] }>('GET', '/v1/tokens');
        assert.ok(
          tokens.body.tokens.every((t) => !('hash' in t) && !('token' in t)),
          'no secret or hash is listed',
        );
      });
    });

    describe('admin tokens', () => {
      let tokens: TestStore;
      let server: RunningServer;
      let api: Api;
      before(async () => {
        tokens = await createTestStore(kind);
        // The same data root as the suite's other server: DuckDB's confinement is per process.
        ({ server, api } = await startTestServer(tokens.url, path.join(tokens.dir, 'state'), {
          dataRoot: work,
        }));
      });
      after(async () => {
        await server.close();
        await tokens.dispose();
      });

      type TokenList = {
        tokens: { id: string; name: string; scopes: string[]; revoked_at: string | null }[];
      };
      const liveAdmins = async () =>
        (await api.call<TokenList>('GET', '/v1/tokens')).body.tokens.filter(
          (t) => t.revoked_at === null && t.scopes.includes('admin'),
        );
      const createAdmin = async (name: string) => {
        const made = await api.call<{ token: string; record: { id: string } }>('POST', '/v1/tokens', {
          name,
          scopes: ['admin'],
        });
        assert.equal(made.status, 201, JSON.stringify(made.body));
        return made.body;
      };

      it('refuses to revoke the last live admin token with 409 SLUICE_LAST_ADMIN_TOKEN, even at once from two admins', async () => {
        const [first] = await liveAdmins();
        assert.ok(first);
        const own = await api.call<{ error: { code: string; message: string } }>(
          'DELETE',
          `/v1/tokens/${first.id}`,
        );
        assert.equal(own.status, 409, JSON.stringify(own.body));
        assert.equal(own.body.error.code, 'SLUICE_LAST_ADMIN_TOKEN');
        assert.match(own.body.error.message, /sluice server token create/);
        assert.equal((await api.call('GET', '/v1/tokens')).status, 200, 'the token still works');

        const viewer = await api.call<{ record: { id: string } }>('POST', '/v1/tokens', {
          name: 'viewer',
          scopes: ['read'],
        });
        assert.equal((await api.call('DELETE', `/v1/tokens/${viewer.body.record.id}`)).status, 200);

        // Both admin tokens revoked at the same moment: one revoke wins, the other is refused (409,
        // or 401 when the winner revoked the very token that authenticates it first); one stays.
        const second = await createAdmin('second');
        const both = await Promise.all([
          api.call<{ error?: { code: string } }>('DELETE', `/v1/tokens/${second.record.id}`),
          apiClient(api.url, second.token).call<{ error?: { code: string } }>(
            'DELETE',
            `/v1/tokens/${first.id}`,
          ),
        ]);
        const outcome = JSON.stringify(both.map((r) => [r.status, r.body]));
        assert.equal(both.filter((r) => r.status === 200).length, 1, outcome);
        const loser = both.find((r) => r.status !== 200)!;
        assert.ok(
          (loser.status === 409 && loser.body.error?.code === 'SLUICE_LAST_ADMIN_TOKEN') ||
            (loser.status === 401 && loser.body.error?.code === 'SLUICE_UNAUTHORIZED'),
          outcome,
        );
        const live = (await server.ctx.store.listTokens()).filter(
          (t) => t.revoked_at === null && t.scopes.includes('admin'),
        );
        assert.equal(live.length, 1, 'exactly one admin token is left');
      });

      it('`sluice server token create` writes a working admin token into the store when none is left', async () => {
        // The state the API no longer allows, but an operator can reach: every admin token lost.
        const db = await tokens.open();
        try {
          await db.run('UPDATE tokens SET revoked_at = $1 WHERE revoked_at IS NULL', [Date.now()]);
        } finally {
          await db.close();
        }
        assert.equal((await api.call('GET', '/v1/tokens')).status, 401);

        const made = await sluice(
          ['server', 'token', 'create', '--database', tokens.url, '--name', 'ops'],
          tokens.dir,
        );
        assert.equal(made.code, 0, made.stderr);
        const secret = made.stdout.trim();
        assert.match(secret, /^sluice_\S+$/, 'stdout is the token alone');
        assert.match(made.stderr, /token tok_\S+ \(ops, admin\) in (sqlite|postgres) /);
        const recovered = apiClient(api.url, secret);
        const list = await recovered.call<TokenList>('GET', '/v1/tokens');
        assert.equal(list.status, 200, 'the running server accepts it at once');
        assert.deepEqual(
          list.body.tokens.filter((t) => t.revoked_at === null).map((t) => [t.name, t.scopes]),
          [['ops', ['admin']]],
        );

        const reader = await sluice(
          ['server', 'token', 'create', '--database', tokens.url, '--scope', 'read'],
          tokens.dir,
        );
        assert.equal(reader.code, 0, reader.stderr);
        const readApi = apiClient(api.url, reader.stdout.trim());
        assert.equal((await readApi.call('GET', '/v1/jobs')).status, 200);
        assert.equal((await readApi.call('GET', '/v1/tokens')).status, 403);

        const wrong = await sluice(
          ['server', 'token', 'create', '--database', tokens.url, '--scope', 'root'],
          tokens.dir,
        );
        assert.equal(wrong.code, EXIT.usage);
        assert.match(wrong.stderr, /--scope takes read, write, admin, got "root"/);
      });
    });

    it('recovers three running jobs after the server is killed, each from its checkpoint', async () => {
      const stateDir = path.join(work, 'restart-state');
      const args = [
        '--database',
        store.kind === 'sqlite' ? path.join(store.dir, 'restart.db') : store.url,
        '--state-dir',
        stateDir,
        '--data-root',
        work,
      ];
      if (store.kind === 'postgres') {
        // The API tests above already made this store's admin token: start from a clean schema.
        const db = await store.open();
        await db.run(
          'DROP TABLE IF EXISTS jobs, job_events, pipelines, pipeline_versions, tokens, webhooks, webhook_deliveries, schedules, schema_migrations CASCADE',
        );
        await db.close();
      }
      const first = await spawnServer([...args, '--cancel-grace', '5'], work);
      assert.ok(first.token);
      const api1 = apiClient(first.url, first.token);
      const count = 16_000;
      const ids: string[] = [];
      for (const n of [1, 2, 3]) {
        const res = await api1.call<{ job: ApiJob }>('POST', '/v1/jobs', {
          spec: generateSpec(`survivor${n}`, { count, rate: '4000/s' }),
          base_dir: work,
        });
        assert.equal(res.status, 201);
        ids.push(res.body.job.id);
      }
      for (const id of ids) {
        const checkpoint = path.join(jobPaths(stateDir, id).checkpoints, 'checkpoint.json');
        await waitForJob(api1, id, (j) => j.state === 'running' && existsSync(checkpoint));
      }
      first.child.kill('SIGKILL');
      await new Promise((resolve) => first.child.once('exit', resolve));
      await sleep(200);

      const second = await spawnServer(args, work);
      assert.equal(second.token, undefined, 'the admin token is printed only on the first start');
      const api2 = apiClient(second.url, first.token);
      try {
        for (const [i, id] of ids.entries()) {
          const job = await waitForJob(api2, id);
          assert.equal(job.state, 'succeeded', `${id}: ${job.reason}`);
          assert.ok(job.restarts >= 1);
          assertExactlyOnce(await readJsonLines(path.join(work, `out/survivor${i + 1}`)), count);
          const detail = await api2.call<{ events: { reason: string }[] }>('GET', `/v1/jobs/${id}`);
          assert.ok(
            detail.body.events.some((e) => /server restarted/.test(e.reason ?? '')),
            'recovery is in the history',
          );
        }
      } finally {
        second.child.kill('SIGTERM');
        await new Promise((resolve) => second.child.once('exit', resolve));
      }
    });
  });
}
