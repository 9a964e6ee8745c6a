//! Crash and restart: the real binary, killed and restarted on its data.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::Server;

/// Every DELAYADD acknowledged under `appendfsync always` survives kill -9.
#[test]
fn kill9_under_always_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &["--appendfsync", "always"]);
    let stop = Instant::now() + Duration::from_millis(700);
    // Half due now, half far in the future: both tiers must survive.
    let producers = produce(&server, 8, stop, |p, i| {
        let delay = if i % 2 == 0 { 0 } else { 86_400_000 };
        (format!("p{p}:{i}"), delay)
    });
    std::thread::sleep(Duration::from_millis(400));
    server.kill9();
    let acked = acknowledged(producers);
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );

    let server = Server::start_in(&dir, &["--appendfsync", "always"]);
    assert_all_there(&mut server.client(), &acked);
}

/// Acknowledged writes survive kill -9 at any step of the store's
/// checkpoints: the log rotated, fjall's memtables sealed, written to
/// tables, the checkpoint recorded, the old log deleted, and at the next
/// start fjall's journal discarded and the log applied again. Members of
/// 4 KiB fill the 8 MiB between checkpoints in two thousand writes, so
/// each run crosses many, and the kill lands anywhere among them.
#[test]
fn kill9_across_checkpoints_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut rng = harness::Lcg(7);
    let mut acked: Vec<String> = Vec::new();
    let mut checkpoints = std::collections::HashSet::new();
    for cycle in 0..5 {
        let mut server = Server::start_in(&dir, &[]);
        let mut con = server.client();
        let lost = missing(&mut con, &acked);
        assert_eq!(
            lost,
            0,
            "cycle {cycle}: {lost} of {} acknowledged members lost",
            acked.len()
        );
        if let Ok(c) = std::fs::read_to_string(dir.join("checkpoint")) {
            checkpoints.insert(c);
        }
        let stop = Instant::now() + Duration::from_millis(3_000);
        // Beyond the in-memory horizon and within it.
        let producers = produce(&server, 4, stop, move |p, i| {
            let delay = if i % 2 == 0 { 3 * 86_400_000 } else { 600_000 };
            (format!("c{cycle}p{p}i{i}:{}", "x".repeat(4096)), delay)
        });
        std::thread::sleep(Duration::from_millis(300 + rng.next() % 2_500));
        server.kill9();
        acked.extend(acknowledged(producers));
    }
    let server = Server::start_in(&dir, &[]);
    assert_all_there(&mut server.client(), &acked);
    assert!(
        checkpoints.len() >= 2,
        "the runs crossed too few checkpoints to test them: {checkpoints:?}"
    );
}

/// Starts `n` producers, each adding to queue `q` the members `member(p,
/// i)` gives (name, delay in ms) until `stop` or until the server is
/// killed under them. Each returns the members it saw acknowledged.
fn produce(
    server: &Server,
    n: usize,
    stop: Instant,
    member: impl Fn(usize, u64) -> (String, u64) + Send + Copy + 'static,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..n)
        .map(|p| {
            let mut con = server.client();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0.. {
                    if Instant::now() > stop {
                        break;
                    }
                    let (m, delay) = member(p, i);
                    let r: redis::RedisResult<i64> = redis::cmd("DELAYADD")
                        .arg("q")
                        .arg(delay)
                        .arg(&m)
                        .query(&mut con);
                    match r {
                        Ok(1) => acked.push(m),
                        Ok(other) => panic!("DELAYADD of a new member replied {other}"),
                        Err(_) => break, // the server was killed under us
                    }
                }
                acked
            })
        })
        .collect()
}

/// Every member the producers saw acknowledged.
fn acknowledged(producers: Vec<std::thread::JoinHandle<Vec<String>>>) -> Vec<String> {
    producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect()
}

/// Queue `q` holds every one of `acked`, and DELAYCARD counts at least
/// them (a write whose reply the kill cut off may be there too).
fn assert_all_there(con: &mut redis::Connection, acked: &[String]) {
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(con).unwrap();
    assert!(
        card as usize >= acked.len(),
        "DELAYCARD {card} < acked {}",
        acked.len()
    );
    let lost = missing(con, acked);
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged members lost",
        acked.len()
    );
}

/// How many of `members` queue `q` does not hold.
fn missing(con: &mut redis::Connection, members: &[String]) -> usize {
    if members.is_empty() {
        return 0;
    }
    let mut pipe = redis::pipe();
    for m in members {
        pipe.cmd("DELAYSCORE").arg("q").arg(m);
    }
    let scores: Vec<Option<i64>> = pipe.query(con).unwrap();
    scores.iter().filter(|s| s.is_none()).count()
}

/// A clean stop (SIGTERM, then SHUTDOWN) persists everything even with
/// `appendfsync no`, and exits 0.
#[test]
fn clean_shutdown_persists_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &["--appendfsync", "no"]);
    let mut con = server.client();
    for i in 0..1000 {
        let _: i64 = redis::cmd("DELAYADD")
            .arg("q")
            .arg(60_000 + i)
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    drop(con);
    assert_eq!(server.terminate(), Some(0), "log:\n{}", server.log_text());

    let mut server = Server::start_in(&dir, &["--appendfsync", "no"]);
    let mut con = server.client();
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut con).unwrap();
    assert_eq!(card, 1000);
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut con);
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
}

/// Blocked consumers are woken when their member is due: never before,
/// and soon after (the bound here is generous; precision is measured by
/// `cargo bench --bench precision`, not asserted in tests).
#[test]
fn blocked_consumers_wake_at_due_time_never_early() {
    let server = Server::start(&[]);
    let mut consumers = Vec::new();
    for c in 0..4 {
        let mut con = server.client();
        consumers.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..5 {
                let r: Option<(String, String, u64)> = redis::cmd("BDELAYPOP")
                    .arg(format!("t{c}"))
                    .arg(5)
                    .query(&mut con)
                    .unwrap();
                let (_, member, due) = r.expect("woken before the timeout");
                got.push((member, due, harness::now_ms()));
            }
            got
        }));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut con = server.client();
    let base = harness::now_ms() + 200;
    for c in 0..4 {
        for i in 0..5u64 {
            let due = base + i * 97 + c * 13;
            let _: i64 = redis::cmd("DELAYADD")
                .arg(format!("t{c}"))
                .arg("AT")
                .arg(due)
                .arg(format!("m{i}"))
                .query(&mut con)
                .unwrap();
        }
    }
    for h in consumers {
        let got = h.join().unwrap();
        assert_eq!(got.len(), 5);
        for (i, (member, due, received)) in got.iter().enumerate() {
            assert_eq!(member, &format!("m{i}"), "in due order");
            assert!(
                received >= due,
                "{member} delivered {} ms early",
                due - received
            );
            assert!(
                received - due < 1_000,
                "{member} delivered {} ms late",
                received - due
            );
        }
    }
}
