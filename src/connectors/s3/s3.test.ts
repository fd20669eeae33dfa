/** The pure parts of S3 support: URLs, glob prefixes, hidden names, error classification. */
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { planPushdown } from '../../engine/pushdown.ts';
import { defaultRegistry } from '../../registry.ts';
import type { SluiceError } from '../../sdk/errors.ts';
import { configIssues } from '../../sdk/testing.ts';
import { loadPipeline } from '../../spec/validate.ts';
import { fileSink, fileSource } from '../file/index.ts';
import { hasHiddenSegment, splitS3Pattern } from '../file/paths.ts';
import { S3CheckpointStore } from './checkpoint-store.ts';
import { isRetriableS3Error, isS3Url, parseS3Url, S3Connection, s3UrlProblem } from './client.ts';

describe('s3:// URLs', () => {
  it('split into bucket and key', () => {
    assert.deepEqual(parseS3Url('s3://my-bucket/logs/2024/a.jsonl'), {
      bucket: 'my-bucket',
      key: 'logs/2024/a.jsonl',
    });
    assert.deepEqual(parseS3Url('s3://my-bucket/logs/'), { bucket: 'my-bucket', key: 'logs/' });
    assert.deepEqual(parseS3Url('s3://my-bucket'), { bucket: 'my-bucket', key: '' });
    assert.ok(isS3Url('S3://b/x') && !isS3Url('/tmp/s3://x') && !isS3Url('data/x.csv'));
  });

  it('refuse a bad bucket name, saying what is valid', () => {
    for (const bad of ['s3://', 's3://Upper/x', 's3://a/x', 's3://under_score/x', 's3:///key'])
      assert.match(s3UrlProblem(bad) ?? '', /expected s3:\/\/bucket\/key/, bad);
    assert.throws(
      () => parseS3Url('s3://No/x', 'SLUICE_SOURCE_IO'),
      (err: SluiceError) => err.code === 'SLUICE_SOURCE_IO' && err.retriable === false,
    );
  });
});

describe('S3 glob patterns', () => {
  it('list under the longest literal prefix', () => {
    assert.deepEqual(splitS3Pattern('logs/**/*.jsonl.gz'), { prefix: 'logs/', glob: true });
    assert.deepEqual(splitS3Pattern('logs/2024-0[1-3]/*.csv'), { prefix: 'logs/2024-0', glob: true });
    assert.deepEqual(splitS3Pattern('logs/{a,b}/x.csv'), { prefix: 'logs/', glob: true });
    assert.deepEqual(splitS3Pattern('*.csv'), { prefix: '', glob: true });
    assert.deepEqual(splitS3Pattern('logs/day-?.csv'), { prefix: 'logs/day-', glob: true });
    assert.deepEqual(splitS3Pattern('logs/a.csv'), { prefix: 'logs/a.csv', glob: false });
    assert.deepEqual(splitS3Pattern('logs/'), { prefix: 'logs/', glob: false });
  });

  it('skip hidden and _-prefixed names below the literal folders, unless the pattern names them', () => {
    assert.equal(hasHiddenSegment('in/_SUCCESS', 'in/', 1), true);
    assert.equal(hasHiddenSegment('in/_temporary/0/a.csv', 'in/**/*.csv', 1), true);
    assert.equal(hasHiddenSegment('in/.staging.csv', 'in/*.csv', 1), true);
    assert.equal(hasHiddenSegment('in/sub/a.csv', 'in/**/*.csv', 1), false);
    // Folders above the listing and folders the pattern names are the user's choice.
    assert.equal(hasHiddenSegment('_raw/in/a.csv', '_raw/in/*.csv', 2), false);
    assert.equal(hasHiddenSegment('in/_tmp1/a.csv', 'in/_tmp*/a.csv', 1), false);
  });
});

describe('S3 errors', () => {
  const aws = (name: string, status?: number, extra: Record<string, unknown> = {}) =>
    Object.assign(new Error(`${name} happened`), {
      name,
      ...(status ? { $metadata: { httpStatusCode: status } } : {}),
      ...extra,
    });

  it('retry throttling, 5xx and network errors, not 403/404 or missing credentials', () => {
    assert.equal(isRetriableS3Error(aws('SlowDown', 503)), true);
    assert.equal(isRetriableS3Error(aws('InternalError', 500)), true);
    assert.equal(isRetriableS3Error(aws('TooManyRequestsException', 429)), true);
    assert.equal(isRetriableS3Error(aws('Error', undefined, { code: 'ECONNREFUSED' })), true);
    assert.equal(isRetriableS3Error(aws('TimeoutError')), true);
    assert.equal(isRetriableS3Error(aws('AccessDenied', 403)), false);
    assert.equal(isRetriableS3Error(aws('NoSuchBucket', 404)), false);
    assert.equal(isRetriableS3Error(aws('NoSuchKey', 404)), false);
    assert.equal(isRetriableS3Error(aws('InvalidArgument', 400)), false);
    assert.equal(isRetriableS3Error(aws('CredentialsProviderError')), false);
  });

  it('name the bucket and the endpoint when the bucket does not exist', () => {
    const conn = new S3Connection({ endpoint: 'http://127.0.0.1:1' }, 'SLUICE_SINK_IO');
    const err = conn.error(aws('NoSuchBucket', 404), 'cannot list', 'lost-bucket', 'x/');
    assert.equal(err.code, 'SLUICE_SINK_IO');
    assert.equal(err.retriable, false);
    assert.match(err.message, /the bucket "lost-bucket" does not exist at http:\/\/127\.0\.0\.1:1/);
    const denied = conn.error(aws('AccessDenied', 403), 'cannot read', 'b', 'k');
    assert.match(denied.message, /access denied/);
    assert.equal(denied.retriable, false);
  });

  it('use the endpoint from the config, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL', () => {
    const saved = { ...process.env };
    try {
      delete process.env.AWS_ENDPOINT_URL_S3;
      delete process.env.AWS_ENDPOINT_URL;
      delete process.env.AWS_REGION;
      delete process.env.AWS_DEFAULT_REGION;
      const aws = new S3Connection({}, 'SLUICE_SOURCE_IO');
      assert.equal(aws.endpoint, undefined);
      assert.equal(aws.where, 'AWS S3 (region us-east-1)');
      process.env.AWS_ENDPOINT_URL = 'http://general:1';
      assert.equal(new S3Connection({}, 'SLUICE_SOURCE_IO').endpoint, 'http://general:1');
      process.env.AWS_ENDPOINT_URL_S3 = 'http://s3-only:1';
      assert.equal(new S3Connection({}, 'SLUICE_SOURCE_IO').endpoint, 'http://s3-only:1');
      assert.equal(
        new S3Connection({ endpoint: 'http://cfg:1' }, 'SLUICE_SOURCE_IO').endpoint,
        'http://cfg:1',
      );
    } finally {
      process.env = saved;
    }
  });
});

describe('file connector config with s3:// paths', () => {
  it('accepts s3 options with an s3:// path only', () => {
    assert.deepEqual(
      configIssues(fileSource.config, {
        path: 's3://b-1/x/',
        format: 'csv',
        s3: { endpoint: 'http://127.0.0.1:9000' },
      }),
      [],
    );
    assert.deepEqual(
      configIssues(fileSink.config, { path: 's3://b-1/x/', format: 'jsonl', s3: { region: 'eu-west-1' } }),
      [],
    );
    assert.match(
      configIssues(fileSource.config, { path: 'data/x.csv', s3: {} }).join('\n'),
      /^s3: s3 options apply to s3:\/\/ paths/,
    );
    assert.match(
      configIssues(fileSink.config, { path: 's3://Bad/x/', format: 'jsonl' }).join('\n'),
      /^path: not an S3 URL/,
    );
    assert.match(
      configIssues(fileSource.config, { path: 's3://b-1/x', s3: { endpoint: 'not a url' } }).join('\n'),
      /^s3\.endpoint/,
    );
  });

  it('a single object path names one file, and partitions need a prefix', () => {
    assert.match(
      configIssues(fileSink.config, { path: 's3://b-1/out/result.jsonl', partition_by: ['day'] }).join('\n'),
      /partition_by needs a directory path/,
    );
  });
});

describe('S3CheckpointStore', () => {
  it('keeps <prefix>/<key>/checkpoint.json', async () => {
    const a = new S3CheckpointStore('s3://state-bucket/sluice/checkpoints/', 'orders');
    assert.equal(a.location, 's3://state-bucket/sluice/checkpoints/orders/checkpoint.json');
    const b = new S3CheckpointStore('s3://state-bucket', 'orders');
    assert.equal(b.location, 's3://state-bucket/orders/checkpoint.json');
    await Promise.all([a.close(), b.close()]);
    assert.throws(
      () => new S3CheckpointStore('s3://state-bucket', 'a/b'),
      (err: SluiceError) => err.code === 'SLUICE_CHECKPOINT',
    );
    assert.throws(
      () => new S3CheckpointStore('/tmp/state', 'a'),
      (err: SluiceError) => err.code === 'SLUICE_CHECKPOINT',
    );
  });
});

describe('pushdown and s3:// paths', () => {
  // DuckDB reads and writes S3 only through httpfs, which is not bundled: such runs stream.
  it('never hands an s3:// source or sink to DuckDB', async () => {
    const plan = async (source: string, sink: string) => {
      const text = `apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: p }\nsource:\n  file: { path: "${source}" }\nsink:\n  file: { path: "${sink}", format: parquet }\n`;
      const pipeline = await loadPipeline({
        file: path.join(os.tmpdir(), 'spec.yaml'),
        text,
        registry: defaultRegistry(),
      });
      const result = await planPushdown(pipeline);
      return result.eligible ? [] : result.reasons;
    };
    assert.ok(
      (await plan('s3://in-bucket/a/*.csv', 'out/')).includes(
        'the source reads S3; pushdown reads local files only',
      ),
    );
    assert.ok(
      (await plan('in.csv', 's3://out-bucket/x/')).includes(
        'the sink writes to S3; pushdown writes local files only',
      ),
    );
  });
});
