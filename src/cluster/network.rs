//! The cluster bus: openraft's RPCs between nodes over TCP.
//!
//! A frame is a big-endian `u32` length and a postcard body; a request
//! names the group it is for, since one connection serves every group.
//! A connection opens with a [`Hello`] naming the cluster and the node
//! called, and a node cuts off a caller that means another: two clusters
//! whose ports got mixed up must never feed each other's logs. The peers are
//! only delayd nodes and the messages only openraft's three RPCs, so a
//! small framed protocol is all it takes (docs/cluster.md §6). Each
//! openraft client (one per replication stream or vote) keeps one
//! connection and sends one request at a time; the server answers each
//! connection's requests in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::membership::{self, Address, Change, Refused};
use super::types::{Raft, TypeConfig};

/// The largest frame taken: an append of many large rounds, or a snapshot
/// chunk. A peer declaring more is cut off, and nothing is allocated for
/// what it merely declared (the body is read as it arrives).
const MAX_FRAME: u64 = 1 << 30;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The first frame on a bus connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
struct Hello {
    /// The caller's [`BusIdentity::cluster`]; 0 from a node that has not
    /// joined a cluster yet, which may only ask [`Request::Describe`].
    cluster: u64,
    /// The node the caller means to reach; 0: whichever node listens there
    /// (`CLUSTER MEET`, which learns the node's id by asking).
    to: u64,
}

/// What a node tells one that joins, or that meets it: the cluster it
/// belongs to and its shape (`--cluster-join`, `CLUSTER MEET`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Description {
    /// The cluster's [`BusIdentity::cluster`].
    pub(crate) cluster: u64,
    /// The answering node's id.
    pub(crate) me: u64,
    /// Each group's preferred leader, in slot order: their number is the
    /// number of groups, fixed when the cluster was created.
    pub(crate) preferred: Vec<u64>,
}

/// What a node says in its [`Hello`] and accepts in others'.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BusIdentity {
    /// A fingerprint of the cluster's configuration (its nodes and
    /// addresses), the same on every node given the same `--cluster-nodes`.
    pub(crate) cluster: u64,
    /// This node's id.
    pub(crate) me: u64,
    /// This node's own address, which its connections to peers leave from
    /// (as Redis's cluster bus does), when `--cluster-nodes` names it by
    /// IP: on a host with several addresses, peers and firewalls then see
    /// the address the node is known by.
    pub(crate) source: Option<std::net::IpAddr>,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Whether the group was ever initialised on the peer, and how far its
    /// log reaches (bootstrap, and a node back on an empty disk).
    Initialized,
    /// The peer's [`Description`] (the group is ignored).
    Describe,
    /// A change of the group's members, for its leader to run.
    Change(Change),
    /// What the peer knows of each group it is a member of (the group is
    /// ignored).
    Groups,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// `None`: never initialised there; else the peer's last log index.
    Initialized(Option<u64>),
    Described(Description),
    Changed(Result<(), Refused>),
    /// By group: `None` where the peer is not a member.
    Groups(Vec<Option<GroupNews>>),
}

/// A group as one of its members sees it: what nodes outside the group
/// learn of it from the members, to redirect its slots and list it in
/// `CLUSTER SLOTS` (each group is on three of the nodes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GroupNews {
    /// 0: no leader known.
    pub(crate) leader: u64,
    pub(crate) term: u64,
    pub(crate) voters: Vec<u64>,
    pub(crate) applied: u64,
    /// Every member (voters and learners) with its membership address.
    pub(crate) members: Vec<(u64, String)>,
    /// The log index of that membership (0: the initial one).
    pub(crate) config: u64,
}

impl GroupNews {
    /// What `raft`'s metrics say, if node `me` is a member of its group.
    pub(crate) fn of(raft: &Raft, me: u64) -> Option<GroupNews> {
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        membership.get_node(&me)?;
        // Said by a node as long as its own copy of the membership has it,
        // which is also after the others removed it, had it missed that:
        // `config` lets a reader tell.
        Some(GroupNews {
            leader: m.current_leader.unwrap_or(0),
            term: m.current_term,
            voters: membership.voter_ids().collect(),
            applied: m.last_applied.map_or(0, |l| l.index),
            members: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            config: m.membership_config.log_id().map_or(0, |l| l.index),
        })
    }
}

async fn write_frame<T: serde::Serialize>(s: &mut TcpStream, msg: &T) -> std::io::Result<()> {
    let body = postcard::to_allocvec(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    s.write_all(&frame).await
}

async fn read_frame<T: serde::de::DeserializeOwned>(s: &mut TcpStream) -> std::io::Result<T> {
    let len = u64::from(s.read_u32().await?);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut body = Vec::new();
    (&mut *s).take(len).read_to_end(&mut body).await?;
    if body.len() as u64 != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    postcard::from_bytes(&body).map_err(std::io::Error::other)
}

/// When this node last heard from each peer (a request it sent, or a reply
/// to one of this node's), by node id: `CLUSTER NODES` shows a node not
/// heard from lately as failed.
#[derive(Default)]
pub(crate) struct Liveness(std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>);

impl Liveness {
    fn heard(&self, id: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, std::time::Instant::now());
        }
    }

    /// Whether node `id` was heard from within `within`.
    pub(crate) fn recent(&self, id: u64, within: Duration) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(&id).map(|t| t.elapsed() < within))
            .unwrap_or(false)
    }
}

/// Makes clients for openraft, one per target and stream, for one group.
pub(crate) struct Network {
    pub(crate) group: u32,
    pub(crate) identity: BusIdentity,
    pub(crate) liveness: std::sync::Arc<Liveness>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            group: self.group,
            target,
            cluster: self.identity.cluster,
            source: self.identity.source,
            addr: Address::bus(&node.addr),
            conn: None,
            liveness: Some(self.liveness.clone()),
        }
    }
}

/// One client of one peer.
pub(crate) struct Peer {
    group: u32,
    target: u64,
    /// Said in the [`Hello`] of each new connection.
    cluster: u64,
    /// See [`BusIdentity::source`].
    source: Option<std::net::IpAddr>,
    addr: String,
    conn: Option<TcpStream>,
    liveness: Option<std::sync::Arc<Liveness>>,
}

/// How a call failed before the peer answered.
enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl Peer {
    /// A connection to the peer, from this node's own address if it has one.
    async fn connect(&self) -> std::io::Result<TcpStream> {
        let Some(source) = self.source else {
            return TcpStream::connect(&self.addr).await;
        };
        let mut last = None;
        for to in tokio::net::lookup_host(&self.addr).await? {
            if source.is_ipv4() != to.is_ipv4() {
                continue;
            }
            let socket = match to {
                std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            match socket.connect(to).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("{} has no address of the family of {source}", self.addr),
            )
        }))
    }

    async fn exchange(&mut self, req: &Request, ttl: Duration) -> Result<Response, CallError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let c = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
                    .await
                    .map_err(|_| CallError::Unreachable(std::io::ErrorKind::TimedOut.into()))?
                    .map_err(CallError::Unreachable)?;
                let _ = c.set_nodelay(true);
                let mut c = c;
                let hello = Hello {
                    cluster: self.cluster,
                    to: self.target,
                };
                // Sent ahead of the first request with no wait for a
                // reply: a node that refuses it closes the connection,
                // which fails the request.
                tokio::time::timeout(ttl, write_frame(&mut c, &hello))
                    .await
                    .map_err(|_| CallError::Network(std::io::ErrorKind::TimedOut.into()))?
                    .map_err(CallError::Network)?;
                c
            }
        };
        let mut conn = conn;
        let exchanged = tokio::time::timeout(ttl, async {
            write_frame(&mut conn, &(self.group, req)).await?;
            read_frame::<Response>(&mut conn).await
        })
        .await
        .map_err(|_| CallError::Network(std::io::ErrorKind::TimedOut.into()))?
        .map_err(CallError::Network)?;
        // Kept only after a whole exchange: a connection cut mid-frame is
        // dropped, so the next call never reads a stale reply.
        self.conn = Some(conn);
        if let Some(l) = &self.liveness {
            l.heard(self.target);
        }
        Ok(exchanged)
    }

    async fn call<E: std::error::Error>(
        &mut self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<u64, BasicNode, E>> {
        self.exchange(&req, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            })
    }

    fn unexpected<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(
            "a reply of another kind",
        )))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<u64, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(Request::Append(rpc), &option).await? {
            Response::Append(r) => r.map_err(|e| self.remote(e)),
            _ => Err(Self::unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self.call(Request::Snapshot(rpc), &option).await? {
            Response::Snapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(Self::unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(Self::unexpected()),
        }
    }
}

/// Asks node `target` (0: whichever) at bus address `addr` one question
/// about `group`, within `ttl`. `None` if it did not answer. With
/// `liveness`, an answer counts as hearing from it.
async fn ask(
    identity: BusIdentity,
    target: u64,
    addr: &str,
    group: u32,
    req: &Request,
    ttl: Duration,
    liveness: Option<std::sync::Arc<Liveness>>,
) -> Option<Response> {
    let mut peer = Peer {
        group,
        target,
        cluster: identity.cluster,
        source: identity.source,
        addr: addr.to_string(),
        conn: None,
        liveness,
    };
    peer.exchange(req, ttl).await.ok()
}

/// Asks node `target` at `addr` whether `group` was ever initialised
/// there: `None` if it did not answer, `Some(None)` if never, else
/// `Some(Some(its last log index))`. With `liveness`, an answer counts as
/// hearing from it.
pub(crate) async fn peer_initialized(
    identity: BusIdentity,
    target: u64,
    addr: &str,
    group: u32,
    liveness: Option<std::sync::Arc<Liveness>>,
) -> Option<Option<u64>> {
    let req = Request::Initialized;
    match ask(
        identity,
        target,
        addr,
        group,
        &req,
        Duration::from_millis(500),
        liveness,
    )
    .await
    {
        Some(Response::Initialized(log)) => Some(log),
        _ => None,
    }
}

/// Asks node `target` at `addr` what it knows of each group it is a
/// member of. An answer counts as hearing from it.
pub(crate) async fn groups(
    identity: BusIdentity,
    target: u64,
    addr: &str,
    liveness: std::sync::Arc<Liveness>,
) -> Option<Vec<Option<GroupNews>>> {
    let req = Request::Groups;
    let ttl = Duration::from_millis(500);
    match ask(identity, target, addr, 0, &req, ttl, Some(liveness)).await {
        Some(Response::Groups(g)) => Some(g),
        _ => None,
    }
}

/// Asks the node at bus address `addr` for its [`Description`]. With
/// `identity.cluster` 0 (a node joining), any cluster's node answers;
/// otherwise only one of `identity`'s cluster. `None`: no answer.
pub(crate) async fn describe(identity: BusIdentity, addr: &str) -> Option<Description> {
    let req = Request::Describe;
    match ask(identity, 0, addr, 0, &req, Duration::from_secs(2), None).await {
        Some(Response::Described(d)) => Some(d),
        _ => None,
    }
}

/// Asks node `target` at `addr`, which should lead `group`, to run
/// `change` on it, waiting up to `ttl`.
///
/// # Errors
///
/// [`Refused::Retry`] if the node did not answer in time, or does not lead
/// the group; what the leader said otherwise.
pub(crate) async fn change(
    identity: BusIdentity,
    target: u64,
    addr: &str,
    group: u32,
    change: &Change,
    ttl: Duration,
) -> Result<(), Refused> {
    let req = Request::Change(change.clone());
    match ask(identity, target, addr, group, &req, ttl, None).await {
        Some(Response::Changed(r)) => r,
        _ => Err(Refused::Retry(format!(
            "node {target} at {addr} did not answer"
        ))),
    }
}

/// Whether this node may vote in a group yet.
///
/// A node restarted on an empty directory (its disk replaced) has lost
/// its log and the vote it cast: voting at once, it could vote twice in a
/// term, or elect a candidate missing entries it had acknowledged. Until it
/// has applied as far as the others' logs reached when it came back, it
/// does not vote; it still takes the leader's entries and snapshots.
pub(crate) struct VoteGate(AtomicU64);

impl VoteGate {
    /// Not known yet: no votes.
    const CLOSED: u64 = u64::MAX;

    /// A gate for a group this node holds (`open`), or does not hold yet
    /// (closed until [`VoteGate::open_after`]).
    pub(crate) fn new(open: bool) -> VoteGate {
        VoteGate(AtomicU64::new(if open { 0 } else { Self::CLOSED }))
    }

    /// Votes once this node has applied `index` (`0`: at once; nothing
    /// was committed anywhere before).
    pub(crate) fn open_after(&self, index: u64) {
        self.0.store(index, Ordering::Release);
    }

    /// Whether votes are taken with no condition.
    pub(crate) fn admits_now(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn admits(&self, group: u32, raft: &Raft) -> bool {
        let until = self.0.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        if until == Self::CLOSED || applied < until {
            return false;
        }
        self.0.store(0, Ordering::Release);
        tracing::info!("group {group}: caught up to index {applied}; voting again");
        true
    }
}

/// Answers peers' RPCs for every group on `listener`, and tells nodes that
/// join or meet this one its `description`.
pub(crate) async fn serve(
    listener: TcpListener,
    identity: BusIdentity,
    description: Description,
    rafts: Vec<Raft>,
    gates: std::sync::Arc<Vec<VoteGate>>,
    liveness: std::sync::Arc<Liveness>,
) {
    let rafts = std::sync::Arc::new(rafts);
    let description = std::sync::Arc::new(description);
    loop {
        let Ok((conn, from)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let rafts = rafts.clone();
        let gates = gates.clone();
        let liveness = liveness.clone();
        let description = description.clone();
        tokio::spawn(async move {
            let _ = conn.set_nodelay(true);
            let mut conn = conn;
            let hello =
                match tokio::time::timeout(CONNECT_TIMEOUT, read_frame::<Hello>(&mut conn)).await {
                    Ok(Ok(hello)) => hello,
                    // Not a delayd node, or one that hung up: nothing to say.
                    _ => return,
                };
            let ours = hello.cluster == identity.cluster;
            if hello.cluster == 0 {
                // A node joining: it learns which cluster this is, and
                // nothing more is said until it speaks as a member.
                if let Ok((_, Request::Describe)) = read_frame::<(u32, Request)>(&mut conn).await {
                    let _ =
                        write_frame(&mut conn, &Response::Described((*description).clone())).await;
                }
                return;
            }
            if !ours || (hello.to != identity.me && hello.to != 0) {
                tracing::warn!(
                    "cluster bus: refused {from}, which means node {} of cluster {:016x} \
                     (this is node {} of cluster {:016x}): check --cluster-nodes",
                    hello.to,
                    hello.cluster,
                    identity.me,
                    identity.cluster
                );
                return;
            }
            while let Ok((group, req)) = read_frame::<(u32, Request)>(&mut conn).await {
                // A group this node does not have: a peer with another
                // configuration; cut it off.
                let Some(raft) = rafts.get(group as usize) else {
                    break;
                };
                let resp = match req {
                    Request::Append(r) => {
                        liveness.heard(r.vote.leader_id.node_id);
                        Response::Append(raft.append_entries(r).await)
                    }
                    Request::Vote(r) => {
                        liveness.heard(r.vote.leader_id.node_id);
                        // No answer at all: the candidate counts it as a
                        // node it cannot reach, which is what this node is
                        // for the group until it has caught up.
                        if !gates[group as usize].admits(group, raft) {
                            break;
                        }
                        Response::Vote(raft.vote(r).await)
                    }
                    Request::Snapshot(r) => {
                        liveness.heard(r.vote.leader_id.node_id);
                        Response::Snapshot(raft.install_snapshot(r).await)
                    }
                    // A stopped raft counts as initialised: never bootstrap over it.
                    Request::Initialized => {
                        Response::Initialized(match raft.is_initialized().await {
                            Ok(false) => None,
                            _ => Some(raft.metrics().borrow().last_log_index.unwrap_or(0)),
                        })
                    }
                    Request::Describe => Response::Described((*description).clone()),
                    Request::Groups => Response::Groups(
                        rafts
                            .iter()
                            .map(|r| GroupNews::of(r, identity.me))
                            .collect(),
                    ),
                    Request::Change(c) => Response::Changed(membership::apply(raft, &c).await),
                };
                if write_frame(&mut conn, &resp).await.is_err() {
                    break;
                }
            }
        });
    }
}
