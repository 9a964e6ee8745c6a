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

/// A group's voters and leader, as a plan sees them.
pub(crate) struct Placement {
    pub(crate) voters: BTreeSet<u64>,
    pub(crate) leader: Option<u64>,
}

/// How many groups each node is a voter of (`also` counted with none).
fn load(groups: &[Placement], also: u64) -> BTreeMap<u64, usize> {
    let mut load = BTreeMap::from([(also, 0)]);
    for g in groups {
        for v in &g.voters {
            *load.entry(*v).or_insert(0) += 1;
        }
    }
    load
}

/// Where node `new` (at `addr`) goes when met: into every group with
/// fewer than `replicas` voters; then, while some node is a voter of two
/// groups more than it, it takes one of that node's groups (added first,
/// then the other removed), one it does not lead when there is a choice,
/// so that replicas spread over the nodes. Steps in order, by group index.
pub(crate) fn plan_meet(
    new: u64,
    addr: &str,
    mut groups: Vec<Placement>,
    replicas: usize,
) -> Vec<(usize, Change)> {
    let add = || Change::Add {
        id: new,
        addr: addr.to_string(),
    };
    let mut steps = Vec::new();
    for (g, p) in groups.iter_mut().enumerate() {
        if p.voters.len() < replicas && p.voters.insert(new) {
            steps.push((g, add()));
        }
    }
    loop {
        let load = load(&groups, new);
        let mine = load.get(&new).copied().unwrap_or(0);
        let Some((&busiest, &most)) = load
            .iter()
            .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
        else {
            break;
        };
        if most <= mine + 1 {
            break;
        }
        let movable = |p: &Placement| p.voters.contains(&busiest) && !p.voters.contains(&new);
        let pick = groups
            .iter()
            .position(|p| movable(p) && p.leader != Some(busiest))
            .or_else(|| groups.iter().position(movable));
        let Some(g) = pick else { break };
        groups[g].voters.insert(new);
        groups[g].voters.remove(&busiest);
        steps.push((g, add()));
        steps.push((g, Change::Remove { id: busiest }));
    }
    steps
}

/// How node `gone` leaves: from each group it is a voter of, another node
/// (the one of fewest groups, not in that group yet, with an address in
/// `addr_of`) is added first when the group would otherwise have fewer
/// than `replicas` voters, then `gone` is removed.
pub(crate) fn plan_forget(
    gone: u64,
    mut groups: Vec<Placement>,
    replicas: usize,
    addr_of: impl Fn(u64) -> Option<String>,
) -> Vec<(usize, Change)> {
    let mut steps = Vec::new();
    for g in 0..groups.len() {
        if !groups[g].voters.contains(&gone) {
            continue;
        }
        let load = load(&groups, gone);
        let stand_in = load
            .iter()
            .filter(|(id, _)| **id != gone && !groups[g].voters.contains(id))
            .min_by_key(|(id, n)| (**n, **id))
            .and_then(|(id, _)| Some((*id, addr_of(*id)?)));
        if groups[g].voters.len() <= replicas
            && let Some((id, addr)) = stand_in
        {
            groups[g].voters.insert(id);
            steps.push((g, Change::Add { id, addr }));
        }
        groups[g].voters.remove(&gone);
        steps.push((g, Change::Remove { id: gone }));
    }
    steps
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
                // First made a learner, so that it learns it no longer
                // votes (a voter removed outright may never hear of it, and
                // would stand for election over and over).
                let written = raft
                    .change_membership(ChangeMembers::RemoveVoters(ids.clone()), true)
                    .await
                    .map_err(|e| refused(&e))?;
                let _ = reach(raft, *id, written.log_id.index, TELL_LIMIT).await;
            }
            if raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(id)
                .is_some()
            {
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
    reach(raft, id, target, CATCH_UP_LIMIT).await
}

/// How long a leader waits for a voter it made a learner to hear of it (a
/// node being removed may be down: it is removed all the same).
const TELL_LIMIT: Duration = Duration::from_secs(5);

/// Waits up to `limit` until node `id` has the leader's log up to `target`.
async fn reach(raft: &Raft, id: u64, target: u64, limit: Duration) -> Result<(), Refused> {
    raft.wait(Some(limit))
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

    fn placed(groups: &[(&[u64], u64)]) -> Vec<Placement> {
        groups
            .iter()
            .map(|(v, l)| Placement {
                voters: v.iter().copied().collect(),
                leader: Some(*l),
            })
            .collect()
    }

    fn shown(steps: &[(usize, Change)]) -> Vec<String> {
        steps
            .iter()
            .map(|(g, c)| match c {
                Change::Add { id, .. } => format!("{g}+{id}"),
                Change::Remove { id } => format!("{g}-{id}"),
            })
            .collect()
    }

    #[test]
    fn a_node_met_fills_small_groups_then_takes_groups_from_the_busiest() {
        // Three groups on all three nodes: node 4 takes one group from node
        // 1 and one from node 2, none they lead.
        let three = placed(&[(&[1, 2, 3], 1), (&[1, 2, 3], 2), (&[1, 2, 3], 3)]);
        assert_eq!(
            shown(&plan_meet(4, "a", three, 3)),
            ["1+4", "1-1", "0+4", "0-2"]
        );
        // A group left with two voters gets the new node first; then one
        // group of node 2 (three groups, against node 5's one) moves.
        let short = placed(&[(&[2, 3], 2), (&[2, 3, 4], 3), (&[3, 4, 2], 4)]);
        assert_eq!(shown(&plan_meet(5, "a", short, 3)), ["0+5", "1+5", "1-2"]);
        // Met again: nothing to do.
        let again = placed(&[(&[1, 2, 4], 1), (&[2, 3, 4], 2), (&[1, 3, 4], 3)]);
        assert!(plan_meet(4, "a", again, 3).is_empty());
    }

    #[test]
    fn a_node_forgotten_is_replaced_in_each_of_its_groups_first() {
        let four = placed(&[
            (&[1, 2, 3], 1),
            (&[2, 3, 4], 2),
            (&[3, 4, 1], 3),
            (&[4, 1, 2], 4),
        ]);
        let addr = |id: u64| Some(format!("h:{id}"));
        assert_eq!(
            shown(&plan_forget(1, four, 3, addr)),
            ["0+4", "0-1", "2+2", "2-1", "3+3", "3-1"]
        );
        // Three nodes: nobody to stand in; the groups keep two voters.
        let three = placed(&[(&[1, 2, 3], 1), (&[1, 2, 3], 2)]);
        assert_eq!(shown(&plan_forget(3, three, 3, addr)), ["0-3", "1-3"]);
    }

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
