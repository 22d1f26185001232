import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.LogTruncationException;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * EpochDriver BOOTSTRAP TOPIC
 *
 * A long-running driver of the official Java client for the leader epoch
 * tests (partition 0 of TOPIC only): it reads one command a line on stdin
 * and answers each with one JSON line on stdout, {"reply": command, "ok":
 * true|false, ...}, so that one JVM serves a whole test while the test moves
 * partition leadership between brokers. The clients are kept across
 * commands (the producer and the "follow" consumer), as an application
 * would keep them.
 *
 * Commands:
 *   produce FROM COUNT
 *       sends records key "k<i>", value "v<i>" for i = FROM..FROM+COUNT-1
 *       with the producer's defaults (idempotent, acks=all; only
 *       delivery.timeout.ms is shortened to 30 s), then flushes:
 *       {"acked", "failed", "offsets": [first, last] acknowledged,
 *        "error", "message" (the first failure)}
 *   latest | earliest
 *       listOffsets(OffsetSpec.latest() / earliest()) of a new Admin client:
 *       {"offset", "leader_epoch" (-1 when absent), "error", "message"}
 *   read TIMEOUT_MS
 *       a new consumer (no group) assigned partition 0, seekToBeginning, reads
 *       up to endOffsets as asked at the start: {"end", "records": [[offset,
 *       value, leaderEpoch (-1 when absent)], ...], "errors": [...],
 *       "timed_out"}
 *   follow-start N
 *       the "follow" consumer (no group, auto.offset.reset=none,
 *       max.poll.records=10) is created, assigned partition 0,
 *       seekToBeginning, and polled until it has returned at least N
 *       records; then it is left alone (not polled) until follow-rest:
 *       {"records", "position", "last_epoch" (the leader epoch of the last
 *       record returned, which the consumer keeps as its position's epoch)}
 *   follow-rest END TIMEOUT_MS
 *       polls the follow consumer again until its position reaches END:
 *       {"records", "position", "errors": [{"error", "message", "t"}],
 *        "timed_out"}; every exception poll() throws is reported; an
 *       InvalidOffsetException (LogTruncationException, OffsetOutOfRange,
 *       NoOffsetForPartition) ends the command, as the consumer would keep
 *       throwing it
 *   quit
 * Any other failure of a command is answered {"ok": false, "error",
 * "message"}.
 */
public final class EpochDriver {
    static final long START = System.nanoTime();
    static String bootstrap;
    static String topic;
    static TopicPartition tp;
    static KafkaProducer<String, String> producer;
    static KafkaConsumer<String, String> follower;

    static long t() {
        return (System.nanoTime() - START) / 1_000_000;
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        topic = args[1];
        tp = new TopicPartition(topic, 0);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        Out.emit("reply", "ready", "ok", true);
        String line;
        while ((line = in.readLine()) != null) {
            String[] a = line.trim().split("\\s+");
            if (a.length == 0 || a[0].isEmpty()) continue;
            if (a[0].equals("quit")) break;
            try {
                switch (a[0]) {
                    case "produce": produce(Integer.parseInt(a[1]), Integer.parseInt(a[2])); break;
                    case "latest": listOffsets("latest", OffsetSpec.latest()); break;
                    case "earliest": listOffsets("earliest", OffsetSpec.earliest()); break;
                    case "read": read(Long.parseLong(a[1])); break;
                    case "follow-start": followStart(Integer.parseInt(a[1])); break;
                    case "follow-rest": followRest(Long.parseLong(a[1]), Long.parseLong(a[2])); break;
                    default: Out.emit("reply", a[0], "ok", false, "error", "unknown command", "message", line);
                }
            } catch (Exception e) {
                Throwable c = Out.cause(e);
                Out.emit("reply", a[0], "ok", false, "error", c.getClass().getName(), "message", c.getMessage());
            }
        }
        if (follower != null) follower.close(CloseOptions.timeout(Duration.ofSeconds(5)));
        if (producer != null) producer.close(Duration.ofSeconds(5));
        Out.emit("reply", "quit", "ok", true);
    }

    static void produce(int from, int count) throws Exception {
        if (producer == null) {
            Properties props = new Properties();
            props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ProducerConfig.CLIENT_ID_CONFIG, "sluice-epoch-producer");
            props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
            props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
            producer = new KafkaProducer<>(props);
        }
        AtomicInteger acked = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        AtomicLong first = new AtomicLong(Long.MAX_VALUE);
        AtomicLong last = new AtomicLong(-1);
        AtomicReference<Exception> firstError = new AtomicReference<>();
        for (int i = from; i < from + count; i++) {
            producer.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i), (md, e) -> {
                if (e != null) {
                    failed.incrementAndGet();
                    firstError.compareAndSet(null, e);
                } else {
                    acked.incrementAndGet();
                    first.accumulateAndGet(md.offset(), Math::min);
                    last.accumulateAndGet(md.offset(), Math::max);
                }
            });
        }
        producer.flush();
        Exception e = firstError.get();
        Out.emit("reply", "produce", "ok", e == null, "acked", acked.get(), "failed", failed.get(),
                "offsets", List.of(first.get() == Long.MAX_VALUE ? -1 : first.get(), last.get()),
                "error", e == null ? null : e.getClass().getName(), "message", e == null ? null : e.getMessage(),
                "t", t());
    }

    static void listOffsets(String name, OffsetSpec spec) throws Exception {
        // A new Admin client every time: one kept across a leader's kill -9
        // goes on sending listOffsets to the leader it cached (its partition
        // leader cache only forgets a leader on an error from it, and a dead
        // broker sends none) until the call times out, "Timed out waiting for
        // a node assignment" (KAFKA-20673).
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "sluice-epoch-admin");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        try (Admin admin = Admin.create(props)) {
            ListOffsetsResult.ListOffsetsResultInfo info =
                    admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get(25, TimeUnit.SECONDS);
            Out.emit("reply", name, "ok", true, "offset", info.offset(),
                    "leader_epoch", info.leaderEpoch().orElse(-1), "t", t());
        }
    }

    static Properties consumerProps(String clientId) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
        return props;
    }

    static List<Object> row(ConsumerRecord<String, String> r) {
        return List.of(r.offset(), r.value(), r.leaderEpoch().orElse(-1));
    }

    static void read(long timeoutMs) {
        List<Object> records = new ArrayList<>();
        List<Object> errors = new ArrayList<>();
        long end;
        boolean timedOut = false;
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("sluice-epoch-reader"))) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            end = c.endOffsets(List.of(tp), Duration.ofMillis(timeoutMs)).get(tp);
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (c.position(tp, Duration.ofMillis(timeoutMs)) < end) {
                if (System.nanoTime() > deadline) {
                    timedOut = true;
                    break;
                }
                try {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                        if (r.offset() < end) records.add(row(r));
                    }
                } catch (Exception e) {
                    errors.add(Map.of("error", e.getClass().getName(), "message", String.valueOf(e.getMessage()), "t", t()));
                    if (errors.size() > 20) break;
                }
            }
        }
        Out.emit("reply", "read", "ok", errors.isEmpty() && !timedOut, "end", end, "records", records,
                "errors", errors, "timed_out", timedOut, "t", t());
    }

    static void followStart(int n) {
        Properties props = consumerProps("sluice-epoch-follower");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10");
        follower = new KafkaConsumer<>(props);
        follower.assign(List.of(tp));
        follower.seekToBeginning(List.of(tp));
        List<Object> records = new ArrayList<>();
        int lastEpoch = -1;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (records.size() < n && System.nanoTime() < deadline) {
            for (ConsumerRecord<String, String> r : follower.poll(Duration.ofMillis(200))) {
                records.add(row(r));
                lastEpoch = r.leaderEpoch().orElse(-1);
            }
        }
        Out.emit("reply", "follow-start", "ok", records.size() >= n, "records", records,
                "position", follower.position(tp), "last_epoch", lastEpoch, "t", t());
    }

    static void followRest(long end, long timeoutMs) {
        List<Object> records = new ArrayList<>();
        List<Object> errors = new ArrayList<>();
        boolean timedOut = false;
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        long position = -1;
        while (true) {
            try {
                position = follower.position(tp, Duration.ofMillis(2000));
                if (position >= end) break;
            } catch (Exception e) {
                errors.add(Map.of("error", e.getClass().getName(), "message", String.valueOf(e.getMessage()),
                        "t", t(), "where", "position"));
                if (e instanceof org.apache.kafka.clients.consumer.InvalidOffsetException) break;
            }
            if (System.nanoTime() > deadline) {
                timedOut = true;
                break;
            }
            try {
                for (ConsumerRecord<String, String> r : follower.poll(Duration.ofMillis(200))) {
                    records.add(row(r));
                }
            } catch (Exception e) {
                Map<String, Object> err = new java.util.TreeMap<>();
                err.put("error", e.getClass().getName());
                err.put("message", String.valueOf(e.getMessage()));
                err.put("t", t());
                err.put("where", "poll");
                if (e instanceof LogTruncationException) {
                    Map<String, Object> div = new java.util.TreeMap<>();
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> d :
                            ((LogTruncationException) e).divergentOffsets().entrySet()) {
                        div.put(d.getKey().toString(), String.valueOf(d.getValue()));
                    }
                    err.put("divergent_offsets", div);
                }
                errors.add(err);
                if (e instanceof org.apache.kafka.clients.consumer.InvalidOffsetException || errors.size() > 20) break;
            }
        }
        Out.emit("reply", "follow-rest", "ok", errors.isEmpty() && !timedOut, "records", records,
                "position", position, "errors", errors, "timed_out", timedOut, "t", t());
    }
}
