/**
 * Counters of the HTTP components, kept by the caller on every attempt (cheap: integer adds) and
 * reported in the run summary under the step's `metrics`.
 */

/** Upper bounds (inclusive, milliseconds) of the attempt latency histogram; the last slot is the rest. */
export const HTTP_LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([
  5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
]);

export type OutcomeClass = '2xx' | '3xx' | '4xx' | '5xx' | 'network' | 'timeout';

export class HttpMetrics {
  /** Attempts (requests sent) by what they ended in. */
  readonly requests: Record<OutcomeClass, number> = {
    '2xx': 0,
    '3xx': 0,
    '4xx': 0,
    '5xx': 0,
    network: 0,
    timeout: 0,
  };
  /** Attempt latency, per bucket (not cumulative). */
  readonly latency = new Array<number>(HTTP_LATENCY_BUCKETS_MS.length + 1).fill(0);
  latencySumMs = 0;
  /** Attempts made after the first of their call (backoff retries and the retry after a 401 refresh). */
  retries = 0;

  /** One attempt that reached the wire, by its outcome, and how long it took. */
  attempt(outcome: OutcomeClass, ms: number): void {
    this.requests[outcome]++;
    let i = 0;
    while (i < HTTP_LATENCY_BUCKETS_MS.length && ms > HTTP_LATENCY_BUCKETS_MS[i]!) i++;
    this.latency[i]!++;
    this.latencySumMs += ms;
  }

  static classOf(status: number): OutcomeClass {
    if (status < 300) return '2xx';
    if (status < 400) return '3xx';
    if (status < 500) return '4xx';
    return '5xx';
  }

  /** The upper bound of the bucket holding quantile q (0..1), or null without observations. */
  quantileMs(q: number): number | null {
    const total = this.latency.reduce((a, b) => a + b, 0);
    if (!total) return null;
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (let i = 0; i < this.latency.length; i++) {
      seen += this.latency[i]!;
      if (seen >= rank) return HTTP_LATENCY_BUCKETS_MS[i] ?? Number.POSITIVE_INFINITY;
    }
    return null;
  }

  toJSON(): Record<string, unknown> {
    const count = this.latency.reduce((a, b) => a + b, 0);
    const bound = (v: number | null) => (v === Number.POSITIVE_INFINITY ? '+Inf' : v);
    return {
      requests: { ...this.requests },
      retries: this.retries,
      latency_ms: {
        buckets: [...HTTP_LATENCY_BUCKETS_MS, '+Inf'],
        counts: [...this.latency],
        count,
        sum: Math.round(this.latencySumMs),
        p50_le: bound(this.quantileMs(0.5)),
        p99_le: bound(this.quantileMs(0.99)),
      },
    };
  }
}

/**
 * One line of an http step's metrics for the CLI summary:
 * `120 requests (2xx 117, 5xx 3), 3 retries, p50 ≤ 25ms, p99 ≤ 250ms; cache 90 hits, 30 misses; ...`
 */
// biome-ignore lint/suspicious/noExplicitAny: the metrics come back from JSON
export function describeHttpMetrics(m: Record<string, any>): string {
  const requests = (m.requests ?? {}) as Record<string, number>;
  const total = Object.values(requests).reduce((a, b) => a + b, 0);
  const classes = Object.entries(requests)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const parts = [`${total} request${total === 1 ? '' : 's'}${classes ? ` (${classes})` : ''}`];
  if (m.retries) parts.push(`${m.retries} retr${m.retries === 1 ? 'y' : 'ies'}`);
  const latency = m.latency_ms;
  if (latency?.count) parts.push(`p50 ≤ ${latency.p50_le}ms, p99 ≤ ${latency.p99_le}ms`);
  const more: string[] = [];
  if (m.cache) more.push(`cache ${m.cache.hits} hits, ${m.cache.joined} joined, ${m.cache.misses} misses`);
  if (m.rate_limit)
    more.push(
      `rate limit ${m.rate_limit.per_second}/s, ${m.rate_limit.waited} waited ${m.rate_limit.wait_ms}ms in all`,
    );
  if (m.breaker)
    more.push(
      `breaker ${m.breaker.state}${m.breaker.opened ? ` (opened ${m.breaker.opened}×, ${m.breaker.refused} calls held or refused)` : ''}`,
    );
  if (m.oauth2)
    more.push(`oauth2 ${m.oauth2.token_fetches} token fetch${m.oauth2.token_fetches === 1 ? '' : 'es'}`);
  return [parts.join(', '), ...more].join('; ');
}
