/**
 * SQL in DuckDB's dialect. Per-record SQL inside the subset is compiled to JavaScript; the rest
 * runs on DuckDB (`planQuery` says which path a query takes and why). DuckDB parses the SQL
 * (`json_serialize_sql`); the compiler checks it is inside the per-record subset and generates
 * a function per combination of value types it meets. See docs/sql.md for the subset.
 */

export { BatchQuery, type BatchQueryOptions, duckBatchesInFlight } from './batch.ts';
export {
  type CompiledCondition,
  type CompiledExpression,
  type CompiledSelect,
  compileCondition,
  compileExpression,
  compileSelect,
} from './compile.ts';
export { confineProcessDuckDB, createDuckDBInstance, getDuckDB, newDuckDBConnection } from './duckdb.ts';
export { ComputeOnDuckDB, isComputeOnDuckDB } from './fallback.ts';
export { describeSubset } from './functions.ts';
export { checkLookups, type LookupConfig, type Lookups, lookupSchema, lookupsSchema } from './lookups.ts';
export { type PerRecordSql, withDuckDBFallback } from './per-record.ts';
export { type PlanOptions, planQuery, type QueryPath, type QueryPlan } from './plan.ts';
export { ResultSchema } from './schema.ts';
export { SetQuery, type SetQueryOptions } from './set.ts';
