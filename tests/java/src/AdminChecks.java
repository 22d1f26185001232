import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConsumerGroupOffsetsResult;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeProducersOptions;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.ElectLeadersOptions;
import org.apache.kafka.clients.admin.ElectLeadersResult;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.ListConfigResourcesOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RaftVoterEndpoint;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.Uuid;

/**
 * AdminChecks CHECK BOOTSTRAP ARGS...: Admin client calls whose outcomes the
 * Python tests assert on. Each step prints one line:
 *   {"step": name, "ok": true, ...what it returned}
 *   {"step": name, "ok": false, "error": exception class, "message": ...}
 * where the error is the one the step's future failed with. Any other
 * exception (a setup call failing, a 30 s wait running out) ends the program
 * with exit code 1.
 *
 * Checks:
 *   describe-by-id BOOTSTRAP TOPIC
 *       creates TOPIC (3 partitions), describes it by name, then by its
 *       topic id, then describes a random unknown topic id.
 *   offsets-unknown-topic BOOTSTRAP TOPIC GROUP
 *       alterConsumerGroupOffsets of GROUP for no-such-topic-0; then creates
 *       TOPIC (2 partitions) and alters TOPIC-0 and TOPIC-7 in one call;
 *       then lists GROUP's committed offsets.
 *   log-dirs BOOTSTRAP BROKER_ID
 *       describeLogDirs of that broker: each directory with its sizes and
 *       the partitions it holds (size, offset lag).
 *   elect BOOTSTRAP TOPIC PARTITION...
 *       electLeaders(PREFERRED) for those partitions of TOPIC: one step a
 *       partition, failed with the exception its election got, if any.
 *   list-config-resources BOOTSTRAP TOPIC GROUP
 *       creates TOPIC, gives GROUP (which has no members) a config, then
 *       lists the config resources of every type, and of type GROUP.
 *   producers BOOTSTRAP TOPIC RECORDS REPLICATION_FACTOR [BROKER_ID...]
 *       unless RECORDS is 0, creates TOPIC (1 partition) and sends RECORDS
 *       records to partition 0 with an idempotent producer (the default),
 *       one batch each (every send waited for), record i at timestamp
 *       T + i, T the current time rounded down to a whole second (a
 *       timestamp of now: producer.id.expiration.ms counts from it); then describeProducers of TOPIC-0 (step
 *       "producers", asked of its leader), and the same asked of each
 *       BROKER_ID directly (step "producers at ID").
 *   quorum BOOTSTRAP
 *       describeMetadataQuorum: leader, epoch, high watermark, voters and
 *       observers as [id, log end offset, last fetch, last caught up] (-1
 *       when absent), nodes as {id: [[listener, host, port]]}.
 *   features BOOTSTRAP
 *       describeFeatures: the supported ranges and finalized levels.
 *   reassign BOOTSTRAP TOPIC PARTITION REPLICAS|cancel
 *       alterPartitionReassignments of TOPIC-PARTITION to REPLICAS (ids
 *       separated by commas), or cancelling its reassignment (step
 *       "reassign"); then listPartitionReassignments (step "list":
 *       "TOPIC-PARTITION" -> [replicas, adding, removing]).
 *   unregister BOOTSTRAP ID...
 *       unregisterBroker of each ID (step "unregister ID", failed with the
 *       exception it got, if any).
 *   add-voter BOOTSTRAP ID DIRECTORY_ID HOST PORT
 *       addRaftVoter of node ID on the data folder DIRECTORY_ID (Kafka's
 *       base64 form), reached at HOST:PORT on listener CONTROLLER (step
 *       "add-voter", failed with the exception it got, if any).
 *   remove-voter BOOTSTRAP ID DIRECTORY_ID
 *       removeRaftVoter likewise (step "remove-voter").
 *   create-topic BOOTSTRAP TOPIC PARTITIONS REPLICATION_FACTOR [NAME=VALUE...]
 *       createTopics with those configs, and what CreateTopicsResult tells
 *       of the new topic: numPartitions, replicationFactor and config.
 */
public final class AdminChecks {
    static final long WAIT_S = 30;

    public static void main(String[] args) throws Exception {
        String check = args[0];
        try (Admin admin = newAdmin(args[1])) {
            switch (check) {
                case "describe-by-id": describeById(admin, args[2]); break;
                case "offsets-unknown-topic": offsetsUnknownTopic(admin, args[2], args[3]); break;
                case "create-topic": createTopic(admin, args); break;
                case "features": features(admin); break;
                case "elect": elect(admin, args); break;
                case "reassign": reassign(admin, args[2], Integer.parseInt(args[3]), args[4]); break;
                case "list-config-resources": listConfigResources(admin, args[2], args[3]); break;
                case "log-dirs": logDirs(admin, Integer.parseInt(args[2])); break;
                case "producers": producers(admin, args); break;
                case "quorum": quorum(admin); break;
                case "unregister": unregister(admin, args); break;
                case "add-voter": addVoter(admin, args); break;
                case "remove-voter": removeVoter(admin, args); break;
                default: throw new IllegalArgumentException("unknown check " + check);
            }
        }
    }

    static Admin newAdmin(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "sluice-java-admin");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "25000");
        return Admin.create(props);
    }

    static void describeById(Admin admin, String topic) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get(WAIT_S, TimeUnit.SECONDS);
        Uuid[] id = new Uuid[1];
        step("describe_by_name", () -> {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
                    .get(WAIT_S, TimeUnit.SECONDS).get(topic);
            id[0] = d.topicId();
            return describe(d);
        });
        if (id[0] == null) return;
        step("describe_by_id", () -> {
            Map<Uuid, TopicDescription> byId = admin.describeTopics(TopicCollection.ofTopicIds(List.of(id[0])))
                    .allTopicIds().get(WAIT_S, TimeUnit.SECONDS);
            return describe(byId.get(id[0]));
        });
        Uuid unknown = Uuid.randomUuid();
        step("describe_unknown_id", () -> {
            Map<Uuid, TopicDescription> byId = admin.describeTopics(TopicCollection.ofTopicIds(List.of(unknown)))
                    .allTopicIds().get(WAIT_S, TimeUnit.SECONDS);
            return new Object[] {"described", byId.keySet().toString()};
        });
    }

    static Object[] describe(TopicDescription d) {
        if (d == null) return new Object[] {"name", null};
        return new Object[] {"name", d.name(), "topic_id", String.valueOf(d.topicId()),
                "partitions", d.partitions().size(), "internal", d.isInternal()};
    }

    static void offsetsUnknownTopic(Admin admin, String topic, String group) throws Exception {
        TopicPartition missing = new TopicPartition("no-such-topic", 0);
        step("commit_unknown_topic", () -> {
            admin.alterConsumerGroupOffsets(group, Map.of(missing, new OffsetAndMetadata(5)))
                    .partitionResult(missing).get(WAIT_S, TimeUnit.SECONDS);
            return new Object[0];
        });

        admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(WAIT_S, TimeUnit.SECONDS);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p7 = new TopicPartition(topic, 7);
        AlterConsumerGroupOffsetsResult both = admin.alterConsumerGroupOffsets(group,
                Map.of(p0, new OffsetAndMetadata(5), p7, new OffsetAndMetadata(5)));
        step("commit_existing_partition", () -> {
            both.partitionResult(p0).get(WAIT_S, TimeUnit.SECONDS);
            return new Object[0];
        });
        step("commit_unknown_partition", () -> {
            both.partitionResult(p7).get(WAIT_S, TimeUnit.SECONDS);
            return new Object[0];
        });
        step("list_offsets", () -> {
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(WAIT_S, TimeUnit.SECONDS);
            Map<String, Object> out = new TreeMap<>();
            committed.forEach((tp, om) -> out.put(tp.toString(), om == null ? null : om.offset()));
            return new Object[] {"offsets", out};
        });
    }

    static void createTopic(Admin admin, String[] args) throws Exception {
        String topic = args[2];
        int partitions = Integer.parseInt(args[3]);
        short rf = Short.parseShort(args[4]);
        Map<String, String> configs = new TreeMap<>();
        for (int i = 5; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            configs.put(kv[0], kv[1]);
        }
        CreateTopicsResult result = admin.createTopics(List.of(new NewTopic(topic, partitions, rf).configs(configs)));
        step("create", () -> {
            result.all().get(WAIT_S, TimeUnit.SECONDS);
            return new Object[0];
        });
        step("num_partitions", () -> new Object[] {"value", result.numPartitions(topic).get(WAIT_S, TimeUnit.SECONDS)});
        step("replication_factor",
                () -> new Object[] {"value", result.replicationFactor(topic).get(WAIT_S, TimeUnit.SECONDS)});
        step("topic_id", () -> new Object[] {"value", String.valueOf(result.topicId(topic).get(WAIT_S, TimeUnit.SECONDS))});
        step("config", () -> {
            Config config = result.config(topic).get(WAIT_S, TimeUnit.SECONDS);
            Map<String, Object> entries = new TreeMap<>();
            for (ConfigEntry e : config.entries()) {
                entries.put(e.name(), Map.of("value", String.valueOf(e.value()), "source", e.source().toString()));
            }
            return new Object[] {"entries", entries};
        });
    }

    static void logDirs(Admin admin, int broker) throws Exception {
        step("log_dirs", () -> {
            Map<String, LogDirDescription> dirs =
                    admin.describeLogDirs(List.of(broker)).allDescriptions().get(WAIT_S, TimeUnit.SECONDS).get(broker);
            Map<String, Object> out = new TreeMap<>();
            dirs.forEach((path, d) -> {
                Map<String, Object> replicas = new TreeMap<>();
                d.replicaInfos().forEach((tp, r) -> replicas.put(tp.toString(), List.of(r.size(), r.offsetLag())));
                out.put(path, Map.of("total", d.totalBytes().orElse(-1L), "usable", d.usableBytes().orElse(-1L),
                        "replicas", replicas, "error", String.valueOf(d.error())));
            });
            return new Object[] {"dirs", out};
        });
    }

    static void producers(Admin admin, String[] args) throws Exception {
        String topic = args[2];
        int records = Integer.parseInt(args[3]);
        if (records > 0) {
            produceIdempotent(admin, args[1], topic, records, Short.parseShort(args[4]));
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        step("producers", () -> new Object[] {"producers",
            describeProducers(admin, tp, new DescribeProducersOptions())});
        for (int i = 5; i < args.length; i++) {
            int broker = Integer.parseInt(args[i]);
            // A fresh client each time: the client caches the partition's
            // leader and would send there whatever brokerId says.
            try (Admin direct = newAdmin(args[1])) {
                step("producers at " + broker, () -> new Object[] {"producers",
                    describeProducers(direct, tp, new DescribeProducersOptions().brokerId(broker))});
            }
        }
    }

    static void produceIdempotent(Admin admin, String bootstrap, String topic, int records, short rf)
            throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, 1, rf))).all().get(WAIT_S, TimeUnit.SECONDS);
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "sluice-java-idempotent");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        long base = System.currentTimeMillis() / 1000 * 1000;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < records; i++) {
                producer.send(new ProducerRecord<>(topic, 0, base + i, "k" + i, "v" + i))
                        .get(WAIT_S, TimeUnit.SECONDS);
            }
        }
    }

    /** [[producer id, epoch, last sequence, last timestamp, coordinator
     *  epoch (-1 when none), txn start offset (-1 when none)], ...]. */
    static List<List<Long>> describeProducers(Admin admin, TopicPartition tp, DescribeProducersOptions options)
            throws Exception {
        DescribeProducersResult r = admin.describeProducers(List.of(tp), options);
        List<List<Long>> out = new java.util.ArrayList<>();
        for (ProducerState p : r.partitionResult(tp).get(WAIT_S, TimeUnit.SECONDS).activeProducers()) {
            out.add(List.of(p.producerId(), (long) p.producerEpoch(), (long) p.lastSequence(), p.lastTimestamp(),
                    (long) p.coordinatorEpoch().orElse(-1), p.currentTransactionStartOffset().orElse(-1L)));
        }
        return out;
    }

    static void quorum(Admin admin) throws Exception {
        step("quorum", () -> {
            QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get(WAIT_S, TimeUnit.SECONDS);
            Map<String, Object> nodes = new TreeMap<>();
            q.nodes().forEach((id, n) -> {
                List<List<Object>> endpoints = new java.util.ArrayList<>();
                for (RaftVoterEndpoint e : n.endpoints()) {
                    endpoints.add(List.of(e.listener(), e.host(), e.port()));
                }
                nodes.put(String.valueOf(id), endpoints);
            });
            return new Object[] {"leader", q.leaderId(), "epoch", q.leaderEpoch(), "high_watermark", q.highWatermark(),
                "voters", replicas(q.voters()), "observers", replicas(q.observers()), "nodes", nodes};
        });
    }

    static List<List<Long>> replicas(List<QuorumInfo.ReplicaState> states) {
        List<List<Long>> out = new java.util.ArrayList<>();
        for (QuorumInfo.ReplicaState r : states) {
            out.add(List.of((long) r.replicaId(), r.logEndOffset(), r.lastFetchTimestamp().orElse(-1L),
                    r.lastCaughtUpTimestamp().orElse(-1L)));
        }
        return out;
    }

    static void elect(Admin admin, String[] args) throws Exception {
        Set<TopicPartition> tps = new LinkedHashSet<>();
        for (int i = 3; i < args.length; i++) {
            tps.add(new TopicPartition(args[2], Integer.parseInt(args[i])));
        }
        ElectLeadersResult r = admin.electLeaders(ElectionType.PREFERRED, tps,
                new ElectLeadersOptions().timeoutMs(30_000));
        Map<TopicPartition, Optional<Throwable>> out = r.partitions().get(WAIT_S, TimeUnit.SECONDS);
        for (TopicPartition tp : tps) {
            step("elect " + tp, () -> {
                Optional<Throwable> e = out.get(tp);
                if (e != null && e.isPresent()) {
                    throw new ExecutionException(e.get());
                }
                return new Object[0];
            });
        }
    }

    static void reassign(Admin admin, String topic, int partition, String replicas) throws Exception {
        TopicPartition tp = new TopicPartition(topic, partition);
        Optional<NewPartitionReassignment> target = Optional.empty();
        if (!replicas.equals("cancel")) {
            List<Integer> ids = new java.util.ArrayList<>();
            for (String id : replicas.split(",")) {
                ids.add(Integer.parseInt(id));
            }
            target = Optional.of(new NewPartitionReassignment(ids));
        }
        Map<TopicPartition, Optional<NewPartitionReassignment>> asked = Map.of(tp, target);
        step("reassign", () -> {
            admin.alterPartitionReassignments(asked).all().get(WAIT_S, TimeUnit.SECONDS);
            return new Object[0];
        });
        step("list", () -> {
            Map<String, Object> out = new TreeMap<>();
            for (Map.Entry<TopicPartition, PartitionReassignment> e : admin.listPartitionReassignments()
                    .reassignments().get(WAIT_S, TimeUnit.SECONDS).entrySet()) {
                PartitionReassignment r = e.getValue();
                out.put(e.getKey().toString(), List.of(r.replicas(), r.addingReplicas(), r.removingReplicas()));
            }
            return new Object[] {"reassignments", out};
        });
    }

    /** unregisterBroker for each id given, one step each. */
    static void unregister(Admin admin, String[] args) throws Exception {
        for (int i = 2; i < args.length; i++) {
            int id = Integer.parseInt(args[i]);
            step("unregister " + id, () -> {
                admin.unregisterBroker(id).all().get(WAIT_S, TimeUnit.SECONDS);
                return new Object[0];
            });
        }
    }

    static void addVoter(Admin admin, String[] args) throws Exception {
        int id = Integer.parseInt(args[2]);
        org.apache.kafka.common.Uuid dir = org.apache.kafka.common.Uuid.fromString(args[3]);
        Set<RaftVoterEndpoint> endpoints = Set.of(new RaftVoterEndpoint("CONTROLLER", args[4], Integer.parseInt(args[5])));
        step("add-voter", () -> {
            admin.addRaftVoter(id, dir, endpoints).all().get(WAIT_S * 2, TimeUnit.SECONDS);
            return new Object[0];
        });
    }

    static void removeVoter(Admin admin, String[] args) throws Exception {
        int id = Integer.parseInt(args[2]);
        org.apache.kafka.common.Uuid dir = org.apache.kafka.common.Uuid.fromString(args[3]);
        step("remove-voter", () -> {
            admin.removeRaftVoter(id, dir).all().get(WAIT_S * 2, TimeUnit.SECONDS);
            return new Object[0];
        });
    }

    static void listConfigResources(Admin admin, String topic, String group) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(WAIT_S, TimeUnit.SECONDS);
        ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, group);
        AlterConfigOp op = new AlterConfigOp(new ConfigEntry("consumer.session.timeout.ms", "50000"),
                AlterConfigOp.OpType.SET);
        admin.incrementalAlterConfigs(Map.of(g, List.of(op))).all().get(WAIT_S, TimeUnit.SECONDS);
        step("all", () -> new Object[] {"resources", names(admin.listConfigResources().all())});
        step("groups", () -> new Object[] {"resources", names(admin.listConfigResources(
                Set.of(ConfigResource.Type.GROUP), new ListConfigResourcesOptions()).all())});
    }

    static List<String> names(org.apache.kafka.common.KafkaFuture<java.util.Collection<ConfigResource>> f)
            throws Exception {
        List<String> out = new java.util.ArrayList<>();
        for (ConfigResource r : f.get(WAIT_S, TimeUnit.SECONDS)) {
            out.add(r.type() + ":" + r.name());
        }
        java.util.Collections.sort(out);
        return out;
    }

    static void features(Admin admin) throws Exception {
        step("features", () -> {
            FeatureMetadata f = admin.describeFeatures().featureMetadata().get(WAIT_S, TimeUnit.SECONDS);
            Map<String, Object> supported = new TreeMap<>();
            f.supportedFeatures().forEach((k, v) -> supported.put(k, List.of((int) v.minVersion(), (int) v.maxVersion())));
            Map<String, Object> finalized = new TreeMap<>();
            f.finalizedFeatures().forEach((k, v) -> finalized.put(k, (int) v.maxVersionLevel()));
            return new Object[] {"supported", supported, "finalized", finalized,
                "epoch", f.finalizedFeaturesEpoch().map(e -> (Object) e).orElse(-1L)};
        });
    }

    static void step(String name, Out.Step step) throws Exception {
        Out.step(name, step);
    }
}
