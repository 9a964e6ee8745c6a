//! The web console in a real browser: Debian's headless Chromium driven by
//! Playwright (`console-tests/console.mjs`, `playwright-core` pinned in
//! `console-tests/package-lock.json`, installed by `.ci/run`), against the
//! real binary with a password set. A redis-cli producer fills a queue and
//! dead-letters a member; the script logs in, sees the queue on the
//! overview and the queues page, opens the dead-letter queue and requeues
//! the member with a click; redis-cli then checks that it is back.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::{Server, free_port, require_tool, run_bounded};

const PASSWORD: &str = "console-pw";

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--no-auth-warning", "-a", PASSWORD])
            .args(args),
        None,
        Duration::from_secs(20),
    );
    assert!(out.success(), "redis-cli {args:?}: {}", out.describe());
    out.stdout.trim().to_string()
}

/// Whether playwright-core is installed in console-tests/ (by `.ci/run`:
/// `npm ci`); missing fails in CI, skips elsewhere.
fn require_playwright(dir: &Path) -> bool {
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return true;
    }
    let how = format!("cd {} && npm ci", dir.display());
    assert!(
        std::env::var_os("CI").is_none(),
        "playwright-core is required in CI but missing; install it with: {how}"
    );
    eprintln!("SKIPPED: playwright-core not installed; install it with: {how}");
    false
}

#[test]
fn console_shows_a_queue_and_requeues_a_dead_letter_by_a_click() {
    let Some(_) = require_tool("node", "apt-get install -y nodejs npm") else {
        return;
    };
    let Some(chromium) = require_tool("chromium", "apt-get install -y chromium") else {
        return;
    };
    if require_tool("redis-cli", "apt-get install -y redis-tools").is_none() {
        return;
    }
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("console-tests");
    if !require_playwright(&tests) {
        return;
    }
    let http = free_port();
    let server = Server::start(&["--http-port", &http.to_string(), "--requirepass", PASSWORD]);
    let port = server.port;

    // The producer: a backlog over the next hours (the timeline), members
    // due now, and one dead-lettered after two leased deliveries.
    let now = harness::now_ms();
    let mut add = vec!["DELAYADD".to_string(), "orders:eu".into(), "AT".into()];
    for i in 0..300u64 {
        add.push((now + 60_000 + i * i * 300).to_string());
        add.push(format!("order:{i}"));
    }
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    assert_eq!(redis_cli(port, &add), "300");
    assert_eq!(
        redis_cli(
            port,
            &["DELAYADD", "orders:eu", "0", "order:due-1", "0", "job-7"]
        ),
        "2"
    );
    let dead_letter = [
        "DELAYPOP",
        "orders:eu",
        "COUNT",
        "5",
        "LEASE",
        "1",
        "RETRIES",
        "1",
        "DEADLETTER",
        "orders:dlq",
    ];
    redis_cli(port, &dead_letter);
    assert!(harness::eventually(Duration::from_secs(10), || {
        redis_cli(port, &dead_letter);
        redis_cli(port, &["DELAYCARD", "orders:dlq"]) == "2"
    }));
    assert_ne!(redis_cli(port, &["DELAYSCORE", "orders:dlq", "job-7"]), "");
    assert_eq!(redis_cli(port, &["DELAYSCORE", "orders:eu", "job-7"]), "");

    // Some traffic while the overview is open, for the throughput chart
    // (on the two queues' far-future backlog: it never pops job-7).
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}/");
        std::thread::spawn(move || {
            let mut con = harness::connect(&url);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = format!("t{i}");
                let _: redis::RedisResult<i64> = redis::cmd("DELAYADD")
                    .arg("orders:eu")
                    .arg(3_600_000_000u64)
                    .arg(&m)
                    .query(&mut con);
                if i.is_multiple_of(2) {
                    let _: redis::RedisResult<i64> = redis::cmd("DELAYREM")
                        .arg("orders:eu")
                        .arg(&m)
                        .query(&mut con);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-shots");
    let out = run_bounded(
        Command::new("node")
            .arg(tests.join("console.mjs"))
            .current_dir(&tests)
            .env("DELAYD_HTTP", format!("http://127.0.0.1:{http}"))
            .env("DELAYD_PASSWORD", PASSWORD)
            .env("CHROMIUM", &chromium)
            .env("SHOTS_DIR", &shots)
            .env("QUEUE", "orders:eu")
            .env("DLQ", "orders:dlq")
            .env("MEMBER", "job-7"),
        None,
        Duration::from_secs(180),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    assert!(out.success(), "the browser test failed: {}", out.describe());
    eprintln!("screenshots in {}", shots.display());

    // Back in its queue, due now, and gone from the dead-letter queue.
    let due: u64 = redis_cli(port, &["DELAYSCORE", "orders:eu", "job-7"])
        .parse()
        .expect("job-7 is back in orders:eu");
    assert!(due <= harness::now_ms());
    assert_eq!(redis_cli(port, &["DELAYSCORE", "orders:dlq", "job-7"]), "");
    assert_eq!(redis_cli(port, &["DELAYCARD", "orders:dlq"]), "1");
}
