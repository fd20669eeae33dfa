/**
 * Writes the file sink's part files: encodes records (CSV, JSON Lines; Parquet via JSON Lines
 * staging and DuckDB), names and rolls parts, keeps one open part per partition folder, and
 * finishes each under a hidden temporary name in its final folder. Publishing them is a
 * committer's job (commit/); a new output format goes here (and in ../../formats).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Compression, compressionExtension } from '../../formats/compression.ts';
import { createLineEncoder, type LineEncoder } from '../../formats/encode.ts';
import { type DuckDB, openDuckDB, stagedJsonlToParquet, TypeTracker } from '../../formats/parquet.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type { RecordSchema, RecordValue, Rejection, SluiceRecord } from '../../sdk/types.ts';
import { errorText, exists, syncPath, unlinkQuietly } from './fs-util.ts';
import type { FileFormat } from './paths.ts';
import type { FileSinkConfig } from './sink-definition.ts';
import { TextFileWriter } from './writer.ts';

/** Open part files beyond this many (many partitions) are finished, oldest first. */
const MAX_OPEN_FILES = 64;

/** A finished part file: complete under its temporary name, visible once renamed or uploaded. */
export interface FinishedPart {
  tempPath: string;
  finalPath: string;
}

export interface PartWriterOptions {
  /** The folder parts go in, or the single file's path. */
  root: string;
  single: boolean;
  format: FileFormat;
  compression: Compression;
  tsv: boolean;
  csv: FileSinkConfig['csv'];
  parquet: FileSinkConfig['parquet'];
  maxRecords: number;
  maxBytes: number;
  partitioned: boolean;
  runId: string;
  /** Whether the output store has a file of that name already (besides the local folder). */
  nameTaken: (finalPath: string) => Promise<boolean>;
  /** Whether the sink was aborted: a file created meanwhile is deleted at once. */
  aborted: () => boolean;
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

export class PartWriter {
  readonly #o: PartWriterOptions;
  #seq = 0;
  /**
   * Parquet: field types over everything this sink wrote, so that its files (partitions, rolls)
   * agree on one schema as far as the data allows (a file never gets a narrower type than the
   * records seen before it was finished).
   */
  readonly #tracker: TypeTracker | undefined;
  /** Open parts by folder (relative partition path, '' without partitioning). */
  readonly #open = new Map<string, Part>();
  /** Finished parts waiting for a committer, oldest first. */
  finished: FinishedPart[] = [];
  /** Temporary files on disk that are neither committed nor prepared (deleted by abort). */
  readonly #temps = new Set<string>();
  readonly #createdDirs: string[] = [];
  readonly #knownDirs = new Set<string>();
  /** Folders whose entries changed since the last prepareCommit (new temporary files or folders). */
  readonly #dirtyDirs = new Set<string>();
  #duckdb: Promise<DuckDB> | undefined;

  constructor(options: PartWriterOptions) {
    this.#o = options;
    this.#tracker = options.format === 'parquet' ? new TypeTracker() : undefined;
  }

  declare(schema: RecordSchema | undefined): void {
    this.#tracker?.declare(schema);
  }

  /** A committer took this temporary file over (prepared or published): abort() leaves it. */
  handOver(tempPath: string): void {
    this.#temps.delete(tempPath);
  }

  /** The folders whose entries changed since the last call: to sync before a checkpoint names them. */
  takeDirtyDirs(): string[] {
    const dirs = [...this.#dirtyDirs];
    this.#dirtyDirs.clear();
    return dirs;
  }

  async write(
    dir: string,
    records: SluiceRecord[],
    values: RecordValue[] | undefined,
    rejected: Rejection[],
  ): Promise<void> {
    let part = this.#open.get(dir);
    if (part && this.#o.partitioned) {
      // Most recently used last, so the least recently used part is finished first.
      this.#open.delete(dir);
      this.#open.set(dir, part);
    }
    let lines: string[] = [];
    const countBytes = Number.isFinite(this.#o.maxBytes);
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
      if (part.records >= this.#o.maxRecords || part.bytes >= this.#o.maxBytes) {
        await this.#writeText(part, lines);
        lines = [];
        await this.#finishPart(part);
        part = undefined;
      }
    }
    if (part && lines.length) await this.#writeText(part, lines);
  }

  /** Finishes every open part under its temporary name. */
  async finishAll(): Promise<void> {
    for (const part of [...this.#open.values()]) await this.#finishPart(part);
  }

  /**
   * A single file at close: finishes it, empty if nothing was written. False when there is no
   * file to write (Parquet without records).
   */
  async finishSingle(): Promise<boolean> {
    const part = this.#open.get('') ?? (this.#o.format === 'parquet' ? undefined : await this.#newPart(''));
    if (!part) return false;
    await this.#finishPart(part);
    return true;
  }

  async #newPart(dir: string): Promise<Part> {
    if (this.#open.size >= MAX_OPEN_FILES) {
      const oldest = this.#open.values().next().value;
      if (oldest) await this.#finishPart(oldest);
    }
    const { root, single, runId } = this.#o;
    const folder = single ? path.dirname(root) : dir ? path.join(root, dir) : root;
    await this.#ensureDir(folder);
    let finalPath: string;
    let tempPath: string;
    if (single) {
      finalPath = root;
      tempPath = path.join(folder, `.${path.basename(root)}.${runId}.inprogress`);
    } else {
      const ext = `${this.#o.format}${compressionExtension(this.#o.compression)}`;
      for (;;) {
        const name = `part-${runId}-${String(++this.#seq).padStart(5, '0')}.${ext}`;
        finalPath = path.join(folder, name);
        tempPath = path.join(folder, `.${name}.inprogress`);
        // Never reuse the name of a committed file (a resumed run keeps its run id).
        if (!(await exists(finalPath)) && !(await exists(tempPath)) && !(await this.#o.nameTaken(finalPath)))
          break;
      }
    }
    const part: Part = {
      dir,
      finalPath,
      tempPath,
      stagingPath:
        this.#o.format === 'parquet' ? tempPath.replace(/\.inprogress$/, '.staging.inprogress') : undefined,
      encoder: createLineEncoder(this.#o.format === 'csv' ? 'csv' : 'jsonl', {
        header: this.#o.csv.header,
        delimiter: this.#o.csv.delimiter ?? (this.#o.tsv ? '\t' : ','),
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
        if (this.#o.single) await unlinkQuietly(target);
        part.writer = await TextFileWriter.create(target, part.stagingPath ? 'none' : this.#o.compression);
        if (this.#o.aborted()) {
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
      if (!(this.#o.single && this.#o.format !== 'parquet')) return; // nothing written
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
          compression: this.#o.parquet.compression,
          rowGroupSize: this.#o.parquet.row_group_size,
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
    this.finished.push({ tempPath: part.tempPath, finalPath: part.finalPath });
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

  /** Deletes every file not handed to a committer and the folders this writer created and left empty. */
  async abort(): Promise<void> {
    const parts = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(parts.map((p) => p.writer?.destroy()));
    this.finished = [];
    await Promise.all([...this.#temps].map(unlinkQuietly));
    this.#temps.clear();
    // Deepest first.
    for (const dir of [...this.#createdDirs].sort((a, b) => b.length - a.length))
      await fsp.rmdir(dir).catch(() => {});
  }

  /** Closes DuckDB (Parquet). */
  async release(): Promise<void> {
    const duckdb = this.#duckdb;
    this.#duckdb = undefined;
    if (duckdb) (await duckdb.catch(() => undefined))?.close();
  }
}
