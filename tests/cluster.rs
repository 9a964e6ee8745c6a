//! Cluster mode through real cluster clients: three nodes of the real
//! binary on loopback, driven by `redis-cli -c`, redis-py's `RedisCluster`,
//! the `redis` crate's `ClusterClient` and `redis-benchmark --cluster`;
//! slot coverage and CROSSSLOT; kill -9 of a leader, failover and rejoin.
//! Nothing assumes one group: leaders are read from `CLUSTER SLOTS`.

mod cluster_support;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{
    Cluster, ask_line, cluster_info, cluster_slots, group_line, key_slot, leader_of, line_field,
    query_retrying, require_redis_py, require_tool, run_bounded,
};

/// A tag per slot spread, so the keys land on different slots (and, with
/// several groups, on different leaders).
const TAGS: [&str; 6] = ["a", "b", "c", "user:1", "user:2", "orders"];

#[test]
fn redis_cli_follows_moved_from_every_node() {
    let Some(cli) = require_tool("redis-cli", "apt-get install -y redis-tools") else {
        return;
    };
    let c = Cluster::start(3);
    let run = |port: u16, args: &[&str]| {
        let out = run_bounded(
            Command::new(&cli)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(args),
            None,
            Duration::from_secs(20),
        );
        assert!(out.success(), "redis-cli {args:?}: {}", out.describe());
        out.stdout.trim().to_string()
    };
    for (i, tag) in TAGS.iter().enumerate() {
        let q = format!("{{{tag}}}q");
        let via = c.nodes[i % 3].port;
        let other = c.nodes[(i + 1) % 3].port;
        assert_eq!(
            run(via, &["-c", "DELAYADD", &q, "60000", "m1"]),
            "1",
            "{q} via {via}\n{}",
            c.logs()
        );
        assert_eq!(run(other, &["-c", "DELAYCARD", &q]), "1", "{q} via {other}");
        // Without -c a node that does not lead the slot answers MOVED to the
        // one that does (the leader in CLUSTER SLOTS).
        let slots = cluster_slots(other).expect("CLUSTER SLOTS");
        let leader = leader_of(&slots, key_slot(&q)).expect("slot covered");
        let follower = c.nodes.iter().find(|n| n.port != leader).unwrap().port;
        assert_eq!(
            run(follower, &["DELAYCARD", &q]),
            format!("MOVED {} 127.0.0.1:{leader}", key_slot(&q))
        );
        assert_eq!(run(leader, &["DELAYCARD", &q]), "1");
    }
}

#[test]
fn redis_py_cluster_client() {
    if !require_redis_py() {
        return;
    }
    let c = Cluster::start(3);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster_py.py");
    // Seeded with a node that leads nothing when there is a follower: the
    // client must discover the rest through CLUSTER SLOTS.
    let out = run_bounded(
        Command::new("python3")
            .arg(script)
            .args(["--port", &c.nodes[1].port.to_string()]),
        None,
        Duration::from_secs(40),
    );
    assert!(
        out.success() && out.stdout.contains("all redis-py cluster checks passed"),
        "{}\n{}",
        out.describe(),
        c.logs()
    );
}

#[test]
fn redis_rs_cluster_client_adds_pops_acks() {
    let c = Cluster::start(3);
    let mut con = c.client().get_connection().expect("cluster connection");
    for tag in TAGS {
        let q = format!("{{{tag}}}jobs");
        for i in 0..5 {
            let n: i64 = redis::cmd("DELAYADD")
                .arg(&q)
                .arg(0)
                .arg(format!("{tag}-{i}"))
                .query(&mut con)
                .unwrap();
            assert_eq!(n, 1);
        }
        let later: i64 = redis::cmd("DELAYADD")
            .arg(&q)
            .arg(600_000)
            .arg("later")
            .query(&mut con)
            .unwrap();
        assert_eq!(later, 1);
        let popped: Vec<String> = redis::cmd("DELAYPOP")
            .arg(&q)
            .arg("COUNT")
            .arg(10)
            .arg("LEASE")
            .arg(30_000)
            .query(&mut con)
            .unwrap();
        let want: Vec<String> = (0..5).map(|i| format!("{tag}-{i}")).collect();
        assert_eq!(popped, want, "{q}: due members, earliest first");
        // Leased members stay counted until acknowledged.
        let card: i64 = redis::cmd("DELAYCARD").arg(&q).query(&mut con).unwrap();
        assert_eq!(card, 6);
        let acked: i64 = redis::cmd("DELAYACK")
            .arg(&q)
            .arg(&popped[0])
            .arg(&popped[1])
            .query(&mut con)
            .unwrap();
        assert_eq!(acked, 2);
        let card: i64 = redis::cmd("DELAYCARD").arg(&q).query(&mut con).unwrap();
        assert_eq!(card, 4);
        let score: Option<i64> = redis::cmd("DELAYSCORE")
            .arg(&q)
            .arg("later")
            .query(&mut con)
            .unwrap();
        assert!(score.is_some(), "{q}: the later member is there");
        let gone: Option<i64> = redis::cmd("DELAYSCORE")
            .arg(&q)
            .arg(&popped[0])
            .query(&mut con)
            .unwrap();
        assert_eq!(gone, None, "{q}: acknowledged member removed");
        // Nothing more is due: the leased ones are hidden.
        let none: Vec<String> = redis::cmd("DELAYPOP")
            .arg(&q)
            .arg("COUNT")
            .arg(10)
            .query(&mut con)
            .unwrap();
        assert!(none.is_empty(), "{q}: {none:?}");
    }
}

#[test]
fn every_node_covers_every_slot_and_refuses_crossslot() {
    let c = Cluster::start(3);
    let mut views = Vec::new();
    for n in &c.nodes {
        let info = cluster_info(n.port).expect("CLUSTER INFO");
        assert!(
            info.starts_with("cluster_state:ok\r\n"),
            "node {}: {info}",
            n.id
        );
        assert!(info.contains("cluster_slots_assigned:16384\r\n"), "{info}");
        assert!(info.contains("cluster_slots_ok:16384\r\n"), "{info}");
        assert!(info.contains(&format!("cluster_known_nodes:{}\r\n", c.nodes.len())));
        let mut ranges = cluster_slots(n.port).expect("CLUSTER SLOTS");
        ranges.sort_by_key(|r| r.first);
        let mut next = 0u32;
        for r in &ranges {
            assert_eq!(
                u32::from(r.first),
                next,
                "node {}: gap or overlap: {ranges:?}",
                n.id
            );
            assert!(r.first <= r.last);
            next = u32::from(r.last) + 1;
            assert!(
                c.nodes.iter().any(|x| x.port == r.leader()),
                "leader {} is not a node",
                r.leader()
            );
        }
        assert_eq!(
            next, 16384,
            "node {}: slots not all covered: {ranges:?}",
            n.id
        );
        views.push(ranges);
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree on CLUSTER SLOTS: {views:?}"
    );
    // CROSSSLOT before routing, on every node; Redis's text byte for byte.
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot";
    assert_ne!(key_slot("a"), key_slot("b"));
    assert_ne!(key_slot("{x}a"), key_slot("b"));
    for n in &c.nodes {
        for cmd in ["DEL a b", "EXISTS a b", "DEL {x}a b", "DELAYACK a b"] {
            if cmd.starts_with("DELAYACK") {
                // One key: never CROSSSLOT.
                let l = ask_line(n.port, cmd).unwrap();
                assert_ne!(l, crossslot, "{cmd}");
                continue;
            }
            assert_eq!(ask_line(n.port, cmd).as_deref(), Some(crossslot), "{cmd}");
        }
        for cmd in ["DEL {x}a {x}b", "EXISTS {x}a {x}b {x}c"] {
            let l = ask_line(n.port, cmd).unwrap();
            let leader = leader_of(&views[0], key_slot("{x}")).unwrap();
            if n.port == leader {
                assert_eq!(l, ":0", "{cmd} on the leader");
            } else {
                assert_eq!(
                    l,
                    format!("-MOVED {} 127.0.0.1:{leader}", key_slot("{x}")),
                    "{cmd} on node {}",
                    n.id
                );
            }
        }
    }
    // The same text as a real Redis in cluster mode, when one is at hand.
    if let Some((redis, _bus)) = cluster_support::harness::cluster_redis() {
        assert_eq!(
            ask_line(redis.port, "CLUSTER ADDSLOTSRANGE 0 16383").as_deref(),
            Some("+OK")
        );
        assert_eq!(
            ask_line(redis.port, "DEL a b").as_deref(),
            Some(crossslot),
            "redis-server's CROSSSLOT text"
        );
    }
}

/// Adds members through a cluster client, kills the leader of their slot,
/// and checks that a new leader serves all of them; then the killed node
/// rejoins, and after another kill nothing is lost either.
#[test]
fn failover_keeps_every_acknowledged_member_and_the_node_rejoins() {
    const N: usize = 200;
    let mut c = Cluster::start(3);
    let q = "{failover}q";
    let slot = key_slot(q);
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    let members: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    for m in &members {
        let n: i64 = redis::cmd("DELAYADD")
            .arg(q)
            .arg(600_000)
            .arg(m)
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 1, "DELAYADD {m}");
    }
    let check_all = |con: &mut redis::cluster::ClusterConnection, what: &str, n: usize| {
        for m in members.iter().take(n) {
            let s: Option<i64> = query_retrying(
                &client,
                con,
                redis::cmd("DELAYSCORE").arg(q).arg(m),
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("{what}: DELAYSCORE {m}: {e}"));
            assert!(s.is_some(), "{what}: acknowledged member {m} lost");
        }
    };

    let old = leader_of(&cluster_slots(c.nodes[0].port).unwrap(), slot).unwrap();
    let old_i = c.index_of(old);
    c.kill9(old_i);
    let killed_at = Instant::now();
    let survivor = c.live_ports()[0];
    let mut new = None;
    while killed_at.elapsed() < Duration::from_secs(30) {
        if let Some(l) = cluster_slots(survivor).and_then(|s| leader_of(&s, slot))
            && l != old
            && ask_line(l, &format!("DELAYCARD {q}")).is_some_and(|r| r.starts_with(':'))
        {
            new = Some(l);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let new = new.unwrap_or_else(|| {
        panic!(
            "no new leader serving slot {slot} within 30 s of killing {old}\n{}",
            c.logs()
        )
    });
    eprintln!(
        "leader {old} killed; {new} serves slot {slot} after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(
        ask_line(new, &format!("DELAYCARD {q}")).as_deref(),
        Some(format!(":{N}").as_str()),
        "the new leader has every acknowledged member"
    );
    // The client made before the kill retries through the cluster and
    // finds the new leader.
    check_all(&mut con, "after the failover", N);
    let n: i64 = query_retrying(
        &client,
        &mut con,
        redis::cmd("DELAYADD")
            .arg(q)
            .arg(600_000)
            .arg("after-failover"),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("write through the old client: {e}\n{}", c.logs()));
    assert_eq!(n, 1);

    // The killed node rejoins on its data directory.
    c.restart(old_i);
    let ok = cluster_support::eventually(Duration::from_secs(20), || {
        let nodes = cluster_support::query_node(new, redis::cmd("CLUSTER").arg("NODES"))
            .ok()
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .unwrap_or_default();
        nodes.lines().count() == 3
            && nodes
                .lines()
                .any(|l| l.contains(&format!("127.0.0.1:{old}@")) && l.contains("connected"))
            && cluster_info(old).is_some_and(|i| i.starts_with("cluster_state:ok"))
            && cluster_slots(old).and_then(|s| leader_of(&s, slot)) == Some(new)
    });
    assert!(ok, "node on {old} did not rejoin\n{}", c.logs());
    // Give it a moment to catch up with the group, then kill the leader: the
    // rejoined node is now needed for a majority, and must have everything.
    std::thread::sleep(Duration::from_secs(1));
    c.kill9(c.index_of(new));
    c.wait_serving(Duration::from_secs(30));
    check_all(&mut con, "after the second kill", N);
    let s: Option<i64> = query_retrying(
        &client,
        &mut con,
        redis::cmd("DELAYSCORE").arg(q).arg("after-failover"),
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(s.is_some(), "the write after the first failover was lost");
    let card: i64 = query_retrying(
        &client,
        &mut con,
        redis::cmd("DELAYCARD").arg(q),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(card, N as i64 + 1);
}

/// How many masters `CLUSTER NODES` on `port` lists.
fn ask_masters(port: u16) -> usize {
    match cluster_support::query_node(port, redis::cmd("CLUSTER").arg("NODES")) {
        Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b)
            .lines()
            .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("master")))
            .count(),
        _ => 0,
    }
}

#[test]
fn redis_benchmark_cluster_ping_and_delayadd() {
    let Some(bench) = require_tool("redis-benchmark", "apt-get install -y redis-tools") else {
        return;
    };
    let c = Cluster::start(3);
    let port = c.nodes[2].port.to_string();
    // Each node comes to lead its own group shortly after the first node
    // bootstrapped them all; redis-benchmark needs two masters at least.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ask_masters(c.nodes[2].port) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = |args: &[&str]| {
        let out = run_bounded(
            Command::new(&bench)
                .args(["--cluster", "-h", "127.0.0.1", "-p", &port])
                .args(["-n", "2000", "-c", "10", "-q"])
                .args(args),
            None,
            Duration::from_secs(40),
        );
        // It refuses a cluster of fewer than two masters ("Invalid
        // cluster: 1 node(s)", exit 1); the output must show the runs.
        assert!(
            out.success()
                && out.stdout.contains("requests per second")
                && !out.stderr.contains("Error from server"),
            "redis-benchmark --cluster {args:?}: {}\n{}",
            out.describe(),
            c.logs()
        );
        out
    };
    let ping = run(&["-t", "ping"]);
    assert!(ping.stdout.contains("PING"), "{}", ping.describe());
    // In cluster mode redis-benchmark replaces `{tag}` with a hash tag of
    // each master's slots, so every master gets its share.
    let add = run(&[
        "-r",
        "100000",
        "DELAYADD",
        "{tag}q",
        "__rand_int__",
        "m:__rand_int__",
    ]);
    assert!(add.stdout.contains("DELAYADD"), "{}", add.describe());
}

/// A node whose disk is replaced (restarted on an empty directory) joins
/// the groups again without initialising anything of its own: the leaders
/// send it a snapshot, since their logs were purged past its start, and it
/// then holds everything (it is needed for a majority once a leader dies).
#[test]
fn a_node_restarted_on_a_wiped_directory_catches_up_from_a_snapshot() {
    const N: usize = 300;
    // A snapshot (and a purge of the log) every 100 entries.
    let mut c = Cluster::start_with(3, &["--cluster-snapshot-logs", "100"]);
    let q = "{wiped}q";
    let slot = key_slot(q);
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..N {
        let n: i64 = redis::cmd("DELAYADD")
            .arg(q)
            .arg(600_000)
            .arg(format!("m{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 1);
    }
    let leader = leader_of(&cluster_slots(c.nodes[0].port).unwrap(), slot).unwrap();
    let wiped = (0..3).find(|&i| c.nodes[i].port != leader).unwrap();
    c.kill9(wiped);
    std::fs::remove_dir_all(&c.nodes[wiped].dir).unwrap();
    c.restart(wiped);
    // Caught up: its INFO shows the group applied as far as the leader's.
    let group_line = |port: u16| group_line(port, slot);
    let field = |line: &str, name: &str| line_field(line, name).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let led = group_line(leader).unwrap_or_default();
        let mine = group_line(c.nodes[wiped].port).unwrap_or_default();
        if field(&led, "purged") > 0
            && field(&mine, "snapshot") > 0
            && field(&mine, "last_applied") >= field(&led, "last_applied")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the wiped node did not catch up by snapshot: leader {led}; wiped {mine}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without the old leader, the wiped node is half of the majority.
    let li = c.index_of(leader);
    c.kill9(li);
    let card: i64 = query_retrying(
        &client,
        &mut con,
        redis::cmd("DELAYCARD").arg(q),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("DELAYCARD after the failover: {e}\n{}", c.logs()));
    assert_eq!(card, N as i64, "{}", c.logs());
}

/// A node whose `--cluster-nodes` names one of this cluster's nodes by
/// mistake (another cluster, ports reused) is refused on the bus: two
/// clusters never feed each other's Raft groups. Before the bus had a
/// hello, the stray node was told its group existed and tried to join it.
#[test]
fn the_bus_refuses_a_node_of_another_cluster() {
    let c = Cluster::start(3);
    let ours = &c.nodes[0];
    let [p2, b2, p3, b3] = std::array::from_fn(|_| cluster_support::harness::stable_port());
    let spec = format!(
        "1=127.0.0.1:{}@{},2=127.0.0.1:{p2}@{b2},3=127.0.0.1:{p3}@{b3}",
        ours.port, ours.bus
    );
    let tmp = tempfile::tempdir().unwrap();
    let stray_log = tmp.path().join("stray.log");
    let mut stray = Command::new(env!("CARGO_BIN_EXE_delayd"))
        .args(["--port", &p2.to_string(), "--http-port", "0", "--dir"])
        .arg(tmp.path().join("data"))
        .args(["--cluster-nodes", &spec, "--cluster-id", "2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stray_log).unwrap())
        .spawn()
        .expect("start the stray node");
    let refused = cluster_support::eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(&ours.log).is_ok_and(|l| l.contains("cluster bus: refused"))
    });
    // Long enough for the stray node's bootstrap to have asked node 1.
    std::thread::sleep(Duration::from_secs(1));
    let _ = stray.kill();
    let _ = stray.wait();
    let stray_said = std::fs::read_to_string(&stray_log).unwrap_or_default();
    assert!(
        refused,
        "node 1 did not refuse the stray node:\n{}",
        c.logs()
    );
    assert!(
        !stray_said.contains("exists on other nodes"),
        "the stray node was let into this cluster's group:\n{stray_said}"
    );
    // And this cluster carried on.
    c.wait_serving(Duration::from_secs(20));
}

/// A client blocked on a node whose group's leadership moves away is
/// answered `-MOVED slot host:port` with the new leader, as Redis answers
/// the blocked clients of a master turned replica (it was `-CLUSTERDOWN`).
/// The move is a real one: group 0's preferred leader (node 1) is killed,
/// another node takes the group, node 1 comes back and, once the group is
/// idle, takes it back.
#[test]
fn a_blocked_client_is_moved_when_its_leader_steps_down() {
    let mut c = Cluster::start(3);
    let key = cluster_support::key_in_slot(0, "blocked");
    c.kill9(0);
    c.wait_serving(Duration::from_secs(40));
    let interim = leader_of(&cluster_slots(c.nodes[1].port).unwrap(), 0).unwrap();
    assert_ne!(interim, c.nodes[0].port);
    let mut blocked = std::net::TcpStream::connect(("127.0.0.1", interim)).unwrap();
    blocked
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    use std::io::{Read, Write};
    write!(
        blocked,
        "*3\r\n$9\r\nBDELAYPOP\r\n${}\r\n{key}\r\n$1\r\n0\r\n",
        key.len()
    )
    .unwrap();
    c.restart(0);
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\r\n") {
        let n = blocked
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no reply to the blocked pop: {e}\n{}", c.logs()));
        assert!(n > 0, "connection closed\n{}", c.logs());
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(
        reply,
        format!("-MOVED 0 127.0.0.1:{}\r\n", c.nodes[0].port),
        "{}",
        c.logs()
    );
}

/// Every node killed at once (a power cut) and started again: each group
/// elects a leader from what its logs and stores hold, and every
/// acknowledged member of every group is there, due when it was.
#[test]
fn the_whole_cluster_restarts_with_every_acknowledged_member() {
    let mut c = Cluster::start(3);
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    // One queue per tag: spread over the groups.
    let mut scores = Vec::new();
    for tag in TAGS {
        let q = format!("{{{tag}}}q");
        for i in 0..50 {
            let m = format!("m{i}");
            let n: i64 = redis::cmd("DELAYADD")
                .arg(&q)
                .arg(600_000 + i)
                .arg(&m)
                .query(&mut con)
                .unwrap();
            assert_eq!(n, 1);
            let s: Option<i64> = redis::cmd("DELAYSCORE")
                .arg(&q)
                .arg(&m)
                .query(&mut con)
                .unwrap();
            scores.push((q.clone(), m, s.expect("just added")));
        }
    }
    drop(con);
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_serving(Duration::from_secs(40));
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    for (q, m, s) in &scores {
        let after: Option<i64> = query_retrying(
            &client,
            &mut con,
            redis::cmd("DELAYSCORE").arg(q).arg(m),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("DELAYSCORE {q} {m}: {e}\n{}", c.logs()));
        assert_eq!(after, Some(*s), "{q} {m} after the restart\n{}", c.logs());
    }
}

/// A node in cluster mode says so where Redis does: HELLO's `mode` and
/// INFO's `redis_mode` are `cluster` (clients and tools read them), and
/// CLUSTER HELP lists what it answers.
#[test]
fn hello_info_and_help_say_cluster_mode() {
    let Some(redis_cli) = require_tool("redis-cli", "apt-get install -y redis-tools") else {
        return;
    };
    let c = Cluster::start(3);
    let port = c.nodes[0].port;
    let cli = |args: &[&str]| -> String {
        let out = Command::new(&redis_cli)
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hello = cli(&["-3", "HELLO", "3"]);
    assert!(hello.contains("\nmode cluster\n"), "{hello}");
    let info = cli(&["INFO", "server"]);
    assert!(info.contains("redis_mode:cluster\r\n"), "{info}");
    let help = cli(&["CLUSTER", "HELP"]);
    assert!(
        help.starts_with("CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\n")
            && help.contains("\nSLOTS\n")
            && help.trim_end().ends_with("Print this help."),
        "{help}"
    );
}

/// INFO's `cluster` section shows, per group, the commit index and, on
/// the leader, how many entries each follower has yet to acknowledge (as
/// Redis's INFO lists a master's replicas with their lag).
#[test]
fn info_shows_each_group_s_commit_index_and_follower_lag() {
    let c = Cluster::start(3);
    let q = "{lag}q";
    let slot = key_slot(q);
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..20 {
        let _: i64 = redis::cmd("DELAYADD")
            .arg(q)
            .arg(600_000)
            .arg(format!("m{i}"))
            .query(&mut con)
            .unwrap();
    }
    let leader = leader_of(&cluster_slots(c.nodes[0].port).unwrap(), slot).unwrap();
    let line_of = |port: u16| -> String {
        group_line(port, slot).unwrap_or_else(|| panic!("no group line for slot {slot} on {port}"))
    };
    let field = line_field;
    let others: Vec<&cluster_support::Node> = c.nodes.iter().filter(|n| n.port != leader).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let led = line_of(leader);
        let committed = field(&led, "committed").expect("committed field");
        let last = field(&led, "last_log_index").unwrap();
        let lags: Vec<Option<u64>> = others
            .iter()
            .map(|n| field(&led, &format!("lag_node{}", n.id)))
            .collect();
        // Every write was acknowledged, so a majority holds it: committed
        // reaches the 20 adds, and with all nodes up the followers catch up.
        let caught_up = committed >= 20 && committed <= last && lags.iter().all(|l| *l == Some(0));
        let followers_ok = others.iter().all(|n| {
            let line = line_of(n.port);
            field(&line, "committed").is_some_and(|c| c >= 20) && !line.contains("lag_node")
        });
        if caught_up && followers_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader line: {led}; followers: {:?}\n{}",
            others.iter().map(|n| line_of(n.port)).collect::<Vec<_>>(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same figures on the leader's /metrics.
    let led = line_of(leader);
    let group = led
        .strip_prefix("raft_group")
        .and_then(|r| r.split(':').next())
        .expect("group number")
        .to_string();
    let node = c.nodes.iter().find(|n| n.port == leader).unwrap();
    let log = std::fs::read_to_string(&node.log).unwrap();
    let http = log
        .split("serving the console on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no HTTP address in the log: {log}"))
        .to_string();
    let mut conn = std::net::TcpStream::connect(&http).expect("HTTP port");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut conn, &mut body).unwrap();
    assert!(
        body.contains(&format!("delayd_raft_commit_index{{group=\"{group}\"}} ")),
        "{body}"
    );
    for n in &others {
        let lag = format!(
            "delayd_raft_replication_lag{{group=\"{group}\",follower=\"{}\"}} 0",
            n.id
        );
        assert!(body.contains(&lag), "no `{lag}` in:\n{body}");
    }
}

/// `redis-cli --cluster check` and `--cluster info`, the operator's view of a
/// Redis Cluster, find every slot covered and every node agreeing, and
/// count the keys of each leader.
#[test]
fn redis_cli_cluster_check_finds_the_cluster_sound() {
    let Some(cli) = require_tool("redis-cli", "apt-get install -y redis-tools") else {
        return;
    };
    let c = Cluster::start(3);
    let seed = format!("127.0.0.1:{}", c.nodes[0].port);
    let key_reply = ask_line(
        leader_of(
            &cluster_slots(c.nodes[0].port).unwrap(),
            key_slot("{check}q"),
        )
        .unwrap(),
        "DELAYADD {check}q 60000 m",
    );
    assert_eq!(key_reply.as_deref(), Some(":1"));
    let run = |what: &str| {
        let out = run_bounded(
            Command::new(&cli).args(["--cluster", what, &seed]),
            None,
            Duration::from_secs(30),
        );
        out.stdout
    };
    let check = run("check");
    assert!(
        check.contains("[OK] All nodes agree about slots configuration.")
            && check.contains("[OK] All 16384 slots covered."),
        "{check}"
    );
    let info = run("info");
    assert!(info.contains("[OK] 1 keys in 3 masters."), "{info}");
}

/// `CLUSTER NODES` on `port`, as text (empty if it did not answer).
fn cluster_nodes(port: u16) -> String {
    cluster_support::query_node(port, redis::cmd("CLUSTER").arg("NODES"))
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .unwrap_or_default()
}

/// INFO's `cluster_membership_change` on `port`.
fn membership_change(port: u16) -> String {
    cluster_support::query_node(port, redis::cmd("INFO").arg("cluster"))
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("cluster_membership_change:"))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[test]
fn a_node_is_added_and_another_removed_while_the_cluster_serves() {
    const N: usize = 120;
    let mut c = Cluster::start(3);
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    let keys: Vec<String> = (0..N)
        .map(|i| format!("{{{}}}q", TAGS[i % TAGS.len()]))
        .collect();
    let add = |client: &redis::cluster::ClusterClient,
               con: &mut redis::cluster::ClusterConnection,
               key: &str,
               m: &str| {
        let n: i64 = query_retrying(
            client,
            con,
            redis::cmd("DELAYADD").arg(key).arg(600_000).arg(m),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("DELAYADD {key} {m}: {e}"));
        assert_eq!(n, 1, "DELAYADD {key} {m}");
    };
    for (i, k) in keys.iter().enumerate() {
        add(&client, &mut con, k, &format!("before{i}"));
    }

    // Errors as Redis words them.
    let first = c.nodes[0].port;
    assert_eq!(
        ask_line(first, "CLUSTER MEET 127.0.0.1 x").as_deref(),
        Some("-ERR Invalid TCP base port specified: x")
    );
    assert_eq!(
        ask_line(first, "CLUSTER MEET localhost 7000").as_deref(),
        Some("-ERR Invalid node address specified: localhost:7000")
    );
    assert_eq!(
        ask_line(first, "CLUSTER FORGET nosuchnode").as_deref(),
        Some("-ERR Unknown node nosuchnode")
    );
    let my_name: String = cluster_support::query_node(first, redis::cmd("CLUSTER").arg("MYID"))
        .ok()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap();
    assert_eq!(
        ask_line(first, &format!("CLUSTER FORGET {my_name}")).as_deref(),
        Some("-ERR I tried hard but I can't forget myself...")
    );

    // A fourth node joins through node 1 and is met from node 2.
    let new = c.join(0);
    let (new_port, new_bus) = (c.nodes[new].port, c.nodes[new].bus);
    let second = c.nodes[1].port;
    assert_eq!(
        ask_line(
            second,
            &format!("CLUSTER MEET 127.0.0.1 {new_port} {new_bus}")
        )
        .as_deref(),
        Some("+OK")
    );
    // Writes go on while it is added.
    for (i, k) in keys.iter().enumerate().take(30) {
        add(&client, &mut con, k, &format!("during{i}"));
    }
    // Each group stays on three nodes: node 4 takes groups over from the
    // nodes that held them all.
    let added = cluster_support::eventually(Duration::from_secs(60), || {
        membership_change(second) == "done: adding node 4"
            && c.live_ports().iter().all(|&p| {
                cluster_slots(p).is_some_and(|ranges| {
                    ranges.iter().any(|r| r.ports.contains(&new_port))
                        && ranges.iter().all(|r| r.ports.len() == 3)
                })
            })
    });
    assert!(
        added,
        "node 4 did not take groups over: {} {:?}\n{}",
        membership_change(second),
        cluster_slots(second),
        c.logs()
    );
    // It learns of the group it is not in from that group's members.
    let whole = cluster_support::eventually(Duration::from_secs(10), || {
        cluster_nodes(new_port).lines().count() == 4
            && cluster_info(new_port).is_some_and(|i| i.starts_with("cluster_state:ok"))
    });
    assert!(whole, "the new node sees the cluster whole\n{}", c.logs());

    // Node 1, which leads a group, is removed from node 3.
    let third = c.nodes[2].port;
    let name1 = cluster_nodes(third)
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{first}@")))
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .expect("node 1 in CLUSTER NODES");
    assert_eq!(
        ask_line(third, &format!("CLUSTER FORGET {name1}")).as_deref(),
        Some("+OK")
    );
    // Another node takes its place in each of its groups.
    let removed = cluster_support::eventually(Duration::from_secs(60), || {
        membership_change(third) == "done: removing node 1"
            && [second, third, new_port].iter().all(|&p| {
                let nodes = cluster_nodes(p);
                nodes.lines().count() == 3
                    && !nodes.contains(&format!("127.0.0.1:{first}@"))
                    && cluster_slots(p).is_some_and(|ranges| {
                        ranges
                            .iter()
                            .all(|r| r.ports.len() == 3 && !r.ports.contains(&first))
                    })
            })
    });
    assert!(
        removed,
        "node 1 was not removed: {}\n{}",
        membership_change(third),
        c.logs()
    );
    c.kill9(0);
    c.wait_serving(Duration::from_secs(30));

    // Every acknowledged member is there, and writes go on, on the
    // three nodes left.
    let client = redis::cluster::ClusterClientBuilder::new(
        [second, third, new_port].map(|p| format!("redis://127.0.0.1:{p}/")),
    )
    .connection_timeout(Duration::from_secs(2))
    .response_timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    let mut con = client.get_connection().expect("cluster connection");
    for (i, k) in keys.iter().enumerate() {
        add(&client, &mut con, k, &format!("after{i}"));
    }
    for (i, k) in keys.iter().enumerate() {
        for m in [format!("before{i}"), format!("after{i}")]
            .into_iter()
            .chain((i < 30).then(|| format!("during{i}")))
        {
            let s: Option<i64> = query_retrying(
                &client,
                &mut con,
                redis::cmd("DELAYSCORE").arg(k).arg(&m),
                Duration::from_secs(20),
            )
            .unwrap();
            assert!(s.is_some(), "acknowledged member {m} of {k} lost");
        }
    }
}

#[test]
fn with_four_nodes_each_group_is_on_three_and_every_node_redirects() {
    let mut c = Cluster::start(4);
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    // Four groups, each on three of the four nodes, as every node says.
    for &p in &ports {
        let ranges = cluster_slots(p).expect("CLUSTER SLOTS");
        assert_eq!(ranges.len(), 4, "on {p}: {ranges:?}");
        for r in &ranges {
            let mut distinct = r.ports.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "on {p}: {r:?}");
        }
        let nodes = cluster_nodes(p);
        assert_eq!(nodes.lines().count(), 4, "on {p}:\n{nodes}");
    }
    // Every node answers a key of every range: served by its leader,
    // `-MOVED` to that leader elsewhere (also on a node outside the group).
    let ranges = cluster_slots(ports[0]).unwrap();
    for r in &ranges {
        let key = cluster_support::key_in_slot(r.first, "q");
        for &p in &ports {
            let reply = ask_line(p, &format!("DELAYADD {key} 600000 m{p}")).unwrap();
            if p == r.leader() {
                assert!(reply.starts_with(':'), "leader {p}: {reply}");
            } else {
                assert_eq!(
                    reply,
                    format!("-MOVED {} 127.0.0.1:{}", r.first, r.leader()),
                    "node {p} for slot {}",
                    r.first
                );
            }
        }
    }
    // A cluster client writes to every range; then one node dies and
    // every group keeps two of its three replicas.
    let client = c.client();
    let mut con = client.get_connection().expect("cluster connection");
    let keys: Vec<String> = ranges
        .iter()
        .map(|r| cluster_support::key_in_slot(r.first, "w"))
        .collect();
    for k in &keys {
        for i in 0..20 {
            let n: i64 = redis::cmd("DELAYADD")
                .arg(k)
                .arg(600_000)
                .arg(format!("m{i}"))
                .query(&mut con)
                .unwrap();
            assert_eq!(n, 1);
        }
    }
    // The node serving a slot counts and lists its queues (`{tN}q` and
    // `{tN}w`); others have none.
    for r in &ranges {
        let slot = r.first;
        let mut both = [
            cluster_support::key_in_slot(slot, "q"),
            cluster_support::key_in_slot(slot, "w"),
        ];
        both.sort();
        for &p in &ports {
            let count = ask_line(p, &format!("CLUSTER COUNTKEYSINSLOT {slot}")).unwrap();
            let mut listed: Vec<String> = cluster_support::query_node(
                p,
                redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(10),
            )
            .ok()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap();
            listed.sort();
            if p == r.leader() {
                assert_eq!(count, ":2", "leader {p}, slot {slot}");
                assert_eq!(listed, both);
                let one = ask_line(p, &format!("CLUSTER GETKEYSINSLOT {slot} 1")).unwrap();
                assert_eq!(one, "*1");
            } else {
                assert_eq!(count, ":0", "node {p}, slot {slot}");
                assert!(listed.is_empty());
            }
        }
    }
    for (cmd, err) in [
        ("CLUSTER COUNTKEYSINSLOT 16384", "-ERR Invalid slot"),
        (
            "CLUSTER COUNTKEYSINSLOT x",
            "-ERR value is not an integer or out of range",
        ),
        (
            "CLUSTER GETKEYSINSLOT 1 -1",
            "-ERR Invalid slot or number of keys",
        ),
        (
            "CLUSTER GETKEYSINSLOT -1 1",
            "-ERR Invalid slot or number of keys",
        ),
    ] {
        assert_eq!(ask_line(ports[0], cmd).as_deref(), Some(err), "{cmd}");
    }
    c.kill9(1);
    c.wait_serving(Duration::from_secs(40));
    for k in &keys {
        let card: i64 = query_retrying(
            &client,
            &mut con,
            redis::cmd("DELAYCARD").arg(k),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("DELAYCARD {k}: {e}\n{}", c.logs()));
        assert_eq!(card, 20, "{k}");
    }
}
