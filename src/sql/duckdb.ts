import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { DuckDBConfinement } from './confined.ts';

// DuckDB's native binding loads on first use: the SQL compiler imports this module, and a command
// that never parses SQL (`sluice --help`, validating a spec without SQL) must not pay for it.
const duckdb = () => import('@duckdb/node-api');
const confined = () => import('./confined.ts');

/**
 * One in-process DuckDB for the whole process, created on first use. It parses SQL for the
 * per-record compiler, serves as the differential-test oracle, and runs set-level SQL. Callers
 * that run their own statements should open their own connection with `newDuckDBConnection()`:
 * the shared connection is for short, stateless queries.
 *
 * In a process of the control plane (the server, a job process), user SQL reaches this instance
 * (validation binds it, the sql step runs it), so `confineProcessDuckDB` confines it, and every
 * instance made with `createDuckDBInstance`, to the job's folders (src/sql/confined.ts).
 */
let instance: Promise<DuckDBInstance> | undefined;

/**
 * Sluice's dates and times are UTC (compiled SQL reads a TIMESTAMPTZ as UTC), so its DuckDBs are too,
 * not the host's zone (DuckDB's default): a sql step gives one answer whichever path runs it.
 * Only a statement can set it (ICU's setting is unknown when an instance is configured).
 */
const UTC = "SET GLOBAL TimeZone = 'UTC'";
let shared: Promise<DuckDBConnection> | undefined;
let processConfinement: DuckDBConfinement | undefined;

/**
 * Confines every DuckDB of this process to `c`: the shared instance (at once if it exists) and
 * the ones `createDuckDBInstance` makes from now on. Confinement cannot be widened afterwards.
 */
export async function confineProcessDuckDB(c: DuckDBConfinement): Promise<void> {
  if (processConfinement) {
    // Two servers in one process (tests) share the process's DuckDB: only the same roots work.
    if (JSON.stringify(processConfinement) === JSON.stringify(c)) return;
    throw new Error(
      `this process's DuckDB is confined to ${JSON.stringify(processConfinement.allowedDirectories)} already; a second confinement (${JSON.stringify(c.allowedDirectories)}) cannot widen it`,
    );
  }
  processConfinement = c;
  for (const made of [instance, oneThread]) {
    if (!made) continue;
    const conn = await (await made).connect();
    try {
      await (await confined()).confine(conn, made === oneThread ? { ...c, lock: false } : c);
    } finally {
      conn.closeSync();
    }
  }
}

/** The confinement `confineProcessDuckDB` set, if any. */
export function duckDBConfinement(): DuckDBConfinement | undefined {
  return processConfinement;
}

/**
 * A new in-memory instance with `options`, confined like the process when it is confined (its
 * settings stay unlocked, for callers that change them between statements; files stay confined).
 */
export async function createDuckDBInstance(options: Record<string, string> = {}): Promise<DuckDBInstance> {
  const c = processConfinement;
  const { DuckDBInstance } = await duckdb();
  const created = await DuckDBInstance.create(
    ':memory:',
    c ? { ...(await confined()).confinedInstanceOptions(c), ...options } : options,
  );
  const conn = await created.connect();
  try {
    await conn.run(UTC);
    if (c) await (await confined()).confine(conn, { ...c, lock: false });
  } catch (err) {
    created.closeSync();
    throw err;
  } finally {
    conn.closeSync();
  }
  return created;
}

export function getDuckDBInstance(): Promise<DuckDBInstance> {
  instance ??= createShared().catch((err: unknown) => {
    instance = undefined;
    throw err;
  });
  return instance;
}

async function createShared(): Promise<DuckDBInstance> {
  const c = processConfinement;
  const { DuckDBInstance } = await duckdb();
  const created = await DuckDBInstance.create(
    ':memory:',
    c ? (await confined()).confinedInstanceOptions(c) : {},
  );
  const conn = await created.connect();
  try {
    await conn.run(UTC);
    if (c) await (await confined()).confine(conn, c);
  } catch (err) {
    created.closeSync();
    throw err;
  } finally {
    conn.closeSync();
  }
  return created;
}

/** The shared connection: for short stateless queries (parsing, metadata, small lookups). */
export function getDuckDB(): Promise<DuckDBConnection> {
  shared ??= getDuckDBInstance()
    .then((db) => db.connect())
    .catch((err: unknown) => {
      shared = undefined;
      throw err;
    });
  return shared;
}

let oneThread: Promise<DuckDBInstance> | undefined;

/**
 * A fresh connection on a second shared instance that runs on one thread (made like
 * `createDuckDBInstance`'s), for many small queries in turn (the DuckDB micro-batch path): there a
 * second thread costs more CPU waking up and handing work over than it saves.
 */
export function newOneThreadConnection(): Promise<DuckDBConnection> {
  oneThread ??= createDuckDBInstance({ threads: '1' }).catch((err: unknown) => {
    oneThread = undefined;
    throw err;
  });
  return oneThread.then((db) => db.connect());
}

/** A fresh connection on the shared instance, for a component that keeps state (temp tables). */
export async function newDuckDBConnection(): Promise<DuckDBConnection> {
  return (await getDuckDBInstance()).connect();
}
