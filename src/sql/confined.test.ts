/**
 * DuckDB confinement (src/sql/confined.ts, src/sql/duckdb.ts): what user SQL run with the
 * server's privileges may open. This file confines its own process, as a job process does, so
 * its tests run in order and share that confinement.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openConfinedDuckDB, withStatementTimeout } from './confined.ts';
import { confineProcessDuckDB, createDuckDBInstance, newDuckDBConnection } from './duckdb.ts';
import { SetQuery } from './set.ts';

let work: string;
let allowed: string;
let outside: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-confined-'));
  allowed = path.join(work, 'allowed');
  outside = path.join(work, 'outside');
  await mkdir(allowed, { recursive: true });
  await mkdir(outside, { recursive: true });
  await writeFile(path.join(allowed, 'ok.csv'), 'id,v\n1,inside\n');
  await writeFile(path.join(outside, 'private.csv'), 'id,v\n1,outside-value\n');
});
after(() => rm(work, { recursive: true, force: true }));

const refused = async (run: () => Promise<unknown>) => {
  await assert.rejects(
    run,
    /file system operations are disabled|disabled through configuration|locked|Cannot enable external access|Cannot change allowed/,
  );
};

describe('openConfinedDuckDB', () => {
  it('sees what setup prepared and the files it returned, nothing else', async () => {
    const db = await openConfinedDuckDB({ memoryLimit: '64MB', threads: 1 }, async (conn) => {
      await conn.run(`CREATE TEMP VIEW mine AS SELECT * FROM read_csv('${allowed}/ok.csv')`);
      return { allowedPaths: [path.join(allowed, 'ok.csv')] };
    });
    try {
      const c = db.connection;
      const rows = (await c.runAndReadAll('SELECT v FROM mine')).getRowObjectsJson();
      assert.deepEqual(rows, [{ v: 'inside' }]);
      await refused(() => c.run(`SELECT * FROM read_csv('${outside}/private.csv')`));
      await refused(() => c.run(`SELECT * FROM read_text('${allowed}/*')`));
      await refused(() => c.run(`COPY (SELECT 1) TO '${allowed}/written.csv'`));
      await refused(() => c.run('SET enable_external_access = true'));
      await refused(() => c.run("SET memory_limit = '8GB'"));
      await refused(() => c.run(`ATTACH '${allowed}/new.duckdb' AS other`));
      assert.equal(existsSync(path.join(allowed, 'written.csv')), false);
      assert.equal(existsSync(path.join(allowed, 'new.duckdb')), false);
    } finally {
      db.close();
    }
  });

  it('interrupts a statement that runs past its timeout', async () => {
    const db = await openConfinedDuckDB({ threads: 1 });
    try {
      await assert.rejects(
        withStatementTimeout(db.connection, 200, () =>
          db.connection.run('SELECT count(*) FROM range(1000000000000)'),
        ),
        /ran longer than 0.2 s/,
      );
    } finally {
      db.close();
    }
  });
});

describe('a confined process (a job process)', () => {
  before(async () => {
    // As the worker does, before any user SQL runs: the shared instance exists already here.
    await (await newDuckDBConnection()).run('SELECT 1');
    await confineProcessDuckDB({ allowedDirectories: [allowed] });
  });

  it('confines the shared instance: the sql step, lookups and validation', async () => {
    const conn = await newDuckDBConnection();
    try {
      const inside = (
        await conn.runAndReadAll(`SELECT v FROM read_csv('${allowed}/ok.csv')`)
      ).getRowObjectsJson();
      assert.deepEqual(inside, [{ v: 'inside' }]);
      await refused(() => conn.run(`SELECT * FROM read_csv('${outside}/private.csv')`));
      await refused(() => conn.run("SELECT * FROM read_text('/etc/passwd')"));
      await refused(() => conn.run(`COPY (SELECT 1) TO '${outside}/x.csv'`));
      await refused(() => conn.run("SET allowed_directories = ['/']"));
    } finally {
      conn.closeSync();
    }
    // A set-level sql step whose lookup lies outside fails to open, whatever the spec check said.
    await assert.rejects(
      SetQuery.open('SELECT i.*, p.v FROM input i JOIN private p USING (id)', {
        lookups: { private: { path: path.join(outside, 'private.csv') } },
        baseDir: allowed,
      }),
      /file system operations are disabled/,
    );
  });

  it('confines the instances the pushdown makes, which may still change their own settings', async () => {
    const instance = await createDuckDBInstance({ threads: '1' });
    const conn = await instance.connect();
    try {
      await conn.run(`COPY (SELECT 42 AS n) TO '${allowed}/pushed.csv'`);
      assert.equal(existsSync(path.join(allowed, 'pushed.csv')), true);
      await refused(() => conn.run(`COPY (SELECT 42 AS n) TO '${outside}/pushed.csv'`));
      await refused(() => conn.run(`SELECT * FROM read_csv('${outside}/private.csv')`));
      await refused(() => conn.run('SET enable_external_access = true'));
      await conn.run("SET enable_profiling = 'json'");
      assert.equal(existsSync(path.join(outside, 'pushed.csv')), false);
    } finally {
      conn.closeSync();
      instance.closeSync();
    }
  });

  it('cannot be widened by a second confinement', async () => {
    await assert.rejects(confineProcessDuckDB({ allowedDirectories: ['/'] }), /cannot widen/);
  });
});
