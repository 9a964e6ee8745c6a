//! SLOWLOG and LATENCY against a real redis-server 7: the same requests on
//! both, replies compared byte for byte where they are deterministic, and
//! entry by entry (ids, times and durations checked, then masked) where
//! they are not; then redis-cli's `--latency` and `slowlog get` on delayd.

use std::net::TcpStream;
use std::time::Duration;

use redis::Value;

use crate::harness::{Conn, Server, now_ms, run_bounded, servers, show};

/// A connection and the address the server sees it from.
fn open(port: u16) -> (Conn, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let addr = s.local_addr().expect("local addr").to_string();
    (Conn::wrap(s), addr)
}

/// Sends the same request to both servers; the replies must be equal.
fn same(d: &mut Conn, r: &mut Conn, cmd: &str) -> Vec<u8> {
    let (a, b) = (d.ask(cmd), r.ask(cmd));
    assert_eq!(show(&a), show(&b), "{cmd}");
    a
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The arguments of an entry, as text.
fn args_of(entry: &Value) -> Vec<String> {
    match entry {
        Value::Array(f) => match &f[3] {
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => panic!("argument not a bulk string: {other:?}"),
                })
                .collect(),
            other => panic!("arguments not an array: {other:?}"),
        },
        other => panic!("entry not an array: {other:?}"),
    }
}

/// SLOWLOG GET's entries with what differs between servers checked and
/// masked: ids must count down by one, times be now, durations be
/// integers, the address be the client's own.
fn entries(reply: &[u8], addr: &str) -> Vec<Value> {
    let Ok(Value::Array(entries)) = redis::parse_redis_value(reply) else {
        panic!("not an array: {}", show(reply));
    };
    let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
    let mut prev_id = None;
    entries
        .into_iter()
        .map(|e| {
            let Value::Array(mut f) = e else {
                panic!("entry not an array: {}", show(reply))
            };
            assert_eq!(f.len(), 6, "{}", show(reply));
            let id = int(&f[0]);
            if let Some(p) = prev_id {
                assert_eq!(id, p - 1, "ids count down: {}", show(reply));
            }
            prev_id = Some(id);
            assert!((int(&f[1]) - now).abs() <= 30, "time: {}", show(reply));
            assert!(int(&f[2]) >= 0, "duration: {}", show(reply));
            assert_eq!(f[4], Value::BulkString(addr.into()), "{}", show(reply));
            f[0] = Value::Int(0);
            f[1] = Value::Int(0);
            f[2] = Value::Int(0);
            f[4] = Value::Nil;
            Value::Array(f)
        })
        .collect()
}

#[test]
fn slowlog_matches_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let (mut d, d_addr) = open(dd.port);
    let (mut r, r_addr) = open(redis.port);
    for cmd in [
        "CONFIG GET slowlog-log-slower-than",
        "CONFIG GET slowlog-max-len",
        "CONFIG SET slowlog-max-len -1",
        "CONFIG SET slowlog-max-len abc",
        "CONFIG SET slowlog-log-slower-than -2",
        "CONFIG SET slowlog-log-slower-than 1x",
        "SLOWLOG",
        "SLOWLOG nosuch",
        "SLOWLOG LEN x",
        "SLOWLOG RESET x",
        "SLOWLOG HELP x",
        "SLOWLOG get 1 2",
        "SLOWLOG GET abc",
        "SLOWLOG GET -2",
        "SLOWLOG HELP",
        "CONFIG SET slowlog-log-slower-than 0",
        "CONFIG GET slowlog-log-slower-than",
        "SLOWLOG RESET",
        "CLIENT SETNAME worker",
        "AUTH nouser secret",
        "CONFIG SET requirepass sesame",
        "AUTH sesame",
        "CONFIG SET requirepass",
        "ACL SETUSER alice on >hunter2",
        "EXISTS k1 k2",
        "MULTI",
        "EXISTS k3",
        "EXEC",
        "SLOWLOG GET 0",
    ] {
        same(&mut d, &mut r, cmd);
    }
    // The last argument of 40 stands for the 9 not kept; one of 200 bytes
    // is cut at 128.
    let many: Vec<String> = (0..39).map(|i| format!("key{i}")).collect();
    same(&mut d, &mut r, &format!("EXISTS {}", many.join(" ")));
    same(&mut d, &mut r, &format!("EXISTS {}", "x".repeat(200)));
    // Redis answers HELLO with its own server fields: not compared.
    d.ask("HELLO 2 AUTH default sesame");
    r.ask("HELLO 2 AUTH default sesame");
    // An empty password: none.
    same(&mut d, &mut r, "CONFIG SET requirepass ");
    same(&mut d, &mut r, "SLOWLOG LEN");
    let (a, b) = (d.ask("SLOWLOG GET -1"), r.ask("SLOWLOG GET -1"));
    let (a, b) = (entries(&a, &d_addr), entries(&b, &r_addr));
    assert_eq!(a, b);
    // Credentials are redacted (AUTH's, HELLO's, CONFIG SET
    // requirepass's, ACL SETUSER's); EXEC is not logged, the command it ran is.
    let all: Vec<Vec<String>> = a.iter().map(args_of).collect();
    let text = format!("{all:?}");
    assert!(
        !text.contains("sesame") && !text.contains("secret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        all.contains(&vec!["AUTH".into(), "(redacted)".into()]),
        "{text}"
    );
    assert!(
        all.iter().all(|a| !a[0].eq_ignore_ascii_case("exec")),
        "{text}"
    );
    assert!(all.contains(&vec!["EXISTS".into(), "k3".into()]), "{text}");
    let cut = all.iter().find(|a| a.len() == 32).expect("40 arguments");
    assert_eq!(cut[31], "... (9 more arguments)");
    assert!(
        all.iter()
            .any(|a| a.len() == 2 && a[1] == format!("{}... (72 more bytes)", "x".repeat(128))),
        "{text}"
    );
    assert_eq!(
        entries(&d.ask("SLOWLOG GET 2"), &d_addr),
        entries(&r.ask("SLOWLOG GET 2"), &r_addr)
    );
    // A lower limit applies from the CONFIG SET on.
    same(&mut d, &mut r, "CONFIG SET slowlog-max-len 2");
    assert_eq!(same(&mut d, &mut r, "SLOWLOG LEN"), b":2\r\n");
    // RESET empties it, then logs itself; -1 logs nothing.
    same(&mut d, &mut r, "SLOWLOG RESET");
    assert_eq!(same(&mut d, &mut r, "SLOWLOG LEN"), b":1\r\n");
    same(&mut d, &mut r, "CONFIG SET slowlog-log-slower-than -1");
    same(&mut d, &mut r, "SLOWLOG RESET");
    same(&mut d, &mut r, "EXISTS k1");
    assert_eq!(same(&mut d, &mut r, "SLOWLOG LEN"), b":0\r\n");
    // RESP3 has the same shape.
    let (mut d3, d3_addr) = open(dd.port);
    let (mut r3, r3_addr) = open(redis.port);
    same(&mut d3, &mut r3, "CONFIG SET slowlog-log-slower-than 0");
    d3.ask("HELLO 3");
    r3.ask("HELLO 3");
    same(&mut d3, &mut r3, "CONFIG SET slowlog-log-slower-than -1");
    assert_eq!(
        entries(&d3.ask("SLOWLOG GET 1"), &d3_addr),
        entries(&r3.ask("SLOWLOG GET 1"), &r3_addr)
    );
}

#[test]
fn slowlog_settings_come_from_flags_and_a_blocking_pop_is_logged_when_served() {
    let dd = Server::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "3",
        "--latency-monitor-threshold",
        "7",
    ]);
    let (mut d, addr) = open(dd.port);
    assert_eq!(
        show(&d.ask("CONFIG GET slowlog-*")),
        "*4\r\n$23\r\nslowlog-log-slower-than\r\n$1\r\n0\r\n$15\r\nslowlog-max-len\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        show(&d.ask("CONFIG GET latency-monitor-threshold")),
        "*2\r\n$25\r\nlatency-monitor-threshold\r\n$1\r\n7\r\n"
    );
    d.ask("SLOWLOG RESET");
    // Timed out: not logged (as Redis 7.0); served: logged.
    assert_eq!(d.ask("BDELAYPOP nosuch 0.05"), b"*-1\r\n");
    d.ask("DELAYADD q 0 m");
    d.ask("BDELAYPOP q 1");
    let got: Vec<Vec<String>> = entries(&d.ask("SLOWLOG GET"), &addr)
        .iter()
        .map(args_of)
        .collect();
    assert_eq!(
        got,
        [
            vec!["BDELAYPOP", "q", "1"],
            vec!["DELAYADD", "q", "0", "m"],
            vec!["SLOWLOG", "RESET"]
        ],
    );

    let dd = Server::start(&["--slowlog-log-slower-than", "-1"]);
    let mut d = Conn::open(dd.port, 2);
    d.ask("PING");
    assert_eq!(d.ask("SLOWLOG LEN"), b":0\r\n");
    assert_eq!(
        show(&d.ask("CONFIG GET slowlog-log-slower-than")),
        "*2\r\n$23\r\nslowlog-log-slower-than\r\n$2\r\n-1\r\n"
    );
}

/// A ZADD / DELAYADD of this many members takes well over a millisecond.
const BIG: usize = 50_000;

fn big_add(cmd: &str, key: &str) -> String {
    let mut s = format!("{cmd} {key}");
    for i in 0..BIG {
        s.push_str(&format!(" 100000 m{i}"));
    }
    s
}

/// The events of LATENCY LATEST, their figures checked and masked.
fn latest(reply: &[u8]) -> Vec<Value> {
    let Ok(Value::Array(events)) = redis::parse_redis_value(reply) else {
        panic!("not an array: {}", show(reply));
    };
    let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
    events
        .into_iter()
        .map(|e| {
            let Value::Array(mut f) = e else {
                panic!("{}", show(reply))
            };
            assert_eq!(f.len(), 4, "{}", show(reply));
            assert!((int(&f[1]) - now).abs() <= 30, "{}", show(reply));
            assert!(
                int(&f[2]) >= 1 && int(&f[3]) >= int(&f[2]),
                "{}",
                show(reply)
            );
            f[1] = Value::Int(0);
            f[2] = Value::Int(0);
            f[3] = Value::Int(0);
            Value::Array(f)
        })
        .collect()
}

#[test]
fn latency_matches_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    for cmd in [
        "CONFIG GET latency-monitor-threshold",
        "CONFIG SET latency-monitor-threshold -1",
        "CONFIG SET latency-monitor-threshold x",
        "LATENCY DOCTOR",
        "LATENCY",
        "LATENCY nosuch",
        "LATENCY HISTORY",
        "LATENCY LATEST x",
        "LATENCY DOCTOR x",
        "LATENCY HELP x",
        "LATENCY RESET",
        "LATENCY LATEST",
        "LATENCY HISTORY command",
    ] {
        same(&mut d, &mut r, cmd);
    }
    // Off: even a slow command leaves nothing.
    d.ask(&big_add("DELAYADD", "q0"));
    r.ask(&big_add("ZADD", "z0"));
    same(&mut d, &mut r, "LATENCY LATEST");
    same(&mut d, &mut r, "CONFIG SET latency-monitor-threshold 1");
    same(&mut d, &mut r, "CONFIG GET latency-monitor-threshold");
    // DELAYADD is flagged fast as ZADD is: both are `fast-command` events.
    d.ask(&big_add("DELAYADD", "q1"));
    r.ask(&big_add("ZADD", "z1"));
    // Only the fast-command events: a `command` event may be sampled on a
    // loaded machine.
    let fast = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .filter(|e| matches!(e, Value::Array(f) if f[0] == Value::BulkString(b"fast-command".to_vec())))
            .collect()
    };
    let (a, b) = (d.ask("LATENCY LATEST"), r.ask("LATENCY LATEST"));
    let (fa, fb) = (fast(latest(&a)), fast(latest(&b)));
    assert_eq!(fa, fb, "{} / {}", show(&a), show(&b));
    assert_eq!(fa.len(), 1, "{}", show(&a));
    let history = show(&d.ask("LATENCY HISTORY fast-command"));
    assert!(history.starts_with("*1\r\n*2\r\n:"), "{history}");
    let doctor = show(&d.ask("LATENCY DOCTOR"));
    assert!(
        doctor.contains(". fast-command: 1 latency spikes (average "),
        "{doctor}"
    );
    same(&mut d, &mut r, "LATENCY RESET nosuch");
    same(&mut d, &mut r, "LATENCY RESET FAST-COMMAND");
    same(&mut d, &mut r, "LATENCY HISTORY fast-command");
    // Off again, then reset: nothing left. (A `command` event may have
    // been sampled meanwhile on a loaded machine: the count is not compared.)
    same(&mut d, &mut r, "CONFIG SET latency-monitor-threshold 0");
    d.ask("LATENCY RESET");
    r.ask("LATENCY RESET");
    same(&mut d, &mut r, "LATENCY LATEST");
}

#[test]
fn redis_cli_latency_and_slowlog_get() {
    let Some(cli) = crate::harness::require_tool("redis-cli", "apt-get install -y redis-tools")
    else {
        return;
    };
    let dd = Server::start(&["--slowlog-log-slower-than", "0"]);
    let port = dd.port.to_string();
    // --raw with -i: one line "min max avg samples" after a second.
    let out = run_bounded(
        std::process::Command::new(&cli).args(["-p", &port, "--latency", "--raw", "-i", "1"]),
        None,
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{}", out.describe());
    let min: u64 = fields[0].parse().expect("min");
    let max: u64 = fields[1].parse().expect("max");
    let avg: f64 = fields[2].parse().expect("avg");
    let samples: u64 = fields[3].parse().expect("samples");
    assert!(samples > 0 && min <= max, "{}", out.describe());
    assert!(
        (min as f64) <= avg && avg <= max as f64,
        "{}",
        out.describe()
    );
    // Its PINGs are in the slow log, then redis-cli shows the log.
    let mut d = Conn::open(dd.port, 2);
    d.ask("CLIENT SETNAME ops");
    d.ask("DELAYADD jobs 1000 job-1");
    let out = run_bounded(
        std::process::Command::new(&cli).args(["-p", &port, "slowlog", "get", "3"]),
        None,
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    // Newest first: DELAYADD with its arguments, address and name.
    let at = lines
        .iter()
        .position(|l| *l == "DELAYADD")
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert_eq!(
        lines[at..at + 4],
        ["DELAYADD", "jobs", "1000", "job-1"],
        "{}",
        out.describe()
    );
    assert!(
        lines[at + 4].starts_with("127.0.0.1:"),
        "{}",
        out.describe()
    );
    assert_eq!(lines[at + 5], "ops", "{}", out.describe());
    assert!(out.stdout.contains("PING"), "{}", out.describe());
}
