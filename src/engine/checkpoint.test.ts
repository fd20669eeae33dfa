import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { defaultRegistry } from '../registry.ts';
import { SluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import { loadPipeline } from '../spec/validate.ts';
import { type Checkpoint, FileCheckpointStore } from './checkpoint-store.ts';
import type { PipelineRun, RunOptions } from './run.ts';
import { CheckedRun, runUntilKilled, writeKillStep } from './test-util.ts';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-checkpoint-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let dirs = 0;
async function freshDir(name: string): Promise<string> {
  const dir = path.join(work, `${++dirs}-${name}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A generate → JSON Lines part files pipeline; random fields show that a resumed record keeps its value. */
function generateSpec(count: number, settings = 'batch_size: 100, checkpoint_interval: 0ms'): string {
  return `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: resumable }
source:
  generate:
    count: ${count}
    seed: 7
    fields: { id: seq, v: "int(1, 1000000)", s: "string(1, 8) | null(0.2)" }
sinks:
  - file: { path: out/, format: jsonl }
settings: { ${settings} }
`;
}

async function load(dir: string, text: string) {
  const file = path.join(dir, 'pipeline.yaml');
  await writeFile(file, text);
  return loadPipeline({ file, text, registry: defaultRegistry() });
}

type Extra = Partial<Pick<RunOptions, 'resume' | 'onCheckpoint' | 'logger' | 'runId' | 'runDir'>>;

async function start(dir: string, text: string, extra: Extra = {}): Promise<PipelineRun> {
  return new CheckedRun({
    pipeline: await load(dir, text),
    runId: 'job-1',
    runDir: path.join(dir, 'run'),
    logger: silent,
    ...extra,
  });
}

/** Saves what the engine reports into `store`, like a job runner would. */
function saving(store: FileCheckpointStore, onSaved?: (cp: Checkpoint) => void): RunOptions['onCheckpoint'] {
  return async (positions, final, pending) => {
    const cp: Checkpoint = {
      pipeline: 'resumable',
      run_id: 'job-1',
      positions,
      pending,
      saved_at: new Date().toISOString(),
      final,
      records: { read: 0, written: 0, failed: 0 },
    };
    await store.save(cp);
    onSaved?.(cp);
  };
}

/** The committed part files of `out/`: hidden temporary files of an interrupted run are not output. */
async function committedFiles(dir: string): Promise<string[]> {
  const names = await readdir(path.join(dir, 'out')).catch(() => []);
  return names.filter((n) => n.startsWith('part-') && n.endsWith('.jsonl')).sort();
}

/** The lines of the committed JSON Lines part files in `folder`. */
async function partFileLines(folder: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  const names = await readdir(folder).catch(() => []);
  for (const name of names.filter((n) => n.startsWith('part-') && n.endsWith('.jsonl'))) {
    const text = await readFile(path.join(folder, name), 'utf8');
    for (const line of text.split('\n')) if (line) rows.push(JSON.parse(line));
  }
  return rows;
}

async function committedRows(dir: string): Promise<Record<string, unknown>[]> {
  const rows = await partFileLines(path.join(dir, 'out'));
  return rows.sort((a, b) => (a.id as number) - (b.id as number));
}

/** The ids of the records in the error records a run's default errors sink committed (in `errors/`). */
async function committedErrorIds(runDir: string): Promise<number[]> {
  const errors = await partFileLines(path.join(runDir, 'errors'));
  return errors.map((e) => (e.record as { id: number }).id).sort((a, b) => a - b);
}

/** Hidden temporary files left anywhere under `dir`. */
async function temporaryFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('.inprogress')).sort();
}

/** How many times each id occurs. */
function idCounts(rows: Record<string, unknown>[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const r of rows) counts.set(r.id as number, (counts.get(r.id as number) ?? 0) + 1);
  return counts;
}

function assertEveryIdOnce(rows: Record<string, unknown>[], total: number): void {
  const counts = idCounts(rows);
  const missing = [];
  const doubled = [];
  for (let id = 1; id <= total; id++) {
    const n = counts.get(id) ?? 0;
    if (n === 0) missing.push(id);
    if (n > 1) doubled.push(id);
  }
  assert.deepEqual(
    { missing: missing.slice(0, 10), doubled: doubled.slice(0, 10) },
    { missing: [], doubled: [] },
  );
  assert.equal(rows.length, total);
}

/** Row by row, naming the first difference (a deepEqual diff of 20000 rows takes minutes). */
function assertSameRows(actual: Record<string, unknown>[], expected: Record<string, unknown>[]): void {
  assert.equal(actual.length, expected.length);
  const i = actual.findIndex((row, j) => JSON.stringify(row) !== JSON.stringify(expected[j]));
  if (i >= 0) assert.fail(`row ${i}: ${JSON.stringify(actual[i])}, expected ${JSON.stringify(expected[i])}`);
}

/** The rows of an uninterrupted run: what a resumed run must add up to, value for value. */
let fresh: Record<string, unknown>[] | undefined;
async function freshRows(): Promise<Record<string, unknown>[]> {
  if (!fresh) {
    const dir = await freshDir('fresh');
    const summary = await (await start(dir, generateSpec(20_000, 'batch_size: 1000'))).run();
    assert.equal(summary.status, 'succeeded');
    fresh = await committedRows(dir);
  }
  return fresh;
}

describe('FileCheckpointStore', () => {
  const cp: Checkpoint = {
    pipeline: 'p',
    run_id: 'p-1',
    positions: { 'data/a.csv': 120, 'data/b.csv': 7 },
    saved_at: '2026-01-02T03:04:05.000Z',
    final: false,
    records: { read: 127, written: 120, failed: 7 },
  };

  it('loads nothing before the first save, then exactly what was saved; clear removes it', async () => {
    const dir = path.join(await freshDir('store'), 'not', 'yet', 'there');
    const store = new FileCheckpointStore(dir);
    assert.equal(await store.load(), undefined);
    await store.save(cp);
    assert.deepEqual(await store.load(), cp);
    const next = { ...cp, positions: { 'data/a.csv': 500 }, final: true };
    await store.save(next);
    assert.deepEqual(await store.load(), next);
    assert.deepEqual(await readdir(dir), ['checkpoint.json'], 'no temporary file is left behind');
    await store.clear();
    assert.equal(await store.load(), undefined);
    await store.clear();
  });

  it('replaces the file by rename, so a crash mid-save leaves the previous checkpoint whole', async () => {
    const dir = await freshDir('store-crash');
    const store = new FileCheckpointStore(dir);
    await store.save(cp);
    // What a process killed while writing leaves: a half-written temporary file beside the real one.
    await writeFile(path.join(dir, 'checkpoint.json.tmp-0badc0ffee00'), '{"pipeline": "p", "posi');
    assert.deepEqual(await store.load(), cp);
    await store.clear();
    assert.deepEqual(await readdir(dir), [], 'clear removes leftover temporary files too');
  });

  it('refuses a corrupt file with SLUICE_CHECKPOINT, naming the file', async () => {
    const dir = await freshDir('store-corrupt');
    const store = new FileCheckpointStore(dir);
    const file = path.join(dir, 'checkpoint.json');
    for (const [text, why] of [
      ['{"pipeline": "p", "positions": {', /not valid JSON/],
      [JSON.stringify({ ...cp, positions: { 'a.csv': 'twelve' } }), /positions\.a\.csv: .*number/],
      ['[]', /expected object/],
    ] as const) {
      await writeFile(file, text);
      await assert.rejects(store.load(), (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, 'SLUICE_CHECKPOINT');
        assert.ok(err.message.includes(file), err.message);
        assert.match(err.message, why);
        return true;
      });
    }
  });
});

describe('resuming a run from its checkpoint', () => {
  it('after an abort, resumes where the last checkpoint was: every record exactly once, same values', async () => {
    const dir = await freshDir('abort');
    const store = new FileCheckpointStore(path.join(dir, 'state'));
    let saves = 0;
    // Aborting inside the third save stops the run just after it, with later output uncommitted.
    let first: PipelineRun | undefined;
    first = await start(dir, generateSpec(20_000), {
      onCheckpoint: saving(store, () => {
        if (++saves === 3) first?.abort();
      }),
    });
    const stopped = await first.run();
    assert.equal(stopped.status, 'interrupted');
    assert.equal(stopped.failure?.code, 'SLUICE_INTERRUPTED');
    const cp = await store.load();
    assert.ok(cp && !cp.final);
    const at = cp.positions.generate;
    assert.ok(at !== undefined && at > 0 && at < 20_000, `checkpoint at ${at}`);
    assert.equal(stopped.positions.generate, at, 'the summary and the checkpoint agree');
    const before = await committedRows(dir);
    assert.deepEqual(
      before.map((r) => r.id),
      Array.from({ length: at }, (_, i) => i + 1),
      'the committed output is exactly the records up to the checkpoint',
    );

    const calls: [Record<string, number>, boolean][] = [];
    const resumed = await (
      await start(dir, generateSpec(20_000), {
        resume: cp,
        onCheckpoint: async (positions, final) => {
          calls.push([positions, final]);
        },
      })
    ).run();
    assert.equal(resumed.status, 'succeeded');
    assert.deepEqual(resumed.resumed_from, { generate: at });
    // generate seeks past the committed records itself, so the engine has none to skip.
    assert.equal(resumed.records.skipped, 0);
    assert.equal(resumed.records.read, 20_000 - at);
    assert.equal(resumed.records.written, 20_000 - at);
    assert.equal(resumed.input_fraction, 1);
    assert.deepEqual(resumed.positions, { generate: 20_000 });
    assert.deepEqual(calls.at(-1), [{ generate: 20_000 }, true]);
    assert.ok(calls.slice(0, -1).every(([, final]) => !final));

    const rows = await committedRows(dir);
    assertEveryIdOnce(rows, 20_000);
    // A resumed record has the value it has in a fresh run.
    assertSameRows(rows, await freshRows());
  });

  it('a graceful stop saves the committed positions as a checkpoint that is not final', async () => {
    const dir = await freshDir('stop');
    const calls: [Record<string, number>, boolean][] = [];
    let run: PipelineRun | undefined;
    run = await start(dir, generateSpec(20_000), {
      onCheckpoint: async (positions, final) => {
        calls.push([positions, final]);
        if (calls.length === 2) run?.stop();
      },
    });
    const stopped = await run.run();
    assert.equal(stopped.status, 'interrupted');
    const [positions, final] = calls.at(-1)!;
    assert.equal(final, false);
    assert.deepEqual(positions, stopped.positions);
    const at = positions.generate!;
    assert.ok(at < 20_000);
    assert.deepEqual(
      (await committedRows(dir)).map((r) => r.id),
      Array.from({ length: at }, (_, i) => i + 1),
      'what was read before the stop was drained and committed, up to the saved positions',
    );
    const resumed = await (await start(dir, generateSpec(20_000), { resume: { positions } })).run();
    assert.equal(resumed.status, 'succeeded');
    assertEveryIdOnce(await committedRows(dir), 20_000);
  });

  it('when the checkpoint save fails, the run fails, the prepared files are never published and a resume writes each record once', async () => {
    const dir = await freshDir('save-fails');
    const store = new FileCheckpointStore(path.join(dir, 'state'));
    const seen: Record<string, number>[] = [];
    let hidden: string[] = [];
    const first = await start(dir, generateSpec(20_000), {
      onCheckpoint: async (positions, final, pending) => {
        seen.push(positions);
        if (seen.length === 3) {
          hidden = await temporaryFiles(path.join(dir, 'out'));
          throw new Error('disk full');
        }
        await saving(store)!(positions, final, pending);
      },
    });
    const failed = await first.run();
    assert.equal(failed.status, 'failed');
    assert.equal(failed.failure?.code, 'SLUICE_CHECKPOINT');
    assert.match(failed.failure?.message ?? '', /disk full/);
    const cp = await store.load();
    const saved = cp?.positions.generate;
    const unsaved = seen[2]?.generate;
    assert.ok(cp && saved !== undefined && unsaved !== undefined && saved < unsaved);
    assert.equal(hidden.length, 1, 'the third checkpoint had prepared one part file when its save failed');
    assert.deepEqual(
      (await committedRows(dir)).map((r) => r.id),
      Array.from({ length: saved }, (_, i) => i + 1),
      'what the failed save covered was not published',
    );
    assert.deepEqual(
      await temporaryFiles(path.join(dir, 'out')),
      hidden,
      'abort() left the prepared file: a saved checkpoint could have named it',
    );

    const resumed = await (await start(dir, generateSpec(20_000), { resume: cp })).run();
    assert.equal(resumed.status, 'succeeded');
    assertEveryIdOnce(await committedRows(dir), 20_000);
    assert.deepEqual(
      await temporaryFiles(path.join(dir, 'out')),
      [],
      'the resume removed the unsaved prepared file',
    );
  });

  it('skips what was committed for a source that does not seek, rejections included', async () => {
    const dir = await freshDir('file-source');
    const lines = Array.from({ length: 1000 }, (_, i) =>
      i + 1 === 100 || i + 1 === 700 ? '{"id": broken' : JSON.stringify({ id: i + 1 }),
    );
    await writeFile(path.join(dir, 'in.jsonl'), `${lines.join('\n')}\n`);
    const spec = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: from-file }
source: { file: { path: in.jsonl } }
sinks:
  - file: { path: out/, format: jsonl }
`;
    const full = await (await start(dir, spec)).run();
    assert.equal(full.status, 'succeeded');
    const [partition, last] = Object.entries(full.positions)[0]!;
    assert.equal(last, 1000);
    await rm(path.join(dir, 'out'), { recursive: true });
    await rm(path.join(dir, 'run'), { recursive: true });

    const resumed = await (await start(dir, spec, { resume: { positions: { [partition]: 500 } } })).run();
    assert.equal(resumed.status, 'succeeded');
    // Lines 1..500: 499 records and the broken line 100.
    assert.deepEqual(resumed.records, { read: 500, written: 499, filtered: 0, failed: 1, skipped: 500 });
    const source = resumed.operators.find((o) => o.kind === 'source');
    assert.deepEqual([source?.in, source?.out, source?.failed], [500, 499, 1]);
    assert.deepEqual(resumed.errors.by_code, { SLUICE_DECODE: 1 });
    const errors = await partFileLines(path.join(dir, 'run', 'errors'));
    assert.equal(errors.length, 1);
    assert.equal(
      (errors[0]!.position as { offset: number }).offset,
      700,
      'the broken line before the checkpoint is not reported again',
    );
    assert.deepEqual(
      (await committedRows(dir)).map((r) => r.id),
      Array.from({ length: 500 }, (_, i) => i + 501).filter((id) => id !== 700),
    );
  });

  it('a resume where everything was committed writes nothing new and reports the same positions', async () => {
    const dir = await freshDir('all-done');
    const finals: Record<string, number>[] = [];
    const full = await (
      await start(dir, generateSpec(5000), {
        onCheckpoint: async (positions, final) => {
          if (final) finals.push(positions);
        },
      })
    ).run();
    assert.equal(full.status, 'succeeded');
    assert.deepEqual([...finals], [{ generate: 5000 }]);
    const files = await committedFiles(dir);

    const again = await (
      await start(dir, generateSpec(5000), {
        resume: { positions: finals[0]! },
        onCheckpoint: async (positions, final) => {
          if (final) finals.push(positions);
        },
      })
    ).run();
    assert.equal(again.status, 'succeeded');
    assert.deepEqual(again.records, { read: 0, written: 0, filtered: 0, failed: 0, skipped: 0 });
    assert.deepEqual(again.outputs, { file: [] });
    assert.deepEqual(again.positions, { generate: 5000 });
    assert.deepEqual(again.resumed_from, { generate: 5000 });
    assert.deepEqual(finals[1], { generate: 5000 }, 'the final checkpoint keeps the resumed positions');
    assert.deepEqual(await committedFiles(dir), files, 'no file was added');
  });

  it('refuses a checkpoint naming prepared output of a sink the pipeline does not have, reading nothing', async () => {
    const dir = await freshDir('pending-unknown-sink');
    const summary = await (
      await start(dir, generateSpec(1000), {
        resume: { positions: { generate: 500 }, pending: { sinks: { gone: { files: [] } } } },
      })
    ).run();
    assert.equal(summary.status, 'failed');
    assert.equal(summary.failure?.code, 'SLUICE_CHECKPOINT');
    assert.match(summary.failure?.message ?? '', /prepared by sink gone, which this pipeline no longer has/);
    assert.equal(summary.records.read, 0);
    assert.deepEqual(await committedFiles(dir), []);
  });

  it('a step that holds records until the input ends ignores resume, with a warning, and checkpoints only at the end', async () => {
    const dir = await freshDir('set-level');
    const spec = `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: totals }
source:
  generate: { count: 3000, fields: { id: seq, k: "pick(a, b, c)" } }
steps:
  - name: totals
    sql: SELECT k, count(*) AS n FROM input GROUP BY k ORDER BY k
sinks:
  - file: { path: out/, format: jsonl }
settings: { batch_size: 100, checkpoint_interval: 0ms }
`;
    const warnings: string[] = [];
    const calls: [Record<string, number>, boolean][] = [];
    const summary = await (
      await start(dir, spec, {
        resume: { positions: { generate: 1500 } },
        logger: { ...silent, warn: (msg) => warnings.push(msg) },
        onCheckpoint: async (positions, final) => {
          calls.push([positions, final]);
        },
      })
    ).run();
    assert.equal(summary.status, 'succeeded');
    assert.ok(
      warnings.some((w) =>
        /starts from scratch because step totals holds records until the input ends/.test(w),
      ),
      warnings.join('\n'),
    );
    assert.equal(summary.resumed_from, null);
    assert.equal(summary.records.read, 3000);
    assert.equal(summary.records.skipped, 0);
    assert.ok(summary.checkpoints.count > 1, 'the barriers still commit');
    assert.deepEqual(calls, [[{ generate: 3000 }, true]]);
    const rows = await committedRows(dir);
    assert.equal(
      rows.reduce((n, r) => n + (r.n as number), 0),
      3000,
    );
  });
});

describe('resuming after SIGKILL', () => {
  /** Ids the validate step rejects: they become error records. */
  const rejected = (id: number) => id % 50 === 0;
  /** The first records of generateSpec: a record's value does not depend on the count. */
  const COUNT = 6000;

  /** generateSpec's records, with every 50th rejected into the errors sink and 2 part files a checkpoint. */
  const killSpec = (interval: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: resumable }
source:
  generate:
    count: ${COUNT}
    seed: 7
    fields: { id: seq, v: "int(1, 1000000)", s: "string(1, 8) | null(0.2)" }
steps:
  - validate:
      schema: { type: object, properties: { id: { not: { multipleOf: 50 } } } }
sinks:
  - file: { path: out/, format: jsonl, roll: { max_records: 50 } }
settings: { batch_size: 100, checkpoint_interval: ${interval} }
`;
  /** The final checkpoint is the only one: it covers every record. */
  const intervalFor = (at: KillPoint) => (at === 'final-after-save' ? '1h' : '0ms');

  /**
   * Where a job process kills itself, inside its third checkpoint (or its final one):
   * - before-save: the sinks prepared their files, the checkpoint is not saved;
   * - after-save: the checkpoint is saved, nothing it names is renamed yet;
   * - mid-publish: saved, and killed just after the first rename into place;
   * - final-after-save: the final checkpoint is saved, nothing renamed.
   */
  type KillPoint = 'before-save' | 'after-save' | 'mid-publish' | 'final-after-save';

  /**
   * Runs the pipeline in a child process that saves checkpoints as a server's job process does and
   * SIGKILLs itself at `at`. Nothing runs after the signal: no abort, no cleanup, temporary files
   * stay where they are. Returns the positions of the checkpoint it was killed in.
   */
  async function killedJob(dir: string, at: KillPoint): Promise<Record<string, number>> {
    const script = path.join(dir, 'job.ts');
    const url = (p: string) => JSON.stringify(pathToFileURL(path.join(SRC, p)).href);
    await writeFile(
      script,
      `import { writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { FileCheckpointStore } from ${url('engine/checkpoint-store.ts')};
import { PipelineRun } from ${url('engine/run.ts')};
import { defaultRegistry } from ${url('registry.ts')};
import { loadPipeline } from ${url('spec/validate.ts')};

const dir = ${JSON.stringify(dir)};
const at = ${JSON.stringify(at)};
const store = new FileCheckpointStore(dir + '/state');
const pipeline = await loadPipeline({ file: dir + '/pipeline.yaml', registry: defaultRegistry() });
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const kill = () => process.kill(process.pid, 'SIGKILL');
// Armed once the checkpoint is saved: the next rename is the first file published into place.
let armed = false;
const rename = fsp.rename;
fsp.rename = async (from, to) => {
  await rename(from, to);
  if (armed) kill();
};
let n = 0;
const run = new PipelineRun({
  pipeline, runId: 'job-1', runDir: dir + '/run1', logger: silent,
  onCheckpoint: async (positions, final, pending) => {
    const here = at === 'final-after-save' ? final : ++n === 3;
    if (here) writeFileSync(dir + '/killed-at.json', JSON.stringify(positions));
    if (here && at === 'before-save') kill();
    await store.save({ pipeline: 'resumable', run_id: 'job-1', positions, pending, final, saved_at: new Date().toISOString(), records: { read: 0, written: 0, failed: 0 } });
    if (here && (at === 'after-save' || at === 'final-after-save')) kill();
    if (here && at === 'mid-publish') armed = true;
  },
});
await run.run();
`,
    );
    await writeFile(path.join(dir, 'pipeline.yaml'), killSpec(intervalFor(at)));
    await runUntilKilled(script);
    return JSON.parse(await readFile(path.join(dir, 'killed-at.json'), 'utf8'));
  }

  /** How many of the files the checkpoint's tokens name (data and errors sinks) are still hidden, and how many in place. */
  async function pendingState(cp: Checkpoint): Promise<{ hidden: number; published: number }> {
    type Token = { files: { temp: string; final: string }[] };
    const tokens = [cp.pending?.sinks.file, cp.pending?.errors] as (Token | undefined)[];
    assert.ok(tokens[0] && tokens[1], 'the checkpoint holds the data and errors sink tokens');
    const there = (p: string) =>
      readFile(p).then(
        () => true,
        () => false,
      );
    let hidden = 0;
    let published = 0;
    for (const f of tokens.flatMap((t) => t!.files)) {
      if (await there(f.temp)) hidden++;
      if (await there(f.final)) published++;
    }
    return { hidden, published };
  }

  /**
   * Kills a job at `at`, checks what the kill left, resumes it as the next attempt (another run id
   * and run directory, as a server restarts a job) and checks that every record and every error
   * record is committed exactly once, and that no temporary file is left.
   */
  async function killAndResume(
    at: KillPoint,
    leftByKill: (cp: Checkpoint, killedAt: number, dir: string) => Promise<void>,
  ): Promise<void> {
    const dir = await freshDir(`sigkill-${at}`);
    const killedAt = (await killedJob(dir, at)).generate!;
    const cp = await new FileCheckpointStore(path.join(dir, 'state')).load();
    const saved = cp?.positions.generate;
    assert.ok(cp && saved !== undefined && saved > 0, `checkpoint: ${JSON.stringify(cp)}`);
    await leftByKill(cp, killedAt, dir);

    const summary = await (
      await start(dir, killSpec(intervalFor(at)), {
        resume: cp,
        runId: 'job-1-a2',
        runDir: path.join(dir, 'run2'),
      })
    ).run();
    assert.equal(summary.status, 'succeeded', summary.failure?.message);
    assert.deepEqual(summary.resumed_from, { generate: saved });
    assert.equal(summary.records.read, COUNT - saved);

    const rows = await committedRows(dir);
    assertSameRows(
      rows,
      (await freshRows()).filter((r) => (r.id as number) <= COUNT && !rejected(r.id as number)),
    );
    const expectedErrors = Array.from({ length: COUNT }, (_, i) => i + 1).filter(rejected);
    const killedErrors = await committedErrorIds(path.join(dir, 'run1'));
    const resumedErrors = await committedErrorIds(path.join(dir, 'run2'));
    assert.deepEqual([...killedErrors, ...resumedErrors], expectedErrors, 'every error record once');
    assert.deepEqual(
      killedErrors,
      expectedErrors.filter((id) => id <= saved),
      'the killed attempt kept the error records its checkpoints covered',
    );
    assert.deepEqual(await temporaryFiles(dir), [], 'no temporary file is left');
  }

  it('killed before the checkpoint is saved: the prepared files are never published; each record once', async () => {
    await killAndResume('before-save', async (cp, killedAt, dir) => {
      const saved = cp.positions.generate!;
      assert.ok(saved < killedAt);
      assert.deepEqual(
        (await committedRows(dir)).map((r) => r.id as number),
        Array.from({ length: saved }, (_, i) => i + 1).filter((id) => !rejected(id)),
        'only what the saved checkpoint covers is in place',
      );
      assert.ok((await temporaryFiles(path.join(dir, 'out'))).length >= 2, 'the prepared files are hidden');
    });
  });

  it('killed after the save, before any rename: the resume publishes what the checkpoint names; each record once', async () => {
    await killAndResume('after-save', async (cp, killedAt) => {
      assert.equal(cp.positions.generate, killedAt);
      const state = await pendingState(cp);
      assert.ok(state.hidden >= 3 && state.published === 0, JSON.stringify(state));
    });
  });

  it('killed half-way through the renames: the resume completes them; each record once', async () => {
    await killAndResume('mid-publish', async (cp, killedAt) => {
      assert.equal(cp.positions.generate, killedAt);
      const state = await pendingState(cp);
      assert.ok(state.hidden >= 1 && state.published >= 1, JSON.stringify(state));
    });
  });

  it('killed after the final checkpoint is saved: the resume reads nothing and publishes the rest', async () => {
    await killAndResume('final-after-save', async (cp, killedAt) => {
      assert.equal(killedAt, COUNT);
      assert.equal(cp.final, true);
      const state = await pendingState(cp);
      assert.ok(state.hidden >= 1 && state.published === 0, JSON.stringify(state));
    });
  });
});

describe('a single-file sink, durable only when the run ends', () => {
  const COUNT = 6000;
  /** The validate step rejects these ids into the errors sink. */
  const rejected = (id: number) => id % 50 === 0;
  const expectedErrorIds = Array.from({ length: COUNT }, (_, i) => i + 1).filter(rejected);
  const expectedRows = async () =>
    (await freshRows()).filter((r) => (r.id as number) <= COUNT && !rejected(r.id as number));

  /**
   * generateSpec's records through validate (every 50th rejected) and a script step that SIGKILLs
   * its process once it sees the record SLUICE_TEST_KILL_AT (set only in the killed child).
   */
  const spec = (sinks: string, errors = '') => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: resumable }
source:
  generate:
    count: ${COUNT}
    seed: 7
    fields: { id: seq, v: "int(1, 1000000)", s: "string(1, 8) | null(0.2)" }
steps:
  - validate:
      schema: { type: object, properties: { id: { not: { multipleOf: 50 } } } }
  - script: { module: kill.ts }
sinks:
${sinks}
${errors}
settings: { batch_size: 100, checkpoint_interval: 0ms }
`;
  const singleFileSink = '  - file: out/result.jsonl';
  const partFileSink = '  - file: { path: out/, format: jsonl, roll: { max_records: 50 } }';
  const singleFileErrors = 'errors: { file: errors/all.jsonl }';

  /**
   * Runs the pipeline in a child process that saves checkpoints as a server's job process does
   * (logging each save to saves.jsonl) and is SIGKILLed once record `at` reaches the script step.
   */
  /**
   * `hidden`: a file the attempt writes, relative to `dir`; the kill waits until it has content,
   * so that the assertions about what a killed attempt leaves hold on a loaded machine too.
   */
  async function killedAtRecord(dir: string, text: string, at: number, hidden: string): Promise<void> {
    await writeKillStep(dir);
    await writeFile(path.join(dir, 'pipeline.yaml'), text);
    const script = path.join(dir, 'job.ts');
    const url = (p: string) => JSON.stringify(pathToFileURL(path.join(SRC, p)).href);
    await writeFile(
      script,
      `import { appendFileSync } from 'node:fs';
import { FileCheckpointStore } from ${url('engine/checkpoint-store.ts')};
import { PipelineRun } from ${url('engine/run.ts')};
import { defaultRegistry } from ${url('registry.ts')};
import { loadPipeline } from ${url('spec/validate.ts')};

const dir = ${JSON.stringify(dir)};
const store = new FileCheckpointStore(dir + '/state');
const pipeline = await loadPipeline({ file: dir + '/pipeline.yaml', registry: defaultRegistry() });
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const run = new PipelineRun({
  pipeline, runId: 'job-1', runDir: dir + '/run1', logger: silent,
  onCheckpoint: async (positions, final, pending) => {
    appendFileSync(dir + '/saves.jsonl', JSON.stringify({ positions, final }) + '\\n');
    await store.save({ pipeline: 'resumable', run_id: 'job-1', positions, pending, final, saved_at: new Date().toISOString(), records: { read: 0, written: 0, failed: 0 } });
  },
});
await run.run();
`,
    );
    await runUntilKilled(script, {
      SLUICE_TEST_KILL_AT: String(at),
      SLUICE_TEST_KILL_AFTER_SAVE: path.join(dir, hidden),
    });
  }

  /** Restarts the killed job as a server does: its checkpoint if it saved one, another run id and run directory. */
  async function restart(dir: string, text: string, logger: Logger = silent) {
    const cp = await new FileCheckpointStore(path.join(dir, 'state')).load();
    assert.equal(cp, undefined, 'the killed attempt saved no checkpoint');
    await writeKillStep(dir);
    return (await start(dir, text, { runId: 'job-1-a2', runDir: path.join(dir, 'run2'), logger })).run();
  }

  async function jsonLines(file: string): Promise<Record<string, unknown>[]> {
    const text = await readFile(file, 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  }

  const exists = (p: string) =>
    readFile(p).then(
      () => true,
      () => false,
    );

  it('killed mid-run: nothing is checkpointed or published; the restart writes every record once', async () => {
    const dir = await freshDir('single-file-kill');
    const text = spec(singleFileSink);
    await killedAtRecord(dir, text, 3000, 'out/.result.jsonl.job-1.inprogress');

    assert.equal(await exists(path.join(dir, 'saves.jsonl')), false, 'no checkpoint was saved mid-run');
    assert.equal(await exists(path.join(dir, 'out/result.jsonl')), false, 'no partial file is published');
    const hidden = path.join(dir, 'out/.result.jsonl.job-1.inprogress');
    assert.ok((await readFile(hidden)).length > 0, 'the killed attempt had written records, hidden');
    assert.deepEqual(await partFileLines(path.join(dir, 'run1/errors')), [], 'nor are its error records');

    const summary = await restart(dir, text);
    assert.equal(summary.status, 'succeeded', summary.failure?.message);
    assert.equal(summary.records.read, COUNT);
    assert.equal(summary.checkpoints.count, 0, 'the barriers commit nothing');
    const rows = await jsonLines(path.join(dir, 'out/result.jsonl'));
    assertSameRows(rows, await expectedRows());
    assert.deepEqual(await committedErrorIds(path.join(dir, 'run2')), expectedErrorIds);
    // The killed attempt's hidden files carry a run id the restart does not own: they are left alone.
    const left = await temporaryFiles(dir);
    assert.ok(left.includes('out/.result.jsonl.job-1.inprogress'), left.join(', '));
    assert.deepEqual(
      left.filter((f) => !/\.(result\.jsonl\.job-1|part-job-1-\d+\.jsonl)\.inprogress$/.test(f)),
      [],
      'the restart left no temporary file of its own',
    );
  });

  it('a single-file errors sink, killed mid-run: the part files beside it are not published either; every record and error record once', async () => {
    const dir = await freshDir('single-file-errors-kill');
    const text = spec(partFileSink, singleFileErrors);
    await killedAtRecord(dir, text, 3000, 'errors/.all.jsonl.job-1.inprogress');

    assert.equal(await exists(path.join(dir, 'saves.jsonl')), false, 'no checkpoint was saved mid-run');
    assert.equal(
      await exists(path.join(dir, 'errors/all.jsonl')),
      false,
      'no partial errors file is published',
    );
    assert.ok(
      (await readFile(path.join(dir, 'errors/.all.jsonl.job-1.inprogress'))).length > 0,
      'the killed attempt had written error records, hidden',
    );
    assert.deepEqual(
      await committedFiles(dir),
      [],
      'a restart from scratch writes them again: none is published',
    );
    assert.ok(
      (await temporaryFiles(path.join(dir, 'out'))).length > 0,
      'the killed attempt had written part files',
    );

    const summary = await restart(dir, text);
    assert.equal(summary.status, 'succeeded', summary.failure?.message);
    assert.equal(summary.records.read, COUNT);
    assertSameRows(await committedRows(dir), await expectedRows());
    const errors = await jsonLines(path.join(dir, 'errors/all.jsonl'));
    assert.deepEqual(
      errors.map((e) => (e.record as { id: number }).id),
      expectedErrorIds,
      'every error record once',
    );
  });

  it('a resume is ignored with a warning naming the sink, checkpoints only at the end, and writes everything', async () => {
    for (const [name, text, who, file] of [
      ['data', spec(singleFileSink), /sink file \(file\)/, 'out/result.jsonl'],
      ['errors', spec(partFileSink, singleFileErrors), /the errors sink \(file\)/, 'errors/all.jsonl'],
    ] as const) {
      const dir = await freshDir(`single-file-resume-${name}`);
      await writeKillStep(dir);
      // A checkpoint such a pipeline cannot have saved mid-run (an older version or another spec did).
      const resume = { positions: { generate: 3000 }, pending: { sinks: {} } };
      const warnings: string[] = [];
      const calls: [Record<string, number>, boolean][] = [];
      const summary = await (
        await start(dir, text, {
          resume,
          logger: { ...silent, warn: (msg) => warnings.push(msg) },
          onCheckpoint: async (positions, final) => {
            calls.push([positions, final]);
          },
        })
      ).run();
      assert.equal(summary.status, 'succeeded', summary.failure?.message);
      const warning = warnings.find((w) => w.startsWith('not resuming: the run starts from scratch because'));
      assert.ok(warning, warnings.join('\n'));
      assert.match(warning, who);
      assert.match(warning, /makes its output durable only when the run ends \(durableCommits: false\)/);
      assert.equal(summary.resumed_from, null);
      assert.equal(summary.records.read, COUNT);
      assert.equal(summary.records.skipped, 0);
      assert.deepEqual(calls, [[{ generate: COUNT }, true]], 'only the final checkpoint is saved');
      assert.ok((await jsonLines(path.join(dir, file))).length > 0);
      if (name === 'data') assertSameRows(await jsonLines(path.join(dir, file)), await expectedRows());
      else assertSameRows(await committedRows(dir), await expectedRows());
    }
  });
});
