//! `DELAYACK`: acknowledge leased members.

use bytes::Bytes;

use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Removes members that were handed out under a lease (and not rescheduled
/// since): the consumer finished with them. Members not under lease are left
/// alone, so a late acknowledgement cannot remove a member that was
/// rescheduled meanwhile.
///
/// # Format
///
/// ```text
/// DELAYACK key member [member ...]
/// ```
///
/// Replies with the number of members removed.
#[derive(Debug)]
pub struct DelayAck {
    pub key: Bytes,
    pub members: Vec<Bytes>,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayAck::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayAck::parse(args)?))
}

impl DelayAck {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A queue name that is too long.
    pub fn parse(args: &mut Args) -> Result<DelayAck> {
        Ok(DelayAck {
            key: args.next_key()?,
            members: args.rest(),
        })
    }
}

impl EngineCommand for DelayAck {
    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok(Reply::Int(core.remove(&self.key, &self.members, true)?))
    }
}
