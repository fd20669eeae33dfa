/**
 * A token bucket per origin: calls take a token before each request (each attempt, retries
 * included) and wait, in arrival order, when none is left. The HTTP sink and source reuse it.
 */
import { z } from 'zod';
import { SluiceError, toSluiceError } from '../sdk/errors.ts';

const UNIT_MS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
};
const RATE = /^\s*(\d+(?:\.\d+)?)\s*\/\s*([a-z]+)\s*$/;

/** `2000/s`, `100/min`, `5000/h` as requests per second; undefined when malformed or zero. */
export function parseRate(text: string): number | undefined {
  const match = RATE.exec(text);
  const unit = match && UNIT_MS[match[2]!];
  if (!match || !unit) return undefined;
  const perSecond = (Number(match[1]) * 1000) / unit;
  return perSecond > 0 ? perSecond : undefined;
}

const rateText = z
  .union([z.string(), z.number()])
  .describe('Requests per unit of time: `2000/s`, `100/min` or `5000/h`.');

// The rate is checked after the union, so that a bad rate gets its own message at its own path.
export const rateLimitConfig = z
  .union([
    rateText,
    z
      .object({
        rate: rateText,
        burst: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe(
            'Requests that may go at once after a quiet spell (the bucket size). Default: the rate of 50 ms, at least 1 (`2000/s` → 100, `50/s` → 3).',
          ),
      })
      .strict(),
  ])
  .superRefine((cfg, ctx) => {
    const text = String(typeof cfg === 'object' ? cfg.rate : cfg);
    if (parseRate(text) === undefined)
      ctx.addIssue({
        code: 'custom',
        path: typeof cfg === 'object' ? ['rate'] : [],
        message: `"${text}" is not a rate: write requests per unit, e.g. 2000/s, 100/min or 5000/h (more than 0)`,
      });
  })
  .describe(
    'A per-host rate limit (token bucket) shared by every request to the origin, retries included: `2000/s`, `100/min`, or `{ rate: 2000/s, burst: 200 }`. A request waits for a token (in arrival order); the total wait is in the metrics (`rate_limit.wait_ms`). Over any interval of T seconds at most `burst + rate × T` requests are sent.',
  );

export type RateLimitConfig = z.output<typeof rateLimitConfig>;

/** The rate (per second) and bucket size of a config. */
export function rateLimitOf(cfg: RateLimitConfig): { perSecond: number; burst: number } {
  const perSecond = parseRate(String(typeof cfg === 'object' ? cfg.rate : cfg))!;
  const burst = (typeof cfg === 'object' ? cfg.burst : undefined) ?? Math.max(1, Math.ceil(perSecond / 20));
  return { perSecond, burst };
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  since: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * A token bucket that refills continuously. `take()` is synchronous when a token is there and
 * nobody waits; otherwise waiters are served first come, first served by one timer.
 */
export class TokenBucket {
  readonly perSecond: number;
  readonly burst: number;
  #tokens: number;
  #last: number;
  readonly #waiters: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Total milliseconds calls spent waiting for a token, and how many waited. */
  waitMs = 0;
  waited = 0;

  constructor(perSecond: number, burst: number) {
    this.perSecond = perSecond;
    this.burst = burst;
    this.#tokens = burst;
    this.#last = performance.now();
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.perSecond) / 1000);
    this.#last = now;
  }

  /**
   * Takes a token: undefined when one was there, else a promise resolved when the caller's token
   * comes, rejected with the signal's reason (a SluiceError) when it aborts first.
   */
  take(signal?: AbortSignal): Promise<void> | undefined {
    if (!this.#waiters.length) {
      this.#refill(performance.now());
      if (this.#tokens >= 1) {
        this.#tokens--;
        return undefined;
      }
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, since: performance.now(), signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#timer || !this.#waiters.length) return;
    const missing = Math.max(0, 1 - this.#tokens);
    const delay = Math.max(1, Math.ceil((missing * 1000) / this.perSecond));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#drain();
    }, delay);
  }

  #drain(): void {
    const now = performance.now();
    this.#refill(now);
    while (this.#waiters.length && this.#tokens >= 1) {
      this.#tokens--;
      const waiter = this.#waiters.shift()!;
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      this.waitMs += now - waiter.since;
      this.waited++;
      waiter.resolve();
    }
    this.#schedule();
  }

  /** Fails every waiter (the step is closing). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const waiter of this.#waiters.splice(0)) {
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(new SluiceError('SLUICE_INTERRUPTED', 'the step closed while a call waited for a token'));
    }
  }
}

function abortError(signal: AbortSignal): SluiceError {
  return toSluiceError(signal.reason, 'SLUICE_INTERRUPTED');
}
