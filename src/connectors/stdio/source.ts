import type { Readable } from 'node:stream';
import { z } from 'zod';
import { csvReadOptionsSchema, decodeCsv } from '../../formats/csv.ts';
import { decodeJsonl, decodeLines } from '../../formats/jsonl.ts';
import { defineSource } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type { ComponentContext, SourceBatch, SourceInstance, SourceProgress } from '../../sdk/types.ts';

export const stdinSourceConfig = z
  .object({
    format: z
      .enum(['jsonl', 'csv', 'lines'])
      .default('jsonl')
      .describe('jsonl (one JSON object per line), csv, or lines (each line becomes `{ line: "..." }`).'),
    csv: csvReadOptionsSchema.prefault({}),
  })
  .strict();

export type StdinSourceConfig = z.output<typeof stdinSourceConfig>;

const PARTITION = 'stdin';

class StdinSource implements SourceInstance {
  readonly #config: StdinSourceConfig;
  readonly #ctx: ComponentContext;
  readonly #input: AsyncIterable<Buffer | string>;
  #bytesRead = 0;
  #started = false;
  #closed = false;

  constructor(config: StdinSourceConfig, ctx: ComponentContext, input: AsyncIterable<Buffer | string>) {
    this.#config = config;
    this.#ctx = ctx;
    this.#input = input;
  }

  progress(): SourceProgress {
    return { bytesRead: this.#bytesRead };
  }

  async *read(): AsyncGenerator<SourceBatch> {
    if (this.#started)
      throw new SluiceError('SLUICE_SOURCE_IO', 'stdin can be read only once', { retriable: false });
    this.#started = true;
    const { signal, batchSize } = this.#ctx;
    const opts = { partition: PARTITION, batchSize, signal };
    const chunks = this.#counted();
    const batches =
      this.#config.format === 'csv'
        ? decodeCsv(chunks, { ...opts, csv: this.#config.csv })
        : this.#config.format === 'lines'
          ? decodeLines(chunks, opts)
          : decodeJsonl(chunks, opts);
    for await (const batch of batches) {
      if (signal.aborted || this.#closed) return;
      yield batch;
    }
  }

  async *#counted(): AsyncGenerator<Buffer | string> {
    try {
      for await (const chunk of this.#input) {
        this.#bytesRead += chunk.length;
        yield chunk;
      }
    } catch (err) {
      throw new SluiceError(
        'SLUICE_SOURCE_IO',
        `cannot read stdin: ${err instanceof Error ? err.message : String(err)}`,
        {
          cause: err,
          retriable: false,
        },
      );
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A read stopped early may still wait on the stream: let it go.
    const input = this.#input as Partial<Readable>;
    if (this.#started && typeof input.destroy === 'function' && !input.readableEnded) input.destroy();
  }
}

/** The stdin source over any byte stream (tests pass their own). */
export function createStdinSource(
  config: StdinSourceConfig,
  ctx: ComponentContext,
  input: AsyncIterable<Buffer | string> = process.stdin,
): SourceInstance {
  return new StdinSource(config, ctx, input);
}

export const stdinSource = defineSource({
  name: 'stdin',
  summary: 'Reads JSON Lines, CSV or plain text lines from standard input until it ends.',
  description:
    'Records are positioned by line number in the partition `stdin`. A malformed line goes to the errors sink and ' +
    'reading carries on.',
  config: stdinSourceConfig,
  shorthand: 'format',
  examples: [
    { title: 'JSON Lines piped in', yaml: 'format: jsonl' },
    {
      title: 'CSV with typed columns',
      yaml: 'format: csv\ncsv:\n  columns:\n    id: integer\n    price: double',
    },
    { title: 'Raw log lines', yaml: 'format: lines' },
  ],
  bounded: () => true,
  create(config, ctx) {
    return createStdinSource(config, ctx);
  },
});
