#!/usr/bin/env python3
"""redis-py's RedisCluster against a running delayd cluster: discovery
from one seed node, the delay commands routed by their key's slot ({tag}
queues on different slots), a multi-key command within one tag, and
CROSSSLOT refused by the client before it sends.

Usage: cluster_py.py --port PORT
Exits 0 when every check passes, 1 with a report otherwise.
"""

import argparse
import sys

import redis
from redis.cluster import RedisCluster

FAILURES = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def run(port):
    rc = RedisCluster(
        host="127.0.0.1",
        port=port,
        socket_timeout=10,
        socket_connect_timeout=5,
        decode_responses=True,
    )
    nodes = rc.get_nodes()
    check(len(nodes) >= 3, f"discovered every node: {nodes!r}")
    primaries = rc.get_primaries()
    check(len(primaries) >= 1, f"at least one primary: {primaries!r}")
    eq(rc.cluster_info()["cluster_state"], "ok", "CLUSTER INFO state")
    ex = rc.execute_command
    for tag in ["a", "b", "c", "user:1", "user:2", "orders"]:
        q = "{%s}q" % tag
        eq(ex("DELAYADD", q, 0, "m1", 0, "m2", 600000, "m3"), 3, f"DELAYADD {q}")
        eq(ex("DELAYCARD", q), 3, f"DELAYCARD {q}")
        check(ex("DELAYSCORE", q, "m3") is not None, f"DELAYSCORE {q} m3")
        eq(ex("DELAYPOP", q, "COUNT", 10, "LEASE", 30000), ["m1", "m2"], f"DELAYPOP {q}")
        eq(ex("DELAYACK", q, "m1", "m2"), 2, f"DELAYACK {q}")
        eq(ex("DELAYCARD", q), 1, f"DELAYCARD {q} after ack")
        eq(rc.exists(q, "{%s}other" % tag), 1, f"EXISTS two keys of tag {tag}")
        eq(rc.delete(q), 1, f"DEL {q}")
    try:
        # redis-py checks the slots itself for a multi-key command.
        rc.execute_command("DEL", "{a}x", "{b}y")
        check(False, "DEL over two slots refused")
    except redis.exceptions.RedisClusterException as e:
        check("same slot" in str(e) or "same key slot" in str(e) or "CROSSSLOT" in str(e), f"DEL over two slots refused: {e}")
    except redis.exceptions.ResponseError as e:
        check("CROSSSLOT" in str(e), f"DEL over two slots refused by the server: {e}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    run(a.port)
    if FAILURES:
        print(f"{len(FAILURES)} redis-py cluster checks failed")
        sys.exit(1)
    print("all redis-py cluster checks passed")


if __name__ == "__main__":
    main()
