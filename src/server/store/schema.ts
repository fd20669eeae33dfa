import type { Db } from './db.ts';

/**
 * The job store's tables. Portable SQL: TEXT, BIGINT and INTEGER only, times as epoch
 * milliseconds, JSON as TEXT. Each entry is applied once, in order, and recorded in
 * `schema_migrations`; never edit an applied entry, append a new one.
 */
const MIGRATIONS: string[][] = [
  [
    `CREATE TABLE pipelines (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      latest_version INTEGER NOT NULL,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL
    )`,
    `CREATE TABLE pipeline_versions (
      pipeline_id TEXT NOT NULL,
      version INTEGER NOT NULL,
      spec TEXT NOT NULL,
      base_dir TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      PRIMARY KEY (pipeline_id, version)
    )`,
    `CREATE TABLE jobs (
      id TEXT PRIMARY KEY,
      pipeline_id TEXT NOT NULL,
      pipeline_name TEXT NOT NULL,
      pipeline_version INTEGER NOT NULL,
      params TEXT NOT NULL,
      state TEXT NOT NULL,
      restarts INTEGER NOT NULL DEFAULT 0,
      restart_policy TEXT NOT NULL,
      reason TEXT,
      idempotency_key TEXT UNIQUE,
      request_hash TEXT,
      schedule_id TEXT,
      scheduled_for TEXT,
      owner TEXT,
      pid INTEGER,
      next_start_at BIGINT,
      summary TEXT,
      checks TEXT,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      started_at BIGINT,
      ended_at BIGINT
    )`,
    'CREATE INDEX jobs_state ON jobs (state)',
    'CREATE INDEX jobs_pipeline ON jobs (pipeline_id, created_at)',
    `CREATE TABLE job_events (
      job_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      at BIGINT NOT NULL,
      from_state TEXT,
      to_state TEXT NOT NULL,
      reason TEXT,
      PRIMARY KEY (job_id, seq)
    )`,
    `CREATE TABLE tokens (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      hash TEXT NOT NULL UNIQUE,
      scopes TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      revoked_at BIGINT,
      last_used_at BIGINT
    )`,
    `CREATE TABLE webhooks (
      id TEXT PRIMARY KEY,
      url TEXT NOT NULL,
      secret TEXT NOT NULL,
      events TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      deleted_at BIGINT
    )`,
    `CREATE TABLE webhook_deliveries (
      id TEXT PRIMARY KEY,
      webhook_id TEXT NOT NULL,
      event TEXT NOT NULL,
      job_id TEXT,
      payload TEXT NOT NULL,
      status TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_at BIGINT,
      last_status INTEGER,
      last_error TEXT,
      created_at BIGINT NOT NULL,
      delivered_at BIGINT
    )`,
    'CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)',
    `CREATE TABLE schedules (
      id TEXT PRIMARY KEY,
      pipeline_id TEXT NOT NULL,
      cron TEXT NOT NULL,
      timezone TEXT NOT NULL,
      catch_up TEXT NOT NULL,
      param_name TEXT NOT NULL,
      params TEXT NOT NULL,
      enabled INTEGER NOT NULL,
      last_fire_at BIGINT,
      next_fire_at BIGINT,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL
    )`,
    'CREATE INDEX schedules_due ON schedules (next_fire_at)',
  ],
  // The secrets a token may use in specs (names or globs, JSON); an admin token may use every one.
  ["ALTER TABLE tokens ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]'"],
];

export async function migrate(db: Db): Promise<void> {
  await db.run(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)',
  );
  for (const [i, statements] of MIGRATIONS.entries()) {
    const version = i + 1;
    await db.tx(async (tx) => {
      // Two servers starting on one PostgreSQL at once: the primary key makes the second one wait
      // for the first, then skip.
      const done = await tx.get('SELECT version FROM schema_migrations WHERE version = $1', [version]);
      if (done) return;
      for (const sql of statements) await tx.run(sql);
      await tx.run('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [
        version,
        Date.now(),
      ]);
    });
  }
}
