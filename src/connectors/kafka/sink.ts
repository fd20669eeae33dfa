import { type MessageToProduce, Producer } from '@platformatic/kafka';
import { z } from 'zod';
import { stringifyJsonExact } from '../../formats/json-numbers.ts';
import { JsonEncoder } from '../../formats/jsonl.ts';
import { defineSink } from '../../sdk/define.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type {
  ComponentContext,
  ConfigIssue,
  Rejection,
  SinkInstance,
  SinkWriteResult,
  SluiceRecord,
} from '../../sdk/types.ts';
import { type CompiledExpression, compileExpression } from '../../sql/index.ts';
import { sqlIssues } from '../../steps/filter/index.ts';
import { bootstrapList, checkBootstrap, connectionFields, kafkaError, TOPIC_NAME } from './common.ts';

export const kafkaSinkConfig = z
  .object({
    ...connectionFields,
    topic: z
      .string()
      .regex(TOPIC_NAME, 'a topic name is 1-249 letters, digits, ".", "_" or "-"')
      .describe('The topic to write to. It must exist, unless the brokers create topics on first use.'),
    key: z
      .string()
      .min(1)
      .optional()
      .describe(
        'The message key: a SQL expression over the record (docs/sql.md), e.g. a field name `customer_id` ' +
          "or `country || '-' || customer_id`. Text is written as UTF-8; numbers, booleans and dates as their " +
          'text; objects as JSON; NULL writes no key. Messages with one key go to one partition, in order. ' +
          "Without it, the record's metadata key (from a kafka source) is used when `forward_meta` is on.",
      ),
    headers: z
      .record(z.string().min(1), z.string().min(1))
      .default({})
      .describe(
        'Headers to add, name → SQL expression over the record (as for `key`); a NULL value writes no header.',
      ),
    forward_meta: z
      .boolean()
      .default(true)
      .describe(
        "Writes the key, headers and event time in each record's metadata (a kafka source puts them there): " +
          'the key when `key` is not given, the headers under those of `headers`, the event time as the message ' +
          'timestamp. So a topic-to-topic pipeline keeps keys, headers and timestamps.',
      ),
    compression: z
      .enum(['none', 'gzip', 'snappy', 'lz4', 'zstd'])
      .default('none')
      .describe('Compression of the record batches sent to the brokers.'),
    max_message_bytes: z
      .number()
      .int()
      .positive()
      .default(1_000_000)
      .describe(
        'A record whose JSON value is larger is rejected (SLUICE_SINK_REJECTED) rather than sent: keep it at ' +
          "or under the topic's `max.message.bytes` (1 MiB by default).",
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => checkBootstrap(cfg.bootstrap_servers, ctx));

export type KafkaSinkConfig = z.output<typeof kafkaSinkConfig>;

/** A key or header value as bytes; null for SQL NULL (no key, no header). */
function toBytes(value: unknown): Buffer | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (value instanceof Date) return Buffer.from(value.toISOString(), 'utf8');
  if (typeof value === 'object') return Buffer.from(stringifyJsonExact(value), 'utf8');
  return Buffer.from(String(value), 'utf8');
}

export class KafkaSink implements SinkInstance {
  readonly #cfg: KafkaSinkConfig;
  readonly #producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  readonly #key: CompiledExpression | undefined;
  readonly #headers: [Buffer, CompiledExpression][];
  readonly #encoder = new JsonEncoder();
  #closing: Promise<void> | undefined;

  constructor(
    cfg: KafkaSinkConfig,
    key: CompiledExpression | undefined,
    headers: [string, CompiledExpression][],
  ) {
    this.#cfg = cfg;
    this.#key = key;
    this.#headers = headers.map(([name, fn]) => [Buffer.from(name, 'utf8'), fn]);
    this.#producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
      clientId: cfg.client_id,
      bootstrapBrokers: bootstrapList(cfg.bootstrap_servers),
      // acks=all and the idempotent producer: a write resolves once every in-sync replica has the
      // batch, and the client's own retries cannot duplicate it.
      idempotent: true,
      compression: cfg.compression,
      // As Kafka's own producer does: a broker with auto.create.topics.enable creates a missing topic.
      autocreateTopics: true,
      // Bounded: past these the error reaches the engine, which retries the batch (sink_retry).
      retries: 3,
      retryDelay: 500,
    });
  }

  async write(batch: SluiceRecord[]): Promise<SinkWriteResult | undefined> {
    const messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = [];
    const rejected: Rejection[] = [];
    const { topic, max_message_bytes, forward_meta } = this.#cfg;
    for (const record of batch) {
      try {
        const value = Buffer.from(this.#encoder.encode(record.value), 'utf8');
        if (value.length > max_message_bytes)
          throw new SluiceError(
            'SLUICE_SINK_REJECTED',
            `the record's JSON is ${value.length} bytes, more than max_message_bytes (${max_message_bytes})`,
            { details: { bytes: value.length, max_message_bytes } },
          );
        const key = this.#key
          ? toBytes(this.#key(record.value))
          : forward_meta
            ? toBytes(record.meta.key)
            : null;
        const headers = new Map<Buffer, Buffer>();
        if (forward_meta && record.meta.headers)
          for (const [name, v] of Object.entries(record.meta.headers))
            headers.set(Buffer.from(name, 'utf8'), Buffer.from(String(v), 'utf8'));
        for (const [name, fn] of this.#headers) {
          const v = toBytes(fn(record.value));
          // A configured header replaces a forwarded one of the same name.
          for (const existing of headers.keys()) if (existing.equals(name)) headers.delete(existing);
          if (v !== null) headers.set(name, v);
        }
        const time = forward_meta ? record.meta.eventTime : undefined;
        messages.push({
          topic,
          value,
          headers,
          ...(key === null ? {} : { key }),
          ...(time !== undefined && Number.isFinite(time) ? { timestamp: BigInt(Math.trunc(time)) } : {}),
        });
      } catch (err) {
        rejected.push({ record, error: toSluiceError(err, 'SLUICE_SINK_REJECTED') });
      }
    }
    if (messages.length) {
      try {
        await this.#producer.send({ messages });
      } catch (err) {
        throw kafkaError(err, 'SLUICE_SINK_IO', `cannot write to topic ${topic}`, { topic });
      }
    }
    return rejected.length ? { rejected } : undefined;
  }

  /** Every write was acknowledged before it returned: nothing is left to make durable. */
  async commit(): Promise<void> {}

  async close(): Promise<void> {
    this.#closing ??= this.#producer.close(true).catch(() => {});
    return this.#closing;
  }

  /** Kafka cannot take back acknowledged messages (no transactions here): aborting only closes. */
  async abort(): Promise<void> {
    return this.close();
  }

  outputs(): string[] {
    return [`kafka topic ${this.#cfg.topic}`];
  }
}

async function compileAll(cfg: KafkaSinkConfig) {
  const key = cfg.key === undefined ? undefined : await compileExpression(cfg.key);
  const headers: [string, CompiledExpression][] = [];
  for (const [name, sql] of Object.entries(cfg.headers)) headers.push([name, await compileExpression(sql)]);
  return { key, headers };
}

export const kafkaSink = defineSink({
  name: 'kafka',
  summary: 'Writes records to a Kafka topic as JSON messages, acknowledged by every in-sync replica.',
  description: `Each record becomes one message on \`topic\`: its value is the record as JSON, its key the value of the SQL expression \`key\` (or the record's metadata key), its headers those of \`headers\` (and the metadata headers). The producer is idempotent and waits for acks from all in-sync replicas: a write returns only once the brokers hold the batch, so a checkpoint never counts records that could still be lost. A failed write is retried by the engine (\`settings.sink_retry\`); Kafka has no way to take back what an earlier attempt may have written, so delivery is at least once (docs/kafka.md).

A record whose value cannot be encoded, whose JSON is larger than \`max_message_bytes\`, or whose key or header expression fails on it (a bad cast) goes to the errors sink; the rest of the batch is written.`,
  config: kafkaSinkConfig,
  examples: [
    {
      title: 'Keyed by customer, with a header',
      yaml: `bootstrap_servers: 127.0.0.1:9092
topic: orders-clean
key: customer_id
headers:
  source: "'sluice'"
compression: zstd
`,
    },
    {
      title: 'A composite key over nested fields',
      yaml: `bootstrap_servers: [k1:9092, k2:9092]
topic: events
key: "payload.user.id || ':' || region"
`,
    },
  ],
  async check(cfg): Promise<ConfigIssue[]> {
    const issues: ConfigIssue[] = [];
    if (cfg.key !== undefined) {
      const key = cfg.key;
      issues.push(...(await sqlIssues('key', () => compileExpression(key))));
    }
    for (const [name, sql] of Object.entries(cfg.headers))
      for (const issue of await sqlIssues(name, () => compileExpression(sql)))
        issues.push({ ...issue, path: ['headers', ...issue.path] });
    return issues;
  },
  async create(cfg, _ctx: ComponentContext) {
    const { key, headers } = await compileAll(cfg);
    return new KafkaSink(cfg, key, headers);
  },
});
