import type { ComponentContext, StepInstance } from '../../sdk/types.ts';
import {
  BatchQuery,
  compileCondition,
  duckBatchesInFlight,
  planQuery,
  withDuckDBFallback,
} from '../../sql/index.ts';
import type { FilterConfig } from './definition.ts';

export async function createFilterStep(
  cfg: FilterConfig,
  ctx: ComponentContext,
  opts: { forceDuckDB?: boolean } = {},
): Promise<StepInstance> {
  const plan = await planQuery(cfg.condition, {
    mode: 'condition',
    baseDir: ctx.baseDir,
    bind: false,
    ...(opts.forceDuckDB ? { forceDuckDB: true } : {}),
  });
  if (plan.path === 'compiled') {
    const condition = await compileCondition(cfg.condition);
    // a record compiled SQL cannot answer exactly (an integer beyond ±2^53) is evaluated by DuckDB
    const perRecord = withDuckDBFallback(
      (record) => (condition(record.value) ? record : null),
      cfg.condition,
      {
        mode: 'condition',
        baseDir: ctx.baseDir,
      },
    );
    return {
      process: (records) => perRecord.process(records),
      close: () => perRecord.close(),
      keepsRecords: true,
    };
  }
  const batch = await BatchQuery.open(cfg.condition, { mode: 'condition', baseDir: ctx.baseDir });
  return {
    process: (records) => batch.process(records),
    inFlight: duckBatchesInFlight(ctx.batchSize),
    close: () => batch.close(),
    keepsRecords: true,
  };
}

export { sqlIssues } from '../../sql/issues.ts';
export { type FilterConfig, filterStep } from './definition.ts';
