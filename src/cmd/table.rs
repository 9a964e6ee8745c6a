//! The command table: every command's name, arity, flags, key positions and
//! documentation. Dispatch checks arity from here, and `COMMAND`,
//! `COMMAND INFO` and `COMMAND DOCS` are generated from it, so interactive
//! redis-cli shows argument hints for the delay commands and cluster-aware
//! clients can find their keys.

use super::{
    Args, Command, acl, auth, bdelaypop, client, command, config, delayack, delayadd, delaycard,
    delaycount, delaydigest, delayinfo, delaypop, delayrange, delayrem, delayscore, delaytrace,
    echo, hello, info, keyspace, latency, monitor, multi, ping, quit, readonly, reset, role,
    select, shutdown, slowlog, time,
};
use bytes::Bytes;

use crate::Result;

/// The type of a documented argument, as `COMMAND DOCS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    String,
    Integer,
    Double,
    Key,
    Pattern,
    UnixTime,
    PureToken,
    Oneof,
    Block,
}

impl ArgType {
    /// The name used in `COMMAND DOCS`.
    pub fn name(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Integer => "integer",
            ArgType::Double => "double",
            ArgType::Key => "key",
            ArgType::Pattern => "pattern",
            ArgType::UnixTime => "unix-time",
            ArgType::PureToken => "pure-token",
            ArgType::Oneof => "oneof",
            ArgType::Block => "block",
        }
    }
}

/// One documented argument.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgType,
    /// The keyword that introduces it, if any (`COUNT`, `NX`, ...).
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
    /// Members of a `oneof` or `block`.
    pub args: &'static [Arg],
}

impl Arg {
    const fn new(name: &'static str, kind: ArgType) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
            args: &[],
        }
    }
    const fn token(mut self, t: &'static str) -> Arg {
        self.token = Some(t);
        self
    }
    const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }
    const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }
    const fn with(mut self, args: &'static [Arg]) -> Arg {
        self.args = args;
        self
    }
}

/// One command.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i64,
    /// Command flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i64,
    /// Position of the last key (-1: the last argument, -2: the one before).
    pub last_key: i64,
    /// Step between keys.
    pub step: i64,
    /// ACL categories, without the `@`.
    pub acl: &'static [&'static str],
    /// What the keys at the key positions are used for, as Redis's key
    /// specs say it ([`KEY_READ`], [`KEY_WRITE`], both, or neither, as
    /// EXISTS's): a `%R~`/`%W~` key pattern must grant all of it.
    pub key_flags: u8,
    /// Keys found by keyword rather than position (DELAYPOP's DEADLETTER
    /// queue, which is written): their argument indexes.
    pub keyword_keys: Option<KeywordKeys>,
    pub summary: &'static str,
    pub since: &'static str,
    pub group: &'static str,
    pub complexity: &'static str,
    pub args: &'static [Arg],
    /// Parses the arguments after the name into the command.
    pub parse: fn(&mut Args) -> Result<Command>,
}

impl CommandSpec {
    /// This command's row in [`COMMANDS`] (`None` for a spec that is not
    /// one of its rows): per-command counters are indexed by it, so
    /// counting a call needs no search by name.
    pub fn row(&'static self) -> Option<usize> {
        // The offset of this row from the table's start, in rows; an
        // address, compared, never dereferenced.
        let size = std::mem::size_of::<CommandSpec>();
        let offset =
            (self as *const CommandSpec as usize).checked_sub(COMMANDS.as_ptr() as usize)?;
        let row = offset / size;
        COMMANDS
            .get(row)
            .filter(|spec| std::ptr::eq(*spec, self))
            .map(|_| row)
    }

    /// Whether `n` arguments (name included) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i64;
        if self.arity >= 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }
}

/// Finds keys by keyword in a command's arguments: their indexes.
pub type KeywordKeys = fn(&[Bytes]) -> Vec<usize>;

/// A key whose value the command reads (Redis's `ACCESS` key flag).
pub const KEY_READ: u8 = 1;
/// A key the command changes (`INSERT`, `UPDATE`, `DELETE`).
pub const KEY_WRITE: u8 = 2;

impl CommandSpec {
    /// The keys of a command (`args[0]` is its name): each argument index
    /// with the access it needs ([`KEY_READ`], [`KEY_WRITE`]), from the
    /// key positions, then the keys found by keyword.
    pub fn keys(&self, args: &[Bytes]) -> Vec<(usize, u8)> {
        let mut keys = Vec::new();
        if self.first_key > 0 {
            let n = args.len() as i64;
            let last = if self.last_key < 0 {
                n + self.last_key
            } else {
                self.last_key
            };
            let mut i = self.first_key;
            while i <= last && i < n {
                keys.push((i as usize, self.key_flags));
                i += self.step.max(1);
            }
        }
        if let Some(more) = self.keyword_keys {
            keys.extend(more(args).into_iter().map(|i| (i, KEY_WRITE)));
        }
        keys
    }
}

/// DELAYPOP's dead-letter queue: the argument after `DEADLETTER`, walking
/// the options as the parser does (values of other options are skipped,
/// so a value spelled `DEADLETTER` is not taken for the keyword).
fn deadletter_key(args: &[Bytes]) -> Vec<usize> {
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if super::is(a, "DEADLETTER") && i + 1 < args.len() {
            return vec![i + 1];
        }
        i += if ["COUNT", "LEASE", "RETRIES", "BLOCK"]
            .iter()
            .any(|k| super::is(a, k))
        {
            2
        } else {
            1
        };
    }
    Vec::new()
}

/// Looks a command up by lower-case name.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// [`lookup`] of a command name as a client sent it, in any case, without
/// lowering a copy of it first (this is on the path of every request).
pub fn lookup_any_case(name: &[u8]) -> Option<&'static CommandSpec> {
    // Every row by its name packed in lower case into one integer, sorted:
    // a request's name is packed once and found by binary search, rather
    // than compared letter by letter with names that mostly start
    // `delay`. Names too long to pack (none today) are searched in turn.
    static PACKED: std::sync::LazyLock<Vec<(u128, &'static CommandSpec)>> =
        std::sync::LazyLock::new(|| {
            let mut rows: Vec<(u128, &'static CommandSpec)> = COMMANDS
                .iter()
                .filter_map(|c| Some((pack_name(c.name.as_bytes())?, c)))
                .collect();
            rows.sort_unstable_by_key(|(k, _)| *k);
            rows
        });
    match pack_name(name) {
        Some(key) => PACKED
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .and_then(|i| PACKED.get(i))
            .map(|(_, c)| *c),
        None => COMMANDS
            .iter()
            .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name)),
    }
}

/// A name of at most 15 bytes in lower case, and its length, as one
/// integer: equal for two names exactly when they are equal ignoring ASCII
/// case.
fn pack_name(name: &[u8]) -> Option<u128> {
    if name.len() > 15 {
        return None;
    }
    let mut key = (name.len() as u128) << 120;
    for (i, b) in name.iter().enumerate() {
        key |= u128::from(b.to_ascii_lowercase()) << (8 * i);
    }
    Some(key)
}

use ArgType as T;

const fn spec(
    name: &'static str,
    arity: i64,
    parse: fn(&mut Args) -> Result<Command>,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        parse,
        flags: &[],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &[],
        key_flags: 0,
        keyword_keys: None,
        summary: "",
        since: "1.0.0",
        group: "connection",
        complexity: "O(1)",
        args: &[],
    }
}

const DELAY: &str = "sortedset";

/// Every command delayd knows.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        flags: &["write", "denyoom", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["write", "sortedset", "fast", "delay"],
        key_flags: KEY_WRITE,
        summary: "Schedules members to become due after a delay in ms (or at a Unix time in ms with AT); reschedules existing ones.",
        group: DELAY,
        complexity: "O(log(N)) for each member added, where N is the number of members in the queue.",
        args: &[
            Arg::new("key", T::Key),
            Arg::new("condition", T::Oneof).optional().with(&[
                Arg::new("nx", T::PureToken).token("NX"),
                Arg::new("xx", T::PureToken).token("XX"),
            ]),
            Arg::new("change", T::PureToken).token("CH").optional(),
            Arg::new("at", T::PureToken).token("AT").optional(),
            Arg::new("data", T::Block)
                .multiple()
                .with(&[Arg::new("delay", T::Integer), Arg::new("member", T::String)]),
        ],
        ..spec("delayadd", -4, delayadd::parse)
    },
    CommandSpec {
        flags: &["write", "fast", "blocking"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["write", "sortedset", "fast", "blocking", "delay"],
        key_flags: KEY_READ | KEY_WRITE,
        keyword_keys: Some(deadletter_key),
        summary: "Removes and returns due members, earliest first; LEASE hides them for ms instead of removing; BLOCK waits for one.",
        group: DELAY,
        complexity: "O(log(N)*M) with M the number of members returned.",
        args: &[
            Arg::new("key", T::Key),
            Arg::new("count", T::Integer).token("COUNT").optional(),
            Arg::new("lease", T::Integer).token("LEASE").optional(),
            Arg::new("retries", T::Integer).token("RETRIES").optional(),
            Arg::new("deadletter", T::Key)
                .token("DEADLETTER")
                .optional(),
            Arg::new("timeout", T::Integer).token("BLOCK").optional(),
            Arg::new("withcounts", T::PureToken)
                .token("WITHCOUNTS")
                .optional(),
        ],
        ..spec("delaypop", -2, delaypop::parse)
    },
    CommandSpec {
        flags: &["write", "blocking"],
        first_key: 1,
        last_key: -2,
        step: 1,
        acl: &["write", "sortedset", "slow", "blocking", "delay"],
        key_flags: KEY_READ | KEY_WRITE,
        summary: "Blocks until a member of one of the queues is due, then removes it and returns [key, member, due-ms].",
        group: DELAY,
        complexity: "O(log(N)) with N the number of members in the queue.",
        args: &[
            Arg::new("key", T::Key).multiple(),
            Arg::new("timeout", T::Double),
        ],
        ..spec("bdelaypop", -3, bdelaypop::parse)
    },
    CommandSpec {
        flags: &["write", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["write", "sortedset", "fast", "delay"],
        key_flags: KEY_WRITE,
        summary: "Acknowledges leased members: removes them for good.",
        group: DELAY,
        complexity: "O(M*log(N)) with M the number of members acknowledged.",
        args: &[
            Arg::new("key", T::Key),
            Arg::new("member", T::String).multiple(),
        ],
        ..spec("delayack", -3, delayack::parse)
    },
    CommandSpec {
        flags: &["write", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["write", "sortedset", "fast", "delay"],
        key_flags: KEY_WRITE,
        summary: "Cancels scheduled members.",
        group: DELAY,
        complexity: "O(M*log(N)) with M the number of members removed.",
        args: &[
            Arg::new("key", T::Key),
            Arg::new("member", T::String).multiple(),
        ],
        ..spec("delayrem", -3, delayrem::parse)
    },
    CommandSpec {
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["read", "sortedset", "fast", "delay"],
        key_flags: KEY_READ,
        summary: "Returns a member's due time in Unix ms.",
        group: DELAY,
        args: &[Arg::new("key", T::Key), Arg::new("member", T::String)],
        ..spec("delayscore", 3, delayscore::parse)
    },
    CommandSpec {
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["read", "sortedset", "fast", "delay"],
        key_flags: KEY_READ,
        summary: "Returns the number of members in a queue, leased ones included.",
        group: DELAY,
        args: &[Arg::new("key", T::Key)],
        ..spec("delaycard", 2, delaycard::parse)
    },
    CommandSpec {
        flags: &["readonly"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["read", "sortedset", "slow", "delay"],
        key_flags: KEY_READ,
        summary: "Returns members in due order by rank or, with BYSCORE, by due time, like ZRANGE.",
        group: DELAY,
        complexity: "O(log(N)+M) with M the number of members skipped and returned.",
        args: &[
            Arg::new("key", T::Key),
            Arg::new("start", T::String),
            Arg::new("stop", T::String),
            Arg::new("byscore", T::PureToken)
                .token("BYSCORE")
                .optional(),
            Arg::new("rev", T::PureToken).token("REV").optional(),
            Arg::new("limit", T::Block)
                .token("LIMIT")
                .optional()
                .with(&[
                    Arg::new("offset", T::Integer),
                    Arg::new("count", T::Integer),
                ]),
            Arg::new("withscores", T::PureToken)
                .token("WITHSCORES")
                .optional(),
        ],
        ..spec("delayrange", -4, delayrange::parse)
    },
    CommandSpec {
        flags: &["readonly"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["read", "sortedset", "slow", "delay"],
        key_flags: KEY_READ,
        summary: "Counts the members due within a window of due times, like ZCOUNT.",
        group: DELAY,
        complexity: "O(log(N)+M) with M the number of members in the window.",
        args: &[
            Arg::new("key", T::Key),
            Arg::new("min", T::Double),
            Arg::new("max", T::Double),
        ],
        ..spec("delaycount", 4, delaycount::parse)
    },
    CommandSpec {
        flags: &["readonly"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["read", "sortedset", "slow", "delay"],
        key_flags: KEY_READ,
        summary: "Returns a queue's backlog figures: pending, ready, leased, next due, oldest ready age and counters.",
        group: DELAY,
        args: &[Arg::new("key", T::Key)],
        ..spec("delayinfo", 2, delayinfo::parse)
    },
    CommandSpec {
        flags: &["admin", "noscript", "loading", "stale"],
        acl: &["admin", "slow", "dangerous", "delay"],
        summary: "Cluster mode: a Raft group's applied index and a SHA-256 of its store on this node, to check replicas agree.",
        group: DELAY,
        complexity: "O(N) with N the entries of the group's store.",
        args: &[Arg::new("group", T::Integer)],
        ..spec("delaydigest", 2, delaydigest::parse)
    },
    CommandSpec {
        flags: &["readonly"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["read", "sortedset", "slow", "delay"],
        key_flags: KEY_READ,
        summary: "Returns what happened to a member of a traced queue (trace-queues): [time-ms, event, detail] entries, oldest first.",
        group: DELAY,
        complexity: "O(N) where N is the number of trace events kept for the queue (at most trace-max-events).",
        args: &[Arg::new("key", T::Key), Arg::new("member", T::String)],
        ..spec("delaytrace", 3, delaytrace::parse)
    },
    CommandSpec {
        flags: &["fast", "stale"],
        acl: &["fast", "connection"],
        summary: "Returns the server's liveliness response.",
        args: &[Arg::new("message", T::String).optional()],
        ..spec("ping", -1, ping::parse)
    },
    CommandSpec {
        flags: &["fast", "stale"],
        acl: &["fast", "connection"],
        summary: "Returns the given string.",
        args: &[Arg::new("message", T::String)],
        ..spec("echo", 2, echo::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        acl: &["fast", "connection"],
        summary: "Handshakes with the server: protocol version, authentication, client name.",
        since: "6.0.0",
        args: &[Arg::new("arguments", T::Block).optional().with(&[
            Arg::new("protover", T::Integer),
            Arg::new("auth", T::Block).token("AUTH").optional().with(&[
                Arg::new("username", T::String),
                Arg::new("password", T::String),
            ]),
            Arg::new("clientname", T::String)
                .token("SETNAME")
                .optional(),
        ])],
        ..spec("hello", -1, hello::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        acl: &["fast", "connection"],
        summary: "Authenticates the connection.",
        args: &[
            Arg::new("username", T::String).optional(),
            Arg::new("password", T::String),
        ],
        ..spec("auth", -2, auth::parse)
    },
    CommandSpec {
        flags: &["loading", "stale", "fast"],
        acl: &["fast", "connection"],
        summary: "Changes the selected database (only 0 exists).",
        args: &[Arg::new("index", T::Integer)],
        ..spec("select", 2, select::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        acl: &["fast", "connection"],
        summary: "Closes the connection.",
        ..spec("quit", -1, quit::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        acl: &["fast", "connection"],
        summary: "Resets the connection.",
        since: "6.2.0",
        ..spec("reset", 1, reset::parse)
    },
    CommandSpec {
        flags: &["loading", "stale", "fast"],
        acl: &["fast", "connection"],
        summary: "Enables read queries for a connection to a cluster replica node (refused: cluster support is disabled).",
        group: "cluster",
        ..spec("readonly", 1, readonly::parse)
    },
    CommandSpec {
        flags: &["loading", "stale", "fast"],
        acl: &["fast", "connection"],
        summary: "Disables read queries for a connection to a cluster replica node (refused: cluster support is disabled).",
        group: "cluster",
        ..spec("readwrite", 1, readonly::parse)
    },
    CommandSpec {
        flags: &["fast"],
        acl: &["fast", "connection"],
        summary: "Sent by cluster clients after an -ASK redirect (refused: cluster support is disabled).",
        group: "cluster",
        since: "3.0.0",
        ..spec("asking", 1, super::cluster::parse)
    },
    CommandSpec {
        acl: &["slow"],
        summary: "A container for Redis Cluster commands (refused: cluster support is disabled).",
        group: "cluster",
        since: "3.0.0",
        complexity: "Depends on subcommand.",
        args: &[Arg::new("subcommand", T::String)],
        ..spec("cluster", -2, super::cluster::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale"],
        acl: &["slow"],
        summary: "A container for client connection commands.",
        args: &[Arg::new("subcommand", T::String)],
        ..spec("client", -2, client::parse)
    },
    CommandSpec {
        flags: &["admin", "noscript", "loading", "stale"],
        acl: &["admin", "slow", "dangerous"],
        summary: "Listens for all requests received by the server in real-time.",
        group: "server",
        since: "1.0.0",
        ..spec("monitor", 1, monitor::parse)
    },
    CommandSpec {
        flags: &["loading", "stale"],
        acl: &["slow", "connection"],
        summary: "Returns detailed information about all commands.",
        group: "server",
        complexity: "O(N) where N is the total number of commands",
        ..spec("command", -1, command::parse)
    },
    CommandSpec {
        flags: &["admin", "noscript", "loading", "stale"],
        acl: &["slow"],
        summary: "A container for server configuration commands.",
        group: "server",
        args: &[Arg::new("subcommand", T::String)],
        ..spec("config", -2, config::parse)
    },
    CommandSpec {
        // Redis flags its ACL subcommands admin (but CAT, WHOAMI, GENPASS):
        // here the container carries it, so MONITOR never shows ACL rules.
        flags: &["admin", "noscript", "loading", "stale"],
        acl: &["slow"],
        summary: "A container for Access List Control commands.",
        group: "server",
        since: "6.0.0",
        complexity: "Depends on subcommand.",
        args: &[Arg::new("subcommand", T::String)],
        ..spec("acl", -2, acl::parse)
    },
    CommandSpec {
        flags: &["admin", "loading", "stale"],
        acl: &["admin", "slow", "dangerous"],
        summary: "A container for slow log commands.",
        group: "server",
        since: "2.2.12",
        complexity: "Depends on subcommand.",
        args: &[Arg::new("subcommand", T::String)],
        ..spec("slowlog", -2, slowlog::parse)
    },
    CommandSpec {
        flags: &["admin", "noscript", "loading", "stale"],
        acl: &["admin", "slow", "dangerous"],
        summary: "A container for latency diagnostics commands.",
        group: "server",
        since: "2.8.13",
        complexity: "Depends on subcommand.",
        args: &[Arg::new("subcommand", T::String)],
        ..spec("latency", -2, latency::parse)
    },
    CommandSpec {
        flags: &["loading", "stale"],
        acl: &["slow", "dangerous"],
        summary: "Returns information and statistics about the server.",
        group: "server",
        args: &[Arg::new("section", T::String).optional().multiple()],
        ..spec("info", -1, info::parse)
    },
    CommandSpec {
        flags: &["loading", "stale", "fast"],
        acl: &["fast"],
        summary: "Returns the server time.",
        group: "server",
        ..spec("time", 1, time::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast"],
        acl: &["admin", "fast", "dangerous"],
        summary: "Returns the replication role.",
        group: "server",
        since: "2.8.12",
        ..spec("role", 1, role::parse)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        acl: &["fast", "transaction"],
        summary: "Starts a transaction.",
        group: "transactions",
        ..spec("multi", 1, multi::parse_multi)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        acl: &["slow", "transaction"],
        summary: "Executes all commands in a transaction.",
        group: "transactions",
        ..spec("exec", 1, multi::parse_exec)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        acl: &["fast", "transaction"],
        summary: "Discards a transaction.",
        group: "transactions",
        ..spec("discard", 1, multi::parse_discard)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: &["fast", "transaction"],
        summary: "Monitors changes to queues to determine the execution of a transaction.",
        group: "transactions",
        args: &[Arg::new("key", T::Key).multiple()],
        ..spec("watch", -2, multi::parse_watch)
    },
    CommandSpec {
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        acl: &["fast", "transaction"],
        summary: "Forgets about watched keys of a transaction.",
        group: "transactions",
        ..spec("unwatch", 1, multi::parse_unwatch)
    },
    CommandSpec {
        flags: &[
            "admin",
            "noscript",
            "loading",
            "stale",
            "no_multi",
            "allow_busy",
        ],
        acl: &["admin", "slow", "dangerous"],
        summary: "Persists everything, wakes blocked clients and shuts the server down.",
        group: "server",
        args: &[Arg::new("save-selector", T::Oneof).optional().with(&[
            Arg::new("nosave", T::PureToken).token("NOSAVE"),
            Arg::new("save", T::PureToken).token("SAVE"),
        ])],
        ..spec("shutdown", -1, shutdown::parse)
    },
    CommandSpec {
        flags: &["write"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: &["keyspace", "write", "slow"],
        key_flags: KEY_WRITE,
        summary: "Deletes whole queues.",
        group: "generic",
        complexity: "O(N) where N is the number of members removed.",
        args: &[Arg::new("key", T::Key).multiple()],
        ..spec("del", -2, keyspace::parse_del)
    },
    CommandSpec {
        flags: &["write", "fast"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: &["keyspace", "write", "fast"],
        key_flags: KEY_WRITE,
        summary: "Deletes whole queues.",
        group: "generic",
        since: "4.0.0",
        complexity: "O(N) where N is the number of members removed.",
        args: &[Arg::new("key", T::Key).multiple()],
        ..spec("unlink", -2, keyspace::parse_del)
    },
    CommandSpec {
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: &["keyspace", "read", "fast"],
        summary: "Counts how many of the given queues exist.",
        group: "generic",
        args: &[Arg::new("key", T::Key).multiple()],
        ..spec("exists", -2, keyspace::parse_exists)
    },
    CommandSpec {
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: &["keyspace", "read", "fast"],
        summary: "Returns the type of a key (delayqueue or none).",
        group: "generic",
        args: &[Arg::new("key", T::Key)],
        ..spec("type", 2, keyspace::parse_type)
    },
    CommandSpec {
        flags: &["readonly"],
        acl: &["keyspace", "read", "slow", "dangerous"],
        summary: "Returns the queue names that match a glob pattern.",
        group: "generic",
        complexity: "O(N) with N the number of queues.",
        args: &[Arg::new("pattern", T::Pattern)],
        ..spec("keys", 2, keyspace::parse_keys)
    },
    CommandSpec {
        flags: &["readonly"],
        acl: &["keyspace", "read", "slow"],
        summary: "Iterates over the queue names.",
        group: "generic",
        since: "2.8.0",
        complexity: "O(1) for every call.",
        args: &[
            Arg::new("cursor", T::Integer),
            Arg::new("pattern", T::Pattern).token("MATCH").optional(),
            Arg::new("count", T::Integer).token("COUNT").optional(),
            Arg::new("type", T::String).token("TYPE").optional(),
        ],
        ..spec("scan", -2, keyspace::parse_scan)
    },
    CommandSpec {
        flags: &["readonly", "fast"],
        acl: &["keyspace", "read", "fast"],
        summary: "Returns the number of queues.",
        group: "server",
        ..spec("dbsize", 1, keyspace::parse_dbsize)
    },
    CommandSpec {
        flags: &["write"],
        acl: &["keyspace", "write", "slow", "dangerous"],
        summary: "Removes every queue.",
        group: "server",
        complexity: "O(N) where N is the total number of members.",
        args: &[Arg::new("flush-type", T::Oneof).optional().with(&[
            Arg::new("async", T::PureToken).token("ASYNC"),
            Arg::new("sync", T::PureToken).token("SYNC"),
        ])],
        ..spec("flushdb", -1, keyspace::parse_flush)
    },
    CommandSpec {
        flags: &["write"],
        acl: &["keyspace", "write", "slow", "dangerous"],
        summary: "Removes every queue.",
        group: "server",
        complexity: "O(N) where N is the total number of members.",
        args: &[Arg::new("flush-type", T::Oneof).optional().with(&[
            Arg::new("async", T::PureToken).token("ASYNC"),
            Arg::new("sync", T::PureToken).token("SYNC"),
        ])],
        ..spec("flushall", -1, keyspace::parse_flush)
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_summary_and_unique_lower_case_name() {
        let mut seen = std::collections::HashSet::new();
        for c in COMMANDS {
            assert!(!c.summary.is_empty(), "{} has no summary", c.name);
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(seen.insert(c.name), "{} twice", c.name);
        }
    }

    #[test]
    fn names_are_found_in_any_case_and_nothing_else_is() {
        for c in COMMANDS {
            let upper = c.name.to_ascii_uppercase();
            let found = lookup_any_case(upper.as_bytes()).map(|s| s.name);
            assert_eq!(found, Some(c.name));
            assert_eq!(
                lookup_any_case(c.name.as_bytes()).map(|s| s.name),
                Some(c.name)
            );
            // A longer name, or the name with a NUL after it, is not it.
            let mut longer = c.name.as_bytes().to_vec();
            longer.push(0);
            assert!(lookup_any_case(&longer).is_none(), "{}", c.name);
            assert!(lookup_any_case(&c.name.as_bytes()[1..]).is_none_or(|s| s.name != c.name));
        }
        assert!(lookup_any_case(b"").is_none());
        assert!(lookup_any_case(b"delaypopx").is_none());
        assert!(lookup_any_case(&[b'a'; 40]).is_none());
    }
}
