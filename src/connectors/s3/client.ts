/**
 * A small S3 client for Sluice: s3:// URLs, a client configured from the environment (the AWS
 * SDK's default credential chain) with an optional endpoint for S3-compatible stores, the object
 * operations the file connector and the checkpoint store need, and S3 errors mapped to
 * SluiceErrors that say whether a retry can help.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { type ErrorCode, SluiceError } from '../../sdk/errors.ts';
import { type S3Options, s3Url } from './options.ts';

export {
  checkS3Fields,
  isS3Url,
  parseS3Url,
  type S3Location,
  type S3Options,
  type S3OptionsConfig,
  s3OptionsFromConfig,
  s3OptionsSchema,
  s3Url,
  s3UrlProblem,
} from './options.ts';

/** Parts of a multipart upload: 8 MiB (S3's minimum is 5 MiB, except the last part). */
export const PART_SIZE = 8 * 1024 * 1024;
/** S3 allows at most this many parts per upload. */
const MAX_PARTS = 10_000;
/** Parts uploaded at once, per file. */
const PART_CONCURRENCY = 4;

/** Metadata naming the commit that published an object, to recognise it when a commit is repeated. */
const COMMIT_METADATA = 'sluice-commit';

/** One part of a multipart upload, as CompleteMultipartUpload wants it back. */
export interface UploadedPart {
  part_number: number;
  etag: string;
}

/** A multipart upload with every part uploaded, waiting for CompleteMultipartUpload. */
export interface PreparedUpload {
  key: string;
  upload_id: string;
  /** Random; kept in the object's metadata so that a repeated commit recognises its own object. */
  commit_id: string;
  parts: UploadedPart[];
}

interface AwsError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

const THROTTLING = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
]);
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function errorName(err: unknown): string {
  const e = err as AwsError | null;
  return e?.name ?? e?.Code ?? '';
}

function httpStatus(err: unknown): number | undefined {
  return (err as AwsError | null)?.$metadata?.httpStatusCode;
}

/** Throttling, 5xx and network errors may pass; 4xx (403, 404, a bad request) will not. */
export function isRetriableS3Error(err: unknown): boolean {
  const e = err as AwsError | null;
  const status = httpStatus(err);
  if (status === 429 || (status !== undefined && status >= 500)) return true;
  if (THROTTLING.has(errorName(err))) return true;
  if (status !== undefined) return false;
  if (e?.name === 'CredentialsProviderError' || e?.name === 'TypeError') return false;
  const code = e?.code ?? (e as { cause?: AwsError } | null)?.cause?.code;
  return (
    (code !== undefined && NETWORK.has(code)) ||
    e?.name === 'TimeoutError' ||
    e?.name === 'NetworkingError' ||
    Boolean(e?.$retryable)
  );
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return httpStatus(err) === 404 || name === 'NotFound' || name === 'NoSuchKey';
}

/** A store without this operation (a test server): 405 MethodNotAllowed or 501 NotImplemented. */
export function isUnsupported(err: unknown): boolean {
  const status = httpStatus(err) ?? httpStatus((err as { cause?: unknown } | null)?.cause);
  return status === 405 || status === 501;
}

function errorText(err: unknown): string {
  const e = err as AwsError | null;
  const name = errorName(err);
  const message = e?.message && e.message !== 'UnknownError' ? e.message : '';
  const status = httpStatus(err);
  const parts = [name && name !== 'Error' ? name : '', message].filter(Boolean).join(': ');
  return `${parts || String(err)}${status ? ` (HTTP ${status})` : ''}`;
}

/**
 * A client for one process's use of S3 (a source, a sink, a checkpoint store). Every failure is
 * a SluiceError with `code`, naming the operation, the object and the endpoint.
 */
export class S3Connection {
  readonly endpoint: string | undefined;
  readonly region: string;
  readonly #forcePathStyle: boolean;
  readonly #code: ErrorCode;
  #client: S3Client | undefined;

  constructor(options: S3Options, code: ErrorCode) {
    const env = process.env;
    this.endpoint = options.endpoint ?? (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
    this.region = options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1');
    this.#forcePathStyle = options.forcePathStyle ?? this.endpoint !== undefined;
    this.#code = code;
  }

  /** Where requests go, for messages. */
  get where(): string {
    return this.endpoint ?? `AWS S3 (region ${this.region})`;
  }

  /** Created on first use, so that a connection closed early (abort) can still be used after. */
  get client(): S3Client {
    if (!this.#client) {
      const config: S3ClientConfig = {
        region: this.region,
        forcePathStyle: this.#forcePathStyle,
        // Follows a 301 to the bucket's own region on AWS; an endpoint has no other region.
        followRegionRedirects: this.endpoint === undefined,
      };
      if (this.endpoint) {
        config.endpoint = this.endpoint;
        // S3-compatible stores often reject the SDK's default trailing checksums (aws-chunked).
        config.requestChecksumCalculation = 'WHEN_REQUIRED';
        config.responseChecksumValidation = 'WHEN_REQUIRED';
      }
      this.#client = new S3Client(config);
    }
    return this.#client;
  }

  /** The SluiceError for `err`, raised while `doing` (e.g. "cannot read") `bucket`/`key`. */
  error(err: unknown, doing: string, bucket: string, key?: string): SluiceError {
    if (err instanceof SluiceError) return err;
    const name = errorName(err);
    const what = key === undefined ? `the bucket ${bucket}` : s3Url(bucket, key);
    let message: string;
    if (name === 'NoSuchBucket' || (key === undefined && httpStatus(err) === 404))
      message = `${doing} ${what}: the bucket "${bucket}" does not exist at ${this.where} (create it, or check the bucket name and the endpoint)`;
    else if (name === 'CredentialsProviderError')
      message = `${doing} ${what}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): ${errorText(err)}`;
    else if (httpStatus(err) === 403)
      message = `${doing} ${what} at ${this.where}: access denied (${errorText(err)}); check the credentials and the bucket policy`;
    else message = `${doing} ${what} at ${this.where}: ${errorText(err)}`;
    return new SluiceError(this.#code, message, {
      cause: err,
      retriable: isRetriableS3Error(err),
      details: { bucket, ...(key !== undefined ? { key } : {}), endpoint: this.where },
    });
  }

  /**
   * Whether the bucket exists: false for 404; true when it does, and also when the credentials
   * may not ask (403: writing may still be allowed).
   */
  async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (err) {
      if (httpStatus(err) === 404 || errorName(err) === 'NoSuchBucket') return false;
      if (httpStatus(err) === 403) return true;
      throw this.error(err, 'cannot reach', bucket);
    }
  }

  /** Throws a clear non-retriable error when the bucket does not exist. */
  async requireBucket(bucket: string): Promise<void> {
    if (!(await this.bucketExists(bucket)))
      throw this.error({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } }, 'cannot use', bucket);
  }

  /** Every object under `prefix`, in S3's key order (UTF-8 bytes), page by page (ListObjectsV2). */
  async *list(
    bucket: string,
    prefix: string,
    pageSize = 1000,
  ): AsyncGenerator<{ key: string; size: number }> {
    try {
      for await (const page of paginateListObjectsV2(
        { client: this.client, pageSize },
        { Bucket: bucket, Prefix: prefix },
      )) {
        for (const o of page.Contents ?? []) if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0 };
      }
    } catch (err) {
      throw this.error(err, 'cannot list', bucket, prefix);
    }
  }

  /** The object's size and metadata, or undefined when there is no such object. */
  async head(
    bucket: string,
    key: string,
  ): Promise<{ size: number; metadata: Record<string, string> } | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { size: out.ContentLength ?? 0, metadata: out.Metadata ?? {} };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.error(err, 'cannot look up', bucket, key);
    }
  }

  /** The object's content as a stream. */
  async read(bucket: string, key: string, signal?: AbortSignal): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key }),
        signal ? { abortSignal: signal } : {},
      );
      return out.Body as Readable;
    } catch (err) {
      throw this.error(err, 'cannot read', bucket, key);
    }
  }

  /** The object's content as text, or undefined when there is no such object. */
  async readText(bucket: string, key: string): Promise<string | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return await out.Body!.transformToString('utf8');
    } catch (err) {
      if (isNotFound(err) && errorName(err) !== 'NoSuchBucket') return undefined;
      throw this.error(err, 'cannot read', bucket, key);
    }
  }

  /** Copies the object into a local file. */
  async download(bucket: string, key: string, file: string, signal?: AbortSignal): Promise<void> {
    const body = await this.read(bucket, key, signal);
    try {
      await pipeline(body, fs.createWriteStream(file, { flags: 'wx' }), signal ? { signal } : {});
    } catch (err) {
      throw this.error(err, 'cannot download', bucket, key);
    }
  }

  /** One PutObject: the object appears whole or not at all. */
  async put(
    bucket: string,
    key: string,
    body: string | Buffer,
    metadata?: Record<string, string>,
  ): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ...(metadata ? { Metadata: metadata } : {}),
        }),
      );
    } catch (err) {
      throw this.error(err, 'cannot write', bucket, key);
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err) && errorName(err) !== 'NoSuchBucket') return;
      throw this.error(err, 'cannot delete', bucket, key);
    }
  }

  /**
   * Uploads a local file to `key` at once (one PutObject, or a multipart upload for large files,
   * which lib-storage aborts when it fails): the object appears whole or not at all.
   */
  async uploadFile(bucket: string, key: string, file: string): Promise<void> {
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: bucket, Key: key, Body: fs.createReadStream(file) },
        partSize: PART_SIZE,
        queueSize: PART_CONCURRENCY,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (err) {
      throw this.error(err, 'cannot upload', bucket, key);
    }
  }

  /**
   * Uploads a local file as the parts of a new multipart upload and leaves the upload open: the
   * object appears only at `completeUpload`. A failure aborts the upload. An empty file cannot be
   * a multipart upload; callers put it with one PutObject at commit instead.
   */
  async prepareUpload(bucket: string, key: string, file: string): Promise<PreparedUpload> {
    const commitId = randomBytes(12).toString('hex');
    const size = (await fsp.stat(file)).size;
    let uploadId: string | undefined;
    const handle = await fsp.open(file, 'r');
    try {
      const created = await this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          Metadata: { [COMMIT_METADATA]: commitId },
        }),
      );
      uploadId = created.UploadId!;
      // Larger parts for files past 10,000 × 8 MiB, rounded up to whole MiB.
      const partSize = Math.max(PART_SIZE, Math.ceil(size / MAX_PARTS / 2 ** 20) * 2 ** 20);
      const count = Math.max(1, Math.ceil(size / partSize));
      const parts: UploadedPart[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const index = next++;
          const start = index * partSize;
          const length = Math.min(partSize, size - start);
          // A buffer, not a stream: the SDK can then retry a failed part by itself.
          const body = Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(body, 0, length, start);
          if (bytesRead !== length) throw new Error(`${file} changed while it was uploaded`);
          const out = await this.client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: index + 1,
              Body: body,
              ContentLength: length,
            }),
          );
          parts[index] = { part_number: index + 1, etag: out.ETag! };
        }
      };
      await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, count) }, worker));
      return { key, upload_id: uploadId, commit_id: commitId, parts };
    } catch (err) {
      if (uploadId) await this.abortUpload(bucket, key, uploadId).catch(() => {});
      throw this.error(err, 'cannot upload', bucket, key);
    } finally {
      await handle.close();
    }
  }

  /**
   * Completes a prepared upload: the object appears. Idempotent: when the upload is gone, an object
   * at `key` carrying this upload's commit id means an earlier call completed it. Returns false in
   * that case.
   */
  async completeUpload(bucket: string, upload: PreparedUpload): Promise<boolean> {
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: upload.key,
          UploadId: upload.upload_id,
          MultipartUpload: { Parts: upload.parts.map((p) => ({ PartNumber: p.part_number, ETag: p.etag })) },
        }),
      );
      return true;
    } catch (err) {
      // A repeated call, or a retry after a lost answer: the upload is gone (NoSuchUpload on S3;
      // other stores answer otherwise) and the object there carries this upload's commit id.
      const existing = await this.head(bucket, upload.key).catch(() => undefined);
      if (existing?.metadata[COMMIT_METADATA] === upload.commit_id) return false;
      if (errorName(err) !== 'NoSuchUpload' && isRetriableS3Error(err))
        throw this.error(err, 'cannot publish', bucket, upload.key);
      const why = existing
        ? `the upload ${upload.upload_id} is gone and the object there was not published by it (another writer replaced it)`
        : `the upload ${upload.upload_id} cannot be completed and no object was published by it (was it aborted, e.g. by a lifecycle rule for incomplete multipart uploads?)`;
      throw new SluiceError(
        this.#code,
        `cannot publish ${s3Url(bucket, upload.key)} at ${this.where}: ${why}: ${errorText(err)}`,
        {
          cause: err,
          retriable: false,
          details: { bucket, key: upload.key, upload_id: upload.upload_id, endpoint: this.where },
        },
      );
    }
  }

  async abortUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
      );
    } catch (err) {
      if (isNotFound(err)) return;
      if (isUnsupported(err)) {
        throw new SluiceError(
          this.#code,
          `cannot abort the upload ${uploadId} of ${s3Url(bucket, key)}: ${this.where} does not support AbortMultipartUpload (${errorText(err)})`,
          { cause: err, retriable: false, details: { bucket, key, unsupported: true } },
        );
      }
      throw this.error(err, 'cannot abort the upload of', bucket, key);
    }
  }

  /** Multipart uploads in progress under `prefix`. */
  async *listUploads(bucket: string, prefix: string): AsyncGenerator<{ key: string; uploadId: string }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      for (;;) {
        const page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: bucket,
            Prefix: prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
        for (const u of page.Uploads ?? [])
          if (u.Key !== undefined && u.UploadId !== undefined) yield { key: u.Key, uploadId: u.UploadId };
        if (!page.IsTruncated) return;
        keyMarker = page.NextKeyMarker;
        uploadIdMarker = page.NextUploadIdMarker;
      }
    } catch (err) {
      throw this.error(err, 'cannot list the multipart uploads under', bucket, prefix);
    }
  }

  /** Releases the HTTP connections; a later call makes a new client. */
  close(): void {
    this.#client?.destroy();
    this.#client = undefined;
  }
}
