/** `sluice run` after a kill: it resumes from the checkpoint the killed run left, or not when told. */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readJsonLines } from '../server/test-util.ts';
import { EXIT } from './exit-codes.ts';
import { sluice } from './test-util.ts';

const COUNT = 16_000;

const spec = (name: string) => `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: ${name} }
source:
  generate: { count: ${COUNT}, rate: 5000/s, seed: 9, fields: { id: seq, v: "int(1, 100)" } }
sink:
  file: { path: out/${name}/, format: jsonl }
settings: { batch_size: 250, checkpoint_interval: 200ms }
`;

let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-resume-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs the pipeline and SIGKILLs it once a mid-run checkpoint is on disk. */
async function runAndKill(name: string): Promise<void> {
  const checkpoint = path.join(work, '.sluice/checkpoints', name, 'checkpoint.json');
  let child: ChildProcess | undefined;
  const result = sluice(['run', `${name}.yaml`, '--progress', 'none'], work, (c) => {
    child = c;
  });
  for (let i = 0; i < 400; i++) {
    if (existsSync(checkpoint)) {
      const saved = JSON.parse(await readFile(checkpoint, 'utf8')) as { positions: Record<string, number> };
      if ((saved.positions.generate ?? 0) > 2000) break;
    }
    await sleep(25);
  }
  child!.kill('SIGKILL');
  const killed = await result;
  assert.equal(killed.code, null, 'the run was killed before it ended');
}

function assertEachOnce(rows: Record<string, unknown>[], copies = 1): void {
  const counts = new Map<number, number>();
  for (const r of rows) counts.set(Number(r.id), (counts.get(Number(r.id)) ?? 0) + 1);
  assert.equal(counts.size, COUNT, 'every record is there');
  for (const [id, n] of counts) if (n !== copies) assert.fail(`record ${id} is there ${n} times`);
}

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
