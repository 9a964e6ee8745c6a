//! `WATCH`/`UNWATCH`: raw replies compared byte for byte with a real
//! redis-server running the same script with sorted-set commands, and
//! redis-py's `transaction()` retry loop (compat-tests/redis_py_watch.py).

use std::process::Command;
use std::time::Duration;

use crate::harness::{Conn, Server, require_redis_py, run_bounded, servers, show};

/// One step: which client (0 or 1), the delayd command, the Redis one
/// (with a leading `!`: replies differ by design, not compared; delayd's
/// pop answers members without scores).
type Step = (usize, &'static str, &'static str);

/// Scenarios; each starts from an empty server with fresh connections.
const SCENARIOS: &[(&str, &[Step])] = &[
    (
        "another client's write aborts EXEC",
        &[
            (0, "WATCH q", "WATCH q"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "MULTI", "MULTI"),
            (0, "DELAYCARD q", "ZCARD q"),
            (0, "EXEC", "EXEC"),
            // The aborted EXEC forgot the watch: the next one runs.
            (0, "MULTI", "MULTI"),
            (0, "DELAYCARD q", "ZCARD q"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "untouched, it runs",
        &[
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "WATCH q other", "WATCH q other"),
            (1, "DELAYCARD q", "ZCARD q"),
            (1, "EXISTS q", "EXISTS q"),
            (1, "DELAYREM q nobody", "ZREM q nobody"),
            (1, "DEL other", "DEL other"),
            (0, "MULTI", "MULTI"),
            (0, "DELAYCARD q", "ZCARD q"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "a write while queuing aborts",
        &[
            (0, "WATCH q", "WATCH q"),
            (0, "MULTI", "MULTI"),
            (0, "DELAYADD q AT 1 x", "ZADD q 1 x"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "EXEC", "EXEC"),
            (1, "DELAYCARD q", "ZCARD q"),
        ],
    ),
    (
        "the watcher's own write aborts",
        &[
            (0, "WATCH q", "WATCH q"),
            (0, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "MULTI", "MULTI"),
            (0, "DELAYCARD q", "ZCARD q"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "pop and removal touch",
        &[
            (1, "DELAYADD q AT 1000 a 1001 b", "ZADD q 1000 a 1001 b"),
            (0, "WATCH q", "WATCH q"),
            (1, "DELAYREM q a", "ZREM q a"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
            (0, "WATCH q", "WATCH q"),
            (1, "DELAYPOP q", "!ZPOPMIN q"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "UNWATCH, DISCARD and RESET forget",
        &[
            (0, "WATCH q", "WATCH q"),
            (0, "UNWATCH", "UNWATCH"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
            (0, "WATCH q", "WATCH q"),
            (0, "MULTI", "MULTI"),
            (0, "DISCARD", "DISCARD"),
            (1, "DELAYADD q AT 1000 b", "ZADD q 1000 b"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
            (0, "WATCH q", "WATCH q"),
            (0, "RESET", "RESET"),
            (1, "DELAYADD q AT 1000 c", "ZADD q 1000 c"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "EXEC and DISCARD without MULTI keep the watch",
        &[
            (0, "WATCH q", "WATCH q"),
            (0, "EXEC", "EXEC"),
            (0, "DISCARD", "DISCARD"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "WATCH inside MULTI is refused and does not abort; EXECABORT wins",
        &[
            (0, "WATCH", "WATCH"),
            (0, "MULTI", "MULTI"),
            (0, "WATCH q", "WATCH q"),
            (0, "DELAYCARD q", "ZCARD q"),
            (0, "EXEC", "EXEC"),
            (0, "WATCH q", "WATCH q"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "MULTI", "MULTI"),
            (0, "NOSUCHCOMMAND", "NOSUCHCOMMAND"),
            (0, "EXEC", "EXEC"),
            // EXECABORT forgot the watch too.
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "DEL and FLUSHALL touch only queues that exist",
        &[
            (0, "WATCH q", "WATCH q"),
            (1, "DEL q", "DEL q"),
            (1, "FLUSHALL", "FLUSHALL"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "WATCH q", "WATCH q"),
            (1, "FLUSHALL", "FLUSHALL"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "WATCH q", "WATCH q"),
            (1, "DEL q", "DEL q"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
        ],
    ),
    (
        "watching twice keeps the first version",
        &[
            (0, "WATCH q", "WATCH q"),
            (1, "DELAYADD q AT 1000 a", "ZADD q 1000 a"),
            (0, "WATCH q", "WATCH q"),
            (0, "MULTI", "MULTI"),
            (0, "EXEC", "EXEC"),
        ],
    ),
];

#[test]
fn watch_replies_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    for proto in [2, 3] {
        for (name, steps) in SCENARIOS {
            for port in [dd.port, redis.port] {
                assert_eq!(Conn::open(port, 2).ask("FLUSHALL"), b"+OK\r\n");
            }
            let mut d = [Conn::open(dd.port, proto), Conn::open(dd.port, proto)];
            let mut r = [Conn::open(redis.port, proto), Conn::open(redis.port, proto)];
            for (i, &(who, mine, theirs)) in steps.iter().enumerate() {
                let got = d[who].ask(mine);
                if let Some(theirs) = theirs.strip_prefix('!') {
                    r[who].ask(theirs);
                    continue;
                }
                let want = r[who].ask(theirs);
                assert_eq!(
                    show(&got),
                    show(&want),
                    "RESP{proto} {name:?} step {i} ({mine} / {theirs})"
                );
            }
        }
    }
}

/// Delay-queue writes touch a watched queue; time passing alone (a member
/// coming due, a lease running out) does not (README, Guarantees).
#[test]
fn leases_and_acks_touch_time_does_not() {
    let s = Server::start(&[]);
    let mut a = Conn::open(s.port, 2);
    let mut b = Conn::open(s.port, 2);
    let aborted = |a: &mut Conn| {
        assert_eq!(a.ask("MULTI"), b"+OK\r\n");
        assert_eq!(a.ask("DELAYCARD q"), b"+QUEUED\r\n");
        a.ask("EXEC") == b"*-1\r\n"
    };
    assert_eq!(b.ask("DELAYADD q 0 m"), b":1\r\n");
    assert_eq!(a.ask("WATCH q"), b"+OK\r\n");
    assert_eq!(show(&b.ask("DELAYPOP q LEASE 100")), "*1\r\n$1\r\nm\r\n");
    assert!(aborted(&mut a), "a leased pop touches");
    // The lease runs out: m is due again, by time alone.
    assert_eq!(a.ask("WATCH q"), b"+OK\r\n");
    assert_eq!(b.ask("DELAYADD q 150 later"), b":1\r\n");
    assert!(aborted(&mut a), "an add touches");
    assert_eq!(a.ask("WATCH q"), b"+OK\r\n");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!aborted(&mut a), "coming due by time does not touch");
    assert_eq!(
        show(&b.ask("DELAYPOP q COUNT 5 LEASE 60000")),
        "*2\r\n$1\r\nm\r\n$5\r\nlater\r\n"
    );
    assert_eq!(a.ask("WATCH q"), b"+OK\r\n");
    assert_eq!(b.ask("DELAYACK q m"), b":1\r\n");
    assert!(aborted(&mut a), "an ack touches");
}

fn run_redis_py_watch(protocol: u8) {
    if !require_redis_py() {
        return;
    }
    let s = Server::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/compat-tests/redis_py_watch.py"
    );
    let mut c = Command::new("python3");
    c.arg(script)
        .args(["--port", &s.port.to_string()])
        .args(["--protocol", &protocol.to_string()]);
    let out = run_bounded(&mut c, None, Duration::from_secs(90));
    assert!(
        out.success() && out.stdout.contains("all redis-py watch checks passed"),
        "redis_py_watch.py --protocol {protocol} failed:\n{}\n--- server log ---\n{}",
        out.describe(),
        s.log_text()
    );
}

#[test]
fn redis_py_transaction_resp2() {
    run_redis_py_watch(2);
}

#[test]
fn redis_py_transaction_resp3() {
    run_redis_py_watch(3);
}
