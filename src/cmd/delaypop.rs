//! `DELAYPOP`: take due members.

use bytes::Bytes;

use super::{Args, Blocking, Command, EngineCommand, is};
use crate::engine::core::{Core, MAX_DUE_MS, PopOptions, Popped};
use crate::protocol::Reply;
use crate::{Error, Result};

/// Removes and returns up to `count` members whose due time has come,
/// earliest due first, ties in insertion order.
///
/// # Format
///
/// ```text
/// DELAYPOP key [COUNT count] [LEASE ms [RETRIES n DEADLETTER dlq-key]]
///     [BLOCK ms] [WITHCOUNTS]
/// ```
///
/// Replies with an array of members (empty when nothing is due). With
/// `LEASE ms` the members are not removed but hidden for `ms` and handed out
/// again unless acknowledged with `DELAYACK` (at-least-once delivery). With
/// `RETRIES n DEADLETTER dlq-key`, a member that was already delivered `n`
/// times without an ack is moved to `dlq-key` (due now) instead. With
/// `BLOCK ms` the client waits up to `ms` (0: forever) for a member to come
/// due, and gets a null array on timeout. `WITHCOUNTS` replies with
/// `[member, deliveries]` pairs, this delivery included.
#[derive(Debug)]
pub struct DelayPop {
    pub key: Bytes,
    pub opts: PopOptions,
    /// Milliseconds to wait; 0 waits forever.
    pub block: Option<u64>,
}

/// Redis's reply for a count or duration that must be positive.
pub fn positive(v: i64) -> Result<u64> {
    if v <= 0 {
        Err(Error::msg("value is out of range, must be positive"))
    } else {
        Ok(v as u64)
    }
}

/// The table's parser: a pop, waiting with `BLOCK` (except `COUNT 0`, which
/// answers an empty array at once).
///
/// # Errors
///
/// As [`DelayPop::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    let c = DelayPop::parse(args)?;
    Ok(match c.block {
        Some(timeout_ms) if c.opts.count > 0 => Command::Blocking(Blocking {
            keys: vec![c.key.clone()],
            opts: c.opts.clone(),
            shape: PopShape::Members,
            timeout_ms,
            now: Box::new(c),
        }),
        _ => Command::engine(c),
    })
}

impl DelayPop {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Syntax errors, non-integer or non-positive counts and leases, and
    /// negative timeouts.
    pub fn parse(args: &mut Args) -> Result<DelayPop> {
        let key = args.next_key()?;
        let mut c = DelayPop {
            key,
            opts: PopOptions::count(1),
            block: None,
        };
        while let Some(opt) = args.try_next() {
            if is(&opt, "COUNT") {
                // COUNT 0 answers an empty array at once, as ZPOPMIN and
                // LPOP with a count of 0 do.
                let n = args.next_int()?;
                c.opts.count = if n == 0 {
                    0
                } else {
                    positive(n)?.min(1 << 20) as usize
                };
            } else if is(&opt, "LEASE") {
                c.opts.lease = Some(positive(args.next_int()?)?.min(MAX_DUE_MS));
            } else if is(&opt, "RETRIES") {
                c.opts.retries = Some(positive(args.next_int()?)?.min(u64::from(u32::MAX)) as u32);
            } else if is(&opt, "DEADLETTER") {
                c.opts.dead_letter = Some(args.next_key()?);
            } else if is(&opt, "WITHCOUNTS") {
                c.opts.with_counts = true;
            } else if is(&opt, "BLOCK") {
                let ms = args
                    .next_int()
                    .map_err(|_| Error::msg("timeout is not an integer or out of range"))?;
                if ms < 0 {
                    return Err(Error::NegativeTimeout);
                }
                c.block = Some(ms as u64);
            } else {
                return Err(Error::Syntax);
            }
        }
        let o = &c.opts;
        if o.retries.is_some() != o.dead_letter.is_some()
            || (o.retries.is_some() && o.lease.is_none())
        {
            return Err(Error::msg(
                "RETRIES and DEADLETTER go together, and need LEASE",
            ));
        }
        if o.dead_letter.as_ref() == Some(&c.key) {
            return Err(Error::msg("DEADLETTER must name another queue"));
        }
        Ok(c)
    }
}

impl EngineCommand for DelayPop {
    fn may_reply_large(&self) -> bool {
        self.opts.count > super::FEW
    }

    /// Pops what is due now. Inside MULTI a `BLOCK` pop does not wait, as
    /// Redis's blocking commands do not: nothing due gives the timeout reply.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        self.apply_popped(core).map(|(reply, _)| reply)
    }

    fn apply_popped(&self, core: &mut Core) -> Result<(Reply, Vec<Popped>)> {
        if self.opts.count == 0 {
            return Ok((Reply::Array(Vec::new()), Vec::new()));
        }
        let popped = core.pop(&self.key, &self.opts)?;
        if popped.is_empty() && self.block.is_some() {
            return Ok((Reply::NullArray, popped));
        }
        let reply = pop_reply(&popped, PopShape::Members, self.opts.with_counts);
        Ok((reply, popped))
    }
}

/// How popped members are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopShape {
    /// `DELAYPOP`: an array of members.
    Members,
    /// `BDELAYPOP`: `[key, member, due-ms]`.
    KeyMemberDue,
}

/// The reply for a pop, in the shape the command asked for.
pub fn pop_reply(popped: &[Popped], shape: PopShape, with_counts: bool) -> Reply {
    match shape {
        PopShape::Members if with_counts => Reply::Pairs(
            popped
                .iter()
                .map(|p| {
                    (
                        Reply::Bulk(p.member.clone()),
                        Reply::Int(i64::from(p.deliveries)),
                    )
                })
                .collect(),
        ),
        PopShape::Members => Reply::Array(
            popped
                .iter()
                .map(|p| Reply::Bulk(p.member.clone()))
                .collect(),
        ),
        PopShape::KeyMemberDue => match popped.first() {
            Some(p) => Reply::Array(vec![
                Reply::Bulk(p.queue.clone()),
                Reply::Bulk(p.member.clone()),
                Reply::Int(p.before.due as i64),
            ]),
            None => Reply::NullArray,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::*;

    #[test]
    fn parse_errors() {
        assert_eq!(
            err(DelayPop::parse(&mut args(&["q", "COUNT", "-1"]))),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            err(DelayPop::parse(&mut args(&["q", "BLOCK", "-1"]))),
            "ERR timeout is negative"
        );
        assert_eq!(
            err(DelayPop::parse(&mut args(&["q", "LEASE"]))),
            "ERR syntax error"
        );
        assert_eq!(
            err(DelayPop::parse(&mut args(&["q", "BOGUS"]))),
            "ERR syntax error"
        );
        assert_eq!(
            err(DelayPop::parse(&mut args(&["q", "COUNT", "x"]))),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn pops_only_what_is_due_in_order() {
        let (mut core, clock, _dir) = core_at(10_000);
        exec(
            &mut core,
            &[
                "DELAYADD", "q", "30", "c", "10", "a", "10", "b", "500", "late",
            ],
        );
        let pop = |core: &mut Core, a: &[&str]| {
            DelayPop::parse(&mut args(a)).unwrap().apply(core).unwrap()
        };
        assert_eq!(pop(&mut core, &["q"]), Reply::Array(vec![]));
        clock.advance_ms(9);
        core.tick().unwrap();
        assert_eq!(pop(&mut core, &["q", "COUNT", "5"]), Reply::Array(vec![]));
        assert_eq!(pop(&mut core, &["q", "COUNT", "0"]), Reply::Array(vec![]));
        assert_eq!(
            pop(&mut core, &["q", "COUNT", "0", "BLOCK", "0"]),
            Reply::Array(vec![])
        );
        clock.advance_ms(21);
        core.tick().unwrap();
        assert_eq!(
            pop(&mut core, &["q", "COUNT", "5"]),
            bulks(&["a", "b", "c"])
        );
        assert_eq!(core.card(b"q"), 1);
    }

    #[test]
    fn lease_hides_then_redelivers_until_acked() {
        let (mut core, clock, _dir) = core_at(10_000);
        exec(&mut core, &["DELAYADD", "q", "0", "job"]);
        core.tick().unwrap();
        let pop = |core: &mut Core| {
            DelayPop::parse(&mut args(&["q", "LEASE", "100"]))
                .unwrap()
                .apply(core)
                .unwrap()
        };
        assert_eq!(pop(&mut core), bulks(&["job"]));
        assert_eq!(pop(&mut core), bulks(&[]));
        assert_eq!(core.card(b"q"), 1, "a leased member stays in the queue");
        assert_eq!(core.info(b"q").leased, 1);
        clock.advance_ms(100);
        core.tick().unwrap();
        let info = core.info(b"q");
        assert_eq!(
            (info.leased, info.ready),
            (0, 1),
            "a lease that ran out is not counted"
        );
        assert_eq!(
            pop(&mut core),
            bulks(&["job"]),
            "redelivered after the lease expired"
        );
        assert_eq!(core.score(b"q", b"job").unwrap().unwrap().deliveries, 2);
        assert_eq!(exec(&mut core, &["DELAYACK", "q", "job"]), Reply::Int(1));
        assert_eq!(core.card(b"q"), 0);
    }

    #[test]
    fn withcounts_and_dead_letter_after_retries() {
        let (mut core, clock, _dir) = core_at(10_000);
        exec(&mut core, &["DELAYADD", "q", "0", "job"]);
        core.tick().unwrap();
        let pop = |core: &mut Core| {
            DelayPop::parse(&mut args(&[
                "q",
                "LEASE",
                "10",
                "RETRIES",
                "2",
                "DEADLETTER",
                "dlq",
                "WITHCOUNTS",
            ]))
            .unwrap()
            .apply(core)
            .unwrap()
        };
        let pair = |n| Reply::Pairs(vec![(Reply::bulk("job"), Reply::Int(n))]);
        assert_eq!(pop(&mut core), pair(1));
        clock.advance_ms(10);
        core.tick().unwrap();
        assert_eq!(pop(&mut core), pair(2));
        clock.advance_ms(10);
        core.tick().unwrap();
        // Delivered twice without an ack: dead-lettered, not delivered.
        assert_eq!(pop(&mut core), Reply::Pairs(vec![]));
        assert_eq!(core.card(b"q"), 0);
        assert_eq!(exec(&mut core, &["DELAYPOP", "dlq"]), bulks(&["job"]));
        assert_eq!(core.info(b"q").counters.dead_lettered, 1);
    }

    #[test]
    fn retry_options_are_checked() {
        assert_eq!(
            err(DelayPop::parse(&mut args(&[
                "q",
                "RETRIES",
                "3",
                "DEADLETTER",
                "d"
            ]))),
            "ERR RETRIES and DEADLETTER go together, and need LEASE"
        );
        assert_eq!(
            err(DelayPop::parse(&mut args(&[
                "q", "LEASE", "5", "RETRIES", "3"
            ]))),
            "ERR RETRIES and DEADLETTER go together, and need LEASE"
        );
        assert_eq!(
            err(DelayPop::parse(&mut args(&[
                "q",
                "LEASE",
                "5",
                "RETRIES",
                "3",
                "DEADLETTER",
                "q"
            ]))),
            "ERR DEADLETTER must name another queue"
        );
    }
}
