/**
 * A response cache: LRU with a TTL (lru-cache), plus single flight: concurrent lookups of a key
 * that is not cached share one load, so a batch with repeated keys makes one call per key.
 */
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import { durationSchema } from '../spec/duration.ts';

export const cacheConfig = z
  .object({
    key: z
      .string()
      .min(1)
      .describe(
        'The cache key, a template filled from the record like the URL: `"{{ user.id }}"`, `"{{ country }}/{{ lang }}"`. Records with the same key share one response, so the key must determine it.',
      ),
    ttl: durationSchema.default('10m').describe('How long a response is kept.'),
    max_entries: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe('Most responses kept; the least recently used go first.'),
  })
  .strict()
  .describe(
    'A response cache in memory, per step and run: records whose key was seen within `ttl` reuse the response, and concurrent records with the same key share one call (single flight). Only responses the record is kept with (2xx, or `on_status: keep`) are cached; failures and drops are not.',
  );

export type CacheConfig = z.output<typeof cacheConfig>;

export type CacheSource = 'hit' | 'miss' | 'joined';

export class ResponseCache<V extends {}> {
  readonly #lru: LRUCache<string, V>;
  readonly #inFlight = new Map<string, Promise<V>>();
  hits = 0;
  misses = 0;
  /** Lookups that found the key loading and waited for that load. */
  joined = 0;

  constructor(options: { ttlMs: number; maxEntries: number }) {
    this.#lru = new LRUCache<string, V>({ max: options.maxEntries, ttl: options.ttlMs });
  }

  get size(): number {
    return this.#lru.size;
  }

  /**
   * The value for `key`: cached, the result of a load under way, or loaded now by `load` (kept
   * when `keep` says so). `load` must not reject.
   */
  async get(
    key: string,
    load: () => Promise<V>,
    keep: (value: V) => boolean,
  ): Promise<{ value: V; source: CacheSource }> {
    const cached = this.#lru.get(key);
    if (cached !== undefined) {
      this.hits++;
      return { value: cached, source: 'hit' };
    }
    const pending = this.#inFlight.get(key);
    if (pending) {
      this.joined++;
      return { value: await pending, source: 'joined' };
    }
    this.misses++;
    const loading = load().then((value) => {
      if (keep(value)) this.#lru.set(key, value);
      return value;
    });
    this.#inFlight.set(key, loading);
    try {
      return { value: await loading, source: 'miss' };
    } finally {
      this.#inFlight.delete(key);
    }
  }

  clear(): void {
    this.#lru.clear();
  }
}
