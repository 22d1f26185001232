// Transactions with KafkaJS: creates TOPIC (3 partitions); a transactional
// producer commits "c-0".."c-29" with offsets for GROUP on SRC (partition 0:
// 42, partition 1: 17) sent to the transaction, aborts "a-0".."a-29" (after
// every record was acknowledged) and commits "c-30".."c-59" (record i to
// partition i % 3). Then a consumer (readUncommitted: false) reads TOPIC from
// the beginning until 60 records came and 1 s more passed, or 40 s passed.
// Prints one JSON line: {"read": [values], "offsets": {partition: offset of GROUP on SRC}}.
// SRC must exist. Exits 1 on any error, 3 when the whole run took over 90 s.
// Usage: node transactions.js BOOTSTRAP TOPIC SRC GROUP
'use strict';
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, src, group] = process.argv.slice(2);

function values(prefix, from, to) {
  const out = [];
  for (let i = from; i < to; i++) out.push(`${prefix}${i}`);
  return out;
}

async function main() {
  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-txn',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 4, initialRetryTime: 300, maxRetryTime: 3000 },
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });

  const producer = kafka.producer({
    transactionalId: 'js-txn',
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 30000,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  const messages = (vs) => vs.map((v) => ({ key: v, value: v, partition: Number(v.split('-')[1]) % 3 }));

  const first = await producer.transaction();
  await first.send({ topic, messages: messages(values('c-', 0, 30)), acks: -1 });
  await first.sendOffsets({
    consumerGroupId: group,
    topics: [{ topic: src, partitions: [{ partition: 0, offset: '42' }, { partition: 1, offset: '17' }] }],
  });
  await first.commit();

  const second = await producer.transaction();
  await second.send({ topic, messages: messages(values('a-', 0, 30)), acks: -1 });
  await second.abort();

  const third = await producer.transaction();
  await third.send({ topic, messages: messages(values('c-', 30, 60)), acks: -1 });
  await third.commit();
  await producer.disconnect();

  const consumer = kafka.consumer({
    groupId: `${group}-reader`,
    readUncommitted: false,
    sessionTimeout: 10000,
    heartbeatInterval: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const read = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ message }) => {
      read.push(message.value.toString());
      // A record that should not be there has a second to show up.
      if (read.length === 60) setTimeout(done, 1000);
    },
  });
  const timer = setTimeout(done, 40000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();

  const fetched = await admin.fetchOffsets({ groupId: group, topics: [src] });
  await admin.disconnect();
  const offsets = {};
  for (const t of fetched) {
    for (const p of t.partitions) offsets[String(p.partition)] = p.offset;
  }
  console.log(JSON.stringify({ read, offsets }));
}

setTimeout(() => {
  console.error('transactions.js: over 90 s, giving up');
  process.exit(3);
}, 90000).unref();

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
