/**
 * The naive peer of a Sluice Kafka → Kafka passthrough: the same client library, a consumer
 * piped straight into a producer with the same guarantees (idempotent producer, acks=all,
 * offsets committed about once a second after the produce is acknowledged), no engine around it. Run as its own
 * process by bench/connectors.ts, which reads one JSON line from its stdout.
 *
 *   node bench/kafka-baseline.ts BOOTSTRAP FROM_TOPIC TO_TOPIC GROUP BATCH
 */
import {
  Consumer,
  FetchIsolationLevels,
  ListOffsetTimestamps,
  type Message,
  type MessageToProduce,
  Producer,
} from '@platformatic/kafka';

const [bootstrap, from, to, group, batchArg] = process.argv.slice(2);
if (!bootstrap || !from || !to || !group) throw new Error('usage: BOOTSTRAP FROM TO GROUP [BATCH]');
const BATCH = Number(batchArg ?? 1000);
const started = performance.now();

const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
  clientId: 'bench-baseline',
  groupId: group,
  bootstrapBrokers: [bootstrap],
  autocommit: false,
  isolationLevel: FetchIsolationLevels.READ_COMMITTED,
  maxWaitTime: 200,
  // Bounded fetches, as Sluice's source makes them (fetch_max_bytes): the client decodes a whole
  // fetch at once, and its 50 MiB default makes this loop slower and 1 GiB bigger.
  maxBytes: 2 * 1024 * 1024,
  maxBytesPerPartition: 1024 * 1024,
});
const producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
  clientId: 'bench-baseline',
  bootstrapBrokers: [bootstrap],
  idempotent: true,
  // The output topic is new: created on first use, as Sluice's sink does.
  autocreateTopics: true,
});

const ends = await consumer.listOffsets({
  topics: [from],
  timestamp: ListOffsetTimestamps.LATEST,
  isolationLevel: FetchIsolationLevels.READ_COMMITTED,
});
const end = ends.get(from) ?? [];
const total = end.reduce((n, o) => n + Number(o), 0);
const stream = await consumer.consume({
  topics: [from],
  mode: 'earliest',
  autocommit: false,
  highWaterMark: BATCH * 2,
});

let copied = 0;
let committedAt = performance.now();
let pending: Message<Buffer, Buffer, Buffer, Buffer>[] = [];
const flush = async () => {
  if (!pending.length) return;
  const batch = pending;
  pending = [];
  const messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = batch.map((m) => ({
    topic: to,
    value: m.value,
    ...(m.key?.length ? { key: m.key } : {}),
  }));
  await producer.send({ messages });
  copied += batch.length;
  // Committed only once the copies are acknowledged (at least once), about once a second, as
  // Sluice commits the group at its checkpoints.
  const last = batch.at(-1)!;
  if (performance.now() - committedAt > 1000 || copied >= total) {
    await consumer.commit({
      offsets: [{ topic: last.topic, partition: last.partition, offset: last.offset + 1n, leaderEpoch: -1 }],
    });
    committedAt = performance.now();
  }
};
for await (const message of stream) {
  pending.push(message as Message<Buffer, Buffer, Buffer, Buffer>);
  if (pending.length >= BATCH) await flush();
  if (copied + pending.length >= total) break;
}
await flush();
const elapsedMs = performance.now() - started;
await stream.close();
await consumer.close();
await producer.close();
const usage = process.resourceUsage();
process.stdout.write(
  `${JSON.stringify({ copied, elapsedMs, cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000, maxRssMiB: usage.maxRSS / 1024 })}\n`,
);
