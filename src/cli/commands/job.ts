import { type ApiJob, type ApiJobEvent, CLIENT_OPTIONS, clientFrom } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { formatCount, formatDuration, formatRate, renderTable } from '../format.ts';
import { defineCommand, parseCommand } from '../options.ts';
import { operatorTable } from '../run-report.ts';
import { jobDurationMs, shortTime } from './jobs.ts';

export const jobCommand = defineCommand({
  name: 'job',
  usage: 'sluice job ID [--json]',
  summary:
    'Show one job of a Sluice server: state, reason, params, times, per-operator counts, checks and its history.',
  positionals: ['ID'],
  options: { ...CLIENT_OPTIONS },
});

export interface JobDetails {
  job: ApiJob;
  events: ApiJobEvent[];
}

export async function job(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(jobCommand, argv);
  const id = positionals[0]!;
  const res = await clientFrom(options).request<JobDetails>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  if (options.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
  else process.stdout.write(`${describeJob(res.job, res.events)}\n`);
  return EXIT.ok;
}

export function describeJob(j: ApiJob, events: ApiJobEvent[]): string {
  const params = Object.entries(j.params ?? {});
  const duration = jobDurationMs(j);
  const attempts = j.restart_policy ? ` (restart policy: up to ${j.restart_policy.attempts})` : '';
  const fields: [string, string][] = [
    ['job', j.id],
    ['pipeline', `${j.pipeline.name} v${j.pipeline.version}`],
    ['state', j.state],
    ...(j.reason ? ([['reason', j.reason]] as [string, string][]) : []),
    ['params', params.length ? params.map(([k, v]) => `${k}=${v}`).join(' ') : '(none)'],
    ['restarts', `${j.restarts}${attempts}`],
    ['created', shortTime(j.created_at)],
    ['started', shortTime(j.started_at)],
    ['ended', shortTime(j.ended_at)],
    ...(duration === undefined ? [] : ([['duration', formatDuration(duration)]] as [string, string][])),
    ...(j.next_start_at ? ([['next start', shortTime(j.next_start_at)]] as [string, string][]) : []),
    ...(j.schedule_id
      ? ([['schedule', `${j.schedule_id}${j.scheduled_for ? ` for ${j.scheduled_for}` : ''}`]] as [
          string,
          string,
        ][])
      : []),
  ];
  const width = Math.max(...fields.map(([k]) => k.length));
  const lines = fields.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${v}`);

  if (j.progress && !j.summary) {
    const p = j.progress;
    lines.push(
      '',
      `progress: ${formatCount(p.read ?? 0)} read, ${formatCount(p.written ?? 0)} written, ` +
        `${formatCount(p.failed ?? 0)} failed (${formatRate(p.records_per_second ?? 0)})`,
    );
  }
  const summary = describeJobSummary(j);
  if (summary) lines.push('', summary);
  const checks = describeChecks(j);
  if (checks) lines.push('', checks);
  if (events.length) {
    lines.push(
      '',
      'history:',
      renderTable(
        ['seq', 'time', 'change', 'reason'],
        events.map((e) => [
          e.seq,
          shortTime(e.at),
          `${e.from_state ?? '(new)'} → ${e.to_state}`,
          e.reason ?? '',
        ]),
      ),
    );
  }
  return lines.join('\n');
}

/** The run summary of a finished job: the per-operator table and the totals, like `sluice run`. */
export function describeJobSummary(j: ApiJob): string {
  const s = j.summary;
  if (!s) return '';
  const lines: string[] = [];
  if (s.operators?.length) {
    lines.push(operatorTable(s.operators), '');
  }
  if (s.records) {
    const r = s.records;
    lines.push(
      `${j.state}${s.elapsed_ms === undefined ? '' : ` in ${formatDuration(s.elapsed_ms)}`}: ` +
        `${formatCount(r.read)} read, ${formatCount(r.written)} written, ${formatCount(r.filtered)} filtered, ` +
        `${formatCount(r.failed)} failed (${formatRate(s.records_per_second ?? 0)})`,
    );
  }
  const attempts = s.attempts?.length ?? 0;
  if (s.totals && attempts > 1) {
    const t = s.totals;
    lines.push(
      `over ${attempts} attempts: ${formatCount(t.read)} read, ${formatCount(t.written)} written, ` +
        `${formatCount(t.filtered)} filtered, ${formatCount(t.failed)} failed`,
    );
  }
  if (s.failure) lines.push(`failure: ${s.failure.code}: ${s.failure.message}`);
  for (const [sink, files] of Object.entries(s.outputs ?? {})) {
    if (files.length)
      lines.push(`${sink}: ${files.length === 1 ? files[0] : `${files.length} files, e.g. ${files[0]}`}`);
  }
  if (s.errors?.count) {
    const codes = Object.entries(s.errors.by_code)
      .map(([code, n]) => `${code} ${formatCount(n)}`)
      .join(', ');
    lines.push(`errors: ${codes} → ${s.errors.outputs.join(', ') || 'errors sink'}`);
  }
  return lines.join('\n');
}

export function describeChecks(j: ApiJob): string {
  if (!j.checks?.length) return '';
  return [
    'checks:',
    ...j.checks.map(
      (c) => `  ${c.passed ? 'pass' : c.severity === 'warn' ? 'WARN' : 'FAIL'}  ${c.check}: ${c.message}`,
    ),
  ].join('\n');
}
