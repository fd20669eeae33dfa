/**
 * The scheduler's tests, run on both job stores (scheduler.test.ts on SQLite, scheduler.int.test.ts
 * on PostgreSQL). Jobs go through a real JobService over a real JobStore, and the clock is
 * injected: every tick names its `now`, so nothing sleeps and nothing depends on the wall clock.
 */

import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { after, before, beforeEach, describe, it } from 'node:test';
import { defaultRegistry } from '../registry.ts';
import { SluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import { JobService, type SubmitRequest } from './jobs.ts';
import { MAX_CATCH_UP_FIRES, Scheduler, type SchedulerOptions } from './scheduler.ts';
import type { Db } from './store/db.ts';
import { type JobRecord, JobStore } from './store/jobs.ts';
import { createTestStore, type StoreKind, type TestStore } from './store/test-util.ts';
import { testWorkspace } from './test-util.ts';

export const NIGHTLY_SPEC = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: nightly }
source:
  generate: { count: 1, fields: { id: seq } }
sinks:
  - file: { path: "out/\${param:date}/", format: jsonl }
`;

// A spec that needs a param no schedule below gives: its jobs are refused.
const REGIONAL_SPEC = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: regional }
source:
  generate: { count: 1 }
sinks:
  - file: { path: "out/\${param:region}/\${param:date}/", format: jsonl }
`;

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

export function recordingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}) => {
      lines.push({ level, msg, fields });
    };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

export interface Harness {
  db: Db;
  store: JobStore;
  jobs: JobService;
  logger: ReturnType<typeof recordingLogger>;
  /** Every submit the scheduler made, in order (the real JobService does the work). */
  submitted: SubmitRequest[];
  scheduler(now?: number, options?: Partial<SchedulerOptions>): Scheduler;
}

/** A JobService over `store`, as the server builds it minus the supervisor. */
export function jobService(store: JobStore, logger: Logger): JobService {
  return new JobService({
    store,
    registry: defaultRegistry(),
    logger,
    // The tests' stores and specs live in the system's temporary folder.
    workspace: testWorkspace(tmpdir()),
    wake: () => {},
    cancel: async () => {
      throw new Error('the scheduler never cancels a job');
    },
  });
}

export function harness(db: Db): Harness {
  const store = new JobStore(db);
  const logger = recordingLogger();
  const jobs = jobService(store, logger);
  const submitted: SubmitRequest[] = [];
  return {
    db,
    store,
    jobs,
    logger,
    submitted,
    scheduler: (now = Date.parse('2025-01-01T00:00:00Z'), options = {}) =>
      new Scheduler({
        ...options,
        db,
        store,
        logger,
        now: () => now,
        submit: (req) => {
          submitted.push(req);
          return jobs.submit(req);
        },
      }),
  };
}

const at = (iso: string) => Date.parse(iso);

async function jobsOf(store: JobStore, scheduleId: string): Promise<JobRecord[]> {
  const jobs = await store.listJobs({ scheduleId, limit: 1000 });
  return jobs.sort((a, b) => (a.scheduled_for ?? '').localeCompare(b.scheduled_for ?? ''));
}

function assertBadRequest(field: string, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof SluiceError, String(err));
    assert.equal(err.code, 'SLUICE_BAD_REQUEST');
    assert.deepEqual(err.details, { field });
    assert.match(err.message, pattern);
    return true;
  };
}

export function schedulerSuite(kind: StoreKind): void {
  describe(`scheduler (${kind})`, () => {
    let ts: TestStore;
    let db: Db;
    let h: Harness;

    before(async () => {
      ts = await createTestStore(kind);
      db = await ts.openMigrated();
    });
    after(async () => {
      await db.close();
      await ts.dispose();
    });
    beforeEach(async () => {
      for (const table of ['schedules', 'job_events', 'jobs', 'pipeline_versions', 'pipelines']) {
        await db.run(`DELETE FROM ${table}`);
      }
      h = harness(db);
      await h.store.savePipeline('nightly', NIGHTLY_SPEC, ts.dir);
    });

    it('plans fires in the timezone, across both daylight saving changes', async () => {
      // 02:00 in Berlin is 01:00Z in winter and 00:00Z in summer; on 2025-03-30 02:00 does not
      // exist (clocks jump to 03:00, the first time after the gap, 01:00Z); on 2025-10-26 it
      // happens twice and fires once, on the first.
      const spring = await h.scheduler(at('2025-03-28T12:00:00Z')).create({
        pipeline: 'nightly',
        cron: '0 2 * * *',
        timezone: 'Europe/Berlin',
      });
      assert.equal(spring.next_fire_at, '2025-03-29T01:00:00.000Z');
      const expected = [
        ['2025-03-29T01:00:00.000Z', '2025-03-29', '2025-03-30T01:00:00.000Z'],
        ['2025-03-30T01:00:00.000Z', '2025-03-30', '2025-03-31T00:00:00.000Z'],
        ['2025-03-31T00:00:00.000Z', '2025-03-31', '2025-04-01T00:00:00.000Z'],
      ];
      for (const [fire, date, next] of expected) {
        assert.equal(await h.scheduler().tick(at(fire!)), 1, `fire at ${fire}`);
        const s = await h.scheduler().get(spring.id);
        assert.equal(s.last_fire_at, fire);
        assert.equal(s.next_fire_at, next);
        const job = (await jobsOf(h.store, spring.id)).at(-1)!;
        assert.equal(job.scheduled_for, fire);
        assert.equal(job.params.date, date);
      }

      await h.scheduler().remove(spring.id);
      const autumn = await h.scheduler(at('2025-10-25T12:00:00Z')).create({
        pipeline: 'nightly',
        cron: '0 2 * * *',
        timezone: 'Europe/Berlin',
      });
      assert.equal(autumn.next_fire_at, '2025-10-26T00:00:00.000Z');
      assert.equal(await h.scheduler().tick(at('2025-10-26T00:00:00Z')), 1);
      assert.equal((await h.scheduler().get(autumn.id)).next_fire_at, '2025-10-27T01:00:00.000Z');
    });

    it("gives each job the fire date in the schedule's timezone, its params and its schedule", async () => {
      // 21:30 in New York on May 31st is already June 1st in UTC.
      const s = await h.scheduler(at('2025-06-01T00:00:00Z')).create({
        pipeline: 'nightly',
        cron: '30 21 * * *',
        timezone: 'america/new_york',
        params: { region: 'us' },
        param_name: 'day',
      });
      assert.equal(s.timezone, 'America/New_York');
      assert.equal(s.param_name, 'day');
      assert.equal(s.next_fire_at, '2025-06-01T01:30:00.000Z');
      // The spec reads ${param:date}; this schedule names its date param `day`, so give `date` too.
      await h.scheduler().update(s.id, { params: { region: 'us', date: 'fixed' } });
      assert.equal(await h.scheduler().tick(at('2025-06-01T01:30:00.250Z')), 1);
      const [job] = await jobsOf(h.store, s.id);
      assert.deepEqual(job!.params, { region: 'us', date: 'fixed', day: '2025-05-31' });
      assert.equal(job!.schedule_id, s.id);
      assert.equal(job!.scheduled_for, '2025-06-01T01:30:00.000Z');
      assert.equal(job!.state, 'pending');
      assert.equal(h.submitted[0]!.idempotencyKey, `schedule:${s.id}:2025-06-01T01:30:00.000Z`);
    });

    describe('catch-up after a 3-day gap', () => {
      // Created at midnight, next fire 02:00 on Jan 1st; the server comes back at noon on Jan 3rd,
      // so the fires of Jan 1st, 2nd and 3rd were missed.
      const cases = [
        { catch_up: 'none', dates: [] as string[] },
        { catch_up: 'latest', dates: ['2025-01-03'] },
        { catch_up: 'all', dates: ['2025-01-01', '2025-01-02', '2025-01-03'] },
      ] as const;
      for (const { catch_up, dates } of cases) {
        it(`${catch_up} submits ${dates.length} job(s), and a second tick at the same time none`, async () => {
          const s = await h.scheduler(at('2025-01-01T00:00:00Z')).create({
            pipeline: 'nightly',
            cron: '0 2 * * *',
            catch_up,
          });
          assert.equal(s.catch_up, catch_up);
          const back = at('2025-01-03T12:00:00Z');
          assert.equal(await h.scheduler(back).tick(back), dates.length);
          // Submitted oldest first.
          assert.deepEqual(
            h.submitted.map((r) => r.params?.date),
            dates,
          );
          assert.deepEqual(
            (await jobsOf(h.store, s.id)).map((j) => j.params.date),
            dates,
          );
          const after1 = await h.scheduler().get(s.id);
          assert.equal(after1.next_fire_at, '2025-01-04T02:00:00.000Z');
          assert.equal(after1.last_fire_at, dates.length ? `${dates.at(-1)}T02:00:00.000Z` : null);

          assert.equal(await h.scheduler(back).tick(back), 0);
          assert.equal((await jobsOf(h.store, s.id)).length, dates.length);
          assert.deepEqual(await h.scheduler().get(s.id), after1);
        });
      }

      it('none still submits a fire that is only a little late', async () => {
        const s = await h.scheduler(at('2025-01-01T00:00:00Z')).create({
          pipeline: 'nightly',
          cron: '0 2 * * *',
          catch_up: 'none',
        });
        assert.equal(await h.scheduler().tick(at('2025-01-01T02:00:05Z')), 1);
        assert.deepEqual(
          (await jobsOf(h.store, s.id)).map((j) => j.params.date),
          ['2025-01-01'],
        );
      });

      it('all submits at most maxCatchUp fires per tick and the rest on the next ticks', async () => {
        // The default cap is 1000 (MAX_CATCH_UP_FIRES); 4 keeps the test fast.
        assert.equal(MAX_CATCH_UP_FIRES, 1000);
        const sch = h.scheduler(at('2025-01-01T00:00:00Z'), { maxCatchUp: 4 });
        const s = await sch.create({ pipeline: 'nightly', cron: '*/10 * * * * *', catch_up: 'all' });
        // 10 fires missed, every 10 s from 00:00:10 to 00:01:40.
        const back = at('2025-01-01T00:01:45Z');
        assert.equal(await sch.tick(back), 4);
        const capped = h.logger.lines.filter((l) => l.level === 'warn' && /capped/.test(l.msg));
        assert.equal(capped.length, 1);
        assert.equal(capped[0]!.fields.next_missed_fire, '2025-01-01T00:00:50.000Z');
        assert.equal((await sch.get(s.id)).next_fire_at, '2025-01-01T00:00:50.000Z');
        assert.equal(await sch.tick(back), 4);
        assert.equal(await sch.tick(back), 2);
        assert.equal(await sch.tick(back), 0);
        const jobs = await jobsOf(h.store, s.id);
        assert.deepEqual(
          jobs.map((j) => j.scheduled_for),
          Array.from({ length: 10 }, (_, i) =>
            new Date(at('2025-01-01T00:00:10Z') + i * 10_000).toISOString(),
          ),
        );
        assert.deepEqual(
          h.submitted.map((r) => r.scheduledFor),
          jobs.map((j) => j.scheduled_for),
          'oldest first',
        );
        assert.equal((await sch.get(s.id)).next_fire_at, '2025-01-01T00:01:50.000Z');
        assert.equal(h.logger.lines.filter((l) => /capped/.test(l.msg)).length, 2);
      });
    });

    it('never submits a fire twice: not after a crash before the bookkeeping, not when ticks race', async () => {
      const s = await h.scheduler(at('2025-01-01T00:00:00Z')).create({
        pipeline: 'nightly',
        cron: '0 2 * * *',
        catch_up: 'all',
      });
      const back = at('2025-01-03T12:00:00Z');
      // Two schedulers (two servers on one store) tick at once.
      const counts = await Promise.all([h.scheduler().tick(back), h.scheduler().tick(back)]);
      assert.equal(counts[0]! + counts[1]!, 3);
      assert.equal((await jobsOf(h.store, s.id)).length, 3);

      // A crash after the submits but before the bookkeeping leaves the old next fire behind.
      await db.run('UPDATE schedules SET next_fire_at = $1, last_fire_at = NULL WHERE id = $2', [
        at('2025-01-01T02:00:00Z'),
        s.id,
      ]);
      const before = h.submitted.length;
      assert.equal(await h.scheduler().tick(back), 0);
      assert.equal(h.submitted.length - before, 3, 'the fires were submitted again');
      assert.equal((await jobsOf(h.store, s.id)).length, 3, '...and made no new jobs');
      const healed = await h.scheduler().get(s.id);
      assert.equal(healed.next_fire_at, '2025-01-04T02:00:00.000Z');
      assert.equal(healed.last_fire_at, '2025-01-03T02:00:00.000Z');
    });

    it('skips a fire whose job is refused, logs why, and moves on', async () => {
      await h.store.savePipeline('regional', REGIONAL_SPEC, ts.dir);
      const s = await h
        .scheduler(at('2025-01-01T00:00:00Z'))
        .create({ pipeline: 'regional', cron: '0 2 * * *' });
      assert.equal(await h.scheduler().tick(at('2025-01-01T02:00:00Z')), 0);
      const refused = h.logger.lines.filter((l) => l.level === 'error' && l.fields.schedule_id === s.id);
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.fields.code, 'SLUICE_SPEC_INVALID');
      assert.match(String(refused[0]!.fields.error), /region/);
      assert.equal((await h.scheduler().get(s.id)).next_fire_at, '2025-01-02T02:00:00.000Z');

      // With the param given, the next fire runs.
      await h.scheduler().update(s.id, { params: { region: 'eu' } });
      assert.equal(await h.scheduler().tick(at('2025-01-02T02:00:00Z')), 1);
      const [job] = await jobsOf(h.store, s.id);
      assert.deepEqual(job!.params, { region: 'eu', date: '2025-01-02' });
    });

    it('refuses a bad cron, timezone, catch-up or param, naming the field and what is valid', async () => {
      const sch = h.scheduler();
      const base = { pipeline: 'nightly', cron: '0 2 * * *' };
      await assert.rejects(
        sch.create({ ...base, cron: 'every day' }),
        assertBadRequest('cron', /5 fields.*6/),
      );
      await assert.rejects(sch.create({ ...base, cron: '61 * * * *' }), assertBadRequest('cron', /minute/));
      await assert.rejects(
        sch.create({ ...base, cron: '0 0 0 1 1 * 2030' }),
        assertBadRequest('cron', /5 or 6/),
      );
      await assert.rejects(
        sch.create({ ...base, cron: '0 0 30 2 *' }),
        assertBadRequest('cron', /never fires/),
      );
      await assert.rejects(
        sch.create({ ...base, timezone: 'Mars/Olympus' }),
        assertBadRequest('timezone', /"Mars\/Olympus".*IANA.*Europe\/Berlin/),
      );
      await assert.rejects(
        sch.create({ ...base, timezone: '+02:00' }),
        assertBadRequest('timezone', /offset/),
      );
      await assert.rejects(
        sch.create({ ...base, catch_up: 'sometimes' as 'all' }),
        assertBadRequest('catch_up', /none, latest, all/),
      );
      await assert.rejects(
        sch.create({ ...base, param_name: 'the day' }),
        assertBadRequest('param_name', /letters/),
      );
      await assert.rejects(
        sch.create({ ...base, params: { date: '2025-01-01' } }),
        assertBadRequest('params', /params\.date is set by the schedule/),
      );
      await assert.rejects(sch.create({ ...base, pipeline: 'nope' }), (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_NOT_FOUND');
        return true;
      });
      assert.deepEqual(await sch.list(), []);

      const s = await sch.create(base);
      await assert.rejects(sch.update(s.id, { cron: '* *' }), assertBadRequest('cron', /5 fields/));
      await assert.rejects(sch.update(s.id, { timezone: 'Nowhere' }), assertBadRequest('timezone', /IANA/));
      assert.deepEqual(await sch.get(s.id), s);
    });

    it('updates, disables, re-enables without catching up, lists and deletes', async () => {
      const sch = h.scheduler(at('2025-01-01T00:00:00Z'));
      const s = await sch.create({ pipeline: 'nightly', cron: '0 2 * * *', enabled: false });
      assert.equal(s.enabled, false);
      assert.equal(s.next_fire_at, null);
      assert.equal(await sch.tick(at('2025-01-05T00:00:00Z')), 0);

      // Enabled on Jan 5th: the fires while disabled are not caught up.
      const on = await h.scheduler(at('2025-01-05T00:00:00Z')).update(s.id, { enabled: true });
      assert.equal(on.next_fire_at, '2025-01-05T02:00:00.000Z');
      // A new cron plans from now.
      const moved = await h.scheduler(at('2025-01-05T00:00:00Z')).update(s.id, {
        cron: '30 6 * * 1',
        catch_up: 'none',
      });
      assert.equal(moved.cron, '30 6 * * 1');
      assert.equal(moved.catch_up, 'none');
      assert.equal(moved.next_fire_at, '2025-01-06T06:30:00.000Z', 'Monday 06:30');
      assert.equal(moved.created_at, s.created_at);
      // Params alone keep the planned fire.
      const withParams = await h.scheduler(at('2025-01-05T01:00:00Z')).update(s.id, { params: { a: 'b' } });
      assert.equal(withParams.next_fire_at, moved.next_fire_at);
      assert.equal(withParams.updated_at, '2025-01-05T01:00:00.000Z');

      const other = await sch.create({ pipeline: 'nightly', cron: '0 3 * * *' });
      assert.deepEqual(
        (await sch.list()).map((x) => x.id),
        [s.id, other.id],
      );
      assert.deepEqual((await sch.list())[0]!.pipeline.name, 'nightly');

      assert.equal(await sch.tick(at('2025-01-06T06:30:00Z')), 2);
      await sch.remove(s.id);
      await assert.rejects(sch.get(s.id), (err: SluiceError) => err.code === 'SLUICE_NOT_FOUND');
      await assert.rejects(sch.remove(s.id), (err: SluiceError) => err.code === 'SLUICE_NOT_FOUND');
      await assert.rejects(sch.update(s.id, {}), (err: SluiceError) => err.code === 'SLUICE_NOT_FOUND');
      assert.equal((await jobsOf(h.store, s.id)).length, 1, 'its jobs stay');
      assert.deepEqual(
        (await sch.list()).map((x) => x.id),
        [other.id],
      );
    });

    it('backfills one job per date, oldest first, and the same backfill again gives the same jobs', async () => {
      const sch = h.scheduler();
      // Across Feb 29th of a leap year.
      const input = { pipeline: 'nightly', from: '2024-02-26', to: '2024-03-03', params: { region: 'eu' } };
      const jobs = await sch.backfill(input);
      const dates = [
        '2024-02-26',
        '2024-02-27',
        '2024-02-28',
        '2024-02-29',
        '2024-03-01',
        '2024-03-02',
        '2024-03-03',
      ];
      assert.deepEqual(
        jobs.map((j) => j.params),
        dates.map((date) => ({ region: 'eu', date })),
      );
      assert.deepEqual(
        h.submitted.map((r) => r.params?.date),
        dates,
      );
      assert.ok(jobs.every((j) => j.state === 'pending' && j.schedule_id === null));
      assert.equal(new Set(jobs.map((j) => j.id)).size, 7);

      const again = await sch.backfill({ ...input, params: { region: 'eu' } });
      assert.deepEqual(
        again.map((j) => j.id),
        jobs.map((j) => j.id),
      );
      assert.equal((await h.store.listJobs({ limit: 100 })).length, 7);

      // Other params are another backfill; another param name too.
      const us = await sch.backfill({ ...input, from: '2024-03-03', params: { region: 'us' } });
      assert.equal(us.length, 1);
      assert.notEqual(us[0]!.id, jobs.at(-1)!.id);
      const single = await sch.backfill({ pipeline: 'nightly', from: '2024-03-03', to: '2024-03-03' });
      assert.deepEqual(single[0]!.params, { date: '2024-03-03' });
      assert.equal((await h.store.listJobs({ limit: 100 })).length, 9);
    });

    it('refuses a bad backfill range, naming the field', async () => {
      const sch = h.scheduler();
      const base = { pipeline: 'nightly', from: '2025-01-01', to: '2025-01-07' };
      await assert.rejects(
        sch.backfill({ ...base, from: '2025-02-30' }),
        assertBadRequest('from', /YYYY-MM-DD/),
      );
      await assert.rejects(sch.backfill({ ...base, to: '7 Jan' }), assertBadRequest('to', /YYYY-MM-DD/));
      await assert.rejects(
        sch.backfill({ ...base, to: '2024-12-31' }),
        assertBadRequest('to', /before from/),
      );
      await assert.rejects(
        sch.backfill({ ...base, from: '2000-01-01', to: '2010-12-31' }),
        assertBadRequest('to', /4018 dates.*at most 3660/),
      );
      await assert.rejects(
        sch.backfill({ ...base, params: { date: 'x' } }),
        assertBadRequest('params', /params\.date/),
      );
      await assert.rejects(
        sch.backfill({ ...base, pipeline: 'nope' }),
        (err: SluiceError) => err.code === 'SLUICE_NOT_FOUND',
      );
      assert.equal((await h.store.listJobs()).length, 0);
    });

    it('start() ticks until stop()', async () => {
      const s = await h
        .scheduler(at('2025-01-01T00:00:00Z'))
        .create({ pipeline: 'nightly', cron: '0 2 * * *' });
      const ticking = new Scheduler({
        db,
        store: h.store,
        logger: h.logger,
        submit: (req) => h.jobs.submit(req),
        now: () => at('2025-01-01T02:00:00Z'),
        pollMs: 5,
      });
      ticking.start();
      const deadline = Date.now() + 5000;
      while ((await jobsOf(h.store, s.id)).length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await ticking.stop();
      assert.equal((await jobsOf(h.store, s.id)).length, 1);
      // Stopped: a fire due later is left for the next start.
      await db.run('UPDATE schedules SET next_fire_at = $1 WHERE id = $2', [
        at('2025-01-01T01:00:00Z'),
        s.id,
      ]);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal((await h.scheduler().get(s.id)).next_fire_at, '2025-01-01T01:00:00.000Z');
    });
  });
}
