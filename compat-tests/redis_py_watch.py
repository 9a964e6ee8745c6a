#!/usr/bin/env python3
"""redis-py's optimistic transactions against a running delayd: WATCH,
Redis.transaction()'s retry loop, WatchError.

Usage: redis_py_watch.py --port PORT [--protocol 2|3]
Exits 0 when every check passes, 1 with a report otherwise.
"""

import argparse
import sys
import threading

import redis

FAILURES = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def run(port, protocol):
    def client():
        return redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)

    r = client()
    other = client()
    r.execute_command("FLUSHALL")

    # A write by another client between WATCH and EXEC: WatchError, nothing run.
    p = r.pipeline()
    p.watch("w")
    other.execute_command("DELAYADD", "w", "AT", "1", "a")
    p.multi()
    p.execute_command("DELAYADD", "w", "AT", "1", "b")
    try:
        p.execute()
        check(False, "EXEC after a concurrent write raises WatchError")
    except redis.WatchError:
        check(True, "EXEC after a concurrent write raises WatchError")
    eq(r.execute_command("DELAYCARD", "w"), 1, "the aborted transaction ran nothing")

    # Untouched: it runs.
    p = r.pipeline()
    p.watch("w")
    p.multi()
    p.execute_command("DELAYADD", "w", "AT", "1", "b")
    eq(p.execute(), [1], "EXEC of an untouched watch runs")

    # Redis.transaction(): the callable is retried until its watch holds.
    # Move a member from one queue to another, keeping its due time; the
    # first attempt is spoiled by another client.
    r.execute_command("DELAYADD", "src", "AT", "5000", "m")
    attempts = []

    def move(pipe):
        due = pipe.execute_command("DELAYSCORE", "src", "m")
        if not attempts:
            other.execute_command("DELAYADD", "src", "AT", "7000", "m")
        attempts.append(due)
        pipe.multi()
        pipe.execute_command("DELAYREM", "src", "m")
        pipe.execute_command("DELAYADD", "dst", "AT", due, "m")

    res = r.transaction(move, "src")
    eq(len(attempts), 2, "transaction() retried once after the concurrent write")
    eq(res, [1, 1], "transaction() replies")
    eq(int(r.execute_command("DELAYSCORE", "dst", "m")), 7000,
       "the retry saw the concurrent write")
    eq(r.execute_command("DELAYCARD", "src"), 0, "moved out of src")

    # Concurrent writers that name a member after the queue's size: with
    # WATCH no two pick the same name, so every add is a new member.
    threads, per = 4, 25

    def worker():
        c = client()

        def claim(pipe):
            n = pipe.execute_command("DELAYCARD", "slots")
            pipe.multi()
            pipe.execute_command("DELAYADD", "slots", "AT", "1", f"s{n}")

        for _ in range(per):
            c.transaction(claim, "slots")
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    eq(r.execute_command("DELAYCARD", "slots"), threads * per,
       "concurrent transaction() loops never lost an update")

    # UNWATCH (pipeline.reset) forgets the watch.
    p = r.pipeline()
    p.watch("w")
    p.unwatch()
    other.execute_command("DELAYREM", "w", "a")
    p.multi()
    p.execute_command("DELAYCARD", "w")
    eq(p.execute(), [1], "UNWATCH: a later write does not abort")
    r.close()
    other.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", type=int, choices=[2, 3], default=3)
    a = ap.parse_args()
    print(f"redis-py {redis.__version__}, protocol {a.protocol}, port {a.port}")
    try:
        run(a.port, a.protocol)
    except Exception as e:  # report, do not hide, unexpected failures
        import traceback

        traceback.print_exc()
        FAILURES.append(f"exception: {e!r}")
    if FAILURES:
        print(f"\n{len(FAILURES)} failure(s):")
        for f in FAILURES:
            print(f"  - {f}")
        return 1
    print("all redis-py watch checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
