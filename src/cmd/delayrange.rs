//! `DELAYRANGE`: inspect a queue in due order.

use bytes::Bytes;

use super::{Args, Command, EngineCommand, is, parse_int};
use crate::engine::core::Core;
use crate::protocol::Reply;
use crate::{Error, Result};

/// Returns members in due order, with ZRANGE's rules since Redis 6.2: by
/// rank (0-based, inclusive, negative counts from the end), or with
/// `BYSCORE` by due time.
///
/// # Format
///
/// ```text
/// DELAYRANGE key start stop [BYSCORE] [REV] [LIMIT offset count] [WITHSCORES]
/// ```
///
/// With `BYSCORE`, `start` and `stop` are due times in Unix ms (`-inf`,
/// `+inf`, and `(` for an exclusive bound); with `REV` the order is latest
/// first and, as in ZRANGE, `start` is the upper bound. `LIMIT` needs
/// `BYSCORE`. Either way it is one range scan of the queue's time index:
/// O(log n + offset + output), for members in memory and on disk alike.
/// With `WITHSCORES`, each member is followed by its due time (Unix ms); in
/// RESP3 the pairs are nested, as Redis does for ZRANGE.
#[derive(Debug)]
pub struct DelayRange {
    pub key: Bytes,
    pub by: RangeBy,
    pub rev: bool,
    pub with_scores: bool,
}

/// What `start` and `stop` mean.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeBy {
    /// Ranks.
    Rank { start: i64, stop: i64 },
    /// Due times, inclusive (empty when `min > max`), and `LIMIT`.
    Due {
        window: (u64, u64),
        offset: usize,
        count: usize,
    },
}

/// The table's parser: arguments to a command.
///
/// # Errors
///
/// As [`DelayRange::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(DelayRange::parse(args)?))
}

impl DelayRange {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Redis's errors for ZRANGE: bad indexes or bounds, `LIMIT` without
    /// `BYSCORE`, an unknown option.
    pub fn parse(args: &mut Args) -> Result<DelayRange> {
        let key = args.next_key()?;
        let start = args.next_bytes()?;
        let stop = args.next_bytes()?;
        let (mut by_due, mut rev, mut with_scores, mut limit) = (false, false, false, None);
        while let Some(opt) = args.try_next() {
            if is(&opt, "BYSCORE") {
                by_due = true;
            } else if is(&opt, "REV") {
                rev = true;
            } else if is(&opt, "WITHSCORES") {
                with_scores = true;
            } else if is(&opt, "LIMIT") {
                let offset = args.next_int()?;
                let count = args.next_int()?;
                limit = Some((offset, count));
            } else {
                return Err(Error::Syntax);
            }
        }
        let by = if by_due {
            let (low, high) = if rev {
                (&stop, &start)
            } else {
                (&start, &stop)
            };
            // As ZRANGE: a negative offset gives nothing, a negative count
            // everything from the offset.
            let (offset, count) = match limit {
                None => (0, usize::MAX),
                Some((o, _)) if o < 0 => (0, 0),
                Some((o, c)) => (
                    usize::try_from(o).unwrap_or(usize::MAX),
                    usize::try_from(c).unwrap_or(usize::MAX),
                ),
            };
            RangeBy::Due {
                window: due_window(low, high)?,
                offset,
                count,
            }
        } else {
            if limit.is_some() {
                return Err(Error::msg(
                    "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
                ));
            }
            RangeBy::Rank {
                start: parse_int(&start)?,
                stop: parse_int(&stop)?,
            }
        };
        Ok(DelayRange {
            key,
            by,
            rev,
            with_scores,
        })
    }
}

impl EngineCommand for DelayRange {
    fn may_reply_large(&self) -> bool {
        match self.by {
            RangeBy::Rank { start, stop } => {
                (start < 0) != (stop < 0) || stop.saturating_sub(start) >= super::FEW as i64
            }
            RangeBy::Due { count, .. } => count > super::FEW,
        }
    }

    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        let items = match self.by {
            RangeBy::Rank { start, stop } => core.range(&self.key, start, stop, self.rev)?,
            RangeBy::Due {
                window,
                offset,
                count,
            } => core.range_by_due(&self.key, window, self.rev, offset, count)?,
        };
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

/// One end of a due-time window, as ZRANGEBYSCORE writes it: a number
/// (Unix ms, decimals allowed), `-inf`/`+inf`, and `(` for exclusive.
fn bound(arg: &[u8]) -> Result<(f64, bool)> {
    let bad = || Error::msg("min or max is not a float");
    let (text, exclusive) = match arg.strip_prefix(b"(") {
        Some(rest) => (rest, true),
        None => (arg, false),
    };
    let text = std::str::from_utf8(text).map_err(|_| bad())?;
    let v = match text.to_ascii_lowercase().as_str() {
        "-inf" => f64::NEG_INFINITY,
        "+inf" | "inf" => f64::INFINITY,
        t => t.parse::<f64>().map_err(|_| bad())?,
    };
    if v.is_nan() {
        return Err(bad());
    }
    Ok((v, exclusive))
}

/// Due times from `min` to `max` (ZRANGEBYSCORE bounds) as an inclusive
/// window of whole milliseconds; `min > max` when it holds none.
///
/// # Errors
///
/// `ERR min or max is not a float`.
pub fn due_window(min: &[u8], max: &[u8]) -> Result<(u64, u64)> {
    let (lo, lo_ex) = bound(min)?;
    let (hi, hi_ex) = bound(max)?;
    // The smallest whole ms inside the lower bound, the largest inside the
    // upper one (casts saturate: -inf to 0, +inf to u64::MAX).
    let lo = if lo_ex { lo.floor() + 1.0 } else { lo.ceil() };
    let hi = if hi_ex { hi.ceil() - 1.0 } else { hi.floor() };
    if hi < 0.0 || lo > hi {
        return Ok((1, 0));
    }
    Ok((lo.max(0.0) as u64, hi as u64))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;
    use crate::engine::core::Core;
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

    #[test]
    fn byscore_rev_and_limit_follow_zrange() {
        let (mut core, _clock, _dir) = core_at(1000);
        exec(
            &mut core,
            &[
                "DELAYADD", "q", "AT", "30", "c", "10", "a", "20", "b", "40", "d",
            ],
        );
        let range = |core: &mut Core, a: &[&str]| {
            let mut v = vec!["DELAYRANGE", "q"];
            v.extend_from_slice(a);
            exec(core, &v)
        };
        assert_eq!(
            range(&mut core, &["20", "30", "BYSCORE"]),
            bulks(&["b", "c"])
        );
        assert_eq!(
            range(&mut core, &["(20", "+inf", "BYSCORE"]),
            bulks(&["c", "d"])
        );
        assert_eq!(
            range(&mut core, &["-inf", "(30", "BYSCORE"]),
            bulks(&["a", "b"])
        );
        assert_eq!(
            range(&mut core, &["19.5", "20.5", "BYSCORE"]),
            bulks(&["b"])
        );
        assert_eq!(
            range(
                &mut core,
                &["+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2"]
            ),
            bulks(&["c", "b"])
        );
        assert_eq!(
            range(&mut core, &["-inf", "+inf", "BYSCORE", "LIMIT", "1", "-1"]),
            bulks(&["b", "c", "d"])
        );
        assert_eq!(
            range(&mut core, &["-inf", "+inf", "BYSCORE", "LIMIT", "-1", "5"]),
            bulks(&[])
        );
        assert_eq!(range(&mut core, &["30", "20", "BYSCORE"]), bulks(&[]));
        assert_eq!(range(&mut core, &["0", "1", "REV"]), bulks(&["d", "c"]));
        assert_eq!(range(&mut core, &["-1", "-1", "REV"]), bulks(&["a"]));
        assert_eq!(
            range(&mut core, &["30", "40", "BYSCORE", "WITHSCORES"]),
            Reply::Pairs(vec![
                (Reply::bulk("c"), Reply::Int(30)),
                (Reply::bulk("d"), Reply::Int(40))
            ])
        );
        assert_eq!(
            range(&mut core, &["0", "1", "LIMIT", "0", "1"]),
            Reply::Error(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
                    .into()
            )
        );
        assert_eq!(
            range(&mut core, &["x", "1", "BYSCORE"]),
            Reply::Error("ERR min or max is not a float".into())
        );
        assert_eq!(
            range(&mut core, &["x", "1"]),
            Reply::Error("ERR value is not an integer or out of range".into())
        );
    }
}
