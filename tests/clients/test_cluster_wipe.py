"""A broker that lost its disk comes back without voting on what it forgot.

Broker 4 (not a controller voter) holds the preferred replica of a
partition replicated on brokers 4, 2 and 3. It is killed, its data folder
deleted, and started again: the folder gets a new directory id
(`meta.properties`), the controller counts a new incarnation of broker 4,
and its empty replica joins the partition's Raft group as a new member
(learner, filled, then swapped in for the old one) instead of answering
with votes and acknowledgements it no longer remembers. Once it is in,
broker 2 is killed: brokers 3 and 4 alone must keep the partition
writable, which they can only if broker 4 votes again — and every
acknowledged record, written before, during and after the refill, is read
back in order at dense offsets."""

import re
import shutil
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster_support import Cluster, consume_to, failover_producer_config, value_of, wait_for

pytestmark = pytest.mark.timeout(240)

BROKER_ONLY = 'process.roles = "broker"\n'
# Broker 4's second incarnation as a Raft id: node id 4, incarnation 1 in
# the high 32 bits.
NEW_FOUR = 4 | (1 << 32)


def directory_id(broker):
    text = (broker.data_dir / "meta.properties").read_text()
    return re.search(r"^directory\.id=(\S+)$", text, re.M).group(1)


def produce(bootstrap, first, count):
    """Writes values first..first+count with acks=all; returns their
    offsets, failing on any error."""
    p = Producer(failover_producer_config(bootstrap))
    offsets, errors = {}, []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            offsets[msg.value()] = msg.offset()

    for n in range(first, first + count):
        p.produce("ledger", value_of(n), partition=0, on_delivery=done)
        p.poll(0)
    assert p.flush(60) == 0, "every record acknowledged or failed in time"
    assert not errors, errors[:5]
    return [offsets[value_of(n)] for n in range(first, first + count)]


def test_a_broker_that_lost_its_disk_rejoins_as_a_new_member(tmp_path):
    c = Cluster(tmp_path, nodes=[1, 2, 3, 4], voters=[1, 2, 3], node_config={4: BROKER_ONLY})
    try:
        c.start()
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        deadline = time.time() + 60
        while True:
            f = admin.create_topics([NewTopic("ledger", num_partitions=1, replica_assignment=[[4, 2, 3]])])["ledger"]
            try:
                f.result(15)
                break
            except KafkaException as e:
                if e.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    break
                assert time.time() < deadline, f"could not create the topic: {e}"
                time.sleep(0.5)
        assert c.leader("ledger", 0, timeout=30)[0] in (2, 3, 4)

        assert produce(c.bootstrap, 0, 300) == list(range(300))
        before = directory_id(c.brokers[4])

        # The disk is lost: kill -9, the folder gone, the broker started again.
        c.kill9(4)
        shutil.rmtree(c.brokers[4].data_dir)
        seen = c.brokers[4].log_path.stat().st_size
        c.start([4])
        after = directory_id(c.brokers[4])
        assert after != before, "the new folder has a new directory id"
        wait_for(
            "the controller counting a new incarnation of broker 4",
            lambda: any(
                "broker came back with a new data folder" in c.brokers[n].log_tail(2000) for n in (1, 2, 3)
            ),
            timeout=30,
        )

        # Writes go on while broker 4 is refilled.
        assert produce(c.bootstrap, 300, 300) == list(range(300, 600))

        def swapped_in():
            with open(c.brokers[4].log_path, "rb") as f:
                f.seek(seen)
                log = f.read().decode(errors="replace")
            return re.search(rf"voters=\[[^\]]*\b{NEW_FOUR}\b[^\]]*\] outgoing=\[\]", log)

        wait_for("broker 4's new incarnation voting in the partition's group", swapped_in, timeout=90)

        # Only brokers 3 and 4 left: the partition stays writable only if
        # broker 4 votes and acknowledges again.
        c.kill9(2)
        assert produce(c.bootstrap, 600, 100) == list(range(600, 700))

        consumer = Consumer(
            {
                "bootstrap.servers": c.bootstrap,
                "group.id": "wipe-check",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign([TopicPartition("ledger", 0, 0)])
            got = [(m.offset(), m.value()) for m in consume_to(consumer, 700, time.time() + 60)]
        finally:
            consumer.close()
        assert got == [(n, value_of(n)) for n in range(700)], "every acknowledged record, in order, at dense offsets"
        assert not c.crashed(), c.crashed()
    finally:
        c.shutdown()
