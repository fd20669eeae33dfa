/**
 * The control plane's Prometheus metrics (GET /metrics). Job metrics are not counted here: each
 * job's worker sends cumulative snapshots of its engine counters, and scrapes read the latest
 * snapshot, so the exposed values are exactly the worker's and a lost message skews nothing.
 * docs/observability.md lists every metric; docs/grafana/sluice-dashboard.json charts them.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import { LATENCY_BUCKETS_SECONDS } from '../engine/stats.ts';
import { JOB_STATES } from './lifecycle.ts';
import type { JobMetricsSnapshot, OperatorMetrics } from './worker-metrics.ts';

/** How long the series of an ended job stay, so that a scrape sees its final counts. */
export const DEFAULT_JOB_RETENTION_MS = 10 * 60_000;

const JOB_DURATION_BUCKETS_SECONDS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21_600, 86_400];
const HTTP_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const OPERATOR_LABELS = ['job_id', 'pipeline', 'operator', 'kind'] as const;
type OperatorLabel = (typeof OPERATOR_LABELS)[number];
type OperatorLabels = Record<OperatorLabel, string>;

export interface ServerMetricsOptions {
  /** Jobs per state, read from the store on every scrape. */
  jobCounts: () => Promise<Record<string, number>>;
  /** How long an ended job's series stay after jobEnded (default 10 minutes). */
  retentionMs?: number;
  /** Clock in epoch ms (tests pass their own). */
  now?: () => number;
}

interface JobEntry {
  pipeline: string;
  snap: JobMetricsSnapshot;
  /** When this attempt's first snapshot arrived: the checkpoint age counts from it until the first checkpoint. */
  startedAt: number;
  endedAt: number | null;
}

export class ServerMetrics {
  readonly #registry = new Registry();
  readonly contentType: string = this.#registry.contentType;
  readonly #jobs = new Map<string, JobEntry>();
  readonly #retentionMs: number;
  readonly #now: () => number;
  readonly #jobDuration: Histogram<'pipeline' | 'state'>;
  readonly #httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly #httpDuration: Histogram<'route' | 'method'>;

  constructor(opts: ServerMetricsOptions) {
    this.#retentionMs = opts.retentionMs ?? DEFAULT_JOB_RETENTION_MS;
    this.#now = opts.now ?? Date.now;
    const registers = [this.#registry];
    const jobs = this.#jobs;
    const now = this.#now;

    new Gauge({
      name: 'sluice_jobs',
      help: 'Jobs in the store, by state.',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await opts.jobCounts();
        this.reset();
        // Every state is always present, so a state that empties reads 0 instead of vanishing.
        for (const state of new Set([...JOB_STATES, ...Object.keys(counts)]))
          this.set({ state }, counts[state] ?? 0);
      },
    });

    const operatorSeries = function* (): Generator<[OperatorLabels, OperatorMetrics]> {
      for (const [jobId, job] of jobs)
        for (const op of job.snap.operators)
          yield [{ job_id: jobId, pipeline: job.pipeline, operator: op.name, kind: op.kind }, op];
    };
    const recordCounter = (field: 'in' | 'out' | 'filtered' | 'failed', help: string) =>
      new Counter({
        name: `sluice_records_${field}_total`,
        help,
        labelNames: OPERATOR_LABELS,
        registers,
        collect() {
          this.reset();
          for (const [labels, op] of operatorSeries()) this.inc(labels, op[field]);
        },
      });
    recordCounter('in', 'Records that entered an operator (for the source: records read).');
    recordCounter('out', 'Records an operator passed on (for a sink: records written).');
    recordCounter('filtered', 'Records an operator dropped on purpose (a filter or a WHERE).');
    recordCounter('failed', 'Records that failed in an operator and went to the errors sink.');

    this.#registry.registerMetric(
      new SnapshotHistogram(
        'sluice_operator_batch_seconds',
        'Time an operator spent on one batch, in seconds.',
        LATENCY_BUCKETS_SECONDS,
        function* () {
          for (const [labels, op] of operatorSeries()) yield [labels, op.latency];
        },
      ) as unknown as Metric,
    );

    const liveJobs = function* () {
      for (const [jobId, job] of jobs) if (job.endedAt === null) yield [jobId, job] as const;
    };
    const queueGauge = (name: string, help: string, field: 'size' | 'capacity') =>
      new Gauge({
        name,
        help,
        labelNames: ['job_id', 'pipeline', 'queue'],
        registers,
        collect() {
          this.reset();
          for (const [jobId, job] of liveJobs()) {
            job.snap.queues.forEach((q, i) => {
              this.set({ job_id: jobId, pipeline: job.pipeline, queue: queueName(job.snap, i) }, q[field]);
            });
          }
        },
      });
    queueGauge(
      'sluice_queue_depth',
      'Batches waiting in the queue in front of a step or of the sinks.',
      'size',
    );
    queueGauge('sluice_queue_capacity', 'Batches the queue holds before its producer waits.', 'capacity');

    new Gauge({
      name: 'sluice_checkpoint_age_seconds',
      help: 'Seconds since a running job last committed a checkpoint (since it started, before the first).',
      labelNames: ['job_id', 'pipeline'],
      registers,
      collect() {
        this.reset();
        const at = now();
        for (const [jobId, job] of liveJobs()) {
          const since = job.snap.lastCheckpointAt ?? job.startedAt;
          this.set({ job_id: jobId, pipeline: job.pipeline }, Math.max(0, at - since) / 1000);
        }
      },
    });

    this.#jobDuration = new Histogram({
      name: 'sluice_job_duration_seconds',
      help: 'Wall time of jobs that reached a final state, from start to end, in seconds.',
      labelNames: ['pipeline', 'state'],
      buckets: JOB_DURATION_BUCKETS_SECONDS,
      registers,
    });
    this.#httpRequests = new Counter({
      name: 'sluice_http_requests_total',
      help: 'Requests to the control plane API, by route template, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: 'sluice_http_request_duration_seconds',
      help: 'Time the control plane API took to answer, by route template and method, in seconds.',
      labelNames: ['route', 'method'],
      buckets: HTTP_BUCKETS_SECONDS,
      registers,
    });

    collectDefaultMetrics({ register: this.#registry, prefix: 'sluice_server_' });
    // prom-client names three gauges `…_total`, which Prometheus reserves for counters (promtool
    // refuses them). Each is the sum of its per-type gauge beside it, so nothing is lost.
    for (const kind of ['handles', 'requests', 'resources'])
      this.#registry.removeSingleMetric(`sluice_server_nodejs_active_${kind}_total`);
  }

  /** `route` is the route template (`/v1/jobs/:id`), never the raw URL, so cardinality stays bounded. */
  observeRequest(route: string, method: string, status: number, ms: number): void {
    this.#httpRequests.inc({ route, method, status: String(status) });
    this.#httpDuration.observe({ route, method }, ms / 1000);
  }

  /**
   * The latest snapshot of a job's worker. A snapshot taken after the job ended is a new attempt
   * (a restart): its series live again. One taken before (the final one may arrive after the exit)
   * updates the values without extending the retention.
   */
  setJobSnapshot(jobId: string, pipeline: string, snap: JobMetricsSnapshot): void {
    const now = this.#now();
    this.#prune(now);
    // Older than the retention: the job's series may already be gone, and must not come back.
    if (snap.takenAt < now - this.#retentionMs) return;
    const entry = this.#jobs.get(jobId);
    if (!entry || (entry.endedAt !== null && snap.takenAt > entry.endedAt)) {
      this.#jobs.set(jobId, { pipeline, snap, startedAt: now, endedAt: null });
    } else {
      entry.pipeline = pipeline;
      entry.snap = snap;
    }
  }

  /** Records the job's duration; its series stay for the retention period, then are dropped. */
  jobEnded(jobId: string, pipeline: string, state: string, durationMs: number): void {
    const now = this.#now();
    this.#jobDuration.observe({ pipeline, state }, Math.max(0, durationMs) / 1000);
    const entry = this.#jobs.get(jobId);
    if (entry && entry.endedAt === null) entry.endedAt = now;
    this.#prune(now);
  }

  /** The Prometheus text exposition; serve it with `contentType`. */
  async render(): Promise<string> {
    this.#prune(this.#now());
    return this.#registry.metrics();
  }

  #prune(now: number): void {
    for (const [jobId, job] of this.#jobs) {
      if (job.endedAt !== null && now - job.endedAt >= this.#retentionMs) this.#jobs.delete(jobId);
    }
  }
}

/**
 * The `queue` label of a snapshot's i-th queue: the step it feeds, or `sinks` for the last one
 * (the engine puts one queue in front of each step and one in front of the sinks).
 */
export function queueName(snap: JobMetricsSnapshot, i: number): string {
  const steps = snap.operators.filter((o) => o.kind === 'step');
  return steps[i]?.name ?? 'sinks';
}

type HistogramData = { buckets: number[]; sum: number; count: number };

/**
 * A histogram whose buckets are set, not observed: prom-client's Histogram can only count its own
 * observations, and the worker already counted. Registered as a metric: the registry only calls
 * `get()` (and `reset()`), and formats the values as it does a Histogram's.
 */
class SnapshotHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #bounds: readonly number[];
  readonly #read: () => Iterable<[Record<string, string>, HistogramData]>;

  constructor(
    name: string,
    help: string,
    bounds: readonly number[],
    read: () => Iterable<[Record<string, string>, HistogramData]>,
  ) {
    this.name = name;
    this.help = help;
    this.#bounds = bounds;
    this.#read = read;
  }

  async get() {
    type Value = {
      metricName: string;
      labels: Record<string, string | number>;
      sharedLabels: Record<string, string>;
      value: number;
    };
    const values: Value[] = [];
    const bucket = `${this.name}_bucket`;
    // Shaped like prom-client's own histogram values, so the exposition reads the same.
    for (const [labels, h] of this.#read()) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += h.buckets[i] ?? 0;
        values.push({ metricName: bucket, labels: { le }, sharedLabels: labels, value: cumulative });
      });
      values.push({ metricName: bucket, labels: { le: '+Inf' }, sharedLabels: labels, value: h.count });
      values.push({ metricName: `${this.name}_sum`, labels: {}, sharedLabels: labels, value: h.sum });
      values.push({ metricName: `${this.name}_count`, labels: {}, sharedLabels: labels, value: h.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Nothing to reset: the values are the snapshots'. */
  reset(): void {}
}
