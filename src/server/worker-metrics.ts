/**
 * What a job's worker process reports to the control plane for metrics, once a second over IPC:
 * plain JSON with cumulative counters since the run started, so a lost message skews no total.
 */
import { inputFraction, type RunProgress, type RunSnapshot } from '../engine/run.ts';
import type { OperatorSummary } from '../engine/stats.ts';
import type { LiveProgress } from './protocol.ts';

/** The summary's counters of one operator, with its batch-latency histogram instead of its total time. */
export interface OperatorMetrics extends Omit<OperatorSummary, 'time_ms'> {
  /**
   * Batch processing time: `buckets` counts batches per bucket of LATENCY_BUCKETS_SECONDS (not
   * cumulative), with one more slot for batches slower than the last bound; `sum` in seconds.
   */
  latency: { buckets: number[]; sum: number; count: number };
}

export interface JobMetricsSnapshot {
  /** Source, steps, route, sinks and the errors sink, in pipeline order. */
  operators: OperatorMetrics[];
  /** The queue in front of each step, then the one in front of the sinks. */
  queues: { size: number; capacity: number }[];
  /** Epoch ms of the last committed checkpoint, or null before the first. */
  lastCheckpointAt: number | null;
  /** Epoch ms when the worker took the snapshot. */
  takenAt: number;
}

export function takeSnapshot(run: { snapshot(): RunSnapshot }, now: number = Date.now()): JobMetricsSnapshot {
  const snap = run.snapshot();
  return {
    operators: snap.operators.map((s) => ({
      name: s.name,
      kind: s.kind,
      component: s.component,
      in: s.in,
      out: s.out,
      filtered: s.filtered,
      failed: s.failed,
      // copied: the engine keeps counting into its own array while the message is in flight
      latency: { buckets: [...s.latency.buckets], sum: s.latency.sum, count: s.latency.count },
    })),
    queues: snap.queues.map((q) => ({ size: q.size, capacity: q.capacity })),
    lastCheckpointAt: snap.lastCheckpointAt,
    takenAt: now,
  };
}

/** The counters a job shows while it runs (`GET /v1/jobs/ID`). */
export function liveProgress(p: RunProgress): LiveProgress {
  return {
    read: p.read,
    written: p.written,
    failed: p.failed,
    filtered: p.filtered,
    elapsed_ms: Math.round(p.elapsedMs),
    records_per_second: p.elapsedMs > 0 ? Math.round((p.read / p.elapsedMs) * 1000) : 0,
    input_fraction: inputFraction(p),
  };
}
