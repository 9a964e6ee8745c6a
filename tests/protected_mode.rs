//! Protected mode from outside. A non-loopback client needs a second
//! host: the test makes a network namespace with a veth pair, runs the
//! server (and, for the byte-for-byte check, a real redis-server) inside
//! it, and connects from the root namespace, so the server sees a
//! non-loopback peer. It needs root and `ip`; without them it fails under
//! CI and says SKIPPED otherwise. The namespace is removed when the test
//! ends, pass or fail.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use harness::{eventually, require_tool, run_bounded, show};

/// Redis 7.0's text (networking.c), which delayd sends as it is.
const DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is \
enabled and no password is set for the default user. In this mode connections are only \
accepted from the loopback interface. If you want to connect from external computers to \
Redis you may adopt one of the following solutions: 1) Just disable protected mode sending \
the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis \
from the same host the server is running, however MAKE SURE Redis is not publicly accessible \
from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) \
Alternatively you can just disable the protected mode by editing the Redis configuration \
file, and setting the protected mode option to 'no', and then restarting the server. 3) If \
you started the server manually just for testing, restart it with the '--protected-mode no' \
option. 4) Setup a an authentication password for the default user. NOTE: You only need to \
do one of the above things in order for the server to start accepting connections from the \
outside.\r\n";

/// A network namespace joined to the root one by a veth pair:
/// 10.213.N.1 inside, 10.213.N.2 outside. Deleted on drop.
struct Netns {
    name: String,
    inside: Ipv4Addr,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Netns {
    /// The namespace, or `None` (SKIPPED) where it cannot be made; under CI
    /// that fails the test.
    fn create() -> Option<Netns> {
        require_tool("ip", "apt-get install -y iproute2")?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 10_000;
        let name = format!("delayd-pm-{id}-{n}");
        let subnet = (id + n) % 250 + 1;
        let ns = Netns {
            name: name.clone(),
            inside: Ipv4Addr::new(10, 213, subnet as u8, 1),
        };
        let (a, b) = (format!("dpm{id}x{n}a"), format!("dpm{id}x{n}b"));
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &name])?;
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &b, "netns", &name])?;
            ip(&["addr", "add", &format!("10.213.{subnet}.2/24"), "dev", &a])?;
            ip(&["link", "set", &a, "up"])?;
            let inside = |args: &[&str]| {
                let mut v = vec!["netns", "exec", name.as_str(), "ip"];
                v.extend_from_slice(args);
                ip(&v)
            };
            inside(&["addr", "add", &format!("10.213.{subnet}.1/24"), "dev", &b])?;
            inside(&["link", "set", &b, "up"])?;
            inside(&["link", "set", "lo", "up"])?;
            Ok(())
        };
        match setup() {
            Ok(()) => Some(ns),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("cannot create a network namespace in CI (needs root): {why}")
            }
            Err(why) => {
                eprintln!("SKIPPED: cannot create a network namespace (needs root): {why}");
                None
            }
        }
    }

    /// Runs a program inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A server running inside a namespace, listening on every address;
/// killed on drop (`ip netns exec` execs it, so the child is the server).
struct Inside {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Inside {
    fn delayd(ns: &Netns, extra: &[&str]) -> Inside {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let port = harness::free_port();
        let child = ns
            .command(env!("CARGO_BIN_EXE_delayd"))
            .args(["--port", &port.to_string(), "--bind", "0.0.0.0", "--dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Inside::wait(child, ns, port, log, dir)
    }

    fn redis(ns: &Netns, bin: &std::path::Path) -> Inside {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let port = harness::free_port();
        let child = ns
            .command(bin.to_str().unwrap())
            .args(["--port", &port.to_string(), "--bind", "0.0.0.0"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Inside::wait(child, ns, port, log, dir)
    }

    fn wait(
        child: Child,
        ns: &Netns,
        port: u16,
        log: std::path::PathBuf,
        dir: tempfile::TempDir,
    ) -> Inside {
        let s = Inside {
            child,
            addr: SocketAddr::from((ns.inside, port)),
            log,
            _dir: dir,
        };
        let up = eventually(Duration::from_secs(20), || {
            TcpStream::connect_timeout(&s.addr, Duration::from_secs(1)).is_ok()
        });
        assert!(up, "server in {} did not start: {}", ns.name, s.log_text());
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends PING from the root namespace (a non-loopback peer) and reads
    /// everything until the server closes or 3 s pass.
    fn remote_ping(&self) -> Vec<u8> {
        let mut c = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = c.write_all(b"PING\r\n");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            // A served client gets its reply and stays connected.
            if got == b"+PONG\r\n" || got.starts_with(b"-NOAUTH") && got.ends_with(b"\r\n") {
                break;
            }
        }
        got
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// redis-cli run inside the namespace, from its loopback interface.
fn local_cli(ns: &Netns, cli: &std::path::Path, port: u16, args: &[&str]) -> String {
    let out = run_bounded(
        ns.command(cli.to_str().unwrap())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
        None,
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
    out.stdout.trim().to_string()
}

fn info_u64(ns: &Netns, cli: &std::path::Path, port: u16, key: &str) -> u64 {
    let info = local_cli(ns, cli, port, &["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {info}"))
}

#[test]
fn a_remote_client_is_denied_with_redis_text_and_a_local_one_is_served() {
    let Some(cli) = require_tool("redis-cli", "apt-get install -y redis-tools") else {
        return;
    };
    let Some(ns) = Netns::create() else {
        return;
    };
    let server = Inside::delayd(&ns, &[]);
    let port = server.addr.port();
    let before = info_u64(&ns, &cli, port, "rejected_connections");
    for _ in 0..2 {
        let got = server.remote_ping();
        assert_eq!(show(&got), DENIED, "a remote client with protected mode on");
    }
    // Loopback inside the namespace is served.
    assert_eq!(local_cli(&ns, &cli, port, &["PING"]), "PONG");
    assert_eq!(
        info_u64(&ns, &cli, port, "rejected_connections"),
        before + 2
    );
    // The log says why, once.
    let log = server.log_text();
    assert_eq!(log.matches("protected mode is on").count(), 1, "{log}");
    assert!(log.contains("Refused a connection from 10.213."), "{log}");

    // With Redis 7.0 itself in the same place, the bytes are the same.
    if let Some(bin) = require_tool("redis-server", "apt-get install -y redis-server") {
        let redis = Inside::redis(&ns, &bin);
        assert_eq!(show(&redis.remote_ping()), DENIED, "redis-server's text");
    }
}

#[test]
fn a_password_or_protected_mode_no_lets_remote_clients_in() {
    let Some(cli) = require_tool("redis-cli", "apt-get install -y redis-tools") else {
        return;
    };
    let Some(ns) = Netns::create() else {
        return;
    };
    let server = Inside::delayd(&ns, &[]);
    let port = server.addr.port();
    assert_eq!(show(&server.remote_ping()), DENIED);

    // A password: the remote client is let in, and must authenticate.
    local_cli(&ns, &cli, port, &["CONFIG", "SET", "requirepass", "s3cret"]);
    let got = show(&server.remote_ping());
    assert!(got.starts_with("-NOAUTH"), "{got}");
    local_cli(
        &ns,
        &cli,
        port,
        &[
            "-a",
            "s3cret",
            "--no-auth-warning",
            "CONFIG",
            "SET",
            "requirepass",
            "",
        ],
    );
    assert_eq!(show(&server.remote_ping()), DENIED, "no password again");
    // A password given to the ACL default user counts as well.
    local_cli(&ns, &cli, port, &["ACL", "SETUSER", "default", ">pw2"]);
    let got = show(&server.remote_ping());
    assert!(got.starts_with("-NOAUTH"), "{got}");
    local_cli(
        &ns,
        &cli,
        port,
        &[
            "--user",
            "default",
            "--pass",
            "pw2",
            "--no-auth-warning",
            "ACL",
            "SETUSER",
            "default",
            "nopass",
        ],
    );
    assert_eq!(
        show(&server.remote_ping()),
        DENIED,
        "default user nopass again"
    );

    // CONFIG SET protected-mode no from the loopback interface.
    assert_eq!(
        local_cli(&ns, &cli, port, &["CONFIG", "GET", "protected-mode"]),
        "protected-mode\nyes"
    );
    local_cli(&ns, &cli, port, &["CONFIG", "SET", "protected-mode", "no"]);
    assert_eq!(show(&server.remote_ping()), "+PONG\r\n");
    drop(server);

    // --protected-mode no at start.
    let open = Inside::delayd(&ns, &["--protected-mode", "no"]);
    assert_eq!(show(&open.remote_ping()), "+PONG\r\n");
    // --requirepass at start.
    let locked = Inside::delayd(&ns, &["--requirepass", "pw"]);
    assert!(show(&locked.remote_ping()).starts_with("-NOAUTH"));
}
