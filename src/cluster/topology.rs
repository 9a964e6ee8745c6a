//! A plain-data view of the cluster (nodes, Raft groups, their slot ranges
//! and leaders) and the `CLUSTER` replies built from it.
//!
//! The cluster layer fills a [`Topology`] from openraft's metrics; this
//! module only turns it into the reply shapes Redis 7.0.15 sends, so that
//! cluster-aware clients (redis-py, ioredis, redis-cli `-c`,
//! redis-benchmark `--cluster`) find the leaders as they find Redis masters.
//! Shapes are those of Redis's `cluster.c` (`clusterReplyMultiBulkSlots`,
//! `addShardReplyForClusterShards`, `clusterGenNodeDescription`,
//! `genClusterInfoString`), checked byte for byte against a real
//! redis-server in `compat-tests/cluster_shapes.rs`.
//!
//! Where Redis Cluster and Raft groups differ: a Redis master owns its
//! slots and its replicas follow it alone, while here a node may lead
//! several groups and follow others. A node leading at least one group is
//! shown as a master with the slots of the groups it leads; a node leading
//! none is shown as a replica of the leader of a group it votes in.

// Not wired in yet: the cluster layer (src/cluster/mod.rs, being written)
// will call these; remove this allow when it does.

use std::fmt::Write as _;

use super::slots::SLOTS;
use crate::protocol::Reply;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeView {
    /// The Raft node id.
    pub id: u64,
    /// The node's name as clients see it (`CLUSTER MYID`): 40 lowercase
    /// hex digits.
    pub name: String,
    /// The address clients connect to.
    pub host: String,
    pub port: u16,
    /// The port of the cluster (Raft) bus, shown after `@` in `CLUSTER NODES`.
    pub bus_port: u16,
    /// Whether this node is reachable (it answers the Raft RPCs).
    pub online: bool,
}

/// One Raft group: the slots it owns and who leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupView {
    pub first_slot: u16,
    /// Inclusive.
    pub last_slot: u16,
    /// The node id of the current leader, if one is known.
    pub leader: Option<u64>,
    /// The last leader known, kept while an election is under way so that
    /// `CLUSTER SLOTS` still covers every slot.
    pub last_leader: Option<u64>,
    /// The node ids of the group's voters.
    pub voters: Vec<u64>,
    /// The Raft term (shown as the config epoch).
    pub term: u64,
    /// The last applied log index (shown as the replication offset).
    pub applied_index: u64,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// The node id of the node answering.
    pub myself: u64,
    pub nodes: Vec<NodeView>,
    pub groups: Vec<GroupView>,
}

impl GroupView {
    /// The number of slots the group owns.
    fn slot_count(&self) -> u64 {
        u64::from(self.last_slot.saturating_sub(self.first_slot)) + 1
    }
}

impl Topology {
    /// The node with this id.
    pub(crate) fn node(&self, id: u64) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The groups sorted by their first slot (replies list slots in order,
    /// as Redis does).
    fn groups_in_slot_order(&self) -> Vec<&GroupView> {
        let mut groups: Vec<&GroupView> = self.groups.iter().collect();
        groups.sort_by_key(|g| g.first_slot);
        groups
    }

    /// A group's nodes as `CLUSTER SLOTS` and `SHARDS` list them: the
    /// leader first (or, while there is none, the last known leader, so
    /// that clients still find every slot covered), then the other voters.
    /// When no leader was ever known, the voters in order. Ids without a
    /// node are left out.
    fn listed_nodes(&self, g: &GroupView) -> Vec<&NodeView> {
        let head = g.leader.or(g.last_leader);
        head.into_iter()
            .chain(g.voters.iter().copied().filter(|&v| Some(v) != head))
            .filter_map(|id| self.node(id))
            .collect()
    }

    /// The groups a node leads, in slot order.
    fn led_by(&self, id: u64) -> Vec<&GroupView> {
        self.groups_in_slot_order()
            .into_iter()
            .filter(|g| g.leader == Some(id))
            .collect()
    }

    /// The first group (in slot order) that a node votes in and that has a
    /// leader: the "master" a node leading nothing is shown replicating.
    fn followed_by(&self, id: u64) -> Option<&GroupView> {
        self.groups_in_slot_order()
            .into_iter()
            .find(|g| g.leader.is_some() && g.voters.contains(&id))
    }

    /// A node's config epoch: the highest term of the groups it leads, or
    /// for a node leading none the term of the group it is shown following
    /// (a Redis replica shows its master's epoch), else 0.
    fn epoch_of(&self, id: u64) -> u64 {
        let led = self.led_by(id);
        if led.is_empty() {
            self.followed_by(id).map_or(0, |g| g.term)
        } else {
            led.iter().map(|g| g.term).max().unwrap_or(0)
        }
    }

    /// Slots whose group has a leader.
    fn slots_ok(&self) -> u64 {
        self.groups
            .iter()
            .filter(|g| g.leader.is_some())
            .map(GroupView::slot_count)
            .sum()
    }

    fn slots_assigned(&self) -> u64 {
        self.groups.iter().map(GroupView::slot_count).sum()
    }
}

/// One node inside a `CLUSTER SLOTS` entry: `[ip, port, name, {}]`. The
/// map holds the "other endpoints" (hostname, ...) Redis 7 adds when it
/// knows them; delayd has none, so it is empty (`%0` in RESP3, `*0` in
/// RESP2, as Redis sends).
fn slots_node(n: &NodeView) -> Reply {
    Reply::Array(vec![
        Reply::bulk(&n.host),
        Reply::Int(i64::from(n.port)),
        Reply::bulk(&n.name),
        Reply::Map(Vec::new()),
    ])
}

/// `CLUSTER SLOTS`: one entry per group, `[first, last, leader, voters...]`,
/// in slot order. A group with no node known is left out rather than sent
/// with no node (clients index the first node of every entry). Groups are
/// not merged even when one node leads adjacent ones: their replicas
/// differ.
pub(crate) fn cluster_slots(t: &Topology) -> Reply {
    Reply::Array(
        t.groups_in_slot_order()
            .into_iter()
            .filter_map(|g| {
                let nodes = t.listed_nodes(g);
                if nodes.is_empty() {
                    return None;
                }
                let mut entry = Vec::with_capacity(2 + nodes.len());
                entry.push(Reply::Int(i64::from(g.first_slot)));
                entry.push(Reply::Int(i64::from(g.last_slot)));
                entry.extend(nodes.into_iter().map(slots_node));
                Some(Reply::Array(entry))
            })
            .collect(),
    )
}

/// `CLUSTER SHARDS`: one shard per group, in slot order:
/// `{slots: [first, last], nodes: [{id, port, ip, endpoint, role,
/// replication-offset, health}, ...]}`, the first listed node (see
/// `listed_nodes`) as `master`, the others as `replica`. Health as Redis
/// 7.0.15 computes it: `fail` for a node that is down, `loading` for a
/// replica at offset 0, else `online`.
pub(crate) fn cluster_shards(t: &Topology) -> Reply {
    Reply::Array(
        t.groups_in_slot_order()
            .into_iter()
            .map(|g| {
                let nodes = t
                    .listed_nodes(g)
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| shard_node(n, i == 0, g.applied_index))
                    .collect();
                Reply::Map(vec![
                    (
                        Reply::bulk_static("slots"),
                        Reply::Array(vec![
                            Reply::Int(i64::from(g.first_slot)),
                            Reply::Int(i64::from(g.last_slot)),
                        ]),
                    ),
                    (Reply::bulk_static("nodes"), Reply::Array(nodes)),
                ])
            })
            .collect(),
    )
}

fn shard_node(n: &NodeView, master: bool, offset: u64) -> Reply {
    let health = if !n.online {
        "fail"
    } else if !master && offset == 0 {
        "loading"
    } else {
        "online"
    };
    Reply::Map(vec![
        (Reply::bulk_static("id"), Reply::bulk(&n.name)),
        (Reply::bulk_static("port"), Reply::Int(i64::from(n.port))),
        (Reply::bulk_static("ip"), Reply::bulk(&n.host)),
        (Reply::bulk_static("endpoint"), Reply::bulk(&n.host)),
        (
            Reply::bulk_static("role"),
            Reply::bulk_static(if master { "master" } else { "replica" }),
        ),
        (
            Reply::bulk_static("replication-offset"),
            Reply::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
        ),
        (Reply::bulk_static("health"), Reply::bulk_static(health)),
    ])
}

/// `CLUSTER NODES`: one line per node, each ended by `\n` (not `\r\n`):
/// `<name> <host>:<port>@<bus> <flags> <master|-> <ping-sent> <pong-recv>
/// <epoch> <connected|disconnected> <slot ranges...>`. Flags are `master`
/// for a node leading a group (listing the slots of the groups it leads,
/// adjacent ranges merged as Redis prints one node's slots) or `slave` with
/// the name of the leader it follows (see `followed_by`); `myself,` before
/// them on the answering node and `,fail` after them on a node that is
/// down. Ping and pong times are 0: the view carries no heartbeat times.
pub(crate) fn cluster_nodes(t: &Topology) -> Reply {
    let mut out = String::new();
    for n in &t.nodes {
        let led = t.led_by(n.id);
        let role = if led.is_empty() { "slave" } else { "master" };
        let myself = if n.id == t.myself { "myself," } else { "" };
        let fail = if n.online { "" } else { ",fail" };
        let master = if led.is_empty() {
            t.followed_by(n.id)
                .and_then(|g| g.leader)
                .and_then(|id| t.node(id))
                .map_or("-", |m| m.name.as_str())
        } else {
            "-"
        };
        let link = if n.online {
            "connected"
        } else {
            "disconnected"
        };
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{} {}:{}@{} {myself}{role}{fail} {master} 0 0 {} {link}",
            n.name,
            n.host,
            n.port,
            n.bus_port,
            t.epoch_of(n.id)
        );
        for (first, last) in merged_ranges(&led) {
            let _ = if first == last {
                write!(out, " {first}")
            } else {
                write!(out, " {first}-{last}")
            };
        }
        out.push('\n');
    }
    Reply::bulk(out)
}

/// The slot ranges of groups in slot order, adjacent ones merged.
fn merged_ranges(groups: &[&GroupView]) -> Vec<(u16, u16)> {
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for g in groups {
        match ranges.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(g.first_slot) => {
                *last = g.last_slot;
            }
            _ => ranges.push((g.first_slot, g.last_slot)),
        }
    }
    ranges
}

/// `CLUSTER INFO`, with Redis 7.0.15's fields in its order and `\r\n` line
/// ends. The state is `ok` when all 16,384 slots are in groups that have a
/// leader; slots of a group without one count as failed. The message
/// counters are 0 (Redis prints the per-type counters only when non-zero).
pub(crate) fn cluster_info(t: &Topology) -> Reply {
    let assigned = t.slots_assigned();
    let ok = t.slots_ok();
    let state = if ok == u64::from(SLOTS) && assigned == ok {
        "ok"
    } else {
        "fail"
    };
    let current_epoch = t.groups.iter().map(|g| g.term).max().unwrap_or(0);
    let mut out = String::new();
    let fields: [(&str, String); 12] = [
        ("cluster_state", state.to_string()),
        ("cluster_slots_assigned", assigned.to_string()),
        ("cluster_slots_ok", ok.to_string()),
        ("cluster_slots_pfail", "0".to_string()),
        ("cluster_slots_fail", (assigned - ok).to_string()),
        ("cluster_known_nodes", t.nodes.len().to_string()),
        ("cluster_size", t.groups.len().to_string()),
        ("cluster_current_epoch", current_epoch.to_string()),
        ("cluster_my_epoch", t.epoch_of(t.myself).to_string()),
        ("cluster_stats_messages_sent", "0".to_string()),
        ("cluster_stats_messages_received", "0".to_string()),
        ("total_cluster_links_buffer_limit_exceeded", "0".to_string()),
    ];
    for (name, value) in fields {
        let _ = write!(out, "{name}:{value}\r\n");
    }
    Reply::bulk(out)
}

/// `CLUSTER MYID`: the answering node's name.
pub(crate) fn cluster_myid(t: &Topology) -> Reply {
    match t.node(t.myself) {
        Some(n) => Reply::bulk(&n.name),
        // The cluster layer always lists itself; say so rather than invent
        // a name if it did not.
        None => Reply::Error("ERR this node is missing from its own cluster view".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    use crate::protocol::Protocol;

    fn enc(r: &Reply, proto: Protocol) -> String {
        let mut out = BytesMut::new();
        r.encode(proto, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn name(c: char) -> String {
        c.to_string().repeat(40)
    }

    fn node(id: u64, online: bool) -> NodeView {
        NodeView {
            id,
            name: name(char::from(b'a' + id as u8)),
            host: "127.0.0.1".into(),
            port: 7000 + id as u16,
            bus_port: 17000 + id as u16,
            online,
        }
    }

    /// Three nodes (ids 0, 1, 2), three groups over thirds of the slots,
    /// each on all three nodes, group g led by node g (the layout of
    /// docs/cluster.md §7).
    fn three() -> Topology {
        let bounds = [(0, 5460), (5461, 10922), (10923, 16383)];
        Topology {
            myself: 0,
            nodes: (0..3).map(|id| node(id, true)).collect(),
            groups: bounds
                .iter()
                .enumerate()
                .map(|(g, &(first_slot, last_slot))| GroupView {
                    first_slot,
                    last_slot,
                    leader: Some(g as u64),
                    last_leader: Some(g as u64),
                    voters: vec![g as u64, (g as u64 + 1) % 3, (g as u64 + 2) % 3],
                    term: 3 + g as u64,
                    applied_index: 100 * (g as u64 + 1),
                })
                .collect(),
        }
    }

    /// `three()` after node 2 went down: group 2 has no leader yet (its
    /// last leader was node 2); nodes 0 and 1 still lead groups 0 and 1.
    fn leaderless() -> Topology {
        let mut t = three();
        t.nodes[2].online = false;
        t.groups[2].leader = None;
        t
    }

    #[test]
    fn slots_lists_leader_first_then_voters() {
        let t = three();
        let a = name('a');
        let b = name('b');
        let c = name('c');
        let node = |n: &str, port: u16| {
            format!("*4\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{n}\r\n*0\r\n")
        };
        let want = format!(
            "*3\r\n\
             *5\r\n:0\r\n:5460\r\n{}{}{}\
             *5\r\n:5461\r\n:10922\r\n{}{}{}\
             *5\r\n:10923\r\n:16383\r\n{}{}{}",
            node(&a, 7000),
            node(&b, 7001),
            node(&c, 7002),
            node(&b, 7001),
            node(&c, 7002),
            node(&a, 7000),
            node(&c, 7002),
            node(&a, 7000),
            node(&b, 7001),
        );
        assert_eq!(enc(&cluster_slots(&t), Protocol::Resp2), want);
        // RESP3: the same, the empty map as `%0`.
        assert_eq!(
            enc(&cluster_slots(&t), Protocol::Resp3),
            want.replace("*0\r\n", "%0\r\n")
        );
    }

    #[test]
    fn slots_cover_every_slot_without_a_leader() {
        // No leader: the last leader first.
        let t = leaderless();
        let Reply::Array(entries) = cluster_slots(&t) else {
            panic!("not an array")
        };
        assert_eq!(entries.len(), 3);
        let first_node = |e: &Reply| match e {
            Reply::Array(items) => match &items[2] {
                Reply::Array(n) => n[2].clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(first_node(&entries[2]), Reply::bulk(name('c')));
        // Neither leader nor last leader: the voters in order.
        let mut t = leaderless();
        t.groups[2].last_leader = None;
        t.groups[2].voters = vec![1, 0, 2];
        let Reply::Array(entries) = cluster_slots(&t) else {
            panic!("not an array")
        };
        assert_eq!(first_node(&entries[2]), Reply::bulk(name('b')));
        // A group with no known node is left out rather than sent empty;
        // groups are listed in slot order whatever their order in the view.
        t.groups[2].voters.clear();
        t.groups.swap(0, 1);
        let Reply::Array(entries) = cluster_slots(&t) else {
            panic!("not an array")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries
                .iter()
                .map(|e| match e {
                    Reply::Array(items) => items[0].clone(),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            vec![Reply::Int(0), Reply::Int(5461)]
        );
    }

    #[test]
    fn shards_shape() {
        let t = leaderless();
        let shard_node = |n: &str, port: u16, role: &str, off: u64, health: &str| {
            format!(
                "*14\r\n$2\r\nid\r\n$40\r\n{n}\r\n$4\r\nport\r\n:{port}\r\n\
                 $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n\
                 $4\r\nrole\r\n${}\r\n{role}\r\n$18\r\nreplication-offset\r\n:{off}\r\n\
                 $6\r\nhealth\r\n${}\r\n{health}\r\n",
                role.len(),
                health.len()
            )
        };
        let shard = |first: u16, last: u16, nodes: [String; 3]| {
            format!(
                "*4\r\n$5\r\nslots\r\n*2\r\n:{first}\r\n:{last}\r\n$5\r\nnodes\r\n*3\r\n{}",
                nodes.concat()
            )
        };
        let (a, b, c) = (name('a'), name('b'), name('c'));
        let want = format!(
            "*3\r\n{}{}{}",
            shard(
                0,
                5460,
                [
                    shard_node(&a, 7000, "master", 100, "online"),
                    shard_node(&b, 7001, "replica", 100, "online"),
                    shard_node(&c, 7002, "replica", 100, "fail"),
                ]
            ),
            shard(
                5461,
                10922,
                [
                    shard_node(&b, 7001, "master", 200, "online"),
                    shard_node(&c, 7002, "replica", 200, "fail"),
                    shard_node(&a, 7000, "replica", 200, "online"),
                ]
            ),
            // No leader: the last leader (down) is listed as the master.
            shard(
                10923,
                16383,
                [
                    shard_node(&c, 7002, "master", 300, "fail"),
                    shard_node(&a, 7000, "replica", 300, "online"),
                    shard_node(&b, 7001, "replica", 300, "online"),
                ]
            ),
        );
        assert_eq!(enc(&cluster_shards(&t), Protocol::Resp2), want);
        // RESP3: the shard and node maps are maps.
        let resp3 = enc(&cluster_shards(&t), Protocol::Resp3);
        assert_eq!(
            resp3,
            want.replace("*4\r\n$5\r\nslots", "%2\r\n$5\r\nslots")
                .replace("*14\r\n$2\r\nid", "%7\r\n$2\r\nid")
        );
        // A replica of a group with nothing applied is "loading", as in Redis.
        let mut t = three();
        t.groups[0].applied_index = 0;
        let got = enc(&cluster_shards(&t), Protocol::Resp2);
        assert_eq!(got.matches("$7\r\nloading\r\n").count(), 2, "{got}");
    }

    #[test]
    fn nodes_lines() {
        let t = three();
        let (a, b, c) = (name('a'), name('b'), name('c'));
        let want = format!(
            "{a} 127.0.0.1:7000@17000 myself,master - 0 0 3 connected 0-5460\n\
             {b} 127.0.0.1:7001@17001 master - 0 0 4 connected 5461-10922\n\
             {c} 127.0.0.1:7002@17002 master - 0 0 5 connected 10923-16383\n"
        );
        assert_eq!(cluster_nodes(&t), Reply::bulk(&want));

        // Node 2 down, its group leaderless; node 1 answering.
        let mut t = leaderless();
        t.myself = 1;
        let want = format!(
            "{a} 127.0.0.1:7000@17000 master - 0 0 3 connected 0-5460\n\
             {b} 127.0.0.1:7001@17001 myself,master - 0 0 4 connected 5461-10922\n\
             {c} 127.0.0.1:7002@17002 slave,fail {a} 0 0 3 disconnected\n"
        );
        assert_eq!(cluster_nodes(&t), Reply::bulk(&want));

        // Node 0 leads groups 0 and 1 (adjacent: one range) and a
        // one-slot group; node 1 leads nothing; node 2 nothing and votes
        // in no group with a leader.
        let mut t = three();
        t.groups[1].leader = Some(0);
        t.groups[2].leader = Some(0);
        t.groups.push(GroupView {
            first_slot: 16383,
            last_slot: 16383,
            leader: Some(0),
            last_leader: Some(0),
            voters: vec![0],
            term: 9,
            applied_index: 1,
        });
        t.groups[2].last_slot = 16381;
        for g in &mut t.groups[..3] {
            g.voters = vec![0, 1];
        }
        let want = format!(
            "{a} 127.0.0.1:7000@17000 myself,master - 0 0 9 connected 0-16381 16383\n\
             {b} 127.0.0.1:7001@17001 slave {a} 0 0 3 connected\n\
             {c} 127.0.0.1:7002@17002 slave - 0 0 0 connected\n"
        );
        assert_eq!(cluster_nodes(&t), Reply::bulk(&want));
    }

    #[test]
    fn info_fields() {
        let want = "cluster_state:ok\r\n\
                    cluster_slots_assigned:16384\r\n\
                    cluster_slots_ok:16384\r\n\
                    cluster_slots_pfail:0\r\n\
                    cluster_slots_fail:0\r\n\
                    cluster_known_nodes:3\r\n\
                    cluster_size:3\r\n\
                    cluster_current_epoch:5\r\n\
                    cluster_my_epoch:3\r\n\
                    cluster_stats_messages_sent:0\r\n\
                    cluster_stats_messages_received:0\r\n\
                    total_cluster_links_buffer_limit_exceeded:0\r\n";
        assert_eq!(cluster_info(&three()), Reply::bulk(want));

        let mut t = leaderless();
        t.myself = 1;
        let want = want
            .replace("state:ok", "state:fail")
            .replace("slots_ok:16384", "slots_ok:10923")
            .replace("slots_fail:0", "slots_fail:5461")
            .replace("my_epoch:3", "my_epoch:4");
        assert_eq!(cluster_info(&t), Reply::bulk(&want));

        // Slots in no group: not assigned, and the state is fail.
        let mut t = three();
        t.groups.pop();
        let Reply::Bulk(got) = cluster_info(&t) else {
            panic!("not a bulk")
        };
        let got = String::from_utf8(got.to_vec()).unwrap();
        assert!(got.starts_with("cluster_state:fail\r\n"), "{got}");
        assert!(got.contains("cluster_slots_assigned:10923\r\n"), "{got}");
        assert!(got.contains("cluster_slots_fail:0\r\n"), "{got}");
    }

    #[test]
    fn myid() {
        let mut t = three();
        t.myself = 2;
        assert_eq!(cluster_myid(&t), Reply::bulk(name('c')));
        assert_eq!(
            enc(&cluster_myid(&t), Protocol::Resp3),
            format!("$40\r\n{}\r\n", name('c'))
        );
        t.myself = 9;
        assert!(cluster_myid(&t).is_error());
    }
}
