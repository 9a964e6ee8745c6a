//! `DELAYTRACE`: what happened to a member (the message trace).

use bytes::Bytes;

use super::{Args, Command, EngineCommand};
use crate::Result;
use crate::engine::core::Core;
use crate::protocol::Reply;

/// Returns the recorded events of a member of a traced queue
/// (`trace-queues`), oldest first, each as `[time-ms, event, detail]`:
/// `time-ms` an integer (Unix ms), `event` one of `added`, `rescheduled`,
/// `due`, `popped`, `leased`, `lease-expired`, `acked`, `dead-lettered`,
/// `removed`, `put-back`, and `detail` `key=value` words such as
/// `due=1700000000000` or `until=1700000030000 delivery=2 by=id=7 ...`.
/// A member never traced, or of a queue never traced, gives an empty array.
///
/// # Format
///
/// ```text
/// DELAYTRACE key member
/// ```
#[derive(Debug)]
pub struct DelayTrace {
    pub key: Bytes,
    pub member: Bytes,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayTrace::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayTrace::parse(args)?))
}

impl DelayTrace {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A queue name that is too long.
    pub fn parse(args: &mut Args) -> Result<DelayTrace> {
        Ok(DelayTrace {
            key: args.next_key()?,
            member: args.next_bytes()?,
        })
    }
}

impl EngineCommand for DelayTrace {
    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        let events = core.trace(&self.key, &self.member)?;
        Ok(Reply::Array(
            events
                .into_iter()
                .map(|e| {
                    Reply::Array(vec![
                        Reply::Int(i64::try_from(e.time).unwrap_or(i64::MAX)),
                        Reply::bulk_static(e.kind.name()),
                        Reply::Bulk(Bytes::from(e.detail)),
                    ])
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;
    use crate::protocol::Reply;

    fn event(time: i64, name: &str, detail: &str) -> Reply {
        Reply::Array(vec![
            Reply::Int(time),
            Reply::bulk(name),
            Reply::bulk(detail),
        ])
    }

    #[test]
    fn replies_the_events_oldest_first_as_time_event_detail() {
        let (mut core, clock, _dir) = core_at(1_000);
        core.set_trace_queues(b"orders:*");
        exec(&mut core, &["DELAYADD", "orders:1", "10", "m"]);
        exec(&mut core, &["DELAYADD", "other", "10", "m"]);
        clock.set_ms(1_010);
        core.tick().unwrap();
        exec(&mut core, &["DELAYPOP", "orders:1", "LEASE", "500"]);
        assert_eq!(
            exec(&mut core, &["DELAYTRACE", "orders:1", "m"]),
            Reply::Array(vec![
                event(1_000, "added", "due=1010"),
                event(1_010, "due", "due=1010"),
                event(1_010, "leased", "until=1510 delivery=1"),
            ])
        );
        assert_eq!(
            exec(&mut core, &["DELAYTRACE", "orders:1", "x"]),
            bulks(&[])
        );
        assert_eq!(exec(&mut core, &["DELAYTRACE", "other", "m"]), bulks(&[]));
        let err = exec(&mut core, &["DELAYTRACE", "orders:1"]);
        assert_eq!(
            err,
            Reply::Error("ERR wrong number of arguments for 'delaytrace' command".into())
        );
    }
}
