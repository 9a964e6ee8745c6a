//! The open-files limit: a burst of connections past it is refused with the
//! maxclients error and never takes the descriptors the store needs, and an
//! fsync needs no new descriptor, so running out of them cannot poison the
//! store.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use delayd::fdlimit::RESERVED_FDS;
use harness::Server;

/// The server's `ulimit -n` in the burst tests: room for a few clients only.
const NOFILE: u32 = 448;

/// More connections than the limit holds, clients or not.
const BURST: usize = 480;

/// One burst at a time, so the test process stays within a 1024 limit.
static BURSTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

const REJECTED: &[u8] = b"-ERR max number of clients reached\r\n";

/// One field of INFO.
fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
        .trim()
        .to_string()
}

/// Waits (bounded) until INFO's `field` satisfies `ok`; returns its value.
fn wait_info(
    con: &mut redis::Connection,
    section: &str,
    field: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = info_field(con, section, field);
        if ok(&v) || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn delayadd(con: &mut redis::Connection, member: &str) -> redis::RedisResult<i64> {
    redis::cmd("DELAYADD")
        .arg("q")
        .arg(600_000)
        .arg(member)
        .query(con)
}

/// The store is healthy: no storage error, the last fsync succeeded.
fn assert_healthy(con: &mut redis::Connection) {
    assert_eq!(info_field(con, "persistence", "storage_error"), "");
    assert_eq!(info_field(con, "persistence", "last_fsync_status"), "ok");
}

/// What each connection of a burst got after sending PING: the first line
/// of its reply, or nothing by the deadline.
fn first_lines(conns: &mut [TcpStream]) -> Vec<Vec<u8>> {
    for c in conns.iter_mut() {
        // A rejected connection may be closed already: its reply still waits.
        let _ = c.write_all(b"PING\r\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    conns
        .iter_mut()
        .map(|c| {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while !got.ends_with(b"\r\n") {
                let left = deadline.saturating_duration_since(Instant::now());
                c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .unwrap();
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        })
        .collect()
}

/// Opens more connections than the fd limit holds while one client stays
/// connected: the extra ones get the maxclients error, the store keeps
/// working through and after the burst, and a clean stop fsyncs.
fn burst_past_the_fd_limit(fsync: &str) {
    let _one_at_a_time = BURSTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Server::start_with_nofile(NOFILE, &["--appendfsync", fsync]);
    let mut con = server.client();
    // Only this client is connected (the start-up probe has gone).
    assert_eq!(
        wait_info(&mut con, "clients", "connected_clients", |v| v == "1"),
        "1"
    );
    assert_eq!(delayadd(&mut con, "before").unwrap(), 1);
    let received: usize = info_field(&mut con, "stats", "total_connections_received")
        .parse()
        .unwrap();

    let mut burst: Vec<TcpStream> = (0..BURST)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    // Until the server has taken the burst from its listen backlog (where
    // it stays while no descriptor is free, hence no assertion here).
    wait_info(&mut con, "stats", "total_connections_received", |v| {
        v.parse::<usize>().is_ok_and(|n| n >= received + BURST)
    });
    // Written while the burst holds its connections.
    assert_eq!(
        delayadd(&mut con, "during").expect("a write during the burst"),
        1
    );
    let fsyncs: u64 = info_field(&mut con, "persistence", "fsyncs")
        .parse()
        .unwrap();
    if fsync == "everysec" {
        // Let a periodic fsync run while the burst is connected.
        let after = wait_info(&mut con, "persistence", "fsyncs", |v| {
            v.parse::<u64>().is_ok_and(|n| n > fsyncs)
        });
        assert!(after.parse::<u64>().unwrap() > fsyncs, "no fsync ran");
    }
    assert_healthy(&mut con);

    let maxclients: String = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query::<Vec<String>>(&mut con)
        .unwrap()
        .pop()
        .unwrap();
    let maxclients: usize = maxclients.parse().unwrap();
    assert_eq!(
        maxclients as u64 + RESERVED_FDS,
        u64::from(NOFILE),
        "maxclients follows the fd limit"
    );
    let replies = first_lines(&mut burst);
    let served = replies
        .iter()
        .filter(|r| r.as_slice() == b"+PONG\r\n")
        .count();
    let rejected = replies.iter().filter(|r| r.as_slice() == REJECTED).count();
    assert_eq!(
        (served, rejected),
        (maxclients - 1, BURST - (maxclients - 1)),
        "every connection is served up to maxclients (one is ours) and the rest refused; \
         others got: {:?}",
        replies
            .iter()
            .filter(|r| r.as_slice() != b"+PONG\r\n" && r.as_slice() != REJECTED)
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .take(3)
            .collect::<Vec<_>>()
    );
    drop(burst);
    assert_eq!(
        wait_info(&mut con, "clients", "connected_clients", |v| v == "1"),
        "1"
    );

    // Afterwards new clients are served and writes still succeed.
    let mut fresh = server.client();
    assert_eq!(delayadd(&mut fresh, "after").unwrap(), 1);
    assert_healthy(&mut fresh);
    drop(fresh);
    drop(con);

    assert_eq!(server.terminate(), Some(0), "log:\n{}", server.log_text());
    let log = server.log_text();
    assert!(
        log.contains(&format!("maxclients has been reduced to {maxclients}")),
        "the log says maxclients was lowered:\n{log}"
    );
    assert!(!log.contains("fsync failed"), "log:\n{log}");

    // Everything acknowledged is there after a restart.
    let dir = server.dir.clone();
    let server = Server::start_in(&dir, &[]);
    let card: i64 = redis::cmd("DELAYCARD")
        .arg("q")
        .query(&mut server.client())
        .unwrap();
    assert_eq!(card, 3);
}

#[test]
fn burst_past_the_fd_limit_under_always() {
    burst_past_the_fd_limit("always");
}

#[test]
fn burst_past_the_fd_limit_under_everysec() {
    burst_past_the_fd_limit("everysec");
}

/// CONFIG SET maxclients beyond what the fd limit holds is refused with
/// Redis's error, naming the most that fits; up to it is accepted.
#[test]
fn config_set_maxclients_beyond_the_fd_limit_is_refused() {
    let server = Server::start_with_nofile(NOFILE, &[]);
    let mut con = server.client();
    let fits = u64::from(NOFILE) - RESERVED_FDS;
    let set = |con: &mut redis::Connection, n: u64| -> redis::RedisResult<()> {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxclients")
            .arg(n)
            .query(con)
    };
    let err = set(&mut con, fits + 1).unwrap_err();
    assert_eq!(
        err.detail(),
        Some(
            format!(
                "CONFIG SET failed (possibly related to argument 'maxclients') - The operating \
                 system is not able to handle the specified number of clients, try with {fits}"
            )
            .as_str()
        ),
        "{err:?}"
    );
    set(&mut con, fits - 10).unwrap();
    set(&mut con, fits).unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["maxclients".to_string(), fits.to_string()]);
}

/// The lowest descriptor number a process has free: with its soft limit
/// set there, every new descriptor fails with EMFILE.
#[cfg(target_os = "linux")]
fn lowest_free_fd(pid: u32) -> u64 {
    let used: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// The soft and hard open-files limits of a process (`None`: unlimited).
#[cfg(target_os = "linux")]
fn soft_nofile(pid: u32) -> (Option<u64>, Option<u64>) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files limit");
    let mut v = line["Max open files".len()..]
        .split_whitespace()
        .map(|w| w.parse::<u64>().ok());
    (v.next().flatten(), v.next().flatten())
}

/// Sets the soft open-files limit of a process, keeping its hard limit.
#[cfg(target_os = "linux")]
fn set_soft_nofile(pid: u32, soft: Option<u64>) {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    let (_, hard) = soft_nofile(pid);
    let pid = Pid::from_raw(pid as i32).expect("pid");
    let limit = Rlimit {
        current: soft,
        maximum: hard,
    };
    prlimit(Some(pid), Resource::Nofile, limit).expect("prlimit");
}

/// With every descriptor taken (the server's soft limit lowered to the
/// lowest free descriptor), writes are still fsynced: the fsync needs no
/// new descriptor. New connections wait meanwhile (accept backs off) and
/// are served once a descriptor is free; nothing is poisoned.
#[cfg(target_os = "linux")]
#[test]
fn fsync_needs_no_new_descriptor() {
    let mut server = Server::start(&["--appendfsync", "always"]);
    let pid = server.pid().expect("running");
    let mut con = server.client();
    assert_eq!(
        wait_info(&mut con, "clients", "connected_clients", |v| v == "1"),
        "1"
    );
    assert_eq!(delayadd(&mut con, "before").unwrap(), 1);

    let (old, _) = soft_nofile(pid);
    set_soft_nofile(pid, Some(lowest_free_fd(pid)));
    // The limit binds: a new connection is not accepted.
    let mut waiting = server.raw();
    waiting.write_all(b"PING\r\n").unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        waiting.read(&mut buf).is_err(),
        "a connection was accepted past the fd limit"
    );
    let add = delayadd(&mut con, "starved");
    set_soft_nofile(pid, old);
    assert_eq!(add.expect("a write with no descriptor free"), 1);

    // The waiting connection is served once descriptors are free.
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        let n = waiting
            .read(&mut buf)
            .expect("PONG after the limit is lifted");
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"+PONG\r\n");
    assert_eq!(delayadd(&mut con, "after").unwrap(), 1);
    assert_healthy(&mut con);
    drop(con);
    drop(waiting);
    assert_eq!(server.terminate(), Some(0), "log:\n{}", server.log_text());
    let log = server.log_text();
    let warnings = log.matches("accept failed").count();
    assert!(
        (1..=2).contains(&warnings),
        "accept failures are logged, not once per retry ({warnings} lines):\n{log}"
    );
}
