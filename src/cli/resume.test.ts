/** `sluice run` after a kill: it resumes from the checkpoint the killed run left, or not when told. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readJsonLines } from '../server/test-util.ts';
import { EXIT } from './exit-codes.ts';
import { assertIdsOnce, resumableSpec, runAndKillAfterCheckpoint, sluice } from './test-util.ts';

const COUNT = 16_000;

const spec = (name: string) => resumableSpec(name, COUNT);

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-resume-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs the pipeline and SIGKILLs it once a mid-run checkpoint is on disk. */
function runAndKill(name: string): Promise<void> {
  const checkpoint = path.join(work, '.sluice/checkpoints', name, 'checkpoint.json');
  return runAndKillAfterCheckpoint(work, name, async () =>
    existsSync(checkpoint) ? JSON.parse(await readFile(checkpoint, 'utf8')) : undefined,
  );
}

const assertEachOnce = (rows: Record<string, unknown>[], copies = 1) => assertIdsOnce(rows, COUNT, copies);

describe('sluice run resumes', () => {
  it('from the checkpoint of a killed run, writing every record once; the next run starts over', async () => {
    await writeFile(path.join(work, 'resumed.yaml'), spec('resumed'));
    await runAndKill('resumed');
    const resumed = await sluice(['run', 'resumed.yaml', '--progress', 'none', '--json'], work);
    assert.equal(resumed.code, EXIT.ok, resumed.stderr);
    assert.match(resumed.stderr, /resuming from the checkpoint of run resumed-/);
    const summary = JSON.parse(resumed.stdout) as { resumed_from: Record<string, number> | null };
    assert.ok((summary.resumed_from?.generate ?? 0) > 2000);
    assertEachOnce(await readJsonLines(path.join(work, 'out/resumed')));

    const again = await sluice(['run', 'resumed.yaml', '--progress', 'none'], work);
    assert.equal(again.code, EXIT.ok, again.stderr);
    assert.doesNotMatch(again.stderr, /resuming/, 'a finished run leaves nothing to resume');
    assertEachOnce(await readJsonLines(path.join(work, 'out/resumed')), 2);
  });

  it('from scratch when asked, ignoring the killed run’s checkpoint', async () => {
    await writeFile(path.join(work, 'fresh.yaml'), spec('fresh'));
    await runAndKill('fresh');
    const fresh = await sluice(['run', 'fresh.yaml', '--progress', 'none', '--from-scratch', '--json'], work);
    assert.equal(fresh.code, EXIT.ok, fresh.stderr);
    assert.doesNotMatch(fresh.stderr, /resuming/);
    const summary = JSON.parse(fresh.stdout) as { resumed_from: unknown; records: { read: number } };
    assert.equal(summary.resumed_from, null);
    assert.equal(summary.records.read, COUNT);
  });
});
