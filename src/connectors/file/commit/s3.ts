/**
 * The S3 committer (s3:// paths): parts are staged in a local folder; at a checkpoint each
 * finished part is uploaded as the parts of a multipart upload left open, which the token names
 * and commitPrepared completes (idempotently; an empty file, which cannot be a multipart upload,
 * is put then). At commit() or close() a part no token names is uploaded in one piece.
 */
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { SluiceError } from '../../../sdk/errors.ts';
import type { Logger } from '../../../sdk/types.ts';
import {
  isUnsupported,
  type PreparedUpload,
  parseS3Url,
  type S3Connection,
  s3Url,
  s3UrlProblem,
} from '../../s3/client.ts';
import { errorText, escapeRegExp, unlinkQuietly } from '../fs-util.ts';
import type { PartWriter } from '../part-writer.ts';
import type { Committer, OutputList } from './committer.ts';
import { publishLocalToken, removeLeftovers } from './local.ts';

/**
 * The commit token of an s3:// path: per part file, a multipart upload with every part uploaded,
 * which commitPrepared completes (an empty file, which cannot be a multipart upload, is put then).
 */
const s3CommitTokenSchema = z.object({
  sink: z.literal('file'),
  store: z.literal('s3'),
  run_id: z.string().min(1),
  /** s3://bucket/prefix/ */
  root: z.string().min(1),
  files: z.array(
    z.union([
      z.object({
        key: z.string().min(1),
        upload_id: z.string().min(1),
        commit_id: z.string().min(1),
        parts: z.array(z.object({ part_number: z.number().int().min(1), etag: z.string().min(1) })).min(1),
      }),
      z.object({ key: z.string().min(1), empty: z.literal(true) }),
    ]),
  ),
});
type S3CommitToken = z.output<typeof s3CommitTokenSchema>;
type S3TokenFile = S3CommitToken['files'][number];

/** Where an s3:// path writes: the bucket and the key (single file) or key prefix (part files). */
export interface S3Target {
  conn: S3Connection;
  bucket: string;
  /** The object's key for a single file; else the prefix part keys start with ('' or ending in /). */
  key: string;
  /** The local folder parts are staged in before they are uploaded. */
  staging: string;
}

/** The target of an s3:// path, and the local root the part writer writes to (in the staging folder). */
export function s3Target(
  url: string,
  single: boolean,
  conn: S3Connection,
): { target: S3Target; localRoot: string } {
  const { bucket, key } = parseS3Url(url, 'SLUICE_SINK_IO');
  // The staging folder is this instance's own: abort and close delete all of it.
  const staging = path.join(os.tmpdir(), `sluice-s3-sink-${randomBytes(6).toString('hex')}`);
  const prefix = single || key === '' || key.endsWith('/') ? key : `${key}/`;
  return {
    target: { conn, bucket, key: prefix, staging },
    localRoot: single ? path.join(staging, path.posix.basename(key)) : staging,
  };
}

export class S3Committer implements Committer {
  readonly #writer: PartWriter;
  readonly #s3: S3Target;
  readonly #single: boolean;
  readonly #runId: string;
  readonly #outputs: OutputList;
  readonly #logger: Logger;
  readonly #aborted: () => boolean;
  /** Uploads handed out in a token and not yet completed. */
  #prepared: S3TokenFile[] = [];
  /** Uploads a running prepare made, not yet in a token; abort() aborts them. */
  readonly #unissued = new Set<PreparedUpload>();

  constructor(
    writer: PartWriter,
    target: S3Target,
    options: { single: boolean; runId: string; outputs: OutputList; logger: Logger; aborted: () => boolean },
  ) {
    this.#writer = writer;
    this.#s3 = target;
    this.#single = options.single;
    this.#runId = options.runId;
    this.#outputs = options.outputs;
    this.#logger = options.logger;
    this.#aborted = options.aborted;
  }

  /** The key a staged file is published under. */
  #keyOf(stagedPath: string): string {
    const s3 = this.#s3;
    if (this.#single) return s3.key;
    return s3.key + path.relative(s3.staging, stagedPath).split(path.sep).join('/');
  }

  async nameTaken(stagedPath: string): Promise<boolean> {
    return (await this.#s3.conn.head(this.#s3.bucket, this.#keyOf(stagedPath))) !== undefined;
  }

  /**
   * Uploads every finished part as the parts of a multipart upload for its final key, left open,
   * and names the uploads in the token; the local files then go. Nothing is visible until
   * commitPrepared completes the uploads. On failure the uploads made so far are aborted and the
   * finished files stay, so a retry uploads them again.
   */
  async prepare(): Promise<S3CommitToken> {
    // Staged files need no fsync: they are in S3 (as uploaded parts) before the token is returned.
    this.#writer.takeDirtyDirs();
    const s3 = this.#s3;
    const files: S3TokenFile[] = [];
    const made: PreparedUpload[] = [];
    try {
      for (const { tempPath, finalPath } of this.#writer.finished) {
        const key = this.#keyOf(finalPath);
        if ((await fsp.stat(tempPath)).size === 0) {
          files.push({ key, empty: true });
          continue;
        }
        const upload = await s3.conn.prepareUpload(s3.bucket, key, tempPath);
        made.push(upload);
        this.#unissued.add(upload);
        if (this.#aborted()) throw new Error('the sink was aborted');
        files.push(upload);
      }
    } catch (err) {
      await Promise.all(made.map((u) => this.#abortUpload(u)));
      throw err instanceof SluiceError
        ? err
        : new SluiceError('SLUICE_SINK_IO', `cannot prepare ${s3Url(s3.bucket, s3.key)}: ${errorText(err)}`, {
            cause: err,
            retriable: false,
          });
    }
    for (const { tempPath } of this.#writer.finished) {
      await unlinkQuietly(tempPath);
      this.#writer.handOver(tempPath);
    }
    this.#writer.finished = [];
    this.#prepared.push(...files);
    for (const upload of made) this.#unissued.delete(upload);
    return {
      sink: 'file',
      store: 's3',
      run_id: this.#runId,
      root: s3Url(s3.bucket, s3.key),
      files,
    };
  }

  /** Aborts an upload no token names; a store that cannot abort keeps it, invisible. */
  async #abortUpload(upload: PreparedUpload): Promise<void> {
    const s3 = this.#s3;
    this.#unissued.delete(upload);
    try {
      await s3.conn.abortUpload(s3.bucket, upload.key, upload.upload_id);
    } catch (err) {
      this.#logger[isUnsupported(err) ? 'debug' : 'warn']('cannot abort an unpublished multipart upload', {
        key: upload.key,
        upload_id: upload.upload_id,
        error: errorText(err),
      });
    }
  }

  /**
   * Completes the token's uploads (each idempotently). On recovery, the uploads the killed attempt
   * started after its last checkpoint (its run's part names, not in the token) are aborted: they
   * hold records the resumed run writes again. They were never visible either way.
   */
  async commitPrepared(value: unknown, recovery: boolean): Promise<void> {
    if ((value as { store?: unknown } | null)?.store !== 's3') {
      // A local token: renamed into place as the local committer does.
      const token = await publishLocalToken(value, this.#outputs);
      if (recovery) await removeLeftovers(token, this.#logger);
      return;
    }
    const token = parseS3Token(value);
    const { bucket, key: prefix } = parseS3Url(token.root, 'SLUICE_CHECKPOINT');
    for (const file of token.files) await this.#publishS3(file, bucket);
    const published = new Set(token.files.map((f) => ('empty' in f ? `${f.key}\n` : f.upload_id)));
    this.#prepared = this.#prepared.filter((f) => !published.has('empty' in f ? `${f.key}\n` : f.upload_id));
    if (!recovery) return;
    const ours = partNamePattern(token.run_id);
    let aborted = 0;
    try {
      for await (const upload of this.#s3.conn.listUploads(bucket, prefix)) {
        if (!ours.test(path.posix.basename(upload.key)) || published.has(upload.uploadId)) continue;
        await this.#s3.conn.abortUpload(bucket, upload.key, upload.uploadId);
        aborted++;
      }
    } catch (err) {
      // Harmless: an incomplete upload is never visible (a lifecycle rule can expire them).
      this.#logger[isUnsupported(err) ? 'debug' : 'warn'](
        'cannot abort the multipart uploads an earlier attempt left unfinished',
        { path: token.root, error: errorText(err) },
      );
    }
    this.#logger.info('published the output an earlier attempt prepared for its last checkpoint', {
      path: token.root,
      files: token.files.length,
      aborted_uploads: aborted,
    });
  }

  /** Completes a prepared upload (or puts an empty file): the object appears. Idempotent. */
  async #publishS3(file: S3TokenFile, bucket: string): Promise<void> {
    const conn = this.#s3.conn;
    if ('empty' in file) await conn.put(bucket, file.key, '');
    else await conn.completeUpload(bucket, file);
    this.#outputs.add(s3Url(bucket, file.key));
  }

  async publish(): Promise<void> {
    const s3 = this.#s3;
    while (this.#prepared.length) {
      await this.#publishS3(this.#prepared[0]!, s3.bucket);
      this.#prepared.shift();
    }
    // Not prepared: uploaded now, in one piece (lib-storage: PutObject, or multipart when large).
    while (this.#writer.finished.length) {
      const { tempPath, finalPath } = this.#writer.finished[0]!;
      const key = this.#keyOf(finalPath);
      await s3.conn.uploadFile(s3.bucket, key, tempPath);
      await unlinkQuietly(tempPath);
      this.#writer.handOver(tempPath);
      this.#writer.finished.shift();
      this.#outputs.add(s3Url(s3.bucket, key));
    }
  }

  /** Uploads a prepare in flight made: no token names them. Prepared ones stay. */
  async abort(): Promise<void> {
    await Promise.all([...this.#unissued].map((u) => this.#abortUpload(u)));
  }

  /** The staging folder and the S3 client. */
  async release(): Promise<void> {
    await fsp.rm(this.#s3.staging, { recursive: true, force: true });
    this.#s3.conn.close();
  }
}

/** The names of the part files run `runId` writes: `part-RUN-SEQ.EXT`. */
function partNamePattern(runId: string): RegExp {
  return new RegExp(`^part-${escapeRegExp(runId)}-\\d+\\.`);
}

/**
 * An s3:// commit token from a checkpoint, checked: only part files (`part-*`) under the token's
 * root are ever published.
 */
function parseS3Token(value: unknown): S3CommitToken {
  const parsed = s3CommitTokenSchema.safeParse(value);
  const bad = (why: string) =>
    new SluiceError('SLUICE_CHECKPOINT', `not a file sink commit token: ${why}`, {
      details: { token: value },
    });
  if (!parsed.success) throw bad(parsed.error.issues[0]?.message ?? 'unexpected content');
  const problem = s3UrlProblem(parsed.data.root);
  if (problem) throw bad(problem);
  const { key: prefix } = parseS3Url(parsed.data.root, 'SLUICE_CHECKPOINT');
  for (const { key } of parsed.data.files)
    if (
      !key.startsWith(prefix) ||
      !path.posix.basename(key).startsWith('part-') ||
      key.split('/').includes('..')
    )
      throw bad(`${key} is not a part file under ${parsed.data.root}`);
  return parsed.data;
}
