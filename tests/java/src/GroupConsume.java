import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * GroupConsume BOOTSTRAP TOPIC GROUP PROTOCOL CONSUMERS STAGGER_MS EXPECTED TIMEOUT_MS
 *
 * Starts CONSUMERS KafkaConsumers of group GROUP (group.protocol = PROTOCOL,
 * "classic" or "consumer"), each in its own thread, STAGGER_MS apart, all
 * subscribed to TOPIC from the earliest offset, with auto commit off and
 * commitSync() after every poll. They run until the group has seen EXPECTED
 * distinct records between them, or until TIMEOUT_MS, then close. Then the
 * Admin client reads the group's committed offsets and the topic's end offsets.
 *
 * Prints one JSON object a line ("t" is milliseconds since the start):
 *   {"event": "start", "consumer": c, "t": ...}
 *   {"event": "assigned" | "revoked" | "lost", "consumer": c, "partitions": [...], "t": ..., "seen": distinct records seen so far}
 *   {"event": "record", "consumer": c, "partition": p, "offset": o, "key": k, "value": v}
 *   {"event": "commit_error" | "poll_error" | "close_error" | "consumer_error", "consumer": c, "error": class, "message": ..., "t": ...}
 *   {"event": "closed", "consumer": c, "records": n, "commits": n, "t": ...}
 *   {"event": "offsets", "partition": p, "committed": offset or null, "end": offset}
 *   {"event": "done", "seen": n, "expected": n, "timed_out": bool, "errors": n}
 * Exit code 1 when a client call threw or the timeout came first.
 */
public final class GroupConsume {
    static final long START = System.nanoTime();
    static final AtomicBoolean stop = new AtomicBoolean();
    static final AtomicInteger errors = new AtomicInteger();
    static final Set<String> seen = ConcurrentHashMap.newKeySet();

    static long t() {
        return (System.nanoTime() - START) / 1_000_000;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        String group = args[2];
        String protocol = args[3];
        int consumers = Integer.parseInt(args[4]);
        long staggerMs = Long.parseLong(args[5]);
        int expected = Integer.parseInt(args[6]);
        long timeoutMs = Long.parseLong(args[7]);

        List<Thread> threads = new ArrayList<>();
        for (int c = 0; c < consumers; c++) {
            int id = c;
            Thread th = new Thread(() -> runConsumer(id, id * staggerMs, bootstrap, topic, group, protocol, expected),
                    "consumer-" + id);
            th.start();
            threads.add(th);
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        boolean timedOut = false;
        while (!stop.get()) {
            if (System.nanoTime() > deadline) {
                timedOut = true;
                stop.set(true);
            }
            Thread.sleep(50);
        }
        for (Thread th : threads) th.join(60_000);

        reportOffsets(bootstrap, topic, group);
        Out.emit("event", "done", "seen", seen.size(), "expected", expected, "timed_out", timedOut,
                "errors", errors.get());
        System.exit(timedOut || errors.get() > 0 ? 1 : 0);
    }

    static void runConsumer(int id, long delayMs, String bootstrap, String topic, String group, String protocol,
                            int expected) {
        sleep(delayMs);
        if (stop.get()) return;
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-c" + id);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "300000");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        Out.emit("event", "start", "consumer", id, "t", t());
        int records = 0;
        int commits = 0;
        int pollErrors = 0;
        KafkaConsumer<String, String> consumer;
        try {
            consumer = new KafkaConsumer<>(props);
        } catch (RuntimeException e) {
            error("consumer_error", id, e);
            return;
        }
        try {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    rebalance("assigned", id, parts);
                }

                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    rebalance("revoked", id, parts);
                }

                public void onPartitionsLost(Collection<TopicPartition> parts) {
                    rebalance("lost", id, parts);
                }
            });
            while (!stop.get()) {
                ConsumerRecords<String, String> batch;
                try {
                    batch = consumer.poll(Duration.ofMillis(200));
                } catch (RuntimeException e) {
                    error("poll_error", id, e);
                    if (++pollErrors >= 10) break; // a fatal error repeats on every poll
                    sleep(200);
                    continue;
                }
                for (ConsumerRecord<String, String> r : batch) {
                    records++;
                    seen.add(r.value());
                    Out.emit("event", "record", "consumer", id, "partition", r.partition(), "offset", r.offset(),
                            "key", r.key(), "value", r.value());
                }
                if (!consumer.assignment().isEmpty()) {
                    try {
                        consumer.commitSync();
                        commits++;
                    } catch (RuntimeException e) {
                        error("commit_error", id, e);
                    }
                }
                if (seen.size() >= expected) stop.set(true);
            }
        } catch (RuntimeException e) {
            error("consumer_error", id, e);
        } finally {
            try {
                consumer.close(CloseOptions.timeout(Duration.ofSeconds(30)));
            } catch (RuntimeException e) {
                error("close_error", id, e);
            }
            Out.emit("event", "closed", "consumer", id, "records", records, "commits", commits, "t", t());
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void rebalance(String what, int id, Collection<TopicPartition> parts) {
        Set<Integer> ps = parts.stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
        Out.emit("event", what, "consumer", id, "partitions", ps, "t", t(), "seen", seen.size());
    }

    static void error(String what, int id, Throwable e) {
        errors.incrementAndGet();
        Throwable c = Out.cause(e);
        Out.emit("event", what, "consumer", id, "error", c.getClass().getName(), "message", c.getMessage(),
                "t", t());
    }

    static void reportOffsets(String bootstrap, String topic, String group) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(props)) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            int partitions = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS)
                    .get(topic).partitions().size();
            Map<TopicPartition, OffsetSpec> latest = new java.util.HashMap<>();
            for (int p = 0; p < partitions; p++) latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends =
                    admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS);
            for (int p = 0; p < partitions; p++) {
                TopicPartition tp = new TopicPartition(topic, p);
                OffsetAndMetadata c = committed.get(tp);
                Out.emit("event", "offsets", "partition", p, "committed", c == null ? null : c.offset(),
                        "end", ends.get(tp).offset());
            }
        }
    }
}
