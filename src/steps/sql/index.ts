import type {
  ComponentContext,
  RecordSchema,
  SluiceRecord,
  StepInstance,
  StepResult,
} from '../../sdk/types.ts';
import {
  BatchQuery,
  compileSelect,
  duckBatchesInFlight,
  planQuery,
  ResultSchema,
  SetQuery,
  withDuckDBFallback,
} from '../../sql/index.ts';
import type { SqlConfig } from './definition.ts';

export interface SqlStepOptions {
  /** Internal: run an in-subset query on DuckDB micro-batches too (tests compare both paths). */
  forceDuckDB?: boolean;
}

/** Creates the step with internal options; `sqlStep.create` is this without them. */
export async function createSqlStep(
  cfg: SqlConfig,
  ctx: ComponentContext,
  opts: SqlStepOptions = {},
): Promise<StepInstance> {
  const plan = await planQuery(cfg.query, {
    ...(cfg.lookups ? { lookups: cfg.lookups } : {}),
    baseDir: ctx.baseDir,
    bind: false,
    ...(opts.forceDuckDB ? { forceDuckDB: true } : {}),
  });
  const shared = { ...(cfg.lookups ? { lookups: cfg.lookups } : {}), baseDir: ctx.baseDir };
  // The result's types travel with each output batch, so a Parquet sink keeps them.
  const types = new ResultSchema(cfg.query);
  const withSchema = async (result: StepResult, input: readonly SluiceRecord[], schema?: RecordSchema) => {
    if (!result.records.length) return result;
    const out = await types.of(input.length ? input : result.records, schema);
    return out ? { ...result, schema: out } : result;
  };
  const closeAll = async (...others: (() => Promise<void>)[]) => {
    await Promise.all([types.close(), ...others.map((c) => c())]);
  };
  if (plan.path === 'compiled') {
    const select = await compileSelect(cfg.query);
    // a record compiled SQL cannot answer exactly (an integer beyond ±2^53) is evaluated by DuckDB
    const perRecord = withDuckDBFallback(
      (record) => {
        const value = select(record.value);
        return value === null ? null : { value, meta: record.meta };
      },
      cfg.query,
      shared,
    );
    return {
      process: async (records, schema) => withSchema(await perRecord.process(records), records, schema),
      close: () => closeAll(() => perRecord.close()),
    };
  }
  if (plan.path === 'duckdb-batch') {
    const batch = await BatchQuery.open(cfg.query, shared);
    return {
      process: async (records, schema) => withSchema(await batch.process(records), records, schema),
      inFlight: duckBatchesInFlight(ctx.batchSize),
      close: () => closeAll(() => batch.close()),
    };
  }
  const set = await SetQuery.open(cfg.query, { ...shared, batchSize: ctx.batchSize });
  /** The input's first batch and schema: what the result's types are described over. */
  let sample: { records: SluiceRecord[]; schema: RecordSchema | undefined } | undefined;
  return {
    async process(records, schema) {
      if (!sample && records.length) sample = { records: records.slice(0, 1), schema };
      const rejected = await set.add(records);
      return rejected.length ? { records: [], rejected } : { records: [] };
    },
    async *finish() {
      for await (const result of set.results())
        yield withSchema(result, sample?.records ?? [], sample?.schema);
    },
    close: () => closeAll(() => set.close()),
  };
}

export { type SqlConfig, sqlStep } from './definition.ts';
