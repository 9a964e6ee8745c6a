//! `ECHO`.

use bytes::Bytes;

use super::Args;
use crate::Result;
use crate::protocol::Reply;

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

    /// The reply.
    pub fn apply(&self) -> Reply {
        Reply::Bulk(self.msg.clone())
    }
}
