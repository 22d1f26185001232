// KafkaJS over TLS: SASL_SSL with SCRAM-SHA-512 (MODE "sasl", as USER with
// PASSWORD) or mutual TLS (MODE "mtls", with the certificate PKI/USER.pem).
// Produces COUNT messages to TOPIC, then reads them back in GROUP (committing)
// and tries TOPIC's neighbour FORBIDDEN, which the user may not write.
// Prints one JSON line: {"produced": n, "consumed": n, "committed": n,
// "forbidden": "<error type>"}.
// Usage: node secure.js BOOTSTRAP MODE PKI USER PASSWORD TOPIC GROUP FORBIDDEN COUNT
'use strict';
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, mode, pki, user, password, topic, group, forbidden, countArg] = process.argv.slice(2);
const count = parseInt(countArg, 10);

const ssl = { ca: [fs.readFileSync(path.join(pki, 'ca.pem'), 'utf-8')] };
let sasl;
if (mode === 'mtls') {
  ssl.cert = fs.readFileSync(path.join(pki, `${user}.pem`), 'utf-8');
  ssl.key = fs.readFileSync(path.join(pki, `${user}.key`), 'utf-8');
} else {
  sasl = { mechanism: 'scram-sha-512', username: user, password };
}
const kafka = new Kafka({ clientId: `sluice-kafkajs-${mode}`, brokers: [bootstrap], ssl, sasl, logLevel: logLevel.NOTHING });

async function main() {
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `v${i}` });
  await producer.send({ topic, messages, acks: -1 });

  let refused = 'none';
  try {
    await producer.send({ topic: forbidden, messages: [{ value: 'forged' }], acks: -1 });
  } catch (e) {
    // The protocol error's type, under KafkaJS's retry wrappers.
    refused = e.name;
    for (let err = e; err; err = err.cause || err.originalError) {
      if (err.type) {
        refused = err.type;
        break;
      }
    }
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const seen = new Set();
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.add(message.value.toString());
      if (seen.size >= count) done();
    },
  });
  const timer = setTimeout(done, 60000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  await admin.disconnect();
  let committed = 0;
  for (const t of offsets) {
    for (const p of t.partitions) committed += Math.max(0, parseInt(p.offset, 10));
  }
  console.log(JSON.stringify({ produced: count, consumed: seen.size, committed, forbidden: refused }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
