/**
 * The supervisor's job slots under the orderings a loaded machine makes likely, forced here with a
 * gate in the real job store instead of hoping for the timing.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitUntil } from '../sdk/testing.ts';
import { jobPaths } from './jobs.ts';
import type { JobState } from './lifecycle.ts';
import { ServerMetrics } from './metrics.ts';
import { recordingLogger } from './scheduler.suite.ts';
import type { Db } from './store/db.ts';
import { type JobRecord, JobStore } from './store/jobs.ts';
import { createTestStore, type TestStore } from './store/test-util.ts';
import { Supervisor } from './supervisor.ts';
import { generateSpec, testWorkspace } from './test-util.ts';
import { WebhookService } from './webhooks.ts';

/** A point in the store where the supervisor is held, once reached, until the test opens it. */
interface Gate {
  /** The job as the held operation saw it. */
  reached: Promise<JobRecord>;
  open(): void;
}

/**
 * The real store, which holds the supervisor right after one chosen operation: the move of a job
 * to running (its launch, before it forks the process), or a read of a job (its exit's handling).
 */
class GatedJobStore extends JobStore {
  #gate:
    | { at: (op: 'read' | JobState, job: JobRecord) => boolean; held: (job: JobRecord) => Promise<void> }
    | undefined;

  #hold(at: (op: 'read' | JobState, job: JobRecord) => boolean): Gate {
    const reached = Promise.withResolvers<JobRecord>();
    const opened = Promise.withResolvers<void>();
    this.#gate = {
      at,
      held: (job) => {
        this.#gate = undefined;
        reached.resolve(job);
        return opened.promise;
      },
    };
    return { reached: reached.promise, open: () => opened.resolve() };
  }

  holdMoveTo(state: JobState): Gate {
    return this.#hold((op) => op === state);
  }

  holdRead(jobId: string): Gate {
    return this.#hold((op, job) => op === 'read' && job.id === jobId);
  }

  override async transition(...args: Parameters<JobStore['transition']>): Promise<JobRecord | undefined> {
    const moved = await super.transition(...args);
    if (moved && this.#gate?.at(moved.state, moved)) await this.#gate.held(moved);
    return moved;
  }

  override async getJob(id: string): Promise<JobRecord | undefined> {
    const job = await super.getJob(id);
    if (job && this.#gate?.at('read', job)) await this.#gate.held(job);
    return job;
  }
}

describe('supervisor', () => {
  let ts: TestStore;
  let db: Db;

  before(async () => {
    ts = await createTestStore('sqlite');
    db = await ts.openMigrated();
  });
  after(async () => {
    await db.close();
    await ts.dispose();
  });

  const submit = async (store: JobStore, spec: string): Promise<JobRecord> => {
    const name = /metadata: \{ name: (\S+) \}/.exec(spec)?.[1] ?? 'unnamed';
    const { pipeline, version } = await store.savePipeline(name, spec, ts.dir);
    return (await store.createJob({ pipelineId: pipeline.id, version, params: {} })).job;
  };

  const oneSlotSupervisor = (store: JobStore) => {
    const logger = recordingLogger();
    const supervisor = new Supervisor({
      store,
      logger,
      metrics: new ServerMetrics({ jobCounts: () => store.countByState() }),
      webhooks: new WebhookService({ db, logger }),
      stateDir: ts.dir,
      workspace: testWorkspace(ts.dir),
      maxJobs: 1,
      cancelGraceMs: 10_000,
      // Only wake-ups (a submit, a process's end) start jobs here: no poll hides a missed one.
      pollMs: 3_600_000,
    });
    return { supervisor, logger };
  };

  it('frees the only slot when its job is cancelled while its process is starting', async () => {
    const store = new GatedJobStore(db);
    const { supervisor, logger } = oneSlotSupervisor(store);
    // Without a count the job never ends by itself: only the cancel can free its slot.
    const endless = await submit(store, generateSpec('endless', { rate: '1000/s' }));
    const launch = store.holdMoveTo('running');
    await supervisor.start();
    try {
      const running = await launch.reached;
      assert.equal(running.id, endless.id);
      assert.equal(supervisor.running, 0, 'held before its process is forked');
      const cancelled = await supervisor.cancel(running, 'cancelled by the test');
      const next = await submit(store, generateSpec('next', { count: 5 }));
      supervisor.wake(); // as a submit through the API does
      launch.open();
      // Its process is not waited for: a job process is niced and may crawl on a loaded machine.
      const started = (id: string) =>
        logger.lines.some((l) => l.msg === 'job process started' && l.fields.job_id === id);
      await waitUntil(
        'the job submitted after the cancel got the slot and a process',
        () => started(next.id),
        {
          gone: () =>
            started(endless.id)
              ? 'the cancelled job got a process after all, which holds the only slot'
              : undefined,
        },
      );
      const after = await store.requireJob(endless.id);
      assert.equal(after.state, 'cancelled', `the cancel returned it ${cancelled.state}`);
      assert.equal(after.reason, 'cancelled by the test');
      assert.equal(after.pid, null);
      assert.deepEqual(
        (await store.events(endless.id)).map((e) => e.to_state),
        ['pending', 'running', 'cancelling', 'cancelled'],
      );
    } finally {
      launch.open();
      await supervisor.stop();
    }
  });

  it('ends a job whose process ended just before a cancel came, instead of leaving it cancelling', async () => {
    const store = new GatedJobStore(db);
    const { supervisor } = oneSlotSupervisor(store);
    const quick = await submit(store, generateSpec('quick', { count: 5 }));
    // The first read of the job is the supervisor's, once its process has ended.
    const ended = store.holdRead(quick.id);
    await supervisor.start();
    try {
      const seen = await ended.reached;
      assert.equal(seen.state, 'running', 'read before the cancel');
      const cancelling = await supervisor.cancel(seen, 'cancelled by the test');
      assert.equal(cancelling.state, 'cancelling');
      ended.open();
      await waitUntil('the ended process freed its slot', () => supervisor.running === 0);
      const after = await store.requireJob(quick.id);
      assert.equal(after.state, 'succeeded', `${after.state}: ${after.reason}`);
      assert.equal(after.reason, 'it finished before the cancel reached it');
      assert.deepEqual(after.summary?.totals, { read: 5, written: 5, failed: 0, filtered: 0, skipped: 0 });
    } finally {
      ended.open();
      await supervisor.stop();
    }
  });

  it('fails a job whose folders cannot be made, and frees its slot, instead of leaving it running', async () => {
    const store = new GatedJobStore(db);
    const { supervisor, logger } = oneSlotSupervisor(store);
    const blocked = await submit(store, generateSpec('blocked', { count: 5 }));
    const launch = store.holdMoveTo('running');
    await supervisor.start();
    try {
      const running = await launch.reached;
      // a file where the job's folder goes: making its runs folder fails (ENOTDIR)
      await mkdir(path.dirname(jobPaths(ts.dir, running.id).dir), { recursive: true });
      await writeFile(jobPaths(ts.dir, running.id).dir, 'in the way');
      const next = await submit(store, generateSpec('after-blocked', { count: 5 }));
      launch.open();
      await waitUntil(
        'the blocked job ended',
        async () => (await store.requireJob(blocked.id)).state === 'failed',
      );
      const after = await store.requireJob(blocked.id);
      assert.equal(after.reason, 'it could not start: its folders could not be made (ENOTDIR)');
      assert.ok(!after.reason?.includes(ts.dir), "the server's paths stay in its log");
      assert.ok(
        logger.lines.some(
          (l) => l.msg === 'could not make the job folders' && l.fields.job_id === blocked.id,
        ),
      );
      await waitUntil('the next job got the slot and a process', () =>
        logger.lines.some((l) => l.msg === 'job process started' && l.fields.job_id === next.id),
      );
    } finally {
      launch.open();
      await supervisor.stop();
    }
  });
});
