//! The cluster bus: openraft's RPCs between nodes over TCP.
//!
//! A frame is a big-endian `u32` length and a postcard body; a request
//! names the group it is for, since one connection serves every group. The peers are
//! only delayd nodes and the messages only openraft's three RPCs, so a
//! small framed protocol is all it takes (docs/cluster.md §6). Each
//! openraft client (one per replication stream or vote) keeps one
//! connection and sends one request at a time; the server answers each
//! connection's requests in order.

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

use super::types::{Raft, TypeConfig};

/// The largest frame taken: an append of many large rounds, or a snapshot
/// chunk. A peer declaring more is cut off, and nothing is allocated for
/// what it merely declared (the body is read as it arrives).
const MAX_FRAME: u64 = 1 << 30;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(serde::Serialize, serde::Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Whether the group was ever initialised on the peer (bootstrap).
    Initialized,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Initialized(bool),
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
    pub(crate) liveness: std::sync::Arc<Liveness>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            group: self.group,
            target,
            addr: node.addr.clone(),
            conn: None,
            liveness: Some(self.liveness.clone()),
        }
    }
}

/// One client of one peer.
pub(crate) struct Peer {
    group: u32,
    target: u64,
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
    async fn exchange(&mut self, req: &Request, ttl: Duration) -> Result<Response, CallError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                    .await
                    .map_err(|_| CallError::Unreachable(std::io::ErrorKind::TimedOut.into()))?
                    .map_err(CallError::Unreachable)?;
                let _ = c.set_nodelay(true);
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

/// Asks the node at `addr` whether `group` was ever initialised there
/// (`None`: it did not answer).
pub(crate) async fn peer_initialized(
    addr: &str,
    group: u32,
    heard: Option<(u64, std::sync::Arc<Liveness>)>,
) -> Option<bool> {
    let (target, liveness) = match heard {
        Some((id, l)) => (id, Some(l)),
        None => (0, None),
    };
    let mut peer = Peer {
        group,
        target,
        addr: addr.to_string(),
        conn: None,
        liveness,
    };
    match peer
        .exchange(&Request::Initialized, Duration::from_millis(500))
        .await
    {
        Ok(Response::Initialized(yes)) => Some(yes),
        _ => None,
    }
}

/// Answers peers' RPCs for every group on `listener`.
pub(crate) async fn serve(
    listener: TcpListener,
    rafts: Vec<Raft>,
    liveness: std::sync::Arc<Liveness>,
) {
    let rafts = std::sync::Arc::new(rafts);
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let rafts = rafts.clone();
        let liveness = liveness.clone();
        tokio::spawn(async move {
            let _ = conn.set_nodelay(true);
            let mut conn = conn;
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
                        Response::Vote(raft.vote(r).await)
                    }
                    Request::Snapshot(r) => {
                        liveness.heard(r.vote.leader_id.node_id);
                        Response::Snapshot(raft.install_snapshot(r).await)
                    }
                    // A stopped raft counts as initialised: never bootstrap over it.
                    Request::Initialized => {
                        Response::Initialized(raft.is_initialized().await.unwrap_or(true))
                    }
                };
                if write_frame(&mut conn, &resp).await.is_err() {
                    break;
                }
            }
        });
    }
}
