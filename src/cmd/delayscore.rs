//! `DELAYSCORE`: a member's due time.

use bytes::Bytes;

use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Returns a member's due time in Unix ms (for a leased member, when its
/// lease runs out), or null if it is not in the queue.
///
/// # Format
///
/// ```text
/// DELAYSCORE key member
/// ```
#[derive(Debug)]
pub struct DelayScore {
    pub key: Bytes,
    pub member: Bytes,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayScore::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayScore::parse(args)?))
}

impl DelayScore {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A queue name that is too long.
    pub fn parse(args: &mut Args) -> Result<DelayScore> {
        Ok(DelayScore {
            key: args.next_key()?,
            member: args.next_bytes()?,
        })
    }
}

impl EngineCommand for DelayScore {
    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok(match core.score(&self.key, &self.member)? {
            Some(m) => Reply::Int(m.due as i64),
            None => Reply::Null,
        })
    }
}
