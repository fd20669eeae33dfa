import { z } from 'zod';
import { defineSink } from '../../sdk/define.ts';
import type { ConfigIssue } from '../../sdk/types.ts';
import { compileExpression } from '../../sql/compile.ts';
import { sqlIssues } from '../../sql/issues.ts';
import { checkBootstrap, connectionFields, TOPIC_NAME } from './common.ts';

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
  async create(cfg) {
    // The client library loads only when a pipeline writes to Kafka.
    return (await import('./sink.ts')).createKafkaSink(cfg);
  },
});
