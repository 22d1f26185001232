// Produces COUNT keyed messages with headers to TOPIC with KafkaJS and prints one
// JSON line: {"acked": [[partition, baseOffset, count], ...]}.
// Usage: node produce.js BOOTSTRAP TOPIC COUNT CODEC(none|gzip|snappy|lz4)
'use strict';
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy');
const LZ4 = require('kafkajs-lz4');
CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec;

const [bootstrap, topic, countArg, codecName] = process.argv.slice(2);
const count = parseInt(countArg, 10);
const codec = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
}[codecName];
if (codec === undefined) {
  console.error(`unknown codec ${codecName}`);
  process.exit(2);
}

async function main() {
  const kafka = new Kafka({ clientId: 'sluice-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const acked = [];
  const perBatch = 500;
  for (let start = 0; start < count; start += perBatch) {
    const messages = [];
    for (let i = start; i < Math.min(count, start + perBatch); i++) {
      messages.push({
        key: `key-${i % 97}`,
        value: `value-${i}`,
        headers: { i: String(i), codec: codecName },
        timestamp: String(1700000000000 + i),
      });
    }
    const res = await producer.send({ topic, messages, acks: -1, compression: codec });
    for (const r of res) {
      if (r.errorCode !== 0) throw new Error(`produce error ${r.errorCode}`);
      acked.push([r.partition, Number(r.baseOffset)]);
    }
  }
  await producer.disconnect();
  console.log(JSON.stringify({ acked }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
