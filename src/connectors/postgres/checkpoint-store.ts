/**
 * The engine's checkpoint kept in PostgreSQL (`sluice run --checkpoint-store postgres://...`): one
 * row per pipeline in `sluice_state_checkpoints`, replaced by a single upsert so a save is atomic.
 */
import pg from 'pg';
import { type Checkpoint, type CheckpointStore, parseCheckpoint } from '../../sdk/checkpoint.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { ident, safeUrl } from './common.ts';

export const STATE_TABLE = 'sluice_state_checkpoints';

/**
 * The schema the table lives in: the first entry of the URL's search_path (`?search_path=etl`, or
 * libpq's `?options=-c search_path=etl`), skipping `"$user"`; else `public`. Named explicitly so the
 * location in messages is exact and does not depend on the session.
 */
export function checkpointSchema(url: string): string {
  let params: URLSearchParams;
  try {
    params = new URL(url).searchParams;
  } catch {
    return 'public';
  }
  const fromOptions = /(?:-c\s*|--)search_path=([^\s]+)/.exec(params.get('options') ?? '')?.[1];
  const path = params.get('search_path') ?? fromOptions;
  const first = path
    ?.split(',')
    .map((s) => s.trim())
    .find((s) => s && s !== '$user' && s !== '"$user"');
  if (!first) return 'public';
  return first.startsWith('"') ? first.slice(1, -1).replaceAll('""', '"') : first.toLowerCase();
}

export class PostgresCheckpointStore implements CheckpointStore {
  readonly url: string;
  readonly key: string;
  readonly schema: string;
  readonly #pool: pg.Pool;
  readonly #table: string;
  #ready: Promise<void> | undefined;

  constructor(url: string, key: string) {
    this.url = url;
    this.key = key;
    this.schema = checkpointSchema(url);
    this.#table = `${ident(this.schema)}.${STATE_TABLE}`;
    // Two connections: a save and a load never need more. An idle connection that dies is replaced.
    this.#pool = new pg.Pool({ connectionString: url, max: 2 });
    this.#pool.on('error', () => {});
  }

  get location(): string {
    return `postgres ${safeUrl(this.url)} table ${this.schema}.${STATE_TABLE} key ${JSON.stringify(this.key)}`;
  }

  async load(): Promise<Checkpoint | undefined> {
    const result = await this.#query(
      'read',
      `SELECT checkpoint::text AS cp FROM ${this.#table} WHERE key = $1`,
      [this.key],
    );
    const row = result.rows[0] as { cp: string | null } | undefined;
    if (!row) return undefined;
    return parseCheckpoint(row.cp ?? 'null', this.location);
  }

  /** One statement, so atomic: a crash leaves the previous row or the new one. */
  async save(cp: Checkpoint): Promise<void> {
    await this.#query(
      'save',
      `INSERT INTO ${this.#table} (key, checkpoint, saved_at) VALUES ($1, $2::jsonb, now())
       ON CONFLICT (key) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, saved_at = EXCLUDED.saved_at`,
      [this.key, JSON.stringify(cp)],
    );
  }

  async clear(): Promise<void> {
    await this.#query('remove', `DELETE FROM ${this.#table} WHERE key = $1`, [this.key]);
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => {});
  }

  async #query(what: 'read' | 'save' | 'remove', sql: string, params: unknown[]): Promise<pg.QueryResult> {
    try {
      this.#ready ??= this.#createTable().catch((err: unknown) => {
        this.#ready = undefined;
        throw err;
      });
      await this.#ready;
      return await this.#pool.query(sql, params);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const sqlstate = (err as { code?: unknown }).code;
      throw new SluiceError(
        'SLUICE_CHECKPOINT',
        `cannot ${what} the checkpoint ${this.location}: ${message}`,
        {
          cause: err,
          details: {
            location: this.location,
            table: `${this.schema}.${STATE_TABLE}`,
            key: this.key,
            ...(typeof sqlstate === 'string' ? { sqlstate } : {}),
          },
        },
      );
    }
  }

  async #createTable(): Promise<void> {
    await this.#pool.query(
      `CREATE TABLE IF NOT EXISTS ${this.#table} (
         key text PRIMARY KEY, checkpoint jsonb NOT NULL, saved_at timestamptz NOT NULL DEFAULT now())`,
    );
  }
}
