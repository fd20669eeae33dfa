/**
 * The file sink: part files in a folder (rolled, Hive-partitioned) or one file, on local disk or
 * S3. It groups records by partition and delegates: the part writer (part-writer.ts) encodes and
 * finishes files under hidden names; a committer (commit/local.ts, commit/s3.ts) publishes them,
 * in two phases with the checkpoints for a folder. A single file has no two-phase commit: it is
 * published only at close().
 */
import path from 'node:path';
import { compressionFromPath } from '../../formats/compression.ts';
import { SluiceError } from '../../sdk/errors.ts';
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
import { isS3Url, parseS3Url, S3Connection, s3OptionsFromConfig } from '../s3/client.ts';
import { type Committer, OutputList } from './commit/committer.ts';
import { LocalCommitter } from './commit/local.ts';
import { S3Committer, s3Target } from './commit/s3.ts';
import { errorText } from './fs-util.ts';
import { PartWriter } from './part-writer.ts';
import { encodePartitionValue, formatFromPath } from './paths.ts';
import { type FileSinkConfig, isSingleFilePath } from './sink-definition.ts';

export { parseSize } from '../../spec/size.ts';
export { type FileSinkConfig, fileSink, fileSinkConfig, isSingleFilePath } from './sink-definition.ts';

class FileSink implements SinkInstance {
  readonly #ctx: ComponentContext;
  readonly #single: boolean;
  /** The local folder or file written (for an s3:// path, in the staging folder). */
  readonly #root: string;
  readonly #partitionBy: string[] | undefined;
  readonly #writer: PartWriter;
  readonly #committer: Committer;
  readonly #outputs = new OutputList();
  /** The tokens this instance handed out: any other token is a recovery. */
  readonly #issued = new WeakSet<object>();
  /**
   * Two-phase commit, for directory paths only: a single file is renamed into place only at
   * close(), so it has nothing to publish at a checkpoint.
   */
  readonly prepareCommit?: () => Promise<object>;
  readonly commitPrepared?: (token: unknown) => Promise<void>;
  /**
   * False for a single file: until close() its records are only in a hidden temporary file that a
   * resumed run (another run id) cannot take over, so the engine neither checkpoints nor resumes.
   */
  readonly durableCommits: boolean;
  #state: 'open' | 'closed' | 'aborted' = 'open';

  constructor(config: FileSinkConfig, ctx: ComponentContext, s3?: S3Connection) {
    this.#ctx = ctx;
    this.#single = isSingleFilePath(config.path);
    const runId = ctx.runId.replace(/[^A-Za-z0-9._-]/g, '_') || 'run';
    const store = s3 ? s3Target(config.path, this.#single, s3) : undefined;
    this.#root = store ? store.localRoot : path.resolve(ctx.baseDir, config.path);
    const inferred = formatFromPath(config.path);
    const format = config.format ?? inferred!.format;
    this.#partitionBy = config.partition_by;
    this.#writer = new PartWriter({
      root: this.#root,
      single: this.#single,
      format,
      compression:
        format === 'parquet'
          ? 'none'
          : (config.compression ?? (this.#single ? compressionFromPath(config.path) : 'none')),
      tsv: this.#single && inferred?.tsv === true,
      csv: config.csv,
      parquet: config.parquet,
      maxRecords: config.roll?.max_records ?? Number.POSITIVE_INFINITY,
      maxBytes:
        config.roll?.max_bytes !== undefined ? parseSize(config.roll.max_bytes) : Number.POSITIVE_INFINITY,
      partitioned: this.#partitionBy !== undefined,
      runId,
      nameTaken: (finalPath) => this.#committer.nameTaken(finalPath),
      aborted: () => this.#state === 'aborted',
    });
    this.#committer = store
      ? new S3Committer(this.#writer, store.target, {
          single: this.#single,
          runId,
          outputs: this.#outputs,
          logger: ctx.logger,
          aborted: () => this.#state === 'aborted',
        })
      : new LocalCommitter(this.#writer, this.#root, runId, this.#outputs, ctx.logger);
    this.durableCommits = !this.#single;
    if (!this.#single) {
      this.prepareCommit = () => this.#prepareCommit();
      this.commitPrepared = (token) => this.#commitPrepared(token);
    }
  }

  outputs(): string[] {
    return this.#outputs.list();
  }

  async write(batch: SluiceRecord[], schema?: RecordSchema): Promise<SinkWriteResult | undefined> {
    if (this.#state !== 'open')
      throw new SluiceError(
        'SLUICE_SINK_IO',
        `write() after ${this.#state === 'closed' ? 'close()' : 'abort()'}`,
        { retriable: false },
      );
    this.#writer.declare(schema);
    const rejected: Rejection[] = [];
    if (!this.#partitionBy) {
      await this.#writer.write('', batch, undefined, rejected);
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
      for (const [dir, group] of groups) await this.#writer.write(dir, group.records, group.values, rejected);
    }
    return rejected.length ? { rejected } : undefined;
  }

  async commit(): Promise<void> {
    if (this.#state !== 'open') return;
    // A single file is renamed into place only at close() (durableCommits is false).
    if (this.#single) return;
    await this.#writer.finishAll();
    await this.#committer.publish();
  }

  /** Finishes every open part under its temporary name, durably, and names them in a token. */
  async #prepareCommit(): Promise<object> {
    if (this.#state === 'aborted')
      throw new SluiceError('SLUICE_SINK_IO', 'prepareCommit() after abort()', { retriable: false });
    await this.#writer.finishAll();
    const token = await this.#committer.prepare();
    this.#issued.add(token);
    return token;
  }

  /**
   * Publishes the token's files. A token this instance did not hand out comes from a checkpoint:
   * an earlier attempt was killed, and the committer cleans up what that attempt left unnamed.
   */
  async #commitPrepared(value: unknown): Promise<void> {
    const recovery = !(typeof value === 'object' && value !== null && this.#issued.has(value));
    await this.#committer.commitPrepared(value, recovery);
  }

  /** Commits everything, prepared parts included, and releases resources. */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    try {
      if (this.#single) {
        if (!(await this.#writer.finishSingle()))
          this.#ctx.logger.warn('no records: the Parquet file is not written', { path: this.#root });
      } else {
        await this.#writer.finishAll();
      }
      await this.#committer.publish();
      this.#state = 'closed';
    } finally {
      if (this.#state === 'closed') await this.#release();
    }
  }

  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    // Prepared parts stay: a saved checkpoint may name them, and a resumed run publishes them.
    await this.#writer.abort();
    await this.#committer.abort();
    await this.#release();
  }

  /** DuckDB, and for s3:// paths the staging folder and the S3 client. */
  async #release(): Promise<void> {
    await this.#writer.release();
    await this.#committer.release();
  }
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
