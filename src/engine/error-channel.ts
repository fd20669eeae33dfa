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
 * Operators await `report` before they forward anything, so at a checkpoint barrier every error
 * from before the barrier is already written and commits with it. Also enforces the error policy.
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

  report(origin: ErrorOrigin, rejections: readonly Rejection[]): Promise<void> {
    if (!rejections.length) return Promise.resolve();
    const time = new Date().toISOString();
    const records: SluiceRecord[] = rejections.map((r) => ({
      value: this.#toValue(origin, r, time) as unknown as Record<string, unknown>,
      meta: {},
    }));
    this.#total += rejections.length;
    for (const r of rejections) this.byCode.set(r.error.code, (this.byCode.get(r.error.code) ?? 0) + 1);
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
    this.#checkPolicy(false);
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
