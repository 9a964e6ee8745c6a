//! A write acknowledged together with a read is never lost: the read must
//! not make the write look durable before it is. Each trial sends a write
//! and a read in one packet, reads both replies, kills the server with
//! SIGKILL at once, restarts it and checks the write. The bug this guards
//! against lost about one trial in ten, so each shape runs enough trials to
//! have caught it with near certainty.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::path::Path;

use harness::{Server, read_reply, resp};

/// Trials of the plain shape; the others run half as many per fsync mode.
const TRIALS: usize = 40;

/// Sends `packet` (several commands), reads `replies` replies, returns them.
fn send(server: &Server, packet: &[u8], replies: usize) -> Vec<Vec<u8>> {
    let mut conn = server.raw();
    conn.write_all(packet).unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    (0..replies).map(|_| read_reply(&mut r)).collect()
}

fn score(server: &Server, q: &str, m: &str) -> Option<i64> {
    let mut con = server.client();
    redis::cmd("DELAYSCORE")
        .arg(q)
        .arg(m)
        .query(&mut con)
        .unwrap()
}

/// Runs `TRIALS` trials of `trial` (which returns what it expects to have
/// survived: queue, member, and whether it must be present), each followed
/// by kill -9 and a restart, and collects the losses.
fn run_trials(
    fsync: &str,
    trials: usize,
    mut trial: impl FnMut(&Server, usize) -> Vec<(String, String, bool)>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flags = ["--appendfsync", fsync];
    let mut server = Server::start_in(&dir, &flags);
    let mut wrong = Vec::new();
    for i in 0..trials {
        let expect = trial(&server, i);
        server.kill9();
        server = restart(&dir, &flags);
        for (q, m, present) in expect {
            if score(&server, &q, &m).is_some() != present {
                wrong.push(format!(
                    "trial {i}: {q}/{m} should be {}",
                    if present { "present" } else { "gone" }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{fsync}: acknowledged writes lost after kill -9: {wrong:?}"
    );
}

fn restart(dir: &Path, flags: &[&str]) -> Server {
    Server::start_in(dir, flags)
}

fn write_then_read(fsync: &str) {
    run_trials(fsync, TRIALS, |server, i| {
        let m = format!("m{i}");
        let mut packet = resp(&[b"DELAYADD", b"q", b"600000", m.as_bytes()]);
        packet.extend(resp(&[b"DELAYRANGE", b"q", b"0", b"-1"]));
        let replies = send(server, &packet, 2);
        assert_eq!(replies[0], b":1\r\n");
        vec![("q".into(), m, true)]
    });
}

#[test]
fn write_pipelined_with_a_read_survives_kill9_always() {
    write_then_read("always");
}

#[test]
fn write_pipelined_with_a_read_survives_kill9_everysec() {
    write_then_read("everysec");
}

/// A MULTI whose read sits between two writes.
#[test]
fn transaction_with_a_read_inside_survives_kill9() {
    for fsync in ["always", "everysec"] {
        run_trials(fsync, TRIALS / 2, |server, i| {
            let (a, b) = (format!("a{i}"), format!("b{i}"));
            let mut packet = resp(&[b"MULTI"]);
            packet.extend(resp(&[b"DELAYADD", b"q", b"600000", a.as_bytes()]));
            packet.extend(resp(&[b"DELAYRANGE", b"q", b"0", b"-1"]));
            packet.extend(resp(&[b"DELAYADD", b"q", b"600000", b.as_bytes()]));
            packet.extend(resp(&[b"EXEC"]));
            let replies = send(server, &packet, 5);
            assert!(replies[4].starts_with(b"*3\r\n:1\r\n"), "{:?}", replies[4]);
            vec![("q".into(), a, true), ("q".into(), b, true)]
        });
    }
}

/// FLUSHALL followed by a write and a read: the flushed queue stays gone
/// and the new write stays.
#[test]
fn flushall_then_write_survives_kill9() {
    for fsync in ["always", "everysec"] {
        run_trials(fsync, TRIALS / 2, |server, i| {
            let (old, new) = (format!("old{i}"), format!("new{i}"));
            let added = send(
                server,
                &resp(&[b"DELAYADD", b"gone", b"600000", old.as_bytes()]),
                1,
            );
            assert_eq!(added[0], b":1\r\n");
            let mut packet = resp(&[b"FLUSHALL"]);
            packet.extend(resp(&[b"DELAYADD", b"q", b"600000", new.as_bytes()]));
            packet.extend(resp(&[b"DELAYRANGE", b"q", b"0", b"-1"]));
            let replies = send(server, &packet, 3);
            assert_eq!(replies[0], b"+OK\r\n");
            assert_eq!(replies[1], b":1\r\n");
            vec![("gone".into(), old, false), ("q".into(), new, true)]
        });
    }
}
