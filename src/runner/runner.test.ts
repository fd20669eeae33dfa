/**
 * The runner through the real engines on real files: resume after a kill, restart with backoff
 * on a retriable failure (not on a fatal one), the pushdown chosen and reported, and what the
 * summary and run.json hold.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { FileCheckpointStore } from '../engine/checkpoint-store.ts';
import type { RunSummary } from '../engine/summary.ts';
import { runUntilKilled } from '../engine/test-util.ts';
import { defaultRegistry } from '../registry.ts';
import { loadPipeline } from '../spec/validate.ts';
import { PipelineRunner, type RunnerOptions } from './index.ts';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const sdk = JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '../sdk/index.ts')).href);
const runnerUrl = JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, 'index.ts')).href);

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-runner-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Writes `name/pipeline.yaml` and returns the runner's options for it (checkpoints in name/checkpoints). */
async function setUp(name: string, spec: string, files: Record<string, string> = {}) {
  const dir = path.join(work, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) await writeFile(path.join(dir, file), text);
  const file = path.join(dir, 'pipeline.yaml');
  await writeFile(file, spec);
  const pipeline = await loadPipeline({ file, registry: defaultRegistry() });
  let n = 0;
  const options: RunnerOptions = {
    pipeline,
    checkpoints: new FileCheckpointStore(path.join(dir, 'checkpoints')),
    runsDir: path.join(dir, 'runs'),
    runId: (attempt) => `run${++n}-a${attempt}`,
    logger: () => silent,
  };
  return { dir, options };
}

async function runJson(dir: string, runId: string): Promise<RunSummary> {
  return JSON.parse(await readFile(path.join(dir, 'runs', runId, 'run.json'), 'utf8'));
}

async function jsonlIds(folder: string): Promise<number[]> {
  const ids: number[] = [];
  for (const f of (await readdir(folder)).filter((f) => f.endsWith('.jsonl')).sort())
    for (const line of (await readFile(path.join(folder, f), 'utf8')).split('\n'))
      if (line) ids.push(JSON.parse(line).id);
  return ids.sort((a, b) => a - b);
}

/** A step that fails its first `fails` runs (counted in a file), with a retriable error or not. */
const flakyStep = (retriable: boolean) => `import { defineStep, SluiceError, z } from ${sdk};
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const counter = new URL('./failures.txt', import.meta.url);
export default defineStep({
  name: 'flaky',
  summary: 'Fails the run while failures.txt counts below FAILS (tests only).',
  config: z.object({ fails: z.number() }).strict(),
  examples: [],
  create: (config) => {
    const failed = existsSync(counter) ? Number(readFileSync(counter, 'utf8')) : 0;
    return {
      process(batch) {
        if (failed < config.fails) {
          writeFileSync(counter, String(failed + 1));
          throw new SluiceError('SLUICE_STEP_FAILED', 'the service is away', { retriable: ${retriable} });
        }
        return { records: batch };
      },
    };
  },
});
`;

const flakySpec = (name: string, fails: number) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { count: 50, seed: 1, fields: { id: seq } }
steps:
  - script: { module: flaky.ts, config: { fails: ${fails} } }
sink:
  file: { path: out/, format: jsonl }
settings: { restart: { attempts: 3, backoff: 5ms, max_backoff: 8ms } }
`;

describe('PipelineRunner', () => {
  it('resumes from the checkpoint a killed run left: every record once, and the summary says where it resumed', async () => {
    const count = 8000;
    const { dir, options } = await setUp(
      'resume',
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: resume }
source:
  generate: { count: ${count}, rate: 20000/s, seed: 9, fields: { id: seq } }
sink:
  file: { path: out/, format: jsonl }
settings: { batch_size: 250, checkpoint_interval: 20ms }
`,
    );
    // A child process runs the same runner and kills itself once a checkpoint past 2,000 records is saved.
    const script = path.join(dir, 'killed.ts');
    await writeFile(
      script,
      `import { FileCheckpointStore } from ${JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '../engine/checkpoint-store.ts')).href)};
import { defaultRegistry } from ${JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '../registry.ts')).href)};
import { loadPipeline } from ${JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '../spec/validate.ts')).href)};
import { PipelineRunner } from ${runnerUrl};
const dir = ${JSON.stringify(dir)};
const pipeline = await loadPipeline({ file: dir + '/pipeline.yaml', registry: defaultRegistry() });
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const runner = new PipelineRunner(
  { pipeline, checkpoints: new FileCheckpointStore(dir + '/checkpoints'), runsDir: dir + '/runs', runId: () => 'killed', logger: () => silent },
  { onCheckpoint: (positions) => { if (positions.generate > 2000) process.kill(process.pid, 'SIGKILL'); } },
);
await runner.run();
`,
    );
    await runUntilKilled(script);

    const attempts: { engine: string; resume: unknown }[] = [];
    const summary = await new PipelineRunner(options, {
      onAttempt: (a) => {
        attempts.push({ engine: a.engine, resume: a.resume?.run_id });
      },
    }).run();
    assert.equal(summary.status, 'succeeded');
    assert.deepEqual(attempts, [{ engine: 'streaming', resume: 'killed' }]);
    const from = summary.resumed_from?.generate ?? 0;
    assert.ok(from > 2000 && from < count, `resumed from ${from}`);
    assert.equal(summary.records.read, count - from, 'only the records after the checkpoint are read');
    assert.equal(summary.engine, 'streaming');
    assert.equal(summary.restart_from, 'checkpoint');
    assert.match(
      summary.engine_reasons[0] ?? '',
      /^the source is generate; only the file source is pushed down/,
    );
    assert.deepEqual(await runJson(dir, summary.run_id), summary, 'run.json holds the summary');
    assert.deepEqual(
      await jsonlIds(path.join(dir, 'out')),
      Array.from({ length: count }, (_, i) => i + 1),
      'every record once',
    );
    const final = await options.checkpoints.load();
    assert.equal(final?.final, true, 'a finished run leaves a final checkpoint');
  });

  it('restarts a run that failed with a retriable error, with the doubling backoff, writing each attempt’s run.json', async () => {
    const { dir, options } = await setUp('retriable', flakySpec('retriable', 2), {
      'flaky.ts': flakyStep(true),
    });
    const restarts: { number: number; of: number; waitMs: number; failed: string }[] = [];
    const summary = await new PipelineRunner(options, {
      onRestart: (failed, r) => restarts.push({ ...r, failed: failed.failure!.code }),
    }).run();
    assert.deepEqual(restarts, [
      { number: 1, of: 3, waitMs: 5, failed: 'SLUICE_STEP_FAILED' },
      { number: 2, of: 3, waitMs: 8, failed: 'SLUICE_STEP_FAILED' },
    ]);
    assert.equal(summary.status, 'succeeded');
    assert.equal(summary.run_id, 'run3-a3');
    const first = await runJson(dir, 'run1-a1');
    assert.equal(first.status, 'failed');
    assert.deepEqual(first.failure, {
      code: 'SLUICE_STEP_FAILED',
      message: 'the service is away',
      retriable: true,
    });
    assert.equal((await runJson(dir, 'run3-a3')).status, 'succeeded');
    assert.deepEqual(
      await jsonlIds(path.join(dir, 'out')),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
  });

  it('does not restart a run that failed with a fatal error', async () => {
    const { dir, options } = await setUp('fatal', flakySpec('fatal', 1), { 'flaky.ts': flakyStep(false) });
    let restarted = false;
    const summary = await new PipelineRunner(options, { onRestart: () => (restarted = true) }).run();
    assert.equal(summary.status, 'failed');
    assert.equal(summary.failure?.retriable, false);
    assert.equal(restarted, false);
    assert.deepEqual(await readdir(path.join(dir, 'runs')), ['run1-a1']);
  });

  it('does not restart when the caller restarts (restart: false), nor after a stop during the backoff', async () => {
    const once = await setUp('no-restart', flakySpec('no-restart', 1), { 'flaky.ts': flakyStep(true) });
    const off = await new PipelineRunner({ ...once.options, restart: false }).run();
    assert.equal(off.status, 'failed');
    assert.equal(off.failure?.retriable, true);

    const stopped = await setUp('stopped', flakySpec('stopped', 1), { 'flaky.ts': flakyStep(true) });
    const runner: PipelineRunner = new PipelineRunner(stopped.options, { onRestart: () => runner.stop() });
    const summary = await runner.run();
    assert.equal(summary.status, 'failed', 'the failed attempt is the last');
    assert.deepEqual(await readdir(path.join(stopped.dir, 'runs')), ['run1-a1']);
  });

  const csv = 'id,amount\n1,10\n2,-3\n3,7\n4,1\n';
  const fileSpec = (name: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  file: { path: in.csv, csv: { columns: { id: integer, amount: integer } } }
steps:
  - sql: SELECT id, amount * 2 AS twice FROM input WHERE amount > 0
sink:
  file: { path: out/result.csv }
`;

  it('pushes a file → SQL → file pipeline down to DuckDB and says so; the same output as the streaming engine', async () => {
    const pushed = await setUp('pushed', fileSpec('pushed'), { 'in.csv': csv });
    const engines: string[] = [];
    const summary = await new PipelineRunner(pushed.options, {
      onAttempt: (a) => {
        engines.push(`${a.engine} from ${a.restartFrom}`);
      },
    }).run();
    assert.deepEqual(engines, ['duckdb-pushdown from scratch']);
    assert.equal(summary.status, 'succeeded');
    assert.equal(summary.engine, 'duckdb-pushdown');
    assert.equal(summary.restart_from, 'scratch', 'a pushed-down run keeps no checkpoint');
    assert.match(summary.engine_reasons.join('\n'), /one DuckDB COPY/);
    assert.deepEqual(summary.records, { read: 4, written: 3, filtered: 1, failed: 0, skipped: 0 });
    assert.deepEqual(await runJson(pushed.dir, summary.run_id), summary);
    assert.equal(await pushed.options.checkpoints.load(), undefined, 'no checkpoint is kept');

    const streamed = await setUp('streamed', fileSpec('streamed'), { 'in.csv': csv });
    const streaming = await new PipelineRunner({ ...streamed.options, pushdown: 'off' }).run();
    assert.equal(streaming.engine, 'streaming');
    assert.deepEqual(streaming.engine_reasons, ['pushdown is off (--no-pushdown or settings.pushdown: off)']);
    assert.deepEqual(streaming.records, summary.records);
    assert.equal(
      await readFile(path.join(streamed.dir, 'out/result.csv'), 'utf8'),
      await readFile(path.join(pushed.dir, 'out/result.csv'), 'utf8'),
    );
  });

  it('runs on the streaming engine when DuckDB gives up on the input, with DuckDB’s reason in the summary', async () => {
    // A CAST that fails on "x1" stops DuckDB's COPY; the streaming engine sends that record to the errors sink.
    const { options } = await setUp(
      'declined',
      `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: declined }
source:
  file: { path: in.csv }
steps:
  - sql: SELECT id, CAST(code AS INTEGER) AS code FROM input
sink:
  file: { path: out/, format: parquet }
`,
      { 'in.csv': 'id,code\n1,10\n2,x1\n3,30\n' },
    );
    const engines: string[] = [];
    const summary = await new PipelineRunner(options, {
      onAttempt: (a) => void engines.push(a.engine),
    }).run();
    assert.deepEqual(engines, ['duckdb-pushdown'], 'the pushdown was tried');
    assert.equal(summary.engine, 'streaming');
    assert.match(
      summary.engine_reasons[0] ?? '',
      /^DuckDB stopped \(.+\); the streaming engine sends failing records/,
    );
    assert.deepEqual(summary.records, { read: 3, written: 2, filtered: 0, failed: 1, skipped: 0 });
    assert.equal(summary.restart_from, 'checkpoint');
  });
});
