/** Messages between `sluice server` and a job's process (IPC, JSON). */
import type { RunSummary } from '../engine/run.ts';
import type { Check } from '../spec/schema.ts';
import type { Workspace } from '../spec/workspace.ts';
import type { PipelineVersion } from './store/jobs.ts';
import type { JobMetricsSnapshot } from './worker-metrics.ts';

export interface StartMessage {
  type: 'start';
  jobId: string;
  /** 1 for the first process of the job, then one more per restart. */
  attempt: number;
  pipelineName: string;
  version: PipelineVersion;
  params: Record<string, string>;
  /** Directory under which this attempt's run directory is made. */
  runsDir: string;
  checkpointDir: string;
  /** `sluice server --checkpoint-store`: where checkpoints live instead of checkpointDir (key `job-<id>`). */
  checkpointStore?: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** What the job may reach: its paths are checked again, and its DuckDB confined, before a record moves. */
  workspace: Workspace;
  /** The job's own temporary folder (its TMPDIR), which its DuckDB may use too. */
  tmpDir: string;
}

export interface LiveProgress {
  read: number;
  written: number;
  failed: number;
  filtered: number;
  elapsed_ms: number;
  records_per_second: number;
  /** 0..1 when the source knows its size. */
  input_fraction: number | null;
}

export type WorkerMessage =
  | {
      type: 'started';
      runId: string;
      resumedFrom: Record<string, number> | null;
      checks: Check[];
      /** The engine the runner picked, and where a restart of this attempt begins. */
      engine: RunSummary['engine'];
      restartFrom: RunSummary['restart_from'];
    }
  | { type: 'progress'; progress: LiveProgress; metrics: JobMetricsSnapshot }
  | { type: 'checkpoint'; positions: Record<string, number>; at: number }
  | { type: 'summary'; summary: RunSummary }
  | { type: 'invalid'; message: string };

/** Exit codes of a job process: anything else (or a signal) means it died. */
export const WORKER_EXIT = { succeeded: 0, failed: 1, invalid: 2, interrupted: 130 } as const;

/** Sends a message from a job's process to the server; resolves once sent (at once when the server is gone). */
export function sendToServer(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(message, undefined, {}, () => resolve());
  });
}
