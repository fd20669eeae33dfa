/**
 * `sluice run --checkpoint-store` with the state in S3 (s3rver) and in PostgreSQL: a killed run's
 * checkpoint is found there and the next run resumes from it, writing every record once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { S3Connection } from '../connectors/s3/client.ts';
import { openCheckpointStore } from '../registry.ts';
import { readJsonLines } from '../server/test-util.ts';
import { EXIT } from './exit-codes.ts';
import { assertIdsOnce, resumableSpec, runAndKillAfterCheckpoint, sluice } from './test-util.ts';

const S3_ENDPOINT = process.env.SLUICE_TEST_S3_ENDPOINT ?? 'http://127.0.0.1:59000';
const PG_URL = process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://sluice@127.0.0.1:54329/sluice_test';
const COUNT = 16_000;
// s3rver's fixed keys; the child processes get them too.
process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
process.env.AWS_REGION ??= 'us-east-1';
process.env.AWS_ENDPOINT_URL_S3 ??= S3_ENDPOINT;

let work: string;
let bucket: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'sluice-state-'));
  bucket = `state-${randomBytes(4).toString('hex')}`;
  const conn = new S3Connection({ endpoint: S3_ENDPOINT }, 'SLUICE_SOURCE_IO');
  await conn.client.send(new CreateBucketCommand({ Bucket: bucket }));
  conn.client.destroy();
});
after(() => rm(work, { recursive: true, force: true }));

const spec = (name: string) => resumableSpec(name, COUNT);

describe('sluice run --checkpoint-store', () => {
  for (const [kind, location] of [
    ['s3', () => `s3://${bucket}/checkpoints`],
    ['postgres', () => PG_URL],
  ] as const) {
    it(`${kind}: a killed run's checkpoint is there, the next run resumes from it; every record once`, async () => {
      const name = `state-${kind}-${randomBytes(3).toString('hex')}`;
      await writeFile(path.join(work, `${name}.yaml`), spec(name));
      const store = await openCheckpointStore(location(), name);
      try {
        const args = ['--checkpoint-store', location()];
        await runAndKillAfterCheckpoint(work, name, () => store.load(), args);
        const saved = await store.load();
        assert.ok(saved && !saved.final, `${store.location} holds the killed run's checkpoint`);
        const resumed = await sluice(['run', `${name}.yaml`, '--progress', 'none', ...args], work);
        assert.equal(resumed.code, EXIT.ok, resumed.stderr);
        assert.match(resumed.stderr, new RegExp(`resuming from the checkpoint of run ${saved.run_id}`));
        assertIdsOnce(await readJsonLines(path.join(work, 'out', name)), COUNT);
        assert.equal((await store.load())?.final, true, 'the finished run leaves a final checkpoint');
      } finally {
        await store.clear();
        await store.close?.();
      }
    });
  }
});
