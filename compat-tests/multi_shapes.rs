//! `MULTI`/`EXEC` reply shapes against a real `redis-server`.
//!
//! Every delay command and generic command is queued in a transaction on
//! delayd, and its Redis analogue in a transaction on redis-server, in RESP2
//! and RESP3; the `EXEC` replies are compared element by element. Where the
//! values are equal by construction (nothing due, missing members, counts)
//! the bytes must be equal; where only the values differ (TIME, TYPE's name)
//! the shapes must be equal; where delayd differs from Redis by design (due
//! times are integers, not float scores) delayd's documented shape is
//! asserted and the difference is named in the row.
//!
//! Clients read these shapes literally: phpredis turns a nested `$-1` into
//! `false` where Redis's `*-1` gives `null`, so a blocking pop that found
//! nothing inside a transaction must be `*-1` at any depth.

use crate::harness::{Conn, RedisServer, Server, servers, show};

/// The shape of one raw reply and its length in bytes: `+ - : , _ # $ =`
/// for scalars, `$-1` and `*-1` for the RESP2 nulls, `[..]` for arrays,
/// `{k:v ..}` for maps, `~[..]` for sets. Values are left out.
fn shape(b: &[u8]) -> (String, usize) {
    let mut at = 0;
    let s = shape_at(b, &mut at);
    (s, at)
}

fn shape_at(b: &[u8], at: &mut usize) -> String {
    let rest = &b[*at..];
    let eol = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("no line end in {}", show(rest)));
    let marker = rest[0];
    let body = std::str::from_utf8(&rest[1..eol]).unwrap().to_string();
    let n = || -> i64 { body.parse().unwrap_or_else(|_| panic!("length {body:?}")) };
    *at += eol + 2;
    let mut children =
        |count: i64| -> Vec<String> { (0..count).map(|_| shape_at(b, at)).collect() };
    match marker {
        b'$' | b'=' if n() < 0 => "$-1".to_string(),
        b'*' if n() < 0 => "*-1".to_string(),
        b'$' | b'=' => {
            *at += n() as usize + 2;
            (marker as char).to_string()
        }
        b'*' => format!("[{}]", children(n()).join(" ")),
        b'~' => format!("~[{}]", children(n()).join(" ")),
        b'%' => {
            let kv: Vec<String> = children(n() * 2).chunks(2).map(|p| p.join(":")).collect();
            format!("{{{}}}", kv.join(" "))
        }
        b'+' | b'-' | b':' | b',' | b'_' | b'#' => (marker as char).to_string(),
        m => panic!("unexpected reply type {:?} in {}", m as char, show(rest)),
    }
}

/// The elements of an `EXEC` reply, raw.
fn exec_elements(exec: &[u8]) -> Vec<&[u8]> {
    assert_eq!(exec[0], b'*', "EXEC reply is not an array: {}", show(exec));
    let eol = exec.windows(2).position(|w| w == b"\r\n").unwrap();
    let n: usize = std::str::from_utf8(&exec[1..eol]).unwrap().parse().unwrap();
    let mut at = eol + 2;
    let mut out = Vec::new();
    for _ in 0..n {
        let (_, len) = shape(&exec[at..]);
        out.push(&exec[at..at + len]);
        at += len;
    }
    assert_eq!(at, exec.len(), "trailing bytes after EXEC's elements");
    out
}

/// How a delayd reply inside `EXEC` must compare with Redis's.
#[derive(Clone, Copy)]
enum Expect {
    /// The same bytes.
    Same,
    /// The same shape; the values differ by construction.
    SameShape,
    /// delayd's own documented shape, in RESP2 and RESP3 (Redis's differs;
    /// the row says why).
    Design(&'static str, &'static str),
}
use Expect::{Design, Same, SameShape};

/// Queues `rows` (delayd command, Redis analogue, expectation) in one
/// transaction on each server and compares the `EXEC` replies.
fn compare_exec(dd: &Server, redis: &RedisServer, rows: &[(&str, &str, Expect)]) {
    for proto in [2u8, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        assert_eq!(d.ask("FLUSHALL"), b"+OK\r\n");
        assert_eq!(r.ask("FLUSHALL"), b"+OK\r\n");
        assert_eq!(d.ask("MULTI"), b"+OK\r\n");
        assert_eq!(r.ask("MULTI"), b"+OK\r\n");
        for (dc, rc, _) in rows {
            assert_eq!(show(&d.ask(dc)), "+QUEUED\r\n", "delayd queueing {dc}");
            assert_eq!(show(&r.ask(rc)), "+QUEUED\r\n", "redis queueing {rc}");
        }
        let dx = d.ask("EXEC");
        let rx = r.ask("EXEC");
        let (de, re) = (exec_elements(&dx), exec_elements(&rx));
        assert_eq!(de.len(), rows.len(), "RESP{proto} EXEC: {}", show(&dx));
        assert_eq!(re.len(), rows.len(), "RESP{proto} EXEC: {}", show(&rx));
        for (((dc, rc, expect), dv), rv) in rows.iter().zip(de).zip(re) {
            let ctx = format!(
                "RESP{proto}: delayd {dc} -> {:?}, redis {rc} -> {:?}",
                show(dv),
                show(rv)
            );
            match *expect {
                Same => assert_eq!(show(dv), show(rv), "{ctx}"),
                SameShape => assert_eq!(shape(dv).0, shape(rv).0, "{ctx}"),
                Design(resp2, resp3) => {
                    let want = if proto == 2 { resp2 } else { resp3 };
                    assert_eq!(shape(dv).0, want, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn exec_on_empty_queues_matches_redis() {
    let Some((dd, redis)) = servers() else { return };
    compare_exec(
        &dd,
        &redis,
        &[
            // Blocking pops do not block inside MULTI: nothing due is the
            // timeout reply, the null array (`*-1`, RESP3 `_`).
            ("DELAYPOP e BLOCK 100", "BLPOP e 0.1", Same),
            ("DELAYPOP e COUNT 5 BLOCK 100", "BZPOPMIN e 0.1", Same),
            ("DELAYPOP e BLOCK 0", "BLPOP e 0", Same),
            ("BDELAYPOP e f 0.1", "BZPOPMIN e f 0.1", Same),
            ("BDELAYPOP e 0", "BZPOPMIN e 0", Same),
            // A non-blocking pop with nothing due: the empty array.
            ("DELAYPOP e", "ZPOPMIN e", Same),
            ("DELAYPOP e COUNT 3 WITHCOUNTS", "ZPOPMIN e 3", Same),
            ("DELAYPOP e LEASE 1000", "ZPOPMIN e", Same),
            // A missing member's due time: the null bulk (`$-1`).
            ("DELAYSCORE e m", "ZSCORE e m", Same),
            ("DELAYCARD e", "ZCARD e", Same),
            ("DELAYRANGE e 0 -1", "ZRANGE e 0 -1", Same),
            (
                "DELAYRANGE e 0 -1 WITHSCORES",
                "ZRANGE e 0 -1 WITHSCORES",
                Same,
            ),
            ("DELAYREM e m", "ZREM e m", Same),
            ("DELAYACK e m", "ZREM e m", Same),
            ("DEL e", "DEL e", Same),
            ("UNLINK e f", "UNLINK e f", Same),
            ("EXISTS e", "EXISTS e", Same),
            ("TYPE e", "TYPE e", Same),
            ("DBSIZE", "DBSIZE", Same),
            ("KEYS *", "KEYS *", Same),
            ("SCAN 0", "SCAN 0", Same),
            ("PING", "PING", Same),
            ("PING hi", "PING hi", Same),
            ("ECHO hi", "ECHO hi", Same),
            ("TIME", "TIME", SameShape),
            ("SELECT 0", "SELECT 0", Same),
            ("CLIENT GETNAME", "CLIENT GETNAME", Same),
            ("CLIENT ID", "CLIENT ID", SameShape),
            // An unknown command's entry is the null bulk, not the null array.
            ("COMMAND INFO nosuch", "COMMAND INFO nosuch", Same),
            ("CONFIG GET nosuch", "CONFIG GET nosuch", Same),
            // Redis lowers its maxclients when the file limit is low.
            ("CONFIG GET maxclients", "CONFIG GET maxclients", SameShape),
        ],
    );
}

#[test]
fn exec_on_queues_with_members_matches_redis() {
    let Some((dd, redis)) = servers() else { return };
    compare_exec(
        &dd,
        &redis,
        &[
            ("DELAYADD q 100000 a 200000 b", "ZADD q 1 a 2 b", Same),
            ("DELAYADD q NX CH 100000 a", "ZADD q NX CH 1 a", Same),
            ("DELAYADD q XX CH 150000 a", "ZADD q XX CH 1.5 a", Same),
            // Members that are not due yet: a pop finds nothing.
            ("DELAYPOP q", "ZRANGEBYSCORE q -inf 0", Same),
            ("DELAYPOP q BLOCK 100", "BLPOP q2 0.1", Same),
            ("BDELAYPOP q 0.1", "BZPOPMIN q2 0.1", Same),
            ("DELAYCARD q", "ZCARD q", Same),
            ("DELAYRANGE q 0 -1", "ZRANGE q 0 -1", Same),
            (
                "DELAYRANGE q 5 9 WITHSCORES",
                "ZRANGE q 5 9 WITHSCORES",
                Same,
            ),
            // By design a due time is an integer (Unix ms); a score is a
            // bulk string in RESP2 and a double in RESP3.
            ("DELAYSCORE q a", "ZSCORE q a", Design(":", ":")),
            (
                "DELAYRANGE q 0 0 WITHSCORES",
                "ZRANGE q 0 0 WITHSCORES",
                Design("[$ :]", "[[$ :]]"),
            ),
            ("EXISTS q nokey", "EXISTS q nokey", Same),
            // The type's name differs: `delayqueue`, `zset`.
            ("TYPE q", "TYPE q", SameShape),
            ("DBSIZE", "DBSIZE", Same),
            ("KEYS *", "KEYS *", Same),
            ("DELAYREM q b nope", "ZREM q b nope", Same),
            // A member due now is popped inside the transaction.
            ("DELAYADD d 0 m", "RPUSH d m", Same),
            ("DELAYPOP d BLOCK 100", "LPOP d 1", Same),
            ("DELAYADD d 0 m", "RPUSH d m", Same),
            ("DELAYPOP d COUNT 5", "LPOP d 5", Same),
            ("DELAYADD z 0 m 0 n", "ZADD z 0 m 0 n", Same),
            // WITHCOUNTS pairs a member with its deliveries (an integer)
            // where ZPOPMIN pairs it with its score.
            (
                "DELAYPOP z WITHCOUNTS",
                "ZPOPMIN z 1",
                Design("[$ :]", "[[$ :]]"),
            ),
            // BZPOPMIN's shape with the due time as an integer.
            (
                "BDELAYPOP z 0.1",
                "BZPOPMIN z 0.1",
                Design("[$ $ :]", "[$ $ :]"),
            ),
            ("DEL q z", "DEL q z", Same),
            ("DBSIZE", "DBSIZE", Same),
            // Errors at EXEC time are elements of the reply; the others run.
            ("DELAYPOP q COUNT -1", "ZPOPMIN q -1", Same),
            ("DELAYPOP q COUNT 0", "ZPOPMIN q 0", Same),
            ("DELAYPOP q BLOCK -1", "BLPOP q -1", Same),
            ("BDELAYPOP q x", "BZPOPMIN q x", Same),
            ("DELAYADD q XX NX 1 a", "ZADD q XX NX 1 a", Same),
            // Delays are integer milliseconds, scores floats: the texts
            // differ ("not an integer", "not a valid float").
            ("DELAYADD q soon m", "ZADD q soon m", SameShape),
            ("DELAYCARD q", "ZCARD q", Same),
        ],
    );
}

#[test]
fn transaction_errors_match_redis() {
    let Some((dd, redis)) = servers() else { return };
    for proto in [2u8, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        // Each step: delayd's command, Redis's, and whether the replies'
        // bytes are equal (otherwise only the shape, e.g. an error naming
        // the command).
        let steps: &[(&str, &str, bool)] = &[
            ("EXEC", "EXEC", true),
            ("DISCARD", "DISCARD", true),
            ("MULTI", "MULTI", true),
            ("EXEC", "EXEC", true),
            // Errors at queue time abort the transaction (EXECABORT)...
            ("MULTI", "MULTI", true),
            ("DELAYADD q", "ZADD q", false),
            ("DELAYADD q 0 a", "ZADD q 0 a", true),
            ("EXEC", "EXEC", true),
            ("MULTI", "MULTI", true),
            ("NOSUCH a", "NOSUCH a", true),
            ("EXEC", "EXEC", true),
            // ...and nothing of it ran.
            ("DBSIZE", "DBSIZE", true),
            // A nested MULTI and WATCH are refused without aborting.
            ("MULTI", "MULTI", true),
            ("MULTI", "MULTI", true),
            ("WATCH q", "WATCH q", true),
            ("DELAYPOP q BLOCK 10", "BLPOP q 0.01", true),
            ("EXEC", "EXEC", true),
            ("MULTI", "MULTI", true),
            ("DELAYADD q 0 a", "ZADD q 0 a", true),
            ("DISCARD", "DISCARD", true),
            ("DBSIZE", "DBSIZE", true),
        ];
        for (dc, rc, same) in steps {
            let (dv, rv) = (d.ask(dc), r.ask(rc));
            let ctx = format!(
                "RESP{proto}: delayd {dc} -> {:?}, redis {rc} -> {:?}",
                show(&dv),
                show(&rv)
            );
            if *same {
                assert_eq!(show(&dv), show(&rv), "{ctx}");
            } else {
                assert_eq!(shape(&dv).0, shape(&rv).0, "{ctx}");
            }
        }
    }
}
