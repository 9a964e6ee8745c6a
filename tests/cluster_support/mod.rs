//! A real delayd cluster for black-box tests: N nodes of the debug binary,
//! each on fixed loopback client and bus ports (they are named in
//! `--cluster-nodes`, so a restart must reuse them) and a data directory of
//! its own, which kill -9, SIGSTOP/SIGCONT and restart act on. The leaders
//! are found the way clients find them: the first node of each `CLUSTER
//! SLOTS` entry, so nothing here assumes how many groups there are.

#![allow(dead_code)]

#[path = "../../compat-tests/harness.rs"]
pub mod harness;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use harness::{eventually, free_port, require_redis_py, require_tool, run_bounded};

/// One node process.
pub struct Node {
    pub id: u64,
    /// The address it is known by in `--cluster-nodes` (it also listens on
    /// 127.0.0.1, which the test's own probes use).
    pub host: String,
    pub port: u16,
    pub bus: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// SIGSTOPped (and not yet continued).
    pub stopped: bool,
    /// For a node added with [`Cluster::join`]: the member it joins
    /// through (`host:port@bus`); it is then started with only itself in
    /// `--cluster-nodes`.
    pub join: Option<String>,
}

impl Node {
    /// Whether the process runs (killed nodes do not).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it runs and is not stopped: it can answer.
    pub fn live(&self) -> bool {
        self.running() && !self.stopped
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of delayd nodes; every process is killed when dropped.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The `--cluster-nodes` value.
    pub spec: String,
    /// More flags for every node.
    pub extra: Vec<String>,
    _tmp: tempfile::TempDir,
}

/// One `CLUSTER SLOTS` entry: a slot range and its nodes' client ports,
/// the leader first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    pub ports: Vec<u16>,
}

impl SlotRange {
    pub fn leader(&self) -> u16 {
        self.ports[0]
    }
}

impl Cluster {
    /// Starts `n` nodes and waits until every slot has a leader that serves.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// [`Cluster::start`] with more flags for every node.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Self::start_on(&vec!["127.0.0.1"; n], extra)
    }

    /// One node per host address (loopback addresses of a network
    /// namespace, say, to cut one off), with more flags for every node.
    pub fn start_on(hosts: &[&str], extra: &[&str]) -> Cluster {
        let n = hosts.len();
        let tmp = tempfile::tempdir().expect("tempdir");
        // Named in --cluster-nodes, so a restarted node needs them back.
        let ports: Vec<u16> = (0..2 * n).map(|_| harness::stable_port()).collect();
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let dir = tmp.path().join(format!("node{}", i + 1));
                Node {
                    id: i as u64 + 1,
                    host: hosts[i].to_string(),
                    port: ports[i],
                    bus: ports[n + i],
                    log: tmp.path().join(format!("node{}.log", i + 1)),
                    dir,
                    child: None,
                    stopped: false,
                    join: None,
                }
            })
            .collect();
        let spec = nodes
            .iter()
            .map(|n| format!("{}={}:{}@{}", n.id, n.host, n.port, n.bus))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            nodes,
            spec,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        for i in 0..n {
            c.launch(i);
        }
        for i in 0..n {
            c.wait_answers(i);
        }
        c.wait_serving(Duration::from_secs(40));
        c
    }

    /// Index of the node with this client port.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    fn launch(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let mut bind = String::from("127.0.0.1");
        if node.host != bind {
            bind = format!("{bind} {}", node.host);
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_delayd"));
        cmd.args(["--port", &node.port.to_string(), "--dir"])
            .arg(&node.dir)
            .args(["--http-port", "0"]);
        match &node.join {
            None => cmd.args(["--cluster-nodes", &self.spec]),
            Some(member) => {
                let own = format!("{}={}:{}@{}", node.id, node.host, node.port, node.bus);
                cmd.args(["--cluster-nodes", &own, "--cluster-join", member])
            }
        };
        let child = cmd
            .args(["--cluster-id", &node.id.to_string(), "--bind", &bind])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start delayd");
        node.child = Some(child);
        node.stopped = false;
    }

    /// Waits until node `i` answers PING on its port (its process, not
    /// another test's: it would have failed to bind and exited).
    fn wait_answers(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let node = &mut self.nodes[i];
            if let Some(c) = node.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "node {} exited ({st}) at start; its log:\n{}",
                    node.id,
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
            }
            if ask_line(node.port, "PING").as_deref() == Some("+PONG") {
                return;
            }
            if Instant::now() >= deadline {
                panic!("node {} did not answer PING; logs:\n{}", i + 1, self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new node (the next id, on 127.0.0.1) that joins the cluster
    /// through node `via` (`--cluster-join`), and waits until it answers.
    /// It holds no group until a member runs `CLUSTER MEET` to it. Returns
    /// its index.
    pub fn join(&mut self, via: usize) -> usize {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let dir = self._tmp.path().join(format!("node{id}"));
        let member = &self.nodes[via];
        let join = format!("{}:{}@{}", member.host, member.port, member.bus);
        self.nodes.push(Node {
            id,
            host: "127.0.0.1".into(),
            port: harness::stable_port(),
            bus: harness::stable_port(),
            log: self._tmp.path().join(format!("node{id}.log")),
            dir,
            child: None,
            stopped: false,
            join: Some(join),
        });
        let i = self.nodes.len() - 1;
        self.launch(i);
        self.wait_answers(i);
        i
    }

    /// Restarts a killed node on its ports and data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.nodes[i].running(), "node {} still runs", i + 1);
        self.launch(i);
        self.wait_answers(i);
    }

    /// kill -9, and waits for the process to be gone.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].stopped = false;
    }

    /// SIGSTOP (the process freezes with its sockets open).
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.nodes[i].stopped = true;
    }

    /// SIGCONT after [`Cluster::stop`].
    pub fn cont(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].stopped = false;
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].pid().expect("node runs");
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {pid} failed");
    }

    /// Cuts node `i` off from every other node and every client that
    /// reaches it by its address (its 127.0.0.1 stays open to the test's
    /// probes): packets from and to its address are dropped, connections
    /// hang as over a dead link. Only in a namespace of this test's own
    /// ([`netns::private_network`]).
    pub fn isolate(&self, i: usize) {
        let host = &self.nodes[i].host;
        netns::ip(&["rule", "add", "prio", "10", "to", host, "blackhole"]);
        netns::ip(&["rule", "add", "prio", "11", "from", host, "blackhole"]);
    }

    /// Undoes [`Cluster::isolate`].
    pub fn heal(&self) {
        netns::ip(&["rule", "del", "prio", "10"]);
        netns::ip(&["rule", "del", "prio", "11"]);
    }

    /// Client ports of the nodes that can answer.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.live())
            .map(|n| n.port)
            .collect()
    }

    /// `redis://127.0.0.1:port/` of every node (a cluster client's seeds).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// A cluster client with bounded timeouts and the default retries.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        self.client_builder().build().expect("cluster client")
    }

    /// The builder behind [`Cluster::client`], for other retry settings.
    pub fn client_builder(&self) -> redis::cluster::ClusterClientBuilder {
        redis::cluster::ClusterClientBuilder::new(self.urls())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            // The tail is what explains a failure; whole logs can be long.
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            out.push_str(&format!(
                "--- node {} (port {}) log tail ---\n",
                n.id, n.port
            ));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until every live node says `cluster_state:ok` and a write to
    /// every leader's slots is served, through a cluster client.
    pub fn wait_serving(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.serving() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not serving after {limit:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn serving(&self) -> bool {
        let live = self.live_ports();
        if !live
            .iter()
            .all(|p| cluster_info(*p).is_some_and(|i| i.contains("cluster_state:ok\r\n")))
        {
            return false;
        }
        let Some(ranges) = live.first().and_then(|p| cluster_slots(*p)) else {
            return false;
        };
        // One key per range (its first slot), read on that range's leader.
        ranges.iter().all(|r| {
            live.contains(&r.leader())
                && ask_line(
                    r.leader(),
                    &format!("DELAYCARD {}", key_in_slot(r.first, "probe")),
                )
                .is_some_and(|l| l.starts_with(':'))
        })
    }

    /// The client port of the node leading the most slots, as `from` sees it.
    pub fn leader_of_most_slots(&self, from: u16) -> Option<u16> {
        let mut by: BTreeMap<u16, u32> = BTreeMap::new();
        for r in cluster_slots(from)? {
            *by.entry(r.leader()).or_default() += u32::from(r.last - r.first) + 1;
        }
        by.into_iter().max_by_key(|(_, n)| *n).map(|(p, _)| p)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped {
                let _ = Command::new("kill")
                    .args(["-CONT", &self.nodes[i].pid().unwrap_or(0).to_string()])
                    .status();
            }
            self.kill9(i);
        }
    }
}

/// A raw connection with short timeouts (a stopped node must not hang us).
fn raw(port: u16) -> Option<TcpStream> {
    let c = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(c)
}

/// Sends one command (words split on spaces) and returns the reply's
/// first line without CRLF, or `None` if the node does not answer.
pub fn ask_line(port: u16, cmd: &str) -> Option<String> {
    let mut c = raw(port)?;
    let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
    c.write_all(&harness::resp(&args)).ok()?;
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).ok()?;
    line.strip_suffix("\r\n").map(str::to_string)
}

/// One command through a plain (non-cluster) redis-rs connection with short
/// timeouts.
pub fn query_node(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(1))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    con.set_write_timeout(Some(Duration::from_secs(2)))?;
    cmd.query(&mut con)
}

/// `CLUSTER INFO` from a node, or `None` if it does not answer.
/// Node `port`'s INFO `cluster` line for the Raft group owning `slot`
/// (`raft_group<g>:slots=a-b,role=...`); `None` if it does not answer.
pub fn group_line(port: u16, slot: u16) -> Option<String> {
    let info = match query_node(port, redis::cmd("INFO").arg("cluster")) {
        Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(redis::Value::VerbatimString { text, .. }) => text,
        _ => return None,
    };
    info.lines()
        .find(|l| {
            l.starts_with("raft_group")
                && l.split(',').next().is_some_and(|r| {
                    let (a, b) = r.split_once('=').unwrap().1.split_once('-').unwrap();
                    a.parse::<u16>().unwrap() <= slot && slot <= b.parse::<u16>().unwrap()
                })
        })
        .map(str::to_string)
}

/// The number in field `name=` of a [`group_line`].
pub fn line_field(line: &str, name: &str) -> Option<u64> {
    line.split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim().parse().ok())
}

pub fn cluster_info(port: u16) -> Option<String> {
    query_node(port, redis::cmd("CLUSTER").arg("INFO"))
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
}

/// `CLUSTER SLOTS` from a node, or `None` if it does not answer.
pub fn cluster_slots(port: u16) -> Option<Vec<SlotRange>> {
    let v = query_node(port, redis::cmd("CLUSTER").arg("SLOTS")).ok()?;
    parse_slots(&v)
}

/// Parses a `CLUSTER SLOTS` reply; `None` if it has another shape.
pub fn parse_slots(v: &redis::Value) -> Option<Vec<SlotRange>> {
    use redis::Value;
    let int = |v: &Value| match v {
        Value::Int(i) => u16::try_from(*i).ok(),
        _ => None,
    };
    let Value::Array(entries) = v else {
        return None;
    };
    let mut out = Vec::new();
    for e in entries {
        let Value::Array(parts) = e else {
            return None;
        };
        let (first, last) = (int(parts.first()?)?, int(parts.get(1)?)?);
        let mut ports = Vec::new();
        for n in &parts[2..] {
            let Value::Array(node) = n else {
                return None;
            };
            ports.push(int(node.get(1)?)?);
        }
        if ports.is_empty() {
            return None;
        }
        out.push(SlotRange { first, last, ports });
    }
    Some(out)
}

/// The node leading `slot` in these ranges.
pub fn leader_of(ranges: &[SlotRange], slot: u16) -> Option<u16> {
    ranges
        .iter()
        .find(|r| r.first <= slot && slot <= r.last)
        .map(SlotRange::leader)
}

/// Redis's key hash slot (CRC16/XMODEM of the hash tag or key, mod 16384).
pub fn key_slot(key: &str) -> u16 {
    let k = key.as_bytes();
    let tagged = k.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &k[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    let data = tagged.unwrap_or(k);
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// A key `{tag}name` whose tag hashes to `slot` (searched; every slot has
/// short tags).
pub fn key_in_slot(slot: u16, name: &str) -> String {
    (0u64..)
        .map(|i| format!("{{t{i}}}{name}"))
        .find(|k| key_slot(k) == slot)
        .unwrap_or_default()
}

/// Runs `cmd` through a cluster connection, retrying for up to `limit`: the
/// sync client follows MOVED and waits on TRYAGAIN/CLUSTERDOWN itself, but
/// keeps its slot map while a dead leader refuses connections, so on an
/// error the application makes a new connection (which reads `CLUSTER
/// SLOTS` again), as a real application would.
pub fn query_retrying<T: redis::FromRedisValue>(
    client: &redis::cluster::ClusterClient,
    con: &mut redis::cluster::ClusterConnection,
    cmd: &redis::Cmd,
    limit: Duration,
) -> redis::RedisResult<T> {
    let deadline = Instant::now() + limit;
    loop {
        match cmd.query(con) {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(c) = client.get_connection() {
                    *con = c;
                }
            }
        }
    }
}

/// A network namespace of the test's own, for partitions.
pub mod netns {
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Set in the re-run test process: the namespace it runs in.
    const MARK: &str = "DELAYD_TEST_NETNS";

    /// Where the calling test runs.
    pub enum Network {
        /// A namespace of its own: [`super::Cluster::isolate`] works.
        Private,
        /// The machine's: no partitions (not root, outside CI).
        Shared,
    }

    /// Runs `ip`, failing the test if it fails.
    pub fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Gives test `test` (its full name in this binary) a network namespace
    /// of its own. In the test's first process this creates the namespace,
    /// runs the test again inside it (waiting up to `limit`), fails if that
    /// run fails, and returns `None`: the caller returns. In the run inside,
    /// it brings up loopback, moves the local routing rule after the slots
    /// [`super::Cluster::isolate`] uses, and returns `Private`. Where no
    /// namespace can be made it returns `Shared`, or fails when `CI` is
    /// set.
    pub fn private_network(test: &str, limit: Duration) -> Option<Network> {
        if std::env::var_os(MARK).is_some() {
            ip(&["link", "set", "lo", "up"]);
            ip(&["rule", "add", "prio", "100", "lookup", "local"]);
            ip(&["rule", "del", "prio", "0"]);
            return Some(Network::Private);
        }
        let name = format!("delayd-{}-{}", std::process::id(), test.len());
        let made = Command::new("ip").args(["netns", "add", &name]).output();
        match made {
            Ok(o) if o.status.success() => {}
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot create a network namespace (root and iproute2 needed): {why}"
                );
                eprintln!("no network namespace ({why}): running without partitions");
                return Some(Network::Shared);
            }
        }
        struct Remove(String);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let _remove = Remove(name.clone());
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &name])
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(MARK, &name)
            .spawn()
            .expect("run the test in its namespace");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for the test") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{test} in its namespace ran over {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            status.success(),
            "{test} failed in its namespace ({status})"
        );
        None
    }
}
