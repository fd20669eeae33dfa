import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { untilAborted } from '../../formats/batch.ts';
import { type Compression, compressionFromPath, createDecompressor } from '../../formats/compression.ts';
import { csvReadOptionsSchema, decodeCsv } from '../../formats/csv.ts';
import { decodeJsonl } from '../../formats/jsonl.ts';
import { type DuckDB, openDuckDB, parquetRowCount, readParquet } from '../../formats/parquet.ts';
import { defineSource } from '../../sdk/define.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type { ComponentContext, SourceBatch, SourceInstance, SourceProgress } from '../../sdk/types.ts';
import { type FileFormat, FORMATS, formatFromPath, type InputFile, listInputFiles } from './paths.ts';

export const fileSourceConfig = z
  .object({
    path: z
      .string()
      .min(1)
      .describe(
        'A file, a glob (`data/*.csv.gz`, `logs/**/*.jsonl`) or a directory (every file in it, recursively). ' +
          'Files are read one after the other in sorted path order; hidden and `_`-prefixed files are skipped. ' +
          'A relative path resolves against the spec file.',
      ),
    format: z
      .enum(FORMATS)
      .optional()
      .describe(
        'csv, jsonl or parquet. Default: from each file extension, after .gz/.zst: .csv, .tsv (tab-delimited CSV), ' +
          '.jsonl/.ndjson/.json, .parquet.',
      ),
    compression: z
      .enum(['auto', 'none', 'gzip', 'zstd'])
      .default('auto')
      .describe('Compression of csv and jsonl files; auto decides by extension (.gz gzip, .zst zstd).'),
    csv: csvReadOptionsSchema.prefault({}),
  })
  .strict();

export type FileSourceConfig = z.output<typeof fileSourceConfig>;

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

  constructor(config: FileSourceConfig, ctx: ComponentContext, files: PlannedFile[]) {
    this.#config = config;
    this.#ctx = ctx;
    this.#files = files;
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
    const raw = fs.createReadStream(file.absolute, { highWaterMark: 256 * 1024 });
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
      if (file.format === 'csv')
        yield* decodeCsv(chunks, { ...opts, csv: this.#config.csv, defaultDelimiter: file.tsv ? '\t' : ',' });
      else yield* decodeJsonl(chunks, opts);
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
    const { signal, batchSize } = this.#ctx;
    let db: DuckDB;
    let rows = 0;
    try {
      this.#duckdb ??= openDuckDB();
      db = await this.#duckdb;
      rows = await parquetRowCount(db.connection, file.absolute);
    } catch (err) {
      throw parquetReadError(file, err);
    }
    let read = 0;
    const onRows = (n: number) => {
      read += n;
      this.#bytesCurrent = rows > 0 ? Math.min(file.size, Math.round((file.size * read) / rows)) : 0;
    };
    try {
      yield* readParquet(db.connection, file.absolute, {
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
  }
}

export const fileSource = defineSource({
  name: 'file',
  summary: 'Reads CSV, JSON Lines or Parquet files (plain, gzip or zstd): one file, a glob or a directory.',
  description:
    'Files are read in sorted order, each record positioned by its file and line number (row index for Parquet), so a ' +
    'run resumes exactly where it stopped. A malformed line or a value that does not convert to its declared type ' +
    'goes to the errors sink with the file, line and raw text, and reading carries on.',
  config: fileSourceConfig,
  shorthand: 'path',
  examples: [
    {
      title: 'Gzipped CSV files matched by a glob, with typed columns',
      yaml: [
        'path: data/payments-*.csv.gz',
        'csv:',
        '  columns:',
        '    id: bigint',
        '    amount: decimal',
        '    paid_at: timestamp',
        '    refunded: boolean',
      ].join('\n'),
    },
    {
      title: 'Every JSON Lines file in a directory',
      yaml: 'path: events/\nformat: jsonl',
    },
    {
      title: 'A headerless, semicolon-delimited file',
      yaml: [
        'path: legacy/export.txt',
        'format: csv',
        'csv:',
        '  header: false',
        '  delimiter: ";"',
        '  null_values: ["", "NULL"]',
        '  columns:',
        '    code: string',
        '    quantity: integer',
        '    shipped_on: date',
      ].join('\n'),
    },
  ],
  bounded: () => true,
  async create(config, ctx) {
    const files = plan(await listInputFiles(config.path, ctx.baseDir), config);
    return new FileSource(config, ctx, files);
  },
});
