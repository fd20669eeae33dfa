/**
 * A circuit breaker per origin, on the failure rate of a sliding time window. It sees every
 * attempt (a retry is an attempt): an attempt fails when it ends in a network error, a timeout, or
 * a status that `retry.on` lists; any other response is a success.
 *
 *   closed ──(≥ min_calls in the window and failures/calls ≥ failure_rate)──▶ open
 *   open ──(open_for has passed)──▶ half-open: up to half_open_calls probe attempts go through
 *   half-open ──(all probes succeeded)──▶ closed (the window starts afresh)
 *   half-open ──(a probe failed)──▶ open again, for open_for
 *
 * While it is open (and, for calls beyond the probes, half-open), `when_open: wait` holds calls
 * until they may go; `error` fails them at once with SLUICE_HTTP_CIRCUIT_OPEN.
 */
import { z } from 'zod';
import { SluiceError, toSluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import { durationSchema, formatDuration, parseDuration } from '../spec/duration.ts';

export const breakerConfig = z
  .object({
    failure_rate: z
      .number()
      .gt(0)
      .max(1)
      .default(0.5)
      .describe(
        'The share of failed attempts in the window, from 0 (exclusive) to 1, that opens the circuit.',
      ),
    window: durationSchema.default('10s').describe('The sliding window the failure rate is measured over.'),
    min_calls: z
      .number()
      .int()
      .min(1)
      .default(20)
      .describe(
        'Attempts the window must hold before the circuit may open: a few failures alone do not open it.',
      ),
    open_for: durationSchema
      .default('30s')
      .describe('How long the circuit stays open before probe attempts are let through (half-open).'),
    half_open_calls: z
      .number()
      .int()
      .min(1)
      .default(5)
      .describe(
        'Probe attempts let through when half-open: all must succeed to close the circuit; one failure opens it again.',
      ),
    when_open: z
      .enum(['wait', 'error'])
      .default('wait')
      .describe(
        'What calls do while the circuit is open: wait (held, holding no connection, until probes succeed) or error (the record goes to the errors sink at once with SLUICE_HTTP_CIRCUIT_OPEN, retriable).',
      ),
  })
  .strict()
  .describe(
    'A circuit breaker for the host: when too many attempts fail (network errors, timeouts, statuses in `retry.on`), calls stop reaching it for `open_for`, then a few probes test it. State changes are logged (warn) and counted in the step metrics.',
  );

export type BreakerConfig = z.output<typeof breakerConfig>;
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Whether an attempt may go: `probe` when it is one of the half-open probes. */
export interface Admission {
  probe: boolean;
}

/** The window in this many buckets: the rate is that of the last `window`, to a tenth of it. */
const BUCKETS = 10;

interface Waiter {
  resolve: (admission: Admission) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class CircuitBreaker {
  readonly #origin: string;
  readonly #failureRate: number;
  readonly #minCalls: number;
  readonly #openForMs: number;
  readonly #probes: number;
  readonly #bucketMs: number;
  readonly #whenOpen: 'wait' | 'error';
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #calls = new Array<number>(BUCKETS).fill(0);
  readonly #failures = new Array<number>(BUCKETS).fill(0);
  #bucketIndex = 0;
  #bucketStart: number;
  #state: BreakerState = 'closed';
  #openedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Half-open: probes let through and probes that succeeded. */
  #probesSent = 0;
  #probesOk = 0;
  readonly #waiters: Waiter[] = [];
  /** Transitions, by the state entered; attempts refused while not closed. */
  readonly transitions = { open: 0, 'half-open': 0, closed: 0 };
  refused = 0;

  constructor(
    origin: string,
    cfg: BreakerConfig,
    logger: Logger,
    now: () => number = performance.now.bind(performance),
  ) {
    this.#origin = origin;
    this.#failureRate = cfg.failure_rate;
    this.#minCalls = cfg.min_calls;
    this.#openForMs = parseDuration(cfg.open_for) ?? 30_000;
    this.#probes = cfg.half_open_calls;
    this.#bucketMs = (parseDuration(cfg.window) ?? 10_000) / BUCKETS;
    this.#whenOpen = cfg.when_open;
    this.#logger = logger;
    this.#now = now;
    this.#bucketStart = now();
  }

  get state(): BreakerState {
    return this.#state;
  }

  /**
   * Asks to send an attempt: an Admission at once (synchronous), a promise of one (when_open:
   * wait), or a thrown SLUICE_HTTP_CIRCUIT_OPEN (when_open: error).
   */
  admit(signal?: AbortSignal): Admission | Promise<Admission> {
    if (this.#state === 'closed') return NOT_PROBE;
    if (this.#state === 'half-open' && this.#probesSent < this.#probes) {
      this.#probesSent++;
      return PROBE;
    }
    this.refused++;
    if (this.#whenOpen === 'error') throw this.#openError();
    if (signal?.aborted) return Promise.reject(toSluiceError(signal.reason, 'SLUICE_INTERRUPTED'));
    return new Promise<Admission>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(toSluiceError(signal.reason, 'SLUICE_INTERRUPTED'));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  /** The outcome of an admitted attempt that reached the host. */
  record(admission: Admission, failed: boolean): void {
    if (admission.probe) {
      if (this.#state !== 'half-open') return; // a late probe of an earlier half-open spell
      if (failed) {
        this.#open(`a probe attempt failed`);
        return;
      }
      if (++this.#probesOk >= this.#probes) this.#close();
      return;
    }
    if (this.#state !== 'closed') return; // sent before the circuit opened: already judged
    this.#rotate();
    this.#calls[this.#bucketIndex]!++;
    if (failed) this.#failures[this.#bucketIndex]!++;
    if (!failed) return;
    let calls = 0;
    let failures = 0;
    for (let i = 0; i < BUCKETS; i++) {
      calls += this.#calls[i]!;
      failures += this.#failures[i]!;
    }
    if (calls >= this.#minCalls && failures / calls >= this.#failureRate)
      this.#open(
        `${failures} of the last ${calls} attempts failed (${Math.round((failures / calls) * 100)}%, failure_rate ${this.#failureRate})`,
      );
  }

  /** An admitted attempt that never reached the host (aborted, no token): frees its probe. */
  release(admission: Admission): void {
    if (admission.probe && this.#state === 'half-open') {
      this.#probesSent--;
      this.#admitWaiters();
    }
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const waiter of this.#waiters.splice(0)) {
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(
        new SluiceError('SLUICE_INTERRUPTED', 'the step closed while a call waited for the circuit'),
      );
    }
  }

  #rotate(): void {
    const now = this.#now();
    const steps = Math.floor((now - this.#bucketStart) / this.#bucketMs);
    if (steps <= 0) return;
    for (let k = 0; k < Math.min(steps, BUCKETS); k++) {
      this.#bucketIndex = (this.#bucketIndex + 1) % BUCKETS;
      this.#calls[this.#bucketIndex] = 0;
      this.#failures[this.#bucketIndex] = 0;
    }
    this.#bucketStart += steps * this.#bucketMs;
  }

  #open(why: string): void {
    const again = this.#state === 'half-open';
    this.#state = 'open';
    this.#openedAt = this.#now();
    this.transitions.open++;
    const then = this.#whenOpen === 'wait' ? 'calls wait' : 'calls fail with SLUICE_HTTP_CIRCUIT_OPEN';
    this.#logger.warn(
      `http: circuit to ${this.#origin} ${again ? 'opened again' : 'opened'}: ${why}; ${then} for ${formatDuration(this.#openForMs)}, then ${this.#probes} probe attempts test it`,
      { origin: this.#origin, state: 'open' },
    );
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#halfOpen(), this.#openForMs);
  }

  #halfOpen(): void {
    this.#timer = undefined;
    this.#state = 'half-open';
    this.#probesSent = 0;
    this.#probesOk = 0;
    this.transitions['half-open']++;
    this.#logger.warn(
      `http: circuit to ${this.#origin} half-open: letting ${this.#probes} probe attempts through`,
      { origin: this.#origin, state: 'half-open' },
    );
    this.#admitWaiters();
  }

  #close(): void {
    this.#state = 'closed';
    this.transitions.closed++;
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#bucketStart = this.#now();
    this.#logger.warn(`http: circuit to ${this.#origin} closed: ${this.#probes} probe attempts succeeded`, {
      origin: this.#origin,
      state: 'closed',
    });
    this.#admitWaiters();
  }

  /** Lets waiting calls go: all of them when closed, as many as there are probes when half-open. */
  #admitWaiters(): void {
    while (this.#waiters.length) {
      let admission: Admission;
      if (this.#state === 'closed') admission = NOT_PROBE;
      else if (this.#state === 'half-open' && this.#probesSent < this.#probes) {
        this.#probesSent++;
        admission = PROBE;
      } else return;
      const waiter = this.#waiters.shift()!;
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(admission);
    }
  }

  #openError(): SluiceError {
    const reopens = this.#state === 'open' ? Math.max(0, this.#openedAt + this.#openForMs - this.#now()) : 0;
    return new SluiceError(
      'SLUICE_HTTP_CIRCUIT_OPEN',
      `the circuit to ${this.#origin} is ${this.#state}: too many recent calls failed, so this one was not sent (breaker.when_open: error)`,
      { details: { origin: this.#origin, state: this.#state, retry_in_ms: Math.round(reopens) } },
    );
  }
}

const NOT_PROBE: Admission = Object.freeze({ probe: false });
const PROBE: Admission = Object.freeze({ probe: true });
