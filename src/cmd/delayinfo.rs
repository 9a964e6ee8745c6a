//! `DELAYINFO`: a queue's backlog figures.

use bytes::Bytes;

use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Returns a queue's figures as a map (a flat array in RESP2): `pending`
/// (all members), `ready` (due, not yet popped), `leased`, `dead-lettered`
/// (members moved to a dead-letter queue after too many deliveries),
/// `next-due-ms`
/// (null when nothing is scheduled ahead), `oldest-ready-age-ms` (how long
/// the oldest ready member has waited: consumer lag), and the counters
/// `added`, `popped`, `acked` and `expired-leases` since start.
///
/// # Format
///
/// ```text
/// DELAYINFO key
/// ```
#[derive(Debug)]
pub struct DelayInfo {
    pub key: Bytes,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayInfo::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayInfo::parse(args)?))
}

impl DelayInfo {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A queue name that is too long.
    pub fn parse(args: &mut Args) -> Result<DelayInfo> {
        Ok(DelayInfo {
            key: args.next_key()?,
        })
    }
}

impl EngineCommand for DelayInfo {
    /// Applies the command.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok({
            let info = core.info(&self.key);
            let now = core.now();
            let field = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
            let int = |v: u64| Reply::Int(v as i64);
            Reply::Map(vec![
                field("pending", int(info.pending)),
                field("ready", int(info.ready)),
                field("leased", int(info.leased)),
                field("dead-lettered", int(info.counters.dead_lettered)),
                field("next-due-ms", info.next_due.map_or(Reply::Null, int)),
                field(
                    "oldest-ready-age-ms",
                    int(info.oldest_ready_due.map_or(0, |d| now.saturating_sub(d))),
                ),
                field("added", int(info.counters.added)),
                field("popped", int(info.counters.popped)),
                field("acked", int(info.counters.acked)),
                field("expired-leases", int(info.counters.expired_leases)),
            ])
        })
    }
}
