//! Commands: parsing arguments into typed commands, and applying them.
//!
//! Each command lives in its own file as a struct with `parse` (arguments
//! to struct, with Redis's error texts) and `apply`, and has one row in the
//! command [`table`], which names the function that parses it: adding a
//! command is one file and one row.
//!
//! Three kinds of commands:
//! - [`EngineCommand`]s act on queues: `apply` is a function of the engine
//!   [`Core`] and the parsed arguments returning a [`Reply`], with no I/O,
//!   so they are unit tested without a server; consecutive ones of a
//!   pipeline run as one atomic round ([`execute`]).
//! - [`ClientCommand`]s act on the connection ([`ClientState`]) and the
//!   server ([`Shared`]): HELLO, AUTH, CLIENT, CONFIG, INFO, ...
//! - The rest need the session's help: blocking pops wait ([`Blocking`]),
//!   and `MULTI`/`EXEC`/`DISCARD`/`WATCH` drive a [`multi::Transaction`]
//!   (and the client's [`multi::Watches`]).

pub(crate) mod acl;
pub(crate) mod auth;
pub(crate) mod bdelaypop;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod delayack;
pub(crate) mod delayadd;
pub(crate) mod delaycard;
pub(crate) mod delaycount;
pub(crate) mod delaydigest;
pub(crate) mod delayinfo;
pub(crate) mod delaypop;
pub(crate) mod delayrange;
pub(crate) mod delayrem;
pub(crate) mod delayscore;
pub(crate) mod delaytrace;
pub(crate) mod echo;
pub(crate) mod hello;
pub(crate) mod info;
pub(crate) mod keyspace;
pub(crate) mod latency;
#[cfg(test)]
mod model_tests;
pub(crate) mod monitor;
pub(crate) mod multi;
pub(crate) mod ping;
pub(crate) mod quit;
pub(crate) mod readonly;
pub(crate) mod reset;
pub(crate) mod role;
pub(crate) mod select;
pub(crate) mod shutdown;
pub(crate) mod slowlog;
pub(crate) mod stats;
pub mod table;
pub(crate) mod time;

use bytes::Bytes;

use crate::client::{ClientInfo, ClientState};
use crate::engine::Round;
use crate::engine::core::{Core, PopOptions, Popped};
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// A command on queues, run by the engine.
pub trait EngineCommand: std::fmt::Debug + Send + Sync {
    /// Executes the command against the engine state.
    ///
    /// # Errors
    ///
    /// The command's own errors (a storage failure, a wrong argument found
    /// only at run time): the reply is the error.
    fn apply(&self, core: &mut Core) -> Result<Reply>;

    /// Whether the reply may hold many elements. Such a command runs in a
    /// round of its own, and its reply is written before more commands
    /// run, so a client that does not read holds at most one large reply.
    fn may_reply_large(&self) -> bool {
        false
    }

    /// [`EngineCommand::apply`], also returning the members a pop handed
    /// out: the session puts them back if the reply never reaches the
    /// client.
    ///
    /// # Errors
    ///
    /// As [`EngineCommand::apply`].
    fn apply_popped(&self, core: &mut Core) -> Result<(Reply, Vec<Popped>)> {
        self.apply(core).map(|r| (r, Vec::new()))
    }
}

/// Replies with more elements than this are large (see
/// [`EngineCommand::may_reply_large`]).
pub const FEW: usize = 128;

/// A command on the connection or the server.
pub trait ClientCommand: std::fmt::Debug + Send + Sync {
    /// Executes the command. `None`: no reply (SHUTDOWN closes instead).
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply>;
}

/// A pop that waits for a due member (`DELAYPOP ... BLOCK`, `BDELAYPOP`).
#[derive(Debug)]
pub struct Blocking {
    pub keys: Vec<Bytes>,
    pub opts: PopOptions,
    pub shape: delaypop::PopShape,
    /// 0: forever.
    pub timeout_ms: u64,
    /// The same pop without waiting (inside a transaction, as Redis runs
    /// blocking commands there).
    pub now: Box<dyn EngineCommand>,
}

/// A parsed command.
#[derive(Debug)]
pub enum Command {
    Engine(Box<dyn EngineCommand>),
    Client(Box<dyn ClientCommand>),
    Blocking(Blocking),
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`: see [`multi`].
    Transaction(multi::Control),
}

impl Command {
    /// An engine command.
    pub fn engine(c: impl EngineCommand + 'static) -> Command {
        Command::Engine(Box::new(c))
    }

    /// A client command.
    pub fn client(c: impl ClientCommand + 'static) -> Command {
        Command::Client(Box::new(c))
    }
}

/// A command queued for one engine round, in request order.
#[derive(Debug)]
pub(crate) enum Queued {
    /// A queue command, with the call it observes (INFO commandstats, the
    /// slow log, the latency monitor) once it has run.
    Run(Box<dyn EngineCommand>, stats::Call),
    /// A reply computed outside the engine (an error found while queuing, a
    /// client command inside EXEC), kept in its place.
    Ready(Reply),
}

/// Runs queue commands as one round of the engine (atomically) and returns
/// their replies in order, once their effects are durable per
/// `appendfsync`, each with the members it popped (to put back if the reply
/// never reaches the client).
pub(crate) async fn execute(
    shared: &Shared,
    engine: &crate::engine::Engine,
    client: &ClientInfo,
    cmds: Vec<Queued>,
) -> Vec<(Reply, Vec<Popped>)> {
    let n = cmds.len();
    execute_watched(shared, engine, client, Vec::new(), cmds)
        .await
        .unwrap_or_else(|| vec![(Reply::NullArray, Vec::new()); n])
}

/// [`execute`] for `EXEC`: in the same round, first checks that none of
/// the `watched` queues moved from its version and stops watching them;
/// `None` (nothing run) if one did.
pub(crate) async fn execute_watched(
    shared: &Shared,
    engine: &crate::engine::Engine,
    client: &ClientInfo,
    watched: Vec<(Bytes, u64)>,
    cmds: Vec<Queued>,
) -> Option<Vec<(Reply, Vec<Popped>)>> {
    let n = cmds.len();
    // Each command's call, observed after the round: the engine lock is
    // held for the commands only, and each is timed there.
    let mut calls = Vec::with_capacity(n);
    let cmds: Vec<std::result::Result<Box<dyn EngineCommand>, Reply>> = cmds
        .into_iter()
        .map(|c| match c {
            Queued::Run(c, call) => {
                calls.push(Some(call));
                Ok(c)
            }
            Queued::Ready(r) => {
                calls.push(None);
                Err(r)
            }
        })
        .collect();
    let run = |core: &mut Core| {
        if !watched.is_empty() {
            let intact = core.watch_intact(&watched);
            let keys: Vec<Bytes> = watched.into_iter().map(|(k, _)| k).collect();
            core.unwatch(&keys);
            if !intact {
                return None;
            }
        }
        // The message trace records who popped, acked or removed.
        if core.tracing() {
            core.set_actor(Some(client.actor()));
        }
        let out = cmds
            .into_iter()
            .map(|c| match c {
                Ok(c) => {
                    let start = std::time::Instant::now();
                    let (r, popped) = c
                        .apply_popped(core)
                        .unwrap_or_else(|e| (Reply::from(e), Vec::new()));
                    (r, popped, stats::elapsed_ns(start))
                }
                Err(r) => (r, Vec::new(), 0),
            })
            .collect::<Vec<_>>();
        core.set_actor(None);
        Some(out)
    };
    let ran = |out: Vec<(Reply, Vec<Popped>, u64)>| {
        out.into_iter()
            .zip(&calls)
            .map(|((r, popped, ns), call)| {
                if let Some(call) = call {
                    stats::observe(shared, call, client, ns, r.is_error());
                }
                (r, popped)
            })
            .collect::<Vec<_>>()
    };
    match engine.run(run).await {
        Round::Durable(out) => out.map(ran),
        // Not durable: no success may be acknowledged (nor anything put
        // back: the store takes no more writes); errors the commands gave
        // themselves are kept, being more precise.
        Round::NotDurable(out, e) => {
            let err = Reply::from(e);
            out.map(ran).map(|replies| {
                replies
                    .into_iter()
                    .map(|(r, _)| (if r.is_error() { r } else { err.clone() }, Vec::new()))
                    .collect()
            })
        }
        Round::Failed(e) => Some(vec![(Reply::from(e), Vec::new()); n]),
    }
}

/// Parses a request into a command: looks the name up in the command table,
/// checks the arity, then lets the command parse its arguments.
///
/// # Errors
///
/// Unknown command, wrong arity, or the command's own argument errors.
pub fn parse(args: Vec<Bytes>) -> Result<Command> {
    let spec = lookup_checked(&args)?;
    parse_spec(spec, args).0
}

/// Finds the command named by the first argument and checks its arity (what
/// Redis checks before authentication).
///
/// # Errors
///
/// Unknown command or wrong number of arguments.
pub fn lookup_checked(args: &[Bytes]) -> Result<&'static table::CommandSpec> {
    let Some(name) = args.first() else {
        return Err(Error::Syntax);
    };
    let Some(spec) = table::lookup_any_case(name) else {
        return Err(unknown_command(args));
    };
    if !spec.arity_ok(args.len()) {
        return Err(Error::WrongArity(spec.name.to_string()));
    }
    // Redis finds a container's subcommand and checks its arity here too,
    // before authentication and before MULTI queues it.
    if spec.name == "cluster" {
        cluster::check_subcommand(args)?;
    }
    Ok(spec)
}

/// A container command's subcommand (`SLOWLOG GET`, `LATENCY RESET`, ...).
pub(crate) struct Subcommand {
    /// As sent.
    pub(crate) raw: Bytes,
    /// In lower case.
    pub(crate) name: String,
    /// How many arguments follow it.
    pub(crate) rest: usize,
    container: &'static str,
}

impl Subcommand {
    /// Reads the subcommand of `container` from `args`.
    ///
    /// # Errors
    ///
    /// No subcommand.
    pub(crate) fn read(args: &mut Args, container: &'static str) -> Result<Subcommand> {
        let raw = args.next_bytes()?;
        let name = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        Ok(Subcommand {
            raw,
            name,
            rest: args.remaining(),
            container,
        })
    }

    /// Redis's error for a subcommand the container does not have.
    pub(crate) fn unknown(&self) -> Error {
        Error::UnknownSubcommand {
            command: self.container.to_ascii_uppercase(),
            sub: String::from_utf8_lossy(&self.raw).into_owned(),
        }
    }

    /// Checks that exactly `n` arguments follow it.
    ///
    /// # Errors
    ///
    /// Redis's `wrong number of arguments for 'container|sub'`.
    pub(crate) fn exact(&self, n: usize) -> Result<()> {
        if self.rest == n {
            Ok(())
        } else {
            Err(Error::WrongArity(format!(
                "{}|{}",
                self.container, self.name
            )))
        }
    }
}

/// Parses the arguments of a command already looked up, with the parser its
/// table row names: the command, or its own argument error; and the
/// arguments, handed back.
pub fn parse_spec(
    spec: &'static table::CommandSpec,
    args: Vec<Bytes>,
) -> (Result<Command>, Vec<Bytes>) {
    let mut p = Args::new(args);
    let parsed = p.next_bytes().and_then(|_name| (spec.parse)(&mut p));
    (parsed, p.into_inner())
}

/// Redis's text for an unknown command: the name cut at 128 characters,
/// then arguments, each quoted and followed by a space, added while the
/// list is shorter than 128 characters (each cut to what is left).
pub fn unknown_command(args: &[Bytes]) -> Error {
    let name: String = String::from_utf8_lossy(&args[0])
        .chars()
        .take(128)
        .collect();
    let mut shown = Vec::new();
    let mut len = 0usize;
    for a in &args[1..] {
        if len >= 128 {
            break;
        }
        let s: String = String::from_utf8_lossy(a).chars().take(128 - len).collect();
        len += s.len() + 3;
        shown.push(s);
    }
    Error::UnknownCommand { name, args: shown }
}

/// A cursor over a command's arguments. It lends them (a clone of a
/// `Bytes` is a reference count) and gives them back whole after parsing
/// ([`Args::into_inner`]): the slow log keeps a call's arguments without
/// copying the list.
#[derive(Debug)]
pub struct Args {
    items: Vec<Bytes>,
    next: usize,
}

impl Args {
    /// Wraps the arguments.
    pub fn new(args: Vec<Bytes>) -> Args {
        Args {
            items: args,
            next: 0,
        }
    }

    /// All the arguments, read or not.
    pub fn into_inner(self) -> Vec<Bytes> {
        self.items
    }

    /// Arguments left.
    pub fn remaining(&self) -> usize {
        self.items.len().saturating_sub(self.next)
    }

    /// The next argument.
    ///
    /// # Errors
    ///
    /// [`Error::Syntax`] if there is none.
    pub fn next_bytes(&mut self) -> Result<Bytes> {
        self.try_next().ok_or(Error::Syntax)
    }

    /// The next argument, if any.
    pub fn try_next(&mut self) -> Option<Bytes> {
        let b = self.items.get(self.next)?.clone();
        self.next += 1;
        Some(b)
    }

    /// The next argument as a queue name.
    ///
    /// # Errors
    ///
    /// [`Error::Syntax`] if there is none; an error if it is too long.
    pub fn next_key(&mut self) -> Result<Bytes> {
        check_key(self.next_bytes()?)
    }

    /// The next argument as an integer.
    ///
    /// # Errors
    ///
    /// [`Error::NotInteger`] if it is not one.
    pub fn next_int(&mut self) -> Result<i64> {
        parse_int(&self.next_bytes()?)
    }

    /// The next argument as text (lossy).
    ///
    /// # Errors
    ///
    /// [`Error::Syntax`] if there is none.
    pub fn next_string(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.next_bytes()?).into_owned())
    }

    /// Fails if arguments are left over.
    ///
    /// # Errors
    ///
    /// [`Error::Syntax`].
    pub fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Error::Syntax)
        }
    }

    /// The rest of the arguments.
    pub fn rest(&mut self) -> Vec<Bytes> {
        let rest = self.items.get(self.next..).unwrap_or_default().to_vec();
        self.next = self.items.len();
        rest
    }
}

/// Longest queue name: every store key that holds a name must fit the
/// LSM's key limit.
pub const MAX_KEY_LEN: usize = crate::engine::store::MAX_QUEUE_NAME;

/// Checks that a queue name fits the store's key layout.
///
/// # Errors
///
/// A name longer than [`MAX_KEY_LEN`].
pub fn check_key(key: Bytes) -> Result<Bytes> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::msg(format!(
            "queue name is too long ({} bytes, the limit is {MAX_KEY_LEN})",
            key.len()
        )));
    }
    Ok(key)
}

/// Parses a signed 64-bit integer. Unlike Redis's strict parser, leading
/// zeros are accepted: redis-benchmark's `__rand_int__` sends `000000054321`.
///
/// # Errors
///
/// [`Error::NotInteger`] for anything that is not an integer in range.
pub fn parse_int(b: &[u8]) -> Result<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 64 {
        return Err(Error::NotInteger);
    }
    let mut v: i128 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(Error::NotInteger);
        }
        v = v * 10 + i128::from(c - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return Err(Error::NotInteger);
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).map_err(|_| Error::NotInteger)
}

/// Case-insensitive comparison of an argument with a keyword.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Helpers for the commands' unit tests.
#[cfg(test)]
pub mod testing {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{Args, Command, parse};
    use crate::engine::clock::ManualClock;
    use crate::engine::core::Core;
    use crate::engine::store::Store;
    use crate::protocol::Reply;

    /// Arguments from strings.
    pub fn args(a: &[&str]) -> Args {
        Args::new(
            a.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        )
    }

    /// The reply text of an error result.
    pub fn err<T: std::fmt::Debug>(r: crate::Result<T>) -> String {
        r.unwrap_err().reply_text()
    }

    /// An engine over a fresh store, with a manual clock at `ms`.
    pub fn core_at(ms: u64) -> (Core, Arc<ManualClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(ms));
        let store = Store::open(dir.path()).unwrap();
        let mut core = Core::load(store, clock.clone(), 60_000).unwrap();
        core.tick().unwrap();
        (core, clock, dir)
    }

    /// Parses and applies an engine command.
    pub fn exec(core: &mut Core, a: &[&str]) -> Reply {
        let args = a
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        match parse(args) {
            Ok(Command::Engine(c)) => c.apply(core).unwrap_or_else(Reply::from),
            Ok(Command::Blocking(b)) => b.now.apply(core).unwrap_or_else(Reply::from),
            Ok(other) => panic!("not an engine command: {other:?}"),
            Err(e) => Reply::from(e),
        }
    }

    /// An array of bulk strings.
    pub fn bulks(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(Reply::bulk).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<Bytes> {
        s.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn integers_accept_leading_zeros_and_reject_junk() {
        assert_eq!(parse_int(b"000000054321").unwrap(), 54321);
        assert_eq!(parse_int(b"-7").unwrap(), -7);
        assert_eq!(parse_int(b"9223372036854775807").unwrap(), i64::MAX);
        assert_eq!(parse_int(b"-9223372036854775808").unwrap(), i64::MIN);
        for bad in ["", "-", "1.5", "12a", "9223372036854775808", " 1"] {
            assert!(parse_int(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        let e = parse(args(&["FOO", "a", "b"])).unwrap_err();
        assert_eq!(
            e.reply_text(),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        let e = parse(args(&["nope"])).unwrap_err();
        assert_eq!(
            e.reply_text(),
            "ERR unknown command 'nope', with args beginning with: "
        );
    }

    #[test]
    fn arity_errors_name_the_command_in_lower_case() {
        let e = parse(args(&["PING", "a", "b"])).unwrap_err();
        assert_eq!(
            e.reply_text(),
            "ERR wrong number of arguments for 'ping' command"
        );
        let e = parse(args(&["DELAYADD", "q"])).unwrap_err();
        assert_eq!(
            e.reply_text(),
            "ERR wrong number of arguments for 'delayadd' command"
        );
    }
}
