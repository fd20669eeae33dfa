/**
 * The file connector on s3:// paths and the S3 checkpoint store, against a real S3-compatible
 * server: `scripts/services/s3.sh start` (endpoint in SLUICE_TEST_S3_ENDPOINT, default
 * http://127.0.0.1:59000; s3rver's credentials S3RVER/S3RVER unless AWS_* are set). Every test
 * makes its own bucket.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import { CreateBucketCommand, DeleteBucketCommand } from '@aws-sdk/client-s3';
import { PipelineRun } from '../../engine/run.ts';
import { killedInCheckpoint, runUntilKilled } from '../../engine/test-util.ts';
import { defaultRegistry } from '../../registry.ts';
import type { SluiceError } from '../../sdk/errors.ts';
import {
  checkPositionsIncrease,
  checkSameRecords,
  sinkConformance,
  sourceConformance,
  testContext,
} from '../../sdk/testing.ts';
import type { RecordValue, SluiceRecord } from '../../sdk/types.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { fileSink, fileSource } from '../file/index.ts';
import { duckQuery, readSource } from '../file/test-util.ts';
import { S3CheckpointStore } from './checkpoint-store.ts';
import { S3Connection } from './client.ts';

const ENDPOINT = process.env.SLUICE_TEST_S3_ENDPOINT ?? 'http://127.0.0.1:59000';
// s3rver's fixed credentials; the SDK reads them from the environment, as in production.
process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
process.env.AWS_REGION ??= 'us-east-1';

const SRC = path.resolve(import.meta.dirname, '../..');
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const conn = new S3Connection({ endpoint: ENDPOINT }, 'SLUICE_SOURCE_IO');
const s3 = { endpoint: ENDPOINT };
const buckets: string[] = [];
let work: string;

before(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-s3-test-'));
});
after(async () => {
  // Best effort: s3rver keeps prepared-but-never-completed uploads, which keep a bucket non-empty.
  for (const bucket of buckets) {
    for await (const o of conn.list(bucket, '')) await conn.delete(bucket, o.key);
    await conn.client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
  }
  conn.close();
  await fs.rm(work, { recursive: true, force: true });
});

async function newBucket(): Promise<string> {
  const bucket = `sluice-t-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  await conn.client.send(new CreateBucketCommand({ Bucket: bucket }));
  buckets.push(bucket);
  return bucket;
}

async function keys(bucket: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of conn.list(bucket, prefix)) out.push(o.key);
  return out;
}

/** The JSON Lines (plain or gzip) objects under a prefix, parsed, read without Sluice's source. */
async function readJsonlObjects(bucket: string, prefix: string): Promise<RecordValue[]> {
  const rows: RecordValue[] = [];
  for (const key of await keys(bucket, prefix)) {
    if (!/\.jsonl(\.gz)?$/.test(key) || path.posix.basename(key).startsWith('.')) continue;
    const chunks: Buffer[] = [];
    for await (const chunk of await conn.read(bucket, key)) chunks.push(chunk as Buffer);
    let data = Buffer.concat(chunks);
    if (key.endsWith('.gz')) data = zlib.gunzipSync(data);
    for (const line of data.toString('utf8').split('\n')) if (line) rows.push(JSON.parse(line));
  }
  return rows;
}

/** The objects under a prefix, downloaded into a fresh local folder (same relative paths). */
async function downloadAll(bucket: string, prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(work, 'dl-'));
  for (const key of await keys(bucket, prefix)) {
    const file = path.join(dir, key.slice(prefix.length));
    await fs.mkdir(path.dirname(file), { recursive: true });
    await conn.download(bucket, key, file);
  }
  return dir;
}

const records = (values: RecordValue[], from = 0): SluiceRecord[] =>
  values.map((value, i) => ({ value, meta: { position: { partition: 'p', offset: from + i } } }));

const createSink = async (config: Record<string, unknown>, ctx = testContext()) =>
  fileSink.create(fileSink.config.parse({ s3, ...config }), ctx);
const createSource = async (config: Record<string, unknown>, ctx = testContext()) =>
  fileSource.create(fileSource.config.parse({ s3, ...config }), ctx);

// ---------------------------------------------------------------- source

describe('file source on s3://', () => {
  let bucket: string;
  const csv = (from: number, n: number) =>
    `id,name\n${Array.from({ length: n }, (_, i) => `${from + i},"n ${from + i}"`).join('\n')}\n`;
  const jsonl = (from: number, n: number) =>
    `${Array.from({ length: n }, (_, i) => JSON.stringify({ id: from + i })).join('\n')}\n`;

  before(async () => {
    bucket = await newBucket();
    const parquet = path.join(work, 'rows.parquet');
    await duckQuery(
      `COPY (SELECT range AS id, 'x' || range AS name FROM range(500)) TO '${parquet}' (FORMAT parquet)`,
    );
    const objects: [string, string | Buffer][] = [
      ['in/a.csv', csv(0, 40)],
      ['in/b.csv.gz', zlib.gzipSync(csv(40, 30))],
      ['in/.hidden.csv', csv(900, 5)],
      ['in/_SUCCESS', ''],
      ['in/_temporary/0/x.csv', csv(950, 5)],
      ['in/rows.parquet', await fs.readFile(parquet)],
      ['in/sub/2024/c.jsonl.gz', zlib.gzipSync(jsonl(100, 25))],
      ['in/sub/2025/d.jsonl.gz', zlib.gzipSync(jsonl(125, 25))],
      ['in/sub/2025/e.jsonl', jsonl(150, 5)],
      ['other/z.csv', csv(999, 1)],
    ];
    for (const [key, body] of objects) await conn.put(bucket, key, body);
  });

  it('reads the CSV objects a glob matches, plain and gzip, in key order, with positions and progress', async () => {
    const source = await createSource({
      path: `s3://${bucket}/in/*.csv*`,
      csv: { columns: { id: 'integer' } },
    });
    const sizes = (await Promise.all(['in/a.csv', 'in/b.csv.gz'].map((k) => conn.head(bucket, k)))).map(
      (h) => h!.size,
    );
    assert.deepEqual(source.progress?.(), { bytesRead: 0, bytesTotal: sizes[0]! + sizes[1]! });
    const { records: got, rejected } = await readSource(source);
    assert.deepEqual(rejected, []);
    assert.deepEqual(
      got.map((r) => r.value.id),
      Array.from({ length: 70 }, (_, i) => i),
    );
    assert.deepEqual(checkPositionsIncrease(got), []);
    assert.deepEqual(got[0]!.meta.position, { partition: `s3://${bucket}/in/a.csv`, offset: 2 });
    assert.equal(got[69]!.meta.position?.partition, `s3://${bucket}/in/b.csv.gz`);
    assert.deepEqual(source.progress?.(), {
      bytesRead: sizes[0]! + sizes[1]!,
      bytesTotal: sizes[0]! + sizes[1]!,
    });
  });

  it('matches ** across folders (gzip JSON Lines)', async () => {
    const { records: got } = await readSource(
      await createSource({ path: `s3://${bucket}/in/**/*.jsonl.gz` }),
    );
    assert.deepEqual(
      got.map((r) => r.value.id),
      Array.from({ length: 50 }, (_, i) => 100 + i),
    );
  });

  it('reads every object under a prefix, each by its own format, skipping hidden and _ names', async () => {
    for (const p of [`s3://${bucket}/in/`, `s3://${bucket}/in`]) {
      const { records: got } = await readSource(await createSource({ path: p }));
      const partitions = [...new Set(got.map((r) => r.meta.position!.partition))];
      assert.deepEqual(
        partitions,
        [
          'in/a.csv',
          'in/b.csv.gz',
          'in/rows.parquet',
          'in/sub/2024/c.jsonl.gz',
          'in/sub/2025/d.jsonl.gz',
          'in/sub/2025/e.jsonl',
        ].map((k) => `s3://${bucket}/${k}`),
        p,
      );
      assert.equal(got.length, 70 + 500 + 55);
    }
  });

  it('reads a Parquet object (downloaded to a temporary file, then by DuckDB)', async () => {
    const source = await createSource({ path: `s3://${bucket}/in/rows.parquet` });
    const { records: got } = await readSource(source);
    assert.equal(got.length, 500);
    assert.deepEqual(got[499]!.value, { id: 499, name: 'x499' });
    assert.deepEqual(got[10]!.meta.position, { partition: `s3://${bucket}/in/rows.parquet`, offset: 10 });
    const left = (await fs.readdir(os.tmpdir())).filter((n) => n.startsWith('sluice-s3-read-'));
    for (const d of left)
      assert.deepEqual(await fs.readdir(path.join(os.tmpdir(), d)), [], `${d} is left behind`);
  });

  it('lists past one page (ListObjectsV2 continuation)', async () => {
    const b = await newBucket();
    for (let i = 0; i < 7; i++) await conn.put(b, `p/${i}.txt`, 'x');
    const listed: string[] = [];
    for await (const o of conn.list(b, 'p/', 2)) listed.push(o.key);
    assert.deepEqual(
      listed,
      Array.from({ length: 7 }, (_, i) => `p/${i}.txt`),
    );
  });

  it('says what is missing: no such object, no match, no such bucket', async () => {
    await assert.rejects(createSource({ path: `s3://${bucket}/nothing-here.csv` }), (err: SluiceError) => {
      assert.equal(err.code, 'SLUICE_SOURCE_IO');
      assert.match(err.message, /no object s3:\/\/.*\/nothing-here\.csv and no objects under/);
      return true;
    });
    await assert.rejects(
      createSource({ path: `s3://${bucket}/in/*.tsv` }),
      /no object matches .*listed the keys under s3:\/\/.*\/in\//,
    );
    await assert.rejects(
      createSource({ path: 's3://sluice-no-such-bucket/in/*.csv' }),
      (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_SOURCE_IO');
        assert.equal(err.retriable, false);
        assert.match(
          err.message,
          /the bucket "sluice-no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+/,
        );
        return true;
      },
    );
  });
});

describe('file source conformance on s3://', () => {
  let bucket: string | undefined;
  const ready = async () => {
    if (bucket) return bucket;
    bucket = await newBucket();
    const lines = (from: number, n: number) =>
      Array.from(
        { length: n },
        (_, i) => `${from + i},"name ${from + i}\nsecond line",${(from + i) * 1.5}`,
      ).join('\n');
    await conn.put(bucket, 'csv/a.csv', `id,name,amount\n${lines(0, 40)}\n`);
    await conn.put(bucket, 'csv/b.csv.gz', zlib.gzipSync(`id,name,amount\n${lines(40, 30)}\n`));
    return bucket;
  };
  sourceConformance('file on s3 (csv, glob over plain and gzip objects)', {
    create: async (ctx) =>
      createSource({ path: `s3://${await ready()}/csv/*`, csv: { columns: { id: 'integer' } } }, ctx),
    expectedRecords: 70,
  });
});

// ---------------------------------------------------------------- sink

describe('file sink conformance on s3://', () => {
  let bucket: string | undefined;
  let round = 0;
  const ready = async () => (bucket ??= await newBucket());
  for (const format of ['jsonl', 'csv', 'parquet'] as const) {
    let prefix = '';
    sinkConformance(`file on s3 (${format}, part files)`, {
      // Each check writes under a fresh prefix, so readBack sees only the latest sink's output.
      reset: async () => {
        prefix = `${format}-${++round}/`;
      },
      create: async (ctx) =>
        createSink(
          {
            path: `s3://${await ready()}/${prefix}`,
            format,
            ...(format === 'jsonl' ? { compression: 'gzip', roll: { max_records: 60 } } : {}),
          },
          ctx,
        ),
      readBack: async () => {
        const visible = (await keys(await ready(), prefix)).filter(
          (k) => !path.posix.basename(k).startsWith('.'),
        );
        if (!visible.length) return [];
        if (format === 'jsonl') return readJsonlObjects(await ready(), prefix);
        const dir = await downloadAll(await ready(), prefix);
        return duckQuery(
          format === 'csv'
            ? `SELECT * FROM read_csv('${dir}/**/*.csv', header = true)`
            : `SELECT * FROM read_parquet('${dir}/**/*.parquet')`,
        );
      },
    });
  }

  for (const name of ['out.parquet', 'out.jsonl.gz']) {
    let prefix = '';
    sinkConformance(`file on s3 (single object ${name})`, {
      reset: async () => {
        prefix = `single-${++round}/`;
      },
      create: async (ctx) => createSink({ path: `s3://${await ready()}/${prefix}${name}` }, ctx),
      readBack: async () => {
        const found = await keys(await ready(), prefix);
        if (!found.length) return [];
        assert.deepEqual(found, [`${prefix}${name}`]);
        if (name.endsWith('.jsonl.gz')) return readJsonlObjects(await ready(), prefix);
        const dir = await downloadAll(await ready(), prefix);
        return duckQuery(`SELECT * FROM read_parquet('${path.join(dir, name)}')`);
      },
    });
  }
});

describe('file sink on s3://', () => {
  it('writes partitioned, rolled JSON Lines and Parquet parts that the s3 source reads back', async () => {
    const bucket = await newBucket();
    const values = Array.from({ length: 300 }, (_, i) => ({
      id: i,
      country: ['DE', 'FR', 'US'][i % 3]!,
      day: i < 150 ? '2024-01-01' : '2024-01-02',
      amount: i * 1.25,
    }));
    for (const format of ['jsonl', 'parquet'] as const) {
      const sink = await createSink({
        path: `s3://${bucket}/${format}/`,
        format,
        partition_by: ['country', 'day'],
        roll: { max_records: 30 },
      });
      await sink.write(records(values.slice(0, 150)));
      const token = await sink.prepareCommit!();
      assert.deepEqual(await keys(bucket, `${format}/`), [], 'nothing visible before commitPrepared');
      await sink.commitPrepared!(token);
      await sink.write(records(values.slice(150), 150));
      await sink.close();
      const found = await keys(bucket, `${format}/`);
      assert.deepEqual(
        [...new Set(found.map((k) => path.posix.dirname(k)))].sort(),
        ['DE', 'FR', 'US'].flatMap((c) => [
          `${format}/country=${c}/day=2024-01-01`,
          `${format}/country=${c}/day=2024-01-02`,
        ]),
      );
      // 50 records per partition, rolled every 30 (and at the checkpoint): 2 parts each.
      assert.equal(found.length, 12);
      assert.ok(
        found.every((k) => /\/part-test-run-\d{5}\.(jsonl|parquet)$/.test(k)),
        found.join('\n'),
      );
      assert.deepEqual(
        sink.outputs!().sort(),
        found.map((k) => `s3://${bucket}/${k}`),
      );
      const { records: back } = await readSource(
        await createSource({ path: `s3://${bucket}/${format}/**/*.${format}` }),
      );
      // Partition fields are left out of the records, as Hive does; the folders carry them.
      const rebuilt = back.map((r) => {
        const [, country, day] = /country=(\w+)\/day=([\d-]+)\//.exec(r.meta.position!.partition)!;
        return { ...r.value, country, day };
      });
      assert.deepEqual(checkSameRecords(rebuilt, values), [], format);
    }
  });

  it('uploads a large part as a multipart upload of several parts, completed exactly once', async () => {
    const bucket = await newBucket();
    const pad = 'x'.repeat(400);
    const values = Array.from({ length: 30_000 }, (_, i) => ({ id: i, pad }));
    const sink = await createSink({ path: `s3://${bucket}/big/`, format: 'jsonl' });
    for (let i = 0; i < values.length; i += 5000) await sink.write(records(values.slice(i, i + 5000), i));
    const token = (await sink.prepareCommit!()) as { files: { key: string; parts: unknown[] }[] };
    assert.equal(token.files.length, 1);
    assert.ok(token.files[0]!.parts.length >= 2, `${token.files[0]!.parts.length} part(s) for ~12 MB`);
    await sink.commitPrepared!(token);
    await sink.commitPrepared!(token);
    await sink.close();
    const back = await readJsonlObjects(bucket, 'big/');
    assert.equal(back.length, 30_000);
    assert.equal(new Set(back.map((v) => v.id)).size, 30_000);
  });

  it('killed (SIGKILL) after prepare: a fresh instance publishes the saved token exactly once; the rest never shows', async () => {
    const bucket = await newBucket();
    const dir = await fs.mkdtemp(path.join(work, 'kill-'));
    const tokenFile = path.join(dir, 'token.json');
    const script = path.join(dir, 'job.ts');
    const url = (p: string) => JSON.stringify(pathToFileURL(path.join(SRC, p)).href);
    await fs.writeFile(
      script,
      `import { writeFileSync } from 'node:fs';
import { fileSink } from ${url('connectors/file/index.ts')};
import { testContext } from ${url('sdk/testing.ts')};
const config = fileSink.config.parse({ path: 's3://${bucket}/out/', format: 'jsonl', partition_by: ['g'], s3: { endpoint: ${JSON.stringify(ENDPOINT)} } });
const sink = await fileSink.create(config, testContext({ runId: 'job-1' }));
const rec = (from, n) => Array.from({ length: n }, (_, i) => ({ value: { id: from + i, g: (from + i) % 2 }, meta: {} }));
await sink.write(rec(0, 100));
// The checkpoint holding this token is saved...
writeFileSync(${JSON.stringify(tokenFile)}, JSON.stringify(await sink.prepareCommit()));
// ...and the process dies before commitPrepared, after it wrote and even prepared more records
// (a checkpoint that was never saved): a resumed run reads those again.
await sink.write(rec(100, 50));
await sink.prepareCommit();
await sink.write(rec(150, 10));
process.kill(process.pid, 'SIGKILL');
`,
    );
    // TMPDIR: the killed process cannot delete its staging folder; this test's folder goes after.
    await runUntilKilled(script, { TMPDIR: dir });
    assert.deepEqual(await keys(bucket), [], 'nothing is visible: the kill came before any commit');
    const token = JSON.parse(await fs.readFile(tokenFile, 'utf8'));
    const fresh = await createSink(
      { path: `s3://${bucket}/out/`, format: 'jsonl', partition_by: ['g'] },
      testContext({ runId: 'job-1' }),
    );
    await fresh.commitPrepared!(token);
    await fresh.commitPrepared!(token);
    // A resumed run (same run id) never overwrites what the token published.
    await fresh.write(records([{ id: 1000, g: 0 }]));
    await fresh.close();
    const back = await readJsonlObjects(bucket, 'out/');
    assert.deepEqual(
      back.map((v) => v.id).sort((a, b) => Number(a) - Number(b)),
      [...Array.from({ length: 100 }, (_, i) => i), 1000],
    );
    assert.equal((await keys(bucket, 'out/')).length, 3);
  });

  it('an uncommitted prepare is never visible, and abort() keeps it publishable', async () => {
    const bucket = await newBucket();
    const sink = await createSink({ path: `s3://${bucket}/out/`, format: 'parquet' });
    await sink.write(records([{ id: 1 }, { id: 2 }]));
    const token = JSON.parse(JSON.stringify(await sink.prepareCommit!()));
    await sink.write(records([{ id: 3 }], 2));
    await sink.abort();
    assert.deepEqual(await keys(bucket), []);
    const recovering = await createSink(
      { path: `s3://${bucket}/out/`, format: 'parquet' },
      testContext({ runId: 'r2' }),
    );
    await recovering.commitPrepared!(token);
    await recovering.close();
    const dir = await downloadAll(bucket, 'out/');
    assert.deepEqual(await duckQuery(`SELECT id FROM read_parquet('${dir}/*.parquet') ORDER BY id`), [
      { id: 1 },
      { id: 2 },
    ]);
  });

  it('refuses a token naming objects outside its root', async () => {
    const bucket = await newBucket();
    const sink = await createSink({ path: `s3://${bucket}/out/`, format: 'jsonl' });
    const token = {
      sink: 'file',
      store: 's3',
      run_id: 'x',
      root: `s3://${bucket}/out/`,
      files: [{ key: 'elsewhere/part-x-00001.jsonl', empty: true }],
    };
    await assert.rejects(sink.commitPrepared!(token), (err: SluiceError) => err.code === 'SLUICE_CHECKPOINT');
    await sink.abort();
    assert.deepEqual(await keys(bucket), []);
  });

  it('tells a missing bucket at once, naming it and the endpoint', async () => {
    await assert.rejects(
      createSink({ path: 's3://sluice-no-such-bucket/out/', format: 'jsonl' }),
      (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_SINK_IO');
        assert.equal(err.retriable, false);
        assert.match(
          err.message,
          /the bucket "sluice-no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+/,
        );
        return true;
      },
    );
  });
});

// ---------------------------------------------------------------- checkpoint store

describe('S3CheckpointStore', () => {
  const checkpoint = {
    pipeline: 'orders',
    run_id: 'r1',
    positions: { 's3://b/in/a.csv': 41 },
    saved_at: '2024-01-01T00:00:00.000Z',
    final: false,
    records: { read: 40, written: 40, failed: 0 },
  };

  it('saves, loads and clears <prefix>/<key>/checkpoint.json', async () => {
    const bucket = await newBucket();
    const store = new S3CheckpointStore(`s3://${bucket}/state/`, 'orders', { endpoint: ENDPOINT });
    try {
      assert.equal(await store.load(), undefined);
      await store.save(checkpoint);
      assert.deepEqual(await keys(bucket), ['state/orders/checkpoint.json']);
      assert.deepEqual(await store.load(), checkpoint);
      await store.save({ ...checkpoint, positions: { 's3://b/in/a.csv': 99 } });
      assert.deepEqual((await store.load())?.positions, { 's3://b/in/a.csv': 99 });
      await store.clear();
      await store.clear();
      assert.deepEqual(await keys(bucket), []);
      assert.equal(await store.load(), undefined);
    } finally {
      await store.close();
    }
  });

  it('refuses corrupt content with SLUICE_CHECKPOINT, naming the object', async () => {
    const bucket = await newBucket();
    const store = new S3CheckpointStore(`s3://${bucket}`, 'orders', { endpoint: ENDPOINT });
    try {
      for (const body of ['{"pipeline": "orders", tor', JSON.stringify({ ...checkpoint, positions: 'no' })]) {
        await conn.put(bucket, 'orders/checkpoint.json', body);
        await assert.rejects(store.load(), (err: SluiceError) => {
          assert.equal(err.code, 'SLUICE_CHECKPOINT');
          assert.match(
            err.message,
            new RegExp(`the checkpoint s3://${bucket}/orders/checkpoint\\.json is corrupt`),
          );
          return true;
        });
      }
    } finally {
      await store.close();
    }
  });

  it('names the bucket and the endpoint when the bucket does not exist', async () => {
    const store = new S3CheckpointStore('s3://sluice-no-such-bucket/state', 'orders', { endpoint: ENDPOINT });
    try {
      await assert.rejects(store.save(checkpoint), (err: SluiceError) => {
        assert.equal(err.code, 'SLUICE_CHECKPOINT');
        assert.match(
          err.message,
          /the bucket "sluice-no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+/,
        );
        return true;
      });
    } finally {
      await store.close();
    }
  });
});

// ---------------------------------------------------------------- a whole pipeline, killed

describe('s3 → s3 pipeline with an S3 checkpoint store, SIGKILLed and resumed', () => {
  const FILES = 3;
  const PER_FILE = 1000;

  /**
   * Runs the pipeline in a child process, checkpoints in S3, which SIGKILLs itself inside
   * checkpoint number `at`: before saving it (the sinks have prepared) or after.
   */
  const killedJob = (dir: string, bucket: string, at: number, when: 'before-save' | 'after-save') =>
    killedInCheckpoint(dir, {
      store: { location: `s3://${bucket}/state`, key: 'job' },
      at,
      when,
      // The endpoint from the environment, as a deployment would set it.
      // TMPDIR: the killed process cannot delete its staging folder; this test's folder goes after.
      env: { AWS_ENDPOINT_URL_S3: ENDPOINT, TMPDIR: dir },
    });

  for (const [at, when] of [
    [4, 'before-save'],
    [6, 'after-save'],
  ] as const) {
    it(`killed ${when} of checkpoint ${at}, resumed from the S3 checkpoint: every record once`, async () => {
      const bucket = await newBucket();
      for (let f = 0; f < FILES; f++)
        await conn.put(
          bucket,
          `in/day-${f}.jsonl`,
          `${Array.from({ length: PER_FILE }, (_, i) => JSON.stringify({ id: f * PER_FILE + i, g: i % 3 })).join('\n')}\n`,
        );
      const dir = await fs.mkdtemp(path.join(work, 'run-'));
      await fs.writeFile(
        path.join(dir, 'pipeline.yaml'),
        `apiVersion: sluice/v1
kind: Pipeline
metadata: { name: s3-to-s3 }
source:
  file: { path: "s3://${bucket}/in/*.jsonl" }
sinks:
  - file: { path: "s3://${bucket}/out/", format: jsonl, partition_by: [g] }
settings: { batch_size: 200, checkpoint_interval: 0ms }
`,
      );
      await killedJob(dir, bucket, at, when);
      const partial = await readJsonlObjects(bucket, 'out/');
      assert.ok(partial.length < FILES * PER_FILE, `the kill left part of the output: ${partial.length}`);

      const previous = process.env.AWS_ENDPOINT_URL_S3;
      process.env.AWS_ENDPOINT_URL_S3 = ENDPOINT;
      const store = new S3CheckpointStore(`s3://${bucket}/state`, 'job');
      try {
        const cp = await store.load();
        assert.ok(cp && Object.keys(cp.positions).length, 'a checkpoint was saved in S3 before the kill');
        const pipeline = await loadPipeline({
          file: path.join(dir, 'pipeline.yaml'),
          registry: defaultRegistry(),
        });
        const run = new PipelineRun({
          pipeline,
          runId: 'job-2',
          runDir: path.join(dir, 'run2'),
          logger: silent,
          resume: { positions: cp.positions, pending: cp.pending },
        });
        const summary = await run.run();
        assert.equal(summary.status, 'succeeded', JSON.stringify(summary));
      } finally {
        await store.close();
        if (previous === undefined) delete process.env.AWS_ENDPOINT_URL_S3;
        else process.env.AWS_ENDPOINT_URL_S3 = previous;
      }
      const out = await readJsonlObjects(bucket, 'out/');
      const ids = out.map((v) => Number(v.id)).sort((a, b) => a - b);
      assert.equal(ids.length, FILES * PER_FILE, 'no record twice, none lost');
      assert.deepEqual(
        ids,
        Array.from({ length: FILES * PER_FILE }, (_, i) => i),
      );
    });
  }
});
