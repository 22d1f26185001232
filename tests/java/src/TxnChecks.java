import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * TxnChecks CHECK BOOTSTRAP ARGS...: transactions with the Java client
 * (initTransactions, beginTransaction, sendOffsetsToTransaction,
 * commitTransaction, abortTransaction) and read_committed consumers. Every
 * topic has 3 partitions and exists beforehand. Each step prints one line
 * {"step": name, ...}; a read prints
 *   {"step": name, "read": n, "positions": {partition: position},
 *    "records": [{"partition": p, "offset": o, "key": k, "value": v}, ...]}
 * after reading every partition from its beginning to its end offset. Any
 * exception other than the one a step expects ends the program with exit
 * code 1. Waits are bounded: max.block.ms 15 s, reads 30 s.
 *
 * Checks:
 *   basic BOOTSTRAP TOPIC
 *       commits "c-0".."c-29", aborts "a-0".."a-29" (after every record was
 *       acknowledged), commits "c-30".."c-59" (record i to partition i % 3);
 *       waits until no transaction is open (step "ends": the end offsets),
 *       reads read_committed, then read_uncommitted.
 *   ctp BOOTSTRAP IN OUT GROUP
 *       consume-transform-produce: a read_committed consumer in GROUP
 *       (classic protocol) polls IN; each batch is produced to OUT as
 *       "out-" + value in a transaction with the consumer's positions
 *       (sendOffsetsToTransaction with consumer.groupMetadata()); the third
 *       batch is aborted and the consumer rewound to the committed offsets.
 *       Stops at IN's end offsets (step "loop": done, batches, aborted,
 *       consumed_before_abort, rewound_to: {partition: offset});
 *       then reads OUT read_committed and read_uncommitted and prints the
 *       group's committed offsets (step "group_offsets").
 *   zombie BOOTSTRAP TOPIC
 *       producer 1 sends "z1-0".."z1-11" in an open transaction; producer 2
 *       with the same transactional.id initializes; producer 1 commits (step
 *       "zombie_commit": ok false and the exception expected); producer 2
 *       commits "z2-0".."z2-11"; reads read_committed and read_uncommitted.
 */
public final class TxnChecks {
    static final long WAIT_S = 30;
    static final int PARTITIONS = 3;

    public static void main(String[] args) throws Exception {
        String check = args[0];
        String bootstrap = args[1];
        switch (check) {
            case "basic": basic(bootstrap, args[2]); break;
            case "ctp": ctp(bootstrap, args[2], args[3], args[4]); break;
            case "zombie": zombie(bootstrap, args[2]); break;
            default: throw new IllegalArgumentException("unknown check " + check);
        }
    }

    static void basic(String bootstrap, String topic) throws Exception {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(bootstrap, "java-basic"))) {
            producer.initTransactions();
            Out.emit("step", "init", "ok", true);
            txn(producer, topic, "c-", 0, 30, true);
            txn(producer, topic, "a-", 0, 30, false);
            txn(producer, topic, "c-", 30, 60, true);
        }
        Out.emit("step", "ends", "ends", stableEnds(bootstrap, topic));
        read("read_committed", bootstrap, topic, IsolationLevel.READ_COMMITTED);
        read("read_uncommitted", bootstrap, topic, IsolationLevel.READ_UNCOMMITTED);
    }

    /** One transaction of prefix + i for i in [from, to), record i to
     *  partition i % 3, every record acknowledged before the end. */
    static void txn(KafkaProducer<String, String> producer, String topic, String prefix, int from, int to,
            boolean commit) throws Exception {
        producer.beginTransaction();
        List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
        for (int i = from; i < to; i++) {
            sent.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, prefix + i, prefix + i)));
        }
        producer.flush();
        for (java.util.concurrent.Future<?> f : sent) f.get(WAIT_S, TimeUnit.SECONDS);
        if (commit) producer.commitTransaction();
        else producer.abortTransaction();
        Out.emit("step", (commit ? "committed_" : "aborted_") + prefix + from, "ok", true);
    }

    static void ctp(String bootstrap, String in, String out, String group) throws Exception {
        Properties cp = consumerProps(bootstrap, IsolationLevel.READ_COMMITTED);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "150");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        List<TopicPartition> inputs = partitions(in);
        int batches = 0;
        int aborted = 0;
        int consumed = 0;
        int consumedBeforeAbort = -1;
        boolean done = false;
        Map<Integer, Long> rewoundTo = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp);
             KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(bootstrap, "java-ctp"))) {
            producer.initTransactions();
            consumer.subscribe(List.of(in));
            Map<TopicPartition, Long> ends = consumer.endOffsets(inputs, Duration.ofSeconds(WAIT_S));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!done && System.nanoTime() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (!records.isEmpty()) {
                    batches++;
                    consumed += records.count();
                    producer.beginTransaction();
                    for (ConsumerRecord<String, String> r : records) {
                        producer.send(new ProducerRecord<>(out, r.key(), "out-" + r.value()));
                    }
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (TopicPartition tp : consumer.assignment()) {
                        offsets.put(tp, new OffsetAndMetadata(consumer.position(tp)));
                    }
                    producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                    if (batches == 3) {
                        producer.flush();
                        producer.abortTransaction();
                        aborted = records.count();
                        consumedBeforeAbort = consumed - aborted;
                        Map<TopicPartition, OffsetAndMetadata> committed =
                                consumer.committed(consumer.assignment(), Duration.ofSeconds(WAIT_S));
                        for (TopicPartition tp : consumer.assignment()) {
                            OffsetAndMetadata c = committed.get(tp);
                            long to = c == null ? 0 : c.offset();
                            consumer.seek(tp, to);
                            rewoundTo.put(tp.partition(), to);
                        }
                        continue;
                    }
                    producer.commitTransaction();
                }
                Set<TopicPartition> assigned = consumer.assignment();
                if (assigned.size() == PARTITIONS) {
                    done = true;
                    for (TopicPartition tp : assigned) {
                        if (consumer.position(tp) < ends.get(tp)) done = false;
                    }
                }
            }
        }
        Out.emit("step", "loop", "done", done, "batches", batches, "aborted", aborted,
                "consumed_before_abort", consumedBeforeAbort, "rewound_to", rewoundTo);
        stableEnds(bootstrap, out);
        read("read_committed", bootstrap, out, IsolationLevel.READ_COMMITTED);
        read("read_uncommitted", bootstrap, out, IsolationLevel.READ_UNCOMMITTED);
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(WAIT_S, TimeUnit.SECONDS);
            Map<String, Object> byPartition = new TreeMap<>();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
                if (e.getKey().topic().equals(in)) {
                    byPartition.put(String.valueOf(e.getKey().partition()),
                            e.getValue() == null ? null : e.getValue().offset());
                }
            }
            Out.emit("step", "group_offsets", "offsets", byPartition);
        }
    }

    static void zombie(String bootstrap, String topic) throws Exception {
        KafkaProducer<String, String> zombie = new KafkaProducer<>(producerProps(bootstrap, "java-zombie"));
        try {
            zombie.initTransactions();
            zombie.beginTransaction();
            for (int i = 0; i < 12; i++) {
                zombie.send(new ProducerRecord<>(topic, i % PARTITIONS, "z1-" + i, "z1-" + i));
            }
            zombie.flush();
            Out.emit("step", "zombie_open", "ok", true);
            try (KafkaProducer<String, String> successor =
                    new KafkaProducer<>(producerProps(bootstrap, "java-zombie"))) {
                successor.initTransactions();
                Out.emit("step", "successor_init", "ok", true);
                try {
                    zombie.commitTransaction();
                    Out.emit("step", "zombie_commit", "ok", true);
                } catch (org.apache.kafka.common.KafkaException e) {
                    Throwable c = Out.cause(e);
                    Out.emit("step", "zombie_commit", "ok", false, "error", c.getClass().getName(),
                            "message", c.getMessage(), "wrapper", e.getClass().getName());
                }
                txn(successor, topic, "z2-", 0, 12, true);
            }
        } finally {
            zombie.close(Duration.ofSeconds(5));
        }
        stableEnds(bootstrap, topic);
        read("read_committed", bootstrap, topic, IsolationLevel.READ_COMMITTED);
        read("read_uncommitted", bootstrap, topic, IsolationLevel.READ_UNCOMMITTED);
    }

    static List<TopicPartition> partitions(String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) tps.add(new TopicPartition(topic, p));
        return tps;
    }

    /** Waits (30 s at most) until the last stable offset of every partition
     *  is its high watermark: no transaction open, its markers written. */
    static Map<String, Long> stableEnds(String bootstrap, String topic) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (true) {
                Map<String, Long> hw = ends(admin, topic, IsolationLevel.READ_UNCOMMITTED);
                Map<String, Long> lso = ends(admin, topic, IsolationLevel.READ_COMMITTED);
                if (hw.equals(lso)) return hw;
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("a transaction still open on " + topic + ": last stable offsets "
                            + lso + ", high watermarks " + hw);
                }
                Thread.sleep(100);
            }
        }
    }

    static Map<String, Long> ends(Admin admin, String topic, IsolationLevel level) throws Exception {
        Map<TopicPartition, OffsetSpec> req = partitions(topic).stream()
                .collect(Collectors.toMap(tp -> tp, tp -> OffsetSpec.latest()));
        Map<String, Long> out = new TreeMap<>();
        admin.listOffsets(req, new ListOffsetsOptions(level)).all().get(WAIT_S, TimeUnit.SECONDS)
                .forEach((tp, info) -> out.put(String.valueOf(tp.partition()), info.offset()));
        return out;
    }

    /** Reads every partition of the topic from its beginning to its end
     *  offset (as the consumer's isolation level has it). */
    static void read(String step, String bootstrap, String topic, IsolationLevel level) {
        List<TopicPartition> tps = partitions(topic);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap, level))) {
            consumer.assign(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(WAIT_S));
            consumer.seekToBeginning(tps);
            List<Object> records = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (System.nanoTime() < deadline && tps.stream().anyMatch(tp -> consumer.position(tp) < end.get(tp))) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    Map<String, Object> m = new TreeMap<>();
                    m.put("partition", r.partition());
                    m.put("offset", r.offset());
                    m.put("key", String.valueOf(r.key()));
                    m.put("value", r.value());
                    records.add(m);
                }
            }
            Map<String, Long> positions = new TreeMap<>();
            for (TopicPartition tp : tps) positions.put(String.valueOf(tp.partition()), consumer.position(tp));
            Out.emit("step", step, "read", records.size(), "positions", positions, "records", records);
        }
    }

    static Properties producerProps(String bootstrap, String transactionalId) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "sluice-java-txn-" + transactionalId);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "25000");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
        props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "30000");
        return props;
    }

    static Properties consumerProps(String bootstrap, IsolationLevel level) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "sluice-java-txn-reader");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, level.toString().toLowerCase(java.util.Locale.ROOT));
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        return props;
    }

    static Properties adminProps(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        return props;
    }
}
