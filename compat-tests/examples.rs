//! Runs the scripts of redis-cli-examples/ against a fresh server and checks
//! what they print, so the examples keep working as the server changes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Bounded, Server, now_ms, require_tool, run_bounded};

struct Env {
    cli: PathBuf,
    bash: PathBuf,
    server: Server,
}

fn setup() -> Option<Env> {
    let cli = require_tool("redis-cli", "apt-get install -y redis-tools")?;
    let bash = require_tool("bash", "apt-get install -y bash")?;
    Some(Env {
        cli,
        bash,
        server: Server::start(&[]),
    })
}

impl Env {
    /// Runs one example script with the server's port and extra variables.
    fn run(&self, script: &str, vars: &[(&str, &str)]) -> Bounded {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("redis-cli-examples")
            .join(script);
        let mut c = Command::new(&self.bash);
        c.arg(&path)
            .env("DELAYD_HOST", "127.0.0.1")
            .env("DELAYD_PORT", self.server.port.to_string())
            .env("REDIS_CLI", &self.cli);
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = run_bounded(&mut c, None, Duration::from_secs(30));
        assert!(out.success(), "{script} failed:\n{}", out.describe());
        assert!(
            out.stderr.is_empty(),
            "{script} wrote to stderr:\n{}",
            out.describe()
        );
        out
    }

    fn con(&self) -> redis::Connection {
        let client = redis::Client::open(self.server.url()).unwrap();
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        con
    }
}

/// Checks that `want` appear as lines of `out`, in this order (other lines
/// may come between). In a wanted line `<int>` stands for an integer, and
/// leading blanks are ignored.
fn expect_lines(script: &str, out: &str, want: &[&str]) {
    let lines: Vec<&str> = out.lines().collect();
    let mut at = 0;
    for w in want {
        match lines[at..].iter().position(|l| line_matches(l, w)) {
            Some(i) => at += i + 1,
            None => panic!("{script}: expected line {w:?} (after line {at}) in output:\n{out}"),
        }
    }
}

fn line_matches(line: &str, pattern: &str) -> bool {
    // Leading blanks do not count: redis-cli pads indexes to a width.
    let (line, pattern) = (line.trim_start(), pattern.trim_start());
    let parts: Vec<&str> = pattern.split("<int>").collect();
    if parts.len() == 1 {
        return line == pattern;
    }
    let mut rest = line;
    for (i, p) in parts.iter().enumerate() {
        let Some(r) = rest.strip_prefix(p) else {
            return false;
        };
        rest = r;
        if i + 1 < parts.len() {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            rest = &rest[n..];
        }
    }
    rest.is_empty()
}

#[test]
fn producer_then_consumer() {
    let Some(env) = setup() else { return };
    let before = now_ms();
    let out = env.run("producer.sh", &[]);
    expect_lines(
        "producer.sh",
        &out.stdout,
        &[
            "> DELAYADD emails 1000 welcome:alice 2000 welcome:bob 3000 welcome:carol",
            "3",
            "> DELAYADD emails AT <int> digest:weekly",
            "1",
            "> DELAYADD emails NX 60000 welcome:alice 60000 reminder:dave",
            "1",
            "> DELAYCARD emails",
            "5",
        ],
    );
    let mut con = env.con();
    let due: u64 = redis::cmd("DELAYSCORE")
        .arg("emails")
        .arg("digest:weekly")
        .query(&mut con)
        .unwrap();
    assert!(
        due >= before + 2_400 && due <= now_ms() + 2_600,
        "AT now+2500 gave {due} (started at {before})"
    );
    let urgent: i64 = redis::cmd("DELAYADD")
        .arg("emails:urgent")
        .arg(0)
        .arg("page:oncall")
        .query(&mut con)
        .unwrap();
    assert_eq!(urgent, 1);

    let out = env.run("consumer.sh", &[("WAIT_MS", "4000")]);
    expect_lines(
        "consumer.sh",
        &out.stdout,
        &[
            "job 1: welcome:alice",
            "job 2: welcome:bob",
            "job 3: digest:weekly",
            "job 4: welcome:carol",
            "# BDELAYPOP emails emails:urgent 4",
            "bdelaypop: emails:urgent page:oncall <int>",
            "consumed 4 job(s) with DELAYPOP BLOCK",
        ],
    );
    // Only reminder:dave (due in a minute) is left: the next run ends on its
    // first empty wait.
    let out = env.run("consumer.sh", &[("WAIT_MS", "300")]);
    expect_lines(
        "consumer.sh (empty)",
        &out.stdout,
        &[
            "nothing came due within 300 ms",
            "bdelaypop: timed out",
            "consumed 0 job(s) with DELAYPOP BLOCK",
        ],
    );
    let left: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("emails")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(left, ["reminder:dave"]);
}

#[test]
fn lease_ack() {
    let Some(env) = setup() else { return };
    let out = env.run("lease-ack.sh", &[("LEASE_MS", "500")]);
    expect_lines(
        "lease-ack.sh",
        &out.stdout,
        &[
            "> DELAYADD payments 0 charge:42",
            "1",
            "> DELAYPOP payments LEASE 500",
            "charge:42",
            "> DELAYCARD payments",
            "1",
            "> DELAYPOP payments",
            "",
            "> DELAYPOP payments LEASE 500 BLOCK 1500 WITHCOUNTS",
            "charge:42",
            "2",
            "> DELAYINFO payments",
            "pending\t1",
            "ready\t0",
            "leased\t1",
            "next-due-ms\t<int>",
            "oldest-ready-age-ms\t0",
            "added\t1",
            "popped\t2",
            "acked\t0",
            "expired-leases\t1",
            "> DELAYACK payments charge:42",
            "1",
            "> DELAYCARD payments",
            "0",
        ],
    );
}

#[test]
fn cancel() {
    let Some(env) = setup() else { return };
    let out = env.run("cancel.sh", &[]);
    expect_lines(
        "cancel.sh",
        &out.stdout,
        &[
            "> DELAYADD reminders 600000 order:1001 1200000 order:1002",
            "2",
            "> DELAYSCORE reminders order:1001",
            "<int>",
            "> DELAYREM reminders order:1001",
            "1",
            "> DELAYREM reminders order:1001",
            "0",
            "> DELAYSCORE reminders order:1001",
            "",
            "> DELAYADD reminders XX CH 1800000 order:1002",
            "1",
            "> DELAYCARD reminders",
            "1",
            "> DEL reminders",
            "1",
        ],
    );
}

#[test]
fn inspect() {
    let Some(env) = setup() else { return };
    let out = env.run("inspect.sh", &[]);
    expect_lines(
        "inspect.sh",
        &out.stdout,
        &[
            "> DELAYADD inspect-demo 0 now:a 30000 later:b 60000 later:c 90000 later:d",
            "4",
            "> DELAYCARD inspect-demo",
            "4",
            "> DELAYRANGE inspect-demo 0 1 WITHSCORES",
            "now:a",
            "<int>",
            "later:b",
            "<int>",
            "> DELAYRANGE inspect-demo -1 -1",
            "later:d",
            "> DELAYSCORE inspect-demo later:c",
            "<int>",
            "  <int># \"pending\" => (integer) 4",
            "  <int># \"ready\" => (integer) 1",
            "  <int># \"leased\" => (integer) 0",
            "  <int># \"next-due-ms\" => (integer) <int>",
            "  <int># \"oldest-ready-age-ms\" => (integer) <int>",
            "  <int># \"added\" => (integer) 4",
            "> DEL inspect-demo",
            "1",
        ],
    );
}

#[test]
fn line_patterns() {
    assert!(line_matches("abc 12", "abc <int>"));
    assert!(!line_matches("abc x", "abc <int>"));
    assert!(!line_matches("abc 12x", "abc <int>"));
    assert!(line_matches("", ""));
    assert!(line_matches(" 1# \"a\"", "  <int># \"a\""));
}
