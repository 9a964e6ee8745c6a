//! Adding and removing nodes while the cluster serves (`CLUSTER MEET`,
//! `CLUSTER FORGET`): each group's leader changes its openraft membership,
//! so the node table lives in the groups' replicated logs, not in any
//! node's flags.
//!
//! A member's openraft node is its address as `CLUSTER NODES` shows it,
//! `host:port@bus`. Groups created before this was kept named their
//! members by bus address alone (`host:bus`); [`Address::parse`] still
//! reads those.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::BasicNode;
use openraft::ChangeMembers;

use super::types::Raft;
use super::{NodeSpec, join_host_port};

/// How long a leader waits for a node being added to catch up (from the
/// log, or from a snapshot of the whole store) before it makes it a voter.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);

/// A member's address as its openraft node holds it.
pub(crate) struct Address;

impl Address {
    /// `host:port@bus`, as `CLUSTER NODES` shows a node.
    pub(crate) fn of(n: &NodeSpec) -> String {
        format!("{}@{}", join_host_port(&n.host, n.port), n.bus_port)
    }

    /// The node `id` named by a membership address. A `host:bus` address
    /// (groups created before client ports were kept) takes its client
    /// port from `known` (`--cluster-nodes`), else bus − 10000. `None`: not
    /// an address.
    pub(crate) fn parse(id: u64, addr: &str, known: &[NodeSpec]) -> Option<NodeSpec> {
        match addr.split_once('@') {
            Some((client, bus)) => {
                let (host, port) = client.rsplit_once(':')?;
                Some(NodeSpec {
                    id,
                    host: unbracket(host),
                    port: port.parse().ok()?,
                    bus_port: bus.parse().ok()?,
                })
            }
            None => {
                let (host, bus) = addr.rsplit_once(':')?;
                let bus_port: u16 = bus.parse().ok()?;
                let host = unbracket(host);
                let port = match known.iter().find(|n| n.id == id) {
                    Some(n) => n.port,
                    None => bus_port.checked_sub(10000)?,
                };
                Some(NodeSpec {
                    id,
                    host,
                    port,
                    bus_port,
                })
            }
        }
    }

    /// The bus address (`host:bus`) of a membership address.
    pub(crate) fn bus(addr: &str) -> String {
        match addr.split_once('@') {
            Some((client, bus)) => match client.rsplit_once(':') {
                Some((host, _)) => format!("{host}:{bus}"),
                None => addr.to_string(),
            },
            None => addr.to_string(),
        }
    }
}

/// An IPv6 host without the brackets of `[host]:port`.
fn unbracket(host: &str) -> String {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_string()
}

/// A change of a group's members, run by its leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Change {
    /// Add node `id` at `addr` (`host:port@bus`): first as a learner, which
    /// catches up, then as a voter.
    Add { id: u64, addr: String },
    /// Remove node `id` from the group altogether.
    Remove { id: u64 },
}

/// Why a change did not happen: `Retry` errors (this node does not lead
/// the group, or its leadership changed meanwhile) are worth asking the
/// leader again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Refused {
    Retry(String),
    Final(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Retry(why) | Refused::Final(why) => f.write_str(why),
        }
    }
}

type WriteError =
    openraft::error::RaftError<u64, openraft::error::ClientWriteError<u64, BasicNode>>;

fn refused(e: &WriteError) -> Refused {
    use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::EmptyMembership(_),
        )) => Refused::Final("it would leave the group with no voter".into()),
        // In the middle of another change, a lost leadership, a stopping
        // node: the next leader may succeed.
        _ => Refused::Retry(e.to_string()),
    }
}

/// Runs `change` on `raft`, which must lead its group. Done already (the
/// node is a voter, or is gone) is success, so a change can be retried.
///
/// # Errors
///
/// [`Refused::Retry`] if this node does not lead the group or lost the
/// lead meanwhile, or the node did not catch up in time;
/// [`Refused::Final`] if the change cannot be made (the last voter).
pub(crate) async fn apply(raft: &Raft, change: &Change) -> Result<(), Refused> {
    let membership = raft.metrics().borrow().membership_config.clone();
    let membership = membership.membership();
    match change {
        Change::Add { id, addr } => {
            if membership.voter_ids().any(|v| v == *id) {
                return Ok(());
            }
            match membership.get_node(id) {
                Some(n) if n.addr != *addr => {
                    return Err(Refused::Final(format!(
                        "node {id} is already known at {}",
                        n.addr
                    )));
                }
                Some(_) => {}
                None => {
                    let nodes = BTreeMap::from([(*id, BasicNode::new(addr))]);
                    raft.change_membership(ChangeMembers::AddNodes(nodes), true)
                        .await
                        .map_err(|e| refused(&e))?;
                }
            }
            catch_up(raft, *id).await?;
            let voters = BTreeSet::from([*id]);
            raft.change_membership(ChangeMembers::AddVoterIds(voters), true)
                .await
                .map_err(|e| refused(&e))?;
            Ok(())
        }
        Change::Remove { id } => {
            let ids = BTreeSet::from([*id]);
            if membership.voter_ids().any(|v| v == *id) {
                raft.change_membership(ChangeMembers::RemoveVoters(ids), false)
                    .await
                    .map_err(|e| refused(&e))?;
            } else if membership.get_node(id).is_some() {
                raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
                    .await
                    .map_err(|e| refused(&e))?;
            }
            Ok(())
        }
    }
}

/// Waits until the leader has replicated its whole log (as it is now) to
/// learner `id`: a voter that joins far behind would slow every commit that
/// needs it.
async fn catch_up(raft: &Raft, id: u64) -> Result<(), Refused> {
    let target = raft.metrics().borrow().last_log_index.unwrap_or(0);
    raft.wait(Some(CATCH_UP_LIMIT))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id))
                    .and_then(|matched| matched.as_ref())
                    .is_some_and(|l| l.index >= target)
            },
            "the new node to catch up",
        )
        .await
        .map(|_| ())
        .map_err(|e| Refused::Retry(format!("node {id} did not catch up: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: u64, host: &str, port: u16, bus_port: u16) -> NodeSpec {
        NodeSpec {
            id,
            host: host.into(),
            port,
            bus_port,
        }
    }

    #[test]
    fn an_address_names_the_client_and_bus_ports() {
        let n = spec(4, "10.0.0.4", 7000, 17001);
        assert_eq!(Address::of(&n), "10.0.0.4:7000@17001");
        assert_eq!(Address::parse(4, &Address::of(&n), &[]), Some(n));
        assert_eq!(Address::bus("10.0.0.4:7000@17001"), "10.0.0.4:17001");
        assert_eq!(Address::bus("[::1]:7000@17000"), "[::1]:17000");
        let v6 = spec(5, "::1", 7000, 17000);
        assert_eq!(Address::of(&v6), "[::1]:7000@17000");
        assert_eq!(Address::parse(5, "[::1]:7000@17000", &[]), Some(v6));
    }

    #[test]
    fn a_bus_only_address_takes_its_client_port_from_the_flags() {
        let known = [spec(2, "h", 6379, 16000)];
        assert_eq!(
            Address::parse(2, "h:16000", &known),
            Some(spec(2, "h", 6379, 16000))
        );
        assert_eq!(
            Address::parse(3, "h:17003", &known),
            Some(spec(3, "h", 7003, 17003))
        );
        assert_eq!(Address::bus("h:16000"), "h:16000");
        assert_eq!(Address::parse(3, "nonsense", &known), None);
        assert_eq!(Address::parse(3, "h:x@1", &known), None);
    }
}
