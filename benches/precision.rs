//! Firing precision of a running delayd: how late (and never early) members
//! are delivered to blocked consumers.
//!
//! Starts `target/release/delayd` (or `$DELAYD_BIN`) on a free loopback port
//! and, per scenario, schedules 100k members with `DELAYADD qN AT due member`
//! (exact due times, uniformly spread over 10 s starting 2 s after the start,
//! across 8 queues) from one producer connection, pipelined, while 8 consumer
//! threads loop on `DELAYPOP qN COUNT 100 BLOCK 0`. Each member carries its
//! due time; a consumer records `lateness = receive time - due` (wall clock,
//! µs precision, the same clock the server schedules by). Reported: p50,
//! p99, p99.9 and max lateness, members delivered early (must be 0), and
//! delivered == scheduled without duplicates.
//!
//! Scenarios: idle, and under a concurrent 50-connection DELAYADD load
//! (`redis-benchmark -c 50 DELAYADD load __rand_int__ m:__rand_int__`, on
//! another queue) for the whole scenario. About 30 s in all.
//!
//! Run: `cargo build --release && cargo bench --bench precision`.
//! Environment: `DELAYD_BIN`, `DELAYD_ARGS` (extra server flags, e.g.
//! `--io-threads 2`), `REDIS_BENCHMARK` (default `redis-benchmark`; the load
//! scenario is skipped if it is missing), `DELAYD_PRECISION_MEMBERS` (default
//! 100000), `DELAYD_PRECISION_SPREAD_MS` (default 10000),
//! `DELAYD_PRECISION_LOAD_CLIENTS` (default 50), `DELAYD_PRECISION_DUMP`
//! (a file to append `scenario,due_ms,lateness_ms` lines to, for plotting).
//!
//! The RESP client is written here (a tiny encoder and reply reader) so the
//! benchmark needs no dependency.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const QUEUES: usize = 8;
const POP_COUNT: usize = 100;
/// Time between the start of a scenario and the earliest due time, so the
/// producer has scheduled a member well before it is due.
const LEAD_MS: u64 = 2_000;
/// Commands per pipelined write of the producer.
const PIPELINE: usize = 256;
/// The member each consumer gets last: scheduled once everything is in.
const STOP: &[u8] = b"__stop__";

// ---------------------------------------------------------------- RESP ----

/// A RESP2 reply.
#[derive(Debug)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// Appends a command as a RESP array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    if r.read_until(b'\n', line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("reply line without CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(())
}

fn parse_num(s: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad number {:?}", String::from_utf8_lossy(s))))
}

/// Reads one reply.
fn read_reply(r: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = Vec::new();
    read_line(r, &mut line)?;
    let (&kind, rest) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
    Ok(match kind {
        b'+' => Resp::Simple(String::from_utf8_lossy(rest).into_owned()),
        b'-' => Resp::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Resp::Int(parse_num(rest)?),
        b'$' => {
            let n = parse_num(rest)?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut data = vec![0; n as usize + 2];
                r.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad("bulk without CRLF"));
                }
                data.truncate(n as usize);
                Resp::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = parse_num(rest)?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(r)?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return Err(bad(format!("unexpected reply type {:?}", kind as char))),
    })
}

/// A client connection.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn connect(port: u16) -> io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(64 * 1024, s.try_clone()?),
            w: s,
        })
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Resp> {
        let mut buf = Vec::new();
        encode(&mut buf, args);
        self.w.write_all(&buf)?;
        read_reply(&mut self.r)
    }
}

// --------------------------------------------------------------- utils ----

/// Wall-clock time in ms with µs precision.
fn now_ms_f64() -> f64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    d.as_micros() as f64 / 1000.0
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// splitmix64, deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Extra server flags from `$DELAYD_ARGS` (split on whitespace); the
/// default `--appendfsync everysec` applies unless they set it.
fn extra_args() -> Vec<String> {
    std::env::var("DELAYD_ARGS")
        .map(|v| v.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// A delayd process, killed if still running when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path) -> io::Result<Server> {
        let port = free_port();
        let log = dir.join("delayd.log");
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.join("data"))
            .args(
                if extra_args().iter().any(|a| a.starts_with("--appendfsync")) {
                    &[][..]
                } else {
                    &["--appendfsync", "everysec"][..]
                },
            )
            .args(extra_args())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()?;
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = Conn::connect(port)
                && matches!(c.call(&[b"PING"]), Ok(Resp::Simple(s)) if s == "PONG")
            {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "delayd exited at startup ({status}); see {}",
                    server.log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("delayd not ready after 10 s"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SHUTDOWN, waiting at most 10 s, then kill.
    fn stop(mut self) {
        if let Ok(mut c) = Conn::connect(self.port) {
            let _ = c.call(&[b"SHUTDOWN"]);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("delayd did not stop within 10 s of SHUTDOWN: killed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A redis-benchmark load process, killed when dropped.
struct Load {
    child: Child,
    log: PathBuf,
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_load(port: u16, dir: &Path) -> Option<Load> {
    let bin = std::env::var("REDIS_BENCHMARK").unwrap_or_else(|_| "redis-benchmark".into());
    let log = dir.join("load.log");
    let child = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-c",
            &env_or("DELAYD_PRECISION_LOAD_CLIENTS", 50).to_string(),
        ])
        .args(["-n", "2000000000", "-r", "100000000", "-q"])
        .args(["DELAYADD", "load", "__rand_int__", "m:__rand_int__"])
        .stdout(Stdio::null())
        .stderr(File::create(&log).ok()?)
        .spawn();
    match child {
        Ok(child) => Some(Load { child, log }),
        Err(e) => {
            eprintln!("cannot run {bin} ({e}): load scenario skipped");
            None
        }
    }
}

// ------------------------------------------------------------ scenario ----

#[derive(Default)]
struct ConsumerResult {
    lateness: Vec<f64>,
    /// Due time of each entry of `lateness`.
    dues: Vec<u64>,
    ids: Vec<u32>,
    errors: Vec<String>,
}

fn consume(port: u16, q: usize, delivered: Arc<AtomicU64>) -> ConsumerResult {
    let mut res = ConsumerResult::default();
    let mut conn = match Conn::connect(port) {
        Ok(c) => c,
        Err(e) => {
            res.errors.push(format!("q{q}: connect: {e}"));
            return res;
        }
    };
    let queue = format!("q{q}");
    let count = POP_COUNT.to_string();
    let mut cmd = Vec::new();
    encode(
        &mut cmd,
        &[
            b"DELAYPOP",
            queue.as_bytes(),
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            b"0",
        ],
    );
    loop {
        if let Err(e) = conn.w.write_all(&cmd) {
            res.errors.push(format!("q{q}: write: {e}"));
            return res;
        }
        let reply = read_reply(&mut conn.r);
        let at = now_ms_f64();
        let items = match reply {
            Ok(Resp::Array(Some(items))) => items,
            Ok(Resp::Array(None)) => continue, // a timeout; BLOCK 0 never gives one
            Ok(Resp::Error(e)) => {
                res.errors.push(format!("q{q}: DELAYPOP error: {e}"));
                return res;
            }
            Ok(other) => {
                res.errors.push(format!("q{q}: unexpected reply {other:?}"));
                return res;
            }
            Err(e) => {
                res.errors.push(format!("q{q}: read: {e}"));
                return res;
            }
        };
        let mut stop = false;
        let mut n = 0;
        for item in items {
            let Resp::Bulk(Some(m)) = item else {
                res.errors
                    .push(format!("q{q}: not a bulk member: {item:?}"));
                continue;
            };
            if m == STOP {
                stop = true;
                continue;
            }
            let parsed = std::str::from_utf8(&m).ok().and_then(|s| {
                let (due, id) = s.split_once(':')?;
                Some((due.parse::<u64>().ok()?, id.parse::<u32>().ok()?))
            });
            match parsed {
                Some((due, id)) => {
                    res.lateness.push(at - due as f64);
                    res.dues.push(due);
                    res.ids.push(id);
                    n += 1;
                }
                None => res.errors.push(format!(
                    "q{q}: foreign member {:?}",
                    String::from_utf8_lossy(&m)
                )),
            }
        }
        delivered.fetch_add(n, Ordering::Relaxed);
        if stop {
            return res;
        }
    }
}

struct ProducerResult {
    scheduled: u64,
    /// Members whose DELAYADD was acknowledged only after their due time.
    acked_after_due: u64,
    last_due: u64,
    seconds: f64,
    errors: Vec<String>,
}

fn produce(port: u16, members: u64, spread_ms: u64, start: u64) -> io::Result<ProducerResult> {
    let mut rng = Rng(0x5eed_0000 ^ start);
    let mut plan: Vec<(u64, u32, usize)> = (0..members as u32)
        .map(|id| {
            let due = start + LEAD_MS + rng.next() % spread_ms;
            (due, id, (rng.next() % QUEUES as u64) as usize)
        })
        .collect();
    // In due order, so the producer stays ahead of the clock.
    plan.sort_unstable();
    let mut conn = Conn::connect(port)?;
    let began = Instant::now();
    let mut res = ProducerResult {
        scheduled: 0,
        acked_after_due: 0,
        last_due: plan.last().map_or(start, |p| p.0),
        seconds: 0.0,
        errors: Vec::new(),
    };
    let queues: Vec<String> = (0..QUEUES).map(|q| format!("q{q}")).collect();
    let mut buf = Vec::with_capacity(PIPELINE * 80);
    for chunk in plan.chunks(PIPELINE) {
        buf.clear();
        for &(due, id, q) in chunk {
            let due_s = due.to_string();
            let member = format!("{due}:{id}");
            encode(
                &mut buf,
                &[
                    b"DELAYADD",
                    queues[q].as_bytes(),
                    b"AT",
                    due_s.as_bytes(),
                    member.as_bytes(),
                ],
            );
        }
        conn.w.write_all(&buf)?;
        for &(due, _, _) in chunk {
            match read_reply(&mut conn.r)? {
                Resp::Int(1) => res.scheduled += 1,
                other => res.errors.push(format!("DELAYADD replied {other:?}")),
            }
            if now_ms() > due {
                res.acked_after_due += 1;
            }
        }
    }
    res.seconds = began.elapsed().as_secs_f64();
    Ok(res)
}

struct Report {
    name: String,
    scheduled: u64,
    delivered: u64,
    duplicates: u64,
    early: u64,
    acked_after_due: u64,
    produce_s: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// The server's own measure (INFO's `delay_lateness_p99_us` and
    /// `_max_us`, in ms): from a member's due time to when the timer fired
    /// it, before any reply travels; the load's own members included.
    server_p99: f64,
    server_max: f64,
    load: String,
    errors: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run_scenario(bin: &Path, name: &str, with_load: bool) -> io::Result<Option<Report>> {
    let members = env_or("DELAYD_PRECISION_MEMBERS", 100_000);
    let spread_ms = env_or("DELAYD_PRECISION_SPREAD_MS", 10_000).max(1);
    let dir = tempfile::tempdir()?;
    let server = Server::start(bin, dir.path())?;
    let port = server.port;

    let load = if with_load {
        match start_load(port, dir.path()) {
            Some(l) => {
                // Let the load ramp up before anything is scheduled.
                thread::sleep(Duration::from_secs(1));
                Some(l)
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    let load_card_before = match &load {
        Some(_) => card(port, "load"),
        None => 0,
    };
    let load_started = Instant::now();

    let delivered = Arc::new(AtomicU64::new(0));
    let consumers: Vec<JoinHandle<ConsumerResult>> = (0..QUEUES)
        .map(|q| {
            let delivered = delivered.clone();
            thread::spawn(move || consume(port, q, delivered))
        })
        .collect();
    // Let every consumer block before the first member is due (the lead
    // time covers this; the sleep only keeps connection setup out of the
    // producer's way).
    thread::sleep(Duration::from_millis(100));

    let start = now_ms();
    let produced = produce(port, members, spread_ms, start)?;

    // Wait for everything, at most 5 s past the last due time.
    let deadline = produced.last_due + 5_000;
    while delivered.load(Ordering::Relaxed) < produced.scheduled && now_ms() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let load_rate = if load.is_some() {
        let added = card(port, "load").saturating_sub(load_card_before);
        format!(
            "~{:.0} DELAYADD/s",
            added as f64 / load_started.elapsed().as_secs_f64()
        )
    } else {
        "-".into()
    };
    let mut load_errors = Vec::new();
    if let Some(l) = load {
        let log = l.log.clone();
        drop(l);
        if let Ok(text) = std::fs::read_to_string(&log) {
            let text = text.trim();
            if !text.is_empty() {
                let first: String = text.lines().take(3).collect::<Vec<_>>().join(" | ");
                load_errors.push(format!("redis-benchmark load stderr: {first}"));
            }
        }
    }

    // Release the consumers: one stop member per queue, due now (after any
    // member still undelivered, which would be due earlier).
    {
        let mut c = Conn::connect(port)?;
        for q in 0..QUEUES {
            let queue = format!("q{q}");
            c.call(&[b"DELAYADD", queue.as_bytes(), b"0", STOP])?;
        }
    }
    let join_deadline = Instant::now() + Duration::from_secs(10);
    let (server_p99, server_max) = server_lateness(port);
    while consumers.iter().any(|h| !h.is_finished()) && Instant::now() < join_deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let hung = consumers.iter().any(|h| !h.is_finished());
    let server_log = server.log.clone();
    if hung {
        // Killing the server closes the sockets and unblocks the readers.
        drop(server);
    } else {
        server.stop();
    }
    let mut lateness = Vec::with_capacity(members as usize);
    let mut dump = Vec::new();
    let mut seen = vec![false; members as usize];
    let mut duplicates = 0;
    let mut errors = produced.errors;
    errors.extend(load_errors);
    if hung {
        errors.push(format!(
            "consumers still blocked 10 s after the stop members were scheduled; server killed (log {})",
            server_log.display()
        ));
    }
    for h in consumers {
        let r = h.join().expect("consumer thread");
        if std::env::var_os("DELAYD_PRECISION_DUMP").is_some() {
            dump.extend(r.dues.iter().copied().zip(r.lateness.iter().copied()));
        }
        lateness.extend(r.lateness);
        for id in r.ids {
            match seen.get_mut(id as usize) {
                Some(s) if *s => duplicates += 1,
                Some(s) => *s = true,
                None => errors.push(format!("unknown member id {id}")),
            }
        }
        errors.extend(r.errors);
    }
    if let Some(path) = std::env::var_os("DELAYD_PRECISION_DUMP") {
        dump.sort_by_key(|d| d.0);
        let mut text = String::new();
        for (due, late) in dump {
            text.push_str(&format!("{name},{due},{late:.3}\n"));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(text.as_bytes())?;
    }
    lateness.sort_by(f64::total_cmp);
    let early = lateness.iter().filter(|&&l| l < 0.0).count() as u64;
    Ok(Some(Report {
        name: name.into(),
        scheduled: produced.scheduled,
        delivered: lateness.len() as u64,
        duplicates,
        early,
        acked_after_due: produced.acked_after_due,
        produce_s: produced.seconds,
        p50: percentile(&lateness, 50.0),
        p99: percentile(&lateness, 99.0),
        p999: percentile(&lateness, 99.9),
        max: lateness.last().copied().unwrap_or(f64::NAN),
        server_p99,
        server_max,
        load: load_rate,
        errors,
    }))
}

/// INFO's `delay_lateness_p99_us` and `delay_lateness_max_us`, in ms (NaN
/// if they cannot be read).
fn server_lateness(port: u16) -> (f64, f64) {
    let info = match Conn::connect(port).and_then(|mut c| c.call(&[b"INFO", b"delay"])) {
        Ok(Resp::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
        _ => return (f64::NAN, f64::NAN),
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |us| us / 1000.0)
    };
    (
        field("delay_lateness_p99_us"),
        field("delay_lateness_max_us"),
    )
}

fn card(port: u16, q: &str) -> u64 {
    match Conn::connect(port).and_then(|mut c| c.call(&[b"DELAYCARD", q.as_bytes()])) {
        Ok(Resp::Int(n)) => n as u64,
        _ => 0,
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // then this (30 s, needs a release build) is skipped.
    if !std::env::args().any(|a| a == "--bench") {
        println!("precision: skipped (run with `cargo bench --bench precision`)");
        return ExitCode::SUCCESS;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("DELAYD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/delayd"));
    if !bin.exists() {
        eprintln!(
            "{} not found: run `cargo build --release` first (or set DELAYD_BIN)",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    warn_if_stale(&bin, &root.join("src"));

    let members = env_or("DELAYD_PRECISION_MEMBERS", 100_000);
    let spread = env_or("DELAYD_PRECISION_SPREAD_MS", 10_000);
    println!(
        "firing precision: {members} members over {spread} ms across {QUEUES} queues, \
         {QUEUES} consumers in DELAYPOP COUNT {POP_COUNT} BLOCK 0; binary {} {}",
        bin.display(),
        extra_args().join(" ")
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average before: {}", load.trim());
    }
    let mut reports = Vec::new();
    for (name, with_load) in [("idle", false), ("under load", true)] {
        eprintln!("scenario: {name} ...");
        match run_scenario(&bin, name, with_load) {
            Ok(Some(r)) => reports.push(r),
            Ok(None) => {}
            Err(e) => {
                eprintln!("scenario {name} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average after: {}", load.trim());
    }
    println!();
    println!(
        "| scenario | concurrent load | scheduled | delivered | duplicates | early | acked after due | p50 ms | p99 ms | p99.9 ms | max ms | server p99 ms | server max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for r in &reports {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            r.name,
            r.load,
            r.scheduled,
            r.delivered,
            r.duplicates,
            r.early,
            r.acked_after_due,
            r.p50,
            r.p99,
            r.p999,
            r.max,
            r.server_p99,
            r.server_max
        );
    }
    println!();
    for r in &reports {
        println!(
            "{}: producer scheduled {} members in {:.2} s",
            r.name, r.scheduled, r.produce_s
        );
        if r.early > 0 {
            println!("FAIL {}: {} members delivered early", r.name, r.early);
            ok = false;
        }
        if r.delivered != r.scheduled || r.scheduled != members || r.duplicates > 0 {
            println!(
                "FAIL {}: scheduled {} of {members}, delivered {}, duplicates {}",
                r.name, r.scheduled, r.delivered, r.duplicates
            );
            ok = false;
        }
        for e in r.errors.iter().take(10) {
            println!("error ({}): {e}", r.name);
            ok = false;
        }
        if r.errors.len() > 10 {
            println!("... and {} more errors", r.errors.len() - 10);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Warns when the binary is older than the newest source file.
fn warn_if_stale(bin: &Path, src: &Path) {
    fn newest(dir: &Path) -> Option<SystemTime> {
        let mut best = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let path = e.path();
            let t = if path.is_dir() {
                newest(&path)
            } else {
                e.metadata().and_then(|m| m.modified()).ok()
            };
            best = best.max(t);
        }
        best
    }
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(src)) = (built, newest(src))
        && src > built
    {
        eprintln!(
            "warning: {} is older than the sources; run `cargo build --release`",
            bin.display()
        );
    }
}
