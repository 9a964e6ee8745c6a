//! Operability: DELAYINFO and INFO figures, the Prometheus endpoint, the
//! configuration file, and a clean stop under load. The real binary on
//! loopback, driven by the `redis` crate and plain TCP.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Server, eventually};

/// The firing-lateness bucket bounds in seconds (the engine's, in µs / 1e6).
const BOUNDS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0,
];

/// INFO as a field map.
fn info(con: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn info_u64(info: &HashMap<String, String>, field: &str) -> u64 {
    info.get(field)
        .unwrap_or_else(|| panic!("INFO has no {field}: {info:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO {field} is not a number: {info:?}"))
}

/// DELAYINFO as a field map (`None` for a null field).
fn delayinfo(con: &mut redis::Connection, key: &str) -> HashMap<String, Option<i64>> {
    redis::cmd("DELAYINFO").arg(key).query(con).unwrap()
}

fn field(info: &HashMap<String, Option<i64>>, name: &str) -> i64 {
    info.get(name)
        .copied()
        .flatten()
        .unwrap_or_else(|| panic!("DELAYINFO has no {name}: {info:?}"))
}

// ---------------------------------------------------------------- DELAYINFO

#[test]
fn delayinfo_counts_adds_pops_acks_lease_expiries_and_dead_letters() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let t0 = harness::now_ms();
    let added: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(0)
        .arg("a")
        .arg(0)
        .arg("b")
        .arg(0)
        .arg("c")
        .arg(60_000)
        .arg("later")
        .query(&mut con)
        .unwrap();
    assert_eq!(added, 4);
    let i = delayinfo(&mut con, "q");
    assert_eq!(field(&i, "pending"), 4, "{i:?}");
    assert_eq!(field(&i, "ready"), 3, "{i:?}");
    assert_eq!(field(&i, "leased"), 0, "{i:?}");
    assert_eq!(field(&i, "added"), 4, "{i:?}");
    let next = field(&i, "next-due-ms") as u64;
    assert!(
        next >= t0 + 60_000 && next <= harness::now_ms() + 60_000,
        "next-due-ms {next} vs added at {t0}"
    );
    std::thread::sleep(Duration::from_millis(60));
    let i = delayinfo(&mut con, "q");
    assert!(field(&i, "oldest-ready-age-ms") >= 50, "{i:?}");

    // A plain pop removes.
    let got: Vec<String> = redis::cmd("DELAYPOP").arg("q").query(&mut con).unwrap();
    assert_eq!(got, ["a"]);
    // A leased pop, acknowledged.
    let got: Vec<String> = redis::cmd("DELAYPOP")
        .arg("q")
        .arg("LEASE")
        .arg(10_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["b"]);
    assert_eq!(field(&delayinfo(&mut con, "q"), "leased"), 1);
    let acked: i64 = redis::cmd("DELAYACK")
        .arg("q")
        .arg("b")
        .query(&mut con)
        .unwrap();
    assert_eq!(acked, 1);
    // A leased pop that is never acknowledged, with one delivery allowed.
    let pop_dl = |con: &mut redis::Connection| -> Vec<String> {
        redis::cmd("DELAYPOP")
            .arg("q")
            .arg("LEASE")
            .arg(100)
            .arg("RETRIES")
            .arg(1)
            .arg("DEADLETTER")
            .arg("dlq")
            .query(con)
            .unwrap()
    };
    assert_eq!(pop_dl(&mut con), ["c"]);
    let i = delayinfo(&mut con, "q");
    assert_eq!(
        (
            field(&i, "leased"),
            field(&i, "ready"),
            field(&i, "pending")
        ),
        (1, 0, 2),
        "{i:?}"
    );
    // The lease runs out: the member is due again.
    assert!(
        eventually(Duration::from_secs(5), || {
            field(&delayinfo(&mut con, "q"), "expired-leases") == 1
        }),
        "the lease never expired: {:?}",
        delayinfo(&mut con, "q")
    );
    let i = delayinfo(&mut con, "q");
    assert_eq!(field(&i, "ready"), 1, "{i:?}");
    // Its next delivery would be the second: it goes to the dead-letter queue.
    assert!(pop_dl(&mut con).is_empty());
    let i = delayinfo(&mut con, "q");
    assert_eq!(field(&i, "pending"), 1, "{i:?}");
    assert_eq!(field(&i, "ready"), 0, "{i:?}");
    assert_eq!(field(&i, "leased"), 0, "{i:?}");
    assert_eq!(field(&i, "added"), 4, "{i:?}");
    assert_eq!(field(&i, "popped"), 3, "{i:?}");
    assert_eq!(field(&i, "acked"), 1, "{i:?}");
    assert_eq!(field(&i, "expired-leases"), 1, "{i:?}");
    assert_eq!(field(&i, "dead-lettered"), 1, "{i:?}");
    assert_eq!(field(&i, "oldest-ready-age-ms"), 0, "{i:?}");
    let d = delayinfo(&mut con, "dlq");
    assert_eq!((field(&d, "pending"), field(&d, "ready")), (1, 1), "{d:?}");
    let got: Vec<String> = redis::cmd("DELAYPOP").arg("dlq").query(&mut con).unwrap();
    assert_eq!(got, ["c"]);

    // INFO's delay section adds up every queue.
    let inf = info(&mut con, "delay");
    assert_eq!(info_u64(&inf, "delay_queues"), 1, "{inf:?}");
    assert_eq!(info_u64(&inf, "delay_pending"), 1, "{inf:?}");
    assert_eq!(info_u64(&inf, "delay_added"), 5, "{inf:?}"); // 4 + 1 into dlq
    assert_eq!(info_u64(&inf, "delay_popped"), 4, "{inf:?}");
    assert_eq!(info_u64(&inf, "delay_acked"), 1, "{inf:?}");
    assert_eq!(info_u64(&inf, "delay_expired_leases"), 1, "{inf:?}");
    assert_eq!(info_u64(&inf, "delay_dead_lettered"), 1, "{inf:?}");

    // A queue that never existed: zeros and no next due time.
    let none = delayinfo(&mut con, "nope");
    assert_eq!(field(&none, "pending"), 0);
    assert_eq!(none.get("next-due-ms"), Some(&None), "{none:?}");
}

// --------------------------------------------------------------------- INFO

/// Pops one member that the timing wheel fires to a blocked consumer,
/// `delay_ms` after it is added.
fn fire_to_blocked_consumer(server: &Server, key: &str, delay_ms: u64) {
    let mut consumer = server.client();
    let key_c = key.to_string();
    let popper = std::thread::spawn(move || -> Option<Vec<String>> {
        redis::cmd("DELAYPOP")
            .arg(&key_c)
            .arg("BLOCK")
            .arg(5000)
            .query(&mut consumer)
            .unwrap()
    });
    let mut con = server.client();
    assert!(
        eventually(Duration::from_secs(5), || {
            info_u64(&info(&mut con, "clients"), "blocked_clients") == 1
        }),
        "the consumer never blocked"
    );
    let _: i64 = redis::cmd("DELAYADD")
        .arg(key)
        .arg(delay_ms)
        .arg("fired")
        .query(&mut con)
        .unwrap();
    let got = popper.join().unwrap();
    assert_eq!(got, Some(vec!["fired".to_string()]));
}

#[test]
fn info_fields_are_present_and_sensible() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let all = info(&mut con, "all");
    for f in [
        "redis_version",
        "tcp_port",
        "uptime_in_seconds",
        "config_file",
        "connected_clients",
        "blocked_clients",
        "maxclients",
        "used_memory_rss",
        "loading",
        "aof_last_write_status",
        "last_fsync_status",
        "store_disk_bytes",
        "storage_error",
        "recovery_duration_ms",
        "total_connections_received",
        "total_commands_processed",
        "rejected_connections",
        "delay_queues",
        "delay_pending",
        "delay_ready",
        "delay_leased",
        "delay_in_memory",
        "delay_wheel_entries",
        "delay_horizon_ms",
        "delay_expired_leases",
        "delay_dead_lettered",
        "delay_fired",
        "delay_lateness_p50_us",
        "delay_lateness_p99_us",
        "delay_lateness_max_us",
    ] {
        assert!(all.contains_key(f), "INFO has no {f}: {all:?}");
    }
    assert_eq!(all["loading"], "0");
    assert_eq!(all["aof_last_write_status"], "ok");
    assert_eq!(all["storage_error"], "");
    assert_eq!(info_u64(&all, "tcp_port"), u64::from(server.port));
    assert!(info_u64(&all, "connected_clients") >= 1);
    assert!(info_u64(&all, "used_memory_rss") > 0);
    assert_eq!(info_u64(&all, "delay_horizon_ms"), 172_800_000);
    assert_eq!(info_u64(&all, "delay_horizon_max_ms"), 172_800_000);
    assert_eq!(info_u64(&all, "delay_hot_max_members"), 1_000_000);
    assert!(!all.contains_key("db0"), "no queue yet, no keyspace line");

    // Three queues: one due now, one in an hour, one leased.
    let _: i64 = redis::cmd("DELAYADD")
        .arg("now")
        .arg(0)
        .arg("x")
        .arg(0)
        .arg("y")
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("DELAYADD")
        .arg("later")
        .arg(3_600_000)
        .arg("z")
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("DELAYADD")
        .arg("work")
        .arg(0)
        .arg("w")
        .query(&mut con)
        .unwrap();
    let _: Vec<String> = redis::cmd("DELAYPOP")
        .arg("work")
        .arg("LEASE")
        .arg(60_000)
        .query(&mut con)
        .unwrap();
    let all = info(&mut con, "all");
    assert_eq!(
        all.get("db0").map(String::as_str),
        Some("keys=3,expires=0,avg_ttl=0")
    );
    assert_eq!(info_u64(&all, "delay_queues"), 3);
    assert_eq!(info_u64(&all, "delay_pending"), 4);
    assert_eq!(info_u64(&all, "delay_ready"), 2);
    assert_eq!(info_u64(&all, "delay_leased"), 1);
    // x, y, w and z (an hour ahead) are within the horizon, in memory.
    assert!(info_u64(&all, "delay_in_memory") >= 3, "{all:?}");
    assert!(info_u64(&all, "delay_wheel_entries") >= 1, "{all:?}"); // w's lease
    assert_eq!(info_u64(&all, "delay_added"), 4);
    assert_eq!(info_u64(&all, "delay_popped"), 1);
    assert!(info_u64(&all, "total_commands_processed") >= 5);
    assert!(
        info_u64(&all, "store_disk_bytes") > 0,
        "the store takes no disk after writes: {all:?}"
    );
    // Sections can be asked for one by one.
    let only = info(&mut con, "keyspace");
    assert_eq!(only.len(), 1, "{only:?}");

    // A member fired by the timing wheel to a blocked consumer is measured.
    let before = info_u64(&info(&mut con, "delay"), "delay_fired");
    fire_to_blocked_consumer(&server, "late", 150);
    let d = info(&mut con, "delay");
    let fired = info_u64(&d, "delay_fired");
    assert!(fired > before, "no firing recorded: {d:?}");
    let (p50, p99, max) = (
        info_u64(&d, "delay_lateness_p50_us"),
        info_u64(&d, "delay_lateness_p99_us"),
        info_u64(&d, "delay_lateness_max_us"),
    );
    assert!(p50 <= p99 && p99 <= max, "{d:?}");
    assert!(max < 5_000_000, "fired more than 5 s late: {d:?}");
}

// ------------------------------------------------------------------ metrics

/// One HTTP exchange over plain TCP: `(status line, headers, body)`.
fn http(port: u16, request: &[u8]) -> (String, String, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn scrape(port: u16) -> String {
    let (status, headers, body) = http(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(
        headers.contains(&format!("Content-Length: {}", body.len())),
        "{headers}"
    );
    body
}

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    name: String,
    labels: String,
    value: f64,
}

/// A scrape as parsed by the Prometheus project's Python parsers.
struct Parsed {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Parsed {
    fn named(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    fn value(&self, name: &str) -> f64 {
        match self.named(name).as_slice() {
            [s] => s.value,
            other => panic!("{name}: expected one sample, found {other:?}"),
        }
    }
}

/// Whether python3 with `prometheus_client` is here; same rules as the
/// harness's tools (missing fails in CI, skips elsewhere).
fn require_prometheus_client() -> bool {
    if harness::require_tool("python3", "apt-get install -y python3").is_none() {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "python package prometheus_client is required in CI; install it with: pip install prometheus-client"
            );
        }
        eprintln!(
            "SKIPPED: python package prometheus_client missing; install it with: pip install prometheus-client"
        );
    }
    ok
}

fn parse(text: &str) -> Parsed {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics_parse.py");
    let out = harness::run_bounded(
        Command::new("python3").arg(script),
        Some(text.as_bytes().to_vec()),
        Duration::from_secs(60),
    );
    assert!(
        out.success(),
        "the exposition does not parse: {}\n--- exposition ---\n{text}",
        out.describe()
    );
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in out.stdout.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["F", name, kind] => {
                types.insert(name.to_string(), kind.to_string());
            }
            ["S", family, name, labels, value] => samples.push(Sample {
                family: family.to_string(),
                name: name.to_string(),
                labels: labels.to_string(),
                value: value.parse().expect("a sample value"),
            }),
            other => panic!("unexpected parser output {other:?}"),
        }
    }
    Parsed { types, samples }
}

/// `hot-max-members` bounds the members in memory: past it the horizon
/// shrinks and the members due furthest out move to disk, found, scored and
/// delivered as before, and nothing is lost across a kill -9; CONFIG SET
/// changes the budget at run time.
#[test]
fn the_hot_budget_bounds_memory_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--hot-max-members", "200", "--appendfsync", "always"];
    let mut server = Server::start_in(dir.path(), &flags);
    let mut con = server.client();
    // 2,000 members over the next hour, in 20 commands of 100.
    for batch in 0..20u64 {
        let mut cmd = redis::cmd("DELAYADD");
        cmd.arg("orders");
        for i in 0..100u64 {
            let n = batch * 100 + i;
            cmd.arg(1_000 + n * 1_800).arg(format!("order:{n}"));
        }
        let added: i64 = cmd.query(&mut con).unwrap();
        assert_eq!(added, 100);
    }
    let all = info(&mut con, "delay");
    assert!(info_u64(&all, "delay_in_memory") <= 200, "{all:?}");
    assert!(info_u64(&all, "delay_horizon_ms") < 3_600_000, "{all:?}");
    assert_eq!(info_u64(&all, "delay_pending"), 2_000);
    // Members on disk are found: re-adding one is not a new member.
    let again: i64 = redis::cmd("DELAYADD")
        .arg("orders")
        .arg("NX")
        .arg(5)
        .arg("order:1999")
        .query(&mut con)
        .unwrap();
    assert_eq!(again, 0);
    let score: Option<u64> = redis::cmd("DELAYSCORE")
        .arg("orders")
        .arg("order:1999")
        .query(&mut con)
        .unwrap();
    assert!(score.is_some());

    server.kill9();
    let server = Server::start_in(dir.path(), &flags);
    let mut con = server.client();
    let card: u64 = redis::cmd("DELAYCARD")
        .arg("orders")
        .query(&mut con)
        .unwrap();
    assert_eq!(card, 2_000);
    let all = info(&mut con, "delay");
    assert!(info_u64(&all, "delay_in_memory") <= 200, "{all:?}");
    // The first members come due within seconds and are delivered.
    let got: Option<Vec<String>> = redis::cmd("DELAYPOP")
        .arg("orders")
        .arg("BLOCK")
        .arg(10_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(got, Some(vec!["order:0".to_string()]));

    // A smaller budget at run time moves members out at once.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hot-max-members")
        .arg(50)
        .query(&mut con)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hot-max-members")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, vec!["hot-max-members", "50"]);
    let all = info(&mut con, "delay");
    assert!(info_u64(&all, "delay_in_memory") <= 50, "{all:?}");
    assert_eq!(info_u64(&all, "delay_pending"), 1_999);
}

#[test]
fn metrics_endpoint_serves_parseable_bounded_prometheus_text() {
    let mport = harness::free_port();
    let mut server = Server::start(&[
        "--metrics-port",
        &mport.to_string(),
        "--metrics-top-queues",
        "10",
    ]);
    let mut con = server.client();
    // 200 queues, queue i with i + 1 due members: the top 10 are q190..q199.
    let mut pipe = redis::pipe();
    for i in 0..200u64 {
        let mut cmd = redis::cmd("DELAYADD");
        cmd.arg(format!("q{i}"));
        for m in 0..=i {
            cmd.arg(0).arg(format!("m{m}"));
        }
        pipe.add_command(cmd).ignore();
    }
    let () = pipe.query(&mut con).unwrap();
    let members: u64 = (1..=200).sum();
    // Something the timing wheel fires, for the lateness histogram.
    fire_to_blocked_consumer(&server, "late", 100);

    // Bounded: a wrong path, a wrong method, garbage, a head over the limit.
    let (status, _, _) = http(mport, b"GET /nope HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = http(mport, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("Allow: GET, HEAD"), "{headers}");
    let (status, _, _) = http(mport, b"hello\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let mut c = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(&big); // may fail once the server has answered and closed
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    assert!(
        // 431 since the listener is hyper's (the status made for it).
        resp.starts_with(b"HTTP/1.1 400 Bad Request")
            || resp.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large")
            || resp.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    // A client that sends nothing is dropped after the read timeout.
    let mut idle = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an idle client got data");
    assert!(started.elapsed() < Duration::from_secs(12));
    // HEAD: the headers only.
    let (status, _, body) = http(mport, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty());

    let text = scrape(mport);
    let fired = info_u64(&info(&mut con, "delay"), "delay_fired");
    assert!(
        text.ends_with("# EOF\n"),
        "not a complete OpenMetrics exposition"
    );
    if !require_prometheus_client() {
        return;
    }
    let p = parse(&text);

    for (family, kind) in [
        ("delayd_build", "info"),
        ("delayd_connected_clients", "gauge"),
        ("delayd_blocked_clients", "gauge"),
        ("delayd_commands_processed", "counter"),
        ("delayd_connections_received", "counter"),
        ("delayd_rejected_connections", "counter"),
        ("delayd_memory_rss_bytes", "gauge"),
        ("delayd_fsyncs", "counter"),
        ("delayd_last_fsync_success", "gauge"),
        ("delayd_last_fsync_timestamp_seconds", "gauge"),
        ("delayd_storage_error", "gauge"),
        ("delayd_store_disk_bytes", "gauge"),
        ("delayd_recovery_duration_seconds", "gauge"),
        ("delayd_queues", "gauge"),
        ("delayd_members_pending", "gauge"),
        ("delayd_members_ready", "gauge"),
        ("delayd_members_leased", "gauge"),
        ("delayd_members_in_memory", "gauge"),
        ("delayd_wheel_entries", "gauge"),
        ("delayd_horizon_seconds", "gauge"),
        ("delayd_expired_leases", "counter"),
        ("delayd_dead_lettered", "counter"),
        ("delayd_members_added", "counter"),
        ("delayd_members_popped", "counter"),
        ("delayd_members_acked", "counter"),
        ("delayd_queue_pending", "gauge"),
        ("delayd_queue_ready", "gauge"),
        ("delayd_firing_lateness_seconds", "histogram"),
    ] {
        assert_eq!(
            p.types.get(family).map(String::as_str),
            Some(kind),
            "family {family}"
        );
    }

    // The same figures as INFO.
    assert_eq!(p.value("delayd_queues"), 200.0);
    assert_eq!(p.value("delayd_members_pending"), members as f64);
    assert_eq!(p.value("delayd_members_ready"), members as f64);
    assert_eq!(p.value("delayd_members_leased"), 0.0);
    assert_eq!(p.value("delayd_members_added_total"), (members + 1) as f64);
    assert_eq!(p.value("delayd_members_popped_total"), 1.0);
    assert_eq!(p.value("delayd_storage_error"), 0.0);
    assert_eq!(p.value("delayd_last_fsync_success"), 1.0);
    assert_eq!(p.value("delayd_horizon_seconds"), 172_800.0);
    assert!(p.value("delayd_connected_clients") >= 1.0);
    assert!(p.value("delayd_commands_processed_total") >= 200.0);
    assert!(p.value("delayd_connections_received_total") >= 2.0);
    assert!(p.value("delayd_store_disk_bytes") > 0.0);
    assert!(p.value("delayd_memory_rss_bytes") > 0.0);
    let version = p.named("delayd_build_info");
    assert_eq!(version.len(), 1);
    assert_eq!(
        version[0].labels,
        format!("version={}", env!("CARGO_PKG_VERSION"))
    );

    // Per-queue gauges: only the 10 largest backlogs.
    for name in ["delayd_queue_pending", "delayd_queue_ready"] {
        let per: HashMap<String, f64> = p
            .named(name)
            .iter()
            .map(|s| (s.labels.clone(), s.value))
            .collect();
        assert_eq!(per.len(), 10, "{name}: {per:?}");
        for i in 190..200u64 {
            assert_eq!(
                per.get(&format!("queue=q{i}")),
                Some(&((i + 1) as f64)),
                "{name}: {per:?}"
            );
        }
    }

    // The lateness histogram: the engine's buckets, in seconds, cumulative.
    let buckets: Vec<&Sample> = p.named("delayd_firing_lateness_seconds_bucket");
    assert!(
        buckets
            .iter()
            .all(|s| s.family == "delayd_firing_lateness_seconds")
    );
    let les: Vec<f64> = buckets
        .iter()
        .map(|s| {
            s.labels
                .strip_prefix("le=")
                .expect("an le label")
                .parse::<f64>()
                .unwrap()
        })
        .collect();
    let mut want = BOUNDS_S.to_vec();
    want.push(f64::INFINITY);
    assert_eq!(les, want);
    let counts: Vec<f64> = buckets.iter().map(|s| s.value).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    let count = p.value("delayd_firing_lateness_seconds_count");
    assert_eq!(count, fired as f64, "histogram count vs INFO delay_fired");
    assert!(count >= 1.0, "the fired member is not counted");
    assert_eq!(counts.last().copied(), Some(count));
    assert!(p.value("delayd_firing_lateness_seconds_sum") >= 0.0);

    // The metrics listener does not hold up a clean stop.
    assert_eq!(server.terminate(), Some(0));
    assert!(TcpStream::connect(("127.0.0.1", mport)).is_err());
}

// --------------------------------------------------------------- config file

/// A delayd started directly (not through the harness, which passes
/// `--port` and `--dir`); killed when dropped.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], stderr: PathBuf) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_delayd"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start delayd");
        Proc { child, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the process to exit; its exit code, `None` if it did not.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits until the server answers on `port` (NOAUTH counts).
    fn wait_ready(&mut self, port: u16) {
        let ok = eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut c| {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 64];
                c.write_all(b"PING\r\n").is_ok()
                    && c.read(&mut buf).is_ok_and(|n| {
                        buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
                    })
            })
        });
        assert!(ok, "delayd did not start; log:\n{}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn config_file_sets_options_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let data = tmp.path().join("data dir");
    let conf = tmp.path().join("delayd.conf");
    std::fs::write(
        &conf,
        format!(
            "# delayd test configuration\n\
             \n\
             port {port}\n\
             bind 127.0.0.1\n\
             dir \"{}\"\n\
             APPENDFSYNC always\n\
             maxclients 77\n\
             # a quoted value with a space\n\
             requirepass \"s3cret pass\"\n\
             loglevel 'warning'\n\
             metrics-top-queues 5\n\
             horizon-ms 60000\n",
            data.display()
        ),
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();
    let mut p = Proc::spawn(
        &["--config", conf_s, "--maxclients", "88"],
        tmp.path().join("stderr.log"),
    );
    p.wait_ready(port);
    let mut con = harness::connect(&format!("redis://127.0.0.1:{}/", port));
    let denied: redis::RedisResult<String> = redis::cmd("PING").query(&mut con);
    assert!(denied.is_err(), "requirepass from the file is not in force");
    let () = redis::cmd("AUTH")
        .arg("s3cret pass")
        .query(&mut con)
        .unwrap();
    let get = |con: &mut redis::Connection, name: &str| -> String {
        let m: HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(con)
            .unwrap();
        m.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("CONFIG GET {name}: {m:?}"))
    };
    assert_eq!(get(&mut con, "port"), port.to_string());
    assert_eq!(get(&mut con, "bind"), "127.0.0.1");
    assert_eq!(get(&mut con, "dir"), data.display().to_string());
    assert_eq!(get(&mut con, "appendfsync"), "always");
    assert_eq!(
        get(&mut con, "maxclients"),
        "88",
        "the flag overrides the file"
    );
    assert_eq!(get(&mut con, "requirepass"), "s3cret pass");
    assert_eq!(get(&mut con, "loglevel"), "warning");
    assert_eq!(get(&mut con, "metrics-top-queues"), "5");
    assert_eq!(get(&mut con, "metrics-port"), "");
    assert_eq!(get(&mut con, "horizon-ms"), "60000");
    assert!(data.is_dir(), "the store is not in the file's dir");
    let server = info(&mut con, "server");
    assert_eq!(
        server.get("config_file").map(PathBuf::from),
        Some(std::fs::canonicalize(&conf).unwrap())
    );
    assert_eq!(
        info(&mut con, "persistence")
            .get("appendfsync")
            .map(String::as_str),
        Some("always")
    );
    // The log level changes at run time; a bad one is refused.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("loglevel")
        .arg("debug")
        .query(&mut con)
        .unwrap();
    assert_eq!(get(&mut con, "loglevel"), "debug");
    let bad: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("loglevel")
        .arg("chatty")
        .query(&mut con);
    assert!(bad.is_err());
    assert_eq!(get(&mut con, "loglevel"), "debug");
    let immutable: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("metrics-top-queues")
        .arg("7")
        .query(&mut con);
    assert!(
        immutable
            .unwrap_err()
            .to_string()
            .contains("can't set immutable config")
    );
    let () = redis::cmd("SHUTDOWN").query(&mut con).unwrap_or(());
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0), "{}", p.log());

    // The same file with the port overridden by a flag.
    let port2 = harness::free_port();
    let mut p = Proc::spawn(
        &["--port", &port2.to_string(), "--config", conf_s],
        tmp.path().join("stderr2.log"),
    );
    p.wait_ready(port2);
    let mut con = harness::connect(&format!("redis://127.0.0.1:{}/", port2));
    let () = redis::cmd("AUTH")
        .arg("s3cret pass")
        .query(&mut con)
        .unwrap();
    assert_eq!(get(&mut con, "port"), port2.to_string());
    assert_eq!(get(&mut con, "maxclients"), "77");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Starts delayd on a file with `body`; expects it to refuse to start and
/// returns what it printed.
fn refused(body: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("bad.conf");
    std::fs::write(&conf, body).unwrap();
    let dir = tmp.path().join("data");
    let port = harness::free_port().to_string();
    let mut p = Proc::spawn(
        &[
            "--config",
            conf.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
            "--port",
            &port,
        ],
        tmp.path().join("stderr.log"),
    );
    let code = p.wait_exit(Duration::from_secs(20));
    let log = p.log();
    assert!(
        matches!(code, Some(c) if c != 0),
        "started (or hung) on a bad file: {code:?}\n{log}"
    );
    log
}

#[test]
fn a_bad_config_line_stops_start_up_and_is_named() {
    let log = refused("# ok\nport 6390\nmaxclients lots\n");
    assert!(log.contains("line 3"), "{log}");
    assert!(log.contains("maxclients"), "{log}");
    assert!(log.contains("lots"), "{log}");

    let log = refused("\nno-such-option 1\n");
    assert!(log.contains("line 2"), "{log}");
    assert!(log.contains("unknown option 'no-such-option'"), "{log}");

    let log = refused("appendfsync sometimes\n");
    assert!(log.contains("line 1") && log.contains("sometimes"), "{log}");

    let log = refused("port 1 2\n");
    assert!(log.contains("line 1") && log.contains("one value"), "{log}");

    let log = refused("requirepass \"unterminated\n");
    assert!(
        log.contains("line 1") && log.contains("unbalanced quotes"),
        "{log}"
    );

    let log = refused("config other.conf\n");
    assert!(log.contains("unknown option 'config'"), "{log}");

    // A file that does not exist.
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.conf");
    let mut p = Proc::spawn(
        &["--config", missing.to_str().unwrap()],
        tmp.path().join("stderr.log"),
    );
    assert!(matches!(p.wait_exit(Duration::from_secs(20)), Some(c) if c != 0));
    assert!(p.log().contains("cannot read config file"), "{}", p.log());
}

#[test]
fn the_example_config_file_is_valid_and_lists_every_option() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("delayd.conf.example");
    let text = std::fs::read_to_string(&example).expect("delayd.conf.example");
    for option in [
        "port",
        "bind",
        "dir",
        "appendfsync",
        "requirepass",
        "maxclients",
        "horizon-ms",
        "hot-max-members",
        "proto-max-bulk-len",
        "client-query-buffer-limit",
        "io-threads",
        "loglevel",
        "metrics-port",
        "metrics-top-queues",
    ] {
        assert!(
            text.lines().any(|l| l
                .trim_start_matches("# ")
                .starts_with(&format!("{option} "))),
            "delayd.conf.example does not list {option}"
        );
    }
    // It starts as is (flags move it off the default port and directory).
    let tmp = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let dir = tmp.path().join("data");
    let mut p = Proc::spawn(
        &[
            "--config",
            example.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--dir",
            dir.to_str().unwrap(),
        ],
        tmp.path().join("stderr.log"),
    );
    p.wait_ready(port);
    let mut con = harness::connect(&format!("redis://127.0.0.1:{}/", port));
    let m: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut con)
        .unwrap();
    assert_eq!(m.get("appendfsync").map(String::as_str), Some("everysec"));
    assert_eq!(m.get("maxclients").map(String::as_str), Some("10000"));
    assert_eq!(m.get("metrics-top-queues").map(String::as_str), Some("100"));
}

// ------------------------------------------------------------- clean stop

/// SIGTERM in the middle of a write load with `appendfsync no`: a clean
/// exit, and every acknowledged DELAYADD is there after a restart.
#[test]
fn sigterm_under_load_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &["--appendfsync", "no"]);
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(5);
    let mut producers = Vec::new();
    for p in 0..4 {
        let acked = acked.clone();
        let mut con = server.client();
        producers.push(std::thread::spawn(move || {
            for i in 0.. {
                if Instant::now() > stop {
                    break;
                }
                let q = format!("q{}", i % 3);
                let m = format!("p{p}:{i}");
                // Due now and far ahead: both the memory and the disk tier.
                let delay = if i % 2 == 0 { 0 } else { 86_400_000 };
                let r: redis::RedisResult<i64> = redis::cmd("DELAYADD")
                    .arg(&q)
                    .arg(delay)
                    .arg(&m)
                    .query(&mut con);
                match r {
                    Ok(1) => acked.lock().unwrap().push((q, m)),
                    Ok(other) => panic!("DELAYADD of a new member replied {other}"),
                    Err(_) => break, // the server is stopping
                }
            }
        }));
    }
    // Stop under load: once writes are flowing (on a loaded machine the first
    // ones can take a while), not after a fixed time.
    let flowing = Instant::now() + Duration::from_secs(4);
    while acked.lock().unwrap().len() <= 50 && Instant::now() < flowing {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let code = server.terminate();
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(code, Some(0), "log:\n{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("shutting down"), "{log}");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too little load: {}", acked.len());

    let server = Server::start_in(&dir, &[]);
    let mut con = server.client();
    for chunk in acked.chunks(1000) {
        let mut pipe = redis::pipe();
        for (q, m) in chunk {
            pipe.cmd("DELAYSCORE").arg(q).arg(m);
        }
        let scores: Vec<Option<i64>> = pipe.query(&mut con).unwrap();
        for ((q, m), s) in chunk.iter().zip(scores) {
            assert!(s.is_some(), "acknowledged {q} {m} lost after SIGTERM");
        }
    }
    let inf = info(&mut con, "persistence");
    assert!(
        info_u64(&inf, "recovered_members") >= acked.len() as u64,
        "{inf:?}"
    );
}
