#!/usr/bin/env python3
"""Firing lateness across a failover (issue 12's "Measure"), server to consumer.

Starts a 3-node cluster of the release binary on free loopback ports,
schedules members on one queue due every few milliseconds over the run,
and has blocked consumers (DELAYPOP BLOCK) take them from the queue's
leader. A plain pop whose reply is lost in the failover is the documented
at-most-once window: such members are counted as not received. Midway the leader is killed with kill -9 (and
restarted 2 s later). A consumer whose connection fails or is redirected
asks CLUSTER SLOTS of any live node and blocks on the leader it names.

Lateness of a member = when a consumer received it - its due time (both on
this host's wall clock). Reported apart: members due before the kill,
members due from the kill until the first member after it was received (the
failover), and members due after. Nothing may arrive early.

Usage: benches/cluster_lateness.py [--secs 20] [--kill-at 8] [--every-ms 5]
       [--consumers 4] [--fsync everysec] [--bin target/release/delayd]
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

QUEUE = "{lateness}q"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms():
    return time.time() * 1000.0


class Cluster:
    def __init__(self, binary, fsync, tmp):
        self.binary, self.fsync, self.tmp = binary, fsync, tmp
        ports = set()
        while len(ports) < 6:
            ports.add(free_port())
        ports = sorted(ports)
        self.ports, self.buses = ports[:3], ports[3:]
        self.spec = ",".join(
            f"{i + 1}=127.0.0.1:{p}@{b}"
            for i, (p, b) in enumerate(zip(self.ports, self.buses))
        )
        self.procs = [None] * 3
        for i in range(3):
            self.start(i)

    def start(self, i):
        log = open(os.path.join(self.tmp, f"node{i + 1}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            [self.binary, "--port", str(self.ports[i]),
             "--dir", os.path.join(self.tmp, f"node{i + 1}"),
             "--appendfsync", self.fsync, "--cluster-nodes", self.spec,
             "--cluster-id", str(i + 1)],
            stdout=subprocess.DEVNULL, stderr=log)

    def kill9(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = None

    def stop_all(self):
        for p in self.procs:
            if p:
                p.send_signal(signal.SIGKILL)
                p.wait()

    def leader(self, slot):
        """The client port of the node leading `slot`, as a live node says."""
        for i, port in enumerate(self.ports):
            if self.procs[i] is None:
                continue
            try:
                r = redis.Redis(port=port, socket_timeout=1)
                for first, last, lead, *_ in r.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        return lead[1]
            except (redis.RedisError, OSError):
                continue
        return None

    def keyslot(self, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                r = redis.Redis(port=self.ports[0], socket_timeout=1)
                return int(r.execute_command("CLUSTER", "KEYSLOT", QUEUE))
            except (redis.RedisError, OSError):
                time.sleep(0.1)
        sys.exit("node 1 did not answer within %d s" % limit)

    def wait_serving(self, slot, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            port = self.leader(slot)
            if port:
                try:
                    redis.Redis(port=port, socket_timeout=1).execute_command("DELAYCARD", QUEUE)
                    return port
                except redis.RedisError:
                    pass
            time.sleep(0.1)
        sys.exit("the cluster did not serve within %d s" % limit)


def consume(cluster, slot, stop, received, lock):
    con = None
    while not stop.is_set():
        try:
            if con is None:
                port = cluster.leader(slot)
                if port is None:
                    time.sleep(0.05)
                    continue
                con = redis.Redis(port=port, socket_timeout=3, socket_connect_timeout=1)
            r = con.execute_command("DELAYPOP", QUEUE, "BLOCK", 1000)
            at = now_ms()
            if not r:
                continue
            member = r[0].decode() if isinstance(r[0], bytes) else r[0]
            with lock:
                received.setdefault(member, at)
        except (redis.RedisError, OSError):
            con = None
            time.sleep(0.02)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


def summary(name, values):
    if not values:
        return f"{name}: none"
    return (f"{name}: {len(values)} members, p50 {pct(values, 0.5):.2f} ms, "
            f"p99 {pct(values, 0.99):.2f} ms, max {max(values):.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--kill-at", type=float, default=8)
    ap.add_argument("--every-ms", type=float, default=5)
    ap.add_argument("--consumers", type=int, default=4)
    ap.add_argument("--fsync", default="everysec")
    ap.add_argument("--bin", default="target/release/delayd")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="delayd-lateness-")
    cluster = Cluster(a.bin, a.fsync, tmp)
    try:
        slot = cluster.keyslot()
        leader_port = cluster.wait_serving(slot)
        # Every member is added up front, due from 2 s from now on.
        add = redis.Redis(port=leader_port, socket_timeout=10)
        start = now_ms() + 2000
        dues = {}
        pipe = add.pipeline(transaction=False)
        n = int(a.secs * 1000 / a.every_ms)
        for k in range(n):
            due = start + k * a.every_ms
            member = f"m{k}"
            dues[member] = due
            pipe.execute_command("DELAYADD", QUEUE, max(1, int(due - now_ms())), member)
            if k % 500 == 499:
                pipe.execute()
        pipe.execute()
        # DELAYADD's delay is from when the server ran it: re-read the due
        # times the server recorded (its clock is this host's).
        for k in range(0, n, 1000):
            names = [f"m{j}" for j in range(k, min(n, k + 1000))]
            pipe = add.pipeline(transaction=False)
            for m in names:
                pipe.execute_command("DELAYSCORE", QUEUE, m)
            for m, s in zip(names, pipe.execute()):
                dues[m] = float(s)
        stop, lock, received = threading.Event(), threading.Lock(), {}
        threads = [threading.Thread(target=consume, args=(cluster, slot, stop, received, lock))
                   for _ in range(a.consumers)]
        for t in threads:
            t.start()
        time.sleep(max(0, (start - now_ms()) / 1000 + a.kill_at))
        victim = cluster.ports.index(cluster.leader(slot))
        killed = now_ms()
        cluster.kill9(victim)
        time.sleep(2)
        cluster.start(victim)
        time.sleep(max(0, (start + a.secs * 1000 - now_ms()) / 1000) + 5)
        stop.set()
        for t in threads:
            t.join()
    finally:
        cluster.stop_all()
    late = {m: received[m] - dues[m] for m in received if m in dues}
    early = [m for m, d in late.items() if d < 0]
    after = [received[m] for m in received if dues.get(m, 0) >= killed]
    first_after = min(after) if after else None
    before = [d for m, d in late.items() if dues[m] < killed]
    during = [d for m, d in late.items()
              if first_after and killed <= dues[m] < first_after]
    later = [d for m, d in late.items() if first_after and dues[m] >= first_after]
    print(f"=== firing lateness across a failover: 3 nodes, {a.fsync}, {len(dues)} members due every "
          f"{a.every_ms} ms over {a.secs} s, {a.consumers} blocked consumers, leader killed at "
          f"{a.kill_at} s ===")
    print(f"received {len(received)} of {len(dues)}; early: {len(early)}")
    if first_after:
        print(f"failover: kill -9 -> first member received after it: {first_after - killed:.0f} ms")
    print(summary("due before the kill", before))
    print(summary("due during the failover", during))
    print(summary("due after the failover", later))
    print(f"node logs: {tmp}")
    if early:
        sys.exit(f"{len(early)} members delivered early")


if __name__ == "__main__":
    main()
