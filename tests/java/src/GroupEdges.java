import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * GroupEdges CHECK BOOTSTRAP TOPIC GROUP [SESSION_TIMEOUT_MS]: classic-protocol
 * consumer group edge cases with static members (KIP-345), for
 * tests/clients/test_group_edges.py. Prints one JSON object a line ("t" is
 * milliseconds since the start, one clock for every thread):
 *   {"event": "assigned" | "revoked" | "lost", "member": name, "incarnation": n, "partitions": [...], "t": ...}
 *   {"event": "closed", "member": name, "incarnation": n, "t": ...}
 *   {"phase": name, "ok": bool, "t": ..., ...}  a step of the scenario and whether its wait was met
 *   {"step": name, "ok": true, ...} or {"step": name, "ok": false, "error": class, "message": ...}
 *   {"event": "error", "member": name, "error": class, "message": ..., "t": ...}
 *
 * Checks:
 *   static-members: static member "a" alone (it must get both partitions of
 *       TOPIC), then static member "b" joins (one partition each); then "b"
 *       closes (a static member sends no LeaveGroup) and a new consumer with
 *       instance id "b" starts at once, within the session timeout; it must
 *       get a partition back; then 3 s more of both polling.
 *   remove-static BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS COMMIT PAUSE_MS:
 *       static member "a" polls until it has its assignment (and, when COMMIT
 *       is "commit", has committed its positions) and closes (no LeaveGroup);
 *       then the Admin client describes the group, tries deleteConsumerGroups
 *       (the group is not empty yet), removes the member by its instance id
 *       (LeaveGroup with the instance id), waits PAUSE_MS and deletes the
 *       group, then describes it again.
 * Exit code 1 when a wait of the scenario was not met or a setup call threw.
 */
public final class GroupEdges {
    static final long START = System.nanoTime();

    static long t() {
        return (System.nanoTime() - START) / 1_000_000;
    }

    public static void main(String[] args) throws Exception {
        String check = args[0];
        String bootstrap = args[1];
        String topic = args[2];
        String group = args[3];
        int session = args.length > 4 ? Integer.parseInt(args[4]) : 15000;
        boolean ok;
        switch (check) {
            case "static-members": ok = staticMembers(bootstrap, topic, group, session); break;
            case "remove-static":
                ok = removeStatic(bootstrap, topic, group, session, args[5].equals("commit"),
                        Long.parseLong(args[6]));
                break;
            default: throw new IllegalArgumentException("unknown check " + check);
        }
        System.exit(ok ? 0 : 1);
    }

    /** A static member polling in its own thread until stopped. */
    static final class Member {
        final String name;
        final int incarnation;
        final Thread thread;
        volatile boolean stop;
        volatile Set<Integer> assigned = Set.of();
        volatile boolean closed;
        /** Commits the positions once (commitSync) as soon as it has partitions. */
        final boolean commitOnce;
        volatile Set<Integer> committed = Set.of();

        Member(String bootstrap, String topic, String group, String name, int incarnation, int session) {
            this(bootstrap, topic, group, name, incarnation, session, false);
        }

        Member(String bootstrap, String topic, String group, String name, int incarnation, int session,
               boolean commitOnce) {
            this.name = name;
            this.incarnation = incarnation;
            this.commitOnce = commitOnce;
            Properties props = new Properties();
            props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, name);
            props.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-" + name + "-" + incarnation);
            props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, String.valueOf(session));
            props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
            props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            thread = new Thread(() -> run(props, topic), "member-" + name + "-" + incarnation);
            thread.start();
        }

        void run(Properties props, String topic) {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                        Set<Integer> ps = partitions(parts);
                        Set<Integer> now = new TreeSet<>(assigned);
                        now.addAll(ps);
                        assigned = now;
                        event("assigned", ps);
                    }

                    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                        Set<Integer> ps = partitions(parts);
                        event("revoked", ps);
                        Set<Integer> now = new TreeSet<>(assigned);
                        now.removeAll(ps);
                        assigned = now;
                    }

                    public void onPartitionsLost(Collection<TopicPartition> parts) {
                        Set<Integer> ps = partitions(parts);
                        event("lost", ps);
                        Set<Integer> now = new TreeSet<>(assigned);
                        now.removeAll(ps);
                        assigned = now;
                    }
                });
                while (!stop) {
                    consumer.poll(Duration.ofMillis(100));
                    if (commitOnce && committed.isEmpty() && !consumer.assignment().isEmpty()) {
                        consumer.commitSync();
                        committed = partitions(consumer.assignment());
                        Out.emit("event", "committed", "member", name, "incarnation", incarnation,
                                "partitions", committed, "t", t());
                    }
                }
                // close() of a static member sends no LeaveGroup (its session
                // keeps its place in the group).
            } catch (RuntimeException e) {
                Throwable c = Out.cause(e);
                Out.emit("event", "error", "member", name, "incarnation", incarnation, "error",
                        c.getClass().getName(), "message", c.getMessage(), "t", t());
            }
            closed = true;
            Out.emit("event", "closed", "member", name, "incarnation", incarnation, "t", t());
        }

        void event(String what, Set<Integer> ps) {
            Out.emit("event", what, "member", name, "incarnation", incarnation, "partitions", ps, "t", t());
        }

        void close() throws InterruptedException {
            stop = true;
            thread.join(30_000);
        }
    }

    static Set<Integer> partitions(Collection<TopicPartition> parts) {
        return parts.stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
    }

    static boolean waitFor(BooleanSupplier cond, long ms) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        while (System.nanoTime() < deadline) {
            if (cond.getAsBoolean()) return true;
            Thread.sleep(20);
        }
        return cond.getAsBoolean();
    }

    static boolean staticMembers(String bootstrap, String topic, String group, int session) throws Exception {
        Member a = new Member(bootstrap, topic, group, "a", 1, session);
        Member b = null;
        Member b2 = null;
        try {
            boolean ok = waitFor(() -> a.assigned.equals(Set.of(0, 1)), 30_000);
            Out.emit("phase", "a_alone", "ok", ok, "t", t(), "a", a.assigned);
            if (!ok) return false;

            Member bb = new Member(bootstrap, topic, group, "b", 1, session);
            b = bb;
            ok = waitFor(() -> a.assigned.size() == 1 && bb.assigned.size() == 1
                    && !a.assigned.equals(bb.assigned), 30_000);
            Out.emit("phase", "shared", "ok", ok, "t", t(), "a", a.assigned, "b", bb.assigned);
            if (!ok) return false;
            Thread.sleep(2000);

            Out.emit("phase", "b_closing", "ok", true, "t", t(), "a", a.assigned, "b", bb.assigned);
            bb.close();
            Out.emit("phase", "b_closed", "ok", bb.closed, "t", t());
            Member again = new Member(bootstrap, topic, group, "b", 2, session);
            b2 = again;
            ok = waitFor(() -> again.assigned.size() == 1, 20_000);
            Out.emit("phase", "b_back", "ok", ok, "t", t(), "a", a.assigned, "b", again.assigned);
            if (!ok) return false;
            Thread.sleep(3000);
            Out.emit("phase", "end", "ok", true, "t", t(), "a", a.assigned, "b", again.assigned);
            return true;
        } finally {
            if (b != null) b.close();
            if (b2 != null) b2.close();
            a.close();
        }
    }

    interface Step {
        Object[] run() throws Exception;
    }

    /** Runs one Admin step and prints its outcome; true when it succeeded. */
    static boolean step(String name, Step s) {
        try {
            Object[] fields = s.run();
            Object[] line = new Object[4 + fields.length];
            line[0] = "step";
            line[1] = name;
            line[2] = "ok";
            line[3] = true;
            System.arraycopy(fields, 0, line, 4, fields.length);
            Out.emit(line);
            return true;
        } catch (Exception e) {
            Throwable c = Out.cause(e);
            Out.emit("step", name, "ok", false, "error", c.getClass().getName(), "message", c.getMessage(),
                    "t", t());
            return false;
        }
    }

    static Object[] describe(Admin admin, String group) throws Exception {
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all()
                .get(30, TimeUnit.SECONDS).get(group);
        List<String> instances = d.members().stream()
                .map(m -> m.groupInstanceId().orElse("(dynamic)"))
                .sorted()
                .collect(Collectors.toList());
        return new Object[] {"state", String.valueOf(d.groupState()), "members", instances, "t", t()};
    }

    static boolean removeStatic(String bootstrap, String topic, String group, int session, boolean commit,
                                long pauseMs) throws Exception {
        Member a = new Member(bootstrap, topic, group, "a", 1, session, commit);
        boolean ok = waitFor(() -> !a.assigned.isEmpty() && (!commit || !a.committed.isEmpty()), 30_000);
        Out.emit("phase", "a_assigned", "ok", ok, "t", t(), "a", a.assigned);
        a.close();
        Out.emit("phase", "a_closed", "ok", a.closed, "t", t());
        if (!ok || !a.closed) return false;

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, group + "-admin");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "25000");
        try (Admin admin = Admin.create(props)) {
            step("describe_after_close", () -> describe(admin, group));
            step("delete_before_remove", () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS);
                return new Object[] {"t", t()};
            });
            step("remove_member", () -> {
                admin.removeMembersFromConsumerGroup(group,
                        new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove("a"))))
                        .all().get(30, TimeUnit.SECONDS);
                return new Object[] {"t", t()};
            });
            Thread.sleep(pauseMs);
            step("delete_after_remove", () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS);
                return new Object[] {"t", t()};
            });
            step("describe_after_delete", () -> describe(admin, group));
        }
        return true;
    }
}
