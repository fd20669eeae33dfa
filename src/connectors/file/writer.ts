/**
 * A text file written through an optional compressor, with backpressure and a clean finish
 * (flushed to disk before it is closed).
 */

import { once } from 'node:events';
import type fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { type Compression, createCompressor } from '../../formats/compression.ts';

export class TextFileWriter {
  readonly path: string;
  readonly #file: fs.WriteStream;
  readonly #head: Writable;
  readonly #done: Promise<void>;
  #error: unknown;
  #ended = false;

  private constructor(path: string, file: fs.WriteStream, compression: Compression) {
    this.path = path;
    this.#file = file;
    const compressor = createCompressor(compression);
    this.#head = compressor ?? file;
    this.#done = compressor ? pipeline(compressor, file) : finished(file);
    this.#done.catch((err: unknown) => {
      this.#error ??= err;
    });
  }

  /** Creates `path`, which must not exist yet (EEXIST otherwise). */
  static async create(path: string, compression: Compression): Promise<TextFileWriter> {
    const handle = await fsp.open(path, 'wx');
    const file = handle.createWriteStream({ highWaterMark: 1024 * 1024, flush: true });
    return new TextFileWriter(path, file, compression);
  }

  /** Writes `text`, waiting when the stream's buffer is full. */
  async write(text: string): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#ended) throw new Error(`${this.path} is already finished`);
    if (this.#head.write(text)) return;
    await Promise.race([
      once(this.#head, 'drain'),
      this.#done.then(() => {
        throw new Error(`${this.path} was closed while writing`);
      }),
    ]);
    if (this.#error) throw this.#error;
  }

  /** Flushes everything (compressor trailer included), syncs and closes the file. */
  async finish(): Promise<void> {
    if (!this.#ended) {
      this.#ended = true;
      this.#head.end();
    }
    await this.#done;
    if (!this.#file.closed) await once(this.#file, 'close');
  }

  /** Stops writing at once (the file stays; the caller deletes it). */
  async destroy(): Promise<void> {
    this.#ended = true;
    this.#head.destroy();
    this.#file.destroy();
    await this.#done.catch(() => {});
    if (!this.#file.closed) await once(this.#file, 'close').catch(() => {});
  }
}
