import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * SecureChecks SASL_BOOTSTRAP MTLS_BOOTSTRAP PKI COUNT
 *
 * The Java client over TLS against a broker with Kafka's StandardAuthorizer:
 * SASL_SSL with SCRAM-SHA-512 (users admin, java-svc) and mutual TLS (the
 * certificate PKI/java.pem, principal User:java). Steps, one JSON line each:
 *   acls           admin creates topics java-sasl, java-mtls, secret-java and,
 *                  with Admin.createAcls, WRITE and READ on topics java-* and
 *                  READ on groups java-* for User:java-svc and User:java;
 *                  "described" is what describeAcls then finds for them
 *   sasl-produce   java-svc produces COUNT records (client defaults:
 *                  idempotent, acks=all); "acked"
 *   sasl-consume   java-svc reads them in group java-sasl and commits;
 *                  "count", "committed"
 *   mtls-produce   the same as User:java over mutual TLS
 *   mtls-consume
 *   denied         java-svc writing secret-java: the error's class
 *   delete-acls    admin deletes java-svc's ACLs; "deleted", then java-svc's
 *                  write to java-sasl: "after" (the error's class)
 */
public final class SecureChecks {
    static String pki;

    static Properties tls(String bootstrap) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PEM");
        p.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, pki + "/ca.pem");
        p.put(CommonClientConfigs.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        p.put(CommonClientConfigs.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        return p;
    }

    static Properties sasl(String bootstrap, String user, String password) {
        Properties p = tls(bootstrap);
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        p.put(SaslConfigs.SASL_MECHANISM, "SCRAM-SHA-512");
        p.put(SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.scram.ScramLoginModule required"
                + " username=\"" + user + "\" password=\"" + password + "\";");
        return p;
    }

    static Properties mtls(String bootstrap, String cert) {
        Properties p = tls(bootstrap);
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SSL");
        p.put(SslConfigs.SSL_KEYSTORE_TYPE_CONFIG, "PEM");
        p.put(SslConfigs.SSL_KEYSTORE_LOCATION_CONFIG, pki + "/" + cert + "-store.pem");
        return p;
    }

    static Object[] produce(Properties client, String topic, int count) throws Exception {
        Properties p = (Properties) client.clone();
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        int acked = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<?>> sends = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sends.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
            }
            for (Future<?> f : sends) {
                f.get();
                acked++;
            }
        }
        return new Object[] {"acked", acked};
    }

    static Object[] consume(Properties client, String topic, String group, int count) {
        Properties p = (Properties) client.clone();
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Set<String> seen = new HashSet<>();
        long committed = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    seen.add(r.value());
                }
            }
            consumer.commitSync();
            for (var e : consumer.committed(consumer.assignment()).entrySet()) {
                if (e.getValue() != null) {
                    committed += e.getValue().offset();
                }
            }
        }
        return new Object[] {"count", seen.size(), "committed", committed};
    }

    static String failure(Properties client, String topic) {
        Properties p = (Properties) client.clone();
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.send(new ProducerRecord<>(topic, "forged")).get();
            return "none";
        } catch (ExecutionException e) {
            return Out.cause(e).getClass().getSimpleName();
        } catch (Exception e) {
            return e.getClass().getSimpleName();
        }
    }

    static AclBinding allow(String principal, ResourceType type, AclOperation op) {
        return new AclBinding(new ResourcePattern(type, "java-", PatternType.PREFIXED),
                new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    static AclBindingFilter of(String principal) {
        return new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
    }

    public static void main(String[] args) throws Exception {
        String saslBootstrap = args[0];
        String mtlsBootstrap = args[1];
        pki = args[2];
        int count = Integer.parseInt(args[3]);
        Properties admin = sasl(saslBootstrap, "admin", "admin-secret");
        Properties svc = sasl(saslBootstrap, "java-svc", "java-svc-secret");

        Out.step("acls", () -> {
            try (Admin a = Admin.create(admin)) {
                a.createTopics(List.of(new NewTopic("java-sasl", 3, (short) 1),
                        new NewTopic("java-mtls", 3, (short) 1),
                        new NewTopic("secret-java", 1, (short) 1))).all().get();
                List<AclBinding> acls = new ArrayList<>();
                for (String who : List.of("User:java-svc", "User:java")) {
                    acls.add(allow(who, ResourceType.TOPIC, AclOperation.WRITE));
                    acls.add(allow(who, ResourceType.TOPIC, AclOperation.READ));
                    acls.add(allow(who, ResourceType.GROUP, AclOperation.READ));
                }
                a.createAcls(acls).all().get();
                int described = a.describeAcls(of("User:java-svc")).values().get().size()
                        + a.describeAcls(of("User:java")).values().get().size();
                return new Object[] {"described", described};
            }
        });
        Out.step("sasl-produce", () -> produce(svc, "java-sasl", count));
        Out.step("sasl-consume", () -> consume(svc, "java-sasl", "java-sasl", count));
        Properties cert = mtls(mtlsBootstrap, "java");
        Out.step("mtls-produce", () -> produce(cert, "java-mtls", count));
        Out.step("mtls-consume", () -> consume(cert, "java-mtls", "java-mtls", count));
        Out.step("denied", () -> new Object[] {"error", failure(svc, "secret-java")});
        Out.step("delete-acls", () -> {
            int deleted;
            try (Admin a = Admin.create(admin)) {
                deleted = a.deleteAcls(List.of(of("User:java-svc"))).all().get().size();
            }
            return new Object[] {"deleted", deleted, "after", failure(svc, "java-sasl")};
        });
    }
}
