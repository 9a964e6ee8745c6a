//! `DELAYRANGE`: inspect a queue in due order.

use bytes::Bytes;

use super::{Args, is};
use crate::engine::core::Core;
use crate::protocol::Reply;
use crate::{Error, Result};

/// Returns members by rank in due order, with ZRANGE's index rules
/// (0-based, inclusive, negative counts from the end).
///
/// # Format
///
/// ```text
/// DELAYRANGE key start stop [WITHSCORES]
/// ```
///
/// With `WITHSCORES`, each member is followed by its due time (Unix ms); in
/// RESP3 the pairs are nested, as Redis does for ZRANGE.
#[derive(Debug)]
pub struct DelayRange {
    pub key: Bytes,
    pub start: i64,
    pub stop: i64,
    pub with_scores: bool,
}

impl DelayRange {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Non-integer indexes or an unknown option.
    pub fn parse(args: &mut Args) -> Result<DelayRange> {
        let key = args.next_key()?;
        let start = args.next_int()?;
        let stop = args.next_int()?;
        let with_scores = match args.try_next() {
            None => false,
            Some(a) if is(&a, "WITHSCORES") => true,
            Some(_) => return Err(Error::Syntax),
        };
        args.finish()?;
        Ok(DelayRange {
            key,
            start,
            stop,
            with_scores,
        })
    }

    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn apply(&self, core: &mut Core) -> Result<Reply> {
        let items = core.range(&self.key, self.start, self.stop)?;
        Ok(if self.with_scores {
            Reply::Pairs(
                items
                    .into_iter()
                    .map(|s| (Reply::Bulk(s.member), Reply::Int(s.meta.due as i64)))
                    .collect(),
            )
        } else {
            Reply::Array(items.into_iter().map(|s| Reply::Bulk(s.member)).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;
    use crate::protocol::Reply;

    #[test]
    fn zrange_index_rules() {
        let (mut core, _clock, _dir) = core_at(1000);
        exec(
            &mut core,
            &["DELAYADD", "q", "30", "c", "10", "a", "20", "b"],
        );
        assert_eq!(
            exec(&mut core, &["DELAYRANGE", "q", "0", "-1"]),
            bulks(&["a", "b", "c"])
        );
        assert_eq!(
            exec(&mut core, &["DELAYRANGE", "q", "-2", "100"]),
            bulks(&["b", "c"])
        );
        assert_eq!(exec(&mut core, &["DELAYRANGE", "q", "2", "1"]), bulks(&[]));
        assert_eq!(
            exec(&mut core, &["DELAYRANGE", "nope", "0", "-1"]),
            bulks(&[])
        );
        assert_eq!(
            exec(&mut core, &["DELAYRANGE", "q", "0", "0", "WITHSCORES"]),
            Reply::Pairs(vec![(Reply::bulk("a"), Reply::Int(1010))])
        );
        assert_eq!(
            exec(&mut core, &["DELAYRANGE", "q", "0", "0", "BOGUS"]),
            Reply::Error("ERR syntax error".into())
        );
    }
}
