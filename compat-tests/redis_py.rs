//! Runs compat-tests/redis_py.py (redis-py) against the real server in
//! RESP2 and RESP3, with and without a password.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Server, require_redis_py, run_bounded};

fn run_redis_py(protocol: u8, password: Option<&str>) {
    if !require_redis_py() {
        return;
    }
    let s = match password {
        Some(pw) => Server::start(&["--requirepass", pw]),
        None => Server::start(&[]),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat-tests/redis_py.py");
    let mut c = Command::new("python3");
    c.arg(script)
        .args(["--port", &s.port.to_string()])
        .args(["--protocol", &protocol.to_string()]);
    if let Some(pw) = password {
        c.args(["--password", pw]);
    }
    let out = run_bounded(&mut c, None, Duration::from_secs(60));
    assert!(
        out.success(),
        "redis_py.py --protocol {protocol} failed:\n{}\n--- server log ---\n{}",
        out.describe(),
        s.log_text()
    );
    assert!(
        out.stdout.contains("all redis-py checks passed"),
        "{}",
        out.describe()
    );
}

#[test]
fn redis_py_resp2() {
    run_redis_py(2, None);
}

#[test]
fn redis_py_resp3() {
    run_redis_py(3, None);
}

#[test]
fn redis_py_resp2_with_password() {
    run_redis_py(2, Some("py-s3cret"));
}

#[test]
fn redis_py_resp3_with_password() {
    run_redis_py(3, Some("py-s3cret"));
}
