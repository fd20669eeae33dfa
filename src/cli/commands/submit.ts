import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from '../../sdk/errors.ts';
import { isTerminal } from '../../server/lifecycle.ts';
import { SpecInvalidError } from '../../spec/validate.ts';
import { type ApiClient, type ApiJob, CLIENT_OPTIONS, clientFrom, specIssues } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { formatCount, formatDuration, formatRate, renderTable } from '../format.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';
import { onStopSignal } from '../signals.ts';
import { describeChecks, describeJobSummary, type JobDetails } from './job.ts';
import { jobCounts } from './jobs.ts';

export const submitCommand = defineCommand({
  name: 'submit',
  usage: 'sluice submit FILE [--param KEY=VALUE]... [--wait] [--idempotency-key KEY] [--json]',
  summary:
    'Send a pipeline spec to a Sluice server as a new version and start a job of it; --wait follows it to the end.',
  positionals: ['FILE'],
  options: {
    param: PARAM_OPTION,
    wait: {
      type: 'boolean',
      description:
        'Wait for the job to finish, with a progress line on stderr, then print its summary; exit 0 if it succeeded, 1 if it failed or was cancelled.',
    },
    'idempotency-key': {
      type: 'string',
      value: 'KEY',
      description:
        'Sent as the Idempotency-Key header: submitting again with the same key returns the first job instead of starting another.',
    },
    ...CLIENT_OPTIONS,
  },
});

/** Spec problems the server found: the CLI exits with EXIT.specInvalid for these, as `sluice run` does. */
const SPEC_CODES = new Set(['SLUICE_SPEC_INVALID', 'SLUICE_SPEC_YAML', 'SLUICE_SPEC_VARIABLE']);

const POLL_MS = 500;

export async function submit(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(submitCommand, argv);
  const file = positionals[0]!;
  const params = parseParams(options.param);
  let spec: string;
  try {
    spec = await readFile(file, 'utf8');
  } catch (err) {
    throw new SluiceError('SLUICE_USAGE', `cannot read ${file}: ${(err as Error).message}`);
  }
  const client = clientFrom(options);
  const key = options['idempotency-key'];
  let res: Response;
  try {
    res = await client.response('POST', '/v1/jobs', {
      // Relative paths in the spec resolve against the spec's folder, as with `sluice run`.
      body: { spec, base_dir: path.dirname(path.resolve(file)), params },
      ...(key ? { headers: { 'idempotency-key': key } } : {}),
    });
  } catch (err) {
    return refusedSpec(err, file, 'submit');
  }
  const { job } = (await res.json()) as { job: ApiJob };
  if (res.status === 200) {
    process.stderr.write(
      `the server had seen Idempotency-Key ${key ?? ''}: this is the job it started then\n`,
    );
  }
  if (!options.wait) {
    if (options.json) process.stdout.write(`${JSON.stringify({ job }, null, 2)}\n`);
    else process.stdout.write(`${submittedTable(job)}\n`);
    return EXIT.ok;
  }
  if (!options.json)
    process.stderr.write(`job ${job.id} submitted (${job.pipeline.name} v${job.pipeline.version})\n`);
  const final = await waitForJob(client, job.id);
  if (!final) return EXIT.interrupted;
  if (options.json) process.stdout.write(`${JSON.stringify(final, null, 2)}\n`);
  else process.stdout.write(`${describeOutcome(final)}\n`);
  return final.job.state === 'succeeded' ? EXIT.ok : EXIT.failed;
}

/** A spec the server refused exits like `sluice run` on an invalid spec: every problem with line:col. */
export function refusedSpec(err: unknown, file: string | undefined, command: string): number {
  if (!(err instanceof SluiceError) || !SPEC_CODES.has(err.code)) throw err;
  const issues = specIssues(err.details);
  if (file && issues.length) {
    // Shown against the local file name, so the line:col lead straight to the spec.
    process.stderr.write(`${new SpecInvalidError(file, issues).message}\n`);
  } else {
    process.stderr.write(`sluice ${command}: ${err.code}: ${err.message}\n`);
  }
  return EXIT.specInvalid;
}

function submittedTable(job: ApiJob): string {
  return renderTable(
    ['id', 'pipeline', 'version', 'state'],
    [[job.id, job.pipeline.name, job.pipeline.version, job.state]],
  );
}

/**
 * Polls the job until it is final, with a progress line on stderr. Returns undefined on Ctrl-C:
 * the job keeps running on the server, so leaving is only the client's business.
 */
export async function waitForJob(client: ApiClient, id: string): Promise<JobDetails | undefined> {
  const live = process.stderr.isTTY === true;
  const stop = new AbortController();
  const offSignal = onStopSignal(['SIGINT'], () => stop.abort());
  let lastState = '';
  let lastPlainAt = 0;
  let unreachableSince: number | undefined;
  let shown = false;
  try {
    for (;;) {
      let details: JobDetails | undefined;
      try {
        details = await client.request<JobDetails>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
        unreachableSince = undefined;
      } catch (err) {
        // A server restart should not end the wait: the job survives it, so keep asking a while.
        if (!(err instanceof SluiceError) || err.code !== 'SLUICE_SERVER_UNAVAILABLE') throw err;
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > 30_000) throw err;
      }
      if (details) {
        const line = progressLine(details.job);
        const final = isTerminal(details.job.state);
        if (live) {
          process.stderr.write(`\r\x1b[2K${line}`);
          shown = true;
        } else if (details.job.state !== lastState || Date.now() - lastPlainAt >= 10_000 || final) {
          process.stderr.write(`${line}\n`);
          lastPlainAt = Date.now();
        }
        lastState = details.job.state;
        if (final) return details;
      }
      try {
        await sleep(POLL_MS, undefined, { signal: stop.signal });
      } catch {
        if (shown) process.stderr.write('\n');
        shown = false;
        process.stderr.write(
          `stopped waiting; job ${id} keeps running on the server (sluice job ${id} to look, sluice cancel ${id} to stop it)\n`,
        );
        return undefined;
      }
    }
  } finally {
    offSignal();
    if (shown) process.stderr.write('\n');
  }
}

/** records read, written, failed, records/s, elapsed, state: one line. */
export function progressLine(job: ApiJob, now = Date.now()): string {
  const counts = jobCounts(job);
  const rate = job.progress?.records_per_second ?? job.summary?.records_per_second ?? 0;
  const start = job.started_at ?? job.created_at;
  const end = job.ended_at ? Date.parse(job.ended_at) : now;
  const elapsed = job.progress?.elapsed_ms ?? job.summary?.elapsed_ms ?? Math.max(0, end - Date.parse(start));
  const parts = [
    job.state,
    `${formatCount(counts?.read ?? 0)} read`,
    `${formatCount(counts?.written ?? 0)} written`,
    `${formatCount(counts?.failed ?? 0)} failed`,
    formatRate(rate),
    `elapsed ${formatDuration(elapsed)}`,
  ];
  if (job.restarts) parts.push(`${job.restarts} restart${job.restarts === 1 ? '' : 's'}`);
  return parts.join(' · ');
}

function describeOutcome({ job }: JobDetails): string {
  const lines = [`job ${job.id} ${job.state}${job.reason ? `: ${job.reason}` : ''}`];
  const summary = describeJobSummary(job);
  if (summary) lines.push('', summary);
  const checks = describeChecks(job);
  if (checks) lines.push('', checks);
  return lines.join('\n');
}
