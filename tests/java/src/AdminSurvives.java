import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.config.ConfigResource;

/** A long-lived Java AdminClient, as Kafka Connect keeps one: made and used
 *  while every broker is up ("ready"), then, once the test has killed a
 *  broker and it was fenced ("go" on stdin), used again: describeCluster,
 *  listTopics, incrementalAlterConfigs and createTopics, each timed
 *  ("done" with the milliseconds each took and the nodes it was told of). */
public final class AdminSurvives {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        try (Admin admin = Admin.create(p)) {
            admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
            admin.listTopics().names().get(30, TimeUnit.SECONDS);
            Out.emit("event", "ready");
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            if (!"go".equals(in.readLine())) {
                return;
            }
            Map<String, Long> ms = new TreeMap<>();
            boolean ok = true;
            String error = null;
            List<Integer> nodes = new ArrayList<>();
            try {
                long t = System.nanoTime();
                for (Node n : admin.describeCluster().nodes().get(20, TimeUnit.SECONDS)) {
                    nodes.add(n.id());
                }
                Collections.sort(nodes);
                ms.put("describeCluster", (System.nanoTime() - t) / 1_000_000);
                t = System.nanoTime();
                admin.listTopics().names().get(20, TimeUnit.SECONDS);
                ms.put("listTopics", (System.nanoTime() - t) / 1_000_000);
                t = System.nanoTime();
                ConfigResource topic = new ConfigResource(ConfigResource.Type.TOPIC, "live");
                AlterConfigOp op = new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET);
                admin.incrementalAlterConfigs(Map.of(topic, List.of(op))).all().get(20, TimeUnit.SECONDS);
                ms.put("incrementalAlterConfigs", (System.nanoTime() - t) / 1_000_000);
                t = System.nanoTime();
                admin.createTopics(List.of(new NewTopic("java-after-kill", 2, (short) 2))).all().get(20, TimeUnit.SECONDS);
                ms.put("createTopics", (System.nanoTime() - t) / 1_000_000);
            } catch (Exception e) {
                ok = false;
                error = e.toString();
            }
            Out.emit("event", "done", "ok", ok, "error", error, "nodes", nodes, "ms", ms);
        }
    }
}
