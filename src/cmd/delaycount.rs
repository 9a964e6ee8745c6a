//! `DELAYCOUNT`: how many members come due in a window.

use bytes::Bytes;

use super::delayrange::due_window;
use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Counts the members whose due time is within `min`..`max` (ZCOUNT's
/// bounds: Unix ms, `-inf`, `+inf`, `(` for exclusive), leased members by
/// their lease's end. Costs a scan of that window of the time index.
///
/// # Format
///
/// ```text
/// DELAYCOUNT key min max
/// ```
#[derive(Debug)]
pub struct DelayCount {
    pub key: Bytes,
    pub window: (u64, u64),
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayCount::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayCount::parse(args)?))
}

impl DelayCount {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// `ERR min or max is not a float`.
    pub fn parse(args: &mut Args) -> Result<DelayCount> {
        let key = args.next_key()?;
        let window = due_window(&args.next_bytes()?, &args.next_bytes()?)?;
        args.finish()?;
        Ok(DelayCount { key, window })
    }
}

impl EngineCommand for DelayCount {
    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok(Reply::Int(core.count_due(&self.key, self.window)? as i64))
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;
    use crate::protocol::Reply;

    #[test]
    fn counts_members_due_in_a_window_on_both_tiers() {
        let (mut core, _clock, _dir) = core_at(1000);
        // The test core keeps 60 s in memory: the last member is on disk.
        exec(
            &mut core,
            &[
                "DELAYADD", "q", "AT", "1010", "a", "1020", "b", "9000000", "far",
            ],
        );
        assert_eq!(
            exec(&mut core, &["DELAYCOUNT", "q", "-inf", "+inf"]),
            Reply::Int(3)
        );
        assert_eq!(
            exec(&mut core, &["DELAYCOUNT", "q", "(1010", "1020"]),
            Reply::Int(1)
        );
        assert_eq!(
            exec(&mut core, &["DELAYCOUNT", "q", "2000", "+inf"]),
            Reply::Int(1)
        );
        assert_eq!(
            exec(&mut core, &["DELAYCOUNT", "nope", "-inf", "+inf"]),
            Reply::Int(0)
        );
        assert_eq!(
            exec(&mut core, &["DELAYCOUNT", "q", "a", "1"]),
            Reply::Error("ERR min or max is not a float".into())
        );
    }
}
