//! `DELAYADD`: schedule members.

use bytes::Bytes;

use super::{Args, Command, EngineCommand, is};
use crate::engine::core::{AddFlags, Core, MAX_DUE_MS};
use crate::protocol::Reply;
use crate::{Error, Result};

/// Schedules each member to become due `delay` ms from now, or at the Unix
/// time `delay` (ms) with `AT`. A member already in the queue is
/// rescheduled, which also ends a lease on it (a negative acknowledgement
/// with backoff) while keeping its delivery count.
///
/// # Format
///
/// ```text
/// DELAYADD key [NX|XX] [CH] [AT] delay member [delay member ...]
/// ```
///
/// `NX`: only add new members. `XX`: only reschedule existing ones. `CH`:
/// count rescheduled members in the reply too. Replies with the number of
/// members added (plus rescheduled, with `CH`), once the write is stored as
/// `appendfsync` requires.
#[derive(Debug)]
pub struct DelayAdd {
    pub key: Bytes,
    pub flags: AddFlags,
    pub at: bool,
    pub items: Vec<(i64, Bytes)>,
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayAdd::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayAdd::parse(args)?))
}

impl DelayAdd {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Redis's ZADD errors: syntax, NX with XX, non-integer delays; plus
    /// delays out of the representable range.
    pub fn parse(args: &mut Args) -> Result<DelayAdd> {
        let key = args.next_key()?;
        let mut rest = args.rest().into_iter().peekable();
        let mut flags = AddFlags::default();
        let mut at = false;
        while let Some(a) = rest.peek() {
            if is(a, "NX") {
                flags.nx = true;
            } else if is(a, "XX") {
                flags.xx = true;
            } else if is(a, "CH") {
                flags.ch = true;
            } else if is(a, "AT") {
                at = true;
            } else {
                break;
            }
            rest.next();
        }
        if flags.nx && flags.xx {
            return Err(Error::msg(
                "XX and NX options at the same time are not compatible",
            ));
        }
        let rest: Vec<Bytes> = rest.collect();
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err(Error::Syntax);
        }
        let mut items = Vec::with_capacity(rest.len() / 2);
        for pair in rest.chunks_exact(2) {
            let v = super::parse_int(&pair[0])?;
            if v < 0 {
                return Err(Error::msg(if at {
                    "unix time is negative"
                } else {
                    "delay is negative"
                }));
            }
            if v as u64 > MAX_DUE_MS {
                return Err(Error::msg("due time is beyond the year 9999"));
            }
            items.push((v, pair[1].clone()));
        }
        Ok(DelayAdd {
            key,
            flags,
            at,
            items,
        })
    }
}

impl EngineCommand for DelayAdd {
    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error, or a due time beyond the representable range.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        let now = core.now();
        let mut items = Vec::with_capacity(self.items.len());
        for (v, m) in &self.items {
            let due = if self.at { *v as u64 } else { now + *v as u64 };
            if due > MAX_DUE_MS {
                return Err(Error::msg("due time is beyond the year 9999"));
            }
            items.push((due, m.clone()));
        }
        Ok(Reply::Int(core.add(&self.key, &items, self.flags)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::*;

    #[test]
    fn parse_errors_match_redis() {
        assert_eq!(
            err(DelayAdd::parse(&mut args(&["q", "NX", "XX", "1", "a"]))),
            "ERR XX and NX options at the same time are not compatible"
        );
        assert_eq!(
            err(DelayAdd::parse(&mut args(&["q", "1", "a", "2"]))),
            "ERR syntax error"
        );
        assert_eq!(
            err(DelayAdd::parse(&mut args(&["q", "CH"]))),
            "ERR syntax error"
        );
        assert_eq!(
            err(DelayAdd::parse(&mut args(&["q", "1.5", "a"]))),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(DelayAdd::parse(&mut args(&["q", "-1", "a"]))),
            "ERR delay is negative"
        );
        assert_eq!(
            err(DelayAdd::parse(&mut args(&["q", "99999999999999999", "a"]))),
            "ERR due time is beyond the year 9999"
        );
    }

    #[test]
    fn add_reschedule_nx_xx_ch() {
        let (mut core, clock, _dir) = core_at(1_000);
        let run = |core: &mut Core, a: &[&str]| {
            DelayAdd::parse(&mut args(a)).unwrap().apply(core).unwrap()
        };
        assert_eq!(
            run(&mut core, &["q", "100", "a", "200", "b"]),
            Reply::Int(2)
        );
        assert_eq!(run(&mut core, &["q", "100", "a"]), Reply::Int(0));
        assert_eq!(run(&mut core, &["q", "CH", "300", "a"]), Reply::Int(1));
        assert_eq!(
            run(&mut core, &["q", "NX", "5", "a", "5", "c"]),
            Reply::Int(1)
        );
        assert_eq!(run(&mut core, &["q", "XX", "5", "zz"]), Reply::Int(0));
        assert_eq!(core.card(b"q"), 3);
        assert_eq!(core.score(b"q", b"a").unwrap().unwrap().due, 1_300);
        assert_eq!(run(&mut core, &["q", "AT", "5000", "d"]), Reply::Int(1));
        assert_eq!(core.score(b"q", b"d").unwrap().unwrap().due, 5_000);
        drop(clock);
    }
}
