import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * ProduceChecks CHECK BOOTSTRAP TOPIC: produce requests the broker must
 * refuse, and what the Java producer tells of them. TOPIC must exist (one
 * partition) with the configs the check needs. Each step prints one line:
 *   {"step": name, "records": [{"index": i, "ok": true, "offset": o}
 *                              | {"index": i, "ok": false, "error": class, "message": ...}, ...]}
 * for a step sending records (one future per record, in send order), and
 *   {"step": name, "end_offset": E, "position": P, "read": N,
 *    "records": [{"offset": o, "key": k, "value_length": n}, ...]}
 * for a step reading partition 0 of TOPIC from its beginning up to its end
 * offset E (P: where the reading stopped). Any other exception (a 30 s wait running out) ends the program
 * with exit code 1.
 *
 * Checks:
 *   invalid-records BOOTSTRAP TOPIC
 *       (TOPIC compacted) sends, in one batch (linger.ms=200, acks=all, not
 *       idempotent), "k0"/"v0", null/"v1", "k2"/"v2"; then reads the
 *       partition; then sends "k3".."k5" in one batch and reads again.
 *   too-large BOOTSTRAP TOPIC
 *       (TOPIC with max.message.bytes below 1,200,000) sends, without
 *       compression, one record whose value is 1,200,000 'a's; reads; then
 *       one of 500,000 'a's; reads again.
 */
public final class ProduceChecks {
    static final long WAIT_S = 30;

    public static void main(String[] args) throws Exception {
        String check = args[0];
        String bootstrap = args[1];
        String topic = args[2];
        switch (check) {
            case "invalid-records": invalidRecords(bootstrap, topic); break;
            case "too-large": tooLarge(bootstrap, topic); break;
            default: throw new IllegalArgumentException("unknown check " + check);
        }
    }

    static void invalidRecords(String bootstrap, String topic) throws Exception {
        Properties props = producerProps(bootstrap);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "200");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, "1000000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            send("mixed_batch", producer, List.of(
                    new ProducerRecord<>(topic, 0, "k0", "v0"),
                    new ProducerRecord<>(topic, 0, null, "v1"),
                    new ProducerRecord<>(topic, 0, "k2", "v2")));
            read("after_mixed_batch", bootstrap, topic);
            send("keyed_batch", producer, List.of(
                    new ProducerRecord<>(topic, 0, "k3", "v3"),
                    new ProducerRecord<>(topic, 0, "k4", "v4"),
                    new ProducerRecord<>(topic, 0, "k5", "v5")));
            read("after_keyed_batch", bootstrap, topic);
        }
    }

    static void tooLarge(String bootstrap, String topic) throws Exception {
        Properties props = producerProps(bootstrap);
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        props.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "5000000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            send("large_record", producer, List.of(new ProducerRecord<>(topic, 0, "big", "a".repeat(1_200_000))));
            read("after_large_record", bootstrap, topic);
            send("smaller_record", producer, List.of(new ProducerRecord<>(topic, 0, "small", "a".repeat(500_000))));
            read("after_smaller_record", bootstrap, topic);
        }
    }

    static Properties producerProps(String bootstrap) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "sluice-java-produce-checks");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "25000");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        return props;
    }

    /** Sends the records without waiting in between (so that they share a
     *  batch), flushes, and prints the outcome of every record's future. */
    static void send(String step, KafkaProducer<String, String> producer, List<ProducerRecord<String, String>> records)
            throws Exception {
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        for (ProducerRecord<String, String> r : records) futures.add(producer.send(r));
        producer.flush();
        List<Object> outcomes = new ArrayList<>();
        for (int i = 0; i < futures.size(); i++) {
            Map<String, Object> o = new TreeMap<>();
            o.put("index", i);
            try {
                RecordMetadata m = futures.get(i).get(WAIT_S, TimeUnit.SECONDS);
                o.put("ok", true);
                o.put("offset", m.offset());
            } catch (java.util.concurrent.ExecutionException e) {
                Throwable t = Out.cause(e);
                o.put("ok", false);
                o.put("error", t.getClass().getName());
                o.put("message", t.getMessage());
            }
            outcomes.add(o);
        }
        Out.emit("step", step, "records", outcomes);
    }

    /** Reads partition 0 of the topic from its beginning to its end offset
     *  (assigned, no group). */
    static void read(String step, String bootstrap, String topic) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "sluice-java-produce-checks-reader");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, "5000000");
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(List.of(tp));
            long end = consumer.endOffsets(List.of(tp), Duration.ofSeconds(WAIT_S)).get(tp);
            consumer.seekToBeginning(List.of(tp));
            List<Object> values = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (consumer.position(tp) < end && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    values.add(Map.of("offset", r.offset(), "key", String.valueOf(r.key()),
                            "value_length", r.value() == null ? -1 : r.value().length()));
                }
            }
            Out.emit("step", step, "end_offset", end, "position", consumer.position(tp), "read", values.size(),
                    "records", values);
        }
    }
}
