export type OperatorKind = 'source' | 'step' | 'route' | 'sink' | 'errors';

/**
 * Upper bounds (inclusive, in seconds) of the batch latency histogram: from half a millisecond (a
 * compiled SQL step on a small batch) to ten seconds (a slow sink flush). Fixed so that every job
 * reports the same buckets and Prometheus can aggregate them across jobs.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

/** A fixed-bucket histogram of batch processing time, cheap enough to update on every batch. */
export class LatencyHistogram {
  /**
   * Observations per bucket, not cumulative: `buckets[i]` counts values in
   * (LATENCY_BUCKETS_SECONDS[i-1], LATENCY_BUCKETS_SECONDS[i]]; the last slot counts the rest (+Inf).
   */
  readonly buckets: number[] = new Array(LATENCY_BUCKETS_SECONDS.length + 1).fill(0);
  /** Seconds. */
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS_SECONDS.length && seconds > LATENCY_BUCKETS_SECONDS[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** Counters the engine keeps for every operator; plugin authors never write metrics. */
export class OperatorStats {
  readonly name: string;
  readonly kind: OperatorKind;
  readonly component: string;
  in = 0;
  out = 0;
  filtered = 0;
  failed = 0;
  /** Milliseconds spent inside the operator's own code. */
  timeMs = 0;
  batches = 0;
  /** Time per batch, for metrics; not part of the run summary. */
  readonly latency = new LatencyHistogram();
  /** The component's own metrics (StepInstance.metrics), reported in the summary when set. */
  metrics: (() => Record<string, unknown>) | undefined;

  constructor(name: string, kind: OperatorKind, component: string) {
    this.name = name;
    this.kind = kind;
    this.component = component;
  }

  /**
   * Records counts for one batch: what is neither out nor failed was filtered, unless the operator
   * holds records back (`pairs` false), when its output does not answer to this batch's input.
   */
  count(inCount: number, outCount: number, failedCount: number, elapsedMs: number, pairs = true): void {
    this.in += inCount;
    this.out += outCount;
    this.failed += failedCount;
    if (pairs) this.filtered += Math.max(0, inCount - outCount - failedCount);
    this.timeMs += elapsedMs;
    this.batches++;
    this.latency.observe(elapsedMs / 1000);
  }

  #metricsEntry(): { metrics?: Record<string, unknown> } {
    try {
      return this.metrics ? { metrics: this.metrics() } : {};
    } catch {
      return {}; // a component's counters must never cost the summary
    }
  }

  toJSON(): OperatorSummary {
    return {
      name: this.name,
      kind: this.kind,
      component: this.component,
      in: this.in,
      out: this.out,
      filtered: this.filtered,
      failed: this.failed,
      time_ms: Math.round(this.timeMs),
      ...this.#metricsEntry(),
    };
  }
}

export interface OperatorSummary {
  name: string;
  kind: OperatorKind;
  component: string;
  in: number;
  out: number;
  filtered: number;
  failed: number;
  time_ms: number;
  /** A step's own metrics, when it reports any (the http step: requests, latency, cache, ...). */
  metrics?: Record<string, unknown>;
}
