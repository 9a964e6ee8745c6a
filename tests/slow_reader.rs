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

#[test]
fn a_pop_whose_reply_passes_the_hard_limit_is_put_back() {
    let s = Server::start(&["--client-output-buffer-limit", "normal 100kb 0 0"]);
    let mut con = s.client();
    let mut add = redis::cmd("DELAYADD");
    add.arg("q");
    for i in 0..10_000 {
        add.arg(0).arg(format!("m:{i:05}"));
    }
    let added: u64 = add.query(&mut con).unwrap();
    assert_eq!(added, 10_000);
    // About 120 KB of reply: over the hard limit, so it is never written,
    // the client is closed, and the members go back as they were.
    let mut greedy = s.raw();
    greedy
        .write_all(b"DELAYPOP q COUNT 10000 LEASE 60000\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let closed = match greedy.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed && buf.is_empty(), "got {} bytes", buf.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while info_field(&s, "stats", "client_output_buffer_limit_disconnections").as_deref()
        != Some("1")
    {
        assert!(Instant::now() < deadline, "not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let info: Vec<redis::Value> = redis::cmd("DELAYINFO").arg("q").query(&mut con).unwrap();
    let field = |name: &str| {
        info.chunks_exact(2)
            .find(|kv| kv[0] == redis::Value::BulkString(name.as_bytes().to_vec()))
            .map(|kv| kv[1].clone())
    };
    assert_eq!(field("pending"), Some(redis::Value::Int(10_000)));
    assert_eq!(field("leased"), Some(redis::Value::Int(0)), "leases undone");
    // Not counted as a delivery: the next pop is the first.
    let first: Vec<(String, u64)> = redis::cmd("DELAYPOP")
        .arg("q")
        .arg("WITHCOUNTS")
        .query(&mut con)
        .unwrap();
    assert_eq!(first, [("m:00000".to_string(), 1)]);
    // CONFIG SET changes the limit, with Redis 7.0's texts for bad values.
    let mut raw = BufReader::new(s.raw());
    let mut set = |v: &str| {
        raw.get_mut()
            .write_all(&resp(&[
                b"CONFIG",
                b"SET",
                b"client-output-buffer-limit",
                v.as_bytes(),
            ]))
            .unwrap();
        String::from_utf8_lossy(&read_reply(&mut raw)).into_owned()
    };
    let failed = "-ERR CONFIG SET failed (possibly related to argument \
                  'client-output-buffer-limit') - ";
    assert_eq!(
        set("normal 1mb 512kb"),
        format!("{failed}Wrong number of arguments in buffer limit configuration.\r\n")
    );
    assert_eq!(
        set("master 1 1 1"),
        format!("{failed}Invalid client class specified in buffer limit configuration.\r\n")
    );
    assert_eq!(
        set("normal 1x 1 1"),
        format!(
            "{failed}Error in hard, soft or soft_seconds setting in buffer limit configuration.\r\n"
        )
    );
    assert_eq!(set("normal 0 0 0"), "+OK\r\n");
    let pops: Vec<String> = redis::cmd("DELAYPOP")
        .arg("q")
        .arg("COUNT")
        .arg(10_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(pops.len(), 9_999, "no limit any more");
}
