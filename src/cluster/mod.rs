//! Cluster mode: the store replicated by Raft (openraft) over three or
//! more nodes, spoken to as a Redis Cluster (docs/cluster.md).
//!
//! With N nodes in `--cluster-nodes` there are N groups; group g owns an
//! equal range of the 16,384 slots and is on three nodes (node g and the
//! next two; all of them when N < 3), and node g is the group's preferred
//! leader, so leaders spread and every node takes writes. A group's leader
//! serves its slots, the others answer `-MOVED` to it (a node outside the
//! group learns its leader from the members, [`network::GroupNews`]), and
//! when the leader dies another replica takes over with everything the
//! group committed. Each group has its own engine (standby until this node
//! leads it), Raft log and fjall store on every node, idle where the node
//! is not a member; the leader's engine proposes each round as one log
//! entry ([`replicated`](crate::engine::storage::replicated)), and the
//! state machine applies committed entries to fjall on every replica.
//! `CLUSTER MEET` and `FORGET` ([`membership`]) add and remove nodes while
//! the cluster serves, moving group replicas so each group stays on three.

pub(crate) mod log_store;
pub(crate) mod membership;
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
use self::membership::{Address, Change, Refused};
use self::state_machine::StateMachine;
use self::types::Raft;
use crate::engine::clock::SystemClock;
use crate::engine::storage::Space;
use crate::engine::storage::fjall::FjallStorage;
use crate::engine::storage::replicated::{LeaderLink, Proposal, ReplicatedStorage};
pub(crate) use crate::engine::storage::write_atomically;
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
        join_host_port(&self.host, self.bus_port)
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `--cluster-join`: a member's `host:port[@bus]` (the bus port
/// defaults to the port + 10000), as a node whose id is not known yet (0).
///
/// # Errors
///
/// A malformed address.
pub fn parse_join(s: &str) -> std::result::Result<NodeSpec, String> {
    parse_nodes(&format!("1={s}"))
        .ok()
        .and_then(|mut n| n.pop())
        .map(|n| NodeSpec { id: 0, ..n })
        .ok_or_else(|| format!("invalid cluster-join address '{s}' (expected host:port[@bus])"))
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

/// One Raft group as hosted on this node.
pub(crate) struct Group {
    pub(crate) first_slot: u16,
    /// Inclusive.
    pub(crate) last_slot: u16,
    /// The node that should lead it when it can (leaders spread).
    preferred: u64,
    pub(crate) raft: Raft,
    /// The group's committed state on this node.
    data: Arc<FjallStorage>,
    /// Serves the group's commands while this node leads it.
    pub(crate) engine: Engine,
    /// Whether this node's engine serves the group (it leads, and loaded).
    leading: AtomicBool,
    /// Until when (ms on [`Cluster::clock`]) a majority is known to follow
    /// this node as leader: past it, nothing is served, since another node
    /// may have been elected meanwhile.
    lease_until: AtomicU64,
    /// The group's leader now (0: none).
    leader: AtomicU64,
    /// The last leader known (0: none yet), which `CLUSTER SLOTS` keeps
    /// listing during an election so that every slot stays covered.
    last_leader: AtomicU64,
    /// Whether this node is in the group's membership (a voter or a
    /// learner). Each group is on three of the nodes; the others keep its
    /// Raft, empty and idle, for when it is moved to them.
    member: AtomicBool,
    /// Whether the members' news show a newer membership without this
    /// node: it was removed while it did not hear of it, and its own copy
    /// of the membership is stale.
    ousted: AtomicBool,
    /// What the group's members said of it lately, for a node outside it.
    news: std::sync::Mutex<Option<network::GroupNews>>,
    log: LogStore,
}

impl Group {
    /// Whether this node is in the group (see [`Group::member`] and
    /// [`Group::ousted`]).
    fn is_member(&self) -> bool {
        self.member.load(Ordering::Acquire) && !self.ousted.load(Ordering::Acquire)
    }
}

/// A node's part in the cluster.
pub struct Cluster {
    pub(crate) id: u64,
    /// This node, as `--cluster-nodes` names it.
    me: NodeSpec,
    /// `--cluster-nodes`: how a new cluster starts, and the client ports of
    /// members that older groups name by bus address alone.
    flagged: Vec<NodeSpec>,
    /// Every node of the cluster: the members of the groups' memberships
    /// once this node holds one (so nodes added or removed while serving
    /// show), `flagged` until then.
    nodes: std::sync::RwLock<Vec<NodeSpec>>,
    /// The last `CLUSTER MEET` or `FORGET` this node ran, and how it went
    /// (INFO's `cluster_membership_change`).
    change: std::sync::Mutex<String>,
    /// In slot order.
    pub(crate) groups: Vec<Group>,
    /// The group this node prefers to lead: its engine answers the commands
    /// without keys.
    home: usize,
    /// The clock of the groups' leases.
    started: std::time::Instant,
    /// When each peer was last heard from.
    liveness: Arc<network::Liveness>,
    /// What this node says and expects on the bus.
    identity: network::BusIdentity,
    /// Why a group's Raft stopped on its own (a bug in it, or in its
    /// storage): the node cannot serve that group any more and shuts down.
    failure: tokio::sync::watch::Sender<Option<String>>,
}

/// How long a follower waits for a leader's heartbeat before it stands
/// for election. openraft 0.9 adds a leader lease of the maximum on top
/// (a follower that heard from its leader votes for nobody else, and
/// stands for election itself, only after the maximum and then the random
/// timeout), so a failover takes 2.5–3 s plus the new leader's start; the
/// heartbeat comes 3 times within the minimum, enough on a loaded 2-core
/// machine. LEASE_MS must stay below the maximum.
const ELECTION_MIN_MS: u64 = 1000;
const ELECTION_MAX_MS: u64 = 1500;
const HEARTBEAT_MS: u64 = 300;

/// How many nodes a group is on (fewer when the cluster has fewer nodes).
pub(crate) const REPLICAS: usize = 3;

/// How long a `CLUSTER MEET` or `FORGET` keeps asking a group's leaders
/// (a node added may take a while to receive a snapshot of the store).
const CHANGE_LIMIT: Duration = Duration::from_secs(900);

/// How often a preferred leader that does not lead its group asks for an
/// election (when it is caught up), so that leaders spread again after a
/// failover.
const REBALANCE_EVERY: Duration = Duration::from_secs(10);

fn raft_config(snapshot_logs: u64) -> Result<Arc<openraft::Config>> {
    let config = openraft::Config {
        cluster_name: "delayd".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_MIN_MS,
        election_timeout_max: ELECTION_MAX_MS,
        install_snapshot_timeout: 30_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_logs.max(1)),
        // Kept past a snapshot, so a follower a little behind catches up
        // from the log rather than a whole snapshot.
        max_in_snapshot_log_to_keep: snapshot_logs / 10,
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::msg(format!("raft config: {e}")))?;
    Ok(Arc::new(config))
}

impl Cluster {
    /// Opens this node's replicas of every group in `options.dir`, joins
    /// them (initialising them on first start) and returns the engine of
    /// this node's home group, for commands without keys.
    ///
    /// With `join` (a member's address) and nothing in `options.dir`, the
    /// node first asks that member which cluster it joins; it holds no
    /// group until a member runs `CLUSTER MEET` to it.
    ///
    /// # Errors
    ///
    /// A store, a log or the bus port cannot be opened; `id` is not in
    /// `nodes`; the member to join did not answer.
    pub async fn start(
        id: u64,
        nodes: Vec<NodeSpec>,
        join: Option<NodeSpec>,
        options: &Options,
        snapshot_logs: u64,
    ) -> Result<(Engine, Arc<Cluster>)> {
        let me = nodes
            .iter()
            .find(|n| n.id == id)
            .cloned()
            .ok_or_else(|| Error::msg(format!("cluster-id {id} is not in cluster-nodes")))?;
        let source = me
            .host
            .parse()
            .ok()
            .filter(|ip: &std::net::IpAddr| !ip.is_unspecified());
        let settled = settle(&options.dir, id, &nodes, join, source).await?;
        let mut known = nodes.clone();
        known.extend(
            settled
                .member
                .filter(|m| known.iter().all(|n| n.id != m.id)),
        );
        let preferred = settled.description.preferred;
        let count = preferred.len();
        let home = preferred
            .iter()
            .position(|&p| p == id)
            .unwrap_or(id as usize % count);
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let identity = network::BusIdentity {
            cluster: settled.description.cluster,
            me: id,
            source,
        };
        let liveness = Arc::new(network::Liveness::default());
        let mut groups = Vec::with_capacity(count);
        let mut gates = Vec::with_capacity(count);
        let mut starts = Vec::with_capacity(count);
        for (g, &preferred) in preferred.iter().enumerate() {
            let dir = options.dir.join(format!("group-{g}"));
            let data = Arc::new(FjallStorage::open(&dir.join("data"))?);
            let link = LeaderLink::new(id, incarnation);
            let group_options = Options {
                dir: dir.clone(),
                ..options.clone()
            };
            let engine =
                Engine::start_standby(standby(&link)?, &group_options, Arc::new(SystemClock))?;
            let log = LogStore::open(&dir.join("raft-log"), engine.clone())?;
            let machine =
                StateMachine::open(data.clone(), link.clone(), dir.join("raft-snapshot.bin"))?;
            let network = network::Network {
                group: g as u32,
                identity,
                liveness: liveness.clone(),
            };
            let raft = Raft::new(
                id,
                raft_config(snapshot_logs)?,
                network,
                log.clone(),
                machine,
            )
            .await
            .map_err(|e| Error::msg(format!("raft: {e}")))?;
            let held = raft
                .is_initialized()
                .await
                .map_err(|e| Error::msg(format!("raft: {e}")))?;
            gates.push(network::VoteGate::new(held));
            let member = network::GroupNews::of(&raft, id).is_some();
            let (first_slot, last_slot) = slot_range(g, count);
            groups.push(Group {
                first_slot,
                last_slot,
                preferred,
                raft,
                data: data.clone(),
                engine,
                leading: AtomicBool::new(false),
                lease_until: AtomicU64::new(0),
                leader: AtomicU64::new(0),
                last_leader: AtomicU64::new(0),
                member: AtomicBool::new(member),
                ousted: AtomicBool::new(false),
                news: std::sync::Mutex::new(None),
                log,
            });
            starts.push((data, link));
        }
        let bus = tokio::net::TcpListener::bind((me.host.as_str(), me.bus_port))
            .await
            .map_err(|e| Error::msg(format!("cluster bus {}: {e}", me.bus_addr())))?;
        let gates = Arc::new(gates);
        let description = network::Description {
            cluster: identity.cluster,
            me: id,
            preferred,
        };
        tokio::spawn(network::serve(
            bus,
            identity,
            description,
            groups.iter().map(|g| g.raft.clone()).collect(),
            gates.clone(),
            liveness.clone(),
        ));
        let cluster = Arc::new(Cluster {
            id,
            me: me.clone(),
            flagged: nodes,
            nodes: std::sync::RwLock::new(known),
            change: std::sync::Mutex::new("none".into()),
            groups,
            home,
            started: std::time::Instant::now(),
            liveness,
            identity,
            failure: tokio::sync::watch::Sender::new(None),
        });
        cluster.refresh_nodes();
        // In the background: a new cluster waits for a majority of its
        // nodes, and this one answers CLUSTERDOWN meanwhile. A node that
        // joined never starts a group: members add it to theirs.
        if !settled.joined {
            let booting = cluster.clone();
            tokio::spawn(async move {
                let g = booting.home;
                let (nodes, replicas) = (&booting.flagged, booting.replicas(g));
                let group = &booting.groups[g];
                if let Err(e) = bootstrap(booting.identity, nodes, &replicas, g, group).await {
                    tracing::error!("starting group {}: {e}", booting.home);
                }
            });
        }
        for (g, (data, link)) in starts.into_iter().enumerate() {
            tokio::spawn(follow_roles(cluster.clone(), g, data, link));
            tokio::spawn(rebalance(cluster.clone(), g));
            tokio::spawn(open_vote_gate(cluster.clone(), g, gates.clone()));
        }
        tokio::spawn(sync_logs(cluster.clone()));
        tokio::spawn(probe_peers(cluster.clone()));
        tracing::info!(
            "cluster mode: node {id}, {count} groups, bus on {}",
            me.bus_addr()
        );
        Ok((cluster.groups[home].engine.clone(), cluster))
    }

    /// The cluster as this node sees it now, for the `CLUSTER` replies.
    pub(crate) fn topology(&self) -> topology::Topology {
        let nodes = self.nodes();
        topology::Topology {
            myself: self.id,
            nodes: nodes
                .iter()
                .map(|n| topology::NodeView {
                    id: n.id,
                    name: node_name(n.id),
                    host: n.host.clone(),
                    port: n.port,
                    bus_port: n.bus_port,
                    // Leaders send heartbeats every HEARTBEAT_MS: a peer
                    // not heard from for several is taken as down.
                    online: n.id == self.id
                        || self
                            .liveness
                            .recent(n.id, Duration::from_millis(HEARTBEAT_MS * 10)),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let last_leader = g.last_leader.load(Ordering::Acquire);
                    let news = if g.is_member() {
                        network::GroupNews::of(&g.raft, self.id)
                    } else {
                        g.news.lock().ok().and_then(|n| n.clone())
                    };
                    let news = news.unwrap_or_else(|| network::GroupNews {
                        // Nothing heard yet: where a new cluster puts it.
                        leader: 0,
                        term: 0,
                        voters: self.replicas(i),
                        applied: 0,
                        members: Vec::new(),
                        config: 0,
                    });
                    topology::GroupView {
                        first_slot: g.first_slot,
                        last_slot: g.last_slot,
                        leader: (news.leader != 0).then_some(news.leader),
                        last_leader: (last_leader != 0).then_some(last_leader),
                        voters: news.voters,
                        term: news.term,
                        applied_index: news.applied,
                    }
                })
                .collect(),
        }
    }

    /// The group that must run a command with these keys (`None`: it has
    /// none, and runs on the client's current engine).
    ///
    /// # Errors
    ///
    /// `CROSSSLOT` (keys in different slots), `MOVED slot host:port`
    /// (another node leads the slot's group), `CLUSTERDOWN` (no leader
    /// now), `TRYAGAIN` (this node leads it and is still loading).
    pub(crate) fn route_keys<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Option<usize>> {
        let slot = match slots::command_slot(keys) {
            Ok(None) => return Ok(None),
            Ok(Some(slot)) => slot,
            Err(_) => {
                return Err(Error::Coded(
                    "CROSSSLOT",
                    "Keys in request don't hash to the same slot".into(),
                ));
            }
        };
        let g = self.group_of(slot);
        let group = &self.groups[g];
        if group.leading.load(Ordering::Acquire) {
            if self.now_ms() < group.lease_until.load(Ordering::Acquire) {
                return Ok(Some(g));
            }
            // Leading, but no majority confirmed it lately: a partition may
            // have elected another leader, so nothing is answered here.
            return Err(Error::not_leader());
        }
        let leader = group.leader.load(Ordering::Acquire);
        match self.node(leader) {
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

    /// What a client blocked on `key` is told when its group's leadership
    /// left this node: `-MOVED` to the new leader (as Redis answers the
    /// blocked clients of a master turned replica), once known; a node
    /// steps down as soon as it votes for another, before that one has
    /// won, so this waits up to an election for the winner. `e` if none
    /// is known by then.
    pub(crate) async fn redirect_lost(&self, e: Error, key: &[u8]) -> Error {
        if !e.is_not_leader() {
            return e;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ELECTION_MAX_MS);
        loop {
            match self.route_keys(std::iter::once(key)) {
                Err(found) if !found.is_not_leader() => return found,
                // Led here again: a retry is served here.
                Ok(_) => return e,
                Err(_) if tokio::time::Instant::now() >= deadline => return e,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Every node of the cluster as this node knows it now.
    pub(crate) fn nodes(&self) -> Vec<NodeSpec> {
        self.nodes.read().map(|n| n.clone()).unwrap_or_default()
    }

    /// The node with this id, if known.
    fn node(&self, id: u64) -> Option<NodeSpec> {
        let nodes = self.nodes.read().ok()?;
        nodes.iter().find(|n| n.id == id).cloned()
    }

    /// Takes the node table from the groups' memberships (every member of
    /// any group: from this node's own replicas, and from the members'
    /// news of the groups it is not in), once it knows one; keeps it as it
    /// is before.
    fn refresh_nodes(&self) {
        let mut table: BTreeMap<u64, NodeSpec> = BTreeMap::new();
        let mut add = |id: u64, addr: &str| {
            if let Some(n) = Address::parse(id, addr, &self.flagged) {
                table.entry(id).or_insert(n);
            }
        };
        for g in &self.groups {
            // Outside a group, its Raft here holds at most the membership
            // of when this node left it: only the members' news count.
            if g.is_member() {
                let m = g.raft.metrics().borrow().membership_config.clone();
                for (id, node) in m.membership().nodes() {
                    add(*id, &node.addr);
                }
            } else if let Ok(news) = g.news.lock() {
                for (id, addr) in news.iter().flat_map(|n| n.members.iter()) {
                    add(*id, addr);
                }
            }
        }
        if table.is_empty() {
            return;
        }
        table.entry(self.id).or_insert_with(|| self.me.clone());
        if let Ok(mut nodes) = self.nodes.write() {
            *nodes = table.into_values().collect();
        }
    }

    /// `CLUSTER MEET host port bus`: asks the node listening there (started
    /// with `--cluster-join`) which it is, then has every group's leader add
    /// it, as a learner until it has caught up, then as a voter. Runs in
    /// the background, as Redis's handshake does; INFO's
    /// `cluster_membership_change` says how it went.
    pub(crate) fn meet(self: &Arc<Self>, host: String, port: u16, bus_port: u16) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let bus = join_host_port(&host, bus_port);
            cluster.note_change(format!("meeting {bus}"));
            let Some(met) = network::describe(cluster.identity, &bus).await else {
                cluster.note_change(format!(
                    "failed: no node of this cluster answered at {bus} \
                     (start it with --cluster-join)"
                ));
                return;
            };
            let node = NodeSpec {
                id: met.me,
                host,
                port,
                bus_port,
            };
            let steps =
                membership::plan_meet(met.me, &Address::of(&node), cluster.placements(), REPLICAS);
            let what = format!("adding node {}", met.me);
            cluster.run_plan(&what, steps).await;
        });
    }

    /// `CLUSTER FORGET name`: has the leader of each group the node is in
    /// remove it (a leader removed steps down, and the others elect
    /// another), after adding another node in its place where one is free.
    /// Runs in the background, as [`Cluster::meet`].
    ///
    /// # Errors
    ///
    /// Redis's texts: no node has that name, or it is this node.
    pub(crate) fn forget(self: &Arc<Self>, name: &[u8]) -> Result<()> {
        let Some(node) = self
            .nodes()
            .into_iter()
            .find(|n| node_name(n.id).as_bytes() == name)
        else {
            return Err(Error::msg(format!(
                "Unknown node {}",
                String::from_utf8_lossy(name)
            )));
        };
        if node.id == self.id {
            return Err(Error::msg("I tried hard but I can't forget myself..."));
        }
        let cluster = self.clone();
        tokio::spawn(async move {
            let what = format!("removing node {}", node.id);
            let addr_of = |id| cluster.node(id).map(|n| Address::of(&n));
            let steps = membership::plan_forget(node.id, cluster.placements(), REPLICAS, addr_of);
            cluster.run_plan(&what, steps).await;
        });
        Ok(())
    }

    /// Each group's voters and leader as this node knows them now.
    fn placements(&self) -> Vec<membership::Placement> {
        self.topology()
            .groups
            .into_iter()
            .map(|g| membership::Placement {
                voters: g.voters.into_iter().collect(),
                leader: g.leader,
            })
            .collect()
    }

    /// Has the leader of each step's group run its change, in order, asking
    /// again (the leader may change meanwhile) until it is done or refused.
    async fn run_plan(&self, what: &str, steps: Vec<(usize, Change)>) {
        let count = steps.len();
        for (i, (g, change)) in steps.into_iter().enumerate() {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            self.note_change(format!(
                "{what}: step {} of {count}: {change:?} in group {g}",
                i + 1
            ));
            let deadline = tokio::time::Instant::now() + CHANGE_LIMIT;
            loop {
                let leader = group.leader.load(Ordering::Acquire);
                let done = if leader == self.id {
                    membership::apply(&group.raft, &change).await
                } else if let Some(n) = self.node(leader) {
                    let ttl = CHANGE_LIMIT;
                    network::change(self.identity, leader, &n.bus_addr(), g as u32, &change, ttl)
                        .await
                } else {
                    Err(Refused::Retry(format!("group {g} has no leader")))
                };
                match done {
                    Ok(()) => break,
                    Err(Refused::Retry(why)) if tokio::time::Instant::now() < deadline => {
                        tracing::info!("{what}: group {g}: {why}; asking again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(why) => {
                        self.note_change(format!("failed: {what}: group {g}: {why}"));
                        return;
                    }
                }
            }
            self.refresh_nodes();
        }
        self.note_change(format!("done: {what}"));
    }

    fn note_change(&self, state: String) {
        tracing::info!("membership change: {state}");
        if let Ok(mut c) = self.change.lock() {
            *c = state;
        }
    }

    /// The last membership change run here and how it went, for INFO.
    pub(crate) fn membership_change(&self) -> String {
        self.change.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Stops every group on a clean shutdown: engines (blocked clients are
    /// answered), Raft, then the logs and stores are fsynced so the next
    /// start replays little.
    ///
    /// # Errors
    ///
    /// The fsync of a log or a store failed.
    pub async fn shutdown(&self) -> Result<()> {
        let mut result = Ok(());
        for (g, group) in self.groups.iter().enumerate() {
            if let Err(e) = group.engine.shutdown().await
                && group.leading.load(Ordering::Acquire)
            {
                tracing::warn!("group {g}: stopping its engine: {e}");
            }
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!("group {g}: stopping raft: {e}");
            }
            let (log, data) = (group.log.clone(), group.data.clone());
            let synced =
                tokio::task::spawn_blocking(move || log.sync().and_then(|()| data.persist()))
                    .await
                    .map_err(|e| Error::msg(format!("fsync at shutdown: {e}")))
                    .and_then(|r| r);
            if let Err(e) = synced {
                tracing::error!("group {g}: fsync at shutdown: {e}");
                result = Err(e);
            }
        }
        result
    }

    /// Waits until a group's Raft stops on its own, and says why. The node
    /// should then stop: a group it cannot serve must not look alive to
    /// clients, and a restart recovers it from disk.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.subscribe();
        match failure.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The sender lives as long as `self`.
            Err(_) => String::new(),
        }
    }

    /// Each group's state on this node, for INFO and /metrics.
    pub(crate) fn group_status(&self) -> Vec<GroupStatus> {
        self.groups
            .iter()
            .map(|g| {
                let m = g.raft.metrics().borrow().clone();
                GroupStatus {
                    first_slot: g.first_slot,
                    last_slot: g.last_slot,
                    role: match m.state {
                        _ if !g.is_member() => "none",
                        ServerState::Leader => "leader",
                        ServerState::Candidate => "candidate",
                        ServerState::Learner => "learner",
                        _ => "follower",
                    },
                    serving: g.leading.load(Ordering::Acquire),
                    term: m.current_term,
                    leader: m.current_leader.unwrap_or(0),
                    last_log_index: m.last_log_index.unwrap_or(0),
                    committed: g.log.committed(),
                    last_applied: m.last_applied.map_or(0, |l| l.index),
                    snapshot: m.snapshot.map_or(0, |l| l.index),
                    purged: m.purged.map_or(0, |l| l.index),
                    lag: follower_lag(&m),
                }
            })
            .collect()
    }

    /// Group `g`'s applied log index and a SHA-256 of its whole store on
    /// this node (every space's keys and values in order), to check that
    /// replicas are identical at the same index. Reads the whole store: for
    /// checks, not for production traffic. `None`: no such group, or
    /// entries kept being applied while it read.
    pub(crate) fn digest(&self, g: usize) -> Option<(u64, String)> {
        use sha2::Digest;
        let group = self.groups.get(g)?;
        let applied = || {
            group
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map_or(0, |l| l.index)
        };
        for _ in 0..3 {
            let before = applied();
            let mut hash = sha2::Sha256::new();
            for space in [Space::Schedule, Space::Members, Space::Meta] {
                hash.update([space.index() as u8]);
                for kv in group.data.scan(space, &[], None, false) {
                    let (k, v) = kv.ok()?;
                    hash.update((k.len() as u64).to_be_bytes());
                    hash.update(&k);
                    hash.update((v.len() as u64).to_be_bytes());
                    hash.update(&v);
                }
            }
            if applied() == before {
                let hex = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
                return Some((before, hex));
            }
        }
        None
    }

    /// The nodes a new cluster puts group `g` on: its preferred leader and
    /// the next [`REPLICAS`] − 1 nodes in the order of `--cluster-nodes`
    /// (all of them when there are no more), so each node holds
    /// [`REPLICAS`] groups and leads one.
    fn replicas(&self, g: usize) -> Vec<u64> {
        let preferred: Vec<u64> = self.groups.iter().map(|g| g.preferred).collect();
        let n = preferred.len();
        (0..REPLICAS.min(n))
            .map(|i| preferred[(g + i) % n])
            .collect()
    }

    /// The index of the group owning `slot`.
    fn group_of(&self, slot: u16) -> usize {
        self.groups
            .iter()
            .position(|g| g.first_slot <= slot && slot <= g.last_slot)
            .unwrap_or(self.home)
    }

    /// The engine serving `slot`, if this node serves it now.
    pub(crate) fn serving(&self, slot: u16) -> Option<&Engine> {
        let group = &self.groups[self.group_of(slot)];
        group
            .leading
            .load(Ordering::Acquire)
            .then_some(&group.engine)
    }

    /// The engine of group `g` (a session's commands for its slots).
    pub(crate) fn engine(&self, g: usize) -> &Engine {
        &self.groups[g.min(self.groups.len() - 1)].engine
    }

    /// The home group's index: where a client's commands without keys go
    /// until it names a key.
    pub(crate) fn home(&self) -> usize {
        self.home
    }
}

/// One group's state on this node.
#[derive(Debug, Clone)]
pub(crate) struct GroupStatus {
    pub first_slot: u16,
    pub last_slot: u16,
    pub role: &'static str,
    /// Whether this node serves the group's slots now.
    pub serving: bool,
    pub term: u64,
    /// The leader's node id (0: none).
    pub leader: u64,
    pub last_log_index: u64,
    /// The last index this node knows committed.
    pub committed: u64,
    pub last_applied: u64,
    pub snapshot: u64,
    pub purged: u64,
    /// On the leader: each follower's node id and how many entries of the
    /// leader's log it has not acknowledged yet (all of them while it has
    /// acknowledged none). Empty on the others.
    pub lag: Vec<(u64, u64)>,
}

/// How far each follower is behind the leader's log (see
/// [`GroupStatus::lag`]).
fn follower_lag(m: &openraft::RaftMetrics<u64, BasicNode>) -> Vec<(u64, u64)> {
    let last = m.last_log_index.unwrap_or(0);
    m.replication
        .iter()
        .flatten()
        .filter(|(id, _)| **id != m.id)
        .map(|(id, matched)| {
            (
                *id,
                last.saturating_sub(matched.as_ref().map_or(0, |l| l.index)),
            )
        })
        .collect()
}

impl std::fmt::Display for GroupStatus {
    /// As INFO's `cluster` section shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slots={}-{},role={},serving={},term={},leader={},last_log_index={},committed={},last_applied={},snapshot={},purged={}",
            self.first_slot,
            self.last_slot,
            self.role,
            u8::from(self.serving),
            self.term,
            self.leader,
            self.last_log_index,
            self.committed,
            self.last_applied,
            self.snapshot,
            self.purged
        )?;
        // As Redis lists a master's replicas (`slave0:...,lag=0`): one
        // field per follower, on the leader only.
        for (id, behind) in &self.lag {
            write!(f, ",lag_node{id}={behind}")?;
        }
        Ok(())
    }
}

/// Starts this node's home group `g` in a new cluster: each group is
/// initialised by its preferred leader only (so leaders start spread, with
/// no election to move them), with its `replicas` as voters, once a majority
/// of the nodes answer that none of them has it. A node restarted on an empty
/// directory (its disk replaced) finds the group on the others and
/// initialises nothing: the leader sends it a snapshot.
async fn bootstrap(
    identity: network::BusIdentity,
    nodes: &[NodeSpec],
    replicas: &[u64],
    g: usize,
    group: &Group,
) -> Result<()> {
    let initialized = group
        .raft
        .is_initialized()
        .await
        .map_err(|e| Error::msg(format!("raft: {e}")))?;
    if initialized {
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .filter(|n| replicas.contains(&n.id))
        .map(|n| (n.id, BasicNode::new(Address::of(n))))
        .collect();
    loop {
        let mut fresh = 1;
        let mut elsewhere = false;
        for n in nodes.iter().filter(|n| n.id != identity.me) {
            match network::peer_initialized(identity, n.id, &n.bus_addr(), g as u32, None).await {
                Some(Some(_)) => elsewhere = true,
                Some(None) => fresh += 1,
                None => {}
            }
        }
        if elsewhere {
            tracing::info!("group {g} exists on other nodes: joining it");
            return Ok(());
        }
        if fresh > nodes.len() / 2 {
            if let Err(e) = group.raft.initialize(members).await {
                tracing::info!("group {g} already initialised: {e}");
            }
            // Stand at once rather than after an election timeout.
            let _ = group.raft.trigger().elect().await;
            return Ok(());
        }
        // Too few nodes answered yet: the others are still starting.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Decides when this node may vote in group `g` if it came up without the
/// group (a new cluster, or its disk replaced): once a majority of the
/// nodes answered, at once if no peer's log has more than the group's
/// first entry (nothing was ever committed), else after it has applied as
/// far as the longest of their logs.
async fn open_vote_gate(cluster: Arc<Cluster>, g: usize, gates: Arc<Vec<network::VoteGate>>) {
    if gates[g].admits_now() {
        return;
    }
    loop {
        let (mut answered, mut reach) = (1, 0);
        let nodes = cluster.nodes();
        for n in nodes.iter().filter(|n| n.id != cluster.id) {
            let addr = n.bus_addr();
            let asked = network::peer_initialized(cluster.identity, n.id, &addr, g as u32, None);
            if let Some(log) = asked.await {
                answered += 1;
                reach = reach.max(log.unwrap_or(0));
            }
        }
        if answered > nodes.len() / 2 {
            if reach > 0 {
                tracing::warn!(
                    "group {g}: not on this node's disk but {reach} entries long elsewhere: \
                     catching up, and not voting in it until then"
                );
            }
            gates[g].open_after(reach);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a node keeps of its cluster in `cluster.json` in its data
/// directory, from its first start on.
#[derive(serde::Serialize, serde::Deserialize)]
struct ClusterFile {
    /// The bus fingerprint ([`network::BusIdentity::cluster`]).
    cluster: u64,
    /// Each group's preferred leader (their number is the group count).
    preferred: Vec<u64>,
    /// Whether this node joined a running cluster (it then never starts a
    /// group itself).
    joined: bool,
}

/// Which cluster a node belongs to, as [`settle`] found it.
struct Settled {
    description: network::Description,
    joined: bool,
    /// The member a joining node asked, with its id.
    member: Option<NodeSpec>,
}

/// Finds which cluster this node is part of: as `cluster.json` in `dir`
/// says; else, with `join`, as the member there says (a node joining);
/// else a new cluster of `nodes`. Keeps the answer in `cluster.json`, so
/// that a node's cluster stays the same whatever the flags of later starts
/// and however its members change.
async fn settle(
    dir: &std::path::Path,
    id: u64,
    nodes: &[NodeSpec],
    join: Option<NodeSpec>,
    source: Option<std::net::IpAddr>,
) -> Result<Settled> {
    let path = dir.join("cluster.json");
    let kept = match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice::<ClusterFile>(&bytes)
                .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let (file, member) = match (kept, join) {
        (Some(file), _) => (file, None),
        (None, Some(mut member)) => {
            let joining = network::BusIdentity {
                cluster: 0,
                me: id,
                source,
            };
            let deadline = tokio::time::Instant::now() + JOIN_LIMIT;
            let found = loop {
                if let Some(d) = network::describe(joining, &member.bus_addr()).await {
                    break d;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::msg(format!(
                        "cluster-join: no delayd node answered on {}",
                        member.bus_addr()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            if found.preferred.is_empty() || found.me == id {
                return Err(Error::msg(format!(
                    "cluster-join: the node at {} is node {} with {} groups",
                    member.bus_addr(),
                    found.me,
                    found.preferred.len()
                )));
            }
            tracing::info!(
                "joining cluster {:016x} of {} groups through node {}",
                found.cluster,
                found.preferred.len(),
                found.me
            );
            member.id = found.me;
            let file = ClusterFile {
                cluster: found.cluster,
                preferred: found.preferred,
                joined: true,
            };
            (file, Some(member))
        }
        (None, None) => {
            let file = ClusterFile {
                cluster: fingerprint(nodes),
                preferred: nodes.iter().map(|n| n.id).collect(),
                joined: false,
            };
            (file, None)
        }
    };
    if file.preferred.is_empty() {
        return Err(Error::msg(format!("{}: no groups", path.display())));
    }
    let text = serde_json::to_vec(&file).map_err(|e| Error::msg(e.to_string()))?;
    write_atomically(&path, &text)?;
    Ok(Settled {
        description: network::Description {
            cluster: file.cluster,
            me: id,
            preferred: file.preferred,
        },
        joined: file.joined,
        member,
    })
}

/// How long a node started with `--cluster-join` waits for the member to
/// answer.
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// The cluster's fingerprint on the bus: the same on every node given the
/// same nodes and addresses, in any order.
fn fingerprint(nodes: &[NodeSpec]) -> u64 {
    use sha2::Digest;
    let mut named: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}:{}@{}", n.id, n.host, n.port, n.bus_port))
        .collect();
    named.sort();
    let digest = sha2::Sha256::digest(named.join(",").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Group `g` of `count`'s slots: an equal share, in order.
fn slot_range(g: usize, count: usize) -> (u16, u16) {
    let slots = usize::from(slots::SLOTS);
    let first = g * slots / count;
    let last = (g + 1) * slots / count - 1;
    (first as u16, last as u16)
}

/// Asks every peer once a second what it knows of the groups it is a
/// member of: so that `CLUSTER NODES` knows which nodes are up even between
/// nodes that exchange no Raft traffic, and so that a node outside a group
/// knows its leader (to redirect its slots) and its voters.
async fn probe_peers(cluster: Arc<Cluster>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut news: Vec<Option<network::GroupNews>> = vec![None; cluster.groups.len()];
        for n in cluster.nodes().iter().filter(|n| n.id != cluster.id) {
            let liveness = cluster.liveness.clone();
            let addr = n.bus_addr();
            let Some(told) = network::groups(cluster.identity, n.id, &addr, liveness).await else {
                continue;
            };
            for (g, heard) in told.into_iter().enumerate().take(news.len()) {
                // The newest term wins, then the newest membership, then a
                // member that knows the leader.
                let rank = |x: &network::GroupNews| (x.term, x.config, x.leader != 0);
                if let Some(h) = heard
                    && news[g].as_ref().is_none_or(|best| rank(&h) > rank(best))
                {
                    news[g] = Some(h);
                }
            }
        }
        for (group, heard) in cluster.groups.iter().zip(news) {
            let mine = group.raft.metrics().borrow().membership_config.clone();
            let mine = mine.log_id().map_or(0, |l| l.index);
            let ousted = heard.as_ref().is_some_and(|h| {
                h.config > mine && h.members.iter().all(|(id, _)| *id != cluster.id)
            });
            group.ousted.store(ousted, Ordering::Release);
            if group.is_member() {
                continue;
            }
            if let Some(h) = &heard {
                group.leader.store(h.leader, Ordering::Release);
                if h.leader != 0 {
                    group.last_leader.store(h.leader, Ordering::Release);
                }
            }
            if let Ok(mut kept) = group.news.lock() {
                *kept = heard;
            }
        }
        cluster.refresh_nodes();
    }
}

/// `everysec` for the groups' logs (appends reached the OS already).
async fn sync_logs(cluster: Arc<Cluster>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for group in &cluster.groups {
            if group.engine.fsync() == Fsync::EverySec {
                let log = group.log.clone();
                match tokio::task::spawn_blocking(move || log.sync()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("fsyncing a raft log failed: {e}"),
                    Err(e) => tracing::error!("fsyncing a raft log failed: {e}"),
                }
            }
        }
    }
}

/// Asks for an election now and then while this node is group `g`'s
/// preferred leader and does not lead it, so that leaders spread again after
/// a failover. Only while the group is idle (no entry in a second): its log
/// is then the leader's, so it wins at once, and a busy group is never
/// disrupted (openraft 0.9 has no leadership transfer, and a candidate
/// whose log is behind would only bump the term and stall the group).
async fn rebalance(cluster: Arc<Cluster>, g: usize) {
    let group = &cluster.groups[g];
    if group.preferred != cluster.id {
        return;
    }
    loop {
        tokio::time::sleep(REBALANCE_EVERY).await;
        let before = group.raft.metrics().borrow().clone();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = group.raft.metrics().borrow().clone();
        let idle = now.state == ServerState::Follower
            && now.current_leader.is_some()
            && now.current_leader == before.current_leader
            && now.current_term == before.current_term
            && now.last_log_index == before.last_log_index
            && now.last_applied.map(|l| l.index) == now.last_log_index;
        if idle {
            tracing::info!("group {g}: standing for election as its preferred leader");
            let _ = group.raft.trigger().elect().await;
        }
    }
}

/// Stops serving a group: its engine drops its memory and answers blocked
/// clients, and rounds still waiting on commits learn their fate is
/// unknown.
fn stop_leading(group: &Group, link: &Arc<LeaderLink>) {
    group.leading.store(false, Ordering::Release);
    if let Ok(s) = standby(link)
        && let Err(e) = group.engine.step_down(s)
    {
        tracing::error!("stepping down: {e}");
    }
    link.lose();
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
    g: usize,
    data: Arc<FjallStorage>,
    link: Arc<LeaderLink>,
) {
    let group = &cluster.groups[g];
    let mut metrics = group.raft.metrics();
    let mut led_term: Option<u64> = None;
    let mut membership = None;
    // Kept across iterations: metrics change with every write, and the
    // lease must still be renewed on time.
    let mut lease_tick = tokio::time::interval(LEASE_CHECK);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A core that panicked drops its metrics' sender without saying so;
        // one that stopped for a shutdown says Stopped.
        let stopped = match metrics.borrow().running_state.clone() {
            Err(openraft::error::Fatal::Stopped) => Some(None),
            Err(fatal) => Some(Some(fatal.to_string())),
            Ok(()) if metrics.has_changed().is_err() => Some(Some("it panicked".to_string())),
            Ok(()) => None,
        };
        if let Some(fatal) = stopped {
            if led_term.is_some() {
                stop_leading(group, &link);
            }
            if let Some(why) = fatal {
                tracing::error!("group {g}: raft stopped: {why}");
                cluster
                    .failure
                    .send_replace(Some(format!("group {g}: raft stopped: {why}")));
            }
            return;
        }
        let (state, term, leader, changed, member) = {
            let m = metrics.borrow_and_update();
            let log_id = *m.membership_config.log_id();
            let changed = membership != Some(log_id);
            membership = Some(log_id);
            let member = m
                .membership_config
                .membership()
                .get_node(&cluster.id)
                .is_some();
            (m.state, m.current_term, m.current_leader, changed, member)
        };
        group.member.store(member, Ordering::Release);
        if changed {
            cluster.refresh_nodes();
        }
        // Outside the group, its members' news say who leads it.
        if group.is_member() {
            group.leader.store(leader.unwrap_or(0), Ordering::Release);
            if let Some(l) = leader {
                group.last_leader.store(l, Ordering::Release);
            }
        }
        let leads = state == ServerState::Leader && leader == Some(cluster.id);
        if led_term.is_some() && (!leads || led_term != Some(term)) {
            stop_leading(group, &link);
            led_term = None;
            tracing::info!("group {g}: no longer leading (term {term})");
        }
        if leads && led_term.is_none() {
            let asked = cluster.now_ms();
            match take_lead(group, &data, &link).await {
                Ok(()) => {
                    // take_lead confirmed the leadership with a majority.
                    group
                        .lease_until
                        .fetch_max(asked + LEASE_MS, Ordering::AcqRel);
                    led_term = Some(term);
                    group.leading.store(true, Ordering::Release);
                    tracing::info!("group {g}: leading (term {term})");
                }
                Err(e) => {
                    tracing::warn!("group {g}: taking the lead failed: {e}");
                    link.lose();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            // Look again at once: the role may have changed meanwhile.
            continue;
        }
        tokio::select! {
            // An error here: the core is gone; the top of the loop says how.
            _ = metrics.changed() => {}
            _ = lease_tick.tick(), if led_term.is_some() => {
                if !renew_lease(&cluster, group).await
                    && cluster.now_ms() >= group.lease_until.load(Ordering::Acquire) + LEASE_MS
                {
                    // Cut off from the majority for a whole lease more:
                    // give the rounds waiting on commits their answer.
                    stop_leading(group, &link);
                    led_term = None;
                    tracing::warn!("group {g}: no majority for {LEASE_MS} ms; stopped serving");
                    tokio::time::sleep(LEASE_CHECK).await;
                }
            }
        }
    }
}

/// How often a leader confirms that a majority still follows it.
const LEASE_CHECK: Duration = Duration::from_millis(250);

/// How long a confirmation lets the leader serve. A follower that
/// confirmed it votes for no other candidate for openraft's leader lease
/// (ELECTION_MAX_MS) after that heartbeat, and every new majority holds
/// one such follower; so with a lease shorter than that, a partitioned
/// leader stops answering before the others can elect a new one (clocks on
/// one host, or NTP-synced hosts, drift far less than the 500 ms margin).
const LEASE_MS: u64 = 1000;
const _: () = assert!(LEASE_MS + 500 <= ELECTION_MAX_MS);

/// Asks a majority to confirm this node still leads `group` (a heartbeat
/// round); extends the lease from when it was asked if they do.
async fn renew_lease(cluster: &Cluster, group: &Group) -> bool {
    let asked = cluster.now_ms();
    let confirmed = tokio::time::timeout(
        Duration::from_millis(LEASE_MS),
        group.raft.get_read_log_id(),
    )
    .await;
    if matches!(confirmed, Ok(Ok(_))) {
        group
            .lease_until
            .fetch_max(asked + LEASE_MS, Ordering::AcqRel);
        true
    } else {
        false
    }
}

async fn take_lead(group: &Group, data: &Arc<FjallStorage>, link: &Arc<LeaderLink>) -> Result<()> {
    // Everything committed before this term (up to its blank entry) is
    // applied here before the engine loads from the store.
    group
        .raft
        .ensure_linearizable()
        .await
        .map_err(|e| Error::msg(format!("not leader: {e}")))?;
    // And every entry already in this leader's log: after a restart openraft
    // may resume the same term without a new blank entry, and entries the
    // previous process appended would then commit after the engine loaded,
    // unseen by its memory. A leader's own log is never truncated, so they
    // all commit; wait until they are applied too.
    let last = group.raft.metrics().borrow().last_log_index;
    group
        .raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(last, "the log before this leadership")
        .await
        .map_err(|e| Error::msg(format!("applying the log before leading: {e}")))?;
    let (tx, rx) = mpsc::unbounded_channel();
    link.lead(tx);
    tokio::spawn(propose(group.raft.clone(), rx));
    let mut store = Store::over(Box::new(ReplicatedStorage::leading(
        data.clone(),
        link.clone(),
    )))?;
    store.continue_after(link.last_proposed());
    let engine = group.engine.clone();
    tokio::task::spawn_blocking(move || engine.lead(store))
        .await
        .map_err(|e| Error::msg(format!("loading: {e}")))?
}

/// Entries proposed and not yet applied, at most: while they are on
/// their way, the rounds arriving meanwhile gather into the next entry.
const IN_FLIGHT: usize = 4;

/// The most rounds in one entry (bounds an entry's size).
const ROUNDS_PER_ENTRY: usize = 4096;

/// Hands the leader's rounds to openraft in order, as few entries as
/// possible: with [`IN_FLIGHT`] entries on their way, it waits for the
/// oldest to be applied, and everything that arrived meanwhile goes into
/// the next entry (group commit). A committed round is reported to its
/// waiters by the state machine as it applies it; one that never commits,
/// by the loss of leadership.
async fn propose(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>) {
    let mut in_flight = std::collections::VecDeque::new();
    while let Some(first) = rx.recv().await {
        let mut rounds = vec![first];
        while rounds.len() < ROUNDS_PER_ENTRY {
            match rx.try_recv() {
                Ok(p) => rounds.push(p),
                Err(_) => break,
            }
        }
        match raft.client_write_ff(types::Proposals(rounds)).await {
            Ok(applied) => in_flight.push_back(applied),
            Err(e) => {
                tracing::error!("raft stopped: {e}");
                return;
            }
        }
        while in_flight.len() >= IN_FLIGHT {
            if let Some(oldest) = in_flight.pop_front() {
                // An error (leadership lost) is met by the role watcher.
                let _ = oldest.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    /// A log store and a state machine over a fresh directory, as a node
    /// has them (the engine supplies the fsync policy).
    struct Builder;

    impl StoreBuilder<TypeConfigOf, LogStore, StateMachine, (tempfile::TempDir, Engine)> for Builder {
        async fn build(
            &self,
        ) -> std::result::Result<
            ((tempfile::TempDir, Engine), LogStore, StateMachine),
            types::StorageError,
        > {
            let dir = tempfile::tempdir().unwrap();
            let link = LeaderLink::new(1, 1);
            let engine = Engine::start_standby(
                standby(&link).unwrap(),
                &Options::for_dir(dir.path()),
                Arc::new(SystemClock),
            )
            .unwrap();
            let log = LogStore::open(&dir.path().join("raft-log"), engine.clone()).unwrap();
            let data = Arc::new(FjallStorage::open(&dir.path().join("data")).unwrap());
            let machine = StateMachine::open(data, link, dir.path().join("snapshot.bin")).unwrap();
            Ok(((dir, engine), log, machine))
        }
    }

    type TypeConfigOf = types::TypeConfig;

    /// openraft's own test suite for log stores and state machines.
    #[test]
    fn the_log_store_and_state_machine_pass_openraft_s_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[test]
    fn slot_ranges_cover_every_slot_once() {
        for count in 1..=7 {
            let mut next = 0u32;
            for g in 0..count {
                let (a, b) = slot_range(g, count);
                assert_eq!(u32::from(a), next);
                next = u32::from(b) + 1;
            }
            assert_eq!(next, u32::from(slots::SLOTS));
        }
    }

    #[test]
    fn cluster_nodes_parse_with_default_and_given_bus_ports() {
        let n = parse_nodes("1=127.0.0.1:7000, 2=10.0.0.2:6379@16000").unwrap();
        assert_eq!(n[0].bus_port, 17000);
        assert_eq!(
            (n[1].host.as_str(), n[1].port, n[1].bus_port),
            ("10.0.0.2", 6379, 16000)
        );
        assert!(parse_nodes("1=a:1,1=b:2").is_err(), "repeated id");
        assert!(parse_nodes("0=a:1").is_err(), "id 0");
        assert!(parse_nodes("1=a:60000").is_err(), "bus port past 65535");
        assert!(parse_nodes("").is_err());
    }
}
