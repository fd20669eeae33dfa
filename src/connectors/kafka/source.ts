import {
  Admin,
  Consumer,
  FetchIsolationLevels,
  ListOffsetTimestamps,
  type Message,
  type MessagesStream,
  type TopicWithPartitionAndOffset,
} from '@platformatic/kafka';
import { SluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  Rejection,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
  SourceProgress,
} from '../../sdk/types.ts';
import { bootstrapList, kafkaError } from './common.ts';
import { type KafkaSourceConfig, startTimestamp } from './source-definition.ts';

/** How long to wait for data or the end before checking again; also the fetch's long poll. */
const POLL_MS = 250;
/** A streaming read with nothing new yields an empty batch this often (see #batches). */
const IDLE_BATCH_MS = 1000;

type Msg = Message<Buffer, Buffer, Buffer, Buffer>;
type Stream = MessagesStream<Buffer, Buffer, Buffer, Buffer>;

/** The client's key for a topic partition (its offset maps use it). */
const clientKey = (topic: string, partition: number) => `${topic}:${partition}`;
/** Sluice's partition name of a topic partition, in positions and checkpoints. */
export const positionPartition = (topic: string, partition: number) => `${topic}/${partition}`;

export class KafkaSource implements SourceInstance {
  readonly #cfg: KafkaSourceConfig;
  readonly #ctx: ComponentContext;
  readonly #group: string;
  #consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  #stream: Stream | undefined;
  #topics = new Set<string>();
  /** With stop_at_end: per client key, the offset to stop before. */
  #ends: Map<string, bigint> | undefined;
  #recordsTotal: number | undefined;
  /** Per position partition, the next offset committed to the group by this instance. */
  readonly #committed = new Map<string, bigint>();
  #failure: unknown;
  #wake: (() => void) | undefined;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(cfg: KafkaSourceConfig, ctx: ComponentContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#group = cfg.group ?? `sluice-${ctx.pipelineName}`;
  }

  /** The consumer group this source reads in. */
  get group(): string {
    return this.#group;
  }

  progress(): SourceProgress {
    return this.#recordsTotal === undefined ? {} : { recordsTotal: this.#recordsTotal };
  }

  async *read(): AsyncGenerator<SourceBatch> {
    if (this.#started)
      throw new SluiceError('SLUICE_SOURCE_IO', 'a kafka source can be read only once', { retriable: false });
    this.#started = true;
    const { signal } = this.#ctx;
    const onAbort = () => this.#poke();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const stream = await this.#open();
      if (!stream) return;
      yield* this.#batches(stream);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  async #open(): Promise<Stream | undefined> {
    const cfg = this.#cfg;
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: cfg.client_id,
      groupId: this.#group,
      bootstrapBrokers: bootstrapList(cfg.bootstrap_servers),
      autocommit: false,
      maxWaitTime: POLL_MS,
      maxBytes: cfg.fetch_max_bytes,
      maxBytesPerPartition: Math.min(cfg.fetch_max_bytes, 1024 * 1024),
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    this.#consumer = consumer;
    // A failed group rejoin is emitted as 'error': it fails the read instead of the process.
    consumer.on('error', (err: unknown) => this.#fail(err));
    const servers = bootstrapList(cfg.bootstrap_servers).join(',');
    let step = `cannot list the topics of the Kafka cluster at ${servers}`;
    try {
      const topics = await this.#resolveTopics();
      if (this.#closed) return undefined;
      if (!topics.length) {
        if (cfg.stop_at_end) {
          this.#ctx.logger.warn(`kafka: no topic matches ${cfg.topic_pattern}: nothing to read`);
          this.#recordsTotal = 0;
          return undefined;
        }
        throw new SluiceError('SLUICE_SOURCE_IO', `no topic matches topic_pattern ${cfg.topic_pattern}`, {
          retriable: false,
          details: { topic_pattern: cfg.topic_pattern },
        });
      }
      this.#topics = new Set(topics);
      step = `cannot read the metadata of ${topics.join(', ')} from ${servers}`;
      const metadata = await consumer.metadata({ topics });
      const partitions = new Map<string, number[]>();
      for (const topic of topics) {
        const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
        partitions.set(
          topic,
          Array.from({ length: count }, (_, i) => i),
        );
      }
      step = 'cannot read the offsets to start from';
      const starts = await this.#startOffsets(consumer, partitions);
      if (cfg.stop_at_end) {
        step = 'cannot read the ends of the partitions';
        const latest = await consumer.listOffsets({
          topics,
          timestamp: ListOffsetTimestamps.LATEST,
          isolationLevel: FetchIsolationLevels.READ_COMMITTED,
        });
        const ends = new Map<string, bigint>();
        let total = 0n;
        for (const { topic, partition, offset } of starts) {
          const end = latest.get(topic)?.[partition] ?? 0n;
          ends.set(clientKey(topic, partition), end);
          if (end > offset) total += end - offset;
        }
        this.#ends = ends;
        this.#recordsTotal = Number(total);
      }
      if (this.#closed) return undefined;
      step = `cannot join the consumer group ${this.#group}`;
      const stream = await consumer.consume({
        topics,
        mode: 'manual',
        offsets: starts,
        // Offsets the topic no longer keeps (retention) fall back to its start: nothing is skipped.
        fallbackMode: 'earliest',
        autocommit: false,
        maxWaitTime: POLL_MS,
        highWaterMark: Math.max(256, this.#ctx.batchSize * 2),
      });
      this.#stream = stream;
      stream.on('readable', () => this.#poke());
      stream.on('fetch', () => this.#poke());
      stream.on('end', () => this.#poke());
      stream.on('error', (err: unknown) => this.#fail(err));
      return stream;
    } catch (err) {
      if (this.#closed) return undefined;
      throw kafkaError(err, 'SLUICE_SOURCE_IO', step, { group: this.#group, bootstrap_servers: servers });
    }
  }

  /** The topics to read: the list, or the topics matching the pattern now. */
  async #resolveTopics(): Promise<string[]> {
    const cfg = this.#cfg;
    if (cfg.topics) return [...new Set(cfg.topics)];
    const admin = new Admin({
      clientId: cfg.client_id,
      bootstrapBrokers: bootstrapList(cfg.bootstrap_servers),
    });
    try {
      const pattern = new RegExp(`^(?:${cfg.topic_pattern})$`);
      return (await admin.listTopics({ includeInternals: false })).filter((t) => pattern.test(t)).sort();
    } finally {
      await admin.close().catch(() => {});
    }
  }

  /**
   * Where each partition starts: after the offset a resumed run's checkpoint holds, or at the
   * group's committed offset, whichever is further; else at `start_from`.
   */
  async #startOffsets(
    consumer: Consumer<Buffer, Buffer, Buffer, Buffer>,
    partitions: Map<string, number[]>,
  ): Promise<TopicWithPartitionAndOffset[]> {
    const topics = [...partitions.keys()];
    const committed = await consumer.listCommittedOffsets({
      topics: topics.map((topic) => ({ topic, partitions: partitions.get(topic) ?? [] })),
    });
    const resume = this.#ctx.resume ?? {};
    const starts: TopicWithPartitionAndOffset[] = [];
    const missing: TopicWithPartitionAndOffset[] = [];
    for (const [topic, list] of partitions) {
      for (const partition of list) {
        const fromGroup = committed.get(topic)?.[partition] ?? -1n;
        const checkpoint = resume[positionPartition(topic, partition)];
        const fromCheckpoint = checkpoint === undefined ? -1n : BigInt(checkpoint) + 1n;
        const offset = fromGroup > fromCheckpoint ? fromGroup : fromCheckpoint;
        const start = { topic, partition, offset };
        starts.push(start);
        if (offset < 0n) missing.push(start);
      }
    }
    if (missing.length) {
      const startFrom = this.#cfg.start_from;
      const at = startTimestamp(startFrom);
      const byTimestamp = (timestamp: bigint) =>
        consumer.listOffsets({
          topics: [...new Set(missing.map((m) => m.topic))],
          timestamp,
          isolationLevel: FetchIsolationLevels.READ_COMMITTED,
        });
      const first = await byTimestamp(
        at !== undefined
          ? BigInt(at)
          : startFrom === 'latest'
            ? ListOffsetTimestamps.LATEST
            : ListOffsetTimestamps.EARLIEST,
      );
      // No message at or after the timestamp: the partition starts at its end.
      let latest: Awaited<ReturnType<typeof byTimestamp>> | undefined;
      for (const start of missing) {
        let offset = first.get(start.topic)?.[start.partition] ?? -1n;
        if (offset < 0n) {
          latest ??= await byTimestamp(ListOffsetTimestamps.LATEST);
          offset = latest.get(start.topic)?.[start.partition] ?? 0n;
        }
        start.offset = offset;
      }
    }
    return starts;
  }

  async *#batches(stream: Stream): AsyncGenerator<SourceBatch> {
    const { signal, batchSize } = this.#ctx;
    let lastYield = performance.now();
    for (;;) {
      if (signal.aborted || this.#closed) return;
      if (this.#failure !== undefined)
        throw kafkaError(this.#failure, 'SLUICE_SOURCE_IO', 'reading from Kafka failed', {
          group: this.#group,
        });
      const records: SluiceRecord[] = [];
      const rejected: Rejection[] = [];
      while (records.length + rejected.length < batchSize) {
        const message = stream.read() as Msg | null;
        if (message === null) break;
        this.#take(message, records, rejected);
      }
      if (records.length || rejected.length) {
        yield rejected.length ? { records, rejected } : { records };
        lastYield = performance.now();
        continue;
      }
      if (this.#ends && this.#atEnd(stream)) return;
      if (stream.readableEnded || stream.destroyed) {
        if (this.#closed || signal.aborted) return;
        throw new SluiceError('SLUICE_SOURCE_IO', 'the Kafka consumer stopped unexpectedly', {
          details: { group: this.#group },
        });
      }
      // The engine checkpoints between batches: on a quiet topic an empty batch now and then lets
      // the checkpoint (and so the group commit) cover the last records read.
      if (!this.#ends && performance.now() - lastYield >= IDLE_BATCH_MS) {
        yield { records: [] };
        lastYield = performance.now();
        continue;
      }
      await this.#idle();
    }
  }

  /** With stop_at_end: every partition assigned to this member has been read up to its end. */
  #atEnd(stream: Stream): boolean {
    const assignments = this.#consumer?.assignments;
    if (!assignments) return false;
    const next = stream.offsetsToFetch;
    for (const { topic, partitions } of assignments) {
      for (const partition of partitions) {
        const key = clientKey(topic, partition);
        const end = this.#ends?.get(key);
        if (end === undefined) continue; // created after the run started: not part of this batch
        const at = next.get(key);
        if (at === undefined || at < end) return false;
      }
    }
    return true;
  }

  #take(message: Msg, records: SluiceRecord[], rejected: Rejection[]): void {
    const { topic, partition } = message;
    if (this.#ends) {
      const end = this.#ends.get(clientKey(topic, partition));
      if (end === undefined || message.offset >= end) return; // past the end this run stops at
    }
    const cfg = this.#cfg;
    const offset = Number(message.offset);
    const position = { partition: positionPartition(topic, partition), offset };
    const key = message.key === undefined || message.key === null ? null : message.key.toString('utf8');
    const headers: Record<string, string> = {};
    for (const [name, value] of message.headerEntries) {
      if (name) headers[name.toString('utf8')] = value ? value.toString('utf8') : '';
    }
    const timestamp = Number(message.timestamp);
    const raw = message.value;
    let value: Record<string, unknown>;
    if (cfg.format === 'json') {
      if (raw === undefined || raw === null || raw.length === 0) value = {};
      else {
        const text = raw.toString('utf8');
        let parsed: unknown;
        let problem: string | undefined;
        try {
          parsed = JSON.parse(text);
          if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
            problem = `expected a JSON object, found ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`}`;
        } catch (err) {
          problem = `invalid JSON: ${err instanceof Error ? err.message : String(err)}`;
        }
        if (problem !== undefined) {
          rejected.push({
            raw: text,
            position,
            error: new SluiceError('SLUICE_DECODE', `${topic}/${partition}@${offset}: ${problem}`, {
              details: { topic, partition, offset, key },
            }),
          });
          return;
        }
        value = parsed as Record<string, unknown>;
      }
    } else {
      const decoded =
        raw === undefined || raw === null
          ? null
          : cfg.format === 'string'
            ? raw.toString('utf8')
            : raw.toString('base64');
      value = { [cfg.value_field]: decoded };
    }
    const f = cfg.fields;
    if (f.key) value[f.key] = key;
    if (f.headers) value[f.headers] = { ...headers };
    if (f.topic) value[f.topic] = topic;
    if (f.partition) value[f.partition] = partition;
    if (f.offset) value[f.offset] = offset;
    if (f.timestamp) value[f.timestamp] = new Date(timestamp);
    records.push({
      value,
      meta: {
        ...(key === null ? {} : { key }),
        headers,
        position,
        eventTime: timestamp,
      },
    });
  }

  /**
   * Commits to the consumer group the offsets after `positions` (per `<topic>/<partition>`, the
   * last offset whose records the sinks hold): the engine calls it once a checkpoint covering
   * them is saved, so a later run of the group starts after them. A failed commit is logged, not
   * thrown: the next checkpoint commits again, and at worst a later run reads those records twice.
   */
  async commit(positions: Readonly<Record<string, number>>): Promise<void> {
    const consumer = this.#consumer;
    if (!consumer || consumer.closed) return;
    const offsets: { topic: string; partition: number; offset: bigint; leaderEpoch: number }[] = [];
    for (const [name, last] of Object.entries(positions)) {
      const slash = name.lastIndexOf('/');
      const topic = name.slice(0, slash);
      const partition = Number(name.slice(slash + 1));
      if (slash < 0 || !this.#topics.has(topic) || !Number.isInteger(partition)) continue;
      const next = BigInt(last) + 1n;
      if ((this.#committed.get(name) ?? -1n) >= next) continue;
      offsets.push({ topic, partition, offset: next, leaderEpoch: -1 });
    }
    if (!offsets.length) return;
    try {
      await consumer.commit({ offsets });
      for (const o of offsets) this.#committed.set(positionPartition(o.topic, o.partition), o.offset);
    } catch (err) {
      const error = kafkaError(err, 'SLUICE_SOURCE_IO', 'cannot commit consumer-group offsets');
      this.#ctx.logger.warn(
        `kafka: ${error.message}; the next checkpoint commits again (a new run may read some records twice)`,
        { group: this.#group },
      );
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#poke();
    this.#closing ??= (async () => {
      await this.#stream?.close().catch(() => {});
      await this.#consumer?.close(true).catch(() => {});
    })();
    return this.#closing;
  }

  #fail(err: unknown): void {
    this.#failure ??= err;
    this.#poke();
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Waits for data, an error, the signal or close(), at most POLL_MS (the end check polls). */
  #idle(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#poke(), POLL_MS);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

export {
  type KafkaSourceConfig,
  kafkaSource,
  kafkaSourceConfig,
  startTimestamp,
} from './source-definition.ts';
