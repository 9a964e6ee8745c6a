//! The `redis` crate (redis-rs, synchronous) against the real server: the
//! delay commands, blocking pops woken from another thread, pipelines,
//! MULTI/EXEC, Redis's error texts and the RESP3 handshake.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, Value};

use crate::harness::{Server, connect, now_ms, read_reply};

/// The fields DELAYINFO documents (more may be added).
const DELAYINFO_FIELDS: [&str; 10] = [
    "pending",
    "ready",
    "leased",
    "dead-lettered",
    "next-due-ms",
    "oldest-ready-age-ms",
    "added",
    "popped",
    "acked",
    "expired-leases",
];

/// The full error line the server sent (`CODE detail`), as redis-rs keeps it.
fn err_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(c), Some(d)) => format!("{c} {d}"),
        (Some(c), None) => c.to_string(),
        _ => format!("{e}"),
    }
}

/// Runs a command that must fail and returns the error text.
fn query_err(con: &mut Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<Value>(con) {
        Err(e) => err_text(&e),
        Ok(v) => panic!("{args:?} succeeded with {v:?}; an error was expected"),
    }
}

#[test]
fn delay_commands_roundtrip() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());

    let t0 = now_ms();
    let added: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(100_000)
        .arg("a")
        .arg(200_000)
        .arg("b")
        .query(&mut con)
        .unwrap();
    let t1 = now_ms();
    assert_eq!(added, 2);
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut con).unwrap();
    assert_eq!(card, 2);
    let card: i64 = redis::cmd("DELAYCARD")
        .arg("missing")
        .query(&mut con)
        .unwrap();
    assert_eq!(card, 0);

    let due_a: i64 = redis::cmd("DELAYSCORE")
        .arg("q")
        .arg("a")
        .query(&mut con)
        .unwrap();
    assert!(
        (t0 + 100_000..=t1 + 100_000).contains(&(due_a as u64)),
        "due time of a: {due_a}, expected now + 100000 ({t0}..{t1})"
    );
    let none: Option<i64> = redis::cmd("DELAYSCORE")
        .arg("q")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(none, None);

    // DELAYRANGE in due order, with and without scores.
    let members: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(members, ["a", "b"]);
    let pairs: Vec<(String, i64)> = redis::cmd("DELAYRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut con)
        .unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0], ("a".to_string(), due_a));
    assert_eq!(pairs[1].0, "b");
    assert!(pairs[1].1 >= due_a + 100_000 - 50, "{pairs:?}");
    let last: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("q")
        .arg(-1)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(last, ["b"]);

    // NX, XX, CH, AT: ZADD's rules.
    let n: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg("NX")
        .arg(1)
        .arg("a")
        .arg(300_000)
        .arg("c")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1, "NX adds c only");
    let n: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg("XX")
        .arg(1)
        .arg("zz")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 0, "XX never adds");
    let at = now_ms() + 500_000;
    let n: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg("CH")
        .arg("AT")
        .arg(at)
        .arg("a")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1, "CH counts the rescheduled member");
    let due_a2: i64 = redis::cmd("DELAYSCORE")
        .arg("q")
        .arg("a")
        .query(&mut con)
        .unwrap();
    assert_eq!(due_a2 as u64, at, "AT sets the due time exactly");
    let order: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(order, ["b", "c", "a"]);

    // DELAYREM cancels, counting only what existed.
    let removed: i64 = redis::cmd("DELAYREM")
        .arg("q")
        .arg("a")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(removed, 1);
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut con).unwrap();
    assert_eq!(card, 2);

    // Nothing is due: an empty array, not null.
    let popped: Value = redis::cmd("DELAYPOP").arg("q").query(&mut con).unwrap();
    assert_eq!(popped, Value::Array(vec![]));

    // Due members come out earliest first, ties in insertion order.
    // Options come before the first pair: a later "AT" is read as a delay,
    // as ZADD reads a late "NX" as a score.
    assert_eq!(
        query_err(&mut con, &["DELAYADD", "r", "0", "x", "AT", "1"]),
        "ERR value is not an integer or out of range"
    );
    let n: i64 = redis::cmd("DELAYADD")
        .arg("r")
        .arg(0)
        .arg("x")
        .arg(0)
        .arg("y")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("DELAYADD")
        .arg("r")
        .arg("AT")
        .arg(1)
        .arg("old")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let popped: Vec<String> = redis::cmd("DELAYPOP")
        .arg("r")
        .arg("COUNT")
        .arg(10)
        .query(&mut con)
        .unwrap();
    assert_eq!(popped, ["old", "x", "y"]);
    let card: i64 = redis::cmd("DELAYCARD").arg("r").query(&mut con).unwrap();
    assert_eq!(card, 0);

    // Leading zeros in integers, as redis-benchmark's __rand_int__ sends.
    let n: i64 = redis::cmd("DELAYADD")
        .arg("z")
        .arg("000000054321")
        .arg("m")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);

    // Binary-safe members.
    let member: &[u8] = b"bin\x00\r\n\xff";
    let n: i64 = redis::cmd("DELAYADD")
        .arg("bin")
        .arg(0)
        .arg(member)
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let popped: Vec<Vec<u8>> = redis::cmd("DELAYPOP").arg("bin").query(&mut con).unwrap();
    assert_eq!(popped, vec![member.to_vec()]);
}

#[test]
fn lease_ack_and_redelivery() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());
    let n: i64 = redis::cmd("DELAYADD")
        .arg("jobs")
        .arg(0)
        .arg("j1")
        .arg(0)
        .arg("j2")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 2);

    let t0 = now_ms();
    let got: Vec<String> = redis::cmd("DELAYPOP")
        .arg("jobs")
        .arg("COUNT")
        .arg(2)
        .arg("LEASE")
        .arg(300)
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["j1", "j2"]);
    // Leased members stay in the queue, hidden until the lease runs out.
    let card: i64 = redis::cmd("DELAYCARD").arg("jobs").query(&mut con).unwrap();
    assert_eq!(card, 2);
    let lease_end: i64 = redis::cmd("DELAYSCORE")
        .arg("jobs")
        .arg("j2")
        .query(&mut con)
        .unwrap();
    assert!(
        lease_end as u64 >= t0 + 300 && lease_end as u64 <= now_ms() + 300,
        "DELAYSCORE of a leased member is when its lease ends: {lease_end}"
    );
    let again: Vec<String> = redis::cmd("DELAYPOP")
        .arg("jobs")
        .arg("COUNT")
        .arg(2)
        .query(&mut con)
        .unwrap();
    assert!(again.is_empty(), "leased members are hidden: {again:?}");

    let info: HashMap<String, Value> = redis::cmd("DELAYINFO").arg("jobs").query(&mut con).unwrap();
    assert_eq!(info.get("leased"), Some(&Value::Int(2)), "{info:?}");
    assert_eq!(info.get("pending"), Some(&Value::Int(2)), "{info:?}");

    // Acknowledge j1; a member that is not leased is not acked.
    let acked: i64 = redis::cmd("DELAYACK")
        .arg("jobs")
        .arg("j1")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(acked, 1);
    let n: i64 = redis::cmd("DELAYADD")
        .arg("jobs")
        .arg(100_000)
        .arg("notleased")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let acked: i64 = redis::cmd("DELAYACK")
        .arg("jobs")
        .arg("notleased")
        .query(&mut con)
        .unwrap();
    assert_eq!(acked, 0, "DELAYACK leaves members that are not leased");
    let removed: i64 = redis::cmd("DELAYREM")
        .arg("jobs")
        .arg("notleased")
        .query(&mut con)
        .unwrap();
    assert_eq!(removed, 1);

    // j2 was not acknowledged: it is handed out again once the lease ends,
    // never before.
    let got: Vec<String> = redis::cmd("DELAYPOP")
        .arg("jobs")
        .arg("LEASE")
        .arg(5_000)
        .arg("BLOCK")
        .arg(3_000)
        .query(&mut con)
        .unwrap();
    let at = now_ms();
    assert_eq!(got, ["j2"]);
    assert!(
        at >= lease_end as u64,
        "redelivered at {at}, before the lease ended at {lease_end}"
    );
    let acked: i64 = redis::cmd("DELAYACK")
        .arg("jobs")
        .arg("j2")
        .query(&mut con)
        .unwrap();
    assert_eq!(acked, 1);
    let card: i64 = redis::cmd("DELAYCARD").arg("jobs").query(&mut con).unwrap();
    assert_eq!(card, 0);
}

#[test]
fn blocking_pops_wake_when_due_never_before() {
    let s = Server::start(&[]);
    let url = s.url();

    // DELAYPOP ... BLOCK on one thread, the producer on another.
    let consumer = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut con = connect(&url);
            let got: Vec<String> = redis::cmd("DELAYPOP")
                .arg("bq")
                .arg("BLOCK")
                .arg(5_000)
                .query(&mut con)
                .unwrap();
            (got, now_ms())
        })
    };
    let consumer2 = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut con = connect(&url);
            let got: Value = redis::cmd("BDELAYPOP")
                .arg("other")
                .arg("bq2")
                .arg(5)
                .query(&mut con)
                .unwrap();
            (got, now_ms())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut con = connect(&url);
    let n: i64 = redis::cmd("DELAYADD")
        .arg("bq")
        .arg(400)
        .arg("m1")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let due1: i64 = redis::cmd("DELAYSCORE")
        .arg("bq")
        .arg("m1")
        .query(&mut con)
        .unwrap();
    let due2 = now_ms() + 600;
    let n: i64 = redis::cmd("DELAYADD")
        .arg("bq2")
        .arg("AT")
        .arg(due2)
        .arg("m2")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);

    let (got, at) = consumer.join().unwrap();
    assert_eq!(got, ["m1"]);
    assert!(
        at >= due1 as u64,
        "DELAYPOP BLOCK woke at {at} before due {due1}"
    );
    assert!(at < due1 as u64 + 3_000, "woke late: {at} for due {due1}");

    let (got, at) = consumer2.join().unwrap();
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(b"bq2".to_vec()),
            Value::BulkString(b"m2".to_vec()),
            Value::Int(due2 as i64),
        ]),
        "BDELAYPOP replies [key, member, due-ms]"
    );
    assert!(at >= due2, "BDELAYPOP woke at {at} before due {due2}");
    assert!(at < due2 + 3_000, "woke late: {at} for due {due2}");

    // Timeouts: a null reply, after (not before) the timeout.
    let start = Instant::now();
    let got: Value = redis::cmd("DELAYPOP")
        .arg("empty")
        .arg("BLOCK")
        .arg(300)
        .query(&mut con)
        .unwrap();
    assert_eq!(
        got,
        Value::Nil,
        "DELAYPOP BLOCK times out with a null array"
    );
    assert!(start.elapsed() >= Duration::from_millis(290));
    let start = Instant::now();
    let got: Value = redis::cmd("BDELAYPOP")
        .arg("empty")
        .arg("0.3")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, Value::Nil, "BDELAYPOP times out with null");
    assert!(start.elapsed() >= Duration::from_millis(290));

    // Something already due is returned at once.
    let n: i64 = redis::cmd("DELAYADD")
        .arg("now")
        .arg(0)
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let start = Instant::now();
    let got: Vec<String> = redis::cmd("DELAYPOP")
        .arg("now")
        .arg("BLOCK")
        .arg(0)
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["x"]);
    assert!(start.elapsed() < Duration::from_secs(2));

    // The connection is still usable after blocking.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn many_blocked_consumers_each_get_one_member() {
    let s = Server::start(&[]);
    let url = s.url();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut con = connect(&url);
                let got: Value = redis::cmd("BDELAYPOP")
                    .arg("fan")
                    .arg(5)
                    .query(&mut con)
                    .unwrap();
                (got, now_ms())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut con = connect(&url);
    let due = now_ms() + 300;
    let n: i64 = redis::cmd("DELAYADD")
        .arg("fan")
        .arg("AT")
        .arg(due)
        .arg("a")
        .arg(due)
        .arg("b")
        .arg(due)
        .arg("c")
        .arg(due)
        .arg("d")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 4);
    let mut members = Vec::new();
    for c in consumers {
        let (got, at) = c.join().unwrap();
        assert!(at >= due, "delivered at {at} before due {due}");
        let Value::Array(items) = got else {
            panic!("expected [key, member, due], got {got:?}")
        };
        assert_eq!(items.len(), 3, "{items:?}");
        let Value::BulkString(m) = &items[1] else {
            panic!("{items:?}")
        };
        members.push(String::from_utf8(m.clone()).unwrap());
    }
    members.sort();
    assert_eq!(members, ["a", "b", "c", "d"], "each member exactly once");
}

#[test]
fn pipelines_and_transactions() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());

    // A plain pipeline: replies in order.
    let mut p = redis::pipe();
    for i in 0..100 {
        p.cmd("DELAYADD")
            .arg("p")
            .arg(1_000_000 + i)
            .arg(format!("m{i}"));
    }
    p.cmd("DELAYCARD").arg("p");
    p.cmd("PING");
    p.cmd("DELAYRANGE").arg("p").arg(0).arg(2);
    let replies: Vec<Value> = p.query(&mut con).unwrap();
    assert_eq!(replies.len(), 103);
    assert!(replies[..100].iter().all(|r| *r == Value::Int(1)));
    assert_eq!(replies[100], Value::Int(100));
    assert_eq!(replies[101], Value::SimpleString("PONG".into()));
    assert_eq!(
        replies[102],
        Value::Array(vec![
            Value::BulkString(b"m0".to_vec()),
            Value::BulkString(b"m1".to_vec()),
            Value::BulkString(b"m2".to_vec()),
        ])
    );

    // MULTI/EXEC through redis::pipe().atomic().
    let (added, card, popped, range): (i64, i64, Vec<String>, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("DELAYADD")
        .arg("t")
        .arg(0)
        .arg("x")
        .arg(100_000)
        .arg("y")
        .cmd("DELAYCARD")
        .arg("t")
        .cmd("DELAYPOP")
        .arg("t")
        .arg("COUNT")
        .arg(5)
        .cmd("DELAYRANGE")
        .arg("t")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(added, 2);
    assert_eq!(card, 2);
    assert_eq!(popped, ["x"]);
    assert_eq!(range, ["y"]);

    // A blocking pop inside MULTI does not block: null when nothing is due.
    let start = Instant::now();
    let (a, b): (Value, Value) = redis::pipe()
        .atomic()
        .cmd("DELAYPOP")
        .arg("t")
        .arg("BLOCK")
        .arg(0)
        .cmd("BDELAYPOP")
        .arg("t")
        .arg(0)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (Value::Nil, Value::Nil));
    assert!(start.elapsed() < Duration::from_secs(2));

    // MULTI by hand: QUEUED replies, then EXEC's array.
    let ok: String = redis::cmd("MULTI").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let q: String = redis::cmd("DELAYCARD").arg("t").query(&mut con).unwrap();
    assert_eq!(q, "QUEUED");
    let q: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(q, "QUEUED");
    let exec: Value = redis::cmd("EXEC").query(&mut con).unwrap();
    assert_eq!(
        exec,
        Value::Array(vec![Value::Int(1), Value::SimpleString("PONG".into())])
    );

    // An error at queue time aborts the transaction.
    let _: String = redis::cmd("MULTI").query(&mut con).unwrap();
    let e = query_err(&mut con, &["NOSUCHCOMMAND", "x"]);
    assert_eq!(
        e,
        "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' "
    );
    let q: String = redis::cmd("DELAYADD")
        .arg("t")
        .arg(0)
        .arg("never")
        .query(&mut con)
        .unwrap();
    assert_eq!(q, "QUEUED");
    let e = query_err(&mut con, &["EXEC"]);
    assert_eq!(
        e,
        "EXECABORT Transaction discarded because of previous errors."
    );
    let score: Option<i64> = redis::cmd("DELAYSCORE")
        .arg("t")
        .arg("never")
        .query(&mut con)
        .unwrap();
    assert_eq!(score, None, "an aborted transaction wrote nothing");

    // DISCARD, and the errors of EXEC/DISCARD without MULTI.
    let _: String = redis::cmd("MULTI").query(&mut con).unwrap();
    let _: String = redis::cmd("DELAYADD")
        .arg("t")
        .arg(0)
        .arg("discarded")
        .query(&mut con)
        .unwrap();
    let ok: String = redis::cmd("DISCARD").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(query_err(&mut con, &["EXEC"]), "ERR EXEC without MULTI");
    assert_eq!(
        query_err(&mut con, &["DISCARD"]),
        "ERR DISCARD without MULTI"
    );
    let _: String = redis::cmd("MULTI").query(&mut con).unwrap();
    assert_eq!(
        query_err(&mut con, &["MULTI"]),
        "ERR MULTI calls can not be nested"
    );
    let _: String = redis::cmd("DISCARD").query(&mut con).unwrap();
    let card: i64 = redis::cmd("DELAYCARD").arg("t").query(&mut con).unwrap();
    assert_eq!(card, 1, "discarded commands did not run");
}

#[test]
fn pipeline_error_keeps_reply_order() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());
    // An error in the middle of a pipeline answers only that command, in
    // its place: replies come back in request order.
    let replies: Vec<Value> = redis::pipe()
        .cmd("DELAYADD")
        .arg("p2")
        .arg(1000)
        .arg("a")
        .cmd("DELAYADD")
        .arg("p2")
        .arg("notanumber")
        .arg("b")
        .cmd("DELAYCARD")
        .arg("p2")
        .ignore_errors()
        .query(&mut con)
        .unwrap();
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0], Value::Int(1));
    match &replies[1] {
        Value::ServerError(e) => assert_eq!(
            format!("{} {}", e.code(), e.details().unwrap_or("")),
            "ERR value is not an integer or out of range"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(replies[2], Value::Int(1));

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn error_texts_match_redis() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());
    let cases: &[(&[&str], &str)] = &[
        (
            &["FOO", "a", "b"],
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
        ),
        (
            &["foo"],
            "ERR unknown command 'foo', with args beginning with: ",
        ),
        (
            &["DELAYADD", "q"],
            "ERR wrong number of arguments for 'delayadd' command",
        ),
        (
            &["delaypop"],
            "ERR wrong number of arguments for 'delaypop' command",
        ),
        (
            &["DELAYCARD", "a", "b"],
            "ERR wrong number of arguments for 'delaycard' command",
        ),
        (
            &["DELAYSCORE", "q"],
            "ERR wrong number of arguments for 'delayscore' command",
        ),
        (
            &["BDELAYPOP", "q"],
            "ERR wrong number of arguments for 'bdelaypop' command",
        ),
        (
            &["DELAYADD", "q", "soon", "a"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["DELAYADD", "q", "1.5", "a"],
            "ERR value is not an integer or out of range",
        ),
        (&["DELAYADD", "q", "1", "a", "2"], "ERR syntax error"),
        (
            &["DELAYADD", "q", "NX", "XX", "1", "a"],
            "ERR XX and NX options at the same time are not compatible",
        ),
        (&["DELAYPOP", "q", "BOGUS"], "ERR syntax error"),
        (&["DELAYPOP", "q", "COUNT"], "ERR syntax error"),
        (
            &["DELAYPOP", "q", "COUNT", "x"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["DELAYPOP", "q", "COUNT", "-1"],
            "ERR value is out of range, must be positive",
        ),
        (&["DELAYPOP", "q", "BLOCK", "-1"], "ERR timeout is negative"),
        // BLOCK takes milliseconds, as XREAD BLOCK does: XREAD's text.
        (
            &["DELAYPOP", "q", "BLOCK", "1.5"],
            "ERR timeout is not an integer or out of range",
        ),
        (
            &["DELAYPOP", "q", "BLOCK", "abc"],
            "ERR timeout is not an integer or out of range",
        ),
        (
            &["DELAYRANGE", "q", "a", "1"],
            "ERR value is not an integer or out of range",
        ),
        (&["DELAYRANGE", "q", "0", "1", "BOGUS"], "ERR syntax error"),
        (
            &["BDELAYPOP", "q", "abc"],
            "ERR timeout is not a float or out of range",
        ),
        (&["BDELAYPOP", "q", "-1"], "ERR timeout is negative"),
        (
            &["CLIENT", "BOGUS"],
            "ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.",
        ),
        (&["SELECT", "1"], "ERR DB index is out of range"),
        (
            &["SELECT", "x"],
            "ERR value is not an integer or out of range",
        ),
        (&["HELLO", "4"], "NOPROTO unsupported protocol version"),
        (
            &["AUTH", "pw"],
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
    ];
    let mut failures = Vec::new();
    for (args, want) in cases {
        let got = query_err(&mut con, args);
        if got != *want {
            failures.push(format!("{args:?}\n   got: {got:?}\n  want: {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Errors do not break the connection.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn generic_commands() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let echo: Vec<u8> = redis::cmd("PING").arg("hi").query(&mut con).unwrap();
    assert_eq!(echo, b"hi");
    let echo: Vec<u8> = redis::cmd("ECHO")
        .arg(b"a\x00b".as_slice())
        .query(&mut con)
        .unwrap();
    assert_eq!(echo, b"a\x00b");
    let ok: String = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
    assert_eq!(ok, "OK");

    let _: i64 = redis::cmd("DELAYADD")
        .arg("k1")
        .arg(100_000)
        .arg("m")
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("DELAYADD")
        .arg("k2")
        .arg(100_000)
        .arg("m")
        .query(&mut con)
        .unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("EXISTS")
        .arg("k1")
        .arg("k2")
        .arg("k3")
        .arg("k1")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 3, "EXISTS counts repeated keys, as Redis does");
    let t: String = redis::cmd("TYPE").arg("k1").query(&mut con).unwrap();
    assert_eq!(t, "delayqueue");
    let t: String = redis::cmd("TYPE").arg("nokey").query(&mut con).unwrap();
    assert_eq!(t, "none");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("k*").query(&mut con).unwrap();
    keys.sort();
    assert_eq!(keys, ["k1", "k2"]);
    let (cursor, mut keys): (String, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("k*")
        .arg("COUNT")
        .arg(100)
        .query(&mut con)
        .unwrap();
    keys.sort();
    assert_eq!(cursor, "0");
    assert_eq!(keys, ["k1", "k2"]);
    let n: i64 = redis::cmd("DEL")
        .arg("k1")
        .arg("nokey")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("DELAYCARD").arg("k1").query(&mut con).unwrap();
    assert_eq!(n, 0);
    let ok: String = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 0);

    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(&mut con).unwrap();
    let now = now_ms() as i64 / 1000;
    assert!((secs - now).abs() <= 2, "TIME {secs} vs {now}");
    assert!((0..1_000_000).contains(&micros));

    let ok: String = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("rs-test")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, "rs-test");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert!(id > 0);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert!(list.contains("name=rs-test"), "{list}");
    assert!(list.contains(&format!("id={id} ")), "{list}");

    let cfg: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut con)
        .unwrap();
    assert_eq!(cfg.get("maxclients").map(String::as_str), Some("10000"));
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    for field in ["redis_version:", "connected_clients:", "loading:0"] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let n: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert!(n > 20);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("BDELAYPOP")
        .arg("a")
        .arg("b")
        .arg("0")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn resp3_hello_and_replies() {
    let s = Server::start(&[]);

    // HELLO 3 with redis-rs: a map with the fields clients look at.
    let mut con = connect(&s.url());
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    let Value::Map(fields) = hello else {
        panic!("HELLO 3 must reply with a map, got {hello:?}")
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == Value::BulkString(k.as_bytes().to_vec()))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("HELLO lacks {k}: {fields:?}"))
    };
    assert_eq!(get("server"), Value::BulkString(b"redis".to_vec()));
    assert_eq!(get("proto"), Value::Int(3));
    assert_eq!(get("mode"), Value::BulkString(b"standalone".to_vec()));
    assert_eq!(get("role"), Value::BulkString(b"master".to_vec()));
    assert_eq!(get("modules"), Value::Array(vec![]));
    assert!(matches!(get("id"), Value::Int(i) if i > 0));
    let Value::BulkString(v) = get("version") else {
        panic!("version must be a bulk string")
    };
    assert!(v.starts_with(b"7."), "{}", String::from_utf8_lossy(&v));

    // A RESP3 connection through the URL: redis-rs sends HELLO 3 itself.
    let mut con3 = connect(&format!("{}?protocol=resp3", s.url()));
    let info: Value = redis::cmd("DELAYINFO").arg("q").query(&mut con3).unwrap();
    assert!(
        matches!(&info, Value::Map(m) if DELAYINFO_FIELDS.iter().all(|f| m.iter().any(|(k, _)| *k == Value::BulkString(f.as_bytes().to_vec())))),
        "DELAYINFO in RESP3 is a map with every documented field: {info:?}"
    );
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(100_000)
        .arg("a")
        .query(&mut con3)
        .unwrap();
    let range: Value = redis::cmd("DELAYRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut con3)
        .unwrap();
    let Value::Array(items) = &range else {
        panic!("{range:?}")
    };
    assert_eq!(items.len(), 1, "RESP3 nests [member, due] pairs: {range:?}");
    assert!(
        matches!(&items[0], Value::Array(p) if p.len() == 2),
        "{range:?}"
    );
    let score: Value = redis::cmd("DELAYSCORE")
        .arg("q")
        .arg("nope")
        .query(&mut con3)
        .unwrap();
    assert_eq!(score, Value::Nil);
    let popped: Value = redis::cmd("DELAYPOP")
        .arg("q")
        .arg("BLOCK")
        .arg(50)
        .query(&mut con3)
        .unwrap();
    assert_eq!(popped, Value::Nil);

    // Byte for byte over a raw socket: RESP3 framing of the replies.
    let raw = s.raw();
    let mut w = raw.try_clone().unwrap();
    let mut r = BufReader::new(raw);
    let mut ask = |req: &[u8]| {
        w.write_all(req).unwrap();
        String::from_utf8_lossy(&read_reply(&mut r)).into_owned()
    };
    let hello = ask(b"HELLO 3\r\n");
    assert!(hello.starts_with("%7\r\n"), "{hello:?}");
    assert!(
        hello.contains("$5\r\nproto\r\n:3\r\n"),
        "proto must be an integer: {hello:?}"
    );
    assert!(hello.contains("$7\r\nmodules\r\n*0\r\n"), "{hello:?}");
    assert_eq!(ask(b"DELAYSCORE q nope\r\n"), "_\r\n");
    assert_eq!(ask(b"DELAYPOP q BLOCK 10\r\n"), "_\r\n");
    assert_eq!(ask(b"BDELAYPOP q 0.01\r\n"), "_\r\n");
    assert_eq!(ask(b"DELAYPOP q\r\n"), "*0\r\n");
    let info = ask(b"DELAYINFO nothing\r\n");
    assert!(info.starts_with('%'), "{info:?}");
    for f in DELAYINFO_FIELDS {
        assert!(
            info.contains(&format!("${}\r\n{f}\r\n", f.len())),
            "{f}: {info:?}"
        );
    }
    assert!(
        info.contains("$11\r\nnext-due-ms\r\n_\r\n"),
        "null next-due-ms in RESP3: {info:?}"
    );
    let cfg = ask(b"CONFIG GET maxclients\r\n");
    assert_eq!(cfg, "%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n");
    // Back to RESP2: nulls and maps are RESP2-shaped again.
    assert!(ask(b"HELLO 2\r\n").starts_with("*14\r\n"));
    assert_eq!(ask(b"DELAYSCORE q nope\r\n"), "$-1\r\n");
    assert_eq!(ask(b"DELAYPOP q BLOCK 10\r\n"), "*-1\r\n");
    assert_eq!(ask(b"BDELAYPOP q 0.01\r\n"), "*-1\r\n");
    let info = ask(b"DELAYINFO nothing\r\n");
    assert!(info.starts_with('*'), "{info:?}");
    for f in DELAYINFO_FIELDS {
        assert!(
            info.contains(&format!("${}\r\n{f}\r\n", f.len())),
            "{f}: {info:?}"
        );
    }
    assert!(info.contains("$11\r\nnext-due-ms\r\n$-1\r\n"), "{info:?}");
}

#[test]
fn blocked_client_that_disconnects_loses_nothing() {
    let s = Server::start(&[]);
    // A consumer blocks, then goes away before anything is due.
    let mut raw = s.raw();
    raw.write_all(b"DELAYPOP gone BLOCK 0\r\nBDELAYPOP gone 0\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(raw);
    std::thread::sleep(Duration::from_millis(100));
    let mut con = connect(&s.url());
    let due = now_ms() + 200;
    let n: i64 = redis::cmd("DELAYADD")
        .arg("gone")
        .arg("AT")
        .arg(due)
        .arg("m")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    // The member goes to a live consumer, not to the departed one.
    let got: Vec<String> = redis::cmd("DELAYPOP")
        .arg("gone")
        .arg("BLOCK")
        .arg(3_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["m"]);
    assert!(now_ms() >= due);
    let card: i64 = redis::cmd("DELAYCARD").arg("gone").query(&mut con).unwrap();
    assert_eq!(card, 0);
}

#[test]
fn delivery_counts_retries_and_dead_letter_queue() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());
    let n: i64 = redis::cmd("DELAYADD")
        .arg("work")
        .arg(0)
        .arg("job")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let pop = |con: &mut Connection, block: Option<u64>| -> Value {
        let mut c = redis::cmd("DELAYPOP");
        c.arg("work")
            .arg("LEASE")
            .arg(200)
            .arg("RETRIES")
            .arg(2)
            .arg("DEADLETTER")
            .arg("work:dead")
            .arg("WITHCOUNTS");
        if let Some(ms) = block {
            c.arg("BLOCK").arg(ms);
        }
        c.query(con).unwrap()
    };
    // WITHCOUNTS: [member, deliveries] (flat in RESP2), this delivery included.
    let pair = |m: &str, n: i64| Value::Array(vec![Value::BulkString(m.into()), Value::Int(n)]);
    assert_eq!(pop(&mut con, None), pair("job", 1));
    let lease_end: i64 = redis::cmd("DELAYSCORE")
        .arg("work")
        .arg("job")
        .query(&mut con)
        .unwrap();
    assert_eq!(pop(&mut con, Some(3_000)), pair("job", 2));
    assert!(
        now_ms() >= lease_end as u64,
        "redelivered before the lease ended"
    );
    // Delivered twice without an ack: when the second lease ends it moves to
    // the dead-letter queue instead of a third delivery.
    let lease_end: i64 = redis::cmd("DELAYSCORE")
        .arg("work")
        .arg("job")
        .query(&mut con)
        .unwrap();
    while now_ms() < lease_end as u64 + 300 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pop(&mut con, None), Value::Array(vec![]));
    let card: i64 = redis::cmd("DELAYCARD").arg("work").query(&mut con).unwrap();
    assert_eq!(card, 0);
    let card: i64 = redis::cmd("DELAYCARD")
        .arg("work:dead")
        .query(&mut con)
        .unwrap();
    assert_eq!(card, 1);
    let info: HashMap<String, Value> = redis::cmd("DELAYINFO").arg("work").query(&mut con).unwrap();
    assert_eq!(info.get("dead-lettered"), Some(&Value::Int(1)), "{info:?}");
    assert_eq!(info.get("expired-leases"), Some(&Value::Int(2)), "{info:?}");
    assert_eq!(info.get("added"), Some(&Value::Int(1)), "{info:?}");
    // The dead letter is due at once in its queue.
    let dead: Vec<String> = redis::cmd("DELAYPOP")
        .arg("work:dead")
        .query(&mut con)
        .unwrap();
    assert_eq!(dead, ["job"]);

    assert_eq!(
        query_err(&mut con, &["DELAYPOP", "work", "RETRIES", "2"]),
        "ERR RETRIES and DEADLETTER go together, and need LEASE"
    );
    assert_eq!(
        query_err(
            &mut con,
            &["DELAYPOP", "work", "LEASE", "10", "RETRIES", "2"]
        ),
        "ERR RETRIES and DEADLETTER go together, and need LEASE"
    );

    // RESP3 nests the pairs, as ZRANGE WITHSCORES does.
    let mut con3 = connect(&format!("{}?protocol=resp3", s.url()));
    let _: i64 = redis::cmd("DELAYADD")
        .arg("w3")
        .arg(0)
        .arg("a")
        .query(&mut con3)
        .unwrap();
    let got: Value = redis::cmd("DELAYPOP")
        .arg("w3")
        .arg("WITHCOUNTS")
        .query(&mut con3)
        .unwrap();
    assert_eq!(got, Value::Array(vec![pair("a", 1)]));
}

#[test]
fn blocked_pop_keeps_waiting_when_its_member_is_dead_lettered() {
    let s = Server::start(&[]);
    let mut con = connect(&s.url());
    let _: i64 = redis::cmd("DELAYADD")
        .arg("x")
        .arg(0)
        .arg("j")
        .query(&mut con)
        .unwrap();
    let got: Vec<String> = redis::cmd("DELAYPOP")
        .arg("x")
        .arg("LEASE")
        .arg(200)
        .arg("RETRIES")
        .arg(1)
        .arg("DEADLETTER")
        .arg("x:dead")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["j"]);
    // When the lease ends, j goes to x:dead, not to this consumer: a BLOCK
    // pop must go on waiting and answer null at its timeout, never an
    // empty array (a blocking pop delivers or times out).
    let start = Instant::now();
    let got: Value = redis::cmd("DELAYPOP")
        .arg("x")
        .arg("LEASE")
        .arg(200)
        .arg("RETRIES")
        .arg(1)
        .arg("DEADLETTER")
        .arg("x:dead")
        .arg("BLOCK")
        .arg(1_000)
        .query(&mut con)
        .unwrap();
    let waited = start.elapsed();
    assert_eq!(
        got,
        Value::Nil,
        "DELAYPOP ... BLOCK 1000 answered after {waited:?}"
    );
    assert!(waited >= Duration::from_millis(990), "{waited:?}");
    let dead: i64 = redis::cmd("DELAYCARD")
        .arg("x:dead")
        .query(&mut con)
        .unwrap();
    assert_eq!(dead, 1);
}
