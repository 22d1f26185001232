"""KIP-848 online migration with real clients: a classic group (librdkafka,
group.protocol classic) is joined by a Java consumer with
group.protocol=consumer; the group converts into a consumer group, the
partitions are shared between both, and when the Java consumer leaves the
group converts back and the classic member gets every partition again.
Every record is read exactly once across both. The same with the Java
client on both sides (group.protocol=classic, then consumer). With
group.consumer.migration.policy = disabled the Java consumer's join is
refused with GROUP_ID_NOT_FOUND, as Kafka does."""

import threading
import time

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from conftest import GROUP_CONFIG, create_topic, running_broker
from java_support import start_java
from test_groups import Member, no_duplicates, produce, wait_for


def group_type(admin, group):
    d = admin.describe_consumer_groups([group])[group].result(timeout=20)
    return d.type, sorted(len(m.assignment.topic_partitions) for m in d.members)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_classic_group_converts_to_consumer_group_and_back(tmp_path, strategy):
    """Eager ("range": the member gives everything up before it rejoins) and
    cooperative (it rejoins owning its partitions and gives up only those it
    must) classic members."""
    with running_broker(tmp_path, GROUP_CONFIG) as b:
        create_topic(b.bootstrap, "mig", 4)
        produce(b.bootstrap, "mig", 2000)
        admin = AdminClient({"bootstrap.servers": b.bootstrap})

        # A classic member reads slowly and commits after every batch.
        classic = Member(
            b.bootstrap, "mig", "mig-group", batch=5, pause=0.05, **{"partition.assignment.strategy": strategy}
        )
        classic.start()
        wait_for(lambda: classic.assigned == {0, 1, 2, 3} and len(classic.read) >= 50, 30, "the classic member")
        assert group_type(admin, "mig-group")[0] == ConsumerGroupType.CLASSIC

        # A KIP-848 Java consumer joins: the group converts and is shared.
        java = start_java(
            "GroupMigrationMember", b.bootstrap, "mig", "mig-group", "consumer", 8000,
            log_path=tmp_path / "java-member.log",
        )
        try:
            wait_for(lambda: len(classic.assigned) == 2, 40, "the classic member to give two partitions up")
            wait_for(
                lambda: group_type(admin, "mig-group") == (ConsumerGroupType.CONSUMER, [2, 2]),
                20,
                "a consumer group of two members with two partitions each",
            )
            run = java.wait(90)
        finally:
            java.kill()
        assert run.returncode == 0, run.report()
        assert not run.events("poll_error") and not run.events("commit_error"), run.report()
        got = run.events("assigned")
        assert any(len(e["partitions"]) == 2 for e in got), run.report()

        # It left: the group is classic again and its member gets everything.
        wait_for(lambda: classic.assigned == {0, 1, 2, 3}, 40, "the classic member to get all partitions back")
        wait_for(
            lambda: group_type(admin, "mig-group") == (ConsumerGroupType.CLASSIC, [4]),
            20,
            "a classic group again",
        )
        produce(b.bootstrap, "mig", 400, start=2000)
        java_read = {tuple(int(x) for x in r.split(":")) for r in run.events("read")[0]["records"]}
        assert java_read, "the Java consumer read its share"
        wait_for(lambda: len(set(classic.read) | java_read) >= 2400, 90, "every record")
        time.sleep(0.5)
        classic.stop()
        both = classic.read + sorted(java_read)
        twice = sorted({r for r in both if both.count(r) > 1})
        assert not twice, (
            f"read twice: {twice}; classic: {classic.events} commit errors {classic.commit_errors};"
            f" java: {[e for e in run.lines if e.get('event') != 'read']}"
        )
        assert len(run.events("read")[0]["records"]) == len(java_read), "the Java consumer read a record twice"
        assert len(no_duplicates(classic)) + len(java_read) == 2400


def test_migration_policy_disabled_refuses_the_kip848_join(tmp_path):
    config = GROUP_CONFIG + '"group.consumer.migration.policy" = "disabled"\n'
    with running_broker(tmp_path, config) as b:
        create_topic(b.bootstrap, "nomig", 2)
        produce(b.bootstrap, "nomig", 100)
        classic = Member(b.bootstrap, "nomig", "nomig-group", batch=5, pause=0.05)
        classic.start()
        wait_for(lambda: classic.assigned == {0, 1}, 30, "the classic member")
        java = start_java(
            "GroupMigrationMember", b.bootstrap, "nomig", "nomig-group", "consumer", 3000,
            log_path=tmp_path / "java-member.log",
        )
        try:
            run = java.wait(60)
        finally:
            java.kill()
        errors = run.events("poll_error")
        assert errors and errors[0]["error"].endswith("GroupIdNotFoundException"), run.report()
        assert not run.events("assigned") or all(not e["partitions"] for e in run.events("assigned"))
        # The classic group is untouched.
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        assert group_type(admin, "nomig-group") == (ConsumerGroupType.CLASSIC, [2])
        assert classic.assigned == {0, 1}
        classic.stop()


def test_java_classic_member_hands_over_to_a_java_kip848_member_and_back(tmp_path):
    """Both members are the Java client: a classic one (group.protocol=classic)
    and a KIP-848 one joining for a while, with records produced all along."""
    with running_broker(tmp_path, GROUP_CONFIG) as b:
        create_topic(b.bootstrap, "jmig", 4)
        produced = [0]
        stop = threading.Event()

        def producer():
            while not stop.is_set():
                produce(b.bootstrap, "jmig", 50, start=produced[0])
                produced[0] += 50
                time.sleep(0.1)

        feeder = threading.Thread(target=producer, daemon=True)
        feeder.start()
        classic = start_java(
            "GroupMigrationMember", b.bootstrap, "jmig", "jmig-group", "classic", 22000,
            log_path=tmp_path / "java-classic.log",
        )
        try:
            time.sleep(6)
            modern = start_java(
                "GroupMigrationMember", b.bootstrap, "jmig", "jmig-group", "consumer", 6000,
                log_path=tmp_path / "java-consumer.log",
            )
            try:
                run848 = modern.wait(90)
            finally:
                modern.kill()
            time.sleep(2)
            stop.set()
            feeder.join(30)
            run_classic = classic.wait(90)
        finally:
            stop.set()
            classic.kill()
        for run in (run848, run_classic):
            assert run.returncode == 0, run.report()
            assert not run.events("poll_error") and not run.events("commit_error"), run.report()
        sizes = [len(e["partitions"]) for e in run_classic.events("assigned")]
        assert sizes[0] == 4 and 2 in sizes and sizes[-1] == 4, run_classic.report()
        assert any(len(e["partitions"]) == 2 for e in run848.events("assigned")), run848.report()
        reads = run848.events("read")[0]["records"] + run_classic.events("read")[0]["records"]
        assert len(reads) == len(set(reads)), "a record was read twice"
        assert len(reads) == produced[0], f"{len(reads)} of {produced[0]} records read"
