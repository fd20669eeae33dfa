import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { PipelineRun } from '../engine/run.ts';
import { LATENCY_BUCKETS_SECONDS } from '../engine/stats.ts';
import { defaultRegistry } from '../registry.ts';
import { loadPipeline } from '../spec/validate.ts';
import { JOB_STATES } from './lifecycle.ts';
import { ServerMetrics } from './metrics.ts';
import { type JobMetricsSnapshot, type OperatorMetrics, takeSnapshot } from './worker-metrics.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format: one sample per line, comments skipped. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return samples;
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

/** The one sample with this name and these labels (among others). */
function one(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = find(samples, name, labels);
  assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]!.value;
}

function op(
  name: string,
  kind: OperatorMetrics['kind'],
  counts: { in: number; out: number; filtered?: number; failed?: number },
  latency: number[] = [],
): OperatorMetrics {
  const buckets = new Array(LATENCY_BUCKETS_SECONDS.length + 1).fill(0);
  let sum = 0;
  for (const seconds of latency) {
    const i = LATENCY_BUCKETS_SECONDS.findIndex((b) => seconds <= b);
    buckets[i < 0 ? LATENCY_BUCKETS_SECONDS.length : i]++;
    sum += seconds;
  }
  return {
    name,
    kind,
    component: kind === 'source' ? 'generate' : kind === 'step' ? 'sql' : 'file',
    in: counts.in,
    out: counts.out,
    filtered: counts.filtered ?? 0,
    failed: counts.failed ?? 0,
    latency: { buckets, sum, count: latency.length },
  };
}

function snapshot(takenAt: number, scale = 1, lastCheckpointAt: number | null = null): JobMetricsSnapshot {
  return {
    operators: [
      op(
        'source',
        'source',
        { in: 1000 * scale, out: 990 * scale, failed: 10 * scale },
        [0.0001, 0.002, 0.002],
      ),
      op('clean', 'step', { in: 990 * scale, out: 900 * scale, filtered: 90 * scale }, [0.0004, 0.03, 12]),
      op('all', 'sink', { in: 900 * scale, out: 900 * scale }, [0.3]),
      op('errors', 'errors', { in: 10 * scale, out: 10 * scale }),
    ],
    queues: [
      { size: 3, capacity: 4 },
      { size: 1, capacity: 4 },
    ],
    lastCheckpointAt,
    takenAt,
  };
}

/** A ServerMetrics on a clock the test moves by hand. */
function fixture(opts: { retentionMs?: number; counts?: Record<string, number> } = {}) {
  const clock = { now: 1_750_000_000_000 };
  let scrapes = 0;
  const metrics = new ServerMetrics({
    jobCounts: async () => {
      scrapes++;
      return opts.counts ?? {};
    },
    now: () => clock.now,
    ...(opts.retentionMs !== undefined ? { retentionMs: opts.retentionMs } : {}),
  });
  return { metrics, clock, scrapes: () => scrapes, scrape: async () => parse(await metrics.render()) };
}

describe('ServerMetrics', () => {
  it('exposes each operator counter of the latest snapshot with its job, pipeline, operator and kind', async () => {
    const { metrics, clock, scrape } = fixture();
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now));
    metrics.setJobSnapshot('job_b', 'orders', snapshot(clock.now, 2));
    let s = await scrape();
    const a = { job_id: 'job_a', pipeline: 'payments' };
    assert.equal(one(s, 'sluice_records_in_total', { ...a, operator: 'source', kind: 'source' }), 1000);
    assert.equal(one(s, 'sluice_records_failed_total', { ...a, operator: 'source', kind: 'source' }), 10);
    assert.equal(one(s, 'sluice_records_out_total', { ...a, operator: 'clean', kind: 'step' }), 900);
    assert.equal(one(s, 'sluice_records_filtered_total', { ...a, operator: 'clean', kind: 'step' }), 90);
    assert.equal(one(s, 'sluice_records_out_total', { ...a, operator: 'all', kind: 'sink' }), 900);
    assert.equal(
      one(s, 'sluice_records_in_total', { job_id: 'job_b', pipeline: 'orders', operator: 'source' }),
      2000,
    );
    // one series per job and operator, with exactly these four labels
    for (const name of ['in', 'out', 'filtered', 'failed'].map((f) => `sluice_records_${f}_total`)) {
      const series = find(s, name);
      assert.equal(series.length, 8, name);
      for (const x of series)
        assert.deepEqual(Object.keys(x.labels).sort(), ['job_id', 'kind', 'operator', 'pipeline']);
    }

    // A later snapshot replaces the values: they are the worker's totals, not increments.
    clock.now += 1000;
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now, 3));
    s = await scrape();
    assert.equal(one(s, 'sluice_records_in_total', { ...a, operator: 'source' }), 3000);
    assert.equal(one(s, 'sluice_records_in_total', { job_id: 'job_b', operator: 'source' }), 2000);
  });

  it('exposes batch latency as a cumulative histogram consistent with its count and sum', async () => {
    const { metrics, clock, scrape } = fixture();
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now));
    const s = await scrape();
    const labels = { job_id: 'job_a', operator: 'clean', kind: 'step', pipeline: 'payments' };
    const buckets = find(s, 'sluice_operator_batch_seconds_bucket', labels);
    assert.deepEqual(
      buckets.map((b) => b.labels.le),
      [...LATENCY_BUCKETS_SECONDS.map(String), '+Inf'],
    );
    for (let i = 1; i < buckets.length; i++)
      assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'cumulative');
    // observations 0.4 ms, 30 ms and 12 s: one at or under 0.5 ms, two at or under 50 ms, the 12 s only in +Inf
    const at = (le: string) => buckets.find((b) => b.labels.le === le)!.value;
    assert.equal(at('0.0005'), 1);
    assert.equal(at('0.025'), 1);
    assert.equal(at('0.05'), 2);
    assert.equal(at('10'), 2);
    assert.equal(at('+Inf'), 3);
    assert.equal(one(s, 'sluice_operator_batch_seconds_count', labels), 3);
    assert.ok(Math.abs(one(s, 'sluice_operator_batch_seconds_sum', labels) - 12.0304) < 1e-9);
    // an operator with no batches yet still has its (empty) histogram
    assert.equal(one(s, 'sluice_operator_batch_seconds_count', { job_id: 'job_a', operator: 'errors' }), 0);
    assert.equal(
      one(s, 'sluice_operator_batch_seconds_bucket', { job_id: 'job_a', operator: 'errors', le: '+Inf' }),
      0,
    );
  });

  it('exposes jobs by state from the store on every scrape, every state present', async () => {
    const counts: Record<string, number> = { running: 2, succeeded: 5 };
    const { metrics, scrapes } = fixture({ counts });
    let s = parse(await metrics.render());
    assert.equal(scrapes(), 1);
    assert.equal(one(s, 'sluice_jobs', { state: 'running' }), 2);
    assert.equal(one(s, 'sluice_jobs', { state: 'succeeded' }), 5);
    assert.equal(one(s, 'sluice_jobs', { state: 'cancelling' }), 0);
    assert.deepEqual(
      find(s, 'sluice_jobs')
        .map((x) => x.labels.state)
        .sort(),
      [...JOB_STATES].sort(),
    );
    counts.running = 0;
    counts.failed = 1;
    s = parse(await metrics.render());
    assert.equal(scrapes(), 2);
    assert.equal(one(s, 'sluice_jobs', { state: 'running' }), 0);
    assert.equal(one(s, 'sluice_jobs', { state: 'failed' }), 1);
  });

  it('counts API requests by route, method and status and times them by route and method', async () => {
    const { metrics, scrape } = fixture();
    metrics.observeRequest('/v1/jobs/:id', 'GET', 200, 3);
    metrics.observeRequest('/v1/jobs/:id', 'GET', 200, 40);
    metrics.observeRequest('/v1/jobs/:id', 'GET', 404, 1);
    metrics.observeRequest('/v1/jobs', 'POST', 201, 700);
    const s = await scrape();
    const get = { route: '/v1/jobs/:id', method: 'GET' };
    assert.equal(one(s, 'sluice_http_requests_total', { ...get, status: '200' }), 2);
    assert.equal(one(s, 'sluice_http_requests_total', { ...get, status: '404' }), 1);
    assert.equal(
      one(s, 'sluice_http_requests_total', { route: '/v1/jobs', method: 'POST', status: '201' }),
      1,
    );
    assert.equal(one(s, 'sluice_http_request_duration_seconds_count', get), 3);
    assert.ok(Math.abs(one(s, 'sluice_http_request_duration_seconds_sum', get) - 0.044) < 1e-9);
    assert.equal(one(s, 'sluice_http_request_duration_seconds_bucket', { ...get, le: '0.001' }), 1);
    assert.equal(one(s, 'sluice_http_request_duration_seconds_bucket', { ...get, le: '0.005' }), 2);
    assert.equal(one(s, 'sluice_http_request_duration_seconds_bucket', { ...get, le: '0.05' }), 3);
    assert.equal(
      one(s, 'sluice_http_request_duration_seconds_bucket', { route: '/v1/jobs', le: '0.5' }),
      0,
      'a 700 ms request is above 0.5 s',
    );
    assert.equal(
      find(s, 'sluice_http_request_duration_seconds_count', { status: '200' }).length,
      0,
      'no status label',
    );
  });

  it('exposes queue depth per queue and the checkpoint age of running jobs', async () => {
    const { metrics, clock, scrape } = fixture();
    const started = clock.now;
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now));
    metrics.setJobSnapshot('job_b', 'orders', snapshot(clock.now, 1, started - 2000));
    clock.now += 5000;
    const s = await scrape();
    // the first queue feeds the step `clean`, the last one the sinks
    assert.equal(one(s, 'sluice_queue_depth', { job_id: 'job_a', pipeline: 'payments', queue: 'clean' }), 3);
    assert.equal(one(s, 'sluice_queue_depth', { job_id: 'job_a', queue: 'sinks' }), 1);
    assert.equal(one(s, 'sluice_queue_capacity', { job_id: 'job_a', queue: 'sinks' }), 4);
    // no checkpoint yet: the age counts from the job's first snapshot
    assert.equal(one(s, 'sluice_checkpoint_age_seconds', { job_id: 'job_a', pipeline: 'payments' }), 5);
    assert.equal(one(s, 'sluice_checkpoint_age_seconds', { job_id: 'job_b', pipeline: 'orders' }), 7);
  });

  it("keeps an ended job's counters for the retention period, then drops every series of it", async () => {
    const { metrics, clock, scrape } = fixture({ retentionMs: 60_000 });
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now));
    metrics.setJobSnapshot('job_b', 'payments', snapshot(clock.now));
    clock.now += 1000;
    metrics.jobEnded('job_a', 'payments', 'succeeded', 90_000);
    // the final snapshot can arrive after the exit: it updates the values, it does not revive the job
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now - 10, 2));

    clock.now += 59_999;
    let s = await scrape();
    assert.equal(one(s, 'sluice_records_in_total', { job_id: 'job_a', operator: 'source' }), 2000);
    assert.equal(one(s, 'sluice_operator_batch_seconds_count', { job_id: 'job_a', operator: 'source' }), 3);
    // gauges describe running jobs only: an ended job's checkpoint age would only grow
    assert.equal(find(s, 'sluice_queue_depth', { job_id: 'job_a' }).length, 0);
    assert.equal(find(s, 'sluice_checkpoint_age_seconds', { job_id: 'job_a' }).length, 0);
    assert.equal(
      one(s, 'sluice_job_duration_seconds_count', { pipeline: 'payments', state: 'succeeded' }),
      1,
    );
    assert.equal(one(s, 'sluice_job_duration_seconds_sum', { pipeline: 'payments', state: 'succeeded' }), 90);
    assert.equal(one(s, 'sluice_job_duration_seconds_bucket', { state: 'succeeded', le: '60' }), 0);
    assert.equal(one(s, 'sluice_job_duration_seconds_bucket', { state: 'succeeded', le: '120' }), 1);

    clock.now += 1;
    s = await scrape();
    assert.equal(
      s.filter((x) => x.labels.job_id === 'job_a').length,
      0,
      'no series of the ended job is left',
    );
    assert.equal(one(s, 'sluice_records_in_total', { job_id: 'job_b', operator: 'source' }), 1000);
    assert.equal(find(s, 'sluice_queue_depth', { job_id: 'job_b' }).length, 2);
    assert.equal(one(s, 'sluice_job_duration_seconds_count', { pipeline: 'payments' }), 1, 'durations stay');

    // a snapshot older than the retention (a message from long ago) does not bring it back
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now - 60_001));
    s = await scrape();
    assert.equal(s.filter((x) => x.labels.job_id === 'job_a').length, 0);
  });

  it('brings back the series of a restarted job: a snapshot taken after it ended', async () => {
    const { metrics, clock, scrape } = fixture({ retentionMs: 60_000 });
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now));
    metrics.jobEnded('job_a', 'payments', 'failed', 1000);
    clock.now += 30_000;
    metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now, 1, null));
    clock.now += 40_000; // past the first end's retention
    const s = await scrape();
    assert.equal(one(s, 'sluice_records_in_total', { job_id: 'job_a', operator: 'source' }), 1000);
    assert.equal(
      one(s, 'sluice_checkpoint_age_seconds', { job_id: 'job_a' }),
      40,
      'counted from the restart',
    );
  });

  it('exposes the process metrics with the sluice_server_ prefix, on its own registry', async () => {
    const first = fixture();
    const second = fixture(); // a second instance must not collide with the first
    first.metrics.observeRequest('/healthz', 'GET', 200, 1);
    const s = await first.scrape();
    assert.ok(find(s, 'sluice_server_process_cpu_user_seconds_total').length === 1);
    assert.ok(find(s, 'sluice_server_nodejs_eventloop_lag_seconds').length === 1);
    assert.equal(s.filter((x) => !x.name.startsWith('sluice_')).length, 0, 'every metric has the prefix');
    assert.equal(
      find(await second.scrape(), 'sluice_http_requests_total').length,
      0,
      'registries are separate',
    );
    assert.match(first.metrics.contentType, /^text\/plain; version=0\.0\.4/);
  });
});

describe('job metrics from a real run', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("match the run summary's operator counters, and time every batch", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sluice-metrics-'));
    dirs.push(dir);
    const text = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: metrics-e2e }
settings: { batch_size: 500 }
source:
  generate: { count: 5000, fields: { id: seq } }
steps:
  - filter: id > 1000
  - name: shape
    sql: SELECT id, id * 2 AS double_id FROM input
sink:
  file: { path: out/, format: jsonl }
`;
    const pipeline = await loadPipeline({
      file: path.join(dir, 'spec.yaml'),
      text,
      registry: defaultRegistry(),
    });
    const run = new PipelineRun({
      pipeline,
      runId: 'run_metrics',
      runDir: path.join(dir, 'run'),
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    });
    const summary = await run.run();
    assert.equal(summary.status, 'succeeded', JSON.stringify(summary.failure));
    const snap = takeSnapshot(run);
    assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap, 'plain JSON, as sent over IPC');

    assert.deepEqual(
      snap.operators.map((o) => ({
        name: o.name,
        kind: o.kind,
        in: o.in,
        out: o.out,
        filtered: o.filtered,
        failed: o.failed,
      })),
      summary.operators.map((o) => ({
        name: o.name,
        kind: o.kind,
        in: o.in,
        out: o.out,
        filtered: o.filtered,
        failed: o.failed,
      })),
    );
    assert.equal(snap.operators[0]!.in, 5000);
    assert.equal(snap.operators.find((o) => o.name === 'filter')!.filtered, 1000);

    const batches = Object.fromEntries(run.snapshot().operators.map((o) => [o.name, o.batches]));
    // 5000 records in batches of 500: ten batches leave the source and enter the filter; the
    // filter drops the first two whole, so eight go on
    assert.equal(batches.source, 10);
    assert.equal(batches.filter, 10);
    assert.equal(batches.shape, 8);
    for (const o of snap.operators) {
      assert.equal(o.latency.count, batches[o.name], `${o.name}: one observation per batch`);
      assert.equal(
        o.latency.buckets.reduce((a, b) => a + b, 0),
        o.latency.count,
      );
      assert.equal(o.latency.buckets.length, LATENCY_BUCKETS_SECONDS.length + 1);
      const timeMs = summary.operators.find((x) => x.name === o.name)!.time_ms;
      assert.ok(Math.abs(o.latency.sum * 1000 - timeMs) <= 0.5 + 1e-6, `${o.name}: sum matches time_ms`);
    }

    const metrics = new ServerMetrics({ jobCounts: async () => ({}) });
    metrics.setJobSnapshot('job_e2e', 'metrics-e2e', snap);
    const s = parse(await metrics.render());
    const job = { job_id: 'job_e2e', pipeline: 'metrics-e2e' };
    assert.equal(one(s, 'sluice_records_in_total', { ...job, kind: 'source' }), summary.records.read);
    assert.equal(one(s, 'sluice_records_out_total', { ...job, kind: 'sink' }), summary.records.written);
    assert.equal(
      one(s, 'sluice_records_filtered_total', { ...job, operator: 'filter' }),
      summary.records.filtered,
    );
    assert.equal(one(s, 'sluice_operator_batch_seconds_count', { ...job, operator: 'shape' }), 8);
    assert.deepEqual(
      find(s, 'sluice_queue_depth', job).map((q) => q.labels.queue),
      ['filter', 'shape', 'sinks'],
    );
  });
});

/**
 * Every metric family a scrape shows (`families`), and every sample name with the labels it
 * carries (`series`: a histogram's _bucket, _sum and _count).
 */
async function exposedMetrics(): Promise<{ families: string[]; series: Map<string, Set<string>> }> {
  const { metrics, clock } = fixture();
  metrics.setJobSnapshot('job_a', 'payments', snapshot(clock.now));
  metrics.jobEnded('job_b', 'payments', 'succeeded', 1000);
  metrics.observeRequest('/v1/jobs', 'GET', 200, 1);
  const text = await metrics.render();
  const names = new Map<string, Set<string>>();
  for (const s of parse(text)) {
    const labels = names.get(s.name) ?? new Set();
    for (const l of Object.keys(s.labels)) labels.add(l);
    names.set(s.name, labels);
  }
  const families: string[] = [];
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    families.push(m[1]!);
    // a metric with no samples yet still counts as exposed
    const suffixes = m[2] === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    for (const suffix of suffixes) if (!names.has(m[1]! + suffix)) names.set(m[1]! + suffix, new Set());
  }
  return { families, series: names };
}

describe('Grafana dashboard', () => {
  it('queries only metrics and labels that ServerMetrics exposes', async () => {
    const dashboard = JSON.parse(
      await readFile(path.join(ROOT, 'docs/grafana/sluice-dashboard.json'), 'utf8'),
    );
    const exposed = (await exposedMetrics()).series;
    assert.ok(dashboard.schemaVersion >= 36);
    const vars = dashboard.templating.list as {
      name: string;
      type: string;
      query: unknown;
      definition?: string;
    }[];
    const datasource = vars.find((v) => v.name === 'datasource');
    assert.equal(datasource?.type, 'datasource');
    assert.equal(datasource?.query, 'prometheus');
    const pipelineVar = vars.find((v) => v.name === 'pipeline');
    assert.equal(pipelineVar?.type, 'query');

    const queries: { where: string; expr: string; legend?: string }[] = [
      { where: 'variable pipeline', expr: pipelineVar!.definition! },
    ];
    let targets = 0;
    for (const panel of dashboard.panels as {
      type: string;
      title: string;
      datasource?: { uid: string };
      targets?: { expr: string; legendFormat?: string; datasource?: { uid: string } }[];
    }[]) {
      if (panel.type === 'row') continue;
      assert.equal(panel.datasource?.uid, '${datasource}', `${panel.title}: uses the datasource variable`);
      assert.ok(panel.targets?.length, `${panel.title}: has queries`);
      for (const t of panel.targets) {
        targets++;
        assert.equal(t.datasource?.uid, '${datasource}');
        queries.push({
          where: panel.title,
          expr: t.expr,
          ...(t.legendFormat ? { legend: t.legendFormat } : {}),
        });
      }
    }
    assert.ok(targets >= 12);

    const used = new Set<string>();
    for (const { where, expr, legend } of queries) {
      const names = new Set<string>();
      for (const m of expr.matchAll(/\bsluice_[a-z0-9_]+/g)) names.add(m[0]);
      // any other selector (`name{...}` or `name[...]`) would also be a metric name
      for (const m of expr.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{[]/g)) names.add(m[1]!);
      assert.ok(names.size, `${where}: ${expr} names no metric`);
      const labels = new Set(['le']);
      for (const name of names) {
        assert.ok(exposed.has(name), `${where}: ${name} is not a metric ServerMetrics exposes`);
        used.add(name.replace(/_(bucket|sum|count)$/, ''));
        for (const l of exposed.get(name)!) labels.add(l);
      }
      for (const sel of expr.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)) {
        for (const m of sel[2]!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g))
          assert.ok(exposed.get(sel[1]!)!.has(m[1]!), `${where}: ${sel[1]} has no label ${m[1]}`);
      }
      for (const by of expr.matchAll(/\bby\s*\(([^)]*)\)/g))
        for (const l of by[1]!.split(',').map((x) => x.trim()))
          assert.ok(labels.has(l), `${where}: grouping by ${l}, which ${[...names].join(', ')} lack`);
      for (const m of (legend ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g))
        assert.ok(labels.has(m[1]!), `${where}: legend uses ${m[1]}, which ${[...names].join(', ')} lack`);
      for (const m of expr.matchAll(/label_values\((\w+),\s*(\w+)\)/g))
        assert.ok(exposed.get(m[1]!)?.has(m[2]!), `${where}: ${m[1]} has no label ${m[2]}`);
    }
    // the panels the dashboard promises
    for (const name of [
      'sluice_jobs',
      'sluice_records_in_total',
      'sluice_records_out_total',
      'sluice_records_failed_total',
      'sluice_operator_batch_seconds',
      'sluice_queue_depth',
      'sluice_checkpoint_age_seconds',
      'sluice_job_duration_seconds',
      'sluice_http_requests_total',
      'sluice_http_request_duration_seconds',
    ])
      assert.ok(used.has(name), `no panel shows ${name}`);
  });
});

describe('docs/observability.md', () => {
  it('documents every metric ServerMetrics exposes (but the process metrics, by prefix)', async () => {
    const doc = await readFile(path.join(ROOT, 'docs/observability.md'), 'utf8');
    const { families } = await exposedMetrics();
    assert.ok(families.includes('sluice_operator_batch_seconds'));
    for (const name of families) {
      if (name.startsWith('sluice_server_')) continue;
      assert.ok(doc.includes(`\`${name}\``), `docs/observability.md does not mention \`${name}\``);
    }
    assert.ok(doc.includes('sluice_server_'));
  });
});
