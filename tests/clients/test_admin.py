"""Topic administration through the admin clients of librdkafka and kafka-python."""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.admin import NewPartitions as KpNewPartitions
from kafka.admin import NewTopic as KpNewTopic
from kafka.errors import InvalidPartitionsError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from conftest import create_topic


def test_confluent_admin_lifecycle(broker):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = a.create_topics(
        [NewTopic("orders", num_partitions=3, config={"retention.ms": "3600000", "cleanup.policy": "delete"})]
    )
    fs["orders"].result(timeout=20)

    # Validation: bad name, bad config, duplicate, validate_only.
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bad name!", num_partitions=1)])["bad name!"].result(timeout=20)
    assert e.value.args[0].code() == 17  # INVALID_TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("x", num_partitions=1, config={"retention.ms": "soon"})])["x"].result(timeout=20)
    assert e.value.args[0].code() == 40  # INVALID_CONFIG
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("orders", num_partitions=1)])["orders"].result(timeout=20)
    assert e.value.args[0].code() == 36  # TOPIC_ALREADY_EXISTS
    a.create_topics([NewTopic("dry", num_partitions=2)], validate_only=True)["dry"].result(timeout=20)
    assert "dry" not in a.list_topics(timeout=10).topics

    md = a.list_topics(timeout=10)
    assert len(md.topics["orders"].partitions) == 3

    res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
    configs = a.describe_configs([res])[res].result(timeout=20)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == 1  # TOPIC_CONFIG
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == 5  # DEFAULT_CONFIG
    assert configs["cleanup.policy"].value == "delete"

    b = ConfigResource(ConfigResource.Type.BROKER, "1")
    bconf = a.describe_configs([b])[b].result(timeout=20)
    assert bconf["num.partitions"].value == "1"

    a.create_partitions([NewPartitions("orders", 5)])["orders"].result(timeout=20)
    assert len(a.list_topics(timeout=10).topics["orders"].partitions) == 5
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions("orders", 2)])["orders"].result(timeout=20)
    assert e.value.args[0].code() == 37  # INVALID_PARTITIONS

    cluster = a.describe_cluster().result(timeout=20)
    assert [n.port for n in cluster.nodes] == [broker.port]
    assert cluster.cluster_id

    a.delete_topics(["orders"])["orders"].result(timeout=20)
    assert "orders" not in a.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as e:
        a.delete_topics(["orders"])["orders"].result(timeout=20)
    assert e.value.args[0].code() == 3  # UNKNOWN_TOPIC_OR_PARTITION

    # A recreated topic is new: new id, empty.
    create_topic(broker.bootstrap, "orders", partitions=1)
    assert len(a.list_topics(timeout=10).topics["orders"].partitions) == 1


def test_kafka_python_admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    a.create_topics([KpNewTopic("events", 2, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})])
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([KpNewTopic("events", 2, 1)])
    cfg = a.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "events")], config_filter="all")
    entries = next(iter(next(iter(cfg.values())).values()))
    assert entries["message.timestamp.type"]["value"] == "LogAppendTime", entries
    assert entries["retention.ms"]["value"] == "604800000"
    modified = a.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "events")])
    assert set(next(iter(next(iter(modified.values())).values()))) == {"message.timestamp.type"}
    a.create_partitions({"events": KpNewPartitions(4)})
    assert len(a.describe_topics(["events"])[0]["partitions"]) == 4
    with pytest.raises(InvalidPartitionsError):
        a.create_partitions({"events": KpNewPartitions(3)})
    a.delete_topics(["events"])
    with pytest.raises(UnknownTopicOrPartitionError):
        a.delete_topics(["events"])
    a.close()
