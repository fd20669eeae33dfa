import { SluiceError } from '../sdk/errors.ts';
import type { Position, Rejection, SinkInstance, SluiceRecord } from '../sdk/types.ts';
import type { Settings } from '../spec/schema.ts';
import type { OperatorKind, OperatorStats } from './stats.ts';

/** The value of an error record, as written to the errors sink (one per failed record). */
export interface ErrorRecordValue {
  time: string;
  pipeline: string;
  run_id: string;
  stage: OperatorKind;
  operator: string;
  component: string;
  code: string;
  message: string;
  retriable: boolean;
  attempts: number;
  position: Position | null;
  details: Record<string, unknown> | null;
  record: Record<string, unknown> | null;
  raw: string | null;
}

export interface ErrorOrigin {
  stage: OperatorKind;
  operator: string;
  component: string;
}

/**
 * Turns rejections into error records and writes them to the errors sink, one write at a time.
 * Also enforces the error policy.
 *
 * Each checkpoint commits exactly the error records of the records it covers. An operator reports
 * with its epoch: how many barriers it has forwarded. Records of the epoch the sinks are in (the
 * open epoch) are written at once; operators await `report` before they forward anything, so when
 * a barrier reaches the sinks every error from before it is written and commits with it. Upstream
 * operators run ahead of the sinks: their records of later epochs are held here until the sinks
 * pass the barriers before them (`advance`), so a checkpoint never commits an error record of a
 * record it does not cover, which a resumed run would report again. What is held is bounded by the
 * records in flight in the queues.
 */
export class ErrorChannel {
  readonly stats: OperatorStats;
  readonly byCode = new Map<string, number>();
  #total = 0;
  #chain: Promise<void> = Promise.resolve();
  readonly #sink: SinkInstance;
  readonly #policy: Settings['error_policy'];
  readonly #pipeline: string;
  readonly #runId: string;
  readonly #recordsRead: () => number;
  readonly #onLimit: (error: SluiceError) => void;
  #limitHit = false;
  /** The epoch of the sinks: error records up to it are written at once. */
  #open = 0;
  /** Error records of later epochs, by epoch, waiting for the sinks to get there. */
  readonly #held = new Map<number, SluiceRecord[]>();

  constructor(options: {
    sink: SinkInstance;
    stats: OperatorStats;
    policy: Settings['error_policy'];
    pipeline: string;
    runId: string;
    recordsRead: () => number;
    onLimit: (error: SluiceError) => void;
  }) {
    this.#sink = options.sink;
    this.stats = options.stats;
    this.#policy = options.policy;
    this.#pipeline = options.pipeline;
    this.#runId = options.runId;
    this.#recordsRead = options.recordsRead;
    this.#onLimit = options.onLimit;
  }

  get total(): number {
    return this.#total;
  }

  /**
   * Reports rejections of an operator in `epoch` (default: the sinks' epoch). Resolves once they are
   * written, or at once when they are held for a later epoch.
   */
  report(origin: ErrorOrigin, rejections: readonly Rejection[], epoch = this.#open): Promise<void> {
    if (!rejections.length) return Promise.resolve();
    const time = new Date().toISOString();
    const records: SluiceRecord[] = rejections.map((r) => ({
      value: this.#toValue(origin, r, time) as unknown as Record<string, unknown>,
      meta: {},
    }));
    this.#total += rejections.length;
    for (const r of rejections) this.byCode.set(r.error.code, (this.byCode.get(r.error.code) ?? 0) + 1);
    if (epoch > this.#open) {
      const held = this.#held.get(epoch);
      if (held) held.push(...records);
      else this.#held.set(epoch, records);
      this.#checkPolicy(false);
      return Promise.resolve();
    }
    const write = this.#write(records);
    this.#checkPolicy(false);
    return write;
  }

  /**
   * The sinks passed a barrier (or, with Infinity, the input ended or the run failed): writes the
   * held records up to `epoch`, in epoch order. Resolves once they are written.
   */
  advance(epoch: number): Promise<void> {
    this.#open = Math.max(this.#open, epoch);
    const writes: Promise<void>[] = [];
    for (const e of [...this.#held.keys()].sort((a, b) => a - b)) {
      if (e > this.#open) break;
      writes.push(this.#write(this.#held.get(e)!));
      this.#held.delete(e);
    }
    return Promise.all(writes).then(() => {});
  }

  #write(records: SluiceRecord[]): Promise<void> {
    const write = this.#chain.then(async () => {
      const started = performance.now();
      const result = await this.#sink.write(records);
      const refused = result?.rejected?.length ?? 0;
      this.stats.count(records.length, records.length - refused, refused, performance.now() - started);
      if (refused) {
        throw new SluiceError(
          'SLUICE_SINK_IO',
          `the errors sink refused ${refused} error record(s): ${result?.rejected?.[0]?.error.message}`,
        );
      }
    });
    this.#chain = write.catch(() => {});
    return write;
  }

  /** Waits for every error record reported so far to be written. */
  settled(): Promise<void> {
    return this.#chain;
  }

  /** The rate limit is judged on totals once the input has ended, whatever `min_records` says. */
  checkAtEnd(): void {
    this.#checkPolicy(true);
  }

  #checkPolicy(atEnd: boolean): void {
    if (this.#limitHit) return;
    const { max_errors, max_error_rate, min_records } = this.#policy;
    const read = this.#recordsRead();
    if (max_errors !== undefined && this.#total > max_errors) {
      this.#limitHit = true;
      this.#onLimit(
        new SluiceError(
          'SLUICE_ERROR_LIMIT',
          `max_errors ${max_errors} exceeded: ${this.#total} records failed of ${read} read`,
          { details: { limit: 'max_errors', max_errors, failed: this.#total, read } },
        ),
      );
      return;
    }
    if (max_error_rate !== undefined && read > 0 && (atEnd || read >= min_records)) {
      const rate = this.#total / read;
      if (rate > max_error_rate) {
        this.#limitHit = true;
        this.#onLimit(
          new SluiceError(
            'SLUICE_ERROR_LIMIT',
            `max_error_rate ${max_error_rate} exceeded: ${this.#total} of ${read} records failed (${(rate * 100).toFixed(2)}%)`,
            { details: { limit: 'max_error_rate', max_error_rate, failed: this.#total, read, rate } },
          ),
        );
      }
    }
  }

  #toValue(origin: ErrorOrigin, rejection: Rejection, time: string): ErrorRecordValue {
    const { error } = rejection;
    return {
      time,
      pipeline: this.#pipeline,
      run_id: this.#runId,
      stage: origin.stage,
      operator: origin.operator,
      component: origin.component,
      code: error.code,
      message: error.message,
      retriable: error.retriable,
      attempts: rejection.attempts ?? 1,
      position: rejection.position ?? rejection.record?.meta.position ?? null,
      details: error.details ?? null,
      record: rejection.record?.value ?? null,
      raw: rejection.raw ?? null,
    };
  }
}
