import {
  Admin,
  Consumer,
  FetchIsolationLevels,
  ListOffsetTimestamps,
  type Message,
  type MessagesStream,
  type TopicWithPartitionAndOffset,
} from '@platformatic/kafka';
import { z } from 'zod';
import { defineSource } from '../../sdk/define.ts';
import { SluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  Rejection,
  SluiceRecord,
  SourceBatch,
  SourceInstance,
  SourceProgress,
} from '../../sdk/types.ts';
import { bootstrapList, checkBootstrap, connectionFields, kafkaError, TOPIC_NAME } from './common.ts';

/** `2024-05-01`, or a date and time with a zone: `2024-05-01T12:00:00Z`, `...+02:00`. */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/;

/** Milliseconds since the epoch of a `start_from` timestamp; undefined for earliest, latest or junk. */
export function startTimestamp(startFrom: string): number | undefined {
  if (!TIMESTAMP.test(startFrom)) return undefined;
  const ms = Date.parse(startFrom);
  return Number.isNaN(ms) ? undefined : ms;
}

function validPattern(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

const fieldName = z.string().min(1);

export const kafkaSourceConfig = z
  .object({
    ...connectionFields,
    group: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Consumer group id. Its committed offsets say where the next run starts; they are committed only ' +
          'for records a checkpoint covers (docs/kafka.md). Default: `sluice-<pipeline name>`.',
      ),
    topics: z
      .array(z.string().regex(TOPIC_NAME, 'a topic name is 1-249 letters, digits, ".", "_" or "-"'))
      .min(1)
      .optional()
      .describe('Topics to read. Give `topics` or `topic_pattern`.'),
    topic_pattern: z
      .string()
      .min(1)
      .refine(validPattern, 'not a valid regular expression')
      .optional()
      .describe(
        'A regular expression (JavaScript syntax) that a whole topic name must match, e.g. `orders\\..*`. ' +
          "Matched once, when the run starts; Kafka's internal topics are never matched.",
      ),
    start_from: z
      .string()
      .default('earliest')
      .refine((s) => s === 'earliest' || s === 'latest' || startTimestamp(s) !== undefined, {
        message: 'expected earliest, latest, or an ISO 8601 date or time with a zone (2024-05-01T00:00:00Z)',
      })
      .describe(
        'Where a partition starts when the group has no committed offset for it: `earliest` (all that ' +
          'the topic keeps), `latest` (only new messages), or an ISO 8601 timestamp (the first message at ' +
          'or after it; a time needs a zone, a bare date is midnight UTC).',
      ),
    format: z
      .enum(['json', 'string', 'bytes'])
      .default('json')
      .describe(
        'How message values become records. `json`: the value must be a JSON object, which becomes the ' +
          'record (a value that is not is rejected with SLUICE_DECODE; a null value, a tombstone, gives an ' +
          'empty record). `string`: the UTF-8 text goes in the field `value_field`. `bytes`: the bytes go ' +
          'there as base64 text. A null value gives null in those two.',
      ),
    value_field: fieldName
      .default('value')
      .describe('The field that holds the value with `format: string` or `bytes`.'),
    fields: z
      .object({
        key: fieldName.optional().describe('Field for the message key (UTF-8 text, or null).'),
        headers: fieldName.optional().describe('Field for the headers, an object of UTF-8 texts.'),
        topic: fieldName.optional().describe('Field for the topic name.'),
        partition: fieldName.optional().describe('Field for the partition number.'),
        offset: fieldName.optional().describe('Field for the offset.'),
        timestamp: fieldName.optional().describe('Field for the message timestamp (a Date).'),
      })
      .strict()
      .default({})
      .describe(
        'Copies Kafka facts into each record, each under the field name given. They are always in the ' +
          "record's metadata: key, headers, position (partition `<topic>/<partition>`, offset) and event time.",
      ),
    fetch_max_bytes: z
      .number()
      .int()
      .min(1024)
      .max(256 * 1024 * 1024)
      .default(2 * 1024 * 1024)
      .describe(
        'Most bytes one fetch brings back, over all partitions (at most 1 MiB from one partition, as Kafka ' +
          'consumers default to). The client decodes a whole fetch at once, so this bounds the memory of a read ' +
          "ahead; the client's own default (50 MiB) let a 1M-message copy grow to 1.5 GiB and run 3x slower.",
      ),
    stop_at_end: z
      .boolean()
      .default(false)
      .describe(
        'Makes the run a bounded batch job: it ends once it has read up to the offsets that were the ends of ' +
          'the partitions when it started. Without it the source streams until the run is stopped.',
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    checkBootstrap(cfg.bootstrap_servers, ctx);
    if ((cfg.topics === undefined) === (cfg.topic_pattern === undefined))
      ctx.addIssue({
        code: 'custom',
        path: cfg.topics ? ['topic_pattern'] : ['topics'],
        message: 'give either `topics` (a list) or `topic_pattern` (a regular expression), not both',
      });
  });

export type KafkaSourceConfig = z.output<typeof kafkaSourceConfig>;

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

export const kafkaSource = defineSource({
  name: 'kafka',
  summary: 'Reads Kafka topics in a consumer group, as a stream or as a bounded batch.',
  description: `Reads the topics named by \`topics\` (or matched by \`topic_pattern\`) as a member of the consumer group \`group\`: several runs in one group share the partitions. Each record's metadata holds the message key, its headers, its event time (the message timestamp) and its position: partition \`<topic>/<partition>\`, offset = the Kafka offset. \`fields\` copies any of them into the record too.

A partition starts after the group's committed offset; a partition the group has not committed starts at \`start_from\`. A job that resumes from its own checkpoint starts after the checkpoint's offsets. Offsets are committed to the group only for records a checkpoint covers (the sinks hold them), so a run that fails or is killed never commits what it did not deliver: delivery is at least once. See docs/kafka.md.

With \`stop_at_end: true\` the source is bounded: it notes the end offsets of the partitions when it starts and stops once it has read up to them, so a scheduled job reads what had arrived by its start. A value that \`format: json\` cannot decode goes to the errors sink as SLUICE_DECODE with its topic, partition and offset; it is never dropped.`,
  config: kafkaSourceConfig,
  examples: [
    {
      title: 'Stream JSON orders from two topics',
      yaml: `bootstrap_servers: 127.0.0.1:9092
group: orders-to-lake
topics: [orders, orders-eu]
fields:
  key: order_key
  timestamp: kafka_time
`,
    },
    {
      title: 'A nightly batch of everything that arrived since the last run, from every topic of a family',
      yaml: `bootstrap_servers: [k1:9092, k2:9092]
group: nightly-audit
topic_pattern: audit\\..*
start_from: "2024-05-01T00:00:00Z"
stop_at_end: true
`,
    },
    {
      title: 'Plain text lines with their offsets',
      yaml: `bootstrap_servers: 127.0.0.1:9092
topics: [logs]
format: string
value_field: line
fields:
  partition: partition
  offset: offset
`,
    },
  ],
  bounded: (cfg) => cfg.stop_at_end,
  create: (cfg, ctx) => new KafkaSource(cfg, ctx),
});
