/** Helpers for tests that run pipelines: in-process runs whose counts are checked, and runs killed for real. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { defaultRegistry } from '../registry.ts';
import { loadPipeline } from '../spec/validate.ts';
import { planPushdown } from './pushdown.ts';
import { PushdownRun } from './pushdown-run.ts';
import { PipelineRun, type RunSummary } from './run.ts';
import { countProblems } from './stats.ts';

/** Fails when the run's counts do not add up (see countProblems): every run a test makes should pass this. */
export function assertCountsAddUp(summary: RunSummary): void {
  assert.deepEqual(countProblems(summary), [], `the counts of run ${summary.run_id} do not add up`);
}

/** A PipelineRun whose summary's counts are checked when it ends: what tests construct instead. */
export class CheckedRun extends PipelineRun {
  override async run(): Promise<RunSummary> {
    const summary = await super.run();
    assertCountsAddUp(summary);
    return summary;
  }
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Runs `dir/pipeline.yaml` (written from `text`) in this process the way `sluice run` does: as
 * one DuckDB COPY when `pushdown` is auto and the plan allows it (the streaming engine when DuckDB
 * gives up), else on the streaming engine. The summary's counts are checked before it is returned.
 */
export async function runSpec(
  dir: string,
  text: string,
  options: { pushdown: 'auto' | 'off'; runId?: string } = { pushdown: 'off' },
): Promise<RunSummary> {
  const file = path.join(dir, 'pipeline.yaml');
  await writeFile(file, text);
  const pipeline = await loadPipeline({ file, text, registry: defaultRegistry() });
  const runId = options.runId ?? 'run-1';
  const runDir = path.join(dir, '.sluice', runId);
  const plan = await planPushdown(pipeline, { pushdown: options.pushdown });
  let summary: RunSummary | undefined;
  if (plan.eligible) {
    const outcome = await new PushdownRun({ pipeline, plan, runId, runDir, logger: silent }).run();
    if (outcome.kind === 'done') summary = outcome.summary;
  }
  summary ??= await new CheckedRun({ pipeline, runId, runDir, logger: silent }).run();
  assertCountsAddUp(summary);
  return summary;
}

/** Runs a TypeScript script in a child process and asserts that it ended by SIGKILL (it kills itself). */
export async function runUntilKilled(script: string, env: Record<string, string> = {}): Promise<void> {
  const child = spawn(process.execPath, [script], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  assert.equal(signal, 'SIGKILL', `the job was not killed: exit ${code}, ${stderr}`);
}

/**
 * Writes `kill.ts` into `dir`: a `script` step (`- script: { module: kill.ts }`) that SIGKILLs its
 * own process once a batch holds a record whose `id` reaches SLUICE_TEST_KILL_AT. With
 * SLUICE_TEST_KILL_AFTER_SAVE (a checkpoint file, or any file the run writes), it waits from
 * there until this process has written that file and it has content, so the next run has a
 * checkpoint of this one to resume from (or the test something to look at). Without
 * SLUICE_TEST_KILL_AT it passes every record through.
 */
export async function writeKillStep(dir: string): Promise<void> {
  const sdk = JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '../sdk/index.ts')).href);
  await writeFile(
    path.join(dir, 'kill.ts'),
    `import { defineStep, z } from ${sdk};
import { statSync } from 'node:fs';
const at = Number(process.env.SLUICE_TEST_KILL_AT ?? Number.POSITIVE_INFINITY);
const saved = process.env.SLUICE_TEST_KILL_AFTER_SAVE;
const started = Date.now();
const savedByUs = () => {
  if (!saved) return true;
  const stat = statSync(saved, { throwIfNoEntry: false });
  return !!stat && stat.size > 0 && stat.mtimeMs >= started;
};
export default defineStep({
  name: 'kill-at',
  summary: 'Kills its own process once a record id reaches SLUICE_TEST_KILL_AT (tests only).',
  config: z.object({}).strict(),
  examples: [],
  create: () => ({
    process(batch) {
      if (batch.some((r) => r.value.id >= at) && savedByUs()) process.kill(process.pid, 'SIGKILL');
      return { records: batch };
    },
  }),
});
`,
  );
}

/**
 * Runs `dir/pipeline.yaml` (run id job-1, run directory `dir/run1`) in a child process that saves
 * its checkpoints to the store `openCheckpointStore(store.location, store.key)` opens (a folder,
 * s3:// or postgres://) and SIGKILLs itself inside checkpoint number `at`: before saving it (the
 * sinks have committed or prepared) or after. `env` is added to the child's environment.
 */
export async function killedInCheckpoint(
  dir: string,
  o: {
    store: { location: string; key: string };
    at: number;
    when: 'before-save' | 'after-save';
    env?: Record<string, string>;
  },
): Promise<void> {
  const url = (p: string) => JSON.stringify(pathToFileURL(path.resolve(import.meta.dirname, '..', p)).href);
  const script = path.join(dir, 'job.ts');
  await writeFile(
    script,
    `import { PipelineRun } from ${url('engine/run.ts')};
import { defaultRegistry, openCheckpointStore } from ${url('registry.ts')};
import { loadPipeline } from ${url('spec/validate.ts')};
const dir = ${JSON.stringify(dir)};
const store = await openCheckpointStore(${JSON.stringify(o.store.location)}, ${JSON.stringify(o.store.key)});
const pipeline = await loadPipeline({ file: dir + '/pipeline.yaml', registry: defaultRegistry() });
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const kill = () => process.kill(process.pid, 'SIGKILL');
let n = 0;
const run = new PipelineRun({
  pipeline, runId: 'job-1', runDir: dir + '/run1', logger: silent,
  onCheckpoint: async (positions, final, pending) => {
    const here = ++n === ${o.at};
    if (here && ${JSON.stringify(o.when)} === 'before-save') kill();
    await store.save({ pipeline: 'job', run_id: 'job-1', positions, pending, final, saved_at: new Date().toISOString(), records: { read: 0, written: 0, failed: 0 } });
    if (here) kill();
  },
});
await run.run();
`,
  );
  await runUntilKilled(script, o.env);
}
