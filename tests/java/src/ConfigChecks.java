import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.ConfigResource;

/**
 * ConfigChecks BOOTSTRAP GROUP TOPIC: config calls of the Admin client whose
 * outcomes the Python tests assert on (tests/clients/test_configs.py). Each
 * step prints one line:
 *   {"step": name, "ok": true, ...what it returned}
 *   {"step": name, "ok": false, "error": exception class, "message": ...}
 *
 * Steps: the broker described (its node id from describeCluster) under
 * Kafka's names; GROUP's configs described, altered incrementally
 * (consumer.session.timeout.ms, share.isolation.level), described again,
 * altered with bad values and an unknown name, a config deleted; TOPIC
 * created and described (min.insync.replicas), flush.ms altered and read
 * back with its documentation.
 */
public final class ConfigChecks {
    static final long WAIT_S = 30;
    static final DescribeConfigsOptions ALL = new DescribeConfigsOptions().includeSynonyms(true).includeDocumentation(true);

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "sluice-java-configs");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "25000");
        String group = args[1];
        String topic = args[2];
        try (Admin admin = Admin.create(props)) {
            String node = admin.describeCluster().nodes().get(WAIT_S, TimeUnit.SECONDS).iterator().next().idString();
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, node);
            step("describe_broker", () -> new Object[] {"entries", entries(describe(admin, broker))});

            ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, group);
            step("describe_group", () -> new Object[] {"entries", entries(describe(admin, g))});
            step("alter_group", () -> {
                alter(admin, g, List.of(
                        set("consumer.session.timeout.ms", "50000"),
                        set("share.isolation.level", "read_committed")));
                return new Object[0];
            });
            step("describe_group_altered", () -> new Object[] {"entries", entries(describe(admin, g))});
            step("alter_group_too_short", () -> {
                alter(admin, g, List.of(set("consumer.session.timeout.ms", "1000")));
                return new Object[0];
            });
            step("alter_group_not_a_number", () -> {
                alter(admin, g, List.of(set("consumer.heartbeat.interval.ms", "often")));
                return new Object[0];
            });
            step("alter_group_unknown_name", () -> {
                alter(admin, g, List.of(set("consumer.nonsense.ms", "1")));
                return new Object[0];
            });
            step("alter_group_append", () -> {
                alter(admin, g, List.of(new AlterConfigOp(new ConfigEntry("consumer.session.timeout.ms", "1"),
                        AlterConfigOp.OpType.APPEND)));
                return new Object[0];
            });
            ConfigResource empty = new ConfigResource(ConfigResource.Type.GROUP, "");
            step("describe_group_empty_name", () -> new Object[] {"entries", entries(describe(admin, empty))});
            step("describe_group_after_errors", () -> new Object[] {"entries", entries(describe(admin, g))});
            step("delete_group_config", () -> {
                alter(admin, g, List.of(new AlterConfigOp(new ConfigEntry("consumer.session.timeout.ms", ""),
                        AlterConfigOp.OpType.DELETE)));
                return new Object[] {"entries", entries(describe(admin, g))};
            });

            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(WAIT_S, TimeUnit.SECONDS);
            ConfigResource t = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            step("describe_topic", () -> new Object[] {"entries", entries(describe(admin, t))});
            step("alter_topic_flush_ms", () -> {
                alter(admin, t, List.of(set("flush.ms", "12345")));
                return new Object[] {"entries", entries(describe(admin, t))};
            });
            step("alter_topic_bad_flush_ms", () -> {
                alter(admin, t, List.of(set("flush.ms", "-1")));
                return new Object[0];
            });
        }
    }

    static AlterConfigOp set(String name, String value) {
        return new AlterConfigOp(new ConfigEntry(name, value), AlterConfigOp.OpType.SET);
    }

    static Config describe(Admin admin, ConfigResource r) throws Exception {
        return admin.describeConfigs(List.of(r), ALL).values().get(r).get(WAIT_S, TimeUnit.SECONDS);
    }

    static void alter(Admin admin, ConfigResource r, Collection<AlterConfigOp> ops) throws Exception {
        admin.incrementalAlterConfigs(Map.of(r, ops)).values().get(r).get(WAIT_S, TimeUnit.SECONDS);
    }

    /** {name: {value, source, type, read_only, synonyms: [[name, value, source]], documentation}}. */
    static Map<String, Object> entries(Config config) {
        Map<String, Object> out = new TreeMap<>();
        for (ConfigEntry e : config.entries()) {
            List<Object> synonyms = new ArrayList<>();
            for (ConfigEntry.ConfigSynonym s : e.synonyms()) {
                synonyms.add(List.of(s.name(), String.valueOf(s.value()), s.source().toString()));
            }
            Map<String, Object> entry = new TreeMap<>();
            entry.put("value", e.value());
            entry.put("source", e.source().toString());
            entry.put("type", e.type().toString());
            entry.put("read_only", e.isReadOnly());
            entry.put("synonyms", synonyms);
            entry.put("documentation", e.documentation());
            out.put(e.name(), entry);
        }
        return out;
    }

    static void step(String name, Out.Step step) throws Exception {
        Out.step(name, step);
    }
}
