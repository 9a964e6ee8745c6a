//! Kill -9 loop: producers and leasing consumers run against the real
//! binary, which is killed at a random moment and restarted, twenty times.
//! After every restart: every acknowledged DELAYADD is still there unless a
//! DELAYACK was sent for it, no acknowledged DELAYACK came back, no member
//! was handed out twice while its lease ran, and DELAYCARD matches what a
//! full scan of the queue finds.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Lcg, Server, now_ms};

const CYCLES: usize = 20;
const PRODUCERS: usize = 20;
const CONSUMERS: usize = 4;
const LEASE_MS: u64 = 1_000;

#[derive(Default)]
struct Log {
    added: HashSet<String>,
    /// DELAYACKs sent: one whose reply the kill cut off may have been applied.
    ack_sent: HashSet<String>,
    acked: HashSet<String>,
    /// member -> client receive times of its deliveries
    deliveries: HashMap<String, Vec<u64>>,
}

fn run_cycle(
    port: u16,
    cycle: usize,
    log: &Arc<Mutex<Log>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for p in 0..PRODUCERS {
        let (log, stop) = (log.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let Some(mut con) = harness::try_connect(&format!("redis://127.0.0.1:{port}/")).ok()
            else {
                return;
            };
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let m = format!("c{cycle}p{p}i{i}");
                let delay = (i % 5) * 20;
                let r: redis::RedisResult<i64> = redis::cmd("DELAYADD")
                    .arg("q")
                    .arg(delay)
                    .arg(&m)
                    .query(&mut con);
                match r {
                    Ok(1) => {
                        log.lock().unwrap().added.insert(m);
                    }
                    Ok(n) => panic!("DELAYADD of new member {m} replied {n}"),
                    Err(_) => return,
                }
            }
        }));
    }
    for c in 0..CONSUMERS {
        let (log, stop) = (log.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let Some(mut con) = harness::try_connect(&format!("redis://127.0.0.1:{port}/")).ok()
            else {
                return;
            };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r: redis::RedisResult<Vec<String>> = redis::cmd("DELAYPOP")
                    .arg("q")
                    .arg("COUNT")
                    .arg(10)
                    .arg("LEASE")
                    .arg(LEASE_MS)
                    .arg("BLOCK")
                    .arg(100)
                    .query(&mut con);
                let members = match r {
                    Ok(m) => m,
                    Err(e) if e.kind() == redis::ErrorKind::UnexpectedReturnType => Vec::new(),
                    Err(_) => return,
                };
                let t = now_ms();
                for m in members {
                    log.lock()
                        .unwrap()
                        .deliveries
                        .entry(m.clone())
                        .or_default()
                        .push(t);
                    n += 1;
                    // Ack two deliveries in three; leave the rest to expire.
                    if !(n + c as u64).is_multiple_of(3) {
                        log.lock().unwrap().ack_sent.insert(m.clone());
                        let r: redis::RedisResult<i64> =
                            redis::cmd("DELAYACK").arg("q").arg(&m).query(&mut con);
                        match r {
                            Ok(1) => {
                                log.lock().unwrap().acked.insert(m);
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                }
            }
        }));
    }
    threads
}

fn verify(port: u16, log: &Log, cycle: usize) {
    let mut con = harness::connect(&format!("redis://127.0.0.1:{port}/"));
    let present: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let card: usize = redis::cmd("DELAYCARD").arg("q").query(&mut con).unwrap();
    assert_eq!(
        card,
        present.len(),
        "cycle {cycle}: DELAYCARD disagrees with the stored queue"
    );
    let present: HashSet<String> = present.into_iter().collect();
    let mut pipe = redis::pipe();
    let adds: Vec<&String> = log.added.iter().collect();
    for m in &adds {
        pipe.cmd("DELAYSCORE").arg("q").arg(*m);
    }
    let scores: Vec<Option<i64>> = pipe.query(&mut con).unwrap();
    let scored: HashSet<&String> = adds
        .iter()
        .zip(&scores)
        .filter(|(_, s)| s.is_some())
        .map(|(m, _)| *m)
        .collect();
    let not_ranged: Vec<_> = scored
        .iter()
        .filter(|m| !present.contains(**m))
        .take(5)
        .collect();
    assert!(
        not_ranged.is_empty(),
        "cycle {cycle}: DELAYSCORE finds members DELAYRANGE misses: {not_ranged:?}, card {card}"
    );
    let lost: Vec<_> = log
        .added
        .iter()
        .filter(|m| !log.ack_sent.contains(*m) && !present.contains(*m))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "cycle {cycle}: acknowledged members lost: {lost:?}"
    );
    let back: Vec<_> = log
        .acked
        .iter()
        .filter(|m| present.contains(*m))
        .take(10)
        .collect();
    assert!(
        back.is_empty(),
        "cycle {cycle}: acknowledged DELAYACKs undone: {back:?}"
    );
    let unknown: Vec<_> = present
        .iter()
        .filter(|m| !log.added.contains(*m))
        .take(10)
        .collect();
    // A DELAYADD whose reply was lost in the kill may be there: only count it.
    if !unknown.is_empty() {
        eprintln!(
            "cycle {cycle}: {} members stored whose DELAYADD reply was cut off by the kill",
            unknown.len()
        );
    }
    for (m, times) in &log.deliveries {
        for w in times.windows(2) {
            assert!(
                w[1] + 100 >= w[0] + LEASE_MS,
                "cycle {cycle}: {m} redelivered {} ms after a {LEASE_MS} ms lease",
                w[1] - w[0]
            );
        }
    }
}

#[test]
fn kill9_loop_keeps_every_promise() {
    let seed = now_ms();
    eprintln!("crash loop seed {seed}");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log: Arc<Mutex<Log>> = Arc::default();
    for cycle in 0..CYCLES {
        // Mostly always; a few cycles under everysec, where a process crash
        // must lose nothing either (the bytes reach the OS before the reply).
        let mode = if cycle % 5 == 4 { "everysec" } else { "always" };
        let mut server = Server::start_in(&dir, &["--appendfsync", mode]);
        if cycle > 0 {
            verify(server.port, &log.lock().unwrap(), cycle);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads = run_cycle(server.port, cycle, &log, &stop);
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 300));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    }
    let server = Server::start_in(&dir, &[]);
    let log = log.lock().unwrap();
    verify(server.port, &log, CYCLES);
    assert!(
        log.added.len() > 1000,
        "the loop did too little work: {} adds",
        log.added.len()
    );
    assert!(!log.acked.is_empty() && !log.deliveries.is_empty());
    eprintln!(
        "{} adds, {} deliveries, {} acks over {CYCLES} crashes",
        log.added.len(),
        log.deliveries.values().map(Vec::len).sum::<usize>(),
        log.acked.len()
    );
}
