"""Rack-aware placement: brokers say which rack they are in (`broker.rack`),
clients see it (Metadata and DescribeCluster, through kafka-python's admin
client), and a new topic's replicas spread over the racks as Kafka's
rack-aware placement does: no rack gets a second replica of a partition
before every rack holds one."""

import pytest
from kafka.admin import KafkaAdminClient

from cluster_support import NODES, metadata, running_cluster

pytestmark = pytest.mark.timeout(120)

# Nodes 1 and 2 in one rack, node 3 in another: ids in order bunch the racks.
RACKS = {NODES[0]: "rack-a", NODES[1]: "rack-a", NODES[2]: "rack-b"}


@pytest.fixture
def cluster(tmp_path):
    node_config = {n: f'"broker.rack" = "{r}"\n' for n, r in RACKS.items()}
    with running_cluster(tmp_path, node_config=node_config) as c:
        yield c


def test_racks_are_reported_and_replicas_spread_over_them(cluster):
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        described = admin.describe_cluster()
    finally:
        admin.close()
    print(f"  {described}")
    racks = {b["broker_id"]: b["rack"] for b in described["brokers"]}
    assert racks == RACKS, described

    for name, rf in (("two-copies", 2), ("three-copies", 3)):
        cluster.create_topic(name, 9, rf)
        parts = metadata(cluster.port(NODES[0]), [name])["topics"][name]["partitions"]
        assert len(parts) == 9
        leaders = {}
        for p, v in parts.items():
            replicas = v["replicas"]
            assert len(set(replicas)) == rf, (name, p, replicas)
            assert {RACKS[r] for r in replicas} == {"rack-a", "rack-b"}, (name, p, replicas)
            leaders[replicas[0]] = leaders.get(replicas[0], 0) + 1
        # Preferred leaders still spread evenly over the brokers.
        assert leaders == {n: 3 for n in NODES}, (name, leaders)
