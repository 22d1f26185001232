// Consumes TOPIC in GROUP with KafkaJS (automatic commits) until EXPECTED
// messages were read or TIMEOUT_MS passed, then disconnects (committing) and
// prints one JSON line: {"read": n, "unique": n, "committed": {partition: offset}}.
// Usage: node consume_group.js BOOTSTRAP TOPIC GROUP EXPECTED TIMEOUT_MS
'use strict';
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
// KafkaJS reads gzip itself; Snappy and LZ4 batches need these codecs.
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy');
const LZ4 = require('kafkajs-lz4');
CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec;

const [bootstrap, topic, group, expectedArg, timeoutArg] = process.argv.slice(2);
const expected = parseInt(expectedArg, 10);
const timeoutMs = parseInt(timeoutArg, 10);

async function main() {
  const kafka = new Kafka({ clientId: 'sluice-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const seen = new Set();
  let read = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      read += 1;
      seen.add(`${partition}:${message.offset}`);
      if (expected > 0 && seen.size >= expected) done();
    },
  });
  const timer = setTimeout(done, timeoutMs);
  await finished;
  clearTimeout(timer);
  // Give a duplicate the chance to show up before stopping.
  await new Promise((r) => setTimeout(r, 500));
  await consumer.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  await admin.disconnect();
  const committed = {};
  for (const t of offsets) {
    for (const p of t.partitions) committed[String(p.partition)] = p.offset;
  }
  console.log(JSON.stringify({ read, unique: seen.size, committed }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
