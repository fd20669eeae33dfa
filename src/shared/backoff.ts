/**
 * The one exponential backoff of Sluice's retries and restarts: a sink's write retries (engine),
 * a run's restarts after a retriable failure (runner) and a job's restarts (server supervisor).
 */

export interface Backoff {
  /** The wait before the first retry, in milliseconds. */
  baseMs: number;
  /** No wait is longer than this, in milliseconds. */
  maxMs: number;
  /**
   * `full`: draw the wait uniformly from [0, computed wait), so that many writers failing together
   * do not retry together ("full jitter"). `none` (the default): the computed wait itself, for a
   * restart whose wait is shown to a person.
   */
  jitter?: 'none' | 'full';
}

/** The wait before retry number `retry` (1 for the first): base × 2^(retry − 1), capped at maxMs. */
export function backoffDelay(retry: number, backoff: Backoff, random: () => number = Math.random): number {
  const wait = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, retry - 1));
  return backoff.jitter === 'full' ? random() * wait : wait;
}
