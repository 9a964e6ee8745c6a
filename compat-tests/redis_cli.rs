//! redis-cli against the real server (one-shot commands, `-3`, `--pipe`,
//! `--stat`, COMMAND DOCS), and raw-socket tests of the request framing
//! Redis clients rely on: inline commands, pipelining, protocol errors and
//! authentication.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use redis::Value;

use crate::harness::{Bounded, Server, now_ms, read_reply, resp, run_bounded};

fn redis_cli() -> Option<PathBuf> {
    crate::harness::require_tool("redis-cli", "apt-get install -y redis-tools")
}

/// Runs redis-cli with the given arguments against the server.
fn cli(bin: &PathBuf, s: &Server, args: &[&str]) -> Bounded {
    let mut c = Command::new(bin);
    c.args(["-h", "127.0.0.1", "-p", &s.port.to_string()])
        .args(args);
    run_bounded(&mut c, None, Duration::from_secs(15))
}

/// Runs a one-shot redis-cli command that must succeed; returns stdout.
fn cli_ok(bin: &PathBuf, s: &Server, args: &[&str]) -> String {
    let out = cli(bin, s, args);
    assert!(
        out.success(),
        "redis-cli {args:?} failed:\n{}",
        out.describe()
    );
    out.stdout
}

#[test]
fn one_shot_commands() {
    let Some(bin) = redis_cli() else { return };
    let s = Server::start(&[]);
    assert_eq!(cli_ok(&bin, &s, &["PING"]), "PONG\n");
    assert_eq!(
        cli_ok(&bin, &s, &["DELAYADD", "q", "100000", "a", "200000", "b"]),
        "2\n"
    );
    assert_eq!(cli_ok(&bin, &s, &["DELAYCARD", "q"]), "2\n");
    let due: u64 = cli_ok(&bin, &s, &["DELAYSCORE", "q", "a"])
        .trim()
        .parse()
        .expect("DELAYSCORE prints an integer");
    let now = now_ms();
    assert!(due > now + 90_000 && due <= now + 100_000, "{due} vs {now}");
    let out = cli_ok(&bin, &s, &["DELAYRANGE", "q", "0", "-1", "WITHSCORES"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], "a");
    assert_eq!(lines[1], due.to_string());
    assert_eq!(lines[2], "b");
    // The human-readable form (what an interactive user sees).
    let out = cli_ok(&bin, &s, &["--no-raw", "DELAYRANGE", "q", "0", "0"]);
    assert_eq!(out, "1) \"a\"\n");
    assert_eq!(
        cli_ok(&bin, &s, &["--no-raw", "DELAYSCORE", "q", "nope"]),
        "(nil)\n"
    );
    assert_eq!(
        cli_ok(&bin, &s, &["--no-raw", "DELAYPOP", "q"]),
        "(empty array)\n"
    );
    assert_eq!(
        cli_ok(&bin, &s, &["--no-raw", "DELAYPOP", "q", "BLOCK", "50"]),
        "(nil)\n"
    );
    assert_eq!(cli_ok(&bin, &s, &["DELAYREM", "q", "b"]), "1\n");
    assert_eq!(cli_ok(&bin, &s, &["DELAYADD", "q", "0", "now"]), "1\n");
    assert_eq!(cli_ok(&bin, &s, &["DELAYPOP", "q", "COUNT", "10"]), "now\n");
    // Members with spaces and quotes survive the round trip.
    assert_eq!(
        cli_ok(&bin, &s, &["DELAYADD", "sp", "0", "job with \"quotes\""]),
        "1\n"
    );
    assert_eq!(
        cli_ok(&bin, &s, &["--no-raw", "DELAYPOP", "sp"]),
        "1) \"job with \\\"quotes\\\"\"\n"
    );
    // Errors are printed, not fatal to the tool.
    let out = cli(&bin, &s, &["DELAYADD", "q", "x", "m"]);
    assert!(
        out.stdout
            .contains("ERR value is not an integer or out of range"),
        "{}",
        out.describe()
    );
    let out = cli(&bin, &s, &["NOSUCH", "arg"]);
    assert!(
        out.stdout
            .contains("ERR unknown command 'NOSUCH', with args beginning with: 'arg'"),
        "{}",
        out.describe()
    );
    // DELAYINFO is a map; redis-cli prints its pairs.
    let out = cli_ok(&bin, &s, &["DELAYINFO", "q"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 18 && lines.len().is_multiple_of(2), "{out}");
    assert_eq!(lines[0], "pending");
    assert_eq!(lines[1], "1");
}

#[test]
fn resp3_with_dash_3() {
    let Some(bin) = redis_cli() else { return };
    let s = Server::start(&[]);
    // redis-cli -3 sends HELLO 3 first and aborts if the reply is not a map
    // with bulk-string keys.
    let out = cli_ok(&bin, &s, &["-3", "HELLO", "3"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"server redis"), "{out}");
    assert!(lines.contains(&"proto 3"), "{out}");
    assert!(lines.contains(&"mode standalone"), "{out}");
    assert!(lines.contains(&"role master"), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("version 7.")), "{out}");
    assert_eq!(
        cli_ok(&bin, &s, &["-3", "DELAYADD", "q", "100000", "a"]),
        "1\n"
    );
    let out = cli_ok(&bin, &s, &["-3", "--no-raw", "DELAYINFO", "q"]);
    assert!(out.contains("# \"pending\" => (integer) 1\n"), "{out}");
    assert!(out.contains("\"next-due-ms\" => (integer) "), "{out}");
    let out = cli_ok(&bin, &s, &["-3", "--no-raw", "DELAYINFO", "empty"]);
    assert!(out.contains("\"next-due-ms\" => (nil)"), "{out}");
    let out = cli_ok(
        &bin,
        &s,
        &["-3", "--no-raw", "DELAYRANGE", "q", "0", "-1", "WITHSCORES"],
    );
    assert!(out.starts_with("1) 1) \"a\"\n   2) (integer) "), "{out}");
    assert_eq!(
        cli_ok(&bin, &s, &["-3", "--no-raw", "DELAYSCORE", "q", "nope"]),
        "(nil)\n"
    );
    assert_eq!(
        cli_ok(&bin, &s, &["-3", "--no-raw", "BDELAYPOP", "q", "0.05"]),
        "(nil)\n"
    );
}

#[test]
fn pipe_mode_mass_insert() {
    let Some(bin) = redis_cli() else { return };
    let s = Server::start(&[]);
    let n = 20_000;
    let mut input = Vec::new();
    for i in 0..n {
        let delay = (100_000 + i % 1000).to_string();
        let member = format!("job:{i}");
        input.extend(resp(&[
            b"DELAYADD",
            b"mass",
            delay.as_bytes(),
            member.as_bytes(),
        ]));
    }
    // An inline command in the middle, as hand-written files have.
    input.extend_from_slice(b"DELAYADD mass 100000 inline-job\r\n");
    let mut c = Command::new(&bin);
    c.args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "--pipe"]);
    let out = run_bounded(&mut c, Some(input), Duration::from_secs(40));
    assert!(
        out.success(),
        "redis-cli --pipe failed:\n{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains(&format!("errors: 0, replies: {}", n + 1)),
        "{}",
        out.describe()
    );
    assert_eq!(
        cli_ok(&bin, &s, &["DELAYCARD", "mass"]),
        format!("{}\n", n + 1)
    );
}

#[test]
fn pipe_mode_reports_errors() {
    let Some(bin) = redis_cli() else { return };
    let s = Server::start(&[]);
    let mut input = Vec::new();
    input.extend(resp(&[b"DELAYADD", b"q", b"10", b"a"]));
    input.extend(resp(&[b"DELAYADD", b"q", b"soon", b"b"]));
    input.extend(resp(&[b"DELAYADD", b"q", b"10", b"c"]));
    let mut c = Command::new(&bin);
    c.args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "--pipe"]);
    let out = run_bounded(&mut c, Some(input), Duration::from_secs(40));
    assert!(
        out.stdout.contains("errors: 1, replies: 3"),
        "{}",
        out.describe()
    );
    assert_eq!(cli_ok(&bin, &s, &["DELAYCARD", "q"]), "2\n");
}

#[test]
fn command_docs_for_redis_cli_hints() {
    let Some(bin) = redis_cli() else { return };
    let s = Server::start(&[]);
    let out = cli_ok(&bin, &s, &["COMMAND", "DOCS", "delayadd"]);
    assert!(out.starts_with("delayadd\n"), "{out}");
    assert!(out.contains("\nsummary\nSchedules members"), "{out}");
    assert!(out.contains("\ngroup\n"), "{out}");
    for name in [
        "delaypop",
        "bdelaypop",
        "delayack",
        "delayrem",
        "delayscore",
        "delaycard",
        "delayrange",
        "delayinfo",
    ] {
        let out = cli_ok(&bin, &s, &["COMMAND", "DOCS", name]);
        assert!(
            out.starts_with(&format!("{name}\nsummary\n")),
            "{name}: {out}"
        );
    }
    // The whole table, as interactive redis-cli fetches it on start.
    let all = cli_ok(&bin, &s, &["COMMAND", "DOCS"]);
    assert!(all.contains("delaypop\n"), "{all}");

    // The structure hiredis and redis-cli's hint code assert on.
    let client = redis::Client::open(s.url()).unwrap();
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let docs: Value = redis::cmd("COMMAND").arg("DOCS").query(&mut con).unwrap();
    let Value::Array(flat) = docs else {
        panic!("COMMAND DOCS in RESP2 is a flat array: {docs:?}")
    };
    assert!(flat.len() >= 2 * 20, "{} entries", flat.len() / 2);
    for pair in flat.chunks(2) {
        let Value::BulkString(name) = &pair[0] else {
            panic!("command name must be a bulk string: {:?}", pair[0])
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let doc = fields(&pair[1], &name);
        for key in ["summary", "group"] {
            assert!(
                matches!(
                    doc.iter().find(|(k, _)| k == key),
                    Some((_, Value::BulkString(_)))
                ),
                "{name}: {key} must be a bulk string: {doc:?}"
            );
        }
        if let Some((_, args)) = doc.iter().find(|(k, _)| k == "arguments") {
            check_args(args, &name);
        }
    }

    // COMMAND entries have the 10 elements go-redis insists on.
    let table: Value = redis::cmd("COMMAND").query(&mut con).unwrap();
    let Value::Array(entries) = table else {
        panic!("{table:?}")
    };
    for e in &entries {
        assert!(
            matches!(e, Value::Array(items) if items.len() == 10),
            "COMMAND entry without 10 elements: {e:?}"
        );
    }
}

/// A RESP2 flat map (`[k, v, k, v]`) as pairs with string keys.
fn fields(v: &Value, ctx: &str) -> Vec<(String, Value)> {
    let Value::Array(items) = v else {
        panic!("{ctx}: expected a flat map, got {v:?}")
    };
    assert!(items.len().is_multiple_of(2), "{ctx}: odd map {v:?}");
    items
        .chunks(2)
        .map(|kv| match &kv[0] {
            Value::BulkString(k) => (String::from_utf8_lossy(k).into_owned(), kv[1].clone()),
            other => panic!("{ctx}: map key must be a bulk string: {other:?}"),
        })
        .collect()
}

fn check_args(args: &Value, ctx: &str) {
    let Value::Array(list) = args else {
        panic!("{ctx}: arguments must be an array: {args:?}")
    };
    for a in list {
        let f = fields(a, ctx);
        let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let Some(Value::BulkString(ty)) = get("type") else {
            panic!("{ctx}: argument without a type: {f:?}")
        };
        let ty = String::from_utf8_lossy(&ty).into_owned();
        assert!(
            [
                "string",
                "integer",
                "double",
                "key",
                "pattern",
                "unix-time",
                "pure-token",
                "oneof",
                "block"
            ]
            .contains(&ty.as_str()),
            "{ctx}: argument type {ty:?}"
        );
        assert!(
            matches!(get("name"), Some(Value::BulkString(_))),
            "{ctx}: argument name: {f:?}"
        );
        if let Some(flags) = get("flags") {
            let Value::Array(flags) = flags else {
                panic!("{ctx}: flags must be an array: {f:?}")
            };
            for fl in flags {
                assert!(
                    matches!(fl, Value::SimpleString(_)),
                    "{ctx}: argument flags are simple strings: {fl:?}"
                );
            }
        }
        if ty == "oneof" || ty == "block" {
            let sub = get("arguments").unwrap_or_else(|| panic!("{ctx}: {ty} without arguments"));
            check_args(&sub, ctx);
        }
    }
}

#[test]
fn stat_mode_runs() {
    let Some(bin) = redis_cli() else { return };
    let Some(stdbuf) = crate::harness::require_tool("stdbuf", "apt-get install -y coreutils")
    else {
        return;
    };
    let s = Server::start(&[]);
    let _ = cli_ok(&bin, &s, &["DELAYADD", "q", "100000", "a"]);
    // --stat never ends by itself: let it print a few rows, then stop it.
    let mut c = Command::new(stdbuf);
    c.arg("-o0").arg(&bin).args([
        "-h",
        "127.0.0.1",
        "-p",
        &s.port.to_string(),
        "--stat",
        "-i",
        "0.2",
    ]);
    let out = run_bounded(&mut c, None, Duration::from_millis(1500));
    assert!(out.status.is_none(), "--stat exited:\n{}", out.describe());
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(rows.len() >= 2, "no --stat rows:\n{}", out.describe());
    assert!(rows[0].starts_with("1 "), "db0 keys=1: {}", rows[0]);
    assert!(!out.stdout.contains("ERR"), "{}", out.describe());
}

#[test]
fn auth_with_requirepass() {
    let s = Server::start(&["--requirepass", "s3cret"]);
    let mut c = Conn::new(&s);
    assert_eq!(c.ask(b"PING\r\n"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.ask(b"DELAYADD q 1 a\r\n"),
        "-NOAUTH Authentication required.\r\n"
    );
    // Unknown commands and wrong arity are reported before authentication, as in Redis.
    assert_eq!(
        c.ask(b"NOSUCH\r\n"),
        "-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
    );
    assert!(
        c.ask(b"HELLO 3\r\n")
            .starts_with("-NOAUTH HELLO must be called with the client already authenticated"),
    );
    assert_eq!(
        c.ask(b"AUTH wrong\r\n"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.ask(b"AUTH bob s3cret\r\n"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.ask(b"AUTH s3cret\r\n"), "+OK\r\n");
    assert_eq!(c.ask(b"DELAYADD q 100000 a\r\n"), ":1\r\n");
    assert_eq!(c.ask(b"PING\r\n"), "+PONG\r\n");

    // AUTH with the default user.
    let mut c = Conn::new(&s);
    assert_eq!(c.ask(b"AUTH default s3cret\r\n"), "+OK\r\n");
    assert_eq!(c.ask(b"DELAYCARD q\r\n"), ":1\r\n");

    // HELLO ... AUTH.
    let mut c = Conn::new(&s);
    assert_eq!(
        c.ask(b"HELLO 3 AUTH default wrong\r\n"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.ask(b"PING\r\n"), "-NOAUTH Authentication required.\r\n");
    let hello = c.ask(b"HELLO 3 AUTH default s3cret SETNAME worker-1\r\n");
    assert!(hello.starts_with("%7\r\n"), "{hello:?}");
    assert_eq!(c.ask(b"CLIENT GETNAME\r\n"), "$8\r\nworker-1\r\n");
    assert_eq!(c.ask(b"DELAYCARD q\r\n"), ":1\r\n");

    // The redis crate with a password in the URL.
    let url = format!("redis://:s3cret@127.0.0.1:{}/", s.port);
    let client = redis::Client::open(url).unwrap();
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut con).unwrap();
    assert_eq!(n, 1);
    let bad = redis::Client::open(format!("redis://:nope@127.0.0.1:{}/", s.port)).unwrap();
    assert!(
        bad.get_connection_with_timeout(Duration::from_secs(5))
            .is_err()
    );

    // redis-cli -a.
    if let Some(bin) = redis_cli() {
        assert_eq!(
            cli_ok(
                &bin,
                &s,
                &["--no-auth-warning", "-a", "s3cret", "DELAYCARD", "q"]
            ),
            "1\n"
        );
        assert_eq!(
            cli_ok(
                &bin,
                &s,
                &["--no-auth-warning", "-3", "-a", "s3cret", "DELAYCARD", "q"]
            ),
            "1\n"
        );
        let out = cli(
            &bin,
            &s,
            &["--no-auth-warning", "-a", "nope", "DELAYCARD", "q"],
        );
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains("WRONGPASS"), "{}", out.describe());
        let out = cli(&bin, &s, &["DELAYCARD", "q"]);
        assert!(
            out.stdout.contains("NOAUTH Authentication required."),
            "{}",
            out.describe()
        );
    }
}

#[test]
fn unauthenticated_request_limits() {
    let s = Server::start(&["--requirepass", "s3cret"]);
    let mut failures = Vec::new();
    let mut check = |what: &str, got: String, want: &str| {
        if got != want {
            failures.push(format!("{what}\n   got: {got:?}\n  want: {want:?}"));
        }
    };
    // As in Redis: before AUTH at most 10 arguments and 16 KB bulks.
    let mut c = Conn::new(&s);
    check(
        "*100 before AUTH",
        c.ask_then_eof(b"*100\r\n"),
        "-ERR Protocol error: unauthenticated multibulk length\r\n",
    );
    let mut c = Conn::new(&s);
    check(
        "$100000 before AUTH",
        c.ask_then_eof(b"*1\r\n$100000\r\n"),
        "-ERR Protocol error: unauthenticated bulk length\r\n",
    );
    // Malformed lengths keep their usual text.
    let mut c = Conn::new(&s);
    check(
        "*abc before AUTH",
        c.ask_then_eof(b"*abc\r\n"),
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    // Redis runs each command before parsing the next, so an AUTH lifts
    // the limits for the rest of the same pipeline.
    let mut c = Conn::new(&s);
    let mut req = b"AUTH s3cret\r\n".to_vec();
    let mut big: Vec<Vec<u8>> = vec![b"DELAYADD".to_vec(), b"q".to_vec()];
    for i in 0..10 {
        big.push(b"100000".to_vec());
        big.push(format!("m{i}").into_bytes());
    }
    let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    req.extend(resp(&refs));
    c.send(&req);
    check("AUTH", c.reply(), "+OK\r\n");
    check(
        "22-argument DELAYADD pipelined after AUTH",
        c.reply(),
        ":10\r\n",
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A raw connection that reads one reply at a time.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn new(s: &Server) -> Conn {
        let raw = s.raw();
        Conn {
            w: raw.try_clone().unwrap(),
            r: BufReader::new(raw),
        }
    }

    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    fn reply(&mut self) -> String {
        String::from_utf8_lossy(&read_reply(&mut self.r)).into_owned()
    }

    fn ask(&mut self, b: &[u8]) -> String {
        self.send(b);
        self.reply()
    }

    /// Sends, reads one reply, then expects the server to close the connection.
    fn ask_then_eof(&mut self, b: &[u8]) -> String {
        let r = self.ask(b);
        let mut rest = Vec::new();
        match self.r.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "unexpected data after {r:?}: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("connection not closed after {r:?}: {e}"),
        }
        r
    }
}

#[test]
fn inline_commands() {
    let s = Server::start(&[]);
    let mut c = Conn::new(&s);
    assert_eq!(c.ask(b"PING\r\n"), "+PONG\r\n");
    assert_eq!(
        c.ask(b"ping\n"),
        "+PONG\r\n",
        "a bare LF ends an inline command"
    );
    assert_eq!(
        c.ask(b"\r\n\r\nPING\r\n"),
        "+PONG\r\n",
        "empty lines are skipped"
    );
    assert_eq!(c.ask(b"  PING   \r\n"), "+PONG\r\n");
    assert_eq!(c.ask(b"ECHO \"hello world\"\r\n"), "$11\r\nhello world\r\n");
    assert_eq!(c.ask(b"ECHO \"a\\x41\\n\"\r\n"), "$3\r\naA\n\r\n");
    assert_eq!(c.ask(b"ECHO 'it\\'s'\r\n"), "$4\r\nit's\r\n");
    assert_eq!(c.ask(b"ECHO \"\"\r\n"), "$0\r\n\r\n");
    assert_eq!(
        c.ask(b"DELAYADD q 100000 \"job 1\" 200000 job2\r\n"),
        ":2\r\n"
    );
    assert_eq!(
        c.ask(b"DELAYRANGE q 0 -1\r\n"),
        "*2\r\n$5\r\njob 1\r\n$4\r\njob2\r\n"
    );
    assert_eq!(
        c.ask(b"delaycard q extra\r\n"),
        "-ERR wrong number of arguments for 'delaycard' command\r\n"
    );
    assert_eq!(
        c.ask(b"nosuch a \"b c\"\r\n"),
        "-ERR unknown command 'nosuch', with args beginning with: 'a' 'b c' \r\n"
    );
    // A request split across many writes is reassembled.
    for part in [&b"*2\r\n$4\r\nEC"[..], b"HO\r\n$3", b"\r\nabc", b"\r"] {
        c.send(part);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.ask(b"\n"), "$3\r\nabc\r\n");
    // Inline requests inside MULTI.
    assert_eq!(c.ask(b"MULTI\r\n"), "+OK\r\n");
    assert_eq!(c.ask(b"DELAYCARD q\r\n"), "+QUEUED\r\n");
    assert_eq!(c.ask(b"EXEC\r\n"), "*1\r\n:2\r\n");
}

#[test]
fn pipelining_keeps_order() {
    let s = Server::start(&[]);
    let mut c = Conn::new(&s);
    // 1000 PINGs in one write, RESP and inline mixed.
    let mut req = Vec::new();
    for i in 0..1000 {
        if i % 2 == 0 {
            req.extend_from_slice(b"PING\r\n");
        } else {
            req.extend(resp(&[b"PING"]));
        }
    }
    c.send(&req);
    for _ in 0..1000 {
        assert_eq!(c.reply(), "+PONG\r\n");
    }
    // Queue commands and connection commands interleaved keep their order.
    let mut req = Vec::new();
    for i in 0..200 {
        let m = format!("m{i}");
        req.extend(resp(&[b"DELAYADD", b"q", b"100000", m.as_bytes()]));
        req.extend(resp(&[b"ECHO", m.as_bytes()]));
        req.extend(resp(&[b"DELAYCARD", b"q"]));
    }
    c.send(&req);
    for i in 0..200 {
        assert_eq!(c.reply(), ":1\r\n");
        let m = format!("m{i}");
        assert_eq!(c.reply(), format!("${}\r\n{m}\r\n", m.len()));
        assert_eq!(c.reply(), format!(":{}\r\n", i + 1));
    }
}

#[test]
fn pipelined_errors_keep_order() {
    let s = Server::start(&[]);
    let mut c = Conn::new(&s);
    // Argument errors and unknown commands in the middle of a pipeline of
    // queue commands are answered in their place, as Redis does.
    c.send(
        b"DELAYADD q 1000 a\r\nDELAYADD q notanumber b\r\nDELAYCARD q\r\nNOSUCH\r\nDELAYCARD q\r\nDELAYPOP q COUNT -1\r\nDELAYCARD q\r\n",
    );
    let got: Vec<String> = (0..7).map(|_| c.reply()).collect();
    assert_eq!(
        got,
        [
            ":1\r\n",
            "-ERR value is not an integer or out of range\r\n",
            ":1\r\n",
            "-ERR unknown command 'NOSUCH', with args beginning with: \r\n",
            ":1\r\n",
            "-ERR value is out of range, must be positive\r\n",
            ":1\r\n",
        ]
    );
}

#[test]
fn protocol_errors_close_only_that_connection() {
    let s = Server::start(&[]);
    let mut bystander = Conn::new(&s);
    assert_eq!(bystander.ask(b"PING\r\n"), "+PONG\r\n");
    let cases: &[(&[u8], &str)] = &[
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*-5x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\nx\r\n",
            "-ERR Protocol error: expected '$', got 'x'\r\n",
        ),
        (
            b"*1\r\n$abc\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$-1\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"ECHO \"abc\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"ECHO \"a\"b\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (req, want) in cases {
        let mut c = Conn::new(&s);
        assert_eq!(
            c.ask_then_eof(req),
            *want,
            "request {:?}",
            String::from_utf8_lossy(req)
        );
        assert_eq!(bystander.ask(b"PING\r\n"), "+PONG\r\n");
    }
    // Replies to the commands before the bad one are sent first.
    let mut c = Conn::new(&s);
    c.send(b"PING\r\nDELAYADD q 100000 a\r\n*abc\r\nPING\r\n");
    assert_eq!(c.reply(), "+PONG\r\n");
    assert_eq!(c.reply(), ":1\r\n");
    assert_eq!(
        c.ask_then_eof(b""),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    // An inline request over 64 KB without a newline.
    let mut c = Conn::new(&s);
    assert_eq!(
        c.ask_then_eof(&vec![b'A'; 70 * 1024]),
        "-ERR Protocol error: too big inline request\r\n"
    );
    assert_eq!(bystander.ask(b"DELAYCARD q\r\n"), ":1\r\n");
}

#[test]
fn quit_and_reset() {
    let s = Server::start(&[]);
    let mut c = Conn::new(&s);
    assert!(c.ask(b"HELLO 3\r\n").starts_with("%7\r\n"));
    assert_eq!(c.ask(b"CLIENT SETNAME x\r\n"), "+OK\r\n");
    assert_eq!(c.ask(b"RESET\r\n"), "+RESET\r\n");
    assert_eq!(
        c.ask(b"DELAYSCORE q a\r\n"),
        "$-1\r\n",
        "RESET goes back to RESP2"
    );
    assert_eq!(c.ask(b"CLIENT GETNAME\r\n"), "$-1\r\n");
    assert_eq!(c.ask_then_eof(b"QUIT\r\n"), "+OK\r\n");
}

#[test]
fn scan_and_bigkeys_modes() {
    let Some(bin) = redis_cli() else { return };
    let s = Server::start(&[]);
    for q in ["jobs:a", "jobs:b", "other"] {
        assert_eq!(cli_ok(&bin, &s, &["DELAYADD", q, "100000", "m"]), "1\n");
    }
    // --scan iterates SCAN cursors until 0.
    let out = cli_ok(&bin, &s, &["--scan", "--pattern", "jobs:*"]);
    let mut keys: Vec<&str> = out.lines().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["jobs:a", "jobs:b"], "{out}");
    // --bigkeys uses SCAN and TYPE; an unknown type must not stop it.
    let out = cli_ok(&bin, &s, &["--bigkeys"]);
    assert!(out.contains("Sampled 3 keys in the keyspace!"), "{out}");
    assert!(out.contains("3 delayqueues"), "{out}");
}

#[test]
fn shutdown_from_redis_cli_keeps_data() {
    let Some(bin) = redis_cli() else { return };
    let mut s = Server::start(&[]);
    assert_eq!(
        cli_ok(
            &bin,
            &s,
            &["DELAYADD", "persist", "100000", "a", "200000", "b"]
        ),
        "2\n"
    );
    let due = cli_ok(&bin, &s, &["DELAYSCORE", "persist", "a"]);
    // redis-cli treats the connection closing without a reply as success.
    let out = cli(&bin, &s, &["SHUTDOWN", "NOSAVE"]);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout, "", "{}", out.describe());
    assert_eq!(
        s.wait_exit(Duration::from_secs(20)),
        Some(0),
        "delayd must exit 0 after SHUTDOWN; log:\n{}",
        s.log_text()
    );
    // Restart on the same data directory: everything acknowledged is there.
    let s2 = Server::start_in(&s.dir, &[]);
    assert_eq!(cli_ok(&bin, &s2, &["DELAYCARD", "persist"]), "2\n");
    assert_eq!(cli_ok(&bin, &s2, &["DELAYSCORE", "persist", "a"]), due);
    drop(s2);
    drop(s);
}

#[test]
fn unknown_command_text_is_cut_like_redis() {
    let s = Server::start(&[]);
    let mut c = Conn::new(&s);
    // Redis prints at most 128 characters of the name, and appends
    // `'arg' ` pieces while the list is shorter than 128 characters
    // (quotes and spaces included), each cut to what is left of the 128.
    let mut req = vec![b'x'; 200];
    req.push(b' ');
    req.extend(vec![b'y'; 200]);
    req.extend_from_slice(b" z\r\n");
    assert_eq!(
        c.ask(&req),
        format!(
            "-ERR unknown command '{}', with args beginning with: '{}' \r\n",
            "x".repeat(128),
            "y".repeat(128)
        )
    );
    let mut req = b"FOO".to_vec();
    for _ in 0..20 {
        req.extend_from_slice(b" abcdefghij");
    }
    req.extend_from_slice(b"\r\n");
    assert_eq!(
        c.ask(&req),
        format!(
            "-ERR unknown command 'FOO', with args beginning with: {}\r\n",
            "'abcdefghij' ".repeat(10)
        )
    );
    let mut req = b"FOO ".to_vec();
    req.extend(vec![b'a'; 120]);
    req.extend_from_slice(b" bcdefghijk\r\n");
    assert_eq!(
        c.ask(&req),
        format!(
            "-ERR unknown command 'FOO', with args beginning with: '{}' 'bcdef' \r\n",
            "a".repeat(120)
        )
    );
}
