import { type MessageToProduce, Producer } from '@platformatic/kafka';
import { stringifyJsonExact } from '../../formats/json-numbers.ts';
import { JsonEncoder } from '../../formats/jsonl.ts';
import { SluiceError, toSluiceError } from '../../sdk/errors.ts';
import type { Rejection, SinkInstance, SinkWriteResult, SluiceRecord } from '../../sdk/types.ts';
import { type CompiledExpression, compileExpression } from '../../sql/index.ts';
import { bootstrapList, kafkaError } from './common.ts';
import type { KafkaSinkConfig } from './sink-definition.ts';

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

export async function createKafkaSink(cfg: KafkaSinkConfig): Promise<KafkaSink> {
  const key = cfg.key === undefined ? undefined : await compileExpression(cfg.key);
  const headers: [string, CompiledExpression][] = [];
  for (const [name, sql] of Object.entries(cfg.headers)) headers.push([name, await compileExpression(sql)]);
  return new KafkaSink(cfg, key, headers);
}

export { type KafkaSinkConfig, kafkaSink, kafkaSinkConfig } from './sink-definition.ts';
