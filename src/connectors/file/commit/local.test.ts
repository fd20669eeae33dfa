import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { testContext } from '../../../sdk/testing.ts';
import type { RecordValue, SluiceRecord } from '../../../sdk/types.ts';
import { PartWriter } from '../part-writer.ts';
import { fileSinkConfig } from '../sink-definition.ts';
import { listFiles, makeTempDir } from '../test-util.ts';
import { OutputList } from './committer.ts';
import { type CommitToken, LocalCommitter } from './local.ts';

type Fields = Record<string, unknown>;
/** The csv and parquet defaults, as a validated config has them. */
const defaults = fileSinkConfig.parse({ path: 'out/', format: 'jsonl' });

let root: string;
before(async () => {
  root = await makeTempDir('sluice-local-committer-');
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** A part writer of one-record JSON Lines parts in `dir`, and its local committer. */
function localSink(dir: string, runId: string, logged: Fields[] = []) {
  const writer = new PartWriter({
    root: dir,
    single: false,
    format: 'jsonl',
    compression: 'none',
    tsv: false,
    csv: defaults.csv,
    parquet: defaults.parquet,
    maxRecords: 1,
    maxBytes: Number.POSITIVE_INFINITY,
    partitioned: false,
    runId,
    nameTaken: async () => false,
    aborted: () => false,
  });
  const logger = {
    ...testContext().logger,
    info: (_message: string, fields?: Fields) => logged.push(fields ?? {}),
  };
  const outputs = new OutputList();
  return { writer, outputs, committer: new LocalCommitter(writer, dir, runId, outputs, logger) };
}

const records = (ids: number[]): SluiceRecord[] =>
  ids.map((id) => ({ value: { id } as RecordValue, meta: {} }));

describe('local committer', () => {
  it('a crash between two renames: a new committer renames the rest, keeps the renamed one, and again is harmless', async () => {
    const dir = path.join(root, 'crash');
    const killed = localSink(dir, 'job-1');
    await killed.writer.write('', records([1, 2, 3]), undefined, []);
    const token = JSON.parse(JSON.stringify(await killed.committer.prepare())) as CommitToken;
    assert.equal(token.files.length, 3);
    // The killed attempt had renamed the first file when it died, and written a part after the checkpoint.
    await fs.rename(token.files[0]!.temp, token.files[0]!.final);
    await killed.writer.write('', records([4]), undefined, []);

    const logged: Fields[] = [];
    const resumed = localSink(dir, 'job-1', logged);
    await resumed.committer.commitPrepared(token, true);
    await resumed.committer.commitPrepared(token, true);
    assert.deepEqual(await listFiles(dir), [
      'part-job-1-00001.jsonl',
      'part-job-1-00002.jsonl',
      'part-job-1-00003.jsonl',
    ]);
    assert.deepEqual(
      resumed.outputs.list(),
      token.files.map((f) => f.final),
    );
    assert.equal(await fs.readFile(token.files[1]!.final, 'utf8'), '{"id":2}\n');
    assert.deepEqual(
      logged.map((f) => f.removed_temporary_files),
      [1, 0],
      'the post-checkpoint part is deleted once',
    );
  });

  it('publish() renames the prepared parts, then the finished ones, each once', async () => {
    const dir = path.join(root, 'publish');
    const { writer, committer, outputs } = localSink(dir, 'run1');
    await writer.write('', records([1]), undefined, []);
    await committer.prepare();
    await writer.write('', records([2]), undefined, []);
    await committer.publish();
    await committer.publish();
    assert.deepEqual(await listFiles(dir), ['part-run1-00001.jsonl', 'part-run1-00002.jsonl']);
    assert.deepEqual(
      outputs.list().map((f) => path.basename(f)),
      ['part-run1-00001.jsonl', 'part-run1-00002.jsonl'],
    );
  });
});
