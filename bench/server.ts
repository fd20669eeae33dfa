/**
 * The control plane under load, side by side with itself idle, in one run: the same API calls
 * (list jobs, get a job, health) timed on an idle `sluice server`, then while it works through
 * JOBS small jobs with MAX running at once. Prints p50/p99 of each and their ratio, the job
 * throughput, and the most jobs seen running at once.
 *
 *   node bench/server.ts [--jobs 1000] [--max-jobs 20] [--database postgres://...]
 *   npm run bench -- --only server
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Api, apiClient, spawnServer } from '../src/server/test-util.ts';

interface Options {
  jobs: number;
  maxJobs: number;
  database?: string;
}

const SPEC = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: bench-small }
source:
  generate: { count: 1000, fields: { id: seq, v: "int(1, 100)" } }
steps:
  - sql: SELECT id, v * 2 AS v2 FROM input WHERE v > 10
sink:
  file: { path: "out/\${param:n}/", format: jsonl }
`;

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** One round of the call mix; returns each call's latency in ms. */
async function probe(api: Api, jobId: string): Promise<number[]> {
  const calls = [
    () => api.call('GET', '/v1/jobs?limit=20'),
    () => api.call('GET', `/v1/jobs/${jobId}`),
    () => api.call('GET', '/readyz'),
  ];
  const times: number[] = [];
  for (const call of calls) {
    const t = performance.now();
    const res = await call();
    times.push(performance.now() - t);
    if (res.status !== 200) throw new Error(`probe call answered ${res.status}: ${JSON.stringify(res.body)}`);
  }
  return times;
}

export async function benchServer(options: Options): Promise<string[][]> {
  const work = await mkdtemp(path.join(tmpdir(), 'sluice-bench-server-'));
  const args = [
    '--state-dir',
    path.join(work, 'state'),
    '--max-jobs',
    String(options.maxJobs),
    '--log-level',
    'warn',
  ];
  if (options.database) args.push('--database', options.database);
  const server = await spawnServer(args, work);
  if (!server.token) throw new Error('the bench needs a fresh store (no admin token was printed)');
  const api = apiClient(server.url, server.token);
  try {
    const saved = await api.call<{ pipeline: { id: string } }>('POST', '/v1/pipelines', {
      spec: SPEC,
      base_dir: work,
    });
    if (saved.status !== 201) throw new Error(`could not store the pipeline: ${JSON.stringify(saved.body)}`);
    const first = await api.call<{ job: { id: string } }>('POST', '/v1/jobs', {
      pipeline: 'bench-small',
      params: { n: '0' },
    });
    const probeId = first.body.job.id;
    // wait for it, so the idle phase is idle
    for (;;) {
      const j = await api.call<{ job: { state: string } }>('GET', `/v1/jobs/${probeId}`);
      if (['succeeded', 'failed'].includes(j.body.job.state)) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    const idle: number[] = [];
    for (let i = 0; i < 400; i++) idle.push(...(await probe(api, probeId)));

    const submitTimes: number[] = [];
    const started = performance.now();
    const ids: string[] = [];
    for (let n = 1; n <= options.jobs; n++) {
      const t = performance.now();
      const res = await api.call<{ job: { id: string } }>('POST', '/v1/jobs', {
        pipeline: 'bench-small',
        params: { n: String(n) },
      });
      submitTimes.push(performance.now() - t);
      if (res.status !== 201)
        throw new Error(`submit ${n} answered ${res.status}: ${JSON.stringify(res.body)}`);
      ids.push(res.body.job.id);
    }
    const loaded: number[] = [];
    let maxRunning = 0;
    let done = 0;
    let failed = 0;
    let lastReport = performance.now();
    while (done < options.jobs) {
      loaded.push(...(await probe(api, probeId)));
      const running = await api.call<{ jobs: unknown[] }>(
        'GET',
        `/v1/jobs?state=running,cancelling&limit=1000`,
      );
      maxRunning = Math.max(maxRunning, running.body.jobs.length);
      // Jobs by state from the server's own gauge: a list page holds at most 1,000 jobs.
      const metrics = String((await api.call<string>('GET', '/metrics')).body);
      const count = (state: string) =>
        Number(new RegExp(`^sluice_jobs\\{state="${state}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
      failed = count('failed');
      done = count('succeeded') + failed - 1; // minus the probe job
      if (performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        const s = (performance.now() - started) / 1000;
        process.stderr.write(
          `server: ${done}/${options.jobs} jobs done, ${(done / s).toFixed(1)} jobs/s, ${running.body.jobs.length} running, elapsed ${s.toFixed(0)}s\n`,
        );
      }
    }
    const seconds = (performance.now() - started) / 1000;
    idle.sort((a, b) => a - b);
    loaded.sort((a, b) => a - b);
    submitTimes.sort((a, b) => a - b);
    const ms = (x: number) => `${x.toFixed(1)} ms`;
    return [
      ['measure', 'idle server', `${options.jobs} jobs, ${options.maxJobs} at once`, 'loaded / idle'],
      [
        'API p50 (list, get, readyz)',
        ms(quantile(idle, 0.5)),
        ms(quantile(loaded, 0.5)),
        `${(quantile(loaded, 0.5) / quantile(idle, 0.5)).toFixed(2)}x`,
      ],
      [
        'API p99',
        ms(quantile(idle, 0.99)),
        ms(quantile(loaded, 0.99)),
        `${(quantile(loaded, 0.99) / quantile(idle, 0.99)).toFixed(2)}x`,
      ],
      ['calls timed', String(idle.length), String(loaded.length), ''],
      ['submit p50 / p99', '', `${ms(quantile(submitTimes, 0.5))} / ${ms(quantile(submitTimes, 0.99))}`, ''],
      ['jobs/s (all done)', '', (options.jobs / seconds).toFixed(1), `${failed} failed`],
      ['most running at once', '', String(maxRunning), `limit ${options.maxJobs}`],
    ];
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((r) => server.child.once('exit', r));
    await rm(work, { recursive: true, force: true });
  }
}

export function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
  for (const r of table) process.stdout.write(`| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |\n`);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '1000' },
      'max-jobs': { type: 'string', default: '20' },
      database: { type: 'string' },
    },
  });
  const table = await benchServer({
    jobs: Number(values.jobs),
    maxJobs: Number(values['max-jobs']),
    ...(values.database ? { database: values.database } : {}),
  });
  printTable(table);
}
