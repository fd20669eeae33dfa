import { SluiceError } from '../../sdk/errors.ts';
import { JOB_STATES } from '../../server/lifecycle.ts';
import { type ApiJob, CLIENT_OPTIONS, clientFrom } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { formatDuration, renderTable } from '../format.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const jobsCommand = defineCommand({
  name: 'jobs',
  usage: 'sluice jobs [--state STATE[,STATE]] [--pipeline NAME] [--limit N] [--json]',
  summary: 'List the jobs of a Sluice server, newest first.',
  positionals: [],
  options: {
    state: {
      type: 'string',
      value: 'STATE[,STATE]',
      description: `Only jobs in these states: ${JOB_STATES.join(', ')}.`,
    },
    pipeline: { type: 'string', value: 'NAME', description: 'Only jobs of this pipeline (name or id).' },
    limit: { type: 'string', value: 'N', default: '50', description: 'At most this many jobs (1 to 1000).' },
    before: {
      type: 'string',
      value: 'JOB_ID',
      description: 'Only jobs older than this one: the next page, as the previous page printed.',
    },
    ...CLIENT_OPTIONS,
  },
});

export async function jobs(argv: string[]): Promise<number> {
  const { options } = parseCommand(jobsCommand, argv);
  const states = options.state
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of states ?? []) {
    if (!(JOB_STATES as readonly string[]).includes(s)) {
      throw new SluiceError('SLUICE_USAGE', `--state takes ${JOB_STATES.join(', ')}; got "${s}"`);
    }
  }
  const limit = Number(options.limit ?? '50');
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `--limit takes a whole number from 1 to 1000, got "${options.limit}"`,
    );
  }
  const client = clientFrom(options);
  const res = await client.request<{ jobs: ApiJob[]; next: string | null }>('GET', '/v1/jobs', {
    query: {
      state: states?.length ? states.join(',') : undefined,
      pipeline: options.pipeline,
      limit,
      before: options.before,
    },
  });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    return EXIT.ok;
  }
  process.stdout.write(res.jobs.length ? `${jobsTable(res.jobs)}\n` : 'no jobs\n');
  if (res.next) process.stderr.write(`more: sluice jobs --before ${res.next}\n`);
  return EXIT.ok;
}

/** Records read, written and failed: the final summary when there is one, else live progress. */
export function jobCounts(job: ApiJob): { read: number; written: number; failed: number } | undefined {
  const r = job.summary?.totals ?? job.summary?.records ?? job.progress;
  if (!r || r.read === undefined) return undefined;
  return { read: r.read ?? 0, written: r.written ?? 0, failed: r.failed ?? 0 };
}

/** How long the job has run: until it ended, or until now while it runs. */
export function jobDurationMs(job: ApiJob, now = Date.now()): number | undefined {
  if (!job.started_at) return undefined;
  const end = job.ended_at ? Date.parse(job.ended_at) : now;
  return Math.max(0, end - Date.parse(job.started_at));
}

/** An ISO time to the second, in UTC: short enough for a table, unambiguous across machines. */
export function shortTime(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** The jobs as a table; `param` adds a column with that param's value (a backfill's date). */
export function jobsTable(list: ApiJob[], param?: string): string {
  return renderTable(
    [
      'id',
      'pipeline',
      'version',
      ...(param ? [param] : []),
      'state',
      'restarts',
      'read',
      'written',
      'failed',
      'started',
      'duration',
    ],
    list.map((job) => {
      const counts = jobCounts(job);
      const duration = jobDurationMs(job);
      return [
        job.id,
        job.pipeline.name,
        job.pipeline.version,
        ...(param ? [job.params[param] ?? ''] : []),
        job.state,
        job.restarts,
        counts?.read ?? '-',
        counts?.written ?? '-',
        counts?.failed ?? '-',
        shortTime(job.started_at),
        duration === undefined ? '-' : formatDuration(duration),
      ];
    }),
  );
}
