import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Produce BOOTSTRAP TOPIC COUNT [RECORDS_PER_SECOND]
 *
 * Sends COUNT records, key "k<i>" and value "v<i>" for i = 0..COUNT-1, with
 * the producer's defaults (idempotent, acks=all), no faster than
 * RECORDS_PER_SECOND when given. Prints, once every send has completed:
 *   {"event": "produced", "count": N, "acked": N, "failed": N,
 *    "partitions": {"0": records acked there, ...}, "seconds": S}
 * and, when a send failed, {"event": "error", "error": class, "message": ...}
 * for the first failure and exit code 1.
 */
public final class Produce {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int count = Integer.parseInt(args[2]);
        double rate = args.length > 3 ? Double.parseDouble(args[3]) : 0;

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "sluice-java-producer");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        AtomicInteger acked = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        AtomicReference<Exception> firstError = new AtomicReference<>();
        Map<Integer, Integer> perPartition = new TreeMap<>();
        long start = System.nanoTime();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < count; i++) {
                if (rate > 0) {
                    long waitNanos = start + (long) (i * 1e9 / rate) - System.nanoTime();
                    if (waitNanos > 0) Thread.sleep(waitNanos / 1_000_000, (int) (waitNanos % 1_000_000));
                }
                producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i), (metadata, e) -> {
                    if (e != null) {
                        failed.incrementAndGet();
                        firstError.compareAndSet(null, e);
                    } else {
                        acked.incrementAndGet();
                        synchronized (perPartition) {
                            perPartition.merge(metadata.partition(), 1, Integer::sum);
                        }
                    }
                });
            }
            producer.flush();
        }
        synchronized (perPartition) {
            Out.emit("event", "produced", "count", count, "acked", acked.get(), "failed", failed.get(),
                    "partitions", perPartition, "seconds", (System.nanoTime() - start) / 1e9);
        }
        Exception e = firstError.get();
        if (e != null) {
            Out.emit("event", "error", "error", e.getClass().getName(), "message", e.getMessage());
            System.exit(1);
        }
    }
}
