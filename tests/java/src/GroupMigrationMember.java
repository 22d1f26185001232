import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * GroupMigrationMember BOOTSTRAP TOPIC GROUP PROTOCOL RUN_MS
 *
 * One KafkaConsumer of group GROUP (group.protocol = PROTOCOL) subscribed to
 * TOPIC from the earliest offset, auto commit off, commitSync() after every
 * poll that returned records. It stays RUN_MS after its first assignment (or
 * 3 × RUN_MS in all), then closes, leaving the group. Used to join a group
 * of other members (e.g. a classic group, which then converts) and leave it.
 *
 * Prints one JSON object a line ("t": milliseconds since the start):
 *   {"event": "assigned" | "revoked" | "lost", "partitions": [...], "t": ...}
 *   {"event": "poll_error" | "commit_error" | "close_error", "error": class, "message": ..., "t": ...}
 *   {"event": "closed", "records": n, "commits": n, "t": ...}
 *   {"event": "read", "records": ["partition:offset", ...]}   (at the end)
 */
public final class GroupMigrationMember {
    static final long START = System.nanoTime();

    static long t() {
        return (System.nanoTime() - START) / 1_000_000;
    }

    public static void main(String[] args) {
        String bootstrap = args[0];
        String topic = args[1];
        String group = args[2];
        String protocol = args[3];
        long runMs = Long.parseLong(args[4]);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-migrating");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        List<String> read = new ArrayList<>();
        int commits = 0;
        int errors = 0;
        long[] assignedAt = {-1};
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props);
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                if (!parts.isEmpty() && assignedAt[0] < 0) assignedAt[0] = t();
                emit("assigned", parts);
            }

            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                emit("revoked", parts);
            }

            public void onPartitionsLost(Collection<TopicPartition> parts) {
                emit("lost", parts);
            }
        });
        while (t() < 3 * runMs && (assignedAt[0] < 0 || t() - assignedAt[0] < runMs)) {
            int n = 0;
            try {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    read.add(r.partition() + ":" + r.offset());
                    n++;
                }
            } catch (RuntimeException e) {
                error("poll_error", e);
                if (++errors >= 5) break; // a fatal error repeats on every poll
                continue;
            }
            if (n > 0) {
                try {
                    consumer.commitSync();
                    commits++;
                } catch (RuntimeException e) {
                    error("commit_error", e);
                }
            }
        }
        try {
            consumer.close(CloseOptions.timeout(Duration.ofSeconds(30)));
        } catch (RuntimeException e) {
            error("close_error", e);
        }
        Out.emit("event", "closed", "records", read.size(), "commits", commits, "t", t());
        Out.emit("event", "read", "records", read);
    }

    static void emit(String what, Collection<TopicPartition> parts) {
        Set<Integer> ps = parts.stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
        Out.emit("event", what, "partitions", ps, "t", t());
    }

    static void error(String what, Throwable e) {
        Throwable c = Out.cause(e);
        Out.emit("event", what, "error", c.getClass().getName(), "message", c.getMessage(), "t", t());
    }
}
