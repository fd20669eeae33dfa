/**
 * Fault tests of `sluice run` against real servers: a 1M-record job SIGKILLed at three random
 * points and resumed each time, for the file, PostgreSQL and Kafka sinks. The kill points come
 * from a seeded generator (SLUICE_FAULT_SEED replays another set; SLUICE_FAULT_RECORDS another
 * size) and are printed, so a failure can be replayed exactly.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { writeKillStep } from '../engine/test-util.ts';
import { waitUntil } from '../sdk/testing.ts';
import { rng } from '../sql/fuzz.ts';
import { ROOT, sluice } from './test-util.ts';

/**
 * A step that holds the records from id SLUICE_TEST_GATE_AT on until the file `open` exists in
 * SLUICE_TEST_GATE_DIR, and says so with a file `held` there: a test can then break a service
 * while the run is surely mid-way, whatever the machine's speed.
 */
async function writeGateStep(dir: string): Promise<void> {
  const sdk = JSON.stringify(new URL('../sdk/index.ts', import.meta.url).href);
  await writeFile(
    path.join(dir, 'gate.ts'),
    `import { defineStep, z } from ${sdk};
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
const at = Number(process.env.SLUICE_TEST_GATE_AT ?? Number.POSITIVE_INFINITY);
const dir = process.env.SLUICE_TEST_GATE_DIR ?? '.';
export default defineStep({
  name: 'gate',
  summary: 'Holds records from id SLUICE_TEST_GATE_AT on until SLUICE_TEST_GATE_DIR/open exists (tests only).',
  config: z.object({}).strict(),
  examples: [],
  create: () => ({
    async process(batch) {
      if (batch.some((r) => Number(r.value.id) >= at) && !existsSync(path.join(dir, 'open'))) {
        writeFileSync(path.join(dir, 'held'), '');
        while (!existsSync(path.join(dir, 'open'))) await sleep(20);
      }
      return { records: batch };
    },
  }),
});
`,
  );
}

const execFileAsync = promisify(execFile);
const PG_URL = process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://sluice@127.0.0.1:54329/sluice_test';
const BOOTSTRAP = process.env.SLUICE_TEST_KAFKA_BOOTSTRAP ?? '127.0.0.1:59092';
const COUNT = Number(process.env.SLUICE_FAULT_RECORDS ?? 1_000_000);
const SEED = Number(process.env.SLUICE_FAULT_SEED ?? 20261201);

/** Three increasing record ids between 5% and 95% of the input, different for each sink. */
function killPoints(salt: number): number[] {
  const random = rng(SEED + salt);
  const points = new Set<number>();
  while (points.size < 3) points.add(Math.floor(COUNT * (0.05 + 0.9 * random())));
  return [...points].sort((a, b) => a - b);
}

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-faults-'));
  await writeKillStep(work);
});
after(() => rm(work, { recursive: true, force: true }));

const spec = (name: string, sink: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate:
    count: ${COUNT}
    seed: 11
    fields: { id: seq, v: "int(1, 1000000)", s: "string(4, 12)" }
steps:
  - script: { module: kill.ts }
sinks:
${sink}
settings: { batch_size: 5000, checkpoint_interval: 200ms }
`;

/**
 * Runs the pipeline with `sluice run`, SIGKILLed once record `at` reaches its kill step (and the
 * run saved a checkpoint of its own, so that each kill leaves one), for each of the kill points;
 * then once more to the end. Each run after a kill must say it resumes.
 */
async function killThriceAndFinish(name: string, sink: string, salt: number): Promise<void> {
  const file = `${name}.yaml`;
  await writeFile(path.join(work, file), spec(name, sink));
  const points = killPoints(salt);
  console.log(`# ${name}: seed ${SEED}, SIGKILL at records ${points.join(', ')} of ${COUNT}`);
  const args = ['run', file, '--progress', 'none', '--run-dir', `.runs/${name}`];
  for (const [i, at] of points.entries()) {
    const killed = await sluice(args, work, undefined, {
      SLUICE_TEST_KILL_AT: String(at),
      SLUICE_TEST_KILL_AFTER_SAVE: path.join(work, '.sluice/checkpoints', name, 'checkpoint.json'),
    });
    assert.equal(killed.code, null, `run ${i + 1} was to be killed at record ${at}: ${killed.stderr}`);
    if (i > 0) assert.match(killed.stderr, /resuming from the checkpoint of run/);
  }
  const last = await sluice([...args, '--json'], work);
  assert.equal(last.code, 0, last.stderr);
  assert.match(last.stderr, /resuming from the checkpoint of run/);
  const summary = JSON.parse(last.stdout) as { status: string; records: { failed: number } };
  assert.equal(summary.status, 'succeeded');
  assert.equal(summary.records.failed, 0);
}

/** Prints the log lines that tell how a run got over a fault, for the CI log. */
function showRecovery(what: string, stderr: string): void {
  const lines = stderr.split('\n').filter((l) => /was lost|retrying|restart \d+ of|failed: SLUICE/.test(l));
  console.log(
    `# ${what}:\n${lines
      .slice(0, 6)
      .map((l) => `#   ${l.slice(0, 300)}`)
      .join('\n')}`,
  );
}

/** How often each id 1..COUNT occurs, with the first ids seen other than once. */
function tally(ids: Iterable<number>): { total: number; missing: number; extra: number } {
  const seen = new Uint8Array(COUNT + 1);
  let total = 0;
  let missing = 0;
  let extra = 0;
  for (const id of ids) {
    total++;
    assert.ok(Number.isInteger(id) && id >= 1 && id <= COUNT, `an id out of range: ${id}`);
    if (seen[id]! < 255) seen[id]!++;
  }
  for (let id = 1; id <= COUNT; id++) {
    if (seen[id] === 0) missing++;
    else if (seen[id]! > 1) extra += seen[id]! - 1;
  }
  return { total, missing, extra };
}

async function* jsonlIds(folder: string): AsyncGenerator<number> {
  const files = (await readdir(folder)).filter((f) => f.endsWith('.jsonl') && !f.startsWith('.'));
  assert.ok(files.length > 0, `no part files in ${folder}`);
  for (const f of files)
    for (const line of (await readFile(path.join(folder, f), 'utf8')).split('\n'))
      if (line) yield (JSON.parse(line) as { id: number }).id;
}

async function collect(ids: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const id of ids) out.push(id);
  return out;
}

describe(`a ${COUNT.toLocaleString('en')}-record job SIGKILLed at three random points, resumed each time`, () => {
  it('file sink: every record exactly once', async () => {
    await killThriceAndFinish(
      'faults-file',
      '  - file: { path: out/file/, format: jsonl, roll: { max_records: 100000 } }',
      1,
    );
    const ids = await collect(jsonlIds(path.join(work, 'out/file')));
    assert.deepEqual(tally(ids), { total: COUNT, missing: 0, extra: 0 });
  });

  it('postgres sink: every row exactly once', async () => {
    const table = `faults_${randomBytes(4).toString('hex')}`;
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await killThriceAndFinish(
        'faults-postgres',
        `  - postgres: { url: "${PG_URL}", table: ${table}, create_table: true }`,
        2,
      );
      const { rows } = await client.query<{ id: number }>(`SELECT id::int AS id FROM ${table}`);
      assert.deepEqual(tally(rows.map((r) => r.id)), { total: COUNT, missing: 0, extra: 0 });
      await client.query(`DROP TABLE ${table}`);
    } finally {
      await client.end();
    }
  });

  it('kafka sink: every record at least once', async () => {
    const topic = `faults-${randomBytes(4).toString('hex')}`;
    await killThriceAndFinish(
      'faults-kafka',
      `  - kafka: { bootstrap_servers: "${BOOTSTRAP}", topic: ${topic} }`,
      3,
    );
    // Read the topic back with Sluice's own Kafka source, to its end as it was at the start.
    await writeFile(
      path.join(work, 'read-back.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: faults-read-back }
source:
  kafka: { bootstrap_servers: "${BOOTSTRAP}", group: ${topic}-check, topics: [${topic}], stop_at_end: true }
sinks:
  - file: { path: out/kafka/, format: jsonl }
settings: { batch_size: 5000 }
`,
    );
    const read = await sluice(
      ['run', 'read-back.yaml', '--progress', 'none', '--run-dir', '.runs/read-back'],
      work,
    );
    assert.equal(read.code, 0, read.stderr);
    const counts = tally(await collect(jsonlIds(path.join(work, 'out/kafka'))));
    assert.equal(counts.missing, 0, 'no record lost');
    assert.equal(counts.total, COUNT + counts.extra);
    console.log(`# kafka sink: ${counts.extra} duplicates after three kills (at-least-once)`);
  });
});

/** Starts `sluice run FILE` in `work` and returns its outcome and a way to wait on its checkpoints. */
function startRun(name: string, file: string, env?: NodeJS.ProcessEnv) {
  const done = sluice(
    ['run', file, '--progress', 'none', '--run-dir', `.runs/${name}`],
    work,
    undefined,
    env,
  );
  const checkpoint = path.join(work, '.sluice/checkpoints', name, 'checkpoint.json');
  /** Resolves once a saved checkpoint has read past `records` in total. */
  const pastRecords = (records: number) =>
    waitUntil(`${name}: a checkpoint past ${records} records`, async () => {
      const text = await readFile(checkpoint, 'utf8').catch(() => '');
      if (!text) return false;
      const cp = JSON.parse(text) as { positions: Record<string, number> };
      return Object.values(cp.positions).reduce((a, b) => a + b, 0) > records;
    });
  return { done, pastRecords };
}

describe('connections lost mid-run: restarted from the checkpoint, with bounded retries and a clear log line', () => {
  const ROWS = 400_000;
  let client: pg.Client;
  before(async () => {
    client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
  });
  after(() => client?.end());

  /** Drops every connection that set this application_name, as a failover or a DBA would. */
  async function dropConnections(applicationName: string): Promise<number> {
    const { rowCount } = await client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
      [applicationName],
    );
    return rowCount ?? 0;
  }

  it('postgres sink: the connection dropped mid-run; every row exactly once', async () => {
    const table = `dropped_sink_${randomBytes(4).toString('hex')}`;
    const name = 'dropped-pg-sink';
    await writeFile(
      path.join(work, `${name}.yaml`),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { count: ${ROWS}, seed: 5, rate: 100000/s, fields: { id: seq, v: "int(1, 1000)" } }
sinks:
  - postgres: { url: "${PG_URL}?application_name=${name}", table: ${table}, create_table: true }
settings: { batch_size: 2000, checkpoint_interval: 300ms }
`,
    );
    const run = startRun(name, `${name}.yaml`);
    await run.pastRecords(ROWS / 4);
    assert.ok((await dropConnections(name)) > 0, 'the sink had a connection to drop');
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.match(stderr, /postgres: .*the connection to .* was lost/);
    showRecovery('postgres sink, connection dropped', stderr);
    const { rows } = await client.query<{ id: number }>(`SELECT id::int AS id FROM ${table}`);
    const seen = new Set(rows.map((r) => r.id));
    assert.equal(rows.length, ROWS, 'no row twice');
    assert.equal(seen.size, ROWS, 'no row lost');
    await client.query(`DROP TABLE ${table}`);
  });

  it('postgres source: the connection dropped mid-read; the run restarts from its checkpoint and writes every row once', async () => {
    const table = `dropped_src_${randomBytes(4).toString('hex')}`;
    const name = 'dropped-pg-source';
    await client.query(
      `CREATE TABLE ${table} AS SELECT g AS id, md5(g::text) AS s FROM generate_series(1, ${ROWS}) g`,
    );
    await client.query(`ALTER TABLE ${table} ADD PRIMARY KEY (id)`);
    await writeFile(
      path.join(work, `${name}.yaml`),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  postgres: { url: "${PG_URL}?application_name=${name}", table: ${table} }
sinks:
  - file: { path: out/${name}/, format: jsonl }
settings: { batch_size: 2000, checkpoint_interval: 300ms, restart: { attempts: 2, backoff: 200ms } }
`,
    );
    const run = startRun(name, `${name}.yaml`);
    await run.pastRecords(ROWS / 4);
    assert.ok((await dropConnections(name)) > 0, 'the source had a connection to drop');
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.match(stderr, /restart 1 of 2 \(settings\.restart\) in 200ms, from the last checkpoint/);
    assert.match(stderr, /resuming from the checkpoint of run/);
    showRecovery('postgres source, connection dropped', stderr);
    const ids = await collect(jsonlIds(path.join(work, 'out', name)));
    assert.equal(ids.length, ROWS, 'no row twice');
    assert.equal(new Set(ids).size, ROWS, 'no row lost');
    await client.query(`DROP TABLE ${table}`);
  });
});

describe('a Kafka broker restarted mid-run', () => {
  // A broker of its own (other ports, other data), so the restart disturbs no other test.
  const port = Number(process.env.SLUICE_FAULT_KAFKA_PORT ?? 59392);
  const broker = `127.0.0.1:${port}`;
  const env = {
    ...process.env,
    SLUICE_KAFKA_PORT: String(port),
    SLUICE_KAFKA_CONTROLLER_PORT: String(port + 1),
    SLUICE_KAFKA_DIR: path.join(ROOT, '.sluice/services/kafka-faults'),
  };
  const kafka = (command: 'start' | 'stop') =>
    execFileAsync(path.join(ROOT, 'scripts/services/kafka.sh'), [command], { env, timeout: 120_000 });
  before(() => kafka('start'));
  after(() => kafka('stop'));

  it('kafka → kafka: survives the restart with bounded retries; every record at least once', async () => {
    const COUNT_MSGS = 300_000;
    const suffix = randomBytes(4).toString('hex');
    const [input, output] = [`restart-in-${suffix}`, `restart-out-${suffix}`];
    await writeFile(
      path.join(work, 'fill.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: restart-fill }
source:
  generate: { count: ${COUNT_MSGS}, seed: 3, fields: { id: seq, s: "string(8, 16)" } }
sinks:
  - kafka: { bootstrap_servers: "${broker}", topic: ${input} }
`,
    );
    const fill = await sluice(['run', 'fill.yaml', '--progress', 'none', '--run-dir', '.runs/fill'], work);
    assert.equal(fill.code, 0, fill.stderr);

    const name = 'restart-copy';
    await writeFile(
      path.join(work, `${name}.yaml`),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  kafka: { bootstrap_servers: "${broker}", group: ${name}-${suffix}, topics: [${input}], stop_at_end: true }
steps:
  - script: { module: gate.ts }
sinks:
  - kafka: { bootstrap_servers: "${broker}", topic: ${output} }
settings:
  batch_size: 2000
  checkpoint_interval: 300ms
  sink_retry: { attempts: 6, initial_backoff: 200ms, max_backoff: 2s }
  restart: { attempts: 8, backoff: 1s, max_backoff: 4s }
`,
    );
    // The broker goes away while the run is held a tenth of the way in, then the run goes on.
    const gate = path.join(work, `gate-${suffix}`);
    await mkdir(gate);
    await writeGateStep(work);
    const run = startRun(name, `${name}.yaml`, {
      SLUICE_TEST_GATE_AT: String(COUNT_MSGS / 10),
      SLUICE_TEST_GATE_DIR: gate,
    });
    let ended = false;
    void run.done.finally(() => {
      ended = true;
    });
    await waitUntil(`${name}: the run held at the gate`, () => existsSync(path.join(gate, 'held')), {
      gone: () => (ended ? 'the run ended first' : undefined),
    });
    await kafka('stop');
    await writeFile(path.join(gate, 'open'), '');
    await kafka('start');
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.match(stderr, /restart \d of 8 \(settings\.restart\)|write failed, retrying/);
    showRecovery('kafka broker restarted', stderr);

    await writeFile(
      path.join(work, 'restart-check.yaml'),
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: restart-check }
source:
  kafka: { bootstrap_servers: "${broker}", group: check-${suffix}, topics: [${output}], stop_at_end: true }
sinks:
  - file: { path: out/restart-check/, format: jsonl }
`,
    );
    const check = await sluice(
      ['run', 'restart-check.yaml', '--progress', 'none', '--run-dir', '.runs/check'],
      work,
    );
    assert.equal(check.code, 0, check.stderr);
    const ids = await collect(jsonlIds(path.join(work, 'out/restart-check')));
    const seen = new Set(ids);
    assert.equal(seen.size, COUNT_MSGS, 'no record lost');
    console.log(`# broker restart: ${ids.length - COUNT_MSGS} duplicates (at-least-once)`);
  });
});
