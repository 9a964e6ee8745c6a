//! A client that pipelines requests for large replies and never reads them
//! must not grow the server's memory: the server stops running its commands
//! while TCP holds its output back, and `client-output-buffer-limit`
//! disconnects it as Redis does.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{Server, read_reply, resp};

/// Members in the big queue: one `DELAYRANGE big 0 -1` reply is about
/// 950 KB (50,000 × `$12\r\nmember:NNNNN\r\n`).
const MEMBERS: usize = 50_000;

/// Fills queue `big` with one pipelined write and reads every reply.
fn fill(s: &Server) {
    let mut c = s.raw();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = Vec::with_capacity(MEMBERS * 60);
    for i in 0..MEMBERS {
        let m = format!("member:{i:05}");
        req.extend_from_slice(&resp(&[b"DELAYADD", b"big", b"3600000", m.as_bytes()]));
    }
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let writer = std::thread::spawn(move || c.write_all(&req).unwrap());
    for _ in 0..MEMBERS {
        assert_eq!(read_reply(&mut reader), b":1\r\n");
    }
    writer.join().unwrap();
}

/// One INFO field, read over a fresh connection.
fn info_field(s: &Server, section: &str, field: &str) -> Option<String> {
    let mut c = BufReader::new(s.raw());
    c.get_mut()
        .write_all(&resp(&[b"INFO", section.as_bytes()]))
        .unwrap();
    let reply = String::from_utf8_lossy(&read_reply(&mut c)).into_owned();
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// The server's resident set, from /proc/PID/status.
fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Writes 200 × `DELAYRANGE big 0 -1` on a raw socket that is never read.
fn non_reader(s: &Server) -> TcpStream {
    let c = s.raw();
    let req = b"DELAYRANGE big 0 -1\r\n".repeat(200);
    let mut w = c.try_clone().unwrap();
    // 4 KB of requests fit in the socket buffers: the write completes.
    w.write_all(&req).unwrap();
    c
}

/// PING on a fresh connection answers (a generous timeout, not a speed test).
fn ping_answers(s: &Server) {
    let mut c = BufReader::new(s.raw());
    c.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    c.get_mut().write_all(b"PING\r\n").unwrap();
    assert_eq!(read_reply(&mut c), b"+PONG\r\n");
}

#[test]
fn a_client_that_does_not_read_does_not_grow_server_memory() {
    let s = Server::start(&[]);
    let pid: u32 = info_field(&s, "server", "process_id")
        .and_then(|p| p.parse().ok())
        .expect("process_id");
    fill(&s);
    let before = vm_rss_kb(pid);
    let _stuck = non_reader(&s);
    // Measured: delayd peaks 5 to 20 MB above `before` here. Before output
    // was bounded it grew by about 60 MB a second, past 2 GB. The bound is
    // wide, and sampling stops as soon as it is crossed, so a failing run
    // does not eat the machine's memory.
    let bound_kb = before + 150 * 1024;
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        peak = peak.max(vm_rss_kb(pid));
        assert!(
            peak < bound_kb,
            "server RSS grew from {before} KiB to {peak} KiB with one client not reading"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("RSS before {before} KiB, peak {peak} KiB");
    ping_answers(&s);
    // The client is held back, not dropped, under the default limits.
    assert_eq!(
        info_field(&s, "stats", "client_output_buffer_limit_disconnections").as_deref(),
        Some("0")
    );
}

#[test]
fn output_buffer_limit_disconnects_a_client_that_does_not_read() {
    let s = Server::start(&["--client-output-buffer-limit", "normal 1mb 512kb 1"]);
    let limit: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut s.client())
        .expect("CONFIG GET");
    assert_eq!(
        limit,
        [
            "client-output-buffer-limit",
            "normal 1048576 524288 1 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        ]
    );
    fill(&s);
    // A client that reads gets a reply over the soft limit in full.
    let mut reader = s.client();
    let all: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("big")
        .arg(0)
        .arg(-1)
        .query(&mut reader)
        .expect("DELAYRANGE");
    assert_eq!(all.len(), MEMBERS);
    assert_eq!(all[MEMBERS - 1], format!("member:{:05}", MEMBERS - 1));

    let mut stuck = non_reader(&s);
    // Over the soft limit for more than a second: disconnected and counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = info_field(&s, "stats", "client_output_buffer_limit_disconnections");
        if n.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client that does not read was not disconnected (counter: {n:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server closed it: what it had sent, then end of stream (or reset).
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stuck.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection stayed open after {got} bytes: {e}"),
        }
        assert!(got < 200 * 1_000_000, "all 200 replies were sent");
    }
    assert!(
        s.log_text()
            .contains("scheduled to be closed ASAP for overcoming of output buffer limits"),
        "log:\n{}",
        s.log_text()
    );
    ping_answers(&s);
    // Other clients are unaffected.
    let card: u64 = redis::cmd("DELAYCARD")
        .arg("big")
        .query(&mut reader)
        .unwrap();
    assert_eq!(card, MEMBERS as u64);
}
