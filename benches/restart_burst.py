#!/usr/bin/env python3
"""Restart after a burst: kill -9 right after a bulk load, then restart.

Loads N members (default 2 million, the scale benchmark's data set: due
over 40 days in 1,000 queues, so all on disk) with `redis-cli --pipe`,
kills delayd with SIGKILL the moment the load's last reply arrived, and
keeps that data directory. It lists fjall's journal files (`*.jnl`) and
delayd's log segments there (their sizes are the deterministic figure),
then restarts delayd `--rounds` times, each on a fresh copy of the killed
directory, and reports per round the time to the first PONG and what the
server logged: "store opened (journal replayed) in X ms" and the recovery
total.

    cargo build --release
    python3 benches/restart_burst.py                      # 2M members
    DELAYD_BIN=/tmp/delayd-main python3 benches/restart_burst.py --rounds 5

Loopback only; every server it starts is stopped at exit.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402  (the data set, the loader and the RESP client)


def written(path):
    """Bytes written to a file: fjall creates each journal at 64 MiB
    (zeros), so its size says nothing; what it holds ends at the last
    non-zero byte."""
    with open(path, "rb") as f:
        return len(f.read().rstrip(b"\0"))


def files(data):
    """(relative path, bytes written) of fjall's journals and delayd's log
    segments."""
    out = []
    for dirpath, _, names in os.walk(data):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, data)
            if n.endswith(".jnl") or rel.startswith("wal" + os.sep):
                out.append((rel, written(p)))
    return sorted(out)


def start(port, data, horizon_ms, log):
    p = subprocess.Popen(
        [scale.DELAYD, "--port", str(port), "--dir", data, "--appendfsync", "everysec",
         "--horizon-ms", str(horizon_ms)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    scale.PROCS.append(p)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=2_000_000)
    ap.add_argument("--queues", type=int, default=1000)
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--horizon-ms", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rounds", type=int, default=5, help="restarts, each on a copy of the killed directory")
    ap.add_argument("--keep", help="copy the killed directory here (for a closer look)")
    args = ap.parse_args()
    if not os.path.exists(scale.DELAYD):
        sys.exit("build first: cargo build --release")
    signal.signal(signal.SIGINT, scale.cleanup)
    signal.signal(signal.SIGTERM, scale.cleanup)
    tmp = tempfile.mkdtemp(prefix="delayd-restart-")
    try:
        port = scale.free_port()
        data = os.path.join(tmp, "killed")
        p = start(port, data, args.horizon_ms, os.path.join(tmp, "load.log"))
        scale.wait_serving(port)
        took = scale.load(port, args, "DELAYADD", int(time.time() * 1000))
        p.send_signal(signal.SIGKILL)
        p.wait()
        print("%s: %d members loaded in %.1f s, then kill -9" % (scale.DELAYD, args.members, took))
        jnl = [(n, s) for n, s in files(data) if n.endswith(".jnl")]
        wal = [(n, s) for n, s in files(data) if not n.endswith(".jnl")]
        print("fjall journals: %d files, %.1f MiB: %s" % (
            len(jnl), sum(s for _, s in jnl) / 2**20, ", ".join("%s %.1f MiB" % (n, s / 2**20) for n, s in jnl)))
        if args.keep:
            shutil.copytree(data, args.keep)
        print("delayd log: %d files, %.1f MiB" % (len(wal), sum(s for _, s in wal) / 2**20))
        opened, serving, recovered = [], [], []
        for r in range(args.rounds):
            copy = os.path.join(tmp, "round%d" % r)
            shutil.copytree(data, copy)
            log = copy + ".log"
            port = scale.free_port()
            p = start(port, copy, args.horizon_ms, log)
            serving.append(scale.wait_serving(port))
            p.terminate()
            p.wait()
            text = open(log).read()
            m = re.search(r"store opened \(journal replayed\) in ([0-9.]+) ms", text)
            opened.append(float(m.group(1)) if m else float("nan"))
            m = re.search(r"recovered \d+ members .* in ([0-9.]+) ms", text)
            recovered.append(float(m.group(1)) if m else float("nan"))
            m = re.search(r"applied (\d+) batches from the write-ahead log", text)
            print("round %d: store opened %.1f ms, recovered %.1f ms, first PONG %.3f s, log tail %s batches" % (
                r + 1, opened[-1], recovered[-1], serving[-1], m.group(1) if m else "0"))
            shutil.rmtree(copy, ignore_errors=True)
        print("median of %d: store opened %.1f ms, recovered %.1f ms, first PONG %.3f s" % (
            args.rounds, statistics.median(opened), statistics.median(recovered), statistics.median(serving)))
    finally:
        for p in scale.PROCS:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
