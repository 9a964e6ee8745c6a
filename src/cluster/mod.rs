//! Cluster mode: the store replicated by Raft (openraft) over three or
//! more nodes, spoken to as a Redis Cluster (docs/cluster.md).
//!
//! This version runs one group holding all 16,384 slots on every node of
//! `--cluster-nodes`: its leader serves every command, the others answer
//! `-MOVED` to it, and when the leader dies another node takes over with
//! everything the group committed. The leader's engine proposes each round
//! as one log entry ([`replicated`](crate::engine::storage::replicated));
//! the state machine applies committed entries to fjall on every node.

pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod slots;
pub(crate) mod state_machine;
pub(crate) mod topology;
pub(crate) mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openraft::{BasicNode, ServerState};
use tokio::sync::mpsc;

use self::log_store::LogStore;
use self::state_machine::StateMachine;
use self::types::Raft;
use crate::engine::clock::SystemClock;
use crate::engine::storage::fjall::FjallStorage;
use crate::engine::storage::replicated::{LeaderLink, Proposal, ReplicatedStorage};
use crate::engine::store::Store;
use crate::engine::{Engine, Fsync, Options};
use crate::{Error, Result};

/// One node of `--cluster-nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: u64,
    pub host: String,
    /// The client port.
    pub port: u16,
    /// The cluster-bus port (client port + 10000 unless given).
    pub bus_port: u16,
}

impl NodeSpec {
    fn bus_addr(&self) -> String {
        format!("{}:{}", self.host, self.bus_port)
    }
}

/// Parses `--cluster-nodes`: `id=host:port[@bus]` separated by commas or
/// spaces.
///
/// # Errors
///
/// A malformed entry, a repeated id, or fewer than one node.
pub fn parse_nodes(s: &str) -> std::result::Result<Vec<NodeSpec>, String> {
    let mut nodes: Vec<NodeSpec> = Vec::new();
    for item in s.split([',', ' ']).filter(|i| !i.is_empty()) {
        let bad = || format!("invalid cluster node '{item}' (expected id=host:port[@bus])");
        let (id, addr) = item.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.parse().map_err(|_| bad())?;
        let (addr, bus) = match addr.split_once('@') {
            Some((a, b)) => (a, Some(b.parse::<u16>().map_err(|_| bad())?)),
            None => (addr, None),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let bus_port = match bus {
            Some(b) => b,
            None => port.checked_add(10000).ok_or_else(bad)?,
        };
        if id == 0 || nodes.iter().any(|n| n.id == id) {
            return Err(format!("cluster node id {id} is 0 or repeated"));
        }
        nodes.push(NodeSpec {
            id,
            host: host.to_string(),
            port,
            bus_port,
        });
    }
    if nodes.is_empty() {
        return Err("no cluster nodes given".into());
    }
    Ok(nodes)
}

/// A node's part in the cluster.
pub struct Cluster {
    pub(crate) id: u64,
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) raft: Raft,
    /// Whether this node's engine serves (it leads, and has loaded).
    leading: AtomicBool,
    /// The group's leader now (0: none).
    leader: AtomicU64,
    /// The last leader known (0: none yet), which `CLUSTER SLOTS` keeps
    /// listing during an election so that every slot stays covered.
    last_leader: AtomicU64,
    log: LogStore,
}

/// How long an election waits for a leader's heartbeat: generous, since
/// three nodes may share two loaded cores.
const ELECTION_MIN_MS: u64 = 1500;
const ELECTION_MAX_MS: u64 = 3000;
const HEARTBEAT_MS: u64 = 300;

impl Cluster {
    /// Opens this node's share of the cluster in `options.dir`, joins the
    /// group (initialising it on first start) and returns the engine, which
    /// serves whenever this node leads.
    ///
    /// # Errors
    ///
    /// The store, the log or the bus port cannot be opened.
    pub async fn start(
        id: u64,
        nodes: Vec<NodeSpec>,
        options: &Options,
    ) -> Result<(Engine, Arc<Cluster>)> {
        let me = nodes
            .iter()
            .find(|n| n.id == id)
            .cloned()
            .ok_or_else(|| Error::msg(format!("cluster-id {id} is not in cluster-nodes")))?;
        let dir = options.dir.as_path();
        let data = Arc::new(FjallStorage::open(&dir.join("data"))?);
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let link = LeaderLink::new(id, incarnation);
        let engine = Engine::start_standby(standby(&link)?, options, Arc::new(SystemClock))?;
        let log = LogStore::open(&dir.join("raft-log"), engine.clone())?;
        let machine =
            StateMachine::open(data.clone(), link.clone(), dir.join("raft-snapshot.bin"))?;
        let config = openraft::Config {
            cluster_name: "delayd".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            install_snapshot_timeout: 30_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
            max_in_snapshot_log_to_keep: 2_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::msg(format!("raft config: {e}")))?;
        let raft = Raft::new(id, Arc::new(config), network::Network, log.clone(), machine)
            .await
            .map_err(|e| Error::msg(format!("raft: {e}")))?;
        let bus = tokio::net::TcpListener::bind((me.host.as_str(), me.bus_port))
            .await
            .map_err(|e| Error::msg(format!("cluster bus {}: {e}", me.bus_addr())))?;
        tokio::spawn(network::serve(bus, raft.clone()));
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| Error::msg(format!("raft: {e}")))?;
        if !initialized {
            let members: BTreeMap<u64, BasicNode> = nodes
                .iter()
                .map(|n| (n.id, BasicNode::new(n.bus_addr())))
                .collect();
            // Every node proposes the same first membership: whichever
            // wins, they agree (openraft allows this on all nodes).
            if let Err(e) = raft.initialize(members).await {
                tracing::info!("cluster already initialised elsewhere: {e}");
            }
        }
        let cluster = Arc::new(Cluster {
            id,
            nodes,
            raft,
            leading: AtomicBool::new(false),
            leader: AtomicU64::new(0),
            last_leader: AtomicU64::new(0),
            log,
        });
        tokio::spawn(follow_roles(cluster.clone(), engine.clone(), data, link));
        let syncing = cluster.clone();
        let fsync_engine = engine.clone();
        tokio::spawn(async move {
            // `everysec` for the log: appends reached the OS already.
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if fsync_engine.fsync() == Fsync::EverySec {
                    let log = syncing.log.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || log.sync()).await {
                        tracing::error!("fsyncing the raft log failed: {e}");
                    }
                }
            }
        });
        tracing::info!(
            "cluster mode: node {id} of {}, bus on {}",
            cluster.nodes.len(),
            me.bus_addr()
        );
        Ok((engine, cluster))
    }

    /// Whether this node serves its group now.
    pub(crate) fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// The group's leader as last seen.
    pub(crate) fn leader(&self) -> Option<&NodeSpec> {
        let id = self.leader.load(Ordering::Acquire);
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The cluster as this node sees it now, for the `CLUSTER` replies.
    pub(crate) fn topology(&self) -> topology::Topology {
        let m = self.raft.metrics().borrow().clone();
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let leader = m.current_leader;
        let last_leader = self.last_leader.load(Ordering::Acquire);
        topology::Topology {
            myself: self.id,
            nodes: self
                .nodes
                .iter()
                .map(|n| topology::NodeView {
                    id: n.id,
                    name: node_name(n.id),
                    host: n.host.clone(),
                    port: n.port,
                    bus_port: n.bus_port,
                    online: true,
                })
                .collect(),
            groups: vec![topology::GroupView {
                first_slot: 0,
                last_slot: slots::SLOTS - 1,
                leader,
                last_leader: (last_leader != 0).then_some(last_leader).or(leader),
                voters,
                term: m.current_term,
                applied_index: m.last_applied.map_or(0, |l| l.index),
            }],
        }
    }

    /// Where a command with these keys must go, if not here.
    ///
    /// # Errors
    ///
    /// `CROSSSLOT` (keys in different slots), or as [`Cluster::route`].
    pub(crate) fn route_keys<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> Result<()> {
        match slots::command_slot(keys) {
            Ok(None) => Ok(()),
            Ok(Some(slot)) => self.route(slot),
            Err(_) => Err(Error::Coded(
                "CROSSSLOT",
                "Keys in request don't hash to the same slot".into(),
            )),
        }
    }

    /// Where a command for `slot` must go, if not here.
    ///
    /// # Errors
    ///
    /// `MOVED slot host:port` (another node leads), `CLUSTERDOWN` (no
    /// leader now), `TRYAGAIN` (this node leads and is still loading).
    pub(crate) fn route(&self, slot: u16) -> Result<()> {
        if self.leading() {
            return Ok(());
        }
        match self.leader() {
            Some(n) if n.id == self.id => Err(Error::Coded(
                "TRYAGAIN",
                "Leadership is being taken over, try again".into(),
            )),
            Some(n) => Err(Error::Coded(
                "MOVED",
                format!("{slot} {}:{}", n.host, n.port),
            )),
            None => Err(Error::not_leader()),
        }
    }
}

/// A node's name as clients see it (40 hex digits, as a Redis node id):
/// derived from its number, so it is the same on every node and across
/// restarts.
fn node_name(id: u64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("delayd-cluster-node-{id}").as_bytes());
    digest[..20].iter().map(|b| format!("{b:02x}")).collect()
}

/// An empty store for an engine that does not serve.
fn standby(link: &Arc<LeaderLink>) -> Result<Store> {
    Store::over(Box::new(ReplicatedStorage::standby(link.clone())))
}

/// Follows openraft's view of who leads: starts serving when this node
/// becomes leader (once everything committed before is applied here), and
/// stops when it no longer is.
async fn follow_roles(
    cluster: Arc<Cluster>,
    engine: Engine,
    data: Arc<FjallStorage>,
    link: Arc<LeaderLink>,
) {
    let mut metrics = cluster.raft.metrics();
    let mut led_term: Option<u64> = None;
    loop {
        let (state, term, leader) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term, m.current_leader)
        };
        cluster.leader.store(leader.unwrap_or(0), Ordering::Release);
        if let Some(l) = leader {
            cluster.last_leader.store(l, Ordering::Release);
        }
        let leads = state == ServerState::Leader && leader == Some(cluster.id);
        if led_term.is_some() && (!leads || led_term != Some(term)) {
            cluster.leading.store(false, Ordering::Release);
            if let Ok(s) = standby(&link)
                && let Err(e) = engine.step_down(s)
            {
                tracing::error!("stepping down: {e}");
            }
            link.lose();
            led_term = None;
            tracing::info!("no longer leading (term {term})");
        }
        if leads && led_term.is_none() {
            match take_lead(&cluster, &engine, &data, &link).await {
                Ok(()) => {
                    led_term = Some(term);
                    cluster.leading.store(true, Ordering::Release);
                    tracing::info!("leading the group (term {term})");
                }
                Err(e) => {
                    tracing::warn!("taking the lead failed: {e}");
                    link.lose();
                }
            }
            // Look again at once: the role may have changed meanwhile.
            continue;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn take_lead(
    cluster: &Cluster,
    engine: &Engine,
    data: &Arc<FjallStorage>,
    link: &Arc<LeaderLink>,
) -> Result<()> {
    // Everything committed before this term (up to its blank entry) is
    // applied here before the engine loads from the store.
    cluster
        .raft
        .ensure_linearizable()
        .await
        .map_err(|e| Error::msg(format!("not leader: {e}")))?;
    let (tx, rx) = mpsc::unbounded_channel();
    link.lead(tx);
    tokio::spawn(propose(cluster.raft.clone(), rx));
    let mut store = Store::over(Box::new(ReplicatedStorage::leading(
        data.clone(),
        link.clone(),
    )))?;
    store.continue_after(link.last_proposed());
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.lead(store))
        .await
        .map_err(|e| Error::msg(format!("loading: {e}")))?
}

/// Hands the leader's rounds to openraft in order. Their outcome is not
/// awaited here: a committed round is reported by the state machine as it
/// applies it, and one that never commits by the loss of leadership.
async fn propose(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>) {
    while let Some(p) = rx.recv().await {
        if let Err(e) = raft.client_write_ff(p).await {
            tracing::error!("raft stopped: {e}");
            return;
        }
    }
}
