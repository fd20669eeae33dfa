/**
 * Fresh job stores for tests, on both databases the server supports: a SQLite file in a temp
 * directory, and a new database on the test PostgreSQL (scripts/services/postgres.sh), dropped after.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type Db, openDb } from './db.ts';
import { migrate } from './schema.ts';

export const TEST_POSTGRES_URL =
  process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://sluice@127.0.0.1:54329/sluice_test';

export type StoreKind = 'sqlite' | 'postgres';

export interface TestStore {
  kind: StoreKind;
  /** What `sluice server --database` takes for this store. */
  url: string;
  /** A temp directory the test may use (the SQLite file lives in it). */
  dir: string;
  open(): Promise<Db>;
  /** Opens and migrates. */
  openMigrated(): Promise<Db>;
  dispose(): Promise<void>;
}

export async function createTestStore(kind: StoreKind): Promise<TestStore> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sluice-store-'));
  let url: string;
  let drop = async () => {};
  if (kind === 'sqlite') {
    url = path.join(dir, 'sluice.db');
  } else {
    const name = `sluice_t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    const u = new URL(TEST_POSTGRES_URL);
    u.pathname = `/${name}`;
    url = u.toString();
    drop = async () => {
      const c = new pg.Client({ connectionString: TEST_POSTGRES_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    };
  }
  return {
    kind,
    url,
    dir,
    open: () => openDb(url),
    async openMigrated() {
      const db = await openDb(url);
      await migrate(db);
      return db;
    },
    async dispose() {
      await drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
