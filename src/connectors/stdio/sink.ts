import type { Writable } from 'node:stream';
import { z } from 'zod';
import { csvWriteOptionsSchema } from '../../formats/csv.ts';
import { createLineEncoder, encodeBatch, type LineEncoder } from '../../formats/encode.ts';
import { defineSink } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { SinkInstance, SinkWriteResult, SluiceRecord } from '../../sdk/types.ts';

export const stdoutSinkConfig = z
  .object({
    format: z.enum(['jsonl', 'csv']).default('jsonl').describe('jsonl (one JSON object per line) or csv.'),
    csv: csvWriteOptionsSchema.prefault({}),
  })
  .strict();

export type StdoutSinkConfig = z.output<typeof stdoutSinkConfig>;

/**
 * Whether an output error means the reader went away for good: a closed pipe (`| head`), or the
 * stream closed or destroyed under us. Nothing written after it can reach anyone.
 */
function readerGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED';
}

/** Resolves on 'drain'; rejects if the stream fails or closes first. */
function drained(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown) => {
      out.off('drain', onDrain);
      out.off('error', onError);
      out.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onError = (err: unknown) => done(err);
    const onClose = () =>
      done(Object.assign(new Error('the output was closed'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    out.on('drain', onDrain);
    out.on('error', onError);
    out.on('close', onClose);
  });
}

class StdoutSink implements SinkInstance {
  readonly #out: Writable;
  readonly #encoder: LineEncoder;
  #error: unknown;
  #state: 'open' | 'closed' = 'open';
  readonly #onError = (err: unknown) => {
    this.#error ??= err;
  };

  constructor(config: StdoutSinkConfig, out: Writable) {
    this.#out = out;
    this.#encoder = createLineEncoder(config.format, config.csv);
    // An output error (EPIPE after `| head`) must end the run, not crash the process. The listener
    // stays once an error came: a failed stream may report more.
    out.on('error', this.#onError);
  }

  outputs(): string[] {
    return ['stdout'];
  }

  #failure(): SluiceError {
    if (readerGone(this.#error))
      return new SluiceError(
        'SLUICE_OUTPUT_CLOSED',
        'the reader of stdout closed it: nothing more can be written, so the run stops',
        { cause: this.#error },
      );
    const reason = this.#error instanceof Error ? this.#error.message : String(this.#error);
    return new SluiceError('SLUICE_SINK_IO', `cannot write to stdout: ${reason}`, {
      cause: this.#error,
      retriable: false,
    });
  }

  async write(batch: SluiceRecord[]): Promise<SinkWriteResult | undefined> {
    if (this.#state !== 'open')
      throw new SluiceError('SLUICE_SINK_IO', 'write() after close()', { retriable: false });
    if (this.#error) throw this.#failure();
    const { text, rejected } = encodeBatch(this.#encoder, batch);
    if (text && !this.#out.write(text)) await this.#drain();
    return rejected.length ? { rejected } : undefined;
  }

  async #drain(): Promise<void> {
    try {
      await drained(this.#out);
    } catch (err) {
      this.#error ??= err;
      throw this.#failure();
    }
  }

  /** Waits until everything written so far has left the stream's buffer. */
  async commit(): Promise<void> {
    if (this.#state !== 'open') return;
    if (this.#error) throw this.#failure();
    if (this.#out.writableNeedDrain) await this.#drain();
    if (this.#out.writableLength > 0) {
      // An empty write's callback runs once every chunk queued before it has been written.
      await new Promise<void>((resolve) =>
        this.#out.write('', (err) => {
          if (err) this.#error ??= err;
          resolve();
        }),
      );
      if (this.#error) throw this.#failure();
    }
  }

  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    try {
      await this.commit();
    } finally {
      this.#state = 'closed';
      if (!this.#error) this.#out.off('error', this.#onError);
    }
  }

  /** Nothing to take back: what reached stdout is gone. */
  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closed';
    if (!this.#error) this.#out.off('error', this.#onError);
  }
}

/** The stdout sink over any writable stream (tests pass their own). It never ends the stream. */
export function createStdoutSink(config: StdoutSinkConfig, out: Writable = process.stdout): SinkInstance {
  return new StdoutSink(config, out);
}

export const stdoutSink = defineSink({
  name: 'stdout',
  summary: 'Writes records to standard output as JSON Lines or CSV.',
  description:
    'Output is written batch by batch, waiting when the reader is slow; stdout is never closed. When the reader ' +
    'closes the pipe (`| head`), the run stops reading and ends quietly (SLUICE_OUTPUT_CLOSED, exit 141), ' +
    'without error records.',
  config: stdoutSinkConfig,
  shorthand: 'format',
  examples: [
    { title: 'JSON Lines', yaml: 'format: jsonl' },
    {
      title: 'Tab-separated values without a header',
      yaml: 'format: csv\ncsv:\n  header: false\n  delimiter: "\\t"',
    },
  ],
  create(config) {
    return createStdoutSink(config);
  },
});
