//! Limits and bad input against the real binary: each refused with a clear
//! error, never a panic, a hang, or memory sized by what a client declared.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::time::Duration;

use harness::{Server, roundtrip};

fn rss_kb(pid_of_port: u16) -> u64 {
    // INFO memory reports the server's RSS.
    let s = std::net::TcpStream::connect(("127.0.0.1", pid_of_port)).unwrap();
    let mut s = s;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let out = roundtrip(&mut s, b"INFO memory\r\n", 64);
    let mut buf = out;
    let mut tmp = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("mem_allocator") {
        let n = s.read(&mut tmp).unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("used_memory_rss:"))
        .expect("rss line");
    line["used_memory_rss:".len()..]
        .trim()
        .parse::<u64>()
        .unwrap()
        / 1024
}

fn is_closed(conn: &mut std::net::TcpStream) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn maxclients_refuses_extra_connections_with_redis_text() {
    let s = Server::start(&["--maxclients", "2"]);
    let mut a = s.raw();
    // The harness's readiness probe may still count: wait until only `a` does.
    let mut reader = std::io::BufReader::new(a.try_clone().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        a.write_all(b"INFO clients\r\n").unwrap();
        let info = harness::read_reply(&mut reader);
        if String::from_utf8_lossy(&info).contains("connected_clients:1\r\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = s.raw();
    assert_eq!(roundtrip(&mut a, b"PING\r\n", 7), b"+PONG\r\n");
    assert_eq!(roundtrip(&mut b, b"PING\r\n", 7), b"+PONG\r\n");
    let mut c = s.raw();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert_eq!(buf, b"-ERR max number of clients reached\r\n");
    drop(reader);
    drop(a);
    // Once the server has seen the close, a new client fits again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = s.raw();
        if roundtrip(&mut d, b"PING\r\n", 7) == b"+PONG\r\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the freed slot was never reused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn member_size_limit_closes_only_that_connection() {
    let s = Server::start(&["--proto-max-bulk-len", "1024"]);
    let mut bad = s.raw();
    let mut good = s.raw();
    let member = "x".repeat(2000);
    let req = format!(
        "*4\r\n$8\r\nDELAYADD\r\n$1\r\nq\r\n$1\r\n0\r\n${}\r\n{member}\r\n",
        member.len()
    );
    let out = roundtrip(&mut bad, req.as_bytes(), 10);
    assert!(String::from_utf8_lossy(&out).starts_with("-ERR Protocol error: invalid bulk length"));
    assert!(is_closed(&mut bad));
    assert_eq!(roundtrip(&mut good, b"DELAYCARD q\r\n", 4), b":0\r\n");
}

#[test]
fn declared_lengths_that_never_arrive_allocate_nothing() {
    let s = Server::start(&[]);
    let before = rss_kb(s.port);
    // 50 clients each declare a 512 MB argument and send a few bytes of it.
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut c = s.raw();
        c.write_all(b"*2\r\n$4\r\nECHO\r\n$536870912\r\nabc")
            .unwrap();
        conns.push(c);
    }
    let mut c = s.raw();
    c.write_all(b"*1048576\r\n").unwrap();
    conns.push(c);
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kb(s.port);
    assert!(
        after < before + 50 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let mut good = s.raw();
    assert_eq!(roundtrip(&mut good, b"PING\r\n", 7), b"+PONG\r\n");
}

#[test]
fn query_buffer_limit_closes_a_flooding_client() {
    let s = Server::start(&["--client-query-buffer-limit", "1048576"]);
    let mut c = s.raw();
    c.write_all(b"*2\r\n$4\r\nECHO\r\n$100000000\r\n").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut closed = false;
    for _ in 0..64 {
        if c.write_all(&chunk).is_err() {
            closed = true;
            break;
        }
    }
    assert!(
        closed || is_closed(&mut c),
        "a client past the query buffer limit is disconnected"
    );
    let mut good = s.raw();
    assert_eq!(roundtrip(&mut good, b"PING\r\n", 7), b"+PONG\r\n");
}

#[test]
fn a_client_that_never_reads_does_not_grow_server_memory() {
    let s = Server::start(&[]);
    let before = rss_kb(s.port);
    let mut c = s.raw();
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // Pipeline 64 MB of DELAYRANGE-free cheap commands and read nothing.
    let req = b"DELAYCARD q\r\n".repeat(100_000);
    for _ in 0..50 {
        if c.write_all(&req).is_err() {
            break; // TCP pushed back: the server stopped reading, as it should
        }
    }
    let after = rss_kb(s.port);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let mut good = s.raw();
    assert_eq!(roundtrip(&mut good, b"PING\r\n", 7), b"+PONG\r\n");
}

#[test]
fn bad_numbers_names_and_frames_get_precise_errors() {
    let s = Server::start(&[]);
    let mut c = s.raw();
    let cases: &[(&str, &str)] = &[
        ("DELAYADD q -5 m\r\n", "-ERR delay is negative\r\n"),
        (
            "DELAYADD q 1.5 m\r\n",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "DELAYADD q 99999999999999999999 m\r\n",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("DELAYADD q AT -1 m\r\n", "-ERR unix time is negative\r\n"),
        (
            "DELAYADD q AT 253402300800000 m\r\n",
            "-ERR due time is beyond the year 9999\r\n",
        ),
        (
            "DELAYADD q 253402300799999 m\r\n",
            "-ERR due time is beyond the year 9999\r\n",
        ),
        (
            "DELAYPOP q COUNT -1\r\n",
            "-ERR value is out of range, must be positive\r\n",
        ),
        (
            "DELAYPOP q LEASE 0\r\n",
            "-ERR value is out of range, must be positive\r\n",
        ),
        ("BDELAYPOP q -1\r\n", "-ERR timeout is negative\r\n"),
        (
            "BDELAYPOP q nan\r\n",
            "-ERR timeout is not a float or out of range\r\n",
        ),
        (
            "DELAYRANGE q a 1\r\n",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "PI\0NG\r\n",
            "-ERR unknown command 'PI\0NG', with args beginning with: \r\n",
        ),
    ];
    for (req, want) in cases {
        let out = roundtrip(&mut c, req.as_bytes(), want.len());
        assert_eq!(String::from_utf8_lossy(&out), *want, "request {req:?}");
    }
    // AT in the past is due now.
    let out = roundtrip(&mut c, b"DELAYADD q AT 1 past\r\n", 4);
    assert_eq!(out, b":1\r\n");
    let out = roundtrip(&mut c, b"DELAYPOP q\r\n", 14);
    assert_eq!(out, b"*1\r\n$4\r\npast\r\n");
    // A queue name longer than the store allows.
    let name = "k".repeat(70_000);
    let req = format!(
        "*4\r\n$8\r\nDELAYADD\r\n${}\r\n{name}\r\n$1\r\n1\r\n$1\r\nm\r\n",
        name.len()
    );
    let out = roundtrip(&mut c, req.as_bytes(), 20);
    assert!(String::from_utf8_lossy(&out).starts_with("-ERR queue name is too long"));
    // Nested arrays are a protocol error that closes only this connection.
    let out = roundtrip(&mut c, b"*1\r\n*1\r\n$4\r\nPING\r\n", 10);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "-ERR Protocol error: expected '$', got '*'\r\n"
    );
    assert!(is_closed(&mut c));
}

#[test]
fn requirepass_guards_every_command_but_the_handshake() {
    let s = Server::start(&["--requirepass", "pw"]);
    let mut c = s.raw();
    for cmd in [
        "PING",
        "DELAYCARD q",
        "INFO",
        "CONFIG GET save",
        "COMMAND COUNT",
        "DBSIZE",
        "SHUTDOWN",
        "CLIENT ID",
    ] {
        let out = roundtrip(&mut c, format!("{cmd}\r\n").as_bytes(), 33);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "-NOAUTH Authentication required.\r\n",
            "{cmd}"
        );
    }
    let out = roundtrip(&mut c, b"AUTH nope\r\n", 20);
    assert!(String::from_utf8_lossy(&out).starts_with("-WRONGPASS"));
    assert_eq!(roundtrip(&mut c, b"AUTH pw\r\n", 5), b"+OK\r\n");
    assert_eq!(roundtrip(&mut c, b"PING\r\n", 7), b"+PONG\r\n");
    assert_eq!(roundtrip(&mut c, b"QUIT\r\n", 5), b"+OK\r\n");
}

#[test]
fn default_bind_is_loopback_only() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_delayd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[default: 127.0.0.1]"), "{help}");
}
