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
  /** Records emitted beyond those consumed (a join or UNNEST that fans out): see countProblems. */
  added = 0;
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
   * Records counts for one batch. What is neither out nor failed was filtered, and what is out
   * beyond the input was added, unless the operator holds records back (`pairs` false): then its
   * output does not answer to this batch's input, and `settle` reconciles the totals at its end.
   */
  count(inCount: number, outCount: number, failedCount: number, elapsedMs: number, pairs = true): void {
    this.in += inCount;
    this.out += outCount;
    this.failed += failedCount;
    if (pairs) {
      const left = inCount - outCount - failedCount;
      if (left > 0) this.filtered += left;
      else this.added -= left;
    }
    this.timeMs += elapsedMs;
    this.batches++;
    this.latency.observe(elapsedMs / 1000);
  }

  /**
   * For an operator that held records back (set-level SQL), once it has emitted everything: what
   * it consumed without output was filtered (a WHERE, or rows folded into a group), and what it
   * emitted beyond its input was added (a join that fans out).
   */
  settle(): void {
    const left = this.in - this.out - this.failed;
    this.filtered = Math.max(0, left);
    this.added = Math.max(0, -left);
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
      ...(this.added ? { added: this.added } : {}),
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
  /**
   * Records emitted beyond those consumed, when there are any (a set-level join, UNNEST): for every
   * operator, in + added = out + filtered + failed.
   */
  added?: number;
  time_ms: number;
  /** A step's own metrics, when it reports any (the http step: requests, latency, cache, ...). */
  metrics?: Record<string, unknown>;
}

/**
 * Why a run's counts do not add up; empty when they do. For every operator, in + added = out +
 * filtered + failed. Once a run has ended without failing (the queues drained), every record an
 * operator emitted reached the next one, and the run's totals are the operators' sums: read is the
 * source's in, written the sinks' out, filtered the steps' filtered and failed every failure but
 * the errors sink's own. A run that failed or was stopped at once may end with records between
 * operators or held by a set-level step, so only its sources, routes and sinks are held to the
 * first rule.
 */
export function countProblems(summary: {
  failure?: { code: string } | null;
  operators: readonly OperatorSummary[];
  records: { read: number; written: number; filtered: number; failed: number };
}): string[] {
  const problems: string[] = [];
  const ended = !summary.failure;
  const { operators, records } = summary;
  for (const o of operators) {
    const added = o.added ?? 0;
    for (const [field, n] of Object.entries({
      in: o.in,
      out: o.out,
      filtered: o.filtered,
      failed: o.failed,
      added,
    }))
      if (!Number.isSafeInteger(n) || n < 0) problems.push(`${o.name}: ${field} is ${n}`);
    if (!ended && o.kind === 'step') continue;
    if (o.in + added !== o.out + o.filtered + o.failed)
      problems.push(
        `${o.name}: in ${o.in} + added ${added} != out ${o.out} + filtered ${o.filtered} + failed ${o.failed}`,
      );
  }
  if (!ended) return problems;
  const of = (kind: OperatorKind) => operators.filter((o) => o.kind === kind);
  const sum = (list: OperatorSummary[], field: 'in' | 'out' | 'filtered' | 'failed') =>
    list.reduce((n, o) => n + o[field], 0);
  // The chain: source, steps in order, then the route (if any), which hands each sink a part.
  const chain = [...of('source'), ...of('step'), ...of('route')];
  for (let i = 1; i < chain.length; i++)
    if (chain[i]!.in !== chain[i - 1]!.out)
      problems.push(
        `${chain[i]!.name}: in ${chain[i]!.in} != out ${chain[i - 1]!.out} of ${chain[i - 1]!.name}`,
      );
  const last = chain.at(-1);
  for (const sink of of('sink')) {
    if (!last) break;
    const routed = last.kind === 'route';
    if (routed ? sink.in > last.out : sink.in !== last.out)
      problems.push(`${sink.name}: in ${sink.in} ${routed ? '>' : '!='} out ${last.out} of ${last.name}`);
  }
  const totals = {
    read: sum(of('source'), 'in'),
    written: sum(of('sink'), 'out'),
    filtered: sum(of('step'), 'filtered'),
    failed: sum(
      operators.filter((o) => o.kind !== 'errors'),
      'failed',
    ),
  };
  for (const [field, n] of Object.entries(totals))
    if (records[field as keyof typeof totals] !== n)
      problems.push(`records.${field} is ${records[field as keyof typeof totals]}, the operators say ${n}`);
  return problems;
}
