//! Message trace: `--trace-queues`, `DELAYTRACE`, CONFIG GET/SET of the
//! trace settings. The real binary on loopback, driven by the `redis` crate.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Server, eventually};

/// One event as DELAYTRACE returns it: `[time-ms, event, detail]`.
type Event = (i64, String, String);

fn trace(con: &mut redis::Connection, key: &str, member: &str) -> Vec<Event> {
    redis::cmd("DELAYTRACE")
        .arg(key)
        .arg(member)
        .query(con)
        .unwrap()
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.1.as_str()).collect()
}

fn int(con: &mut redis::Connection, cmd: &mut redis::Cmd) -> i64 {
    cmd.query(con).unwrap()
}

fn members(con: &mut redis::Connection, cmd: &mut redis::Cmd) -> Vec<String> {
    cmd.query(con).unwrap()
}

/// The whole story of two members of a traced queue — added, made due,
/// leased, lease expired, dead-lettered; leased and acked — then a crash
/// and restart that keeps it, and CONFIG SET that turns tracing off.
#[test]
fn delaytrace_tells_what_happened_to_a_member_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--trace-queues", "orders:*"];
    let mut server = Server::start_in(&dir, &flags);
    let mut con = server.client();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tracer")
        .query(&mut con)
        .unwrap();
    let t0 = harness::now_ms() as i64;

    // "job": due in 100 ms, taken by a blocked consumer under a 200 ms
    // lease it lets run out, then dead-lettered on its second delivery.
    let added = int(
        &mut con,
        redis::cmd("DELAYADD").arg("orders:eu").arg(100).arg("job"),
    );
    assert_eq!(added, 1);
    let got = members(
        &mut con,
        redis::cmd("DELAYPOP")
            .arg("orders:eu")
            .arg("LEASE")
            .arg(200)
            .arg("BLOCK")
            .arg(5_000),
    );
    assert_eq!(got, ["job"]);
    assert!(
        eventually(Duration::from_secs(5), || {
            names(&trace(&mut con, "orders:eu", "job")).contains(&"lease-expired")
        }),
        "the lease never ran out: {:?}",
        trace(&mut con, "orders:eu", "job")
    );
    let got = members(
        &mut con,
        redis::cmd("DELAYPOP")
            .arg("orders:eu")
            .arg("LEASE")
            .arg(60_000)
            .arg("RETRIES")
            .arg(1)
            .arg("DEADLETTER")
            .arg("orders:dlq"),
    );
    assert!(got.is_empty(), "dead-lettered, not delivered: {got:?}");

    // "ok": leased and acked.
    int(
        &mut con,
        redis::cmd("DELAYADD").arg("orders:eu").arg(0).arg("ok"),
    );
    let got = members(
        &mut con,
        redis::cmd("DELAYPOP")
            .arg("orders:eu")
            .arg("LEASE")
            .arg(60_000),
    );
    assert_eq!(got, ["ok"]);
    let acked = int(&mut con, redis::cmd("DELAYACK").arg("orders:eu").arg("ok"));
    assert_eq!(acked, 1);

    // A queue that does not match records nothing.
    int(
        &mut con,
        redis::cmd("DELAYADD").arg("other").arg(0).arg("x"),
    );
    assert_eq!(trace(&mut con, "other", "x"), vec![]);
    assert_eq!(trace(&mut con, "orders:eu", "never"), vec![]);

    let job = trace(&mut con, "orders:eu", "job");
    assert_eq!(
        names(&job),
        ["added", "due", "leased", "lease-expired", "dead-lettered"],
        "{job:?}"
    );
    let detail = |i: usize| job[i].2.clone();
    assert!(detail(0).starts_with("due="), "{job:?}");
    let due: i64 = detail(0)["due=".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((t0 + 100..t0 + 5_000).contains(&due), "{job:?}");
    assert!(detail(1).starts_with(&format!("due={due}")), "{job:?}");
    assert!(detail(2).starts_with("until="), "{job:?}");
    assert!(detail(2).contains(" delivery=1"), "{job:?}");
    assert!(detail(3).starts_with("delivery=1"), "{job:?}");
    assert!(detail(4).starts_with("to=orders:dlq delivery=1"), "{job:?}");
    // Times in order, none before the add, the made-due no earlier than due.
    let now = harness::now_ms() as i64;
    assert!(job.windows(2).all(|w| w[0].0 <= w[1].0), "{job:?}");
    assert!(job[0].0 >= t0 && job[4].0 <= now, "{job:?}");
    assert!(job[1].0 >= due, "{job:?}");
    // The dead-letter queue is traced too: it records its own "added".
    let dlq = trace(&mut con, "orders:dlq", "job");
    assert_eq!(names(&dlq), ["added"], "{dlq:?}");
    let ok = trace(&mut con, "orders:eu", "ok");
    assert_eq!(names(&ok), ["added", "leased", "acked"], "{ok:?}");
    // Who leased and acked it: the client's id, name and address.
    let id = int(&mut con, redis::cmd("CLIENT").arg("ID"));
    for i in [1, 2] {
        assert!(
            ok[i]
                .2
                .contains(&format!("by=id={id} name=tracer addr=127.0.0.1:")),
            "{ok:?}"
        );
    }

    // A crash: every acknowledged write survives, the trace with it.
    server.kill9();
    let mut server = Server::start_in(&dir, &flags);
    let mut con = server.client();
    assert_eq!(trace(&mut con, "orders:eu", "job"), job);
    assert_eq!(trace(&mut con, "orders:eu", "ok"), ok);
    assert_eq!(trace(&mut con, "orders:dlq", "job"), dlq);

    // CONFIG GET shows the settings; CONFIG SET '' stops recording and
    // keeps what was recorded readable.
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("trace-*")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        got,
        ["trace-queues", "orders:*", "trace-max-events", "10000"]
    );
    let r: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("trace-queues")
        .arg("")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, "OK");
    int(
        &mut con,
        redis::cmd("DELAYADD").arg("orders:eu").arg(0).arg("late"),
    );
    int(
        &mut con,
        redis::cmd("DELAYREM").arg("orders:eu").arg("job").arg("ok"),
    );
    assert_eq!(trace(&mut con, "orders:eu", "late"), vec![]);
    assert_eq!(trace(&mut con, "orders:eu", "job"), job);
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("trace-queues")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["trace-queues", ""]);

    // And on again, at run time, with a bound of its own.
    let r: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("trace-queues")
        .arg("orders:*")
        .arg("trace-max-events")
        .arg(2)
        .query(&mut con)
        .unwrap();
    assert_eq!(r, "OK");
    int(
        &mut con,
        redis::cmd("DELAYADD")
            .arg("orders:eu")
            .arg(60_000)
            .arg("late"),
    );
    assert_eq!(
        names(&trace(&mut con, "orders:eu", "late")),
        ["rescheduled"]
    );
    let all: usize = ["job", "ok", "late"]
        .iter()
        .map(|m| trace(&mut con, "orders:eu", m).len())
        .sum();
    assert!(all <= 2, "the bound holds across members: {all}");
    server.terminate();
}

#[test]
fn trace_settings_are_checked_and_come_from_the_config_file_too() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("delayd.conf");
    std::fs::write(&conf, "trace-queues \"jobs:*\"\ntrace-max-events 5\n").unwrap();
    let server = Server::start(&["--config", conf.to_str().unwrap()]);
    let mut con = server.client();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("trace-*")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["trace-queues", "jobs:*", "trace-max-events", "5"]);
    for (value, why) in [
        (
            "0",
            "argument must be between 1 and 9223372036854775807 inclusive",
        ),
        ("x", "argument couldn't be parsed into an integer"),
    ] {
        let err = redis::cmd("CONFIG")
            .arg("SET")
            .arg("trace-max-events")
            .arg(value)
            .query::<String>(&mut con)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "CONFIG SET failed (possibly related to argument 'trace-max-events') - {why}"
            )),
            "{text}"
        );
    }
    for i in 0..7 {
        int(
            &mut con,
            redis::cmd("DELAYADD").arg("jobs:a").arg(1_000 + i).arg("m"),
        );
    }
    let events = trace(&mut con, "jobs:a", "m");
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events[4].2.starts_with("due="), "{events:?}");
    // COMMAND DOCS documents it.
    let docs: redis::Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("delaytrace")
        .query(&mut con)
        .unwrap();
    let text = format!("{docs:?}");
    assert!(text.contains("trace-queues"), "{text}");
}
