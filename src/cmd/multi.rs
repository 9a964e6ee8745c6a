//! `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH` (and `RESET`, which also
//! ends a transaction): transactions. The session keeps the
//! [`Transaction`] of its client and hands it to these functions.
//!
//! After `MULTI` a client's commands are queued (each answered `+QUEUED`);
//! `EXEC` runs the queue as one engine round, atomically: no other client's
//! command runs in between. As in Redis, a command that cannot be queued
//! (unknown, wrong arity, not allowed in a transaction) makes `EXEC` answer
//! `-EXECABORT`, while a command whose arguments are wrong is queued and its
//! error is its element of `EXEC`'s reply. Blocking pops inside a
//! transaction do not wait.
//!
//! `WATCH` records the version of each queue (see the engine's
//! `core/watch.rs` for what touches a queue); `EXEC` compares them in the
//! same engine round that runs the queued commands, so no write can slip
//! between the check and the run, and answers a null array without running
//! anything if one moved. `EXEC`, `DISCARD`, `UNWATCH`, `RESET` and the
//! client going away stop watching. Client commands queued in a transaction
//! (CLIENT, CONFIG, INFO, ...) run after the round, once it is known that
//! the transaction runs; their replies keep their places.

use bytes::Bytes;

use super::stats::Call;
use super::{Args, ClientCommand, Command, Queued, execute_watched};
use crate::client::ClientState;
use crate::engine::Engine;
use crate::engine::Popped;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// A transaction control command.
///
/// # Format
///
/// ```text
/// MULTI
/// EXEC
/// DISCARD
/// WATCH key [key ...]
/// UNWATCH
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Multi,
    Exec,
    Discard,
    Watch(Vec<Bytes>),
    Unwatch,
    /// `RESET`: discards the transaction, then resets the client.
    Reset,
}

/// Parses `MULTI`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_multi(_: &mut Args) -> Result<Command> {
    Ok(Command::Transaction(Control::Multi))
}

/// Parses `EXEC`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_exec(_: &mut Args) -> Result<Command> {
    Ok(Command::Transaction(Control::Exec))
}

/// Parses `DISCARD`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_discard(_: &mut Args) -> Result<Command> {
    Ok(Command::Transaction(Control::Discard))
}

/// Parses `WATCH key [key ...]`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_watch(args: &mut Args) -> Result<Command> {
    Ok(Command::Transaction(Control::Watch(args.rest())))
}

/// Parses `UNWATCH`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_unwatch(_: &mut Args) -> Result<Command> {
    Ok(Command::Transaction(Control::Unwatch))
}

/// The commands queued since `MULTI`.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Commands with their calls, or the argument error each will answer
    /// at `EXEC`.
    queued: Vec<Result<(Command, Call)>>,
    /// A command failed to queue: `EXEC` aborts.
    failed: bool,
}

/// The queues a client watches, with the version each had when watched.
/// Dropping it (the client went away) stops watching them.
#[derive(Default)]
pub struct Watches {
    /// Set by the first `WATCH`: the engine that keeps the versions.
    engine: Option<Engine>,
    keys: Vec<(Bytes, u64)>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").field("keys", &self.keys).finish()
    }
}

impl Watches {
    /// Starts watching `keys`; a key already watched keeps the version it
    /// was first watched at, as in Redis.
    fn add(&mut self, engine: &Engine, mut keys: Vec<Bytes>) {
        keys.retain(|k| !self.keys.iter().any(|(w, _)| w == k));
        let mut fresh: Vec<Bytes> = Vec::with_capacity(keys.len());
        for k in keys {
            if !fresh.contains(&k) {
                fresh.push(k);
            }
        }
        if fresh.is_empty() {
            return;
        }
        let versions = engine.watch(&fresh);
        self.engine = Some(engine.clone());
        self.keys.extend(fresh.into_iter().zip(versions));
    }

    /// Hands the watched keys over to `EXEC`, whose round stops watching them.
    fn take(&mut self) -> Vec<(Bytes, u64)> {
        std::mem::take(&mut self.keys)
    }

    /// Stops watching everything.
    pub fn clear(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let keys: Vec<Bytes> = self.take().into_iter().map(|(k, _)| k).collect();
        if let Some(engine) = &self.engine {
            engine.unwatch(&keys);
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether `name` (lower case) controls the transaction rather than being
/// queued in it.
pub fn is_control(name: &str) -> bool {
    matches!(
        name,
        "multi" | "exec" | "discard" | "watch" | "unwatch" | "quit" | "reset"
    )
}

/// Queues a command with its call (or its argument error, answered at
/// `EXEC`).
pub(crate) fn queue(tx: &mut Transaction, parsed: Result<(Command, Call)>) -> Reply {
    tx.queued.push(parsed);
    Reply::Simple("QUEUED")
}

/// Marks the transaction as failed (an error found before parsing: unknown
/// command, wrong arity, a command not allowed inside MULTI).
pub fn fail(tx: Option<&mut Transaction>) {
    if let Some(tx) = tx {
        tx.failed = true;
    }
}

/// Runs a transaction control command. The members `EXEC`'s pops hand out
/// are added to `popped`.
pub async fn apply(
    control: Control,
    transaction: &mut Option<Transaction>,
    shared: &Shared,
    client: &mut ClientState,
    popped: &mut Vec<Popped>,
) -> Reply {
    match control {
        Control::Multi => {
            if transaction.is_some() {
                return Reply::from(Error::msg("MULTI calls can not be nested"));
            }
            *transaction = Some(Transaction::default());
            client.info.set_in_multi(true);
            Reply::OK
        }
        Control::Discard => match transaction.take() {
            Some(_) => {
                client.watches.clear();
                client.info.set_in_multi(false);
                Reply::OK
            }
            None => Reply::from(Error::msg("DISCARD without MULTI")),
        },
        Control::Exec => match transaction.take() {
            Some(tx) => exec(tx, shared, client, popped).await,
            None => Reply::from(Error::msg("EXEC without MULTI")),
        },
        Control::Reset => {
            *transaction = None;
            client.watches.clear();
            client.info.set_in_multi(false);
            super::reset::Reset
                .apply(shared, client)
                .unwrap_or(Reply::Simple("RESET"))
        }
        Control::Watch(keys) => {
            if transaction.is_some() {
                Reply::from(Error::msg("WATCH inside MULTI is not allowed"))
            } else {
                let engine = client.engine.clone();
                client.watches.add(&engine, keys);
                Reply::OK
            }
        }
        Control::Unwatch => {
            client.watches.clear();
            Reply::OK
        }
    }
}

/// `EXEC`: checks the watched queues and runs the queued commands in one
/// engine round.
async fn exec(
    tx: Transaction,
    shared: &Shared,
    client: &mut ClientState,
    popped: &mut Vec<Popped>,
) -> Reply {
    client.info.set_in_multi(false);
    if tx.failed {
        client.watches.clear();
        return Reply::from(Error::Coded(
            "EXECABORT",
            "Transaction discarded because of previous errors.".into(),
        ));
    }
    let mut round = Vec::with_capacity(tx.queued.len());
    let mut later = Vec::new();
    for (i, c) in tx.queued.into_iter().enumerate() {
        round.push(match c {
            Err(e) => Queued::Ready(Reply::from(e)),
            Ok((Command::Engine(c), call)) => Queued::Run(c, call),
            // Inside EXEC a blocking pop runs at once, as Redis runs it.
            Ok((Command::Blocking(b), call)) => Queued::Run(b.now, call),
            Ok((Command::Client(c), call)) => {
                later.push((i, c, call));
                Queued::Ready(Reply::OK)
            }
            // Controls are never queued.
            Ok((Command::Transaction(_), _)) => Queued::Ready(Reply::OK),
        });
    }
    let watched = client.watches.take();
    let engine = client.engine.clone();
    let Some(ran) = execute_watched(shared, &engine, &client.info, watched, round).await else {
        return Reply::NullArray;
    };
    let mut replies = Vec::with_capacity(ran.len());
    for (r, p) in ran {
        replies.push(r);
        popped.extend(p);
    }
    for (i, c, call) in later {
        if let Some(slot) = replies.get_mut(i) {
            let start = std::time::Instant::now();
            *slot = super::stats::apply_client(c.as_ref(), &call, shared, client, start)
                .unwrap_or(Reply::OK);
        }
    }
    Reply::Array(replies)
}
