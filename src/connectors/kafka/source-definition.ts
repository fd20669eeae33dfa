import { z } from 'zod';
import { defineSource } from '../../sdk/define.ts';
import { checkBootstrap, connectionFields, TOPIC_NAME } from './common.ts';

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
  // The client library loads only when a pipeline reads from Kafka.
  create: async (cfg, ctx) => new (await import('./source.ts')).KafkaSource(cfg, ctx),
});
