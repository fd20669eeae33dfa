/**
 * The run summary (run.json, `sluice run`'s table, a server job's summary) and its one builder,
 * used by every engine: the streaming run and the DuckDB pushdown report their facts, and the
 * totals, rates and resource figures are derived here the same way for both.
 */
import type { OperatorSummary } from './stats.ts';

export type RunStatus = 'succeeded' | 'failed' | 'interrupted';

/** The engines a run may use (docs/pushdown.md). */
export type EngineName = 'streaming' | 'duckdb-pushdown';

export interface RunSummary {
  run_id: string;
  pipeline: string;
  spec: string;
  status: RunStatus;
  started_at: string;
  ended_at: string;
  elapsed_ms: number;
  /** `skipped`: records dropped because an earlier attempt had committed them (not counted as read). */
  records: { read: number; written: number; filtered: number; failed: number; skipped: number };
  records_per_second: number;
  /** How much of a bounded input was consumed (0..1), when the source can tell. */
  input_fraction: number | null;
  operators: OperatorSummary[];
  outputs: Record<string, string[]>;
  errors: { count: number; by_code: Record<string, number>; outputs: string[] };
  checkpoints: { count: number; last_at: string | null };
  /** Last committed offset per source partition: where a resumed run would start. */
  positions: Record<string, number>;
  /** The checkpoint positions this run resumed from, or null when it started from the beginning. */
  resumed_from: Record<string, number> | null;
  /** Why the run failed; `retriable`: a restart from the last checkpoint may succeed (a dropped connection, a broker away). */
  failure: { code: string; message: string; retriable: boolean } | null;
  /** Peak resident memory of the process that ran the pipeline. */
  peak_rss_mib: number;
  /** CPU time (user and system) of the process that ran the pipeline, all threads. */
  cpu_ms: number;
  /** Which engine ran it: the streaming engine, or one DuckDB COPY (docs/pushdown.md). */
  engine: EngineName;
  /**
   * Why this engine: for a pushed-down run what the pushdown does, for a streaming one why the
   * pipeline was not pushed down (or why DuckDB gave up on it). Empty when nobody chose (a run
   * made directly on an engine).
   */
  engine_reasons: string[];
  /**
   * Where a restart of this run begins: `checkpoint`, its last one; `scratch`, the whole input
   * again (a pushed-down run keeps no checkpoints; a step that holds records until the input ends
   * or a sink durable only at close makes a checkpoint useless).
   */
  restart_from: 'checkpoint' | 'scratch';
}

/** What an engine knows at the end of a run; everything else in the summary is derived. */
export interface SummaryFacts {
  runId: string;
  pipeline: { name: string; file: string };
  engine: EngineName;
  engineReasons?: readonly string[] | undefined;
  restartFrom: RunSummary['restart_from'];
  status: RunStatus;
  failure?: { code: string; message: string; retriable: boolean } | null | undefined;
  startedAt: Date;
  /** From performance.now(), more exact than the difference of the two dates. */
  elapsedMs: number;
  /** Source, steps, route, sinks and the errors sink, in pipeline order. */
  operators: OperatorSummary[];
  skipped: number;
  inputFraction: number | null;
  outputs: Record<string, string[]>;
  errors: RunSummary['errors'];
  checkpoints: RunSummary['checkpoints'];
  positions: Record<string, number>;
  resumedFrom: Record<string, number> | null;
}

export function buildRunSummary(f: SummaryFacts): RunSummary {
  const sum = (kind: OperatorSummary['kind'], field: 'in' | 'out' | 'filtered') =>
    f.operators.filter((o) => o.kind === kind).reduce((n, o) => n + o[field], 0);
  const read = sum('source', 'in');
  return {
    run_id: f.runId,
    pipeline: f.pipeline.name,
    spec: f.pipeline.file,
    status: f.status,
    started_at: f.startedAt.toISOString(),
    ended_at: new Date().toISOString(),
    elapsed_ms: Math.round(f.elapsedMs),
    records: {
      read,
      written: sum('sink', 'out'),
      filtered: sum('step', 'filtered'),
      failed: f.errors.count,
      skipped: f.skipped,
    },
    records_per_second: f.elapsedMs > 0 ? Math.round((read / f.elapsedMs) * 1000) : 0,
    input_fraction: f.inputFraction,
    operators: f.operators,
    outputs: f.outputs,
    errors: f.errors,
    checkpoints: f.checkpoints,
    positions: f.positions,
    resumed_from: f.resumedFrom,
    failure: f.failure
      ? { code: f.failure.code, message: f.failure.message, retriable: f.failure.retriable }
      : null,
    peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
    cpu_ms: cpuMs(),
    engine: f.engine,
    engine_reasons: [...(f.engineReasons ?? [])],
    restart_from: f.restartFrom,
  };
}

/** CPU time (user and system) this process has used so far, all threads, in milliseconds. */
export function cpuMs(): number {
  const usage = process.resourceUsage();
  return Math.round((usage.userCPUTime + usage.systemCPUTime) / 1000);
}
