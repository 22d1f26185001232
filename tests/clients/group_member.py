"""A librdkafka group member run as its own process, so a test can kill -9 it.

Consumes TOPIC in GROUP slowly (one message at a time), commits synchronously
after each message, and prints one JSON line per event:
  {"assigned": [partitions]}        after each assignment
  {"committed": [partition, next]}  after each commit returned
Usage: python group_member.py BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS
"""

import json
import sys
import time

from confluent_kafka import Consumer


def say(obj):
    print(json.dumps(obj), flush=True)


def main():
    bootstrap, topic, group, session = sys.argv[1:5]
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "victim",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(session),
            "heartbeat.interval.ms": 500,
        }
    )
    c.subscribe([topic], on_assign=lambda _c, ps: say({"assigned": sorted(p.partition for p in ps)}))
    deadline = time.time() + 120
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            say({"error": str(m.error())})
            continue
        c.commit(message=m, asynchronous=False)
        say({"committed": [m.partition(), m.offset() + 1]})
        time.sleep(0.005)


if __name__ == "__main__":
    main()
