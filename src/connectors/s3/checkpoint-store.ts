/**
 * A pipeline's checkpoint kept as one S3 object, `<prefix>/<key>/checkpoint.json`. A PutObject
 * replaces an object atomically (readers see the old or the new content, never part of either),
 * so a save is one PutObject and a crash at any moment leaves the previous checkpoint or the new one.
 */
import { type Checkpoint, type CheckpointStore, parseCheckpoint } from '../../sdk/checkpoint.ts';
import { SluiceError } from '../../sdk/errors.ts';
import { parseS3Url, S3Connection, s3Url } from './client.ts';

export interface S3CheckpointStoreOptions {
  /** An S3-compatible endpoint; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS S3. */
  endpoint?: string;
}

export class S3CheckpointStore implements CheckpointStore {
  readonly bucket: string;
  readonly objectKey: string;
  readonly #conn: S3Connection;

  /**
   * @param url s3://bucket or s3://bucket/prefix: where checkpoints live
   * @param key the pipeline's name: its checkpoint is `<prefix>/<key>/checkpoint.json`
   */
  constructor(url: string, key: string, options: S3CheckpointStoreOptions = {}) {
    const { bucket, key: prefix } = parseS3Url(url, 'SLUICE_CHECKPOINT');
    if (!key || key.includes('/') || key === '.' || key === '..')
      throw new SluiceError(
        'SLUICE_CHECKPOINT',
        `not a checkpoint key: "${key}" (a pipeline name, without /)`,
        { details: { key } },
      );
    this.bucket = bucket;
    const folder = prefix.replace(/\/+$/, '');
    this.objectKey = `${folder ? `${folder}/` : ''}${key}/checkpoint.json`;
    this.#conn = new S3Connection({ endpoint: options.endpoint }, 'SLUICE_CHECKPOINT');
  }

  get location(): string {
    return s3Url(this.bucket, this.objectKey);
  }

  async load(): Promise<Checkpoint | undefined> {
    const text = await this.#conn.readText(this.bucket, this.objectKey);
    return text === undefined ? undefined : parseCheckpoint(text, this.location);
  }

  async save(cp: Checkpoint): Promise<void> {
    await this.#conn.put(this.bucket, this.objectKey, `${JSON.stringify(cp, null, 2)}\n`);
  }

  /** Deletes the checkpoint object (a save leaves nothing else behind). */
  async clear(): Promise<void> {
    await this.#conn.delete(this.bucket, this.objectKey);
  }

  async close(): Promise<void> {
    this.#conn.close();
  }
}
