"""A librdkafka transactional producer run as its own process, so a test can
kill -9 it with a transaction open.

Commits one transaction of COUNT records "<PREFIX>1-<i>" to TOPIC (record i
to partition i % PARTITIONS), then begins a second one, produces
"<PREFIX>2-<i>" the same way, flushes (every record acknowledged, the
transaction still open) and prints one JSON line:
  {"open": true, "committed": [...values], "pending": [...values]}
then sleeps until it is killed (at most 120 s). Any failure prints
{"error": "..."} and exits 1.
Usage: python txn_victim.py BOOTSTRAP TOPIC PARTITIONS TRANSACTIONAL_ID TIMEOUT_MS PREFIX COUNT
"""

import json
import sys
import time

from confluent_kafka import Producer


def say(obj):
    print(json.dumps(obj), flush=True)


def produce_all(p, topic, partitions, values):
    errors = []
    for v in values:
        i = int(v.rsplit("-", 1)[1])
        p.produce(topic, key=v.encode(), value=v.encode(), partition=i % partitions,
                  on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    left = p.flush(20)
    if left or errors:
        raise RuntimeError(f"{left} not delivered, delivery errors {errors[:3]}")


def main():
    bootstrap, topic, partitions, tid, timeout_ms, prefix, count = sys.argv[1:8]
    partitions, count = int(partitions), int(count)
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": tid,
            "transaction.timeout.ms": int(timeout_ms),
            "linger.ms": 5,
        }
    )
    p.init_transactions(20)
    committed = [f"{prefix}1-{i}" for i in range(count)]
    p.begin_transaction()
    produce_all(p, topic, partitions, committed)
    p.commit_transaction(20)
    pending = [f"{prefix}2-{i}" for i in range(count)]
    p.begin_transaction()
    produce_all(p, topic, partitions, pending)
    say({"open": True, "committed": committed, "pending": pending})
    time.sleep(120)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - reported to the test
        say({"error": repr(e)})
        sys.exit(1)
