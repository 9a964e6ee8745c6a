//! Members and queue names too big for an LSM key (fjall keys are at most
//! 65,535 bytes) work on every path — hot, cold, leased, dead-lettered,
//! restart — or are refused up front with nothing changed.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::time::Duration;

use harness::Server;
use redis::Value;

/// A member larger than any LSM key, distinct per `tag`.
fn big(tag: u8, len: usize) -> Vec<u8> {
    let mut v = vec![b'a' + tag % 26; len];
    v[0] = tag;
    v
}

fn card(con: &mut redis::Connection, q: &[u8]) -> i64 {
    redis::cmd("DELAYCARD").arg(q).query(con).unwrap()
}

fn range(con: &mut redis::Connection, q: &[u8]) -> Vec<Vec<u8>> {
    redis::cmd("DELAYRANGE")
        .arg(q)
        .arg(0)
        .arg(-1)
        .query(con)
        .unwrap()
}

fn pop(con: &mut redis::Connection, q: &[u8], extra: &[&str]) -> Vec<Vec<u8>> {
    redis::cmd("DELAYPOP").arg(q).arg(extra).query(con).unwrap()
}

/// A 70 KB member due beyond the horizon is stored cold, scored, paged in
/// and popped when due, and survives a crash.
#[test]
fn large_cold_member_works_and_survives_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--horizon-ms", "1000", "--appendfsync", "always"];
    let mut s = Server::start_in(&dir, &flags);
    let mut con = s.client();
    let m = big(1, 70_000);
    let added: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(3_000)
        .arg(&m)
        .query(&mut con)
        .unwrap();
    assert_eq!(added, 1);
    let far = big(2, 100_000);
    let added: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(3_600_000)
        .arg(&far)
        .query(&mut con)
        .unwrap();
    assert_eq!(added, 1);
    let score: Option<i64> = redis::cmd("DELAYSCORE")
        .arg("q")
        .arg(&far)
        .query(&mut con)
        .unwrap();
    assert!(score.is_some(), "a cold 100 KB member is found");
    s.kill9();

    let mut s = Server::start_in(&dir, &flags);
    let mut con = s.client();
    assert_eq!(card(&mut con, b"q"), 2);
    assert_eq!(range(&mut con, b"q"), vec![m.clone(), far.clone()]);
    // Rescheduling and removing a cold large member find it by its key.
    let rescheduled: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg("CH")
        .arg(7_200_000)
        .arg(&far)
        .query(&mut con)
        .unwrap();
    assert_eq!(rescheduled, 1);
    let popped: Vec<Vec<u8>> = redis::cmd("DELAYPOP")
        .arg("q")
        .arg("BLOCK")
        .arg(10_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(popped, vec![m]);
    let removed: i64 = redis::cmd("DELAYREM")
        .arg("q")
        .arg(&far)
        .query(&mut con)
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(card(&mut con, b"q"), 0);
    s.kill9();
}

/// A lease longer than the horizon stores the member cold: a 70 KB member
/// can be leased, stays visible to DELAYRANGE, survives a restart leased,
/// and is acknowledged.
#[test]
fn large_member_can_be_leased_acked_and_dead_lettered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &[]);
    let mut con = s.client();
    let m = big(3, 70_000);
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(0)
        .arg(&m)
        .query(&mut con)
        .unwrap();
    assert_eq!(pop(&mut con, b"q", &["LEASE", "300000"]), vec![m.clone()]);
    // Another client's write commits the round after the lease.
    let mut other = s.client();
    let _: i64 = redis::cmd("DELAYADD")
        .arg("other")
        .arg(0)
        .arg("x")
        .query(&mut other)
        .unwrap();
    assert_eq!(card(&mut con, b"q"), 1);
    assert_eq!(range(&mut con, b"q"), vec![m.clone()]);
    s.kill9();

    let mut s = Server::start_in(&dir, &[]);
    let mut con = s.client();
    assert_eq!(card(&mut con, b"q"), 1);
    assert_eq!(range(&mut con, b"q"), vec![m.clone()]);
    assert!(pop(&mut con, b"q", &[]).is_empty(), "still leased");
    let acked: i64 = redis::cmd("DELAYACK")
        .arg("q")
        .arg(&m)
        .query(&mut con)
        .unwrap();
    assert_eq!(acked, 1);
    assert_eq!(card(&mut con, b"q"), 0);

    // Dead-lettering moves a large member into another queue.
    let d = big(4, 80_000);
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(0)
        .arg(&d)
        .query(&mut con)
        .unwrap();
    let opts = ["LEASE", "1", "RETRIES", "1", "DEADLETTER", "dlq"];
    assert_eq!(pop(&mut con, b"q", &opts), vec![d.clone()]);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        pop(&mut con, b"q", &opts).is_empty(),
        "moved, not delivered"
    );
    assert_eq!(card(&mut con, b"q"), 0);
    assert_eq!(pop(&mut con, b"dlq", &["LEASE", "600000"]), vec![d.clone()]);
    s.kill9();

    let mut s = Server::start_in(&dir, &[]);
    let mut con = s.client();
    assert_eq!(range(&mut con, b"dlq"), vec![d]);
    s.kill9();
}

/// With a short horizon, a blocked leasing consumer and a large member due
/// soon: the timer thread pages it in, leases it (a cold write) and keeps
/// firing afterwards.
#[test]
fn timer_thread_survives_leasing_a_large_member() {
    let s = Server::start(&["--horizon-ms", "2000"]);
    let url = s.url();
    let consumer = std::thread::spawn(move || {
        let mut con = harness::connect(&url);
        redis::cmd("DELAYPOP")
            .arg("q")
            .arg("LEASE")
            .arg(300_000)
            .arg("BLOCK")
            .arg(0)
            .query::<Vec<Vec<u8>>>(&mut con)
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut con = s.client();
    let m = big(5, 70_000);
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(500)
        .arg(&m)
        .query(&mut con)
        .unwrap();
    assert_eq!(consumer.join().unwrap(), vec![m]);
    // The timer thread still fires: a later member reaches a blocked pop.
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q2")
        .arg(300)
        .arg("later")
        .query(&mut con)
        .unwrap();
    let got: Vec<Vec<u8>> = redis::cmd("DELAYPOP")
        .arg("q2")
        .arg("BLOCK")
        .arg(5_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(got, vec![b"later".to_vec()]);
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut con)
        .unwrap();
    assert!(info.contains("storage_error:\r\n"), "{info}");
}

/// A queue name longer than the documented limit is refused with a clear
/// error and leaves nothing behind; a name at the limit works on every path.
#[test]
fn queue_names_over_the_limit_are_refused_and_at_the_limit_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--horizon-ms", "1000"];
    let mut s = Server::start_in(&dir, &flags);
    let mut con = s.client();
    let long = vec![b'n'; 65_518];
    let r: redis::RedisResult<i64> = redis::cmd("DELAYADD")
        .arg(&long)
        .arg(10)
        .arg("x")
        .query(&mut con);
    let e = r.unwrap_err();
    assert!(
        e.to_string().contains("queue name is too long"),
        "unexpected error: {e}"
    );
    let exists: i64 = redis::cmd("EXISTS").arg(&long).query(&mut con).unwrap();
    assert_eq!(exists, 0);
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 0);

    let name = vec![b'n'; 65_000];
    let m = big(6, 70_000);
    let _: i64 = redis::cmd("DELAYADD")
        .arg(&name)
        .arg(3_600_000)
        .arg(&m)
        .arg(0)
        .arg("small")
        .query(&mut con)
        .unwrap();
    let leased = pop(&mut con, &name, &["LEASE", "600000"]);
    assert_eq!(leased, vec![b"small".to_vec()]);
    s.kill9();

    let mut s = Server::start_in(&dir, &flags);
    let mut con = s.client();
    assert_eq!(card(&mut con, &name), 2);
    let score: Value = redis::cmd("DELAYSCORE")
        .arg(&name)
        .arg(&m)
        .query(&mut con)
        .unwrap();
    assert!(matches!(score, Value::Int(_)), "{score:?}");
    let acked: i64 = redis::cmd("DELAYACK")
        .arg(&name)
        .arg("small")
        .query(&mut con)
        .unwrap();
    assert_eq!(acked, 1);
    let n: i64 = redis::cmd("DEL").arg(&name).query(&mut con).unwrap();
    assert_eq!(n, 1);
    s.kill9();
}
