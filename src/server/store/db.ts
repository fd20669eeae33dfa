/**
 * The job store's two databases behind one small interface, so the control plane runs the same
 * SQL on the embedded default (SQLite through `node:sqlite`) and on PostgreSQL. Statements use
 * PostgreSQL's `$1` placeholders and portable SQL (no vendor functions); SQLite gets them as `?1`.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import pg from 'pg';

export type SqlValue = string | number | bigint | boolean | null;
export type Row = Record<string, unknown>;

export interface Db {
  readonly kind: 'sqlite' | 'postgres';
  all<T = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
  get<T = Row>(sql: string, params?: SqlValue[]): Promise<T | undefined>;
  /** Runs a statement and returns the number of rows it changed. */
  run(sql: string, params?: SqlValue[]): Promise<number>;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  tx<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** `sqlite:PATH`, a path, or `postgres://...`. */
export async function openDb(url: string): Promise<Db> {
  if (/^postgres(ql)?:\/\//.test(url)) {
    const db = new PostgresDb(url);
    await db.get('SELECT 1 AS ok');
    return db;
  }
  const file = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
  return new SqliteDb(file);
}

/** Where the URL points, for logs: never the password. */
export function describeDbUrl(url: string): string {
  if (!/^postgres(ql)?:\/\//.test(url)) return `sqlite ${url.replace(/^sqlite:/, '')}`;
  const u = new URL(url);
  return `postgres ${u.hostname}:${u.port || 5432}${u.pathname}`;
}

const toSqlite = (sql: string) => sql.replace(/\$(\d+)/g, '?$1');

/**
 * One connection, used by one process. Statements are synchronous, but a transaction spans awaits,
 * so every call goes through a queue: nothing interleaves with an open transaction.
 */
class SqliteDb implements Db {
  readonly kind = 'sqlite' as const;
  readonly #db: DatabaseSync;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.#db = new DatabaseSync(file);
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
  }

  #serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }

  #all<T>(sql: string, params: SqlValue[]): T[] {
    return this.#db.prepare(toSqlite(sql)).all(...params.map(sqliteValue)) as T[];
  }

  #run(sql: string, params: SqlValue[]): number {
    return Number(this.#db.prepare(toSqlite(sql)).run(...params.map(sqliteValue)).changes);
  }

  all<T = Row>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    return this.#serial(() => this.#all<T>(sql, params));
  }

  async get<T = Row>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }

  run(sql: string, params: SqlValue[] = []): Promise<number> {
    return this.#serial(() => this.#run(sql, params));
  }

  tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      this.#db.exec('BEGIN IMMEDIATE');
      // Inside the transaction the queue is held: the handle runs statements directly.
      const inner: Db = {
        kind: 'sqlite',
        all: async <R>(sql: string, params: SqlValue[] = []) => this.#all<R>(sql, params),
        get: async <R>(sql: string, params: SqlValue[] = []) => this.#all<R>(sql, params)[0],
        run: async (sql: string, params: SqlValue[] = []) => this.#run(sql, params),
        tx: (nested) => nested(inner),
        close: async () => {},
      };
      try {
        const result = await fn(inner);
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        this.#db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  async close(): Promise<void> {
    await this.#serial(() => this.#db.close());
  }
}

function sqliteValue(v: SqlValue): SQLInputValue {
  return typeof v === 'boolean' ? (v ? 1 : 0) : v;
}

// BIGINT (int8) and NUMERIC come back as strings by default: every number the store keeps fits
// a double (epoch milliseconds, counters).
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

class PostgresDb implements Db {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;

  constructor(url: string) {
    this.#pool = new pg.Pool({ connectionString: url, max: 10, types: pgTypes as pg.CustomTypesConfig });
    // An idle client that loses its connection must not crash the server; the next query reconnects.
    this.#pool.on('error', () => {});
  }

  async all<T = Row>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    return (await this.#pool.query(sql, params)).rows as T[];
  }

  async get<T = Row>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }

  async run(sql: string, params: SqlValue[] = []): Promise<number> {
    return (await this.#pool.query(sql, params)).rowCount ?? 0;
  }

  async tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    const inner: Db = {
      kind: 'postgres',
      all: async <R>(sql: string, params: SqlValue[] = []) => (await client.query(sql, params)).rows as R[],
      get: async <R>(sql: string, params: SqlValue[] = []) =>
        (await client.query(sql, params)).rows[0] as R | undefined,
      run: async (sql: string, params: SqlValue[] = []) => (await client.query(sql, params)).rowCount ?? 0,
      tx: (nested) => nested(inner),
      close: async () => {},
    };
    try {
      await client.query('BEGIN');
      const result = await fn(inner);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
