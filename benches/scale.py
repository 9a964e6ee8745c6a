#!/usr/bin/env python3
"""Scale benchmark: millions of pending members, delayd beside Redis 7.

Loads N members (default 10 million, 14-byte names) due over 40 days across
1,000 queues into delayd and into Redis (sorted sets, AOF everysec), then
reports for each: load rate, memory, disk, DELAYCARD/DELAYSCORE (ZCARD/ZSCORE)
latency, restart-to-serving time after kill -9, and, for delayd, the firing
lateness of the members due in the first minute after the restart (paged in
from disk: the horizon is set below a minute).

    cargo build --release
    python3 benches/scale.py                     # 10M members
    python3 benches/scale.py --members 1000000   # quicker
    python3 benches/scale.py --skip-redis

Loopback only; every server it starts is stopped at exit.
"""

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DELAYD = os.environ.get("DELAYD_BIN") or os.path.join(ROOT, "target", "release", "delayd")
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cleanup(*_):
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    sys.exit(1)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Client:
    """A minimal RESP client: enough for PING, INFO and pops."""

    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rb")

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.read()

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        if t == b"_":
            return None
        raise RuntimeError("unexpected reply %r" % line)

    def close(self):
        self.s.close()


def wait_serving(port, deadline_s=600):
    """Seconds until PING answers PONG (Redis answers -LOADING while loading)."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        try:
            c = Client(port, timeout=2)
            try:
                if c.call("PING") == "PONG":
                    return time.monotonic() - start
            except RuntimeError:
                pass
            finally:
                c.close()
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError("server on %d never served" % port)


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples a process's RSS every 100 ms in the background: the highest
    seen, for "at every moment" (during and right after a bulk load)."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.1)

    def done(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def du_mb(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))
                total += st.st_blocks * 512  # allocated, not apparent size
            except OSError:
                pass
    return total / (1024 * 1024)


def info(port, section):
    c = Client(port)
    text = c.call("INFO", section).decode()
    c.close()
    return dict(l.split(":", 1) for l in text.split("\r\n") if ":" in l)


def dataset(args, now_ms):
    """(queue, due, member): the backlog, due from a day after `now_ms`
    over `days`."""
    rng = random.Random(args.seed)
    span = args.days * 86_400_000
    for i in range(args.members):
        q = b"q:%012d" % (i % args.queues)
        m = b"m%013d" % i
        yield q, now_ms + 86_400_000 + rng.randrange(span), m


def soon_set(args, now_ms):
    """(queue, due, member): `soon` members due in the minute that starts
    `lead_ms` after `now_ms`."""
    rng = random.Random(args.seed + 1)
    for i in range(args.soon):
        q = b"q:%012d" % (i % args.queues)
        yield q, now_ms + args.lead_ms + rng.randrange(60_000), b"s%013d" % i


def load(port, args, command, now_ms, members=None):
    """Pipes members (default: the backlog) through `redis-cli --pipe`;
    returns seconds."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        ["redis-cli", "-p", str(port), "--pipe", "--pipe-timeout", "600"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    buf = []
    size = 0
    for q, due, m in members if members is not None else dataset(args, now_ms):
        if command == "DELAYADD":
            buf.append(resp(b"DELAYADD", q, b"AT", due, m))
        else:
            buf.append(resp(b"ZADD", q, due, m))
        size += 1
        if size == 20_000:
            p.stdin.write(b"".join(buf))
            buf, size = [], 0
    p.stdin.write(b"".join(buf))
    p.stdin.close()
    out = p.stdout.read().decode()
    p.wait()
    took = time.monotonic() - t0
    if "errors: 0" not in out:
        raise RuntimeError("load had errors: " + out)
    return took


def latency(port, cmd):
    """redis-benchmark p50/p99 (ms) for one command over random queues."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", "100000", "-c", "10", "-r", "1000", "--csv"] + cmd,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    rows = [l for l in out.splitlines() if l and not l.startswith('"test"')]
    cols = rows[-1].replace('"', "").split(",")
    # test, rps, avg, min, p50, p95, p99, max
    return float(cols[1]), float(cols[4]), float(cols[6])


def restart_steps(log_path):
    """The last start's 'store opened ... in X ms' and 'recovered ... in Y
    ms' from delayd's log, as 'X, Y'."""
    opened = recovered = "?"
    try:
        text = open(log_path, errors="replace").read()
    except OSError:
        return "?"
    for line in text.splitlines():
        if "store opened" in line:
            opened = line.rsplit(" in ", 1)[-1].strip()
        elif "members in" in line and "recovered" in line:
            recovered = line.rsplit(" in ", 1)[-1].strip()
    return "%s, %s" % (opened, recovered)


def start_delayd(port, data, horizon_ms):
    p = subprocess.Popen(
        [DELAYD, "--port", str(port), "--dir", data, "--appendfsync", "everysec", "--horizon-ms", str(horizon_ms)],
        stdout=subprocess.DEVNULL,
        stderr=open(data + ".log", "a"),
    )
    PROCS.append(p)
    return p


def start_redis(port, data):
    os.makedirs(data, exist_ok=True)
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "everysec", "--dir", data, "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    PROCS.append(p)
    return p


def lateness(port, args, now_ms):
    """Blocks consumers on every queue and measures, for the members due in
    the first minute, receive time minus due time (ms)."""
    want = {m for _, _, m in soon_set(args, now_ms)}
    got = {}
    early = [0]
    lock = threading.Lock()
    deadline = time.time() + args.lead_ms / 1000 + 90
    queues = [b"q:%012d" % i for i in range(args.queues)]

    def consume(keys):
        c = Client(port, timeout=5)
        while time.time() < deadline:
            with lock:
                if len(got) >= len(want):
                    break
            try:
                r = c.call(b"BDELAYPOP", *keys, b"1")
            except socket.timeout:
                continue
            if r is None:
                continue
            recv = time.time() * 1000
            _, m, due = r
            with lock:
                got[m] = recv - due
                if recv < due:
                    early[0] += 1
        c.close()

    n = 8
    threads = [threading.Thread(target=consume, args=(queues[i::n],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lates = sorted(got[m] for m in want if m in got)
    missing = len(want) - len(lates)
    if not lates:
        return None
    q = lambda p: lates[min(len(lates) - 1, int(p * len(lates)))]
    return {
        "count": len(lates),
        "missing": missing,
        "early": early[0],
        "p50": q(0.50),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": lates[-1],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=10_000_000)
    ap.add_argument("--queues", type=int, default=1000)
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--soon", type=int, default=20_000, help="members due in the first minute")
    ap.add_argument("--lead-ms", type=int, default=20_000, help="when the first minute starts, after the soon members are added")
    ap.add_argument("--horizon-ms", type=int, default=10_000, help="delayd's in-memory horizon")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-redis", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(DELAYD):
        sys.exit("build first: cargo build --release")
    for tool in ("redis-cli", "redis-benchmark") + (() if args.skip_redis else ("redis-server",)):
        if not shutil.which(tool):
            sys.exit(tool + " is missing: apt-get install -y redis-server redis-tools")
    signal.signal(signal.SIGINT, cleanup)
    signal.signal(signal.SIGTERM, cleanup)
    tmp = tempfile.mkdtemp(prefix="delayd-scale-")
    results = {}
    try:
        # ---- delayd
        port = free_port()
        data = os.path.join(tmp, "delayd")
        p = start_delayd(port, data, args.horizon_ms)
        wait_serving(port)
        idle_rss = rss_mb(p.pid)
        now_ms = int(time.time() * 1000)
        peak = PeakRss(p.pid)
        took = load(port, args, "DELAYADD", now_ms)
        time.sleep(2)
        d = {"load_s": took, "rate": args.members / took, "rss_mb": rss_mb(p.pid), "idle_rss_mb": idle_rss}
        d["peak_rss_mb"] = peak.done()
        inf = info(port, "delay")
        d["in_memory"] = int(inf.get("delay_in_memory", 0))
        d["pending"] = int(inf.get("delay_pending", 0))
        d["card"] = latency(port, ["DELAYCARD", "q:__rand_int__"])
        d["score"] = latency(port, ["DELAYSCORE", "q:__rand_int__", "m0__rand_int__"])
        d["disk_mb"] = du_mb(data)
        # The members due in the first minute after the restart: added now,
        # beyond the horizon, so they are paged in from disk when near.
        soon_ms = int(time.time() * 1000)
        load(port, args, "DELAYADD", soon_ms, list(soon_set(args, soon_ms)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p = start_delayd(port, data, args.horizon_ms)
        d["restart_s"] = wait_serving(port)
        d["rss_after_restart_mb"] = rss_mb(p.pid)
        d["restart_steps"] = restart_steps(data + ".log")
        d["lateness"] = lateness(port, args, soon_ms)
        p.terminate()
        p.wait()
        results["delayd"] = d

        # ---- Redis
        if not args.skip_redis:
            port = free_port()
            data = os.path.join(tmp, "redis")
            p = start_redis(port, data)
            wait_serving(port)
            took = load(port, args, "ZADD", now_ms)
            time.sleep(2)
            r = {"load_s": took, "rate": args.members / took, "rss_mb": rss_mb(p.pid)}
            r["used_memory_mb"] = int(info(port, "memory")["used_memory"]) / (1024 * 1024)
            r["card"] = latency(port, ["ZCARD", "q:__rand_int__"])
            r["score"] = latency(port, ["ZSCORE", "q:__rand_int__", "m0__rand_int__"])
            r["disk_mb"] = du_mb(data)
            p.send_signal(signal.SIGKILL)
            p.wait()
            p = start_redis(port, data)
            r["restart_s"] = wait_serving(port)
            p.terminate()
            p.wait()
            results["redis"] = r
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    d = results["delayd"]
    r = results.get("redis")
    print()
    print("%d members (14-byte names) over %d days in %d queues; delayd --horizon-ms %d" % (args.members, args.days, args.queues, args.horizon_ms))
    print()
    print("| figure | delayd | Redis 7 (AOF everysec) |")
    print("|---|---|---|")
    rv = lambda k, f="%.1f": (f % r[k]) if r else "-"
    print("| load time (s) | %.1f | %s |" % (d["load_s"], rv("load_s")))
    print("| load rate (members/s) | %.0f | %s |" % (d["rate"], rv("rate", "%.0f")))
    print("| RSS after load (MB) | %.1f | %s |" % (d["rss_mb"], rv("rss_mb")))
    print("| peak RSS during the load and 2 s after (MB, sampled every 100 ms) | %.1f | - |" % d["peak_rss_mb"])
    print("| Redis used_memory (MB) | - | %s |" % rv("used_memory_mb"))
    print("| members in memory | %d of %d | all |" % (d["in_memory"], d["pending"]))
    print("| disk (MB) | %.1f | %s |" % (d["disk_mb"], rv("disk_mb")))
    print("| restart to serving after kill -9 (s) | %.3f | %s |" % (d["restart_s"], rv("restart_s", "%.3f")))
    print("| RSS after restart (MB) | %.1f | - |" % d["rss_after_restart_mb"])
    print("| of the restart: store opened, state recovered (ms, delayd's log) | %s | - |" % d["restart_steps"])
    for name, key in (("DELAYCARD / ZCARD", "card"), ("DELAYSCORE / ZSCORE", "score")):
        rr = r[key] if r else None
        print("| %s rps, p50 / p99 (ms) | %.0f, %.3f / %.3f | %s |" % (
            name, d[key][0], d[key][1], d[key][2], ("%.0f, %.3f / %.3f" % rr) if rr else "-"))
    l = d["lateness"]
    if l:
        print("| firing lateness, first minute after restart (ms) | p50 %.2f, p99 %.2f, p99.9 %.2f, max %.2f; %d early; %d of %d delivered | - |" % (
            l["p50"], l["p99"], l["p999"], l["max"], l["early"], l["count"], l["count"] + l["missing"]))


if __name__ == "__main__":
    main()
