/**
 * The CLI client against a real `sluice server` (a child process on a free port, with the embedded
 * SQLite store in a temporary folder), driven through the real CLI as a user would.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiJob } from './client.ts';
import type { JobDetails } from './commands/job.ts';
import { EXIT } from './exit-codes.ts';
import { BIN, type CliResult, sluice } from './test-util.ts';

let work: string;
let server: ChildProcess;
let serverLog = '';
let env: NodeJS.ProcessEnv;

/** Starts `sluice server --port 0` and reads its URL and admin token from the lines it prints. */
async function startServer(dir: string): Promise<{ url: string; token: string }> {
  server = spawn(
    process.execPath,
    [
      BIN,
      'server',
      '--port',
      '0',
      '--state-dir',
      path.join(dir, 'state'),
      '--data-root',
      dir,
      '--cancel-grace',
      '5',
      '--max-jobs',
      '4',
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the server did not start in 120 s:\n${serverLog}`)),
      120_000,
    );
    server.stderr!.on('data', (d) => {
      serverLog += d;
      const url = /listening on (http:\/\/\S+)/.exec(serverLog)?.[1];
      const token = /admin token \(shown once\): (\S+)/.exec(serverLog)?.[1];
      if (url && token) {
        clearTimeout(timer);
        resolve({ url, token });
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${serverLog}`));
    });
  });
}

function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return sluice(args, work, undefined, { ...env, ...extraEnv });
}

async function writeSpec(name: string, text: string): Promise<string> {
  const file = path.join(work, `${name}.yaml`);
  await writeFile(file, text);
  return file;
}

/** The API itself, for the tests' own bookkeeping (polling, setup): faster than a CLI start. */
async function api<T>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`${env.SLUICE_SERVER}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${env.SLUICE_TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  assert.ok(res.ok, `${method} ${url}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as T;
}

function jobDetails(id: string): Promise<JobDetails> {
  return api<JobDetails>('GET', `/v1/jobs/${id}`);
}

async function waitForState(id: string, states: string[], timeoutMs = 120_000): Promise<JobDetails> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const details = await jobDetails(id);
    if (states.includes(details.job.state)) return details;
    if (Date.now() > deadline) {
      assert.fail(`job ${id} is ${details.job.state}, not ${states.join('/')}, after ${timeoutMs} ms`);
    }
    await sleep(100);
  }
}

const SMALL = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: cli-small }
source:
  generate: { count: 1000 }
sinks:
  - name: out
    file: { path: out/small.jsonl }
`;

// Unbounded: generate with a rate and no count streams until it is stopped.
const ENDLESS = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: cli-endless }
source:
  generate: { rate: 200/s }
sinks:
  - name: out
    file: { path: out/endless/, format: jsonl }
`;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-client-'));
  const { url, token } = await startServer(work);
  env = { SLUICE_SERVER: url, SLUICE_TOKEN: token };
});

after(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
  await rm(work, { recursive: true, force: true });
});

describe('sluice CLI against a real server', () => {
  let smallId: string;

  it('submit --wait runs a pipeline to the end: exit 0, summary, and all 1,000 records in the file', async () => {
    const file = await writeSpec('small', SMALL);
    const r = await cli(['submit', file, '--wait']);
    assert.equal(r.code, EXIT.ok, r.stderr + r.stdout + serverLog);
    const id = /job (\S+) submitted/.exec(r.stderr)?.[1];
    assert.ok(id, r.stderr);
    smallId = id;
    assert.match(r.stdout, new RegExp(`job ${id} succeeded`));
    assert.match(r.stdout, /1,000 read, 1,000 written/);
    // The progress line on stderr carries the state and the counts.
    assert.match(r.stderr, /succeeded · 1,000 read · 1,000 written · 0 failed · .*\/s · elapsed /);
    const lines = (await readFile(path.join(work, 'out/small.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(lines.length, 1000);
  });

  it('submit of an invalid spec exits 2 and points at the line:column in the local file', async () => {
    const file = await writeSpec(
      'bad',
      SMALL.replace('metadata: { name: cli-small }', 'metadata: { name: cli-bad }').replace(
        'count: 1000',
        'count: -5',
      ),
    );
    const r = await cli(['submit', file]);
    assert.equal(r.code, EXIT.specInvalid, r.stderr + r.stdout);
    assert.match(r.stderr, new RegExp(`${file.replaceAll('/', '\\/')}:5:\\d+  source\\.generate\\.count: `));
    assert.equal(r.stdout, '');
  });

  it('jobs lists the job, as a table and as the API JSON', async () => {
    // Independent invocations run side by side: each CLI start costs about a second.
    const [table, json, none, wrong] = await Promise.all([
      cli(['jobs', '--pipeline', 'cli-small']),
      cli(['jobs', '--state', 'succeeded,failed', '--json']),
      cli(['jobs', '--state', 'cancelling', '--pipeline', 'cli-small']),
      cli(['jobs', '--state', 'done']),
    ]);
    assert.equal(table.code, EXIT.ok, table.stderr);
    assert.match(
      table.stdout,
      /^id\s+pipeline\s+version\s+state\s+restarts\s+read\s+written\s+failed\s+started\s+duration/,
    );
    const row = table.stdout.split('\n').find((l) => l.startsWith(smallId));
    assert.ok(row, table.stdout);
    assert.match(row, /cli-small\s+1\s+succeeded\s+0\s+1,000\s+1,000\s+0\s+\d{4}-/);

    assert.equal(json.code, EXIT.ok, json.stderr);
    const res = JSON.parse(json.stdout) as { jobs: ApiJob[] };
    assert.ok(res.jobs.some((j) => j.id === smallId));
    assert.ok(res.jobs.every((j) => j.state === 'succeeded' || j.state === 'failed'));

    assert.equal(none.stdout, 'no jobs\n');
    assert.equal(wrong.code, EXIT.usage);
    assert.match(wrong.stderr, /--state takes pending, running/);
  });

  it('job ID shows the counts per operator and the history pending → running → succeeded', async () => {
    const r = await cli(['job', smallId]);
    assert.equal(r.code, EXIT.ok, r.stderr);
    assert.match(r.stdout, /state:\s+succeeded/);
    assert.match(r.stdout, /pipeline:\s+cli-small v1/);
    assert.match(r.stdout, /operator\s+kind\s+component\s+in\s+out/);
    assert.match(r.stdout, /generate\s+1,000/);
    const history = r.stdout.slice(r.stdout.indexOf('history:'));
    const changes = [...history.matchAll(/(\S+) → (\S+)/g)].map((m) => `${m[1]}>${m[2]}`);
    assert.deepEqual(changes, ['(new)>pending', 'pending>running', 'running>succeeded']);
  });

  it('logs --json prints the JSON lines of the job, each with its job_id; --follow ends when the job has', async () => {
    const [r, followed] = await Promise.all([
      cli(['logs', smallId, '--json']),
      cli(['logs', smallId, '--json', '--follow']),
    ]);
    assert.equal(r.code, EXIT.ok, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.ok(lines.length > 0, 'the log has lines');
    for (const line of lines) assert.equal(JSON.parse(line).job_id, smallId, line);

    assert.equal(followed.code, EXIT.ok, followed.stderr);
    assert.equal(followed.stdout, r.stdout);
  });

  it('logs prints the lines for people: local date and time, level, message; no colour when piped', async () => {
    const [json, readable] = await Promise.all([cli(['logs', smallId, '--json']), cli(['logs', smallId])]);
    assert.equal(readable.code, EXIT.ok, readable.stderr);
    const entries = json.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const lines = readable.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, entries.length);
    const t = new Date(entries[0].time);
    const p = (n: number, w = 2) => String(n).padStart(w, '0');
    const local = `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}.${p(t.getMilliseconds(), 3)}`;
    assert.ok(lines[0]!.startsWith(`${local} info  ${entries[0].msg}`), lines[0]);
    assert.ok(!readable.stdout.includes('\u001b['), 'no ANSI colour codes on a pipe');
  });

  it('submit with an Idempotency-Key returns the first job when sent again', async () => {
    const file = await writeSpec('small', SMALL);
    const first = await cli(['submit', file, '--idempotency-key', 'k-1', '--json']);
    assert.equal(first.code, EXIT.ok, first.stderr);
    const again = await cli(['submit', file, '--idempotency-key', 'k-1', '--json']);
    assert.equal(again.code, EXIT.ok, again.stderr);
    assert.equal(JSON.parse(again.stdout).job.id, JSON.parse(first.stdout).job.id);
    assert.match(again.stderr, /had seen Idempotency-Key k-1/);
    await waitForState(JSON.parse(first.stdout).job.id, ['succeeded']);
  });

  it('cancel stops an endless job: it ends cancelled and submit --wait exits 1', async () => {
    const file = await writeSpec('endless', ENDLESS);
    let waitingId: string | undefined;
    const waiting = sluice(
      ['submit', file, '--wait'],
      work,
      (child) => {
        let err = '';
        child.stderr!.on('data', (d) => {
          err += d;
          waitingId ??= /job (\S+) submitted/.exec(err)?.[1];
        });
      },
      env,
    );
    const deadline = Date.now() + 60_000;
    while (!waitingId && Date.now() < deadline) await sleep(50);
    assert.ok(waitingId, 'submit --wait printed the job id');
    const running = await waitForState(waitingId, ['running']);
    assert.equal(running.job.state, 'running');

    const r = await cli(['cancel', waitingId]);
    assert.equal(r.code, EXIT.ok, r.stderr);
    assert.match(r.stdout, new RegExp(`job ${waitingId}: (cancelling|cancelled)`));

    const waited = await waiting;
    assert.equal(waited.code, EXIT.failed, waited.stderr + waited.stdout);
    assert.match(waited.stdout, new RegExp(`job ${waitingId} cancelled`));
    const final = await jobDetails(waitingId);
    assert.equal(final.job.state, 'cancelled');
    assert.deepEqual(
      final.events.map((e) => e.to_state),
      ['pending', 'running', 'cancelling', 'cancelled'],
    );

    const again = await cli(['cancel', waitingId]);
    assert.equal(again.code, EXIT.failed);
    assert.match(again.stderr, /SLUICE_JOB_STATE: .*cancelled/);
  });

  it('backfill starts one job per date, oldest first, with the date param', async () => {
    const file = await writeSpec(
      'daily',
      SMALL.replace('cli-small', 'cli-daily')
        .replace('count: 1000', 'count: 10')
        .replace('{ path: out/small.jsonl }', '{ path: "out/daily/${param:date}.jsonl" }'),
    );
    await api('POST', '/v1/pipelines', { spec: await readFile(file, 'utf8'), base_dir: work });
    const r = await cli(['backfill', 'cli-daily', '--from', '2024-02-01', '--to', '2024-02-03']);
    assert.equal(r.code, EXIT.ok, r.stderr + r.stdout);
    assert.match(r.stdout, /^id\s+pipeline\s+version\s+date\s+state/);
    const dates = [...r.stdout.matchAll(/cli-daily\s+1\s+(\S+)/g)].map((m) => m[1]);
    assert.deepEqual(dates, ['2024-02-01', '2024-02-02', '2024-02-03']);

    const usage = await cli(['backfill', 'cli-daily', '--from', '2024-02-01']);
    assert.equal(usage.code, EXIT.usage);
    assert.match(usage.stderr, /--to YYYY-MM-DD is required/);
  });

  it('a wrong token is refused with the unauthorized message', async () => {
    const [r, flag] = await Promise.all([
      cli(['jobs'], { SLUICE_TOKEN: 'sluice_not-a-token' }),
      cli(['job', smallId, '--token', 'sluice_wrong']),
    ]);
    assert.equal(r.code, EXIT.failed);
    assert.match(r.stderr, /^sluice jobs: SLUICE_UNAUTHORIZED: the API token is unknown or revoked/);
    assert.equal(flag.code, EXIT.failed, 'the --token flag wins over SLUICE_TOKEN');
    assert.match(flag.stderr, /SLUICE_UNAUTHORIZED/);
  });

  it('no server listening gives SLUICE_SERVER_UNAVAILABLE with how to start one', async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as { port: number };
    probe.close();
    await once(probe, 'close');
    const url = `http://127.0.0.1:${port}`;
    const [r, flag] = await Promise.all([
      cli(['jobs'], { SLUICE_SERVER: url }),
      cli(['jobs', '--server', url]),
    ]);
    assert.equal(r.code, EXIT.failed);
    assert.match(
      r.stderr,
      new RegExp(
        `SLUICE_SERVER_UNAVAILABLE: cannot reach the Sluice server at ${url}: ECONNREFUSED; start one with \`sluice server\``,
      ),
    );
    assert.match(flag.stderr, /SLUICE_SERVER_UNAVAILABLE/, '--server is used');
  });
});
