import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { type Compression, compressionExtension, compressionFromPath } from '../../formats/compression.ts';
import { createLineEncoder, type LineEncoder } from '../../formats/encode.ts';
import { type DuckDB, openDuckDB, stagedJsonlToParquet, TypeTracker } from '../../formats/parquet.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  RecordSchema,
  RecordValue,
  Rejection,
  SinkInstance,
  SinkWriteResult,
  SluiceRecord,
} from '../../sdk/types.ts';
import { parseSize } from '../../spec/size.ts';
import {
  isS3Url,
  isUnsupported,
  type PreparedUpload,
  parseS3Url,
  S3Connection,
  s3OptionsFromConfig,
  s3Url,
  s3UrlProblem,
} from '../s3/client.ts';
import { encodePartitionValue, type FileFormat, formatFromPath } from './paths.ts';
import { TextFileWriter } from './writer.ts';

export { parseSize } from '../../spec/size.ts';

import { type FileSinkConfig, isSingleFilePath } from './sink-definition.ts';

/** Open part files beyond this many (many partitions) are finished, oldest first. */
const MAX_OPEN_FILES = 64;

/**
 * What `prepareCommit` returns and a checkpoint keeps: the part files to rename into place, and
 * which run and folder wrote them (to clean up that run's other temporary files on recovery).
 */
const commitTokenSchema = z.object({
  sink: z.literal('file'),
  run_id: z.string().min(1),
  root: z.string().min(1),
  files: z.array(z.object({ temp: z.string().min(1), final: z.string().min(1) })),
});
type CommitToken = z.output<typeof commitTokenSchema>;

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
interface S3Target {
  conn: S3Connection;
  bucket: string;
  /** The object's key for a single file; else the prefix part keys start with ('' or ending in /). */
  key: string;
  /** The local folder parts are staged in before they are uploaded. */
  staging: string;
}

/** One output file being written: encoded text goes to the file (csv, jsonl) or to a staging file (parquet). */
interface Part {
  dir: string;
  finalPath: string;
  /** Hidden name in the same folder, renamed to finalPath on commit. */
  tempPath: string;
  /** Parquet only: the hidden JSON Lines staging file, and the sink's type tracker. */
  stagingPath: string | undefined;
  encoder: LineEncoder;
  tracker: TypeTracker | undefined;
  writer: TextFileWriter | undefined;
  records: number;
  bytes: number;
}

class FileSink implements SinkInstance {
  readonly #ctx: ComponentContext;
  readonly #format: FileFormat;
  readonly #compression: Compression;
  readonly #single: boolean;
  readonly #root: string;
  readonly #tsv: boolean;
  readonly #csv: FileSinkConfig['csv'];
  readonly #parquet: FileSinkConfig['parquet'];
  readonly #maxRecords: number;
  readonly #maxBytes: number;
  readonly #partitionBy: string[] | undefined;
  readonly #runId: string;
  #seq = 0;
  /**
   * Parquet: field types over everything this sink wrote, so that its files (partitions, rolls)
   * agree on one schema as far as the data allows (a file never gets a narrower type than the
   * records seen before it was finished).
   */
  readonly #tracker: TypeTracker | undefined;
  /** Open parts by folder (relative partition path, '' without partitioning). */
  readonly #open = new Map<string, Part>();
  /** Finished parts waiting for commit: [temp, final]. */
  #finished: { tempPath: string; finalPath: string }[] = [];
  /** Finished parts handed out in a commit token, not yet renamed: abort() leaves them alone. */
  #prepared: { tempPath: string; finalPath: string }[] = [];
  /** The tokens this instance handed out: any other token is a recovery. */
  readonly #issued = new WeakSet<object>();
  /** Temporary files on disk that are neither committed nor prepared (deleted by abort). */
  readonly #temps = new Set<string>();
  readonly #createdDirs: string[] = [];
  readonly #knownDirs = new Set<string>();
  /** Folders whose entries changed since the last prepareCommit (new temporary files or folders). */
  readonly #dirtyDirs = new Set<string>();
  readonly #outputs: string[] = [];
  readonly #outputSet = new Set<string>();
  /**
   * Two-phase commit, for directory paths only: a single file is renamed into place only at
   * close(), so it has nothing to publish at a checkpoint.
   */
  readonly prepareCommit?: () => Promise<CommitToken | S3CommitToken>;
  readonly commitPrepared?: (token: unknown) => Promise<void>;
  /**
   * False for a single file: until close() its records are only in a hidden temporary file that a
   * resumed run (another run id) cannot take over, so the engine neither checkpoints nor resumes.
   */
  readonly durableCommits: boolean;
  #duckdb: Promise<DuckDB> | undefined;
  #state: 'open' | 'closed' | 'aborted' = 'open';
  /** Set for an s3:// path: #root is then the local staging folder (or the staged single file). */
  readonly #s3: S3Target | undefined;
  /** s3:// paths: uploads handed out in a token and not yet completed (the local #prepared's part). */
  #preparedS3: S3TokenFile[] = [];
  /** s3:// paths: uploads a running prepareCommit made, not yet in a token; abort() aborts them. */
  readonly #unissued = new Set<PreparedUpload>();

  constructor(config: FileSinkConfig, ctx: ComponentContext, s3?: S3Connection) {
    this.#ctx = ctx;
    this.#single = isSingleFilePath(config.path);
    if (s3) {
      const { bucket, key } = parseS3Url(config.path, 'SLUICE_SINK_IO');
      // The staging folder is this instance's own: abort and close delete all of it.
      const staging = path.join(os.tmpdir(), `sluice-s3-sink-${randomBytes(6).toString('hex')}`);
      const prefix = this.#single || key === '' || key.endsWith('/') ? key : `${key}/`;
      this.#s3 = { conn: s3, bucket, key: prefix, staging };
      this.#root = this.#single ? path.join(staging, path.posix.basename(key)) : staging;
    } else {
      this.#root = path.resolve(ctx.baseDir, config.path);
    }
    const inferred = formatFromPath(config.path);
    this.#format = config.format ?? inferred!.format;
    this.#tsv = this.#single && inferred?.tsv === true;
    this.#compression =
      this.#format === 'parquet'
        ? 'none'
        : (config.compression ?? (this.#single ? compressionFromPath(config.path) : 'none'));
    this.#csv = config.csv;
    this.#parquet = config.parquet;
    this.#maxRecords = config.roll?.max_records ?? Number.POSITIVE_INFINITY;
    this.#maxBytes =
      config.roll?.max_bytes !== undefined ? parseSize(config.roll.max_bytes) : Number.POSITIVE_INFINITY;
    this.#partitionBy = config.partition_by;
    this.#tracker = this.#format === 'parquet' ? new TypeTracker() : undefined;
    this.#runId = ctx.runId.replace(/[^A-Za-z0-9._-]/g, '_') || 'run';
    this.durableCommits = !this.#single;
    if (!this.#single) {
      this.prepareCommit = () => this.#prepareCommit();
      this.commitPrepared = (token) => this.#commitPrepared(token);
    }
  }

  outputs(): string[] {
    return [...this.#outputs];
  }

  async write(batch: SluiceRecord[], schema?: RecordSchema): Promise<SinkWriteResult | undefined> {
    if (this.#state !== 'open')
      throw new SluiceError(
        'SLUICE_SINK_IO',
        `write() after ${this.#state === 'closed' ? 'close()' : 'abort()'}`,
        { retriable: false },
      );
    this.#tracker?.declare(schema);
    const rejected: Rejection[] = [];
    if (!this.#partitionBy) {
      await this.#writeGroup('', batch, undefined, rejected);
    } else {
      const groups = new Map<string, { records: SluiceRecord[]; values: RecordValue[] }>();
      const fields = this.#partitionBy;
      const fieldSet = new Set(fields);
      for (const record of batch) {
        const v = record.value;
        let dir = '';
        try {
          for (const field of fields) dir += `${dir ? '/' : ''}${field}=${encodePartitionValue(v[field])}`;
        } catch (err) {
          rejected.push({
            record,
            error: new SluiceError(
              'SLUICE_SINK_REJECTED',
              `cannot name a partition folder: ${errorText(err)}`,
              {
                cause: err,
              },
            ),
          });
          continue;
        }
        const value: RecordValue = {};
        for (const key in v) if (!fieldSet.has(key)) value[key] = v[key];
        let group = groups.get(dir);
        if (!group) {
          group = { records: [], values: [] };
          groups.set(dir, group);
        }
        group.records.push(record);
        group.values.push(value);
      }
      for (const [dir, group] of groups) await this.#writeGroup(dir, group.records, group.values, rejected);
    }
    return rejected.length ? { rejected } : undefined;
  }

  async #writeGroup(
    dir: string,
    records: SluiceRecord[],
    values: RecordValue[] | undefined,
    rejected: Rejection[],
  ): Promise<void> {
    let part = this.#open.get(dir);
    if (part && this.#partitionBy) {
      // Most recently used last, so the least recently used part is finished first.
      this.#open.delete(dir);
      this.#open.set(dir, part);
    }
    let lines: string[] = [];
    const countBytes = Number.isFinite(this.#maxBytes);
    for (let i = 0; i < records.length; i++) {
      const value = values ? values[i]! : records[i]!.value;
      if (!part) part = await this.#newPart(dir);
      let line: string;
      try {
        line = part.encoder.encode(value);
        part.tracker?.refuseUnwritable(value, line);
      } catch (err) {
        rejected.push({ record: records[i]!, error: toSluiceError(err, 'SLUICE_SINK_REJECTED') });
        continue;
      }
      const header = part.encoder.takeHeader();
      if (header !== undefined) {
        lines.push(header);
        part.bytes += header.length + 1;
      }
      lines.push(line);
      part.tracker?.observe(value);
      part.records++;
      part.bytes += countBytes ? Buffer.byteLength(line) + 1 : line.length + 1;
      if (part.records >= this.#maxRecords || part.bytes >= this.#maxBytes) {
        await this.#writeText(part, lines);
        lines = [];
        await this.#finishPart(part);
        part = undefined;
      }
    }
    if (part && lines.length) await this.#writeText(part, lines);
  }

  async #newPart(dir: string): Promise<Part> {
    if (this.#open.size >= MAX_OPEN_FILES) {
      const oldest = this.#open.values().next().value;
      if (oldest) await this.#finishPart(oldest);
    }
    const folder = this.#single ? path.dirname(this.#root) : dir ? path.join(this.#root, dir) : this.#root;
    await this.#ensureDir(folder);
    let finalPath: string;
    let tempPath: string;
    if (this.#single) {
      finalPath = this.#root;
      tempPath = path.join(folder, `.${path.basename(this.#root)}.${this.#runId}.inprogress`);
    } else {
      const ext = `${this.#format}${compressionExtension(this.#compression)}`;
      for (;;) {
        const name = `part-${this.#runId}-${String(++this.#seq).padStart(5, '0')}.${ext}`;
        finalPath = path.join(folder, name);
        tempPath = path.join(folder, `.${name}.inprogress`);
        // Never reuse the name of a committed file (a resumed run keeps its run id).
        if (!(await exists(finalPath)) && !(await exists(tempPath)) && !(await this.#s3Exists(finalPath)))
          break;
      }
    }
    const part: Part = {
      dir,
      finalPath,
      tempPath,
      stagingPath:
        this.#format === 'parquet' ? tempPath.replace(/\.inprogress$/, '.staging.inprogress') : undefined,
      encoder: createLineEncoder(this.#format === 'csv' ? 'csv' : 'jsonl', {
        header: this.#csv.header,
        delimiter: this.#csv.delimiter ?? (this.#tsv ? '\t' : ','),
      }),
      tracker: this.#tracker,
      writer: undefined,
      records: 0,
      bytes: 0,
    };
    this.#open.set(dir, part);
    return part;
  }

  async #writeText(part: Part, lines: string[]): Promise<void> {
    try {
      if (!part.writer) {
        const target = part.stagingPath ?? part.tempPath;
        this.#temps.add(target);
        this.#dirtyDirs.add(path.dirname(target));
        // A single file's temporary name is fixed per run id: a crashed earlier try may have left it.
        if (this.#single) await unlinkQuietly(target);
        part.writer = await TextFileWriter.create(target, part.stagingPath ? 'none' : this.#compression);
        if (this.#state === 'aborted') {
          await part.writer.destroy();
          await unlinkQuietly(target);
          throw new Error('the sink was aborted');
        }
      }
      if (lines.length)
        await part.writer.write(lines.length === 1 ? `${lines[0]}\n` : `${lines.join('\n')}\n`);
    } catch (err) {
      // Part of the text may be in the file: the run cannot simply retry this batch.
      throw new SluiceError(
        'SLUICE_SINK_IO',
        `cannot write ${part.stagingPath ?? part.tempPath}: ${errorText(err)}`,
        {
          cause: err,
          retriable: false,
        },
      );
    }
  }

  /** Completes a part's file under its temporary name; it becomes visible on commit. */
  async #finishPart(part: Part): Promise<void> {
    if (this.#open.get(part.dir) === part) this.#open.delete(part.dir);
    if (!part.writer) {
      if (!(this.#single && this.#format !== 'parquet')) return; // nothing written
      // An empty single file still gets created (compressed formats get a valid empty stream).
      await this.#writeText(part, []);
      if (!part.writer) return;
    }
    try {
      await part.writer.finish();
      if (part.stagingPath) {
        this.#temps.add(part.tempPath);
        // One thread keeps rows in order with little memory (~60 MB over the process baseline).
        this.#duckdb ??= openDuckDB({ memoryLimit: '128MB', threads: 1 });
        const db = await this.#duckdb;
        await stagedJsonlToParquet(db.connection, part.stagingPath, part.tracker!.columns(), part.tempPath, {
          compression: this.#parquet.compression,
          rowGroupSize: this.#parquet.row_group_size,
          casts: part.tracker!.casts(),
        });
        // Text files are synced as they close; DuckDB's file must be too before a checkpoint names it.
        await syncPath(part.tempPath, 'r');
        await fsp.unlink(part.stagingPath);
        this.#temps.delete(part.stagingPath);
      }
    } catch (err) {
      throw new SluiceError('SLUICE_SINK_IO', `cannot finish ${part.tempPath}: ${errorText(err)}`, {
        cause: err,
        retriable: false,
      });
    }
    this.#finished.push({ tempPath: part.tempPath, finalPath: part.finalPath });
  }

  async #ensureDir(dir: string): Promise<void> {
    if (this.#knownDirs.has(dir)) return;
    try {
      const first = await fsp.mkdir(dir, { recursive: true });
      if (first) {
        // Every folder from the first one created down to `dir`, to remove them on abort.
        for (let d = dir; ; d = path.dirname(d)) {
          this.#createdDirs.push(d);
          this.#dirtyDirs.add(path.dirname(d));
          if (d === first || d === path.dirname(d)) break;
        }
      }
    } catch (err) {
      throw new SluiceError('SLUICE_SINK_IO', `cannot create the folder ${dir}: ${errorText(err)}`, {
        cause: err,
      });
    }
    this.#knownDirs.add(dir);
  }

  /** The key a staged file is published under (s3:// paths). */
  #keyOf(stagedPath: string): string {
    const s3 = this.#s3!;
    if (this.#single) return s3.key;
    return s3.key + path.relative(s3.staging, stagedPath).split(path.sep).join('/');
  }

  async #s3Exists(stagedPath: string): Promise<boolean> {
    if (!this.#s3) return false;
    return (await this.#s3.conn.head(this.#s3.bucket, this.#keyOf(stagedPath))) !== undefined;
  }

  /** Completes a prepared upload (or puts an empty file): the object appears. Idempotent. */
  async #publishS3(file: S3TokenFile, bucket: string): Promise<void> {
    const conn = this.#s3!.conn;
    if ('empty' in file) await conn.put(bucket, file.key, '');
    else await conn.completeUpload(bucket, file);
    this.#addOutput(s3Url(bucket, file.key));
  }

  /** Renames every prepared, then every finished part into place. */
  async #publish(): Promise<void> {
    const s3 = this.#s3;
    if (s3) {
      while (this.#preparedS3.length) {
        await this.#publishS3(this.#preparedS3[0]!, s3.bucket);
        this.#preparedS3.shift();
      }
      // Not prepared: uploaded now, in one piece (lib-storage: PutObject, or multipart when large).
      while (this.#finished.length) {
        const { tempPath, finalPath } = this.#finished[0]!;
        const key = this.#keyOf(finalPath);
        await s3.conn.uploadFile(s3.bucket, key, tempPath);
        await unlinkQuietly(tempPath);
        this.#temps.delete(tempPath);
        this.#finished.shift();
        this.#addOutput(s3Url(s3.bucket, key));
      }
      return;
    }
    for (const list of [this.#prepared, this.#finished]) {
      while (list.length) {
        const { tempPath, finalPath } = list[0]!;
        await renameIntoPlace(tempPath, finalPath);
        this.#temps.delete(tempPath);
        list.shift();
        this.#addOutput(finalPath);
      }
    }
  }

  #addOutput(finalPath: string): void {
    if (this.#outputSet.has(finalPath)) return;
    this.#outputSet.add(finalPath);
    this.#outputs.push(finalPath);
  }

  async commit(): Promise<void> {
    if (this.#state !== 'open') return;
    // A single file is renamed into place only at close() (durableCommits is false).
    if (this.#single) return;
    for (const part of [...this.#open.values()]) await this.#finishPart(part);
    await this.#publish();
  }

  /** Finishes every open part under its temporary name, durably, and names them in a token. */
  async #prepareCommit(): Promise<CommitToken | S3CommitToken> {
    if (this.#state === 'aborted')
      throw new SluiceError('SLUICE_SINK_IO', 'prepareCommit() after abort()', { retriable: false });
    for (const part of [...this.#open.values()]) await this.#finishPart(part);
    if (this.#s3) {
      // Staged files need no fsync: they are in S3 (as uploaded parts) before the token is returned.
      this.#dirtyDirs.clear();
      return this.#prepareS3(this.#s3);
    }
    const files = this.#finished;
    this.#finished = [];
    for (const f of files) {
      this.#temps.delete(f.tempPath);
      this.#prepared.push(f);
    }
    // The checkpoint will name these files: their folder entries must be on disk before it is saved.
    const dirs = [...this.#dirtyDirs];
    this.#dirtyDirs.clear();
    try {
      await Promise.all(dirs.map((d) => syncPath(d, 'r', true)));
    } catch (err) {
      throw new SluiceError('SLUICE_SINK_IO', `cannot sync ${this.#root}: ${errorText(err)}`, { cause: err });
    }
    const token: CommitToken = {
      sink: 'file',
      run_id: this.#runId,
      root: this.#root,
      files: files.map((f) => ({ temp: f.tempPath, final: f.finalPath })),
    };
    this.#issued.add(token);
    return token;
  }

  /**
   * s3:// paths: uploads every finished part as the parts of a multipart upload for its final key,
   * left open, and names the uploads in the token; the local files then go. Nothing is visible
   * until commitPrepared completes the uploads. On failure the uploads made so far are aborted and
   * the finished files stay, so a retry uploads them again.
   */
  async #prepareS3(s3: S3Target): Promise<S3CommitToken> {
    const files: S3TokenFile[] = [];
    const made: PreparedUpload[] = [];
    try {
      for (const { tempPath, finalPath } of this.#finished) {
        const key = this.#keyOf(finalPath);
        if ((await fsp.stat(tempPath)).size === 0) {
          files.push({ key, empty: true });
          continue;
        }
        const upload = await s3.conn.prepareUpload(s3.bucket, key, tempPath);
        made.push(upload);
        this.#unissued.add(upload);
        if (this.#state === 'aborted') throw new Error('the sink was aborted');
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
    for (const { tempPath } of this.#finished) {
      await unlinkQuietly(tempPath);
      this.#temps.delete(tempPath);
    }
    this.#finished = [];
    this.#preparedS3.push(...files);
    for (const upload of made) this.#unissued.delete(upload);
    const token: S3CommitToken = {
      sink: 'file',
      store: 's3',
      run_id: this.#runId,
      root: s3Url(s3.bucket, s3.key),
      files,
    };
    this.#issued.add(token);
    return token;
  }

  /** Aborts an upload no token names; a store that cannot abort keeps it, invisible. */
  async #abortUpload(upload: PreparedUpload): Promise<void> {
    const s3 = this.#s3!;
    this.#unissued.delete(upload);
    try {
      await s3.conn.abortUpload(s3.bucket, upload.key, upload.upload_id);
    } catch (err) {
      this.#ctx.logger[isUnsupported(err) ? 'debug' : 'warn'](
        'cannot abort an unpublished multipart upload',
        {
          key: upload.key,
          upload_id: upload.upload_id,
          error: errorText(err),
        },
      );
    }
  }

  /**
   * s3:// paths: completes the token's uploads (each idempotently). On recovery, the uploads the
   * killed attempt started after its last checkpoint (its run's part names, not in the token) are
   * aborted: they hold records the resumed run writes again. They were never visible either way.
   */
  async #commitPreparedS3(value: unknown, recovery: boolean): Promise<void> {
    const token = parseS3Token(value);
    const { bucket, key: prefix } = parseS3Url(token.root, 'SLUICE_CHECKPOINT');
    for (const file of token.files) await this.#publishS3(file, bucket);
    const published = new Set(token.files.map((f) => ('empty' in f ? `${f.key}\n` : f.upload_id)));
    this.#preparedS3 = this.#preparedS3.filter(
      (f) => !published.has('empty' in f ? `${f.key}\n` : f.upload_id),
    );
    if (!recovery) return;
    const ours = partNamePattern(token.run_id);
    let aborted = 0;
    try {
      for await (const upload of this.#s3!.conn.listUploads(bucket, prefix)) {
        if (!ours.test(path.posix.basename(upload.key)) || published.has(upload.uploadId)) continue;
        await this.#s3!.conn.abortUpload(bucket, upload.key, upload.uploadId);
        aborted++;
      }
    } catch (err) {
      // Harmless: an incomplete upload is never visible (a lifecycle rule can expire them).
      this.#ctx.logger[isUnsupported(err) ? 'debug' : 'warn'](
        'cannot abort the multipart uploads an earlier attempt left unfinished',
        { path: token.root, error: errorText(err) },
      );
    }
    this.#ctx.logger.info('published the output an earlier attempt prepared for its last checkpoint', {
      path: token.root,
      files: token.files.length,
      aborted_uploads: aborted,
    });
  }

  /**
   * Renames the token's files into place; a file already renamed is left as it is. A token this
   * instance did not hand out comes from a checkpoint: an earlier attempt was killed, and that
   * attempt's temporary files the token does not name hold records after the checkpoint, which the
   * resumed run writes again; they are deleted.
   */
  async #commitPrepared(value: unknown): Promise<void> {
    const recovery = !(typeof value === 'object' && value !== null && this.#issued.has(value));
    if ((value as { store?: unknown } | null)?.store === 's3') {
      if (!this.#s3)
        throw new SluiceError(
          'SLUICE_CHECKPOINT',
          `the checkpoint holds output prepared for ${String((value as { root?: unknown }).root)}, but this sink writes to ${this.#root}; run the pipeline from the start`,
          { details: { token: value } },
        );
      return this.#commitPreparedS3(value, recovery);
    }
    const token = parseToken(value);
    for (const { temp, final } of token.files) {
      try {
        await renameIntoPlace(temp, final);
      } catch (err) {
        if (errnoCode((err as Error).cause) !== 'ENOENT' || !(await exists(final))) throw err;
      }
      this.#addOutput(final);
    }
    const published = new Set(token.files.map((f) => f.temp));
    this.#prepared = this.#prepared.filter((f) => !published.has(f.tempPath));
    if (!recovery) return;
    const removed = await removeTemporaryFiles(token.root, token.run_id);
    this.#ctx.logger.info('published the output an earlier attempt prepared for its last checkpoint', {
      path: token.root,
      files: token.files.length,
      removed_temporary_files: removed,
    });
  }

  /** Commits everything, prepared parts included, and releases resources. */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    try {
      if (this.#single) {
        const part = this.#open.get('') ?? (this.#format === 'parquet' ? undefined : await this.#newPart(''));
        if (part) await this.#finishPart(part);
        else this.#ctx.logger.warn('no records: the Parquet file is not written', { path: this.#root });
      } else {
        for (const part of [...this.#open.values()]) await this.#finishPart(part);
      }
      await this.#publish();
      this.#state = 'closed';
    } finally {
      if (this.#state === 'closed') await this.#release();
    }
  }

  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    const parts = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(parts.map((p) => p.writer?.destroy()));
    this.#finished = [];
    // Prepared parts stay: a saved checkpoint may name them, and a resumed run renames them.
    await Promise.all([...this.#temps].map(unlinkQuietly));
    this.#temps.clear();
    // Folders this sink created and left empty go too, deepest first.
    for (const dir of [...this.#createdDirs].sort((a, b) => b.length - a.length))
      await fsp.rmdir(dir).catch(() => {});
    // Uploads a prepareCommit in flight made: no token names them. Prepared ones stay, as above.
    await Promise.all([...this.#unissued].map((u) => this.#abortUpload(u)));
    await this.#release();
  }

  /** DuckDB, and for s3:// paths the staging folder and the S3 client. */
  async #release(): Promise<void> {
    const duckdb = this.#duckdb;
    this.#duckdb = undefined;
    if (duckdb) (await duckdb.catch(() => undefined))?.close();
    if (this.#s3) {
      await fsp.rm(this.#s3.staging, { recursive: true, force: true });
      this.#s3.conn.close();
    }
  }
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}

async function unlinkQuietly(p: string): Promise<void> {
  await fsp.unlink(p).catch(() => {});
}

async function renameIntoPlace(tempPath: string, finalPath: string): Promise<void> {
  try {
    await fsp.rename(tempPath, finalPath);
  } catch (err) {
    throw new SluiceError('SLUICE_SINK_IO', `cannot rename ${tempPath} to ${finalPath}: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/** fsync of a file or, with `dir`, of a folder's entries (where the platform can). */
async function syncPath(p: string, flags: string, dir = false): Promise<void> {
  const handle = await fsp.open(p, flags);
  try {
    await handle.sync();
  } catch (err) {
    if (!dir || !['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes(errnoCode(err) ?? '')) throw err;
  } finally {
    await handle.close();
  }
}

/**
 * A commit token from a checkpoint, checked: only a hidden `.NAME.inprogress` file is ever renamed,
 * to NAME in the same folder, under the sink's folder.
 */
function parseToken(value: unknown): CommitToken {
  const parsed = commitTokenSchema.safeParse(value);
  const bad = (why: string) =>
    new SluiceError('SLUICE_CHECKPOINT', `not a file sink commit token: ${why}`, {
      details: { token: value },
    });
  if (!parsed.success) throw bad(parsed.error.issues[0]?.message ?? 'unexpected content');
  const root = path.resolve(parsed.data.root);
  for (const { temp, final } of parsed.data.files) {
    const inside = path.relative(root, final);
    if (
      path.dirname(temp) !== path.dirname(final) ||
      path.basename(temp) !== `.${path.basename(final)}.inprogress` ||
      inside.startsWith('..') ||
      path.isAbsolute(inside)
    )
      throw bad(`${temp} → ${final} is not a part file of ${root}`);
  }
  return parsed.data;
}

/**
 * Deletes the temporary files (`.part-RUN-SEQ.*.inprogress`, staging files included) that the run
 * `runId` left under `root`, at any depth. Only that run's names: other runs may be writing there.
 * Returns how many were deleted.
 */
async function removeTemporaryFiles(root: string, runId: string): Promise<number> {
  const ours = new RegExp(`^\\.part-${escapeRegExp(runId)}-\\d+\\..*\\.inprogress$`);
  const names = await fsp.readdir(root, { recursive: true }).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return [] as string[];
    throw err;
  });
  const stale = names.filter((n) => ours.test(path.basename(n)));
  await Promise.all(stale.map((n) => unlinkQuietly(path.join(root, n))));
  return stale.length;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
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

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export async function createFileSink(config: FileSinkConfig, ctx: ComponentContext): Promise<FileSink> {
  if (!isS3Url(config.path)) return new FileSink(config, ctx);
  const s3 = new S3Connection(s3OptionsFromConfig(config.s3), 'SLUICE_SINK_IO');
  try {
    // A missing bucket is told now, not at the first checkpoint.
    await s3.requireBucket(parseS3Url(config.path, 'SLUICE_SINK_IO').bucket);
  } catch (err) {
    s3.close();
    throw err;
  }
  return new FileSink(config, ctx, s3);
}

export { type FileSinkConfig, fileSink, fileSinkConfig, isSingleFilePath } from './sink-definition.ts';
