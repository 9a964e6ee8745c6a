//! `BDELAYPOP`: block until a member of one of several queues is due.

use bytes::Bytes;

use super::delaypop::{PopShape, pop_reply};
use super::{Args, Blocking, Command, EngineCommand};
use crate::engine::core::{Core, PopOptions, Popped};
use crate::protocol::Reply;
use crate::{Error, Result};

/// BZPOPMIN's shape for delay queues: waits until one of the queues has a
/// due member, removes it and replies `[key, member, due-ms]`; null on
/// timeout.
///
/// # Format
///
/// ```text
/// BDELAYPOP key [key ...] timeout
/// ```
///
/// `timeout` is in seconds, decimals allowed; 0 waits forever.
#[derive(Debug)]
pub struct BDelayPop {
    pub keys: Vec<Bytes>,
    /// Milliseconds to wait; 0 waits forever.
    pub timeout_ms: u64,
}

/// Parses a timeout in seconds (decimals allowed) into milliseconds, with
/// Redis's error texts.
///
/// # Errors
///
/// Not a number, not finite, or negative.
pub fn parse_timeout_secs(b: &[u8]) -> Result<u64> {
    let s = std::str::from_utf8(b).map_err(|_| Error::NotFloatTimeout)?;
    let secs: f64 = s.trim().parse().map_err(|_| Error::NotFloatTimeout)?;
    if !secs.is_finite() || s.trim() != s {
        return Err(Error::NotFloatTimeout);
    }
    if secs < 0.0 {
        return Err(Error::NegativeTimeout);
    }
    let ms = (secs * 1000.0).ceil();
    if ms > 1e15 {
        return Err(Error::NotFloatTimeout);
    }
    Ok(ms as u64)
}

/// The table's parser: a pop that waits on several queues.
///
/// # Errors
///
/// As [`BDelayPop::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    let c = BDelayPop::parse(args)?;
    Ok(Command::Blocking(Blocking {
        keys: c.keys.clone(),
        opts: PopOptions::count(1),
        shape: PopShape::KeyMemberDue,
        timeout_ms: c.timeout_ms,
        now: Box::new(c),
    }))
}

impl BDelayPop {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A bad timeout.
    pub fn parse(args: &mut Args) -> Result<BDelayPop> {
        let mut rest = args.rest();
        let timeout = rest.pop().ok_or(Error::Syntax)?;
        let timeout_ms = parse_timeout_secs(&timeout)?;
        let keys = rest
            .into_iter()
            .map(super::check_key)
            .collect::<Result<Vec<_>>>()?;
        Ok(BDelayPop { keys, timeout_ms })
    }
}

impl EngineCommand for BDelayPop {
    /// Pops without waiting (inside MULTI): the first queue, in argument
    /// order, that has a due member; null if none has.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        self.apply_popped(core).map(|(reply, _)| reply)
    }

    fn apply_popped(&self, core: &mut Core) -> Result<(Reply, Vec<Popped>)> {
        for key in &self.keys {
            let popped = core.pop(key, &PopOptions::count(1))?;
            if !popped.is_empty() {
                let reply = pop_reply(&popped, PopShape::KeyMemberDue, false);
                return Ok((reply, popped));
            }
        }
        Ok((Reply::NullArray, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_like_redis() {
        assert_eq!(parse_timeout_secs(b"0").unwrap(), 0);
        assert_eq!(parse_timeout_secs(b"0.5").unwrap(), 500);
        assert_eq!(parse_timeout_secs(b"2").unwrap(), 2000);
        assert_eq!(
            parse_timeout_secs(b"-1").unwrap_err().reply_text(),
            "ERR timeout is negative"
        );
        assert_eq!(
            parse_timeout_secs(b"abc").unwrap_err().reply_text(),
            "ERR timeout is not a float or out of range"
        );
        assert!(parse_timeout_secs(b"inf").is_err());
    }
}
