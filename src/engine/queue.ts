/**
 * A bounded async queue joining two operators. A full queue makes `push` wait, so a slow consumer
 * slows its producer and memory stays bounded by capacity × batch size per edge.
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  readonly capacity: number;
  readonly #items: T[] = [];
  #closed = false;
  #failure: unknown;
  #failed = false;
  #waitingPush: (() => void)[] = [];
  #waitingPull: (() => void)[] = [];

  constructor(capacity: number) {
    if (!(capacity >= 1)) throw new RangeError('queue capacity must be at least 1');
    this.capacity = capacity;
  }

  get size(): number {
    return this.#items.length;
  }

  async push(item: T): Promise<void> {
    while (this.#items.length >= this.capacity && !this.#failed && !this.#closed) {
      await new Promise<void>((resolve) => this.#waitingPush.push(resolve));
    }
    if (this.#failed) throw this.#failure;
    if (this.#closed) throw new Error('push to a closed queue');
    this.#items.push(item);
    this.#wake(this.#waitingPull);
  }

  /** No more items: the consumer drains what is queued, then its iteration ends. */
  close(): void {
    this.#closed = true;
    this.#wake(this.#waitingPull);
    this.#wake(this.#waitingPush);
  }

  /** Ends both sides at once: pending and future push and pull calls throw `reason`. */
  fail(reason: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#failure = reason;
    this.#items.length = 0;
    this.#wake(this.#waitingPull);
    this.#wake(this.#waitingPush);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.#failed) throw this.#failure;
      if (this.#items.length) {
        const item = this.#items.shift() as T;
        this.#wake(this.#waitingPush);
        yield item;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => this.#waitingPull.push(resolve));
    }
  }

  #wake(waiters: (() => void)[]): void {
    const all = waiters.splice(0);
    for (const resolve of all) resolve();
  }
}
