//! redis-benchmark against the real server: it exits 1 on any error reply
//! or a reply count that does not match, so a clean run means every request
//! got exactly one well-formed reply, in order, also when pipelined.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Bounded, Server, run_bounded};

fn benchmark(bin: &PathBuf, s: &Server, args: &[&str]) -> Bounded {
    let mut c = Command::new(bin);
    c.args(["-h", "127.0.0.1", "-p", &s.port.to_string()])
        .args(args);
    run_bounded(&mut c, None, Duration::from_secs(90))
}

/// Asserts a clean run: exit status 0, no error or warning printed.
fn assert_clean(out: &Bounded, what: &str) {
    assert!(out.success(), "{what} failed:\n{}", out.describe());
    let all = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    for bad in ["error", "warning", "could not"] {
        assert!(
            !all.contains(bad),
            "{what} printed {bad:?}:\n{}",
            out.describe()
        );
    }
}

fn delaycard(s: &Server, key: &str) -> i64 {
    let client = redis::Client::open(s.url()).unwrap();
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    redis::cmd("DELAYCARD").arg(key).query(&mut con).unwrap()
}

#[test]
fn delayadd_with_random_args() {
    let Some(bin) =
        crate::harness::require_tool("redis-benchmark", "apt-get install -y redis-tools")
    else {
        return;
    };
    let s = Server::start(&[]);
    // __rand_int__ is sent with leading zeros (000000054321).
    let out = benchmark(
        &bin,
        &s,
        &[
            "-r",
            "20000",
            "-n",
            "50000",
            "-q",
            "DELAYADD",
            "q",
            "__rand_int__",
            "m:__rand_int__",
        ],
    );
    assert_clean(&out, "redis-benchmark DELAYADD");
    assert!(
        out.stdout.contains("requests per second"),
        "{}",
        out.describe()
    );
    let card = delaycard(&s, "q");
    // 50000 adds over 20000 possible members: about 18,400 distinct.
    assert!(
        (15_000..=20_000).contains(&card),
        "50000 adds of 20000 random members left DELAYCARD {card}"
    );
}

#[test]
fn delayadd_pipelined_many_clients() {
    let Some(bin) =
        crate::harness::require_tool("redis-benchmark", "apt-get install -y redis-tools")
    else {
        return;
    };
    let s = Server::start(&[]);
    let out = benchmark(
        &bin,
        &s,
        &[
            "-r",
            "100000",
            "-n",
            "100000",
            "-P",
            "16",
            "-c",
            "50",
            "-q",
            "DELAYADD",
            "pq",
            "__rand_int__",
            "m:__rand_int__",
        ],
    );
    assert_clean(&out, "redis-benchmark -P 16 -c 50 DELAYADD");
    assert!(delaycard(&s, "pq") > 0);
    // Pipelined pops interleaved with adds (nothing is due: empty arrays).
    let out = benchmark(
        &bin,
        &s,
        &[
            "-n", "20000", "-P", "16", "-c", "10", "-q", "DELAYPOP", "empty", "COUNT", "10",
        ],
    );
    assert_clean(&out, "redis-benchmark -P 16 DELAYPOP");
}

#[test]
fn ping_inline_and_mbulk() {
    let Some(bin) =
        crate::harness::require_tool("redis-benchmark", "apt-get install -y redis-tools")
    else {
        return;
    };
    let s = Server::start(&[]);
    let out = benchmark(&bin, &s, &["-t", "ping", "-n", "20000", "-q"]);
    assert_clean(&out, "redis-benchmark -t ping");
    assert!(out.stdout.contains("PING_INLINE"), "{}", out.describe());
    assert!(out.stdout.contains("PING_MBULK"), "{}", out.describe());
    let out = benchmark(&bin, &s, &["-t", "ping", "-n", "20000", "-P", "32", "-q"]);
    assert_clean(&out, "redis-benchmark -t ping -P 32");
}
