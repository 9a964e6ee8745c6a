//! `DELAYREM`: cancel members.

use bytes::Bytes;

use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Cancels scheduled members, leased or not.
///
/// # Format
///
/// ```text
/// DELAYREM key member [member ...]
/// ```
///
/// Replies with the number of members removed.
#[derive(Debug)]
pub struct DelayRem {
    pub key: Bytes,
    pub members: Vec<Bytes>,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayRem::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayRem::parse(args)?))
}

impl DelayRem {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A queue name that is too long.
    pub fn parse(args: &mut Args) -> Result<DelayRem> {
        Ok(DelayRem {
            key: args.next_key()?,
            members: args.rest(),
        })
    }
}

impl EngineCommand for DelayRem {
    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok(Reply::Int(core.remove(&self.key, &self.members, false)?))
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;
    use crate::protocol::Reply;

    #[test]
    fn removes_only_existing_members() {
        let (mut core, _clock, _dir) = core_at(0);
        exec(&mut core, &["DELAYADD", "q", "10", "a", "20", "b"]);
        assert_eq!(
            exec(&mut core, &["DELAYREM", "q", "a", "zz", "a"]),
            Reply::Int(1)
        );
        assert_eq!(exec(&mut core, &["DELAYREM", "nope", "a"]), Reply::Int(0));
        assert_eq!(exec(&mut core, &["DELAYCARD", "q"]), Reply::Int(1));
        assert_eq!(exec(&mut core, &["DELAYREM", "q", "b"]), Reply::Int(1));
        assert_eq!(exec(&mut core, &["EXISTS", "q"]), Reply::Int(0));
    }
}
