// KafkaJS over SASL_PLAINTEXT: produces COUNT messages to TOPIC as alice
// with SCRAM-SHA-512 (the topic made by an admin logged in with PLAIN as
// bob), then tries a wrong password. Prints one JSON line:
// {"produced": N, "wrong_password": "<error name>"}.
// Usage: node sasl.js BOOTSTRAP TOPIC COUNT
'use strict';
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, countArg] = process.argv.slice(2);
const count = parseInt(countArg, 10);

const client = (sasl) =>
  new Kafka({ clientId: 'sluice-kafkajs-sasl', brokers: [bootstrap], sasl, logLevel: logLevel.NOTHING, retry: { retries: 0 } });

async function main() {
  const admin = client({ mechanism: 'plain', username: 'bob', password: 'bob-secret' }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = client({ mechanism: 'scram-sha-512', username: 'alice', password: 'alice-secret' }).producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `v${i}` });
  await producer.send({ topic, messages });
  await producer.disconnect();

  let wrong = 'none';
  const bad = client({ mechanism: 'scram-sha-256', username: 'alice', password: 'wrong' }).producer();
  try {
    await bad.connect();
  } catch (e) {
    wrong = e.name;
  }
  console.log(JSON.stringify({ produced: count, wrong_password: wrong }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
