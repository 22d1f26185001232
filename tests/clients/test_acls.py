"""ACLs through confluent-kafka (librdkafka): the admin client creates,
describes and deletes them, and a consumer and a producer meet them. The
plaintext listener's principal is User:ANONYMOUS, so the ACLs name it."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from conftest import running_broker

AUTHORIZER = (
    '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"\n'
    '"allow.everyone.if.no.acl.found" = true\n'
)
ME = "User:ANONYMOUS"


def binding(rtype, name, pattern, op, perm=AclPermissionType.ALLOW, principal=ME):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def test_confluent_admin_manages_acls_and_clients_meet_them(tmp_path):
    with running_broker(tmp_path, AUTHORIZER) as broker:
        a = AdminClient({"bootstrap.servers": broker.bootstrap})
        for t in ["orders", "payments", "secret"]:
            a.create_topics([NewTopic(t, num_partitions=1)])[t].result(timeout=20)

        acls = [
            binding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, AclOperation.ALL),
            binding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, AclOperation.READ),
            binding(ResourceType.TOPIC, "pay", ResourcePatternType.PREFIXED, AclOperation.WRITE),
            binding(ResourceType.GROUP, "billing", ResourcePatternType.LITERAL, AclOperation.READ),
            binding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, AclOperation.READ, principal="User:bob"),
        ]
        for f in a.create_acls(acls).values():
            assert f.result(timeout=20) is None

        described = a.describe_acls(
            AclBindingFilter(
                ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
            )
        ).result(timeout=20)
        assert sorted((b.name, b.operation) for b in described) == sorted((b.name, b.operation) for b in acls)

        match = a.describe_acls(
            AclBindingFilter(
                ResourceType.TOPIC,
                "payments",
                ResourcePatternType.MATCH,
                None,
                None,
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
        ).result(timeout=20)
        assert [(b.name, b.resource_pattern_type) for b in match] == [("pay", ResourcePatternType.PREFIXED)]

        # An invalid pattern: a PREFIXED wildcard.
        bad = binding(ResourceType.TOPIC, "*", ResourcePatternType.PREFIXED, AclOperation.READ)
        with pytest.raises(KafkaException) as e:
            a.create_acls([bad])[bad].result(timeout=20)
        assert e.value.args[0].code() == KafkaError.INVALID_REQUEST

        # Metadata hides the topic this principal may not describe.
        topics = set(a.list_topics(timeout=10).topics)
        assert {"orders", "payments"} <= topics
        assert "secret" not in topics

        # Produce: allowed on pay*, refused on orders.
        p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 10000})
        outcomes = {}

        def report(err, msg):
            outcomes[msg.topic()] = err

        p.produce("payments", b"ok", on_delivery=report)
        p.produce("orders", b"no", on_delivery=report)
        p.flush(20)
        assert outcomes["payments"] is None
        assert outcomes["orders"].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

        # Consume: orders works with group billing; secret is refused.
        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "billing",
                "auto.offset.reset": "earliest",
            }
        )
        c.subscribe(["orders"])
        for _ in range(20):
            m = c.poll(0.5)
            assert m is None or m.error() is None, m.error()
        c.close()

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "billing", "auto.offset.reset": "earliest"})
        c.subscribe(["secret"])
        error = None
        for _ in range(40):
            m = c.poll(0.5)
            if m is not None and m.error():
                error = m.error()
                break
        c.close()
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error

        # DeleteAcls returns what matched.
        deleted = a.delete_acls(
            [
                AclBindingFilter(
                    ResourceType.TOPIC,
                    None,
                    ResourcePatternType.ANY,
                    None,
                    None,
                    AclOperation.ANY,
                    AclPermissionType.ANY,
                )
            ]
        )
        (result,) = deleted.values()
        assert len(result.result(timeout=20)) == 3
