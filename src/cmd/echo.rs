//! `ECHO`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// Replies with the message, byte for byte (redis-cli `--pipe` relies on it).
///
/// # Format
///
/// ```text
/// ECHO message
/// ```
#[derive(Debug)]
pub struct Echo {
    pub msg: Bytes,
}

/// The table's parser.
///
/// # Errors
///
/// As [`Echo::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Echo::parse(args)?))
}

impl Echo {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// None beyond arity, which the table checks.
    pub fn parse(args: &mut Args) -> Result<Echo> {
        Ok(Echo {
            msg: args.next_bytes()?,
        })
    }
}

impl ClientCommand for Echo {
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(Reply::Bulk(self.msg.clone()))
    }
}
