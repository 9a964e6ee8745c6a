//! The cluster's history checker (docs/cluster.md §9): producers and
//! leasing consumers run against three real nodes through the `redis`
//! crate's cluster client while a nemesis kill -9s the node leading the
//! most slots (restarting it on its data after ~2 s), once freezes a
//! leader with SIGSTOP for ~3 s, once restarts another node on a wiped
//! directory, and once cuts the leader of most slots off the network for
//! 5 s (in a network namespace the test makes; each node has a loopback
//! address of its own there). Every operation is recorded with its
//! invoke and completion times and its outcome; after healing and draining
//! the queues the history is checked offline:
//!
//! 1. every acknowledged DELAYADD member was delivered (none left over);
//! 2. nothing was delivered before its due time;
//! 3. no member was delivered twice unless its lease could have run out in
//!    between;
//! 4. no member was delivered after an acknowledged DELAYACK of it.
//!
//! The CI run is ~45 s of load with at least 3 leader kills, a SIGSTOP, a
//! wipe and a partition;
//! `DELAYD_HISTORY_SECS` and `DELAYD_HISTORY_KILLS` make it longer
//! (benches/cluster_history.sh).

mod cluster_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster_support::harness::Lcg;
use cluster_support::{Cluster, cluster_slots, key_slot, netns};

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 3;
const QUEUES: usize = 8;
const LEASE_MS: u64 = 1_500;
const MAX_DELAY_MS: u64 = 2_000;

/// One clock for every thread: microseconds on the monotonic clock since
/// the test began.
fn mono_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Wall-clock Unix microseconds: the server decides what is due by its wall
/// clock in whole milliseconds (the same clock: one machine), so due-time
/// checks compare in those units, with no slack.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn queue(i: usize) -> String {
    format!("{{hq{i}}}q")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Add,
    Pop,
    Ack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    /// The server refused (MOVED, CLUSTERDOWN, TRYAGAIN...): not applied.
    Fail,
    /// The connection failed: applied or not, nobody knows.
    Unknown,
    /// No reply within the response timeout: applied or not.
    Timeout,
}

#[derive(Debug, Clone)]
struct Op {
    process: usize,
    kind: Kind,
    queue: usize,
    /// Add and ack: the member; pop: the members delivered.
    members: Vec<String>,
    delay_ms: u64,
    /// The integer reply of an add or ack.
    value: i64,
    invoke: u64,
    complete: u64,
    invoke_wall: u64,
    complete_wall: u64,
    outcome: Outcome,
    error: String,
}

fn outcome_of(e: &redis::RedisError) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_connection_refusal() {
        // Nothing was sent.
        Outcome::Fail
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        Outcome::Unknown
    } else {
        Outcome::Fail
    }
}

/// A client process: one cluster connection without retries (so every
/// attempt is one recorded operation), made again after any error.
struct Process {
    id: usize,
    client: redis::cluster::ClusterClient,
    con: Option<redis::cluster::ClusterConnection>,
    history: Vec<Op>,
}

impl Process {
    fn new(id: usize, urls: &[String]) -> Process {
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .retries(0)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(2))
            .build()
            .expect("cluster client");
        Process {
            id,
            client,
            con: None,
            history: Vec::new(),
        }
    }

    /// Runs one command and records it; `members_of` reads the members out
    /// of an ok reply (pops).
    fn run(
        &mut self,
        kind: Kind,
        queue: usize,
        cmd: &redis::Cmd,
        member: Option<&str>,
        delay_ms: u64,
    ) -> Option<redis::Value> {
        if self.con.is_none() {
            match self.client.get_connection() {
                Ok(c) => self.con = Some(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    return None;
                }
            }
        }
        let con = self.con.as_mut()?;
        let (invoke, invoke_wall) = (mono_us(), wall_us());
        let r: redis::RedisResult<redis::Value> = cmd.query(con);
        let (complete, complete_wall) = (mono_us(), wall_us());
        let mut op = Op {
            process: self.id,
            kind,
            queue,
            members: member.map(|m| vec![m.to_string()]).unwrap_or_default(),
            delay_ms,
            value: 0,
            invoke,
            complete,
            invoke_wall,
            complete_wall,
            outcome: Outcome::Ok,
            error: String::new(),
        };
        let out = match r {
            Ok(v) => {
                match (&v, kind) {
                    (redis::Value::Int(n), _) => op.value = *n,
                    (_, Kind::Pop) => {
                        op.members = redis::from_redis_value_ref::<Vec<String>>(&v)
                            .unwrap_or_else(|e| panic!("DELAYPOP reply {v:?}: {e}"));
                    }
                    _ => panic!("{kind:?} replied {v:?}"),
                }
                Some(v)
            }
            Err(e) => {
                op.outcome = outcome_of(&e);
                op.error = e.to_string();
                self.con = None;
                None
            }
        };
        self.history.push(op);
        if out.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        out
    }
}

/// DELAYSCORE of an add's member, through the cluster, retried for `retry`.
fn score_of(
    client: &redis::cluster::ClusterClient,
    con: &mut redis::cluster::ClusterConnection,
    op: &Op,
    retry: Duration,
) -> redis::RedisResult<Option<i64>> {
    cluster_support::query_retrying(
        client,
        con,
        redis::cmd("DELAYSCORE")
            .arg(queue(op.queue))
            .arg(&op.members[0]),
        retry,
    )
}

fn producer(id: usize, urls: Vec<String>, stop: Arc<AtomicBool>) -> Vec<Op> {
    let mut p = Process::new(id, &urls);
    let mut rng = Lcg(id as u64 * 7919 + 1);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let q = (rng.next() as usize) % QUEUES;
        let delay = rng.next() % (MAX_DELAY_MS + 1);
        let m = format!("p{id}-{i}");
        i += 1;
        let cmd = redis::cmd("DELAYADD")
            .arg(queue(q))
            .arg(delay)
            .arg(&m)
            .clone();
        p.run(Kind::Add, q, &cmd, Some(&m), delay);
        std::thread::sleep(Duration::from_millis(5));
    }
    p.history
}

/// Pops with a lease and acks each member, until `done` says so. Any
/// non-empty pop or error moves `active` (the drain's quiet clock).
fn consumer(
    id: usize,
    urls: Vec<String>,
    done: impl Fn() -> bool,
    active: Arc<AtomicU64>,
) -> Vec<Op> {
    let mut p = Process::new(id, &urls);
    let mut q = id % QUEUES;
    let mut empty_in_a_row = 0;
    while !done() {
        q = (q + 1) % QUEUES;
        let cmd = redis::cmd("DELAYPOP")
            .arg(queue(q))
            .arg("COUNT")
            .arg(10)
            .arg("LEASE")
            .arg(LEASE_MS)
            .clone();
        let Some(_) = p.run(Kind::Pop, q, &cmd, None, 0) else {
            active.fetch_max(mono_us(), Ordering::Relaxed);
            continue;
        };
        let members = p
            .history
            .last()
            .map(|o| o.members.clone())
            .unwrap_or_default();
        if members.is_empty() {
            empty_in_a_row += 1;
            if empty_in_a_row >= QUEUES {
                std::thread::sleep(Duration::from_millis(10));
                empty_in_a_row = 0;
            }
            continue;
        }
        empty_in_a_row = 0;
        active.fetch_max(mono_us(), Ordering::Relaxed);
        for m in members {
            let cmd = redis::cmd("DELAYACK").arg(queue(q)).arg(&m).clone();
            if p.run(Kind::Ack, q, &cmd, Some(&m), 0).is_none() {
                active.fetch_max(mono_us(), Ordering::Relaxed);
            }
        }
    }
    p.history
}

#[derive(Debug)]
struct Fault {
    kind: &'static str,
    node: u64,
    at: u64,
    /// The queues on slots the node led when the fault began.
    queues: Vec<usize>,
}

/// Runs faults until `secs` have passed and at least `kills` leader kills,
/// one SIGSTOP, one wiped follower and (with a private network) one
/// partition were done; every fault is healed before the next.
fn nemesis(c: &mut Cluster, secs: u64, kills: usize, partitions: bool) -> Vec<Fault> {
    let start = Instant::now();
    let mut faults: Vec<Fault> = Vec::new();
    let count = |faults: &[Fault], kind: &str| faults.iter().filter(|f| f.kind == kind).count();
    loop {
        // In turn: a kill, a stop, a wipe, a partition, then kills.
        let kind = if count(&faults, "kill-9") == 0 {
            "kill-9"
        } else if count(&faults, "sigstop") == 0 {
            "sigstop"
        } else if count(&faults, "wipe") == 0 {
            "wipe"
        } else if partitions && count(&faults, "partition") == 0 {
            "partition"
        } else if start.elapsed() < Duration::from_secs(secs) || count(&faults, "kill-9") < kills {
            "kill-9"
        } else {
            return faults;
        };
        std::thread::sleep(Duration::from_millis(2_500));
        let from = c.live_ports()[0];
        let Some(leader) = c.leader_of_most_slots(from) else {
            continue;
        };
        let ranges = cluster_slots(from).unwrap_or_default();
        // The wipe hits another node than the leader of most slots: it
        // may lead a group too, and its peers hold what it acknowledged.
        let target = if kind == "wipe" {
            c.nodes
                .iter()
                .map(|n| n.port)
                .find(|p| *p != leader)
                .unwrap_or(leader)
        } else {
            leader
        };
        let queues: Vec<usize> = (0..QUEUES)
            .filter(|q| {
                let s = key_slot(&queue(*q));
                ranges
                    .iter()
                    .any(|r| r.leader() == target && r.first <= s && s <= r.last)
            })
            .collect();
        let i = c.index_of(target);
        faults.push(Fault {
            kind,
            node: c.nodes[i].id,
            at: mono_us(),
            queues,
        });
        match kind {
            "sigstop" => {
                c.stop(i);
                std::thread::sleep(Duration::from_secs(3));
                c.cont(i);
            }
            "wipe" => {
                c.kill9(i);
                std::fs::remove_dir_all(&c.nodes[i].dir).expect("wipe the node's directory");
                std::thread::sleep(Duration::from_secs(1));
                c.restart(i);
            }
            "partition" => {
                // Longer than a lease and an election: the others elect.
                c.isolate(i);
                std::thread::sleep(Duration::from_secs(5));
                c.heal();
            }
            _ => {
                c.kill9(i);
                std::thread::sleep(Duration::from_secs(2));
                c.restart(i);
            }
        }
        c.wait_serving(Duration::from_secs(40));
    }
}

#[derive(Default)]
struct Report {
    violations: Vec<String>,
    lines: Vec<String>,
}

impl Report {
    fn violation(&mut self, kind: &str, what: String) {
        self.violations.push(format!("{kind}: {what}"));
    }
}

/// The offline check. `present` lists acknowledged members never delivered
/// that DELAYSCORE still finds after the drain.
fn check(history: &[Op], present: &[String], faults: &[Fault]) -> Report {
    let mut r = Report::default();
    let mut counts: BTreeMap<(Kind, Outcome), usize> = BTreeMap::new();
    for op in history {
        *counts.entry((op.kind, op.outcome)).or_default() += 1;
    }
    r.lines.push(format!("ops by outcome: {counts:?}"));
    let adds: HashMap<&str, &Op> = history
        .iter()
        .filter(|o| o.kind == Kind::Add)
        .map(|o| (o.members[0].as_str(), o))
        .collect();
    let mut deliveries: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history
        .iter()
        .filter(|o| o.kind == Kind::Pop && o.outcome == Outcome::Ok)
    {
        for m in &op.members {
            deliveries.entry(m.as_str()).or_default().push(op);
        }
    }
    let mut acks: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history.iter().filter(|o| o.kind == Kind::Ack) {
        acks.entry(op.members[0].as_str()).or_default().push(op);
    }
    // (1) every acknowledged add delivered.
    let acknowledged: Vec<&&Op> = adds
        .values()
        .filter(|o| o.outcome == Outcome::Ok && o.value == 1)
        .collect();
    for add in &acknowledged {
        let m = add.members[0].as_str();
        if deliveries.contains_key(m) {
            if present.iter().any(|p| p == m) {
                r.violation(
                    "ack undone",
                    format!("{m} acked, still queued after the drain"),
                );
            }
            continue;
        }
        if present.iter().any(|p| p == m) {
            r.violation("left over", format!("{m} still queued after the drain"));
        } else {
            r.violation(
                "lost",
                format!("acknowledged DELAYADD {m} never delivered: {add:?}"),
            );
        }
    }
    let unacked_delivered = deliveries
        .keys()
        .filter(|m| adds.get(*m).is_some_and(|a| a.outcome != Outcome::Ok))
        .count();
    // (2) not early; phantoms.
    let (mut redelivered, mut redelivered_unacked) = (0, 0);
    for (m, ds) in &mut deliveries {
        let Some(add) = adds.get(m) else {
            r.violation("phantom", format!("{m} delivered but never added"));
            continue;
        };
        ds.sort_by_key(|d| d.invoke);
        for d in ds.iter() {
            let due_ms = add.invoke_wall / 1000 + add.delay_ms;
            if d.complete_wall / 1000 < due_ms {
                r.violation(
                    "early",
                    format!(
                        "{m} (delay {} ms) delivered {} ms before due: add invoked {} wall us, pop completed {}",
                        add.delay_ms,
                        due_ms - d.complete_wall / 1000,
                        add.invoke_wall,
                        d.complete_wall
                    ),
                );
            }
        }
        // (3) twice only after a lease could have run out.
        for w in ds.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b.complete_wall / 1000 >= a.invoke_wall / 1000 + LEASE_MS {
                redelivered += 1;
                let acked_between = acks.get(m).is_some_and(|xs| {
                    xs.iter().any(|x| {
                        x.outcome == Outcome::Ok && x.invoke >= a.complete && x.complete <= b.invoke
                    })
                });
                if !acked_between {
                    redelivered_unacked += 1;
                }
            } else {
                r.violation(
                    "twice in a lease",
                    format!(
                        "{m}: popped by {} at {}..{} us and by {} at {}..{} us, within the {LEASE_MS} ms lease",
                        a.process, a.invoke, a.complete, b.process, b.invoke, b.complete
                    ),
                );
            }
        }
        // (4) never after an acknowledged ack.
        if let Some(xs) = acks.get(m) {
            for x in xs
                .iter()
                .filter(|x| x.outcome == Outcome::Ok && x.value == 1)
            {
                if let Some(d) = ds.iter().find(|d| d.invoke > x.complete) {
                    r.violation(
                        "delivered after ack",
                        format!(
                            "{m}: acked by {} (done at {} us), delivered again to {} at {} us",
                            x.process, x.complete, d.process, d.invoke
                        ),
                    );
                }
            }
        }
    }
    let lost_pops = history
        .iter()
        .filter(|o| o.kind == Kind::Pop && matches!(o.outcome, Outcome::Unknown | Outcome::Timeout))
        .count();
    let ack_zero = history
        .iter()
        .filter(|o| o.kind == Kind::Ack && o.outcome == Outcome::Ok && o.value == 0)
        .count();
    r.lines.push(format!(
        "members: {} adds acknowledged, {} delivered ({} whose add was not acknowledged)",
        acknowledged.len(),
        deliveries.len(),
        unacked_delivered
    ));
    r.lines.push(format!(
        "redeliveries after a lease could have run out: {redelivered} ({redelivered_unacked} with no \
         acknowledged DELAYACK in between); pops whose reply was lost (error/timeout): {lost_pops}; \
         DELAYACKs answering 0: {ack_zero}"
    ));
    // Failover: from each fault to the first acknowledged write invoked
    // after it on the queues the faulty node led.
    let mut times = Vec::new();
    for f in faults {
        let first = history
            .iter()
            .filter(|o| {
                o.kind == Kind::Add
                    && o.outcome == Outcome::Ok
                    && o.invoke >= f.at
                    && f.queues.contains(&o.queue)
            })
            .map(|o| o.complete)
            .min();
        let ms = first.map(|t| (t - f.at) / 1000);
        r.lines.push(format!(
            "{} of node {} at {:.1} s (queues {:?}): first acknowledged write after {}",
            f.kind,
            f.node,
            f.at as f64 / 1e6,
            f.queues,
            ms.map_or("never".to_string(), |ms| format!("{ms} ms"))
        ));
        if f.kind == "kill-9"
            && let Some(ms) = ms
        {
            times.push(ms);
        }
    }
    r.lines.extend(lateness(&adds, &deliveries, faults));
    times.sort_unstable();
    if !times.is_empty() {
        r.lines.push(format!(
            "kill -9 failover (kill -> first acknowledged write): p50 {} ms, max {} ms over {} kills",
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        ));
    }
    r
}

/// Firing lateness: from a member's due time (its add's completion plus
/// its delay, an upper bound on when the server made it due) to the end
/// of the pop that first delivered it. Consumers poll every queue in
/// turn and sleep 10 ms when all are empty, so tens of ms are polling.
/// Members due while a fault was on (from its start until 10 s after) are
/// reported apart: what a failover costs in lateness.
fn lateness(
    adds: &HashMap<&str, &Op>,
    deliveries: &HashMap<&str, Vec<&Op>>,
    faults: &[Fault],
) -> Vec<String> {
    let Some(any) = adds.values().next() else {
        return Vec::new();
    };
    // Fault times are on the monotonic clock; ops carry both clocks.
    let wall_of = |mono: u64| mono + any.invoke_wall - any.invoke;
    let windows: Vec<(u64, u64)> = faults
        .iter()
        .map(|f| (wall_of(f.at), wall_of(f.at) + 10_000_000))
        .collect();
    let (mut calm, mut failing) = (Vec::new(), Vec::new());
    for (m, ds) in deliveries {
        let (Some(add), Some(first)) = (adds.get(m), ds.iter().map(|d| d.complete_wall).min())
        else {
            continue;
        };
        let due = add.complete_wall + add.delay_ms * 1000;
        let late_ms = first.saturating_sub(due) / 1000;
        if windows.iter().any(|(a, b)| (*a..*b).contains(&due)) {
            failing.push(late_ms);
        } else {
            calm.push(late_ms);
        }
    }
    let summary = |what: &str, v: &mut Vec<u64>| {
        v.sort_unstable();
        if v.is_empty() {
            return format!("lateness {what}: no members");
        }
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        format!(
            "lateness {what}: p50 {} ms, p99 {} ms, max {} ms over {} members",
            at(0.5),
            at(0.99),
            v[v.len() - 1],
            v.len()
        )
    };
    vec![
        summary("outside faults", &mut calm),
        summary("due within 10 s of a fault", &mut failing),
    ]
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn history_under_kills_stops_wipes_and_partitions() {
    let secs = env_u64("DELAYD_HISTORY_SECS", 45);
    let kills = env_u64("DELAYD_HISTORY_KILLS", 3) as usize;
    // Partitions need a network of the test's own: the test runs again in
    // a namespace it makes, where each node has a loopback address of its
    // own to cut off.
    let limit = Duration::from_secs(3 * secs + 30 * kills as u64 + 600);
    let partitions =
        match netns::private_network("history_under_kills_stops_wipes_and_partitions", limit) {
            None => return,
            Some(netns::Network::Private) => true,
            Some(netns::Network::Shared) => false,
        };
    mono_us();
    let mut c = if partitions {
        Cluster::start_on(&["127.0.0.11", "127.0.0.12", "127.0.0.13"], &[])
    } else {
        Cluster::start(3)
    };
    let urls = c.urls();
    // Sets `stop` on the way out, a panic included, so no thread outlives
    // the test's nodes by more than one operation.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = StopOnDrop(stop.clone());
    let active = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for p in 0..PRODUCERS {
        let (urls, stop) = (urls.clone(), stop.clone());
        threads.push(std::thread::spawn(move || producer(p, urls, stop)));
    }
    for k in 0..CONSUMERS {
        let (urls, stop, active) = (urls.clone(), stop.clone(), active.clone());
        threads.push(std::thread::spawn(move || {
            consumer(
                PRODUCERS + k,
                urls,
                move || stop.load(Ordering::Relaxed),
                active,
            )
        }));
    }
    let faults = nemesis(&mut c, secs, kills, partitions);
    stop.store(true, Ordering::Relaxed);
    let load_end = mono_us();
    let history: Arc<Mutex<Vec<Op>>> = Arc::default();
    for t in threads {
        let ops = t.join().expect("client thread");
        history.lock().unwrap().extend(ops);
    }

    // Heal (every node runs, none stopped) and drain: pop with a lease and
    // ack until nothing came for two leases and every delay has passed.
    c.wait_serving(Duration::from_secs(40));
    let drain_start = Instant::now();
    let quiet_us = 2 * LEASE_MS * 1000 + 500_000;
    let mut drainers = Vec::new();
    for k in 0..CONSUMERS {
        let (urls, active) = (urls.clone(), active.clone());
        let a = active.clone();
        drainers.push(std::thread::spawn(move || {
            consumer(
                100 + k,
                urls,
                move || {
                    let now = mono_us();
                    let settled = now > load_end + (MAX_DELAY_MS + 500) * 1000
                        && now > a.load(Ordering::Relaxed) + quiet_us;
                    settled || drain_start.elapsed() > Duration::from_secs(90)
                },
                active,
            )
        }));
    }
    for t in drainers {
        let ops = t.join().expect("drain thread");
        history.lock().unwrap().extend(ops);
    }
    let history = std::mem::take(&mut *history.lock().unwrap());

    // What is left: DELAYCARD of every queue, and DELAYSCORE of each
    // acknowledged member never delivered.
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    let retry = Duration::from_secs(20);
    let mut cards = Vec::new();
    for q in 0..QUEUES {
        let n: i64 = cluster_support::query_retrying(
            &client,
            &mut con,
            redis::cmd("DELAYCARD").arg(queue(q)),
            retry,
        )
        .unwrap_or_else(|e| panic!("DELAYCARD {}: {e}\n{}", queue(q), c.logs()));
        cards.push(n);
    }
    let delivered: std::collections::HashSet<&str> = history
        .iter()
        .filter(|o| o.kind == Kind::Pop && o.outcome == Outcome::Ok)
        .flat_map(|o| o.members.iter().map(String::as_str))
        .collect();
    let mut present = Vec::new();
    // Members never delivered, and members whose DELAYACK was acknowledged
    // (which must be gone).
    let acked: std::collections::HashSet<&str> = history
        .iter()
        .filter(|o| o.kind == Kind::Ack && o.outcome == Outcome::Ok && o.value == 1)
        .map(|o| o.members[0].as_str())
        .collect();
    for op in history.iter().filter(|o| {
        o.kind == Kind::Add
            && o.outcome == Outcome::Ok
            && o.value == 1
            && (!delivered.contains(o.members[0].as_str()) || acked.contains(o.members[0].as_str()))
    }) {
        let s = score_of(&client, &mut con, op, retry)
            .unwrap_or_else(|e| panic!("DELAYSCORE: {e}\n{}", c.logs()));
        if s.is_some() {
            present.push(op.members[0].clone());
        }
    }

    let mut report = check(&history, &present, &faults);
    for (q, n) in cards.iter().enumerate() {
        if *n != 0 {
            report.violation(
                "not drained",
                format!("DELAYCARD {} = {n} after the drain", queue(q)),
            );
        }
    }
    // Replicas are identical: once every node has applied the same index of
    // a group (the cluster is idle after the drain), their stores digest
    // alike.
    for g in 0..c.nodes.len() {
        let deadline = Instant::now() + Duration::from_secs(20);
        let digests = loop {
            let digests: Vec<Option<(i64, String)>> = c
                .nodes
                .iter()
                .map(|n| {
                    cluster_support::query_node(n.port, redis::cmd("DELAYDIGEST").arg(g))
                        .ok()
                        .and_then(|v| redis::from_redis_value::<(i64, String)>(v).ok())
                })
                .collect();
            let same_index = digests.iter().all(|d| {
                d.as_ref().map(|x| x.0) == digests[0].as_ref().map(|x| x.0) && d.is_some()
            });
            if same_index || Instant::now() >= deadline {
                break digests;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let first = &digests[0];
        if first.is_none() || digests.iter().any(|d| d != first) {
            report.violation(
                "replicas differ",
                format!("group {g}: (applied index, digest) per node {digests:?}"),
            );
        } else {
            report.lines.push(format!(
                "group {g}: replicas identical at index {:?}",
                first.as_ref().map(|d| d.0)
            ));
        }
    }
    // What a queue still holds, with each member's history, to explain.
    for (q, n) in cards.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let left: Vec<String> = cluster_support::query_retrying(
            &client,
            &mut con,
            redis::cmd("DELAYRANGE").arg(queue(q)).arg(0).arg(-1),
            retry,
        )
        .unwrap_or_default();
        let info: redis::Value = cluster_support::query_retrying(
            &client,
            &mut con,
            redis::cmd("DELAYINFO").arg(queue(q)),
            retry,
        )
        .unwrap_or(redis::Value::Nil);
        println!("{} holds {left:?}; DELAYINFO {info:?}", queue(q));
        for m in &left {
            let s: Option<i64> = cluster_support::query_retrying(
                &client,
                &mut con,
                redis::cmd("DELAYSCORE").arg(queue(q)).arg(m),
                retry,
            )
            .unwrap_or(None);
            println!("  {m}: DELAYSCORE {s:?} (now {} ms)", wall_us() / 1000);
            for op in history.iter().filter(|o| o.members.contains(m)) {
                println!("    {op:?}");
            }
        }
    }
    let done = |kind: &str| faults.iter().filter(|f| f.kind == kind).count();
    let (kills_done, stops_done) = (done("kill-9"), done("sigstop"));
    let (wipes_done, partitions_done) = (done("wipe"), done("partition"));
    println!(
        "=== cluster history: {secs} s of load, {kills_done} leader kills, {stops_done} SIGSTOPs, \
         {wipes_done} wiped nodes, {partitions_done} partitions ==="
    );
    println!(
        "drain: {:.1} s; queues after it: {cards:?}",
        drain_start.elapsed().as_secs_f64()
    );
    for l in &report.lines {
        println!("{l}");
    }
    println!("violations: {}", report.violations.len());
    for v in report.violations.iter().take(30) {
        println!("  {v}");
    }
    if !report.violations.is_empty() {
        // Keep every node's whole log: the tempdir goes with the cluster.
        let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cluster_history-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        for n in &c.nodes {
            let _ = std::fs::copy(&n.log, keep.join(format!("node{}.log", n.id)));
        }
        println!("node logs kept in {}", keep.display());
        // Is a lost member gone from the group, or only from the serving
        // leader's view? Another leader answers.
        let lost: Vec<&Op> = history
            .iter()
            .filter(|o| {
                o.kind == Kind::Add
                    && o.outcome == Outcome::Ok
                    && o.value == 1
                    && !delivered.contains(o.members[0].as_str())
                    && !present.contains(&o.members[0])
            })
            .collect();
        if !lost.is_empty()
            && let Some(l) = c.leader_of_most_slots(c.live_ports()[0])
        {
            let i = c.index_of(l);
            c.kill9(i);
            c.wait_serving(Duration::from_secs(40));
            for op in &lost {
                let s = score_of(&client, &mut con, op, retry).unwrap_or(None);
                println!(
                    "lost {} after killing the leader on {l}: DELAYSCORE {s:?}",
                    op.members[0]
                );
            }
        }
    }
    assert!(kills_done >= kills, "only {kills_done} kills");
    assert!(stops_done >= 1, "no SIGSTOP");
    assert!(wipes_done >= 1, "no wiped node");
    assert!(!partitions || partitions_done >= 1, "no partition");
    assert!(
        report.lines[1].contains("adds acknowledged")
            && history.iter().any(|o| o.kind == Kind::Ack),
        "no load ran"
    );
    assert!(
        report.violations.is_empty(),
        "{} violations (listed above)\n{}",
        report.violations.len(),
        c.logs()
    );
}
