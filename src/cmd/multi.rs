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

use bytes::Bytes;

use super::{Args, ClientCommand, Command, Queued, execute};
use crate::client::ClientState;
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
    /// Commands, or the argument error each will answer at `EXEC`.
    queued: Vec<Result<Command>>,
    /// A command failed to queue: `EXEC` aborts.
    failed: bool,
}

/// Whether `name` (lower case) controls the transaction rather than being
/// queued in it.
pub fn is_control(name: &str) -> bool {
    matches!(
        name,
        "multi" | "exec" | "discard" | "watch" | "unwatch" | "quit" | "reset"
    )
}

/// Queues a command (or its argument error, answered at `EXEC`).
pub fn queue(tx: &mut Transaction, parsed: Result<Command>) -> Reply {
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
            client.info.set_in_multi(false);
            super::reset::Reset
                .apply(shared, client)
                .unwrap_or(Reply::Simple("RESET"))
        }
        Control::Watch(_) => {
            if transaction.is_some() {
                Reply::from(Error::msg("WATCH inside MULTI is not allowed"))
            } else {
                Reply::from(Error::msg("WATCH is not supported by delayd"))
            }
        }
        Control::Unwatch => Reply::OK,
    }
}

/// `EXEC`: runs the queued commands as one engine round.
async fn exec(
    tx: Transaction,
    shared: &Shared,
    client: &mut ClientState,
    popped: &mut Vec<Popped>,
) -> Reply {
    client.info.set_in_multi(false);
    if tx.failed {
        return Reply::from(Error::Coded(
            "EXECABORT",
            "Transaction discarded because of previous errors.".into(),
        ));
    }
    let mut round = Vec::with_capacity(tx.queued.len());
    for c in tx.queued {
        round.push(match c {
            Err(e) => Queued::Ready(Reply::from(e)),
            Ok(Command::Engine(c)) => Queued::Run(c),
            Ok(Command::Blocking(b)) => Queued::Run(b.now),
            // Client commands run in order before the round; their replies
            // keep their places.
            Ok(Command::Client(c)) => Queued::Ready(c.apply(shared, client).unwrap_or(Reply::OK)),
            // Controls are never queued.
            Ok(Command::Transaction(_)) => Queued::Ready(Reply::OK),
        });
    }
    let mut replies = Vec::with_capacity(round.len());
    for (r, p) in execute(&shared.engine, &client.info, round).await {
        replies.push(r);
        popped.extend(p);
    }
    Reply::Array(replies)
}
