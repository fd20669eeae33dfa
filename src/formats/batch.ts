/**
 * Helpers shared by the decoders: batching of records and rejections, and reading chunks of an
 * async iterable until a signal aborts.
 */
import { SluiceError } from '../sdk/errors.ts';
import type { Rejection, SluiceRecord, SourceBatch } from '../sdk/types.ts';

/** What every decoder is told about its input. */
export interface DecodeOptions {
  /** The position partition of every record (a file path as given, `stdin`). */
  partition: string;
  /** Items (records plus rejections) per batch. */
  batchSize: number;
  /** Stops decoding when aborted: the decoder ends without yielding more. */
  signal?: AbortSignal;
}

/**
 * Collects records and rejections into batches of at most `size` items. Decoders feed a whole
 * chunk synchronously and then yield the batches that filled up (`take()`), so no promise is
 * created per record.
 */
export class BatchBuilder {
  readonly #size: number;
  #records: SluiceRecord[] = [];
  #rejected: Rejection[] | undefined;
  #count = 0;
  #ready: SourceBatch[] = [];

  constructor(size: number) {
    this.#size = Math.max(1, Math.floor(size));
  }

  add(record: SluiceRecord): void {
    this.#records.push(record);
    if (++this.#count >= this.#size) this.#flush();
  }

  reject(rejection: Rejection): void {
    this.#rejected ??= [];
    this.#rejected.push(rejection);
    if (++this.#count >= this.#size) this.#flush();
  }

  /** Full batches ready to yield; the partial one stays until more input or `end()`. */
  take(): SourceBatch[] {
    const ready = this.#ready;
    this.#ready = [];
    return ready;
  }

  /** Closes the partial batch too and returns everything left. */
  end(): SourceBatch[] {
    if (this.#count > 0) this.#flush();
    return this.take();
  }

  get pending(): boolean {
    return this.#ready.length > 0;
  }

  #flush(): void {
    const batch: SourceBatch = this.#rejected
      ? { records: this.#records, rejected: this.#rejected }
      : { records: this.#records };
    this.#ready.push(batch);
    this.#records = [];
    this.#rejected = undefined;
    this.#count = 0;
  }
}

/** A SLUICE_DECODE rejection for input that is not a record (`raw` holds the input text). */
export function decodeRejection(
  message: string,
  partition: string,
  line: number,
  raw: string,
  details: Record<string, unknown> = {},
): Rejection {
  const position = { partition, offset: line };
  return {
    raw,
    position,
    error: new SluiceError('SLUICE_DECODE', message, { details: { file: partition, line, ...details } }),
  };
}

const ABORTED = Symbol('aborted');

/**
 * `iterator.next()`, or ABORTED as soon as `signal` aborts. The abort listener lives for this
 * call only: racing every next() against one long-lived promise would keep every result (every
 * chunk) reachable from that promise until it settles, a leak the size of the input.
 */
function nextOrAbort<T>(
  iterator: AsyncIterator<T>,
  signal: AbortSignal,
): Promise<IteratorResult<T> | typeof ABORTED> {
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    iterator.next().then(
      (result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Iterates `source` until it ends or `signal` aborts; on abort it ends at once (even while the
 * source is waiting for input) and returns the source's iterator, which destroys a stream.
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal?: AbortSignal): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      if (signal?.aborted) return;
      const next = signal ? await nextOrAbort(iterator, signal) : await iterator.next();
      if (next === ABORTED) return;
      if (next.done) {
        finished = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (!finished) {
      // A source blocked in next() (stdin) may never settle its return(): do not wait for it then.
      const done = iterator.return?.();
      if (signal?.aborted) done?.catch(() => {});
      else await done;
    }
  }
}

/** Shortens a value for an error message. */
export function excerpt(value: string, max = 80): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}
