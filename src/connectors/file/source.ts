import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { untilAborted } from '../../formats/batch.ts';
import { type Compression, compressionFromPath, createDecompressor } from '../../formats/compression.ts';
import { csvSchema, decodeCsv } from '../../formats/csv.ts';
import { decodeJsonl } from '../../formats/jsonl.ts';
import { type DuckDB, openDuckDB, parquetRowCount, readParquet } from '../../formats/parquet.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type { ComponentContext, SourceBatch, SourceInstance, SourceProgress } from '../../sdk/types.ts';
import { isS3Url, S3Connection, s3OptionsFromConfig } from '../s3/client.ts';
import {
  type FileFormat,
  FORMATS,
  formatFromPath,
  type InputFile,
  listInputFiles,
  listS3InputFiles,
} from './paths.ts';
import type { FileSourceConfig } from './source-definition.ts';

interface PlannedFile extends InputFile {
  format: FileFormat;
  tsv: boolean;
  compression: Compression;
}

function plan(files: InputFile[], config: FileSourceConfig): PlannedFile[] {
  return files.map((file) => {
    const inferred = formatFromPath(file.absolute);
    const format = config.format ?? inferred?.format;
    if (!format)
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `cannot tell the format of ${file.display} from its extension: set format to one of ${FORMATS.join(', ')} ` +
          '(extensions known: .csv, .tsv, .jsonl, .ndjson, .json, .parquet, optionally followed by .gz or .zst)',
        { retriable: false, details: { file: file.display } },
      );
    const compression: Compression =
      format === 'parquet'
        ? 'none'
        : config.compression === 'auto'
          ? compressionFromPath(file.absolute)
          : config.compression;
    return { ...file, format, tsv: format === 'csv' && inferred?.tsv === true, compression };
  });
}

function parquetReadError(file: PlannedFile, err: unknown): SluiceError {
  return new SluiceError(
    'SLUICE_SOURCE_IO',
    `cannot read ${file.display} as Parquet: ${toSluiceError(err).message}`,
    {
      cause: err,
      retriable: false,
      details: { file: file.display },
    },
  );
}

class FileSource implements SourceInstance {
  readonly #config: FileSourceConfig;
  readonly #ctx: ComponentContext;
  readonly #files: PlannedFile[];
  readonly #bytesTotal: number;
  #bytesDone = 0;
  #bytesCurrent = 0;
  #duckdb: Promise<DuckDB> | undefined;
  #streams = new Set<Readable>();
  #closed = false;
  readonly #s3: S3Connection | undefined;
  /** Where S3 Parquet objects are downloaded to be read (DuckDB reads local files only here). */
  #downloadDir: string | undefined;

  constructor(
    config: FileSourceConfig,
    ctx: ComponentContext,
    files: PlannedFile[],
    s3: S3Connection | undefined,
  ) {
    this.#config = config;
    this.#ctx = ctx;
    this.#files = files;
    this.#s3 = s3;
    this.#bytesTotal = files.reduce((sum, f) => sum + f.size, 0);
  }

  progress(): SourceProgress {
    return { bytesRead: this.#bytesDone + this.#bytesCurrent, bytesTotal: this.#bytesTotal };
  }

  async *read(): AsyncGenerator<SourceBatch> {
    const { signal } = this.#ctx;
    this.#bytesDone = 0;
    for (const file of this.#files) {
      if (signal.aborted || this.#closed) return;
      this.#bytesCurrent = 0;
      const batches = file.format === 'parquet' ? this.#readParquet(file) : this.#readText(file);
      for await (const batch of batches) {
        if (signal.aborted || this.#closed) return;
        yield batch;
      }
      this.#bytesDone += file.size;
      this.#bytesCurrent = 0;
    }
  }

  async *#readText(file: PlannedFile): AsyncGenerator<SourceBatch> {
    const { signal, batchSize } = this.#ctx;
    // An S3 object streams straight from GetObject through the same decompressor and decoder.
    const raw: Readable = file.s3
      ? await this.#s3!.read(file.s3.bucket, file.s3.key, signal)
      : fs.createReadStream(file.absolute, { highWaterMark: 256 * 1024 });
    this.#streams.add(raw);
    const count = (chunk: Buffer | string) => {
      this.#bytesCurrent += chunk.length;
    };
    const decompressor = createDecompressor(file.compression);
    let input: Readable = raw;
    let readError: unknown;
    if (decompressor) {
      this.#streams.add(decompressor);
      // Piped: a second 'data' listener sees the same compressed chunks.
      raw.on('data', count);
      raw.on('error', (err) => {
        readError = err;
        decompressor.destroy(err);
      });
      input = raw.pipe(decompressor);
    }
    const chunks = this.#ioErrors(input, file, decompressor ? undefined : count, () => readError);
    try {
      const opts = { partition: file.display, batchSize, signal };
      if (file.format === 'csv') {
        const batches = decodeCsv(chunks, {
          ...opts,
          csv: this.#config.csv,
          defaultDelimiter: file.tsv ? '\t' : ',',
        });
        const schema = csvSchema(this.#config.csv.columns);
        if (!schema) yield* batches;
        else for await (const batch of batches) yield { ...batch, schema };
      } else yield* decodeJsonl(chunks, opts);
    } finally {
      raw.destroy();
      decompressor?.destroy();
      this.#streams.delete(raw);
      if (decompressor) this.#streams.delete(decompressor);
    }
  }

  /** Chunks of a stream; a read or decompression error becomes a SLUICE_SOURCE_IO naming the file. */
  async *#ioErrors(
    input: Readable,
    file: PlannedFile,
    count: ((chunk: Buffer | string) => void) | undefined,
    readError: () => unknown,
  ): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of untilAborted(input as AsyncIterable<Buffer>, this.#ctx.signal)) {
        count?.(chunk);
        yield chunk;
      }
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const corrupt = file.compression !== 'none' && err !== readError();
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        corrupt
          ? `cannot decompress ${file.display} (${file.compression}): ${reason}`
          : `cannot read ${file.display}: ${reason}`,
        { cause: err, retriable: !corrupt, details: { file: file.display } },
      );
    }
  }

  async *#readParquet(file: PlannedFile): AsyncGenerator<SourceBatch> {
    if (!file.s3) {
      yield* this.#readParquetFile(file, file.absolute);
      return;
    }
    // DuckDB reads S3 itself only through its httpfs extension, which is not bundled and would be
    // fetched from the network on first use: the object is downloaded to a temporary file instead.
    this.#downloadDir ??= await fsp.mkdtemp(path.join(os.tmpdir(), 'sluice-s3-read-'));
    const local = path.join(this.#downloadDir, `${this.#files.indexOf(file)}.parquet`);
    try {
      await this.#s3!.download(file.s3.bucket, file.s3.key, local, this.#ctx.signal);
      yield* this.#readParquetFile(file, local);
    } finally {
      await fsp.rm(local, { force: true });
    }
  }

  async *#readParquetFile(file: PlannedFile, local: string): AsyncGenerator<SourceBatch> {
    const { signal, batchSize } = this.#ctx;
    let db: DuckDB;
    let rows = 0;
    try {
      this.#duckdb ??= openDuckDB();
      db = await this.#duckdb;
      rows = await parquetRowCount(db.connection, local);
    } catch (err) {
      throw parquetReadError(file, err);
    }
    let read = 0;
    const onRows = (n: number) => {
      read += n;
      this.#bytesCurrent = rows > 0 ? Math.min(file.size, Math.round((file.size * read) / rows)) : 0;
    };
    try {
      yield* readParquet(db.connection, local, {
        partition: file.display,
        batchSize,
        signal,
        onRows,
      });
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      throw parquetReadError(file, err);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const stream of this.#streams) stream.destroy();
    this.#streams.clear();
    const duckdb = this.#duckdb;
    this.#duckdb = undefined;
    if (duckdb) (await duckdb.catch(() => undefined))?.close();
    if (this.#downloadDir) await fsp.rm(this.#downloadDir, { recursive: true, force: true });
    this.#s3?.close();
  }
}

export async function createFileSource(config: FileSourceConfig, ctx: ComponentContext): Promise<FileSource> {
  if (!isS3Url(config.path)) {
    const files = plan(await listInputFiles(config.path, ctx.baseDir), config);
    return new FileSource(config, ctx, files, undefined);
  }
  const s3 = new S3Connection(s3OptionsFromConfig(config.s3), 'SLUICE_SOURCE_IO');
  try {
    const files = plan(await listS3InputFiles(config.path, s3), config);
    return new FileSource(config, ctx, files, s3);
  } catch (err) {
    s3.close();
    throw err;
  }
}

export { type FileSourceConfig, fileSource, fileSourceConfig } from './source-definition.ts';
