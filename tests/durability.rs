//! Crash and restart: the real binary, killed and restarted on its data.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::Server;

/// Every DELAYADD acknowledged under `appendfsync always` survives kill -9.
#[test]
fn kill9_under_always_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &["--appendfsync", "always"]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Instant::now() + Duration::from_millis(700);
    let mut producers = Vec::new();
    for p in 0..8 {
        let acked = acked.clone();
        let mut con = server.client();
        producers.push(std::thread::spawn(move || {
            for i in 0.. {
                if Instant::now() > stop {
                    break;
                }
                let m = format!("p{p}:{i}");
                // Half due now, half far in the future: both tiers must survive.
                let delay = if i % 2 == 0 { 0 } else { 86_400_000 };
                let r: redis::RedisResult<i64> = redis::cmd("DELAYADD")
                    .arg("q")
                    .arg(delay)
                    .arg(&m)
                    .query(&mut con);
                match r {
                    Ok(1) => acked.lock().unwrap().push(m),
                    Ok(other) => panic!("DELAYADD of a new member replied {other}"),
                    Err(_) => break, // the server was killed under us
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(400));
    server.kill9();
    for p in producers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );

    let server = Server::start_in(&dir, &["--appendfsync", "always"]);
    let mut con = server.client();
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut con).unwrap();
    assert!(
        card as usize >= acked.len(),
        "DELAYCARD {card} < acked {}",
        acked.len()
    );
    let mut pipe = redis::pipe();
    for m in &acked {
        pipe.cmd("DELAYSCORE").arg("q").arg(m);
    }
    let scores: Vec<Option<i64>> = pipe.query(&mut con).unwrap();
    let missing: Vec<_> = acked
        .iter()
        .zip(&scores)
        .filter(|(_, s)| s.is_none())
        .map(|(m, _)| m.clone())
        .collect();
    assert!(missing.is_empty(), "lost acknowledged members: {missing:?}");
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
