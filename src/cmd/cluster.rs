//! `CLUSTER`, `ASKING`, `READONLY`, `READWRITE`.
//!
//! On a standalone node these answer exactly as a redis-server 7.0 started
//! without `cluster-enabled` does: every known form is refused with
//! [`DISABLED`], and a client that probes for a cluster (redis-py's
//! `RedisCluster`, go-redis, ioredis) learns at once that this is a single
//! node. `CLUSTER KEYSLOT` is refused too: Redis 7.0 computes no slot
//! outside cluster mode. In cluster mode (docs/cluster.md) `CLUSTER`
//! answers from this node's view of the Raft groups.
//!
//! Unknown subcommands and wrong argument counts are found before
//! authentication and before a transaction queues the command, as Redis
//! finds them ([`check_subcommand`], called by
//! [`super::lookup_checked`]): inside `MULTI` they abort the transaction.

use bytes::Bytes;

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::cluster::{slots, topology};
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Redis's text, after `ERR `, for a cluster command on a non-cluster node.
pub(crate) const DISABLED: &str = "This instance has cluster support disabled";

/// Redis 7.0.15's `CLUSTER` subcommands and their arities (the command name
/// and subcommand counted: `CLUSTER INFO` is 2; negative: at least that
/// many), as its `COMMAND INFO cluster` lists them. A subcommand Redis 7.0
/// does not know (`MYSHARDID`, added in 7.2) is unknown here too.
const SUBCOMMANDS: &[(&str, i64)] = &[
    ("addslots", -3),
    ("addslotsrange", -4),
    ("bumpepoch", 2),
    ("count-failure-reports", 3),
    ("countkeysinslot", 3),
    ("delslots", -3),
    ("delslotsrange", -4),
    ("failover", -2),
    ("flushslots", 2),
    ("forget", 3),
    ("getkeysinslot", 4),
    ("help", 2),
    ("info", 2),
    ("keyslot", 3),
    ("links", 2),
    ("meet", -4),
    ("myid", 2),
    ("nodes", 2),
    ("replicas", 3),
    ("replicate", 3),
    ("reset", -2),
    ("saveconfig", 2),
    ("set-config-epoch", 3),
    ("setslot", -4),
    ("shards", 2),
    ("slaves", 3),
    ("slots", 2),
];

/// `CLUSTER HELP` in cluster mode, one status reply per line, in the shape
/// of Redis's help replies: the subcommands delayd answers.
const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "INFO",
    "    Return information about the cluster (cluster_state, slots, nodes).",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return this node's id.",
    "NODES",
    "    Return the cluster as this node sees it, one node per line:",
    "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "SHARDS",
    "    Return each slot range's group with its leader and replicas.",
    "SLOTS",
    "    Return each slot range with its leader, then its replicas: address, port, id.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of queues in <slot> (on the node serving it; 0 elsewhere).",
    "GETKEYSINSLOT <slot> <count>",
    "    Return up to <count> queue names in <slot> (on the node serving it).",
    "MEET <ip> <port> [<bus-port>]",
    "    Add the node listening there (started with --cluster-join) to every group.",
    "FORGET <node-id>",
    "    Remove a node from every group.",
    "Slots belong to delayd's Raft groups: ADDSLOTS, SETSLOT, FAILOVER and the other",
    "commands that move slots are refused.",
    "HELP",
    "    Print this help.",
];

/// `CLUSTER MEET ip port [bus-port]`'s address (`args[0]` is `meet`), as
/// Redis 7.0 checks it: an IP address (not a host name) and ports in
/// 1..=65535, the bus port defaulting to the port + 10000.
///
/// # Errors
///
/// Redis's texts: `Invalid TCP base port specified: x`, `Invalid TCP bus
/// port specified: x`, `Invalid node address specified: ip:port`, and its
/// syntax error for more arguments.
fn meet_address(args: &[Bytes]) -> Result<(String, u16, u16)> {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    if args.len() > 4 {
        let shown = &args[0][..args[0].len().min(SHOWN_NAME)];
        return Err(Error::msg(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try CLUSTER HELP.",
            String::from_utf8_lossy(shown)
        )));
    }
    let (ip, port) = (text(&args[1]), text(&args[2]));
    let number = |s: &str| super::parse_int(s.as_bytes()).ok();
    let base = number(&port)
        .ok_or_else(|| Error::msg(format!("Invalid TCP base port specified: {port}")))?;
    let bus = match args.get(3) {
        Some(b) => number(&text(b))
            .ok_or_else(|| Error::msg(format!("Invalid TCP bus port specified: {}", text(b))))?,
        None => base.saturating_add(10000),
    };
    let invalid = || Error::msg(format!("Invalid node address specified: {ip}:{port}"));
    let addr: std::net::IpAddr = ip.parse().map_err(|_| invalid())?;
    let valid = |p: i64| u16::try_from(p).ok().filter(|&p| p > 0);
    match (valid(base), valid(bus)) {
        (Some(base), Some(bus)) => Ok((addr.to_string(), base, bus)),
        _ => Err(invalid()),
    }
}

/// `CLUSTER COUNTKEYSINSLOT slot` (`max` given) and `GETKEYSINSLOT slot
/// count` (`args[1]`): the queues of `slot` this node serves, as a Redis
/// node counts its own keys (none where another node leads the slot).
///
/// # Errors
///
/// Redis's texts: not an integer, `Invalid slot`, `Invalid slot or number
/// of keys`.
fn keys_in_slot(
    cluster: &crate::cluster::Cluster,
    args: &[Bytes],
    max: usize,
) -> Result<Vec<Bytes>> {
    let slot = super::parse_int(&args[0])?;
    let max = match args.get(1) {
        Some(count) => {
            let count = super::parse_int(count)?;
            if !(0..i64::from(slots::SLOTS)).contains(&slot) || count < 0 {
                return Err(Error::msg("Invalid slot or number of keys"));
            }
            usize::try_from(count).unwrap_or(usize::MAX)
        }
        None => max,
    };
    let slot = u16::try_from(slot)
        .ok()
        .filter(|s| *s < slots::SLOTS)
        .ok_or_else(|| Error::msg("Invalid slot"))?;
    match cluster.serving(slot) {
        Some(engine) => engine.queue_names(|k| slots::key_hash_slot(k) == slot, max),
        None => Ok(Vec::new()),
    }
}

/// Redis shows at most this many bytes of an unknown subcommand's name
/// (`%.128s`).
const SHOWN_NAME: usize = 128;

/// Checks `CLUSTER`'s subcommand and its argument count (`args[0]` is the
/// command name, already found to be `CLUSTER` with at least 2 arguments).
///
/// # Errors
///
/// `ERR unknown subcommand 'x'. Try CLUSTER HELP.` and `ERR wrong number of
/// arguments for 'cluster|x' command`, Redis's texts.
pub(crate) fn check_subcommand(args: &[Bytes]) -> Result<()> {
    let Some(sub) = args.get(1) else {
        return Err(Error::WrongArity("cluster".into()));
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let Some(&(name, arity)) = SUBCOMMANDS.iter().find(|(n, _)| *n == lower) else {
        let shown = &sub[..sub.len().min(SHOWN_NAME)];
        return Err(Error::UnknownSubcommand {
            command: "CLUSTER".into(),
            sub: String::from_utf8_lossy(shown).into_owned(),
        });
    };
    let n = i64::try_from(args.len()).unwrap_or(i64::MAX);
    if (arity >= 0 && n != arity) || n < -arity {
        return Err(Error::WrongArity(format!("cluster|{name}")));
    }
    Ok(())
}

/// `CLUSTER ...`, `ASKING`, `READONLY`, `READWRITE`. On a standalone
/// node each answers `-ERR` [`DISABLED`]; in cluster mode `CLUSTER` answers
/// from this node's view of the cluster, and the other three `+OK` (reads
/// are served by leaders only, so there is nothing for them to change).
///
/// # Format
///
/// ```text
/// CLUSTER subcommand [arg ...]
/// ASKING
/// READONLY
/// READWRITE
/// ```
#[derive(Debug)]
pub(crate) struct ClusterCommand {
    /// `CLUSTER`'s subcommand and its arguments; empty for the others.
    args: Vec<Bytes>,
}

/// The table's parser for `CLUSTER` (its subcommand was checked by
/// [`check_subcommand`]), `ASKING`, `READONLY` and `READWRITE`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub(crate) fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(ClusterCommand { args: args.rest() }))
}

impl ClientCommand for ClusterCommand {
    fn apply(&self, shared: &Shared, _: &mut ClientState) -> Option<Reply> {
        let Some(cluster) = &shared.cluster else {
            return Some(Reply::from(Error::msg(DISABLED)));
        };
        let Some(sub) = self.args.first() else {
            return Some(Reply::Simple("OK"));
        };
        let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
        let topology = || cluster.topology();
        Some(match sub.as_str() {
            "slots" => topology::cluster_slots(&topology()),
            "shards" => topology::cluster_shards(&topology()),
            "nodes" => topology::cluster_nodes(&topology()),
            "info" => topology::cluster_info(&topology()),
            "myid" => topology::cluster_myid(&topology()),
            "help" => Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect()),
            "keyslot" => match self.args.get(1) {
                Some(k) => Reply::Int(i64::from(slots::key_hash_slot(k))),
                None => Reply::from(Error::WrongArity("cluster|keyslot".into())),
            },
            "meet" => match meet_address(&self.args) {
                Ok((host, port, bus)) => {
                    cluster.meet(host, port, bus);
                    Reply::Simple("OK")
                }
                Err(e) => Reply::from(e),
            },
            "countkeysinslot" => match keys_in_slot(cluster, &self.args[1..], usize::MAX) {
                Ok(keys) => Reply::Int(keys.len() as i64),
                Err(e) => Reply::from(e),
            },
            "getkeysinslot" => match keys_in_slot(cluster, &self.args[1..], 0) {
                Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
                Err(e) => Reply::from(e),
            },
            "forget" => match cluster.forget(&self.args[1]) {
                Ok(()) => Reply::Simple("OK"),
                Err(e) => Reply::from(e),
            },
            _ => Reply::from(Error::msg(format!(
                "CLUSTER {} is not supported: delayd assigns slots to its Raft groups itself",
                sub.to_ascii_uppercase()
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn check(a: &[&str]) -> String {
        check_subcommand(&args(a)).map_or_else(|e| e.reply_text(), |()| "ok".into())
    }

    #[test]
    fn known_subcommands_pass_in_any_case_with_their_arity() {
        assert_eq!(check(&["CLUSTER", "INFO"]), "ok");
        assert_eq!(check(&["cluster", "KeySlot", "k"]), "ok");
        assert_eq!(check(&["CLUSTER", "SETSLOT", "1", "NODE", "x"]), "ok");
        assert_eq!(check(&["CLUSTER", "RESET"]), "ok");
        assert_eq!(check(&["CLUSTER", "RESET", "HARD"]), "ok");
    }

    #[test]
    fn wrong_arity_names_the_subcommand_in_lower_case() {
        assert_eq!(
            check(&["CLUSTER", "KEYSLOT"]),
            "ERR wrong number of arguments for 'cluster|keyslot' command"
        );
        assert_eq!(
            check(&["CLUSTER", "INFO", "x"]),
            "ERR wrong number of arguments for 'cluster|info' command"
        );
        assert_eq!(
            check(&["CLUSTER", "MEET", "127.0.0.1"]),
            "ERR wrong number of arguments for 'cluster|meet' command"
        );
    }

    #[test]
    fn unknown_subcommands_keep_their_case_and_are_cut_at_128_bytes() {
        assert_eq!(
            check(&["CLUSTER", "MyShardId"]),
            "ERR unknown subcommand 'MyShardId'. Try CLUSTER HELP."
        );
        let long = "x".repeat(200);
        assert_eq!(
            check(&["CLUSTER", &long, "a"]),
            format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                "x".repeat(128)
            )
        );
    }

    #[test]
    fn subcommands_are_sorted_and_unique() {
        // Sorted, so a missing or doubled row shows in review.
        assert!(SUBCOMMANDS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
