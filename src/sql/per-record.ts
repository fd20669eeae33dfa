/**
 * Compiled per-record SQL with DuckDB for the records it cannot answer exactly: a record whose
 * compiled evaluation throws ComputeOnDuckDB (an integer beyond ±2^53, a value with no compiled
 * type) is evaluated by DuckDB in micro-batches, so the step gives DuckDB's answer for it instead
 * of an error record DuckDB would not produce. Other records cost one try/catch, as before.
 */
import { toSluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord, StepResult } from '../sdk/types.ts';
import { BatchQuery, type BatchQueryOptions } from './batch.ts';
import { isComputeOnDuckDB } from './fallback.ts';

export interface PerRecordSql {
  process(batch: SluiceRecord[]): StepResult | Promise<StepResult>;
  close(): Promise<void>;
}

/**
 * `fn` maps a record to its output record, or null when the query drops it. `sql` and `opts` open
 * the DuckDB path on first need.
 */
export function withDuckDBFallback(
  fn: (record: SluiceRecord) => SluiceRecord | null,
  sql: string,
  opts: BatchQueryOptions,
): PerRecordSql {
  let duck: Promise<BatchQuery> | undefined;

  /** The output of a record on the compiled path: a record, null (dropped), a rejection, or 'duckdb'. */
  const one = (record: SluiceRecord): SluiceRecord | null | Rejection | 'duckdb' => {
    try {
      return fn(record);
    } catch (err) {
      if (isComputeOnDuckDB(err)) return 'duckdb';
      return { record, error: toSluiceError(err, 'SLUICE_STEP_FAILED') };
    }
  };

  async function withDuckDB(batch: SluiceRecord[], deferred: number[]): Promise<StepResult> {
    duck ??= BatchQuery.open(sql, opts);
    const q = await duck;
    // a fresh meta object per record tells which input an output (or a rejection) comes from
    const marks = new Map<object, number>();
    const inputs = deferred.map((i) => {
      const meta = { ...batch[i]!.meta };
      marks.set(meta, i);
      return { ...batch[i]!, meta };
    });
    const result = await q.process(inputs);
    const byInput = new Map<number, SluiceRecord | Rejection | null>(deferred.map((i) => [i, null]));
    for (const r of result.records) {
      const i = marks.get(r.meta as object)!;
      // a condition keeps the input record itself (a filter step keeps records)
      byInput.set(i, r.value === batch[i]!.value ? batch[i]! : { ...r, meta: batch[i]!.meta });
    }
    for (const r of result.rejected ?? []) {
      const i = marks.get(r.record!.meta as object)!;
      byInput.set(i, { ...r, record: batch[i]! });
    }
    // the compiled outputs again, in input order (compiled SQL is pure: a second run gives the same)
    const records: SluiceRecord[] = [];
    const rejected: Rejection[] = [];
    for (let i = 0; i < batch.length; i++) {
      const o = byInput.has(i) ? byInput.get(i)! : one(batch[i]!);
      if (o === null || o === 'duckdb') continue;
      if ('error' in o) rejected.push(o);
      else records.push(o);
    }
    return rejected.length ? { records, rejected } : { records };
  }

  return {
    process(batch) {
      // the common path, as mapRecords: one try/catch per record, nothing else
      const records: SluiceRecord[] = [];
      let rejected: Rejection[] | undefined;
      let deferred: number[] | undefined;
      for (let i = 0; i < batch.length; i++) {
        const record = batch[i]!;
        let out: SluiceRecord | null;
        try {
          out = fn(record);
        } catch (err) {
          if (isComputeOnDuckDB(err)) {
            deferred ??= [];
            deferred.push(i);
          } else {
            rejected ??= [];
            rejected.push({ record, error: toSluiceError(err, 'SLUICE_STEP_FAILED') });
          }
          continue;
        }
        if (out !== null) records.push(out);
      }
      if (deferred) return withDuckDB(batch, deferred);
      return rejected ? { records, rejected } : { records };
    },
    async close() {
      if (duck) await (await duck).close();
    },
  };
}
