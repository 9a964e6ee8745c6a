//! CLIENT UNBLOCK, KILL, PAUSE/UNPAUSE, REPLY and MONITOR through real
//! clients (redis-rs, redis-cli, raw sockets), compared byte for byte with
//! a real redis-server where Redis has the same reply.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Conn, Server, require_tool, run_bounded, servers, show};

/// Polls CLIENT LIST until the client `id` shows `flag` (bounded).
fn wait_flag(admin: &mut redis::Connection, id: i64, flag: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(admin).unwrap();
        let want = format!("id={id} ");
        if list
            .lines()
            .any(|l| l.starts_with(&want) && l.contains(&format!(" flags={flag} ")))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "client {id} never got {flag}: {list}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads until end of stream; true if the server closed the connection
/// within the socket's read timeout.
fn closed(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn client_unblock_interrupts_a_redis_rs_blocking_pop() {
    let dd = Server::start(&[]);
    let mut admin = dd.client();
    for (how, want_err) in [("TIMEOUT", false), ("ERROR", true)] {
        let mut popper = dd.client();
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut popper).unwrap();
        // Forever: only CLIENT UNBLOCK ends it (the connection's 10 s read
        // timeout bounds the test).
        let t = std::thread::spawn(move || {
            redis::cmd("BDELAYPOP")
                .arg("q")
                .arg(0)
                .query::<Option<Vec<String>>>(&mut popper)
        });
        wait_flag(&mut admin, id, "b");
        let n: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(id)
            .arg(how)
            .query(&mut admin)
            .unwrap();
        assert_eq!(n, 1, "{how}");
        let r = t.join().unwrap();
        if want_err {
            let e = r.unwrap_err();
            assert_eq!(e.code(), Some("UNBLOCKED"), "{e:?}");
            assert!(
                e.to_string()
                    .contains("client unblocked via CLIENT UNBLOCK"),
                "{e}"
            );
        } else {
            assert_eq!(r.unwrap(), None, "TIMEOUT answers the timeout reply");
        }
        // Not blocked any more: 0, as Redis answers.
        let n: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(id)
            .query(&mut admin)
            .unwrap();
        assert_eq!(n, 0);
    }
}

#[test]
fn unblocked_replies_match_redis_byte_for_byte() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    for proto in [2, 3] {
        for how in ["TIMEOUT", "ERROR"] {
            let mut got = Vec::new();
            for (port, pop) in [(dd.port, "BDELAYPOP q 0"), (redis.port, "BLPOP q 0")] {
                let mut popper = Conn::open(port, proto);
                let id = show(&popper.ask("CLIENT ID"));
                let id = id.trim_start_matches(':').trim();
                let mut admin = Conn::open(port, 2);
                let sent = std::thread::spawn(move || popper.ask(pop));
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let r = admin.ask(&format!("CLIENT UNBLOCK {id} {how}"));
                    if r == b":1\r\n" {
                        break;
                    }
                    assert!(Instant::now() < deadline, "never blocked");
                    std::thread::sleep(Duration::from_millis(10));
                }
                got.push(show(&sent.join().unwrap()));
            }
            assert_eq!(got[0], got[1], "RESP{proto} {how}");
        }
    }
}

#[test]
fn client_control_errors_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    for cmd in [
        "CLIENT UNBLOCK 999",
        "CLIENT UNBLOCK 999 foo",
        "CLIENT UNBLOCK abc",
        "CLIENT UNBLOCK 1 timeout extra",
        "CLIENT KILL",
        "CLIENT KILL 1.2.3.4:5",
        "CLIENT KILL ID 999",
        "CLIENT KILL ID abc",
        "CLIENT KILL ID 0",
        "CLIENT KILL ID 5 SKIPME",
        "CLIENT KILL foo bar",
        "CLIENT KILL SKIPME maybe",
        "CLIENT KILL TYPE bogus",
        "CLIENT KILL TYPE pubsub",
        "CLIENT KILL USER nobody",
        "CLIENT KILL LADDR 1.1.1.1:1",
        "CLIENT PAUSE",
        "CLIENT PAUSE abc",
        "CLIENT PAUSE -1",
        "CLIENT PAUSE 10 foo",
        "CLIENT PAUSE 1 2 3",
        "CLIENT UNPAUSE x",
        "CLIENT UNPAUSE",
        "CLIENT REPLY foo",
        "CLIENT NO-EVICT on",
        "CLIENT NO-EVICT maybe",
    ] {
        assert_eq!(show(&d.ask(cmd)), show(&r.ask(cmd)), "{cmd}");
    }
    let t = show(&d.ask("CLIENT TRACKING on"));
    assert!(
        t.starts_with("-ERR CLIENT TRACKING") && t.contains("not supported"),
        "{t}"
    );
    let help = show(&d.ask("CLIENT HELP"));
    for sub in [
        "UNBLOCK", "KILL", "PAUSE", "UNPAUSE", "REPLY", "NO-EVICT", "TRACKING",
    ] {
        assert!(help.contains(sub), "CLIENT HELP lacks {sub}: {help}");
    }
}

#[test]
fn client_kill_closes_blocked_and_idle_clients() {
    let dd = Server::start(&[]);
    let mut admin = dd.client();
    // A blocked client, killed by ID.
    let mut blocked = dd.raw();
    blocked.write_all(b"CLIENT ID\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = blocked.read(&mut buf).unwrap();
    let id: i64 = show(&buf[1..n]).trim().parse().unwrap();
    blocked.write_all(b"BDELAYPOP q 0\r\n").unwrap();
    wait_flag(&mut admin, id, "b");
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(n, 1);
    assert!(closed(&mut blocked), "the blocked client was not closed");
    // An idle client, killed by its address (the old form).
    let mut idle = dd.raw();
    idle.write_all(b"PING\r\n").unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
    let addr = idle.local_addr().unwrap().to_string();
    let ok: String = redis::cmd("CLIENT")
        .arg("KILL")
        .arg(&addr)
        .query(&mut admin)
        .unwrap();
    assert_eq!(ok, "OK");
    assert!(closed(&mut idle), "the idle client was not closed");
    // Filters count what they kill; SKIPME yes (the default) spares the caller.
    let others: Vec<TcpStream> = (0..3).map(|_| dd.raw()).collect();
    for mut c in others.iter().map(|c| c.try_clone().unwrap()) {
        c.write_all(b"PING\r\n").unwrap();
        let n = c.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"+PONG\r\n");
    }
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("USER")
        .arg("default")
        .query(&mut admin)
        .unwrap();
    assert_eq!(n, 3);
    for mut c in others {
        assert!(closed(&mut c));
    }
    let pong: String = redis::cmd("PING").query(&mut admin).unwrap();
    assert_eq!(pong, "PONG");
    // A member handed to no one is still there: the killed pop lost nothing.
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(0)
        .arg("m")
        .query(&mut admin)
        .unwrap();
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut admin).unwrap();
    assert_eq!(card, 1);
}

#[test]
fn pause_write_holds_writes_until_unpause_but_not_reads() {
    let dd = Server::start(&[]);
    let mut admin = dd.client();
    let ok: String = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    assert_eq!(ok, "OK");
    let mut writer = dd.raw();
    writer.write_all(b"DELAYADD q 0 m\r\n").unwrap();
    // Reads run while writes wait.
    let mut reader = dd.client();
    std::thread::sleep(Duration::from_millis(300));
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut reader).unwrap();
    assert_eq!(card, 0, "the DELAYADD ran during CLIENT PAUSE WRITE");
    writer.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(writer.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the DELAYADD was answered during the pause"
    );
    writer.set_nonblocking(false).unwrap();
    let ok: String = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut admin)
        .unwrap();
    assert_eq!(ok, "OK");
    let n = writer.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b":1\r\n");
    let card: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut reader).unwrap();
    assert_eq!(card, 1);
}

#[test]
fn client_reply_off_and_skip_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let script = |write: &str| {
        format!(
            "CLIENT REPLY SKIP\r\nPING a\r\nPING b\r\nCLIENT REPLY OFF\r\nPING c\r\n{write}\r\nNOSUCH\r\nCLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\nPING d\r\n"
        )
    };
    let mut got = Vec::new();
    for (port, write) in [(dd.port, "DELAYADD q 10 m"), (redis.port, "ZADD q 10 m")] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(script(write).as_bytes()).unwrap();
        let want = b"$1\r\nb\r\n+OK\r\n$1\r\nd\r\n";
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.len() < want.len() {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(show(&out), show(want), "port {port}");
        got.push(out);
    }
    assert_eq!(got[0], got[1]);
    // The silenced write ran.
    let mut c = Conn::open(dd.port, 2);
    assert_eq!(show(&c.ask("DELAYCARD q")), ":1\r\n");
}

/// A MONITOR line without its timestamp and client address.
fn strip(line: &str) -> String {
    line.split_once("] ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default()
}

#[test]
fn monitor_lines_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let mut got = Vec::new();
    for port in [dd.port, redis.port] {
        let mut m = TcpStream::connect(("127.0.0.1", port)).unwrap();
        m.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        m.write_all(b"MONITOR\r\n").unwrap();
        let mut buf = [0u8; 5];
        m.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+OK\r\n");
        let mut c = Conn::open(port, 2);
        c.ask("PING");
        c.ask("ECHO a\"b\\c\x01\x7f");
        c.ask("CONFIG GET maxclients");
        c.ask("MULTI");
        c.ask("PING x");
        c.ask("EXEC");
        c.ask("MULTI");
        c.ask("PING y");
        c.ask("DISCARD");
        c.ask("AUTH secret");
        c.ask("ECHO end");
        let mut text = String::new();
        let mut chunk = [0u8; 4096];
        while !text.contains("\"end\"\r\n") {
            let n = m.read(&mut chunk).unwrap();
            assert!(n > 0, "monitor closed: {text}");
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        for l in text.lines() {
            assert!(l.starts_with('+'), "{l}");
            let (ts, rest) = l[1..].split_once(' ').unwrap();
            let (s, us) = ts.split_once('.').unwrap();
            assert!(s.parse::<u64>().is_ok() && us.len() == 6, "{l}");
            assert!(rest.starts_with("[0 127.0.0.1:"), "{l}");
        }
        got.push(text.lines().map(strip).collect::<Vec<_>>());
    }
    assert_eq!(got[0], got[1]);
    assert!(
        got[0].contains(&"\"PING\" \"x\"".to_string()),
        "{:?}",
        got[0]
    );
}

#[test]
fn redis_cli_monitor_shows_other_clients_commands() {
    let Some(cli) = require_tool("redis-cli", "apt-get install -y redis-tools") else {
        return;
    };
    let dd = Server::start(&[]);
    let port = dd.port;
    let monitor = std::thread::spawn(move || {
        run_bounded(
            Command::new(cli).args(["-p", &port.to_string(), "monitor"]),
            None,
            Duration::from_secs(5),
        )
    });
    let mut admin = dd.client();
    // Wait until redis-cli is monitoring.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
        if list.contains("flags=O ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis-cli never monitored: {list}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(10)
        .arg("m")
        .query(&mut admin)
        .unwrap();
    let _: i64 = redis::cmd("DELAYCARD").arg("q").query(&mut admin).unwrap();
    let out = monitor.join().unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"OK"), "{}", out.describe());
    let shown: Vec<String> = lines[1..].iter().map(|l| strip(l)).collect();
    assert!(
        shown.contains(&"\"DELAYADD\" \"q\" \"10\" \"m\"".to_string())
            && shown.contains(&"\"DELAYCARD\" \"q\"".to_string()),
        "{}",
        out.describe()
    );
    assert!(lines[1].contains(" [0 127.0.0.1:"), "{}", out.describe());
}
