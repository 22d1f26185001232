import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * SaslChecks BOOTSTRAP TOPIC COUNT
 *
 * The Java client over SASL_PLAINTEXT. Steps, one JSON line each:
 *   produce    alice (SCRAM-SHA-512) produces COUNT records; "acked"
 *   consume    bob (PLAIN) reads them back from the start; "count"
 *   describe   Admin.describeUserScramCredentials(alice); "mechanisms"
 *   alter      carol added with SCRAM-SHA-256, 8192 iterations, bob's
 *              SCRAM-SHA-256 credential deleted
 *   carol      carol (SCRAM-SHA-256) lists topics; "topics"
 *   wrong      a wrong password: the error's class
 */
public final class SaslChecks {
    static Properties sasl(String bootstrap, String mechanism, String user, String password) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_PLAINTEXT");
        p.put(SaslConfigs.SASL_MECHANISM, mechanism);
        String module = mechanism.equals("PLAIN")
                ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        p.put(SaslConfigs.SASL_JAAS_CONFIG,
                module + " required username=\"" + user + "\" password=\"" + password + "\";");
        return p;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int count = Integer.parseInt(args[2]);

        Out.step("produce", () -> {
            Properties p = sasl(bootstrap, "SCRAM-SHA-512", "alice", "alice-secret");
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (Admin admin = Admin.create(sasl(bootstrap, "SCRAM-SHA-512", "alice", "alice-secret"))) {
                admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
            }
            int acked = 0;
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<java.util.concurrent.Future<?>> sends = new ArrayList<>();
                for (int i = 0; i < count; i++) {
                    sends.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
                }
                for (java.util.concurrent.Future<?> f : sends) {
                    f.get();
                    acked++;
                }
            }
            return new Object[] {"acked", acked};
        });

        Out.step("consume", () -> {
            Properties p = sasl(bootstrap, "PLAIN", "bob", "bob-secret");
            p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            int seen = 0;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
                List<TopicPartition> parts = Arrays.asList(
                        new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2));
                consumer.assign(parts);
                consumer.seekToBeginning(parts);
                long deadline = System.currentTimeMillis() + 30_000;
                while (seen < count && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        seen++;
                    }
                }
            }
            return new Object[] {"count", seen};
        });

        try (Admin admin = Admin.create(sasl(bootstrap, "SCRAM-SHA-512", "alice", "alice-secret"))) {
            Out.step("describe", () -> {
                Map<String, UserScramCredentialsDescription> d =
                        admin.describeUserScramCredentials(List.of("alice")).all().get();
                Map<String, Integer> mechanisms = new TreeMap<>();
                for (ScramCredentialInfo i : d.get("alice").credentialInfos()) {
                    mechanisms.put(i.mechanism().mechanismName(), i.iterations());
                }
                return new Object[] {"mechanisms", mechanisms};
            });
            Out.step("alter", () -> {
                List<UserScramCredentialAlteration> changes = List.of(
                        new UserScramCredentialUpsertion("carol",
                                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), "carol-secret"),
                        new UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256));
                admin.alterUserScramCredentials(changes).all().get();
                return new Object[] {};
            });
        }

        Out.step("carol", () -> {
            try (Admin admin = Admin.create(sasl(bootstrap, "SCRAM-SHA-256", "carol", "carol-secret"))) {
                return new Object[] {"topics", new ArrayList<>(admin.listTopics().names().get())};
            }
        });

        Out.step("wrong", () -> {
            Properties p = sasl(bootstrap, "SCRAM-SHA-512", "alice", "not-her-password");
            p.put(CommonClientConfigs.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
            p.put(CommonClientConfigs.REQUEST_TIMEOUT_MS_CONFIG, "5000");
            long start = System.currentTimeMillis();
            try (Admin admin = Admin.create(p)) {
                admin.listTopics().names().get();
                return new Object[] {"error", "none"};
            } catch (java.util.concurrent.ExecutionException e) {
                return new Object[] {"error", Out.cause(e).getClass().getSimpleName(),
                        "ms", System.currentTimeMillis() - start};
            }
        });
    }
}
