import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';

/**
 * One in-process DuckDB for the whole process, created on first use. It parses SQL for the
 * per-record compiler, serves as the differential-test oracle, and runs set-level SQL. Callers
 * that run their own statements should open their own connection with `newDuckDBConnection()`:
 * the shared connection is for short, stateless queries.
 */
let instance: Promise<DuckDBInstance> | undefined;
let shared: Promise<DuckDBConnection> | undefined;

export function getDuckDBInstance(): Promise<DuckDBInstance> {
  instance ??= DuckDBInstance.create(':memory:').catch((err: unknown) => {
    instance = undefined;
    throw err;
  });
  return instance;
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

/** A fresh connection on the shared instance, for a component that keeps state (temp tables). */
export async function newDuckDBConnection(): Promise<DuckDBConnection> {
  return (await getDuckDBInstance()).connect();
}
