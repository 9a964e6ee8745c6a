//! `DELAYCARD`: the size of a queue.

use bytes::Bytes;

use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Returns the number of members in the queue, leased ones included; 0 for
/// a queue that does not exist. O(1).
///
/// # Format
///
/// ```text
/// DELAYCARD key
/// ```
#[derive(Debug)]
pub struct DelayCard {
    pub key: Bytes,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayCard::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayCard::parse(args)?))
}

impl DelayCard {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A queue name that is too long.
    pub fn parse(args: &mut Args) -> Result<DelayCard> {
        Ok(DelayCard {
            key: args.next_key()?,
        })
    }
}

impl EngineCommand for DelayCard {
    /// Applies the command.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok(Reply::Int(core.card(&self.key) as i64))
    }
}
