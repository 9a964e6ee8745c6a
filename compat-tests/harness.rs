//! Starts the real `delayd` binary on a free loopback port for black-box
//! tests, and finds the external tools the tests drive.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed when dropped.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    pub log: PathBuf,
}

/// A redis-rs connection with read and write timeouts, so no test can hang.
pub fn try_connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    con.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

/// [`try_connect`], failing the test if the server cannot be reached.
pub fn connect(url: &str) -> redis::Connection {
    try_connect(url).expect("connect")
}

/// A free loopback port, never the same twice in one test process.
///
/// A port found by binding port 0 is released at once, so the kernel may
/// hand it to the next caller too: two tests running in parallel would
/// then start servers on one port (or, worse, two clusters would talk to
/// each other). Remembering what was handed out rules that out.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        if claim_port(port) {
            return port;
        }
    }
}

/// A free loopback port below the kernel's ephemeral range, for a server
/// that must get the same port back after a restart: outgoing connections
/// take their local ports from the ephemeral range, so one of them could
/// hold a port found by [`free_port`] while its server is down.
pub fn stable_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread test processes apart, then walk up from there.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 100) as u16 * 120,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_768, "ran out of stable test ports");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim_port(port) {
            return port;
        }
    }
}

/// Records `port` as handed out; false if it already was.
fn claim_port(port: u16) -> bool {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static CLAIMED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    CLAIMED
        .get_or_init(Mutex::default)
        .lock()
        .map(|mut set| set.insert(port))
        .unwrap_or(false)
}

impl Server {
    /// Starts a server with a fresh data directory and extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on the given data directory (to restart on the same data).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        Server::start_on(dir, port, extra)
    }

    /// Starts a server on a given port and directory.
    pub fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Server {
        Server::launch(dir, port, extra, None)
    }

    /// Starts a server with a fresh data directory under an open-files
    /// limit of its own (`ulimit -n`, soft and hard), the test's left alone.
    pub fn start_with_nofile(nofile: u32, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = Server::launch(&dir, free_port(), extra, Some(nofile));
        s._tmp = Some(tmp);
        s
    }

    fn launch(dir: &Path, port: u16, extra: &[&str], nofile: Option<u32>) -> Server {
        std::fs::create_dir_all(dir).expect("data dir");
        let log = dir.with_extension(format!("{port}.log"));
        let logfile = std::fs::File::create(&log).expect("log file");
        let bin = env!("CARGO_BIN_EXE_delayd");
        let mut cmd = match nofile {
            None => Command::new(bin),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                sh
            }
        };
        let child = cmd
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .expect("start delayd");
        let pid = child.id();
        let mut s = Server {
            port,
            dir: dir.to_path_buf(),
            child: Some(child),
            _tmp: None,
            log,
        };
        if !s.wait_ready(pid) {
            // The port was taken between free_port() and the bind (tests
            // run in parallel): what answered was another test's server.
            // Start again on another port.
            s.kill9();
            return Server::launch(dir, free_port(), extra, nofile);
        }
        s
    }

    /// Whether process `pid` listens on `port` (its socket's inode in
    /// /proc/net/tcp is one of the process's descriptors), so a test never
    /// talks to another test's server that took the same port.
    fn listens(pid: u32, port: u16) -> bool {
        let want = format!(":{port:04X}");
        let Ok(mut table) = std::fs::read_to_string("/proc/net/tcp") else {
            return true; // no /proc: trust the answer
        };
        table.push_str(&std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default());
        let inodes: Vec<String> = table
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A").then(|| f[9].to_string())
            })
            .collect();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|t| {
                    inodes
                        .iter()
                        .any(|i| t.to_string_lossy() == format!("socket:[{i}]"))
                })
                .unwrap_or(false)
        })
    }

    /// Waits until our process answers on its port; false if it exited
    /// (another process holds the port).
    fn wait_ready(&mut self, pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                return false;
            }
            if !Server::listens(pid, self.port) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                if c.write_all(b"PING\r\n").is_ok() {
                    // With --requirepass the server is ready when it answers NOAUTH.
                    let mut line = String::new();
                    if BufReader::new(c).read_line(&mut line).is_ok()
                        && (line == "+PONG\r\n" || line.starts_with("-NOAUTH"))
                    {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("delayd did not start; log:\n{}", self.log_text());
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A redis-rs connection to this server.
    pub fn client(&self) -> redis::Connection {
        connect(&self.url())
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A raw TCP connection with a read timeout.
    pub fn raw(&self) -> TcpStream {
        let c = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// Kills the process with SIGKILL (a crash) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.as_ref()?.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        self.wait_exit(Duration::from_secs(20))
    }

    /// Waits for the process to exit by itself (after SHUTDOWN or SIGTERM);
    /// kills it if it has not within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Finds an external tool. When it is missing the test fails if `CI` is set
/// (CI installs every tool) and otherwise returns `None` after saying how to
/// install it, so a developer without the tool sees why the test did nothing.
pub fn require_tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("{name} is required in CI but missing; install it with: {install}")
        }
        None => {
            eprintln!("SKIPPED: {name} not found; install it with: {install}");
            None
        }
    }
}

/// Whether python3 can import the `redis` package; same rules as [`require_tool`].
pub fn require_redis_py() -> bool {
    if require_tool("python3", "apt-get install -y python3").is_none() {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("python package redis is required in CI; install it with: pip install redis");
        }
        eprintln!("SKIPPED: python package redis missing; install it with: pip install redis");
    }
    ok
}

/// Sends raw bytes and reads until `want` bytes or the timeout.
pub fn roundtrip(conn: &mut TcpStream, send: &[u8], want: usize) -> Vec<u8> {
    conn.write_all(send).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// Reads one CRLF-terminated line.
pub fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs a command with a time limit, capturing its output. The child is
/// killed when the limit passes; the returned status is then `None`.
pub fn run_bounded(cmd: &mut Command, stdin: Option<Vec<u8>>, limit: Duration) -> Bounded {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    let feeder = stdin.map(|data| {
        let mut w = child.stdin.take().expect("stdin");
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Bounded {
        status,
        stdout: String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
    }
}

/// What [`run_bounded`] captured.
#[derive(Debug)]
pub struct Bounded {
    /// `None` if the time limit passed and the child was killed.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Bounded {
    /// Whether the child exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Everything it printed, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Reads exactly one RESP2/RESP3 reply and returns its raw bytes (nested
/// aggregates included), so tests can compare replies byte for byte.
pub fn read_reply(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut out = Vec::new();
    read_reply_into(r, &mut out);
    out
}

fn read_reply_into(r: &mut BufReader<TcpStream>, out: &mut Vec<u8>) {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read reply line");
    assert!(
        line.ends_with(b"\r\n"),
        "truncated reply line: {:?}",
        String::from_utf8_lossy(&line)
    );
    out.extend_from_slice(&line);
    let body = &line[1..line.len() - 2];
    let n = || -> i64 {
        std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad length line {:?}", String::from_utf8_lossy(&line)))
    };
    match line[0] {
        b'$' | b'=' | b'!' => {
            let len = n();
            if len >= 0 {
                let mut data = vec![0u8; len as usize + 2];
                r.read_exact(&mut data).expect("read bulk");
                out.extend_from_slice(&data);
            }
        }
        b'*' | b'~' | b'>' => {
            for _ in 0..n().max(0) {
                read_reply_into(r, out);
            }
        }
        b'%' | b'|' => {
            for _ in 0..n().max(0) * 2 {
                read_reply_into(r, out);
            }
        }
        _ => {}
    }
}

/// A RESP request: an array of bulk strings.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// A real redis-server on a free loopback port, persisting nothing; killed
/// when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _cwd: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(bin: &Path) -> RedisServer {
        RedisServer::start_with(bin, &[])
    }

    /// Starts one with extra arguments (cluster mode, for one).
    pub fn start_with(bin: &Path, extra: &[&str]) -> RedisServer {
        let port = free_port();
        // Nothing is saved, but a working directory of its own keeps any
        // stray file out of the source tree.
        let cwd = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(extra)
            .current_dir(cwd.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let r = RedisServer {
            port,
            child,
            _cwd: cwd,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
                let mut c = Conn::wrap(c);
                if c.ask("PING") == b"+PONG\r\n" {
                    return r;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection that reads replies byte for byte.
pub struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    pub fn wrap(c: TcpStream) -> Conn {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            w: c.try_clone().unwrap(),
            r: BufReader::new(c),
        }
    }

    /// Connects and switches to `proto` (2 or 3).
    pub fn open(port: u16, proto: u8) -> Conn {
        let mut c = Conn::wrap(TcpStream::connect(("127.0.0.1", port)).expect("connect"));
        if proto == 3 {
            let hello = c.ask("HELLO 3");
            assert!(hello.starts_with(b"%"), "HELLO 3: {}", show(&hello));
        }
        c
    }

    /// Sends one command (words split on spaces) and reads its reply.
    pub fn ask(&mut self, cmd: &str) -> Vec<u8> {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        self.w.write_all(&resp(&args)).unwrap();
        read_reply(&mut self.r)
    }
}

/// Starts delayd and redis-server, or `None` (SKIPPED) without redis-server.
pub fn servers() -> Option<(Server, RedisServer)> {
    let bin = require_tool("redis-server", "apt-get install -y redis-server")?;
    Some((Server::start(&[]), RedisServer::start(&bin)))
}

/// A reply, printable.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it holds, for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A redis-server in cluster mode announcing 127.0.0.1, with its bus port
/// (chosen here: the default, port + 10000, may not exist), or `None`
/// (SKIPPED; a failure when `CI` is set) without redis-server.
pub fn cluster_redis() -> Option<(RedisServer, u16)> {
    let bin = require_tool("redis-server", "apt-get install -y redis-server")?;
    let bus = free_port();
    let bus_arg = bus.to_string();
    let redis = RedisServer::start_with(
        &bin,
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &bus_arg,
            "--cluster-announce-ip",
            "127.0.0.1",
        ],
    );
    Some((redis, bus))
}

/// A small deterministic generator (an LCG): the same sequence for the
/// same seed, so a failure can be replayed from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
