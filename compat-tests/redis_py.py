#!/usr/bin/env python3
"""redis-py against a running delayd: the delay commands through
execute_command, pipelines (MULTI/EXEC by default), connection setup
(HELLO / CLIENT SETINFO / SETNAME), INFO, CONFIG GET and blocking pops.

Usage: redis_py.py --port PORT [--protocol 2|3] [--password PW]
Exits 0 when every check passes, 1 with a report otherwise.
"""

import argparse
import sys
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

FAILURES = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def now_ms():
    return int(time.time() * 1000)


def b(x):
    return x if isinstance(x, bytes) else str(x).encode()


def run(port, protocol, password):
    r = redis.Redis(
        host="127.0.0.1",
        port=port,
        protocol=protocol,
        password=password,
        socket_timeout=10,
        socket_connect_timeout=5,
    )
    ex = r.execute_command

    # Connection setup: redis-py 8 sends HELLO 3 (protocol 3) or
    # CLIENT SETINFO (protocol 2) on connect.
    eq(r.ping(), True, "PING")
    eq(r.echo("héllo"), "héllo".encode(), "ECHO utf-8")
    eq(r.client_setname("py-worker"), True, "CLIENT SETNAME")
    eq(b(r.client_getname()), b"py-worker", "CLIENT GETNAME")
    cid = r.client_id()
    check(isinstance(cid, int) and cid > 0, f"CLIENT ID is a positive int: {cid!r}")
    clients = r.client_list()
    check(
        any(c.get("name") == "py-worker" and c.get("lib-name") == "redis-py" for c in clients),
        f"CLIENT LIST shows the name and lib-name set by redis-py: {clients!r}",
    )
    hello = r.execute_command("HELLO", protocol)
    if protocol == 2 and isinstance(hello, list):
        # No RESP2 callback for HELLO in redis-py: a flat key/value list.
        hello = dict(zip(hello[0::2], hello[1::2]))
    check(isinstance(hello, dict), f"HELLO {protocol} parses to a dict: {hello!r}")
    if isinstance(hello, dict):
        hello = {b(k): v for k, v in hello.items()}
        eq(hello.get(b"proto"), protocol, "HELLO proto")
        eq(b(hello.get(b"mode")), b"standalone", "HELLO mode")
        eq(b(hello.get(b"role")), b"master", "HELLO role")
        check(b(hello.get(b"version")).startswith(b"7."), f"HELLO version 7.x: {hello!r}")

    # INFO and CONFIG as redis-py parses them.
    info = r.info()
    check(isinstance(info, dict), "INFO parses to a dict")
    for field in ["redis_version", "connected_clients", "used_memory", "loading"]:
        check(field in info, f"INFO has {field}")
    eq(info.get("loading"), 0, "INFO loading is 0")
    check(info.get("connected_clients", 0) >= 1, "INFO connected_clients >= 1")
    srv = r.info("server")
    check("redis_version" in srv and "used_memory" not in srv, "INFO server is one section")
    eq(r.config_get("maxclients"), {"maxclients": "10000"}, "CONFIG GET maxclients")
    cfg = r.config_get("*")
    check("appendfsync" in cfg and "save" in cfg, f"CONFIG GET * has appendfsync, save: {cfg!r}")
    eq(r.dbsize(), 0, "DBSIZE of an empty server")
    t = r.time()
    check(abs(t[0] - time.time()) < 5, f"TIME: {t!r}")

    # The delay commands through execute_command.
    t0 = now_ms()
    eq(ex("DELAYADD", "q", 100000, "a", 200000, "b"), 2, "DELAYADD two members")
    t1 = now_ms()
    eq(ex("DELAYCARD", "q"), 2, "DELAYCARD")
    due_a = ex("DELAYSCORE", "q", "a")
    check(
        isinstance(due_a, int) and t0 + 100000 <= due_a <= t1 + 100000,
        f"DELAYSCORE is now+100000: {due_a!r} ({t0}..{t1})",
    )
    eq(ex("DELAYSCORE", "q", "missing"), None, "DELAYSCORE of a missing member")
    eq(ex("DELAYRANGE", "q", 0, -1), [b"a", b"b"], "DELAYRANGE")
    ws = ex("DELAYRANGE", "q", 0, -1, "WITHSCORES")
    if protocol == 3:
        eq(len(ws), 2, "DELAYRANGE WITHSCORES in RESP3 has one pair per member")
        pairs = [tuple(p) for p in ws]
    else:
        eq(len(ws), 4, "DELAYRANGE WITHSCORES in RESP2 is flat")
        pairs = list(zip(ws[0::2], ws[1::2]))
    eq(pairs[0][0], b"a", "DELAYRANGE WITHSCORES first member")
    eq(int(pairs[0][1]), due_a, "DELAYRANGE WITHSCORES first due time")
    eq(ex("DELAYADD", "q", "NX", 1, "a", 5, "c"), 1, "DELAYADD NX")
    eq(ex("DELAYADD", "q", "XX", "CH", 300000, "a", 1, "zz"), 1, "DELAYADD XX CH")
    at = now_ms() + 400000
    eq(ex("DELAYADD", "q", "AT", at, "d"), 1, "DELAYADD AT")
    eq(ex("DELAYSCORE", "q", "d"), at, "DELAYSCORE after AT")
    eq(ex("DELAYREM", "q", "d", "nope"), 1, "DELAYREM")

    info = ex("DELAYINFO", "q")
    if protocol == 2:
        check(isinstance(info, list) and len(info) >= 18 and len(info) % 2 == 0, f"DELAYINFO RESP2 flat: {info!r}")
        info = dict(zip(info[0::2], info[1::2]))
    check(isinstance(info, dict), f"DELAYINFO as a dict: {info!r}")
    info = {b(k): v for k, v in info.items()}
    eq(info.get(b"pending"), 3, "DELAYINFO pending")
    check(b"next-due-ms" in info, "DELAYINFO next-due-ms")

    # Member c is due in 5 ms.
    time.sleep(0.05)
    eq(ex("DELAYPOP", "q", "COUNT", 10), [b"c"], "DELAYPOP what is due")
    eq(ex("DELAYPOP", "q"), [], "DELAYPOP with nothing due")

    # Lease, ack, redelivery.
    eq(ex("DELAYADD", "jobs", 0, "j1", 0, "j2"), 2, "DELAYADD jobs")
    eq(ex("DELAYPOP", "jobs", "COUNT", 2, "LEASE", 200), [b"j1", b"j2"], "DELAYPOP LEASE")
    eq(ex("DELAYCARD", "jobs"), 2, "leased members still counted")
    eq(ex("DELAYPOP", "jobs", "COUNT", 2), [], "leased members hidden")
    eq(ex("DELAYACK", "jobs", "j1"), 1, "DELAYACK j1")
    lease_end = ex("DELAYSCORE", "jobs", "j2")
    got = ex("DELAYPOP", "jobs", "LEASE", 60000, "BLOCK", 3000)
    at = now_ms()
    eq(got, [b"j2"], "j2 redelivered after its lease")
    check(at >= lease_end, f"not redelivered before the lease ended ({at} >= {lease_end})")
    eq(ex("DELAYACK", "jobs", "j2"), 1, "DELAYACK j2")
    eq(ex("DELAYCARD", "jobs"), 0, "all acknowledged")

    # Errors come back as ResponseError with Redis's texts.
    for args, text in [
        (("DELAYADD", "q", "x", "m"), "value is not an integer or out of range"),
        (("DELAYADD", "q", 1, "m", 2), "syntax error"),
        (("DELAYPOP", "q", "COUNT", -1), "value is out of range, must be positive"),
        (("NOSUCH", "x"), "unknown command 'NOSUCH', with args beginning with: 'x' "),
        (("DELAYCARD",), "wrong number of arguments for 'delaycard' command"),
    ]:
        try:
            ex(*args)
            check(False, f"{args} must fail")
        except redis.ResponseError as e:
            eq(str(e), text, f"error text of {args}")

    # A pipeline is MULTI/EXEC by default.
    p = r.pipeline()
    p.execute_command("DELAYADD", "tx", 0, "x", 100000, "y")
    p.execute_command("DELAYCARD", "tx")
    p.execute_command("DELAYPOP", "tx", "COUNT", 5)
    p.execute_command("DELAYRANGE", "tx", 0, -1)
    p.ping()
    eq(p.execute(), [2, 2, [b"x"], [b"y"], True], "pipeline(transaction=True)")
    p = r.pipeline(transaction=False)
    for i in range(100):
        p.execute_command("DELAYADD", "np", 100000 + i, f"m{i}")
    p.execute_command("DELAYCARD", "np")
    res = p.execute()
    eq(res[:100], [1] * 100, "pipeline(transaction=False) replies")
    eq(res[100], 100, "pipeline(transaction=False) DELAYCARD")
    # An error inside MULTI/EXEC is reported for that command only.
    p = r.pipeline()
    p.execute_command("DELAYADD", "tx2", 100000, "a")
    p.execute_command("DELAYADD", "tx2", "bad", "b")
    p.execute_command("DELAYCARD", "tx2")
    res = p.execute(raise_on_error=False)
    eq(res[0], 1, "EXEC reply 0")
    check(isinstance(res[1], redis.ResponseError), f"EXEC reply 1 is an error: {res[1]!r}")
    eq(res[2], 1, "EXEC reply 2")

    # Keyspace commands.
    eq(r.exists("np", "tx", "nokey"), 2, "EXISTS")
    eq(r.type("np"), b"delayqueue", "TYPE")
    eq(sorted(r.keys("t*")), [b"tx", b"tx2"], "KEYS")
    eq(sorted(r.scan_iter(match="n*")), [b"np"], "SCAN")
    eq(r.delete("np"), 1, "DEL")
    eq(r.flushall(), True, "FLUSHALL")
    eq(r.dbsize(), 0, "DBSIZE after FLUSHALL")

    # Blocking pops, woken by a producer on another connection. The socket
    # timeout (10 s) is longer than the block, as it must be.
    def produce():
        time.sleep(0.2)
        p = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, password=password,
                        socket_timeout=10)
        p.execute_command("DELAYADD", "bq", 300, "m1")
        p.execute_command("DELAYADD", "bq2", 500, "m2")
        p.close()

    th = threading.Thread(target=produce)
    th.start()
    got = ex("DELAYPOP", "bq", "BLOCK", 5000)
    at1 = now_ms()
    got2 = ex("BDELAYPOP", "none", "bq2", 5)
    at2 = now_ms()
    th.join()
    eq(got, [b"m1"], "DELAYPOP BLOCK woken by a producer")
    check(
        isinstance(got2, list) and len(got2) == 3 and got2[:2] == [b"bq2", b"m2"],
        f"BDELAYPOP replies [key, member, due]: {got2!r}",
    )
    if isinstance(got2, list) and len(got2) == 3:
        check(at2 >= int(got2[2]), f"BDELAYPOP not before due ({at2} >= {got2[2]})")
    check(at1 > 0, "DELAYPOP BLOCK returned")
    start = time.time()
    eq(ex("DELAYPOP", "bq", "BLOCK", 300), None, "DELAYPOP BLOCK timeout is None")
    check(time.time() - start >= 0.29, "DELAYPOP BLOCK waited its timeout")
    eq(ex("BDELAYPOP", "bq", 0.3), None, "BDELAYPOP timeout is None")
    eq(r.ping(), True, "connection usable after blocking")

    # A client timeout shorter than the block fails on the client side (the
    # reason consumers must raise it); the server drops the abandoned wait,
    # so nothing is handed to the departed consumer.
    # (retries off: by default redis-py retries a timed-out command 3 times.)
    short = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, password=password,
                        socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    try:
        short.execute_command("DELAYPOP", "abandoned", "BLOCK", 3000)
        check(False, "socket_timeout 0.5 s with BLOCK 3000 must time out in the client")
    except redis.TimeoutError:
        check(True, "socket_timeout shorter than BLOCK raises TimeoutError")
    short.close()
    time.sleep(0.2)
    eq(ex("DELAYADD", "abandoned", 0, "x"), 1, "DELAYADD after an abandoned wait")
    eq(ex("DELAYPOP", "abandoned", "BLOCK", 1000), [b"x"], "member not lost to the departed consumer")

    # A connection pool keeps working across many clients.
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, protocol=protocol,
                                password=password, socket_timeout=10)
    clients = [redis.Redis(connection_pool=pool) for _ in range(5)]
    for i, c in enumerate(clients):
        eq(c.execute_command("DELAYADD", "pool", 100000, f"c{i}"), 1, f"pool client {i}")
    eq(r.execute_command("DELAYCARD", "pool"), 5, "pool DELAYCARD")
    pool.disconnect()
    r.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", type=int, choices=[2, 3], default=3)
    ap.add_argument("--password", default=None)
    a = ap.parse_args()
    print(f"redis-py {redis.__version__}, protocol {a.protocol}, port {a.port}")
    try:
        run(a.port, a.protocol, a.password)
    except Exception as e:  # report, do not hide, unexpected failures
        import traceback

        traceback.print_exc()
        FAILURES.append(f"exception: {e!r}")
    if FAILURES:
        print(f"\n{len(FAILURES)} failure(s):")
        for f in FAILURES:
            print(f"  - {f}")
        return 1
    print("all redis-py checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
