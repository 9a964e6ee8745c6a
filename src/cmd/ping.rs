//! `PING`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Replies `PONG`, or echoes the message.
///
/// # Format
///
/// ```text
/// PING [message]
/// ```
#[derive(Debug)]
pub struct Ping {
    pub msg: Option<Bytes>,
}

/// The table's parser.
///
/// # Errors
///
/// As [`Ping::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Ping::parse(args)?))
}

impl Ping {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// More than one argument (Redis's arity error).
    pub fn parse(args: &mut Args) -> Result<Ping> {
        if args.remaining() > 1 {
            return Err(Error::WrongArity("ping".into()));
        }
        Ok(Ping {
            msg: args.try_next(),
        })
    }
}

impl ClientCommand for Ping {
    /// The reply (without subscriptions, PING is the same in every
    /// protocol and inside MULTI).
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(match &self.msg {
            Some(m) => Reply::Bulk(m.clone()),
            None => Reply::Simple("PONG"),
        })
    }
}
