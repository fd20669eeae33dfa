/**
 * A batch of records as a relation DuckDB scans in place: the table function
 * `__sluice_batch(<feed id>)` reads the rows a `BatchFeed` holds, straight into DuckDB's vectors.
 * Loading them into a temp table instead (appender, insert, then delete) cost as much CPU again
 * as the query itself; a scan has nothing to insert or to clear.
 */
import {
  type DuckDBConnection,
  DuckDBTableFunction,
  type DuckDBType,
  type DuckDBValue,
  INTEGER,
} from '@duckdb/node-api';
import type { Shape } from './shape.ts';
import { duckConverter, duckType, quoteIdent } from './table.ts';

export const BATCH_SCAN = '__sluice_batch';

/** One input column: its name, its record values' shape, and how a value becomes DuckDB's. */
interface FeedColumn {
  name: string;
  type: DuckDBType;
  value: (v: unknown) => DuckDBValue;
}

/** What one scan reads: the feed's rows when it started, and how far it has come. */
interface ScanState {
  feed: BatchFeed;
  rows: readonly Record<string, unknown>[];
  ids: readonly number[];
  at: number;
  /** The feed's columns DuckDB asked for, in the order of the output chunk's vectors (-1: the row number). */
  columns: number[];
}

const feeds = new Map<number, BatchFeed>();
let lastFeed = 0;

/** The rows of one record shape for the next scan: columns fixed at creation, rows per run. */
export class BatchFeed {
  readonly id = ++lastFeed;
  readonly columns: FeedColumn[];
  readonly rowColumn: string;
  rows: readonly Record<string, unknown>[] = [];
  ids: readonly number[] = [];

  /** `rowColumn` is an INTEGER column holding each row's id; `columns` the record fields. */
  constructor(rowColumn: string, columns: readonly { name: string; shape: Shape }[]) {
    this.rowColumn = rowColumn;
    this.columns = columns.map((c) => ({
      name: c.name,
      type: duckType(c.shape),
      value: duckConverter(c.shape),
    }));
    feeds.set(this.id, this);
  }

  /** The relation to select from. */
  get sql(): string {
    return `${BATCH_SCAN}(${this.id})`;
  }

  /** The rows the next scan reads; `ids[i]` is row `i`'s id. */
  load(rows: readonly Record<string, unknown>[], ids: readonly number[]): void {
    this.rows = rows;
    this.ids = ids;
  }

  clear(): void {
    this.rows = [];
    this.ids = [];
  }

  close(): void {
    this.clear();
    feeds.delete(this.id);
  }
}

const registered = new WeakSet<DuckDBConnection>();

/** Makes `__sluice_batch` known to the connection's database (once per connection). */
export function registerBatchScan(conn: DuckDBConnection): void {
  if (registered.has(conn)) return;
  conn.registerTableFunction(scanFunction);
  registered.add(conn);
}

function feedOf(id: DuckDBValue): BatchFeed {
  const feed = feeds.get(Number(id));
  if (!feed) throw new Error(`${BATCH_SCAN}(${String(id)}): no such batch`);
  return feed;
}

const scanFunction = DuckDBTableFunction.create({
  name: BATCH_SCAN,
  parameterTypes: [INTEGER],
  supportsProjectionPushdown: true,
  bindFunction: (bind) => {
    try {
      const feed = feedOf(bind.getParameter(0));
      bind.addResultColumn(feed.rowColumn, INTEGER);
      for (const c of feed.columns) bind.addResultColumn(c.name, c.type);
      bind.setBindData(feed);
    } catch (err) {
      bind.setError((err as Error).message);
    }
  },
  initFunction: (init) => {
    const feed = init.bindData as BatchFeed;
    init.setMaxThreads(1);
    const state: ScanState = {
      feed,
      rows: feed.rows,
      ids: feed.ids,
      at: 0,
      columns: init.getColumnIndexes().map((c) => c - 1),
    };
    init.setInitData(state);
  },
  mainFunction: (info, out) => {
    const s = info.initData as ScanState;
    try {
      const n = Math.min(2048, s.rows.length - s.at);
      out.rowCount = n;
      if (n <= 0) return;
      s.columns.forEach((c, j) => {
        const vector = out.getColumnVector(j);
        if (c < 0) for (let k = 0; k < n; k++) vector.setItem(k, s.ids[s.at + k]!);
        else {
          const { name, value } = s.feed.columns[c]!;
          for (let k = 0; k < n; k++) vector.setItem(k, value(s.rows[s.at + k]![name]));
        }
        vector.flush();
      });
      s.at += n;
    } catch (err) {
      info.setError(`loading records into DuckDB failed: ${(err as Error).message}`);
    }
  },
});

/** `SELECT <row>, <cols>, NULL AS <missing> FROM __sluice_batch(id)`: a shape's view. */
export function feedViewSql(feed: BatchFeed, names: readonly string[], nulls: readonly string[]): string {
  const have = new Set(feed.columns.map((c) => c.name));
  const cols = [quoteIdent(feed.rowColumn)];
  for (const n of names) cols.push(have.has(n) ? quoteIdent(n) : `NULL AS ${quoteIdent(n)}`);
  for (const m of nulls) cols.push(`NULL AS ${quoteIdent(m)}`);
  return `SELECT ${cols.join(', ')} FROM ${feed.sql}`;
}
