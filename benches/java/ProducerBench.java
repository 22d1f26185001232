import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * ProducerBench BOOTSTRAP TOPIC SECONDS RECORD_BYTES [name=value ...]
 *
 * The Java producer at its defaults (idempotent, acks=all, 16 KiB batches,
 * 5 requests in flight) unless a name=value overrides a producer config:
 * sends records of RECORD_BYTES, unkeyed (the sticky partitioner spreads
 * them over the topic's partitions), as fast as the producer takes them,
 * for SECONDS after a warm-up of 2 s. Prints one JSON line:
 *   {"records": N, "mb_per_s": X, "records_per_s": Y, "p50_ms": ..., "p99_ms": ..., "p999_ms": ..., "errors": E}
 * Latency is from send() to the acknowledgement's callback.
 */
public final class ProducerBench {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        double seconds = Double.parseDouble(args[2]);
        int size = Integer.parseInt(args[3]);
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        for (int i = 4; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        byte[] value = new byte[size];
        Arrays.fill(value, (byte) 'x');
        int cap = 1 << 24;
        long[] latencies = new long[cap];
        AtomicLong recorded = new AtomicLong();
        AtomicLong errors = new AtomicLong();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            long warmEnd = System.nanoTime() + 2_000_000_000L;
            while (System.nanoTime() < warmEnd) {
                producer.send(new ProducerRecord<>(topic, value));
            }
            producer.flush();
            long start = System.nanoTime();
            long end = start + (long) (seconds * 1e9);
            long sent = 0;
            while (System.nanoTime() < end) {
                long t0 = System.nanoTime();
                producer.send(new ProducerRecord<>(topic, value), (md, e) -> {
                    if (e != null) {
                        errors.incrementAndGet();
                        return;
                    }
                    long i = recorded.getAndIncrement();
                    if (i < cap) {
                        latencies[(int) i] = System.nanoTime() - t0;
                    }
                });
                sent++;
            }
            producer.flush();
            double elapsed = (System.nanoTime() - start) / 1e9;
            int n = (int) Math.min(recorded.get(), cap);
            long[] l = Arrays.copyOf(latencies, n);
            Arrays.sort(l);
            System.out.printf(
                "{\"records\": %d, \"mb_per_s\": %.1f, \"records_per_s\": %.0f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"p999_ms\": %.2f, \"errors\": %d}%n",
                sent, sent * (double) size / elapsed / 1e6, sent / elapsed,
                pct(l, 0.5), pct(l, 0.99), pct(l, 0.999), errors.get());
        }
    }

    private static double pct(long[] sorted, double q) {
        if (sorted.length == 0) {
            return -1;
        }
        return sorted[Math.min(sorted.length - 1, (int) (sorted.length * q))] / 1e6;
    }
}
