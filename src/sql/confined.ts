/**
 * DuckDB for SQL that a user wrote and the server runs with its own privileges. DuckDB confines
 * itself, so nothing here parses the SQL: external access is switched off (no file, URL, ATTACH,
 * COPY TO, INSTALL or LOAD outside the allowed folders and files), extensions are never fetched
 * or loaded on demand, and the configuration can be locked so that a statement cannot undo any
 * of it. `enable_external_access = false` is one-way in DuckDB: it cannot be switched back on,
 * nor the allowed folders widened, while the database runs.
 */
import { type DuckDBConnection, DuckDBInstance, quotedString } from '@duckdb/node-api';
import { SluiceError } from '../sdk/errors.ts';

export interface DuckDBConfinement {
  /** Folders whose files (everything below them) the SQL may read and write. */
  allowedDirectories?: readonly string[];
  /** Single files the SQL may read and write, e.g. the files a view reads. */
  allowedPaths?: readonly string[];
  /** DuckDB's memory_limit, e.g. `256MB`. */
  memoryLimit?: string;
  threads?: number;
  /**
   * Lock every setting (memory, threads, profiling, time zone) once confined. Off only for a
   * caller that changes its own settings between statements (the pushdown's profiling); the
   * file confinement holds either way.
   */
  lock?: boolean;
}

export interface ConfinedDuckDB {
  instance: DuckDBInstance;
  connection: DuckDBConnection;
  close(): void;
}

/** Creation options of every confined instance: extensions are never fetched or loaded on demand. */
export function confinedInstanceOptions(c: DuckDBConfinement): Record<string, string> {
  return {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    ...(c.threads !== undefined ? { threads: String(c.threads) } : {}),
    ...(c.memoryLimit !== undefined ? { memory_limit: c.memoryLimit } : {}),
  };
}

/** Applies the confinement to a running instance through one of its connections. */
export async function confine(connection: DuckDBConnection, c: DuckDBConfinement): Promise<void> {
  const list = (items: readonly string[] | undefined) => `[${(items ?? []).map(quotedString).join(', ')}]`;
  // DuckDB matches a directory by prefix: the trailing separator keeps /data from allowing /data2.
  const dirs = (c.allowedDirectories ?? []).map((d) => (d.endsWith('/') ? d : `${d}/`));
  await connection.run(`SET allowed_directories = ${list(dirs)}`);
  await connection.run(`SET allowed_paths = ${list(c.allowedPaths)}`);
  await connection.run('SET enable_external_access = false');
  if (c.lock ?? true) await connection.run('SET lock_configuration = true');
}

/**
 * A new in-memory DuckDB whose SQL sees only what `setup` prepared and the allowed folders and
 * files. `setup` runs first, with full access (to load tables, create views, set the time zone);
 * the files it returns (those its views read) are allowed too.
 */
export async function openConfinedDuckDB(
  c: DuckDBConfinement,
  setup?: (connection: DuckDBConnection) => Promise<{ allowedPaths?: readonly string[] } | undefined>,
): Promise<ConfinedDuckDB> {
  const instance = await DuckDBInstance.create(':memory:', confinedInstanceOptions(c));
  const connection = await instance.connect();
  const close = () => {
    connection.closeSync();
    instance.closeSync();
  };
  try {
    const extra = setup ? await setup(connection) : undefined;
    await confine(connection, {
      ...c,
      allowedPaths: [...(c.allowedPaths ?? []), ...(extra?.allowedPaths ?? [])],
    });
  } catch (err) {
    close();
    throw err;
  }
  return { instance, connection, close };
}

/**
 * Runs `work` on `connection`, interrupting it after `timeoutMs` (DuckDB has no statement
 * timeout of its own). An interrupted query fails with SLUICE_QUERY_FAILED saying so.
 */
export async function withStatementTimeout<T>(
  connection: DuckDBConnection,
  timeoutMs: number,
  work: () => Promise<T>,
): Promise<T> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    connection.interrupt();
  }, timeoutMs);
  try {
    return await work();
  } catch (err) {
    if (timedOut) {
      throw new SluiceError(
        'SLUICE_QUERY_FAILED',
        `the query ran longer than ${timeoutMs / 1000} s and was stopped; narrow it (a WHERE, a LIMIT)`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
